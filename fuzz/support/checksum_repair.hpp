// Fuzz support: makes a mutated frame's checksums right, so it gets past the parsers that verify
// them and deep into the engines (DHCP, ARP, ICMP, the NAT) instead of being dropped at the door.
#pragma once

#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/tcp.hpp>
#include <ankanet/wire/udp.hpp>

#include <cstddef>
#include <vector>

namespace ankanet::fuzz {

/// Makes the IPv4 header checksum and the UDP, TCP or ICMP checksum right, where lengths allow.
inline void repair_checksums(std::vector<std::byte>& frame) {
    namespace wire = ankanet::wire;
    const wire::mutable_bytes all{frame};
    wire::ethernet::packet<wire::mutable_bytes> eth{all};
    if (eth.check_len() || eth.has_vlan_tag() || eth.ethertype() != wire::ethernet::ethertype::ipv4) return;
    wire::ipv4::packet<wire::mutable_bytes> ip{eth.payload()};
    if (ip.check_len()) return;
    ip.fill_checksum();
    if (ip.is_fragment()) return;
    const auto payload = ip.payload();
    switch (ip.protocol()) {
    case wire::ipv4::protocol::udp: {
        wire::udp::packet<wire::mutable_bytes> datagram{payload};
        if (!datagram.check_len()) datagram.fill_checksum(ip.source(), ip.destination());
        break;
    }
    case wire::ipv4::protocol::tcp: {
        wire::tcp::packet<wire::mutable_bytes> segment{payload};
        if (!segment.check_len()) segment.fill_checksum(ip.source(), ip.destination());
        break;
    }
    case wire::ipv4::protocol::icmp: {
        wire::icmp::packet<wire::mutable_bytes> message{payload};
        if (!message.check_len()) message.fill_checksum();
        break;
    }
    default: break;
    }
}

} // namespace ankanet::fuzz
