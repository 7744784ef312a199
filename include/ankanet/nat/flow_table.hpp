/// @file
/// ankanet::nat::flow_table — the NAT's flows: who talks to whom, and the translator's state for each.
///
/// Theory of operation. A flow is one guest conversation the translator carries over one host
/// socket, named by its key: the VM (a 16-bit port index), the IP protocol, the guest's address and
/// port, and the remote address and port (for ICMP echo, the echo id in place of both ports). The
/// table maps keys to flows and holds, per flow, the translator's own state (`State`: TCP sequence
/// numbers, the socket, ...).
///
/// Memory. Everything is allocated at construction and never again: `capacity` slots in one
/// contiguous array (a slot is the key, a generation, a free-list link and the State, with no
/// per-slot heap pointer), and an index of 8-byte entries, a power of two at least twice the
/// capacity, so the index is never more than half full. The table's own overhead per flow is
/// sizeof(slot) - sizeof(State) (24 bytes) plus its share of the index (16 to 32 bytes depending on
/// how capacity rounds): bytes_per_flow() says exactly; the benchmark reports it. A flow's slot
/// index is dense in [0, capacity), so it can index the timer wheel (nat/timer_wheel.hpp) and travel
/// in epoll data; free slots are reused last-freed first, which keeps recently used memory warm.
///
/// Handles. A flow_handle is the slot index and the slot's generation. The generation is odd while
/// the slot holds a flow and is bumped on insert and erase, so a handle to an erased flow — even one
/// whose slot was reused — is refused (get() returns nullptr, erase() false) instead of naming a
/// stranger's flow. A handle packs into 64 bits (to_u64 / from_u64) for epoll_event.data. (A 32-bit
/// generation comes round again only after 2^31 flows in one slot; a handle kept that long is
/// the glue's bug, not a guest's doing.)
///
/// The index. Open addressing with linear probing over SipHash-2-4 of the key under a 128-bit key
/// drawn per table from std::random_device: a guest that cannot learn the key cannot choose flows
/// that pile into one run of the index, so lookups stay O(1) expected whatever it sends. Each entry
/// holds a slot index and 32 bits of the hash; a probe compares those bits before touching the
/// slot, so a miss rarely leaves the index. Deletion is backward-shift (Knuth 6.4, Algorithm R):
/// the entries after the erased one in its run move back into the hole when that keeps them at or
/// after their home position. Unlike tombstones, this leaves the index exactly as if the flow had
/// never been inserted: under the NAT's constant churn probe sequences never grow and no rehash
/// (an O(n) pause on the data path) is ever needed. An erase costs the rest of its run — short at
/// load <= 1/2.
///
/// Limits. Each VM id below `max_vms` has a flow count and a limit (default: the whole capacity);
/// insert() refuses with flow_errc::vm_limit when the VM is at its limit and flow_errc::table_full
/// when no slot is free, and counts each refusal, so one VM cannot take every flow from the others.
///
/// Iteration. for_each() walks the slots in index order; its callback may erase the flow it is
/// given or any other (erased flows are not visited later), and a flow inserted meanwhile may or may
/// not be visited. Not thread-safe: one table per translator, one thread.
#pragma once

#include <ankanet/detail/siphash.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>

#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace ankanet::nat {

/// Why the flow table refused an operation.
enum class flow_errc {
    table_full = 1, ///< every slot holds a flow
    vm_limit,       ///< the VM holds as many flows as its limit allows
    flow_exists,    ///< a flow with this key is in the table already
    unknown_vm,     ///< the key's VM id is not below the table's max_vms
};

namespace detail {

class flow_error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "ankanet.nat.flow"; }

    std::string message(int code) const override {
        switch (static_cast<flow_errc>(code)) {
        case flow_errc::table_full: return "the NAT flow table is full";
        case flow_errc::vm_limit: return "the VM has reached its limit of concurrent flows";
        case flow_errc::flow_exists: return "a flow with this key exists already";
        case flow_errc::unknown_vm: return "the VM id is beyond the flow table's range";
        }
        return "unknown flow table error";
    }
};

} // namespace detail

/// The category of flow_errc (one instance per program).
inline const std::error_category& flow_error_category() noexcept {
    static const detail::flow_error_category_impl instance;
    return instance;
}

/// Wraps `e` in a std::error_code of its category (found by argument-dependent lookup).
inline std::error_code make_error_code(flow_errc e) noexcept { return {static_cast<int>(e), flow_error_category()}; }

} // namespace ankanet::nat

template <>
struct std::is_error_code_enum<ankanet::nat::flow_errc> : std::true_type {};

namespace ankanet::nat {

/// What names a flow. 16 bytes; members ordered so there is no padding.
struct flow_key {
    wire::ipv4_address guest_address; ///< guest address
    wire::ipv4_address remote_address; ///< remote address
    std::uint16_t guest_port = 0;  ///< for ICMP echo: the guest's echo id
    std::uint16_t remote_port = 0; ///< for ICMP echo: the guest's echo id too
    std::uint16_t vm = 0;          ///< the VM's port index
    std::uint8_t protocol = 0;     ///< IP protocol number (wire::ipv4::protocol)

    /// Memberwise equality.
    constexpr bool operator==(const flow_key&) const noexcept = default;
};
static_assert(sizeof(flow_key) == 16);

/// A flow: its slot index and the slot's (odd) generation when the flow was inserted.
struct flow_handle {
    std::uint32_t index = 0; ///< index
    std::uint32_t generation = 0; ///< 0 (even) never names a flow: a default handle is always stale

    /// The handle packed in 64 bits (from_u64() unpacks it).
    constexpr std::uint64_t to_u64() const noexcept { return std::uint64_t{generation} << 32 | index; }
    /// The handle to_u64() packed.
    static constexpr flow_handle from_u64(std::uint64_t packed) noexcept {
        return flow_handle{static_cast<std::uint32_t>(packed), static_cast<std::uint32_t>(packed >> 32)};
    }
    /// Memberwise equality.
    constexpr bool operator==(const flow_handle&) const noexcept = default;
};

/// Counters of the table's refusals and churn.
struct flow_table_counters {
    std::uint64_t inserted = 0; ///< inserted
    std::uint64_t erased = 0; ///< erased
    std::uint64_t refused_table_full = 0; ///< refused table full
    std::uint64_t refused_vm_limit = 0; ///< refused VM limit
    std::uint64_t refused_flow_exists = 0; ///< refused flow exists

    /// refused unknown VM
    std::uint64_t refused_unknown_vm = 0;
    /// Memberwise equality.
    constexpr bool operator==(const flow_table_counters&) const noexcept = default;
};

/// The flow table; see the theory of operation above.
/// @tparam State the translator's per-flow state, constructed by insert() from its arguments and
///         destroyed by erase(). Any object type; it need not be default-constructible or movable.
template <class State>
class flow_table {
    static_assert(std::is_object_v<State> && !std::is_array_v<State> && std::is_destructible_v<State>,
                  "State must be a complete, destructible object type");

public:
    using state_type = State; ///< the state type

    /// The largest capacity: slot indexes and twice the capacity must fit the index's 32 bits.
    static constexpr std::size_t max_capacity = std::size_t{1} << 28;

    /// Sizes of the flow table.
    struct config {
        std::size_t capacity = 4096;  ///< flows at once (clamped to [1, max_capacity])
        std::size_t max_vms = 256;    ///< VM ids 0..max_vms-1 may hold flows (at least 1)

        /// Key of the index's hash; drawn from std::random_device when not given (tests fix it).
        std::optional<std::array<std::byte, 16>> hash_key;
    };

    flow_table() : flow_table(config{}) {}
    /// An empty table of `cfg`.
    explicit flow_table(const config& cfg)
        : key_(make_key(cfg.hash_key)), slots_(clamp(cfg.capacity, 1, max_capacity)),
          index_(std::bit_ceil(std::max<std::size_t>(2 * slots_.size(), 8))), mask_(index_.size() - 1),
          vm_flows_(clamp(cfg.max_vms, 1, std::size_t{0x10000}), 0),
          vm_limits_(vm_flows_.size(), static_cast<std::uint32_t>(slots_.size())) {
        // Free list in index order, so the first flows take the lowest slots.
        for (std::size_t i = 0; i < slots_.size(); ++i) {
            slots_[i].next_free = i + 1 < slots_.size() ? static_cast<std::uint32_t>(i + 1) : nil;
        }
        free_head_ = 0;
    }

    flow_table(const flow_table&) = delete;
    flow_table& operator=(const flow_table&) = delete;
    ~flow_table() { clear(); }

    // --- sizes ----------------------------------------------------------------------------------

    /// The capacity.
    std::size_t capacity() const noexcept { return slots_.size(); }
    /// The number of elements.
    std::size_t size() const noexcept { return size_; }
    /// Whether empty.
    bool empty() const noexcept { return size_ == 0; }
    /// The max VMs.
    std::size_t max_vms() const noexcept { return vm_flows_.size(); }
    /// Entries in the index (a power of two, at least twice the capacity).
    std::size_t index_entries() const noexcept { return index_.size(); }

    /// Bytes the table holds per flow at full capacity, State included: slot + index share.
    double bytes_per_flow() const noexcept {
        return static_cast<double>(sizeof(slot)) +
               static_cast<double>(index_.size() * sizeof(index_entry)) / static_cast<double>(slots_.size());
    }
    /// Bytes per flow that are the table's own, not the State's.
    double overhead_per_flow() const noexcept { return bytes_per_flow() - static_cast<double>(sizeof(State)); }
    /// The table's own bytes in each slot (key, generation, free-list link), State excluded.
    static constexpr std::size_t slot_overhead = 24;

    // --- flows ----------------------------------------------------------------------------------

    /// Adds a flow for `key`, its State constructed from `args`. O(1) expected, no allocation.
    /// Refuses (and counts) with flow_errc::unknown_vm, flow_exists, vm_limit or table_full.
    template <class... Args>
        requires std::constructible_from<State, Args...>
    result<flow_handle> insert(const flow_key& key, Args&&... args) {
        if (key.vm >= vm_flows_.size()) {
            ++counters_.refused_unknown_vm;
            return make_error_code(flow_errc::unknown_vm);
        }
        const std::uint64_t hash = hash_of(key);
        std::size_t at = home(hash);
        for (; index_[at].slot != nil; at = (at + 1) & mask_) {
            if (matches(index_[at], hash, key)) {
                ++counters_.refused_flow_exists;
                return make_error_code(flow_errc::flow_exists);
            }
        }
        if (vm_flows_[key.vm] >= vm_limits_[key.vm]) {
            ++counters_.refused_vm_limit;
            return make_error_code(flow_errc::vm_limit);
        }
        if (free_head_ == nil) {
            ++counters_.refused_table_full;
            return make_error_code(flow_errc::table_full);
        }
        const std::uint32_t index = free_head_;
        slot& s = slots_[index];
        ::new (static_cast<void*>(s.storage)) State(std::forward<Args>(args)...); // may throw: nothing changed yet
        free_head_ = s.next_free;
        s.next_free = nil;
        s.key = key;
        ++s.generation; // even -> odd: live
        index_[at] = index_entry{index, static_cast<std::uint32_t>(hash)};
        ++vm_flows_[key.vm];
        ++size_;
        ++counters_.inserted;
        return flow_handle{index, s.generation};
    }

    /// The flow named `key`, if there is one. O(1) expected.
    std::optional<flow_handle> find(const flow_key& key) const noexcept {
        const std::uint64_t hash = hash_of(key);
        for (std::size_t at = home(hash); index_[at].slot != nil; at = (at + 1) & mask_) {
            if (matches(index_[at], hash, key)) return flow_handle{index_[at].slot, slots_[index_[at].slot].generation};
        }
        return std::nullopt;
    }

    /// Whether `handle` names a flow in the table (false for stale and default handles).
    bool contains(flow_handle handle) const noexcept {
        return handle.index < slots_.size() && (handle.generation & 1u) != 0 &&
               slots_[handle.index].generation == handle.generation;
    }

    /// The State of the flow `handle` names; nullptr when the handle is stale.
    State* get(flow_handle handle) noexcept { return contains(handle) ? state_of(handle.index) : nullptr; }
    /// The State of the flow `handle` names; nullptr when the handle is stale.
    const State* get(flow_handle handle) const noexcept {
        return contains(handle) ? state_of(handle.index) : nullptr;
    }
    /// The key of the flow `handle` names; nullptr when the handle is stale.
    const flow_key* key(flow_handle handle) const noexcept {
        return contains(handle) ? &slots_[handle.index].key : nullptr;
    }

    /// The live flow in slot `index` (a timer id, an epoll index), if the slot holds one.
    std::optional<flow_handle> handle_at(std::size_t index) const noexcept {
        if (index >= slots_.size() || (slots_[index].generation & 1u) == 0) return std::nullopt;
        return flow_handle{static_cast<std::uint32_t>(index), slots_[index].generation};
    }

    /// Removes the flow `handle` names, destroying its State. Returns false for a stale handle.
    bool erase(flow_handle handle) noexcept {
        if (!contains(handle)) return false;
        const flow_key& k = slots_[handle.index].key;
        const std::uint64_t hash = hash_of(k);
        std::size_t at = home(hash);
        while (index_[at].slot != handle.index) at = (at + 1) & mask_; // present: the table's invariant
        remove_index_entry(at);
        release_slot(handle.index);
        return true;
    }

    /// Removes the flow named `key`, if any. Returns whether there was one.
    bool erase(const flow_key& key) noexcept {
        const std::uint64_t hash = hash_of(key);
        for (std::size_t at = home(hash); index_[at].slot != nil; at = (at + 1) & mask_) {
            if (matches(index_[at], hash, key)) {
                const std::uint32_t index = index_[at].slot;
                remove_index_entry(at);
                release_slot(index);
                return true;
            }
        }
        return false;
    }

    /// Calls fn(handle, key, state) for every flow, in slot order; fn may erase flows.
    template <class Fn>
        requires std::invocable<Fn&, flow_handle, const flow_key&, State&>
    void for_each(Fn&& fn) {
        for (std::size_t i = 0; i < slots_.size(); ++i) {
            slot& s = slots_[i];
            if ((s.generation & 1u) == 0) continue;
            fn(flow_handle{static_cast<std::uint32_t>(i), s.generation}, std::as_const(s.key), *state_of(i));
        }
    }

    /// Erases every flow (O(capacity)); handles taken before are stale afterwards.
    void clear() noexcept {
        for (std::size_t i = 0; i < slots_.size(); ++i) {
            if ((slots_[i].generation & 1u) != 0) erase(flow_handle{static_cast<std::uint32_t>(i), slots_[i].generation});
        }
    }

    // --- per-VM limits ----------------------------------------------------------------------------

    /// Flows VM `vm` holds (0 for ids beyond max_vms).
    std::size_t vm_flows(std::uint16_t vm) const noexcept { return vm < vm_flows_.size() ? vm_flows_[vm] : 0; }
    /// The most flows VM `vm` may hold; lowering it below vm_flows() refuses new flows, evicts none.
    /// Returns false for ids beyond max_vms.
    bool set_vm_limit(std::uint16_t vm, std::size_t limit) noexcept {
        if (vm >= vm_limits_.size()) return false;
        vm_limits_[vm] = static_cast<std::uint32_t>(std::min(limit, slots_.size()));
        return true;
    }
    /// The flow limit of VM `vm`.
    std::size_t vm_limit(std::uint16_t vm) const noexcept { return vm < vm_limits_.size() ? vm_limits_[vm] : 0; }
    /// Sets every VM's limit.
    void set_vm_limits(std::size_t limit) noexcept {
        for (std::size_t vm = 0; vm < vm_limits_.size(); ++vm) set_vm_limit(static_cast<std::uint16_t>(vm), limit);
    }

    /// The counters.
    const flow_table_counters& counters() const noexcept { return counters_; }

private:
    static constexpr std::uint32_t nil = 0xffffffffu;

    struct slot {
        flow_key key{};
        std::uint32_t generation = 0; ///< odd while the slot holds a flow
        std::uint32_t next_free = nil;
        alignas(State) std::byte storage[sizeof(State)];
    };
    static_assert(offsetof(slot, storage) == slot_overhead || alignof(State) > 8,
                  "the table's own part of a slot is 24 bytes");

    struct index_entry {
        std::uint32_t slot = nil;
        std::uint32_t hash = 0; ///< low 32 bits of the key's hash: its home position and a filter
    };
    static_assert(sizeof(index_entry) == 8);

    static std::size_t clamp(std::size_t value, std::size_t low, std::size_t high) noexcept {
        return value < low ? low : (value > high ? high : value);
    }

    static ankanet::detail::siphash_key make_key(const std::optional<std::array<std::byte, 16>>& given) {
        if (given) return ankanet::detail::siphash_key::from_bytes(*given);
        std::random_device random;
        std::uniform_int_distribution<std::uint64_t> word;
        return ankanet::detail::siphash_key{word(random), word(random)};
    }

    std::uint64_t hash_of(const flow_key& k) const noexcept {
        // The key as two little-endian words, hashed whole (update_le would feed it byte by byte).
        const std::uint64_t addresses = std::uint64_t{k.guest_address.to_u32()} << 32 | k.remote_address.to_u32();
        const std::uint64_t rest = std::uint64_t{k.guest_port} << 48 | std::uint64_t{k.remote_port} << 32 |
                                   std::uint64_t{k.vm} << 16 | k.protocol;
        std::array<std::byte, 16> bytes{};
        for (std::size_t i = 0; i < 8; ++i) {
            bytes[i] = static_cast<std::byte>(static_cast<std::uint8_t>(addresses >> (8 * i)));
            bytes[8 + i] = static_cast<std::byte>(static_cast<std::uint8_t>(rest >> (8 * i)));
        }
        return ankanet::detail::siphash24(key_, bytes);
    }
    std::size_t home(std::uint64_t hash) const noexcept { return hash & mask_; }
    bool matches(const index_entry& e, std::uint64_t hash, const flow_key& k) const noexcept {
        return e.hash == static_cast<std::uint32_t>(hash) && slots_[e.slot].key == k;
    }

    State* state_of(std::size_t index) noexcept { return std::launder(reinterpret_cast<State*>(slots_[index].storage)); }
    const State* state_of(std::size_t index) const noexcept {
        return std::launder(reinterpret_cast<const State*>(slots_[index].storage));
    }

    /// Backward-shift deletion: empties index position `hole`, then moves each later entry of the
    /// run back into the hole when its home position is not after the hole (cyclically).
    void remove_index_entry(std::size_t hole) noexcept {
        std::size_t at = hole;
        for (;;) {
            at = (at + 1) & mask_;
            if (index_[at].slot == nil) break;
            const std::size_t entry_home = index_[at].hash & mask_;
            // The entry may move to `hole` iff its home is not in the cyclic interval (hole, at].
            const std::size_t distance_home = (at - entry_home) & mask_;
            const std::size_t distance_hole = (at - hole) & mask_;
            if (distance_home >= distance_hole) {
                index_[hole] = index_[at];
                hole = at;
            }
        }
        index_[hole] = index_entry{};
    }

    void release_slot(std::uint32_t index) noexcept {
        slot& s = slots_[index];
        std::destroy_at(state_of(index));
        ++s.generation; // odd -> even: free; old handles now stale
        --vm_flows_[s.key.vm];
        s.next_free = free_head_;
        free_head_ = index;
        --size_;
        ++counters_.erased;
    }

    ankanet::detail::siphash_key key_;
    std::vector<slot> slots_;
    std::vector<index_entry> index_;
    std::size_t mask_;
    std::vector<std::uint32_t> vm_flows_;
    std::vector<std::uint32_t> vm_limits_;
    std::uint32_t free_head_ = nil;
    std::size_t size_ = 0;
    flow_table_counters counters_;
};

} // namespace ankanet::nat
