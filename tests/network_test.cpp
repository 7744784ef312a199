// Tests of ankanet::basic_network (network.hpp) and the mode headers built on it: the pure core
// (add_port, input, set_link, remove_port, poll) driven by hand with a manual clock and real packet
// bytes — the udhcpc exchange of tests/support/dhcp_captures.hpp and the iputils echo request of
// tests/support/ip_captures.hpp, wrapped in Ethernet/IPv4/UDP with the wire reprs — and the Asio
// glue (attach, stop) over memory backends.
#include <ankanet/network.hpp>

#include <ankanet/backend/backend.hpp>
#include <ankanet/backend/memory.hpp>
#include <ankanet/clock.hpp>
#include <ankanet/config.hpp>
#include <ankanet/dhcp/server.hpp>
#include <ankanet/dhcp/service.hpp>
#include <ankanet/disconnected.hpp>
#include <ankanet/error.hpp>
#include <ankanet/gateway/arp_guard.hpp>
#include <ankanet/gateway/gateway_network.hpp>
#include <ankanet/gateway/neighbor_table.hpp>
#include <ankanet/gateway/responder.hpp>
#include <ankanet/host.hpp>
#include <ankanet/l2/mac_registry.hpp>
#include <ankanet/l2/switch.hpp>
#include <ankanet/shared.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/dhcp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/udp.hpp>

#include <catch2/catch.hpp>

#include "support/backend_harness.hpp"
#include "support/dhcp_captures.hpp"
#include "support/ip_captures.hpp"
#include "support/lease_store_settled.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/io_context.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

using namespace ankanet;
// Not named `bytes`: network.hpp names lambda parameters `bytes`, which -Wshadow would then flag.
using byte_vector = std::vector<std::byte>;
namespace msg = ankanet::wire::dhcp;
namespace captures = ankanet::test::dhcp_captures;

namespace {

const mac_address mac_a = *mac_address::parse("52:54:00:12:34:56"); // the MAC of the captured clients
const mac_address mac_b = *mac_address::parse("52:54:00:ab:cd:ef");
const mac_address mac_c = *mac_address::parse("52:54:00:00:c0:0c");
constexpr ipv4_address gateway_ip{192, 168, 64, 1}; // the shared mode's gateway

// --- an observer that keeps what it is told --------------------------------------------------------

struct lease_seen {
    dhcp::lease_event_kind kind;
    mac_address mac;
    ipv4_address address;
    std::string hostname;
};
struct conflict_seen {
    std::string port;
    gateway::neighbor_conflict conflict;
};
struct static_seen {
    std::string port;
    mac_address mac;
    ipv4_address address;
};
struct attached_seen {
    std::string port;
    std::size_t mtu = 0;
    std::optional<mac_address> mac;
};
struct detached_seen {
    std::string port;
    std::error_code reason;
    std::optional<backend::counters> backend;
    network_port_counters counters;
};

/// Records every event, copying the views (which live only during the call).
struct recorder {
    std::vector<attached_seen> attached;
    std::vector<std::pair<std::string, mac_address>> learned;
    std::vector<std::pair<std::string, std::string>> refused; // port, reason
    std::vector<detached_seen> detached;
    std::vector<std::pair<std::string, bool>> links;
    std::vector<lease_seen> leases;
    std::vector<conflict_seen> conflicts;
    std::vector<static_seen> statics;
    std::vector<dhcp::refusal_event> refusals;        // (their port views are not kept)
    std::vector<gateway::arp_limit_event> arp_limits; // (idem)
    std::vector<dhcp::store_failure_event> store_failures;

    void on(const port_attached_event& e) { attached.push_back({std::string(e.port), e.mtu, e.mac}); }
    void on(const port_mac_learned_event& e) { learned.emplace_back(std::string(e.port), e.mac); }
    void on(const port_refused_event& e) { refused.emplace_back(std::string(e.port), std::string(e.reason)); }
    void on(const port_detached_event& e) { detached.push_back({std::string(e.port), e.reason, e.backend, e.counters}); }
    void on(const link_changed_event& e) { links.emplace_back(std::string(e.port), e.up); }
    void on(const dhcp::lease_event& e) { leases.push_back({e.kind, e.mac, e.address, std::string(e.hostname)}); }
    void on(const gateway::arp_conflict_event& e) { conflicts.push_back({std::string(e.port), e.conflict}); }
    void on(const gateway::static_address_event& e) { statics.push_back({std::string(e.port), e.mac, e.address}); }
    void on(const dhcp::refusal_event& e) {
        refusals.push_back(e);
        refusals.back().port = {};
    }
    void on(const dhcp::store_failure_event& e) { store_failures.push_back(e); }
    void on(const gateway::arp_limit_event& e) {
        arp_limits.push_back(e);
        arp_limits.back().port = {};
    }
};

struct test_traits : default_network_traits {
    using clock_type = manual_clock;
    using observer_type = recorder;
};

using test_shared_network = basic_shared_network<test_traits>;

/// The io_context the translators' host sockets would run on; these tests drive the core by hand.
boost::asio::io_context& translator_io() {
    static boost::asio::io_context io;
    return io;
}

std::unique_ptr<test_shared_network> make_network(gateway_network_options options = {}) {
    std::string why;
    options.dns_upstreams.resolv_conf = "/dev/null"; // no upstream resolver: nothing leaves the test
    auto made = make_shared_network<test_traits>(translator_io().get_executor(), std::move(options), &why);
    INFO(why);
    REQUIRE(made);
    return std::move(*made);
}

std::unique_ptr<test_shared_network> make_isolated_network() {
    gateway_network_options options;
    options.isolate = true;
    return make_network(std::move(options));
}

template <class Network>
port_handle add_vm(Network& net, std::string name, mac_address mac) {
    std::string why;
    auto port = net.add_port(std::move(name), port_mac::custom(mac), &why);
    INFO(why);
    REQUIRE(port);
    return *port;
}

// --- what the network emits ---------------------------------------------------------------------

/// The emit callback of input(): every frame, with the port it leaves by.
struct wire_log {
    std::vector<std::pair<port_handle, byte_vector>> frames;

    void operator()(port_handle port, wire::const_bytes frame) { frames.emplace_back(port, byte_vector(frame.begin(), frame.end())); }

    /// The frames that left towards `port`, in order.
    std::vector<byte_vector> to(port_handle port) const {
        std::vector<byte_vector> out;
        for (const auto& [target, frame] : frames) {
            if (target == port) out.push_back(frame);
        }
        return out;
    }
};

/// One frame sent by the VM on `from`, at the network's clock's now; what left the network.
template <class Network>
wire_log send(Network& net, port_handle from, const byte_vector& frame) {
    wire_log out;
    net.input(from, wire::const_bytes{frame}, net.clock().now(), out);
    return out;
}

// --- frames, built with the wire reprs ----------------------------------------------------------

byte_vector ethernet_frame(mac_address source, mac_address destination, std::uint16_t ethertype, wire::const_bytes payload) {
    const wire::ethernet::repr eth{source, destination, ethertype, std::nullopt};
    byte_vector frame(eth.buffer_len() + payload.size());
    REQUIRE_FALSE(eth.emit(frame));
    std::copy(payload.begin(), payload.end(), frame.begin() + static_cast<std::ptrdiff_t>(eth.buffer_len()));
    return frame;
}

/// An ARP message in a frame from its sender, broadcast unless `destination` says otherwise.
byte_vector arp_frame(const wire::arp::repr& arp, mac_address destination = mac_address::broadcast()) {
    byte_vector body(wire::arp::repr::buffer_len());
    REQUIRE_FALSE(arp.emit(body));
    return ethernet_frame(arp.sender_mac, destination, wire::ethernet::ethertype::arp, body);
}

/// "Who has `target`? Tell `ip` at `mac`."
wire::arp::repr who_has(mac_address mac, ipv4_address ip, ipv4_address target) {
    return {wire::arp::operation::request, mac, ip, mac_address{}, target};
}

/// A gratuitous ARP: `mac` announces `ip` as its own.
wire::arp::repr announce(mac_address mac, ipv4_address ip) {
    return {wire::arp::operation::request, mac, ip, mac_address{}, ip};
}

byte_vector ipv4_frame(mac_address source_mac, mac_address destination_mac, ipv4_address source, ipv4_address destination,
                 std::uint8_t protocol, wire::const_bytes payload) {
    wire::ipv4::repr ip;
    ip.source = source;
    ip.destination = destination;
    ip.protocol = protocol;
    ip.payload_len = payload.size();
    byte_vector datagram(ip.buffer_len() + payload.size());
    REQUIRE_FALSE(ip.emit(datagram));
    std::copy(payload.begin(), payload.end(), datagram.begin() + static_cast<std::ptrdiff_t>(ip.buffer_len()));
    return ethernet_frame(source_mac, destination_mac, wire::ethernet::ethertype::ipv4, datagram);
}

/// The captured iputils echo request (id 0x1918, seq 1, 16 data bytes): its ICMP message as sent.
wire::const_bytes captured_echo() {
    return wire::const_bytes{test::ip_captures::echo_request}.subspan(wire::ipv4::header_len);
}

/// The captured echo request, from `source` at `source_mac` to `destination` at `destination_mac`.
byte_vector ping_frame(mac_address source_mac, ipv4_address source, mac_address destination_mac, ipv4_address destination) {
    return ipv4_frame(source_mac, destination_mac, source, destination, wire::ipv4::protocol::icmp, captured_echo());
}

/// A captured udhcpc message as the VM with `mac` sends it: chaddr and client identifier (61,
/// type 1 + MAC, as udhcpc builds it) are its MAC; option 50 asks for `requested` when given.
byte_vector udhcpc_message(std::string_view capture, mac_address mac, std::optional<ipv4_address> requested = std::nullopt) {
    const byte_vector original = captures::hex(capture);
    auto message = msg::repr::parse(wire::const_bytes{original});
    REQUIRE(message);
    std::copy(mac.octets().begin(), mac.octets().end(), message->chaddr.begin());
    std::array<std::byte, 1 + mac_address::size> client_id{std::byte{1}};
    std::copy(mac.bytes().begin(), mac.bytes().end(), client_id.begin() + 1);
    message->client_id = client_id;
    if (requested) message->requested_ip = *requested;
    byte_vector out(message->buffer_len());
    REQUIRE_FALSE(message->emit(out));
    return out;
}

/// A DHCP client message in UDP 68 → 67, 0.0.0.0 → 255.255.255.255, broadcast from `client`.
byte_vector dhcp_frame(mac_address client, const byte_vector& payload) {
    const wire::udp::repr udp{msg::client_port, msg::server_port, payload.size()};
    byte_vector datagram(udp.buffer_len() + payload.size());
    std::copy(payload.begin(), payload.end(), datagram.begin() + static_cast<std::ptrdiff_t>(udp.buffer_len()));
    REQUIRE_FALSE(udp.emit(datagram, ipv4_address::any(), ipv4_address::broadcast()));
    return ipv4_frame(client, mac_address::broadcast(), ipv4_address::any(), ipv4_address::broadcast(),
                      wire::ipv4::protocol::udp, datagram);
}

// --- frames, taken apart ------------------------------------------------------------------------

/// A DHCP reply, every layer checked on the way (IPv4 and UDP checksums included).
struct dhcp_reply {
    wire::ethernet::repr eth;
    wire::ipv4::repr ip;
    std::optional<msg::message_type> type;
    ipv4_address yiaddr;
    std::optional<ipv4_address> server_id;
    mac_address chaddr;
};

dhcp_reply open_dhcp(const byte_vector& frame) {
    const wire::const_bytes all{frame};
    const auto eth = wire::ethernet::repr::parse(all);
    REQUIRE(eth);
    REQUIRE(eth->ethertype == wire::ethernet::ethertype::ipv4);
    const auto ip_bytes = all.subspan(eth->buffer_len());
    const auto ip = wire::ipv4::repr::parse(ip_bytes);
    REQUIRE(ip);
    REQUIRE(ip->protocol == wire::ipv4::protocol::udp);
    const wire::ipv4::packet<wire::const_bytes> datagram{ip_bytes};
    const auto udp = wire::udp::repr::parse(datagram.payload(), ip->source, ip->destination);
    REQUIRE(udp);
    CHECK(udp->source_port == msg::server_port);
    CHECK(udp->destination_port == msg::client_port);
    const auto message = msg::repr::parse(wire::udp::packet<wire::const_bytes>{datagram.payload()}.payload());
    REQUIRE(message);
    CHECK(message->op == msg::boot_reply);
    mac_address::bytes_type chaddr{};
    std::copy_n(message->chaddr.begin(), chaddr.size(), chaddr.begin());
    return {*eth, *ip, message->message_type, message->yiaddr, message->server_id, mac_address{chaddr}};
}

struct arp_seen {
    wire::ethernet::repr eth;
    wire::arp::repr arp;
};

arp_seen open_arp(const byte_vector& frame) {
    const auto eth = wire::ethernet::repr::parse(wire::const_bytes{frame});
    REQUIRE(eth);
    REQUIRE(eth->ethertype == wire::ethernet::ethertype::arp);
    const auto arp = wire::arp::repr::parse(wire::const_bytes{frame}.subspan(eth->buffer_len()));
    REQUIRE(arp);
    return {*eth, *arp};
}

/// Checks that `frame` is the gateway's ARP reply to the VM at `mac`, `ip`.
void check_gateway_arp_reply(const byte_vector& frame, mac_address mac, ipv4_address ip, ipv4_address gateway = gateway_ip) {
    const auto seen = open_arp(frame);
    CHECK(seen.eth.source == default_gateway_mac);
    CHECK(seen.eth.destination == mac);
    CHECK(seen.arp.operation == wire::arp::operation::reply);
    CHECK(seen.arp.sender_mac == default_gateway_mac);
    CHECK(seen.arp.sender_ip == gateway);
    CHECK(seen.arp.target_mac == mac);
    CHECK(seen.arp.target_ip == ip);
}

/// Checks that `frame` is the gateway's echo reply to the captured echo request the VM at `mac`,
/// `ip` sent: same identifier, sequence and data.
void check_gateway_echo_reply(const byte_vector& frame, mac_address mac, ipv4_address ip) {
    const wire::const_bytes all{frame};
    const auto eth = wire::ethernet::repr::parse(all);
    REQUIRE(eth);
    CHECK(eth->source == default_gateway_mac);
    CHECK(eth->destination == mac);
    REQUIRE(eth->ethertype == wire::ethernet::ethertype::ipv4);
    const auto ip_bytes = all.subspan(eth->buffer_len());
    const auto header = wire::ipv4::repr::parse(ip_bytes);
    REQUIRE(header);
    CHECK(header->source == gateway_ip);
    CHECK(header->destination == ip);
    REQUIRE(header->protocol == wire::ipv4::protocol::icmp);
    const auto reply = wire::icmp::repr::parse(wire::ipv4::packet<wire::const_bytes>{ip_bytes}.payload());
    REQUIRE(reply);
    const auto* echo = std::get_if<wire::icmp::echo_reply>(&reply->message);
    REQUIRE(echo != nullptr);
    const auto request = wire::icmp::repr::parse(captured_echo());
    REQUIRE(request);
    const auto& asked = std::get<wire::icmp::echo_request>(request->message);
    CHECK(echo->identifier == 0x1918);
    CHECK(echo->sequence == 1);
    CHECK(echo->identifier == asked.identifier);
    CHECK(echo->sequence == asked.sequence);
    CHECK(byte_vector(echo->data.begin(), echo->data.end()) == byte_vector(asked.data.begin(), asked.data.end()));
}

bool in_default_range(ipv4_address a) {
    return a.to_u32() >= ipv4_address{192, 168, 64, 2}.to_u32() && a.to_u32() <= ipv4_address{192, 168, 64, 254}.to_u32();
}

/// A DHCP message of `type` built from udhcpc's REQUEST, in the name of `chaddr` with the client
/// identifier of `client`, naming `address` (as ciaddr for RELEASE, option 50 otherwise).
byte_vector dhcp_message(msg::message_type type, mac_address chaddr, mac_address client, ipv4_address address) {
    const byte_vector original = captures::hex(captures::udhcpc_request);
    auto message = msg::repr::parse(wire::const_bytes{original});
    REQUIRE(message);
    message->message_type = type;
    std::copy(chaddr.octets().begin(), chaddr.octets().end(), message->chaddr.begin());
    std::array<std::byte, 1 + mac_address::size> client_id{std::byte{1}};
    std::copy(client.bytes().begin(), client.bytes().end(), client_id.begin() + 1);
    message->client_id = client_id;
    if (type == msg::message_type::release) {
        message->ciaddr = address;
        message->requested_ip.reset();
        message->server_id = gateway_ip;
    } else {
        message->requested_ip = address;
    }
    byte_vector out(message->buffer_len());
    REQUIRE_FALSE(message->emit(out));
    return out;
}

/// The captured udhcpc DISCOVER and REQUEST, as the VM on `port` with `mac` sends them; the
/// address it was granted.
template <class Network>
ipv4_address lease(Network& net, port_handle port, mac_address mac) {
    const auto offers = send(net, port, dhcp_frame(mac, udhcpc_message(captures::udhcpc_discover, mac))).to(port);
    REQUIRE(offers.size() == 1);
    const auto offer = open_dhcp(offers[0]);
    REQUIRE(offer.type == msg::message_type::offer);
    const auto acks =
        send(net, port, dhcp_frame(mac, udhcpc_message(captures::udhcpc_request, mac, offer.yiaddr))).to(port);
    REQUIRE(acks.size() == 1);
    const auto ack = open_dhcp(acks[0]);
    REQUIRE(ack.type == msg::message_type::ack);
    REQUIRE(ack.yiaddr == offer.yiaddr);
    return ack.yiaddr;
}

} // namespace

// --- DHCP -----------------------------------------------------------------------------------------

TEST_CASE("network: a VM gets a lease from the captured udhcpc DISCOVER and REQUEST") {
    auto net = make_network();
    const auto a = add_vm(*net, "vm-a", mac_a);
    const auto b = add_vm(*net, "vm-b", mac_b);

    // The DISCOVER exactly as udhcpc sent it (its chaddr and client id are mac_a).
    const auto discover = dhcp_frame(mac_a, captures::hex(captures::udhcpc_discover));
    const auto first = send(*net, a, discover);
    // Broadcast, but for the gateway alone: answered, to the asking VM only, and not flooded to
    // the others (the DHCP service takes client messages before the switch).
    REQUIRE(first.frames.size() == 1);
    CHECK(first.to(b).empty());
    CHECK(net->stats().frames_to_gateway == 1);
    const auto offers = first.to(a);
    REQUIRE(offers.size() == 1);
    const auto offer = open_dhcp(offers[0]);
    CHECK(offer.type == msg::message_type::offer);
    CHECK(offer.eth.source == default_gateway_mac);
    CHECK(offer.eth.destination == mac_a);
    CHECK(offer.ip.source == gateway_ip);
    CHECK(offer.chaddr == mac_a);
    CHECK(in_default_range(offer.yiaddr));
    CHECK(offer.server_id == gateway_ip);

    REQUIRE(net->observer().leases.size() == 1);
    CHECK(net->observer().leases[0].kind == dhcp::lease_event_kind::offered);
    CHECK(net->observer().leases[0].mac == mac_a);
    CHECK(net->observer().leases[0].address == offer.yiaddr);

    // The REQUEST udhcpc sent, its option 50 set to the address this server offered (dnsmasq's was .107).
    const auto second = send(*net, a, dhcp_frame(mac_a, udhcpc_message(captures::udhcpc_request, mac_a, offer.yiaddr)));
    const auto acks = second.to(a);
    REQUIRE(acks.size() == 1);
    CHECK(second.to(b).empty()); // the broadcast REQUEST is the gateway's alone
    const auto ack = open_dhcp(acks[0]);
    CHECK(ack.type == msg::message_type::ack);
    CHECK(ack.eth.destination == mac_a);
    CHECK(ack.yiaddr == offer.yiaddr);
    CHECK(ack.server_id == gateway_ip);

    const auto held = net->service<dhcp::service>().pool().find(offer.yiaddr);
    REQUIRE(held);
    CHECK(held->mac == mac_a);
    CHECK(held->bound);
    CHECK(held->hostname == "guest-udhcpc");
    CHECK(net->service<dhcp::service>().pool().bound_count() == 1);

    REQUIRE(net->observer().leases.size() == 2);
    CHECK(net->observer().leases[1].kind == dhcp::lease_event_kind::acknowledged);
    CHECK(net->observer().leases[1].mac == mac_a);
    CHECK(net->observer().leases[1].address == offer.yiaddr);
    CHECK(net->observer().leases[1].hostname == "guest-udhcpc");

    CHECK(net->stats().replies == 2);
    CHECK(net->service<dhcp::service>().stats().offers == 1);
    CHECK(net->service<dhcp::service>().stats().acks == 1);
}

TEST_CASE("network: DHCP replies a client asked to be broadcast reach its own port alone") {
    auto net = make_network();
    const auto a = add_vm(*net, "vm-a", mac_a);
    const auto b = add_vm(*net, "vm-b", mac_b);
    auto discover = udhcpc_message(captures::udhcpc_discover, mac_a);
    msg::packet<std::span<std::byte>>{discover}.set_broadcast(true);
    const auto sent = send(*net, a, dhcp_frame(mac_a, discover));
    REQUIRE(sent.frames.size() == 1);
    const auto offer = open_dhcp(sent.to(a).at(0));
    CHECK(offer.type == msg::message_type::offer);
    CHECK(offer.eth.destination == mac_address::broadcast()); // as the client asked...
    CHECK(offer.ip.destination == ipv4_address::broadcast());
    CHECK(sent.to(b).empty());                                // ...yet for it alone
    CHECK(net->stats(b)->frames_out == 0);
}

TEST_CASE("network: two VMs get different leases") {
    auto net = make_network();
    const auto a = add_vm(*net, "vm-a", mac_a);
    const auto b = add_vm(*net, "vm-b", mac_b);
    const auto address_a = lease(*net, a, mac_a);
    const auto address_b = lease(*net, b, mac_b);
    CHECK(address_a != address_b);
    CHECK(in_default_range(address_a));
    CHECK(in_default_range(address_b));
    const auto held = net->service<dhcp::service>().pool().find(address_b);
    REQUIRE(held);
    CHECK(held->mac == mac_b);
    CHECK(net->service<dhcp::service>().pool().bound_count() == 2);
}

// --- ARP ------------------------------------------------------------------------------------------

TEST_CASE("network: the gateway answers ARP for its address to the asking VM only") {
    auto net = make_network();
    const auto a = add_vm(*net, "vm-a", mac_a);
    const auto b = add_vm(*net, "vm-b", mac_b);
    const auto address_a = lease(*net, a, mac_a);
    const auto replies_before = net->stats().replies;

    const auto request = arp_frame(who_has(mac_a, address_a, gateway_ip));
    const auto out = send(*net, a, request);
    const auto to_a = out.to(a);
    REQUIRE(to_a.size() == 1);
    check_gateway_arp_reply(to_a[0], mac_a, address_a);
    // The other VM sees the broadcast question, never the answer.
    REQUIRE(out.to(b).size() == 1);
    CHECK(out.to(b)[0] == request);
    CHECK(out.frames.size() == 2);
    CHECK(net->service<gateway::responder>().stats().arp_replies == 1);
    CHECK(net->stats().replies == replies_before + 1);
}

TEST_CASE("network: ARP between VMs is flooded to the others and answered by unicast") {
    auto net = make_network();
    const auto a = add_vm(*net, "vm-a", mac_a);
    const auto b = add_vm(*net, "vm-b", mac_b);
    const auto c = add_vm(*net, "vm-c", mac_c);
    const auto address_a = lease(*net, a, mac_a);
    const auto address_b = lease(*net, b, mac_b);
    (void)lease(*net, c, mac_c);

    const auto request = arp_frame(who_has(mac_a, address_a, address_b));
    const auto asked = send(*net, a, request);
    CHECK(asked.to(a).empty()); // never back to the sender, and the gateway does not answer for b
    REQUIRE(asked.to(b).size() == 1);
    CHECK(asked.to(b)[0] == request);
    REQUIRE(asked.to(c).size() == 1);
    CHECK(asked.to(c)[0] == request);
    CHECK(asked.frames.size() == 2);

    const auto reply = arp_frame({wire::arp::operation::reply, mac_b, address_b, mac_a, address_a}, mac_a);
    const auto answered = send(*net, b, reply);
    REQUIRE(answered.frames.size() == 1);
    REQUIRE(answered.to(a).size() == 1);
    CHECK(answered.to(a)[0] == reply);
    CHECK(answered.to(c).empty());
    CHECK(net->service<gateway::responder>().stats().arp_replies == 0);
}

// --- ping -----------------------------------------------------------------------------------------

TEST_CASE("network: the gateway answers ping and a ping between VMs passes unchanged") {
    auto net = make_network();
    const auto a = add_vm(*net, "vm-a", mac_a);
    const auto b = add_vm(*net, "vm-b", mac_b);
    const auto c = add_vm(*net, "vm-c", mac_c);
    const auto address_a = lease(*net, a, mac_a);
    const auto address_b = lease(*net, b, mac_b);
    (void)lease(*net, c, mac_c);

    SECTION("to the gateway") {
        // A guest ARPs for the gateway first; that answer is how the switch learns the gateway's MAC.
        REQUIRE(send(*net, a, arp_frame(who_has(mac_a, address_a, gateway_ip))).to(a).size() == 1);
        const auto out = send(*net, a, ping_frame(mac_a, address_a, default_gateway_mac, gateway_ip));
        REQUIRE(out.frames.size() == 1);
        REQUIRE(out.to(a).size() == 1);
        check_gateway_echo_reply(out.to(a)[0], mac_a, address_a);
        CHECK(net->service<gateway::responder>().stats().echo_replies == 1);
    }
    SECTION("to another VM") {
        const auto ping = ping_frame(mac_a, address_a, mac_b, address_b);
        const auto out = send(*net, a, ping);
        REQUIRE(out.frames.size() == 1);
        REQUIRE(out.to(b).size() == 1);
        CHECK(out.to(b)[0] == ping);
        CHECK(out.to(a).empty());
        CHECK(out.to(c).empty());
        CHECK(net->service<gateway::responder>().stats().echo_replies == 0);
    }
}

// --- isolation ------------------------------------------------------------------------------------

TEST_CASE("network: an isolated network keeps VMs apart and the gateway still answers") {
    auto net = make_isolated_network();
    const auto a = add_vm(*net, "vm-a", mac_a);
    const auto b = add_vm(*net, "vm-b", mac_b);

    // DHCP works, and a's broadcast DISCOVER reaches the gateway only.
    const auto discover = send(*net, a, dhcp_frame(mac_a, udhcpc_message(captures::udhcpc_discover, mac_a)));
    CHECK(discover.to(b).empty());
    CHECK(discover.to(a).size() == 1);
    const auto address_a = lease(*net, a, mac_a);
    const auto address_b = lease(*net, b, mac_b); // b is on the switch's table from here on

    // A flood (ARP for b) does not reach b.
    const auto flood = send(*net, a, arp_frame(who_has(mac_a, address_a, address_b)));
    CHECK(flood.frames.empty());
    // A unicast to b's known MAC does not reach b.
    const auto ping = send(*net, a, ping_frame(mac_a, address_a, mac_b, address_b));
    CHECK(ping.frames.empty());
    CHECK(net->switch_stats(a)->dropped_isolated == 1);
    CHECK(net->stats(b)->frames_out == 2); // b's own OFFER and ACK, nothing from a

    // The gateway answers ARP and ping.
    const auto arp = send(*net, a, arp_frame(who_has(mac_a, address_a, gateway_ip)));
    REQUIRE(arp.frames.size() == 1);
    REQUIRE(arp.to(a).size() == 1);
    check_gateway_arp_reply(arp.to(a)[0], mac_a, address_a);
    const auto echo = send(*net, a, ping_frame(mac_a, address_a, default_gateway_mac, gateway_ip));
    REQUIRE(echo.frames.size() == 1);
    REQUIRE(echo.to(a).size() == 1);
    check_gateway_echo_reply(echo.to(a)[0], mac_a, address_a);
}

// --- link down / up ---------------------------------------------------------------------------------

TEST_CASE("network: a port whose link is down neither sends nor receives and keeps its MAC and lease") {
    auto net = make_network();
    const auto a = add_vm(*net, "vm-a", mac_a);
    const auto b = add_vm(*net, "vm-b", mac_b);
    const auto address_a = lease(*net, a, mac_a);
    const auto address_b = lease(*net, b, mac_b);
    const auto out_before = net->stats(b)->frames_out;

    CHECK_FALSE(net->set_link(b, false));
    CHECK_FALSE(net->link_up(b));
    CHECK(net->link_up(a));
    REQUIRE(net->observer().links.size() == 1);
    CHECK(net->observer().links[0] == std::pair<std::string, bool>{"vm-b", false});

    // Towards b: a unicast and a flood, both dropped and counted.
    CHECK(send(*net, a, ping_frame(mac_a, address_a, mac_b, address_b)).frames.empty());
    CHECK(net->stats(b)->dropped_link_down == 1);
    CHECK(send(*net, a, arp_frame(who_has(mac_a, address_a, address_b))).frames.empty());
    CHECK(net->stats(b)->dropped_link_down == 2);
    // From b: its ARP for the gateway goes nowhere and gets no answer.
    CHECK(send(*net, b, arp_frame(who_has(mac_b, address_b, gateway_ip))).frames.empty());
    CHECK(net->stats(b)->dropped_link_down == 3);
    CHECK(net->stats().dropped_link_down == 3);
    CHECK(net->stats(b)->frames_out == out_before);
    CHECK(net->service<gateway::responder>().stats().arp_replies == 0);
    CHECK(net->stats(a)->dropped_link_down == 0);

    // Its MAC and its lease stay.
    CHECK(net->mac(b) == mac_b);
    const auto held = net->service<dhcp::service>().pool().find(address_b);
    REQUIRE(held);
    CHECK(held->mac == mac_b);
    CHECK(held->bound);

    CHECK_FALSE(net->set_link(b, false)); // no change, no event
    CHECK(net->observer().links.size() == 1);

    CHECK_FALSE(net->set_link(b, true));
    CHECK(net->link_up(b));
    REQUIRE(net->observer().links.size() == 2);
    CHECK(net->observer().links[1] == std::pair<std::string, bool>{"vm-b", true});

    const auto ping = ping_frame(mac_a, address_a, mac_b, address_b);
    const auto delivered = send(*net, a, ping);
    REQUIRE(delivered.to(b).size() == 1);
    CHECK(delivered.to(b)[0] == ping);
    const auto answered = send(*net, b, arp_frame(who_has(mac_b, address_b, gateway_ip)));
    REQUIRE(answered.to(b).size() == 1);
    check_gateway_arp_reply(answered.to(b)[0], mac_b, address_b);
    CHECK(net->stats(b)->dropped_link_down == 3);
}

// --- MACs -----------------------------------------------------------------------------------------

TEST_CASE("network: a MAC another port holds is refused with a reason naming both VMs") {
    auto net = make_network();
    const auto a = add_vm(*net, "vm-alpha", mac_a);

    std::string why;
    const auto refused = net->add_port("vm-bravo", port_mac::custom(mac_a), &why);
    REQUIRE_FALSE(refused);
    CHECK(refused.error() == l2::mac_errc::in_use);
    CHECK_THAT(why, Catch::Contains("vm-alpha") && Catch::Contains("vm-bravo"));
    REQUIRE(net->observer().refused.size() == 1);
    CHECK(net->observer().refused[0].first == "vm-bravo");
    CHECK(net->observer().refused[0].second == why);
    CHECK(net->stats().ports_refused == 1);
    CHECK(net->port_count() == 1);

    // The holder is untouched, and another MAC is welcome.
    CHECK(net->mac(a) == mac_a);
    CHECK(lease(*net, a, mac_a) != ipv4_address{});
    CHECK(net->add_port("vm-bravo", port_mac::custom(mac_b)));
    CHECK(net->stats().ports_refused == 1);
}

TEST_CASE("network: the gateway's MAC and a port name already in use are refused") {
    auto net = make_network();
    std::string why;
    const auto as_gateway = net->add_port("vm-alpha", port_mac::custom(default_gateway_mac), &why);
    REQUIRE_FALSE(as_gateway);
    CHECK(as_gateway.error() == l2::mac_errc::in_use);
    CHECK_THAT(why, Catch::Contains("the gateway"));

    const auto a = add_vm(*net, "vm-alpha", mac_a);
    const auto twin = net->add_port("vm-alpha", port_mac::custom(mac_b), &why);
    REQUIRE_FALSE(twin);
    CHECK_THAT(why, Catch::Contains("vm-alpha") && Catch::Contains("attached already"));
    CHECK(net->stats().ports_refused == 2);
    CHECK(net->port_count() == 1);
    CHECK(net->mac(a) == mac_a);
}

TEST_CASE("network: frames of a size the MTU does not allow are dropped and counted, not switched") {
    auto net = make_network();
    const auto a = add_vm(*net, "vm-a", mac_a);
    const auto b = add_vm(*net, "vm-b", mac_b);
    // A broadcast one byte longer than an MTU-1500 frame with a VLAN tag may be, then a runt.
    const byte_vector payload(backend::max_frame_len(1500) + 1 - wire::ethernet::header_len, std::byte{0x5a});
    byte_vector jumbo = ethernet_frame(mac_a, mac_address::broadcast(), 0x88b5, payload);
    REQUIRE(jumbo.size() == backend::max_frame_len(1500) + 1);
    CHECK(send(*net, a, jumbo).frames.empty());
    CHECK(send(*net, a, byte_vector(13, std::byte{0xff})).frames.empty());
    CHECK(net->stats(a)->dropped_bad_size == 2);
    CHECK(net->stats().dropped_bad_size == 2);
    CHECK(net->stats(b)->frames_out == 0);
    // The largest frame the MTU allows passes.
    jumbo.pop_back();
    CHECK(send(*net, a, jumbo).frames.size() == 1);
    CHECK(net->stats(b)->frames_out == 1);
}

TEST_CASE("network: a port without a MAC adopts the source of its first frame") {
    auto net = make_network();
    const auto q = net->add_port("vm-q", port_mac::from_first_frame());
    REQUIRE(q);
    CHECK_FALSE(net->mac(*q));

    // A frame without a unicast source teaches nothing: dropped, the port keeps waiting.
    CHECK(send(*net, *q, arp_frame(announce(mac_address::broadcast(), ipv4_address{192, 168, 64, 9}))).frames.empty());
    CHECK(net->stats(*q)->dropped_no_mac == 1);
    CHECK_FALSE(net->mac(*q));
    CHECK(net->observer().learned.empty());

    // Its first real frame registers its MAC and is handled at once: a DISCOVER is answered.
    const auto out = send(*net, *q, dhcp_frame(mac_a, captures::hex(captures::udhcpc_discover)));
    CHECK(net->mac(*q) == mac_a);
    REQUIRE(net->observer().learned.size() == 1);
    CHECK(net->observer().learned[0] == std::pair<std::string, mac_address>{"vm-q", mac_a});
    REQUIRE(out.to(*q).size() == 1);
    CHECK(open_dhcp(out.to(*q)[0]).type == msg::message_type::offer);

    SECTION("a second port whose first frame carries the same MAC is refused and removed") {
        const auto r = net->add_port("vm-r", port_mac::from_first_frame());
        REQUIRE(r);
        CHECK(net->port_count() == 2);
        const auto refused = send(*net, *r, arp_frame(announce(mac_a, ipv4_address{192, 168, 64, 9})));
        CHECK(refused.frames.empty());
        REQUIRE(net->observer().refused.size() == 1);
        CHECK(net->observer().refused[0].first == "vm-r");
        CHECK_THAT(net->observer().refused[0].second, Catch::Contains("vm-q") && Catch::Contains("vm-r"));
        CHECK(net->stats().ports_refused == 1);
        REQUIRE(net->observer().detached.size() == 1);
        CHECK(net->observer().detached[0].port == "vm-r");
        CHECK(net->port_count() == 1);
        CHECK_FALSE(net->name(*r));
        CHECK(net->observer().learned.size() == 1);

        // Its handle is now refused; the holder is untouched.
        CHECK(send(*net, *r, arp_frame(announce(mac_a, ipv4_address{192, 168, 64, 9}))).frames.empty());
        CHECK(net->stats().dropped_unknown_port == 1);
        CHECK(net->mac(*q) == mac_a);
        CHECK(send(*net, *q, arp_frame(who_has(mac_a, ipv4_address{192, 168, 64, 9}, gateway_ip))).to(*q).size() == 1);
    }
    SECTION("a second port with another MAC is welcome") {
        const auto r = net->add_port("vm-r", port_mac::from_first_frame());
        REQUIRE(r);
        CHECK(send(*net, *r, arp_frame(who_has(mac_b, ipv4_address{192, 168, 64, 10}, gateway_ip))).to(*r).size() == 1);
        CHECK(net->mac(*r) == mac_b);
        CHECK(net->observer().refused.empty());
        CHECK(net->port_count() == 2);
    }
}

// --- the ARP guard ----------------------------------------------------------------------------------

TEST_CASE("network: the ARP guard drops a claim on an address leased to another VM") {
    auto net = make_network();
    const auto a = add_vm(*net, "vm-a", mac_a);
    const auto b = add_vm(*net, "vm-b", mac_b);
    const auto address_a = lease(*net, a, mac_a);
    (void)lease(*net, b, mac_b);

    // b announces a's address as its own: dropped before the switch, reported.
    const auto stolen = send(*net, b, arp_frame(announce(mac_b, address_a)));
    CHECK(stolen.frames.empty());
    REQUIRE(net->observer().conflicts.size() == 1);
    const auto& seen = net->observer().conflicts[0];
    CHECK(seen.port == "vm-b");
    CHECK(seen.conflict.address == address_a);
    CHECK(seen.conflict.holder == mac_a);
    CHECK(seen.conflict.claimant == mac_b);
    CHECK(seen.conflict.leased);
    CHECK_FALSE(seen.conflict.gateway);
    CHECK(net->stats(b)->dropped_by_service == 1);
    CHECK(net->service<gateway::arp_guard>().stats().conflicts_dropped == 1);

    // Claiming the gateway's address is refused too.
    CHECK(send(*net, b, arp_frame(announce(mac_b, gateway_ip))).frames.empty());
    REQUIRE(net->observer().conflicts.size() == 2);
    CHECK(net->observer().conflicts[1].conflict.gateway);
    CHECK(net->stats(b)->dropped_by_service == 2);

    // The holder's own announcement passes.
    const auto own = arp_frame(announce(mac_a, address_a));
    const auto passed = send(*net, a, own);
    REQUIRE(passed.to(b).size() == 1);
    CHECK(passed.to(b)[0] == own);
    CHECK(net->observer().conflicts.size() == 2);
    CHECK(net->stats(a)->dropped_by_service == 0);
}

TEST_CASE("network: an address a VM uses without a lease is kept out of the DHCP pool") {
    auto net = make_network();
    const auto a = add_vm(*net, "vm-a", mac_a);
    const auto b = add_vm(*net, "vm-b", mac_b);
    constexpr ipv4_address fixed{192, 168, 64, 50};

    const auto announced = arp_frame(announce(mac_a, fixed));
    const auto out = send(*net, a, announced);
    REQUIRE(out.to(b).size() == 1); // a legitimate claim: passed on
    CHECK(out.to(b)[0] == announced);
    REQUIRE(net->observer().statics.size() == 1);
    CHECK(net->observer().statics[0].port == "vm-a");
    CHECK(net->observer().statics[0].mac == mac_a);
    CHECK(net->observer().statics[0].address == fixed);
    CHECK(net->service<gateway::arp_guard>().stats().static_addresses == 1);

    // Said again: no news.
    (void)send(*net, a, announced);
    CHECK(net->observer().statics.size() == 1);

    // b asks for that very address (option 50): it is offered another one.
    const auto discover = dhcp_frame(mac_b, udhcpc_message(captures::udhcpc_discover, mac_b, fixed));
    const auto offers = send(*net, b, discover).to(b);
    REQUIRE(offers.size() == 1);
    const auto offer = open_dhcp(offers[0]);
    CHECK(offer.type == msg::message_type::offer);
    CHECK(offer.yiaddr != fixed);
    CHECK(in_default_range(offer.yiaddr));
    CHECK(net->observer().conflicts.empty());
}

TEST_CASE("network: poll reclaims an expired lease, and its address may then be claimed") {
    auto net = make_network();
    const auto a = add_vm(*net, "vm-a", mac_a);
    const auto b = add_vm(*net, "vm-b", mac_b);
    const auto address_a = lease(*net, a, mac_a);

    CHECK(send(*net, b, arp_frame(announce(mac_b, address_a))).frames.empty());
    CHECK(net->observer().conflicts.size() == 1);

    net->clock().advance(std::chrono::hours{2}); // the lease (3600 s) has run out
    CHECK(net->service<dhcp::service>().pool().bound_count() == 1);
    net->poll(net->clock().now());
    CHECK(net->service<dhcp::service>().pool().bound_count() == 0);
    CHECK_FALSE(net->service<dhcp::service>().pool().find(address_a));

    const auto claim = arp_frame(announce(mac_b, address_a));
    const auto out = send(*net, b, claim);
    REQUIRE(out.to(a).size() == 1);
    CHECK(out.to(a)[0] == claim);
    CHECK(net->observer().conflicts.size() == 1);
    REQUIRE(net->observer().statics.size() == 1);
    CHECK(net->observer().statics[0].mac == mac_b);
    CHECK(net->observer().statics[0].address == address_a);
}

// --- disconnected -----------------------------------------------------------------------------------

TEST_CASE("network: a disconnected network passes nothing") {
    disconnected_network net;
    manual_clock clock;
    const auto a = add_vm(net, "vm-a", mac_a);
    const auto b = add_vm(net, "vm-b", mac_b);
    CHECK(net.port_count() == 2);

    wire_log out;
    net.input(a, dhcp_frame(mac_a, captures::hex(captures::udhcpc_discover)), clock.now(), out);
    net.input(a, arp_frame(who_has(mac_a, ipv4_address{192, 168, 64, 2}, gateway_ip)), clock.now(), out);
    net.input(a, ping_frame(mac_a, ipv4_address{192, 168, 64, 2}, mac_b, ipv4_address{192, 168, 64, 3}), clock.now(), out);
    net.input(b, ping_frame(mac_b, ipv4_address{192, 168, 64, 3}, mac_a, ipv4_address{192, 168, 64, 2}), clock.now(), out);
    CHECK(out.frames.empty());
    CHECK(net.stats(a)->dropped_unplugged == 3);
    CHECK(net.stats(a)->frames_in == 3);
    CHECK(net.stats(b)->dropped_unplugged == 1);
    CHECK(net.stats().dropped_unplugged == 4);
    CHECK(net.stats().frames_to_gateway == 0);
    CHECK(net.stats().replies == 0);

    CHECK(net.set_link(a, true) == errc::unsupported);
    CHECK(net.set_link(a, false) == errc::unsupported);
    CHECK_FALSE(net.link_up(a));
}

// --- stale handles, counters ------------------------------------------------------------------------

TEST_CASE("network: a removed port's handle is refused and gateway replies are counted") {
    auto net = make_network();
    const auto a = add_vm(*net, "vm-a", mac_a);
    const auto b = add_vm(*net, "vm-b", mac_b);
    constexpr ipv4_address address_a{192, 168, 64, 20};
    constexpr ipv4_address address_b{192, 168, 64, 21};

    // Two answers from the gateway: an ARP reply and an echo reply. An ARP for b reaches the
    // gateway as a flood and is nobody's there.
    CHECK(send(*net, a, arp_frame(who_has(mac_a, address_a, gateway_ip))).to(a).size() == 1);
    CHECK(send(*net, a, ping_frame(mac_a, address_a, default_gateway_mac, gateway_ip)).to(a).size() == 1);
    CHECK(send(*net, a, arp_frame(who_has(mac_a, address_a, address_b))).to(b).size() == 1);
    CHECK(net->stats().replies == 2);
    CHECK(net->stats().frames_to_gateway == 3);
    CHECK(net->stats().gateway_unclaimed == 1);
    CHECK(net->stats().replies_dropped == 0);
    CHECK(net->stats().frames_in == 3);

    CHECK_FALSE(net->remove_port(b));
    REQUIRE(net->observer().detached.size() == 1);
    CHECK(net->observer().detached[0].port == "vm-b");
    CHECK_FALSE(net->observer().detached[0].reason);
    CHECK_FALSE(net->observer().detached[0].backend);
    CHECK(net->port_count() == 1);
    CHECK_FALSE(net->stats(b));
    CHECK(net->remove_port(b) == l2::switch_errc::unknown_port);

    CHECK(send(*net, b, arp_frame(who_has(mac_b, address_b, gateway_ip))).frames.empty());
    CHECK(net->stats().dropped_unknown_port == 1);
    CHECK(net->stats().frames_in == 3);

    // A new port takes the freed slot; the old handle still names nothing, and b's MAC is free.
    const auto c = add_vm(*net, "vm-c", mac_b);
    CHECK(c != b);
    CHECK(c.index() == b.index()); // the same slot: only the generation tells the handles apart
    CHECK(send(*net, b, arp_frame(who_has(mac_b, address_b, gateway_ip))).frames.empty());
    CHECK(net->stats().dropped_unknown_port == 2);
    CHECK(net->stats(c)->frames_in == 0);
    CHECK(net->name(c) == std::optional<std::string_view>{"vm-c"});
    CHECK_FALSE(net->name(b));

    const auto answered = send(*net, c, arp_frame(who_has(mac_b, address_b, gateway_ip)));
    REQUIRE(answered.to(c).size() == 1);
    check_gateway_arp_reply(answered.to(c)[0], mac_b, address_b);
    CHECK(net->stats().replies == 3);
}

// --- the Asio glue ----------------------------------------------------------------------------------

namespace {

/// Takes every frame queued at a guest end.
void drain(backend::memory_endpoint& guest, std::vector<byte_vector>& into) {
    byte_vector buffer(backend::max_frame_len(backend::default_mtu));
    for (auto got = guest.try_receive(buffer); got; got = guest.try_receive(buffer)) {
        into.emplace_back(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(*got));
    }
}

const byte_vector* find_frame(const std::vector<byte_vector>& frames, bool (*match)(const wire::parsed_frame&)) {
    for (const auto& frame : frames) {
        if (match(wire::parsed_frame::parse(wire::const_bytes{frame}))) return &frame;
    }
    return nullptr;
}

bool is_dhcp_reply(const wire::parsed_frame& f) { return f.is_ipv4() && f.has_ports && f.source_port == msg::server_port; }
bool is_arp_reply(const wire::parsed_frame& f) { return f.is_arp() && f.arp->operation == wire::arp::operation::reply; }

} // namespace

TEST_CASE("network: attach serves memory-backed VMs and stop detaches them") {
    boost::asio::io_context io;
    std::string why;
    auto made = make_host_network<test_traits>(io.get_executor(), {}, &why);
    INFO(why);
    REQUIRE(made);
    auto& net = **made;
    constexpr ipv4_address host_gateway{192, 168, 128, 1};
    constexpr ipv4_address address_b{192, 168, 128, 20};

    auto link1 = backend::make_memory_link(io.get_executor(), 1500, 64);
    auto link2 = backend::make_memory_link(io.get_executor(), 1500, 64);
    auto& guest1 = link1.first;
    auto& guest2 = link2.first;
    const auto vm1 = net.attach("vm1", std::move(link1.second), port_mac::custom(mac_a));
    const auto vm2 = net.attach("vm2", std::move(link2.second)); // its MAC from its first frame
    REQUIRE(vm1);
    REQUIRE(vm2);
    CHECK(net.port_count() == 2);
    REQUIRE(net.observer().attached.size() == 2);
    CHECK(net.observer().attached[0].port == "vm1");
    CHECK(net.observer().attached[0].mtu == 1500);
    CHECK(net.observer().attached[0].mac == mac_a);
    CHECK(net.observer().attached[1].port == "vm2");
    CHECK_FALSE(net.observer().attached[1].mac);

    REQUIRE_FALSE(guest1.send(dhcp_frame(mac_a, captures::hex(captures::udhcpc_discover))));
    REQUIRE_FALSE(guest2.send(arp_frame(who_has(mac_b, address_b, host_gateway))));

    std::vector<byte_vector> got1;
    std::vector<byte_vector> got2;
    const bool answered = test::run_until(io, [&] {
        drain(guest1, got1);
        drain(guest2, got2);
        return find_frame(got1, is_dhcp_reply) != nullptr && find_frame(got2, is_arp_reply) != nullptr;
    });
    REQUIRE(answered);

    const auto offer = open_dhcp(*find_frame(got1, is_dhcp_reply));
    CHECK(offer.type == msg::message_type::offer);
    CHECK(offer.eth.destination == mac_a);
    CHECK(offer.server_id == host_gateway);
    CHECK(offer.yiaddr.to_u32() >= ipv4_address{192, 168, 128, 2}.to_u32());
    CHECK(offer.yiaddr.to_u32() <= ipv4_address{192, 168, 128, 254}.to_u32());
    check_gateway_arp_reply(*find_frame(got2, is_arp_reply), mac_b, address_b, host_gateway);
    CHECK(find_frame(got1, is_arp_reply) == nullptr); // the answer went to the asking VM only
    CHECK(find_frame(got2, is_dhcp_reply) == nullptr);

    CHECK(net.mac(*vm2) == mac_b);
    REQUIRE(net.observer().learned.size() == 1);
    CHECK(net.observer().learned[0] == std::pair<std::string, mac_address>{"vm2", mac_b});
    CHECK(net.stats().replies == 2);

    net.stop();
    REQUIRE(test::run_until(io, [&] { return net.port_count() == 0; }));
    REQUIRE(net.observer().detached.size() == 2);
    for (const auto& gone : net.observer().detached) {
        INFO(gone.port);
        CHECK((gone.port == "vm1" || gone.port == "vm2"));
        REQUIRE(gone.backend);
        CHECK(gone.backend->rx_frames == 1);
        CHECK(gone.counters.frames_in == 1);
    }
    CHECK(net.observer().detached[0].port != net.observer().detached[1].port);
    CHECK_FALSE(net.mac(*vm1));
    byte_vector buffer(backend::max_frame_len(1500));
    drain(guest1, got1);
    CHECK(guest1.try_receive(buffer).error() == errc::peer_closed);
}

// --- a VM is untrusted ------------------------------------------------------------------------------

TEST_CASE("network: a VM cannot release, decline or take over another VM's lease") {
    auto net = make_network();
    const auto victim = add_vm(*net, "vm-victim", mac_a);
    const auto attacker = add_vm(*net, "vm-attacker", mac_b);
    const auto victim_ip = lease(*net, victim, mac_a);
    auto& dhcp = net->service<dhcp::service>();

    // In the victim's name (its chaddr and client identifier), from the attacker's own port.
    CHECK(send(*net, attacker, dhcp_frame(mac_b, dhcp_message(msg::message_type::release, mac_a, mac_a, victim_ip))).to(attacker).empty());
    CHECK(send(*net, attacker, dhcp_frame(mac_b, dhcp_message(msg::message_type::decline, mac_a, mac_a, victim_ip))).to(attacker).empty());
    CHECK(dhcp.stats().dropped_foreign_chaddr == 2);
    CHECK(dhcp.stats().releases == 0);
    CHECK(dhcp.stats().declines == 0);
    // Its own chaddr, the victim's client identifier: a REQUEST for the victim's address.
    CHECK(send(*net, attacker, dhcp_frame(mac_b, dhcp_message(msg::message_type::request, mac_b, mac_a, victim_ip))).to(attacker).empty());
    CHECK(dhcp.stats().dropped_foreign_client == 1);

    // The victim keeps its lease; a newcomer gets another address; each kind was reported once.
    const auto held = dhcp.pool().find(victim_ip);
    REQUIRE(held);
    CHECK(held->bound);
    CHECK(held->mac == mac_a);
    const auto newcomer = add_vm(*net, "vm-c", mac_c);
    CHECK(lease(*net, newcomer, mac_c) != victim_ip);
    const auto& refusals = net->observer().refusals;
    REQUIRE(refusals.size() == 2);
    CHECK(refusals[0].kind == dhcp::refusal_kind::foreign_chaddr);
    CHECK(refusals[0].mac == mac_b);
    CHECK(refusals[1].kind == dhcp::refusal_kind::foreign_client);

    // Once the victim's port is gone, its client identifier may bring its address to a new NIC
    // (a VM whose MAC changed keeps its address).
    REQUIRE_FALSE(net->remove_port(victim));
    const auto moved = add_vm(*net, "vm-victim-again", *mac_address::parse("52:54:00:aa:aa:aa"));
    const auto offers = send(*net, moved, dhcp_frame(*mac_address::parse("52:54:00:aa:aa:aa"),
                                                     dhcp_message(msg::message_type::discover,
                                                                  *mac_address::parse("52:54:00:aa:aa:aa"), mac_a, victim_ip)))
                            .to(moved);
    REQUIRE(offers.size() == 1);
    CHECK(open_dhcp(offers[0]).yiaddr == victim_ip);
}

TEST_CASE("network: one VM's DHCP flood is rate limited and reported once, and others still get leases") {
    auto net = make_network();
    const auto attacker = add_vm(*net, "vm-attacker", mac_b);
    const auto discover = dhcp_frame(mac_b, udhcpc_message(captures::udhcpc_discover, mac_b));
    std::size_t answered = 0;
    for (int i = 0; i < 200; ++i) answered += send(*net, attacker, discover).to(attacker).size();
    const auto& limits = net->service<dhcp::service>().limits();
    CHECK(answered == static_cast<std::size_t>(limits.message_burst));
    CHECK(net->service<dhcp::service>().rate_limited() == 200 - answered);
    REQUIRE(net->observer().refusals.size() == 1);
    CHECK(net->observer().refusals[0].kind == dhcp::refusal_kind::rate_limited);

    // Another VM is not limited by the attacker's bucket.
    const auto bystander = add_vm(*net, "vm-bystander", mac_a);
    CHECK(in_default_range(lease(*net, bystander, mac_a)));

    // The attacker's bucket refills with time, at the configured rate.
    net->clock().advance(std::chrono::seconds{1});
    answered = 0;
    for (int i = 0; i < 50; ++i) answered += send(*net, attacker, discover).to(attacker).size();
    CHECK(answered == static_cast<std::size_t>(limits.messages_per_second));
    CHECK(net->observer().refusals.size() == 1); // reported once per minute, not per drop
}

TEST_CASE("network: a VM answering as a DHCP server reaches no other VM, and is reported once") {
    auto net = make_network();
    const auto victim = add_vm(*net, "vm-victim", mac_a);
    const auto rogue = add_vm(*net, "vm-rogue", mac_b);
    // The rogue answers the victim's DISCOVER with an OFFER of its own (as a VM running a DHCP
    // server would): from port 67 to 68, broadcast and unicast to the victim.
    const auto offer = captures::hex(captures::udhcpc_discover); // any DHCP payload: the ports decide
    for (const auto destination : {mac_address::broadcast(), mac_a}) {
        const wire::udp::repr udp{msg::server_port, msg::client_port, offer.size()};
        byte_vector datagram(udp.buffer_len() + offer.size());
        std::copy(offer.begin(), offer.end(), datagram.begin() + static_cast<std::ptrdiff_t>(udp.buffer_len()));
        REQUIRE_FALSE(udp.emit(datagram, ipv4_address{192, 168, 64, 99}, ipv4_address::broadcast()));
        const auto frame = ipv4_frame(mac_b, destination, ipv4_address{192, 168, 64, 99}, ipv4_address::broadcast(),
                                      wire::ipv4::protocol::udp, datagram);
        CHECK(send(*net, rogue, frame).frames.empty());
    }
    CHECK(net->service<dhcp::service>().rogue_server_replies() == 2);
    CHECK(net->stats(rogue)->dropped_by_service == 2);
    REQUIRE(net->observer().refusals.size() == 1); // once per report interval
    CHECK(net->observer().refusals[0].kind == dhcp::refusal_kind::rogue_server);
    CHECK(net->observer().refusals[0].mac == mac_b);
    // The victim's own exchange is the gateway's.
    CHECK(in_default_range(lease(*net, victim, mac_a)));
}

TEST_CASE("network: a VM claiming many addresses by ARP holds no more than its share") {
    gateway_network_options options;
    options.max_addresses_per_vm = 4;
    auto net = make_network(std::move(options));
    const auto attacker = add_vm(*net, "vm-attacker", mac_b);
    const auto other = add_vm(*net, "vm-other", mac_a);
    std::size_t passed = 0;
    for (std::uint8_t host = 10; host < 30; ++host) {
        passed += send(*net, attacker, arp_frame(announce(mac_b, ipv4_address{192, 168, 64, host}))).to(other).size();
    }
    CHECK(passed == 4);
    CHECK(net->service<gateway::arp_guard>().table().held_by(mac_b) == 4);
    CHECK(net->service<gateway::arp_guard>().stats().over_limit_dropped == 16);
    REQUIRE(net->observer().arp_limits.size() == 1);
    CHECK(net->observer().arp_limits[0].limit == 4);
    // The addresses it could not claim stay in the pool for everyone else.
    CHECK(in_default_range(lease(*net, other, mac_a)));
    CHECK(net->service<dhcp::service>().pool().free_count() >= 250 - 4 - 1);
}

// --- the lease file written in the background ------------------------------------------------------

namespace {

/// A shared network whose leases go to `file`, written by the store's own thread.
std::unique_ptr<test_shared_network> make_network_writing(const std::filesystem::path& file) {
    gateway_network_options options;
    options.leases = dhcp::any_lease_store{file, dhcp::write_mode::background};
    return make_network(std::move(options));
}

/// The leases in the lease file now, by address.
std::vector<ipv4_address> leases_on_disk(const std::filesystem::path& file) {
    dhcp::file_lease_store reader{file};
    std::string why;
    auto loaded = reader.load(why);
    INFO(why);
    REQUIRE(loaded);
    std::vector<ipv4_address> addresses;
    for (const auto& l : *loaded) addresses.push_back(l.address);
    return addresses;
}

} // namespace

TEST_CASE("network: with the lease file written in the background, an ACK never leaves before its lease is on disk") {
    test::temp_dir dir;
    const auto file = dir.path / "leases";
    auto net = make_network_writing(file);
    const auto a = add_vm(*net, "vm-a", mac_a);
    const auto b = add_vm(*net, "vm-b", mac_b);
    auto& dhcp = net->service<dhcp::service>();
    const auto& store = dhcp.pool().store();

    const auto offers = send(*net, a, dhcp_frame(mac_a, udhcpc_message(captures::udhcpc_discover, mac_a))).to(a);
    REQUIRE(offers.size() == 1); // an offer changes nothing on disk: it is not held
    const auto offered = open_dhcp(offers[0]).yiaddr;
    CHECK(store.changes() == 0);

    // While the file cannot be written (its temporary name is taken by a directory), the ACK is
    // held, then dropped once the rewrite has failed, and that is reported; the lease stays in
    // memory and the VM's retry gets it.
    std::filesystem::create_directory(file.string() + ".tmp");
    const auto request = dhcp_frame(mac_a, udhcpc_message(captures::udhcpc_request, mac_a, offered));
    CHECK(send(*net, a, request).to(a).empty());
    CHECK(dhcp.held_replies() == 1);
    // Another VM's frames do not wait for the disk.
    CHECK(send(*net, b, ping_frame(mac_b, ipv4_address{192, 168, 64, 77}, default_gateway_mac, gateway_ip)).to(b).size() == 1);
    test::wait_settled(store);
    wire_log flushed;
    net->flush(net->clock().now(), flushed);
    CHECK(flushed.frames.empty());
    CHECK(dhcp.held_replies() == 0);
    CHECK(dhcp.held_dropped_unwritten() == 1);
    REQUIRE(net->observer().store_failures.size() == 1);
    CHECK(net->observer().store_failures[0].error == std::errc::is_a_directory);
    CHECK(net->observer().store_failures[0].replies_dropped == 1);
    CHECK(leases_on_disk(file).empty());

    // The disk is back: the retried REQUEST's ACK goes out — from input() if the writer was
    // already done, else from flush() — and either way the lease is on disk by then.
    std::filesystem::remove(file.string() + ".tmp");
    auto acks = send(*net, a, request).to(a);
    if (acks.empty()) {
        test::wait_settled(store);
        wire_log released;
        net->flush(net->clock().now(), released);
        acks = released.to(a);
    }
    REQUIRE(acks.size() == 1);
    const auto ack = open_dhcp(acks[0]);
    CHECK(ack.type == msg::message_type::ack);
    CHECK(ack.yiaddr == offered);
    CHECK(leases_on_disk(file) == std::vector<ipv4_address>{offered});
    CHECK(dhcp.held_replies() == 0);
}

TEST_CASE("network: attached VMs get their ACKs once the background writer has written the lease file") {
    test::temp_dir dir;
    const auto file = dir.path / "leases";
    boost::asio::io_context io;
    auto net = make_network_writing(file);
    constexpr std::size_t vms = 8;
    std::vector<backend::memory_endpoint> guests;
    std::vector<mac_address> macs;
    for (std::size_t i = 0; i < vms; ++i) {
        auto link = backend::make_memory_link(io.get_executor(), 1500, 64);
        guests.push_back(std::move(link.first));
        macs.push_back(mac_address{{0x52, 0x54, 0x00, 0x77, 0x00, static_cast<std::uint8_t>(i + 1)}});
        REQUIRE(net->attach(fmt::format("vm{}", i), std::move(link.second), port_mac::custom(macs.back())));
    }
    // Every VM asks at once; the ACKs come as the writer wakes the network.
    for (std::size_t i = 0; i < vms; ++i) {
        REQUIRE_FALSE(guests[i].send(dhcp_frame(macs[i], udhcpc_message(captures::udhcpc_discover, macs[i]))));
    }
    std::vector<std::vector<byte_vector>> got(vms);
    std::vector<ipv4_address> offered(vms);
    REQUIRE(test::run_until(io, [&] {
        for (std::size_t i = 0; i < vms; ++i) drain(guests[i], got[i]);
        return std::all_of(got.begin(), got.end(), [](const auto& g) { return find_frame(g, is_dhcp_reply) != nullptr; });
    }));
    for (std::size_t i = 0; i < vms; ++i) {
        const auto offer = open_dhcp(*find_frame(got[i], is_dhcp_reply));
        REQUIRE(offer.type == msg::message_type::offer);
        offered[i] = offer.yiaddr;
        got[i].clear();
        REQUIRE_FALSE(guests[i].send(dhcp_frame(macs[i], udhcpc_message(captures::udhcpc_request, macs[i], offer.yiaddr))));
    }
    REQUIRE(test::run_until(io, [&] {
        for (std::size_t i = 0; i < vms; ++i) drain(guests[i], got[i]);
        return std::all_of(got.begin(), got.end(), [](const auto& g) { return find_frame(g, is_dhcp_reply) != nullptr; });
    }));
    auto on_disk = leases_on_disk(file);
    std::sort(on_disk.begin(), on_disk.end());
    auto expected = offered;
    std::sort(expected.begin(), expected.end());
    CHECK(on_disk == expected);
    for (std::size_t i = 0; i < vms; ++i) {
        const auto ack = open_dhcp(*find_frame(got[i], is_dhcp_reply));
        CHECK(ack.type == msg::message_type::ack);
        CHECK(ack.yiaddr == offered[i]);
    }
    CHECK(net->service<dhcp::service>().held_replies() == 0);
    net->stop();
    REQUIRE(test::run_until(io, [&] { return net->port_count() == 0; }));
}
