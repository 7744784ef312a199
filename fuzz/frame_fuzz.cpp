// Fuzz target for ankanet::wire::parsed_frame::parse, the one parse every engine of a network
// shares.
//
// The input is one frame. parse() is checked against the contract at the top of
// <ankanet/wire/frame.hpp> and against the per-header parsers it stands for, field by field, and
// the target traps on any difference:
//  * `valid` iff ethernet::repr::parse succeeds; then destination, source, EtherType (past the tag)
//    and the tag flag equal its, and `l3` is exactly the bytes after the header (and tag). When not
//    valid, nothing else is set.
//  * `arp` is set iff the frame is untagged, its EtherType is ARP and arp::repr::parse accepts the
//    payload, and then equals that repr; `arp_malformed` iff untagged ARP that arp::repr refuses.
//  * `ipv4` iff untagged, EtherType 0x0800, at least 20 bytes, version 4, 20 <= IHL <= payload
//    size; then `ip` is `l3`, and protocol, addresses and fragment fields equal ipv4::packet's
//    accessors. Otherwise every IPv4 field keeps its default. A datagram ipv4::packet::check_len()
//    accepts is never refused (parse is no stricter than the engines were).
//  * `has_ports` iff ipv4, UDP or TCP, fragment offset 0 and four bytes after the header; the ports
//    are the two big-endian words there. Otherwise both ports are 0.
//  * every view (`bytes`, `l3`, `ip`, ip_payload()) lies inside the input; ASan checks no byte
//    outside it is read (libFuzzer's buffer is exactly the input's size).
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/ipv4.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>

namespace {

using namespace ankanet;
using namespace ankanet::wire;

/// Traps (a crash to libFuzzer) unless the condition holds, saying which invariant failed: the
/// optimiser merges the traps, so the stack trace alone would not.
[[noreturn]] void violated(const char* what, int line) {
    std::fprintf(stderr, "frame_fuzz.cpp:%d: invariant violated: %s\n", line, what);
    __builtin_trap();
}
#define REQUIRE(...) ((__VA_ARGS__) ? void(0) : violated(#__VA_ARGS__, __LINE__))

/// `view` lies inside `whole` (an empty view anywhere inside it, its end included).
bool inside(const_bytes view, const_bytes whole) {
    const auto* begin = whole.data();
    const auto* end = whole.data() + whole.size();
    return view.data() >= begin && view.data() <= end && view.size() <= static_cast<std::size_t>(end - view.data());
}

bool same_view(const_bytes a, const_bytes b) { return a.data() == b.data() && a.size() == b.size(); }

bool same(const arp::repr& a, const arp::repr& b) {
    return a.operation == b.operation && a.sender_mac == b.sender_mac && a.sender_ip == b.sender_ip &&
           a.target_mac == b.target_mac && a.target_ip == b.target_ip;
}

void check_no_ipv4(const parsed_frame& f) {
    REQUIRE(!f.ipv4 && !f.is_ipv4());
    REQUIRE(f.ip.empty() && f.ip_header_len == 0 && f.protocol == 0);
    REQUIRE(f.ip_source == ipv4_address{} && f.ip_destination == ipv4_address{});
    REQUIRE(f.fragment_offset == 0 && !f.more_fragments && !f.is_fragment());
    REQUIRE(!f.has_ports && f.source_port == 0 && f.destination_port == 0);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const const_bytes input{reinterpret_cast<const std::byte*>(data), size};
    const parsed_frame f = parsed_frame::parse(input);

    REQUIRE(same_view(f.bytes, input));
    REQUIRE(f.is_arp() == f.arp.has_value());

    // Ethernet.
    const auto eth = ethernet::repr::parse(input);
    REQUIRE(f.valid == eth.has_value());
    if (!eth) {
        REQUIRE(!f.vlan_tagged && f.destination == mac_address{} && f.source == mac_address{} && f.ethertype == 0);
        REQUIRE(f.l3.empty());
        REQUIRE(!f.arp && !f.arp_malformed);
        check_no_ipv4(f);
        return 0;
    }
    REQUIRE(f.destination == eth->destination && f.source == eth->source && f.ethertype == eth->ethertype);
    REQUIRE(f.vlan_tagged == eth->vlan_tci.has_value());
    REQUIRE(same_view(f.l3, input.subspan(eth->buffer_len())));
    REQUIRE(inside(f.l3, input));

    // ARP.
    const bool untagged = !eth->vlan_tci;
    const bool arp_type = untagged && eth->ethertype == ethernet::ethertype::arp;
    std::optional<arp::repr> arp;
    if (arp_type) {
        if (auto parsed = arp::repr::parse(f.l3)) arp = *parsed;
    }
    REQUIRE(f.arp.has_value() == arp.has_value());
    REQUIRE(f.arp_malformed == (arp_type && !arp));
    if (f.arp) REQUIRE(same(*f.arp, *arp));

    // IPv4.
    const bool ip_type = untagged && eth->ethertype == ethernet::ethertype::ipv4;
    const bool readable = ip_type && f.l3.size() >= ipv4::header_len;
    const ipv4::packet<const_bytes> datagram{f.l3};
    const bool header_fits = readable && datagram.version() == 4 && datagram.header_length() >= ipv4::header_len &&
                             datagram.header_length() <= f.l3.size();
    REQUIRE(f.ipv4 == header_fits && f.is_ipv4() == f.ipv4);
    if (ip_type && !datagram.check_len()) REQUIRE(f.ipv4); // no stricter than ipv4::packet
    if (!f.ipv4) {
        check_no_ipv4(f);
        return 0;
    }
    REQUIRE(!f.arp && !f.arp_malformed);
    REQUIRE(untagged && f.ethertype == ethernet::ethertype::ipv4);
    REQUIRE(same_view(f.ip, f.l3) && inside(f.ip, input));
    REQUIRE(f.ip_header_len == datagram.header_length());
    REQUIRE(f.ip_header_len >= ipv4::header_len && f.ip_header_len <= f.ip.size());
    REQUIRE(f.protocol == datagram.protocol());
    REQUIRE(f.ip_source == datagram.source() && f.ip_destination == datagram.destination());
    REQUIRE(f.fragment_offset == datagram.fragment_offset() && f.more_fragments == datagram.more_fragments());
    REQUIRE(f.is_fragment() == datagram.is_fragment());
    const const_bytes payload = f.ip_payload();
    REQUIRE(same_view(payload, f.ip.subspan(f.ip_header_len)) && inside(payload, input));

    // Ports.
    const bool ported = f.protocol == ipv4::protocol::udp || f.protocol == ipv4::protocol::tcp;
    REQUIRE(f.has_ports == (ported && f.fragment_offset == 0 && payload.size() >= 4));
    if (f.has_ports) {
        REQUIRE(f.source_port == load_be16(f.ip, f.ip_header_len));
        REQUIRE(f.destination_port == load_be16(f.ip, f.ip_header_len + 2));
    } else {
        REQUIRE(f.source_port == 0 && f.destination_port == 0);
    }
    return 0;
}
