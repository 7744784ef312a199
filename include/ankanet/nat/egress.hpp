/// @file
/// ankanet::nat egress policies — where a guest's new flow may go on the host side.
///
/// Theory of operation. The translator is templated on an egress policy and asks it once per new
/// flow (a guest's SYN, first UDP datagram or echo request), never per packet: allows(destination,
/// port, protocol). A refused flow gets an RST or ICMP administratively prohibited from the
/// translator and is counted there. The policies:
///
/// @code{.unparsed}
///   egress_any        shared mode: everywhere but the never-reachable destinations (below) and
///                     169.254.0.0/16 link-local, which holds cloud instance-metadata services
///                     (169.254.169.254) that would hand the guest the host's credentials.
///   egress_host_only  host mode: the host only, i.e. its loopback 127.0.0.0/8.
///   egress_allow_list the listed CIDRs only (tests: 127.0.0.0/8, loopback only).
/// @endcode
///
/// The destination judged is the host-side one, the address the translator will connect() to:
/// the guest's destination, or host loopback when the guest addressed the gateway and the gateway
/// stands for the host. So "127.0.0.0/8" lets guests reach servers on the host's loopback through
/// the gateway address. A guest packet addressed to 127.0.0.0/8 itself is a martian (RFC 1122
/// §3.2.1.3: such an address must not appear outside a host) that the translator drops before it
/// maps anything or asks a policy: is_martian_guest_destination() says which.
///
/// Never reachable, under every policy, whatever an allow-list says: 0.0.0.0/8 ("this network",
/// not a destination), 224.0.0.0/4 (multicast: no flow to translate onto one socket) and
/// 240.0.0.0/4 (reserved, with 255.255.255.255 limited broadcast), and port 0 for TCP and UDP
/// (no host socket can connect to it).
///
/// Text. parse_egress("any" | "host" | "CIDR[,CIDR...]") gives a runtime_egress (a variant of the
/// three, for ankanetd's --egress) or an error whose message is one sentence naming the bad part.
/// A CIDR without "/len" is one address (/32); a CIDR with host bits set ("10.0.0.1/8") is refused,
/// since it most likely is a typo for something else. allows() neither allocates nor throws.
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace ankanet::nat {

/// Why an egress policy text was refused.
enum class egress_errc {
    empty = 1,     ///< no text, or an empty item between commas
    bad_prefix,    ///< an item is neither any, host nor an IPv4 address or CIDR
    host_bits_set, ///< a CIDR has bits set beyond its prefix length
    mixed_keyword, ///< any or host appears together with other items
};

namespace detail {

class egress_error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "ankanet.nat.egress"; }

    std::string message(int code) const override {
        switch (static_cast<egress_errc>(code)) {
        case egress_errc::empty: return "the egress policy is empty or has an empty item between commas";
        case egress_errc::bad_prefix: return "an egress item is neither any, host nor an IPv4 CIDR such as 127.0.0.0/8";
        case egress_errc::host_bits_set: return "an egress CIDR has bits set beyond its prefix length";
        case egress_errc::mixed_keyword: return "any and host stand alone, not in a list of CIDRs";
        }
        return "unknown egress policy error";
    }
};

} // namespace detail

/// The category of egress_errc (one instance per program).
inline const std::error_category& egress_error_category() noexcept {
    static const detail::egress_error_category_impl instance;
    return instance;
}

/// Wraps `e` in a std::error_code of its category (found by argument-dependent lookup).
inline std::error_code make_error_code(egress_errc e) noexcept { return {static_cast<int>(e), egress_error_category()}; }

} // namespace ankanet::nat

template <>
struct std::is_error_code_enum<ankanet::nat::egress_errc> : std::true_type {};

namespace ankanet::nat {

/// IP protocol numbers the policies distinguish (the values of wire::ipv4::protocol).
namespace ip_protocol {
/// An IP protocol number the policies distinguish (a value of wire::ipv4::protocol).
/// @{
inline constexpr std::uint8_t icmp = 1;
inline constexpr std::uint8_t tcp = 6;
inline constexpr std::uint8_t udp = 17;
/// @}
} // namespace ip_protocol

/// An egress policy: allows(host-side destination, port, IP protocol) and a name for logs.
template <class P>
concept egress_policy = requires(const P& policy, wire::ipv4_address destination, std::uint16_t port,
                                 std::uint8_t protocol) {
    { policy.allows(destination, port, protocol) } noexcept -> std::same_as<bool>;
    { policy.name() } -> std::convertible_to<std::string_view>;
};

/// Whether no policy may ever allow a flow to `destination`:`port` (see the theory of operation).
constexpr bool never_reachable(wire::ipv4_address destination, std::uint16_t port, std::uint8_t protocol) noexcept {
    const std::uint32_t a = destination.to_u32();
    if ((a >> 24) == 0) return true;     // 0.0.0.0/8
    if ((a >> 28) >= 0xe) return true;   // 224.0.0.0/4 multicast, 240.0.0.0/4 reserved and broadcast
    return port == 0 && (protocol == ip_protocol::tcp || protocol == ip_protocol::udp);
}

/// Whether a guest packet's destination is one the translator must drop before any mapping:
/// never reachable, or the guest's own loopback (127.0.0.0/8), which must not appear on a link.
constexpr bool is_martian_guest_destination(wire::ipv4_address destination) noexcept {
    return destination.is_loopback() || never_reachable(destination, 1, ip_protocol::tcp);
}

/// Shared mode: everywhere but the never-reachable destinations and 169.254.0.0/16.
struct egress_any {
    /// Always true.
    constexpr bool allows(wire::ipv4_address destination, std::uint16_t port, std::uint8_t protocol) const noexcept {
        return !never_reachable(destination, port, protocol) && !destination.is_link_local();
    }
    /// The name.
    constexpr std::string_view name() const noexcept { return "any"; }
};

/// Host mode: the host only — its loopback, where the translator sends flows for the gateway.
struct egress_host_only {
    /// Whether `destination` is the host itself (loopback, at the gateway's address).
    constexpr bool allows(wire::ipv4_address destination, std::uint16_t port, std::uint8_t protocol) const noexcept {
        return destination.is_loopback() && !never_reachable(destination, port, protocol);
    }
    /// The name.
    constexpr std::string_view name() const noexcept { return "host"; }
};

/// The listed CIDRs only (never-reachable destinations stay refused even when listed).
class egress_allow_list {
public:
    egress_allow_list() = default;
    /// The prefixes are used as given: their host bits are ignored (parse_egress refuses them).
    explicit egress_allow_list(std::vector<wire::ipv4_prefix> prefixes) : prefixes_(std::move(prefixes)) {
        text_ = "allow ";
        for (std::size_t i = 0; i < prefixes_.size(); ++i) {
            if (i != 0) text_ += ',';
            text_ += wire::to_string(prefixes_[i].network());
            text_ += '/';
            text_ += std::to_string(prefixes_[i].length());
        }
        if (prefixes_.empty()) text_ += "nothing";
    }

    /// Whether the allow list takes `destination`:`port` over `protocol`.
    bool allows(wire::ipv4_address destination, std::uint16_t port, std::uint8_t protocol) const noexcept {
        if (never_reachable(destination, port, protocol)) return false;
        for (const auto& prefix : prefixes_) {
            if (prefix.contains(destination)) return true;
        }
        return false;
    }
    /// "allow 127.0.0.0/8,10.0.0.0/8", for logs.
    std::string_view name() const noexcept { return text_; }
    /// The prefixes.
    const std::vector<wire::ipv4_prefix>& prefixes() const noexcept { return prefixes_; }

private:
    std::vector<wire::ipv4_prefix> prefixes_;
    std::string text_ = "allow nothing";
};

static_assert(egress_policy<egress_any>);
static_assert(egress_policy<egress_host_only>);
static_assert(egress_policy<egress_allow_list>);

/// One of the three policies, chosen at run time (ankanetd's --egress). A translator templated on
/// it pays one variant dispatch per new flow.
class runtime_egress {
public:
    using variant_type = std::variant<egress_any, egress_host_only, egress_allow_list>; ///< the variant type

    runtime_egress() = default;
    /// Any destination.
    runtime_egress(egress_any p) : policy_(p) {}
    /// The host only.
    runtime_egress(egress_host_only p) : policy_(p) {}
    /// The destinations the list allows.
    runtime_egress(egress_allow_list p) : policy_(std::move(p)) {}

    /// Whether the policy it holds allows `destination`:`port` over `protocol`.
    bool allows(wire::ipv4_address destination, std::uint16_t port, std::uint8_t protocol) const noexcept {
        return std::visit([&](const auto& p) noexcept { return p.allows(destination, port, protocol); }, policy_);
    }
    /// The name.
    std::string_view name() const noexcept {
        return std::visit([](const auto& p) noexcept { return std::string_view{p.name()}; }, policy_);
    }
    /// The policy.
    const variant_type& policy() const noexcept { return policy_; }

private:
    variant_type policy_;
};

static_assert(egress_policy<runtime_egress>);

/// Parses "any", "host" or "CIDR[,CIDR...]" (a bare address is a /32). On failure returns the
/// error and, when `why` is given, stores one sentence naming the offending item.
inline result<runtime_egress> parse_egress(std::string_view text, std::string* why = nullptr) {
    const auto fail = [&](egress_errc code, std::string_view item) -> result<runtime_egress> {
        if (why != nullptr) {
            switch (code) {
            case egress_errc::empty: *why = "the egress policy is empty or has an empty item between commas"; break;
            case egress_errc::bad_prefix:
                *why = "egress item \"" + std::string{item} +
                       "\" is neither any, host nor an IPv4 address or CIDR such as 127.0.0.0/8";
                break;
            case egress_errc::host_bits_set:
                *why = "egress CIDR \"" + std::string{item} + "\" has bits set beyond its prefix length";
                break;
            case egress_errc::mixed_keyword:
                *why = "egress \"" + std::string{item} + "\" stands alone and cannot be combined with CIDRs";
                break;
            }
        }
        return make_error_code(code);
    };

    if (text == "any") return runtime_egress{egress_any{}};
    if (text == "host") return runtime_egress{egress_host_only{}};
    if (text.empty()) return fail(egress_errc::empty, text);

    std::vector<wire::ipv4_prefix> prefixes;
    for (;;) {
        const std::size_t comma = text.find(',');
        const std::string_view item = text.substr(0, comma);
        if (item.empty()) return fail(egress_errc::empty, item);
        if (item == "any" || item == "host") return fail(egress_errc::mixed_keyword, item);
        wire::ipv4_prefix prefix;
        if (item.find('/') == std::string_view::npos) {
            const auto address = wire::ipv4_address::parse(item);
            if (!address) return fail(egress_errc::bad_prefix, item);
            prefix = wire::ipv4_prefix{*address, 32};
        } else {
            const auto parsed = wire::ipv4_prefix::parse(item);
            if (!parsed) return fail(egress_errc::bad_prefix, item);
            if (parsed->address() != parsed->network()) return fail(egress_errc::host_bits_set, item);
            prefix = *parsed;
        }
        prefixes.push_back(prefix);
        if (comma == std::string_view::npos) break;
        text.remove_prefix(comma + 1);
    }
    return runtime_egress{egress_allow_list{std::move(prefixes)}};
}

} // namespace ankanet::nat
