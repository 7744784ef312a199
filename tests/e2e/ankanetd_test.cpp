// End to end: the real ankanetd binary serving guests that are network namespaces with their own
// kernel stacks. Needs root, /dev/net/tun, ip and ping; skips elsewhere, fails in CI without them.
#include "../support/ankanetd_process.hpp"
#include "../support/netns.hpp"
#include "../support/require_guests.hpp"
#include "../support/skip.hpp"
#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

using namespace std::chrono_literals;
using ankanet::test::daemon_process;
using ankanet::test::run_command;
using ankanet::test::run_in;
using ankanet::test::scoped_netns;
using ankanet::test::wait_for_interface;

/// What a guest's network setup does: link up, a static address (DHCP arrives with its issue).
void configure_guest(const scoped_netns& ns, const std::string& address) {
    const auto result = run_in(ns, "ip link set lo up && ip link set eth0 up && ip addr add " + address + " dev eth0");
    REQUIRE(result.status == 0);
}

} // namespace

TEST_CASE("ankanetd: a namespace guest pings the gateway, and SIGTERM stops the daemon cleanly") {
    ANKANET_REQUIRE_NETNS();
    scoped_netns guest;
    const auto pcap = std::filesystem::temp_directory_path() / ("ankanetd-e2e-" + std::to_string(::getpid()) + ".pcap");
    daemon_process daemon{{"--mode", "shared", "--netns", guest.path() + ",mac=52:54:00:00:00:02", "--pcap", pcap.string()}};
    REQUIRE(wait_for_interface(guest, "eth0"));

    // The TAP carries the MAC and MTU the daemon was told.
    const auto link = run_in(guest, "ip -o link show eth0");
    CHECK(link.output.find("52:54:00:00:00:02") != std::string::npos);
    CHECK(link.output.find("mtu 1500") != std::string::npos);

    configure_guest(guest, "192.168.64.2/24");
    const auto ping = run_in(guest, "ping -c 3 -i 0.2 -W 2 192.168.64.1", 20s);
    INFO(ping.output << "\n--- daemon log ---\n" << daemon.log());
    CHECK(ping.status == 0);
    CHECK(ping.output.find("3 received") != std::string::npos);
    // The guest's kernel learned the gateway's MAC from our ARP reply.
    const auto neighbours = run_in(guest, "ip neigh show 192.168.64.1");
    CHECK(neighbours.output.find("02:61:6e:6b:61:01") != std::string::npos);

    CHECK(daemon.stop(SIGTERM) == 0);
    const auto log = daemon.log();
    INFO(log);
    CHECK(log.find("SIGTERM: shutting down") != std::string::npos);
    CHECK(log.find("3 echo replies") != std::string::npos);

    // Everything went to the pcap file, which tcpdump reads.
    const auto decoded = run_command({"tcpdump", "-nn", "-r", pcap.string()});
    INFO(decoded.output);
    CHECK(decoded.status == 0);
    CHECK(decoded.output.find("Request who-has 192.168.64.1 tell 192.168.64.2") != std::string::npos);
    CHECK(decoded.output.find("192.168.64.1 > 192.168.64.2: ICMP echo reply") != std::string::npos);
    std::error_code ignored;
    std::filesystem::remove(pcap, ignored);
}

TEST_CASE("ankanetd: two namespace guests on one network reach each other in host mode, on its its subnet") {
    ANKANET_REQUIRE_NETNS();
    scoped_netns first;
    scoped_netns second;
    daemon_process daemon{{"--mode", "host", "--netns", first.path(), "--netns", second.path() + ",ifname=ens3"}};
    REQUIRE(wait_for_interface(first, "eth0"));
    REQUIRE(wait_for_interface(second, "ens3"));
    configure_guest(first, "192.168.128.2/24");
    REQUIRE(run_in(second, "ip link set ens3 up && ip addr add 192.168.128.3/24 dev ens3").status == 0);

    const auto to_gateway = run_in(first, "ping -c 1 -W 2 192.168.128.1", 10s);
    CHECK(to_gateway.status == 0);
    const auto to_peer = run_in(first, "ping -c 2 -i 0.2 -W 2 192.168.128.3", 10s);
    INFO(to_peer.output << "\n--- daemon log ---\n" << daemon.log());
    CHECK(to_peer.status == 0);
    CHECK(daemon.stop(SIGINT) == 0);
}

TEST_CASE("ankanetd: in disconnected mode the cable is unplugged") {
    ANKANET_REQUIRE_NETNS();
    scoped_netns guest;
    daemon_process daemon{{"--mode", "disconnected", "--netns", guest.path()}};
    REQUIRE(wait_for_interface(guest, "eth0"));
    configure_guest(guest, "192.168.64.2/24");
    const auto ping = run_in(guest, "ping -c 1 -W 1 192.168.64.1", 10s);
    CHECK(ping.status != 0);
    CHECK(daemon.stop() == 0);
    CHECK(daemon.log().find("0 to the gateway") != std::string::npos);
}

TEST_CASE("ankanetd: a namespace that does not exist is a clear error and exit status 1") {
    ANKANET_REQUIRE_NETNS();
    daemon_process daemon{{"--netns", "/run/netns/ankanet-test-no-such-namespace"}};
    const int status = daemon.stop(0 /* just wait */, 10s);
    CHECK(status == 1);
    CHECK(daemon.log().find("--netns /run/netns/ankanet-test-no-such-namespace: cannot create TAP eth0") != std::string::npos);
}

TEST_CASE("ankanetd: a corrupt lease file is a clear error naming file and line, exit status 1, and is left as it was") {
    const auto file = std::filesystem::temp_directory_path() / ("ankanetd-e2e-leases-" + std::to_string(::getpid()));
    const std::string content = "ankanet-leases 1\nnot a lease\n";
    {
        std::ofstream out{file};
        out << content;
    }
    daemon_process daemon{{"--leases", file.string()}};
    CHECK(daemon.stop(0 /* just wait */, 10s) == 1);
    const auto log = daemon.log();
    INFO(log);
    CHECK(log.find("cannot start the DHCP server: " + file.string() + ":2: ") != std::string::npos);
    CHECK(ankanet::test::read_text(file) == content);
    std::error_code ignored;
    std::filesystem::remove(file, ignored);
}
