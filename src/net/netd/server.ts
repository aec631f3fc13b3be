// The sidecar's API socket: a Unix stream socket, mode 0600 (root only), one JSON request per line
// answered by one JSON line, in order (api.ts has the protocol). A stale socket file from a killed
// sidecar is replaced; a live one (something answers on it) is an error, so two sidecars never
// fight over the host's links.
//
// The socket's mode is one guard; the peer's credentials (SO_PEERCRED, the kernel's word on who
// connected) are the second: a process that is not root is answered NETD_PERMISSION_DENIED at once
// and the connection ends; nothing it sends is handled, so a socket made accessible by mistake (a
// bind mount, a chmod) still changes nothing. Refused peers never count toward the connection cap
// (else anyone who can reach the socket could lock root out). What a client can hold is bounded
// (ApiLimits): connections at once, requests in flight per connection (the connection is not read
// further until they are answered, nor while the client does not read its answers), the time a
// started line may take (an absolute deadline from its first byte: trickling bytes buys nothing),
// and the time a connection may sit idle.
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { HOST_LE } from '../../common/endian.js';
import { dirname } from 'node:path';
import { errorMessage, NspawnError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { sys } from '../../native.js';
import { BadRequestError, decodeRequestLine, errorBody, MAX_REQUEST_BYTES, type NetdRequest, type NetdResponse } from './api.js';

export type RequestHandler = (req: NetdRequest) => Promise<unknown>;

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

/** The process at the other end of a connection, as the kernel recorded it at connect(). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

export interface ApiLimits {
  /** connections served at once; one more is answered NETD_BUSY and closed */
  maxConnections: number;
  /** requests of one connection being answered at once; it is not read further meanwhile */
  maxPipelined: number;
  /** a request line that has begun must end (newline) within this many ms of its first byte */
  requestTimeoutMs: number;
  /** a connection with no request in flight and none begun is closed after this many ms */
  idleTimeoutMs: number;
}

export const DEFAULT_API_LIMITS: Readonly<ApiLimits> = {
  maxConnections: 128,
  maxPipelined: 16,
  requestTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
};

/** Refused connections kept open at once so their clients can read why, and for how long at most. */
const REFUSED_LINGER = 32;
const REFUSED_LINGER_MS = 1_000;

export interface ApiServerOptions {
  limits?: Partial<ApiLimits>;
  /** who may use the API (default: root only) */
  allowPeer?: (peer: PeerCredentials) => boolean;
}

/** Only root. */
export const rootOnly = (peer: PeerCredentials): boolean => peer.uid === 0;

/** SO_PEERCRED of an accepted connection; undefined when Node does not show its descriptor. */
export function peerCredentials(sock: Socket): PeerCredentials | undefined {
  // Node has no API for it; its Pipe handle shows the descriptor on Unix
  const fd = (sock as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  const b = sys().getsockoptBytes(fd, SOL_SOCKET, SO_PEERCRED, 12);
  if (b.length < 12) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const le = HOST_LE;
  return { pid: v.getInt32(0, le), uid: v.getUint32(4, le), gid: v.getUint32(8, le) };
}

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
  /** refused connections whose client may still be writing its first line (see refuse()) */
  private readonly refused = new Set<Socket>();
  /** requests being answered, on all connections */
  private active = 0;
  private readonly whenIdle: Array<() => void> = [];
  /** close() began: requests taken from now on are answered NETD_CLOSED */
  private closing = false;

  private constructor(private readonly server: Server, readonly path: string, private readonly limits: ApiLimits,
    private readonly allowPeer: (peer: PeerCredentials) => boolean) {}

  static async listen(path: string, handler: RequestHandler, log: Logger, opts: ApiServerOptions = {}): Promise<ApiServer> {
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
    api = new ApiServer(server, path, { ...DEFAULT_API_LIMITS, ...opts.limits }, opts.allowPeer ?? rootOnly);
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
    // accept() failing (EMFILE, ENFILE) must not end the sidecar: the connection is dropped
    server.on('error', (err) => log.warn(`the API socket ${path}: ${errorMessage(err)}`));
    chmodSync(path, 0o600);
    return api;
  }

  /** Answers one error line and closes the connection once it is written; what the client sends meanwhile is discarded. */
  private static refuse(sock: Socket, error: { code: string; message: string }): void {
    sock.removeAllListeners('data');
    sock.resume();
    sock.end(JSON.stringify({ ok: false, error } satisfies NetdResponse) + '\n');
    sock.destroySoon();
  }

  /**
   * Refuses a peer that may not use the API: the answer and our end of the stream go at once. The
   * socket lingers (uncounted, at most REFUSED_LINGER of them, for at most REFUSED_LINGER_MS) only
   * so that a client still writing its first line reads the answer instead of EPIPE; what it sends
   * is discarded.
   */
  private refusePeer(sock: Socket, error: { code: string; message: string }): void {
    sock.end(JSON.stringify({ ok: false, error } satisfies NetdResponse) + '\n');
    if (this.refused.size >= REFUSED_LINGER) {
      sock.destroySoon();
      return;
    }
    this.refused.add(sock);
    const t = setTimeout(() => sock.destroy(), REFUSED_LINGER_MS);
    t.unref();
    sock.on('close', () => {
      clearTimeout(t);
      this.refused.delete(sock);
    });
    sock.on('end', () => sock.destroy());
    sock.resume();
  }

  private accept(sock: Socket, handler: RequestHandler, log: Logger): void {
    sock.on('error', () => sock.destroy());
    const limits = this.limits;
    // who it is comes first: a refused peer never takes one of the connections root may need
    let peer: PeerCredentials | undefined;
    try {
      peer = peerCredentials(sock);
    } catch (err) {
      log.warn(`reading the credentials of an API connection failed: ${errorMessage(err)}`);
    }
    if (!peer || !this.allowPeer(peer)) {
      const who = peer ? `uid ${peer.uid} (pid ${peer.pid})` : 'a process whose credentials could not be read';
      log.warn(`refused an API connection from ${who}`, peer ? { uid: peer.uid, pid: peer.pid } : {});
      this.refusePeer(sock, { code: 'NETD_PERMISSION_DENIED', message: `permission denied: the nspawn-netd API is only for root (uid 0); this connection comes from ${who}` });
      return;
    }
    if (this.conns.size >= limits.maxConnections) {
      log.debug(`refusing a connection: ${this.conns.size} are open`);
      ApiServer.refuse(sock, { code: 'NETD_BUSY', message: `the sidecar serves at most ${limits.maxConnections} connections at once; try again` });
      return;
    }
    this.conns.add(sock);
    sock.on('close', () => this.conns.delete(sock));
    let buf = '';
    let inflight = 0;
    let chain = Promise.resolve();
    /** no more lines are taken (the connection is being closed) */
    let ended = false;
    const reply = (r: NetdResponse): void => {
      if (!sock.destroyed && sock.writable) sock.write(JSON.stringify(r) + '\n');
    };
    // requests already taken are answered first: answers stay in request order
    const finish = (error: { code: string; message: string }): void => {
      if (ended) return;
      ended = true;
      buf = '';
      chain = chain.then(() => ApiServer.refuse(sock, error));
    };
    // one timer: a begun line must end by a deadline fixed at its first byte (set once, not moved
    // by later chunks); an idle connection goes after a while
    let timer: NodeJS.Timeout | undefined;
    let lineDeadline: number | undefined;
    const arm = (): void => {
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (ended || inflight > 0) return;
      if (buf.length > 0) {
        lineDeadline ??= Date.now() + limits.requestTimeoutMs;
        timer = setTimeout(() => finish({
          code: 'NETD_BAD_REQUEST', message: `a request line must end (newline) within ${limits.requestTimeoutMs} ms of its start`,
        }), Math.max(0, lineDeadline - Date.now()));
      } else {
        lineDeadline = undefined;
        timer = setTimeout(() => {
          ended = true;
          sock.destroy();
        }, limits.idleTimeoutMs);
      }
      timer.unref();
    };
    sock.on('close', () => {
      if (timer) clearTimeout(timer);
    });
    // lines are taken while fewer than maxPipelined are in flight and the client reads its answers
    const pump = (): void => {
      while (!ended && inflight < limits.maxPipelined && !sock.writableNeedDrain) {
        const nl = buf.indexOf('\n');
        if (nl < 0) break;
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        // what follows is the next line: its deadline starts when it is waited for
        lineDeadline = undefined;
        if (!line) continue;
        inflight++;
        this.active++;
        chain = chain.then(async () => {
          let id: string | number | undefined;
          try {
            const decoded = decodeRequestLine(line);
            id = decoded.id;
            if (this.closing) throw new NspawnError('NETD_CLOSED', 'the sidecar is stopping; the request was not handled');
            const result = await handler(decoded.request);
            reply(id === undefined ? { ok: true, result } : { ok: true, id, result });
          } catch (err) {
            if (!(err instanceof BadRequestError)) log.debug(`request failed: ${errorMessage(err)}`);
            const error = errorBody(err);
            reply(id === undefined ? { ok: false, error } : { ok: false, id, error });
          } finally {
            inflight--;
            if (--this.active === 0) for (const w of this.whenIdle.splice(0)) w();
            pump();
          }
        });
      }
      if (!ended && buf.indexOf('\n') < 0 && Buffer.byteLength(buf) > MAX_REQUEST_BYTES) {
        finish(errorBody(new BadRequestError(`a request is at most ${MAX_REQUEST_BYTES} bytes, ending in a newline`)));
        return;
      }
      const busy = inflight >= limits.maxPipelined || sock.writableNeedDrain || buf.indexOf('\n') >= 0;
      if (busy) sock.pause();
      else if (!ended) sock.resume();
      arm();
    };
    sock.on('drain', pump);
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      if (ended) return;
      buf += chunk;
      pump();
    });
    arm();
  }

  /** Requests being answered now. */
  get inflight(): number {
    return this.active;
  }

  /**
   * Stops: no new connections (the socket file goes, so new clients find no sidecar), requests
   * taken from now on are answered NETD_CLOSED, and those being answered get up to `drainMs` to
   * finish — a client whose connection broke mid-request would do the work again itself, while
   * this process may still be doing it — then every connection is closed.
   */
  async close(drainMs = 0): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    try {
      unlinkSync(this.path);
    } catch { /* gone already */ }
    if (this.active > 0 && drainMs > 0) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.whenIdle.push(resolve)),
        new Promise<void>((resolve) => { t = setTimeout(resolve, drainMs); }),
      ]);
      clearTimeout(t);
    }
    for (const c of [...this.conns, ...this.refused]) c.destroy();
    await closed;
  }
}
