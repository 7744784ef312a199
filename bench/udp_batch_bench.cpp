// Guest datagrams per second through nat::udp_translator (nat/udp.hpp) onto a host loopback socket,
// batched per burst and one at a time, side by side.
//
// Per iteration the guest hands the translator a burst of 64 datagrams of one flow (the frames built
// once, kept alive as a port's burst keeps them), and a loopback UDP socket bound by the benchmark
// takes them all with one recvmmsg (the same cost in both variants):
//  * `batched`: inspect() for each frame, then end_burst() once — one sendmmsg for the 64, as
//    basic_network does at the end of a port's burst;
//  * `per_datagram`: end_burst() after each inspect() — one sendmmsg per datagram, what
//    basic_network::input() does for a frame handed over alone, and the cost of the one send per
//    datagram the translator made before bursts.
// `syscalls_per_datagram` is the translator's sendmmsg calls per datagram carried. The argument is
// the payload size. Iteration counts are fixed, so each run is bounded.
#include <ankanet/nat/udp.hpp>

#include "../tests/support/nat_guest.hpp"

#include <benchmark/benchmark.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using namespace ankanet;
namespace ip = boost::asio::ip;

constexpr std::size_t burst = 64;

/// Reads every datagram queued on `socket` with recvmmsg; returns how many.
std::size_t drain(ip::udp::socket& socket, std::vector<std::byte>& space) {
    constexpr std::size_t slot = 2048;
    std::array<iovec, burst> iov{};
    std::array<mmsghdr, burst> msgs{};
    for (std::size_t i = 0; i < burst; ++i) {
        iov[i] = iovec{space.data() + i * slot, slot};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    std::size_t total = 0;
    for (;;) {
        const int n = ::recvmmsg(socket.native_handle(), msgs.data(), burst, MSG_DONTWAIT, nullptr);
        if (n <= 0) return total;
        total += static_cast<std::size_t>(n);
    }
}

void run(benchmark::State& state, bool batched) {
    boost::asio::io_context io;
    ip::udp::socket sink{io, ip::udp::endpoint{ip::make_address_v4("127.0.0.1"), 0}};
    const int rcvbuf = 4 << 20;
    (void)::setsockopt(sink.native_handle(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    nat::udp_translator<nat::egress_allow_list> nat{
        io.get_executor(), {}, nat::egress_allow_list{{wire::ipv4_prefix{wire::ipv4_address{127, 0, 0, 0}, 8}}}};
    test::recording_context ctx;

    const std::string payload(static_cast<std::size_t>(state.range(0)), 'x');
    std::vector<test::frame_bytes> frames;
    for (std::size_t i = 0; i < burst; ++i) {
        frames.push_back(test::guest_udp_frame(test::gateway_ip, 45000, sink.local_endpoint().port(), payload));
    }
    std::vector<wire::parsed_frame> parsed;
    for (const auto& frame : frames) parsed.push_back(wire::parsed_frame::parse(frame));
    std::vector<std::byte> space(burst * 2048);

    std::size_t received = 0;
    for (auto _ : state) {
        for (const auto& f : parsed) {
            benchmark::DoNotOptimize(nat.inspect(f, ctx));
            if (!batched) nat.end_burst(ctx);
        }
        if (batched) nat.end_burst(ctx);
        received += drain(sink, space);
    }
    const auto& stats = nat.stats();
    state.SetItemsProcessed(static_cast<std::int64_t>(stats.guest_datagrams));
    state.counters["syscalls_per_datagram"] =
        stats.guest_datagrams == 0 ? 0.0 : static_cast<double>(stats.batches_sent) / static_cast<double>(stats.guest_datagrams);
    state.counters["dropped"] = static_cast<double>(stats.dropped_send);
    state.counters["received"] = static_cast<double>(received);
}

void bm_udp_guest_to_host_batched(benchmark::State& state) { run(state, true); }
void bm_udp_guest_to_host_per_datagram(benchmark::State& state) { run(state, false); }

} // namespace

BENCHMARK(bm_udp_guest_to_host_batched)->Arg(64)->Arg(1400)->Iterations(2000);
BENCHMARK(bm_udp_guest_to_host_per_datagram)->Arg(64)->Arg(1400)->Iterations(2000);
