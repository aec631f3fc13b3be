#!/usr/bin/env node
// Captures the golden netlink messages in this directory from the real iproute2 and kernel.
// There is no nlmon on the machines this project targets, so the bytes come from strace's full
// hex dump of every sendmsg/sendto/recvmsg the `ip` process makes:
//
//   strace -f -e trace=sendmsg,sendto,recvmsg -e write=all -e read=all -xx -s 65535 ip ...
//
// Each case runs in a fresh `unshare --net --mount` (so nothing touches this machine's network),
// after its set-up commands. Output: NAME.txt with the producing commands as `#` lines, then one
// datagram per line, `>` for what ip sent, `<` for what the kernel answered (MSG_PEEK reads, which
// carry no data, are skipped). Tests zero nlmsg_seq/nlmsg_pid before comparing.
//
// Run as root from the repository root: node test/golden/netlink/capture.mjs [NAME...]
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const veth = 'ip link add vtest type veth peer name vtest-p';

/** name → [set-up commands, the captured command, what it shows]. */
const cases = {
  'link-add-veth': ['', 'ip link add ve-foo type veth peer name host0', 'veth with a peer name'],
  'link-add-veth-full': ['ip netns add c1',
    'ip link add ve-foo address 02:00:00:00:00:01 mtu 1400 group 7 type veth peer name host0 address 02:00:00:00:00:02 netns c1',
    'veth with MACs, MTU, group, and the peer created in another netns (IFLA_NET_NS_FD is ip\'s fd of /run/netns/c1)'],
  'link-add-bridge': ['', 'ip link add vz-zone type bridge', 'bridge'],
  'link-add-macvlan-private': [veth, 'ip link add mv-x link vtest type macvlan mode private', 'macvlan mode private'],
  'link-add-macvlan-vepa': [veth, 'ip link add mv-x link vtest type macvlan mode vepa', 'macvlan mode vepa'],
  'link-add-macvlan-bridge': [veth, 'ip link add mv-x link vtest type macvlan mode bridge', 'macvlan mode bridge'],
  'link-add-macvlan-passthru': [veth, 'ip link add mv-x link vtest type macvlan mode passthru', 'macvlan mode passthru'],
  'link-add-macvlan-source': [veth, 'ip link add mv-x link vtest type macvlan mode source', 'macvlan mode source'],
  'link-add-macvlan-netns': [`${veth}; ip netns add c1`, 'ip link add mv-x link vtest netns c1 type macvlan mode bridge',
    'macvlan created directly inside another netns'],
  'link-add-ipvlan-l2': [veth, 'ip link add iv-x link vtest type ipvlan mode l2', 'ipvlan l2 (this kernel has no ipvlan: the reply is its error)'],
  'link-add-ipvlan-l3': [veth, 'ip link add iv-x link vtest type ipvlan mode l3', 'ipvlan l3'],
  'link-add-ipvlan-l3s': [veth, 'ip link add iv-x link vtest type ipvlan mode l3s', 'ipvlan l3s'],
  'link-add-ipvlan-l3-private': [veth, 'ip link add iv-x link vtest type ipvlan mode l3 private', 'ipvlan l3 with IPVLAN_F_PRIVATE'],
  'link-add-ipvlan-l2-vepa': [veth, 'ip link add iv-x link vtest type ipvlan mode l2 vepa', 'ipvlan l2 with IPVLAN_F_VEPA'],
  'link-set-up': [veth, 'ip link set dev vtest up', 'up'],
  'link-set-down': [`${veth}; ip link set vtest up`, 'ip link set dev vtest down', 'down'],
  'link-set-master': [`${veth}; ip link add br0 type bridge`, 'ip link set dev vtest master br0', 'set master'],
  'link-set-nomaster': [`${veth}; ip link add br0 type bridge; ip link set vtest master br0`, 'ip link set dev vtest nomaster', 'unset master'],
  'link-set-name': [veth, 'ip link set dev vtest name vrenamed', 'rename'],
  'link-set-netns': [`${veth}; ip netns add c1`, 'ip link set dev vtest netns c1', 'move to another netns by fd'],
  'link-set-mtu': [veth, 'ip link set dev vtest mtu 1400', 'MTU'],
  'link-set-group': [veth, 'ip link set dev vtest group 7', 'link group'],
  'link-altname-add': [veth, 'ip link property add dev vtest altname vtest-alt', 'RTM_NEWLINKPROP'],
  'link-altname-del': [`${veth}; ip link property add dev vtest altname vtest-alt`, 'ip link property del dev vtest altname vtest-alt', 'RTM_DELLINKPROP'],
  'link-del': [veth, 'ip link del dev vtest', 'delete by name'],
  'link-del-group': [`${veth}; ip link set vtest group 7`, 'ip link del group 7', 'bulk delete by group'],
  'link-show-veth': [veth, 'ip -d link show dev vtest', 'the kernel\'s reply for one veth link'],
  'link-show-bridge': ['ip link add vz-zone type bridge', 'ip -d link show dev vz-zone', 'the kernel\'s reply for a bridge (IFLA_INFO_DATA with IFLA_BR_*)'],
  'link-show-macvlan': [`${veth}; ip link add mv-x link vtest type macvlan mode source`, 'ip -d link show dev mv-x', 'the kernel\'s reply for a macvlan'],
  'link-show-altname': [`${veth}; ip link property add dev vtest altname vtest-alt`, 'ip -d link show dev vtest', 'IFLA_PROP_LIST in a reply'],
  'link-dump': [`${veth}; ip link add vz-zone type bridge; ip link set vtest master vz-zone`, 'ip link show', 'a multi-part link dump'],
  'addr-add-v4': [veth, 'ip addr add 192.0.2.1/24 dev vtest', 'IPv4 address'],
  'addr-add-v4-brd': [veth, 'ip addr add 192.0.2.1/24 broadcast + dev vtest', 'IPv4 address with broadcast'],
  'addr-add-v6': [veth, 'ip addr add 2001:db8::1/64 dev vtest nodad', 'IPv6 address without DAD'],
  'addr-del-v4': [`${veth}; ip addr add 192.0.2.1/24 dev vtest`, 'ip addr del 192.0.2.1/24 dev vtest', 'delete IPv4 address'],
  'addr-dump': [`${veth}; ip link set vtest up; ip addr add 192.0.2.1/24 dev vtest; ip addr add 2001:db8::1/64 dev vtest nodad`, 'ip addr show dev vtest', 'an address dump'],
  'route-add-default-v4': [`${veth}; ip link set vtest up; ip addr add 192.0.2.1/24 dev vtest`, 'ip route add default via 192.0.2.254', 'IPv4 default route'],
  'route-add-v4': [`${veth}; ip link set vtest up; ip addr add 192.0.2.1/24 dev vtest`, 'ip route add 198.51.100.0/24 via 192.0.2.254 dev vtest metric 100', 'IPv4 route with device and metric'],
  'route-add-default-v6': [`${veth}; ip link set vtest up; ip addr add 2001:db8::1/64 dev vtest nodad`, 'ip -6 route add default via 2001:db8::fe dev vtest', 'IPv6 default route'],
  'route-del-default-v4': [`${veth}; ip link set vtest up; ip addr add 192.0.2.1/24 dev vtest; ip route add default via 192.0.2.254`, 'ip route del default via 192.0.2.254', 'delete the IPv4 default route'],
  'route-dump': [`${veth}; ip link set vtest up; ip addr add 192.0.2.1/24 dev vtest; ip route add default via 192.0.2.254`, 'ip route show', 'an IPv4 route dump'],
  'error-eexist': ['ip link add ve-foo type veth peer name host0', 'ip link add ve-foo type veth peer name host1', 'the kernel\'s error for a duplicate name'],
};

function parse(out) {
  const datagrams = [];
  let cur;
  for (const raw of out.split('\n')) {
    const line = raw.replace(/^\[pid\s+\d+\]\s*/, '');
    const call = /^(sendmsg|sendto|recvmsg)\(/.exec(line);
    if (call) {
      cur = /MSG_PEEK/.test(line) ? undefined : { dir: call[1] === 'recvmsg' ? '<' : '>', bytes: [] };
      if (cur) datagrams.push(cur);
      continue;
    }
    const at = line.indexOf('| ');
    if (cur && at >= 0 && /^\s*\| [0-9a-f]{5}  /.test(line)) {
      cur.bytes.push(...(line.slice(at + 9, at + 9 + 49).match(/[0-9a-f]{2}/g) ?? []));
    } else if (!/^\s*\* \d+ bytes in buffer/.test(line) && !/^\s*\|/.test(line)) {
      cur = undefined;
    }
  }
  return datagrams.filter((d) => d.bytes.length > 0);
}

const versions = [
  spawnSync('ip', ['-V'], { encoding: 'utf8' }).stdout.trim(),
  spawnSync('strace', ['-V'], { encoding: 'utf8' }).stdout.split('\n')[0],
  `kernel ${spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim()}`,
].join('; ');

const wanted = process.argv.slice(2);
for (const [name, [setup, cmd, what]] of Object.entries(cases)) {
  if (wanted.length && !wanted.includes(name)) continue;
  const script = `set -e; mkdir -p /run/netns; mount -t tmpfs tmpfs /run/netns; ip link set lo up; ${setup ? `${setup};` : ''} strace -f -e trace=sendmsg,sendto,recvmsg -e write=all -e read=all -xx -s 65535 ${cmd} || true`;
  const r = spawnSync('unshare', ['--net', '--mount', '--propagation', 'private', 'bash', '-c', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${name}: ${r.stderr}`);
  const datagrams = parse(r.stderr);
  if (!datagrams.length) throw new Error(`${name}: nothing captured:\n${r.stderr}`);
  const text = [
    `# ${what}`,
    ...(setup ? [`# setup: ${setup}`] : []),
    `# command: ${cmd}`,
    `# captured by test/golden/netlink/capture.mjs (${versions})`,
    ...datagrams.map((d) => `${d.dir} ${d.bytes.join('')}`),
  ].join('\n') + '\n';
  writeFileSync(join(here, `${name}.txt`), text);
  console.log(`${name}: ${datagrams.map((d) => `${d.dir}${d.bytes.length}`).join(' ')}`);
}
