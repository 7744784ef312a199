#include <ankanet/wire/ipv4.hpp>

#include <ankanet/wire/checksum.hpp>

#include "../support/ip_captures.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

using namespace ankanet;
using namespace ankanet::wire;
using namespace ankanet::test::ip_captures; // the golden packets

namespace {

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
