// Disposable network namespaces for kernel tests: a named netns (/run/netns/NAME, inside the test
// run's private mount namespace), lo up, an fd for our own code, and destroy() that removes it.
import { run, runOk } from './exec.js';
import { sys } from '../../src/native.js';

let counter = 0;

export class TestNetns {
  readonly name: string;
  readonly path: string;
  private fdValue: number | undefined;

  private constructor(name: string) {
    this.name = name;
    this.path = `/run/netns/${name}`;
  }

  /** Creates a new namespace named `t<pid>-<n>[-label]` with lo up. */
  static async create(label = ''): Promise<TestNetns> {
    const name = `t${process.pid}-${++counter}${label ? `-${label}` : ''}`;
    await runOk('ip', ['netns', 'add', name]);
    const ns = new TestNetns(name);
    await ns.exec('ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** An fd of the namespace for the native addon (opened once, closed by destroy()). */
  get fd(): number {
    this.fdValue ??= sys().openNamespace(this.path);
    return this.fdValue;
  }

  /** Runs a command inside the namespace; throws if it fails. */
  exec(cmd: string, args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<string> {
    return runOk('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }

  /** Runs a command inside the namespace; returns its result whatever the exit code. */
  tryExec(cmd: string, args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}) {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }

  /** `ip -j ARGS` inside the namespace, parsed. */
  async ipJson<T = unknown>(args: readonly string[]): Promise<T> {
    const out = await runOk('ip', ['-n', this.name, '-j', ...args]);
    return JSON.parse(out.trim() || '[]') as T;
  }

  async destroy(): Promise<void> {
    if (this.fdValue !== undefined) {
      try {
        sys().nftForget(this.fdValue);
      } finally {
        sys().close(this.fdValue);
        this.fdValue = undefined;
      }
    }
    await run('ip', ['netns', 'del', this.name]);
  }
}
