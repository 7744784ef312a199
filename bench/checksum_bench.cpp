// Internet checksum throughput against memcpy of the same buffer, side by side in one run.
// bytes_per_second in the output is the figure to compare.
#include <ankanet/wire/checksum.hpp>

#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

namespace {

std::vector<std::byte> random_buffer(std::size_t n) {
    std::mt19937 rng(7);
    std::vector<std::byte> out(n);
    for (auto& b : out) b = static_cast<std::byte>(rng() & 0xff);
    return out;
}

void bm_internet_checksum(benchmark::State& state) {
    const auto buffer = random_buffer(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        benchmark::DoNotOptimize(buffer.data());
        auto sum = ankanet::wire::checksum::internet(buffer);
        benchmark::DoNotOptimize(sum);
    }
    state.SetBytesProcessed(state.iterations() * state.range(0));
}

void bm_memcpy(benchmark::State& state) {
    const auto buffer = random_buffer(static_cast<std::size_t>(state.range(0)));
    std::vector<std::byte> target(buffer.size());
    for (auto _ : state) {
        benchmark::DoNotOptimize(buffer.data());
        std::memcpy(target.data(), buffer.data(), buffer.size());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(state.iterations() * state.range(0));
}

void bm_incremental_update(benchmark::State& state) {
    std::uint16_t checksum = 0x1234;
    std::uint32_t address = 0xc0a84002;
    for (auto _ : state) {
        benchmark::DoNotOptimize(address);
        checksum = ankanet::wire::checksum::update32(checksum, address, 0x7f000001);
        benchmark::DoNotOptimize(checksum);
    }
}

} // namespace

BENCHMARK(bm_internet_checksum)->Arg(64)->Arg(1500)->Arg(9000)->Arg(65535);
BENCHMARK(bm_memcpy)->Arg(64)->Arg(1500)->Arg(9000)->Arg(65535);
BENCHMARK(bm_incremental_update);
