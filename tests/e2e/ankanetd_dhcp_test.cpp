// End to end: ankanetd's DHCP server against the real clients (busybox udhcpc, ISC dhclient,
// dhcpcd), each in a network namespace whose TAP the daemon created. Needs root, /dev/net/tun, ip,
// ping and the three clients; skips elsewhere, fails in CI without them.
//
// The guests of one test run their clients concurrently (each client in its own namespace, the
// assertions afterwards on this thread), so a test costs about one dhcpcd run (its ARP probe of
// the offered address takes about five seconds) rather than three.
#include "../support/ankanetd_process.hpp"
#include "../support/dhcp_clients.hpp"
#include "../support/netns.hpp"
#include "../support/require_guests.hpp"
#include "../support/skip.hpp"
#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using ankanet::test::daemon_process;
using ankanet::test::dhcp_client_kind;
using ankanet::test::dhcp_client_options;
using ankanet::test::dhcp_client_result;
using ankanet::test::obtain_lease;
using ankanet::test::run_in;
using ankanet::test::running_dhcp_client;
using ankanet::test::scoped_netns;
using ankanet::test::temp_dir;
using ankanet::test::wait_for_interface;

/// "192.168.64.7" -> its 32-bit value; nullopt when it is not a dotted quad.
std::optional<std::uint32_t> parse_ipv4(const std::string& text) {
    std::uint32_t value = 0;
    int octets = 0;
    std::size_t at = 0;
    while (octets < 4) {
        std::size_t used = 0;
        unsigned long octet = 0;
        try {
            if (at >= text.size() || text[at] < '0' || text[at] > '9') return std::nullopt;
            octet = std::stoul(text.substr(at), &used);
        } catch (const std::exception&) {
            return std::nullopt;
        }
        if (octet > 255) return std::nullopt;
        value = (value << 8) | static_cast<std::uint32_t>(octet);
        at += used;
        if (++octets < 4) {
            if (at >= text.size() || text[at] != '.') return std::nullopt;
            ++at;
        }
    }
    if (at != text.size()) return std::nullopt;
    return value;
}

bool in_range(const std::string& address, const std::string& first, const std::string& last) {
    const auto value = parse_ipv4(address);
    return value && *value >= *parse_ipv4(first) && *value <= *parse_ipv4(last);
}

/// Guests, one namespace each, with fixed MACs; index i runs client `kinds[i]`.
struct guest {
    dhcp_client_kind kind;
    std::string mac;
    scoped_netns ns;
    temp_dir state;  ///< kept across runs: dhclient's and dhcpcd's lease files, as on a real machine

    guest(dhcp_client_kind k, std::string m) : kind(k), mac(std::move(m)) {}
    std::string netns_argument() const { return ns.path() + ",mac=" + mac; }
};

/// One guest per client kind, MACs 52:54:00:00:<tag>:01..03.
std::vector<std::unique_ptr<guest>> one_guest_per_client(const std::string& tag) {
    std::vector<std::unique_ptr<guest>> guests;
    int n = 0;
    for (const auto kind : ankanet::test::all_dhcp_clients) {
        guests.push_back(std::make_unique<guest>(kind, "52:54:00:00:" + tag + ":0" + std::to_string(++n)));
    }
    return guests;
}

std::vector<std::string> daemon_arguments(std::vector<std::string> args, const std::vector<std::unique_ptr<guest>>& guests) {
    for (const auto& g : guests) {
        args.push_back("--netns");
        args.push_back(g->netns_argument());
    }
    return args;
}

/// Waits (bounded) until the daemon has created every guest's TAP.
bool wait_for_guests(const std::vector<std::unique_ptr<guest>>& guests) {
    for (const auto& g : guests) {
        if (!wait_for_interface(g->ns, "eth0")) return false;
    }
    return true;
}

/// Waits (bounded) until a stopped daemon's TAP has left the namespace, so a restarted daemon can
/// create it again.
bool wait_for_interface_gone(const scoped_netns& ns, const std::string& ifname) {
    for (int attempt = 0; attempt < 200; ++attempt) {
        if (run_in(ns, "ip link show " + ifname).status != 0) return true;
        std::this_thread::sleep_for(50ms);
    }
    return false;
}

/// Every guest runs its client once, all at the same time; results in guest order. dhcpcd probes
/// the offered address by ARP (RFC 5227, about five seconds) only with `arp_probe`: the first test
/// has it, the others, which are about something else, save the time.
std::vector<dhcp_client_result> obtain_leases(const std::vector<std::unique_ptr<guest>>& guests, bool arp_probe = false) {
    std::vector<std::future<dhcp_client_result>> running;
    for (const auto& g : guests) {
        running.push_back(std::async(std::launch::async, [&g, arp_probe] {
            dhcp_client_options options;
            options.arp_probe = arp_probe;
            options.limit = 30s;
            options.hostname = std::string{"guest-"} + std::string{name(g->kind)};
            options.state_dir = g->state.path;
            return obtain_lease(g->ns, "eth0", g->kind, options);
        }));
    }
    std::vector<dhcp_client_result> results;
    for (auto& r : running) results.push_back(r.get());
    return results;
}

/// What every lease from the gateway at `gateway` on a /24 must say, and that the address works:
/// the interface carries it and the guest pings the gateway. Returns the address ("" if none).
std::string check_lease(const guest& g, const dhcp_client_result& result, const std::string& gateway,
                        const std::string& first, const std::string& last, const daemon_process& daemon) {
    INFO("client " << name(g.kind) << " (MAC " << g.mac << "), exit status " << result.status << "\n--- client output ---\n"
                   << result.output << "\n--- daemon log ---\n" << daemon.log());
    CHECK(result.status == 0);
    REQUIRE(result.lease.has_value());
    const auto& lease = *result.lease;
    INFO("lease " << lease.address << "/" << lease.prefix_length << " event " << lease.event);
    CHECK(in_range(lease.address, first, last));
    CHECK(lease.prefix_length == 24);
    CHECK(lease.server_id == gateway);
    CHECK(lease.router == gateway);
    CHECK(lease.dns == std::vector<std::string>{gateway});
    CHECK(lease.lease_time > 0);

    const auto configured = run_in(g.ns, "ip -4 -o addr show dev eth0");
    INFO(configured.output);
    CHECK(configured.output.find(" inet " + lease.address + "/24 ") != std::string::npos);
    const auto ping = run_in(g.ns, "ping -c 1 -W 2 " + gateway, 10s);
    INFO(ping.output);
    CHECK(ping.status == 0);
    return lease.address;
}

} // namespace

TEST_CASE("ankanetd DHCP: udhcpc, dhclient and dhcpcd each get a working lease, in shared and in host mode") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    struct expectation {
        const char* mode;
        const char* gateway;
        const char* first;
        const char* last;
    };
    const auto expected = GENERATE(expectation{"shared", "192.168.64.1", "192.168.64.2", "192.168.64.254"},
                                   expectation{"host", "192.168.128.1", "192.168.128.2", "192.168.128.254"});
    INFO("mode " << expected.mode);
    auto guests = one_guest_per_client("11");
    daemon_process daemon{daemon_arguments({"--mode", expected.mode}, guests)};
    REQUIRE(wait_for_guests(guests));

    // As the clients run by default: dhcpcd probes the offered address by ARP, and the gateway
    // must not claim it.
    const auto results = obtain_leases(guests, true);
    std::set<std::string> addresses;
    for (std::size_t i = 0; i < guests.size(); ++i) {
        addresses.insert(check_lease(*guests[i], results[i], expected.gateway, expected.first, expected.last, daemon));
    }
    CHECK(addresses.size() == guests.size());  // three clients, three addresses
    CHECK(daemon.stop(SIGTERM) == 0);
}

TEST_CASE("ankanetd DHCP: running clients renew a short lease at T1 and keep their address") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    auto guests = one_guest_per_client("12");
    daemon_process daemon{daemon_arguments({"--mode", "shared", "--lease-time", "10"}, guests)};
    REQUIRE(wait_for_guests(guests));

    std::vector<std::unique_ptr<running_dhcp_client>> clients;
    for (const auto& g : guests) {
        dhcp_client_options options;
        options.state_dir = g->state.path;
        options.arp_probe = false;
        clients.push_back(std::make_unique<running_dhcp_client>(g->ns, "eth0", g->kind, options));
    }
    std::vector<ankanet::test::dhcp_lease_info> bound;
    for (const auto& client : clients) {
        const auto lease = client->wait_for_lease(30s);
        INFO("client " << name(client->kind()) << "\n--- client log ---\n" << client->log() << "\n--- daemon log ---\n" << daemon.log());
        REQUIRE(lease.has_value());
        CHECK(lease->lease_time == 10);
        bound.push_back(*lease);
    }
    // T1 is half the lease: 5 s. dhcpcd raises leases under 20 s to 20 s (so T1 is 10 s). The wait
    // is generous; it ends as soon as each client reports its renewal.
    for (std::size_t i = 0; i < clients.size(); ++i) {
        const auto& client = *clients[i];
        const auto renewed = client.wait_for("renew", 40s);
        INFO("client " << name(client.kind()) << "\n--- client log ---\n" << client.log() << "\n--- daemon log ---\n" << daemon.log());
        REQUIRE(renewed.has_value());
        CHECK(renewed->address == bound[i].address);
        CHECK(renewed->server_id == "192.168.64.1");
        CHECK(renewed->lease_time == 10);
        const auto configured = run_in(guests[i]->ns, "ip -4 -o addr show dev eth0");
        CHECK(configured.output.find(" inet " + bound[i].address + "/24 ") != std::string::npos);
    }
    clients.clear();
    CHECK(daemon.stop(SIGTERM) == 0);
}

TEST_CASE("ankanetd DHCP: a reserved MAC gets its reserved address, from every client") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    std::vector<std::unique_ptr<guest>> guests;
    guests.push_back(std::make_unique<guest>(dhcp_client_kind::udhcpc, "52:54:00:aa:bb:cc"));
    guests.push_back(std::make_unique<guest>(dhcp_client_kind::dhclient, "52:54:00:aa:bb:cd"));
    guests.push_back(std::make_unique<guest>(dhcp_client_kind::dhcpcd, "52:54:00:aa:bb:ce"));
    const std::array<std::string, 3> reserved{"192.168.64.77", "192.168.64.200", "192.168.64.3"};
    daemon_process daemon{daemon_arguments({"--mode", "shared", "--reserve", "52:54:00:aa:bb:cc=192.168.64.77", "--reserve",
                                            "52:54:00:aa:bb:cd=192.168.64.200", "--reserve", "52:54:00:aa:bb:ce=192.168.64.3"},
                                           guests)};
    REQUIRE(wait_for_guests(guests));
    const auto results = obtain_leases(guests);
    for (std::size_t i = 0; i < guests.size(); ++i) {
        CHECK(check_lease(*guests[i], results[i], "192.168.64.1", "192.168.64.2", "192.168.64.254", daemon) == reserved[i]);
    }
    CHECK(daemon.stop(SIGTERM) == 0);
}

TEST_CASE("ankanetd DHCP: with --leases FILE every client gets its address back after a restart") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    const int signal = GENERATE(SIGTERM, SIGKILL);
    INFO("the first daemon is stopped with signal " << signal);
    temp_dir files;
    const auto leases = (files.path / "leases").string();
    auto guests = one_guest_per_client(signal == SIGTERM ? "13" : "14");
    // A guest the first daemon never saw, first to ask the second one: if the leases were lost it
    // would be handed an address the others held.
    auto newcomer = std::make_unique<guest>(dhcp_client_kind::udhcpc, signal == SIGTERM ? "52:54:00:00:13:99" : "52:54:00:00:14:99");
    const auto arguments = daemon_arguments({"--mode", "shared", "--leases", leases}, guests);

    std::vector<std::string> before;
    {
        daemon_process daemon{arguments};
        REQUIRE(wait_for_guests(guests));
        const auto results = obtain_leases(guests);
        for (std::size_t i = 0; i < guests.size(); ++i) {
            before.push_back(check_lease(*guests[i], results[i], "192.168.64.1", "192.168.64.2", "192.168.64.254", daemon));
        }
        CHECK(std::set<std::string>(before.begin(), before.end()).size() == guests.size());
        CHECK(daemon.stop(signal) == (signal == SIGTERM ? 0 : 128 + SIGKILL));
    }
    for (const auto& g : guests) REQUIRE(wait_for_interface_gone(g->ns, "eth0"));
    CHECK(std::filesystem::exists(leases));

    auto second_arguments = arguments;
    second_arguments.push_back("--netns");
    second_arguments.push_back(newcomer->netns_argument());
    daemon_process daemon{second_arguments};
    REQUIRE(wait_for_guests(guests));
    REQUIRE(wait_for_interface(newcomer->ns, "eth0"));

    dhcp_client_options options;
    options.state_dir = newcomer->state.path;
    const auto first = obtain_lease(newcomer->ns, "eth0", newcomer->kind, options);
    const auto newcomer_address = check_lease(*newcomer, first, "192.168.64.1", "192.168.64.2", "192.168.64.254", daemon);
    INFO("the newcomer got " << newcomer_address);
    CHECK(std::count(before.begin(), before.end(), newcomer_address) == 0);

    const auto results = obtain_leases(guests);
    for (std::size_t i = 0; i < guests.size(); ++i) {
        CHECK(check_lease(*guests[i], results[i], "192.168.64.1", "192.168.64.2", "192.168.64.254", daemon) == before[i]);
    }
    CHECK(daemon.stop(SIGTERM) == 0);
}

TEST_CASE("ankanetd DHCP: --dhcp-range bounds the addresses handed out") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    auto guests = one_guest_per_client("15");
    daemon_process daemon{daemon_arguments({"--mode", "shared", "--dhcp-range", "192.168.64.100-192.168.64.110"}, guests)};
    REQUIRE(wait_for_guests(guests));
    const auto results = obtain_leases(guests);
    for (std::size_t i = 0; i < guests.size(); ++i) {
        check_lease(*guests[i], results[i], "192.168.64.1", "192.168.64.100", "192.168.64.110", daemon);
    }
    CHECK(daemon.stop(SIGTERM) == 0);
}

TEST_CASE("ankanetd DHCP: --subnet moves the shared network, gateway and DHCP server with it") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    auto guests = one_guest_per_client("16");
    daemon_process daemon{daemon_arguments({"--mode", "shared", "--subnet", "10.77.0.0/24"}, guests)};
    REQUIRE(wait_for_guests(guests));
    const auto results = obtain_leases(guests);
    for (std::size_t i = 0; i < guests.size(); ++i) {
        check_lease(*guests[i], results[i], "10.77.0.1", "10.77.0.2", "10.77.0.254", daemon);
    }
    CHECK(daemon.stop(SIGTERM) == 0);
}

TEST_CASE("ankanetd DHCP: the client harness reads its hooks' event records and netmasks") {
    using ankanet::test::detail::parse_event;
    using ankanet::test::detail::prefix_from_netmask;
    CHECK(prefix_from_netmask("255.255.255.0") == 24);
    CHECK(prefix_from_netmask("255.255.240.0") == 20);
    CHECK(prefix_from_netmask("255.255.255.255") == 32);
    CHECK(prefix_from_netmask("0.0.0.0") == 0);
    CHECK(prefix_from_netmask("255.0.255.0") == -1);  // not contiguous
    CHECK(prefix_from_netmask("255.255.255") == -1);
    CHECK(prefix_from_netmask("255.255.255.0.0") == -1);
    CHECK(prefix_from_netmask("255.255.256.0") == -1);
    CHECK(prefix_from_netmask("") == -1);

    // What the dhclient hook writes for a BOUND (prefix computed by the hook, netmask as given).
    const auto bound = parse_event("event=bound\naddress=192.168.64.14\nprefix=24\nnetmask=255.255.255.0\n"
                                   "server_id=192.168.64.1\nrouter=192.168.64.1\ndns=192.168.64.1 10.0.0.53\n"
                                   "lease_time=3600\ndomain_name=test.lan\npid=26191\n");
    CHECK(bound.event == "bound");
    CHECK(bound.address == "192.168.64.14");
    CHECK(bound.prefix_length == 24);
    CHECK(bound.server_id == "192.168.64.1");
    CHECK(bound.router == "192.168.64.1");
    CHECK(bound.dns == std::vector<std::string>{"192.168.64.1", "10.0.0.53"});
    CHECK(bound.lease_time == 3600);
    CHECK(bound.domain_name == "test.lan");
    CHECK(bound.pid == 26191);
    CHECK(ankanet::test::is_lease_event(bound.event));

    // udhcpc without the mask variable: the prefix comes from the netmask. A garbled lease time is ignored.
    const auto renew = parse_event("event=renew\naddress=10.77.0.9\nprefix=\nnetmask=255.255.255.0\nlease_time=12x\n");
    CHECK(renew.prefix_length == 24);
    CHECK(renew.lease_time == 0);

    // Events without a lease (udhcpc's deconfig, dhcpcd's carrier) carry no address.
    const auto deconfig = parse_event("event=deconfig\naddress=\nprefix=\nnetmask=\nserver_id=\nrouter=\ndns=\n");
    CHECK(deconfig.address.empty());
    CHECK(deconfig.prefix_length == -1);
    CHECK(deconfig.dns.empty());
    CHECK_FALSE(ankanet::test::is_lease_event(deconfig.event));
}
