// ankanet/shared.hpp — the shared network card: NAT + DHCP. VMs get 192.168.64.2–254 from the
// gateway 192.168.64.1, which is also their DHCP server identifier, router and DNS server; they
// reach each other and the gateway. (The NAT translator, DNS forwarder and port forwards plug in
// here as services as they arrive; until then nothing leaves the network.)
//
// @par Example
// @code
// #include <ankanet/shared.hpp>
// auto net = ankanet::make_shared_network({});                  // result<unique_ptr<shared_network>>
// auto vm = (*net)->attach("vm1", std::move(backend), ankanet::port_mac::random());
// io.run();                                                      // the VM gets a lease by DHCP
// @endcode
// Besides the network it brings what an embedder needs to run VMs in-process: memory links
// (backend/memory.hpp) and a DHCP client's frames for an in-process guest (dhcp/client_frames.hpp).
#pragma once

#include <ankanet/backend/memory.hpp>
#include <ankanet/dhcp/client_frames.hpp>
#include <ankanet/dhcp/service.hpp>
#include <ankanet/gateway/arp_guard.hpp>
#include <ankanet/gateway/gateway_network.hpp>
#include <ankanet/gateway/responder.hpp>
#include <ankanet/network.hpp>
#include <ankanet/version.hpp>

#include <memory>
#include <string>

namespace ankanet {

/// A shared network with policies of your own (a clock, an observer): the services are fixed.
template <class Traits = default_network_traits>
using basic_shared_network = basic_network<Traits, gateway::arp_guard, dhcp::service, gateway::responder>;

using shared_network = basic_shared_network<>;

/// A shared network set up by `options` (defaults: 192.168.64.1/24, DHCP .2–.254, leases in memory).
template <class Traits = default_network_traits>
result<std::unique_ptr<basic_shared_network<Traits>>> make_shared_network(gateway_network_options options,
                                                                          std::string* why = nullptr) {
    return make_gateway_network<basic_shared_network<Traits>>(network_mode::shared, std::move(options), why);
}

} // namespace ankanet
