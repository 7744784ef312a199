// Fuzz target for ankanet::l2::basic_learning_switch.
//
// The input is a program run against one switch with a small MAC table (64 entries: 8 buckets of
// 8, so full buckets, evictions and skipped learning are reached) and a 60 s ageing time. Each
// step is an opcode byte and its operands; a missing byte reads as 0, so every input is a program.
//
//   op % 8   operands                      what
//   0        mac                           add_vm_port(mac)
//   1        -                             add_gateway_port()
//   2        k                             remove_port(k-th attached port)
//   3        k                             remove_port(k-th removed id): must be unknown_port
//   4        b                             set_isolated(b & 1)
//   5        s                             the clock moves on by s seconds
//   6        port flags [dst] [src] [rmac] len16 bytes
//                                          the `len16` (big-endian, cut to what is left) bytes as a
//                                          frame on the port `port` selects (an attached one, or a
//                                          removed id); flags bit 0: destination := mac `dst`,
//                                          bit 1: source := mac `src` (0 picks the port's registered
//                                          MAC), bit 2: the first gateway port the frame reaches
//                                          answers at once from inside emit (source mac `rmac`,
//                                          destination the frame's source), re-entering handle()
//   7        -                             nothing (a spacer)
//   mac: a byte; % 32 below 16 picks one of sixteen unicast MACs (so ports share and collide on
//   them), 16-19 broadcast, IPv4 and IPv6 multicast and the zero MAC, 20-31 six more input bytes.
//
// A shadow model of the ports (attached or not, role, registered MAC, counters) and of which VM
// port last spoke each MAC, and when, checks what the header's theory of operation promises, and
// the target traps on any violation:
//  * per frame, the disposition follows steps 1-5: unknown port, malformed (short, group or zero
//    source) and spoofed (a VM port's source other than its registered MAC) frames go nowhere;
//  * emit never goes to the ingress port nor to a detached port, never twice to one port, and
//    always hands over the caller's own bytes;
//  * a flood reaches exactly every attached port but the ingress (with isolation, from a VM: the
//    gateway ports only); a forwarded frame exactly one port, the one lookup() gives for its
//    destination; a flooded unicast frame's destination is not in the table; a filtered frame's is
//    on the ingress port; with isolation no VM frame reaches another VM port;
//  * a VM's accepted frame leaves its MAC learned on its port; a gateway's leaves it learned on
//    that port, or kept by a live VM entry for that same MAC, or not learned (learn_skipped);
//  * a live VM MAC stays learned on the port that last sent it, whatever the gateway ports send
//    (the "sticky" promise), unless more than 8 VM MACs (a bucket's worth) have been live when a
//    VM was learned since; and a MAC no port has sent for ageing_time is not learned at all;
//  * ports cannot be added or removed from inside emit (busy); the per-port and switch-wide
//    counters, port_count() and role() match the model; lookup() never names a detached port;
//    learned_count() stays within the table's capacity.
#include <ankanet/l2/switch.hpp>

#include <ankanet/wire/ethernet.hpp>

#include "support/input_reader.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace {

using namespace ankanet;
using namespace std::chrono_literals;
using fuzz::input_reader;
using l2::disposition;
using l2::port_id;
using l2::port_role;

void require(bool condition) {
    if (!condition) __builtin_trap();
}

constexpr std::size_t mac_capacity = 64;
using fuzz_switch = l2::basic_learning_switch<mac_capacity>;
using time_point = fuzz_switch::time_point;
constexpr auto ageing = 60s;
constexpr std::size_t max_ports = 16; // the model stops adding ports here (the switch allows 32767)

// Sixteen unicast MACs. Under the fixed hash key below, the first and the last eight (nine in
// all) fall in one bucket of the 64-entry table, so a full bucket of live VM entries (and a ninth
// VM, or a gateway source, wanting in) is a few opcodes away. Re-pick them if the hash changes.
constexpr std::array<mac_address, 16> pool{{
    mac_address{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}}, // the captured guests' MAC
    mac_address{{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}},
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}},
    mac_address{{0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xee}},
    mac_address{{0x00, 0x1c, 0x42, 0xaa, 0xaa, 0xaa}},
    mac_address{{0x00, 0x1c, 0x42, 0xbb, 0xbb, 0xbb}},
    mac_address{{0x02, 0x00, 0x00, 0x00, 0x00, 0x07}},
    mac_address{{0x3c, 0x22, 0xfb, 0x01, 0x02, 0x03}},
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x01, 0x01}},
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x01, 0x02}},
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x01, 0x0d}},
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x01, 0x15}},
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x01, 0x1a}},
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x01, 0x25}},
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x01, 0x31}},
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x01, 0x35}},
}};

// Selectors 16-19 of read_mac: broadcast, IPv4 and IPv6 multicast, the zero MAC.
constexpr std::array<mac_address, 4> special_macs{{
    mac_address::broadcast(),
    mac_address{{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb}},
    mac_address{{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}},
    mac_address{},
}};

mac_address read_mac(input_reader& in) { return in.mac(pool, special_macs, 32); }

struct port_model {
    port_id id;
    port_role role = port_role::vm;
    mac_address registered;
    bool attached = true;
    l2::port_counters counters{};
};

struct speaker {
    port_id port;
    time_point when;
    bool certain = true; ///< no VM has been learned since with more than a bucket's worth live
};

class harness {
public:
    harness() : sw_(make_config()) {}

    void run(input_reader& in) {
        std::size_t steps = 0;
        while (!in.done() && steps++ < 256) {
            switch (in.byte() % 8u) {
            case 0: add_vm(read_mac(in)); break;
            case 1: add_gateway(); break;
            case 2: remove_attached(in.byte()); break;
            case 3: remove_stale(in.byte()); break;
            case 4: {
                const bool isolated = (in.byte() & 1u) != 0;
                sw_.set_isolated(isolated);
                require(sw_.isolated() == isolated);
                break;
            }
            case 5: now_ += std::chrono::seconds{in.byte()}; break;
            case 6: frame_op(in); break;
            default: break;
            }
            check_state();
        }
    }

private:
    static fuzz_switch::config make_config() {
        fuzz_switch::config cfg;
        cfg.ageing_time = ageing;
        // A fixed key: a crash must replay with the same buckets.
        cfg.hash_key = std::array<std::byte, 16>{std::byte{0x61}, std::byte{0x6e}, std::byte{0x6b}, std::byte{0x61},
                                                 std::byte{0x6e}, std::byte{0x65}, std::byte{0x74}, std::byte{0x21},
                                                 std::byte{0x0f}, std::byte{0x1e}, std::byte{0x2d}, std::byte{0x3c},
                                                 std::byte{0x4b}, std::byte{0x5a}, std::byte{0x69}, std::byte{0x78}};
        return cfg;
    }

    std::size_t attached_count() const {
        return static_cast<std::size_t>(std::count_if(ports_.begin(), ports_.end(), [](const port_model& p) { return p.attached; }));
    }
    port_model* model_of(port_id id) {
        for (auto& p : ports_) {
            if (p.id == id && p.attached) return &p;
        }
        return nullptr;
    }
    port_model* nth(std::uint8_t k, bool attached) {
        std::size_t n = 0;
        for (const auto& p : ports_) n += p.attached == attached ? 1 : 0;
        if (n == 0) return nullptr;
        std::size_t skip = k % n;
        for (auto& p : ports_) {
            if (p.attached != attached) continue;
            if (skip-- == 0) return &p;
        }
        return nullptr;
    }

    void add_vm(const mac_address& mac) {
        if (attached_count() >= max_ports) return;
        const auto id = sw_.add_vm_port(mac);
        if (mac.is_zero() || mac.is_multicast()) {
            require(!id.has_value());
            return;
        }
        require(id.has_value());
        require(model_of(*id) == nullptr);
        ports_.push_back(port_model{*id, port_role::vm, mac, true, {}});
    }

    void add_gateway() {
        if (attached_count() >= max_ports) return;
        const auto id = sw_.add_gateway_port();
        require(id.has_value());
        require(model_of(*id) == nullptr);
        ports_.push_back(port_model{*id, port_role::gateway, mac_address{}, true, {}});
    }

    void remove_attached(std::uint8_t k) {
        port_model* p = nth(k, true);
        if (p == nullptr) return;
        require(!sw_.remove_port(p->id));
        p->attached = false;
        std::erase_if(speakers_, [&](const auto& item) { return item.second.port == p->id; });
        // Ports removed long ago are of no more use as stale ids; keep the model small.
        if (ports_.size() > 2 * max_ports) {
            std::erase_if(ports_, [](const port_model& q) { return !q.attached; });
        }
    }

    void remove_stale(std::uint8_t k) {
        const port_model* p = nth(k, false);
        const port_id id = p ? p->id : port_id::make(static_cast<std::uint16_t>(k), 0x7777);
        if (!p && model_of(id)) return;
        require(sw_.remove_port(id) == l2::switch_errc::unknown_port);
    }

    /// Picks the ingress: an attached port mostly, a removed id sometimes.
    std::optional<port_id> pick_ingress(std::uint8_t k) {
        const bool stale = (k & 0x80u) != 0;
        if (const port_model* p = nth(static_cast<std::uint8_t>(k & 0x7fu), !stale)) return p->id;
        if (const port_model* p = nth(static_cast<std::uint8_t>(k & 0x7fu), stale)) return p->id;
        return std::nullopt;
    }

    void frame_op(input_reader& in) {
        const std::uint8_t port_selector = in.byte();
        const std::uint8_t flags = in.byte();
        const std::optional<port_id> ingress = pick_ingress(port_selector);
        std::optional<mac_address> destination;
        std::optional<mac_address> source;
        if (flags & 1u) destination = read_mac(in);
        if (flags & 2u) {
            const bool own = !in.done() && in.peek() % 32u == 0;
            source = read_mac(in);
            // Selector 0 means "the port's own MAC" (the first pool MAC for gateway ports).
            if (own && ingress) {
                for (const auto& p : ports_) {
                    if (p.id == *ingress && p.role == port_role::vm) source = p.registered;
                }
            }
        }
        const mac_address answer_source = (flags & 4u) ? read_mac(in) : mac_address{};
        std::vector<std::byte> frame = in.frame((destination || source) ? wire::ethernet::header_len : 0);
        if (destination) destination->store(frame, wire::ethernet::field::destination);
        if (source) source->store(frame, wire::ethernet::field::source);
        if (!ingress) return;
        handle(*ingress, frame, (flags & 4u) ? std::optional{answer_source} : std::nullopt, 0);
    }

    /// One handle() call with every check; `answer`: a gateway port answers from inside emit.
    void handle(port_id ingress, const std::vector<std::byte>& bytes, std::optional<mac_address> answer, int depth) {
        const wire::const_bytes frame{bytes};
        port_model* in = model_of(ingress);
        const auto unknown_before = sw_.stats().dropped_unknown_port;
        const auto skipped_before = sw_.stats().learn_skipped;

        // What steps 1-2 say before the switch is asked.
        std::optional<disposition> early;
        mac_address destination;
        mac_address source;
        if (in == nullptr) {
            early = disposition::dropped_unknown_port;
        } else if (frame.size() < wire::ethernet::header_len) {
            early = disposition::dropped_malformed;
        } else {
            destination = mac_address::from_bytes(frame.subspan(wire::ethernet::field::destination));
            source = mac_address::from_bytes(frame.subspan(wire::ethernet::field::source));
            if (source.is_zero() || source.is_multicast()) {
                early = disposition::dropped_malformed;
            } else if (in->role == port_role::vm && source != in->registered) {
                early = disposition::dropped_spoofed;
            }
        }
        const bool from_vm = in != nullptr && in->role == port_role::vm;
        const bool isolated = sw_.isolated();
        const port_role in_role = in ? in->role : port_role::vm;

        std::vector<port_id> emitted;
        std::optional<std::optional<port_id>> destination_at_emit; // lookup(destination) at the first emit
        bool answered = false;
        auto emit = [&](port_id egress, wire::const_bytes out) {
            require(early == std::nullopt);
            require(out.data() == frame.data() && out.size() == frame.size());
            require(egress != ingress);
            require(std::find(emitted.begin(), emitted.end(), egress) == emitted.end());
            port_model* target = model_of(egress);
            require(target != nullptr);
            if (isolated && from_vm) require(target->role == port_role::gateway);
            emitted.push_back(egress);
            ++target->counters.tx;
            if (!destination_at_emit) destination_at_emit = sw_.lookup(destination, now_);

            if (emitted.size() == 1) { // ports are frozen while a frame is switched
                require(sw_.add_gateway_port().error() == l2::switch_errc::busy);
                require(sw_.add_vm_port(pool[6]).error() == l2::switch_errc::busy);
                require(sw_.remove_port(egress) == l2::switch_errc::busy);
            }

            if (answer && depth == 0 && !answered && target->role == port_role::gateway) {
                answered = true; // the gateway's stack answers synchronously, as a real one may
                std::vector<std::byte> reply(wire::ethernet::min_frame_len);
                source.store(reply, wire::ethernet::field::destination);
                answer->store(reply, wire::ethernet::field::source);
                wire::store_be16(reply, wire::ethernet::field::ethertype, wire::ethernet::ethertype::ipv4);
                handle(egress, reply, std::nullopt, depth + 1);
            }
        };
        const disposition result = sw_.handle(ingress, frame, now_, emit);

        if (in == nullptr) {
            require(result == disposition::dropped_unknown_port && emitted.empty());
            require(sw_.stats().dropped_unknown_port == unknown_before + 1);
            return;
        }
        ++in->counters.rx;
        if (early) {
            require(result == *early && emitted.empty());
            if (*early == disposition::dropped_spoofed) {
                ++in->counters.dropped_spoofed;
            } else {
                ++in->counters.dropped_malformed;
            }
            return;
        }
        if (from_vm) {
            speakers_[key(source)] = speaker{ingress, now_};
            // A VM entry is pushed out only by another VM's, into a bucket full of live VM
            // entries: possible only while more than a bucket's worth of VM MACs are live.
            const auto live = std::count_if(speakers_.begin(), speakers_.end(),
                                            [&](const auto& item) { return now_ - item.second.when < ageing; });
            if (static_cast<std::size_t>(live) > fuzz_switch::ways) {
                for (auto& [mac, s] : speakers_) s.certain = mac == key(source);
            }
        }
        last_seen_[key(source)] = now_;

        // The ports a flood must reach, exactly.
        std::vector<port_id> flood_set;
        for (const auto& p : ports_) {
            if (!p.attached || p.id == ingress) continue;
            if (isolated && from_vm && p.role != port_role::gateway) continue;
            flood_set.push_back(p.id);
        }
        const bool group = destination.is_multicast();
        const std::optional<port_id> destination_now =
            destination_at_emit ? *destination_at_emit : sw_.lookup(destination, now_);
        switch (result) {
        case disposition::flooded: {
            ++in->counters.flooded;
            std::sort(emitted.begin(), emitted.end());
            std::sort(flood_set.begin(), flood_set.end());
            require(emitted == flood_set);
            if (!group) require(!destination_now); // known unicast destinations are never flooded
            break;
        }
        case disposition::forwarded:
            require(!group && emitted.size() == 1 && destination_now == emitted.front());
            break;
        case disposition::filtered:
            ++in->counters.filtered;
            require(!group && emitted.empty() && destination_now == ingress);
            break;
        case disposition::dropped_isolated: {
            ++in->counters.dropped_isolated;
            require(!group && emitted.empty() && isolated && from_vm && destination_now && *destination_now != ingress);
            const port_model* target = model_of(*destination_now);
            require(target != nullptr && target->role == port_role::vm);
            break;
        }
        default: require(false);
        }

        // Learning (step 3). Checked where no answer inside emit can have moved the entry since.
        if (!answered) {
            const std::optional<port_id> learned = sw_.lookup(source, now_);
            if (in_role == port_role::vm) {
                require(learned == ingress);
            } else if (learned != ingress) {
                if (learned) {
                    const port_model* holder = model_of(*learned);
                    require(holder != nullptr && holder->role == port_role::vm && holder->registered == source);
                } else {
                    require(sw_.stats().learn_skipped > skipped_before);
                }
            }
        }
    }

    static std::uint64_t key(const mac_address& mac) {
        std::uint64_t value = 0;
        for (auto octet : mac.octets()) value = value << 8 | octet;
        return value;
    }

    void check_state() {
        require(sw_.port_count() == attached_count());
        require(sw_.learned_count(now_) <= mac_capacity);
        for (const auto& p : ports_) {
            const auto stats = sw_.stats(p.id);
            if (!p.attached) {
                require(!stats && !sw_.role(p.id));
                continue;
            }
            require(stats && *stats == p.counters);
            require(sw_.role(p.id) == p.role);
        }
        // lookup() names attached ports only, and forgets a MAC not seen as a source for ageing_time.
        for (const auto& mac : pool) {
            const auto at = sw_.lookup(mac, now_);
            if (at) require(model_of(*at) != nullptr);
            const auto seen = last_seen_.find(key(mac));
            if (seen == last_seen_.end() || now_ - seen->second >= ageing) require(!at);
        }
        // The sticky promise: a live VM MAC stays on its port, unless another VM may have pushed it
        // out since it last spoke.
        for (const auto& [mac, s] : speakers_) {
            if (now_ - s.when >= ageing || !s.certain) continue;
            mac_address::bytes_type octets{};
            for (std::size_t i = 0; i < octets.size(); ++i) octets[i] = static_cast<std::uint8_t>(mac >> (40 - 8 * i));
            require(sw_.lookup(mac_address{octets}, now_) == s.port);
        }
    }

    fuzz_switch sw_;
    time_point now_{std::chrono::hours{1}};
    std::vector<port_model> ports_;
    std::map<std::uint64_t, speaker> speakers_; // MAC -> the VM port that last sent it, and when
    std::map<std::uint64_t, time_point> last_seen_; // MAC -> when a port last sent it (accepted)
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    input_reader in{data, size};
    harness h;
    h.run(in);
    return 0;
}
