#include <ankanet/l2/mac_randomizer.hpp>

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <set>
#include <string>

using namespace ankanet;
using ankanet::l2::basic_mac_randomizer;
using ankanet::l2::host_secret;
using ankanet::l2::mac_errc;
using ankanet::l2::mac_prefix;
using ankanet::l2::mac_registry;
using ankanet::l2::vm_uuid;

namespace {

using seeded_randomizer = basic_mac_randomizer<std::mt19937_64>;

std::uint64_t to_u48(const mac_address& mac) {
    std::uint64_t value = 0;
    for (auto octet : mac.octets()) value = (value << 8) | octet;
    return value;
}

host_secret secret_a() { return *host_secret::parse("000102030405060708090a0b0c0d0e0f"); }
host_secret secret_b() { return *host_secret::parse("f0e0d0c0b0a090807060504030201000"); }

const vm_uuid uuid_1 = *vm_uuid::parse("6f9619ff-8b86-d011-b42d-00c04fc964ff");
const vm_uuid uuid_2 = *vm_uuid::parse("6f9619ff-8b86-d011-b42d-00c04fc96500");

// Draws `n` addresses, registering each (so later draws must avoid it), and checks the invariants
// every draw must meet; returns per-bit set counts over the 48 address bits.
std::array<std::uint64_t, 48> draw_and_check(seeded_randomizer& randomizer, std::size_t n) {
    mac_registry registry;
    std::array<std::uint64_t, 48> ones{};
    for (std::size_t i = 0; i < n; ++i) {
        const auto mac = randomizer.draw(registry);
        REQUIRE(mac);
        REQUIRE(mac->is_unicast());
        REQUIRE(mac->is_locally_administered());
        REQUIRE(randomizer.prefix().contains(*mac));
        REQUIRE_FALSE(registry.add(*mac, fmt::format("vm-{}", i))); // fails on a duplicate
        const auto value = to_u48(*mac);
        for (unsigned bit = 0; bit < 48; ++bit) ones[bit] += (value >> bit) & 1u;
    }
    CHECK(registry.size() == n);
    return ones;
}

// Each drawn bit is a fair coin: over n draws its count of ones is Binomial(n, 1/2). Six standard
// deviations keep a correct implementation from ever failing (p < 2e-9 per bit) while still
// catching a stuck or biased bit (a bit set 51% of the time over 100k draws is 6.3 sd out).
void check_balanced(std::uint64_t ones, std::size_t n) {
    const double mean = static_cast<double>(n) / 2;
    const double sd = std::sqrt(static_cast<double>(n)) / 2;
    CHECK(std::abs(static_cast<double>(ones) - mean) < 6 * sd);
}

} // namespace

TEST_CASE("mac_randomizer: 100k random draws are valid locally administered unicast, distinct and balanced") {
    constexpr std::size_t n = 100'000;
    seeded_randomizer randomizer{std::mt19937_64{2024}, mac_prefix{}};
    CHECK(randomizer.prefix().free_bits() == 46);
    const auto ones = draw_and_check(randomizer, n);
    for (unsigned bit = 0; bit < 48; ++bit) {
        INFO("bit " << bit);
        if (bit == 40) {
            CHECK(ones[bit] == 0); // I/G clear: unicast
        } else if (bit == 41) {
            CHECK(ones[bit] == n); // U/L set: locally administered
        } else {
            check_balanced(ones[bit], n);
        }
    }
}

TEST_CASE("mac_randomizer: a 24-bit prefix is respected and its U/L and I/G bits are forced") {
    constexpr std::size_t n = 100'000;
    // 00:1c:42 is a vendor OUI (U/L clear); 01:... would be a group address. Both get fixed.
    for (const auto& [prefix, expected] : {std::pair{mac_prefix::oui(0x00, 0x1c, 0x42), std::string{"02:1c:42"}},
                                           std::pair{mac_prefix::oui(0x53, 0x54, 0x00), std::string{"52:54:00"}}}) {
        INFO(expected);
        CHECK(prefix.free_bits() == 24);
        CHECK(prefix.space_size() == (1u << 24));
        seeded_randomizer randomizer{std::mt19937_64{7}, prefix};
        const auto ones = draw_and_check(randomizer, n);
        const auto first = randomizer.prefix().value();
        CHECK(fmt::format("{}", first).substr(0, 8) == expected);
        for (unsigned bit = 0; bit < 24; ++bit) {
            INFO("bit " << bit);
            check_balanced(ones[bit], n);
        }
        for (unsigned bit = 24; bit < 48; ++bit) {
            CHECK(ones[bit] == (((to_u48(first) >> bit) & 1u) != 0 ? n : 0));
        }
    }
}

TEST_CASE("mac_randomizer: prefixes of any bit length keep the flag bits and count the space") {
    for (unsigned length = 0; length <= mac_prefix::max_length; ++length) {
        INFO("prefix length " << length);
        const auto prefix = mac_prefix::make(*mac_address::parse("ff:ff:ff:ff:ff:ff"), length);
        REQUIRE(prefix);
        const unsigned expected_free = length <= 6 ? 46 - length : length == 7 ? 40 : 48 - length;
        CHECK(prefix->free_bits() == expected_free);
        // The lowest and highest addresses of the space are valid and inside it.
        for (const auto mac : {prefix->at(0), prefix->at(prefix->space_size() - 1)}) {
            CHECK(mac.is_unicast());
            CHECK(mac.is_locally_administered());
            CHECK(prefix->contains(mac));
        }
    }
    CHECK(mac_prefix::make(mac_address{}, 48).error() == mac_errc::bad_prefix);
    // Outside the prefix, or with the flag bits wrong, an address is not in the space.
    const auto oui = mac_prefix::oui(0x52, 0x54, 0x00);
    CHECK(oui.contains(*mac_address::parse("52:54:00:ab:cd:ef")));
    CHECK_FALSE(oui.contains(*mac_address::parse("52:54:01:ab:cd:ef")));
    CHECK_FALSE(mac_prefix{}.contains(*mac_address::parse("00:54:00:ab:cd:ef")));
    CHECK_FALSE(mac_prefix{}.contains(*mac_address::parse("03:54:00:ab:cd:ef")));
}

TEST_CASE("mac_randomizer: draws avoid registered addresses and report an exhausted space") {
    // A 45-bit prefix leaves 3 bits: 8 addresses. Eight draws fill it; the ninth is refused.
    const auto prefix = *mac_prefix::make(*mac_address::parse("52:54:00:12:34:50"), 45);
    REQUIRE(prefix.space_size() == 8);
    seeded_randomizer randomizer{std::mt19937_64{1}, prefix};
    mac_registry registry;
    std::set<mac_address> drawn;
    for (int i = 0; i < 8; ++i) {
        const auto mac = randomizer.draw(registry);
        REQUIRE(mac);
        CHECK(prefix.contains(*mac));
        REQUIRE_FALSE(registry.add(*mac, fmt::format("vm-{}", i)));
        drawn.insert(*mac);
    }
    CHECK(drawn.size() == 8);
    const auto full = randomizer.draw(registry);
    REQUIRE_FALSE(full);
    CHECK(full.error() == mac_errc::space_exhausted);
    CHECK(full.error().message() == "no free MAC address left in the randomizer's address space");

    // Addresses outside the space do not count towards filling it.
    REQUIRE_FALSE(registry.remove(*drawn.begin()));
    REQUIRE_FALSE(registry.add(*mac_address::parse("52:54:00:99:99:99"), "elsewhere"));
    const auto last = randomizer.draw(registry);
    REQUIRE(last);
    CHECK(*last == *drawn.begin());

    // One free address among 2^24 taken ones would be found by the scan; here, a 1-address space.
    const auto single = *mac_prefix::make(*mac_address::parse("52:54:00:00:00:01"), 47);
    seeded_randomizer one{std::mt19937_64{1}, single};
    mac_registry empty;
    CHECK(*one.draw(empty) == *mac_address::parse("52:54:00:00:00:00"));
}

TEST_CASE("mac_randomizer: the default random source is std::random_device") {
    l2::mac_randomizer randomizer{mac_prefix::oui(0x52, 0x54, 0x00)};
    mac_registry registry;
    const auto mac = randomizer.draw(registry);
    REQUIRE(mac);
    CHECK(mac->is_unicast());
    CHECK(randomizer.prefix().contains(*mac));
}

TEST_CASE("mac_randomizer: stable addresses survive restarts and differ across VMs and hosts") {
    const mac_registry registry;
    const auto first = l2::mac_randomizer{mac_prefix{}, secret_a()}.stable(uuid_1, registry);
    REQUIRE(first);
    CHECK(first->is_unicast());
    CHECK(first->is_locally_administered());
    // A "restart": a new randomizer, a new random source, the same host secret.
    const seeded_randomizer restarted{std::mt19937_64{99}, mac_prefix{}, secret_a()};
    CHECK(*restarted.stable(uuid_1, registry) == *first);
    // The UUID's letter case is not part of its identity.
    CHECK(*restarted.stable(*vm_uuid::parse("6F9619FF-8B86-D011-B42D-00C04FC964FF"), registry) == *first);
    // Another VM, or another host's secret: another address.
    CHECK(*restarted.stable(uuid_2, registry) != *first);
    CHECK(*l2::mac_randomizer{mac_prefix{}, secret_b()}.stable(uuid_1, registry) != *first);

    // Pinned (and cross-checked with an independent Python SipHash): a compatibility contract.
    // If this value changes, every VM's MAC changes.
    CHECK(fmt::format("{}", *first) == "b2:cd:72:c1:8d:9a");

    // Under a prefix, the same derivation keeps the prefix.
    const l2::mac_randomizer prefixed{mac_prefix::oui(0x52, 0x54, 0x00), secret_a()};
    const auto under = prefixed.stable(uuid_1, registry);
    REQUIRE(under);
    CHECK(mac_prefix::oui(0x52, 0x54, 0x00).contains(*under));
    CHECK(*prefixed.stable(uuid_1, registry) == *under);
}

TEST_CASE("mac_randomizer: stable addresses are spread like random ones") {
    // 20k UUIDs under one secret: distinct addresses, balanced bits.
    constexpr std::size_t n = 20'000;
    const l2::mac_randomizer randomizer{mac_prefix{}, secret_a()};
    const mac_registry registry;
    std::set<mac_address> seen;
    std::array<std::uint64_t, 48> ones{};
    for (std::size_t i = 0; i < n; ++i) {
        vm_uuid::bytes_type bytes{};
        for (std::size_t b = 0; b < 8; ++b) bytes[b] = static_cast<std::byte>((i >> (8 * b)) & 0xff);
        const auto mac = randomizer.stable(vm_uuid{bytes}, registry);
        REQUIRE(mac);
        seen.insert(*mac);
        const auto value = to_u48(*mac);
        for (unsigned bit = 0; bit < 48; ++bit) ones[bit] += (value >> bit) & 1u;
    }
    CHECK(seen.size() == n);
    for (unsigned bit = 0; bit < 48; ++bit) {
        INFO("bit " << bit);
        if (bit == 40 || bit == 41) continue;
        check_balanced(ones[bit], n);
    }
}

TEST_CASE("mac_randomizer: a stable address held by another VM moves on, deterministically") {
    const l2::mac_randomizer randomizer{mac_prefix{}, secret_a()};
    mac_registry registry;
    const auto preferred = *randomizer.stable(uuid_1, registry);
    REQUIRE_FALSE(registry.add(preferred, "squatter"));
    const auto second = randomizer.stable(uuid_1, registry);
    REQUIRE(second);
    CHECK(*second != preferred);
    CHECK(*l2::mac_randomizer{mac_prefix{}, secret_a()}.stable(uuid_1, registry) == *second);
    // Registered to the VM itself (e.g. left over from before a crash): it gets it back.
    REQUIRE_FALSE(registry.remove(preferred));
    REQUIRE_FALSE(registry.add(preferred, "vm-1"));
    CHECK(*randomizer.stable(uuid_1, registry, "vm-1") == preferred);
    CHECK(*randomizer.stable(uuid_1, registry, "vm-2") == *second);
}

TEST_CASE("mac_randomizer: stable draws also report an exhausted space, and need a secret") {
    const auto prefix = *mac_prefix::make(*mac_address::parse("52:54:00:12:34:50"), 46); // 4 addresses
    const l2::mac_randomizer randomizer{prefix, secret_a()};
    mac_registry registry;
    for (std::uint64_t i = 0; i < prefix.space_size(); ++i) REQUIRE_FALSE(registry.add(prefix.at(i), fmt::format("vm-{}", i)));
    CHECK(randomizer.stable(uuid_1, registry).error() == mac_errc::space_exhausted);
    REQUIRE_FALSE(registry.remove(prefix.at(2)));
    CHECK(*randomizer.stable(uuid_1, registry) == prefix.at(2));

    const l2::mac_randomizer without_secret{prefix};
    CHECK(without_secret.stable(uuid_1, registry).error() == mac_errc::no_secret);
}

TEST_CASE("mac_randomizer: UUID and secret text parsing") {
    CHECK(uuid_1.bytes()[0] == std::byte{0x6f});
    CHECK(uuid_1.bytes()[15] == std::byte{0xff});
    for (const char* bad : {"", "6f9619ff8b86d011b42d00c04fc964ff", "6f9619ff-8b86-d011-b42d-00c04fc964f",
                            "6f9619ff-8b86-d011-b42d_00c04fc964ff", "6f9619ff-8b86-d011-b42d-00c04fc964fg"}) {
        INFO(bad);
        CHECK(vm_uuid::parse(bad).error() == mac_errc::bad_uuid_text);
    }
    CHECK(secret_a().to_string() == "000102030405060708090a0b0c0d0e0f");
    CHECK(*host_secret::parse(secret_b().to_string()) == secret_b());
    CHECK(host_secret::parse("00").error() == mac_errc::bad_secret_text);
    CHECK(host_secret::parse("000102030405060708090a0b0c0d0e0g").error() == mac_errc::bad_secret_text);
    std::mt19937_64 rng{5};
    CHECK(host_secret::generate(rng) != host_secret::generate(rng));
    CHECK(host_secret::generate() != host_secret::generate());
}
