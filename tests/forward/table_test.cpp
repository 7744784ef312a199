// forward::table: the --forward text form, ranges, conflicts, limits, lookups by host port and by
// VM, removal.
#include <ankanet/forward/table.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace ankanet;
using namespace ankanet::forward;

namespace {

rule parsed(std::string_view text) {
    std::string why;
    auto r = parse_rule(text, &why);
    INFO(why);
    REQUIRE(r);
    return *r;
}

std::string refusal(std::string_view text) {
    std::string why;
    const auto r = parse_rule(text, &why);
    REQUIRE_FALSE(r);
    CHECK(r.error() == forward_errc::bad_rule);
    return why;
}

} // namespace

TEST_CASE("forward rules: the text form with its defaults, written back in full") {
    const rule plain = parsed("8080:80");
    CHECK(plain.proto == protocol::tcp);
    CHECK(plain.host_address == wire::ipv4_address{127, 0, 0, 1});
    CHECK(plain.host_port == 8080);
    CHECK(plain.host_port_last == 8080);
    CHECK(plain.guest_port == 80);
    CHECK(plain.vm.empty());
    CHECK(format_rule(plain) == "tcp:127.0.0.1:8080:80");

    const rule full = parsed("udp:0.0.0.0:5000-5009:6000-6009@vm1");
    CHECK(full.proto == protocol::udp);
    CHECK(full.host_address == wire::ipv4_address{0, 0, 0, 0});
    CHECK(full.ports() == 10);
    CHECK(full.guest_port_for(5003) == 6003);
    CHECK(full.guest_port_last() == 6009);
    CHECK(full.vm.name == "vm1");
    CHECK(format_rule(full) == "udp:0.0.0.0:5000-5009:6000-6009@vm1");
    CHECK(parsed(format_rule(full)) == full);

    // A guest range given by its first port; an address without a protocol; a MAC as the VM.
    CHECK(parsed("tcp:2200-2202:22").guest_port_last() == 24);
    CHECK(parsed("10.1.2.3:443:8443").host_address == wire::ipv4_address{10, 1, 2, 3});
    const rule by_mac = parsed("9000:9000@52:54:00:12:34:56");
    REQUIRE(by_mac.vm.mac);
    CHECK(*by_mac.vm.mac == *wire::mac_address::parse("52:54:00:12:34:56"));
    CHECK(by_mac.vm.name.empty());
}

TEST_CASE("forward rules: malformed text is refused, saying what is wrong") {
    CHECK_THAT(refusal("8080"), Catch::Contains("expected"));
    CHECK_THAT(refusal("0:80"), Catch::Contains("port 0"));
    CHECK_THAT(refusal("8080:0"), Catch::Contains("port 0"));
    CHECK_THAT(refusal("70000:80"), Catch::Contains("70000"));
    CHECK_THAT(refusal("sctp:80:80"), Catch::Contains("sctp"));
    CHECK_THAT(refusal("tcp:1.2.3:80:80"), Catch::Contains("not an IPv4 address"));
    CHECK_THAT(refusal("9000-8990:80"), Catch::Contains("ends before it starts"));
    CHECK_THAT(refusal("8000-8009:80-85"), Catch::Contains("10 ports"));
    CHECK_THAT(refusal("100-200:65500"), Catch::Contains("past 65535"));
    CHECK_THAT(refusal("80:80@"), Catch::Contains("after '@'"));
    CHECK_THAT(refusal("224.0.0.1:80:80"), Catch::Contains("not an address to listen on"));
    CHECK_THAT(refusal("tcp:127.0.0.1:80:80:90"), Catch::Contains("expected"));
    CHECK_THAT(refusal("8080:-80"), Catch::Contains("-80"));
    CHECK_THAT(refusal(""), Catch::Contains("expected"));
}

TEST_CASE("forward table: overlapping host ports on one address and protocol conflict, naming the holder") {
    table t;
    std::string why;
    const auto first = t.add(parsed("tcp:127.0.0.1:8000-8010:80-90@vm1"), &why);
    REQUIRE(first);
    // Another protocol, another address, an adjacent range: no conflict.
    REQUIRE(t.add(parsed("udp:127.0.0.1:8005:53"), &why));
    REQUIRE(t.add(parsed("tcp:127.0.0.2:8005:22"), &why));
    REQUIRE(t.add(parsed("tcp:127.0.0.1:8011:22"), &why));
    // An overlap at one end, and the wildcard address, which covers 127.0.0.1 too.
    const auto clash = t.add(parsed("tcp:127.0.0.1:7990-8000:100-110"), &why);
    REQUIRE_FALSE(clash);
    CHECK(clash.error() == forward_errc::conflict);
    CHECK(why == "forward tcp:127.0.0.1:7990-8000:100-110: tcp 127.0.0.1:8000 is claimed by forward 1 "
                 "(tcp:127.0.0.1:8000-8010:80-90@vm1)");
    const auto wildcard = t.add(parsed("tcp:0.0.0.0:8011:23"), &why);
    REQUIRE_FALSE(wildcard);
    CHECK_THAT(why, Catch::Contains("claimed by forward 4"));
    CHECK(t.size() == 4);
    CHECK(t.ports() == 14);
}

TEST_CASE("forward table: limits on rules and on host ports in all") {
    table t{table_limits{.max_rules = 2, .max_ports = 20}};
    std::string why;
    REQUIRE(t.add(parsed("1000-1014:2000"), &why));
    const auto too_wide = t.add(parsed("3000-3009:4000"), &why);
    REQUIRE_FALSE(too_wide);
    CHECK(too_wide.error() == forward_errc::too_many);
    CHECK_THAT(why, Catch::Contains("limit of 20"));
    REQUIRE(t.add(parsed("3000-3004:4000"), &why));
    const auto third = t.add(parsed("5000:5000"), &why);
    REQUIRE_FALSE(third);
    CHECK(third.error() == forward_errc::too_many);
    CHECK_THAT(why, Catch::Contains("limit of 2 forwards"));
}

TEST_CASE("forward table: lookups by listener, by VM, by text, and removal") {
    table t;
    const auto web = *t.add(parsed("tcp:8080-8081:80-81@netns:/run/netns/a:eth0"));
    const auto dns = *t.add(parsed("udp:5353:53@52:54:00:00:00:07"));
    const auto any = *t.add(parsed("tcp:0.0.0.0:2222:22"));

    const auto to = t.lookup(protocol::tcp, wire::ipv4_address{127, 0, 0, 1}, 8081);
    REQUIRE(to);
    CHECK(to->id == web);
    CHECK(to->guest_port == 81);
    CHECK_FALSE(t.lookup(protocol::udp, wire::ipv4_address{127, 0, 0, 1}, 8081));
    CHECK_FALSE(t.lookup(protocol::tcp, wire::ipv4_address{127, 0, 0, 1}, 8082));
    CHECK(t.lookup(protocol::tcp, wire::ipv4_address{0, 0, 0, 0}, 2222)->id == any);

    // By VM: its port name (and the numbered ports of one QEMU socket), or its MAC; a rule naming
    // none only when the VM is the only one.
    const auto mac7 = wire::mac_address::parse("52:54:00:00:00:07");
    CHECK(t.for_vm("netns:/run/netns/a:eth0", std::nullopt, false) == std::vector<rule_id>{web});
    CHECK(t.for_vm("netns:/run/netns/a:eth0", std::nullopt, true) == std::vector<rule_id>{web, any});
    CHECK(t.for_vm("qemu:/x", *mac7, false) == std::vector<rule_id>{dns});
    CHECK(t.for_vm("netns:/run/netns/b:eth0", std::nullopt, false).empty());

    CHECK(t.find(parsed("tcp:127.0.0.1:8080-8081:80-81@netns:/run/netns/a:eth0")) == web);
    CHECK_FALSE(t.find(parsed("tcp:127.0.0.1:8080-8081:80-81")));

    CHECK(t.remove(web));
    CHECK_FALSE(t.remove(web));
    CHECK_FALSE(t.lookup(protocol::tcp, wire::ipv4_address{127, 0, 0, 1}, 8080));
    CHECK(t.find(web) == nullptr);
    CHECK(t.ports() == 2);
    // Its ports are free again, and ids are never reused.
    const auto again = t.add(parsed("tcp:8080:80"));
    REQUIRE(again);
    CHECK(*again == any + 1);
}

TEST_CASE("forward VM selectors: a name matches itself and its numbered QEMU connections, nothing else") {
    vm_selector qemu{std::nullopt, "qemu:/run/vm.sock"};
    CHECK(qemu.matches("qemu:/run/vm.sock", std::nullopt));
    CHECK(qemu.matches("qemu:/run/vm.sock#12", std::nullopt));
    CHECK_FALSE(qemu.matches("qemu:/run/vm.sock#", std::nullopt));
    CHECK_FALSE(qemu.matches("qemu:/run/vm.sock#1x", std::nullopt));
    CHECK_FALSE(qemu.matches("qemu:/run/vm.sock2", std::nullopt));
    CHECK_FALSE(qemu.matches("qemu:/run/vm", std::nullopt));
    const auto mac = *wire::mac_address::parse("52:54:00:00:00:07");
    vm_selector by_mac{mac, {}};
    CHECK(by_mac.matches("anything", mac));
    CHECK_FALSE(by_mac.matches("anything", std::nullopt));
    CHECK_FALSE(vm_selector{}.matches("anything", mac)); // no VM named: the service decides (the only one)
}
