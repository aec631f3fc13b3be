// The launcher's policies that depend on the spec alone (or a file of the host): the stop signal
// and timeout, PID 1's environment, the host's os-release.
import { readFileSync } from 'node:fs';
import { DEFAULT_PATH, type InitInfo, type PasswdEntry } from './container-root.js';
import { CONTAINER_NOTIFY_SOCKET } from './notify.js';
import { parseSignal, SIGRTMIN } from './signals.js';
import type { LaunchSpec } from './spec.js';

/**
 * The signal that asks PID 1 to shut down: KillSignal= as configured (--kill-signal= or the
 * .nspawn file), in any mode and for any init. Unset, a booted container gets systemd-nspawn's
 * default, SIGRTMIN+3 (systemd halts on it), unless its init is not systemd: one that has no
 * handler for SIGRTMIN+3 would ignore it, so it gets SIGTERM (busybox init reboots, which ends
 * the container). A container that is not booted has none (0): as systemd-nspawn's
 * verify_arguments() leaves arg_kill_signal, SIGTERM/SIGINT to the launcher then kill it at once.
 */
export function stopSignal(spec: LaunchSpec, init: InitInfo | undefined): number {
  const configured = spec.killSignal !== undefined ? parseSignal(spec.killSignal)?.number : undefined;
  if (configured !== undefined) return configured;
  if (spec.mode !== 'boot') return 0;
  return init?.systemd ? SIGRTMIN + 3 : 15;
}

/** The environment of PID 1, as systemd-nspawn sets it. */
export function containerEnvironment(opts: {
  spec: LaunchSpec; uuid: string; user: PasswdEntry | undefined; term: string | undefined; hostOs: Record<string, string>;
}): string[] {
  const env = new Map<string, string>();
  env.set('PATH', DEFAULT_PATH);
  env.set('container', 'systemd-nspawn');
  env.set('TERM', opts.term ?? 'vt220');
  env.set('HOME', opts.user?.home ?? '/root');
  env.set('USER', opts.user?.name ?? 'root');
  env.set('LOGNAME', opts.user?.name ?? 'root');
  if (opts.user) env.set('SHELL', opts.user.shell);
  env.set('container_uuid', opts.uuid);
  env.set('NOTIFY_SOCKET', CONTAINER_NOTIFY_SOCKET);
  if (opts.hostOs.ID) env.set('container_host_id', opts.hostOs.ID);
  if (opts.hostOs.VERSION_ID) env.set('container_host_version_id', opts.hostOs.VERSION_ID);
  for (const kv of opts.spec.environment) {
    const i = kv.indexOf('=');
    if (i > 0) env.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return [...env].map(([k, v]) => `${k}=${v}`);
}

export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) out[m[1] as string] = (m[2] as string).replace(/^(["'])(.*)\1$/, '$2');
  }
  return out;
}

export function hostOsRelease(): { path?: string; fields: Record<string, string> } {
  for (const p of ['/etc/os-release', '/usr/lib/os-release']) {
    try {
      return { path: p, fields: parseOsRelease(readFileSync(p, 'utf8')) };
    } catch { /* next */ }
  }
  return { fields: {} };
}

/** Time between the kill signal and SIGKILL: `override`, $NSPAWN_TS_STOP_TIMEOUT_SEC, else 10 s (30 s for -b). */
export function stopTimeout(spec: LaunchSpec, override: number | undefined): number {
  if (override !== undefined) return override;
  const env = Number(process.env.NSPAWN_TS_STOP_TIMEOUT_SEC);
  if (Number.isFinite(env) && env > 0) return env * 1000;
  return spec.mode === 'boot' ? 30_000 : 10_000;
}
