// The example programs and the README's first command, run as a user runs them, their output read
// as a user reads it:
// - ankanet-demo as root (a network namespace guest's own `ping` reaches the gateway through a TAP
//   ankanet created) and as an unprivileged user (the same exchange over a memory link);
// - ankanet-embed-host (host mode embedded in a program, two VMs on memory links: a lease by DHCP,
//   a frame from one VM to the other);
// - scripts/demo.sh over the binaries this build made (--bin-dir): a lease shown with its server
//   identifier, a page from a server on host loopback through the NAT, a page from the guest
//   through a port forward, a throughput figure each way, ankanetd's VM list.
// The demo's traffic stays on the machine: it runs ankanetd with --egress 127.0.0.0/8 and a dead
// DNS upstream on 127.0.0.1:9, and its servers listen on 127.0.0.1 and inside its own namespace.
#include "../support/netns.hpp"
#include "../support/skip.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <string>

using ankanet::test::run_command;
using namespace std::chrono_literals;

namespace {

bool contains(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

bool matches(const std::string& text, const std::string& pattern) { return std::regex_search(text, std::regex{pattern}); }

} // namespace

TEST_CASE("examples: ankanet-demo as root — a namespace guest's ping reaches the gateway through ankanet's TAP") {
    const auto missing = ankanet::test::missing_netns_requirements();
    ANKANET_REQUIRE_ENVIRONMENT(missing.empty(), "ankanet-demo's namespace guest needs " << missing);
    const auto run = run_command({ANKANET_DEMO_PATH}, 30s);
    INFO(run.output);
    CHECK(run.status == 0);
    CHECK(contains(run.output, "ARP 192.168.64.1 is-at "));
    CHECK(contains(run.output, "3 packets transmitted, 3 received"));
    CHECK(matches(run.output, "gateway 192\\.168\\.64\\.1: 1 ARP replies, 3 echo replies"));
    CHECK(contains(run.output, "the guest reached the gateway"));
}

TEST_CASE("examples: ankanet-demo without root shows the exchange over a memory link") {
    ANKANET_REQUIRE_ENVIRONMENT(::geteuid() == 0, "root, to run the demo as the unprivileged user nobody (setpriv)");
    const auto run = run_command({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ANKANET_DEMO_PATH}, 30s);
    INFO(run.output);
    CHECK(run.status == 0);
    CHECK(contains(run.output, "not root: the guest is simulated over an in-memory link"));
    CHECK(contains(run.output, "guest   -> ankanet  ARP who-has 192.168.64.1 tell 192.168.64.2"));
    CHECK(matches(run.output, "the guest learned: ARP 192\\.168\\.64\\.1 is-at [0-9a-f:]{17}"));
}

TEST_CASE("examples: ankanet-embed-host leases vm1 an address of the host network and carries vm2's frame to it") {
    const auto run = run_command({ANKANET_EMBED_HOST_PATH}, 20s);
    INFO(run.output);
    CHECK(run.status == 0);
    CHECK(matches(run.output, "vm1 DISCOVER -> OFFER 192\\.168\\.128\\.[0-9]+ from 192\\.168\\.128\\.1\n"));
    CHECK(matches(run.output, "vm1 REQUEST -> ACK 192\\.168\\.128\\.[0-9]+, lease [1-9][0-9]* s\n"));
    CHECK(contains(run.output, "vm1 got a 60-byte frame from vm2"));
    // The DHCP guard: vm1's broadcasts reach the gateway only, never the other VM.
    CHECK_FALSE(contains(run.output, "vm2 sees vm1's broadcast"));
}

TEST_CASE("examples: scripts/demo.sh — a lease with its server, a page each way through the NAT and a forward, throughput") {
    const auto missing = ankanet::test::missing_netns_requirements();
    ANKANET_REQUIRE_ENVIRONMENT(missing.empty(), "the demo's namespace guest needs " << missing);
    for (const char* tool : {"busybox", "curl", "ss", "realpath"}) {
        ANKANET_REQUIRE_ENVIRONMENT(run_command({"sh", "-c", std::string{"command -v "} + tool}).status == 0,
                                    "the demo runs " << tool << " (scripts/install-deps.sh --demo)");
    }
    const std::filesystem::path bin = std::filesystem::path{ANKANETD_PATH}.parent_path();
    // The demo's servers, counted before and after: it must leave none behind (one that outlived
    // the demo once kept its output pipe open until the time limit).
    const auto servers = [] { return run_command({"sh", "-c", "pgrep -fc '^busybox httpd -f -p ' || true"}).output; };
    const auto servers_before = servers();
    const auto run = run_command({"bash", ANKANET_SOURCE_DIR "/scripts/demo.sh", "--bin-dir", bin.string(), "--transfer-mib", "64"}, 120s);
    INFO(run.output);
    REQUIRE(run.status == 0);
    CHECK(matches(run.output, "lease: 192\\.168\\.64\\.[0-9]+/24 from server 192\\.168\\.64\\.1; router 192\\.168\\.64\\.1, dns 192\\.168\\.64\\.1"));
    CHECK(matches(run.output, "guest\\$ curl http://192\\.168\\.64\\.1:[0-9]+/\nhello from the host's web server on 127\\.0\\.0\\.1:[0-9]+\n"));
    CHECK(matches(run.output, "host\\$ curl http://127\\.0\\.0\\.1:[0-9]+/\nhello from the guest's web server, through ankanetd's port forward\n"));
    CHECK(matches(run.output, "host -> guest through the NAT: +[0-9]+\\.[0-9]{2} Gbit/s \\(64 MiB in "));
    CHECK(matches(run.output, "guest -> host through the forward: +[0-9]+\\.[0-9]{2} Gbit/s \\(64 MiB in "));
    CHECK(matches(run.output, "netns:/run/netns/ankanet-demo-[0-9]+:eth0 +tap +[0-9a-f:]{17} +192\\.168\\.64\\.[0-9]+ "));
    CHECK(contains(run.output, "ankanetd: stopped: "));
    CHECK(matches(run.output, "demo: done in [0-9.]+ s"));
    CHECK(servers() == servers_before);
    std::smatch guest;
    REQUIRE(std::regex_search(run.output, guest, std::regex{"ankanet-demo-[0-9]+"}));
    CHECK_FALSE(matches(run_command({"ip", "netns", "list"}).output, "(^|\n)" + guest.str() + "( |\n|$)")); // its namespace is gone
}
