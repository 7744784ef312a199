// One ankanetd per socket path: an flock(2) on PATH.lock, held while the daemon serves PATH.
//
// The library's listen() and bind() find out whether a socket file is a live server's or a stale
// leftover by connecting to it (backend/qemu_stream.hpp): a live ankanetd then sees a connection
// come and go, and logs a VM attaching and detaching that was only a second instance looking. The
// lock tells the second instance first, without a connection: it refuses at once, and the first
// logs nothing. The kernel drops the lock when its holder exits however it exits, so a crashed
// daemon leaves no stale lock — the .lock file stays (removing it would race a starting daemon).
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

namespace ankanetd {

/// The lock on PATH.lock of one socket path; released when destroyed.
class socket_lock {
public:
    /// Takes the lock of `socket_path`, or says in `why` why not: another process holds it (another
    /// ankanetd serves the path), or the lock file cannot be opened.
    static std::optional<socket_lock> acquire(const std::string& socket_path, std::string& why) {
        const auto lock_path = socket_path + ".lock";
        const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            why = "cannot open its lock file " + lock_path + ": " + std::generic_category().message(errno);
            return std::nullopt;
        }
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            const int error = errno;
            ::close(fd);
            why = error == EWOULDBLOCK ? "another process serves it (it holds " + lock_path + ")"
                                       : "cannot lock " + lock_path + ": " + std::generic_category().message(error);
            return std::nullopt;
        }
        return socket_lock{fd};
    }

    socket_lock(socket_lock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    socket_lock& operator=(socket_lock&& other) noexcept {
        if (this != &other) {
            release();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    socket_lock(const socket_lock&) = delete;
    socket_lock& operator=(const socket_lock&) = delete;
    ~socket_lock() { release(); }

private:
    explicit socket_lock(int fd) : fd_(fd) {}
    void release() noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    int fd_ = -1;
};

} // namespace ankanetd
