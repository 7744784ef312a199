#include <ankanet/backend/af_packet.hpp>

#include <ankanet/backend/netns.hpp>

#include "../support/netns.hpp"
#include "../support/skip.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <arpa/inet.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

using namespace ankanet;
using namespace ankanet::backend;
using namespace std::chrono_literals;

namespace {

const wire::mac_address vm_mac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
const wire::mac_address other_mac{{0x52, 0x54, 0x00, 0x65, 0x43, 0x21}};
const wire::mac_address uplink_mac{{0x02, 0xa0, 0x00, 0x00, 0x00, 0x01}}; // set on the root end
const wire::mac_address lan_mac{{0x02, 0xa0, 0x00, 0x00, 0x00, 0x02}};    // the namespace end ("the LAN")
const wire::mac_address multicast_mac{{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb}};
constexpr std::uint16_t experimental_ethertype = 0x88b5; // IEEE 802 local experimental: no kernel handler
constexpr std::size_t test_mtu = 1400;                      // not the default: mtu() must read it

/// A frame of the experimental ethertype whose payload starts with `tag`, so a test knows its own
/// frames among whatever else the interfaces carry.
std::vector<std::byte> make_frame(wire::mac_address dst, wire::mac_address src, std::uint8_t tag, std::size_t len = 100) {
    std::vector<std::byte> frame(len);
    std::memcpy(frame.data(), dst.octets().data(), 6);
    std::memcpy(frame.data() + 6, src.octets().data(), 6);
    frame[12] = std::byte{experimental_ethertype >> 8};
    frame[13] = std::byte{experimental_ethertype & 0xff};
    frame[14] = std::byte{0xa5};
    frame[15] = std::byte{tag};
    for (std::size_t i = 16; i < len; ++i) frame[i] = std::byte(i * 7);
    return frame;
}

/// The tag of one of our frames, or none for anything else.
std::optional<std::uint8_t> tag_of(std::span<const std::byte> frame) {
    if (frame.size() < 16 || frame[12] != std::byte{0x88} || frame[13] != std::byte{0xb5} || frame[14] != std::byte{0xa5}) {
        return std::nullopt;
    }
    return static_cast<std::uint8_t>(frame[15]);
}

// --- A tiny classic-BPF interpreter: the instructions af_packet_filter uses, nothing more. -------

std::optional<std::uint32_t> run_filter(const std::vector<::sock_filter>& program, std::span<const std::uint8_t> packet) {
    std::uint32_t a = 0;
    std::size_t pc = 0;
    for (int steps = 0; steps < 10000 && pc < program.size(); ++steps) {
        const auto& in = program[pc];
        const auto load = [&](std::size_t k, std::size_t width) -> std::optional<std::uint32_t> {
            if (k + width > packet.size()) return std::nullopt;
            std::uint32_t v = 0;
            for (std::size_t i = 0; i < width; ++i) v = (v << 8) | packet[k + i];
            return v;
        };
        switch (in.code) {
        case BPF_LD | BPF_B | BPF_ABS:
        case BPF_LD | BPF_H | BPF_ABS:
        case BPF_LD | BPF_W | BPF_ABS: {
            const std::size_t width = BPF_SIZE(in.code) == BPF_B ? 1 : BPF_SIZE(in.code) == BPF_H ? 2 : 4;
            auto v = load(in.k, width);
            if (!v) return 0; // out of bounds: the kernel drops the packet
            a = *v;
            ++pc;
            break;
        }
        case BPF_JMP | BPF_JA: pc += 1 + in.k; break;
        case BPF_JMP | BPF_JEQ | BPF_K: pc += 1 + (a == in.k ? in.jt : in.jf); break;
        case BPF_JMP | BPF_JSET | BPF_K: pc += 1 + ((a & in.k) != 0 ? in.jt : in.jf); break;
        case BPF_RET | BPF_K: return in.k;
        default: return std::nullopt; // an instruction this interpreter does not know
        }
    }
    return std::nullopt; // ran off the end or looped: an invalid program
}

std::vector<std::uint8_t> header_to(wire::mac_address dst) {
    std::vector<std::uint8_t> packet(60, 0);
    std::memcpy(packet.data(), dst.octets().data(), 6);
    std::memcpy(packet.data() + 6, lan_mac.octets().data(), 6);
    return packet;
}

bool accepts(const std::vector<::sock_filter>& program, wire::mac_address dst) {
    auto verdict = run_filter(program, header_to(dst));
    REQUIRE(verdict.has_value());
    return *verdict != 0;
}

} // namespace

TEST_CASE("af_packet_filter accepts the set's MACs and group addresses, drops the rest") {
    const std::vector<wire::mac_address> macs{vm_mac, uplink_mac};
    auto program = af_packet_filter(macs);
    REQUIRE(program);
    CHECK(accepts(*program, vm_mac));
    CHECK(accepts(*program, uplink_mac));
    CHECK(accepts(*program, wire::mac_address::broadcast()));
    CHECK(accepts(*program, multicast_mac));
    CHECK_FALSE(accepts(*program, other_mac));
    // The same low four bytes under another OUI, and the same OUI with other low bytes.
    CHECK_FALSE(accepts(*program, wire::mac_address{{0x52, 0x56, 0x00, 0x12, 0x34, 0x56}}));
    CHECK_FALSE(accepts(*program, wire::mac_address{{0x52, 0x54, 0x00, 0x12, 0x34, 0x57}}));
    // Too short to hold a destination MAC: dropped.
    const std::vector<std::uint8_t> runt{0x52, 0x54, 0x00};
    CHECK(run_filter(*program, runt) == std::optional<std::uint32_t>{0});
}

TEST_CASE("af_packet_filter with no MACs lets up only broadcast and multicast") {
    auto program = af_packet_filter({});
    REQUIRE(program);
    CHECK(accepts(*program, wire::mac_address::broadcast()));
    CHECK(accepts(*program, multicast_mac));
    CHECK_FALSE(accepts(*program, vm_mac));
}

TEST_CASE("af_packet_filter holds up to af_packet_max_macs MACs, every one reachable") {
    std::vector<wire::mac_address> macs;
    for (std::size_t i = 0; i < af_packet_max_macs; ++i) {
        macs.push_back(wire::mac_address{{0x52, 0x54, 0x00, 0x00, static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)}});
    }
    auto program = af_packet_filter(macs);
    REQUIRE(program);
    for (const auto& mac : macs) CHECK(accepts(*program, mac));
    CHECK_FALSE(accepts(*program, other_mac));
    CHECK(accepts(*program, wire::mac_address::broadcast()));

    macs.push_back(other_mac);
    auto too_many = af_packet_filter(macs);
    REQUIRE_FALSE(too_many);
    CHECK(too_many.error() == af_packet_errc::too_many_macs);
}

// --- With a real interface: a veth pair whose far end sits in a namespace the test creates. ------

namespace {

#define REQUIRE_NETNS_ENVIRONMENT()                                                                 \
    const std::string missing_requirement = test::missing_netns_requirements();                     \
    ANKANET_REQUIRE_ENVIRONMENT(missing_requirement.empty(), "AF_PACKET tests need " << missing_requirement)

/// A veth pair: `name()` in the root namespace (down until up()), its peer "eth0" inside `ns`, up,
/// with IPv6 off so it sends nothing the test did not ask for. Deleted with this object.
class scoped_veth {
public:
    explicit scoped_veth(const test::scoped_netns& ns) : name_("ankpk" + std::to_string(::getpid() % 1000000) + std::to_string(counter()++)) {
        const std::string peer = name_ + "p";
        auto made = test::run_command({"ip", "link", "add", name_, "address", "02:a0:00:00:00:01", "mtu", std::to_string(test_mtu),
                                       "type", "veth", "peer", "name", peer, "address", "02:a0:00:00:00:02", "mtu",
                                       std::to_string(test_mtu), "netns", ns.name()});
        INFO(made.output);
        REQUIRE(made.status == 0);
        // Our own interface's sysctl only: no IPv6 chatter (router solicitations, DAD, MLD).
        test::run_command({"sysctl", "-q", "-w", "net.ipv6.conf." + name_ + ".disable_ipv6=1"});
        auto far = test::run_in(ns, "ip link set " + peer + " name eth0 && "
                                    "{ [ ! -d /proc/sys/net/ipv6 ] || echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6; } && "
                                    "ip link set eth0 up");
        INFO(far.output);
        REQUIRE(far.status == 0);
    }
    scoped_veth(const scoped_veth&) = delete;
    scoped_veth& operator=(const scoped_veth&) = delete;
    ~scoped_veth() {
        try {
            test::run_command({"ip", "link", "del", name_}); // takes the peer with it
        } catch (...) {
        }
    }

    void up() {
        auto done = test::run_command({"ip", "link", "set", name_, "up"});
        INFO(done.output);
        REQUIRE(done.status == 0);
    }
    const std::string& name() const noexcept { return name_; }

private:
    static unsigned& counter() {
        static unsigned value = 0;
        return value;
    }
    std::string name_;
};

/// A raw packet socket on an interface (in whichever namespace the calling thread is): the
/// namespace side's NIC for sending frames onto the "LAN" and capturing what the uplink sends.
class raw_port {
public:
    static std::unique_ptr<raw_port> open_here(const std::string& interface) {
        const int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
        if (fd < 0) return nullptr;
        ::sockaddr_ll address{};
        address.sll_family = AF_PACKET;
        address.sll_protocol = htons(ETH_P_ALL);
        address.sll_ifindex = static_cast<int>(::if_nametoindex(interface.c_str()));
        if (address.sll_ifindex == 0 || ::bind(fd, reinterpret_cast<const ::sockaddr*>(&address), sizeof address) != 0) {
            ::close(fd);
            return nullptr;
        }
        return std::unique_ptr<raw_port>(new raw_port(fd));
    }
    static std::unique_ptr<raw_port> open_in(const test::scoped_netns& ns, const std::string& interface) {
        std::unique_ptr<raw_port> port;
        auto entered = run_in_netns(ns.path(), [&]() -> std::error_code {
            port = open_here(interface);
            return {};
        });
        REQUIRE_FALSE(entered);
        REQUIRE(port);
        return port;
    }
    raw_port(const raw_port&) = delete;
    raw_port& operator=(const raw_port&) = delete;
    ~raw_port() { ::close(fd_); }

    void send(const std::vector<std::byte>& frame) { REQUIRE(::send(fd_, frame.data(), frame.size(), 0) == static_cast<::ssize_t>(frame.size())); }

    /// The next of our (tagged) incoming frames within `limit`, skipping other traffic and outgoing frames.
    std::optional<std::vector<std::byte>> next_tagged(std::chrono::milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        std::vector<std::byte> buffer(65536);
        while (std::chrono::steady_clock::now() < deadline) {
            ::pollfd ready{fd_, POLLIN, 0};
            if (::poll(&ready, 1, 20) <= 0) continue;
            ::sockaddr_ll from{};
            ::socklen_t from_len = sizeof from;
            const ::ssize_t n = ::recvfrom(fd_, buffer.data(), buffer.size(), 0, reinterpret_cast<::sockaddr*>(&from), &from_len);
            if (n <= 0 || from.sll_pkttype == PACKET_OUTGOING) continue;
            std::vector<std::byte> frame(buffer.begin(), buffer.begin() + n);
            if (tag_of(frame)) return frame;
        }
        return std::nullopt;
    }

private:
    explicit raw_port(int fd) noexcept : fd_(fd) {}
    int fd_;
};

/// The next of our tagged frames the uplink delivers within `limit` (through async_receive), or
/// none. Other traffic is skipped. The receive's buffer outlives a receive left pending.
class uplink_reader {
public:
    uplink_reader(boost::asio::io_context& io, af_packet_uplink& uplink) : io_(io), uplink_(uplink), slot_(std::make_shared<slot>()) {
        slot_->buffer.resize(max_frame_len(uplink.mtu()));
    }

    std::optional<std::vector<std::byte>> next_tagged(std::chrono::milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < deadline) {
            if (!armed_) {
                armed_ = true;
                slot_->done = false;
                uplink_.async_receive(wire::mutable_bytes{slot_->buffer}, [s = slot_](std::error_code ec, std::size_t n) {
                    s->ec = ec;
                    s->size = n;
                    s->done = true;
                });
            }
            io_.restart();
            while (!slot_->done && std::chrono::steady_clock::now() < deadline) {
                io_.run_one_for(deadline - std::chrono::steady_clock::now());
            }
            if (!slot_->done) return std::nullopt;
            armed_ = false;
            REQUIRE_FALSE(slot_->ec);
            std::vector<std::byte> frame(slot_->buffer.begin(), slot_->buffer.begin() + static_cast<std::ptrdiff_t>(slot_->size));
            if (tag_of(frame)) return frame;
        }
        return std::nullopt;
    }

private:
    struct slot {
        std::vector<std::byte> buffer;
        std::error_code ec;
        std::size_t size = 0;
        bool done = false;
    };
    boost::asio::io_context& io_;
    af_packet_uplink& uplink_;
    std::shared_ptr<slot> slot_;
    bool armed_ = false;
};

std::optional<std::uint8_t> tag_in(const std::optional<std::vector<std::byte>>& frame) {
    if (!frame) return std::nullopt;
    return tag_of(std::span<const std::byte>{*frame});
}

} // namespace

TEST_CASE("af_packet_uplink refuses a missing interface and one that is down, with a clear message") {
    REQUIRE_NETNS_ENVIRONMENT();
    boost::asio::io_context io;

    auto missing = af_packet_uplink::open(io.get_executor(), "ankpk-missing");
    REQUIRE_FALSE(missing);
    CHECK(missing.error() == af_packet_errc::no_such_interface);
    CHECK(missing.error().message() == "no such network interface");

    test::scoped_netns ns;
    scoped_veth veth{ns}; // the root end stays down
    auto down = af_packet_uplink::open(io.get_executor(), veth.name());
    REQUIRE_FALSE(down);
    CHECK(down.error() == af_packet_errc::interface_down);
    CHECK(down.error().message().find("down") != std::string::npos);

    auto bad = af_packet_uplink::open(io.get_executor(), "a-name-much-too-long-for-linux");
    REQUIRE_FALSE(bad);
    CHECK(bad.error() == af_packet_errc::bad_name);

    af_packet_options too_many;
    too_many.accepted_macs.assign(af_packet_max_macs + 1, vm_mac);
    veth.up();
    auto refused = af_packet_uplink::open(io.get_executor(), veth.name(), too_many);
    REQUIRE_FALSE(refused);
    CHECK(refused.error() == af_packet_errc::too_many_macs);
}

TEST_CASE("af_packet_uplink says CAP_NET_RAW is missing when the socket is refused") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    scoped_veth veth{ns};
    veth.up();
    // A child drops CAP_NET_RAW from its effective set (still root otherwise) and tries.
    const ::pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::__user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
        std::array<::__user_cap_data_struct, 2> data{};
        if (::syscall(SYS_capget, &header, data.data()) != 0) ::_exit(10);
        data[CAP_NET_RAW / 32].effective &= ~(1u << (CAP_NET_RAW % 32));
        if (::syscall(SYS_capset, &header, data.data()) != 0) ::_exit(11);
        boost::asio::io_context child_io;
        auto refused = af_packet_uplink::open(child_io.get_executor(), veth.name());
        if (refused) ::_exit(12);
        if (refused.error() != af_packet_errc::no_permission) ::_exit(13);
        if (refused.error().message().find("CAP_NET_RAW") == std::string::npos) ::_exit(14);
        ::_exit(0);
    }
    int status = -1;
    bool reaped = false;
    for (int waited = 0; waited < 500 && !reaped; ++waited) { // bounded: 5 s
        reaped = ::waitpid(child, &status, WNOHANG) == child;
        if (!reaped) std::this_thread::sleep_for(10ms);
    }
    if (!reaped) {
        ::kill(child, SIGKILL);
        ::waitpid(child, &status, 0);
    }
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("af_packet_uplink reads the interface's MAC and MTU, and lets up only frames for the accepted MACs") {
    REQUIRE_NETNS_ENVIRONMENT();
    boost::asio::io_context io;
    test::scoped_netns ns;
    scoped_veth veth{ns};
    veth.up();

    af_packet_options options;
    options.promiscuous = true; // so it is the filter, not the NIC's address match, that drops
    options.accepted_macs = {vm_mac};
    auto uplink = af_packet_uplink::open(io.get_executor(), veth.name(), options);
    INFO((uplink ? std::string{} : uplink.error().message()));
    REQUIRE(uplink);
    CHECK(uplink->mac() == uplink_mac);
    CHECK(uplink->mtu() == test_mtu);
    CHECK(uplink->name() == veth.name());

    auto lan = raw_port::open_in(ns, "eth0");
    uplink_reader reader{io, *uplink};

    SECTION("a frame to an accepted MAC arrives intact") {
        const auto frame = make_frame(vm_mac, lan_mac, 1, 1000);
        lan->send(frame);
        auto got = reader.next_tagged(2s);
        REQUIRE(got);
        CHECK(*got == frame);
        CHECK(uplink->stats().rx_frames >= 1);
    }

    SECTION("a frame to another MAC does not, broadcast and multicast do") {
        // Frames on one veth keep their order: if the first tagged frame up is the broadcast, the
        // unicast to another MAC before it was dropped.
        lan->send(make_frame(other_mac, lan_mac, 2));
        lan->send(make_frame(wire::mac_address::broadcast(), lan_mac, 3));
        lan->send(make_frame(multicast_mac, lan_mac, 4));
        CHECK(tag_in(reader.next_tagged(2s)) == std::optional<std::uint8_t>{3});
        CHECK(tag_in(reader.next_tagged(2s)) == std::optional<std::uint8_t>{4});
    }

    SECTION("set_accepted_macs replaces the set at run time") {
        const std::array<wire::mac_address, 1> now{other_mac};
        REQUIRE_FALSE(uplink->set_accepted_macs(now));
        lan->send(make_frame(vm_mac, lan_mac, 5));
        lan->send(make_frame(other_mac, lan_mac, 6));
        CHECK(tag_in(reader.next_tagged(2s)) == std::optional<std::uint8_t>{6});

        std::vector<wire::mac_address> too_many(af_packet_max_macs + 1, vm_mac);
        CHECK(uplink->set_accepted_macs(too_many) == af_packet_errc::too_many_macs);
    }

    SECTION("try_receive drains a burst after a completion") {
        for (std::uint8_t tag = 10; tag < 15; ++tag) lan->send(make_frame(vm_mac, lan_mac, tag));
        CHECK(tag_in(reader.next_tagged(2s)) == std::optional<std::uint8_t>{10});
        std::vector<std::byte> buffer(max_frame_len(uplink->mtu()));
        std::vector<std::uint8_t> tags;
        const auto deadline = std::chrono::steady_clock::now() + 2s;
        while (tags.size() < 4 && std::chrono::steady_clock::now() < deadline) {
            auto n = uplink->try_receive(buffer);
            if (!n && is_nothing_queued(n.error())) {
                std::this_thread::sleep_for(5ms);
                continue;
            }
            REQUIRE(n);
            if (auto tag = tag_of(std::span<const std::byte>{buffer}.first(*n))) tags.push_back(*tag);
        }
        CHECK(tags == std::vector<std::uint8_t>{11, 12, 13, 14});
    }
}

TEST_CASE("af_packet_uplink sends onto the wire, and reads back neither its own frames nor the host's") {
    REQUIRE_NETNS_ENVIRONMENT();
    boost::asio::io_context io;
    test::scoped_netns ns;
    scoped_veth veth{ns};
    veth.up();

    af_packet_options options;
    options.accepted_macs = {uplink_mac}; // MAC translation: the uplink's own MAC
    auto uplink = af_packet_uplink::open(io.get_executor(), veth.name(), options);
    INFO((uplink ? std::string{} : uplink.error().message()));
    REQUIRE(uplink);
    auto lan = raw_port::open_in(ns, "eth0");
    uplink_reader reader{io, *uplink};

    // Ours: a unicast to the LAN and a broadcast, which the uplink's own filter would accept.
    const auto unicast = make_frame(lan_mac, uplink_mac, 20, 1400 + 14);
    REQUIRE_FALSE(uplink->send(unicast));
    REQUIRE_FALSE(uplink->send(make_frame(wire::mac_address::broadcast(), uplink_mac, 21)));
    CHECK(uplink->stats().tx_frames == 2);
    auto first = lan->next_tagged(2s);
    REQUIRE(first);
    CHECK(*first == unicast);
    CHECK(tag_in(lan->next_tagged(2s)) == std::optional<std::uint8_t>{21});

    // The host's: another packet socket in the root namespace sends a broadcast out of the uplink.
    auto host = raw_port::open_here(veth.name());
    REQUIRE(host);
    host->send(make_frame(wire::mac_address::broadcast(), uplink_mac, 22));
    CHECK(tag_in(lan->next_tagged(2s)) == std::optional<std::uint8_t>{22});

    // Then a frame from the LAN: the first tagged frame up must be it, not one of the three above.
    lan->send(make_frame(wire::mac_address::broadcast(), lan_mac, 23));
    CHECK(tag_in(reader.next_tagged(2s)) == std::optional<std::uint8_t>{23});
    CHECK_FALSE(reader.next_tagged(200ms));

    // Bad sizes are refused before the wire.
    CHECK(uplink->send(std::vector<std::byte>(10)) == errc::truncated);
    CHECK(uplink->send(std::vector<std::byte>(max_frame_len(test_mtu) + 1)) == errc::bad_length);
    CHECK(uplink->stats().tx_invalid == 2);

    // close() cancels a pending receive.
    std::error_code ended;
    bool done = false;
    std::vector<std::byte> buffer(max_frame_len(uplink->mtu()));
    auto second = af_packet_uplink::open(io.get_executor(), veth.name(), options);
    REQUIRE(second);
    second->async_receive(wire::mutable_bytes{buffer}, [&](std::error_code ec, std::size_t) {
        ended = ec;
        done = true;
    });
    second->close();
    io.restart();
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (!done && std::chrono::steady_clock::now() < deadline) io.run_one_for(100ms);
    CHECK(done);
    CHECK(ended == std::errc::operation_canceled);
}
