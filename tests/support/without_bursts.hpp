// Test support: a backend decorator that hides try_receive, so a port over it takes one frame per
// async_receive completion, as ports did before burst draining. Shared by tests/backend/port_test.cpp
// (both receive loops must deliver the same frames) and bench/port_bench.cpp (the `one_per_turn`
// side of the comparison). Catch-free, so the benchmarks can include it.
#pragma once

#include <ankanet/backend/backend.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>

#include <cstddef>
#include <optional>
#include <system_error>
#include <utility>

namespace ankanet::test {

/// Forwards everything but try_receive: the same backend, seen as one that cannot drain bursts.
template <backend::frame_backend Backend>
class without_bursts {
public:
    using executor_type = typename Backend::executor_type;
    explicit without_bursts(Backend next) : next_(std::move(next)) {}
    executor_type get_executor() const noexcept { return next_.get_executor(); }
    template <class Handler>
    void async_receive(wire::mutable_bytes buffer, Handler&& handler) {
        next_.async_receive(buffer, std::forward<Handler>(handler));
    }
    std::error_code send(wire::const_bytes frame) { return next_.send(frame); }
    std::size_t mtu() const noexcept { return next_.mtu(); }
    std::optional<wire::mac_address> mac() const noexcept { return next_.mac(); }
    backend::counters stats() const noexcept { return next_.stats(); }
    void close() { next_.close(); }

private:
    Backend next_;
};

} // namespace ankanet::test
