// ankanet::detail::describe_port_holder — which processes hold a host port, for an error message.
//
// What: port forwarding refuses a host port that is already in use; describe_port_holder names
// what holds it ("pid 1234 (socat)", several joined by ", "), so that the refusal says more than
// EADDRINUSE. It is a diagnostic only: it never decides whether a port is free (bind() does).
//
// How (Linux): the socket tables /proc/net/tcp and /proc/net/tcp6 (LISTEN sockets, state 0A) or
// /proc/net/udp and /proc/net/udp6 (every bound socket) give the inodes of the sockets whose local
// port is `port` and whose local address is `address`, the wildcard 0.0.0.0, the IPv6 wildcard ::
// (a dual-stack socket holds the IPv4 port too) or `address` mapped into IPv6 (::ffff:a.b.c.d).
// Asking about the wildcard 0.0.0.0 matches every IPv4 (and mapped) address, since binding the
// wildcard conflicts with each of them. The kernel prints an address as the hex of its 32-bit words
// in the machine's byte order, which is undone here by reading the words' bytes back in memory
// order. Then /proc/[0-9]*/fd/* are read as symbolic links: a link "socket:[INODE]" to one of the
// inodes makes the process a holder, named with /proc/PID/comm.
//
// Limits: every loop is bounded (at most 4096 processes scanned, 65536 descriptors each, 8 holders
// reported, 64 sockets and 1M lines per table), so on a huge machine a holder may be missed and the
// answer is "" or incomplete. Only the caller's network namespace is seen (the tables are per
// namespace) and only processes in its PID namespace. Without permission to read another user's
// /proc/PID/fd (not root, no CAP_SYS_PTRACE) that process is silently skipped. Not Linux: always
// "". It never throws: any failure, allocation included, gives "".
#pragma once

#include <ankanet/wire/address.hpp>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

namespace ankanet::detail {

enum class port_protocol : std::uint8_t { tcp, udp };

namespace port_holder_impl {

inline constexpr std::size_t max_processes = 4096;
inline constexpr std::size_t max_holders = 8;
inline constexpr std::size_t max_descriptors_per_process = 65536;
inline constexpr std::size_t max_inodes = 64;
inline constexpr std::size_t max_table_lines = std::size_t{1} << 20;

struct dir_closer {
    void operator()(DIR* dir) const noexcept { ::closedir(dir); }
};
using dir_ptr = std::unique_ptr<DIR, dir_closer>;

/// Parses all of `text` as hexadecimal (no prefix, no sign).
template <class Unsigned>
bool parse_hex(std::string_view text, Unsigned& out) noexcept {
    if (text.empty()) return false;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out, 16);
    return error == std::errc{} && end == text.data() + text.size();
}

/// One 32-bit word of a /proc/net address: printed from memory in the machine's byte order, so its
/// bytes in memory are the address's bytes in network order.
inline bool parse_address_word(std::string_view hex, std::uint32_t& host_order) noexcept {
    std::uint32_t raw = 0;
    if (hex.size() != 8 || !parse_hex(hex, raw)) return false;
    std::array<unsigned char, 4> bytes{};
    std::memcpy(bytes.data(), &raw, bytes.size());
    host_order = (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) | (std::uint32_t{bytes[2]} << 8) |
                 std::uint32_t{bytes[3]};
    return true;
}

/// Whether a socket bound to the local address `hex` (8 hex digits, or 32 in the IPv6 tables)
/// holds `wanted`: the same address, a wildcard, or anything when `wanted` is the wildcard.
inline bool address_holds(std::string_view hex, wire::ipv4_address wanted) noexcept {
    const auto v4_holds = [wanted](std::uint32_t bound) {
        return bound == 0 || wanted.is_unspecified() || bound == wanted.to_u32();
    };
    if (hex.size() == 8) {
        std::uint32_t bound = 0;
        return parse_address_word(hex, bound) && v4_holds(bound);
    }
    if (hex.size() != 32) return false;
    std::array<std::uint32_t, 4> words{};
    for (std::size_t i = 0; i < words.size(); ++i) {
        if (!parse_address_word(hex.substr(i * 8, 8), words[i])) return false;
    }
    if (words[0] != 0 || words[1] != 0) return false;
    if (words[2] == 0 && words[3] == 0) return true;          // ::, dual-stack unless IPV6_V6ONLY
    if (words[2] == 0xffffu) return v4_holds(words[3]);       // ::ffff:a.b.c.d
    return false;
}

/// Adds to `inodes` the sockets in one /proc/net table line that hold the port.
inline void match_line(std::string_view line, bool listen_only, wire::ipv4_address address, std::uint16_t port,
                       std::vector<std::uint64_t>& inodes) {
    // "  sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt   uid  timeout inode ..."
    std::array<std::string_view, 10> fields{};
    std::size_t count = 0;
    while (count < fields.size()) {
        const auto start = line.find_first_not_of(" \t");
        if (start == std::string_view::npos) break;
        line.remove_prefix(start);
        const auto end = line.find_first_of(" \t");
        fields[count++] = line.substr(0, end);
        if (end == std::string_view::npos) break;
        line.remove_prefix(end);
    }
    if (count < fields.size()) return;
    const std::string_view local = fields[1];
    const auto colon = local.find(':');
    if (colon == std::string_view::npos) return;
    std::uint16_t local_port = 0;
    if (!parse_hex(local.substr(colon + 1), local_port) || local_port != port) return;
    if (listen_only && fields[3] != "0A") return;
    if (!address_holds(local.substr(0, colon), address)) return;
    std::uint64_t inode = 0;
    const auto [end, error] = std::from_chars(fields[9].data(), fields[9].data() + fields[9].size(), inode);
    if (error != std::errc{} || end != fields[9].data() + fields[9].size() || inode == 0) return;
    for (const auto known : inodes) {
        if (known == inode) return;
    }
    if (inodes.size() < max_inodes) inodes.push_back(inode);
}

/// Reads one /proc/net table line by line (its header line included, which never matches).
inline void scan_table(const char* path, bool listen_only, wire::ipv4_address address, std::uint16_t port,
                       std::vector<std::uint64_t>& inodes) {
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    std::string pending;
    std::array<char, 65536> buffer{};
    std::size_t lines = 0;
    for (;;) {
        const auto n = ::read(fd, buffer.data(), buffer.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        pending.append(buffer.data(), static_cast<std::size_t>(n));
        std::size_t start = 0;
        for (std::size_t newline; (newline = pending.find('\n', start)) != std::string::npos; start = newline + 1) {
            match_line(std::string_view{pending}.substr(start, newline - start), listen_only, address, port, inodes);
            ++lines;
        }
        pending.erase(0, start);
        if (lines >= max_table_lines || pending.size() > buffer.size()) break; // bounded; no line is that long
    }
    ::close(fd);
}

/// The inode of a descriptor's link text "socket:[12345]", or 0.
inline std::uint64_t socket_inode(std::string_view link) noexcept {
    constexpr std::string_view prefix = "socket:[";
    if (link.size() <= prefix.size() + 1 || link.substr(0, prefix.size()) != prefix || link.back() != ']') return 0;
    const std::string_view digits = link.substr(prefix.size(), link.size() - prefix.size() - 1);
    std::uint64_t inode = 0;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), inode);
    return error == std::errc{} && end == digits.data() + digits.size() ? inode : 0;
}

/// Whether the process whose /proc directory is `pid` has a descriptor on one of `inodes`.
inline bool holds_one_of(const std::string& pid, const std::vector<std::uint64_t>& inodes) {
    const std::string path = "/proc/" + pid + "/fd";
    const dir_ptr fds{::opendir(path.c_str())};
    if (!fds) return false; // gone, or not ours to look at
    const int dir_fd = ::dirfd(fds.get());
    std::array<char, 64> link{};
    std::size_t seen = 0;
    while (const ::dirent* entry = ::readdir(fds.get())) {
        if (++seen > max_descriptors_per_process) break;
        if (entry->d_name[0] == '.') continue;
        const auto n = ::readlinkat(dir_fd, entry->d_name, link.data(), link.size());
        if (n <= 0 || static_cast<std::size_t>(n) >= link.size()) continue;
        const auto inode = socket_inode(std::string_view{link.data(), static_cast<std::size_t>(n)});
        if (inode == 0) continue;
        for (const auto wanted : inodes) {
            if (wanted == inode) return true;
        }
    }
    return false;
}

/// The first line of /proc/PID/comm (the process's name, 15 bytes at most), or "".
inline std::string process_name(const std::string& pid) {
    const std::string path = "/proc/" + pid + "/comm";
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    std::array<char, 64> buffer{};
    auto n = ::read(fd, buffer.data(), buffer.size());
    while (n < 0 && errno == EINTR) n = ::read(fd, buffer.data(), buffer.size());
    ::close(fd);
    if (n <= 0) return {};
    std::string_view name{buffer.data(), static_cast<std::size_t>(n)};
    name = name.substr(0, name.find('\n'));
    return std::string{name};
}

inline bool all_digits(const char* name) noexcept {
    if (*name == '\0') return false;
    for (; *name != '\0'; ++name) {
        if (*name < '0' || *name > '9') return false;
    }
    return true;
}

} // namespace port_holder_impl

/// The processes holding a socket bound to `port` (TCP: listening; UDP: bound) on `address` or on
/// the wildcard address, from /proc: "pid 1234 (socat)", several joined by ", "; empty when none is
/// found (not Linux, or no permission to look). See the top of this file for how and its limits.
inline std::string describe_port_holder(port_protocol protocol, wire::ipv4_address address, std::uint16_t port) noexcept {
#if defined(__linux__)
    namespace impl = port_holder_impl;
    try {
        std::vector<std::uint64_t> inodes;
        const bool tcp = protocol == port_protocol::tcp;
        impl::scan_table(tcp ? "/proc/net/tcp" : "/proc/net/udp", tcp, address, port, inodes);
        impl::scan_table(tcp ? "/proc/net/tcp6" : "/proc/net/udp6", tcp, address, port, inodes);
        if (inodes.empty()) return {};

        std::string description;
        std::size_t holders = 0;
        std::size_t scanned = 0;
        const impl::dir_ptr proc{::opendir("/proc")};
        if (!proc) return {};
        while (const ::dirent* entry = ::readdir(proc.get())) {
            if (!impl::all_digits(entry->d_name)) continue;
            if (++scanned > impl::max_processes) break;
            const std::string pid = entry->d_name;
            if (!impl::holds_one_of(pid, inodes)) continue;
            if (!description.empty()) description += ", ";
            description += "pid " + pid;
            if (const auto name = impl::process_name(pid); !name.empty()) description += " (" + name + ")";
            if (++holders >= impl::max_holders) break;
        }
        return description;
    } catch (...) {
        return {};
    }
#else
    (void)protocol;
    (void)address;
    (void)port;
    return {};
#endif
}

} // namespace ankanet::detail
