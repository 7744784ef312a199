// `ankanetd ctl`: the control socket's client (control_server.hpp, control_protocol.hpp).
//
//   ankanetd ctl PATH [--json] list                     the port forwards
//   ankanetd ctl PATH [--json] vms                      the VMs
//   ankanetd ctl PATH [--json] leases                   the DHCP leases (VMs gone included)
//   ankanetd ctl PATH [--json] forward add SPEC         e.g. tcp:127.0.0.1:8080:80@vm1
//   ankanetd ctl PATH [--json] forward remove ID|SPEC
//   ankanetd ctl PATH [--json] link VM up|down          VM: a name or a MAC
//
// It connects, sends one request, waits for the one response (5 seconds at most for all of it)
// and prints it as an aligned table or a line, or with --json the response line as it came.
// Exit status: 0 answered ok; 1 refused by the daemon, or no answer (one line on stderr says
// why); 2 a usage error. Everything the daemon sends — VM names, DHCP host names a guest chose,
// error messages — is printed through ankanet::printable(), so no response can write control
// characters or escape sequences to the operator's terminal (--json prints JSON, whose strings
// escape control characters).
#pragma once

#include "control_protocol.hpp"

#include <ankanet/printable.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ankanetd {

inline constexpr std::string_view ctl_usage_text =
    "usage: ankanetd ctl PATH [--json] list\n"
    "       ankanetd ctl PATH [--json] vms\n"
    "       ankanetd ctl PATH [--json] leases\n"
    "       ankanetd ctl PATH [--json] forward add [tcp:|udp:][HOSTADDR:]HOSTPORT[-END]:GUESTPORT[-END][@VM]\n"
    "       ankanetd ctl PATH [--json] forward remove ID|SPEC\n"
    "       ankanetd ctl PATH [--json] link VM up|down\n";

namespace ctl_detail {

using json = nlohmann::ordered_json;

/// The response line to `request` from the server at `path`, or nullopt and `why`.
inline std::optional<std::string> exchange(const std::string& path, const std::string& request, std::chrono::milliseconds timeout,
                                           std::string& why) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    const auto fail = [&](std::string_view what, int error) -> std::optional<std::string> {
        why = fmt::format("{}: {}: {}", path, what, std::strerror(error));
        return std::nullopt;
    };
    ::sockaddr_un address{};
    if (path.empty() || path.size() >= sizeof(address.sun_path) || path.find('\0') != std::string::npos) {
        why = fmt::format("{}: not a socket path (1 to {} bytes)", path, sizeof(address.sun_path) - 1);
        return std::nullopt;
    }
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.data(), path.size());

    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return fail("socket", errno);
    struct closer {
        int fd;
        ~closer() { ::close(fd); }
    } close_at_end{fd};

    // Waits until `fd` is ready for `events`; false (and `why`) at the deadline or on an error.
    const auto wait = [&](short events, std::string_view what) {
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                why = fmt::format("{}: no answer within {} ms ({})", path, timeout.count(), what);
                return false;
            }
            ::pollfd p{fd, events, 0};
            const int n = ::poll(&p, 1, static_cast<int>(left.count()));
            if (n > 0) return true;
            if (n < 0 && errno != EINTR) {
                why = fmt::format("{}: poll: {}", path, std::strerror(errno));
                return false;
            }
        }
    };

    if (::connect(fd, reinterpret_cast<const ::sockaddr*>(&address), sizeof(address)) != 0) {
        // A unix socket whose backlog is full answers EAGAIN: wait for room, then try again.
        if (errno != EAGAIN && errno != EINPROGRESS) return fail("connect", errno);
        for (;;) {
            if (!wait(POLLOUT, "connecting")) return std::nullopt;
            if (::connect(fd, reinterpret_cast<const ::sockaddr*>(&address), sizeof(address)) == 0 || errno == EISCONN) break;
            if (errno != EAGAIN && errno != EINPROGRESS && errno != EALREADY) return fail("connect", errno);
        }
    }

    const std::string line = request + '\n';
    for (std::size_t sent = 0; sent < line.size();) {
        const auto n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
        if (n >= 0) {
            sent += static_cast<std::size_t>(n);
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN) return fail("send", errno);
        if (!wait(POLLOUT, "sending")) return std::nullopt;
    }

    constexpr std::size_t max_response = 64 * 1024 * 1024;
    std::string response;
    char chunk[16 * 1024];
    for (;;) {
        const auto n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n > 0) {
            response.append(chunk, static_cast<std::size_t>(n));
            if (const auto newline = response.find('\n'); newline != std::string::npos) {
                response.resize(newline);
                return response;
            }
            if (response.size() > max_response) {
                why = fmt::format("{}: the answer is longer than {} bytes", path, max_response);
                return std::nullopt;
            }
            continue;
        }
        if (n == 0) {
            why = fmt::format("{}: the server closed the connection without an answer", path);
            return std::nullopt;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN) return fail("recv", errno);
        if (!wait(POLLIN, "waiting for the answer")) return std::nullopt;
    }
}

/// `value` as a printable cell: strings escaped, numbers as they are, null and absent as "-".
inline std::string cell(const json& object, std::string_view key) {
    if (!object.is_object()) return "-";
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return "-";
    if (it->is_string()) {
        const auto& text = it->get_ref<const std::string&>();
        return text.empty() ? std::string{"-"} : ankanet::to_string(ankanet::printable(text, 128));
    }
    if (it->is_structured()) return "?";
    return it->dump();
}

/// Unix seconds as UTC "2026-12-07 01:46:28Z".
inline std::string utc_time(const json& value) {
    if (!value.is_number_integer()) return value.is_null() ? "-" : "?";
    const auto seconds = value.get<std::int64_t>();
    if (seconds < 0 || seconds > 253402300799) return value.dump(); // past year 9999
    const auto t = static_cast<std::time_t>(seconds);
    std::tm tm{};
    if (::gmtime_r(&t, &tm) == nullptr) return value.dump();
    char text[32];
    if (std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%SZ", &tm) == 0) return value.dump();
    return text;
}

/// Rows as columns aligned by their widths (cells are printable ASCII), two spaces apart; the
/// columns whose index is in `right` are right-aligned.
inline std::string table(const std::vector<std::vector<std::string>>& rows, std::initializer_list<std::size_t> right = {}) {
    std::vector<std::size_t> widths;
    for (const auto& row : rows) {
        if (widths.size() < row.size()) widths.resize(row.size(), 0);
        for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
    }
    std::string out;
    for (const auto& row : rows) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); ++i) {
            if (i > 0) line += "  ";
            const bool align_right = std::find(right.begin(), right.end(), i) != right.end();
            const std::size_t pad = widths[i] - row[i].size();
            if (align_right) line.append(pad, ' ');
            line += row[i];
            if (!align_right && i + 1 < row.size()) line.append(pad, ' ');
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        out += line;
        out += '\n';
    }
    return out;
}

inline std::string forwards_table(const json& list) {
    std::vector<std::vector<std::string>> rows{{"ID", "PROTO", "HOST", "GUEST", "VM", "CONNS"}};
    if (list.is_array()) {
        for (const auto& f : list) {
            const auto host_port = cell(f, "host_port");
            const auto host_end = cell(f, "host_port_end");
            const auto guest_port = cell(f, "guest_port");
            const auto guest_end = cell(f, "guest_port_end");
            rows.push_back({cell(f, "id"), cell(f, "protocol"),
                            fmt::format("{}:{}{}", cell(f, "host_address"), host_port, host_end != host_port && host_end != "-" ? "-" + host_end : ""),
                            fmt::format("{}{}", guest_port, guest_end != guest_port && guest_end != "-" ? "-" + guest_end : ""),
                            cell(f, "vm") == "-" ? std::string{"(the only VM)"} : cell(f, "vm"), cell(f, "connections")});
        }
    }
    return table(rows, {0, 5});
}

inline std::string vms_table(const json& list) {
    std::vector<std::vector<std::string>> rows{
        {"NAME", "BACKEND", "MAC", "IP", "HOSTNAME", "LEASE-EXPIRES", "LINK", "IN", "OUT", "DROPPED"}};
    if (list.is_array()) {
        for (const auto& vm : list) {
            const json counters = vm.is_object() && vm.contains("counters") ? vm["counters"] : json::object();
            rows.push_back({cell(vm, "name"), cell(vm, "backend"), cell(vm, "mac"), cell(vm, "ip"), cell(vm, "hostname"),
                            utc_time(vm.is_object() && vm.contains("lease_expires") ? vm["lease_expires"] : json(nullptr)),
                            cell(vm, "link"), cell(counters, "frames_in"), cell(counters, "frames_out"), cell(counters, "dropped")});
        }
    }
    return table(rows, {7, 8, 9});
}

inline std::string leases_table(const json& list) {
    std::vector<std::vector<std::string>> rows{{"IP", "MAC", "HOSTNAME", "EXPIRES", "VM"}};
    if (list.is_array()) {
        for (const auto& lease : list) {
            rows.push_back({cell(lease, "ip"), cell(lease, "mac"), cell(lease, "hostname"),
                            utc_time(lease.is_object() && lease.contains("expires") ? lease["expires"] : json(nullptr)),
                            cell(lease, "vm")});
        }
    }
    return table(rows, {});
}

/// A command line's request, or a usage error's message.
struct parsed_command {
    std::string path;
    bool raw_json = false;
    json request;
    std::string usage_error; ///< non-empty: what is wrong
    bool help = false;
};

inline parsed_command parse(std::span<const std::string_view> args) {
    parsed_command out;
    std::vector<std::string_view> words;
    for (const auto a : args) {
        if (a == "--json") out.raw_json = true;
        else if (a == "-h" || a == "--help") out.help = true;
        else if (a.size() > 1 && a.front() == '-' && words.size() < 2) {
            out.usage_error = fmt::format("unknown option '{}'", ankanet::printable(a, 64));
            return out;
        } else words.push_back(a);
    }
    if (out.help) return out;
    if (words.empty()) {
        out.usage_error = "name the control socket's PATH and a command";
        return out;
    }
    out.path = std::string{words[0]};
    const std::span<const std::string_view> cmd{words.data() + 1, words.size() - 1};
    const auto wrong = [&](std::string message) {
        out.usage_error = std::move(message);
        return out;
    };
    out.request = json::object();
    out.request["id"] = 1;
    if (cmd.empty()) return wrong("no command (list, vms, leases, forward add|remove, link)");
    if (cmd[0] == "list" || (cmd[0] == "forward" && cmd.size() == 2 && cmd[1] == "list")) {
        if (cmd.size() != (cmd[0] == "list" ? 1u : 2u)) return wrong("'list' takes nothing more");
        out.request["command"] = "forward.list";
        return out;
    }
    if (cmd[0] == "leases") {
        if (cmd.size() != 1) return wrong("'leases' takes nothing more");
        out.request["command"] = "lease.list";
        return out;
    }
    if (cmd[0] == "vms") {
        if (cmd.size() != 1) return wrong("'vms' takes nothing more");
        out.request["command"] = "vm.list";
        return out;
    }
    if (cmd[0] == "forward") {
        if (cmd.size() != 3 || (cmd[1] != "add" && cmd[1] != "remove")) {
            return wrong("expected 'forward add SPEC' or 'forward remove ID|SPEC'");
        }
        const std::string spec{cmd[2]};
        if (cmd[1] == "add") {
            out.request["command"] = "forward.add";
            out.request["forward"] = spec;
            return out;
        }
        out.request["command"] = "forward.remove";
        const bool digits = !spec.empty() && spec.size() <= 10 && std::all_of(spec.begin(), spec.end(), [](char c) { return c >= '0' && c <= '9'; });
        if (digits && std::stoull(spec) <= 0xffffffffULL) out.request["forward_id"] = std::stoull(spec);
        else out.request["forward"] = spec;
        return out;
    }
    if (cmd[0] == "link") {
        if (cmd.size() != 3 || (cmd[2] != "up" && cmd[2] != "down")) return wrong("expected 'link VM up' or 'link VM down'");
        out.request["command"] = "vm.link";
        out.request["vm"] = std::string{cmd[1]};
        out.request["up"] = cmd[2] == "up";
        return out;
    }
    return wrong(fmt::format("unknown command '{}' (list, vms, leases, forward add|remove, link)", ankanet::printable(cmd[0], 64)));
}

} // namespace ctl_detail

/// Runs `ankanetd ctl`: `args` are the words after "ctl" (PATH first). Prints to `out` and,
/// errors, one line to `err`. Returns the exit status (0, 1, or 2 for usage errors).
inline int run_ctl(std::span<const std::string_view> args, std::FILE* out = stdout, std::FILE* err = stderr,
                   std::chrono::milliseconds timeout = std::chrono::seconds{5}) {
    using ctl_detail::json;
    try {
        auto invocation = ctl_detail::parse(args);
        if (invocation.help) {
            fmt::print(out, "{}", ctl_usage_text);
            return 0;
        }
        if (!invocation.usage_error.empty()) {
            fmt::print(err, "ankanetd ctl: {}; see ankanetd ctl --help\n", invocation.usage_error);
            return 2;
        }
        std::string why;
        const auto line = ctl_detail::exchange(invocation.path, invocation.request.dump(-1, ' ', false, json::error_handler_t::replace),
                                               timeout, why);
        if (!line) {
            fmt::print(err, "ankanetd ctl: {}\n", ankanet::printable(why, 1024));
            return 1;
        }
        const json response = json::parse(*line, nullptr, false);
        if (response.is_discarded() || !response.is_object() || !response.contains("ok") || !response["ok"].is_boolean()) {
            fmt::print(err, "ankanetd ctl: {}: not an answer: {}\n", ankanet::printable(invocation.path, 256), ankanet::printable(*line, 256));
            return 1;
        }
        if (invocation.raw_json) fmt::print(out, "{}\n", *line);
        if (!response["ok"].get<bool>()) {
            const auto message = response.contains("error") && response["error"].is_string()
                                     ? response["error"].get<std::string>()
                                     : std::string{"refused, with no reason given"};
            fmt::print(err, "ankanetd ctl: {}\n", ankanet::printable(message, 1024));
            return 1;
        }
        if (invocation.raw_json) return 0;
        const auto& name = invocation.request["command"].get_ref<const std::string&>();
        if (name == "forward.list") {
            fmt::print(out, "{}", ctl_detail::forwards_table(response.contains("forwards") ? response["forwards"] : json::array()));
        } else if (name == "vm.list") {
            fmt::print(out, "{}", ctl_detail::vms_table(response.contains("vms") ? response["vms"] : json::array()));
        } else if (name == "lease.list") {
            fmt::print(out, "{}", ctl_detail::leases_table(response.contains("leases") ? response["leases"] : json::array()));
        } else if (name == "forward.add") {
            const json f = response.contains("forward") ? response["forward"] : json::object();
            fmt::print(out, "added forward {}: {}\n", ctl_detail::cell(f, "id"), ctl_detail::cell(f, "text"));
        } else if (name == "forward.remove") {
            fmt::print(out, "removed forward {}\n", ctl_detail::cell(response, "forward_id"));
        } else {
            fmt::print(out, "{}: link {}\n", ctl_detail::cell(response, "vm"), ctl_detail::cell(response, "link"));
        }
        return 0;
    } catch (const std::exception& e) {
        fmt::print(err, "ankanetd ctl: {}\n", ankanet::printable(e.what(), 256));
        return 1;
    }
}

} // namespace ankanetd
