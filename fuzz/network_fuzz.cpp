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
//                                      Ethernet source; bit 6: the frame comes with offload
//                                      metadata (a virtio-net header), read after its bytes (below),
//                                      through input(port, frame, offload, now, emit) with an emit
//                                      that is an offload_emitter.
//   2        v                         the clock moves on by v s (v < 128), else (v - 127) min
//   3        b                         set_link(slot (b & 0x7f) % 5, b & 0x80): up when set
//   4        k                         remove_port(slot k % 5); of a removed slot: a stale handle,
//                                      which must be refused
//   5        k                         a removed slot k % 5 is added again (same MAC policy)
//   6        -                         poll()
//   7        k                         remove and re-add slot k % 5 at once
//
// A frame's offload operands (flags bit 6), after its bytes: a byte m, then by m % 4
//   0  -                 NEEDS_CSUM at the frame's UDP (offset 6), ICMP (2) or other (TCP: 16)
//                        checksum, csum_start = 14 + the IPv4 header's length (34 for a non-IPv4 frame)
//   1  g16 n             TCPv4 GSO (NEEDS_CSUM at the TCP checksum) with gso_size g16 (big-endian; 0 is
//                        invalid), ECN when m & 8; the frame grown by n·256 bytes of payload (capped 64
//                        bytes past wire::offload::max_frame_len), its IPv4 total length following, so a
//                        few input bytes make a 64 KiB super-frame
//   2  f t h16 g16 s16 o16 b16   the fields as they come (little-endian), unchecked: any flags, GSO
//                        type (t & 0x7f, ECN t & 0x80) and offsets, metadata validate() may refuse
//   3  10 bytes (12 when m & 8)  a virtio-net header through wire::offload::parse; refused: the
//                        frame goes in with all-clear metadata
// and when m & 4 the checksum field the metadata points at gets the pseudo-header sum, as a driver
// leaves it for its NIC (after bit 4's repair).
//
// A model of the ports (handles, MACs, links, counters) and of the switch's MAC table (which port
// each MAC is learned on, sticky or not, until when; the gateway's own MAC always on the gateway
// port) predicts, for every input(), which ports get the frame, whether it reaches the gateway, and
// where each gateway reply goes. Only the ARP guard's verdict is read rather than predicted (from
// dropped_by_service). The frame tap shows the ingress frame and each reply. The target traps (and
// says which invariant failed, with its line) when, whatever the input:
//  * emit is called with a handle of no current port, of a port whose link is down or not yet on
//    the switch, or from the disconnected network at all; or hands the ingress port its own frame;
//  * an emitted frame is shorter than an Ethernet header or longer than max_frame_len(mtu), unless
//    it carries GSO metadata (then at most wire::offload::max_frame_len); a frame carries metadata
//    that is all clear or that validate() refuses; a reply carries any;
//  * a frame with offload metadata goes another way than the model's rule, written out from the
//    bytes (and checked against wire::is_tcpv4_offload), gives: all clear, exactly as a plain frame;
//    an untagged unfragmented IPv4 TCP segment, NEEDS_CSUM at its TCP checksum, no GSO or TCPv4 GSO
//    whose segments (IPv4 and TCP headers plus gso_size) fit the MTU, "whole": switched and
//    served exactly as a plain frame of the same bytes (same ports, bytes unchanged, the size
//    limit a super-frame's own), each delivery carrying the same metadata, counted in offload_whole;
//    anything else made plain: the pieces wire::segment makes of it, each entering in order as a
//    plain frame of its own (the per-piece predictions above, from the counters at each piece's
//    tap), each delivery plain, counted once in offload_segmented; or, where wire::segment refuses
//    it, dropped before anything sees it: frames_in and dropped_bad_offload (network and port) up
//    by one, nothing tapped or emitted (the disconnected network alike, with its own MTU);
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
//    drops, frames to the gateway, replies, refused ports, bad-size and bad-offload drops, offload
//    whole and segmented; the disconnected network's unplugged and bad-offload drops) or the
//    switch's learned addresses differ from the model.
//
// fuzz/corpus/network holds real frames (tests/support/dhcp_captures.hpp's udhcpc messages, ARP
// and ping) as programs, written by fuzz/support/make_frame_corpora.py, offload-* programs (TCPv4
// super-frames VM to VM and to the NAT, NEEDS_CSUM segments and UDP datagrams, hostile and parsed
// virtio-net headers; written by hand), and regression-* inputs for violations the target found.

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
#include <ankanet/wire/offload.hpp>
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
#include <span>
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
    network_port_counters expect{};           // frames_in, frames_out, dropped_link_down, dropped_no_mac, ...
    std::optional<port_handle> mirror;        // the disconnected network's port
    std::uint64_t mirror_in = 0;
    std::uint64_t mirror_unplugged = 0;       // of mirror_in: dropped as unplugged
    std::uint64_t mirror_bad_offload = 0;     // of mirror_in: metadata that could not be applied
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
                // A small flow table and reorder pool: the defaults (4096 flows, 1 MiB of parking
                // for each of 256 VMs) cost ASan a quarter of a second a network to allocate and
                // free, for room no run uses.
                nat::tcp_limits limits;
                limits.capacity = 64;
                limits.max_vms = 16;
                limits.vm_reorder_bytes = 64 * 1024;
                return std::tuple{dns::forwarder{executor, dns_for(gateway, o)},
                                  nat::tcp_translator<fuzz_egress>{executor, config, fuzz_egress{}, limits},
                                  nat::udp_translator<fuzz_egress>{executor, config, fuzz_egress{}},
                                  nat::icmp_translator<fuzz_egress>{executor, config, fuzz_egress{}}};
            });
        REQUIRE(built.has_value());
        net_ = std::move(*built);
        REQUIRE(net_->config().gateway_mac == gateway_mac && net_->config().mtu == mtu_);
        // Each tapped frame, with the counters as they were then: a segment of a super-frame made
        // plain is a frame of its own, and the counters at its tap tell where its work starts.
        net_->set_frame_tap([this](const_bytes frame) {
            tapped_.emplace_back(frame.begin(), frame.end());
            tap_stats_.push_back(net_->stats());
            tap_port_.push_back(tap_handle_ ? net_->stats(*tap_handle_) : std::nullopt);
        });

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
            s.mirror_unplugged = 0;
            s.mirror_bad_offload = 0;
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
        std::optional<wire::offload> meta;
        bool partial = false;
        if (flags & 0x40u) meta = offload_operands(in, frame, partial);
        if (flags & 0x10u) repair(frame);
        if (meta && partial) leave_checksum(frame, *meta);

        std::optional<port_handle> handle = slots_[k].handle;
        std::optional<port_handle> twin = slots_[k].mirror;
        if (use_stale || !handle) {
            handle = slots_[k].stale.empty() ? never_issued(k) : slots_[k].stale.back();
            twin = never_issued(k);
        }
        input(k, *handle, const_bytes{frame}, meta);
        input_unplugged(k, *twin, const_bytes{frame}, meta);
    }

    /// Where the frame's TCP, UDP or ICMP header starts: after its IPv4 header (34 when the frame
    /// is no IPv4 one).
    static std::size_t l4_of(const_bytes frame) {
        constexpr std::size_t eth = wire::ethernet::header_len;
        if (frame.size() < eth + wire::ipv4::header_len ||
            wire::load_be16(frame, wire::ethernet::field::ethertype) != wire::ethernet::ethertype::ipv4) {
            return eth + wire::ipv4::header_len;
        }
        return eth + (wire::load_u8(frame, eth) & 0x0fu) * 4u;
    }

    static std::uint16_t le16(input_reader& in) {
        const unsigned low = in.byte();
        return static_cast<std::uint16_t>(low | unsigned{in.byte()} << 8);
    }

    /// The offload operands of a frame (flags bit 6; see the top of this file). May grow `frame`.
    static wire::offload offload_operands(input_reader& in, std::vector<std::byte>& frame, bool& partial) {
        const std::uint8_t m = in.byte();
        partial = (m & 0x04u) != 0;
        const std::size_t l4 = l4_of(frame);
        wire::offload meta;
        switch (m % 4u) {
        case 0: {
            meta.needs_csum = true;
            meta.csum_start = static_cast<std::uint16_t>(l4);
            const std::uint8_t protocol =
                frame.size() > wire::ethernet::header_len + wire::ipv4::field::protocol
                    ? wire::load_u8(const_bytes{frame}, wire::ethernet::header_len + wire::ipv4::field::protocol)
                    : 0;
            meta.csum_offset = protocol == wire::ipv4::protocol::udp    ? wire::udp::field::checksum
                               : protocol == wire::ipv4::protocol::icmp ? wire::icmp::field::checksum
                                                                        : wire::tcp::field::checksum;
            break;
        }
        case 1: {
            const unsigned high = in.byte();
            const auto mss = static_cast<std::uint16_t>(high << 8 | in.byte());
            meta = wire::offload::tcpv4_gso(l4, l4 + wire::tcp::header_len, mss);
            meta.ecn = (m & 0x08u) != 0;
            // Grown by n·256 bytes of payload, the IPv4 total length following: a super-frame of
            // up to 64 KiB from a few input bytes (and, capped past the longest, one too long).
            const std::size_t grow = std::size_t{in.byte()} * 256;
            const std::size_t size = std::min(frame.size() + grow, wire::offload::max_frame_len + 64);
            for (std::size_t i = frame.size(); i < size; ++i) frame.push_back(std::byte{static_cast<unsigned char>(i * 7)});
            if (grow != 0 && frame.size() >= wire::ethernet::header_len + wire::ipv4::header_len &&
                wire::load_be16(const_bytes{frame}, wire::ethernet::field::ethertype) == wire::ethernet::ethertype::ipv4) {
                const std::size_t ip_len = frame.size() - wire::ethernet::header_len;
                wire::store_be16(frame, wire::ethernet::header_len + wire::ipv4::field::total_length,
                                 static_cast<std::uint16_t>(std::min<std::size_t>(ip_len, 0xffff)));
            }
            break;
        }
        case 2: { // the fields as they come, unchecked: any flags, GSO type and offsets
            const std::uint8_t f = in.byte();
            const std::uint8_t type = in.byte();
            meta.needs_csum = (f & wire::offload::flag_needs_csum) != 0;
            meta.data_valid = (f & wire::offload::flag_data_valid) != 0;
            meta.gso_type = static_cast<wire::offload::gso>(type & ~wire::offload::gso_ecn_bit);
            meta.ecn = (type & wire::offload::gso_ecn_bit) != 0;
            meta.hdr_len = le16(in);
            meta.gso_size = le16(in);
            meta.csum_start = le16(in);
            meta.csum_offset = le16(in);
            meta.num_buffers = le16(in);
            break;
        }
        default: { // a virtio-net header on the wire; refused: the frame goes in with none
            std::array<std::byte, wire::offload::header_len_v1> raw{};
            const std::size_t len = (m & 0x08u) ? wire::offload::header_len_v1 : wire::offload::header_len;
            for (std::size_t i = 0; i < len; ++i) raw[i] = std::byte{in.byte()};
            const auto parsed = wire::offload::parse(const_bytes{raw}.first(len));
            if (parsed) meta = *parsed;
            break;
        }
        }
        return meta;
    }

    /// Leaves the checksum `meta` points at as a driver does for its NIC: the pseudo-header sum.
    static void leave_checksum(std::vector<std::byte>& frame, const wire::offload& meta) {
        const std::size_t field = std::size_t{meta.csum_start} + meta.csum_offset;
        if (!meta.needs_csum || field + 2 > frame.size() || frame.size() < wire::ethernet::header_len) return;
        if (wire::load_be16(const_bytes{frame}, wire::ethernet::field::ethertype) != wire::ethernet::ethertype::ipv4) return;
        const wire::ipv4::packet<const_bytes> ip{const_bytes{frame}.subspan(wire::ethernet::header_len)};
        if (ip.check_len()) return;
        const auto length = static_cast<std::uint16_t>(ip.total_length() - ip.header_length());
        wire::store_be16(frame, field, wire::checksum::ipv4_pseudo_header(ip.source(), ip.destination(), ip.protocol(), length).sum());
    }

    /// The model's rule for a frame with metadata travelling whole (network.hpp, theory of
    /// operation 9), written out from the bytes: an untagged, unfragmented IPv4 TCP segment whose
    /// metadata is valid NEEDS_CSUM at its TCP checksum, with no GSO or TCPv4 GSO whose segments
    /// (IPv4 and TCP headers plus gso_size) fit the MTU.
    static bool travels_whole(const_bytes frame, const wire::offload& meta, std::size_t mtu) {
        if (meta.validate() || !meta.needs_csum) return false;
        if (meta.is_gso() && meta.gso_type != wire::offload::gso::tcpv4) return false;
        constexpr std::size_t eth = wire::ethernet::header_len;
        if (frame.size() < eth + wire::ipv4::header_len ||
            wire::load_be16(frame, wire::ethernet::field::ethertype) != wire::ethernet::ethertype::ipv4) {
            return false;
        }
        const const_bytes ip = frame.subspan(eth);
        const std::size_t ihl = (wire::load_u8(ip, 0) & 0x0fu) * 4u;
        if ((wire::load_u8(ip, 0) >> 4) != 4 || ihl < wire::ipv4::header_len || ihl > ip.size()) return false;
        const std::size_t total = wire::load_be16(ip, 2);
        if (total < ihl || total > ip.size()) return false;
        if (wire::load_u8(ip, 9) != wire::ipv4::protocol::tcp) return false;
        if ((wire::load_be16(ip, 6) & 0x3fffu) != 0) return false; // MF or a fragment offset
        const const_bytes segment = ip.subspan(ihl, total - ihl);
        if (segment.size() < wire::tcp::header_len) return false;
        const std::size_t thl = (wire::load_u8(segment, 12) >> 4) * 4u;
        if (thl < wire::tcp::header_len || thl > segment.size()) return false;
        if (meta.csum_start != eth + ihl || meta.csum_offset != 16) return false;
        return !meta.is_gso() || ihl + thl + meta.gso_size <= mtu;
    }

    /// What the network's software path makes of a frame whose metadata does not travel whole.
    struct cut_result {
        bool refused = false;
        std::vector<std::vector<std::byte>> pieces;
    };
    static cut_result cut(const_bytes frame, const wire::offload& meta) {
        cut_result r;
        std::vector<std::byte> scratch(wire::offload::max_frame_len); // as big as the network's
        r.refused = static_cast<bool>(wire::segment(frame, meta, wire::mutable_bytes{scratch}, [&](wire::mutable_bytes piece) {
            r.pieces.emplace_back(piece.begin(), piece.end());
        }));
        if (r.refused) REQUIRE(r.pieces.empty()); // all or nothing
        return r;
    }

    struct emitted {
        port_handle to;
        std::size_t taps; // frames tapped when it was emitted
        std::optional<wire::offload> meta; // none: the two-argument call
        std::vector<std::byte> bytes;
        std::size_t replies_before = 0; // of its own frame's taps, before it: 0 for the frame itself
    };

    /// The emit: `Offload` makes it an offload_emitter.
    template <bool Offload>
    struct recorder {
        harness* h;
        void operator()(port_handle to, const_bytes bytes) const { h->emitted_frame(to, bytes, std::nullopt); }
        void operator()(port_handle to, const_bytes bytes, const wire::offload& meta) const
            requires Offload
        {
            h->emitted_frame(to, bytes, meta);
        }
    };
    static_assert(offload_emitter<recorder<true>> && !offload_emitter<recorder<false>>);

    void emitted_frame(port_handle to, const_bytes bytes, const std::optional<wire::offload>& meta) {
        const auto target = slot_of(to);
        REQUIRE(target.has_value() && net_->name(to).has_value()); // a current port
        REQUIRE(slots_[*target].up && net_->link_up(to));           // never a link that is down
        REQUIRE(net_->mac(to).has_value()); // on the switch (the ingress may have just joined it)
        REQUIRE(!tapped_.empty());
        REQUIRE(bytes.size() >= wire::ethernet::header_len);
        if (meta) {
            // Only what has work left carries metadata; past the MTU, only a super-frame.
            REQUIRE(!meta->is_plain() && !meta->validate());
            REQUIRE(bytes.size() <= wire::offload::max_frame_len);
            REQUIRE(bytes.size() <= backend::max_frame_len(mtu_) || meta->is_gso());
        } else {
            REQUIRE(bytes.size() <= backend::max_frame_len(mtu_));
        }
        out_.push_back(emitted{to, tapped_.size(), meta, std::vector<std::byte>(bytes.begin(), bytes.end())});
    }

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

    /// One frame into the shared network (with `meta`, through the offload overload, whose emit
    /// is an offload_emitter), and the model's prediction of what became of it.
    void input(std::size_t k, port_handle handle, const_bytes frame, const std::optional<wire::offload>& meta) {
        const network_counters before = net_->stats();
        const std::optional<network_port_counters> port_before = net_->stats(handle);
        tapped_.clear();
        tap_stats_.clear();
        tap_port_.clear();
        out_.clear();
        tap_handle_ = handle;
        if (meta) net_->input(handle, frame, *meta, now(), recorder<true>{this});
        else net_->input(handle, frame, now(), recorder<false>{this});
        tap_handle_.reset();
        const network_counters after = net_->stats();
        REQUIRE(after.offload_errors == before.offload_errors);

        if (!meta || meta->is_plain()) { // exactly a plain frame
            REQUIRE(after.offload_whole == before.offload_whole && after.offload_segmented == before.offload_segmented);
            REQUIRE(after.dropped_bad_offload == before.dropped_bad_offload);
            one_frame(k, handle, frame, std::nullopt, backend::max_frame_len(mtu_), before, port_before, after, 0, tapped_.size());
            return;
        }
        const bool whole = travels_whole(frame, *meta, mtu_);
        REQUIRE(wire::is_tcpv4_offload(frame, *meta, mtu_) == whole);
        REQUIRE(after.dropped_bad_offload >= before.dropped_bad_offload);
        if (whole) {
            // As a plain frame of the same bytes would go, each delivery with the metadata; a
            // super-frame bounded by its own limit rather than the MTU.
            ++offload_whole_;
            REQUIRE(after.offload_whole == before.offload_whole + 1 && after.offload_segmented == before.offload_segmented);
            REQUIRE(after.dropped_bad_offload == before.dropped_bad_offload);
            const std::size_t limit = meta->is_gso() ? wire::offload::max_frame_len : backend::max_frame_len(mtu_);
            one_frame(k, handle, frame, meta, limit, before, port_before, after, 0, tapped_.size());
            return;
        }
        REQUIRE(after.offload_whole == before.offload_whole);
        const cut_result made = cut(frame, *meta);
        if (made.refused) {
            // Dropped whole, before anything saw it: counted in, and as bad offload.
            REQUIRE(tapped_.empty() && out_.empty());
            REQUIRE(after.offload_segmented == before.offload_segmented);
            if (!slot_of(handle)) {
                REQUIRE(after.dropped_unknown_port == before.dropped_unknown_port + 1 && after.frames_in == before.frames_in);
                REQUIRE(after.dropped_bad_offload == before.dropped_bad_offload);
                ++dropped_unknown_;
                return;
            }
            REQUIRE(after.frames_in == before.frames_in + 1 && after.dropped_bad_offload == before.dropped_bad_offload + 1);
            REQUIRE(after.dropped_unknown_port == before.dropped_unknown_port);
            ++frames_in_;
            ++dropped_bad_offload_;
            ++slots_[k].expect.frames_in;
            ++slots_[k].expect.dropped_bad_offload;
            return;
        }
        // Made plain: each piece a frame of its own (a burst each), in order.
        ++offload_segmented_;
        REQUIRE(after.offload_segmented == before.offload_segmented + 1);
        REQUIRE(after.dropped_bad_offload == before.dropped_bad_offload);
        REQUIRE(after.frames_in - before.frames_in + after.dropped_unknown_port - before.dropped_unknown_port == made.pieces.size());
        std::size_t at = 0; // the tap of the piece's ingress
        for (std::size_t i = 0; i < made.pieces.size(); ++i) {
            const const_bytes piece{made.pieces[i]};
            if (!slot_of(handle)) { // a stale handle, or the port was refused at an earlier piece
                ++dropped_unknown_;
                continue;
            }
            REQUIRE(at < tapped_.size());
            // The next piece's ingress is the next tap at which frames_in moved.
            std::size_t next = at + 1;
            while (next < tapped_.size() && tap_stats_[next].frames_in == tap_stats_[at].frames_in) ++next;
            network_counters piece_before = tap_stats_[at];
            --piece_before.frames_in;
            std::optional<network_port_counters> piece_port = tap_port_[at];
            if (piece_port) --piece_port->frames_in;
            network_counters piece_after = after;
            if (next < tapped_.size()) {
                piece_after = tap_stats_[next];
                --piece_after.frames_in;
            } else {
                piece_after.dropped_unknown_port -= made.pieces.size() - i - 1; // the pieces after it
            }
            one_frame(k, handle, piece, std::nullopt, backend::max_frame_len(mtu_), piece_before, piece_port, piece_after, at, next);
            at = next;
        }
        REQUIRE(at == tapped_.size());
    }

    /// Checks what became of one frame the network took in (a frame as it came, or one piece of
    /// a frame made plain): its taps are tapped_[t0, t1), the first its ingress; `before`,
    /// `port_before` and `after` are the counters around it; `meta`, what its deliveries carry.
    void one_frame(std::size_t k, port_handle handle, const_bytes frame, const std::optional<wire::offload>& meta,
                   std::size_t frame_limit, const network_counters& before,
                   const std::optional<network_port_counters>& port_before, const network_counters& after, std::size_t t0,
                   std::size_t t1) {
        const std::span<const std::vector<std::byte>> taps{tapped_.data() + t0, t1 - t0};
        std::vector<emitted> out;
        for (const auto& e : out_) {
            if (e.taps <= t0 || e.taps > t1) continue;
            out.push_back(e);
            out.back().replies_before = e.taps - t0 - 1;
            if (e.taps - t0 - 1 == 0) {
                // The frame itself: the ingress bytes (deliver checks them) with the ingress
                // metadata, never from one VM to another when isolated, never when it is for the
                // gateway, never back where it came from (a reply may go there).
                REQUIRE(e.to != handle);
                REQUIRE(e.meta == meta);
                REQUIRE(!isolated_);
                REQUIRE(mac_address::from_bytes(frame.subspan(wire::ethernet::field::destination)) != gateway_mac);
            } else {
                // A gateway reply: from the gateway MAC, plain (no port here takes offloads).
                REQUIRE(!e.meta);
                REQUIRE(mac_address::from_bytes(const_bytes{e.bytes}.subspan(wire::ethernet::field::source)) == gateway_mac);
            }
        }
        const std::size_t max_len = backend::max_frame_len(mtu_);

        slot_model* s = slot_of(handle) ? &slots_[k] : nullptr;
        if (s == nullptr) {
            REQUIRE(!port_before.has_value());
            REQUIRE(after.dropped_unknown_port == before.dropped_unknown_port + 1);
            REQUIRE(after.frames_in == before.frames_in && taps.empty() && out.empty());
            ++dropped_unknown_;
            return;
        }
        REQUIRE(port_before.has_value());
        ++frames_in_;
        ++s->expect.frames_in;
        REQUIRE(after.frames_in == before.frames_in + 1);
        REQUIRE(!taps.empty() && equal(const_bytes{taps.front()}, frame)); // the tap sees it at ingress

        const auto done_without_switch = [&] {
            REQUIRE(out.empty() && taps.size() == 1);
            REQUIRE(after.frames_to_gateway == before.frames_to_gateway && after.replies == before.replies);
        };
        if (!s->up) {
            ++s->expect.dropped_link_down;
            ++dropped_link_down_;
            done_without_switch();
            return;
        }
        if (frame.size() < wire::ethernet::header_len || frame.size() > frame_limit) {
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
        const std::size_t replies = taps.size() - 1;
        REQUIRE(after.replies == before.replies + replies);
        REQUIRE(replies + (after.replies_dropped - before.replies_dropped) <= (expected.gateway ? 1u : 0u));
        for (std::size_t i = 1; i < taps.size(); ++i) {
            const const_bytes reply{taps[i]};
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
            const const_bytes reply{taps[1]};
            const auto eth = wire::ethernet::repr::parse(reply);
            REQUIRE(eth && eth->ethertype == wire::ethernet::ethertype::arp && !eth->vlan_tci);
            REQUIRE(eth->destination == parsed.source);
            const auto answer = wire::arp::repr::parse(reply.subspan(eth->buffer_len()));
            REQUIRE(answer && answer->operation == wire::arp::operation::reply);
            REQUIRE(answer->sender_mac == gateway_mac && answer->sender_ip == gateway_ip);
            REQUIRE(answer->target_mac == parsed.arp->sender_mac && answer->target_ip == parsed.arp->sender_ip);
        }
    }

    void input_unplugged(std::size_t k, port_handle handle, const_bytes frame, const std::optional<wire::offload>& meta) {
        const network_counters before = off_->stats();
        struct refuse {
            void operator()(port_handle, const_bytes) const { REQUIRE(false); }
            void operator()(port_handle, const_bytes, const wire::offload&) const { REQUIRE(false); }
        };
        if (meta) off_->input(handle, frame, *meta, now(), refuse{});
        else off_->input(handle, frame, now(), refuse{});
        const network_counters& after = off_->stats();
        // As the shared network: whole, made plain (each piece dropped unplugged) or refused.
        std::size_t frames = 1;
        bool bad = false;
        const bool whole = meta && !meta->is_plain() && travels_whole(frame, *meta, off_->config().mtu);
        REQUIRE(after.offload_whole == before.offload_whole + (whole ? 1u : 0u));
        if (meta && !meta->is_plain() && !whole) {
            const cut_result made = cut(frame, *meta);
            bad = made.refused;
            frames = made.pieces.size();
            REQUIRE(after.offload_segmented == before.offload_segmented + (bad ? 0u : 1u));
        }
        if (slots_[k].mirror == handle) {
            if (bad) {
                ++slots_[k].mirror_in;
                ++slots_[k].mirror_bad_offload;
                REQUIRE(after.frames_in == before.frames_in + 1 && after.dropped_bad_offload == before.dropped_bad_offload + 1);
                REQUIRE(after.dropped_unplugged == before.dropped_unplugged);
            } else {
                slots_[k].mirror_in += frames;
                slots_[k].mirror_unplugged += frames;
                REQUIRE(after.frames_in == before.frames_in + frames && after.dropped_unplugged == before.dropped_unplugged + frames);
            }
        } else {
            const std::size_t dropped = bad ? 1 : frames;
            REQUIRE(after.dropped_unknown_port == before.dropped_unknown_port + dropped && after.frames_in == before.frames_in);
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
        REQUIRE(n.dropped_bad_offload == dropped_bad_offload_);
        REQUIRE(n.offload_whole == offload_whole_ && n.offload_segmented == offload_segmented_ && n.offload_errors == 0);
        REQUIRE(n.gateway_unclaimed <= n.frames_to_gateway);
        std::size_t ports = 0;
        for (std::size_t k = 0; k < slot_count; ++k) {
            const slot_model& s = slots_[k];
            for (const auto& old : s.stale) REQUIRE(!net_->stats(old) && !net_->mac(old) && !net_->link_up(old));
            if (s.mirror) {
                const auto c = off_->stats(*s.mirror);
                REQUIRE(c && c->frames_in == s.mirror_in && c->dropped_unplugged == s.mirror_unplugged && c->frames_out == 0);
                REQUIRE(c->dropped_bad_offload == s.mirror_bad_offload);
            }
            if (!s.handle) continue;
            ++ports;
            const auto c = net_->stats(*s.handle);
            REQUIRE(c.has_value());
            REQUIRE(c->frames_in == s.expect.frames_in && c->frames_out == s.expect.frames_out);
            REQUIRE(c->dropped_link_down == s.expect.dropped_link_down && c->dropped_no_mac == s.expect.dropped_no_mac);
            REQUIRE(c->dropped_bad_size == s.expect.dropped_bad_size);
            REQUIRE(c->dropped_bad_offload == s.expect.dropped_bad_offload);
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
    std::vector<network_counters> tap_stats_;    // the network's counters at each tap
    std::vector<std::optional<network_port_counters>> tap_port_; // the ingress port's, at each tap
    std::optional<port_handle> tap_handle_;      // the ingress port, during input()
    std::vector<emitted> out_;                   // this input's emits
    std::uint64_t frames_in_ = 0;
    std::uint64_t dropped_unknown_ = 0;
    std::uint64_t dropped_link_down_ = 0;
    std::uint64_t dropped_bad_size_ = 0;
    std::uint64_t ports_refused_ = 0;
    std::uint64_t dropped_bad_offload_ = 0;
    std::uint64_t offload_whole_ = 0;
    std::uint64_t offload_segmented_ = 0;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    input_reader in{data, size};
    harness h{in.byte()};
    h.run(in);
    return 0;
}
