#include <ankanet/dns/resolv_conf.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

using ankanet::errc;
using ankanet::dns::resolv_conf;
using ankanet::dns::skipped_line;
using ankanet::dns::upstream_server;
using ankanet::wire::ipv4_address;

namespace {

std::array<std::uint8_t, 16> v6(std::initializer_list<std::uint8_t> bytes) {
    std::array<std::uint8_t, 16> out{};
    std::size_t i = 0;
    for (auto b : bytes) out[i++] = b;
    return out;
}

} // namespace

TEST_CASE("resolv_conf: systemd-resolved's stub file") {
    // /etc/resolv.conf as systemd-resolved writes it (stub-resolv.conf), comments abridged.
    constexpr std::string_view text = "# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).\n"
                                      "# Do not edit.\n"
                                      "\n"
                                      "nameserver 127.0.0.53\n"
                                      "options edns0 trust-ad\n"
                                      "search lan\n";
    const auto conf = resolv_conf::parse(text);
    REQUIRE(conf);
    REQUIRE(conf->servers.size() == 1);
    const auto& s = conf->servers[0];
    CHECK(s.is_ipv4());
    CHECK(s.ipv4 == ipv4_address(127, 0, 0, 53));
    CHECK(s.port == 53);
    CHECK(s.line == 4);
    CHECK(s.within_glibc_limit);
    CHECK(s.is_loopback());
    CHECK(conf->has_loopback());
    CHECK(conf->has_systemd_resolved_stub());
    CHECK(conf->skipped.empty());
}

TEST_CASE("resolv_conf: IPv4 and IPv6 servers, scopes, and trailing comments") {
    constexpr std::string_view text = "domain example.test\n"
                                      "nameserver 192.0.2.53 # the router\n"
                                      "nameserver\t2001:db8::35;secondary\n"
                                      "nameserver fe80::1%eth0\n"
                                      "nameserver fe80::2%2\n"
                                      "nameserver ::1\n"
                                      "nameserver ::ffff:198.51.100.7\r\n";
    const auto conf = resolv_conf::parse(text);
    REQUIRE(conf);
    REQUIRE(conf->servers.size() == 6);
    CHECK(conf->servers[0].ipv4 == ipv4_address(192, 0, 2, 53));
    CHECK_FALSE(conf->servers[0].is_loopback());

    CHECK(conf->servers[1].is_ipv6());
    CHECK(conf->servers[1].ipv6 == v6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x35}));
    CHECK(conf->servers[1].scope.empty());
    CHECK_FALSE(conf->servers[1].is_ipv6_link_local());

    CHECK(conf->servers[2].scope == "eth0");
    CHECK(conf->servers[2].is_ipv6_link_local());
    CHECK(conf->servers[3].scope == "2");

    CHECK(conf->servers[4].is_loopback());
    CHECK(conf->servers[5].ipv6 == v6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 7}));

    // glibc uses the first three; the rest are kept, marked.
    CHECK(conf->glibc_server_count() == 3);
    for (std::size_t i = 0; i < conf->servers.size(); ++i) CHECK(conf->servers[i].within_glibc_limit == (i < 3));
    CHECK(conf->has_loopback());
    CHECK_FALSE(conf->has_systemd_resolved_stub());
}

TEST_CASE("resolv_conf: comments, other keywords and lines glibc would not read are ignored") {
    constexpr std::string_view text = "# nameserver 10.0.0.1\n"
                                      "; nameserver 10.0.0.2\n"
                                      " nameserver 10.0.0.3\n"     // keyword not at the line start
                                      "nameserver10.0.0.4\n"       // no blank after the keyword
                                      "nameservers 10.0.0.5\n"     // another word
                                      "NAMESERVER 10.0.0.6\n"      // keywords are case-sensitive
                                      "options ndots:2 timeout:1\n"
                                      "sortlist 130.155.160.0/255.255.240.0\n"
                                      "nameserver 10.0.0.7";       // no final newline
    const auto conf = resolv_conf::parse(text);
    REQUIRE(conf);
    REQUIRE(conf->servers.size() == 1);
    CHECK(conf->servers[0].ipv4 == ipv4_address(10, 0, 0, 7));
    CHECK(conf->servers[0].line == 9);
    CHECK(conf->skipped.empty());
    CHECK_FALSE(conf->has_loopback());
}

TEST_CASE("resolv_conf: malformed nameserver lines are skipped with a reason") {
    constexpr std::string_view text = "nameserver 127.1\n"             // inet_aton's short form: refused
                                      "nameserver 256.0.0.1\n"
                                      "nameserver \n"
                                      "nameserver 2001:db8::zz\n"
                                      "nameserver fe80::1%\n"
                                      "nameserver fe80::1%this-name-is-too-long\n"
                                      "nameserver host.example.test\n"
                                      "nameserver 192.0.2.1\n";
    const auto conf = resolv_conf::parse(text);
    REQUIRE(conf);
    REQUIRE(conf->servers.size() == 1);
    CHECK(conf->servers[0].ipv4 == ipv4_address(192, 0, 2, 1));
    CHECK(conf->servers[0].within_glibc_limit);
    REQUIRE(conf->skipped.size() == 7);
    for (std::size_t i = 0; i < conf->skipped.size(); ++i) {
        CHECK(conf->skipped[i].line == i + 1);
        CHECK_FALSE(conf->skipped[i].why.empty());
    }
    CHECK(conf->skipped[2].why == "nameserver without an address");
}

TEST_CASE("resolv_conf: nothing usable is an error") {
    CHECK(resolv_conf::parse("").error() == errc::unsupported);
    CHECK(resolv_conf::parse("# empty\nsearch lan\noptions edns0\n").error() == errc::unsupported);
    CHECK(resolv_conf::parse("nameserver bogus\nnameserver 1.2.3\n").error() == errc::bad_address_text);
    // A NUL inside the address is part of it (glibc's C strings would stop there): refused.
    CHECK(resolv_conf::parse(std::string_view{"nameserver 10.0.0.1\0", 20}).error() == errc::bad_address_text);
}

TEST_CASE("resolv_conf: embedded NUL bytes never reach inet_pton as a shorter string") {
    const std::string text{"nameserver ::1\0:2\nnameserver 10.0.0.9\n", 37};
    const auto conf = resolv_conf::parse(text);
    REQUIRE(conf);
    REQUIRE(conf->servers.size() == 1);
    CHECK(conf->servers[0].ipv4 == ipv4_address(10, 0, 0, 9));
    CHECK(conf->skipped.size() == 1);
}

TEST_CASE("resolv_conf: random text never crashes and every server is well-formed") {
    std::mt19937 rng{20261128};
    constexpr std::string_view alphabet = "nameserver 0123456789abcdef:.%#;\t\n ";
    for (int round = 0; round < 2000; ++round) {
        std::string text = round % 2 == 0 ? "nameserver " : "";
        const auto length = rng() % 120;
        for (std::uint32_t i = 0; i < length; ++i) text.push_back(alphabet[rng() % alphabet.size()]);
        const auto conf = resolv_conf::parse(text);
        if (!conf) {
            CHECK((conf.error() == errc::unsupported || conf.error() == errc::bad_address_text));
            continue;
        }
        REQUIRE_FALSE(conf->servers.empty());
        for (std::size_t i = 0; i < conf->servers.size(); ++i) {
            CHECK(conf->servers[i].line >= 1);
            CHECK(conf->servers[i].within_glibc_limit == (i < 3));
            CHECK(conf->servers[i].scope.size() <= 15);
        }
    }
}
