#include <ankanet/l2/mac_registry.hpp>

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <string>
#include <system_error>
#include <utility>
#include <vector>

using namespace ankanet;
using ankanet::l2::mac_errc;
using ankanet::l2::mac_registry;

namespace {

const mac_address custom_mac = *mac_address::parse("52:54:00:12:34:56");
const mac_address other_mac = *mac_address::parse("02:00:00:00:00:01");

} // namespace

TEST_CASE("mac_registry: register, look up and unregister") {
    mac_registry registry;
    CHECK(registry.empty());
    CHECK_FALSE(registry.add(custom_mac, "vm-a"));
    CHECK_FALSE(registry.add(other_mac, "vm-b"));
    CHECK(registry.size() == 2);
    CHECK(registry.contains(custom_mac));
    REQUIRE(registry.lookup(custom_mac));
    CHECK(*registry.lookup(custom_mac) == "vm-a");
    CHECK(*registry.lookup(other_mac) == "vm-b");
    CHECK_FALSE(registry.lookup(*mac_address::parse("02:00:00:00:00:02")));

    CHECK_FALSE(registry.remove(custom_mac));
    CHECK_FALSE(registry.contains(custom_mac));
    CHECK(registry.remove(custom_mac) == mac_errc::not_registered);
    CHECK(registry.size() == 1);
}

TEST_CASE("mac_registry: a clone with the same custom MAC is refused, naming both VMs") {
    mac_registry registry;
    REQUIRE_FALSE(registry.add(custom_mac, "ubuntu"));
    const auto error = registry.add(custom_mac, "ubuntu (clone)");
    REQUIRE(error);
    CHECK(error.code() == mac_errc::in_use);
    CHECK(error.code().category().name() == std::string{"ankanet.l2.mac"});
    CHECK(error.mac() == custom_mac);
    CHECK(error.requested_by() == "ubuntu (clone)");
    CHECK(error.held_by() == "ubuntu");
    CHECK(error.message() ==
          "MAC address 52:54:00:12:34:56 requested by VM 'ubuntu (clone)' is already in use by VM 'ubuntu' on this host");
    CHECK(fmt::format("{}", error) == error.message());
    // The holder keeps its address; the refused VM got nothing.
    CHECK(*registry.lookup(custom_mac) == "ubuntu");
    CHECK(registry.size() == 1);
    // Once the first VM stops, the clone may start.
    REQUIRE_FALSE(registry.remove(custom_mac));
    CHECK_FALSE(registry.add(custom_mac, "ubuntu (clone)"));
    CHECK(*registry.lookup(custom_mac) == "ubuntu (clone)");
}

TEST_CASE("mac_registry: registering again for the same VM is idempotent") {
    mac_registry registry;
    REQUIRE_FALSE(registry.add(custom_mac, "vm-a"));
    CHECK_FALSE(registry.add(custom_mac, "vm-a"));
    CHECK(registry.size() == 1);
}

TEST_CASE("mac_registry: multicast, broadcast and all-zero custom MACs are refused with a clear message") {
    mac_registry registry;
    const std::vector<std::pair<std::string, mac_errc>> cases = {
        {"01:00:5e:00:00:fb", mac_errc::multicast_address}, // IPv4 mDNS group
        {"33:33:00:00:00:01", mac_errc::multicast_address}, // IPv6 all-nodes
        {"03:00:00:00:00:00", mac_errc::multicast_address}, // locally administered, but a group
        {"ff:ff:ff:ff:ff:ff", mac_errc::broadcast_address},
        {"00:00:00:00:00:00", mac_errc::zero_address},
    };
    for (const auto& [text, expected] : cases) {
        INFO(text);
        const auto mac = *mac_address::parse(text);
        const auto error = registry.add(mac, "vm-a");
        REQUIRE(error);
        CHECK(error.code() == expected);
        CHECK(error.held_by().empty());
        CHECK(l2::validate_nic_mac(mac) == expected);
    }
    CHECK(registry.empty());

    const auto broadcast = registry.add(mac_address::broadcast(), "vm-a");
    CHECK(broadcast.message() ==
          "MAC address ff:ff:ff:ff:ff:ff refused for VM 'vm-a': the broadcast MAC address cannot be assigned to a VM");
    const auto multicast = registry.add(*mac_address::parse("01:00:5e:00:00:fb"), "vm-a");
    CHECK(multicast.message() == "MAC address 01:00:5e:00:00:fb refused for VM 'vm-a': "
                                 "a multicast MAC address (I/G bit set) cannot be assigned to a VM");
    const auto zero = registry.add(mac_address{}, "vm-a");
    CHECK(zero.message() ==
          "MAC address 00:00:00:00:00:00 refused for VM 'vm-a': the all-zero MAC address cannot be assigned to a VM");

    // Vendor (universally administered) unicast addresses are fine as custom MACs.
    CHECK_FALSE(l2::validate_nic_mac(*mac_address::parse("00:1c:42:00:00:08")));
    CHECK_FALSE(registry.add(*mac_address::parse("00:1c:42:00:00:08"), "vm-a"));
}

TEST_CASE("mac_registry: remove_vm releases every NIC of one VM") {
    mac_registry registry;
    REQUIRE_FALSE(registry.add(custom_mac, "vm-a"));
    REQUIRE_FALSE(registry.add(other_mac, "vm-a"));
    REQUIRE_FALSE(registry.add(*mac_address::parse("02:00:00:00:00:09"), "vm-b"));
    CHECK(registry.remove_vm("vm-a") == 2);
    CHECK(registry.size() == 1);
    CHECK(registry.remove_vm("vm-a") == 0);

    std::vector<std::string> seen;
    registry.for_each([&](const mac_address& mac, std::string_view vm) { seen.push_back(fmt::format("{}={}", mac, vm)); });
    CHECK(seen == std::vector<std::string>{"02:00:00:00:00:09=vm-b"});
}

TEST_CASE("mac_registry: an empty registry_error is success") {
    const l2::registry_error none;
    CHECK_FALSE(none);
    CHECK(none.message() == "no error");
    const std::error_code code = mac_errc::space_exhausted;
    CHECK(code.message() == "no free MAC address left in the randomizer's address space");
}
