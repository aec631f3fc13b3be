#!/usr/bin/env bash
# podman (CNI backend) with nspawn-cni on this sandbox, in a mount namespace of its own (the caller
# runs it under `unshare -m --propagation private`): what cni-podman.md says podman needs here —
# no hybrid cgroup2 for crun, ulimits within the hard limit, a private containers.conf and network
# directory, libcni's result cache on a tmpfs — then the scenario of the CNI end-to-end test.
# Prints KEY=VALUE lines for the test to check; removes every container whatever happens.
#   podman-cni.sh WORKDIR PLUGIN ROOTFS REMOTE HOST_UPLINK UPLINK_NETNS MODE HOST_UPLINK6   (MODE: zone or veth)
set -euo pipefail
W=$1 PLUGIN=$2 ROOTFS=$3 REMOTE=$4 HOST_UPLINK=$5 UPLINK=$6 MODE=$7 HOST_UPLINK6=$8
mkdir -p "$W/net" "$W/plugins" "$W/root" "$W/runroot" "$W/state" "$W/cnicache"
umount /sys/fs/cgroup/unified 2>/dev/null || true
mount --bind "$W/cnicache" /var/lib/cni 2>/dev/null || { mkdir -p /var/lib/cni; mount --bind "$W/cnicache" /var/lib/cni; }
ln -sf "$PLUGIN" "$W/plugins/nspawn-cni"
n=$(ulimit -Hn)
cat > "$W/containers.conf" <<C
[containers]
cgroups = "disabled"
default_ulimits = ["nofile=$n:$n", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "cni"
cni_plugin_dirs = ["$W/plugins", "/usr/lib/cni"]
network_config_dir = "$W/net"
C
# a plugin entry with nothing but its type (and capabilities, and a state directory of the test's; veth: the mode)
MODE_KEY=""
[ "$MODE" = zone ] || MODE_KEY="\"mode\":\"$MODE\","

cat > "$W/net/podnet.conflist" <<C
{"cniVersion":"1.0.0","name":"podnet","plugins":[{"type":"nspawn-cni",$MODE_KEY"stateDir":"$W/state","capabilities":{"portMappings":true,"aliases":true}}]}
C
export CONTAINERS_CONF="$W/containers.conf"
p() { podman --root "$W/root" --runroot "$W/runroot" "$@"; }
# podman's and crun's runtime directories in /run (tmp_dir, the OCI state) go too, unless they were there
keep_run=""
for d in /run/libpod /run/crun; do [ -e "$d" ] && keep_run="$keep_run $d"; done
trap 'p rm -f -a -t 0 >/dev/null 2>&1 || true
for d in /run/libpod /run/crun; do case " $keep_run " in *" $d "*) ;; *) rm -rf "$d" ;; esac; done' EXIT

p run -d --name web --network podnet -p 8080:80 --rootfs "$ROOTFS" sh -c 'echo web-ok > /tmp/index.html; exec httpd -f -p 80 -h /tmp' >/dev/null
p run -d --name other --network podnet --rootfs "$ROOTFS" sleep 1000 >/dev/null
for c in web other; do
  echo "ADDR_$c=$(p inspect -f '{{.NetworkSettings.Networks.podnet.IPAddress}}' $c)"
  echo "ROUTE_$c=$(p exec $c ip route show default | tr -s ' ' | tr '\n' ' ')"
  echo "ADDR6_$c=$(p inspect -f '{{.NetworkSettings.Networks.podnet.GlobalIPv6Address}}' $c)"
done
web=$(p inspect -f '{{.NetworkSettings.Networks.podnet.IPAddress}}' web)
echo "PING_other_web=$(p exec other ping -c 1 -W 3 "$web" >/dev/null 2>&1 && echo ok || echo failed)"
echo "NEIGHBOUR=$(p exec other sh -c "printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc -w 5 $web 80" | tail -1)"
echo "REMOTE=$(p exec other sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 $REMOTE 80" | tail -1)"
echo "LINKS_UP=$(ip -br link | awk '{print $1}' | tr '\n' ' ')"
echo "STATE_UP=$(tr -d '\n' < "$W/state/netd/state.json")"
# -p 8080:80 from a client elsewhere (the uplink namespace) to the host's address
echo "PORT=$(printf 'GET /index.html HTTP/1.0\r\n\r\n' | ip netns exec "$UPLINK" busybox nc -w 5 "$HOST_UPLINK" 8080 | tail -1)"
# … and over IPv6, to the host's IPv6 address
echo "PORT6=$(printf 'GET /index.html HTTP/1.0\r\n\r\n' | ip netns exec "$UPLINK" busybox nc -w 5 "$HOST_UPLINK6" 8080 | tail -1)"
p rm -f -t 0 web other >/dev/null
echo "DONE=1"
