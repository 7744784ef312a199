/// @file
/// ankanet::dhcp client frames — the frames a DHCP client sends, built whole, and the server's
/// replies taken apart: for a program that plays a guest itself (an in-process VM, a health check,
/// a demo, a test) and has no DHCP client of its own.
///
/// Theory of operation. A DHCP client in the INIT state (RFC 2131 §4.4.1) sends a DISCOVER, picks an
/// OFFER, sends a REQUEST naming the offered address and the offering server, and is bound when the
/// ACK comes. discover_frame() and request_frame() build those two messages as complete Ethernet
/// frames — Ethernet broadcast, IPv4 0.0.0.0 → 255.255.255.255, UDP 68 → 67, both checksums filled, a
/// BOOTP message padded to 300 bytes — into a fixed buffer inside the returned `client_frame`: no
/// allocation, ready for a backend's send() or basic_network::input(). parse_server_reply() goes the
/// other way and checks every layer (IPv4 header checksum, UDP checksum, ports 67 → 68, BOOTP reply,
/// message type present) before it says what the server offered.
///
/// Limits. Only what a client needs to get a lease: no RENEW, RELEASE, DECLINE or INFORM, no client
/// identifier (the server keys the client by its chaddr), no host name, no broadcast flag (a server
/// answers by unicast to the offered address at the client's MAC, which is what a switch port
/// delivers). The frames are untagged. A reply must be one the client can read without reassembly.
#pragma once

#include <ankanet/error.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/dhcp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/udp.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace ankanet::dhcp {

/// The options a client frame asks for (option 55): subnet mask, router, DNS servers, domain
/// name, interface MTU, broadcast address.
inline constexpr std::array<std::byte, 6> client_parameter_request_list{
    std::byte{wire::dhcp::option_code::subnet_mask},  std::byte{wire::dhcp::option_code::router},
    std::byte{wire::dhcp::option_code::dns_servers},  std::byte{wire::dhcp::option_code::domain_name},
    std::byte{wire::dhcp::option_code::interface_mtu}, std::byte{wire::dhcp::option_code::broadcast_address},
};

/// The length of every frame built here: Ethernet, IPv4 and UDP headers and a 300-byte BOOTP
/// message (the options of a DISCOVER or REQUEST fit in its 64-byte vendor field).
inline constexpr std::size_t client_frame_len =
    wire::ethernet::header_len + wire::ipv4::header_len + wire::udp::header_len + wire::dhcp::bootp_min_len;

/// A frame a DHCP client sends, held by value (no allocation).
class client_frame {
public:
    /// The whole frame; valid while this object lives and is not moved from.
    wire::const_bytes bytes() const noexcept { return {storage_.data(), storage_.size()}; }
    /// The number of elements.
    std::size_t size() const noexcept { return storage_.size(); }

private:
    friend client_frame build_client_frame(wire::mac_address, const wire::dhcp::repr&) noexcept;
    std::array<std::byte, client_frame_len> storage_{};
};

/// What a server said, read from its reply frame.
struct server_reply {
    wire::dhcp::message_type type = wire::dhcp::message_type::offer; ///< OFFER, ACK, NAK, ...
    std::uint32_t xid = 0;                       ///< the transaction of the client message it answers
    wire::mac_address client;                    ///< chaddr: the client it is for
    wire::ipv4_address yiaddr;                   ///< the address offered or acknowledged
    std::optional<wire::ipv4_address> server_id; ///< option 54, to name in the REQUEST
    std::optional<std::uint32_t> lease_time;     ///< option 51, seconds
    wire::ipv4_address source;                   ///< the IPv4 source of the reply
};

/// Builds the frame for one client message `message` from `mac`: broadcast at every layer, from
/// 0.0.0.0:68 to 255.255.255.255:67. The building block of discover_frame() and request_frame();
/// `message` must fit client_frame_len (as theirs do), or the frame is left zeroed past the
/// headers.
inline client_frame build_client_frame(wire::mac_address mac, const wire::dhcp::repr& message) noexcept {
    namespace w = wire;
    constexpr std::size_t ip_at = w::ethernet::header_len;
    constexpr std::size_t udp_at = ip_at + w::ipv4::header_len;
    constexpr std::size_t dhcp_at = udp_at + w::udp::header_len;
    constexpr std::size_t dhcp_len = w::dhcp::bootp_min_len;

    client_frame frame;
    const w::mutable_bytes all{frame.storage_.data(), frame.storage_.size()};
    // Every write below fits: the buffer is sized for the headers and a 300-byte message, and the
    // options of the messages this header builds take 30 of its 60 option bytes.
    (void)message.emit(all.subspan(dhcp_at, dhcp_len));
    (void)w::udp::repr{w::dhcp::client_port, w::dhcp::server_port, dhcp_len}.emit(
        all.subspan(udp_at), w::ipv4_address::any(), w::ipv4_address::broadcast());
    w::ipv4::repr ip;
    ip.source = w::ipv4_address::any();
    ip.destination = w::ipv4_address::broadcast();
    ip.protocol = w::ipv4::protocol::udp;
    ip.payload_len = w::udp::header_len + dhcp_len;
    (void)ip.emit(all.subspan(ip_at));
    (void)w::ethernet::repr{mac, w::mac_address::broadcast(), w::ethernet::ethertype::ipv4, std::nullopt}.emit(all);
    return frame;
}

namespace detail {

inline wire::dhcp::repr client_message(wire::mac_address mac, std::uint32_t xid, wire::dhcp::message_type type) noexcept {
    wire::dhcp::repr m;
    m.op = wire::dhcp::boot_request;
    m.xid = xid;
    for (std::size_t i = 0; i < wire::mac_address::size; ++i) m.chaddr[i] = mac.octets()[i];
    m.message_type = type;
    m.parameter_request_list = wire::const_bytes{client_parameter_request_list};
    return m;
}

} // namespace detail

/// A DHCPDISCOVER from `mac` (RFC 2131 §4.4.1, INIT state).
/// @param mac the client's MAC: the Ethernet source and the chaddr
/// @param xid the transaction id; the server's OFFER carries it back
/// @par Example
/// @code
/// auto discover = ankanet::dhcp::discover_frame(mac, 0x1234);
/// vm_link.send(discover.bytes());
/// @endcode
inline client_frame discover_frame(wire::mac_address mac, std::uint32_t xid) noexcept {
    return build_client_frame(mac, detail::client_message(mac, xid, wire::dhcp::message_type::discover));
}

/// A DHCPREQUEST from `mac` in the SELECTING state: it asks `server_id` for `requested`.
/// @param server_id option 54; an OFFER always carries one (server_reply::server_id), but it is
///        left out when empty
inline client_frame request_frame(wire::mac_address mac, std::uint32_t xid, wire::ipv4_address requested,
                                  std::optional<wire::ipv4_address> server_id) noexcept {
    auto m = detail::client_message(mac, xid, wire::dhcp::message_type::request);
    m.requested_ip = requested;
    m.server_id = server_id;
    return build_client_frame(mac, m);
}

/// The DHCPREQUEST that accepts `offer`: its xid, its yiaddr, its server.
/// @par Example
/// @code
/// if (auto offer = ankanet::dhcp::parse_server_reply(frame); offer && offer->type == ankanet::wire::dhcp::message_type::offer)
///     vm_link.send(ankanet::dhcp::request_frame(mac, *offer).bytes());
/// @endcode
inline client_frame request_frame(wire::mac_address mac, const server_reply& offer) noexcept {
    return request_frame(mac, offer.xid, offer.yiaddr, offer.server_id);
}

/// Reads a frame a DHCP server sent to a client.
/// @return what the server said; or errc::unsupported for a frame that is not a DHCP reply at all
///         (another EtherType, a tagged frame, another protocol or port, a fragment, a BOOTP request);
///         or the error of the layer that does not hold together (errc::truncated, bad_length,
///         bad_checksum — IPv4 header or UDP —, bad_option, ...); errc::bad_field for a BOOTP
///         reply without a DHCP message type.
inline result<server_reply> parse_server_reply(wire::const_bytes frame) noexcept {
    namespace w = wire;
    const auto eth = w::ethernet::repr::parse(frame);
    if (!eth) return eth.error();
    if (eth->vlan_tci || eth->ethertype != w::ethernet::ethertype::ipv4) return errc::unsupported;
    const w::ipv4::packet<w::const_bytes> datagram{frame.subspan(eth->buffer_len())};
    const auto ip = w::ipv4::repr::parse(datagram); // the header checksum too
    if (!ip) return ip.error();
    if (ip->protocol != w::ipv4::protocol::udp || datagram.is_fragment()) return errc::unsupported;
    const w::udp::packet<w::const_bytes> udp_view{datagram.payload()};
    const auto udp = w::udp::repr::parse(udp_view, ip->source, ip->destination); // and the UDP checksum
    if (!udp) return udp.error();
    if (udp->source_port != w::dhcp::server_port || udp->destination_port != w::dhcp::client_port) return errc::unsupported;
    const auto message = w::dhcp::repr::parse(udp_view.payload());
    if (!message) return message.error();
    if (message->op != w::dhcp::boot_reply) return errc::unsupported;
    if (!message->message_type) return errc::bad_field;
    const auto client = message->client_mac();
    if (!client) return errc::unsupported; // not Ethernet
    server_reply reply;
    reply.type = *message->message_type;
    reply.xid = message->xid;
    reply.client = *client;
    reply.yiaddr = message->yiaddr;
    reply.server_id = message->server_id;
    reply.lease_time = message->lease_time;
    reply.source = ip->source;
    return reply;
}

} // namespace ankanet::dhcp
