// Fuzz target for ankanet::wire::udp.
//
// Input: 4 bytes of IPv4 source address, 4 bytes of destination address, then the datagram.
// Checks, aborting on any failure:
//  * parse never reads out of bounds (ASan) and, when it accepts, parse -> emit -> parse gives
//    the same repr, and emit reproduces the datagram byte for byte (its checksum being nonzero);
//  * with the checksum filled in, every datagram that passes check_len() parses;
//  * NAT rewrites (ports, pseudo-header addresses) leave the same checksum as a recomputation.
#include <ankanet/wire/udp.hpp>

#include "support/transport.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

using namespace ankanet;
using namespace ankanet::wire;
using ankanet::fuzz::check;

namespace {

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
    const auto input = ankanet::fuzz::split_transport_input(data, size);
    if (!input) return 0;
    const auto [src, dst, wire] = *input;

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
    const auto moved = ankanet::fuzz::check_nat_rewrites(writable, writable.datagram(), src, dst);

    // A datagram without a checksum stays without one.
    writable.set_checksum(0);
    writable.rewrite_source_port(0x1234);
    writable.rewrite_pseudo_header_address(moved.src, src);
    check(writable.checksum() == 0);
    return 0;
}
