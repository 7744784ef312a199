// ankanetd's core: one network — the VMs' ports, the learning switch between them, and the gateway
// (ARP and ping responder, DHCP server, neighbour table) on the switch's gateway port.
//
// Theory of operation. Every frame a VM sends is recorded (with --pcap) and then:
//  1. In disconnected mode the cable is unplugged: counted and dropped.
//  2. A port whose MAC is not known yet (QEMU and vfkit guests choose their own) registers the
//     source MAC of its first frame; a MAC another running VM holds is refused and that port closed,
//     as a clone with its twin's fixed MAC must not run beside it. TAP guests register at attach.
//  3. ARP is shown to the neighbour table, which learns guests' addresses (DHCP or static) and
//     referees claims: an ARP claiming an address leased to, or held by, another MAC is logged,
//     counted and dropped, so the holder keeps it and no other guest's ARP cache is poisoned. An
//     accepted claim on an address of the DHCP range without a lease (a static guest) keeps that
//     address out of the pool while the guest keeps using it.
//  4. The switch forwards it: to other VMs, and to the gateway port when it is for the gateway MAC
//     or flooded. A frame reaching the gateway is offered to the DHCP server, then to the
//     responder; their replies enter the switch from the gateway port, which delivers them.
// One thread (the io_context's) runs everything; engines are pure and see `now` from here.
#pragma once

#include "command_line.hpp"

#include <ankanet/backend/pcap.hpp>
#include <ankanet/backend/port.hpp>
#include <ankanet/config.hpp>
#include <ankanet/dhcp/lease_pool.hpp>
#include <ankanet/dhcp/lease_store.hpp>
#include <ankanet/dhcp/server.hpp>
#include <ankanet/gateway/neighbor_table.hpp>
#include <ankanet/gateway/responder.hpp>
#include <ankanet/l2/mac_randomizer.hpp>
#include <ankanet/l2/mac_registry.hpp>
#include <ankanet/l2/switch.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/ethernet.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace ankanetd {

/// The lease store chosen at run time: a file with --leases, memory otherwise.
class runtime_lease_store {
public:
    runtime_lease_store() = default;
    explicit runtime_lease_store(std::filesystem::path file) : store_(ankanet::dhcp::file_lease_store{std::move(file)}) {}

    ankanet::result<std::vector<ankanet::dhcp::lease>> load(std::string& why) {
        return std::visit([&](auto& s) { return s.load(why); }, store_);
    }
    std::error_code put(const ankanet::dhcp::lease& l) {
        return std::visit([&](auto& s) { return s.put(l); }, store_);
    }
    std::error_code erase(ankanet::ipv4_address a) {
        return std::visit([&](auto& s) { return s.erase(a); }, store_);
    }

private:
    std::variant<ankanet::dhcp::memory_lease_store, ankanet::dhcp::file_lease_store> store_;
};

using dhcp_server = ankanet::dhcp::basic_server<runtime_lease_store>;
using learning_switch = ankanet::l2::learning_switch;
using neighbor_table = ankanet::gateway::neighbor_table;

struct daemon_counters {
    std::uint64_t frames_in = 0;         ///< frames received from VMs
    std::uint64_t frames_to_gateway = 0; ///< frames the switch delivered to the gateway port
    std::uint64_t frames_unplugged = 0;  ///< dropped in disconnected mode
    std::uint64_t arp_conflicts = 0;     ///< ARP claims for another's address, dropped
    std::uint64_t ports_refused = 0;     ///< VMs refused for a MAC another VM holds
};

class daemon {
public:
    struct settings {
        ankanet::network_mode mode = ankanet::network_mode::shared;
        network_plan plan;
        std::vector<reservation> reservations;
        std::uint32_t lease_time = default_lease_time;
        std::optional<std::string> lease_file;
        std::size_t mtu = ankanet::backend::default_mtu;
        bool isolate = false;
        std::optional<ankanet::l2::host_secret> mac_secret; ///< for stable MACs (assign_mac with a uuid)
    };

    /// Builds the network; nullptr with `why` set when the DHCP server or its lease file refuses.
    static std::unique_ptr<daemon> create(const settings& s, std::optional<ankanet::backend::pcap_writer> pcap, std::string& why) {
        std::unique_ptr<daemon> d{new daemon(s, std::move(pcap))};
        if (s.mode == ankanet::network_mode::disconnected) return d; // nobody to serve
        if (auto ec = d->start_dhcp(s, why)) return nullptr;
        return d;
    }

    daemon(const daemon&) = delete;
    daemon& operator=(const daemon&) = delete;

    /// The MAC a VM will use: `custom` when given (refused, with a sentence naming both VMs, when
    /// another running VM holds it); else, with `uuid`, its stable MAC under the host secret (the same
    /// after every restart); else a fresh random one. Registered to `vm`.
    std::optional<ankanet::mac_address> assign_mac(const std::string& vm, std::optional<ankanet::mac_address> custom,
                                                   std::optional<ankanet::l2::vm_uuid> uuid, std::string& why) {
        if (!custom) {
            auto drawn = uuid ? randomizer_.stable(*uuid, registry_, vm) : randomizer_.draw(registry_);
            if (!drawn) {
                why = drawn.error().message();
                return std::nullopt;
            }
            custom = *drawn;
        }
        if (auto refused = registry_.add(*custom, vm)) {
            why = refused.message();
            return std::nullopt;
        }
        return custom;
    }

    /// Adds a VM's port and starts receiving from it. `mac`, when known, must have been assigned by
    /// assign_mac(port->name(), ...); otherwise the port registers its first frame's source.
    void attach(std::shared_ptr<ankanet::backend::port> port, std::optional<ankanet::mac_address> mac) {
        log("attached {} (mtu {}, mac {})", port->name(), port->mtu(), mac ? fmt::format("{}", *mac) : "from first frame");
        guest entry{port, std::nullopt, std::nullopt};
        if (mac) join_switch(entry, *mac);
        vms_.push_back(std::move(entry));
        port->start([this](ankanet::backend::port& from, ankanet::wire::const_bytes frame) { on_frame(from, frame); },
                    [this](ankanet::backend::port& closed, std::error_code why) { on_closed(closed, why); });
    }

    /// Closes every port; each detaches as its receive loop ends.
    void stop() {
        std::vector<std::shared_ptr<ankanet::backend::port>> ports;
        for (const auto& v : vms_) ports.push_back(v.port); // closing may detach ports from the list
        for (const auto& port : ports) port->close();
        if (pcap_) pcap_->flush();
    }

    /// One line of counters for the log at exit.
    std::string summary() const {
        std::string line = fmt::format("{} frames in, {} to the gateway ({} ARP replies, {} echo replies)", stats_.frames_in,
                                       stats_.frames_to_gateway, gateway_.stats().arp_replies, gateway_.stats().echo_replies);
        if (dhcp_) {
            const auto& d = dhcp_->stats();
            line += fmt::format(", DHCP {} offers {} acks {} naks", d.offers, d.acks, d.naks);
        }
        line += fmt::format(", {} ARP conflicts, {} unplugged", stats_.arp_conflicts, stats_.frames_unplugged);
        return line;
    }

    template <class... Args>
    static void log(fmt::format_string<Args...> format, Args&&... args) {
        fmt::print(stderr, "ankanetd: {}\n", fmt::format(format, std::forward<Args>(args)...));
    }

private:
    struct guest {
        std::shared_ptr<ankanet::backend::port> port;
        std::optional<ankanet::l2::port_id> switch_port;
        std::optional<ankanet::mac_address> mac;
    };

    daemon(const settings& s, std::optional<ankanet::backend::pcap_writer> pcap)
        : mode_(s.mode),
          gateway_(s.plan.subnet.address(), ankanet::default_gateway_mac),
          neighbors_({.subnet = s.plan.subnet, .gateway = s.plan.subnet.address(), .gateway_mac = ankanet::default_gateway_mac}),
          switch_(switch_config(s.isolate)),
          randomizer_(ankanet::l2::mac_prefix{}, s.mac_secret),
          pcap_(std::move(pcap)) {
        gateway_port_ = *switch_.add_gateway_port(); // an empty switch always has room
    }

    static learning_switch::config switch_config(bool isolate) {
        learning_switch::config c;
        c.isolated = isolate;
        return c;
    }

    std::error_code start_dhcp(const settings& s, std::string& why) {
        ankanet::dhcp::lease_pool_config pool;
        pool.subnet = s.plan.subnet;
        pool.first = s.plan.range.first;
        pool.last = s.plan.range.last;
        pool.excluded = s.plan.excluded;
        pool.lease_time = std::chrono::seconds{s.lease_time};
        for (const auto& r : s.reservations) pool.reservations.push_back({.mac = r.mac, .client_id = {}, .address = r.address});
        auto store = s.lease_file ? runtime_lease_store{*s.lease_file} : runtime_lease_store{};
        auto leases = ankanet::dhcp::basic_lease_pool<runtime_lease_store>::create(std::move(pool), std::move(store), {}, &why);
        if (!leases) return leases.error();

        ankanet::dhcp::server_config config;
        config.server_address = s.plan.subnet.address();
        config.server_mac = ankanet::default_gateway_mac;
        config.interface_mtu = static_cast<std::uint16_t>(s.mtu);
        auto server = dhcp_server::create(std::move(config), std::move(*leases), &why);
        if (!server) return server.error();
        dhcp_.emplace(std::move(*server));
        dhcp_->set_observer([](const ankanet::dhcp::lease_event& e) {
            log("DHCP {} {} {} {}{}{}", event_name(e.kind), e.address, event_preposition(e.kind), e.mac,
                e.hostname.empty() ? "" : fmt::format(" ({})", e.hostname), e.reason.empty() ? "" : fmt::format(": {}", e.reason));
        });
        log("DHCP serving {}-{} on {} (lease {} s, {} reserved, leases {})", s.plan.range.first, s.plan.range.last,
            s.plan.subnet, s.lease_time, s.reservations.size(), s.lease_file ? *s.lease_file : std::string{"in memory"});
        return {};
    }

    static std::string_view event_name(ankanet::dhcp::lease_event_kind kind) {
        using k = ankanet::dhcp::lease_event_kind;
        switch (kind) {
        case k::offered: return "offered";
        case k::acknowledged: return "leased";
        case k::nacked: return "refused";
        case k::declined: return "declined";
        case k::released: return "released";
        case k::informed: return "informed";
        }
        return "event";
    }
    static std::string_view event_preposition(ankanet::dhcp::lease_event_kind kind) {
        using k = ankanet::dhcp::lease_event_kind;
        return kind == k::offered || kind == k::acknowledged || kind == k::nacked ? "to" : "by";
    }

    bool join_switch(guest& v, ankanet::mac_address mac) {
        auto id = switch_.add_vm_port(mac);
        if (!id) {
            log("{}: cannot join the switch: {}", v.port->name(), id.error().message());
            return false;
        }
        v.switch_port = *id;
        v.mac = mac;
        by_switch_port_[id->value] = v.port.get();
        return true;
    }

    guest* find(const ankanet::backend::port& p) {
        for (auto& v : vms_) {
            if (v.port.get() == &p) return &v;
        }
        return nullptr;
    }

    void on_frame(ankanet::backend::port& from, ankanet::wire::const_bytes frame) {
        ++stats_.frames_in;
        record(frame);
        if (mode_ == ankanet::network_mode::disconnected) {
            ++stats_.frames_unplugged;
            return;
        }
        guest* v = find(from);
        if (v == nullptr) return; // detached while a frame was in flight
        if (!v->switch_port && !adopt_first_source(*v, frame)) return;

        const auto now = std::chrono::steady_clock::now();
        ankanet::gateway::neighbor_conflict conflict{};
        const auto seen = neighbors_.observe(frame, now, [this](ankanet::ipv4_address a) { return lease_holder(a); }, &conflict);
        if (seen == ankanet::gateway::neighbor_observation::conflict) {
            ++stats_.arp_conflicts;
            log("{}: {} claims {}, which {} {}; ARP dropped", from.name(), conflict.claimant, conflict.address,
                conflict.gateway ? "is the gateway's own, at" : conflict.leased ? "is leased to" : "is in use by", conflict.holder);
            return;
        }
        if (seen == ankanet::gateway::neighbor_observation::learned || seen == ankanet::gateway::neighbor_observation::refreshed) {
            keep_out_of_pool(from, frame, seen == ankanet::gateway::neighbor_observation::learned);
        }
        switch_.handle(*v->switch_port, frame, now, [this](ankanet::l2::port_id out, ankanet::wire::const_bytes f) { deliver(out, f); });
    }

    /// A guest claimed an address by ARP (accepted by the neighbour table). If it holds no lease on
    /// it — a static address — the DHCP pool must not offer it to anyone else while it is in use.
    void keep_out_of_pool(const ankanet::backend::port& from, ankanet::wire::const_bytes frame, bool first_seen) {
        if (!dhcp_) return;
        const auto eth = ankanet::wire::ethernet::repr::parse(frame);
        if (!eth) return;
        const auto arp = ankanet::wire::arp::repr::parse(frame.subspan(eth->buffer_len()));
        if (!arp) return;
        // Leased, reserved, excluded or outside the range: nothing to keep out; the pool says so.
        if (dhcp_->pool().mark_in_use(arp->sender_ip, arp->sender_mac)) return;
        if (first_seen) {
            log("{}: {} uses {} without a lease; kept out of the DHCP pool while in use", from.name(), arp->sender_mac, arp->sender_ip);
        }
    }

    /// A port without a known MAC takes its first frame's source as its registered MAC.
    bool adopt_first_source(guest& v, ankanet::wire::const_bytes frame) {
        const auto eth = ankanet::wire::ethernet::repr::parse(frame);
        if (!eth || !eth->source.is_unicast()) return false; // counted by nobody yet: wait for a proper frame
        if (auto refused = registry_.add(eth->source, v.port->name())) {
            ++stats_.ports_refused;
            log("{}: refused: {}", v.port->name(), refused.message());
            v.port->close();
            return false;
        }
        if (!join_switch(v, eth->source)) return false;
        log("{}: registered MAC {} from its first frame", v.port->name(), eth->source);
        return true;
    }

    void deliver(ankanet::l2::port_id out, ankanet::wire::const_bytes frame) {
        if (out == gateway_port_) {
            to_gateway(frame);
            return;
        }
        const auto it = by_switch_port_.find(out.value);
        if (it != by_switch_port_.end()) it->second->send(frame); // a drop is counted by the backend
    }

    void to_gateway(ankanet::wire::const_bytes frame) {
        ++stats_.frames_to_gateway;
        auto reply = [this](ankanet::wire::const_bytes r) { from_gateway(r); };
        if (dhcp_ && dhcp_->handle(frame, reply)) return;
        gateway_.handle(frame, reply);
    }

    void from_gateway(ankanet::wire::const_bytes frame) {
        record(frame);
        switch_.handle(gateway_port_, frame, std::chrono::steady_clock::now(),
                       [this](ankanet::l2::port_id out, ankanet::wire::const_bytes f) { deliver(out, f); });
    }

    std::optional<ankanet::mac_address> lease_holder(ankanet::ipv4_address a) const {
        if (!dhcp_) return std::nullopt;
        const auto held = dhcp_->pool().find(a);
        if (!held || !held->bound || held->expiry <= std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now())) {
            return std::nullopt;
        }
        return held->mac;
    }

    void on_closed(ankanet::backend::port& closed, std::error_code why) {
        const auto s = closed.stats();
        log("detached {} ({}): rx {} frames, tx {} frames, dropped rx {} runt {} oversize, tx {} dropped",
            closed.name(), why.message(), s.rx_frames, s.tx_frames, s.rx_runt, s.rx_oversize, s.tx_dropped);
        if (guest* v = find(closed)) {
            if (v->switch_port) {
                if (const auto counters = switch_.stats(*v->switch_port); counters && counters->dropped_spoofed > 0) {
                    log("{}: {} frames with another VM's source MAC were dropped", closed.name(), counters->dropped_spoofed);
                }
                by_switch_port_.erase(v->switch_port->value);
                (void)switch_.remove_port(*v->switch_port);
            }
            if (v->mac) neighbors_.forget(*v->mac);
        }
        registry_.remove_vm(closed.name());
        std::erase_if(vms_, [&](const guest& v) { return v.port.get() == &closed; });
    }

    void record(ankanet::wire::const_bytes frame) {
        if (pcap_) pcap_->write(frame);
    }

    ankanet::network_mode mode_;
    ankanet::gateway::responder gateway_;
    neighbor_table neighbors_;
    std::optional<dhcp_server> dhcp_;
    learning_switch switch_;
    ankanet::l2::port_id gateway_port_{};
    ankanet::l2::mac_registry registry_;
    ankanet::l2::mac_randomizer randomizer_;
    std::optional<ankanet::backend::pcap_writer> pcap_;
    std::vector<guest> vms_;
    std::unordered_map<std::uint32_t, ankanet::backend::port*> by_switch_port_;
    daemon_counters stats_;
};

} // namespace ankanetd
