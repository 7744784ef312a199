/// @file
/// ankanet::bridge::lan_uplink — the bridge mode's link to the LAN: any frame backend on the host
/// interface (backend::af_packet_uplink on Linux), with the VMs' MACs either put on the wire as they
/// are (direct MACs) or translated to the interface's own (l2::mac_translator).
///
/// Theory of operation. A bridge network (bridge.hpp) is a basic_network whose gateway port is an
/// uplink (network.hpp, "Uplink"): the switch sends the VMs' frames for the LAN to it and takes the
/// LAN's frames from it. This decorator stands between that port and the host interface's backend,
/// and does the two things that depend on the MAC mode:
///  * Translation (the default, what a Wi-Fi uplink needs: an access point accepts frames from its
///    associated station's MAC only). send() copies the frame into a buffer of its own — the switch
///    may be flooding the same bytes to other VMs, which must see them as sent — and rewrites it with
///    translate_outbound: the Ethernet source, ARP hardware fields and DHCP chaddr become the
///    interface's MAC, the DHCP broadcast flag is set. Received frames are rewritten in place in the
///    port's receive buffer with translate_inbound: a frame for the interface's MAC goes to the VM
///    owning its IP (ARP target, IP destination, DHCP transaction), a broadcast to all; what no VM
///    owns (the host's own traffic, which the filter lets up with the interface's MAC) is dropped
///    here and never reaches the switch. A receive that only met dropped frames waits again.
///  * The uplink's receive filter (direct MACs): a backend with set_accepted_macs()
///    (af_packet_uplink) lets up only frames for the VMs' MACs and group addresses. The VM set is
///    kept by `port_tracker`, the bridge network's service that sees ports come and go; the filter is
///    re-applied before the next frame moves through this uplink after a change. A new VM's first
///    frame (its DHCP discover) goes out through send(), which applies it before any answer can come
///    back. In translation mode the filter stays the interface's own MAC.
/// The translator's table of VMs follows the ports: port_tracker removes a VM that leaves, with its
/// learned addresses and DHCP transactions, so ports coming and going never fill it.
///
/// Costs: translation copies each frame for the LAN once (the switch's frame is shared) and
/// rewrites headers only; a received frame is rewritten in place. Offload metadata passes through
/// (a translated TCP super-frame changes only its Ethernet destination), except that translation
/// finishes an unfinished checksum of a plain frame first: the DHCP rewrite patches it.
/// Limits: translation is IPv4 only (see l2/mac_translator.hpp); the direct-MAC filter holds at most
/// the backend's limit (64 for af_packet_uplink): beyond it, the filter keeps its last good set and
/// set_filter_errors() counts the refusals.
#pragma once

#include <ankanet/backend/backend.hpp>
#include <ankanet/backend/offload.hpp>
#include <ankanet/backend/port.hpp>
#include <ankanet/error.hpp>
#include <ankanet/l2/mac_translator.hpp>
#include <ankanet/network.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/offload.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <system_error>
#include <utility>
#include <vector>

namespace ankanet::bridge {

/// How the VMs' MACs meet the LAN.
enum class mac_mode : std::uint8_t {
    translate, ///< every frame leaves with the uplink's MAC (the default)
    direct,    ///< frames leave with the VM's own MAC; the uplink is promiscuous
};

/// The translator of a bridge uplink: up to 64 VMs, 256 learned addresses, 64 DHCP transactions.
using uplink_translator = l2::basic_mac_translator<64, 256, 64>;

/// What the uplink and the network's port_tracker share.
struct uplink_state {
    mac_mode mode = mac_mode::translate; ///< mode
    std::optional<uplink_translator> translator; ///< translate mode only
    std::vector<mac_address> vms;                ///< the VMs' MACs, for the direct-MAC filter
    bool filter_stale = true; ///< filter stale
    std::uint64_t set_filter_errors = 0;         ///< filter updates the backend refused
    std::uint64_t dropped_by_translation = 0;    ///< frames translate_inbound/outbound dropped
};

namespace detail {

/// Whether a backend filters what it receives by destination MAC (af_packet_uplink).
template <class Backend>
concept mac_filtering = requires(Backend& b, std::span<const mac_address> macs) {
    { b.set_accepted_macs(macs) } -> std::same_as<std::error_code>;
};

} // namespace detail

/// The decorator; see the top of the file. A frame_backend (and a burst_backend, offload_receiver
/// and offload_backend where `Backend` is one). A pending receive refers to this object: do not
/// move it while one is outstanding (a network's port holds it in place).
template <backend::frame_backend Backend>
class lan_uplink {
public:
    using executor_type = typename Backend::executor_type; ///< the executor its asynchronous operations run on

    /// Wraps `inner`, the LAN interface, sharing `state` with the network's port_tracker.
    lan_uplink(Backend inner, std::shared_ptr<uplink_state> state)
        : inner_(std::move(inner)), state_(std::move(state)), scratch_(std::make_unique<std::byte[]>(scratch_len)) {}

    /// The executor its asynchronous operations run on.
    executor_type get_executor() const { return inner_.get_executor(); }
    /// The MTU.
    std::size_t mtu() const { return inner_.mtu(); }
    /// The interface's MAC. Not imposed on the network's ports: only the uplink uses it.
    std::optional<mac_address> mac() const { return inner_.mac(); }
    /// What it counted so far.
    backend::counters stats() const { return inner_.stats(); }
    /// Closes the interface.
    void close() { inner_.close(); }
    /// The state.
    const std::shared_ptr<uplink_state>& state() const noexcept { return state_; }
    /// The wrapped interface backend.
    Backend& inner() noexcept { return inner_; }

    /// Receives the next frame for the VMs (translated in place in translate mode).
    template <class CompletionToken>
    auto async_receive(wire::mutable_bytes buffer, CompletionToken&& token) {
        refresh_filter();
        return boost::asio::async_compose<CompletionToken, void(std::error_code, std::size_t)>(receive_op{this, buffer, false},
                                                                                               token, inner_.get_executor());
    }

    /// A VM's MAC was learned: it is let through the uplink.
    result<std::size_t> try_receive(wire::mutable_bytes buffer)
        requires backend::burst_backend<Backend>
    {
        refresh_filter();
        // Bounded: a burst of frames the translation drops yields to the event loop as "nothing".
        for (int skipped = 0; skipped < 64; ++skipped) {
            auto got = inner_.try_receive(buffer);
            if (!got) return got;
            if (admit(buffer.first(*got))) return got;
        }
        return std::make_error_code(backend::nothing_queued);
    }

    /// The metadata of the frame received last: the inner backend's, or all clear where admit()
    /// finished its checksum.
    const wire::offload& last_offload() const
        requires backend::offload_receiver<Backend>
    {
        return received_;
    }
    /// The max receive length.
    std::size_t max_receive_len() const
        requires backend::offload_receiver<Backend>
    {
        return inner_.max_receive_len();
    }

    /// Other events are ignored.
    std::error_code send(wire::const_bytes frame) {
        refresh_filter();
        auto out = outbound(frame);
        if (!out) return out.error();
        return inner_.send(*out);
    }

    /// Whether accepts offload.
    bool accepts_offload() const
        requires backend::offload_backend<Backend>
    {
        return inner_.accepts_offload();
    }
    /// A VM port went away: its MAC is no longer let through.
    std::error_code send(wire::const_bytes frame, const wire::offload& meta)
        requires backend::offload_backend<Backend>
    {
        refresh_filter();
        auto out = outbound(frame);
        if (!out) return out.error();
        return inner_.send(*out, meta);
    }

private:
    static constexpr std::size_t scratch_len = wire::offload::max_frame_len;

    /// The frame as it goes to the LAN: itself (direct), or a translated copy.
    result<wire::const_bytes> outbound(wire::const_bytes frame) {
        if (!state_->translator) return frame;
        if (frame.size() > scratch_len) return make_error_code(errc::bad_length);
        std::memcpy(scratch_.get(), frame.data(), frame.size());
        const wire::mutable_bytes copy{scratch_.get(), frame.size()};
        if (state_->translator->translate_outbound(copy).verdict != l2::translate_verdict::forward) {
            ++state_->dropped_by_translation;
            return make_error_code(errc::unsupported);
        }
        return wire::const_bytes{copy};
    }

    /// Whether a received frame goes on to the VMs (translated in place first in translate mode).
    bool admit(wire::mutable_bytes frame) {
        if constexpr (backend::offload_receiver<Backend>) received_ = inner_.last_offload();
        if (!state_->translator) return true;
        if constexpr (backend::offload_receiver<Backend>) {
            // The translator patches DHCP's UDP checksum incrementally, which needs a finished one:
            // a checksum the sender left to the NIC (a veth peer's) is finished here first. A
            // super-frame keeps its metadata: only its Ethernet destination changes.
            if (received_.needs_csum && !received_.is_gso()) {
                if (wire::complete_checksum(frame, received_)) {
                    ++state_->dropped_by_translation;
                    return false;
                }
                received_ = {};
            }
        }
        const auto verdict = state_->translator->translate_inbound(frame);
        if (verdict.verdict == l2::translate_verdict::drop) {
            ++state_->dropped_by_translation;
            return false;
        }
        // For one VM only (a DHCP reply the VM asked to have broadcast, with its chaddr put back):
        // addressed to that VM's MAC, so the switch does not flood it to the others.
        if (verdict.verdict == l2::translate_verdict::deliver && verdict.vm) {
            wire::ethernet::packet<wire::mutable_bytes> eth{frame};
            if (eth.destination().is_multicast()) eth.set_destination(*verdict.vm);
        }
        return true;
    }

    void refresh_filter() {
        if constexpr (detail::mac_filtering<Backend>) {
            uplink_state& s = *state_;
            if (!s.filter_stale || s.mode != mac_mode::direct) return;
            s.filter_stale = false;
            if (inner_.set_accepted_macs(s.vms)) ++s.set_filter_errors; // the last good set stays
        }
    }

    /// One async_receive: the inner backend's, again until a frame is admitted or an error.
    struct receive_op {
        lan_uplink* self;
        wire::mutable_bytes buffer;
        bool started;

        template <class Op>
        void operator()(Op& op) {
            self->inner_.async_receive(buffer, std::move(op));
        }
        template <class Op>
        void operator()(Op& op, std::error_code ec, std::size_t size) {
            if (ec) {
                op.complete(ec, 0);
                return;
            }
            if (self->admit(buffer.first(size))) {
                op.complete({}, size);
                return;
            }
            // Dropped: wait for the next one. The inner backend completes through its executor,
            // never inline, so this does not recurse.
            self->inner_.async_receive(buffer, std::move(op));
        }
    };

    Backend inner_;
    std::shared_ptr<uplink_state> state_;
    std::unique_ptr<std::byte[]> scratch_; // the translated copy of a frame for the LAN
    wire::offload received_;               // last_offload(), as admit() left it
};

/// The bridge network's service: follows the VM ports for the uplink (the direct-MAC filter, the
/// translator's table). Takes no frames.
class port_tracker {
public:
    /// Takes a frame for the VMs that is already waiting, if any.
    explicit port_tracker(std::shared_ptr<uplink_state> state) : state_(std::move(state)) {}

    /// The network's own frames for the gateway: a bridge has none, so nothing is taken here and
    /// every frame for the gateway port goes to the uplink.
    bool handle(const wire::parsed_frame&, auto&) noexcept { return false; }

    /// Sends a VM's frame to the LAN (translated in translate mode).
    void observe_event(const port_added_event& e) {
        if (e.mac) add(*e.mac);
    }
    /// As send(frame), with offload metadata.
    void observe_event(const port_mac_learned_event& e) { add(e.mac); }
    /// Tracks VM ports into `state`, which the lan_uplink reads.
    template <class Event>
    void observe_event(const Event&) noexcept {}

    /// A new VM port: its MAC is let through the uplink.
    void port_removed(mac_address mac) {
        auto& vms = state_->vms;
        if (const auto at = std::find(vms.begin(), vms.end(), mac); at != vms.end()) {
            vms.erase(at);
            state_->filter_stale = true;
        }
        if (state_->translator) (void)state_->translator->remove_vm(mac);
    }

    /// The state.
    const uplink_state& state() const noexcept { return *state_; }

private:
    void add(mac_address mac) {
        state_->vms.push_back(mac);
        state_->filter_stale = true;
        if (state_->translator) (void)state_->translator->add_vm(mac);
    }

    std::shared_ptr<uplink_state> state_;
};

} // namespace ankanet::bridge
