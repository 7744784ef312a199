// Test support: waiting for a lease store's background writer (write_mode::background) to catch up,
// for tests that then read the lease file or the store's counters. Works with any store that counts
// its changes and the ones its writer has tried (dhcp::file_lease_store, dhcp::any_lease_store).
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

namespace ankanet::test {

/// Waits (at most 10 s) until the store's writer has tried every change made so far; fails the
/// test (REQUIRE) if it has not by then.
template <class Store>
void wait_settled(const Store& store) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
    while (store.settled() < store.changes() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds{1});
    }
    REQUIRE(store.settled() == store.changes());
}

} // namespace ankanet::test
