// dhcp_load — a DHCP load generator: many simulated clients doing DISCOVER → OFFER → REQUEST → ACK
// against one DHCP server, at a paced rate, with a per-exchange timeout; bench/dhcp_load/run.sh
// drives it against ankanetd, dnsmasq and Kea.
//
// Theory of operation.
//
// Clients. `--clients N` simulated clients, client i with the locally administered MAC
// 02:64:00:00:hi:lo (i = hi·256 + lo), the same in every run, so a server that keeps leases hands
// each client its address back and every exchange after the first is a renewal. A client has at
// most one exchange in flight; the REQUEST reuses the DISCOVER's xid, as RFC 2131 asks, and every
// exchange gets a fresh xid. Frames are the library's: ankanet::dhcp::discover_frame() and
// request_frame() build them, parse_server_reply() checks a reply at every layer (IPv4 and UDP
// checksums included).
//
// Links. A reply is matched by chaddr (which client) and xid (which of its exchanges):
//  * `--qemu-socket PATH` (repeatable): each client is one unix stream connection in QEMU's
//    `-netdev stream` framing (each frame preceded by its length, 32-bit big-endian), clients
//    spread round-robin over the paths — how ankanetd sees each client as a VM of its own, whose
//    MAC it learns from the first frame. A reply must also arrive on its client's connection.
//  * `--interface IFNAME`: one AF_PACKET socket on that interface (a veth end), promiscuous,
//    sending each client's frames with its MAC as the Ethernet source — how dnsmasq and Kea are
//    reached.
//
// Phases.
//  1. Warm-up, not measured: every client completes one exchange, `--warmup-rate` starts per
//     second, a client that fails trying again, until all are bound or `--warmup-limit` passes.
//  2. Settle: until nothing is in flight (at most one timeout).
//  3. Measure for `--duration` seconds at `--rate` exchanges per second: the k-th start is due at
//     k / rate after the phase began. A due start takes the client idle the longest (a FIFO of
//     idle clients); when every client has an exchange in flight it is counted `not_started`, so
//     the offered load stays the one asked for however the server keeps up.
//  4. Drain: no new starts; exchanges begun in phase 3 get their full timeout.
// An exchange ends completed (its ACK, within `--timeout-ms` of its DISCOVER; latency measured
// DISCOVER sent → ACK received), nak'd, timed out (waiting for the OFFER or for the ACK), or
// failed to send (the generator's own link refused the frame).
//
// Output. One line on stdout, `dhcp_load key=value ...`, which run.sh parses; progress on stderr.
// With `--ready-file PATH` the file is created when phase 3 begins, so a script can time something
// (the bystander's ping) to the measured window.
//
// Limits. One thread, one epoll loop; the generator shares the machine with the server it measures,
// so at high rates part of what is measured is the generator's own CPU. Every loop is bounded:
// duration, warm-up and timeout have caps, and the process ends by itself.
#include <ankanet/dhcp/client_frames.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/dhcp.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

namespace dhcp = ankanet::dhcp;
namespace wire = ankanet::wire;
using wire::const_bytes;
using wire::mac_address;
using steady = std::chrono::steady_clock;
using time_point = steady::time_point;
using std::chrono::duration_cast;
using seconds_f = std::chrono::duration<double>;
using microseconds_f = std::chrono::duration<double, std::micro>;

constexpr std::size_t max_clients = 65536;               // the MAC holds the index in two octets
constexpr std::size_t max_connections_per_socket = 256;  // ankanetd's cap per --qemu-socket listener
constexpr double max_duration_s = 60;
constexpr double max_warmup_limit_s = 60;
constexpr int max_timeout_ms = 10'000;
constexpr std::size_t qemu_stream_max_frame = 65536 + 4096; // what QEMU itself would ever send
constexpr std::size_t max_outbox_bytes = 1 << 20;           // per connection, when the socket is full

// --- Options -----------------------------------------------------------------------------------

struct options {
    std::vector<std::string> qemu_sockets;
    std::optional<std::string> interface;
    std::size_t clients = 1000;
    double rate = 1000;             // exchanges started per second, measured phase
    double duration_s = 4;
    int timeout_ms = 1000;
    double warmup_rate = 1000;
    double warmup_limit_s = 10;
    std::optional<std::string> ready_file;
};

constexpr std::string_view usage_text =
    "usage: dhcp_load (--qemu-socket PATH... | --interface IFNAME) [--clients N] [--rate R]\n"
    "                 [--duration S] [--timeout-ms MS] [--warmup-rate R] [--warmup-limit S]\n"
    "                 [--ready-file PATH]\n"
    "\n"
    "  --qemu-socket PATH  a QEMU -netdev stream listener (ankanetd --qemu-socket); each client is\n"
    "                      one connection, clients spread over the paths given (at most 256 each)\n"
    "  --interface IFNAME  an interface (veth end) to send and receive raw frames on\n"
    "  --clients N         simulated clients, each with its own MAC (default 1000)\n"
    "  --rate R            exchanges started per second while measuring (default 1000)\n"
    "  --duration S        seconds measured (default 4, at most 60)\n"
    "  --timeout-ms MS     an exchange not ACKed this long after its DISCOVER is a drop (default 1000)\n"
    "  --warmup-rate R     starts per second while every client gets its first lease (default 1000)\n"
    "  --warmup-limit S    give up warming up after S seconds (default 10, at most 60)\n"
    "  --ready-file PATH   create PATH when the measured phase begins\n";

[[noreturn]] void usage_error(std::string_view message) {
    fmt::print(stderr, "dhcp_load: {}\n\n{}", message, usage_text);
    std::exit(2);
}

double parse_number(std::string_view option, std::string_view text, double low, double high) {
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || !(value >= low && value <= high)) {
        usage_error(fmt::format("{}: '{}' is not a number from {} to {}", option, text, low, high));
    }
    return value;
}

options parse_options(int argc, char** argv) {
    options opts;
    const std::vector<std::string_view> args(argv + 1, argv + argc);
    for (std::size_t i = 0; i < args.size(); ++i) {
        const auto name = args[i];
        if (name == "--help" || name == "-h") {
            fmt::print("{}", usage_text);
            std::exit(0);
        }
        if (i + 1 >= args.size()) usage_error(fmt::format("{} needs a value (or is unknown)", name));
        const auto value = args[++i];
        if (name == "--qemu-socket") {
            opts.qemu_sockets.emplace_back(value);
        } else if (name == "--interface") {
            opts.interface = std::string{value};
        } else if (name == "--clients") {
            opts.clients = static_cast<std::size_t>(parse_number(name, value, 1, max_clients));
        } else if (name == "--rate") {
            opts.rate = parse_number(name, value, 1, 1'000'000);
        } else if (name == "--duration") {
            opts.duration_s = parse_number(name, value, 0.1, max_duration_s);
        } else if (name == "--timeout-ms") {
            opts.timeout_ms = static_cast<int>(parse_number(name, value, 1, max_timeout_ms));
        } else if (name == "--warmup-rate") {
            opts.warmup_rate = parse_number(name, value, 1, 1'000'000);
        } else if (name == "--warmup-limit") {
            opts.warmup_limit_s = parse_number(name, value, 0, max_warmup_limit_s);
        } else if (name == "--ready-file") {
            opts.ready_file = std::string{value};
        } else {
            usage_error(fmt::format("unknown option '{}'", name));
        }
    }
    if (opts.qemu_sockets.empty() == !opts.interface) usage_error("give --qemu-socket PATH... or --interface IFNAME (one kind)");
    if (!opts.qemu_sockets.empty()) {
        const auto per_socket = (opts.clients + opts.qemu_sockets.size() - 1) / opts.qemu_sockets.size();
        if (per_socket > max_connections_per_socket) {
            usage_error(fmt::format("{} clients over {} sockets is {} per socket; a listener takes at most {}",
                                    opts.clients, opts.qemu_sockets.size(), per_socket, max_connections_per_socket));
        }
    }
    return opts;
}

std::string errno_text() { return std::strerror(errno); }
// (On Linux EWOULDBLOCK is EAGAIN; the checks below name EAGAIN only.)

// --- Clients' MACs -----------------------------------------------------------------------------

mac_address client_mac(std::size_t index) {
    return mac_address{{0x02, 0x64, 0x00, 0x00, static_cast<std::uint8_t>(index >> 8), static_cast<std::uint8_t>(index & 0xff)}};
}

/// The client a MAC belongs to, if it is one of ours.
std::optional<std::size_t> client_of(const mac_address& mac, std::size_t clients) {
    const auto& o = mac.octets();
    if (o[0] != 0x02 || o[1] != 0x64 || o[2] != 0 || o[3] != 0) return std::nullopt;
    const std::size_t index = std::size_t{o[4]} << 8 | o[5];
    if (index >= clients) return std::nullopt;
    return index;
}

// --- Links -------------------------------------------------------------------------------------

/// Where the clients' frames go and the server's come from. Each link registers its descriptors
/// with the generator's epoll instance and is handed back the events whose tag it chose.
class frame_link {
public:
    /// Called with each frame received; `link_client` is the client whose own link it came on,
    /// when the link knows (one connection per client), else nothing.
    using receiver = std::function<void(std::optional<std::size_t> link_client, const_bytes frame)>;

    virtual ~frame_link() = default;
    /// Sends one of `client`'s frames; false if the link refused it (the exchange then fails).
    virtual bool send(std::size_t client, const_bytes frame) = 0;
    virtual void on_event(std::uint64_t tag, std::uint32_t events, const receiver& deliver) = 0;
    /// Clients whose link is gone (their connection closed by the server).
    virtual std::size_t lost_clients() const = 0;
};

/// Each client is one connection to a QEMU -netdev stream listener: [length BE32][frame]...
class qemu_stream_link final : public frame_link {
public:
    qemu_stream_link(int epoll_fd, const std::vector<std::string>& paths, std::size_t clients)
        : epoll_fd_(epoll_fd), connections_(clients), scratch_(256 * 1024) {
        for (std::size_t i = 0; i < clients; ++i) connect_client(i, paths[i % paths.size()]);
    }
    ~qemu_stream_link() override {
        for (auto& c : connections_) {
            if (c.fd >= 0) ::close(c.fd);
        }
    }
    qemu_stream_link(const qemu_stream_link&) = delete;
    qemu_stream_link& operator=(const qemu_stream_link&) = delete;

    bool send(std::size_t client, const_bytes frame) override {
        auto& c = connections_[client];
        if (c.fd < 0) return false;
        const auto length = static_cast<std::uint32_t>(frame.size());
        const std::array<std::byte, 4> prefix{std::byte(length >> 24), std::byte(length >> 16), std::byte(length >> 8),
                                              std::byte(length)};
        std::size_t written = 0;
        if (c.outbox.empty()) {
            std::array<iovec, 2> pieces{iovec{const_cast<std::byte*>(prefix.data()), prefix.size()},
                                        iovec{const_cast<std::byte*>(frame.data()), frame.size()}};
            const auto n = ::writev(c.fd, pieces.data(), static_cast<int>(pieces.size()));
            if (n < 0 && errno != EAGAIN) {
                lose(client);
                return false;
            }
            written = n < 0 ? 0 : static_cast<std::size_t>(n);
            if (written == prefix.size() + frame.size()) return true;
        }
        if (c.outbox.size() + prefix.size() + frame.size() > max_outbox_bytes) return false;
        // What the socket did not take waits, in order, for EPOLLOUT.
        for (std::size_t k = written; k < prefix.size(); ++k) c.outbox.push_back(prefix[k]);
        const auto frame_written = written > prefix.size() ? written - prefix.size() : 0;
        c.outbox.insert(c.outbox.end(), frame.begin() + static_cast<std::ptrdiff_t>(frame_written), frame.end());
        watch(client, EPOLLIN | EPOLLOUT);
        return true;
    }

    void on_event(std::uint64_t tag, std::uint32_t events, const receiver& deliver) override {
        const std::size_t client = tag;
        if (connections_[client].fd < 0) return;
        if (events & EPOLLOUT) flush(client);
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) receive(client, deliver);
    }

    std::size_t lost_clients() const override { return lost_; }

private:
    struct connection {
        int fd = -1;
        std::vector<std::byte> inbox;   // bytes received and not yet a whole frame
        std::vector<std::byte> outbox;  // bytes the socket has not taken yet
    };

    void connect_client(std::size_t client, const std::string& path) {
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        if (path.size() >= sizeof(address.sun_path)) {
            fmt::print(stderr, "dhcp_load: socket path too long: {}\n", path);
            std::exit(1);
        }
        std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            fmt::print(stderr, "dhcp_load: socket: {}\n", errno_text());
            std::exit(1);
        }
        // A unix connect() waits while the listener's backlog is full; two seconds at most.
        const timeval connect_timeout{2, 0};
        (void)::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &connect_timeout, sizeof connect_timeout);
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
            fmt::print(stderr, "dhcp_load: connect {} (client {}): {}\n", path, client, errno_text());
            std::exit(1);
        }
        (void)::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
        connections_[client].fd = fd;
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.u64 = client;
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
            fmt::print(stderr, "dhcp_load: epoll_ctl: {}\n", errno_text());
            std::exit(1);
        }
    }

    void watch(std::size_t client, std::uint32_t events) {
        epoll_event event{};
        event.events = events;
        event.data.u64 = client;
        (void)::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, connections_[client].fd, &event);
    }

    void flush(std::size_t client) {
        auto& c = connections_[client];
        while (!c.outbox.empty()) {
            const auto n = ::write(c.fd, c.outbox.data(), c.outbox.size());
            if (n < 0) {
                if (errno == EAGAIN) return;
                lose(client);
                return;
            }
            c.outbox.erase(c.outbox.begin(), c.outbox.begin() + n);
        }
        watch(client, EPOLLIN);
    }

    void receive(std::size_t client, const receiver& deliver) {
        // A few reads per event, so one chatty connection cannot starve the loop.
        for (int reads = 0; reads < 4; ++reads) {
            auto& c = connections_[client];
            const auto n = ::read(c.fd, scratch_.data(), scratch_.size());
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                lose(client);
                return;
            }
            if (n < 0) return;
            c.inbox.insert(c.inbox.end(), scratch_.begin(), scratch_.begin() + n);
            std::size_t at = 0;
            while (c.inbox.size() - at >= 4) {
                const std::size_t length = std::size_t{std::to_integer<std::uint8_t>(c.inbox[at])} << 24 |
                                           std::size_t{std::to_integer<std::uint8_t>(c.inbox[at + 1])} << 16 |
                                           std::size_t{std::to_integer<std::uint8_t>(c.inbox[at + 2])} << 8 |
                                           std::size_t{std::to_integer<std::uint8_t>(c.inbox[at + 3])};
                if (length > qemu_stream_max_frame) {
                    lose(client); // out of sync: nothing after this can be read
                    return;
                }
                if (c.inbox.size() - at - 4 < length) break;
                deliver(client, const_bytes{c.inbox.data() + at + 4, length});
                at += 4 + length;
            }
            c.inbox.erase(c.inbox.begin(), c.inbox.begin() + static_cast<std::ptrdiff_t>(at));
            if (static_cast<std::size_t>(n) < scratch_.size()) return;
        }
    }

    void lose(std::size_t client) {
        auto& c = connections_[client];
        if (c.fd < 0) return;
        (void)::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
        ::close(c.fd);
        c.fd = -1;
        c.inbox = {};
        c.outbox = {};
        ++lost_;
    }

    int epoll_fd_;
    std::vector<connection> connections_;
    std::vector<std::byte> scratch_;
    std::size_t lost_ = 0;
};

/// Every client on one AF_PACKET socket bound to an interface, promiscuous (replies are unicast to
/// the clients' MACs, not the interface's).
class packet_link final : public frame_link {
public:
    packet_link(int epoll_fd, const std::string& interface) : scratch_(65536) {
        const unsigned index = ::if_nametoindex(interface.c_str());
        if (index == 0) fatal(fmt::format("interface {}", interface));
        fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
        if (fd_ < 0) fatal("AF_PACKET socket (needs CAP_NET_RAW)");
        sockaddr_ll address{};
        address.sll_family = AF_PACKET;
        address.sll_protocol = htons(ETH_P_ALL);
        address.sll_ifindex = static_cast<int>(index);
        if (::bind(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) fatal("bind");
        packet_mreq promiscuous{};
        promiscuous.mr_ifindex = static_cast<int>(index);
        promiscuous.mr_type = PACKET_MR_PROMISC;
        if (::setsockopt(fd_, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &promiscuous, sizeof promiscuous) != 0) fatal("promiscuous");
        const int yes = 1;
        (void)::setsockopt(fd_, SOL_PACKET, PACKET_IGNORE_OUTGOING, &yes, sizeof yes);
        const int buffer = 16 << 20;
        (void)::setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer);
        (void)::setsockopt(fd_, SOL_SOCKET, SO_SNDBUFFORCE, &buffer, sizeof buffer);
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.u64 = 0;
        if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd_, &event) != 0) fatal("epoll_ctl");
    }
    ~packet_link() override { ::close(fd_); }
    packet_link(const packet_link&) = delete;
    packet_link& operator=(const packet_link&) = delete;

    bool send(std::size_t, const_bytes frame) override { return ::send(fd_, frame.data(), frame.size(), 0) >= 0; }

    void on_event(std::uint64_t, std::uint32_t, const receiver& deliver) override {
        for (int reads = 0; reads < 256; ++reads) {
            sockaddr_ll from{};
            socklen_t from_len = sizeof from;
            const auto n = ::recvfrom(fd_, scratch_.data(), scratch_.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &from_len);
            if (n < 0) return;
            if (from.sll_pkttype == PACKET_OUTGOING) continue;
            deliver(std::nullopt, const_bytes{scratch_.data(), static_cast<std::size_t>(n)});
        }
    }

    std::size_t lost_clients() const override { return 0; }

private:
    [[noreturn]] static void fatal(std::string_view what) {
        fmt::print(stderr, "dhcp_load: {}: {}\n", what, errno_text());
        std::exit(1);
    }
    int fd_ = -1;
    std::vector<std::byte> scratch_;
};

/// User and system CPU time of this process so far.
double cpu_seconds() {
    rusage usage{};
    (void)::getrusage(RUSAGE_SELF, &usage);
    const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// --- The generator -----------------------------------------------------------------------------

enum class stage : std::uint8_t { idle, awaiting_offer, awaiting_ack };
enum class outcome : std::uint8_t { completed, nak, timeout_no_offer, timeout_no_ack, send_failed };

struct client_state {
    mac_address mac;
    stage at = stage::idle;
    std::uint32_t xid = 0;
    std::uint64_t exchange = 0;  // the generator-wide number of its exchange in flight
    bool measured = false;       // the exchange in flight was started in the measured phase
    bool bound = false;          // completed at least one exchange
    time_point started{};
};

/// What the measured phase counted.
struct tally {
    std::uint64_t offered = 0;      // starts due at the asked rate
    std::uint64_t started = 0;
    std::uint64_t not_started = 0;  // due while every client had an exchange in flight
    std::uint64_t completed = 0;
    std::uint64_t naks = 0;
    std::uint64_t timeouts_no_offer = 0;
    std::uint64_t timeouts_no_ack = 0;
    std::uint64_t send_failed = 0;
    std::vector<double> latencies_us;
    double cpu_pct = 0;             // this process's CPU time over the measured phase and its drain
};

/// Replies that matched no exchange, over the whole run.
struct stray_counts {
    std::uint64_t not_dhcp = 0;      // frames that are no DHCP server reply (or fail a checksum)
    std::uint64_t foreign = 0;       // chaddr of none of our clients
    std::uint64_t misdelivered = 0;  // arrived on another client's connection
    std::uint64_t stale = 0;         // xid of no exchange in flight (a late reply, say)
    std::uint64_t unexpected = 0;    // a type its exchange did not wait for (a second OFFER, ...)
};

class load_generator {
public:
    load_generator(int epoll_fd, frame_link& link, std::size_t clients, std::chrono::milliseconds timeout)
        : epoll_fd_(epoll_fd), link_(link), clients_(clients), timeout_(timeout) {
        for (std::size_t i = 0; i < clients; ++i) clients_[i].mac = client_mac(i);
        std::random_device seed;
        next_xid_ = seed();
        deliver_ = [this](std::optional<std::size_t> link_client, const_bytes frame) { on_frame(link_client, frame); };
    }
    load_generator(const load_generator&) = delete; // deliver_ holds `this`
    load_generator& operator=(const load_generator&) = delete;

    /// Phase 1: every client completes one exchange, `rate` starts per second, failures retried;
    /// returns the clients bound.
    std::size_t warm_up(double rate, seconds_f limit) {
        for (std::size_t i = 0; i < clients_.size(); ++i) unbound_.push_back(i);
        const auto begin = steady::now();
        const auto end = begin + duration_cast<steady::duration>(limit);
        std::uint64_t due_done = 0;
        while (bound_ + link_.lost_clients() < clients_.size() && steady::now() < end) {
            const auto now = steady::now();
            const auto due = static_cast<std::uint64_t>(seconds_f(now - begin).count() * rate);
            for (; due_done < due && !unbound_.empty(); ++due_done) {
                const auto client = unbound_.front();
                unbound_.pop_front();
                start_exchange(client, now, false);
            }
            if (due_done < due) due_done = due; // nobody waiting: do not save up starts
            poll(std::min(end, begin + duration_cast<steady::duration>(seconds_f((static_cast<double>(due_done) + 1) / rate))));
        }
        warmup_seconds_ = seconds_f(steady::now() - begin).count();
        settle();
        return bound_;
    }

    /// Phase 3 and 4: `rate` exchanges per second for `length`, then their timeouts.
    tally measure(double rate, seconds_f length, const std::optional<std::string>& ready_file) {
        // Every client still linked takes part, bound in the warm-up or not; in warm-up order.
        for (std::size_t i = 0; i < clients_.size(); ++i) {
            if (clients_[i].at == stage::idle) idle_.push_back(i);
        }
        measuring_ = true;
        measured_ = tally{};
        measured_.latencies_us.reserve(static_cast<std::size_t>(rate * length.count()) + 1);
        if (ready_file) std::ofstream{*ready_file} << "measuring\n";

        const auto cpu_begin = cpu_seconds();
        const auto begin = steady::now();
        const auto end = begin + duration_cast<steady::duration>(length);
        const auto total = static_cast<std::uint64_t>(std::llround(rate * length.count()));
        while (true) {
            const auto now = steady::now();
            const auto due = std::min(total, static_cast<std::uint64_t>(seconds_f(now - begin).count() * rate));
            for (; measured_.offered < due; ++measured_.offered) {
                if (idle_.empty()) {
                    ++measured_.not_started;
                    continue;
                }
                const auto client = idle_.front();
                idle_.pop_front();
                ++measured_.started;
                start_exchange(client, now, true);
            }
            if (now >= end && measured_.offered >= total) break;
            const auto next_due = begin + duration_cast<steady::duration>(seconds_f((static_cast<double>(measured_.offered) + 1) / rate));
            poll(std::min(next_due, end));
        }
        measuring_ = false;
        settle();
        measured_.cpu_pct = 100 * (cpu_seconds() - cpu_begin) / seconds_f(steady::now() - begin).count();
        return std::move(measured_);
    }

    std::size_t in_flight() const noexcept { return in_flight_; }
    double warmup_seconds() const noexcept { return warmup_seconds_; }
    const stray_counts& strays() const noexcept { return strays_; }

private:
    struct deadline {
        std::size_t client;
        std::uint64_t exchange;
        time_point at;
    };

    /// Phases 2 and 4: until nothing is in flight; every exchange has its deadline, so this ends.
    void settle() {
        const auto limit = steady::now() + timeout_ + std::chrono::milliseconds{200};
        while (in_flight_ > 0 && steady::now() < limit) poll(limit);
    }

    void start_exchange(std::size_t index, time_point now, bool measured) {
        auto& client = clients_[index];
        client.xid = next_xid_++;
        client.exchange = ++exchanges_;
        client.measured = measured;
        client.started = now;
        client.at = stage::awaiting_offer;
        ++in_flight_;
        deadlines_.push_back({index, client.exchange, now + timeout_});
        const auto discover = dhcp::discover_frame(client.mac, client.xid);
        if (!link_.send(index, discover.bytes())) finish(index, outcome::send_failed, now);
    }

    void finish(std::size_t index, outcome result, time_point now) {
        auto& client = clients_[index];
        client.at = stage::idle;
        --in_flight_;
        if (result == outcome::completed && !client.bound) {
            client.bound = true;
            ++bound_;
        }
        if (client.measured) {
            switch (result) {
            case outcome::completed:
                ++measured_.completed;
                measured_.latencies_us.push_back(microseconds_f(now - client.started).count());
                break;
            case outcome::nak: ++measured_.naks; break;
            case outcome::timeout_no_offer: ++measured_.timeouts_no_offer; break;
            case outcome::timeout_no_ack: ++measured_.timeouts_no_ack; break;
            case outcome::send_failed: ++measured_.send_failed; break;
            }
        }
        if (measuring_) {
            idle_.push_back(index);
        } else if (!client.bound) {
            unbound_.push_back(index); // warm-up: try again
        }
    }

    void on_frame(std::optional<std::size_t> link_client, const_bytes frame) {
        const auto now = steady::now();
        const auto reply = dhcp::parse_server_reply(frame);
        if (!reply) {
            ++strays_.not_dhcp;
            return;
        }
        const auto index = client_of(reply->client, clients_.size());
        if (!index) {
            ++strays_.foreign;
            return;
        }
        if (link_client && *link_client != *index) {
            ++strays_.misdelivered;
            return;
        }
        auto& client = clients_[*index];
        if (client.at == stage::idle || reply->xid != client.xid) {
            ++strays_.stale;
            return;
        }
        using wire::dhcp::message_type;
        if (reply->type == message_type::nak) {
            finish(*index, outcome::nak, now);
        } else if (client.at == stage::awaiting_offer && reply->type == message_type::offer) {
            client.at = stage::awaiting_ack;
            const auto request = dhcp::request_frame(client.mac, *reply);
            if (!link_.send(*index, request.bytes())) finish(*index, outcome::send_failed, now);
        } else if (client.at == stage::awaiting_ack && reply->type == message_type::ack) {
            finish(*index, outcome::completed, now);
        } else {
            ++strays_.unexpected;
        }
    }

    void expire(time_point now) {
        while (!deadlines_.empty() && deadlines_.front().at <= now) {
            const auto d = deadlines_.front();
            deadlines_.pop_front();
            const auto& client = clients_[d.client];
            if (client.exchange != d.exchange || client.at == stage::idle) continue; // ended in time
            finish(d.client, client.at == stage::awaiting_offer ? outcome::timeout_no_offer : outcome::timeout_no_ack, now);
        }
    }

    /// Handles what arrives until `until` (or the next deadline, or a first batch of events).
    void poll(time_point until) {
        expire(steady::now());
        if (!deadlines_.empty()) until = std::min(until, deadlines_.front().at);
        const auto wait = std::max(steady::duration::zero(), until - steady::now());
        const auto wait_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
        timespec timeout{};
        timeout.tv_sec = wait_ns / 1'000'000'000;
        timeout.tv_nsec = wait_ns % 1'000'000'000;
        std::array<epoll_event, 128> events{};
        const int n = ::epoll_pwait2(epoll_fd_, events.data(), static_cast<int>(events.size()), &timeout, nullptr);
        for (int i = 0; i < n; ++i) {
            const auto& event = events[static_cast<std::size_t>(i)];
            link_.on_event(event.data.u64, event.events, deliver_);
        }
        expire(steady::now());
    }

    int epoll_fd_;
    frame_link& link_;
    std::vector<client_state> clients_;
    std::chrono::milliseconds timeout_;
    frame_link::receiver deliver_;
    std::deque<deadline> deadlines_;   // in start order, so in deadline order
    std::deque<std::size_t> unbound_;  // warm-up: clients waiting for their first exchange
    std::deque<std::size_t> idle_;     // measuring: clients free to start, longest idle first
    std::uint32_t next_xid_ = 0;
    std::uint64_t exchanges_ = 0;
    std::size_t in_flight_ = 0;
    std::size_t bound_ = 0;
    bool measuring_ = false;
    tally measured_;
    stray_counts strays_;
    double warmup_seconds_ = 0;
};

double percentile(std::vector<double>& sorted, double fraction) {
    if (sorted.empty()) return 0;
    const auto rank = static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(sorted.size())));
    return sorted[std::min(sorted.size(), std::max<std::size_t>(rank, 1)) - 1];
}

} // namespace

int main(int argc, char** argv) {
    const auto opts = parse_options(argc, argv);
    const int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0) {
        fmt::print(stderr, "dhcp_load: epoll_create1: {}\n", errno_text());
        return 1;
    }
    std::unique_ptr<frame_link> link;
    if (opts.interface) {
        link = std::make_unique<packet_link>(epoll_fd, *opts.interface);
    } else {
        link = std::make_unique<qemu_stream_link>(epoll_fd, opts.qemu_sockets, opts.clients);
    }

    load_generator generator{epoll_fd, *link, opts.clients, std::chrono::milliseconds{opts.timeout_ms}};
    const auto bound = generator.warm_up(opts.warmup_rate, seconds_f{opts.warmup_limit_s});
    fmt::print(stderr, "dhcp_load: warm-up: {} of {} clients bound in {:.2f} s; measuring {} exchanges/s for {} s\n", bound,
               opts.clients, generator.warmup_seconds(), opts.rate, opts.duration_s);

    auto result = generator.measure(opts.rate, seconds_f{opts.duration_s}, opts.ready_file);
    auto& latencies = result.latencies_us;
    std::sort(latencies.begin(), latencies.end());
    double sum = 0;
    for (const double l : latencies) sum += l;
    const double mean_ms = latencies.empty() ? 0 : sum / static_cast<double>(latencies.size()) / 1000;
    const auto dropped = result.started - result.completed;
    const auto& strays = generator.strays();
    fmt::print("dhcp_load rate={} duration_s={} clients={} bound={} lost_clients={} offered={} started={} not_started={} "
               "completed={} completed_per_s={:.1f} dropped={} dropped_pct={:.2f} naks={} timeouts_no_offer={} "
               "timeouts_no_ack={} send_failed={} lat_mean_ms={:.3f} lat_p50_ms={:.3f} lat_p99_ms={:.3f} lat_max_ms={:.3f} "
               "stray_not_dhcp={} stray_foreign={} stray_misdelivered={} stray_stale={} stray_unexpected={} "
               "still_in_flight={} cpu_pct={:.1f}\n",
               opts.rate, opts.duration_s, opts.clients, bound, link->lost_clients(), result.offered, result.started,
               result.not_started, result.completed, static_cast<double>(result.completed) / opts.duration_s, dropped,
               result.started ? 100.0 * static_cast<double>(dropped) / static_cast<double>(result.started) : 0.0,
               result.naks, result.timeouts_no_offer, result.timeouts_no_ack, result.send_failed, mean_ms,
               percentile(latencies, 0.50) / 1000, percentile(latencies, 0.99) / 1000,
               latencies.empty() ? 0.0 : latencies.back() / 1000, strays.not_dhcp, strays.foreign, strays.misdelivered,
               strays.stale, strays.unexpected, generator.in_flight(), result.cpu_pct);
    ::close(epoll_fd);
    return 0;
}
