// The bridge network: the switch with an uplink as its gateway port (network.hpp, "Uplink"), the
// lan_uplink decorator for the MAC modes, the MAC-collision rule and the LAN probe frame. Driven
// through the pure core, and through the Asio glue with a memory link standing for the interface
// (the real interface, an AF_PACKET socket on a veth, is the e2e test's).
#include <ankanet/bridge.hpp>

#include <catch2/catch.hpp>

#include <ankanet/backend/memory.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/checksum.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/udp.hpp>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

using namespace ankanet;
using namespace std::chrono_literals;

namespace {

using bytes = std::vector<std::byte>;

const mac_address uplink_mac = *mac_address::parse("3c:22:fb:01:02:03"); // the host interface's
const mac_address router_mac = *mac_address::parse("00:11:22:33:44:55"); // a device on the LAN
const mac_address vm_a = *mac_address::parse("52:54:00:00:00:0a");
const mac_address vm_b = *mac_address::parse("52:54:00:00:00:0b");
const ipv4_address router_ip{10, 9, 0, 1};
const ipv4_address ip_a{10, 9, 0, 10};
const ipv4_address ip_b{10, 9, 0, 11};

wire::mutable_bytes span(bytes& b) { return {b.data(), b.size()}; }
wire::const_bytes cspan(const bytes& b) { return {b.data(), b.size()}; }

bytes arp_frame(mac_address eth_destination, mac_address eth_source, wire::arp::operation op, mac_address sender_mac,
                ipv4_address sender_ip, mac_address target_mac, ipv4_address target_ip) {
    bytes frame(wire::ethernet::min_frame_len);
    wire::ethernet::repr{eth_source, eth_destination, wire::ethernet::ethertype::arp, std::nullopt}.emit(span(frame));
    REQUIRE_FALSE(wire::arp::repr{op, sender_mac, sender_ip, target_mac, target_ip}.emit(
        span(frame).subspan(wire::ethernet::header_len)));
    return frame;
}

/// A frame of the local experimental EtherType, tagged so a test tells its frames apart.
bytes plain_frame(mac_address destination, mac_address source, std::uint8_t tag) {
    bytes frame(wire::ethernet::min_frame_len);
    wire::ethernet::repr{source, destination, 0x88b5, std::nullopt}.emit(span(frame));
    frame[14] = std::byte{tag};
    return frame;
}

/// A UDP datagram in IPv4 in Ethernet, checksums filled.
bytes udp_frame(mac_address eth_destination, mac_address eth_source, ipv4_address source, ipv4_address destination,
                std::uint16_t source_port, std::uint16_t destination_port, const bytes& payload) {
    bytes frame(wire::ethernet::header_len + wire::ipv4::header_len + wire::udp::header_len + payload.size());
    wire::ethernet::repr{eth_source, eth_destination, wire::ethernet::ethertype::ipv4, std::nullopt}.emit(span(frame));
    auto ip = span(frame).subspan(wire::ethernet::header_len);
    std::copy(payload.begin(), payload.end(), ip.begin() + wire::ipv4::header_len + wire::udp::header_len);
    REQUIRE_FALSE(wire::udp::repr{source_port, destination_port, payload.size()}.emit(ip.subspan(wire::ipv4::header_len), source,
                                                                                     destination));
    wire::ipv4::repr header;
    header.source = source;
    header.destination = destination;
    header.protocol = wire::ipv4::protocol::udp;
    header.payload_len = wire::udp::header_len + payload.size();
    REQUIRE_FALSE(header.emit(ip));
    return frame;
}

/// The LAN's DHCP server acknowledging `address` to `client` (broadcast, as to a client without one).
bytes dhcp_ack(mac_address client, ipv4_address address, std::uint32_t lease_seconds) {
    bytes m(300);
    const auto put = [&](std::size_t at, std::uint8_t v) { m[at] = std::byte{v}; };
    put(0, 2); // BOOTREPLY
    put(1, 1);
    put(2, 6);
    for (std::size_t i = 0; i < 4; ++i) put(16 + i, address.octets()[i]);
    for (std::size_t i = 0; i < 6; ++i) put(28 + i, client.octets()[i]);
    const std::uint8_t options[] = {0x63, 0x82, 0x53, 0x63, 53, 1, 5, 51, 4,
                                    static_cast<std::uint8_t>(lease_seconds >> 24), static_cast<std::uint8_t>(lease_seconds >> 16),
                                    static_cast<std::uint8_t>(lease_seconds >> 8), static_cast<std::uint8_t>(lease_seconds), 255};
    for (std::size_t i = 0; i < sizeof options; ++i) put(236 + i, options[i]);
    return udp_frame(mac_address::broadcast(), router_mac, router_ip, ipv4_address::broadcast(), 67, 68, m);
}

mac_address destination_of(wire::const_bytes frame) { return wire::ethernet::packet<wire::const_bytes>{frame}.destination(); }
mac_address source_of(wire::const_bytes frame) { return wire::ethernet::packet<wire::const_bytes>{frame}.source(); }

struct collision_seen {
    std::string port;
    mac_address mac;
};
struct recorder {
    std::vector<collision_seen> collisions;
    std::vector<bridge::address_claim_refused_event> claims; // (port views not kept)
    void on(const bridge::address_claim_refused_event& e) {
        claims.push_back(e);
        claims.back().port = {};
    }
    std::vector<std::string> uplinks_detached;
    void on(const mac_collision_event& e) { collisions.push_back({std::string(e.port), e.mac}); }
    void on(const uplink_detached_event& e) { uplinks_detached.emplace_back(e.name); }
};

struct test_traits : default_network_traits {
    using clock_type = manual_clock;
    using observer_type = recorder;
};
using test_bridge = basic_bridge_network<test_traits>;

/// Where the pure core's emit sent each frame.
struct sent {
    port_handle to;
    bytes frame;
    wire::offload meta;
};
struct collector {
    std::vector<sent>* out;
    void operator()(port_handle to, wire::const_bytes f) const { out->push_back({to, bytes(f.begin(), f.end()), {}}); }
    void operator()(port_handle to, wire::const_bytes f, const wire::offload& m) const {
        out->push_back({to, bytes(f.begin(), f.end()), m});
    }
};

/// A bridge network driven by hand (no uplink backend: frames for the LAN come out of emit).
struct core_scene {
    std::shared_ptr<bridge::uplink_state> state = std::make_shared<bridge::uplink_state>();
    test_bridge net{network_config{}, bridge::port_tracker{state}, bridge::address_guard{}};
    port_handle a = *net.add_port("vm-a", port_mac::custom(vm_a));
    port_handle b = *net.add_port("vm-b", port_mac::custom(vm_b));
    std::vector<sent> out;

    core_scene() { state->mode = bridge::mac_mode::direct; }
    network_time now() { return net.clock().now(); }
    void from_vm(port_handle p, const bytes& f) { net.input(p, cspan(f), now(), collector{&out}); }
    void from_lan(const bytes& f, const wire::offload& meta = {}) { net.uplink_input(cspan(f), meta, now(), collector{&out}); }
    std::size_t count_to(port_handle p) const {
        return static_cast<std::size_t>(std::count_if(out.begin(), out.end(), [&](const sent& s) { return s.to == p; }));
    }
};

} // namespace

TEST_CASE("bridge: a VM's frames for the LAN leave through the uplink as they are, and the LAN's broadcasts reach every VM") {
    core_scene s;
    const auto to_router = plain_frame(router_mac, vm_a, 1);
    s.from_vm(s.a, to_router);
    // Unknown yet: flooded, to the uplink and the other VM, as a switch floods.
    REQUIRE(s.count_to(test_bridge::uplink_port()) == 1);
    CHECK(s.out.front().frame == to_router);
    CHECK(s.net.stats().uplink_frames_out == 1);

    s.out.clear();
    s.from_lan(arp_frame(mac_address::broadcast(), router_mac, wire::arp::operation::request, router_mac, router_ip, {}, ip_a));
    CHECK(s.count_to(s.a) == 1);
    CHECK(s.count_to(s.b) == 1);
    CHECK(s.count_to(test_bridge::uplink_port()) == 0); // never back where it came from

    // The router is now learned on the uplink: a VM's unicast to it goes there alone.
    s.out.clear();
    s.from_vm(s.a, to_router);
    REQUIRE(s.out.size() == 1);
    CHECK(s.out.front().to == test_bridge::uplink_port());
    CHECK(s.net.stats().gateway_unclaimed == 0);
}

TEST_CASE("bridge: a LAN unicast reaches its VM alone, and one for a MAC no VM holds reaches none") {
    core_scene s;
    s.from_lan(plain_frame(vm_b, router_mac, 2));
    REQUIRE(s.out.size() == 1);
    CHECK(s.out.front().to == s.b);

    // The host's own traffic, or a neighbour's, is not flooded to the VMs.
    s.out.clear();
    s.from_lan(plain_frame(uplink_mac, router_mac, 3));
    CHECK(s.out.empty());
    CHECK(s.net.stats().uplink_not_for_vm == 1);
    // Nor is a runt.
    const bytes runt(10, std::byte{0});
    s.from_lan(runt);
    CHECK(s.out.empty());
    CHECK(s.net.stats().uplink_dropped_bad_size == 1);
}

TEST_CASE("bridge: VMs reach each other through the switch without the uplink, and the LAN cannot take a VM's MAC") {
    core_scene s;
    s.from_vm(s.b, plain_frame(mac_address::broadcast(), vm_b, 1)); // b is learned on its port
    s.out.clear();
    s.from_vm(s.a, plain_frame(vm_b, vm_a, 2));
    REQUIRE(s.out.size() == 1);
    CHECK(s.out.front().to == s.b);

    // A LAN device sourcing vm_b's MAC does not move it: frames for vm_b still go to its port.
    s.from_lan(plain_frame(mac_address::broadcast(), vm_b, 3));
    s.out.clear();
    s.from_vm(s.a, plain_frame(vm_b, vm_a, 4));
    REQUIRE(s.out.size() == 1);
    CHECK(s.out.front().to == s.b);
}

TEST_CASE("bridge: offload metadata of a LAN frame travels with it to the VM's emit, and a plain frame past the MTU is dropped") {
    core_scene s;
    // An unfinished checksum (a veth peer's), within the MTU.
    bytes frame(1400);
    wire::ethernet::repr{router_mac, vm_a, wire::ethernet::ethertype::ipv4, std::nullopt}.emit(span(frame));
    wire::offload meta;
    meta.needs_csum = true;
    meta.csum_start = 34;
    meta.csum_offset = 16;
    s.from_lan(frame, meta);
    REQUIRE(s.out.size() == 1);
    CHECK(s.out.front().to == s.a);
    CHECK(s.out.front().frame.size() == 1400);
    CHECK(s.out.front().meta.needs_csum);
    CHECK(s.out.front().meta.csum_start == 34);
    CHECK(s.out.front().meta.csum_offset == 16);

    // A TCP super-frame (GRO or TSO) passes whole, beyond the MTU.
    bytes big(9000);
    wire::ethernet::repr{router_mac, vm_a, wire::ethernet::ethertype::ipv4, std::nullopt}.emit(span(big));
    s.out.clear();
    s.from_lan(big, wire::offload::tcpv4_gso(34, 66, 1448));
    REQUIRE(s.out.size() == 1);
    CHECK(s.out.front().frame.size() == 9000);
    CHECK(s.out.front().meta.is_gso());
    // The same bytes without GSO cannot reach a VM whose MTU is 1500.
    s.out.clear();
    s.from_lan(big);
    CHECK(s.out.empty());
    CHECK(s.net.stats().uplink_dropped_bad_size == 1);
}

TEST_CASE("bridge: a LAN frame from a VM's MAC is dropped, and no VM may take the uplink's MAC") {
    core_scene s;
    s.from_lan(plain_frame(mac_address::broadcast(), vm_a, 1)); // vm_a has not spoken yet
    CHECK(s.out.empty());
    CHECK(s.net.stats().uplink_source_is_vm == 1);
    s.from_vm(s.b, plain_frame(vm_a, vm_b, 2));
    REQUIRE(s.out.size() == 2); // vm_a is unknown to the switch: flooded, to vm_a and the uplink
    CHECK(s.count_to(s.a) == 1);

    boost::asio::io_context io;
    auto [lan, interface] = backend::make_memory_link(io.get_executor());
    struct with_mac : backend::memory_endpoint {
        std::optional<mac_address> mac() const { return uplink_mac; }
    };
    auto net = make_bridge_network<test_traits>("uplink x", with_mac{std::move(interface)}, bridge::mac_mode::direct, network_config{});
    REQUIRE(net);
    std::string why;
    CHECK_FALSE((*net)->add_port("vm-thief", port_mac::custom(uplink_mac), &why));
    CHECK(why.find("the uplink") != std::string::npos);
    (*net)->stop();
    lan.close();
    io.run_for(20ms);
}

TEST_CASE("bridge: a drawn MAC a device on the LAN uses is held for the LAN and another is drawn") {
    core_scene s;
    // Stable MACs are predictable: the first candidate of this VM is what the LAN device uses.
    network_config config;
    config.mac_secret = *l2::host_secret::parse("000102030405060708090a0b0c0d0e0f");
    const auto uuid = *l2::vm_uuid::parse("6f1c2a3b-4d5e-4f60-8172-839495a6b7c8");
    const auto state = std::make_shared<bridge::uplink_state>();
    test_bridge net{config, bridge::port_tracker{state}, bridge::address_guard{}};
    const mac_address first_choice = *l2::mac_randomizer{{}, config.mac_secret}.stable(uuid, l2::mac_registry{});

    std::vector<sent> out;
    net.uplink_input(cspan(plain_frame(mac_address::broadcast(), first_choice, 1)), net.clock().now(), collector{&out});
    const auto vm = net.add_port("vm-stable", port_mac::stable(uuid));
    REQUIRE(vm);
    CHECK(*net.mac(*vm) != first_choice);
    REQUIRE(net.observer().collisions.size() == 1);
    CHECK(net.observer().collisions.front().port == "vm-stable");
    CHECK(net.observer().collisions.front().mac == first_choice);
    CHECK(net.registry().lookup(first_choice) == std::optional<std::string_view>{"a device on the LAN"});
    // The operator's own choice is not second-guessed: a custom MAC is refused only as held.
    std::string why;
    CHECK_FALSE(net.add_port("vm-custom", port_mac::custom(first_choice), &why));
    CHECK(why.find("a device on the LAN") != std::string::npos);

    // Without the LAN using it, the same VM gets its first choice.
    test_bridge quiet{config, bridge::port_tracker{std::make_shared<bridge::uplink_state>()}, bridge::address_guard{}};
    CHECK(*quiet.mac(*quiet.add_port("vm-stable", port_mac::stable(uuid))) == first_choice);
}

TEST_CASE("bridge: the port tracker follows the VMs for the direct-MAC filter and the translator") {
    const auto state = std::make_shared<bridge::uplink_state>();
    state->translator.emplace(uplink_mac);
    test_bridge net{network_config{}, bridge::port_tracker{state}, bridge::address_guard{}};
    const auto a = net.add_port("vm-a", port_mac::custom(vm_a));
    const auto later = net.add_port("vm-later", port_mac::from_first_frame());
    REQUIRE(a);
    REQUIRE(later);
    CHECK(state->vms == std::vector<mac_address>{vm_a});
    std::vector<sent> out;
    net.input(*later, cspan(plain_frame(mac_address::broadcast(), vm_b, 1)), net.clock().now(), collector{&out});
    CHECK(state->vms == std::vector<mac_address>{vm_a, vm_b});
    CHECK(state->translator->vm_count() == 2);
    REQUIRE_FALSE(net.remove_port(*a));
    CHECK(state->vms == std::vector<mac_address>{vm_b});
    CHECK(state->translator->vm_count() == 1);
}

namespace {

/// A memory link end that has a MAC, as a host interface does.
struct interface_end {
    using executor_type = backend::memory_endpoint::executor_type;
    backend::memory_endpoint end;
    mac_address own;
    executor_type get_executor() const { return end.get_executor(); }
    template <class Handler>
    void async_receive(wire::mutable_bytes buffer, Handler&& h) {
        end.async_receive(buffer, std::forward<Handler>(h));
    }
    result<std::size_t> try_receive(wire::mutable_bytes buffer) { return end.try_receive(buffer); }
    std::error_code send(wire::const_bytes frame) { return end.send(frame); }
    std::size_t mtu() const { return end.mtu(); }
    std::optional<mac_address> mac() const { return own; }
    backend::counters stats() const { return end.stats(); }
    void close() { end.close(); }
};

/// Runs `io` until `done` holds or a second has passed.
template <class Done>
bool run_until(boost::asio::io_context& io, Done done) {
    const auto deadline = std::chrono::steady_clock::now() + 1s;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
        io.run_for(5ms);
        io.restart();
    }
    return done();
}

/// Receives whatever `end` gets into `got`, as long as it runs.
void keep_receiving(backend::memory_endpoint& end, std::vector<bytes>& got, std::vector<std::byte>& buffer) {
    end.async_receive(wire::mutable_bytes{buffer}, [&end, &got, &buffer](std::error_code ec, std::size_t n) {
        if (ec) return;
        got.emplace_back(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
        keep_receiving(end, got, buffer);
    });
}

} // namespace

TEST_CASE("bridge: with translation, two VMs share the uplink's MAC on the LAN and each gets its own replies") {
    boost::asio::io_context io;
    auto [lan, interface] = backend::make_memory_link(io.get_executor());
    auto [vm_a_guest, vm_a_nic] = backend::make_memory_link(io.get_executor());
    auto [vm_b_guest, vm_b_nic] = backend::make_memory_link(io.get_executor());
    auto net = make_bridge_network<test_traits>("uplink test", interface_end{std::move(interface), uplink_mac},
                                                bridge::mac_mode::translate, network_config{});
    REQUIRE(net);
    REQUIRE((*net)->attach("vm-a", std::move(vm_a_nic), port_mac::custom(vm_a)));
    REQUIRE((*net)->attach("vm-b", std::move(vm_b_nic), port_mac::custom(vm_b)));

    std::vector<bytes> on_lan, at_a, at_b;
    std::vector<std::byte> lan_buffer(2048), a_buffer(2048), b_buffer(2048);
    keep_receiving(lan, on_lan, lan_buffer);
    keep_receiving(vm_a_guest, at_a, a_buffer);
    keep_receiving(vm_b_guest, at_b, b_buffer);

    // Each VM asks for the router; both requests reach the LAN from the uplink's MAC.
    REQUIRE_FALSE(vm_a_guest.send(cspan(arp_frame(mac_address::broadcast(), vm_a, wire::arp::operation::request, vm_a, ip_a, {}, router_ip))));
    REQUIRE_FALSE(vm_b_guest.send(cspan(arp_frame(mac_address::broadcast(), vm_b, wire::arp::operation::request, vm_b, ip_b, {}, router_ip))));
    REQUIRE(run_until(io, [&] { return on_lan.size() == 2; }));
    for (const auto& f : on_lan) {
        CHECK(source_of(cspan(f)) == uplink_mac);
        const auto arp = wire::arp::repr::parse(cspan(f).subspan(wire::ethernet::header_len));
        REQUIRE(arp);
        CHECK(arp->sender_mac == uplink_mac);
    }
    // Each VM saw the other's request as it was sent (the switch's copy is not translated).
    REQUIRE(run_until(io, [&] { return at_a.size() == 1 && at_b.size() == 1; }));
    CHECK(source_of(cspan(at_b.front())) == vm_a);

    // The router answers the uplink's MAC for each address: each reply reaches its own VM, with the
    // VM's MAC put back.
    at_a.clear();
    at_b.clear();
    REQUIRE_FALSE(lan.send(cspan(arp_frame(uplink_mac, router_mac, wire::arp::operation::reply, router_mac, router_ip, uplink_mac, ip_a))));
    REQUIRE_FALSE(lan.send(cspan(arp_frame(uplink_mac, router_mac, wire::arp::operation::reply, router_mac, router_ip, uplink_mac, ip_b))));
    REQUIRE(run_until(io, [&] { return at_a.size() == 1 && at_b.size() == 1; }));
    CHECK(destination_of(cspan(at_a.front())) == vm_a);
    CHECK(wire::arp::repr::parse(cspan(at_a.front()).subspan(wire::ethernet::header_len))->target_mac == vm_a);
    CHECK(destination_of(cspan(at_b.front())) == vm_b);

    // The host's own traffic (for the uplink's MAC, an address no VM has) is dropped by the translation.
    const auto dropped = (*net)->service<bridge::port_tracker>().state().dropped_by_translation;
    REQUIRE_FALSE(lan.send(cspan(arp_frame(uplink_mac, router_mac, wire::arp::operation::reply, router_mac, router_ip, uplink_mac,
                                           ipv4_address{10, 9, 0, 99}))));
    REQUIRE(run_until(io, [&] { return (*net)->service<bridge::port_tracker>().state().dropped_by_translation == dropped + 1; }));
    CHECK(at_a.size() == 1);
    CHECK(at_b.size() == 1);

    (*net)->stop();
    lan.close();
    vm_a_guest.close();
    vm_b_guest.close();
    io.run_for(20ms);
}

TEST_CASE("bridge: translation needs the uplink's MAC, and a closed uplink is reported while the VMs stay") {
    boost::asio::io_context io;
    auto [lan, interface] = backend::make_memory_link(io.get_executor());
    std::string why;
    auto refused = make_bridge_network<test_traits>("uplink nomac", std::move(interface), bridge::mac_mode::translate, network_config{}, &why);
    CHECK_FALSE(refused);
    CHECK(why == "bridge uplink uplink nomac: MAC translation needs the uplink's own MAC");

    auto [lan2, interface2] = backend::make_memory_link(io.get_executor());
    auto [guest, nic] = backend::make_memory_link(io.get_executor());
    auto net = make_bridge_network<test_traits>("uplink direct", std::move(interface2), bridge::mac_mode::direct, network_config{});
    REQUIRE(net);
    REQUIRE((*net)->attach("vm-a", std::move(nic), port_mac::custom(vm_a)));
    CHECK((*net)->uplink_stats());
    lan2.close();
    REQUIRE(run_until(io, [&] { return !(*net)->observer().uplinks_detached.empty(); }));
    CHECK((*net)->observer().uplinks_detached.front() == "uplink direct");
    CHECK_FALSE((*net)->uplink_stats());
    CHECK((*net)->port_count() == 1);
    (*net)->stop();
    guest.close();
    lan.close();
    io.run_for(20ms);
}

TEST_CASE("bridge: the LAN probe is an ICMPv6 echo to all nodes from the probe MAC's link-local address") {
    const auto frame = bridge::lan_probe_frame(vm_a, 0x1234);
    const wire::const_bytes f{frame};
    CHECK(destination_of(f) == *mac_address::parse("33:33:00:00:00:01"));
    CHECK(source_of(f) == vm_a);
    const auto* b = reinterpret_cast<const std::uint8_t*>(frame.data());
    CHECK(b[12] == 0x86);
    CHECK(b[13] == 0xdd);
    // fe80::5054:ff:fe00:a (the U/L bit of 52 inverted: 50).
    const std::uint8_t source_ip[16] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x0a};
    CHECK(std::memcmp(b + 22, source_ip, 16) == 0);
    CHECK(b[14 + 40] == 128); // echo request
    // The checksum verifies over the pseudo-header and the message.
    wire::checksum::accumulator sum;
    sum.add(f.subspan(22, 32)).add32(16).add32(58).add(f.subspan(54, 16));
    CHECK(sum.finish() == 0);
}

TEST_CASE("bridge: a VM cannot take an address the LAN's DHCP server gave another VM, by ARP or as its IPv4 source") {
    core_scene s;
    s.from_lan(dhcp_ack(vm_a, ip_a, 600));
    CHECK(s.net.service<bridge::address_guard>().stats().bindings_learned == 1);
    CHECK(s.net.service<bridge::address_guard>().holder(ip_a, s.now().steady) == vm_a);
    // An ACK for a MAC no VM holds (the host's, a neighbour's) binds nothing.
    s.from_lan(dhcp_ack(router_mac, ip_b, 600));
    CHECK(s.net.service<bridge::address_guard>().binding_count() == 1);

    // vm_b announces ip_a (a gratuitous ARP reply): dropped, nothing leaves, reported once.
    s.out.clear();
    const auto claim = arp_frame(mac_address::broadcast(), vm_b, wire::arp::operation::reply, vm_b, ip_a, mac_address::broadcast(), ip_a);
    s.from_vm(s.b, claim);
    s.from_vm(s.b, claim);
    CHECK(s.out.empty());
    CHECK(s.net.service<bridge::address_guard>().stats().arp_refused == 2);
    REQUIRE(s.net.observer().claims.size() == 1); // at most one report a second
    CHECK(s.net.observer().claims.front().address == ip_a);
    CHECK(s.net.observer().claims.front().holder == vm_a);
    // ... nor may it send as ip_a.
    s.from_vm(s.b, udp_frame(router_mac, vm_b, ip_a, router_ip, 5000, 53, bytes(8)));
    CHECK(s.out.empty());
    CHECK(s.net.service<bridge::address_guard>().stats().ip_refused == 1);

    // vm_a itself, and vm_b with an address nobody was given, pass.
    s.from_vm(s.a, arp_frame(mac_address::broadcast(), vm_a, wire::arp::operation::request, vm_a, ip_a, {}, router_ip));
    s.from_vm(s.b, arp_frame(mac_address::broadcast(), vm_b, wire::arp::operation::request, vm_b, ip_b, {}, router_ip));
    CHECK(s.count_to(test_bridge::uplink_port()) == 2);

    // The server moves ip_a to vm_b: now vm_b may use it. And a VM that leaves frees what it held.
    s.from_lan(dhcp_ack(vm_b, ip_a, 600));
    s.out.clear();
    s.from_vm(s.b, claim);
    CHECK(s.count_to(test_bridge::uplink_port()) == 1);
    REQUIRE_FALSE(s.net.remove_port(s.b));
    CHECK(s.net.service<bridge::address_guard>().binding_count() == 0);
    // A binding ends with its lease.
    s.from_lan(dhcp_ack(vm_a, ip_a, 600));
    s.net.clock().advance(601s);
    CHECK_FALSE(s.net.service<bridge::address_guard>().holder(ip_a, s.now().steady));
}
