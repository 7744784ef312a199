#include <ankanet/nat/timer_wheel.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <vector>

// Counts allocations, to show the wheel makes none after construction (this file is its own
// test executable).
#include "../support/counting_allocator.hpp"

using namespace std::chrono_literals;
using ankanet::nat::timer_wheel;
using time_point = timer_wheel::time_point;
using timer_id = timer_wheel::timer_id;

namespace {

const time_point origin = time_point{} + 1000h;

/// Advances and returns the fired ids in firing order.
std::vector<timer_id> advance(timer_wheel& wheel, time_point now) {
    std::vector<timer_id> fired;
    wheel.advance(now, [&](timer_id id) { fired.push_back(id); });
    return fired;
}

} // namespace

TEST_CASE("a timer fires at its deadline, never before, and once") {
    timer_wheel wheel{16, origin};
    REQUIRE(wheel.schedule(3, origin + 10ms));
    REQUIRE(wheel.is_scheduled(3));
    REQUIRE(wheel.size() == 1);
    CHECK(advance(wheel, origin + 9ms).empty());
    CHECK(advance(wheel, origin + 9ms + 999us).empty());
    CHECK(advance(wheel, origin + 10ms) == std::vector<timer_id>{3});
    CHECK_FALSE(wheel.is_scheduled(3));
    CHECK(wheel.empty());
    CHECK(advance(wheel, origin + 1h).empty());
}

TEST_CASE("a deadline between ticks is rounded up: late by less than a tick, never early") {
    timer_wheel wheel{4, origin};
    wheel.schedule(0, origin + 5ms + 300us);
    CHECK(wheel.deadline(0) == origin + 6ms);
    CHECK(advance(wheel, origin + 5ms + 900us).empty());
    CHECK(advance(wheel, origin + 6ms) == std::vector<timer_id>{0});
}

TEST_CASE("deadlines in the past fire at the next advance, whatever its now") {
    timer_wheel wheel{4, origin};
    CHECK(advance(wheel, origin + 1s).empty());
    wheel.schedule(1, origin + 10ms); // before the last advance
    wheel.schedule(2, origin - 1h);   // before the origin
    CHECK(wheel.next_deadline() <= origin + 1s);
    const auto fired = advance(wheel, origin + 1s); // the same now as before
    CHECK(std::set<timer_id>(fired.begin(), fired.end()) == std::set<timer_id>{1, 2});
    CHECK(fired.size() == 2);
}

TEST_CASE("a now earlier than the last one moves nothing back") {
    timer_wheel wheel{4, origin};
    wheel.schedule(0, origin + 2s);
    CHECK(advance(wheel, origin + 1s).empty());
    CHECK(advance(wheel, origin + 500ms).empty());
    CHECK(advance(wheel, origin - 1h).empty());
    CHECK(advance(wheel, origin + 2s) == std::vector<timer_id>{0});
}

TEST_CASE("cancel disarms, and cancel after fire and out-of-range ids are refused") {
    timer_wheel wheel{4, origin};
    wheel.schedule(0, origin + 1ms);
    wheel.schedule(1, origin + 1ms);
    CHECK(wheel.cancel(1));
    CHECK_FALSE(wheel.cancel(1));
    CHECK(advance(wheel, origin + 1ms) == std::vector<timer_id>{0});
    CHECK_FALSE(wheel.cancel(0)); // fired already
    CHECK_FALSE(wheel.schedule(4, origin));
    CHECK_FALSE(wheel.cancel(4));
    CHECK_FALSE(wheel.is_scheduled(99));
    CHECK_FALSE(wheel.deadline(99));
}

TEST_CASE("reschedule moves a timer, earlier or later") {
    timer_wheel wheel{4, origin};
    wheel.schedule(0, origin + 1h);
    wheel.reschedule(0, origin + 5ms);
    CHECK(wheel.size() == 1);
    CHECK(advance(wheel, origin + 5ms) == std::vector<timer_id>{0});
    wheel.schedule(1, origin + 10ms);
    wheel.reschedule(1, origin + 2h);
    CHECK(advance(wheel, origin + 1h).empty());
    CHECK(advance(wheel, origin + 2h) == std::vector<timer_id>{1});
}

TEST_CASE("timers fire in deadline order across levels") {
    timer_wheel wheel{8, origin};
    const std::vector<std::chrono::milliseconds> offsets{70000ms, 3ms, 5000ms, 64ms, 63ms, 4096ms, 300000000ms, 65ms};
    for (std::size_t i = 0; i < offsets.size(); ++i) wheel.schedule(static_cast<timer_id>(i), origin + offsets[i]);
    const auto fired = advance(wheel, origin + 24h * 10);
    CHECK(fired == std::vector<timer_id>{1, 4, 3, 7, 5, 2, 0, 6});
}

TEST_CASE("next_deadline: none when idle, exact on level 0, never after the earliest deadline") {
    timer_wheel wheel{4, origin};
    CHECK_FALSE(wheel.next_deadline());
    wheel.schedule(0, origin + 20ms);
    CHECK(wheel.next_deadline() == origin + 20ms);
    wheel.schedule(1, origin + 7ms);
    CHECK(wheel.next_deadline() == origin + 7ms);
    wheel.cancel(1);
    wheel.cancel(0);
    CHECK_FALSE(wheel.next_deadline());

    // Far out: the glue may wake early, a bounded number of times, and then at the deadline.
    const time_point far = origin + 3h + 17ms;
    wheel.schedule(2, far);
    int wakeups = 0;
    std::vector<timer_id> fired;
    while (auto next = wheel.next_deadline()) {
        REQUIRE(*next <= far);
        ++wakeups;
        wheel.advance(*next, [&](timer_id id) { fired.push_back(id); });
        REQUIRE(wakeups <= static_cast<int>(timer_wheel::levels) + 1);
    }
    CHECK(fired == std::vector<timer_id>{2});
}

TEST_CASE("deadlines beyond the wheel's horizon wait on the overflow list and fire on time") {
    // With 1 ns ticks the horizon is 2^36 ns, about 68.7 s.
    timer_wheel wheel{8, origin, 1ns};
    wheel.schedule(0, origin + 10min);
    wheel.schedule(1, origin + 69s);
    wheel.schedule(2, origin + 1s);
    wheel.schedule(3, time_point::max());
    CHECK(advance(wheel, origin + 1s) == std::vector<timer_id>{2});
    CHECK(advance(wheel, origin + 68s).empty());
    CHECK(advance(wheel, origin + 69s) == std::vector<timer_id>{1});
    CHECK(advance(wheel, origin + 10min - 1ns).empty());
    CHECK(advance(wheel, origin + 10min) == std::vector<timer_id>{0});
    CHECK(wheel.is_scheduled(3));
    CHECK(wheel.deadline(3) == time_point::max());
    CHECK(advance(wheel, origin + 24h * 365 * 100).empty());
    CHECK(wheel.is_scheduled(3));
}

TEST_CASE("callbacks may cancel other due timers, re-arm themselves, and cannot loop an advance forever") {
    timer_wheel wheel{8, origin};
    wheel.schedule(0, origin + 5ms);
    wheel.schedule(1, origin + 5ms);
    wheel.schedule(2, origin + 5ms);
    std::vector<timer_id> fired;
    wheel.advance(origin + 5ms, [&](timer_id id) {
        fired.push_back(id);
        CHECK_FALSE(wheel.is_scheduled(id));
        CHECK_FALSE(wheel.cancel(id));
        // Whoever fires first cancels the other two.
        for (timer_id other = 0; other < 3; ++other) wheel.cancel(other);
    });
    CHECK(fired.size() == 1);
    CHECK(wheel.empty());

    // A callback re-arming in the past: once per advance. One re-arming within `now` fires again.
    wheel.schedule(4, origin + 6ms);
    int calls = 0;
    wheel.advance(origin + 10ms, [&](timer_id id) {
        ++calls;
        wheel.schedule(id, origin); // always in the past
    });
    CHECK(calls == 1);
    CHECK(wheel.is_scheduled(4));
    calls = 0;
    wheel.advance(origin + 10ms, [&](timer_id) { ++calls; });
    CHECK(calls == 1);
    wheel.schedule(7, origin + 11ms);
    std::vector<time_point> fired_at;
    wheel.advance(origin + 15ms, [&](timer_id id) {
        fired_at.push_back(*wheel.next_deadline());
        if (fired_at.size() < 3) wheel.schedule(id, origin + 13ms + std::chrono::milliseconds{fired_at.size()});
    });
    CHECK(fired_at.size() == 3); // 11, then 14, then 15 ms
    CHECK_FALSE(wheel.is_scheduled(7));

    // advance() is not re-entrant: a nested call fires nothing.
    wheel.schedule(5, origin + 11ms);
    wheel.schedule(6, origin + 11ms);
    std::size_t nested = 99;
    const auto outer = wheel.advance(origin + 11ms, [&](timer_id) {
        if (nested == 99) nested = wheel.advance(origin + 11ms, [](timer_id) {});
    });
    CHECK(nested == 0);
    CHECK(outer == 2);
}

TEST_CASE("schedule, cancel and advance allocate nothing after construction") {
    timer_wheel wheel{1024, origin};
    std::mt19937_64 random{7};
    const auto before = ankanet::test::heap::allocations.load();
    std::size_t fired = 0;
    for (int round = 0; round < 50; ++round) {
        for (timer_id id = 0; id < 1024; ++id) {
            wheel.schedule(id, origin + std::chrono::milliseconds{random() % 100000});
        }
        for (timer_id id = 0; id < 1024; id += 3) wheel.cancel(id);
        fired += wheel.advance(origin + std::chrono::milliseconds{round * 2000}, [](timer_id) {});
    }
    CHECK(ankanet::test::heap::allocations.load() == before);
    CHECK(fired > 0);
}

TEST_CASE("randomized against a multimap model: each timer fires exactly once, at its tick, in order") {
    // Two configurations: 1 ms ticks (level cascades) and 1 ns ticks (the horizon is 68.7 s, so
    // the overflow list is exercised).
    for (const auto tick : {std::chrono::nanoseconds{1ms}, std::chrono::nanoseconds{1ns}}) {
        CAPTURE(tick.count());
        constexpr std::size_t capacity = 512;
        timer_wheel wheel{capacity, origin, tick};
        std::mt19937_64 random{20240601};
        std::map<timer_id, std::int64_t> model; // id -> deadline in ticks since origin
        std::map<timer_id, std::int64_t> effective; // the deadline, or the tick it was armed at if later
        std::int64_t now_ticks = 0;
        const auto at = [&](std::int64_t ticks) { return origin + tick * ticks; };

        for (int op = 0; op < 40000; ++op) {
            const auto id = static_cast<timer_id>(random() % capacity);
            switch (random() % 8) {
            case 0: case 1: case 2: { // schedule near, far, in the past, or beyond the horizon
                std::int64_t offset = 0;
                switch (random() % 4) {
                case 0: offset = static_cast<std::int64_t>(random() % 200); break;
                case 1: offset = static_cast<std::int64_t>(random() % 5'000'000); break;
                case 2: offset = -static_cast<std::int64_t>(random() % 1000); break;
                case 3: offset = static_cast<std::int64_t>(random() % (std::int64_t{1} << 40)); break;
                }
                const std::int64_t deadline = now_ticks + offset;
                REQUIRE(wheel.schedule(id, at(deadline)));
                model[id] = deadline;
                effective[id] = std::max(deadline, now_ticks);
                break;
            }
            case 3:
                REQUIRE(wheel.cancel(id) == (model.erase(id) == 1));
                break;
            default: { // advance by a little, or by a lot
                // Big steps are rare enough that time stays far from time_point's limit (292 years
                // of nanoseconds) and still crosses the 2^36-tick horizon several times.
                const auto step = random() % 64 == 0 ? static_cast<std::int64_t>(random() % (std::int64_t{1} << 32))
                                                     : static_cast<std::int64_t>(random() % 3000);
                now_ticks += step;
                std::multimap<std::int64_t, timer_id> due;
                for (const auto& [timer, deadline] : model) {
                    if (deadline <= now_ticks) due.emplace(deadline, timer);
                }
                std::vector<timer_id> fired;
                std::int64_t last_deadline = std::numeric_limits<std::int64_t>::min();
                wheel.advance(at(now_ticks), [&](timer_id timer) {
                    fired.push_back(timer);
                    const auto found = model.find(timer);
                    REQUIRE(found != model.end());
                    REQUIRE(found->second <= now_ticks);
                    // Deadline order at tick granularity; past deadlines count as when armed.
                    REQUIRE(effective[timer] >= last_deadline);
                    last_deadline = effective[timer];
                    model.erase(found);
                });
                REQUIRE(fired.size() == due.size());
                break;
            }
            }
            REQUIRE(wheel.size() == model.size());
            if (op % 97 == 0) {
                for (const auto& [timer, deadline] : model) {
                    REQUIRE(wheel.is_scheduled(timer));
                    REQUIRE(wheel.deadline(timer) == at(std::max(deadline, std::int64_t{0})));
                }
                if (!model.empty()) {
                    std::int64_t earliest = model.begin()->second;
                    for (const auto& entry : model) earliest = std::min(earliest, entry.second);
                    REQUIRE(wheel.next_deadline());
                    REQUIRE(*wheel.next_deadline() <= at(std::max(earliest, now_ticks)));
                } else {
                    REQUIRE_FALSE(wheel.next_deadline());
                }
            }
        }
    }
}
