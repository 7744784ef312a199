/// @file
/// ankanet::nat translation basics — what the TCP, UDP and ICMP translators share: which guest
/// datagrams are theirs, where on the host a guest's destination lies, and how a datagram towards a
/// guest is framed.
///
/// Theory of operation. A VM sends IPv4 to the gateway's MAC either for the gateway itself or for
/// somewhere it routes through the gateway. The translators look at those datagrams before the
/// switch does (they are vm_frame_inspectors) and take the ones they carry:
///   - a destination outside the network's subnet: the remote is that address, on the host side;
///   - the gateway's own address, when the gateway stands for the host (`host_loopback`, on by
///     default): the remote is the host's loopback (127.0.0.1), so a guest reaches a server the host
///     runs on 127.0.0.1 at 192.168.64.1, as users of the product reach services on their Mac.
///     Services that answer at the gateway themselves (DHCP, DNS, ping) come before the translators
///     in a network's services and take their datagrams first.
/// Everything else in the subnet (other VMs, the broadcast address) is the switch's. A destination
/// no host may send to (is_martian_guest_destination: 127/8 on the wire, 0/8, multicast, class E)
/// is dropped and counted, never mapped. So is a datagram whose sender is not who its port says:
/// an Ethernet source other than the port's MAC, or an IPv4 source outside the subnet (or the
/// gateway's or the broadcast address) — a VM answers for its own traffic only. Fragments are not reassembled (a translator carries flows,
/// and a flow's later fragments carry no ports): they are dropped and counted, as passt does.
///
/// Frames towards a guest come from the gateway's MAC, with the remote as the IPv4 source (or the
/// gateway's address for flows that went to host loopback), built by write_guest_headers() in a
/// caller's buffer: Ethernet and IPv4 header, the L4 bytes after them are the caller's.
#pragma once

#include <ankanet/config.hpp>
#include <ankanet/nat/egress.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <algorithm>
#include <chrono>
#include <optional>
#include <string_view>

namespace ankanet::nat {

/// What every translator of a network is told about it.
struct translation_config {
    wire::ipv4_prefix subnet{wire::ipv4_address{192, 168, 64, 1}, 24}; ///< address(): the gateway's
    wire::mac_address gateway_mac = default_gateway_mac; ///< the gateway's own MAC
    bool host_loopback = true;  ///< the gateway's address stands for the host's loopback
    wire::ipv4_address host_loopback_address{127, 0, 0, 1}; ///< where flows to the gateway's address go on the host
    std::size_t mtu = 1500;     ///< the largest IPv4 datagram a frame towards a guest may carry
};

/// Which host sockets carry guests' pings.
enum class icmp_socket_kind : std::uint8_t {
    automatic, ///< ping sockets where allowed, else a raw socket, else none
    ping,      ///< ping sockets only
    raw,       ///< a raw socket only
};

/// Where a guest's datagram goes, as the translators see it.
enum class guest_route : std::uint8_t {
    not_ours,  ///< not IPv4 to the gateway's MAC, or for the subnet: the switch's
    translate, ///< to be carried to `remote` on the host side
    martian,   ///< to a destination no host may send to: drop and count
    fragment,  ///< a fragment: drop and count (not reassembled)
    spoofed,   ///< not from the port's MAC, or from an address no VM of the subnet can have: drop and count
};

/// Where a packet from the host goes: which VM, and the address and port it is given.
struct guest_destination {
    guest_route route = guest_route::not_ours; ///< route
    wire::ipv4_address remote; ///< the host-side destination (host loopback for the gateway)
};

/// Classifies a frame the VM whose port's MAC is `port_mac` sent (see the theory of operation).
/// Protocol and ports are the caller's to check; this only says whether, and where, the datagram
/// would be carried.
inline guest_destination classify(const wire::parsed_frame& frame, const translation_config& config,
                                  wire::mac_address port_mac) noexcept {
    if (!frame.is_ipv4() || frame.destination != config.gateway_mac) return {};
    const auto to = frame.ip_destination;
    wire::ipv4_address remote = to;
    if (to == config.subnet.address()) {
        if (!config.host_loopback) return {};
        remote = config.host_loopback_address;
    } else if (config.subnet.contains(to)) {
        return {};
    } else if (is_martian_guest_destination(to)) {
        return {guest_route::martian, to};
    }
    const auto from = frame.ip_source;
    if (frame.source != port_mac || !config.subnet.contains(from) || from == config.subnet.address() ||
        from == config.subnet.network() || from == config.subnet.broadcast()) {
        return {guest_route::spoofed, remote};
    }
    if (frame.is_fragment()) return {guest_route::fragment, remote};
    return {guest_route::translate, remote};
}

/// Bytes of Ethernet and IPv4 header write_guest_headers() writes: the L4 bytes start here.
inline constexpr std::size_t guest_headers_len = wire::ethernet::header_len + wire::ipv4::header_len;

/// Writes the Ethernet (gateway → VM) and IPv4 (from `source` to `destination`, `protocol`, with
/// `l4_len` bytes of payload) headers at the start of `frame`. DF is set: the translators size what
/// they send to the MTU. Returns the frame's total length, or 0 if `frame` is too small or `l4_len`
/// too long for one IPv4 datagram.
inline std::size_t write_guest_headers(wire::mutable_bytes frame, wire::mac_address gateway_mac, wire::mac_address vm_mac,
                                       wire::ipv4_address source, wire::ipv4_address destination,
                                       std::uint8_t protocol, std::size_t l4_len, std::uint16_t identification = 0) noexcept {
    if (frame.size() < guest_headers_len + l4_len) return 0;
    wire::ethernet::repr eth{gateway_mac, vm_mac, wire::ethernet::ethertype::ipv4, std::nullopt};
    if (eth.emit(frame)) return 0;
    wire::ipv4::repr ip;
    ip.source = source;
    ip.destination = destination;
    ip.protocol = protocol;
    ip.payload_len = l4_len;
    ip.identification = identification;
    ip.dont_fragment = true;
    if (ip.emit(frame.subspan(wire::ethernet::header_len))) return 0;
    return guest_headers_len + l4_len;
}

/// Writes an ICMP error (`type`, `code`) from `source` to the guest at `destination`, quoting
/// `quoted` (the guest's IPv4 header and the first bytes after it; trimmed to 28 + 64 bytes, as
/// much as RFC 1812 4.3.2.3 lets a router quote without exceeding 576 bytes in every case).
/// Returns the frame's length, or 0 if `frame` is too small.
inline std::size_t write_guest_icmp_error(wire::mutable_bytes frame, wire::mac_address gateway_mac, wire::mac_address vm_mac,
                                          wire::ipv4_address source, wire::ipv4_address destination, std::uint8_t type,
                                          std::uint8_t code, wire::const_bytes quoted, std::uint16_t next_hop_mtu = 0) noexcept {
    quoted = quoted.first(std::min<std::size_t>(quoted.size(), 92));
    wire::icmp::repr message;
    if (type == wire::icmp::type::destination_unreachable) {
        message.message = wire::icmp::destination_unreachable{code, next_hop_mtu, quoted};
    } else {
        message.message = wire::icmp::time_exceeded{code, quoted};
    }
    const std::size_t l4 = message.buffer_len();
    const std::size_t total = write_guest_headers(frame, gateway_mac, vm_mac, source, destination, wire::ipv4::protocol::icmp, l4);
    if (total == 0 || message.emit(frame.subspan(guest_headers_len, l4))) return 0;
    return total;
}

/// A guest's new flow was refused (reported at most once per second per translator; `suppressed`
/// counts the refusals not reported since the last report).
struct flow_refused_event {
    std::string_view port;           ///< the VM's port name
    std::uint8_t protocol = 0;       ///< IP protocol number
    wire::ipv4_address destination;  ///< as the guest addressed it
    std::uint16_t destination_port = 0; ///< destination port
    std::string_view reason;         ///< "egress policy", "flow limit", "socket: <error>" ...
    std::uint64_t suppressed = 0; ///< suppressed
};

/// Lets one report through per interval and counts the rest, so a guest cannot flood the log.
class report_limiter {
public:
    /// Lets one report through per `interval`.
    explicit report_limiter(std::chrono::steady_clock::duration interval = std::chrono::seconds{1}) noexcept
        : interval_(interval) {}
    /// Whether to report now; when true, `suppressed` is how many were held back since the last.
    bool admit(std::chrono::steady_clock::time_point now, std::uint64_t& suppressed) noexcept {
        if (reported_ && now - last_ < interval_) {
            ++held_;
            return false;
        }
        reported_ = true;
        last_ = now;
        suppressed = std::exchange(held_, 0);
        return true;
    }

private:
    std::chrono::steady_clock::duration interval_;
    std::chrono::steady_clock::time_point last_{};
    std::uint64_t held_ = 0;
    bool reported_ = false;
};

} // namespace ankanet::nat
