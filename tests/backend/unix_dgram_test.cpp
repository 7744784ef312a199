#include <ankanet/backend/unix_dgram.hpp>

#include "../support/backend_harness.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

using namespace ankanet;
using namespace ankanet::backend;
using namespace ankanet::test;
using namespace std::chrono_literals;

namespace {

/// A datagram socket playing the VM (QEMU, vfkit): bound at `path` when one is given.
int peer_socket(const std::optional<std::filesystem::path>& path) {
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    REQUIRE(fd >= 0);
    if (path) {
        const auto address = address_of(*path);
        REQUIRE(::bind(fd, reinterpret_cast<const ::sockaddr*>(&address), sizeof(address)) == 0);
    }
    return fd;
}

void send_to(int fd, const std::filesystem::path& path, const bytes& datagram) {
    const auto address = address_of(path);
    REQUIRE(::sendto(fd, datagram.data(), datagram.size(), 0, reinterpret_cast<const ::sockaddr*>(&address),
                     sizeof(address)) == static_cast<::ssize_t>(datagram.size()));
}

/// Receives one datagram on the peer side, or fails after 5 s.
bytes receive_datagram(int fd) {
    ::pollfd p{fd, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 5000) == 1);
    bytes out(70000);
    const auto n = ::recv(fd, out.data(), out.size(), 0);
    REQUIRE(n >= 0);
    out.resize(static_cast<std::size_t>(n));
    return out;
}

unix_dgram_endpoint adopt_pair_end(boost::asio::io_context& io, int fd, const unix_dgram_options& options = {}) {
    auto endpoint = unix_dgram_endpoint::adopt(io.get_executor(), fd, options);
    REQUIRE(endpoint);
    return std::move(endpoint).value();
}

std::pair<int, int> dgram_pair() { return socket_pair(SOCK_DGRAM); }

} // namespace

TEST_CASE("unix_dgram: a socket pair carries one frame per datagram, in order, both ways") {
    boost::asio::io_context io;
    auto [ours, theirs] = dgram_pair();
    fd_guard vm_side{theirs};
    auto vm = adopt_pair_end(io, ours);
    CHECK_FALSE(vm.peer()); // connected: the kernel knows the peer

    for (std::uint32_t i = 0; i < 5; ++i) {
        const auto frame = frame_of(60 + i * 300, i);
        REQUIRE(::send(vm_side.fd, frame.data(), frame.size(), 0) == static_cast<::ssize_t>(frame.size()));
    }
    receiver r;
    r.start(vm);
    CHECK_FALSE(r.done); // never inline
    REQUIRE(run_until(io, [&] { return r.done; }));
    CHECK(r.frame() == frame_of(60, 0));
    for (std::uint32_t i = 1; i < 5; ++i) CHECK(receive(io, vm, r).frame() == frame_of(60 + i * 300, i));

    REQUIRE_FALSE(vm.send(frame_of(1514, 7)));
    REQUIRE_FALSE(vm.send(frame_of(14, 8)));
    CHECK(receive_datagram(vm_side.fd) == frame_of(1514, 7));
    CHECK(receive_datagram(vm_side.fd) == frame_of(14, 8));
    CHECK(vm.stats().rx_frames == 5);
    CHECK(vm.stats().tx_frames == 2);
    CHECK(vm.stats().tx_bytes == 1514 + 14);
}

TEST_CASE("unix_dgram: runts and oversize datagrams are skipped and counted") {
    boost::asio::io_context io;
    auto [ours, theirs] = dgram_pair();
    fd_guard vm_side{theirs};
    auto vm = adopt_pair_end(io, ours); // MTU 1500
    const std::vector<std::size_t> sizes{0, 1, 13, max_frame_len(1500) + 1, 9014, 65000, 100};
    for (std::size_t size : sizes) {
        const auto frame = frame_of(size, 3);
        REQUIRE(::send(vm_side.fd, frame.data(), frame.size(), 0) == static_cast<::ssize_t>(frame.size()));
    }
    receiver r;
    CHECK(receive(io, vm, r).frame() == frame_of(100, 3));
    CHECK(vm.stats().rx_runt == 3);
    CHECK(vm.stats().rx_oversize == 3);
    CHECK(vm.stats().rx_frames == 1);

    CHECK(vm.send(frame_of(13, 0)) == errc::truncated);
    CHECK(vm.send(frame_of(max_frame_len(1500) + 1, 0)) == errc::bad_length);
    CHECK(vm.stats().tx_invalid == 2);
}

TEST_CASE("unix_dgram: a valid frame longer than the receive buffer is dropped with buffer_too_small") {
    boost::asio::io_context io;
    auto [ours, theirs] = dgram_pair();
    fd_guard vm_side{theirs};
    auto vm = adopt_pair_end(io, ours);
    // 2000 bytes is over the MTU: it must count as oversize even though only 100 bytes fit in
    // the buffer (MSG_TRUNC reports the real length); 300 is a valid frame that does not fit.
    for (std::size_t size : {2000u, 300u, 50u}) {
        const auto frame = frame_of(size, 1);
        REQUIRE(::send(vm_side.fd, frame.data(), frame.size(), 0) > 0);
    }
    bytes small(100);
    CHECK(receive_error(io, vm, small) == errc::buffer_too_small);
    CHECK(vm.stats().rx_oversize == 1);
    receiver r;
    CHECK(receive(io, vm, r).frame() == frame_of(50, 1));
}

TEST_CASE("unix_dgram: a given peer (QEMU's -netdev dgram), strangers are dropped, the peer may come later") {
    boost::asio::io_context io;
    temp_dir dir{"ankanet-dgram"};
    const auto ours = dir.path / "ankanet.sock";
    const auto theirs = dir.path / "qemu.sock";
    auto vm = unix_dgram_endpoint::bind(io.get_executor(), ours, theirs);
    REQUIRE(vm);
    CHECK(vm->peer() == theirs);

    // The peer has not bound its path yet: a counted drop, not an error that sticks.
    CHECK(vm->send(frame_of(60, 1)) == errc::peer_closed);
    CHECK(vm->stats().tx_dropped == 1);

    fd_guard qemu{peer_socket(theirs)};
    fd_guard stranger{peer_socket(dir.path / "stranger.sock")};
    fd_guard anonymous{peer_socket(std::nullopt)};
    send_to(stranger.fd, ours, frame_of(60, 2));
    send_to(anonymous.fd, ours, frame_of(60, 3));
    send_to(qemu.fd, ours, frame_of(70, 4));
    receiver r;
    CHECK(receive(io, *vm, r).frame() == frame_of(70, 4));
    CHECK(vm->rx_foreign() == 2);

    REQUIRE_FALSE(vm->send(frame_of(80, 5)));
    CHECK(receive_datagram(qemu.fd) == frame_of(80, 5));
}

TEST_CASE("unix_dgram: a learned peer (vfkit): the first bound sender, even of a runt magic, is the peer") {
    boost::asio::io_context io;
    temp_dir dir{"ankanet-dgram"};
    const auto ours = dir.path / "ankanet.sock";
    auto vm = unix_dgram_endpoint::bind(io.get_executor(), ours);
    REQUIRE(vm);
    CHECK_FALSE(vm->peer());
    CHECK(vm->send(frame_of(60, 1)) == std::errc::not_connected); // no one to send to yet

    fd_guard anonymous{peer_socket(std::nullopt)};
    fd_guard vfkit{peer_socket(dir.path / "vfkit.sock")};
    fd_guard second{peer_socket(dir.path / "second.sock")};
    send_to(anonymous.fd, ours, frame_of(60, 2));        // cannot be answered: not learned
    send_to(vfkit.fd, ours, frame_of(4, 0));             // the 4-byte magic: a runt, but it names the peer
    send_to(second.fd, ours, frame_of(60, 3));           // a second sender: foreign
    send_to(vfkit.fd, ours, frame_of(90, 4));
    receiver r;
    CHECK(receive(io, *vm, r).frame() == frame_of(90, 4));
    CHECK(vm->peer() == dir.path / "vfkit.sock");
    CHECK(vm->stats().rx_runt == 1);
    CHECK(vm->rx_foreign() == 2);

    REQUIRE_FALSE(vm->send(frame_of(100, 5)));
    CHECK(receive_datagram(vfkit.fd) == frame_of(100, 5));

    // The VM restarts and binds the same path again: it is reached at once, both ways.
    vfkit.reset();
    std::filesystem::remove(dir.path / "vfkit.sock");
    CHECK(vm->send(frame_of(60, 6)) == errc::peer_closed); // in between: a counted drop
    fd_guard restarted{peer_socket(dir.path / "vfkit.sock")};
    REQUIRE_FALSE(vm->send(frame_of(110, 7)));
    CHECK(receive_datagram(restarted.fd) == frame_of(110, 7));
    send_to(restarted.fd, ours, frame_of(120, 8));
    CHECK(receive(io, *vm, r).frame() == frame_of(120, 8));
}

TEST_CASE("unix_dgram: a learned peer is the only one: a second bound sender is never delivered nor answered, even while the peer is gone") {
    boost::asio::io_context io;
    temp_dir dir{"ankanet-dgram"};
    const auto ours = dir.path / "ankanet.sock";
    auto vm = unix_dgram_endpoint::bind(io.get_executor(), ours);
    REQUIRE(vm);
    const auto nothing_for = [](const fd_guard& socket) {
        ::pollfd p{socket.fd, POLLIN, 0};
        return ::poll(&p, 1, 0) == 0;
    };

    fd_guard first{peer_socket(dir.path / "first.sock")};
    fd_guard second{peer_socket(dir.path / "second.sock")};
    send_to(first.fd, ours, frame_of(60, 1)); // names the peer
    for (std::uint32_t i = 0; i < 3; ++i) send_to(second.fd, ours, frame_of(60 + i, 10 + i));
    send_to(first.fd, ours, frame_of(70, 2));
    receiver r;
    CHECK(receive(io, *vm, r).frame() == frame_of(60, 1));
    CHECK(receive(io, *vm, r).frame() == frame_of(70, 2));
    bytes buffer(max_frame_len(1500));
    CHECK(vm->try_receive(buffer).error() == std::errc::resource_unavailable_try_again); // none of the second's
    CHECK(vm->rx_foreign() == 3);
    CHECK(vm->stats().rx_frames == 2);
    CHECK(vm->peer() == dir.path / "first.sock");
    REQUIRE_FALSE(vm->send(frame_of(80, 3)));
    CHECK(receive_datagram(first.fd) == frame_of(80, 3));
    CHECK(nothing_for(second));

    // The peer is gone (its path unbound): the second sender still does not take its place.
    first.reset();
    std::filesystem::remove(dir.path / "first.sock");
    send_to(second.fd, ours, frame_of(90, 4));
    CHECK(vm->try_receive(buffer).error() == std::errc::resource_unavailable_try_again);
    CHECK(vm->rx_foreign() == 4);
    CHECK(vm->peer() == dir.path / "first.sock");
    CHECK(vm->send(frame_of(100, 5)) == errc::peer_closed);
    CHECK(nothing_for(second));
}

TEST_CASE("unix_dgram: a peer that does not read: sends drop and count, nothing queues") {
    boost::asio::io_context io;
    temp_dir dir{"ankanet-dgram"};
    fd_guard qemu{peer_socket(dir.path / "qemu.sock")};
    auto vm = unix_dgram_endpoint::bind(io.get_executor(), dir.path / "ankanet.sock", dir.path / "qemu.sock");
    REQUIRE(vm);
    std::size_t accepted = 0;
    std::error_code last;
    for (std::uint32_t i = 0; i < 5000; ++i) {
        last = vm->send(frame_of(1514, i));
        if (!last) ++accepted;
    }
    CHECK(last == std::errc::no_buffer_space);
    const auto stats = vm->stats();
    CHECK(stats.tx_frames == accepted);
    CHECK(stats.tx_dropped == 5000 - accepted);
    CHECK(accepted > 0);
    // What went through arrives intact and in order.
    for (std::uint32_t i = 0; i < accepted; ++i) REQUIRE(receive_datagram(qemu.fd) == frame_of(1514, i));
    CHECK_FALSE(vm->send(frame_of(60, 1)));
}

TEST_CASE("unix_dgram: a socket pair whose other end closed: the next send finds out, the receive ends") {
    boost::asio::io_context io;
    auto [ours, theirs] = dgram_pair();
    fd_guard vm_side{theirs};
    auto vm = adopt_pair_end(io, ours);
    receiver r;
    r.start(vm);
    io.restart();
    io.poll();
    CHECK_FALSE(r.done);
    vm_side.reset();
    CHECK(vm.send(frame_of(60, 1)) == errc::peer_closed);
    REQUIRE(run_until(io, [&] { return r.done; }));
    CHECK(r.ec == errc::peer_closed);
    CHECK(receive(io, vm, r).ec == errc::peer_closed);
    CHECK(vm.send(frame_of(60, 2)) == errc::peer_closed);
    CHECK(vm.stats().tx_dropped == 2);
}

TEST_CASE("unix_dgram: close aborts a pending receive, removes the socket file, sends then fail") {
    boost::asio::io_context io;
    temp_dir dir{"ankanet-dgram"};
    const auto path = dir.path / "ankanet.sock";
    auto vm = unix_dgram_endpoint::bind(io.get_executor(), path, dir.path / "qemu.sock");
    REQUIRE(vm);
    CHECK(std::filesystem::is_socket(path));
    receiver r;
    r.start(*vm);
    io.restart();
    io.poll();
    CHECK_FALSE(r.done);
    vm->close();
    REQUIRE(run_until(io, [&] { return r.done; }));
    CHECK(r.ec == std::errc::operation_canceled);
    CHECK_FALSE(std::filesystem::exists(path));
    CHECK(vm->send(frame_of(60, 1)) == std::errc::not_connected);
    CHECK(receive(io, *vm, r).ec == std::errc::operation_canceled);
}

TEST_CASE("unix_dgram: bind removes a stale socket file and refuses a live socket or another file") {
    boost::asio::io_context io;
    temp_dir dir{"ankanet-dgram"};
    const auto path = dir.path / "ankanet.sock";
    { fd_guard stale{peer_socket(path)}; } // bound, then closed: the file stays behind
    REQUIRE(std::filesystem::is_socket(path));
    auto vm = unix_dgram_endpoint::bind(io.get_executor(), path);
    REQUIRE(vm);
    CHECK(unix_dgram_endpoint::bind(io.get_executor(), path).error() == std::errc::address_in_use);

    const auto file = dir.path / "precious";
    std::ofstream{file} << "data";
    CHECK(unix_dgram_endpoint::bind(io.get_executor(), file).error() == std::errc::file_exists);
    CHECK(std::filesystem::file_size(file) == 4);
    CHECK(unix_dgram_endpoint::bind(io.get_executor(), dir.path / std::string(200, 'x')).error() ==
          std::errc::filename_too_long);
    unix_dgram_options bad;
    bad.mtu = 70000;
    CHECK(unix_dgram_endpoint::bind(io.get_executor(), dir.path / "a.sock", std::nullopt, bad).error() ==
          std::errc::invalid_argument);
}

TEST_CASE("unix_dgram: adopt refuses what is not a unix datagram socket and leaves it open") {
    boost::asio::io_context io;
    int fds[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    fd_guard a{fds[0]}, b{fds[1]};
    CHECK(unix_dgram_endpoint::adopt(io.get_executor(), a.fd).error() == std::errc::wrong_protocol_type);
    CHECK(::fcntl(a.fd, F_GETFD) != -1);
    fd_guard udp{::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
    CHECK(unix_dgram_endpoint::adopt(io.get_executor(), udp.fd).error() == std::errc::address_family_not_supported);
    CHECK(::fcntl(udp.fd, F_GETFD) != -1);
}

TEST_CASE("unix_dgram: socket buffers are sized as asked (1 MiB send, 4 MiB receive by default)") {
    boost::asio::io_context io;
    auto [ours, theirs] = dgram_pair();
    fd_guard vm_side{theirs};
    auto vm = adopt_pair_end(io, ours);
    int sndbuf = 0, rcvbuf = 0;
    ::socklen_t length = sizeof(int);
    REQUIRE(::getsockopt(vm.native_handle(), SOL_SOCKET, SO_SNDBUF, &sndbuf, &length) == 0);
    length = sizeof(int);
    REQUIRE(::getsockopt(vm.native_handle(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, &length) == 0);
    // Linux reports twice the size asked for. Unprivileged, the sysctl caps may grant less.
    if (::geteuid() == 0) {
        CHECK(sndbuf >= 1024 * 1024);
        CHECK(rcvbuf >= 4 * 1024 * 1024);
    } else {
        WARN("not root: SO_SNDBUF=" << sndbuf << " SO_RCVBUF=" << rcvbuf << " (capped by net.core.[rw]mem_max)");
    }
}

TEST_CASE("unix_dgram: try_receive drains without the event loop and filters as async_receive does") {
    boost::asio::io_context io;
    temp_dir dir{"ankanet-dgram"};
    const auto ours = dir.path / "ankanet.sock";
    fd_guard qemu{peer_socket(dir.path / "qemu.sock")};
    fd_guard stranger{peer_socket(dir.path / "stranger.sock")};
    auto vm = unix_dgram_endpoint::bind(io.get_executor(), ours, dir.path / "qemu.sock");
    REQUIRE(vm);
    bytes buffer(max_frame_len(1500));
    CHECK(vm->try_receive(buffer).error() == std::errc::resource_unavailable_try_again);

    send_to(qemu.fd, ours, frame_of(60, 1));
    send_to(stranger.fd, ours, frame_of(60, 2));
    send_to(qemu.fd, ours, frame_of(5, 3));     // runt
    send_to(qemu.fd, ours, frame_of(3000, 4));  // oversize, longer than the buffer too
    send_to(qemu.fd, ours, frame_of(70, 5));
    auto first = vm->try_receive(buffer);
    REQUIRE(first);
    CHECK(bytes(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(*first)) == frame_of(60, 1));
    auto second = vm->try_receive(buffer);
    REQUIRE(second);
    CHECK(bytes(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(*second)) == frame_of(70, 5));
    CHECK(vm->try_receive(buffer).error() == std::errc::resource_unavailable_try_again);
    CHECK(vm->rx_foreign() == 1);
    CHECK(vm->stats().rx_runt == 1);
    CHECK(vm->stats().rx_oversize == 1);

    receiver r;
    r.start(*vm);
    CHECK(vm->try_receive(buffer).error() == std::errc::operation_in_progress);
    vm->close();
    REQUIRE(run_until(io, [&] { return r.done; }));
    CHECK(vm->try_receive(buffer).error() == std::errc::operation_canceled);
}

TEST_CASE("unix_dgram: try_receive on a socket pair whose other end closed says peer_closed once a send found out") {
    boost::asio::io_context io;
    auto [ours, theirs] = dgram_pair();
    fd_guard vm_side{theirs};
    auto vm = adopt_pair_end(io, ours);
    static_assert(burst_backend<unix_dgram_endpoint>);
    bytes buffer(max_frame_len(1500));
    REQUIRE(::send(vm_side.fd, frame_of(60, 1).data(), 60, 0) == 60);
    REQUIRE(::send(vm_side.fd, frame_of(10, 2).data(), 10, 0) == 10); // a runt: skipped, counted
    REQUIRE(::send(vm_side.fd, frame_of(61, 3).data(), 61, 0) == 61);
    vm_side.reset();
    // What the VM sent before it went away is still delivered; the kernel says nothing more.
    auto first = vm.try_receive(buffer);
    REQUIRE(first);
    CHECK(bytes(buffer.begin(), buffer.begin() + 60) == frame_of(60, 1));
    auto second = vm.try_receive(buffer);
    REQUIRE(second);
    CHECK(bytes(buffer.begin(), buffer.begin() + 61) == frame_of(61, 3));
    CHECK(vm.stats().rx_runt == 1);
    CHECK(vm.try_receive(buffer).error() == nothing_queued);
    CHECK(vm.send(frame_of(60, 4)) == errc::peer_closed); // the first send finds out
    CHECK(vm.try_receive(buffer).error() == errc::peer_closed);
    vm.close();
    CHECK(vm.try_receive(buffer).error() == std::errc::operation_canceled);
}
