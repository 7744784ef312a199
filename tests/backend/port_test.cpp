#include <ankanet/backend/port.hpp>

#include <ankanet/backend/fault_injector.hpp>
#include <ankanet/backend/memory.hpp>
#include <ankanet/backend/pcap.hpp>
#include <ankanet/backend/qemu_stream.hpp>
#include <ankanet/backend/tap.hpp>
#include <ankanet/backend/unix_dgram.hpp>
#include <ankanet/wire/ethernet.hpp>

#include "../support/without_bursts.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

using namespace ankanet;
using namespace ankanet::backend;
using ankanet::test::without_bursts;

namespace {

using bytes = std::vector<std::byte>;

/// A 60-byte frame carrying `sequence` (big-endian) right after its Ethernet header.
bytes numbered_frame(std::uint32_t sequence, std::size_t size = wire::ethernet::min_frame_len) {
    bytes frame(size, std::byte{0x5a});
    REQUIRE_FALSE(wire::ethernet::repr{*wire::mac_address::parse("52:54:00:00:00:01"),
                                       *wire::mac_address::parse("52:54:00:00:00:02"), 0x88b5, {}}
                      .emit(frame));
    wire::store_be32(frame, wire::ethernet::header_len, sequence);
    return frame;
}

std::uint32_t sequence_of(wire::const_bytes frame) { return wire::load_be32(frame, wire::ethernet::header_len); }

static_assert(burst_backend<memory_endpoint>);
static_assert(burst_backend<qemu_stream_connection>);
static_assert(burst_backend<unix_dgram_endpoint>);
static_assert(burst_backend<tap_device>);
static_assert(burst_backend<pcap_recorder<memory_endpoint>>);
static_assert(burst_backend<fault_injector<memory_endpoint>>);
static_assert(burst_backend<pcap_recorder<fault_injector<memory_endpoint>>>);
static_assert(frame_backend<without_bursts<memory_endpoint>> && !burst_backend<without_bursts<memory_endpoint>>);
static_assert(!burst_backend<pcap_recorder<without_bursts<memory_endpoint>>>); // the decorators forward only what is there
static_assert(!burst_backend<fault_injector<without_bursts<memory_endpoint>>>);

/// What a started port delivered: the frames' sequence numbers, how many each turn of the event
/// loop (one handler run) delivered, and how the loop ended.
struct port_log {
    std::vector<std::uint32_t> sequences;
    std::vector<std::size_t> per_turn;
    std::size_t this_turn = 0;
    std::optional<std::error_code> closed;
    int closed_calls = 0;

    void start(port& p) {
        p.start([this](port&, wire::const_bytes frame) {
                    sequences.push_back(sequence_of(frame));
                    ++this_turn;
                },
                [this](port&, std::error_code ec) {
                    closed = ec;
                    ++closed_calls;
                });
    }
    /// Ends a turn: records how many frames it delivered, if any.
    void end_turn() {
        if (this_turn != 0) per_turn.push_back(this_turn);
        this_turn = 0;
    }
};

/// Runs ready handlers one at a time, closing each turn in every log, until none is ready.
std::size_t run_turns(boost::asio::io_context& io, std::initializer_list<port_log*> logs) {
    std::size_t turns = 0;
    io.restart();
    while (io.poll_one() != 0) {
        ++turns;
        for (auto* log : logs) log->end_turn();
    }
    return turns;
}

std::vector<std::uint32_t> counting(std::uint32_t from, std::uint32_t to) {
    std::vector<std::uint32_t> out;
    for (std::uint32_t i = from; i < to; ++i) out.push_back(i);
    return out;
}

} // namespace

TEST_CASE("port: a burst is delivered in order, at most port_burst_limit frames per turn of the event loop") {
    static_assert(port_burst_limit == 64);
    boost::asio::io_context io;
    auto [guest, ours] = make_memory_link(io.get_executor(), default_mtu, 256);
    for (std::uint32_t i = 0; i < 200; ++i) REQUIRE_FALSE(guest.send(numbered_frame(i)));
    auto p = make_port("vm", std::move(ours));
    port_log log;
    log.start(*p);
    run_turns(io, {&log});
    CHECK(log.sequences == counting(0, 200));
    CHECK(log.per_turn == std::vector<std::size_t>{64, 64, 64, 8});
    CHECK(p->stats().rx_frames == 200);
    CHECK(p->running());
    CHECK_FALSE(log.closed);

    // Drained: the port waits in async_receive, and the next frame starts a new burst.
    REQUIRE_FALSE(guest.send(numbered_frame(200)));
    REQUIRE_FALSE(guest.send(numbered_frame(201)));
    run_turns(io, {&log});
    CHECK(log.sequences == counting(0, 202));
    CHECK(log.per_turn.back() == 2);

    // The pending receive holds the port (and the link) alive until the port is closed.
    p->close();
    run_turns(io, {&log});
    REQUIRE(log.closed);
    CHECK(*log.closed == std::errc::operation_canceled);
    CHECK(log.closed_calls == 1);
}

TEST_CASE("port: a backend without try_receive delivers one frame per turn, the same frames") {
    boost::asio::io_context io;
    auto [guest, ours] = make_memory_link(io.get_executor(), default_mtu, 256);
    for (std::uint32_t i = 0; i < 100; ++i) REQUIRE_FALSE(guest.send(numbered_frame(i)));
    auto p = make_port("vm", without_bursts<memory_endpoint>{std::move(ours)});
    port_log log;
    log.start(*p);
    CHECK(run_turns(io, {&log}) == 100);
    CHECK(log.sequences == counting(0, 100));
    CHECK(log.per_turn == std::vector<std::size_t>(100, 1));
    p->close();
    run_turns(io, {&log});
    CHECK(log.closed == std::make_error_code(std::errc::operation_canceled));
}

TEST_CASE("port: two ports on one io_context both make progress while one is flooded") {
    boost::asio::io_context io;
    auto [flood_guest, flood_ours] = make_memory_link(io.get_executor(), default_mtu, 256);
    auto [quiet_guest, quiet_ours] = make_memory_link(io.get_executor(), default_mtu, 256);
    auto flooded = make_port("flooded", std::move(flood_ours));
    auto quiet = make_port("quiet", std::move(quiet_ours));

    // The flooding guest never lets its queue run dry: every frame delivered is replaced at once,
    // so try_receive always finds one. Only the burst limit hands the loop back. (The flood stops
    // after 10000 frames, so that a broken limit fails this test instead of hanging it.)
    static_assert(2 * port_burst_limit < 10000);
    std::uint32_t next = 0;
    for (; next < 128; ++next) REQUIRE_FALSE(flood_guest.send(numbered_frame(next)));
    port_log flood_log;
    std::size_t flood_seen_when_quiet_done = 0;
    port_log quiet_log;
    flooded->start(
        [&](port&, wire::const_bytes frame) {
            flood_log.sequences.push_back(sequence_of(frame));
            ++flood_log.this_turn;
            if (next < 10000) REQUIRE_FALSE(flood_guest.send(numbered_frame(next++)));
        },
        [&](port&, std::error_code ec) { flood_log.closed = ec; });
    for (std::uint32_t i = 0; i < 5; ++i) REQUIRE_FALSE(quiet_guest.send(numbered_frame(1000000 + i)));
    quiet->start(
        [&](port&, wire::const_bytes frame) {
            quiet_log.sequences.push_back(sequence_of(frame));
            if (quiet_log.sequences.size() == 5) flood_seen_when_quiet_done = flood_log.sequences.size();
        },
        [&](port&, std::error_code ec) { quiet_log.closed = ec; });

    io.restart();
    for (int turn = 0; turn < 10 && quiet_log.sequences.size() < 5; ++turn) {
        REQUIRE(io.poll_one() == 1);
        flood_log.end_turn();
    }
    CHECK(quiet_log.sequences == counting(1000000, 1000005));
    // The quiet port's frames came after at most one flooded burst (or two, had the flooded
    // port's completion been queued first twice): the flood did not hold the loop.
    CHECK(flood_seen_when_quiet_done >= 1);
    CHECK(flood_seen_when_quiet_done <= 2 * port_burst_limit);
    // The flooded port keeps going too, a full burst per turn, in order.
    for (int turn = 0; turn < 5; ++turn) {
        REQUIRE(io.poll_one() == 1);
        flood_log.end_turn();
    }
    CHECK(flood_log.sequences == counting(0, static_cast<std::uint32_t>(flood_log.sequences.size())));
    CHECK(flood_log.sequences.size() >= 5 * port_burst_limit);
    CHECK(std::all_of(flood_log.per_turn.begin(), flood_log.per_turn.end(),
                      [](std::size_t n) { return n == port_burst_limit; }));

    // A frame for the quiet port now is handled after at most one more flooded burst.
    const auto flood_before = flood_log.sequences.size();
    REQUIRE_FALSE(quiet_guest.send(numbered_frame(2000000)));
    while (quiet_log.sequences.size() < 6) {
        REQUIRE(io.poll_one() == 1);
        REQUIRE(flood_log.sequences.size() - flood_before <= 2 * port_burst_limit);
    }
    CHECK(quiet_log.sequences.back() == 2000000);
    next = 10000; // the flood stops: the guest's sends would fail once the port is closed
    flooded->close();
    quiet->close();
    io.restart();
    io.run();
    CHECK(flood_log.closed == std::make_error_code(std::errc::operation_canceled));
    CHECK(quiet_log.closed == std::make_error_code(std::errc::operation_canceled));
}

TEST_CASE("port: an error met by try_receive ends the loop as an async_receive error would, after the queued frames") {
    boost::asio::io_context io;
    auto [guest, ours] = make_memory_link(io.get_executor());
    for (std::uint32_t i = 0; i < 3; ++i) REQUIRE_FALSE(guest.send(numbered_frame(i)));
    guest.close(); // the peer goes away with three frames still queued
    auto p = make_port("vm", std::move(ours));
    port_log log;
    log.start(*p);
    CHECK(run_turns(io, {&log}) == 1); // all of it in one turn: three frames, then peer_closed
    CHECK(log.sequences == counting(0, 3));
    REQUIRE(log.closed);
    CHECK(*log.closed == errc::peer_closed);
    CHECK(log.closed_calls == 1);
    CHECK_FALSE(p->running());
}

TEST_CASE("port: closing the port from its frame handler stops the burst at that frame") {
    boost::asio::io_context io;
    auto [guest, ours] = make_memory_link(io.get_executor());
    for (std::uint32_t i = 0; i < 10; ++i) REQUIRE_FALSE(guest.send(numbered_frame(i)));
    auto p = make_port("vm", std::move(ours));
    std::vector<std::uint32_t> seen;
    std::optional<std::error_code> closed;
    p->start(
        [&](port& self, wire::const_bytes frame) {
            seen.push_back(sequence_of(frame));
            if (seen.size() == 2) self.close(); // e.g. the daemon refusing a MAC another VM holds
        },
        [&](port&, std::error_code ec) { closed = ec; });
    io.run();
    CHECK(seen == counting(0, 2));
    REQUIRE(closed);
    CHECK(*closed == std::errc::operation_canceled);
}

TEST_CASE("port: a QEMU stream socket's frames arrive in order, many per turn, and the end of stream after them") {
    boost::asio::io_context io;
    int fds[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    auto connection = qemu_stream_connection::adopt(io.get_executor(), fds[0]);
    REQUIRE(connection);
    auto p = make_port("qemu", std::move(*connection));

    bytes stream;
    for (std::uint32_t i = 0; i < 150; ++i) {
        const auto frame = numbered_frame(i, 60 + i);
        std::array<std::byte, 4> prefix{};
        wire::store_be32(prefix, 0, static_cast<std::uint32_t>(frame.size()));
        stream.insert(stream.end(), prefix.begin(), prefix.end());
        stream.insert(stream.end(), frame.begin(), frame.end());
    }
    REQUIRE(::write(fds[1], stream.data(), stream.size()) == static_cast<::ssize_t>(stream.size()));
    REQUIRE(::close(fds[1]) == 0); // all written, then the VM goes away

    port_log log;
    log.start(*p);
    io.restart();
    std::size_t turns = 0;
    while (!log.closed && turns < 1000) {
        turns += io.run_one();
        log.end_turn();
    }
    CHECK(log.sequences == counting(0, 150));
    REQUIRE(log.closed);
    CHECK(*log.closed == errc::peer_closed);
    CHECK(log.closed_calls == 1);
    // Bursts: far fewer turns than frames, none over the limit.
    CHECK(log.per_turn.size() < 150);
    CHECK(*std::max_element(log.per_turn.begin(), log.per_turn.end()) <= port_burst_limit);
    CHECK(p->stats().rx_frames == 150);
}

TEST_CASE("port: bursts through the decorators: a pcap recorder records every frame, a fault injector applies its faults") {
    boost::asio::io_context io;
    const auto dir = std::filesystem::temp_directory_path() / ("ankanet-port-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    {
        auto [guest, ours] = make_memory_link(io.get_executor(), default_mtu, 256);
        fault_config faults;
        faults.rx.reorder = 1.0; // every pair swaps places
        auto injector = fault_injector<memory_endpoint>::create(std::move(ours), faults);
        REQUIRE(injector);
        auto recorder = pcap_recorder<fault_injector<memory_endpoint>>::open(std::move(*injector), dir / "port.pcap");
        REQUIRE(recorder);
        const auto writer = recorder->writer();
        for (std::uint32_t i = 0; i < 100; ++i) REQUIRE_FALSE(guest.send(numbered_frame(i)));
        auto p = make_port("vm", std::move(*recorder));
        port_log log;
        log.start(*p);
        run_turns(io, {&log});
        std::vector<std::uint32_t> swapped;
        for (std::uint32_t i = 0; i < 100; i += 2) {
            swapped.push_back(i + 1);
            swapped.push_back(i);
        }
        CHECK(log.sequences == swapped);
        CHECK(log.per_turn.size() < 100);
        CHECK(writer->stats().records == 100);
        p->close();
        io.restart();
        io.run();
    }
    std::filesystem::remove_all(dir);
}

namespace {

/// Keeps the spans a port hands over and, at each burst's end, checks that every frame of the burst
/// still holds what it held when it was delivered: its sequence number, its size and its filler.
struct burst_keeper {
    struct kept {
        wire::const_bytes span;
        bytes copy;
    };
    std::vector<kept> this_burst;
    std::vector<std::size_t> per_burst;
    std::vector<std::uint32_t> sequences;
    std::size_t damaged = 0;     // frames whose bytes changed before their burst ended
    std::size_t overlapping = 0; // frames sharing bytes with another frame of their burst
    std::optional<std::error_code> closed;

    void start(port& p) {
        p.start([this](port&, wire::const_bytes frame) { this_burst.push_back({frame, bytes(frame.begin(), frame.end())}); },
                [this](port&, std::error_code ec) { closed = ec; },
                [this](port&) { end_burst(); });
    }
    void end_burst() {
        for (std::size_t i = 0; i < this_burst.size(); ++i) {
            const auto& k = this_burst[i];
            if (!std::equal(k.span.begin(), k.span.end(), k.copy.begin(), k.copy.end())) ++damaged;
            sequences.push_back(sequence_of(k.span));
            for (std::size_t j = 0; j < i; ++j) {
                const auto& other = this_burst[j].span;
                if (k.span.data() < other.data() + other.size() && other.data() < k.span.data() + k.span.size()) ++overlapping;
            }
        }
        per_burst.push_back(this_burst.size());
        this_burst.clear();
    }
};

/// Runs ready handlers until none is ready.
void poll_all(boost::asio::io_context& io) {
    io.restart();
    while (io.poll_one() != 0) {}
}

/// Starts `keeper` on `p`, runs `io` until nothing is ready, and checks what the keeper saw: frames
/// 0 to `frames` in order, in bursts of `per_burst` frames, none changed before its burst ended
/// and none sharing bytes with another of its burst.
void keep_bursts(boost::asio::io_context& io, port& p, burst_keeper& keeper, std::uint32_t frames,
                 const std::vector<std::size_t>& per_burst) {
    keeper.start(p);
    poll_all(io);
    CHECK(keeper.sequences == counting(0, frames));
    CHECK(keeper.per_burst == per_burst);
    CHECK(keeper.damaged == 0);
    CHECK(keeper.overlapping == 0);
}

/// Frame `i` of a test: numbered, `size` bytes, its filler after the number `i`'s low byte.
bytes filled_frame(std::uint32_t i, std::size_t size) {
    bytes frame = numbered_frame(i, size);
    std::fill(frame.begin() + wire::ethernet::header_len + 4, frame.end(), static_cast<std::byte>(i & 0xff));
    return frame;
}

} // namespace

TEST_CASE("port: every frame of a burst stays intact, in its own region, until the burst ends") {
    CHECK(burst_frames(default_mtu) == port_burst_limit);
    boost::asio::io_context io;
    auto [guest, ours] = make_memory_link(io.get_executor(), default_mtu, 256);
    // Sizes vary from the smallest frame to the largest the MTU allows, so a region too short or
    // a frame written over its neighbour would show.
    for (std::uint32_t i = 0; i < 150; ++i) {
        const std::size_t size = i % 3 == 0 ? max_frame_len(default_mtu) : wire::ethernet::min_frame_len + (i * 37) % 1400;
        REQUIRE_FALSE(guest.send(filled_frame(i, size)));
    }
    auto p = make_port("vm", std::move(ours));
    CHECK(p->burst_capacity() == port_burst_limit);
    burst_keeper keeper;
    keep_bursts(io, *p, keeper, 150, {64, 64, 22});

    // A burst ended by an error still ends (with its frames intact) before the loop closes.
    for (std::uint32_t i = 150; i < 155; ++i) REQUIRE_FALSE(guest.send(filled_frame(i, max_frame_len(default_mtu))));
    guest.close();
    poll_all(io);
    CHECK(keeper.sequences == counting(0, 155));
    CHECK(keeper.per_burst.back() == 5);
    CHECK(keeper.damaged == 0);
    REQUIRE(keeper.closed);
    CHECK(*keeper.closed == errc::peer_closed);
}

TEST_CASE("port: at the largest MTU the burst arena holds fewer, whole frames within its budget") {
    // 1 MiB holds 15 regions of 65538 bytes: 15 frames a burst.
    CHECK(max_frame_len(max_mtu) == 65538);
    CHECK(burst_frames(max_mtu) == 15);
    CHECK(burst_frames(max_mtu) * max_frame_len(max_mtu) <= port_arena_budget);
    CHECK(burst_frames(9000) == port_burst_limit);
    boost::asio::io_context io;
    auto [guest, ours] = make_memory_link(io.get_executor(), max_mtu, 64);
    for (std::uint32_t i = 0; i < 40; ++i) REQUIRE_FALSE(guest.send(filled_frame(i, max_frame_len(max_mtu))));
    auto p = make_port("jumbo", std::move(ours));
    CHECK(p->burst_capacity() == 15);
    burst_keeper keeper;
    keep_bursts(io, *p, keeper, 40, {15, 15, 10});
    // The frames after each burst's first took 14 regions of the thread's arena, within the budget.
    CHECK(ankanet::backend::detail::burst_arena::local().size() >= 14 * max_frame_len(max_mtu));
    CHECK(ankanet::backend::detail::burst_arena::local().size() <= port_arena_budget);
    p->close();
    io.restart();
    io.run();

    // A backend that cannot drain bursts has a one-frame arena, whatever its MTU.
    auto [guest2, ours2] = make_memory_link(io.get_executor(), default_mtu, 4);
    auto single = make_port("single", without_bursts<memory_endpoint>{std::move(ours2)});
    CHECK(single->burst_capacity() == 1);
}
