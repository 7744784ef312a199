#include <ankanet/backend/port.hpp>
#include <ankanet/backend/qemu_stream.hpp>

#include "../support/backend_harness.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

// Live heap bytes, to bound what idle connections hold (this file is its own test executable;
// sizes are what the allocator really hands out: malloc_usable_size, under ASan the size asked for).
#include "../support/counting_allocator.hpp"

using namespace ankanet;
using namespace ankanet::backend;
using namespace ankanet::test;
using namespace std::chrono_literals;

namespace {

/// [len][frame] as the peer writes it.
void append_framed(bytes& out, const bytes& frame) {
    std::array<std::byte, 4> prefix{};
    wire::store_be32(prefix, 0, static_cast<std::uint32_t>(frame.size()));
    out.insert(out.end(), prefix.begin(), prefix.end());
    out.insert(out.end(), frame.begin(), frame.end());
}
void append_prefix(bytes& out, std::uint32_t length) {
    std::array<std::byte, 4> prefix{};
    wire::store_be32(prefix, 0, length);
    out.insert(out.end(), prefix.begin(), prefix.end());
}

/// A connected stream socket pair: [0] for the backend, [1] plays the VM.
std::pair<int, int> stream_pair() { return socket_pair(SOCK_STREAM); }

void write_all(int fd, const bytes& data) {
    std::size_t done = 0;
    while (done < data.size()) {
        const auto n = ::write(fd, data.data() + done, data.size() - done);
        REQUIRE(n > 0);
        done += static_cast<std::size_t>(n);
    }
}

/// Reads exactly n bytes, or fails after 5 s.
bytes read_exact(int fd, std::size_t n) {
    bytes out(n);
    std::size_t done = 0;
    while (done < n) {
        ::pollfd p{fd, POLLIN, 0};
        REQUIRE(::poll(&p, 1, 5000) == 1);
        const auto got = ::read(fd, out.data() + done, n - done);
        REQUIRE(got > 0);
        done += static_cast<std::size_t>(got);
    }
    return out;
}

/// Reads one [len][frame] from the peer side.
bytes read_framed(int fd) {
    const auto prefix = read_exact(fd, 4);
    return read_exact(fd, wire::load_be32(prefix, 0));
}

/// A client of a unix stream socket, connected (the server's backlog holds it until accepted).
int connect_unix(const std::filesystem::path& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    const auto address = address_of(path);
    REQUIRE(::connect(fd, reinterpret_cast<const ::sockaddr*>(&address), sizeof(address)) == 0);
    return fd;
}

qemu_stream_connection adopt_fd(boost::asio::io_context& io, int fd, const qemu_stream_options& options = {}) {
    auto connection = qemu_stream_connection::adopt(io.get_executor(), fd, options);
    REQUIRE(connection);
    return std::move(connection).value();
}

} // namespace

TEST_CASE("qemu_stream: frames cross in order both ways, a receive never completes inline") {
    boost::asio::io_context io;
    auto [ours, theirs] = stream_pair();
    fd_guard peer{theirs};
    auto vm = adopt_fd(io, ours);

    bytes wire_bytes;
    append_framed(wire_bytes, frame_of(60, 1));
    append_framed(wire_bytes, frame_of(1514, 2));
    append_framed(wire_bytes, frame_of(14, 3));
    write_all(peer.fd, wire_bytes);

    receiver r;
    r.start(vm);
    CHECK_FALSE(r.done); // even with data ready, the completion goes through the executor
    REQUIRE(run_until(io, [&] { return r.done; }));
    CHECK_FALSE(r.ec);
    CHECK(r.frame() == frame_of(60, 1));
    r.start(vm);
    CHECK_FALSE(r.done); // now buffered inside the backend: still posted
    REQUIRE(run_until(io, [&] { return r.done; }));
    CHECK(r.frame() == frame_of(1514, 2));
    CHECK(receive(io, vm, r).frame() == frame_of(14, 3));

    REQUIRE_FALSE(vm.send(frame_of(100, 10)));
    REQUIRE_FALSE(vm.send(frame_of(1518, 11)));
    CHECK(read_framed(peer.fd) == frame_of(100, 10));
    CHECK(read_framed(peer.fd) == frame_of(1518, 11));

    const auto stats = vm.stats();
    CHECK(stats.rx_frames == 3);
    CHECK(stats.rx_bytes == 60 + 1514 + 14);
    CHECK(stats.tx_frames == 2);
    CHECK(stats.tx_bytes == 100 + 1518);
    CHECK(stats.rx_runt == 0);
    CHECK(stats.tx_dropped == 0);
}

TEST_CASE("qemu_stream: many frames in one write, split across the smallest receive buffer") {
    boost::asio::io_context io;
    auto [ours, theirs] = stream_pair();
    fd_guard peer{theirs};
    qemu_stream_options options;
    options.receive_buffer = 0; // raised to two maximal frames: frames straddle its end often
    auto vm = adopt_fd(io, ours, options);

    constexpr std::uint32_t count = 120;
    bytes wire_bytes;
    std::vector<bytes> sent;
    for (std::uint32_t i = 0; i < count; ++i) {
        sent.push_back(frame_of(14 + (i * 211u) % 1505u, i)); // 14 .. 1518 bytes
        append_framed(wire_bytes, sent.back());
    }
    // One write from another thread (it may exceed the socket buffer), while we read.
    std::thread writer{[&] { write_all(peer.fd, wire_bytes); }};
    receiver r;
    std::uint32_t got = 0;
    for (; got < count; ++got) {
        receive(io, vm, r);
        if (r.ec || r.frame() != sent[got]) break;
    }
    writer.join();
    CHECK(got == count);
    CHECK(vm.stats().rx_frames == count);
}

TEST_CASE("qemu_stream: runt lengths (zero included) are skipped and counted, the stream stays in sync") {
    boost::asio::io_context io;
    auto [ours, theirs] = stream_pair();
    fd_guard peer{theirs};
    auto vm = adopt_fd(io, ours);

    bytes wire_bytes;
    append_prefix(wire_bytes, 0);                 // zero-length prefix
    append_framed(wire_bytes, frame_of(1, 1));
    append_framed(wire_bytes, frame_of(13, 2));   // one byte short of an Ethernet header
    append_framed(wire_bytes, frame_of(14, 3));   // the shortest valid frame
    append_prefix(wire_bytes, 0);
    append_framed(wire_bytes, frame_of(64, 4));
    write_all(peer.fd, wire_bytes);

    receiver r;
    CHECK(receive(io, vm, r).frame() == frame_of(14, 3));
    CHECK(receive(io, vm, r).frame() == frame_of(64, 4));
    CHECK(vm.stats().rx_runt == 4);
    CHECK(vm.stats().rx_frames == 2);
    CHECK(vm.is_open());
}

TEST_CASE("qemu_stream: a frame over the MTU but plausible is skipped, counted, and the link stays up") {
    boost::asio::io_context io;
    auto [ours, theirs] = stream_pair();
    fd_guard peer{theirs};
    auto vm = adopt_fd(io, ours); // MTU 1500

    bytes wire_bytes;
    append_framed(wire_bytes, frame_of(max_frame_len(1500) + 1, 1)); // one byte too long
    append_framed(wire_bytes, frame_of(9014, 2));                     // a jumbo from a guest with MTU 9000
    append_framed(wire_bytes, frame_of(100, 3));
    // Written in small pieces, so the skipped bytes arrive over many reads.
    std::thread writer{[&] {
        for (std::size_t at = 0; at < wire_bytes.size(); at += 700) {
            const std::size_t n = std::min<std::size_t>(700, wire_bytes.size() - at);
            write_all(peer.fd, bytes(wire_bytes.begin() + static_cast<std::ptrdiff_t>(at),
                                     wire_bytes.begin() + static_cast<std::ptrdiff_t>(at + n)));
            std::this_thread::sleep_for(1ms);
        }
    }};
    receiver r;
    receive(io, vm, r);
    writer.join();
    CHECK_FALSE(r.ec);
    CHECK(r.frame() == frame_of(100, 3));
    CHECK(vm.stats().rx_oversize == 2);
    CHECK(vm.is_open());
}

TEST_CASE("qemu_stream: a lying length closes that connection only, another keeps working") {
    boost::asio::io_context io;
    temp_dir dir{"ankanet-stream"};
    std::vector<qemu_stream_connection> vms;
    auto server = qemu_stream_server::listen(io.get_executor(), dir.path / "vm.sock",
                                             [&](qemu_stream_connection vm) { vms.push_back(std::move(vm)); });
    REQUIRE(server);

    boost::asio::local::stream_protocol::socket liar{io}, honest{io};
    liar.connect(boost::asio::local::stream_protocol::endpoint{(dir.path / "vm.sock").string()});
    REQUIRE(run_until(io, [&] { return vms.size() == 1; }));
    honest.connect(boost::asio::local::stream_protocol::endpoint{(dir.path / "vm.sock").string()});
    REQUIRE(run_until(io, [&] { return vms.size() == 2; }));
    CHECK(server->accepted() == 2);

    bytes lie;
    append_framed(lie, frame_of(60, 1));  // delivered: it precedes the lie
    append_prefix(lie, 0x7fffffff);
    lie.resize(lie.size() + 100, std::byte{0xee});
    write_all(liar.native_handle(), lie);

    receiver r;
    CHECK(receive(io, vms[0], r).frame() == frame_of(60, 1));
    receive(io, vms[0], r);
    CHECK(r.ec == errc::bad_length);
    CHECK(vms[0].stats().rx_oversize == 1);
    CHECK_FALSE(vms[0].is_open());
    CHECK(receive(io, vms[0], r).ec == errc::bad_length); // sticky
    CHECK(vms[0].send(frame_of(60, 2)) == std::errc::not_connected);
    // The liar sees the connection closed: end of stream.
    ::pollfd readable{liar.native_handle(), POLLIN, 0};
    REQUIRE(::poll(&readable, 1, 5000) == 1);
    std::array<char, 16> sink{};
    CHECK(::read(liar.native_handle(), sink.data(), sink.size()) <= 0);

    // The other VM is untouched.
    bytes good;
    append_framed(good, frame_of(80, 5));
    write_all(honest.native_handle(), good);
    CHECK(receive(io, vms[1], r).frame() == frame_of(80, 5));
    REQUIRE_FALSE(vms[1].send(frame_of(90, 6)));
    CHECK(read_framed(honest.native_handle()) == frame_of(90, 6));
}

TEST_CASE("qemu_stream: a peer that disconnects mid-frame is a clean peer_closed") {
    boost::asio::io_context io;
    auto [ours, theirs] = stream_pair();
    fd_guard peer{theirs};
    auto vm = adopt_fd(io, ours);

    bytes wire_bytes;
    append_framed(wire_bytes, frame_of(200, 1));
    bytes half;
    append_framed(half, frame_of(1000, 2));
    wire_bytes.insert(wire_bytes.end(), half.begin(), half.begin() + 500); // prefix and half the frame
    write_all(peer.fd, wire_bytes);
    peer.reset();

    receiver r;
    CHECK(receive(io, vm, r).frame() == frame_of(200, 1)); // complete frames still arrive
    CHECK(receive(io, vm, r).ec == errc::peer_closed);
    CHECK(receive(io, vm, r).ec == errc::peer_closed);
    CHECK(vm.stats().rx_frames == 1);

    // Sending to a vanished peer: a counted drop (EPIPE, without SIGPIPE killing us).
    const auto ec = vm.send(frame_of(60, 3));
    CHECK(ec == errc::peer_closed);
    CHECK(vm.send(frame_of(60, 4)) == errc::peer_closed);
    CHECK(vm.stats().tx_dropped == 2);
}

TEST_CASE("qemu_stream: a peer disconnecting inside the length prefix is peer_closed too") {
    boost::asio::io_context io;
    auto [ours, theirs] = stream_pair();
    fd_guard peer{theirs};
    auto vm = adopt_fd(io, ours);
    write_all(peer.fd, bytes{std::byte{0}, std::byte{0}});
    peer.reset();
    receiver r;
    CHECK(receive(io, vm, r).ec == errc::peer_closed);
}

TEST_CASE("qemu_stream: a peer that does not read costs bounded memory, drops are counted, order is kept") {
    boost::asio::io_context io;
    auto [ours, theirs] = stream_pair();
    fd_guard peer{theirs};
    qemu_stream_options options;
    options.send_buffer = 64 * 1024;
    auto vm = adopt_fd(io, ours, options);

    constexpr std::uint32_t attempts = 5000; // 7.5 MB: far beyond the kernel buffer and the ring
    std::vector<std::uint32_t> accepted;
    for (std::uint32_t i = 0; i < attempts; ++i) {
        if (!vm.send(frame_of(1514, i))) accepted.push_back(i);
        CHECK(vm.send_queue_bytes() <= 64 * 1024);
        io.restart();
        io.poll(); // let queued writes progress, as an event loop would
    }
    const auto stats = vm.stats();
    CHECK(stats.tx_dropped > 0);
    CHECK(stats.tx_frames == accepted.size());
    CHECK(stats.tx_frames + stats.tx_dropped == attempts);
    CHECK(vm.send(frame_of(1514, 0)) == std::errc::no_buffer_space);

    // Now the peer reads: every accepted frame arrives whole, in order, and nothing else.
    ::fcntl(peer.fd, F_SETFL, ::fcntl(peer.fd, F_GETFL) | O_NONBLOCK);
    bytes stream;
    std::size_t parsed = 0;
    std::size_t at = 0;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (parsed < accepted.size() && std::chrono::steady_clock::now() < deadline) {
        io.restart();
        io.poll();
        std::array<std::byte, 65536> chunk{};
        const auto n = ::read(peer.fd, chunk.data(), chunk.size());
        if (n > 0) stream.insert(stream.end(), chunk.begin(), chunk.begin() + n);
        while (stream.size() - at >= 4) {
            const std::size_t length = wire::load_be32(wire::const_bytes{stream}.subspan(at), 0);
            if (stream.size() - at < 4 + length) break;
            const bytes frame(stream.begin() + static_cast<std::ptrdiff_t>(at + 4),
                              stream.begin() + static_cast<std::ptrdiff_t>(at + 4 + length));
            REQUIRE(frame == frame_of(1514, accepted[parsed]));
            ++parsed;
            at += 4 + length;
        }
        if (n <= 0) std::this_thread::sleep_for(1ms);
    }
    CHECK(parsed == accepted.size());
    CHECK(vm.send_queue_bytes() == 0);
    // With room again, sending works.
    CHECK_FALSE(vm.send(frame_of(60, 1)));
}

TEST_CASE("qemu_stream: close aborts a pending receive, later sends fail, a destroyed connection's receive completes") {
    boost::asio::io_context io;
    auto [ours, theirs] = stream_pair();
    fd_guard peer{theirs};
    auto vm = adopt_fd(io, ours);
    receiver r;
    r.start(vm);
    io.restart();
    io.poll();
    CHECK_FALSE(r.done);
    vm.close();
    REQUIRE(run_until(io, [&] { return r.done; }));
    CHECK(r.ec == std::errc::operation_canceled);
    CHECK(vm.send(frame_of(60, 1)) == std::errc::not_connected);
    CHECK(vm.stats().tx_dropped == 1);
    CHECK(receive(io, vm, r).ec == std::errc::operation_canceled);
    // The peer sees end of stream.
    std::array<char, 4> sink{};
    CHECK(::read(peer.fd, sink.data(), sink.size()) == 0);

    auto [ours2, theirs2] = stream_pair();
    fd_guard peer2{theirs2};
    receiver r2;
    {
        auto vm2 = adopt_fd(io, ours2);
        r2.start(vm2);
    }
    REQUIRE(run_until(io, [&] { return r2.done; }));
    CHECK(r2.ec == std::errc::operation_canceled);
}

TEST_CASE("qemu_stream: bad sizes are refused on send, a frame longer than the receive buffer is dropped") {
    boost::asio::io_context io;
    auto [ours, theirs] = stream_pair();
    fd_guard peer{theirs};
    auto vm = adopt_fd(io, ours);
    CHECK(vm.send(frame_of(13, 0)) == errc::truncated);
    CHECK(vm.send(frame_of(max_frame_len(1500) + 1, 0)) == errc::bad_length);
    CHECK(vm.stats().tx_invalid == 2);

    bytes wire_bytes;
    append_framed(wire_bytes, frame_of(200, 1));
    append_framed(wire_bytes, frame_of(50, 2));
    write_all(peer.fd, wire_bytes);
    bytes small(100);
    CHECK(receive_error(io, vm, small) == errc::buffer_too_small);
    receiver r;
    CHECK(receive(io, vm, r).frame() == frame_of(50, 2));
}

TEST_CASE("qemu_stream: adopt checks what it is given") {
    boost::asio::io_context io;
    int fds[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds) == 0);
    fd_guard a{fds[0]}, b{fds[1]};
    CHECK(qemu_stream_connection::adopt(io.get_executor(), a.fd).error() == std::errc::wrong_protocol_type);
    CHECK(::fcntl(a.fd, F_GETFD) != -1); // still open, still the caller's

    auto [ours, theirs] = stream_pair();
    fd_guard s{ours}, t{theirs};
    qemu_stream_options bad;
    bad.mtu = 100;
    CHECK(qemu_stream_connection::adopt(io.get_executor(), s.fd, bad).error() == std::errc::invalid_argument);
    CHECK(::fcntl(s.fd, F_GETFD) != -1);

    fd_guard file{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
    CHECK(qemu_stream_connection::adopt(io.get_executor(), file.fd).error() == std::errc::not_a_socket);
}

TEST_CASE("qemu_stream: the server removes a stale socket file, refuses a live one and other files, and cleans up") {
    boost::asio::io_context io;
    temp_dir dir{"ankanet-stream"};
    const auto path = dir.path / "vm.sock";
    auto ignore = [](qemu_stream_connection) {};

    // A stale socket file: bound, then its socket closed (as after a crash).
    {
        fd_guard stale{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
        const auto address = address_of(path);
        REQUIRE(::bind(stale.fd, reinterpret_cast<const ::sockaddr*>(&address), sizeof(address)) == 0);
    }
    REQUIRE(std::filesystem::is_socket(path));
    auto server = qemu_stream_server::listen(io.get_executor(), path, ignore);
    REQUIRE(server);

    CHECK(qemu_stream_server::listen(io.get_executor(), path, ignore).error() == std::errc::address_in_use);
    CHECK(std::filesystem::is_socket(path)); // the live server's socket was left alone

    server->close();
    CHECK_FALSE(std::filesystem::exists(path));

    const auto file = dir.path / "not-a-socket";
    std::ofstream{file} << "precious";
    CHECK(qemu_stream_server::listen(io.get_executor(), file, ignore).error() == std::errc::file_exists);
    CHECK(std::filesystem::file_size(file) == 8);

    const std::string too_long(200, 'x');
    CHECK(qemu_stream_server::listen(io.get_executor(), dir.path / too_long, ignore).error() == std::errc::filename_too_long);
    CHECK(qemu_stream_server::listen(io.get_executor(), dir.path / "x.sock", nullptr).error() == std::errc::invalid_argument);
}

TEST_CASE("qemu_stream: a server on TCP loopback, accepted sockets get TCP_NODELAY") {
    boost::asio::io_context io;
    std::vector<qemu_stream_connection> vms;
    auto server = qemu_stream_server::listen(io.get_executor(),
                                             boost::asio::ip::tcp::endpoint{boost::asio::ip::address_v4::loopback(), 0},
                                             [&](qemu_stream_connection vm) { vms.push_back(std::move(vm)); });
    REQUIRE(server);
    REQUIRE(server->port() != 0);

    boost::asio::ip::tcp::socket client{io};
    client.connect({boost::asio::ip::address_v4::loopback(), server->port()});
    REQUIRE(run_until(io, [&] { return vms.size() == 1; }));

    int nodelay = 0;
    ::socklen_t length = sizeof(nodelay);
    REQUIRE(::getsockopt(vms[0].native_handle(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &length) == 0);
    CHECK(nodelay != 0);

    bytes wire_bytes;
    append_framed(wire_bytes, frame_of(333, 1));
    write_all(client.native_handle(), wire_bytes);
    receiver r;
    CHECK(receive(io, vms[0], r).frame() == frame_of(333, 1));
    REQUIRE_FALSE(vms[0].send(frame_of(444, 2)));
    CHECK(read_framed(client.native_handle()) == frame_of(444, 2));

    // A connection the caller made itself can be adopted too.
    auto direct = qemu_stream_connection::adopt(std::move(client));
    REQUIRE(direct);
    REQUIRE_FALSE(direct->send(frame_of(70, 3)));
    CHECK(receive(io, vms[0], r).frame() == frame_of(70, 3));
}

TEST_CASE("qemu_stream: try_receive drains a burst synchronously and says when to wait") {
    boost::asio::io_context io;
    auto [ours, theirs] = stream_pair();
    fd_guard peer{theirs};
    auto vm = adopt_fd(io, ours);
    bytes buffer(max_frame_len(1500));

    CHECK(vm.try_receive(buffer).error() == std::errc::resource_unavailable_try_again);

    bytes wire_bytes;
    for (std::uint32_t i = 0; i < 50; ++i) append_framed(wire_bytes, frame_of(100 + i, i));
    append_prefix(wire_bytes, 3); // a runt in the middle: skipped here too
    wire_bytes.resize(wire_bytes.size() + 3);
    append_framed(wire_bytes, frame_of(64, 50));
    write_all(peer.fd, wire_bytes);

    // One completion, then the rest without the event loop.
    receiver r;
    CHECK(receive(io, vm, r).frame() == frame_of(100, 0));
    for (std::uint32_t i = 1; i < 50; ++i) {
        auto n = vm.try_receive(buffer);
        REQUIRE(n);
        CHECK(bytes(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(*n)) == frame_of(100 + i, i));
    }
    auto last = vm.try_receive(buffer);
    REQUIRE(last);
    CHECK(*last == 64);
    CHECK(vm.try_receive(buffer).error() == std::errc::resource_unavailable_try_again);
    CHECK(vm.stats().rx_runt == 1);
    CHECK(vm.stats().rx_frames == 51);

    // Not while an async_receive is pending; and the end of stream is reported the same way.
    r.start(vm);
    CHECK(vm.try_receive(buffer).error() == std::errc::operation_in_progress);
    peer.reset();
    REQUIRE(run_until(io, [&] { return r.done; }));
    CHECK(r.ec == errc::peer_closed);
    CHECK(vm.try_receive(buffer).error() == errc::peer_closed);
    vm.close();
    CHECK(vm.try_receive(buffer).error() == std::errc::operation_canceled);
}

TEST_CASE("qemu_stream: try_receive skips a plausible oversize frame, and a lying length ends the link as async_receive does") {
    boost::asio::io_context io;
    auto [ours, theirs] = stream_pair();
    fd_guard peer{theirs};
    auto vm = adopt_fd(io, ours); // MTU 1500
    static_assert(burst_backend<qemu_stream_connection>);
    bytes buffer(max_frame_len(1500));

    bytes wire_bytes;
    append_framed(wire_bytes, frame_of(60, 1));
    append_framed(wire_bytes, frame_of(9014, 2)); // a jumbo from a guest with MTU 9000: skipped
    append_framed(wire_bytes, frame_of(max_frame_len(1500), 3));
    append_prefix(wire_bytes, 0x7fffffff);          // a lie: nothing after it is trusted
    append_framed(wire_bytes, frame_of(60, 4));
    write_all(peer.fd, wire_bytes);

    auto first = vm.try_receive(buffer);
    REQUIRE(first);
    CHECK(bytes(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(*first)) == frame_of(60, 1));
    auto second = vm.try_receive(buffer);
    REQUIRE(second);
    CHECK(bytes(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(*second)) == frame_of(max_frame_len(1500), 3));
    CHECK(vm.stats().rx_oversize == 1);
    CHECK(vm.try_receive(buffer).error() == errc::bad_length);
    CHECK(vm.stats().rx_oversize == 2);
    CHECK_FALSE(vm.is_open());
    CHECK(vm.try_receive(buffer).error() == errc::bad_length); // sticky, on both paths
    receiver r;
    CHECK(receive(io, vm, r).ec == errc::bad_length);
    CHECK(vm.stats().rx_frames == 2);
}

// The bound: 4 KiB of heap per idle connection as ankanetd holds it (accepted by the server,
// wrapped in a port, a receive pending). Measured about 2.25 KB: the port's own frame buffer
// (max_frame_len(1500) = 1514 bytes, port.hpp), the connection's shared state, Asio's record of the
// descriptor and the pending wait, the port and its handlers. The connection itself holds no
// buffer while idle. Before issue 11 item 8 it was about 395 KB (a 128 KiB receive buffer and a
// 256 KiB send ring allocated up front), 100 times the bound. After the clients disconnect and the
// ports are dropped, all of it is returned but for at most 256 bytes per connection: Asio keeps
// its per-descriptor records (about 190 bytes) in a pool for the next descriptors.
TEST_CASE("qemu_stream: 300 idle connections stay under 4 KiB of heap each and give it back on disconnect") {
    constexpr std::size_t count = 300;
    constexpr std::int64_t bound_per_connection = 4096;
    constexpr std::int64_t kept_per_connection = 256;

    boost::asio::io_context io;
    temp_dir dir{"ankanet-stream"};
    const auto path = dir.path / "vm.sock";
    std::vector<std::shared_ptr<port>> ports;
    ports.reserve(count + 1);
    std::size_t frames_in = 0;
    std::size_t closed = 0;
    qemu_stream_options options;
    options.max_connections = count; // above the default of 256
    auto server = qemu_stream_server::listen(
        io.get_executor(), path,
        [&](qemu_stream_connection vm) {
            auto p = make_port("vm", std::move(vm));
            p->start([&](port&, wire::const_bytes) { ++frames_in; }, [&](port&, std::error_code) { ++closed; });
            ports.push_back(std::move(p));
        },
        options);
    REQUIRE(server);
    std::vector<fd_guard> clients(count);

    // One connection first, so one-time allocations (the reactor, Asio's handler caches, the
    // thread's burst arena, port.hpp) are not counted: it sends a frame, which the port's first
    // burst reads.
    {
        fd_guard warm{connect_unix(path)};
        REQUIRE(run_until(io, [&] { return ports.size() == 1; }));
        bytes warm_bytes;
        append_framed(warm_bytes, frame_of(60, 1));
        write_all(warm.fd, warm_bytes);
        REQUIRE(run_until(io, [&] { return frames_in == 1; }));
        frames_in = 0;
        warm.reset();
        REQUIRE(run_until(io, [&] { return closed == 1; }));
        ports.clear();
        closed = 0;
    }
    io.restart();
    io.poll();

    const std::int64_t baseline = ankanet::test::heap::live_bytes.load();
    bool all_accepted = true;
    for (std::size_t i = 0; i < count && all_accepted; ++i) {
        clients[i].fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        const auto address = address_of(path);
        all_accepted = ::connect(clients[i].fd, reinterpret_cast<const ::sockaddr*>(&address), sizeof(address)) == 0 &&
                       run_until(io, [&] { return ports.size() == i + 1; });
    }
    io.restart();
    io.poll();
    const std::int64_t idle = ankanet::test::heap::live_bytes.load() - baseline;
    REQUIRE(all_accepted);
    CHECK(server->connections() == count);
    INFO("heap bytes per idle connection: " << idle / static_cast<std::int64_t>(count));
    CHECK(idle < bound_per_connection * static_cast<std::int64_t>(count));

    // One frame each way on every connection: the buffers this took are freed again once idle.
    bytes wire_bytes;
    append_framed(wire_bytes, frame_of(60, 1));
    for (auto& client : clients) write_all(client.fd, wire_bytes);
    REQUIRE(run_until(io, [&] { return frames_in == count; }));
    const auto frame = frame_of(60, 2);
    for (auto& p : ports) CHECK_FALSE(p->send(frame));
    io.restart();
    io.poll();
    const std::int64_t after_traffic = ankanet::test::heap::live_bytes.load() - baseline;
    INFO("heap bytes per connection after one frame each way: " << after_traffic / static_cast<std::int64_t>(count));
    CHECK(after_traffic < bound_per_connection * static_cast<std::int64_t>(count));
    for (auto& client : clients) CHECK(read_framed(client.fd) == frame);

    for (auto& client : clients) client.reset();
    REQUIRE(run_until(io, [&] { return closed == count; }));
    ports.clear();
    ports.shrink_to_fit();
    io.restart();
    io.poll();
    const std::int64_t kept = ankanet::test::heap::live_bytes.load() - baseline;
    INFO("heap bytes kept per closed connection: " << kept / static_cast<std::int64_t>(count));
    CHECK(kept < kept_per_connection * static_cast<std::int64_t>(count));
    CHECK(server->connections() == 0);
}

TEST_CASE("qemu_stream: the server caps live connections, refuses the one over by closing it, and says so once") {
    boost::asio::io_context io;
    temp_dir dir{"ankanet-stream"};
    const auto path = dir.path / "vm.sock";
    std::vector<qemu_stream_connection> vms;
    qemu_stream_options options;
    options.max_connections = 3;
    auto server = qemu_stream_server::listen(
        io.get_executor(), path, [&](qemu_stream_connection vm) { vms.push_back(std::move(vm)); }, options);
    REQUIRE(server);
    std::vector<std::size_t> told;
    server->on_limit([&](std::size_t limit) { told.push_back(limit); });
    CHECK(qemu_stream_options{}.max_connections == 256);

    auto refused_by_server = [](int fd) {
        ::pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 5000) != 1) return false;
        std::array<std::byte, 16> buffer{};
        return ::read(fd, buffer.data(), buffer.size()) <= 0; // end of stream (or a reset)
    };

    std::vector<fd_guard> clients(3);
    for (std::size_t i = 0; i < 3; ++i) {
        clients[i].fd = connect_unix(path);
        REQUIRE(run_until(io, [&] { return vms.size() == i + 1; }));
    }
    CHECK(server->connections() == 3);

    fd_guard fourth{connect_unix(path)};
    REQUIRE(run_until(io, [&] { return server->refused() == 1; }));
    CHECK(refused_by_server(fourth.fd));
    CHECK(vms.size() == 3);
    CHECK(server->accepted() == 3);
    CHECK(told == std::vector<std::size_t>{3});

    fd_guard fifth{connect_unix(path)};
    REQUIRE(run_until(io, [&] { return server->refused() == 2; }));
    CHECK(refused_by_server(fifth.fd));
    CHECK(told.size() == 1); // once per run of refusals, not per refusal

    // The accepted ones still work.
    bytes wire_bytes;
    append_framed(wire_bytes, frame_of(80, 7));
    write_all(clients[2].fd, wire_bytes);
    receiver r;
    CHECK(receive(io, vms[2], r).frame() == frame_of(80, 7));

    // A connection closed (or destroyed) frees its place; the next one is accepted.
    vms[0].close();
    CHECK(server->connections() == 2);
    fd_guard sixth{connect_unix(path)};
    REQUIRE(run_until(io, [&] { return vms.size() == 4; }));
    CHECK(server->connections() == 3);
    vms.erase(vms.begin() + 1); // destroyed without close()
    CHECK(server->connections() == 2);
    fd_guard seventh{connect_unix(path)};
    REQUIRE(run_until(io, [&] { return vms.size() == 4; }));

    // Full again: the next refusal is told again.
    fd_guard eighth{connect_unix(path)};
    REQUIRE(run_until(io, [&] { return server->refused() == 3; }));
    CHECK(refused_by_server(eighth.fd));
    CHECK(told.size() == 2);
    CHECK(server->accept_errors() == 0);

    // Connections outlive their server; the count they share goes with the last of them.
    server->close();
    vms.clear();
}
