#include <ankanet/l2/mac_translator.hpp>

#include <catch2/catch.hpp>

#include "../support/dhcp_captures.hpp"

#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/dhcp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/udp.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

using namespace ankanet;
using ankanet::l2::mac_translator;
using ankanet::l2::translate_reason;
using ankanet::l2::translate_verdict;
namespace wire = ankanet::wire;
namespace dhcp = ankanet::wire::dhcp;

namespace {

using bytes = std::vector<std::byte>;

// Golden DHCP payloads: udhcpc and dhclient against dnsmasq 2.90 on a client MAC of
// 52:54:00:12:34:56; dnsmasq offered and acknowledged 192.168.64.107 to both.
using namespace ankanet::test::dhcp_captures;

// --- the cast ----------------------------------------------------------------------------------

const mac_address vm_a = *mac_address::parse("52:54:00:12:34:56");    // the captured client's MAC
const mac_address vm_b = *mac_address::parse("52:54:00:ab:cd:ef");
const mac_address outside = *mac_address::parse("3c:22:fb:01:02:03"); // what the link below imposes
const mac_address gateway_mac = *mac_address::parse("52:54:00:00:00:01");
const ipv4_address gateway_ip{192, 168, 64, 1};
const ipv4_address ip_a{192, 168, 64, 107}; // the address dnsmasq handed out
const ipv4_address ip_b{192, 168, 64, 108};

wire::mutable_bytes span(bytes& b) { return {b.data(), b.size()}; }
wire::const_bytes cspan(const bytes& b) { return {b.data(), b.size()}; }

/// Ethernet header plus payload, padded to the 60-byte minimum.
bytes ethernet_frame(mac_address destination, mac_address source, std::uint16_t type, wire::const_bytes payload) {
    bytes frame(wire::ethernet::header_len + payload.size());
    wire::ethernet::repr{source, destination, type, std::nullopt}.emit(span(frame));
    std::copy(payload.begin(), payload.end(), frame.begin() + wire::ethernet::header_len);
    if (frame.size() < wire::ethernet::min_frame_len) frame.resize(wire::ethernet::min_frame_len);
    return frame;
}

/// A UDP datagram in IPv4 in Ethernet, checksums filled.
bytes udp_frame(mac_address eth_destination, mac_address eth_source, ipv4_address source, ipv4_address destination,
                std::uint16_t source_port, std::uint16_t destination_port, wire::const_bytes payload) {
    bytes ip(wire::ipv4::header_len + wire::udp::header_len + payload.size());
    auto udp_part = span(ip).subspan(wire::ipv4::header_len);
    std::copy(payload.begin(), payload.end(), udp_part.begin() + wire::udp::header_len);
    REQUIRE_FALSE(wire::udp::repr{source_port, destination_port, payload.size()}.emit(udp_part, source, destination));
    wire::ipv4::repr header;
    header.source = source;
    header.destination = destination;
    header.protocol = wire::ipv4::protocol::udp;
    header.payload_len = wire::udp::header_len + payload.size();
    header.identification = 0x1234;
    REQUIRE_FALSE(header.emit(span(ip)));
    return ethernet_frame(eth_destination, eth_source, wire::ethernet::ethertype::ipv4, cspan(ip));
}

bytes arp_frame(mac_address eth_destination, mac_address eth_source, wire::arp::operation op, mac_address sender_mac,
                ipv4_address sender_ip, mac_address target_mac, ipv4_address target_ip) {
    bytes arp(wire::arp::packet_len);
    REQUIRE_FALSE(wire::arp::repr{op, sender_mac, sender_ip, target_mac, target_ip}.emit(span(arp)));
    return ethernet_frame(eth_destination, eth_source, wire::ethernet::ethertype::arp, cspan(arp));
}

/// A DHCP payload with its chaddr and broadcast flag set as given.
bytes dhcp_payload(std::string_view golden, mac_address chaddr, bool broadcast,
                   std::optional<ipv4_address> yiaddr = std::nullopt) {
    bytes payload = hex(golden);
    dhcp::packet<wire::mutable_bytes> message{span(payload)};
    REQUIRE_FALSE(message.check_len());
    message.set_client_mac(chaddr);
    message.set_broadcast(broadcast);
    if (yiaddr) message.set_yiaddr(*yiaddr);
    return payload;
}

/// The client's message as the VM sends it.
bytes client_frame(std::string_view golden, mac_address vm) {
    const bytes payload = dhcp_payload(golden, vm, false);
    return udp_frame(mac_address::broadcast(), vm, ipv4_address::any(), ipv4_address::broadcast(), dhcp::client_port,
                     dhcp::server_port, cspan(payload));
}

/// The server's reply to a client message with this chaddr and flag: broadcast when the flag
/// asks for it, unicast to chaddr and yiaddr otherwise (RFC 2131 §4.1).
bytes server_reply(std::string_view golden, mac_address chaddr, bool broadcast,
                   std::optional<ipv4_address> yiaddr = std::nullopt) {
    const bytes payload = dhcp_payload(golden, chaddr, broadcast, yiaddr);
    dhcp::packet<wire::const_bytes> message{cspan(payload)};
    return broadcast ? udp_frame(mac_address::broadcast(), gateway_mac, gateway_ip, ipv4_address::broadcast(),
                                 dhcp::server_port, dhcp::client_port, cspan(payload))
                     : udp_frame(chaddr, gateway_mac, gateway_ip, message.yiaddr(), dhcp::server_port,
                                 dhcp::client_port, cspan(payload));
}

/// Every layer of the frame parses, checksums included.
void require_valid(const bytes& frame) {
    const auto eth = wire::ethernet::repr::parse(cspan(frame));
    REQUIRE(eth);
    if (eth->ethertype == wire::ethernet::ethertype::arp) {
        REQUIRE(wire::arp::repr::parse(cspan(frame).subspan(wire::ethernet::header_len)));
        return;
    }
    REQUIRE(eth->ethertype == wire::ethernet::ethertype::ipv4);
    const wire::ipv4::packet<wire::const_bytes> ip{cspan(frame).subspan(wire::ethernet::header_len)};
    const auto ip_header = wire::ipv4::repr::parse(ip);
    REQUIRE(ip_header);
    const auto udp_header = wire::udp::repr::parse(ip.payload(), ip_header->source, ip_header->destination);
    REQUIRE(udp_header);
    const wire::udp::packet<wire::const_bytes> udp{ip.payload()};
    if (udp_header->source_port == dhcp::server_port || udp_header->source_port == dhcp::client_port) {
        REQUIRE(dhcp::packet<wire::const_bytes>::checked(udp.payload()));
    }
}

dhcp::packet<wire::const_bytes> dhcp_of(const bytes& frame) {
    const wire::ipv4::packet<wire::const_bytes> ip{cspan(frame).subspan(wire::ethernet::header_len)};
    const wire::udp::packet<wire::const_bytes> udp{ip.payload()};
    return dhcp::packet<wire::const_bytes>{udp.payload()};
}

mac_address eth_source(const bytes& frame) { return wire::ethernet::repr::parse(cspan(frame))->source; }
mac_address eth_destination(const bytes& frame) { return wire::ethernet::repr::parse(cspan(frame))->destination; }

/// One client exchange through the translator: the VM's message goes out, the server answers what
/// it saw, and the answer comes back in. The reply the VM receives must be byte for byte the one
/// the server would have sent it without a translator.
void exchange(mac_translator& xlate, mac_address vm, std::string_view client_golden, std::string_view reply_golden,
              std::optional<ipv4_address> yiaddr = std::nullopt) {
    bytes out = client_frame(client_golden, vm);
    const auto out_result = xlate.translate_outbound(span(out));
    REQUIRE(out_result.verdict == translate_verdict::forward);
    require_valid(out);
    CHECK(eth_source(out) == outside);
    const auto seen = dhcp_of(out);
    CHECK(seen.client_mac() == outside);
    CHECK(seen.broadcast()); // set so the reply comes by broadcast, not to a MAC nobody outside knows
    // Incremental checksum updates equal a full rebuild of the frame the server sees.
    const bytes rebuilt = udp_frame(mac_address::broadcast(), outside, ipv4_address::any(), ipv4_address::broadcast(),
                                    dhcp::client_port, dhcp::server_port, cspan(dhcp_payload(client_golden, outside, true)));
    CHECK(out == rebuilt);

    bytes in = server_reply(reply_golden, outside, seen.broadcast(), yiaddr);
    const bytes expected = server_reply(reply_golden, vm, false, yiaddr);
    const auto in_result = xlate.translate_inbound(span(in));
    REQUIRE(in_result.verdict == translate_verdict::deliver);
    REQUIRE(in_result.vm == vm);
    require_valid(in);
    CHECK(in == expected);
}

} // namespace

TEST_CASE("mac_translator: DHCP round trips for udhcpc and dhclient golden exchanges") {
    for (const bool isc : {false, true}) {
        INFO((isc ? "dhclient" : "udhcpc"));
        mac_translator xlate{outside};
        exchange(xlate, vm_a, isc ? dhclient_discover : udhcpc_discover, isc ? dhclient_offer : udhcpc_offer);
        CHECK_FALSE(xlate.owner_of(ip_a) == vm_a); // an OFFER binds nothing
        exchange(xlate, vm_a, isc ? dhclient_request : udhcpc_request, isc ? dhclient_ack : udhcpc_ack);
        CHECK(xlate.owner_of(ip_a) == vm_a); // learned from the REQUEST's option 50 and the ACK's yiaddr
        CHECK(xlate.counters().dhcp_rewritten == 4);
        CHECK(xlate.counters().inbound_delivered == 2);
        CHECK(xlate.counters().outbound_forwarded == 2);
    }
}

TEST_CASE("mac_translator: the broadcast flag is set on DISCOVER and REQUEST and restored in replies") {
    mac_translator xlate{outside};
    for (const auto golden : {udhcpc_discover, udhcpc_request, dhclient_discover, dhclient_request}) {
        bytes out = client_frame(golden, vm_a);
        REQUIRE_FALSE(dhcp_of(out).broadcast());
        REQUIRE(xlate.translate_outbound(span(out)).verdict == translate_verdict::forward);
        CHECK(dhcp_of(out).broadcast());
        require_valid(out);
    }
    SECTION("a client that asked for a broadcast itself gets its broadcast reply unchanged but for chaddr") {
        bytes out = client_frame(udhcpc_discover, vm_a);
        wire::ipv4::packet<wire::mutable_bytes> ip{span(out).subspan(wire::ethernet::header_len)};
        wire::udp::packet<wire::mutable_bytes> udp{ip.payload()};
        dhcp::packet<wire::mutable_bytes>{udp.payload()}.set_broadcast(true);
        udp.fill_checksum(ip.source(), ip.destination());
        REQUIRE(xlate.translate_outbound(span(out)).verdict == translate_verdict::forward);
        bytes in = server_reply(udhcpc_offer, outside, true);
        const auto result = xlate.translate_inbound(span(in));
        CHECK(result.verdict == translate_verdict::deliver);
        CHECK(in == server_reply(udhcpc_offer, vm_a, true));
    }
    SECTION("a server that ignores the flag and unicasts to the outside MAC still reaches the VM") {
        bytes out = client_frame(udhcpc_discover, vm_a);
        REQUIRE(xlate.translate_outbound(span(out)).verdict == translate_verdict::forward);
        bytes in = server_reply(udhcpc_offer, outside, false);
        const auto result = xlate.translate_inbound(span(in));
        REQUIRE(result.verdict == translate_verdict::deliver);
        CHECK(result.vm == vm_a);
        CHECK(in == server_reply(udhcpc_offer, vm_a, false));
    }
}

TEST_CASE("mac_translator: a zero UDP checksum stays zero") {
    mac_translator xlate{outside};
    bytes out = client_frame(dhclient_discover, vm_a);
    wire::udp::packet<wire::mutable_bytes> udp{span(out).subspan(wire::ethernet::header_len + wire::ipv4::header_len)};
    udp.set_checksum(0);
    REQUIRE(xlate.translate_outbound(span(out)).verdict == translate_verdict::forward);
    CHECK(udp.checksum() == 0);
    CHECK(dhcp_of(out).client_mac() == outside);
    CHECK(dhcp_of(out).broadcast());
    require_valid(out);
}

TEST_CASE("mac_translator: ARP round trip") {
    mac_translator xlate{outside};
    // The VM asks for the gateway; the link below sees only the outside MAC.
    bytes request = arp_frame(mac_address::broadcast(), vm_a, wire::arp::operation::request, vm_a, ip_a, mac_address{},
                              gateway_ip);
    REQUIRE(xlate.translate_outbound(span(request)).verdict == translate_verdict::forward);
    CHECK(request == arp_frame(mac_address::broadcast(), outside, wire::arp::operation::request, outside, ip_a,
                               mac_address{}, gateway_ip));
    require_valid(request);
    CHECK(xlate.owner_of(ip_a) == vm_a);

    // The gateway answers the MAC it saw; the VM gets the answer it would have had.
    bytes reply = arp_frame(outside, gateway_mac, wire::arp::operation::reply, gateway_mac, gateway_ip, outside, ip_a);
    const auto result = xlate.translate_inbound(span(reply));
    REQUIRE(result.verdict == translate_verdict::deliver);
    CHECK(result.vm == vm_a);
    CHECK(reply == arp_frame(vm_a, gateway_mac, wire::arp::operation::reply, gateway_mac, gateway_ip, vm_a, ip_a));
    CHECK(xlate.counters().arp_rewritten == 2);

    // The gateway asks who has the VM's address: a broadcast for everyone; the VM's answer goes out
    // with the outside MAC, its target (the gateway) untouched.
    bytes who_has = arp_frame(mac_address::broadcast(), gateway_mac, wire::arp::operation::request, gateway_mac,
                              gateway_ip, mac_address{}, ip_a);
    const bytes who_has_copy = who_has;
    CHECK(xlate.translate_inbound(span(who_has)).verdict == translate_verdict::flood);
    CHECK(who_has == who_has_copy);
    bytes answer = arp_frame(gateway_mac, vm_a, wire::arp::operation::reply, vm_a, ip_a, gateway_mac, gateway_ip);
    REQUIRE(xlate.translate_outbound(span(answer)).verdict == translate_verdict::forward);
    CHECK(answer == arp_frame(gateway_mac, outside, wire::arp::operation::reply, outside, ip_a, gateway_mac, gateway_ip));

    // A gratuitous ARP naming the VM as target too.
    bytes announce = arp_frame(mac_address::broadcast(), vm_a, wire::arp::operation::request, vm_a, ip_a, vm_a, ip_a);
    REQUIRE(xlate.translate_outbound(span(announce)).verdict == translate_verdict::forward);
    CHECK(announce == arp_frame(mac_address::broadcast(), outside, wire::arp::operation::request, outside, ip_a,
                                outside, ip_a));
}

TEST_CASE("mac_translator: IP round trip") {
    mac_translator xlate{outside};
    const auto payload = wire::as_bytes("ping over udp");
    bytes arp = arp_frame(mac_address::broadcast(), vm_a, wire::arp::operation::request, vm_a, ip_a, mac_address{},
                          gateway_ip);
    REQUIRE(xlate.translate_outbound(span(arp)).verdict == translate_verdict::forward);

    bytes out = udp_frame(gateway_mac, vm_a, ip_a, gateway_ip, 40000, 7, payload);
    REQUIRE(xlate.translate_outbound(span(out)).verdict == translate_verdict::forward);
    CHECK(out == udp_frame(gateway_mac, outside, ip_a, gateway_ip, 40000, 7, payload)); // only the source MAC
    require_valid(out);

    bytes in = udp_frame(outside, gateway_mac, gateway_ip, ip_a, 7, 40000, payload);
    const auto result = xlate.translate_inbound(span(in));
    REQUIRE(result.verdict == translate_verdict::deliver);
    CHECK(result.vm == vm_a);
    CHECK(in == udp_frame(vm_a, gateway_mac, gateway_ip, ip_a, 7, 40000, payload));
    require_valid(in);
}

TEST_CASE("mac_translator: two VMs behind one outside MAC each get their own replies") {
    mac_translator xlate{outside};
    REQUIRE(xlate.add_vm(vm_a) == l2::add_vm_status::added);
    REQUIRE(xlate.add_vm(vm_b) == l2::add_vm_status::added);
    CHECK(xlate.add_vm(vm_b) == l2::add_vm_status::already_known);
    CHECK(xlate.add_vm(outside) == l2::add_vm_status::invalid_mac);
    CHECK(xlate.add_vm(mac_address::broadcast()) == l2::add_vm_status::invalid_mac);

    // Both DISCOVER before either is answered; the offers come back in the other order.
    bytes discover_a = client_frame(udhcpc_discover, vm_a);
    bytes discover_b = client_frame(dhclient_discover, vm_b);
    REQUIRE(xlate.translate_outbound(span(discover_a)).verdict == translate_verdict::forward);
    REQUIRE(xlate.translate_outbound(span(discover_b)).verdict == translate_verdict::forward);
    CHECK(dhcp_of(discover_a).client_mac() == outside);
    CHECK(dhcp_of(discover_b).client_mac() == outside);

    bytes offer_b = server_reply(dhclient_offer, outside, true, ip_b);
    bytes offer_a = server_reply(udhcpc_offer, outside, true, ip_a);
    auto result = xlate.translate_inbound(span(offer_b));
    REQUIRE(result.verdict == translate_verdict::deliver);
    CHECK(result.vm == vm_b);
    CHECK(offer_b == server_reply(dhclient_offer, vm_b, false, ip_b));
    result = xlate.translate_inbound(span(offer_a));
    REQUIRE(result.verdict == translate_verdict::deliver);
    CHECK(result.vm == vm_a);
    CHECK(offer_a == server_reply(udhcpc_offer, vm_a, false, ip_a));

    exchange(xlate, vm_b, dhclient_request, dhclient_ack, ip_b);
    exchange(xlate, vm_a, udhcpc_request, udhcpc_ack, ip_a);
    CHECK(xlate.owner_of(ip_a) == vm_a);
    CHECK(xlate.owner_of(ip_b) == vm_b);

    const auto payload = wire::as_bytes("hello");
    for (const auto& [ip, vm] : {std::pair{ip_a, vm_a}, std::pair{ip_b, vm_b}}) {
        bytes in = udp_frame(outside, gateway_mac, gateway_ip, ip, 53, 5000, payload);
        result = xlate.translate_inbound(span(in));
        REQUIRE(result.verdict == translate_verdict::deliver);
        CHECK(result.vm == vm);
        CHECK(eth_destination(in) == vm);
        require_valid(in);

        bytes arp = arp_frame(outside, gateway_mac, wire::arp::operation::reply, gateway_mac, gateway_ip, outside, ip);
        result = xlate.translate_inbound(span(arp));
        REQUIRE(result.verdict == translate_verdict::deliver);
        CHECK(result.vm == vm);
        CHECK(arp == arp_frame(vm, gateway_mac, wire::arp::operation::reply, gateway_mac, gateway_ip, vm, ip));
    }

    SECTION("a VM claiming another's address by ARP or DHCP does not draw its traffic, and the server's ACK moves it") {
        // (The golden REQUESTs above both ask for .107 in option 50: vm_a's was refused already.)
        const auto refused = xlate.counters().claims_refused;
        bytes claim = arp_frame(mac_address::broadcast(), vm_b, wire::arp::operation::request, vm_b, ip_a, {}, gateway_ip);
        REQUIRE(xlate.translate_outbound(span(claim)).verdict == translate_verdict::forward); // it still goes out
        CHECK(xlate.owner_of(ip_a) == vm_a);
        CHECK(xlate.counters().claims_refused == refused + 1);
        bytes in = udp_frame(outside, gateway_mac, gateway_ip, ip_a, 53, 5000, payload);
        CHECK(xlate.translate_inbound(span(in)).vm == vm_a);
        // The server itself gives ip_a to vm_b (vm_a's lease is over): then it is vm_b's.
        exchange(xlate, vm_b, dhclient_request, dhclient_ack, ip_a);
        CHECK(xlate.owner_of(ip_a) == vm_b);
    }

    SECTION("removing a VM forgets its addresses") {
        CHECK(xlate.remove_vm(vm_b));
        CHECK_FALSE(xlate.remove_vm(vm_b));
        CHECK_FALSE(xlate.owner_of(ip_b));
        CHECK(xlate.owner_of(ip_a) == vm_a);
        CHECK(xlate.vm_count() == 1);
    }
}

TEST_CASE("mac_translator: frames nobody owns are dropped and counted") {
    mac_translator xlate{outside};
    const auto payload = wire::as_bytes("x");
    bytes arp = arp_frame(mac_address::broadcast(), vm_a, wire::arp::operation::request, vm_a, ip_a, mac_address{},
                          gateway_ip);
    REQUIRE(xlate.translate_outbound(span(arp)).verdict == translate_verdict::forward);

    SECTION("unknown IP") {
        bytes in = udp_frame(outside, gateway_mac, gateway_ip, ipv4_address{192, 168, 64, 200}, 1, 2, payload);
        const bytes before = in;
        const auto result = xlate.translate_inbound(span(in));
        CHECK(result.verdict == translate_verdict::drop);
        CHECK(result.reason == translate_reason::unknown_ip);
        CHECK_FALSE(result.vm);
        CHECK(in == before);
        bytes arp_in = arp_frame(outside, gateway_mac, wire::arp::operation::reply, gateway_mac, gateway_ip, outside,
                                 ipv4_address{192, 168, 64, 200});
        CHECK(xlate.translate_inbound(span(arp_in)).reason == translate_reason::unknown_ip);
        CHECK(xlate.counters().inbound_dropped_unknown_ip == 2);
    }
    SECTION("unicast to someone else") {
        bytes in = udp_frame(gateway_mac, outside, ip_a, gateway_ip, 1, 2, payload);
        CHECK(xlate.translate_inbound(span(in)).reason == translate_reason::not_for_us);
        CHECK(xlate.counters().inbound_dropped_not_for_us == 1);
    }
    SECTION("not IPv4 or ARP") {
        bytes in = ethernet_frame(outside, gateway_mac, wire::ethernet::ethertype::ipv6, payload);
        CHECK(xlate.translate_inbound(span(in)).reason == translate_reason::unsupported);
        CHECK(xlate.counters().inbound_dropped_unsupported == 1);
    }
    SECTION("a DHCP reply for an unknown transaction is a broadcast like any other") {
        bytes in = server_reply(dhclient_offer, outside, true);
        const bytes before = in;
        CHECK(xlate.translate_inbound(span(in)).verdict == translate_verdict::flood);
        CHECK(in == before);
        CHECK(xlate.counters().inbound_flooded == 1);
    }
}

TEST_CASE("mac_translator: tables are bounded") {
    l2::basic_mac_translator<2, 2, 1> xlate{outside};
    const mac_address vm_c = *mac_address::parse("52:54:00:00:00:0c");
    for (const auto& [vm, ip] : {std::pair{vm_a, ip_a}, std::pair{vm_b, ip_b}}) {
        bytes arp = arp_frame(mac_address::broadcast(), vm, wire::arp::operation::request, vm, ip, mac_address{},
                              gateway_ip);
        REQUIRE(xlate.translate_outbound(span(arp)).verdict == translate_verdict::forward);
    }
    CHECK(xlate.vm_count() == 2);
    bytes third = arp_frame(mac_address::broadcast(), vm_c, wire::arp::operation::request, vm_c,
                            ipv4_address{192, 168, 64, 9}, mac_address{}, gateway_ip);
    const bytes before = third;
    const auto result = xlate.translate_outbound(span(third));
    CHECK(result.verdict == translate_verdict::drop);
    CHECK(result.reason == translate_reason::table_full);
    CHECK(third == before);
    CHECK(xlate.counters().outbound_dropped_table_full == 1);

    // A third address evicts the least recently learned one.
    bytes another = arp_frame(mac_address::broadcast(), vm_a, wire::arp::operation::request, vm_a,
                              ipv4_address{192, 168, 64, 9}, mac_address{}, gateway_ip);
    REQUIRE(xlate.translate_outbound(span(another)).verdict == translate_verdict::forward);
    CHECK_FALSE(xlate.owner_of(ip_a));
    CHECK(xlate.owner_of(ip_b) == vm_b);
    CHECK(xlate.counters().ip_evictions == 1);

    // One transaction slot: the second client's DISCOVER replaces the first's.
    bytes discover_a = client_frame(udhcpc_discover, vm_a);
    bytes discover_b = client_frame(dhclient_discover, vm_b);
    REQUIRE(xlate.translate_outbound(span(discover_a)).verdict == translate_verdict::forward);
    REQUIRE(xlate.translate_outbound(span(discover_b)).verdict == translate_verdict::forward);
    CHECK(xlate.counters().transaction_evictions == 1);
    bytes offer_a = server_reply(udhcpc_offer, outside, true);
    CHECK(xlate.translate_inbound(span(offer_a)).verdict == translate_verdict::flood);
}

TEST_CASE("mac_translator: malformed payloads are passed with only the Ethernet source rewritten") {
    mac_translator xlate{outside};
    bytes out = client_frame(udhcpc_discover, vm_a);
    // A UDP length that claims more than was sent: not parsed, chaddr left alone.
    wire::udp::packet<wire::mutable_bytes> udp{span(out).subspan(wire::ethernet::header_len + wire::ipv4::header_len)};
    udp.set_length(0xfff0);
    REQUIRE(xlate.translate_outbound(span(out)).verdict == translate_verdict::forward);
    CHECK(eth_source(out) == outside);
    CHECK(dhcp_of(out).client_mac() == vm_a);
    CHECK(xlate.counters().dhcp_rewritten == 0);

    bytes runt(10);
    CHECK(xlate.translate_outbound(span(runt)).reason == translate_reason::malformed);
    CHECK(xlate.translate_inbound(span(runt)).reason == translate_reason::malformed);
    bytes group_source = udp_frame(gateway_mac, mac_address::broadcast(), ip_a, gateway_ip, 1, 2, wire::as_bytes("x"));
    CHECK(xlate.translate_outbound(span(group_source)).reason == translate_reason::malformed);
}

TEST_CASE("mac_translator: every truncation of the golden frames is handled safely") {
    // A translator that knows both VMs, their addresses and open transactions, so that every
    // rewriting path is live while the frames are cut.
    mac_translator xlate{outside};
    bytes a = client_frame(udhcpc_request, vm_a);
    bytes b = client_frame(dhclient_request, vm_b);
    REQUIRE(xlate.translate_outbound(span(a)).verdict == translate_verdict::forward);
    REQUIRE(xlate.translate_outbound(span(b)).verdict == translate_verdict::forward);
    // Both golden REQUESTs ask for 192.168.64.107; B announces its own address.
    bytes announce_b = arp_frame(mac_address::broadcast(), vm_b, wire::arp::operation::request, vm_b, ip_b,
                                 mac_address{}, ip_b);
    REQUIRE(xlate.translate_outbound(span(announce_b)).verdict == translate_verdict::forward);
    REQUIRE(xlate.owner_of(ip_b) == vm_b);

    const std::vector<bytes> outbound_frames{
        client_frame(udhcpc_discover, vm_a),
        client_frame(dhclient_request, vm_b),
        arp_frame(mac_address::broadcast(), vm_a, wire::arp::operation::request, vm_a, ip_a, vm_a, gateway_ip),
        udp_frame(gateway_mac, vm_b, ip_b, gateway_ip, 1, 2, wire::as_bytes("payload")),
    };
    const std::vector<bytes> inbound_frames{
        server_reply(udhcpc_ack, outside, true),
        server_reply(dhclient_offer, outside, false),
        arp_frame(outside, gateway_mac, wire::arp::operation::reply, gateway_mac, gateway_ip, outside, ip_a),
        udp_frame(outside, gateway_mac, gateway_ip, ip_b, 2, 1, wire::as_bytes("payload")),
    };
    for (const auto& golden : outbound_frames) {
        for (std::size_t length = 0; length <= golden.size(); ++length) {
            bytes cut(golden.begin(), golden.begin() + static_cast<std::ptrdiff_t>(length)); // exact size: ASan sees overruns
            const auto result = xlate.translate_outbound(span(cut));
            CHECK((result.verdict == translate_verdict::forward || result.verdict == translate_verdict::drop));
            if (length < wire::ethernet::header_len) CHECK(result.reason == translate_reason::malformed);
        }
    }
    for (const auto& golden : inbound_frames) {
        const bool to_outside = eth_destination(golden) == outside;
        for (std::size_t length = 0; length <= golden.size(); ++length) {
            bytes cut(golden.begin(), golden.begin() + static_cast<std::ptrdiff_t>(length));
            const auto result = xlate.translate_inbound(span(cut));
            if (length < wire::ethernet::header_len) CHECK(result.reason == translate_reason::malformed);
            // A datagram cut short is not parsed, so it cannot be routed by its content.
            if (to_outside && length >= wire::ethernet::header_len && length < wire::ethernet::header_len + 20) {
                CHECK(result.verdict == translate_verdict::drop);
            }
        }
    }
    // And a full-length frame still works afterwards.
    bytes in = udp_frame(outside, gateway_mac, gateway_ip, ip_b, 2, 1, wire::as_bytes("payload"));
    CHECK(xlate.translate_inbound(span(in)).vm == vm_b);
}
