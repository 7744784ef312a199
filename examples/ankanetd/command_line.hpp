// ankanetd's command line: parsed into `options`, every mistake reported as one clear sentence.
//
//   ankanetd [--mode shared|host|bridge|disconnected] [--netns PATH[,ifname=NAME][,mac=MAC]]...
//            [--qemu-socket PATH]... [--dgram-socket PATH]... [--mtu N] [--pcap FILE]
//
// Kept apart from main.cpp so tests can check every accepted and refused spelling.
#pragma once

#include <ankanet/backend/backend.hpp>
#include <ankanet/config.hpp>
#include <ankanet/wire/address.hpp>

#include <fmt/format.h>

#include <charconv>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace ankanetd {

/// `--netns PATH[,ifname=NAME][,mac=MAC]`: a TAP created inside the namespace at PATH.
struct netns_attachment {
    std::string path;           ///< a namespace file; a bare name means /run/netns/NAME, as `ip netns` names them
    std::string ifname = "eth0";
    std::optional<ankanet::mac_address> mac;
    bool operator==(const netns_attachment&) const = default;
};

struct options {
    ankanet::network_mode mode = ankanet::network_mode::shared;
    std::vector<netns_attachment> netns;
    std::vector<std::string> qemu_sockets;
    std::vector<std::string> dgram_sockets;
    std::size_t mtu = ankanet::backend::default_mtu;
    std::optional<std::string> pcap;
};

/// What parsing asks the program to do.
struct run { options opts; };
struct show_help {};
struct show_version {};
struct usage_error { std::string message; };
using command = std::variant<run, show_help, show_version, usage_error>;

inline constexpr std::string_view usage_text =
    "usage: ankanetd [--mode shared|host|bridge|disconnected]\n"
    "                [--netns PATH[,ifname=NAME][,mac=MAC]]... [--qemu-socket PATH]...\n"
    "                [--dgram-socket PATH]... [--mtu N] [--pcap FILE]\n"
    "\n"
    "  --mode MODE          network type (default shared: NAT + DHCP on 192.168.64.0/24;\n"
    "                       host: 192.168.128.0/24, no route beyond the host)\n"
    "  --netns PATH,...     create a TAP (default eth0) inside the network namespace PATH\n"
    "                       (or /run/netns/NAME) and attach it as a VM; repeatable\n"
    "  --qemu-socket PATH   listen on a unix socket for QEMU -netdev stream; each connection is a VM\n"
    "  --dgram-socket PATH  bind a unix datagram socket (vfkit, QEMU -netdev dgram) as a VM\n"
    "  --mtu N              MTU offered to guests (576..65520, default 1500)\n"
    "  --pcap FILE          record every frame of every VM to FILE (pcap, Wireshark/tcpdump)\n"
    "  --help, --version\n";

namespace detail {

inline std::optional<std::size_t> parse_size(std::string_view text) {
    std::size_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) return std::nullopt;
    return value;
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
            const auto mac = ankanet::mac_address::parse(value);
            if (!mac) return usage_error{fmt::format("--netns: '{}' is not a MAC address (expected like 52:54:00:12:34:56)", value)};
            if (!mac->is_unicast()) {
                return usage_error{fmt::format("--netns: MAC {} is not a unicast address (multicast, broadcast and all-zero are refused)", *mac)};
            }
            attachment.mac = *mac;
        } else {
            return usage_error{fmt::format("--netns: unknown setting '{}' (known: ifname=NAME, mac=MAC)", item)};
        }
    }
    return attachment;
}

} // namespace detail

/// Parses the arguments after the program name.
inline command parse_command_line(std::span<const std::string_view> args) {
    options opts;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const auto arg = args[i];
        if (arg == "--help" || arg == "-h") return show_help{};
        if (arg == "--version") return show_version{};

        // Every other option takes one value: "--opt VALUE" or "--opt=VALUE".
        std::string_view name = arg;
        std::optional<std::string_view> value;
        if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
            name = arg.substr(0, eq);
            value = arg.substr(eq + 1);
        }
        const bool known = name == "--mode" || name == "--netns" || name == "--qemu-socket" ||
                           name == "--dgram-socket" || name == "--mtu" || name == "--pcap";
        if (!known) return usage_error{fmt::format("unknown argument '{}'", arg)};
        if (!value) {
            if (i + 1 >= args.size()) return usage_error{fmt::format("{} needs a value", name)};
            value = args[++i];
        }

        if (name == "--mode") {
            const auto mode = ankanet::parse_network_mode(*value);
            if (!mode) return usage_error{fmt::format("--mode: '{}' is not one of shared, host, bridge, disconnected", *value)};
            opts.mode = *mode;
        } else if (name == "--netns") {
            auto parsed = detail::parse_netns(*value);
            if (auto* error = std::get_if<usage_error>(&parsed)) return *error;
            opts.netns.push_back(std::get<netns_attachment>(std::move(parsed)));
        } else if (name == "--qemu-socket" || name == "--dgram-socket") {
            if (value->empty()) return usage_error{fmt::format("{} needs a path", name)};
            (name == "--qemu-socket" ? opts.qemu_sockets : opts.dgram_sockets).emplace_back(*value);
        } else if (name == "--mtu") {
            const auto mtu = detail::parse_size(*value);
            if (!mtu || *mtu < ankanet::backend::min_mtu || *mtu > ankanet::backend::max_mtu) {
                return usage_error{fmt::format("--mtu: '{}' is not a number from {} to {}", *value,
                                               ankanet::backend::min_mtu, ankanet::backend::max_mtu)};
            }
            opts.mtu = *mtu;
        } else if (name == "--pcap") {
            if (value->empty()) return usage_error{"--pcap needs a file name"};
            opts.pcap = std::string{*value};
        }
    }
    return run{std::move(opts)};
}

} // namespace ankanetd
