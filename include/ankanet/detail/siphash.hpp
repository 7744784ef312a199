// ankanet::detail — SipHash-2-4, a keyed 64-bit hash (Aumasson and Bernstein, "SipHash: a fast
// short-input PRF", INDOCRYPT 2012).
//
// Theory of operation. Tables indexed by guest-controlled values (the switch's MAC table, the NAT
// flow table) must not let a guest choose keys that collide: with an unkeyed hash a guest can pile
// every entry into one bucket and turn each lookup into a scan, or evict other guests' entries.
// SipHash with a secret 128-bit key is a PRF over short inputs, so without the key a guest cannot
// predict where its keys land. The same PRF derives stable MAC addresses from a VM's UUID and a
// per-host secret (l2::mac_randomizer): an address an outsider cannot link to the UUID, that the
// host recomputes identically after a restart, with nothing stored.
//
// The algorithm, as the paper specifies it: the key is two little-endian 64-bit words k0, k1; the
// state v0..v3 starts as the key XORed with "somepseudorandomlygeneratedbytes"; the message is
// consumed in little-endian 64-bit words, each followed by c = 2 SipRounds; the last word carries
// the remaining 0-7 bytes and, in its top byte, the message length mod 256; finalisation XORs 0xff
// into v2 and runs d = 4 SipRounds. Everything is constexpr and allocation-free; the hasher is
// incremental, so a caller can hash the fields of a tuple without first copying them into a buffer.
// Output is identical on every platform (byte order is fixed by the algorithm, not the host).
#pragma once

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

namespace ankanet::detail {

/// A SipHash key: two 64-bit words, k0 from bytes 0-7 and k1 from bytes 8-15, little-endian.
struct siphash_key {
    std::uint64_t k0 = 0;
    std::uint64_t k1 = 0;

    /// The key as the paper writes it: 16 bytes, k0 = bytes 0-7 and k1 = bytes 8-15 little-endian.
    static constexpr siphash_key from_bytes(std::span<const std::byte, 16> bytes) noexcept {
        return siphash_key{load_le64(bytes.first<8>()), load_le64(bytes.last<8>())};
    }

    constexpr bool operator==(const siphash_key&) const noexcept = default;

    static constexpr std::uint64_t load_le64(std::span<const std::byte, 8> bytes) noexcept {
        std::uint64_t word = 0;
        for (std::size_t i = 0; i < 8; ++i) word |= std::uint64_t{std::to_integer<std::uint8_t>(bytes[i])} << (8 * i);
        return word;
    }
};

/// Incremental SipHash-2-4. `update()` any number of times, then `finish()`; finish() does not
/// change the state, so a common prefix can be hashed once and copied.
class siphasher {
public:
    constexpr explicit siphasher(const siphash_key& key) noexcept
        : v0_(key.k0 ^ 0x736f6d6570736575u), v1_(key.k1 ^ 0x646f72616e646f6du),
          v2_(key.k0 ^ 0x6c7967656e657261u), v3_(key.k1 ^ 0x7465646279746573u) {}

    constexpr siphasher& update(std::span<const std::byte> bytes) noexcept {
        std::size_t at = 0;
        // Top up a partial word left by an earlier update.
        while ((length_ & 7u) != 0 && at < bytes.size()) push_byte(bytes[at++]);
        // Whole words straight from the input.
        for (; bytes.size() - at >= 8; at += 8) {
            compress(siphash_key::load_le64(bytes.subspan(at).first<8>()));
            length_ += 8;
        }
        while (at < bytes.size()) push_byte(bytes[at++]);
        return *this;
    }

    /// Feeds an unsigned integer as sizeof(T) little-endian bytes, so hashes do not depend on the
    /// host's byte order.
    template <std::unsigned_integral T>
    constexpr siphasher& update_le(T value) noexcept {
        for (std::size_t i = 0; i < sizeof(T); ++i) {
            push_byte(static_cast<std::byte>(static_cast<std::uint8_t>(value >> (8 * i))));
        }
        return *this;
    }

    /// The 64-bit tag of everything fed so far.
    constexpr std::uint64_t finish() const noexcept {
        siphasher s = *this;
        const std::uint64_t last = (std::uint64_t{s.length_ & 0xffu} << 56) | s.tail_;
        s.compress(last);
        s.v2_ ^= 0xffu;
        for (int i = 0; i < 4; ++i) s.round();
        return s.v0_ ^ s.v1_ ^ s.v2_ ^ s.v3_;
    }

private:
    constexpr void push_byte(std::byte b) noexcept {
        tail_ |= std::uint64_t{std::to_integer<std::uint8_t>(b)} << (8 * (length_ & 7u));
        ++length_;
        if ((length_ & 7u) == 0) {
            compress(tail_);
            tail_ = 0;
        }
    }

    constexpr void compress(std::uint64_t m) noexcept {
        v3_ ^= m;
        round();
        round();
        v0_ ^= m;
    }

    constexpr void round() noexcept {
        v0_ += v1_; v1_ = std::rotl(v1_, 13); v1_ ^= v0_; v0_ = std::rotl(v0_, 32);
        v2_ += v3_; v3_ = std::rotl(v3_, 16); v3_ ^= v2_;
        v0_ += v3_; v3_ = std::rotl(v3_, 21); v3_ ^= v0_;
        v2_ += v1_; v1_ = std::rotl(v1_, 17); v1_ ^= v2_; v2_ = std::rotl(v2_, 32);
    }

    std::uint64_t v0_, v1_, v2_, v3_;
    std::uint64_t tail_ = 0;   ///< bytes of the current, incomplete word, little-endian
    std::uint64_t length_ = 0; ///< bytes fed so far; only its low byte reaches the output
};

/// SipHash-2-4 of `message` under `key`.
constexpr std::uint64_t siphash24(const siphash_key& key, std::span<const std::byte> message) noexcept {
    return siphasher{key}.update(message).finish();
}

} // namespace ankanet::detail
