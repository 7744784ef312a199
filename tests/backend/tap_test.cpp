#include <ankanet/backend/tap.hpp>

#include <ankanet/backend/netns.hpp>
#include <ankanet/backend/port.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>

#include "../support/netns.hpp"
#include "../support/skip.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

using namespace ankanet;
using namespace ankanet::backend;
using namespace std::chrono_literals;

namespace {

// The namespace plays a VM: its kernel stack, behind "eth0", is the guest; the test, holding the
// TAP's fd, plays the gateway at 192.168.64.1.
const wire::mac_address guest_mac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
const wire::mac_address gateway_mac{{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}};
const wire::ipv4_address guest_ip{192, 168, 64, 2};
const wire::ipv4_address gateway_ip{192, 168, 64, 1};
constexpr std::uint16_t experimental_ethertype = 0x88b5; // IEEE 802 local experimental: no kernel handler

#define REQUIRE_NETNS_ENVIRONMENT()                                                                 \
    const std::string missing_requirement = test::missing_netns_requirements();                     \
    ANKANET_REQUIRE_ENVIRONMENT(missing_requirement.empty(), "TAP tests need " << missing_requirement)

/// Turns IPv6 off in the namespace (for interfaces made from now on), so the guest sends nothing
/// the test did not ask for: no router solicitations, MLD reports or DAD probes.
void quiet_ipv6(const test::scoped_netns& ns) {
    const auto done = test::run_in(ns, "[ ! -d /proc/sys/net/ipv6 ] || { echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 "
                                       "&& echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; }");
    INFO(done.output);
    REQUIRE(done.status == 0);
}

/// A guest: TAP "eth0" created inside `ns` with the guest's MAC and our MTU, addressed with `ip`.
tap_device make_guest(boost::asio::io_context& io, const test::scoped_netns& ns, std::size_t mtu = default_mtu) {
    quiet_ipv6(ns);
    tap_options options;
    options.mtu = mtu;
    options.set_interface_mtu = true;
    options.mac = guest_mac;
    auto tap = tap_device::open_in_netns(io.get_executor(), ns.path(), "eth0", options);
    INFO((tap ? std::string{} : tap.error().message()));
    REQUIRE(tap);
    const auto configured = test::run_in(ns, "ip addr add 192.168.64.2/24 dev eth0 && ip link set eth0 up");
    INFO(configured.output);
    REQUIRE(configured.status == 0);
    return std::move(*tap);
}

/// One receive kept outstanding on a device, with its own buffer: next() runs the io_context until
/// a frame (or an error) arrives or the time is up. A receive still pending when the time is up
/// stays armed, so its handler never outlives what it writes to.
class frame_pump {
public:
    struct frame {
        std::error_code ec;
        std::vector<std::byte> bytes;
    };

    frame_pump(boost::asio::io_context& io, tap_device& tap, std::size_t buffer_size = 0)
        : io_(io), tap_(tap), slot_(std::make_shared<slot>()) {
        slot_->buffer.resize(buffer_size != 0 ? buffer_size : max_frame_len(tap.mtu()));
    }

    std::optional<frame> next(std::chrono::milliseconds limit) {
        if (!armed_) arm();
        const auto deadline = std::chrono::steady_clock::now() + limit;
        io_.restart();
        while (!slot_->done && std::chrono::steady_clock::now() < deadline) {
            io_.run_one_for(deadline - std::chrono::steady_clock::now());
        }
        if (!slot_->done) return std::nullopt;
        armed_ = false;
        slot_->done = false;
        return frame{slot_->ec, {slot_->buffer.begin(), slot_->buffer.begin() + static_cast<std::ptrdiff_t>(slot_->size)}};
    }

    bool completed_within(std::chrono::milliseconds limit) {
        if (!armed_) arm();
        io_.restart();
        io_.run_for(limit);
        return slot_->done;
    }

private:
    struct slot {
        std::vector<std::byte> buffer;
        std::error_code ec;
        std::size_t size = 0;
        bool done = false;
    };

    void arm() {
        armed_ = true;
        tap_.async_receive(slot_->buffer, [s = slot_](std::error_code ec, std::size_t n) {
            s->ec = ec;
            s->size = n;
            s->done = true;
        });
    }

    boost::asio::io_context& io_;
    tap_device& tap_;
    std::shared_ptr<slot> slot_;
    bool armed_ = false;
};

/// A frame of `size` bytes for the guest's interface that its kernel counts and then discards.
std::vector<std::byte> filler_frame(std::size_t size) {
    std::vector<std::byte> frame(size, std::byte{0x5a});
    wire::ethernet::repr{gateway_mac, guest_mac, experimental_ethertype, std::nullopt}.emit(frame);
    return frame;
}

/// A kernel counter of interface `ifname` in `ns` (rx_packets, tx_packets, ...).
std::uint64_t interface_counter(const test::scoped_netns& ns, const std::string& ifname, const std::string& counter) {
    const auto read = test::run_in(ns, "cat /sys/class/net/" + ifname + "/statistics/" + counter);
    INFO(read.output);
    REQUIRE(read.status == 0);
    return std::stoull(read.output);
}

/// The inode of the network namespace the calling thread is in.
ino_t current_netns_inode() {
    struct stat info {};
    REQUIRE(::stat("/proc/thread-self/ns/net", &info) == 0);
    return info.st_ino;
}

/// What a hypervisor does before passing a TAP fd on: open /dev/net/tun and TUNSETIFF itself.
result<int> raw_tun_fd(const char* name, int flags) {
    const int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return std::error_code{errno, std::system_category()};
    ::ifreq request{};
    std::strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_flags = static_cast<short>(flags);
    if (::ioctl(fd, TUNSETIFF, &request) != 0) {
        const std::error_code why{errno, std::system_category()};
        ::close(fd);
        return why;
    }
    return fd;
}

bool fd_is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

/// The echo reply a host at `gateway_ip` sends back for `request` (an Ethernet frame).
std::vector<std::byte> echo_reply_for(const wire::ipv4::repr& request_ip, const wire::icmp::echo_request& request) {
    const wire::icmp::repr icmp{wire::icmp::echo_reply{request.identifier, request.sequence, request.data}};
    wire::ipv4::repr ip;
    ip.source = gateway_ip;
    ip.destination = request_ip.source;
    ip.protocol = wire::ipv4::protocol::icmp;
    ip.payload_len = icmp.buffer_len();
    const wire::ethernet::repr eth{gateway_mac, guest_mac, wire::ethernet::ethertype::ipv4, std::nullopt};
    std::vector<std::byte> frame(eth.buffer_len() + ip.buffer_len() + icmp.buffer_len());
    REQUIRE_FALSE(eth.emit(frame));
    REQUIRE_FALSE(ip.emit(wire::mutable_bytes{frame}.subspan(eth.buffer_len())));
    REQUIRE_FALSE(icmp.emit(wire::mutable_bytes{frame}.subspan(eth.buffer_len() + ip.buffer_len())));
    return frame;
}

/// An ICMP echo request to the gateway carried by `frame`, if that is what it is.
struct echo_request_frame {
    wire::ethernet::repr eth;
    wire::ipv4::repr ip;
    wire::icmp::echo_request echo;
};
std::optional<echo_request_frame> as_echo_request(wire::const_bytes frame) {
    auto eth = wire::ethernet::repr::parse(frame);
    if (!eth || eth->ethertype != wire::ethernet::ethertype::ipv4) return std::nullopt;
    const wire::ipv4::packet<wire::const_bytes> datagram{frame.subspan(eth->buffer_len())};
    auto ip = wire::ipv4::repr::parse(datagram);
    if (!ip || ip->protocol != wire::ipv4::protocol::icmp || ip->destination != gateway_ip) return std::nullopt;
    auto icmp = wire::icmp::repr::parse(datagram.payload());
    if (!icmp) return std::nullopt;
    const auto* echo = std::get_if<wire::icmp::echo_request>(&icmp->message);
    if (echo == nullptr) return std::nullopt;
    return echo_request_frame{*eth, *ip, *echo};
}

} // namespace

// --- netns.hpp ------------------------------------------------------------------------------------

TEST_CASE("netns: a scope moves only the calling thread into the namespace, and back") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    struct stat target {};
    REQUIRE(::stat(ns.path().c_str(), &target) == 0);
    const ino_t home = current_netns_inode();
    REQUIRE(home != target.st_ino);

    // A thread that already runs looks at its own namespace once this one has entered.
    std::promise<void> entered;
    std::promise<ino_t> seen;
    std::thread other([&] {
        entered.get_future().wait();
        struct stat info {};
        seen.set_value(::stat("/proc/thread-self/ns/net", &info) == 0 ? info.st_ino : 0);
    });
    {
        auto inside = netns_scope::enter(ns.path());
        entered.set_value();
        const ino_t other_thread = seen.get_future().get();
        other.join();
        REQUIRE(inside);
        CHECK(current_netns_inode() == target.st_ino);
        CHECK(other_thread == home); // setns moved this thread only
        // Moving the scope moves the duty to come back; the moved-from one does nothing.
        auto moved = std::move(*inside);
        CHECK(current_netns_inode() == target.st_ino);
    }
    CHECK(current_netns_inode() == home);
}

TEST_CASE("netns: run_in_netns returns to the thread's namespace even when the work throws") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    const ino_t home = current_netns_inode();
    CHECK_THROWS_AS(run_in_netns(ns.path(), []() -> std::error_code { throw std::runtime_error("work failed"); }),
                    std::runtime_error);
    CHECK(current_netns_inode() == home);
    // The work's own result comes back as it is.
    auto inode = run_in_netns(ns.path(), []() -> result<ino_t> { return current_netns_inode(); });
    REQUIRE(inode);
    CHECK(*inode != home);
    CHECK(current_netns_inode() == home);
}

TEST_CASE("netns: a path that names no network namespace is an error, and the thread stays put") {
    const ino_t home = current_netns_inode();
    bool ran = false;
    auto missing = run_in_netns("/run/netns/ankanet-no-such-namespace", [&]() -> std::error_code {
        ran = true;
        return {};
    });
    CHECK(missing == std::errc::no_such_file_or_directory);
    // A namespace file of another kind, and a plain file: setns refuses both with EINVAL.
    CHECK(netns_scope::enter("/proc/self/ns/uts").error() == std::errc::invalid_argument);
    CHECK(netns_scope::enter("/proc/self/cmdline").error() == std::errc::invalid_argument);
    CHECK_FALSE(ran);
    CHECK(current_netns_inode() == home);
}

// --- tap.hpp: the path both ways, with a real kernel on the other side ---------------------------

TEST_CASE("tap: a guest namespace pings the gateway: the kernel's ARP and echo request come in, our replies go out") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    auto tap = make_guest(io, ns);
    CHECK(tap.name() == "eth0");
    CHECK(tap.mtu() == 1500);
    CHECK_FALSE(tap.mac());
    const auto link = test::run_in(ns, "ip -o link show eth0");
    INFO(link.output);
    CHECK(link.output.find("link/ether 52:54:00:12:34:56") != std::string::npos);
    CHECK(link.output.find("mtu 1500") != std::string::npos);

    auto ping = std::async(std::launch::async, [&ns] { return test::run_in(ns, "ping -n -c 1 -W 2 192.168.64.1"); });
    frame_pump pump(io, tap);
    int arp_requests = 0;
    int echo_requests = 0;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (ping.wait_for(0s) != std::future_status::ready && std::chrono::steady_clock::now() < deadline) {
        auto received = pump.next(100ms);
        if (!received) continue;
        REQUIRE_FALSE(received->ec);
        const wire::const_bytes frame{received->bytes};
        auto eth = wire::ethernet::repr::parse(frame);
        REQUIRE(eth);
        CHECK(eth->source == guest_mac);

        if (eth->ethertype == wire::ethernet::ethertype::arp) {
            auto arp = wire::arp::repr::parse(frame.subspan(eth->buffer_len()));
            REQUIRE(arp);
            REQUIRE(arp->operation == wire::arp::operation::request);
            CHECK(arp->sender_mac == guest_mac);
            CHECK(arp->sender_ip == guest_ip);
            CHECK(arp->target_ip == gateway_ip);
            if (arp_requests == 0) CHECK(eth->destination.is_broadcast()); // later ones may be unicast probes
            ++arp_requests;

            const wire::ethernet::repr reply_eth{gateway_mac, guest_mac, wire::ethernet::ethertype::arp, std::nullopt};
            std::vector<std::byte> reply(wire::ethernet::min_frame_len);
            REQUIRE_FALSE(reply_eth.emit(reply));
            REQUIRE_FALSE(arp->reply_from(gateway_mac).emit(wire::mutable_bytes{reply}.subspan(reply_eth.buffer_len())));
            REQUIRE_FALSE(tap.send(reply));
        } else if (auto echo = as_echo_request(frame)) {
            CHECK(echo->eth.destination == gateway_mac); // the kernel learned our ARP reply
            CHECK(echo->ip.source == guest_ip);
            ++echo_requests;
            REQUIRE_FALSE(tap.send(echo_reply_for(echo->ip, echo->echo)));
        } else {
            FAIL("unexpected frame from the guest, ethertype " << eth->ethertype);
        }
    }
    const auto outcome = ping.get();
    INFO(outcome.output);
    CHECK(outcome.status == 0); // the guest's ping saw its reply
    CHECK(arp_requests >= 1);
    CHECK(echo_requests == 1);
    const auto stats = tap.stats();
    CHECK(stats.rx_frames == static_cast<std::uint64_t>(arp_requests + echo_requests));
    CHECK(stats.tx_frames == stats.rx_frames);
    CHECK(stats.rx_runt == 0);
    CHECK(stats.rx_oversize == 0);
    CHECK(stats.tx_dropped == 0);
}

TEST_CASE("tap: open() with an empty name gets one from the kernel, and options set MAC, MTU and up") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    tap_options options;
    options.mtu = 9000;
    options.set_interface_mtu = true;
    options.mac = guest_mac;
    options.bring_up = true;
    // open() acts in the calling thread's namespace; enter ours so the host's is left alone.
    auto tap = run_in_netns(ns.path(), [&]() -> result<tap_device> { return tap_device::open(io.get_executor(), "", options); });
    INFO((tap ? std::string{} : tap.error().message()));
    REQUIRE(tap);
    const std::string name = tap->name();
    CHECK(name.starts_with("tap"));
    CHECK(tap->mtu() == 9000);
    const auto link = test::run_in(ns, "ip -o link show " + name);
    INFO(link.output);
    REQUIRE(link.status == 0);
    CHECK(link.output.find("link/ether 52:54:00:12:34:56") != std::string::npos);
    CHECK(link.output.find("mtu 9000") != std::string::npos);
    CHECK(link.output.find(",UP") != std::string::npos);

    // The interface lives as long as the fd: close() removes it.
    tap->close();
    CHECK_FALSE(tap->is_open());
    CHECK(test::run_in(ns, "ip link show " + name).status != 0);
}

TEST_CASE("tap: open() refuses a name the kernel would truncate and an MTU out of range, before any system call") {
    boost::asio::io_context io;
    CHECK(tap_device::open(io.get_executor(), "a-name-of-16-chr").error() == std::errc::invalid_argument);
    CHECK(tap_device::open(io.get_executor(), std::string_view{"ta\0p", 4}).error() == std::errc::invalid_argument);
    CHECK(tap_device::open(io.get_executor(), "tap9", min_mtu - 1).error() == std::errc::invalid_argument);
    CHECK(tap_device::open(io.get_executor(), "tap9", max_mtu + 1).error() == std::errc::invalid_argument);
    CHECK(tap_device::adopt(io.get_executor(), 0, max_mtu + 1).error() == std::errc::invalid_argument);
    CHECK(tap_device::open_in_netns(io.get_executor(), "/run/netns/ankanet-no-such-namespace", "eth0").error() ==
          std::errc::no_such_file_or_directory);
}

TEST_CASE("tap: adopt() drives a TAP fd that a hypervisor opened") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    quiet_ipv6(ns);
    auto fd = run_in_netns(ns.path(), [] { return raw_tun_fd("hv0", IFF_TAP | IFF_NO_PI); });
    REQUIRE(fd);
    REQUIRE((::fcntl(*fd, F_GETFL) & O_NONBLOCK) == 0);
    auto tap = tap_device::adopt(io.get_executor(), *fd);
    REQUIRE(tap);
    CHECK(tap->name() == "hv0"); // from TUNGETIFF
    CHECK((::fcntl(*fd, F_GETFL) & O_NONBLOCK) != 0);
    const auto configured = test::run_in(ns, "ip addr add 10.99.0.2/24 dev hv0 && ip link set hv0 up");
    INFO(configured.output);
    REQUIRE(configured.status == 0);

    // Into the kernel: the interface counts the frame we write.
    const auto before = interface_counter(ns, "hv0", "rx_packets");
    REQUIRE_FALSE(tap->send(filler_frame(wire::ethernet::min_frame_len)));
    CHECK(interface_counter(ns, "hv0", "rx_packets") == before + 1);

    // Out of the kernel: a ping to a neighbour makes it ARP, and we read the request.
    auto ping = std::async(std::launch::async, [&ns] { return test::run_in(ns, "ping -n -c 1 -W 1 10.99.0.1"); });
    frame_pump pump(io, *tap);
    auto received = pump.next(5s);
    ping.get();
    REQUIRE(received);
    REQUIRE_FALSE(received->ec);
    auto eth = wire::ethernet::repr::parse(received->bytes);
    REQUIRE(eth);
    REQUIRE(eth->ethertype == wire::ethernet::ethertype::arp);
    auto arp = wire::arp::repr::parse(wire::const_bytes{received->bytes}.subspan(eth->buffer_len()));
    REQUIRE(arp);
    CHECK(arp->sender_ip == wire::ipv4_address{10, 99, 0, 2});
    CHECK(arp->target_ip == wire::ipv4_address{10, 99, 0, 1});

    // The device owns the fd now: closing it closes the fd (and the interface goes).
    tap->close();
    CHECK_FALSE(fd_is_open(*fd));
    CHECK(test::run_in(ns, "ip link show hv0").status != 0);
}

TEST_CASE("tap: adopt() refuses a TUN, a TAP with virtio-net or packet-information headers, and a non-tun fd") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;

    struct refused {
        const char* name;
        int flags;
        bool with_filter;
        std::error_code expected;
    };
    const refused cases[] = {
        {"tun0", IFF_TUN | IFF_NO_PI, false, tap_errc::not_a_tap},
        {"tapv0", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, false, tap_errc::vnet_header},
        // TUNGETIFF shows a missing IFF_NO_PI only while a socket filter is attached (the bit
        // doubles as IFF_NOFILTER); attach an accept-all one, as a hypervisor might.
        {"tapp0", IFF_TAP, true, tap_errc::packet_information},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        auto fd = run_in_netns(ns.path(), [&] { return raw_tun_fd(c.name, c.flags); });
        REQUIRE(fd);
        if (c.with_filter) {
            ::sock_filter accept_all{0x06 /* BPF_RET | BPF_K */, 0, 0, 0xffffffffu};
            const ::sock_fprog program{1, &accept_all};
            REQUIRE(::ioctl(*fd, TUNATTACHFILTER, &program) == 0);
        }
        const auto adopted = tap_device::adopt(io.get_executor(), *fd);
        CHECK(adopted.error() == c.expected);
        CHECK_FALSE(adopted.error().message().empty());
        CHECK(fd_is_open(*fd)); // refused: still the caller's
        ::close(*fd);
    }

    const int not_tun = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    REQUIRE(not_tun >= 0);
    CHECK(tap_device::adopt(io.get_executor(), not_tun).error() == std::errc::inappropriate_io_control_operation);
    CHECK(fd_is_open(not_tun));
    ::close(not_tun);

    const int unattached = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC); // no TUNSETIFF yet
    REQUIRE(unattached >= 0);
    CHECK(tap_device::adopt(io.get_executor(), unattached).error().value() == EBADFD);
    ::close(unattached);
}

// --- sizes ----------------------------------------------------------------------------------------

TEST_CASE("tap: send writes frames up to max_frame_len, refuses longer and runts (tx_invalid)") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    auto tap = make_guest(io, ns);
    const auto packets_before = interface_counter(ns, "eth0", "rx_packets");
    const auto bytes_before = interface_counter(ns, "eth0", "rx_bytes");

    CHECK(tap.send(filler_frame(max_frame_len(1500) + 1)) == errc::bad_length);
    CHECK(tap.send(filler_frame(9014)) == errc::bad_length);
    CHECK(tap.send(wire::const_bytes{filler_frame(60)}.first(wire::ethernet::header_len - 1)) == errc::truncated);
    CHECK(tap.stats().tx_invalid == 3);

    CHECK_FALSE(tap.send(filler_frame(max_frame_len(1500))));
    CHECK_FALSE(tap.send(filler_frame(wire::ethernet::min_frame_len)));
    const auto stats = tap.stats();
    CHECK(stats.tx_frames == 2);
    CHECK(stats.tx_bytes == max_frame_len(1500) + wire::ethernet::min_frame_len);
    // Only the two good frames reached the interface, whole.
    CHECK(interface_counter(ns, "eth0", "rx_packets") == packets_before + 2);
    CHECK(interface_counter(ns, "eth0", "rx_bytes") == bytes_before + max_frame_len(1500) + wire::ethernet::min_frame_len);
}

TEST_CASE("tap: a write the kernel refuses is a counted drop (interface down: EIO)") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    auto tap = make_guest(io, ns);
    REQUIRE(test::run_in(ns, "ip link set eth0 down").status == 0);
    CHECK(tap.send(filler_frame(60)) == std::errc::io_error);
    CHECK(tap.stats().tx_dropped == 1);
    CHECK(tap.stats().tx_frames == 0);
}

TEST_CASE("tap: oversize frames from a guest whose MTU is above ours are counted and skipped") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    auto tap = make_guest(io, ns, 1500);
    // The guest's side goes to MTU 4000 and knows the gateway's MAC, so a big ping leaves as one
    // 2542-byte frame (2500 bytes of data), with no ARP before it.
    const auto setup = test::run_in(ns, "ip link set eth0 mtu 4000 && ip neigh replace 192.168.64.1 lladdr "
                                        "52:55:0a:00:02:02 dev eth0 nud permanent");
    INFO(setup.output);
    REQUIRE(setup.status == 0);

    frame_pump pump(io, tap);
    CHECK_FALSE(pump.completed_within(50ms)); // a receive is pending, the guest quiet
    CHECK(test::run_in(ns, "ping -n -c 1 -W 1 -s 2500 192.168.64.1").status != 0); // we never answer it
    // The frame was read and dropped; the pending receive did not complete for it.
    CHECK_FALSE(pump.completed_within(200ms));
    CHECK(tap.stats().rx_oversize == 1);
    CHECK(tap.stats().rx_frames == 0);

    // The same receive, re-armed inside the backend, delivers the next good frame.
    auto ping = std::async(std::launch::async, [&ns] { return test::run_in(ns, "ping -n -c 1 -W 1 -s 56 192.168.64.1"); });
    auto received = pump.next(5s);
    ping.get();
    REQUIRE(received);
    REQUIRE_FALSE(received->ec);
    CHECK(received->bytes.size() == 14 + 20 + 8 + 56);
    auto echo = as_echo_request(received->bytes);
    REQUIRE(echo);
    CHECK(echo->echo.data.size() == 56);
    CHECK(tap.stats().rx_oversize == 1);
    CHECK(tap.stats().rx_frames == 1);
}

TEST_CASE("tap: a good frame longer than the caller's buffer is dropped with buffer_too_small") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    auto tap = make_guest(io, ns);
    REQUIRE(test::run_in(ns, "ip neigh replace 192.168.64.1 lladdr 52:55:0a:00:02:02 dev eth0 nud permanent").status == 0);
    frame_pump pump(io, tap, 64); // shorter than the 98-byte echo request
    auto ping = std::async(std::launch::async, [&ns] { return test::run_in(ns, "ping -n -c 1 -W 1 -s 56 192.168.64.1"); });
    auto received = pump.next(5s);
    ping.get();
    REQUIRE(received);
    CHECK(received->ec == errc::buffer_too_small);
    CHECK(tap.stats().rx_frames == 0);
    CHECK(tap.stats().rx_oversize == 0);
}

// --- the end of the link --------------------------------------------------------------------------

TEST_CASE("tap: close() aborts a pending receive with operation_canceled and later calls fail cleanly") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    auto tap = make_guest(io, ns);
    std::vector<std::byte> buffer(max_frame_len(tap.mtu()));
    std::optional<std::error_code> first;
    tap.async_receive(buffer, [&](std::error_code ec, std::size_t) { first = ec; });
    io.run_for(50ms);
    REQUIRE_FALSE(first);

    tap.close();
    tap.close(); // idempotent
    io.restart();
    io.run_for(1s);
    REQUIRE(first);
    CHECK(*first == std::errc::operation_canceled);

    CHECK(tap.send(filler_frame(60)) == std::errc::not_connected);
    CHECK(tap.stats().tx_dropped == 1);

    std::optional<std::error_code> second;
    tap.async_receive(buffer, [&](std::error_code ec, std::size_t) { second = ec; });
    CHECK_FALSE(second); // completions are posted, never run inline
    io.restart();
    io.run_for(1s);
    REQUIRE(second);
    CHECK(*second == std::errc::operation_canceled);

    // async_receive is an Asio initiating function: other completion tokens work too.
    std::optional<std::error_code> third;
    auto deferred_receive = tap.async_receive(buffer, boost::asio::deferred);
    std::move(deferred_receive)([&](std::error_code ec, std::size_t) { third = ec; });
    io.restart();
    io.run_for(1s);
    REQUIRE(third);
    CHECK(*third == std::errc::operation_canceled);
    // Closing the fd removed the interface it had created.
    CHECK(test::run_in(ns, "ip link show eth0").status != 0);
}

TEST_CASE("tap: destroying a device with a receive pending completes the receive, canceled") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    auto buffer = std::make_shared<std::vector<std::byte>>(max_frame_len(default_mtu));
    std::optional<std::error_code> outcome;
    {
        auto tap = make_guest(io, ns);
        tap.async_receive(*buffer, [&, buffer](std::error_code ec, std::size_t) { outcome = ec; });
        io.run_for(20ms);
    }
    io.restart();
    io.run_for(1s);
    REQUIRE(outcome);
    CHECK(*outcome == std::errc::operation_canceled);
}

TEST_CASE("tap: deleting the interface ends the link with peer_closed") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    auto tap = make_guest(io, ns);
    frame_pump pump(io, tap);
    CHECK_FALSE(pump.completed_within(20ms));
    REQUIRE(test::run_in(ns, "ip link del eth0").status == 0);
    auto received = pump.next(5s);
    REQUIRE(received);
    CHECK(received->ec == errc::peer_closed);
    CHECK(tap.send(filler_frame(60)) == errc::peer_closed);
    CHECK(tap.stats().tx_dropped == 1);
}

TEST_CASE("tap: the fd keeps its namespace, and the link, alive after `ip netns del`") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    auto tap = make_guest(io, ns);
    REQUIRE(test::run_command({"ip", "netns", "del", ns.name()}).status == 0);
    REQUIRE_FALSE(std::filesystem::exists(ns.path()));
    CHECK_FALSE(tap.send(filler_frame(60))); // the interface is still up, in a namespace with no name
    CHECK(tap.stats().tx_frames == 1);
    frame_pump pump(io, tap);
    CHECK_FALSE(pump.completed_within(20ms)); // no peer_closed either
}

TEST_CASE("tap test support: a namespace is deleted when its scope ends, even when the test fails") {
    REQUIRE_NETNS_ENVIRONMENT();
    std::string name;
    std::string path;
    try {
        test::scoped_netns ns;
        name = ns.name();
        path = ns.path();
        REQUIRE(std::filesystem::exists(path));
        throw std::runtime_error("a failing test");
    } catch (const std::runtime_error&) {
    }
    CHECK_FALSE(std::filesystem::exists(path));
    CHECK(test::run_command({"ip", "netns", "list"}).output.find(name) == std::string::npos);
}

// --- try_receive: the burst path (burst_backend) --------------------------------------------------

namespace {

static_assert(burst_backend<tap_device>);

/// A quiet guest for burst tests: TAP "eth0" in `ns` with the guest's MAC, up, no addresses and
/// IPv6 off, so its kernel sends nothing of its own; the interface MTU is 4000 while the device's
/// is `mtu`, so the guest can send frames this backend must count as oversize.
tap_device make_quiet_guest(boost::asio::io_context& io, const test::scoped_netns& ns, std::size_t mtu = default_mtu) {
    quiet_ipv6(ns);
    tap_options options;
    options.mtu = mtu;
    options.mac = guest_mac;
    options.bring_up = true;
    auto tap = tap_device::open_in_netns(io.get_executor(), ns.path(), "eth0", options);
    INFO((tap ? std::string{} : tap.error().message()));
    REQUIRE(tap);
    const auto configured = test::run_in(ns, "ip link set eth0 mtu 4000");
    INFO(configured.output);
    REQUIRE(configured.status == 0);
    return std::move(*tap);
}

/// The guest's side of the wire: a packet socket on eth0, made inside the namespace. What it sends
/// the interface transmits, so it comes out of the TAP's fd. It bypasses the qdisc, so a frame is
/// in the TAP's queue by the time send returns.
class guest_wire {
public:
    explicit guest_wire(const test::scoped_netns& ns) {
        auto made = run_in_netns(ns.path(), []() -> result<std::pair<int, unsigned>> {
            const int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0); // protocol 0: send only
            if (fd < 0) return std::error_code{errno, std::system_category()};
            const int on = 1;
            ::setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &on, sizeof(on));
            return std::pair{fd, ::if_nametoindex("eth0")};
        });
        REQUIRE(made);
        fd_ = made->first;
        ifindex_ = made->second;
        REQUIRE(ifindex_ != 0);
    }
    ~guest_wire() { ::close(fd_); }
    guest_wire(const guest_wire&) = delete;
    guest_wire& operator=(const guest_wire&) = delete;

    void send(const std::vector<std::byte>& frame) {
        ::sockaddr_ll to{};
        to.sll_family = AF_PACKET;
        to.sll_ifindex = static_cast<int>(ifindex_);
        to.sll_halen = 6;
        std::memcpy(to.sll_addr, gateway_mac.octets().data(), 6);
        const auto sent = ::sendto(fd_, frame.data(), frame.size(), 0, reinterpret_cast<const ::sockaddr*>(&to), sizeof(to));
        INFO("sendto: " << (sent < 0 ? std::strerror(errno) : "ok"));
        REQUIRE(sent == static_cast<::ssize_t>(frame.size()));
    }

private:
    int fd_ = -1;
    unsigned ifindex_ = 0;
};

/// A frame from the guest to the gateway, `size` bytes, carrying `sequence` after its header.
std::vector<std::byte> guest_frame(std::uint32_t sequence, std::size_t size) {
    std::vector<std::byte> frame(size, std::byte{0x3c});
    wire::ethernet::repr{guest_mac, gateway_mac, experimental_ethertype, std::nullopt}.emit(frame);
    wire::store_be32(frame, wire::ethernet::header_len, sequence);
    return frame;
}

std::uint32_t sequence_in(wire::const_bytes frame) { return wire::load_be32(frame, wire::ethernet::header_len); }

} // namespace

TEST_CASE("tap: try_receive takes the guest's frames in order, skips and counts oversize ones, says when nothing is queued") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    auto tap = make_quiet_guest(io, ns, 1500);
    guest_wire guest(ns);
    std::vector<std::byte> buffer(max_frame_len(tap.mtu()));
    CHECK(tap.try_receive(buffer).error() == nothing_queued);

    guest.send(guest_frame(0, 60));
    guest.send(guest_frame(1, 3000)); // above our MTU (the guest's is 4000): skipped, counted
    guest.send(guest_frame(2, max_frame_len(1500))); // the longest frame we pass
    guest.send(guest_frame(3, 61));
    std::vector<std::pair<std::uint32_t, std::size_t>> got;
    for (int i = 0; i < 3; ++i) {
        auto n = tap.try_receive(buffer);
        INFO((n ? std::string{} : n.error().message()));
        REQUIRE(n);
        got.emplace_back(sequence_in(wire::const_bytes{buffer}.first(*n)), *n);
    }
    CHECK(got == std::vector<std::pair<std::uint32_t, std::size_t>>{{0, 60}, {2, max_frame_len(1500)}, {3, 61}});
    CHECK(tap.try_receive(buffer).error() == nothing_queued);
    CHECK(io.poll() == 0); // nothing went through the executor
    const auto stats = tap.stats();
    CHECK(stats.rx_frames == 3);
    CHECK(stats.rx_bytes == 60 + max_frame_len(1500) + 61);
    CHECK(stats.rx_oversize == 1);
    CHECK(stats.rx_runt == 0); // a kernel never transmits a frame shorter than its header: nothing to test here

    // A good frame longer than the caller's buffer is dropped, as async_receive drops it.
    guest.send(guest_frame(4, 200));
    guest.send(guest_frame(5, 60));
    std::vector<std::byte> small(100);
    CHECK(tap.try_receive(small).error() == errc::buffer_too_small);
    auto next = tap.try_receive(small);
    REQUIRE(next);
    CHECK(sequence_in(wire::const_bytes{small}.first(*next)) == 5);
    CHECK(tap.stats().rx_oversize == 1);
}

TEST_CASE("tap: try_receive is refused while a receive is pending, and works again in its completion") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    auto tap = make_quiet_guest(io, ns);
    guest_wire guest(ns);
    std::vector<std::byte> buffer(max_frame_len(tap.mtu()));
    std::vector<std::uint32_t> order;
    std::optional<std::error_code> in_completion;
    tap.async_receive(buffer, [&](std::error_code ec, std::size_t n) {
        REQUIRE_FALSE(ec);
        order.push_back(sequence_in(wire::const_bytes{buffer}.first(n)));
        auto more = tap.try_receive(buffer); // the burst path, from inside the completion
        if (more) order.push_back(sequence_in(wire::const_bytes{buffer}.first(*more)));
        in_completion = more.error();
    });
    CHECK(tap.try_receive(buffer).error() == std::errc::operation_in_progress);
    guest.send(guest_frame(10, 60));
    guest.send(guest_frame(11, 60));
    io.run_for(5s); // ends as soon as the receive completed: nothing else is pending
    REQUIRE(in_completion);
    CHECK_FALSE(*in_completion);
    CHECK(order == std::vector<std::uint32_t>{10, 11});
}

TEST_CASE("tap: try_receive after close() is canceled, and after the interface is deleted is peer_closed") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    std::vector<std::byte> buffer(max_frame_len(default_mtu));
    {
        auto tap = make_quiet_guest(io, ns);
        REQUIRE(test::run_in(ns, "ip link del eth0").status == 0);
        CHECK(tap.try_receive(buffer).error() == errc::peer_closed);
        CHECK(tap.try_receive(buffer).error() == errc::peer_closed);
    }
    auto tap = make_quiet_guest(io, ns);
    guest_wire guest(ns);
    guest.send(guest_frame(1, 60));
    tap.close();
    CHECK(tap.try_receive(buffer).error() == std::errc::operation_canceled); // even with a frame queued
}

TEST_CASE("tap: a port drains the guest's burst in order, many frames per turn of the event loop") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    auto tap = make_quiet_guest(io, ns);
    guest_wire guest(ns);
    for (std::uint32_t i = 0; i < 200; ++i) guest.send(guest_frame(i, 60 + i));
    auto p = make_port("tap", std::move(tap));
    std::vector<std::uint32_t> order;
    std::size_t this_turn = 0;
    std::vector<std::size_t> per_turn;
    p->start(
        [&](port&, wire::const_bytes frame) {
            CHECK(frame.size() == 60 + sequence_in(frame));
            order.push_back(sequence_in(frame));
            ++this_turn;
        },
        [](port&, std::error_code) {});
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (order.size() < 200 && std::chrono::steady_clock::now() < deadline) {
        io.run_one_for(100ms);
        if (this_turn != 0) per_turn.push_back(std::exchange(this_turn, 0));
    }
    std::vector<std::uint32_t> expected(200);
    for (std::uint32_t i = 0; i < 200; ++i) expected[i] = i;
    CHECK(order == expected);
    CHECK(per_turn.size() < 200);
    CHECK(*std::max_element(per_turn.begin(), per_turn.end()) <= port_burst_limit);
    CHECK(p->stats().rx_frames == 200);
    p->close();
    io.restart();
    io.run_for(1s);
}
