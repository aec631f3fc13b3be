// Entry point of bin/nspawn-cni: one CNI call (CNI_COMMAND and friends in the environment, the
// network configuration on stdin), its result or a CNI error as JSON on stdout (exit 1 on error).
// The runtime keeps only CNI_*, PATH and HOME for DEL (podman's cleanup): every setting comes from
// the configuration, none from other environment variables.
//
// Start-up is most of a call: podman runs VERSION once per network whenever it loads its networks.
// So this module is a bundle of its own with nothing VERSION does not use (the operations come from
// `loadPlugin`, bin/nspawn-cni's second bundle), and stdin and stdout are read and written with
// plain system calls: Node's stream objects for them cost more than the whole answer.
import { readSync, writeSync } from 'node:fs';
import { errorMessage } from '../errors.js';
import { setLogLevel } from '../log.js';
import { addResult, CNI_ERR, CniError, errorResult, parseConfig, parseEnv, versionAtLeast, versionResult } from './config.js';
import type * as Plugin from './plugin.js';

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

function writeStdout(text: string): void {
  const data = Buffer.from(text);
  let off = 0;
  try {
    while (off < data.length) off += writeSync(1, data, off);
  } catch (err) {
    if (!isEagain(err)) throw err;
    process.stdout.write(data.subarray(off));
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
      // only "cniVersion" is read: the runtime sends {"cniVersion":"1.0.0"} and nothing else
      let asked: unknown;
      try {
        asked = (JSON.parse(text) as { cniVersion?: unknown }).cniVersion;
      } catch {
        asked = undefined;
      }
      out(versionResult(typeof asked === 'string' ? asked : version));
      return 0;
    }
    const cfg = parseConfig(text);
    version = cfg.cniVersion;
    const plugin = await loadPlugin();
    if (quiet) plugin.setLogLevel('warn'); // the other bundle's logger
    if (call.command === 'STATUS' || call.command === 'GC') {
      if (!versionAtLeast(cfg.cniVersion, '1.1.0')) {
        throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `${call.command} needs cniVersion 1.1.0 or later; the configuration says ${cfg.cniVersion}`);
      }
      if (call.command === 'STATUS') await plugin.cniStatus(call, cfg);
      else await plugin.cniGc(call, cfg);
      return 0;
    }
    if (call.command === 'ADD') {
      out(addResult(cfg.cniVersion, await plugin.cniAdd(call, cfg)));
    } else if (call.command === 'DEL') {
      await plugin.cniDel(call, cfg);
    } else {
      if (cfg.cniVersion === '0.3.0' || cfg.cniVersion === '0.3.1') {
        throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `CHECK needs cniVersion 0.4.0 or later; the configuration says ${cfg.cniVersion}`);
      }
      await plugin.cniCheck(call, cfg);
    }
    return 0;
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(CNI_ERR.SETUP_FAILED, errorMessage(err));
    out(errorResult(version, e));
    return 1;
  }
}
