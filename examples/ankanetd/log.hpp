// ankanetd's log: the network's observer, writing one line to stderr per event, and the summary
// line printed at exit. Formatting only; the events come from the library (ankanet/network.hpp and
// its services).
//
// Text a guest chose — a DHCP host name (option 12), a DECLINE's message (56), anything read from
// a frame — goes into a line only through ankanet::printable(), which writes every byte that is not
// printable ASCII (and the backslash) as \xNN and cuts long text: a guest cannot end a line, forge
// the next one or send escape sequences to the operator's terminal. Port names are the operator's
// (or the embedding program's) and are escaped too, as is a refusal's reason, which quotes them:
// one line per event, always. MACs, addresses and numbers are formatted types and need nothing.
//
// Each line has a level (error, warning, info, debug: -q writes warnings and errors only, -v adds
// debug) and begins with a UTC timestamp and the level — or, when stderr is the journal (systemd's
// $JOURNAL_STREAM names it), with the "<N>" priority prefix of sd-daemon(3) instead, since the
// journal keeps its own time and turns the prefix into the entry's priority.
#pragma once

#include <ankanet/bridge/address_guard.hpp>
#include <ankanet/dhcp/server.hpp>
#include <ankanet/gateway/arp_guard.hpp>
#include <ankanet/gateway/responder.hpp>
#include <ankanet/nat/egress.hpp>
#include <ankanet/dns/gateway_dns.hpp>
#include <ankanet/forward/service.hpp>
#include <ankanet/nat/icmp.hpp>
#include <ankanet/nat/tcp.hpp>
#include <ankanet/nat/translation.hpp>
#include <ankanet/nat/udp.hpp>
#include <ankanet/dhcp/service.hpp>
#include <ankanet/network.hpp>
#include <ankanet/printable.hpp>

#include <fmt/format.h>

#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <iterator>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace ankanetd {

using ankanet::printable;

/// How much a line matters: the syslog priorities that sd-daemon(3)'s "<N>" prefixes carry.
enum class log_level : int { error = 3, warning = 4, info = 6, debug = 7 };

/// How lines are written; main() sets it once, before the first line.
struct log_settings {
    log_level threshold = log_level::info; ///< lines above it (less important) are not written: -q warning, -v debug
    bool journal = false;                  ///< stderr is the journal: "<N>" prefixes, no timestamps (journald keeps its own)
};

inline log_settings& log_config() {
    static log_settings settings;
    return settings;
}

/// True when `fd` is the stream systemd connected to the journal: $JOURNAL_STREAM ("DEV:INODE",
/// systemd.exec(5)) names the device and inode of that stream, so a stderr redirected elsewhere by
/// the unit's child (or by a shell under it) is not mistaken for it.
inline bool is_journal_stream(const char* journal_stream, int fd) {
    if (journal_stream == nullptr) return false;
    unsigned long long dev = 0, inode = 0;
    char tail = 0;
    if (std::sscanf(journal_stream, "%llu:%llu%c", &dev, &inode, &tail) != 2) return false;
    struct stat st{};
    if (::fstat(fd, &st) != 0) return false;
    return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == inode;
}

/// A level as written in a line: one word, padded so the messages line up.
inline std::string_view level_name(log_level level) {
    switch (level) {
    case log_level::error: return "error";
    case log_level::warning: return "warn ";
    case log_level::info: return "info ";
    case log_level::debug: return "debug";
    }
    return "?    ";
}

/// What comes before "ankanetd: ": "<N>" for the journal, else a UTC timestamp to the millisecond
/// (RFC 3339) and the level.
inline std::string log_prefix(log_level level, bool journal, std::chrono::system_clock::time_point now) {
    if (journal) return fmt::format("<{}>", static_cast<int>(level));
    const auto since_epoch = now.time_since_epoch();
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
    const std::time_t t = seconds.count();
    std::tm utc{};
    ::gmtime_r(&t, &utc);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {} ", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                       utc.tm_hour, utc.tm_min, utc.tm_sec, millis, level_name(level));
}

/// A signal's name ("SIGTERM"), for the log; a number it does not know as "signal N".
inline std::string signal_name(int signal) {
    switch (signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGQUIT: return "SIGQUIT";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    case SIGPIPE: return "SIGPIPE";
    case SIGKILL: return "SIGKILL";
    }
    return fmt::format("signal {}", signal);
}

/// One log line's message part, "ankanetd: " and the message, ending in '\n'. Guest text reaches
/// the message through printable(); as a second fence, a control character that reached it anyway
/// (C0 or DEL) is written as \xNN, so whatever an argument holds, a line stays one line.
template <class... Args>
std::string log_line(fmt::format_string<Args...> format, Args&&... args) {
    const auto message = fmt::format(format, std::forward<Args>(args)...);
    std::string line = "ankanetd: ";
    line.reserve(line.size() + message.size() + 1);
    for (const char c : message) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f) {
            fmt::format_to(std::back_inserter(line), "\\x{:02x}", byte);
        } else {
            line.push_back(c);
        }
    }
    line.push_back('\n');
    return line;
}

/// Writes one line to stderr at `level` (see log_line() and log_prefix()), with one write; nothing
/// when the level is above the threshold.
template <class... Args>
void log_at(log_level level, fmt::format_string<Args...> format, Args&&... args) {
    const auto& config = log_config();
    if (static_cast<int>(level) > static_cast<int>(config.threshold)) return;
    const auto line = log_prefix(level, config.journal, std::chrono::system_clock::now()) +
                      log_line(format, std::forward<Args>(args)...);
    std::fwrite(line.data(), 1, line.size(), stderr);
}

/// An event or a step of the daemon's life.
template <class... Args>
void log(fmt::format_string<Args...> format, Args&&... args) {
    log_at(log_level::info, format, std::forward<Args>(args)...);
}
/// What the daemon could not do: it stops, or a VM or a request is refused.
template <class... Args>
void log_error(fmt::format_string<Args...> format, Args&&... args) {
    log_at(log_level::error, format, std::forward<Args>(args)...);
}
/// What a guest or the host did wrong, and the daemon dropped or refused.
template <class... Args>
void log_warning(fmt::format_string<Args...> format, Args&&... args) {
    log_at(log_level::warning, format, std::forward<Args>(args)...);
}
/// Detail shown with -v only.
template <class... Args>
void log_debug(fmt::format_string<Args...> format, Args&&... args) {
    log_at(log_level::debug, format, std::forward<Args>(args)...);
}

/// The network's observer: every event the daemon reports, as it reports it.
struct log_observer {
    void on(const ankanet::port_attached_event& e) {
        log("attached {} (mtu {}, mac {})", printable(e.port), e.mtu,
            e.mac ? fmt::format("{}", *e.mac) : "from first frame");
    }
    void on(const ankanet::port_added_event&) {} // logged once its backend is attached
    void on(const ankanet::port_mac_learned_event& e) {
        log("{}: registered MAC {} from its first frame", printable(e.port), e.mac);
    }
    void on(const ankanet::port_refused_event& e) { log_warning("{}: refused: {}", printable(e.port), printable(e.reason, 1024)); }
    void on(const ankanet::link_changed_event& e) { log("{}: link {}", printable(e.port), e.up ? "up" : "down"); }
    void on(const ankanet::uplink_attached_event& e) {
        log("{}: attached (mtu {}, mac {})", printable(e.name), e.mtu, e.mac ? fmt::format("{}", *e.mac) : "none");
    }
    void on(const ankanet::uplink_detached_event& e) {
        const bool stopping = e.reason == std::errc::operation_canceled;
        log("{}: closed ({}): rx {} frames, tx {} frames, {} dropped{}", printable(e.name), e.reason.message(),
            e.counters.rx_frames, e.counters.tx_frames, e.counters.tx_dropped,
            stopping ? "" : "; the VMs are cut off from the LAN");
    }
    void on(const ankanet::bridge::address_claim_refused_event& e) {
        log_warning("{}: claimed {}, which the LAN's DHCP server gave to {}; dropped{}", printable(e.port), e.address, e.holder,
            e.arp ? " (ARP)" : " (IPv4 source)");
    }
    void on(const ankanet::mac_collision_event& e) {
        log("{}: MAC {} is in use on the LAN; drawing another", printable(e.port), e.mac);
    }
    void on(const ankanet::port_detached_event& e) {
        const auto s = e.backend.value_or(ankanet::backend::counters{});
        log("detached {} ({}): rx {} frames, tx {} frames, dropped rx {} runt {} oversize, tx {} dropped", printable(e.port),
            e.reason ? e.reason.message() : std::string{"removed"}, s.rx_frames, s.tx_frames, s.rx_runt, s.rx_oversize,
            s.tx_dropped);
        if (e.switch_counters.dropped_spoofed > 0) {
            log_warning("{}: {} frames with another VM's source MAC were dropped", printable(e.port), e.switch_counters.dropped_spoofed);
        }
    }
    void on(const ankanet::dhcp::lease_event& e) {
        // The host name is the guest's option 12, and a DECLINE's reason its option 56.
        log_at(e.kind == ankanet::dhcp::lease_event_kind::offered ? log_level::debug : log_level::info,
               "DHCP {} {} {} {}{}{}", event_name(e.kind), e.address, event_preposition(e.kind), e.mac,
            e.hostname.empty() ? "" : fmt::format(" ({})", printable(e.hostname)),
            e.reason.empty() ? "" : fmt::format(": {}", printable(e.reason)));
    }
    void on(const ankanet::dhcp::refusal_event& e) {
        // Rate-limited by the service: at most one line per VM and kind per report interval.
        log_warning("{}: {} ({} so far, from {})", printable(e.port), ankanet::dhcp::to_string(e.kind), e.count, e.mac);
    }
    void on(const ankanet::dhcp::store_failure_event& e) {
        // Rate-limited by the service: at most one line per report interval.
        log_error("lease file not written ({}): acknowledgements dropped until it is ({} so far; clients retry)",
            e.error.message(), e.replies_dropped);
    }
    void on(const ankanet::gateway::arp_conflict_event& e) {
        const auto& c = e.conflict;
        log_warning("{}: {} claims {}, which {} {}; ARP dropped", printable(e.port), c.claimant, c.address,
            c.gateway ? "is the gateway's own, at" : c.leased ? "is leased to" : "is in use by", c.holder);
    }
    void on(const ankanet::gateway::arp_limit_event& e) {
        // Rate-limited by the guard: at most one line per VM per report interval.
        log_warning("{}: {} reached its limit of {} addresses claimed by ARP; further claims dropped ({} so far)",
            printable(e.port), e.mac, e.limit, e.dropped);
    }
    void on(const ankanet::gateway::static_address_event& e) {
        log("{}: {} uses {} without a lease; kept out of the DHCP pool while in use", printable(e.port), e.mac, e.address);
    }

    void on(const ankanet::forward::forward_refused_event& e) {
        log_warning("forward {}: refused {}:{}: {}{}", printable(e.forward), e.client, e.client_port, e.reason,
            e.suppressed != 0 ? fmt::format(" ({} more since the last report)", e.suppressed) : std::string{});
    }
    void on(const ankanet::nat::flow_refused_event& e) {
        log_warning("{}: {} flow to {}:{} refused: {}{}", printable(e.port), protocol_name(e.protocol), e.destination,
            e.destination_port, printable(e.reason, 256),
            e.suppressed > 0 ? fmt::format(" ({} more refusals not logged)", e.suppressed) : std::string{});
    }

    static std::string_view protocol_name(std::uint8_t protocol) {
        switch (protocol) {
        case ankanet::nat::ip_protocol::tcp: return "TCP";
        case ankanet::nat::ip_protocol::udp: return "UDP";
        case ankanet::nat::ip_protocol::icmp: return "ICMP";
        }
        return "IP";
    }

    static std::string_view event_name(ankanet::dhcp::lease_event_kind kind) {
        using k = ankanet::dhcp::lease_event_kind;
        switch (kind) {
        case k::offered: return "offered";
        case k::acknowledged: return "leased";
        case k::nacked: return "refused";
        case k::declined: return "declined";
        case k::released: return "released";
        case k::informed: return "informed";
        }
        return "event";
    }
    static std::string_view event_preposition(ankanet::dhcp::lease_event_kind kind) {
        using k = ankanet::dhcp::lease_event_kind;
        return kind == k::offered || kind == k::acknowledged || kind == k::nacked ? "to" : "by";
    }
};

/// The daemon's network policies: the library's defaults, logging every event.
struct traits : ankanet::default_network_traits {
    using observer_type = log_observer;
};

/// One line of counters for the log at exit, from whichever services the network has.
template <class Network>
std::string summary(const Network& net) {
    const auto& n = net.stats();
    std::string line = fmt::format("{} frames in, {} to the gateway, offloads {} in whole {} cut in software",
                                   n.frames_in, n.frames_to_gateway, n.offload_whole, n.offload_segmented);
    if constexpr (Network::template has_service<ankanet::gateway::responder>) {
        const auto& r = net.template service<ankanet::gateway::responder>().stats();
        line += fmt::format(" ({} ARP replies, {} echo replies)", r.arp_replies, r.echo_replies);
    }
    if constexpr (Network::template has_service<ankanet::dhcp::service>) {
        const auto& dhcp = net.template service<ankanet::dhcp::service>();
        const auto& d = dhcp.stats();
        line += fmt::format(", DHCP {} offers {} acks {} naks", d.offers, d.acks, d.naks);
        if (const auto lost = dhcp.held_dropped_full() + dhcp.held_dropped_unwritten(); lost > 0) {
            line += fmt::format(" ({} acks dropped waiting for the lease file)", lost);
        }
    }
    std::uint64_t conflicts = 0;
    if constexpr (Network::template has_service<ankanet::gateway::arp_guard>) {
        conflicts = net.template service<ankanet::gateway::arp_guard>().stats().conflicts_dropped;
    }
    line += fmt::format(", {} ARP conflicts, {} unplugged", conflicts, n.dropped_unplugged);
    const auto nat = [&]<class Egress>(std::type_identity<Egress>) {
        if constexpr (Network::template has_service<ankanet::nat::udp_translator<Egress>>) {
            const auto& u = net.template service<ankanet::nat::udp_translator<Egress>>().stats();
            line += fmt::format(", UDP {} flows {} out {} in {} blocked ({} sendmmsg / {} recvmmsg batches, {} from spoofed "
                                "senders)",
                                u.flows_opened, u.guest_datagrams, u.host_datagrams,
                                u.refused_egress + u.refused_limit + u.refused_socket, u.batches_sent, u.batches_received,
                                u.dropped_spoofed);
        }
        if constexpr (Network::template has_service<ankanet::nat::icmp_translator<Egress>>) {
            const auto& i = net.template service<ankanet::nat::icmp_translator<Egress>>().stats();
            line += fmt::format(", ping {} out {} in {} blocked", i.requests, i.replies,
                                i.refused_egress + i.refused_limit + i.refused_socket);
        }
    };
    if constexpr (Network::template has_service<ankanet::dns::gateway_dns>) {
        const auto d = net.template service<ankanet::dns::gateway_dns>().stats();
        line += fmt::format(", DNS {} queries {} local {} relayed {} servfail", d.queries, d.answered_locally, d.forwarded, d.servfail);
    }
    const auto tcp = [&]<class Egress>(std::type_identity<Egress>) {
        if constexpr (Network::template has_service<ankanet::nat::tcp_translator<Egress>>) {
            const auto t = net.template service<ankanet::nat::tcp_translator<Egress>>().stats();
            line += fmt::format(", TCP {} flows {} blocked ({} SYNs held over the half-open limit, {} from spoofed senders, "
                                "{} short sends, {} dup ACKs, {} segments parked beyond a hole, {} not parked over a "
                                "VM's budget, {} retransmits, {} super-frames to guests)",
                                t.engine.syn_accepted,
                                t.engine.refused_egress + t.engine.refused_vm_limit + t.engine.refused_table_full +
                                    t.engine.refused_open,
                                t.engine.dropped_half_open, t.foreign_sources, t.engine.short_sends, t.engine.dup_acks_sent,
                                t.engine.segments_parked, t.engine.park_refused_vm + t.engine.park_refused_pool,
                                t.engine.retransmits + t.engine.fast_retransmits, t.engine.super_frames_to_guest);
        }
    };
    tcp(std::type_identity<ankanet::nat::runtime_egress>{});
    tcp(std::type_identity<ankanet::nat::egress_host_only>{});
    nat(std::type_identity<ankanet::nat::runtime_egress>{});
    nat(std::type_identity<ankanet::nat::egress_host_only>{});
    if constexpr (Network::template has_service<ankanet::forward::service>) {
        const auto& f = net.template service<ankanet::forward::service>().stats();
        if (f.accepted + f.datagrams > 0) {
            line += fmt::format(", forwards {} connections {} datagrams {} carried {} refused", f.accepted, f.datagrams, f.carried,
                                f.refused_no_vm + f.refused_no_address + f.refused_translator + f.refused_queue_full +
                                    f.refused_rule_gone + f.refused_socket);
        }
    }
    if (n.uplink_frames_in + n.uplink_frames_out > 0) {
        line += fmt::format(", uplink {} in {} out ({} for no VM)", n.uplink_frames_in, n.uplink_frames_out, n.uplink_not_for_vm);
    }
    if constexpr (Network::template has_service<ankanet::bridge::address_guard>) {
        const auto& g = net.template service<ankanet::bridge::address_guard>().stats();
        line += fmt::format(", {} leases seen, {} claims on another VM's address dropped", g.bindings_learned,
                            g.arp_refused + g.ip_refused);
    }
    if (n.dropped_link_down > 0) line += fmt::format(", {} dropped with the link down", n.dropped_link_down);
    return line;
}

} // namespace ankanetd
