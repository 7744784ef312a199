// tcp_reorder_store: parking guest data beyond a hole, in order, within a pool and a budget per VM.
#include <ankanet/nat/tcp_reorder.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace {

using ankanet::nat::park_result;
using ankanet::nat::tcp_reorder_store;
using ankanet::wire::const_bytes;
constexpr std::size_t chunk = tcp_reorder_store::chunk_size;

std::vector<std::byte> pattern(std::size_t n, std::size_t from = 0) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((from + i) * 7 + 3);
    return v;
}

/// What contiguous() gives from `from`, concatenated.
std::vector<std::byte> stream(const tcp_reorder_store& s, std::uint32_t slot, std::uint32_t from) {
    std::array<const_bytes, 64> pieces{};
    const std::size_t n = s.contiguous(slot, from, pieces);
    std::vector<std::byte> all;
    for (std::size_t i = 0; i < n; ++i) all.insert(all.end(), pieces[i].begin(), pieces[i].end());
    return all;
}

} // namespace

TEST_CASE("reorder store: segments parked out of order come back in order, up to the first gap") {
    tcp_reorder_store s(4, 2, 64 * chunk, 16 * chunk);
    const auto data = pattern(500);
    const const_bytes all{data};
    const std::uint32_t base = 1000;
    CHECK(s.park(0, 0, base, base + 300, all.subspan(300, 100)) == park_result::parked);
    CHECK(s.park(0, 0, base, base + 100, all.subspan(100, 100)) == park_result::parked);
    CHECK(s.park(0, 0, base, base + 200, all.subspan(200, 100)) == park_result::parked);
    CHECK(s.park(0, 0, base, base + 450, all.subspan(450, 50)) == park_result::parked); // beyond a gap
    CHECK(stream(s, 0, base).empty()); // the hole at base is not filled
    const auto got = stream(s, 0, base + 100);
    CHECK(got == std::vector<std::byte>(data.begin() + 100, data.begin() + 400));
    // From inside a chunk: its first bytes are skipped.
    CHECK(stream(s, 0, base + 150) == std::vector<std::byte>(data.begin() + 150, data.begin() + 400));
    s.release(0, base + 400);
    CHECK(s.holds(0));
    CHECK(s.first_seq(0) == base + 450);
    CHECK(s.vm_bytes(0) == chunk);
    s.drop(0);
    CHECK_FALSE(s.holds(0));
    CHECK(s.bytes_in_use() == 0);
}

TEST_CASE("reorder store: a segment larger than a chunk is split and comes back whole") {
    tcp_reorder_store s(4, 2, 64 * chunk, 64 * chunk);
    const auto data = pattern(3 * chunk + 10);
    CHECK(s.park(1, 1, 0, 100, const_bytes{data}) == park_result::parked);
    CHECK(s.vm_bytes(1) == 4 * chunk);
    CHECK(stream(s, 1, 100) == data);
    s.release(1, 100 + static_cast<std::uint32_t>(data.size()));
    CHECK(s.vm_bytes(1) == 0);
}

TEST_CASE("reorder store: sequence numbers that wrap around stay in order") {
    tcp_reorder_store s(2, 1, 16 * chunk, 16 * chunk);
    const std::uint32_t base = 0xffffff00u;
    const auto data = pattern(0x300);
    const const_bytes all{data};
    CHECK(s.park(0, 0, base, base + 0x200, all.subspan(0x200, 0x100)) == park_result::parked); // past zero
    CHECK(s.park(0, 0, base, base + 0x100, all.subspan(0x100, 0x100)) == park_result::parked); // at zero
    CHECK(s.first_seq(0) == 0);
    CHECK(stream(s, 0, 0) == std::vector<std::byte>(data.begin() + 0x100, data.end()));
}

TEST_CASE("reorder store: duplicates are not parked twice") {
    tcp_reorder_store s(2, 1, 16 * chunk, 16 * chunk);
    const auto data = pattern(100);
    CHECK(s.park(0, 0, 0, 50, const_bytes{data}) == park_result::parked);
    CHECK(s.park(0, 0, 0, 50, const_bytes{data}) == park_result::duplicate);
    CHECK(s.park(0, 0, 0, 50, const_bytes{data}.first(60)) == park_result::duplicate);
    CHECK(s.vm_bytes(0) == chunk);
    // Longer from the same start: the new bytes are kept too.
    const auto longer = pattern(200);
    CHECK(s.park(0, 0, 0, 50, const_bytes{longer}) == park_result::parked);
    CHECK(stream(s, 0, 50).size() == 200);
}

TEST_CASE("reorder store: one VM's budget, the pool's, and nothing parked when disabled") {
    tcp_reorder_store s(4, 2, 4 * chunk, 3 * chunk);
    const auto one = pattern(chunk);
    const auto two = pattern(2 * chunk);
    CHECK(s.park(0, 0, 0, 100, const_bytes{two}) == park_result::parked);
    CHECK(s.park(0, 0, 0, 100 + 2 * chunk, const_bytes{two}) == park_result::vm_full); // all or nothing
    CHECK(s.vm_bytes(0) == 2 * chunk);
    CHECK(s.park(1, 1, 0, 100, const_bytes{two}) == park_result::parked);
    CHECK(s.park(2, 0, 0, 100, const_bytes{one}) == park_result::pool_full); // VM 0 has room, the pool none
    s.drop(1);
    CHECK(s.park(2, 0, 0, 100, const_bytes{one}) == park_result::parked);
    CHECK(s.bytes_in_use() == 3 * chunk);

    tcp_reorder_store off(4, 2, 4 * chunk, 0);
    CHECK_FALSE(off.enabled());
    CHECK(off.park(0, 0, 0, 100, const_bytes{one}) == park_result::vm_full);
    tcp_reorder_store none(4, 2, 0, 4 * chunk);
    CHECK_FALSE(none.enabled());
}

TEST_CASE("reorder store: indexes out of range are refused, not written") {
    tcp_reorder_store s(2, 1, 4 * chunk, 4 * chunk);
    const auto data = pattern(10);
    CHECK(s.park(2, 0, 0, 10, const_bytes{data}) == park_result::invalid);
    CHECK(s.park(0, 1, 0, 10, const_bytes{data}) == park_result::invalid);
    CHECK(s.park(0, 0, 0, 10, const_bytes{}) == park_result::invalid);
    CHECK(s.bytes_in_use() == 0);
    CHECK_FALSE(s.holds(5));
    s.release(5, 0);
    s.drop(5);
}

TEST_CASE("reorder store: chunks the stream passed without release() are freed before new ones are ordered") {
    tcp_reorder_store s(2, 1, 16 * chunk, 16 * chunk);
    const auto data = pattern(100);
    CHECK(s.park(0, 0, 0, 100, const_bytes{data}) == park_result::parked);
    CHECK(s.park(0, 0, 0, 200, const_bytes{data}) == park_result::parked);
    // The stream reached 300 from elsewhere (the guest resent it all in order); a new segment
    // beyond a new hole is parked: the two old chunks are gone, and it is first.
    CHECK(s.park(0, 0, 300, 400, const_bytes{data}) == park_result::parked);
    CHECK(s.vm_bytes(0) == chunk);
    CHECK(s.first_seq(0) == 400);
    CHECK(stream(s, 0, 400) == data);
}

TEST_CASE("reorder store: parked ranges as SACK blocks, merged, from the cumulative ACK on") {
    tcp_reorder_store s(2, 1, 16 * chunk, 16 * chunk);
    const auto data = pattern(100);
    const auto big = pattern(2 * chunk);
    CHECK(s.park(0, 0, 0, 100, const_bytes{data}) == park_result::parked);
    CHECK(s.park(0, 0, 0, 150, const_bytes{data}) == park_result::parked); // overlaps the first
    CHECK(s.park(0, 0, 0, 1000, const_bytes{big}) == park_result::parked); // two chunks, one range
    CHECK(s.park(0, 0, 0, 5000, const_bytes{data}) == park_result::parked);
    std::array<ankanet::wire::tcp::sack_block, 4> blocks{};
    REQUIRE(s.ranges(0, 0, blocks) == 3);
    CHECK(blocks[0] == ankanet::wire::tcp::sack_block{100, 250});
    CHECK(blocks[1] == ankanet::wire::tcp::sack_block{1000, 1000 + 2 * chunk});
    CHECK(blocks[2] == ankanet::wire::tcp::sack_block{5000, 5100});
    // Room for two: the lowest two. From inside a range: it starts there.
    REQUIRE(s.ranges(0, 0, std::span{blocks}.first(2)) == 2);
    REQUIRE(s.ranges(0, 200, blocks) == 3);
    CHECK(blocks[0] == ankanet::wire::tcp::sack_block{200, 250});
    REQUIRE(s.ranges(0, 300, blocks) == 2);
    CHECK(blocks[0].left == 1000);
}
