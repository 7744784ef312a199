#include <ankanet/backend/af_packet.hpp>

#include <ankanet/backend/netns.hpp>
#include <ankanet/wire/checksum.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/offload.hpp>
#include <ankanet/wire/tcp.hpp>
#include <ankanet/wire/udp.hpp>

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
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <csignal>
#include <chrono>
#include <functional>
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

/// A veth pair: `name()` in the root namespace — or in `near` when given — (down until up()), its
/// peer "eth0" inside `ns`, up, with IPv6 off so it sends nothing the test did not ask for. Deleted
/// with this object.
class scoped_veth {
public:
    explicit scoped_veth(const test::scoped_netns& ns, const test::scoped_netns* near = nullptr)
        : name_("ankpk" + std::to_string(::getpid() % 1000000) + std::to_string(counter()++)), near_(near) {
        const std::string peer = name_ + "p";
        auto made = here("ip link add " + name_ + " address 02:a0:00:00:00:01 mtu " + std::to_string(test_mtu) +
                         " type veth peer name " + peer + " address 02:a0:00:00:00:02 mtu " + std::to_string(test_mtu) +
                         " netns " + ns.name());
        INFO(made.output);
        REQUIRE(made.status == 0);
        // Our own interface's sysctl only: no IPv6 chatter (router solicitations, DAD, MLD).
        here("sysctl -q -w net.ipv6.conf." + name_ + ".disable_ipv6=1");
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
            here("ip link del " + name_); // takes the peer with it
        } catch (...) {
        }
    }

    void up() {
        auto done = here("ip link set " + name_ + " up");
        INFO(done.output);
        REQUIRE(done.status == 0);
    }
    const std::string& name() const noexcept { return name_; }

    /// Runs shell `command` where this end lives (the root namespace or `near`).
    test::command_result here(const std::string& command) const {
        return near_ != nullptr ? test::run_in(*near_, command) : test::run_command({"sh", "-c", command});
    }

private:
    static unsigned& counter() {
        static unsigned value = 0;
        return value;
    }
    std::string name_;
    const test::scoped_netns* near_;
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
        return next_matching(limit, [](std::span<const std::byte> frame) { return tag_of(frame).has_value(); });
    }

    /// The next incoming frame within `limit` that `wanted` accepts.
    std::optional<std::vector<std::byte>> next_matching(std::chrono::milliseconds limit,
                                                        const std::function<bool(std::span<const std::byte>)>& wanted) {
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
            if (wanted(frame)) return frame;
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
        slot_->buffer.resize(uplink.max_receive_len());
    }

    std::optional<std::vector<std::byte>> next_tagged(std::chrono::milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < deadline) {
            auto got = next(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
            if (!got) return std::nullopt;
            if (tag_of(got->frame)) return std::move(got->frame);
        }
        return std::nullopt;
    }

    struct received {
        std::vector<std::byte> frame;
        wire::offload meta; ///< last_offload() when it was delivered
    };

    /// The next frame the uplink delivers within `limit`, whatever it is.
    std::optional<received> next(std::chrono::milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
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
        return received{std::vector<std::byte>(slot_->buffer.begin(), slot_->buffer.begin() + static_cast<std::ptrdiff_t>(slot_->size)),
                        uplink_.last_offload()};
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

// --- Offloads: real TCP and UDP between two namespaces the test creates, across the veth. --------

namespace {

// A /30 on the veth's two ends, both inside the test's own namespaces: nothing can leave.
const wire::ipv4_address near_ip{10, 211, 0, 1};
const wire::ipv4_address far_ip{10, 211, 0, 2};
constexpr std::uint16_t bulk_port = 5201;
constexpr std::size_t l4_offset = wire::ethernet::header_len + wire::ipv4::header_len;

std::byte pattern(std::size_t i) { return std::byte(static_cast<unsigned char>((i * 7 + 3) % 256)); }

/// Closes a descriptor with the test.
struct fd_guard {
    int fd;
    explicit fd_guard(int fd_) noexcept : fd(fd_) {}
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};

/// Two namespaces joined by a veth: the uplink's end in `near`, "eth0" in `far`, each with its
/// address of the /30. Both ends keep the kernel's default offloads (checksum, TSO).
struct lan_pair {
    test::scoped_netns near;
    test::scoped_netns far;
    scoped_veth veth{far, &near};

    lan_pair() {
        veth.up();
        auto here = veth.here("ip addr add 10.211.0.1/30 dev " + veth.name());
        INFO(here.output);
        REQUIRE(here.status == 0);
        auto there = test::run_in(far, "ip addr add 10.211.0.2/30 dev eth0");
        INFO(there.output);
        REQUIRE(there.status == 0);
    }
};

af_packet_uplink open_uplink(boost::asio::io_context& io, const lan_pair& lan, const af_packet_options& options) {
    auto uplink = run_in_netns(lan.near.path(), [&]() -> result<af_packet_uplink> {
        return af_packet_uplink::open(io.get_executor(), lan.veth.name(), options);
    });
    INFO((uplink ? std::string{} : uplink.error().message()));
    REQUIRE(uplink);
    return std::move(*uplink);
}

/// An AF_INET socket of `type` made inside `ns` (it stays there whichever thread uses it).
int socket_in(const test::scoped_netns& ns, int type) {
    auto fd = run_in_netns(ns.path(), [&]() -> result<int> {
        const int s = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
        if (s < 0) return std::error_code{errno, std::system_category()};
        return s;
    });
    REQUIRE(fd);
    return *fd;
}

::sockaddr_in socket_address(wire::ipv4_address ip, std::uint16_t port) {
    ::sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(ip.to_u32());
    return address;
}

/// The far end connects to a listener on near_ip and writes `total` bytes of pattern(), which the
/// near end reads and checks: far's TCP sends through the veth with TSO, so the near end receives
/// super-frames. Two threads, each bounded in time.
class bulk_transfer {
public:
    bulk_transfer(const lan_pair& lan, std::size_t total)
        : listener_(socket_in(lan.near, SOCK_STREAM)), client_(socket_in(lan.far, SOCK_STREAM)), total_(total) {
        const int on = 1;
        REQUIRE(::setsockopt(listener_.fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0);
        const auto at = socket_address(near_ip, bulk_port);
        REQUIRE(::bind(listener_.fd, reinterpret_cast<const ::sockaddr*>(&at), sizeof at) == 0);
        REQUIRE(::listen(listener_.fd, 1) == 0);
        const ::timeval limit{5, 0}; // connect and each send give up after it
        REQUIRE(::setsockopt(client_.fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit) == 0);
        receiver_ = std::thread([this] { receive_all(); });
        sender_ = std::thread([this] { send_all(); });
    }
    bulk_transfer(const bulk_transfer&) = delete;
    bulk_transfer& operator=(const bulk_transfer&) = delete;
    ~bulk_transfer() { join(); }

    bool done() const noexcept { return finished_ == 2; }
    void join() {
        if (sender_.joinable()) sender_.join();
        if (receiver_.joinable()) receiver_.join();
    }
    /// After join(): what the near end read, and whether it was the pattern.
    std::size_t received() const noexcept { return received_; }
    bool intact() const noexcept { return intact_; }

private:
    void send_all() {
        const auto at = socket_address(near_ip, bulk_port);
        if (::connect(client_.fd, reinterpret_cast<const ::sockaddr*>(&at), sizeof at) == 0) {
            std::vector<std::byte> chunk(64 * 1024);
            std::size_t sent = 0;
            const auto deadline = std::chrono::steady_clock::now() + 10s;
            while (sent < total_ && std::chrono::steady_clock::now() < deadline) {
                const std::size_t n = std::min(chunk.size(), total_ - sent);
                for (std::size_t i = 0; i < n; ++i) chunk[i] = pattern(sent + i);
                const ::ssize_t wrote = ::send(client_.fd, chunk.data(), n, MSG_NOSIGNAL);
                if (wrote < 0 && errno == EINTR) continue;
                if (wrote <= 0) break;
                sent += static_cast<std::size_t>(wrote);
            }
        }
        ::shutdown(client_.fd, SHUT_WR);
        ++finished_;
    }

    void receive_all() {
        ::pollfd incoming{listener_.fd, POLLIN, 0};
        if (::poll(&incoming, 1, 5000) == 1) {
            fd_guard connection{::accept4(listener_.fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)};
            std::vector<std::byte> buffer(64 * 1024);
            const auto deadline = std::chrono::steady_clock::now() + 10s;
            while (connection.fd >= 0 && std::chrono::steady_clock::now() < deadline) {
                ::pollfd ready{connection.fd, POLLIN, 0};
                if (::poll(&ready, 1, 100) <= 0) continue;
                const ::ssize_t n = ::recv(connection.fd, buffer.data(), buffer.size(), 0);
                if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
                if (n <= 0) break; // end of stream, or an error
                for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
                    if (buffer[i] != pattern(received_ + i)) intact_ = false;
                }
                received_ += static_cast<std::size_t>(n);
            }
        }
        ++finished_;
    }

    fd_guard listener_;
    fd_guard client_;
    std::size_t total_;
    std::atomic<int> finished_{0};
    std::size_t received_ = 0; // the receiver's until join()
    bool intact_ = true;
    std::thread receiver_;
    std::thread sender_;
};

/// The IPv4 header and TCP segment of an Ethernet frame (no VLAN tag), lengths checked.
struct tcp_view {
    wire::ipv4::packet<wire::const_bytes> ip;
    wire::tcp::packet<wire::const_bytes> tcp;
};
std::optional<tcp_view> tcp_in(wire::const_bytes frame) {
    const wire::ethernet::packet<wire::const_bytes> eth{frame};
    if (eth.check_len() || eth.ethertype() != wire::ethernet::ethertype::ipv4) return std::nullopt;
    const wire::ipv4::packet<wire::const_bytes> ip{eth.payload()};
    if (ip.check_len() || ip.protocol() != wire::ipv4::protocol::tcp) return std::nullopt;
    const wire::tcp::packet<wire::const_bytes> tcp{ip.payload()};
    if (tcp.check_len()) return std::nullopt;
    return tcp_view{ip, tcp};
}

/// An IPv4 frame from the uplink to the far end with `l4_len` bytes after the IPv4 header, which
/// the caller writes.
std::vector<std::byte> ipv4_frame(std::uint8_t protocol, std::size_t l4_len, std::uint16_t id) {
    const wire::ethernet::repr eth{uplink_mac, lan_mac, wire::ethernet::ethertype::ipv4, std::nullopt};
    wire::ipv4::repr ip;
    ip.source = near_ip;
    ip.destination = far_ip;
    ip.protocol = protocol;
    ip.identification = id;
    ip.dont_fragment = true;
    ip.payload_len = l4_len;
    std::vector<std::byte> frame(l4_offset + l4_len);
    REQUIRE_FALSE(eth.emit(frame));
    REQUIRE_FALSE(ip.emit(wire::mutable_bytes{frame}.subspan(wire::ethernet::header_len)));
    return frame;
}

/// Leaves the checksum at `field` unfinished, as a stack with checksum offload hands a segment of
/// `l4_len` bytes to its NIC: the pseudo-header sum, not complemented.
void leave_unfinished(std::vector<std::byte>& frame, std::size_t field, std::uint8_t protocol, std::size_t l4_len) {
    const auto sum = wire::checksum::ipv4_pseudo_header(near_ip, far_ip, protocol, static_cast<std::uint16_t>(l4_len)).sum();
    wire::store_be16(frame, field, sum);
}

/// A UDP frame to `port` on the far end carrying `text`, its checksum unfinished.
std::vector<std::byte> unfinished_udp(std::uint16_t port, std::string_view text) {
    wire::udp::repr udp;
    udp.source_port = 40000;
    udp.destination_port = port;
    udp.payload_len = text.size();
    const std::size_t l4_len = udp.buffer_len() + text.size();
    auto frame = ipv4_frame(wire::ipv4::protocol::udp, l4_len, 7);
    std::memcpy(frame.data() + l4_offset + udp.buffer_len(), text.data(), text.size());
    REQUIRE_FALSE(udp.emit(wire::mutable_bytes{frame}.subspan(l4_offset), near_ip, far_ip));
    leave_unfinished(frame, l4_offset + wire::udp::field::checksum, wire::ipv4::protocol::udp, l4_len);
    return frame;
}

#define REQUIRE_ETHTOOL()                                                                           \
    ANKANET_REQUIRE_ENVIRONMENT(test::run_command({"ethtool", "--version"}).status == 0,            \
                                "the `ethtool` command (to turn the veth's offloads off)")

} // namespace

TEST_CASE("af_packet_uplink hands over a veth peer's TSO super-frames and unfinished checksums with their metadata") {
    REQUIRE_NETNS_ENVIRONMENT();
    boost::asio::io_context io;
    lan_pair lan;
    af_packet_options options;
    options.accepted_macs = {uplink_mac};
    auto uplink = open_uplink(io, lan, options);
    CHECK(uplink.accepts_offload());
    CHECK(uplink.max_receive_len() == wire::offload::max_frame_len);
    uplink_reader reader{io, uplink};

    constexpr std::size_t total = 1 << 20;
    bulk_transfer transfer{lan, total};
    std::optional<uplink_reader::received> super;   // GSO, longer than the MTU allows
    std::optional<uplink_reader::received> partial; // NEEDS_CSUM only
    std::size_t plain = 0;                          // ARP, for one: DATA_VALID from the veth, cleared
    std::size_t data_valid = 0;
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while ((!super || !partial) && std::chrono::steady_clock::now() < deadline) {
        auto got = reader.next(200ms);
        if (!got) {
            if (transfer.done()) break;
            continue;
        }
        if (got->meta.data_valid) ++data_valid;
        if (got->meta.is_gso()) {
            if (!super && got->frame.size() > max_frame_len(uplink.mtu())) super = std::move(got);
        } else if (got->meta.needs_csum) {
            if (!partial && tcp_in(got->frame)) partial = std::move(got);
        } else {
            ++plain;
        }
    }
    transfer.join();
    CHECK(transfer.received() == total);
    CHECK(transfer.intact());
    CHECK(data_valid == 0);
    CHECK(plain >= 1);
    CHECK(uplink.vnet_header_errors() == 0);
    CHECK(uplink.stats().rx_oversize == 0);

    REQUIRE(super);
    const auto& meta = super->meta;
    CHECK(meta.gso_type == wire::offload::gso::tcpv4);
    CHECK(meta.needs_csum);
    CHECK(meta.gso_size > 0);
    CHECK(meta.gso_size <= uplink.mtu() - 40);
    CHECK(meta.csum_start == l4_offset);
    CHECK(meta.csum_offset == wire::tcp::field::checksum);
    const auto original = tcp_in(super->frame);
    REQUIRE(original);

    // Cut as a NIC would: every segment fits the MTU and carries checksums that verify.
    std::vector<std::byte> scratch(wire::offload::max_frame_len);
    std::size_t segments = 0;
    std::size_t payload = 0;
    std::size_t too_long = 0;
    std::size_t bad_checksums = 0;
    auto cut = wire::segment(super->frame, meta, scratch, [&](wire::mutable_bytes piece) {
        ++segments;
        if (piece.size() > max_frame_len(uplink.mtu())) ++too_long;
        auto seg = tcp_in(piece);
        if (!seg || !seg->ip.verify_checksum() || !seg->tcp.verify_checksum(seg->ip.source(), seg->ip.destination())) {
            ++bad_checksums;
            return;
        }
        payload += seg->tcp.payload().size();
    });
    REQUIRE_FALSE(cut);
    CHECK(segments >= 2);
    CHECK(too_long == 0);
    CHECK(bad_checksums == 0);
    CHECK(payload == original->tcp.payload().size());

    // A segment with only its checksum unfinished: finished here, it verifies.
    REQUIRE(partial);
    CHECK(partial->meta.csum_start == l4_offset);
    CHECK(partial->meta.csum_offset == wire::tcp::field::checksum);
    auto finished = partial->frame;
    REQUIRE_FALSE(wire::complete_checksum(finished, partial->meta));
    auto seg = tcp_in(finished);
    REQUIRE(seg);
    CHECK(seg->tcp.verify_checksum(seg->ip.source(), seg->ip.destination()));
}

TEST_CASE("af_packet_uplink without the virtio-net header drops the veth peer's super-frames as oversize, as before") {
    REQUIRE_NETNS_ENVIRONMENT();
    boost::asio::io_context io;
    lan_pair lan;
    af_packet_options options;
    options.accepted_macs = {uplink_mac};
    options.vnet_header = false;
    auto uplink = open_uplink(io, lan, options);
    CHECK_FALSE(uplink.accepts_offload());
    CHECK(uplink.max_receive_len() == max_frame_len(uplink.mtu()));
    uplink_reader reader{io, uplink};

    bulk_transfer transfer{lan, 1 << 20};
    std::size_t delivered = 0;
    std::size_t too_long = 0;
    std::size_t with_metadata = 0;
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (uplink.stats().rx_oversize == 0 && std::chrono::steady_clock::now() < deadline) {
        auto got = reader.next(200ms);
        if (!got) {
            if (transfer.done()) break;
            continue;
        }
        ++delivered;
        if (got->frame.size() > max_frame_len(uplink.mtu())) ++too_long;
        if (got->meta != wire::offload{}) ++with_metadata;
    }
    transfer.join();
    CHECK(uplink.stats().rx_oversize >= 1);
    CHECK(delivered >= 1);
    CHECK(too_long == 0);
    CHECK(with_metadata == 0);
    CHECK(uplink.vnet_header_errors() == 0);

    // Metadata that asks for work is refused: there is no header to carry it.
    const auto frame = unfinished_udp(5300, "no header");
    wire::offload meta;
    meta.needs_csum = true;
    meta.csum_start = l4_offset;
    meta.csum_offset = wire::udp::field::checksum;
    CHECK(uplink.send(frame, meta) == errc::unsupported);
    CHECK(uplink.stats().tx_invalid == 1);
}

TEST_CASE("af_packet_uplink sends offload metadata: the kernel finishes the checksum and segments the super-frame") {
    REQUIRE_NETNS_ENVIRONMENT();
    REQUIRE_ETHTOOL();
    boost::asio::io_context io;
    lan_pair lan;
    // Our end can neither checksum nor segment (a NIC without offloads): the kernel does both in
    // software before the wire. The far end verifies checksums itself instead of trusting the veth.
    auto ours = lan.veth.here("ethtool -K " + lan.veth.name() + " tx off tso off");
    INFO(ours.output);
    REQUIRE(ours.status == 0);
    auto theirs = test::run_in(lan.far, "ethtool -K eth0 rx off");
    INFO(theirs.output);
    REQUIRE(theirs.status == 0);

    auto uplink = open_uplink(io, lan, {});
    REQUIRE(uplink.accepts_offload());
    auto capture = raw_port::open_in(lan.far, "eth0");

    SECTION("a UDP datagram with NEEDS_CSUM reaches a socket on the far end") {
        constexpr std::uint16_t port = 5300;
        fd_guard socket{socket_in(lan.far, SOCK_DGRAM)};
        const auto at = socket_address(far_ip, port);
        REQUIRE(::bind(socket.fd, reinterpret_cast<const ::sockaddr*>(&at), sizeof at) == 0);

        wire::offload meta;
        meta.needs_csum = true;
        meta.csum_start = l4_offset;
        meta.csum_offset = wire::udp::field::checksum;
        // First the same kind of frame without the metadata: its checksum stays wrong and the far
        // end drops it, so the datagram that arrives first shows the kernel finished the second.
        REQUIRE_FALSE(uplink.send(unfinished_udp(port, "left unfinished")));
        REQUIRE_FALSE(uplink.send(unfinished_udp(port, "finished by the kernel"), meta));
        CHECK(uplink.stats().tx_frames == 2);

        ::pollfd ready{socket.fd, POLLIN, 0};
        REQUIRE(::poll(&ready, 1, 2000) == 1);
        std::array<char, 64> text{};
        const ::ssize_t n = ::recv(socket.fd, text.data(), text.size(), MSG_DONTWAIT);
        REQUIRE(n > 0);
        CHECK(std::string_view(text.data(), static_cast<std::size_t>(n)) == "finished by the kernel");
    }

    SECTION("a TCPv4 super-frame leaves as MTU-sized segments whose checksums verify") {
        constexpr std::uint16_t port = 5301;
        constexpr std::size_t data_len = 20000;
        constexpr std::uint32_t first_seq = 1000;
        const auto mss = static_cast<std::uint16_t>(test_mtu - 40);
        wire::tcp::repr header;
        header.source_port = 40001;
        header.destination_port = port;
        header.seq_number = first_seq;
        header.ack_number = 1;
        header.flags = wire::tcp::flag_set{wire::tcp::flag::ack}.set(wire::tcp::flag::psh);
        header.window = 65535;
        header.payload_len = data_len;
        const std::size_t l4_len = header.buffer_len() + data_len;
        auto frame = ipv4_frame(wire::ipv4::protocol::tcp, l4_len, 0x100);
        for (std::size_t i = 0; i < data_len; ++i) frame[l4_offset + header.buffer_len() + i] = pattern(i);
        REQUIRE_FALSE(header.emit(wire::mutable_bytes{frame}.subspan(l4_offset), near_ip, far_ip));
        leave_unfinished(frame, l4_offset + wire::tcp::field::checksum, wire::ipv4::protocol::tcp, l4_len);
        const auto meta = wire::offload::tcpv4_gso(l4_offset, l4_offset + header.buffer_len(), mss);

        // Without the metadata it is just too long; with metadata the spec forbids, refused.
        CHECK(uplink.send(frame) == errc::bad_length);
        auto forbidden = meta;
        forbidden.needs_csum = false;
        CHECK(uplink.send(frame, forbidden));
        CHECK(uplink.stats().tx_invalid == 2);
        REQUIRE_FALSE(uplink.send(frame, meta));

        std::size_t segments = 0;
        std::size_t received = 0;
        std::size_t too_long = 0;
        std::size_t bad = 0;
        while (received < data_len) {
            auto got = capture->next_matching(2s, [&](std::span<const std::byte> f) {
                auto seg = tcp_in(f);
                return seg && seg->tcp.destination_port() == port;
            });
            if (!got) break;
            ++segments;
            if (got->size() > max_frame_len(test_mtu)) ++too_long;
            auto seg = tcp_in(*got);
            REQUIRE(seg);
            if (!seg->ip.verify_checksum() || !seg->tcp.verify_checksum(seg->ip.source(), seg->ip.destination())) ++bad;
            const std::size_t offset = seg->tcp.seq_number() - first_seq;
            const auto data = seg->tcp.payload();
            for (std::size_t i = 0; i < data.size(); ++i) {
                if (offset + i >= data_len || data[i] != pattern(offset + i)) ++bad;
            }
            received += data.size();
        }
        CHECK(received == data_len);
        CHECK(segments == (data_len + mss - 1) / mss);
        CHECK(too_long == 0);
        CHECK(bad == 0);
    }
}
