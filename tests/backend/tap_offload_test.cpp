// The TAP's virtio-net header against a real kernel: a namespace's TCP stack is the guest, this
// test (holding the TAP) the gateway, speaking TCP by hand to a Python listener in the namespace.
#include <ankanet/backend/tap.hpp>

#include <ankanet/backend/netns.hpp>
#include <ankanet/backend/offload.hpp>
#include <ankanet/backend/pcap.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/offload.hpp>
#include <ankanet/wire/tcp.hpp>

#include "../support/netns.hpp"
#include "../support/skip.hpp"
#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace ankanet;
using namespace ankanet::backend;
using namespace std::chrono_literals;

namespace {

const wire::mac_address guest_mac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
const wire::mac_address gateway_mac{{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}};
const wire::ipv4_address guest_ip{192, 168, 64, 2};
const wire::ipv4_address gateway_ip{192, 168, 64, 1};
constexpr std::uint16_t server_port = 5001;
constexpr std::uint16_t client_port = 40001;
constexpr std::uint16_t mss = 1460;

#define REQUIRE_NETNS_ENVIRONMENT()                                                                 \
    const std::string missing_requirement = test::missing_netns_requirements();                     \
    ANKANET_REQUIRE_ENVIRONMENT(missing_requirement.empty(), "TAP offload tests need " << missing_requirement)

/// A guest namespace behind TAP "eth0", opened with `options` plus the guest's MAC and MTU; the
/// gateway's MAC is a permanent neighbour, so the guest sends no ARP.
tap_device make_guest(boost::asio::io_context& io, const test::scoped_netns& ns, tap_options options) {
    const auto quiet = test::run_in(ns, "[ ! -d /proc/sys/net/ipv6 ] || { echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 "
                                        "&& echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; }");
    INFO(quiet.output);
    REQUIRE(quiet.status == 0);
    options.set_interface_mtu = true;
    options.mac = guest_mac;
    auto tap = tap_device::open_in_netns(io.get_executor(), ns.path(), "eth0", options);
    INFO((tap ? std::string{} : tap.error().message()));
    REQUIRE(tap);
    const auto configured = test::run_in(ns, "ip addr add 192.168.64.2/24 dev eth0 && ip link set eth0 up && ip link set lo up && "
                                             "ip neigh replace 192.168.64.1 lladdr 52:55:0a:00:02:02 dev eth0 nud permanent");
    INFO(configured.output);
    REQUIRE(configured.status == 0);
    return std::move(*tap);
}

struct received_frame {
    std::vector<std::byte> bytes;
    wire::offload meta;
};

/// An echo request from the gateway to the guest.
std::vector<std::byte> echo_request_from_gateway() {
    const wire::icmp::repr icmp{wire::icmp::echo_request{0x4242, 1, wire::as_bytes("offload")}};
    wire::ipv4::repr ip;
    ip.source = gateway_ip;
    ip.destination = guest_ip;
    ip.protocol = wire::ipv4::protocol::icmp;
    ip.payload_len = icmp.buffer_len();
    const wire::ethernet::repr eth{gateway_mac, guest_mac, wire::ethernet::ethertype::ipv4, std::nullopt};
    std::vector<std::byte> frame(eth.buffer_len() + ip.buffer_len() + icmp.buffer_len());
    REQUIRE_FALSE(eth.emit(frame));
    REQUIRE_FALSE(ip.emit(wire::mutable_bytes{frame}.subspan(eth.buffer_len())));
    REQUIRE_FALSE(icmp.emit(wire::mutable_bytes{frame}.subspan(eth.buffer_len() + ip.buffer_len())));
    return frame;
}

/// Polls try_receive until a frame arrives or `limit` passes (a TAP, or a decorator over one).
template <class Tap>
std::optional<received_frame> next_frame(Tap& tap, std::chrono::milliseconds limit) {
    std::vector<std::byte> buffer(tap.max_receive_len());
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        auto n = tap.try_receive(buffer);
        if (n) return received_frame{{buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(*n)}, tap.last_offload()};
        REQUIRE(is_nothing_queued(n.error()));
        std::this_thread::sleep_for(2ms);
    }
    return std::nullopt;
}

/// The next TCP frame from the server, its checksum finished when the kernel left it to us.
struct server_segment {
    received_frame frame;
    wire::tcp::repr tcp;
    std::vector<std::byte> payload;
};

std::optional<server_segment> next_server_segment(tap_device& tap, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        auto frame = next_frame(tap, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
        if (!frame) return std::nullopt;
        const auto parsed = wire::parsed_frame::parse(frame->bytes);
        if (!parsed.is_ipv4() || parsed.protocol != wire::ipv4::protocol::tcp || !parsed.has_ports ||
            parsed.source_port != server_port || parsed.destination_port != client_port) {
            continue;
        }
        server_segment s{*frame, {}, {}};
        // With TUN_F_CSUM the kernel leaves TCP checksums to us: finish, then verify strictly.
        REQUIRE_FALSE(wire::complete_checksum(s.frame.bytes, s.frame.meta));
        const wire::ipv4::packet<wire::const_bytes> ip{wire::const_bytes{s.frame.bytes}.subspan(wire::ethernet::header_len)};
        REQUIRE(wire::ipv4::repr::parse(ip));
        const wire::tcp::packet<wire::const_bytes> seg{ip.payload()};
        auto tcp = wire::tcp::repr::parse(seg, guest_ip, gateway_ip);
        INFO((tcp ? std::string{} : tcp.error().message()));
        REQUIRE(tcp);
        s.tcp = *tcp;
        s.payload.assign(seg.payload().begin(), seg.payload().end());
        return s;
    }
    return std::nullopt;
}

/// A TCP frame from the gateway to the server, checksum finished.
std::vector<std::byte> client_frame(const wire::tcp::repr& header, wire::const_bytes payload, std::uint16_t id) {
    wire::tcp::repr seg = header;
    seg.source_port = client_port;
    seg.destination_port = server_port;
    seg.payload_len = payload.size();
    wire::ipv4::repr ip;
    ip.source = gateway_ip;
    ip.destination = guest_ip;
    ip.protocol = wire::ipv4::protocol::tcp;
    ip.identification = id;
    ip.dont_fragment = true;
    ip.payload_len = seg.buffer_len() + payload.size();
    const wire::ethernet::repr eth{gateway_mac, guest_mac, wire::ethernet::ethertype::ipv4, std::nullopt};
    const std::size_t l4 = eth.buffer_len() + ip.buffer_len();
    std::vector<std::byte> frame(l4 + seg.buffer_len() + payload.size());
    REQUIRE_FALSE(eth.emit(frame));
    REQUIRE_FALSE(ip.emit(wire::mutable_bytes{frame}.subspan(eth.buffer_len())));
    wire::store_bytes(frame, l4 + seg.buffer_len(), payload);
    REQUIRE_FALSE(seg.emit(wire::mutable_bytes{frame}.subspan(l4), gateway_ip, guest_ip));
    return frame;
}

std::byte pattern(std::size_t i) { return std::byte(static_cast<unsigned char>((i * 7 + 3) % 256)); }

// Reads until end of stream, says how much came and whether it was the pattern above, then sends
// data back (what it can queue at once: the test never acknowledges it) and lingers so that the
// kernel transmits it while the test listens.
const std::string server_script = R"(python3 -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.168.64.2", 5001))
s.listen(1)
s.settimeout(15)
c, _ = s.accept()
c.settimeout(10)
data = bytearray()
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    data += b
expected = bytes((i * 7 + 3) % 256 for i in range(len(data)))
print("received", len(data), "intact" if data == expected else "corrupt", flush=True)
c.setblocking(False)
try:
    c.send(b"r" * 100000)
except OSError:
    pass
time.sleep(3)
')";

} // namespace

TEST_CASE("tap offload: open() and adopt() refuse offload options that do not hold together") {
    boost::asio::io_context io;
    tap_options options;
    options.tso4 = true; // without vnet_header
    CHECK(tap_device::open(io.get_executor(), "ankoff0", options).error() == std::errc::invalid_argument);
    options = {};
    options.checksum_offload = true;
    CHECK(tap_device::open(io.get_executor(), "ankoff0", options).error() == std::errc::invalid_argument);
    options = {};
    options.vnet_header = true;
    options.vnet_header_len = 11;
    CHECK(tap_device::open(io.get_executor(), "ankoff0", options).error() == std::errc::invalid_argument);
    CHECK(tap_device::adopt(io.get_executor(), -1, options).error() == std::errc::invalid_argument);
}

TEST_CASE("tap offload: adopt() takes a virtio-net TAP when asked to, and refuses a plain one then") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    const auto raw = [&](int flags) {
        auto fd = run_in_netns(ns.path(), [&]() -> result<int> {
            const int opened = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
            if (opened < 0) return std::error_code{errno, std::system_category()};
            ::ifreq request{};
            std::strncpy(request.ifr_name, "tapv0", IFNAMSIZ - 1);
            request.ifr_flags = static_cast<short>(flags);
            if (::ioctl(opened, TUNSETIFF, &request) != 0) {
                const std::error_code why{errno, std::system_category()};
                ::close(opened);
                return why;
            }
            return opened;
        });
        REQUIRE(fd);
        return *fd;
    };
    tap_options options;
    options.vnet_header = true;
    options.vnet_header_len = wire::offload::header_len_v1;
    options.tso4 = true;

    const int plain = raw(IFF_TAP | IFF_NO_PI);
    CHECK(tap_device::adopt(io.get_executor(), plain, options).error() == tap_errc::no_vnet_header);
    ::close(plain);

    const int vnet = raw(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
    auto adopted = tap_device::adopt(io.get_executor(), vnet, options);
    REQUIRE(adopted);
    CHECK(adopted->accepts_offload());
    CHECK(adopted->max_receive_len() == wire::offload::max_frame_len);
    int length = 0;
    REQUIRE(::ioctl(vnet, TUNGETVNETHDRSZ, &length) == 0);
    CHECK(length == 12);
}

TEST_CASE("tap offload: with a virtio-net header and no offloads, plain frames pass both ways") {
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    boost::asio::io_context io;
    tap_options options;
    options.vnet_header = true;
    auto tap = make_guest(io, ns, options);
    CHECK(tap.accepts_offload());
    CHECK(tap.max_receive_len() == max_frame_len(default_mtu));

    // An echo request from the gateway, sent with an all-clear header; the guest answers.
    const auto frame = echo_request_from_gateway();
    REQUIRE_FALSE(tap.send(frame));

    bool answered = false;
    while (auto got = next_frame(tap, 3s)) {
        const auto parsed = wire::parsed_frame::parse(got->bytes);
        if (!parsed.is_ipv4() || parsed.protocol != wire::ipv4::protocol::icmp) continue;
        CHECK_FALSE(got->meta.is_gso());
        CHECK_FALSE(got->meta.needs_csum); // no TUN_F_CSUM: the kernel finished it
        answered = parsed.ip_source == guest_ip;
        break;
    }
    CHECK(answered);
    CHECK(tap.vnet_header_errors() == 0);
}

TEST_CASE("tap offload: a pcap recorder over a virtio-net TAP passes its offloads on and records what crosses") {
    static_assert(offload_receiver<pcap_recorder<tap_device>> && offload_backend<pcap_recorder<tap_device>>);
    static_assert(!offload_backend<pcap_recorder<memory_endpoint>>);
    REQUIRE_NETNS_ENVIRONMENT();
    test::scoped_netns ns;
    test::temp_dir dir;
    boost::asio::io_context io;
    tap_options options;
    options.vnet_header = true;
    options.checksum_offload = true;
    options.tso4 = true;
    auto opened = pcap_recorder<tap_device>::open(make_guest(io, ns, options), dir.path / "guest.pcap");
    REQUIRE(opened);
    auto& recorder = *opened;
    CHECK(recorder.accepts_offload());
    CHECK(recorder.max_receive_len() == wire::offload::max_frame_len);

    // Sent with (all-clear) metadata through the recorder; the answer comes back with the TAP's.
    const auto frame = echo_request_from_gateway();
    REQUIRE_FALSE(recorder.send(frame, wire::offload{}));
    std::optional<received_frame> answer;
    while (auto got = next_frame(recorder, 3s)) {
        const auto parsed = wire::parsed_frame::parse(got->bytes);
        if (parsed.is_ipv4() && parsed.protocol == wire::ipv4::protocol::icmp && parsed.ip_source == guest_ip) {
            answer = std::move(got);
            break;
        }
    }
    REQUIRE(answer);
    CHECK(answer->meta == recorder.next_layer().last_offload());
    REQUIRE_FALSE(recorder.writer()->flush());
    CHECK(recorder.writer()->stats().records >= 2); // the request sent, the answer received (and what the guest said first)
}

TEST_CASE("tap offload: the kernel takes a 64 KiB TCP super-frame from us and sends us TSO frames") {
    REQUIRE_NETNS_ENVIRONMENT();
    ANKANET_REQUIRE_ENVIRONMENT(test::run_command({"python3", "-c", "pass"}).status == 0, "the TCP server in this test needs python3");
    test::scoped_netns ns;
    boost::asio::io_context io;
    tap_options options;
    options.vnet_header = true;
    options.tso4 = true;
    auto tap = make_guest(io, ns, options);
    REQUIRE(tap.max_receive_len() == wire::offload::max_frame_len);

    auto server = std::async(std::launch::async, [&] { return test::run_in(ns, server_script, 25s); });

    // Handshake, retried until the listener is up (a RST says it is not yet).
    constexpr std::uint32_t isn = 1000;
    wire::tcp::repr syn;
    syn.seq_number = isn;
    syn.flags = wire::tcp::flag::syn;
    syn.window = 65535;
    syn.mss = mss;
    std::optional<server_segment> syn_ack;
    for (int attempt = 0; attempt < 50 && !syn_ack; ++attempt) {
        REQUIRE_FALSE(tap.send(client_frame(syn, {}, 1)));
        auto answer = next_server_segment(tap, 300ms);
        if (answer && answer->tcp.flags.syn() && answer->tcp.flags.ack()) syn_ack = answer;
        else if (!answer || answer->tcp.flags.rst()) std::this_thread::sleep_for(100ms);
    }
    REQUIRE(syn_ack);
    REQUIRE(syn_ack->tcp.ack_number == isn + 1);
    const std::uint32_t server_next = syn_ack->tcp.seq_number + 1;
    const std::uint16_t send_mss = std::min<std::uint16_t>(mss, syn_ack->tcp.mss.value_or(536));
    wire::tcp::repr ack;
    ack.seq_number = isn + 1;
    ack.ack_number = server_next;
    ack.flags = wire::tcp::flag::ack;
    ack.window = 65535;
    REQUIRE_FALSE(tap.send(client_frame(ack, {}, 2)));

    // One super-frame as large as the guest's window lets it be (no window scaling was offered,
    // so at most 64 KiB - 1), with the checksum left partial as a virtio driver leaves it.
    const std::size_t size = std::min<std::size_t>(syn_ack->tcp.window, wire::ipv4::max_packet_len - 40);
    INFO("super-frame payload " << size << ", window " << syn_ack->tcp.window);
    REQUIRE(size > 8 * std::size_t{send_mss});
    std::vector<std::byte> payload(size);
    for (std::size_t i = 0; i < size; ++i) payload[i] = pattern(i);
    wire::tcp::repr data = ack;
    data.flags = wire::tcp::flag_set{wire::tcp::flag::ack} | wire::tcp::flag::psh;
    auto super = client_frame(data, payload, 3);
    constexpr std::size_t l4 = wire::ethernet::header_len + wire::ipv4::header_len;
    const auto length = static_cast<std::uint16_t>(super.size() - l4);
    wire::store_be16(super, l4 + wire::tcp::field::checksum,
                     wire::checksum::ipv4_pseudo_header(gateway_ip, guest_ip, wire::tcp::protocol_number, length).sum());
    REQUIRE(super.size() > max_frame_len(tap.mtu()));
    const auto sent = tap.send(super, wire::offload::tcpv4_gso(l4, l4 + wire::tcp::header_len, send_mss));
    INFO(sent.message());
    REQUIRE_FALSE(sent);

    wire::tcp::repr fin = ack;
    fin.seq_number = static_cast<std::uint32_t>(isn + 1 + size);
    fin.flags = wire::tcp::flag_set{wire::tcp::flag::ack} | wire::tcp::flag::fin;
    REQUIRE_FALSE(tap.send(client_frame(fin, {}, 4)));

    // The guest acknowledges everything, FIN included, then its reply comes in TSO frames.
    bool all_acked = false;
    std::optional<server_segment> super_reply;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline && !super_reply) {
        auto segment = next_server_segment(tap, 1s);
        if (!segment) continue;
        REQUIRE_FALSE(segment->tcp.flags.rst());
        if (segment->tcp.ack_number == fin.seq_number + 1) all_acked = true;
        if (segment->frame.meta.is_gso()) super_reply = std::move(segment);
    }
    CHECK(all_acked);

    const auto output = server.get().output;
    INFO("server: " << output);
    CHECK(output.find("received " + std::to_string(size) + " intact") != std::string::npos);

    REQUIRE(super_reply);
    const auto& meta = super_reply->frame.meta;
    CHECK(meta.gso_type == wire::offload::gso::tcpv4);
    CHECK(meta.needs_csum);
    CHECK(meta.gso_size == mss);
    CHECK(meta.csum_start == l4);
    CHECK(meta.csum_offset == wire::tcp::field::checksum);
    CHECK(super_reply->payload.size() > mss); // more than one segment's worth, in one read
    CHECK(super_reply->frame.bytes.size() > max_frame_len(tap.mtu()));
    CHECK(std::all_of(super_reply->payload.begin(), super_reply->payload.end(), [](std::byte b) { return b == std::byte{'r'}; }));

    // The software fallback cuts what the kernel sent into frames that verify.
    std::vector<std::byte> scratch(wire::offload::max_frame_len);
    std::size_t pieces = 0;
    std::size_t bytes = 0;
    std::uint32_t next_seq = super_reply->tcp.seq_number;
    REQUIRE_FALSE(wire::segment(super_reply->frame.bytes, meta, scratch, [&](wire::mutable_bytes piece) {
        CHECK(piece.size() <= max_frame_len(tap.mtu()));
        const wire::ipv4::packet<wire::const_bytes> ip{wire::const_bytes{piece}.subspan(wire::ethernet::header_len)};
        REQUIRE(wire::ipv4::repr::parse(ip));
        auto tcp = wire::tcp::repr::parse(wire::tcp::packet<wire::const_bytes>{ip.payload()}, guest_ip, gateway_ip);
        REQUIRE(tcp);
        CHECK(tcp->seq_number == next_seq);
        next_seq += static_cast<std::uint32_t>(tcp->payload_len);
        bytes += tcp->payload_len;
        ++pieces;
    }));
    CHECK(pieces == (super_reply->payload.size() + mss - 1) / mss);
    CHECK(bytes == super_reply->payload.size());
    CHECK(tap.vnet_header_errors() == 0);
}
