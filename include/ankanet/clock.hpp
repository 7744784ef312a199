/// @file
/// ankanet — time as a policy: the clocks a network reads `now` from.
///
/// A network needs two times at once: a steady one, for what ages (the switch's MAC table, the
/// neighbour table, flow timeouts), and the wall clock, for what is written down and must survive a
/// restart (DHCP lease expiry, kept as Unix time in the lease file). A network clock gives both in
/// one `network_time`, read once per burst of frames; no engine reads a clock of its own on the data
/// path. Tests use manual_clock and move time by hand.
#pragma once

#include <chrono>
#include <concepts>

namespace ankanet {

/// One reading of both clocks.
struct network_time {
    std::chrono::steady_clock::time_point steady{}; ///< for timers and ageing
    std::chrono::system_clock::time_point wall{};     ///< for lease times, which outlive a reboot

    /// The wall time in whole seconds, as the DHCP lease pool counts.
    std::chrono::sys_seconds wall_seconds() const noexcept { return std::chrono::floor<std::chrono::seconds>(wall); }
};

/// @par NetworkClock requirements
/// `clock.now()` returns a `network_time`. It is called once per burst of frames (and per poll()).
template <class C>
concept network_clock = requires(C& c) {
    { c.now() } -> std::same_as<network_time>;
};

/// The real clocks.
struct real_clock {
    /// The current time.
    network_time now() const noexcept { return {std::chrono::steady_clock::now(), std::chrono::system_clock::now()}; }
};

/// A clock that moves only when told: both times advance together.
/// @par Example
/// @code
/// ankanet::manual_clock clock;
/// network.input(vm, frame, clock.now(), emit);
/// clock.advance(std::chrono::minutes{61}); // the lease has run out
/// @endcode
class manual_clock {
public:
    /// Starts at the given wall time (default: 2026-01-01T00:00:00Z) and an arbitrary steady time.
    explicit manual_clock(std::chrono::sys_seconds wall_start = std::chrono::sys_seconds{std::chrono::seconds{1767225600}}) noexcept
        : now_{std::chrono::steady_clock::time_point{std::chrono::hours{24}}, wall_start} {}

    /// The current time.
    network_time now() const noexcept { return now_; }
    /// Moves both clocks forward by `by`.
    void advance(std::chrono::steady_clock::duration by) noexcept {
        now_.steady += by;
        now_.wall += std::chrono::duration_cast<std::chrono::system_clock::duration>(by);
    }

private:
    network_time now_;
};

static_assert(network_clock<real_clock>);
static_assert(network_clock<manual_clock>);

} // namespace ankanet
