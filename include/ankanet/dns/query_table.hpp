/// @file
/// ankanet::dns::query_table — the DNS forwarder's queries in flight to upstream resolvers.
///
/// Theory of operation.
///  * Every guest query the forwarder relays gets an entry: who asked (VM, guest source address and
///    port, the guest's own DNS ID), what (the question), to which upstream server, until when, and
///    the upstream ID the relayed copy carries instead of the guest's ID. The upstream's reply is
///    matched by that ID and server, checked against the stored question, given the guest's ID
///    back, and sent to the guest that asked — to no one else.
///  * Why rewrite IDs. All guests share the forwarder's upstream socket(s): two guests picking the
///    same 16-bit ID (they often do: many stubs start from a fixed or time-based value) would
///    receive each other's answers, and a guest knowing another's ID could answer for it. So the
///    upstream ID is drawn, per query, from a keyed PRF (SipHash-2-4 over a counter, with the
///    caller's secret key), never derived from the guest's ID; an ID in flight is never handed out
///    twice (drawing again until a free one comes — the table holds at most half the ID space, so a
///    draw is free with probability ≥ 1/2, and max_id_draws failures in a row, p ≤ 2^-64, is
///    reported rather than looped on). Off-path spoofers of upstream replies face the same 16
///    unpredictable bits (plus the socket's random port, which is the socket layer's).
///  * A reply is accepted only when: its header is readable and QR is set; its ID is in flight; it
///    came from the server the query went to; and its first question equals the stored one (name
///    case-insensitively, RFC 4343; type and class exactly). The question is read with
///    wire::dns::first_question(), so a truncated (TC) reply whose later sections do not hold
///    together still matches and reaches the guest, which retries over TCP. A reply failing a
///    check is counted and leaves the entry in place: a spoofed or stray packet cannot cancel the
///    real query.
///  * A guest repeating a query (same VM, source, port, ID and question) before it is answered gets
///    the entry already in flight back (insert_status::duplicate, same upstream ID), so retries do not
///    fill the table; the forwarder may resend it upstream.
///  * Time comes in as arguments (steady_clock::time_point): the caller gives each query its
///    deadline, and expire(now, f) removes every entry whose deadline is at or before `now`, calling
///    f(entry) for each — the forwarder answers those guests SERVFAIL (never NXDOMAIN: a timeout says
///    nothing about the name), which is why an entry keeps the guest's flags and EDNS size.
///    next_deadline() is a lower bound on the earliest deadline, for arming one timer; expire() is
///    O(1) before it and O(capacity) after it.
///  * Bounded: capacity entries in all (at most max_capacity, half the ID space), per_vm_limit per VM
///    (so one guest cannot take every slot), VM ids below max_vms (dense port ids index a counter
///    array). Every array is allocated by the constructor; insert, take_reply and expire allocate
///    nothing. Lookups: by upstream ID an array of 65536 slot numbers (128 KiB, O(1)); by guest, a
///    bucket array keyed with the same SipHash key (a guest cannot aim its queries at one bucket).
///  * Not thread-safe; one forwarder owns one table.
#pragma once

#include <ankanet/detail/siphash.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/dns.hpp>

#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

namespace ankanet::dns {

/// Who asked: the VM (its dense port id), the guest's source address and port, and its DNS ID.
struct guest_query_key {
    std::uint32_t vm = 0; ///< VM
    wire::ipv4_address source; ///< source
    std::uint16_t source_port = 0; ///< source port

    /// guest ID
    std::uint16_t guest_id = 0;
    /// Memberwise equality.
    bool operator==(const guest_query_key&) const noexcept = default;
};

/// A guest query to relay, as given to insert().
struct query_request {
    guest_query_key guest; ///< guest
    wire::dns::question question; ///< question
    std::uint16_t query_flags = 0;           ///< the guest's header flags (RD, CD for the reply)
    std::optional<std::uint16_t> guest_edns; ///< the guest's EDNS UDP size, when it sent OPT
    std::uint16_t server = 0;                ///< index of the upstream server it goes to
    std::chrono::steady_clock::time_point deadline; ///< deadline
};

/// A query in flight: the request and the upstream ID it was given.
struct in_flight_query {
    query_request request; ///< request
    std::uint16_t upstream_id = 0; ///< upstream ID
};

/// How a query_table is set up.
struct query_table_config {
    std::size_t capacity = 1024;   ///< queries in flight at most (≤ query_table::max_capacity)
    std::size_t max_vms = 256;     ///< VM ids are below this
    std::size_t per_vm_limit = 64; ///< queries in flight per VM at most
    ankanet::detail::siphash_key key;       ///< secret: the caller draws it from a real random source
};

/// What query_table::insert did with a query.
enum class insert_status : std::uint8_t {
    inserted,      ///< a new entry with a fresh upstream ID
    duplicate,     ///< the same guest query was already in flight: its entry's upstream ID
    table_full,    ///< capacity entries in flight
    vm_limit,      ///< this VM has per_vm_limit in flight
    bad_vm,        ///< VM id not below max_vms
    ids_exhausted, ///< max_id_draws draws in a row were in use (p ≤ 2^-64)
};

/// What query_table::insert did.
struct insert_result {
    insert_status status = insert_status::inserted; ///< status

    /// valid for inserted and duplicate
    std::uint16_t upstream_id = 0;
    /// Whether ok.
    bool ok() const noexcept { return status == insert_status::inserted || status == insert_status::duplicate; }
};

/// What query_table::match_reply found for a reply.
enum class reply_status : std::uint8_t {
    matched,           ///< `query` is the entry, now removed
    malformed,         ///< shorter than a header, QR clear, or no readable first question
    unknown_id,        ///< no query in flight has this ID
    wrong_server,      ///< the ID is in flight to another server
    question_mismatch, ///< the ID is in flight for another question
};

/// What query_table::match_reply found.
struct reply_match {
    reply_status status = reply_status::unknown_id; ///< status
    in_flight_query query; ///< valid when matched
};

/// What a query_table has seen.
struct query_table_counters {
    std::uint64_t inserted = 0; ///< inserted
    std::uint64_t duplicates = 0; ///< duplicates
    std::uint64_t refused_full = 0; ///< refused full
    std::uint64_t refused_vm_limit = 0; ///< refused VM limit
    std::uint64_t refused_bad_vm = 0; ///< refused bad VM
    std::uint64_t refused_ids_exhausted = 0; ///< refused ids exhausted
    std::uint64_t matched = 0; ///< matched
    std::uint64_t malformed_replies = 0; ///< malformed replies
    std::uint64_t unknown_id = 0; ///< unknown ID
    std::uint64_t wrong_server = 0; ///< wrong server
    std::uint64_t question_mismatch = 0; ///< question mismatch
    std::uint64_t expired = 0; ///< expired
    std::uint64_t cancelled = 0; ///< cancelled
};

/// The forwarder's in-flight queries. See the theory of operation.
class query_table {
public:
    using time_point = std::chrono::steady_clock::time_point; ///< a point in time of the clock

    /// At most half the 16-bit ID space, so a random draw is free with probability ≥ 1/2.
    static constexpr std::size_t max_capacity = 32768;
    /// Draws of an upstream ID before insert() gives up.
    static constexpr std::size_t max_id_draws = 64;

    /// A table for `config`; capacity is clamped to 1..max_capacity, max_vms and per_vm_limit to ≥ 1.
    explicit query_table(const query_table_config& config)
        : key_(config.key),
          capacity_(clamp(config.capacity, 1, max_capacity)),
          per_vm_limit_(clamp(config.per_vm_limit, 1, max_capacity)),
          slots_(capacity_),
          slot_of_id_(id_space, no_slot),
          buckets_(std::bit_ceil(capacity_), no_slot),
          per_vm_(clamp(config.max_vms, 1, std::numeric_limits<std::uint32_t>::max()), 0) {
        free_.reserve(capacity_);
        for (std::size_t i = capacity_; i-- > 0;) free_.push_back(static_cast<std::uint32_t>(i));
    }

    /// Records `request` and gives it an upstream ID (or finds the same guest query in flight).
    insert_result insert(const query_request& request) noexcept {
        const auto& guest = request.guest;
        if (guest.vm >= per_vm_.size()) {
            ++counters_.refused_bad_vm;
            return {insert_status::bad_vm, 0};
        }
        const std::size_t bucket = bucket_of(guest);
        for (std::uint32_t s = buckets_[bucket]; s != no_slot; s = slots_[s].next_in_bucket) {
            const auto& q = slots_[s].query.request;
            if (q.guest == guest && same_question(q.question, request.question)) {
                ++counters_.duplicates;
                return {insert_status::duplicate, slots_[s].query.upstream_id};
            }
        }
        if (free_.empty()) {
            ++counters_.refused_full;
            return {insert_status::table_full, 0};
        }
        if (per_vm_[guest.vm] >= per_vm_limit_) {
            ++counters_.refused_vm_limit;
            return {insert_status::vm_limit, 0};
        }
        const auto id = draw_free_id();
        if (!id) {
            ++counters_.refused_ids_exhausted;
            return {insert_status::ids_exhausted, 0};
        }

        const std::uint32_t s = free_.back();
        free_.pop_back();
        slot& entry = slots_[s];
        entry.used = true;
        entry.query.request = request;
        entry.query.upstream_id = *id;
        entry.next_in_bucket = buckets_[bucket];
        buckets_[bucket] = s;
        slot_of_id_[*id] = s;
        ++per_vm_[guest.vm];
        if (size() == 1 || request.deadline < earliest_) earliest_ = request.deadline;
        ++counters_.inserted;
        return {insert_status::inserted, *id};
    }

    /// Matches a reply from upstream server `server` (see the theory of operation); on a match the
    /// entry is removed and returned.
    reply_match take_reply(std::uint16_t server, wire::const_bytes reply) noexcept {
        const wire::dns::packet<wire::const_bytes> header{reply};
        if (header.check_len() || !header.qr()) return refuse(reply_status::malformed, counters_.malformed_replies);
        const std::uint32_t s = slot_of_id_[header.id()];
        if (s == no_slot) return refuse(reply_status::unknown_id, counters_.unknown_id);
        const auto& entry = slots_[s].query;
        if (entry.request.server != server) return refuse(reply_status::wrong_server, counters_.wrong_server);
        const auto question = wire::dns::first_question(reply);
        if (!question) return refuse(reply_status::malformed, counters_.malformed_replies);
        const auto& asked = entry.request.question;
        if (question->qtype != asked.qtype || question->qclass != asked.qclass || !question->qname.iequals(asked.qname)) {
            return refuse(reply_status::question_mismatch, counters_.question_mismatch);
        }
        reply_match match{reply_status::matched, entry};
        remove(s);
        ++counters_.matched;
        return match;
    }

    /// Removes every entry whose deadline is at or before `now`, calling `on_expired(const
    /// in_flight_query&)` for each after it is removed (so the callback may insert). Returns how
    /// many expired.
    template <class OnExpired>
    std::size_t expire(time_point now, OnExpired&& on_expired) {
        if (size() == 0 || now < earliest_) return 0;
        std::size_t count = 0;
        // Rebuilt during the scan; insert() from the callback lowers it as usual.
        earliest_ = time_point::max();
        for (std::uint32_t s = 0; s < slots_.size(); ++s) {
            if (!slots_[s].used) continue;
            const auto deadline = slots_[s].query.request.deadline;
            if (deadline <= now) {
                const in_flight_query gone = slots_[s].query;
                remove(s);
                ++counters_.expired;
                ++count;
                on_expired(gone);
            } else if (deadline < earliest_) {
                earliest_ = deadline;
            }
        }
        return count;
    }

    /// Removes every entry of `vm` (its port went away), without callbacks. Returns how many.
    std::size_t cancel_vm(std::uint32_t vm) noexcept {
        if (vm >= per_vm_.size() || per_vm_[vm] == 0) return 0;
        std::size_t count = 0;
        for (std::uint32_t s = 0; s < slots_.size(); ++s) {
            if (slots_[s].used && slots_[s].query.request.guest.vm == vm) {
                remove(s);
                ++count;
            }
        }
        counters_.cancelled += count;
        return count;
    }

    /// The entry in flight with `upstream_id`, if any.
    const in_flight_query* find(std::uint16_t upstream_id) const noexcept {
        const std::uint32_t s = slot_of_id_[upstream_id];
        return s == no_slot ? nullptr : &slots_[s].query;
    }

    /// A time at or before the earliest deadline in flight; nullopt when nothing is in flight.
    std::optional<time_point> next_deadline() const noexcept {
        if (size() == 0) return std::nullopt;
        return earliest_;
    }

    /// The number of elements.
    std::size_t size() const noexcept { return capacity_ - free_.size(); }
    /// The capacity.
    std::size_t capacity() const noexcept { return capacity_; }
    /// Whether empty.
    bool empty() const noexcept { return size() == 0; }
    /// Queries `vm` has in flight.
    std::size_t in_flight(std::uint32_t vm) const noexcept { return vm < per_vm_.size() ? per_vm_[vm] : 0; }
    /// The counters.
    const query_table_counters& counters() const noexcept { return counters_; }

private:
    static constexpr std::size_t id_space = 65536;
    static constexpr std::uint32_t no_slot = std::numeric_limits<std::uint32_t>::max();

    struct slot {
        in_flight_query query;
        std::uint32_t next_in_bucket = no_slot;
        bool used = false;
    };

    static std::size_t clamp(std::size_t value, std::size_t low, std::size_t high) noexcept {
        return value < low ? low : (value > high ? high : value);
    }

    static bool same_question(const wire::dns::question& a, const wire::dns::question& b) noexcept {
        return a.qtype == b.qtype && a.qclass == b.qclass && a.qname.iequals(b.qname);
    }

    std::size_t bucket_of(const guest_query_key& guest) const noexcept {
        ankanet::detail::siphasher h{key_};
        h.update_le(guest.vm).update_le(guest.source.to_u32()).update_le(guest.source_port).update_le(guest.guest_id);
        return h.finish() & (buckets_.size() - 1); // size is a power of two
    }

    /// The next IDs of the keyed stream: SipHash(key, domain tag, counter) gives four 16-bit draws.
    std::optional<std::uint16_t> draw_free_id() noexcept {
        for (std::size_t draw = 0; draw < max_id_draws; ++draw) {
            if (pool_left_ == 0) {
                ankanet::detail::siphasher h{key_};
                h.update_le(std::uint8_t{0x1d}).update_le(id_counter_++); // the tag keeps this stream apart from bucket_of
                pool_ = h.finish();
                pool_left_ = 4;
            }
            const auto id = static_cast<std::uint16_t>(pool_);
            pool_ >>= 16;
            --pool_left_;
            if (slot_of_id_[id] == no_slot) return id;
        }
        return std::nullopt;
    }

    void remove(std::uint32_t s) noexcept {
        slot& entry = slots_[s];
        const auto& guest = entry.query.request.guest;
        // Unlink from its bucket chain (short: the SipHash key spreads guests over ≥ capacity buckets).
        std::uint32_t* link = &buckets_[bucket_of(guest)];
        while (*link != s && *link != no_slot) link = &slots_[*link].next_in_bucket;
        if (*link == s) *link = entry.next_in_bucket;
        slot_of_id_[entry.query.upstream_id] = no_slot;
        --per_vm_[guest.vm];
        entry.used = false;
        entry.next_in_bucket = no_slot;
        free_.push_back(s);
    }

    reply_match refuse(reply_status status, std::uint64_t& counter) noexcept {
        ++counter;
        return {status, {}};
    }

    ankanet::detail::siphash_key key_;
    std::size_t capacity_;
    std::size_t per_vm_limit_;
    std::vector<slot> slots_;
    std::vector<std::uint32_t> slot_of_id_; ///< upstream ID → slot, no_slot when free
    std::vector<std::uint32_t> buckets_;    ///< guest hash → first slot of its chain
    std::vector<std::uint32_t> per_vm_;     ///< queries in flight per VM
    std::vector<std::uint32_t> free_;       ///< free slots, a stack
    std::uint64_t id_counter_ = 0;
    std::uint64_t pool_ = 0;
    unsigned pool_left_ = 0;
    time_point earliest_{};
    query_table_counters counters_;
};

} // namespace ankanet::dns
