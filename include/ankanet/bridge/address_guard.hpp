/// @file
/// ankanet::bridge::address_guard — a bridged VM may not take another VM's IPv4 address.
///
/// Theory of operation. On a bridge the LAN's DHCP server hands out the addresses, and the LAN's
/// hosts believe whatever ARP tells them: a VM announcing another VM's address (a gratuitous ARP, a
/// reply nobody asked for) would draw that VM's traffic to itself. Managed Ethernet switches stop this
/// with DHCP snooping and dynamic ARP inspection; this service does the same for the VMs behind one
/// uplink:
///  * Bindings come from the LAN's DHCP server: watch_uplink() sees every frame the uplink brings in,
///    and a DHCPACK (UDP 67 -> 68, BOOTREPLY, option 53 = ACK) whose chaddr is a VM's MAC binds its
///    yiaddr to that VM for the lease time (option 51; an hour when absent, a day at most). With MAC
///    translation the uplink has put the VM's own chaddr back by then (lan_uplink.hpp). A later ACK
///    moves an address to whichever VM it names: the server has taken it back from the first.
///  * inspect() sees every frame a VM sends: an ARP whose sender address, or an IPv4 packet whose
///    source address, is bound to another VM is dropped and counted (arp_refused, ip_refused), and an
///    address_claim_refused_event reported — at most one a second, so a VM cannot flood the log.
///    Addresses nobody holds a binding for pass: a VM with a static address works as on any LAN.
///  * A VM that leaves gives up its bindings (port_removed); a binding also ends with its lease.
/// The LAN itself is trusted (it is the uplink: the network's gateway port), as a switch trusts its
/// DHCP server's port.
/// Costs: one hash lookup per IPv4 or ARP frame a VM sends; bindings are bounded (max_bindings, the
/// oldest-expiring one makes room).
#pragma once

#include <ankanet/inspection.hpp>
#include <ankanet/clock.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/dhcp.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/udp.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <unordered_map>

namespace ankanet::bridge {

/// A VM's frame claimed an address bound to another VM, and was dropped.
struct address_claim_refused_event {
    std::string_view port; ///< port
    ipv4_address address; ///< address
    mac_address holder;      ///< the VM the LAN's DHCP server gave it to
    bool arp = false;        ///< an ARP claim (else an IPv4 packet with that source)
};

/// What the address guard learned and refused.
struct address_guard_counters {
    std::uint64_t bindings_learned = 0; ///< DHCPACKs for a VM seen on the uplink
    std::uint64_t arp_refused = 0; ///< ARP refused
    std::uint64_t ip_refused = 0; ///< IP refused
    std::uint64_t bindings_evicted = 0; ///< made room for a new one (max_bindings)
};

/// The service; see the top of the file.
class address_guard {
public:
    static constexpr std::size_t max_bindings = 4096; ///< max bindings
    static constexpr std::chrono::seconds default_lease{3600}; ///< default lease
    static constexpr std::chrono::seconds longest_lease{86400}; ///< longest lease

    /// The VM the LAN's DHCP server bound `address` to, if that binding is live at `now`.
    std::optional<mac_address> holder(ipv4_address address, std::chrono::steady_clock::time_point now) const {
        const auto at = bindings_.find(address.to_u32());
        if (at == bindings_.end() || at->second.expires <= now) return std::nullopt;
        return at->second.vm;
    }

    /// The address the LAN's DHCP server last acknowledged to `vm`, while that lease is live (a scan:
    /// for listing VMs, not for the data path).
    std::optional<ipv4_address> address_of(mac_address vm, std::chrono::steady_clock::time_point now) const {
        std::optional<ipv4_address> found;
        auto latest = now;
        for (const auto& [address, b] : bindings_) {
            if (b.vm == vm && b.expires > latest) {
                latest = b.expires;
                found = ipv4_address{address};
            }
        }
        return found;
    }

    /// A frame from the LAN: learns DHCPACKs for VMs.
    template <class Context>
    void watch_uplink(const wire::parsed_frame& frame, Context& ctx) {
        if (!frame.is_ipv4() || !frame.has_ports || frame.is_fragment() || frame.protocol != wire::ipv4::protocol::udp ||
            frame.source_port != wire::dhcp::server_port || frame.destination_port != wire::dhcp::client_port) {
            return;
        }
        const wire::udp::packet<wire::const_bytes> udp{frame.ip_payload()};
        if (udp.check_len()) return;
        const auto dhcp = wire::dhcp::packet<wire::const_bytes>::checked(udp.payload());
        if (!dhcp || dhcp->op() != wire::dhcp::boot_reply) return;
        const auto type = dhcp->message_type();
        if (!type || !*type || **type != wire::dhcp::message_type::ack) return;
        const auto vm = dhcp->client_mac();
        const auto address = dhcp->yiaddr();
        if (!vm || !ctx.attached(*vm) || address.is_unspecified() || address.is_broadcast() || address.is_multicast()) return;
        std::chrono::seconds lease = default_lease;
        if (const auto given = dhcp->lease_time(); given && *given) {
            lease = std::min(longest_lease, std::chrono::seconds{**given});
        }
        bind(address, *vm, ctx.now().steady + lease);
        ++counters_.bindings_learned;
    }

    /// A VM's frame: dropped when it claims another VM's bound address.
    template <class Context>
    inspection inspect(const wire::parsed_frame& frame, Context& ctx) {
        std::optional<ipv4_address> claimed;
        bool arp = false;
        if (frame.is_arp()) {
            claimed = frame.arp->sender_ip;
            arp = true;
        } else if (frame.is_ipv4()) {
            claimed = frame.ip_source;
        }
        if (!claimed || bindings_.empty()) return inspection::pass;
        const auto bound = holder(*claimed, ctx.now().steady);
        if (!bound || *bound == ctx.port_mac()) return inspection::pass;
        ++(arp ? counters_.arp_refused : counters_.ip_refused);
        const auto now = ctx.now().steady;
        if (now >= next_report_) {
            next_report_ = now + std::chrono::seconds{1};
            ctx.notify(address_claim_refused_event{ctx.port_name(), *claimed, *bound, arp});
        }
        return inspection::drop;
    }

    /// Forgets the addresses of a VM that went away.
    void port_removed(mac_address vm) {
        std::erase_if(bindings_, [&](const auto& entry) { return entry.second.vm == vm; });
    }

    /// What it counted so far.
    const address_guard_counters& stats() const noexcept { return counters_; }
    /// The binding count.
    std::size_t binding_count() const noexcept { return bindings_.size(); }

private:
    struct binding {
        mac_address vm;
        std::chrono::steady_clock::time_point expires;
    };

    void bind(ipv4_address address, mac_address vm, std::chrono::steady_clock::time_point expires) {
        if (bindings_.size() >= max_bindings && !bindings_.contains(address.to_u32())) {
            const auto oldest = std::min_element(bindings_.begin(), bindings_.end(), [](const auto& a, const auto& b) {
                return a.second.expires < b.second.expires;
            });
            bindings_.erase(oldest);
            ++counters_.bindings_evicted;
        }
        bindings_[address.to_u32()] = binding{vm, expires};
    }

    std::unordered_map<std::uint32_t, binding> bindings_;
    address_guard_counters counters_;
    std::chrono::steady_clock::time_point next_report_{};
};

} // namespace ankanet::bridge
