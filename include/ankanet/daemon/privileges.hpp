/// @file
/// Dropping root after setup: become an unprivileged user, keeping only the capabilities named.
///
/// A hypervisor's network needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) only to set up: to
/// create TAPs inside network namespaces, open raw sockets and bind its sockets. Once every VM's
/// backend is attached, the descriptors it holds keep working for any user, so the process can
/// become an unprivileged user and keep only what later requests still need (CAP_NET_BIND_SERVICE,
/// say, when port forwards below 1024 may be added at run time).
///
/// drop_privileges() does it in the order the kernel requires (capabilities(7), setresuid(2)):
/// while still root it drops every other capability from the bounding set (PR_CAPBSET_DROP), so
/// nothing executed later can regain one; it sets PR_SET_KEEPCAPS so the permitted set survives the
/// change of uid; sets the user's supplementary groups (initgroups), then its gid, then its uid
/// (real, effective and saved, so root cannot be taken back); clears PR_SET_KEEPCAPS; and finally
/// sets the effective and permitted sets to exactly the capabilities kept, with nothing
/// inheritable, through capset(2) directly (no libcap). Any failing step is reported, and the
/// process should then exit: it may be half-way.
///
/// Files the process writes later must be writable by the user: open them before dropping (a
/// descriptor keeps its access), or give the user the directory they are replaced in.
#pragma once

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <system_error>
#include <vector>

namespace ankanet::daemon {

/// A user's identity, as the user database (getpwnam) has it.
struct user_identity {
    std::string name; ///< the login name
    ::uid_t uid = 0;  ///< its user id
    ::gid_t gid = 0;  ///< its primary group id
};

/// Looks `name` up in the user database; an error (std::errc::invalid_argument when there is no
/// such user) with `why` set to one sentence otherwise.
[[nodiscard]] inline std::error_code find_user(const std::string& name, user_identity& user, std::string& why) {
    std::vector<char> buffer(16384);
    passwd entry{};
    passwd* found = nullptr;
    const int rc = ::getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (rc != 0) {
        why = "cannot look up user '" + name + "': " + std::generic_category().message(rc);
        return {rc, std::generic_category()};
    }
    if (found == nullptr) {
        why = "no user '" + name + "' in the user database";
        return std::make_error_code(std::errc::invalid_argument);
    }
    user = {name, entry.pw_uid, entry.pw_gid};
    return {};
}

/// Becomes `user` (groups, gid, uid) keeping exactly the capabilities `keep` (CAP_* numbers)
/// effective and permitted, and no other in the bounding set (see the file comment). Needs root
/// (CAP_SETUID, CAP_SETGID, CAP_SETPCAP). On failure, `why` says which step failed.
[[nodiscard]] inline std::error_code drop_privileges(const user_identity& user, std::initializer_list<int> keep,
                                                     std::string& why) {
    const auto failed = [&why](const char* step) {
        const int error = errno;
        why = std::string{step} + ": " + std::generic_category().message(error);
        return std::error_code{error, std::generic_category()};
    };
    const auto kept = [&keep](int cap) {
        for (const int k : keep) {
            if (k == cap) return true;
        }
        return false;
    };
    // The bounding set, while CAP_SETPCAP is still ours; EINVAL marks the last capability the kernel knows.
    for (int cap = 0; cap < 64; ++cap) {
        if (kept(cap)) continue;
        if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
            if (errno == EINVAL) break;
            return failed("PR_CAPBSET_DROP");
        }
    }
    if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return failed("PR_SET_KEEPCAPS");
    if (::initgroups(user.name.c_str(), user.gid) != 0) return failed("initgroups");
    if (::setresgid(user.gid, user.gid, user.gid) != 0) return failed("setresgid");
    if (::setresuid(user.uid, user.uid, user.uid) != 0) return failed("setresuid");
    if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return failed("PR_SET_KEEPCAPS");

    __user_cap_header_struct header{};
    header.version = _LINUX_CAPABILITY_VERSION_3;
    header.pid = 0;
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
    for (const int cap : keep) {
        if (cap < 0 || cap >= 32 * _LINUX_CAPABILITY_U32S_3) continue;
        const auto bit = std::uint32_t{1} << (cap % 32);
        data[cap / 32].effective |= bit;
        data[cap / 32].permitted |= bit;
    }
    if (::syscall(SYS_capset, &header, data) != 0) return failed("capset");
    return {};
}

} // namespace ankanet::daemon
