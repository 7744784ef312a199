// ankanetd — serves VMs the network of their network-card type, the way the product's own network
// daemon does. A command line over the library: it parses the options, builds the network of the
// mode (ankanet::shared_network, host_network or disconnected_network), attaches the VMs' backends
// — TAPs inside network namespaces, QEMU stream sockets, unix datagram sockets — and logs what the
// network reports. It runs in the foreground, logs to stderr and exits cleanly on SIGINT or SIGTERM.
#include "command_line.hpp"
#include "host_secret_file.hpp"
#include "log.hpp"

#include <ankanet/backend/pcap.hpp>
#include <ankanet/backend/qemu_stream.hpp>
#include <ankanet/backend/tap.hpp>
#include <ankanet/backend/unix_dgram.hpp>
#include <ankanet/disconnected.hpp>
#include <ankanet/host.hpp>
#include <ankanet/shared.hpp>
#include <ankanet/version.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

namespace {

namespace backend = ankanet::backend;
using ankanetd::log;

/// What every mode's network shares: the options as the library takes them.
ankanet::gateway_network_options gateway_options(const ankanetd::options& opts, const ankanetd::network_plan& plan,
                                                 const std::optional<ankanet::l2::host_secret>& secret) {
    ankanet::gateway_network_options o;
    o.subnet = plan.subnet;
    o.dhcp_range = plan.range;
    for (const auto& r : opts.reservations) o.reservations.push_back({.mac = r.mac, .client_id = {}, .address = r.address});
    o.lease_time = std::chrono::seconds{opts.lease_time};
    o.leases = opts.leases ? ankanet::dhcp::any_lease_store{*opts.leases} : ankanet::dhcp::any_lease_store{};
    o.mtu = opts.mtu;
    o.isolate = opts.isolate;
    o.mac_secret = secret;
    return o;
}

/// Attaches the VMs the options name to `network` and runs until a signal stops it.
template <class Network>
int serve(Network& network, const ankanetd::options& opts, std::optional<backend::pcap_writer>& pcap,
          boost::asio::io_context& io) {
    if (pcap) network.set_frame_tap([&pcap](ankanet::wire::const_bytes frame) { pcap->write(frame); });
    std::string why;

    for (const auto& ns : opts.netns) {
        // The MAC is chosen (and registered) before the TAP exists: the TAP is created with it.
        const auto mac = ns.mac ? ankanet::port_mac::custom(*ns.mac)
                         : ns.uuid ? ankanet::port_mac::stable(*ns.uuid)
                                   : ankanet::port_mac::random();
        const auto port = network.add_port(fmt::format("netns:{}:{}", ns.path, ns.ifname), mac, &why);
        if (!port) {
            log("--netns {}: {}", ns.path, why);
            return 1;
        }
        backend::tap_options tap;
        tap.mtu = opts.mtu;
        tap.set_interface_mtu = true;
        tap.mac = *network.mac(*port);
        auto device = backend::tap_device::open_in_netns(io.get_executor(), ns.path, ns.ifname, tap);
        if (!device) {
            log("--netns {}: cannot create TAP {}: {}", ns.path, ns.ifname, device.error().message());
            return 1;
        }
        (void)network.connect(*port, std::move(*device));
    }

    std::vector<backend::qemu_stream_server> servers;
    for (const auto& path : opts.qemu_sockets) {
        backend::qemu_stream_options stream;
        stream.mtu = opts.mtu;
        auto server = backend::qemu_stream_server::listen(
            io.get_executor(), path,
            [&network, path, count = 0](backend::qemu_stream_connection vm) mutable {
                // QEMU chooses the guest's MAC (-device ...,mac=): the port registers its first frame's.
                (void)network.attach(fmt::format("qemu:{}#{}", path, ++count), std::move(vm));
            },
            stream);
        if (!server) {
            log("--qemu-socket {}: cannot listen: {}", path, server.error().message());
            return 1;
        }
        log("listening for QEMU -netdev stream on {}", path);
        servers.push_back(std::move(*server));
    }

    for (const auto& path : opts.dgram_sockets) {
        backend::unix_dgram_options dgram;
        dgram.mtu = opts.mtu;
        auto endpoint = backend::unix_dgram_endpoint::bind(io.get_executor(), path, std::nullopt, dgram);
        if (!endpoint) {
            log("--dgram-socket {}: cannot bind: {}", path, endpoint.error().message());
            return 1;
        }
        (void)network.attach(fmt::format("dgram:{}", path), std::move(*endpoint));
    }

    boost::asio::signal_set signals{io, SIGINT, SIGTERM};
    signals.async_wait([&](const boost::system::error_code& ec, int signal) {
        if (ec) return;
        log("signal {}: shutting down", signal);
        for (auto& server : servers) server.close();
        network.stop();
    });

    io.run();
    if (pcap) (void)pcap->flush();
    log("stopped: {}", ankanetd::summary(network));
    return 0;
}

int run(const ankanetd::options& opts) {
    if (opts.mode == ankanet::network_mode::bridge) {
        log("bridge mode is not available in this release: it needs the uplink backend that comes with it");
        return 2;
    }
    // Disconnected VMs still get a port (the NIC exists; its cable is out); the plan then only
    // names the gateway, which answers nobody.
    const auto planned = ankanetd::plan_network(opts);
    if (const auto* error = std::get_if<ankanetd::usage_error>(&planned)) {
        log("{}", error->message);
        return 2;
    }
    const auto& plan = std::get<ankanetd::network_plan>(planned);

    std::optional<backend::pcap_writer> pcap;
    if (opts.pcap) {
        auto writer = backend::pcap_writer::open(*opts.pcap);
        if (!writer) {
            log("cannot write pcap file {}: {}", *opts.pcap, writer.error().message());
            return 1;
        }
        pcap.emplace(std::move(*writer));
    }

    log("ankanet {} serving mode {} with gateway {}{}", ankanet::version_string, opts.mode, plan.subnet,
        opts.isolate ? ", VMs isolated from each other" : "");
    std::string why;
    std::optional<ankanet::l2::host_secret> secret;
    if (opts.mac_secret) {
        secret = ankanetd::load_or_create_host_secret(*opts.mac_secret, why);
        if (!secret) {
            log("--mac-secret {}", why);
            return 1;
        }
    }

    boost::asio::io_context io;
    if (opts.mode == ankanet::network_mode::disconnected) {
        ankanet::network_config config;
        config.subnet = plan.subnet;
        config.mtu = opts.mtu;
        config.mac_secret = secret;
        ankanet::basic_disconnected_network<ankanetd::traits> network{config};
        return serve(network, opts, pcap, io);
    }
    const auto options = gateway_options(opts, plan, secret);
    const auto started = [&](auto& network) {
        log("DHCP serving {}-{} on {} (lease {} s, {} reserved, leases {})", plan.range.first, plan.range.last, plan.subnet,
            opts.lease_time, opts.reservations.size(), opts.leases ? *opts.leases : std::string{"in memory"});
        return serve(*network, opts, pcap, io);
    };
    if (opts.mode == ankanet::network_mode::host) {
        auto network = ankanet::make_host_network<ankanetd::traits>(options, &why);
        if (!network) {
            log("cannot start the DHCP server: {}", why);
            return 1;
        }
        return started(*network);
    }
    auto network = ankanet::make_shared_network<ankanetd::traits>(options, &why);
    if (!network) {
        log("cannot start the DHCP server: {}", why);
        return 1;
    }
    return started(*network);
}

} // namespace

int main(int argc, char** argv) {
    const std::vector<std::string_view> args(argv + 1, argv + argc);
    const auto command = ankanetd::parse_command_line(args);
    if (const auto* error = std::get_if<ankanetd::usage_error>(&command)) {
        fmt::print(stderr, "ankanetd: {}\n\n{}", error->message, ankanetd::usage_text);
        return 2;
    }
    if (std::holds_alternative<ankanetd::show_help>(command)) {
        fmt::print("{}", ankanetd::usage_text);
        return 0;
    }
    if (std::holds_alternative<ankanetd::show_version>(command)) {
        fmt::print("ankanetd {}\n", ankanet::version_string);
        return 0;
    }
    return run(std::get<ankanetd::run>(command).opts);
}
