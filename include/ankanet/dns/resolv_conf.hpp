/// @file
/// ankanet::dns resolv.conf — the host's upstream resolvers, read from the text of /etc/resolv.conf.
///
/// Theory of operation. The DNS forwarder sends guests' queries to the resolvers the host itself
/// uses, so it reads the same file the host's C library reads, the same way glibc's res_init does
/// (resolv/res_init.c), because a server glibc would not use is not a server the host uses:
///  * A line whose first byte is '#' or ';' is a comment. A keyword counts only at the very start of
///    its line and only when a blank (space or tab) follows it: " nameserver x" and `"nameserver\n"`
///    are not nameserver lines, for glibc or for us.
///  * `nameserver ADDRESS`: blanks, then the address up to the first of `" "`, `"\t"`, `"#"`, `";"` — so a
///    comment may follow the address on the same line, and anything after the address is ignored.
///    ADDRESS is IPv4 dotted-quad, or IPv6 text with an optional "%scope" (an interface name or
///    index, needed for link-local fe80::/10 servers). The scope is kept as text: turning a name
///    into an interface index is a system call, so it is the caller's (if_nametoindex).
///  * Every other keyword (search, domain, options, sortlist) and every unknown line is ignored.
///  * glibc uses at most 3 nameservers (MAXNS) and ignores the rest. We keep them all, in file
///    order, and mark the first three `within_glibc_limit`: a forwarder may choose to use only
///    those (behaving like the host) or all of them (more redundancy); the daemon can log the rest.
///  * Differences from glibc, on purpose: IPv4 must be dotted-quad with four decimal octets; glibc
///    also takes inet_aton's historic forms ("127.1", "0x7f.0.0.1", octal) — such lines land in
///    `skipped` with a reason rather than being guessed at. With no nameserver at all glibc falls
///    back to 127.0.0.1; we return an error instead and let the caller choose a fallback.
///  * parse() fails only when nothing usable was found: errc::unsupported when there is no
///    nameserver line, errc::bad_address_text when every nameserver line was malformed. Malformed
///    lines next to good ones are not errors: they are listed in `skipped` (line number and why).
///  * Pure: it takes the text; reading the file, watching it for changes and re-reading it (libslirp
///    re-reads at most once a second) are the caller's. The parser reads each byte a bounded number
///    of times and allocates only the vectors it returns.
///  * Loopback resolvers (127.0.0.53 of systemd-resolved, 127.0.0.1 of a local dnsmasq, ::1) are
///    kept like any other: the forwarder's upstream side is a real host socket, so a loopback
///    server works for it exactly as it works for the host. has_loopback() says one is there.
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>

#include <arpa/inet.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ankanet::dns {

/// The port every resolv.conf server listens on (the file cannot name another).
inline constexpr std::uint16_t default_dns_port = 53;
/// How many nameservers glibc uses (MAXNS in resolv.h); later lines are ignored by the host.
inline constexpr std::size_t glibc_max_nameservers = 3;
/// The stub resolver of systemd-resolved.
inline constexpr wire::ipv4_address systemd_resolved_stub{127, 0, 0, 53};

/// One upstream DNS server.
struct upstream_server {
    /// The address family of a resolver.
    enum class family_type : std::uint8_t { ipv4, ipv6 };

    family_type family = family_type::ipv4; ///< family
    wire::ipv4_address ipv4;            ///< when family is ipv4
    std::array<std::uint8_t, 16> ipv6{}; ///< when family is ipv6, network order
    std::string scope;                  ///< IPv6 "%scope" text without the '%', empty if none
    std::uint16_t port = default_dns_port; ///< port
    std::size_t line = 0;               ///< 1-based line of the file it came from (0: not from a file)
    bool within_glibc_limit = true;     ///< among the first glibc_max_nameservers: the host uses it

    /// Whether it is ipv4.
    bool is_ipv4() const noexcept { return family == family_type::ipv4; }
    /// Whether it is ipv6.
    bool is_ipv6() const noexcept { return family == family_type::ipv6; }

    /// 127.0.0.0/8 or ::1: reachable only through the host's own loopback.
    bool is_loopback() const noexcept {
        if (is_ipv4()) return ipv4.is_loopback();
        for (std::size_t i = 0; i + 1 < ipv6.size(); ++i) {
            if (ipv6[i] != 0) return false;
        }
        return ipv6[15] == 1;
    }
    /// IPv6 link-local (fe80::/10): needs a scope to be reachable.
    bool is_ipv6_link_local() const noexcept { return is_ipv6() && ipv6[0] == 0xfe && (ipv6[1] & 0xc0) == 0x80; }

    /// Memberwise equality.
    bool operator==(const upstream_server&) const = default;
};

/// A nameserver line that was not used, and why.
struct skipped_line {
    std::size_t line = 0;  ///< 1-based
    std::string_view why;  ///< a static English reason

    /// Memberwise equality.
    bool operator==(const skipped_line&) const = default;
};

/// What resolv.conf says about upstream servers.
struct resolv_conf {
    std::vector<upstream_server> servers; ///< file order; never empty after a successful parse()
    std::vector<skipped_line> skipped;    ///< malformed nameserver lines

    /// A loopback server (127.0.0.0/8 or ::1) is among the servers.
    bool has_loopback() const noexcept {
        for (const auto& s : servers) {
            if (s.is_loopback()) return true;
        }
        return false;
    }
    /// systemd-resolved's stub 127.0.0.53 is among the servers.
    bool has_systemd_resolved_stub() const noexcept {
        for (const auto& s : servers) {
            if (s.is_ipv4() && s.ipv4 == systemd_resolved_stub) return true;
        }
        return false;
    }
    /// The servers the host's glibc uses: the first glibc_max_nameservers.
    std::size_t glibc_server_count() const noexcept {
        return servers.size() < glibc_max_nameservers ? servers.size() : glibc_max_nameservers;
    }

    /// Parses the text of a resolv.conf file (see the theory of operation).
    static result<resolv_conf> parse(std::string_view text);
};

namespace detail {

inline constexpr bool is_resolv_blank(char c) noexcept { return c == ' ' || c == '\t'; }

/// Where the nameserver address ends, as glibc cuts it: at a blank or a comment character.
inline std::size_t resolv_token_end(std::string_view rest) noexcept {
    const auto end = rest.find_first_of(" \t#;\r");
    return end == std::string_view::npos ? rest.size() : end;
}

/// Parses IPv6 text (no scope) into 16 bytes. inet_pton is a pure parser (no socket, no lookup);
/// it needs a NUL-terminated copy, and text longer than the longest IPv6 form is refused first.
inline bool parse_ipv6_text(std::string_view text, std::array<std::uint8_t, 16>& out) noexcept {
    constexpr std::size_t longest = 45; // INET6_ADDRSTRLEN - 1: "ffff:...:ffff:255.255.255.255"
    if (text.empty() || text.size() > longest) return false;
    std::array<char, longest + 1> copy{};
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\0') return false;
        copy[i] = text[i];
    }
    return ::inet_pton(AF_INET6, copy.data(), out.data()) == 1;
}

/// A scope is an interface name or index: printable, no blanks, at most IFNAMSIZ - 1 bytes.
inline bool valid_scope(std::string_view scope) noexcept {
    constexpr std::size_t max_ifname = 15;
    if (scope.empty() || scope.size() > max_ifname) return false;
    for (char c : scope) {
        if (c <= ' ' || c > '~' || c == '/' || c == '%') return false;
    }
    return true;
}

} // namespace detail

inline result<resolv_conf> resolv_conf::parse(std::string_view text) {
    constexpr std::string_view keyword = "nameserver";
    resolv_conf conf;
    std::size_t line_number = 0;
    std::size_t nameserver_lines = 0;
    while (!text.empty()) {
        ++line_number;
        const auto newline = text.find('\n');
        std::string_view line = text.substr(0, newline);
        text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);

        if (line.empty() || line.front() == '#' || line.front() == ';') continue;
        if (line.size() <= keyword.size() || line.substr(0, keyword.size()) != keyword ||
            !detail::is_resolv_blank(line[keyword.size()])) {
            continue; // another keyword, or not a keyword line at all
        }
        ++nameserver_lines;
        std::string_view rest = line.substr(keyword.size());
        while (!rest.empty() && detail::is_resolv_blank(rest.front())) rest.remove_prefix(1);
        const std::string_view token = rest.substr(0, detail::resolv_token_end(rest));
        const auto skip = [&](std::string_view why) { conf.skipped.push_back({line_number, why}); };
        if (token.empty()) {
            skip("nameserver without an address");
            continue;
        }

        upstream_server server;
        server.line = line_number;
        if (token.find(':') != std::string_view::npos) {
            const auto percent = token.find('%');
            const std::string_view address = token.substr(0, percent);
            if (!detail::parse_ipv6_text(address, server.ipv6)) {
                skip("not an IPv6 address");
                continue;
            }
            if (percent != std::string_view::npos) {
                const std::string_view scope = token.substr(percent + 1);
                if (!detail::valid_scope(scope)) {
                    skip("bad IPv6 scope after '%'");
                    continue;
                }
                server.scope = std::string{scope};
            }
            server.family = upstream_server::family_type::ipv6;
        } else {
            const auto address = wire::ipv4_address::parse(token);
            if (!address) {
                skip("not a dotted-quad IPv4 address");
                continue;
            }
            server.ipv4 = *address;
        }
        server.within_glibc_limit = conf.servers.size() < glibc_max_nameservers;
        conf.servers.push_back(std::move(server));
    }
    if (conf.servers.empty()) return nameserver_lines == 0 ? errc::unsupported : errc::bad_address_text;
    return conf;
}

} // namespace ankanet::dns
