// ankanetd — serves VMs the network of their network-card type, the way the product's own network
// daemon does. A command line over the library: it parses the options, builds the network of the
// mode (ankanet::shared_network, host_network, bridge_network or disconnected_network), attaches the VMs' backends
// — TAPs inside network namespaces, QEMU stream sockets, unix datagram sockets — and logs what the
// network reports. It runs in the foreground, logs to stderr (to the journal, with priorities, under
// systemd), tells a service manager when it is ready ($NOTIFY_SOCKET, --pid-file) and exits cleanly
// on SIGINT or SIGTERM.
//
// Start-up touches files in an order that loses nothing when it stops half-way: first every check
// that writes nothing (the options, two options naming one file, the lease and MAC state files'
// directories taking new files), then the files it reads (remembered MACs, the host secret, the
// leases — each refused with "file:line" when it does not hold together, and left as it was), then
// the VMs (a random MAC is remembered before its VM uses it), and the output files last: the pcap is
// created only once everything else has succeeded, so a refused start clobbers nothing.
#include "command_line.hpp"
#include "control_server.hpp"
#include "ctl.hpp"
#include "host_secret_file.hpp"
#include "log.hpp"
#include "network_control.hpp"
#include "privileges.hpp"
#include "readiness.hpp"
#include "socket_lock.hpp"

#include <ankanet/backend/pcap.hpp>
#include <ankanet/backend/qemu_stream.hpp>
#include <ankanet/backend/tap.hpp>
#include <ankanet/backend/unix_dgram.hpp>
#include <ankanet/bridge.hpp>
#include <ankanet/dhcp/lease_store.hpp>
#include <ankanet/disconnected.hpp>
#include <ankanet/host.hpp>
#include <ankanet/l2/mac_memory.hpp>
#include <ankanet/shared.hpp>
#include <ankanet/version.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

namespace {

namespace backend = ankanet::backend;
using ankanetd::log;
using ankanetd::log_error;
using ankanetd::log_warning;

/// What every mode's network shares: the options as the library takes them.
ankanet::gateway_network_options gateway_options(const ankanetd::options& opts, const ankanetd::network_plan& plan,
                                                 const std::optional<ankanet::l2::host_secret>& secret) {
    ankanet::gateway_network_options o;
    o.subnet = plan.subnet;
    o.dhcp_range = plan.range;
    for (const auto& r : opts.reservations) o.reservations.push_back({.mac = r.mac, .client_id = {}, .address = r.address});
    o.lease_time = std::chrono::seconds{opts.lease_time};
    // The lease file is written by its own thread, so no VM's frames wait for the disk; ACKs wait
    // for their lease to be written (dhcp::basic_service).
    o.leases = opts.leases ? ankanet::dhcp::any_lease_store{*opts.leases, ankanet::dhcp::write_mode::background}
                           : ankanet::dhcp::any_lease_store{};
    o.mtu = opts.mtu;
    o.isolate = opts.isolate;
    o.dhcp_limits = opts.dhcp_limits;
    o.mac_secret = secret;
    o.egress = opts.egress_policy;
    o.host_loopback = opts.host_loopback;
    o.max_flows_per_vm = opts.max_flows_per_vm;
    o.dns_upstreams.servers = opts.dns_upstreams;
    o.forwards = opts.forwards;
    return o;
}

/// Says where guests' flows may go, and what cannot be carried (pings without a socket to carry them).
template <class Network>
void log_translation(const Network& network, const ankanetd::options& opts) {
    const std::string_view loopback = opts.host_loopback ? "; the gateway stands for the host's 127.0.0.1" : "";
    if (opts.dns_upstreams.empty()) {
        log("DNS: the gateway answers its own names and relays the rest to the resolvers of /etc/resolv.conf");
    } else {
        std::string list;
        for (const auto& u : opts.dns_upstreams) list += fmt::format("{}{}:{}", list.empty() ? "" : ", ", u.address.to_string(), u.port);
        log("DNS: the gateway answers its own names and relays the rest to {}", list);
    }
    if (opts.mode == ankanet::network_mode::host) {
        log("NAT: guests reach the host only{}", loopback);
        return;
    }
    log("NAT: egress {}{}, at most {} flows per VM per protocol", opts.egress.value_or("any"), loopback, opts.max_flows_per_vm);
    using icmp = ankanet::nat::icmp_translator<ankanet::nat::runtime_egress>;
    if constexpr (Network::template has_service<icmp>) {
        const auto& pings = network.template service<icmp>();
        if (!pings.available()) log("NAT: {}", pings.unavailable_reason());
        else log("NAT: guests' pings go over {} sockets", pings.socket_kind() == ankanet::nat::icmp_socket_kind::ping ? "ping" : "raw");
    }
}

/// Adds the port of a --netns VM, with its MAC: the custom one (mac=), the stable one (uuid=), else
/// the one remembered for it in `macs`, else one drawn at random and remembered before it is used.
/// Logs why and returns nothing when the port cannot be added.
template <class Network>
std::optional<ankanet::port_handle> add_netns_port(Network& network, const ankanetd::netns_attachment& ns,
                                                   const std::string& name, ankanet::l2::mac_memory* macs) {
    std::string why;
    if (ns.mac || ns.uuid || macs == nullptr) {
        const auto mac = ns.mac ? ankanet::port_mac::custom(*ns.mac)
                         : ns.uuid ? ankanet::port_mac::stable(*ns.uuid)
                                   : ankanet::port_mac::random();
        const auto port = network.add_port(name, mac, &why);
        if (!port) {
            log_error("--netns {}: {}", ns.path, why);
            return std::nullopt;
        }
        return *port;
    }
    const auto file = macs->path().string();
    if (const auto remembered = macs->lookup(name)) {
        // As any MAC: refused when another VM holds it now (given it with mac=, say).
        const auto port = network.add_port(name, ankanet::port_mac::custom(*remembered), &why);
        if (!port) {
            log_error("--netns {}: the MAC {} remembered for it in {} cannot be used: {}", ns.path, *remembered, file, why);
            return std::nullopt;
        }
        log("{}: MAC {}, as remembered in {}", name, *remembered, file);
        return *port;
    }
    // A MAC remembered for another VM (one not running now) is drawn again: it is that VM's.
    for (int attempt = 0; attempt < 8; ++attempt) {
        const auto port = network.add_port(name, ankanet::port_mac::random(), &why);
        if (!port) {
            log_error("--netns {}: {}", ns.path, why);
            return std::nullopt;
        }
        const auto mac = *network.mac(*port);
        const auto error = macs->remember(name, mac);
        if (!error) {
            log("{}: MAC {} drawn at random, remembered in {}", name, mac, file);
            return *port;
        }
        (void)network.remove_port(*port);
        if (error != ankanet::l2::mac_memory_errc::mac_taken) {
            log_error("--netns {}: cannot remember its MAC {} in {}: {}", ns.path, mac, file, error.message());
            return std::nullopt;
        }
    }
    log_error("--netns {}: every MAC drawn is remembered in {} for another VM", ns.path, file);
    return std::nullopt;
}

/// Attaches the VMs the options name to `network`, opens the pcap file last, and runs until a
/// signal stops it.
template <class Network>
int serve(Network& network, const ankanetd::options& opts, ankanet::l2::mac_memory* macs,
          std::optional<backend::pcap_writer>& pcap, boost::asio::io_context& io,
          const std::optional<ankanet::daemon::user_identity>& user) {
    for (const auto& ns : opts.netns) {
        // The MAC is chosen (and registered) before the TAP exists: the TAP is created with it.
        const auto port = add_netns_port(network, ns, ankanetd::netns_port_name(ns), macs);
        if (!port) return 1;
        backend::tap_options tap;
        tap.mtu = opts.mtu;
        tap.set_interface_mtu = true;
        tap.mac = *network.mac(*port);
        // The guest's kernel then hands over, and takes, 64 KiB TCP segments with their checksums
        // left to "the NIC": one system call where there were 44 at MTU 1500.
        tap.vnet_header = opts.offload;
        tap.checksum_offload = opts.offload;
        tap.tso4 = opts.offload;
        auto device = backend::tap_device::open_in_netns(io.get_executor(), ns.path, ns.ifname, tap);
        if (!device) {
            log_error("--netns {}: cannot create TAP {}: {}", ns.path, ns.ifname, device.error().message());
            return 1;
        }
        (void)network.connect(*port, std::move(*device));
    }

    // Each socket path's lock is taken before the library looks at the path, and outlives its
    // server (declared first): a second ankanetd is refused by the lock, not by a probing connect
    // the first would log as a VM.
    std::vector<ankanetd::socket_lock> locks;
    const auto lock = [&locks](std::string_view option, const std::string& path) {
        std::string why;
        auto taken = ankanetd::socket_lock::acquire(path, why);
        if (!taken) {
            log_error("{} {}: {}", option, path, why);
            return false;
        }
        locks.push_back(std::move(*taken));
        return true;
    };
    std::vector<backend::qemu_stream_server> servers;
    for (const auto& path : opts.qemu_sockets) {
        if (!lock("--qemu-socket", path)) return 1;
        backend::qemu_stream_options stream;
        stream.mtu = opts.mtu;
        auto server = backend::qemu_stream_server::listen(
            io.get_executor(), path,
            [&network, path, count = 0](backend::qemu_stream_connection vm) mutable {
                // QEMU chooses the guest's MAC (-device ...,mac=): the port registers its first frame's.
                (void)network.attach(fmt::format("{}#{}", ankanetd::qemu_port_name(path), ++count), std::move(vm));
            },
            stream);
        if (!server) {
            log_error("--qemu-socket {}: cannot listen: {}", path, server.error().message());
            return 1;
        }
        log("listening for QEMU -netdev stream on {}", path);
        server->on_limit([path](std::size_t limit) {
            log_warning("--qemu-socket {}: {} connections alive, refusing more", ankanet::printable(path), limit);
        });
        servers.push_back(std::move(*server));
    }

    for (const auto& path : opts.dgram_sockets) {
        if (!lock("--dgram-socket", path)) return 1;
        backend::unix_dgram_options dgram;
        dgram.mtu = opts.mtu;
        auto endpoint = backend::unix_dgram_endpoint::bind(io.get_executor(), path, std::nullopt, dgram);
        if (!endpoint) {
            log_error("--dgram-socket {}: cannot bind: {}", path, endpoint.error().message());
            return 1;
        }
        (void)network.attach(ankanetd::dgram_port_name(path), std::move(*endpoint));
    }

    std::optional<ankanetd::network_control<Network>> control_target;
    std::optional<ankanetd::control_server> control;
    boost::asio::signal_set signals{io, SIGINT, SIGTERM};
    signals.async_wait([&](const boost::system::error_code& ec, int signal) {
        if (ec) return;
        log("{}: shutting down", ankanetd::signal_name(signal));
        ankanetd::announce_stopping();
        for (auto& server : servers) server.close();
        if (control) control->close();
        network.stop();
    });

    // Output files last: a start refused by anything above has created or truncated none. No frame
    // moves before io.run(), so the pcap still records every one.
    if (opts.pcap) {
        auto writer = backend::pcap_writer::open(*opts.pcap);
        if (!writer) {
            log_error("--pcap {}: cannot write the pcap file: {}", *opts.pcap, writer.error().message());
            return 1;
        }
        pcap.emplace(std::move(*writer));
        network.set_frame_tap([&pcap](ankanet::wire::const_bytes frame) { pcap->write(frame); });
    }
    if (opts.control) {
        if (!lock("--control", *opts.control)) return 1;
        control_target.emplace(network, opts);
        std::string why;
        control = ankanetd::control_server::open(io.get_executor(), *opts.control, *control_target, why);
        if (!control) {
            log_error("--control: {}", why);
            return 1;
        }
        log("control socket {} (ankanetd ctl {} list|vms|leases|forward add|forward remove|link)", ankanet::printable(*opts.control),
            ankanet::printable(*opts.control));
    }

    // Set up: the TAPs, sockets and pcap are open, and stay usable by any user.
    if (opts.runas && !ankanetd::become_user(opts, *user)) return 1;

    // Every VM's port and socket is in place: say so (pid file, then the service manager).
    const auto vms = opts.netns.size() + opts.qemu_sockets.size() + opts.dgram_sockets.size();
    if (!ankanetd::announce_ready(opts, fmt::format("serving {} VM port(s) in {} mode", vms, opts.mode))) return 1;

    io.run();
    if (pcap) (void)pcap->flush();
    ankanetd::remove_pid_file(opts);
    log("stopped: {}", ankanetd::summary(network));
    return 0;
}

/// Bridge mode: opens the uplink, gives the LAN time to answer the direct-MAC probe, and serves.
int run_bridge(ankanetd::options opts, const std::optional<ankanet::l2::host_secret>& secret,
               std::optional<backend::pcap_writer>& pcap, boost::asio::io_context& io,
               const std::optional<ankanet::daemon::user_identity>& user) {
    ankanet::bridge_options bridge;
    bridge.interface = opts.bridge_interface.value_or("");
    bridge.mac_mode = opts.direct_mac ? ankanet::bridge::mac_mode::direct : ankanet::bridge::mac_mode::translate;
    bridge.mtu = opts.mtu_given ? opts.mtu : 0;
    bridge.isolate = opts.isolate;
    bridge.mac_secret = secret;
    std::string why;
    auto network = ankanet::open_bridge_network<ankanetd::traits>(io.get_executor(), bridge, &why);
    if (!network) {
        log_error("{}", why);
        return 1;
    }
    opts.mtu = (*network)->config().mtu; // the VMs' links take the interface's MTU
    log("bridging onto {} with {}, MTU {}", *ankanet::bridge_interface(bridge),
        opts.direct_mac ? "the VMs' own MACs (promiscuous)" : "the interface's MAC (translated)", opts.mtu);
    if (opts.direct_mac) {
        // The LAN answers the probe (bridge/lan_probe.hpp) before any MAC is drawn.
        io.run_for(ankanet::bridge_probe_time);
        io.restart();
    }
    return serve(**network, opts, nullptr, pcap, io, user);
}

int run(const ankanetd::options& opts) {
    // Disconnected VMs still get a port (the NIC exists; its cable is out); the plan then only
    // names the gateway, which answers nobody.
    const auto planned = ankanetd::plan_network(opts);
    if (const auto* error = std::get_if<ankanetd::usage_error>(&planned)) {
        fmt::print(stderr, "{}", ankanetd::usage_error_line(*error));
        return 2;
    }
    const auto& plan = std::get<ankanetd::network_plan>(planned);

    // Checks that write nothing that stays, before any file is touched.
    if (const auto error = ankanetd::check_files(opts)) {
        fmt::print(stderr, "{}", ankanetd::usage_error_line(*error));
        return 2;
    }
    std::string why;
    if (opts.leases && ankanet::dhcp::file_lease_store{*opts.leases}.check_writable(why)) {
        log_error("--leases {}", why);
        return 1;
    }
    std::optional<ankanet::l2::mac_memory> macs;
    if (const auto file = ankanetd::mac_state_file(opts)) {
        macs.emplace(*file);
        if (macs->check_writable(why)) {
            log_error("--leases {}", why);
            return 1;
        }
    }
    std::optional<ankanet::daemon::user_identity> user;
    if (opts.runas) {
        user.emplace();
        if (ankanet::daemon::find_user(*opts.runas, *user, why)) {
            log_error("--runas {}: {}", *opts.runas, why);
            return 1;
        }
    }
    if (opts.pid_file && ankanet::detail::check_replaceable(*opts.pid_file, &why)) {
        log_error("--pid-file {}: cannot write it there: {}", *opts.pid_file, why);
        return 1;
    }
    if (opts.mac_secret) {
        std::error_code ec;
        std::string what;
        if (!std::filesystem::exists(*opts.mac_secret, ec) && ankanet::detail::check_replaceable(*opts.mac_secret, &what)) {
            log_error("--mac-secret {}: cannot create the host secret there: {}", *opts.mac_secret, what);
            return 1;
        }
    }

    // Files read, each refused with file:line when it does not hold together, and left as it was.
    if (macs && macs->load(why)) {
        log_error("cannot load the remembered MACs: {}", why);
        return 1;
    }
    if (opts.mode == ankanet::network_mode::bridge) {
        log("ankanet {} serving mode bridge{}", ankanet::version_string, opts.isolate ? ", VMs isolated from each other" : "");
    } else {
        log("ankanet {} serving mode {} with gateway {}{}", ankanet::version_string, opts.mode, plan.subnet,
            opts.isolate ? ", VMs isolated from each other" : "");
    }
    std::optional<ankanet::l2::host_secret> secret;
    if (opts.mac_secret) {
        secret = ankanetd::load_or_create_host_secret(*opts.mac_secret, why);
        if (!secret) {
            log_error("--mac-secret {}", why);
            return 1;
        }
    }

    std::optional<backend::pcap_writer> pcap; // opened by serve(), once everything else has succeeded
    boost::asio::io_context io;
    auto* memory = macs ? &*macs : nullptr;
    if (opts.mode == ankanet::network_mode::bridge) return run_bridge(opts, secret, pcap, io, user);
    if (opts.mode == ankanet::network_mode::disconnected) {
        ankanet::network_config config;
        config.subnet = plan.subnet;
        config.mtu = opts.mtu;
        config.mac_secret = secret;
        ankanet::basic_disconnected_network<ankanetd::traits> network{config};
        return serve(network, opts, memory, pcap, io, user);
    }
    auto options = gateway_options(opts, plan, secret);
    const auto started = [&](auto& network) {
        log("DHCP serving {}-{} on {} (lease {} s, {} reserved, leases {})", plan.range.first, plan.range.last, plan.subnet,
            opts.lease_time, opts.reservations.size(), opts.leases ? *opts.leases : std::string{"in memory"});
        log_translation(*network, opts);
        for (const auto& f : network->template service<ankanet::forward::service>().table().entries()) {
            log("forward {}: {}", f.id, ankanet::printable(ankanet::forward::format_rule(f.rule)));
        }
        return serve(*network, opts, memory, pcap, io, user);
    };
    if (opts.mode == ankanet::network_mode::host) {
        auto network = ankanet::make_host_network<ankanetd::traits>(io.get_executor(), std::move(options), &why);
        if (!network) {
            log_error("cannot start the DHCP server: {}", why);
            return 1;
        }
        return started(*network);
    }
    auto network = ankanet::make_shared_network<ankanetd::traits>(io.get_executor(), std::move(options), &why);
    if (!network) {
        log_error("cannot start the DHCP server: {}", why);
        return 1;
    }
    return started(*network);
}

} // namespace

int main(int argc, char** argv) {
    const std::vector<std::string_view> args(argv + 1, argv + argc);
    if (!args.empty() && args.front() == "ctl") return ankanetd::run_ctl(std::span{args}.subspan(1));
    const auto command = ankanetd::parse_command_line(args);
    if (const auto* error = std::get_if<ankanetd::usage_error>(&command)) {
        fmt::print(stderr, "{}", ankanetd::usage_error_line(*error));
        return 2;
    }
    if (const auto* help = std::get_if<ankanetd::show_help>(&command)) {
        fmt::print("{}", help->text);
        return 0;
    }
    if (std::holds_alternative<ankanetd::show_version>(command)) {
        fmt::print("ankanetd {}\n", ankanet::version_string);
        return 0;
    }
    const auto& opts = std::get<ankanetd::run>(command).opts;
    auto& logging = ankanetd::log_config();
    logging.threshold = opts.verbosity < 0 ? ankanetd::log_level::warning
                        : opts.verbosity > 0 ? ankanetd::log_level::debug
                                             : ankanetd::log_level::info;
    logging.journal = ankanetd::is_journal_stream(std::getenv("JOURNAL_STREAM"), STDERR_FILENO);
    return run(opts);
}
