#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/frame_fuzz.cpp and fuzz/network_fuzz.cpp.

    python3 fuzz/support/make_frame_corpora.py        # from the repository's root

fuzz/corpus/frame/<name>: one Ethernet frame each. fuzz/corpus/network/<name>: programs in the
operation format documented at the top of fuzz/network_fuzz.cpp, made of the same frames. The
frames are real: the DHCP messages are udhcpc's (BusyBox 1.35.0), captured on a veth pair (their
UDP payloads are in tests/support/dhcp_captures.hpp, which this script reads); the ARP and ICMP
frames are what a Linux guest (52:54:00:12:34:56, leased 192.168.64.107) sends to its gateway
192.168.64.1 (iputils ping's 56-byte payload). Checksums are computed here, so every frame is valid
as written.
"""
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GUEST_MAC = bytes.fromhex("525400123456")
OTHER_MAC = bytes.fromhex("525400abcdef")
GATEWAY_MAC = bytes.fromhex("02616e6b6101")
BROADCAST = b"\xff" * 6
GUEST_IP = bytes([192, 168, 64, 107])
GATEWAY_IP = bytes([192, 168, 64, 1])


def captures():
    text = open(os.path.join(ROOT, "tests/support/dhcp_captures.hpp")).read()
    out = {}
    for name, body in re.findall(r"inline constexpr std::string_view (\w+) =\s*//[^\n]*\n((?:\s*\"[0-9a-f]*\"\s*)+);", text):
        out[name] = bytes.fromhex("".join(re.findall(r"\"([0-9a-f]*)\"", body)))
    return out


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def ethernet(dst, src, ethertype, payload):
    return dst + src + struct.pack("!H", ethertype) + payload


def ipv4(src, dst, protocol, payload, ident=0x1c46, flags_fragment=0x4000, ttl=64):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags_fragment, ttl, protocol, 0, src, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def udp(src_ip, dst_ip, sport, dport, payload):
    length = 8 + len(payload)
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, 17, length)
    datagram = struct.pack("!HHHH", sport, dport, length, 0) + payload
    value = checksum(pseudo + datagram) or 0xFFFF
    return datagram[:6] + struct.pack("!H", value) + datagram[8:]


def tcp_syn(src_ip, dst_ip, sport, dport):
    options = bytes.fromhex("020405b40402080a0001e2400000000001030307")
    header = struct.pack("!HHIIBBHHH", sport, dport, 0x3A1B2C3D, 0, (5 + len(options) // 4) << 4, 0x02, 64240, 0, 0) + options
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, 6, len(header))
    return header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]


def icmp_echo(identifier, sequence, data):
    message = struct.pack("!BBHHH", 8, 0, 0, identifier, sequence) + data
    return message[:2] + struct.pack("!H", checksum(message)) + message[4:]


def arp(operation, sender_mac, sender_ip, target_mac, target_ip):
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, operation) + sender_mac + sender_ip + target_mac + target_ip


PING_DATA = bytes(range(0x10, 0x10 + 8)) + bytes(range(0x10, 0x10 + 48))  # 56 bytes, as iputils

caps = captures()
FRAMES = {
    # who-has 192.168.64.1 tell 192.168.64.107 (padded to 60 bytes, as Linux sends it)
    "arp_request_gateway": ethernet(BROADCAST, GUEST_MAC, 0x0806,
                                    arp(1, GUEST_MAC, GUEST_IP, b"\0" * 6, GATEWAY_IP) + b"\0" * 18),
    # RFC 5227 probe for the leased address, then the announcement
    "arp_probe": ethernet(BROADCAST, GUEST_MAC, 0x0806, arp(1, GUEST_MAC, b"\0" * 4, b"\0" * 6, GUEST_IP) + b"\0" * 18),
    "arp_announce": ethernet(BROADCAST, GUEST_MAC, 0x0806, arp(1, GUEST_MAC, GUEST_IP, b"\0" * 6, GUEST_IP) + b"\0" * 18),
    "dhcp_discover": ethernet(BROADCAST, GUEST_MAC, 0x0800,
                              ipv4(b"\0" * 4, b"\xff" * 4, 17, udp(b"\0" * 4, b"\xff" * 4, 68, 67, caps["udhcpc_discover"]),
                                   ident=0, flags_fragment=0)),
    "dhcp_request": ethernet(BROADCAST, GUEST_MAC, 0x0800,
                             ipv4(b"\0" * 4, b"\xff" * 4, 17, udp(b"\0" * 4, b"\xff" * 4, 68, 67, caps["udhcpc_request"]),
                                  ident=0, flags_fragment=0)),
    "icmp_echo_gateway": ethernet(GATEWAY_MAC, GUEST_MAC, 0x0800, ipv4(GUEST_IP, GATEWAY_IP, 1, icmp_echo(0x2a, 1, PING_DATA))),
    "tcp_syn": ethernet(GATEWAY_MAC, GUEST_MAC, 0x0800,
                        ipv4(GUEST_IP, bytes([93, 184, 216, 34]), 6, tcp_syn(GUEST_IP, bytes([93, 184, 216, 34]), 43512, 443))),
    "udp_dns": ethernet(GATEWAY_MAC, GUEST_MAC, 0x0800,
                        ipv4(GUEST_IP, GATEWAY_IP, 17, udp(GUEST_IP, GATEWAY_IP, 51234, 53,
                                                           bytes.fromhex("1f2a01000001000000000000076578616d706c65036f72670000010001")))),
    # the second fragment of a big ping (offset 1480): no ports, no ICMP header
    "ipv4_later_fragment": ethernet(GATEWAY_MAC, GUEST_MAC, 0x0800,
                                    ipv4(GUEST_IP, GATEWAY_IP, 1, bytes(range(64)), ident=0x77, flags_fragment=185)),
    # an 802.1Q-tagged ARP request (VLAN 10): parsed as Ethernet only
    "vlan_arp": BROADCAST + GUEST_MAC + bytes.fromhex("8100000a0806") + arp(1, GUEST_MAC, GUEST_IP, b"\0" * 6, GATEWAY_IP),
}
# IPv4 with options (IHL 6, a router alert) carrying UDP (mDNS), built by hand.
_payload = udp(GUEST_IP, bytes([224, 0, 0, 251]), 5353, 5353, b"\0" * 12)
_header = struct.pack("!BBHHHBBH4s4s", 0x46, 0, 24 + len(_payload), 0x99, 0x4000, 1, 17, 0, GUEST_IP, bytes([224, 0, 0, 251]))
_header += bytes.fromhex("94040000")
_header = _header[:10] + struct.pack("!H", checksum(_header)) + _header[12:]
FRAMES["ipv4_options_udp"] = ethernet(bytes.fromhex("01005e0000fb"), GUEST_MAC, 0x0800, _header + _payload)


# --- the network target's programs -----------------------------------------------------------------

def frame_op(slot, frame, src=0, dst=0, repair=True, arp_sender=False, src_slot=None, dst_slot=None, stale=False):
    flags = src | (dst << 2) | (0x10 if repair else 0) | (0x20 if arp_sender else 0)
    out = bytes([0, slot | (0x80 if stale else 0), flags])
    if src == 2:
        out += bytes([src_slot])
    if dst == 3:
        out += bytes([dst_slot])
    return out + struct.pack("!H", len(frame)) + frame


def clock(v):
    return bytes([2, v])


def link(slot, up):
    return bytes([3, slot | (0x80 if up else 0)])


def remove(slot):
    return bytes([4, slot])


def add(slot):
    return bytes([5, slot])


POLL = bytes([6])


def readd(slot):
    return bytes([7, slot])


def setup(isolate=False, mtu_index=0):
    return bytes([(1 if isolate else 0) | (mtu_index << 1)])


F = FRAMES
FIRST_MAC = bytes.fromhex("5a94efe40cee")  # what slot 3 (from_first_frame) will turn out to be
first_probe = ethernet(BROADCAST, FIRST_MAC, 0x0806, arp(1, FIRST_MAC, b"\0" * 4, b"\0" * 6, bytes([192, 168, 64, 50])) + b"\0" * 18)
# the second guest (slot 1, 52:54:00:ab:cd:ef): its reserved address, 192.168.64.110
B_IP = bytes([192, 168, 64, 110])
b_arp_request = ethernet(BROADCAST, OTHER_MAC, 0x0806, arp(1, OTHER_MAC, B_IP, b"\0" * 6, GATEWAY_IP) + b"\0" * 18)
b_arp_announce = ethernet(BROADCAST, OTHER_MAC, 0x0806, arp(1, OTHER_MAC, B_IP, b"\0" * 6, B_IP) + b"\0" * 18)
b_ping_a = ethernet(GUEST_MAC, OTHER_MAC, 0x0800, ipv4(B_IP, GUEST_IP, 1, icmp_echo(0x31, 1, PING_DATA)))
mid_ping = ethernet(GATEWAY_MAC, GUEST_MAC, 0x0800, ipv4(GUEST_IP, GATEWAY_IP, 1, icmp_echo(0x2b, 1, bytes(500))))  # 542 bytes: MTU 576 carries it

PROGRAMS = {
    # the gateway answers ARP, then a ping to its MAC
    "arp_then_ping": setup() + frame_op(0, F["arp_request_gateway"]) + frame_op(0, F["icmp_echo_gateway"]),
    # a guest gets its lease: DISCOVER, OFFER, REQUEST, ACK; then announces it and pings
    "dhcp_lease": setup() + frame_op(0, F["dhcp_discover"]) + clock(2) + frame_op(0, F["dhcp_request"]) +
                  frame_op(0, F["arp_announce"]) + frame_op(0, F["arp_request_gateway"]) +
                  frame_op(0, F["icmp_echo_gateway"]) + clock(200) + clock(200) + POLL + frame_op(0, F["dhcp_request"]),
    # the stable-MAC port (slot 2) leases with its own MAC as source; slot 1 (reserved) too
    "dhcp_two_guests": setup() + frame_op(2, F["dhcp_discover"], src=1) + frame_op(1, F["dhcp_discover"], src=1) +
                       frame_op(0, F["dhcp_discover"]) + frame_op(0, F["dhcp_request"]),
    # a from_first_frame port learns its MAC from an ARP probe; a second one claiming it is detached,
    # then added again; slot 0 reaches slot 3 by unicast; slot 3 leaves and comes back
    "first_frame": setup() + frame_op(3, first_probe) + frame_op(4, first_probe) + add(4) +
                   frame_op(0, F["icmp_echo_gateway"], dst=3, dst_slot=3) + frame_op(3, F["arp_request_gateway"], src=1, arp_sender=True) +
                   frame_op(0, F["icmp_echo_gateway"], dst=3, dst_slot=3) + readd(3) + frame_op(3, F["tcp_syn"], src=1),
    # isolation: VMs reach the gateway only
    "isolated": setup(isolate=True) + frame_op(0, F["arp_request_gateway"]) + frame_op(1, b_arp_request) +
                frame_op(1, b_ping_a) + frame_op(0, F["dhcp_discover"]) +
                frame_op(0, F["icmp_echo_gateway"]),
    # links going down and up, ports removed and used stale, time passing past the MAC ageing
    "links_and_stale": setup() + frame_op(1, b_arp_announce) + link(1, False) +
                       frame_op(0, F["arp_request_gateway"]) + frame_op(1, b_arp_request) + link(1, True) +
                       frame_op(1, b_ping_a) + frame_op(1, b_arp_request) +
                       frame_op(0, F["tcp_syn"], dst=3, dst_slot=1) + remove(2) + frame_op(2, F["udp_dns"], src=1) +
                       frame_op(2, F["udp_dns"], src=1, stale=True) + remove(2) + add(2) + clock(255) +
                       frame_op(0, F["tcp_syn"], dst=3, dst_slot=1) + POLL,
    # MTU 576: a 528-byte ping and its echo (it fits); fragments and options go by
    "small_mtu": setup(mtu_index=1) + frame_op(0, F["arp_request_gateway"]) + frame_op(0, mid_ping) + frame_op(0, F["ipv4_later_fragment"]) +
                 frame_op(0, F["ipv4_options_udp"]) + frame_op(0, F["arp_request_gateway"]),
    # oddities: a tagged frame, a runt, a frame from a port that never was
    "odd_frames": setup() + frame_op(0, F["vlan_arp"]) + frame_op(0, F["vlan_arp"][:10]) +
                  frame_op(3, F["vlan_arp"][:16], repair=False) + frame_op(4, F["dhcp_discover"], src=2, src_slot=0),
}


def write(directory, items):
    os.makedirs(directory, exist_ok=True)
    for name, data in items.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


write(os.path.join(ROOT, "fuzz/corpus/frame"), FRAMES)
write(os.path.join(ROOT, "fuzz/corpus/network"), PROGRAMS)
print(f"{len(FRAMES)} frames, {len(PROGRAMS)} programs")
