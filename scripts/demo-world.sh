#!/usr/bin/env bash
# Runs inside the private namespaces made by scripts/demo.sh. Builds a small world with
# documentation addresses, then starts busybox containers with `nspawn-ts -n` (embedded networking):
#
#   internet (netns)  203.0.113.1, a web server that tells each client the address it sees
#        | 192.0.2.254
#        | 192.0.2.1
#   this namespace = "the host" ---- ve-demo-* ---- container (host0, address configured at start)
#        | 198.51.100.1
#        | 198.51.100.2
#   client (netns)    fetches a port the host forwards to a container (-p tcp:8080:80)
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=${NSPAWN_TS_TEST_ROOTS:-/var/cache/nspawn-ts/roots}/busybox
BUSYBOX=$ROOT/bin/busybox
NSPAWN=(node bin/nspawn-ts)
step=0
say() { step=$((step + 1)); printf '\n[%d] %s\n' "$step" "$*"; }
indent() { sed 's/^/    /'; }

mount -t sysfs sysfs /sys
mkdir -p /run/nspawn-ts /var/lib/nspawn-ts /run/netns
mount -t tmpfs tmpfs /run/nspawn-ts      # machine records of this demo only
mount -t tmpfs tmpfs /var/lib/nspawn-ts  # network state of this demo only
ip link set lo up

www=$(mktemp -d)
cleanup() {
  [ -n "${web:-}" ] && kill "$web" 2>/dev/null || true
  [ -n "${web_pid:-}" ] && kill "$web_pid" 2>/dev/null || true
  ip netns del internet 2>/dev/null || true
  ip netns del client 2>/dev/null || true
  rm -rf "$www"
}
trap cleanup EXIT

say "The world: an \"internet\" namespace with a web server at 203.0.113.1, and a client at 198.51.100.2"
ip netns add internet
ip netns add client
ip link add uplink type veth peer name wan netns internet
ip addr add 192.0.2.1/24 dev uplink && ip link set uplink up
ip -n internet addr add 192.0.2.254/24 dev wan && ip -n internet link set wan up
ip -n internet addr add 203.0.113.1/32 dev lo && ip -n internet link set lo up
ip -n internet route add default via 192.0.2.254 dev wan 2>/dev/null || true
ip route add default via 192.0.2.254
ip link add lan type veth peer name eth0 netns client
ip addr add 198.51.100.1/24 dev lan && ip link set lan up
ip -n client addr add 198.51.100.2/24 dev eth0 && ip -n client link set eth0 up && ip -n client link set lo up
ip -n client route add default via 198.51.100.1
mkdir -p "$www/cgi-bin"
printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\nhello from 203.0.113.1; you came from %%s\\n" "$REMOTE_ADDR"\n' > "$www/cgi-bin/whoami"
chmod +x "$www/cgi-bin/whoami"
ip netns exec internet "$BUSYBOX" httpd -f -p 203.0.113.1:80 -h "$www" &
web=$!
ip -br addr | indent

say "A busybox container root (cached): $ROOT"
bash scripts/build-test-roots.sh busybox

say "nspawn-ts -x -n: a container on a veth; the launcher configures host0 before the command starts"
echo '    $ nspawn-ts -D busybox -M demo -x -n -- /bin/sh -c "ip addr show host0; ip route; cat /etc/resolv.conf; GET http://203.0.113.1/cgi-bin/whoami"'
start=$(date +%s%N)
"${NSPAWN[@]}" -D "$ROOT" -M demo -x -n -- /bin/sh -c '
  ip addr show host0 | grep -E "inet |link/ether"
  ip route
  cat /etc/resolv.conf | grep -v "^#"
  printf "GET /cgi-bin/whoami HTTP/1.0\r\nHost: 203.0.113.1\r\n\r\n" | nc 203.0.113.1 80 | tail -1
' 2>&1 | indent
echo "    (launch to exit: $(( ($(date +%s%N) - start) / 1000000 )) ms; the server saw the host's uplink address: masquerade)"

say "nspawn-ts -x -n -a -p tcp:8080:80: busybox httpd inside, published on the host's port 8080"
mkdir -p "$www/site" && echo "hello from the container's httpd" > "$www/site/index.html"
# --as-pid2: a stub init is PID 1 and forwards SIGTERM (httpd as PID 1 would ignore it)
"${NSPAWN[@]}" -D "$ROOT" -M web -x -n -a -p tcp:8080:80 --bind-ro="$www/site:/srv" -- /bin/busybox httpd -f -p 80 -h /srv &
web_pid=$!
ok=
for _ in $(seq 1 100); do
  # busybox's static wget crashes without glibc's NSS modules: plain HTTP over nc
  out=$(printf 'GET / HTTP/1.0\r\n\r\n' | ip netns exec client "$BUSYBOX" nc -w 1 198.51.100.1 8080 2>/dev/null | tail -1 || true)
  if [ -n "$out" ]; then ok=1; break; fi
  sleep 0.05
done
[ -n "$ok" ] || { echo "    the client could not reach 198.51.100.1:8080" >&2; exit 1; }
echo "    client 198.51.100.2 \$ GET http://198.51.100.1:8080/"
echo "$out" | indent
echo "    the port map the embedded subsystem installed (nft, table inet nspawn-ts):"
nft list map inet nspawn-ts ports4 2>/dev/null | grep -E "elements|:" | indent || true
kill -TERM "$web_pid"; wait "$web_pid" || true
web_pid=

say "After both containers exited: what is left on the host"
left=$(ip -o link show | awk -F': ' '{print $2}' | grep -E '^(ve-|vb-|vz-)' || true)
echo "    ve-/vb-/vz- links: ${left:-none}"
elems=$(nft -j list map inet nspawn-ts ports4 2>/dev/null | grep -c '"elem"' || true)
echo "    port mappings: ${elems:-0}"
[ -z "$left" ] || exit 1
echo
echo "demo: ok"
