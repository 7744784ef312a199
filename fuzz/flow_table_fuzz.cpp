// Fuzz target for ankanet::nat::flow_table and ankanet::nat::timer_wheel, driven together the way
// the translator will drive them: a flow's slot index is its timer id, and a timer that fires
// expires its flow.
//
// The input is a program. Its first byte sets up: bits 0-5 the table's capacity (1 to 64, so full
// tables, wrapped probe runs and slot reuse are reached), bit 6 the wheel's tick (1 ms, or 1 ns so
// its 2^36-tick horizon is 68.7 s and far deadlines take the overflow list), bit 7 whether a fired
// timer erases its flow. The rest are steps, an opcode byte and its operands, a missing byte reading
// as 0:
//
//   op % 8   operands        what
//   0        k               insert(key k) with a value the step number gives
//   1        k               find(key k), and get()/key() of what it returns
//   2        k               erase(key k)
//   3        h               erase(a handle remembered from an earlier insert, h % their number)
//                            — live or stale
//   4        k s d32         arm the timer of key k's flow (if it has one) at now + d32 << (s % 40)
//                            units (negative when s & 0x80: a deadline in the past)
//   5        k               cancel the timer of key k's flow
//   6        s d32           advance the clock by d32 << (s % 40) units and fire what is due
//   7        vm n            set_vm_limit(vm % 4, n % 70)
//   k: one byte; bits 0-1 the VM (0-3), bit 2 the protocol (TCP or UDP), bits 3-7 the remote port
//   — 128 keys, so the table fills, repeats and collides. With bit 7 of the opcode byte set, a key
//   reads four more bytes as its remote address. Op 0 with opcode bit 6 set uses VM 4, beyond the
//   table's max_vms of 4, which the table must refuse.
//
// Every step is checked against a model: a std::map from key to (handle, value) for the flows, a
// count per VM against its limit, the list of erased handles (which must stay refused), and a
// std::map from timer id to deadline tick for the timers. The target traps when an insert's
// success or error differs from the model's (unknown_vm, flow_exists, vm_limit, table_full, in that
// order), a find or get disagrees, a stale handle is accepted, size() or a VM's count drifts, a timer
// fires that the model says is not due, fires twice, or a due timer does not fire, or when
// next_deadline() is later than the earliest model deadline.
#include <ankanet/nat/flow_table.hpp>
#include <ankanet/nat/timer_wheel.hpp>

#include "support/input_reader.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <tuple>
#include <vector>

namespace {

using namespace ankanet;
using fuzz::input_reader;
using nat::flow_errc;
using nat::flow_handle;
using nat::flow_key;
using wire::ipv4_address;
using clock_type = std::chrono::steady_clock;

void require(bool condition) {
    if (!condition) __builtin_trap();
}

constexpr std::array<std::byte, 16> fuzz_key{std::byte{9}, std::byte{8}, std::byte{7}};
const clock_type::time_point origin = clock_type::time_point{} + std::chrono::hours{24};
// The program stops moving time past this, far from time_point's limit (292 years in ns).
constexpr std::int64_t max_ns = std::int64_t{1} << 61;

struct key_less {
    static auto tie(const flow_key& k) {
        return std::make_tuple(k.guest_address.to_u32(), k.remote_address.to_u32(), k.guest_port, k.remote_port,
                               k.vm, k.protocol);
    }
    bool operator()(const flow_key& a, const flow_key& b) const { return tie(a) < tie(b); }
};

struct flow_value {
    std::uint64_t value;
};

flow_key read_key(input_reader& in, bool wide) {
    const std::uint8_t k = in.byte();
    flow_key key{ipv4_address{192, 168, 64, 2}, ipv4_address{10, 0, 0, 1}, 40000,
                 static_cast<std::uint16_t>(k >> 3), static_cast<std::uint16_t>(k & 3u),
                 (k & 4u) != 0 ? std::uint8_t{17} : std::uint8_t{6}};
    if (wide) key.remote_address = ipv4_address{in.be32()};
    return key;
}

/// d32 << shift, as nanoseconds, clamped so the arithmetic cannot overflow.
std::int64_t read_amount(input_reader& in, std::uint8_t shift_byte, std::int64_t unit_ns) {
    const std::uint64_t raw = std::uint64_t{in.be32()} << (shift_byte % 40u);
    const std::uint64_t capped_units = raw > static_cast<std::uint64_t>(max_ns / unit_ns)
                                           ? static_cast<std::uint64_t>(max_ns / unit_ns) : raw;
    return static_cast<std::int64_t>(capped_units) * unit_ns;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    input_reader in{data, size};
    const std::uint8_t setup = in.byte();
    const std::size_t capacity = (setup & 0x3fu) + 1;
    const std::int64_t unit_ns = (setup & 0x40u) != 0 ? 1 : 1'000'000;
    const bool fired_timer_erases = (setup & 0x80u) != 0;

    using table = nat::flow_table<flow_value>;
    table flows{table::config{capacity, 4, fuzz_key}};
    nat::timer_wheel wheel{capacity, origin, std::chrono::nanoseconds{unit_ns}};

    std::map<flow_key, std::pair<flow_handle, std::uint64_t>, key_less> model;
    std::array<std::size_t, 4> per_vm{};
    std::array<std::size_t, 4> limits{capacity, capacity, capacity, capacity};
    std::vector<flow_handle> remembered; // every handle insert returned, live or since erased
    std::map<std::uint32_t, std::int64_t> timers; // timer id -> deadline tick (ceil), model of the wheel
    std::int64_t now_ns = 0;
    std::int64_t elapsed_tick = 0; // the wheel's: the tick of the last advance

    const auto ceil_tick = [&](std::int64_t ns) { return ns <= 0 ? 0 : (ns + unit_ns - 1) / unit_ns; };
    const auto erase_in_model = [&](std::map<flow_key, std::pair<flow_handle, std::uint64_t>, key_less>::iterator it) {
        --per_vm[it->first.vm];
        timers.erase(it->second.first.index);
        model.erase(it);
    };
    const auto erase_flow = [&](flow_handle handle) {
        // The glue's expiry: the flow goes, and its timer with it.
        wheel.cancel(handle.index);
        return flows.erase(handle);
    };

    for (std::uint64_t step = 1; !in.done(); ++step) {
        const std::uint8_t op = in.byte();
        const bool wide = (op & 0x80u) != 0;
        switch (op % 8) {
        case 0: { // insert
            flow_key key = read_key(in, wide);
            if ((op & 0x40u) != 0) key.vm = 4;
            const auto inserted = flows.insert(key, flow_value{step});
            const auto found = model.find(key);
            if (key.vm >= 4) {
                require(inserted.error() == flow_errc::unknown_vm);
            } else if (found != model.end()) {
                require(inserted.error() == flow_errc::flow_exists);
            } else if (per_vm[key.vm] >= limits[key.vm]) {
                require(inserted.error() == flow_errc::vm_limit);
            } else if (model.size() == capacity) {
                require(inserted.error() == flow_errc::table_full);
            } else {
                require(inserted.has_value());
                require(inserted->index < capacity);
                require(!wheel.is_scheduled(inserted->index)); // a freed slot's timer went with it
                model.emplace(key, std::make_pair(*inserted, step));
                ++per_vm[key.vm];
                remembered.push_back(*inserted);
            }
            break;
        }
        case 1: { // find
            const flow_key key = read_key(in, wide);
            const auto handle = flows.find(key);
            const auto found = model.find(key);
            require(handle.has_value() == (found != model.end()));
            if (handle) {
                require(*handle == found->second.first);
                require(flows.get(*handle) != nullptr && flows.get(*handle)->value == found->second.second);
                require(flows.key(*handle) != nullptr && *flows.key(*handle) == key);
            }
            break;
        }
        case 2: { // erase by key
            const flow_key key = read_key(in, wide);
            const auto found = model.find(key);
            if (found != model.end()) wheel.cancel(found->second.first.index);
            require(flows.erase(key) == (found != model.end()));
            if (found != model.end()) erase_in_model(found);
            break;
        }
        case 3: { // erase by a remembered handle, live or stale
            const std::uint8_t pick = in.byte();
            if (remembered.empty()) break;
            const flow_handle handle = remembered[pick % remembered.size()];
            auto live = model.end();
            for (auto it = model.begin(); it != model.end(); ++it) {
                if (it->second.first == handle) live = it;
            }
            require(flows.contains(handle) == (live != model.end()));
            if (live == model.end()) {
                require(flows.get(handle) == nullptr);
                require(!flows.erase(handle)); // stale: refused, and its slot's new flow untouched
            } else {
                require(erase_flow(handle));
                erase_in_model(live);
            }
            break;
        }
        case 4: { // arm a flow's timer
            const flow_key key = read_key(in, wide);
            const std::uint8_t shift = in.byte();
            std::int64_t amount = read_amount(in, shift, unit_ns);
            if ((shift & 0x80u) != 0) amount = -amount;
            const auto found = model.find(key);
            if (found == model.end()) break;
            const std::uint32_t id = found->second.first.index;
            const std::int64_t deadline_ns = std::max<std::int64_t>(now_ns + amount, -max_ns);
            require(wheel.schedule(id, origin + std::chrono::nanoseconds{deadline_ns}));
            timers[id] = std::max(ceil_tick(deadline_ns), elapsed_tick);
            break;
        }
        case 5: { // cancel a flow's timer
            const flow_key key = read_key(in, wide);
            const auto found = model.find(key);
            if (found == model.end()) break;
            const std::uint32_t id = found->second.first.index;
            require(wheel.cancel(id) == (timers.erase(id) == 1));
            break;
        }
        case 6: { // time passes
            const std::uint8_t shift = in.byte();
            const std::int64_t amount = read_amount(in, shift, unit_ns);
            if (now_ns > max_ns - amount) break;
            now_ns += amount;
            const std::int64_t now_tick = now_ns / unit_ns;
            std::size_t due = 0;
            for (const auto& [id, tick] : timers) due += tick <= now_tick;
            std::size_t fired = 0;
            wheel.advance(origin + std::chrono::nanoseconds{now_ns}, [&](std::uint32_t id) {
                const auto timer = timers.find(id);
                require(timer != timers.end());     // armed, and not fired already
                require(timer->second <= now_tick); // due
                timers.erase(timer);
                ++fired;
                if (fired_timer_erases) {
                    const auto handle = flows.handle_at(id);
                    require(handle.has_value());
                    auto live = model.end();
                    for (auto it = model.begin(); it != model.end(); ++it) {
                        if (it->second.first == *handle) live = it;
                    }
                    require(live != model.end());
                    require(erase_flow(*handle));
                    erase_in_model(live);
                }
            });
            require(fired == due);
            elapsed_tick = std::max(elapsed_tick, now_tick);
            break;
        }
        case 7: { // a VM's limit
            const auto vm = static_cast<std::uint16_t>(in.byte() % 4u);
            const std::size_t limit = in.byte() % 70u;
            require(flows.set_vm_limit(vm, limit));
            limits[vm] = std::min(limit, capacity);
            break;
        }
        }

        // Invariants after every step.
        require(flows.size() == model.size());
        require(flows.size() <= capacity);
        for (std::uint16_t vm = 0; vm < 4; ++vm) require(flows.vm_flows(vm) == per_vm[vm]);
        require(wheel.size() == timers.size());
        if (!timers.empty()) {
            std::int64_t earliest = timers.begin()->second;
            for (const auto& [id, tick] : timers) earliest = std::min(earliest, tick);
            const auto next = wheel.next_deadline();
            require(next.has_value());
            require(*next <= origin + std::chrono::nanoseconds{earliest * unit_ns});
        } else {
            require(!wheel.next_deadline());
        }
    }

    // Every flow still findable at the end; a full sweep by for_each erasing everything.
    for (const auto& [key, entry] : model) require(flows.find(key) == entry.first);
    std::size_t visited = 0;
    flows.for_each([&](flow_handle handle, const flow_key&, flow_value&) {
        ++visited;
        require(flows.erase(handle));
    });
    require(visited == model.size());
    require(flows.empty());
    return 0;
}
