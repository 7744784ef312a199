/// @file
/// ankanet::forward::table — the port-forward rules: which host ports lead into which VM's ports.
///
/// Theory of operation. A pure table, no sockets: forward::service (forward/service.hpp) owns the
/// listeners and asks the table where a connection goes. A rule names
///  - a protocol (TCP or UDP),
///  - a host address to listen on (127.0.0.1 unless the operator asks for another, or for 0.0.0.0),
///  - a host port or range, and a guest port or range of the same length (port i of one to port i of
///    the other),
///  - the VM, by identity rather than by address: its MAC, or the name of its port (vm_selector).
///    A VM's address changes from one start to the next; the service resolves the VM's current
///    address when a connection arrives, so a rule keeps working across leases.
/// Two rules conflict when they share a protocol, an overlapping host port range and a host address
/// (equal, or either is the wildcard 0.0.0.0, which covers every address): the second is refused
/// with a message naming the first. A rule refused leaves the table as it was.
///
/// Capacity is fixed at construction (table_limits): at most max_rules rules covering at most
/// max_ports host ports in all, so a range of 1-65535 cannot make the service open 65 535 listeners
/// by accident. Lookups are linear over the rules: they run once per accepted connection (or new
/// UDP client), never per packet. Rule ids are never reused while the table lives, so a client that
/// removes "forward 3" never removes a rule added after it was gone.
///
/// Text form, the one `--forward` and the control socket take (parse_rule, format_rule):
///     `[tcp:|udp:][HOSTADDR:]HOSTPORT[-END]:GUESTPORT[-END][@VM]`
/// TCP and 127.0.0.1 by default; a guest range may be given by its first port alone; VM is a MAC or
/// a port name (the embedder maps friendlier names: ankanetd takes a netns name or a socket path).
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace ankanet::forward {

/// Why the table refused a rule.
enum class forward_errc {
    bad_rule = 1,  ///< malformed text, a port 0, ranges of different lengths, past 65535
    conflict,      ///< another rule claims one of its host ports on that address
    too_many,      ///< over table_limits::max_rules or max_ports
    no_such_rule,  ///< remove() of an id the table does not hold
    port_in_use,   ///< (service) the host port is taken by another socket on the host
    no_address,    ///< (service) the VM has no address yet, or is not attached
};

namespace detail {
class forward_error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "ankanet.forward"; }
    std::string message(int code) const override {
        switch (static_cast<forward_errc>(code)) {
        case forward_errc::bad_rule: return "malformed port forward";
        case forward_errc::conflict: return "another forward claims that host port";
        case forward_errc::too_many: return "too many port forwards";
        case forward_errc::no_such_rule: return "no such port forward";
        case forward_errc::port_in_use: return "the host port is in use";
        case forward_errc::no_address: return "the VM has no address";
        }
        return "unknown port forward error";
    }
};
} // namespace detail

/// The forward error category.
inline const std::error_category& forward_error_category() noexcept {
    static const detail::forward_error_category_impl instance;
    return instance;
}
/// Wraps `e` in a std::error_code of its category (found by argument-dependent lookup).
inline std::error_code make_error_code(forward_errc e) noexcept { return {static_cast<int>(e), forward_error_category()}; }

} // namespace ankanet::forward

template <>
struct std::is_error_code_enum<ankanet::forward::forward_errc> : std::true_type {};

namespace ankanet::forward {

/// The transport a forward carries.
enum class protocol : std::uint8_t { tcp, udp };

/// The text form.
constexpr std::string_view to_string(protocol p) noexcept { return p == protocol::tcp ? "tcp" : "udp"; }

/// Which VM a rule leads into: the one whose port has this MAC, or this name. Empty: whatever VM is
/// the network's only one when a connection arrives (refused while there are none or several).
struct vm_selector {
    std::optional<wire::mac_address> mac; ///< the VM whose port has this MAC
    std::string name; ///< else the VM whose port has this name

    /// Whether empty.
    bool empty() const noexcept { return !mac && name.empty(); }
    /// Whether the port named `port_name` with MAC `port_mac` is the VM. A name matches itself and
    /// the ports numbered after it ("qemu:/run/vm.sock" matches "qemu:/run/vm.sock#3": each QEMU
    /// connection to one socket is a port of its own, and a VM that reconnects keeps its forwards).
    bool matches(std::string_view port_name, const std::optional<wire::mac_address>& port_mac) const noexcept {
        if (mac) return port_mac && *port_mac == *mac;
        if (name.empty()) return false;
        if (port_name == name) return true;
        if (port_name.size() <= name.size() + 1 || port_name.substr(0, name.size()) != name || port_name[name.size()] != '#') {
            return false;
        }
        const auto digits = port_name.substr(name.size() + 1);
        return std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
    }
    /// Memberwise equality.
    bool operator==(const vm_selector&) const = default;
};

/// The text form.
inline std::string to_string(const vm_selector& vm) {
    if (vm.mac) return wire::to_string(*vm.mac);
    return vm.name;
}

/// One forward: host ports [host_port, host_port_last] on host_address lead to guest ports
/// [guest_port, guest_port + (host_port_last - host_port)] of the VM.
struct rule {
    protocol proto = protocol::tcp; ///< TCP or UDP
    wire::ipv4_address host_address{127, 0, 0, 1}; ///< the host address listened on
    std::uint16_t host_port = 0; ///< the first host port listened on
    std::uint16_t host_port_last = 0; ///< == host_port for a single port
    std::uint16_t guest_port = 0; ///< the first guest port reached
    vm_selector vm; ///< the VM reached

    /// The ports.
    std::size_t ports() const noexcept { return host_port_last >= host_port ? std::size_t{host_port_last} - host_port + 1 : 0; }
    /// The guest port last.
    std::uint16_t guest_port_last() const noexcept { return static_cast<std::uint16_t>(guest_port + (ports() - 1)); }
    /// The guest port a host port of the rule leads to.
    std::uint16_t guest_port_for(std::uint16_t port) const noexcept {
        return static_cast<std::uint16_t>(guest_port + (port - host_port));
    }
    /// Whether `port` is in the rule's host port range.
    bool covers(std::uint16_t port) const noexcept { return port >= host_port && port <= host_port_last; }
    /// Memberwise equality.
    bool operator==(const rule&) const = default;
};

/// What is wrong with a rule's numbers, or nothing.
inline std::optional<std::string> check_rule(const rule& r) {
    if (r.host_port == 0 || r.guest_port == 0) return std::string{"port 0 cannot be forwarded"};
    if (r.host_port_last < r.host_port) return fmt::format("the host range {}-{} ends before it starts", r.host_port, r.host_port_last);
    if (std::size_t{r.guest_port} + r.ports() - 1 > 0xffff) {
        return fmt::format("the guest range from {} for {} ports runs past 65535", r.guest_port, r.ports());
    }
    if (r.host_address.is_multicast() || r.host_address.is_broadcast()) {
        return fmt::format("{} is not an address to listen on", r.host_address);
    }
    return std::nullopt;
}

/// The rule in the text form parse_rule() reads, every part spelt out: "tcp:127.0.0.1:8080:80@vm".
inline std::string format_rule(const rule& r) {
    std::string text = fmt::format("{}:{}:{}", to_string(r.proto), r.host_address, r.host_port);
    if (r.ports() > 1) text += fmt::format("-{}", r.host_port_last);
    text += fmt::format(":{}", r.guest_port);
    if (r.ports() > 1) text += fmt::format("-{}", r.guest_port_last());
    if (!r.vm.empty()) text += "@" + to_string(r.vm);
    return text;
}

namespace detail {
inline bool parse_port(std::string_view text, std::uint16_t& out) noexcept {
    unsigned value = 0;
    const auto* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc{} || ptr != end || value > 0xffff) return false;
    out = static_cast<std::uint16_t>(value);
    return true;
}
/// "PORT" or "PORT-END".
inline bool parse_range(std::string_view text, std::uint16_t& first, std::uint16_t& last, bool& ranged) noexcept {
    const auto dash = text.find('-');
    ranged = dash != std::string_view::npos;
    if (!ranged) {
        if (!parse_port(text, first)) return false;
        last = first;
        return true;
    }
    return parse_port(text.substr(0, dash), first) && parse_port(text.substr(dash + 1), last);
}
} // namespace detail

/// Reads `[tcp:|udp:][HOSTADDR:]HOSTPORT[-END]:GUESTPORT[-END][@VM]` (see the top of this file);
/// `@VM` is a MAC, else a port name. Refuses with forward_errc::bad_rule and `why`.
inline result<rule> parse_rule(std::string_view spec, std::string* why = nullptr) {
    const auto refuse = [&](std::string reason) -> result<rule> {
        if (why != nullptr) *why = fmt::format("forward \"{}\": {}", spec, reason);
        return make_error_code(forward_errc::bad_rule);
    };
    rule r;
    std::string_view ports = spec;
    if (const auto at = spec.find('@'); at != std::string_view::npos) {
        const auto vm = spec.substr(at + 1);
        if (vm.empty()) return refuse("nothing after '@' (name a VM, or leave '@' out for the only one)");
        if (const auto mac = wire::mac_address::parse(vm)) r.vm.mac = *mac;
        else r.vm.name = std::string{vm};
        ports = spec.substr(0, at);
    }
    std::vector<std::string_view> parts;
    for (std::size_t from = 0;;) {
        const auto colon = ports.find(':', from);
        parts.push_back(ports.substr(from, colon == std::string_view::npos ? std::string_view::npos : colon - from));
        if (colon == std::string_view::npos || parts.size() > 4) break;
        from = colon + 1;
    }
    std::size_t next = 0;
    if (parts.size() >= 3 && (parts[0] == "tcp" || parts[0] == "udp")) {
        r.proto = parts[0] == "tcp" ? protocol::tcp : protocol::udp;
        next = 1;
    }
    if (parts.size() - next == 3) {
        const auto address = wire::ipv4_address::parse(parts[next]);
        if (!address) return refuse(fmt::format("\"{}\" is not an IPv4 address to listen on", parts[next]));
        r.host_address = *address;
        ++next;
    }
    if (parts.size() - next != 2) return refuse("expected [tcp:|udp:][HOSTADDR:]HOSTPORT[-END]:GUESTPORT[-END][@VM]");
    bool host_ranged = false;
    bool guest_ranged = false;
    std::uint16_t guest_last = 0;
    if (!detail::parse_range(parts[next], r.host_port, r.host_port_last, host_ranged)) {
        return refuse(fmt::format("\"{}\" is not a port or a range of ports (1-65535)", parts[next]));
    }
    if (!detail::parse_range(parts[next + 1], r.guest_port, guest_last, guest_ranged)) {
        return refuse(fmt::format("\"{}\" is not a port or a range of ports (1-65535)", parts[next + 1]));
    }
    if (const auto problem = check_rule(r)) return refuse(*problem);
    if (guest_ranged && (guest_last < r.guest_port || std::size_t{guest_last} - r.guest_port + 1 != r.ports())) {
        return refuse(fmt::format("the host range has {} ports and the guest range {}", r.ports(),
                                  guest_last >= r.guest_port ? std::size_t{guest_last} - r.guest_port + 1 : 0));
    }
    return r;
}

/// How many rules, and host ports in all, a table holds at most.
struct table_limits {
    std::size_t max_rules = 256; ///< rules at most
    std::size_t max_ports = 4096; ///< host ports of all rules together, at most
};

using rule_id = std::uint32_t; ///< names a rule in a table (add() returns it)

/// A rule and the id the table gave it.
struct entry {
    rule_id id = 0; ///< ID
    forward::rule rule; ///< rule
};

/// Where a connection to a host port goes.
struct destination {
    rule_id id = 0; ///< ID
    std::uint16_t guest_port = 0; ///< guest port
    const forward::rule* rule = nullptr; ///< valid until the table changes
};

/// The port-forward rules; see the theory of operation above.
class table {
public:
    /// An empty table within `limits`.
    explicit table(table_limits limits = {}) : limits_(limits) { entries_.reserve(limits.max_rules); }

    /// Adds `r`; refuses a malformed rule (bad_rule), a conflict (naming the rule that holds the
    /// port) and one past the limits (too_many), with `why`.
    result<rule_id> add(const rule& r, std::string* why = nullptr) {
        if (const auto refused = admissible(r, why)) return refused;
        entries_.push_back(entry{next_id_, r});
        ports_ += r.ports();
        return next_id_++;
    }

    /// What add(r) would refuse, with `why`, changing nothing (so a caller can bind the rule's
    /// ports between the check and the add without spending an id on a rule it then refuses).
    std::error_code admissible(const rule& r, std::string* why = nullptr) const {
        const auto refuse = [&](forward_errc e, std::string reason) {
            if (why != nullptr) *why = std::move(reason);
            return make_error_code(e);
        };
        if (const auto problem = check_rule(r)) return refuse(forward_errc::bad_rule, fmt::format("forward {}: {}", format_rule(r), *problem));
        if (const entry* holder = conflicting(r)) {
            const std::uint16_t port = std::max(r.host_port, holder->rule.host_port);
            return refuse(forward_errc::conflict,
                          fmt::format("forward {}: {} {}:{} is claimed by forward {} ({})", format_rule(r), to_string(r.proto),
                                      r.host_address, port, holder->id, format_rule(holder->rule)));
        }
        if (entries_.size() >= limits_.max_rules) {
            return refuse(forward_errc::too_many, fmt::format("forward {}: the table holds its limit of {} forwards",
                                                              format_rule(r), limits_.max_rules));
        }
        if (ports_ + r.ports() > limits_.max_ports) {
            return refuse(forward_errc::too_many,
                          fmt::format("forward {}: {} more host ports would pass the limit of {} ({} in use)", format_rule(r),
                                      r.ports(), limits_.max_ports, ports_));
        }
        return {};
    }

    /// Removes rule `id`; false when there is none.
    bool remove(rule_id id) {
        const auto it = std::find_if(entries_.begin(), entries_.end(), [&](const entry& e) { return e.id == id; });
        if (it == entries_.end()) return false;
        ports_ -= it->rule.ports();
        entries_.erase(it);
        return true;
    }

    /// The rule with id `id`.
    const rule* find(rule_id id) const noexcept {
        for (const auto& e : entries_) {
            if (e.id == id) return &e.rule;
        }
        return nullptr;
    }
    /// The id of a rule equal to `r` (to remove a forward by its text).
    std::optional<rule_id> find(const rule& r) const noexcept {
        for (const auto& e : entries_) {
            if (e.rule == r) return e.id;
        }
        return std::nullopt;
    }

    /// Where a connection that host port `port` on `address` (the listener's) accepted goes.
    std::optional<destination> lookup(protocol proto, wire::ipv4_address address, std::uint16_t port) const noexcept {
        for (const auto& e : entries_) {
            if (e.rule.proto == proto && e.rule.host_address == address && e.rule.covers(port)) {
                return destination{e.id, e.rule.guest_port_for(port), &e.rule};
            }
        }
        return std::nullopt;
    }

    /// The ids of the rules that lead into the VM whose port is named `port_name` with `mac`
    /// (empty selectors count only when `only_vm`: it is the network's only VM).
    std::vector<rule_id> for_vm(std::string_view port_name, const std::optional<wire::mac_address>& mac, bool only_vm) const {
        std::vector<rule_id> ids;
        for (const auto& e : entries_) {
            if (e.rule.vm.matches(port_name, mac) || (only_vm && e.rule.vm.empty())) ids.push_back(e.id);
        }
        return ids;
    }

    /// Every rule, in the order added.
    std::span<const entry> entries() const noexcept { return entries_; }
    /// The number of elements.
    std::size_t size() const noexcept { return entries_.size(); }
    /// Host ports the rules cover in all.
    std::size_t ports() const noexcept { return ports_; }
    /// The limits.
    const table_limits& limits() const noexcept { return limits_; }

private:
    static bool addresses_overlap(wire::ipv4_address a, wire::ipv4_address b) noexcept {
        return a == b || a.to_u32() == 0 || b.to_u32() == 0;
    }
    const entry* conflicting(const rule& r) const noexcept {
        for (const auto& e : entries_) {
            if (e.rule.proto == r.proto && addresses_overlap(e.rule.host_address, r.host_address) &&
                e.rule.host_port <= r.host_port_last && r.host_port <= e.rule.host_port_last) {
                return &e;
            }
        }
        return nullptr;
    }

    table_limits limits_;
    std::vector<entry> entries_; // reserved at max_rules
    std::size_t ports_ = 0;
    rule_id next_id_ = 1;
};

} // namespace ankanet::forward
