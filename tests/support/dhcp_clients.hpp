// Test support: the real DHCP clients (busybox udhcpc, ISC dhclient, dhcpcd) run inside a network
// namespace on one interface, each reporting what it got through a hook script we write.
//
// Theory of operation. Every client run gets a state directory (a private temp directory, removed
// afterwards, unless the caller passes one of its own to keep lease files across runs). In it we
// write a hook script for that client; the client runs it at every event, and the hook
//   1. configures the interface the way the distro script would (link up, address, default route)
//      for udhcpc and dhclient — dhcpcd configures the interface itself — and
//   2. records the event in normalised form as one file events/NNNNNN (written to a .tmp name, then
//      renamed, so a reader never sees half an event).
// The hooks never write /etc/resolv.conf or anything else outside the state directory and the
// namespace: we never use the distro scripts (`ip netns exec` bind-mounts /etc/netns/NAME over /etc
// only if that exists, so a distro script would write the host's resolv.conf).
//
// Command lines that work (STATE = the state directory, IF = the interface, run as
// `ip netns exec NS sh -c '...'`; LIMIT = the time limit in seconds):
//   udhcpc, one-shot:  udhcpc -f -n -q -i IF -s STATE/hook -p STATE/udhcpc.pid -t LIMIT -T 1 [-x hostname:H]
//   udhcpc, daemon:    udhcpc -f    -i IF -s STATE/hook -p STATE/udhcpc.pid -t 5 -T 1 -A 1 [-x hostname:H]
//     (-T 1 -t N: a DISCOVER a second, N of them; udhcpc's own lease timers are untouched.)
//   dhclient, one-shot: dhclient -1 -4 -v -cf STATE/dhclient.conf -sf STATE/hook -lf STATE/dhclient.leases
//                       -pf STATE/dhclient.pid IF; then SIGKILL the pid in the pid file
//     (-1 tries once and exits 2 on failure, but on success it stays in the background as a
//     daemon; SIGKILL, not `dhclient -x`, leaves the interface configured. dhclient.conf sets
//     `initial-interval 1; backoff-cutoff 2; timeout LIMIT;` and `send host-name "H";`.)
//   dhclient, daemon:  dhclient -d -4 -v -cf ... -sf ... -lf ... -pf ... IF
//   dhcpcd, one-shot:  mount -n --bind STATE/dhcpcd-db /var/lib/dhcpcd && mount -n --bind STATE/dhcpcd-run /run &&
//                      dhcpcd -f /dev/null -c STATE/hook -4 -1 -B --noipv4ll -t LIMIT
//                             -o domain_name_servers -o domain_name [-h H] IF
//   dhcpcd, daemon:    the same without -1 and with -t 0
//     (both: --noarp added when options.arp_probe is false; the RFC 5227 probe takes ~5 s.)
//     (dhcpcd 9 has no option for its database and run directories, /var/lib/dhcpcd and
//     /run/dhcpcd, which two guests with the same interface name would share: `ip netns exec`
//     gives each command its own mount namespace (slave to the host's), so these bind mounts are
//     private to that one client and vanish with it. -f /dev/null skips the distro config, -c our
//     hook replaces the distro hooks (no resolv.conf). Privilege separation works as installed:
//     the dhcpcd user's chroot is /usr/lib/dhcpcd and the hook runs unchrooted as root.)
//
// `obtain_lease` is one-shot: get a lease and exit, interface left configured. `running_dhcp_client`
// keeps the client running (in the foreground of its own process group) until its destructor
// SIGTERMs, then SIGKILLs, the whole group; `events()` and `wait_for()` let a test watch renewals.
// No Catch2 here, like netns.hpp.
#pragma once

#include "netns.hpp"
#include "temp_dir.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace ankanet::test {

enum class dhcp_client_kind { udhcpc, dhclient, dhcpcd };

inline constexpr dhcp_client_kind all_dhcp_clients[] = {dhcp_client_kind::udhcpc, dhcp_client_kind::dhclient,
                                                        dhcp_client_kind::dhcpcd};

inline std::string_view name(dhcp_client_kind kind) {
    switch (kind) {
    case dhcp_client_kind::udhcpc: return "udhcpc";
    case dhcp_client_kind::dhclient: return "dhclient";
    case dhcp_client_kind::dhcpcd: return "dhcpcd";
    }
    return "?";
}

/// One event as the client itself reported it to its hook (its environment), normalised.
struct dhcp_lease_info {
    std::string event;              ///< lower case: "bound", "renew", "rebind", "reboot", "deconfig", "preinit", ...
    std::string address;            ///< e.g. "192.168.64.2"; empty for events without a lease
    int prefix_length = -1;         ///< from the subnet mask; -1 when the event has none
    std::string server_id, router;  ///< option 54, the first router of option 3
    std::vector<std::string> dns;   ///< option 6
    std::uint32_t lease_time = 0;   ///< option 51
    std::string domain_name;        ///< option 15 (may be empty)
    long pid = 0;                   ///< the client process that ran the hook
};

/// True for the events after which the client holds a lease it has configured.
inline bool is_lease_event(std::string_view event) {
    return event == "bound" || event == "renew" || event == "rebind" || event == "reboot";
}

/// How a client run is set up. `limit` bounds a one-shot run; a running client ignores it.
struct dhcp_client_options {
    std::chrono::seconds limit{20};
    std::string hostname;              ///< sent as option 12 when not empty ([A-Za-z0-9.-] only)
    std::filesystem::path state_dir;   ///< caller-owned and kept (lease files survive); empty: a private temp dir
    /// dhcpcd only: false adds --noarp, skipping its RFC 5227 probe of the offered address (about
    /// five seconds), for tests that are about something else.
    bool arp_probe = true;
};

struct dhcp_client_result {
    int status = -1;        ///< the client's exit status (124: our time limit stopped it)
    std::string output;     ///< what it wrote to stdout and stderr
    std::optional<dhcp_lease_info> lease;  ///< the last lease event its hook saw
    std::vector<dhcp_lease_info> events;   ///< every event its hook saw, in order
};

namespace detail {

/// The absolute path of `program`, searched in PATH and the sbin directories a test runner's PATH
/// may lack; empty when it is nowhere.
inline std::string find_program(std::string_view program) {
    std::string dirs;
    if (const char* path = std::getenv("PATH")) dirs = path;
    dirs += ":/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin";
    std::string_view rest = dirs;
    while (!rest.empty()) {
        const auto colon = rest.find(':');
        const auto dir = rest.substr(0, colon);
        rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
        if (dir.empty()) continue;
        auto candidate = std::string{dir} + "/" + std::string{program};
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return {};
}

/// How to start `kind`: "/usr/sbin/udhcpc", or "/usr/bin/busybox udhcpc" where only busybox is.
inline std::string client_program(dhcp_client_kind kind) {
    auto path = find_program(name(kind));
    if (path.empty() && kind == dhcp_client_kind::udhcpc) {
        const auto busybox = find_program("busybox");
        if (!busybox.empty() && run_command({busybox, "udhcpc", "--help"}, std::chrono::seconds{5}).output.find("udhcpc") !=
                                    std::string::npos) {
            path = busybox + " udhcpc";
        }
    }
    return path;
}

/// Text safe to put between single quotes in a shell script and on a command line.
inline bool is_plain(std::string_view text, std::string_view extra) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [extra](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               extra.find(c) != std::string_view::npos;
    });
}

/// Writes `text` to `path` through a close-on-exec descriptor: the other threads of a test start
/// clients too, and a child that inherited a descriptor open for writing on a hook script would
/// make executing that script fail with ETXTBSY.
inline void write_file(const std::filesystem::path& path, std::string_view text, std::filesystem::perms perms) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("cannot create " + path.string());
    std::size_t written = 0;
    while (written < text.size()) {
        const ::ssize_t n = ::write(fd, text.data() + written, text.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        written += static_cast<std::size_t>(n);
    }
    const bool closed = ::close(fd) == 0;
    if (written != text.size() || !closed) throw std::runtime_error("cannot write " + path.string());
    std::filesystem::permissions(path, perms);
}

/// The hook script for `kind`. Common part: `record` writes one normalised event file.
inline std::string hook_script(dhcp_client_kind kind, const std::filesystem::path& state) {
    std::string script =
        "#!/bin/sh\n"
        "# Written by ankanet tests/support/dhcp_clients.hpp for " + std::string{name(kind)} + ".\n"
        "# Records each event; configures the interface like the distro script would, but never\n"
        "# touches resolv.conf or anything else outside this directory and the namespace.\n"
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
        "events='" + (state / "events").string() + "'\n"
        "mkdir -p \"$events\"\n"
        "# record EVENT ADDRESS PREFIX NETMASK SERVER_ID ROUTERS DNS LEASE_TIME DOMAIN PID\n"
        "record() {\n"
        "    n=$(ls \"$events\" | grep -c -v '\\.tmp$')\n"
        "    f=\"$events/$(printf %06d \"$n\")\"\n"
        "    {\n"
        "        printf 'event=%s\\n' \"$(printf %s \"$1\" | tr '[:upper:]' '[:lower:]')\"\n"
        "        printf 'address=%s\\nprefix=%s\\nnetmask=%s\\nserver_id=%s\\n' \"$2\" \"$3\" \"$4\" \"$5\"\n"
        "        printf 'router=%s\\ndns=%s\\nlease_time=%s\\ndomain_name=%s\\npid=%s\\n' \"${6%% *}\" \"$7\" \"$8\" \"$9\" \"${10}\"\n"
        "    } > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"\n"
        "}\n"
        "# set_address IP PREFIX ROUTER: make IP/PREFIX the interface's only IPv4 address, route via ROUTER.\n"
        "set_address() {\n"
        "    if ! ip -4 -o addr show dev \"$interface\" | grep -q \" inet $1/$2 \"; then\n"
        "        ip -4 addr flush dev \"$interface\"\n"
        "        ip addr add \"$1/$2\" broadcast + dev \"$interface\" || return 1\n"
        "    fi\n"
        "    if [ -n \"$3\" ]; then ip route replace default via \"$3\" dev \"$interface\"; fi\n"
        "    return 0\n"
        "}\n"
        "prefix_of() {\n"
        "    p=0\n"
        "    for o in $(echo \"$1\" | tr . ' '); do\n"
        "        case $o in 255) p=$((p+8));; 254) p=$((p+7));; 252) p=$((p+6));; 248) p=$((p+5));;\n"
        "            240) p=$((p+4));; 224) p=$((p+3));; 192) p=$((p+2));; 128) p=$((p+1));; esac\n"
        "    done\n"
        "    echo $p\n"
        "}\n";
    switch (kind) {
    case dhcp_client_kind::udhcpc:
        // udhcpc: the event is $1; ip, mask (prefix length), subnet (netmask), serverid, router,
        // dns, lease, domain. The script configures the interface.
        script +=
            "status=0\n"
            "case \"$1\" in\n"
            "    deconfig) ip link set dev \"$interface\" up; ip -4 addr flush dev \"$interface\" ;;\n"
            "    bound|renew) [ -n \"$mask\" ] || mask=$(prefix_of \"$subnet\")\n"
            "                 set_address \"$ip\" \"$mask\" \"${router%% *}\" || status=1 ;;\n"
            "esac\n"
            "record \"$1\" \"$ip\" \"$mask\" \"$subnet\" \"$serverid\" \"$router\" \"$dns\" \"$lease\" \"$domain\" \"$PPID\"\n"
            "exit $status\n";
        break;
    case dhcp_client_kind::dhclient:
        // dhclient: $reason; new_* variables. A TIMEOUT offers a recorded lease for the script to
        // test (the distro script pings the router): refuse it, a test wants a server's answer.
        script +=
            "status=0\n"
            "prefix=\n"
            "[ -n \"$new_subnet_mask\" ] && prefix=$(prefix_of \"$new_subnet_mask\")\n"
            "case \"$reason\" in\n"
            "    PREINIT) ip link set dev \"$interface\" up ;;\n"
            "    BOUND|RENEW|REBIND|REBOOT) set_address \"$new_ip_address\" \"$prefix\" \"${new_routers%% *}\" || status=1 ;;\n"
            "    EXPIRE|FAIL|RELEASE|STOP) ip -4 addr flush dev \"$interface\" ;;\n"
            "    TIMEOUT) status=1 ;;\n"
            "esac\n"
            "record \"$reason\" \"$new_ip_address\" \"$prefix\" \"$new_subnet_mask\" \"$new_dhcp_server_identifier\" "
            "\"$new_routers\" \"$new_domain_name_servers\" \"$new_dhcp_lease_time\" \"$new_domain_name\" \"$pid\"\n"
            "exit $status\n";
        break;
    case dhcp_client_kind::dhcpcd:
        // dhcpcd configures the interface itself and runs the script only to tell.
        script +=
            "record \"$reason\" \"$new_ip_address\" \"$new_subnet_cidr\" \"$new_subnet_mask\" \"$new_dhcp_server_identifier\" "
            "\"$new_routers\" \"$new_domain_name_servers\" \"$new_dhcp_lease_time\" \"$new_domain_name\" \"$pid\"\n"
            "exit 0\n";
        break;
    }
    return script;
}

/// 255.255.255.0 -> 24; -1 when `mask` is not a contiguous netmask.
inline int prefix_from_netmask(std::string_view mask) {
    std::uint32_t bits = 0;
    int octets = 0;
    for (;;) {
        const auto dot = mask.find('.');
        const auto part = mask.substr(0, dot);
        if (part.empty() || part.size() > 3 || part.find_first_not_of("0123456789") != std::string_view::npos) return -1;
        const int value = std::stoi(std::string{part});
        if (value > 255 || ++octets > 4) return -1;
        bits = (bits << 8) | static_cast<std::uint32_t>(value);
        if (dot == std::string_view::npos) break;
        mask.remove_prefix(dot + 1);
    }
    if (octets != 4) return -1;
    int prefix = 0;
    while (prefix < 32 && (bits & (0x80000000u >> prefix)) != 0) ++prefix;
    return (prefix < 32 && (bits << prefix) != 0) ? -1 : prefix;
}

inline dhcp_lease_info parse_event(const std::string& text) {
    dhcp_lease_info info;
    std::string netmask, prefix;
    std::istringstream lines{text};
    std::string line;
    while (std::getline(lines, line)) {
        const auto eq = line.find('=');
        if (eq == std::string::npos) continue;
        const auto key = line.substr(0, eq);
        auto value = line.substr(eq + 1);
        if (key == "event") info.event = value;
        else if (key == "address") info.address = value;
        else if (key == "prefix") prefix = value;
        else if (key == "netmask") netmask = value;
        else if (key == "server_id") info.server_id = value;
        else if (key == "router") info.router = value;
        else if (key == "domain_name") info.domain_name = value;
        else if (key == "dns") {
            std::istringstream words{value};
            for (std::string word; words >> word;) info.dns.push_back(word);
        } else if (key == "lease_time" && !value.empty() && value.find_first_not_of("0123456789") == std::string::npos &&
                   value.size() <= 10) {
            info.lease_time = static_cast<std::uint32_t>(std::stoull(value));
        } else if (key == "pid" && !value.empty() && value.find_first_not_of("0123456789") == std::string::npos &&
                   value.size() <= 9) {
            info.pid = std::stol(value);
        }
    }
    if (!prefix.empty() && prefix.size() <= 2 && prefix.find_first_not_of("0123456789") == std::string::npos) {
        info.prefix_length = std::stoi(prefix);
    } else if (!netmask.empty()) {
        info.prefix_length = prefix_from_netmask(netmask);
    }
    return info;
}

/// Every event recorded in `state`/events so far, in order.
inline std::vector<dhcp_lease_info> read_events(const std::filesystem::path& state) {
    std::vector<std::filesystem::path> files;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator{state / "events", error}) {
        const auto file = entry.path().filename().string();
        if (file.find_first_not_of("0123456789") == std::string::npos) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    std::vector<dhcp_lease_info> events;
    for (const auto& file : files) events.push_back(parse_event(read_text(file)));
    return events;
}

/// Prepares `state` for one run of `kind` (hook, config, directories; the previous run's events
/// removed, lease files kept) and returns the shell command that runs the client.
inline std::string prepare_run(dhcp_client_kind kind, const std::filesystem::path& state, const std::string& ifname,
                               const dhcp_client_options& options, bool one_shot) {
    if (!is_plain(ifname, "._-") || ifname.size() > 15) throw std::invalid_argument("bad interface name: " + ifname);
    if (!options.hostname.empty() && !is_plain(options.hostname, ".-")) {
        throw std::invalid_argument("hostname must be [A-Za-z0-9.-]: " + options.hostname);
    }
    const auto dir = state.string();
    if (!is_plain(dir, "/._-+")) throw std::invalid_argument("state directory path must be plain: " + dir);
    if (kind == dhcp_client_kind::dhcpcd && (dir == "/run" || dir.starts_with("/run/"))) {
        // dhcpcd's run directory is bound over /run, which would hide the state directory.
        throw std::invalid_argument("dhcpcd's state directory must not be under /run: " + dir);
    }
    const auto program = client_program(kind);
    if (program.empty()) throw std::runtime_error(std::string{name(kind)} + " is not installed");

    std::error_code ignored;
    std::filesystem::remove_all(state / "events", ignored);
    std::filesystem::create_directories(state / "events");
    const auto hook = state / "hook";
    write_file(hook, hook_script(kind, state), std::filesystem::perms::owner_all);
    const auto limit = std::to_string(std::max<long long>(1, options.limit.count()));

    switch (kind) {
    case dhcp_client_kind::udhcpc: {
        std::string command = "exec " + program + " -f -i " + ifname + " -s " + hook.string() + " -p " + dir + "/udhcpc.pid -T 1";
        command += one_shot ? " -n -q -t " + limit : " -t 5 -A 1";
        if (!options.hostname.empty()) command += " -x hostname:" + options.hostname;
        return command;
    }
    case dhcp_client_kind::dhclient: {
        std::string conf = "# ankanet test client configuration\ninitial-interval 1;\nbackoff-cutoff 2;\n";
        if (one_shot) conf += "timeout " + limit + ";\n";
        if (!options.hostname.empty()) conf += "send host-name \"" + options.hostname + "\";\n";
        write_file(state / "dhclient.conf", conf, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
        const auto args = " -4 -v -cf " + dir + "/dhclient.conf -sf " + hook.string() + " -lf " + dir +
                          "/dhclient.leases -pf " + dir + "/dhclient.pid " + ifname;
        if (!one_shot) return "exec " + program + " -d" + args;
        // On success dhclient -1 stays behind as a daemon: stop it without touching the interface.
        std::filesystem::remove(state / "dhclient.pid", ignored);
        return program + " -1" + args + "; status=$?; pid=$(cat " + dir + "/dhclient.pid 2>/dev/null); " +
               "[ -n \"$pid\" ] && kill -KILL \"$pid\" 2>/dev/null; exit $status";
    }
    case dhcp_client_kind::dhcpcd: {
        std::filesystem::create_directories(state / "dhcpcd-db");
        std::filesystem::create_directories(state / "dhcpcd-run");
        std::string command = "mount -n --bind " + dir + "/dhcpcd-db /var/lib/dhcpcd && mount -n --bind " + dir +
                              "/dhcpcd-run /run && exec " + program + " -f /dev/null -c " + hook.string() +
                              " -4 -B --noipv4ll -o domain_name_servers -o domain_name";
        command += one_shot ? " -1 -t " + limit : " -t 0";
        if (!options.arp_probe) command += " --noarp";
        if (!options.hostname.empty()) command += " -h " + options.hostname;
        return command + " " + ifname;
    }
    }
    return {};
}

/// SIGKILLs `pid` if it still is a process named `comm` (a one-shot dhclient left behind).
inline void kill_if_named(long pid, std::string_view comm) {
    if (pid <= 1) return;
    auto actual = read_text("/proc/" + std::to_string(pid) + "/comm");
    while (!actual.empty() && actual.back() == '\n') actual.pop_back();
    if (actual == comm) ::kill(static_cast<::pid_t>(pid), SIGKILL);
}

} // namespace detail

/// The DHCP clients that are not installed, by name ("udhcpc, dhcpcd"), or empty.
inline std::string missing_dhcp_clients() {
    std::string missing;
    for (const auto kind : all_dhcp_clients) {
        if (detail::client_program(kind).empty()) missing += (missing.empty() ? "" : ", ") + std::string{name(kind)};
    }
    if (detail::find_program("mount").empty()) missing += (missing.empty() ? "" : ", ") + std::string{"mount (for dhcpcd)"};
    return missing;
}

/// Runs `kind` once on `ifname` inside `ns`: it gets a lease (configuring the interface) and exits.
inline dhcp_client_result obtain_lease(const scoped_netns& ns, const std::string& ifname, dhcp_client_kind kind,
                                       const dhcp_client_options& options) {
    std::optional<temp_dir> own;
    std::filesystem::path state = options.state_dir;
    if (state.empty()) state = own.emplace("ankanet-dhcp").path;
    std::filesystem::create_directories(state);

    const auto command = detail::prepare_run(kind, state, ifname, options, true);
    auto ran = run_in(ns, command, options.limit + std::chrono::seconds{5});
    dhcp_client_result result;
    result.status = ran.status;
    result.output = std::move(ran.output);
    result.events = detail::read_events(state);
    for (const auto& event : result.events) {
        if (is_lease_event(event.event) && !event.address.empty()) result.lease = event;
    }
    if (kind == dhcp_client_kind::dhclient) {
        // The command killed the daemon dhclient became; make sure, should it have been slow to
        // write its pid file.
        for (const auto& event : result.events) detail::kill_if_named(event.pid, "dhclient");
    }
    return result;
}

inline dhcp_client_result obtain_lease(const scoped_netns& ns, const std::string& ifname, dhcp_client_kind kind,
                                       std::chrono::seconds limit = std::chrono::seconds{20},
                                       const std::string& hostname = {}) {
    dhcp_client_options options;
    options.limit = limit;
    options.hostname = hostname;
    return obtain_lease(ns, ifname, kind, options);
}

/// A client running as a daemon (in the foreground of its own process group) inside `ns`, until
/// the destructor ends its whole process group.
class running_dhcp_client {
public:
    running_dhcp_client(const scoped_netns& ns, const std::string& ifname, dhcp_client_kind kind,
                        const dhcp_client_options& options = {})
        : kind_(kind) {
        state_ = options.state_dir;
        if (state_.empty()) state_ = own_.emplace("ankanet-dhcp").path;
        std::filesystem::create_directories(state_);
        const auto command = detail::prepare_run(kind, state_, ifname, options, false);
        log_ = state_ / (std::string{name(kind)} + ".log");

        std::vector<std::string> args{"ip", "netns", "exec", ns.name(), "sh", "-c", command};
        std::vector<char*> argv;
        for (auto& arg : args) argv.push_back(arg.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
        posix_spawnattr_t attributes;
        posix_spawnattr_init(&attributes);
        // Its own process group, so the destructor can end the client and everything it forked.
        posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
        posix_spawnattr_setpgroup(&attributes, 0);
        const int rc = posix_spawnp(&pid_, "ip", &actions, &attributes, argv.data(), environ);
        posix_spawnattr_destroy(&attributes);
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0) {
            pid_ = -1;
            throw std::runtime_error("cannot start " + std::string{name(kind)});
        }
    }
    running_dhcp_client(const running_dhcp_client&) = delete;
    running_dhcp_client& operator=(const running_dhcp_client&) = delete;
    ~running_dhcp_client() { stop(); }

    dhcp_client_kind kind() const noexcept { return kind_; }
    const std::filesystem::path& state_dir() const noexcept { return state_; }

    /// Every event the hook recorded so far, in order.
    std::vector<dhcp_lease_info> events() const { return detail::read_events(state_); }

    /// Waits (bounded) for the first event named `event` at index `from` or later in events().
    std::optional<dhcp_lease_info> wait_for(std::string_view event, std::chrono::seconds limit, std::size_t from = 0) const {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            const auto seen = events();
            for (std::size_t i = from; i < seen.size(); ++i) {
                if (seen[i].event == event) return seen[i];
            }
            if (std::chrono::steady_clock::now() >= deadline || !running()) return std::nullopt;
            std::this_thread::sleep_for(std::chrono::milliseconds{100});
        }
    }

    /// Waits (bounded) for the first lease event ("bound", "reboot", ...) at index `from` or later.
    std::optional<dhcp_lease_info> wait_for_lease(std::chrono::seconds limit, std::size_t from = 0) const {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            const auto seen = events();
            for (std::size_t i = from; i < seen.size(); ++i) {
                if (is_lease_event(seen[i].event) && !seen[i].address.empty()) return seen[i];
            }
            if (std::chrono::steady_clock::now() >= deadline || !running()) return std::nullopt;
            std::this_thread::sleep_for(std::chrono::milliseconds{100});
        }
    }

    /// True while the client process has not exited.
    bool running() const {
        if (pid_ <= 0) return false;
        int status = 0;
        const auto waited = ::waitpid(pid_, &status, WNOHANG);
        if (waited == pid_) {
            pid_ = -1;
            exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            return false;
        }
        return true;
    }

    /// The client's exit status once it has exited (128 + N when killed by signal N).
    std::optional<int> exit_status() const {
        (void)running();
        return exit_status_;
    }

    /// What the client wrote to stdout and stderr so far.
    std::string log() const { return read_text(log_); }

    /// Ends the client's process group: SIGTERM, then SIGKILL if it has not exited within `grace`.
    void stop(std::chrono::seconds grace = std::chrono::seconds{3}) {
        if (pid_ <= 0) return;
        const ::pid_t group = pid_;
        ::kill(-group, SIGTERM);
        const auto deadline = std::chrono::steady_clock::now() + grace;
        while (running() && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds{20});
        }
        ::kill(-group, SIGKILL);  // also whatever the client forked into its group
        if (pid_ > 0) {
            int status = 0;
            while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
            }
            exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            pid_ = -1;
        }
    }

private:
    dhcp_client_kind kind_;
    std::optional<temp_dir> own_;
    std::filesystem::path state_;
    std::filesystem::path log_;
    mutable ::pid_t pid_ = -1;
    mutable std::optional<int> exit_status_;
};

} // namespace ankanet::test
