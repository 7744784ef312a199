/// @file
/// ankanet::nat — inbound flows: connections and datagrams that start on the host (a port forward's
/// listener) and enter a guest through the same translators as the guest's own flows.
///
/// A forward (forward/service.hpp) accepts a TCP connection, or reads the first datagram of a new
/// UDP client, on a host socket. It then asks the network to carry it: basic_network's context
/// hands the request to the first service that takes it (a `carry_inbound(request)` hook, see
/// network.hpp): the TCP translator adopts the accepted socket as a new flow and opens the
/// connection towards the guest with a SYN; the UDP translator adopts a socket connected to the
/// client as a new flow. From then on the flow is like any other: its key is the tuple as the guest
/// sees it (its own address and port, and the client's address and port as the guest is shown
/// them), so the guest's answers find it, and the host side is the socket the request brought.
///
/// The client's address as the guest sees it is the client's real address, except where the guest
/// could not answer it: a client on the host's loopback, or one whose address lies in the guests'
/// subnet, is shown as the gateway (see remote_as_seen()).
#pragma once

#include <ankanet/port_handle.hpp>
#include <ankanet/wire/address.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

#include <cstdint>

namespace ankanet::nat {

/// A TCP connection a host listener accepted, to be carried into a guest.
struct inbound_tcp {
    port_handle vm;                      ///< the guest's port
    wire::mac_address vm_mac;            ///< the guest's MAC (frames go there)
    wire::ipv4_address guest_address;    ///< the guest's address now (its lease, or what it announced)
    std::uint16_t guest_port = 0;        ///< the port the guest's server listens on
    wire::ipv4_address remote_address;   ///< the client as the guest sees it (remote_as_seen)
    std::uint16_t remote_port = 0;       ///< the client's port
    boost::asio::ip::tcp::socket socket; ///< the accepted connection (the TCP translator takes it)
};

/// A UDP client of a forward, to be carried into a guest as a flow of its own.
struct inbound_udp {
    port_handle vm; ///< VM
    wire::mac_address vm_mac; ///< VM MAC
    wire::ipv4_address guest_address; ///< guest address
    std::uint16_t guest_port = 0; ///< guest port
    wire::ipv4_address remote_address;   ///< the client as the guest sees it (remote_as_seen)

    /// remote port
    std::uint16_t remote_port = 0;
    /// Bound to the forward's host address and port (SO_REUSEADDR and SO_REUSEPORT, as the
    /// forward's listener is) and connected to the client, so the kernel hands this socket the
    /// client's later datagrams, and the guest's answers leave from the port the client wrote to.
    boost::asio::ip::udp::socket socket;
};

/// The address a guest is shown for a client at `real`: `real` itself, or the gateway's address
/// for a client the guest could not answer directly (the host's loopback; an address inside the
/// guests' subnet, which the guest would look for on its own link).
inline wire::ipv4_address remote_as_seen(wire::ipv4_address real, wire::ipv4_prefix subnet) noexcept {
    if (real.is_loopback() || real.is_unspecified() || subnet.contains(real)) return subnet.address();
    return real;
}

} // namespace ankanet::nat
