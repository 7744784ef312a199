/// @file
/// ankanet::l2::mac_memory — the MACs drawn at random for VMs, remembered by VM name across restarts.
///
/// Theory of operation. A VM given neither a custom MAC nor a stable one (derived from its UUID)
/// gets a random locally administered MAC. If the program serving it restarts and draws again, the
/// guest comes back with a new MAC: its DHCP lease, kept for the old MAC, is stranded for the whole
/// lease time and the guest takes another address — a leak of one lease per VM per restart, and an
/// address change nobody asked for. The product keeps a VM's dynamic MAC across a suspend; a daemon
/// should keep it across its own restart. mac_memory is that memory: a small state file mapping a
/// VM's name to the MAC it was given.
///
/// Use: load() once at start-up (a missing file is an empty memory); for each VM without a MAC of
/// its own, lookup(name) and use that MAC if there is one, else draw one and remember(name, mac)
/// *before* the VM uses it. remember() returns only once the file holds the MAC durably, so a crash
/// at any later instant still finds it, and a restarted program hands the VM the same MAC — and so
/// the DHCP server the same client, which gets its lease back.
///
/// The file is written as the lease file is (detail::replace_file): the whole set to `<file>.tmp`,
/// fsync, rename() over the file, fsync of the directory — after a crash the file is either the old
/// or the new complete set. check_writable() proves, before anything is written, that the file can
/// be replaced where it is. Format (text, one VM a line, sorted by name):
///
///   ankanet-macs 1
///   `<mac> <name, percent-escaped>`
///
/// The name is percent-escaped as the lease file's host names are: every byte outside '!'..'~', and
/// '%', becomes \%XX, so a name holds any bytes and a line is always two fields. Loading is strict: an
/// unknown header, a malformed line, a MAC that is not a unicast address, a name twice or a MAC
/// twice (two VMs cannot share one) is an error naming "file:line", and after a failed load the
/// memory refuses every write (not_loaded), so it never overwrites what it could not read.
///
/// Not on the per-frame path (it allocates and writes files freely). Not thread-safe.
#pragma once

#include <ankanet/detail/atomic_file.hpp>
#include <ankanet/wire/address.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

namespace ankanet::l2 {

/// Why a mac_memory refused to load or to remember.
enum class mac_memory_errc {
    corrupt_file = 1,   ///< a line of the file does not parse or contradicts another (the message names file:line)
    unreadable_file,    ///< the file exists but cannot be read
    not_loaded,         ///< written before a successful load()
    mac_taken,          ///< the MAC is remembered for another VM
    bad_mac,            ///< not a unicast MAC (multicast, broadcast or all-zero)
    bad_name,           ///< an empty name, or one longer than mac_memory::max_name_size
};

namespace detail {

class mac_memory_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "ankanet.l2.mac_memory"; }

    std::string message(int code) const override {
        switch (static_cast<mac_memory_errc>(code)) {
        case mac_memory_errc::corrupt_file: return "corrupt MAC memory file";
        case mac_memory_errc::unreadable_file: return "MAC memory file cannot be read";
        case mac_memory_errc::not_loaded: return "MAC memory written before it was loaded";
        case mac_memory_errc::mac_taken: return "MAC address is remembered for another VM";
        case mac_memory_errc::bad_mac: return "not a unicast MAC address";
        case mac_memory_errc::bad_name: return "VM name is empty or too long";
        }
        return "unknown MAC memory error";
    }
};

} // namespace detail

/// The category of mac_memory_errc (one instance per program).
inline const std::error_category& mac_memory_category() noexcept {
    static const detail::mac_memory_category_impl instance;
    return instance;
}

/// Wraps `e` in a std::error_code of its category (found by argument-dependent lookup).
inline std::error_code make_error_code(mac_memory_errc e) noexcept { return {static_cast<int>(e), mac_memory_category()}; }

} // namespace ankanet::l2

template <>
struct std::is_error_code_enum<ankanet::l2::mac_memory_errc> : std::true_type {};

namespace ankanet::l2 {

namespace detail {

inline constexpr std::string_view mac_memory_header = "ankanet-macs 1";

inline std::string escape_name(std::string_view name) {
    constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(name.size());
    for (char ch : name) {
        const auto b = static_cast<std::uint8_t>(ch);
        if (b < 0x21 || b > 0x7e || ch == '%') {
            out.push_back('%');
            out.push_back(digits[b >> 4]);
            out.push_back(digits[b & 0xf]);
        } else {
            out.push_back(ch);
        }
    }
    return out;
}

inline bool unescape_name(std::string_view text, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out.push_back(text[i]);
            continue;
        }
        if (i + 2 >= text.size()) return false;
        const int hi = wire::detail::hex_digit_value(text[i + 1]);
        const int lo = wire::detail::hex_digit_value(text[i + 2]);
        if (hi < 0 || lo < 0) return false;
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return true;
}

} // namespace detail

/// VMs' random MACs remembered by VM name in a crash-safe file (see the theory of operation above).
/// @par Example
/// @code
/// l2::mac_memory macs{"/var/lib/ankanetd/leases.macs"};
/// std::string why;
/// if (macs.check_writable(why) || macs.load(why)) { log(why); return 1; }
/// auto mac = macs.lookup("vm1");
/// auto port = net.add_port("vm1", mac ? port_mac::custom(*mac) : port_mac::random());
/// if (!mac && macs.remember("vm1", *net.mac(*port))) { ... }
/// @endcode
class mac_memory {
public:
    /// The longest name remembered, in bytes.
    static constexpr std::size_t max_name_size = 4096;

    /// Remembers MACs in `file`.
    explicit mac_memory(std::filesystem::path file) : path_(std::move(file)) {}

    /// The path.
    const std::filesystem::path& path() const noexcept { return path_; }
    /// How many VMs are remembered.
    std::size_t size() const noexcept { return by_name_.size(); }

    /// Whether the file can be written where it is (its directory exists and takes a new file, and
    /// the path is not a directory or a device), without touching it; `why` names the path.
    std::error_code check_writable(std::string& why) const {
        return ankanet::detail::check_replaceable_for(path_, "the remembered MACs", why);
    }

    /// Reads the file (a missing file: nothing remembered yet). On error `why` says what, for a bad
    /// line as "file:line: what", and the memory refuses every write.
    std::error_code load(std::string& why) {
        loaded_ = false;
        by_name_.clear();
        by_mac_.clear();
        const std::string name = path_.string();
        std::string text;
        if (auto error = ankanet::detail::read_file(path_, text)) {
            if (error == std::errc::no_such_file_or_directory) { // first start: nothing remembered yet
                loaded_ = true;
                return {};
            }
            why = fmt::format("{}: cannot read the remembered MACs: {}", name, error.message());
            return mac_memory_errc::unreadable_file;
        }

        std::map<std::string, wire::mac_address, std::less<>> names;
        std::unordered_map<std::uint64_t, std::pair<std::string, std::size_t>> macs; // MAC → (name, line)
        std::unordered_map<std::string, std::size_t> name_line;
        const auto corrupt = [&](std::size_t line, std::string what) {
            why = fmt::format("{}:{}: {}", name, line, what);
            return make_error_code(mac_memory_errc::corrupt_file);
        };
        std::string_view rest{text};
        std::size_t line_no = 0;
        bool saw_header = false;
        while (!rest.empty()) {
            ++line_no;
            const auto nl = rest.find('\n');
            if (nl == std::string_view::npos) return corrupt(line_no, "truncated line (no newline)");
            const auto line = rest.substr(0, nl);
            rest.remove_prefix(nl + 1);
            if (!saw_header) {
                if (line != detail::mac_memory_header) {
                    return corrupt(line_no, fmt::format("not an ankanet MAC memory file (expected header '{}')",
                                                        detail::mac_memory_header));
                }
                saw_header = true;
                continue;
            }
            const auto space = line.find(' ');
            if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos) {
                return corrupt(line_no, "expected 2 space-separated fields: MAC and name");
            }
            const auto mac_text = line.substr(0, space);
            const auto mac = wire::mac_address::parse(mac_text);
            if (!mac) return corrupt(line_no, fmt::format("bad MAC address '{}'", mac_text));
            if (!mac->is_unicast()) return corrupt(line_no, fmt::format("MAC {} is not a unicast address", *mac));
            std::string vm;
            if (!detail::unescape_name(line.substr(space + 1), vm) || vm.empty() || vm.size() > max_name_size) {
                return corrupt(line_no, fmt::format("bad VM name '{}'", line.substr(space + 1)));
            }
            if (const auto [first, added] = name_line.emplace(vm, line_no); !added) {
                return corrupt(line_no, fmt::format("second MAC for VM '{}' (the first is on line {})",
                                                    detail::escape_name(vm), first->second));
            }
            if (const auto [first, added] = macs.emplace(key_of(*mac), std::pair{vm, line_no}); !added) {
                return corrupt(line_no, fmt::format("MAC {} is remembered for two VMs ('{}' on line {})", *mac,
                                                    detail::escape_name(first->second.first), first->second.second));
            }
            names.emplace(std::move(vm), *mac);
        }
        if (!saw_header) return corrupt(1, "empty file (no header)");
        by_name_ = std::move(names);
        for (const auto& [vm, mac] : by_name_) by_mac_.emplace(key_of(mac), vm);
        loaded_ = true;
        return {};
    }

    /// The MAC remembered for the VM `name`, if any.
    std::optional<wire::mac_address> lookup(std::string_view name) const {
        const auto it = by_name_.find(name);
        if (it == by_name_.end()) return std::nullopt;
        return it->second;
    }

    /// The VM `mac` is remembered for, if any.
    std::optional<std::string> holder(wire::mac_address mac) const {
        const auto it = by_mac_.find(key_of(mac));
        if (it == by_mac_.end()) return std::nullopt;
        return it->second;
    }

    /// Remembers `mac` for the VM `name`, in the file before it returns (nothing is written when it
    /// is remembered already). Refuses a MAC remembered for another VM (mac_taken), a MAC that is
    /// not unicast, a bad name, and any write before a successful load(); when the file cannot be
    /// written, the error is the system's and the memory stays as it was.
    std::error_code remember(std::string_view name, wire::mac_address mac) {
        if (!loaded_) return mac_memory_errc::not_loaded;
        if (name.empty() || name.size() > max_name_size) return mac_memory_errc::bad_name;
        if (!mac.is_unicast()) return mac_memory_errc::bad_mac;
        if (const auto other = by_mac_.find(key_of(mac)); other != by_mac_.end() && other->second != name) {
            return mac_memory_errc::mac_taken;
        }
        std::optional<wire::mac_address> before;
        if (const auto it = by_name_.find(name); it != by_name_.end()) {
            if (it->second == mac) return {};
            before = it->second;
        }
        const auto it = by_name_.insert_or_assign(std::string{name}, mac).first;
        if (auto error = persist()) { // the file still holds the old set: so must memory
            if (before) it->second = *before; else by_name_.erase(it);
            return error;
        }
        if (before) by_mac_.erase(key_of(*before));
        by_mac_.insert_or_assign(key_of(mac), std::string{name});
        return {};
    }

    /// Forgets the VM `name` (nothing to do when it is not remembered), in the file before it returns.
    std::error_code forget(std::string_view name) {
        if (!loaded_) return mac_memory_errc::not_loaded;
        const auto it = by_name_.find(name);
        if (it == by_name_.end()) return {};
        const auto entry = *it;
        by_name_.erase(it);
        if (auto error = persist()) {
            by_name_.insert(entry);
            return error;
        }
        by_mac_.erase(key_of(entry.second));
        return {};
    }

private:
    static std::uint64_t key_of(wire::mac_address mac) noexcept {
        std::uint64_t key = 0;
        for (auto b : mac.octets()) key = (key << 8) | b;
        return key;
    }

    std::error_code persist() const {
        std::string text{detail::mac_memory_header};
        text.push_back('\n');
        for (const auto& [vm, mac] : by_name_) text += fmt::format("{} {}\n", mac, detail::escape_name(vm));
        return ankanet::detail::replace_file(path_, text);
    }

    std::filesystem::path path_;
    std::map<std::string, wire::mac_address, std::less<>> by_name_; // ordered: the file lists VMs by name
    std::unordered_map<std::uint64_t, std::string> by_mac_;
    bool loaded_ = false;
};

} // namespace ankanet::l2
