// ankanet::backend::detail — the unix socket files that listening backends bind (qemu_stream's
// server, unix_dgram): filling a sockaddr_un, clearing a stale file before bind, and removing at
// close only the file this process created.
//
// A socket file that no one accepts on (connect() is refused) is the leftover of a crashed
// process and is removed; a live socket of either type is someone else's (address_in_use), and a
// file that is not a socket is never touched (file_exists).
#pragma once

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

namespace ankanet::backend::detail {

inline std::error_code last_errno() noexcept { return {errno, std::system_category()}; }

/// Fills a sockaddr_un for `path`; false when the path does not fit (sun_path holds 107 bytes and a NUL).
inline bool fill_unix_address(const std::filesystem::path& path, ::sockaddr_un& address) noexcept {
    const auto& text = path.native();
    if (text.empty() || text.size() >= sizeof(address.sun_path) || text.find('\0') != std::string::npos) return false;
    address = {};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, text.data(), text.size());
    return true;
}

/// Makes `path` free for bind(): nothing there, or a stale socket file (removed).
/// @param socket_type SOCK_STREAM or SOCK_DGRAM: the kind of socket about to be bound there.
inline std::error_code clear_stale_socket(const std::filesystem::path& path, int socket_type) {
    struct ::stat info {};
    if (::lstat(path.c_str(), &info) != 0) return errno == ENOENT ? std::error_code{} : last_errno();
    if (!S_ISSOCK(info.st_mode)) return std::make_error_code(std::errc::file_exists);
    ::sockaddr_un address{};
    if (!fill_unix_address(path, address)) return std::make_error_code(std::errc::filename_too_long);
    const int probe = ::socket(AF_UNIX, socket_type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0) return last_errno();
    // Non-blocking, so a listener with a full backlog answers at once instead of holding us here.
    const int rc = ::connect(probe, reinterpret_cast<const ::sockaddr*>(&address), sizeof(address));
    const int error = rc == 0 ? 0 : errno;
    ::close(probe);
    // Someone is there: connected (a datagram socket, or a listener), a full backlog (EAGAIN), or
    // a live socket of the other type (EPROTOTYPE).
    if (rc == 0 || error == EAGAIN || error == EINPROGRESS || error == EPROTOTYPE) {
        return std::make_error_code(std::errc::address_in_use);
    }
    if (error != ECONNREFUSED) return {error, std::system_category()};
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return last_errno();
    return {};
}

/// The identity of a socket file this process bound, so that close removes only that file and
/// not one a newer process has bound at the same path since.
struct unix_socket_file {
    std::filesystem::path path;
    ::dev_t device = 0;
    ::ino_t inode = 0;

    /// Records `bound` as ours (call right after bind()).
    void remember(const std::filesystem::path& bound) noexcept {
        path = bound;
        struct ::stat info {};
        if (::lstat(path.c_str(), &info) == 0) {
            device = info.st_dev;
            inode = info.st_ino;
        }
    }
    /// Removes the file if it is still ours. Idempotent.
    void remove() noexcept {
        if (path.empty()) return;
        struct ::stat info {};
        if (::lstat(path.c_str(), &info) == 0 && S_ISSOCK(info.st_mode) && info.st_dev == device && info.st_ino == inode) {
            ::unlink(path.c_str());
        }
        path.clear();
    }
};

} // namespace ankanet::backend::detail
