// End to end: ankanetd's control socket (--control, `ankanetd ctl`) changing port forwards while the
// daemon runs, with a namespace guest that takes its lease with udhcpc and serves on its ports.
// Every host client connects to 127.0.0.1; every daemon runs with an egress policy of loopback only.
#include "../support/ankanetd_process.hpp"
#include "../support/dhcp_clients.hpp"
#include "../support/nat_hosts.hpp"
#include "../support/netns.hpp"
#include "../support/require_guests.hpp"
#include "../support/skip.hpp"
#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using ankanet::test::background_process;
using ankanet::test::daemon_process;
using ankanet::test::free_loopback_port;
using ankanet::test::run_command;
using ankanet::test::run_in;
using ankanet::test::scoped_netns;
using ankanet::test::temp_dir;
using ankanet::test::wait_for_interface;
using ankanet::test::wait_until_succeeds;

/// `ankanetd ctl SOCKET args...`: its exit status and output (stdout and stderr).
ankanet::test::command_result ctl(const std::string& socket, std::vector<std::string> args) {
    args.insert(args.begin(), {ANKANETD_PATH, "ctl", socket});
    return run_command({"sh", "-c", [&] {
                            std::string line;
                            for (const auto& a : args) line += "'" + a + "' ";
                            return line + "2>&1";
                        }()},
                       10s);
}

/// One TCP exchange with 127.0.0.1:`port`: what the server wrote, or socat's complaint.
std::string fetch(std::uint16_t port) {
    return run_command({"sh", "-c", "timeout 5 socat -T 3 - TCP:127.0.0.1:" + std::to_string(port) + " </dev/null 2>&1"}, 10s).output;
}

/// A daemon with a control socket and one namespace guest that has taken its lease.
struct controlled_guest {
    explicit controlled_guest(const std::string& hostname = {})
        : socket(dir.path.string() + "/control.sock"), daemon({"--netns", guest.path(), "--control", socket}) {
        REQUIRE(wait_for_interface(guest, "eth0"));
        REQUIRE(wait_until_succeeds("test -S " + socket));
        const auto got = ankanet::test::obtain_lease(guest, "eth0", ankanet::test::dhcp_client_kind::udhcpc, 20s, hostname);
        INFO(got.output << "\n--- daemon log ---\n" << daemon.log());
        REQUIRE(got.lease);
        address = got.lease->address;
    }
    temp_dir dir;
    std::string socket;
    scoped_netns guest;
    daemon_process daemon;
    std::string address;
};

} // namespace

TEST_CASE("ankanetd control: forwards added and removed at run time take effect at once, live connections outlast their forward") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    controlled_guest vm{"served"};
    const auto& [dir, socket, guest, daemon, address] = vm;
    INFO("--- daemon log ---\n" << daemon.log());

    // A server in the guest that answers each connection with the address it saw, and one on 8081
    // that holds its connection open and echoes.
    background_process web{"ip netns exec " + guest.name() +
                           " timeout 60 socat TCP-LISTEN:8080,reuseaddr,fork SYSTEM:'echo peer=$SOCAT_PEERADDR'"};
    background_process echo{"ip netns exec " + guest.name() + " timeout 60 socat TCP-LISTEN:8081,reuseaddr,fork EXEC:/bin/cat"};
    REQUIRE(wait_until_succeeds("ip netns exec " + guest.name() + " ss -Hltn | grep -q ':8081'"));

    const auto port = free_loopback_port();
    CHECK(fetch(port).find("Connection refused") != std::string::npos); // nothing forwards it yet

    // Added: it works at once, and the guest sees a loopback client as the gateway.
    const auto added = ctl(socket, {"forward", "add", "tcp:" + std::to_string(port) + ":8080@" + guest.name()});
    INFO(added.output);
    REQUIRE(added.status == 0);
    CHECK(added.output.find("added forward 1") != std::string::npos);
    CHECK(fetch(port) == "peer=192.168.64.1\n");

    // Listed, as a table and as JSON, with the connection it carried.
    const auto list = ctl(socket, {"--json", "list"});
    REQUIRE(list.status == 0);
    CHECK(list.output.find("\"host_port\":" + std::to_string(port)) != std::string::npos);
    CHECK(list.output.find("\"connections\":1") != std::string::npos);
    const auto vms = ctl(socket, {"vms"});
    REQUIRE(vms.status == 0);
    CHECK(vms.output.find(address) != std::string::npos);
    CHECK(vms.output.find("served") != std::string::npos); // the DHCP host name
    // The leases, with the VM holding each.
    const auto leases = ctl(socket, {"leases"});
    INFO(leases.output);
    REQUIRE(leases.status == 0);
    CHECK(leases.output.find(address) != std::string::npos);
    CHECK(leases.output.find("served") != std::string::npos);
    CHECK(leases.output.find("netns:" + guest.path() + ":eth0") != std::string::npos);
    CHECK(ctl(socket, {"--json", "leases"}).output.find("\"ip\":\"" + address + "\"") != std::string::npos);

    // A second forward on the same port is refused naming the first; a port the host holds is
    // refused naming its holder; a malformed one says what is wrong. None touches the first.
    const auto clash = ctl(socket, {"forward", "add", "tcp:" + std::to_string(port) + ":22"});
    CHECK(clash.status == 1);
    CHECK(clash.output.find("is claimed by forward 1") != std::string::npos);
    const auto held_port = free_loopback_port();
    background_process holder{"exec socat TCP-LISTEN:" + std::to_string(held_port) + ",bind=127.0.0.1,reuseaddr,fork EXEC:/bin/cat"};
    REQUIRE(wait_until_succeeds("ss -Hltn | grep -q 127.0.0.1:" + std::to_string(held_port)));
    const auto busy = ctl(socket, {"forward", "add", std::to_string(held_port) + ":8080"});
    CHECK(busy.status == 1);
    CHECK(busy.output.find("in use on the host") != std::string::npos);
    CHECK(busy.output.find("socat") != std::string::npos);
    const auto bad = ctl(socket, {"forward", "add", "tcp:99999:80"});
    CHECK(bad.status == 1);
    CHECK(bad.output.find("99999") != std::string::npos);
    CHECK(fetch(port) == "peer=192.168.64.1\n");

    // A long-lived connection through a second forward outlasts the forward's removal; the port
    // then refuses new connections.
    const auto echo_port = free_loopback_port();
    const auto second = ctl(socket, {"forward", "add", std::to_string(echo_port) + ":8081"});
    REQUIRE(second.status == 0);
    CHECK(second.output.find("added forward 2") != std::string::npos); // refused forwards spent no id
    const auto fifo = dir.path.string() + "/in";
    REQUIRE(run_command({"mkfifo", fifo}).status == 0);
    const auto out = dir.path.string() + "/out";
    // One connection both ways: socat reads the FIFO (held open for writing by `sleep`, so each
    // `echo` into it is more input, not its end) and writes what comes back to `out`.
    background_process keeper{"exec sleep 60 > " + fifo};
    background_process talker{"exec socat PIPE:" + fifo + "!!CREATE:" + out + " TCP:127.0.0.1:" + std::to_string(echo_port)};
    REQUIRE(wait_until_succeeds("ss -Htn state established | grep -q ':" + std::to_string(echo_port) + "'"));
    REQUIRE(run_command({"sh", "-c", "echo before > " + fifo}).status == 0);
    REQUIRE(wait_until_succeeds("grep -q before " + out));

    const auto removed = ctl(socket, {"forward", "remove", "2"});
    INFO(removed.output);
    REQUIRE(removed.status == 0);
    CHECK(fetch(echo_port).find("Connection refused") != std::string::npos);
    REQUIRE(run_command({"sh", "-c", "echo after > " + fifo}).status == 0);
    CHECK(wait_until_succeeds("grep -q after " + out));

    // Removing the first by its text; the port is free again at once.
    REQUIRE(ctl(socket, {"forward", "remove", "tcp:127.0.0.1:" + std::to_string(port) + ":8080@" + guest.name()}).status == 0);
    CHECK(fetch(port).find("Connection refused") != std::string::npos);
    CHECK(ctl(socket, {"forward", "remove", "1"}).status == 1);
    const auto empty = ctl(socket, {"--json", "list"});
    CHECK(empty.output.find("\"forwards\":[]") != std::string::npos);
    CHECK(daemon.log().find("forward 2 removed (control socket); its connections go on") != std::string::npos);
}

TEST_CASE("ankanetd control: a VM's link set down and up through the control socket") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    controlled_guest vm;
    const auto& [dir, socket, guest, daemon, address] = vm;
    INFO("--- daemon log ---\n" << daemon.log());
    CHECK(run_in(guest, "ping -c 1 -W 2 192.168.64.1").status == 0);
    REQUIRE(ctl(socket, {"link", guest.name(), "down"}).status == 0);
    CHECK(run_in(guest, "ping -c 1 -W 1 192.168.64.1").status != 0);
    CHECK(ctl(socket, {"--json", "vms"}).output.find("\"link\":\"down\"") != std::string::npos);
    REQUIRE(ctl(socket, {"link", guest.name(), "up"}).status == 0);
    CHECK(run_in(guest, "ping -c 1 -W 2 192.168.64.1").status == 0);
    const auto unknown = ctl(socket, {"link", "no-such-vm", "down"});
    CHECK(unknown.status == 1);
    CHECK(unknown.output.find("no VM is named 'no-such-vm'") != std::string::npos);
}
