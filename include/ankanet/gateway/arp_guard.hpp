/// @file
/// ankanet::gateway::arp_guard — the network service that keeps one VM from taking another's
/// IPv4 address by ARP, and keeps static guests' addresses out of the DHCP pool.
///
/// Theory of operation. A vm_frame_inspector (network.hpp): it sees every frame a VM sends before
/// the switch does and shows its ARP to the gateway's neighbour table, which learns who uses which
/// address and referees claims against the network's lease authority (the DHCP server) and earlier
/// claims (see neighbor_table.hpp). A claim on an address leased to, or held by, another MAC is
/// counted, reported (arp_conflict_event) and dropped, so the holder keeps its address and no other
/// guest's ARP cache is poisoned. An accepted claim on an address of the DHCP range for which the
/// claimant holds no lease — a guest with a static address — is reported to the lease authority
/// (mark_in_use), which keeps the address out of the pool while the guest keeps using it; the first
/// time, a static_address_event says so. Every address a VM newly claims is reported
/// (address_claimed_event): it is where the VM now is. When a port goes away, what its MAC claimed is forgotten.
/// A VM claiming more addresses than the table allows one MAC (neighbor_table::config::max_per_mac)
/// has those ARP frames dropped and counted; an arp_limit_event reports it at most once per
/// `report_interval` per VM, so a flooding VM cannot flood the log either.
#pragma once

#include <ankanet/gateway/neighbor_table.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/frame.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <optional>
#include <string_view>

namespace ankanet::gateway {

/// A VM claimed by ARP an address that another holds; its ARP was dropped.
struct arp_conflict_event {
    std::string_view port;     ///< the claimant's port
    neighbor_conflict conflict; ///< conflict
};

/// A VM claimed by ARP an address it did not hold (a lease it took up, or a static address it
/// announced): the address the VM moved to, which a port forward follows.
struct address_claimed_event {
    std::string_view port; ///< port
    wire::mac_address mac; ///< MAC
    wire::ipv4_address address; ///< address
};

/// A VM uses an address of the DHCP range without a lease; the pool keeps it out while in use.
struct static_address_event {
    std::string_view port; ///< port
    wire::mac_address mac; ///< MAC
    wire::ipv4_address address; ///< address
};

/// A VM claimed more addresses than one VM may hold; those ARP frames were dropped.
struct arp_limit_event {
    std::string_view port; ///< port
    wire::mac_address mac; ///< MAC
    std::size_t limit = 0; ///< limit
    std::uint64_t dropped = 0; ///< ARP frames of this VM dropped for it so far
};

/// What the ARP guard dropped and saw.
struct arp_guard_counters {
    std::uint64_t conflicts_dropped = 0; ///< ARP frames dropped for claiming another's address
    std::uint64_t over_limit_dropped = 0; ///< ARP frames dropped: the VM holds its limit of addresses
    std::uint64_t static_addresses = 0;  ///< addresses first seen in use without a lease
};

/// The service that keeps one VM from taking another's IPv4 address by ARP (see the theory of
/// operation).
class arp_guard {
public:
    using config = neighbor_table::config; ///< the config type

    /// An empty table of `cfg`.
    explicit arp_guard(const config& c, std::chrono::seconds report_interval = std::chrono::seconds{60})
        : table_(c), report_interval_(report_interval) {}

    /// Shows a VM's frame to the neighbour table; false (drop it) for a conflicting ARP claim.
    template <class Context>
    bool inspect(const wire::parsed_frame& frame, Context& ctx) {
        if (!frame.arp && !frame.arp_malformed) return true; // the common case: not ARP at all
        neighbor_conflict conflict{};
        const auto seen = table_.observe(frame, ctx.now().steady, [&](wire::ipv4_address a) { return ctx.lease_holder(a); },
                                         &conflict);
        if (seen == neighbor_observation::conflict) {
            ++stats_.conflicts_dropped;
            ctx.notify(arp_conflict_event{ctx.port_name(), conflict});
            return false;
        }
        if (seen == neighbor_observation::over_limit) {
            ++stats_.over_limit_dropped;
            auto& vm = over_limit_[ctx.port_mac()];
            ++vm.dropped;
            const auto now = ctx.now().steady;
            if (!vm.reported || now - vm.last_report >= report_interval_) {
                vm.reported = true;
                vm.last_report = now;
                ctx.notify(arp_limit_event{ctx.port_name(), ctx.port_mac(), table_.settings().max_per_mac, vm.dropped});
            }
            return false;
        }
        if (seen == neighbor_observation::learned && frame.arp->sender_mac == ctx.port_mac()) { // its own claim only
            ctx.notify(address_claimed_event{ctx.port_name(), frame.arp->sender_mac, frame.arp->sender_ip});
        }
        if (seen == neighbor_observation::learned || seen == neighbor_observation::refreshed) {
            // Leased, reserved, excluded or outside the range: nothing to keep out; the pool says so.
            const auto& claim = *frame.arp;
            if (!ctx.mark_in_use(claim.sender_ip, claim.sender_mac) && seen == neighbor_observation::learned) {
                ++stats_.static_addresses;
                ctx.notify(static_address_event{ctx.port_name(), claim.sender_mac, claim.sender_ip});
            }
        }
        return true;
    }

    /// A port that held `mac` is gone: forget what it claimed.
    void port_removed(wire::mac_address mac) {
        (void)table_.forget(mac);
        over_limit_.erase(mac);
    }

    /// The table.
    const neighbor_table& table() const noexcept { return table_; }
    /// What it counted so far.
    const arp_guard_counters& stats() const noexcept { return stats_; }

private:
    struct limited_vm {
        std::uint64_t dropped = 0;
        bool reported = false;
        std::chrono::steady_clock::time_point last_report{};
    };

    neighbor_table table_;
    std::chrono::seconds report_interval_;
    std::unordered_map<wire::mac_address, limited_vm> over_limit_; // VMs that hit the limit
    arp_guard_counters stats_;
};

} // namespace ankanet::gateway
