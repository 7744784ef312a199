// The DHCP server, whole frames in and out, at a /16 (65 533 addresses), memory store.
//  * bm_exchange: each iteration is one client's full exchange — its DISCOVER (→ OFFER) and its
//    REQUEST (→ ACK) — for a new client every time. The frames are udhcpc's captured ones with the
//    client's MAC, identifier, xid and requested address changed, checksums filled, built before
//    the timed loop. The `fill` argument is how many leases a server grants before it is rebuilt
//    (outside the timed region), so the figure at 65533 covers allocation down to the last address.
//  * bm_renew: one RENEWING REQUEST (unicast, ciaddr set) → ACK, among 65 533 bound clients taken in
//    random order.
// Replies are copied out, as a real caller must. items_per_second is exchanges (or renewals) per
// second; each exchange is two frames in and two out.
#include <ankanet/dhcp/server.hpp>

#include "../tests/support/dhcp_captures.hpp"

#include <ankanet/wire/dhcp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/udp.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <utility>
#include <vector>

namespace {

using namespace ankanet;
namespace msg = ankanet::wire::dhcp;
namespace captures = ankanet::test::dhcp_captures;
using bytes = std::vector<std::byte>;

constexpr ipv4_address gateway{10, 9, 0, 1};
const mac_address gateway_mac{{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}};
constexpr ipv4_address first{10, 9, 0, 2};
constexpr std::uint32_t pool_size = 65533; // 10.9.0.2 - 10.9.255.254
const dhcp::sys_seconds start{dhcp::seconds{1'700'000'000}};

dhcp::server make_server() {
    dhcp::lease_pool_config pc;
    pc.subnet = ipv4_prefix{ipv4_address{10, 9, 0, 0}, 16};
    pc.first = first;
    pc.last = ipv4_address{10, 9, 255, 254};
    pc.lease_time = dhcp::seconds{43200};
    dhcp::server_config config;
    config.server_address = gateway;
    config.server_mac = gateway_mac;
    config.domain_name = "vm.test";
    config.search_domains = {"vm.test"};
    config.interface_mtu = 1500;
    return std::move(*dhcp::server::create(std::move(config), std::move(*dhcp::lease_pool::create(std::move(pc)))));
}

mac_address mac_of(std::uint32_t n) {
    return mac_address{{0x52, 0x54, 0x00, static_cast<std::uint8_t>(n >> 16), static_cast<std::uint8_t>(n >> 8),
                        static_cast<std::uint8_t>(n)}};
}

/// udhcpc's captured message as client n sends it; `edit` adjusts the rest.
template <class Edit>
bytes client_payload(std::string_view golden, std::uint32_t n, Edit edit) {
    const bytes original = captures::hex(golden);
    auto r = *msg::repr::parse(wire::const_bytes{original});
    const auto mac = mac_of(n).octets();
    std::copy(mac.begin(), mac.end(), r.chaddr.begin());
    std::array<std::byte, 7> id{std::byte{1}};
    for (std::size_t i = 0; i < 6; ++i) id[i + 1] = std::byte{mac[i]};
    r.client_id = id;
    r.xid = 0x10000000u + n;
    edit(r);
    bytes out(r.buffer_len());
    (void)r.emit(out);
    return out;
}

bytes frame(const bytes& payload, mac_address source_mac, ipv4_address source, ipv4_address destination,
            mac_address eth_destination) {
    constexpr std::size_t udp_at = wire::ethernet::header_len + wire::ipv4::header_len;
    bytes out(udp_at + wire::udp::header_len + payload.size());
    const wire::mutable_bytes all{out};
    std::copy(payload.begin(), payload.end(), out.begin() + udp_at + wire::udp::header_len);
    (void)wire::udp::repr{msg::client_port, msg::server_port, payload.size()}.emit(all.subspan(udp_at), source, destination);
    wire::ipv4::repr ip;
    ip.source = source;
    ip.destination = destination;
    ip.protocol = wire::ipv4::protocol::udp;
    ip.payload_len = wire::udp::header_len + payload.size();
    (void)ip.emit(all.subspan(wire::ethernet::header_len));
    (void)wire::ethernet::repr{source_mac, eth_destination, wire::ethernet::ethertype::ipv4, std::nullopt}.emit(all);
    return out;
}

ipv4_address address_of(std::uint32_t n) { return ipv4_address{first.to_u32() + n}; }

bytes discover_frame(std::uint32_t n) {
    return frame(client_payload(captures::udhcpc_discover, n, [](msg::repr&) {}), mac_of(n), ipv4_address::any(),
                 ipv4_address::broadcast(), mac_address::broadcast());
}

// SELECTING: a fresh pool hands client n the n-th address of the range.
bytes request_frame(std::uint32_t n) {
    const auto payload = client_payload(captures::udhcpc_request, n, [&](msg::repr& r) {
        r.requested_ip = address_of(n);
        r.server_id = gateway;
    });
    return frame(payload, mac_of(n), ipv4_address::any(), ipv4_address::broadcast(), mac_address::broadcast());
}

// RENEWING: unicast to the server, from the lease's address.
bytes renew_frame(std::uint32_t n) {
    const auto payload = client_payload(captures::udhcpc_request, n, [&](msg::repr& r) {
        r.requested_ip.reset();
        r.server_id.reset();
        r.ciaddr = address_of(n);
    });
    return frame(payload, mac_of(n), address_of(n), gateway, gateway_mac);
}

/// Copies each reply out, as a caller must, and counts them.
struct sink {
    std::array<std::byte, dhcp::server::max_frame_len> copy{};
    std::uint64_t replies = 0;
    void operator()(wire::const_bytes reply) {
        std::memcpy(copy.data(), reply.data(), reply.size());
        ++replies;
    }
};

void bm_exchange(benchmark::State& state) {
    const auto fill = static_cast<std::uint32_t>(state.range(0));
    std::vector<bytes> discovers;
    std::vector<bytes> requests;
    for (std::uint32_t n = 0; n < fill; ++n) {
        discovers.push_back(discover_frame(n));
        requests.push_back(request_frame(n));
    }
    std::optional<dhcp::server> server;
    sink out;
    std::uint64_t acks = 0;
    std::uint32_t n = 0;
    for (auto _ : state) {
        if (!server || n == fill) {
            state.PauseTiming();
            if (server) acks += server->stats().acks;
            server.reset();
            server.emplace(make_server());
            n = 0;
            state.ResumeTiming();
        }
        server->handle(wire::const_bytes{discovers[n]}, start, out);
        server->handle(wire::const_bytes{requests[n]}, start, out);
        ++n;
    }
    if (server) acks += server->stats().acks;
    const auto iterations = static_cast<std::uint64_t>(state.iterations());
    if (acks != iterations || out.replies != 2 * iterations) state.SkipWithError("an exchange failed");
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_exchange)->Arg(1000)->Arg(pool_size);

void bm_renew(benchmark::State& state) {
    auto server = make_server();
    sink out;
    std::vector<bytes> renewals;
    for (std::uint32_t n = 0; n < pool_size; ++n) {
        server.handle(wire::const_bytes{discover_frame(n)}, start, out);
        server.handle(wire::const_bytes{request_frame(n)}, start, out);
        renewals.push_back(renew_frame(n));
    }
    if (server.pool().bound_count() != pool_size) {
        state.SkipWithError("the pool did not fill");
        return;
    }
    std::shuffle(renewals.begin(), renewals.end(), std::mt19937{1});
    const auto acks_before = server.stats().acks;
    std::size_t i = 0;
    auto now = start;
    for (auto _ : state) {
        server.handle(wire::const_bytes{renewals[i]}, now, out);
        if (++i == renewals.size()) {
            i = 0;
            now += dhcp::seconds{1};
        }
    }
    if (server.stats().acks - acks_before != static_cast<std::uint64_t>(state.iterations())) {
        state.SkipWithError("a renewal failed");
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_renew);

} // namespace
