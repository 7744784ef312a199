// ankanet::dhcp::basic_service — the DHCP server as a network's gateway service, and the network's
// lease authority.
//
// Theory of operation. Wraps a basic_server (server.hpp) for basic_network (network.hpp): frames
// the switch delivers to the gateway are offered to the server with the network's wall time, and
// its replies go into the network's reply queue. The service is also the network's lease authority:
// other services (the ARP guard) ask it who holds a lease on an address and tell it about addresses
// guests use without one. Lease events reach the network's observer as dhcp::lease_event. poll()
// reclaims expired offers, leases and quarantines (the pool also does so lazily on every operation).
#pragma once

#include <ankanet/clock.hpp>
#include <ankanet/dhcp/lease_pool.hpp>
#include <ankanet/dhcp/lease_store.hpp>
#include <ankanet/dhcp/server.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/frame.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

namespace ankanet::dhcp {

/// @tparam LeaseStore where leases are kept (see `lease_store`); any_lease_store chooses at run time.
template <class LeaseStore = any_lease_store>
class basic_service {
public:
    using server_type = basic_server<LeaseStore, std::chrono::system_clock>;
    using pool_type = typename server_type::pool_type;

    explicit basic_service(server_type server) : server_(std::move(server)) {}

    /// Builds the pool (loading `store`) and the server around it; refuses, with `why`, what
    /// basic_lease_pool::create and basic_server::create refuse (the store's data is left untouched).
    static result<basic_service> create(server_config settings, lease_pool_config pool, LeaseStore store = LeaseStore{},
                                        std::string* why = nullptr) {
        auto leases = pool_type::create(std::move(pool), std::move(store), {}, why);
        if (!leases) return leases.error();
        auto built = server_type::create(std::move(settings), std::move(*leases), why);
        if (!built) return built.error();
        return basic_service{std::move(*built)};
    }

    /// A frame for the gateway: a DHCP message for this server is answered (or counted and dropped).
    template <class Context>
    bool handle(const wire::parsed_frame& frame, Context& ctx) {
        return server_.handle(frame, ctx.now().wall_seconds(), ctx);
    }

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
    server_type server_;
};

using service = basic_service<>;

} // namespace ankanet::dhcp
