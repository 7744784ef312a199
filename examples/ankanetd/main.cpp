// ankanetd — serves VMs the network of their network-card type, the way the product's own network
// daemon does. This release attaches guests over TAP-in-a-namespace, QEMU stream sockets and unix
// datagram sockets, answers ARP and ping for the gateway, and repeats other frames between VMs.
// It runs in the foreground, logs to stderr and exits cleanly on SIGINT or SIGTERM.
#include "command_line.hpp"
#include "daemon.hpp"

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
    // Disconnected VMs still get a port (the NIC exists; its cable is out), so a subnet is needed
    // only for the gateway's address; use the shared one.
    const auto subnet = ankanet::default_subnet(opts.mode).value_or(*ankanet::default_subnet(ankanet::network_mode::shared));

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
    daemon network{opts.mode, subnet, std::move(pcap)};
    daemon::log("ankanet {} serving mode {} with gateway {}", ankanet::version_string, opts.mode, subnet);

    for (const auto& ns : opts.netns) {
        backend::tap_options tap;
        tap.mtu = opts.mtu;
        tap.set_interface_mtu = true;
        tap.mac = ns.mac;
        auto device = backend::tap_device::open_in_netns(io.get_executor(), ns.path, ns.ifname, tap);
        if (!device) {
            daemon::log("--netns {}: cannot create TAP {}: {}", ns.path, ns.ifname, device.error().message());
            return 1;
        }
        network.attach(backend::make_port(fmt::format("netns:{}:{}", ns.path, ns.ifname), std::move(*device)));
    }

    std::vector<backend::qemu_stream_server> servers;
    for (const auto& path : opts.qemu_sockets) {
        backend::qemu_stream_options stream;
        stream.mtu = opts.mtu;
        auto server = backend::qemu_stream_server::listen(
            io.get_executor(), path,
            [&network, path, count = 0](backend::qemu_stream_connection vm) mutable {
                network.attach(backend::make_port(fmt::format("qemu:{}#{}", path, ++count), std::move(vm)));
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
        network.attach(backend::make_port(fmt::format("dgram:{}", path), std::move(*endpoint)));
    }

    boost::asio::signal_set signals{io, SIGINT, SIGTERM};
    signals.async_wait([&](const boost::system::error_code& ec, int signal) {
        if (ec) return;
        daemon::log("signal {}: shutting down", signal);
        for (auto& server : servers) server.close();
        network.stop();
    });

    io.run();
    const auto& s = network.stats();
    daemon::log("stopped: {} frames in, {} to the gateway ({} ARP replies, {} echo replies), {} repeated",
                s.frames_in, s.frames_to_gateway, network.gateway().stats().arp_replies,
                network.gateway().stats().echo_replies, s.frames_repeated);
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
