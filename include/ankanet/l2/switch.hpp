/// @file
/// ankanet::l2::learning_switch — the Ethernet switch joining the VMs of one network and its gateway.
///
/// Theory of operation. A pure engine: handle(ingress, frame, now, emit) takes one frame received on
/// a port and calls emit(egress, frame) once for each port the frame leaves by, with the same bytes
/// (no copy, no rewrite). No I/O, no clock, no threads: `now` comes from the caller.
///
/// Ports. One per VM NIC, holding the MAC the VM registered (mac_registry), and one or more gateway
/// ports — the gateway's own stack in shared/host mode, the LAN uplink in bridge mode. Ports are
/// added and removed at run time; an id carries a generation, so a stale id of a removed port is
/// refused (dropped_unknown_port) rather than taken for the port that reused its slot.
///
/// Per frame, in order (IEEE 802.1D's forwarding process, reduced to what a host-local switch needs):
///  1. Shorter than an Ethernet header, or a group or all-zero source address: dropped_malformed.
///  2. On a VM port, a source that is not the port's registered MAC: dropped_spoofed. A VM can
///     neither impersonate another VM nor fill the MAC table. Gateway ports are trusted.
///  3. The source is learned (or refreshed) on the ingress port at `now`.
///  4. A unicast destination a gateway port owns (add_gateway_port(own): the gateway's own MAC) goes
///     to that port, always — a short list checked before the table, so it never ages out.
///     A group destination (broadcast, multicast) or an unknown or aged-out unicast one is flooded
///     to every port but the ingress; a known unicast one goes to its port only. A destination
///     learned on the ingress port itself is filtered: nothing is ever sent back where it came from.
///  5. Isolation (optional, as vmnet's isolation key): a VM's frames reach gateway ports only.
///     Unicast to another VM is dropped_isolated; floods from a VM go to the gateway ports only.
///     Gateway ports still reach every VM.
///
/// The MAC table. A fixed array of MacCapacity entries, allocated once at construction: 8-way
/// set-associative buckets indexed by SipHash-2-4 of the MAC under a per-switch random key (so
/// nobody outside can aim addresses at one bucket). An entry lives `ageing_time` after its source
/// was last seen (300 s by default, 802.1D's recommended ageing time). Learning into a full bucket
/// replaces an empty or aged-out entry, else the least recently seen one (table_evictions counts
/// these); entries a VM port learned for its own registered MAC are "sticky": a gateway port may
/// not move them while they live, and learning from a gateway port never evicts them. So memory is
/// bounded by MacCapacity whatever sources arrive, a VM can only ever occupy its one entry, and a
/// LAN flooding random sources through a bridge uplink cannot push VMs out of the table — at worst
/// frames to evicted LAN hosts are flooded, which is correct, only slower.
///
/// Cost. handle() allocates nothing and takes no locks: a SipHash computation and a 128-byte bucket
/// scan for the destination, another scan to refresh the source (hashed once per VM port, when it
/// is added; per frame for gateway ports), and one emit per egress port. Ports cannot be added or
/// removed from inside emit (switch_errc::busy); handle() may be re-entered from emit (a gateway
/// answering synchronously). Not thread-safe: one switch per network, one thread.
#pragma once

#include <ankanet/detail/siphash.hpp>
#include <ankanet/l2/mac_registry.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/ethernet.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

namespace ankanet::l2 {

/// Why the switch refused a port operation.
enum class switch_errc {
    too_many_ports = 1, ///< max_ports ports are attached already
    unknown_port,       ///< the id names no attached port (never added, or removed)
    busy,               ///< ports cannot be added or removed from inside an emit callback
};

namespace detail {

class switch_error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "ankanet.l2.switch"; }

    std::string message(int code) const override {
        switch (static_cast<switch_errc>(code)) {
        case switch_errc::too_many_ports: return "the switch has no free port";
        case switch_errc::unknown_port: return "no such switch port";
        case switch_errc::busy: return "switch ports cannot be added or removed while a frame is being switched";
        }
        return "unknown switch error";
    }
};

} // namespace detail

/// The switch error category.
inline const std::error_category& switch_error_category() noexcept {
    static const detail::switch_error_category_impl instance;
    return instance;
}

/// Wraps `e` in a std::error_code of its category (found by argument-dependent lookup).
inline std::error_code make_error_code(switch_errc e) noexcept { return {static_cast<int>(e), switch_error_category()}; }

} // namespace ankanet::l2

template <>
struct std::is_error_code_enum<ankanet::l2::switch_errc> : std::true_type {};

namespace ankanet::l2 {

/// A switch port: a slot index and the slot's generation when the port was added.
struct port_id {
    std::uint32_t value = 0; ///< value

    /// The index.
    constexpr std::uint16_t index() const noexcept { return static_cast<std::uint16_t>(value & 0xffffu); }
    /// The generation.
    constexpr std::uint16_t generation() const noexcept { return static_cast<std::uint16_t>(value >> 16); }
    /// The ID of the port at `index` in its `generation`.
    static constexpr port_id make(std::uint16_t index, std::uint16_t generation) noexcept {
        return port_id{(std::uint32_t{generation} << 16) | index};
    }
    /// Memberwise ordering.
    constexpr auto operator<=>(const port_id&) const noexcept = default;
};

/// Writes the text form to `out`.
inline std::ostream& operator<<(std::ostream& out, const port_id& id) {
    return out << "port " << id.index() << '.' << id.generation();
}

/// What a port connects.
enum class port_role : std::uint8_t {
    vm,      ///< one VM NIC: its source MAC must be the registered one; isolated when the switch is
    gateway, ///< the gateway (or a bridge uplink): trusted, may source any unicast MAC
};

/// Per-port counters. rx and the drop/flood counters count frames received on the port; tx counts
/// frames the switch emitted to it.
struct port_counters {
    std::uint64_t rx = 0;                ///< frames received on the port
    std::uint64_t tx = 0;                ///< frames the switch emitted to the port
    std::uint64_t flooded = 0;           ///< received here and flooded (group or unknown destination)
    std::uint64_t filtered = 0;          ///< received here for a destination on this same port
    std::uint64_t dropped_spoofed = 0;   ///< source MAC not the port's registered MAC
    std::uint64_t dropped_isolated = 0;  ///< unicast to another VM on an isolated network
    std::uint64_t dropped_malformed = 0; ///< shorter than a header, or a group or zero source

    /// Memberwise equality.
    bool operator==(const port_counters&) const noexcept = default;
};

/// Switch-wide counters.
struct switch_counters {
    std::uint64_t dropped_unknown_port = 0; ///< handle() called with an id of no attached port
    std::uint64_t table_evictions = 0;      ///< live entries replaced because their bucket was full
    std::uint64_t learn_skipped = 0;        ///< sources not learned: bucket full of sticky VM entries
};

/// What handle() did with a frame.
enum class disposition : std::uint8_t {
    forwarded,            ///< to the one port its destination was learned on
    flooded,              ///< to every eligible port but the ingress
    filtered,             ///< its destination is on the ingress port: sent nowhere
    dropped_spoofed,
    dropped_isolated,
    dropped_malformed,
    dropped_unknown_port,
};

/// An emit callback: called as emit(egress_port, frame) for each copy the switch sends.
template <class Emit>
concept switch_emitter = std::invocable<Emit&, port_id, wire::const_bytes>;

/// The learning switch; see the theory of operation above.
/// @tparam MacCapacity entries in the MAC table, a power of two of at least 8: the bound on the
///         table's memory (16 bytes per entry with std::chrono::steady_clock: 64 KiB by default),
///         fixed at construction. Size it at 8 or more times the addresses a network holds: with
///         n addresses in B = MacCapacity/8 buckets, a bucket overflows (and its least recently
///         seen entry is flooded to until it speaks again) with probability about
///         B · P(Poisson(n/B) > 8) — 3·10^-2 for n = 256 in 1024 entries, 2·10^-6 in 4096.
/// @tparam Clock supplies `time_point` and `duration` for `now` and the ageing time; never read.
template <std::size_t MacCapacity = 4096, class Clock = std::chrono::steady_clock>
class basic_learning_switch {
public:
    using time_point = typename Clock::time_point; ///< a point in time of the clock
    using duration = typename Clock::duration; ///< a duration of the clock

    static constexpr std::size_t ways = 8; ///< ways
    static_assert(MacCapacity >= ways && (MacCapacity & (MacCapacity - 1)) == 0,
                  "MacCapacity must be a power of two of at least 8 (one bucket)");
    /// MAC capacity
    static constexpr std::size_t mac_capacity = MacCapacity;
    /// Ports attached at once (the table packs a port index into 15 bits).
    static constexpr std::size_t max_ports = 0x7fff;
    /// IEEE 802.1D's recommended ageing time.
    static constexpr duration default_ageing_time = std::chrono::duration_cast<duration>(std::chrono::seconds{300});

    /// How the switch is set up.
    struct config {
        duration ageing_time = default_ageing_time; ///< ageing time

        /// isolated
        bool isolated = false;
        /// Key of the MAC table's hash; drawn from std::random_device when not given.
        std::optional<std::array<std::byte, 16>> hash_key;
    };

    basic_learning_switch() : basic_learning_switch(config{}) {}
    /// Draws MACs from `random` within `prefix`; with `secret`, stable MACs are derived from it.
    explicit basic_learning_switch(const config& cfg)
        : ageing_time_(cfg.ageing_time), isolated_(cfg.isolated), key_(make_key(cfg.hash_key)), buckets_(bucket_count) {}

    // --- ports --------------------------------------------------------------------------------

    /// Attaches a VM NIC whose frames must carry `registered` as their source.
    /// mac_errc::{zero,broadcast,multicast}_address for an address no NIC can have.
    result<port_id> add_vm_port(const mac_address& registered) {
        if (auto ec = validate_nic_mac(registered)) return ec;
        return add_port(port_role::vm, registered);
    }

    /// Attaches a gateway (trusted) port.
    result<port_id> add_gateway_port() { return add_port(port_role::gateway, mac_address{}); }

    /// Attaches a gateway port that owns `own` — the gateway's own stack: frames to `own` always go
    /// to it, whether or not it has spoken lately (a learned entry would age out, and frames for the
    /// gateway would then be flooded to every VM). It may still source other MACs.
    result<port_id> add_gateway_port(const mac_address& own) {
        if (auto ec = validate_nic_mac(own)) return ec;
        auto id = add_port(port_role::gateway, own);
        if (id) owners_.push_back(id->index());
        return id;
    }

    /// Detaches a port and forgets every address learned on it.
    std::error_code remove_port(port_id id) {
        if (depth_ != 0) return switch_errc::busy;
        port_slot* slot = find_slot(id);
        if (slot == nullptr) return switch_errc::unknown_port;
        const std::uint16_t index = id.index();
        for (auto& bucket : buckets_) {
            for (auto& e : bucket.entries) {
                if (e.key != 0 && port_of(e.key) == index) e = entry{};
            }
        }
        slot->active = false;
        ++slot->generation; // stale ids of this port no longer match
        std::erase(active_, index);
        std::erase(gateways_, index);
        std::erase(owners_, index);
        free_.push_back(index);
        return {};
    }

    /// The role of an attached port.
    std::optional<port_role> role(port_id id) const {
        const port_slot* slot = find_slot(id);
        return slot ? std::optional{slot->role} : std::nullopt;
    }
    /// The counters of an attached port.
    std::optional<port_counters> stats(port_id id) const {
        const port_slot* slot = find_slot(id);
        return slot ? std::optional{slot->counters} : std::nullopt;
    }
    /// What it counted so far.
    const switch_counters& stats() const noexcept { return counters_; }
    /// The port count.
    std::size_t port_count() const noexcept { return active_.size(); }

    /// Whether isolated.
    bool isolated() const noexcept { return isolated_; }
    /// Sets the isolated.
    void set_isolated(bool isolated) noexcept { isolated_ = isolated; }
    /// The ageing time.
    duration ageing_time() const noexcept { return ageing_time_; }

    // --- the data path ------------------------------------------------------------------------

    /// A VM port was heard from at `now` by a frame that did not come through handle() (a service
    /// took it before the switch): learn its MAC there, as handle() would, so that replies to it
    /// are not flooded. Does nothing for a gateway port or an unknown one.
    void heard_from(port_id ingress, time_point now) noexcept {
        const port_slot* in = find_slot(ingress);
        if (in == nullptr || in->role != port_role::vm || depth_ != 0) return;
        learn(in->registered, in->registered_bucket, ingress.index(), true, now);
    }

    /// Switches one frame received on `ingress` at `now`; see the theory of operation.
    /// @param emit called as emit(egress, frame) for each port the frame leaves by; `frame` is the
    ///        caller's buffer, valid for the call only.
    template <switch_emitter Emit>
    disposition handle(port_id ingress, wire::const_bytes frame, time_point now, Emit&& emit) {
        port_slot* in = find_slot(ingress);
        if (in == nullptr) [[unlikely]] {
            ++counters_.dropped_unknown_port;
            return disposition::dropped_unknown_port;
        }
        ++in->counters.rx;
        if (frame.size() < wire::ethernet::header_len) [[unlikely]] {
            ++in->counters.dropped_malformed;
            return disposition::dropped_malformed;
        }
        const std::uint64_t destination = load_mac(frame, wire::ethernet::field::destination);
        const std::uint64_t source = load_mac(frame, wire::ethernet::field::source);
        if (source == 0 || is_group(source)) [[unlikely]] {
            ++in->counters.dropped_malformed;
            return disposition::dropped_malformed;
        }
        const bool from_vm = in->role == port_role::vm;
        if (from_vm && source != in->registered) [[unlikely]] {
            ++in->counters.dropped_spoofed;
            return disposition::dropped_spoofed;
        }

        const depth_guard guard{depth_};
        const std::uint16_t in_index = ingress.index();
        // A VM port's source is its registered MAC, whose bucket was hashed when the port was added.
        learn(source, from_vm ? in->registered_bucket : bucket_of(source), in_index, from_vm, now);

        if (!is_group(destination)) {
            for (const std::uint16_t owner : owners_) {
                port_slot& out = slots_[owner];
                if (out.registered != destination) continue;
                if (owner == in_index) {
                    ++in->counters.filtered;
                    return disposition::filtered;
                }
                ++out.counters.tx;
                emit(port_id::make(owner, out.generation), frame);
                return disposition::forwarded;
            }
            if (const entry* e = find(destination, now)) {
                const std::uint16_t out_index = port_of(e->key);
                if (out_index == in_index) {
                    ++in->counters.filtered;
                    return disposition::filtered;
                }
                port_slot& out = slots_[out_index];
                if (isolated_ && from_vm && out.role == port_role::vm) {
                    ++in->counters.dropped_isolated;
                    return disposition::dropped_isolated;
                }
                ++out.counters.tx;
                emit(port_id::make(out_index, out.generation), frame);
                return disposition::forwarded;
            }
        }

        ++in->counters.flooded;
        // Re-entrant handle() calls cannot change these lists (ports are frozen while depth_ > 0).
        const std::vector<std::uint16_t>& targets = isolated_ && from_vm ? gateways_ : active_;
        for (const std::uint16_t out_index : targets) {
            if (out_index == in_index) continue;
            port_slot& out = slots_[out_index];
            ++out.counters.tx;
            emit(port_id::make(out_index, out.generation), frame);
        }
        return disposition::flooded;
    }

    // --- diagnostics --------------------------------------------------------------------------

    /// The port `mac` is learned on, if its entry is live at `now`.
    std::optional<port_id> lookup(const mac_address& mac, time_point now) const {
        const entry* e = find(to_key_mac(mac), now);
        if (e == nullptr) return std::nullopt;
        const std::uint16_t index = port_of(e->key);
        return port_id::make(index, slots_[index].generation);
    }

    /// Live entries at `now` (a scan of the whole table).
    std::size_t learned_count(time_point now) const noexcept {
        std::size_t n = 0;
        for (const auto& bucket : buckets_) {
            for (const auto& e : bucket.entries) if (e.key != 0 && live(e, now)) ++n;
        }
        return n;
    }

private:
    static constexpr std::size_t bucket_count = MacCapacity / ways;
    static constexpr std::uint64_t mac_mask = (std::uint64_t{1} << 48) - 1;
    static constexpr std::uint64_t sticky_bit = std::uint64_t{1} << 63;
    static constexpr std::uint64_t group_bit = std::uint64_t{1} << 40; // I/G: first octet, bit 0

    // key: bits 0-47 the MAC (first octet highest), 48-62 the port index, 63 sticky. key 0 is an
    // empty entry: the all-zero MAC is never learned.
    struct entry {
        std::uint64_t key = 0;
        time_point seen{};
    };
    struct alignas(64) mac_bucket {
        std::array<entry, ways> entries{};
    };

    struct port_slot {
        port_role role = port_role::vm;
        bool active = false;
        std::uint16_t generation = 0;
        std::uint64_t registered = 0; ///< VM ports: the only source MAC allowed
        std::uint64_t registered_bucket = 0; ///< bucket_of(registered), hashed once
        port_counters counters{};
    };

    struct depth_guard {
        explicit depth_guard(unsigned& depth) noexcept : depth_(depth) { ++depth_; }
        ~depth_guard() { --depth_; }
        depth_guard(const depth_guard&) = delete;
        depth_guard& operator=(const depth_guard&) = delete;
        unsigned& depth_;
    };

    static ankanet::detail::siphash_key make_key(const std::optional<std::array<std::byte, 16>>& given) {
        if (given) return ankanet::detail::siphash_key::from_bytes(*given);
        std::random_device random;
        std::uniform_int_distribution<std::uint64_t> word;
        return ankanet::detail::siphash_key{word(random), word(random)};
    }

    static std::uint64_t load_mac(wire::const_bytes frame, std::size_t offset) noexcept {
        return (std::uint64_t{wire::load_be16(frame, offset)} << 32) | wire::load_be32(frame, offset + 2);
    }
    static constexpr std::uint64_t to_key_mac(const mac_address& mac) noexcept {
        std::uint64_t value = 0;
        for (auto octet : mac.octets()) value = (value << 8) | octet;
        return value;
    }
    static constexpr bool is_group(std::uint64_t mac) noexcept { return (mac & group_bit) != 0; }
    static constexpr std::uint16_t port_of(std::uint64_t key) noexcept {
        return static_cast<std::uint16_t>((key >> 48) & 0x7fffu);
    }
    static constexpr std::uint64_t pack(std::uint64_t mac, std::uint16_t port, bool sticky) noexcept {
        return mac | (std::uint64_t{port} << 48) | (sticky ? sticky_bit : 0);
    }

    bool live(const entry& e, time_point now) const noexcept { return now - e.seen < ageing_time_; }

    std::uint64_t bucket_of(std::uint64_t mac) const noexcept {
        ankanet::detail::siphasher hash{key_};
        hash.update_le(mac);
        return hash.finish() & (bucket_count - 1);
    }

    const entry* find(std::uint64_t mac, time_point now) const noexcept {
        for (const auto& e : buckets_[bucket_of(mac)].entries) {
            if ((e.key & mac_mask) == mac && e.key != 0) return live(e, now) ? &e : nullptr;
        }
        return nullptr;
    }

    void learn(std::uint64_t mac, std::uint64_t bucket_index, std::uint16_t port, bool sticky, time_point now) noexcept {
        auto& ways_of = buckets_[bucket_index].entries;
        entry* victim = nullptr;
        int victim_rank = -1; // higher replaces first: 3 empty, 2 aged out, 1 live non-sticky, 0 live sticky
        for (auto& e : ways_of) {
            if (e.key != 0 && (e.key & mac_mask) == mac) {
                const bool alive = live(e, now);
                // A station move may not take a VM's own address away from its port.
                if (port_of(e.key) != port && (e.key & sticky_bit) != 0 && !sticky && alive) return;
                e.key = pack(mac, port, sticky);
                e.seen = now;
                return;
            }
            const int rank = e.key == 0 ? 3 : !live(e, now) ? 2 : (e.key & sticky_bit) == 0 ? 1 : 0;
            if (rank > victim_rank || (rank == victim_rank && rank < 2 && e.seen < victim->seen)) {
                victim = &e;
                victim_rank = rank;
            }
        }
        if (victim_rank == 0 && !sticky) {
            ++counters_.learn_skipped; // never push a VM out for a (trusted, possibly flooded) uplink
            return;
        }
        if (victim_rank <= 1) ++counters_.table_evictions;
        victim->key = pack(mac, port, sticky);
        victim->seen = now;
    }

    result<port_id> add_port(port_role role, const mac_address& registered) {
        if (depth_ != 0) return make_error_code(switch_errc::busy);
        std::uint16_t index = 0;
        if (!free_.empty()) {
            index = free_.back();
            free_.pop_back();
        } else {
            if (slots_.size() >= max_ports) return make_error_code(switch_errc::too_many_ports);
            index = static_cast<std::uint16_t>(slots_.size());
            slots_.emplace_back();
        }
        port_slot& slot = slots_[index];
        slot.role = role;
        slot.active = true;
        slot.registered = to_key_mac(registered);
        slot.registered_bucket = bucket_of(slot.registered);
        slot.counters = {};
        active_.push_back(index);
        if (role == port_role::gateway) gateways_.push_back(index);
        return port_id::make(index, slot.generation);
    }

    port_slot* find_slot(port_id id) noexcept { return find_slot_in(slots_, id); }
    const port_slot* find_slot(port_id id) const noexcept { return find_slot_in(slots_, id); }

    template <class Slots>
    static auto* find_slot_in(Slots& slots, port_id id) noexcept {
        const std::uint16_t index = id.index();
        decltype(&slots[0]) none = nullptr;
        if (index >= slots.size()) return none;
        auto& slot = slots[index];
        return slot.active && slot.generation == id.generation() ? &slot : none;
    }

    duration ageing_time_;
    bool isolated_;
    ankanet::detail::siphash_key key_;
    std::vector<mac_bucket> buckets_;           // MacCapacity entries, allocated once
    std::vector<port_slot> slots_;          // indexed by port_id::index()
    std::vector<std::uint16_t> active_;     // attached ports, flood order
    std::vector<std::uint16_t> gateways_;   // attached gateway ports
    std::vector<std::uint16_t> owners_;     // gateway ports that own a MAC (checked before the table)
    std::vector<std::uint16_t> free_;       // detached slots to reuse
    switch_counters counters_{};
    unsigned depth_ = 0;                    // handle() calls in progress (emit may re-enter)
};

using learning_switch = basic_learning_switch<>; ///< a learning switch with the default MAC capacity and clock

} // namespace ankanet::l2
