"""Shared by the hostile-guest scripts: a raw Ethernet link on one interface, and DHCP frames.

Theory of operation. Every script here runs inside the attacking guest's network namespace
(`ip netns exec NS /usr/bin/python3 SCRIPT ...`, started by tests/e2e/ankanetd_hostile_test.cpp),
so whatever it sends stays on that guest's TAP, inside the namespaces the test created. It speaks
raw Ethernet through one scapy L2 socket (AF_PACKET on the interface), always from the interface's
own MAC, as a VM would: the switch drops frames with another VM's source MAC, and the attacks here
are about what a guest can do *without* that, by lying inside the DHCP or ARP payload.

Everything is bounded: each script takes a count and a time limit, every wait for a reply has a
timeout, and the scripts print one JSON object (what was sent, what came back) on stdout for the
test to read. Only the standard library and Debian's python3-scapy are used.
"""

import json
import os
import random
import select
import sys
import time

from scapy.config import conf
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.arch import get_if_hwaddr

conf.verb = 0
conf.checkIPaddr = False

BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
MESSAGE_TYPES = {1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak", 7: "release", 8: "inform"}


def mac_bytes(mac):
    """'52:54:00:aa:bb:cc' -> 6 bytes."""
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError("not a MAC address: " + mac)
    return raw


def random_mac(rng):
    """A locally administered unicast MAC (second hex digit 2, 6, a or e)."""
    octets = [rng.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join("%02x" % o for o in octets)


def client_id_for(mac):
    """The client identifier busybox udhcpc sends by default: type 1 (Ethernet) and the MAC."""
    return b"\x01" + mac_bytes(mac)


def new_identity(link, rng, vary):
    """(chaddr, client identifier) for one more pretend client of this guest. vary='chaddr': a new
    random chaddr and the client identifier udhcpc would send with it; vary='client-id': this
    guest's own MAC as chaddr, under a new random client identifier (01 + a random MAC), as a
    guest that knows chaddr is checked would try."""
    if vary == "chaddr":
        chaddr = random_mac(rng)
        return chaddr, client_id_for(chaddr)
    if vary == "client-id":
        return link.mac, client_id_for(random_mac(rng))
    raise ValueError("vary: chaddr or client-id, not " + str(vary))


def dhcp_frame(src_mac, chaddr, xid, message_type, options=(), ciaddr="0.0.0.0", ip_src="0.0.0.0",
               ip_dst="255.255.255.255", eth_dst=BROADCAST_MAC, broadcast=True):
    """One BOOTREQUEST from Ethernet source `src_mac` with `chaddr` inside; options before 'end'."""
    return (Ether(src=src_mac, dst=eth_dst) /
            IP(src=ip_src, dst=ip_dst) /
            UDP(sport=68, dport=67) /
            BOOTP(op=1, htype=1, hlen=6, xid=xid, flags=0x8000 if broadcast else 0, ciaddr=ciaddr,
                  chaddr=mac_bytes(chaddr) + b"\x00" * 10) /
            DHCP(options=[("message-type", message_type)] + list(options) + ["end"]))


def message_type(packet):
    """The DHCP message type of a reply ('offer', 'ack', 'nak', ...), or None."""
    if DHCP not in packet:
        return None
    for option in packet[DHCP].options:
        if isinstance(option, tuple) and option[0] == "message-type":
            return MESSAGE_TYPES.get(option[1], str(option[1]))
    return None


def option(packet, name):
    for o in packet[DHCP].options:
        if isinstance(o, tuple) and o[0] == name:
            return o[1]
    return None


class Link:
    """A raw socket on `iface`, sending from the interface's own MAC."""

    def __init__(self, iface):
        self.iface = iface
        self.mac = get_if_hwaddr(iface)
        self.sock = conf.L2socket(iface=iface)

    def send(self, frame):
        self.sock.send(frame)

    def receive(self, timeout):
        """The next frame received within `timeout` seconds, or None (also for our own frames)."""
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return None
        try:
            return self.sock.recv()
        except (OSError, TypeError, ValueError):
            return None

    def dhcp_replies(self, timeout, xids=None):
        """Yields (type, packet) of DHCP replies (BOOTREPLY to port 68) for `xids` until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            packet = self.receive(remaining)
            if packet is None or BOOTP not in packet or UDP not in packet:
                continue
            if packet[UDP].dport != 68 or packet[BOOTP].op != 2:
                continue
            if xids is not None and packet[BOOTP].xid not in xids:
                continue
            yield message_type(packet), packet

    def wait_reply(self, xid, types, timeout):
        """The first reply with `xid` whose type is in `types` within `timeout`, or (None, None)."""
        for kind, packet in self.dhcp_replies(timeout, {xid}):
            if kind in types:
                return kind, packet
        return None, None

    def close(self):
        self.sock.close()


def print_result(result):
    print(json.dumps(result, sort_keys=True))
    sys.stdout.flush()


def new_rng():
    return random.Random(int.from_bytes(os.urandom(8), "big"))


def garp(src_mac, address):
    """A gratuitous ARP request: `src_mac` claims `address`."""
    return Ether(src=src_mac, dst=BROADCAST_MAC) / ARP(op=1, hwsrc=src_mac, psrc=address, hwdst="00:00:00:00:00:00",
                                                       pdst=address)
