/// @file
/// ankanet::nat::tcp_reorder_store — guest data that arrived beyond a hole, parked until the hole
/// is filled, in a fixed pool with a budget per VM.
///
/// Theory of operation. The TCP translator writes the guest's data straight into the host socket
/// and keeps none of it, as long as it arrives in order. When a segment is lost between the guest
/// and us, everything the guest sent after it arrives beyond rcv_nxt. Dropping all of that (what
/// passt does) costs a guest without SACK dearly: NewReno retransmits one segment per round trip
/// after each partial ACK, so one lost frame in a 1 MiB flight means hundreds of round trips; a
/// 256 MiB upload with 1% loss took over four minutes. Parking the out-of-order segments instead
/// lets the one fast retransmission of the hole close it: the hole and what is parked behind it
/// go to the socket in one gather write, and the guest gets one ACK for all of it.
///
/// Storage. One byte pool, cut into chunks of `chunk_size` bytes, allocated once (and left
/// untouched until used, so an engine that never sees loss costs no resident memory). A segment
/// is parked as one or more chunks, each carrying its own sequence number and length, linked per
/// flow in sequence order (relative to the flow's rcv_nxt, so wrap-around is harmless). A flow's
/// list has a tail pointer: segments beyond a hole usually come in order, and are appended.
/// Overlaps are kept as they are (the guest may re-segment a retransmission); whoever takes the
/// data skips what it already has, by sequence number.
///
/// Budget. Each VM may hold at most `vm_bytes` of chunks; the pool holds `total_bytes`. A segment
/// that does not fit is refused whole (counted by the caller), and the guest retransmits it: one
/// VM's losses never take another VM's share beyond the pool it shares with them, and never
/// allocate. Freed chunks go back at once when the hole fills, the flow ends or its VM leaves.
///
/// Not thread-safe (one per engine, one thread).
#pragma once

#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/tcp.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

namespace ankanet::nat {

/// What park() did with a segment.
enum class park_result : std::uint8_t {
    parked,    ///< held
    duplicate, ///< every byte of it is held already
    vm_full,   ///< the VM's budget would be exceeded
    pool_full, ///< the pool has no free chunks
    invalid,   ///< empty, or a flow slot or VM index out of range
};

/// Guest TCP segments that arrived beyond a hole, parked until the hole is filled: a fixed pool with a byte budget per VM.
class tcp_reorder_store {
public:
    /// Bytes per chunk: a segment of a 1500-byte MTU (at most 1460 bytes) fits in one, wasting
    /// little; a 64 KiB segment takes 43.
    static constexpr std::size_t chunk_size = 1536;

    /// @param flows flow slots (indexes below it); @param vms VM indexes below it;
    /// @param total_bytes the pool; @param vm_bytes the most one VM may hold (rounded down to chunks).
    tcp_reorder_store(std::size_t flows, std::size_t vms, std::size_t total_bytes, std::size_t vm_bytes)
        : lists_(flows), vm_chunks_(vms, 0), chunks_(total_bytes / chunk_size),
          bytes_(chunks_.empty() ? nullptr : new std::byte[chunks_.size() * chunk_size]), // not zeroed: untouched
          vm_limit_(static_cast<std::uint32_t>(std::min<std::size_t>(vm_bytes / chunk_size, chunks_.size()))) {
        for (std::size_t i = 0; i < chunks_.size(); ++i) {
            chunks_[i].next = i + 1 < chunks_.size() ? static_cast<std::uint32_t>(i + 1) : none;
        }
        free_ = chunks_.empty() ? none : 0;
        free_count_ = static_cast<std::uint32_t>(chunks_.size());
    }

    /// Whether parking is on at all (a pool and a VM budget of at least one chunk each).
    bool enabled() const noexcept { return vm_limit_ != 0; }
    /// The most bytes one VM may park.
    std::size_t vm_limit_bytes() const noexcept { return std::size_t{vm_limit_} * chunk_size; }

    /// Parks `data`, the guest's bytes from `seq` on, for flow `slot` of VM `vm`; `base` is the
    /// flow's rcv_nxt (data lies beyond it). All or nothing.
    park_result park(std::uint32_t slot, std::uint16_t vm, std::uint32_t base, std::uint32_t seq, wire::const_bytes data) {
        if (data.empty() || slot >= lists_.size() || vm >= vm_chunks_.size()) return park_result::invalid;
        const auto needed = static_cast<std::uint32_t>((data.size() + chunk_size - 1) / chunk_size);
        // What the stream has passed goes first: the order below is relative to `base`, and a
        // chunk left behind it would sort as the furthest of all.
        release(slot, base);
        list& l = lists_[slot];
        if (is_held(l, base, seq, static_cast<std::uint32_t>(data.size()))) return park_result::duplicate;
        if (vm_chunks_[vm] + needed > vm_limit_) return park_result::vm_full;
        if (free_count_ < needed) return park_result::pool_full;
        for (std::uint32_t i = 0; i < needed; ++i) {
            const std::size_t off = std::size_t{i} * chunk_size;
            const std::size_t len = std::min(chunk_size, data.size() - off);
            const std::uint32_t c = take_free();
            chunks_[c].seq = seq + static_cast<std::uint32_t>(off);
            chunks_[c].len = static_cast<std::uint16_t>(len);
            chunks_[c].vm = vm;
            std::memcpy(bytes_.get() + std::size_t{c} * chunk_size, data.data() + off, len);
            insert(l, base, c);
        }
        vm_chunks_[vm] += needed;
        return park_result::parked;
    }

    /// Fills `out` with the parked bytes that continue the stream from `from` (each piece starts
    /// where the previous ended; bytes before `from` skipped). Returns how many pieces; stops at
    /// the first gap or when `out` is full. The spans stay valid until the next release() or
    /// park() for the flow.
    std::size_t contiguous(std::uint32_t slot, std::uint32_t from, std::span<wire::const_bytes> out) const {
        if (slot >= lists_.size()) return 0;
        std::size_t used = 0;
        std::uint32_t expected = from;
        for (std::uint32_t c = lists_[slot].head; c != none && used < out.size(); c = chunks_[c].next) {
            const chunk& k = chunks_[c];
            const auto offset = static_cast<std::int32_t>(k.seq - expected);
            if (offset > 0) break; // a gap
            const auto skip = static_cast<std::size_t>(-static_cast<std::int64_t>(offset));
            if (skip >= k.len) continue; // all of it is before `from`
            out[used++] = wire::const_bytes{bytes_.get() + std::size_t{c} * chunk_size + skip, k.len - skip};
            expected = k.seq + k.len;
        }
        return used;
    }

    /// Frees the flow's chunks that end at or before `upto` (the stream has them now). Such a
    /// chunk may sit behind one that reaches further (overlapping retransmissions), so every chunk
    /// that starts before `upto` is looked at.
    void release(std::uint32_t slot, std::uint32_t upto) {
        if (slot >= lists_.size()) return;
        list& l = lists_[slot];
        std::uint32_t prev = none;
        std::uint32_t c = l.head;
        while (c != none && static_cast<std::int32_t>(chunks_[c].seq - upto) < 0) {
            const std::uint32_t next = chunks_[c].next;
            if (static_cast<std::int32_t>(chunks_[c].seq + chunks_[c].len - upto) <= 0) {
                (prev == none ? l.head : chunks_[prev].next) = next;
                if (l.tail == c) l.tail = prev;
                give_back(c);
            } else {
                prev = c;
            }
            c = next;
        }
    }

    /// Frees every chunk of the flow (it ended).
    void drop(std::uint32_t slot) {
        if (slot >= lists_.size()) return;
        list& l = lists_[slot];
        while (l.head != none) {
            const std::uint32_t next = chunks_[l.head].next;
            give_back(l.head);
            l.head = next;
        }
        l.tail = none;
    }

    /// The flow's parked ranges beyond `from` as SACK blocks (RFC 2018: first byte, byte after
    /// the last), touching or overlapping chunks merged, lowest first, at most `out.size()`.
    /// Returns how many.
    std::size_t ranges(std::uint32_t slot, std::uint32_t from, std::span<wire::tcp::sack_block> out) const {
        if (slot >= lists_.size() || out.empty()) return 0;
        std::size_t used = 0;
        for (std::uint32_t c = lists_[slot].head; c != none; c = chunks_[c].next) {
            const chunk& k = chunks_[c];
            const std::uint32_t end = k.seq + k.len;
            if (static_cast<std::int32_t>(end - from) <= 0) continue; // the stream has it
            if (used != 0 && static_cast<std::int32_t>(k.seq - out[used - 1].right) <= 0) {
                if (static_cast<std::int32_t>(end - out[used - 1].right) > 0) out[used - 1].right = end;
                continue;
            }
            if (used == out.size()) break;
            const bool straddles = static_cast<std::int32_t>(k.seq - from) < 0;
            out[used++] = wire::tcp::sack_block{straddles ? from : k.seq, end};
        }
        return used;
    }

    /// Whether the flow has anything parked.
    bool holds(std::uint32_t slot) const noexcept { return slot < lists_.size() && lists_[slot].head != none; }
    /// Where the flow's first parked chunk starts (call only when holds()).
    std::uint32_t first_seq(std::uint32_t slot) const noexcept { return chunks_[lists_[slot].head].seq; }
    /// Bytes of chunks VM `vm` holds.
    std::size_t vm_bytes(std::uint16_t vm) const noexcept {
        return vm < vm_chunks_.size() ? std::size_t{vm_chunks_[vm]} * chunk_size : 0;
    }
    /// Bytes of chunks in use, all VMs together.
    std::size_t bytes_in_use() const noexcept { return (chunks_.size() - free_count_) * chunk_size; }
    /// Memory per flow slot (the list's head and tail).
    static constexpr std::size_t bytes_per_flow = 2 * sizeof(std::uint32_t);

private:
    static constexpr std::uint32_t none = 0xffffffffu;

    struct chunk {
        std::uint32_t next = none; ///< next in the flow's list, or in the free list
        std::uint32_t seq = 0;
        std::uint16_t len = 0;
        std::uint16_t vm = 0;
    };
    struct list {
        std::uint32_t head = none;
        std::uint32_t tail = none;
    };

    /// Whether every byte of [seq, seq + len) is held already: a duplicate frame, or the guest
    /// retransmitting what it had sent (perhaps cut differently).
    bool is_held(const list& l, std::uint32_t base, std::uint32_t seq, std::uint32_t len) const noexcept {
        if (l.tail == none) return false;
        const std::uint32_t from = seq - base;
        const std::uint32_t to = from + len;
        const chunk& last = chunks_[l.tail];
        if (last.seq - base + last.len <= from) return false; // the usual case: new data behind the rest
        std::uint32_t covered = from; // sorted by start: extend the covered run while chunks touch it
        for (std::uint32_t c = l.head; c != none && covered < to; c = chunks_[c].next) {
            const std::uint32_t at = chunks_[c].seq - base;
            if (at > covered) break;
            covered = std::max(covered, at + chunks_[c].len);
        }
        return covered >= to;
    }

    /// Links chunk `c` into the list in sequence order (relative to `base`); after equals.
    void insert(list& l, std::uint32_t base, std::uint32_t c) {
        const std::uint32_t at = chunks_[c].seq - base;
        chunks_[c].next = none;
        if (l.head == none) {
            l.head = l.tail = c;
            return;
        }
        if (chunks_[l.tail].seq - base <= at) { // the usual case: in order behind the hole
            chunks_[l.tail].next = c;
            l.tail = c;
            return;
        }
        if (at < chunks_[l.head].seq - base) {
            chunks_[c].next = l.head;
            l.head = c;
            return;
        }
        std::uint32_t p = l.head;
        while (chunks_[p].next != none && chunks_[chunks_[p].next].seq - base <= at) p = chunks_[p].next;
        chunks_[c].next = chunks_[p].next;
        chunks_[p].next = c;
    }

    std::uint32_t take_free() noexcept {
        const std::uint32_t c = free_;
        free_ = chunks_[c].next;
        --free_count_;
        return c;
    }

    void give_back(std::uint32_t c) noexcept {
        --vm_chunks_[chunks_[c].vm];
        chunks_[c].next = free_;
        free_ = c;
        ++free_count_;
    }

    std::vector<list> lists_;
    std::vector<std::uint32_t> vm_chunks_;
    std::vector<chunk> chunks_;
    std::unique_ptr<std::byte[]> bytes_;
    std::uint32_t vm_limit_ = 0;
    std::uint32_t free_ = none;
    std::uint32_t free_count_ = 0;
};

} // namespace ankanet::nat
