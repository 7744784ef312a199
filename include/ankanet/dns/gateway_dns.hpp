/// @file
/// ankanet::dns::gateway_dns — the gateway's DNS server as a network holds it: the UDP forwarder
/// (forwarder.hpp) and, beside it, the DNS-over-TCP listener on host loopback (tcp_listener.hpp)
/// that the TCP translator maps the gateway's TCP port 53 to. One service, so the network owns the
/// listener with the forwarder, and stop() closes both.
#pragma once

#include <ankanet/dns/forwarder.hpp>
#include <ankanet/dns/tcp_listener.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <utility>

namespace ankanet::dns {

/// The forwarder's hooks (inspect, release_held, bind_wakeup, observe_event, port_removed) are
/// this service's; the listener answers TCP at tcp_endpoint() from the same zone and upstreams.
class gateway_dns : public forwarder {
public:
    /// Throws boost::system::system_error when the listener cannot listen.
    gateway_dns(boost::asio::any_io_executor executor, forwarder_config config, tcp_listener_config tcp = {})
        : forwarder(executor, config), tcp_(executor, zone(), config.upstreams, tcp) {}

    /// Move-constructs (memberwise).
    gateway_dns(gateway_dns&&) noexcept = default;
    /// Move assignment.
    gateway_dns& operator=(gateway_dns&&) noexcept = default;

    /// Where DNS over TCP is served on the host: what the gateway's TCP port 53 maps to.
    boost::asio::ip::tcp::endpoint tcp_endpoint() const { return tcp_.endpoint(); }
    /// The TCP.
    const tcp_listener& tcp() const noexcept { return tcp_; }

    /// The network is stopping: the forwarder's sockets and timer, and the listener, close.
    void stop() {
        forwarder::stop();
        tcp_.close();
    }

private:
    tcp_listener tcp_;
};

} // namespace ankanet::dns
