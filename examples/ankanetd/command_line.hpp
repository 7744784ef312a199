// ankanetd's command line: parsed into `options` by CLI11 (generated --help, short options, a
// TOML/INI --config file equivalent to the flags), every mistake reported as one clear sentence.
//
//   ankanetd [OPTIONS]            (ankanetd --help lists every one)
//   ankanetd ctl PATH [--json] list|vms|leases|forward add SPEC|forward remove ID|SPEC|link VM up|down
//
// Kept apart from main.cpp so tests can check every accepted and refused spelling. parse_command_line
// checks each value on its own; plan_network then checks them together (a range inside the subnet,
// reservations inside the range) and works out the defaults of the mode; check_files refuses two
// options that would write one file (the pcap over the lease file, say), before any file is touched.
#pragma once

#include <ankanet/backend/backend.hpp>
#include <ankanet/config.hpp>
#include <ankanet/detail/atomic_file.hpp>
#include <ankanet/gateway/gateway_network.hpp>
#include <ankanet/l2/mac_randomizer.hpp>
#include <ankanet/dns/upstream.hpp>
#include <ankanet/forward/table.hpp>
#include <ankanet/nat/egress.hpp>
#include <ankanet/wire/address.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace ankanetd {

/// `--netns PATH[,ifname=NAME][,mac=MAC|,uuid=UUID]`: a TAP created inside the namespace at PATH.
struct netns_attachment {
    std::string path;           ///< a namespace file; a bare name means /run/netns/NAME, as `ip netns` names them
    std::string ifname = "eth0";
    std::optional<ankanet::mac_address> mac;   ///< a custom MAC
    std::optional<ankanet::l2::vm_uuid> uuid;  ///< the VM's identity: its stable MAC (needs --mac-secret)
    bool operator==(const netns_attachment&) const = default;
};

/// `--dhcp-range FIRST-LAST`: the addresses the DHCP server hands out, both included.
using address_range = ankanet::address_range;

/// `--reserve MAC=IP`: the "static IP" of one VM.
struct reservation {
    ankanet::mac_address mac;
    ankanet::ipv4_address address;
    bool operator==(const reservation&) const = default;
};

inline constexpr std::uint32_t default_lease_time = 3600;
inline constexpr std::uint32_t min_lease_time = 4;        // T1 is half of it: at least 2 s
inline constexpr std::uint32_t max_lease_time = 31536000; // a year; RFC 2131's "infinity" is not offered

struct options {
    ankanet::network_mode mode = ankanet::network_mode::shared;
    std::vector<netns_attachment> netns;
    std::vector<std::string> qemu_sockets;
    std::vector<std::string> dgram_sockets;
    std::size_t mtu = ankanet::backend::default_mtu;
    std::optional<std::string> pcap;
    std::optional<ankanet::ipv4_prefix> subnet; ///< as given; plan_network() resolves the gateway
    std::optional<address_range> dhcp_range;
    std::vector<reservation> reservations;
    std::uint32_t lease_time = default_lease_time;
    std::optional<std::string> leases;          ///< lease file (and random MACs in mac_state_file()); in memory when absent
    std::optional<std::string> mac_secret;      ///< host secret file for stable MACs (uuid=)
    bool isolate = false;
    ankanet::dhcp::service_limits dhcp_limits{}; ///< --dhcp-rate: DHCP messages per second (and burst) per VM
    std::optional<std::string> egress;          ///< --egress as given (checked by parse_egress); shared mode only
    ankanet::nat::runtime_egress egress_policy{}; ///< --egress, parsed (default: any)
    bool host_loopback = true;                  ///< --no-host-loopback turns it off
    std::size_t max_flows_per_vm = 1024;        ///< --max-flows-per-vm: per protocol
    std::vector<ankanet::dns::upstream> dns_upstreams; ///< --dns-upstream; none: the host's /etc/resolv.conf
    std::vector<ankanet::forward::rule> forwards; ///< --forward, with @VM as given (resolve_forward_vm maps it)
    std::optional<std::string> control;         ///< --control: the control socket's path
    std::optional<std::string> pid_file;        ///< --pid-file: written once ready, removed on a clean exit
    std::optional<std::string> runas;           ///< --runas: the user the daemon becomes once set up
    std::optional<std::string> bridge_interface; ///< --bridge-interface; bridge mode falls back to $ANKA_BRIDGE_NAME
    bool direct_mac = false;                    ///< --direct-mac: bridge mode puts VMs' own MACs on the LAN
    bool offload = true;                        ///< --no-offload turns the --netns TAPs' virtio-net header off
    bool mtu_given = false;                     ///< --mtu was given (bridge mode otherwise takes the interface's)
    std::vector<std::string> given;             ///< the options given, by long name (to refuse those a mode has no use for)
    int verbosity = 0;                          ///< -v (1: debug) minus -q (-1: warnings and errors only)
};

inline constexpr std::size_t max_flows_per_vm_limit = 65536;

inline constexpr double max_dhcp_rate = 1'000'000; // per VM; far beyond any client, still a bound

/// The addresses the daemon serves, worked out from the options and the mode.
struct network_plan {
    ankanet::ipv4_prefix subnet;                   ///< its address() is the gateway's
    address_range range;
    std::vector<ankanet::ipv4_address> excluded;   ///< the gateway, when the range holds it
};

/// What parsing asks the program to do.
struct run { options opts; };
struct show_help { std::string text; }; ///< the generated help
struct show_version {};
struct usage_error { std::string message; };
using command = std::variant<run, show_help, show_version, usage_error>;

namespace detail {

inline std::optional<std::size_t> parse_size(std::string_view text) {
    std::size_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) return std::nullopt;
    return value;
}

inline std::optional<ankanet::mac_address> parse_nic_mac(std::string_view text, std::string_view option, std::string& why) {
    const auto mac = ankanet::mac_address::parse(text);
    if (!mac) {
        why = fmt::format("{}: '{}' is not a MAC address (expected like 52:54:00:12:34:56)", option, text);
        return std::nullopt;
    }
    if (!mac->is_unicast()) {
        why = fmt::format("{}: MAC {} is not a unicast address (multicast, broadcast and all-zero are refused)", option, *mac);
        return std::nullopt;
    }
    return *mac;
}

inline std::variant<address_range, usage_error> parse_range(std::string_view text) {
    const auto dash = text.find('-');
    const auto first = ankanet::ipv4_address::parse(text.substr(0, dash));
    const auto last = dash == std::string_view::npos ? first : ankanet::ipv4_address::parse(text.substr(dash + 1));
    if (dash == std::string_view::npos || !first || !last) {
        return usage_error{fmt::format("--dhcp-range: '{}' is not FIRST-LAST (like 192.168.64.10-192.168.64.99)", text)};
    }
    if (first->to_u32() > last->to_u32()) return usage_error{fmt::format("--dhcp-range: {} comes after {}", *first, *last)};
    return address_range{*first, *last};
}

inline std::variant<reservation, usage_error> parse_reservation(std::string_view text) {
    const auto eq = text.find('=');
    if (eq == std::string_view::npos) return usage_error{fmt::format("--reserve: '{}' is not MAC=IP (like 52:54:00:12:34:56=192.168.64.10)", text)};
    std::string why;
    const auto mac = parse_nic_mac(text.substr(0, eq), "--reserve", why);
    if (!mac) return usage_error{why};
    const auto address = ankanet::ipv4_address::parse(text.substr(eq + 1));
    if (!address) return usage_error{fmt::format("--reserve: '{}' is not an IPv4 address", text.substr(eq + 1))};
    return reservation{*mac, *address};
}

inline std::variant<netns_attachment, usage_error> parse_netns(std::string_view spec) {
    netns_attachment attachment;
    const auto comma = spec.find(',');
    attachment.path = std::string{spec.substr(0, comma)};
    if (attachment.path.empty()) return usage_error{"--netns needs a namespace path or name"};
    if (attachment.path.find('/') == std::string::npos) attachment.path = "/run/netns/" + attachment.path;

    std::string_view rest = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
    while (!rest.empty()) {
        const auto next = rest.find(',');
        const auto item = rest.substr(0, next);
        rest = next == std::string_view::npos ? std::string_view{} : rest.substr(next + 1);
        const auto eq = item.find('=');
        const auto key = item.substr(0, eq);
        const auto value = eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
        if (key == "ifname") {
            // IFNAMSIZ is 16 with the terminating NUL; '/' and whitespace are refused by the kernel.
            if (value.empty() || value.size() > 15 || value.find_first_of("/ \t:") != std::string_view::npos) {
                return usage_error{fmt::format("--netns: interface name '{}' is not valid (1-15 characters, no '/', ':' or space)", value)};
            }
            attachment.ifname = std::string{value};
        } else if (key == "mac") {
            std::string why;
            const auto mac = parse_nic_mac(value, "--netns", why);
            if (!mac) return usage_error{why};
            attachment.mac = *mac;
        } else if (key == "uuid") {
            const auto uuid = ankanet::l2::vm_uuid::parse(value);
            if (!uuid) return usage_error{fmt::format("--netns: '{}' is not a UUID (expected like 6f9619ff-8b86-d011-b42d-00c04fc964ff)", value)};
            attachment.uuid = *uuid;
        } else {
            return usage_error{fmt::format("--netns: unknown setting '{}' (known: ifname=NAME, mac=MAC, uuid=UUID)", item)};
        }
    }
    if (attachment.mac && attachment.uuid) {
        return usage_error{"--netns: give mac= (a custom MAC) or uuid= (a stable one), not both"};
    }
    return attachment;
}

/// `--dhcp-rate N[/BURST]`: whole numbers from 1 to max_dhcp_rate; the burst defaults to three
/// seconds' worth (the default 10/30 keeps that ratio) and is at least N.
inline std::variant<ankanet::dhcp::service_limits, usage_error> parse_dhcp_rate(std::string_view text,
                                                                                ankanet::dhcp::service_limits limits) {
    const auto slash = text.find('/');
    const auto rate = parse_size(text.substr(0, slash));
    const auto burst = slash == std::string_view::npos ? std::optional<std::size_t>{} : parse_size(text.substr(slash + 1));
    const auto in_range = [](std::optional<std::size_t> v) { return v && *v >= 1 && static_cast<double>(*v) <= max_dhcp_rate; };
    if (!in_range(rate) || (slash != std::string_view::npos && (!in_range(burst) || *burst < *rate))) {
        return usage_error{fmt::format("--dhcp-rate: '{}' is not N or N/BURST with 1 <= N <= BURST <= {}", text, max_dhcp_rate)};
    }
    limits.messages_per_second = static_cast<double>(*rate);
    limits.message_burst = burst ? static_cast<double>(*burst) : std::min(max_dhcp_rate, 3.0 * static_cast<double>(*rate));
    return limits;
}

} // namespace detail

/// The name of the port ankanetd gives each VM of the command line.
inline std::string netns_port_name(const netns_attachment& ns) { return fmt::format("netns:{}:{}", ns.path, ns.ifname); }
inline std::string qemu_port_name(std::string_view socket) { return fmt::format("qemu:{}", socket); } // + "#N" per connection
inline std::string dgram_port_name(std::string_view socket) { return fmt::format("dgram:{}", socket); }

/// Maps the VM a forward names, as an operator writes it (a --netns name or path, a socket path, or
/// a MAC), to the port name the network knows it by. A port name itself is taken as it is, so a
/// VM listed by `ankanetd ctl vms` can be named too.
inline std::optional<usage_error> resolve_forward_vm(const options& opts, ankanet::forward::vm_selector& vm) {
    if (vm.mac || vm.name.empty()) return std::nullopt;
    const std::string& given = vm.name;
    if (given.starts_with("netns:") || given.starts_with("qemu:") || given.starts_with("dgram:")) return std::nullopt;
    for (const auto& ns : opts.netns) {
        if (ns.path == given || ns.path == "/run/netns/" + given) {
            vm.name = netns_port_name(ns);
            return std::nullopt;
        }
    }
    for (const auto& path : opts.qemu_sockets) {
        if (path == given) {
            vm.name = qemu_port_name(path);
            return std::nullopt;
        }
    }
    for (const auto& path : opts.dgram_sockets) {
        if (path == given) {
            vm.name = dgram_port_name(path);
            return std::nullopt;
        }
    }
    return usage_error{fmt::format("--forward: '@{}' names no VM of the command line (give a --netns name or path, a "
                                   "--qemu-socket or --dgram-socket path, or a MAC)", given)};
}

namespace detail {

/// The options as CLI11 collects them: text, checked afterwards by the value parsers above, so a
/// value from the config file meets the same checks, and gets the same message, as one from argv.
struct raw_options {
    std::string mode, mtu, pcap, subnet, dhcp_range, lease_time, leases, mac_secret, dhcp_rate, egress, max_flows,
        control, bridge_interface, pid_file, runas;
    std::vector<std::string> netns, qemu_sockets, dgram_sockets, reserve, dns_upstreams, forwards;
    bool isolate = false, no_host_loopback = false, direct_mac = false, no_offload = false;
    std::size_t quiet = 0, verbose = 0;
};

inline constexpr std::string_view help_footer =
    "Control client:\n"
    "  ankanetd ctl PATH [--json] list|vms|leases|forward add SPEC|forward remove ID|SPEC|link VM up|down\n"
    "                       (ankanetd ctl --help for more)\n"
    "\n"
    "Config file (--config FILE): TOML (or INI), one key per long option without its dashes;\n"
    "repeatable options take a list, switches true or false; the command line wins over the file:\n"
    "  mode = \"shared\"\n"
    "  netns = [\"vm1\", \"vm2,ifname=eth1\"]\n"
    "  egress = \"127.0.0.0/8\"\n"
    "  forward = [\"tcp:8080:80@vm1\"]\n"
    "  isolate = true\n"
    "A key ankanetd does not know is refused. Example: share/doc/ankanet/ankanetd.toml.\n";

/// Declares every option of the daemon on `app`, bound to `raw`: the one list the help is made of.
inline void declare_options(CLI::App& app, raw_options& raw) {
    // An option given twice keeps its last value, as before the switch to CLI11; the repeatable
    // ones (vectors) keep all, in order.
    const auto single = [&app](const std::string& names, std::string& into, const std::string& type, const std::string& help) {
        app.add_option(names, into, help)->type_name(type)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    };
    const auto repeated = [&app](const std::string& names, std::vector<std::string>& into, const std::string& type,
                                 const std::string& help) { app.add_option(names, into, help)->type_name(type); };
    app.set_help_flag("-h,--help", "print this help and exit");
    app.add_flag("-V,--version")->description("print the version and exit")->configurable(false);
    app.set_config("-c,--config", "", "read options from FILE (TOML or INI; see \"Config file\" below)")
        ->type_name("FILE");
    app.allow_config_extras(CLI::config_extras_mode::error);
    app.add_flag("-q,--quiet", raw.quiet, "log warnings and errors only");
    app.add_flag("-v,--verbose", raw.verbose, "log debug messages too");
    single("-u,--runas", raw.runas, "USER",
           "once every VM is attached, become USER (its groups, gid and uid)\n"
           "and keep one capability, CAP_NET_BIND_SERVICE (forwards below port\n"
           "1024 added through --control); TAPs, sockets and the pcap stay open.\n"
           "The --leases and --pid-file directories must be writable by USER");
    single("--pid-file", raw.pid_file, "FILE",
           "write the daemon's pid to FILE once it serves (every VM's port and\n"
           "socket in place); removed on a clean exit");
    single("-m,--mode", raw.mode, "MODE",
           "network type: shared (default: NAT + DHCP on 192.168.64.0/24),\n"
           "host (192.168.128.0/24, no route beyond the host), bridge (each VM\n"
           "is a device of the LAN behind --bridge-interface, served by the\n"
           "LAN's DHCP), disconnected (the cable is out)");
    repeated("-n,--netns", raw.netns, "PATH[,ifname=NAME][,mac=MAC|,uuid=UUID]",
             "create a TAP (default eth0) inside the network namespace PATH (or\n"
             "/run/netns/NAME) and attach it as a VM; repeatable. mac= sets its\n"
             "MAC; uuid= names the VM, whose MAC is then derived from it and\n"
             "--mac-secret (the same after every restart); neither: a random MAC");
    repeated("-s,--qemu-socket", raw.qemu_sockets, "PATH",
             "listen on a unix socket for QEMU -netdev stream; each connection is\na VM; repeatable");
    repeated("-d,--dgram-socket", raw.dgram_sockets, "PATH",
             "bind a unix datagram socket (vfkit, QEMU -netdev dgram) as a VM;\nrepeatable");
    single("--mtu", raw.mtu, "N", "MTU offered to guests (576..65520, default 1500; bridge: the\ninterface's)");
    single("-p,--pcap", raw.pcap, "FILE", "record every frame of every VM to FILE (pcap: Wireshark, tcpdump)");
    app.add_flag("--no-offload", raw.no_offload,
                 "--netns TAPs without a virtio-net header: the guest sends and\n"
                 "receives MTU-sized frames with finished checksums (default: TSO and\n"
                 "checksum offload, so 64 KiB TCP segments cross in one call)");
    single("--subnet", raw.subnet, "CIDR",
           "the guests' subnet, /16 to /30 (default: the mode's); the gateway is\n"
           "the address given, or the first host address when a network address\nis given");
    single("--dhcp-range", raw.dhcp_range, "FIRST-LAST", "addresses DHCP hands out (default: every host address but the\ngateway)");
    repeated("--reserve", raw.reserve, "MAC=IP", "always give IP to the VM with MAC (a static IP); repeatable");
    single("--lease-time", raw.lease_time, "SECONDS", "DHCP lease time (4..31536000, default 3600)");
    single("-l,--leases", raw.leases, "FILE",
           "keep DHCP leases in FILE across restarts, and the random MACs of\n"
           "--netns VMs (by namespace and interface) in FILE.macs (default: in\nmemory)");
    single("--mac-secret", raw.mac_secret, "FILE",
           "the host secret stable MACs are derived from (32 hex digits;\ncreated, mode 0600, when FILE does not exist)");
    single("--dhcp-rate", raw.dhcp_rate, "N[/BURST]",
           "DHCP messages one VM may send per second, and in one burst (default\n"
           "10/30; beyond it its messages are dropped and logged)");
    app.add_flag("--isolate", raw.isolate, "VMs reach the gateway but not each other");
    single("-e,--egress", raw.egress, "any|host|CIDR[,CIDR...]",
           "shared mode: where guests' connections may go: any (default), host\n"
           "(the host's loopback only), or a list of CIDRs\n(127.0.0.0/8,198.51.100.0/24)");
    app.add_flag("--no-host-loopback", raw.no_host_loopback, "the gateway's address no longer stands for the host's 127.0.0.1");
    single("--max-flows-per-vm", raw.max_flows, "N",
           "connections one VM may hold at once, per protocol (1..65536,\ndefault 1024)");
    repeated("--dns-upstream", raw.dns_upstreams, "IP[:PORT]",
             "a resolver the gateway's DNS server relays guests' queries to;\n"
             "repeatable, tried in order (default: the host's /etc/resolv.conf,\nre-read when it changes)");
    repeated("-f,--forward", raw.forwards, "[tcp:|udp:][HOSTADDR:]HOSTPORT[-END]:GUESTPORT[-END][@VM]",
             "shared and host modes: forward host port(s) to a VM's port(s);\n"
             "repeatable. TCP and 127.0.0.1 unless given (0.0.0.0: every address);\n"
             "VM: a --netns name or path, a --qemu-socket or --dgram-socket path,\n"
             "or a MAC (default: the only VM). It follows the VM's address (its\nlease, or what it announces)");
    single("-C,--control", raw.control, "PATH",
           "a unix socket taking JSON requests, one per line: list, add and\n"
           "remove forwards, list VMs and leases, set a VM's link (client:\nankanetd ctl)");
    single("--bridge-interface", raw.bridge_interface, "IF",
           "bridge mode: the host interface the VMs join the LAN through\n(default: $ANKA_BRIDGE_NAME); needs CAP_NET_RAW");
    app.add_flag("--direct-mac", raw.direct_mac,
                 "bridge mode: VMs' own MACs go on the LAN, and the interface is made\n"
                 "promiscuous (default: every VM appears behind the interface's MAC)");
    app.footer(std::string{help_footer});
}

/// Checks each value of `raw` with its parser and fills `opts`; the first mistake, as one sentence.
inline std::optional<usage_error> check_values(const CLI::App& app, const raw_options& raw, options& opts) {
    const auto given = [&app](const char* name) { return app.count(name) > 0; };
    for (const auto* option : app.get_options()) {
        if (option->count() > 0 && !option->get_lnames().empty()) opts.given.push_back("--" + option->get_lnames().front());
    }
    opts.isolate = raw.isolate;
    opts.host_loopback = !raw.no_host_loopback;
    opts.direct_mac = raw.direct_mac;
    opts.offload = !raw.no_offload;
    opts.verbosity = static_cast<int>(raw.verbose) - static_cast<int>(raw.quiet);
    if (given("--mode")) {
        const auto mode = ankanet::parse_network_mode(raw.mode);
        if (!mode) return usage_error{fmt::format("--mode: '{}' is not one of shared, host, bridge, disconnected", raw.mode)};
        opts.mode = *mode;
    }
    for (const auto& spec : raw.netns) {
        auto parsed = parse_netns(spec);
        if (auto* error = std::get_if<usage_error>(&parsed)) return *error;
        opts.netns.push_back(std::get<netns_attachment>(std::move(parsed)));
    }
    for (const auto& path : raw.qemu_sockets) {
        if (path.empty()) return usage_error{"--qemu-socket needs a path"};
    }
    for (const auto& path : raw.dgram_sockets) {
        if (path.empty()) return usage_error{"--dgram-socket needs a path"};
    }
    opts.qemu_sockets = raw.qemu_sockets;
    opts.dgram_sockets = raw.dgram_sockets;
    if (given("--mtu")) {
        const auto mtu = parse_size(raw.mtu);
        if (!mtu || *mtu < ankanet::backend::min_mtu || *mtu > ankanet::backend::max_mtu) {
            return usage_error{fmt::format("--mtu: '{}' is not a number from {} to {}", raw.mtu, ankanet::backend::min_mtu,
                                           ankanet::backend::max_mtu)};
        }
        opts.mtu = *mtu;
        opts.mtu_given = true;
    }
    // The file options: given empty is a mistake, not "absent".
    const auto file = [&given](const char* name, const std::string& value, std::optional<std::string>& into) -> std::optional<usage_error> {
        if (!given(name)) return std::nullopt;
        if (value.empty()) return usage_error{fmt::format("{} needs a file name", name)};
        into = value;
        return std::nullopt;
    };
    for (auto error : {file("--pcap", raw.pcap, opts.pcap), file("--leases", raw.leases, opts.leases),
                       file("--mac-secret", raw.mac_secret, opts.mac_secret), file("--pid-file", raw.pid_file, opts.pid_file)}) {
        if (error) return error;
    }
    if (given("--subnet")) {
        const auto subnet = ankanet::ipv4_prefix::parse(raw.subnet);
        if (!subnet || subnet->length() < 16 || subnet->length() > 30) {
            return usage_error{fmt::format("--subnet: '{}' is not an IPv4 subnet from /16 to /30 (like 10.0.2.0/24)", raw.subnet)};
        }
        opts.subnet = *subnet;
    }
    if (given("--dhcp-range")) {
        auto range = parse_range(raw.dhcp_range);
        if (auto* error = std::get_if<usage_error>(&range)) return *error;
        opts.dhcp_range = std::get<address_range>(range);
    }
    for (const auto& spec : raw.reserve) {
        auto reserved = parse_reservation(spec);
        if (auto* error = std::get_if<usage_error>(&reserved)) return *error;
        opts.reservations.push_back(std::get<reservation>(reserved));
    }
    if (given("--lease-time")) {
        const auto seconds = parse_size(raw.lease_time);
        if (!seconds || *seconds < min_lease_time || *seconds > max_lease_time) {
            return usage_error{fmt::format("--lease-time: '{}' is not a number of seconds from {} to {}", raw.lease_time,
                                           min_lease_time, max_lease_time)};
        }
        opts.lease_time = static_cast<std::uint32_t>(*seconds);
    }
    if (given("--dhcp-rate")) {
        auto limits = parse_dhcp_rate(raw.dhcp_rate, opts.dhcp_limits);
        if (auto* error = std::get_if<usage_error>(&limits)) return *error;
        opts.dhcp_limits = std::get<ankanet::dhcp::service_limits>(limits);
    }
    if (given("--egress")) {
        std::string why;
        auto policy = ankanet::nat::parse_egress(raw.egress, &why);
        if (!policy) return usage_error{fmt::format("--egress: {}", why)};
        opts.egress = raw.egress;
        opts.egress_policy = std::move(*policy);
    }
    for (const auto& text : raw.dns_upstreams) {
        const auto upstream = ankanet::dns::parse_upstream(text);
        if (!upstream) {
            return usage_error{fmt::format("--dns-upstream: '{}' is not an IP address with an optional port "
                                           "(like 127.0.0.1:5353 or [::1]:53)", text)};
        }
        opts.dns_upstreams.push_back(*upstream);
    }
    if (given("--max-flows-per-vm")) {
        const auto flows = parse_size(raw.max_flows);
        if (!flows || *flows < 1 || *flows > max_flows_per_vm_limit) {
            return usage_error{fmt::format("--max-flows-per-vm: '{}' is not a number from 1 to {}", raw.max_flows, max_flows_per_vm_limit)};
        }
        opts.max_flows_per_vm = *flows;
    }
    for (const auto& spec : raw.forwards) {
        std::string why;
        auto rule = ankanet::forward::parse_rule(spec, &why);
        if (!rule) return usage_error{fmt::format("--forward: {}", why)};
        opts.forwards.push_back(std::move(*rule));
    }
    if (given("--control")) {
        if (raw.control.empty()) return usage_error{"--control needs a socket path"};
        opts.control = raw.control;
    }
    if (given("--runas")) {
        if (raw.runas.empty()) return usage_error{"--runas needs a user name"};
        opts.runas = raw.runas;
    }
    if (given("--bridge-interface")) {
        const auto& name = raw.bridge_interface;
        if (name.empty() || name.size() >= 16 || name.find_first_of("/: \t") != std::string::npos) {
            return usage_error{fmt::format("--bridge-interface: '{}' is not an interface name (1-15 characters, no '/', ':' or space)",
                                           name)};
        }
        opts.bridge_interface = name;
    }
    return std::nullopt;
}

/// The options checked together: what a mode has no use for, forwards' VMs, uuid= without a secret.
inline std::optional<usage_error> check_combination(options& opts) {
    if (opts.mode == ankanet::network_mode::bridge) {
        // The LAN's DHCP server, router and DNS serve bridged VMs: what configures ankanet's own has no use.
        for (const std::string_view gateway_only : {"--subnet", "--dhcp-range", "--reserve", "--lease-time", "--leases",
                                                    "--dhcp-rate", "--no-host-loopback", "--max-flows-per-vm",
                                                    "--dns-upstream"}) {
            if (std::find(opts.given.begin(), opts.given.end(), gateway_only) != opts.given.end()) {
                return usage_error{fmt::format("{} is for shared and host modes; in bridge mode the LAN's DHCP server, "
                                               "router and DNS serve the VMs", gateway_only)};
            }
        }
    } else {
        if (opts.bridge_interface) return usage_error{"--bridge-interface is for bridge mode (--mode bridge)"};
        if (opts.direct_mac) return usage_error{"--direct-mac is for bridge mode (--mode bridge)"};
    }
    if (opts.egress && opts.mode != ankanet::network_mode::shared) {
        return usage_error{fmt::format("--egress is for shared mode; {} mode has its own reach", opts.mode)};
    }
    if (!opts.forwards.empty() && opts.mode != ankanet::network_mode::shared && opts.mode != ankanet::network_mode::host) {
        return usage_error{fmt::format("--forward is for shared and host modes; {} mode has no gateway to forward through", opts.mode)};
    }
    for (auto& forward : opts.forwards) {
        if (auto error = resolve_forward_vm(opts, forward.vm)) return *error;
    }
    for (const auto& ns : opts.netns) {
        if (ns.uuid && !opts.mac_secret) {
            return usage_error{fmt::format("--netns {}: uuid= needs --mac-secret FILE, the host secret stable MACs are derived from", ns.path)};
        }
    }
    return std::nullopt;
}

/// CLI11's message on one line, in the words of the checks above for the common two.
inline std::string one_line(std::string message) {
    std::replace(message.begin(), message.end(), '\n', ' ');
    while (message.ends_with(' ')) message.pop_back();
    constexpr std::string_view unexpected = "The following argument was not expected: ";
    constexpr std::string_view unexpected_several = "The following arguments were not expected: ";
    if (message.starts_with(unexpected)) return fmt::format("unknown argument '{}'", message.substr(unexpected.size()));
    if (message.starts_with(unexpected_several)) return fmt::format("unknown arguments: {}", message.substr(unexpected_several.size()));
    // "--pcap: 1 required FILE missing": the option was given no value (or an empty one).
    if (const auto colon = message.find(": 1 required "); colon != std::string::npos && message.ends_with(" missing") &&
                                                          message.starts_with("-")) {
        return fmt::format("{} needs a value", message.substr(0, colon));
    }
    return message;
}

} // namespace detail

/// Parses the arguments after the program name (and the --config file they name) with CLI11, then
/// checks every value with its own parser and the values together. CLI11's own messages (an
/// unknown option, a missing value, a config key it does not know) are kept on one line.
inline command parse_command_line(std::span<const std::string_view> args) {
    CLI::App app{"ankanetd: serves VMs a network (NAT + DHCP, host-only, bridged or disconnected)", "ankanetd"};
    detail::raw_options raw;
    detail::declare_options(app, raw);
    // CLI11 takes the arguments last-first.
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    try {
        app.parse(reversed);
    } catch (const CLI::CallForHelp&) {
        return show_help{app.help()};
    } catch (const CLI::ParseError& e) {
        return usage_error{detail::one_line(e.what())};
    }
    if (app.count("--version") > 0) return show_version{};
    options opts;
    if (auto error = detail::check_values(app, raw, opts)) return *error;
    if (auto error = detail::check_combination(opts)) return *error;
    return run{std::move(opts)};
}

/// The one line a usage error is reported in: the mistake, and where the options are explained.
inline std::string usage_error_line(const usage_error& error) {
    return fmt::format("ankanetd: {}; see ankanetd --help\n", error.message);
}

/// The file random MACs are remembered in (ankanet::l2::mac_memory): FILE.macs beside --leases FILE.
inline std::optional<std::string> mac_state_file(const options& opts) {
    if (!opts.leases) return std::nullopt;
    return *opts.leases + ".macs";
}

/// Refuses two options that would write one file — the pcap over the lease file, the MAC state
/// file or the host secret, or any two of those — by the files' identity when they exist and by
/// their resolved paths when they do not (ankanet::detail::same_file), and a file that is another's
/// temporary file (`FILE.tmp`, through which the lease, MAC state and secret files are replaced).
/// Reads the file system, writes nothing.
inline std::optional<usage_error> check_files(const options& opts) {
    struct file {
        std::string name;   // how the operator knows it
        std::string path;
        bool replaced;      // written through path + ".tmp" (ankanet::detail::replace_file)
    };
    std::vector<file> files;
    if (opts.pcap) files.push_back({fmt::format("--pcap {}", *opts.pcap), *opts.pcap, false});
    if (opts.control) files.push_back({fmt::format("--control {}", *opts.control), *opts.control, false});
    if (opts.leases) files.push_back({fmt::format("--leases {}", *opts.leases), *opts.leases, true});
    if (const auto macs = mac_state_file(opts)) {
        files.push_back({fmt::format("the MAC state file {} (of --leases)", *macs), *macs, true});
    }
    if (opts.mac_secret) files.push_back({fmt::format("--mac-secret {}", *opts.mac_secret), *opts.mac_secret, true});
    if (opts.pid_file) files.push_back({fmt::format("--pid-file {}", *opts.pid_file), *opts.pid_file, true});
    for (std::size_t i = 0; i < files.size(); ++i) {
        for (std::size_t j = i + 1; j < files.size(); ++j) {
            if (ankanet::detail::same_file(files[i].path, files[j].path)) {
                return usage_error{fmt::format("{} and {} are the same file; give each a file of its own", files[i].name,
                                               files[j].name)};
            }
        }
    }
    for (const auto& replaced : files) {
        if (!replaced.replaced) continue;
        for (const auto& other : files) {
            if (&other == &replaced) continue;
            if (ankanet::detail::same_file(replaced.path + ".tmp", other.path)) {
                return usage_error{fmt::format("{} is the temporary file {}.tmp that {} is written through; give it another name",
                                               other.name, replaced.path, replaced.name)};
            }
        }
    }
    return std::nullopt;
}

/// Works out the subnet, gateway and DHCP range from the options, checking them together.
inline std::variant<network_plan, usage_error> plan_network(const options& opts) {
    using ankanet::ipv4_address;
    // Disconnected (and bridge, which has no gateway of its own yet) borrow the shared layout.
    const auto mode_default = ankanet::default_subnet(opts.mode).value_or(*ankanet::default_subnet(ankanet::network_mode::shared));
    const auto given = opts.subnet.value_or(mode_default);
    const auto network = given.network().to_u32();
    const auto broadcast = given.broadcast().to_u32();
    network_plan plan;
    plan.subnet = ankanet::gateway_interface(given);
    const auto gateway = plan.subnet.address().to_u32();
    if (gateway == broadcast) {
        return usage_error{fmt::format("--subnet: {} is the broadcast address of its subnet, not a gateway", given.address())};
    }
    plan.range = opts.dhcp_range.value_or(ankanet::default_dhcp_range(plan.subnet));
    const auto first = plan.range.first.to_u32();
    const auto last = plan.range.last.to_u32();
    if (first <= network || last >= broadcast || !plan.subnet.contains(plan.range.first) || !plan.subnet.contains(plan.range.last)) {
        return usage_error{fmt::format("--dhcp-range: {}-{} does not lie within the host addresses of {}/{}",
                                       plan.range.first, plan.range.last, ipv4_address{network}, given.length())};
    }
    if (gateway >= first && gateway <= last) {
        if (first == last) return usage_error{fmt::format("--dhcp-range: {} is the gateway's own address", plan.range.first)};
        plan.excluded.push_back(ipv4_address{gateway});
    }
    for (std::size_t i = 0; i < opts.reservations.size(); ++i) {
        const auto& r = opts.reservations[i];
        if (r.address.to_u32() < first || r.address.to_u32() > last || r.address.to_u32() == gateway) {
            return usage_error{fmt::format("--reserve: {} for {} is not an address of the DHCP range {}-{}", r.address, r.mac,
                                           plan.range.first, plan.range.last)};
        }
        for (std::size_t j = 0; j < i; ++j) {
            if (opts.reservations[j].mac == r.mac) return usage_error{fmt::format("--reserve: {} is reserved twice", r.mac)};
            if (opts.reservations[j].address == r.address) {
                return usage_error{fmt::format("--reserve: {} is reserved for both {} and {}", r.address, opts.reservations[j].mac, r.mac)};
            }
        }
    }
    return plan;
}

} // namespace ankanetd
