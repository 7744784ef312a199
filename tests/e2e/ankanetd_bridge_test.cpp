// End to end: bridge mode. The test builds a "LAN": a veth pair whose far end sits in a namespace
// running dnsmasq as the LAN's DHCP server and busybox httpd as a web server; ankanetd bridges
// namespace guests onto the near end (its AF_PACKET uplink). Guests get leases from dnsmasq in the
// LAN's subnet with busybox udhcpc, and reach the far namespace by ping and HTTP; the far
// namespace's neighbour table shows who it thinks they are. The uplink carries nothing to any other
// network: its only peer is the test's own namespace.
#include "../support/ankanetd_process.hpp"
#include "../support/dhcp_clients.hpp"
#include "../support/netns.hpp"
#include "../support/require_guests.hpp"
#include "../support/skip.hpp"
#include "../support/temp_dir.hpp"

#include <ankanet/l2/mac_randomizer.hpp>

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using ankanet::test::daemon_process;
using ankanet::test::dhcp_client_kind;
using ankanet::test::run_command;
using ankanet::test::run_in;
using ankanet::test::scoped_netns;
using ankanet::test::temp_dir;
using ankanet::test::wait_for_interface;

/// The LAN: the far end of a veth in its own namespace, with dnsmasq and httpd; the near end, in
/// this namespace, is the bridge's uplink. Torn down (processes, veth) when the test leaves.
struct test_lan {
    static inline std::atomic<int> counter{0};
    scoped_netns ns;
    temp_dir dir{"ankanet-bridge"};
    int id = counter++;
    std::string near = fmt::format("ankbr{}n{}", ::getpid() % 100000, id); // at most 15 characters
    std::string far = "lan0";
    std::string subnet = fmt::format("10.{}.{}", 200 + id % 50, ::getpid() % 250); // 10.X.Y.0/24
    std::string server = subnet + ".1";

    /// `far_mac`: the MAC of the LAN's device (the collision test gives it the VM's first choice).
    explicit test_lan(const std::string& far_mac = {}) {
        must({"ip", "link", "add", "name", near, "type", "veth", "peer", "name", far, "netns", ns.name()});
        if (!far_mac.empty()) must_in("ip link set " + far + " address " + far_mac);
        must_in("ip link set lo up && ip link set " + far + " up && ip addr add " + server + "/24 dev " + far);
        must({"ip", "link", "set", near, "up"});
        std::ofstream{dir.path / "index.html"} << "hello from the LAN\n";
        must_in(fmt::format("dnsmasq --conf-file=/dev/null --port=0 --interface={} --bind-interfaces --dhcp-authoritative "
                            "--dhcp-range={}.50,{}.99,1h --dhcp-leasefile={} --pid-file={} >/dev/null 2>&1",
                            far, subnet, subnet, (dir.path / "leases").string(), (dir.path / "dnsmasq.pid").string()));
        must_in(fmt::format("busybox httpd -p 8080 -h {} >/dev/null 2>&1", dir.path.string())); // forks into the background
    }
    ~test_lan() {
        run_in(ns, fmt::format("kill $(cat {}) 2>/dev/null; pkill -f 'busybox httpd -p 8080 -h {}'", (dir.path / "dnsmasq.pid").string(),
                               dir.path.string()));
        run_command({"ip", "link", "del", near});
    }
    test_lan(const test_lan&) = delete;
    test_lan& operator=(const test_lan&) = delete;

    std::string near_mac() const { return trim(run_command({"cat", "/sys/class/net/" + near + "/address"}).output); }
    /// The MAC the far namespace's neighbour table holds for `address` (empty: none).
    std::string neighbour(const std::string& address) const {
        const auto out = run_in(ns, "ip neigh show " + address + " dev " + far).output;
        const auto at = out.find("lladdr ");
        return at == std::string::npos ? std::string{} : out.substr(at + 7, 17);
    }
    std::string dhcp_leases() const { return run_command({"cat", (dir.path / "leases").string()}).output; }

    static std::string trim(std::string s) {
        while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
        return s;
    }

private:
    static void must(const std::vector<std::string>& argv) {
        const auto r = run_command(argv);
        if (r.status != 0) FAIL("the test LAN could not be built: " << argv.front() << ": " << r.output);
    }
    void must_in(const std::string& command) const {
        const auto r = run_in(ns, command);
        if (r.status != 0) FAIL("the test LAN could not be built: " << command << ": " << r.output);
    }
};

/// A guest: a namespace whose eth0 ankanetd creates; its lease from the LAN.
struct guest {
    scoped_netns ns;
    std::string address;

    std::string mac() const { return test_lan::trim(run_in(ns, "cat /sys/class/net/eth0/address").output); }
    void lease(const test_lan& lan) {
        REQUIRE(wait_for_interface(ns, "eth0"));
        run_in(ns, "ip link set lo up");
        const auto got = ankanet::test::obtain_lease(ns, "eth0", dhcp_client_kind::udhcpc, 20s);
        INFO(got.output);
        REQUIRE(got.lease);
        address = got.lease->address;
        CHECK(address.starts_with(lan.subnet + "."));
        CHECK(got.lease->server_id == lan.server);
    }
    /// Pings the LAN's server and fetches its page over HTTP.
    void reaches(const test_lan& lan) const {
        CHECK(run_in(ns, "ping -c 2 -i 0.2 -W 2 " + lan.server, 15s).status == 0);
        const auto page = run_in(ns, "curl -s -m 5 http://" + lan.server + ":8080/index.html", 15s);
        CHECK(page.output == "hello from the LAN\n");
    }
};

std::vector<std::string> bridge_args(const test_lan& lan, std::vector<std::string> extra) {
    std::vector<std::string> args{"--mode", "bridge", "--bridge-interface", lan.near};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
}

} // namespace

TEST_CASE("ankanetd bridge: with MAC translation, two guests behind the uplink's MAC get their own leases from the LAN and reach it") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    test_lan lan;
    guest a, b;
    const auto control = (lan.dir.path / "control.sock").string();
    daemon_process daemon{bridge_args(lan, {"--netns", a.ns.path(), "--netns", b.ns.path(), "--control", control})};
    INFO("--- daemon log ---\n" << daemon.log());
    a.lease(lan);
    b.lease(lan);
    CHECK(a.address != b.address); // dnsmasq tells them apart by client identifier (udhcpc sends its MAC)
    // The daemon lists each VM with the address the LAN's DHCP server gave it.
    const auto vms = run_command({ANKANETD_PATH, "ctl", control, "vms"}).output;
    CHECK(vms.find(a.address) != std::string::npos);
    CHECK(vms.find(b.address) != std::string::npos);
    a.reaches(lan);
    b.reaches(lan);
    // Both at once: the LAN sees one device, the uplink's MAC, at two addresses.
    const auto uplink = lan.near_mac();
    CHECK(lan.neighbour(a.address) == uplink);
    CHECK(lan.neighbour(b.address) == uplink);
    CHECK(a.mac() != uplink); // inside, each VM keeps its own
    // dnsmasq's lease file: "expiry MAC address name client-id": both leases are the uplink MAC's.
    const auto leases = lan.dhcp_leases();
    CHECK(leases.find(" " + uplink + " " + a.address + " ") != std::string::npos);
    CHECK(leases.find(" " + uplink + " " + b.address + " ") != std::string::npos);
    CHECK(daemon.stop() == 0);
    CHECK(daemon.log().find("the interface's MAC (translated)") != std::string::npos);
}

TEST_CASE("ankanetd bridge: with direct MACs, the LAN's DHCP server and neighbour table see each guest's own MAC") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    test_lan lan;
    guest a, b;
    daemon_process daemon{bridge_args(lan, {"--direct-mac", "--netns", a.ns.path(), "--netns", b.ns.path()})};
    INFO("--- daemon log ---\n" << daemon.log());
    a.lease(lan);
    b.lease(lan);
    CHECK(a.address != b.address);
    a.reaches(lan);
    b.reaches(lan);
    CHECK(lan.neighbour(a.address) == a.mac());
    CHECK(lan.neighbour(b.address) == b.mac());
    const auto leases = lan.dhcp_leases();
    CHECK(leases.find(" " + a.mac() + " " + a.address + " ") != std::string::npos);
    CHECK(leases.find(" " + b.mac() + " " + b.address + " ") != std::string::npos);
    CHECK(daemon.stop() == 0);
}

TEST_CASE("ankanetd bridge: a drawn MAC a device on the LAN already uses makes the VM draw another") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    temp_dir dir{"ankanet-bridge-secret"};
    const std::string secret_text = "00112233445566778899aabbccddeeff";
    std::ofstream{dir.path / "secret"} << secret_text << "\n";
    const auto uuid = *ankanet::l2::vm_uuid::parse("6f1c2a3b-4d5e-4f60-8172-839495a6b7c8");
    // What the VM would get on a quiet LAN: the first candidate of its stable MAC.
    const auto first_choice =
        *ankanet::l2::mac_randomizer{{}, *ankanet::l2::host_secret::parse(secret_text)}.stable(uuid, ankanet::l2::mac_registry{});
    const auto taken = fmt::format("{}", first_choice);
    test_lan lan{taken};
    // The LAN device answers the probe once its IPv6 link-local address is usable (DAD done).
    for (int i = 0; i < 60 && run_in(lan.ns, "ip -6 addr show dev lan0 scope link | grep -q tentative").status == 0; ++i) {
        std::this_thread::sleep_for(100ms);
    }
    guest a;
    daemon_process daemon{bridge_args(lan, {"--direct-mac", "--mac-secret", (dir.path / "secret").string(), "--netns",
                                            a.ns.path() + ",uuid=6f1c2a3b-4d5e-4f60-8172-839495a6b7c8"})};
    INFO("--- daemon log ---\n" << daemon.log());
    REQUIRE(wait_for_interface(a.ns, "eth0"));
    CHECK(a.mac() != taken);
    CHECK(daemon.log().find("MAC " + taken + " is in use on the LAN; drawing another") != std::string::npos);
    a.lease(lan);
    a.reaches(lan);
    CHECK(lan.neighbour(a.address) == a.mac());
    CHECK(daemon.stop() == 0);
}

TEST_CASE("ankanetd bridge: a missing, down or unnamed uplink is one clear line, and ANKA_BRIDGE_NAME names it") {
    ANKANET_REQUIRE_NETNS();
    const auto refused = [](std::vector<std::string> args) {
        daemon_process daemon{std::move(args)};
        int status = -1;
        for (int i = 0; i < 100 && status < 0; ++i) {
            std::this_thread::sleep_for(50ms);
            status = daemon.stop(0, 1s); // signal 0: only wait for it to exit
        }
        if (status < 0) status = daemon.stop();
        return std::pair{status, daemon.log()};
    };
    auto [status, log] = refused({"--mode", "bridge", "--bridge-interface", "ankbrnosuch0"});
    CHECK(status == 1);
    CHECK(log.find("bridge uplink ankbrnosuch0: no such network interface\n") != std::string::npos);

    ::unsetenv("ANKA_BRIDGE_NAME");
    std::tie(status, log) = refused({"--mode", "bridge"});
    CHECK(status == 1);
    CHECK(log.find("bridge mode needs an uplink interface: name one, or set ANKA_BRIDGE_NAME\n") != std::string::npos);

    // An interface that exists but is down, named by the environment.
    const std::string down = fmt::format("ankbrdn{}", ::getpid() % 100000);
    REQUIRE(run_command({"ip", "link", "add", "name", down, "type", "veth", "peer", "name", down + "p"}).status == 0);
    ::setenv("ANKA_BRIDGE_NAME", down.c_str(), 1);
    std::tie(status, log) = refused({"--mode", "bridge"});
    ::unsetenv("ANKA_BRIDGE_NAME");
    run_command({"ip", "link", "del", down});
    CHECK(status == 1);
    CHECK(log.find("bridge uplink " + down + ": the network interface is down (ip link set IF up)\n") != std::string::npos);
}

TEST_CASE("ankanetd bridge: a guest announcing another guest's leased address cannot draw its traffic on the LAN") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    const bool scapy = run_command({"/usr/bin/python3", "-B", "-c", "import scapy.all"}, 30s).status == 0;
    ANKANET_REQUIRE_ENVIRONMENT(scapy, "the hostile guest needs scapy for /usr/bin/python3 (Debian package python3-scapy)");
    test_lan lan;
    guest a, hostile;
    daemon_process daemon{bridge_args(lan, {"--direct-mac", "--netns", a.ns.path(), "--netns", hostile.ns.path()})};
    INFO("--- daemon log ---\n" << daemon.log());
    a.lease(lan);
    hostile.lease(lan);
    REQUIRE(run_in(lan.ns, "ping -c 1 -W 2 " + a.address).status == 0);
    REQUIRE(lan.neighbour(a.address) == a.mac());
    std::this_thread::sleep_for(1200ms); // past the LAN's neighbour locktime (1 s): an update would be taken

    // ARP requests to the LAN's server in a's name, and (the control) in the name of an address
    // nobody was given: the server answers both and updates its neighbour table — unless dropped.
    const std::string unclaimed = lan.subnet + ".200";
    const auto claim = [&](const std::string& address) {
        return fmt::format("sendp(Ether(src='{0}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc='{0}', psrc='{1}', pdst='{2}'), "
                           "iface='eth0', count=3, inter=0.1, verbose=0)",
                           hostile.mac(), address, lan.server);
    };
    const auto sent = run_in(hostile.ns, "/usr/bin/python3 -B -c \"from scapy.all import *; " + claim(a.address) + "; " +
                                             claim(unclaimed) + "\"", 30s);
    REQUIRE(sent.status == 0);
    std::this_thread::sleep_for(300ms);
    CHECK(lan.neighbour(unclaimed) == hostile.mac()); // the attack frame works where it is allowed...
    CHECK(lan.neighbour(a.address) == a.mac());        // ...and a's address stays a's
    CHECK(run_in(lan.ns, "ping -c 1 -W 2 " + a.address).status == 0);
    a.reaches(lan);
    const auto log = daemon.log();
    CHECK(log.find("claimed " + a.address + ", which the LAN's DHCP server gave to " + a.mac() + "; dropped (ARP)") !=
          std::string::npos);
    CHECK(daemon.stop() == 0);
    CHECK(daemon.log().find("claims on another VM's address dropped") != std::string::npos);
}
