/// @file
/// ankanet — what the shared and host modes have in common: a network whose gateway answers ARP
/// and ping for itself, serves DHCP, and referees ARP claims; and the address plan behind it.
///
/// The plan. The subnet names the gateway: the address given, or the first host address when the
/// network address is given (192.168.64.0/24 → gateway 192.168.64.1). DHCP hands out, by default,
/// every host address but the gateway's (.2–.254 on a /24); a range that holds the gateway excludes
/// it. The gateway is also the DHCP server identifier, the router and the DNS server it announces.
#pragma once

#include <ankanet/config.hpp>
#include <ankanet/dhcp/lease_pool.hpp>
#include <ankanet/dhcp/lease_store.hpp>
#include <ankanet/dhcp/server.hpp>
#include <ankanet/dhcp/service.hpp>
#include <ankanet/dns/forwarder.hpp>
#include <ankanet/dns/upstream.hpp>
#include <ankanet/forward/table.hpp>
#include <ankanet/gateway/arp_guard.hpp>
#include <ankanet/gateway/responder.hpp>
#include <ankanet/l2/mac_randomizer.hpp>
#include <ankanet/nat/egress.hpp>
#include <ankanet/nat/translation.hpp>
#include <ankanet/network.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace ankanet {

/// A range of IPv4 addresses, both ends included.
struct address_range {
    ipv4_address first; ///< the lowest address
    ipv4_address last;  ///< the highest address
    /// Memberwise equality.
    bool operator==(const address_range&) const = default;
};

/// The gateway's interface: `given` with its network address replaced by the first host address.
constexpr ipv4_prefix gateway_interface(ipv4_prefix given) noexcept {
    const auto network = given.network().to_u32();
    const auto at = given.address().to_u32() == network ? network + 1 : given.address().to_u32();
    return ipv4_prefix{ipv4_address{at}, given.length()};
}

/// Every host address of the subnet but the gateway's, as one range trimmed at the end where the
/// gateway sits (a gateway in the middle stays inside and is excluded by the pool).
constexpr address_range default_dhcp_range(ipv4_prefix gateway) noexcept {
    const auto network = gateway.network().to_u32();
    const auto broadcast = gateway.broadcast().to_u32();
    const auto at = gateway.address().to_u32();
    address_range hosts{ipv4_address{network + 1}, ipv4_address{broadcast - 1}};
    if (at == network + 1) hosts.first = ipv4_address{network + 2};
    else if (at == broadcast - 1) hosts.last = ipv4_address{broadcast - 2};
    return hosts;
}

/// How a shared or host network is set up; every field has the mode's default.
struct gateway_network_options {
    std::optional<ipv4_prefix> subnet;          ///< default: the mode's (192.168.64.1/24, 192.168.128.1/24)
    std::optional<address_range> dhcp_range;    ///< default: default_dhcp_range()
    std::vector<dhcp::reservation> reservations; ///< fixed addresses for given clients
    std::chrono::seconds lease_time{3600};      ///< how long a DHCP lease lasts
    dhcp::any_lease_store leases;               ///< default: in memory
    std::size_t mtu = backend::default_mtu;     ///< the largest IP packet a frame carries
    bool isolate = false;                       ///< VMs reach the gateway only
    mac_address gateway_mac = default_gateway_mac; ///< the gateway's own MAC
    l2::mac_prefix mac_prefix{};                ///< where random and stable VM MACs are drawn
    std::optional<l2::host_secret> mac_secret;  ///< for port_mac::stable
    std::string domain_name;                    ///< DHCP option 15 when not empty
    std::vector<std::string> search_domains;    ///< DHCP option 119 when not empty
    // What one VM may hold or send (a VM is untrusted; see dhcp/service.hpp, gateway/arp_guard.hpp).
    std::size_t max_leases_per_vm = 1;          ///< bound DHCP leases per VM (per MAC); 0: no limit
    std::size_t max_offers_per_vm = 2;          ///< DHCP offers held at once per VM; 0: no limit
    std::size_t max_addresses_per_vm = 8;       ///< addresses a VM may claim by ARP; 0: no limit
    dhcp::service_limits dhcp_limits{};         ///< DHCP messages per second per VM
    // The NAT (nat/translation.hpp): how guests reach the host and, in shared mode, beyond it.
    nat::runtime_egress egress{};               ///< shared mode: where guests' flows may go (host mode: the host only, always)
    bool host_loopback = true;                  ///< the gateway's address stands for the host's 127.0.0.1
    std::size_t max_flows_per_vm = 1024;        ///< flows one VM may hold per protocol; 0: no limit
    std::size_t max_tcp_flows = 4096;           ///< TCP flows of all VMs at once (the translator's table)
    nat::icmp_socket_kind icmp_sockets = nat::icmp_socket_kind::automatic; ///< what carries guests' pings
    // The gateway's DNS server (dns/forwarder.hpp): its own names, the rest relayed upstream.
    dns::upstream_config dns_upstreams{};       ///< configured servers, else the host's resolv.conf
    // Port forwards (forward/service.hpp): host ports into VMs, listening from the start; more can
    // be added and removed at run time through the network's forward::service.
    std::vector<forward::rule> forwards;        ///< the forwards to open at start
    forward::table_limits forward_limits{};     ///< how many rules and host ports at most
};

/// The gateway's interface of a network of `mode` set up by `options`, or why there is none.
inline result<ipv4_prefix> plan_gateway(network_mode mode, const gateway_network_options& options, std::string* why = nullptr) {
    const auto given = options.subnet ? *options.subnet : default_subnet(mode).value_or(*default_subnet(network_mode::shared));
    const auto gateway = gateway_interface(given);
    if (gateway.length() < 31 && gateway.address() == gateway.broadcast()) {
        if (why != nullptr) *why = fmt::format("{} is the broadcast address of its subnet, not a gateway", gateway.address());
        return make_error_code(dhcp::lease_errc::bad_config);
    }
    return gateway;
}

/// What the DNS server of a network set up by `options` is told about it.
inline dns::forwarder_config dns_for(ipv4_prefix gateway, const gateway_network_options& options) {
    dns::forwarder_config c;
    c.gateway = gateway.address();
    c.gateway_mac = options.gateway_mac;
    c.mtu = options.mtu;
    c.upstreams = options.dns_upstreams;
    c.zone.gateway = gateway.address();
    return c;
}

/// What the NAT translators of a network set up by `options` are told about it.
inline nat::translation_config translation_for(ipv4_prefix gateway, const gateway_network_options& options) {
    nat::translation_config c;
    c.subnet = gateway;
    c.gateway_mac = options.gateway_mac;
    c.host_loopback = options.host_loopback;
    c.mtu = options.mtu;
    return c;
}

/// Builds a network of type Network, whose services are arp_guard, a dhcp::service, the services
/// `middle(gateway)` returns (a tuple: the translators of the mode), and a responder, for `mode`.
/// Refuses, with `why`, what the DHCP pool and server refuse (a range outside the subnet, a
/// reservation outside the range, a lease file that does not load, ...).
template <class Network, class Middle>
result<std::unique_ptr<Network>> make_gateway_network(network_mode mode, gateway_network_options options, std::string* why,
                                                      Middle&& middle) {
    const auto planned = plan_gateway(mode, options, why);
    if (!planned) return planned.error();
    const auto gateway = *planned;
    const auto range = options.dhcp_range.value_or(default_dhcp_range(gateway));

    dhcp::lease_pool_config pool;
    pool.subnet = gateway;
    pool.first = range.first;
    pool.last = range.last;
    pool.lease_time = options.lease_time;
    pool.reservations = std::move(options.reservations);
    pool.max_leases_per_mac = options.max_leases_per_vm;
    pool.max_offers_per_mac = options.max_offers_per_vm;
    const auto at = gateway.address().to_u32();
    if (at >= range.first.to_u32() && at <= range.last.to_u32()) pool.excluded.push_back(gateway.address());

    dhcp::server_config server;
    server.server_address = gateway.address();
    server.server_mac = options.gateway_mac;
    server.interface_mtu = static_cast<std::uint16_t>(std::min<std::size_t>(options.mtu, 0xffff));
    server.domain_name = std::move(options.domain_name);
    server.search_domains = std::move(options.search_domains);
    auto dhcp = dhcp::service::create(std::move(server), std::move(pool), std::move(options.leases), why, options.dhcp_limits);
    if (!dhcp) return dhcp.error();

    network_config config;
    config.subnet = gateway;
    config.gateway_mac = options.gateway_mac;
    config.mtu = options.mtu;
    config.isolate = options.isolate;
    config.mac_prefix = options.mac_prefix;
    config.mac_secret = options.mac_secret;
    gateway::arp_guard guard{{.subnet = gateway,
                              .gateway = gateway.address(),
                              .gateway_mac = options.gateway_mac,
                              .max_per_mac = options.max_addresses_per_vm}};
    return std::apply(
        [&](auto&&... services) {
            return std::make_unique<Network>(std::move(config), std::move(guard), std::move(*dhcp), std::move(services)...,
                                             gateway::responder{gateway.address(), options.gateway_mac});
        },
        std::forward<Middle>(middle)(gateway, options));
}

/// A network of type Network with arp_guard, a dhcp::service and a responder only.
template <class Network>
result<std::unique_ptr<Network>> make_gateway_network(network_mode mode, gateway_network_options options,
                                                      std::string* why = nullptr) {
    return make_gateway_network<Network>(mode, std::move(options), why,
                                         [](ipv4_prefix, const gateway_network_options&) { return std::tuple<>{}; });
}

} // namespace ankanet
