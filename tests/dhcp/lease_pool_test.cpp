#include <ankanet/dhcp/lease_pool.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

using namespace ankanet;
using namespace ankanet::dhcp;
using wire::ipv4_address;
using wire::ipv4_prefix;
using wire::mac_address;

namespace {

struct manual_clock {
    sys_seconds t{seconds{1'700'000'000}};
    sys_seconds now() const { return t; }
};

using test_pool = basic_lease_pool<memory_lease_store, manual_clock>;

mac_address mac_n(std::uint32_t n) {
    return mac_address{{0x52, 0x54, 0x00, static_cast<std::uint8_t>(n >> 16), static_cast<std::uint8_t>(n >> 8),
                        static_cast<std::uint8_t>(n)}};
}

lease_request req(std::uint32_t n, std::optional<ipv4_address> requested = std::nullopt, std::string host = {}) {
    return lease_request{client_identity{mac_n(n), {}}, requested, std::move(host)};
}

lease_pool_config small_config() {
    lease_pool_config c;
    c.subnet = ipv4_prefix{ipv4_address{192, 168, 64, 1}, 24};
    c.first = ipv4_address{192, 168, 64, 2};
    c.last = ipv4_address{192, 168, 64, 11}; // ten addresses
    c.lease_time = seconds{3600};
    c.offer_hold = seconds{30};
    c.decline_quarantine = seconds{600};
    return c;
}

test_pool make(lease_pool_config c = small_config()) {
    std::string why;
    auto pool = test_pool::create(std::move(c), memory_lease_store{}, manual_clock{}, &why);
    INFO(why);
    REQUIRE(pool);
    return std::move(*pool);
}

// Offer then commit, as DISCOVER/REQUEST would.
lease grant(test_pool& pool, const lease_request& r) {
    auto offered = pool.offer(r);
    REQUIRE(offered);
    auto acked = pool.commit(r, offered->address);
    REQUIRE(acked);
    return *acked;
}

} // namespace

TEST_CASE("offer is tentative and commit binds with the lease time") {
    auto pool = make();
    const auto offered = pool.offer(req(1, std::nullopt, "vm1"));
    REQUIRE(offered);
    CHECK_FALSE(offered->bound);
    CHECK(pool.bound_count() == 0);
    CHECK(pool.store().size() == 0); // offers are never persisted
    CHECK(pool.free_count() == 9);

    const auto acked = pool.commit(req(1, std::nullopt, "vm1"), offered->address);
    REQUIRE(acked);
    CHECK(acked->bound);
    CHECK(acked->hostname == "vm1");
    CHECK(acked->expiry == pool.now() + seconds{3600});
    CHECK(pool.bound_count() == 1);
    CHECK(pool.store().size() == 1);
    CHECK(pool.find(offered->address)->hostname == "vm1");

    // A second DISCOVER from a bound client offers its lease as it stands.
    const auto again = pool.offer(req(1));
    REQUIRE(again);
    CHECK(again->address == offered->address);
    CHECK(again->bound);
}

TEST_CASE("allocation prefers the previous address, then the requested one, then a free one") {
    auto pool = make();
    const auto first = grant(pool, req(1));
    REQUIRE(!pool.release(client_identity{mac_n(1), {}}, first.address));

    // Another client asks for client 1's old address: it gets it (requested beats longest-free)...
    const ipv4_address wanted{192, 168, 64, 7};
    const auto second = grant(pool, req(2, wanted));
    CHECK(second.address == wanted);

    // ...client 1 comes back asking for something else: its previous address wins over the request.
    const auto back = pool.offer(req(1, ipv4_address{192, 168, 64, 9}));
    REQUIRE(back);
    CHECK(back->address == first.address);

    // A request for an address held by someone else falls back to a free one.
    const auto third = pool.offer(req(3, wanted));
    REQUIRE(third);
    CHECK(third->address != wanted);
    CHECK(third->address != first.address);

    // A request outside the range is ignored, not an error.
    const auto fourth = pool.offer(req(4, ipv4_address{10, 0, 0, 1}));
    REQUIRE(fourth);
}

TEST_CASE("a client identifier takes precedence over the MAC") {
    auto c = small_config();
    c.max_leases_per_mac = 0; // no per-MAC limit: identities alone decide
    auto pool = make(c);
    lease_request a{client_identity{mac_n(1), {0x01, 0xaa}}, std::nullopt, {}};
    lease_request b{client_identity{mac_n(1), {0x01, 0xbb}}, std::nullopt, {}};
    const auto la = grant(pool, a);
    const auto lb = grant(pool, b);
    CHECK(la.address != lb.address); // same MAC, two identities: two leases
    CHECK(pool.find(a.client)->address == la.address);
    CHECK(pool.held_by(mac_n(1)) == 2);
}

TEST_CASE("one MAC holds at most its limit of leases and offers, whatever client identifiers it invents") {
    auto pool = make(); // defaults: 1 lease and 2 offers per MAC
    const auto with_id = [](std::uint32_t mac, std::uint8_t id) {
        // Identifiers unique to the MAC: a client identifier alone names a client (RFC 2131 §4.2).
        return lease_request{client_identity{mac_n(mac), {0xff, static_cast<std::uint8_t>(mac), id}}, std::nullopt, {}};
    };
    // A second identity on the same NIC replaces the first lease rather than adding one.
    const auto first = grant(pool, with_id(1, 1));
    const auto second = grant(pool, with_id(1, 2));
    CHECK(pool.bound_count() == 1);
    CHECK_FALSE(pool.find(with_id(1, 1).client));
    CHECK(pool.find(with_id(1, 2).client)->address == second.address);
    if (first.address != second.address) CHECK_FALSE(pool.find(first.address));
    CHECK(pool.store().size() == 1); // the replaced lease left the store as well
    CHECK(pool.limit_evictions() == 1);

    // Offers: two at once; a third identity takes the place of the oldest offer.
    REQUIRE(pool.offer(with_id(2, 1)));
    REQUIRE(pool.offer(with_id(2, 2)));
    CHECK(pool.held_by(mac_n(2)) == 2);
    REQUIRE(pool.offer(with_id(2, 3)));
    CHECK(pool.held_by(mac_n(2)) == 2);
    CHECK_FALSE(pool.find(with_id(2, 1).client));

    // Two hundred identities from one NIC (the attack of a guest that wants the whole pool): the
    // ten-address pool keeps room for everyone else.
    for (std::uint8_t id = 10; id < 210; ++id) {
        auto r = with_id(3, id);
        if (auto offered = pool.offer(r)) (void)pool.commit(r, offered->address);
    }
    CHECK(pool.held_by(mac_n(3)) <= 3);
    for (std::uint32_t other = 4; other < 8; ++other) CHECK(pool.offer(req(other)));
}

TEST_CASE("reservations give the fixed address and refuse it to others") {
    auto c = small_config();
    const ipv4_address fixed{192, 168, 64, 5};
    const ipv4_address by_id{192, 168, 64, 6};
    c.reservations.push_back({mac_n(1), {}, fixed});
    c.reservations.push_back({std::nullopt, {0x01, 0x02, 0x03}, by_id});
    auto pool = make(c);
    CHECK(pool.free_count() == 8);

    CHECK(grant(pool, req(1, ipv4_address{192, 168, 64, 9})).address == fixed);
    lease_request by_client_id{client_identity{mac_n(9), {0x01, 0x02, 0x03}}, std::nullopt, {}};
    CHECK(grant(pool, by_client_id).address == by_id);

    CHECK(pool.commit(req(2), fixed).error() == lease_errc::address_in_use); // held by its owner
    const auto other = pool.offer(req(2, fixed));
    REQUIRE(other);
    CHECK(other->address != fixed);

    // Released, the reserved address stays out of the free pool.
    REQUIRE(!pool.release(client_identity{mac_n(1), {}}, fixed));
    CHECK(pool.free_count() == 7);
    CHECK(pool.commit(req(3), fixed).error() == lease_errc::reserved_for_other);
}

TEST_CASE("bad configurations are refused with a reason") {
    std::string why;
    auto c = small_config();
    c.reservations.push_back({mac_n(1), {}, ipv4_address{192, 168, 64, 200}});
    auto pool = test_pool::create(c, {}, {}, &why);
    CHECK(pool.error() == lease_errc::bad_config);
    CHECK(why.find("192.168.64.200") != std::string::npos);

    auto d = small_config();
    d.first = ipv4_address{192, 168, 65, 2};
    CHECK(test_pool::create(d, {}, {}, &why).error() == lease_errc::bad_config);
}

TEST_CASE("excluded addresses and the subnet's network and broadcast are never handed out") {
    auto c = small_config();
    c.first = ipv4_address{192, 168, 64, 0};
    c.last = ipv4_address{192, 168, 64, 255};
    c.excluded = {ipv4_address{192, 168, 64, 1}, ipv4_address{192, 168, 64, 100}};
    auto pool = make(c);
    CHECK(pool.free_count() == 252);
    CHECK(pool.commit(req(1), ipv4_address{192, 168, 64, 100}).error() == lease_errc::excluded_address);
    CHECK(pool.commit(req(1), ipv4_address{192, 168, 64, 0}).error() == lease_errc::excluded_address);
    CHECK(pool.commit(req(1), ipv4_address{192, 168, 65, 1}).error() == lease_errc::not_in_range);
    std::set<ipv4_address> seen;
    for (std::uint32_t n = 0; n < 252; ++n) seen.insert(grant(pool, req(n)).address);
    CHECK(seen.size() == 252);
    for (auto bad : {ipv4_address{192, 168, 64, 0}, ipv4_address{192, 168, 64, 1}, ipv4_address{192, 168, 64, 100},
                     ipv4_address{192, 168, 64, 255}})
        CHECK_FALSE(seen.contains(bad));
}

TEST_CASE("an exhausted pool says so") {
    auto pool = make();
    for (std::uint32_t n = 0; n < 10; ++n) grant(pool, req(n));
    CHECK(pool.free_count() == 0);
    CHECK(pool.offer(req(99)).error() == lease_errc::pool_exhausted);
    CHECK(pool.commit(req(99), ipv4_address{192, 168, 64, 2}).error() == lease_errc::address_in_use);
}

TEST_CASE("offers and leases expire by the clock and are reclaimed") {
    auto pool = make();
    const auto held = pool.offer(req(1));
    REQUIRE(held);
    CHECK(pool.free_count() == 9);
    pool.clock().t += seconds{29};
    CHECK(pool.reclaim() == 0);
    pool.clock().t += seconds{1};
    CHECK(pool.reclaim() == 1); // the offer hold ended
    CHECK(pool.free_count() == 10);
    CHECK_FALSE(pool.find(held->address));

    const auto bound = grant(pool, req(2));
    pool.clock().t += seconds{3599};
    REQUIRE(pool.renew(req(2), bound.address)); // renewal restarts the lease time
    pool.clock().t += seconds{3599};
    CHECK(pool.reclaim() == 0);
    CHECK(pool.find(bound.address));
    pool.clock().t += seconds{1};
    CHECK(pool.reclaim() == 1);
    CHECK_FALSE(pool.find(bound.address));
    CHECK(pool.store().size() == 0);
    CHECK(pool.renew(req(2), bound.address).error() == lease_errc::no_lease);
    // The expired client still gets its old address back.
    CHECK(pool.offer(req(2))->address == bound.address);
}

TEST_CASE("operations reclaim lazily with an explicit now") {
    auto pool = make();
    const auto t0 = pool.now();
    for (std::uint32_t n = 0; n < 10; ++n) REQUIRE(pool.offer(req(n), t0));
    CHECK(pool.offer(req(50), t0 + seconds{29}).error() == lease_errc::pool_exhausted);
    CHECK(pool.offer(req(50), t0 + seconds{30})); // the holds ended: no reclaim() call needed
}

TEST_CASE("decline quarantines the address") {
    auto pool = make();
    const auto l = grant(pool, req(1));
    REQUIRE(!pool.decline(client_identity{mac_n(1), {}}, l.address));
    CHECK(pool.store().size() == 0);
    CHECK(pool.commit(req(2), l.address).error() == lease_errc::address_quarantined);
    // The declining client is not steered back to it.
    const auto next = pool.offer(req(1, l.address));
    REQUIRE(next);
    CHECK(next->address != l.address);
    pool.clock().t += seconds{600};
    CHECK(pool.commit(req(2), l.address));
}

TEST_CASE("an address a host uses without a lease is kept out of the pool while it is in use") {
    auto pool = make();
    const ipv4_address squatted{192, 168, 64, 2}; // the first free address: what a newcomer would get
    const mac_address squatter = mac_n(7);
    REQUIRE(!pool.mark_in_use(squatted, squatter));
    CHECK(pool.free_count() == 9);
    const auto newcomer = pool.offer(req(1, squatted)); // even when asked for by name
    REQUIRE(newcomer);
    CHECK(newcomer->address != squatted);
    CHECK(pool.commit(req(2), squatted).error() == lease_errc::address_quarantined);

    // Seen again before the quarantine ends: extended.
    pool.clock().t += seconds{500};
    REQUIRE(!pool.mark_in_use(squatted, squatter));
    pool.clock().t += seconds{500};
    CHECK(pool.commit(req(2), squatted).error() == lease_errc::address_quarantined);
    // Silent for a whole quarantine: back in the pool.
    pool.clock().t += seconds{100};
    CHECK(pool.commit(req(2), squatted));

    // Leased, reserved, excluded and foreign addresses are not taken from their holders.
    CHECK(pool.mark_in_use(squatted, squatter) == lease_errc::address_in_use);
    const auto offered = pool.offer(req(3)); // (the newcomer's offer has lapsed by now)
    REQUIRE(offered);
    CHECK(pool.mark_in_use(offered->address, squatter) == lease_errc::address_in_use);
    CHECK(pool.mark_in_use(ipv4_address{192, 168, 64, 200}, squatter) == lease_errc::not_in_range);
    auto c = small_config();
    c.reservations.push_back({mac_n(9), {}, ipv4_address{192, 168, 64, 5}});
    c.excluded.push_back(ipv4_address{192, 168, 64, 6});
    auto configured = make(c);
    CHECK(configured.mark_in_use(ipv4_address{192, 168, 64, 5}, squatter) == lease_errc::reserved_for_other);
    CHECK(configured.mark_in_use(ipv4_address{192, 168, 64, 6}, squatter) == lease_errc::excluded_address);
}

TEST_CASE("the host seen using an address may still lease it, as after a restart that forgot its lease") {
    auto pool = make();
    const ipv4_address used{192, 168, 64, 4};
    REQUIRE(!pool.mark_in_use(used, mac_n(7)));
    CHECK(pool.commit(req(8, used), used).error() == lease_errc::address_quarantined);
    // Its user asks for it (INIT-REBOOT after the daemon lost its memory store): granted, and the
    // address is an ordinary lease from then on.
    const auto granted = pool.commit(req(7, used), used);
    REQUIRE(granted);
    CHECK(granted->address == used);
    REQUIRE(!pool.release(client_identity{mac_n(7), {}}, used));
    CHECK(pool.free_count() == 10);
    CHECK(pool.commit(req(8, used), used)); // free for anyone after release
    // A DECLINEd address is quarantined for everyone, even a host seen using it before.
    REQUIRE(!pool.decline(client_identity{mac_n(8), {}}, used));
    CHECK(pool.commit(req(7, used), used).error() == lease_errc::address_quarantined);
}

TEST_CASE("release frees the address and only the holder may release") {
    auto pool = make();
    const auto l = grant(pool, req(1));
    CHECK(pool.release(client_identity{mac_n(2), {}}, l.address) == lease_errc::no_lease);
    CHECK(pool.release(client_identity{mac_n(1), {}}, ipv4_address{192, 168, 64, 3}) == lease_errc::no_lease);
    CHECK(!pool.release(client_identity{mac_n(1), {}}, l.address));
    CHECK(pool.bound_count() == 0);
    CHECK(pool.free_count() == 10);
    CHECK(pool.store().size() == 0);
    CHECK(pool.commit(req(2), l.address)); // free for anyone now
}

TEST_CASE("commit of another address moves the client") {
    auto pool = make();
    const auto l = grant(pool, req(1));
    const ipv4_address other{192, 168, 64, 10};
    REQUIRE(pool.commit(req(1), other));
    CHECK_FALSE(pool.find(l.address));
    CHECK(pool.find(client_identity{mac_n(1), {}})->address == other);
    CHECK(pool.bound_count() == 1);
    CHECK(pool.store().size() == 1);
    CHECK(pool.free_count() == 9);
}

TEST_CASE("a /16 hands out all 65534 addresses exactly once") {
    lease_pool_config c;
    c.subnet = ipv4_prefix{ipv4_address{10, 7, 0, 0}, 16};
    c.first = ipv4_address{10, 7, 0, 0};
    c.last = ipv4_address{10, 7, 255, 255};
    auto pool = make(c);
    REQUIRE(pool.free_count() == 65534);
    std::vector<bool> seen(65536, false);
    const auto t = pool.now();
    for (std::uint32_t n = 0; n < 65534; ++n) {
        const auto r = req(n);
        auto offered = pool.offer(r, t);
        REQUIRE(offered);
        auto acked = pool.commit(r, offered->address, t);
        REQUIRE(acked);
        const auto low = acked->address.to_u32() & 0xffffu;
        REQUIRE_FALSE(seen[low]);
        seen[low] = true;
    }
    CHECK(pool.free_count() == 0);
    CHECK(pool.bound_count() == 65534);
    CHECK_FALSE(seen[0]);
    CHECK_FALSE(seen[0xffff]);
    CHECK(pool.offer(req(70000), t).error() == lease_errc::pool_exhausted);
    // All expire at once.
    CHECK(pool.reclaim(t + seconds{3600}) == 65534);
    CHECK(pool.free_count() == 65534);
}

TEST_CASE("leases in the store are taken back on create") {
    memory_lease_store store;
    const lease stored{mac_n(1), {}, ipv4_address{192, 168, 64, 4}, manual_clock{}.t + seconds{100}, "vm", true};
    REQUIRE(!store.put(stored));
    auto pool = test_pool::create(small_config(), std::move(store), manual_clock{});
    REQUIRE(pool);
    CHECK(pool->find(stored.address) == stored);
    CHECK(pool->offer(req(1))->address == stored.address);
    CHECK(pool->free_count() == 9);

    memory_lease_store outside;
    REQUIRE(!outside.put(lease{mac_n(1), {}, ipv4_address{10, 0, 0, 1}, {}, {}, true}));
    std::string why;
    CHECK(test_pool::create(small_config(), std::move(outside), manual_clock{}, &why).error() ==
          lease_errc::lease_conflict);
    CHECK(why.find("10.0.0.1") != std::string::npos);
}

TEST_CASE("lease_errc has its own category and messages") {
    const std::error_code e = lease_errc::pool_exhausted;
    CHECK(std::string{e.category().name()} == "ankanet.dhcp.lease");
    CHECK(e.message().find("no free address") != std::string::npos);
    CHECK(e == lease_errc::pool_exhausted);
}

TEST_CASE("two stored leases for one client keep the later one") {
    // What a crash between a move's put() and erase() leaves behind.
    memory_lease_store store;
    const auto t = manual_clock{}.t;
    REQUIRE(!store.put(lease{mac_n(1), {}, ipv4_address{192, 168, 64, 4}, t + seconds{100}, "old", true}));
    REQUIRE(!store.put(lease{mac_n(1), {}, ipv4_address{192, 168, 64, 8}, t + seconds{3600}, "new", true}));
    auto pool = test_pool::create(small_config(), std::move(store), manual_clock{});
    REQUIRE(pool);
    CHECK(pool->find(client_identity{mac_n(1), {}})->address == ipv4_address{192, 168, 64, 8});
    CHECK_FALSE(pool->find(ipv4_address{192, 168, 64, 4}));
    CHECK(pool->store().size() == 1);
    CHECK(pool->bound_count() == 1);
    CHECK(pool->free_count() == 9);
}
