#include <ankanet/gateway/responder.hpp>

#include <catch2/catch.hpp>

#include <vector>

using namespace ankanet;
using namespace ankanet::wire;

namespace {

const mac_address guest_mac = *mac_address::parse("52:54:00:12:34:56");
const mac_address gateway_mac = *mac_address::parse("02:61:6e:6b:61:01");
constexpr ipv4_address guest_ip{192, 168, 64, 2};
constexpr ipv4_address gateway_ip{192, 168, 64, 1};

// Captured on a veth (Linux guest pinging 192.168.64.1): the broadcast ARP request and the ICMP
// echo request that followed, 24 bytes of ICMP (16 of data).
constexpr auto arp_request_frame = make_bytes(
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, 0x00, 0x01,
    0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0, 0xa8, 0x40, 0x02,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x40, 0x01);
constexpr auto echo_request_frame = make_bytes(
    0x76, 0xdb, 0x5c, 0x60, 0x4c, 0x8b, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x2c, 0x18, 0x72, 0x40, 0x00, 0x40, 0x01, 0x21, 0x0b, 0xc0, 0xa8, 0x40, 0x02, 0xc0, 0xa8,
    0x40, 0x01, 0x08, 0x00, 0x3b, 0xee, 0x16, 0x86, 0x00, 0x01, 0xe0, 0x3f, 0x0a, 0x6b, 0x00, 0x00,
    0x00, 0x00, 0xaf, 0xdf, 0x0b, 0x00, 0x00, 0x00, 0x00, 0x00);

struct collector {
    std::vector<std::vector<std::byte>> frames;
    void operator()(const_bytes frame) { frames.emplace_back(frame.begin(), frame.end()); }
};

} // namespace

TEST_CASE("gateway responder: answers a real ARP request for its address") {
    gateway::responder gw{gateway_ip, gateway_mac};
    collector out;
    CHECK(gw.handle(arp_request_frame, std::ref(out)));
    REQUIRE(out.frames.size() == 1);

    const auto eth = ethernet::repr::parse(const_bytes{out.frames[0]});
    REQUIRE(eth);
    CHECK(eth->destination == guest_mac);
    CHECK(eth->source == gateway_mac);
    CHECK(eth->ethertype == ethernet::ethertype::arp);
    const auto reply = arp::repr::parse(const_bytes{out.frames[0]}.subspan(eth->buffer_len()));
    REQUIRE(reply);
    CHECK(reply->operation == arp::operation::reply);
    CHECK(reply->sender_mac == gateway_mac);
    CHECK(reply->sender_ip == gateway_ip);
    CHECK(reply->target_mac == guest_mac);
    CHECK(reply->target_ip == guest_ip);
    CHECK(gw.stats().arp_replies == 1);
}

TEST_CASE("gateway responder: ARP for other addresses, gratuitous ARP and replies are not answered") {
    gateway::responder gw{gateway_ip, gateway_mac};
    collector out;

    auto other = arp_request_frame;
    other[41] = std::byte{0x03}; // who-has 192.168.64.3: another guest's business
    CHECK_FALSE(gw.handle(other, std::ref(out)));

    auto gratuitous = arp_request_frame;
    gratuitous[31] = std::byte{0x01}; // sender 192.168.64.1 claims the gateway's address
    CHECK(gw.handle(gratuitous, std::ref(out)));

    auto reply = arp_request_frame;
    reply[21] = std::byte{0x02};
    CHECK_FALSE(gw.handle(reply, std::ref(out)));
    CHECK(out.frames.empty());
}

TEST_CASE("gateway responder: answers an ARP probe for its address") {
    gateway::responder gw{gateway_ip, gateway_mac};
    collector out;
    auto probe = arp_request_frame;
    for (std::size_t i = 28; i < 32; ++i) probe[i] = std::byte{0}; // sender IP 0.0.0.0 (RFC 5227)
    CHECK(gw.handle(probe, std::ref(out)));
    CHECK(out.frames.size() == 1);
}

TEST_CASE("gateway responder: a real ping gets an echo reply with the same id, sequence and data") {
    gateway::responder gw{gateway_ip, gateway_mac};
    collector out;
    CHECK(gw.handle(echo_request_frame, std::ref(out)));
    REQUIRE(out.frames.size() == 1);
    const const_bytes frame{out.frames[0]};

    const auto eth = ethernet::repr::parse(frame);
    REQUIRE(eth);
    CHECK(eth->destination == guest_mac);
    CHECK(eth->source == gateway_mac);
    const auto ip_bytes = frame.subspan(eth->buffer_len());
    const auto ip = ipv4::repr::parse(ip_bytes); // verifies the header checksum
    REQUIRE(ip);
    CHECK(ip->source == gateway_ip);
    CHECK(ip->destination == guest_ip);
    CHECK(ip->protocol == ipv4::protocol::icmp);
    const auto icmp = icmp::repr::parse(ip_bytes.subspan(ip->buffer_len())); // verifies the ICMP checksum
    REQUIRE(icmp);
    const auto* reply = std::get_if<icmp::echo_reply>(&icmp->message);
    REQUIRE(reply != nullptr);
    CHECK(reply->identifier == 0x1686);
    CHECK(reply->sequence == 1);
    const auto request_data = const_bytes{echo_request_frame}.subspan(14 + 20 + 8);
    CHECK(std::equal(reply->data.begin(), reply->data.end(), request_data.begin(), request_data.end()));
    CHECK(gw.stats().echo_replies == 1);
}

TEST_CASE("gateway responder: malformed datagrams to the gateway are counted, not answered") {
    gateway::responder gw{gateway_ip, gateway_mac};
    collector out;

    auto bad_ip_checksum = echo_request_frame;
    bad_ip_checksum[24] = std::byte{0x00};
    CHECK(gw.handle(bad_ip_checksum, std::ref(out)));

    auto bad_icmp_checksum = echo_request_frame;
    bad_icmp_checksum[36] = std::byte{0x00};
    CHECK(gw.handle(bad_icmp_checksum, std::ref(out)));

    CHECK(out.frames.empty());
    CHECK(gw.stats().dropped_malformed == 2);

    // Every truncation of both frames: never a reply, never a crash.
    for (std::size_t n = 0; n < echo_request_frame.size(); ++n) {
        gw.handle(const_bytes{echo_request_frame}.first(n), std::ref(out));
    }
    for (std::size_t n = 0; n < arp_request_frame.size(); ++n) {
        gw.handle(const_bytes{arp_request_frame}.first(n), std::ref(out));
    }
    CHECK(out.frames.empty()); // a cut frame is never answered
}

TEST_CASE("gateway responder: traffic to other addresses is left to the caller") {
    gateway::responder gw{gateway_ip, gateway_mac};
    collector out;
    auto to_other = echo_request_frame;
    to_other[33] = std::byte{0x09}; // destination 192.168.64.9
    CHECK_FALSE(gw.handle(to_other, std::ref(out)));
    CHECK(out.frames.empty());
}
