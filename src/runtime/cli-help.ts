// --help and --version of nspawn-ts.
import { PROGRAM, VERSION } from './cli-values.js';

// ---------------------------------------------------------------------------------------------
// Help and version

export function versionText(): string {
  return `${PROGRAM} ${VERSION}\ncommand line and .nspawn files of systemd-nspawn 252`;
}

export function helpText(): string {
  return `${PROGRAM} [OPTIONS...] [PATH] [ARGUMENTS...]

Spawn a command or OS in a lightweight container.

  -h --help                 Show this help
     --version              Print version string
  -q --quiet                Do not show status information
  -v --verbose              Show debug messages (as NSPAWN_TS_LOG=debug)
     --no-pager             Accepted; nothing is paged
     --settings=BOOLEAN     Load additional settings from .nspawn file
                            (yes, no, trusted, override)

Image:
  -D --directory=PATH       Root directory for the container
     --template=PATH        Initialize root directory from template directory,
                            if missing
  -x --ephemeral            Run container with snapshot of root directory, and
                            remove it after exit

Execution:
  -a --as-pid2              Maintain a stub init as PID1, invoke binary as PID2
  -b --boot                 Boot up full system (i.e. invoke init)
     --chdir=PATH           Set working directory in the container
  -E --setenv=NAME=VALUE    Pass an environment variable to PID 1
  -u --user=USER            Run the command under specified user or UID
     --kill-signal=SIGNAL   Select signal to use for shutting down PID 1

System Identity:
  -M --machine=NAME         Set the machine name for the container
     --hostname=NAME        Override the hostname for the container

Properties:
     --property=NAME=VALUE  Set a resource-control property of the container
     --register=BOOLEAN     Record the container in the machine registry
                            (/run/nspawn-ts/machines; machinectl-ts reads it)
     --keep-unit            Do not create a scope for the container; stay in
                            the caller's cgroup

User Namespacing:
     --private-users=no|yes|pick|identity|UID[:COUNT]
                            Run within user namespace, configure UID/GID range
     --private-users-chown  Adjust OS tree ownership to private UID/GID range
     --private-users-ownership=MODE
                            Adjust ('chown') or map ('map') OS tree ownership
                            to private UID/GID range (off, chown, map, auto)
  -U                        Equivalent to --private-users=pick (ownership
                            adjusted automatically), if the kernel supports it

Networking:
     --private-network      Disable network in container
     --network-interface=INTERFACE
                            Assign an existing network interface to the
                            container
     --network-macvlan=INTERFACE
                            Create a macvlan network interface based on an
                            existing network interface to the container
     --network-ipvlan=INTERFACE
                            Create an ipvlan network interface based on an
                            existing network interface to the container
  -n --network-veth         Add a virtual Ethernet connection between host
                            and container
     --network-veth-extra=HOSTIF[:CONTAINERIF]
                            Add an additional virtual Ethernet link between
                            host and container
     --network-bridge=INTERFACE
                            Add a virtual Ethernet connection to the container
                            and attach it to an existing bridge on the host
     --network-zone=NAME    Similar, but attach the new interface to an
                            automatically managed bridge interface
     --network-namespace-path=PATH
                            Set network namespace to the one represented by
                            the specified kernel namespace file node
  -p --port=[PROTOCOL:]HOSTPORT[:CONTAINERPORT]
                            Expose a container IP port on the host
     --port-loopback        Also forward the ports for connections to
                            127.0.0.1 on the host (not in systemd-nspawn)
     --network-config=auto|static|dhcp
                            How host0 gets its address: configured before the
                            command starts (static), left to a DHCP client in
                            the container (dhcp), or static unless the
                            container boots (auto; not in systemd-nspawn)

Integration:
     --notify-ready=BOOLEAN Wait for the container to send READY=1 to
                            /run/host/notify before reporting READY=1 to
                            $NOTIFY_SOCKET
     --resolv-conf=MODE     Select mode of /etc/resolv.conf initialization
                            (off, copy-host, copy-static, copy-uplink,
                            copy-stub, replace-*, bind-*, delete, auto)
     --link-journal=MODE    Link up guest journal, one of no, auto, guest,
                            host, try-guest, try-host
  -j                        Equivalent to --link-journal=try-guest

Mounts:
     --bind=PATH[:PATH[:OPTIONS]]
                            Bind mount a file or directory from the host into
                            the container (OPTIONS: rbind, norbind, idmap,
                            noidmap, rootidmap, owneridmap)
     --bind-ro=PATH[:PATH[:OPTIONS]]
                            Similar, but creates a read-only bind mount
     --tmpfs=PATH:[OPTIONS] Mount an empty tmpfs to the specified directory

Input/Output:
     --console=MODE         Select how stdin/stdout/stderr and /dev/console are
                            set up for the container (interactive, read-only,
                            passive, pipe, autopipe)
  -P --pipe                 Equivalent to --console=pipe

Other options of systemd-nspawn are refused with an error naming them.
Networking works without systemd-networkd: the host side of -n/--network-zone
gets an address, DHCP, NAT and port forwarding from ${PROGRAM}'s network
subsystem (or from a running nspawn-netd).
`;
}
