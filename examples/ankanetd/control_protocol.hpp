// ankanetd's control protocol: one JSON request per line in, one JSON response per line out.
//
// Theory of operation. Pure: no sockets, no clocks. The daemon implements control_target (its
// port forwards and its VMs); control_server (control_server.hpp) reads lines from the control
// socket and answers each with handle_request(); ctl (ctl.hpp) is the client. The README's
// "Control socket" section is the reference for operators; the schema in brief:
//
//   request:  {"id": ANY, "command": "forward.list" | "forward.add" | "forward.remove" | "vm.list" | "vm.link"
//                         | "lease.list", ...}
//   response: {"id": ANY, "ok": true, ...}  or  {"id": ANY, "ok": false, "error": "why, for a person"}
//
//  - "id" is any JSON value, echoed as it came; null when the request had none, or could not be
//    read (not JSON, not an object, nested too deep).
//  - forward.add takes "forward": "tcp:127.0.0.1:8080:80@vm1" (forward::parse_rule's text) or the
//    fields protocol ("tcp"/"udp", default tcp), host_address (default 127.0.0.1), host_port,
//    host_port_end, guest_port, guest_port_end (optional, must match the host range) and vm (a
//    MAC or a port name; absent or null: the network's only VM); answers "forward": {...}.
//  - forward.remove takes "forward_id": N or "forward": TEXT (the rule the target lists that is
//    equal to TEXT's); answers "forward_id": N.
//  - forward.list answers "forwards": [...], vm.list "vms": [...]; vm.link takes "vm" (a name
//    or a MAC) and "up": true|false and answers "vm" and "link".
//  - lease.list answers "leases": [...]: every bound, unexpired DHCP lease, by address, with the VM
//    attached now that holds it (null for a VM that is gone, whose lease still runs).
//  - A field a command does not know is refused, so a misspelt one is never silently ignored.
//
// Untrusted input. Whoever can open the socket can send anything: handle_request() never throws
// and never lets input reach undefined behaviour. Parsing is nlohmann/json's; before it, a scan
// that counts brackets outside strings refuses nesting deeper than max_nesting, so nothing later
// (the echo of "id" is written recursively) can run out of stack; a NUL byte, which nlohmann's
// reader would take for the end of the input, is refused outright. Numbers are checked for type
// and range before any conversion; text from the request is quoted back cut to a few dozen bytes;
// the response is written with invalid UTF-8 replaced, so a port name the daemon reports can never
// make writing fail. A response holds no newline (the JSON writer escapes control characters).
#pragma once

#include <ankanet/forward/table.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace ankanetd {

/// A VM as the control socket reports it.
struct vm_status {
    std::string name;    ///< the port's name, e.g. "netns:/run/netns/vm1:eth0", "qemu:/run/vm.sock#1"
    std::string backend; ///< "tap", "qemu-stream", "unix-dgram", ...
    std::optional<ankanet::wire::mac_address> mac;
    std::optional<ankanet::wire::ipv4_address> address; ///< its lease, or the address it announced
    std::string hostname;                               ///< from its DHCP lease; may be empty
    std::optional<std::int64_t> lease_expires;          ///< unix seconds
    bool link_up = true;
    std::uint64_t frames_in = 0, frames_out = 0, dropped = 0;
};

/// A DHCP lease as the control socket reports it.
struct lease_status {
    ankanet::wire::ipv4_address address;
    ankanet::wire::mac_address mac;
    std::string hostname;           ///< option 12 as the guest sent it (may be empty)
    std::int64_t expires = 0;       ///< unix seconds
    std::optional<std::string> vm;  ///< the port attached now with that MAC; none when it is gone
};

/// A port forward and how many connections (or UDP clients) it carries now.
struct forward_status {
    ankanet::forward::rule_id id = 0;
    ankanet::forward::rule rule;
    std::uint64_t connections = 0;
};

/// What the control socket controls: the daemon implements it. Called on the daemon's thread.
/// A refusal sets `why` to one line a person can read (else the error code's message is used).
class control_target {
public:
    virtual ~control_target() = default;
    virtual std::vector<forward_status> forwards() = 0;
    virtual ankanet::result<ankanet::forward::rule_id> add_forward(const ankanet::forward::rule& rule, std::string& why) = 0;
    virtual std::error_code remove_forward(ankanet::forward::rule_id id, std::string& why) = 0;
    virtual std::vector<vm_status> vms() = 0;
    /// `vm` is a port name or a MAC, as the request gave it.
    virtual std::error_code set_link(std::string_view vm, bool up, std::string& why) = 0;
    /// The rule as forwards() would list it (the daemon names VMs by port name where a request may
    /// give a --netns name): what forward.remove compares a rule's text with. As given by default.
    virtual ankanet::forward::rule listed_form(ankanet::forward::rule rule) { return rule; }
    /// The bound, unexpired DHCP leases, by address; none when the network serves no DHCP.
    virtual std::vector<lease_status> leases() { return {}; }
};

/// Brackets deeper than this in a request refuse it before it is parsed.
inline constexpr std::size_t max_nesting = 32;
/// The longest "forward" text accepted (a rule's text with the longest unix socket path fits).
inline constexpr std::size_t max_forward_text = 1024;

namespace control_detail {

using json = nlohmann::ordered_json;

/// The deepest nesting of [ and { outside strings in `line`; stops counting past `limit`.
inline std::size_t nesting_depth(std::string_view line, std::size_t limit = max_nesting) noexcept {
    std::size_t depth = 0;
    std::size_t deepest = 0;
    bool in_string = false;
    bool escaped = false;
    for (const char c : line) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > deepest) deepest = depth;
            if (deepest > limit) return deepest;
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return deepest;
}

/// `text` in quotes, cut (at a UTF-8 character boundary) to `max` bytes: for echoing request text
/// in an error message.
inline std::string quote_cut(std::string_view text, std::size_t max = 64) {
    if (text.size() <= max) return fmt::format("\"{}\"", text);
    std::size_t cut = max;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) --cut;
    return fmt::format("\"{}...\" ({} bytes)", text.substr(0, cut), text.size());
}

/// A JSON value, described for an error message: its type, or the number or short text itself.
inline std::string describe(const json& value) {
    if (value.is_string()) return fmt::format("the string {}", quote_cut(value.get_ref<const std::string&>(), 32));
    if (value.is_number() || value.is_boolean() || value.is_null()) return value.dump();
    return fmt::format("an {}", value.type_name()); // "an object", "an array"
}

/// A request refused: the message for "error".
struct refusal {
    std::string message;
};

inline const json* find(const json& request, std::string_view key) {
    const auto it = request.find(key);
    return it == request.end() ? nullptr : &*it;
}

/// Refuses a field that `command` does not take.
inline std::optional<refusal> unknown_fields(const json& request, std::string_view command,
                                             std::initializer_list<std::string_view> known) {
    for (const auto& [key, value] : request.items()) {
        if (key == "id" || key == "command") continue;
        bool found = false;
        for (const auto k : known) found = found || key == k;
        if (!found) {
            std::string list;
            for (const auto k : known) list += fmt::format("{}{}", list.empty() ? "" : ", ", k);
            return refusal{fmt::format("{}: unknown field {} (it takes {})", command, quote_cut(key, 32),
                                       list.empty() ? std::string{"no fields"} : list)};
        }
    }
    return std::nullopt;
}

/// The integer field `key` of `request` in [min, max]; absent → nullopt and no refusal.
inline std::optional<std::uint64_t> integer_field(const json& request, std::string_view key, std::uint64_t min, std::uint64_t max,
                                                  std::optional<refusal>& error) {
    const json* value = find(request, key);
    if (value == nullptr) return std::nullopt;
    const auto refuse = [&] {
        error = refusal{fmt::format("\"{}\" must be a whole number from {} to {}, not {}", key, min, max, describe(*value))};
        return std::nullopt;
    };
    if (!value->is_number_integer()) return refuse();
    if (value->is_number_unsigned()) {
        const auto n = value->get<std::uint64_t>();
        if (n < min || n > max) return refuse();
        return n;
    }
    const auto n = value->get<std::int64_t>();
    if (n < 0 || static_cast<std::uint64_t>(n) < min || static_cast<std::uint64_t>(n) > max) return refuse();
    return static_cast<std::uint64_t>(n);
}

/// The string field `key`; absent → nullopt and no refusal; another type → a refusal.
inline std::optional<std::string> string_field(const json& request, std::string_view key, std::optional<refusal>& error) {
    const json* value = find(request, key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_string()) {
        error = refusal{fmt::format("\"{}\" must be a string, not {}", key, describe(*value))};
        return std::nullopt;
    }
    return value->get<std::string>();
}

inline json forward_json(const forward_status& f) {
    const auto& r = f.rule;
    json out = json::object();
    out["id"] = f.id;
    out["protocol"] = std::string{ankanet::forward::to_string(r.proto)};
    out["host_address"] = ankanet::wire::to_string(r.host_address);
    out["host_port"] = r.host_port;
    out["host_port_end"] = r.host_port_last;
    out["guest_port"] = r.guest_port;
    out["guest_port_end"] = r.guest_port_last();
    out["vm"] = r.vm.empty() ? json(nullptr) : json(ankanet::forward::to_string(r.vm));
    out["text"] = ankanet::forward::format_rule(r);
    out["connections"] = f.connections;
    return out;
}

inline json vm_json(const vm_status& vm) {
    json out = json::object();
    out["name"] = vm.name;
    out["backend"] = vm.backend;
    out["mac"] = vm.mac ? json(ankanet::wire::to_string(*vm.mac)) : json(nullptr);
    out["ip"] = vm.address ? json(ankanet::wire::to_string(*vm.address)) : json(nullptr);
    out["hostname"] = vm.hostname;
    out["lease_expires"] = vm.lease_expires ? json(*vm.lease_expires) : json(nullptr);
    out["link"] = vm.link_up ? "up" : "down";
    json counters = json::object();
    counters["frames_in"] = vm.frames_in;
    counters["frames_out"] = vm.frames_out;
    counters["dropped"] = vm.dropped;
    out["counters"] = std::move(counters);
    return out;
}

inline json lease_json(const lease_status& lease) {
    json out = json::object();
    out["ip"] = ankanet::wire::to_string(lease.address);
    out["mac"] = ankanet::wire::to_string(lease.mac);
    out["hostname"] = lease.hostname;
    out["expires"] = lease.expires;
    out["vm"] = lease.vm ? json(*lease.vm) : json(nullptr);
    return out;
}

/// The message of a target's refusal: its `why`, else the error's own message.
inline std::string target_message(std::string_view what, std::error_code ec, const std::string& why) {
    return why.empty() ? fmt::format("{}: {}", what, ec.message()) : why;
}

/// forward.add's rule, from "forward" or from the separate fields.
inline std::optional<ankanet::forward::rule> rule_from_request(const json& request, std::optional<refusal>& error) {
    namespace fwd = ankanet::forward;
    if (const auto refused = unknown_fields(request, "forward.add",
                                            {"forward", "protocol", "host_address", "host_port", "host_port_end", "guest_port",
                                             "guest_port_end", "vm"})) {
        error = refused;
        return std::nullopt;
    }
    if (find(request, "forward") != nullptr) {
        for (const auto key : {"protocol", "host_address", "host_port", "host_port_end", "guest_port", "guest_port_end", "vm"}) {
            if (find(request, key) != nullptr) {
                error = refusal{fmt::format("forward.add: give \"forward\" (the text form) or the separate fields, not both (\"{}\")", key)};
                return std::nullopt;
            }
        }
        const auto text = string_field(request, "forward", error);
        if (!text) return std::nullopt;
        if (text->size() > max_forward_text) {
            error = refusal{fmt::format("\"forward\" is {} bytes long; a forward's text is at most {}", text->size(), max_forward_text)};
            return std::nullopt;
        }
        std::string why;
        auto parsed = fwd::parse_rule(*text, &why);
        if (!parsed) {
            error = refusal{why.empty() ? fmt::format("forward {}: {}", quote_cut(*text), parsed.error().message()) : why};
            return std::nullopt;
        }
        return *parsed;
    }

    fwd::rule r;
    if (const auto proto = string_field(request, "protocol", error)) {
        if (*proto == "tcp") r.proto = fwd::protocol::tcp;
        else if (*proto == "udp") r.proto = fwd::protocol::udp;
        else {
            error = refusal{fmt::format("\"protocol\" must be \"tcp\" or \"udp\", not {}", quote_cut(*proto, 32))};
            return std::nullopt;
        }
    }
    if (error) return std::nullopt;
    if (const auto address = string_field(request, "host_address", error)) {
        const auto parsed = ankanet::wire::ipv4_address::parse(*address);
        if (!parsed) {
            error = refusal{fmt::format("\"host_address\" must be an IPv4 address to listen on, not {}", quote_cut(*address, 32))};
            return std::nullopt;
        }
        r.host_address = *parsed;
    }
    if (error) return std::nullopt;
    const auto host_port = integer_field(request, "host_port", 1, 0xffff, error);
    if (error) return std::nullopt;
    if (!host_port) {
        error = refusal{"forward.add: needs \"host_port\" (or \"forward\": the text form)"};
        return std::nullopt;
    }
    const auto guest_port = integer_field(request, "guest_port", 1, 0xffff, error);
    if (error) return std::nullopt;
    if (!guest_port) {
        error = refusal{"forward.add: needs \"guest_port\""};
        return std::nullopt;
    }
    r.host_port = static_cast<std::uint16_t>(*host_port);
    r.guest_port = static_cast<std::uint16_t>(*guest_port);
    const auto host_end = integer_field(request, "host_port_end", 1, 0xffff, error);
    if (error) return std::nullopt;
    r.host_port_last = host_end ? static_cast<std::uint16_t>(*host_end) : r.host_port;
    const auto guest_end = integer_field(request, "guest_port_end", 1, 0xffff, error);
    if (error) return std::nullopt;
    if (const json* vm = find(request, "vm"); vm != nullptr && !vm->is_null()) {
        if (!vm->is_string() || vm->get_ref<const std::string&>().empty()) {
            error = refusal{fmt::format("\"vm\" must be a VM's MAC or name (or null for the only VM), not {}", describe(*vm))};
            return std::nullopt;
        }
        const auto& name = vm->get_ref<const std::string&>();
        if (const auto mac = ankanet::wire::mac_address::parse(name)) r.vm.mac = *mac;
        else r.vm.name = name;
    }
    if (const auto problem = fwd::check_rule(r)) {
        error = refusal{fmt::format("forward {}: {}", fwd::format_rule(r), *problem)};
        return std::nullopt;
    }
    if (guest_end && (*guest_end < r.guest_port || *guest_end - r.guest_port + 1 != r.ports())) {
        error = refusal{fmt::format("forward {}: \"guest_port_end\" {} does not match the host range of {} port{}",
                                    fwd::format_rule(r), *guest_end, r.ports(), r.ports() == 1 ? "" : "s")};
        return std::nullopt;
    }
    return r;
}

/// Answers a request that parsed as an object; fills `response` (whose "id" and "ok" are set).
inline std::optional<refusal> dispatch(const json& request, control_target& target, json& response) {
    const json* command_value = find(request, "command");
    if (command_value == nullptr) {
        return refusal{"the request names no \"command\" (forward.list, forward.add, forward.remove, vm.list, vm.link)"};
    }
    if (!command_value->is_string()) return refusal{fmt::format("\"command\" must be a string, not {}", describe(*command_value))};
    const auto& command = command_value->get_ref<const std::string&>();
    std::optional<refusal> error;

    if (command == "forward.list") {
        if (auto refused = unknown_fields(request, command, {})) return refused;
        json list = json::array();
        for (const auto& f : target.forwards()) list.push_back(forward_json(f));
        response["forwards"] = std::move(list);
        return std::nullopt;
    }
    if (command == "forward.add") {
        const auto rule = rule_from_request(request, error);
        if (!rule) return error;
        std::string why;
        const auto id = target.add_forward(*rule, why);
        if (!id) return refusal{target_message(fmt::format("forward {}", ankanet::forward::format_rule(*rule)), id.error(), why)};
        response["forward"] = forward_json(forward_status{*id, *rule, 0});
        return std::nullopt;
    }
    if (command == "forward.remove") {
        if (auto refused = unknown_fields(request, command, {"forward_id", "forward"})) return refused;
        const bool by_id = find(request, "forward_id") != nullptr;
        const bool by_text = find(request, "forward") != nullptr;
        if (by_id == by_text) {
            return refusal{"forward.remove: give one of \"forward_id\" (a number forward.list shows) and \"forward\" (the rule's text)"};
        }
        ankanet::forward::rule_id id = 0;
        if (by_id) {
            const auto n = integer_field(request, "forward_id", 0, std::numeric_limits<ankanet::forward::rule_id>::max(), error);
            if (error) return error;
            id = static_cast<ankanet::forward::rule_id>(*n);
        } else {
            const auto text = string_field(request, "forward", error);
            if (error) return error;
            if (text->size() > max_forward_text) {
                return refusal{fmt::format("\"forward\" is {} bytes long; a forward's text is at most {}", text->size(), max_forward_text)};
            }
            std::string why;
            const auto parsed = ankanet::forward::parse_rule(*text, &why);
            if (!parsed) return refusal{why.empty() ? fmt::format("forward {}: {}", quote_cut(*text), parsed.error().message()) : why};
            const auto rule = target.listed_form(*parsed);
            std::optional<ankanet::forward::rule_id> found;
            for (const auto& f : target.forwards()) {
                if (f.rule == rule) {
                    found = f.id;
                    break;
                }
            }
            if (!found) {
                return refusal{fmt::format("no forward {} (forward.list shows them)", ankanet::forward::format_rule(rule))};
            }
            id = *found;
        }
        std::string why;
        if (const auto ec = target.remove_forward(id, why)) return refusal{target_message(fmt::format("forward {}", id), ec, why)};
        response["forward_id"] = id;
        return std::nullopt;
    }
    if (command == "vm.list") {
        if (auto refused = unknown_fields(request, command, {})) return refused;
        json list = json::array();
        for (const auto& vm : target.vms()) list.push_back(vm_json(vm));
        response["vms"] = std::move(list);
        return std::nullopt;
    }
    if (command == "lease.list") {
        if (auto refused = unknown_fields(request, command, {})) return refused;
        json list = json::array();
        for (const auto& lease : target.leases()) list.push_back(lease_json(lease));
        response["leases"] = std::move(list);
        return std::nullopt;
    }
    if (command == "vm.link") {
        if (auto refused = unknown_fields(request, command, {"vm", "up"})) return refused;
        const auto vm = string_field(request, "vm", error);
        if (error) return error;
        if (!vm || vm->empty()) return refusal{"vm.link: needs \"vm\": a VM's name or MAC (vm.list shows them)"};
        const json* up = find(request, "up");
        if (up == nullptr) return refusal{"vm.link: needs \"up\": true or false"};
        if (!up->is_boolean()) return refusal{fmt::format("\"up\" must be true or false, not {}", describe(*up))};
        std::string why;
        if (const auto ec = target.set_link(*vm, up->get<bool>(), why)) return refusal{target_message(fmt::format("VM {}", quote_cut(*vm)), ec, why)};
        response["vm"] = *vm;
        response["link"] = up->get<bool>() ? "up" : "down";
        return std::nullopt;
    }
    return refusal{fmt::format("unknown command {} (forward.list, forward.add, forward.remove, vm.list, vm.link)", quote_cut(command, 32))};
}

inline std::string write(const json& response) {
    return response.dump(-1, ' ', false, json::error_handler_t::replace);
}

inline std::string error_response(const json& id, std::string_view message) {
    json response = json::object();
    response["id"] = id;
    response["ok"] = false;
    response["error"] = std::string{message};
    return write(response);
}

/// nlohmann's parse error without its "[json.exception.parse_error.101] " prefix.
inline std::string_view parse_message(std::string_view what) noexcept {
    if (!what.empty() && what.front() == '[') {
        if (const auto end = what.find("] "); end != std::string_view::npos) return what.substr(end + 2);
    }
    return what;
}

} // namespace control_detail

/// One request line in (without its newline), one response line out (without one): see the top of
/// this file. Never throws; whatever `line` holds, the answer is a JSON object with "id" and "ok".
inline std::string handle_request(std::string_view line, control_target& target) noexcept {
    using control_detail::json;
    try {
        if (control_detail::nesting_depth(line) > max_nesting) {
            return control_detail::error_response(nullptr, fmt::format("the request nests deeper than {} levels", max_nesting));
        }
        // nlohmann's reader takes a NUL byte for the end of input; JSON text never holds one.
        if (line.find('\0') != std::string_view::npos) {
            return control_detail::error_response(nullptr, "the request is not JSON: it holds a NUL byte");
        }
        json request;
        try {
            request = json::parse(line);
        } catch (const json::parse_error& e) {
            return control_detail::error_response(nullptr, fmt::format("the request is not JSON: {}", control_detail::parse_message(e.what())));
        }
        if (!request.is_object()) {
            return control_detail::error_response(
                nullptr, fmt::format("a request is a JSON object ({{\"id\": ..., \"command\": ...}}), not {}", control_detail::describe(request)));
        }
        json id = nullptr;
        if (const auto it = request.find("id"); it != request.end()) id = *it;
        try {
            json response = json::object();
            response["id"] = id;
            response["ok"] = true;
            if (auto refused = control_detail::dispatch(request, target, response)) {
                return control_detail::error_response(id, refused->message);
            }
            return control_detail::write(response);
        } catch (const std::exception& e) {
            return control_detail::error_response(id, fmt::format("internal error: {}", e.what()));
        }
    } catch (const std::exception& e) {
        try {
            return control_detail::error_response(nullptr, fmt::format("internal error: {}", e.what()));
        } catch (...) {
        }
    } catch (...) {
    }
    try {
        return R"({"id":null,"ok":false,"error":"internal error"})";
    } catch (...) {
        return {};
    }
}

} // namespace ankanetd
