/// @file
/// ankanet::backend::netns — run a piece of code inside another network namespace, then come back.
///
/// Theory of operation. A network namespace is entered with setns(2) on a file that names it: a
/// bind mount such as /run/netns/NAME (what `ip netns add` creates) or /proc/PID/ns/net. Anything
/// created while inside — a TAP device, a socket — belongs to that namespace for the rest of its
/// life, wherever it is used from afterwards. That is how a TAP is made inside a guest's namespace
/// and then driven from the daemon's own namespace, as slirp4netns and pasta do.
///
/// `netns_scope` is the RAII form: enter() opens the target, saves the calling thread's current
/// namespace (/proc/thread-self/ns/net), and switches; the destructor switches back. run_in_netns()
/// wraps a callable in one. Limits and why:
///  * setns(2) changes the namespace of the calling *thread* only. Other threads of the process,
///    including the one running the io_context, stay where they are. Do the work on the thread that
///    entered, and do not let anything else run on that thread meanwhile (no io_context::run()
///    inside the scope: a handler run there would open its sockets in the wrong namespace).
///    A thread *created* inside the scope starts in the namespace and stays there: keep work that
///    may start threads behind the scenes (Asio's resolver, for one) out of it.
///  * Coming back must not fail: a thread left in the wrong namespace would quietly create every
///    later socket there. If the return setns(2) fails anyway, the process aborts with a message.
///    The same holds if a scope is destroyed on a thread other than the one that entered it (a bug).
///  * Errors are std::error_code from the system call that failed, before anything changed: ENOENT
///    (no such path), EINVAL (the file is not a network namespace), EPERM (no CAP_SYS_ADMIN over
///    the target namespace's user namespace), ENOENT from /proc/thread-self when /proc is not
///    mounted. An error_code cannot carry the path; the caller has it, and names it in its message.
///  * Entering needs CAP_SYS_ADMIN; a multithreaded process may switch its threads' network
///    namespaces independently (unlike user or mount namespaces).
/// Linux only.
#pragma once

#if defined(__linux__)

#include <ankanet/result.hpp>

#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <concepts>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <type_traits>
#include <utility>

namespace ankanet::backend {

namespace detail::netns_impl {

inline std::error_code last_system_error() noexcept { return {errno, std::system_category()}; }

/// The kernel id of the calling thread (gettid(2) has a glibc wrapper only from 2.30).
inline long current_thread_id() noexcept { return ::syscall(SYS_gettid); }

/// Opens a namespace file for setns(2); the descriptor is close-on-exec.
inline result<int> open_namespace_file(const char* path) noexcept {
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return last_system_error();
    return fd;
}

} // namespace detail::netns_impl

/// The calling thread inside another network namespace, for as long as this object lives.
///
/// Not copyable. Movable (result<netns_scope> needs it), but a scope must be destroyed on the
/// thread that entered it; destroying it elsewhere aborts.
///
/// @par Example
/// @code
/// auto inside = netns_scope::enter("/run/netns/vm1");
/// if (!inside) return inside.error();
/// int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); // a socket of vm1's namespace
/// // leaving the block returns the thread to its own namespace
/// @endcode
class netns_scope {
public:
    /// Moves the calling thread into the network namespace named by `path`.
    /// On error nothing changed: the thread is still in its own namespace.
    [[nodiscard]] static result<netns_scope> enter(const std::filesystem::path& path) noexcept {
        auto target = detail::netns_impl::open_namespace_file(path.c_str());
        if (!target) return target.error();
        // Saved before switching: /proc/thread-self names the namespace we are leaving.
        auto home = detail::netns_impl::open_namespace_file("/proc/thread-self/ns/net");
        if (!home) {
            ::close(*target);
            return home.error();
        }
        const int entered = ::setns(*target, CLONE_NEWNET);
        const std::error_code why = entered == 0 ? std::error_code{} : detail::netns_impl::last_system_error();
        ::close(*target); // the namespace stays alive: the thread is in it now
        if (why) {
            ::close(*home);
            return why;
        }
        return netns_scope{*home};
    }

    /// Move-constructs.
    netns_scope(netns_scope&& other) noexcept
        : home_fd_(std::exchange(other.home_fd_, -1)), thread_id_(other.thread_id_) {}
    netns_scope& operator=(netns_scope&&) = delete;
    netns_scope(const netns_scope&) = delete;
    netns_scope& operator=(const netns_scope&) = delete;

    /// Returns the thread to the namespace it was in before enter(); aborts if it cannot.
    ~netns_scope() {
        if (home_fd_ < 0) return; // moved from
        if (detail::netns_impl::current_thread_id() != thread_id_) {
            fail("netns_scope destroyed on another thread than the one that entered it", 0);
        }
        if (::setns(home_fd_, CLONE_NEWNET) != 0) {
            fail("cannot return the thread to its original network namespace", errno);
        }
        ::close(home_fd_);
    }

private:
    explicit netns_scope(int home_fd) noexcept : home_fd_(home_fd), thread_id_(detail::netns_impl::current_thread_id()) {}

    [[noreturn]] static void fail(const char* message, int error) noexcept {
        std::fprintf(stderr, "ankanet: %s%s%s; aborting\n", message, error != 0 ? ": " : "",
                     error != 0 ? std::strerror(error) : "");
        std::abort();
    }

    int home_fd_;
    long thread_id_;
};

/// Runs `work()` on the calling thread inside the network namespace at `path`, then returns to
/// the thread's own namespace (even if `work` throws).
///
/// `work` returns std::error_code or a result<T>; run_in_netns returns the same type, holding
/// either what `work` returned or the error that kept the thread from entering.
///
/// @par Example
/// @code
/// result<int> fd = run_in_netns("/proc/1234/ns/net", []() -> result<int> {
///     int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
///     if (s < 0) return std::error_code{errno, std::system_category()};
///     return s;
/// });
/// @endcode
template <class Work>
    requires std::invocable<Work&> && std::constructible_from<std::invoke_result_t<Work&>, std::error_code>
std::invoke_result_t<Work&> run_in_netns(const std::filesystem::path& path, Work&& work) {
    using outcome = std::invoke_result_t<Work&>;
    auto scope = netns_scope::enter(path);
    if (!scope) return outcome(scope.error());
    return work();
}

} // namespace ankanet::backend

#endif // __linux__
