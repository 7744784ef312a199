/// @file
/// ankanet::dns::forwarder — the gateway's DNS service: guests ask gateway:53 over UDP, the
/// gateway answers its own names and relays everything else to the host's resolvers.
///
/// Theory of operation.
///  * A gateway service (network.hpp) that inspects every frame a VM sends: IPv4/UDP to the
///    gateway's MAC and address, port 53, is taken (inspection::taken) before the switch. Its IPv4
///    length and UDP length and checksum are checked; a datagram that does not hold together, or a
///    fragment, is dropped and counted.
///  * Local names first: the query goes to the shared local_zone (VM host names and `host.<domain>`,
///    A and PTR). A local answer is sent at once (ctx.answer), from gateway:53 to the asker.
///  * Everything else is relayed raw: the guest's bytes go to the upstream resolver as they came,
///    only the 16-bit ID replaced by one query_table draws (so guests sharing our socket cannot
///    receive, or forge, each other's answers). The upstream's reply is matched by ID, server and
///    question, given the guest's ID back, and sent to that guest alone — its records, flags and
///    RCODE untouched (an NXDOMAIN stays NXDOMAIN, with its SOA; AAAA, TXT, DNSSEC records pass).
///    A reply too long for the guest's MTU is cut to its header and question with TC set, and the
///    guest retries over TCP (tcp_listener.hpp); the forwarder never fragments. Every reply goes to
///    the port the query came from, at its MAC, whatever source address the query claimed: a guest
///    cannot aim answers at another VM.
///  * Why held replies. Upstream replies arrive on an Asio handler, outside the network's input():
///    they are queued here and the network is woken (bind_wakeup); it then calls release_held(),
///    which sends them through its reply queue. Without a bound wakeup (a program driving the pure
///    core itself) they wait for the next flush().
///  * Tries. A query waits `try_timeout` (2 s) for a reply, then goes, with a fresh upstream ID, to
///    the next upstream in the list; after `tries` tries (each upstream once, at least min_tries,
///    at most max_tries) the guest gets SERVFAIL: same ID, its question echoed, RCODE 2, RA; with
///    an OPT record if it sent one. Never NXDOMAIN: a silent upstream says nothing about the name.
///    No upstream at all (an empty resolv.conf) is SERVFAIL at once.
///  * Upstreams: the configured list, else the host's resolv.conf, re-read when it changes
///    (upstream.hpp). Replies are accepted only from the address and port the query went to. One
///    unconnected host socket per address family (bound to an ephemeral port), opened on first use.
///  * VM names: the forwarder observes the network's events (basic_network calls observe_event):
///    a DHCP ACK that carries a valid host name names the leased address; a RELEASE or DECLINE, or
///    a VM moving to another address, removes it. Leases that simply expire send no event, so
///    names learned from leases are checked against the network's lease authority (at most once a
///    second, while queries come) and those whose lease is gone are removed.
///  * Bounded. query_table limits queries in flight (capacity, and per VM, so a guest flooding
///    queries is refused — counted, no reply — while others are served); the raw copies kept for
///    retries are fixed slots of max_query_len bytes allocated at construction; held replies are
///    at most max_held. A query longer than max_query_len is answered SERVFAIL.
///  * Threads. Asio handlers run on the executor given to the constructor; the data path runs on
///    the network's thread. One mutex guards the forwarder's state, so the two may differ; the
///    usual setup is one io_context thread for both. The state lives in a shared block that
///    outstanding handlers keep alive, so the service may be moved into the network.
///
/// Limits: IPv4 guests only; no DNS cache (the host's resolver caches); an upstream's SERVFAIL or
/// REFUSED is relayed as it is, not retried elsewhere; per-VM limits key on the port's index, so
/// port indices must stay below table.max_vms (4096 by default); a single socket per family
/// means the source port does not vary per query (the ID is the only entropy an off-path spoofer
/// faces — 16 bits; loopback upstreams are not reachable off-path at all); EDNS Client Subnet and
/// DNS cookies pass untouched.
#pragma once

#include <ankanet/clock.hpp>
#include <ankanet/config.hpp>
#include <ankanet/detail/siphash.hpp>
#include <ankanet/dhcp/server.hpp>
#include <ankanet/dns/local_zone.hpp>
#include <ankanet/dns/query_table.hpp>
#include <ankanet/dns/upstream.hpp>
#include <ankanet/inspection.hpp>
#include <ankanet/nat/translation.hpp>
#include <ankanet/port_handle.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/dns.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/udp.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace ankanet::dns {

// --- the zone the UDP forwarder and the TCP listener share ---------------------------------------

/// A local_zone behind a mutex, kept current from DHCP lease events; shared by the forwarder and
/// the TCP listener (both answer from it).
class shared_zone {
public:
    /// Shares `zone` between the forwarder and whoever names guests.
    explicit shared_zone(local_zone zone) : zone_(std::move(zone)) {}

    /// local_zone::answer under the lock.
    zone_answer answer(wire::const_bytes query, wire::mutable_bytes reply) {
        const std::lock_guard lock{mutex_};
        return zone_.answer(query, reply);
    }

    /// A lease changed: an ACK with a valid host name names its address (the VM's older address,
    /// if it moved, loses its name); an ACK with none or an invalid one, a RELEASE or a DECLINE
    /// removes the name that lease gave.
    void lease_changed(const dhcp::lease_event& e) {
        const std::lock_guard lock{mutex_};
        using kind = dhcp::lease_event_kind;
        if (e.kind == kind::acknowledged) {
            forget_if([&](const leased_name& n) { return n.mac == e.mac && n.address != e.address; });
            if (e.hostname.empty() || !local_zone::valid_label(e.hostname)) {
                forget_if([&](const leased_name& n) { return n.address == e.address; });
                return;
            }
            const name_status status = zone_.set_name(e.address, e.hostname);
            if (status == name_status::added || status == name_status::renamed || status == name_status::unchanged) {
                auto it = std::find_if(leased_.begin(), leased_.end(), [&](const leased_name& n) { return n.address == e.address; });
                if (it == leased_.end()) leased_.push_back({e.address, e.mac});
                else it->mac = e.mac;
            }
        } else if (e.kind == kind::released || e.kind == kind::declined) {
            forget_if([&](const leased_name& n) { return n.address == e.address && n.mac == e.mac; });
        }
    }

    /// Removes names learned from leases that `lease_holder(address)` (→ optional<mac_address>)
    /// says are no longer held by the MAC that got them. Returns how many.
    template <class LeaseHolder>
    std::size_t expire_names(LeaseHolder&& lease_holder) {
        const std::lock_guard lock{mutex_};
        return forget_if([&](const leased_name& n) {
            const std::optional<wire::mac_address> holder = lease_holder(n.address);
            return !holder || *holder != n.mac;
        });
    }

    /// Names a static guest (kept until remove_address; never expired by leases).
    name_status set_name(wire::ipv4_address address, std::string_view hostname) {
        const std::lock_guard lock{mutex_};
        return zone_.set_name(address, hostname);
    }
    /// Forgets the names of `address`; whether it had any.
    bool remove_address(wire::ipv4_address address) {
        const std::lock_guard lock{mutex_};
        std::erase_if(leased_, [&](const leased_name& n) { return n.address == address; });
        return zone_.remove_address(address);
    }
    /// Whether some names came from leases (so expire_names has work).
    bool has_leased_names() const {
        const std::lock_guard lock{mutex_};
        return !leased_.empty();
    }
    /// Calls `f(const local_zone&)` under the lock (counters, lookups).
    template <class F>
    auto inspect(F&& f) const {
        const std::lock_guard lock{mutex_};
        return f(zone_);
    }

private:
    struct leased_name {
        wire::ipv4_address address;
        wire::mac_address mac;
    };
    template <class Pred>
    std::size_t forget_if(Pred pred) {
        std::size_t count = 0;
        for (std::size_t i = 0; i < leased_.size();) {
            if (pred(leased_[i])) {
                zone_.remove_address(leased_[i].address);
                leased_[i] = leased_.back();
                leased_.pop_back();
                ++count;
            } else {
                ++i;
            }
        }
        return count;
    }

    mutable std::mutex mutex_;
    local_zone zone_;
    std::vector<leased_name> leased_;
};

// --- configuration and counters ----------------------------------------------------------------

/// How a forwarder is set up.
struct forwarder_config {
    wire::ipv4_address gateway{192, 168, 64, 1};   ///< the address guests ask (the network's gateway)
    wire::mac_address gateway_mac = default_gateway_mac; ///< gateway MAC
    std::size_t mtu = 1500;                       ///< the largest IPv4 datagram sent to a guest
    upstream_config upstreams;                    ///< configured servers, else resolv.conf
    std::chrono::milliseconds try_timeout{2000};  ///< per try, before the next upstream
    std::size_t min_tries = 2;                    ///< tries per query: each upstream once, at least this
    std::size_t max_tries = 4;                    ///< and at most this
    std::size_t max_query_len = 1232;             ///< longer guest queries get SERVFAIL
    std::size_t max_held = 1024;                  ///< upstream replies waiting for release_held

    /// Capacity, per-VM limit, VM ids (port indices must be below max_vms) and the ID key; a key
    /// of zero is drawn from std::random_device.
    query_table_config table{1024, 4096, 64, {}};
    local_zone_config zone;                       ///< its gateway is set to `gateway`
};

/// What a forwarder has done.
struct forwarder_counters {
    std::uint64_t queries = 0;            ///< UDP datagrams to gateway:53 taken
    std::uint64_t dropped_malformed = 0;  ///< bad IPv4/UDP length or checksum, fragments
    std::uint64_t dropped_unreadable = 0; ///< not a DNS query (the zone said drop)
    std::uint64_t answered_locally = 0;   ///< answered from the local zone
    std::uint64_t forwarded = 0;          ///< relayed upstream (first try)
    std::uint64_t retries = 0;            ///< relayed again, to the next upstream, after a timeout
    std::uint64_t duplicates = 0;         ///< a guest's repeat of a query in flight (not relayed again)
    std::uint64_t refused_vm_limit = 0;   ///< the VM had per_vm_limit queries in flight: dropped
    std::uint64_t refused_full = 0;       ///< the table was full (or no ID was free): dropped
    std::uint64_t replies = 0;            ///< upstream replies relayed to a guest
    std::uint64_t replies_truncated = 0;  ///< of those, cut to TC for the MTU
    std::uint64_t replies_unmatched = 0;  ///< upstream datagrams matching no query (late, stray, spoofed, other question)
    std::uint64_t servfail = 0;           ///< SERVFAIL sent (tries exhausted, no upstream, too long)
    std::uint64_t no_upstream = 0;        ///< of those, because no upstream was known
    std::uint64_t too_long = 0;           ///< of those, because the query was longer than max_query_len
    std::uint64_t send_errors = 0;        ///< a host socket refused a send (the try times out)
    std::uint64_t held_dropped = 0;       ///< replies dropped: max_held were waiting
    std::uint64_t names_expired = 0;      ///< VM names removed because their lease was gone
};

namespace detail {

/// Writes a UDP datagram from gateway:53 to a guest into `frame`; its length, or 0 if it does not fit.
inline std::size_t write_dns_frame(wire::mutable_bytes frame, wire::mac_address gateway_mac, wire::mac_address vm_mac,
                                   wire::ipv4_address gateway, wire::ipv4_address guest, std::uint16_t guest_port,
                                   wire::const_bytes payload) noexcept {
    constexpr std::size_t udp_at = nat::guest_headers_len;
    const std::size_t total = nat::write_guest_headers(frame, gateway_mac, vm_mac, gateway, guest,
                                                       wire::udp::protocol_number, wire::udp::header_len + payload.size());
    if (total == 0) return 0;
    std::memcpy(frame.data() + udp_at + wire::udp::header_len, payload.data(), payload.size());
    const wire::udp::repr udp{default_dns_port, guest_port, payload.size()};
    if (udp.emit(frame.subspan(udp_at), gateway, guest)) return 0;
    return total;
}

/// SERVFAIL for a query: its ID, flags (RD, CD, opcode) and question, RA; OPT if it had one.
inline std::size_t write_servfail(wire::mutable_bytes out, std::uint16_t id, std::uint16_t flags,
                                  const wire::dns::question& question, std::optional<std::uint16_t> guest_edns) noexcept {
    auto r = wire::dns::repr::make_response(id, flags, question, wire::dns::rcode::servfail);
    if (guest_edns) r.edns = wire::dns::edns{};
    if (r.emit(out)) return 0;
    return r.buffer_len();
}

/// A random SipHash key for a query_table.
inline ankanet::detail::siphash_key random_key() {
    std::random_device device;
    const auto word = [&] { return (std::uint64_t{device()} << 32) | device(); };
    return {word(), word()};
}

} // namespace detail

// --- the forwarder ------------------------------------------------------------------------------

/// The DNS forwarder service; see the theory of operation.
///
/// In a network's Services it comes after the ARP guard and the DHCP service and before the NAT
/// translators, which would otherwise take gateway:53 datagrams as traffic for the host's loopback.
/// The caller provides the executor (that of the io_context running the network's backends), the
/// upstreams (or leaves them to resolv.conf) and the network's gateway address, MAC and MTU;
/// VM names then follow the DHCP service's leases by themselves (observe_event). Static guests can
/// be named through zone()->set_name().
/// @par Example
/// @code
/// ankanet::dns::forwarder_config dns;
/// dns.upstreams.servers = {*ankanet::dns::parse_upstream("127.0.0.53")};
/// ankanet::dns::forwarder forwarder{io.get_executor(), dns};
/// ankanet::dns::tcp_listener tcp{io.get_executor(), forwarder.zone(), dns.upstreams};
/// network net{config, arp_guard, dhcp_service, std::move(forwarder), /* then the NAT */};
/// @endcode
class forwarder {
public:
    /// A forwarder whose host sockets and timer run on `executor`. Fails (throws, like the zone's
    /// make) only when `config.zone` is not a valid zone.
    forwarder(boost::asio::any_io_executor executor, forwarder_config config)
        : core_(std::make_shared<core>(std::move(executor), std::move(config))) {}

    /// Move-constructs (memberwise).
    forwarder(forwarder&&) noexcept = default;
    /// Move assignment.
    forwarder& operator=(forwarder&& other) noexcept {
        if (this != &other) {
            shutdown();
            core_ = std::move(other.core_);
        }
        return *this;
    }
    forwarder(const forwarder&) = delete;
    forwarder& operator=(const forwarder&) = delete;
    ~forwarder() { shutdown(); }

    /// Every frame a VM sends: a UDP datagram to gateway:53 is taken (answered, relayed, or
    /// counted and dropped); everything else passes.
    template <class Context>
    inspection inspect(const wire::parsed_frame& frame, Context& ctx) {
        if (!frame.is_ipv4() || frame.protocol != wire::udp::protocol_number) return inspection::pass;
        core& c = *core_;
        if (frame.destination != c.config.gateway_mac || frame.ip_destination != c.config.gateway) return inspection::pass;
        if (frame.is_fragment()) {
            // A fragmented query is not reassembled. Only the first fragment names the port; the
            // later ones carry none, and are left to whoever counts fragments (the NAT).
            if (frame.has_ports && frame.destination_port == default_dns_port) return count_malformed();
            return inspection::pass;
        }
        if (!frame.has_ports || frame.destination_port != default_dns_port) return inspection::pass;
        // Another source MAC than the port's is the switch's to drop and count.
        if (frame.source != ctx.port_mac() || !ctx.port()) return inspection::pass;
        return c.query(frame, ctx);
    }

    /// Hands upstream replies and SERVFAILs that arrived since to `ctx`, at most `room`.
    template <class Context>
    std::size_t release_held(Context& ctx, std::size_t room) {
        const std::lock_guard lock{core_->mutex};
        std::size_t sent = 0;
        auto& held = core_->held;
        while (!held.empty() && sent < room) {
            ctx.send_to(held.front().port, wire::const_bytes{held.front().frame}); // dropped if the VM has gone
            core_->spare.push_back(std::move(held.front().frame));
            held.pop_front();
            ++sent;
        }
        return sent;
    }

    /// `wake` (callable from any thread) asks the network to call release_held.
    void bind_wakeup(std::function<void()> wake) {
        const std::lock_guard lock{core_->mutex};
        core_->wake = std::move(wake);
    }

    /// The network is stopping: the host sockets and the timer close, so the io_context runs out
    /// of work. Queries after it are not relayed (they time out in the guest).
    void stop() { shutdown(); }

    /// The network's events: DHCP lease changes keep the VM names current.
    void observe_event(const dhcp::lease_event& e) { core_->zone->lease_changed(e); }

    /// A VM's port is gone: its queries in flight are forgotten (their replies would go nowhere).
    void port_removed(wire::mac_address mac) { core_->port_removed(mac); }

    /// Replies waiting for release_held.
    std::size_t held_replies() const {
        const std::lock_guard lock{core_->mutex};
        return core_->held.size();
    }
    /// Queries in flight upstream.
    std::size_t in_flight() const {
        const std::lock_guard lock{core_->mutex};
        return core_->table.size();
    }
    /// What it counted so far.
    forwarder_counters stats() const {
        const std::lock_guard lock{core_->mutex};
        return core_->stats;
    }
    /// The table stats.
    query_table_counters table_stats() const {
        const std::lock_guard lock{core_->mutex};
        return core_->table.counters();
    }
    /// The local zone, shared with a tcp_listener and with whoever names static guests.
    const std::shared_ptr<shared_zone>& zone() const noexcept { return core_->zone; }
    /// The configuration it was made with.
    const forwarder_config& config() const noexcept { return core_->config; }

private:
    using udp = boost::asio::ip::udp;
    using clock = std::chrono::steady_clock;
    static constexpr std::uint32_t none = std::numeric_limits<std::uint32_t>::max();

    inspection count_malformed() {
        const std::lock_guard lock{core_->mutex};
        ++core_->stats.dropped_malformed;
        return inspection::drop;
    }

    void shutdown() {
        if (core_) core_->shutdown();
    }

    /// A relayed query's copy, kept for the next try.
    struct pending {
        bool used = false;
        port_handle port;
        wire::mac_address mac;
        std::uint16_t upstream_id = 0;
        std::size_t attempt = 0;
        std::size_t length = 0;
    };
    struct held_frame {
        port_handle port;
        std::vector<std::byte> frame;
    };
    struct server {
        upstream up;
        udp::endpoint endpoint;
        std::uint16_t id = 0;
    };

    struct core : std::enable_shared_from_this<core> {
        core(boost::asio::any_io_executor executor, forwarder_config c)
            : config(std::move(c)),
              zone(std::make_shared<shared_zone>(make_zone(config))),
              upstreams(config.upstreams),
              table(table_config(config)),
              v4(executor),
              v6(executor),
              timer(executor),
              pending_of_id(65536, none),
              slots(table.capacity()),
              raw(table.capacity() * config.max_query_len),
              out_frame(nat::guest_headers_len + wire::udp::header_len + 65535),
              rx_v4(65535),
              rx_v6(65535) {
            free_slots.reserve(slots.size());
            for (std::size_t i = slots.size(); i-- > 0;) free_slots.push_back(static_cast<std::uint32_t>(i));
        }

        static local_zone make_zone(const forwarder_config& config) {
            local_zone_config z = config.zone;
            z.gateway = config.gateway;
            return local_zone::make(z).value();
        }
        static query_table_config table_config(const forwarder_config& config) {
            query_table_config t = config.table;
            if (t.key == ankanet::detail::siphash_key{}) t.key = detail::random_key();
            return t;
        }

        // --- the data path ---------------------------------------------------------------------

        template <class Context>
        inspection query(const wire::parsed_frame& frame, Context& ctx) {
            const wire::ipv4::packet<wire::const_bytes> ip{frame.ip};
            std::function<void()> wake_now;
            {
                const std::lock_guard lock{mutex};
                ++stats.queries;
                if (ip.check_len() || !ip.verify_checksum()) {
                    ++stats.dropped_malformed;
                    return inspection::drop;
                }
                const wire::const_bytes datagram = ip.payload();
                const auto header = wire::udp::repr::parse(datagram, frame.ip_source, frame.ip_destination);
                if (!header) {
                    ++stats.dropped_malformed;
                    return inspection::drop;
                }
                const wire::const_bytes message = datagram.subspan(wire::udp::header_len, header->payload_len);
                expire_names(ctx);

                const auto local = zone->answer(message, answer_buffer);
                if (local.disposition == zone_disposition::drop) {
                    ++stats.dropped_unreadable;
                } else if (local.disposition == zone_disposition::reply) {
                    ++stats.answered_locally;
                    answer(ctx, frame, wire::const_bytes{answer_buffer.data(), local.length});
                } else {
                    relay(frame, *ctx.port(), header->source_port, message, ctx);
                }
                if (!held.empty() && wake) wake_now = wake;
            }
            if (wake_now) wake_now();
            return inspection::taken;
        }

        template <class Context>
        void expire_names(Context& ctx) {
            const auto now = ctx.now().steady;
            if (names_checked && now - last_name_check < std::chrono::seconds{1}) return;
            names_checked = true;
            last_name_check = now;
            if (!zone->has_leased_names()) return;
            stats.names_expired += zone->expire_names([&](wire::ipv4_address a) { return ctx.lease_holder(a); });
        }

        template <class Context>
        void answer(Context& ctx, const wire::parsed_frame& frame, wire::const_bytes payload) {
            const std::size_t n = detail::write_dns_frame(frame_span(), config.gateway_mac, frame.source, config.gateway,
                                                          frame.ip_source, frame.source_port, payload);
            if (n != 0) ctx.answer(wire::const_bytes{frame_buffer_data(), n});
        }

        template <class Context>
        void relay(const wire::parsed_frame& frame, port_handle port, std::uint16_t source_port, wire::const_bytes message,
                   Context& ctx) {
            const auto parsed = wire::dns::message::parse(message); // the zone read it already: it parses
            const auto question_view = parsed ? parsed->first_question() : std::nullopt;
            if (!question_view) {
                ++stats.dropped_unreadable;
                return;
            }
            const auto header = parsed->header();
            query_request request;
            request.guest = guest_query_key{port.index(), frame.ip_source, source_port, header.id()};
            request.question = wire::dns::question::from(*question_view);
            request.query_flags = header.flags();
            if (const auto opt = parsed->opt(); opt && *opt) request.guest_edns = (*opt)->udp_payload_size();

            const auto servfail_now = [&](std::uint64_t& why) {
                ++why;
                ++stats.servfail;
                const std::size_t len = detail::write_servfail(answer_buffer, header.id(), header.flags(), request.question,
                                                               request.guest_edns);
                if (len != 0) answer(ctx, frame, wire::const_bytes{answer_buffer.data(), len});
            };
            const auto now = clock::now();
            refresh_servers(now);
            if (servers.empty()) return servfail_now(stats.no_upstream);
            if (message.size() > config.max_query_len) return servfail_now(stats.too_long);

            request.server = servers.front().id;
            request.deadline = now + config.try_timeout;
            const insert_result inserted = table.insert(request);
            switch (inserted.status) {
            case insert_status::inserted: break;
            case insert_status::duplicate: ++stats.duplicates; return;
            case insert_status::vm_limit: ++stats.refused_vm_limit; return;
            default: ++stats.refused_full; return;
            }
            const std::uint32_t s = free_slots.back();
            free_slots.pop_back();
            pending& p = slots[s];
            p = pending{true, port, frame.source, inserted.upstream_id, 0, message.size()};
            pending_of_id[inserted.upstream_id] = s;
            std::memcpy(raw_of(s).data(), message.data(), message.size());
            ++stats.forwarded;
            send(s, servers.front());
            arm_timer();
        }

        // --- the host side -----------------------------------------------------------------------

        std::span<std::byte> raw_of(std::uint32_t s) { return {raw.data() + s * config.max_query_len, config.max_query_len}; }
        wire::mutable_bytes frame_span() { return {out_frame.data(), out_frame.size()}; }
        const std::byte* frame_buffer_data() const { return out_frame.data(); }

        void refresh_servers(clock::time_point now) {
            const auto& list = upstreams.current(now);
            if (servers_built && upstreams.generation() == servers_generation) return;
            servers_built = true;
            servers_generation = upstreams.generation();
            servers.clear();
            // New ids, so a query in flight to a server that left the list matches no one now.
            for (const auto& up : list) servers.push_back(server{up, udp::endpoint{up.address, up.port}, next_server_id++});
        }

        udp::socket* socket_for(const udp::endpoint& to) {
            if (closed) return nullptr;
            udp::socket& socket = to.address().is_v4() ? v4 : v6;
            if (!socket.is_open()) {
                boost::system::error_code ec;
                socket.open(to.address().is_v4() ? udp::v4() : udp::v6(), ec);
                if (!ec) socket.bind(udp::endpoint{to.address().is_v4() ? udp::v4() : udp::v6(), 0}, ec);
                if (!ec) socket.non_blocking(true, ec);
                if (ec) {
                    socket.close(ec);
                    return nullptr;
                }
                receive(socket);
            }
            return &socket;
        }

        void send(std::uint32_t s, const server& to) {
            pending& p = slots[s];
            const auto bytes = raw_of(s).first(p.length);
            wire::store_be16(bytes, 0, p.upstream_id);
            udp::socket* socket = socket_for(to.endpoint);
            boost::system::error_code ec;
            if (socket != nullptr) socket->send_to(boost::asio::buffer(bytes.data(), bytes.size()), to.endpoint, 0, ec);
            if (socket == nullptr || ec) ++stats.send_errors; // the try times out, the next upstream is asked
        }

        // One receive per socket at a time, each into its own buffer (the reactor reads into it
        // before the handler takes the lock).
        void receive(udp::socket& socket) {
            const bool is_v4 = &socket == &v4;
            std::vector<std::byte>& rx = is_v4 ? rx_v4 : rx_v6;
            udp::endpoint& from = is_v4 ? rx_from_v4 : rx_from_v6;
            socket.async_receive_from(boost::asio::buffer(rx.data(), rx.size()), from,
                                      [self = this->shared_from_this(), &socket](boost::system::error_code ec, std::size_t n) {
                                          self->on_receive(socket, ec, n);
                                      });
        }

        void on_receive(udp::socket& socket, boost::system::error_code ec, std::size_t n) {
            const bool is_v4 = &socket == &v4;
            std::vector<std::byte>& rx = is_v4 ? rx_v4 : rx_v6;
            const udp::endpoint from = is_v4 ? rx_from_v4 : rx_from_v6;
            std::function<void()> wake_now;
            {
                const std::lock_guard lock{mutex};
                if (closed || ec == boost::asio::error::operation_aborted || !socket.is_open()) return;
                if (!ec) take_reply(from, wire::mutable_bytes{rx.data(), n});
                receive(socket);
                if (!held.empty() && wake) wake_now = wake;
            }
            if (wake_now) wake_now();
        }

        void take_reply(const udp::endpoint& from, wire::mutable_bytes reply) {
            const server* source = nullptr;
            for (const auto& s : servers) {
                if (s.endpoint == from) source = &s;
            }
            if (source == nullptr) {
                ++stats.replies_unmatched;
                return;
            }
            const reply_match match = table.take_reply(source->id, reply);
            if (match.status != reply_status::matched) {
                ++stats.replies_unmatched;
                return;
            }
            const std::uint16_t id = match.query.upstream_id;
            const std::uint32_t s = pending_of_id[id];
            pending_of_id[id] = none;
            if (s == none) return;
            const pending p = slots[s];
            release_slot(s);
            const auto& guest = match.query.request.guest;
            wire::store_be16(reply, 0, guest.guest_id);
            ++stats.replies;
            if (nat::guest_headers_len - wire::ethernet::header_len + wire::udp::header_len + reply.size() > config.mtu) {
                // Too long for the guest's link: header and question with TC, so it asks over TCP.
                ++stats.replies_truncated;
                const wire::dns::packet<wire::const_bytes> header{reply};
                auto r = wire::dns::repr::make_response(guest.guest_id, 0, match.query.request.question, 0);
                r.flags = static_cast<std::uint16_t>(header.flags() | wire::dns::flag::tc);
                if (r.emit(answer_buffer)) return;
                hold(p, guest, wire::const_bytes{answer_buffer.data(), r.buffer_len()});
                return;
            }
            hold(p, guest, reply);
        }

        void hold(const pending& p, const guest_query_key& guest, wire::const_bytes payload) {
            if (held.size() >= config.max_held) {
                ++stats.held_dropped;
                return;
            }
            const std::size_t n = detail::write_dns_frame(frame_span(), config.gateway_mac, p.mac, config.gateway,
                                                          guest.source, guest.source_port, payload);
            if (n == 0) return;
            std::vector<std::byte> bytes;
            if (!spare.empty()) {
                bytes = std::move(spare.back());
                spare.pop_back();
            }
            bytes.assign(out_frame.begin(), out_frame.begin() + static_cast<std::ptrdiff_t>(n));
            held.push_back(held_frame{p.port, std::move(bytes)});
        }

        void release_slot(std::uint32_t s) {
            slots[s].used = false;
            free_slots.push_back(s);
        }

        // --- tries and timeouts --------------------------------------------------------------------

        void arm_timer() {
            const auto next = table.next_deadline();
            if (!next || closed) return;
            if (timer_armed && timer_at <= *next) return;
            timer_armed = true;
            timer_at = *next;
            timer.expires_at(*next); // cancels a later wait: its handler sees operation_aborted
            timer.async_wait([self = this->shared_from_this()](boost::system::error_code ec) { self->on_timer(ec); });
        }

        void on_timer(boost::system::error_code ec) {
            std::function<void()> wake_now;
            {
                const std::lock_guard lock{mutex};
                if (closed || ec == boost::asio::error::operation_aborted) return;
                timer_armed = false;
                const auto now = clock::now();
                refresh_servers(now);
                table.expire(now, [&](const in_flight_query& gone) { next_try(gone, now); });
                arm_timer();
                if (!held.empty() && wake) wake_now = wake;
            }
            if (wake_now) wake_now();
        }

        std::size_t tries() const {
            return std::clamp(servers.size(), std::max<std::size_t>(config.min_tries, 1), std::max<std::size_t>(config.max_tries, 1));
        }

        void next_try(const in_flight_query& gone, clock::time_point now) {
            const std::uint32_t s = pending_of_id[gone.upstream_id];
            pending_of_id[gone.upstream_id] = none;
            if (s == none) return;
            pending& p = slots[s];
            const std::size_t attempt = p.attempt + 1;
            if (!servers.empty() && attempt < tries()) {
                query_request request = gone.request;
                const server& to = servers[attempt % servers.size()];
                request.server = to.id;
                request.deadline = now + config.try_timeout;
                const insert_result again = table.insert(request);
                if (again.status == insert_status::inserted) {
                    p.attempt = attempt;
                    p.upstream_id = again.upstream_id;
                    pending_of_id[again.upstream_id] = s;
                    ++stats.retries;
                    send(s, to);
                    return;
                }
            }
            ++stats.servfail;
            const auto& q = gone.request;
            const std::size_t len = detail::write_servfail(answer_buffer, q.guest.guest_id, q.query_flags, q.question, q.guest_edns);
            const pending copy = p;
            release_slot(s);
            if (len != 0) hold(copy, q.guest, wire::const_bytes{answer_buffer.data(), len});
        }

        void port_removed(wire::mac_address mac) {
            const std::lock_guard lock{mutex};
            for (std::uint32_t s = 0; s < slots.size(); ++s) {
                if (slots[s].used && slots[s].mac == mac) (void)table.cancel_vm(slots[s].port.index());
            }
            for (std::uint32_t s = 0; s < slots.size(); ++s) {
                if (slots[s].used && table.find(slots[s].upstream_id) == nullptr) {
                    pending_of_id[slots[s].upstream_id] = none;
                    release_slot(s);
                }
            }
        }

        void shutdown() {
            const std::lock_guard lock{mutex};
            if (closed) return;
            closed = true;
            wake = nullptr;
            boost::system::error_code ignored;
            v4.close(ignored);
            v6.close(ignored);
            timer.cancel();
        }

        mutable std::mutex mutex;
        forwarder_config config;
        std::shared_ptr<shared_zone> zone;
        upstream_source upstreams;
        query_table table;
        udp::socket v4, v6;
        udp::endpoint rx_from_v4, rx_from_v6;
        boost::asio::steady_timer timer;
        bool timer_armed = false;
        clock::time_point timer_at{};
        std::vector<server> servers;
        bool servers_built = false;
        std::uint64_t servers_generation = 0;
        std::uint16_t next_server_id = 0;
        std::vector<std::uint32_t> pending_of_id; // upstream ID -> slot
        std::vector<pending> slots;
        std::vector<std::uint32_t> free_slots;
        std::vector<std::byte> raw;               // slots × max_query_len: the queries as relayed
        std::deque<held_frame> held;
        std::vector<std::vector<std::byte>> spare; // buffers of released frames, reused
        std::function<void()> wake;
        std::array<std::byte, max_reply_len> answer_buffer{};
        std::vector<std::byte> out_frame; // a frame towards a guest, being built
        std::vector<std::byte> rx_v4, rx_v6;
        forwarder_counters stats;
        clock::time_point last_name_check{};
        bool names_checked = false;
        bool closed = false;
    };

    std::shared_ptr<core> core_;
};

} // namespace ankanet::dns
