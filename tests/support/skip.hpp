// Test support: end-to-end tests that need root, network namespaces, /dev/net/tun or QEMU skip
// with a clear message where those are missing — except in CI (CI=true), where a skip is a failure.
#pragma once

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <string_view>

namespace ankanet::test {

inline bool in_ci() {
    const char* ci = std::getenv("CI");
    return ci != nullptr && std::string_view{ci} == "true";
}

} // namespace ankanet::test

/// Leaves the current test case when `condition` is false: a WARN outside CI, a FAIL inside it.
#define ANKANET_REQUIRE_ENVIRONMENT(condition, why)                                                 \
    do {                                                                                            \
        if (!(condition)) {                                                                         \
            if (::ankanet::test::in_ci()) {                                                         \
                FAIL("required in CI but missing: " << why);                                        \
            }                                                                                       \
            WARN("SKIPPED: " << why);                                                               \
            return;                                                                                 \
        }                                                                                           \
    } while (false)
