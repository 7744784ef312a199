/// @file
/// ankanet/bridge.hpp — the bridge network card: each VM is its own device on the LAN, with its own
/// address from the LAN's DHCP server; the LAN's router and DNS serve it. No DHCP, NAT or DNS of
/// ankanet's own is compiled in.
///
/// Theory of operation. A bridge network is a basic_network whose gateway port is an uplink
/// (network.hpp, "Uplink"): the learning switch joins the VMs to each other and to the host
/// interface, whose backend (an AF_PACKET socket on Linux, backend/af_packet.hpp) is wrapped by
/// bridge::lan_uplink for the MAC mode (bridge/lan_uplink.hpp):
///  * translate (the default, as the product: "by default, DHCP will not see your VM's MAC
///    address"): frames leave with the interface's MAC and l2::mac_translator maps the replies back
///    by IP address and DHCP transaction, so several VMs share the one MAC an access point accepts;
///    inside each VM its own MAC is seen. The interface need not be promiscuous.
///  * direct: frames leave with the VM's own MAC and the LAN's DHCP server sees each VM as itself;
///    the interface is put in promiscuous mode for as long as the bridge runs (the kernel ends it
///    when the socket closes, however the process ends).
/// The uplink is the interface the options name, else the one $ANKA_BRIDGE_NAME names. One VM cannot
/// take another's address: bridge::address_guard binds each address the LAN's DHCP server
/// acknowledges to its VM and drops another VM's ARP or IPv4 claims on it (DHCP snooping and dynamic
/// ARP inspection, as a managed switch does).
/// A MAC drawn for a VM (random, or stable from its UUID) is never one the LAN uses: the switch
/// learns the sources it sees on the uplink, and the network draws again past any of them
/// (mac_collision_event). With direct MACs, open_bridge_network() also probes the LAN when it starts
/// (bridge/lan_probe.hpp) so that quiet devices speak up; give them bridge_probe_time before adding
/// ports with drawn MACs. With translation a VM's MAC never reaches the LAN, so there is nothing to
/// collide with and nothing is probed.
///
/// @par Example
/// @code
/// #include <ankanet/bridge.hpp>
/// boost::asio::io_context io;
/// std::string why;
/// auto net = ankanet::open_bridge_network(io.get_executor(), {.interface = "eth0"}, &why);
/// if (!net) { std::fprintf(stderr, "%s\n", why.c_str()); return 1; }  // one line: "bridge uplink eth0: ..."
/// auto vm = (*net)->attach("vm1", std::move(tap), ankanet::port_mac::random());
/// io.run();                                                            // the LAN's DHCP server answers
/// @endcode
#pragma once

#include <ankanet/backend/memory.hpp>
#include <ankanet/bridge/address_guard.hpp>
#include <ankanet/bridge/lan_probe.hpp>
#include <ankanet/bridge/lan_uplink.hpp>
#include <ankanet/network.hpp>
#include <ankanet/result.hpp>
#include <ankanet/version.hpp>

#if defined(__linux__)
#include <ankanet/backend/af_packet.hpp>
#endif

#include <boost/asio/any_io_executor.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace ankanet {

/// The traits of bridge networks: the gateway port is an uplink.
template <class Traits = default_network_traits>
struct bridge_traits : Traits {
    static constexpr bool uplink = true; ///< the gateway port is the LAN uplink
};

/// A bridge network with policies of your own (a clock, an observer).
template <class Traits = default_network_traits>
using basic_bridge_network = basic_network<bridge_traits<Traits>, bridge::port_tracker, bridge::address_guard>;

using bridge_network = basic_bridge_network<>; ///< a bridge network with the default traits

/// The environment variable naming the uplink when the options do not.
inline constexpr const char* bridge_interface_variable = "ANKA_BRIDGE_NAME";

/// How long the LAN has to answer the direct-MAC probe before MACs are drawn.
inline constexpr std::chrono::milliseconds bridge_probe_time{500};

/// What a bridge network is built from.
struct bridge_options {
    std::string interface;                              ///< the uplink; empty: $ANKA_BRIDGE_NAME
    bridge::mac_mode mac_mode = bridge::mac_mode::translate; ///< how VM MACs appear on the LAN
    std::size_t mtu = 0;                                ///< offered to VMs; 0: the interface's
    bool isolate = false;                               ///< VMs reach the LAN but not each other
    l2::mac_prefix mac_prefix{};                        ///< where drawn MACs come from
    std::optional<l2::host_secret> mac_secret;          ///< for port_mac::stable
};

/// The uplink interface `options` name: theirs, else $ANKA_BRIDGE_NAME's; none when neither is set.
inline std::optional<std::string> bridge_interface(const bridge_options& options) {
    if (!options.interface.empty()) return options.interface;
    const char* named = std::getenv(bridge_interface_variable);
    if (named != nullptr && *named != '\0') return std::string{named};
    return std::nullopt;
}

/// A bridge network over `uplink` (any frame backend: the host interface's, or a memory link in a
/// test), named `uplink_name` in events. Translate mode needs the uplink's MAC (uplink.mac()):
/// errc::unsupported without one.
template <class Traits = default_network_traits, backend::frame_backend Backend>
result<std::unique_ptr<basic_bridge_network<Traits>>> make_bridge_network(std::string uplink_name, Backend uplink,
                                                                          bridge::mac_mode mode, network_config config,
                                                                          std::string* why = nullptr) {
    auto state = std::make_shared<bridge::uplink_state>();
    state->mode = mode;
    if (mode == bridge::mac_mode::translate) {
        const auto own = uplink.mac();
        if (!own || !own->is_unicast()) {
            if (why != nullptr) *why = fmt::format("bridge uplink {}: MAC translation needs the uplink's own MAC", uplink_name);
            return make_error_code(errc::unsupported);
        }
        state->translator.emplace(*own);
    }
    config.gateway_mac = mac_address{}; // no gateway of its own: the LAN's router serves the VMs
    const auto own = uplink.mac();
    auto network = std::make_unique<basic_bridge_network<Traits>>(std::move(config), bridge::port_tracker{state}, bridge::address_guard{});
    // No VM may take the host interface's MAC: it would get the host's frames, or clash with the translation.
    if (own && own->is_unicast()) (void)network->reserve_mac(*own, basic_bridge_network<Traits>::uplink_holder);
    if (const auto ec = network->connect_uplink(std::move(uplink_name), bridge::lan_uplink<Backend>{std::move(uplink), state})) {
        return ec;
    }
    return network;
}

#if defined(__linux__)

/// Opens the uplink on the interface `options` name (or $ANKA_BRIDGE_NAME) and builds the bridge
/// network over it; with direct MACs, sends the LAN probe (see the top of the file). On failure
/// `why` is one line naming the interface and the cause: none named, no such interface, down, not
/// Ethernet, no CAP_NET_RAW, an MTU above the interface's.
template <class Traits = default_network_traits>
result<std::unique_ptr<basic_bridge_network<Traits>>> open_bridge_network(boost::asio::any_io_executor executor,
                                                                          const bridge_options& options,
                                                                          std::string* why = nullptr) {
    const auto fail = [&](std::error_code ec, std::string text) -> result<std::unique_ptr<basic_bridge_network<Traits>>> {
        if (why != nullptr) *why = std::move(text);
        return ec;
    };
    const auto name = bridge_interface(options);
    if (!name) {
        return fail(make_error_code(std::errc::invalid_argument),
                    fmt::format("bridge mode needs an uplink interface: name one, or set {}", bridge_interface_variable));
    }
    backend::af_packet_options packet;
    packet.promiscuous = options.mac_mode == bridge::mac_mode::direct;
    auto uplink = backend::af_packet_uplink::open(executor, *name, packet);
    if (!uplink) return fail(uplink.error(), fmt::format("bridge uplink {}: {}", *name, uplink.error().message()));
    if (options.mtu > uplink->mtu()) {
        return fail(make_error_code(errc::bad_length),
                    fmt::format("bridge uplink {}: MTU {} is above the interface's {}", *name, options.mtu, uplink->mtu()));
    }
    const mac_address own = *uplink->mac();
    if (options.mac_mode == bridge::mac_mode::translate) {
        const mac_address accepted[] = {own};
        if (const auto ec = uplink->set_accepted_macs(accepted)) return fail(ec, fmt::format("bridge uplink {}: {}", *name, ec.message()));
    } else {
        // From a fresh MAC nobody has a neighbour entry for (lan_probe.hpp).
        l2::mac_randomizer probe_source;
        const auto source = probe_source.draw(l2::mac_registry{});
        std::random_device random;
        if (source) (void)uplink->send(bridge::lan_probe_frame(*source, static_cast<std::uint16_t>(random())));
    }
    network_config config;
    config.mtu = options.mtu == 0 ? uplink->mtu() : options.mtu;
    config.isolate = options.isolate;
    config.mac_prefix = options.mac_prefix;
    config.mac_secret = options.mac_secret;
    return make_bridge_network<Traits>(fmt::format("uplink {}", *name), std::move(*uplink), options.mac_mode, std::move(config), why);
}

#endif // __linux__

} // namespace ankanet
