// The plugin's side of nspawn-netd's "cni" op (src/cni/sidecar-op.ts): with a sidecar running, an
// ADD, CHECK or DEL is one request on its socket and the sidecar's answer printed — this process
// loads neither the plugin's operations nor Node's net and stream modules (it runs for one call:
// a blocking socket through the addon's socket calls is all it needs).
//
// undefined means "do it the plugin's way": nothing listens (no socket file, or a stale one), or
// the sidecar does not do CNI calls (an older one, or one started without the CNI op), or it
// refused the request (e.g. a configuration longer than its request limit) — the plugin's own
// path then works under the same locks, asking such a sidecar for reserve/release as before.
// A connection that breaks before the answer (the sidecar was killed or restarts) is tried again,
// on a new connection: each call is safe to repeat (ADD starts over from the container's record,
// DEL of what is gone is no error, CHECK changes nothing); a socket that then turns out stale
// leaves the call to the plugin's path. A sidecar that never answers is CNI error 11 (try again).
import { errorMessage } from '../errors.js';
import { POLL_READABLE, POLL_WRITABLE, sys } from '../native.js';
import type { CniRequest, NetdResponse } from '../net/netd/api.js';
import { sockaddrUn, SUN_PATH_MAX } from '../net/netd/notify.js';
import { MAX_REQUEST_BYTES } from '../net/netd/socket-path.js';
import { CNI_ERR, CniError } from './config.js';
import type { CniAnswer } from './sidecar-op.js';

const AF_UNIX = 1;
const SOCK_STREAM = 1;

export interface ThinOptions {
  /** connections tried while they break before the answer (default 5) */
  attempts?: number;
  /** wait before the second attempt, doubled after each (default 50 ms) */
  backoffMs?: number;
  /** per attempt: the sidecar may wait for the zone lock (60 s) and cni.lock (30 s) itself (default 100 s) */
  timeoutMs?: number;
}

type Outcome = { kind: 'absent' } | { kind: 'broken'; why: string } | { kind: 'line'; line: string };

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** One connection: the request, then the first line that comes back. */
function exchange(path: string, data: Buffer, timeoutMs: number): Outcome {
  const s = sys();
  const deadline = Date.now() + timeoutMs;
  const wait = (events: number): void => {
    const left = deadline - Date.now();
    if (left <= 0 || s.pollFd(fd, events, left) === 0) {
      throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `nspawn-netd on ${path} did not answer within ${Math.round(timeoutMs / 1000)} s (is it stuck? see its log); try again later`);
    }
  };
  const fd = s.socket(AF_UNIX, SOCK_STREAM, 0);
  try {
    try {
      s.connect(fd, sockaddrUn(path));
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOENT' || code === 'ECONNREFUSED') return { kind: 'absent' };
      if (code === 'EAGAIN') return { kind: 'broken', why: 'its connection queue is full' };
      throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, `cannot connect to nspawn-netd on ${path}: ${errorMessage(err)}`);
    }
    for (let off = 0; off < data.length;) {
      try {
        off += s.sendto(fd, data.subarray(off));
      } catch (err) {
        const code = errnoOf(err);
        if (code === 'EAGAIN') wait(POLL_WRITABLE);
        else if (code === 'EPIPE' || code === 'ECONNRESET') return { kind: 'broken', why: 'it closed the connection' };
        else throw err;
      }
    }
    const chunks: Buffer[] = [];
    const buf = Buffer.allocUnsafe(64 * 1024);
    for (;;) {
      let n: number;
      try {
        n = s.recv(fd, buf);
      } catch (err) {
        if (errnoOf(err) === 'ECONNRESET') return { kind: 'broken', why: 'it reset the connection' };
        throw err;
      }
      if (n < 0) {
        wait(POLL_READABLE);
        continue;
      }
      if (n === 0) return { kind: 'broken', why: 'it closed the connection before answering' };
      const nl = buf.subarray(0, n).indexOf(10);
      chunks.push(Buffer.from(buf.subarray(0, nl < 0 ? n : nl)));
      if (nl >= 0) return { kind: 'line', line: Buffer.concat(chunks).toString('utf8') };
    }
  } finally {
    s.close(fd);
  }
}

/** Asks the sidecar on `path` to do the call; its answer, or undefined: do it the plugin's way (above). */
export function askSidecar(path: string, req: CniRequest, opts: ThinOptions = {}): CniAnswer | undefined {
  const data = Buffer.from(JSON.stringify(req) + '\n');
  if (data.length > MAX_REQUEST_BYTES || Buffer.byteLength(path) >= SUN_PATH_MAX) return undefined;
  const attempts = opts.attempts ?? 5;
  let backoff = opts.backoffMs ?? 50;
  let why = '';
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) {
      sleep(backoff);
      backoff *= 2;
    }
    const got = exchange(path, data, opts.timeoutMs ?? 100_000);
    if (got.kind === 'absent') return undefined;
    if (got.kind === 'broken') {
      why = got.why;
      continue;
    }
    let res: NetdResponse;
    try {
      res = JSON.parse(got.line) as NetdResponse;
    } catch {
      throw new CniError(CNI_ERR.IO_FAILURE, `nspawn-netd on ${path} answered with a line that is not JSON`);
    }
    if (res.ok) return res.result as CniAnswer;
    // too busy to take the connection, or shutting down: again; any other refusal: the plugin's way
    if (res.error.code === 'NETD_BUSY' || res.error.code === 'NETD_CLOSED') {
      why = res.error.message;
      continue;
    }
    return undefined;
  }
  throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `nspawn-netd on ${path} failed ${attempts} times before answering (is it restarting in a loop? see its log): ${why}; try again later`);
}
