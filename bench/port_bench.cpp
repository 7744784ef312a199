// Frames per second through a `port` (backend/port.hpp), with burst draining on and off, side by side.
//
// A port's receive loop is what ankanetd runs for every VM. Each benchmark wraps one backend in a
// port on an io_context and measures frames delivered to the port's frame handler:
//  * bm_port_memory: a memory link; per iteration the guest end sends a batch of `batch` frames
//    (one memcpy each into the ring) and the io_context runs until the port has handed them all
//    over. No system calls: the figure is the receive loop's own cost.
//  * bm_port_qemu_stream: a QEMU stream connection on one end of a unix socketpair; per iteration
//    the other end (this same thread, non-blocking writes) writes a batch of length-prefixed
//    frames and the io_context is polled until the port has delivered them all. Writing is
//    included in the time, the same for both variants.
// Each runs twice: `burst` — the backend as it is (burst_backend: each completion is followed by
// up to port_burst_limit - 1 try_receive calls) — and `one_per_turn` — the same backend behind a
// wrapper that hides try_receive, so the port takes one frame per async_receive completion, as
// every port did before bursts. `handlers_per_frame` is how many handlers the io_context ran per
// frame delivered (1 or more without bursts; about 1/64 with them). The argument is the frame size.
// Iteration counts are fixed, so each run is bounded.
#include <ankanet/backend/memory.hpp>
#include <ankanet/backend/port.hpp>
#include <ankanet/backend/qemu_stream.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/ethernet.hpp>

#include "../tests/support/without_bursts.hpp"

#include <benchmark/benchmark.h>

#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace {

using namespace ankanet;
using namespace ankanet::backend;

constexpr std::size_t batch = 256; // the memory link's default queue depth

std::vector<std::byte> frame_of(std::size_t size) {
    std::vector<std::byte> frame(size, std::byte{0x5a});
    (void)wire::ethernet::repr{*wire::mac_address::parse("52:54:00:00:00:01"), *wire::mac_address::parse("52:54:00:00:00:02"),
                               0x88b5, std::nullopt}
        .emit(frame);
    return frame;
}

/// The same backend with try_receive hidden: a port over it takes one frame per completion.
template <class Backend>
using one_per_turn = ankanet::test::without_bursts<Backend>;
static_assert(!burst_backend<one_per_turn<memory_endpoint>>);

template <bool Burst, class Backend>
std::shared_ptr<port> port_over(Backend backend) {
    if constexpr (Burst) {
        static_assert(burst_backend<Backend>);
        return make_port("bench", std::move(backend));
    } else {
        return make_port("bench", one_per_turn<Backend>{std::move(backend)});
    }
}

/// Starts `p`, counting the frames it delivers into `delivered`.
void start_counting(port& p, std::uint64_t& delivered) {
    p.start([&delivered](port&, wire::const_bytes frame) { benchmark::DoNotOptimize(frame.data()); ++delivered; },
            [](port&, std::error_code) {});
}

template <bool Burst>
void bm_port_memory(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    boost::asio::io_context io;
    auto [guest, ours] = make_memory_link(io.get_executor(), default_mtu, batch);
    auto p = port_over<Burst>(std::move(ours));
    std::uint64_t delivered = 0;
    std::uint64_t handlers = 0;
    start_counting(*p, delivered);
    const auto frame = frame_of(size);
    for (auto _ : state) {
        for (std::size_t i = 0; i < batch; ++i) {
            if (guest.send(frame)) state.SkipWithError("the memory link dropped a frame");
        }
        io.restart();
        handlers += io.run(); // returns once the port waits in async_receive again: the batch is in
    }
    if (delivered != batch * static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("frames went missing");
    state.SetItemsProcessed(static_cast<std::int64_t>(delivered));
    state.SetBytesProcessed(static_cast<std::int64_t>(delivered * size));
    state.counters["handlers_per_frame"] = static_cast<double>(handlers) / static_cast<double>(delivered);
    p->close();
    io.restart();
    io.run();
}

template <bool Burst>
void bm_port_qemu_stream(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    boost::asio::io_context io;
    int fds[2] = {-1, -1};
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        state.SkipWithError("socketpair failed");
        return;
    }
    const int vm = fds[1];
    ::fcntl(vm, F_SETFL, ::fcntl(vm, F_GETFL) | O_NONBLOCK);
    auto connection = qemu_stream_connection::adopt(io.get_executor(), fds[0]);
    if (!connection) {
        state.SkipWithError("adopt failed");
        ::close(vm);
        return;
    }
    auto p = port_over<Burst>(std::move(*connection));
    std::uint64_t delivered = 0;
    std::uint64_t handlers = 0;
    start_counting(*p, delivered);

    // One batch as QEMU writes it: [len][frame] ...
    const auto frame = frame_of(size);
    std::vector<std::byte> stream;
    for (std::size_t i = 0; i < batch; ++i) {
        std::array<std::byte, qemu_stream_prefix_len> prefix{};
        wire::store_be32(prefix, 0, static_cast<std::uint32_t>(frame.size()));
        stream.insert(stream.end(), prefix.begin(), prefix.end());
        stream.insert(stream.end(), frame.begin(), frame.end());
    }
    io.restart();
    for (auto _ : state) {
        const std::uint64_t target = delivered + batch;
        std::size_t written = 0;
        while (delivered < target) {
            if (written < stream.size()) {
                const auto n = ::write(vm, stream.data() + written, stream.size() - written);
                if (n > 0) written += static_cast<std::size_t>(n);
            }
            handlers += io.poll();
        }
    }
    if (delivered != batch * static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("frames went missing");
    state.SetItemsProcessed(static_cast<std::int64_t>(delivered));
    state.SetBytesProcessed(static_cast<std::int64_t>(delivered * size));
    state.counters["handlers_per_frame"] = static_cast<double>(handlers) / static_cast<double>(delivered);
    p->close();
    io.restart();
    io.poll();
    ::close(vm);
}

} // namespace

BENCHMARK_TEMPLATE(bm_port_memory, true)->Name("bm_port_memory/burst")->Arg(60)->Arg(1514)->Iterations(4000);
BENCHMARK_TEMPLATE(bm_port_memory, false)->Name("bm_port_memory/one_per_turn")->Arg(60)->Arg(1514)->Iterations(4000);
BENCHMARK_TEMPLATE(bm_port_qemu_stream, true)->Name("bm_port_qemu_stream/burst")->Arg(60)->Arg(1514)->Iterations(2000);
BENCHMARK_TEMPLATE(bm_port_qemu_stream, false)->Name("bm_port_qemu_stream/one_per_turn")->Arg(60)->Arg(1514)->Iterations(2000);
