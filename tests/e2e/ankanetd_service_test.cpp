// End to end: ankanetd as a service manager runs it. A fake $NOTIFY_SOCKET (a unix datagram
// socket the test binds, by path or abstract name) receives READY=1 only once the daemon serves —
// its --netns TAP exists, its --qemu-socket listens, its --pid-file holds its pid — and STOPPING=1
// when SIGTERM stops it, after which the pid file is gone. Also: --version, --help, a usage error
// on one line pointing to --help, a --config file started as the flags would be, and --pid-file
// mistakes refused before anything is touched; --runas nobody serving a guest (DHCP, the lease
// file, TCP to host loopback) as nobody with CAP_NET_BIND_SERVICE alone; and a second ankanetd on a socket in use, refused by
// the socket's lock without the first logging a VM that came and went. The namespace case needs
// root and /dev/net/tun; it skips elsewhere and fails in CI without them. The others run anywhere.
#include "../support/ankanetd_process.hpp"
#include "../support/dhcp_clients.hpp"
#include "../support/nat_hosts.hpp"
#include "../support/netns.hpp"
#include "../support/require_guests.hpp"
#include "../support/skip.hpp"
#include "../support/temp_dir.hpp"

#include <ankanet/version.hpp>

#include <catch2/catch.hpp>

#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using ankanet::test::daemon_process;
using ankanet::test::read_text;
using ankanet::test::run_command;
using ankanet::test::run_in;
using ankanet::test::scoped_netns;
using ankanet::test::temp_dir;

/// A service manager's notification socket: a bound unix datagram socket, by path or by abstract
/// name ('@' first, as $NOTIFY_SOCKET writes it).
class fake_notify_socket {
public:
    explicit fake_notify_socket(std::string name) : name_(std::move(name)) {
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        REQUIRE(name_.size() < sizeof address.sun_path);
        std::memcpy(address.sun_path, name_.data(), name_.size());
        const bool abstract = name_.front() == '@';
        if (abstract) address.sun_path[0] = '\0';
        const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name_.size() + (abstract ? 0 : 1));
        REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&address), length) == 0);
        // As systemd's own: anyone may send to it (a daemon that dropped root still notifies).
        if (!abstract) REQUIRE(::chmod(name_.c_str(), 0777) == 0);
    }
    fake_notify_socket(const fake_notify_socket&) = delete;
    fake_notify_socket& operator=(const fake_notify_socket&) = delete;
    ~fake_notify_socket() { ::close(fd_); }

    std::string env() const { return "NOTIFY_SOCKET=" + name_; }

    /// The next datagram, waited for at most `limit`.
    std::optional<std::string> receive(std::chrono::milliseconds limit) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return std::nullopt;
        char buffer[4096];
        const auto n = ::recv(fd_, buffer, sizeof buffer, 0);
        if (n < 0) return std::nullopt;
        return std::string(buffer, static_cast<std::size_t>(n));
    }

private:
    std::string name_;
    int fd_ = -1;
};

bool has_line(const std::string& message, const std::string& line) {
    return ("\n" + message + "\n").find("\n" + line + "\n") != std::string::npos;
}

/// The first message holding `line` that `manager` receives within 10 s (earlier ones, such as a
/// stopped daemon's STOPPING=1, are passed over).
std::optional<std::string> wait_for(fake_notify_socket& manager, const std::string& line) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        auto message = manager.receive(std::max(left, std::chrono::milliseconds{1}));
        if (message && has_line(*message, line)) return message;
    }
    return std::nullopt;
}

/// The value of `field` ("Uid", "CapEff") in /proc/PID/status, as written there.
std::string status_field(int pid, const std::string& field) {
    const auto status = read_text("/proc/" + std::to_string(pid) + "/status");
    const auto at = status.find("\n" + field + ":\t");
    if (at == std::string::npos) return {};
    const auto from = at + field.size() + 3;
    return status.substr(from, status.find('\n', from) - from);
}

/// Runs the daemon binary to its end (bounded): its status and what it printed.
ankanet::test::command_result run_daemon(const std::vector<std::string>& args) {
    std::vector<std::string> argv{ANKANETD_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, 10s);
}

} // namespace

TEST_CASE("ankanetd service: READY=1 reaches $NOTIFY_SOCKET only once the --netns TAP exists, with the pid file written, and STOPPING=1 at SIGTERM") {
    const auto missing = ankanet::test::missing_netns_requirements();
    ANKANET_REQUIRE_ENVIRONMENT(missing.empty(), missing);
    temp_dir dir;
    scoped_netns guest;
    fake_notify_socket manager{(dir / "notify").string()};
    const auto pid_file = dir / "ankanetd.pid";
    daemon_process daemon{{"--netns", guest.path(), "--pid-file", pid_file.string()}, {manager.env()}};

    const auto ready = manager.receive(10s);
    INFO(daemon.log());
    REQUIRE(ready);
    CHECK(has_line(*ready, "READY=1"));
    CHECK(ready->find("STATUS=serving 1 VM port(s) in shared mode") != std::string::npos);
    // At READY=1, everything is in place already: no waiting here.
    CHECK(run_in(guest, "ip link show eth0").status == 0);
    CHECK(read_text(pid_file) == std::to_string(daemon.pid()) + "\n");

    const int pid = daemon.pid();
    REQUIRE(::kill(pid, SIGTERM) == 0);
    const auto stopping = manager.receive(10s);
    REQUIRE(stopping);
    CHECK(has_line(*stopping, "STOPPING=1"));
    CHECK(daemon.stop(0, 10s) == 0);
    CHECK_FALSE(fs::exists(pid_file)); // removed on a clean exit
}

TEST_CASE("ankanetd service: from a --config file, READY=1 to an abstract $NOTIFY_SOCKET once the --qemu-socket listens") {
    temp_dir dir;
    const auto socket = dir / "vm.sock";
    const auto pid_file = dir / "pid";
    const auto config = dir / "ankanetd.toml";
    std::ofstream{config} << "# as --qemu-socket PATH --pid-file FILE --egress 127.0.0.0/8\n"
                          << "qemu-socket = [\"" << socket.string() << "\"]\n"
                          << "pid-file = \"" << pid_file.string() << "\"\n"
                          << "egress = \"127.0.0.0/8\"\n"
                          << "dns-upstream = [\"127.0.0.1:9\"]\n";
    fake_notify_socket manager{"@ankanetd-test-" + std::to_string(::getpid())};
    daemon_process daemon{{"--config", config.string()}, {manager.env()}};
    const auto ready = manager.receive(10s);
    INFO(daemon.log());
    REQUIRE(ready);
    CHECK(has_line(*ready, "READY=1"));
    CHECK(fs::is_socket(socket));
    CHECK(read_text(pid_file) == std::to_string(daemon.pid()) + "\n");
    CHECK(daemon.stop(SIGTERM) == 0);
    CHECK_FALSE(fs::exists(pid_file));
    CHECK(daemon.log().find("SIGTERM: shutting down") != std::string::npos);
}

TEST_CASE("ankanetd service: --pid-file in a missing directory, or naming another option's file, is refused before anything is touched") {
    temp_dir dir;
    const auto leases = dir / "leases";
    const auto pcap = dir / "capture.pcap";
    auto missing = run_daemon({"--pid-file", (dir / "no" / "pid").string(), "--leases", leases.string(), "--pcap", pcap.string(),
                               "--egress", "127.0.0.0/8", "--dns-upstream", "127.0.0.1:9"});
    INFO(missing.output);
    CHECK(missing.status == 1);
    CHECK(missing.output.find("--pid-file " + (dir / "no" / "pid").string() + ": cannot write it there") != std::string::npos);
    CHECK(std::count(missing.output.begin(), missing.output.end(), '\n') == 1);

    auto same = run_daemon({"--pid-file", leases.string(), "--leases", leases.string(), "--egress", "127.0.0.0/8"});
    INFO(same.output);
    CHECK(same.status == 2);
    CHECK(same.output == "ankanetd: --leases " + leases.string() + " and --pid-file " + leases.string() +
                             " are the same file; give each a file of its own; see ankanetd --help\n");
    CHECK(fs::is_empty(dir.path)); // no lease file, pcap, pid file or temporary file
}

TEST_CASE("ankanetd service: --version, --help, and a usage error in one line pointing to --help") {
    const auto version = run_daemon({"--version"});
    CHECK(version.status == 0);
    CHECK(version.output == std::string{"ankanetd "} + std::string{ankanet::version_string} + "\n");
    CHECK(run_daemon({"-V"}).output == version.output);

    const auto help = run_daemon({"--help"});
    CHECK(help.status == 0);
    CHECK(help.output.find("--qemu-socket") != std::string::npos);
    CHECK(help.output.find("Config file") != std::string::npos);

    const auto mistake = run_daemon({"--mtu", "70000"});
    CHECK(mistake.status == 2);
    CHECK(mistake.output == "ankanetd: --mtu: '70000' is not a number from 576 to 65520; see ankanetd --help\n");
    const auto unknown = run_daemon({"--colour"});
    CHECK(unknown.status == 2);
    CHECK(unknown.output == "ankanetd: unknown argument '--colour'; see ankanetd --help\n");
}

TEST_CASE("ankanetd service: a second ankanetd on a --qemu-socket in use is refused by its lock, and the first logs no VM for it") {
    temp_dir dir;
    const auto socket = (dir / "vm.sock").string();
    fake_notify_socket manager{(dir / "notify").string()};
    daemon_process first{{"--qemu-socket", socket}, {manager.env()}};
    REQUIRE(wait_for(manager, "READY=1"));

    for (int i = 0; i < 2; ++i) { // refused each time, however often it is tried
        const auto second = run_daemon({"--qemu-socket", socket, "--egress", "127.0.0.0/8", "--dns-upstream", "127.0.0.1:9"});
        INFO(second.output);
        CHECK(second.status == 1);
        CHECK(second.output.find("--qemu-socket " + socket + ": another process serves it (it holds " + socket + ".lock)") !=
              std::string::npos);
    }
    CHECK(fs::is_socket(socket)); // still the first's
    CHECK(first.stop(SIGTERM) == 0);
    const auto log = first.log();
    INFO(log);
    CHECK(log.find("attached") == std::string::npos);
    CHECK(log.find("detached") == std::string::npos);

    // Once the first has stopped, the lock is free again: a new daemon serves the path.
    daemon_process third{{"--qemu-socket", socket}, {manager.env()}};
    const auto ready = wait_for(manager, "READY=1");
    INFO(third.log());
    CHECK(ready);
}

TEST_CASE("ankanetd service: --runas nobody still serves a guest (DHCP, the lease file, TCP to host loopback), as nobody with CAP_NET_BIND_SERVICE alone") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    const passwd* nobody = ::getpwnam("nobody");
    ANKANET_REQUIRE_ENVIRONMENT(nobody != nullptr, "a user 'nobody'");
    const auto uid = std::to_string(nobody->pw_uid);
    const auto gid = std::to_string(nobody->pw_gid);
    temp_dir dir;
    // The lease file and pid file are replaced in their directory, which nobody must be able to write.
    const auto state = dir / "state";
    fs::create_directories(state);
    REQUIRE(::chown(dir.path.c_str(), nobody->pw_uid, nobody->pw_gid) == 0);
    REQUIRE(::chown(state.c_str(), nobody->pw_uid, nobody->pw_gid) == 0);
    const auto leases = state / "leases";
    const auto pid_file = state / "pid";
    scoped_netns guest;
    fake_notify_socket manager{(dir / "notify").string()};
    daemon_process daemon{{"--netns", guest.path(), "--runas", "nobody", "--leases", leases.string(), "--pid-file",
                           pid_file.string()},
                          {manager.env()}};
    const auto ready = wait_for(manager, "READY=1");
    INFO(daemon.log());
    REQUIRE(ready);
    // Real, effective, saved and file system ids; only CAP_NET_BIND_SERVICE (bit 10) is left, and
    // the bounding set holds nothing more, so no later exec can regain a capability.
    CHECK(status_field(daemon.pid(), "Uid") == uid + "\t" + uid + "\t" + uid + "\t" + uid);
    CHECK(status_field(daemon.pid(), "Gid") == gid + "\t" + gid + "\t" + gid + "\t" + gid);
    CHECK(status_field(daemon.pid(), "CapEff") == "0000000000000400");
    CHECK(status_field(daemon.pid(), "CapPrm") == "0000000000000400");
    CHECK(status_field(daemon.pid(), "CapBnd") == "0000000000000400");
    CHECK(daemon.log().find("running as nobody") != std::string::npos);

    const auto got = ankanet::test::obtain_lease(guest, "eth0", ankanet::test::dhcp_client_kind::udhcpc, 20s);
    INFO(got.output);
    REQUIRE(got.lease);
    // The lease reached the file, written by nobody.
    CHECK(ankanet::test::wait_until_succeeds("grep -q ' " + got.lease->address + " ' " + leases.string()));

    const auto port = ankanet::test::free_loopback_port();
    const auto page = dir / "page";
    std::ofstream{page} << "served to a guest of an unprivileged ankanetd\n";
    ankanet::test::background_process server{"exec socat -u FILE:" + page.string() + " TCP-LISTEN:" + std::to_string(port) +
                                             ",bind=127.0.0.1,reuseaddr"};
    REQUIRE(ankanet::test::wait_until_succeeds("ss -Hltn | grep -q 127.0.0.1:" + std::to_string(port)));
    const auto fetched = run_in(guest, "timeout 10 socat -u TCP:192.168.64.1:" + std::to_string(port) + " -", 15s);
    CHECK(fetched.status == 0);
    CHECK(fetched.output == "served to a guest of an unprivileged ankanetd\n");

    CHECK(daemon.stop(SIGTERM) == 0);
    CHECK_FALSE(fs::exists(pid_file)); // removed by nobody, from nobody's directory
}

TEST_CASE("ankanetd service: --runas a user that does not exist is refused before anything is touched") {
    temp_dir dir;
    const auto run = run_daemon({"--runas", "no-such-user-ankanet", "--pid-file", (dir / "pid").string(), "--egress", "127.0.0.0/8"});
    INFO(run.output);
    CHECK(run.status == 1);
    CHECK(run.output.find("--runas no-such-user-ankanet: no user 'no-such-user-ankanet' in the user database") != std::string::npos);
    CHECK(fs::is_empty(dir.path));
}
