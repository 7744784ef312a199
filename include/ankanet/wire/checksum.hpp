/// @file
/// ankanet::wire — the Internet checksum (RFC 1071), pseudo-header sums and incremental update.
///
/// Theory of operation. The one's-complement sum does not care about byte order (RFC 1071 §2(B)):
/// summing native-endian words and swapping the folded result equals summing big-endian words. So
/// the hot loop loads 8 bytes at a time in native order and adds their two 32-bit halves into two
/// 64-bit accumulators — no carries are lost before 2^32 iterations, far beyond any packet — and
/// the compiler is free to vectorise it. Folding and the final byte swap happen once at the end.
///
/// All 16-bit values here (field values, partial sums, results) are *numbers* as read with
/// load_be16 from the wire, so they can be compared with and stored into header fields directly.
///
/// Pieces may be added in any split: an accumulator remembers whether the bytes so far were odd in
/// number and swaps the next piece's sum to keep every byte in its true position.
#pragma once

#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ankanet::wire::checksum {

namespace detail {

constexpr std::uint16_t fold(std::uint64_t sum) noexcept {
    sum = (sum & 0xffffffffu) + (sum >> 32);
    sum = (sum & 0xffffffffu) + (sum >> 32);
    sum = (sum & 0xffffu) + (sum >> 16);
    sum = (sum & 0xffffu) + (sum >> 16);
    return static_cast<std::uint16_t>(sum);
}

constexpr std::uint16_t swap16(std::uint16_t v) noexcept {
    return static_cast<std::uint16_t>((v << 8) | (v >> 8));
}

/// One's-complement sum of `bytes` as big-endian 16-bit words (an odd last byte padded with zero),
/// folded to 16 bits.
inline std::uint16_t sum_bytes(const_bytes bytes) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    std::size_t n = bytes.size();
    std::uint64_t low = 0;
    std::uint64_t high = 0;
    while (n >= 32) {
        std::uint64_t w[4];
        std::memcpy(w, p, sizeof w);
        low += (w[0] & 0xffffffffu) + (w[1] & 0xffffffffu) + (w[2] & 0xffffffffu) + (w[3] & 0xffffffffu);
        high += (w[0] >> 32) + (w[1] >> 32) + (w[2] >> 32) + (w[3] >> 32);
        p += 32;
        n -= 32;
    }
    while (n >= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, sizeof w);
        low += w & 0xffffffffu;
        high += w >> 32;
        p += 8;
        n -= 8;
    }
    std::uint64_t tail = 0; // the last 0..7 bytes, in their native positions
    std::memcpy(&tail, p, n);
    low += tail & 0xffffffffu;
    high += tail >> 32;

    const std::uint16_t native = fold(low + high);
    if constexpr (boost::endian::order::native == boost::endian::order::little) {
        return swap16(native);
    } else {
        return native;
    }
}

} // namespace detail

/// Accumulates the one's-complement sum over pieces of a packet.
class accumulator {
public:
    constexpr accumulator() noexcept = default;

    /// Adds bytes that follow those added so far.
    accumulator& add(const_bytes bytes) noexcept {
        std::uint16_t piece = detail::sum_bytes(bytes);
        if (odd_) piece = detail::swap16(piece); // this piece starts on the low byte of a word
        sum_ += piece;
        odd_ ^= (bytes.size() & 1) != 0;
        return *this;
    }
    /// Adds a 16-bit field value (as if its two bytes were added at an even position).
    constexpr accumulator& add16(std::uint16_t value) noexcept { sum_ += value; return *this; }
    /// Adds a 32-bit value as two 16-bit words.
    constexpr accumulator& add32(std::uint32_t value) noexcept { sum_ += (value >> 16) + (value & 0xffffu); return *this; }
    /// Adds an address (as in a pseudo-header).
    constexpr accumulator& add(ipv4_address address) noexcept { return add32(address.to_u32()); }

    /// The folded sum, not inverted.
    constexpr std::uint16_t sum() const noexcept { return detail::fold(sum_); }
    /// The checksum field value: the complement of the sum.
    constexpr std::uint16_t finish() const noexcept { return static_cast<std::uint16_t>(~sum()); }

private:
    std::uint64_t sum_ = 0;
    bool odd_ = false;
};

/// The Internet checksum of `bytes`: the value to store in a checksum field that was zero while
/// summing; over a packet whose checksum field is filled in, a correct packet yields 0.
inline std::uint16_t internet(const_bytes bytes) noexcept { return accumulator{}.add(bytes).finish(); }

/// The IPv4 pseudo-header (RFC 793 / RFC 768) of a TCP or UDP segment of `length` bytes, as an
/// accumulator to which the segment itself is then added.
constexpr accumulator ipv4_pseudo_header(ipv4_address source, ipv4_address destination,
                                         std::uint8_t protocol, std::uint16_t length) noexcept {
    accumulator acc;
    acc.add(source).add(destination).add16(protocol).add16(length);
    return acc;
}

/// RFC 1624 eqn. 3: the new checksum after a 16-bit field changed from `old_value` to `new_value`,
/// HC' = ~(~HC + ~m + m'). Never produces the 0x0000/0xffff ambiguity of eqn. 2.
constexpr std::uint16_t update16(std::uint16_t checksum_field, std::uint16_t old_value, std::uint16_t new_value) noexcept {
    std::uint64_t sum = static_cast<std::uint16_t>(~checksum_field);
    sum += static_cast<std::uint16_t>(~old_value);
    sum += new_value;
    return static_cast<std::uint16_t>(~detail::fold(sum));
}

/// update16 for a 32-bit field (an IPv4 address): both halves at once.
constexpr std::uint16_t update32(std::uint16_t checksum_field, std::uint32_t old_value, std::uint32_t new_value) noexcept {
    std::uint64_t sum = static_cast<std::uint16_t>(~checksum_field);
    // uint16_t operands promote to int when added: widen each first.
    sum += std::uint64_t{static_cast<std::uint16_t>(~(old_value >> 16))};
    sum += std::uint64_t{static_cast<std::uint16_t>(~(old_value & 0xffffu))};
    sum += (new_value >> 16) + (new_value & 0xffffu);
    return static_cast<std::uint16_t>(~detail::fold(sum));
}

} // namespace ankanet::wire::checksum
