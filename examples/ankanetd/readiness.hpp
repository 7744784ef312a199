// ankanetd telling whoever started it that it serves, and that it stops: the pid file (--pid-file)
// and the service manager's $NOTIFY_SOCKET (ankanet/daemon/notify.hpp; Type=notify in
// ankanetd.service). Both happen once every VM's port and socket is in place, so a unit ordered
// After=ankanetd.service (a VM's) finds its TAP or socket there. The pid file is written through a
// temporary file and renamed, so a reader never sees it half-written, and removed on a clean exit.
#pragma once

#include "command_line.hpp"
#include "log.hpp"

#include <ankanet/daemon/notify.hpp>
#include <ankanet/detail/atomic_file.hpp>

#include <unistd.h>

#include <filesystem>
#include <string_view>
#include <system_error>

namespace ankanetd {

/// Writes the pid file (when asked for), then sends READY=1 and `status` to the service manager.
/// False, with the reason logged, when the pid file cannot be written (the daemon then stops: its
/// operator asked for one); a manager that cannot be told is only a warning.
inline bool announce_ready(const options& opts, std::string_view status) {
    if (opts.pid_file) {
        if (const auto error = ankanet::detail::replace_file(*opts.pid_file, fmt::format("{}\n", ::getpid()), 0644)) {
            log_error("--pid-file {}: cannot write it: {}", *opts.pid_file, error.message());
            return false;
        }
    }
    if (const auto error = ankanet::daemon::notify(fmt::format("READY=1\nSTATUS={}", status))) {
        log_warning("cannot notify the service manager ($NOTIFY_SOCKET): {}", error.message());
    }
    log("ready: {}", status);
    return true;
}

/// Tells the service manager the daemon is stopping.
inline void announce_stopping() { (void)ankanet::daemon::notify("STOPPING=1"); }

/// Removes the pid file on a clean exit.
inline void remove_pid_file(const options& opts) {
    if (!opts.pid_file) return;
    std::error_code ignored;
    std::filesystem::remove(*opts.pid_file, ignored);
}

} // namespace ankanetd
