// Fuzz target for ankanet::wire::udp.
//
// Input: 4 bytes of IPv4 source address, 4 bytes of destination address, then the datagram.
// Checks, aborting on any failure:
//  * parse never reads out of bounds (ASan) and, when it accepts, parse -> emit -> parse gives
//    the same repr, and emit reproduces the datagram byte for byte (its checksum being nonzero);
//  * with the checksum filled in, every datagram that passes check_len() parses;
//  * NAT rewrites (ports, pseudo-header addresses) leave the same checksum as a recomputation.
#include <ankanet/wire/udp.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

using namespace ankanet;
using namespace ankanet::wire;

namespace {

void check(bool condition) {
    if (!condition) std::abort();
}

std::uint16_t recomputed(const_bytes datagram, ipv4_address src, ipv4_address dst) {
    std::vector<std::byte> copy(datagram.begin(), datagram.end());
    udp::packet<mutable_bytes> view{copy};
    view.fill_checksum(src, dst);
    return view.checksum();
}

void round_trip(const udp::repr& r, const udp::packet<const_bytes>& view, ipv4_address src, ipv4_address dst) {
    check(r.payload_len == view.payload().size());
    std::vector<std::byte> out(r.buffer_len() + r.payload_len);
    std::ranges::copy(view.payload(), out.begin() + static_cast<std::ptrdiff_t>(r.buffer_len()));
    check(!r.emit(out, src, dst));
    const auto again = udp::repr::parse(const_bytes{out}, src, dst);
    check(again.has_value());
    check(*again == r);
    if (view.checksum() != 0) check(std::ranges::equal(out, view.datagram()));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 8) return 0;
    const const_bytes input = std::as_bytes(std::span{data, size});
    const ipv4_address src = ipv4_address::from_bytes(input.first(4));
    const ipv4_address dst = ipv4_address::from_bytes(input.subspan(4, 4));
    const const_bytes wire = input.subspan(8);

    // As received.
    const udp::packet<const_bytes> view{wire};
    const auto r = udp::repr::parse(wire, src, dst);
    if (r) round_trip(*r, view, src, dst);
    if (view.check_len()) {
        check(!r.has_value());
        return 0;
    }

    // With the checksum made right: it must parse.
    std::vector<std::byte> fixed(wire.begin(), wire.end());
    udp::packet<mutable_bytes> writable{fixed};
    writable.fill_checksum(src, dst);
    check(writable.checksum() != 0);
    const auto good = udp::repr::parse(const_bytes{fixed}, src, dst);
    check(good.has_value());
    round_trip(*good, udp::packet<const_bytes>{fixed}, src, dst);

    // NAT: rewrite both ports and both addresses, with values taken from the input.
    const auto new_src = ipv4_address{~src.to_u32() ^ 0x5a5a5a5au};
    const auto new_dst = ipv4_address{dst.to_u32() + 0x01000001u};
    writable.rewrite_source_port(static_cast<std::uint16_t>(src.to_u32()));
    writable.rewrite_destination_port(static_cast<std::uint16_t>(dst.to_u32() >> 16));
    writable.rewrite_pseudo_header_address(src, new_src);
    writable.rewrite_pseudo_header_address(dst, new_dst);
    check(writable.checksum() == recomputed(writable.datagram(), new_src, new_dst));
    check(writable.verify_checksum(new_src, new_dst));

    // A datagram without a checksum stays without one.
    writable.set_checksum(0);
    writable.rewrite_source_port(0x1234);
    writable.rewrite_pseudo_header_address(new_src, src);
    check(writable.checksum() == 0);
    return 0;
}
