// ankanetd's control target: what the control socket (control_protocol.hpp) asks, answered from the
// running network — its port forwards (the network's forward::service), its VMs (ports, leases,
// addresses, links, counters), its DHCP leases (the dhcp::service's pool, VMs gone included). Wiring only: every answer comes from a library call.
#pragma once

#include "command_line.hpp"
#include "control_protocol.hpp"
#include "log.hpp"

#include <ankanet/bridge/address_guard.hpp>
#include <ankanet/dhcp/service.hpp>
#include <ankanet/forward/service.hpp>
#include <ankanet/network.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ankanetd {

/// The backend kind of a port, from the name ankanetd gave it (command_line.hpp).
inline std::string_view backend_of(std::string_view port_name) {
    if (port_name.starts_with("netns:")) return "tap";
    if (port_name.starts_with("qemu:")) return "qemu-stream";
    if (port_name.starts_with("dgram:")) return "unix-dgram";
    return "other";
}

template <class Network>
class network_control final : public control_target {
public:
    network_control(Network& network, const options& opts) : network_(network), opts_(opts) {}

    std::vector<forward_status> forwards() override {
        std::vector<forward_status> all;
        if constexpr (has_forwards) {
            const auto& forwards = network_.template service<ankanet::forward::service>();
            for (const auto& e : forwards.table().entries()) all.push_back({e.id, e.rule, forwards.carried(e.id)});
        }
        return all;
    }

    ankanet::result<ankanet::forward::rule_id> add_forward(const ankanet::forward::rule& rule, std::string& why) override {
        if constexpr (has_forwards) {
            auto mapped = rule;
            if (const auto error = resolve_forward_vm(opts_, mapped.vm)) {
                why = error->message;
                return make_error_code(ankanet::forward::forward_errc::bad_rule);
            }
            auto added = network_.template service<ankanet::forward::service>().add(mapped, &why);
            if (added) log("forward {} added (control socket): {}", *added, ankanet::printable(ankanet::forward::format_rule(mapped)));
            return added;
        } else {
            why = "this network has no port forwarding (its mode has no gateway)";
            return std::make_error_code(std::errc::operation_not_supported);
        }
    }

    std::error_code remove_forward(ankanet::forward::rule_id id, std::string& why) override {
        if constexpr (has_forwards) {
            const auto ec = network_.template service<ankanet::forward::service>().remove(id);
            if (ec) why = fmt::format("there is no forward {}", id);
            else log("forward {} removed (control socket); its connections go on", id);
            return ec;
        } else {
            why = "this network has no port forwarding (its mode has no gateway)";
            return std::make_error_code(std::errc::operation_not_supported);
        }
    }

    ankanet::forward::rule listed_form(ankanet::forward::rule rule) override {
        (void)resolve_forward_vm(opts_, rule.vm); // a name it cannot map is compared as it is
        return rule;
    }

    std::vector<vm_status> vms() override {
        std::vector<vm_status> all;
        const auto now = network_.clock().now();
        for (const auto port : network_.ports()) {
            vm_status vm;
            vm.name = std::string{network_.name(port).value_or("")};
            vm.backend = std::string{backend_of(vm.name)};
            vm.mac = network_.mac(port);
            vm.link_up = network_.link_up(port);
            if (const auto counters = network_.stats(port)) {
                vm.frames_in = counters->frames_in;
                vm.frames_out = counters->frames_out;
                vm.dropped = counters->dropped_link_down + counters->dropped_unplugged + counters->dropped_by_service +
                             counters->dropped_no_mac + counters->dropped_bad_size + counters->dropped_bad_offload;
            }
            if (vm.mac) {
                if constexpr (has_forwards) vm.address = network_.template service<ankanet::forward::service>().last_address(*vm.mac);
                if constexpr (Network::template has_service<ankanet::bridge::address_guard>) {
                    // Bridge mode: the address the LAN's DHCP server acknowledged to it.
                    vm.address = network_.template service<ankanet::bridge::address_guard>().address_of(*vm.mac, std::chrono::steady_clock::now());
                }
                if constexpr (Network::template has_service<ankanet::dhcp::service>) {
                    if (const auto lease = network_.template service<ankanet::dhcp::service>().bound_lease(*vm.mac, now)) {
                        if (!vm.address) vm.address = lease->address;
                        if (lease->address == *vm.address) {
                            vm.hostname = lease->hostname;
                            vm.lease_expires = lease->expiry.time_since_epoch().count();
                        }
                    }
                }
            }
            all.push_back(std::move(vm));
        }
        return all;
    }

    std::vector<lease_status> leases() override {
        std::vector<lease_status> all;
        if constexpr (Network::template has_service<ankanet::dhcp::service>) {
            const auto& dhcp = network_.template service<ankanet::dhcp::service>();
            const auto now = network_.clock().now();
            const auto& range = dhcp.pool().config();
            // Every address of the range, in order: at most a /16's worth, answered at once.
            for (std::uint64_t a = range.first.to_u32(); a <= range.last.to_u32(); ++a) {
                const auto holder = dhcp.lease_holder(ankanet::wire::ipv4_address{static_cast<std::uint32_t>(a)}, now);
                if (!holder) continue;
                const auto lease = dhcp.bound_lease(*holder, now);
                if (!lease || lease->address.to_u32() != a) continue;
                lease_status status{lease->address, lease->mac, lease->hostname, lease->expiry.time_since_epoch().count(), {}};
                for (const auto port : network_.ports()) {
                    if (network_.mac(port) == lease->mac) status.vm = std::string{network_.name(port).value_or("")};
                }
                all.push_back(std::move(status));
            }
        }
        return all;
    }

    std::error_code set_link(std::string_view vm, bool up, std::string& why) override {
        const auto port = find(vm);
        if (!port) {
            why = fmt::format("no VM is named '{}' (see the names `vms` lists, or give a MAC or a --netns name)",
                              ankanet::printable(vm, 128));
            return std::make_error_code(std::errc::no_such_device);
        }
        const auto ec = network_.set_link(*port, up);
        if (ec) why = fmt::format("cannot set the link of '{}': {}", ankanet::printable(vm, 128), ec.message());
        return ec;
    }

private:
    static constexpr bool has_forwards = Network::template has_service<ankanet::forward::service>;

    /// A VM by MAC, port name, or the names --forward takes (a --netns name or path, a socket path).
    std::optional<ankanet::port_handle> find(std::string_view text) const {
        ankanet::forward::vm_selector selector;
        if (const auto mac = ankanet::wire::mac_address::parse(text)) {
            selector.mac = *mac;
        } else {
            selector.name = std::string{text};
            (void)resolve_forward_vm(opts_, selector); // a name it cannot map is tried as a port name
        }
        for (const auto port : network_.ports()) {
            if (selector.matches(network_.name(port).value_or(""), network_.mac(port))) return port;
        }
        return std::nullopt;
    }

    Network& network_;
    const options& opts_;
};

} // namespace ankanetd
