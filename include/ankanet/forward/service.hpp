/// @file
/// ankanet::forward::service — port forwarding: host listeners whose connections and datagrams enter
/// a VM, following the VM wherever its address goes. A gateway service of basic_network.
///
/// Theory of operation. The rules are a forward::table (forward/table.hpp); this service owns the
/// host side: one listening socket per host port of each rule (a TCP acceptor, or a UDP socket).
///  - Adding a rule checks the table first (a conflict with another rule is refused naming it), then
///    binds every port of the rule; a port another socket on the host holds refuses the whole rule,
///    naming the processes that hold it (detail/port_holder.hpp), and nothing stays bound. Removing
///    a rule closes its listeners only: connections already carried are flows of the translators
///    and go on until they end.
///  - A TCP connection accepted, or a datagram from a UDP client read, waits in a bounded queue and
///    wakes the network; in release_held() (on the network's thread, with its context) the service
///    finds the VM the rule names among the network's ports, and the VM's address now: the last
///    address the gateway saw it take — a DHCP lease acknowledged, or an address it newly claimed by
///    ARP (a static address it announced) — else its bound lease (a lease from before a restart).
///    Without a VM or an address, a TCP client is reset (SO_LINGER {1, 0}) and a datagram dropped,
///    counted and reported; the rule keeps listening, and works from the moment the VM has one.
///  - Found: the connection becomes a flow of the network's TCP translator (ctx.carry_inbound with a
///    nat::inbound_tcp): the translator adopts the accepted socket and opens the connection to the
///    guest with a SYN, so inbound flows run on the one TCP engine outbound flows run on. A UDP
///    client gets a socket of its own, bound to the listener's address and port and connected to
///    the client, adopted by the UDP translator as a flow (nat::inbound_udp) with its timeouts; the
///    kernel hands that socket the client's later datagrams, and the first one is framed for the
///    guest here.
///  - The guest sees the client's real address and port, except a client on the host's loopback (or
///    one inside the guests' subnet), which it sees as the gateway (nat::remote_as_seen). Two such
///    clients on one port (127.0.0.1 and 127.0.0.2, say) would share a tuple: over TCP the second
///    is shown another port; over UDP (where a datagram of a known tuple is the flow's) the second
///    one's datagrams go to the first one's flow, so its answers are lost: a limit of this version.
///    A network run with host_loopback off does not carry the guest's answers to the gateway, so
///    loopback clients are not forwarded there either (their connections are reset once the SYN
///    retries run out).
/// Bounds: the table's limits (rules, ports), `pending` connections and datagrams waiting at once
/// (more are refused and counted), a fixed buffer for those datagrams allocated at construction;
/// nothing is allocated per packet. Not thread-safe: add() and remove() run on the network's thread.
#pragma once

#include <ankanet/detail/port_holder.hpp>
#include <ankanet/dhcp/server.hpp>
#include <ankanet/forward/table.hpp>
#include <ankanet/gateway/arp_guard.hpp>
#include <ankanet/nat/flow_table.hpp>
#include <ankanet/nat/inbound.hpp>
#include <ankanet/nat/translation.hpp>
#include <ankanet/port_handle.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/udp.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

#include <fmt/format.h>

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ankanet::forward {

/// Sizes of the service.
struct service_limits {
    table_limits table{}; ///< table
    std::size_t pending = 64;  ///< connections and datagrams waiting for the network's turn at once
    int backlog = 128;         ///< each TCP listener's listen() backlog
};

/// What the service did.
struct service_stats {
    std::uint64_t accepted = 0;           ///< TCP connections accepted
    std::uint64_t datagrams = 0;          ///< UDP datagrams read on listeners (a new client's first, mostly)
    std::uint64_t carried = 0;            ///< TCP connections and UDP clients handed to the translators
    std::uint64_t refused_no_vm = 0;      ///< no VM matched the rule (none attached, or several for a rule naming none)
    std::uint64_t refused_no_address = 0; ///< the VM has no address yet
    std::uint64_t refused_translator = 0; ///< the translator refused (the VM's flow limit, a full table)
    std::uint64_t refused_socket = 0;     ///< a UDP client's own socket could not be bound to the port or connected
    std::uint64_t refused_queue_full = 0; ///< more than `pending` waiting at once
    std::uint64_t refused_rule_gone = 0;  ///< the rule was removed before the connection's turn
    std::uint64_t dropped_too_long = 0;   ///< UDP datagrams longer than a frame of the MTU carries
};

/// A connection or datagram a forward could not carry into its VM (rate-limited: one per second).
struct forward_refused_event {
    std::string_view forward;            ///< the rule, as format_rule() writes it
    wire::ipv4_address client; ///< client
    std::uint16_t client_port = 0; ///< client port
    std::string_view reason; ///< reason
    std::uint64_t suppressed = 0;        ///< reports held back since the last one
};

/// Port forwarding; see the theory of operation above.
class service {
public:
    /// Listeners on `executor` (the network's); `config` is the network's (the gateway's address and
    /// MAC, the MTU).
    service(boost::asio::any_io_executor executor, nat::translation_config config, service_limits limits = {})
        : state_(std::make_shared<state>(std::move(executor), config, limits)) {}

    /// Move-constructs (memberwise).
    service(service&&) noexcept = default;
    /// Move assignment.
    service& operator=(service&&) noexcept = default;
    ~service() {
        if (state_) state_->close_all();
    }

    /// Adds a forward and starts listening on its host ports. Refuses (forward_errc, with `why`): a
    /// malformed rule, a conflict with another rule, the table's limits, a host port in use
    /// (naming its holders), an address the host does not have.
    result<rule_id> add(const rule& r, std::string* why = nullptr) { return state_->add(r, why); }
    /// Removes a forward and closes its listeners; its connections go on. no_such_rule if absent.
    std::error_code remove(rule_id id) { return state_->remove(id); }

    /// The table.
    const forward::table& table() const noexcept { return state_->rules; }
    /// What it counted so far.
    const service_stats& stats() const noexcept { return state_->counters; }
    /// Connections and UDP clients rule `id` has carried into its VM.
    std::uint64_t carried(rule_id id) const noexcept {
        const auto it = state_->carried_by_rule.find(id);
        return it == state_->carried_by_rule.end() ? 0 : it->second;
    }
    /// The address the VM with `mac` last took (a lease acknowledged, an address claimed by ARP).
    std::optional<wire::ipv4_address> last_address(wire::mac_address mac) const {
        const auto it = state_->where.find(mac);
        return it == state_->where.end() ? std::nullopt : std::optional{it->second};
    }

    // --- the gateway-service hooks (network.hpp) ----------------------------------------------------

    /// Frames for the gateway are never the service's (it has no frames of its own to answer).
    template <class Ctx>
    bool handle(const wire::parsed_frame&, Ctx&) noexcept { return false; }

    /// Carries what the listeners accepted and read into the VMs; at most `room` frames.
    template <class Ctx>
    std::size_t release_held(Ctx& ctx, std::size_t room) { return state_->release(ctx, room); }

    /// Sets the function the service calls when it has frames for the VMs.
    void bind_wakeup(std::function<void()> wake) {
        state_->wake = std::move(wake);
        state_->wake_pending = false;
        if (state_->has_work()) state_->request_flush();
    }
    /// The network stops: every listener closes, waiting connections are reset.
    void stop() { state_->close_all(); }

    /// Where VMs are: a lease acknowledged, an address newly claimed by ARP, a lease released.
    void observe_event(const dhcp::lease_event& e) {
        if (e.kind == dhcp::lease_event_kind::acknowledged) state_->where[e.mac] = e.address;
        if (e.kind == dhcp::lease_event_kind::released || e.kind == dhcp::lease_event_kind::declined) {
            const auto it = state_->where.find(e.mac);
            if (it != state_->where.end() && it->second == e.address) state_->where.erase(it);
        }
    }
    /// A VM claimed an address: forwards to it follow.
    void observe_event(const gateway::address_claimed_event& e) { state_->where[e.mac] = e.address; }
    /// A VM went away: forwards no longer reach it.
    void port_removed(wire::mac_address mac) { state_->where.erase(mac); }

private:
    using tcp = boost::asio::ip::tcp;
    using udp = boost::asio::ip::udp;

    /// One host port of one rule.
    struct listener {
        listener(const boost::asio::any_io_executor& ex, rule_id r, protocol p, wire::ipv4_address a, std::uint16_t port)
            : id(r), proto(p), address(a), host_port(port), acceptor(ex), socket(ex) {}
        rule_id id;
        protocol proto;
        wire::ipv4_address address;
        std::uint16_t host_port;
        tcp::acceptor acceptor; // TCP rules
        udp::socket socket;     // UDP rules
        bool closed = false;
    };

    /// A TCP connection waiting for the network's turn.
    struct waiting_connection {
        rule_id id = 0;
        std::uint16_t host_port = 0;
        tcp::socket socket;
    };

    /// A UDP datagram waiting for the network's turn; its payload in a slot of `datagrams`.
    struct waiting_datagram {
        rule_id id = 0;
        wire::ipv4_address listen_address;
        std::uint16_t host_port = 0;
        wire::ipv4_address client;
        std::uint16_t client_port = 0;
        std::size_t length = 0;
    };

    /// The VM a rule leads into, now.
    struct target {
        port_handle port;
        wire::mac_address mac;
        wire::ipv4_address address;
    };

    struct state : std::enable_shared_from_this<state> {
        state(boost::asio::any_io_executor ex, const nat::translation_config& c, const service_limits& l)
            : executor(std::move(ex)), config(c), limits(l), rules(l.table),
              max_payload(c.mtu > wire::ipv4::header_len + wire::udp::header_len
                              ? c.mtu - wire::ipv4::header_len - wire::udp::header_len
                              : 0),
              datagram_slots(std::max<std::size_t>(l.pending, 1)), datagrams(datagram_slots * (max_payload + 1)),
              udp_waiting(datagram_slots),
              frame(nat::guest_headers_len + wire::udp::header_len + max_payload) {
            tcp_waiting.reserve(std::max<std::size_t>(l.pending, 1));
        }

        boost::asio::any_io_executor executor;
        nat::translation_config config;
        service_limits limits;
        forward::table rules;
        std::vector<std::shared_ptr<listener>> listeners;
        std::vector<waiting_connection> tcp_waiting; // reserved at `pending`
        // UDP: a ring of waiting datagrams, each with a payload slot of max_payload + 1 bytes (one
        // more, to tell a datagram too long for the guest's MTU).
        std::size_t max_payload;
        std::size_t datagram_slots;
        std::vector<std::byte> datagrams;
        std::vector<waiting_datagram> udp_waiting;
        std::size_t udp_head = 0;
        std::size_t udp_count = 0;
        std::vector<std::byte> frame; // one datagram towards a guest, built in place
        std::uint16_t ip_id = 0;
        std::unordered_map<wire::mac_address, wire::ipv4_address> where; // a VM's last address
        std::unordered_map<rule_id, std::uint64_t> carried_by_rule;
        service_stats counters;
        nat::report_limiter refusals;
        std::function<void()> wake;
        bool wake_pending = false;
        bool stopped = false;

        bool has_work() const noexcept { return !tcp_waiting.empty() || udp_count != 0; }
        void request_flush() {
            if (wake_pending || !wake) return;
            wake_pending = true;
            wake();
        }

        // -- rules

        result<rule_id> add(const rule& r, std::string* why) {
            if (stopped) {
                if (why != nullptr) *why = "the network is stopping";
                return std::make_error_code(std::errc::operation_canceled);
            }
            // Conflicts and limits first: nothing is bound for a rule the table refuses, and no id is
            // spent on a rule whose ports turn out to be taken.
            if (const auto refused = rules.admissible(r, why)) return refused;
            std::vector<std::shared_ptr<listener>> opened;
            for (std::uint32_t port = r.host_port; port <= r.host_port_last; ++port) {
                auto l = std::make_shared<listener>(executor, rule_id{0}, r.proto, r.host_address, static_cast<std::uint16_t>(port));
                if (const auto problem = open(*l)) {
                    for (auto& o : opened) close(*o);
                    if (why != nullptr) *why = fmt::format("forward {}: {}", format_rule(r), *problem);
                    return make_error_code(forward_errc::port_in_use);
                }
                opened.push_back(std::move(l));
            }
            const auto id = rules.add(r, why);
            if (!id) { // cannot happen after admissible(); close what was opened all the same
                for (auto& o : opened) close(*o);
                return id;
            }
            for (auto& l : opened) {
                l->id = *id;
                listen(l);
                listeners.push_back(std::move(l));
            }
            return id;
        }

        std::error_code remove(rule_id id) {
            if (!rules.remove(id)) return make_error_code(forward_errc::no_such_rule);
            std::erase_if(listeners, [&](const std::shared_ptr<listener>& l) {
                if (l->id != id) return false;
                close(*l);
                return true;
            });
            carried_by_rule.erase(id);
            return {};
        }

        /// Binds one listener; what went wrong, in words, or nothing.
        std::optional<std::string> open(listener& l) {
            boost::system::error_code ec;
            const boost::asio::ip::address_v4 address{l.address.to_u32()};
            const auto in_use = [&](const boost::system::error_code& error) -> std::optional<std::string> {
                if (error == boost::asio::error::address_in_use) {
                    const auto holders = ankanet::detail::describe_port_holder(
                        l.proto == protocol::tcp ? ankanet::detail::port_protocol::tcp : ankanet::detail::port_protocol::udp,
                        l.address, l.host_port);
                    return fmt::format("{} {}:{} is in use on the host{}", to_string(l.proto), l.address, l.host_port,
                                       holders.empty() ? std::string{} : fmt::format(" (by {})", holders));
                }
                return fmt::format("{} {}:{}: {}", to_string(l.proto), l.address, l.host_port, error.message());
            };
            if (l.proto == protocol::tcp) {
                l.acceptor.open(tcp::v4(), ec);
                if (!ec) l.acceptor.set_option(tcp::acceptor::reuse_address(true), ec); // past TIME_WAIT, never past a listener
                if (!ec) l.acceptor.bind(tcp::endpoint{address, l.host_port}, ec);
                if (!ec) l.acceptor.listen(limits.backlog, ec);
                if (!ec) l.acceptor.non_blocking(true, ec);
                if (ec) {
                    const auto problem = in_use(ec);
                    close(l);
                    return problem;
                }
                return std::nullopt;
            }
            // UDP: the clients' sockets share the port (SO_REUSEPORT), so the listener must set it
            // too, and a bind with it would succeed beside another program's socket that set it:
            // a plain bind first tells whether anyone holds the port.
            {
                udp::socket probe{executor};
                probe.open(udp::v4(), ec);
                if (!ec) probe.bind(udp::endpoint{address, l.host_port}, ec);
                if (ec) return in_use(ec);
            }
            ec = open_shared(l.socket, address, l.host_port);
            if (!ec) l.socket.non_blocking(true, ec);
            if (ec) {
                const auto problem = in_use(ec);
                close(l);
                return problem;
            }
            return std::nullopt;
        }

        /// Opens `socket` bound to `address`:`port` with SO_REUSEADDR and SO_REUSEPORT: a UDP
        /// listener and its clients' sockets share the port.
        static boost::system::error_code open_shared(udp::socket& socket, const boost::asio::ip::address_v4& address,
                                                     std::uint16_t port) {
            boost::system::error_code ec;
            socket.open(udp::v4(), ec);
            if (!ec) socket.set_option(udp::socket::reuse_address(true), ec);
            const int one = 1;
            if (!ec && ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
                ec = boost::system::error_code{errno, boost::system::system_category()};
            }
            if (!ec) socket.bind(udp::endpoint{address, port}, ec);
            return ec;
        }

        static void close(listener& l) {
            l.closed = true;
            boost::system::error_code ignored;
            if (l.acceptor.is_open()) l.acceptor.close(ignored);
            if (l.socket.is_open()) l.socket.close(ignored);
        }

        void close_all() {
            stopped = true;
            for (auto& l : listeners) close(*l);
            listeners.clear();
            for (auto& w : tcp_waiting) reset(w.socket);
            tcp_waiting.clear();
            udp_count = 0;
        }

        static void reset(tcp::socket& socket) {
            if (!socket.is_open()) return;
            const ::linger abort{1, 0};
            (void)::setsockopt(socket.native_handle(), SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
            boost::system::error_code ignored;
            socket.close(ignored);
        }

        // -- listening

        void listen(const std::shared_ptr<listener>& l) {
            if (l->closed || stopped) return;
            const auto ready = [weak = this->weak_from_this(), l](const boost::system::error_code& error) {
                const auto self = weak.lock();
                if (!self || error == boost::asio::error::operation_aborted || l->closed) return;
                if (l->proto == protocol::tcp) self->accept_ready(l);
                else self->read_ready(l);
            };
            if (l->proto == protocol::tcp) l->acceptor.async_wait(tcp::acceptor::wait_read, ready);
            else l->socket.async_wait(udp::socket::wait_read, ready);
        }

        /// Accepts what the listener holds, as far as the queue has room.
        void accept_ready(const std::shared_ptr<listener>& l) {
            for (std::size_t i = 0; i < limits.pending; ++i) {
                boost::system::error_code ec;
                tcp::socket socket{executor};
                l->acceptor.accept(socket, ec);
                if (ec) break; // would block (or the client gave up already)
                ++counters.accepted;
                if (tcp_waiting.size() >= limits.pending) {
                    ++counters.refused_queue_full;
                    reset(socket);
                    continue;
                }
                tcp_waiting.push_back(waiting_connection{l->id, l->host_port, std::move(socket)});
            }
            if (has_work()) request_flush();
            listen(l);
        }

        /// Reads the datagrams the listener holds into the ring, as far as it has room (a full
        /// ring drops them, counted: the client resends, as on any congested path).
        void read_ready(const std::shared_ptr<listener>& l) {
            for (std::size_t i = 0; i < limits.pending; ++i) {
                const std::size_t slot = (udp_head + udp_count) % datagram_slots;
                std::array<std::byte, 1> discard{};
                const bool full = udp_count == datagram_slots;
                std::byte* into = full ? discard.data() : datagrams.data() + slot * (max_payload + 1);
                const std::size_t room = full ? discard.size() : max_payload + 1;
                ::sockaddr_in from{};
                ::socklen_t from_len = sizeof from;
                const ::ssize_t n = ::recvfrom(l->socket.native_handle(), into, room, MSG_DONTWAIT,
                                               reinterpret_cast<::sockaddr*>(&from), &from_len);
                if (n < 0) break;
                ++counters.datagrams;
                if (full) {
                    ++counters.refused_queue_full;
                    continue;
                }
                if (static_cast<std::size_t>(n) > max_payload) {
                    ++counters.dropped_too_long;
                    continue;
                }
                udp_waiting[slot] = waiting_datagram{l->id, l->address, l->host_port, wire::ipv4_address{ntohl(from.sin_addr.s_addr)},
                                                     ntohs(from.sin_port), static_cast<std::size_t>(n)};
                ++udp_count;
            }
            if (has_work()) request_flush();
            listen(l);
        }

        // -- carrying into the VMs

        template <class Ctx>
        std::size_t release(Ctx& ctx, std::size_t room) {
            wake_pending = false;
            // TCP first: the translator sends the SYNs (its own turn), nothing goes out here. Only
            // the listeners' handlers add to the queue, never this loop.
            for (auto& w : tcp_waiting) carry_connection(ctx, w);
            tcp_waiting.clear();
            std::size_t sent = 0;
            while (udp_count != 0 && sent < room) {
                const waiting_datagram d = udp_waiting[udp_head];
                const wire::const_bytes payload{datagrams.data() + udp_head * (max_payload + 1), d.length};
                udp_head = (udp_head + 1) % datagram_slots;
                --udp_count;
                if (carry_datagram(ctx, d, payload)) ++sent;
            }
            return udp_count != 0 ? room : sent;
        }

        /// The VM rule `r` leads into, and its address; or why there is none.
        template <class Ctx>
        std::optional<target> find_target(Ctx& ctx, const rule& r, std::string_view& why) {
            std::optional<target> found;
            std::size_t candidates = 0;
            bool unaddressed = false;
            ctx.for_each_port([&](port_handle port, std::string_view name, const std::optional<wire::mac_address>& mac, bool) {
                if (!r.vm.empty() && !r.vm.matches(name, mac)) return;
                ++candidates;
                if (found || !mac) return;
                std::optional<wire::ipv4_address> address;
                if (const auto it = where.find(*mac); it != where.end()) address = it->second;
                else address = ctx.leased_address(*mac);
                if (!address) {
                    unaddressed = true;
                    return;
                }
                found = target{port, *mac, *address};
            });
            if (r.vm.empty() && candidates > 1) {
                why = "the forward names no VM and the network has several";
                ++counters.refused_no_vm;
                return std::nullopt;
            }
            if (found) return found;
            if (candidates == 0) {
                why = "its VM is not attached";
                ++counters.refused_no_vm;
            } else {
                why = unaddressed ? "its VM has no address yet" : "its VM's MAC is not known yet";
                ++counters.refused_no_address;
            }
            return std::nullopt;
        }

        template <class Ctx>
        void refused(Ctx& ctx, const rule* r, wire::ipv4_address client, std::uint16_t client_port, std::string_view why) {
            std::uint64_t suppressed = 0;
            if (!refusals.admit(std::chrono::steady_clock::now(), suppressed)) return;
            const std::string text = r != nullptr ? format_rule(*r) : std::string{"(removed)"};
            ctx.notify(forward_refused_event{text, client, client_port, why, suppressed});
        }

        /// Another port for a client whose tuple is taken (two loopback clients shown as the gateway
        /// with one port): from the dynamic range, varied by the attempt.
        static std::uint16_t other_port(std::uint16_t port, unsigned attempt) noexcept {
            return static_cast<std::uint16_t>(49152 + (port * 2654435761u + attempt * 7919u) % 16384);
        }

        template <class Ctx>
        void carry_connection(Ctx& ctx, waiting_connection& w) {
            boost::system::error_code ec;
            const auto peer = w.socket.remote_endpoint(ec);
            if (ec) { // the client is gone already
                reset(w.socket);
                return;
            }
            const wire::ipv4_address client{peer.address().to_v4().to_uint()};
            const rule* r = rules.find(w.id);
            if (r == nullptr) {
                ++counters.refused_rule_gone;
                reset(w.socket);
                return;
            }
            std::string_view why;
            const auto to = find_target(ctx, *r, why);
            if (!to) {
                refused(ctx, r, client, peer.port(), why);
                reset(w.socket);
                return;
            }
            nat::inbound_tcp request{to->port, to->mac, to->address, r->guest_port_for(w.host_port),
                                     nat::remote_as_seen(client, config.subnet), peer.port(), std::move(w.socket)};
            std::error_code result;
            for (unsigned attempt = 0; attempt < 4; ++attempt) {
                result = ctx.carry_inbound(std::move(request));
                if (result != nat::flow_errc::flow_exists) break;
                request.remote_port = other_port(peer.port(), attempt);
            }
            if (result) {
                ++counters.refused_translator;
                refused(ctx, r, client, peer.port(), "the NAT refused the flow (the VM's flow limit, or a full table)");
                reset(request.socket);
                return;
            }
            ++counters.carried;
            ++carried_by_rule[w.id];
        }

        template <class Ctx>
        bool carry_datagram(Ctx& ctx, const waiting_datagram& d, wire::const_bytes payload) {
            const rule* r = rules.find(d.id);
            if (r == nullptr) {
                ++counters.refused_rule_gone;
                return false;
            }
            std::string_view why;
            const auto to = find_target(ctx, *r, why);
            if (!to) {
                refused(ctx, r, d.client, d.client_port, why);
                return false;
            }
            const std::uint16_t guest_port = r->guest_port_for(d.host_port);
            const wire::ipv4_address seen = nat::remote_as_seen(d.client, config.subnet);
            // The client's own socket: its later datagrams reach it, the guest's answers leave it.
            udp::socket socket{executor};
            auto ec = open_shared(socket, boost::asio::ip::address_v4{d.listen_address.to_u32()}, d.host_port);
            if (!ec) socket.connect(udp::endpoint{boost::asio::ip::address_v4{d.client.to_u32()}, d.client_port}, ec);
            if (ec) {
                // Without it the guest's answer would leave from another port: better not carried.
                ++counters.refused_socket;
                refused(ctx, r, d.client, d.client_port, "the client's socket could not be opened");
                return false;
            }
            const std::uint16_t shown_port = d.client_port;
            {
                nat::inbound_udp request{to->port, to->mac, to->address, guest_port, seen, shown_port, std::move(socket)};
                std::error_code result = ctx.carry_inbound(std::move(request));
                // A flow with this tuple exists: this client's (a datagram that reached the listener
                // before its socket was connected, or after it timed out there): it goes to the guest
                // as it is. Else the tuple is another loopback client's.
                if (result == nat::flow_errc::flow_exists) result = {};
                if (result) {
                    ++counters.refused_translator;
                    refused(ctx, r, d.client, d.client_port, "the NAT refused the flow (the VM's flow limit, or a full table)");
                    return false;
                }
                ++counters.carried;
                ++carried_by_rule[d.id];
            }
            // The datagram itself, framed for the guest.
            const std::size_t l4 = wire::udp::header_len + payload.size();
            const std::size_t len = nat::write_guest_headers(frame, config.gateway_mac, to->mac, seen, to->address,
                                                             wire::ipv4::protocol::udp, l4, ip_id++);
            if (len == 0) return false;
            std::memcpy(frame.data() + nat::guest_headers_len + wire::udp::header_len, payload.data(), payload.size());
            wire::udp::repr header;
            header.source_port = shown_port;
            header.destination_port = guest_port;
            header.payload_len = payload.size();
            if (header.emit(wire::mutable_bytes{frame}.subspan(nat::guest_headers_len, l4), seen, to->address)) return false;
            ctx.send_to(to->port, wire::const_bytes{frame.data(), len});
            return true;
        }
    };

    std::shared_ptr<state> state_;
};

/// Adds `rules` to `network`'s forward::service, in order; the first refusal stops it, with `why`.
template <class Network>
std::error_code add_forwards(Network& network, std::span<const rule> rules, std::string* why = nullptr) {
    for (const auto& r : rules) {
        if (auto added = network.template service<service>().add(r, why); !added) return added.error();
    }
    return {};
}

} // namespace ankanet::forward
