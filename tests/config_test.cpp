#include <ankanet/config.hpp>

#include <catch2/catch.hpp>

#include <fmt/format.h>

using namespace ankanet;

TEST_CASE("config: mode names parse and print") {
    for (const auto& [mode, name] : network_mode_names) {
        const auto parsed = parse_network_mode(name);
        REQUIRE(parsed);
        CHECK(*parsed == mode);
        CHECK(fmt::format("{}", mode) == name);
    }
    CHECK_FALSE(parse_network_mode("nat"));
    CHECK_FALSE(parse_network_mode("Shared"));
    CHECK_FALSE(parse_network_mode(""));
}

TEST_CASE("config: shared and host modes use the documented subnets, bridge and disconnected have none") {
    const auto shared = default_subnet(network_mode::shared);
    REQUIRE(shared);
    CHECK(shared->address() == ipv4_address(192, 168, 64, 1));
    CHECK(shared->network() == ipv4_address(192, 168, 64, 0));
    CHECK(shared->length() == 24);
    const auto host = default_subnet(network_mode::host);
    REQUIRE(host);
    CHECK(host->address() == ipv4_address(192, 168, 128, 1));
    CHECK(host->length() == 24);
    CHECK_FALSE(default_subnet(network_mode::bridge));
    CHECK_FALSE(default_subnet(network_mode::disconnected));
}

TEST_CASE("config: the gateway MAC is unicast and locally administered") {
    CHECK(default_gateway_mac.is_unicast());
    CHECK(default_gateway_mac.is_locally_administered());
}
