// Fuzz support: what the transport-layer targets (fuzz/tcp_fuzz.cpp, fuzz/udp_fuzz.cpp) share.
// Both take the same input (4 bytes of IPv4 source, 4 of destination, then the segment or
// datagram), check a checksum against a from-scratch recomputation, and put a packet view through
// the same NAT rewrites. `Packet` is tcp::packet or udp::packet: the calls used here are common
// to both.
#pragma once

#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <vector>

namespace ankanet::fuzz {

/// Aborts (which libFuzzer reports as a crash) unless `condition` holds.
inline void check(bool condition) {
    if (!condition) std::abort();
}

/// A transport-layer fuzz input: the pseudo-header addresses and the bytes after them.
struct transport_input {
    wire::ipv4_address src;
    wire::ipv4_address dst;
    wire::const_bytes segment; ///< the TCP segment or UDP datagram
};

/// Splits libFuzzer's input; nothing when it is too short to hold both addresses.
inline std::optional<transport_input> split_transport_input(const std::uint8_t* data, std::size_t size) {
    if (size < 8) return std::nullopt;
    const wire::const_bytes input = std::as_bytes(std::span{data, size});
    return transport_input{wire::ipv4_address::from_bytes(input.first(4)),
                           wire::ipv4_address::from_bytes(input.subspan(4, 4)), input.subspan(8)};
}

/// The checksum `bytes` would carry if filled in from scratch for `src` -> `dst`.
template <template <class> class Packet>
std::uint16_t recomputed(wire::const_bytes bytes, wire::ipv4_address src, wire::ipv4_address dst) {
    std::vector<std::byte> copy(bytes.begin(), bytes.end());
    Packet<wire::mutable_bytes> view{copy};
    view.fill_checksum(src, dst);
    return view.checksum();
}

/// The addresses check_nat_rewrites moved a packet to.
struct rewritten_addresses {
    wire::ipv4_address src;
    wire::ipv4_address dst;
};

/// NAT: rewrites both ports and both pseudo-header addresses of `writable` (whose checksum is
/// right for `src` -> `dst`), with values taken from the input, and checks the incrementally
/// updated checksum equals a recomputation over `covered`: the bytes the checksum covers, a view
/// of the same buffer as `writable`, so the recomputation sees the rewritten bytes.
template <template <class> class Packet>
rewritten_addresses check_nat_rewrites(Packet<wire::mutable_bytes>& writable, wire::const_bytes covered,
                                       wire::ipv4_address src, wire::ipv4_address dst) {
    const auto new_src = wire::ipv4_address{~src.to_u32() ^ 0x5a5a5a5au};
    const auto new_dst = wire::ipv4_address{dst.to_u32() + 0x01000001u};
    writable.rewrite_source_port(static_cast<std::uint16_t>(src.to_u32()));
    writable.rewrite_destination_port(static_cast<std::uint16_t>(dst.to_u32() >> 16));
    writable.rewrite_pseudo_header_address(src, new_src);
    writable.rewrite_pseudo_header_address(dst, new_dst);
    check(writable.checksum() == recomputed<Packet>(covered, new_src, new_dst));
    check(writable.verify_checksum(new_src, new_dst));
    return {new_src, new_dst};
}

} // namespace ankanet::fuzz
