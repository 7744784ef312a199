#include <ankanet/dhcp/client_frames.hpp>

#include <ankanet/dhcp/lease_pool.hpp>
#include <ankanet/dhcp/server.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

using namespace ankanet;
using wire::const_bytes;
using wire::ipv4_address;
using wire::ipv4_prefix;
using wire::mac_address;
namespace ethernet = ankanet::wire::ethernet;
namespace ipv4 = ankanet::wire::ipv4;
namespace udp = ankanet::wire::udp;
namespace msg = ankanet::wire::dhcp;

namespace {

const mac_address client_mac = *mac_address::parse("52:54:00:12:34:56");
const mac_address gateway_mac = *mac_address::parse("02:61:6e:6b:61:01");
constexpr ipv4_address gateway{192, 168, 64, 1};
constexpr std::uint32_t xid = 0x5eed1234;
const auto now = std::chrono::sys_seconds{std::chrono::seconds{1'767'225'600}};

using bytes = std::vector<std::byte>;

/// Every layer of a client frame, each parsed and checked on the way down.
struct opened_client_frame {
    ethernet::repr eth;
    ipv4::repr ip;
    udp::repr udp;
    std::uint16_t udp_checksum = 0;
    msg::repr dhcp;
};

opened_client_frame open(const_bytes frame) {
    opened_client_frame o;
    const auto eth = ethernet::repr::parse(frame);
    REQUIRE(eth);
    o.eth = *eth;
    const auto ip_bytes = frame.subspan(eth->buffer_len());
    const auto ip = ipv4::repr::parse(ip_bytes); // verifies the header checksum
    REQUIRE(ip);
    o.ip = *ip;
    REQUIRE(ip_bytes.size() == ipv4::header_len + ip->payload_len); // no trailing bytes
    const ipv4::packet<const_bytes> datagram{ip_bytes};
    const udp::packet<const_bytes> udp_view{datagram.payload()};
    const auto u = udp::repr::parse(udp_view, ip->source, ip->destination); // verifies the checksum
    REQUIRE(u);
    o.udp = *u;
    o.udp_checksum = udp_view.checksum();
    const auto m = msg::repr::parse(udp_view.payload());
    REQUIRE(m);
    o.dhcp = *m;
    return o;
}

void check_client_layers(const opened_client_frame& o) {
    CHECK(o.eth.source == client_mac);
    CHECK(o.eth.destination == mac_address::broadcast());
    CHECK(o.eth.ethertype == ethernet::ethertype::ipv4);
    CHECK_FALSE(o.eth.vlan_tci);
    CHECK(o.ip.source == ipv4_address::any());
    CHECK(o.ip.destination == ipv4_address::broadcast());
    CHECK(o.ip.protocol == ipv4::protocol::udp);
    CHECK(o.udp.source_port == msg::client_port);
    CHECK(o.udp.destination_port == msg::server_port);
    CHECK(o.udp_checksum != 0);
    CHECK(o.udp.payload_len == msg::bootp_min_len);
    CHECK(o.dhcp.op == msg::boot_request);
    CHECK(o.dhcp.xid == xid);
    CHECK(o.dhcp.client_mac() == client_mac);
    CHECK_FALSE(o.dhcp.broadcast());
    CHECK(o.dhcp.ciaddr == ipv4_address{});
    CHECK(o.dhcp.parameter_request_list.size() == dhcp::client_parameter_request_list.size());
}

dhcp::server make_server() {
    dhcp::lease_pool_config pool;
    pool.subnet = ipv4_prefix{gateway, 24};
    pool.first = ipv4_address{192, 168, 64, 2};
    pool.last = ipv4_address{192, 168, 64, 254};
    pool.lease_time = std::chrono::seconds{600};
    std::string why;
    auto leases = dhcp::server::pool_type::create(std::move(pool), {}, {}, &why);
    INFO(why);
    REQUIRE(leases);
    dhcp::server_config config;
    config.server_address = gateway;
    config.server_mac = gateway_mac;
    auto server = dhcp::server::create(std::move(config), std::move(*leases), &why);
    INFO(why);
    REQUIRE(server);
    return std::move(*server);
}

/// Hands `frame` to `server` and returns its one reply.
bytes exchange(dhcp::server& server, const_bytes frame) {
    std::vector<bytes> replies;
    CHECK(server.handle(frame, now, [&](const_bytes reply) { replies.emplace_back(reply.begin(), reply.end()); }));
    REQUIRE(replies.size() == 1);
    return replies[0];
}

} // namespace

TEST_CASE("dhcp client frames: a DISCOVER is a complete broadcast frame") {
    const auto frame = dhcp::discover_frame(client_mac, xid);
    CHECK(frame.size() == dhcp::client_frame_len);
    CHECK(frame.bytes().size() == 342);
    const auto o = open(frame.bytes());
    check_client_layers(o);
    CHECK(o.dhcp.message_type == msg::message_type::discover);
    CHECK_FALSE(o.dhcp.requested_ip);
    CHECK_FALSE(o.dhcp.server_id);
}

TEST_CASE("dhcp client frames: a REQUEST names the address and the server, with or without option 54") {
    constexpr ipv4_address offered{192, 168, 64, 7};
    const auto frame = dhcp::request_frame(client_mac, xid, offered, gateway);
    const auto o = open(frame.bytes());
    check_client_layers(o);
    CHECK(o.dhcp.message_type == msg::message_type::request);
    CHECK(o.dhcp.requested_ip == offered);
    CHECK(o.dhcp.server_id == gateway);

    const auto without = open(dhcp::request_frame(client_mac, xid, offered, std::nullopt).bytes());
    CHECK(without.dhcp.requested_ip == offered);
    CHECK_FALSE(without.dhcp.server_id);
}

TEST_CASE("dhcp client frames: DISCOVER, OFFER, REQUEST, ACK against the server") {
    auto server = make_server();
    const auto offer_frame = exchange(server, dhcp::discover_frame(client_mac, xid).bytes());
    const auto offer = dhcp::parse_server_reply(const_bytes{offer_frame});
    REQUIRE(offer);
    CHECK(offer->type == msg::message_type::offer);
    CHECK(offer->xid == xid);
    CHECK(offer->client == client_mac);
    CHECK(offer->yiaddr == ipv4_address{192, 168, 64, 2});
    CHECK(offer->server_id == gateway);
    CHECK(offer->source == gateway);
    CHECK(offer->lease_time == 600u);

    const auto ack_frame = exchange(server, dhcp::request_frame(client_mac, *offer).bytes());
    const auto ack = dhcp::parse_server_reply(const_bytes{ack_frame});
    REQUIRE(ack);
    CHECK(ack->type == msg::message_type::ack);
    CHECK(ack->xid == xid);
    CHECK(ack->yiaddr == offer->yiaddr);
    CHECK(server.stats().acks == 1);
    CHECK(server.pool().bound_holder(offer->yiaddr, now) == client_mac);
}

TEST_CASE("dhcp client frames: a REQUEST for an address the server did not offer is NAKed, and the NAK reads") {
    auto server = make_server();
    (void)exchange(server, dhcp::discover_frame(client_mac, xid).bytes());
    const auto nak_frame = exchange(server, dhcp::request_frame(client_mac, xid, ipv4_address{10, 0, 0, 9}, gateway).bytes());
    const auto nak = dhcp::parse_server_reply(const_bytes{nak_frame});
    REQUIRE(nak);
    CHECK(nak->type == msg::message_type::nak);
    CHECK(nak->yiaddr == ipv4_address{});
}

TEST_CASE("dhcp client frames: parse_server_reply refuses what is not a good DHCP reply") {
    auto server = make_server();
    const auto offer = exchange(server, dhcp::discover_frame(client_mac, xid).bytes());
    REQUIRE(dhcp::parse_server_reply(const_bytes{offer}));

    SECTION("a client's own message is not a reply") {
        CHECK(dhcp::parse_server_reply(dhcp::discover_frame(client_mac, xid).bytes()).error() == errc::unsupported);
    }
    SECTION("truncated at every length") {
        for (std::size_t n = 0; n < offer.size(); ++n) {
            INFO("length " << n);
            CHECK_FALSE(dhcp::parse_server_reply(const_bytes{offer}.first(n)));
        }
    }
    SECTION("a damaged UDP payload fails its checksum") {
        auto damaged = offer;
        damaged[ethernet::header_len + ipv4::header_len + udp::header_len + msg::field::yiaddr] ^= std::byte{0x01};
        CHECK(dhcp::parse_server_reply(const_bytes{damaged}).error() == errc::bad_checksum);
    }
    SECTION("a damaged IPv4 header fails its checksum") {
        auto damaged = offer;
        damaged[ethernet::header_len + 8] ^= std::byte{0x01}; // the TTL
        CHECK(dhcp::parse_server_reply(const_bytes{damaged}).error() == errc::bad_checksum);
    }
    SECTION("another EtherType") {
        auto other = offer;
        other[12] = std::byte{0x08};
        other[13] = std::byte{0x06};
        CHECK(dhcp::parse_server_reply(const_bytes{other}).error() == errc::unsupported);
    }
}
