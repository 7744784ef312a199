/// @file
/// ankanet/disconnected.hpp — the disconnected network card: the cable is unplugged. VMs attach (the
/// NIC exists) but nothing they send goes anywhere and nothing reaches them; per-port counters say
/// what was dropped (network_port_counters::dropped_unplugged). No gateway service — no DHCP, no
/// ARP responder — is compiled into a program that includes only this.
///
/// @par Example
/// @code
/// #include <ankanet/disconnected.hpp>
/// ankanet::disconnected_network net;
/// auto vm = net.attach("vm1", std::move(backend), ankanet::port_mac::random());
/// @endcode
#pragma once

#include <ankanet/backend/memory.hpp>
#include <ankanet/network.hpp>
#include <ankanet/version.hpp>

namespace ankanet {

/// Traits whose network passes nothing.
template <class Traits = default_network_traits>
struct unplugged_traits : Traits {
    static constexpr bool unplugged = true; ///< the network passes nothing
};

/// A disconnected network with policies of your own (a clock, an observer).
template <class Traits = default_network_traits>
class basic_disconnected_network : public basic_network<unplugged_traits<Traits>> {
public:
    /// A network of `config`, whose cable is unplugged.
    explicit basic_disconnected_network(network_config config = {}) : basic_network<unplugged_traits<Traits>>(std::move(config)) {}
};

using disconnected_network = basic_disconnected_network<>; ///< a disconnected network with the default traits

} // namespace ankanet
