/// @file
/// Service-manager readiness notification, as systemd's sd_notify(3) defines it, without libsystemd.
///
/// A program started by a service manager with `Type=notify` tells it when it is ready to serve
/// (and when it starts stopping) by sending one datagram of newline-separated `KEY=VALUE` lines —
/// `READY=1`, `STOPPING=1`, `STATUS=free text`, `MAINPID=N` — to the unix datagram socket named by
/// `$NOTIFY_SOCKET`. The name is a file system path, or, when it begins with '@', a Linux abstract
/// socket name (the '@' stands for the leading NUL byte). Without `$NOTIFY_SOCKET` nobody is waiting
/// and notify() does nothing, so a hypervisor calls it unconditionally. The datagram is sent from a
/// fresh socket and never blocks: a manager that does not read it loses only the message.
///
/// A hypervisor embedding ankanet sends `READY=1` once every VM's backend is attached — the point
/// after which a VM started by a dependent unit finds its network in place.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <system_error>

namespace ankanet::daemon {

/// Sends `state` (one or more `KEY=VALUE` lines, e.g. "READY=1\nSTATUS=serving 2 VMs") to the
/// service manager's socket `socket_name` (a path, or '@' and an abstract name). An empty name means
/// no manager is listening: nothing is sent and no error is returned. Returns the send's error, or
/// `std::errc::filename_too_long` when the name does not fit a `sockaddr_un`.
[[nodiscard]] inline std::error_code notify(std::string_view socket_name, std::string_view state) noexcept {
    if (socket_name.empty()) return {};
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    // A path needs its terminating NUL inside sun_path; an abstract name is counted by its length.
    const bool abstract = socket_name.front() == '@';
    if (socket_name.size() + (abstract ? 0 : 1) > sizeof address.sun_path) {
        return std::make_error_code(std::errc::filename_too_long);
    }
    std::memcpy(address.sun_path, socket_name.data(), socket_name.size());
    if (abstract) address.sun_path[0] = '\0';
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_name.size() + (abstract ? 0 : 1));

    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return {errno, std::system_category()};
    std::error_code error;
    if (::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&address), length) < 0) {
        error = {errno, std::system_category()};
    }
    ::close(fd);
    return error;
}

/// notify() to the socket `$NOTIFY_SOCKET` names; nothing when it is unset.
[[nodiscard]] inline std::error_code notify(std::string_view state) noexcept {
    const char* name = std::getenv("NOTIFY_SOCKET");
    return notify(name == nullptr ? std::string_view{} : std::string_view{name}, state);
}

} // namespace ankanet::daemon
