// End to end: ankanetd's NAT with namespace guests that take their lease with udhcpc. Every flow
// goes to servers the test starts — on host loopback, reached through the gateway address, or on a
// "far" host of the test's own (a namespace behind a veth, 198.51.100.0/24) — and every daemon runs
// with an egress policy that allows loopback (and that far host) only.
#include "../support/ankanetd_process.hpp"
#include "../support/dhcp_clients.hpp"
#include "../support/nat_hosts.hpp"
#include "../support/netns.hpp"
#include "../support/require_guests.hpp"
#include "../support/skip.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using ankanet::test::background_process;
using ankanet::test::daemon_process;
using ankanet::test::far_host;
using ankanet::test::free_loopback_port;
using ankanet::test::run_in;
using ankanet::test::scoped_netns;
using ankanet::test::wait_for_interface;
using ankanet::test::wait_until_succeeds;

/// A guest with a lease from the daemon started with `args` (its --netns added here).
struct leased_guest {
    scoped_netns ns;
    std::string address;
};

void lease(leased_guest& guest, const daemon_process& daemon) {
    REQUIRE(wait_for_interface(guest.ns, "eth0"));
    const auto got = ankanet::test::obtain_lease(guest.ns, "eth0", ankanet::test::dhcp_client_kind::udhcpc);
    INFO(got.output << "\n--- daemon log ---\n" << daemon.log());
    REQUIRE(got.lease);
    guest.address = got.lease->address;
}

/// A UDP echo server on `address`:`port`, run by socat in the current namespace or in `ns`.
std::string udp_echo_command(const std::string& address, std::uint16_t port) {
    return "exec socat -T 10 UDP4-LISTEN:" + std::to_string(port) + ",bind=" + address + ",fork,reuseaddr EXEC:/bin/cat";
}

/// Sends `text` by UDP from the guest and prints the answer (socat waits up to 2 s for it).
std::string udp_exchange(const scoped_netns& guest, const std::string& to, std::uint16_t port, const std::string& text) {
    return run_in(guest, "printf '" + text + "' | timeout 10 socat -t 2 - UDP4:" + to + ":" + std::to_string(port) + " 2>&1", 15s).output;
}

} // namespace

TEST_CASE("ankanetd nat: a guest's UDP reaches a server on host loopback at the gateway address, and a closed port is refused") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    const auto port = free_loopback_port(SOCK_DGRAM);
    background_process server{udp_echo_command("127.0.0.1", port)};
    REQUIRE(wait_until_succeeds("ss -Hlun | grep -q 127.0.0.1:" + std::to_string(port)));

    leased_guest guest;
    daemon_process daemon{{"--egress", "127.0.0.0/8", "--netns", guest.ns.path()}};
    lease(guest, daemon);
    const auto answer = udp_exchange(guest.ns, "192.168.64.1", port, "hello-from-the-guest");
    INFO(answer << "\n--- daemon log ---\n" << daemon.log());
    CHECK(answer == "hello-from-the-guest");

    // A port nobody listens on: the host's ICMP port unreachable reaches the guest, whose socket
    // reports the refusal at once instead of waiting out its timeout.
    const auto closed = free_loopback_port(SOCK_DGRAM);
    const auto refused =
        run_in(guest.ns, "printf x | timeout 10 socat -t 2 - UDP4:192.168.64.1:" + std::to_string(closed) + " 2>&1", 15s);
    INFO(refused.output);
    CHECK(refused.output.find("Connection refused") != std::string::npos);

    CHECK(daemon.stop(SIGTERM) == 0);
    const auto log = daemon.log();
    INFO(log);
    CHECK(log.find("NAT: egress 127.0.0.0/8; the gateway stands for the host's 127.0.0.1") != std::string::npos);
    CHECK(log.find("UDP 2 flows") != std::string::npos);
}

TEST_CASE("ankanetd nat: shared mode reaches a far host the egress policy allows (ping and UDP), host mode does not") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    far_host far;
    background_process server{"exec ip netns exec " + far.ns().name() + " sh -c '" + udp_echo_command(far.address(), 7) + "'"};
    REQUIRE(wait_until_succeeds("ip netns exec " + far.ns().name() + " ss -Hlun | grep -q " + far.address() + ":7"));

    SECTION("shared, with the far host allowed") {
        leased_guest guest;
        daemon_process daemon{{"--egress", "127.0.0.0/8," + far.prefix(), "--netns", guest.ns.path()}};
        lease(guest, daemon);
        const auto ping = run_in(guest.ns, "ping -c 3 -i 0.2 -W 2 " + far.address(), 20s);
        INFO(ping.output << "\n--- daemon log ---\n" << daemon.log());
        CHECK(ping.output.find("3 received") != std::string::npos);
        CHECK(udp_exchange(guest.ns, far.address(), 7, "far-away") == "far-away");
        // The far host sees the host's own address on its veth, not the guest's: it was NATed.
        CHECK(daemon.stop(SIGTERM) == 0);
        CHECK(daemon.log().find("ping 3 out 3 in") != std::string::npos);
    }
    SECTION("shared, with only loopback allowed: refused as administratively prohibited, and logged") {
        leased_guest guest;
        daemon_process daemon{{"--egress", "127.0.0.0/8", "--netns", guest.ns.path()}};
        lease(guest, daemon);
        const auto ping = run_in(guest.ns, "ping -c 2 -i 0.2 -W 2 " + far.address() + " 2>&1", 20s);
        INFO(ping.output << "\n--- daemon log ---\n" << daemon.log());
        CHECK(ping.status != 0);
        CHECK(ping.output.find("Packet filtered") != std::string::npos);
        CHECK(udp_exchange(guest.ns, far.address(), 7, "far-away") != "far-away");
        CHECK(daemon.log().find("flow to " + far.address() + ":0 refused: egress policy") != std::string::npos);
    }
    SECTION("host mode: the host's loopback only") {
        const auto port = free_loopback_port(SOCK_DGRAM);
        background_process local{udp_echo_command("127.0.0.1", port)};
        REQUIRE(wait_until_succeeds("ss -Hlun | grep -q 127.0.0.1:" + std::to_string(port)));
        leased_guest guest;
        daemon_process daemon{{"--mode", "host", "--netns", guest.ns.path()}};
        lease(guest, daemon);
        CHECK(udp_exchange(guest.ns, "192.168.128.1", port, "to-the-host") == "to-the-host");
        const auto ping = run_in(guest.ns, "ping -c 2 -i 0.2 -W 2 " + far.address() + " 2>&1", 20s);
        INFO(ping.output << "\n--- daemon log ---\n" << daemon.log());
        CHECK(ping.status != 0);
        CHECK(udp_exchange(guest.ns, far.address(), 7, "far-away") != "far-away");
        CHECK(daemon.log().find("refused: egress policy") != std::string::npos);
    }
}

TEST_CASE("ankanetd nat: --no-host-loopback keeps guests away from the host's loopback") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    const auto port = free_loopback_port(SOCK_DGRAM);
    background_process server{udp_echo_command("127.0.0.1", port)};
    REQUIRE(wait_until_succeeds("ss -Hlun | grep -q 127.0.0.1:" + std::to_string(port)));
    leased_guest guest;
    daemon_process daemon{{"--egress", "127.0.0.0/8", "--no-host-loopback", "--netns", guest.ns.path()}};
    lease(guest, daemon);
    const auto answer = udp_exchange(guest.ns, "192.168.64.1", port, "anyone");
    INFO(answer << "\n--- daemon log ---\n" << daemon.log());
    CHECK(answer.find("anyone") == std::string::npos);
    // The gateway itself still answers pings.
    CHECK(run_in(guest.ns, "ping -c 1 -W 2 192.168.64.1", 10s).status == 0);
}
