// Fuzz target for ankanet::wire::tcp.
//
// Input: 4 bytes of IPv4 source address, 4 bytes of destination address, then the segment.
// Checks, aborting on any failure:
//  * parse never reads out of bounds (ASan) and, when it accepts, parse -> emit -> parse gives
//    the same repr and payload, and a second emit writes the same bytes as the first;
//  * option_reader and repr::parse agree on whether the options are well formed;
//  * with the checksum filled in, a segment fails to parse only for its options;
//  * NAT rewrites (ports, pseudo-header addresses) leave the same checksum as a recomputation.
#include <ankanet/wire/tcp.hpp>

#include "support/transport.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

using namespace ankanet;
using namespace ankanet::wire;
using ankanet::fuzz::check;

namespace {

std::vector<std::byte> emit(const tcp::repr& r, const_bytes payload, ipv4_address src, ipv4_address dst) {
    check(r.payload_len == payload.size());
    check(r.buffer_len() <= tcp::max_header_len && r.buffer_len() % 4 == 0);
    std::vector<std::byte> out(r.buffer_len() + r.payload_len);
    std::ranges::copy(payload, out.begin() + static_cast<std::ptrdiff_t>(r.buffer_len()));
    check(!r.emit(out, src, dst));
    return out;
}

void round_trip(const tcp::repr& r, const tcp::packet<const_bytes>& view, ipv4_address src, ipv4_address dst) {
    const auto first = emit(r, view.payload(), src, dst);
    const auto again = tcp::repr::parse(const_bytes{first}, src, dst);
    check(again.has_value());
    check(*again == r);
    const tcp::packet<const_bytes> emitted{first};
    check(std::ranges::equal(emitted.payload(), view.payload()));
    const auto second = emit(*again, emitted.payload(), src, dst);
    check(second == first);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto input = ankanet::fuzz::split_transport_input(data, size);
    if (!input) return 0;
    const auto [src, dst, wire] = *input;

    // As received.
    const tcp::packet<const_bytes> view{wire};
    const auto r = tcp::repr::parse(wire, src, dst);
    if (r) round_trip(*r, view, src, dst);
    if (view.check_len()) {
        check(!r.has_value());
        return 0;
    }

    // The options reader and the parser agree.
    tcp::option_reader reader{view.options()};
    tcp::option opt;
    std::size_t seen = 0;
    while (reader.next(opt)) {
        check(opt.data.data() >= view.options().data() &&
              opt.data.data() + opt.data.size() <= view.options().data() + view.options().size());
        ++seen;
    }
    check(seen <= tcp::max_options_len / 2);
    const auto unchecked = tcp::repr::parse_ignoring_checksum(view);
    check(unchecked.has_value() == !reader.error());

    // With the checksum made right: it parses unless its options are malformed.
    std::vector<std::byte> fixed(wire.begin(), wire.end());
    tcp::packet<mutable_bytes> writable{fixed};
    writable.fill_checksum(src, dst);
    const auto good = tcp::repr::parse(const_bytes{fixed}, src, dst);
    if (reader.error()) {
        check(good.error() == errc::bad_option);
    } else {
        check(good.has_value());
        round_trip(*good, tcp::packet<const_bytes>{fixed}, src, dst);
    }

    // NAT: rewrite both ports and both addresses, with values taken from the input.
    ankanet::fuzz::check_nat_rewrites(writable, fixed, src, dst);
    return 0;
}
