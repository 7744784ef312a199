#include <ankanet/wire/icmp.hpp>

#include <ankanet/wire/checksum.hpp>
#include <ankanet/wire/ipv4.hpp>

#include "../support/ip_captures.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <variant>
#include <vector>

using namespace ankanet;
using namespace ankanet::wire;
using namespace ankanet::test::ip_captures; // the golden packets

namespace {

/// The ICMP message inside a golden datagram, through the IPv4 view (which also proves it valid).
const_bytes icmp_of(const_bytes datagram) {
    const auto ip = ipv4::packet<const_bytes>::checked(datagram);
    REQUIRE(ip);
    REQUIRE(ip->protocol() == ipv4::protocol::icmp);
    REQUIRE(ip->verify_checksum());
    return ip->payload();
}

std::vector<std::byte> copy_of(const_bytes bytes) { return {bytes.begin(), bytes.end()}; }
mutable_bytes span_of(std::vector<std::byte>& v) { return {v.data(), v.size()}; }
bool same_bytes(const_bytes a, const_bytes b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

/// Emits `r` and checks the result is byte-for-byte `golden`.
void check_emits_exactly(const icmp::repr& r, const_bytes golden) {
    REQUIRE(r.buffer_len() == golden.size());
    std::vector<std::byte> out(golden.size());
    REQUIRE_FALSE(r.emit(span_of(out)));
    CHECK(same_bytes(span_of(out), golden));
}

/// Refills the ICMP checksum, so a test reaches the check it means rather than bad_checksum.
void refill(std::vector<std::byte>& message) { icmp::packet<mutable_bytes>{span_of(message)}.fill_checksum(); }

/// The full TCP/UDP checksum of a complete quoted segment, from scratch.
std::uint16_t transport_checksum(const icmp::quoted_datagram<mutable_bytes>& quote, std::size_t checksum_at) {
    std::vector<std::byte> segment(quote.payload().begin(), quote.payload().end());
    store_be16(span_of(segment), checksum_at, 0);
    return checksum::ipv4_pseudo_header(quote.source(), quote.destination(), quote.protocol(),
                                        static_cast<std::uint16_t>(segment.size()))
        .add(span_of(segment))
        .finish();
}

} // namespace

TEST_CASE("icmp deconstructs and reconstructs the captured echo request and reply") {
    const const_bytes request = icmp_of(echo_request);
    const auto p = icmp::packet<const_bytes>::checked(request);
    REQUIRE(p);
    CHECK(p->type() == icmp::type::echo_request);
    CHECK(p->code() == 0);
    CHECK(p->checksum() == 0x9ae1);
    CHECK(p->identifier() == 0x1918);
    CHECK(p->sequence() == 1);
    CHECK(p->data().size() == 16);
    CHECK(p->data().data() == request.data() + 8);
    CHECK(p->verify_checksum());
    CHECK_FALSE(p->is_error());
    CHECK(p->quoted().error() == errc::unsupported);

    const auto r = icmp::repr::parse(request);
    REQUIRE(r);
    const auto* echo = std::get_if<icmp::echo_request>(&r->message);
    REQUIRE(echo);
    CHECK(echo->identifier == 0x1918);
    CHECK(echo->sequence == 1);
    CHECK(same_bytes(echo->data, request.subspan(8)));
    check_emits_exactly(*r, request);

    const const_bytes reply_bytes = icmp_of(echo_reply);
    const auto reply = icmp::repr::parse(reply_bytes);
    REQUIRE(reply);
    const auto* pong = std::get_if<icmp::echo_reply>(&reply->message);
    REQUIRE(pong);
    CHECK(pong->identifier == echo->identifier);
    CHECK(pong->sequence == echo->sequence);
    CHECK(same_bytes(pong->data, echo->data)); // the reply echoes the data
    CHECK(*reply != *r);                      // same fields, but a reply is not a request
    check_emits_exactly(*reply, reply_bytes);

    STATIC_REQUIRE(icmp::echo_request::icmp_type == icmp::type::echo_request);
    STATIC_REQUIRE(icmp::echo_reply::icmp_type == icmp::type::echo_reply);
    // Built by hand from the fields, the reply comes out byte-exact.
    const icmp::repr made{icmp::echo_reply{0x1918, 1, request.subspan(8)}};
    check_emits_exactly(made, reply_bytes);
}

TEST_CASE("icmp deconstructs the kernel's port unreachable and finds the quoted UDP ports") {
    const const_bytes message = icmp_of(port_unreachable);
    const icmp::packet<const_bytes> p{message};
    REQUIRE_FALSE(p.check_len());
    CHECK(p.type() == icmp::type::destination_unreachable);
    CHECK(p.code() == icmp::unreachable_code::port);
    CHECK(p.checksum() == 0x12b9);
    CHECK(p.is_error());
    CHECK(p.verify_checksum());
    CHECK(p.original_length() == 0);

    const auto quote = p.quoted();
    REQUIRE(quote);
    CHECK(quote->header_length() == 20);
    CHECK(quote->total_length() == 34);
    CHECK(quote->is_complete());
    CHECK(quote->protocol() == ipv4::protocol::udp);
    CHECK(quote->ttl() == 63);
    CHECK(quote->identification() == 0xd477);
    CHECK(quote->dont_fragment());
    CHECK(quote->source() == host_a);
    CHECK(quote->destination() == host_b);
    CHECK(quote->payload().size() == 14);
    CHECK(quote->bytes().data() == message.data() + 8);
    REQUIRE(quote->ports());
    CHECK(quote->ports()->source == 36554);
    CHECK(quote->ports()->destination == 9999);
    CHECK_FALSE(quote->echo_identifier());

    const auto r = icmp::repr::parse(message);
    REQUIRE(r);
    const auto* unreachable = std::get_if<icmp::destination_unreachable>(&r->message);
    REQUIRE(unreachable);
    CHECK(unreachable->code == icmp::unreachable_code::port);
    CHECK(unreachable->next_hop_mtu == 0);
    CHECK(same_bytes(unreachable->quoted, message.subspan(8)));
    check_emits_exactly(*r, message);
}

TEST_CASE("icmp reads the next-hop MTU of the kernel's fragmentation needed") {
    const const_bytes message = icmp_of(fragmentation_needed);
    const icmp::packet<const_bytes> p{message};
    CHECK(p.code() == icmp::unreachable_code::fragmentation_needed);
    CHECK(p.next_hop_mtu() == 100);
    const auto quote = p.quoted();
    REQUIRE(quote);
    CHECK(quote->total_length() == 108);
    CHECK(quote->bytes().size() == 92);
    CHECK_FALSE(quote->is_complete());
    CHECK(quote->payload().size() == 72);
    CHECK(quote->dont_fragment());
    CHECK(quote->protocol() == ipv4::protocol::icmp);
    CHECK(quote->echo_identifier() == std::uint16_t{0x1a37});
    CHECK_FALSE(quote->ports());

    const auto r = icmp::repr::parse(message);
    REQUIRE(r);
    const auto* unreachable = std::get_if<icmp::destination_unreachable>(&r->message);
    REQUIRE(unreachable);
    CHECK(unreachable->next_hop_mtu == 100);
    CHECK(unreachable->quoted.size() == 92);
    check_emits_exactly(*r, message);

    const icmp::repr made{icmp::destination_unreachable{icmp::unreachable_code::fragmentation_needed, 100, message.subspan(8)}};
    check_emits_exactly(made, message);
}

TEST_CASE("icmp reads the kernel's time exceeded messages and what they quote") {
    SECTION("quoting an ICMP echo request") {
        const const_bytes message = icmp_of(time_exceeded_echo);
        const auto r = icmp::repr::parse(message);
        REQUIRE(r);
        const auto* exceeded = std::get_if<icmp::time_exceeded>(&r->message);
        REQUIRE(exceeded);
        CHECK(exceeded->code == icmp::time_exceeded_code::ttl);
        check_emits_exactly(*r, message);
        const auto quote = icmp::packet<const_bytes>{message}.quoted();
        REQUIRE(quote);
        CHECK(quote->ttl() == 1);
        CHECK(quote->echo_identifier() == std::uint16_t{0x1919});
        CHECK_FALSE(quote->ports());
    }
    SECTION("quoting a TCP SYN") {
        const const_bytes message = icmp_of(time_exceeded_tcp);
        const auto r = icmp::repr::parse(message);
        REQUIRE(r);
        REQUIRE(std::holds_alternative<icmp::time_exceeded>(r->message));
        check_emits_exactly(*r, message);
        const auto quote = icmp::packet<const_bytes>{message}.quoted();
        REQUIRE(quote);
        CHECK(quote->protocol() == ipv4::protocol::tcp);
        REQUIRE(quote->ports());
        CHECK(*quote->ports() == icmp::transport_ports{55932, 8080});
        CHECK(quote->payload().size() == 40);
    }
}

TEST_CASE("icmp accepts a quote shorter than the quoted total_length (RFC 792 minimum)") {
    // Built by hand after RFC 792: a router that quotes only the header and 64 bits of data.
    // The quote is the first 28 bytes of the captured TCP SYN datagram (total_length 60).
    const const_bytes syn = icmp_of(time_exceeded_tcp).subspan(8);
    const icmp::repr short_quote{icmp::time_exceeded{icmp::time_exceeded_code::ttl, syn.first(28)}};
    std::vector<std::byte> message(short_quote.buffer_len());
    REQUIRE(message.size() == 36);
    REQUIRE_FALSE(short_quote.emit(span_of(message)));
    // RFC 792 layout: type 11, code 0, checksum, 4 unused zero bytes, then the quote.
    CHECK(load_u8(span_of(message), 0) == 11);
    CHECK(load_u8(span_of(message), 1) == 0);
    CHECK(load_be32(span_of(message), 4) == 0);
    CHECK(same_bytes(span_of(message).subspan(8), syn.first(28)));
    CHECK(checksum::internet(span_of(message)) == 0);

    const auto parsed = icmp::repr::parse(span_of(message));
    REQUIRE(parsed);
    CHECK(*parsed == short_quote);
    const auto quote = icmp::packet<const_bytes>{span_of(message)}.quoted();
    REQUIRE(quote);
    CHECK(quote->total_length() == 60);
    CHECK_FALSE(quote->is_complete());
    CHECK(quote->payload().size() == 8);
    CHECK(*quote->ports() == icmp::transport_ports{55932, 8080});

    // Shorter still: the ports need four bytes of transport header.
    for (std::size_t quoted = 20; quoted < 28; ++quoted) {
        const icmp::repr r{icmp::time_exceeded{0, syn.first(quoted)}};
        std::vector<std::byte> out(r.buffer_len());
        REQUIRE_FALSE(r.emit(span_of(out)));
        const auto q = icmp::packet<const_bytes>{span_of(out)}.quoted();
        REQUIRE(q);
        CAPTURE(quoted);
        CHECK(q->ports().has_value() == (quoted >= 24));
        CHECK(icmp::repr::parse(span_of(out)));
    }
}

TEST_CASE("icmp round-trips a parameter problem built by hand (RFC 792 layout)") {
    // A parameter problem pointing at octet 1 (the TOS) of the captured echo request.
    const const_bytes original = echo_request;
    const icmp::repr r{icmp::parameter_problem{icmp::parameter_problem_code::pointer, 1, original}};
    std::vector<std::byte> message(r.buffer_len());
    REQUIRE_FALSE(r.emit(span_of(message)));
    CHECK(load_u8(span_of(message), 0) == 12);
    CHECK(load_u8(span_of(message), 4) == 1);
    CHECK(load_u8(span_of(message), 5) == 0);
    CHECK(load_be16(span_of(message), 6) == 0);
    const auto parsed = icmp::repr::parse(span_of(message));
    REQUIRE(parsed);
    CHECK(*parsed == r);
    CHECK(icmp::packet<const_bytes>{span_of(message)}.pointer() == 1);
}

TEST_CASE("icmp refuses every truncation below the header and tells short data from a bad checksum") {
    for (const_bytes datagram : {const_bytes{echo_request}, const_bytes{echo_reply}, const_bytes{port_unreachable},
                                 const_bytes{fragmentation_needed}, const_bytes{time_exceeded_echo},
                                 const_bytes{time_exceeded_tcp}}) {
        const const_bytes golden = icmp_of(datagram);
        const bool error = icmp::is_error_type(load_u8(golden, 0));
        for (std::size_t len = 0; len < golden.size(); ++len) {
            CAPTURE(golden.size(), len);
            const const_bytes cut = golden.first(len);
            if (len < icmp::header_len) {
                CHECK(icmp::packet<const_bytes>::checked(cut).error() == errc::truncated);
                CHECK(icmp::repr::parse(cut).error() == errc::truncated);
                continue;
            }
            REQUIRE(icmp::packet<const_bytes>::checked(cut));
            // As cut, the checksum fails, unless what was cut off sums to zero in one's complement:
            // trailing zero bytes, or a whole quoted header or ICMP message with its own checksum.
            const std::uint16_t tail_sum = checksum::accumulator{}.add(golden.subspan(len)).sum();
            const bool still_sums = tail_sum == 0 || tail_sum == 0xffff;
            const auto as_cut = icmp::repr::parse(cut);
            if (!still_sums) CHECK(as_cut.error() == errc::bad_checksum);
            // With the checksum refilled, what remains decides: an echo just has less data; an
            // error needs the whole quoted IPv4 header, but not the whole quoted datagram.
            auto fixed = copy_of(cut);
            refill(fixed);
            const auto r = icmp::repr::parse(span_of(fixed));
            if (!error || len >= icmp::header_len + ipv4::header_len) {
                CHECK(r);
            } else {
                CHECK(r.error() == errc::truncated);
            }
            if (still_sums) CHECK(as_cut.error() == r.error());
        }
    }
}

TEST_CASE("icmp refuses a bad checksum, but its view still reads the message") {
    for (std::size_t bit = 0; bit < 8 * 24; ++bit) {
        auto message = copy_of(icmp_of(echo_request));
        message[bit / 8] ^= std::byte{static_cast<std::uint8_t>(1u << (bit % 8))};
        CAPTURE(bit);
        const icmp::packet<const_bytes> p{span_of(message)};
        CHECK_FALSE(p.check_len());
        CHECK_FALSE(p.verify_checksum());
        CHECK(icmp::repr::parse(p).error() == errc::bad_checksum);
    }
    auto message = copy_of(icmp_of(port_unreachable));
    message.back() ^= std::byte{0x80};
    CHECK(icmp::repr::parse(span_of(message)).error() == errc::bad_checksum);
    CHECK(icmp::packet<const_bytes>{span_of(message)}.quoted()); // the quote itself is still sound
}

TEST_CASE("icmp refuses a malformed quoted header") {
    const auto with_quote_byte = [](std::size_t at, std::uint8_t value) {
        auto message = copy_of(icmp_of(port_unreachable));
        message[icmp::header_len + at] = std::byte{value};
        refill(message);
        return message;
    };
    SECTION("quoted version 6") {
        auto message = with_quote_byte(0, 0x65);
        CHECK(icmp::packet<const_bytes>{span_of(message)}.quoted().error() == errc::bad_version);
        CHECK(icmp::repr::parse(span_of(message)).error() == errc::bad_version);
    }
    SECTION("quoted IHL below 5") {
        for (std::uint8_t ihl = 0; ihl < 5; ++ihl) {
            auto message = with_quote_byte(0, static_cast<std::uint8_t>(0x40 | ihl));
            CAPTURE(ihl);
            CHECK(icmp::repr::parse(span_of(message)).error() == errc::bad_header_length);
        }
    }
    SECTION("quoted IHL past the quote") {
        auto message = with_quote_byte(0, 0x4f); // 60-byte header in a 34-byte quote
        CHECK(icmp::repr::parse(span_of(message)).error() == errc::truncated);
        auto fits = with_quote_byte(0, 0x48); // 32-byte header, 2 bytes of payload: accepted
        const auto quote = icmp::packet<const_bytes>{span_of(fits)}.quoted();
        REQUIRE(quote);
        CHECK(quote->header_length() == 32);
        CHECK(quote->payload().size() == 2);
        CHECK_FALSE(quote->ports()); // two bytes are not a source and a destination port
    }
    SECTION("quoted total_length inside its own header") {
        auto message = copy_of(icmp_of(port_unreachable));
        store_be16(span_of(message), icmp::header_len + ipv4::field::total_length, 19);
        refill(message);
        CHECK(icmp::repr::parse(span_of(message)).error() == errc::bad_length);
        // A total_length beyond the quote is the normal case, and the payload stops at the quote.
        store_be16(span_of(message), icmp::header_len + ipv4::field::total_length, 1500);
        refill(message);
        REQUIRE(icmp::repr::parse(span_of(message)));
        CHECK(icmp::packet<const_bytes>{span_of(message)}.quoted()->payload().size() == 14);
        // A total_length short of the quote (a quote with trailing padding) cuts the payload.
        store_be16(span_of(message), icmp::header_len + ipv4::field::total_length, 28);
        refill(message);
        CHECK(icmp::packet<const_bytes>{span_of(message)}.quoted()->payload().size() == 8);
    }
    SECTION("no room for a quoted header at all") {
        for (std::size_t quoted = 0; quoted < ipv4::header_len; ++quoted) {
            std::vector<std::byte> message(icmp::header_len + quoted);
            store_u8(span_of(message), 0, icmp::type::destination_unreachable);
            refill(message);
            CAPTURE(quoted);
            CHECK(icmp::repr::parse(span_of(message)).error() == errc::truncated);
        }
    }
    SECTION("the RFC 4884 length field") {
        // Quote the 34 bytes padded to 36 (9 words), then an extension area the repr leaves out.
        auto message = copy_of(icmp_of(port_unreachable));
        message.resize(message.size() + 2 + 12, std::byte{0x5a});
        message[icmp::header_len + 34] = std::byte{0};
        message[icmp::header_len + 35] = std::byte{0};
        message[icmp::field::original_length] = std::byte{9};
        refill(message);
        const auto quote = icmp::packet<const_bytes>{span_of(message)}.quoted();
        REQUIRE(quote);
        CHECK(quote->bytes().size() == 36);
        CHECK(quote->payload().size() == 14); // still bounded by the quoted total_length
        const auto r = icmp::repr::parse(span_of(message));
        REQUIRE(r);
        CHECK(std::get<icmp::destination_unreachable>(r->message).quoted.size() == 36);

        message[icmp::field::original_length] = std::byte{13}; // 52 bytes, but only 48 follow
        refill(message);
        CHECK(icmp::repr::parse(span_of(message)).error() == errc::bad_length);
        message[icmp::field::original_length] = std::byte{4}; // 16 bytes: no room for a header
        refill(message);
        CHECK(icmp::repr::parse(span_of(message)).error() == errc::truncated);
    }
}

TEST_CASE("icmp parses other types as unsupported, and the view still reads them") {
    SECTION("timestamp request and unassigned types") {
        for (const std::uint8_t message_type : std::array<std::uint8_t, 5>{13, 14, 9, 42, 255}) {
            std::vector<std::byte> message(20);
            icmp::packet<mutable_bytes> p{span_of(message)};
            p.set_type(message_type);
            p.set_code(0);
            p.fill_checksum();
            CAPTURE(message_type);
            CHECK(icmp::repr::parse(span_of(message)).error() == errc::unsupported);
            CHECK(p.type() == message_type);
            CHECK(p.verify_checksum());
            CHECK(p.quoted().error() == errc::unsupported);
        }
    }
    SECTION("a redirect: unsupported by repr, but its quote and gateway are readable") {
        auto message = copy_of(icmp_of(port_unreachable));
        icmp::packet<mutable_bytes> p{span_of(message)};
        p.set_type(icmp::type::redirect);
        p.set_code(1);
        store_be32(span_of(message), icmp::field::gateway, 0x0a4d00fe);
        p.fill_checksum();
        CHECK(icmp::repr::parse(span_of(message)).error() == errc::unsupported);
        CHECK(p.gateway() == ipv4_address(10, 77, 0, 254));
        // Byte 5 is part of the gateway here, not an RFC 4884 length.
        const auto quote = p.quoted();
        REQUIRE(quote);
        CHECK(quote->bytes().size() == 34);
    }
    SECTION("an echo with a non-zero code") {
        auto message = copy_of(icmp_of(echo_request));
        message[icmp::field::code] = std::byte{1};
        refill(message);
        CHECK(icmp::repr::parse(span_of(message)).error() == errc::bad_field);
    }
}

TEST_CASE("icmp emit refuses a short buffer and a bad quote, and works in place") {
    const const_bytes message = icmp_of(port_unreachable);
    const icmp::repr r{icmp::destination_unreachable{icmp::unreachable_code::port, 0, message.subspan(8)}};
    std::vector<std::byte> out(r.buffer_len() - 1);
    CHECK(r.emit(span_of(out)) == errc::buffer_too_small);

    // A quote parse would refuse is refused by emit too, and nothing is written.
    std::vector<std::byte> room(64, std::byte{0x11});
    const auto untouched = room;
    auto bad = copy_of(message.subspan(8));
    bad[0] = std::byte{0x60};
    CHECK(icmp::repr{icmp::time_exceeded{0, span_of(bad)}}.emit(span_of(room)) == errc::bad_version);
    CHECK(icmp::repr{icmp::parameter_problem{0, 0, span_of(bad).first(12)}}.emit(span_of(room)) == errc::truncated);
    bad[0] = std::byte{0x45};
    store_be16(span_of(bad), ipv4::field::total_length, 4);
    CHECK(icmp::repr{icmp::destination_unreachable{3, 0, span_of(bad)}}.emit(span_of(room)) == errc::bad_length);
    CHECK(same_bytes(span_of(room), untouched));

    // In place: the quote already sits where the message body goes (and the header bytes before
    // it hold garbage). emit copies over itself and fills in the rest.
    std::vector<std::byte> buffer(message.size(), std::byte{0xee});
    std::copy(message.begin() + 8, message.end(), buffer.begin() + 8);
    const icmp::repr in_place{icmp::destination_unreachable{icmp::unreachable_code::port, 0, span_of(buffer).subspan(8)}};
    REQUIRE_FALSE(in_place.emit(span_of(buffer)));
    CHECK(same_bytes(span_of(buffer), message));

    // Overlapping the other way: the body starts inside the header area.
    std::vector<std::byte> shifted(message.size() + 8);
    std::copy(message.begin() + 8, message.end(), shifted.begin() + 4);
    const icmp::repr overlap{icmp::destination_unreachable{icmp::unreachable_code::port, 0,
                                                           span_of(shifted).subspan(4, message.size() - 8)}};
    REQUIRE_FALSE(overlap.emit(span_of(shifted)));
    CHECK(same_bytes(span_of(shifted).first(message.size()), message));
}

TEST_CASE("icmp NAT rewrites keep every checksum equal to a full recomputation") {
    SECTION("the echo identifier of an echo request") {
        auto message = copy_of(icmp_of(echo_request));
        icmp::packet<mutable_bytes> p{span_of(message)};
        for (const std::uint16_t id : std::array<std::uint16_t, 4>{0x0000, 0xffff, 0x1234, 0x1918}) {
            p.rewrite_identifier(id);
            CHECK(p.identifier() == id);
            const std::uint16_t incremental = p.checksum();
            p.fill_checksum();
            CAPTURE(id);
            CHECK(incremental == p.checksum());
        }
        CHECK(same_bytes(span_of(message), icmp_of(echo_request)));
    }
    SECTION("a quoted UDP datagram: addresses, ports, IPv4 and UDP checksums") {
        auto message = copy_of(icmp_of(port_unreachable));
        icmp::packet<mutable_bytes> p{span_of(message)};
        auto quote = p.quoted();
        REQUIRE(quote);
        REQUIRE(load_be16(quote->payload(), 6) == transport_checksum(*quote, 6)); // captured: valid
        // What a NAT does to an error coming back: the guest's own address and port reappear.
        quote->rewrite_source(ipv4_address(192, 168, 64, 2));
        CHECK(quote->rewrite_source_port(40000));
        quote->rewrite_destination(ipv4_address(203, 0, 113, 9));
        CHECK(quote->rewrite_destination_port(53));
        p.fill_checksum();

        CHECK(quote->source() == ipv4_address(192, 168, 64, 2));
        CHECK(quote->destination() == ipv4_address(203, 0, 113, 9));
        CHECK(*quote->ports() == icmp::transport_ports{40000, 53});
        CHECK(checksum::internet(quote->header()) == 0);
        CHECK(load_be16(quote->payload(), 6) == transport_checksum(*quote, 6));
        CHECK(p.verify_checksum());
        CHECK(icmp::repr::parse(span_of(message)));
        CHECK_FALSE(quote->rewrite_echo_identifier(1)); // not an echo: nothing changes
    }
    SECTION("a UDP checksum of zero means none, and stays zero") {
        auto message = copy_of(icmp_of(port_unreachable));
        auto quote = icmp::packet<mutable_bytes>{span_of(message)}.quoted();
        REQUIRE(quote);
        store_be16(quote->payload(), 6, 0);
        quote->rewrite_source(ipv4_address(192, 168, 64, 2));
        CHECK(quote->rewrite_destination_port(53));
        CHECK(load_be16(quote->payload(), 6) == 0);
        CHECK(checksum::internet(quote->header()) == 0);
    }
    SECTION("a UDP checksum that comes out zero is sent as all ones (RFC 768)") {
        auto message = copy_of(icmp_of(port_unreachable));
        auto quote = icmp::packet<mutable_bytes>{span_of(message)}.quoted();
        REQUIRE(quote);
        // Pick the destination port that makes the new checksum exactly zero: RFC 1624 gives
        // HC' = ~(~HC + ~m + m'), which is zero when ~HC + ~m + m' folds to 0xffff.
        const std::uint16_t old_sum = load_be16(quote->payload(), 6);
        const std::uint16_t old_port = quote->ports()->destination;
        const std::uint16_t partial = checksum::accumulator{}
                                          .add16(static_cast<std::uint16_t>(~old_sum))
                                          .add16(static_cast<std::uint16_t>(~old_port))
                                          .sum();
        const auto port = static_cast<std::uint16_t>(0xffff - partial);
        REQUIRE(checksum::update16(old_sum, old_port, port) == 0);
        CHECK(quote->rewrite_destination_port(port));
        CHECK(load_be16(quote->payload(), 6) == 0xffff);
        CHECK(transport_checksum(*quote, 6) == 0); // the true sum, which UDP cannot send as zero
    }
    SECTION("a quoted TCP segment") {
        auto message = copy_of(icmp_of(time_exceeded_tcp));
        icmp::packet<mutable_bytes> p{span_of(message)};
        auto quote = p.quoted();
        REQUIRE(quote);
        REQUIRE(load_be16(quote->payload(), 16) == transport_checksum(*quote, 16)); // captured: valid
        quote->rewrite_source(ipv4_address(192, 168, 64, 3));
        CHECK(quote->rewrite_source_port(1024));
        CHECK(load_be16(quote->payload(), 16) == transport_checksum(*quote, 16));
        CHECK(checksum::internet(quote->header()) == 0);
        CHECK_FALSE(quote->rewrite_echo_identifier(7));
    }
    SECTION("a quoted ICMP echo") {
        auto message = copy_of(icmp_of(time_exceeded_echo));
        icmp::packet<mutable_bytes> p{span_of(message)};
        auto quote = p.quoted();
        REQUIRE(quote);
        CHECK_FALSE(quote->rewrite_source_port(1)); // an echo has no ports
        CHECK(quote->rewrite_echo_identifier(0xbeef));
        quote->rewrite_source(ipv4_address(192, 168, 64, 4));
        CHECK(quote->echo_identifier() == std::uint16_t{0xbeef});
        // The quoted echo is complete, so its own checksum can be checked from scratch.
        CHECK(checksum::internet(quote->payload()) == 0);
        CHECK(checksum::internet(quote->header()) == 0);
    }
    SECTION("a quote too short for the transport checksum leaves it alone") {
        // The RFC 792 minimum quote of the SYN stops before the TCP checksum (offset 16).
        const const_bytes syn = icmp_of(time_exceeded_tcp).subspan(8, 28);
        std::vector<std::byte> message(36);
        REQUIRE_FALSE(icmp::repr{icmp::time_exceeded{0, syn}}.emit(span_of(message)));
        auto quote = icmp::packet<mutable_bytes>{span_of(message)}.quoted();
        REQUIRE(quote);
        quote->rewrite_destination(ipv4_address(198, 51, 100, 1));
        CHECK(quote->rewrite_destination_port(443));
        CHECK(*quote->ports() == icmp::transport_ports{55932, 443});
        CHECK(same_bytes(quote->payload().subspan(4), syn.subspan(24))); // sequence number untouched
        CHECK(checksum::internet(quote->header()) == 0);
    }
}

namespace {
template <class View>
concept writable_icmp = requires(View p) {
    p.set_type(1);
    p.fill_checksum();
    p.rewrite_identifier(1);
};
template <class Quote>
concept writable_quote = requires(Quote q) {
    q.rewrite_source(ipv4_address{});
    q.rewrite_source_port(1);
};
} // namespace

TEST_CASE("icmp read-only views have no setters") {
    STATIC_REQUIRE_FALSE(writable_icmp<icmp::packet<const_bytes>>);
    STATIC_REQUIRE(writable_icmp<icmp::packet<mutable_bytes>>);
    STATIC_REQUIRE_FALSE(writable_quote<icmp::quoted_datagram<const_bytes>>);
    STATIC_REQUIRE(writable_quote<icmp::quoted_datagram<mutable_bytes>>);
}
