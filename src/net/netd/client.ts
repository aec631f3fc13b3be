// Talking to the sidecar: the launcher (to reserve its container's address) and machinectl-ts (to
// list links and leases). connect() returns undefined when no sidecar answers — the launcher then
// runs the subsystem embedded.
import { createConnection, type Socket } from 'node:net';
import { errorMessage, NspawnError } from '../../errors.js';
import { encodeRequest, type NetdRequest, type NetdResponse } from './api.js';
import { defaultSocketPath } from './socket-path.js';

export { DEFAULT_SOCKET, defaultSocketPath } from './socket-path.js';

/** The sidecar answered with an error (its code and message are the sidecar's). */
export class NetdRemoteError extends NspawnError {}

/** A line that answers no request: the sidecar's reason for closing the connection. */
function unsolicitedError(line: string, path: string): NspawnError {
  try {
    const r = JSON.parse(line) as NetdResponse;
    if (r.ok === false && typeof r.error?.code === 'string') return new NetdRemoteError(r.error.code, r.error.message);
  } catch { /* not JSON: below */ }
  return new NspawnError('NETD_PROTOCOL', `the sidecar on ${path} sent a line that answers no request`);
}

export class NetdClient {
  private buf = '';
  private readonly waiting: Array<{ resolve: (r: NetdResponse) => void; reject: (e: Error) => void }> = [];
  private failed: Error | undefined;

  private constructor(private readonly sock: Socket, readonly path: string) {
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      this.buf += chunk;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const w = this.waiting.shift();
        if (!w) {
          // the sidecar refused the connection before a request (not root, too many connections)
          this.failed ??= unsolicitedError(line, path);
          continue;
        }
        try {
          w.resolve(JSON.parse(line) as NetdResponse);
        } catch (err) {
          w.reject(new NspawnError('NETD_PROTOCOL', `the sidecar on ${path} sent a line that is not JSON: ${(err as Error).message}`));
        }
      }
    });
    const fail = (err: Error): void => {
      this.failed ??= err;
      const reason = this.failed;
      for (const w of this.waiting.splice(0)) w.reject(reason);
    };
    sock.on('error', (err) => fail(new NspawnError('NETD_CONNECTION', `the connection to the sidecar on ${path} failed: ${err.message}`)));
    sock.on('close', () => fail(new NspawnError('NETD_CONNECTION', `the sidecar on ${path} closed the connection`)));
  }

  /** Connects; undefined when nothing listens there (no socket file, or refused). */
  static connect(path = defaultSocketPath(), timeoutMs = 2000): Promise<NetdClient | undefined> {
    return new Promise((resolve, reject) => {
      const sock = createConnection(path);
      const t = setTimeout(() => {
        sock.destroy();
        reject(new NspawnError('NETD_TIMEOUT', `the sidecar socket ${path} did not accept a connection within ${timeoutMs} ms`));
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(t);
        resolve(new NetdClient(sock, path));
      });
      sock.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(t);
        sock.destroy();
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') resolve(undefined);
        else reject(new NspawnError('NETD_CONNECTION', `cannot connect to the sidecar on ${path}: ${err.message}`));
      });
    });
  }

  /** Sends a request; resolves with its result, rejects with NetdRemoteError carrying the sidecar's code. */
  async request<T = unknown>(req: NetdRequest, timeoutMs = 10_000): Promise<T> {
    if (this.failed) throw this.failed;
    const res = await new Promise<NetdResponse>((resolve, reject) => {
      const t = setTimeout(() => reject(new NspawnError('NETD_TIMEOUT', `the sidecar on ${this.path} did not answer "${req.op}" within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.push({
        resolve: (r) => { clearTimeout(t); resolve(r); },
        reject: (e) => { clearTimeout(t); reject(e); },
      });
      this.sock.write(JSON.stringify(encodeRequest(req)) + '\n');
    });
    if (!res.ok) throw new NetdRemoteError(res.error.code, res.error.message);
    return res.result as T;
  }

  /** Sends raw text (tests of the server's checks). */
  async raw(line: string, timeoutMs = 10_000): Promise<NetdResponse> {
    return new Promise<NetdResponse>((resolve, reject) => {
      const t = setTimeout(() => reject(new NspawnError('NETD_TIMEOUT', 'no answer')), timeoutMs);
      this.waiting.push({
        resolve: (r) => { clearTimeout(t); resolve(r); },
        reject: (e) => { clearTimeout(t); reject(e); },
      });
      this.sock.write(line.endsWith('\n') ? line : line + '\n');
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

/**
 * Failures after which the same request may be sent again on a new connection: the connection
 * broke before the answer (the sidecar was killed or restarts: EOF, reset, socket gone), the
 * sidecar was too busy to take the connection, or it was shutting down.
 */
export function retryableNetdError(err: unknown): boolean {
  return err instanceof NspawnError && ['NETD_CONNECTION', 'NETD_BUSY', 'NETD_CLOSED'].includes(err.code);
}

export interface RetryOptions {
  /** connections tried in all (default 5) */
  attempts?: number;
  /** wait before the second attempt, doubled after each (default 100 ms) */
  backoffMs?: number;
  /** per request (default 10 s) */
  timeoutMs?: number;
  /** told before each new attempt (the launcher logs it) */
  onRetry?: (err: Error, attempt: number) => void;
}

/**
 * Sends `req` to the sidecar on `path`, again on a new connection while the sidecar dies before
 * answering (retryableNetdError), at most `attempts` times. The request must be safe to repeat:
 * reserve and release are — a reservation the dead sidecar made (its state file is written before
 * it answers) is found and handed out again for the same machine and MAC, a release of what is
 * gone is no error. undefined: no sidecar listens (any more: no socket, or a stale one nobody
 * accepts on) — the caller's no-sidecar path. Other errors (the sidecar's refusals, a timeout)
 * are thrown as they are.
 */
export async function requestRetrying<T = unknown>(path: string, req: NetdRequest, opts: RetryOptions = {}): Promise<{ result: T } | undefined> {
  const attempts = opts.attempts ?? 5;
  let wait = opts.backoffMs ?? 100;
  let last: Error | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (last) {
      opts.onRetry?.(last, attempt);
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait *= 2;
    }
    let client: NetdClient | undefined;
    try {
      client = await NetdClient.connect(path);
      if (!client) return undefined;
      return { result: await client.request<T>(req, opts.timeoutMs) };
    } catch (err) {
      if (!retryableNetdError(err)) throw err;
      last = err as Error;
    } finally {
      client?.close();
    }
  }
  throw new NspawnError('NETD_CONNECTION', `the sidecar on ${path} failed ${attempts} times before answering "${req.op}" (is it restarting in a loop? see its log); last: ${errorMessage(last)}`, { cause: last });
}
