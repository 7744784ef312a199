/// @file
/// ankanet::dhcp::basic_service — the DHCP server as a network's gateway service, and the network's
/// lease authority.
///
/// Theory of operation. Wraps a basic_server (server.hpp) for basic_network (network.hpp): frames
/// the switch delivers to the gateway are offered to the server with the network's wall time, and
/// its replies go into the network's reply queue. The service is also the network's lease authority:
/// other services (the ARP guard) ask it who holds a lease on an address and tell it about addresses
/// guests use without one. Lease events reach the network's observer as dhcp::lease_event. poll()
/// reclaims expired offers, leases and quarantines (the pool also does so lazily on every operation).
///
/// A VM is untrusted. Every message is tied to the port it came from (basic_server::handle with a
/// port binding): its chaddr must be the port's MAC, and its client identifier may not name a lease
/// of another attached VM — so no VM can release, decline, renew or take over another's lease. Each
/// VM (keyed by its port's MAC) may send `messages_per_second` DHCP messages on average, in bursts
/// of up to `message_burst` (a token bucket); beyond that its messages are dropped. The pool bounds
/// the leases and offers one MAC holds (lease_pool_config::max_*_per_mac). Every such refusal is
/// counted, and reported to the network's observer as a dhcp::refusal_event at most once per
/// `report_interval` per VM and kind, so a flooding VM cannot flood the log either.
///
/// A lease is acknowledged only once it is durable. With a store that writes in the background
/// (a `deferred_lease_store`: file_lease_store in write_mode::background) the reply to a message
/// that changed the store — the ACK — is copied into a held queue, tagged with the store's change
/// count, and handed to the network when the store says that change is durable (release_held(),
/// which basic_network calls when the store's writer wakes it: bind_wakeup()). So a slow disk delays
/// ACKs, never anyone's frames, and every lease granted while one rewrite runs shares the next
/// rewrite (group commit). A rewrite that fails drops the ACKs that waited for it (the clients
/// retry) and is reported as a store_failure_event, at most once per `report_interval`. The held
/// queue is bounded (`max_held_bytes`); a reply beyond it is dropped and counted.
#pragma once

#include <ankanet/clock.hpp>
#include <ankanet/dhcp/lease_pool.hpp>
#include <ankanet/dhcp/lease_store.hpp>
#include <ankanet/dhcp/server.hpp>
#include <ankanet/inspection.hpp>
#include <ankanet/port_handle.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/frame.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ankanet::dhcp {

/// Why a VM's DHCP message was refused or its lease replaced.
enum class refusal_kind : std::uint8_t {
    foreign_chaddr,  ///< the message named another MAC than its port's
    foreign_client,  ///< its client identifier names a lease of another attached VM
    rate_limited,    ///< the VM sent more messages than its rate allows
    lease_limit,     ///< the VM asked under yet another client identifier; its older lease or offer was replaced
    pool_exhausted,  ///< no address was left to offer it
    rogue_server,    ///< the VM answered as a DHCP server; only the gateway serves this network
};
inline constexpr std::size_t refusal_kinds = 6; ///< refusal kinds

/// The text form.
constexpr std::string_view to_string(refusal_kind kind) noexcept {
    switch (kind) {
    case refusal_kind::foreign_chaddr: return "DHCP message in another MAC's name dropped";
    case refusal_kind::foreign_client: return "DHCP message naming another VM's lease (client identifier) dropped";
    case refusal_kind::rate_limited: return "DHCP message rate limit reached; messages dropped";
    case refusal_kind::lease_limit: return "DHCP lease limit per VM reached; its older lease or offer replaced";
    case refusal_kind::pool_exhausted: return "DHCP pool exhausted; no address to offer";
    case refusal_kind::rogue_server: return "DHCP server message from a VM dropped (only the gateway serves DHCP here)";
    }
    return "DHCP refusal";
}

/// A VM's DHCP message was refused (reported at most once per report_interval per VM and kind).
struct refusal_event {
    std::string_view port; ///< port
    wire::mac_address mac;    ///< the port's MAC
    refusal_kind kind; ///< kind
    std::uint64_t count = 0;  ///< how many of this kind this VM has had so far
};

/// Lease-file rewrites failed, so the ACKs waiting for them were dropped (reported at most once
/// per report_interval; the clients retry, and the leases stay in memory).
struct store_failure_event {
    std::error_code error;            ///< why the last rewrite failed
    std::uint64_t replies_dropped = 0; ///< ACKs dropped for that reason so far
};

/// The per-VM limits of a DHCP service.
struct service_limits {
    double messages_per_second = 10;  ///< sustained DHCP messages per VM (a client sends a handful per lease)
    double message_burst = 30;        ///< and in one burst
    std::chrono::seconds report_interval{60}; ///< report interval
    std::size_t max_held_bytes = std::size_t{1} << 20; ///< ACKs waiting for the lease file, in bytes
};

/// @tparam LeaseStore where leases are kept (see `lease_store`); any_lease_store chooses at run time.
template <class LeaseStore = any_lease_store>
class basic_service {
public:
    using server_type = basic_server<LeaseStore, std::chrono::system_clock>; ///< the server type
    using pool_type = typename server_type::pool_type; ///< the pool type

    /// A DHCP service around `engine`.
    explicit basic_service(server_type engine, service_limits limits = {}) : server_(std::move(engine)), limits_(limits) {}

    /// Builds the pool (loading `store`) and the server around it; refuses, with `why`, what
    /// basic_lease_pool::create and basic_server::create refuse (the store's data is left untouched).
    static result<basic_service> create(server_config settings, lease_pool_config pool, LeaseStore store = LeaseStore{},
                                        std::string* why = nullptr, service_limits limits = {}) {
        auto leases = pool_type::create(std::move(pool), std::move(store), {}, why);
        if (!leases) return leases.error();
        auto built = server_type::create(std::move(settings), std::move(*leases), why);
        if (!built) return built.error();
        return basic_service{std::move(*built), limits};
    }

    /// Every frame a VM sends, before it is switched (DHCP guard): a client's message for this
    /// server is served here and taken, so it never floods to the other VMs (with a thousand VMs,
    /// each DISCOVER would otherwise be copied a thousand times); a DHCP server's reply from a VM
    /// is dropped and reported (rogue_server), since only the gateway serves this network.
    template <class Context>
    inspection inspect(const wire::parsed_frame& frame, Context& ctx) {
        if (!frame.is_ipv4() || !frame.has_ports || frame.protocol != wire::ipv4::protocol::udp) return inspection::pass;
        if (frame.source_port == wire::dhcp::server_port && frame.destination_port == wire::dhcp::client_port) {
            ++rogue_server_;
            refused(vms_[ctx.port_mac()], refusal_kind::rogue_server, ctx);
            return inspection::drop;
        }
        // Not to this server (a unicast to some other one), or from another source MAC than the
        // port's (the switch drops and counts that): not taken here.
        if (frame.destination_port != wire::dhcp::server_port || frame.source != ctx.port_mac()) return inspection::pass;
        return handle(frame, ctx) ? inspection::taken : inspection::pass;
    }

    /// A frame for the gateway from a VM: a DHCP message for this server is answered, or counted
    /// and dropped (see the top of this file).
    template <class Context>
    bool handle(const wire::parsed_frame& frame, Context& ctx) {
        const bool dhcp = frame.has_ports && frame.protocol == wire::ipv4::protocol::udp &&
                          frame.destination_port == wire::dhcp::server_port;
        if (!dhcp) return server_.handle(frame, ctx.now().wall_seconds(), ctx); // not ours: the server says no
        if (!server_.addressed_to_me(frame)) return false;
        vm_state& vm = vms_[ctx.port_mac()];
        if (!admit(vm, ctx.now())) {
            refused(vm, refusal_kind::rate_limited, ctx);
            return true;
        }
        const server_counters before = server_.stats();
        const std::uint64_t evictions_before = server_.pool().limit_evictions();
        const std::uint64_t changes_before = store_changes();
        const auto reply = [&](wire::const_bytes bytes) {
            // A reply to a message that changed the store waits until the change is durable.
            if (const std::uint64_t changes = store_changes(); changes != changes_before && store_durable() < changes) {
                hold(changes, ctx.port(), bytes);
            } else {
                ctx.answer(bytes); // to the asking VM alone, even when its client asked for broadcast
            }
        };
        const bool mine = server_.handle(frame, ctx.now().wall_seconds(), reply, binding<Context>{ctx});
        const server_counters& after = server_.stats();
        if (after.dropped_foreign_chaddr != before.dropped_foreign_chaddr) refused(vm, refusal_kind::foreign_chaddr, ctx);
        if (after.dropped_foreign_client != before.dropped_foreign_client) refused(vm, refusal_kind::foreign_client, ctx);
        if (after.pool_exhausted != before.pool_exhausted) refused(vm, refusal_kind::pool_exhausted, ctx);
        if (server_.pool().limit_evictions() != evictions_before) refused(vm, refusal_kind::lease_limit, ctx);
        return mine;
    }

    /// Hands held replies whose leases are now durable to `ctx` (at most `room` of them), drops
    /// those whose rewrite failed; returns how many it handed over.
    template <class Context>
    std::size_t release_held(Context& ctx, std::size_t room) {
        const std::uint64_t durable = store_durable();
        const std::uint64_t settled = store_settled();
        std::size_t sent = 0;
        while (held_head_ < held_.size() && sent < room) {
            const held_reply& h = held_[held_head_];
            if (h.change <= durable) {
                const wire::const_bytes reply{held_bytes_.data() + h.offset, h.length};
                if (h.port) ctx.send_to(*h.port, reply); // dropped if the VM has gone meanwhile
                else ctx(reply);
                ++sent;
            } else if (h.change <= settled) {
                ++held_unwritten_;
                report_store_failure(ctx);
            } else {
                break; // tags grow along the queue: the rest wait too
            }
            ++held_head_;
        }
        compact_held();
        return sent;
    }

    /// `wake` is called (from the store's writer thread) when held replies may be released.
    void bind_wakeup(std::function<void()> wake) {
        if constexpr (deferred_lease_store<LeaseStore>) server_.pool().store().on_settled(std::move(wake));
    }

    /// Replies held now; dropped because the held queue was full; dropped because their rewrite failed.
    std::size_t held_replies() const noexcept { return held_.size() - held_head_; }
    /// Replies not held because the hold queue was full (the client retries).
    std::uint64_t held_dropped_full() const noexcept { return held_full_; }
    /// Held replies dropped because the lease they announce failed to be written.
    std::uint64_t held_dropped_unwritten() const noexcept { return held_unwritten_; }

    /// A VM's port is gone: forget its rate and report state.
    void port_removed(wire::mac_address mac) { vms_.erase(mac); }

    /// Messages dropped by the rate limit, over all VMs.
    std::uint64_t rate_limited() const noexcept { return rate_limited_; }
    /// DHCP server replies VMs sent, dropped.
    std::uint64_t rogue_server_replies() const noexcept { return rogue_server_; }
    /// The limits.
    const service_limits& limits() const noexcept { return limits_; }

    /// The MAC holding a bound, unexpired lease on `address`.
    std::optional<wire::mac_address> lease_holder(wire::ipv4_address address, network_time now) const {
        return server_.pool().bound_holder(address, now.wall_seconds());
    }
    /// The address `mac` holds a bound, unexpired lease on (a port forward's VM).
    std::optional<wire::ipv4_address> leased_address(wire::mac_address mac, network_time now) const {
        const auto held = server_.pool().bound_lease(mac, now.wall_seconds());
        return held ? std::optional{held->address} : std::nullopt;
    }
    /// The bound, unexpired lease of `mac` (for listings: address, host name, expiry).
    std::optional<lease> bound_lease(wire::mac_address mac, network_time now) const {
        return server_.pool().bound_lease(mac, now.wall_seconds());
    }
    /// `mac` uses `address` without a lease: keep it out of the pool (see lease_pool::mark_in_use).
    std::error_code mark_in_use(wire::ipv4_address address, wire::mac_address mac, network_time now) {
        return server_.pool().mark_in_use(address, mac, now.wall_seconds());
    }
    /// Expires leases that ran out.
    void poll(network_time now) { (void)server_.pool().reclaim(now.wall_seconds()); }

    /// Lease events go to `sink` (the network's observer).
    template <class Sink>
    void bind_events(Sink sink) {
        server_.set_observer([sink = std::move(sink)](const lease_event& e) mutable { sink(e); });
    }

    /// The server.
    server_type& server() noexcept { return server_; }
    /// The server.
    const server_type& server() const noexcept { return server_; }
    /// The pool.
    pool_type& pool() noexcept { return server_.pool(); }
    /// The pool.
    const pool_type& pool() const noexcept { return server_.pool(); }
    /// What it counted so far.
    const server_counters& stats() const noexcept { return server_.stats(); }

private:
    /// One VM's token bucket and what has been reported of it.
    struct vm_state {
        double tokens = -1; // < 0: not started (a new VM starts with a full burst)
        std::chrono::steady_clock::time_point last{};
        std::array<std::uint64_t, refusal_kinds> counts{};
        std::array<std::chrono::steady_clock::time_point, refusal_kinds> reported{};
        std::array<bool, refusal_kinds> ever_reported{};
    };

    /// The network's context as the server's port binding.
    template <class Context>
    struct binding {
        const Context& ctx;
        wire::mac_address port_mac() const { return ctx.port_mac(); }
        bool attached(wire::mac_address mac) const { return ctx.attached(mac); }
    };

    bool admit(vm_state& vm, network_time now) {
        if (vm.tokens < 0) {
            vm.tokens = limits_.message_burst;
        } else {
            const std::chrono::duration<double> elapsed = now.steady - vm.last;
            vm.tokens = std::min(limits_.message_burst, vm.tokens + std::max(0.0, elapsed.count()) * limits_.messages_per_second);
        }
        vm.last = now.steady;
        if (vm.tokens < 1) {
            ++rate_limited_;
            return false;
        }
        vm.tokens -= 1;
        return true;
    }

    template <class Context>
    void refused(vm_state& vm, refusal_kind kind, Context& ctx) {
        const auto k = static_cast<std::size_t>(kind);
        ++vm.counts[k];
        const auto now = ctx.now().steady;
        if (vm.ever_reported[k] && now - vm.reported[k] < limits_.report_interval) return;
        vm.ever_reported[k] = true;
        vm.reported[k] = now;
        ctx.notify(refusal_event{ctx.port_name(), ctx.port_mac(), kind, vm.counts[k]});
    }

    std::uint64_t store_changes() const {
        if constexpr (deferred_lease_store<LeaseStore>) return server_.pool().store().changes();
        else return 0;
    }
    std::uint64_t store_durable() const {
        if constexpr (deferred_lease_store<LeaseStore>) return server_.pool().store().durable();
        else return 0;
    }
    std::uint64_t store_settled() const {
        if constexpr (deferred_lease_store<LeaseStore>) return server_.pool().store().settled();
        else return 0;
    }

    void hold(std::uint64_t change, std::optional<port_handle> port, wire::const_bytes bytes) {
        if (held_bytes_.size() - held_front_offset() + bytes.size() > limits_.max_held_bytes) {
            ++held_full_; // the client retries
            return;
        }
        held_.push_back(held_reply{change, port, held_bytes_.size(), bytes.size()});
        held_bytes_.insert(held_bytes_.end(), bytes.begin(), bytes.end());
    }

    std::size_t held_front_offset() const noexcept {
        return held_head_ < held_.size() ? held_[held_head_].offset : held_bytes_.size();
    }

    // Released replies leave the front; the storage is reused, not freed, so a steady flow of held
    // ACKs allocates nothing once the buffers have grown.
    void compact_held() {
        if (held_head_ == held_.size()) {
            held_.clear();
            held_bytes_.clear();
            held_head_ = 0;
        } else if (held_head_ >= 64 && held_head_ * 2 >= held_.size()) {
            const std::size_t shift = held_front_offset();
            held_bytes_.erase(held_bytes_.begin(), held_bytes_.begin() + static_cast<std::ptrdiff_t>(shift));
            held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(held_head_));
            for (auto& h : held_) h.offset -= shift;
            held_head_ = 0;
        }
    }

    template <class Context>
    void report_store_failure(Context& ctx) {
        const auto now = ctx.now().steady;
        if (store_failure_reported_ && now - store_failure_last_ < limits_.report_interval) return;
        store_failure_reported_ = true;
        store_failure_last_ = now;
        std::error_code error;
        if constexpr (deferred_lease_store<LeaseStore>) error = server_.pool().store().last_write_error();
        ctx.notify(store_failure_event{error, held_unwritten_});
    }

    /// A reply waiting for change number `change` of the store; its bytes are in held_bytes_.
    struct held_reply {
        std::uint64_t change;
        std::optional<port_handle> port; // the VM that asked
        std::size_t offset;
        std::size_t length;
    };

    server_type server_;
    service_limits limits_;
    std::vector<held_reply> held_;     // in the order held, so `change` never decreases
    std::size_t held_head_ = 0;        // held_[0, head) are released
    std::vector<std::byte> held_bytes_;
    std::uint64_t held_full_ = 0, held_unwritten_ = 0;
    bool store_failure_reported_ = false;
    std::chrono::steady_clock::time_point store_failure_last_{};
    std::unordered_map<wire::mac_address, vm_state> vms_; // one per attached VM that spoke DHCP
    std::uint64_t rate_limited_ = 0;
    std::uint64_t rogue_server_ = 0;
};

using service = basic_service<>; ///< the DHCP service with the default lease store

} // namespace ankanet::dhcp
