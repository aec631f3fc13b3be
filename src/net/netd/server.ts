// The sidecar's API socket: a Unix stream socket, mode 0600 (root only), one JSON request per line
// answered by one JSON line, in order (api.ts has the protocol). A stale socket file from a killed
// sidecar is replaced; a live one (something answers on it) is an error, so two sidecars never
// fight over the host's links.
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { errorMessage, NspawnError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { BadRequestError, decodeRequestLine, errorBody, MAX_REQUEST_BYTES, type NetdRequest, type NetdResponse } from './api.js';

export type RequestHandler = (req: NetdRequest) => Promise<unknown>;

/** Whether something accepts connections on `path`. */
export function socketAnswers(path: string, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    const done = (v: boolean): void => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

export class ApiServer {
  private readonly conns = new Set<Socket>();

  private constructor(private readonly server: Server, readonly path: string) {}

  static async listen(path: string, handler: RequestHandler, log: Logger): Promise<ApiServer> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    if (await socketAnswers(path)) {
      throw new NspawnError('NETD_RUNNING', `another nspawn-netd is answering on ${path}; stop it first`);
    }
    try {
      unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    let api!: ApiServer;
    const server = createServer((sock) => api.accept(sock, handler, log));
    api = new ApiServer(server, path);
    // the socket file is made by listen(): no moment where others may connect
    const old = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(old);
    }
    chmodSync(path, 0o600);
    return api;
  }

  private accept(sock: Socket, handler: RequestHandler, log: Logger): void {
    this.conns.add(sock);
    sock.on('close', () => this.conns.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf = '';
    let chain = Promise.resolve();
    const reply = (r: NetdResponse): void => {
      if (!sock.destroyed) sock.write(JSON.stringify(r) + '\n');
    };
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      for (;;) {
        const nl = buf.indexOf('\n');
        if (nl < 0) break;
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        chain = chain.then(async () => {
          let id: string | number | undefined;
          try {
            const decoded = decodeRequestLine(line);
            id = decoded.id;
            const result = await handler(decoded.request);
            reply(id === undefined ? { ok: true, result } : { ok: true, id, result });
          } catch (err) {
            if (!(err instanceof BadRequestError)) log.debug(`request failed: ${errorMessage(err)}`);
            const error = errorBody(err);
            reply(id === undefined ? { ok: false, error } : { ok: false, id, error });
          }
        });
      }
      if (Buffer.byteLength(buf) > MAX_REQUEST_BYTES) {
        reply({ ok: false, error: errorBody(new BadRequestError(`a request is at most ${MAX_REQUEST_BYTES} bytes, ending in a newline`)) });
        sock.end();
        buf = '';
      }
    });
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    try {
      unlinkSync(this.path);
    } catch { /* gone already */ }
  }
}
