/// @file
/// ankanet::wire — address types: mac_address, ipv4_address, ipv4_prefix.
///
/// Addresses are values: trivially copyable, totally ordered, hashable, formattable with fmt and
/// constexpr where that fits. Text parsing is strict and says what was wrong (bad_address_text);
/// IPv4 octets with leading zeros are refused, since "010" means 8 to inet_aton and 10 to people.
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/bytes.hpp>

#include <fmt/format.h>

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>

namespace ankanet::wire {

namespace detail {

constexpr int hex_digit_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/// Parses a decimal number of one to three digits, at most `max_value`, no sign, no leading zero.
constexpr bool parse_decimal(std::string_view text, std::uint32_t max_value, std::uint32_t& out) noexcept {
    if (text.empty() || text.size() > 3 || (text.size() > 1 && text[0] == '0')) return false;
    std::uint32_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        value = value * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (value > max_value) return false;
    out = value;
    return true;
}

} // namespace detail

// --- mac_address ------------------------------------------------------------------------------

/// A 48-bit IEEE 802 MAC address.
class mac_address {
public:
    static constexpr std::size_t size = 6; ///< size
    using bytes_type = std::array<std::uint8_t, size>; ///< the bytes type

    constexpr mac_address() noexcept = default;
    /// The address of these six bytes.
    constexpr explicit mac_address(const bytes_type& octets) noexcept : octets_(octets) {}

    /// Reads six bytes; the caller guarantees `bytes.size() >= 6`.
    static mac_address from_bytes(const_bytes bytes) noexcept {
        bytes_type octets{};
        for (std::size_t i = 0; i < size; ++i) octets[i] = load_u8(bytes, i);
        return mac_address{octets};
    }

    /// Parses "52:54:00:12:34:56" (also with '-' separators), case-insensitive.
    static result<mac_address> parse(std::string_view text) noexcept {
        if (text.size() != 17) return errc::bad_address_text;
        const char separator = text[2];
        if (separator != ':' && separator != '-') return errc::bad_address_text;
        bytes_type octets{};
        for (std::size_t i = 0; i < size; ++i) {
            const std::size_t at = i * 3;
            if (i > 0 && text[at - 1] != separator) return errc::bad_address_text;
            const int high = detail::hex_digit_value(text[at]);
            const int low = detail::hex_digit_value(text[at + 1]);
            if (high < 0 || low < 0) return errc::bad_address_text;
            octets[i] = static_cast<std::uint8_t>(high * 16 + low);
        }
        return mac_address{octets};
    }

    /// ff:ff:ff:ff:ff:ff.
    static constexpr mac_address broadcast() noexcept { return mac_address{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}; }

    /// The octets.
    constexpr const bytes_type& octets() const noexcept { return octets_; }
    /// The bytes.
    const_bytes bytes() const noexcept { return std::as_bytes(std::span{octets_}); }
    /// Writes the six bytes at `offset`.
    void store(mutable_bytes to, std::size_t offset) const noexcept { store_bytes(to, offset, bytes()); }

    /// Whether it is zero.
    constexpr bool is_zero() const noexcept { return *this == mac_address{}; }
    /// Whether it is broadcast.
    constexpr bool is_broadcast() const noexcept { return *this == broadcast(); }
    /// I/G bit: group address (multicast, including broadcast).
    constexpr bool is_multicast() const noexcept { return (octets_[0] & 0x01) != 0; }
    /// Whether it is unicast.
    constexpr bool is_unicast() const noexcept { return !is_multicast() && !is_zero(); }
    /// U/L bit: locally administered rather than assigned by a vendor.
    constexpr bool is_locally_administered() const noexcept { return (octets_[0] & 0x02) != 0; }

    /// Memberwise ordering.
    constexpr auto operator<=>(const mac_address&) const noexcept = default;

private:
    bytes_type octets_{};
};

// --- ipv4_address -----------------------------------------------------------------------------

/// An IPv4 address, held as a host-order integer.
class ipv4_address {
public:
    static constexpr std::size_t size = 4; ///< size

    constexpr ipv4_address() noexcept = default;
    /// The address whose host-order value is `host_order`.
    constexpr explicit ipv4_address(std::uint32_t host_order) noexcept : value_(host_order) {}
    /// The address a.b.c.d.
    constexpr ipv4_address(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) noexcept
        : value_((std::uint32_t{a} << 24) | (std::uint32_t{b} << 16) | (std::uint32_t{c} << 8) | d) {}

    /// Reads four bytes in network order; the caller guarantees `bytes.size() >= 4`.
    static ipv4_address from_bytes(const_bytes bytes) noexcept { return ipv4_address{load_be32(bytes, 0)}; }

    /// Parses dotted-quad text "192.168.64.1": exactly four decimal octets, no leading zeros.
    static result<ipv4_address> parse(std::string_view text) noexcept {
        std::uint32_t value = 0;
        for (int part = 0; part < 4; ++part) {
            const std::size_t dot = part < 3 ? text.find('.') : text.size();
            if (dot == std::string_view::npos) return errc::bad_address_text;
            std::uint32_t octet = 0;
            if (!detail::parse_decimal(text.substr(0, dot), 255, octet)) return errc::bad_address_text;
            value = (value << 8) | octet;
            text.remove_prefix(part < 3 ? dot + 1 : dot);
        }
        return ipv4_address{value};
    }

    /// 0.0.0.0.
    static constexpr ipv4_address any() noexcept { return ipv4_address{0}; }
    /// 255.255.255.255.
    static constexpr ipv4_address broadcast() noexcept { return ipv4_address{0xffffffffu}; }
    /// 127.0.0.1.
    static constexpr ipv4_address loopback() noexcept { return ipv4_address{127, 0, 0, 1}; }

    /// The address as a host-order number.
    constexpr std::uint32_t to_u32() const noexcept { return value_; }
    /// The octets.
    constexpr std::array<std::uint8_t, 4> octets() const noexcept {
        return {static_cast<std::uint8_t>(value_ >> 24), static_cast<std::uint8_t>(value_ >> 16),
                static_cast<std::uint8_t>(value_ >> 8), static_cast<std::uint8_t>(value_)};
    }
    /// Writes the address at `offset`, in network order.
    void store(mutable_bytes to, std::size_t offset) const noexcept { store_be32(to, offset, value_); }

    /// Whether it is unspecified.
    constexpr bool is_unspecified() const noexcept { return value_ == 0; }
    /// Whether it is broadcast.
    constexpr bool is_broadcast() const noexcept { return value_ == 0xffffffffu; }
    /// Whether it is loopback.
    constexpr bool is_loopback() const noexcept { return (value_ >> 24) == 127; }
    /// Whether it is multicast.
    constexpr bool is_multicast() const noexcept { return (value_ >> 28) == 0xe; }
    /// Whether it is link local.
    constexpr bool is_link_local() const noexcept { return (value_ >> 16) == 0xa9fe; }

    /// Memberwise ordering.
    constexpr auto operator<=>(const ipv4_address&) const noexcept = default;

private:
    std::uint32_t value_ = 0;
};

// --- ipv4_prefix ------------------------------------------------------------------------------

/// An address with a prefix length, "192.168.64.1/24": an interface address and its subnet.
class ipv4_prefix {
public:
    constexpr ipv4_prefix() noexcept = default;
    /// `length` above 32 is clamped to 32; use parse() for checked input.
    constexpr ipv4_prefix(ipv4_address address, std::uint8_t length) noexcept
        : address_(address), length_(length > 32 ? std::uint8_t{32} : length) {}

    /// Parses "a.b.c.d/len" with 0 <= len <= 32.
    static result<ipv4_prefix> parse(std::string_view text) noexcept {
        const std::size_t slash = text.find('/');
        if (slash == std::string_view::npos) return errc::bad_address_text;
        const auto address = ipv4_address::parse(text.substr(0, slash));
        if (!address) return address.error();
        std::uint32_t length = 0;
        if (!detail::parse_decimal(text.substr(slash + 1), 32, length)) return errc::bad_address_text;
        return ipv4_prefix{*address, static_cast<std::uint8_t>(length)};
    }

    /// The address.
    constexpr ipv4_address address() const noexcept { return address_; }
    /// The length.
    constexpr std::uint8_t length() const noexcept { return length_; }
    /// The netmask.
    constexpr ipv4_address netmask() const noexcept {
        return ipv4_address{length_ == 0 ? 0u : ~std::uint32_t{0} << (32 - length_)};
    }
    /// The network.
    constexpr ipv4_address network() const noexcept { return ipv4_address{address_.to_u32() & netmask().to_u32()}; }
    /// The subnet's broadcast address.
    constexpr ipv4_address broadcast() const noexcept { return ipv4_address{network().to_u32() | ~netmask().to_u32()}; }
    /// Number of addresses in the subnet, network and broadcast included.
    constexpr std::uint64_t size() const noexcept { return std::uint64_t{1} << (32 - length_); }
    /// Whether `a` is in the prefix.
    constexpr bool contains(ipv4_address a) const noexcept {
        return (a.to_u32() & netmask().to_u32()) == network().to_u32();
    }

    /// Memberwise ordering.
    constexpr auto operator<=>(const ipv4_prefix&) const noexcept = default;

private:
    ipv4_address address_{};
    std::uint8_t length_ = 0;
};

// --- text -------------------------------------------------------------------------------------

/// "02:00:00:00:00:01": six lowercase hex bytes, colon-separated.
inline std::string to_string(const mac_address& mac) {
    const auto& o = mac.octets();
    return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3], o[4], o[5]);
}
/// Dotted-quad text, "192.168.64.1".
inline std::string to_string(const ipv4_address& address) {
    const auto o = address.octets();
    return fmt::format("{}.{}.{}.{}", o[0], o[1], o[2], o[3]);
}
/// "192.168.64.1/24": the address as given (host bits kept) and the length.
inline std::string to_string(const ipv4_prefix& prefix) {
    return fmt::format("{}/{}", to_string(prefix.address()), prefix.length());
}

/// Writes the text form to `out`.
inline std::ostream& operator<<(std::ostream& out, const mac_address& v) { return out << to_string(v); }
/// Writes the text form to `out`.
inline std::ostream& operator<<(std::ostream& out, const ipv4_address& v) { return out << to_string(v); }
/// Writes the text form to `out`.
inline std::ostream& operator<<(std::ostream& out, const ipv4_prefix& v) { return out << to_string(v); }

} // namespace ankanet::wire

namespace ankanet {
using wire::ipv4_address;
using wire::ipv4_prefix;
using wire::mac_address;
} // namespace ankanet

// fmt: "{}" prints the canonical text form.
/// Formats a mac_address with {fmt}, as six colon-separated hex bytes.
template <>
struct fmt::formatter<ankanet::wire::mac_address> : fmt::formatter<std::string_view> {
    /// Writes colon-separated hex.
    auto format(const ankanet::wire::mac_address& v, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(ankanet::wire::to_string(v), ctx);
    }
};
/// Formats an ipv4_address with {fmt}, in dotted-quad form.
template <>
struct fmt::formatter<ankanet::wire::ipv4_address> : fmt::formatter<std::string_view> {
    /// Writes dotted-quad text.
    auto format(const ankanet::wire::ipv4_address& v, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(ankanet::wire::to_string(v), ctx);
    }
};
/// Formats an ipv4_prefix with {fmt}, as address/length.
template <>
struct fmt::formatter<ankanet::wire::ipv4_prefix> : fmt::formatter<std::string_view> {
    /// Writes address/length.
    auto format(const ankanet::wire::ipv4_prefix& v, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(ankanet::wire::to_string(v), ctx);
    }
};

/// Hashes a mac_address, for unordered containers.
template <>
struct std::hash<ankanet::wire::mac_address> {
    /// The hash.
    std::size_t operator()(const ankanet::wire::mac_address& mac) const noexcept {
        std::uint64_t packed = 0;
        for (auto octet : mac.octets()) packed = (packed << 8) | octet;
        return std::hash<std::uint64_t>{}(packed);
    }
};
/// Hashes an ipv4_address, for unordered containers.
template <>
struct std::hash<ankanet::wire::ipv4_address> {
    /// The hash.
    std::size_t operator()(const ankanet::wire::ipv4_address& a) const noexcept {
        return std::hash<std::uint32_t>{}(a.to_u32());
    }
};
/// Hashes an ipv4_prefix, for unordered containers.
template <>
struct std::hash<ankanet::wire::ipv4_prefix> {
    /// The hash.
    std::size_t operator()(const ankanet::wire::ipv4_prefix& p) const noexcept {
        return std::hash<std::uint64_t>{}((std::uint64_t{p.address().to_u32()} << 8) | p.length());
    }
};
