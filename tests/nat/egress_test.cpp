#include <ankanet/nat/egress.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <variant>

using namespace ankanet;
using namespace ankanet::nat;
using ankanet::wire::ipv4_address;
using ankanet::wire::ipv4_prefix;

namespace {

constexpr std::uint8_t tcp = ip_protocol::tcp;
constexpr std::uint8_t udp = ip_protocol::udp;
constexpr std::uint8_t icmp = ip_protocol::icmp;

ipv4_address addr(const char* text) { return *ipv4_address::parse(text); }

} // namespace

TEST_CASE("never reachable, under every policy: this network, multicast, reserved, broadcast, port 0") {
    const runtime_egress everything{egress_allow_list{{ipv4_prefix{ipv4_address{}, 0}}}};
    for (const auto& policy : {runtime_egress{egress_any{}}, everything}) {
        CAPTURE(std::string{policy.name()});
        CHECK_FALSE(policy.allows(addr("0.0.0.0"), 80, tcp));
        CHECK_FALSE(policy.allows(addr("0.1.2.3"), 80, tcp));
        CHECK_FALSE(policy.allows(addr("224.0.0.251"), 5353, udp));
        CHECK_FALSE(policy.allows(addr("239.255.255.250"), 1900, udp));
        CHECK_FALSE(policy.allows(addr("240.0.0.1"), 80, tcp));
        CHECK_FALSE(policy.allows(addr("255.255.255.255"), 67, udp));
        CHECK_FALSE(policy.allows(addr("93.184.216.34"), 0, tcp));
        CHECK_FALSE(policy.allows(addr("93.184.216.34"), 0, udp));
        CHECK(policy.allows(addr("93.184.216.34"), 0, icmp)); // ICMP has no port; 0 is an echo id
        CHECK(policy.allows(addr("93.184.216.34"), 443, tcp));
        CHECK(policy.allows(addr("127.0.0.1"), 8080, tcp));
    }
    CHECK(never_reachable(addr("1.0.0.0"), 1, tcp) == false);
    CHECK(never_reachable(addr("223.255.255.255"), 1, tcp) == false);
}

TEST_CASE("egress_any: the host's loopback, LANs and the internet, but not link-local") {
    constexpr egress_any any;
    STATIC_REQUIRE(any.allows(ipv4_address{8, 8, 8, 8}, 53, udp));
    CHECK(any.allows(addr("127.0.0.1"), 22, tcp));
    CHECK(any.allows(addr("10.1.2.3"), 22, tcp));
    CHECK(any.allows(addr("198.51.100.7"), 80, tcp));
    CHECK_FALSE(any.allows(addr("169.254.169.254"), 80, tcp)); // cloud metadata
    CHECK_FALSE(any.allows(addr("169.254.1.1"), 80, tcp));
    CHECK(any.name() == "any");
}

TEST_CASE("egress_host_only: the host's loopback and nothing beyond") {
    constexpr egress_host_only host;
    CHECK(host.allows(addr("127.0.0.1"), 8080, tcp));
    CHECK(host.allows(addr("127.255.255.254"), 53, udp));
    CHECK(host.allows(addr("127.0.0.1"), 7, icmp));
    CHECK_FALSE(host.allows(addr("127.0.0.1"), 0, tcp));
    CHECK_FALSE(host.allows(addr("192.168.64.1"), 80, tcp)); // the gateway arrives mapped to loopback
    CHECK_FALSE(host.allows(addr("198.51.100.7"), 80, tcp));
    CHECK_FALSE(host.allows(addr("8.8.8.8"), 53, udp));
    CHECK(host.name() == "host");
}

TEST_CASE("egress_allow_list: exactly its CIDRs") {
    const egress_allow_list list{{*ipv4_prefix::parse("127.0.0.0/8"), *ipv4_prefix::parse("198.51.100.0/24"),
                                  *ipv4_prefix::parse("10.0.0.5/32")}};
    CHECK(list.allows(addr("127.0.0.1"), 80, tcp));
    CHECK(list.allows(addr("198.51.100.0"), 80, tcp));
    CHECK(list.allows(addr("198.51.100.255"), 80, udp));
    CHECK_FALSE(list.allows(addr("198.51.101.0"), 80, tcp));
    CHECK(list.allows(addr("10.0.0.5"), 80, tcp));
    CHECK_FALSE(list.allows(addr("10.0.0.6"), 80, tcp));
    CHECK_FALSE(list.allows(addr("8.8.8.8"), 53, udp));
    CHECK(list.name() == "allow 127.0.0.0/8,198.51.100.0/24,10.0.0.5/32");

    const egress_allow_list nothing;
    CHECK_FALSE(nothing.allows(addr("127.0.0.1"), 80, tcp));
    CHECK(nothing.name() == "allow nothing");
}

TEST_CASE("martian guest destinations: loopback and the never-reachable") {
    CHECK(is_martian_guest_destination(addr("127.0.0.1")));
    CHECK(is_martian_guest_destination(addr("0.0.0.0")));
    CHECK(is_martian_guest_destination(addr("224.0.0.1")));
    CHECK(is_martian_guest_destination(addr("255.255.255.255")));
    CHECK_FALSE(is_martian_guest_destination(addr("192.168.64.1")));
    CHECK_FALSE(is_martian_guest_destination(addr("169.254.169.254"))); // the policy decides
}

TEST_CASE("parse_egress: any, host and CIDR lists") {
    const auto any = parse_egress("any");
    REQUIRE(any);
    CHECK(std::holds_alternative<egress_any>(any->policy()));
    CHECK(any->name() == "any");

    const auto host = parse_egress("host");
    REQUIRE(host);
    CHECK(std::holds_alternative<egress_host_only>(host->policy()));
    CHECK(host->allows(addr("127.0.0.1"), 80, tcp));
    CHECK_FALSE(host->allows(addr("8.8.8.8"), 80, tcp));

    const auto loopback = parse_egress("127.0.0.0/8");
    REQUIRE(loopback);
    CHECK(loopback->name() == "allow 127.0.0.0/8");
    CHECK(loopback->allows(addr("127.0.0.1"), 80, tcp));
    CHECK_FALSE(loopback->allows(addr("198.51.100.1"), 80, tcp));

    const auto list = parse_egress("127.0.0.0/8,198.51.100.0/24,203.0.113.9");
    REQUIRE(list);
    CHECK(list->name() == "allow 127.0.0.0/8,198.51.100.0/24,203.0.113.9/32");
    CHECK(list->allows(addr("203.0.113.9"), 80, tcp));
    CHECK_FALSE(list->allows(addr("203.0.113.10"), 80, tcp));
}

TEST_CASE("parse_egress refuses bad text with one sentence naming the bad item") {
    struct bad_case {
        const char* text;
        egress_errc code;
        const char* why;
    };
    const bad_case cases[] = {
        {"", egress_errc::empty, "the egress policy is empty or has an empty item between commas"},
        {"127.0.0.0/8,", egress_errc::empty, "the egress policy is empty or has an empty item between commas"},
        {",127.0.0.0/8", egress_errc::empty, "the egress policy is empty or has an empty item between commas"},
        {"anything", egress_errc::bad_prefix,
         "egress item \"anything\" is neither any, host nor an IPv4 address or CIDR such as 127.0.0.0/8"},
        {"127.0.0.0/33", egress_errc::bad_prefix,
         "egress item \"127.0.0.0/33\" is neither any, host nor an IPv4 address or CIDR such as 127.0.0.0/8"},
        {"10.0.0.1/8", egress_errc::host_bits_set, "egress CIDR \"10.0.0.1/8\" has bits set beyond its prefix length"},
        {"host,127.0.0.0/8", egress_errc::mixed_keyword,
         "egress \"host\" stands alone and cannot be combined with CIDRs"},
        {"Any", egress_errc::bad_prefix,
         "egress item \"Any\" is neither any, host nor an IPv4 address or CIDR such as 127.0.0.0/8"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        std::string why;
        const auto parsed = parse_egress(c.text, &why);
        REQUIRE_FALSE(parsed);
        CHECK(parsed.error() == c.code);
        CHECK(why == c.why);
        CHECK_FALSE(parsed.error().message().empty());
    }
    CHECK_FALSE(parse_egress("1.2.3")); // without `why`
}
