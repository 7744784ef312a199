// Frames per second through a real TAP, both ways, beside the memory backend in the same run.
//
// Each TAP benchmark makes its own network namespace (deleted when it ends) holding TAP "eth0",
// up, IPv6 off, created with tap_device::open_in_netns:
//  * bm_tap_send: tap_device::send() of one frame per iteration, into the namespace's kernel. The
//    frames are for eth0's MAC with EtherType 0x88b5 (local experimental), so the kernel takes
//    each one off the TAP, counts it (rx_packets) and drops it for want of a handler: the figure
//    is the backend's write path plus the kernel's receive, with no protocol work.
//    `kernel_accepted` is the share of sent frames that eth0's rx_packets counted.
//  * bm_tap_receive: an AF_PACKET socket bound to eth0 inside the namespace injects a batch of
//    frames (the kernel transmits them on eth0, i.e. into the TAP's queue), then the backend reads
//    the batch with chained async_receive calls on an io_context. Only the reading is timed, as
//    the thread's CPU time (manual time; the read system calls run on this thread, so that is the
//    whole cost, and it does not count time the machine gave to other processes — Google
//    Benchmark's default for the other two is CPU time too). `inject_us_per_frame` (CPU) is what
//    the injection cost besides, `receive_wall_us_per_frame` the reading's wall-clock time.
//  * bm_memory_send_receive: the memory link, a batch sent then received the same way: the cost of
//    the backend interface with no system call, for scale.
// Iteration counts are fixed, so each run is bounded. The TAP benchmarks need root, /dev/net/tun
// and `ip`; without them they skip with the reason.
#include <ankanet/backend/memory.hpp>
#include <ankanet/backend/netns.hpp>
#include <ankanet/backend/tap.hpp>
#include <ankanet/wire/ethernet.hpp>

#include "../tests/support/netns.hpp"

#include <benchmark/benchmark.h>

#include <boost/asio/io_context.hpp>

#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace ankanet;
using namespace ankanet::backend;

const wire::mac_address guest_mac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
const wire::mac_address gateway_mac{{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}};
constexpr std::uint16_t experimental_ethertype = 0x88b5;
constexpr std::size_t batch = 32; // far below the TAP's queue (500 frames): nothing is lost waiting

std::vector<std::byte> frame_of(std::size_t size, wire::mac_address source, wire::mac_address destination) {
    std::vector<std::byte> frame(size, std::byte{0x5a});
    (void)wire::ethernet::repr{source, destination, experimental_ethertype, std::nullopt}.emit(frame);
    return frame;
}

/// A namespace with TAP eth0 in it, up, and the backend on it.
struct tap_lab {
    test::scoped_netns ns;
    boost::asio::io_context io;
    std::optional<tap_device> tap;
    int injector = -1; ///< AF_PACKET socket on eth0, inside the namespace

    tap_lab() = default;
    tap_lab(const tap_lab&) = delete;
    tap_lab& operator=(const tap_lab&) = delete;
    ~tap_lab() {
        if (injector >= 0) ::close(injector);
    }

    std::uint64_t eth0_counter(const std::string& name) const {
        const auto read = test::run_in(ns, "cat /sys/class/net/eth0/statistics/" + name);
        return read.status == 0 ? std::stoull(read.output) : 0;
    }
};

/// Sets up a lab, or says why it cannot.
std::unique_ptr<tap_lab> make_lab(benchmark::State& state, bool with_injector) {
    if (const auto missing = test::missing_netns_requirements(); !missing.empty()) {
        state.SkipWithError(("needs " + missing).c_str());
        return nullptr;
    }
    auto lab = std::make_unique<tap_lab>();
    if (test::run_in(lab->ns, "[ ! -d /proc/sys/net/ipv6 ] || echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6")
            .status != 0) {
        state.SkipWithError("cannot turn IPv6 off in the namespace");
        return nullptr;
    }
    tap_options options;
    options.mac = guest_mac;
    options.set_interface_mtu = true;
    options.bring_up = true;
    auto tap = tap_device::open_in_netns(lab->io.get_executor(), lab->ns.path(), "eth0", options);
    if (!tap) {
        state.SkipWithError(("open_in_netns: " + tap.error().message()).c_str());
        return nullptr;
    }
    lab->tap.emplace(std::move(*tap));
    if (with_injector) {
        auto injector = run_in_netns(lab->ns.path(), []() -> result<int> {
            const int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0); // protocol 0: sends only
            if (fd < 0) return std::error_code{errno, std::system_category()};
            ::sockaddr_ll address{};
            address.sll_family = AF_PACKET;
            address.sll_ifindex = static_cast<int>(::if_nametoindex("eth0"));
            const int bypass = 1; // straight to the TAP's queue, no qdisc in between
            if (address.sll_ifindex == 0 ||
                ::bind(fd, reinterpret_cast<const ::sockaddr*>(&address), sizeof address) != 0 ||
                ::setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &bypass, sizeof bypass) != 0) {
                const std::error_code why{errno, std::system_category()};
                ::close(fd);
                return why;
            }
            return fd;
        });
        if (!injector) {
            state.SkipWithError(("packet socket: " + injector.error().message()).c_str());
            return nullptr;
        }
        lab->injector = *injector;
    }
    return lab;
}

double thread_cpu_seconds() {
    ::timespec now{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

/// Receives `count` frames with chained async_receive calls; false if they did not all arrive.
template <class Backend>
bool receive_batch(boost::asio::io_context& io, Backend& backend, std::vector<std::byte>& buffer, std::size_t count) {
    std::size_t received = 0;
    bool failed = false;
    struct chain {
        Backend& backend;
        std::vector<std::byte>& buffer;
        std::size_t count;
        std::size_t& received;
        bool& failed;
        void operator()(std::error_code ec, std::size_t) {
            if (ec) {
                failed = true;
                return;
            }
            if (++received < count) backend.async_receive(buffer, *this);
        }
    };
    backend.async_receive(buffer, chain{backend, buffer, count, received, failed});
    io.restart();
    io.run_for(std::chrono::seconds{2}); // returns as soon as the chain ends; the limit is for a lost frame
    return !failed && received == count;
}

void bm_tap_send(benchmark::State& state) {
    auto lab = make_lab(state, false);
    if (!lab) return;
    const auto frame = frame_of(static_cast<std::size_t>(state.range(0)), gateway_mac, guest_mac);
    const auto before = lab->eth0_counter("rx_packets");
    for (auto _ : state) {
        benchmark::DoNotOptimize(lab->tap->send(frame));
    }
    const auto accepted = lab->eth0_counter("rx_packets") - before;
    const auto stats = lab->tap->stats();
    state.SetItemsProcessed(static_cast<std::int64_t>(stats.tx_frames));
    state.SetBytesProcessed(static_cast<std::int64_t>(stats.tx_bytes));
    state.counters["kernel_accepted"] = static_cast<double>(accepted) / static_cast<double>(state.iterations());
    state.counters["tx_dropped"] = static_cast<double>(stats.tx_dropped);
}

void bm_tap_receive(benchmark::State& state) {
    auto lab = make_lab(state, true);
    if (!lab) return;
    const auto frame = frame_of(static_cast<std::size_t>(state.range(0)), guest_mac, gateway_mac);
    std::vector<std::byte> buffer(max_frame_len(lab->tap->mtu()));
    double inject_seconds = 0;
    double receive_wall_seconds = 0;
    for (auto _ : state) {
        const double start_inject = thread_cpu_seconds();
        std::size_t injected = 0;
        for (std::size_t i = 0; i < batch; ++i) {
            if (::send(lab->injector, frame.data(), frame.size(), 0) == static_cast<::ssize_t>(frame.size())) ++injected;
        }
        const double start_receive = thread_cpu_seconds();
        const auto start_receive_wall = std::chrono::steady_clock::now();
        if (injected != batch) {
            state.SkipWithError("the packet socket in the namespace refused frames");
            break;
        }
        const bool complete = receive_batch(lab->io, *lab->tap, buffer, injected);
        const double end = thread_cpu_seconds();
        receive_wall_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_receive_wall).count();
        inject_seconds += start_receive - start_inject;
        state.SetIterationTime(end - start_receive);
        if (!complete) {
            state.SkipWithError("frames injected into the namespace did not all reach the backend");
            break;
        }
    }
    const auto stats = lab->tap->stats();
    state.SetItemsProcessed(static_cast<std::int64_t>(stats.rx_frames));
    state.SetBytesProcessed(static_cast<std::int64_t>(stats.rx_bytes));
    const double frames = static_cast<double>(std::max<std::uint64_t>(stats.rx_frames, 1));
    state.counters["inject_us_per_frame"] = inject_seconds * 1e6 / frames;
    state.counters["receive_wall_us_per_frame"] = receive_wall_seconds * 1e6 / frames;
}

void bm_memory_send_receive(benchmark::State& state) {
    boost::asio::io_context io;
    auto [a, b] = make_memory_link(io.get_executor(), default_mtu, 256);
    const auto frame = frame_of(static_cast<std::size_t>(state.range(0)), guest_mac, gateway_mac);
    std::vector<std::byte> buffer(max_frame_len(default_mtu));
    for (auto _ : state) {
        for (std::size_t i = 0; i < batch; ++i) benchmark::DoNotOptimize(a.send(frame));
        if (!receive_batch(io, b, buffer, batch)) {
            state.SkipWithError("memory link lost frames");
            break;
        }
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(b.stats().rx_frames));
    state.SetBytesProcessed(static_cast<std::int64_t>(b.stats().rx_bytes));
}

} // namespace

BENCHMARK(bm_tap_send)->Arg(64)->Arg(1500)->Iterations(200'000)->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_tap_receive)->Arg(64)->Arg(1500)->Iterations(4'000)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_memory_send_receive)->Arg(64)->Arg(1500)->Iterations(20'000)->Unit(benchmark::kMicrosecond);
