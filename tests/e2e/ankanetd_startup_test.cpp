// End to end: what the real ankanetd does with its files at start-up. Operator mistakes — a lease
// path it cannot write, the pcap over the lease file, a lease file that does not hold together —
// are refused with one clear line before any file is touched, and a refused start leaves every file
// as it was; the pcap is created only by a start that succeeds. Random MACs are remembered beside
// the leases, so a restarted daemon (SIGTERM or SIGKILL) gives each namespace VM its MAC and so its
// lease back. The tests with namespace guests need root, /dev/net/tun, ip, ping and the DHCP
// clients; they skip elsewhere and fail in CI without them. The others run anywhere.
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
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using ankanet::test::daemon_process;
using ankanet::test::dhcp_client_kind;
using ankanet::test::dhcp_client_options;
using ankanet::test::obtain_lease;
using ankanet::test::read_text;
using ankanet::test::run_in;
using ankanet::test::scoped_netns;
using ankanet::test::temp_dir;
using ankanet::test::wait_for_interface;

void write_bytes(const fs::path& p, const std::string& bytes) {
    std::ofstream out{p, std::ios::binary | std::ios::trunc};
    out << bytes;
}

std::set<std::string> listing(const fs::path& dir) {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator{dir}) names.insert(entry.path().filename().string());
    return names;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in{text};
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

/// Starts the daemon and waits (bounded) for it to exit by itself: its exit status and its log.
struct finished_run {
    int status;
    std::string log;
};
finished_run run_until_exit(std::vector<std::string> args) {
    daemon_process daemon{std::move(args)};
    const int status = daemon.stop(0 /* just wait */, 10s);
    return {status, daemon.log()};
}

/// Something a pcap file might hold, which a refused start must leave as it is.
const std::string pcap_bytes = std::string{"\xd4\xc3\xb2\xa1\x02\x00\x04\x00", 8} + "an earlier capture, not to be lost\n";

/// A lease file holding one lease that runs out in 2033.
const std::string one_lease = "ankanet-leases 1\n52:54:00:00:00:01 - 192.168.64.7 2000000000 kept\n";

/// Waits (bounded) until a stopped daemon's TAP has left the namespace.
bool wait_for_interface_gone(const scoped_netns& ns, const std::string& ifname) {
    for (int attempt = 0; attempt < 200; ++attempt) {
        if (run_in(ns, "ip link show " + ifname).status != 0) return true;
        std::this_thread::sleep_for(50ms);
    }
    return false;
}

/// The MAC of eth0 in `ns`, as the guest's kernel has it.
std::string guest_mac(const scoped_netns& ns) {
    auto shown = run_in(ns, "cat /sys/class/net/eth0/address");
    REQUIRE(shown.status == 0);
    while (!shown.output.empty() && shown.output.back() == '\n') shown.output.pop_back();
    return shown.output;
}

} // namespace

TEST_CASE("ankanetd start-up: a --leases path that cannot be written is exit 1 with one clear line, and nothing is created") {
    struct unwritable {
        const char* path;
        const char* why;
    };
    const auto c = GENERATE(unwritable{"/nonexistent/leases", "directory /nonexistent does not exist"},
                            unwritable{"/proc/x", "directory /proc does not let files be created in it"});
    temp_dir dir;
    const auto pcap = dir.path / "capture.pcap";
    write_bytes(pcap, pcap_bytes);
    const auto run = run_until_exit({"--leases", c.path, "--pcap", pcap.string()});
    INFO(run.log);
    CHECK(run.status == 1);
    const auto lines = lines_of(run.log);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find(std::string{"--leases "} + c.path + ": cannot keep the lease file there: " + c.why) !=
          std::string::npos);
    CHECK_FALSE(fs::exists(c.path));
    CHECK_FALSE(fs::exists(std::string{c.path} + ".macs"));
    CHECK_FALSE(fs::exists(std::string{c.path} + ".tmp"));
    CHECK(read_text(pcap) == pcap_bytes);
    CHECK(listing(dir.path) == std::set<std::string>{"capture.pcap"});
}

TEST_CASE("ankanetd start-up: --pcap naming the lease file (or the MAC state or secret file) is refused, and the file is unchanged") {
    temp_dir dir;
    const auto leases = (dir.path / "leases").string();
    const auto secret = (dir.path / "secret").string();
    write_bytes(leases, one_lease);
    write_bytes(leases + ".macs", "ankanet-macs 1\n02:00:00:00:00:01 netns:/run/netns/vm1:eth0\n");
    write_bytes(secret, "00112233445566778899aabbccddeeff\n");
    fs::create_symlink(leases, dir.path / "link-to-leases");
    const auto before = listing(dir.path);

    struct mistake {
        std::vector<std::string> args;
        std::string line;
    };
    const std::vector<mistake> mistakes{
        {{"--pcap", leases, "--leases", leases}, "--pcap " + leases + " and --leases " + leases + " are the same file"},
        {{"--leases", leases, "--pcap", (dir.path / "link-to-leases").string()},
         "--pcap " + (dir.path / "link-to-leases").string() + " and --leases " + leases + " are the same file"},
        {{"--leases", leases, "--pcap", leases + ".macs"},
         "--pcap " + leases + ".macs and the MAC state file " + leases + ".macs (of --leases) are the same file"},
        {{"--leases", leases, "--pcap", secret, "--mac-secret", secret},
         "--pcap " + secret + " and --mac-secret " + secret + " are the same file"},
        {{"--leases", leases, "--mac-secret", leases}, "--leases " + leases + " and --mac-secret " + leases + " are the same file"},
    };
    for (const auto& m : mistakes) {
        const auto run = run_until_exit(m.args);
        INFO(run.log);
        CHECK(run.status == 2);
        const auto lines = lines_of(run.log);
        REQUIRE(lines.size() == 1);
        CHECK(lines[0].find(m.line + "; give each a file of its own") != std::string::npos);
        CHECK(read_text(leases) == one_lease);  // byte for byte
        CHECK(read_text(leases + ".macs") == "ankanet-macs 1\n02:00:00:00:00:01 netns:/run/netns/vm1:eth0\n");
        CHECK(read_text(secret) == "00112233445566778899aabbccddeeff\n");
        CHECK(listing(dir.path) == before);
    }
}

TEST_CASE("ankanetd start-up: a start that fails after --pcap was given leaves an existing pcap file unchanged") {
    temp_dir dir;
    const auto pcap = (dir.path / "capture.pcap").string();
    const auto corrupt = (dir.path / "corrupt-leases").string();
    write_bytes(corrupt, "ankanet-leases 1\nnot a lease\n");
    struct failure {
        std::vector<std::string> args;
        std::string line;
    };
    const std::vector<failure> failures{
        {{"--pcap", pcap, "--leases", "/nonexistent/leases"}, "--leases /nonexistent/leases: cannot keep the lease file there"},
        {{"--pcap", pcap, "--leases", corrupt}, "cannot start the DHCP server: " + corrupt + ":2: "},
        {{"--pcap", pcap, "--dhcp-range", "10.0.0.2-10.0.0.9"}, "--dhcp-range: 10.0.0.2-10.0.0.9 does not lie within"},
        {{"--pcap", pcap, "--mac-secret", "/nonexistent/secret", "--netns", "vm1,uuid=6f9619ff-8b86-d011-b42d-00c04fc964ff"},
         "--mac-secret /nonexistent/secret: cannot create the host secret there: directory /nonexistent does not exist"},
    };
    for (const auto& f : failures) {
        write_bytes(pcap, pcap_bytes);
        const auto run = run_until_exit(f.args);
        INFO(run.log);
        CHECK((run.status == 1 || run.status == 2));
        CHECK(run.log.find(f.line) != std::string::npos);
        CHECK(read_text(pcap) == pcap_bytes);
    }
    CHECK(read_text(corrupt) == "ankanet-leases 1\nnot a lease\n");

    // A start that succeeds does write it: a pcap header (magic a1b2c3d4 or a1b23c4d, little-endian here).
    write_bytes(pcap, pcap_bytes);
    daemon_process daemon{{"--pcap", pcap}};
    bool started = false;
    for (int attempt = 0; attempt < 200 && !started; ++attempt) {
        started = read_text(pcap) != pcap_bytes;
        if (!started) std::this_thread::sleep_for(25ms);
    }
    CHECK(started);
    CHECK(daemon.stop(SIGTERM) == 0);
    const auto written = read_text(pcap);
    INFO(daemon.log());
    REQUIRE(written.size() >= 24);
    const auto magic = written.substr(0, 4);
    CHECK((magic == std::string{"\xd4\xc3\xb2\xa1", 4} || magic == std::string{"\x4d\x3c\xb2\xa1", 4}));
}

TEST_CASE("ankanetd start-up: a start that fails at a guest after --pcap was given leaves the pcap file unchanged") {
    ANKANET_REQUIRE_NETNS();
    temp_dir dir;
    const auto pcap = (dir.path / "capture.pcap").string();
    write_bytes(pcap, pcap_bytes);
    scoped_netns guest;
    const auto run = run_until_exit({"--pcap", pcap, "--netns", guest.path(), "--netns", "/run/netns/ankanet-test-no-such-namespace"});
    INFO(run.log);
    CHECK(run.status == 1);
    CHECK(run.log.find("--netns /run/netns/ankanet-test-no-such-namespace: cannot create TAP eth0") != std::string::npos);
    CHECK(read_text(pcap) == pcap_bytes);
}

TEST_CASE("ankanetd start-up: a lease file with two leases for one MAC, or a lease outside the range, is exit 1 naming file:line, and is left as it was") {
    temp_dir dir;
    const auto leases = (dir.path / "leases").string();
    struct bad_file {
        std::string text;
        std::string line;
    };
    const std::vector<bad_file> cases{
        {"ankanet-leases 1\n52:54:00:00:00:01 - 192.168.64.7 2000000000 vm1\n52:54:00:00:00:02 - 192.168.64.8 2000000000 vm2\n"
         "52:54:00:00:00:01 - 192.168.64.9 2000000000 vm1\n",
         leases + ":4: second lease for MAC 52:54:00:00:00:01 (the first is on line 2); a client holds one lease"},
        {"ankanet-leases 1\n52:54:00:00:00:01 - 192.168.64.7 2000000000 vm1\n52:54:00:00:00:02 - 10.0.0.8 2000000000 vm2\n",
         leases + ":3: stored lease of 10.0.0.8 lies outside the DHCP range 192.168.64.2-192.168.64.254"},
        {"ankanet-leases 1\n52:54:00:00:00:01 - 192.168.64.7 2000000000 vm1\n52:54:00:00:00:02 - 192.168.64.50 2000000000 vm2\n",
         leases + ":3: stored lease of 192.168.64.50 lies outside the DHCP range 192.168.64.2-192.168.64.20"},
    };
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const auto& c = cases[i];
        write_bytes(leases, c.text);
        std::vector<std::string> args{"--leases", leases};
        if (i == 2) args.insert(args.end(), {"--dhcp-range", "192.168.64.2-192.168.64.20"});
        const auto run = run_until_exit(args);
        INFO(run.log);
        CHECK(run.status == 1);
        CHECK(run.log.find("cannot start the DHCP server: " + c.line + "\n") != std::string::npos);
        CHECK(read_text(leases) == c.text);
        CHECK(listing(dir.path) == std::set<std::string>{"leases"});
    }
}

TEST_CASE("ankanetd start-up: a random MAC is kept across restarts, and with it the guest's address, without a lease more") {
    ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS();
    const int signal = GENERATE(SIGTERM, SIGKILL);
    INFO("the daemon is stopped with signal " << signal);
    temp_dir files;
    const auto leases = (files.path / "leases").string();
    std::array<scoped_netns, 2> guests;
    std::array<temp_dir, 2> states;
    const std::vector<std::string> args{"--leases", leases, "--netns", guests[0].path(), "--netns", guests[1].path()};

    std::array<std::string, 2> macs, addresses;
    for (int start = 0; start < 3; ++start) {
        INFO("start " << start);
        daemon_process daemon{args};
        for (const auto& g : guests) REQUIRE(wait_for_interface(g, "eth0"));
        for (std::size_t i = 0; i < guests.size(); ++i) {
            const auto mac = guest_mac(guests[i]);
            dhcp_client_options options;
            options.state_dir = states[i].path;
            options.limit = 20s;
            const auto got = obtain_lease(guests[i], "eth0", dhcp_client_kind::udhcpc, options);
            INFO("guest " << i << " MAC " << mac << "\n--- udhcpc ---\n" << got.output << "\n--- daemon log ---\n" << daemon.log());
            REQUIRE(got.lease.has_value());
            if (start == 0) {
                macs[i] = mac;
                addresses[i] = got.lease->address;
                CHECK(daemon.log().find(mac + " drawn at random, remembered in " + leases + ".macs") != std::string::npos);
            } else {
                CHECK(mac == macs[i]);                       // the same MAC in the namespace
                CHECK(got.lease->address == addresses[i]);   // and so the same address
                CHECK(daemon.log().find("MAC " + mac + ", as remembered in " + leases + ".macs") != std::string::npos);
            }
        }
        CHECK(macs[0] != macs[1]);
        CHECK(addresses[0] != addresses[1]);
        // One lease per guest, for its one MAC: the file does not grow.
        const auto text = read_text(leases);
        const auto lines = lines_of(text);
        INFO(text);
        REQUIRE(lines.size() == 3);
        for (std::size_t i = 0; i < guests.size(); ++i) {
            CHECK(std::count_if(lines.begin(), lines.end(), [&](const std::string& line) {
                      return line.rfind(macs[i] + " ", 0) == 0 && line.find(" " + addresses[i] + " ") != std::string::npos;
                  }) == 1);
        }
        const auto remembered = lines_of(read_text(leases + ".macs"));
        CHECK(remembered.size() == 3);
        CHECK(remembered[0] == "ankanet-macs 1");

        CHECK(daemon.stop(signal) == (signal == SIGTERM ? 0 : 128 + SIGKILL));
        for (const auto& g : guests) REQUIRE(wait_for_interface_gone(g, "eth0"));
    }
    CHECK(listing(files.path) == std::set<std::string>{"leases", "leases.macs"});
}

TEST_CASE("ankanetd start-up: a remembered MAC that another VM now holds is refused like any duplicate") {
    ANKANET_REQUIRE_NETNS();
    temp_dir files;
    const auto leases = (files.path / "leases").string();
    scoped_netns first, second;

    std::string mac;
    {
        daemon_process daemon{{"--leases", leases, "--netns", first.path()}};
        REQUIRE(wait_for_interface(first, "eth0"));
        mac = guest_mac(first);
        CHECK(daemon.stop(SIGTERM) == 0);
        REQUIRE(wait_for_interface_gone(first, "eth0"));
    }
    const auto remembered = read_text(leases + ".macs");
    CHECK(remembered == "ankanet-macs 1\n" + mac + " netns:" + first.path() + ":eth0\n");

    // The second VM is given that MAC (mac=) and attached first: the first VM cannot have it back.
    const auto run = run_until_exit({"--leases", leases, "--netns", second.path() + ",mac=" + mac, "--netns", first.path()});
    INFO(run.log);
    CHECK(run.status == 1);
    CHECK(run.log.find("--netns " + first.path() + ": the MAC " + mac + " remembered for it in " + leases +
                       ".macs cannot be used: ") != std::string::npos);
    CHECK(run.log.find("already") != std::string::npos);
    CHECK(read_text(leases + ".macs") == remembered);  // a VM with mac= is not remembered
}
