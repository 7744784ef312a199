// ankanet/bridge.hpp — the bridge network card: the VM is its own device on the LAN, with its own
// IP from the LAN's DHCP server; the uplink is the host interface named by ANKA_BRIDGE_NAME or by
// configuration; the VM's MAC is used directly (direct-mac) or translated (l2::mac_translator).
//
// Pending: bridge mode needs its uplink service (an AF_PACKET backend on the host interface), which
// arrives with its own issue. Until then this header names the type so a hypervisor can write its
// mode switch, and instantiating it fails at compile time with a message that says why.
#pragma once

#include <ankanet/network.hpp>

namespace ankanet {

namespace detail {
template <class>
inline constexpr bool bridge_uplink_available = false;
} // namespace detail

/// The bridge network; see above: not available in this release.
template <class Traits = default_network_traits>
class basic_bridge_network {
    static_assert(detail::bridge_uplink_available<Traits>,
                  "ankanet: bridge mode needs the LAN uplink service (AF_PACKET backend), which this release "
                  "does not have yet; use shared_network or host_network");
};

using bridge_network = basic_bridge_network<>;

} // namespace ankanet
