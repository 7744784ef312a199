/// @file
/// ankanet::nat::timer_wheel — one timer per flow, thousands of flows, one timerfd for all of them.
///
/// Theory of operation. The NAT keeps a timer for every flow (retransmit, delayed ACK, keepalive,
/// idle expiry). passt arms a timerfd per connection; here every timer lives on one hierarchical
/// timing wheel (Varghese and Lauck, "Hashed and Hierarchical Timing Wheels", SOSP 1987; the shape
/// Linux and Tokio use), and the glue arms ONE timerfd / steady_timer at next_deadline().
///
/// Time. The wheel never reads a clock. It is built with an origin time point and a tick length
/// (1 ms by default); a deadline becomes the tick ceil((deadline - origin) / tick) and `now` the
/// tick floor((now - origin) / tick), so a timer never fires before its deadline and at most one
/// tick after the advance() that first passes it. A deadline at or before the last advance() fires
/// at the next advance(), whatever `now` it is given. A `now` earlier than the last one moves nothing
/// back (a non-monotonic caller cannot make a timer fire twice or never).
///
/// Shape. levels = 6 levels of 64 slots. A level-L slot spans 64^L ticks, so the wheel sees
/// 64^6 = 2^36 ticks ahead (about 2.2 years at 1 ms). A timer sits in the level of the highest 6-bit
/// group in which its tick differs from the wheel's current tick (`elapsed`): level 0 holds the
/// current 64-tick block tick by tick, level 1 the rest of the current 4096-tick block 64 ticks a
/// slot, and so on. When the wheel reaches a level-L slot (L > 0) its timers are due within that
/// slot's span: each is fired if its tick has come, else re-placed — necessarily on a lower level
/// ("cascading"). A timer beyond the current 2^36-tick block waits on an overflow list, re-placed
/// when the wheel runs empty and crosses into a later block; advance() then jumps straight to the
/// block of the earliest overflow deadline (or of `now`), so any deadline, even time_point::max(),
/// is handled and a long sleep costs nothing per block crossed.
///
/// Cost. Timers are identified by a dense id in [0, capacity) — a flow's slot index — and live in
/// one array of 24-byte nodes on intrusive doubly-linked lists, allocated once at construction:
/// schedule, reschedule and cancel are O(1) and never allocate. Each level keeps a 64-bit occupancy
/// mask, so next_deadline() is O(levels) and advance() skips empty slots without visiting them:
/// advance() costs O(levels) per non-empty slot it reaches plus O(1) per timer it fires or moves
/// down. A timer moves down at most levels - 1 times in its life, so advancing over any stretch of
/// time costs O(levels × timers touched), never O(ticks elapsed). The overflow list adds, per
/// advance() that reaches it, one pass over the list for each timer it moves onto the wheel, plus
/// one — nothing at all in the NAT's use (1 ms ticks: its horizon is 2.2 years).
///
/// next_deadline() is exact when the earliest timer sits on level 0; when it sits higher it is the
/// start of that timer's slot, earlier than the deadline: the glue then wakes once, advance() moves
/// the slot down, fires nothing, and next_deadline() is later. It is never later than the earliest
/// deadline's tick.
///
/// Callbacks. advance(now, fire) calls fire(id) once for each timer that came due, in deadline order
/// at tick granularity, after taking the timer off the wheel (so is_scheduled(id) is false inside
/// and cancel(id) returns false). fire may schedule, reschedule or cancel any timer, itself
/// included. A timer it arms for a tick after the one being processed and at or before `now` fires
/// in the same advance(); one it arms at or before the tick being processed fires in the next
/// advance() — so a callback that always re-arms in the past cannot make one advance() loop
/// forever. advance() is not re-entrant (a nested call fires nothing). Not thread-safe: one wheel
/// per engine, one thread.
#pragma once

#include <array>
#include <bit>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

namespace ankanet::nat {

/// A hierarchical timing wheel for `capacity` timers with dense ids; see the theory of operation.
/// @tparam Clock supplies `time_point` and `duration`; it is never read.
template <class Clock = std::chrono::steady_clock>
class basic_timer_wheel {
public:
    using time_point = typename Clock::time_point; ///< a point in time of the clock
    using duration = typename Clock::duration; ///< a duration of the clock
    using timer_id = std::uint32_t; ///< the timer ID type

    static constexpr unsigned levels = 6; ///< levels
    static constexpr unsigned slots_per_level = 64; ///< slots per level

    /// bits per level
    static constexpr unsigned bits_per_level = 6;
    /// Ticks the wheel holds before a timer goes to the overflow list: 2^36.
    static constexpr std::uint64_t horizon_ticks = std::uint64_t{1} << (levels * bits_per_level);
    /// The largest capacity: ids must stay clear of the list sentinels.
    static constexpr std::size_t max_capacity = std::size_t{1} << 30;

    /// @param capacity timers ids 0..capacity-1 (clamped to [1, max_capacity]); memory is fixed here.
    /// @param origin the time of tick 0, normally the `now` of the engine's creation.
    /// @param tick the wheel's resolution (clamped to at least one Clock tick).
    basic_timer_wheel(std::size_t capacity, time_point origin,
                      duration tick = std::chrono::duration_cast<duration>(std::chrono::milliseconds{1}))
        : nodes_(clamp_capacity(capacity)), origin_(origin), tick_(tick < duration{1} ? duration{1} : tick) {
        heads_.fill(nil);
    }

    /// The capacity.
    std::size_t capacity() const noexcept { return nodes_.size(); }
    /// Timers currently scheduled.
    std::size_t size() const noexcept { return scheduled_; }
    /// Whether empty.
    bool empty() const noexcept { return scheduled_ == 0; }
    /// The length of one slot of the first level.
    duration tick() const noexcept { return tick_; }
    /// Bytes of wheel state per timer (the node; the fixed list heads are not counted).
    static constexpr std::size_t bytes_per_timer = 24;

    /// Arms timer `id` for `deadline`, moving it if it was already armed. O(1), no allocation.
    /// Returns false (and does nothing) when `id` is out of range.
    bool schedule(timer_id id, time_point deadline) noexcept {
        if (id >= nodes_.size()) return false;
        if (nodes_[id].list != idle) unlink(id);
        else ++scheduled_;
        const std::uint64_t due = ceil_ticks(deadline);
        nodes_[id].deadline = due;
        if (advancing_ && due <= elapsed_) {
            // Armed from a callback for a tick advance() has reached: it waits until this advance()
            // ends, so a callback that always re-arms in the past cannot keep one advance() going.
            push_front(id, deferred_list);
            return true;
        }
        place(id, due < elapsed_ ? elapsed_ : due);
        return true;
    }

    /// Same as schedule(): arms or moves timer `id`.
    bool reschedule(timer_id id, time_point deadline) noexcept { return schedule(id, deadline); }

    /// Disarms timer `id`. Returns whether it was armed (false after it fired, or if out of range).
    bool cancel(timer_id id) noexcept {
        if (id >= nodes_.size() || nodes_[id].list == idle) return false;
        unlink(id);
        nodes_[id].list = idle;
        --scheduled_;
        return true;
    }

    /// Whether it is scheduled.
    bool is_scheduled(timer_id id) const noexcept { return id < nodes_.size() && nodes_[id].list != idle; }

    /// The time timer `id` will fire at (its deadline rounded up to a tick), if it is armed.
    std::optional<time_point> deadline(timer_id id) const noexcept {
        if (!is_scheduled(id)) return std::nullopt;
        return time_of(nodes_[id].deadline);
    }

    /// When the glue should call advance() next: never later than the earliest armed deadline
    /// (rounded up to a tick); possibly earlier (see the theory of operation); nullopt when no
    /// timer is armed. A time at or before the last `now` means "advance now".
    std::optional<time_point> next_deadline() const noexcept {
        const auto next = next_expiration();
        if (!next) return std::nullopt;
        return time_of(next->tick);
    }

    /// Fires every timer whose deadline is at or before `now`, each exactly once: fire(id) with
    /// the timer already disarmed. Returns how many fired. See the theory of operation for cost.
    template <std::invocable<timer_id> Fire>
    std::size_t advance(time_point now, Fire&& fire) {
        if (advancing_) return 0;
        advancing_ = true;
        struct reset_flag {
            bool& flag;
            ~reset_flag() { flag = false; }
        } reset{advancing_};

        std::uint64_t now_tick = floor_ticks(now);
        if (now_tick < elapsed_) now_tick = elapsed_;
        std::size_t fired = 0;
        while (const auto next = next_expiration()) {
            if (next->tick > now_tick) break;
            elapsed_ = next->tick;
            const std::uint32_t list = next->list;
            if (list == overflow_list) {
                // The wheel is empty and the current 2^36-tick block is over. Jump straight to the
                // block of the earliest overflow deadline, or of `now` if that is sooner — not
                // block by block, so a long sleep costs nothing — and re-place the list, detached
                // first since a timer still beyond the new block goes back on it. Nothing fires
                // here, so no callback can touch the detached chain. Every deadline on the list is
                // at or after the new elapsed_; each pass either moves a timer onto the wheel or
                // reaches now's block, which bounds the passes per advance() by the list's length.
                std::uint64_t earliest = now_tick;
                for (timer_id id = heads_[list]; id != nil; id = nodes_[id].next) {
                    if (nodes_[id].deadline < earliest) earliest = nodes_[id].deadline;
                }
                const std::uint64_t block_start = earliest & ~(horizon_ticks - 1);
                if (block_start > elapsed_) elapsed_ = block_start;
                timer_id id = heads_[list];
                heads_[list] = nil;
                while (id != nil) {
                    const timer_id following = nodes_[id].next;
                    place(id, nodes_[id].deadline);
                    id = following;
                }
                continue;
            }
            // Pop one timer at a time from the live list: a callback may cancel the others.
            while (heads_[list] != nil) {
                const timer_id id = heads_[list];
                unlink(id);
                if (level_of_list(list) == 0 || nodes_[id].deadline <= elapsed_) {
                    nodes_[id].list = idle;
                    --scheduled_;
                    ++fired;
                    fire(id);
                } else {
                    place(id, nodes_[id].deadline); // cascade down, or in from the overflow list
                }
            }
        }
        elapsed_ = now_tick;
        // Timers a callback armed in the past: due at the next advance(), whatever its now.
        timer_id id = heads_[deferred_list];
        heads_[deferred_list] = nil;
        while (id != nil) {
            const timer_id following = nodes_[id].next;
            place(id, elapsed_);
            id = following;
        }
        return fired;
    }

    /// Disarms every timer (O(capacity)).
    void clear() noexcept {
        for (auto& n : nodes_) n.list = idle;
        heads_.fill(nil);
        occupied_.fill(0);
        scheduled_ = 0;
    }

private:
    static constexpr std::uint32_t nil = 0xffffffffu;
    static constexpr std::uint16_t idle = 0xffffu;
    static constexpr std::uint16_t overflow_list = levels * slots_per_level;
    static constexpr std::uint16_t deferred_list = overflow_list + 1; ///< only during advance()
    static constexpr std::uint64_t slot_mask = slots_per_level - 1;

    struct timer_node {
        std::uint64_t deadline = 0; ///< tick the timer is due at (before any clamping to `elapsed_`)
        std::uint32_t next = nil;
        std::uint32_t prev = nil;
        std::uint16_t list = idle; ///< level * 64 + slot, overflow_list, or idle
    };
    static_assert(sizeof(timer_node) == bytes_per_timer);

    struct expiration {
        std::uint64_t tick;
        std::uint16_t list;
    };

    static std::size_t clamp_capacity(std::size_t capacity) noexcept {
        return capacity < 1 ? 1 : (capacity > max_capacity ? max_capacity : capacity);
    }
    static constexpr unsigned level_of_list(std::uint32_t list) noexcept { return list / slots_per_level; }

    std::uint64_t floor_ticks(time_point t) const noexcept {
        if (t <= origin_) return 0;
        return static_cast<std::uint64_t>((t - origin_) / tick_);
    }
    std::uint64_t ceil_ticks(time_point t) const noexcept {
        if (t <= origin_) return 0;
        const auto since = t - origin_;
        const auto whole = since / tick_;
        return static_cast<std::uint64_t>(whole) + (since % tick_ != duration::zero() ? 1u : 0u);
    }
    time_point time_of(std::uint64_t tick) const noexcept {
        // Saturate rather than overflow for ticks near the end of time.
        const auto room = (time_point::max() - origin_) / tick_;
        if (tick > static_cast<std::uint64_t>(room)) return time_point::max();
        return origin_ + tick_ * static_cast<typename duration::rep>(tick);
    }

    /// Puts `id` on the list for tick `at` (at >= elapsed_).
    void place(timer_id id, std::uint64_t at) noexcept {
        const std::uint64_t block_end = elapsed_ | (horizon_ticks - 1);
        std::uint16_t list = overflow_list;
        if (at <= block_end) {
            const std::uint64_t differing = (elapsed_ ^ at) | slot_mask; // level 0 when equal
            const unsigned level = (static_cast<unsigned>(std::bit_width(differing)) - 1) / bits_per_level;
            const unsigned slot = static_cast<unsigned>((at >> (level * bits_per_level)) & slot_mask);
            list = static_cast<std::uint16_t>(level * slots_per_level + slot);
            occupied_[level] |= std::uint64_t{1} << slot;
        }
        push_front(id, list);
    }

    void push_front(timer_id id, std::uint16_t list) noexcept {
        timer_node& n = nodes_[id];
        n.list = list;
        n.prev = nil;
        n.next = heads_[list];
        if (n.next != nil) nodes_[n.next].prev = id;
        heads_[list] = id;
    }

    void unlink(timer_id id) noexcept {
        timer_node& n = nodes_[id];
        if (n.prev != nil) nodes_[n.prev].next = n.next;
        else heads_[n.list] = n.next;
        if (n.next != nil) nodes_[n.next].prev = n.prev;
        if (heads_[n.list] == nil && n.list < overflow_list) {
            occupied_[level_of_list(n.list)] &= ~(std::uint64_t{1} << (n.list % slots_per_level));
        }
        n.next = n.prev = nil;
    }

    /// The earliest non-empty slot and the tick it starts at. The lowest non-empty level holds it:
    /// every level-L timer lies in the current 64^(L+1)-tick block, after every lower level's.
    std::optional<expiration> next_expiration() const noexcept {
        for (unsigned level = 0; level < levels; ++level) {
            const unsigned shift = level * bits_per_level;
            const unsigned current = static_cast<unsigned>((elapsed_ >> shift) & slot_mask);
            // Level 0 includes the current tick (timers armed for "now"); higher levels never hold
            // the current slot or an earlier one (their timers differ from elapsed_ at this level).
            const std::uint64_t ahead = occupied_[level] & (~std::uint64_t{0} << current);
            if (ahead == 0) continue;
            const unsigned slot = static_cast<unsigned>(std::countr_zero(ahead));
            const std::uint64_t block_start = elapsed_ & ~((std::uint64_t{1} << (shift + bits_per_level)) - 1);
            return expiration{block_start + (std::uint64_t{slot} << shift),
                              static_cast<std::uint16_t>(level * slots_per_level + slot)};
        }
        if (heads_[overflow_list] != nil) return expiration{(elapsed_ | (horizon_ticks - 1)) + 1, overflow_list};
        return std::nullopt;
    }

    std::vector<timer_node> nodes_;
    std::array<std::uint32_t, levels * slots_per_level + 2> heads_{};
    std::array<std::uint64_t, levels> occupied_{};
    time_point origin_;
    duration tick_;
    std::uint64_t elapsed_ = 0; ///< the tick every timer before which has fired
    std::size_t scheduled_ = 0;
    bool advancing_ = false;
};

/// The wheel the NAT uses: std::chrono::steady_clock time points.
using timer_wheel = basic_timer_wheel<>;

} // namespace ankanet::nat
