// Entry point of bin/nspawn-cni: one CNI call (CNI_COMMAND and friends in the environment, the
// network configuration on stdin), its result or a CNI error as JSON on stdout (exit 1 on error).
// The runtime keeps only CNI_*, PATH and HOME for DEL (podman's cleanup): every setting comes from
// the configuration, none from other environment variables.
import { errorMessage } from '../errors.js';
import { setLogLevel } from '../log.js';
import { addResult, CNI_ERR, CniError, errorResult, parseConfig, parseEnv, versionAtLeast, versionResult } from './config.js';

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    process.stdin.on('data', (c: Buffer) => {
      size += c.length;
      // a network configuration is a few KiB; a runaway writer is refused, not buffered
      if (size > 1 << 20) reject(new CniError(CNI_ERR.DECODE_FAILURE, 'the network configuration on stdin is larger than 1 MiB'));
      else chunks.push(c);
    });
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', (err) => reject(new CniError(CNI_ERR.IO_FAILURE, `reading stdin failed: ${err.message}`)));
  });
}

/** Runs one call; writes the answer; resolves to the exit code. */
export async function main(_argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let version = '1.0.0';
  // the runtime shows a plugin's stderr only when it fails: routine steps are detail (NSPAWN_TS_LOG=debug|info)
  if (env.NSPAWN_TS_LOG === undefined) setLogLevel('warn');
  const out = (o: unknown): void => {
    process.stdout.write(JSON.stringify(o) + '\n');
  };
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
    if (call.command === 'STATUS' || call.command === 'GC') {
      if (!versionAtLeast(cfg.cniVersion, '1.1.0')) {
        throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `${call.command} needs cniVersion 1.1.0 or later; the configuration says ${cfg.cniVersion}`);
      }
      const gc = await import('./gc.js');
      if (call.command === 'STATUS') gc.cniStatus(call, cfg);
      else await gc.cniGc(call, cfg);
      return 0;
    }
    const plugin = await import('./plugin.js');
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
