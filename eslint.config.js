// ESLint (flat config), run by `npm test` (scripts/test.sh) and `npm run lint`.
//
// The layering it enforces (docs: README "Modules"):
//   src/common   imports nothing of ours but itself and src/errors, src/log, src/native;
//   src/net, src/dhcp  the network library (and src/cni, the CNI plugin over it): never src/runtime or src/machinectl (the launcher adapts
//                its LaunchSpec to the library's model, src/net/model.ts, in src/runtime/net/);
//   src/runtime/launcher.ts  no network module by path: its entry point (main.ts) hands it the hooks.
// Plus the rules that catch real defects: floating and misused promises, unused variables.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** import declarations, export-from and import() of paths matching `patterns` fail with `message`. */
function forbid(patterns, message) {
  const regex = patterns.map((p) => p.regex).join('|');
  return {
    'no-restricted-imports': ['error', { patterns: patterns.map((p) => ({ group: p.group, message })) }],
    'no-restricted-syntax': ['error', { selector: `ImportExpression[source.value=/${regex}/]`, message }],
  };
}

const LIBRARY = 'the network library (src/net, src/dhcp) must not depend on the launcher or machinectl: '
  + 'define what it needs in src/net/model.ts and adapt in src/runtime/net/';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'native/**', 'contrib/**', 'bin/**', '**/*.js', '**/*.cjs', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { project: ['./tsconfig.test.json'], tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
      // a variable a closure reads before its one assignment (let x!: T; … x = new T(closure)) stays let
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  {
    files: ['src/net/**/*.ts', 'src/dhcp/**/*.ts', 'src/cni/**/*.ts'],
    rules: forbid([
      { group: ['**/runtime/*', '**/runtime/**'], regex: 'runtime\\/' },
      { group: ['**/machinectl/*', '**/machinectl/**'], regex: 'machinectl\\/' },
    ], LIBRARY),
  },
  {
    files: ['src/common/**/*.ts'],
    rules: forbid([
      { group: ['**/runtime/*', '**/runtime/**', '**/machinectl/*', '**/machinectl/**', '**/net/*', '**/net/**', '**/dhcp/*', '**/dhcp/**'],
        regex: '(runtime|machinectl|net|dhcp)\\/' },
    ], 'src/common is shared by every module and depends on none of them'),
  },
  {
    files: ['src/runtime/launcher.ts'],
    rules: forbid([
      { group: ['../net/*', '../net/**', './net/*', './net/**', '../dhcp/*', '../dhcp/**'], regex: '(\\.\\.|\\.)\\/(net|dhcp)\\/' },
    ], 'launcher.ts knows no network module: its entry point (main.ts) builds the hooks (src/runtime/net/hooks.ts)'),
  },
);
