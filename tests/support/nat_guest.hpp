// Test support for the translators: a guest's frames built by hand, and a service context that
// records what a translator answers, sends and reports — the network's side of a service, without
// a network.
#pragma once

#include <ankanet/clock.hpp>
#include <ankanet/config.hpp>
#include <ankanet/nat/translation.hpp>
#include <ankanet/port_handle.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/udp.hpp>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ankanet::test {

using frame_bytes = std::vector<std::byte>;

inline const wire::mac_address guest_mac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
inline constexpr wire::ipv4_address guest_ip{192, 168, 64, 2};
inline constexpr wire::ipv4_address gateway_ip{192, 168, 64, 1};

/// A frame from the guest to the gateway's MAC: Ethernet, IPv4 (`protocol`) and `l4` as given.
inline frame_bytes guest_ipv4_frame(wire::ipv4_address destination, std::uint8_t protocol, wire::const_bytes l4,
                                    wire::ipv4_address source = guest_ip, wire::mac_address mac = guest_mac) {
    frame_bytes frame(nat::guest_headers_len + l4.size());
    // write_guest_headers frames gateway → guest; swap the MACs for guest → gateway.
    (void)nat::write_guest_headers(frame, mac, default_gateway_mac, source, destination, protocol, l4.size());
    std::copy(l4.begin(), l4.end(), frame.begin() + static_cast<std::ptrdiff_t>(nat::guest_headers_len));
    return frame;
}

inline frame_bytes guest_udp_frame(wire::ipv4_address destination, std::uint16_t source_port, std::uint16_t destination_port,
                                   std::string_view payload, wire::ipv4_address source = guest_ip) {
    frame_bytes l4(wire::udp::header_len + payload.size());
    std::transform(payload.begin(), payload.end(), l4.begin() + wire::udp::header_len, [](char c) { return static_cast<std::byte>(c); });
    const wire::udp::repr udp{source_port, destination_port, payload.size()};
    (void)udp.emit(l4, source, destination);
    return guest_ipv4_frame(destination, wire::ipv4::protocol::udp, l4, source);
}

inline frame_bytes guest_echo_frame(wire::ipv4_address destination, std::uint16_t id, std::uint16_t sequence,
                                    std::string_view payload) {
    const wire::const_bytes data{reinterpret_cast<const std::byte*>(payload.data()), payload.size()};
    wire::icmp::repr echo{wire::icmp::echo_request{id, sequence, data}};
    frame_bytes l4(echo.buffer_len());
    (void)echo.emit(l4);
    return guest_ipv4_frame(destination, wire::ipv4::protocol::icmp, l4);
}

inline std::string as_text(wire::const_bytes bytes) { return {reinterpret_cast<const char*>(bytes.data()), bytes.size()}; }

/// A service context that records frames and events (see basic_network::service_context).
struct recording_context {
    port_handle from = port_handle::make(3, 1);
    wire::mac_address mac = guest_mac;
    network_time time{std::chrono::steady_clock::now(), std::chrono::system_clock::now()};
    std::vector<frame_bytes> answered;
    std::vector<std::pair<port_handle, frame_bytes>> sent;
    std::vector<std::string> events;

    void operator()(wire::const_bytes f) { answered.emplace_back(f.begin(), f.end()); }
    void answer(wire::const_bytes f) { answered.emplace_back(f.begin(), f.end()); }
    void send_to(port_handle to, wire::const_bytes f) { sent.emplace_back(to, frame_bytes(f.begin(), f.end())); }
    std::optional<port_handle> port() const { return from; }
    network_time now() const { return time; }
    std::string_view port_name() const { return "vm1"; }
    wire::mac_address port_mac() const { return mac; }
    bool attached(wire::mac_address) const { return true; }
    template <class Event>
    void notify(const Event& e) {
        if constexpr (requires { e.reason; }) events.emplace_back(e.reason);
        else events.emplace_back("event");
    }
};

/// Runs `io` until `done()` or `limit` passes; returns done().
template <class Done>
bool run_io_until(boost::asio::io_context& io, Done done, std::chrono::milliseconds limit = std::chrono::seconds{5}) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < until) {
        io.restart();
        io.run_for(std::chrono::milliseconds{10});
    }
    return done();
}

} // namespace ankanet::test
