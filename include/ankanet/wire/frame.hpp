/// @file
/// ankanet::wire::parsed_frame — one Ethernet frame, parsed once, for every engine that looks at it.
///
/// Theory of operation. A frame from a VM is looked at by several engines in turn: the neighbour
/// table (its ARP), the DHCP server (UDP to port 67), the gateway's responder (ARP and ping for the
/// gateway), later the NAT (everything else). parse() reads the headers they all need exactly once
/// and records what it found; each engine then decides from these fields whether the frame is its
/// own and validates the rest of what it consumes itself (checksums, lengths, its own protocol).
///
/// Contract. parse() never reads outside `bytes` and never fails: what it cannot read is simply
/// absent (`is_arp()`/`is_ipv4()`/`has_ports` false). It classifies as cheaply as the engines used
/// to on their own, and no more strictly, so a malformed datagram for the gateway still reaches the
/// engine that owns it, which counts it:
///  * Ethernet: destination, source, EtherType (past one 802.1Q/802.1ad tag) — when at least a header
///    (and the tag it announces) is there. Otherwise `valid` is false and nothing else is set.
///  * ARP (untagged EtherType 0x0806): `arp` holds the parsed request or reply; `arp_malformed` is
///    set when the payload did not parse (truncated, not Ethernet/IPv4, an unknown operation).
///  * IPv4 (untagged EtherType 0x0800) with at least a 20-byte header of version 4 whose IHL fits the
///    payload: `ip` is the payload (not trimmed to total_length, which the consumer checks), and the
///    protocol, addresses, header length and fragment fields are read. The header checksum is *not*
///    verified here: the engine that consumes the datagram does it.
///  * UDP and TCP ports, when the datagram is not a later fragment and four bytes follow the header.
/// A view: it borrows `bytes`, which must outlive it.
#pragma once

#include <ankanet/wire/address.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>

namespace ankanet::wire {

/// A frame's Ethernet, IPv4 and transport headers, parsed once and shared by the services that look at it.
struct parsed_frame {
    const_bytes bytes;                   ///< the whole frame
    bool valid = false;                  ///< an Ethernet header (and its tag) was there
    bool vlan_tagged = false; ///< vlan tagged
    mac_address destination; ///< destination
    mac_address source; ///< source
    std::uint16_t ethertype = 0;         ///< of the payload, past the tag
    const_bytes l3;                      ///< the payload after the Ethernet header (and tag)

    std::optional<arp::repr> arp;        ///< untagged ARP that parsed
    bool arp_malformed = false;          ///< untagged ARP EtherType whose payload did not parse

    bool ipv4 = false;                   ///< untagged IPv4 whose header could be read (see above)
    const_bytes ip;                      ///< the IPv4 datagram (== l3 when ipv4)
    std::size_t ip_header_len = 0; ///< IP header length
    std::uint8_t protocol = 0; ///< protocol
    ipv4_address ip_source; ///< IP source
    ipv4_address ip_destination; ///< IP destination
    std::uint16_t fragment_offset = 0;   ///< in bytes
    bool more_fragments = false; ///< more fragments

    bool has_ports = false;              ///< UDP or TCP, first fragment, ports readable
    std::uint16_t source_port = 0; ///< source port
    std::uint16_t destination_port = 0; ///< destination port

    /// Whether it is arp.
    bool is_arp() const noexcept { return arp.has_value(); }
    /// Whether it is ipv4.
    bool is_ipv4() const noexcept { return ipv4; }
    /// Whether it is fragment.
    bool is_fragment() const noexcept { return more_fragments || fragment_offset != 0; }
    /// The bytes after the IPv4 header (what total_length says is not applied here).
    const_bytes ip_payload() const noexcept { return ip.subspan(ip_header_len); }

    /// Parses `frame`; see the contract at the top of this file.
    static parsed_frame parse(const_bytes frame) noexcept {
        parsed_frame f;
        f.bytes = frame;
        const ethernet::packet<const_bytes> eth{frame};
        if (eth.check_len()) return f;
        f.valid = true;
        f.vlan_tagged = eth.has_vlan_tag();
        f.destination = eth.destination();
        f.source = eth.source();
        f.ethertype = eth.ethertype();
        f.l3 = eth.payload();
        if (f.vlan_tagged) return f; // no engine of the gateway serves tagged frames

        if (f.ethertype == ethernet::ethertype::arp) {
            auto parsed = arp::repr::parse(f.l3);
            if (parsed) f.arp = *parsed;
            else f.arp_malformed = true;
            return f;
        }
        if (f.ethertype != ethernet::ethertype::ipv4 || f.l3.size() < ipv4::header_len) return f;
        const ipv4::packet<const_bytes> datagram{f.l3};
        const std::size_t ihl = datagram.header_length();
        if (datagram.version() != 4 || ihl < ipv4::header_len || ihl > f.l3.size()) return f;
        f.ipv4 = true;
        f.ip = f.l3;
        f.ip_header_len = ihl;
        f.protocol = datagram.protocol();
        f.ip_source = datagram.source();
        f.ip_destination = datagram.destination();
        f.fragment_offset = datagram.fragment_offset();
        f.more_fragments = datagram.more_fragments();
        const bool ported = f.protocol == ipv4::protocol::udp || f.protocol == ipv4::protocol::tcp;
        if (ported && f.fragment_offset == 0 && f.l3.size() >= ihl + 4) {
            f.has_ports = true;
            f.source_port = load_be16(f.l3, ihl);
            f.destination_port = load_be16(f.l3, ihl + 2);
        }
        return f;
    }
};

} // namespace ankanet::wire
