// Talking to the sidecar: the launcher (to reserve its container's address) and machinectl-ts (to
// list links and leases). connect() returns undefined when no sidecar answers — the launcher then
// runs the subsystem embedded.
import { createConnection, type Socket } from 'node:net';
import { NspawnError } from '../../errors.js';
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
