// Member definitions of ankanet::basic_network (network.hpp), kept apart from its declaration so
// the class reads as its interface. Included at the end of network.hpp; never include it alone.
#pragma once

#include <ankanet/network.hpp>

#include <fmt/format.h>

namespace ankanet {

template <class Traits, class... Services>
basic_network<Traits, Services...>::basic_network(network_config config, Services... services)
    : config_(std::move(config)),
      services_(std::move(services)...),
      switch_(switch_config(config_)),
      randomizer_(config_.mac_prefix, config_.mac_secret),
      reply_slot_len_(backend::max_frame_len(config_.mtu)),
      reply_storage_(Traits::reply_queue_depth * reply_slot_len_) {
    // The gateway owns its MAC on the switch: frames for it never flood to the VMs, however long
    // the gateway has been silent. An empty switch always has room.
    auto owned = switch_.add_gateway_port(config_.gateway_mac);
    gateway_port_ = owned ? *owned : *switch_.add_gateway_port(); // a gateway MAC no NIC can have owns nothing
    std::apply([&](auto&... s) { (bind_events(s), ...); }, services_);
    // The gateway's MAC is nobody else's: a VM asking for it, or sourcing it in its first frame, is
    // refused like any other duplicate.
    if (config_.gateway_mac.is_unicast()) (void)registry_.add(config_.gateway_mac, "the gateway");
}

template <class Traits, class... Services>
result<port_handle> basic_network<Traits, Services...>::add_port(std::string name, port_mac mac, std::string* why) {
    for (const auto& slot : slots_) {
        // Names identify ports in the MAC registry and in every log line: one port per name.
        if (slot.active && slot.name == name) {
            return refuse(name, make_error_code(std::errc::file_exists), why,
                          fmt::format("a port named '{}' is attached already", name));
        }
    }
    std::optional<mac_address> chosen;
    if (!mac.is_first_frame()) {
        auto picked = pick_mac(name, mac);
        if (!picked) return refuse(name, picked.error(), why);
        chosen = *picked;
        if (auto refused = registry_.add(*chosen, name)) return refuse(name, refused.code(), why, refused.message());
    }
    std::uint16_t index = 0;
    if (!free_.empty()) {
        index = free_.back();
        free_.pop_back();
    } else {
        if (slots_.size() >= 0xffff) {
            if (chosen) (void)registry_.remove(*chosen);
            return refuse(name, l2::switch_errc::too_many_ports, why);
        }
        index = static_cast<std::uint16_t>(slots_.size());
        slots_.emplace_back();
    }
    port_slot& slot = slots_[index];
    slot.active = true;
    slot.name = std::move(name);
    slot.link_up = true;
    slot.counters = {};
    const port_handle handle = port_handle::make(index, slot.generation);
    if (chosen && !join_switch(slot, index, *chosen, why)) {
        release_slot(index);
        return make_error_code(l2::switch_errc::too_many_ports);
    }
    notify(port_added_event{slot.name, slot.mac});
    return handle;
}

template <class Traits, class... Services>
std::error_code basic_network<Traits, Services...>::set_link(port_handle port, bool up) {
    port_slot* slot = find(port);
    if (slot == nullptr) return l2::switch_errc::unknown_port;
    if constexpr (Traits::unplugged) {
        return errc::unsupported;
    } else {
        if (slot->link_up != up) {
            slot->link_up = up;
            notify(link_changed_event{slot->name, up});
        }
        return {};
    }
}

template <class Traits, class... Services>
template <class Emit>
    requires std::invocable<Emit&, port_handle, wire::const_bytes>
void basic_network<Traits, Services...>::burst_input(port_handle port, wire::const_bytes frame, network_time now, Emit&& emit) {
    switch_in(port, frame, wire::offload{}, now, emit);
}

template <class Traits, class... Services>
template <class Emit>
void basic_network<Traits, Services...>::switch_in(port_handle port, wire::const_bytes frame, const wire::offload& meta,
                                                   network_time now, Emit& emit) {
    burst_open_ = true;
    port_slot* slot = find(port);
    if (slot == nullptr) [[unlikely]] {
        ++stats_.dropped_unknown_port;
        return;
    }
    ++stats_.frames_in;
    ++slot->counters.frames_in;
    if (frame_tap_) frame_tap_(frame);
    if constexpr (Traits::unplugged) {
        ++slot->counters.dropped_unplugged;
        ++stats_.dropped_unplugged;
        return;
    } else {
        if (!slot->link_up) {
            ++slot->counters.dropped_link_down;
            ++stats_.dropped_link_down;
            return;
        }
        // Backends apply this rule; a hypervisor calling input() itself might not, and the switch
        // would otherwise pass a frame on to VMs that could not take it.
        // A super-frame is bounded by its own limit (64 KiB of IPv4), not the MTU: the segments it
        // stands for are what must fit.
        const bool bad_size = meta.is_gso() ? frame.size() > wire::offload::max_frame_len
                                            : static_cast<bool>(backend::check_frame_size(frame.size(), config_.mtu));
        if (bad_size) {
            ++slot->counters.dropped_bad_size;
            ++stats_.dropped_bad_size;
            return;
        }
        const auto parsed = wire::parsed_frame::parse(frame);
        if (!slot->switch_port && !adopt_first_source(*slot, port.index(), parsed)) return;

        service_context ctx{*this, now, port, slot->name, *slot->mac, meta};
        inspection verdict = inspection::pass;
        std::apply([&](auto&... s) { ((verdict = verdict == inspection::pass ? inspect(s, parsed, ctx) : verdict), ...); },
                   services_);
        if (verdict == inspection::drop) {
            ++slot->counters.dropped_by_service;
            return;
        }
        if (verdict == inspection::taken) {
            ++stats_.frames_to_gateway;
            switch_.heard_from(*slot->switch_port, now.steady); // the replies find their way to it
            drain_replies(now, emit);
            return;
        }
        switch_.handle(*slot->switch_port, frame, now.steady, [&](l2::port_id out, wire::const_bytes out_frame) {
            if (out == gateway_port_) {
                if (!to_gateway(parsed, ctx)) to_uplink(out_frame, meta, emit);
            } else {
                deliver(out, out_frame, meta, emit);
            }
        });
        drain_replies(now, emit);
    }
}

template <class Traits, class... Services>
template <class Emit>
    requires std::invocable<Emit&, port_handle, wire::const_bytes>
void basic_network<Traits, Services...>::burst_input(port_handle port, wire::const_bytes frame, const wire::offload& meta,
                                                     network_time now, Emit&& emit) {
    if (meta.is_plain()) [[likely]] {
        switch_in(port, frame, meta, now, emit);
        return;
    }
    if (travels_whole(frame, meta)) {
        ++stats_.offload_whole;
        switch_in(port, frame, meta, now, emit);
        return;
    }
    // A checksum left to the NIC (a UDP datagram's, say) is finished in a copy that lives until
    // the burst ends, so the frame stays in the caller's burst (one sendmmsg per UDP flow).
    if (!meta.is_gso() && !meta.validate()) {
        if (const wire::mutable_bytes copy = burst_copy(frame.size()); !copy.empty()) {
            std::memcpy(copy.data(), frame.data(), frame.size());
            if (!wire::complete_checksum(copy, meta)) {
                ++stats_.offload_segmented;
                switch_in(port, wire::const_bytes{copy}, wire::offload{}, now, emit);
                return;
            }
            burst_copy_used_ -= frame.size(); // refused below, as segment() refuses it
        }
    }
    // Made plain before anything sees it; each piece is a burst of its own, since the next piece
    // overwrites it in the one buffer (theory of operation 9).
    const std::error_code refused =
        wire::segment(frame, meta, offload_scratch(ingress_scratch_), [&](wire::mutable_bytes piece) {
            burst_input(port, wire::const_bytes{piece}, now, emit);
            end_burst(now, emit);
        });
    if (!refused) {
        ++stats_.offload_segmented;
    } else { // nothing was handed on
        port_slot* slot = find(port);
        if (slot == nullptr) {
            ++stats_.dropped_unknown_port;
            return;
        }
        ++stats_.frames_in;
        ++slot->counters.frames_in;
        ++stats_.dropped_bad_offload;
        ++slot->counters.dropped_bad_offload;
    }
}

template <class Traits, class... Services>
template <class Emit>
    requires std::invocable<Emit&, port_handle, wire::const_bytes>
void basic_network<Traits, Services...>::end_burst(network_time now, Emit&& emit) {
    if (!burst_open_) return;
    burst_open_ = false;
    service_context ctx{*this, now, std::nullopt, "the gateway", config_.gateway_mac};
    std::apply([&](auto&... s) { (end_burst_one(s, ctx, now, emit), ...); }, services_);
    burst_copy_used_ = 0; // the services are done with the burst's frames
}

template <class Traits, class... Services>
template <backend::frame_backend Backend>
result<port_handle> basic_network<Traits, Services...>::attach(std::string name, Backend link, port_mac mac,
                           std::string* why) {
    if (mac.is_first_frame()) {
        if (const auto imposed = link.mac()) mac = port_mac::custom(*imposed);
    }
    auto port = add_port(std::move(name), mac, why);
    if (!port) return port;
    if (auto ec = connect(*port, std::move(link))) {
        (void)remove_port(*port);
        return ec;
    }
    return port;
}

template <class Traits, class... Services>
template <backend::frame_backend Backend>
std::error_code basic_network<Traits, Services...>::connect(port_handle port, Backend link) {
    port_slot* slot = find(port);
    if (slot == nullptr) return l2::switch_errc::unknown_port;
    if (slot->link) return errc::unsupported; // one backend per port
    bind_wakeups(link.get_executor());
    slot->link = backend::make_port(slot->name, std::move(link));
    notify(port_attached_event{slot->name, slot->link->mtu(), slot->mac});
    // The handlers reach the network through its anchor, which the destructor clears: a
    // completion still queued in the io_context after the network is gone does nothing.
    slot->link->start(
        [anchor = anchor_, port](backend::port& from, wire::const_bytes frame) {
            // A TAP with a virtio-net header says what its frame carries; other backends nothing.
            if (basic_network* self = *anchor) self->burst_input(port, frame, from.received_offload(), self->burst_now(), self->sender());
        },
        [anchor = anchor_, port](backend::port&, std::error_code why) {
            if (basic_network* self = *anchor) (void)self->remove_port(port, why ? why : make_error_code(errc::peer_closed));
        },
        [anchor = anchor_](backend::port&) {
            if (basic_network* self = *anchor) {
                // The burst's frames are still where the port received them: services act on what they kept.
                self->end_burst(self->burst_now(), self->sender());
                self->burst_clock_read_ = false;
            }
        });
    return {};
}

template <class Traits, class... Services>
template <backend::frame_backend Backend>
std::error_code basic_network<Traits, Services...>::connect_uplink(std::string name, Backend link) {
    static_assert(detail::traits_uplink<Traits>(), "ankanet::basic_network::connect_uplink: the network's Traits have no uplink");
    if (uplink_) return errc::unsupported;
    bind_wakeups(link.get_executor());
    uplink_ = backend::make_port(std::move(name), std::move(link));
    notify(uplink_attached_event{uplink_->name(), uplink_->mtu(), uplink_->mac()});
    uplink_->start(
        [anchor = anchor_](backend::port& from, wire::const_bytes frame) {
            if (basic_network* self = *anchor) self->uplink_input(frame, from.received_offload(), self->burst_now(), self->sender());
        },
        [anchor = anchor_](backend::port& from, std::error_code why) {
            basic_network* self = *anchor;
            if (self == nullptr) return;
            notify_detached_uplink(*self, from, why ? why : make_error_code(errc::peer_closed));
        },
        [anchor = anchor_](backend::port&) {
            if (basic_network* self = *anchor) self->burst_clock_read_ = false; // no service kept a frame of the LAN's
        });
    return {};
}

template <class Traits, class... Services>
void basic_network<Traits, Services...>::notify_detached_uplink(basic_network& self, backend::port& from, std::error_code why) {
    self.notify(uplink_detached_event{from.name(), why, from.stats()});
    // The port outlives this call: its loop holds a reference to itself until the handler returns.
    if (self.uplink_.get() == &from) self.uplink_.reset();
}

template <class Traits, class... Services>
void basic_network<Traits, Services...>::detach(port_handle port) {
    port_slot* slot = find(port);
    if (slot == nullptr) return;
    if (slot->link && slot->link->running()) slot->link->close();
    else (void)remove_port(port);
}

template <class Traits, class... Services>
result<port_handle> basic_network<Traits, Services...>::refuse(std::string_view name, std::error_code ec, std::string* why, std::string reason) {
    if (reason.empty()) reason = ec.message();
    ++stats_.ports_refused;
    notify(port_refused_event{name, reason});
    if (why != nullptr) *why = std::move(reason);
    return ec;
}

template <class Traits, class... Services>
result<mac_address> basic_network<Traits, Services...>::pick_mac(std::string_view name, const port_mac& mac) {
    if (const auto* custom = mac.custom_mac()) return *custom; // the operator's choice, used as given
    const auto draw = [&] { return mac.uuid() ? randomizer_.stable(*mac.uuid(), registry_, name) : randomizer_.draw(registry_); };
    if constexpr (!detail::traits_uplink<Traits>()) {
        return draw();
    } else {
        // A device on the LAN answers for it: hold it for the LAN and draw again (a stable MAC then
        // moves to its next candidate). Bounded: each round holds one more MAC.
        const auto now = clock_.now().steady;
        for (int round = 0; round < 8; ++round) {
            auto candidate = draw();
            if (!candidate || switch_.lookup(*candidate, now) != std::optional{gateway_port_}) return candidate;
            notify(mac_collision_event{name, *candidate});
            (void)registry_.add(*candidate, lan_holder);
        }
        return make_error_code(l2::mac_errc::space_exhausted);
    }
}

template <class Traits, class... Services>
bool basic_network<Traits, Services...>::join_switch(port_slot& slot, std::uint16_t index, mac_address mac, std::string* why) {
    auto id = switch_.add_vm_port(mac);
    if (!id) {
        (void)registry_.remove(mac);
        (void)refuse(slot.name, id.error(), why);
        return false;
    }
    slot.mac = mac;
    slot.switch_port = *id;
    const std::size_t at = id->index();
    if (by_switch_index_.size() <= at) by_switch_index_.resize(at + 1);
    by_switch_index_[at] = index;
    return true;
}

template <class Traits, class... Services>
void basic_network<Traits, Services...>::release_slot(std::uint16_t index) {
    port_slot& slot = slots_[index];
    slot.active = false;
    ++slot.generation;
    slot.name.clear();
    slot.mac.reset();
    slot.switch_port.reset();
    slot.link.reset();
    free_.push_back(index);
}

template <class Traits, class... Services>
std::error_code basic_network<Traits, Services...>::remove_port(port_handle port, std::error_code why) {
    port_slot* slot = find(port);
    if (slot == nullptr) return l2::switch_errc::unknown_port;
    if (slot->link && slot->link->running()) {
        slot->link->close(); // its loop ends with on_closed, which comes back here
        return {};
    }
    l2::port_counters switch_counters{};
    if (slot->switch_port) {
        if (auto counters = switch_.stats(*slot->switch_port)) switch_counters = *counters;
        (void)switch_.remove_port(*slot->switch_port);
    }
    if (slot->mac) {
        (void)registry_.remove(*slot->mac);
        const mac_address gone = *slot->mac;
        std::apply([&](auto&... s) { (port_removed(s, gone), ...); }, services_);
    }
    std::optional<backend::counters> link_counters;
    if (slot->link) link_counters = slot->link->stats();
    notify(port_detached_event{slot->name, why, link_counters, switch_counters, slot->counters});
    release_slot(port.index());
    return {};
}

template <class Traits, class... Services>
bool basic_network<Traits, Services...>::adopt_first_source(port_slot& slot, std::uint16_t index, const wire::parsed_frame& frame) {
    if (!frame.valid || !frame.source.is_unicast()) {
        ++slot.counters.dropped_no_mac; // wait for a proper frame
        return false;
    }
    if (auto refused = registry_.add(frame.source, slot.name)) {
        (void)refuse(slot.name, refused.code(), nullptr, refused.message());
        detach(port_handle::make(index, slot.generation));
        return false;
    }
    if (!join_switch(slot, index, frame.source, nullptr)) {
        detach(port_handle::make(index, slot.generation));
        return false;
    }
    notify(port_mac_learned_event{slot.name, frame.source});
    return true;
}

template <class Traits, class... Services>
bool basic_network<Traits, Services...>::to_gateway(const wire::parsed_frame& frame, service_context& ctx) {
    ++stats_.frames_to_gateway;
    bool taken = false;
    std::apply([&](auto&... s) { ((taken = taken || offer(s, frame, ctx)), ...); }, services_);
    return taken;
}

template <class Traits, class... Services>
template <class Emit>
    requires std::invocable<Emit&, port_handle, wire::const_bytes>
void basic_network<Traits, Services...>::uplink_input(wire::const_bytes frame, const wire::offload& meta, network_time now,
                                                      Emit&& emit) {
    static_assert(detail::traits_uplink<Traits>(), "ankanet::basic_network::uplink_input: the network's Traits have no uplink");
    ++stats_.uplink_frames_in;
    if (frame_tap_) frame_tap_(frame);
    // As a VM port's frames: a frame the VMs' MTU cannot carry is not theirs (a super-frame is cut
    // to its segment size, which the VM's MSS chose).
    if (frame.size() < wire::ethernet::header_len || (!meta.is_gso() && frame.size() > backend::max_frame_len(config_.mtu))) {
        ++stats_.uplink_dropped_bad_size;
        return;
    }
    // A VM's MAC as the source is a LAN device using it, or forging it: it is the VM's here. (The
    // switch would not move a VM's live entry, but a quiet VM's entry may have aged out.)
    const auto holder = registry_.lookup(wire::ethernet::packet<wire::const_bytes>{frame}.source());
    if (holder && *holder != lan_holder && *holder != uplink_holder) {
        ++stats_.uplink_source_is_vm;
        return;
    }
    if constexpr (watches_uplink) {
        const auto parsed = wire::parsed_frame::parse(frame);
        service_context ctx{*this, now, std::nullopt, "the LAN", mac_address{}};
        std::apply([&](auto&... s) { (watch_uplink_one(s, parsed, ctx), ...); }, services_);
    }
    const auto destination = wire::ethernet::packet<wire::const_bytes>{frame}.destination();
    // The switch floods a unicast destination it has not learned: the host's own traffic (a
    // translated uplink lets the host's MAC up) or a neighbour's must not reach the VMs.
    const bool unicast = !destination.is_multicast();
    bool for_a_vm = !unicast;
    switch_.handle(gateway_port_, frame, now.steady, [&](l2::port_id out, wire::const_bytes out_frame) {
        if (out == gateway_port_) return; // a second gateway port: none in a network
        if (unicast && slots_[by_switch_index_[out.index()]].mac != destination) return;
        for_a_vm = true;
        deliver(out, out_frame, meta, emit);
    });
    if (!for_a_vm) ++stats_.uplink_not_for_vm;
}

template <class Traits, class... Services>
template <class Emit>
void basic_network<Traits, Services...>::deliver(l2::port_id out, wire::const_bytes frame, const wire::offload& meta, Emit& emit) {
    const std::uint16_t index = by_switch_index_[out.index()];
    port_slot& slot = slots_[index];
    if (!slot.link_up) {
        ++slot.counters.dropped_link_down;
        ++stats_.dropped_link_down;
        return;
    }
    ++slot.counters.frames_out; // a super-frame counts once, however it is cut
    emit_frame(port_handle::make(index, slot.generation), frame, meta, emit);
}

template <class Traits, class... Services>
template <class Emit>
void basic_network<Traits, Services...>::emit_frame(port_handle to, wire::const_bytes frame, const wire::offload& meta, Emit& emit) {
    if (meta.is_plain()) [[likely]] {
        emit(to, frame);
        return;
    }
    if constexpr (offload_emitter<Emit>) {
        emit(to, frame, meta);
    } else {
        // An emit that takes bytes only gets what a NIC would have put on the wire.
        const std::error_code refused =
            wire::segment(frame, meta, offload_scratch(egress_scratch_),
                          [&](wire::mutable_bytes piece) { emit(to, wire::const_bytes{piece}); });
        if (refused) ++stats_.offload_errors;
        else ++stats_.offload_segmented;
    }
}

template <class Traits, class... Services>
void basic_network<Traits, Services...>::queue_reply(wire::const_bytes frame, std::optional<port_handle> target,
                                                     const wire::offload& meta) {
    // A super-frame may pass the MTU (up to 64 KiB of TCP payload); anything else may not.
    const std::size_t limit = meta.is_gso() ? wire::offload::max_frame_len : reply_slot_len_;
    if (reply_count_ == Traits::reply_queue_depth || frame.size() > limit || (!meta.is_plain() && meta.validate())) {
        ++stats_.replies_dropped;
        return;
    }
    const std::size_t at = reply_used_;
    if (at + frame.size() > reply_storage_.size()) [[unlikely]] {
        // Only super-frames get here: plain replies fit the storage made at construction. Nothing
        // points into the storage while replies are queued (they are drained after the services
        // return), so it may move. Grown geometrically, never past depth × the longest frame.
        const std::size_t most = Traits::reply_queue_depth * wire::offload::max_frame_len;
        reply_storage_.resize(std::max(at + frame.size(), std::min(2 * reply_storage_.size(), most)));
    }
    std::memcpy(reply_storage_.data() + at, frame.data(), frame.size());
    reply_used_ = at + frame.size();
    reply_targets_[reply_count_] = target;
    reply_offloads_[reply_count_] = meta;
    reply_offsets_[reply_count_] = at;
    reply_lengths_[reply_count_++] = frame.size();
}

template <class Traits, class... Services>
template <class Emit>
void basic_network<Traits, Services...>::drain_replies(network_time now, Emit& emit) {
    // Replies come from the gateway port, which the switch never sends back to the gateway
    // port: no service runs while draining, so nothing is queued behind the loop.
    for (std::size_t i = 0; i < reply_count_; ++i) {
        const wire::const_bytes reply{reply_storage_.data() + reply_offsets_[i], reply_lengths_[i]};
        const wire::offload& meta = reply_offloads_[i];
        if (const auto& target = reply_targets_[i]) {
            const port_slot* slot = find(*target);
            if (slot == nullptr || !slot->switch_port) { // gone since the reply was made
                ++stats_.replies_dropped;
                continue;
            }
            ++stats_.replies;
            if (frame_tap_) frame_tap_(reply);
            deliver(*slot->switch_port, reply, meta, emit);
            continue;
        }
        ++stats_.replies;
        if (frame_tap_) frame_tap_(reply);
        switch_.handle(gateway_port_, reply, now.steady,
                       [&](l2::port_id out, wire::const_bytes out_frame) {
                           if (out != gateway_port_) deliver(out, out_frame, meta, emit);
                       });
    }
    reply_count_ = 0;
    reply_used_ = 0;
}

template <class Traits, class... Services>
template <class Emit>
    requires std::invocable<Emit&, port_handle, wire::const_bytes>
void basic_network<Traits, Services...>::flush(network_time now, Emit&& emit) {
    service_context ctx{*this, now, std::nullopt, "the gateway", config_.gateway_mac};
    // Each round fills the reply queue at most once and drains it; a round that released less
    // than the room it had is the last.
    for (bool more = true; more;) {
        more = false;
        std::apply([&](auto&... s) { (release_one(s, ctx, more), ...); }, services_);
        drain_replies(now, emit);
    }
}

template <class Traits, class... Services>
std::optional<mac_address> basic_network<Traits, Services...>::lease_holder(ipv4_address address, network_time now) const {
    std::optional<mac_address> holder;
    bool asked = false;
    std::apply([&](const auto&... s) { ((asked = asked || ask_holder(s, address, now, holder)), ...); }, services_);
    return holder;
}

template <class Traits, class... Services>
std::error_code basic_network<Traits, Services...>::mark_in_use(ipv4_address address, mac_address mac, network_time now) {
    std::error_code result = errc::unsupported;
    bool asked = false;
    std::apply([&](auto&... s) { ((asked = asked || mark_one(s, address, mac, now, result)), ...); }, services_);
    return result;
}

} // namespace ankanet
