#include <ankanetd/command_line.hpp>

#include <catch2/catch.hpp>

#include <initializer_list>
#include <vector>

using namespace ankanetd;

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
}

TEST_CASE("ankanetd command line: every option, repeated ones kept in order, --opt=value spelling") {
    const auto opts = parsed_options({"--mode", "host", "--netns", "/run/netns/vm1", "--netns=vm2,ifname=enp0s1,mac=52:54:00:aa:bb:cc",
                                      "--qemu-socket", "/tmp/q1.sock", "--qemu-socket=/tmp/q2.sock", "--dgram-socket", "/tmp/d.sock",
                                      "--mtu", "9000", "--pcap", "/tmp/all.pcap"});
    CHECK(opts.mode == ankanet::network_mode::host);
    REQUIRE(opts.netns.size() == 2);
    CHECK(opts.netns[0] == netns_attachment{"/run/netns/vm1", "eth0", std::nullopt});
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
    CHECK(error_of({"--netns", "vm,colour=blue"}) == "--netns: unknown setting 'colour=blue' (known: ifname=NAME, mac=MAC)");
    CHECK(error_of({"--qemu-socket="}) == "--qemu-socket needs a path");
    CHECK(error_of({"--pcap="}) == "--pcap needs a file name");
}
