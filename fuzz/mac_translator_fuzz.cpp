// Fuzz target for ankanet::l2::basic_mac_translator.
//
// The input is a program run against one translator with small tables (4 VMs, 8 learned
// addresses, 4 DHCP transactions, so every table fills and evicts). Each step is an opcode byte
// and its operands; a missing byte reads as 0:
//
//   op % 4   operands                              what
//   0        mac                                   add_vm(mac)
//   1        mac                                   remove_vm(mac)
//   2        flags [mac] [yi type] len16 bytes     translate_outbound() of the len16 bytes (cut to
//                                                  what is left); flags bit 0: Ethernet source :=
//                                                  mac, bit 1: repair the IPv4 and UDP checksums
//                                                  first, bit 2: round trip (below) with the
//                                                  server's yiaddr `yi` and reply kind `type`
//   3        flags [mac] [k] len16 bytes           translate_inbound() of the bytes; bit 0:
//                                                  Ethernet destination := mac, bit 1: repair,
//                                                  bit 2: aim a DHCP reply at the k-th outstanding
//                                                  transaction (its xid, chaddr := the outside MAC)
//   mac: % 16, 0-4 five VM MACs, 5 the outside MAC, 6 a server's, 7 a peer's, 8 broadcast,
//   9 IPv4 multicast, 10 IPv6 multicast, 11 zero, 12-15 six more input bytes.
//
// Every translation is checked against a reference model written from the header's theory of
// operation: the VM, learned-address and transaction tables (least recently learned evicted; a
// VM's claim on another VM's address refused, a server's ACK moving it),
// and for each frame the verdict, the reason, the VM, every counter, and the bytes the frame must
// hold afterwards: exactly the documented rewrites and nothing else. Where a rewrite patches an
// IPv4 header or UDP checksum incrementally, the checksum must verify afterwards exactly when it
// did before (and a zero UDP checksum stays zero). ASan sees each frame in a buffer of its own
// size.
//
// Round trips, where the header promises them ("VM -> outside -> VM restores the frame"): after a
// VM's frame F went out as F', the answer a peer would send to F' is translated inbound and must
// come out byte for byte as the answer the peer would have sent to F, delivered to that VM:
//  * a DHCP client message: the server's OFFER, ACK or NAK (RFC 2131 §4.1 addressing: NAK
//    broadcast; ciaddr set: unicast to it; broadcast flag: broadcast; else unicast to yiaddr and
//    chaddr), with chaddr and the broadcast flag put back and a broadcast turned back into the
//    unicast the VM expected;
//  * an ARP packet whose sender is the VM: the target's ARP reply;
//  * any other IPv4 datagram from an address the VM owns: a reply with the addresses swapped.
#include <ankanet/l2/mac_translator.hpp>

#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/checksum.hpp>
#include <ankanet/wire/dhcp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/udp.hpp>

#include "support/input_reader.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace {

using namespace ankanet;
using fuzz::input_reader;
using l2::translate_reason;
using l2::translate_verdict;
using wire::const_bytes;
using wire::ipv4_address;
using wire::mac_address;
using wire::mutable_bytes;
namespace dhcp = wire::dhcp;
using bytes = std::vector<std::byte>;

void require(bool condition) {
    if (!condition) __builtin_trap();
}

using translator = l2::basic_mac_translator<4, 8, 4>;


constexpr mac_address outside{{0x3c, 0x22, 0xfb, 0x01, 0x02, 0x03}};
constexpr mac_address server_mac{{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}};
constexpr mac_address peer_mac{{0x00, 0x1c, 0x42, 0xaa, 0xaa, 0xaa}};
constexpr ipv4_address server_ip{192, 168, 64, 1};
constexpr std::array<mac_address, 8> pool{{
    mac_address{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}}, // the captured DHCP clients' MAC
    mac_address{{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}},
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x00, 0x0a}},
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x00, 0x0b}},
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x00, 0x0c}},
    outside,
    server_mac,
    peer_mac,
}};

// Selectors 8-11 of read_mac: broadcast, IPv4 and IPv6 multicast, the zero MAC.
constexpr std::array<mac_address, 4> special_macs{{
    mac_address::broadcast(),
    mac_address{{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}},
    mac_address{{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}},
    mac_address{},
}};

mac_address read_mac(input_reader& in) { return in.mac(pool, special_macs, 16); }

ipv4_address read_ip(input_reader& in) {
    switch (in.byte() % 8u) {
    case 0: return ipv4_address{192, 168, 64, 107}; // what dnsmasq handed the captured clients
    case 1: return ipv4_address{192, 168, 64, 108};
    case 2: return ipv4_address{192, 168, 64, 109};
    case 3: return ipv4_address::any();
    case 4: return ipv4_address::broadcast();
    case 5: return ipv4_address{224, 0, 0, 1};
    case 6: return ipv4_address::loopback();
    default: return ipv4_address{in.be32()};
    }
}

constexpr bool is_host_address(ipv4_address ip) {
    return !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast() && !ip.is_loopback();
}

// --- views over a frame, as the theory of operation describes its layers -------------------------

/// The layers of a frame, each set only when it and every layer below it check out.
struct layers {
    std::size_t eth_len = 0; ///< header (and tag) length; 0 when the Ethernet header is short
    std::uint16_t type = 0;
    bool arp = false;        ///< 28 bytes of IPv4-over-Ethernet ARP
    std::size_t ip_at = 0;   ///< 0: no IPv4 datagram that checks out
    std::size_t udp_at = 0;  ///< 0: no unfragmented UDP datagram that checks out
    std::size_t dhcp_at = 0; ///< 0: no DHCP message (header and cookie) in that datagram
};

layers parse(const bytes& frame) {
    layers l;
    const const_bytes all{frame};
    const wire::ethernet::packet<const_bytes> eth{all};
    if (eth.check_len()) return l;
    l.eth_len = eth.header_length();
    l.type = eth.ethertype();
    if (l.type == wire::ethernet::ethertype::arp) {
        l.arp = !wire::arp::packet<const_bytes>{eth.payload()}.check_len();
    } else if (l.type == wire::ethernet::ethertype::ipv4) {
        const wire::ipv4::packet<const_bytes> ip{eth.payload()};
        if (ip.check_len()) return l;
        l.ip_at = l.eth_len;
        if (ip.protocol() != wire::ipv4::protocol::udp || ip.is_fragment()) return l;
        const wire::udp::packet<const_bytes> udp{ip.payload()};
        if (udp.check_len()) return l;
        l.udp_at = l.ip_at + ip.header_length();
        if (dhcp::packet<const_bytes>{udp.payload()}.check_len()) return l;
        l.dhcp_at = l.udp_at + wire::udp::header_len;
    }
    return l;
}

wire::ipv4::packet<const_bytes> ip_of(const bytes& f, const layers& l) { return wire::ipv4::packet<const_bytes>{const_bytes{f}.subspan(l.ip_at)}; }
wire::udp::packet<const_bytes> udp_of(const bytes& f, const layers& l) { return wire::udp::packet<const_bytes>{ip_of(f, l).payload()}; }
dhcp::packet<const_bytes> dhcp_of(const bytes& f, const layers& l) { return dhcp::packet<const_bytes>{udp_of(f, l).payload()}; }
wire::arp::packet<const_bytes> arp_of(const bytes& f, const layers& l) { return wire::arp::packet<const_bytes>{const_bytes{f}.subspan(l.eth_len)}; }

bool ip_checksum_ok(const bytes& f, const layers& l) { return ip_of(f, l).verify_checksum(); }
bool udp_checksum_ok(const bytes& f, const layers& l) {
    const auto ip = ip_of(f, l);
    return udp_of(f, l).verify_checksum(ip.source(), ip.destination());
}
std::uint16_t udp_checksum(const bytes& f, const layers& l) { return udp_of(f, l).checksum(); }

/// Makes the IPv4 header and UDP checksums right where the lengths allow (so mutations get past them).
void repair(bytes& frame) {
    const mutable_bytes all{frame};
    const wire::ethernet::packet<mutable_bytes> eth{all};
    if (eth.check_len() || eth.ethertype() != wire::ethernet::ethertype::ipv4) return;
    wire::ipv4::packet<mutable_bytes> ip{eth.payload()};
    if (ip.check_len()) return;
    ip.fill_checksum();
    if (ip.protocol() != wire::ipv4::protocol::udp || ip.is_fragment()) return;
    wire::udp::packet<mutable_bytes> udp{ip.payload()};
    if (udp.check_len()) return;
    udp.fill_checksum(ip.source(), ip.destination());
}

// --- the reference model ---------------------------------------------------------------------------

struct ip_entry {
    ipv4_address ip;
    mac_address vm;
    std::uint64_t stamp;
};
struct transaction {
    std::uint32_t xid;
    mac_address vm;
    bool client_broadcast;
    std::uint64_t stamp;
};

/// What a translation must do to one frame.
struct expectation {
    translate_verdict verdict = translate_verdict::drop;
    translate_reason reason = translate_reason::none;
    std::optional<mac_address> vm;
    bytes frame;                     ///< the bytes afterwards, checksum fields aside
    bool ip_checksum_patched = false; ///< the IPv4 header checksum follows a rewritten address
    bool udp_checksum_patched = false;
};

class harness {
public:
    void run(input_reader& in) {
        std::size_t steps = 0;
        while (!in.done() && steps++ < 256) {
            switch (in.byte() % 4u) {
            case 0: add_vm(read_mac(in)); break;
            case 1: remove_vm(read_mac(in)); break;
            case 2: outbound_op(in); break;
            default: inbound_op(in); break;
            }
            check_state();
        }
    }

private:
    // Model tables.
    std::optional<std::size_t> find_vm(const mac_address& m) const {
        for (std::size_t i = 0; i < vms_.size(); ++i) {
            if (vms_[i] == m) return i;
        }
        return std::nullopt;
    }
    std::optional<mac_address> owner(ipv4_address ip) const {
        for (const auto& e : ips_) {
            if (e.ip == ip) return e.vm;
        }
        return std::nullopt;
    }
    void learn(ipv4_address ip, const mac_address& vm) {
        if (!is_host_address(ip)) return;
        for (auto& e : ips_) {
            if (e.ip == ip) {
                e = ip_entry{ip, vm, ++clock_};
                return;
            }
        }
        if (ips_.size() < translator::max_ips) {
            ips_.push_back(ip_entry{ip, vm, ++clock_});
            return;
        }
        ++counters_.ip_evictions;
        *std::min_element(ips_.begin(), ips_.end(), [](const auto& a, const auto& b) { return a.stamp < b.stamp; }) =
            ip_entry{ip, vm, ++clock_};
    }
    /// A VM's own claim: learned unless another VM owns the address (only a server's ACK moves it).
    void claim(ipv4_address ip, const mac_address& vm) {
        if (const auto holder = owner(ip); holder && *holder != vm) {
            ++counters_.claims_refused;
            return;
        }
        learn(ip, vm);
    }
    void remember(std::uint32_t xid, const mac_address& vm, bool client_broadcast) {
        for (auto& t : transactions_) {
            if (t.xid == xid) {
                t = transaction{xid, vm, client_broadcast, ++clock_};
                return;
            }
        }
        if (transactions_.size() < translator::max_transactions) {
            transactions_.push_back(transaction{xid, vm, client_broadcast, ++clock_});
            return;
        }
        ++counters_.transaction_evictions;
        *std::min_element(transactions_.begin(), transactions_.end(),
                          [](const auto& a, const auto& b) { return a.stamp < b.stamp; }) =
            transaction{xid, vm, client_broadcast, ++clock_};
    }
    const transaction* find_transaction(std::uint32_t xid) const {
        for (const auto& t : transactions_) {
            if (t.xid == xid) return &t;
        }
        return nullptr;
    }

    l2::add_vm_status model_add_vm(const mac_address& vm) {
        if (!vm.is_unicast() || vm == outside) return l2::add_vm_status::invalid_mac;
        if (find_vm(vm)) return l2::add_vm_status::already_known;
        if (vms_.size() >= translator::max_vms) return l2::add_vm_status::table_full;
        vms_.push_back(vm);
        return l2::add_vm_status::added;
    }

    void add_vm(const mac_address& vm) {
        const auto expected = model_add_vm(vm);
        require(xlate_.add_vm(vm) == expected);
    }

    void remove_vm(const mac_address& vm) {
        const bool known = find_vm(vm).has_value();
        require(xlate_.remove_vm(vm) == known);
        if (!known) return;
        std::erase(vms_, vm);
        std::erase_if(ips_, [&](const ip_entry& e) { return e.vm == vm; });
        std::erase_if(transactions_, [&](const transaction& t) { return t.vm == vm; });
    }

    // --- outbound ----------------------------------------------------------------------------------

    expectation predict_outbound(const bytes& frame) {
        expectation x;
        x.frame = frame;
        const layers l = parse(frame);
        if (l.eth_len == 0) {
            x.reason = translate_reason::malformed;
            ++counters_.outbound_dropped_malformed;
            return x;
        }
        const mac_address source = mac_address::from_bytes(const_bytes{frame}.subspan(wire::ethernet::field::source));
        if (source == outside) { // already ours
            x.verdict = translate_verdict::forward;
            ++counters_.outbound_forwarded;
            return x;
        }
        if (!source.is_unicast()) {
            x.reason = translate_reason::malformed;
            ++counters_.outbound_dropped_malformed;
            return x;
        }
        if (!find_vm(source) && model_add_vm(source) == l2::add_vm_status::table_full) {
            x.reason = translate_reason::table_full;
            ++counters_.outbound_dropped_table_full;
            return x;
        }
        x.verdict = translate_verdict::forward;
        ++counters_.outbound_forwarded;
        x.vm = source;
        const mutable_bytes out{x.frame};
        outside.store(out, wire::ethernet::field::source);

        if (l.arp) {
            const auto arp = arp_of(frame, l);
            bool changed = false;
            if (arp.sender_mac() == source) {
                outside.store(out, l.eth_len + wire::arp::field::sender_mac);
                changed = true;
            }
            if (arp.target_mac() == source) {
                outside.store(out, l.eth_len + wire::arp::field::target_mac);
                changed = true;
            }
            if (changed) ++counters_.arp_rewritten;
            claim(arp.sender_ip(), source);
        } else if (l.dhcp_at != 0) {
            const auto udp = udp_of(frame, l);
            const auto message = dhcp_of(frame, l);
            if (udp.source_port() == dhcp::client_port && udp.destination_port() == dhcp::server_port &&
                message.op() == dhcp::boot_request && message.client_mac() == source) {
                remember(message.xid(), source, message.broadcast());
                outside.store(out, l.dhcp_at + dhcp::field::chaddr);
                wire::store_be16(out, l.dhcp_at + dhcp::field::flags,
                                 static_cast<std::uint16_t>(message.flags() | dhcp::broadcast_flag));
                x.udp_checksum_patched = true;
                ++counters_.dhcp_rewritten;
                claim(message.ciaddr(), source);
                if (const auto requested = message.requested_ip(); requested && *requested) claim(**requested, source);
            }
        }
        return x;
    }

    void outbound_op(input_reader& in) {
        const std::uint8_t flags = in.byte();
        const std::optional<mac_address> source = (flags & 1u) ? std::optional{read_mac(in)} : std::nullopt;
        std::optional<ipv4_address> yiaddr;
        std::uint8_t kind = 0;
        if (flags & 4u) {
            yiaddr = read_ip(in);
            kind = in.byte();
        }
        bytes frame = in.frame();
        if (source && frame.size() >= wire::ethernet::header_len) source->store(frame, wire::ethernet::field::source);
        if (flags & 2u) repair(frame);

        const bytes before = frame;
        const expectation x = predict_outbound(before);
        const auto got = xlate_.translate_outbound(frame);
        require(got.verdict == x.verdict && got.reason == x.reason);
        check_bytes(before, frame, x);
        if (x.vm) {
            // What the VM's frame taught the translator: the ARP sender, DHCP ciaddr and option 50.
            for (const auto& e : ips_) require(xlate_.owner_of(e.ip) == e.vm);
        }
        if (yiaddr && x.vm) round_trip(before, frame, *x.vm, *yiaddr, kind);
    }

    // --- inbound -----------------------------------------------------------------------------------

    expectation predict_inbound(const bytes& frame) {
        expectation x;
        x.frame = frame;
        const layers l = parse(frame);
        auto drop = [&](translate_reason reason) {
            x = expectation{};
            x.frame = frame; // a dropped frame is not touched
            x.reason = reason;
            switch (reason) {
            case translate_reason::unknown_ip: ++counters_.inbound_dropped_unknown_ip; break;
            case translate_reason::unsupported: ++counters_.inbound_dropped_unsupported; break;
            case translate_reason::not_for_us: ++counters_.inbound_dropped_not_for_us; break;
            default: ++counters_.inbound_dropped_malformed; break;
            }
            return x;
        };
        auto deliver = [&](const mac_address& vm) {
            x.verdict = translate_verdict::deliver;
            x.vm = vm;
            ++counters_.inbound_delivered;
            return x;
        };
        if (l.eth_len == 0) return drop(translate_reason::malformed);
        const mutable_bytes out{x.frame};
        const mac_address destination = mac_address::from_bytes(const_bytes{frame});
        const bool to_outside = destination == outside;
        if (!to_outside && !destination.is_multicast()) {
            if (find_vm(destination)) return deliver(destination); // untouched
            return drop(translate_reason::not_for_us);
        }

        std::optional<mac_address> owner_vm;
        bool parsed = false;
        if (l.type == wire::ethernet::ethertype::arp) {
            if (l.arp) {
                parsed = true;
                const auto arp = arp_of(frame, l);
                owner_vm = owner(arp.target_ip());
                if (owner_vm && arp.target_mac() == outside) {
                    owner_vm->store(out, l.eth_len + wire::arp::field::target_mac);
                    ++counters_.arp_rewritten;
                }
            }
        } else if (l.type == wire::ethernet::ethertype::ipv4) {
            if (l.ip_at != 0) {
                parsed = true;
                bool rewrote_destination = false;
                const auto ip = ip_of(frame, l);
                if (l.dhcp_at != 0) {
                    const auto udp = udp_of(frame, l);
                    const auto message = dhcp_of(frame, l);
                    const transaction* t = find_transaction(message.xid());
                    if (udp.source_port() == dhcp::server_port && udp.destination_port() == dhcp::client_port &&
                        message.op() == dhcp::boot_reply && message.client_mac() == outside && t != nullptr) {
                        const mac_address vm = t->vm;
                        vm.store(out, l.dhcp_at + dhcp::field::chaddr);
                        const auto flags = static_cast<std::uint16_t>(
                            t->client_broadcast ? message.flags() | dhcp::broadcast_flag : message.flags() & ~dhcp::broadcast_flag);
                        wire::store_be16(out, l.dhcp_at + dhcp::field::flags, flags);
                        x.udp_checksum_patched = true;
                        ++counters_.dhcp_rewritten;
                        if (message.broadcast() && !t->client_broadcast && ip.destination().is_broadcast() &&
                            is_host_address(message.yiaddr())) {
                            message.yiaddr().store(out, l.ip_at + wire::ipv4::field::destination);
                            x.ip_checksum_patched = true;
                            rewrote_destination = true;
                        }
                        if (const auto type = message.message_type(); type && *type && **type == dhcp::message_type::ack) {
                            learn(message.yiaddr(), vm);
                        }
                        owner_vm = vm;
                    }
                }
                if (!owner_vm && to_outside) owner_vm = owner(ip.destination());
                if (owner_vm && rewrote_destination) {
                    owner_vm->store(out, wire::ethernet::field::destination);
                    return deliver(*owner_vm);
                }
            }
        } else if (to_outside) {
            return drop(translate_reason::unsupported);
        }

        if (!to_outside) {
            if (owner_vm && l.type == wire::ethernet::ethertype::ipv4) return deliver(*owner_vm);
            // Flooded unchanged, but for a group ARP's target hardware address (rewritten above),
            // as the header documents.
            x.verdict = translate_verdict::flood;
            ++counters_.inbound_flooded;
            return x;
        }
        if (!parsed) return drop(translate_reason::malformed);
        if (!owner_vm) return drop(translate_reason::unknown_ip);
        owner_vm->store(out, wire::ethernet::field::destination);
        return deliver(*owner_vm);
    }

    void inbound_op(input_reader& in) {
        const std::uint8_t flags = in.byte();
        const std::optional<mac_address> destination = (flags & 1u) ? std::optional{read_mac(in)} : std::nullopt;
        const std::uint8_t k = (flags & 4u) ? in.byte() : 0;
        bytes frame = in.frame();
        if (destination && frame.size() >= wire::ethernet::header_len) destination->store(frame, wire::ethernet::field::destination);
        if ((flags & 4u) && !transactions_.empty()) {
            const layers l = parse(frame);
            if (l.dhcp_at != 0) {
                wire::store_be32(frame, l.dhcp_at + dhcp::field::xid, transactions_[k % transactions_.size()].xid);
                outside.store(frame, l.dhcp_at + dhcp::field::chaddr);
            }
        }
        if (flags & 2u) repair(frame);
        inbound(frame);
    }

    void inbound(bytes& frame) {
        const bytes before = frame;
        const expectation x = predict_inbound(before);
        const auto got = xlate_.translate_inbound(frame);
        require(got.verdict == x.verdict && got.reason == x.reason && got.vm == x.vm);
        check_bytes(before, frame, x);
    }

    /// The frame afterwards holds exactly the expected bytes; patched checksums verify exactly
    /// when they did before.
    static void check_bytes(const bytes& before, const bytes& after, const expectation& x) {
        require(after.size() == before.size() && x.frame.size() == before.size());
        const layers l = parse(before);
        std::size_t skip_ip = before.size();
        std::size_t skip_udp = before.size();
        if (x.ip_checksum_patched) skip_ip = l.ip_at + wire::ipv4::field::checksum;
        if (x.udp_checksum_patched) skip_udp = l.udp_at + wire::udp::field::checksum;
        for (std::size_t i = 0; i < before.size(); ++i) {
            if (i == skip_ip || i == skip_ip + 1 || i == skip_udp || i == skip_udp + 1) continue;
            require(after[i] == x.frame[i]);
        }
        if (x.ip_checksum_patched) require(ip_checksum_ok(after, l) == ip_checksum_ok(before, l));
        if (x.udp_checksum_patched) {
            require(udp_checksum_ok(after, l) == udp_checksum_ok(before, l));
            require((udp_checksum(after, l) == 0) == (udp_checksum(before, l) == 0));
        }
    }

    // --- round trips --------------------------------------------------------------------------------

    /// What a DHCP server sends in answer to `request` (RFC 2131 §4.1); nothing where the
    /// addressing is not the client's to decide (a relay) or makes no sense (unicast to a
    /// non-host address).
    static std::optional<bytes> dhcp_reply(const bytes& request, ipv4_address yiaddr, std::uint8_t kind) {
        const layers l = parse(request);
        const auto message = dhcp_of(request, l);
        if (!message.giaddr().is_unspecified()) return std::nullopt;
        const dhcp::message_type type = kind % 3 == 0 ? dhcp::message_type::offer
                                        : kind % 3 == 1 ? dhcp::message_type::ack
                                                        : dhcp::message_type::nak;
        const mac_address chaddr = *message.client_mac();
        mac_address eth_destination = mac_address::broadcast();
        ipv4_address ip_destination = ipv4_address::broadcast();
        if (type == dhcp::message_type::nak) {
            yiaddr = ipv4_address::any();
        } else if (!message.ciaddr().is_unspecified()) {
            if (!is_host_address(message.ciaddr())) return std::nullopt;
            eth_destination = chaddr;
            ip_destination = message.ciaddr();
        } else if (!message.broadcast()) {
            if (!is_host_address(yiaddr)) return std::nullopt;
            eth_destination = chaddr;
            ip_destination = yiaddr;
        }

        bytes payload(dhcp::bootp_min_len);
        std::copy_n(message.buffer().begin(), dhcp::header_len, payload.begin());
        dhcp::packet<mutable_bytes> reply{payload};
        reply.set_op(dhcp::boot_reply);
        reply.set_yiaddr(yiaddr);
        wire::store_be32(payload, dhcp::field::cookie, dhcp::magic_cookie);
        const std::array<std::uint8_t, 10> options{53, 1, static_cast<std::uint8_t>(type), 54, 4, 192, 168, 64, 1, 255};
        for (std::size_t i = 0; i < options.size(); ++i) payload[dhcp::options_offset + i] = std::byte{options[i]};

        const wire::ethernet::repr eth{server_mac, eth_destination, wire::ethernet::ethertype::ipv4,
                                       wire::ethernet::repr::parse(const_bytes{request})->vlan_tci};
        bytes frame(eth.buffer_len() + wire::ipv4::header_len + wire::udp::header_len + payload.size());
        const mutable_bytes all{frame};
        require(!eth.emit(all));
        const auto ip_part = all.subspan(eth.buffer_len());
        const auto udp_part = ip_part.subspan(wire::ipv4::header_len);
        std::copy(payload.begin(), payload.end(), udp_part.begin() + wire::udp::header_len);
        require(!wire::udp::repr{dhcp::server_port, dhcp::client_port, payload.size()}.emit(udp_part, server_ip, ip_destination));
        if (kind & 0x80u) wire::udp::packet<mutable_bytes>{udp_part}.set_checksum(0); // "no checksum"
        wire::ipv4::repr header;
        header.source = server_ip;
        header.destination = ip_destination;
        header.protocol = wire::ipv4::protocol::udp;
        header.payload_len = wire::udp::header_len + payload.size();
        header.identification = 0x4242;
        require(!header.emit(ip_part));
        return frame;
    }

    /// The ARP reply the owner of the target address sends to `request`.
    static bytes arp_reply(const bytes& request) {
        const layers l = parse(request);
        const auto arp = arp_of(request, l);
        const wire::ethernet::repr eth{peer_mac, arp.sender_mac(), wire::ethernet::ethertype::arp,
                                       wire::ethernet::repr::parse(const_bytes{request})->vlan_tci};
        bytes frame(std::max(eth.buffer_len() + wire::arp::packet_len, wire::ethernet::min_frame_len));
        require(!eth.emit(frame));
        const wire::arp::repr reply{wire::arp::operation::reply, peer_mac, arp.target_ip(), arp.sender_mac(), arp.sender_ip()};
        require(!reply.emit(mutable_bytes{frame}.subspan(eth.buffer_len())));
        return frame;
    }

    /// A peer's answer to an IPv4 datagram: the same datagram with the addresses swapped, sent
    /// back to the Ethernet source.
    static bytes ip_echo(const bytes& datagram_frame) {
        const layers l = parse(datagram_frame);
        const auto ip = ip_of(datagram_frame, l);
        const auto eth = wire::ethernet::repr::parse(const_bytes{datagram_frame});
        const wire::ethernet::repr header{peer_mac, eth->source, wire::ethernet::ethertype::ipv4, eth->vlan_tci};
        bytes frame(header.buffer_len() + ip.total_length());
        require(!header.emit(frame));
        const auto ip_bytes = ip.buffer().first(ip.total_length());
        std::copy(ip_bytes.begin(), ip_bytes.end(), frame.begin() + static_cast<std::ptrdiff_t>(header.buffer_len()));
        wire::ipv4::packet<mutable_bytes> echo{mutable_bytes{frame}.subspan(header.buffer_len())};
        echo.set_source(ip.destination());
        echo.set_destination(ip.source());
        echo.fill_checksum();
        return frame;
    }

    /// `sent` went out as `translated`: the answer to `translated` must come back to `vm` as the
    /// answer to `sent`.
    void round_trip(const bytes& sent, const bytes& translated, const mac_address& vm, ipv4_address yiaddr, std::uint8_t kind) {
        const layers l = parse(sent);
        const mac_address source = mac_address::from_bytes(const_bytes{sent}.subspan(wire::ethernet::field::source));
        if (source != vm) return;
        std::optional<bytes> to_vm;    // the answer to what the VM sent
        std::optional<bytes> from_out; // the answer to what went out
        if (l.arp) {
            const auto arp = arp_of(sent, l);
            if (arp.sender_mac() != vm || owner(arp.sender_ip()) != vm) return;
            to_vm = arp_reply(sent);
            from_out = arp_reply(translated);
        } else if (l.dhcp_at != 0 && dhcp_of(sent, l).client_mac() == vm && udp_of(sent, l).source_port() == dhcp::client_port &&
                   udp_of(sent, l).destination_port() == dhcp::server_port && dhcp_of(sent, l).op() == dhcp::boot_request) {
            to_vm = dhcp_reply(sent, yiaddr, kind);
            from_out = dhcp_reply(translated, yiaddr, kind);
        } else if (l.ip_at != 0) {
            if (owner(ip_of(sent, l).source()) != vm) return;
            // The echo keeps the ports: one running 67 -> 68 could be taken for a DHCP reply.
            if (l.udp_at != 0 && udp_of(sent, l).source_port() == dhcp::server_port &&
                udp_of(sent, l).destination_port() == dhcp::client_port) {
                return;
            }
            to_vm = ip_echo(sent);
            from_out = ip_echo(translated);
        }
        if (!to_vm || !from_out) return;
        const bytes expected = *to_vm;
        const auto got_before = counters_;
        inbound(*from_out); // every check of an inbound translation, and then:
        require(xlate_.counters().inbound_delivered == got_before.inbound_delivered + 1);
        require(*from_out == expected);
    }

    void check_state() const {
        require(xlate_.vm_count() == vms_.size());
        for (const auto& e : ips_) require(xlate_.owner_of(e.ip) == e.vm);
        for (const auto ip : {ipv4_address{192, 168, 64, 107}, ipv4_address{192, 168, 64, 108},
                              ipv4_address{192, 168, 64, 109}, ipv4_address::any(), ipv4_address::broadcast()}) {
            require(xlate_.owner_of(ip) == owner(ip));
        }
        const auto& c = xlate_.counters();
        const auto& m = counters_;
        require(c.outbound_forwarded == m.outbound_forwarded && c.outbound_dropped_malformed == m.outbound_dropped_malformed &&
                c.outbound_dropped_table_full == m.outbound_dropped_table_full && c.inbound_delivered == m.inbound_delivered &&
                c.inbound_flooded == m.inbound_flooded && c.inbound_dropped_unknown_ip == m.inbound_dropped_unknown_ip &&
                c.inbound_dropped_malformed == m.inbound_dropped_malformed &&
                c.inbound_dropped_unsupported == m.inbound_dropped_unsupported &&
                c.inbound_dropped_not_for_us == m.inbound_dropped_not_for_us && c.arp_rewritten == m.arp_rewritten &&
                c.dhcp_rewritten == m.dhcp_rewritten && c.ip_evictions == m.ip_evictions &&
                c.transaction_evictions == m.transaction_evictions && c.claims_refused == m.claims_refused);
    }

    translator xlate_{outside};
    std::vector<mac_address> vms_;
    std::vector<ip_entry> ips_;
    std::vector<transaction> transactions_;
    std::uint64_t clock_ = 0;
    l2::mac_translator_counters counters_{};
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    input_reader in{data, size};
    harness h;
    h.run(in);
    return 0;
}
