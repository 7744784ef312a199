#include <ankanet/detail/siphash.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <random>
#include <set>
#include <span>

using ankanet::detail::siphash24;
using ankanet::detail::siphash_key;
using ankanet::detail::siphasher;

namespace {

// The paper's key (Appendix A): bytes 00 01 .. 0f.
constexpr std::array<std::byte, 16> paper_key_bytes = [] {
    std::array<std::byte, 16> k{};
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::byte>(i);
    return k;
}();
constexpr siphash_key paper_key = siphash_key::from_bytes(paper_key_bytes);

// The reference implementation's message family: message i is the bytes 00 01 .. (i-1).
constexpr std::array<std::byte, 64> counting_bytes = [] {
    std::array<std::byte, 64> m{};
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<std::byte>(i);
    return m;
}();

// SipHash-2-4 outputs for key 00..0f and messages of length 0..15 (the first rows of the
// authors' 64-entry test-vector table, vectors_sip64, read as little-endian 64-bit words).
constexpr std::array<std::uint64_t, 16> official_vectors = {
    0x726fdb47dd0e0e31u, 0x74f839c593dc67fdu, 0x0d6c8009d9a94f5au, 0x85676696d7fb7e2du,
    0xcf2794e0277187b7u, 0x18765564cd99a68du, 0xcbc9466e58fee3ceu, 0xab0200f58b01d137u,
    0x93f5f5799a932462u, 0x9e0082df0ba9e4b0u, 0x7a5dbbc594ddb9f3u, 0xf4b32f46226bada7u,
    0x751e8fbc860ee5fbu, 0x14ea5627c0843d90u, 0xf723ca908e7af2eeu, 0xa129ca6149be45e5u,
};
// The table's last row: the full 64-byte message.
constexpr std::uint64_t official_vector_63 = 0x958a324ceb064572u;

} // namespace

TEST_CASE("siphash: the key is read as two little-endian words, as in the paper") {
    CHECK(paper_key.k0 == 0x0706050403020100u);
    CHECK(paper_key.k1 == 0x0f0e0d0c0b0a0908u);
}

TEST_CASE("siphash: the paper's worked example, key 00..0f and message 00..0e") {
    // Appendix A: the 15-byte message hashes to a129ca6149be45e5. Checked at compile time too.
    static_assert(siphash24(paper_key, std::span{counting_bytes}.first(15)) == 0xa129ca6149be45e5u);
    CHECK(siphash24(paper_key, std::span{counting_bytes}.first(15)) == 0xa129ca6149be45e5u);
}

TEST_CASE("siphash: the official test vectors for messages of length 0 to 15 and 63") {
    for (std::size_t length = 0; length < official_vectors.size(); ++length) {
        INFO("message length " << length);
        CHECK(siphash24(paper_key, std::span{counting_bytes}.first(length)) == official_vectors[length]);
    }
    CHECK(siphash24(paper_key, std::span{counting_bytes}.first(63)) == official_vector_63);
}

TEST_CASE("siphash: incremental updates in any split equal the one-shot hash") {
    std::mt19937 rng(42);
    for (std::size_t length = 0; length <= 63; ++length) {
        const auto message = std::span{counting_bytes}.first(length);
        const std::uint64_t expected = siphash24(paper_key, message);
        for (int trial = 0; trial < 20; ++trial) {
            siphasher h{paper_key};
            std::size_t at = 0;
            while (at < length) {
                const std::size_t chunk = std::uniform_int_distribution<std::size_t>(0, length - at)(rng);
                h.update(message.subspan(at, chunk));
                at += chunk;
            }
            REQUIRE(h.finish() == expected);
        }
    }
    // finish() leaves the state alone: more input can follow.
    siphasher h{paper_key};
    h.update(std::span{counting_bytes}.first(7));
    CHECK(h.finish() == official_vectors[7]);
    h.update(std::span{counting_bytes}.subspan(7, 8));
    CHECK(h.finish() == official_vectors[15]);
}

TEST_CASE("siphash: update_le feeds integers as little-endian bytes") {
    // Bytes 00 01 .. 07 are the little-endian encoding of 0x0706050403020100.
    siphasher words{paper_key};
    words.update_le(std::uint64_t{0x0706050403020100u}).update_le(std::uint32_t{0x0b0a0908u}).update_le(std::uint16_t{0x0d0cu});
    words.update_le(std::uint8_t{0x0e});
    CHECK(words.finish() == official_vectors[15]);
}

TEST_CASE("siphash: the key matters, and outputs of distinct short inputs do not collide") {
    constexpr siphash_key other{paper_key.k0 ^ 1u, paper_key.k1};
    CHECK(siphash24(other, std::span{counting_bytes}.first(15)) != official_vectors[15]);
    // 100k distinct 8-byte inputs: 64-bit outputs colliding would be a 2^-30 event.
    std::set<std::uint64_t> seen;
    for (std::uint32_t i = 0; i < 100'000; ++i) {
        siphasher h{paper_key};
        h.update_le(std::uint64_t{i});
        seen.insert(h.finish());
    }
    CHECK(seen.size() == 100'000);
}
