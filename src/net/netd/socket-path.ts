// Where the sidecar listens, and the longest request line it takes. Its own module so that the
// launcher can look for the socket without loading node:net (client.ts) when no sidecar runs — the
// embedded start-up path — and nspawn-cni's thin client can size its one request without loading
// the API's checks (api.ts, which brings naming and ports).
export const DEFAULT_SOCKET = '/run/nspawn-ts/netd.sock';

/** A request line's limit in bytes (api.ts decodeRequestLine, server.ts). */
export const MAX_REQUEST_BYTES = 16 * 1024;

export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.NSPAWN_NETD_SOCKET || DEFAULT_SOCKET;
}
