/// @file
/// ankanet::l2::mac_randomizer — MAC addresses for VM NICs: random, or stable per VM, never taken.
///
/// Theory of operation. A VM NIC needs a unicast address no other NIC on its network uses. The
/// randomizer draws from the locally administered unicast space (IEEE 802: U/L bit set, I/G bit
/// clear, i.e. the first octet is x2, x6, xa or xe), optionally under a fixed prefix — a 24-bit
/// "OUI" such as 52:54:00 so operators recognise their VMs — whose U/L bit is forced set and I/G bit
/// forced clear, so every address drawn is valid whatever prefix is configured. Without a prefix
/// the space holds 2^46 addresses; under a 24-bit prefix, 2^24.
///
/// Two modes:
///  * draw(): a uniformly random address from the space, from the `Random` source (any
///    UniformRandomBitGenerator; std::random_device by default, a seeded engine in tests).
///  * stable(uuid): SipHash-2-4, keyed with a per-host 128-bit secret, of a domain tag and the VM's
///    UUID selects the address. A suspended, resumed or restarted VM gets the same address with
///    nothing stored but the host secret, and without the secret nobody can link an address to a
///    UUID or predict another VM's address. The derivation is a compatibility contract — changing
///    it changes every VM's MAC — and a test pins its output.
///
/// Both avoid every address in the mac_registry. A draw tries a few candidates (random ones, or for
/// stable(), the hashes of (uuid, attempt 0..7)), which almost always suffices: the chance that one
/// candidate is taken is registered/space. If all are taken, the randomizer counts the registered
/// addresses inside its space: if they fill it the answer is mac_errc::space_exhausted; otherwise a
/// linear scan from the first candidate finds a free address within registered+1 steps. So a draw
/// fails only when the space is really full, and costs O(registered · log registered) at worst.
/// A stable address stays stable as long as its first free candidate does: if another VM holds the
/// hash's first choice when this VM starts, this VM gets the next one (probability about
/// registered/2^46 without a prefix).
#pragma once

#include <ankanet/detail/siphash.hpp>
#include <ankanet/l2/mac_registry.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>

#include <fmt/format.h>

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace ankanet::l2 {

namespace detail {

inline constexpr std::uint64_t ig_bit = std::uint64_t{1} << 40; // first octet, bit 0
inline constexpr std::uint64_t ul_bit = std::uint64_t{1} << 41; // first octet, bit 1

constexpr std::uint64_t to_u48(const mac_address& mac) noexcept {
    std::uint64_t value = 0;
    for (auto octet : mac.octets()) value = (value << 8) | octet;
    return value;
}

constexpr mac_address from_u48(std::uint64_t value) noexcept {
    mac_address::bytes_type octets{};
    for (std::size_t i = 0; i < octets.size(); ++i) {
        octets[i] = static_cast<std::uint8_t>(value >> (8 * (octets.size() - 1 - i)));
    }
    return mac_address{octets};
}

} // namespace detail

/// The fixed leading bits of every address a randomizer hands out: the first `length` bits of
/// `value` (transmission-order octets, most significant bit of octet 0 first). The U/L bit is
/// forced set and the I/G bit forced clear, inside the prefix or not.
class mac_prefix {
public:
    /// The longest prefix: one bit left to draw.
    static constexpr unsigned max_length = 47;

    /// No prefix: 46 bits are drawn.
    constexpr mac_prefix() noexcept = default;

    /// The first `length` bits of `value`; mac_errc::bad_prefix above max_length.
    static result<mac_prefix> make(const mac_address& value, unsigned length) noexcept {
        if (length > max_length) return make_error_code(mac_errc::bad_prefix);
        return mac_prefix{value, length};
    }

    /// A 24-bit, OUI-like prefix a:b:c (U/L forced set, I/G forced clear).
    static constexpr mac_prefix oui(std::uint8_t a, std::uint8_t b, std::uint8_t c) noexcept {
        return mac_prefix{mac_address{{a, b, c, 0, 0, 0}}, 24};
    }

    /// The prefix with its forced bits applied and the drawn bits zero: the lowest address in the space.
    constexpr mac_address value() const noexcept { return detail::from_u48(fixed_); }
    /// The length.
    constexpr unsigned length() const noexcept { return length_; }

    /// How many bits are drawn: 46 − length up to 6 bits of prefix, 40 at 7, 48 − length from 8 on.
    constexpr unsigned free_bits() const noexcept { return low_run_ + high_run_; }
    /// How many addresses the space holds.
    constexpr std::uint64_t space_size() const noexcept { return std::uint64_t{1} << free_bits(); }

    /// The address with drawn bits `index` (0 <= index < space_size()). Drawn bits fill the low
    /// 40 bits first, then (short prefixes only) the bits above the U/L bit, so the mapping is
    /// monotonic and a run of indices is a run of addresses.
    constexpr mac_address at(std::uint64_t index) const noexcept {
        const std::uint64_t low = index & ((std::uint64_t{1} << low_run_) - 1);
        const std::uint64_t high = (index >> low_run_) << 42;
        return detail::from_u48(fixed_ | low | high);
    }

    /// Whether `mac` is in this space.
    constexpr bool contains(const mac_address& mac) const noexcept {
        const std::uint64_t free_mask = ((std::uint64_t{1} << low_run_) - 1) | (((std::uint64_t{1} << high_run_) - 1) << 42);
        return (detail::to_u48(mac) & ~free_mask) == fixed_;
    }

    /// Memberwise equality.
    constexpr bool operator==(const mac_prefix&) const noexcept = default;

private:
    constexpr mac_prefix(const mac_address& value, unsigned length) noexcept
        : fixed_(((detail::to_u48(value) & prefix_mask(length)) | detail::ul_bit) & ~detail::ig_bit), length_(length),
          // Free bits: 0..(47 − length), minus the two flag bits 40 and 41.
          low_run_(48 - length < 40 ? 48 - length : 40), high_run_(48 - length > 42 ? 48 - length - 42 : 0) {}

    static constexpr std::uint64_t prefix_mask(unsigned length) noexcept {
        return length == 0 ? 0 : (~std::uint64_t{0} << (48 - length)) & 0xffff'ffff'ffffu;
    }

    std::uint64_t fixed_ = detail::ul_bit;
    unsigned length_ = 0;
    unsigned low_run_ = 40;
    unsigned high_run_ = 6;
};

/// A VM's identity, as the hypervisor knows it: a 128-bit UUID.
class vm_uuid {
public:
    using bytes_type = std::array<std::byte, 16>; ///< the bytes type

    constexpr vm_uuid() noexcept = default;
    /// A UUID of the given bytes.
    constexpr explicit vm_uuid(const bytes_type& bytes) noexcept : bytes_(bytes) {}

    /// Parses "6f9619ff-8b86-d011-b42d-00c04fc964ff", case-insensitive. Case does not change the
    /// UUID, so it does not change the stable MAC either.
    static result<vm_uuid> parse(std::string_view text) noexcept {
        if (text.size() != 36) return make_error_code(mac_errc::bad_uuid_text);
        bytes_type bytes{};
        std::size_t out = 0;
        for (std::size_t at = 0; at < text.size();) {
            if (at == 8 || at == 13 || at == 18 || at == 23) {
                if (text[at] != '-') return make_error_code(mac_errc::bad_uuid_text);
                ++at;
                continue;
            }
            const int high = wire::detail::hex_digit_value(text[at]);
            const int low = wire::detail::hex_digit_value(text[at + 1]);
            if (high < 0 || low < 0) return make_error_code(mac_errc::bad_uuid_text);
            bytes[out++] = static_cast<std::byte>(high * 16 + low);
            at += 2;
        }
        return vm_uuid{bytes};
    }

    /// The bytes.
    constexpr const bytes_type& bytes() const noexcept { return bytes_; }
    /// Memberwise ordering.
    constexpr auto operator<=>(const vm_uuid&) const noexcept = default;

private:
    bytes_type bytes_{};
};

/// The per-host secret that keys stable MAC derivation. Keep it with the host's configuration
/// (e.g. a 0600 file): the same secret gives every VM the same address after a restart; a new
/// secret gives every VM a new one.
class host_secret {
public:
    using bytes_type = std::array<std::byte, 16>; ///< the bytes type

    /// A secret of the given bytes.
    constexpr explicit host_secret(const bytes_type& bytes) noexcept : bytes_(bytes) {}

    /// A fresh secret from `random` (std::random_device unless a test says otherwise).
    template <std::uniform_random_bit_generator Random>
    static host_secret generate(Random& random) {
        std::uniform_int_distribution<unsigned> byte(0, 255);
        bytes_type bytes{};
        for (auto& b : bytes) b = static_cast<std::byte>(byte(random));
        return host_secret{bytes};
    }
    /// A secret drawn from the system's random source.
    static host_secret generate() {
        std::random_device random;
        return generate(random);
    }

    /// Parses 32 hexadecimal digits, the form to_string() writes.
    static result<host_secret> parse(std::string_view text) noexcept {
        if (text.size() != 32) return make_error_code(mac_errc::bad_secret_text);
        bytes_type bytes{};
        for (std::size_t i = 0; i < bytes.size(); ++i) {
            const int high = wire::detail::hex_digit_value(text[2 * i]);
            const int low = wire::detail::hex_digit_value(text[2 * i + 1]);
            if (high < 0 || low < 0) return make_error_code(mac_errc::bad_secret_text);
            bytes[i] = static_cast<std::byte>(high * 16 + low);
        }
        return host_secret{bytes};
    }
    /// The text form.
    std::string to_string() const {
        std::string text;
        for (auto b : bytes_) text += fmt::format("{:02x}", std::to_integer<unsigned>(b));
        return text;
    }

    /// The bytes.
    constexpr const bytes_type& bytes() const noexcept { return bytes_; }
    /// Memberwise equality.
    constexpr bool operator==(const host_secret&) const noexcept = default;

private:
    bytes_type bytes_;
};

/// Draws NIC addresses; see the theory of operation above.
/// @tparam Random a UniformRandomBitGenerator; std::random_device by default (addresses are drawn
///         rarely, and a seeded engine would repeat its sequence across restarts of the daemon).
template <std::uniform_random_bit_generator Random = std::random_device>
class basic_mac_randomizer {
public:
    /// Random candidates (or stable hash attempts) tried before counting and scanning the space.
    static constexpr unsigned candidate_attempts = 8;

    /// A randomizer over `prefix`, with a default-constructed random source and, when `secret` is
    /// given, stable().
    explicit basic_mac_randomizer(mac_prefix prefix = {}, std::optional<host_secret> secret = std::nullopt)
        : prefix_(prefix), secret_(secret) {}
    /// A switch with no ports yet.
    basic_mac_randomizer(Random random, mac_prefix prefix, std::optional<host_secret> secret = std::nullopt)
        : random_(std::move(random)), prefix_(prefix), secret_(secret) {}

    /// The prefix.
    const mac_prefix& prefix() const noexcept { return prefix_; }

    /// A uniformly random address of the space that `taken` does not hold.
    /// mac_errc::space_exhausted when `taken` holds the whole space.
    result<mac_address> draw(const mac_registry& taken) {
        std::uniform_int_distribution<std::uint64_t> index(0, prefix_.space_size() - 1);
        const std::uint64_t first = index(random_);
        if (!taken.contains(prefix_.at(first))) return prefix_.at(first);
        for (unsigned attempt = 1; attempt < candidate_attempts; ++attempt) {
            const auto candidate = prefix_.at(index(random_));
            if (!taken.contains(candidate)) return candidate;
        }
        return scan_from(first, taken, {});
    }

    /// The stable address of `vm` under this host's secret, skipping addresses `taken` holds for
    /// other VMs; an address registered to `self` (this VM's own registry name) counts as free, so
    /// a VM whose registration outlived a crash gets its address back.
    /// mac_errc::no_secret without a secret; mac_errc::space_exhausted when the space is full.
    result<mac_address> stable(const vm_uuid& vm, const mac_registry& taken, std::string_view self = {}) const {
        if (!secret_) return make_error_code(mac_errc::no_secret);
        const std::uint64_t first = stable_index(*secret_, vm, 0);
        for (unsigned attempt = 0; attempt < candidate_attempts; ++attempt) {
            const auto candidate = prefix_.at(attempt == 0 ? first : stable_index(*secret_, vm, attempt));
            if (is_free(candidate, taken, self)) return candidate;
        }
        return scan_from(first, taken, self);
    }

    /// The `attempt`-th stable candidate index of `vm`: SipHash-2-4 keyed with the secret over
    /// "ankanet/l2/stable-mac/v1" || uuid (16 bytes) || attempt (32-bit little-endian), reduced to
    /// the space's free bits. The space is a power of two, so the reduction has no bias.
    std::uint64_t stable_index(const host_secret& secret, const vm_uuid& vm, std::uint32_t attempt) const noexcept {
        static constexpr std::string_view tag = "ankanet/l2/stable-mac/v1";
        ankanet::detail::siphasher hash{ankanet::detail::siphash_key::from_bytes(secret.bytes())};
        hash.update(std::as_bytes(std::span{tag.data(), tag.size()}));
        hash.update(vm.bytes());
        hash.update_le(attempt);
        return hash.finish() & (prefix_.space_size() - 1);
    }

private:
    static bool is_free(const mac_address& mac, const mac_registry& taken, std::string_view self) {
        const auto holder = taken.lookup(mac);
        return !holder || (!self.empty() && *holder == self);
    }

    // Every cheap candidate was taken: decide exhaustion exactly, then walk from `first`.
    result<mac_address> scan_from(std::uint64_t first, const mac_registry& taken, std::string_view self) const {
        std::uint64_t taken_in_space = 0;
        taken.for_each([&](const mac_address& mac, std::string_view holder) {
            if (prefix_.contains(mac) && (self.empty() || holder != self)) ++taken_in_space;
        });
        const std::uint64_t size = prefix_.space_size();
        if (taken_in_space >= size) return make_error_code(mac_errc::space_exhausted);
        // At most taken_in_space addresses are taken, so one of the first taken_in_space + 1 is free.
        for (std::uint64_t step = 0; step <= taken_in_space; ++step) {
            const auto candidate = prefix_.at((first + step) & (size - 1));
            if (is_free(candidate, taken, self)) return candidate;
        }
        return make_error_code(mac_errc::space_exhausted); // unreachable: the count says otherwise
    }

    [[no_unique_address]] Random random_{};
    mac_prefix prefix_;
    std::optional<host_secret> secret_;
};

using mac_randomizer = basic_mac_randomizer<>; ///< a MAC randomizer with the default random source

} // namespace ankanet::l2
