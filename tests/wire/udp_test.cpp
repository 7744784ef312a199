#include <ankanet/wire/udp.hpp>

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

// Golden datagrams, cut out of IPv4 packets captured with tcpdump on a veth pair between two
// network namespaces made for the purpose (192.0.2.1 <-> 192.0.2.2, TX checksum offload off so the
// checksums on the wire are the final ones). A Python UDP socket at 192.0.2.1:40053 sent a DNS
// query for example.com A to 192.0.2.2:53, and a Python socket there answered it.

// 192.0.2.1:40053 -> 192.0.2.2:53, 37 bytes, checksum 0xfd53.
constexpr auto dns_query = make_bytes(
    0x9c, 0x75, 0x00, 0x35, 0x00, 0x25, 0xfd, 0x53, 0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d,
    0x00, 0x00, 0x01, 0x00, 0x01);

// 192.0.2.2:53 -> 192.0.2.1:40053, 53 bytes, checksum 0xf82f: one A record, 192.0.2.53.
constexpr auto dns_response = make_bytes(
    0x00, 0x35, 0x9c, 0x75, 0x00, 0x35, 0xf8, 0x2f, 0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d,
    0x00, 0x00, 0x01, 0x00, 0x01, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00,
    0x04, 0xc0, 0x00, 0x02, 0x35);

constexpr ipv4_address client{192, 0, 2, 1};
constexpr ipv4_address server{192, 0, 2, 2};

template <std::size_t N>
std::vector<std::byte> copy_of(const std::array<std::byte, N>& bytes) {
    return {bytes.begin(), bytes.end()};
}

const_bytes cview(const std::vector<std::byte>& v) { return {v.data(), v.size()}; }
mutable_bytes mview(std::vector<std::byte>& v) { return {v.data(), v.size()}; }

// A full recomputation of the checksum field, RFC 768 style (0 sent as 0xffff).
std::uint16_t full_checksum(std::vector<std::byte> datagram, ipv4_address src, ipv4_address dst) {
    udp::packet<mutable_bytes> view{mview(datagram)};
    view.fill_checksum(src, dst);
    return view.checksum();
}

} // namespace

TEST_CASE("golden DNS query decodes field by field") {
    const udp::packet<const_bytes> view{dns_query};
    REQUIRE_FALSE(view.check_len());
    CHECK(view.source_port() == 40053);
    CHECK(view.destination_port() == 53);
    CHECK(view.length() == 37);
    CHECK(view.checksum() == 0xfd53);
    REQUIRE(view.payload().size() == 29);
    CHECK(std::ranges::equal(view.payload(), const_bytes{dns_query}.subspan(8)));
    CHECK(static_cast<std::uint8_t>(view.payload()[0]) == 0x12); // DNS id 0x1234
    CHECK(view.verify_checksum(client, server));
    // The pseudo-header sum is commutative, so swapping the addresses still verifies; any other
    // address does not.
    CHECK(view.verify_checksum(server, client));
    CHECK_FALSE(view.verify_checksum(client, ipv4_address{192, 0, 2, 3}));
    CHECK_FALSE(view.verify_checksum(ipv4_address{192, 0, 2, 9}, server));

    const auto r = udp::repr::parse(const_bytes{dns_query}, client, server);
    REQUIRE(r);
    CHECK(r->source_port == 40053);
    CHECK(r->destination_port == 53);
    CHECK(r->payload_len == 29);
    CHECK(udp::repr::parse(const_bytes{dns_query}, client, ipv4_address{192, 0, 2, 3}).error() == errc::bad_checksum);
}

TEST_CASE("golden DNS response decodes field by field") {
    const auto view = udp::packet<const_bytes>::checked(dns_response);
    REQUIRE(view);
    CHECK(view->source_port() == 53);
    CHECK(view->destination_port() == 40053);
    CHECK(view->length() == 53);
    CHECK(view->checksum() == 0xf82f);
    CHECK(view->payload().size() == 45);
    CHECK(view->verify_checksum(server, client));
    const auto r = udp::repr::parse(const_bytes{dns_response}, server, client);
    REQUIRE(r);
    CHECK(*r == udp::repr{53, 40053, 45});
}

TEST_CASE("emit re-encodes the golden datagrams byte for byte") {
    struct golden { const_bytes bytes; ipv4_address src, dst; };
    for (const auto& g : {golden{dns_query, client, server}, golden{dns_response, server, client}}) {
        const auto r = udp::repr::parse(g.bytes, g.src, g.dst);
        REQUIRE(r);
        REQUIRE(r->buffer_len() == udp::header_len);
        // The caller puts the payload in place first; emit writes the header and the checksum.
        std::vector<std::byte> out(r->buffer_len() + r->payload_len, std::byte{0xee});
        std::ranges::copy(g.bytes.subspan(udp::header_len), out.begin() + udp::header_len);
        REQUIRE_FALSE(r->emit(mview(out), g.src, g.dst));
        CHECK(std::ranges::equal(out, g.bytes));
    }
}

TEST_CASE("emit leaves bytes past the payload alone and refuses short buffers") {
    const udp::repr r{1234, 5678, 3};
    std::vector<std::byte> out(udp::header_len + 3 + 2, std::byte{0xab});
    REQUIRE_FALSE(r.emit(mview(out), client, server));
    CHECK(out[udp::header_len + 3] == std::byte{0xab});
    CHECK(out[udp::header_len + 4] == std::byte{0xab});
    const udp::packet<const_bytes> view{cview(out)};
    CHECK(view.length() == udp::header_len + 3);
    CHECK(view.verify_checksum(client, server));

    std::vector<std::byte> short_buffer(udp::header_len + 2);
    CHECK(r.emit(mview(short_buffer), client, server) == errc::buffer_too_small);
    std::vector<std::byte> empty;
    CHECK(r.emit(mview(empty), client, server) == errc::buffer_too_small);

    const udp::repr too_long{1, 2, udp::max_payload_len + 1};
    std::vector<std::byte> big(udp::header_len + udp::max_payload_len + 1);
    CHECK(too_long.emit(mview(big), client, server) == errc::bad_length);
    const udp::repr longest{1, 2, udp::max_payload_len};
    REQUIRE_FALSE(longest.emit(mview(big), client, server));
    CHECK(udp::packet<const_bytes>{cview(big)}.length() == 0xffff);
    CHECK(udp::repr::parse(cview(big), client, server).value().payload_len == udp::max_payload_len);
}

TEST_CASE("every truncation of a golden datagram is refused") {
    for (std::size_t n = 0; n < dns_response.size(); ++n) {
        INFO("length " << n);
        const const_bytes cut = const_bytes{dns_response}.first(n);
        const udp::packet<const_bytes> view{cut};
        // Shorter than the header: truncated. Otherwise the length field (53) exceeds the buffer.
        CHECK(view.check_len() == (n < udp::header_len ? errc::truncated : errc::bad_length));
        CHECK_FALSE(udp::packet<const_bytes>::checked(cut));
        CHECK(udp::repr::parse(cut, server, client).error() == view.check_len());
    }
}

TEST_CASE("a length field that lies is refused (CVE-2021-3594)") {
    auto bytes = copy_of(dns_query);
    udp::packet<mutable_bytes> view{mview(bytes)};

    SECTION("longer than the buffer") {
        for (const std::uint16_t len : {std::uint16_t{38}, std::uint16_t{1000}, std::uint16_t{0xffff}}) {
            view.set_length(len);
            CHECK(view.check_len() == errc::bad_length);
            CHECK(udp::repr::parse(cview(bytes), client, server).error() == errc::bad_length);
        }
    }
    SECTION("shorter than the header") {
        for (std::uint16_t len = 0; len < udp::header_len; ++len) {
            view.set_length(len);
            CHECK(view.check_len() == errc::bad_length);
            CHECK(udp::repr::parse(cview(bytes), client, server).error() == errc::bad_length);
        }
    }
    SECTION("shorter than the buffer: the payload stops at the length field") {
        bytes.insert(bytes.end(), {std::byte{0xde}, std::byte{0xad}, std::byte{0xbe}}); // e.g. padding
        const udp::packet<const_bytes> padded{cview(bytes)};
        REQUIRE_FALSE(padded.check_len());
        CHECK(padded.payload().size() == 29);
        CHECK(padded.datagram().size() == 37);
        CHECK(padded.verify_checksum(client, server)); // the trailing bytes are not summed
        CHECK(udp::repr::parse(cview(bytes), client, server).value().payload_len == 29);
    }
    SECTION("exactly the header: an empty payload") {
        std::vector<std::byte> header(bytes.begin(), bytes.begin() + 8);
        udp::packet<mutable_bytes> empty{mview(header)};
        empty.set_length(8);
        empty.fill_checksum(client, server);
        const auto r = udp::repr::parse(cview(header), client, server);
        REQUIRE(r);
        CHECK(r->payload_len == 0);
        CHECK(empty.payload().empty());
    }
}

TEST_CASE("spans stay inside the buffer even when a length is set after check_len") {
    auto bytes = copy_of(dns_query);
    udp::packet<mutable_bytes> view{mview(bytes)};
    REQUIRE_FALSE(view.check_len());
    view.set_length(0xffff);
    CHECK(view.datagram().size() == bytes.size());
    CHECK(view.payload().size() == bytes.size() - udp::header_len);
    CHECK_FALSE(view.verify_checksum(client, server)); // sums the buffer, not 64 KiB past it
    view.set_length(3);
    CHECK(view.datagram().size() == 3);
    CHECK(view.payload().empty());
}

TEST_CASE("every single-bit error in a golden datagram is refused") {
    for (std::size_t bit = 0; bit < dns_query.size() * 8; ++bit) {
        auto bytes = copy_of(dns_query);
        bytes[bit / 8] ^= static_cast<std::byte>(1u << (bit % 8));
        INFO("bit " << bit);
        const auto r = udp::repr::parse(cview(bytes), client, server);
        REQUIRE_FALSE(r);
        // A flip in the length field may make it lie (refused before the checksum is looked
        // at); anywhere else, and for a shorter but plausible length, the checksum catches it.
        const std::size_t len = load_be16(cview(bytes), udp::field::length);
        const bool lies = len < udp::header_len || len > bytes.size();
        CHECK(r.error() == (lies ? errc::bad_length : errc::bad_checksum));
    }
}

TEST_CASE("checksum 0 means none, and a computed 0 is sent as 0xffff") {
    auto bytes = copy_of(dns_query);
    udp::packet<mutable_bytes> view{mview(bytes)};

    view.set_checksum(0);
    CHECK(view.verify_checksum(client, server));
    CHECK(view.verify_checksum(ipv4_address{10, 9, 8, 7}, ipv4_address{1, 2, 3, 4}));
    CHECK(udp::repr::parse(cview(bytes), client, server));

    // Make the true sum come out as 0: put the checksum of the rest into the last payload word.
    bytes[34] = bytes[35] = std::byte{0}; // a 16-bit word at an even offset (the query class)
    view.fill_checksum(client, server);
    const std::uint16_t fix = view.checksum();
    REQUIRE(fix != 0xffff); // the sum of the datagram is not itself zero
    store_be16(mview(bytes), 34, fix);
    view.fill_checksum(client, server);
    CHECK(view.checksum() == 0xffff);
    CHECK(view.verify_checksum(client, server));
    store_be16(mview(bytes), udp::field::checksum, 0x0000); // the other zero: "none"
    CHECK(view.verify_checksum(client, server));

    // emit makes the same choice.
    const auto r = udp::repr::parse(cview(bytes), client, server);
    REQUIRE(r);
    std::vector<std::byte> out = bytes;
    REQUIRE_FALSE(r->emit(mview(out), client, server));
    CHECK(udp::packet<const_bytes>{cview(out)}.checksum() == 0xffff);
}

TEST_CASE("setters write the fields they name") {
    auto bytes = copy_of(dns_response);
    udp::packet<mutable_bytes> view{mview(bytes)};
    view.set_source_port(0x1234);
    view.set_destination_port(0xabcd);
    view.set_length(20);
    view.set_checksum(0x5a5a);
    CHECK(view.source_port() == 0x1234);
    CHECK(view.destination_port() == 0xabcd);
    CHECK(view.length() == 20);
    CHECK(view.checksum() == 0x5a5a);
    CHECK(bytes[0] == std::byte{0x12});
    CHECK(bytes[3] == std::byte{0xcd});
    CHECK(bytes[5] == std::byte{20});
    CHECK(view.payload().size() == 12);
    CHECK(std::ranges::equal(const_bytes{bytes}.subspan(8), const_bytes{dns_response}.subspan(8)));
}

TEST_CASE("NAT rewrite of the golden query equals a full recomputation") {
    auto bytes = copy_of(dns_query);
    udp::packet<mutable_bytes> view{mview(bytes)};
    // Source NAT as a gateway would do it: 192.0.2.1:40053 -> 203.0.113.7:61000.
    const ipv4_address outside{203, 0, 113, 7};
    view.rewrite_source_port(61000);
    view.rewrite_pseudo_header_address(client, outside);
    CHECK(view.source_port() == 61000);
    CHECK(view.verify_checksum(outside, server));
    CHECK_FALSE(view.verify_checksum(client, server));
    CHECK(view.checksum() == full_checksum(bytes, outside, server));
    // And back again: the original bytes.
    view.rewrite_source_port(40053);
    view.rewrite_pseudo_header_address(outside, client);
    CHECK(std::ranges::equal(bytes, dns_query));

    view.rewrite_destination_port(5353);
    CHECK(view.checksum() == full_checksum(bytes, client, server));
}

TEST_CASE("NAT rewrite keeps a zero checksum zero") {
    auto bytes = copy_of(dns_query);
    udp::packet<mutable_bytes> view{mview(bytes)};
    view.set_checksum(0);
    view.rewrite_source_port(1);
    view.rewrite_destination_port(2);
    view.rewrite_pseudo_header_address(client, ipv4_address{198, 51, 100, 1});
    CHECK(view.checksum() == 0);
    CHECK(view.source_port() == 1);
    CHECK(view.destination_port() == 2);
}

TEST_CASE("NAT rewrite whose result is zero sends 0xffff, as a recomputation does") {
    auto bytes = copy_of(dns_query);
    udp::packet<mutable_bytes> view{mview(bytes)};
    // Find the source port for which the datagram's checksum comes out as 0 (sent as 0xffff).
    int found = -1;
    for (int port = 0; port <= 0xffff && found < 0; ++port) {
        auto probe = bytes;
        udp::packet<mutable_bytes> p{mview(probe)};
        p.set_source_port(static_cast<std::uint16_t>(port));
        if (full_checksum(probe, client, server) == 0xffff) found = port;
    }
    REQUIRE(found >= 0);
    view.rewrite_source_port(static_cast<std::uint16_t>(found));
    CHECK(view.checksum() == 0xffff);
    CHECK(view.verify_checksum(client, server));
    // And away from it again.
    view.rewrite_source_port(40053);
    CHECK(view.checksum() == 0xfd53);
}

TEST_CASE("incremental updates equal full recomputation on random datagrams") {
    std::mt19937 rng{20240611};
    auto byte = [&] { return static_cast<std::byte>(rng() & 0xff); };
    auto u16 = [&] { return static_cast<std::uint16_t>(rng() & 0xffff); };
    auto addr = [&] { return ipv4_address{static_cast<std::uint32_t>(rng())}; };
    for (int iteration = 0; iteration < 20000; ++iteration) {
        const std::size_t len = udp::header_len + rng() % 64; // odd lengths too
        std::vector<std::byte> bytes(len);
        std::ranges::generate(bytes, byte);
        udp::packet<mutable_bytes> view{mview(bytes)};
        view.set_length(static_cast<std::uint16_t>(len));
        ipv4_address src = addr();
        ipv4_address dst = addr();
        view.fill_checksum(src, dst);
        for (int step = 0; step < 4; ++step) {
            switch (rng() % 4) {
            case 0: view.rewrite_source_port(u16()); break;
            case 1: view.rewrite_destination_port(u16()); break;
            case 2: { const auto to = addr(); view.rewrite_pseudo_header_address(src, to); src = to; break; }
            default: { const auto to = addr(); view.rewrite_pseudo_header_address(dst, to); dst = to; break; }
            }
            INFO("iteration " << iteration << " step " << step);
            REQUIRE(view.checksum() == full_checksum(bytes, src, dst));
            REQUIRE(view.verify_checksum(src, dst));
        }
    }
}

TEST_CASE("parse and emit round-trip random datagrams") {
    std::mt19937 rng{7};
    for (int iteration = 0; iteration < 2000; ++iteration) {
        const udp::repr r{static_cast<std::uint16_t>(rng()), static_cast<std::uint16_t>(rng()), rng() % 300};
        std::vector<std::byte> out(r.buffer_len() + r.payload_len);
        std::ranges::generate(out, [&] { return static_cast<std::byte>(rng()); });
        const ipv4_address src{static_cast<std::uint32_t>(rng())};
        const ipv4_address dst{static_cast<std::uint32_t>(rng())};
        REQUIRE_FALSE(r.emit(mview(out), src, dst));
        const auto back = udp::repr::parse(cview(out), src, dst);
        REQUIRE(back);
        CHECK(*back == r);
        CHECK(udp::packet<const_bytes>{cview(out)}.checksum() != 0);
    }
}
