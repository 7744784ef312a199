/// @file
/// ankanet::dns upstreams — which resolvers the DNS forwarder and its TCP listener relay to.
///
/// Theory of operation.
///  * An operator names upstreams as text, `IP[:PORT]` (IPv6 in brackets when a port follows:
///    `[::1]:5353`; a scope after '%': `[fe80::1%eth0]`); parse_upstream() reads one. ankanetd's
///    `--dns-upstream` (repeatable) gives a list of them.
///  * With none configured, the host's resolv.conf decides (parsed by resolv_conf.hpp): its servers,
///    on port 53, in file order. A loopback server (systemd-resolved's 127.0.0.53) is fine: the
///    forwarder reaches it through an ordinary host socket.
///  * The file changes under us (DHCP on the host, VPNs, NetworkManager), so upstream_source
///    re-reads it when its modification time or size changes, looking at most once per `recheck`
///    (one stat(); default once a second). A file that disappears or no longer parses leaves the
///    last good list in place, with the error kept for the logs.
///  * Not thread-safe; the forwarder and the TCP listener each own one source.
#pragma once

#include <ankanet/dns/resolv_conf.hpp>
#include <ankanet/error.hpp>
#include <ankanet/result.hpp>

#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace ankanet::dns {

/// One upstream resolver: an address and a UDP/TCP port.
struct upstream {
    boost::asio::ip::address address; ///< address

    /// port
    std::uint16_t port = default_dns_port;
    /// Memberwise equality.
    bool operator==(const upstream&) const = default;
};

/// Reads `IP[:PORT]`: `192.0.2.1`, `192.0.2.1:5353`, `::1`, `[::1]:5353`, `[fe80::1%eth0]:53`.
/// errc::bad_address_text for anything else (a host name, a port of 0 or above 65535).
inline result<upstream> parse_upstream(std::string_view text) {
    std::string_view host = text;
    std::optional<std::string_view> port_text;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) return errc::bad_address_text;
        host = text.substr(1, close - 1);
        const auto rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return errc::bad_address_text;
            port_text = rest.substr(1);
        }
    } else if (const auto colon = text.find(':'); colon != std::string_view::npos && text.find(':', colon + 1) == std::string_view::npos) {
        // One colon: IPv4 with a port. Several: bare IPv6 without one.
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
    }
    upstream out;
    if (port_text) {
        if (port_text->empty() || port_text->size() > 5) return errc::bad_address_text;
        unsigned value = 0;
        for (char c : *port_text) {
            if (c < '0' || c > '9') return errc::bad_address_text;
            value = value * 10 + static_cast<unsigned>(c - '0');
        }
        if (value == 0 || value > 65535) return errc::bad_address_text;
        out.port = static_cast<std::uint16_t>(value);
    }
    if (host.empty()) return errc::bad_address_text;
    boost::system::error_code ec;
    out.address = boost::asio::ip::make_address(std::string{host}, ec);
    if (ec) return errc::bad_address_text;
    return out;
}

/// The servers of a parsed resolv.conf, on port 53, in file order.
inline std::vector<upstream> upstreams_of(const resolv_conf& conf) {
    std::vector<upstream> out;
    for (const auto& s : conf.servers) {
        boost::system::error_code ec;
        boost::asio::ip::address address;
        if (s.is_ipv4()) {
            address = boost::asio::ip::address_v4{s.ipv4.to_u32()};
        } else {
            boost::asio::ip::address_v6::bytes_type bytes;
            for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = s.ipv6[i];
            boost::asio::ip::address_v6 v6{bytes};
            if (!s.scope.empty()) {
                // make_address resolves an interface name to its index; an unknown one is skipped.
                const auto scoped = boost::asio::ip::make_address_v6(v6.to_string() + "%" + s.scope, ec);
                if (ec) continue;
                v6 = scoped;
            }
            address = v6;
        }
        out.push_back(upstream{address, default_dns_port});
    }
    return out;
}

/// Where the upstreams come from: a fixed list, or else the host's resolv.conf.
struct upstream_config {
    std::vector<upstream> servers;           ///< configured upstreams; when empty, the file's
    std::string resolv_conf = "/etc/resolv.conf"; ///< resolv conf
    std::chrono::milliseconds recheck{1000}; ///< the file's mtime is looked at most this often
};

/// The upstream list in use; see the theory of operation.
class upstream_source {
public:
    /// Upstreams as `config` gives them.
    explicit upstream_source(upstream_config config) : config_(std::move(config)) {
        if (!config_.servers.empty()) current_ = config_.servers;
    }

    /// The servers to use at `now` (re-reading resolv.conf if it changed). May be empty.
    const std::vector<upstream>& current(std::chrono::steady_clock::time_point now) {
        if (!config_.servers.empty()) return current_;
        if (checked_ && now - last_check_ < config_.recheck) return current_;
        checked_ = true;
        last_check_ = now;
        reload_if_changed();
        return current_;
    }

    /// Grows by one each time the list changes (never for a fixed list).
    std::uint64_t generation() const noexcept { return generation_; }
    /// Whether the servers come from resolv.conf.
    bool from_file() const noexcept { return config_.servers.empty(); }
    /// Why the file was last not usable (empty when it was).
    std::error_code last_error() const noexcept { return last_error_; }
    /// The configuration it was made with.
    const upstream_config& config() const noexcept { return config_; }

private:
    void reload_if_changed() {
        std::error_code ec;
        const auto mtime = std::filesystem::last_write_time(config_.resolv_conf, ec);
        if (ec) {
            last_error_ = ec; // keep the last good list
            return;
        }
        const auto size = std::filesystem::file_size(config_.resolv_conf, ec);
        if (ec) {
            last_error_ = ec;
            return;
        }
        if (stamp_ && stamp_->first == mtime && stamp_->second == size) return;
        std::ifstream in{config_.resolv_conf, std::ios::binary};
        if (!in) {
            last_error_ = std::make_error_code(std::errc::no_such_file_or_directory);
            return;
        }
        const std::string text{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
        stamp_ = std::pair{mtime, size};
        const auto parsed = resolv_conf::parse(text);
        if (!parsed) {
            last_error_ = parsed.error();
            return;
        }
        last_error_ = {};
        auto next = upstreams_of(*parsed);
        if (next != current_) {
            current_ = std::move(next);
            ++generation_;
        }
    }

    upstream_config config_;
    std::vector<upstream> current_;
    std::optional<std::pair<std::filesystem::file_time_type, std::uintmax_t>> stamp_;
    std::chrono::steady_clock::time_point last_check_{};
    bool checked_ = false;
    std::uint64_t generation_ = 0;
    std::error_code last_error_;
};

} // namespace ankanet::dns
