// Test support: the scaffolding the socket backend tests share (tests/backend/qemu_stream_test.cpp,
// tests/backend/unix_dgram_test.cpp): numbered frames, a scratch directory, an owned descriptor,
// socket pairs, and a receiver that drives an io_context until a backend's async_receive completes.
#pragma once

#include <ankanet/backend/backend.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>
#include "temp_dir.hpp"

namespace ankanet::test {

using bytes = std::vector<std::byte>;

/// A frame whose bytes depend on `seq`, so order and content can be checked.
inline bytes frame_of(std::size_t size, std::uint32_t seq) {
    bytes frame(size);
    for (std::size_t i = 0; i < size; ++i) frame[i] = static_cast<std::byte>((seq * 7u + i) & 0xffu);
    return frame;
}

/// An owned descriptor.
struct fd_guard {
    int fd = -1;
    explicit fd_guard(int f = -1) : fd(f) {}
    ~fd_guard() { reset(); }
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    void reset() {
        if (fd >= 0) ::close(fd);
        fd = -1;
    }
    int release() { return std::exchange(fd, -1); }
};

/// The AF_UNIX address of a filesystem path (truncated to fit, as the kernel would refuse it whole).
inline ::sockaddr_un address_of(const std::filesystem::path& path) {
    ::sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    return address;
}

/// A connected AF_UNIX socket pair of `type`: [0] for the backend, [1] plays the VM.
inline std::pair<int, int> socket_pair(int type) {
    int fds[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) == 0);
    return {fds[0], fds[1]};
}

/// Runs `io` one handler at a time until `done()` holds; false if `limit` passes first.
template <class Predicate>
bool run_until(boost::asio::io_context& io, Predicate done,
               std::chrono::milliseconds limit = std::chrono::milliseconds{5000}) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        io.restart();
        io.run_one_for(std::chrono::milliseconds{20});
    }
    return true;
}

/// One async_receive in flight on a backend, and what it completed with.
struct receiver {
    bytes buffer = bytes(backend::max_frame_len(backend::max_mtu));
    std::error_code ec;
    std::size_t size = 0;
    bool done = false;

    template <class Backend>
    void start(Backend& backend) {
        done = false;
        backend.async_receive(buffer, [this](std::error_code e, std::size_t n) {
            ec = e;
            size = n;
            done = true;
        });
    }
    bytes frame() const { return {buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(size)}; }
};

/// Starts a receive and runs `io` until it completes (or fails the test after 5 s).
template <class Backend>
receiver& receive(boost::asio::io_context& io, Backend& backend, receiver& r) {
    r.start(backend);
    REQUIRE(run_until(io, [&] { return r.done; }));
    return r;
}

/// Receives into a caller's `buffer` (e.g. one too small for the frame), runs `io` until the
/// receive completes (or fails the test after 5 s) and gives what it completed with.
template <class Backend>
std::error_code receive_error(boost::asio::io_context& io, Backend& backend, std::span<std::byte> buffer) {
    bool done = false;
    std::error_code ec;
    backend.async_receive(buffer, [&](std::error_code e, std::size_t) {
        ec = e;
        done = true;
    });
    REQUIRE(run_until(io, [&] { return done; }));
    return ec;
}

} // namespace ankanet::test
