/// @file
/// ankanet::gateway::responder — the gateway answering for itself: ARP for its address and ICMP
/// echo (ping) to it. A pure engine: frames in, reply frames out through a callback; no I/O.
///
/// Theory of operation. Every frame a guest sends is offered to handle(). Frames the gateway owns —
/// an ARP request for its IPv4 address, an IPv4 datagram to its address — are consumed: answered,
/// or counted and dropped when malformed. Everything else is left to the caller (handle() returns
/// false), so the responder composes with a switch, a DHCP server and a NAT behind it. Replies are
/// built in one fixed buffer owned by the responder; the callback must copy before returning.
/// Echo requests that are fragments are not reassembled here: they are counted and dropped.
#pragma once

#include <ankanet/wire/address.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <variant>

namespace ankanet::gateway {

/// What the responder answered or dropped.
struct responder_counters {
    std::uint64_t arp_replies = 0; ///< ARP replies
    std::uint64_t echo_replies = 0; ///< echo replies
    std::uint64_t dropped_malformed = 0;   ///< addressed to the gateway but did not parse
    std::uint64_t dropped_unsupported = 0; ///< addressed to the gateway, well-formed, not served here
};

/// The gateway's own answers: ARP for its address, ICMP echo to it.
class responder {
public:
    /// The largest frame the responder emits (a full-MTU echo reply).
    static constexpr std::size_t max_reply_len = 1500 + wire::ethernet::header_len;

    /// Answers for the gateway at `address` with `mac`.
    responder(ipv4_address address, mac_address mac) noexcept : address_(address), mac_(mac) {}

    /// The address.
    ipv4_address address() const noexcept { return address_; }
    /// The MAC.
    mac_address mac() const noexcept { return mac_; }
    /// What it counted so far.
    const responder_counters& stats() const noexcept { return stats_; }

    /// Offers one frame from a guest. `emit(const_bytes)` is called with each reply.
    /// @return true when the frame was the gateway's (answered or dropped), false otherwise.
    template <class Emit>
    bool handle(wire::const_bytes frame, Emit&& emit) {
        return handle(wire::parsed_frame::parse(frame), emit);
    }

    /// As above, for a frame its caller has parsed already (a network parses each frame once).
    template <class Emit>
    bool handle(const wire::parsed_frame& frame, Emit&& emit) {
        if (frame.arp) return handle_arp(frame, *frame.arp, emit);
        if (frame.is_ipv4()) return handle_ipv4(frame, emit);
        return false; // tagged, not parsed, or another protocol
    }

private:
    template <class Emit>
    bool handle_arp(const wire::parsed_frame& frame, const wire::arp::repr& request, Emit& emit) {
        if (request.operation != wire::arp::operation::request || request.target_ip != address_) return false;
        // A guest announcing the gateway's own address as its own: not a question to answer.
        if (request.is_gratuitous()) return true;
        // Everything else, probes (sender 0.0.0.0, RFC 5227) included, gets our MAC: a probing guest
        // must learn that the address is taken.

        const auto reply = request.reply_from(mac_);
        const wire::ethernet::repr reply_eth{mac_, frame.source, wire::ethernet::ethertype::arp, std::nullopt};
        const std::size_t length = reply_eth.buffer_len() + reply.buffer_len();
        const wire::mutable_bytes out{buffer_.data(), length};
        if (reply_eth.emit(out) || reply.emit(out.subspan(reply_eth.buffer_len()))) return true; // cannot happen: sized above
        ++stats_.arp_replies;
        emit(wire::const_bytes{out});
        return true;
    }

    template <class Emit>
    bool handle_ipv4(const wire::parsed_frame& frame, Emit& emit) {
        if (frame.ip_destination != address_) return false;
        const wire::ipv4::packet<wire::const_bytes> datagram{frame.ip};
        if (datagram.check_len()) return false;
        const auto ip = wire::ipv4::repr::parse(datagram);
        if (!ip) {
            ++stats_.dropped_malformed;
            return true;
        }
        if (ip->protocol != wire::ipv4::protocol::icmp || datagram.is_fragment()) {
            ++stats_.dropped_unsupported; // TCP/UDP to the gateway is the DHCP, DNS and NAT's business
            return true;
        }
        const auto icmp = wire::icmp::repr::parse(datagram.payload());
        if (!icmp) {
            ++stats_.dropped_malformed;
            return true;
        }
        const auto* request = std::get_if<wire::icmp::echo_request>(&icmp->message);
        if (request == nullptr) {
            ++stats_.dropped_unsupported;
            return true;
        }

        const wire::icmp::repr reply{wire::icmp::echo_reply{request->identifier, request->sequence, request->data}};
        wire::ipv4::repr reply_ip;
        reply_ip.source = address_;
        reply_ip.destination = ip->source;
        reply_ip.protocol = wire::ipv4::protocol::icmp;
        reply_ip.payload_len = reply.buffer_len();
        const wire::ethernet::repr reply_eth{mac_, frame.source, wire::ethernet::ethertype::ipv4, std::nullopt};

        const std::size_t length = reply_eth.buffer_len() + reply_ip.buffer_len() + reply.buffer_len();
        if (length > buffer_.size()) {
            ++stats_.dropped_unsupported; // larger than any MTU we serve
            return true;
        }
        const wire::mutable_bytes out{buffer_.data(), length};
        const auto ip_at = out.subspan(reply_eth.buffer_len());
        if (reply_eth.emit(out) || reply_ip.emit(ip_at) || reply.emit(ip_at.subspan(reply_ip.buffer_len()))) {
            ++stats_.dropped_malformed;
            return true;
        }
        ++stats_.echo_replies;
        emit(wire::const_bytes{out});
        return true;
    }

    ipv4_address address_;
    mac_address mac_;
    responder_counters stats_;
    std::array<std::byte, max_reply_len> buffer_{};
};

} // namespace ankanet::gateway
