#!/usr/bin/env bash
# Captures the DHCP packets real clients send, as golden bytes for test/unit/dhcp/golden.test.ts.
# Run as root: bash test/golden/dhcp/capture.sh  (it re-executes itself under `unshare -n -m`, so
# nothing touches the machine's own network). A reference server (dnsmasq) answers in namespace
# "gsrv"; each client runs in namespace "gcli" on the other end of a veth; tcpdump in gsrv writes
# every UDP port 67/68 packet; each client's packets are written as `<client>.txt`: one packet per
# line, "<message type> <hex of the UDP payload>", in the order they were sent.
set -euo pipefail
if [ "${GOLDEN_INNER:-}" != 1 ]; then
  exec env GOLDEN_INNER=1 unshare --net --mount --propagation private -- bash "$0" "$@"
fi
out=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns
ip link set lo up
# dhcpcd keeps leases in /var/lib/dhcpcd and its sockets in /run/dhcpcd: private ones.
mount -t tmpfs tmpfs /var/lib/dhcpcd; mount -t tmpfs tmpfs /run/dhcpcd
ip netns add gsrv; ip netns add gcli
ip link add gs0 netns gsrv type veth peer name gc0 netns gcli
ip -n gcli link set gc0 address 02:00:00:00:00:42
ip -n gsrv addr add 192.0.2.1/24 dev gs0
ip -n gsrv link set gs0 up; ip -n gcli link set gc0 up; ip -n gsrv link set lo up; ip -n gcli link set lo up
ip netns exec gsrv dnsmasq --keep-in-foreground --no-daemon --port=0 --interface=gs0 --bind-interfaces --no-ping \
  --dhcp-range=192.0.2.100,192.0.2.200,255.255.255.0,600 --dhcp-leasefile="$work/dnsmasq.leases" \
  --pid-file="$work/dnsmasq.pid" --log-facility=- >"$work/dnsmasq.log" 2>&1 &
dns=$!
trap 'kill $dns 2>/dev/null || true; sleep 0.2; rm -rf "$work"' EXIT
sleep 0.5
capture() { # name, then the client command (run in gcli)
  local name=$1; shift
  ip netns exec gsrv tcpdump -i gs0 --immediate-mode -U -w "$work/$name.pcap" "udp and (port 67 or port 68)" 2>"$work/$name.tcpdump" &
  local td=$!
  sleep 0.5
  ip netns exec gcli "$@" >"$work/$name.log" 2>&1 || true
  sleep 1
  kill $td; wait $td 2>/dev/null || true
  # Client packets only (source port 68), as UDP payload hex.
  ip netns exec gsrv tcpdump -r "$work/$name.pcap" -x 'udp src port 68' 2>/dev/null | node -e '
    const lines = require("fs").readFileSync(0, "utf8").split("\n");
    const pkts = []; let cur = null;
    for (const l of lines) {
      if (/^\S/.test(l)) { if (cur) pkts.push(cur); cur = ""; continue; }
      const m = l.match(/^\s+0x[0-9a-f]+:\s+(.*)$/); if (m && cur !== null) cur += m[1].replace(/\s+/g, "");
    }
    if (cur) pkts.push(cur);
    const names = {1:"DISCOVER",2:"OFFER",3:"REQUEST",4:"DECLINE",5:"ACK",6:"NAK",7:"RELEASE",8:"INFORM"};
    for (const ip of pkts) {
      const ihl = (parseInt(ip.slice(1, 2), 16)) * 4 * 2;  // hex chars
      const payload = ip.slice(ihl + 16);  // skip the UDP header
      const b = Buffer.from(payload, "hex");
      let t = "?"; for (let i = 240; i < b.length;) { const c = b[i]; if (c === 0) { i++; continue; } if (c === 255) break; if (c === 53) { t = names[b[i+2]] ?? "?"; break; } i += 2 + b[i+1]; }
      console.log(t + " " + payload);
    }' >"$out/$name.txt"
  echo "captured $name: $(wc -l <"$out/$name.txt") packets" >&2
}
cat >"$work/client.script" <<'S'
#!/bin/sh
# Configures the leased address (so a later unicast RELEASE has a source), nothing else.
case "$1$reason" in
  bound|renew|BOUND|RENEW|REBOOT) ip addr replace "${ip:-$new_ip_address}/24" dev "${interface:-gc0}" ;;
esac
exit 0
S
chmod +x "$work/client.script"
# udhcpc (Debian's udhcpc package): obtain a lease and release it (-R) on exit.
capture udhcpc udhcpc -i gc0 -q -n -R -t 5 -T 1 -x hostname:golden-udhcpc -s "$work/client.script"
ip -n gcli addr flush dev gc0
# dhcpcd: IPv4 only, configures nothing but the address; obtain, then release (-k).
capture dhcpcd sh -c "dhcpcd -4 -1 -t 10 --nohook resolv.conf --nohook hostname -h golden-dhcpcd --config /dev/null gc0; sleep 0.5; dhcpcd -4 -k --config /dev/null gc0; sleep 1"
ip -n gcli addr flush dev gc0
# dhclient: obtain; start again with the lease in hand (INIT-REBOOT); release (-r).
dhc="-4 -lf $work/dhclient.leases -pf $work/dhclient.pid -sf $work/client.script"
capture dhclient sh -c "timeout 3 dhclient -1 -d $dhc gc0; ip addr flush dev gc0; timeout 3 dhclient -1 -d $dhc gc0; dhclient -r $dhc gc0"
