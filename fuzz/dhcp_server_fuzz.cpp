// Fuzz target for ankanet::dhcp::basic_server.
//
// The input is used twice:
//  1. as one frame, as is, offered to a fresh server;
//  2. as a sequence of frames (each an Ethernet header plus the IPv4 total_length its header
//     states; the seeds are concatenated client frames), offered one after the other to a second
//     server whose clock moves on between frames, so offers lapse, leases expire and state builds
//     up. Each frame's IPv4 header checksum and UDP checksum are repaired first, so mutations reach
//     the DHCP logic instead of dying at a checksum; (1) covers the unrepaired bytes.
// Every reply must parse back as a valid Ethernet / IPv4 / UDP / DHCP frame from the server, within
// the size limits, or the target traps. ASan and UBSan watch everything else.
#include <ankanet/dhcp/server.hpp>

#include <ankanet/wire/dhcp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/udp.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace {

using namespace ankanet;
namespace msg = ankanet::wire::dhcp;
using wire::const_bytes;

void require(bool condition) {
    if (!condition) __builtin_trap();
}

struct manual_clock {
    dhcp::sys_seconds t{dhcp::seconds{1'700'000'000}};
    dhcp::sys_seconds now() const { return t; }
};

using fuzz_server = dhcp::basic_server<dhcp::memory_lease_store, manual_clock>;

constexpr ipv4_address gateway{192, 168, 64, 1};
const mac_address gateway_mac{{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}};

fuzz_server make_server() {
    dhcp::lease_pool_config pc;
    pc.subnet = ipv4_prefix{ipv4_address{192, 168, 64, 0}, 24};
    pc.first = ipv4_address{192, 168, 64, 107}; // the captured clients' address
    pc.last = ipv4_address{192, 168, 64, 116};  // ten addresses: exhaustion is reachable
    pc.lease_time = dhcp::seconds{3600};
    pc.offer_hold = dhcp::seconds{60};
    pc.decline_quarantine = dhcp::seconds{600};
    pc.excluded = {ipv4_address{192, 168, 64, 110}};
    pc.reservations = {dhcp::reservation{mac_address{{0x52, 0x54, 0x00, 0x12, 0x34, 0x57}}, {},
                                         ipv4_address{192, 168, 64, 115}}};
    auto pool = fuzz_server::pool_type::create(std::move(pc), dhcp::memory_lease_store{}, manual_clock{});
    require(pool.has_value());

    dhcp::server_config config;
    config.server_address = gateway;
    config.server_mac = gateway_mac;
    config.domain_name = "vm.test";
    config.search_domains = {"vm.test", "example.org"};
    config.interface_mtu = 1500;
    config.classless_routes = {msg::classless_route{ipv4_prefix{ipv4_address{10, 0, 0, 0}, 8}, gateway}};
    auto server = fuzz_server::create(std::move(config), std::move(*pool));
    require(server.has_value());
    return std::move(*server);
}

/// A reply must be a whole, valid frame from the server.
void check_reply(const_bytes frame) {
    require(frame.size() <= fuzz_server::max_frame_len);
    const auto eth = wire::ethernet::repr::parse(frame);
    require(eth.has_value());
    require(eth->source == gateway_mac);
    require(eth->ethertype == wire::ethernet::ethertype::ipv4 && !eth->vlan_tci);
    const auto ip_bytes = frame.subspan(eth->buffer_len());
    const auto ip = wire::ipv4::repr::parse(ip_bytes);
    require(ip.has_value());
    require(ip->source == gateway && ip->protocol == wire::ipv4::protocol::udp && ip->ttl == 64);
    require(!ip->more_fragments && ip->fragment_offset == 0);
    require(ip_bytes.size() == wire::ipv4::header_len + ip->payload_len);
    const wire::udp::packet<const_bytes> datagram{wire::ipv4::packet<const_bytes>{ip_bytes}.payload()};
    const auto udp = wire::udp::repr::parse(datagram, ip->source, ip->destination);
    require(udp.has_value());
    require(datagram.checksum() != 0);
    require(udp->source_port == msg::server_port && udp->destination_port == msg::client_port);
    const auto payload = datagram.payload();
    require(payload.size() >= msg::bootp_min_len && payload.size() <= 1500 - msg::ip_udp_overhead);
    require(msg::packet<const_bytes>::checked(payload).has_value());
    const auto reply = msg::repr::parse(payload);
    require(reply.has_value());
    require(reply->op == msg::boot_reply);
    require(reply->server_id == gateway);
    require(reply->message_type == msg::message_type::offer || reply->message_type == msg::message_type::ack ||
            reply->message_type == msg::message_type::nak);
    if (reply->message_type == msg::message_type::nak) {
        require(ip->destination.is_broadcast() && eth->destination.is_broadcast());
        require(reply->yiaddr.is_unspecified() && !reply->lease_time);
    } else {
        require(!eth->destination.is_multicast() || eth->destination.is_broadcast());
    }
}

struct checker {
    std::size_t replies = 0;
    void operator()(const_bytes frame) {
        check_reply(frame);
        ++replies;
    }
};

/// Makes the IPv4 header checksum and the UDP checksum right, where the lengths allow.
void repair(std::vector<std::byte>& frame) {
    const wire::mutable_bytes all{frame};
    wire::ethernet::packet<wire::mutable_bytes> eth{all};
    if (eth.check_len() || eth.ethertype() != wire::ethernet::ethertype::ipv4) return;
    wire::ipv4::packet<wire::mutable_bytes> ip{eth.payload()};
    if (ip.check_len()) return;
    ip.fill_checksum();
    if (ip.protocol() != wire::ipv4::protocol::udp || ip.is_fragment()) return;
    wire::udp::packet<wire::mutable_bytes> datagram{ip.payload()};
    if (datagram.check_len()) return;
    datagram.fill_checksum(ip.source(), ip.destination());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const const_bytes input{reinterpret_cast<const std::byte*>(data), size};

    // 1. The input as one frame, unrepaired.
    {
        auto server = make_server();
        checker out;
        (void)server.handle(input, dhcp::sys_seconds{dhcp::seconds{1'700'000'000}}, out);
        const auto& s = server.stats();
        require(s.offers + s.acks + s.naks == out.replies);
        require(out.replies <= 1);
    }

    // 2. The input as a sequence of frames, repaired, to one server whose clock moves on.
    auto server = make_server();
    checker out;
    std::size_t pos = 0;
    std::size_t frames = 0;
    while (pos < size && frames < 64) {
        const std::size_t rest = size - pos;
        std::size_t len = rest;
        constexpr std::size_t total_length_at = wire::ethernet::header_len + wire::ipv4::field::total_length;
        if (rest >= total_length_at + 2) {
            const std::size_t total = wire::load_be16(input, pos + total_length_at);
            if (total >= wire::ipv4::header_len) len = std::min(rest, wire::ethernet::header_len + total);
        }
        std::vector<std::byte> frame(input.begin() + static_cast<std::ptrdiff_t>(pos),
                                     input.begin() + static_cast<std::ptrdiff_t>(pos + len));
        pos += len;
        ++frames;
        repair(frame);
        // Time moves on by an amount the input chooses: sometimes past offer holds and leases.
        server.pool().clock().t += dhcp::seconds{frame.size() % 7 == 0 ? 4000 : static_cast<long>(frame.size() % 61)};
        const auto before = out.replies;
        (void)server.handle(const_bytes{frame}, out);
        require(out.replies - before <= 1);
    }
    const auto& s = server.stats();
    require(s.offers + s.acks + s.naks == out.replies);
    require(server.pool().bound_count() <= server.pool().size());
    return 0;
}
