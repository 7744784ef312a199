/// @file
/// ankanet/host.hpp — the host network card: like shared, on 192.168.128.0/24, and nothing beyond
/// the host is reachable. VMs get 192.168.128.2–254 by DHCP from the gateway 192.168.128.1 and reach
/// each other, the gateway, and the host's loopback at the gateway's address. The translators are
/// compiled with the host-only egress policy alone, and without the ICMP translator (a host-mode
/// guest pings the gateway, which answers itself): no code that could carry a flow beyond the host
/// is in a program that includes only this.
///
/// @par Example
/// @code
/// #include <ankanet/host.hpp>
/// boost::asio::io_context io;
/// auto net = ankanet::make_host_network(io.get_executor(), {.lease_time = std::chrono::minutes{10}});
/// @endcode
/// Besides the network it brings what an embedder needs to run VMs in-process: memory links
/// (backend/memory.hpp) and a DHCP client's frames for an in-process guest (dhcp/client_frames.hpp).
#pragma once

#include <ankanet/backend/memory.hpp>
#include <ankanet/dhcp/client_frames.hpp>
#include <ankanet/dhcp/service.hpp>
#include <ankanet/dns/gateway_dns.hpp>
#include <ankanet/forward/service.hpp>
#include <ankanet/gateway/arp_guard.hpp>
#include <ankanet/gateway/gateway_network.hpp>
#include <ankanet/gateway/responder.hpp>
#include <ankanet/nat/egress.hpp>
#include <ankanet/nat/tcp.hpp>
#include <ankanet/nat/udp.hpp>
#include <ankanet/network.hpp>
#include <ankanet/version.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <memory>
#include <string>
#include <tuple>

namespace ankanet {

/// The traits of host networks: a distinct type, so host and shared networks never mix.
template <class Traits = default_network_traits>
struct host_traits : Traits {};

/// A host network with policies of your own (a clock, an observer).
template <class Traits = default_network_traits>
using basic_host_network =
    basic_network<host_traits<Traits>, gateway::arp_guard, dhcp::service, dns::gateway_dns,
                  nat::tcp_translator<nat::egress_host_only>, nat::udp_translator<nat::egress_host_only>, forward::service,
                  gateway::responder>;

using host_network = basic_host_network<>; ///< a host network with the default traits

/// A host network set up by `options` (defaults: 192.168.128.1/24, DHCP .2–.254, leases in memory),
/// whose host sockets run on `executor`. `options.egress` is not used: host mode reaches the host only.
template <class Traits = default_network_traits>
result<std::unique_ptr<basic_host_network<Traits>>> make_host_network(boost::asio::any_io_executor executor,
                                                                      gateway_network_options options,
                                                                      std::string* why = nullptr) {
    const auto translators = [&](ipv4_prefix gateway, const gateway_network_options& o) {
        nat::udp_limits udp;
        udp.max_flows_per_vm = o.max_flows_per_vm;
        nat::tcp_limits tcp;
        tcp.capacity = o.max_tcp_flows;
        tcp.vm_flows = o.max_flows_per_vm == 0 ? tcp.capacity : o.max_flows_per_vm;
        const auto config = translation_for(gateway, o);
        dns::gateway_dns resolver{executor, dns_for(gateway, o)};
        nat::tcp_translator<nat::egress_host_only> tcp_nat{executor, config, {}, tcp};
        tcp_nat.map_gateway_port(53, resolver.tcp_endpoint()); // DNS over TCP at the gateway
        return std::tuple{std::move(resolver), std::move(tcp_nat), nat::udp_translator<nat::egress_host_only>{executor, config, {}, udp},
                          forward::service{executor, config, {.table = o.forward_limits}}};
    };
    try {
        const auto forwards = options.forwards;
        auto network = make_gateway_network<basic_host_network<Traits>>(network_mode::host, std::move(options), why, translators);
        if (network) {
            if (const auto ec = forward::add_forwards(**network, forwards, why)) return ec;
        }
        return network;
    } catch (const boost::system::system_error& e) { // the DNS listener could not listen
        if (why != nullptr) *why = std::string{"the gateway's DNS over TCP: "} + e.what();
        return std::error_code{e.code()};
    }
}

} // namespace ankanet
