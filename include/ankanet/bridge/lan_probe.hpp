/// @file
/// ankanet::bridge::lan_probe_frame — the frame a bridge sends to find out which MACs the LAN uses.
///
/// Theory of operation. With direct MACs a VM's address is on the LAN's wire, so it must not be one
/// a device there already has (two NICs with one MAC break both). The network learns every source
/// it sees on the uplink (network.hpp, "Uplink") and never draws a MAC learned there; this probe
/// makes the quiet devices speak up when the bridge starts. It is an ICMPv6 echo request to the
/// all-nodes group ff02::1 (RFC 4443; RFC 4291 §2.7.1): every IPv6 host on the link takes it, and
/// Linux answers it by default (net.ipv6.icmp.echo_ignore_multicast = 0). The probe comes from a
/// fresh random MAC and its EUI-64 link-local address (RFC 4291 appendix A), which no host has a
/// neighbour entry for, so each one first asks for it with a neighbour solicitation to the
/// solicited-node group (RFC 4861 §7.2.2): a multicast frame with the host's own MAC as its source,
/// which the uplink's filter lets up and the switch learns. Nobody answers the solicitation, so no
/// echo reply follows, and the host forgets the address once its neighbour entry fails.
/// Limits: only hosts with IPv6 on the link answer; IPv4-only devices are found when they speak
/// (ARP, DHCP) instead. Best effort by nature: a device that stays silent cannot be seen.
#pragma once

#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/checksum.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ankanet::bridge {

/// The probe's length: Ethernet (14) + IPv6 (40) + ICMPv6 echo (8) + 8 bytes of data.
inline constexpr std::size_t lan_probe_len = 14 + 40 + 8 + 8;

/// The probe frame from `source` (a unicast MAC of no device on the LAN), echo identifier `id`.
inline std::array<std::byte, lan_probe_len> lan_probe_frame(mac_address source, std::uint16_t id) noexcept {
    std::array<std::uint8_t, lan_probe_len> f{};
    const auto& mac = source.octets();
    // Ethernet: to 33:33:00:00:00:01 (IPv6 multicast ff02::1, RFC 2464 §7), IPv6.
    const std::uint8_t all_nodes_mac[6] = {0x33, 0x33, 0x00, 0x00, 0x00, 0x01};
    std::memcpy(f.data(), all_nodes_mac, 6);
    std::memcpy(f.data() + 6, mac.data(), 6);
    f[12] = 0x86;
    f[13] = 0xdd;
    // IPv6: version 6, payload 16 bytes, next header ICMPv6 (58), hop limit 255.
    std::uint8_t* ip = f.data() + 14;
    ip[0] = 0x60;
    ip[5] = 16;
    ip[6] = 58;
    ip[7] = 255;
    // Source fe80::/64 with the EUI-64 interface identifier: the MAC with ff:fe in the middle and
    // the universal/local bit inverted.
    std::uint8_t* src = ip + 8;
    src[0] = 0xfe;
    src[1] = 0x80;
    src[8] = static_cast<std::uint8_t>(mac[0] ^ 0x02);
    src[9] = mac[1];
    src[10] = mac[2];
    src[11] = 0xff;
    src[12] = 0xfe;
    src[13] = mac[3];
    src[14] = mac[4];
    src[15] = mac[5];
    std::uint8_t* dst = ip + 24;
    dst[0] = 0xff;
    dst[1] = 0x02;
    dst[15] = 0x01;
    // ICMPv6 echo request (type 128), identifier, sequence 1, then a fixed pattern.
    std::uint8_t* icmp = ip + 40;
    icmp[0] = 128;
    icmp[4] = static_cast<std::uint8_t>(id >> 8);
    icmp[5] = static_cast<std::uint8_t>(id);
    icmp[7] = 1;
    std::memcpy(icmp + 8, "ankanet?", 8);
    // Checksum over the IPv6 pseudo-header (RFC 8200 §8.1): addresses, length, next header.
    wire::checksum::accumulator sum;
    sum.add(wire::const_bytes{reinterpret_cast<const std::byte*>(src), 32});
    sum.add32(16).add32(58);
    sum.add(wire::const_bytes{reinterpret_cast<const std::byte*>(icmp), 16});
    const std::uint16_t checksum = sum.finish();
    icmp[2] = static_cast<std::uint8_t>(checksum >> 8);
    icmp[3] = static_cast<std::uint8_t>(checksum);

    std::array<std::byte, lan_probe_len> out{};
    std::memcpy(out.data(), f.data(), f.size());
    return out;
}

} // namespace ankanet::bridge
