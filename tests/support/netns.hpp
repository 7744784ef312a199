// Test support: network namespaces that a test creates for itself, and commands run inside them.
//
// `scoped_netns` runs `ip netns add` with a name no other test run uses (prefix, pid, counter) and
// `ip netns del` in its destructor, so the namespace is gone when the test ends, passed or failed.
// (The kernel frees a namespace only when nothing refers to it: a TAP fd opened inside keeps it
// alive, nameless, until the fd is closed.) `run_in` runs a shell command inside one, with its
// output captured and a time limit (coreutils `timeout`, which kills the command's whole process
// group), so no test waits forever on a guest. No Catch2 here: the benchmarks use it too.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace ankanet::test {

/// How a command ended: its exit status (128 + N when killed by signal N; 124 when `timeout`
/// stopped it) and everything it wrote to stdout and stderr.
struct command_result {
    int status = -1;
    std::string output;
};

/// Runs `argv` (no shell) with stdout and stderr captured, killed after `limit`.
inline command_result run_command(const std::vector<std::string>& argv, std::chrono::seconds limit = std::chrono::seconds{20}) {
    std::vector<std::string> full{"timeout", "--kill-after=2", std::to_string(limit.count())};
    full.insert(full.end(), argv.begin(), argv.end());
    std::vector<char*> args;
    for (auto& arg : full) args.push_back(arg.data());
    args.push_back(nullptr);

    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    ::pid_t pid = -1;
    const int spawned = posix_spawnp(&pid, "timeout", &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(pipe_fds[1]);
    if (spawned != 0) {
        ::close(pipe_fds[0]);
        throw std::runtime_error("cannot run " + argv.front());
    }

    // Read to end of output, bounded: `timeout` ends the command; the margin covers the rest.
    command_result result;
    const auto deadline = std::chrono::steady_clock::now() + limit + std::chrono::seconds{5};
    char chunk[4096];
    while (std::chrono::steady_clock::now() < deadline) {
        ::pollfd ready{pipe_fds[0], POLLIN, 0};
        if (::poll(&ready, 1, 100) <= 0) continue;
        const ::ssize_t n = ::read(pipe_fds[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        result.output.append(chunk, static_cast<std::size_t>(n));
    }
    ::close(pipe_fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result;
}

/// What is missing to create namespaces and TAPs here, or empty when nothing is.
inline std::string missing_netns_requirements() {
    if (::geteuid() != 0) return "root (network namespaces and TAP devices)";
    if (::access("/dev/net/tun", R_OK | W_OK) != 0) return "/dev/net/tun";
    try {
        if (run_command({"ip", "-V"}).status != 0) return "the `ip` command (iproute2)";
        if (run_command({"ping", "-V"}).status != 0) return "the `ping` command (iputils-ping)";
    } catch (const std::exception&) {
        return "coreutils `timeout`";
    }
    return {};
}

/// A network namespace that exists for the lifetime of this object.
class scoped_netns {
public:
    scoped_netns() : name_(unique_name()) {
        auto added = run_command({"ip", "netns", "add", name_});
        if (added.status != 0) throw std::runtime_error("ip netns add " + name_ + " failed: " + added.output);
    }
    scoped_netns(const scoped_netns&) = delete;
    scoped_netns& operator=(const scoped_netns&) = delete;
    ~scoped_netns() {
        try {
            run_command({"ip", "netns", "del", name_});
        } catch (...) {
            // Nothing more to do in a destructor; a leftover shows in `ip netns list` by its prefix.
        }
    }

    const std::string& name() const noexcept { return name_; }
    /// The bind mount `ip netns add` made: what setns(2) opens.
    std::string path() const { return "/run/netns/" + name_; }

private:
    static std::string unique_name() {
        static std::atomic<unsigned> counter{0};
        return "ankanet-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    }

    std::string name_;
};

/// Runs shell `command` inside namespace `ns` (`ip netns exec NAME sh -c COMMAND`).
inline command_result run_in(const scoped_netns& ns, const std::string& command,
                             std::chrono::seconds limit = std::chrono::seconds{20}) {
    return run_command({"ip", "netns", "exec", ns.name(), "sh", "-c", command}, limit);
}

} // namespace ankanet::test
