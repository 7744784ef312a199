/// @file
/// ankanet::gateway::basic_neighbor_table — the gateway's knowledge of which guest uses which IPv4
/// address on its subnet, learned from the ARP the guests send; and the referee when two claim one.
///
/// Theory of operation. A pure engine: observe(frame, now, lease_holder) looks at one frame a guest
/// sent. ARP requests, replies and gratuitous announcements all carry a *claim*: "sender_ip is at
/// sender_mac". DHCP guests make that claim as soon as they use their lease; guests with a
/// self-configured static address make it too (their first ARP, or the gratuitous ARP most stacks
/// send when an address is configured), which is how the gateway learns them without DHCP.
///
/// A claim is judged against two authorities, in order:
///  1. The lease: `lease_holder(address)` says which MAC holds a DHCP lease on the address (the
///     DHCP server's pool). A claim by any other MAC is a conflict.
///  2. An earlier claim: an address learned for one MAC and still fresh (seen within `lifetime`)
///     belongs to that MAC; a claim by another is a conflict. Once the holder has been silent for
///     `lifetime`, the address is up for grabs again (a VM that went away, or renumbered).
/// The gateway's own address is never up for grabs. A conflict is counted and reported to the
/// caller; the table keeps the holder (the caller typically logs it and drops the offending ARP so
/// that the other guests' ARP caches are not poisoned). Probes (sender 0.0.0.0, RFC 5227), claims
/// for addresses outside the subnet and for its network or broadcast addresses claim nothing and are
/// ignored (counted).
///
/// One MAC may hold at most `max_per_mac` addresses (when set): a further new claim is refused
/// (over_limit) and not learned, so a guest announcing the whole subnet holds no more than its share.
///
/// Memory is bounded: at most `capacity` entries. When full, a new claim first replaces a stale
/// entry; if none is stale it is not learned (table_full) — the gateway still serves that guest,
/// it only does not referee its address. Lookups and claims are O(1) on average (hash map on the
/// address); finding a stale entry when full is O(n), which only a full table pays.
/// Not thread-safe; one table per network, used from the thread that handles its frames.
#pragma once

#include <ankanet/wire/address.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/frame.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>

namespace ankanet::gateway {

/// What observe() made of a frame.
enum class neighbor_observation {
    not_arp,     ///< not an ARP frame (or a VLAN-tagged one): nothing to learn
    ignored,     ///< ARP that claims nothing: a probe, or an address outside the subnet
    learned,     ///< a new address → MAC entry
    refreshed,   ///< the holder claimed its address again
    conflict,    ///< a second MAC claimed an address that is leased to, or held by, another
    table_full,  ///< a new, legitimate claim that did not fit (no stale entry to replace)
    over_limit,  ///< a new claim by a MAC that holds `max_per_mac` addresses already: not learned
};

/// The two sides of a conflict, for the caller's log.
struct neighbor_conflict {
    wire::ipv4_address address; ///< address
    wire::mac_address holder;   ///< who keeps the address
    wire::mac_address claimant; ///< who claimed it too
    bool leased = false;        ///< the holder's right comes from a DHCP lease (else: an earlier claim)
    bool gateway = false;       ///< the address is the gateway's own
};

/// What the neighbour table did.
struct neighbor_counters {
    std::uint64_t learned = 0; ///< learned
    std::uint64_t refreshed = 0; ///< refreshed
    std::uint64_t conflicts = 0; ///< conflicts
    std::uint64_t ignored = 0; ///< ignored
    std::uint64_t table_full = 0; ///< table full
    std::uint64_t over_limit = 0; ///< new claims refused: the MAC holds max_per_mac addresses
    std::uint64_t malformed = 0; ///< ARP ethertype whose payload did not parse
};

/// @par LeaseHolder requirements
/// Callable as `holder(ipv4_address)` → `std::optional<mac_address>`: the MAC holding a DHCP lease
/// on the address right now, or nothing.
template <class F>
concept lease_holder_lookup = requires(F& f, wire::ipv4_address a) {
    { f(a) } -> std::convertible_to<std::optional<wire::mac_address>>;
};

/// The lease holder of a network without DHCP: nobody holds a lease.
struct no_leases {
    /// Nobody holds a lease.
    std::optional<wire::mac_address> operator()(wire::ipv4_address) const noexcept { return std::nullopt; }
};

/// The gateway's neighbour table (see the theory of operation at the top of this file).
/// @tparam Clock a steady clock; `now` is always passed in, the clock only names the time type.
template <class Clock = std::chrono::steady_clock>
class basic_neighbor_table {
public:
    using clock_type = Clock; ///< the clock it reads
    using time_point = typename Clock::time_point; ///< a point in time of the clock
    using duration = typename Clock::duration; ///< a duration of the clock

    /// Sizes and lifetimes of the neighbour table.
    struct config {
        wire::ipv4_prefix subnet;        ///< the guests' subnet
        wire::ipv4_address gateway;      ///< the gateway's own address (never learned for a guest)
        wire::mac_address gateway_mac; ///< gateway MAC
        duration lifetime = std::chrono::minutes{20}; ///< how long a claim stands without being renewed

        /// capacity
        std::size_t capacity = 4096;
        /// The most addresses one MAC may hold at once (0: no limit), so one guest claiming the
        /// whole subnet by ARP cannot hold every address against the others.
        std::size_t max_per_mac = 0;
    };

    /// A guard for the network `c`; refusals are reported at most once per `report_interval`.
    explicit basic_neighbor_table(const config& cfg) : config_(cfg) { entries_.reserve(cfg.capacity); }

    /// Looks at one frame a guest sent.
    /// @param conflict when not null and the result is `conflict`, filled with both sides.
    template <lease_holder_lookup LeaseHolder = no_leases>
    neighbor_observation observe(wire::const_bytes frame, time_point now, LeaseHolder&& lease_holder = {},
                                 neighbor_conflict* conflict = nullptr) {
        return observe(wire::parsed_frame::parse(frame), now, lease_holder, conflict);
    }

    /// As above, for a frame its caller has parsed already (a network parses each frame once).
    template <lease_holder_lookup LeaseHolder = no_leases>
    neighbor_observation observe(const wire::parsed_frame& frame, time_point now, LeaseHolder&& lease_holder = {},
                                 neighbor_conflict* conflict = nullptr) {
        if (frame.arp_malformed) {
            ++stats_.malformed;
            return neighbor_observation::ignored;
        }
        if (!frame.arp) return neighbor_observation::not_arp;
        return claim(frame.arp->sender_ip, frame.arp->sender_mac, now, lease_holder, conflict);
    }

    /// Judges one claim "address is at mac" (what observe() does with an ARP's sender fields).
    template <lease_holder_lookup LeaseHolder = no_leases>
    neighbor_observation claim(wire::ipv4_address address, wire::mac_address mac, time_point now,
                               LeaseHolder&& lease_holder = {}, neighbor_conflict* conflict = nullptr) {
        if (!claimable(address) || !mac.is_unicast()) {
            ++stats_.ignored;
            return neighbor_observation::ignored;
        }
        auto report = [&](wire::mac_address holder, bool leased, bool gateway) {
            ++stats_.conflicts;
            if (conflict != nullptr) *conflict = neighbor_conflict{address, holder, mac, leased, gateway};
            return neighbor_observation::conflict;
        };
        if (address == config_.gateway) return report(config_.gateway_mac, false, true);
        const std::optional<wire::mac_address> leased_to = lease_holder(address);
        if (leased_to && *leased_to != mac) return report(*leased_to, true, false);

        const auto it = entries_.find(address);
        if (it != entries_.end()) {
            entry& e = it->second;
            if (e.mac == mac) {
                e.seen = now;
                ++stats_.refreshed;
                return neighbor_observation::refreshed;
            }
            // The lease, when there is one, outranks an earlier claim (a static guest squatting on a
            // leased address loses); without one, a fresh earlier claim stands.
            if (!leased_to && fresh(e, now)) return report(e.mac, false, false);
            if (at_limit(mac)) return over_limit();
            count_down(e.mac);
            e = entry{mac, now};
            ++per_mac_[mac];
            ++stats_.learned;
            return neighbor_observation::learned;
        }
        if (at_limit(mac)) return over_limit();
        if (entries_.size() >= config_.capacity && !evict_stale(now)) {
            ++stats_.table_full;
            return neighbor_observation::table_full;
        }
        entries_.emplace(address, entry{mac, now});
        ++per_mac_[mac];
        ++stats_.learned;
        return neighbor_observation::learned;
    }

    /// The MAC a fresh entry holds for `address`.
    std::optional<wire::mac_address> lookup(wire::ipv4_address address, time_point now) const {
        const auto it = entries_.find(address);
        if (it == entries_.end() || !fresh(it->second, now)) return std::nullopt;
        return it->second.mac;
    }

    /// Forgets every address `mac` claimed (its VM detached). Returns how many.
    std::size_t forget(wire::mac_address mac) {
        per_mac_.erase(mac);
        return std::erase_if(entries_, [&](const auto& item) { return item.second.mac == mac; });
    }

    /// How many addresses `mac` holds in the table.
    std::size_t held_by(wire::mac_address mac) const {
        const auto it = per_mac_.find(mac);
        return it == per_mac_.end() ? 0 : it->second;
    }

    /// The number of elements.
    std::size_t size() const noexcept { return entries_.size(); }
    /// What it counted so far.
    const neighbor_counters& stats() const noexcept { return stats_; }
    /// The settings.
    const config& settings() const noexcept { return config_; }

private:
    struct entry {
        wire::mac_address mac;
        time_point seen;
    };
    bool claimable(wire::ipv4_address a) const noexcept {
        const auto& s = config_.subnet;
        if (!s.contains(a)) return false;
        // A /31 or /32 has no network or broadcast address to set aside (RFC 3021).
        return s.length() >= 31 || (a != s.network() && a != s.broadcast());
    }
    bool fresh(const entry& e, time_point now) const noexcept { return now - e.seen < config_.lifetime; }

    bool at_limit(wire::mac_address mac) const { return config_.max_per_mac != 0 && held_by(mac) >= config_.max_per_mac; }
    neighbor_observation over_limit() {
        ++stats_.over_limit;
        return neighbor_observation::over_limit;
    }
    void count_down(wire::mac_address mac) {
        const auto it = per_mac_.find(mac);
        if (it != per_mac_.end() && --it->second == 0) per_mac_.erase(it);
    }

    bool evict_stale(time_point now) {
        for (auto it = entries_.begin(); it != entries_.end(); ++it) {
            if (!fresh(it->second, now)) {
                count_down(it->second.mac);
                entries_.erase(it);
                return true;
            }
        }
        return false;
    }

    config config_;
    std::unordered_map<wire::ipv4_address, entry> entries_;
    std::unordered_map<wire::mac_address, std::size_t> per_mac_; // addresses each MAC holds
    neighbor_counters stats_;
};

using neighbor_table = basic_neighbor_table<>; ///< a neighbour table on the steady clock

} // namespace ankanet::gateway
