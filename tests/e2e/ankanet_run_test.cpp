// End to end: the real ankanet-run binary runs real commands (curl, sh, socat) in namespaces of
// their own, as root and as an unprivileged user (setpriv to nobody: a user namespace then). Every
// run keeps the NAT on loopback (--egress 127.0.0.0/8) and DNS on a dead loopback port, and every
// run is bounded by `timeout`.
#include "../support/nat_hosts.hpp"
#include "../support/netns.hpp"
#include "../support/skip.hpp"
#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifndef ANKANET_RUN_PATH
#error "ANKANET_RUN_PATH must name the ankanet-run binary (tests/CMakeLists.txt defines it)"
#endif

namespace {

using ankanet::test::command_result;
using ankanet::test::read_text;
using ankanet::test::run_command;
using ankanet::test::temp_dir;

/// The options every run takes: the NAT reaches host loopback only, DNS a port that answers nothing.
std::vector<std::string> ankanet_run(const std::vector<std::string>& options, const std::vector<std::string>& command,
                                     const std::string& binary = ANKANET_RUN_PATH) {
    std::vector<std::string> argv{binary, "--egress", "127.0.0.0/8", "--dns-upstream", "127.0.0.1:9"};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.emplace_back("--");
    argv.insert(argv.end(), command.begin(), command.end());
    return argv;
}

/// A text no other run uses, so a page that arrives is known to be this run's.
std::string unique_text(std::string_view what) {
    std::random_device random;
    return std::string{what} + "-" + std::to_string(random()) + "-" + std::to_string(::getpid());
}

/// A web server on 127.0.0.1 (a port the kernel picks) answering every GET, for `limit`, with `body`.
class loopback_web_server {
public:
    explicit loopback_web_server(std::string body, std::chrono::seconds limit = std::chrono::seconds{20})
        : body_(std::move(body)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ::sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::socklen_t length = sizeof address;
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<::sockaddr*>(&address), sizeof address) != 0 || ::listen(fd_, 8) != 0 ||
            ::getsockname(fd_, reinterpret_cast<::sockaddr*>(&address), &length) != 0) {
            throw std::runtime_error("cannot listen on 127.0.0.1");
        }
        port_ = ntohs(address.sin_port);
        thread_ = std::thread{[this, deadline = std::chrono::steady_clock::now() + limit] { serve(deadline); }};
    }
    loopback_web_server(const loopback_web_server&) = delete;
    loopback_web_server& operator=(const loopback_web_server&) = delete;
    ~loopback_web_server() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }
    std::uint16_t port() const noexcept { return port_; }
    int served() const noexcept { return served_; }

private:
    void serve(std::chrono::steady_clock::time_point deadline) {
        while (!stop_ && std::chrono::steady_clock::now() < deadline) {
            ::pollfd ready{fd_, POLLIN, 0};
            if (::poll(&ready, 1, 50) <= 0) continue;
            const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (client < 0) continue;
            std::string request;
            char chunk[1024];
            // Read the request head (bounded by time and size), then answer and close.
            for (int i = 0; i < 100 && request.find("\r\n\r\n") == std::string::npos && request.size() < 65536; ++i) {
                ::pollfd in{client, POLLIN, 0};
                if (::poll(&in, 1, 50) <= 0) continue;
                const auto n = ::read(client, chunk, sizeof chunk);
                if (n <= 0) break;
                request.append(chunk, static_cast<std::size_t>(n));
            }
            const std::string reply = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                                      std::to_string(body_.size()) + "\r\nConnection: close\r\n\r\n" + body_;
            if (::send(client, reply.data(), reply.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(reply.size())) ++served_;
            ::close(client);
        }
    }

    std::string body_;
    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> served_{0};
    std::thread thread_;
};

/// What one connection to 127.0.0.1:port reads until the peer closes (bounded); empty if refused.
std::string read_from_loopback(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ::sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port);
    std::string got;
    if (::connect(fd, reinterpret_cast<::sockaddr*>(&address), sizeof address) == 0) {
        char chunk[1024];
        for (int i = 0; i < 40; ++i) {
            ::pollfd in{fd, POLLIN, 0};
            if (::poll(&in, 1, 50) <= 0) continue;
            const auto n = ::read(fd, chunk, sizeof chunk);
            if (n <= 0) break;
            got.append(chunk, static_cast<std::size_t>(n));
        }
    }
    ::close(fd);
    return got;
}

/// Root with /dev/net/tun: what the root-mode cases need.
#define REQUIRE_ROOT_AND_TUN()                                                                                  \
    ANKANET_REQUIRE_ENVIRONMENT(::geteuid() == 0, "ankanet-run's root mode needs root");                      \
    ANKANET_REQUIRE_ENVIRONMENT(::access("/dev/net/tun", R_OK | W_OK) == 0, "/dev/net/tun is missing")

/// The first line of `text` holding `what`, or empty.
std::string line_with(const std::string& text, std::string_view what) {
    const auto at = text.find(what);
    if (at == std::string::npos) return {};
    const auto begin = text.rfind('\n', at);
    const auto end = text.find('\n', at);
    return text.substr(begin == std::string::npos ? 0 : begin + 1, end == std::string::npos ? std::string::npos : end - begin - 1);
}

} // namespace

TEST_CASE("ankanet-run as root: curl through the gateway fetches a page from host loopback, at the leased address") {
    REQUIRE_ROOT_AND_TUN();
    const auto body = unique_text("page");
    loopback_web_server server{body};
    const auto url = "http://192.168.64.1:" + std::to_string(server.port()) + "/";
    temp_dir dir{"ankanet-run-e2e"};
    const auto capture = dir / "run.pcap";
    const auto host_resolv_conf = read_text("/etc/resolv.conf");
    // -v prints the lease; the command resolves a name of the gateway's own zone through the
    // resolv.conf it was given, prints the address its interface holds, then the page.
    const auto run = run_command(ankanet_run({"-v", "--pcap", capture.string()},
                                             {"sh", "-c", "getent hosts host.ankanet.internal; ip -4 -o addr show eth0; curl -sS --max-time 5 " + url}));
    INFO(run.output);
    REQUIRE(run.status == 0);
    CHECK(run.output.find(body) != std::string::npos);
    CHECK(server.served() == 1);
    CHECK(run.output.find("192.168.64.1    host.ankanet.internal") != std::string::npos);
    CHECK(read_text("/etc/resolv.conf") == host_resolv_conf); // the bind mount stayed in the command's namespace
    CHECK(std::filesystem::file_size(capture) > 24 + 1000);    // the pcap header, and the exchange's frames
    // "ankanet-run: eth0 192.168.64.N/24 on MAC (lease ...)" and "eth0 inet 192.168.64.N/24 ...": one address.
    const auto lease = line_with(run.output, "ankanet-run: eth0 ");
    REQUIRE_FALSE(lease.empty());
    const auto address = lease.substr(std::string_view{"ankanet-run: eth0 "}.size(), lease.find(" on ") - 18);
    CHECK(address.starts_with("192.168.64."));
    CHECK(line_with(run.output, "inet " + address + " ").find("eth0") != std::string::npos);
}

TEST_CASE("ankanet-run: COMMAND's exit status comes back, 128 + N for a signal, 127 for a missing command") {
    REQUIRE_ROOT_AND_TUN();
    CHECK(run_command(ankanet_run({}, {"sh", "-c", "exit 7"})).status == 7);
    CHECK(run_command(ankanet_run({}, {"true"})).status == 0);
    CHECK(run_command(ankanet_run({}, {"sh", "-c", "kill -TERM $$"})).status == 128 + SIGTERM);
    const auto missing = run_command(ankanet_run({}, {"no-such-command-ankanet-run"}));
    CHECK(missing.status == 127);
    CHECK(missing.output.find("no-such-command-ankanet-run: command not found") != std::string::npos);
}

TEST_CASE("ankanet-run --forward: a host client reaches a server COMMAND runs") {
    REQUIRE_ROOT_AND_TUN();
    ANKANET_REQUIRE_ENVIRONMENT(std::system("command -v socat >/dev/null") == 0, "socat is not installed");
    const auto port = ankanet::test::free_loopback_port();
    const auto body = unique_text("served-by-command");
    // socat serves one connection inside the namespace on port 8080, then exits (and so does ankanet-run).
    auto run = std::async(std::launch::async, [&] {
        return run_command(ankanet_run({"--forward", std::to_string(port) + ":8080"},
                                       {"socat", "-T5", "TCP-LISTEN:8080,reuseaddr", "SYSTEM:echo " + body}));
    });
    std::string got;
    // Until socat listens, the forward's connection into the namespace is refused and closes empty.
    for (int attempt = 0; attempt < 100 && got.find(body) == std::string::npos; ++attempt) {
        got = read_from_loopback(port);
        if (got.find(body) == std::string::npos) std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
    CHECK(got.find(body) != std::string::npos);
    const auto ended = run.get(); // bounded: run_command's timeout
    INFO(ended.output);
    CHECK(ended.status == 0);
}

TEST_CASE("ankanet-run: a bad option or value is one line, exit status 2, and nothing runs") {
    // No root needed: the command line is refused before anything is set up.
    temp_dir dir{"ankanet-run-e2e"};
    const auto marker = (dir / "ran").string();
    for (const auto& options : std::vector<std::vector<std::string>>{{"--bogus"},
                                                                      {"--egress", "nowhere"},
                                                                      {"--dns-upstream", "not-an-address"},
                                                                      {"--forward", "99999:80"},
                                                                      {"--forward", "8080:80@vm2"},
                                                                      {"--forward", "8080:80", "8081:81"},
                                                                      {"--mtu", "100"}}) {
        const auto run = run_command(ankanet_run(options, {"touch", marker}));
        INFO(options.front() << ": " << run.output);
        CHECK(run.status == 2);
        CHECK(std::count(run.output.begin(), run.output.end(), '\n') == 1);
        CHECK(run.output.find("see ankanet-run --help") != std::string::npos);
        CHECK_FALSE(std::filesystem::exists(marker));
    }
    const auto none = run_command({ANKANET_RUN_PATH, "--egress", "127.0.0.0/8"});
    CHECK(none.status == 2);
    const auto help = run_command({ANKANET_RUN_PATH, "--help"});
    CHECK(help.status == 0);
    for (const auto* option : {"--egress", "--dns-upstream", "--forward", "--mtu", "--pcap", "--version", "-- COMMAND"}) {
        CHECK(help.output.find(option) != std::string::npos);
    }
    const auto version = run_command({ANKANET_RUN_PATH, "--version"});
    CHECK(version.status == 0);
    CHECK(version.output.starts_with("ankanet-run "));
}

TEST_CASE("ankanet-run unprivileged (nobody, via a user namespace): curl fetches the page from host loopback") {
    REQUIRE_ROOT_AND_TUN(); // root only to become nobody with setpriv
    const auto max_namespaces = read_text("/proc/sys/user/max_user_namespaces");
    ANKANET_REQUIRE_ENVIRONMENT(!max_namespaces.empty() && std::stol(max_namespaces) > 0,
                                "user namespaces are disabled (user.max_user_namespaces is 0)");
    const auto clone = read_text("/proc/sys/kernel/unprivileged_userns_clone"); // Debian's switch, where it exists
    ANKANET_REQUIRE_ENVIRONMENT(clone.empty() || clone.front() != '0',
                                "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone is 0)");
    ANKANET_REQUIRE_ENVIRONMENT(std::system("command -v setpriv >/dev/null") == 0, "setpriv (util-linux) is not installed");
    // A copy nobody can execute, whatever the build directory's permissions.
    temp_dir dir{"ankanet-run-e2e"};
    std::filesystem::permissions(dir.path, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                                               std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                                               std::filesystem::perms::others_exec);
    const auto binary = (dir / "ankanet-run").string();
    std::filesystem::copy_file(ANKANET_RUN_PATH, binary);
    ::chmod(binary.c_str(), 0755);
    const auto body = unique_text("page-for-nobody");
    loopback_web_server server{body};
    const auto url = "http://192.168.64.1:" + std::to_string(server.port()) + "/";
    auto argv = ankanet_run({}, {"sh", "-c", "id -u; curl -sS --max-time 5 " + url}, binary);
    argv.insert(argv.begin(), {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "TMPDIR=/tmp"});
    const auto run = run_command(argv);
    INFO(run.output);
    REQUIRE(run.status == 0);
    CHECK(run.output.find(body) != std::string::npos);
    CHECK(run.output.starts_with("0\n")); // root inside its own user namespace
    // And outside, the caller was nobody: the same command without ankanet-run says so.
    CHECK(run_command({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "id", "-u"}).output == "65534\n");
}
