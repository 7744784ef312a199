// The NAT's flow table and timer wheel (include/ankanet/nat/flow_table.hpp, timer_wheel.hpp): lookups
// per second, churn, and timer cost, with the memory each flow costs.
//
//  * bm_flow_lookup_hit/N: find() of a flow present in a table holding N flows (capacity N, so the
//    index is at its fullest), keys visited in a shuffled order so the caches see a realistic
//    spread. items_per_second is lookups per second.
//  * bm_flow_lookup_miss/N: find() of keys that are not in the same table (a guest's first packet
//    of a flow, or a stray segment).
//  * bm_flow_churn/N: one erase and one insert per iteration in a table kept at 3/4 of N (flows
//    ending and starting); items_per_second counts erase+insert pairs.
//  * bm_timer_reschedule/N: moving one of N armed timers to a new deadline (what a TCP flow does on
//    every ACK); items are reschedules.
//  * bm_timer_advance/N: N timers spread over 10 s, fired by advancing 1 ms at a time; time is per
//    timer fired, wheel walk included.
// Counters: bytes_per_flow is the table's memory per flow at full capacity with a 64-byte stand-in
// State (slot + index share); table_overhead_per_flow the part that is the table's own;
// timer_bytes_per_flow the wheel's node; allocs_per_op counts calls of the global operator new
// (replaced in this file) during the timed loop per operation — the target is 0.
#include <ankanet/nat/flow_table.hpp>
#include <ankanet/nat/timer_wheel.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

// --- counting operator new (this file is its own benchmark executable) -------------------------
#include "../tests/support/counting_allocator.hpp"

namespace {

using namespace ankanet;
using ankanet::test::heap::allocations;
using nat::flow_key;
using wire::ipv4_address;

/// A stand-in for the translator's per-flow state (the target: at most 256 bytes a flow).
struct stand_in_state {
    std::array<std::uint64_t, 8> words{};
};
using table = nat::flow_table<stand_in_state>;

constexpr std::array<std::byte, 16> bench_key{std::byte{0x5a}, std::byte{0xa5}, std::byte{0x11}};

std::uint64_t allocations_now() { return allocations.load(std::memory_order_relaxed); }

/// Distinct keys: 16 VMs, guest addresses in 192.168.64.0/24, remote addresses and ports spread.
std::vector<flow_key> make_keys(std::size_t count, std::uint64_t seed) {
    std::mt19937_64 random{seed};
    std::vector<flow_key> keys;
    keys.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        const auto r = random();
        keys.push_back(flow_key{ipv4_address{192, 168, 64, static_cast<std::uint8_t>(2 + r % 250)},
                                ipv4_address{static_cast<std::uint32_t>(r >> 32)},
                                static_cast<std::uint16_t>(32768 + i % 28000), static_cast<std::uint16_t>(r >> 8),
                                static_cast<std::uint16_t>(i % 16), static_cast<std::uint8_t>(i % 2 ? 6 : 17)});
    }
    return keys;
}

table::config config_for(std::size_t capacity) {
    table::config cfg;
    cfg.capacity = capacity;
    cfg.max_vms = 16;
    cfg.hash_key = bench_key;
    return cfg;
}

void report(benchmark::State& state, const table& flows, std::uint64_t ops, std::uint64_t allocs) {
    state.SetItemsProcessed(static_cast<std::int64_t>(ops));
    state.counters["bytes_per_flow"] = flows.bytes_per_flow();
    state.counters["table_overhead_per_flow"] = flows.overhead_per_flow();
    state.counters["timer_bytes_per_flow"] = static_cast<double>(nat::timer_wheel::bytes_per_timer);
    state.counters["allocs_per_op"] = ops == 0 ? 0.0 : static_cast<double>(allocs) / static_cast<double>(ops);
}

void bm_flow_lookup(benchmark::State& state, bool hit) {
    const auto n = static_cast<std::size_t>(state.range(0));
    table flows{config_for(n)};
    const auto present = make_keys(n, 1);
    for (const auto& k : present) {
        if (!flows.insert(k)) state.SkipWithError("insert failed");
    }
    auto probes = hit ? present : make_keys(n, 2); // seed 2: none of these are present
    std::shuffle(probes.begin(), probes.end(), std::mt19937_64{3});

    std::size_t at = 0;
    std::uint64_t found = 0;
    const auto before = allocations_now();
    for (auto _ : state) {
        const auto handle = flows.find(probes[at]);
        found += handle.has_value();
        benchmark::DoNotOptimize(handle);
        if (++at == probes.size()) at = 0;
    }
    const auto allocs = allocations_now() - before;
    const auto lookups = static_cast<std::uint64_t>(state.iterations());
    if (hit ? found != lookups : found != 0) state.SkipWithError("lookups gave the wrong answer");
    report(state, flows, lookups, allocs);
}

void bm_flow_lookup_hit(benchmark::State& state) { bm_flow_lookup(state, true); }
void bm_flow_lookup_miss(benchmark::State& state) { bm_flow_lookup(state, false); }

void bm_flow_churn(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    table flows{config_for(n)};
    const auto keys = make_keys(n, 4);
    const std::size_t live = n * 3 / 4;
    for (std::size_t i = 0; i < live; ++i) (void)flows.insert(keys[i]);

    // A ring: erase the oldest flow, insert the next key; keys[i % n] is live for i in [first, next).
    std::size_t oldest = 0;
    std::size_t next = live;
    const auto before = allocations_now();
    for (auto _ : state) {
        flows.erase(keys[oldest]);
        auto inserted = flows.insert(keys[next]);
        benchmark::DoNotOptimize(inserted);
        if (++oldest == n) oldest = 0;
        if (++next == n) next = 0;
    }
    const auto allocs = allocations_now() - before;
    if (flows.size() != live) state.SkipWithError("churn lost flows");
    report(state, flows, static_cast<std::uint64_t>(state.iterations()), allocs);
}

using clock_type = std::chrono::steady_clock;
const clock_type::time_point origin = clock_type::time_point{} + std::chrono::hours{1000};

void bm_timer_reschedule(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    nat::timer_wheel wheel{n, origin};
    std::mt19937_64 random{5};
    std::vector<std::chrono::milliseconds> offsets(4096);
    for (auto& offset : offsets) offset = std::chrono::milliseconds{200 + random() % 120000};
    for (std::size_t id = 0; id < n; ++id) wheel.schedule(static_cast<std::uint32_t>(id), origin + offsets[id % 4096]);

    std::uint32_t id = 0;
    std::size_t at = 0;
    const auto before = allocations_now();
    for (auto _ : state) {
        wheel.reschedule(id, origin + offsets[at]);
        if (++id == n) id = 0;
        at = (at + 1) & 4095;
    }
    const auto allocs = allocations_now() - before;
    state.SetItemsProcessed(state.iterations());
    state.counters["allocs_per_op"] = static_cast<double>(allocs) / static_cast<double>(state.iterations());
}

void bm_timer_advance(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    nat::timer_wheel wheel{n, origin};
    std::mt19937_64 random{6};
    std::vector<clock_type::time_point> deadlines(n);
    std::uint64_t fired = 0;
    std::uint64_t allocs = 0;
    auto base = origin;
    for (auto _ : state) {
        state.PauseTiming();
        for (std::size_t id = 0; id < n; ++id) {
            wheel.schedule(static_cast<std::uint32_t>(id), base + std::chrono::microseconds{random() % 10'000'000});
        }
        const auto before = allocations_now();
        state.ResumeTiming();
        for (auto now = base; !wheel.empty(); now += std::chrono::milliseconds{1}) {
            fired += wheel.advance(now, [](std::uint32_t) {});
        }
        state.PauseTiming();
        allocs += allocations_now() - before;
        base += std::chrono::seconds{11};
        state.ResumeTiming();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(fired));
    state.counters["allocs_per_op"] = fired == 0 ? 0.0 : static_cast<double>(allocs) / static_cast<double>(fired);
    state.counters["ns_per_timer"] = benchmark::Counter(static_cast<double>(fired),
                                                        benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

} // namespace

BENCHMARK(bm_flow_lookup_hit)->Arg(10'000)->Arg(100'000);
BENCHMARK(bm_flow_lookup_miss)->Arg(10'000)->Arg(100'000);
BENCHMARK(bm_flow_churn)->Arg(10'000)->Arg(100'000);
BENCHMARK(bm_timer_reschedule)->Arg(10'000)->Arg(100'000);
BENCHMARK(bm_timer_advance)->Arg(10'000)->Arg(100'000)->Unit(benchmark::kMillisecond);
