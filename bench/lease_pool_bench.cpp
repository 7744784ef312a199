// Lease allocation at a /16 (65 534 addresses).
//  * bm_allocate_commit_memory: each iteration is one DISCOVER+REQUEST pair (offer, then commit)
//    for a new client, memory store. The pool starts empty and fills; when it is full it is rebuilt
//    outside the timed region. The `fill` argument caps how many leases a pool takes before the
//    rebuild, so the figure at 65534 covers allocation down to the last free address.
//  * bm_allocate_commit_file: the same with file_lease_store in a mkdtemp directory: each commit
//    rewrites the lease file (temp file, fsync, rename, directory fsync). The cost grows with the
//    number of leases in the file, so `fill` (the leases held at most) is the argument.
//  * bm_renew_memory: renewing one of 65 534 bound leases, clients in random order.
// items_per_second is leases granted (or renewed) per second.
#include <ankanet/dhcp/lease_pool.hpp>
#include <ankanet/dhcp/lease_store.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using namespace ankanet;
using namespace ankanet::dhcp;

dhcp::lease_pool_config slash16() {
    lease_pool_config c;
    c.subnet = wire::ipv4_prefix{wire::ipv4_address{10, 9, 0, 0}, 16};
    c.first = wire::ipv4_address{10, 9, 0, 1};
    c.last = wire::ipv4_address{10, 9, 255, 254};
    return c;
}

lease_request client(std::uint32_t n) {
    return lease_request{client_identity{wire::mac_address{{0x52, 0x54, 0x00, static_cast<std::uint8_t>(n >> 16),
                                                             static_cast<std::uint8_t>(n >> 8),
                                                             static_cast<std::uint8_t>(n)}},
                                         {}},
                         std::nullopt, "guest"};
}

template <class Pool, class Make>
void run_allocate(benchmark::State& state, Make make) {
    const auto fill = static_cast<std::uint32_t>(state.range(0));
    std::optional<Pool> pool;
    std::uint32_t n = 0;
    // A store that writes in the background is timed until its last change is durable.
    const auto settle = [&] {
        if constexpr (deferred_lease_store<std::remove_cvref_t<decltype(pool->store())>>) {
            while (pool->store().durable() < pool->store().changes()) std::this_thread::yield();
        }
    };
    for (auto _ : state) {
        if (!pool || n == fill) {
            if (pool) settle();
            state.PauseTiming();
            pool.reset();
            pool.emplace(make());
            n = 0;
            state.ResumeTiming();
        }
        const auto r = client(n++);
        auto offered = pool->offer(r);
        auto acked = pool->commit(r, offered->address);
        benchmark::DoNotOptimize(acked);
        if (state.iterations() + 1 == state.max_iterations) settle();
    }
    state.SetItemsProcessed(state.iterations());
}

void bm_allocate_commit_memory(benchmark::State& state) {
    run_allocate<lease_pool>(state, [] { return std::move(*lease_pool::create(slash16())); });
}
BENCHMARK(bm_allocate_commit_memory)->Arg(1000)->Arg(65534);

// Range(0): leases per pool; range(1): 0 for write_mode::immediate (two fsyncs per commit on this
// thread), 1 for write_mode::background (the writer thread's group commits; the loop waits for the
// last change to be durable before it stops the clock, so the figure is durable leases per second).
void bm_allocate_commit_file(benchmark::State& state) {
    const auto mode = state.range(1) == 0 ? write_mode::immediate : write_mode::background;
    std::string pattern = (std::filesystem::temp_directory_path() / "ankanet-lease-bench-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
        state.SkipWithError("mkdtemp failed");
        return;
    }
    const std::filesystem::path dir{pattern};
    using file_pool = basic_lease_pool<file_lease_store>;
    run_allocate<file_pool>(state, [&] {
        std::filesystem::remove(dir / "leases");
        return std::move(*file_pool::create(slash16(), file_lease_store{dir / "leases", mode}));
    });
    std::filesystem::remove_all(dir);
}
BENCHMARK(bm_allocate_commit_file)->ArgsProduct({{10, 100, 1000}, {0, 1}})->ArgNames({"leases", "background"})->UseRealTime();

void bm_renew_memory(benchmark::State& state) {
    auto pool = std::move(*lease_pool::create(slash16()));
    std::vector<std::pair<lease_request, wire::ipv4_address>> held;
    for (std::uint32_t n = 0; n < 65534; ++n) {
        const auto r = client(n);
        held.emplace_back(r, pool.commit(r, pool.offer(r)->address)->address);
    }
    std::shuffle(held.begin(), held.end(), std::mt19937{1});
    std::size_t i = 0;
    for (auto _ : state) {
        const auto& [r, address] = held[i++ % held.size()];
        benchmark::DoNotOptimize(pool.renew(r, address));
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_renew_memory);

} // namespace
