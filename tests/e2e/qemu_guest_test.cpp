// End to end: a real QEMU guest (TCG, no KVM) whose virtio-net NIC is wired to an ankanet backend.
//
// The guest is Debian's kernel with a busybox initramfs built at test time by
// tests/e2e/guest/make-initramfs.sh; its /init (tests/e2e/guest/init) sets eth0 to
// 192.168.64.2/24, pings 192.168.64.1 three times and powers off. This test is 192.168.64.1: it
// answers the guest's ARP request and echo requests with frames built by wire::arp, wire::ipv4 and
// wire::icmp, through (1) qemu_stream_server, QEMU connecting with `-netdev stream`, and (2)
// unix_dgram_endpoint, with `-netdev dgram` over unix paths. It checks that the guest's frames
// arrived with the MAC given to QEMU, and that the guest saw every ping answered.
//
// With the daemon built (ANKANETD_PATH), two more cases put the guest on a real ankanetd network
// (issue 6) beside a network-namespace guest: ankanetd --qemu-socket (QEMU `-netdev stream`) or
// --dgram-socket (`-netdev dgram`) plus --netns NS,mac=52:54:00:00:00:50 with that MAC reserved
// 192.168.64.50. The namespace guest gets its lease with udhcpc (tests/support/dhcp_clients.hpp)
// and listens with busybox nc; the QEMU guest, booted with `ankanet.dhcp=1 ankanet.peer=...
// ankanet.tcp=...`, gets its lease from ankanetd with busybox udhcpc, pings the gateway and the
// namespace guest, and exchanges a line each way over TCP with it. The test checks the guest's
// console, the listener's output, the namespace's neighbour entry for the guest and the daemon's
// log (the QEMU port registered the guest's MAC from its first frame; both leases).
//
// No traffic leaves the machine: the guest's only NIC is the socket, and the test (or ankanetd,
// whose other guest is a namespace the test made) answers for every address it reaches. Each test
// case is bounded (case_time_limit); QEMU is killed if it overruns, and dies with the test process
// (PR_SET_PDEATHSIG). Needs qemu-system-x86_64, a kernel with its modules (linux-image-amd64),
// busybox-static and cpio, and for the ankanetd cases root and /dev/net/tun; skipped without them,
// failed in CI.
#include <ankanet/backend/qemu_stream.hpp>
#include <ankanet/backend/unix_dgram.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>

#include "../support/skip.hpp"
#ifdef ANKANETD_PATH
#include "../support/ankanetd_process.hpp"
#include "../support/dhcp_clients.hpp"
#include "../support/netns.hpp"
#endif

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>
#include "../support/temp_dir.hpp"

using namespace ankanet;
using namespace ankanet::backend;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

using ankanet::test::temp_dir;
using ankanet::test::read_text;

namespace {

using bytes = std::vector<std::byte>;
using clock_type = std::chrono::steady_clock;

/// The bound on one test case, initramfs build included; QEMU is killed when it is reached.
/// (A run takes 8-35 s here: the guest's first frame comes 5-30 s after QEMU starts under TCG.)
/// The ankanetd cases take about as long (10-16 s): the guest's DHCP, second ping and TCP line
/// cost 2-3 s of guest time, the namespace guest's lease 1-3 s before QEMU starts.
constexpr auto case_time_limit = 110s;
constexpr auto initramfs_time_limit = 30s;

const wire::mac_address guest_mac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
const wire::mac_address gateway_mac{{0x02, 0x00, 0x00, 0x64, 0x00, 0x01}}; // locally administered
const wire::ipv4_address guest_ip{192, 168, 64, 2};
const wire::ipv4_address gateway_ip{192, 168, 64, 1};std::optional<fs::path> find_in_path(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::stringstream dirs{path != nullptr ? path : "/usr/bin:/bin"};
    for (std::string dir; std::getline(dirs, dir, ':');) {
        const fs::path candidate = fs::path{dir} / name;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return std::nullopt;
}

/// A child process with its output in a log file; killed and reaped when destroyed.
class child_process {
public:
    child_process(const std::vector<std::string>& argv, const fs::path& log) {
        std::vector<char*> args;
        for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
        args.push_back(nullptr);
        const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        REQUIRE(out >= 0);
        REQUIRE(in >= 0);
        const pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ == 0) {
            // Only async-signal-safe calls until exec.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL); // never outlive the test
            if (::getppid() != parent) ::_exit(126);
            ::dup2(in, 0);
            ::dup2(out, 1);
            ::dup2(out, 2);
            ::execvp(args[0], args.data());
            ::_exit(127);
        }
        ::close(out);
        ::close(in);
        REQUIRE(pid_ > 0);
    }
    ~child_process() {
        if (pid_ > 0 && !status_) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
    }
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    /// The exit status once the process has ended (without waiting).
    std::optional<int> poll() {
        if (!status_) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) status_ = status;
        }
        return status_;
    }
    /// Waits up to `limit`; kills the process when it runs longer.
    std::optional<int> wait_for(std::chrono::milliseconds limit) {
        const auto deadline = clock_type::now() + limit;
        while (!poll() && clock_type::now() < deadline) ::usleep(20000);
        return poll();
    }
    static bool exited_zero(std::optional<int> status) { return status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0; }

private:
    pid_t pid_ = -1;
    std::optional<int> status_;
};

/// What the guest needs: found on this machine, or why not.
struct guest_environment {
    fs::path qemu;
    fs::path kernel;
    std::string kernel_version;
    fs::path make_initramfs;
    std::string missing;

    static guest_environment discover() {
        guest_environment env;
        env.make_initramfs = fs::path{__FILE__}.parent_path() / "guest" / "make-initramfs.sh";
        if (auto qemu = find_in_path("qemu-system-x86_64")) {
            env.qemu = *qemu;
        } else {
            env.missing = "qemu-system-x86_64 (apt-get install qemu-system-x86)";
            return env;
        }
        if (!find_in_path("cpio")) {
            env.missing = "cpio (apt-get install cpio)";
            return env;
        }
        if (::access("/bin/busybox", X_OK) != 0) {
            env.missing = "/bin/busybox (apt-get install busybox-static)";
            return env;
        }
        // The newest /boot/vmlinuz-VERSION whose modules are installed (ANKANET_GUEST_KERNEL overrides).
        std::vector<fs::path> kernels;
        if (const char* given = std::getenv("ANKANET_GUEST_KERNEL")) {
            kernels.emplace_back(given);
        } else {
            std::error_code ec;
            for (const auto& entry : fs::directory_iterator{"/boot", ec}) {
                if (entry.path().filename().string().rfind("vmlinuz-", 0) == 0) kernels.push_back(entry.path());
            }
            std::sort(kernels.rbegin(), kernels.rend());
        }
        for (const auto& kernel : kernels) {
            const std::string version = kernel.filename().string().substr(std::string{"vmlinuz-"}.size());
            if (fs::exists(fs::path{"/lib/modules"} / version / "modules.dep") && ::access(kernel.c_str(), R_OK) == 0) {
                env.kernel = kernel;
                env.kernel_version = version;
                break;
            }
        }
        if (env.kernel.empty()) env.missing = "a readable /boot/vmlinuz-* with its /lib/modules (apt-get install linux-image-amd64)";
        return env;
    }
};

/// Plays 192.168.64.1: answers ARP for it and ICMP echo requests to it; records what the guest sent.
struct gateway_responder {
    std::size_t arp_requests = 0;
    std::size_t echo_requests = 0;
    std::size_t frames = 0;
    std::size_t frames_from_other_macs = 0;
    std::vector<wire::mac_address> arp_sender_macs;
    std::optional<clock_type::time_point> first_frame;

    /// The reply to `frame`, if it calls for one.
    std::optional<bytes> handle(wire::const_bytes frame) {
        ++frames;
        if (!first_frame) first_frame = clock_type::now();
        auto ethernet = wire::ethernet::repr::parse(frame);
        if (!ethernet) return std::nullopt;
        if (ethernet->source != guest_mac) ++frames_from_other_macs;
        const auto payload = wire::ethernet::packet<wire::const_bytes>{frame}.payload();
        if (ethernet->ethertype == wire::ethernet::ethertype::arp) return answer_arp(*ethernet, payload);
        if (ethernet->ethertype == wire::ethernet::ethertype::ipv4) return answer_ping(*ethernet, payload);
        return std::nullopt;
    }

private:
    std::optional<bytes> answer_arp(const wire::ethernet::repr&, wire::const_bytes payload) {
        auto request = wire::arp::repr::parse(payload);
        if (!request || request->operation != wire::arp::operation::request || request->target_ip != gateway_ip) {
            return std::nullopt;
        }
        ++arp_requests;
        arp_sender_macs.push_back(request->sender_mac);
        bytes reply(wire::ethernet::min_frame_len);
        const wire::ethernet::repr header{gateway_mac, request->sender_mac, wire::ethernet::ethertype::arp, std::nullopt};
        REQUIRE_FALSE(header.emit(reply));
        REQUIRE_FALSE(request->reply_from(gateway_mac).emit(wire::mutable_bytes{reply}.subspan(header.buffer_len())));
        return reply;
    }

    std::optional<bytes> answer_ping(const wire::ethernet::repr& ethernet, wire::const_bytes payload) {
        auto ip = wire::ipv4::repr::parse(payload);
        if (!ip || ip->destination != gateway_ip || ip->protocol != wire::ipv4::protocol::icmp || ip->more_fragments ||
            ip->fragment_offset != 0) {
            return std::nullopt;
        }
        const auto message = wire::ipv4::packet<wire::const_bytes>{payload}.payload();
        auto icmp = wire::icmp::repr::parse(message);
        if (!icmp) return std::nullopt;
        const auto* echo = std::get_if<wire::icmp::echo_request>(&icmp->message);
        if (echo == nullptr) return std::nullopt;
        ++echo_requests;

        const wire::icmp::repr answer{wire::icmp::echo_reply{echo->identifier, echo->sequence, echo->data}};
        wire::ipv4::repr header;
        header.source = gateway_ip;
        header.destination = ip->source;
        header.protocol = wire::ipv4::protocol::icmp;
        header.payload_len = answer.buffer_len();
        const wire::ethernet::repr link{gateway_mac, ethernet.source, wire::ethernet::ethertype::ipv4, std::nullopt};
        const std::size_t length = link.buffer_len() + header.buffer_len() + answer.buffer_len();
        bytes reply(std::max(length, wire::ethernet::min_frame_len));
        wire::mutable_bytes out{reply};
        REQUIRE_FALSE(link.emit(out));
        REQUIRE_FALSE(header.emit(out.subspan(link.buffer_len())));
        REQUIRE_FALSE(answer.emit(out.subspan(link.buffer_len() + header.buffer_len())));
        return reply;
    }
};

/// Receives frames from a backend until it fails, answering through the responder.
template <class Backend>
struct serve_loop {
    serve_loop(Backend& b, gateway_responder& r) : backend(b), responder(r) {}
    serve_loop(const serve_loop&) = delete;
    serve_loop& operator=(const serve_loop&) = delete;

    Backend& backend;
    gateway_responder& responder;
    bytes buffer = bytes(max_frame_len(default_mtu));
    std::error_code ended;
    std::size_t send_errors = 0;

    void start() {
        backend.async_receive(buffer, [this](std::error_code ec, std::size_t n) {
            if (ec) {
                ended = ec;
                return;
            }
            if (auto reply = responder.handle(wire::const_bytes{buffer}.first(n))) {
                if (backend.send(*reply)) ++send_errors;
            }
            start();
        });
    }
};

/// Builds the initramfs into `dir`.
fs::path build_initramfs(const guest_environment& env, const fs::path& dir) {
    const fs::path output = dir / "initramfs.cpio.gz";
    child_process script{{"sh", env.make_initramfs.string(), output.string(), env.kernel_version}, dir / "make-initramfs.log"};
    const auto status = script.wait_for(initramfs_time_limit);
    INFO("make-initramfs.sh output:\n" << read_text(dir / "make-initramfs.log"));
    REQUIRE(child_process::exited_zero(status));
    return output;
}

/// `guest_options`: kernel command-line parameters for the guest's /init (ankanet.dhcp=1 ...).
std::vector<std::string> qemu_command(const guest_environment& env, const fs::path& initramfs, const fs::path& console,
                                      const std::string& netdev, const std::string& guest_options = {}) {
    return {env.qemu.string(),
            "-machine", "pc,accel=tcg",
            "-cpu", "max",
            "-m", "256",
            "-smp", "1",
            "-nodefaults", "-no-user-config",
            "-display", "none",
            "-no-reboot",
            "-serial", "file:" + console.string(),
            "-kernel", env.kernel.string(),
            "-initrd", initramfs.string(),
            "-append", "console=ttyS0 quiet panic=-1 ipv6.disable=1" + (guest_options.empty() ? "" : " " + guest_options),
            // romfile= : no iPXE option ROM, the guest boots its kernel directly.
            "-device", "virtio-net-pci,netdev=n0,mac=" + wire::to_string(guest_mac) + ",romfile=",
            "-netdev", netdev};
}

struct guest_run {
    std::optional<int> status;
    double seconds = 0;
    double first_frame_seconds = -1;
    std::string console;
    std::string qemu_log;
};

/// Runs QEMU until it exits or the deadline passes, calling `step` (which should take a few tens of
/// milliseconds) while it runs.
guest_run run_qemu(const std::vector<std::string>& command, const fs::path& dir, clock_type::time_point deadline,
                   const std::function<void()>& step) {
    const auto started = clock_type::now();
    guest_run run;
    {
        child_process qemu{command, dir / "qemu.log"};
        while (!qemu.poll() && clock_type::now() < deadline) step();
        run.status = qemu.poll(); // killed by the destructor when still running
    }
    run.seconds = std::chrono::duration<double>(clock_type::now() - started).count();
    run.console = read_text(dir / "console.log");
    run.qemu_log = read_text(dir / "qemu.log");
    return run;
}

/// Runs QEMU and the io_context together until QEMU exits or the deadline passes.
guest_run run_guest(boost::asio::io_context& io, const std::vector<std::string>& command, const fs::path& dir,
                    const gateway_responder& responder, clock_type::time_point deadline) {
    const auto started = clock_type::now();
    auto run = run_qemu(command, dir, deadline, [&io] {
        io.restart();
        if (io.run_for(50ms) == 0) std::this_thread::sleep_for(10ms); // no work at all: do not spin
    });
    io.restart();
    io.poll(); // last frames
    if (responder.first_frame) run.first_frame_seconds = std::chrono::duration<double>(*responder.first_frame - started).count();
    return run;
}

void report(const char* kind, const guest_run& run) {
    if (!run.status) {
        std::printf("qemu guest (%s): killed after %.1f s without powering off\n", kind, run.seconds);
        return;
    }
    if (run.first_frame_seconds < 0) {
        std::printf("qemu guest (%s): %.1f s from QEMU start to power-off\n", kind, run.seconds);
        return;
    }
    std::printf("qemu guest (%s): %.1f s from QEMU start to power-off; first frame after %.1f s\n", kind, run.seconds,
                run.first_frame_seconds);
}

void check_guest(const guest_run& run, const gateway_responder& responder) {
    INFO("serial console:\n" << run.console);
    INFO("QEMU output:\n" << run.qemu_log);
    REQUIRE(run.status); // powered off in time
    CHECK(child_process::exited_zero(run.status));
    // (a) The guest's frames arrived, with the MAC QEMU was given.
    CHECK(responder.arp_requests >= 1);
    for (const auto& mac : responder.arp_sender_macs) CHECK(mac == guest_mac);
    CHECK(responder.echo_requests >= 3);
    CHECK(responder.frames_from_other_macs == 0);
    // (b) The guest saw its pings answered.
    CHECK(run.console.find("ANKANET-E2E: eth0 " + wire::to_string(guest_mac)) != std::string::npos);
    CHECK(run.console.find("3 packets transmitted, 3 packets received, 0% packet loss") != std::string::npos);
    CHECK(run.console.find("ANKANET-E2E: PING OK") != std::string::npos);
}

} // namespace

TEST_CASE("qemu guest: virtio-net over -netdev stream to qemu_stream_server answers ARP and ping") {
    const auto env = guest_environment::discover();
    ANKANET_REQUIRE_ENVIRONMENT(env.missing.empty(), "the QEMU guest test needs " << env.missing);
    const auto deadline = clock_type::now() + case_time_limit;
    temp_dir dir;
    const auto initramfs = build_initramfs(env, dir.path);

    boost::asio::io_context io;
    gateway_responder responder;
    std::optional<qemu_stream_connection> vm;
    std::optional<serve_loop<qemu_stream_connection>> loop;
    std::size_t connections = 0;
    const fs::path socket_path = dir.path / "net.sock";
    auto server = qemu_stream_server::listen(io.get_executor(), socket_path, [&](qemu_stream_connection connection) {
        if (++connections > 1) return; // one NIC, one connection
        vm.emplace(std::move(connection));
        loop.emplace(*vm, responder);
        loop->start();
    });
    REQUIRE(server);

    const auto run = run_guest(
        io, qemu_command(env, initramfs, dir.path / "console.log", "stream,id=n0,server=off,addr.type=unix,addr.path=" + socket_path.string()),
        dir.path, responder, deadline);
    report("stream", run);
    check_guest(run, responder);
    CHECK(connections == 1);
    REQUIRE(vm);
    const auto stats = vm->stats();
    CHECK(stats.rx_runt == 0);
    CHECK(stats.rx_oversize == 0);
    CHECK(stats.tx_dropped == 0);
    CHECK(stats.tx_frames == responder.arp_requests + responder.echo_requests);
    CHECK(loop->send_errors == 0);
    CHECK(loop->ended == errc::peer_closed); // QEMU exited: end of stream
}

TEST_CASE("qemu guest: virtio-net over -netdev dgram to unix_dgram_endpoint answers ARP and ping") {
    const auto env = guest_environment::discover();
    ANKANET_REQUIRE_ENVIRONMENT(env.missing.empty(), "the QEMU guest test needs " << env.missing);
    const auto deadline = clock_type::now() + case_time_limit;
    temp_dir dir;
    const auto initramfs = build_initramfs(env, dir.path);

    boost::asio::io_context io;
    gateway_responder responder;
    const fs::path ours = dir.path / "ankanet.sock";
    const fs::path theirs = dir.path / "qemu.sock";
    auto vm = unix_dgram_endpoint::bind(io.get_executor(), ours, theirs);
    REQUIRE(vm);
    serve_loop<unix_dgram_endpoint> loop{*vm, responder};
    loop.start();

    const auto run = run_guest(io,
                               qemu_command(env, initramfs, dir.path / "console.log",
                                            "dgram,id=n0,local.type=unix,local.path=" + theirs.string() +
                                                ",remote.type=unix,remote.path=" + ours.string()),
                               dir.path, responder, deadline);
    report("dgram", run);
    check_guest(run, responder);
    const auto stats = vm->stats();
    CHECK(stats.rx_runt == 0);
    CHECK(stats.rx_oversize == 0);
    CHECK(vm->rx_foreign() == 0);
    CHECK(stats.tx_dropped == 0);
    CHECK(stats.tx_frames == responder.arp_requests + responder.echo_requests);
    CHECK(loop.send_errors == 0);
    CHECK_FALSE(loop.ended); // a datagram socket has no end of stream: still receiving
    vm->close();
    io.restart();
    io.run_for(1s);
    CHECK(loop.ended == std::errc::operation_canceled);
}

#ifdef ANKANETD_PATH

namespace {

using ankanet::test::command_result;
using ankanet::test::daemon_process;
using ankanet::test::dhcp_client_kind;
using ankanet::test::run_in;
using ankanet::test::scoped_netns;

/// How the QEMU guest reaches ankanetd.
enum class daemon_link { stream, dgram };

const wire::mac_address namespace_mac{{0x52, 0x54, 0x00, 0x00, 0x00, 0x50}};
const std::string namespace_ip = "192.168.64.50"; // reserved for namespace_mac
constexpr int tcp_port = 5001;
const std::string namespace_reply = "hello from the namespace guest";
const std::string guest_line = "hello from the qemu guest over ankanet"; // what the guest's /init sends

/// The whole seconds left until `deadline`, at least 1.
std::chrono::seconds seconds_left(clock_type::time_point deadline) {
    return std::max(1s, std::chrono::duration_cast<std::chrono::seconds>(deadline - clock_type::now()));
}

/// Waits (bounded) until `text` appears in the daemon's log.
bool wait_for_log(const daemon_process& daemon, const std::string& text, std::chrono::milliseconds limit) {
    const auto until = clock_type::now() + limit;
    while (daemon.log().find(text) == std::string::npos) {
        if (clock_type::now() >= until) return false;
        std::this_thread::sleep_for(20ms);
    }
    return true;
}

/// The rest of the console line that starts with `marker`, without it; nullopt when there is none.
std::optional<std::string> console_line(const std::string& console, const std::string& marker) {
    const auto at = console.find(marker);
    if (at == std::string::npos) return std::nullopt;
    const auto from = at + marker.size();
    const auto end = console.find_first_of("\r\n", from);
    return console.substr(from, end == std::string::npos ? std::string::npos : end - from);
}

std::size_t count_of(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
    return n;
}

/// `busybox nc -l` inside a namespace, answering one connection with namespace_reply and printing
/// what it received. Ended by a local connection if nobody else has come (so a failed guest does not
/// leave it waiting until its time limit), before the namespace goes.
class tcp_listener {
public:
    tcp_listener(const scoped_netns& ns, std::chrono::seconds limit)
        : ns_(ns), done_(std::async(std::launch::async, [&ns, limit] {
              return run_in(ns, "echo '" + namespace_reply + "' | busybox nc -l -p " + std::to_string(tcp_port), limit);
          })) {}
    tcp_listener(const tcp_listener&) = delete;
    tcp_listener& operator=(const tcp_listener&) = delete;
    ~tcp_listener() {
        if (!done_.valid()) return;
        try {
            (void)finish();
        } catch (...) {
            // The test has failed already; nothing more to do in a destructor.
        }
    }

    /// Waits (bounded) until the port is in LISTEN state: hex port, state 0A in /proc/net/tcp, or
    /// tcp6 (busybox nc listens on a dual-stack socket when the kernel has IPv6).
    bool wait_until_listening(std::chrono::milliseconds limit) const {
        char pattern[32];
        std::snprintf(pattern, sizeof pattern, ":%04X 0+:0000 0A", static_cast<unsigned>(tcp_port));
        const auto until = clock_type::now() + limit;
        while (run_in(ns_, std::string{"grep -qsE '"} + pattern + "' /proc/net/tcp /proc/net/tcp6", 5s).status != 0) {
            if (clock_type::now() >= until) return false;
            std::this_thread::sleep_for(50ms);
        }
        return true;
    }

    /// What the listener printed (the line it received) and its exit status.
    command_result finish() {
        if (done_.wait_for(2s) != std::future_status::ready) {
            run_in(ns_, "echo | busybox nc -w 2 127.0.0.1 " + std::to_string(tcp_port), 5s);
        }
        return done_.get();
    }

private:
    const scoped_netns& ns_;
    std::future<command_result> done_;
};

void run_daemon_case(daemon_link link) {
    const auto env = guest_environment::discover();
    ANKANET_REQUIRE_ENVIRONMENT(env.missing.empty(), "the QEMU guest test needs " << env.missing);
    const auto missing = ankanet::test::missing_netns_requirements();
    ANKANET_REQUIRE_ENVIRONMENT(missing.empty(), "the QEMU guest test with ankanetd needs " << missing);
    ANKANET_REQUIRE_ENVIRONMENT(!ankanet::test::detail::client_program(dhcp_client_kind::udhcpc).empty(),
                                "the QEMU guest test with ankanetd needs udhcpc (busybox) for its namespace guest");
    const bool stream = link == daemon_link::stream;
    const char* kind = stream ? "ankanetd --qemu-socket" : "ankanetd --dgram-socket";
    const auto started = clock_type::now();
    const auto deadline = started + case_time_limit;
    temp_dir dir;
    const auto initramfs = build_initramfs(env, dir.path);

    // ankanetd with the namespace guest (its MAC reserved 192.168.64.50) and the QEMU guest's socket.
    scoped_netns ns;
    const fs::path socket_path = dir.path / (stream ? "ankanetd.sock" : "ankanetd.dgram");
    const fs::path qemu_path = dir.path / "qemu.dgram";
    daemon_process daemon{{"--netns", ns.path() + ",mac=" + wire::to_string(namespace_mac), "--reserve",
                           wire::to_string(namespace_mac) + "=" + namespace_ip, stream ? "--qemu-socket" : "--dgram-socket",
                           socket_path.string()}};
    const std::string port_name = stream ? "qemu:" + socket_path.string() + "#1" : "dgram:" + socket_path.string();
    const std::string ready = stream ? "listening for QEMU -netdev stream on " + socket_path.string() : "attached " + port_name;
    {
        const bool up = ankanet::test::wait_for_interface(ns, "eth0") && wait_for_log(daemon, ready, 10s);
        INFO("--- daemon log ---\n" << daemon.log());
        REQUIRE(up);
    }

    // The namespace guest: its lease (by DHCP: the reserved address), then a listener.
    run_in(ns, "ip link set lo up");
    const auto leased = ankanet::test::obtain_lease(ns, "eth0", dhcp_client_kind::udhcpc, 20s);
    {
        INFO("udhcpc in the namespace:\n" << leased.output << "\n--- daemon log ---\n" << daemon.log());
        REQUIRE(leased.lease);
        CHECK(leased.lease->address == namespace_ip);
        CHECK(leased.lease->server_id == "192.168.64.1");
    }
    tcp_listener listener{ns, seconds_left(deadline)};
    REQUIRE(listener.wait_until_listening(10s));
    const double setup_seconds = std::chrono::duration<double>(clock_type::now() - started).count();

    // The QEMU guest: DHCP, ping the gateway and the namespace guest, one line each way over TCP.
    const std::string netdev = stream ? "stream,id=n0,server=off,addr.type=unix,addr.path=" + socket_path.string()
                                      : "dgram,id=n0,local.type=unix,local.path=" + qemu_path.string() +
                                            ",remote.type=unix,remote.path=" + socket_path.string();
    const std::string guest_options = "ankanet.dhcp=1 ankanet.peer=" + namespace_ip + " ankanet.tcp=" + namespace_ip + ":" +
                                      std::to_string(tcp_port);
    const auto run = run_qemu(qemu_command(env, initramfs, dir.path / "console.log", netdev, guest_options), dir.path, deadline,
                              [] { std::this_thread::sleep_for(50ms); });
    const auto received = listener.finish();
    report(kind, run);
    std::printf("qemu guest (%s): %.1f s of setup before QEMU (initramfs, daemon, namespace lease)\n", kind, setup_seconds);

    INFO("serial console:\n" << run.console);
    INFO("QEMU output:\n" << run.qemu_log);
    REQUIRE(run.status); // powered off in time
    CHECK(child_process::exited_zero(run.status));
    CHECK(run.console.find("ANKANET-E2E: eth0 " + wire::to_string(guest_mac)) != std::string::npos);

    // (a) Its lease, from ankanetd's pool: "IP/24 server 192.168.64.1 router 192.168.64.1 time 3600".
    const auto lease = console_line(run.console, "ANKANET-E2E: lease ");
    REQUIRE(lease);
    std::istringstream words{*lease};
    std::string address_prefix, server_word, server, router_word, router, time_word, lease_time;
    words >> address_prefix >> server_word >> server >> router_word >> router >> time_word >> lease_time;
    const auto slash = address_prefix.find('/');
    REQUIRE(slash != std::string::npos);
    const std::string guest_address = address_prefix.substr(0, slash);
    const auto parsed = wire::ipv4_address::parse(guest_address);
    REQUIRE(parsed);
    const auto host_part = parsed->to_u32() & 0xffu;
    CHECK((parsed->to_u32() & 0xffffff00u) == (gateway_ip.to_u32() & 0xffffff00u)); // in 192.168.64.0/24
    CHECK(host_part >= 2);
    CHECK(host_part <= 254);
    CHECK(guest_address != namespace_ip); // reserved for the namespace guest
    CHECK(address_prefix.substr(slash) == "/24");
    CHECK(server_word == "server");
    CHECK(server == "192.168.64.1");
    CHECK(router_word == "router");
    CHECK(router == "192.168.64.1");
    CHECK(time_word == "time");
    CHECK(lease_time == "3600");

    // (b) Pings: the gateway (ankanetd's responder) and the namespace guest (through the switch).
    CHECK(run.console.find("ANKANET-E2E: PING OK") != std::string::npos);
    CHECK(run.console.find("ANKANET-E2E: PING PEER " + namespace_ip + " OK") != std::string::npos);
    CHECK(count_of(run.console, "3 packets transmitted, 3 packets received, 0% packet loss") == 2);

    // (c) TCP both ways between the guests.
    CHECK(run.console.find("ANKANET-E2E: TCP REPLY " + namespace_reply) != std::string::npos);
    INFO("namespace listener (status " << received.status << "):\n" << received.output);
    CHECK(received.status == 0);
    CHECK(received.output.find(guest_line) != std::string::npos);

    // (d) The namespace guest learned the QEMU guest's address at the MAC QEMU was given.
    const auto neighbour = run_in(ns, "ip neigh show " + guest_address).output;
    INFO("namespace neighbour entry: " << neighbour);
    CHECK(neighbour.find("lladdr " + wire::to_string(guest_mac)) != std::string::npos);

    // (e) ankanetd: the port registered the guest's MAC from its first frame; both leases; clean exit.
    CHECK(daemon.stop(SIGTERM) == 0);
    const auto log = daemon.log();
    INFO("--- daemon log ---\n" << log);
    CHECK(log.find("attached " + port_name + " (mtu 1500, mac from first frame)") != std::string::npos);
    CHECK(log.find(port_name + ": registered MAC " + wire::to_string(guest_mac) + " from its first frame") != std::string::npos);
    CHECK(log.find("DHCP leased " + guest_address + " to " + wire::to_string(guest_mac) + " (ankanet-qemu)") != std::string::npos);
    CHECK(log.find("DHCP leased " + namespace_ip + " to " + wire::to_string(namespace_mac)) != std::string::npos);
    CHECK(log.find("refused") == std::string::npos);
    CHECK(log.find("ARP dropped") == std::string::npos);
    CHECK(log.find("2 acks 0 naks") != std::string::npos);
    const auto detached = console_line(log, "ankanetd: detached " + port_name + " (");
    REQUIRE(detached); // QEMU hung up (stream) or the daemon closed the port on SIGTERM (dgram)
    CHECK(detached->find("dropped rx 0 runt 0 oversize") != std::string::npos);
}

} // namespace

TEST_CASE("qemu guest: on ankanetd --qemu-socket gets a DHCP lease and reaches the gateway and a namespace guest by ping and TCP") {
    run_daemon_case(daemon_link::stream);
}

TEST_CASE("qemu guest: on ankanetd --dgram-socket gets a DHCP lease and reaches the gateway and a namespace guest by ping and TCP") {
    run_daemon_case(daemon_link::dgram);
}

#endif // ANKANETD_PATH
