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
// No traffic leaves the machine: the guest's only NIC is the socket, and the test answers for the
// one address it pings. Each test case is bounded (case_time_limit); QEMU is killed if it overruns, and
// dies with the test process (PR_SET_PDEATHSIG). Needs qemu-system-x86_64, a kernel with its
// modules (linux-image-amd64), busybox-static and cpio; skipped without them, failed in CI.
#include <ankanet/backend/qemu_stream.hpp>
#include <ankanet/backend/unix_dgram.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>

#include "../support/skip.hpp"

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
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace ankanet;
using namespace ankanet::backend;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using bytes = std::vector<std::byte>;
using clock_type = std::chrono::steady_clock;

/// The bound on one test case, initramfs build included; QEMU is killed when it is reached.
/// (A run takes 12-35 s here: the guest's first frame comes 10-30 s after QEMU starts under TCG.)
constexpr auto case_time_limit = 110s;
constexpr auto initramfs_time_limit = 30s;

const wire::mac_address guest_mac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
const wire::mac_address gateway_mac{{0x02, 0x00, 0x00, 0x64, 0x00, 0x01}}; // locally administered
const wire::ipv4_address guest_ip{192, 168, 64, 2};
const wire::ipv4_address gateway_ip{192, 168, 64, 1};

struct temp_dir {
    fs::path path;
    temp_dir() {
        std::string pattern = (fs::temp_directory_path() / "ankanet-e2e-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~temp_dir() {
        std::error_code ignored;
        fs::remove_all(path, ignored);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
};

std::string read_text(const fs::path& path) {
    std::ifstream in{path};
    return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

std::optional<fs::path> find_in_path(const std::string& name) {
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

std::vector<std::string> qemu_command(const guest_environment& env, const fs::path& initramfs, const fs::path& console,
                                      const std::string& netdev) {
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
            "-append", "console=ttyS0 quiet panic=-1 ipv6.disable=1",
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

/// Runs QEMU and the io_context together until QEMU exits or the deadline passes.
guest_run run_guest(boost::asio::io_context& io, const std::vector<std::string>& command, const fs::path& dir,
                    const gateway_responder& responder, clock_type::time_point deadline) {
    const auto started = clock_type::now();
    guest_run run;
    {
        child_process qemu{command, dir / "qemu.log"};
        while (!qemu.poll() && clock_type::now() < deadline) {
            io.restart();
            if (io.run_for(50ms) == 0) std::this_thread::sleep_for(10ms); // no work at all: do not spin
        }
        run.status = qemu.poll(); // killed by the destructor when still running
    }
    io.restart();
    io.poll(); // last frames
    run.seconds = std::chrono::duration<double>(clock_type::now() - started).count();
    if (responder.first_frame) run.first_frame_seconds = std::chrono::duration<double>(*responder.first_frame - started).count();
    run.console = read_text(dir / "console.log");
    run.qemu_log = read_text(dir / "qemu.log");
    return run;
}

void report(const char* kind, const guest_run& run) {
    if (!run.status) {
        std::printf("qemu guest (%s): killed after %.1f s without powering off\n", kind, run.seconds);
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
