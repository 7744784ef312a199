/// @file
/// ankanet — network modes and their configuration.
///
/// The four network-card types a VM can have, and what each means for ankanet:
/// @code{.unparsed}
///   shared        NAT + DHCP on 192.168.64.0/24; the gateway (also DHCP server and DNS) is .1; VMs reach
///                 the outside world, the host and each other.
///   host          the same on 192.168.128.0/24, but nothing beyond the host is reachable.
///   bridge        the VM is its own device on the LAN; the uplink comes from ANKA_BRIDGE_NAME or config.
///   disconnected  the cable is unplugged: no frame goes anywhere.
/// @endcode
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>

#include <fmt/format.h>

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

namespace ankanet {

/// The network card types.
enum class network_mode { shared, host, bridge, disconnected };

/// Each network_mode with its name (to_string, parsing).
inline constexpr std::array<std::pair<network_mode, std::string_view>, 4> network_mode_names{{
    {network_mode::shared, "shared"},
    {network_mode::host, "host"},
    {network_mode::bridge, "bridge"},
    {network_mode::disconnected, "disconnected"},
}};

/// The text form.
constexpr std::string_view to_string(network_mode mode) noexcept {
    for (const auto& [m, name] : network_mode_names) {
        if (m == mode) return name;
    }
    return "unknown";
}

/// Parses "shared", "host", "bridge" or "disconnected".
inline result<network_mode> parse_network_mode(std::string_view text) noexcept {
    for (const auto& [m, name] : network_mode_names) {
        if (name == text) return m;
    }
    return errc::bad_field;
}

/// The gateway's interface address and subnet a mode uses unless configured otherwise;
/// none for bridge (the LAN's own) and disconnected.
constexpr std::optional<ipv4_prefix> default_subnet(network_mode mode) noexcept {
    switch (mode) {
    case network_mode::shared: return ipv4_prefix{ipv4_address{192, 168, 64, 1}, 24};
    case network_mode::host: return ipv4_prefix{ipv4_address{192, 168, 128, 1}, 24};
    case network_mode::bridge:
    case network_mode::disconnected: return std::nullopt;
    }
    return std::nullopt;
}

/// The gateway's own MAC: locally administered, unicast, spelling "anka" in its middle octets.
inline constexpr mac_address default_gateway_mac{{0x02, 0x61, 0x6e, 0x6b, 0x61, 0x01}};

} // namespace ankanet

/// Formats a network_mode with {fmt}, as its name.
template <>
struct fmt::formatter<ankanet::network_mode> : fmt::formatter<std::string_view> {
    /// Writes the mode's name.
    auto format(ankanet::network_mode mode, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(ankanet::to_string(mode), ctx);
    }
};
