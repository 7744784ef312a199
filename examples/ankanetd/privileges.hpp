// ankanetd's --runas USER: once every VM is attached, the daemon becomes USER and keeps a single
// capability (ankanet/daemon/privileges.hpp does the dropping).
//
// Kept: CAP_NET_BIND_SERVICE, because `ankanetd ctl PATH forward add` may ask for a host port below
// 1024 at any time. Not kept: CAP_NET_ADMIN and CAP_SYS_ADMIN (the TAPs already exist in their
// namespaces; a VM of the command line is never re-created), CAP_NET_RAW (the raw ICMP socket,
// when pings use one, and bridge mode's packet socket are opened before the drop and stay open;
// ping sockets are a matter of the ping_group_range sysctl holding USER's group, not of a
// capability), CAP_SETUID/CAP_SETGID (nothing to change back to). Open descriptors — TAPs, sockets,
// the pcap file — keep working. Files replaced later — the lease file (through FILE.tmp in its
// directory) and the pid file — need a directory USER may write: checked here, right after the
// drop, so a mistake is one line at start-up rather than a lease file that silently stops.
#pragma once

#include "command_line.hpp"
#include "log.hpp"

#include <ankanet/daemon/privileges.hpp>
#include <ankanet/detail/atomic_file.hpp>

#include <linux/capability.h>

#include <string>

namespace ankanetd {

/// Becomes `user` (see above). False, with the reason logged, when a step fails or a file the
/// daemon writes later is out of the user's reach; the daemon then stops.
inline bool become_user(const options& opts, const ankanet::daemon::user_identity& user) {
    std::string why;
    if (ankanet::daemon::drop_privileges(user, {CAP_NET_BIND_SERVICE}, why)) {
        log_error("--runas {}: cannot drop privileges: {}", user.name, why);
        return false;
    }
    log("running as {} (uid {}, gid {}), keeping CAP_NET_BIND_SERVICE only", user.name, user.uid, user.gid);
    if (opts.leases && ankanet::detail::check_replaceable_for(*opts.leases, "the lease file", why)) {
        log_error("--runas {}: --leases {}", user.name, why);
        return false;
    }
    if (opts.pid_file && ankanet::detail::check_replaceable(*opts.pid_file, &why)) {
        log_error("--runas {}: --pid-file {}: cannot write it there as {}: {}", user.name, *opts.pid_file, user.name, why);
        return false;
    }
    return true;
}

} // namespace ankanetd
