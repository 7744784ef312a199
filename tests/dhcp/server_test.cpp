#include <ankanet/dhcp/server.hpp>

#include <catch2/catch.hpp>

#include "../support/dhcp_captures.hpp"

#include <ankanet/wire/dhcp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/udp.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <unistd.h>
#include "../support/temp_dir.hpp"

using namespace ankanet;
using namespace ankanet::dhcp;
using wire::ipv4_address;
using wire::ipv4_prefix;
using wire::mac_address;
namespace msg = ankanet::wire::dhcp;
namespace oc = ankanet::wire::dhcp::option_code;
namespace captures = ankanet::test::dhcp_captures;

using ankanet::test::temp_dir;

namespace {

using bytes = std::vector<std::byte>;

// The network of the captures (tests/support/dhcp_captures.hpp): dnsmasq on 192.168.64.1/24 with a
// 12 h lease, router and DNS 192.168.64.1, domain and search domain vm.test, a classless route
// 10.0.0.0/8 via 192.168.64.1 and MTU 1500. Our server is configured the same way, and its range
// starts at 192.168.64.107, the address dnsmasq handed to each client, so the captured REQUESTs ask
// for the address this server offers.
const mac_address client_mac = *mac_address::parse("52:54:00:12:34:56"); // the captured clients
const mac_address gateway_mac = *mac_address::parse("52:54:00:00:00:01");
const mac_address other_mac = *mac_address::parse("52:54:00:ab:cd:ef");
constexpr ipv4_address gateway{192, 168, 64, 1};
constexpr ipv4_address first_address{192, 168, 64, 107};
constexpr ipv4_address subnet_broadcast{192, 168, 64, 255};
constexpr std::uint32_t lease_seconds = 43200;

struct manual_clock {
    sys_seconds t{seconds{1'700'000'000}};
    sys_seconds now() const { return t; }
};

using test_server = basic_server<memory_lease_store, manual_clock>;

lease_pool_config pool_config() {
    lease_pool_config c;
    c.subnet = ipv4_prefix{ipv4_address{192, 168, 64, 0}, 24};
    c.first = first_address;
    c.last = ipv4_address{192, 168, 64, 150};
    c.lease_time = seconds{lease_seconds};
    c.offer_hold = seconds{60};
    c.decline_quarantine = seconds{600};
    return c;
}

server_config dnsmasq_like_config() {
    server_config c;
    c.server_address = gateway;
    c.server_mac = gateway_mac;
    c.domain_name = "vm.test";
    c.search_domains = {"vm.test"};
    c.interface_mtu = 1500;
    c.classless_routes = {msg::classless_route{ipv4_prefix{ipv4_address{10, 0, 0, 0}, 8}, gateway}};
    return c;
}

test_server make_server(server_config config = dnsmasq_like_config(), lease_pool_config pc = pool_config()) {
    std::string why;
    auto pool = test_server::pool_type::create(std::move(pc), memory_lease_store{}, manual_clock{}, &why);
    INFO(why);
    REQUIRE(pool);
    auto server = test_server::create(std::move(config), std::move(*pool), &why);
    INFO(why);
    REQUIRE(server);
    return std::move(*server);
}

wire::const_bytes cspan(const bytes& b) { return {b.data(), b.size()}; }

/// A DHCP payload in UDP in IPv4 in Ethernet, as a client sends it (checksums filled).
bytes client_frame(const bytes& payload, ipv4_address source = ipv4_address::any(),
                   ipv4_address destination = ipv4_address::broadcast(),
                   mac_address eth_destination = mac_address::broadcast(), mac_address eth_source = client_mac) {
    constexpr std::size_t udp_at = wire::ethernet::header_len + wire::ipv4::header_len;
    bytes frame(udp_at + wire::udp::header_len + payload.size());
    const wire::mutable_bytes all{frame};
    std::copy(payload.begin(), payload.end(), frame.begin() + udp_at + wire::udp::header_len);
    REQUIRE_FALSE(wire::udp::repr{msg::client_port, msg::server_port, payload.size()}.emit(all.subspan(udp_at), source,
                                                                                           destination));
    wire::ipv4::repr ip;
    ip.source = source;
    ip.destination = destination;
    ip.protocol = wire::ipv4::protocol::udp;
    ip.ttl = 64;
    ip.payload_len = wire::udp::header_len + payload.size();
    REQUIRE_FALSE(ip.emit(all.subspan(wire::ethernet::header_len)));
    REQUIRE_FALSE(wire::ethernet::repr{eth_source, eth_destination, wire::ethernet::ethertype::ipv4, std::nullopt}.emit(all));
    return frame;
}

/// A captured payload changed through its repr (the repr points into `storage`, which must live).
template <class Mutate>
bytes derive(std::string_view golden, Mutate mutate) {
    const bytes original = captures::hex(golden);
    auto r = msg::repr::parse(cspan(original));
    REQUIRE(r);
    mutate(*r);
    bytes out(r->buffer_len());
    REQUIRE_FALSE(r->emit(out));
    return out;
}

/// A payload written from scratch: header from `header`, then the options `write` adds.
template <class Write>
bytes build(const msg::repr& header, Write write, std::size_t size = 1024) {
    bytes out(size);
    REQUIRE_FALSE(header.emit_header(out));
    msg::option_writer w{out};
    write(w);
    const auto len = w.finish();
    REQUIRE(len);
    out.resize(*len);
    return out;
}

struct collector {
    std::vector<bytes> frames;
    void operator()(wire::const_bytes frame) { frames.emplace_back(frame.begin(), frame.end()); }
};

/// A reply frame taken apart, every layer checked on the way.
struct opened {
    wire::ethernet::repr eth;
    wire::ipv4::repr ip;
    wire::udp::repr udp;
    bytes payload;
    msg::repr dhcp;
    std::vector<std::pair<std::uint8_t, bytes>> options; // in order, as on the wire
    std::uint16_t udp_checksum = 0;

    std::vector<std::uint8_t> codes() const {
        std::vector<std::uint8_t> out;
        for (const auto& [code, value] : options) out.push_back(code);
        return out;
    }
    std::optional<bytes> option(std::uint8_t code) const {
        for (const auto& [c, value] : options) {
            if (c == code) return value;
        }
        return std::nullopt;
    }
};

opened open(const bytes& frame) {
    opened o;
    const auto eth = wire::ethernet::repr::parse(cspan(frame));
    REQUIRE(eth);
    o.eth = *eth;
    REQUIRE(o.eth.ethertype == wire::ethernet::ethertype::ipv4);
    REQUIRE_FALSE(o.eth.vlan_tci);
    const auto ip_bytes = cspan(frame).subspan(o.eth.buffer_len());
    const auto ip = wire::ipv4::repr::parse(ip_bytes); // verifies the header checksum
    REQUIRE(ip);
    o.ip = *ip;
    REQUIRE(ip_bytes.size() == wire::ipv4::header_len + o.ip.payload_len); // no trailing bytes
    const wire::ipv4::packet<wire::const_bytes> datagram{ip_bytes};
    const wire::udp::packet<wire::const_bytes> udp_view{datagram.payload()};
    const auto udp = wire::udp::repr::parse(udp_view, o.ip.source, o.ip.destination); // verifies the checksum
    REQUIRE(udp);
    o.udp = *udp;
    o.udp_checksum = udp_view.checksum();
    const auto payload = udp_view.payload();
    o.payload.assign(payload.begin(), payload.end());
    REQUIRE(msg::packet<wire::const_bytes>::checked(cspan(o.payload)));
    const auto parsed = msg::repr::parse(cspan(o.payload));
    REQUIRE(parsed);
    o.dhcp = *parsed;
    for (const auto& option : msg::packet<wire::const_bytes>{cspan(o.payload)}.options()) {
        o.options.emplace_back(option.code, bytes(option.data.begin(), option.data.end()));
    }
    return o;
}

bytes be32(std::uint32_t v) {
    return {std::byte(v >> 24), std::byte(v >> 16), std::byte(v >> 8), std::byte(v)};
}
bytes text(std::string_view s) {
    bytes out;
    for (char c : s) out.push_back(static_cast<std::byte>(c));
    return out;
}

/// Checks what every reply of this server shares: it comes from the gateway, from port 67 to 68,
/// with TTL 64, a UDP checksum, a BOOTREPLY copying the request's xid, flags, giaddr and chaddr.
void check_common(const opened& o, const msg::repr& request) {
    CHECK(o.eth.source == gateway_mac);
    CHECK(o.ip.source == gateway);
    CHECK(o.ip.protocol == wire::ipv4::protocol::udp);
    CHECK(o.ip.ttl == 64);
    CHECK_FALSE(o.ip.more_fragments);
    CHECK(o.ip.fragment_offset == 0);
    CHECK(o.udp.source_port == 67);
    CHECK(o.udp.destination_port == 68);
    CHECK(o.udp_checksum != 0);
    CHECK(o.dhcp.op == msg::boot_reply);
    CHECK(o.dhcp.htype == msg::htype_ethernet);
    CHECK(o.dhcp.hlen == 6);
    CHECK(o.dhcp.hops == 0);
    CHECK(o.dhcp.xid == request.xid);
    CHECK(o.dhcp.flags == request.flags);
    CHECK(o.dhcp.giaddr == request.giaddr);
    CHECK(o.dhcp.chaddr == request.chaddr);
    CHECK(o.dhcp.siaddr == ipv4_address{});
    CHECK(o.dhcp.server_id == gateway);
    REQUIRE(o.options.size() >= 2);
    CHECK(o.options[0].first == oc::message_type);
    CHECK(o.options[1].first == oc::server_id);
    CHECK(o.payload.size() >= msg::bootp_min_len);
}

msg::repr request_of(const bytes& payload) {
    auto r = msg::repr::parse(cspan(payload));
    REQUIRE(r);
    return *r;
}

/// Sends one frame, expects it claimed, and returns the replies.
std::vector<bytes> deliver(test_server& server, const bytes& frame) {
    collector out;
    CHECK(server.handle(cspan(frame), std::ref(out)));
    return out.frames;
}

/// Everything a captured reply of dnsmasq said that this server also serves must be said the same.
void check_same_values_as(const opened& ours, std::string_view dnsmasq_reply) {
    const auto theirs = captures::hex(dnsmasq_reply);
    for (const auto& option : msg::packet<wire::const_bytes>{cspan(theirs)}.options()) {
        INFO("option " << int{option.code});
        const auto value = ours.option(option.code);
        REQUIRE(value);
        CHECK(*value == bytes(option.data.begin(), option.data.end()));
    }
}

struct capture_case {
    std::string_view name;
    std::string_view discover, offer, request, ack;
    std::vector<std::uint8_t> offer_codes; // the option sequence our OFFER must have
    std::string_view hostname;             // option 12 the client sent (empty: none)
};

std::vector<capture_case> capture_cases() {
    return {
        // udhcpc asks for 1 3 6 12 15 28 42 and sends a client id (61) and host name.
        {"udhcpc", captures::udhcpc_discover, captures::udhcpc_offer, captures::udhcpc_request, captures::udhcpc_ack,
         {53, 54, 1, 3, 6, 12, 15, 28, 51, 58, 59, 61}, "guest-udhcpc"},
        // dhclient asks for 1 28 2 3 15 6 119 12 44 47 26 121 42, sends host name "vm", no client id.
        {"dhclient", captures::dhclient_discover, captures::dhclient_offer, captures::dhclient_request,
         captures::dhclient_ack, {53, 54, 1, 28, 3, 15, 6, 119, 12, 26, 121, 51, 58, 59}, "vm"},
        // dhcpcd asks for 1 121 3 6 12 15 26 28 33 51 54 58 59 119, sends a DUID client id, no host name.
        {"dhcpcd", captures::dhcpcd_discover, captures::dhcpcd_offer, captures::dhcpcd_request, captures::dhcpcd_ack,
         {53, 54, 1, 121, 3, 6, 15, 26, 28, 51, 58, 59, 119, 61}, ""},
    };
}

} // namespace

// --- the captured clients, end to end ----------------------------------------------------------

TEST_CASE("dhcp server: real clients' DISCOVER gets an OFFER and their REQUEST an ACK, as dnsmasq's") {
    for (const auto& c : capture_cases()) {
        SECTION(std::string{c.name}) {
            auto server = make_server();
            std::vector<lease_event> events;
            std::vector<std::string> event_names;
            server.set_observer([&](const lease_event& e) {
                events.push_back(e);
                event_names.emplace_back(e.hostname);
            });

            // DISCOVER, broadcast from 0.0.0.0, flags 0: OFFER by unicast to yiaddr at chaddr.
            const auto discover = captures::hex(c.discover);
            const auto replies = deliver(server, client_frame(discover));
            REQUIRE(replies.size() == 1);
            const auto offer = open(replies[0]);
            check_common(offer, request_of(discover));
            CHECK(offer.dhcp.message_type == msg::message_type::offer);
            CHECK(offer.dhcp.yiaddr == first_address);
            CHECK(offer.dhcp.ciaddr == ipv4_address{});
            CHECK(offer.eth.destination == client_mac);
            CHECK(offer.ip.destination == first_address);
            CHECK(offer.codes() == c.offer_codes); // the client's order, then what it did not ask for
            check_same_values_as(offer, c.offer);
            if (!c.hostname.empty()) CHECK(offer.option(oc::host_name) == text(c.hostname));
            if (const auto id = request_of(discover).client_id; !id.empty()) {
                CHECK(offer.option(oc::client_id) == bytes(id.begin(), id.end())); // RFC 6842
            }
            CHECK(server.stats().discovers == 1);
            CHECK(server.stats().offers == 1);
            CHECK(server.pool().bound_count() == 0);

            // REQUEST (SELECTING: server id 192.168.64.1, requested 192.168.64.107): ACK.
            const auto request = captures::hex(c.request);
            const auto acks = deliver(server, client_frame(request));
            REQUIRE(acks.size() == 1);
            const auto ack = open(acks[0]);
            check_common(ack, request_of(request));
            CHECK(ack.dhcp.message_type == msg::message_type::ack);
            CHECK(ack.dhcp.yiaddr == first_address);
            CHECK(ack.dhcp.ciaddr == ipv4_address{});
            CHECK(ack.eth.destination == client_mac);
            CHECK(ack.ip.destination == first_address);
            check_same_values_as(ack, c.ack);
            CHECK(ack.option(oc::lease_time) == be32(lease_seconds));
            CHECK(ack.option(oc::renewal_time) == be32(lease_seconds / 2));
            CHECK(ack.option(oc::rebinding_time) == be32(lease_seconds / 8 * 7));
            CHECK(server.stats().requests == 1);
            CHECK(server.stats().acks == 1);

            // The lease is bound, persisted, with the client's host name.
            const auto held = server.pool().find(first_address);
            REQUIRE(held);
            CHECK(held->bound);
            CHECK(held->mac == client_mac);
            CHECK(held->hostname == c.hostname);
            CHECK(held->expiry == server.pool().clock().now() + seconds{lease_seconds});
            CHECK(server.pool().store().size() == 1);

            REQUIRE(events.size() == 2);
            CHECK(events[0].kind == lease_event_kind::offered);
            CHECK(events[1].kind == lease_event_kind::acknowledged);
            CHECK(events[1].mac == client_mac);
            CHECK(events[1].address == first_address);
            CHECK(event_names[1] == c.hostname);
        }
    }
}

TEST_CASE("dhcp server: the parameter request list order is reflected byte for byte") {
    auto server = make_server();
    // A client asking in an unusual order, with codes we do not serve mixed in and one repeated.
    msg::repr header;
    header.xid = 0x01020304;
    header.chaddr = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    const auto discover = build(header, [](msg::option_writer& w) {
        w.message_type(msg::message_type::discover);
        const auto prl = wire::make_bytes(121, 42, 59, 6, 26, 119, 3, 58, 15, 28, 51, 12, 1, 6, 200);
        w.parameter_request_list(prl);
    });
    const auto replies = deliver(server, client_frame(discover));
    REQUIRE(replies.size() == 1);
    const auto offer = open(replies[0]);
    // 12 is left out: the client sent no host name and holds no lease that has one.
    CHECK(offer.codes() == std::vector<std::uint8_t>{53, 54, 121, 59, 6, 26, 119, 3, 58, 15, 28, 51, 1});
    // The whole options area, byte for byte.
    const bytes expected = captures::hex("350102"            // 53 OFFER
                                         "3604c0a84001"      // 54
                                         "7906080ac0a84001"  // 121 10.0.0.0/8 via .1
                                         "3b04000093a8"      // 59 T2 = 37800
                                         "0604c0a84001"      // 6
                                         "1a0205dc"          // 26 1500
                                         "770902766d047465737400" // 119 vm.test
                                         "0304c0a84001"      // 3
                                         "3a0400005460"      // 58 T1 = 21600
                                         "0f07766d2e74657374" // 15 vm.test
                                         "1c04c0a840ff"      // 28
                                         "33040000a8c0"      // 51 43200
                                         "0104ffffff00"      // 1
                                         "ff");
    const auto options = cspan(offer.payload).subspan(msg::options_offset, expected.size());
    CHECK(bytes(options.begin(), options.end()) == expected);
}

TEST_CASE("dhcp server: a client sending no parameter request list still gets lease times, mask, router, DNS") {
    auto server = make_server();
    msg::repr header;
    header.xid = 7;
    header.chaddr = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    const auto discover = build(header, [](msg::option_writer& w) { w.message_type(msg::message_type::discover); });
    const auto replies = deliver(server, client_frame(discover));
    REQUIRE(replies.size() == 1);
    CHECK(open(replies[0]).codes() == std::vector<std::uint8_t>{53, 54, 51, 58, 59, 1, 3, 6});
}

// --- SELECTING ---------------------------------------------------------------------------------

TEST_CASE("dhcp server: a REQUEST naming another server is not answered and our offer is released") {
    auto server = make_server();
    REQUIRE(deliver(server, client_frame(captures::hex(captures::udhcpc_discover))).size() == 1);
    const auto free_after_offer = server.pool().free_count();
    REQUIRE(server.pool().find(first_address));

    const auto request = derive(captures::udhcpc_request, [](msg::repr& r) { r.server_id = ipv4_address{192, 168, 64, 2}; });
    CHECK(deliver(server, client_frame(request)).empty());
    CHECK(server.stats().ignored_not_for_us == 1);
    CHECK(server.stats().requests == 1);
    CHECK_FALSE(server.pool().find(first_address)); // the offer lapsed at once
    CHECK(server.pool().free_count() == free_after_offer + 1);
    CHECK(server.pool().store().size() == 0);
}

TEST_CASE("dhcp server: SELECTING for an address another client holds gets a NAK, broadcast") {
    auto server = make_server();
    // Another client takes 192.168.64.107 first.
    const auto other = derive(captures::dhclient_discover, [](msg::repr& r) { r.chaddr[5] = 0x99; });
    REQUIRE(deliver(server, client_frame(other)).size() == 1);
    const auto other_request = derive(captures::dhclient_request, [](msg::repr& r) { r.chaddr[5] = 0x99; });
    REQUIRE(deliver(server, client_frame(other_request)).size() == 1);

    std::vector<lease_event> events;
    server.set_observer([&](const lease_event& e) { events.push_back(e); });
    const auto request = captures::hex(captures::udhcpc_request); // asks for .107 too
    const auto replies = deliver(server, client_frame(request));
    REQUIRE(replies.size() == 1);
    const auto nak = open(replies[0]);
    check_common(nak, request_of(request));
    CHECK(nak.dhcp.message_type == msg::message_type::nak);
    CHECK(nak.dhcp.yiaddr == ipv4_address{});
    CHECK(nak.dhcp.ciaddr == ipv4_address{});
    CHECK(nak.eth.destination == mac_address::broadcast());
    CHECK(nak.ip.destination == ipv4_address::broadcast());
    CHECK(nak.codes() == std::vector<std::uint8_t>{53, 54, 56, 61}); // no lease time, no configuration
    CHECK(nak.option(oc::message) == text("requested address is in use"));
    CHECK(server.stats().naks == 1);
    REQUIRE(events.size() == 1);
    CHECK(events[0].kind == lease_event_kind::nacked);
    CHECK(events[0].address == first_address);
    CHECK(events[0].reason == "requested address is in use");
}

// --- INIT-REBOOT -------------------------------------------------------------------------------

namespace {
/// The captured udhcpc REQUEST as it is sent in INIT-REBOOT: no server id, option 50 set.
bytes init_reboot(ipv4_address requested) {
    return derive(captures::udhcpc_request, [&](msg::repr& r) {
        r.server_id.reset();
        r.requested_ip = requested;
    });
}
} // namespace

TEST_CASE("dhcp server: INIT-REBOOT for the client's own lease is ACKed") {
    auto server = make_server();
    REQUIRE(deliver(server, client_frame(captures::hex(captures::udhcpc_discover))).size() == 1);
    REQUIRE(deliver(server, client_frame(captures::hex(captures::udhcpc_request))).size() == 1);
    server.pool().clock().t += seconds{1000};

    const auto request = init_reboot(first_address);
    const auto replies = deliver(server, client_frame(request));
    REQUIRE(replies.size() == 1);
    const auto ack = open(replies[0]);
    check_common(ack, request_of(request));
    CHECK(ack.dhcp.message_type == msg::message_type::ack);
    CHECK(ack.dhcp.yiaddr == first_address);
    CHECK(ack.ip.destination == first_address);
    CHECK(ack.option(oc::lease_time) == be32(lease_seconds));
    CHECK(server.pool().find(first_address)->expiry == server.pool().clock().now() + seconds{lease_seconds});
}

TEST_CASE("dhcp server: INIT-REBOOT for an address on another network gets a NAK") {
    auto server = make_server();
    const auto request = init_reboot(ipv4_address{10, 1, 2, 3}); // a laptop back from another network
    const auto replies = deliver(server, client_frame(request));
    REQUIRE(replies.size() == 1);
    const auto nak = open(replies[0]);
    check_common(nak, request_of(request));
    CHECK(nak.dhcp.message_type == msg::message_type::nak);
    CHECK(nak.dhcp.yiaddr == ipv4_address{});
    CHECK(nak.ip.destination == ipv4_address::broadcast());
    CHECK(nak.eth.destination == mac_address::broadcast());
    CHECK(nak.option(oc::message) == text("requested address is not on this network"));
    CHECK_FALSE(nak.option(oc::lease_time));
    CHECK(server.pool().bound_count() == 0);
}

TEST_CASE("dhcp server: INIT-REBOOT with no record is ACKed when the address is free, NAKed when it is not") {
    auto server = make_server();
    const ipv4_address wanted{192, 168, 64, 120};
    // Free: committed (the server is authoritative; see the header).
    auto replies = deliver(server, client_frame(init_reboot(wanted)));
    REQUIRE(replies.size() == 1);
    CHECK(open(replies[0]).dhcp.message_type == msg::message_type::ack);
    CHECK(server.pool().find(wanted)->mac == client_mac);

    // Held by this client, who now asks for another free address: NAK (it must DISCOVER again).
    replies = deliver(server, client_frame(init_reboot(ipv4_address{192, 168, 64, 121})));
    REQUIRE(replies.size() == 1);
    CHECK(open(replies[0]).option(oc::message) == text("client holds a lease on another address"));

    // Another client asking for it: in use.
    const auto other = derive(captures::dhclient_request, [&](msg::repr& r) {
        r.server_id.reset();
        r.requested_ip = wanted;
    });
    replies = deliver(server, client_frame(other));
    REQUIRE(replies.size() == 1);
    CHECK(open(replies[0]).option(oc::message) == text("requested address is in use"));

    // An address of the subnet outside the range, and the gateway's own.
    const auto fresh = [](ipv4_address a) {
        return derive(captures::dhcpcd_request, [&](msg::repr& r) {
            r.server_id.reset();
            r.requested_ip = a;
        });
    };
    for (const auto a : {ipv4_address{192, 168, 64, 20}, gateway}) {
        replies = deliver(server, client_frame(fresh(a)));
        REQUIRE(replies.size() == 1);
        CHECK(open(replies[0]).option(oc::message) == text("requested address is outside the DHCP range"));
    }
    CHECK(server.stats().naks == 4);
    CHECK(server.stats().acks == 1);
}

// --- RENEWING / REBINDING ----------------------------------------------------------------------

namespace {
/// The captured udhcpc REQUEST as sent in RENEWING/REBINDING: ciaddr set, no 50, no 54.
bytes renewal(ipv4_address ciaddr) {
    return derive(captures::udhcpc_request, [&](msg::repr& r) {
        r.server_id.reset();
        r.requested_ip.reset();
        r.ciaddr = ciaddr;
    });
}
} // namespace

TEST_CASE("dhcp server: RENEWING by unicast is ACKed by unicast to ciaddr") {
    auto server = make_server();
    REQUIRE(deliver(server, client_frame(captures::hex(captures::udhcpc_discover))).size() == 1);
    REQUIRE(deliver(server, client_frame(captures::hex(captures::udhcpc_request))).size() == 1);
    server.pool().clock().t += seconds{lease_seconds / 2}; // T1

    const auto request = renewal(first_address);
    const auto replies = deliver(server, client_frame(request, first_address, gateway, gateway_mac));
    REQUIRE(replies.size() == 1);
    const auto ack = open(replies[0]);
    check_common(ack, request_of(request));
    CHECK(ack.dhcp.message_type == msg::message_type::ack);
    CHECK(ack.dhcp.ciaddr == first_address);
    CHECK(ack.dhcp.yiaddr == first_address);
    CHECK(ack.ip.destination == first_address);
    CHECK(ack.eth.destination == client_mac);
    CHECK(ack.option(oc::lease_time) == be32(lease_seconds));
    const auto held = server.pool().find(first_address);
    CHECK(held->expiry == server.pool().clock().now() + seconds{lease_seconds});
    CHECK(held->hostname == "guest-udhcpc");
}

TEST_CASE("dhcp server: REBINDING by broadcast is ACKed by unicast to ciaddr") {
    auto server = make_server();
    REQUIRE(deliver(server, client_frame(captures::hex(captures::dhcpcd_discover))).size() == 1);
    REQUIRE(deliver(server, client_frame(captures::hex(captures::dhcpcd_request))).size() == 1);
    server.pool().clock().t += seconds{lease_seconds / 8 * 7}; // T2

    const auto request = derive(captures::dhcpcd_request, [](msg::repr& r) {
        r.server_id.reset();
        r.requested_ip.reset();
        r.ciaddr = first_address;
    });
    const auto replies = deliver(server, client_frame(request, first_address, ipv4_address::broadcast()));
    REQUIRE(replies.size() == 1);
    const auto ack = open(replies[0]);
    check_common(ack, request_of(request));
    CHECK(ack.dhcp.message_type == msg::message_type::ack);
    CHECK(ack.dhcp.ciaddr == first_address);
    CHECK(ack.ip.destination == first_address);
    CHECK(ack.eth.destination == client_mac);
    CHECK(server.pool().find(first_address)->expiry == server.pool().clock().now() + seconds{lease_seconds});
}

TEST_CASE("dhcp server: a renewal from off the subnet, or of an address another client holds, gets a NAK") {
    auto server = make_server();
    auto replies = deliver(server, client_frame(renewal(ipv4_address{10, 0, 0, 5}), ipv4_address{10, 0, 0, 5},
                                                 ipv4_address::broadcast()));
    REQUIRE(replies.size() == 1);
    CHECK(open(replies[0]).dhcp.message_type == msg::message_type::nak);

    const auto other = derive(captures::dhclient_discover, [](msg::repr& r) { r.chaddr[5] = 0x99; });
    REQUIRE(deliver(server, client_frame(other)).size() == 1);
    const auto other_request = derive(captures::dhclient_request, [](msg::repr& r) { r.chaddr[5] = 0x99; });
    REQUIRE(deliver(server, client_frame(other_request)).size() == 1);
    replies = deliver(server, client_frame(renewal(first_address), first_address, gateway, gateway_mac));
    REQUIRE(replies.size() == 1);
    const auto nak = open(replies[0]);
    CHECK(nak.dhcp.message_type == msg::message_type::nak);
    CHECK(nak.ip.destination == ipv4_address::broadcast()); // a NAK is always broadcast
    CHECK(nak.dhcp.ciaddr == ipv4_address{});
    CHECK(server.pool().find(first_address)->mac != client_mac);
}

TEST_CASE("dhcp server: a renewal the server has no record of takes the free address back") {
    // A memory-store server restarted: the guest still holds its lease and renews it.
    auto server = make_server();
    const ipv4_address held{192, 168, 64, 130};
    const auto replies = deliver(server, client_frame(renewal(held), held, gateway, gateway_mac));
    REQUIRE(replies.size() == 1);
    const auto ack = open(replies[0]);
    CHECK(ack.dhcp.message_type == msg::message_type::ack);
    CHECK(ack.dhcp.yiaddr == held);
    CHECK(server.pool().find(held)->bound);
}

// --- DECLINE, RELEASE, INFORM --------------------------------------------------------------------

TEST_CASE("dhcp server: DECLINE quarantines the address and is not answered") {
    auto server = make_server();
    REQUIRE(deliver(server, client_frame(captures::hex(captures::udhcpc_discover))).size() == 1);
    REQUIRE(deliver(server, client_frame(captures::hex(captures::udhcpc_request))).size() == 1);
    std::vector<lease_event> events;
    std::vector<std::string> reasons;
    server.set_observer([&](const lease_event& e) {
        events.push_back(e);
        reasons.emplace_back(e.reason);
    });

    // udhcpc's DECLINE after its ARP probe found the address taken: 50 and 54, a message.
    msg::repr header;
    header.xid = 0x1122;
    header.chaddr = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    const auto decline = build(header, [](msg::option_writer& w) {
        w.message_type(msg::message_type::decline);
        w.client_id(wire::make_bytes(0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56));
        w.requested_ip(first_address);
        w.server_id(gateway);
        w.raw(oc::message, wire::as_bytes(std::string_view{"address in use"}));
    });
    CHECK(deliver(server, client_frame(decline)).empty());
    CHECK(server.stats().declines == 1);
    CHECK_FALSE(server.pool().find(first_address));
    CHECK(server.pool().store().size() == 0);
    REQUIRE(events.size() == 1);
    CHECK(events[0].kind == lease_event_kind::declined);
    CHECK(events[0].address == first_address);
    CHECK(reasons[0] == "address in use");

    // Quarantined: the same client's next DISCOVER is offered another address.
    const auto replies = deliver(server, client_frame(captures::hex(captures::udhcpc_discover)));
    REQUIRE(replies.size() == 1);
    CHECK(open(replies[0]).dhcp.yiaddr == ipv4_address{192, 168, 64, 108});
    // And nobody can be given it while it is quarantined.
    const auto other = derive(captures::dhclient_request, [](msg::repr& r) {
        r.server_id.reset();
        r.requested_ip = first_address;
    });
    const auto refused = deliver(server, client_frame(other));
    REQUIRE(refused.size() == 1);
    CHECK(open(refused[0]).option(oc::message) == text("requested address was declined recently"));

    // A DECLINE of an address the client does not hold changes nothing.
    CHECK(deliver(server, client_frame(decline)).empty());
    CHECK(server.stats().ignored_no_lease == 1);
}

TEST_CASE("dhcp server: RELEASE frees the address and is not answered") {
    auto server = make_server();
    REQUIRE(deliver(server, client_frame(captures::hex(captures::dhclient_discover))).size() == 1);
    REQUIRE(deliver(server, client_frame(captures::hex(captures::dhclient_request))).size() == 1);
    REQUIRE(server.pool().bound_count() == 1);
    std::vector<lease_event> events;
    server.set_observer([&](const lease_event& e) { events.push_back(e); });

    // dhclient -r: unicast to the server, ciaddr the lease, server id.
    const auto release = derive(captures::dhclient_request, [](msg::repr& r) {
        r.message_type = msg::message_type::release;
        r.requested_ip.reset();
        r.ciaddr = first_address;
    });
    const auto frame = client_frame(release, first_address, gateway, gateway_mac);
    CHECK(deliver(server, frame).empty());
    CHECK(server.stats().releases == 1);
    CHECK(server.pool().bound_count() == 0);
    CHECK_FALSE(server.pool().find(first_address));
    CHECK(server.pool().store().size() == 0);
    REQUIRE(events.size() == 1);
    CHECK(events[0].kind == lease_event_kind::released);
    CHECK(events[0].address == first_address);

    // Released twice: nothing to release.
    CHECK(deliver(server, frame).empty());
    CHECK(server.stats().ignored_no_lease == 1);

    // Naming another server: not ours.
    const auto foreign = derive(captures::dhclient_request, [](msg::repr& r) {
        r.message_type = msg::message_type::release;
        r.requested_ip.reset();
        r.ciaddr = first_address;
        r.server_id = ipv4_address{192, 168, 64, 2};
    });
    CHECK(deliver(server, client_frame(foreign, first_address, gateway, gateway_mac)).empty());
    CHECK(server.stats().ignored_not_for_us == 1);
}

TEST_CASE("dhcp server: INFORM gets an ACK with the configuration and no lease, unicast to ciaddr") {
    auto server = make_server();
    const ipv4_address configured{192, 168, 64, 5}; // set by hand, outside the range
    const auto inform = derive(captures::dhclient_request, [&](msg::repr& r) {
        r.message_type = msg::message_type::inform;
        r.requested_ip.reset();
        r.server_id.reset();
        r.ciaddr = configured;
    });
    std::vector<lease_event> events;
    server.set_observer([&](const lease_event& e) { events.push_back(e); });
    const auto replies = deliver(server, client_frame(inform, configured, ipv4_address::broadcast()));
    REQUIRE(replies.size() == 1);
    const auto ack = open(replies[0]);
    check_common(ack, request_of(inform));
    CHECK(ack.dhcp.message_type == msg::message_type::ack);
    CHECK(ack.dhcp.yiaddr == ipv4_address{});
    CHECK(ack.dhcp.ciaddr == configured);
    CHECK(ack.ip.destination == configured);
    CHECK(ack.eth.destination == client_mac);
    // dhclient's list (1 28 2 3 15 6 119 12 44 47 26 121 42) without any lease time.
    CHECK(ack.codes() == std::vector<std::uint8_t>{53, 54, 1, 28, 3, 15, 6, 119, 12, 26, 121});
    CHECK(server.pool().bound_count() == 0);
    CHECK(server.stats().informs == 1);
    REQUIRE(events.size() == 1);
    CHECK(events[0].kind == lease_event_kind::informed);
    CHECK(events[0].address == configured);
}

// --- addressing, identity, limits ----------------------------------------------------------------

TEST_CASE("dhcp server: the broadcast flag makes the reply a broadcast") {
    auto server = make_server();
    const auto discover = derive(captures::dhcpcd_discover, [](msg::repr& r) { r.flags = msg::broadcast_flag; });
    const auto replies = deliver(server, client_frame(discover));
    REQUIRE(replies.size() == 1);
    const auto offer = open(replies[0]);
    CHECK(offer.dhcp.flags == msg::broadcast_flag);
    CHECK(offer.dhcp.yiaddr == first_address);
    CHECK(offer.ip.destination == ipv4_address::broadcast());
    CHECK(offer.eth.destination == mac_address::broadcast());

    const auto request = derive(captures::dhcpcd_request, [](msg::repr& r) { r.flags = msg::broadcast_flag; });
    const auto acks = deliver(server, client_frame(request));
    REQUIRE(acks.size() == 1);
    CHECK(open(acks[0]).ip.destination == ipv4_address::broadcast());
    CHECK(open(acks[0]).eth.destination == mac_address::broadcast());
}

TEST_CASE("dhcp server: a client is its client identifier when it sends one, its MAC otherwise") {
    auto server = make_server();
    const auto offer_to = [&](const bytes& discover) {
        const auto replies = deliver(server, client_frame(discover));
        REQUIRE(replies.size() == 1);
        return open(replies[0]).dhcp.yiaddr;
    };
    // Same MAC, two client identifiers (two OSes on one VM): two clients, two addresses.
    const auto a = offer_to(captures::hex(captures::udhcpc_discover));
    const auto b = offer_to(captures::hex(captures::dhcpcd_discover));
    CHECK(a != b);
    // Same MAC without an identifier (dhclient): a third client.
    const auto c = offer_to(captures::hex(captures::dhclient_discover));
    CHECK(c != a);
    CHECK(c != b);
    // dhcpcd's DUID from another MAC: still dhcpcd's client, the same address.
    const auto moved = derive(captures::dhcpcd_discover, [](msg::repr& r) { r.chaddr[5] = 0x77; });
    CHECK(offer_to(moved) == b);
    // dhclient (no identifier) from another MAC: somebody else.
    const auto other = derive(captures::dhclient_discover, [](msg::repr& r) { r.chaddr[5] = 0x77; });
    const auto d = offer_to(other);
    CHECK(d != a);
    CHECK(d != b);
    CHECK(d != c);
}

TEST_CASE("dhcp server: a reply never exceeds the client's maximum message size, and drops whole options") {
    server_config config = dnsmasq_like_config();
    for (std::uint8_t i = 1; i <= 30; ++i) config.dns_servers.push_back(ipv4_address{192, 168, 64, i}); // 120 bytes
    config.domain_name = std::string(100, 'd') + ".test";                                               // 107 bytes
    config.search_domains = {std::string(60, 'a') + ".test", std::string(60, 'b') + ".test",
                             std::string(60, 'c') + ".test"};                                           // 201 bytes
    config.classless_routes.clear();
    for (std::uint8_t i = 1; i <= 30; ++i) {
        config.classless_routes.push_back({ipv4_prefix{ipv4_address{10, i, 0, 0}, 16}, gateway});       // 210 bytes
    }
    const auto prl = wire::make_bytes(1, 3, 6, 12, 15, 26, 28, 119, 121, 51, 58, 59);

    const auto discover_with = [&](std::optional<std::uint16_t> max_size) {
        msg::repr header;
        header.xid = 0x99;
        header.chaddr = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
        return build(header, [&](msg::option_writer& w) {
            w.message_type(msg::message_type::discover);
            if (max_size) w.max_message_size(*max_size);
            w.client_id(wire::make_bytes(0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56));
            w.host_name("many-options");
            w.parameter_request_list(prl);
        });
    };

    for (const std::optional<std::uint16_t> max_size : {std::optional<std::uint16_t>{576}, std::optional<std::uint16_t>{}}) {
        auto server = make_server(config);
        const auto replies = deliver(server, client_frame(discover_with(max_size)));
        REQUIRE(replies.size() == 1);
        const auto offer = open(replies[0]);
        CHECK(offer.payload.size() <= 576 - 28);
        CHECK(offer.ip.payload_len + 20 <= 576);
        // The essentials are there; what is there is whole and in the client's order.
        const auto codes = offer.codes();
        for (const int must : {53, 54, 1, 3, 6, 51, 58, 59, 61}) {
            CHECK(std::count(codes.begin(), codes.end(), static_cast<std::uint8_t>(must)) == 1);
        }
        CHECK(codes.size() < 2 + prl.size() + 1); // something had to go
        CHECK(offer.option(oc::dns_servers)->size() == 30 * 4);
        if (const auto routes = offer.option(oc::classless_static_routes)) CHECK(routes->size() == 210);
        if (const auto search = offer.option(oc::domain_search)) CHECK(search->size() == 201);
        if (const auto name = offer.option(oc::domain_name)) CHECK(name->size() == 105);
        std::vector<std::uint8_t> requested_in_reply;
        for (auto code : codes) {
            if (std::find(prl.begin(), prl.end(), std::byte{code}) != prl.end()) requested_in_reply.push_back(code);
        }
        CHECK(std::is_sorted(requested_in_reply.begin(), requested_in_reply.end(), [&](std::uint8_t x, std::uint8_t y) {
            return std::find(prl.begin(), prl.end(), std::byte{x}) < std::find(prl.begin(), prl.end(), std::byte{y});
        }));
    }

    // Given room, the same client gets everything.
    auto server = make_server(config);
    const auto replies = deliver(server, client_frame(discover_with(1500)));
    REQUIRE(replies.size() == 1);
    const auto offer = open(replies[0]);
    CHECK(offer.codes() == std::vector<std::uint8_t>{53, 54, 1, 3, 6, 12, 15, 26, 28, 119, 121, 51, 58, 59, 61});
    CHECK(offer.payload.size() > 576 - 28);
    CHECK(offer.payload.size() <= 1500 - 28);
}

TEST_CASE("dhcp server: a reservation gives the client its fixed address") {
    auto pc = pool_config();
    const ipv4_address fixed{192, 168, 64, 140};
    pc.reservations.push_back(reservation{client_mac, {}, fixed});
    auto server = make_server(dnsmasq_like_config(), pc);

    auto replies = deliver(server, client_frame(captures::hex(captures::dhclient_discover)));
    REQUIRE(replies.size() == 1);
    CHECK(open(replies[0]).dhcp.yiaddr == fixed);
    const auto request = derive(captures::dhclient_request, [&](msg::repr& r) { r.requested_ip = fixed; });
    replies = deliver(server, client_frame(request));
    REQUIRE(replies.size() == 1);
    CHECK(open(replies[0]).dhcp.message_type == msg::message_type::ack);
    CHECK(open(replies[0]).dhcp.yiaddr == fixed);

    // The captured REQUEST asks for .107: not this client's address.
    auto fresh = make_server(dnsmasq_like_config(), pc);
    replies = deliver(fresh, client_frame(captures::hex(captures::dhclient_request)));
    REQUIRE(replies.size() == 1);
    CHECK(open(replies[0]).dhcp.message_type == msg::message_type::nak);
    CHECK(open(replies[0]).option(oc::message) == text("client has another address reserved"));

    // Nobody else gets it.
    const auto other = derive(captures::dhclient_request, [&](msg::repr& r) {
        r.chaddr[5] = 0x99;
        r.requested_ip = fixed;
    });
    replies = deliver(fresh, client_frame(other));
    REQUIRE(replies.size() == 1);
    CHECK(open(replies[0]).option(oc::message) == text("requested address is reserved for another client"));
}

TEST_CASE("dhcp server: the host name a guest sends is recorded, and kept by a renewal without one") {
    auto server = make_server();
    REQUIRE(deliver(server, client_frame(captures::hex(captures::udhcpc_discover))).size() == 1);
    REQUIRE(deliver(server, client_frame(captures::hex(captures::udhcpc_request))).size() == 1);
    CHECK(server.pool().find(first_address)->hostname == "guest-udhcpc");
    std::string why;
    CHECK(server.pool().store().load(why)->at(0).hostname == "guest-udhcpc"); // what the store keeps

    const auto quiet = derive(captures::udhcpc_request, [](msg::repr& r) {
        r.server_id.reset();
        r.requested_ip.reset();
        r.host_name = {};
        r.ciaddr = first_address;
    });
    const auto replies = deliver(server, client_frame(quiet, first_address, gateway, gateway_mac));
    REQUIRE(replies.size() == 1);
    CHECK(server.pool().find(first_address)->hostname == "guest-udhcpc");

    const auto renamed = derive(captures::udhcpc_request, [](msg::repr& r) {
        r.server_id.reset();
        r.requested_ip.reset();
        r.host_name = "renamed";
        r.ciaddr = first_address;
    });
    REQUIRE(deliver(server, client_frame(renamed, first_address, gateway, gateway_mac)).size() == 1);
    CHECK(server.pool().find(first_address)->hostname == "renamed");
}

TEST_CASE("dhcp server: an exhausted pool leaves a DISCOVER unanswered") {
    auto pc = pool_config();
    pc.last = pc.first; // one address
    auto server = make_server(dnsmasq_like_config(), pc);
    REQUIRE(deliver(server, client_frame(captures::hex(captures::udhcpc_discover))).size() == 1);
    CHECK(deliver(server, client_frame(captures::hex(captures::dhclient_discover))).empty());
    CHECK(server.stats().pool_exhausted == 1);
    CHECK(server.stats().discovers == 2);
    CHECK(server.stats().offers == 1);
}

// --- what is not ours, and what is broken --------------------------------------------------------

TEST_CASE("dhcp server: frames that are not DHCP to this server are left to the caller") {
    auto server = make_server();
    collector out;
    const auto payload = captures::hex(captures::udhcpc_discover);
    // To another host, to another subnet's broadcast, at L2 to another MAC.
    CHECK_FALSE(server.handle(cspan(client_frame(payload, {}, ipv4_address{192, 168, 64, 7})), std::ref(out)));
    CHECK_FALSE(server.handle(cspan(client_frame(payload, {}, ipv4_address{10, 0, 0, 255})), std::ref(out)));
    CHECK_FALSE(server.handle(cspan(client_frame(payload, {}, ipv4_address::broadcast(), other_mac)), std::ref(out)));
    // To the gateway, UDP port 53 (DNS).
    auto dns = client_frame(payload, first_address, gateway, gateway_mac);
    dns[wire::ethernet::header_len + wire::ipv4::header_len + 3] = std::byte{53};
    CHECK_FALSE(server.handle(cspan(dns), std::ref(out)));
    // Not IPv4; VLAN-tagged.
    auto arp = client_frame(payload);
    arp[12] = std::byte{0x08};
    arp[13] = std::byte{0x06};
    CHECK_FALSE(server.handle(cspan(arp), std::ref(out)));
    auto tagged = client_frame(payload);
    tagged[12] = std::byte{0x81};
    tagged[13] = std::byte{0x00};
    CHECK_FALSE(server.handle(cspan(tagged), std::ref(out)));
    CHECK(out.frames.empty());
    // Addressed to the subnet broadcast or the gateway itself: ours.
    CHECK(server.handle(cspan(client_frame(payload, {}, subnet_broadcast)), std::ref(out)));
    CHECK(server.handle(cspan(client_frame(payload, {}, gateway, gateway_mac)), std::ref(out)));
    CHECK(out.frames.size() == 2);
}

TEST_CASE("dhcp server: malformed and unsupported messages are counted and dropped") {
    const auto request = captures::hex(captures::dhcpcd_request);
    constexpr std::size_t udp_at = wire::ethernet::header_len + wire::ipv4::header_len;
    constexpr std::size_t dhcp_at = udp_at + wire::udp::header_len;
    struct bad_case {
        const char* name;
        std::function<bytes()> frame;
        bool unsupported;
    };
    const std::vector<bad_case> cases{
        {"bad IPv4 header checksum", [&] { auto f = client_frame(request); f[wire::ethernet::header_len + 10] ^= std::byte{1}; return f; }, false},
        {"bad UDP checksum", [&] { auto f = client_frame(request); f[dhcp_at + 100] ^= std::byte{1}; return f; }, false},
        {"UDP length past the datagram", [&] { auto f = client_frame(request); f[udp_at + 4] = std::byte{0x7f}; f[udp_at + 6] = f[udp_at + 7] = std::byte{0}; return f; }, false},
        {"BOOTREPLY to port 67", [&] { return client_frame(derive(captures::dhcpcd_request, [](msg::repr& r) { r.op = msg::boot_reply; })); }, false},
        {"no message type", [&] { return client_frame(derive(captures::dhcpcd_request, [](msg::repr& r) { r.message_type.reset(); })); }, false},
        {"bad magic cookie", [&] { auto p = request; p[msg::field::cookie] = std::byte{0}; return client_frame(p); }, false},
        {"option running past the end", [&] { auto p = request; p[p.size() - 1] = std::byte{0x0c}; p.push_back(std::byte{0x10}); return client_frame(p); }, false},
        {"broadcast chaddr", [&] { return client_frame(derive(captures::dhcpcd_request, [](msg::repr& r) { r.chaddr = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}; })); }, false},
        {"REQUEST naming no address", [&] { return client_frame(derive(captures::dhcpcd_request, [](msg::repr& r) { r.requested_ip.reset(); r.server_id.reset(); })); }, false},
        {"relayed (giaddr set)", [&] { return client_frame(derive(captures::dhcpcd_request, [](msg::repr& r) { r.giaddr = ipv4_address{10, 0, 0, 1}; })); }, true},
        {"hardware not Ethernet", [&] { return client_frame(derive(captures::dhcpcd_request, [](msg::repr& r) { r.htype = 6; })); }, true},
        {"hardware address not 6 bytes", [&] { return client_frame(derive(captures::dhcpcd_request, [](msg::repr& r) { r.hlen = 8; })); }, true},
        {"an OFFER from a client", [&] { return client_frame(derive(captures::dhcpcd_request, [](msg::repr& r) { r.message_type = msg::message_type::offer; })); }, true},
        {"message type 10 (leasequery)", [&] { auto p = request; p[msg::options_offset + 8] = std::byte{10}; return client_frame(p); }, true},
        {"IPv4 fragment", [&] {
             auto f = client_frame(request);
             auto ip = wire::mutable_bytes{f}.subspan(wire::ethernet::header_len);
             wire::ipv4::packet<wire::mutable_bytes> view{ip};
             view.set_more_fragments(true);
             view.fill_checksum();
             return f;
         }, true},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        auto server = make_server();
        const auto frame = c.frame();
        collector out;
        CHECK(server.handle(cspan(frame), std::ref(out)));
        CHECK(out.frames.empty());
        CHECK(server.stats().dropped_malformed == (c.unsupported ? 0u : 1u));
        CHECK(server.stats().dropped_unsupported == (c.unsupported ? 1u : 0u));
        CHECK(server.pool().bound_count() == 0);
    }
}

TEST_CASE("dhcp server: every truncation of a real frame is dropped without a reply") {
    for (const auto& c : capture_cases()) {
        for (const auto golden : {c.discover, c.request}) {
            auto server = make_server();
            const auto frame = client_frame(captures::hex(golden));
            constexpr std::size_t port_seen = wire::ethernet::header_len + wire::ipv4::header_len + 4;
            collector out;
            std::uint64_t claimed = 0;
            for (std::size_t n = 0; n < frame.size(); ++n) {
                // Copied into a buffer of its own size, so ASan sees any read past the cut.
                const bytes cut(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(n));
                const bool ours = server.handle(cspan(cut), std::ref(out));
                CHECK(ours == (n >= port_seen));
                claimed += ours ? 1 : 0;
            }
            CHECK(out.frames.empty());
            CHECK(server.stats().dropped_malformed == claimed);
            CHECK(server.stats().discovers + server.stats().requests == 0);
            CHECK(server.handle(cspan(frame), std::ref(out))); // and the whole frame still works
            CHECK(out.frames.size() == 1);
        }
    }
}

// --- configuration ----------------------------------------------------------------------------------

TEST_CASE("dhcp server: create refuses a server address outside the subnet or inside the range") {
    const auto attempt = [](ipv4_address a, std::string& why, lease_pool_config pc = pool_config()) {
        auto pool = test_server::pool_type::create(std::move(pc), memory_lease_store{}, manual_clock{});
        REQUIRE(pool);
        auto config = dnsmasq_like_config();
        config.server_address = a;
        return test_server::create(std::move(config), std::move(*pool), &why);
    };
    std::string why;
    auto s = attempt(ipv4_address{10, 0, 0, 1}, why);
    CHECK(s.error() == lease_errc::bad_config);
    CHECK(why == "DHCP server address 10.0.0.1 is outside the subnet 192.168.64.0/24");
    s = attempt(ipv4_address{192, 168, 64, 120}, why);
    CHECK(s.error() == lease_errc::bad_config);
    CHECK(why == "DHCP server address 192.168.64.120 lies inside the DHCP range 192.168.64.107-192.168.64.150 and is "
                 "not excluded");
    // Inside the range but excluded from the pool: no guest can be given it.
    auto pc = pool_config();
    pc.excluded.push_back(ipv4_address{192, 168, 64, 120});
    CHECK(attempt(ipv4_address{192, 168, 64, 120}, why, pc));
    s = attempt(subnet_broadcast, why);
    CHECK(s.error() == lease_errc::bad_config);
    s = attempt(ipv4_address{192, 168, 64, 0}, why);
    CHECK(s.error() == lease_errc::bad_config);
    CHECK(attempt(ipv4_address{192, 168, 64, 254}, why));
}

TEST_CASE("dhcp server: create refuses options it cannot encode, and fills in router and DNS") {
    const auto attempt = [](server_config config, std::string& why) {
        auto pool = test_server::pool_type::create(pool_config(), memory_lease_store{}, manual_clock{});
        REQUIRE(pool);
        return test_server::create(std::move(config), std::move(*pool), &why);
    };
    std::string why;
    auto c = dnsmasq_like_config();
    c.search_domains = {"bad..name"};
    CHECK(attempt(c, why).error() == lease_errc::bad_config);
    CHECK(why.find("option 119") != std::string::npos);
    c = dnsmasq_like_config();
    c.interface_mtu = 500;
    CHECK(attempt(c, why).error() == lease_errc::bad_config);
    c = dnsmasq_like_config();
    c.server_mac = mac_address::broadcast();
    CHECK(attempt(c, why).error() == lease_errc::bad_config);
    c = dnsmasq_like_config();
    c.dns_servers.assign(64, gateway); // 256 bytes: more than one option holds
    CHECK(attempt(c, why).error() == lease_errc::bad_config);

    const auto ok = attempt(dnsmasq_like_config(), why);
    REQUIRE(ok);
    CHECK(ok->config().routers == std::vector<ipv4_address>{gateway});
    CHECK(ok->config().dns_servers == std::vector<ipv4_address>{gateway});
}

TEST_CASE("dhcp server: the interface MTU caps the reply size") {
    auto config = dnsmasq_like_config();
    config.interface_mtu = 576;
    for (std::uint8_t i = 1; i <= 60; ++i) config.dns_servers.push_back(ipv4_address{192, 168, 64, i});
    auto server = make_server(config);
    // dhcpcd says it takes 1472 bytes; the link takes 576.
    const auto replies = deliver(server, client_frame(captures::hex(captures::dhcpcd_discover)));
    REQUIRE(replies.size() == 1);
    const auto offer = open(replies[0]);
    CHECK(offer.ip.payload_len + 20 <= 576);
    CHECK(offer.option(oc::dns_servers)->size() == 240);
}

// --- persistence --------------------------------------------------------------------------------

TEST_CASE("dhcp server: with the file store, a restarted server gives the same client the same address") {
    using file_server = basic_server<file_lease_store, manual_clock>;
    temp_dir dir;
    const auto file = dir.path / "leases";
    const auto start = [&] {
        std::string why;
        auto pool = file_server::pool_type::create(pool_config(), file_lease_store{file}, manual_clock{}, &why);
        INFO(why);
        REQUIRE(pool);
        auto server = file_server::create(dnsmasq_like_config(), std::move(*pool), &why);
        REQUIRE(server);
        return std::move(*server);
    };
    const auto handle = [](file_server& server, const bytes& frame) {
        collector out;
        CHECK(server.handle(cspan(frame), std::ref(out)));
        REQUIRE(out.frames.size() == 1);
        return open(out.frames[0]);
    };
    const ipv4_address second{192, 168, 64, 108};
    {
        auto server = start();
        // Another VM takes the first address; dhclient's client then gets the second.
        const auto other = derive(captures::udhcpc_discover, [](msg::repr& r) { r.chaddr[5] = 0x99; r.client_id = {}; });
        const auto other_offer = handle(server, client_frame(other));
        const auto other_request = derive(captures::udhcpc_request, [&](msg::repr& r) {
            r.chaddr[5] = 0x99;
            r.client_id = {};
            r.requested_ip = other_offer.dhcp.yiaddr;
        });
        CHECK(handle(server, client_frame(other_request)).dhcp.message_type == msg::message_type::ack);
        const auto offer = handle(server, client_frame(captures::hex(captures::dhclient_discover)));
        REQUIRE(offer.dhcp.yiaddr == second);
        const auto request = derive(captures::dhclient_request, [&](msg::repr& r) { r.requested_ip = second; });
        CHECK(handle(server, client_frame(request)).dhcp.message_type == msg::message_type::ack);
    }
    {
        auto server = start(); // a new pool from the same file
        CHECK(server.pool().bound_count() == 2);
        const auto offer = handle(server, client_frame(captures::hex(captures::dhclient_discover)));
        CHECK(offer.dhcp.yiaddr == second);
        // INIT-REBOOT after the host rebooted: confirmed.
        const auto reboot = derive(captures::dhclient_request, [&](msg::repr& r) {
            r.server_id.reset();
            r.requested_ip = second;
        });
        const auto ack = handle(server, client_frame(reboot));
        CHECK(ack.dhcp.message_type == msg::message_type::ack);
        CHECK(ack.dhcp.yiaddr == second);
        CHECK(server.pool().find(second)->hostname == "vm");
    }
}

TEST_CASE("dhcp server: handle without a time reads the pool's clock") {
    auto server = make_server();
    server.pool().clock().t = sys_seconds{seconds{2'000'000'000}};
    collector out;
    CHECK(server.handle(cspan(client_frame(captures::hex(captures::udhcpc_discover))), std::ref(out)));
    CHECK(server.handle(cspan(client_frame(captures::hex(captures::udhcpc_request))), std::ref(out)));
    REQUIRE(out.frames.size() == 2);
    CHECK(server.pool().find(first_address)->expiry == sys_seconds{seconds{2'000'000'000 + lease_seconds}});
}
