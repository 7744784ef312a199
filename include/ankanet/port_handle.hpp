/// @file
/// ankanet::port_handle — names one port of a basic_network (network.hpp). Its own header so that
/// services can keep a port (a DHCP ACK held for the VM that asked) without the network.
#pragma once

#include <compare>
#include <cstdint>

namespace ankanet {

/// A port of a network: a slot index and the slot's generation when the port was added, so a
/// handle of a removed port is refused rather than taken for the port that reused its slot.
struct port_handle {
    std::uint32_t value = 0; ///< generation in the high 16 bits, slot index in the low 16

    /// The index.
    constexpr std::uint16_t index() const noexcept { return static_cast<std::uint16_t>(value & 0xffffu); }
    /// The generation.
    constexpr std::uint16_t generation() const noexcept { return static_cast<std::uint16_t>(value >> 16); }
    /// The handle of the port at `index` in its `generation`.
    static constexpr port_handle make(std::uint16_t index, std::uint16_t generation) noexcept {
        return port_handle{(std::uint32_t{generation} << 16) | index};
    }
    /// Memberwise ordering.
    constexpr auto operator<=>(const port_handle&) const noexcept = default;
};

} // namespace ankanet
