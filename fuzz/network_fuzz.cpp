// Fuzz target for ankanet::basic_network, as make_shared_network builds it (ARP guard, DHCP service
// with a memory lease store, responder), on a manual clock; and, beside it, a disconnected network
// (basic_disconnected_network) given the same operations.
//
// The input is a program. Its first byte sets the network up: bit 0 isolate, bits 1-2 the MTU
// (1500, 576, 1280, 9000). Five port slots start attached:
//   slot 0: custom MAC 52:54:00:12:34:56 (the captured DHCP clients'), slot 1: custom MAC
//   52:54:00:ab:cd:ef (it has a DHCP reservation), slot 2: stable(uuid) under a fixed host secret,
//   slots 3 and 4: from_first_frame.
// Then each step is an opcode byte and its operands; a missing byte reads as 0.
//
//   op % 8   operands                  what
//   0, 1     p flags [s] [d] len16 bytes  the `len16` (big-endian, cut to what is left) bytes as a
//                                      frame from slot (p & 0x7f) % 5 — from a handle of a port
//                                      that slot had before, when p & 0x80 (or one never issued).
//                                      flags bits 0-1, the Ethernet source: 0 as is, 1 the port's
//                                      own MAC, 2 slot s's MAC, 3 the gateway MAC; bits 2-3, the
//                                      destination: 0 as is, 1 the gateway MAC, 2 broadcast, 3 slot
//                                      d's MAC (a slot without a MAC leaves the bytes as they are);
//                                      bit 4: the IPv4 header checksum and the UDP / TCP / ICMP
//                                      checksum are repaired, so mutated frames get deep into DHCP,
//                                      ARP and ICMP; bit 5: an ARP payload's sender MAC := the
//                                      Ethernet source.
//   2        v                         the clock moves on by v s (v < 128), else (v - 127) min
//   3        b                         set_link(slot (b & 0x7f) % 5, b & 0x80): up when set
//   4        k                         remove_port(slot k % 5); of a removed slot: a stale handle,
//                                      which must be refused
//   5        k                         a removed slot k % 5 is added again (same MAC policy)
//   6        -                         poll()
//   7        k                         remove and re-add slot k % 5 at once
//
// A model of the ports (handles, MACs, links, counters) and of the switch's MAC table (which port
// each MAC is learned on, sticky or not, until when; the gateway's own MAC always on the gateway
// port) predicts, for every input(), which ports get the frame, whether it reaches the gateway, and
// where each gateway reply goes. Only the ARP guard's verdict is read rather than predicted (from
// dropped_by_service). The frame tap shows the ingress frame and each reply. The target traps (and
// says which invariant failed, with its line) when, whatever the input:
//  * emit is called with a handle of no current port, of a port whose link is down or not yet on
//    the switch, or from the disconnected network at all; or hands the ingress port its own frame;
//  * an emitted frame is shorter than an Ethernet header or longer than max_frame_len(mtu);
//  * a frame reaches a port other than as the ingress bytes unchanged (to exactly the ports the
//    switch's forwarding rules give, once each) or as a gateway reply (source: the gateway MAC,
//    reaching exactly the ports its destination gives — a DHCP reply, exactly the asking port);
//  * a VM's frame reaches another VM on an isolated network, or a frame for the gateway MAC reaches
//    a VM (it is the gateway's: neither flooded past it nor taken by a VM claiming its MAC);
//  * a frame is taken to the gateway other than when the switch would hand it there; a reply comes
//    without one, or more than one per frame; an ARP request for the gateway is not answered with
//    the gateway's ARP reply to the asker;
//  * a from_first_frame port does not adopt the source of its first proper frame, or keeps a MAC
//    another port (the gateway's included) holds: that port is refused and detached, as the theory
//    of operation says; add_port accepts a MAC another port holds or refuses a free one;
//  * the ARP guard drops anything but ARP; a DHCP server reply from a VM is not dropped; a DHCP
//    client's message to the gateway's server (from the port's own MAC) is switched, rather than
//    taken by the DHCP service for the gateway alone;
//  * a counter (network-wide and per port: frames in and out, link-down, unknown-port and no-MAC
//    drops, frames to the gateway, replies, refused ports; the disconnected network's unplugged
//    drops) or the switch's learned addresses differ from the model.
//
// fuzz/corpus/network holds real frames (tests/support/dhcp_captures.hpp's udhcpc messages, ARP
// and ping) as programs, written by fuzz/support/make_frame_corpora.py, and regression-* inputs
// for violations the target found.

#include <ankanet/clock.hpp>
#include <ankanet/config.hpp>
#include <ankanet/disconnected.hpp>
#include <ankanet/gateway/gateway_network.hpp>
#include <ankanet/network.hpp>
#include <ankanet/shared.hpp>

#include <boost/asio/io_context.hpp>

#include <tuple>

#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/tcp.hpp>
#include <ankanet/wire/udp.hpp>

#include "support/checksum_repair.hpp"
#include "support/input_reader.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace {

using namespace ankanet;
using namespace std::chrono_literals;
using fuzz::input_reader;
using wire::const_bytes;

/// Traps (a crash to libFuzzer) unless the condition holds, saying which invariant failed: the
/// optimiser merges the traps, so the stack trace alone would not.
[[noreturn]] void violated(const char* what, int line) {
    std::fprintf(stderr, "network_fuzz.cpp:%d: invariant violated: %s\n", line, what);
    __builtin_trap();
}
#define REQUIRE(...) ((__VA_ARGS__) ? void(0) : violated(#__VA_ARGS__, __LINE__))

struct fuzz_traits : default_network_traits {
    using clock_type = manual_clock;
    // A small table is quick to build and scan. gateway_network_options has no switch hash key, so
    // the switch draws one; at most six addresses are ever learned (one per port and the
    // gateway's), fewer than a bucket's eight ways, so which key it draws changes nothing and every
    // input replays the same way.
    static constexpr std::size_t mac_capacity = 64;
};
// Guests' flows beyond the network are refused by an empty allow-list: the fuzzer opens no socket.
// shared_network's services, with the DNS forwarder without its TCP listener: the listener's
// coroutines do not assemble under clang 14 with the fuzzer's sanitizers ("Cannot represent a
// difference across sections"); the listener has its own tests (tests/dns/forwarder_test.cpp).
using fuzz_egress = nat::egress_allow_list;
using shared_net = basic_network<fuzz_traits, gateway::arp_guard, dhcp::service, dns::forwarder, nat::tcp_translator<fuzz_egress>,
                                 nat::udp_translator<fuzz_egress>, nat::icmp_translator<fuzz_egress>, gateway::responder>;
using unplugged_net = basic_disconnected_network<fuzz_traits>;
using steady_point = std::chrono::steady_clock::time_point;

constexpr std::size_t slot_count = 5;
constexpr auto ageing = std::chrono::seconds{300}; // the switch's default
constexpr ipv4_address gateway_ip{192, 168, 64, 1};
constexpr mac_address gateway_mac = default_gateway_mac;
constexpr mac_address mac0{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
constexpr mac_address mac1{{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}};
constexpr std::array<std::size_t, 4> mtus{1500, 576, 1280, 9000};

l2::host_secret secret() {
    l2::host_secret::bytes_type bytes{};
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = std::byte{static_cast<unsigned char>(0xa0 + i)};
    return l2::host_secret{bytes};
}
l2::vm_uuid uuid() {
    l2::vm_uuid::bytes_type bytes{};
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = std::byte{static_cast<unsigned char>(0x10 + i)};
    return l2::vm_uuid{bytes};
}

enum class mac_policy { custom, stable, first_frame };

struct slot_model {
    mac_policy policy = mac_policy::custom;
    mac_address custom;
    std::optional<port_handle> handle;        // the shared network's port
    std::vector<port_handle> stale;           // its earlier ports, all removed
    std::optional<mac_address> mac;           // known once added (or adopted)
    bool up = true;
    network_port_counters expect{};           // frames_in, frames_out, dropped_link_down, dropped_no_mac
    std::optional<port_handle> mirror;        // the disconnected network's port
    std::uint64_t mirror_in = 0;
    unsigned adds = 0;                        // for unique port names
};

/// The switch's MAC table, for the few addresses a run learns: who, sticky or not, last seen when.
struct learned {
    mac_address mac;
    int owner; // a slot, or -1 for the gateway port
    bool sticky;
    steady_point seen;
};

struct deliveries {
    std::vector<int> vms; // slots, before the link-down drop
    bool gateway = false;
};

class harness {
public:
    explicit harness(std::uint8_t setup) : isolated_((setup & 1u) != 0), mtu_(mtus[(setup >> 1) & 3u]) {
        gateway_network_options options;
        // Four addresses, the captured client's first, one reserved: exhaustion is a few clients away.
        options.dhcp_range = address_range{ipv4_address{192, 168, 64, 107}, ipv4_address{192, 168, 64, 110}};
        options.reservations = {dhcp::reservation{mac1, {}, ipv4_address{192, 168, 64, 110}}};
        options.lease_time = std::chrono::seconds{600};
        options.leases = dhcp::any_lease_store{}; // in memory
        options.mtu = mtu_;
        options.isolate = isolated_;
        options.mac_secret = secret();
        options.domain_name = "vm.test";
        // No upstream resolver: the fuzzer's DNS queries are answered locally or SERVFAIL, and
        // nothing reaches the machine's resolver.
        options.dns_upstreams.resolv_conf = "/dev/null";
        std::string why;
        const auto executor = io_.get_executor();
        auto built = make_gateway_network<shared_net>(
            network_mode::shared, std::move(options), &why, [&](ipv4_prefix gateway, const gateway_network_options& o) {
                const auto config = translation_for(gateway, o);
                return std::tuple{dns::forwarder{executor, dns_for(gateway, o)},
                                  nat::tcp_translator<fuzz_egress>{executor, config, fuzz_egress{}},
                                  nat::udp_translator<fuzz_egress>{executor, config, fuzz_egress{}},
                                  nat::icmp_translator<fuzz_egress>{executor, config, fuzz_egress{}}};
            });
        REQUIRE(built.has_value());
        net_ = std::move(*built);
        REQUIRE(net_->config().gateway_mac == gateway_mac && net_->config().mtu == mtu_);
        net_->set_frame_tap([this](const_bytes frame) { tapped_.emplace_back(frame.begin(), frame.end()); });

        network_config unplugged;
        unplugged.mac_secret = secret();
        off_ = std::make_unique<unplugged_net>(std::move(unplugged));

        slots_[0].custom = mac0;
        slots_[1].custom = mac1;
        slots_[2].policy = mac_policy::stable;
        slots_[3].policy = mac_policy::first_frame;
        slots_[4].policy = mac_policy::first_frame;
        for (std::size_t k = 0; k < slot_count; ++k) add(k);
        check_state();
    }

    void run(input_reader& in) {
        std::size_t steps = 0;
        while (!in.done() && steps++ < 128) {
            switch (in.byte() % 8u) {
            case 0:
            case 1: frame_op(in); break;
            case 2: {
                const unsigned v = in.byte();
                net_->clock().advance(v < 128 ? std::chrono::seconds{v} : std::chrono::minutes{v - 127});
                break;
            }
            case 3: {
                const std::uint8_t b = in.byte();
                set_link((b & 0x7fu) % slot_count, (b & 0x80u) != 0);
                break;
            }
            case 4: remove(in.byte() % slot_count); break;
            case 5: {
                const std::size_t k = in.byte() % slot_count;
                if (!slots_[k].handle) add(k);
                break;
            }
            case 6:
                net_->poll(now());
                off_->poll(now());
                break;
            default: {
                const std::size_t k = in.byte() % slot_count;
                remove(k);
                if (!slots_[k].handle) add(k);
                break;
            }
            }
            check_state();
        }
    }

private:
    network_time now() { return net_->clock().now(); }
    steady_point steady() { return net_->clock().now().steady; }

    // --- the switch model ---------------------------------------------------------------------------

    bool live(const learned& e) { return steady() - e.seen < ageing; }

    std::optional<int> lookup(const mac_address& mac) {
        for (const auto& e : table_) {
            if (e.mac == mac) return live(e) ? std::optional{e.owner} : std::nullopt;
        }
        return std::nullopt;
    }

    void learn(const mac_address& mac, int owner, bool sticky) {
        for (auto& e : table_) {
            if (e.mac != mac) continue;
            // A gateway port may not move a VM's own live address.
            if (e.owner != owner && e.sticky && !sticky && live(e)) return;
            e = learned{mac, owner, sticky, steady()};
            return;
        }
        table_.push_back(learned{mac, owner, sticky, steady()});
    }

    void forget(int owner) {
        std::erase_if(table_, [&](const learned& e) { return e.owner == owner; });
    }

    bool on_switch(std::size_t k) const { return slots_[k].handle && slots_[k].mac; }

    /// Where the switch sends a frame that `ingress` (a slot, or -1: the gateway) sent to
    /// `destination`, once its source has been learned.
    deliveries forward(int ingress, const mac_address& destination) {
        const bool from_vm = ingress >= 0;
        deliveries out;
        if (!destination.is_multicast()) {
            if (destination == gateway_mac) { // the gateway port owns it, before the table
                if (from_vm) out.gateway = true;
                return out;                   // (or filtered: from the gateway itself)
            }
            if (const auto at = lookup(destination)) {
                if (*at == ingress) return out; // filtered
                if (*at < 0) {
                    out.gateway = true;
                } else if (!(isolated_ && from_vm)) {
                    out.vms.push_back(*at);
                } // else dropped_isolated
                return out;
            }
        }
        out.gateway = from_vm; // flooded
        if (!(isolated_ && from_vm)) {
            for (std::size_t k = 0; k < slot_count; ++k) {
                if (static_cast<int>(k) != ingress && on_switch(k)) out.vms.push_back(static_cast<int>(k));
            }
        }
        return out;
    }

    // --- ports ---------------------------------------------------------------------------------------

    std::optional<std::size_t> holder(const mac_address& mac, std::size_t except) const {
        for (std::size_t k = 0; k < slot_count; ++k) {
            if (k != except && slots_[k].handle && slots_[k].mac == mac) return k;
        }
        return std::nullopt;
    }

    port_mac policy_of(std::size_t k) const {
        switch (slots_[k].policy) {
        case mac_policy::custom: return port_mac::custom(slots_[k].custom);
        case mac_policy::stable: return port_mac::stable(uuid());
        default: return port_mac::from_first_frame();
        }
    }

    void add(std::size_t k) {
        slot_model& s = slots_[k];
        const std::string name = "slot" + std::to_string(k) + "-" + std::to_string(s.adds++);
        auto port = net_->add_port(name, policy_of(k));
        if (s.policy == mac_policy::custom && (holder(s.custom, k) || s.custom == gateway_mac)) {
            REQUIRE(!port.has_value()); // another port (or the gateway) holds the MAC
            ++ports_refused_;
        } else {
            REQUIRE(port.has_value());
            for (const auto& other : slots_) {
                REQUIRE(!other.handle || *other.handle != *port);
                REQUIRE(std::find(other.stale.begin(), other.stale.end(), *port) == other.stale.end());
            }
            s.handle = *port;
            s.up = true;
            s.expect = {};
            s.mac = net_->mac(*port);
            REQUIRE(net_->link_up(*port) && net_->name(*port) == std::optional<std::string_view>{name});
            switch (s.policy) {
            case mac_policy::custom: REQUIRE(s.mac == s.custom); break;
            case mac_policy::stable: REQUIRE(s.mac && s.mac->is_unicast() && !holder(*s.mac, k)); break;
            default: REQUIRE(!s.mac); break;
            }
        }
        // The disconnected network's twin (kept while the shared port is refused).
        if (!s.mirror) {
            auto twin = off_->add_port(name, policy_of(k));
            REQUIRE(twin.has_value());
            REQUIRE(!off_->link_up(*twin)); // nothing passes a disconnected network
            if (s.policy == mac_policy::custom) REQUIRE(off_->mac(*twin) == s.custom);
            s.mirror = *twin;
            s.mirror_in = 0;
        }
    }

    void remove(std::size_t k) {
        slot_model& s = slots_[k];
        if (!s.handle) {
            const port_handle stale = s.stale.empty() ? never_issued(k) : s.stale.back();
            REQUIRE(net_->remove_port(stale) == l2::switch_errc::unknown_port);
            return;
        }
        REQUIRE(!net_->remove_port(*s.handle));
        REQUIRE(!net_->name(*s.handle) && !net_->stats(*s.handle));
        detached(k);
        if (s.mirror) REQUIRE(!off_->remove_port(*s.mirror));
        s.mirror.reset();
    }

    /// The model's side of a port going away.
    void detached(std::size_t k) {
        slot_model& s = slots_[k];
        s.stale.push_back(*s.handle);
        if (s.stale.size() > 4) s.stale.erase(s.stale.begin());
        s.handle.reset();
        s.mac.reset();
        forget(static_cast<int>(k));
    }

    static port_handle never_issued(std::size_t k) {
        return port_handle::make(static_cast<std::uint16_t>(100 + k), 7);
    }

    void set_link(std::size_t k, bool up) {
        slot_model& s = slots_[k];
        if (!s.handle) {
            const port_handle stale = s.stale.empty() ? never_issued(k) : s.stale.back();
            REQUIRE(net_->set_link(stale, up) == l2::switch_errc::unknown_port);
            REQUIRE(!net_->link_up(stale));
        } else {
            REQUIRE(!net_->set_link(*s.handle, up));
            s.up = up;
            REQUIRE(net_->link_up(*s.handle) == up);
        }
        if (s.mirror) {
            REQUIRE(off_->set_link(*s.mirror, up) == errc::unsupported);
            REQUIRE(!off_->link_up(*s.mirror));
        }
    }

    // --- frames --------------------------------------------------------------------------------------

    std::optional<mac_address> mac_of_slot(std::uint8_t selector) const { return slots_[selector % slot_count].mac; }

    /// Makes the frame's checksums right (fuzz/support/checksum_repair.hpp).
    static void repair(std::vector<std::byte>& frame) { ankanet::fuzz::repair_checksums(frame); }

    void frame_op(input_reader& in) {
        const std::uint8_t p = in.byte();
        const std::uint8_t flags = in.byte();
        const std::size_t k = (p & 0x7fu) % slot_count;
        const bool use_stale = (p & 0x80u) != 0;
        std::optional<mac_address> source;
        std::optional<mac_address> destination;
        switch (flags & 3u) {
        case 1: source = slots_[k].mac; break;
        case 2: source = mac_of_slot(in.byte()); break;
        case 3: source = gateway_mac; break;
        default: break;
        }
        switch ((flags >> 2) & 3u) {
        case 1: destination = gateway_mac; break;
        case 2: destination = mac_address::broadcast(); break;
        case 3: destination = mac_of_slot(in.byte()); break;
        default: break;
        }
        std::vector<std::byte> frame = in.frame((source || destination) ? wire::ethernet::header_len : 0);
        if (destination) destination->store(frame, wire::ethernet::field::destination);
        if (source) source->store(frame, wire::ethernet::field::source);
        constexpr std::size_t arp_sender_mac = wire::ethernet::header_len + 8;
        if ((flags & 0x20u) && frame.size() >= arp_sender_mac + 6 &&
            wire::load_be16(const_bytes{frame}, wire::ethernet::field::ethertype) == wire::ethernet::ethertype::arp) {
            std::memmove(frame.data() + arp_sender_mac, frame.data() + wire::ethernet::field::source, 6);
        }
        if (flags & 0x10u) repair(frame);

        std::optional<port_handle> handle = slots_[k].handle;
        std::optional<port_handle> twin = slots_[k].mirror;
        if (use_stale || !handle) {
            handle = slots_[k].stale.empty() ? never_issued(k) : slots_[k].stale.back();
            twin = never_issued(k);
        }
        input(k, *handle, const_bytes{frame});
        input_unplugged(k, *twin, const_bytes{frame});
    }

    struct emitted {
        port_handle to;
        std::size_t replies_before; // replies tapped when it was emitted: 0 for the frame itself
        std::vector<std::byte> bytes;
    };

    std::optional<std::size_t> slot_of(port_handle h) const {
        for (std::size_t k = 0; k < slot_count; ++k) {
            if (slots_[k].handle == h) return k;
        }
        return std::nullopt;
    }

    static bool equal(const_bytes a, const_bytes b) {
        return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
    }

    /// Checks that the emits of one source (the frame, or one reply) went exactly where `expected`
    /// says, once each, as `bytes`; counts the link-down drops.
    void deliver(const deliveries& expected, const std::vector<emitted>& out, std::size_t stage, const_bytes bytes) {
        std::vector<int> got;
        for (const auto& e : out) {
            if (e.replies_before != stage) continue;
            REQUIRE(equal(const_bytes{e.bytes}, bytes));
            const auto k = slot_of(e.to);
            REQUIRE(k.has_value());
            got.push_back(static_cast<int>(*k));
        }
        std::vector<int> want;
        for (const int k : expected.vms) {
            slot_model& s = slots_[static_cast<std::size_t>(k)];
            if (s.up) {
                want.push_back(k);
                ++s.expect.frames_out;
            } else {
                ++s.expect.dropped_link_down;
                ++dropped_link_down_;
            }
        }
        std::sort(got.begin(), got.end());
        std::sort(want.begin(), want.end());
        REQUIRE(got == want);
    }

    void input(std::size_t k, port_handle handle, const_bytes frame) {
        const network_counters before = net_->stats();
        const std::optional<network_port_counters> port_before = net_->stats(handle);
        tapped_.clear();
        std::vector<emitted> out;
        const std::size_t max_len = backend::max_frame_len(mtu_);

        net_->input(handle, frame, now(), [&](port_handle to, const_bytes bytes) {
            const auto target = slot_of(to);
            REQUIRE(target.has_value() && net_->name(to).has_value()); // a current port
            REQUIRE(slots_[*target].up && net_->link_up(to));           // never a link that is down
            REQUIRE(net_->mac(to).has_value()); // on the switch (the ingress may have just joined it)
            REQUIRE(bytes.size() >= wire::ethernet::header_len && bytes.size() <= max_len);
            const std::size_t replies = tapped_.empty() ? 0 : tapped_.size() - 1;
            if (replies == 0) {
                // The frame itself: the ingress bytes, never from one VM to another when isolated,
                // never when it is for the gateway.
                REQUIRE(to != handle); // never back where it came from (a reply may go there)
                REQUIRE(equal(bytes, frame));
                REQUIRE(!isolated_);
                REQUIRE(mac_address::from_bytes(frame.subspan(wire::ethernet::field::destination)) != gateway_mac);
            } else {
                // A gateway reply: from the gateway MAC.
                REQUIRE(mac_address::from_bytes(bytes.subspan(wire::ethernet::field::source)) == gateway_mac);
            }
            out.push_back(emitted{to, replies, std::vector<std::byte>(bytes.begin(), bytes.end())});
        });
        const network_counters& after = net_->stats();

        slot_model* s = slot_of(handle) ? &slots_[k] : nullptr;
        if (s == nullptr) {
            REQUIRE(!port_before.has_value());
            REQUIRE(after.dropped_unknown_port == before.dropped_unknown_port + 1);
            REQUIRE(after.frames_in == before.frames_in && tapped_.empty() && out.empty());
            ++dropped_unknown_;
            return;
        }
        REQUIRE(port_before.has_value());
        ++frames_in_;
        ++s->expect.frames_in;
        REQUIRE(after.frames_in == before.frames_in + 1);
        REQUIRE(!tapped_.empty() && equal(const_bytes{tapped_.front()}, frame)); // the tap sees it at ingress

        const auto done_without_switch = [&] {
            REQUIRE(out.empty() && tapped_.size() == 1);
            REQUIRE(after.frames_to_gateway == before.frames_to_gateway && after.replies == before.replies);
        };
        if (!s->up) {
            ++s->expect.dropped_link_down;
            ++dropped_link_down_;
            done_without_switch();
            return;
        }
        if (frame.size() < wire::ethernet::header_len || frame.size() > backend::max_frame_len(mtu_)) {
            ++s->expect.dropped_bad_size; // what backends refuse, input() refuses too
            ++dropped_bad_size_;
            done_without_switch();
            return;
        }
        const wire::parsed_frame parsed = wire::parsed_frame::parse(frame);
        if (!s->mac) {
            // Step 3: the port takes the source of its first proper frame, unless another port has it.
            if (!parsed.valid || !parsed.source.is_unicast()) {
                ++s->expect.dropped_no_mac;
                REQUIRE(net_->mac(handle) == std::nullopt);
                done_without_switch();
                return;
            }
            // The gateway port holds the gateway MAC: a VM taking it would receive what VMs send
            // to the gateway.
            if (holder(parsed.source, k) || parsed.source == gateway_mac) {
                ++ports_refused_;
                REQUIRE(!net_->name(handle).has_value()); // detached
                detached(k);
                done_without_switch();
                return;
            }
            REQUIRE(net_->mac(handle) == parsed.source);
            s->mac = parsed.source;
        }

        // Step 4: the ARP guard may drop it, and only ARP; the DHCP service drops every DHCP
        // server reply (from port 67 to 68) and takes a client's message to the gateway's server.
        const bool server_reply = parsed.is_ipv4() && parsed.has_ports && parsed.protocol == wire::ipv4::protocol::udp &&
                                  parsed.source_port == wire::dhcp::server_port &&
                                  parsed.destination_port == wire::dhcp::client_port;
        const bool to_server = parsed.is_ipv4() && parsed.has_ports && parsed.protocol == wire::ipv4::protocol::udp &&
                               parsed.destination_port == wire::dhcp::server_port && parsed.source == *s->mac &&
                               (parsed.destination.is_broadcast() || parsed.destination == gateway_mac) &&
                               (parsed.ip_destination.is_broadcast() || parsed.ip_destination == gateway_ip ||
                                parsed.ip_destination == ipv4_address{192, 168, 64, 255});
        // The DNS server (UDP to gateway:53) and the NAT translators (TCP, UDP, ICMP echo) look at
        // IPv4 to the gateway's MAC bound beyond the subnet, and TCP and UDP to the gateway itself
        // (its DNS, or the host's loopback): they drop what they will
        // not read (a spoofed sender, a martian, a fragment, a malformed header) and take the rest
        // — carried, or (the fuzzer's allow-list is empty) refused with at most one ICMP error to
        // this port. Pings to the gateway are the gateway's own.
        const bool udp = parsed.is_ipv4() && parsed.protocol == wire::ipv4::protocol::udp;
        const bool icmp = parsed.is_ipv4() && parsed.protocol == wire::ipv4::protocol::icmp;
        const bool tcp = parsed.is_ipv4() && parsed.protocol == wire::ipv4::protocol::tcp;
        const bool in_subnet = (parsed.ip_destination.to_u32() >> 8) == (gateway_ip.to_u32() >> 8);
        const bool nat_candidate = !to_server && parsed.is_ipv4() && parsed.destination == gateway_mac &&
                                   (udp || tcp || (icmp && parsed.ip_destination != gateway_ip)) &&
                                   (!in_subnet || ((udp || tcp) && parsed.ip_destination == gateway_ip));
        const auto service_drops = net_->stats(handle)->dropped_by_service - port_before->dropped_by_service;
        REQUIRE(service_drops <= 1);
        if (service_drops == 1) {
            REQUIRE(parsed.arp || parsed.arp_malformed || server_reply || nat_candidate);
            done_without_switch();
            return;
        }
        REQUIRE(!server_reply);

        // Step 5: the switch — or, for a message the DHCP service or a translator took, only its
        // learning of the port's MAC (so replies find it).
        deliveries expected;
        bool accepted = false;
        if (to_server || nat_candidate) {
            accepted = true;
            learn(*s->mac, static_cast<int>(k), true);
            expected.gateway = true;
        } else if (frame.size() >= wire::ethernet::header_len) {
            const auto src = mac_address::from_bytes(frame.subspan(wire::ethernet::field::source));
            const auto dst = mac_address::from_bytes(frame.subspan(wire::ethernet::field::destination));
            if (src.is_unicast() && src == *s->mac) {
                accepted = true;
                learn(src, static_cast<int>(k), true);
                expected = forward(static_cast<int>(k), dst);
            }
        }
        deliver(expected, out, 0, frame);
        REQUIRE(after.frames_to_gateway == before.frames_to_gateway + (expected.gateway ? 1u : 0u));

        // Step 6: the replies, from the gateway port.
        const std::size_t replies = tapped_.size() - 1;
        REQUIRE(after.replies == before.replies + replies);
        REQUIRE(replies + (after.replies_dropped - before.replies_dropped) <= (expected.gateway ? 1u : 0u));
        for (std::size_t i = 1; i < tapped_.size(); ++i) {
            const const_bytes reply{tapped_[i]};
            REQUIRE(reply.size() >= wire::ethernet::header_len && reply.size() <= max_len);
            const auto src = mac_address::from_bytes(reply.subspan(wire::ethernet::field::source));
            const auto dst = mac_address::from_bytes(reply.subspan(wire::ethernet::field::destination));
            REQUIRE(src == gateway_mac);
            const auto reply_parsed = wire::parsed_frame::parse(reply);
            if ((reply_parsed.is_ipv4() && reply_parsed.has_ports && reply_parsed.source_port == wire::dhcp::server_port) ||
                nat_candidate) {
                // A DHCP reply, or a translator's refusal, goes to the port that asked, and no
                // other: not through the switch.
                deliveries asker;
                asker.vms.push_back(static_cast<int>(k));
                deliver(asker, out, i, reply);
                continue;
            }
            learn(src, -1, false);
            deliver(forward(-1, dst), out, i, reply);
        }

        // An ARP request for the gateway's address gets the gateway's answer, to the asker.
        if (accepted && expected.gateway && parsed.arp && parsed.arp->operation == wire::arp::operation::request &&
            parsed.arp->target_ip == gateway_ip && !parsed.arp->is_gratuitous()) {
            REQUIRE(replies == 1);
            const const_bytes reply{tapped_[1]};
            const auto eth = wire::ethernet::repr::parse(reply);
            REQUIRE(eth && eth->ethertype == wire::ethernet::ethertype::arp && !eth->vlan_tci);
            REQUIRE(eth->destination == parsed.source);
            const auto answer = wire::arp::repr::parse(reply.subspan(eth->buffer_len()));
            REQUIRE(answer && answer->operation == wire::arp::operation::reply);
            REQUIRE(answer->sender_mac == gateway_mac && answer->sender_ip == gateway_ip);
            REQUIRE(answer->target_mac == parsed.arp->sender_mac && answer->target_ip == parsed.arp->sender_ip);
        }
    }

    void input_unplugged(std::size_t k, port_handle handle, const_bytes frame) {
        const network_counters before = off_->stats();
        off_->input(handle, frame, now(), [](port_handle, const_bytes) { REQUIRE(false); });
        const network_counters& after = off_->stats();
        if (slots_[k].mirror == handle) {
            ++slots_[k].mirror_in;
            REQUIRE(after.frames_in == before.frames_in + 1 && after.dropped_unplugged == before.dropped_unplugged + 1);
        } else {
            REQUIRE(after.dropped_unknown_port == before.dropped_unknown_port + 1 && after.frames_in == before.frames_in);
        }
    }

    // --- state ---------------------------------------------------------------------------------------

    void check_state() {
        const auto& n = net_->stats();
        REQUIRE(n.frames_in == frames_in_);
        REQUIRE(n.dropped_unknown_port == dropped_unknown_);
        REQUIRE(n.dropped_link_down == dropped_link_down_);
        REQUIRE(n.dropped_bad_size == dropped_bad_size_);
        REQUIRE(n.ports_refused == ports_refused_);
        REQUIRE(n.dropped_unplugged == 0);
        REQUIRE(n.gateway_unclaimed <= n.frames_to_gateway);
        std::size_t ports = 0;
        for (std::size_t k = 0; k < slot_count; ++k) {
            const slot_model& s = slots_[k];
            for (const auto& old : s.stale) REQUIRE(!net_->stats(old) && !net_->mac(old) && !net_->link_up(old));
            if (s.mirror) {
                const auto c = off_->stats(*s.mirror);
                REQUIRE(c && c->frames_in == s.mirror_in && c->dropped_unplugged == s.mirror_in && c->frames_out == 0);
            }
            if (!s.handle) continue;
            ++ports;
            const auto c = net_->stats(*s.handle);
            REQUIRE(c.has_value());
            REQUIRE(c->frames_in == s.expect.frames_in && c->frames_out == s.expect.frames_out);
            REQUIRE(c->dropped_link_down == s.expect.dropped_link_down && c->dropped_no_mac == s.expect.dropped_no_mac);
            REQUIRE(c->dropped_bad_size == s.expect.dropped_bad_size);
            REQUIRE(c->dropped_unplugged == 0);
            REQUIRE(net_->mac(*s.handle) == s.mac && net_->link_up(*s.handle) == s.up);
        }
        REQUIRE(net_->port_count() == ports);
        REQUIRE(net_->ports().size() == ports);
        REQUIRE(off_->stats().frames_to_gateway == 0 && off_->stats().replies == 0);

        // The switch has learned what the model says, where it says.
        const auto& sw = net_->learning_switch();
        std::size_t live_entries = 0;
        for (const auto& e : table_) {
            const bool alive = live(e);
            live_entries += alive ? 1 : 0;
            const auto at = sw.lookup(e.mac, steady());
            REQUIRE(at.has_value() == alive);
            for (const auto& f : table_) {
                if (!alive || !live(f)) continue;
                REQUIRE((sw.lookup(f.mac, steady()) == at) == (f.owner == e.owner));
            }
        }
        REQUIRE(sw.learned_count(steady()) == live_entries);
    }

    bool isolated_;
    std::size_t mtu_;
    boost::asio::io_context io_; // the translators' sockets would run here; none is opened
    std::unique_ptr<shared_net> net_;
    std::unique_ptr<unplugged_net> off_;
    std::array<slot_model, slot_count> slots_{};
    std::vector<learned> table_;
    std::vector<std::vector<std::byte>> tapped_; // this input's: the frame at ingress, then each reply
    std::uint64_t frames_in_ = 0;
    std::uint64_t dropped_unknown_ = 0;
    std::uint64_t dropped_link_down_ = 0;
    std::uint64_t dropped_bad_size_ = 0;
    std::uint64_t ports_refused_ = 0;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    input_reader in{data, size};
    harness h{in.byte()};
    h.run(in);
    return 0;
}
