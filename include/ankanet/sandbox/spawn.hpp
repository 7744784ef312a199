/// @file
/// ankanet::sandbox::spawn — start a command in fresh namespaces whose only NIC is a TAP the
/// caller drives: the "guest" is the command's own kernel network stack, as with pasta.
///
/// Theory of operation. spawn() forks. The child, before anything else, asks to be killed when
/// its parent dies (PR_SET_PDEATHSIG), then unshares the namespaces:
///  * a user namespace when the caller is not root (user_namespace::automatic), mapping the
///    caller's uid and gid to 0 inside (setgroups "deny" first, as `unshare -r` does), so that
///    the child holds CAP_NET_ADMIN over what it creates next without any privilege outside;
///  * a network namespace, whose loopback it brings up;
///  * a mount namespace, only when a resolv.conf is asked for (see below).
/// It creates the TAP there (IFF_TAP | IFF_NO_PI, with a virtio-net header and offloads when
/// tap_options ask), with the MAC, MTU and up state given, and passes the TAP's descriptor to the
/// parent over a SOCK_SEQPACKET socketpair (SCM_RIGHTS). The descriptor keeps working from the
/// parent's namespaces: the parent attaches it to a network as the VM's backend. The child then
/// waits for its address. The parent, once it knows the lease, calls child::configure(): the
/// child sets the address and netmask and a default route via the gateway (ioctls on its own
/// socket), bind-mounts the resolv.conf, and execs the command. Its end of the socketpair is
/// close-on-exec, so the parent reads end-of-file when the exec succeeded and a report naming
/// the failed step (and its errno) otherwise.
///
/// Why the child does only system calls: fork() in a process that may hold other threads leaves
/// the child with one thread and whatever locks the others held. Everything the child needs (the
/// argv array, the path of the program, the id maps, the names) is prepared before fork, and the
/// child only calls async-signal-safe functions, as posix_spawn does. The program is found on
/// PATH by the parent, before fork, so "command not found" is an error of spawn() itself.
///
/// Descriptors: every descriptor above stderr is marked close-on-exec in the child (Asio's
/// sockets, a forward's listener, are not), so the command inherits stdin, stdout and stderr
/// only, and no host socket of the network serving it.
///
/// resolv.conf. With spawn_options::resolv_conf set, the child also unshares a mount namespace,
/// makes every mount in it private (nothing it does propagates back to the host), and bind-mounts
/// a file holding that text over /etc/resolv.conf (the symlink's target when it is one). The file
/// is made by the parent (mkstemp in $TMPDIR or /tmp) and unlinked once the child has exec'd;
/// the mount keeps it alive for the command. Nothing outside the child's mount namespace changes.
///
/// The child is killed (SIGKILL) when the thread that called spawn() ends, as PR_SET_PDEATHSIG
/// works: call it from a thread that lives as long as the command should.
///
/// Limits: IPv4 only (the IPv6 stack of the namespace is left as the kernel sets it up); one TAP;
/// Linux only, kernel 5.11 or later for close_range(CLOSE_RANGE_CLOEXEC) (older kernels: the
/// descriptors are left as they are).
#pragma once

#if defined(__linux__)

#include <ankanet/backend/tap.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>

#include <fmt/format.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace ankanet::sandbox {

/// Whether the child gets a user namespace of its own.
enum class user_namespace {
    automatic, ///< when the caller is not root (geteuid() != 0): then it needs one to hold CAP_NET_ADMIN
    always,    ///< always: the command runs as root of its own user namespace, the caller's ids mapped to 0
    never,     ///< never: the caller must hold CAP_SYS_ADMIN and CAP_NET_ADMIN
};

/// What spawn() starts, and how the child's namespaces and TAP are set up.
struct spawn_options {
    /// The command and its arguments; the first is looked up on $PATH unless it holds a '/'.
    std::vector<std::string> command;
    /// The TAP's name inside the child's network namespace (shorter than IFNAMSIZ, 16).
    std::string interface_name = "eth0";
    /// The TAP's MAC: the guest's, the one its network port holds. Must be unicast.
    wire::mac_address mac;
    /// The TAP's MTU and offloads (vnet_header, checksum_offload, tso4); its mac, set_interface_mtu
    /// and bring_up are set by spawn() itself.
    backend::tap_options tap{};
    /// Whether the child gets a user namespace of its own (see user_namespace).
    user_namespace user = user_namespace::automatic;
    /// When set, the text of the /etc/resolv.conf the command sees (in a private mount namespace).
    std::optional<std::string> resolv_conf;
};

/// The address configure() gives the child's interface.
struct interface_address {
    wire::ipv4_prefix address;  ///< the guest's address and its subnet's length
    wire::ipv4_address gateway; ///< the default route's next hop
};

/// The step of the child's set-up that failed (child::failed_step(), and spawn()'s `why`).
enum class child_step : std::uint32_t {
    none = 0,
    user_namespace,    ///< unshare(CLONE_NEWUSER)
    id_maps,           ///< writing /proc/self/setgroups, uid_map or gid_map
    network_namespace, ///< unshare(CLONE_NEWNET | CLONE_NEWNS)
    loopback,          ///< bringing lo up
    tap,               ///< creating or setting up the TAP
    pass_tap,          ///< sending the TAP's descriptor to the parent
    address,           ///< setting the interface's address or netmask
    route,             ///< adding the default route
    resolv_conf,       ///< bind-mounting the resolv.conf
    exec,              ///< executing the command
};

/// A few words naming `step`, for messages.
inline std::string_view to_string(child_step step) noexcept {
    switch (step) {
    case child_step::none: return "nothing";
    case child_step::user_namespace: return "creating a user namespace";
    case child_step::id_maps: return "mapping the caller's uid and gid in the user namespace";
    case child_step::network_namespace: return "creating a network namespace";
    case child_step::loopback: return "bringing up lo";
    case child_step::tap: return "creating the TAP";
    case child_step::pass_tap: return "passing the TAP's descriptor";
    case child_step::address: return "setting the interface's address";
    case child_step::route: return "adding the default route";
    case child_step::resolv_conf: return "bind-mounting /etc/resolv.conf";
    case child_step::exec: return "executing the command";
    }
    return "an unknown step";
}

/// A shell's exit status for a waitpid() status: the exit code, or 128 + N when killed by signal N.
constexpr int shell_status(int wait_status) noexcept {
    if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
    if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
    return 128;
}

/// Where `name` runs from: itself when it holds a '/', else the first executable file of that
/// name in the directories of `path` (an empty entry is the current directory, as for execvp).
inline std::optional<std::string> find_program(std::string_view name, std::string_view path) {
    if (name.empty()) return std::nullopt;
    if (name.find('/') != std::string_view::npos) return std::string{name};
    while (true) {
        const auto colon = path.find(':');
        const auto dir = path.substr(0, colon);
        std::string candidate = dir.empty() ? std::string{name} : fmt::format("{}/{}", dir, name);
        struct ::stat st{};
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
        if (colon == std::string_view::npos) return std::nullopt;
        path.remove_prefix(colon + 1);
    }
}

namespace detail::spawn_impl {

/// What the child reports on the socketpair: the step that failed and its errno.
struct report {
    child_step step = child_step::none;
    std::int32_t error = 0;
};

/// What the parent sends the child: its address, in network byte order.
struct address_message {
    std::uint32_t address = 0;
    std::uint32_t netmask = 0;
    std::uint32_t gateway = 0;
};

/// Exit codes of a child that never reached its command (a shell's 126/127 for exec).
inline constexpr int setup_failed_status = 125;

/// Everything the child reads, prepared before fork so the child allocates nothing.
struct child_plan {
    std::string program;
    std::vector<std::string> arguments;
    std::vector<char*> argv;
    std::string interface_name;
    std::string loopback_name = "lo";
    backend::tap_options tap;
    bool user_namespace = false;
    std::string uid_map;
    std::string gid_map;
    std::string resolv_conf_file; ///< empty: no resolv.conf
    pid_t parent = 0;
    int socket = -1;
};

/// Writes `text` to the file at `path` in one write(); async-signal-safe.
inline bool write_file(const char* path, const std::string& text) noexcept {
    const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    return ok;
}

/// Sends a report (and a descriptor, when `fd` >= 0) to the parent; async-signal-safe.
inline bool send_report(int socket, report r, int fd = -1) noexcept {
    ::iovec part{&r, sizeof r};
    ::msghdr message{};
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    alignas(::cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
    if (fd >= 0) {
        message.msg_control = control.data();
        message.msg_controllen = control.size();
        ::cmsghdr* header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(header), &fd, sizeof fd);
    }
    return ::sendmsg(socket, &message, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof r);
}

[[noreturn]] inline void fail(const child_plan& plan, child_step step, int status = setup_failed_status) noexcept {
    (void)send_report(plan.socket, {step, errno});
    ::_exit(status);
}

/// Sets one IPv4 address of interface `name` (SIOCSIFADDR, SIOCSIFNETMASK, ...).
inline bool set_interface_address(int socket, const std::string& name, unsigned long command, std::uint32_t address) noexcept {
    auto request = backend::detail::tap_impl::interface_request(name);
    ::sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = address;
    std::memcpy(&request.ifr_addr, &in, sizeof in);
    return ::ioctl(socket, command, &request) == 0;
}

/// The child, from fork to exec: system calls only (see the top of the file).
[[noreturn]] inline void run_child(child_plan& plan) noexcept {
    // Die with the parent: nothing else would end a command whose network is gone.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != plan.parent) ::_exit(setup_failed_status);
    // The command starts with no signal blocked, whatever the forking thread blocked. (Handlers
    // are reset by exec; a signal the caller ignores stays ignored, as `nohup` needs.)
    ::sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);

    if (plan.user_namespace) {
        if (::unshare(CLONE_NEWUSER) != 0) fail(plan, child_step::user_namespace);
        if (!write_file("/proc/self/setgroups", "deny") || !write_file("/proc/self/uid_map", plan.uid_map) ||
            !write_file("/proc/self/gid_map", plan.gid_map)) {
            fail(plan, child_step::id_maps);
        }
    }
    if (::unshare(CLONE_NEWNET | (plan.resolv_conf_file.empty() ? 0 : CLONE_NEWNS)) != 0) fail(plan, child_step::network_namespace);

    const int control = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (control < 0) fail(plan, child_step::loopback);
    {
        backend::tap_options up;
        up.bring_up = true;
        if (backend::detail::tap_impl::configure_interface(plan.loopback_name, up)) fail(plan, child_step::loopback);
    }

    const int tap = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (tap < 0) fail(plan, child_step::tap);
    auto request = backend::detail::tap_impl::interface_request(plan.interface_name);
    request.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | (plan.tap.vnet_header ? IFF_VNET_HDR : 0));
    if (::ioctl(tap, TUNSETIFF, &request) != 0) fail(plan, child_step::tap);
    if (plan.tap.vnet_header && backend::detail::tap_impl::configure_vnet(tap, plan.tap)) fail(plan, child_step::tap);
    if (backend::detail::tap_impl::configure_interface(plan.interface_name, plan.tap)) fail(plan, child_step::tap);
    if (!send_report(plan.socket, {}, tap)) fail(plan, child_step::pass_tap);
    ::close(tap); // the parent holds it now: the interface lives as long as its descriptor

    address_message address;
    const ssize_t got = ::recv(plan.socket, &address, sizeof address, 0);
    if (got != static_cast<ssize_t>(sizeof address)) ::_exit(setup_failed_status); // the parent gave up
    if (!set_interface_address(control, plan.interface_name, SIOCSIFADDR, address.address) ||
        !set_interface_address(control, plan.interface_name, SIOCSIFNETMASK, address.netmask)) {
        fail(plan, child_step::address);
    }
    ::rtentry route{};
    ::sockaddr_in any{};
    any.sin_family = AF_INET;
    std::memcpy(&route.rt_dst, &any, sizeof any);
    std::memcpy(&route.rt_genmask, &any, sizeof any);
    any.sin_addr.s_addr = address.gateway;
    std::memcpy(&route.rt_gateway, &any, sizeof any);
    route.rt_flags = RTF_UP | RTF_GATEWAY;
    route.rt_dev = plan.interface_name.data();
    if (::ioctl(control, SIOCADDRT, &route) != 0) fail(plan, child_step::route);
    ::close(control);

    if (!plan.resolv_conf_file.empty()) {
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
            ::mount(plan.resolv_conf_file.c_str(), "/etc/resolv.conf", nullptr, MS_BIND, nullptr) != 0) {
            fail(plan, child_step::resolv_conf);
        }
    }

    // Only stdin, stdout and stderr reach the command (the report socket is close-on-exec too).
    (void)::syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */);
    ::execve(plan.program.c_str(), plan.argv.data(), environ);
    fail(plan, child_step::exec, errno == ENOENT ? 127 : 126);
}

inline std::error_code last_error() noexcept { return {errno, std::system_category()}; }

} // namespace detail::spawn_impl

class child;
/// Starts a command in new namespaces with a TAP of its own; see its definition below.
inline result<child> spawn(const spawn_options& options, std::string* why = nullptr);

/// A command spawn() started, waiting in its namespaces for its address (see the top of the file).
///
/// Movable, not copyable. Destroying a child that was not waited for kills it (SIGKILL) and reaps
/// it, so no command outlives the object that ran it by accident.
class child {
public:
    /// Takes over `other`'s process, descriptors and set-up state; `other` is left empty.
    child(child&& other) noexcept
        : pid_(std::exchange(other.pid_, -1)), socket_(std::exchange(other.socket_, -1)), tap_(std::exchange(other.tap_, -1)),
          resolv_conf_file_(std::move(other.resolv_conf_file_)), step_(other.step_) {
        other.resolv_conf_file_.clear();
    }
    child& operator=(child&&) = delete;
    child(const child&) = delete;
    child& operator=(const child&) = delete;
    /// Kills (SIGKILL) and reaps a child not waited for; closes what it still holds.
    ~child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        close_setup();
        if (tap_ >= 0) ::close(tap_);
    }

    /// The child's process id (-1 once waited for).
    pid_t pid() const noexcept { return pid_; }

    /// Hands over the TAP's descriptor (non-blocking off, close-on-exec): for tap_device::adopt().
    /// -1 when taken already.
    int release_tap() noexcept { return std::exchange(tap_, -1); }

    /// Gives the child its address and default route and lets it exec the command; returns once
    /// it has (or has failed: the error is the child's errno, failed_step() says where).
    std::error_code configure(const interface_address& address) {
        if (socket_ < 0) return std::make_error_code(std::errc::operation_not_permitted);
        detail::spawn_impl::address_message message;
        message.address = htonl(address.address.address().to_u32());
        message.netmask = htonl(address.address.netmask().to_u32());
        message.gateway = htonl(address.gateway.to_u32());
        if (::send(socket_, &message, sizeof message, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof message)) {
            const auto ec = detail::spawn_impl::last_error();
            close_setup();
            return ec;
        }
        detail::spawn_impl::report report;
        ssize_t got = 0;
        do {
            got = ::recv(socket_, &report, sizeof report, 0);
        } while (got < 0 && errno == EINTR);
        close_setup();
        if (got == 0) return {}; // end of file: the exec closed the child's end
        if (got != static_cast<ssize_t>(sizeof report)) return std::make_error_code(std::errc::protocol_error);
        step_ = report.step;
        return {report.error, std::system_category()};
    }

    /// The step where the child's set-up failed, after spawn() or configure() said it did.
    child_step failed_step() const noexcept { return step_; }

    /// Sends `signal` to the child (nothing once it was waited for).
    void signal(int signal) const noexcept {
        if (pid_ > 0) (void)::kill(pid_, signal);
    }

    /// Reaps the child if it has ended: its shell_status(), or nullopt while it runs. Blocks when
    /// `block` is set.
    std::optional<int> try_wait(bool block = false) noexcept {
        if (pid_ <= 0) return std::nullopt;
        int status = 0;
        pid_t got = 0;
        do {
            got = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
        } while (got < 0 && errno == EINTR);
        if (got != pid_) return std::nullopt;
        pid_ = -1;
        return shell_status(status);
    }

private:
    friend result<child> spawn(const spawn_options& options, std::string* why);
    child(pid_t pid, int socket, std::string resolv_conf_file) noexcept
        : pid_(pid), socket_(socket), resolv_conf_file_(std::move(resolv_conf_file)) {}

    /// Ends the set-up: the socket is not needed, nor the resolv.conf file's name (the child's
    /// mount holds the file).
    void close_setup() noexcept {
        if (socket_ >= 0) ::close(std::exchange(socket_, -1));
        if (!resolv_conf_file_.empty()) {
            ::unlink(resolv_conf_file_.c_str());
            resolv_conf_file_.clear();
        }
    }

    pid_t pid_ = -1;
    int socket_ = -1;
    int tap_ = -1;
    std::string resolv_conf_file_;
    child_step step_ = child_step::none;
};

/// Starts `options.command` in new namespaces with a TAP of its own (see the top of the file) and
/// returns once the TAP exists; the command runs after child::configure().
/// @return the child, or the error and, in `why`, a sentence naming it: std::errc::invalid_argument
/// (no command, an interface name too long, a bad MTU or offload set), ENOENT (the command is not on
/// $PATH), the errno of fork, socketpair or the resolv.conf file, or the child's errno at the step
/// that failed (EPERM creating a user namespace that the system forbids, say).
inline result<child> spawn(const spawn_options& options, std::string* why) {
    namespace impl = detail::spawn_impl;
    const auto refuse = [&](std::error_code ec, std::string text) -> result<child> {
        if (why != nullptr) *why = std::move(text);
        return ec;
    };
    const auto invalid = std::make_error_code(std::errc::invalid_argument);
    if (options.command.empty()) return refuse(invalid, "no command to run");
    if (options.interface_name.empty() || options.interface_name.size() >= IFNAMSIZ ||
        options.interface_name.find('\0') != std::string::npos) {
        return refuse(invalid, fmt::format("'{}' is not an interface name (1 to {} characters)", options.interface_name, IFNAMSIZ - 1));
    }
    if (!backend::detail::tap_impl::valid_mtu(options.tap.mtu) || !backend::detail::tap_impl::valid_offload_options(options.tap)) {
        return refuse(invalid, "the TAP's MTU or offload options do not hold together");
    }

    impl::child_plan plan;
    const char* path = std::getenv("PATH");
    auto program = find_program(options.command.front(), path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
    if (!program) return refuse(std::make_error_code(std::errc::no_such_file_or_directory),
                                fmt::format("{}: command not found", options.command.front()));
    plan.program = std::move(*program);
    plan.arguments = options.command;
    for (auto& argument : plan.arguments) plan.argv.push_back(argument.data());
    plan.argv.push_back(nullptr);
    plan.interface_name = options.interface_name;
    plan.tap = options.tap;
    plan.tap.mac = options.mac;
    plan.tap.set_interface_mtu = true;
    plan.tap.bring_up = true;
    plan.user_namespace = options.user == user_namespace::always || (options.user == user_namespace::automatic && ::geteuid() != 0);
    plan.uid_map = fmt::format("0 {} 1\n", ::geteuid());
    plan.gid_map = fmt::format("0 {} 1\n", ::getegid());
    plan.parent = ::getpid();

    if (options.resolv_conf) {
        const char* dir = std::getenv("TMPDIR");
        std::string name = fmt::format("{}/ankanet-resolv-XXXXXX", dir != nullptr && *dir != '\0' ? dir : "/tmp");
        const int fd = ::mkstemp(name.data());
        if (fd < 0) return refuse(impl::last_error(), fmt::format("cannot create {}: {}", name, std::strerror(errno)));
        const auto& text = *options.resolv_conf;
        const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fchmod(fd, 0644) == 0;
        const auto ec = impl::last_error();
        ::close(fd);
        if (!written) {
            ::unlink(name.c_str());
            return refuse(ec, fmt::format("cannot write {}: {}", name, ec.message()));
        }
        plan.resolv_conf_file = std::move(name);
    }
    const auto drop_file = [&] {
        if (!plan.resolv_conf_file.empty()) ::unlink(plan.resolv_conf_file.c_str());
    };

    std::array<int, 2> ends{};
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends.data()) != 0) {
        const auto ec = impl::last_error();
        drop_file();
        return refuse(ec, fmt::format("socketpair: {}", ec.message()));
    }
    plan.socket = ends[1];
    const pid_t pid = ::fork();
    if (pid < 0) {
        const auto ec = impl::last_error();
        ::close(ends[0]);
        ::close(ends[1]);
        drop_file();
        return refuse(ec, fmt::format("fork: {}", ec.message()));
    }
    if (pid == 0) {
        ::close(ends[0]);
        impl::run_child(plan);
    }
    ::close(ends[1]);
    child spawned{pid, ends[0], std::move(plan.resolv_conf_file)};

    // The first message: the TAP's descriptor, or the step that failed.
    impl::report report;
    ::iovec part{&report, sizeof report};
    ::msghdr message{};
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    alignas(::cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    ssize_t got = 0;
    do {
        got = ::recvmsg(ends[0], &message, MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    int tap = -1;
    if (got == static_cast<ssize_t>(sizeof report)) {
        for (::cmsghdr* h = CMSG_FIRSTHDR(&message); h != nullptr; h = CMSG_NXTHDR(&message, h)) {
            if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS && h->cmsg_len == CMSG_LEN(sizeof(int))) {
                std::memcpy(&tap, CMSG_DATA(h), sizeof tap);
            }
        }
    }
    if (got != static_cast<ssize_t>(sizeof report) || report.step != child_step::none || tap < 0) {
        if (tap >= 0) ::close(tap);
        if (got == static_cast<ssize_t>(sizeof report) && report.step != child_step::none) {
            spawned.step_ = report.step;
            const std::error_code ec{report.error, std::system_category()};
            std::string hint;
            if (report.step == child_step::user_namespace || report.step == child_step::id_maps) {
                hint = " (are unprivileged user namespaces disabled? see user.max_user_namespaces and "
                       "kernel.unprivileged_userns_clone)";
            }
            return refuse(ec, fmt::format("{}: {}{}", to_string(report.step), ec.message(), hint));
        }
        return refuse(std::make_error_code(std::errc::protocol_error), "the child ended before it had created its TAP");
    }
    spawned.tap_ = tap;
    return spawned;
}

} // namespace ankanet::sandbox

#endif // __linux__
