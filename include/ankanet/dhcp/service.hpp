// ankanet::dhcp::basic_service — the DHCP server as a network's gateway service, and the network's
// lease authority.
//
// Theory of operation. Wraps a basic_server (server.hpp) for basic_network (network.hpp): frames
// the switch delivers to the gateway are offered to the server with the network's wall time, and
// its replies go into the network's reply queue. The service is also the network's lease authority:
// other services (the ARP guard) ask it who holds a lease on an address and tell it about addresses
// guests use without one. Lease events reach the network's observer as dhcp::lease_event. poll()
// reclaims expired offers, leases and quarantines (the pool also does so lazily on every operation).
//
// A VM is untrusted. Every message is tied to the port it came from (basic_server::handle with a
// port binding): its chaddr must be the port's MAC, and its client identifier may not name a lease
// of another attached VM — so no VM can release, decline, renew or take over another's lease. Each
// VM (keyed by its port's MAC) may send `messages_per_second` DHCP messages on average, in bursts
// of up to `message_burst` (a token bucket); beyond that its messages are dropped. The pool bounds
// the leases and offers one MAC holds (lease_pool_config::max_*_per_mac). Every such refusal is
// counted, and reported to the network's observer as a dhcp::refusal_event at most once per
// `report_interval` per VM and kind, so a flooding VM cannot flood the log either.
#pragma once

#include <ankanet/clock.hpp>
#include <ankanet/dhcp/lease_pool.hpp>
#include <ankanet/dhcp/lease_store.hpp>
#include <ankanet/dhcp/server.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/frame.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <string>
#include <system_error>
#include <utility>

namespace ankanet::dhcp {

/// Why a VM's DHCP message was refused or its lease replaced.
enum class refusal_kind : std::uint8_t {
    foreign_chaddr,  ///< the message named another MAC than its port's
    foreign_client,  ///< its client identifier names a lease of another attached VM
    rate_limited,    ///< the VM sent more messages than its rate allows
    lease_limit,     ///< the VM asked under yet another client identifier; its older lease or offer was replaced
    pool_exhausted,  ///< no address was left to offer it
};
inline constexpr std::size_t refusal_kinds = 5;

constexpr std::string_view to_string(refusal_kind kind) noexcept {
    switch (kind) {
    case refusal_kind::foreign_chaddr: return "DHCP message in another MAC's name dropped";
    case refusal_kind::foreign_client: return "DHCP message naming another VM's lease (client identifier) dropped";
    case refusal_kind::rate_limited: return "DHCP message rate limit reached; messages dropped";
    case refusal_kind::lease_limit: return "DHCP lease limit per VM reached; its older lease or offer replaced";
    case refusal_kind::pool_exhausted: return "DHCP pool exhausted; no address to offer";
    }
    return "DHCP refusal";
}

/// A VM's DHCP message was refused (reported at most once per report_interval per VM and kind).
struct refusal_event {
    std::string_view port;
    wire::mac_address mac;    ///< the port's MAC
    refusal_kind kind;
    std::uint64_t count = 0;  ///< how many of this kind this VM has had so far
};

/// The per-VM limits of a DHCP service.
struct service_limits {
    double messages_per_second = 10;  ///< sustained DHCP messages per VM (a client sends a handful per lease)
    double message_burst = 30;        ///< and in one burst
    std::chrono::seconds report_interval{60};
};

/// @tparam LeaseStore where leases are kept (see `lease_store`); any_lease_store chooses at run time.
template <class LeaseStore = any_lease_store>
class basic_service {
public:
    using server_type = basic_server<LeaseStore, std::chrono::system_clock>;
    using pool_type = typename server_type::pool_type;

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

    /// A frame for the gateway from a VM: a DHCP message for this server is answered, or counted
    /// and dropped (see the top of this file).
    template <class Context>
    bool handle(const wire::parsed_frame& frame, Context& ctx) {
        const bool dhcp = frame.has_ports && frame.protocol == wire::ipv4::protocol::udp &&
                          frame.destination_port == wire::dhcp::server_port;
        if (!dhcp) return server_.handle(frame, ctx.now().wall_seconds(), ctx); // not ours: the server says no
        vm_state& vm = vms_[ctx.port_mac()];
        if (!admit(vm, ctx.now())) {
            refused(vm, refusal_kind::rate_limited, ctx);
            return true;
        }
        const server_counters before = server_.stats();
        const std::uint64_t evictions_before = server_.pool().limit_evictions();
        const bool mine = server_.handle(frame, ctx.now().wall_seconds(), ctx, binding<Context>{ctx});
        const server_counters& after = server_.stats();
        if (after.dropped_foreign_chaddr != before.dropped_foreign_chaddr) refused(vm, refusal_kind::foreign_chaddr, ctx);
        if (after.dropped_foreign_client != before.dropped_foreign_client) refused(vm, refusal_kind::foreign_client, ctx);
        if (after.pool_exhausted != before.pool_exhausted) refused(vm, refusal_kind::pool_exhausted, ctx);
        if (server_.pool().limit_evictions() != evictions_before) refused(vm, refusal_kind::lease_limit, ctx);
        return mine;
    }

    /// A VM's port is gone: forget its rate and report state.
    void port_removed(wire::mac_address mac) { vms_.erase(mac); }

    /// Messages dropped by the rate limit, over all VMs.
    std::uint64_t rate_limited() const noexcept { return rate_limited_; }
    const service_limits& limits() const noexcept { return limits_; }

    /// The MAC holding a bound, unexpired lease on `address`.
    std::optional<wire::mac_address> lease_holder(wire::ipv4_address address, network_time now) const {
        return server_.pool().bound_holder(address, now.wall_seconds());
    }
    /// `mac` uses `address` without a lease: keep it out of the pool (see lease_pool::mark_in_use).
    std::error_code mark_in_use(wire::ipv4_address address, wire::mac_address mac, network_time now) {
        return server_.pool().mark_in_use(address, mac, now.wall_seconds());
    }
    void poll(network_time now) { (void)server_.pool().reclaim(now.wall_seconds()); }

    /// Lease events go to `sink` (the network's observer).
    template <class Sink>
    void bind_events(Sink sink) {
        server_.set_observer([sink = std::move(sink)](const lease_event& e) mutable { sink(e); });
    }

    server_type& server() noexcept { return server_; }
    const server_type& server() const noexcept { return server_; }
    pool_type& pool() noexcept { return server_.pool(); }
    const pool_type& pool() const noexcept { return server_.pool(); }
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

    server_type server_;
    service_limits limits_;
    std::unordered_map<wire::mac_address, vm_state> vms_; // one per attached VM that spoke DHCP
    std::uint64_t rate_limited_ = 0;
};

using service = basic_service<>;

} // namespace ankanet::dhcp
