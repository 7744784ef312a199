#include <ankanetd/command_line.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <vector>
#include "../support/temp_dir.hpp"

using namespace ankanetd;

using ankanet::test::temp_dir;

namespace {

command parse(std::initializer_list<std::string_view> args) {
    const std::vector<std::string_view> list{args};
    return parse_command_line(list);
}

options parsed_options(std::initializer_list<std::string_view> args) {
    auto cmd = parse(args);
    if (auto* error = std::get_if<usage_error>(&cmd)) FAIL(error->message);
    REQUIRE(std::holds_alternative<run>(cmd));
    return std::get<run>(cmd).opts;
}

std::string error_of(std::initializer_list<std::string_view> args) {
    auto cmd = parse(args);
    REQUIRE(std::holds_alternative<usage_error>(cmd));
    return std::get<usage_error>(cmd).message;
}

} // namespace

TEST_CASE("ankanetd command line: defaults") {
    const auto opts = parsed_options({});
    CHECK(opts.mode == ankanet::network_mode::shared);
    CHECK(opts.mtu == 1500);
    CHECK(opts.netns.empty());
    CHECK(opts.qemu_sockets.empty());
    CHECK(opts.dgram_sockets.empty());
    CHECK_FALSE(opts.pcap);
    CHECK(opts.offload); // --netns TAPs with a virtio-net header, TSO and checksum offload
}

TEST_CASE("ankanetd command line: --no-offload opens the TAPs plain, and a switch takes true or false, as in a config file") {
    CHECK_FALSE(parsed_options({"--no-offload", "--netns", "vm1"}).offload);
    CHECK_FALSE(parsed_options({"--no-offload=true"}).offload);
    CHECK(parsed_options({"--no-offload=false"}).offload);
    CHECK_THAT(error_of({"--no-offload=maybe"}), Catch::Contains("maybe"));
}

TEST_CASE("ankanetd command line: every option, repeated ones kept in order, --opt=value spelling") {
    const auto opts = parsed_options({"--mode", "host", "--netns", "/run/netns/vm1", "--netns=vm2,ifname=enp0s1,mac=52:54:00:aa:bb:cc",
                                      "--qemu-socket", "/tmp/q1.sock", "--qemu-socket=/tmp/q2.sock", "--dgram-socket", "/tmp/d.sock",
                                      "--mtu", "9000", "--pcap", "/tmp/all.pcap"});
    CHECK(opts.mode == ankanet::network_mode::host);
    REQUIRE(opts.netns.size() == 2);
    CHECK(opts.netns[0] == netns_attachment{"/run/netns/vm1", "eth0", std::nullopt, std::nullopt});
    CHECK(opts.netns[1].path == "/run/netns/vm2"); // a bare name is an `ip netns` name
    CHECK(opts.netns[1].ifname == "enp0s1");
    CHECK(opts.netns[1].mac == ankanet::mac_address::parse("52:54:00:aa:bb:cc").value());
    CHECK(opts.qemu_sockets == std::vector<std::string>{"/tmp/q1.sock", "/tmp/q2.sock"});
    CHECK(opts.dgram_sockets == std::vector<std::string>{"/tmp/d.sock"});
    CHECK(opts.mtu == 9000);
    CHECK(opts.pcap == "/tmp/all.pcap");
}

TEST_CASE("ankanetd command line: help and version") {
    CHECK(std::holds_alternative<show_help>(parse({"--help"})));
    CHECK(std::holds_alternative<show_help>(parse({"--mode", "shared", "-h"})));
    CHECK(std::holds_alternative<show_version>(parse({"--version"})));
    CHECK(std::holds_alternative<show_version>(parse({"-V"})));
}

TEST_CASE("ankanetd command line: --help documents every option, the config file and ctl") {
    const auto cmd = parse({"--help"});
    REQUIRE(std::holds_alternative<show_help>(cmd));
    const auto& help = std::get<show_help>(cmd).text;
    for (const auto* option : {"--mode", "--netns", "--qemu-socket", "--dgram-socket", "--mtu", "--pcap", "--no-offload",
                               "--subnet", "--dhcp-range", "--reserve", "--lease-time", "--leases", "--mac-secret",
                               "--dhcp-rate", "--isolate", "--egress", "--no-host-loopback", "--max-flows-per-vm",
                               "--dns-upstream", "--forward", "--control", "--bridge-interface", "--direct-mac", "--config",
                               "--quiet", "--verbose", "--version", "--help"}) {
        CAPTURE(option);
        CHECK_THAT(help, Catch::Contains(option));
    }
    CHECK_THAT(help, Catch::Contains("ankanetd ctl PATH"));
    CHECK_THAT(help, Catch::Contains("netns = [\"vm1\""));
}

TEST_CASE("ankanetd command line: short options are the long ones") {
    const auto opts = parsed_options({"-m", "host", "-n", "vm1", "-s", "/tmp/q.sock", "-d", "/tmp/d.sock", "-p", "/tmp/a.pcap",
                                      "-l", "/tmp/leases", "-f", "8080:80@vm1", "-C", "/tmp/ctl", "-v"});
    CHECK(opts.mode == ankanet::network_mode::host);
    REQUIRE(opts.netns.size() == 1);
    CHECK(opts.netns[0].path == "/run/netns/vm1");
    CHECK(opts.qemu_sockets == std::vector<std::string>{"/tmp/q.sock"});
    CHECK(opts.dgram_sockets == std::vector<std::string>{"/tmp/d.sock"});
    CHECK(opts.pcap == "/tmp/a.pcap");
    CHECK(opts.leases == "/tmp/leases");
    REQUIRE(opts.forwards.size() == 1);
    CHECK(opts.control == "/tmp/ctl");
    CHECK(opts.verbosity == 1);
    CHECK(parsed_options({"-e", "host"}).egress == "host");
    CHECK(parsed_options({"-q"}).verbosity == -1);
    CHECK(parsed_options({}).verbosity == 0);
}

TEST_CASE("ankanetd command line: a config file gives what the same flags give, and the command line wins") {
    temp_dir dir;
    const auto file = (dir / "ankanetd.toml").string();
    {
        std::ofstream out{file};
        out << "# ankanetd's options, one key per long option\n"
               "mode = \"host\"\n"
               "netns = [\"vm1\", \"vm2,ifname=eth1\"]\n"
               "mtu = 9000\n"
               "isolate = true\n"
               "no-offload = true\n"
               "forward = [\"tcp:8080:80@vm1\", \"udp:5353:53@vm2\"]\n"
               "dns-upstream = [\"127.0.0.1:5353\"]\n"
               "lease-time = 600\n";
    }
    const auto from_file = parsed_options({"--config", file});
    const auto from_flags = parsed_options({"--mode", "host", "--netns", "vm1", "--netns", "vm2,ifname=eth1", "--mtu", "9000",
                                            "--isolate", "--no-offload", "--forward", "tcp:8080:80@vm1", "--forward",
                                            "udp:5353:53@vm2", "--dns-upstream", "127.0.0.1:5353", "--lease-time", "600"});
    CHECK(from_file.mode == from_flags.mode);
    CHECK(from_file.netns == from_flags.netns);
    CHECK(from_file.mtu == from_flags.mtu);
    CHECK(from_file.isolate == from_flags.isolate);
    CHECK(from_file.offload == from_flags.offload);
    CHECK(from_file.forwards == from_flags.forwards);
    CHECK(from_file.dns_upstreams == from_flags.dns_upstreams);
    CHECK(from_file.lease_time == from_flags.lease_time);
    CHECK(from_file.mode == ankanet::network_mode::host);
    CHECK(from_file.isolate);
    // The command line wins over the file; -c is --config.
    CHECK(parsed_options({"-c", file, "--mtu", "1400"}).mtu == 1400);
}

TEST_CASE("ankanetd command line: the example config file (examples/ankanetd/ankanetd.toml) is accepted as shipped") {
    const auto opts = parsed_options({"--config", ANKANETD_EXAMPLES_DIR "/ankanetd.toml"});
    CHECK(opts.mode == ankanet::network_mode::shared);
    REQUIRE(opts.netns.size() == 2);
    CHECK(opts.netns[1].mac == ankanet::mac_address::parse("52:54:00:12:34:02").value());
    CHECK(opts.qemu_sockets == std::vector<std::string>{"/run/ankanet/qemu.sock"});
    CHECK(opts.leases == "/var/lib/ankanet/leases");
    REQUIRE(opts.forwards.size() == 1);
    CHECK(opts.forwards[0].vm.name == "netns:/run/netns/vm1:eth0");
    CHECK(opts.control == "/run/ankanet/control");
    CHECK(opts.pid_file == "/run/ankanet/ankanetd.pid");
}

TEST_CASE("ankanetd command line: a config file's mistakes are refused in one line") {
    temp_dir dir;
    const auto write = [&](const std::string& name, std::string_view text) {
        const auto path = (dir / name).string();
        std::ofstream{path} << text;
        return path;
    };
    // A key that is no option: refused, not ignored.
    const auto bogus = error_of({"--config", write("bogus.toml", "mode = \"shared\"\ncolour = \"blue\"\n")});
    CHECK_THAT(bogus, Catch::Contains("colour"));
    // A value: the same check, and the same message, as on the command line.
    CHECK(error_of({"--config", write("mtu.toml", "mtu = 70000\n")}) == "--mtu: '70000' is not a number from 576 to 65520");
    CHECK(error_of({"--config", write("mode.toml", "mode = \"nat\"\n")}) ==
          "--mode: 'nat' is not one of shared, host, bridge, disconnected");
    // A file that is not there.
    CHECK_THAT(error_of({"--config", (dir / "missing.toml").string()}), Catch::Contains("missing.toml"));
    for (const auto& message : {bogus, error_of({"--config", (dir / "missing.toml").string()})}) {
        CHECK(message.find('\n') == std::string::npos);
    }
}

TEST_CASE("ankanetd command line: a usage error is one line that points to --help") {
    for (const auto& message : {error_of({"--mtu", "70000"}), error_of({"--bogus"}), error_of({"--forward"}),
                                error_of({"--mode", "bridge", "--subnet", "10.0.0.0/24"})}) {
        const auto line = usage_error_line(usage_error{message});
        CAPTURE(line);
        CHECK(line.starts_with("ankanetd: "));
        CHECK(line.ends_with("; see ankanetd --help\n"));
        CHECK(std::count(line.begin(), line.end(), '\n') == 1);
    }
    CHECK(usage_error_line(usage_error{error_of({"--mtu", "70000"})}) ==
          "ankanetd: --mtu: '70000' is not a number from 576 to 65520; see ankanetd --help\n");
}

TEST_CASE("ankanetd command line: mistakes are one clear sentence each") {
    CHECK(error_of({"--mode", "nat"}) == "--mode: 'nat' is not one of shared, host, bridge, disconnected");
    CHECK(error_of({"--mode"}) == "--mode needs a value");
    CHECK(error_of({"--bogus"}) == "unknown argument '--bogus'");
    CHECK(error_of({"eth0"}) == "unknown argument 'eth0'");
    CHECK(error_of({"--mtu", "100"}) == "--mtu: '100' is not a number from 576 to 65520");
    CHECK(error_of({"--mtu", "1500x"}) == "--mtu: '1500x' is not a number from 576 to 65520");
    CHECK(error_of({"--mtu", "70000"}) == "--mtu: '70000' is not a number from 576 to 65520");
    CHECK(error_of({"--netns", ",ifname=eth0"}) == "--netns needs a namespace path or name");
    CHECK(error_of({"--netns", "vm,ifname="}).find("interface name '' is not valid") != std::string::npos);
    CHECK(error_of({"--netns", "vm,ifname=abcdefghijklmnop"}).find("is not valid") != std::string::npos);
    CHECK(error_of({"--netns", "vm,mac=52:54:00"}) == "--netns: '52:54:00' is not a MAC address (expected like 52:54:00:12:34:56)");
    CHECK(error_of({"--netns", "vm,mac=01:00:5e:00:00:01"}).find("is not a unicast address") != std::string::npos);
    CHECK(error_of({"--netns", "vm,mac=00:00:00:00:00:00"}).find("is not a unicast address") != std::string::npos);
    CHECK(error_of({"--netns", "vm,colour=blue"}) == "--netns: unknown setting 'colour=blue' (known: ifname=NAME, mac=MAC, uuid=UUID)");
    CHECK(error_of({"--qemu-socket="}) == "--qemu-socket needs a value");
    CHECK(error_of({"--pcap="}) == "--pcap needs a value");
}

TEST_CASE("ankanetd command line: DHCP and switch options") {
    const auto opts = parsed_options({"--subnet", "10.77.0.0/24", "--dhcp-range=10.77.0.100-10.77.0.110", "--reserve",
                                      "52:54:00:aa:bb:cc=10.77.0.105", "--reserve=52:54:00:aa:bb:cd=10.77.0.106",
                                      "--lease-time", "600", "--leases", "/var/lib/ankanet/leases", "--isolate",
                                      "--dhcp-rate", "200/500"});
    CHECK(opts.subnet == ankanet::ipv4_prefix::parse("10.77.0.0/24").value());
    CHECK(opts.dhcp_range == address_range{ankanet::ipv4_address{10, 77, 0, 100}, ankanet::ipv4_address{10, 77, 0, 110}});
    REQUIRE(opts.reservations.size() == 2);
    CHECK(opts.reservations[0] == reservation{ankanet::mac_address::parse("52:54:00:aa:bb:cc").value(), ankanet::ipv4_address{10, 77, 0, 105}});
    CHECK(opts.reservations[1].address == ankanet::ipv4_address{10, 77, 0, 106});
    CHECK(opts.lease_time == 600);
    CHECK(opts.leases == "/var/lib/ankanet/leases");
    CHECK(opts.isolate);
    CHECK(opts.dhcp_limits.messages_per_second == 200);
    CHECK(opts.dhcp_limits.message_burst == 500);
    const auto rate_only = parsed_options({"--dhcp-rate=40"});
    CHECK(rate_only.dhcp_limits.messages_per_second == 40);
    CHECK(rate_only.dhcp_limits.message_burst == 120); // three seconds' worth

    const auto defaults = parsed_options({});
    CHECK(defaults.lease_time == 3600);
    CHECK_FALSE(defaults.leases);
    CHECK_FALSE(defaults.isolate);
    CHECK(defaults.reservations.empty());
    CHECK(defaults.dhcp_limits.messages_per_second == 10);
    CHECK(defaults.dhcp_limits.message_burst == 30);
}

TEST_CASE("ankanetd command line: DHCP option mistakes are one clear sentence each") {
    CHECK(error_of({"--subnet", "10.0.0.0"}) == "--subnet: '10.0.0.0' is not an IPv4 subnet from /16 to /30 (like 10.0.2.0/24)");
    CHECK(error_of({"--subnet", "10.0.0.0/8"}).find("from /16 to /30") != std::string::npos);
    CHECK(error_of({"--subnet", "10.0.0.0/31"}).find("from /16 to /30") != std::string::npos);
    CHECK(error_of({"--dhcp-range", "10.0.0.5"}) == "--dhcp-range: '10.0.0.5' is not FIRST-LAST (like 192.168.64.10-192.168.64.99)");
    CHECK(error_of({"--dhcp-range", "10.0.0.9-10.0.0.5"}) == "--dhcp-range: 10.0.0.9 comes after 10.0.0.5");
    CHECK(error_of({"--reserve", "52:54:00:aa:bb:cc"}).find("is not MAC=IP") != std::string::npos);
    CHECK(error_of({"--reserve", "ff:ff:ff:ff:ff:ff=192.168.64.9"}).find("is not a unicast address") != std::string::npos);
    CHECK(error_of({"--reserve", "52:54:00:aa:bb:cc=192.168.64"}) == "--reserve: '192.168.64' is not an IPv4 address");
    CHECK(error_of({"--lease-time", "2"}) == "--lease-time: '2' is not a number of seconds from 4 to 31536000");
    CHECK(error_of({"--lease-time", "-5"}).find("is not a number of seconds") != std::string::npos);
    CHECK(error_of({"--leases="}) == "--leases needs a value");
    CHECK(error_of({"--dhcp-rate", "0"}) == "--dhcp-rate: '0' is not N or N/BURST with 1 <= N <= BURST <= 1000000");
    CHECK(error_of({"--dhcp-rate", "100/50"}).find("is not N or N/BURST") != std::string::npos);
    CHECK(error_of({"--dhcp-rate", "10/"}).find("is not N or N/BURST") != std::string::npos);
    CHECK(error_of({"--dhcp-rate", "2000000"}).find("is not N or N/BURST") != std::string::npos);
    CHECK(error_of({"--dhcp-rate", "fast"}).find("is not N or N/BURST") != std::string::npos);
}

TEST_CASE("ankanetd network plan: the mode's defaults") {
    const auto shared = std::get<network_plan>(plan_network(parsed_options({})));
    CHECK(shared.subnet == ankanet::ipv4_prefix::parse("192.168.64.1/24").value());
    CHECK(shared.range == address_range{ankanet::ipv4_address{192, 168, 64, 2}, ankanet::ipv4_address{192, 168, 64, 254}});
    CHECK(shared.excluded.empty());

    const auto host = std::get<network_plan>(plan_network(parsed_options({"--mode", "host"})));
    CHECK(host.subnet == ankanet::ipv4_prefix::parse("192.168.128.1/24").value());
    CHECK(host.range.last == ankanet::ipv4_address{192, 168, 128, 254});
}

TEST_CASE("ankanetd network plan: a given subnet, range and reservations") {
    // A network address given: the gateway is its first host.
    const auto plan = std::get<network_plan>(plan_network(parsed_options({"--subnet", "10.77.0.0/24", "--dhcp-range", "10.77.0.100-10.77.0.110",
                                                                          "--reserve", "52:54:00:aa:bb:cc=10.77.0.105"})));
    CHECK(plan.subnet.address() == ankanet::ipv4_address{10, 77, 0, 1});
    CHECK(plan.range.first == ankanet::ipv4_address{10, 77, 0, 100});
    CHECK(plan.excluded.empty());
    // A host address given: that is the gateway, and the default range goes around it.
    const auto at_254 = std::get<network_plan>(plan_network(parsed_options({"--subnet", "10.77.0.254/24"})));
    CHECK(at_254.subnet.address() == ankanet::ipv4_address{10, 77, 0, 254});
    CHECK(at_254.range == address_range{ankanet::ipv4_address{10, 77, 0, 1}, ankanet::ipv4_address{10, 77, 0, 253}});
    CHECK(at_254.excluded.empty());
    const auto at_100 = std::get<network_plan>(plan_network(parsed_options({"--subnet", "10.77.0.100/24"})));
    CHECK(at_100.range == address_range{ankanet::ipv4_address{10, 77, 0, 1}, ankanet::ipv4_address{10, 77, 0, 254}});
    CHECK(at_100.excluded == std::vector<ankanet::ipv4_address>{ankanet::ipv4_address{10, 77, 0, 100}});
}

TEST_CASE("ankanetd network plan: options that do not fit together are refused") {
    auto error = [](std::initializer_list<std::string_view> args) {
        const auto plan = plan_network(parsed_options(args));
        REQUIRE(std::holds_alternative<usage_error>(plan));
        return std::get<usage_error>(plan).message;
    };
    CHECK(error({"--subnet", "10.77.0.255/24"}) == "--subnet: 10.77.0.255 is the broadcast address of its subnet, not a gateway");
    CHECK(error({"--dhcp-range", "192.168.65.2-192.168.65.9"}) ==
          "--dhcp-range: 192.168.65.2-192.168.65.9 does not lie within the host addresses of 192.168.64.0/24");
    CHECK(error({"--dhcp-range", "192.168.64.0-192.168.64.9"}).find("does not lie within") != std::string::npos);
    CHECK(error({"--dhcp-range", "192.168.64.9-192.168.64.255"}).find("does not lie within") != std::string::npos);
    CHECK(error({"--dhcp-range", "192.168.64.1-192.168.64.1"}) == "--dhcp-range: 192.168.64.1 is the gateway's own address");
    CHECK(error({"--dhcp-range", "192.168.64.10-192.168.64.20", "--reserve", "52:54:00:aa:bb:cc=192.168.64.30"}) ==
          "--reserve: 192.168.64.30 for 52:54:00:aa:bb:cc is not an address of the DHCP range 192.168.64.10-192.168.64.20");
    CHECK(error({"--reserve", "52:54:00:aa:bb:cc=192.168.64.1"}).find("is not an address of the DHCP range") != std::string::npos);
    CHECK(error({"--reserve", "52:54:00:aa:bb:cc=192.168.64.5", "--reserve", "52:54:00:aa:bb:cc=192.168.64.6"}) ==
          "--reserve: 52:54:00:aa:bb:cc is reserved twice");
    CHECK(error({"--reserve", "52:54:00:aa:bb:cc=192.168.64.5", "--reserve", "52:54:00:aa:bb:cd=192.168.64.5"}) ==
          "--reserve: 192.168.64.5 is reserved for both 52:54:00:aa:bb:cc and 52:54:00:aa:bb:cd");
}

TEST_CASE("ankanetd command line: stable MACs from uuid= and --mac-secret") {
    const auto opts = parsed_options({"--mac-secret", "/var/lib/ankanet/mac-secret", "--netns", "vm1,uuid=6F9619FF-8B86-D011-B42D-00C04FC964FF"});
    CHECK(opts.mac_secret == "/var/lib/ankanet/mac-secret");
    REQUIRE(opts.netns.size() == 1);
    CHECK(opts.netns[0].uuid == ankanet::l2::vm_uuid::parse("6f9619ff-8b86-d011-b42d-00c04fc964ff").value());
    CHECK_FALSE(opts.netns[0].mac);

    CHECK(error_of({"--netns", "vm1,uuid=6f9619ff"}) ==
          "--netns: '6f9619ff' is not a UUID (expected like 6f9619ff-8b86-d011-b42d-00c04fc964ff)");
    CHECK(error_of({"--mac-secret", "s", "--netns", "vm1,mac=52:54:00:00:00:01,uuid=6f9619ff-8b86-d011-b42d-00c04fc964ff"}) ==
          "--netns: give mac= (a custom MAC) or uuid= (a stable one), not both");
    CHECK(error_of({"--netns", "vm1,uuid=6f9619ff-8b86-d011-b42d-00c04fc964ff"}) ==
          "--netns /run/netns/vm1: uuid= needs --mac-secret FILE, the host secret stable MACs are derived from");
    CHECK(error_of({"--mac-secret="}) == "--mac-secret needs a value");
}

namespace {

std::optional<std::string> file_error(std::initializer_list<std::string_view> args) {
    const auto error = check_files(parsed_options(args));
    if (!error) return std::nullopt;
    return error->message;
}

} // namespace

TEST_CASE("ankanetd files: random MACs are remembered beside the leases") {
    CHECK(mac_state_file(parsed_options({"--leases", "/var/lib/ankanetd/leases"})) == "/var/lib/ankanetd/leases.macs");
    CHECK_FALSE(mac_state_file(parsed_options({})));
}

TEST_CASE("ankanetd files: two options that would write one file are refused, naming both, and nothing is touched") {
    temp_dir dir;
    const auto d = dir.path.string();
    const auto leases = d + "/leases";
    { std::ofstream{leases} << "ankanet-leases 1\n"; }
    std::filesystem::create_symlink(leases, d + "/link");
    std::filesystem::create_hard_link(leases, d + "/hard");
    std::filesystem::create_directory(d + "/sub");

    // Different files: accepted, existing or not.
    CHECK_FALSE(file_error({"--leases", leases, "--pcap", d + "/all.pcap", "--mac-secret", d + "/secret"}));
    CHECK_FALSE(file_error({"--pcap", leases}));  // alone, the pcap may be any file
    CHECK_FALSE(file_error({"--leases", d + "/new", "--pcap", d + "/new.pcap"}));

    const auto same = [](const std::string& a, const std::string& b) {
        return a + " and " + b + " are the same file; give each a file of its own";
    };
    CHECK(file_error({"--leases", leases, "--pcap", leases}) == same("--pcap " + leases, "--leases " + leases));
    CHECK(file_error({"--leases", leases, "--pcap", d + "/link"}) == same("--pcap " + d + "/link", "--leases " + leases));
    CHECK(file_error({"--leases", leases, "--pcap", d + "/hard"}) == same("--pcap " + d + "/hard", "--leases " + leases));
    CHECK(file_error({"--leases", leases, "--pcap", d + "/sub/../leases"}) ==
          same("--pcap " + d + "/sub/../leases", "--leases " + leases));
    CHECK(file_error({"--leases", leases, "--mac-secret", leases}) == same("--leases " + leases, "--mac-secret " + leases));
    CHECK(file_error({"--pcap", d + "/s", "--mac-secret", d + "/./s"}) == same("--pcap " + d + "/s", "--mac-secret " + d + "/./s"));
    // Files that do not exist yet, by their paths.
    CHECK(file_error({"--leases", d + "/new", "--pcap", d + "/sub/../new"}) ==
          same("--pcap " + d + "/sub/../new", "--leases " + d + "/new"));
    // The MAC state file beside the leases.
    CHECK(file_error({"--leases", leases, "--pcap", leases + ".macs"}) ==
          same("--pcap " + leases + ".macs", "the MAC state file " + leases + ".macs (of --leases)"));
    CHECK(file_error({"--leases", leases, "--mac-secret", leases + ".macs"}) ==
          same("the MAC state file " + leases + ".macs (of --leases)", "--mac-secret " + leases + ".macs"));
    // A file another is replaced through.
    CHECK(file_error({"--leases", leases, "--pcap", leases + ".tmp"}) ==
          "--pcap " + leases + ".tmp is the temporary file " + leases + ".tmp that --leases " + leases +
              " is written through; give it another name");
    CHECK(file_error({"--mac-secret", d + "/secret", "--leases", d + "/secret.tmp"}) ==
          "--leases " + d + "/secret.tmp is the temporary file " + d + "/secret.tmp that --mac-secret " + d +
              "/secret is written through; give it another name");

    // Nothing was created or changed.
    std::ifstream in{leases};
    const std::string after{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
    CHECK(after == "ankanet-leases 1\n");
    std::set<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator{dir.path}) names.insert(entry.path().filename().string());
    CHECK(names == std::set<std::string>{"leases", "link", "hard", "sub"});
}

TEST_CASE("ankanetd command line: --forward names its VM as the operator knows it, mapped to the port's name") {
    const auto opts = parsed_options({"--netns", "vm1", "--netns", "/var/run/other,ifname=ens3", "--qemu-socket", "/run/q.sock",
                                      "--dgram-socket", "/run/d.sock", "--forward", "8080:80@vm1", "--forward",
                                      "udp:0.0.0.0:5353:53@/var/run/other", "--forward=2222:22@/run/q.sock", "--forward",
                                      "2223:22@/run/d.sock", "--forward", "9000-9001:9000@52:54:00:00:00:09",
                                      "--forward", "7000:7000", "--control", "/run/ankanet/control.sock"});
    REQUIRE(opts.forwards.size() == 6);
    CHECK(opts.forwards[0].vm.name == "netns:/run/netns/vm1:eth0");
    CHECK(opts.forwards[0].host_address == ankanet::wire::ipv4_address{127, 0, 0, 1});
    CHECK(opts.forwards[1].vm.name == "netns:/var/run/other:ens3");
    CHECK(opts.forwards[1].proto == ankanet::forward::protocol::udp);
    CHECK(opts.forwards[2].vm.name == "qemu:/run/q.sock"); // matches each connection's port, qemu:/run/q.sock#N
    CHECK(opts.forwards[3].vm.name == "dgram:/run/d.sock");
    CHECK(opts.forwards[4].vm.mac == ankanet::wire::mac_address::parse("52:54:00:00:00:09").value());
    CHECK(opts.forwards[4].ports() == 2);
    CHECK(opts.forwards[5].vm.empty()); // the only VM
    CHECK(opts.control == "/run/ankanet/control.sock");
}

TEST_CASE("ankanetd command line: --forward and --control mistakes are one clear sentence each") {
    CHECK(error_of({"--forward", "80"}) ==
          "--forward: forward \"80\": expected [tcp:|udp:][HOSTADDR:]HOSTPORT[-END]:GUESTPORT[-END][@VM]");
    CHECK_THAT(error_of({"--netns", "vm1", "--forward", "8080:80@vm2"}),
               Catch::Contains("'@vm2' names no VM of the command line"));
    CHECK_THAT(error_of({"--forward", "8000-8009:80-81"}), Catch::Contains("the host range has 10 ports and the guest range 2"));
    CHECK(error_of({"--mode", "disconnected", "--forward", "8080:80"}) ==
          "--forward is for shared and host modes; disconnected mode has no gateway to forward through");
    CHECK(error_of({"--control", ""}) == "--control needs a socket path");
    CHECK(error_of({"--forward"}) == "--forward needs a value");
}

TEST_CASE("ankanetd files: a --control socket path that another option writes is refused") {
    temp_dir dir;
    const auto file = dir.path.string() + "/same";
    CHECK(file_error({"--pcap", file, "--control", file}) ==
          "--pcap " + file + " and --control " + file + " are the same file; give each a file of its own");
    CHECK(file_error({"--leases", file, "--control", file + ".macs"}) ==
          "--control " + file + ".macs and the MAC state file " + file + ".macs (of --leases) are the same file; give each a file of its own");
}

TEST_CASE("ankanetd command line: bridge mode takes its interface and MAC mode, and refuses what configures a gateway") {
    auto opts = parsed_options({"--mode", "bridge", "--bridge-interface", "eth1", "--direct-mac", "--netns", "vm1", "--isolate"});
    CHECK(opts.mode == ankanet::network_mode::bridge);
    CHECK(opts.bridge_interface == "eth1");
    CHECK(opts.direct_mac);
    CHECK_FALSE(opts.mtu_given);
    opts = parsed_options({"--mode=bridge", "--mtu", "1400"}); // the interface from ANKA_BRIDGE_NAME, later
    CHECK_FALSE(opts.bridge_interface);
    CHECK_FALSE(opts.direct_mac);
    CHECK(opts.mtu_given);

    for (const auto* option : {"--subnet", "--dhcp-range", "--lease-time", "--leases", "--dns-upstream", "--max-flows-per-vm"}) {
        const auto value = std::string_view{option} == "--subnet"       ? "10.0.0.0/24"
                           : std::string_view{option} == "--dhcp-range" ? "10.0.0.5-10.0.0.9"
                           : std::string_view{option} == "--leases"     ? "/tmp/leases"
                           : std::string_view{option} == "--dns-upstream" ? "127.0.0.1"
                                                                           : "60";
        CHECK(error_of({"--mode", "bridge", option, value}) ==
              fmt::format("{} is for shared and host modes; in bridge mode the LAN's DHCP server, router and DNS serve the VMs", option));
    }
    CHECK(error_of({"--mode", "bridge", "--no-host-loopback"}) ==
          "--no-host-loopback is for shared and host modes; in bridge mode the LAN's DHCP server, router and DNS serve the VMs");
    CHECK(error_of({"--mode", "bridge", "--forward", "8080:80"}) ==
          "--forward is for shared and host modes; bridge mode has no gateway to forward through");
    CHECK(error_of({"--direct-mac"}) == "--direct-mac is for bridge mode (--mode bridge)");
    CHECK(error_of({"--mode", "host", "--bridge-interface", "eth0"}) == "--bridge-interface is for bridge mode (--mode bridge)");
    CHECK(error_of({"--mode", "bridge", "--bridge-interface", "a/b"}) ==
          "--bridge-interface: 'a/b' is not an interface name (1-15 characters, no '/', ':' or space)");
    CHECK(error_of({"--mode", "bridge", "--bridge-interface", "sixteen-chars-xx"}) ==
          "--bridge-interface: 'sixteen-chars-xx' is not an interface name (1-15 characters, no '/', ':' or space)");
}
