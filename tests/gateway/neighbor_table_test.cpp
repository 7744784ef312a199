#include <ankanet/gateway/neighbor_table.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <map>
#include <optional>

using namespace ankanet;
using namespace ankanet::wire;
using namespace std::chrono_literals;

namespace {

using table_type = gateway::neighbor_table;
using time_point = table_type::time_point;

const mac_address guest_mac = *mac_address::parse("52:54:00:12:34:56");
const mac_address other_mac = *mac_address::parse("52:54:00:ab:cd:ef");
const mac_address gateway_mac = *mac_address::parse("02:61:6e:6b:61:01");
constexpr ipv4_address gateway_ip{192, 168, 64, 1};
constexpr ipv4_address guest_ip{192, 168, 64, 2};

// Captured on a veth: a Linux guest (192.168.64.2, 52:54:00:12:34:56) asking for the gateway.
constexpr auto real_arp_request = make_bytes(
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, 0x00, 0x01,
    0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0, 0xa8, 0x40, 0x02,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x40, 0x01);

/// An ARP frame from `mac` with the given sender and target addresses (gratuitous when equal).
std::array<std::byte, 42> arp_frame(mac_address mac, ipv4_address sender, ipv4_address target,
                                    arp::operation op = arp::operation::request) {
    std::array<std::byte, 42> frame{};
    const ethernet::repr eth{mac, mac_address::broadcast(), ethernet::ethertype::arp, std::nullopt};
    const arp::repr a{op, mac, sender, mac_address{}, target};
    REQUIRE_FALSE(eth.emit(frame));
    REQUIRE_FALSE(a.emit(mutable_bytes{frame}.subspan(eth.buffer_len())));
    return frame;
}

table_type make_table(std::size_t capacity = 16) {
    return table_type{{.subnet = *ipv4_prefix::parse("192.168.64.1/24"),
                       .gateway = gateway_ip,
                       .gateway_mac = gateway_mac,
                       .lifetime = 60s,
                       .capacity = capacity}};
}

const time_point t0{};

} // namespace

TEST_CASE("neighbor table: learns a guest from a real ARP request and refreshes it") {
    auto table = make_table();
    CHECK(table.observe(real_arp_request, t0) == gateway::neighbor_observation::learned);
    CHECK(table.lookup(guest_ip, t0 + 1s) == guest_mac);
    CHECK(table.observe(real_arp_request, t0 + 30s) == gateway::neighbor_observation::refreshed);
    // Refreshed at +30 s, so it is still fresh at +80 s, and gone at +90 s.
    CHECK(table.lookup(guest_ip, t0 + 80s) == guest_mac);
    CHECK_FALSE(table.lookup(guest_ip, t0 + 90s));
    CHECK(table.stats().learned == 1);
    CHECK(table.stats().refreshed == 1);
}

TEST_CASE("neighbor table: a guest with a static address is learned from its gratuitous ARP") {
    auto table = make_table();
    constexpr ipv4_address static_ip{192, 168, 64, 200};
    CHECK(table.observe(arp_frame(other_mac, static_ip, static_ip), t0) == gateway::neighbor_observation::learned);
    CHECK(table.lookup(static_ip, t0) == other_mac);
    // A gratuitous ARP reply (the other announcement form) refreshes it.
    CHECK(table.observe(arp_frame(other_mac, static_ip, static_ip, arp::operation::reply), t0 + 1s) ==
          gateway::neighbor_observation::refreshed);
}

TEST_CASE("neighbor table: a second MAC claiming a leased address is a conflict and the holder keeps it") {
    auto table = make_table();
    std::map<ipv4_address, mac_address> leases{{guest_ip, guest_mac}};
    auto holder = [&](ipv4_address a) -> std::optional<mac_address> {
        const auto it = leases.find(a);
        return it == leases.end() ? std::nullopt : std::optional{it->second};
    };
    gateway::neighbor_conflict conflict{};
    // The impostor speaks first: the lease still decides.
    CHECK(table.observe(arp_frame(other_mac, guest_ip, guest_ip), t0, holder, &conflict) ==
          gateway::neighbor_observation::conflict);
    CHECK(conflict.address == guest_ip);
    CHECK(conflict.holder == guest_mac);
    CHECK(conflict.claimant == other_mac);
    CHECK(conflict.leased);
    CHECK_FALSE(conflict.gateway);
    CHECK_FALSE(table.lookup(guest_ip, t0));

    CHECK(table.observe(real_arp_request, t0 + 1s, holder) == gateway::neighbor_observation::learned);
    CHECK(table.observe(arp_frame(other_mac, guest_ip, gateway_ip), t0 + 2s, holder, &conflict) ==
          gateway::neighbor_observation::conflict);
    CHECK(table.lookup(guest_ip, t0 + 2s) == guest_mac);
    CHECK(table.stats().conflicts == 2);
}

TEST_CASE("neighbor table: without a lease, a fresh earlier claim stands and a stale one can be taken over") {
    auto table = make_table();
    constexpr ipv4_address static_ip{192, 168, 64, 50};
    gateway::neighbor_conflict conflict{};
    CHECK(table.observe(arp_frame(guest_mac, static_ip, static_ip), t0) == gateway::neighbor_observation::learned);
    CHECK(table.observe(arp_frame(other_mac, static_ip, static_ip), t0 + 59s, gateway::no_leases{}, &conflict) ==
          gateway::neighbor_observation::conflict);
    CHECK(conflict.holder == guest_mac);
    CHECK_FALSE(conflict.leased);
    // The holder went quiet for a whole lifetime: the address moves to the new claimant.
    CHECK(table.observe(arp_frame(other_mac, static_ip, static_ip), t0 + 61s) == gateway::neighbor_observation::learned);
    CHECK(table.lookup(static_ip, t0 + 61s) == other_mac);
}

TEST_CASE("neighbor table: a lease outranks an earlier static claim") {
    auto table = make_table();
    CHECK(table.observe(arp_frame(other_mac, guest_ip, guest_ip), t0) == gateway::neighbor_observation::learned);
    auto holder = [](ipv4_address) -> std::optional<mac_address> { return guest_mac; };
    CHECK(table.observe(real_arp_request, t0 + 1s, holder) == gateway::neighbor_observation::learned);
    CHECK(table.lookup(guest_ip, t0 + 1s) == guest_mac);
}

TEST_CASE("neighbor table: a guest claiming the gateway's own address is a conflict") {
    auto table = make_table();
    gateway::neighbor_conflict conflict{};
    CHECK(table.observe(arp_frame(guest_mac, gateway_ip, gateway_ip), t0, gateway::no_leases{}, &conflict) ==
          gateway::neighbor_observation::conflict);
    CHECK(conflict.gateway);
    CHECK(conflict.holder == gateway_mac);
    CHECK(table.size() == 0);
}

TEST_CASE("neighbor table: probes, foreign addresses, and non-ARP frames claim nothing") {
    auto table = make_table();
    // RFC 5227 probe: sender 0.0.0.0.
    CHECK(table.observe(arp_frame(guest_mac, ipv4_address{}, guest_ip), t0) == gateway::neighbor_observation::ignored);
    CHECK(table.observe(arp_frame(guest_mac, ipv4_address{10, 0, 0, 5}, gateway_ip), t0) ==
          gateway::neighbor_observation::ignored);
    CHECK(table.observe(arp_frame(guest_mac, ipv4_address{192, 168, 64, 0}, gateway_ip), t0) ==
          gateway::neighbor_observation::ignored);
    CHECK(table.observe(arp_frame(guest_mac, ipv4_address{192, 168, 64, 255}, gateway_ip), t0) ==
          gateway::neighbor_observation::ignored);
    CHECK(table.stats().ignored == 4);

    auto ipv4_frame = real_arp_request;
    ipv4_frame[12] = std::byte{0x08};
    ipv4_frame[13] = std::byte{0x00};
    CHECK(table.observe(ipv4_frame, t0) == gateway::neighbor_observation::not_arp);
    CHECK(table.size() == 0);
}

TEST_CASE("neighbor table: every truncation of an ARP frame is ignored or counted, never read past") {
    auto table = make_table();
    const const_bytes whole{real_arp_request};
    for (std::size_t len = 0; len < whole.size(); ++len) {
        const auto result = table.observe(whole.first(len), t0);
        CHECK((result == gateway::neighbor_observation::not_arp || result == gateway::neighbor_observation::ignored));
    }
    CHECK(table.size() == 0);
    CHECK(table.stats().malformed == whole.size() - ethernet::header_len);
}

TEST_CASE("neighbor table: memory is bounded, and a full table replaces stale entries only") {
    auto table = make_table(4);
    for (std::uint8_t host = 10; host < 14; ++host) {
        const ipv4_address a{192, 168, 64, host};
        const mac_address m{{0x52, 0x54, 0, 0, 0, host}};
        REQUIRE(table.observe(arp_frame(m, a, a), t0) == gateway::neighbor_observation::learned);
    }
    const ipv4_address extra{192, 168, 64, 20};
    CHECK(table.observe(arp_frame(other_mac, extra, extra), t0 + 1s) == gateway::neighbor_observation::table_full);
    CHECK(table.size() == 4);
    CHECK(table.observe(arp_frame(other_mac, extra, extra), t0 + 61s) == gateway::neighbor_observation::learned);
    CHECK(table.size() == 4);
    CHECK(table.forget(other_mac) == 1);
    CHECK(table.size() == 3);
}
