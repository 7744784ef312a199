/// @file
/// ankanet::dhcp::basic_lease_pool — which guest holds which IPv4 address, and until when.
///
/// Theory of operation. The pool owns a contiguous range first..last inside one subnet. Every
/// address of the range has a slot, indexed by `address - first`, in one of six states:
///
/// @code{.unparsed}
///   free ──offer──▶ offered ──commit──▶ bound ──release / expiry──▶ free
///     ▲                │                  │
///     └──hold expires──┘                  └──decline──▶ declined ──quarantine ends──▶ free
///   reserved (a fixed address for one client; never handed to anyone else)
///   excluded (configured out, or the subnet's network/broadcast address; never handed out)
/// @endcode
///
/// Free slots sit on an intrusive doubly-linked FIFO list (two uint32 per address): taking any free
/// address, taking one named address, and returning one are all O(1), and the address handed to a
/// newcomer is the one free for longest, which keeps a just-released address available to its
/// previous holder for as long as possible. Clients are found by hash maps keyed by client identity
/// (option 61 client identifier when the client sends one, its MAC otherwise); deadlines (offer
/// holds, lease expiry, decline quarantine) sit in an ordered set, so reclaiming is O(log n) per
/// address. Every operation is therefore O(1) or O(log n); a /16 (65 534 addresses) costs about
/// 1 MiB of slot state before any lease exists.
///
/// Allocation order for a client: its current lease (offered or bound); its reservation; the address
/// it held last (remembered after release or expiry, while that address is still free); the address
/// it requests (option 50); then the longest-free address. An offer is tentative: it holds the address
/// for `offer_hold` and is never persisted. A commit (the DHCPACK) binds the address for `lease_time`
/// and is written to the store *before* it is returned, so a store that persists (file_lease_store)
/// never loses a lease the pool granted; if the store refuses, the pool rolls back and reports the
/// store's error. Release and expiry erase the lease from the store; decline quarantines the address
/// for `decline_quarantine` (RFC 2131 §3.1.5: another host answered ARP for it), and so does
/// mark_in_use for a free address the gateway saw a host claim without a lease.
///
/// Time: every operation takes `now` explicitly, or reads it from the Clock policy. Expired state is
/// reclaimed lazily at the start of each operation (and by reclaim()), so no timer is needed.
/// Not thread-safe; the DHCP server owns one pool and calls it from one thread.
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>

#include <fmt/format.h>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ankanet::dhcp {

/// Why the lease pool or a lease store refused an operation.
enum class lease_errc {
    pool_exhausted = 1,     ///< no free address left in the range
    not_in_range,           ///< the address is outside the pool's range
    reserved_for_other,     ///< the address is reserved for another client
    excluded_address,       ///< the address is excluded from the pool
    address_in_use,         ///< another client holds (or has been offered) the address
    address_quarantined,    ///< the address was declined recently and is quarantined
    no_lease,               ///< the client holds no lease on that address
    bad_config,             ///< the pool configuration is inconsistent
    corrupt_lease_file,     ///< a lease file line does not parse (the message names file:line)
    unreadable_lease_file,  ///< the lease file exists but cannot be read
    store_not_loaded,       ///< a store was written before it loaded successfully
    lease_conflict,         ///< stored leases contradict the pool configuration or each other
};

namespace detail {

class lease_error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "ankanet.dhcp.lease"; }

    std::string message(int code) const override {
        switch (static_cast<lease_errc>(code)) {
        case lease_errc::pool_exhausted: return "no free address left in the DHCP pool";
        case lease_errc::not_in_range: return "address is outside the DHCP range";
        case lease_errc::reserved_for_other: return "address is reserved for another client";
        case lease_errc::excluded_address: return "address is excluded from the DHCP pool";
        case lease_errc::address_in_use: return "address is leased or offered to another client";
        case lease_errc::address_quarantined: return "address was declined and is quarantined";
        case lease_errc::no_lease: return "client holds no lease on that address";
        case lease_errc::bad_config: return "inconsistent DHCP pool configuration";
        case lease_errc::corrupt_lease_file: return "corrupt lease file";
        case lease_errc::unreadable_lease_file: return "lease file cannot be read";
        case lease_errc::store_not_loaded: return "lease store written before it was loaded";
        case lease_errc::lease_conflict: return "stored leases conflict with the pool configuration";
        }
        return "unknown lease error";
    }
};

} // namespace detail

/// The category of lease_errc (one instance per program).
inline const std::error_category& lease_error_category() noexcept {
    static const detail::lease_error_category_impl instance;
    return instance;
}

/// Wraps `e` in a std::error_code of its category (found by argument-dependent lookup).
inline std::error_code make_error_code(lease_errc e) noexcept { return {static_cast<int>(e), lease_error_category()}; }

} // namespace ankanet::dhcp

template <>
struct std::is_error_code_enum<ankanet::dhcp::lease_errc> : std::true_type {};

namespace ankanet::dhcp {

using seconds = std::chrono::seconds; ///< the seconds type
using sys_seconds = std::chrono::sys_seconds; ///< the sys seconds type

/// Who a client is: its MAC and, when it sends option 61, its client identifier.
struct client_identity {
    wire::mac_address mac; ///< MAC
    std::vector<std::uint8_t> client_id; ///< option 61 bytes; empty when absent
};

/// A granted (or offered) lease. This is also the unit a lease store persists.
struct lease {
    wire::mac_address mac; ///< MAC
    std::vector<std::uint8_t> client_id; ///< empty when the client sent no option 61
    wire::ipv4_address address; ///< address
    sys_seconds expiry{};                ///< Unix time the lease ends
    std::string hostname;                ///< option 12 as the client sent it (may be empty)
    bool bound = true;                   ///< false while only offered (never persisted)

    friend bool operator==(const lease&, const lease&) = default;
};

/// The map key of a client: client identifier when present (RFC 2131 §4.2), else the MAC.
/// A leading tag keeps an identifier from ever colliding with a MAC.
inline std::string client_key(const wire::mac_address& mac, std::span<const std::uint8_t> client_id) {
    std::string key;
    if (!client_id.empty()) {
        key.reserve(client_id.size() + 1);
        key.push_back('i');
        for (auto b : client_id) key.push_back(static_cast<char>(b));
    } else {
        key.reserve(7);
        key.push_back('m');
        for (auto b : mac.octets()) key.push_back(static_cast<char>(b));
    }
    return key;
}
/// The key a lease is found by for this client (client_key(mac, client_id)).
inline std::string client_key(const client_identity& c) { return client_key(c.mac, c.client_id); }
/// The key of the client that holds this lease.
inline std::string client_key(const lease& l) { return client_key(l.mac, l.client_id); }

/// @par LeaseStore requirements (named requirement, checked by the `lease_store` concept)
/// Given `s` a LeaseStore lvalue, `l` a `const lease&`, `a` an `ipv4_address`, `why` a `std::string&`:
/// - `s.load(why)` → `result<std::vector<lease>>`: the leases persisted so far; on error, `why`
///   holds a human-readable reason (for a file: "path:line: what"). Called once, before any write.
/// - `s.put(l)` → `std::error_code`: insert or replace the lease on `l.address`. An empty code
///   means the lease is durable (for a persistent store: it survives a crash from now on).
/// - `s.erase(a)` → `std::error_code`: forget the lease on `a` (no error if there is none).
/// - optional: `s.origin(l)` → `std::string`: where a loaded lease came from ("path:line"), put
///   before the reason when the pool refuses it (outside the range, reserved for another client).
template <class S>
concept lease_store = std::movable<S> && requires(S& s, const lease& l, wire::ipv4_address a, std::string& why) {
    { s.load(why) } -> std::same_as<result<std::vector<lease>>>;
    { s.put(l) } -> std::same_as<std::error_code>;
    { s.erase(a) } -> std::same_as<std::error_code>;
};

/// @par Clock requirements
/// `clock.now()` returns a time point of std::chrono::system_clock (any duration) — Unix time.
template <class C>
concept lease_clock = std::movable<C> && requires(C& c) {
    { std::chrono::floor<seconds>(c.now()) } -> std::convertible_to<sys_seconds>;
};

/// A fixed address for one client, by MAC or by client identifier (the "static IP" feature).
struct reservation {
    std::optional<wire::mac_address> mac;  ///< match on the MAC (when set)
    std::vector<std::uint8_t> client_id;   ///< or on option 61 (when not empty)
    wire::ipv4_address address;            ///< must lie inside the range
};

/// The pool's configuration. The range must lie within `subnet`.
struct lease_pool_config {
    wire::ipv4_prefix subnet; ///< the network the leases are in
    wire::ipv4_address first; ///< the lowest address handed out
    wire::ipv4_address last;  ///< the highest address handed out
    seconds lease_time{3600}; ///< how long a lease lasts
    seconds offer_hold{60};              ///< how long an unanswered OFFER holds its address
    seconds decline_quarantine{600};     ///< how long a DECLINEd address stays out of the pool

    /// At most this many offers held at once by one MAC (under any client identifier): a client
    /// that asks under yet another identifier takes the place of that MAC's oldest offer. 0: no limit.
    std::size_t max_offers_per_mac = 2;
    /// At most this many bound leases held at once by one MAC: a commit under yet another client
    /// identifier replaces that MAC's oldest lease. One guest NIC cannot take more of the pool by
    /// inventing client identifiers, and one that changed its identifier is not locked out. 0: no limit.
    std::size_t max_leases_per_mac = 1;
    std::vector<reservation> reservations; ///< fixed addresses for given clients
    std::vector<wire::ipv4_address> excluded; ///< never handed out
};

/// What a client asks for in DISCOVER / REQUEST.
struct lease_request {
    client_identity client; ///< client
    std::optional<wire::ipv4_address> requested; ///< option 50 (or ciaddr)
    std::string hostname;                        ///< option 12; empty if absent
};

class memory_lease_store;

/// The lease pool engine (see the theory of operation at the top of this file).
/// @tparam LeaseStore where bound leases are persisted (see `lease_store`).
/// @tparam Clock where `now` comes from when an operation is not given one (see `lease_clock`).
/// @par Example
/// @code
/// auto pool = dhcp::lease_pool::create(config, dhcp::memory_lease_store{});
/// auto offered = pool->offer({.client = {mac, {}}});
/// auto acked = pool->commit({.client = {mac, {}}, .hostname = "vm1"}, offered->address);
/// @endcode
template <class LeaseStore = memory_lease_store, class Clock = std::chrono::system_clock>
class basic_lease_pool {
    static_assert(lease_store<LeaseStore>, "LeaseStore must model dhcp::lease_store");
    static_assert(lease_clock<Clock>, "Clock must model dhcp::lease_clock");

public:
    using store_type = LeaseStore; ///< the store type
    using clock_type = Clock; ///< the clock it reads

    /// Builds a pool and loads the store's leases into it. Refuses (and leaves the store's data
    /// untouched) when the configuration is inconsistent, the store cannot load, or a stored lease
    /// contradicts the configuration; `why`, when given, then says what in words.
    static result<basic_lease_pool> create(lease_pool_config config, LeaseStore store = LeaseStore{},
                                           Clock clock = Clock{}, std::string* why = nullptr);

    /// DISCOVER: picks an address for the client and holds it for `offer_hold` (not persisted).
    result<lease> offer(const lease_request& request) { return offer(request, now()); }
    /// Offers an address to the client of `request`: its own lease, a requested free address, or a free one.
    result<lease> offer(const lease_request& request, sys_seconds now);

    /// REQUEST (SELECTING / INIT-REBOOT / RENEWING / REBINDING): binds `address` to the client for
    /// `lease_time`, persisted before return. Moves the client off any other address it held.
    result<lease> commit(const lease_request& request, wire::ipv4_address address) {
        return commit(request, address, now());
    }
    /// `user` uses `address` without a lease: it is kept out of the pool.
    result<lease> commit(const lease_request& request, wire::ipv4_address address, sys_seconds now);

    /// Extends a lease the client already holds bound (no_lease otherwise).
    result<lease> renew(const lease_request& request, wire::ipv4_address address) {
        return renew(request, address, now());
    }
    /// Expires leases that ran out at `now`; returns how many.
    result<lease> renew(const lease_request& request, wire::ipv4_address address, sys_seconds now);

    /// RELEASE: frees the client's lease on `address`.
    std::error_code release(const client_identity& client, wire::ipv4_address address) {
        return release(client, address, now());
    }
    /// Reads the stored leases; `why` says what was skipped.
    std::error_code release(const client_identity& client, wire::ipv4_address address, sys_seconds now);

    /// DECLINE: drops the client's lease and quarantines `address` for `decline_quarantine`.
    std::error_code decline(const client_identity& client, wire::ipv4_address address) {
        return decline(client, address, now());
    }
    /// Stores or replaces a lease.
    std::error_code decline(const client_identity& client, wire::ipv4_address address, sys_seconds now);

    /// An address seen in use by `user`, a host the pool has no lease for on it — a guest with a static
    /// address announcing it by ARP (RFC 2131 §2.2 asks a server not to offer such addresses): a free
    /// address is quarantined for `decline_quarantine`, as a DECLINE would, and a quarantined one has
    /// its quarantine extended. Only `user` may still be given it (a guest that kept using an address
    /// whose lease a restart forgot gets it back). An offered or bound address keeps its holder
    /// (lease_errc::address_in_use), as does a reserved one (reserved_for_other) or an excluded one
    /// (excluded_address); lease_errc::not_in_range outside the range.
    std::error_code mark_in_use(wire::ipv4_address address, wire::mac_address user) {
        return mark_in_use(address, user, now());
    }
    /// Forgets the lease of `a`.
    std::error_code mark_in_use(wire::ipv4_address address, wire::mac_address user, sys_seconds now);

    /// Ends every offer, lease and quarantine whose deadline is at or before `now`; returns how many.
    std::size_t reclaim() { return reclaim(now()); }
    /// Calls `wake` when deferred writes have settled.
    std::size_t reclaim(sys_seconds now);

    /// The lease (bound or offered) on `address`, if any.
    std::optional<lease> find(wire::ipv4_address address) const;
    /// The MAC of the lease (bound or offered) the client's identity holds, if any: the client
    /// identifier names a lease, and this says whose NIC it was granted to.
    std::optional<wire::mac_address> holder_of(const client_identity& client) const {
        const auto it = by_client_.find(client_key(client));
        if (it == by_client_.end()) return std::nullopt;
        return entries_.at(it->second).value.mac;
    }
    /// How many leases and offers `mac` holds.
    std::size_t held_by(const wire::mac_address& mac) const {
        const auto it = by_mac_.find(mac);
        return it == by_mac_.end() ? 0 : it->second.size();
    }
    /// Leases and offers replaced because their MAC was at its limit (max_*_per_mac).
    std::uint64_t limit_evictions() const noexcept { return limit_evictions_; }
    /// The client's current lease (bound or offered), if any.
    std::optional<lease> find(const client_identity& client) const;
    /// The MAC holding a bound lease on `address` that has not run out at `now`; copies nothing
    /// (the neighbour table asks this for every ARP claim).
    std::optional<wire::mac_address> bound_holder(wire::ipv4_address address, sys_seconds now) const {
        if (!in_range(address)) return std::nullopt;
        const auto it = entries_.find(index_of(address));
        if (it == entries_.end() || !it->second.value.bound || it->second.value.expiry <= now) return std::nullopt;
        return it->second.value.mac;
    }

    /// The bound lease of `mac` that has not run out at `now` (of several, the one that runs
    /// longest), if any: where a VM is, for a port forward and for listings.
    std::optional<lease> bound_lease(const wire::mac_address& mac, sys_seconds now) const {
        const auto it = by_mac_.find(mac);
        if (it == by_mac_.end()) return std::nullopt;
        const lease* best = nullptr;
        for (const std::uint32_t i : it->second) {
            const auto e = entries_.find(i);
            if (e == entries_.end() || !e->second.value.bound || e->second.value.expiry <= now) continue;
            if (best == nullptr || e->second.value.expiry > best->expiry) best = &e->second.value;
        }
        return best != nullptr ? std::optional<lease>{*best} : std::nullopt;
    }

    /// The number of elements.
    std::size_t size() const noexcept { return slots_.size(); }
    /// The free count.
    std::size_t free_count() const noexcept { return free_count_; }
    /// The bound count.
    std::size_t bound_count() const noexcept { return bound_count_; }
    /// The configuration it was made with.
    const lease_pool_config& config() const noexcept { return config_; }
    /// The store.
    LeaseStore& store() noexcept { return store_; }
    /// The store.
    const LeaseStore& store() const noexcept { return store_; }
    /// The clock.
    Clock& clock() noexcept { return clock_; }

    /// The current wall time, in whole seconds.
    sys_seconds now() { return std::chrono::floor<seconds>(clock_.now()); }

private:
    enum class slot_state : std::uint8_t { free, offered, bound, declined, reserved, excluded };
    static constexpr std::uint32_t nil = std::numeric_limits<std::uint32_t>::max();

    struct entry {
        lease value;
        std::string key;
    };

    basic_lease_pool(lease_pool_config config, LeaseStore store, Clock clock)
        : config_(std::move(config)), store_(std::move(store)), clock_(std::move(clock)) {}

    std::error_code build(std::string& why);
    std::error_code adopt(const lease& stored, std::string& why, std::vector<wire::ipv4_address>& superseded);

    bool in_range(wire::ipv4_address a) const noexcept {
        return a.to_u32() >= config_.first.to_u32() && a.to_u32() <= config_.last.to_u32();
    }
    std::uint32_t index_of(wire::ipv4_address a) const noexcept { return a.to_u32() - config_.first.to_u32(); }
    wire::ipv4_address address_of(std::uint32_t i) const noexcept {
        return wire::ipv4_address{config_.first.to_u32() + i};
    }

    // Free list: FIFO, O(1) push/pop/unlink of any index.
    void free_push_back(std::uint32_t i) noexcept;
    void free_unlink(std::uint32_t i) noexcept;

    std::optional<std::uint32_t> reservation_for(const client_identity& c) const;
    std::error_code check_available(std::uint32_t i, const std::string& key, const client_identity& c) const;
    // Returns slot i to where it belongs when nobody holds it: reserved, or the free list.
    void vacate(std::uint32_t i);
    void drop_entry(std::uint32_t i, bool remember);
    void set_deadline(std::uint32_t i, sys_seconds when);
    void clear_deadline(std::uint32_t i);
    std::uint32_t take(std::uint32_t i, const lease_request& r, const std::string& key, sys_seconds now);

    lease_pool_config config_;
    [[no_unique_address]] LeaseStore store_;
    [[no_unique_address]] Clock clock_;

    std::vector<slot_state> slots_;
    std::vector<std::uint32_t> next_, prev_;      // free list links
    std::uint32_t head_ = nil, tail_ = nil;
    std::size_t free_count_ = 0, bound_count_ = 0;

    std::unordered_map<std::uint32_t, entry> entries_;           // index → lease (offered or bound)
    std::unordered_map<std::string, std::uint32_t> by_client_;   // client key → index it holds
    std::unordered_map<std::string, std::uint32_t> previous_;    // client key → index held last
    std::unordered_map<std::string, std::uint32_t> reserved_by_; // 'm'/'i' key → reserved index
    std::unordered_map<std::uint32_t, std::vector<std::string>> reserved_for_; // index → owner keys
    std::vector<sys_seconds> deadline_of_;                        // per slot, valid when in deadlines_
    std::set<std::pair<sys_seconds, std::uint32_t>> deadlines_;   // (when, index)
    std::unordered_map<std::uint32_t, wire::mac_address> in_use_by_; // declined by mark_in_use → the user seen
    std::unordered_map<wire::mac_address, std::vector<std::uint32_t>> by_mac_; // MAC → slots it holds (offered or bound)
    std::uint64_t limit_evictions_ = 0;

    void index_mac(std::uint32_t i, const wire::mac_address& mac) { by_mac_[mac].push_back(i); }
    void unindex_mac(std::uint32_t i, const wire::mac_address& mac) {
        const auto it = by_mac_.find(mac);
        if (it == by_mac_.end()) return;
        std::erase(it->second, i);
        if (it->second.empty()) by_mac_.erase(it);
    }
    // Makes room for one more entry of `mac` in state `bound` (or offered), outside slot `keep`:
    // the MAC's oldest entry in that state goes when it holds `limit` already.
    void enforce_mac_limit(const wire::mac_address& mac, bool bound, std::size_t limit, std::uint32_t keep);
};

/// The common case: in-memory leases, system clock.
using lease_pool = basic_lease_pool<>;

// ------------------------------------------------------------------------------------------------
// Implementation

template <class S, class C>
result<basic_lease_pool<S, C>> basic_lease_pool<S, C>::create(lease_pool_config config, S store, C clock,
                                                              std::string* why) {
    basic_lease_pool pool{std::move(config), std::move(store), std::move(clock)};
    std::string reason;
    if (auto error = pool.build(reason)) {
        if (why != nullptr) *why = std::move(reason);
        return error;
    }
    return result<basic_lease_pool>{std::move(pool)};
}

template <class S, class C>
std::error_code basic_lease_pool<S, C>::build(std::string& why) {
    const auto& c = config_;
    if (c.first.to_u32() > c.last.to_u32() || !c.subnet.contains(c.first) || !c.subnet.contains(c.last)) {
        why = fmt::format("DHCP range {}-{} is not an ordered range inside {}", c.first, c.last, c.subnet);
        return lease_errc::bad_config;
    }
    if (c.lease_time <= seconds{0} || c.offer_hold <= seconds{0} || c.decline_quarantine < seconds{0}) {
        why = "lease time and offer hold must be positive";
        return lease_errc::bad_config;
    }
    const std::uint64_t n = std::uint64_t{c.last.to_u32()} - c.first.to_u32() + 1;
    if (n >= nil) {
        why = "DHCP range too large";
        return lease_errc::bad_config;
    }
    const auto count = static_cast<std::size_t>(n);
    slots_.assign(count, slot_state::free);
    next_.assign(count, nil);
    prev_.assign(count, nil);
    deadline_of_.assign(count, sys_seconds{});

    // The subnet's own network and broadcast addresses are never a host's.
    for (auto a : {c.subnet.network(), c.subnet.broadcast()}) {
        if (in_range(a) && c.subnet.length() < 31) slots_[index_of(a)] = slot_state::excluded;
    }
    for (auto a : c.excluded) {
        if (in_range(a)) slots_[index_of(a)] = slot_state::excluded;
    }
    for (const auto& r : c.reservations) {
        if (!in_range(r.address)) {
            why = fmt::format("reserved address {} is outside the DHCP range {}-{}", r.address, c.first, c.last);
            return lease_errc::bad_config;
        }
        if (!r.mac && r.client_id.empty()) {
            why = fmt::format("reservation of {} names neither a MAC nor a client identifier", r.address);
            return lease_errc::bad_config;
        }
        const auto i = index_of(r.address);
        if (slots_[i] == slot_state::excluded) {
            why = fmt::format("reserved address {} is excluded", r.address);
            return lease_errc::bad_config;
        }
        slots_[i] = slot_state::reserved;
        for (auto key : {r.mac ? client_key(*r.mac, {}) : std::string{},
                         r.client_id.empty() ? std::string{} : client_key(wire::mac_address{}, r.client_id)}) {
            if (key.empty()) continue;
            if (!reserved_by_.emplace(key, i).second) {
                why = fmt::format("a client has two reservations (second: {})", r.address);
                return lease_errc::bad_config;
            }
            reserved_for_[i].push_back(key);
        }
    }
    for (std::uint32_t i = 0; i < count; ++i) {
        if (slots_[i] == slot_state::free) free_push_back(i);
    }

    auto loaded = store_.load(why);
    if (!loaded) return loaded.error();
    std::vector<wire::ipv4_address> superseded;
    for (const auto& stored : *loaded) {
        if (auto error = adopt(stored, why, superseded)) {
            // A store that knows where the lease came from (a file: "path:line") says so first.
            if constexpr (requires(const S& s) { { s.origin(stored) } -> std::convertible_to<std::string>; }) {
                if (std::string at = store_.origin(stored); !at.empty()) why = fmt::format("{}: {}", at, why);
            }
            return error;
        }
    }
    for (auto a : superseded) {
        if (auto error = store_.erase(a)) {
            why = fmt::format("cannot erase superseded lease of {}: {}", a, error.message());
            return error;
        }
    }
    return {};
}

// Takes a persisted lease back on restart. Anything that contradicts the configuration is
// refused rather than dropped: dropping it would lose a lease the next write would not restore.
template <class S, class C>
std::error_code basic_lease_pool<S, C>::adopt(const lease& stored, std::string& why,
                                              std::vector<wire::ipv4_address>& superseded) {
    if (!in_range(stored.address)) {
        why = fmt::format("stored lease of {} lies outside the DHCP range {}-{}", stored.address, config_.first,
                          config_.last);
        return lease_errc::lease_conflict;
    }
    const auto i = index_of(stored.address);
    const auto key = client_key(stored);
    const client_identity who{stored.mac, stored.client_id};
    if (auto error = check_available(i, key, who)) {
        why = fmt::format("stored lease of {} to {}: {}", stored.address, stored.mac, error.message());
        return lease_errc::lease_conflict;
    }
    // Two leases for one client: a crash between a move's put() and its erase() leaves both in a
    // store whose put() does not drop the client's other lease (file_lease_store does, and refuses
    // such a file at load, with file:line). The later one is the current; the other is superseded
    // and erased once loading is done.
    if (auto held = by_client_.find(key); held != by_client_.end()) {
        const auto other = held->second;
        if (entries_.at(other).value.expiry >= stored.expiry) {
            superseded.push_back(stored.address);
            return {};
        }
        superseded.push_back(address_of(other));
        drop_entry(other, false);
        vacate(other);
    }
    if (slots_[i] == slot_state::free) free_unlink(i);
    slots_[i] = slot_state::bound;
    lease value = stored;
    value.bound = true;
    index_mac(i, value.mac);
    entries_.insert_or_assign(i, entry{std::move(value), key});
    by_client_[key] = i;
    ++bound_count_;
    set_deadline(i, stored.expiry);
    return {};
}

template <class S, class C>
void basic_lease_pool<S, C>::free_push_back(std::uint32_t i) noexcept {
    prev_[i] = tail_;
    next_[i] = nil;
    if (tail_ != nil) next_[tail_] = i; else head_ = i;
    tail_ = i;
    ++free_count_;
}

template <class S, class C>
void basic_lease_pool<S, C>::free_unlink(std::uint32_t i) noexcept {
    if (prev_[i] != nil) next_[prev_[i]] = next_[i]; else head_ = next_[i];
    if (next_[i] != nil) prev_[next_[i]] = prev_[i]; else tail_ = prev_[i];
    prev_[i] = next_[i] = nil;
    --free_count_;
}

template <class S, class C>
std::optional<std::uint32_t> basic_lease_pool<S, C>::reservation_for(const client_identity& c) const {
    if (!c.client_id.empty()) {
        if (auto it = reserved_by_.find(client_key(wire::mac_address{}, c.client_id)); it != reserved_by_.end())
            return it->second;
    }
    if (auto it = reserved_by_.find(client_key(c.mac, {})); it != reserved_by_.end()) return it->second;
    return std::nullopt;
}

// Whether the client with `key` may take slot i now (it may always take what it already holds).
template <class S, class C>
std::error_code basic_lease_pool<S, C>::check_available(std::uint32_t i, const std::string& key,
                                                        const client_identity& c) const {
    switch (slots_[i]) {
    case slot_state::free: return {};
    case slot_state::excluded: return lease_errc::excluded_address;
    case slot_state::declined: {
        // Quarantined by mark_in_use: its user may have it; anyone else, and a DECLINE's, not.
        const auto user = in_use_by_.find(i);
        return user != in_use_by_.end() && user->second == c.mac ? std::error_code{}
                                                                 : make_error_code(lease_errc::address_quarantined);
    }
    case slot_state::reserved: {
        const auto own = reservation_for(c);
        return own && *own == i ? std::error_code{} : make_error_code(lease_errc::reserved_for_other);
    }
    case slot_state::offered:
    case slot_state::bound: {
        const auto it = entries_.find(i);
        return it != entries_.end() && it->second.key == key ? std::error_code{}
                                                             : make_error_code(lease_errc::address_in_use);
    }
    }
    return lease_errc::address_in_use;
}

template <class S, class C>
void basic_lease_pool<S, C>::set_deadline(std::uint32_t i, sys_seconds when) {
    clear_deadline(i);
    deadline_of_[i] = when;
    deadlines_.emplace(when, i);
}

template <class S, class C>
void basic_lease_pool<S, C>::clear_deadline(std::uint32_t i) {
    deadlines_.erase({deadline_of_[i], i});
}

template <class S, class C>
void basic_lease_pool<S, C>::vacate(std::uint32_t i) {
    clear_deadline(i);
    in_use_by_.erase(i);
    if (reserved_for_.contains(i)) {
        slots_[i] = slot_state::reserved;
    } else {
        slots_[i] = slot_state::free;
        free_push_back(i);
    }
}

// Forgets the lease on slot i (the caller decides what the slot becomes next).
template <class S, class C>
void basic_lease_pool<S, C>::drop_entry(std::uint32_t i, bool remember) {
    auto it = entries_.find(i);
    if (it == entries_.end()) return;
    if (it->second.value.bound) --bound_count_;
    unindex_mac(i, it->second.value.mac);
    by_client_.erase(it->second.key);
    if (remember) previous_.insert_or_assign(it->second.key, i);
    entries_.erase(it);
}

// Puts the client on slot i as an offer (the caller has checked availability).
template <class S, class C>
std::uint32_t basic_lease_pool<S, C>::take(std::uint32_t i, const lease_request& r, const std::string& key,
                                           sys_seconds now) {
    if (slots_[i] == slot_state::free) free_unlink(i);
    in_use_by_.erase(i); // the user seen on a quarantined address is now its client
    slots_[i] = slot_state::offered;
    lease value{r.client.mac, r.client.client_id, address_of(i), now + config_.offer_hold, r.hostname, false};
    entries_.insert_or_assign(i, entry{std::move(value), key});
    index_mac(i, r.client.mac);
    by_client_[key] = i;
    set_deadline(i, now + config_.offer_hold);
    return i;
}

template <class S, class C>
void basic_lease_pool<S, C>::enforce_mac_limit(const wire::mac_address& mac, bool bound, std::size_t limit, std::uint32_t keep) {
    if (limit == 0) return;
    const auto it = by_mac_.find(mac);
    if (it == by_mac_.end()) return;
    std::uint32_t oldest = nil;
    std::size_t held = 0;
    for (const auto i : it->second) {
        if (i == keep) continue;
        const auto& held_lease = entries_.at(i).value;
        if (held_lease.bound != bound) continue;
        ++held;
        if (oldest == nil || held_lease.expiry < entries_.at(oldest).value.expiry) oldest = i;
    }
    if (held < limit) return;
    ++limit_evictions_;
    if (bound) (void)store_.erase(address_of(oldest)); // a stale extra lease is harmless on reload
    drop_entry(oldest, false);
    vacate(oldest);
}

template <class S, class C>
result<lease> basic_lease_pool<S, C>::offer(const lease_request& r, sys_seconds now) {
    reclaim(now);
    const auto key = client_key(r.client);
    if (auto it = by_client_.find(key); it != by_client_.end()) {
        auto& e = entries_.at(it->second);
        if (!e.value.bound) { // refresh the hold; a bound lease is offered as it stands
            e.value.expiry = now + config_.offer_hold;
            set_deadline(it->second, e.value.expiry);
        }
        return e.value;
    }
    auto candidate = [&](std::uint32_t i) { return !check_available(i, key, r.client); };
    std::uint32_t chosen = nil;
    if (auto reserved = reservation_for(r.client); reserved && candidate(*reserved)) {
        chosen = *reserved;
    } else if (auto prev = previous_.find(key); prev != previous_.end() && candidate(prev->second)) {
        chosen = prev->second;
    } else if (r.requested && in_range(*r.requested) && candidate(index_of(*r.requested))) {
        chosen = index_of(*r.requested);
    } else if (head_ != nil) {
        chosen = head_;
    } else {
        return make_error_code(lease_errc::pool_exhausted);
    }
    enforce_mac_limit(r.client.mac, false, config_.max_offers_per_mac, chosen);
    take(chosen, r, key, now);
    return entries_.at(chosen).value;
}

template <class S, class C>
result<lease> basic_lease_pool<S, C>::commit(const lease_request& r, wire::ipv4_address address, sys_seconds now) {
    reclaim(now);
    if (!in_range(address)) return make_error_code(lease_errc::not_in_range);
    const auto i = index_of(address);
    const auto key = client_key(r.client);
    if (auto error = check_available(i, key, r.client)) return error;

    const lease granted{r.client.mac, r.client.client_id, address, now + config_.lease_time, r.hostname, true};
    // Persist first: a lease the store could not make durable is never granted.
    if (auto error = store_.put(granted)) return error;

    // Moving to another address: the old one goes back (and leaves the store).
    if (auto it = by_client_.find(key); it != by_client_.end() && it->second != i) {
        const auto old = it->second;
        const bool was_bound = entries_.at(old).value.bound;
        if (was_bound) (void)store_.erase(address_of(old)); // a stale extra lease is harmless on reload
        drop_entry(old, false);
        vacate(old);
    }
    if (slots_[i] == slot_state::free) free_unlink(i);
    in_use_by_.erase(i); // the user seen on a quarantined address is now its client
    auto it = entries_.find(i);
    if (it == entries_.end() || !it->second.value.bound) {
        ++bound_count_;
        enforce_mac_limit(r.client.mac, true, config_.max_leases_per_mac, i);
        it = entries_.find(i);
    }
    if (it != entries_.end()) unindex_mac(i, it->second.value.mac);
    index_mac(i, r.client.mac);
    slots_[i] = slot_state::bound;
    entries_.insert_or_assign(i, entry{granted, key});
    by_client_[key] = i;
    previous_.erase(key);
    set_deadline(i, granted.expiry);
    return granted;
}

template <class S, class C>
result<lease> basic_lease_pool<S, C>::renew(const lease_request& r, wire::ipv4_address address, sys_seconds now) {
    reclaim(now);
    const auto it = by_client_.find(client_key(r.client));
    if (it == by_client_.end() || address_of(it->second) != address || !entries_.at(it->second).value.bound)
        return make_error_code(lease_errc::no_lease);
    return commit(r, address, now);
}

template <class S, class C>
std::error_code basic_lease_pool<S, C>::release(const client_identity& client, wire::ipv4_address address,
                                                sys_seconds now) {
    reclaim(now);
    const auto it = by_client_.find(client_key(client));
    if (it == by_client_.end() || address_of(it->second) != address) return lease_errc::no_lease;
    const auto i = it->second;
    if (entries_.at(i).value.bound) {
        if (auto error = store_.erase(address)) return error;
    }
    drop_entry(i, true);
    vacate(i);
    return {};
}

template <class S, class C>
std::error_code basic_lease_pool<S, C>::decline(const client_identity& client, wire::ipv4_address address,
                                                sys_seconds now) {
    reclaim(now);
    const auto it = by_client_.find(client_key(client));
    if (it == by_client_.end() || address_of(it->second) != address) return lease_errc::no_lease;
    const auto i = it->second;
    if (entries_.at(i).value.bound) {
        if (auto error = store_.erase(address)) return error;
    }
    drop_entry(i, false); // do not steer the client back to an address in conflict
    slots_[i] = slot_state::declined;
    in_use_by_.erase(i); // whoever answered the client's ARP is unknown
    set_deadline(i, now + config_.decline_quarantine);
    return {};
}

template <class S, class C>
std::error_code basic_lease_pool<S, C>::mark_in_use(wire::ipv4_address address, wire::mac_address user, sys_seconds now) {
    reclaim(now);
    if (!in_range(address)) return lease_errc::not_in_range;
    const auto i = index_of(address);
    switch (slots_[i]) {
    case slot_state::free: free_unlink(i); break;
    case slot_state::declined: break; // extended below
    case slot_state::offered:
    case slot_state::bound: return lease_errc::address_in_use;
    case slot_state::reserved: return lease_errc::reserved_for_other;
    case slot_state::excluded: return lease_errc::excluded_address;
    }
    slots_[i] = slot_state::declined;
    in_use_by_[i] = user;
    set_deadline(i, now + config_.decline_quarantine);
    return {};
}

template <class S, class C>
std::size_t basic_lease_pool<S, C>::reclaim(sys_seconds now) {
    std::size_t count = 0;
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        const auto i = deadlines_.begin()->second;
        if (slots_[i] == slot_state::bound) {
            // Keep a lease the store could not forget: the file must never say less than we do.
            if (store_.erase(address_of(i))) break;
            drop_entry(i, true);
        } else if (slots_[i] == slot_state::offered) {
            drop_entry(i, true);
        }
        vacate(i);
        ++count;
    }
    return count;
}

template <class S, class C>
std::optional<lease> basic_lease_pool<S, C>::find(wire::ipv4_address address) const {
    if (!in_range(address)) return std::nullopt;
    const auto it = entries_.find(index_of(address));
    if (it == entries_.end()) return std::nullopt;
    return it->second.value;
}

template <class S, class C>
std::optional<lease> basic_lease_pool<S, C>::find(const client_identity& client) const {
    const auto it = by_client_.find(client_key(client));
    if (it == by_client_.end()) return std::nullopt;
    return entries_.at(it->second).value;
}

} // namespace ankanet::dhcp

// The stores complete the picture: lease_pool names memory_lease_store as its default.
#include <ankanet/dhcp/lease_store.hpp>
