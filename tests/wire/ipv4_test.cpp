#include <ankanet/wire/ipv4.hpp>

#include <ankanet/wire/checksum.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

using namespace ankanet;
using namespace ankanet::wire;

namespace {

// Golden packets. All were captured with `tcpdump -w` (4.99.3) on the veth of a network namespace
// made for the purpose, on Linux 6.18: 10.77.0.1 (namespace A) -- 10.77.0.254 / 10.77.1.254 (a
// forwarding namespace) -- 10.77.1.2 (namespace B). The Ethernet header is stripped.

// `ping -c1 -s 16 10.77.1.2` from A: echo request, DF, TTL 64.
constexpr auto echo_request = make_bytes(
    0x45, 0x00, 0x00, 0x2c, 0xd6, 0x7d, 0x40, 0x00, 0x40, 0x01, 0x4e, 0xb7, 0x0a, 0x4d, 0x00, 0x01,
    0x0a, 0x4d, 0x01, 0x02, 0x08, 0x00, 0x9a, 0xe1, 0x19, 0x18, 0x00, 0x01, 0x08, 0x40, 0x0a, 0x6b,
    0x00, 0x00, 0x00, 0x00, 0x2b, 0x5a, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00);

// The reply from B, one hop later: TTL 63, no DF.
constexpr auto echo_reply = make_bytes(
    0x45, 0x00, 0x00, 0x2c, 0x50, 0x2b, 0x00, 0x00, 0x3f, 0x01, 0x16, 0x0a, 0x0a, 0x4d, 0x01, 0x02,
    0x0a, 0x4d, 0x00, 0x01, 0x00, 0x00, 0xa2, 0xe1, 0x19, 0x18, 0x00, 0x01, 0x08, 0x40, 0x0a, 0x6b,
    0x00, 0x00, 0x00, 0x00, 0x2b, 0x5a, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00);

// A TCP SYN from bash's /dev/tcp/10.77.1.2/8080 (tx checksum offload off, so the TCP checksum is real).
constexpr auto tcp_syn = make_bytes(
    0x45, 0x00, 0x00, 0x3c, 0x02, 0x1c, 0x40, 0x00, 0x40, 0x06, 0x23, 0x04, 0x0a, 0x4d, 0x00, 0x01,
    0x0a, 0x4d, 0x01, 0x02, 0xa8, 0xf0, 0x1f, 0x90, 0x58, 0x9b, 0x4f, 0x3f, 0x00, 0x00, 0x00, 0x00,
    0xa0, 0x02, 0xfa, 0xf0, 0x06, 0xa0, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a,
    0x12, 0x8d, 0xad, 0xe7, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a);

// A 6-byte UDP datagram ("hello\n") from bash's /dev/udp (tx checksum offload off): 34 bytes, so on
// a real Ethernet it would be padded to the 46-byte minimum payload (veth does not pad; the test
// adds the padding).
constexpr auto udp_hello = make_bytes(
    0x45, 0x00, 0x00, 0x22, 0xd4, 0x77, 0x40, 0x00, 0x40, 0x11, 0x50, 0xb7, 0x0a, 0x4d, 0x00, 0x01,
    0x0a, 0x4d, 0x01, 0x02, 0x8e, 0xca, 0x27, 0x0f, 0x00, 0x0e, 0xf0, 0x7f, 0x68, 0x65, 0x6c, 0x6c,
    0x6f, 0x0a);

// An IGMPv3 report the kernel sent when a socket in A joined 239.1.2.3: IHL 6, with the Router
// Alert option (RFC 2113: 0x94 0x04 0x00 0x00), DSCP CS6, TTL 1.
constexpr auto igmp_router_alert = make_bytes(
    0x46, 0xc0, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x01, 0x02, 0xf9, 0xab, 0x0a, 0x4d, 0x00, 0x01,
    0xe0, 0x00, 0x00, 0x16, 0x94, 0x04, 0x00, 0x00, 0x22, 0x00, 0xe8, 0xf9, 0x00, 0x00, 0x00, 0x01,
    0x04, 0x00, 0x00, 0x00, 0xef, 0x01, 0x02, 0x03);

// `ping -R -s 8 10.77.1.2` from A: IHL 15, NOP then a 39-byte Record Route option.
constexpr auto record_route = make_bytes(
    0x4f, 0x00, 0x00, 0x4c, 0xd6, 0xd0, 0x40, 0x00, 0x40, 0x01, 0x11, 0xe7, 0x0a, 0x4d, 0x00, 0x01,
    0x0a, 0x4d, 0x01, 0x02, 0x01, 0x07, 0x27, 0x08, 0x0a, 0x4d, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0xd2, 0xc1,
    0x19, 0x2d, 0x00, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07);

// `ping -M dont -s 200 10.77.0.254` from A over a 120-byte MTU: the kernel cut the 228-byte
// datagram into three fragments (offsets 0, 96, 192).
constexpr auto fragment_first = make_bytes(
    0x45, 0x00, 0x00, 0x74, 0xef, 0x57, 0x20, 0x00, 0x40, 0x01, 0x55, 0x99, 0x0a, 0x4d, 0x00, 0x01,
    0x0a, 0x4d, 0x00, 0xfe, 0x08, 0x00, 0x66, 0x5b, 0x1a, 0x38, 0x00, 0x01, 0x14, 0x40, 0x0a, 0x6b,
    0x00, 0x00, 0x00, 0x00, 0xb2, 0xc9, 0x0b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12, 0x13,
    0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23,
    0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33,
    0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x40, 0x41, 0x42, 0x43,
    0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f, 0x50, 0x51, 0x52, 0x53,
    0x54, 0x55, 0x56, 0x57);
constexpr auto fragment_middle = make_bytes(
    0x45, 0x00, 0x00, 0x74, 0xef, 0x57, 0x20, 0x0c, 0x40, 0x01, 0x55, 0x8d, 0x0a, 0x4d, 0x00, 0x01,
    0x0a, 0x4d, 0x00, 0xfe, 0x58, 0x59, 0x5a, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63,
    0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0x73,
    0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7c, 0x7d, 0x7e, 0x7f, 0x80, 0x81, 0x82, 0x83,
    0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0x90, 0x91, 0x92, 0x93,
    0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2, 0xa3,
    0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3,
    0xb4, 0xb5, 0xb6, 0xb7);
constexpr auto fragment_last = make_bytes(
    0x45, 0x00, 0x00, 0x24, 0xef, 0x57, 0x00, 0x18, 0x40, 0x01, 0x75, 0xd1, 0x0a, 0x4d, 0x00, 0x01,
    0x0a, 0x4d, 0x00, 0xfe, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3,
    0xc4, 0xc5, 0xc6, 0xc7);

const ipv4_address host_a{10, 77, 0, 1};
const ipv4_address host_b{10, 77, 1, 2};
const ipv4_address router_a{10, 77, 0, 254};

template <std::size_t N>
std::vector<std::byte> copy_of(const std::array<std::byte, N>& bytes) {
    return {bytes.begin(), bytes.end()};
}

bool same_bytes(const_bytes a, const_bytes b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

mutable_bytes span_of(std::vector<std::byte>& v) { return {v.data(), v.size()}; }

/// The header checksum recomputed from scratch, for comparison with incremental updates.
std::uint16_t full_checksum(std::vector<std::byte> datagram) {
    ipv4::packet<mutable_bytes> p{span_of(datagram)};
    p.fill_checksum();
    return p.checksum();
}

/// Emits `r` and checks the header is byte-for-byte the first 20 bytes of `golden`.
void check_emits_exactly(const ipv4::repr& r, const_bytes golden) {
    std::array<std::byte, ipv4::header_len> out{};
    REQUIRE(r.buffer_len() == ipv4::header_len);
    REQUIRE_FALSE(r.emit(out));
    CHECK(same_bytes(out, golden.first(ipv4::header_len)));
}

} // namespace

TEST_CASE("ipv4 deconstructs a captured ICMP echo request field by field") {
    const auto p = ipv4::packet<const_bytes>::checked(echo_request);
    REQUIRE(p);
    CHECK(p->version() == 4);
    CHECK(p->header_length() == 20);
    CHECK(p->dscp_ecn() == 0);
    CHECK(p->total_length() == 44);
    CHECK(p->identification() == 0xd67d);
    CHECK(p->dont_fragment());
    CHECK_FALSE(p->more_fragments());
    CHECK(p->fragment_offset() == 0);
    CHECK_FALSE(p->is_fragment());
    CHECK(p->ttl() == 64);
    CHECK(p->protocol() == ipv4::protocol::icmp);
    CHECK(p->checksum() == 0x4eb7);
    CHECK(p->source() == host_a);
    CHECK(p->destination() == host_b);
    CHECK(p->options().empty());
    CHECK(p->header().size() == 20);
    CHECK(p->payload().data() == echo_request.data() + 20);
    CHECK(p->payload().size() == 24);
    CHECK(p->verify_checksum());

    const auto r = ipv4::repr::parse(echo_request);
    REQUIRE(r);
    CHECK(r->source == host_a);
    CHECK(r->destination == host_b);
    CHECK(r->protocol == ipv4::protocol::icmp);
    CHECK(r->ttl == 64);
    CHECK(r->payload_len == 24);
    CHECK(r->identification == 0xd67d);
    CHECK(r->dont_fragment);
    CHECK_FALSE(r->more_fragments);
    CHECK(r->fragment_offset == 0);
    CHECK(r->dscp_ecn == 0);
}

TEST_CASE("ipv4 constructs the captured echo request header byte-exact from a hand-made repr") {
    ipv4::repr r;
    r.source = host_a;
    r.destination = host_b;
    r.protocol = ipv4::protocol::icmp;
    r.ttl = 64;
    r.payload_len = 24;
    r.identification = 0xd67d;
    r.dont_fragment = true;
    check_emits_exactly(r, echo_request);

    // The emitted header followed by the captured payload is the captured datagram again.
    std::array<std::byte, echo_request.size()> datagram{};
    REQUIRE_FALSE(r.emit(datagram));
    std::copy(echo_request.begin() + 20, echo_request.end(), datagram.begin() + 20);
    CHECK(same_bytes(datagram, echo_request));
}

TEST_CASE("ipv4 round-trips every captured packet without options byte-exact") {
    for (const_bytes golden : {const_bytes{echo_request}, const_bytes{echo_reply}, const_bytes{tcp_syn},
                               const_bytes{udp_hello}, const_bytes{fragment_first}, const_bytes{fragment_middle},
                               const_bytes{fragment_last}}) {
        const auto r = ipv4::repr::parse(golden);
        REQUIRE(r);
        check_emits_exactly(*r, golden);
    }
}

TEST_CASE("ipv4 reads the echo reply and the TCP SYN") {
    const auto reply = ipv4::repr::parse(echo_reply);
    REQUIRE(reply);
    CHECK(reply->source == host_b);
    CHECK(reply->destination == host_a);
    CHECK(reply->ttl == 63);
    CHECK_FALSE(reply->dont_fragment);
    CHECK(reply->identification == 0x502b);

    const auto syn = ipv4::packet<const_bytes>::checked(tcp_syn);
    REQUIRE(syn);
    CHECK(syn->protocol() == ipv4::protocol::tcp);
    CHECK(syn->total_length() == 60);
    CHECK(syn->payload().size() == 40);
    CHECK(syn->dont_fragment());
    CHECK(syn->identification() == 0x021c);
    // The TCP checksum verifies over the pseudo-header and the payload view: the payload is exact.
    CHECK(checksum::ipv4_pseudo_header(syn->source(), syn->destination(), syn->protocol(),
                                       static_cast<std::uint16_t>(syn->payload().size()))
              .add(syn->payload())
              .finish() == 0);
}

TEST_CASE("ipv4 payload stops at total_length when Ethernet padded the frame") {
    auto padded = copy_of(udp_hello);
    padded.resize(46, std::byte{0}); // 60-byte frame minus the 14-byte Ethernet header
    const auto p = ipv4::packet<const_bytes>::checked(span_of(padded));
    REQUIRE(p);
    CHECK(p->total_length() == 34);
    CHECK(p->payload().size() == 14);
    CHECK(same_bytes(p->payload(), const_bytes{udp_hello}.subspan(20)));
    CHECK(checksum::ipv4_pseudo_header(p->source(), p->destination(), p->protocol(), 14).add(p->payload()).finish() == 0);
    const auto r = ipv4::repr::parse(span_of(padded));
    REQUIRE(r);
    CHECK(r->payload_len == 14);
    CHECK(r->protocol == ipv4::protocol::udp);
}

TEST_CASE("ipv4 skips a Router Alert option (IHL 6) without interpreting it") {
    const auto p = ipv4::packet<const_bytes>::checked(igmp_router_alert);
    REQUIRE(p);
    CHECK(p->header_length() == 24);
    CHECK(same_bytes(p->options(), make_bytes(0x94, 0x04, 0x00, 0x00)));
    CHECK(p->payload().size() == 16);
    CHECK(p->payload().data() == igmp_router_alert.data() + 24);
    CHECK(p->dscp() == 48); // CS6
    CHECK(p->ecn() == 0);
    CHECK(p->ttl() == 1);
    CHECK(p->protocol() == ipv4::protocol::igmp);
    CHECK(p->destination() == ipv4_address(224, 0, 0, 22));
    CHECK(p->verify_checksum());

    const auto r = ipv4::repr::parse(igmp_router_alert);
    REQUIRE(r);
    CHECK(r->payload_len == 16);
    CHECK(r->dscp_ecn == 0xc0);

    // emit writes no options: a 20-byte header with total_length 36 and its own valid checksum.
    std::array<std::byte, 20> out{};
    REQUIRE_FALSE(r->emit(out));
    CHECK(load_u8(out, 0) == 0x45);
    CHECK(load_be16(out, ipv4::field::total_length) == 36);
    CHECK(checksum::internet(out) == 0);
    std::vector<std::byte> reemitted(out.begin(), out.end());
    reemitted.insert(reemitted.end(), igmp_router_alert.begin() + 24, igmp_router_alert.end());
    const auto again = ipv4::repr::parse(span_of(reemitted));
    REQUIRE(again);
    CHECK(*again == *r);
}

TEST_CASE("ipv4 skips a 40-byte Record Route option area (IHL 15)") {
    const auto p = ipv4::packet<const_bytes>::checked(record_route);
    REQUIRE(p);
    CHECK(p->header_length() == 60);
    CHECK(p->options().size() == 40);
    CHECK(load_u8(p->options(), 0) == 0x01); // NOP
    CHECK(load_u8(p->options(), 1) == 0x07); // RR
    CHECK(load_u8(p->options(), 2) == 39);
    CHECK(p->payload().size() == 16);
    CHECK(load_u8(p->payload(), 0) == 8); // the ICMP echo request behind the options
    const auto r = ipv4::repr::parse(record_route);
    REQUIRE(r);
    CHECK(r->payload_len == 16);
}

TEST_CASE("ipv4 recognises and flags each captured fragment") {
    const auto first = ipv4::repr::parse(fragment_first);
    const auto middle = ipv4::repr::parse(fragment_middle);
    const auto last = ipv4::repr::parse(fragment_last);
    REQUIRE(first);
    REQUIRE(middle);
    REQUIRE(last);
    CHECK(first->more_fragments);
    CHECK(first->fragment_offset == 0);
    CHECK(first->payload_len == 96);
    CHECK(middle->more_fragments);
    CHECK(middle->fragment_offset == 96);
    CHECK(middle->payload_len == 96);
    CHECK_FALSE(last->more_fragments);
    CHECK(last->fragment_offset == 192);
    CHECK(last->payload_len == 16);
    CHECK(first->source == host_a);
    CHECK(first->destination == router_a);
    CHECK(first->identification == 0xef57);
    CHECK(first->identification == middle->identification);
    CHECK(middle->identification == last->identification);

    CHECK(ipv4::packet<const_bytes>{fragment_first}.is_fragment());
    CHECK(ipv4::packet<const_bytes>{fragment_middle}.is_fragment());
    CHECK(ipv4::packet<const_bytes>{fragment_last}.is_fragment());
    CHECK_FALSE(ipv4::packet<const_bytes>{echo_request}.is_fragment());
}

TEST_CASE("ipv4 refuses every truncation of every golden packet") {
    for (const_bytes golden : {const_bytes{echo_request}, const_bytes{tcp_syn}, const_bytes{udp_hello},
                               const_bytes{igmp_router_alert}, const_bytes{record_route}, const_bytes{fragment_last}}) {
        const std::size_t header = ipv4::packet<const_bytes>{golden}.header_length();
        for (std::size_t len = 0; len < golden.size(); ++len) {
            CAPTURE(golden.size(), len);
            const std::error_code expected = len < 20 || len < header ? errc::truncated : errc::bad_length;
            CHECK(ipv4::packet<const_bytes>::checked(golden.first(len)).error() == expected);
            CHECK(ipv4::repr::parse(golden.first(len)).error() == expected);
        }
        CHECK(ipv4::repr::parse(golden));
    }
}

TEST_CASE("ipv4 refuses malformed headers with the reason") {
    SECTION("IHL below 5") {
        for (std::uint8_t ihl = 0; ihl < 5; ++ihl) {
            auto bytes = copy_of(echo_request);
            bytes[0] = std::byte{static_cast<std::uint8_t>(0x40 | ihl)};
            CAPTURE(ihl);
            CHECK(ipv4::packet<const_bytes>::checked(span_of(bytes)).error() == errc::bad_header_length);
            CHECK(ipv4::repr::parse(span_of(bytes)).error() == errc::bad_header_length);
        }
    }
    SECTION("IHL past the end of the buffer") {
        auto bytes = copy_of(echo_request);
        bytes[0] = std::byte{0x4f}; // 60-byte header in a 44-byte buffer
        CHECK(ipv4::packet<const_bytes>::checked(span_of(bytes)).error() == errc::truncated);
        // The Router Alert packet cut just inside its options.
        CHECK(ipv4::packet<const_bytes>::checked(const_bytes{igmp_router_alert}.first(22)).error() == errc::truncated);
    }
    SECTION("total_length shorter than the header") {
        for (const std::uint16_t total : std::array<std::uint16_t, 3>{0, 1, 19}) {
            auto bytes = copy_of(echo_request);
            store_be16(span_of(bytes), ipv4::field::total_length, total);
            CAPTURE(total);
            CHECK(ipv4::packet<const_bytes>::checked(span_of(bytes)).error() == errc::bad_length);
        }
        auto bytes = copy_of(igmp_router_alert);
        store_be16(span_of(bytes), ipv4::field::total_length, 23); // ends inside the option
        CHECK(ipv4::packet<const_bytes>::checked(span_of(bytes)).error() == errc::bad_length);
        store_be16(span_of(bytes), ipv4::field::total_length, 24); // header only: fine, empty payload
        REQUIRE(ipv4::packet<const_bytes>::checked(span_of(bytes)));
        CHECK(ipv4::packet<const_bytes>{span_of(bytes)}.payload().empty());
    }
    SECTION("total_length beyond the buffer") {
        for (const std::uint16_t total : std::array<std::uint16_t, 3>{45, 1500, 65535}) {
            auto bytes = copy_of(echo_request);
            store_be16(span_of(bytes), ipv4::field::total_length, total);
            CAPTURE(total);
            CHECK(ipv4::packet<const_bytes>::checked(span_of(bytes)).error() == errc::bad_length);
        }
    }
    SECTION("a version other than 4") {
        for (const std::uint8_t version : std::array<std::uint8_t, 4>{0, 5, 6, 15}) {
            auto bytes = copy_of(echo_request);
            bytes[0] = std::byte{static_cast<std::uint8_t>((version << 4) | 5)};
            CAPTURE(version);
            CHECK(ipv4::packet<const_bytes>::checked(span_of(bytes)).error() == errc::bad_version);
        }
    }
    SECTION("a bad header checksum") {
        auto bytes = copy_of(echo_request);
        bytes[ipv4::field::checksum + 1] ^= std::byte{0x01};
        const ipv4::packet<const_bytes> p{span_of(bytes)};
        CHECK_FALSE(p.check_len()); // the view still reads it...
        CHECK_FALSE(p.verify_checksum());
        CHECK(ipv4::repr::parse(p).error() == errc::bad_checksum); // ...parse refuses it
        // A flipped bit anywhere in the header, options included, is caught as well.
        for (std::size_t bit = 0; bit < 24 * 8; ++bit) {
            auto options = copy_of(igmp_router_alert);
            options[bit / 8] ^= std::byte{static_cast<std::uint8_t>(1u << (bit % 8))};
            const ipv4::packet<const_bytes> q{span_of(options)};
            if (q.check_len()) continue; // the flip broke version, IHL or total_length instead
            CAPTURE(bit);
            CHECK(ipv4::repr::parse(q).error() == errc::bad_checksum);
        }
    }
    SECTION("a fragment that would reassemble past 65,535 bytes") {
        auto bytes = copy_of(fragment_last); // 36 bytes
        ipv4::packet<mutable_bytes> p{span_of(bytes)};
        p.set_fragment_offset(65528);
        p.fill_checksum();
        CHECK_FALSE(p.check_len());
        CHECK(ipv4::repr::parse(span_of(bytes)).error() == errc::bad_length);
        p.set_fragment_offset(65496); // 65496 + 36 = 65532: the last legal place
        p.fill_checksum();
        const auto r = ipv4::repr::parse(span_of(bytes));
        REQUIRE(r);
        CHECK(r->fragment_offset == 65496);
    }
}

TEST_CASE("ipv4 setters write each field and leave the others alone") {
    auto bytes = copy_of(echo_request);
    ipv4::packet<mutable_bytes> p{span_of(bytes)};
    p.set_more_fragments(true);
    p.set_fragment_offset(1480);
    CHECK(p.dont_fragment());
    CHECK(p.more_fragments());
    CHECK(p.fragment_offset() == 1480);
    p.set_dont_fragment(false);
    CHECK_FALSE(p.dont_fragment());
    CHECK(p.more_fragments());
    CHECK(p.fragment_offset() == 1480);
    p.set_fragment_offset(0);
    CHECK(p.more_fragments());
    p.set_more_fragments(false);
    CHECK(load_be16(span_of(bytes), ipv4::field::flags_fragment) == 0);

    p.set_dscp_ecn(0xb9);
    CHECK(p.dscp() == 46);
    CHECK(p.ecn() == 1);
    p.set_identification(0x1234);
    p.set_ttl(7);
    p.set_protocol(ipv4::protocol::udp);
    p.set_source(ipv4_address(192, 0, 2, 1));
    p.set_destination(ipv4_address(198, 51, 100, 7));
    p.set_header_length(24);
    CHECK(p.version() == 4);
    CHECK(p.header_length() == 24);
    p.set_version(6);
    CHECK(p.version() == 6);
    CHECK(p.header_length() == 24);
    p.set_version(4);
    p.set_header_length(20);
    p.set_total_length(30);
    p.fill_checksum();
    CHECK(p.identification() == 0x1234);
    CHECK(p.ttl() == 7);
    CHECK(p.protocol() == ipv4::protocol::udp);
    CHECK(p.source() == ipv4_address(192, 0, 2, 1));
    CHECK(p.destination() == ipv4_address(198, 51, 100, 7));
    CHECK(p.total_length() == 30);
    CHECK(p.verify_checksum());
    CHECK(ipv4::repr::parse(span_of(bytes))->payload_len == 10);
}

template <class View>
concept writable_view = requires(View p) {
    p.set_ttl(1);
    p.rewrite_source(ipv4_address{});
    p.decrement_ttl();
    p.fill_checksum();
};

TEST_CASE("ipv4 read-only views have no setters") {
    STATIC_REQUIRE_FALSE(writable_view<ipv4::packet<const_bytes>>);
    STATIC_REQUIRE(writable_view<ipv4::packet<mutable_bytes>>);
}

TEST_CASE("ipv4 NAT rewrites keep the checksum equal to a full recomputation") {
    SECTION("on the captured echo request") {
        auto bytes = copy_of(echo_request);
        ipv4::packet<mutable_bytes> p{span_of(bytes)};
        p.rewrite_source(ipv4_address(192, 168, 64, 1));
        CHECK(p.source() == ipv4_address(192, 168, 64, 1));
        CHECK(p.checksum() == full_checksum(bytes));
        p.rewrite_destination(ipv4_address(203, 0, 113, 200));
        CHECK(p.destination() == ipv4_address(203, 0, 113, 200));
        CHECK(p.checksum() == full_checksum(bytes));
        CHECK(p.decrement_ttl() == 63);
        CHECK(p.ttl() == 63);
        CHECK(p.protocol() == ipv4::protocol::icmp);
        CHECK(p.checksum() == full_checksum(bytes));
        CHECK(p.verify_checksum());
        // Rewriting back restores the captured bytes, TTL aside.
        p.rewrite_source(host_a);
        p.rewrite_destination(host_b);
        p.set_ttl(64);
        p.fill_checksum();
        CHECK(same_bytes(span_of(bytes), echo_request));
    }
    SECTION("with options, on random headers and addresses") {
        std::mt19937 rng{20240601};
        std::uniform_int_distribution<unsigned> byte{0, 255};
        std::uniform_int_distribution<std::uint32_t> word{};
        for (int round = 0; round < 20000; ++round) {
            const std::size_t header = 4 * (5 + byte(rng) % 11);
            std::vector<std::byte> bytes(header);
            for (auto& b : bytes) b = std::byte{static_cast<std::uint8_t>(byte(rng))};
            ipv4::packet<mutable_bytes> p{span_of(bytes)};
            p.set_version(4);
            p.set_header_length(header);
            p.set_total_length(static_cast<std::uint16_t>(header));
            if (round % 7 == 0) p.set_ttl(static_cast<std::uint8_t>(round % 3)); // TTL 0, 1, 2 edge cases
            p.fill_checksum();
            switch (round % 3) {
            case 0: p.rewrite_source(ipv4_address{word(rng)}); break;
            case 1: p.rewrite_destination(ipv4_address{word(rng)}); break;
            default: {
                const std::uint8_t before = p.ttl();
                const std::uint8_t after = p.decrement_ttl();
                CHECK(after == (before == 0 ? 0 : before - 1));
                CHECK(p.ttl() == after);
            }
            }
            CAPTURE(round);
            REQUIRE(p.checksum() == full_checksum(bytes));
            REQUIRE(p.verify_checksum());
        }
    }
    SECTION("TTL 1 goes to 0; TTL 0 is left alone") {
        auto bytes = copy_of(echo_request);
        ipv4::packet<mutable_bytes> p{span_of(bytes)};
        p.set_ttl(1);
        p.fill_checksum();
        CHECK(p.decrement_ttl() == 0);
        CHECK(p.ttl() == 0);
        CHECK(p.protocol() == ipv4::protocol::icmp);
        CHECK(p.verify_checksum());
        const auto before = bytes;
        CHECK(p.decrement_ttl() == 0);
        CHECK(same_bytes(span_of(bytes), before));
    }
}

TEST_CASE("ipv4 emit refuses what the header cannot express") {
    ipv4::repr r;
    r.source = host_a;
    r.destination = host_b;
    r.protocol = ipv4::protocol::udp;
    std::array<std::byte, 20> out{};

    CHECK(r.emit(mutable_bytes{out}.first(19)) == errc::buffer_too_small);

    r.payload_len = 65515;
    REQUIRE_FALSE(r.emit(out));
    CHECK(load_be16(out, ipv4::field::total_length) == 65535);
    r.payload_len = 65516;
    CHECK(r.emit(out) == errc::bad_length);

    r.payload_len = 8;
    r.fragment_offset = 7;
    CHECK(r.emit(out) == errc::bad_field);
    r.fragment_offset = 65528; // 65528 + 20 + 8 > 65535
    CHECK(r.emit(out) == errc::bad_length);
    r.fragment_offset = 65504; // 65504 + 28 = 65532
    r.more_fragments = true;
    REQUIRE_FALSE(r.emit(out));
    const ipv4::packet<const_bytes> header{out};
    CHECK(header.fragment_offset() == 65504);
    CHECK(header.more_fragments());
    CHECK_FALSE(header.dont_fragment());
    CHECK(header.verify_checksum());
}
