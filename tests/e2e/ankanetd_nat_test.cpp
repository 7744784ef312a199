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
#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <memory>
#include <regex>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using ankanet::test::background_process;
using ankanet::test::daemon_process;
using ankanet::test::far_host;
using ankanet::test::free_loopback_port;
using ankanet::test::run_in;
using ankanet::test::run_command;
using ankanet::test::scoped_netns;
using ankanet::test::temp_dir;
using ankanet::test::wait_for_interface;
using ankanet::test::wait_until_succeeds;

/// A guest with a lease from the daemon started with `args` (its --netns added here).
struct leased_guest {
    scoped_netns ns;
    std::string address;
};

void lease(leased_guest& guest, const daemon_process& daemon, const std::string& hostname = {}) {
    REQUIRE(wait_for_interface(guest.ns, "eth0"));
    const auto got = ankanet::test::obtain_lease(guest.ns, "eth0", ankanet::test::dhcp_client_kind::udhcpc, 20s, hostname);
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

/// A TCP server on host loopback that writes what it receives to `file` (one connection).
std::string tcp_sink_command(std::uint16_t port, const std::string& file) {
    return "exec socat -u TCP-LISTEN:" + std::to_string(port) + ",bind=127.0.0.1,reuseaddr CREATE:" + file;
}
/// A TCP server on host loopback that sends `file` to whoever connects (one connection).
std::string tcp_source_command(std::uint16_t port, const std::string& file) {
    return "exec socat -u FILE:" + file + " TCP-LISTEN:" + std::to_string(port) + ",bind=127.0.0.1,reuseaddr";
}
std::string listening(std::uint16_t port) { return "ss -Hltn | grep -q 127.0.0.1:" + std::to_string(port); }

std::string sha256(const std::string& file) {
    const auto sum = run_command({"sha256sum", file}, 120s);
    return sum.output.substr(0, 64);
}

/// Sends `source` (of `size` bytes) from the guest to a sink on host loopback, then from a server
/// on host loopback back to the guest, through the gateway, and checks both copies byte for byte.
void round_trip(const leased_guest& guest, const daemon_process& daemon, const temp_dir& files, const std::string& source,
                std::uintmax_t size, std::chrono::seconds limit) {
    const auto source_sum = sha256(source);
    REQUIRE(source_sum.size() == 64);
    const auto up_port = free_loopback_port();
    const auto uploaded = (files.path / "uploaded").string();
    {
        background_process sink{tcp_sink_command(up_port, uploaded)};
        REQUIRE(wait_until_succeeds(listening(up_port)));
        const auto up = run_in(guest.ns, "socat -u FILE:" + source + " TCP:192.168.64.1:" + std::to_string(up_port), limit);
        INFO(up.output << "\n--- daemon log ---\n" << daemon.log());
        REQUIRE(up.status == 0);
        // The sink has the whole file once its listener is gone and the size is right.
        REQUIRE(wait_until_succeeds("! " + listening(up_port) + " && test \"$(stat -c %s " + uploaded + ")\" = " +
                                        std::to_string(size),
                                    30s));
    }
    CHECK(sha256(uploaded) == source_sum);

    const auto down_port = free_loopback_port();
    background_process feeder{tcp_source_command(down_port, source)};
    REQUIRE(wait_until_succeeds(listening(down_port)));
    const auto downloaded = (files.path / "downloaded").string();
    const auto down = run_in(guest.ns, "socat -u TCP:192.168.64.1:" + std::to_string(down_port) + " CREATE:" + downloaded, limit);
    INFO(down.output << "\n--- daemon log ---\n" << daemon.log());
    REQUIRE(down.status == 0);
    CHECK(sha256(downloaded) == source_sum);
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
    // The exit line counts the translator's batches: the echo's datagram and the refused one each
    // went out in a sendmmsg, and the echo's answer came back in a recvmmsg.
    const std::regex batches{R"(UDP 2 flows \d+ out \d+ in \d+ blocked \([1-9]\d* sendmmsg / [1-9]\d* recvmmsg batches, 0 from spoofed senders\))"};
    CHECK(std::regex_search(log, batches));
}

TEST_CASE("ankanetd nat: shared mode reaches a far host the egress policy allows (ping and UDP), host mode does not") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    far_host far;
    background_process server{"exec ip netns exec " + far.ns().name() + " sh -c '" + udp_echo_command(far.address(), 7) + "'"};
    background_process tcp_server{"exec ip netns exec " + far.ns().name() + " socat TCP-LISTEN:7,bind=" + far.address() +
                                  ",reuseaddr,fork SYSTEM:'echo far-tcp'"};
    REQUIRE(wait_until_succeeds("ip netns exec " + far.ns().name() + " ss -Hlun | grep -q " + far.address() + ":7"));
    REQUIRE(wait_until_succeeds("ip netns exec " + far.ns().name() + " ss -Hltn | grep -q " + far.address() + ":7"));
    const auto tcp_to_far = [&](const scoped_netns& guest) {
        return run_in(guest, "timeout 10 socat -t 3 - TCP:" + far.address() + ":7,connect-timeout=5 </dev/null 2>&1", 15s).output;
    };

    SECTION("shared, with the far host allowed") {
        leased_guest guest;
        daemon_process daemon{{"--egress", "127.0.0.0/8," + far.prefix(), "--netns", guest.ns.path()}};
        lease(guest, daemon);
        const auto ping = run_in(guest.ns, "ping -c 3 -i 0.2 -W 2 " + far.address(), 20s);
        INFO(ping.output << "\n--- daemon log ---\n" << daemon.log());
        CHECK(ping.output.find("3 received") != std::string::npos);
        CHECK(udp_exchange(guest.ns, far.address(), 7, "far-away") == "far-away");
        CHECK(tcp_to_far(guest.ns) == "far-tcp\n");
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
        CHECK(tcp_to_far(guest.ns).find("Connection refused") != std::string::npos);
        CHECK(daemon.log().find("ICMP flow to " + far.address() + ":0 refused: egress policy") != std::string::npos);
        CHECK(daemon.log().find("TCP flow to " + far.address() + ":7 refused: egress policy") != std::string::npos);
    }
    SECTION("host mode: the host's loopback only") {
        const auto port = free_loopback_port(SOCK_DGRAM);
        background_process local{udp_echo_command("127.0.0.1", port)};
        REQUIRE(wait_until_succeeds("ss -Hlun | grep -q 127.0.0.1:" + std::to_string(port)));
        leased_guest guest;
        daemon_process daemon{{"--mode", "host", "--netns", guest.ns.path()}};
        lease(guest, daemon);
        CHECK(udp_exchange(guest.ns, "192.168.128.1", port, "to-the-host") == "to-the-host");
        const auto tcp_port = free_loopback_port();
        background_process tcp_local{"exec socat TCP-LISTEN:" + std::to_string(tcp_port) + ",bind=127.0.0.1,reuseaddr SYSTEM:'echo host-tcp'"};
        REQUIRE(wait_until_succeeds(listening(tcp_port)));
        CHECK(run_in(guest.ns, "timeout 10 socat -t 3 - TCP:192.168.128.1:" + std::to_string(tcp_port) + " </dev/null", 15s).output == "host-tcp\n");
        CHECK(tcp_to_far(guest.ns).find("Connection refused") != std::string::npos);
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

TEST_CASE("ankanetd nat: TCP to host loopback through the gateway — an HTTP download, 256 MiB each way intact, a closed port reset at once") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    temp_dir files{"ankanet-nat-tcp"};
    leased_guest guest;
    daemon_process daemon{{"--egress", "127.0.0.0/8", "--dns-upstream", "127.0.0.1:9", "--netns", guest.ns.path()}};
    lease(guest, daemon);

    SECTION("HTTP") {
        std::filesystem::create_directories(files.path / "www");
        REQUIRE(run_command({"sh", "-c", "head -c 3M /dev/urandom > " + (files.path / "www" / "page").string()}).status == 0);
        const auto port = free_loopback_port();
        background_process httpd{"exec busybox httpd -f -p 127.0.0.1:" + std::to_string(port) + " -h " + (files.path / "www").string()};
        REQUIRE(wait_until_succeeds(listening(port)));
        const auto got = (files.path / "downloaded").string();
        const auto fetch = run_in(guest.ns, "curl -sS --max-time 60 -o " + got + " http://192.168.64.1:" + std::to_string(port) + "/page", 70s);
        INFO(fetch.output << "\n--- daemon log ---\n" << daemon.log());
        REQUIRE(fetch.status == 0);
        CHECK(sha256(got) == sha256((files.path / "www" / "page").string()));
    }
    SECTION("256 MiB guest to host, and host to guest") {
        const std::string source = (files.path / "source").string();
        REQUIRE(run_command({"sh", "-c", "head -c 256M /dev/urandom > " + source}, 60s).status == 0);
        round_trip(guest, daemon, files, source, 256u << 20, 200s);
    }
    SECTION("a port nobody listens on is refused at once") {
        const auto closed = free_loopback_port();
        const auto t0 = std::chrono::steady_clock::now();
        const auto refused = run_in(guest.ns, "socat -u /dev/null TCP:192.168.64.1:" + std::to_string(closed) + ",connect-timeout=5 2>&1", 15s);
        const auto took = std::chrono::steady_clock::now() - t0;
        INFO(refused.output);
        CHECK(refused.output.find("Connection refused") != std::string::npos);
        CHECK(took < 4s); // an RST, not a timeout
    }
}

TEST_CASE("ankanetd nat: 200 concurrent connections from one guest are all carried and answered") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    const auto port = free_loopback_port();
    // Each connection is echoed back; the clients hold theirs open for two seconds, so all 200 are
    // open at once. The daemon is frozen until all 200 clients have sent their SYN (bounded wait),
    // so the SYNs reach it at once, over the half-open limit per VM (64) when it reads them faster
    // than the connects finish: those over it are held back, not reset, and connect on the guest's
    // SYN retransmission.
    background_process server{"exec socat TCP-LISTEN:" + std::to_string(port) + ",bind=127.0.0.1,reuseaddr,fork,backlog=256 EXEC:/bin/cat"};
    REQUIRE(wait_until_succeeds(listening(port)));
    temp_dir out{"ankanet-nat-200"};
    leased_guest guest;
    daemon_process daemon{{"--egress", "127.0.0.0/8", "--dns-upstream", "127.0.0.1:9", "--netns", guest.ns.path()}};
    lease(guest, daemon);
    const auto pid = std::to_string(daemon.pid());
    const auto run = run_in(guest.ns,
                            "kill -STOP " + pid + "; for i in $(seq 1 200); do (printf 'client-%s' $i; sleep 2) | timeout 40 socat -t 5 - TCP:192.168.64.1:" +
                                std::to_string(port) + " > " + out.path.string() + "/$i 2>&1 & done; "
                                "for j in $(seq 1 100); do [ $(ss -Htn state syn-sent | wc -l) -ge 200 ] && break; sleep 0.2; done; "
                                "kill -CONT " + pid + "; wait",
                            60s);
    INFO(run.output << "\n--- daemon log ---\n" << daemon.log());
    int answered = 0;
    for (int i = 1; i <= 200; ++i) {
        const auto got = ankanet::test::read_text(out.path / std::to_string(i));
        if (got == "client-" + std::to_string(i)) ++answered;
        else UNSCOPED_INFO("client " << i << " got: " << got);
    }
    CHECK(answered == 200);
    CHECK(daemon.stop(SIGTERM) == 0);
    const auto log = daemon.log();
    INFO(log);
    CHECK(log.find("TCP 200 flows 0 blocked") != std::string::npos);
    // How many SYNs the half-open limit held back depends on how many the daemon reads before the
    // first handshakes finish: 127 in one CI run, none in another under ASan, where the connects
    // completed between bursts. Either way every client got through, which is what this case is
    // for; that SYNs over the limit are held, not reset, is asserted where it is certain, with
    // connects that hang (ankanetd_hostile_test.cpp, the SYN flood).
    CHECK(log.find(" SYNs held over the half-open limit") != std::string::npos);
}

TEST_CASE("ankanetd nat: half-close both ways — each side still hears the other after sending its FIN") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    temp_dir out{"ankanet-nat-half"};
    leased_guest guest;
    daemon_process daemon{{"--egress", "127.0.0.0/8", "--dns-upstream", "127.0.0.1:9", "--netns", guest.ns.path()}};
    lease(guest, daemon);

    SECTION("the guest closes first: the server reads to EOF, then answers") {
        const auto port = free_loopback_port();
        background_process server{"exec socat -t 10 TCP-LISTEN:" + std::to_string(port) +
                                  ",bind=127.0.0.1,reuseaddr SYSTEM:'cat > " + (out.path / "got").string() + "; echo answered-after-eof'"};
        REQUIRE(wait_until_succeeds(listening(port)));
        const auto client = run_in(guest.ns, "printf 'request-then-fin' | timeout 20 socat -t 10 - TCP:192.168.64.1:" + std::to_string(port), 25s);
        INFO(client.output << "\n--- daemon log ---\n" << daemon.log());
        CHECK(client.output == "answered-after-eof\n");
        CHECK(ankanet::test::read_text(out.path / "got") == "request-then-fin");
    }
    SECTION("the host closes first: the guest reads to EOF, then sends") {
        const auto port = free_loopback_port();
        background_process server{"exec socat -t 10 TCP-LISTEN:" + std::to_string(port) +
                                  ",bind=127.0.0.1,reuseaddr SYSTEM:'echo greeting-then-fin; exec 1>&-; cat > " +
                                  (out.path / "late").string() + "'"};
        REQUIRE(wait_until_succeeds(listening(port)));
        const auto client = run_in(guest.ns, "(sleep 1; printf 'sent-after-their-fin') | timeout 20 socat -t 10 - TCP:192.168.64.1:" +
                                                 std::to_string(port), 25s);
        INFO(client.output << "\n--- daemon log ---\n" << daemon.log());
        CHECK(client.output == "greeting-then-fin\n");
        REQUIRE(wait_until_succeeds("test \"$(cat " + (out.path / "late").string() + ")\" = sent-after-their-fin", 10s));
    }
    // Both sides closed: nothing of ours is left half-open on the host.
    REQUIRE(wait_until_succeeds("! ss -Htn state close-wait | grep -q 127.0.0.1", 10s));
}

TEST_CASE("ankanetd nat: iperf3 to host loopback through the gateway, both directions") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    leased_guest guest;
    daemon_process daemon{{"--egress", "127.0.0.0/8", "--dns-upstream", "127.0.0.1:9", "--netns", guest.ns.path()}};
    lease(guest, daemon);
    for (const std::string direction : {"", " -R"}) {
        const auto port = free_loopback_port();
        background_process server{"exec iperf3 -s -1 -B 127.0.0.1 -p " + std::to_string(port)};
        REQUIRE(wait_until_succeeds(listening(port)));
        const auto run = run_in(guest.ns, "timeout 30 iperf3 -c 192.168.64.1 -p " + std::to_string(port) + " -t 2 -f m" + direction, 40s);
        INFO(run.output << "\n--- daemon log ---\n" << daemon.log());
        CHECK(run.status == 0);
        CHECK(run.output.find("receiver") != std::string::npos);
    }
}

TEST_CASE("ankanetd nat: DNS at the gateway over UDP and TCP — an upstream name, a VM's name, the host's name") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    // The upstream resolver is the test's own dnsmasq on loopback, which knows one name. It takes
    // its port for UDP and TCP both: a port another test's connection holds for TCP is tried again
    // with another.
    std::uint16_t dns_port = 0;
    std::unique_ptr<background_process> upstream;
    for (int attempt = 0; attempt < 5 && !upstream; ++attempt) {
        dns_port = free_loopback_port(SOCK_DGRAM);
        upstream = std::make_unique<background_process>(
            "exec dnsmasq --keep-in-foreground --port=" + std::to_string(dns_port) +
            " --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --conf-file=/dev/null"
            " --address=/upstream.test/198.51.100.77 --address=/upstream-missing.test/ --pid-file=");
        const auto port = std::to_string(dns_port);
        if (!wait_until_succeeds("ss -Hlun | grep -q 127.0.0.1:" + port + " && ss -Hltn | grep -q 127.0.0.1:" + port, 10s)) {
            UNSCOPED_INFO("dnsmasq on port " << dns_port << ": " << upstream->log());
            upstream.reset();
        }
    }
    REQUIRE(upstream);
    leased_guest guest;
    daemon_process daemon{{"--egress", "127.0.0.0/8", "--dns-upstream", "127.0.0.1:" + std::to_string(dns_port), "--netns",
                           guest.ns.path()}};
    lease(guest, daemon, "guesty");
    for (const std::string transport : {"+notcp", "+tcp"}) {
        const auto ask = [&](const std::string& question) {
            const auto r = run_in(guest.ns, "dig @192.168.64.1 " + transport + " +time=3 +tries=2 +short " + question, 20s);
            INFO(transport << " " << question << ": " << r.output << "\n--- daemon log ---\n" << daemon.log());
            CHECK(r.status == 0);
            return r.output;
        };
        CHECK(ask("upstream.test A") == "198.51.100.77\n");
        CHECK(ask("guesty.ankanet.internal A") == guest.address + "\n");
        CHECK(ask("host.ankanet.internal A") == "192.168.64.1\n");
        CHECK(ask("-x " + guest.address) == "guesty.ankanet.internal.\n");
        // An unknown name upstream stays NXDOMAIN, and is never rebuilt.
        const auto nx = run_in(guest.ns, "dig @192.168.64.1 " + transport + " +time=3 +tries=2 nothing.upstream-missing.test A", 20s);
        CHECK(nx.output.find("status: NXDOMAIN") != std::string::npos);
    }
}

namespace {

/// A counter from the daemon's exit line, e.g. "offloads 12 in whole" with `before` = "offloads "
/// and `after` = " in whole"; -1 when the line lacks it.
long long exit_counter(const std::string& log, const std::string& pattern) {
    std::smatch m;
    if (!std::regex_search(log, m, std::regex{pattern})) return -1;
    return std::stoll(m[1].str());
}

} // namespace

TEST_CASE("ankanetd nat: offloads — 64 KiB TCP segments cross whole both ways, intact, and --no-offload turns them off") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    temp_dir files{"ankanet-nat-offload"};
    const std::string source = (files.path / "source").string();
    REQUIRE(run_command({"sh", "-c", "head -c 48M /dev/urandom > " + source}, 60s).status == 0);
    const bool offload = GENERATE(true, false);
    INFO((offload ? "offloads on (the default)" : "--no-offload"));

    leased_guest guest;
    std::vector<std::string> args{"--egress", "127.0.0.0/8", "--dns-upstream", "127.0.0.1:9", "--netns", guest.ns.path()};
    if (!offload) args.emplace_back("--no-offload");
    daemon_process daemon{args};
    lease(guest, daemon);
    // The guest's NIC says what its kernel may hand over: TSO with the virtio-net header, none without.
    const auto features = run_in(guest.ns, "ethtool -k eth0");
    REQUIRE(features.status == 0);
    CHECK(features.output.find(offload ? "tcp-segmentation-offload: on" : "tcp-segmentation-offload: off") != std::string::npos);

    // 48 MiB up and down through the NAT, checked byte for byte.
    round_trip(guest, daemon, files, source, 48u << 20, 100s);

    // The exit line counts what crossed whole: guest super-frames in, GSO super-frames out.
    REQUIRE(daemon.stop() == 0);
    const std::string log = daemon.log();
    INFO(log);
    const long long whole = exit_counter(log, "offloads ([0-9]+) in whole");
    const long long supers = exit_counter(log, "([0-9]+) super-frames to guests");
    REQUIRE(whole >= 0);
    REQUIRE(supers >= 0);
    if (offload) {
        // 48 MiB in 64 KiB super-frames is about 770 each way; most of the data must go so.
        CHECK(whole > 200);
        CHECK(supers > 200);
    } else {
        CHECK(whole == 0);
        CHECK(supers == 0);
    }
}

TEST_CASE("ankanetd nat: a guest's 64 KiB segments reach another guest whole through the switch, intact") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    temp_dir files{"ankanet-vm-offload"};
    const std::string source = (files.path / "source").string();
    REQUIRE(run_command({"sh", "-c", "head -c 32M /dev/urandom > " + source}, 60s).status == 0);
    leased_guest sender;
    leased_guest receiver;
    daemon_process daemon{{"--egress", "127.0.0.0/8", "--dns-upstream", "127.0.0.1:9", "--netns", sender.ns.path(), "--netns",
                           receiver.ns.path()}};
    lease(sender, daemon);
    lease(receiver, daemon);
    const auto received = (files.path / "received").string();
    {
        background_process sink{"exec ip netns exec " + receiver.ns.name() + " socat -u TCP-LISTEN:5001,reuseaddr CREATE:" + received};
        REQUIRE(wait_until_succeeds("ip netns exec " + receiver.ns.name() + " ss -Hltn | grep -q ':5001'"));
        const auto sent = run_in(sender.ns, "socat -u FILE:" + source + " TCP:" + receiver.address + ":5001", 100s);
        INFO(sent.output << "\n--- daemon log ---\n" << daemon.log());
        REQUIRE(sent.status == 0);
        REQUIRE(wait_until_succeeds("test \"$(stat -c %s " + received + " 2>/dev/null)\" = 33554432", 30s));
    }
    CHECK(sha256(received) == sha256(source));
    REQUIRE(daemon.stop() == 0);
    const std::string log = daemon.log();
    INFO(log);
    CHECK(exit_counter(log, "offloads ([0-9]+) in whole") > 200); // 32 MiB in at most 64 KiB frames: > 500 if all were
}
