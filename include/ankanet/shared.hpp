/// @file
/// ankanet/shared.hpp — the shared network card: NAT + DHCP. VMs get 192.168.64.2–254 from the
/// gateway 192.168.64.1, which is also their DHCP server identifier, router and DNS server; they
/// reach each other, the gateway, and — through the NAT translators, over host sockets — the host
/// (its loopback, at the gateway's address) and everything the egress policy allows beyond it.
///
/// @par Example
/// @code
/// #include <ankanet/shared.hpp>
/// boost::asio::io_context io;
/// auto net = ankanet::make_shared_network(io.get_executor(), {});   // result<unique_ptr<shared_network>>
/// auto vm = (*net)->attach("vm1", std::move(backend), ankanet::port_mac::random());
/// io.run();                                                          // the VM gets a lease by DHCP
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
#include <ankanet/nat/icmp.hpp>
#include <ankanet/nat/tcp.hpp>
#include <ankanet/nat/udp.hpp>
#include <ankanet/network.hpp>
#include <ankanet/version.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <memory>
#include <string>
#include <tuple>
#include <type_traits>

namespace ankanet {

/// A shared network with policies of your own: a clock, an observer (Traits) and where guests'
/// flows may go (Egress, an egress_policy; runtime_egress chooses at run time from the options).
template <class Traits = default_network_traits, nat::egress_policy Egress = nat::runtime_egress>
using basic_shared_network =
    basic_network<Traits, gateway::arp_guard, dhcp::service, dns::gateway_dns, nat::tcp_translator<Egress>,
                  nat::udp_translator<Egress>, nat::icmp_translator<Egress>, forward::service, gateway::responder>;

using shared_network = basic_shared_network<>; ///< a shared network with the default traits and runtime_egress

/// A shared network set up by `options` (defaults: 192.168.64.1/24, DHCP .2–.254, leases in memory,
/// egress anywhere), whose host sockets run on `executor`. With a static Egress other than
/// runtime_egress, `options.egress` is not used: the policy is Egress{}.
template <class Traits = default_network_traits, nat::egress_policy Egress = nat::runtime_egress>
result<std::unique_ptr<basic_shared_network<Traits, Egress>>> make_shared_network(boost::asio::any_io_executor executor,
                                                                                  gateway_network_options options,
                                                                                  std::string* why = nullptr) {
    const auto translators = [&](ipv4_prefix gateway, const gateway_network_options& o) {
        const auto config = translation_for(gateway, o);
        Egress egress = [&] {
            if constexpr (std::is_same_v<Egress, nat::runtime_egress>) return o.egress;
            else return Egress{};
        }();
        nat::udp_limits udp;
        udp.max_flows_per_vm = o.max_flows_per_vm;
        nat::icmp_limits icmp;
        icmp.sockets = o.icmp_sockets;
        icmp.max_flows_per_vm = std::min<std::size_t>(o.max_flows_per_vm, icmp.max_flows_per_vm);
        nat::tcp_limits tcp;
        tcp.capacity = o.max_tcp_flows;
        tcp.vm_flows = o.max_flows_per_vm == 0 ? tcp.capacity : o.max_flows_per_vm;
        dns::gateway_dns resolver{executor, dns_for(gateway, o)};
        nat::tcp_translator<Egress> tcp_nat{executor, config, egress, tcp};
        tcp_nat.map_gateway_port(53, resolver.tcp_endpoint()); // DNS over TCP at the gateway
        return std::tuple{std::move(resolver), std::move(tcp_nat), nat::udp_translator<Egress>{executor, config, egress, udp},
                          nat::icmp_translator<Egress>{executor, config, egress, icmp},
                          forward::service{executor, config, {.table = o.forward_limits}}};
    };
    try {
        const auto forwards = options.forwards;
        auto network = make_gateway_network<basic_shared_network<Traits, Egress>>(network_mode::shared, std::move(options), why,
                                                                                  translators);
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
