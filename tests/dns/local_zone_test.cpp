#include <ankanet/dns/local_zone.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

using ankanet::errc;
using ankanet::dns::local_zone;
using ankanet::dns::local_zone_config;
using ankanet::dns::name_status;
using ankanet::dns::zone_answer;
using ankanet::dns::zone_disposition;
using ankanet::wire::const_bytes;
using ankanet::wire::ipv4_address;
using ankanet::wire::mutable_bytes;
namespace wdns = ankanet::wire::dns;

namespace {

std::vector<std::byte> from_hex(std::string_view hex) {
    std::vector<std::byte> out;
    const auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        out.push_back(static_cast<std::byte>(nibble(hex[i]) * 16 + nibble(hex[i + 1])));
    }
    return out;
}

// Golden queries. Captured on 2026-11-28 on loopback only: a Python UDP socket bound to
// 127.0.0.1:45399 printed each datagram it received, sent by DiG 9.18.49 (Debian 12) as
//   dig @127.0.0.1 -p 45399 +tries=1 <args>
// with no resolver behind it; the bytes are the UDP payloads.

// `vm1.ankanet.internal A` (dig's default: RD AD, EDNS 1232 with a client COOKIE option).
const auto dig_a_cookie = from_hex("42890120000100000000000103766d3107616e6b616e657408696e7465726e616c00000100010000"
                                   "2904d000000000000c000a000886be1e88b5ef38c4");
// `+noedns VM1.AnkaNet.INTERNAL A`
const auto dig_a_mixed_case = from_hex("17e90120000100000000000003564d3107416e6b614e657408494e5445524e414c0000010001");
// `+nocookie -x 192.168.64.2`: PTR for 2.64.168.192.in-addr.arpa, EDNS without options.
const auto dig_ptr = from_hex("898a012000010000000000010132023634033136380331393207696e2d61646472046172706100000c0001"
                              "00002904d0000000000000");
// `+noedns vm1.ankanet.internal AAAA`
const auto dig_aaaa = from_hex("171a0120000100000000000003766d3107616e6b616e657408696e7465726e616c00001c0001");
// `+noedns www.example.test A`
const auto dig_other = from_hex("78ca0120000100000000000003777777076578616d706c6504746573740000010001");
// `+noedns +dnssec +cd nosuch.ankanet.internal A`: RD AD CD, EDNS with DO and a COOKIE.
const auto dig_nxdomain_do_cd = from_hex("004701300001000000000001066e6f7375636807616e6b616e657408696e7465726e616c000001"
                                         "000100002904d000008000000c000a0008c29a013c97772975");

constexpr ipv4_address gateway{192, 168, 64, 1};
constexpr ipv4_address vm1_address{192, 168, 64, 2};
constexpr ipv4_address vm2_address{192, 168, 64, 3};

local_zone make_zone(local_zone_config config = {}) {
    auto zone = local_zone::make(config);
    REQUIRE(zone);
    REQUIRE(zone->set_name(vm1_address, "vm1") == name_status::added);
    REQUIRE(zone->set_name(vm2_address, "Build-Box") == name_status::added);
    return std::move(*zone);
}

/// A query built with repr, as a guest's stub would send it.
std::vector<std::byte> query(std::string_view name, std::uint16_t qtype, std::uint16_t id = 0x1234,
                             std::optional<wdns::edns> edns = std::nullopt, std::uint16_t qclass = wdns::rr_class::in) {
    auto r = wdns::repr::make_query(id, {wdns::name::from_text(name).value(), qtype, qclass});
    r.edns = edns;
    std::vector<std::byte> out(r.buffer_len());
    REQUIRE_FALSE(r.emit(out));
    return out;
}

struct reply_buffer {
    std::array<std::byte, ankanet::dns::max_reply_len> bytes{};
    zone_answer verdict;
    const_bytes view() const { return const_bytes{bytes}.first(verdict.length); }
};

reply_buffer ask(local_zone& zone, const_bytes q) {
    reply_buffer out;
    out.verdict = zone.answer(q, out.bytes);
    return out;
}

/// Checks what every reply of ours must be, and returns it parsed.
wdns::message check_reply(const reply_buffer& reply, const_bytes q) {
    REQUIRE(reply.verdict.disposition == zone_disposition::reply);
    const auto m = wdns::message::parse(reply.view());
    REQUIRE(m);
    CHECK(m->size() == reply.verdict.length);
    const auto query_header = wdns::packet<const_bytes>{q};
    const auto header = m->header();
    CHECK(header.id() == query_header.id());
    CHECK(header.qr());
    CHECK(header.aa());
    CHECK(header.ra());
    CHECK(header.rd() == query_header.rd());
    CHECK(header.cd() == query_header.cd());
    CHECK(header.rcode() == reply.verdict.rcode);
    CHECK(header.qdcount() == 1);
    // The question is echoed byte for byte, case included.
    const auto qm = wdns::message::parse(q);
    REQUIRE(qm);
    const auto asked = qm->first_question();
    const auto echoed = m->first_question();
    REQUIRE(asked);
    REQUIRE(echoed);
    CHECK(echoed->qtype == asked->qtype);
    CHECK(echoed->qclass == asked->qclass);
    CHECK(echoed->qname.decode() == asked->qname.decode());
    // OPT when the query had one.
    const auto query_opt = qm->opt();
    const auto reply_opt = m->opt();
    REQUIRE(reply_opt);
    if (query_opt && *query_opt) {
        REQUIRE(*reply_opt);
        CHECK((*reply_opt)->udp_payload_size() == 1232);
        CHECK((*reply_opt)->dnssec_ok() == (*query_opt)->dnssec_ok());
        CHECK((*reply_opt)->rdata.empty());
    }
    return *m;
}

} // namespace

TEST_CASE("dns/local_zone: dig's A query with EDNS and a cookie gets the VM's address") {
    auto zone = make_zone();
    const auto reply = ask(zone, dig_a_cookie);
    const auto m = check_reply(reply, dig_a_cookie);
    CHECK(reply.verdict.rcode == wdns::rcode::no_error);
    const auto r = wdns::repr::parse(m);
    REQUIRE(r);
    CHECK(r->id == 0x4289);
    REQUIRE(r->answer_count == 1);
    CHECK(r->answers[0].address == vm1_address);
    CHECK(r->answers[0].ttl == 5);
    REQUIRE(r->edns);
    CHECK(r->edns->extended_rcode == 0);
    CHECK(r->flags == (wdns::flag::qr | wdns::flag::aa | wdns::flag::rd | wdns::flag::ra));
    CHECK(zone.counters().answers_a == 1);
    CHECK(zone.counters().queries == 1);
}

TEST_CASE("dns/local_zone: names match case-insensitively and the question's case is echoed") {
    auto zone = make_zone();
    const auto reply = ask(zone, dig_a_mixed_case);
    const auto m = check_reply(reply, dig_a_mixed_case);
    CHECK(m.first_question()->qname.text().view() == "VM1.AnkaNet.INTERNAL");
    const auto r = wdns::repr::parse(m);
    REQUIRE(r);
    REQUIRE(r->answer_count == 1);
    CHECK(r->answers[0].address == vm1_address);
    CHECK_FALSE(r->edns); // the query had none
    // A name registered in mixed case is found in any case, and stored lowercase.
    const auto q = query("build-box.ANKANET.internal", wdns::type::a);
    const auto r2 = wdns::repr::parse(check_reply(ask(zone, q), q));
    REQUIRE(r2);
    REQUIRE(r2->answer_count == 1);
    CHECK(r2->answers[0].address == vm2_address);
    CHECK(zone.name_of(vm2_address) == "build-box");
    CHECK(zone.address_of("BUILD-BOX") == vm2_address);
}

TEST_CASE("dns/local_zone: PTR for a VM's address answers its name under the domain") {
    auto zone = make_zone();
    const auto reply = ask(zone, dig_ptr);
    const auto m = check_reply(reply, dig_ptr);
    CHECK(m.header().ancount() == 1);
    const auto answer = *m.answers().begin();
    CHECK(answer.type == wdns::type::ptr);
    CHECK(answer.rr_class == wdns::rr_class::in);
    CHECK(answer.ttl == 5);
    CHECK(answer.name.matches("2.64.168.192.in-addr.arpa"));
    const auto target = answer.rdata_name();
    REQUIRE(target);
    CHECK(target->text().view() == "vm1.ankanet.internal");
    CHECK(zone.counters().answers_ptr == 1);

    // The gateway's address answers the host name.
    const auto q = query("1.64.168.192.IN-ADDR.ARPA", wdns::type::ptr);
    const auto reply2 = ask(zone, q); // the message views its bytes: keep them
    const auto m2 = check_reply(reply2, q);
    const auto target2 = (*m2.answers().begin()).rdata_name();
    REQUIRE(target2);
    CHECK(target2->text().view() == "host.ankanet.internal");
}

TEST_CASE("dns/local_zone: PTR for an unknown address, or of another form, is forwarded") {
    auto zone = make_zone();
    for (std::string_view name : {"9.64.168.192.in-addr.arpa", "64.168.192.in-addr.arpa", "02.64.168.192.in-addr.arpa",
                                  "256.64.168.192.in-addr.arpa", "2.64.168.192.in-addr.arpa.example.test",
                                  "x.2.64.168.192.in-addr.arpa", "2.64.168.192.ip6.arpa"}) {
        const auto q = query(name, wdns::type::ptr);
        const auto reply = ask(zone, q);
        INFO(name);
        CHECK(reply.verdict.disposition == zone_disposition::forward);
        CHECK(reply.verdict.length == 0);
    }
    // Another type for a known address's reverse name is not ours either.
    const auto q = query("2.64.168.192.in-addr.arpa", wdns::type::txt);
    CHECK(ask(zone, q).verdict.disposition == zone_disposition::forward);
    CHECK(zone.counters().forwarded == 8);
}

TEST_CASE("dns/local_zone: another type for a known name is NODATA, never forwarded") {
    auto zone = make_zone();
    const auto reply = ask(zone, dig_aaaa);
    const auto m = check_reply(reply, dig_aaaa);
    CHECK(reply.verdict.rcode == wdns::rcode::no_error);
    CHECK(m.header().ancount() == 0);
    CHECK(m.header().nscount() == 0);
    for (std::uint16_t type : {wdns::type::mx, wdns::type::txt, wdns::type::srv, wdns::type::ptr, wdns::type::ns}) {
        const auto q = query("vm1.ankanet.internal", type);
        const auto r = ask(zone, q);
        CHECK(check_reply(r, q).header().ancount() == 0);
        CHECK(r.verdict.rcode == wdns::rcode::no_error);
    }
    // The domain itself exists, with no records of ours.
    const auto apex = query("ankanet.internal", wdns::type::a);
    const auto r = ask(zone, apex);
    CHECK(check_reply(r, apex).header().ancount() == 0);
    CHECK(r.verdict.rcode == wdns::rcode::no_error);
    CHECK(zone.counters().nodata == 7);
}

TEST_CASE("dns/local_zone: ANY for a known name answers its address") {
    auto zone = make_zone();
    const auto q = query("host.ankanet.internal", wdns::type::any);
    const auto r = wdns::repr::parse(check_reply(ask(zone, q), q));
    REQUIRE(r);
    REQUIRE(r->answer_count == 1);
    CHECK(r->answers[0].address == gateway);
}

TEST_CASE("dns/local_zone: unknown names under the domain are NXDOMAIN, with DO and CD echoed") {
    auto zone = make_zone();
    const auto reply = ask(zone, dig_nxdomain_do_cd);
    const auto m = check_reply(reply, dig_nxdomain_do_cd);
    CHECK(reply.verdict.rcode == wdns::rcode::nxdomain);
    CHECK(m.header().ancount() == 0);
    CHECK(m.header().cd());
    CHECK((*m.opt())->dnssec_ok());
    // Deeper than one label below the domain: nothing there either.
    for (std::string_view name : {"a.vm1.ankanet.internal", "x.y.ankanet.internal", "vm1x.ankanet.internal"}) {
        const auto q = query(name, wdns::type::a);
        const auto r = ask(zone, q);
        (void)check_reply(r, q);
        CHECK(r.verdict.rcode == wdns::rcode::nxdomain);
    }
    CHECK(zone.counters().nxdomain == 4);
}

TEST_CASE("dns/local_zone: names outside the domain are forwarded untouched") {
    auto zone = make_zone();
    reply_buffer reply;
    reply.bytes.fill(std::byte{0xee});
    reply.verdict = zone.answer(dig_other, reply.bytes);
    CHECK(reply.verdict == zone_answer{zone_disposition::forward, 0, 0});
    CHECK(std::all_of(reply.bytes.begin(), reply.bytes.end(), [](std::byte b) { return b == std::byte{0xee}; }));
    // Look-alikes are not under the domain.
    for (std::string_view name : {"vm1.ankanet.internal.example.test", "vm1.xankanet.internal", "internal", "vm1"}) {
        const auto q = query(name, wdns::type::a);
        INFO(name);
        CHECK(ask(zone, q).verdict.disposition == zone_disposition::forward);
    }
    CHECK(zone.counters().forwarded == 5);
}

TEST_CASE("dns/local_zone: other classes, opcodes and question counts are forwarded") {
    auto zone = make_zone();
    CHECK(ask(zone, query("vm1.ankanet.internal", wdns::type::a, 1, std::nullopt, wdns::rr_class::chaos)).verdict.disposition ==
          zone_disposition::forward);
    CHECK(ask(zone, query("vm1.ankanet.internal", wdns::type::a, 1, std::nullopt, wdns::rr_class::any)).verdict.disposition ==
          zone_disposition::forward);

    auto status = query("vm1.ankanet.internal", wdns::type::a);
    wdns::packet<mutable_bytes>{status}.set_opcode(wdns::opcode::status);
    CHECK(ask(zone, status).verdict.disposition == zone_disposition::forward);

    // QDCOUNT 0: a header alone.
    auto empty = query("vm1.ankanet.internal", wdns::type::a);
    empty.resize(wdns::header_len);
    wdns::packet<mutable_bytes>{empty}.set_qdcount(0);
    CHECK(ask(zone, empty).verdict.disposition == zone_disposition::forward);

    // QDCOUNT 2: the question twice.
    auto twice = query("vm1.ankanet.internal", wdns::type::a);
    const std::vector<std::byte> question(twice.begin() + wdns::header_len, twice.end());
    twice.insert(twice.end(), question.begin(), question.end());
    wdns::packet<mutable_bytes>{twice}.set_qdcount(2);
    REQUIRE(wdns::message::parse(twice));
    CHECK(ask(zone, twice).verdict.disposition == zone_disposition::forward);
    CHECK(zone.counters().forwarded == 5);
}

TEST_CASE("dns/local_zone: compression in a query is followed, and a looping pointer is dropped") {
    auto zone = make_zone();
    // An additional A record whose owner is a pointer to the question name (offset 12).
    auto q = query("vm1.ankanet.internal", wdns::type::a);
    const std::array<std::uint8_t, 16> record{0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0, 0, 0, 60, 0x00, 0x04, 10, 0, 0, 1};
    for (auto b : record) q.push_back(std::byte{b});
    wdns::packet<mutable_bytes>{q}.set_arcount(1);
    REQUIRE(wdns::message::parse(q));
    const auto r = ask(zone, q);
    (void)check_reply(r, q);
    CHECK(r.verdict.rcode == wdns::rcode::no_error);

    // A question name that points at itself.
    auto loop = query("vm1.ankanet.internal", wdns::type::a);
    loop.resize(wdns::header_len);
    for (int b : {0x03, int{'v'}, int{'m'}, int{'1'}, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01}) loop.push_back(static_cast<std::byte>(b));
    CHECK(ask(zone, loop).verdict.disposition == zone_disposition::drop);
    CHECK(zone.counters().dropped == 1);
}

TEST_CASE("dns/local_zone: malformed messages and responses are dropped and counted") {
    auto zone = make_zone();
    std::size_t expected = 0;
    // Every prefix of a good query but the whole.
    for (std::size_t len = 0; len < dig_a_cookie.size(); ++len) {
        reply_buffer reply;
        reply.verdict = zone.answer(const_bytes{dig_a_cookie}.first(len), reply.bytes);
        CHECK(reply.verdict.disposition == zone_disposition::drop);
        ++expected;
    }
    // A response (QR set), even for our name.
    auto response = query("vm1.ankanet.internal", wdns::type::a);
    wdns::packet<mutable_bytes>{response}.set_flag(wdns::flag::qr);
    CHECK(ask(zone, response).verdict.disposition == zone_disposition::drop);
    ++expected;
    CHECK(zone.counters().dropped == expected);
    CHECK(zone.counters().queries == expected);
}

TEST_CASE("dns/local_zone: broken EDNS in a query for the domain gets FORMERR or BADVERS") {
    auto zone = make_zone();
    // Two OPT records: FORMERR, without OPT.
    auto two = query("vm1.ankanet.internal", wdns::type::a, 7, wdns::edns{});
    const std::vector<std::byte> opt(two.end() - wdns::edns::buffer_len, two.end());
    two.insert(two.end(), opt.begin(), opt.end());
    wdns::packet<mutable_bytes>{two}.set_arcount(2);
    auto reply = ask(zone, two);
    REQUIRE(reply.verdict.disposition == zone_disposition::reply);
    CHECK(reply.verdict.rcode == wdns::rcode::format_error);
    const auto m = wdns::message::parse(reply.view());
    REQUIRE(m);
    CHECK(m->header().id() == 7);
    CHECK(m->header().arcount() == 0);

    // EDNS version 1: BADVERS (16 = extended RCODE 1, header RCODE 0), with OPT version 0.
    wdns::edns v1;
    v1.version = 1;
    const auto q = query("vm1.ankanet.internal", wdns::type::a, 8, v1);
    reply = ask(zone, q);
    const auto r = wdns::repr::parse(reply.view());
    REQUIRE(r);
    CHECK(r->answer_count == 0);
    REQUIRE(r->edns);
    CHECK(r->edns->extended_rcode == 1);
    CHECK(r->edns->version == 0);
    CHECK((r->flags & wdns::flag::rcode_mask) == 0);
    CHECK(zone.counters().formerr == 2);

    // Outside the domain the same query is not ours: forwarded, the upstream judges it.
    CHECK(ask(zone, query("www.example.test", wdns::type::a, 9, v1)).verdict.disposition == zone_disposition::forward);
}

TEST_CASE("dns/local_zone: host names are checked as one LDH label") {
    for (std::string_view good : std::initializer_list<std::string_view>{"a", "vm1", "Build-Box", "x0-9", std::string_view{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}) {
        INFO(good);
        CHECK(local_zone::valid_label(good));
    }
    for (std::string_view bad : std::initializer_list<std::string_view>{"", "vm1.example.test", "vm1.", ".vm1", "my_vm", "my vm", "-vm", "vm-", "vm\xc3\xa9",
                                 "vm\n", "vm*", std::string_view{"vm\0x", 4},
                                 std::string_view{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}) {
        INFO(bad);
        CHECK_FALSE(local_zone::valid_label(bad));
    }
    auto zone = make_zone();
    CHECK(zone.set_name(ipv4_address{192, 168, 64, 9}, "vm9.example.test") == name_status::invalid);
    CHECK(zone.set_name(ipv4_address{192, 168, 64, 9}, "HOST") == name_status::reserved);
    CHECK(zone.size() == 2);
    CHECK(zone.name_of(ipv4_address{192, 168, 64, 9}).empty());
}

TEST_CASE("dns/local_zone: the first VM to hold a name keeps it until its lease ends") {
    auto zone = make_zone();
    constexpr ipv4_address intruder{192, 168, 64, 50};
    CHECK(zone.set_name(intruder, "VM1") == name_status::taken);
    CHECK(zone.address_of("vm1") == vm1_address);
    CHECK(zone.name_of(intruder).empty());
    // Renewals of the holder change nothing.
    CHECK(zone.set_name(vm1_address, "Vm1") == name_status::unchanged);
    // The lease ends: the name is free, and the next VM asking gets it.
    CHECK(zone.remove_address(vm1_address));
    CHECK_FALSE(zone.remove_address(vm1_address));
    const auto q = query("vm1.ankanet.internal", wdns::type::a);
    CHECK(ask(zone, q).verdict.rcode == wdns::rcode::nxdomain);
    CHECK(zone.set_name(intruder, "vm1") == name_status::added);
    const auto r = wdns::repr::parse(check_reply(ask(zone, q), q));
    REQUIRE(r);
    CHECK(r->answers[0].address == intruder);
}

TEST_CASE("dns/local_zone: an address renaming itself loses its old name") {
    auto zone = make_zone();
    CHECK(zone.set_name(vm1_address, "web") == name_status::renamed);
    CHECK(zone.size() == 2);
    CHECK_FALSE(zone.address_of("vm1"));
    CHECK(zone.address_of("web") == vm1_address);
    // PTR follows the new name.
    const auto reply = ask(zone, dig_ptr);
    const auto m = check_reply(reply, dig_ptr);
    CHECK((*m.answers().begin()).rdata_name()->text().view() == "web.ankanet.internal");
    // The old name is free for others.
    CHECK(zone.set_name(ipv4_address{192, 168, 64, 20}, "vm1") == name_status::added);
}

TEST_CASE("dns/local_zone: at most max_entries names, and no allocation after construction") {
    local_zone_config config;
    config.max_entries = 3;
    auto zone = make_zone(config);
    CHECK(zone.set_name(ipv4_address{192, 168, 64, 10}, "c") == name_status::added);
    CHECK(zone.set_name(ipv4_address{192, 168, 64, 11}, "d") == name_status::full);
    CHECK(zone.size() == 3);
    // A full zone still renames the addresses it holds.
    CHECK(zone.set_name(ipv4_address{192, 168, 64, 10}, "e") == name_status::renamed);
    zone.clear();
    CHECK(zone.size() == 0);
    CHECK(zone.address_of("host") == gateway);
}

TEST_CASE("dns/local_zone: a configured domain, host label and gateway") {
    local_zone_config config;
    config.domain = "Lab.Example.";
    config.host_label = "Gateway";
    config.gateway = ipv4_address{10, 0, 2, 2};
    config.ttl = 0;
    auto zone = local_zone::make(config);
    REQUIRE(zone);
    CHECK(zone->host_label() == "gateway");
    CHECK(zone->domain().text().view() == "Lab.Example");
    CHECK(zone->set_name(ipv4_address{10, 0, 2, 15}, "gateway") == name_status::reserved);
    const auto q = query("GATEWAY.lab.example", wdns::type::a);
    const auto r = wdns::repr::parse(check_reply(ask(*zone, q), q));
    REQUIRE(r);
    CHECK(r->answers[0].address == ipv4_address(10, 0, 2, 2));
    CHECK(r->answers[0].ttl == 0);
    CHECK(ask(*zone, query("host.ankanet.internal", wdns::type::a)).verdict.disposition == zone_disposition::forward);

    // A copy of the zone is independent of the config's text and of the original.
    auto copy = *zone;
    CHECK(copy.host_label() == "gateway");
    CHECK(copy.set_name(ipv4_address{10, 0, 2, 15}, "guest") == name_status::added);
    CHECK(zone->size() == 0);
}

TEST_CASE("dns/local_zone: bad configurations are refused") {
    local_zone_config config;
    config.domain = ".";
    CHECK(local_zone::make(config).error() == errc::bad_field);
    config.domain = "a..b";
    CHECK(local_zone::make(config).error() == errc::bad_field);
    const std::string long_domain = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c');
    config.domain = long_domain; // 193 wire bytes: no room for a 63-byte label
    CHECK(local_zone::make(config).error() == errc::bad_length);
    config.domain = "ankanet.internal";
    config.host_label = "my host";
    CHECK(local_zone::make(config).error() == errc::bad_field);
    config.host_label = "";
    CHECK(local_zone::make(config).error() == errc::bad_field);
}

TEST_CASE("dns/local_zone: the longest names fit and a short reply buffer is refused") {
    const std::string domain = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(61, 'c');
    local_zone_config config;
    config.domain = domain;
    auto zone = local_zone::make(config);
    REQUIRE(zone);
    const std::string label(63, 'v');
    REQUIRE(zone->set_name(vm1_address, label) == name_status::added);
    const auto q = query("2.64.168.192.in-addr.arpa", wdns::type::ptr, 3, wdns::edns{});
    const auto reply = ask(*zone, q);
    const auto m = check_reply(reply, q);
    CHECK((*m.answers().begin()).rdata_name()->wire_length() == 255);
    CHECK(reply.verdict.length <= wdns::max_udp_len); // the largest reply of all fits the classic limit

    std::array<std::byte, 64> small{};
    CHECK(zone->answer(q, small).disposition == zone_disposition::drop);
    const auto qa = query(label + "." + domain, wdns::type::a);
    CHECK(zone->answer(qa, small).disposition == zone_disposition::drop);
    CHECK(zone->counters().reply_too_big == 2);
}

TEST_CASE("dns/local_zone: mutated golden queries never crash, and every reply parses and keeps the ID") {
    auto zone = make_zone();
    std::mt19937 rng{4343};
    const std::vector<const std::vector<std::byte>*> seeds{&dig_a_cookie, &dig_a_mixed_case, &dig_ptr, &dig_aaaa,
                                                           &dig_other, &dig_nxdomain_do_cd};
    std::size_t replies = 0;
    for (int round = 0; round < 20000; ++round) {
        auto q = *seeds[rng() % seeds.size()];
        const auto flips = 1 + rng() % 4;
        for (std::uint32_t i = 0; i < flips; ++i) q[rng() % q.size()] = static_cast<std::byte>(rng());
        if (rng() % 4 == 0) q.resize(rng() % (q.size() + 1));
        reply_buffer reply;
        reply.verdict = zone.answer(q, reply.bytes);
        if (reply.verdict.disposition != zone_disposition::reply) {
            CHECK(reply.verdict.length == 0);
            continue;
        }
        ++replies;
        const auto m = wdns::message::parse(reply.view());
        REQUIRE(m);
        REQUIRE(m->header().id() == wdns::packet<const_bytes>{q}.id());
        REQUIRE(m->header().qr());
    }
    CHECK(replies > 1000);
}
