// Test support: the real ankanetd binary run as a child process by end-to-end tests.
//
// `daemon_process` starts ANKANETD_PATH (defined by tests/CMakeLists.txt for tests/e2e/ankanetd*)
// with its stdout and stderr in a log file, and SIGKILLs it if it is still running when the test
// leaves, so no daemon outlives its test. `wait_for_interface` waits, bounded, until the daemon has
// created a guest's TAP inside its namespace.
#pragma once

#include "netns.hpp"
#include "temp_dir.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#ifndef ANKANETD_PATH
#error "ANKANETD_PATH must name the ankanetd binary (tests/CMakeLists.txt defines it for e2e/ankanetd* tests)"
#endif

namespace ankanet::test {

/// ankanetd running as a child process, its stderr in a log file; SIGKILLed if still running
/// when the test leaves.
class daemon_process {
public:
    /// Starts the daemon with `args`, and with `extra_env` ("NAME=VALUE") added to the test's environment.
    explicit daemon_process(std::vector<std::string> args, std::vector<std::string> extra_env = {})
        : log_(std::filesystem::temp_directory_path() / ("ankanetd-e2e-" + std::to_string(::getpid()) + "-" +
                                                        std::to_string(counter_++) + ".log")) {
        // The test rule: the NAT reaches loopback only, and DNS goes to no real resolver (port 9 on
        // loopback answers nothing), unless a test says otherwise.
        const auto has = [&](std::string_view option) { return std::find(args.begin(), args.end(), option) != args.end(); };
        const auto mode = std::find(args.begin(), args.end(), "--mode");
        const bool shared = mode == args.end() || (mode + 1 != args.end() && *(mode + 1) == "shared");
        if (shared && !has("--egress")) args.insert(args.end(), {"--egress", "127.0.0.0/8"});
        if (!has("--dns-upstream") && (shared || (mode + 1 != args.end() && *(mode + 1) == "host"))) {
            args.insert(args.end(), {"--dns-upstream", "127.0.0.1:9"});
        }
        args.insert(args.begin(), ANKANETD_PATH);
        std::vector<char*> argv;
        for (auto& arg : args) argv.push_back(arg.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
        std::vector<char*> envp;
        for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
        for (auto& e : extra_env) envp.push_back(e.data());
        envp.push_back(nullptr);
        const int rc = posix_spawn(&pid_, ANKANETD_PATH, &actions, nullptr, argv.data(), envp.data());
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0) throw std::runtime_error("cannot start " ANKANETD_PATH);
    }
    daemon_process(const daemon_process&) = delete;
    daemon_process& operator=(const daemon_process&) = delete;
    ~daemon_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        std::error_code ignored;
        std::filesystem::remove(log_, ignored);
    }

    /// Sends `signal` and waits (bounded) for the exit; the exit status, or -1 on timeout.
    int stop(int signal = SIGTERM, std::chrono::seconds limit = std::chrono::seconds{10}) {
        ::kill(pid_, signal);
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{20});
        }
        return -1;
    }

    std::string log() const { return read_text(log_); }
    /// The daemon's pid, to freeze it (SIGSTOP) the way a starved machine would.
    ::pid_t pid() const noexcept { return pid_; }

private:
    static inline std::atomic<int> counter_{0};
    std::filesystem::path log_;
    ::pid_t pid_ = -1;
};

/// Waits (bounded) until interface `ifname` exists in `ns`: ankanetd has attached it.
inline bool wait_for_interface(const scoped_netns& ns, const std::string& ifname) {
    for (int attempt = 0; attempt < 200; ++attempt) {
        if (run_in(ns, "ip link show " + ifname).status == 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
    return false;
}

} // namespace ankanet::test
