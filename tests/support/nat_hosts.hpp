// Test support for the NAT's end-to-end tests: servers the test runs in the background (on host
// loopback, or inside a namespace), a free loopback port, and a "far" host — a namespace behind a
// veth pair the test creates, with addresses from the documentation range 198.51.100.0/24 that the
// host routes to — so that "beyond the host" is somewhere the test owns.
#pragma once

#include "netns.hpp"
#include "temp_dir.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace ankanet::test {

/// `sh -c command` in a process group of its own, output to a log file; the whole group is
/// killed when this goes.
class background_process {
public:
    explicit background_process(const std::string& command)
        : log_(std::filesystem::temp_directory_path() /
               ("ankanet-bg-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++) + ".log")) {
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawnattr_t attributes;
        posix_spawnattr_init(&attributes);
        posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
        posix_spawnattr_setpgroup(&attributes, 0);
        std::string sh = "/bin/sh", c = "-c", cmd = command;
        char* argv[] = {sh.data(), c.data(), cmd.data(), nullptr};
        const int rc = posix_spawn(&pid_, "/bin/sh", &actions, &attributes, argv, environ);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attributes);
        if (rc != 0) throw std::runtime_error("cannot start: " + command);
    }
    background_process(const background_process&) = delete;
    background_process& operator=(const background_process&) = delete;
    ~background_process() {
        ::kill(-pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        std::error_code ignored;
        std::filesystem::remove(log_, ignored);
    }
    std::string log() const { return read_text(log_); }

private:
    static inline std::atomic<int> counter_{0};
    std::filesystem::path log_;
    ::pid_t pid_ = -1;
};

/// A TCP or UDP port on 127.0.0.1 that was free a moment ago.
inline std::uint16_t free_loopback_port(int type = SOCK_STREAM) {
    const int fd = ::socket(AF_INET, type, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        throw std::runtime_error("no free loopback port");
    }
    ::close(fd);
    return ntohs(a.sin_port);
}

/// Waits (bounded) until `probe` (a shell command) succeeds, e.g. a server is listening.
inline bool wait_until_succeeds(const std::string& probe, std::chrono::seconds limit = std::chrono::seconds{5}) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        if (run_command({"sh", "-c", probe}).status == 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
    return false;
}

/// A namespace behind a veth pair whose near end stays in the test's namespace: near .1 and far
/// .2 of a /30 of 198.51.100.0/24 chosen per instance, so concurrent tests do not share one.
class far_host {
public:
    far_host() {
        const unsigned slot = (static_cast<unsigned>(::getpid()) * 7u + counter_++) % 63u + 1u;
        base_ = "198.51.100." + std::to_string(slot * 4);
        near_address_ = "198.51.100." + std::to_string(slot * 4 + 1);
        far_address_ = "198.51.100." + std::to_string(slot * 4 + 2);
        near_if_ = "ankv" + std::to_string(::getpid() % 100000) + "n" + std::to_string(slot);
        const std::string far_if = near_if_ + "f";
        const auto made = run_command({"sh", "-c",
                                       "ip link add " + near_if_ + " type veth peer name " + far_if + " && ip link set " + far_if +
                                           " netns " + ns_.name() + " && ip addr add " + near_address_ + "/30 dev " + near_if_ +
                                           " && ip link set " + near_if_ + " up"});
        if (made.status != 0) throw std::runtime_error("far host veth: " + made.output);
        const auto inside = run_in(ns_, "ip link set lo up && ip addr add " + far_address_ + "/30 dev " + far_if +
                                            " && ip link set " + far_if + " up && ip route add default via " + near_address_);
        if (inside.status != 0) throw std::runtime_error("far host address: " + inside.output);
    }
    far_host(const far_host&) = delete;
    far_host& operator=(const far_host&) = delete;
    ~far_host() {
        try {
            run_command({"ip", "link", "del", near_if_});
        } catch (...) {
            // the namespace's end goes with the namespace
        }
    }

    const scoped_netns& ns() const noexcept { return ns_; }
    /// The far host's address.
    const std::string& address() const noexcept { return far_address_; }
    /// The /30 it sits in, for an egress allow-list.
    std::string prefix() const { return base_ + "/30"; }

private:
    static inline std::atomic<unsigned> counter_{0};
    scoped_netns ns_;
    std::string base_, near_address_, far_address_, near_if_;
};

} // namespace ankanet::test
