#include <ankanet/nat/flow_table.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <tuple>
#include <vector>

// Counts allocations, to show the table makes none after construction (this file is its own
// test executable).
#include "../support/counting_allocator.hpp"

using namespace ankanet;
using ankanet::nat::flow_errc;
using ankanet::nat::flow_handle;
using ankanet::nat::flow_key;
using ankanet::wire::ipv4_address;

namespace {

constexpr std::array<std::byte, 16> fixed_key{std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};

struct flow_state {
    std::uint64_t bytes = 0;
    int tag = 0;
};

using table = nat::flow_table<flow_state>;

table::config make_config(std::size_t capacity, std::size_t max_vms = 8) {
    table::config cfg;
    cfg.capacity = capacity;
    cfg.max_vms = max_vms;
    cfg.hash_key = fixed_key;
    return cfg;
}

flow_key key_n(std::uint32_t n, std::uint16_t vm = 0, std::uint8_t protocol = 6) {
    return flow_key{ipv4_address{192, 168, 64, static_cast<std::uint8_t>(2 + n % 200)},
                    ipv4_address{10, 0, static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)},
                    static_cast<std::uint16_t>(40000 + n), 443, vm, protocol};
}

auto as_tuple(const flow_key& k) {
    return std::make_tuple(k.guest_address.to_u32(), k.remote_address.to_u32(), k.guest_port, k.remote_port, k.vm,
                           k.protocol);
}
struct key_less {
    bool operator()(const flow_key& a, const flow_key& b) const { return as_tuple(a) < as_tuple(b); }
};

} // namespace

TEST_CASE("insert, find, get and erase a flow") {
    table flows{make_config(16)};
    const auto handle = flows.insert(key_n(1), flow_state{100, 7});
    REQUIRE(handle);
    CHECK(flows.size() == 1);
    CHECK(flows.find(key_n(1)) == *handle);
    CHECK_FALSE(flows.find(key_n(2)));
    REQUIRE(flows.get(*handle) != nullptr);
    CHECK(flows.get(*handle)->bytes == 100);
    CHECK(flows.get(*handle)->tag == 7);
    CHECK(*flows.key(*handle) == key_n(1));
    CHECK(flows.handle_at(handle->index) == *handle);
    CHECK(flows.vm_flows(0) == 1);

    CHECK(flows.erase(*handle));
    CHECK(flows.empty());
    CHECK_FALSE(flows.find(key_n(1)));
    CHECK(flows.vm_flows(0) == 0);
    CHECK(flows.counters().inserted == 1);
    CHECK(flows.counters().erased == 1);
}

TEST_CASE("every field of the key tells flows apart") {
    table flows{make_config(16)};
    const flow_key base = key_n(5, 1, 6);
    std::vector<flow_key> variants(7, base);
    variants[1].guest_address = ipv4_address{192, 168, 64, 99};
    variants[2].remote_address = ipv4_address{10, 9, 9, 9};
    variants[3].guest_port = 1;
    variants[4].remote_port = 2;
    variants[5].vm = 2;
    variants[6].protocol = 17;
    for (const auto& k : variants) REQUIRE(flows.insert(k, flow_state{}));
    CHECK(flows.size() == variants.size());
    for (const auto& k : variants) CHECK(flows.find(k));
    CHECK(flows.insert(base).error() == flow_errc::flow_exists);
    CHECK(flows.counters().refused_flow_exists == 1);
}

TEST_CASE("stale handles are refused, even when their slot was reused") {
    table flows{make_config(1)};
    const auto first = flows.insert(key_n(1));
    REQUIRE(first);
    REQUIRE(flows.erase(*first));
    CHECK_FALSE(flows.contains(*first));
    CHECK(flows.get(*first) == nullptr);
    CHECK(flows.key(*first) == nullptr);
    CHECK_FALSE(flows.erase(*first));

    const auto second = flows.insert(key_n(2)); // the same, only slot
    REQUIRE(second);
    CHECK(second->index == first->index);
    CHECK(second->generation != first->generation);
    CHECK(flows.get(*first) == nullptr);
    CHECK_FALSE(flows.erase(*first));
    CHECK(flows.size() == 1);

    CHECK_FALSE(flows.contains(flow_handle{}));                  // default handle
    CHECK_FALSE(flows.contains(flow_handle{99, second->generation})); // out of range
    CHECK(flow_handle::from_u64(second->to_u64()) == *second);
    CHECK_FALSE(flows.handle_at(5));
}

TEST_CASE("a full table refuses with table_full, and counts") {
    table flows{make_config(4)};
    for (std::uint32_t n = 0; n < 4; ++n) REQUIRE(flows.insert(key_n(n, static_cast<std::uint16_t>(n))));
    const auto refused = flows.insert(key_n(10, 5));
    REQUIRE_FALSE(refused);
    CHECK(refused.error() == flow_errc::table_full);
    CHECK(refused.error().message() == "the NAT flow table is full");
    CHECK(flows.counters().refused_table_full == 1);
    REQUIRE(flows.erase(key_n(2, 2)));
    CHECK(flows.insert(key_n(10, 5)));
}

TEST_CASE("a VM at its limit is refused while other VMs are not") {
    table flows{make_config(64, 4)};
    flows.set_vm_limits(3);
    for (std::uint32_t n = 0; n < 3; ++n) REQUIRE(flows.insert(key_n(n, 1)));
    const auto refused = flows.insert(key_n(3, 1));
    REQUIRE_FALSE(refused);
    CHECK(refused.error() == flow_errc::vm_limit);
    CHECK(flows.counters().refused_vm_limit == 1);
    CHECK(flows.vm_flows(1) == 3);
    CHECK(flows.insert(key_n(3, 2)));  // another VM
    CHECK(flows.insert(key_n(4, 0)));
    REQUIRE(flows.erase(key_n(0, 1)));
    CHECK(flows.insert(key_n(3, 1)));  // room again

    // Raising one VM's limit, lowering another's below its count (nothing is evicted).
    REQUIRE(flows.set_vm_limit(1, 10));
    CHECK(flows.insert(key_n(5, 1)));
    REQUIRE(flows.set_vm_limit(2, 0));
    CHECK(flows.vm_flows(2) == 1);
    CHECK(flows.insert(key_n(6, 2)).error() == flow_errc::vm_limit);
    CHECK(flows.vm_limit(1) == 10);
    CHECK_FALSE(flows.set_vm_limit(4, 1)); // beyond max_vms

    const auto unknown = flows.insert(key_n(7, 4));
    REQUIRE_FALSE(unknown);
    CHECK(unknown.error() == flow_errc::unknown_vm);
    CHECK(flows.counters().refused_unknown_vm == 1);
}

TEST_CASE("erasing during for_each: the current flow and others") {
    table flows{make_config(32)};
    std::vector<flow_handle> handles;
    for (std::uint32_t n = 0; n < 20; ++n) handles.push_back(*flows.insert(key_n(n), flow_state{n, static_cast<int>(n)}));
    std::set<int> visited;
    flows.for_each([&](flow_handle handle, const flow_key&, flow_state& state) {
        visited.insert(state.tag);
        if (state.tag % 2 == 0) CHECK(flows.erase(handle));     // itself
        if (state.tag == 1) CHECK(flows.erase(handles[19]));     // one not yet visited
    });
    CHECK(visited.size() == 19);
    CHECK_FALSE(visited.count(19));
    CHECK(flows.size() == 9);
    for (std::uint32_t n = 0; n < 20; ++n) CHECK(flows.find(key_n(n)).has_value() == (n % 2 == 1 && n != 19));
}

TEST_CASE("State is constructed in place and destroyed on erase, clear and destruction") {
    struct counted {
        explicit counted(int& live_count) : live(live_count) { ++live; }
        counted(const counted&) = delete;
        counted& operator=(const counted&) = delete;
        ~counted() { --live; }
        int& live;
    };
    int live = 0;
    {
        nat::flow_table<counted> flows{nat::flow_table<counted>::config{8, 1, fixed_key}};
        for (std::uint32_t n = 0; n < 6; ++n) REQUIRE(flows.insert(key_n(n), live));
        CHECK(live == 6);
        REQUIRE(flows.erase(key_n(0)));
        CHECK(live == 5);
        flows.clear();
        CHECK(live == 0);
        CHECK(flows.empty());
        for (std::uint32_t n = 0; n < 3; ++n) REQUIRE(flows.insert(key_n(n), live));
        CHECK(live == 3);
    }
    CHECK(live == 0);
}

TEST_CASE("a State constructor that throws leaves the table unchanged") {
    struct throwing {
        explicit throwing(bool fail) {
            if (fail) throw 42;
        }
    };
    nat::flow_table<throwing> flows{nat::flow_table<throwing>::config{4, 1, fixed_key}};
    CHECK_THROWS(flows.insert(key_n(1), true));
    CHECK(flows.empty());
    CHECK_FALSE(flows.find(key_n(1)));
    CHECK(flows.insert(key_n(1), false));
    CHECK(flows.size() == 1);
}

TEST_CASE("the table's own overhead per flow is small") {
    STATIC_REQUIRE(table::slot_overhead == 24);
    table flows{make_config(1024)};
    CHECK(flows.index_entries() == 2048);
    // 24 bytes of slot overhead + 16 of index, plus the State.
    CHECK(flows.overhead_per_flow() == Approx(40.0));
    CHECK(flows.bytes_per_flow() == Approx(40.0 + sizeof(flow_state)));
    table odd{make_config(1025)};
    CHECK(odd.index_entries() == 4096);
    CHECK(odd.overhead_per_flow() < 24.0 + 32.0);
}

TEST_CASE("tables keyed from std::random_device, each its own key, find what they hold") {
    table::config a;
    a.capacity = 256; // no hash_key: drawn per table
    table first{a};
    table second{a};
    for (std::uint32_t n = 0; n < 200; ++n) {
        REQUIRE(first.insert(key_n(n)));
        REQUIRE(second.insert(key_n(n)));
    }
    for (std::uint32_t n = 0; n < 200; ++n) {
        CHECK(first.find(key_n(n)));
        CHECK(second.find(key_n(n)));
    }
}

TEST_CASE("insert, find and erase allocate nothing after construction") {
    table flows{make_config(4096)};
    std::mt19937 random{3};
    const auto before = ankanet::test::heap::allocations.load();
    for (int i = 0; i < 100000; ++i) {
        const auto k = key_n(static_cast<std::uint32_t>(random() % 6000));
        if (random() % 2 == 0) (void)flows.insert(k, flow_state{});
        else flows.erase(k);
        (void)flows.find(key_n(static_cast<std::uint32_t>(random() % 6000)));
    }
    CHECK(ankanet::test::heap::allocations.load() == before);
}

TEST_CASE("randomized against a std::map model, with heavy collisions and slot reuse") {
    // Small tables (index of 8 to 64 entries) make long runs, so backward-shift deletion is
    // exercised on wrapped runs; a key space a few times the capacity forces full-table refusals.
    for (const std::size_t capacity : {std::size_t{1}, std::size_t{3}, std::size_t{4}, std::size_t{13},
                                       std::size_t{32}, std::size_t{500}}) {
        CAPTURE(capacity);
        table flows{make_config(capacity, 4)};
        flows.set_vm_limit(3, capacity / 3);
        std::map<flow_key, std::pair<flow_handle, std::uint64_t>, key_less> model;
        std::vector<flow_handle> dead; // handles of erased flows: must stay stale
        std::array<std::size_t, 4> per_vm{};
        std::mt19937_64 random{capacity * 7919 + 1};
        const auto key_space = static_cast<std::uint32_t>(capacity * 3 + 2);

        for (int op = 0; op < 20000; ++op) {
            const auto vm = static_cast<std::uint16_t>(random() % 4);
            const flow_key k = key_n(static_cast<std::uint32_t>(random() % key_space), vm,
                                     random() % 2 == 0 ? std::uint8_t{6} : std::uint8_t{17});
            const auto found = model.find(k);
            switch (random() % 5) {
            case 0: case 1: {
                const std::uint64_t value = random();
                const auto inserted = flows.insert(k, flow_state{value, 0});
                if (found != model.end()) {
                    REQUIRE(inserted.error() == flow_errc::flow_exists);
                } else if (per_vm[vm] >= (vm == 3 ? capacity / 3 : capacity)) {
                    REQUIRE(inserted.error() == flow_errc::vm_limit);
                } else if (model.size() == capacity) {
                    REQUIRE(inserted.error() == flow_errc::table_full);
                } else {
                    REQUIRE(inserted);
                    model.emplace(k, std::make_pair(*inserted, value));
                    ++per_vm[vm];
                }
                break;
            }
            case 2: { // erase by key or by handle
                if (found == model.end()) {
                    REQUIRE_FALSE(flows.erase(k));
                    break;
                }
                const flow_handle h = found->second.first;
                const bool erased = random() % 2 == 0 ? flows.erase(h) : flows.erase(k);
                REQUIRE(erased);
                dead.push_back(h);
                --per_vm[vm];
                model.erase(found);
                break;
            }
            case 3: { // find and read
                const auto handle = flows.find(k);
                REQUIRE(handle.has_value() == (found != model.end()));
                if (handle) {
                    REQUIRE(*handle == found->second.first);
                    REQUIRE(flows.get(*handle)->bytes == found->second.second);
                    REQUIRE(*flows.key(*handle) == k);
                }
                break;
            }
            default: // a stale handle is refused
                if (!dead.empty()) {
                    const flow_handle h = dead[random() % dead.size()];
                    REQUIRE(flows.get(h) == nullptr);
                    REQUIRE_FALSE(flows.erase(h));
                }
                break;
            }
            REQUIRE(flows.size() == model.size());
            if (op % 500 == 0) { // every flow still findable, counts right
                for (const auto& [key, entry] : model) REQUIRE(flows.find(key) == entry.first);
                for (std::uint16_t v = 0; v < 4; ++v) REQUIRE(flows.vm_flows(v) == per_vm[v]);
                std::size_t visited = 0;
                flows.for_each([&](flow_handle, const flow_key&, flow_state&) { ++visited; });
                REQUIRE(visited == model.size());
            }
        }
    }
}
