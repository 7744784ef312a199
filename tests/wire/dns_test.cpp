#include <ankanet/wire/dns.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

using ankanet::errc;
using ankanet::wire::const_bytes;
using ankanet::wire::ipv4_address;
using ankanet::wire::make_bytes;
using ankanet::wire::mutable_bytes;
namespace dns = ankanet::wire::dns;

namespace {

// Golden messages. All were produced on loopback only, on 2026-11-28, by
//   dnsmasq 2.90 --no-daemon --no-resolv --no-hosts --port=45353 --listen-address=127.0.0.1
//     --bind-interfaces --address=/example.test/192.0.2.7 --address=/nx.test/
//     --host-record=host.lan.test,192.0.2.8,2001:db8::8 --cname=alias.lan.test,host.lan.test
//     --address=/multi.test/192.0.2.1 --address=/multi.test/192.0.2.2
// (no upstream, so it never forwards), queried with DiG 9.18.49 (`dig @127.0.0.1 -p 45353 ...`)
// and BusyBox 1.35 nslookup, captured with `tcpdump -i lo -w dns.pcap port 45353`; the bytes are
// the UDP payloads (for TCP: the TCP payload, length prefix included).

// `dig www.example.test A +noedns`
constexpr auto dig_a_query = make_bytes(
    0xfa, 0x57, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x77, 0x77, 0x77,
    0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01,
    0x00, 0x01);
// dnsmasq's reply: QR AA RD RA, the answer's owner a pointer to offset 12.
constexpr auto dnsmasq_a_response = make_bytes(
    0xfa, 0x57, 0x85, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x03, 0x77, 0x77, 0x77,
    0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01,
    0x00, 0x01, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xc0, 0x00,
    0x02, 0x07);
// `dig www.example.test A` (dig's default: EDNS, UDP size 1232, a client COOKIE option).
constexpr auto dig_edns_cookie_query = make_bytes(
    0x86, 0x8b, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x77, 0x77, 0x77,
    0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x0a, 0x00,
    0x08, 0xa6, 0xc1, 0x54, 0xd6, 0x33, 0x5d, 0x31, 0xc3);
// dnsmasq's reply: OPT in additional, without options.
constexpr auto dnsmasq_edns_cookie_response = make_bytes(
    0x86, 0x8b, 0x85, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x03, 0x77, 0x77, 0x77,
    0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01,
    0x00, 0x01, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xc0, 0x00,
    0x02, 0x07, 0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00);
// `dig www.example.test A +nocookie`: EDNS without options.
constexpr auto dig_edns_query = make_bytes(
    0x7d, 0xbb, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x77, 0x77, 0x77,
    0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00);
constexpr auto dnsmasq_edns_response = make_bytes(
    0x7d, 0xbb, 0x85, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x03, 0x77, 0x77, 0x77,
    0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01,
    0x00, 0x01, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xc0, 0x00,
    0x02, 0x07, 0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00);
// `dig host.lan.test AAAA +noedns`
constexpr auto dig_aaaa_query = make_bytes(
    0xb3, 0x33, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x73,
    0x74, 0x03, 0x6c, 0x61, 0x6e, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x1c, 0x00, 0x01);
constexpr auto dnsmasq_aaaa_response = make_bytes(
    0xb3, 0x33, 0x85, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x73,
    0x74, 0x03, 0x6c, 0x61, 0x6e, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x1c, 0x00, 0x01, 0xc0,
    0x0c, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x20, 0x01, 0x0d, 0xb8, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08);
// `dig a.nx.test A +noedns` (--address=/nx.test/ makes dnsmasq answer NXDOMAIN)
constexpr auto dig_nxdomain_query = make_bytes(
    0x3c, 0x0d, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x61, 0x02, 0x6e,
    0x78, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00, 0x01);
constexpr auto dnsmasq_nxdomain_response = make_bytes(
    0x3c, 0x0d, 0x81, 0x83, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x61, 0x02, 0x6e,
    0x78, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00, 0x01);
// `dig alias.lan.test A +noedns`: a CNAME, then an A record whose owner is a pointer into the
// CNAME's RDATA (offset 0x2c), which itself is written uncompressed.
constexpr auto dig_cname_query = make_bytes(
    0x95, 0x4b, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x61, 0x6c, 0x69,
    0x61, 0x73, 0x03, 0x6c, 0x61, 0x6e, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00, 0x01);
constexpr auto dnsmasq_cname_response = make_bytes(
    0x95, 0x4b, 0x85, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x05, 0x61, 0x6c, 0x69,
    0x61, 0x73, 0x03, 0x6c, 0x61, 0x6e, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00, 0x01,
    0xc0, 0x0c, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0x04, 0x68, 0x6f, 0x73,
    0x74, 0x03, 0x6c, 0x61, 0x6e, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0xc0, 0x2c, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xc0, 0x00, 0x02, 0x08);
// `dig x.multi.test A +noedns`: two A records.
constexpr auto dig_multi_query = make_bytes(
    0xc7, 0xfd, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x78, 0x05, 0x6d,
    0x75, 0x6c, 0x74, 0x69, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00, 0x01);
constexpr auto dnsmasq_multi_response = make_bytes(
    0xc7, 0xfd, 0x85, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x78, 0x05, 0x6d,
    0x75, 0x6c, 0x74, 0x69, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00, 0x01, 0xc0, 0x0c,
    0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xc0, 0x00, 0x02, 0x02, 0xc0, 0x0c,
    0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xc0, 0x00, 0x02, 0x01);
// `dig other.invalid A +noedns`: no upstream for it, so REFUSED.
constexpr auto dig_refused_query = make_bytes(
    0xa9, 0xf0, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x6f, 0x74, 0x68,
    0x65, 0x72, 0x07, 0x69, 0x6e, 0x76, 0x61, 0x6c, 0x69, 0x64, 0x00, 0x00, 0x01, 0x00, 0x01);
constexpr auto dnsmasq_refused_response = make_bytes(
    0xa9, 0xf0, 0x81, 0x85, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x6f, 0x74, 0x68,
    0x65, 0x72, 0x07, 0x69, 0x6e, 0x76, 0x61, 0x6c, 0x69, 0x64, 0x00, 0x00, 0x01, 0x00, 0x01);
// `dig host.lan.test A +tcp +noedns`: the TCP payloads, 2-byte length prefix first.
constexpr auto dig_tcp_query_stream = make_bytes(
    0x00, 0x1f, 0x5c, 0xce, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x68,
    0x6f, 0x73, 0x74, 0x03, 0x6c, 0x61, 0x6e, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00,
    0x01);
constexpr auto dnsmasq_tcp_response_stream = make_bytes(
    0x00, 0x2f, 0x5c, 0xce, 0x85, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x04, 0x68,
    0x6f, 0x73, 0x74, 0x03, 0x6c, 0x61, 0x6e, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00,
    0x01, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xc0, 0x00, 0x02,
    0x08);
// `busybox nslookup -type=a host.lan.test 127.0.0.1:45353`: RD only, no AD bit.
constexpr auto busybox_query = make_bytes(
    0xd1, 0x74, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x73,
    0x74, 0x03, 0x6c, 0x61, 0x6e, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00, 0x01);
constexpr auto busybox_response = make_bytes(
    0xd1, 0x74, 0x85, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x73,
    0x74, 0x03, 0x6c, 0x61, 0x6e, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00, 0x01, 0xc0,
    0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xc0, 0x00, 0x02, 0x08);

template <std::size_t N>
const_bytes bytes_of(const std::array<std::byte, N>& a) {
    return a;
}

std::vector<std::byte> to_vector(const_bytes b) { return {b.begin(), b.end()}; }

bool same_bytes(const_bytes a, const_bytes b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

/// A message: header (id 0x1234, flags 0, the given counts) followed by `body`.
std::vector<std::byte> message_with(std::initializer_list<int> body, std::uint16_t qd, std::uint16_t an = 0,
                                    std::uint16_t ns = 0, std::uint16_t ar = 0) {
    std::vector<std::byte> out(dns::header_len);
    ankanet::wire::store_be16(out, dns::field::id, 0x1234);
    ankanet::wire::store_be16(out, dns::field::qdcount, qd);
    ankanet::wire::store_be16(out, dns::field::ancount, an);
    ankanet::wire::store_be16(out, dns::field::nscount, ns);
    ankanet::wire::store_be16(out, dns::field::arcount, ar);
    for (int b : body) out.push_back(static_cast<std::byte>(b));
    return out;
}

/// Appends `count` labels of `len` bytes of `fill` each (no root).
void append_labels(std::vector<std::byte>& out, std::size_t count, std::size_t len, int fill = 'a') {
    for (std::size_t i = 0; i < count; ++i) {
        out.push_back(static_cast<std::byte>(len));
        for (std::size_t j = 0; j < len; ++j) out.push_back(static_cast<std::byte>(fill));
    }
}

void append(std::vector<std::byte>& out, std::initializer_list<int> bytes) {
    for (int b : bytes) out.push_back(static_cast<std::byte>(b));
}

std::error_code parse_error(const_bytes b) { return dns::message::parse(b).error(); }

dns::question make_question(std::string_view text, std::uint16_t qtype = dns::type::a) {
    return {dns::name::from_text(text).value(), qtype, dns::rr_class::in};
}

std::vector<std::byte> emit(const dns::repr& r) {
    std::vector<std::byte> out(r.buffer_len());
    REQUIRE_FALSE(r.emit(out));
    return out;
}

const std::vector<const_bytes>& all_golden_messages() {
    static const std::vector<const_bytes> all{
        dig_a_query, dnsmasq_a_response, dig_edns_cookie_query, dnsmasq_edns_cookie_response, dig_edns_query,
        dnsmasq_edns_response, dig_aaaa_query, dnsmasq_aaaa_response, dig_nxdomain_query, dnsmasq_nxdomain_response,
        dig_cname_query, dnsmasq_cname_response, dig_multi_query, dnsmasq_multi_response, dig_refused_query,
        dnsmasq_refused_response, const_bytes{dig_tcp_query_stream}.subspan(2),
        const_bytes{dnsmasq_tcp_response_stream}.subspan(2), busybox_query, busybox_response};
    return all;
}

} // namespace

// --- header -------------------------------------------------------------------------------------

TEST_CASE("dig's query header decodes field by field") {
    const auto header = dns::packet<const_bytes>::checked(dig_a_query).value();
    CHECK(header.id() == 0xfa57);
    CHECK(header.flags() == 0x0120);
    CHECK_FALSE(header.qr());
    CHECK(header.opcode() == dns::opcode::query);
    CHECK_FALSE(header.aa());
    CHECK_FALSE(header.is_truncated());
    CHECK(header.rd());
    CHECK_FALSE(header.ra());
    CHECK(header.ad()); // dig sets AD in queries by default (RFC 6840 §5.7)
    CHECK_FALSE(header.cd());
    CHECK(header.rcode() == dns::rcode::no_error);
    CHECK(header.qdcount() == 1);
    CHECK(header.ancount() == 0);
    CHECK(header.nscount() == 0);
    CHECK(header.arcount() == 0);
}

TEST_CASE("dnsmasq's reply header decodes field by field") {
    const dns::packet<const_bytes> header{dnsmasq_a_response};
    REQUIRE_FALSE(header.check_len());
    CHECK(header.id() == 0xfa57);
    CHECK(header.qr());
    CHECK(header.is_response());
    CHECK(header.aa());
    CHECK(header.rd());
    CHECK(header.ra());
    CHECK_FALSE(header.ad());
    CHECK_FALSE(header.tc());
    CHECK(header.rcode() == dns::rcode::no_error);
    CHECK(header.ancount() == 1);

    const dns::packet<const_bytes> nx{dnsmasq_nxdomain_response};
    CHECK(nx.rcode() == dns::rcode::nxdomain);
    CHECK_FALSE(nx.aa());
    const dns::packet<const_bytes> refused{dnsmasq_refused_response};
    CHECK(refused.rcode() == dns::rcode::refused);
}

TEST_CASE("a header shorter than 12 bytes is truncated") {
    for (std::size_t len = 0; len < dns::header_len; ++len) {
        const auto prefix = const_bytes{dig_a_query}.first(len);
        CHECK(dns::packet<const_bytes>::checked(prefix).error() == errc::truncated);
        CHECK(parse_error(prefix) == errc::truncated);
        CHECK(dns::first_question(prefix).error() == errc::truncated);
    }
    // A bare header with all counts zero is a (useless) complete message.
    const auto bare = message_with({}, 0);
    CHECK(dns::message::parse(bare).value().size() == dns::header_len);
}

TEST_CASE("the forwarder rewrites the ID and flags in place, touching nothing else") {
    auto copy = to_vector(dnsmasq_a_response);
    dns::packet<mutable_bytes> header{copy};
    REQUIRE_FALSE(header.check_len());
    header.set_id(0x0102);
    CHECK(header.id() == 0x0102);
    CHECK(copy[0] == std::byte{0x01});
    CHECK(copy[1] == std::byte{0x02});

    header.set_flag(dns::flag::tc);
    CHECK(header.is_truncated());
    CHECK(header.flags() == 0x8780);
    header.clear_flag(dns::flag::aa | dns::flag::ra);
    CHECK(header.flags() == 0x8300);
    header.set_flag(dns::flag::tc, false);
    CHECK(header.flags() == 0x8100);
    header.set_rcode(dns::rcode::servfail);
    CHECK(header.rcode() == dns::rcode::servfail);
    header.set_opcode(dns::opcode::notify);
    CHECK(header.opcode() == dns::opcode::notify);
    CHECK(header.flags() == 0xa102);
    header.set_rcode(0xff); // only the low 4 bits exist
    CHECK(header.flags() == 0xa10f);
    header.set_arcount(7);
    CHECK(header.arcount() == 7);

    // Everything after the flags except ARCOUNT is as it was.
    CHECK(std::equal(copy.begin() + 4, copy.begin() + 10, dnsmasq_a_response.begin() + 4));
    CHECK(std::equal(copy.begin() + 12, copy.end(), dnsmasq_a_response.begin() + 12));
}

TEST_CASE("response_flags copies OPCODE, RD and CD and sets QR, RA, AA and RCODE") {
    CHECK(dns::response_flags(0x0120, dns::rcode::no_error, true) == 0x8580);  // dnsmasq's answer
    CHECK(dns::response_flags(0x0120, dns::rcode::nxdomain) == 0x8183);      // dnsmasq's NXDOMAIN
    CHECK(dns::response_flags(0x0120, dns::rcode::refused) == 0x8185);       // dnsmasq's REFUSED
    CHECK(dns::response_flags(dns::flag::cd | dns::flag::tc | dns::flag::aa, dns::rcode::servfail) == 0x8092);
    CHECK(dns::response_flags(0x2000, 0) == 0xa080); // OPCODE 4 (NOTIFY) kept
}

// --- decoding real messages ----------------------------------------------------------------------

TEST_CASE("dig's A query: the question decodes, and our query re-encodes byte-exact") {
    const auto m = dns::message::parse(dig_a_query).value();
    CHECK(m.size() == dig_a_query.size());
    REQUIRE(m.questions().size() == 1);
    const auto q = *m.first_question();
    CHECK(q.qname.offset() == 12);
    CHECK(q.qname.encoded_length() == 18);
    CHECK(q.qname.wire_length() == 18);
    CHECK(q.qname.label_count() == 3);
    CHECK(q.qname.text().view() == "www.example.test");
    CHECK(q.qname.matches("WWW.Example.TEST."));
    CHECK_FALSE(q.qname.matches("www.example"));
    CHECK(q.qtype == dns::type::a);
    CHECK(q.qclass == dns::rr_class::in);
    CHECK(m.answers().empty());
    CHECK(m.authorities().empty());
    CHECK(m.additionals().empty());
    CHECK_FALSE(m.opt().value().has_value());

    const auto query = dns::repr::make_query(0xfa57, make_question("www.example.test"), dns::flag::rd | dns::flag::ad);
    CHECK(query.buffer_len() == dig_a_query.size());
    CHECK(same_bytes(emit(query), dig_a_query));
    CHECK(dns::repr::parse(dig_a_query).value() == query);
}

TEST_CASE("BusyBox nslookup's query is our default query (RD only), byte-exact") {
    const auto query = dns::repr::make_query(0xd174, make_question("host.lan.test"));
    CHECK(same_bytes(emit(query), busybox_query));
    // And dnsmasq's answer to it is our authoritative answer.
    auto answer = dns::repr::make_response(0xd174, query.flags, query.question, dns::rcode::no_error, true);
    REQUIRE_FALSE(answer.add_answer(ipv4_address{192, 0, 2, 8}, 0));
    CHECK(same_bytes(emit(answer), busybox_response));
}

TEST_CASE("dnsmasq's A answer decodes field by field and re-encodes byte-exact") {
    const auto m = dns::message::parse(dnsmasq_a_response).value();
    CHECK(m.size() == dnsmasq_a_response.size());
    REQUIRE(m.answers().size() == 1);
    const auto rr = *m.answers().begin();
    CHECK(rr.offset == 34);
    CHECK(rr.name.offset() == 34);
    CHECK(rr.name.encoded_length() == 2); // c0 0c
    CHECK(rr.name.wire_length() == 18);
    CHECK(rr.name.text().view() == "www.example.test");
    CHECK(rr.name.iequals(m.first_question()->qname));
    CHECK(rr.type == dns::type::a);
    CHECK(rr.rr_class == dns::rr_class::in);
    CHECK(rr.ttl == 0);
    CHECK(rr.rdata_offset == 46);
    CHECK(rr.rdata.size() == 4);
    CHECK(rr.a().value() == ipv4_address{192, 0, 2, 7});
    CHECK(rr.aaaa().error() == errc::unsupported);
    CHECK(rr.rdata_name().error() == errc::unsupported);

    // The reply matches its query: same ID, same question.
    const auto query_q = dns::first_question(dig_a_query).value();
    CHECK(m.header().id() == dns::packet<const_bytes>{dig_a_query}.id());
    CHECK(m.first_question()->matches(query_q));

    const auto r = dns::repr::parse(m).value();
    CHECK(r.id == 0xfa57);
    CHECK(r.flags == 0x8580);
    CHECK(r.question == make_question("www.example.test"));
    REQUIRE(r.answer_count == 1);
    CHECK(r.answers[0] == dns::a_answer{ipv4_address{192, 0, 2, 7}, 0});
    CHECK_FALSE(r.edns.has_value());

    auto built = dns::repr::make_response(0xfa57, 0x0120, make_question("www.example.test"), dns::rcode::no_error, true);
    REQUIRE_FALSE(built.add_answer(ipv4_address{192, 0, 2, 7}, 0));
    CHECK(built == r);
    CHECK(same_bytes(emit(built), dnsmasq_a_response));
}

TEST_CASE("EDNS: dig's OPT record with a COOKIE option decodes, and ours differs only by the cookie") {
    const auto m = dns::message::parse(dig_edns_cookie_query).value();
    REQUIRE(m.additionals().size() == 1);
    const auto opt = m.opt().value();
    REQUIRE(opt.has_value());
    CHECK(opt->offset == 34);
    CHECK(opt->name.is_root());
    CHECK(opt->name.encoded_length() == 1);
    CHECK(opt->is_opt());
    CHECK(opt->udp_payload_size() == 1232);
    CHECK(opt->extended_rcode() == 0);
    CHECK(opt->edns_version() == 0);
    CHECK(opt->edns_flags() == 0);
    CHECK_FALSE(opt->dnssec_ok());
    REQUIRE(opt->rdata.size() == 12);

    std::size_t at = 0;
    const auto cookie = dns::read_edns_option(opt->rdata, at).value();
    CHECK(cookie.code == dns::edns_code::cookie);
    CHECK(same_bytes(cookie.data, make_bytes(0xa6, 0xc1, 0x54, 0xd6, 0x33, 0x5d, 0x31, 0xc3))); // dig's client cookie
    CHECK(at == opt->rdata.size());
    CHECK(dns::read_edns_option(opt->rdata, at).error() == errc::bad_option); // nothing left

    // A repr holds no EDNS options (a client cookie is per-client state a forwarder does not make
    // up), so this exact query is not ours to re-encode...
    CHECK(dns::repr::parse(m).error() == errc::unsupported);
    // ...but with the same fields and no option, ours is dig's `+nocookie` query byte-exact, and
    // dig's default query is that plus RDLENGTH 12 and the 12-byte COOKIE option.
    auto query = dns::repr::make_query(0x868b, make_question("www.example.test"), dns::flag::rd | dns::flag::ad);
    query.edns = dns::edns{1232, 0, 0, 0};
    const auto ours = emit(query);
    REQUIRE(ours.size() == 45);
    auto with_cookie = ours;
    with_cookie.resize(ours.size() - 2);
    append(with_cookie, {0x00, 0x0c, 0x00, 0x0a, 0x00, 0x08, 0xa6, 0xc1, 0x54, 0xd6, 0x33, 0x5d, 0x31, 0xc3});
    CHECK(same_bytes(with_cookie, dig_edns_cookie_query));
    query.id = 0x7dbb;
    CHECK(same_bytes(emit(query), dig_edns_query));
    CHECK(dns::repr::parse(dig_edns_query).value() == query);
}

TEST_CASE("EDNS: dnsmasq's OPT reply parses into a repr and re-encodes byte-exact") {
    for (const_bytes reply : {const_bytes{dnsmasq_edns_response}, const_bytes{dnsmasq_edns_cookie_response}}) {
        const auto r = dns::repr::parse(reply).value();
        REQUIRE(r.edns.has_value());
        CHECK(*r.edns == dns::edns{1232, 0, 0, 0});
        REQUIRE(r.answer_count == 1);
        CHECK(r.answers[0].address == ipv4_address{192, 0, 2, 7});
        CHECK(same_bytes(emit(r), reply));
    }
}

TEST_CASE("dnsmasq's AAAA answer decodes field by field") {
    const auto m = dns::message::parse(dnsmasq_aaaa_response).value();
    const auto q = *m.first_question();
    CHECK(q.qname.text().view() == "host.lan.test");
    CHECK(q.qtype == dns::type::aaaa);
    REQUIRE(m.answers().size() == 1);
    const auto rr = *m.answers().begin();
    CHECK(rr.name.encoded_length() == 2);
    CHECK(rr.name.matches("host.lan.test"));
    CHECK(rr.type == dns::type::aaaa);
    CHECK(rr.rr_class == dns::rr_class::in);
    CHECK(rr.ttl == 0);
    const std::array<std::uint8_t, 16> expected{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08};
    CHECK(rr.aaaa().value() == expected);
    CHECK(rr.a().error() == errc::unsupported);
    // A repr carries A answers only.
    CHECK(dns::repr::parse(m).error() == errc::unsupported);
}

TEST_CASE("dnsmasq's NXDOMAIN and REFUSED echo the question and re-encode byte-exact") {
    const auto nx = dns::repr::parse(dnsmasq_nxdomain_response).value();
    CHECK(nx.answer_count == 0);
    CHECK(nx.question.qname.text().view() == "a.nx.test");
    const auto query = dns::repr::parse(dig_nxdomain_query).value();
    const auto built = dns::repr::make_response(query.id, query.flags, query.question, dns::rcode::nxdomain);
    CHECK(built == nx);
    CHECK(same_bytes(emit(built), dnsmasq_nxdomain_response));

    const auto refused_query = dns::repr::parse(dig_refused_query).value();
    const auto refused =
        dns::repr::make_response(refused_query.id, refused_query.flags, refused_query.question, dns::rcode::refused);
    CHECK(same_bytes(emit(refused), dnsmasq_refused_response));
    CHECK(dns::repr::parse(dnsmasq_refused_response).value() == refused);
}

TEST_CASE("SERVFAIL built from a parsed query echoes it and parses back") {
    const auto m = dns::message::parse(dig_aaaa_query).value();
    const auto query = dns::packet<const_bytes>{dig_aaaa_query};
    const auto r = dns::repr::make_response(query.id(), query.flags(), dns::question::from(*m.first_question()),
                                            dns::rcode::servfail);
    const auto bytes = emit(r);
    REQUIRE(bytes.size() == dig_aaaa_query.size());
    const auto back = dns::message::parse(bytes).value();
    CHECK(back.header().id() == 0xb333);
    CHECK(back.header().rcode() == dns::rcode::servfail);
    CHECK(back.header().flags() == 0x8182);
    CHECK(back.first_question()->matches(*m.first_question()));
    CHECK(back.first_question()->qtype == dns::type::aaaa);
    // Apart from the flags, the bytes are the query's.
    CHECK(std::equal(bytes.begin() + 4, bytes.end(), dig_aaaa_query.begin() + 4));
    CHECK(dns::repr::parse(bytes).value() == r);
}

TEST_CASE("compression: dnsmasq's CNAME answer, with a pointer into RDATA, decodes") {
    const auto m = dns::message::parse(dnsmasq_cname_response).value();
    CHECK(m.size() == dnsmasq_cname_response.size());
    REQUIRE(m.answers().size() == 2);
    auto it = m.answers().begin();
    const auto cname = *it;
    CHECK(cname.name.encoded_length() == 2);
    CHECK(cname.name.text().view() == "alias.lan.test");
    CHECK(cname.type == dns::type::cname);
    CHECK(cname.rdata.size() == 15);
    CHECK(cname.rdata_offset == 44);
    const auto target = cname.rdata_name().value();
    CHECK(target.offset() == 0x2c);
    CHECK(target.encoded_length() == 15);
    CHECK(target.text().view() == "host.lan.test");
    CHECK(cname.a().error() == errc::unsupported);

    ++it;
    const auto a = *it;
    CHECK(a.offset == 59);
    CHECK(a.name.encoded_length() == 2);           // c0 2c
    CHECK(a.name.text().view() == "host.lan.test"); // followed into the CNAME's RDATA
    CHECK(a.name.iequals(target));
    CHECK(a.a().value() == ipv4_address{192, 0, 2, 8});
    ++it;
    CHECK(it == m.answers().end());

    CHECK(dns::repr::parse(m).error() == errc::unsupported); // a CNAME is not a repr answer
}

TEST_CASE("dnsmasq's two A records parse into a repr and re-encode byte-exact") {
    const auto r = dns::repr::parse(dnsmasq_multi_response).value();
    REQUIRE(r.answer_count == 2);
    CHECK(r.answers[0].address == ipv4_address{192, 0, 2, 2});
    CHECK(r.answers[1].address == ipv4_address{192, 0, 2, 1});
    CHECK(r.question.qname.text().view() == "x.multi.test");
    CHECK(same_bytes(emit(r), dnsmasq_multi_response));
    std::size_t count = 0;
    for (const auto& rr : dns::message::parse(dnsmasq_multi_response)->answers()) {
        CHECK(rr.name.matches("x.multi.test"));
        ++count;
    }
    CHECK(count == 2);
}

TEST_CASE("every section iterates as many entries as its count") {
    for (const auto& golden : all_golden_messages()) {
        const auto m = dns::message::parse(golden).value();
        const auto h = m.header();
        std::size_t questions = 0;
        std::size_t end = dns::header_len;
        for (const auto& q : m.questions()) {
            CHECK(q.qname.offset() == end); // entries follow one another
            end = q.qname.offset() + q.qname.encoded_length() + dns::question_fixed_len;
            ++questions;
        }
        CHECK(questions == h.qdcount());
        std::size_t records = 0;
        for (const auto& s : {m.answers(), m.authorities(), m.additionals()}) {
            for (const auto& rr : s) {
                CHECK(rr.offset == end);
                end = rr.rdata_offset + rr.rdata.size();
                ++records;
            }
        }
        CHECK(records == std::size_t{h.ancount()} + h.nscount() + h.arcount());
        CHECK(end == golden.size());
        CHECK(m.size() == golden.size());
    }
}

// --- DNS over TCP ----------------------------------------------------------------------------------

TEST_CASE("TCP framing: dig's and dnsmasq's TCP messages cut out of a stream and re-encode") {
    std::vector<std::byte> stream = to_vector(dig_tcp_query_stream);
    stream.insert(stream.end(), dnsmasq_tcp_response_stream.begin(), dnsmasq_tcp_response_stream.end());

    const auto first = dns::tcp::next_frame(stream).value();
    CHECK(first.consumed == dig_tcp_query_stream.size());
    CHECK(first.message.size() == 0x1f);
    const auto query = dns::repr::parse(first.message).value();
    CHECK(query.id == 0x5cce);
    CHECK(query.question.qname.text().view() == "host.lan.test");

    const auto second = dns::tcp::next_frame(const_bytes{stream}.subspan(first.consumed)).value();
    CHECK(second.consumed == dnsmasq_tcp_response_stream.size());
    CHECK(first.consumed + second.consumed == stream.size());
    const auto reply = dns::repr::parse(second.message).value();
    CHECK(reply.answers[0].address == ipv4_address{192, 0, 2, 8});

    std::vector<std::byte> out(query.tcp_buffer_len());
    REQUIRE_FALSE(query.emit_tcp(out));
    CHECK(same_bytes(out, dig_tcp_query_stream));
    out.assign(reply.tcp_buffer_len(), std::byte{0});
    REQUIRE_FALSE(reply.emit_tcp(out));
    CHECK(same_bytes(out, dnsmasq_tcp_response_stream));
    for (std::size_t len = 0; len < out.size(); ++len) {
        CHECK(reply.emit_tcp(mutable_bytes{out}.first(len)) == errc::buffer_too_small);
    }

    // Every partial stream says "wait for more".
    for (std::size_t len = 0; len < dig_tcp_query_stream.size(); ++len) {
        CHECK(dns::tcp::next_frame(const_bytes{dig_tcp_query_stream}.first(len)).error() == errc::truncated);
    }
    // A prefix too short for a header cannot be DNS.
    for (int len : {0, 1, 11}) {
        const auto bad = make_bytes(0x00, len, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12);
        CHECK(dns::tcp::next_frame(bad).error() == errc::bad_length);
    }

    std::array<std::byte, 2> prefix{};
    CHECK_FALSE(dns::tcp::write_length(prefix, 0xffff));
    CHECK(prefix == make_bytes(0xff, 0xff));
    CHECK(dns::tcp::write_length(prefix, 0x10000) == errc::bad_length);
    CHECK(dns::tcp::write_length(mutable_bytes{prefix}.first(1), 12) == errc::buffer_too_small);
}

// --- rejects -------------------------------------------------------------------------------------

TEST_CASE("every truncation of every golden message is refused as truncated") {
    for (const auto& golden : all_golden_messages()) {
        REQUIRE_FALSE(parse_error(golden));
        for (std::size_t len = 0; len < golden.size(); ++len) {
            INFO("length " << len << " of " << golden.size());
            CHECK(parse_error(golden.first(len)) == errc::truncated);
            CHECK(dns::repr::parse(golden.first(len)).error() == errc::truncated);
        }
        // The first question alone needs only its own bytes.
        const auto q = dns::first_question(golden).value();
        const std::size_t question_end = q.qname.offset() + q.qname.encoded_length() + dns::question_fixed_len;
        CHECK(dns::first_question(golden.first(question_end)).has_value());
        for (std::size_t len = 0; len < question_end; ++len) {
            CHECK(dns::first_question(golden.first(len)).error() == errc::truncated);
        }
    }
}

TEST_CASE("a truncated (TC) reply whose counts lie still yields its ID and first question") {
    // dnsmasq's reply cut after the question, TC set, counts left promising the answer.
    auto cut = to_vector(const_bytes{dnsmasq_a_response}.first(34));
    dns::packet<mutable_bytes>{cut}.set_flag(dns::flag::tc);
    CHECK(parse_error(cut) == errc::truncated);
    const dns::packet<const_bytes> header{cut};
    CHECK(header.is_truncated());
    CHECK(header.id() == 0xfa57);
    CHECK(dns::first_question(cut)->matches(dns::first_question(dig_a_query).value()));

    CHECK(dns::first_question(message_with({}, 0)).error() == errc::unsupported);
}

TEST_CASE("counts that promise more than the bytes hold are truncated, not read past") {
    for (std::size_t field : {dns::field::qdcount, dns::field::ancount, dns::field::nscount, dns::field::arcount}) {
        auto lie = to_vector(dnsmasq_a_response);
        const auto old = ankanet::wire::load_be16(lie, field);
        ankanet::wire::store_be16(lie, field, static_cast<std::uint16_t>(old + 1));
        CHECK(parse_error(lie) == errc::truncated);
        ankanet::wire::store_be16(lie, field, 0xffff);
        CHECK(parse_error(lie) == errc::truncated);
    }
}

TEST_CASE("RDLENGTH past the end is truncated, and a short RDLENGTH leaves a bad A record") {
    auto lie = to_vector(dnsmasq_a_response);
    ankanet::wire::store_be16(lie, 44, 5); // RDLENGTH of the A record
    CHECK(parse_error(lie) == errc::truncated);
    ankanet::wire::store_be16(lie, 44, 0xffff);
    CHECK(parse_error(lie) == errc::truncated);

    ankanet::wire::store_be16(lie, 44, 3); // the message now ends one byte early; the rest is ignored
    const auto m = dns::message::parse(lie).value();
    CHECK(m.size() == lie.size() - 1);
    CHECK(m.answers().begin()->a().error() == errc::bad_length);
    CHECK(dns::repr::parse(m).error() == errc::unsupported);
}

TEST_CASE("a name in RDATA must fill it exactly") {
    // dnsmasq's CNAME reply: the CNAME record's RDLENGTH is at 42, its RDATA at 44..58, and the A
    // record starts at 59. Keep only the CNAME, with one byte more RDATA than its name takes.
    auto longer = to_vector(dnsmasq_cname_response);
    ankanet::wire::store_be16(longer, 42, 16);
    longer.resize(60);
    ankanet::wire::store_be16(longer, dns::field::ancount, 1);
    const auto m1 = dns::message::parse(longer).value();
    CHECK(m1.answers().begin()->rdata_name().error() == errc::bad_length);

    auto shorter = to_vector(dnsmasq_cname_response);
    ankanet::wire::store_be16(shorter, 42, 14); // the name's root byte now lies past RDATA
    shorter.resize(58);
    ankanet::wire::store_be16(shorter, dns::field::ancount, 1);
    const auto m2 = dns::message::parse(shorter).value();
    CHECK(m2.answers().begin()->rdata_name().error() == errc::truncated);
}

TEST_CASE("compression pointer loops are refused: self, two-pointer cycle, label then pointer back") {
    // A name that is a pointer to itself.
    CHECK(parse_error(message_with({0xc0, 0x0c, 0, 1, 0, 1}, 1)) == errc::bad_pointer);
    // Two names pointing at each other: 12 -> 18 -> 12.
    const auto cycle = message_with({0xc0, 0x12, 0, 1, 0, 1, 0xc0, 0x0c, 0, 1, 0, 1}, 2);
    CHECK(parse_error(cycle) == errc::bad_pointer);
    std::size_t at = 18; // entered from the second name, the cycle is caught one hop later
    CHECK(dns::read_question(cycle, at).error() == errc::bad_pointer);
    CHECK(at == 18);
    // A label, then a pointer back to the start of the same name: each pointer goes backwards from
    // where it stands, yet it loops. Pointers must land before where their stretch began.
    CHECK(parse_error(message_with({1, 'a', 0xc0, 0x0c, 0, 1, 0, 1}, 1)) == errc::bad_pointer);
    // Entering a cycle through a good backward pointer: 20 -> 12, whose "a" then points on to 20.
    auto with_entry = message_with({1, 'a', 0xc0, 0x14, 0, 1, 0, 1}, 1);
    append(with_entry, {0xc0, 0x0c});
    at = 20;
    CHECK(dns::name_view::read(with_entry, at).error() == errc::bad_pointer);
}

TEST_CASE("forward pointers, pointers past the end and pointers into the header are refused") {
    // A forward pointer to a perfectly good name later in the message.
    CHECK(parse_error(message_with({0xc0, 0x12, 0, 1, 0, 1, 1, 'a', 0, 0, 1, 0, 1}, 2)) == errc::bad_pointer);
    // Past the end of the message.
    CHECK(parse_error(message_with({1, 'a', 0, 0, 1, 0, 1, 0xc0, 0xff, 0, 1, 0, 1}, 2)) == errc::bad_pointer);
    CHECK(parse_error(message_with({1, 'a', 0, 0, 1, 0, 1, 0xff, 0xff, 0, 1, 0, 1}, 2)) == errc::bad_pointer);
    // Into the header.
    for (int target : {0, 5, 11}) {
        CHECK(parse_error(message_with({1, 'a', 0, 0, 1, 0, 1, 0xc0, target, 0, 1, 0, 1}, 2)) == errc::bad_pointer);
    }
    // A pointer whose second byte is missing.
    CHECK(parse_error(message_with({1, 'a', 0xc0}, 1)) == errc::truncated);
    // A good backward pointer, for contrast: 2nd name is "b" + pointer to "a".
    const auto good = message_with({1, 'a', 0, 0, 1, 0, 1, 1, 'b', 0xc0, 0x0c, 0, 1, 0, 1}, 2);
    const auto m = dns::message::parse(good).value();
    auto it = m.questions().begin();
    ++it;
    CHECK(it->qname.text().view() == "b.a");
    CHECK(it->qname.encoded_length() == 4);
    // A pointer may land in the middle of an earlier name, on a label boundary: "c" + "b.test".
    const auto middle = message_with({1, 'a', 1, 'b', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1, 1, 'c', 0xc0, 14, 0, 1, 0, 1}, 2);
    auto mid = dns::message::parse(middle).value().questions().begin();
    ++mid;
    CHECK(mid->qname.text().view() == "c.b.test");
}

TEST_CASE("pointer chains: 127 hops are followed, 128 are refused") {
    // A root name at 12, then pointers each pointing at the one before.
    auto chain = message_with({0}, 0);
    for (std::size_t i = 0; i < 200; ++i) {
        const std::size_t target = i == 0 ? 12 : 13 + 2 * (i - 1);
        append(chain, {0xc0 | static_cast<int>(target >> 8), static_cast<int>(target & 0xff)});
    }
    const auto read_at = [&](std::size_t hops) {
        std::size_t at = 13 + 2 * (hops - 1);
        return dns::name_view::read(chain, at);
    };
    REQUIRE(read_at(1).has_value());
    const auto ok = read_at(dns::max_pointer_hops);
    REQUIRE(ok.has_value());
    CHECK(ok->is_root());
    CHECK(ok->encoded_length() == 2);
    CHECK(read_at(dns::max_pointer_hops + 1).error() == errc::bad_pointer);
    CHECK(read_at(200).error() == errc::bad_pointer);
}

TEST_CASE("reserved label types are refused: 0b01 (64..127, 'label > 63') and 0b10") {
    for (int type_octet : {0x40, 0x41, 0x7f, 0x80, 0xbf}) {
        INFO("octet " << type_octet);
        CHECK(parse_error(message_with({type_octet, 'a', 'b', 0, 0, 1, 0, 1}, 1)) == errc::bad_field);
        CHECK(parse_error(message_with({1, 'x', type_octet, 0, 0, 1, 0, 1}, 1)) == errc::bad_field);
    }
    // 63 is the longest label.
    auto label63 = message_with({}, 1);
    append_labels(label63, 1, 63);
    append(label63, {0, 0, 1, 0, 1});
    CHECK(dns::message::parse(label63).value().first_question()->qname.wire_length() == 65);
}

TEST_CASE("names longer than 255 bytes are refused, also when assembled from pointers") {
    const auto question_with_labels = [](std::initializer_list<std::size_t> lens) {
        auto m = message_with({}, 1);
        for (auto len : lens) append_labels(m, 1, len);
        append(m, {0, 0, 1, 0, 1});
        return m;
    };
    const auto exactly_255 = question_with_labels({63, 63, 63, 61});
    CHECK(dns::message::parse(exactly_255).value().first_question()->qname.wire_length() == 255);
    CHECK(parse_error(question_with_labels({63, 63, 63, 62})) == errc::bad_length);
    CHECK(parse_error(question_with_labels({63, 63, 63, 63})) == errc::bad_length);

    // A first name of 204 bytes, then one label of `len` bytes + a pointer to it: short where it
    // is written, len + 1 + 204 bytes uncompressed.
    const auto compressed = [](std::size_t len) {
        auto m = message_with({}, 2);
        append_labels(m, 3, 63);
        append_labels(m, 1, 10);
        append(m, {0, 0, 1, 0, 1});
        append_labels(m, 1, len);
        append(m, {0xc0, 0x0c, 0, 1, 0, 1});
        return m;
    };
    const auto fits_bytes = compressed(50);
    const auto fits = dns::message::parse(fits_bytes).value();
    auto second = fits.questions().begin();
    ++second;
    CHECK(second->qname.wire_length() == 255);
    CHECK(second->qname.encoded_length() == 53);
    CHECK(parse_error(compressed(51)) == errc::bad_length);
}

TEST_CASE("a question or record whose fixed part is cut is truncated") {
    CHECK(parse_error(message_with({0, 0, 1, 0}, 1)) == errc::truncated);
    CHECK(parse_error(message_with({0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0}, 1, 1)) == errc::truncated);
    CHECK(parse_error(message_with({0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0}, 1, 1)) == std::error_code{});
    CHECK(parse_error(message_with({1, 'a'}, 1)) == errc::truncated);  // no root label
    CHECK(parse_error(message_with({5, 'a', 'b'}, 1)) == errc::truncated); // label runs past the end
}

TEST_CASE("several OPT records, or one not owned by the root, are a format error") {
    auto two = message_with({0, 0, 1, 0, 1}, 1, 0, 0, 2);
    append(two, {0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0});
    append(two, {0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0});
    const auto m = dns::message::parse(two).value();
    CHECK(m.opt().error() == errc::bad_field);
    CHECK(dns::repr::parse(m).error() == errc::unsupported);

    auto named = message_with({1, 'a', 0, 0, 1, 0, 1}, 1, 0, 0, 1);
    append(named, {0xc0, 0x0c, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0});
    CHECK(dns::message::parse(named).value().opt().error() == errc::bad_field);
    CHECK(dns::repr::parse(named).error() == errc::unsupported);

    // An option whose length runs past the RDATA.
    const auto rdata = make_bytes(0, 10, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8);
    std::size_t at = 0;
    CHECK(dns::read_edns_option(rdata, at).error() == errc::bad_option);
    CHECK(at == 0);
    at = 1;
    CHECK(dns::read_edns_option(const_bytes{rdata}.first(4), at).error() == errc::bad_option);
    at = 99;
    CHECK(dns::read_edns_option(rdata, at).error() == errc::bad_option);
}

TEST_CASE("repr::parse refuses shapes it cannot re-encode") {
    // Two questions.
    CHECK(dns::repr::parse(message_with({0, 0, 1, 0, 1, 0, 0, 1, 0, 1}, 2)).error() == errc::unsupported);
    // No question.
    CHECK(dns::repr::parse(message_with({}, 0)).error() == errc::unsupported);
    // An authority record.
    CHECK(dns::repr::parse(message_with({0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0}, 1, 0, 1)).error() ==
          errc::unsupported);
    // An A answer owned by another name.
    CHECK(dns::repr::parse(message_with({1, 'a', 0, 0, 1, 0, 1, 1, 'b', 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4}, 1, 1))
              .error() == errc::unsupported);
    // An A answer of class CHAOS.
    CHECK(dns::repr::parse(message_with({1, 'a', 0, 0, 1, 0, 1, 0xc0, 12, 0, 1, 0, 3, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4}, 1, 1))
              .error() == errc::unsupported);
    // Owned by the question name in another case: accepted, and re-emitted as a pointer.
    const auto upper =
        message_with({1, 'a', 0, 0, 1, 0, 1, 1, 'A', 0, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4}, 1, 1);
    const auto r = dns::repr::parse(upper).value();
    REQUIRE(r.answer_count == 1);
    CHECK(r.answers[0] == dns::a_answer{ipv4_address{1, 2, 3, 4}, 9});
    CHECK(dns::repr::parse(emit(r)).value() == r);
}

// --- names ------------------------------------------------------------------------------------------

TEST_CASE("name text: dotted, escapes, case-insensitive matching, subdomains") {
    const auto n = dns::name::from_text("www.Example.test.").value();
    CHECK(n.wire_length() == 18);
    CHECK(n.label_count() == 3);
    CHECK(n.text().view() == "www.Example.test");
    CHECK(n.matches("WWW.EXAMPLE.TEST"));
    CHECK_FALSE(n.matches("www.example.tes"));
    CHECK_FALSE(n.matches("www..example.test"));
    CHECK(n == dns::name::from_text("www.Example.test").value());
    CHECK_FALSE(n == dns::name::from_text("www.example.test").value()); // == is byte-exact
    CHECK(n.iequals(dns::name::from_text("www.example.test").value()));

    const auto zone = dns::name::from_text("example.test").value();
    CHECK(n.is_subdomain_of(zone));
    CHECK(zone.is_subdomain_of(zone));
    CHECK(n.is_subdomain_of(dns::name{}));
    CHECK_FALSE(zone.is_subdomain_of(n));
    CHECK_FALSE(dns::name::from_text("badexample.test")->is_subdomain_of(zone));
    CHECK_FALSE(dns::name::from_text("example.test.org")->is_subdomain_of(zone));

    const dns::name root;
    CHECK(root.is_root());
    CHECK(root.wire_length() == 1);
    CHECK(root.label_count() == 0);
    CHECK(root.text().view() == ".");
    CHECK(dns::name::from_text(".").value() == root);
    CHECK(dns::name::from_text("").value() == root);
    CHECK(root.matches("."));

    // A label holding a dot, a backslash, a space and a 0xff byte.
    const auto odd = dns::name::from_text("a\\.b\\\\c\\032\\255.test").value();
    CHECK(odd.label_count() == 2);
    CHECK(odd.wire()[0] == std::byte{7});
    CHECK(odd.text().view() == "a\\.b\\\\c\\032\\255.test");
    CHECK_FALSE(odd.matches("a.b\\\\c\\032\\255.test"));

    CHECK(dns::name::from_text("a..b").error() == errc::bad_field);
    CHECK(dns::name::from_text(".a").error() == errc::bad_field);
    CHECK(dns::name::from_text("a.b..").error() == errc::bad_field);
    CHECK(dns::name::from_text("a\\").error() == errc::bad_field);
    CHECK(dns::name::from_text("a\\25").error() == errc::bad_field);
    CHECK(dns::name::from_text("a\\2x5").error() == errc::bad_field);
    CHECK(dns::name::from_text("a\\256").error() == errc::bad_field);
    CHECK(dns::name::from_text(std::string(63, 'x')).has_value());
    CHECK(dns::name::from_text(std::string(64, 'x')).error() == errc::bad_length);
    const std::string l63(63, 'x');
    CHECK(dns::name::from_text(l63 + "." + l63 + "." + l63 + "." + std::string(61, 'x'))->wire_length() == 255);
    CHECK(dns::name::from_text(l63 + "." + l63 + "." + l63 + "." + std::string(62, 'x')).error() == errc::bad_length);
}

TEST_CASE("the longest name text fits name_text exactly and parses back") {
    // Four labels of 63+63+63+61 bytes of 0xff: every byte escaped as \255.
    auto m = message_with({}, 1);
    append_labels(m, 3, 63, 0xff);
    append_labels(m, 1, 61, 0xff);
    append(m, {0, 0, 1, 0, 1});
    const auto q = dns::message::parse(m).value().first_question().value();
    const auto n = q.qname.decode();
    const auto text = n.text();
    CHECK(text.size == dns::max_name_text_len);
    CHECK(dns::name::from_text(text.view()).value() == n);

    std::array<char, dns::max_name_text_len - 1> small{};
    CHECK(n.to_text(small).error() == errc::buffer_too_small);
    std::array<char, 0> none{};
    CHECK(dns::name{}.to_text(none).error() == errc::buffer_too_small);
}

TEST_CASE("decoding a compressed name gives its uncompressed wire form") {
    const auto m = dns::message::parse(dnsmasq_cname_response).value();
    auto it = m.answers().begin();
    ++it;
    const auto n = it->name.decode();
    const auto expected = make_bytes(4, 'h', 'o', 's', 't', 3, 'l', 'a', 'n', 4, 't', 'e', 's', 't', 0);
    CHECK(same_bytes(n.wire(), expected));
    std::vector<std::string> labels;
    it->name.for_each_label([&](const_bytes label) {
        labels.emplace_back(reinterpret_cast<const char*>(label.data()), label.size());
    });
    CHECK(labels == std::vector<std::string>{"host", "lan", "test"});
}

// --- emit ----------------------------------------------------------------------------------------

TEST_CASE("emit refuses every short buffer and writes nothing past buffer_len") {
    auto r = dns::repr::make_response(7, dns::flag::rd, make_question("a.example.test"), dns::rcode::no_error, true);
    REQUIRE_FALSE(r.add_answer(ipv4_address{192, 0, 2, 1}, 60));
    REQUIRE_FALSE(r.add_answer(ipv4_address{192, 0, 2, 2}, 60));
    r.edns = dns::edns{4096, 0, 0, dns::edns_dnssec_ok};
    const std::size_t len = r.buffer_len();
    CHECK(len == 12 + 16 + 4 + 2 * 16 + 11);
    std::vector<std::byte> buffer(len + 8, std::byte{0xee});
    for (std::size_t n = 0; n < len; ++n) {
        CHECK(r.emit(mutable_bytes{buffer}.first(n)) == errc::buffer_too_small);
    }
    REQUIRE_FALSE(r.emit(buffer));
    CHECK(std::all_of(buffer.begin() + static_cast<std::ptrdiff_t>(len), buffer.end(),
                      [](std::byte b) { return b == std::byte{0xee}; }));
    const auto back = dns::repr::parse(const_bytes{buffer}.first(len)).value();
    CHECK(back == r);
    CHECK(back.edns->flags == dns::edns_dnssec_ok);
    const auto opt = dns::message::parse(const_bytes{buffer}.first(len))->opt().value();
    REQUIRE(opt.has_value());
    CHECK(opt->udp_payload_size() == 4096);
    CHECK(opt->dnssec_ok());
}

TEST_CASE("a repr holds at most max_answers A records") {
    auto r = dns::repr::make_response(1, 0, make_question("many.test"), dns::rcode::no_error);
    for (std::size_t i = 0; i < dns::max_answers; ++i) {
        REQUIRE_FALSE(r.add_answer(ipv4_address{static_cast<std::uint32_t>(i)}, 1));
    }
    CHECK(r.add_answer(ipv4_address{1, 1, 1, 1}, 1) == errc::buffer_too_small);
    const auto bytes = emit(r);
    CHECK(dns::repr::parse(bytes).value() == r);
    // One more on the wire than a repr can hold.
    auto more = bytes;
    append(more, {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 1, 1, 1});
    ankanet::wire::store_be16(more, dns::field::ancount, dns::max_answers + 1);
    REQUIRE(dns::message::parse(more).has_value());
    CHECK(dns::repr::parse(more).error() == errc::unsupported);
}

TEST_CASE("a query for the root name emits and parses back, answers pointing at it") {
    auto r = dns::repr::make_response(9, 0, dns::question{dns::name{}, dns::type::a, dns::rr_class::in}, 0);
    REQUIRE_FALSE(r.add_answer(ipv4_address{10, 0, 0, 1}, 5));
    const auto bytes = emit(r);
    CHECK(bytes.size() == 12 + 5 + 16);
    CHECK(dns::repr::parse(bytes).value() == r);
}

static_assert(std::input_iterator<dns::section<dns::record_view>::iterator>);
static_assert(std::input_iterator<dns::section<dns::question_view>::iterator>);
