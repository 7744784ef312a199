"""A DISCOVER flood from one guest (issue 11, item 2): --count DISCOVERs, each as a new client
(--vary chaddr: a new random chaddr and client identifier; --vary client-id: this guest's own
chaddr under a new random client identifier), from this guest's own Ethernet source, at most --rate a second and
for at most --seconds; offers are counted as they come and for one second after the last DISCOVER.
Every offer the server makes is an address held out of the pool for its offer hold time.

  ip netns exec NS /usr/bin/python3 dhcp_flood.py --iface eth0 --count 300 --rate 500 --seconds 10 [--vary ...]
Prints {"sent", "offers", "offered": [distinct offered addresses], "seconds"}.
"""

import argparse
import time

from hostile_link import Link, dhcp_frame, new_identity, new_rng, print_result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rate", type=float, default=500.0, help="DISCOVERs a second, at most")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--vary", choices=["chaddr", "client-id"], default="chaddr")
    args = parser.parse_args()

    link = Link(args.iface)
    rng = new_rng()
    started = time.monotonic()
    deadline = started + min(args.seconds, 60.0)
    gap = 1.0 / max(1.0, min(args.rate, 10000.0))
    xids = set()
    offers = 0
    offered = set()

    def collect(until):
        nonlocal offers
        for kind, packet in link.dhcp_replies(max(0.0, until - time.monotonic()), xids):
            if kind == "offer":
                offers += 1
                offered.add(packet.yiaddr)

    sent = 0
    for _ in range(max(0, min(args.count, 10000))):
        if time.monotonic() >= deadline:
            break
        chaddr, client_id = new_identity(link, rng, args.vary)
        xid = rng.getrandbits(32)
        xids.add(xid)
        link.send(dhcp_frame(link.mac, chaddr, xid, "discover", [("client_id", client_id)]))
        sent += 1
        collect(time.monotonic() + gap)
    collect(min(time.monotonic() + 1.0, deadline + 1.0))
    link.close()
    print_result({"vary": args.vary, "sent": sent, "offers": offers, "offered": sorted(offered),
                  "seconds": round(time.monotonic() - started, 2)})


if __name__ == "__main__":
    main()
