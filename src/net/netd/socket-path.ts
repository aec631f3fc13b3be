// Where the sidecar listens. Its own module so that the launcher can look for the socket without
// loading node:net (client.ts) when no sidecar runs — the embedded start-up path.
export const DEFAULT_SOCKET = '/run/nspawn-ts/netd.sock';

export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.NSPAWN_NETD_SOCKET || DEFAULT_SOCKET;
}
