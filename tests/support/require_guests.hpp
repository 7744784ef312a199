// Test support: what end-to-end tests with namespace guests check before they start. Missing root,
// /dev/net/tun, iproute2 or the DHCP clients skips the test with the reason outside CI and fails it
// in CI (ANKANET_REQUIRE_ENVIRONMENT).
#pragma once

#include "dhcp_clients.hpp"
#include "netns.hpp"
#include "skip.hpp"

/// Leaves the test unless namespaces and TAP devices can be made here.
#define ANKANET_REQUIRE_NETNS()                                                                   \
    do {                                                                                          \
        const auto missing_ = ::ankanet::test::missing_netns_requirements();                     \
        ANKANET_REQUIRE_ENVIRONMENT(missing_.empty(), "namespace guests need " << missing_);    \
    } while (false)

/// Leaves the test unless namespaces can be made and udhcpc, dhclient and dhcpcd are installed.
#define ANKANET_REQUIRE_NETNS_AND_DHCP_CLIENTS()                                                  \
    do {                                                                                          \
        ANKANET_REQUIRE_NETNS();                                                                  \
        const auto clients_ = ::ankanet::test::missing_dhcp_clients();                           \
        ANKANET_REQUIRE_ENVIRONMENT(clients_.empty(), "DHCP guests need " << clients_);         \
    } while (false)
