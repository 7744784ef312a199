// ankanetd's core: the VMs' ports, the gateway that answers for itself, and the path between them.
//
// Theory of operation (this release). Every frame a VM sends is recorded (with --pcap), then
// offered to the gateway responder, which answers ARP for the gateway's address and pings to it.
// Frames it does not own are repeated to every other port, as a hub would — enough for VMs on one
// network to reach each other until the learning switch replaces the hub. In disconnected mode the
// cable is unplugged: frames are counted and dropped. Ports come and go while the daemon runs
// (QEMU connections); a port whose link ends is detached and logged with its counters.
#pragma once

#include <ankanet/backend/pcap.hpp>
#include <ankanet/backend/port.hpp>
#include <ankanet/config.hpp>
#include <ankanet/gateway/responder.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <vector>

namespace ankanetd {

struct daemon_counters {
    std::uint64_t frames_in = 0;        ///< frames received from VMs
    std::uint64_t frames_to_gateway = 0;
    std::uint64_t frames_repeated = 0;  ///< frames passed on to other ports (one per copy)
    std::uint64_t frames_unplugged = 0; ///< dropped in disconnected mode
};

class daemon {
public:
    daemon(ankanet::network_mode mode, ankanet::ipv4_prefix gateway, std::optional<ankanet::backend::pcap_writer> pcap)
        : mode_(mode), gateway_(gateway.address(), ankanet::default_gateway_mac), pcap_(std::move(pcap)) {}

    /// Adds a VM's port and starts receiving from it.
    void attach(std::shared_ptr<ankanet::backend::port> port) {
        log("attached {} (mtu {})", port->name(), port->mtu());
        ports_.push_back(port);
        port->start([this](ankanet::backend::port& from, ankanet::wire::const_bytes frame) { on_frame(from, frame); },
                    [this](ankanet::backend::port& closed, std::error_code why) { on_closed(closed, why); });
    }

    /// Closes every port; each detaches as its receive loop ends.
    void stop() {
        const auto ports = ports_; // closing may detach ports from the list
        for (const auto& port : ports) port->close();
        if (pcap_) pcap_->flush();
    }

    std::size_t port_count() const noexcept { return ports_.size(); }
    const daemon_counters& stats() const noexcept { return stats_; }
    const ankanet::gateway::responder& gateway() const noexcept { return gateway_; }

    template <class... Args>
    static void log(fmt::format_string<Args...> format, Args&&... args) {
        fmt::print(stderr, "ankanetd: {}\n", fmt::format(format, std::forward<Args>(args)...));
    }

private:
    void on_frame(ankanet::backend::port& from, ankanet::wire::const_bytes frame) {
        ++stats_.frames_in;
        record(frame);
        if (mode_ == ankanet::network_mode::disconnected) {
            ++stats_.frames_unplugged;
            return;
        }
        const bool for_gateway = gateway_.handle(frame, [&](ankanet::wire::const_bytes reply) {
            record(reply);
            from.send(reply); // a drop is counted by the backend
        });
        if (for_gateway) {
            ++stats_.frames_to_gateway;
            return;
        }
        for (const auto& port : ports_) {
            if (port.get() == &from) continue; // never back out of the port it came in on
            record(frame);
            port->send(frame);
            ++stats_.frames_repeated;
        }
    }

    void on_closed(ankanet::backend::port& closed, std::error_code why) {
        const auto s = closed.stats();
        log("detached {} ({}): rx {} frames, tx {} frames, dropped rx {} runt {} oversize, tx {} dropped",
            closed.name(), why.message(), s.rx_frames, s.tx_frames, s.rx_runt, s.rx_oversize, s.tx_dropped);
        std::erase_if(ports_, [&](const auto& port) { return port.get() == &closed; });
    }

    void record(ankanet::wire::const_bytes frame) {
        if (pcap_) pcap_->write(frame);
    }

    ankanet::network_mode mode_;
    ankanet::gateway::responder gateway_;
    std::optional<ankanet::backend::pcap_writer> pcap_;
    std::vector<std::shared_ptr<ankanet::backend::port>> ports_;
    daemon_counters stats_;
};

} // namespace ankanetd
