#include <ankanet/wire/address.hpp>

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <functional>
#include <unordered_set>

using namespace ankanet;
using wire::ipv4_address;
using wire::ipv4_prefix;
using wire::mac_address;

TEST_CASE("mac_address parses colon and dash text in either case") {
    const auto colon = mac_address::parse("52:54:00:AB:cd:Ef");
    REQUIRE(colon);
    CHECK(colon->octets() == mac_address::bytes_type{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef});
    const auto dash = mac_address::parse("52-54-00-ab-cd-ef");
    REQUIRE(dash);
    CHECK(*dash == *colon);
    CHECK(fmt::format("{}", *colon) == "52:54:00:ab:cd:ef");
}

TEST_CASE("mac_address refuses malformed text with bad_address_text") {
    for (const char* text : {"", "52:54:00:ab:cd", "52:54:00:ab:cd:ef:01", "52:54:00:ab:cd:eg", "52:54-00:ab:cd:ef",
                             "5254.00ab.cdef", "52:54:00:ab:cd:e", " 52:54:00:ab:cd:e", "52:54:00:ab:cd:ef "}) {
        INFO(text);
        const auto parsed = mac_address::parse(text);
        REQUIRE_FALSE(parsed);
        CHECK(parsed.error() == errc::bad_address_text);
    }
}

TEST_CASE("mac_address classifies unicast, multicast, broadcast, zero and locally administered") {
    CHECK(mac_address::broadcast().is_broadcast());
    CHECK(mac_address::broadcast().is_multicast());
    CHECK_FALSE(mac_address::broadcast().is_unicast());
    CHECK(mac_address{}.is_zero());
    CHECK_FALSE(mac_address{}.is_unicast());
    const auto ipv4_multicast = *mac_address::parse("01:00:5e:00:00:fb");
    CHECK(ipv4_multicast.is_multicast());
    CHECK_FALSE(ipv4_multicast.is_broadcast());
    const auto qemu = *mac_address::parse("52:54:00:12:34:56"); // 0x52: U/L bit set, I/G clear
    CHECK(qemu.is_unicast());
    CHECK(qemu.is_locally_administered());
    CHECK_FALSE(mac_address::parse("00:1b:21:00:00:01")->is_locally_administered());
}

TEST_CASE("mac_address reads and writes wire bytes") {
    const auto bytes = wire::make_bytes(0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x99);
    const auto mac = mac_address::from_bytes(bytes);
    CHECK(mac == *mac_address::parse("52:54:00:12:34:56"));
    std::array<std::byte, 8> out{};
    mac.store(out, 1);
    CHECK(out[0] == std::byte{0});
    CHECK(out[1] == std::byte{0x52});
    CHECK(out[6] == std::byte{0x56});
    CHECK(out[7] == std::byte{0});
}

TEST_CASE("ipv4_address parses strict dotted quads") {
    const auto gateway = ipv4_address::parse("192.168.64.1");
    REQUIRE(gateway);
    CHECK(gateway->to_u32() == 0xc0a84001u);
    CHECK(*gateway == ipv4_address(192, 168, 64, 1));
    CHECK(fmt::format("{}", *gateway) == "192.168.64.1");
    CHECK(ipv4_address::parse("0.0.0.0")->is_unspecified());
    CHECK(ipv4_address::parse("255.255.255.255")->is_broadcast());
    for (const char* text : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", "01.2.3.4", "1..3.4", "1.2.3.4 ",
                             "a.b.c.d", "1.2.3.4/24", "1000.1.1.1", ".1.2.3"}) {
        INFO(text);
        const auto parsed = ipv4_address::parse(text);
        REQUIRE_FALSE(parsed);
        CHECK(parsed.error() == errc::bad_address_text);
    }
}

TEST_CASE("ipv4_address classifies loopback, multicast, link-local") {
    CHECK(ipv4_address::loopback().is_loopback());
    CHECK(ipv4_address(127, 255, 0, 9).is_loopback());
    CHECK_FALSE(ipv4_address(128, 0, 0, 1).is_loopback());
    CHECK(ipv4_address(224, 0, 0, 251).is_multicast());
    CHECK(ipv4_address(169, 254, 1, 1).is_link_local());
    CHECK(ipv4_address(10, 0, 0, 1) < ipv4_address(10, 0, 0, 2));
    CHECK(ipv4_address(9, 255, 255, 255) < ipv4_address(10, 0, 0, 0));
}

TEST_CASE("ipv4_prefix parses and computes its subnet") {
    const auto shared = ipv4_prefix::parse("192.168.64.1/24");
    REQUIRE(shared);
    CHECK(shared->address() == ipv4_address(192, 168, 64, 1));
    CHECK(shared->length() == 24);
    CHECK(shared->netmask() == ipv4_address(255, 255, 255, 0));
    CHECK(shared->network() == ipv4_address(192, 168, 64, 0));
    CHECK(shared->broadcast() == ipv4_address(192, 168, 64, 255));
    CHECK(shared->size() == 256);
    CHECK(shared->contains(ipv4_address(192, 168, 64, 254)));
    CHECK_FALSE(shared->contains(ipv4_address(192, 168, 128, 2)));
    CHECK(fmt::format("{}", *shared) == "192.168.64.1/24");

    const auto everything = ipv4_prefix::parse("0.0.0.0/0");
    REQUIRE(everything);
    CHECK(everything->netmask() == ipv4_address(0, 0, 0, 0));
    CHECK(everything->contains(ipv4_address(8, 8, 8, 8)));
    CHECK(everything->size() == (std::uint64_t{1} << 32));
    const auto host = ipv4_prefix::parse("10.1.2.3/32");
    REQUIRE(host);
    CHECK(host->size() == 1);
    CHECK(host->contains(ipv4_address(10, 1, 2, 3)));
    CHECK_FALSE(host->contains(ipv4_address(10, 1, 2, 4)));
    CHECK(ipv4_prefix::parse("10.0.0.0/16")->size() == 65536);

    for (const char* text : {"192.168.64.0", "192.168.64.0/33", "192.168.64.0/", "192.168.64.0/024",
                             "192.168.64/24", "192.168.64.0/-1", "192.168.64.0/2a"}) {
        INFO(text);
        CHECK(ipv4_prefix::parse(text).error() == errc::bad_address_text);
    }
}

TEST_CASE("addresses hash consistently with equality") {
    std::unordered_set<mac_address> macs{*mac_address::parse("52:54:00:00:00:01"), *mac_address::parse("52:54:00:00:00:02")};
    CHECK(macs.count(*mac_address::parse("52:54:00:00:00:01")) == 1);
    CHECK(macs.count(*mac_address::parse("52:54:00:00:00:03")) == 0);
    std::unordered_set<ipv4_address> addresses{ipv4_address(192, 168, 64, 2)};
    CHECK(addresses.count(ipv4_address(192, 168, 64, 2)) == 1);
    CHECK(std::hash<ipv4_prefix>{}(*ipv4_prefix::parse("10.0.0.0/8")) != std::hash<ipv4_prefix>{}(*ipv4_prefix::parse("10.0.0.0/9")));
}
