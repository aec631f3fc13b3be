// The bridge port a request came in on. The packet socket (transport.ts, ETH_P_ALL) sees a zone
// container's frame first as its bridge port received it — that port is not served, the bridge is —
// and right after as the bridge hands it up. The transport remembers the port's copy here by the
// DHCP xid and the Ethernet source, and the bridge's copy that follows takes it: the transport
// delivers that one frame with its port, and the server counts the request toward the port
// (decide.ts: the per-source cap), which a container cannot choose, where it can choose its
// Ethernet source. A fixed ring: copies no bridge copy takes (ports of bridges
// not served, frames on other links) are overwritten oldest first. No allocation per frame.
import { readIpv4 } from './ipv4.js';

const SIZE = 64;

export class IngressPorts {
  private readonly xids = new Uint32Array(SIZE);
  private readonly macs = new Uint8Array(SIZE * 6);
  /** 0: a free slot */
  private readonly ports = new Int32Array(SIZE);
  private next = 0;
  private used = 0;

  /** A copy from a link that is not served (`payload`: the DHCP message). */
  note(ifindex: number, srcMac: Uint8Array, payload: Uint8Array): void {
    if (payload.length < 8 || srcMac.length !== 6 || ifindex <= 0) return;
    const i = this.next;
    this.next = (i + 1) % SIZE;
    if (this.ports[i] === 0) this.used++;
    this.ports[i] = ifindex;
    this.xids[i] = readIpv4(payload, 4);
    this.macs.set(srcMac, i * 6);
  }

  /** The port of the newest remembered copy with this xid and source (forgotten then), or undefined. */
  take(srcMac: Uint8Array, payload: Uint8Array): number | undefined {
    if (this.used === 0 || payload.length < 8 || srcMac.length !== 6) return undefined;
    const xid = readIpv4(payload, 4);
    for (let n = 1; n <= SIZE; n++) {
      const i = (this.next - n + SIZE) % SIZE;
      const port = this.ports[i] as number;
      if (port === 0 || this.xids[i] !== xid) continue;
      const m = i * 6;
      let same = true;
      for (let b = 0; b < 6; b++) if (this.macs[m + b] !== srcMac[b]) { same = false; break; }
      if (!same) continue;
      this.ports[i] = 0;
      this.used--;
      return port;
    }
    return undefined;
  }
}
