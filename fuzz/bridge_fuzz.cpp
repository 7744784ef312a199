// Fuzz target for the bridge network (bridge.hpp): basic_bridge_network (a basic_network whose
// gateway port is an uplink, with bridge::port_tracker and bridge::address_guard) on a manual
// clock with an observer, driven through its pure core: input() for the VMs' frames,
// uplink_input() for the LAN's, frames for the LAN coming out of emit with uplink_port(). In
// translate mode the target stands for the lan_uplink decorator (bridge/lan_uplink.hpp) as the
// product builds it (make_bridge_network): it shares a bridge::uplink_state with the network's
// port_tracker, so the translator's VM table follows the ports, and calls the translator itself —
// translate_inbound on each LAN frame before uplink_input (a drop verdict drops it; an unfinished
// checksum of a plain frame is finished first, as admit() does), translate_outbound on a copy of
// each frame emitted to the uplink (as send() does).
//
// The input is a program. Its first byte sets the network up: bit 0 MAC translation (else direct
// MACs), bit 1 isolate, bits 2-3 the MTU (1500, 576, 1280, 9000). Four port slots start attached:
//   slot 0: custom MAC 52:54:00:12:34:56, slot 1: random, slot 2: stable(uuid) under a fixed host
//   secret (so a LAN device sending from its MAC while it is away makes its return collide),
//   slot 3: from_first_frame.
// The uplink's MAC is 3c:22:fb:01:02:03, the LAN's router 00:11:22:33:44:55 at 10.9.0.1. The
// address pool is 10.9.0.10 .. 10.9.0.13. A slot's MAC (as an operand) is its current one, else
// the last it had. Then each step is an opcode byte and its operands; a missing byte reads as 0.
//
//   op % 8  operands                      what
//   0, 1    p flags [s] [d] [i] len16 bytes  the bytes as a frame from slot (p & 0x7f) % 4 — from a
//                                         handle of a port that slot had before when p & 0x80 (or
//                                         one never issued). flags bits 0-1, the Ethernet source:
//                                         0 as is, 1 the port's MAC, 2 slot s's, 3 the router's;
//                                         bits 2-3, the destination: 0 as is, 1 the router's,
//                                         2 broadcast, 3 slot d's; bit 4: IPv4/UDP/TCP/ICMP
//                                         checksums repaired; bit 5: an ARP sender MAC := the
//                                         Ethernet source; bit 6: the claimed address (ARP sender
//                                         IP, else the IPv4 source) := pool[i % 4].
//   2       flags [s] [d] [i] [mss16] len16 bytes  the bytes as a frame from the LAN. flags bits
//                                         0-1, the source: 0 as is, 1 the router's, 2 slot s's, 3
//                                         the uplink's; bits 2-3, the destination: 0 as is, 1 the
//                                         uplink's, 2 broadcast, 3 slot d's; bit 4: repair; bits
//                                         5-6, offload metadata (when the frame is IPv4 UDP/TCP):
//                                         1 needs_csum, 2 a TCPv4 super-frame of mss16 (2 is
//                                         needs_csum for UDP); bit 7: the IPv4 destination or ARP
//                                         target IP := pool[i % 4]. A frame a packet socket would
//                                         not pass up (longer than the MTU allows, unless GSO) is
//                                         not given.
//   3       c y t [lease32] xid32 [mac6] [ip4]  a DHCP reply from the LAN's server: chaddr c % 8:
//                                         0-3 slot c's MAC, 4 the uplink's, 5 the router's, 6-7 six
//                                         bytes; yiaddr: y < 128 pool[y % 4], else four bytes; t
//                                         bits 0-1: ACK (0, 1), OFFER, NAK; bit 2: a lease time
//                                         option (lease32); bit 3: to chaddr's MAC (else
//                                         broadcast); bit 4: no UDP checksum.
//   4       p t xid32 [i]                 a DHCP client message from slot p % 4 (its MAC, else the
//                                         last it had): t % 4: DISCOVER, REQUEST, REQUEST for
//                                         pool[i % 4] (option 50), a renewing REQUEST (ciaddr and
//                                         IPv4 source pool[i % 4], to the router).
//   5       v                             the clock moves on by v s (v < 128), (v - 127) min
//                                         (v < 200), else (v - 199) h
//   6       b                             slot b % 4 removed if present, else added; b & 0x80:
//                                         removed and added again at once
//   7       b                             set_link(slot b % 4, b & 0x80); b & 0x40: poll()
//
// The target traps (saying which invariant failed, with its line) when, whatever the input:
//  * emit is called with a handle that is neither a current port's (with its link up) nor
//    uplink_port(); a VM's frame goes back to its own port; a LAN frame goes back to the uplink;
//  * an emitted frame is shorter than an Ethernet header, or longer than max_frame_len(mtu)
//    without GSO metadata (wire::offload::max_frame_len with it); a VM's frame leaves other than as
//    its bytes, plain, from its port's MAC; a LAN frame reaches a VM other than as the bytes (after
//    translation) and metadata the uplink brought;
//  * a unicast LAN frame reaches more than one VM, or a VM whose MAC is not its destination; one
//    for a MAC no port holds reaches none and is counted (uplink_not_for_vm), and only such a
//    frame, or one the switch dropped, is; a group-addressed LAN frame reaches a VM twice;
//  * a VM's unicast frame for a MAC the switch has live goes anywhere but to that one port, or
//    reaches a VM other than by that VM's MAC; on an isolated network a VM's frame reaches
//    another VM; a VM's frame goes to the uplink twice;
//  * a VM's frame whose ARP sender IP or IPv4 source is bound to another VM (address_guard::holder
//    at now) leaves at all; a DHCPACK from the LAN for a current port's MAC does not bind its
//    yiaddr to it for the lease; claims are reported more often than once a second;
//  * in translate mode a frame for the uplink that translate_outbound forwards does not have the
//    uplink's MAC as its Ethernet source; a frame translate_inbound delivers to one VM does not
//    have that VM's MAC as its destination (a group frame, a broadcast DHCP reply for a VM that
//    asked for one, keeps its group destination, which lan_uplink then sets to the VM's MAC, as
//    the harness does); the translator's VM table or the uplink
//    state's VM list differ from the ports' MACs;
//  * a counter differs from the model: frames in, unknown-port drops, uplink frames in and out,
//    undersized uplink frames, frames to the gateway (each one to the uplink: a bridge has no
//    service that takes a frame), replies (none), each port's frames out;
//  * a port is refused a free custom MAC or given one another port holds; a drawn MAC is one a
//    collision report said the LAN uses.
//
// fuzz/corpus/bridge holds small programs (a DHCP exchange in each mode, a VM claiming another's
// bound address, LAN unicast and broadcast, super-frames).

#include <ankanet/bridge.hpp>
#include <ankanet/clock.hpp>
#include <ankanet/network.hpp>

#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/dhcp.hpp>
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
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace ankanet;
using namespace std::chrono_literals;
using fuzz::input_reader;
using wire::const_bytes;
using bytes = std::vector<std::byte>;

[[noreturn]] void violated(const char* what, int line) {
    std::fprintf(stderr, "bridge_fuzz.cpp:%d: invariant violated: %s\n", line, what);
    __builtin_trap();
}
#define REQUIRE(...) ((__VA_ARGS__) ? void(0) : violated(#__VA_ARGS__, __LINE__))

/// What the network reports: claims refused (when), collisions.
struct recorder {
    std::vector<std::chrono::steady_clock::time_point> claims;
    std::vector<mac_address> collisions;
    const manual_clock* clock = nullptr;
    void on(const bridge::address_claim_refused_event&) {
        if (clock != nullptr) claims.push_back(clock->now().steady);
    }
    void on(const mac_collision_event& e) { collisions.push_back(e.mac); }
};

struct fuzz_traits : default_network_traits {
    using clock_type = manual_clock;
    using observer_type = recorder;
    static constexpr std::size_t mac_capacity = 64;
};
using bridge_net = basic_bridge_network<fuzz_traits>;

constexpr std::size_t slot_count = 4;
constexpr std::array<std::size_t, 4> mtus{1500, 576, 1280, 9000};
constexpr mac_address uplink_mac{{0x3c, 0x22, 0xfb, 0x01, 0x02, 0x03}};
constexpr mac_address router_mac{{0x00, 0x11, 0x22, 0x33, 0x44, 0x55}};
constexpr mac_address mac0{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
constexpr mac_address spare_mac{{0x52, 0x54, 0x00, 0x00, 0x00, 0x33}}; // a never-seen slot's
constexpr ipv4_address router_ip{10, 9, 0, 1};
constexpr std::array<ipv4_address, 4> pool{ipv4_address{10, 9, 0, 10}, ipv4_address{10, 9, 0, 11}, ipv4_address{10, 9, 0, 12},
                                           ipv4_address{10, 9, 0, 13}};

l2::host_secret secret() {
    l2::host_secret::bytes_type b{};
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = std::byte{static_cast<unsigned char>(0xa0 + i)};
    return l2::host_secret{b};
}
l2::vm_uuid uuid() {
    l2::vm_uuid::bytes_type b{};
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = std::byte{static_cast<unsigned char>(0x10 + i)};
    return l2::vm_uuid{b};
}

wire::mutable_bytes span(bytes& b) { return {b.data(), b.size()}; }
bool equal(const_bytes a, const_bytes b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}
mac_address destination_of(const_bytes f) { return mac_address::from_bytes(f.subspan(wire::ethernet::field::destination)); }
mac_address source_of(const_bytes f) { return mac_address::from_bytes(f.subspan(wire::ethernet::field::source)); }

/// A UDP datagram in IPv4 in Ethernet, checksums filled (UDP's left zero when asked).
bytes udp_frame(mac_address eth_destination, mac_address eth_source, ipv4_address source, ipv4_address destination,
                std::uint16_t source_port, std::uint16_t destination_port, const bytes& payload, bool no_checksum = false) {
    bytes frame(wire::ethernet::header_len + wire::ipv4::header_len + wire::udp::header_len + payload.size());
    wire::ethernet::repr{eth_source, eth_destination, wire::ethernet::ethertype::ipv4, std::nullopt}.emit(span(frame));
    auto ip = span(frame).subspan(wire::ethernet::header_len);
    std::copy(payload.begin(), payload.end(), ip.begin() + wire::ipv4::header_len + wire::udp::header_len);
    REQUIRE(!wire::udp::repr{source_port, destination_port, payload.size()}.emit(ip.subspan(wire::ipv4::header_len), source,
                                                                                destination));
    if (no_checksum) wire::store_be16(ip.subspan(wire::ipv4::header_len), 6, 0);
    wire::ipv4::repr header;
    header.source = source;
    header.destination = destination;
    header.protocol = wire::ipv4::protocol::udp;
    header.payload_len = wire::udp::header_len + payload.size();
    REQUIRE(!header.emit(ip));
    return frame;
}

/// A BOOTP message: op, xid, ciaddr, yiaddr, chaddr, then the DHCP options given (type first).
bytes bootp(std::uint8_t op, std::uint32_t xid, ipv4_address ciaddr, ipv4_address yiaddr, mac_address chaddr,
            const std::vector<std::uint8_t>& options) {
    bytes m(240 + options.size() + 1);
    const auto put = [&](std::size_t at, std::uint8_t v) { m[at] = std::byte{v}; };
    put(0, op);
    put(1, 1);
    put(2, 6);
    for (std::size_t i = 0; i < 4; ++i) put(4 + i, static_cast<std::uint8_t>(xid >> (24 - 8 * i)));
    for (std::size_t i = 0; i < 4; ++i) put(12 + i, ciaddr.octets()[i]);
    for (std::size_t i = 0; i < 4; ++i) put(16 + i, yiaddr.octets()[i]);
    for (std::size_t i = 0; i < 6; ++i) put(28 + i, chaddr.octets()[i]);
    const std::uint8_t cookie[] = {0x63, 0x82, 0x53, 0x63};
    for (std::size_t i = 0; i < 4; ++i) put(236 + i, cookie[i]);
    for (std::size_t i = 0; i < options.size(); ++i) put(240 + i, options[i]);
    put(240 + options.size(), 255);
    return m;
}

/// Makes the frame's checksums right (fuzz/support/checksum_repair.hpp).
void repair(bytes& frame) { ankanet::fuzz::repair_checksums(frame); }

/// Puts `address` where a frame claims or seeks one: the ARP sender (claim) or target IP, else
/// the IPv4 source (claim) or destination. Untagged frames only.
void set_address(bytes& frame, ipv4_address address, bool claim) {
    if (frame.size() < wire::ethernet::header_len) return;
    const auto type = wire::load_be16(const_bytes{frame}, wire::ethernet::field::ethertype);
    std::size_t at = 0;
    if (type == wire::ethernet::ethertype::arp) at = wire::ethernet::header_len + (claim ? 14 : 24);
    else if (type == wire::ethernet::ethertype::ipv4) at = wire::ethernet::header_len + (claim ? 12 : 16);
    else return;
    if (frame.size() < at + 4) return;
    for (std::size_t i = 0; i < 4; ++i) frame[at + i] = std::byte{address.octets()[i]};
}

struct slot_model {
    std::optional<port_handle> handle;
    std::vector<port_handle> stale;
    std::optional<mac_address> last_mac; // the current MAC, else the last one it had
    bool up = true;
    std::uint64_t frames_out = 0;
    unsigned adds = 0;
};

struct emitted {
    port_handle to;
    bytes frame;
    wire::offload meta;
};

class harness;

/// The pure core's emit: an offload_emitter, so super-frames come out whole with their metadata.
struct collector {
    harness* h;
    void operator()(port_handle to, const_bytes frame) const;
    void operator()(port_handle to, const_bytes frame, const wire::offload& meta) const;
};

class harness {
public:
    explicit harness(std::uint8_t setup)
        : translate_((setup & 1u) != 0), isolated_((setup & 2u) != 0), mtu_(mtus[(setup >> 2) & 3u]) {
        state_->mode = translate_ ? bridge::mac_mode::translate : bridge::mac_mode::direct;
        if (translate_) state_->translator.emplace(uplink_mac);
        network_config config;
        config.mtu = mtu_;
        config.isolate = isolated_;
        config.mac_secret = secret();
        config.gateway_mac = mac_address{}; // as make_bridge_network: no gateway of its own
        std::array<std::byte, 16> key{};
        for (std::size_t i = 0; i < key.size(); ++i) key[i] = std::byte{static_cast<unsigned char>(i * 7 + 1)};
        config.switch_hash_key = key;
        net_ = std::make_unique<bridge_net>(std::move(config), bridge::port_tracker{state_}, bridge::address_guard{});
        net_->observer().clock = &net_->clock();
        for (std::size_t k = 0; k < slot_count; ++k) add(k);
        check_state();
    }

    void run(input_reader& in) {
        std::size_t steps = 0;
        while (!in.done() && steps++ < 128) {
            switch (in.byte() % 8u) {
            case 0:
            case 1: vm_frame_op(in); break;
            case 2: lan_frame_op(in); break;
            case 3: dhcp_reply_op(in); break;
            case 4: dhcp_client_op(in); break;
            case 5: {
                const unsigned v = in.byte();
                auto& clock = net_->clock();
                if (v < 128) clock.advance(std::chrono::seconds{v});
                else if (v < 200) clock.advance(std::chrono::minutes{v - 127});
                else clock.advance(std::chrono::hours{v - 199});
                break;
            }
            case 6: {
                const std::uint8_t b = in.byte();
                const std::size_t k = b % slot_count;
                if (b & 0x80u) {
                    remove(k);
                    add(k);
                } else if (slots_[k].handle) {
                    remove(k);
                } else {
                    add(k);
                }
                break;
            }
            default: {
                const std::uint8_t b = in.byte();
                set_link(b % slot_count, (b & 0x80u) != 0);
                if (b & 0x40u) net_->poll(now());
                break;
            }
            }
            check_state();
        }
    }

    // --- emit ------------------------------------------------------------------------------------

    void on_emit(port_handle to, const_bytes frame, const wire::offload& meta) {
        REQUIRE(frame.size() >= wire::ethernet::header_len);
        REQUIRE(frame.size() <= (meta.is_gso() ? wire::offload::max_frame_len : backend::max_frame_len(mtu_)));
        if (to == bridge_net::uplink_port()) {
            REQUIRE(from_vm_.has_value()); // a LAN frame never goes back to the LAN
        } else {
            REQUIRE(net_->name(to).has_value() && net_->link_up(to)); // a current port, its link up
            REQUIRE(to != from_vm_);                                  // never back where it came from
            const auto k = slot_of(to);
            REQUIRE(k.has_value());
            ++slots_[*k].frames_out;
        }
        out_.push_back(emitted{to, bytes(frame.begin(), frame.end()), meta});
    }

private:
    network_time now() { return net_->clock().now(); }
    std::chrono::steady_clock::time_point steady() { return net_->clock().now().steady; }

    // --- ports -------------------------------------------------------------------------------------

    port_mac policy_of(std::size_t k) const {
        switch (k) {
        case 0: return port_mac::custom(mac0);
        case 1: return port_mac::random();
        case 2: return port_mac::stable(uuid());
        default: return port_mac::from_first_frame();
        }
    }

    std::optional<std::size_t> holder_slot(const mac_address& mac, std::size_t except = slot_count) const {
        for (std::size_t k = 0; k < slot_count; ++k) {
            if (k != except && slots_[k].handle && net_->mac(*slots_[k].handle) == mac) return k;
        }
        return std::nullopt;
    }

    std::optional<std::size_t> slot_of(port_handle h) const {
        for (std::size_t k = 0; k < slot_count; ++k) {
            if (slots_[k].handle == h) return k;
        }
        return std::nullopt;
    }

    void add(std::size_t k) {
        slot_model& s = slots_[k];
        if (s.handle) return;
        const std::string name = "slot" + std::to_string(k) + "-" + std::to_string(s.adds++);
        const std::size_t collisions = net_->observer().collisions.size();
        auto port = net_->add_port(name, policy_of(k));
        if (k == 0 && holder_slot(mac0)) {
            REQUIRE(!port.has_value()); // another port (a first-frame one) holds it
            return;
        }
        if (k != 0 && k != 3 && !port) return; // a drawn MAC's space exhausted: allowed, not expected
        REQUIRE(port.has_value());
        s.handle = *port;
        s.up = true;
        s.frames_out = 0;
        const auto mac = net_->mac(*port);
        if (k == 3) {
            REQUIRE(!mac.has_value());
            return;
        }
        REQUIRE(mac && mac->is_unicast() && !holder_slot(*mac, k));
        if (k == 0) REQUIRE(*mac == mac0);
        // A drawn MAC the LAN was seen to use is held for the LAN, and another drawn.
        const auto& seen = net_->observer().collisions;
        for (std::size_t i = collisions; i < seen.size(); ++i) {
            REQUIRE(seen[i] != *mac && net_->registry().contains(seen[i]));
        }
        s.last_mac = mac;
    }

    void remove(std::size_t k) {
        slot_model& s = slots_[k];
        if (!s.handle) {
            REQUIRE(net_->remove_port(stale_handle(k)) == l2::switch_errc::unknown_port);
            return;
        }
        const auto mac = net_->mac(*s.handle);
        REQUIRE(!net_->remove_port(*s.handle));
        REQUIRE(!net_->name(*s.handle));
        if (mac) {
            // The VM gives up its bindings as it leaves.
            for (const auto& a : pool) REQUIRE(guard().holder(a, steady()) != mac);
        }
        gone(k);
    }

    void gone(std::size_t k) {
        slot_model& s = slots_[k];
        s.stale.push_back(*s.handle);
        if (s.stale.size() > 4) s.stale.erase(s.stale.begin());
        s.handle.reset();
    }

    port_handle stale_handle(std::size_t k) const {
        return slots_[k].stale.empty() ? port_handle::make(static_cast<std::uint16_t>(100 + k), 7) : slots_[k].stale.back();
    }

    void set_link(std::size_t k, bool up) {
        slot_model& s = slots_[k];
        if (!s.handle) {
            REQUIRE(net_->set_link(stale_handle(k), up) == l2::switch_errc::unknown_port);
            return;
        }
        REQUIRE(!net_->set_link(*s.handle, up));
        s.up = up;
    }

    mac_address slot_mac(std::uint8_t selector) const {
        const auto& s = slots_[selector % slot_count];
        if (s.handle) {
            if (const auto m = net_->mac(*s.handle)) return *m;
        }
        return s.last_mac.value_or(spare_mac);
    }

    const bridge::address_guard& guard() const { return net_->service<bridge::address_guard>(); }

    // --- VM frames -----------------------------------------------------------------------------------

    void vm_frame_op(input_reader& in) {
        const std::uint8_t p = in.byte();
        const std::uint8_t flags = in.byte();
        const std::size_t k = (p & 0x7fu) % slot_count;
        std::optional<mac_address> source;
        std::optional<mac_address> destination;
        switch (flags & 3u) {
        case 1: source = slot_mac(static_cast<std::uint8_t>(k)); break;
        case 2: source = slot_mac(in.byte()); break;
        case 3: source = router_mac; break;
        default: break;
        }
        switch ((flags >> 2) & 3u) {
        case 1: destination = router_mac; break;
        case 2: destination = mac_address::broadcast(); break;
        case 3: destination = slot_mac(in.byte()); break;
        default: break;
        }
        std::optional<ipv4_address> claim;
        if (flags & 0x40u) claim = pool[in.byte() % pool.size()];
        bytes frame = in.frame((source || destination) ? wire::ethernet::header_len : 0);
        if (destination) destination->store(frame, wire::ethernet::field::destination);
        if (source) source->store(frame, wire::ethernet::field::source);
        constexpr std::size_t arp_sender_mac = wire::ethernet::header_len + 8;
        if ((flags & 0x20u) && frame.size() >= arp_sender_mac + 6 &&
            wire::load_be16(const_bytes{frame}, wire::ethernet::field::ethertype) == wire::ethernet::ethertype::arp) {
            std::memmove(frame.data() + arp_sender_mac, frame.data() + wire::ethernet::field::source, 6);
        }
        if (claim) set_address(frame, *claim, true);
        if (flags & 0x10u) repair(frame);
        const port_handle handle = (p & 0x80u) || !slots_[k].handle ? stale_handle(k) : *slots_[k].handle;
        vm_input(k, handle, frame);
    }

    void dhcp_client_op(input_reader& in) {
        const std::size_t k = in.byte() % slot_count;
        const unsigned type = in.byte() % 4u;
        const std::uint32_t xid = in.be32();
        const mac_address mac = slot_mac(static_cast<std::uint8_t>(k));
        std::vector<std::uint8_t> options{53, 1, static_cast<std::uint8_t>(type == 0 ? 1 : 3)};
        ipv4_address ciaddr{};
        if (type >= 2) {
            const ipv4_address a = pool[in.byte() % pool.size()];
            if (type == 2) {
                options.insert(options.end(), {50, 4, a.octets()[0], a.octets()[1], a.octets()[2], a.octets()[3]});
            } else {
                ciaddr = a;
            }
        }
        const bytes message = bootp(1, xid, ciaddr, {}, mac, options);
        const bytes frame = type == 3 ? udp_frame(router_mac, mac, ciaddr, router_ip, 68, 67, message)
                                      : udp_frame(mac_address::broadcast(), mac, ipv4_address{}, ipv4_address::broadcast(), 68, 67, message);
        if (slots_[k].handle) vm_input(k, *slots_[k].handle, frame);
    }

    void vm_input(std::size_t k, port_handle handle, const bytes& frame) {
        const network_counters before = net_->stats();
        const bool known = slots_[k].handle == handle;
        const std::optional<mac_address> mac_before = known ? net_->mac(handle) : std::nullopt;
        // The address the frame claims, and who holds it (bindings do not change during input).
        const auto parsed = wire::parsed_frame::parse(const_bytes{frame});
        std::optional<ipv4_address> claimed;
        if (parsed.is_arp()) claimed = parsed.arp->sender_ip;
        else if (parsed.is_ipv4()) claimed = parsed.ip_source;
        const std::optional<mac_address> bound = claimed ? guard().holder(*claimed, steady()) : std::nullopt;
        const auto refused_before = guard().stats().arp_refused + guard().stats().ip_refused;
        const mac_address destination = frame.size() >= wire::ethernet::header_len ? destination_of(const_bytes{frame}) : mac_address{};
        const bool unicast_known = !destination.is_multicast() && net_->learning_switch().lookup(destination, steady()).has_value();

        out_.clear();
        from_vm_ = handle;
        net_->input(handle, const_bytes{frame}, now(), collector{this});
        from_vm_.reset();
        const network_counters& after = net_->stats();

        if (!known) {
            REQUIRE(after.dropped_unknown_port == before.dropped_unknown_port + 1 && after.frames_in == before.frames_in);
            REQUIRE(out_.empty());
            return;
        }
        ++frames_in_;
        // A from_first_frame port refused the MAC of its first frame is detached.
        if (!net_->name(handle)) {
            REQUIRE(!mac_before && out_.empty());
            gone(k);
            return;
        }
        const auto mac = net_->mac(handle);
        if (mac) slots_[k].last_mac = mac;
        if (!mac_before && mac) REQUIRE(parsed.valid && *mac == parsed.source); // the first proper frame's source

        // Address guard: a claim on another VM's bound address never leaves, and is counted.
        const auto refused = guard().stats().arp_refused + guard().stats().ip_refused - refused_before;
        REQUIRE(refused <= 1);
        if (bound && (!mac || *bound != *mac)) {
            REQUIRE(out_.empty());
            const bool inspected = slots_[k].up && mac && frame.size() >= wire::ethernet::header_len &&
                                   frame.size() <= backend::max_frame_len(mtu_);
            REQUIRE(refused == (inspected ? 1u : 0u));
        } else {
            REQUIRE(refused == 0);
        }

        std::size_t to_uplink = 0;
        for (const auto& e : out_) {
            // The frame itself, plain, from its port's own MAC (the switch takes no other source).
            REQUIRE(equal(const_bytes{e.frame}, const_bytes{frame}) && e.meta.is_plain());
            REQUIRE(mac && source_of(const_bytes{e.frame}) == *mac);
            if (e.to == bridge_net::uplink_port()) {
                ++to_uplink;
                if (translate_) outbound(e.frame);
            } else {
                REQUIRE(!isolated_); // an isolated VM reaches the LAN only
            }
            // A unicast frame for a MAC the switch knows goes to its port alone, and reaches a VM
            // only as that VM's own MAC; a VM's frame never comes back to it.
            if (unicast_known) {
                REQUIRE(out_.size() == 1);
                if (e.to != bridge_net::uplink_port()) REQUIRE(net_->mac(e.to) == destination);
            }
        }
        REQUIRE(to_uplink <= 1);
        uplink_out_ += to_uplink;
        for (std::size_t i = 0; i < out_.size(); ++i) {
            for (std::size_t j = i + 1; j < out_.size(); ++j) REQUIRE(out_[i].to != out_[j].to); // once each
        }
    }

    /// lan_uplink::send in translate mode: a translated copy goes to the LAN.
    void outbound(const bytes& frame) {
        bytes copy = frame;
        const auto result = state_->translator->translate_outbound(span(copy));
        if (result.verdict == l2::translate_verdict::forward) {
            REQUIRE(source_of(const_bytes{copy}) == uplink_mac); // the LAN sees the uplink's MAC only
        } else {
            REQUIRE(result.verdict == l2::translate_verdict::drop);
        }
    }

    // --- LAN frames ----------------------------------------------------------------------------------

    void lan_frame_op(input_reader& in) {
        const std::uint8_t flags = in.byte();
        std::optional<mac_address> source;
        std::optional<mac_address> destination;
        switch (flags & 3u) {
        case 1: source = router_mac; break;
        case 2: source = slot_mac(in.byte()); break;
        case 3: source = uplink_mac; break;
        default: break;
        }
        switch ((flags >> 2) & 3u) {
        case 1: destination = uplink_mac; break;
        case 2: destination = mac_address::broadcast(); break;
        case 3: destination = slot_mac(in.byte()); break;
        default: break;
        }
        std::optional<ipv4_address> target;
        if (flags & 0x80u) target = pool[in.byte() % pool.size()];
        const unsigned offload = (flags >> 5) & 3u;
        std::uint16_t mss = 0;
        if (offload == 2) mss = static_cast<std::uint16_t>(in.byte() << 8 | in.byte());
        bytes frame = in.frame((source || destination) ? wire::ethernet::header_len : 0);
        if (destination) destination->store(frame, wire::ethernet::field::destination);
        if (source) source->store(frame, wire::ethernet::field::source);
        if (target) set_address(frame, *target, false);
        if (flags & 0x10u) repair(frame);

        wire::offload meta;
        if (offload == 1 || offload == 2) meta = metadata_for(frame, offload == 2, mss);
        if (frame.size() > (meta.is_gso() ? wire::offload::max_frame_len : backend::max_frame_len(mtu_))) return;
        lan_input(std::move(frame), meta);
    }

    /// Offload metadata for an untagged IPv4 UDP or TCP frame, as a packet socket reports it (none
    /// for anything else): the checksum left to finish, or a TCPv4 super-frame.
    static wire::offload metadata_for(const bytes& frame, bool gso, std::uint16_t mss) {
        constexpr std::size_t ip_at = wire::ethernet::header_len;
        if (frame.size() < ip_at + wire::ipv4::header_len ||
            wire::load_be16(const_bytes{frame}, wire::ethernet::field::ethertype) != wire::ethernet::ethertype::ipv4) {
            return {};
        }
        const std::size_t ihl = (std::to_integer<std::size_t>(frame[ip_at]) & 0x0fu) * 4;
        const auto protocol = std::to_integer<std::uint8_t>(frame[ip_at + 9]);
        const std::size_t l4 = ip_at + ihl;
        if (ihl < wire::ipv4::header_len) return {};
        if (protocol == wire::ipv4::protocol::tcp && frame.size() >= l4 + wire::tcp::header_len) {
            const std::size_t headers = l4 + (std::to_integer<std::size_t>(frame[l4 + 12]) >> 4) * 4;
            if (gso && mss != 0 && headers <= frame.size()) {
                const auto meta = wire::offload::tcpv4_gso(l4, headers, mss);
                return meta.validate() ? wire::offload{} : meta;
            }
            wire::offload meta;
            meta.needs_csum = true;
            meta.csum_start = static_cast<std::uint16_t>(l4);
            meta.csum_offset = wire::tcp::field::checksum;
            return meta;
        }
        if (protocol == wire::ipv4::protocol::udp && frame.size() >= l4 + wire::udp::header_len) {
            wire::offload meta;
            meta.needs_csum = true;
            meta.csum_start = static_cast<std::uint16_t>(l4);
            meta.csum_offset = 6;
            return meta;
        }
        return {};
    }

    void dhcp_reply_op(input_reader& in) {
        const std::uint8_t c = in.byte();
        const std::uint8_t y = in.byte();
        const std::uint8_t t = in.byte();
        std::optional<std::uint32_t> lease;
        if (t & 4u) lease = in.be32();
        const std::uint32_t xid = in.be32();
        mac_address chaddr;
        switch (c % 8u) {
        case 0: case 1: case 2: case 3: chaddr = slot_mac(c); break;
        case 4: chaddr = uplink_mac; break;
        case 5: chaddr = router_mac; break;
        default: chaddr = in.mac(); break;
        }
        ipv4_address yiaddr = y < 128 ? pool[y % pool.size()] : ipv4_address{in.be32()};
        const std::uint8_t kind = (t & 3u) == 2 ? 2 : (t & 3u) == 3 ? 6 : 5;
        std::vector<std::uint8_t> options{53, 1, kind, 54, 4, 10, 9, 0, 1};
        if (lease) {
            options.insert(options.end(), {51, 4, static_cast<std::uint8_t>(*lease >> 24), static_cast<std::uint8_t>(*lease >> 16),
                                           static_cast<std::uint8_t>(*lease >> 8), static_cast<std::uint8_t>(*lease)});
        }
        const bytes message = bootp(2, xid, {}, kind == 6 ? ipv4_address{} : yiaddr, chaddr, options);
        const bool unicast = (t & 8u) != 0;
        bytes frame = udp_frame(unicast ? chaddr : mac_address::broadcast(), router_mac, router_ip,
                                unicast ? yiaddr : ipv4_address::broadcast(), 67, 68, message, (t & 16u) != 0);
        lan_input(std::move(frame), {});
    }

    void lan_input(bytes frame, wire::offload meta) {
        if (translate_) {
            // lan_uplink::admit: a plain frame's checksum finished, then translated in place.
            if (meta.needs_csum && !meta.is_gso()) {
                if (wire::complete_checksum(span(frame), meta)) return;
                meta = {};
            }
            const mac_address before = frame.size() >= wire::ethernet::header_len ? destination_of(const_bytes{frame}) : mac_address{};
            const bool group = before.is_multicast();
            const auto result = state_->translator->translate_inbound(span(frame));
            if (result.verdict == l2::translate_verdict::drop) return;
            if (result.verdict == l2::translate_verdict::deliver) {
                // For that VM: addressed to it — or, a group frame (a broadcast DHCP reply for the VM's
                // transaction, the VM having asked for a broadcast), left as it was, which lan_uplink
                // then addresses to the VM, so that the switch does not flood it to the others.
                REQUIRE(result.vm.has_value());
                REQUIRE(destination_of(const_bytes{frame}) == *result.vm ||
                        (group && destination_of(const_bytes{frame}) == before));
                wire::ethernet::packet<wire::mutable_bytes>{span(frame)}.set_destination(*result.vm);
            }
        }
        ++lan_in_;
        const network_counters before = net_->stats();
        out_.clear();
        net_->uplink_input(const_bytes{frame}, meta, now(), collector{this});
        const network_counters& after = net_->stats();
        REQUIRE(after.uplink_frames_in == before.uplink_frames_in + 1);
        REQUIRE(after.uplink_frames_out == before.uplink_frames_out && after.frames_in == before.frames_in);
        const auto not_for_vm = after.uplink_not_for_vm - before.uplink_not_for_vm;
        if (frame.size() < wire::ethernet::header_len) {
            ++lan_runts_;
            REQUIRE(out_.empty() && not_for_vm == 0);
            return;
        }
        // Sourced from a VM's MAC: a LAN device using or forging it; dropped, counted, nothing learned.
        const auto source_vm_drops = after.uplink_source_is_vm - before.uplink_source_is_vm;
        if (holder_slot(source_of(const_bytes{frame}))) {
            REQUIRE(out_.empty() && not_for_vm == 0 && source_vm_drops == 1);
            return;
        }
        REQUIRE(source_vm_drops == 0);
        const mac_address destination = destination_of(const_bytes{frame});
        for (const auto& e : out_) {
            REQUIRE(equal(const_bytes{e.frame}, const_bytes{frame}) && e.meta == meta);
        }
        for (std::size_t i = 0; i < out_.size(); ++i) {
            for (std::size_t j = i + 1; j < out_.size(); ++j) REQUIRE(out_[i].to != out_[j].to); // once each
        }
        if (destination.is_multicast()) {
            REQUIRE(not_for_vm == 0);
        } else {
            REQUIRE(out_.size() <= 1);
            if (!out_.empty()) REQUIRE(net_->mac(out_.front().to) == destination); // only its own VM
            if (!holder_slot(destination)) {
                REQUIRE(out_.empty() && not_for_vm == 1); // nobody's: dropped and counted, not flooded
            } else {
                REQUIRE(not_for_vm == 0 || out_.empty());
            }
        }
        check_binding(const_bytes{frame});
    }

    /// A DHCPACK for a current port's MAC (after translation: the VM's own) binds its yiaddr to it.
    void check_binding(const_bytes frame) {
        const auto parsed = wire::parsed_frame::parse(frame);
        if (!parsed.is_ipv4() || !parsed.has_ports || parsed.is_fragment() || parsed.protocol != wire::ipv4::protocol::udp ||
            parsed.source_port != 67 || parsed.destination_port != 68) {
            return;
        }
        const wire::udp::packet<const_bytes> udp{parsed.ip_payload()};
        if (udp.check_len()) return;
        const auto dhcp = wire::dhcp::packet<const_bytes>::checked(udp.payload());
        if (!dhcp || dhcp->op() != wire::dhcp::boot_reply) return;
        const auto type = dhcp->message_type();
        if (!type || !*type || **type != wire::dhcp::message_type::ack) return;
        const auto vm = dhcp->client_mac();
        const auto address = dhcp->yiaddr();
        if (!vm || !holder_slot(*vm) || address.is_unspecified() || address.is_broadcast() || address.is_multicast()) return;
        std::chrono::seconds lease = bridge::address_guard::default_lease;
        if (const auto given = dhcp->lease_time(); given && *given) lease = std::min(bridge::address_guard::longest_lease, std::chrono::seconds{**given});
        if (lease.count() == 0) return;
        REQUIRE(guard().holder(address, steady()) == *vm);
        REQUIRE(!guard().holder(address, steady() + lease)); // until the lease ends
    }

    // --- state ---------------------------------------------------------------------------------------

    void check_state() {
        const auto& n = net_->stats();
        REQUIRE(n.uplink_frames_in == lan_in_);
        REQUIRE(n.uplink_frames_out == uplink_out_);
        REQUIRE(n.frames_to_gateway == n.uplink_frames_out); // no bridge service takes a frame
        REQUIRE(n.gateway_unclaimed == 0 && n.replies == 0);
        REQUIRE(n.uplink_dropped_bad_size == lan_runts_);
        REQUIRE(n.frames_in == frames_in_);
        std::vector<mac_address> macs;
        std::size_t ports = 0;
        for (std::size_t k = 0; k < slot_count; ++k) {
            const slot_model& s = slots_[k];
            for (const auto& old : s.stale) REQUIRE(!net_->name(old) && !net_->stats(old));
            if (!s.handle) continue;
            ++ports;
            const auto c = net_->stats(*s.handle);
            REQUIRE(c && c->frames_out == s.frames_out);
            REQUIRE(net_->link_up(*s.handle) == s.up);
            if (const auto m = net_->mac(*s.handle)) macs.push_back(*m);
        }
        REQUIRE(net_->port_count() == ports);
        // The uplink's VM list (and the translator's table) follow the ports.
        std::vector<mac_address> listed = state_->vms;
        std::sort(listed.begin(), listed.end());
        std::sort(macs.begin(), macs.end());
        REQUIRE(listed == macs);
        if (translate_) {
            std::size_t translatable = 0;
            for (const auto& m : macs) translatable += m != uplink_mac ? 1u : 0u;
            REQUIRE(state_->translator->vm_count() == translatable);
        }
        // Claims are reported at most once a second.
        const auto& claims = net_->observer().claims;
        for (std::size_t i = 1; i < claims.size(); ++i) REQUIRE(claims[i] - claims[i - 1] >= 1s);
    }

    bool translate_;
    bool isolated_;
    std::size_t mtu_;
    std::shared_ptr<bridge::uplink_state> state_ = std::make_shared<bridge::uplink_state>();
    std::unique_ptr<bridge_net> net_;
    std::array<slot_model, slot_count> slots_{};
    std::vector<emitted> out_;
    std::optional<port_handle> from_vm_; // the ingress port of the VM frame being handled
    std::uint64_t frames_in_ = 0;
    std::uint64_t lan_in_ = 0;
    std::uint64_t lan_runts_ = 0;
    std::uint64_t uplink_out_ = 0;
};

void collector::operator()(port_handle to, const_bytes frame) const { h->on_emit(to, frame, wire::offload{}); }
void collector::operator()(port_handle to, const_bytes frame, const wire::offload& meta) const { h->on_emit(to, frame, meta); }

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    input_reader in{data, size};
    harness h{in.byte()};
    h.run(in);
    return 0;
}
