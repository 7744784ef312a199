/// @file
/// ankanet::l2::mac_translator — rewrites between VMs' own MACs and the one MAC the layer below imposes.
///
/// Theory of operation. Some links accept frames from one MAC only: Apple's vmnet on older macOS
/// imposes its own address on the interface, and a Wi-Fi station may not send as any MAC but its own
/// (802.11 bridges cannot carry foreign source addresses). Yet a VM keeps its custom MAC inside. This
/// pure engine stands between the VMs and such a link and rewrites frames in place (no copy, no
/// allocation, no I/O, no clock); the caller moves the frames.
///
/// Outbound (VM -> below), translate_outbound(frame):
///  * The Ethernet source, a VM's MAC, becomes the outside MAC. A VM is known from add_vm(), or
///    learned from its first outbound frame (table full: dropped_table_full).
///  * ARP (IPv4 over Ethernet): the sender hardware address, and the target hardware address when it
///    is the VM's MAC, become the outside MAC. The sender IP is learned as the VM's.
///  * DHCP client messages (IPv4, UDP 68 -> 67, BOOTREQUEST, htype 1, hlen 6, chaddr = the VM's MAC):
///    chaddr becomes the outside MAC and the BOOTP broadcast flag is set, because a server replying
///    by unicast would address a MAC the outside never saw. The UDP checksum is patched
///    incrementally (RFC 1624); a zero checksum ("none") stays zero. The xid, the VM and the VM's own
///    broadcast flag are remembered as an outstanding transaction; ciaddr and the requested IP
///    (option 50) are learned as the VM's.
///  * Anything else: only the Ethernet source changes. A payload that does not parse is left as it is
///    and the frame is still forwarded: the VM may send what it likes, it only gets our MAC on it.
///
/// Inbound (below -> VM), translate_inbound(frame) returns a verdict:
///  * deliver to one VM (inbound_result::vm): the Ethernet destination is rewritten to that VM's MAC.
///  * flood: a broadcast/multicast frame nobody in particular owns; give it to every VM. It is left
///    unchanged, except that in a group ARP (a broadcast reply, say) a target hardware address equal
///    to the outside MAC becomes the VM's that owns the target IP: that mapping is the true one for
///    every VM, whereas the outside MAC would point them all at an address none of them answers.
///  * drop: a frame for the outside MAC whose owner is unknown (dropped_unknown_ip), one that does not
///    parse (dropped_malformed), a non-IPv4/ARP frame for the outside MAC (dropped_unsupported: IPv6
///    neighbour discovery carries MACs in options that are not translated), or a unicast frame for
///    some other MAC (dropped_not_for_us).
///  Which VM: a DHCP reply (UDP 67 -> 68, BOOTREPLY) whose chaddr is the outside MAC and whose xid is
///  an outstanding transaction goes to that transaction's VM, with chaddr and the broadcast flag put
///  back as the VM sent them (ACK: yiaddr is learned). If the VM had not asked for a broadcast and
///  the reply came broadcast to a yiaddr, the IP destination is set to yiaddr (header and UDP
///  checksums patched), so the VM receives exactly the reply it would have had without translation.
///  Otherwise ARP by target IP and IPv4 by destination IP, looked up in the learned table; an ARP
///  target hardware address equal to the outside MAC becomes the VM's.
///
/// Tables and bounds, all fixed arrays sized by template parameters and scanned linearly (they are
/// small: the VMs behind one host interface): MaxVms VMs, MaxIps learned IPv4 addresses (one owner
/// each; relearning moves an address; a full table evicts the least recently learned address,
/// counted in ip_evictions), MaxTransactions outstanding DHCP transactions (the least recent is
/// replaced, counted in transaction_evictions). Nothing ages with time: entries leave when a VM is
/// removed or when evicted. Who owns an address: a VM's own claims (ARP sender, DHCP ciaddr and
/// requested address) only take an address no other VM owns — a claim on another VM's address is
/// refused (claims_refused), so a VM cannot draw another's traffic to itself by announcing its
/// address; only the DHCP server's ACK (yiaddr) moves an address from one VM to another, as the
/// server has then taken it back from the first.
/// Limits: IPv4 only; one 802.1Q tag is looked through; IP fragments after the first are routed by
/// destination only; DHCP option 61 (client id) is left untouched, since it identifies, not
/// addresses, the client.
#pragma once

#include <ankanet/wire/address.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/checksum.hpp>
#include <ankanet/wire/dhcp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/udp.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace ankanet::l2 {

/// What the caller does with a translated frame.
enum class translate_verdict : std::uint8_t {
    forward, ///< outbound: send it below
    deliver, ///< inbound: give it to inbound_result::vm only
    flood,   ///< inbound: give it to every VM
    drop,    ///< either way: discard it (see translate_reason)
};

/// Why a frame was dropped (none otherwise).
enum class translate_reason : std::uint8_t {
    none,
    malformed,   ///< the Ethernet header or, for an inbound frame to the outside MAC, its payload
    table_full,  ///< outbound from an unknown VM with no VM slot left
    unknown_ip,  ///< inbound to the outside MAC for an address no VM owns
    unsupported, ///< inbound to the outside MAC, neither IPv4 nor ARP
    not_for_us,  ///< inbound unicast to a MAC that is neither the outside MAC nor a VM's
};

/// Result of translate_outbound.
struct outbound_result {
    translate_verdict verdict = translate_verdict::drop; ///< verdict
    translate_reason reason = translate_reason::none; ///< reason
};

/// Result of translate_inbound; `vm` is set when the verdict is deliver.
struct inbound_result {
    translate_verdict verdict = translate_verdict::drop; ///< verdict
    translate_reason reason = translate_reason::none; ///< reason
    std::optional<mac_address> vm; ///< VM
};

/// Result of add_vm.
enum class add_vm_status : std::uint8_t { added, already_known, table_full, invalid_mac };

/// What the MAC translator rewrote or dropped.
struct mac_translator_counters {
    std::uint64_t outbound_forwarded = 0; ///< outbound forwarded
    std::uint64_t outbound_dropped_malformed = 0; ///< outbound dropped malformed
    std::uint64_t outbound_dropped_table_full = 0; ///< outbound dropped table full
    std::uint64_t inbound_delivered = 0; ///< inbound delivered
    std::uint64_t inbound_flooded = 0; ///< inbound flooded
    std::uint64_t inbound_dropped_unknown_ip = 0; ///< inbound dropped unknown IP
    std::uint64_t inbound_dropped_malformed = 0; ///< inbound dropped malformed
    std::uint64_t inbound_dropped_unsupported = 0; ///< inbound dropped unsupported
    std::uint64_t inbound_dropped_not_for_us = 0; ///< inbound dropped not for us
    std::uint64_t arp_rewritten = 0;  ///< ARP packets whose hardware fields changed, both ways
    std::uint64_t dhcp_rewritten = 0; ///< DHCP messages whose chaddr changed, both ways
    std::uint64_t ip_evictions = 0; ///< IP evictions
    std::uint64_t transaction_evictions = 0; ///< transaction evictions
    std::uint64_t claims_refused = 0; ///< a VM's claims on an address another VM owns (not learned)
};

/// The translator for VMs behind one outside MAC.
/// @tparam MaxVms VMs behind the outside MAC.
/// @tparam MaxIps learned IPv4 addresses, over all VMs.
/// @tparam MaxTransactions outstanding DHCP client transactions.
template <std::size_t MaxVms = 16, std::size_t MaxIps = 64, std::size_t MaxTransactions = 16>
class basic_mac_translator {
    static_assert(MaxVms > 0 && MaxVms < 0xffff, "MaxVms must fit a 16-bit index");
    static_assert(MaxIps > 0, "MaxIps must be positive");
    static_assert(MaxTransactions > 0, "MaxTransactions must be positive");

public:
    static constexpr std::size_t max_vms = MaxVms; ///< max VMs
    static constexpr std::size_t max_ips = MaxIps; ///< max ips
    static constexpr std::size_t max_transactions = MaxTransactions; ///< max transactions

    /// Translates VM MACs to `outside`, the uplink's MAC.
    explicit basic_mac_translator(mac_address outside) noexcept : outside_(outside) {}

    /// The outside MAC.
    mac_address outside_mac() const noexcept { return outside_; }
    /// The counters.
    const mac_translator_counters& counters() const noexcept { return counters_; }

    /// Registers a VM MAC (unicast, not the outside MAC).
    add_vm_status add_vm(mac_address vm) noexcept {
        if (!vm.is_unicast() || vm == outside_) return add_vm_status::invalid_mac;
        if (find_vm(vm)) return add_vm_status::already_known;
        for (auto& slot : vms_) {
            if (!slot.used) {
                slot = vm_slot{vm, true};
                return add_vm_status::added;
            }
        }
        return add_vm_status::table_full;
    }

    /// Forgets a VM with its learned IPs and transactions; false if it was not known.
    bool remove_vm(mac_address vm) noexcept {
        const auto index = find_vm(vm);
        if (!index) return false;
        vms_[*index].used = false;
        for (auto& ip : ips_) {
            if (ip.used && ip.vm == *index) ip.used = false;
        }
        for (auto& t : transactions_) {
            if (t.used && t.vm == *index) t.used = false;
        }
        return true;
    }

    /// The VM count.
    std::size_t vm_count() const noexcept {
        std::size_t n = 0;
        for (const auto& slot : vms_) n += slot.used ? 1 : 0;
        return n;
    }

    /// The VM that owns `ip` in the learned table.
    std::optional<mac_address> owner_of(ipv4_address ip) const noexcept {
        if (const auto* slot = find_ip(ip)) return vms_[slot->vm].mac;
        return std::nullopt;
    }

    /// Rewrites a frame a VM sent, in place, for the link below.
    outbound_result translate_outbound(wire::mutable_bytes frame) noexcept {
        wire::ethernet::packet<wire::mutable_bytes> eth{frame};
        if (eth.check_len()) return outbound_drop(translate_reason::malformed);
        const mac_address source = eth.source();
        if (source == outside_) return outbound_forward(); // already ours: nothing to translate
        if (!source.is_unicast()) return outbound_drop(translate_reason::malformed);
        auto index = find_vm(source);
        if (!index) {
            if (add_vm(source) == add_vm_status::table_full) return outbound_drop(translate_reason::table_full);
            index = find_vm(source);
        }
        const auto vm = static_cast<std::uint16_t>(*index);
        eth.set_source(outside_);

        const auto type = eth.ethertype();
        if (type == wire::ethernet::ethertype::arp) {
            outbound_arp(eth.payload(), source, vm);
        } else if (type == wire::ethernet::ethertype::ipv4) {
            outbound_ipv4(eth.payload(), source, vm);
        }
        return outbound_forward();
    }

    /// Rewrites a frame from the link below, in place, for the VM it is for; says which.
    inbound_result translate_inbound(wire::mutable_bytes frame) noexcept {
        wire::ethernet::packet<wire::mutable_bytes> eth{frame};
        if (eth.check_len()) return inbound_drop(translate_reason::malformed);
        const mac_address destination = eth.destination();
        const auto type = eth.ethertype();
        const bool to_outside = destination == outside_;

        if (!to_outside && !destination.is_multicast()) {
            // Unicast to a VM's own MAC can only come from someone who learned it some other way:
            // deliver it untouched; anything else is another host's traffic.
            if (const auto index = find_vm(destination)) return inbound_deliver(vms_[*index].mac);
            return inbound_drop(translate_reason::not_for_us);
        }

        std::optional<std::uint16_t> owner;
        bool parsed = false;
        if (type == wire::ethernet::ethertype::arp) {
            wire::arp::packet<wire::mutable_bytes> arp{eth.payload()};
            if (!arp.check_len()) {
                parsed = true;
                owner = lookup_ip(arp.target_ip());
                if (owner && arp.target_mac() == outside_) {
                    arp.set_target_mac(vms_[*owner].mac);
                    ++counters_.arp_rewritten;
                }
            }
        } else if (type == wire::ethernet::ethertype::ipv4) {
            wire::ipv4::packet<wire::mutable_bytes> ip{eth.payload()};
            if (!ip.check_len()) {
                parsed = true;
                bool rewrote_destination = false;
                owner = inbound_dhcp(ip, rewrote_destination);
                if (!owner && to_outside) owner = lookup_ip(ip.destination());
                // A broadcast reply turned back into the unicast the VM expected: address it to the VM.
                if (owner && rewrote_destination) {
                    eth.set_destination(vms_[*owner].mac);
                    return inbound_deliver(vms_[*owner].mac);
                }
            }
        } else if (to_outside) {
            return inbound_drop(translate_reason::unsupported);
        }

        if (!to_outside) {
            // A group frame: a DHCP reply for one of our transactions goes to its VM only (its chaddr
            // now names that VM, which would confuse the others); everything else is everyone's.
            if (owner && type == wire::ethernet::ethertype::ipv4) return inbound_deliver(vms_[*owner].mac);
            ++counters_.inbound_flooded;
            return {translate_verdict::flood, translate_reason::none, std::nullopt};
        }
        if (!parsed) return inbound_drop(translate_reason::malformed);
        if (!owner) return inbound_drop(translate_reason::unknown_ip);
        eth.set_destination(vms_[*owner].mac);
        return inbound_deliver(vms_[*owner].mac);
    }

private:
    struct vm_slot {
        mac_address mac;
        bool used = false;
    };
    struct ip_slot {
        ipv4_address ip;
        std::uint16_t vm = 0;
        std::uint64_t stamp = 0;
        bool used = false;
    };
    struct transaction_slot {
        std::uint32_t xid = 0;
        std::uint16_t vm = 0;
        bool client_broadcast = false; ///< the broadcast flag as the VM itself sent it
        std::uint64_t stamp = 0;
        bool used = false;
    };

    // UDP offsets of the DHCP fields we touch: the DHCP message starts after the 8-byte UDP header.
    static constexpr std::size_t dhcp_at = wire::udp::header_len;
    static constexpr std::size_t flags_at = dhcp_at + wire::dhcp::field::flags;
    static constexpr std::size_t chaddr_at = dhcp_at + wire::dhcp::field::chaddr;
    // Both are even, so each 16-bit field is one word of the checksum sum: update16 applies.
    static_assert(flags_at % 2 == 0 && chaddr_at % 2 == 0);

    outbound_result outbound_forward() noexcept {
        ++counters_.outbound_forwarded;
        return {translate_verdict::forward, translate_reason::none};
    }
    outbound_result outbound_drop(translate_reason reason) noexcept {
        if (reason == translate_reason::table_full) {
            ++counters_.outbound_dropped_table_full;
        } else {
            ++counters_.outbound_dropped_malformed;
        }
        return {translate_verdict::drop, reason};
    }
    inbound_result inbound_deliver(mac_address vm) noexcept {
        ++counters_.inbound_delivered;
        return {translate_verdict::deliver, translate_reason::none, vm};
    }
    inbound_result inbound_drop(translate_reason reason) noexcept {
        switch (reason) {
        case translate_reason::unknown_ip: ++counters_.inbound_dropped_unknown_ip; break;
        case translate_reason::unsupported: ++counters_.inbound_dropped_unsupported; break;
        case translate_reason::not_for_us: ++counters_.inbound_dropped_not_for_us; break;
        case translate_reason::none:
        case translate_reason::malformed:
        case translate_reason::table_full: ++counters_.inbound_dropped_malformed; break;
        }
        return {translate_verdict::drop, reason, std::nullopt};
    }

    void outbound_arp(wire::mutable_bytes payload, mac_address vm_mac, std::uint16_t vm) noexcept {
        wire::arp::packet<wire::mutable_bytes> arp{payload};
        if (arp.check_len()) return;
        bool changed = false;
        if (arp.sender_mac() == vm_mac) {
            arp.set_sender_mac(outside_);
            changed = true;
        }
        if (arp.target_mac() == vm_mac) {
            arp.set_target_mac(outside_);
            changed = true;
        }
        if (changed) ++counters_.arp_rewritten;
        claim(arp.sender_ip(), vm);
    }

    void outbound_ipv4(wire::mutable_bytes payload, mac_address vm_mac, std::uint16_t vm) noexcept {
        wire::ipv4::packet<wire::mutable_bytes> ip{payload};
        if (ip.check_len() || ip.protocol() != wire::ipv4::protocol::udp || ip.is_fragment()) return;
        wire::udp::packet<wire::mutable_bytes> udp{ip.payload()};
        if (udp.check_len() || udp.source_port() != wire::dhcp::client_port ||
            udp.destination_port() != wire::dhcp::server_port) {
            return;
        }
        wire::dhcp::packet<wire::mutable_bytes> dhcp{udp.payload()};
        if (dhcp.check_len() || dhcp.op() != wire::dhcp::boot_request || !is_ethernet_chaddr(dhcp)) return;
        if (mac_address::from_bytes(dhcp.chaddr()) != vm_mac) return; // a relay or another client's

        const auto datagram = udp.datagram();
        remember_transaction(dhcp.xid(), vm, dhcp.broadcast());
        write_mac(udp, datagram, outside_);
        write_word(udp, datagram, flags_at, static_cast<std::uint16_t>(dhcp.flags() | wire::dhcp::broadcast_flag));
        ++counters_.dhcp_rewritten;

        claim(dhcp.ciaddr(), vm);
        if (const auto requested = dhcp.requested_ip(); requested && *requested) claim(**requested, vm);
    }

    /// A DHCP reply for one of our transactions: puts chaddr and the flag back; returns its VM.
    std::optional<std::uint16_t> inbound_dhcp(wire::ipv4::packet<wire::mutable_bytes>& ip,
                                              bool& rewrote_destination) noexcept {
        if (ip.protocol() != wire::ipv4::protocol::udp || ip.is_fragment()) return std::nullopt;
        wire::udp::packet<wire::mutable_bytes> udp{ip.payload()};
        if (udp.check_len() || udp.source_port() != wire::dhcp::server_port ||
            udp.destination_port() != wire::dhcp::client_port) {
            return std::nullopt;
        }
        wire::dhcp::packet<wire::mutable_bytes> dhcp{udp.payload()};
        if (dhcp.check_len() || dhcp.op() != wire::dhcp::boot_reply || !is_ethernet_chaddr(dhcp)) return std::nullopt;
        if (mac_address::from_bytes(dhcp.chaddr()) != outside_) return std::nullopt;
        auto* transaction = find_transaction(dhcp.xid());
        if (transaction == nullptr) return std::nullopt;

        const std::uint16_t vm = transaction->vm;
        const auto datagram = udp.datagram();
        write_mac(udp, datagram, vms_[vm].mac);
        const bool server_broadcast = dhcp.broadcast();
        const auto flags = static_cast<std::uint16_t>(
            transaction->client_broadcast ? dhcp.flags() | wire::dhcp::broadcast_flag
                                          : dhcp.flags() & ~wire::dhcp::broadcast_flag);
        write_word(udp, datagram, flags_at, flags);
        ++counters_.dhcp_rewritten;

        const auto yiaddr = dhcp.yiaddr();
        if (server_broadcast && !transaction->client_broadcast && ip.destination().is_broadcast() &&
            is_host_address(yiaddr)) {
            // What the server would have sent had it seen the VM's own flag: unicast to yiaddr.
            const auto old_destination = ip.destination();
            ip.rewrite_destination(yiaddr);
            udp.rewrite_pseudo_header_address(old_destination, yiaddr);
            rewrote_destination = true;
        }
        if (const auto type = dhcp.message_type(); type && *type && **type == wire::dhcp::message_type::ack) {
            learn(yiaddr, vm);
        }
        return vm;
    }

    /// An address one host may own: not 0.0.0.0, broadcast, multicast or loopback.
    static constexpr bool is_host_address(ipv4_address ip) noexcept {
        return !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast() && !ip.is_loopback();
    }

    static bool is_ethernet_chaddr(const wire::dhcp::packet<wire::mutable_bytes>& dhcp) noexcept {
        return dhcp.htype() == wire::dhcp::htype_ethernet && dhcp.hlen() == mac_address::size;
    }

    /// Writes a 16-bit word of the UDP datagram and patches its checksum to match (RFC 1624).
    static void write_word(wire::udp::packet<wire::mutable_bytes>& udp, wire::mutable_bytes datagram,
                           std::size_t offset, std::uint16_t value) noexcept {
        const std::uint16_t old_value = wire::load_be16(datagram, offset);
        if (old_value == value) return;
        wire::store_be16(datagram, offset, value);
        if (udp.checksum() == 0) return; // "no checksum" stays so
        const std::uint16_t updated = wire::checksum::update16(udp.checksum(), old_value, value);
        udp.set_checksum(updated == 0 ? std::uint16_t{0xffff} : updated); // 0 on the wire means "none"
    }

    static void write_mac(wire::udp::packet<wire::mutable_bytes>& udp, wire::mutable_bytes datagram,
                          mac_address mac) noexcept {
        const auto& o = mac.octets();
        for (std::size_t i = 0; i < 3; ++i) {
            write_word(udp, datagram, chaddr_at + 2 * i,
                       static_cast<std::uint16_t>((unsigned{o[2 * i]} << 8) | o[2 * i + 1]));
        }
    }

    std::optional<std::size_t> find_vm(mac_address mac) const noexcept {
        for (std::size_t i = 0; i < vms_.size(); ++i) {
            if (vms_[i].used && vms_[i].mac == mac) return i;
        }
        return std::nullopt;
    }

    const ip_slot* find_ip(ipv4_address ip) const noexcept {
        for (const auto& slot : ips_) {
            if (slot.used && slot.ip == ip) return &slot;
        }
        return nullptr;
    }
    std::optional<std::uint16_t> lookup_ip(ipv4_address ip) const noexcept {
        if (const auto* slot = find_ip(ip)) return slot->vm;
        return std::nullopt;
    }

    /// A VM says it has `ip`: learned unless another VM owns it (only the DHCP server moves that).
    void claim(ipv4_address ip, std::uint16_t vm) noexcept {
        if (const auto* owner = find_ip(ip); owner != nullptr && owner->vm != vm) {
            ++counters_.claims_refused;
            return;
        }
        learn(ip, vm);
    }

    void learn(ipv4_address ip, std::uint16_t vm) noexcept {
        if (!is_host_address(ip)) return;
        ip_slot* target = nullptr;
        for (auto& slot : ips_) {
            if (slot.used && slot.ip == ip) {
                target = &slot;
                break;
            }
        }
        if (target == nullptr) target = free_or_oldest(ips_, counters_.ip_evictions);
        *target = ip_slot{ip, vm, ++clock_, true};
    }

    void remember_transaction(std::uint32_t xid, std::uint16_t vm, bool client_broadcast) noexcept {
        transaction_slot* target = nullptr;
        for (auto& slot : transactions_) {
            // A retransmission, or another VM reusing the xid: the latest sender owns it.
            if (slot.used && slot.xid == xid) {
                target = &slot;
                break;
            }
        }
        if (target == nullptr) target = free_or_oldest(transactions_, counters_.transaction_evictions);
        *target = transaction_slot{xid, vm, client_broadcast, ++clock_, true};
    }

    transaction_slot* find_transaction(std::uint32_t xid) noexcept {
        for (auto& slot : transactions_) {
            if (slot.used && slot.xid == xid) return &slot;
        }
        return nullptr;
    }

    template <class Slots>
    static auto* free_or_oldest(Slots& slots, std::uint64_t& evictions) noexcept {
        auto* oldest = &slots[0];
        for (auto& slot : slots) {
            if (!slot.used) return &slot;
            if (slot.stamp < oldest->stamp) oldest = &slot;
        }
        ++evictions;
        return oldest;
    }

    mac_address outside_;
    std::array<vm_slot, MaxVms> vms_{};
    std::array<ip_slot, MaxIps> ips_{};
    std::array<transaction_slot, MaxTransactions> transactions_{};
    std::uint64_t clock_ = 0; ///< orders learning events, for least-recent eviction
    mac_translator_counters counters_{};
};

using mac_translator = basic_mac_translator<>; ///< a MAC translator with the default sizes

} // namespace ankanet::l2
