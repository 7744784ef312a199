/// @file
/// ankanet::l2::mac_registry — the MAC addresses of the VMs running on this host, and who holds each.
///
/// Theory of operation. Two VMs with the same MAC on one host break both: the switch learns the
/// address on whichever spoke last and the other stops receiving. It happens in practice when a VM
/// with a fixed (custom) MAC is cloned and both copies start. The registry is the single place that
/// says "this address is taken, by that VM": a VM's NIC registers its MAC before it attaches to a
/// network and unregisters when it stops, and a second registration of the same address fails with
/// an error naming both VMs, so the operator sees "52:54:00:12:34:56 is already used by vm-a" rather
/// than an unreachable guest. Registration also validates the address: a group address (multicast,
/// including broadcast) or 00:00:00:00:00:00 cannot be a NIC's source address, and is refused with a
/// message saying which. The mac_randomizer draws around the registry's addresses.
///
/// Not on the per-frame path: it allocates (names, map nodes) freely. Not thread-safe; the daemon
/// owns one registry per host and calls it from its control thread.
#pragma once

#include <ankanet/wire/address.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace ankanet::l2 {

/// Why a MAC address could not be registered, drawn or used by the L2 engines.
enum class mac_errc {
    multicast_address = 1,   ///< the I/G bit is set: a group address cannot be a NIC's own
    broadcast_address,       ///< ff:ff:ff:ff:ff:ff
    zero_address,            ///< 00:00:00:00:00:00
    in_use,                  ///< another VM on this host holds the address
    not_registered,          ///< unregistering or looking up an address nobody holds
    space_exhausted,         ///< every address the randomizer may draw is taken
    bad_prefix,              ///< a randomizer prefix longer than the address allows
    bad_uuid_text,           ///< a VM UUID that is not 8-4-4-4-12 hexadecimal
    no_secret,               ///< a stable address was asked of a randomizer without a host secret
    bad_secret_text,         ///< a host secret that is not 32 hexadecimal digits
};

namespace detail {

class mac_error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "ankanet.l2.mac"; }

    std::string message(int code) const override {
        switch (static_cast<mac_errc>(code)) {
        case mac_errc::multicast_address: return "a multicast MAC address (I/G bit set) cannot be assigned to a VM";
        case mac_errc::broadcast_address: return "the broadcast MAC address cannot be assigned to a VM";
        case mac_errc::zero_address: return "the all-zero MAC address cannot be assigned to a VM";
        case mac_errc::in_use: return "MAC address already in use by another VM on this host";
        case mac_errc::not_registered: return "MAC address is not registered";
        case mac_errc::space_exhausted: return "no free MAC address left in the randomizer's address space";
        case mac_errc::bad_prefix: return "MAC prefix too long: it must leave at least one bit to draw";
        case mac_errc::bad_uuid_text: return "malformed VM UUID (expected 8-4-4-4-12 hexadecimal digits)";
        case mac_errc::no_secret: return "stable MAC addresses need a per-host secret";
        case mac_errc::bad_secret_text: return "malformed host secret (expected 32 hexadecimal digits)";
        }
        return "unknown MAC address error";
    }
};

} // namespace detail

/// The category of mac_errc (one instance per program).
inline const std::error_category& mac_error_category() noexcept {
    static const detail::mac_error_category_impl instance;
    return instance;
}

/// Wraps `e` in a std::error_code of its category (found by argument-dependent lookup).
inline std::error_code make_error_code(mac_errc e) noexcept { return {static_cast<int>(e), mac_error_category()}; }

} // namespace ankanet::l2

template <>
struct std::is_error_code_enum<ankanet::l2::mac_errc> : std::true_type {};

namespace ankanet::l2 {

/// Whether `mac` may be a VM NIC's own address: an empty error_code, or the reason it may not.
/// Broadcast is reported as such, ahead of the multicast bit it also has.
inline std::error_code validate_nic_mac(const mac_address& mac) noexcept {
    if (mac.is_zero()) return mac_errc::zero_address;
    if (mac.is_broadcast()) return mac_errc::broadcast_address;
    if (mac.is_multicast()) return mac_errc::multicast_address;
    return {};
}

/// A refused registration: the code, the address, the VM that asked and, for mac_errc::in_use,
/// the VM that holds it. Converts to true when it is an error, like std::error_code, so
/// `if (auto error = registry.add(mac, "vm-b")) log(error.message());`.
class [[nodiscard]] registry_error {
public:
    registry_error() = default;
    /// A refusal of `mac` for `requested_by`; `held_by` names who holds it, if anyone.
    registry_error(std::error_code code, mac_address mac, std::string requested_by, std::string held_by = {})
        : code_(code), mac_(mac), requested_by_(std::move(requested_by)), held_by_(std::move(held_by)) {}

    /// Whether this is an error.
    explicit operator bool() const noexcept { return static_cast<bool>(code_); }
    /// The code.
    const std::error_code& code() const noexcept { return code_; }
    /// The MAC.
    const mac_address& mac() const noexcept { return mac_; }
    /// The VM whose request was refused.
    const std::string& requested_by() const noexcept { return requested_by_; }
    /// The VM holding the address (mac_errc::in_use only; empty otherwise).
    const std::string& held_by() const noexcept { return held_by_; }

    /// One line for a person: what was refused, and why, naming both VMs on a conflict.
    std::string message() const {
        if (!code_) return "no error";
        if (code_ == make_error_code(mac_errc::in_use)) {
            return fmt::format("MAC address {} requested by VM '{}' is already in use by VM '{}' on this host",
                               mac_, requested_by_, held_by_);
        }
        if (code_ == make_error_code(mac_errc::not_registered)) {
            return fmt::format("MAC address {} is not registered", mac_);
        }
        return fmt::format("MAC address {} refused for VM '{}': {}", mac_, requested_by_, code_.message());
    }

private:
    std::error_code code_;
    mac_address mac_;
    std::string requested_by_;
    std::string held_by_;
};

/// Writes the text form to `out`.
inline std::ostream& operator<<(std::ostream& out, const registry_error& e) { return out << e.message(); }

/// The MACs of running VMs: MAC → VM name (or id; any string the operator recognises).
class mac_registry {
public:
    /// Registers `mac` for `vm`. Fails with mac_errc::in_use (naming both VMs) when another VM
    /// holds it, and with zero/broadcast/multicast_address when it cannot be a NIC's address.
    /// Registering a MAC again for the VM that already holds it succeeds (idempotent re-attach).
    registry_error add(const mac_address& mac, std::string_view vm) {
        if (auto ec = validate_nic_mac(mac)) return registry_error{ec, mac, std::string{vm}};
        const auto [at, inserted] = holders_.try_emplace(mac, vm);
        if (!inserted && at->second != vm) {
            return registry_error{mac_errc::in_use, mac, std::string{vm}, at->second};
        }
        return {};
    }

    /// Releases `mac`. mac_errc::not_registered when nobody held it.
    std::error_code remove(const mac_address& mac) {
        return holders_.erase(mac) == 1 ? std::error_code{} : make_error_code(mac_errc::not_registered);
    }

    /// Releases every MAC `vm` holds (a VM may have several NICs); returns how many.
    std::size_t remove_vm(std::string_view vm) {
        return std::erase_if(holders_, [vm](const auto& entry) { return entry.second == vm; });
    }

    /// The VM holding `mac`, if any.
    std::optional<std::string_view> lookup(const mac_address& mac) const {
        const auto at = holders_.find(mac);
        if (at == holders_.end()) return std::nullopt;
        return std::string_view{at->second};
    }

    /// Whether `mac` is held.
    bool contains(const mac_address& mac) const { return holders_.contains(mac); }
    /// The number of elements.
    std::size_t size() const noexcept { return holders_.size(); }
    /// Whether empty.
    bool empty() const noexcept { return holders_.empty(); }

    /// Calls `f(mac, vm)` for every registration, in address order.
    template <class F>
    void for_each(F&& f) const {
        for (const auto& [mac, vm] : holders_) f(mac, std::string_view{vm});
    }

private:
    // Ordered, so for_each() and messages list addresses in a stable order.
    std::map<mac_address, std::string> holders_;
};

} // namespace ankanet::l2

/// Formats a registry_error with {fmt}.
template <>
struct fmt::formatter<ankanet::l2::registry_error> : fmt::formatter<std::string_view> {
    /// Writes the error's text.
    auto format(const ankanet::l2::registry_error& e, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(e.message(), ctx);
    }
};
