"""Floods the NAT from one guest (issue 12: per-VM limits). Three attacks, each bounded by --count
(at most 5000 frames) and --seconds (at most 60):

  syn      TCP SYNs from this guest's address, each from a new source port, to GATEWAY:--port:
           each asks the translator for a new connection (a SYN flood when the host's connects hang);
  udp      UDP datagrams, each from a new source port, to GATEWAY:--port: each a new flow;
  spoofed  SYNs and datagrams to GATEWAY:--port from --source, an address no VM of the subnet can
           have: the translators must drop them without opening anything.

  ip netns exec NS /usr/bin/python3 nat_flood.py --iface eth0 --attack syn --port 5000 --count 500
Prints {"sent", "seconds"}.
"""

import argparse
import time

from scapy.arch import get_if_addr
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether, getmacbyip

from hostile_link import Link, new_rng, print_result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--attack", choices=("syn", "udp", "spoofed"), required=True)
    parser.add_argument("--gateway", default="192.168.64.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", default="10.99.0.1")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    link = Link(args.iface)
    gateway_mac = getmacbyip(args.gateway)
    if gateway_mac is None:
        print_result({"error": "no ARP answer from the gateway", "sent": 0, "seconds": 0})
        return
    own = get_if_addr(args.iface)
    rng = new_rng()
    count = max(0, min(args.count, 5000))
    started = time.monotonic()
    deadline = started + min(args.seconds, 60.0)
    sent = 0
    for i in range(count):
        if time.monotonic() >= deadline:
            break
        sport = 20000 + i
        base = Ether(src=link.mac, dst=gateway_mac)
        if args.attack == "syn":
            frames = [base / IP(src=own, dst=args.gateway) / TCP(sport=sport, dport=args.port, flags="S",
                                                                 seq=rng.getrandbits(32), window=65535)]
        elif args.attack == "udp":
            frames = [base / IP(src=own, dst=args.gateway) / UDP(sport=sport, dport=args.port) / b"flood"]
        else:
            frames = [base / IP(src=args.source, dst=args.gateway) / TCP(sport=sport, dport=args.port, flags="S",
                                                                         seq=rng.getrandbits(32)),
                      base / IP(src=args.source, dst=args.gateway) / UDP(sport=sport, dport=args.port) / b"spoof"]
        for frame in frames:
            link.send(frame)
            sent += 1
    link.close()
    print_result({"sent": sent, "seconds": round(time.monotonic() - started, 2)})


if __name__ == "__main__":
    main()
