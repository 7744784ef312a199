// ankanet-run [options] -- COMMAND... — runs COMMAND in a network namespace of its own (inside a
// user namespace of its own when not root), attached to a shared network (NAT + DHCP) served by
// this process, and exits with COMMAND's status. A command line over the library: the options
// are ankanetd's (same names, same meanings, the library's own parsers), the work is
// ankanet::make_shared_network and ankanet::sandbox::run_command.
//
// Exit status: COMMAND's (128 + N when signal N killed it); 2 for a bad command line (nothing
// runs); 125 when the network or the namespaces could not be set up; 126 or 127 when COMMAND
// could not be executed or was not found, as a shell says.
// shared.hpp first: it brings the value parsers (nat/egress.hpp, dns/upstream.hpp,
// forward/table.hpp), and dns/query_table.hpp, which it includes, does not compile after
// dns/upstream.hpp has declared a namespace ankanet::dns::detail.
#include <ankanet/shared.hpp>

#include <ankanet/backend/pcap.hpp>
#include <ankanet/sandbox/run.hpp>
#include <ankanet/version.hpp>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

constexpr int usage_status = 2;
constexpr int setup_status = 125;

/// What the command line asks for, parsed by the library's own parsers.
struct settings {
    ankanet::gateway_network_options network;
    std::string egress = "any";
    std::vector<std::string> dns_upstreams;
    std::vector<std::string> forwards;
    std::size_t mtu = ankanet::backend::default_mtu;
    std::optional<std::string> pcap;
    bool offload = true;
    bool resolv_conf = true;
    bool verbose = false;
    std::string interface_name = "eth0";
    std::vector<std::string> command;
};

int usage_error(std::string_view message) {
    fmt::print(stderr, "ankanet-run: {}; see ankanet-run --help\n", message);
    return usage_status;
}

/// Turns the option texts into the network's options; a message for the first that is wrong.
std::optional<std::string> apply(settings& s) {
    std::string why;
    auto egress = ankanet::nat::parse_egress(s.egress, &why);
    if (!egress) return fmt::format("--egress: {}", why);
    s.network.egress = std::move(*egress);
    for (const auto& text : s.dns_upstreams) {
        const auto upstream = ankanet::dns::parse_upstream(text);
        if (!upstream) return fmt::format("--dns-upstream: '{}' is not an IP address with an optional port (like 127.0.0.1:5353)", text);
        s.network.dns_upstreams.servers.push_back(*upstream);
    }
    for (const auto& text : s.forwards) {
        auto rule = ankanet::forward::parse_rule(text, &why);
        if (!rule) return fmt::format("--forward: {}", why);
        if (rule->vm.mac || !rule->vm.name.empty()) return fmt::format("--forward {}: the command is the only VM; leave out @VM", text);
        s.network.forwards.push_back(std::move(*rule));
    }
    s.network.mtu = s.mtu;
    return std::nullopt;
}

int run(settings& s) {
    boost::asio::io_context io;
    std::string why;
    auto network = ankanet::make_shared_network(io.get_executor(), std::move(s.network), &why);
    if (!network) {
        fmt::print(stderr, "ankanet-run: cannot start the network: {}\n", why.empty() ? network.error().message() : why);
        return setup_status;
    }
    std::optional<ankanet::backend::pcap_writer> pcap;
    if (s.pcap) {
        auto writer = ankanet::backend::pcap_writer::open(*s.pcap);
        if (!writer) {
            fmt::print(stderr, "ankanet-run: --pcap {}: {}\n", *s.pcap, writer.error().message());
            return setup_status;
        }
        pcap.emplace(std::move(*writer));
        (*network)->set_frame_tap([&pcap](ankanet::wire::const_bytes frame) { pcap->write(frame); });
    }

    ankanet::sandbox::run_options options;
    options.spawn.command = s.command;
    options.spawn.interface_name = s.interface_name;
    options.spawn.tap.mtu = s.mtu;
    // As ankanetd's --netns TAPs: 64 KiB TCP segments cross in one call, checksums left to "the NIC".
    options.spawn.tap.vnet_header = options.spawn.tap.checksum_offload = options.spawn.tap.tso4 = s.offload;
    options.resolv_conf = s.resolv_conf;
    if (s.verbose) options.log = [](std::string_view line) { fmt::print(stderr, "ankanet-run: {}\n", line); };
    const auto status = ankanet::sandbox::run_command(io, **network, std::move(options), &why);
    if (pcap) (void)pcap->flush();
    if (!status) {
        fmt::print(stderr, "ankanet-run: {}\n", why);
        return status.error() == std::errc::no_such_file_or_directory && why.ends_with("command not found") ? 127 : setup_status;
    }
    if (!why.empty()) fmt::print(stderr, "ankanet-run: {}\n", why); // the command could not be executed
    return *status;
}

} // namespace

int main(int argc, char** argv) {
    settings s;
    CLI::App app{"Runs COMMAND in a network namespace of its own, on a shared network (NAT + DHCP, gateway and DNS\n"
                 "192.168.64.1) served by this process; exits with COMMAND's status. Not root: inside a user\n"
                 "namespace of its own too, the caller's ids mapped to root.",
                 "ankanet-run"};
    // The usage line CLI11 2.1 prints is "Usage: ankanet-run [<OPTIONS label>]": make it name COMMAND.
    app.get_formatter()->label("OPTIONS", "OPTIONS] -- COMMAND [ARGS...");
    app.set_version_flag("--version", std::string{"ankanet-run "} + std::string{ankanet::version_string});
    app.add_option("--egress", s.egress,
                   "where COMMAND's connections may go: any (default), host (the host's loopback only), or a list\n"
                   "of CIDRs (127.0.0.0/8,198.51.100.0/24)")
        ->type_name("POLICY");
    app.add_option("--dns-upstream", s.dns_upstreams,
                   "a resolver the gateway's DNS server relays queries to; repeatable, tried in order\n"
                   "(default: the host's /etc/resolv.conf)")
        ->type_name("IP[:PORT]")
        ->allow_extra_args(false); // one value per occurrence, as ankanetd takes it
    app.add_option("--forward", s.forwards,
                   "forward host port(s) to COMMAND's port(s); repeatable. TCP and 127.0.0.1 unless given\n"
                   "(0.0.0.0: every address)")
        ->type_name("[tcp:|udp:][HOSTADDR:]HOSTPORT[-END]:GUESTPORT[-END]")
        ->allow_extra_args(false);
    app.add_option("--mtu", s.mtu, "MTU of COMMAND's interface (576..65520, default 1500)")
        ->type_name("N")
        ->check(CLI::Range(ankanet::backend::min_mtu, ankanet::backend::max_mtu));
    app.add_option("--pcap", s.pcap, "record every frame to FILE (pcap, Wireshark/tcpdump)")->type_name("FILE");
    app.add_flag_callback(
        "--no-offload", [&s] { s.offload = false; },
        "a TAP without a virtio-net header: MTU-sized frames with finished checksums (default:\n"
                 "TSO and checksum offload)");
    app.add_flag_callback(
        "--no-resolv-conf", [&s] { s.resolv_conf = false; },
        "leave /etc/resolv.conf as it is (default: COMMAND sees one naming the gateway, bind-mounted\n"
                 "in a private mount namespace)");
    app.add_option("--interface", s.interface_name, "the name of COMMAND's interface (default eth0)")->type_name("NAME");
    app.add_flag("-v,--verbose", s.verbose, "say which address COMMAND got, and what goes wrong with its lease");
    // The options end at the first "--"; everything after it is COMMAND's, options included.
    int options_end = 1;
    while (options_end < argc && std::string_view{argv[options_end]} != "--") ++options_end;
    for (int i = options_end + 1; i < argc; ++i) s.command.emplace_back(argv[i]);
    try {
        app.parse(options_end, argv);
    } catch (const CLI::CallForHelp&) {
        std::fputs(app.help().c_str(), stdout);
        return 0;
    } catch (const CLI::CallForVersion&) {
        fmt::print("ankanet-run {}\n", ankanet::version_string);
        return 0;
    } catch (const CLI::ExtrasError& e) {
        if (options_end == argc) return usage_error("COMMAND goes after -- (ankanet-run [OPTIONS] -- COMMAND...)");
        return usage_error(e.what());
    } catch (const CLI::ParseError& e) {
        return usage_error(e.what());
    }
    if (s.command.empty()) return usage_error("no COMMAND to run (ankanet-run [OPTIONS] -- COMMAND...)");
    if (const auto error = apply(s)) return usage_error(*error);
    return run(s);
}
