// Entry point of bin/nspawn-cni: one CNI call (CNI_COMMAND and friends in the environment, the
// network configuration on stdin), its result or a CNI error as JSON on stdout (exit 1 on error).
// The runtime keeps only CNI_*, PATH and HOME for DEL (podman's cleanup): every setting comes from
// the configuration, none from other environment variables.
//
// Start-up is most of a call: podman runs VERSION once per network whenever it loads its networks
// (bin/nspawn-cni, a native front, answers that call without Node: native/front/nspawn-cni.c).
// This module is a bundle of its own with nothing VERSION does not use (the operations come from
// `loadPlugin`, bin/nspawn-cni's second bundle), and stdin and stdout are read and written with
// plain system calls: Node's stream objects for them cost more than the whole answer.
import { readSync, writeSync } from 'node:fs';
import { errorMessage } from '../errors.js';
import { sysIfLoaded } from '../native.js';
import { setLogLevel } from '../log.js';
import {
  addResult, CNI_ERR, type CniCommand, type CniConfig, CniError, errorResult, parseConfig, parseEnv, versionAsked, versionAtLeast, versionResult,
} from './config.js';
import type * as Plugin from './plugin.js';
import { askSidecar } from './thin.js';

/** A network configuration is a few KiB; a runaway writer is refused, not buffered. */
const MAX_CONFIG = 1 << 20;

function isEagain(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'EAGAIN';
}

/** stdin through Node's stream: only when it is non-blocking (readSync says EAGAIN). */
function readStream(head: Buffer[], had: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks = [...head];
    let size = had;
    process.stdin.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_CONFIG) reject(new CniError(CNI_ERR.DECODE_FAILURE, 'the network configuration on stdin is larger than 1 MiB'));
      else chunks.push(c);
    });
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', (err) => reject(new CniError(CNI_ERR.IO_FAILURE, `reading stdin failed: ${err.message}`)));
  });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for (;;) {
    const buf = Buffer.allocUnsafe(64 * 1024);
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (err) {
      if (isEagain(err)) return readStream(chunks, size);
      throw new CniError(CNI_ERR.IO_FAILURE, `reading stdin failed: ${errorMessage(err)}`);
    }
    if (n === 0) break;
    size += n;
    if (size > MAX_CONFIG) throw new CniError(CNI_ERR.DECODE_FAILURE, 'the network configuration on stdin is larger than 1 MiB');
    chunks.push(buf.subarray(0, n));
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Whether part of the answer waits in process.stdout's queue (a non-blocking stdout said EAGAIN). */
let answerQueued = false;

function writeStdout(text: string): void {
  const data = Buffer.from(text);
  let off = 0;
  try {
    while (off < data.length) off += writeSync(1, data, off);
  } catch (err) {
    if (!isEagain(err)) throw err;
    answerQueued = true;
    process.stdout.write(data.subarray(off));
  }
}

/**
 * Ends the process with `code` now that the answer is written: the runtime waits for our exit, and
 * Node's teardown after a natural end costs ~2 ms more per call (its 'exit' event → reaped: 5.8 ms
 * against 4.0 with process.exit); nothing left open (a stray timer or socket) can hold the call
 * either. process.exit still runs the 'exit' listeners (bin/cached-bundle.cjs may write a code cache
 * there); then, instead of Node's own teardown (process.reallyExit: the V8 heap freed page by page,
 * the platform's threads joined), _exit(2). An answer still queued on a non-blocking stdout drains
 * first (a natural end).
 */
export function exitAfterAnswer(code: number): void {
  if (answerQueued) {
    process.exitCode = code;
    return;
  }
  // (a call that never loaded the addon — VERSION, a refused configuration — does not load it for
  // this; Node's own exit-time writers, a --cpu-prof profile or NODE_V8_COVERAGE, need its teardown)
  const addon = sysIfLoaded();
  if (addon && !wantsNodeTeardown()) (process as unknown as { reallyExit: (code: number) => void }).reallyExit = (c) => addon.exitNow(c);
  process.exit(code);
}

/** Whether Node writes something in its teardown: a profile (--cpu-prof, --heap-prof) or coverage. */
function wantsNodeTeardown(): boolean {
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  return process.env.NODE_V8_COVERAGE !== undefined || flags.some((f) => /^--(cpu|heap)-prof/.test(f));
}

/** Commands the configuration's version lacks (error 1): STATUS and GC before 1.1.0, CHECK before 0.4.0. */
export function refuseCommand(command: CniCommand, cfg: CniConfig): void {
  if ((command === 'STATUS' || command === 'GC') && !versionAtLeast(cfg.cniVersion, '1.1.0')) {
    throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `${command} needs cniVersion 1.1.0 or later; the configuration says ${cfg.cniVersion}`);
  }
  if (command === 'CHECK' && (cfg.cniVersion === '0.3.0' || cfg.cniVersion === '0.3.1')) {
    throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `CHECK needs cniVersion 0.4.0 or later; the configuration says ${cfg.cniVersion}`);
  }
}

/** ADD, CHECK, DEL, STATUS and GC (src/cni/plugin.ts): bin/nspawn-cni loads them as a bundle of their own. */
export type PluginLoader = () => Promise<typeof Plugin>;

/** Runs one call; writes the answer; resolves to the exit code. */
export async function main(_argv: readonly string[], env: NodeJS.ProcessEnv, loadPlugin: PluginLoader): Promise<number> {
  let version = '1.0.0';
  // the runtime shows a plugin's stderr only when it fails: routine steps are detail (NSPAWN_TS_LOG=debug|info)
  const quiet = env.NSPAWN_TS_LOG === undefined;
  if (quiet) setLogLevel('warn');
  const out = (o: unknown): void => writeStdout(JSON.stringify(o) + '\n');
  try {
    const call = parseEnv(env);
    const text = await readStdin();
    if (call.command === 'VERSION') {
      // bin/nspawn-cni's native front answers the runtime's own VERSION call; this, everything else
      out(versionResult(versionAsked(text)));
      return 0;
    }
    const cfg = parseConfig(text);
    version = cfg.cniVersion;
    refuseCommand(call.command, cfg);
    // nspawn-netd running: ADD, CHECK and DEL are one request, the sidecar does the work (src/cni/thin.ts)
    if ((call.command === 'ADD' || call.command === 'DEL' || call.command === 'CHECK') && cfg.sidecar === 'auto' && !cfg.ipam) {
      const answer = askSidecar(cfg.netdSocket, {
        op: 'cni', command: call.command, containerId: call.containerId, netns: call.netns, ifname: call.ifname, args: env.CNI_ARGS ?? '', config: text,
      });
      if (answer?.error) throw new CniError(answer.error.code, answer.error.msg, answer.error.details ?? '');
      if (answer) {
        if (call.command === 'ADD') {
          if (!answer.result) throw new CniError(CNI_ERR.IO_FAILURE, `nspawn-netd on ${cfg.netdSocket} answered the ADD without a result`);
          out(addResult(cfg.cniVersion, answer.result));
        }
        return 0;
      }
    }
    const plugin = await loadPlugin();
    if (quiet) plugin.setLogLevel('warn'); // the other bundle's logger
    if (call.command === 'STATUS' || call.command === 'GC') {
      if (call.command === 'STATUS') await plugin.cniStatus(call, cfg);
      else await plugin.cniGc(call, cfg);
      return 0;
    }
    if (call.command === 'ADD') {
      out(addResult(cfg.cniVersion, await plugin.cniAdd(call, cfg)));
    } else if (call.command === 'DEL') {
      await plugin.cniDel(call, cfg);
    } else {
      await plugin.cniCheck(call, cfg);
    }
    return 0;
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(CNI_ERR.SETUP_FAILED, errorMessage(err));
    out(errorResult(version, e));
    return 1;
  }
}
