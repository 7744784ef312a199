// End to end: several namespace guests on one ankanetd network — the learning switch between them,
// the shared DHCP pool, custom and duplicate MACs, anti-spoofing, isolation, and the gateway's
// referee for address claims. Every guest is a network namespace with its own kernel stack, getting
// its address from ankanetd's DHCP server with busybox udhcpc. Traffic stays inside the namespaces.
#include "../support/ankanetd_process.hpp"
#include "../support/dhcp_clients.hpp"
#include "../support/netns.hpp"
#include "../support/require_guests.hpp"
#include "../support/skip.hpp"
#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <signal.h>

#include <array>
#include <chrono>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using ankanet::test::daemon_process;
using ankanet::test::dhcp_client_kind;
using ankanet::test::run_in;
using ankanet::test::scoped_netns;
using ankanet::test::wait_for_interface;

/// Three guests, each a namespace with eth0 attached to one daemon.
struct three_guests {
    std::array<scoped_netns, 3> ns;
    std::array<std::string, 3> address;

    std::vector<std::string> daemon_args(std::vector<std::string> extra) const {
        for (std::size_t i = 0; i < ns.size(); ++i) {
            extra.push_back("--netns");
            extra.push_back(ns[i].path());
        }
        return extra;
    }

    /// Each guest asks for a lease with udhcpc; returns false (with the reason in `why`) if one fails.
    bool lease_all(std::string& why) {
        for (std::size_t i = 0; i < ns.size(); ++i) {
            if (!wait_for_interface(ns[i], "eth0")) {
                why = "eth0 never appeared in guest " + std::to_string(i);
                return false;
            }
            run_in(ns[i], "ip link set lo up");
            const auto got = ankanet::test::obtain_lease(ns[i], "eth0", dhcp_client_kind::udhcpc, 20s);
            if (!got.lease) {
                why = "guest " + std::to_string(i) + " got no lease: " + got.output;
                return false;
            }
            address[i] = got.lease->address;
        }
        return true;
    }
};

bool pings(const scoped_netns& from, const std::string& to, int count = 2) {
    return run_in(from, "ping -c " + std::to_string(count) + " -i 0.2 -W 2 " + to, 15s).status == 0;
}

} // namespace

TEST_CASE("ankanetd L2: three guests on one shared network get distinct leases and reach each other by ping and TCP") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    three_guests guests;
    daemon_process daemon{guests.daemon_args({"--mode", "shared"})};
    std::string why;
    INFO("--- daemon log ---\n" << daemon.log());
    REQUIRE(guests.lease_all(why));

    const std::set<std::string> distinct(guests.address.begin(), guests.address.end());
    CHECK(distinct.size() == 3);
    for (const auto& a : guests.address) CHECK(a.starts_with("192.168.64."));

    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(pings(guests.ns[i], "192.168.64.1"));
        for (std::size_t j = 0; j < 3; ++j) {
            if (i == j) continue;
            INFO("guest " << i << " (" << guests.address[i] << ") to guest " << j << " (" << guests.address[j] << ")");
            CHECK(pings(guests.ns[i], guests.address[j]));
        }
    }

    // TCP from guest 0 to guest 2: busybox nc listens, its peer sends a line and closes.
    const std::string message = "hello from guest 0 over ankanet";
    auto listener = std::async(std::launch::async, [&] { return run_in(guests.ns[2], "busybox nc -l -p 5001 -w 10", 15s); });
    bool sent = false;
    for (int attempt = 0; attempt < 50 && !sent; ++attempt) {
        std::this_thread::sleep_for(100ms); // until the listener is up
        sent = run_in(guests.ns[0], "echo '" + message + "' | busybox nc -w 5 " + guests.address[2] + " 5001", 10s).status == 0;
    }
    const auto received = listener.get();
    CHECK(sent);
    CHECK(received.output.find(message) != std::string::npos);

    CHECK(daemon.stop(SIGTERM) == 0);
    const auto log = daemon.log();
    INFO(log);
    CHECK(log.find("3 acks") != std::string::npos);
}

TEST_CASE("ankanetd L2: with --isolate guests reach the gateway and DHCP but not each other") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    three_guests guests;
    daemon_process daemon{guests.daemon_args({"--mode", "shared", "--isolate"})};
    std::string why;
    INFO("--- daemon log ---\n" << daemon.log());
    REQUIRE(guests.lease_all(why));
    const std::set<std::string> distinct(guests.address.begin(), guests.address.end());
    CHECK(distinct.size() == 3);

    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(pings(guests.ns[i], "192.168.64.1"));
        const std::size_t peer = (i + 1) % 3;
        INFO("guest " << i << " to guest " << peer);
        CHECK_FALSE(pings(guests.ns[i], guests.address[peer], 1));
    }
    // Not even a static neighbour entry helps: unicast between VMs is dropped by the switch.
    REQUIRE(run_in(guests.ns[0], "ip neigh replace " + guests.address[1] + " lladdr $(ip netns exec " + guests.ns[1].name() +
                                     " cat /sys/class/net/eth0/address) dev eth0").status == 0);
    CHECK_FALSE(pings(guests.ns[0], guests.address[1], 1));
    CHECK(daemon.stop() == 0);
}

TEST_CASE("ankanetd L2: a custom MAC is the guest's, and a duplicate custom MAC is refused at attach") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    scoped_netns first;
    scoped_netns second;
    daemon_process daemon{{"--netns", first.path() + ",mac=52:54:00:0a:0b:0c", "--netns", second.path() + ",mac=52:54:00:0a:0b:0c"}};
    CHECK(daemon.stop(0 /* wait for it to exit */, 10s) == 1);
    const auto log = daemon.log();
    INFO(log);
    CHECK(log.find("--netns " + second.path() + ": MAC address 52:54:00:0a:0b:0c requested by VM 'netns:" + second.path() +
                   ":eth0' is already in use by VM 'netns:" + first.path() + ":eth0'") != std::string::npos);

    daemon_process alone{{"--netns", first.path() + ",mac=52:54:00:0a:0b:0c", "--netns", second.path()}};
    REQUIRE(wait_for_interface(first, "eth0"));
    REQUIRE(wait_for_interface(second, "eth0"));
    CHECK(run_in(first, "cat /sys/class/net/eth0/address").output.find("52:54:00:0a:0b:0c") != std::string::npos);
    // Without mac= a guest gets a random, locally administered unicast MAC: second hex digit 2, 6, a or e.
    const auto drawn = run_in(second, "cat /sys/class/net/eth0/address").output;
    INFO(drawn);
    REQUIRE(drawn.size() >= 17);
    CHECK(std::string{"26ae"}.find(drawn[1]) != std::string::npos);
    CHECK(alone.stop() == 0);
}

TEST_CASE("ankanetd L2: a guest that changes its MAC to spoof another is cut off, and the others are not") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    three_guests guests;
    daemon_process daemon{guests.daemon_args({"--mode", "host"})};
    std::string why;
    INFO("--- daemon log ---\n" << daemon.log());
    REQUIRE(guests.lease_all(why));
    REQUIRE(pings(guests.ns[0], guests.address[1]));

    // Guest 2 takes guest 1's MAC: the switch drops everything it sends from now on.
    const auto victim_mac = run_in(guests.ns[1], "cat /sys/class/net/eth0/address").output.substr(0, 17);
    REQUIRE(run_in(guests.ns[2], "ip link set eth0 address " + victim_mac).status == 0);
    CHECK_FALSE(pings(guests.ns[2], "192.168.128.1", 1));
    CHECK(pings(guests.ns[0], guests.address[1]));
    CHECK(daemon.stop() == 0);
    CHECK(daemon.log().find("frames with another VM's source MAC were dropped") != std::string::npos);
}

TEST_CASE("ankanetd L2: a static guest claiming a leased address is refereed and the lease holder keeps it") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    scoped_netns holder;
    scoped_netns squatter;
    scoped_netns observer;
    daemon_process daemon{{"--netns", holder.path(), "--netns", squatter.path(), "--netns", observer.path()}};
    INFO("--- daemon log ---\n" << daemon.log());
    for (const auto* ns : {&holder, &squatter, &observer}) REQUIRE(wait_for_interface(*ns, "eth0"));
    const auto leased = ankanet::test::obtain_lease(holder, "eth0", dhcp_client_kind::udhcpc, 20s);
    REQUIRE(leased.lease);
    const auto address = leased.lease->address;
    const auto observed = ankanet::test::obtain_lease(observer, "eth0", dhcp_client_kind::udhcpc, 20s);
    REQUIRE(observed.lease);

    // The squatter configures the holder's address by hand and announces it (gratuitous ARP).
    REQUIRE(run_in(squatter, "ip link set lo up && ip link set eth0 up && ip addr add " + address + "/24 dev eth0").status == 0);
    run_in(squatter, "busybox arping -U -c 2 -w 2 -I eth0 " + address, 10s);
    // The observer still reaches the holder, not the squatter.
    const auto holder_mac = run_in(holder, "cat /sys/class/net/eth0/address").output.substr(0, 17);
    REQUIRE(pings(observer, address));
    const auto neigh = run_in(observer, "ip neigh show " + address).output;
    INFO(neigh);
    CHECK(neigh.find(holder_mac) != std::string::npos);

    CHECK(daemon.stop() == 0);
    const auto log = daemon.log();
    INFO(log);
    CHECK(log.find("claims " + address + ", which is leased to " + holder_mac + "; ARP dropped") != std::string::npos);
}

TEST_CASE("ankanetd L2: a VM named by uuid= gets the same MAC after a restart, and another secret or VM another MAC") {
    ANKANET_REQUIRE_NETNS();
    scoped_netns vm;
    ankanet::test::temp_dir files;
    const auto secret = (files.path / "mac-secret").string();
    const auto other_secret = (files.path / "other-secret").string();
    auto mac_with = [&](const std::string& secret_file, const std::string& uuid) {
        daemon_process daemon{{"--mac-secret", secret_file, "--netns", vm.path() + ",uuid=" + uuid}};
        INFO("--- daemon log ---\n" << daemon.log());
        REQUIRE(wait_for_interface(vm, "eth0"));
        const auto mac = run_in(vm, "cat /sys/class/net/eth0/address").output.substr(0, 17);
        CHECK(daemon.stop() == 0);
        // The TAP goes with the daemon; the next one makes it again.
        for (int attempt = 0; attempt < 100 && run_in(vm, "ip link show eth0").status == 0; ++attempt) std::this_thread::sleep_for(50ms);
        return mac;
    };
    const std::string uuid = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
    const auto first = mac_with(secret, uuid);
    // The secret file was created, 32 hex digits, mode 0600.
    REQUIRE(std::filesystem::exists(secret));
    CHECK((std::filesystem::status(secret).permissions() & std::filesystem::perms::all) ==
          (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
    INFO("first " << first);
    CHECK(std::string{"26ae"}.find(first[1]) != std::string::npos); // locally administered unicast
    CHECK(mac_with(secret, uuid) == first);
    CHECK(mac_with(secret, "6F9619FF-8B86-D011-B42D-00C04FC964FF") == first); // case does not matter
    CHECK(mac_with(secret, "00000000-0000-0000-0000-000000000001") != first);
    CHECK(mac_with(other_secret, uuid) != first);
}

TEST_CASE("ankanetd L2: an address a static guest announces is not offered to DHCP guests while it is in use") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    scoped_netns static_guest;
    scoped_netns dhcp_guest;
    daemon_process daemon{{"--netns", static_guest.path(), "--netns", dhcp_guest.path()}};
    INFO("--- daemon log ---\n" << daemon.log());
    REQUIRE(wait_for_interface(static_guest, "eth0"));
    REQUIRE(wait_for_interface(dhcp_guest, "eth0"));
    // 192.168.64.2 is the address the pool would hand the first DHCP guest.
    REQUIRE(run_in(static_guest, "ip link set lo up && ip link set eth0 up && ip addr add 192.168.64.2/24 dev eth0").status == 0);
    run_in(static_guest, "busybox arping -U -c 2 -w 2 -I eth0 192.168.64.2", 10s);

    const auto got = ankanet::test::obtain_lease(dhcp_guest, "eth0", dhcp_client_kind::udhcpc, 20s);
    REQUIRE(got.lease);
    CHECK(got.lease->address != "192.168.64.2");
    CHECK(got.lease->address.starts_with("192.168.64."));
    // Both work side by side.
    CHECK(pings(dhcp_guest, "192.168.64.2"));
    CHECK(daemon.stop() == 0);
    const auto log = daemon.log();
    INFO(log);
    CHECK(log.find(" uses 192.168.64.2 without a lease; kept out of the DHCP pool while in use") != std::string::npos);
}
