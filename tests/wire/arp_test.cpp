#include <ankanet/wire/arp.hpp>

#include <catch2/catch.hpp>

#include <array>

using namespace ankanet;
using namespace ankanet::wire;

namespace {

// Captured with tcpdump on a veth between two network namespaces (Linux 6.x kernel stacks):
// the ARP payloads, without their Ethernet headers.
// who-has 192.168.64.1 tell 192.168.64.2, from 52:54:00:12:34:56
constexpr auto request = make_bytes(0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12,
                                    0x34, 0x56, 0xc0, 0xa8, 0x40, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                    0xc0, 0xa8, 0x40, 0x01);
// 192.168.64.1 is-at 76:db:5c:60:4c:8b, the kernel's answer to it
constexpr auto reply = make_bytes(0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x76, 0xdb, 0x5c, 0x60,
                                  0x4c, 0x8b, 0xc0, 0xa8, 0x40, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
                                  0xc0, 0xa8, 0x40, 0x02);
// `arping -U -S 192.168.64.2 192.168.64.2`: a gratuitous ARP, padded by arping to 44 bytes.
constexpr auto gratuitous = make_bytes(0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12,
                                       0x34, 0x56, 0xc0, 0xa8, 0x40, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xc0, 0xa8, 0x40, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                       0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00);

const mac_address guest_mac = *mac_address::parse("52:54:00:12:34:56");
const mac_address peer_mac = *mac_address::parse("76:db:5c:60:4c:8b");
constexpr ipv4_address guest_ip{192, 168, 64, 2};
constexpr ipv4_address gateway_ip{192, 168, 64, 1};

} // namespace

TEST_CASE("arp: deconstruct a captured request") {
    const auto p = arp::packet<const_bytes>::checked(request);
    REQUIRE(p);
    CHECK(p->hardware_type() == 1);
    CHECK(p->protocol_type() == 0x0800);
    CHECK(p->operation_code() == 1);
    CHECK(p->sender_mac() == guest_mac);
    CHECK(p->sender_ip() == guest_ip);
    CHECK(p->target_mac().is_zero());
    CHECK(p->target_ip() == gateway_ip);

    const auto r = arp::repr::parse(*p);
    REQUIRE(r);
    CHECK(r->operation == arp::operation::request);
    CHECK_FALSE(r->is_gratuitous());
    CHECK_FALSE(r->is_probe());
}

TEST_CASE("arp: the reply built from the request equals the kernel's reply byte for byte") {
    const auto r = arp::repr::parse(const_bytes{request});
    REQUIRE(r);
    const auto answer = r->reply_from(peer_mac);
    std::array<std::byte, arp::packet_len> out{};
    REQUIRE_FALSE(answer.emit(out));
    CHECK(out == reply);
    CHECK(*arp::repr::parse(const_bytes{reply}) == answer);
}

TEST_CASE("arp: captured packets round-trip byte-exact") {
    for (const_bytes captured : {const_bytes{request}, const_bytes{reply}}) {
        const auto r = arp::repr::parse(captured);
        REQUIRE(r);
        std::array<std::byte, arp::packet_len> out{};
        REQUIRE_FALSE(r->emit(out));
        CHECK(std::equal(out.begin(), out.end(), captured.begin(), captured.end()));
    }
}

TEST_CASE("arp: gratuitous ARP with padding is recognised") {
    const auto r = arp::repr::parse(const_bytes{gratuitous});
    REQUIRE(r);
    CHECK(r->is_gratuitous());
    CHECK(r->sender_ip == guest_ip);
    CHECK(r->target_mac.is_broadcast());
    auto probe = *r;
    probe.sender_ip = ipv4_address::any();
    CHECK(probe.is_probe());
}

TEST_CASE("arp: every truncation is refused") {
    for (std::size_t n = 0; n < arp::packet_len; ++n) {
        CHECK(arp::repr::parse(const_bytes{request}.first(n)).error() == errc::truncated);
    }
}

TEST_CASE("arp: shapes other than IPv4 over Ethernet are unsupported, not misread") {
    struct mutation { std::size_t offset; std::uint8_t value; };
    // hardware type 6 (IEEE 802), protocol 0x86dd, hlen 16 (the lie behind CVE-2020-29129), plen 16
    for (auto m : {mutation{1, 6}, mutation{2, 0x86}, mutation{4, 16}, mutation{5, 16}, mutation{4, 0}}) {
        auto bytes = request;
        bytes[m.offset] = std::byte{m.value};
        CHECK(arp::repr::parse(const_bytes{bytes}).error() == errc::unsupported);
    }
    // RARP request (operation 3) parses as a view but is not an ARP repr.
    auto rarp = request;
    rarp[7] = std::byte{3};
    CHECK(arp::packet<const_bytes>::checked(rarp));
    CHECK(arp::repr::parse(const_bytes{rarp}).error() == errc::unsupported);
}

TEST_CASE("arp: emit refuses a short buffer, and setters rewrite in place") {
    const auto r = *arp::repr::parse(const_bytes{request});
    std::array<std::byte, arp::packet_len - 1> too_short{};
    CHECK(r.emit(too_short) == errc::buffer_too_small);

    auto bytes = request;
    arp::packet<mutable_bytes> p{bytes};
    p.set_operation(arp::operation::reply);
    p.set_sender_mac(peer_mac);
    p.set_sender_ip(gateway_ip);
    p.set_target_mac(guest_mac);
    p.set_target_ip(guest_ip);
    CHECK(bytes == reply);
}
