// ankanetd — serves VMs the network of their network-card type, the way the product's own network
// daemon does. This release attaches guests over TAP-in-a-namespace, QEMU stream sockets and unix
// datagram sockets; switches frames between them; and on the gateway answers ARP and ping, serves
// DHCP from a lease pool (kept in a file with --leases) and referees address claims.
// It runs in the foreground, logs to stderr and exits cleanly on SIGINT or SIGTERM.
#include "command_line.hpp"
#include "daemon.hpp"
#include "host_secret_file.hpp"

#include <ankanet/backend/qemu_stream.hpp>
#include <ankanet/backend/tap.hpp>
#include <ankanet/backend/unix_dgram.hpp>
#include <ankanet/version.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdio>
#include <string_view>
#include <vector>

namespace {

int serve(const ankanetd::options& opts) {
    using ankanetd::daemon;
    namespace backend = ankanet::backend;

    if (opts.mode == ankanet::network_mode::bridge) {
        daemon::log("bridge mode is not available in this release: it needs the uplink backend that comes with it");
        return 2;
    }
    // Disconnected VMs still get a port (the NIC exists; its cable is out); the plan then only
    // names the gateway, which answers nobody.
    const auto planned = ankanetd::plan_network(opts);
    if (const auto* error = std::get_if<ankanetd::usage_error>(&planned)) {
        daemon::log("{}", error->message);
        return 2;
    }
    const auto& plan = std::get<ankanetd::network_plan>(planned);

    std::optional<backend::pcap_writer> pcap;
    if (opts.pcap) {
        auto writer = backend::pcap_writer::open(*opts.pcap);
        if (!writer) {
            daemon::log("cannot write pcap file {}: {}", *opts.pcap, writer.error().message());
            return 1;
        }
        pcap.emplace(std::move(*writer));
    }

    boost::asio::io_context io;
    daemon::settings settings;
    settings.mode = opts.mode;
    settings.plan = plan;
    settings.reservations = opts.reservations;
    settings.lease_time = opts.lease_time;
    settings.lease_file = opts.leases;
    settings.mtu = opts.mtu;
    settings.isolate = opts.isolate;
    daemon::log("ankanet {} serving mode {} with gateway {}{}", ankanet::version_string, opts.mode, plan.subnet,
                opts.isolate ? ", VMs isolated from each other" : "");
    std::string why;
    if (opts.mac_secret) {
        settings.mac_secret = ankanetd::load_or_create_host_secret(*opts.mac_secret, why);
        if (!settings.mac_secret) {
            daemon::log("--mac-secret {}", why);
            return 1;
        }
    }
    const auto network_ptr = daemon::create(settings, std::move(pcap), why);
    if (!network_ptr) {
        daemon::log("cannot start the DHCP server: {}", why);
        return 1;
    }
    daemon& network = *network_ptr;

    for (const auto& ns : opts.netns) {
        const auto name = fmt::format("netns:{}:{}", ns.path, ns.ifname);
        const auto mac = network.assign_mac(name, ns.mac, ns.uuid, why);
        if (!mac) {
            daemon::log("--netns {}: {}", ns.path, why);
            return 1;
        }
        backend::tap_options tap;
        tap.mtu = opts.mtu;
        tap.set_interface_mtu = true;
        tap.mac = *mac;
        auto device = backend::tap_device::open_in_netns(io.get_executor(), ns.path, ns.ifname, tap);
        if (!device) {
            daemon::log("--netns {}: cannot create TAP {}: {}", ns.path, ns.ifname, device.error().message());
            return 1;
        }
        network.attach(backend::make_port(name, std::move(*device)), *mac);
    }

    std::vector<backend::qemu_stream_server> servers;
    for (const auto& path : opts.qemu_sockets) {
        backend::qemu_stream_options stream;
        stream.mtu = opts.mtu;
        auto server = backend::qemu_stream_server::listen(
            io.get_executor(), path,
            [&network, path, count = 0](backend::qemu_stream_connection vm) mutable {
                // QEMU chooses the guest's MAC (-device ...,mac=): the port registers its first frame's.
                network.attach(backend::make_port(fmt::format("qemu:{}#{}", path, ++count), std::move(vm)), std::nullopt);
            },
            stream);
        if (!server) {
            daemon::log("--qemu-socket {}: cannot listen: {}", path, server.error().message());
            return 1;
        }
        daemon::log("listening for QEMU -netdev stream on {}", path);
        servers.push_back(std::move(*server));
    }

    for (const auto& path : opts.dgram_sockets) {
        backend::unix_dgram_options dgram;
        dgram.mtu = opts.mtu;
        auto endpoint = backend::unix_dgram_endpoint::bind(io.get_executor(), path, std::nullopt, dgram);
        if (!endpoint) {
            daemon::log("--dgram-socket {}: cannot bind: {}", path, endpoint.error().message());
            return 1;
        }
        network.attach(backend::make_port(fmt::format("dgram:{}", path), std::move(*endpoint)), std::nullopt);
    }

    boost::asio::signal_set signals{io, SIGINT, SIGTERM};
    signals.async_wait([&](const boost::system::error_code& ec, int signal) {
        if (ec) return;
        daemon::log("signal {}: shutting down", signal);
        for (auto& server : servers) server.close();
        network.stop();
    });

    io.run();
    daemon::log("stopped: {}", network.summary());
    return 0;
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
    return serve(std::get<ankanetd::run>(command).opts);
}
