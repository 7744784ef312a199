// End to end: a hostile guest against ankanetd (issue 11, items 1–3). One guest is the attacker: it
// runs scapy scripts (tests/e2e/hostile/*.py, Debian's python3-scapy under /usr/bin/python3) inside
// its own network namespace, sending raw Ethernet from its own MAC, as a VM could; the others are
// ordinary guests getting their addresses with busybox udhcpc. What must hold:
//   1. a forged DHCPRELEASE or DHCPDECLINE carrying another guest's chaddr and client identifier
//      does not take that guest's lease: it keeps its address and its connectivity, and a guest that
//      asks for that very address gets another;
//   2. one guest cannot starve the others: during and after 300 DORA exchanges with random
//      chaddrs, a DISCOVER flood, or gratuitous ARP claims for most of the range, other guests
//      still get a lease, and the daemon logs that the attacker hit a limit;
//   3. guest text (a host name, a DECLINE's message) cannot forge a log line or put a raw escape
//      sequence in the log;
//   4. (issue 12) a guest's SYN flood, UDP flow flood and spoofed senders hit that guest's limits
//      only: another guest's connections through the NAT all go through meanwhile, nothing
//      spoofed opens a flow, and the log says so in a bounded number of lines.
// Needs root, /dev/net/tun, iproute2, ping, udhcpc and scapy: skips elsewhere, fails in CI without
// them. Every script is bounded in count and time (see each script's header); all traffic stays in
// the namespaces this test creates, each removed at the end.
#include "../support/ankanetd_process.hpp"
#include "../support/dhcp_clients.hpp"
#include "../support/netns.hpp"
#include "../support/require_guests.hpp"
#include "../support/skip.hpp"

#include <catch2/catch.hpp>

#include <signal.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>
#include "../support/temp_dir.hpp"
#include "../support/nat_hosts.hpp" // after temp_dir.hpp, whose read_text it uses

using ankanet::test::read_text;

namespace {

using namespace std::chrono_literals;
using ankanet::test::background_process;
using ankanet::test::command_result;
using ankanet::test::free_loopback_port;
using ankanet::test::wait_until_succeeds;
using ankanet::test::daemon_process;
using ankanet::test::dhcp_client_kind;
using ankanet::test::dhcp_client_options;
using ankanet::test::obtain_lease;
using ankanet::test::run_command;
using ankanet::test::run_in;
using ankanet::test::scoped_netns;
using ankanet::test::temp_dir;
using ankanet::test::wait_for_interface;

/// Debian's interpreter, which has python3-scapy: the python3 first on PATH may be another one.
constexpr const char* python = "/usr/bin/python3";
const std::filesystem::path hostile_scripts = std::filesystem::path{__FILE__}.parent_path() / "hostile";
const std::string gateway = "192.168.64.1";

/// What is missing to run the scapy scripts, or empty.
std::string missing_scapy() {
    if (!std::filesystem::exists(hostile_scripts / "hostile_link.py")) return "the scripts in " + hostile_scripts.string();
    try {
        if (run_command({python, "-B", "-c", "import scapy.all"}, 30s).status != 0) {
            return std::string{"scapy for "} + python + " (Debian package python3-scapy)";
        }
    } catch (const std::exception&) {
        return python;
    }
    return {};
}

#define ANKANET_REQUIRE_SCAPY()                                                                     \
    do {                                                                                            \
        const auto scapy_ = missing_scapy();                                                        \
        ANKANET_REQUIRE_ENVIRONMENT(scapy_.empty(), "hostile guests need " << scapy_);              \
    } while (false)

/// Runs hostile/`script` with `args` inside `ns`; its output ends with one JSON line.
command_result run_script(const scoped_netns& ns, const std::string& script, const std::string& args,
                          std::chrono::seconds limit) {
    return run_in(ns, std::string{"exec "} + python + " -B '" + (hostile_scripts / script).string() + "' " + args, limit);
}

/// The last line of a script's output that is a JSON object.
std::string json_line(const std::string& output) {
    std::istringstream in{output};
    std::string line, last;
    while (std::getline(in, line)) {
        if (line.starts_with("{")) last = line;
    }
    return last;
}

/// The text after `"key": ` in a flat JSON object (json.dumps output), up to the next ',' or '}'
/// outside brackets and quotes; nullopt without the key.
std::optional<std::string> json_raw(const std::string& json, const std::string& key) {
    const auto at = json.find("\"" + key + "\": ");
    if (at == std::string::npos) return std::nullopt;
    std::size_t i = at + key.size() + 4;
    const std::size_t begin = i;
    int depth = 0;
    bool quoted = false;
    for (; i < json.size(); ++i) {
        const char c = json[i];
        if (quoted) {
            if (c == '\\') ++i;
            else if (c == '"') quoted = false;
            continue;
        }
        if (c == '"') quoted = true;
        else if (c == '[') ++depth;
        else if (c == ']') --depth;
        else if ((c == ',' || c == '}') && depth == 0) break;
    }
    return json.substr(begin, i - begin);
}

long json_int(const std::string& json, const std::string& key) {
    const auto raw = json_raw(json, key);
    if (!raw || raw->empty() || !(std::isdigit(static_cast<unsigned char>(raw->front())) || raw->front() == '-')) return -1;
    return std::stol(*raw);
}

/// A JSON string value without its quotes; empty for null or a missing key.
std::string json_string(const std::string& json, const std::string& key) {
    const auto raw = json_raw(json, key);
    if (!raw || raw->size() < 2 || raw->front() != '"') return {};
    return raw->substr(1, raw->size() - 2);
}

/// The strings of a JSON list of strings.
std::vector<std::string> json_strings(const std::string& json, const std::string& key) {
    std::vector<std::string> values;
    const auto raw = json_raw(json, key);
    if (!raw) return values;
    std::size_t at = 0;
    while ((at = raw->find('"', at)) != std::string::npos) {
        const auto end = raw->find('"', at + 1);
        if (end == std::string::npos) break;
        values.push_back(raw->substr(at + 1, end - at - 1));
        at = end + 1;
    }
    return values;
}

std::string hex(std::string_view bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (const char c : bytes) {
        const auto b = static_cast<unsigned char>(c);
        out.push_back(digits[b >> 4]);
        out.push_back(digits[b & 0x0f]);
    }
    return out;
}

/// `text` with every control character but the newline, DEL and bytes from 0x80 as \xNN: a log
/// shown in a test report whatever it holds.
std::string visible(std::string_view text) {
    std::string out;
    for (const char c : text) {
        const auto b = static_cast<unsigned char>(c);
        if (c == '\n' || (b >= 0x20 && b < 0x7f)) {
            out.push_back(c);
        } else {
            out += "\\x" + hex(std::string_view{&c, 1});
        }
    }
    return out;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in{text};
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}
std::string port_name(const scoped_netns& ns) { return "netns:" + ns.path() + ":eth0"; }

/// A daemon log line without its timestamp and level ("2026-12-08T01:02:03.045Z warn  "): the
/// message, "ankanetd: ...". A line without that prefix is returned whole (and then fails a check
/// that it starts with "ankanetd: ").
std::string message_of(const std::string& line) {
    static const std::regex prefix{R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn |info |debug) )"};
    std::smatch match;
    if (std::regex_search(line, match, prefix)) return match.suffix();
    return line;
}

/// `ping -c 5` from `from` to `to`; the output, which says the loss.
command_result ping(const scoped_netns& from, const std::string& to) {
    return run_in(from, "ping -c 5 -i 0.2 -W 2 " + to, 20s);
}

bool no_loss(const command_result& ping) {
    return ping.status == 0 && ping.output.find(" 0% packet loss") != std::string::npos;
}

/// Runs udhcpc once in `ns`, asking (option 50) for `wanted`; the address it was given, or "".
/// The support's hook records the lease (tests/support/dhcp_clients.hpp); -r is added to its
/// one-shot command line.
std::string udhcpc_requesting(const scoped_netns& ns, const std::string& wanted, std::string& output) {
    temp_dir state;
    dhcp_client_options options;
    options.limit = 20s;
    options.hostname = "asks-for-" + wanted;
    std::replace(options.hostname.begin(), options.hostname.end(), '.', '-');
    const auto command = ankanet::test::detail::prepare_run(dhcp_client_kind::udhcpc, state.path, "eth0", options, true) +
                         " -r " + wanted;
    output = run_in(ns, command, 25s).output;
    std::string address;
    for (const auto& event : ankanet::test::detail::read_events(state.path)) {
        if (ankanet::test::is_lease_event(event.event) && !event.address.empty()) address = event.address;
    }
    return address;
}

/// The daemon's log lines about `port` ("ankanetd: PORT: ...") that say one of `words` (compared in
/// lower case): how the daemon reports that a VM hit one of its limits, or had messages dropped.
std::vector<std::string> port_lines_saying(const std::string& log, const std::string& port,
                                           const std::vector<std::string>& words) {
    std::vector<std::string> found;
    const std::string prefix = "ankanetd: " + port + ": ";
    for (const auto& whole : lines_of(log)) {
        const auto line = message_of(whole);
        if (!line.starts_with(prefix)) continue;
        std::string lower = line.substr(prefix.size());
        std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        if (std::any_of(words.begin(), words.end(), [&](const std::string& w) { return lower.find(w) != std::string::npos; })) {
            found.push_back(line);
        }
    }
    return found;
}

} // namespace

TEST_CASE("ankanetd hostile: a forged RELEASE or DECLINE with another guest's chaddr and client id does not take its lease") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    ANKANET_REQUIRE_SCAPY();
    const std::string kind = GENERATE(as<std::string>{}, "release", "decline");
    INFO("forged " << kind);
    temp_dir files;
    const auto leases = files.path / "leases";
    scoped_netns victim;
    scoped_netns attacker;
    scoped_netns third;
    const std::string victim_mac = "52:54:00:b1:00:01";
    daemon_process daemon{{"--mode", "shared", "--leases", leases.string(), "--netns", victim.path() + ",mac=" + victim_mac,
                           "--netns", attacker.path() + ",mac=52:54:00:b1:00:02", "--netns", third.path() + ",mac=52:54:00:b1:00:03"}};
    for (const auto* ns : {&victim, &attacker, &third}) REQUIRE(wait_for_interface(*ns, "eth0"));
    REQUIRE(run_in(attacker, "ip link set lo up && ip link set eth0 up").status == 0);

    const auto leased = obtain_lease(victim, "eth0", dhcp_client_kind::udhcpc, 20s, "victim");
    INFO("--- victim's udhcpc ---\n" << leased.output);
    REQUIRE(leased.lease);
    const auto address = leased.lease->address;
    INFO("the victim " << victim_mac << " holds " << address);
    REQUIRE(no_loss(ping(victim, gateway)));

    // The attacker sends, from its own MAC, the victim's RELEASE (ciaddr) or DECLINE (option 50),
    // with the victim's chaddr and the client identifier udhcpc sends (01 + MAC).
    const auto forged = run_script(attacker, "dhcp_forge.py",
                                   "--iface eth0 --type " + kind + " --victim-mac " + victim_mac + " --address " + address +
                                       " --server " + gateway + " --count 3",
                                   30s);
    INFO("--- dhcp_forge.py ---\n" << forged.output);
    REQUIRE(forged.status == 0);
    REQUIRE(json_int(json_line(forged.output), "sent") > 0);
    std::this_thread::sleep_for(500ms);

    // A third guest asks for the victim's very address (udhcpc -r): it must be given another one.
    std::string third_output;
    const auto third_address = udhcpc_requesting(third, address, third_output);
    INFO("--- third guest's udhcpc ---\n" << third_output);
    INFO("the third guest got '" << third_address << "'");
    CHECK_FALSE(third_address.empty());
    CHECK(third_address != address);

    // The victim still reaches the gateway and the third guest, ARP resolved afresh.
    run_in(victim, "ip neigh flush dev eth0");
    const auto to_gateway = ping(victim, gateway);
    INFO("--- victim pings the gateway ---\n" << to_gateway.output);
    CHECK(no_loss(to_gateway));
    if (!third_address.empty()) {
        const auto to_third = ping(victim, third_address);
        INFO("--- victim pings the third guest ---\n" << to_third.output);
        CHECK(no_loss(to_third));
    }

    // The victim's lease is still in the lease file, and the daemon released or declined nothing.
    const auto file = read_text(leases);
    INFO("--- lease file ---\n" << file);
    bool victim_holds = false;
    for (const auto& line : lines_of(file)) {
        if (line.starts_with(victim_mac + " ") && line.find(" " + address + " ") != std::string::npos) victim_holds = true;
    }
    CHECK(victim_holds);
    CHECK(daemon.stop(SIGTERM) == 0);
    const auto log = daemon.log();
    INFO("--- daemon log ---\n" << log);
    CHECK(log.find("DHCP released " + address + " ") == std::string::npos);
    CHECK(log.find("DHCP declined " + address + " ") == std::string::npos);
    // ... and says that the attacker's messages were dropped.
    CHECK_FALSE(port_lines_saying(log, port_name(attacker), {"dhcp message"}).empty());
}

TEST_CASE("ankanetd hostile: one guest's DHCP or ARP flood does not starve the pool, and its limit is logged") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    ANKANET_REQUIRE_SCAPY();
    // Each attack alone starves today's pool (issue 11, item 2), so each gets a daemon of its own.
    // A DHCP attack pretends to be a new client each time: with a random chaddr (what the issue
    // saw), or — against a server that checks chaddr — with its own chaddr and a random client
    // identifier (the pool keys leases on the client identifier).
    //   dora            300 complete exchanges (bounded: 20 s);
    //   discover-flood  300 DISCOVERs at 300/s: every offer holds an address for the offer time;
    //   arp-claims      gratuitous ARP for the whole range, twice: a static address is kept out of
    //                   the pool while in use.
    struct attack_case {
        const char* name;
        const char* script;
        const char* arguments;
        /// What the daemon's log line about the attacker says (one of, lower case).
        std::vector<std::string> says;
    };
    const auto attack = GENERATE(
        attack_case{"dora, random chaddr", "dhcp_starve.py", "--exchanges 300 --seconds 20 --vary chaddr",
                    {"limit", "another mac's name"}},
        attack_case{"dora, own chaddr, random client id", "dhcp_starve.py", "--exchanges 300 --seconds 20 --vary client-id",
                    {"limit"}},
        attack_case{"discover-flood, random chaddr", "dhcp_flood.py", "--count 300 --rate 300 --seconds 10 --vary chaddr",
                    {"limit", "another mac's name"}},
        attack_case{"discover-flood, own chaddr, random client id", "dhcp_flood.py",
                    "--count 300 --rate 300 --seconds 10 --vary client-id", {"limit"}},
        attack_case{"arp-claims", "arp_claims.py", "--first 192.168.64.2 --last 192.168.64.254 --rounds 2", {"limit"}});
    INFO("attack: " << attack.name);
    scoped_netns attacker;
    scoped_netns newcomer;
    scoped_netns late;
    const std::string attacker_mac = "52:54:00:b2:00:01";
    daemon_process daemon{{"--mode", "shared", "--netns", attacker.path() + ",mac=" + attacker_mac, "--netns",
                           newcomer.path() + ",mac=52:54:00:b2:00:02", "--netns", late.path() + ",mac=52:54:00:b2:00:03"}};
    for (const auto* ns : {&attacker, &newcomer, &late}) REQUIRE(wait_for_interface(*ns, "eth0"));
    REQUIRE(run_in(attacker, "ip link set lo up && ip link set eth0 up").status == 0);

    // The attack runs while a new guest asks for a lease (udhcpc starts a second into it).
    auto attacking = std::async(std::launch::async, [&] {
        return run_script(attacker, attack.script, std::string{"--iface eth0 "} + attack.arguments, 40s);
    });
    std::this_thread::sleep_for(1s);
    const auto during = obtain_lease(newcomer, "eth0", dhcp_client_kind::udhcpc, 20s, "newcomer");
    const auto attacked = attacking.get();
    INFO("--- " << attack.script << " ---\n" << attacked.output);
    REQUIRE(attacked.status == 0);
    const auto result = json_line(attacked.output);
    REQUIRE_FALSE(result.empty());
    const auto acked = json_strings(result, "addresses");
    const auto offered = json_strings(result, "offered");
    INFO("the attacker was ACKed " << std::set<std::string>(acked.begin(), acked.end()).size() << " and offered "
                                   << offered.size() << " distinct addresses");
    INFO("--- newcomer's udhcpc (during the attack) ---\n" << during.output);
    CHECK(during.lease.has_value());

    // After the attack, one more guest still gets a lease, and it works.
    const auto after = obtain_lease(late, "eth0", dhcp_client_kind::udhcpc, 20s, "late");
    INFO("--- late guest's udhcpc (after the attack) ---\n" << after.output);
    CHECK(after.lease.has_value());
    if (after.lease) CHECK(no_loss(ping(late, gateway)));
    if (during.lease && after.lease) CHECK(during.lease->address != after.lease->address);

    CHECK(daemon.stop(SIGTERM) == 0);
    const auto log = daemon.log();
    INFO("--- daemon log ---\n" << log);
    CHECK_FALSE(port_lines_saying(log, port_name(attacker), attack.says).empty());
}

TEST_CASE("ankanetd hostile: a guest playing DHCP server neither hears its neighbours' DHCP nor reaches them") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    ANKANET_REQUIRE_SCAPY();
    scoped_netns victim;
    scoped_netns rogue;
    const std::string victim_mac = "52:54:00:b4:00:01";
    const std::string rogue_mac = "52:54:00:b4:00:02";
    daemon_process daemon{{"--mode", "shared", "--netns", victim.path() + ",mac=" + victim_mac, "--netns",
                           rogue.path() + ",mac=" + rogue_mac}};
    for (const auto* ns : {&victim, &rogue}) REQUIRE(wait_for_interface(*ns, "eth0"));
    REQUIRE(run_in(rogue, "ip link set lo up && ip link set eth0 up").status == 0);
    REQUIRE(run_in(victim, "ip link set lo up && ip link set eth0 up").status == 0);

    // The rogue offers itself as router and server, broadcast and to the victim, while the victim
    // watches who answers it and asks for a lease once its watch listens (scapy takes seconds to
    // start on a loaded machine, and a watch that starts late misses the gateway's replies).
    const auto ready = std::filesystem::temp_directory_path() /
                       ("ankanet-dhcp-watch-" + std::to_string(::getpid()) + ".ready");
    std::filesystem::remove(ready);
    auto attacking = std::async(std::launch::async, [&] {
        return run_script(rogue, "dhcp_rogue.py", "--iface eth0 --role server --seconds 12 --rate 50 --victim-mac " + victim_mac,
                          40s);
    });
    auto watching = std::async(std::launch::async, [&] {
        return run_script(victim, "dhcp_rogue.py", "--iface eth0 --role watch --seconds 12 --ready-file " + ready.string(), 40s);
    });
    for (int i = 0; i < 300 && !std::filesystem::exists(ready); ++i) std::this_thread::sleep_for(100ms);
    CHECK(std::filesystem::exists(ready));
    std::filesystem::remove(ready);
    const auto leased = obtain_lease(victim, "eth0", dhcp_client_kind::udhcpc, 20s, "victim");
    const auto attacked = attacking.get();
    const auto watched = watching.get();
    INFO("--- rogue ---\n" << attacked.output);
    INFO("--- victim's watch ---\n" << watched.output);
    INFO("--- victim's udhcpc ---\n" << leased.output);
    REQUIRE(attacked.status == 0);
    REQUIRE(watched.status == 0);
    const auto attack = json_line(attacked.output);
    const auto watch = json_line(watched.output);
    CHECK(json_int(attack, "sent") > 0);
    // The victim's DISCOVER and REQUEST were the gateway's alone: none reached the rogue.
    CHECK(json_int(attack, "client_messages_seen") == 0);
    // The victim heard the gateway's OFFER and ACK, and not one of the rogue's replies.
    CHECK(json_int(watch, "replies") >= 2);
    CHECK(json_string(watch, "replies_from").find(rogue_mac) == std::string::npos);
    REQUIRE(leased.lease);
    CHECK(leased.lease->router == gateway);
    CHECK(leased.lease->server_id == gateway);
    CHECK(no_loss(ping(victim, gateway)));

    CHECK(daemon.stop(SIGTERM) == 0);
    const auto log = daemon.log();
    INFO("--- daemon log ---\n" << log);
    // Reported once (per minute), not once per reply.
    CHECK(port_lines_saying(log, port_name(rogue), {"dhcp server message"}).size() == 1);
}

TEST_CASE("ankanetd hostile: a host name or DECLINE message with a newline and ANSI escapes forges no log line") {
    ANKANET_REQUIRE_NETNS();
    ANKANET_REQUIRE_SCAPY();
    scoped_netns attacker;
    daemon_process daemon{{"--mode", "shared", "--netns", attacker.path() + ",mac=52:54:00:b3:00:01"}};
    REQUIRE(wait_for_interface(attacker, "eth0"));
    REQUIRE(run_in(attacker, "ip link set lo up && ip link set eth0 up").status == 0);

    const std::string hostname = "\nankanetd: FORGED DHCP leased 192.168.64.99 to 52:54:00:00:00:99\x1b[31m RED\x1b[0m";
    const std::string message = "\r\nankanetd: FORGED decline\x1b]0;title\x07";
    const auto injected = run_script(attacker, "dhcp_inject.py",
                                     "--iface eth0 --hostname-hex " + hex(hostname) + " --message-hex " + hex(message), 30s);
    INFO("--- dhcp_inject.py ---\n" << injected.output);
    REQUIRE(injected.status == 0);
    const auto result = json_line(injected.output);
    CHECK_FALSE(json_string(result, "acked").empty());
    CHECK(json_raw(result, "declined") == std::optional<std::string>{"true"});
    std::this_thread::sleep_for(300ms); // the DECLINE, which has no reply, is handled

    CHECK(daemon.stop(SIGTERM) == 0);
    const auto log = daemon.log();
    INFO("--- daemon log, control characters but newlines shown as \\xNN ---\n" << visible(log));
    for (const auto& whole : lines_of(log)) {
        INFO("line: " << visible(whole));
        const auto line = message_of(whole);
        CHECK_FALSE(line.starts_with("ankanetd: FORGED"));
        CHECK(line.starts_with("ankanetd: "));
    }
    CHECK(log.find('\x1b') == std::string::npos);
    CHECK(log.find('\r') == std::string::npos);
    CHECK(log.find('\x07') == std::string::npos);
    // The text was logged, escaped: the host name with the offer and the lease, the message with the decline.
    CHECK(log.find("(\\x0aankanetd: FORGED DHCP leased 192.168.64.99 to 52:54:00:00:00:99\\x1b[31m RED\\x1b[0m)") !=
          std::string::npos);
    CHECK(log.find(": \\x0d\\x0aankanetd: FORGED decline\\x1b]0;title\\x07") != std::string::npos);
}

TEST_CASE("ankanetd hostile: a guest's SYN flood, UDP flow flood and spoofed senders stay within its own limits") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    ANKANET_REQUIRE_SCAPY();
    // On host loopback: a listener that never accepts (its backlog full, the translator's connects
    // to it hang, so every SYN to it stays half-open until the connect timeout), and TCP and UDP
    // echo servers for the other guest. Every server stops by itself.
    const auto hang_port = std::to_string(free_loopback_port());
    const auto echo_port = std::to_string(free_loopback_port());
    const auto udp_port = std::to_string(free_loopback_port(SOCK_DGRAM));
    background_process hang{std::string{"exec "} + python +
                            " -c \"import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
                            "socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', " + hang_port + ")); s.listen(0); time.sleep(60)\""};
    background_process echo{"exec timeout 60 socat TCP-LISTEN:" + echo_port + ",bind=127.0.0.1,reuseaddr,fork EXEC:/bin/cat"};
    background_process udp_echo{"exec timeout 60 socat -T 5 UDP4-LISTEN:" + udp_port + ",bind=127.0.0.1,reuseaddr,fork EXEC:/bin/cat"};
    REQUIRE(wait_until_succeeds("ss -Hltn | grep -q 127.0.0.1:" + hang_port));
    REQUIRE(wait_until_succeeds("ss -Hltn | grep -q 127.0.0.1:" + echo_port));

    scoped_netns attacker;
    scoped_netns victim;
    daemon_process daemon{{"--egress", "127.0.0.0/8", "--dns-upstream", "127.0.0.1:9", "--max-flows-per-vm", "64",
                           "--netns", attacker.path() + ",mac=52:54:00:b3:00:01", "--netns",
                           victim.path() + ",mac=52:54:00:b3:00:02"}};
    for (const auto* ns : {&attacker, &victim}) {
        REQUIRE(wait_for_interface(*ns, "eth0"));
        const auto got = obtain_lease(*ns, "eth0", dhcp_client_kind::udhcpc, 20s, ns == &attacker ? "attacker" : "victim");
        INFO(got.output);
        REQUIRE(got.lease.has_value());
    }

    // The attacker: 600 SYNs at the hanging listener, 600 UDP flows, then 200 SYNs and 200
    // datagrams from an address outside the subnet. The victim, starting a second later, opens 30
    // connections and sends 5 datagrams, one after another, while the attacker's half-open flows
    // and its UDP flows sit at their limits (a hanging connect lasts the translator's 10 s).
    auto attacking = std::async(std::launch::async, [&] {
        std::string output;
        for (const std::string& attack : {"--attack syn --port " + hang_port + " --count 600",
                                         "--attack udp --port " + udp_port + " --count 600",
                                         "--attack spoofed --port " + echo_port + " --count 200 --source 10.99.0.1"}) {
            output += run_script(attacker, "nat_flood.py", "--iface eth0 --seconds 20 " + attack, 40s).output;
        }
        return output;
    });
    std::this_thread::sleep_for(1s);
    const auto tcp = run_in(victim,
                            "ok=0; for i in $(seq 1 30); do [ \"$(printf victim-$i | timeout 5 socat -t 2 - TCP:" + gateway + ":" +
                                echo_port + " 2>&1)\" = victim-$i ] && ok=$((ok+1)); done; echo tcp-answered=$ok",
                            120s);
    const auto udp = run_in(victim,
                            "ok=0; for i in $(seq 1 5); do [ \"$(printf victim-$i | timeout 5 socat -t 2 - UDP4:" + gateway + ":" +
                                udp_port + " 2>&1)\" = victim-$i ] && ok=$((ok+1)); done; echo udp-answered=$ok",
                            60s);
    const auto attack_output = attacking.get();
    INFO("--- nat_flood.py ---\n" << attack_output);
    CHECK(tcp.output.find("tcp-answered=30") != std::string::npos);
    CHECK(udp.output.find("udp-answered=5") != std::string::npos);
    INFO("victim: " << tcp.output << udp.output);

    CHECK(daemon.stop(SIGTERM) == 0);
    const auto log = daemon.log();
    INFO("--- daemon log ---\n" << log);
    const auto lines = lines_of(log);
    std::fprintf(stderr, "nat flood: the victim %s %s; the daemon's last line: %s\n", tcp.output.c_str(), udp.output.c_str(),
                 lines.empty() ? "" : lines.back().c_str());
    // The exit line's counters: SYNs held over the attacker's half-open limit, UDP flows over its
    // flow limit, and every spoofed frame dropped by both translators.
    const auto number_before = [&](const std::string& words) -> long {
        const auto at = log.rfind(words);
        if (at == std::string::npos) return -1;
        const auto start = log.find_last_of(" (", at - 1) + 1;
        return std::stol(log.substr(start, at - start));
    };
    CHECK(number_before(" SYNs held over the half-open limit") > 0);
    const std::regex udp_line{R"(UDP (\d+) flows \d+ out \d+ in (\d+) blocked \(.*, (\d+) from spoofed senders\))"};
    std::smatch m;
    REQUIRE(std::regex_search(log, m, udp_line));
    CHECK(std::stol(m[2]) > 0);    // the attacker's UDP flows over its limit of 64
    CHECK(std::stol(m[3]) == 200); // every spoofed datagram
    CHECK(std::stol(m[1]) <= 64 + 5); // the attacker's 64 and the victim's 5
    const auto spoofed_syns = log.find(" from spoofed senders, ");
    REQUIRE(spoofed_syns != std::string::npos);
    CHECK(number_before(" from spoofed senders, ") == 200);
    // Refused flows are logged at most once a second per VM and kind: the attacker's 1400 frames
    // leave a few lines, not hundreds.
    const auto attacker_lines = port_lines_saying(log, port_name(attacker), {"refused", "limit"});
    CHECK_FALSE(attacker_lines.empty());
    CHECK(attacker_lines.size() < 60);
    CHECK(port_lines_saying(log, port_name(victim), {"refused", "limit"}).empty());
}

TEST_CASE("ankanetd hostile: a guest's ARP claims in another VM's name do not move that VM's port forward") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    ANKANET_REQUIRE_SCAPY();
    scoped_netns attacker;
    scoped_netns victim;
    const auto port = std::to_string(free_loopback_port());
    daemon_process daemon{{"--egress", "127.0.0.0/8", "--dns-upstream", "127.0.0.1:9", "--netns",
                           attacker.path() + ",mac=52:54:00:b4:00:01", "--netns", victim.path() + ",mac=52:54:00:b4:00:02",
                           "--forward", "tcp:" + port + ":8080@" + victim.name()}};
    std::string victim_address;
    for (const auto* ns : {&attacker, &victim}) {
        REQUIRE(wait_for_interface(*ns, "eth0"));
        const auto got = obtain_lease(*ns, "eth0", dhcp_client_kind::udhcpc, 20s);
        INFO(got.output);
        REQUIRE(got.lease.has_value());
        if (ns == &victim) victim_address = got.lease->address;
    }
    // Both run a server on 8080 that names its guest, so a stolen connection would show.
    background_process victim_server{"ip netns exec " + victim.name() +
                                     " timeout 60 socat TCP-LISTEN:8080,reuseaddr,fork SYSTEM:'echo victim'"};
    background_process attacker_server{"ip netns exec " + attacker.name() +
                                       " timeout 60 socat TCP-LISTEN:8080,reuseaddr,fork SYSTEM:'echo attacker'"};
    REQUIRE(wait_until_succeeds("ip netns exec " + victim.name() + " ss -Hltn | grep -q ':8080'"));
    REQUIRE(wait_until_succeeds("ip netns exec " + attacker.name() + " ss -Hltn | grep -q ':8080'"));
    const auto fetch = [&] {
        return run_command({"sh", "-c", "timeout 5 socat -T 3 - TCP:127.0.0.1:" + port + " </dev/null 2>&1"}, 10s).output;
    };
    CHECK(fetch() == "victim\n");

    // The attacker claims two free addresses in the victim's name, and the victim's own address
    // in its own; it also takes one of them on its interface, so a forward moved there would
    // reach its server.
    REQUIRE(run_in(attacker, "ip addr add 192.168.64.200/24 dev eth0").status == 0);
    const auto steal = run_script(attacker, "forward_steal.py",
                                  "--iface eth0 --victim-mac 52:54:00:b4:00:02 --victim-ip " + victim_address +
                                      " --addresses 192.168.64.200,192.168.64.201 --rounds 5",
                                  40s);
    INFO("--- forward_steal.py ---\n" << steal.output);
    REQUIRE(json_int(json_line(steal.output), "sent") == 15);

    // The forward still leads to the victim, every time.
    for (int i = 0; i < 3; ++i) CHECK(fetch() == "victim\n");
    CHECK(daemon.stop(SIGTERM) == 0);
    const auto log = daemon.log();
    INFO("--- daemon log ---\n" << log);
    CHECK(log.find("forward 1: refused") == std::string::npos);
    // The claim of the victim's leased address was refereed as a conflict and dropped.
    const auto dropped = port_lines_saying(log, port_name(attacker), {"arp dropped"});
    CHECK(std::any_of(dropped.begin(), dropped.end(), [&](const std::string& line) {
        return line.find("claims " + victim_address + ", which is leased to 52:54:00:b4:00:02") != std::string::npos;
    }));
}
