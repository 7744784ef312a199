/// @file
/// ankanet::nat::icmp_translator — guests' ping (ICMP echo) over host sockets.
///
/// Theory of operation. A flow is one guest's echo identifier towards one remote (flow_table key:
/// the id stands in for both ports). The host side is one of two kinds of socket, chosen once, at
/// construction:
///   - ping sockets (SOCK_DGRAM, IPPROTO_ICMP): unprivileged, one per flow, connected to the
///     remote. The kernel owns the echo id on the wire (it is the socket's "port") and hands back
///     only the replies to that socket, so flows never see each other's replies. Linux allows them
///     to the groups in net.ipv4.ping_group_range, which is "1 0" (nobody, not even root) unless
///     the administrator widened it.
///   - a raw ICMP socket (SOCK_RAW, needs CAP_NET_RAW), one for all flows, as libslirp falls back
///     to. Each flow sends with an id of its own — its slot index mixed with a random base, so a
///     guest cannot pick another flow's id and a reply maps to its flow with no lookup — and the
///     socket sees every ICMP the host receives: only echo replies whose id names a live flow and
///     whose source is that flow's remote are taken; everything else is ignored.
/// The library changes no system setting: when neither kind can be opened, available() is false
/// and unavailable_reason() says why in one sentence naming the sysctl, for the program to log
/// once; guests' pings beyond the gateway then go unanswered (counted).
/// Echo requests to the gateway are not ours: the gateway answers them itself (gateway::responder).
/// Requests from a guest are checked (length, checksum), judged by the egress policy once per new
/// flow (a refusal: ICMP communication administratively prohibited, counted, reported at most once
/// a second), sent with the host-side id, and replies come back with the guest's id and sequence
/// restored, from the remote as the guest addressed it (the gateway for host loopback), through
/// the same ready list / wakeup / release_held path as UDP (detail/host_events.hpp). A flow lives
/// `timeout` (60 s) after its last request.
#pragma once

#include <ankanet/inspection.hpp>
#include <ankanet/nat/detail/host_events.hpp>
#include <ankanet/nat/egress.hpp>
#include <ankanet/nat/flow_table.hpp>
#include <ankanet/nat/translation.hpp>
#include <ankanet/port_handle.hpp>
#include <ankanet/wire/checksum.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/icmp.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/generic/datagram_protocol.hpp>
#include <boost/asio/generic/raw_protocol.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace ankanet::nat {

/// Limits of the ICMP translator.
struct icmp_limits {
    std::size_t capacity = 1024;        ///< echo flows at once (at most 65536: the id space)
    std::size_t max_flows_per_vm = 64;  ///< 0: the whole capacity
    std::size_t max_vms = 256; ///< VM port indexes below this may open flows
    std::chrono::seconds timeout{60}; ///< an echo flow is closed this long after its last request
    icmp_socket_kind sockets = icmp_socket_kind::automatic; ///< what carries guests' pings
};

/// What the ICMP translator did.
struct icmp_counters {
    std::uint64_t requests = 0;           ///< echo requests carried guest → host
    std::uint64_t replies = 0;            ///< echo replies carried host → guest
    std::uint64_t flows_opened = 0; ///< echo flows opened
    std::uint64_t flows_expired = 0; ///< echo flows closed by the timeout
    std::uint64_t refused_egress = 0; ///< refused by the egress policy
    std::uint64_t refused_limit = 0; ///< refused by a flow limit
    std::uint64_t refused_socket = 0;     ///< no socket (none available, or opening one failed)
    std::uint64_t dropped_malformed = 0; ///< dropped malformed
    std::uint64_t dropped_martian = 0; ///< to a destination a guest can never reach
    std::uint64_t dropped_fragment = 0; ///< dropped fragment
    std::uint64_t dropped_spoofed = 0;    ///< not from the port's MAC, or from no address a VM of the subnet has
    std::uint64_t dropped_send = 0; ///< the host socket refused the send
    std::uint64_t ignored_host_icmp = 0;  ///< raw socket: ICMP that named no flow
};

/// @tparam Egress models egress_policy.
template <egress_policy Egress>
class icmp_translator {
public:
    /// A translator running host sockets on `executor`.
    icmp_translator(boost::asio::any_io_executor executor, translation_config config, Egress egress, icmp_limits limits = {})
        : state_(std::make_shared<state>(std::move(executor), config, std::move(egress), limits)) {
        state_->start();
    }
    /// Move-constructs (memberwise).
    icmp_translator(icmp_translator&&) noexcept = default;
    /// Move assignment.
    icmp_translator& operator=(icmp_translator&&) noexcept = default;
    ~icmp_translator() {
        if (state_) state_->close_all();
    }

    /// Takes the guests' ICMP datagrams for the translator; passes every other frame.
    template <class Ctx>
    inspection inspect(const wire::parsed_frame& frame, Ctx& ctx) {
        if (!frame.is_ipv4() || frame.protocol != wire::ipv4::protocol::icmp) return inspection::pass;
        return state_->from_guest(frame, ctx);
    }
    /// Sends the guests what the host sockets received; at most `room` frames.
    template <class Ctx>
    std::size_t release_held(Ctx& ctx, std::size_t room) { return state_->release(ctx, room); }
    /// Sets the function the translator calls when it has frames for the guests.
    void bind_wakeup(std::function<void()> wake) { state_->wake.bind(std::move(wake)); }
    /// Closes every flow's socket and the timer: the network is stopping.
    void stop() { state_->close_all(); }

    /// Whether guests' pings can be carried at all; see unavailable_reason().
    bool available() const noexcept { return state_->kind != kind_none; }
    /// The kind of host socket in use (automatic when none is available).
    icmp_socket_kind socket_kind() const noexcept {
        return state_->kind == kind_ping ? icmp_socket_kind::ping : state_->kind == kind_raw ? icmp_socket_kind::raw : icmp_socket_kind::automatic;
    }
    /// Why no socket kind is available, in one sentence; empty when one is.
    const std::string& unavailable_reason() const noexcept { return state_->why; }
    /// What it counted so far.
    const icmp_counters& stats() const noexcept { return state_->counters; }
    /// The flow count.
    std::size_t flow_count() const noexcept { return state_->flows.size(); }

private:
    static constexpr int kind_none = 0, kind_ping = 1, kind_raw = 2;
    using ping_socket = boost::asio::generic::datagram_protocol::socket;
    using raw_socket = boost::asio::generic::raw_protocol::socket;

    struct flow {
        flow(port_handle p, wire::mac_address mac, wire::ipv4_address r, std::uint16_t id)
            : port(p), vm_mac(mac), remote(r), host_id(id) {}
        std::optional<ping_socket> socket; // ping sockets only
        port_handle port;
        wire::mac_address vm_mac;
        wire::ipv4_address remote;  // host side
        std::uint16_t host_id;      // raw socket: the id on the wire
        bool waiting = false;
    };

    struct state : std::enable_shared_from_this<state> {
        state(boost::asio::any_io_executor ex, translation_config c, Egress e, icmp_limits l)
            : executor(ex), config(c), egress(std::move(e)), limits(l), flows(table_config(l)), ready(flows.capacity()),
              timers(ex, flows.capacity(), std::chrono::milliseconds{100}), raw(ex),
              frame(guest_headers_len + 0xffff), id_base(static_cast<std::uint16_t>(std::random_device{}())) {
            if (l.max_flows_per_vm != 0) flows.set_vm_limits(l.max_flows_per_vm);
        }

        static typename flow_table<flow>::config table_config(const icmp_limits& l) {
            typename flow_table<flow>::config c;
            c.capacity = std::min<std::size_t>(l.capacity, 0x10000);
            c.max_vms = l.max_vms;
            return c;
        }

        boost::asio::any_io_executor executor;
        translation_config config;
        Egress egress;
        icmp_limits limits;
        flow_table<flow> flows;
        detail::ready_list ready;
        detail::wheel_timer timers;
        detail::wakeup wake;
        raw_socket raw;
        bool raw_waiting = false;
        bool raw_ready = false;
        std::vector<std::byte> frame;
        std::uint16_t id_base;
        int kind = kind_none;
        std::string why;
        icmp_counters counters;
        report_limiter refusals;
        bool stopped = false; // stop(): no new flow, no timer

        // Chooses the socket kind (see the theory of operation).
        void start() {
            std::string ping_why;
            if (limits.sockets != icmp_socket_kind::raw) {
                const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_ICMP);
                if (fd >= 0) {
                    ::close(fd);
                    kind = kind_ping;
                    return;
                }
                ping_why = fmt_errno("ping sockets", errno) + " (net.ipv4.ping_group_range is \"" + ping_group_range() +
                           "\"; it must include group " + std::to_string(::getgid()) + ")";
            }
            if (limits.sockets != icmp_socket_kind::ping) {
                const int fd = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_ICMP);
                if (fd >= 0) {
                    boost::system::error_code ec;
                    raw.assign(boost::asio::generic::raw_protocol(AF_INET, IPPROTO_ICMP), fd, ec);
                    if (!ec) {
                        kind = kind_raw;
                        return;
                    }
                    ::close(fd);
                }
                const std::string raw_why = fmt_errno("a raw ICMP socket", errno) + " (it needs CAP_NET_RAW)";
                why = ping_why.empty() ? raw_why : ping_why + ", nor " + raw_why;
            } else {
                why = ping_why;
            }
            why = "guests' pings beyond the gateway go unanswered: cannot open " + why;
        }

        static std::string fmt_errno(const char* what, int error) { return std::string{what} + ": " + std::strerror(error); }

        static std::string ping_group_range() {
            std::ifstream in{"/proc/sys/net/ipv4/ping_group_range"};
            std::string low, high;
            if (!(in >> low >> high)) return "unknown";
            return low + " " + high;
        }

        template <class Ctx>
        inspection from_guest(const wire::parsed_frame& f, Ctx& ctx) {
            if (f.ip_destination == config.subnet.address()) return inspection::pass; // the gateway answers
            const auto where = classify(f, config, ctx.port_mac());
            switch (where.route) {
            case guest_route::not_ours: return inspection::pass;
            case guest_route::martian: ++counters.dropped_martian; return inspection::drop;
            case guest_route::fragment: ++counters.dropped_fragment; return inspection::drop;
            case guest_route::spoofed: ++counters.dropped_spoofed; return inspection::drop;
            case guest_route::translate: break;
            }
            const wire::ipv4::packet<wire::const_bytes> ip{f.ip};
            if (ip.total_length() < f.ip_header_len || ip.total_length() > f.ip.size()) {
                ++counters.dropped_malformed;
                return inspection::drop;
            }
            const auto message = f.ip_payload().first(ip.total_length() - f.ip_header_len);
            const auto parsed = wire::icmp::repr::parse(message);
            if (!parsed) {
                ++counters.dropped_malformed;
                return inspection::drop;
            }
            const auto* request = std::get_if<wire::icmp::echo_request>(&parsed->message);
            if (request == nullptr) return inspection::drop; // only echo is carried; errors from guests end here
            const auto port = ctx.port();
            if (!port) return inspection::drop;
            const flow_key key{f.ip_source, f.ip_destination, request->identifier, request->identifier, port->index(),
                               wire::ipv4::protocol::icmp};
            auto handle = flows.find(key);
            if (!handle) {
                handle = open(key, where.remote, *port, f, ctx);
                if (!handle) return inspection::taken;
            }
            send(*handle, *flows.get(*handle), *request);
            return inspection::taken;
        }

        template <class Ctx>
        std::optional<flow_handle> open(const flow_key& key, wire::ipv4_address remote, port_handle port,
                                        const wire::parsed_frame& f, Ctx& ctx) {
            if (stopped) return std::nullopt;
            if (!egress.allows(remote, 0, wire::ipv4::protocol::icmp)) {
                ++counters.refused_egress;
                const auto n = write_guest_icmp_error(frame, config.gateway_mac, ctx.port_mac(), config.subnet.address(),
                                                      key.guest_address, wire::icmp::type::destination_unreachable,
                                                      wire::icmp::unreachable_code::communication_prohibited, f.ip);
                if (n != 0) ctx.answer(wire::const_bytes{frame.data(), n});
                report(ctx, key, "egress policy");
                return std::nullopt;
            }
            if (kind == kind_none) {
                ++counters.refused_socket;
                report(ctx, key, why);
                return std::nullopt;
            }
            auto inserted = flows.insert(key, port, ctx.port_mac(), remote, std::uint16_t{0});
            if (!inserted) {
                ++counters.refused_limit;
                report(ctx, key, inserted.error() == flow_errc::vm_limit ? "flow limit per VM" : "flow table full");
                return std::nullopt;
            }
            flow& fl = *flows.get(*inserted);
            fl.host_id = static_cast<std::uint16_t>(inserted->index ^ id_base);
            if (kind == kind_ping) {
                if (const auto ec = open_ping_socket(fl)) {
                    ++counters.refused_socket;
                    const std::string reason = "ping socket: " + ec.message();
                    report(ctx, key, reason);
                    flows.erase(*inserted);
                    return std::nullopt;
                }
                wait(*inserted, fl);
            } else {
                wait_raw();
            }
            ++counters.flows_opened;
            return *inserted;
        }

        std::error_code open_ping_socket(flow& fl) {
            const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_ICMP);
            if (fd < 0) return {errno, std::system_category()};
            sockaddr_in to{};
            to.sin_family = AF_INET;
            to.sin_addr.s_addr = htonl(fl.remote.to_u32());
            if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
                const std::error_code ec{errno, std::system_category()};
                ::close(fd);
                return ec;
            }
            boost::system::error_code ec;
            fl.socket.emplace(executor);
            fl.socket->assign(boost::asio::generic::datagram_protocol(AF_INET, IPPROTO_ICMP), fd, ec);
            if (ec) {
                ::close(fd);
                fl.socket.reset();
                return ec;
            }
            return {};
        }

        template <class Ctx>
        void report(Ctx& ctx, const flow_key& key, std::string_view reason) {
            std::uint64_t suppressed = 0;
            if (refusals.admit(std::chrono::steady_clock::now(), suppressed)) {
                ctx.notify(flow_refused_event{ctx.port_name(), wire::ipv4::protocol::icmp, key.remote_address, 0, reason, suppressed});
            }
        }

        void send(flow_handle h, flow& fl, const wire::icmp::echo_request& request) {
            wire::icmp::repr echo{wire::icmp::echo_request{fl.host_id, request.sequence, request.data}};
            const std::size_t len = echo.buffer_len();
            if (len > frame.size() || echo.emit(wire::mutable_bytes{frame}.first(len))) {
                ++counters.dropped_malformed;
                return;
            }
            ssize_t sent = -1;
            if (fl.socket) {
                sent = ::send(fl.socket->native_handle(), frame.data(), len, MSG_DONTWAIT | MSG_NOSIGNAL);
            } else {
                sockaddr_in to{};
                to.sin_family = AF_INET;
                to.sin_addr.s_addr = htonl(fl.remote.to_u32());
                sent = ::sendto(raw.native_handle(), frame.data(), len, MSG_DONTWAIT | MSG_NOSIGNAL,
                                reinterpret_cast<const sockaddr*>(&to), sizeof to);
            }
            if (sent < 0) ++counters.dropped_send;
            else ++counters.requests;
            timers.wheel().schedule(h.index, std::chrono::steady_clock::now() + limits.timeout);
            timers.arm(this->weak_from_this(), [this](std::uint32_t index) { expire(index); });
        }

        void expire(std::uint32_t index) {
            const auto h = flows.handle_at(index);
            if (!h) return;
            flows.erase(*h); // a ping socket closes with its flow
            ++counters.flows_expired;
        }

        void wait(flow_handle h, flow& fl) {
            if (fl.waiting || !fl.socket) return;
            fl.waiting = true;
            fl.socket->async_wait(ping_socket::wait_read, [weak = this->weak_from_this(), h](const boost::system::error_code& ec) {
                const auto self = weak.lock();
                if (!self) return;
                flow* f = self->flows.get(h);
                if (f == nullptr) return;
                f->waiting = false;
                if (!ec && self->ready.push(h.index, h.to_u64())) self->wake.request();
            });
        }

        void wait_raw() {
            if (raw_waiting || kind != kind_raw) return;
            raw_waiting = true;
            raw.async_wait(raw_socket::wait_read, [weak = this->weak_from_this()](const boost::system::error_code& ec) {
                const auto self = weak.lock();
                if (!self) return;
                self->raw_waiting = false;
                if (ec) return;
                self->raw_ready = true;
                self->wake.request();
            });
        }

        template <class Ctx>
        std::size_t release(Ctx& ctx, std::size_t room) {
            wake.answered();
            std::size_t sent = 0;
            if (raw_ready) {
                if (drain_raw(ctx, room, sent)) {
                    raw_ready = false;
                    if (!flows.empty()) wait_raw();
                }
            }
            ready.serve(
                flows, room, sent, [&](flow_handle h, flow& fl) { return drain_ping(h, fl, ctx, room, sent); },
                [&](flow_handle h, flow& fl) { wait(h, fl); });
            return sent;
        }

        // Ping socket: each read is one ICMP message, echo header first, id the kernel's.
        template <class Ctx>
        bool drain_ping(flow_handle h, flow& fl, Ctx& ctx, std::size_t room, std::size_t& sent) {
            while (sent < room) {
                const ssize_t n = ::recv(fl.socket->native_handle(), frame.data() + guest_headers_len,
                                         frame.size() - guest_headers_len, MSG_DONTWAIT);
                if (n < 0) {
                    if (errno == EINTR) continue;
                    return true; // EAGAIN, or an error the next request will meet again
                }
                if (to_guest(h, fl, static_cast<std::size_t>(n), ctx)) ++sent;
            }
            return false;
        }

        // Raw socket: each read is an IPv4 datagram; only echo replies naming a live flow count.
        template <class Ctx>
        bool drain_raw(Ctx& ctx, std::size_t room, std::size_t& sent) {
            std::array<std::byte, wire::ipv4::header_len + 40> header{}; // the largest IPv4 header
            while (sent < room) {
                // Read the IPv4 header and the ICMP message apart, so the message lands where the
                // guest's frame wants it: scatter into a header buffer and the frame.
                std::array<iovec, 2> iov{{{header.data(), 0}, {frame.data() + guest_headers_len, frame.size() - guest_headers_len}}};
                // The IPv4 header's length varies; peek its first byte to split exactly.
                std::byte first{};
                const ssize_t peeked = ::recv(raw.native_handle(), &first, 1, MSG_DONTWAIT | MSG_PEEK);
                if (peeked < 0) {
                    if (errno == EINTR) continue;
                    return true;
                }
                iov[0].iov_len = (static_cast<std::size_t>(first) & 0x0fu) * 4;
                if (iov[0].iov_len < wire::ipv4::header_len) iov[0].iov_len = wire::ipv4::header_len;
                msghdr msg{};
                msg.msg_iov = iov.data();
                msg.msg_iovlen = iov.size();
                const ssize_t n = ::recvmsg(raw.native_handle(), &msg, MSG_DONTWAIT);
                if (n < 0) {
                    if (errno == EINTR) continue;
                    return true;
                }
                if (static_cast<std::size_t>(n) < iov[0].iov_len + 8) {
                    ++counters.ignored_host_icmp;
                    continue;
                }
                const std::size_t len = static_cast<std::size_t>(n) - iov[0].iov_len;
                const wire::const_bytes message{frame.data() + guest_headers_len, len};
                const wire::ipv4_address from{wire::load_be32(header, 12)};
                const std::uint16_t id = wire::load_be16(message, 4);
                const auto handle = flows.handle_at(static_cast<std::uint16_t>(id ^ id_base));
                flow* fl = handle ? flows.get(*handle) : nullptr;
                if (static_cast<std::uint8_t>(message[0]) != wire::icmp::type::echo_reply || fl == nullptr ||
                    fl->host_id != id || fl->remote != from) {
                    ++counters.ignored_host_icmp;
                    continue;
                }
                if (to_guest(*handle, *fl, len, ctx)) ++sent;
            }
            return false;
        }

        // The echo reply at frame[guest_headers_len, +len) goes to the guest with its own id.
        template <class Ctx>
        bool to_guest(flow_handle h, flow& fl, std::size_t len, Ctx& ctx) {
            const flow_key& key = *flows.key(h);
            if (len < 8 || static_cast<std::uint8_t>(frame[guest_headers_len]) != wire::icmp::type::echo_reply ||
                len > config.mtu - wire::ipv4::header_len) {
                ++counters.ignored_host_icmp;
                return false;
            }
            wire::mutable_bytes message{frame.data() + guest_headers_len, len};
            wire::store_be16(message, 4, key.guest_port);
            wire::store_be16(message, 2, 0);
            wire::store_be16(message, 2, wire::checksum::internet(message));
            const std::size_t total = write_guest_headers(frame, config.gateway_mac, fl.vm_mac, key.remote_address,
                                                          key.guest_address, wire::ipv4::protocol::icmp, len);
            if (total == 0) return false;
            ctx.send_to(fl.port, wire::const_bytes{frame.data(), total});
            ++counters.replies;
            return true;
        }

        void close_all() {
            stopped = true;
            timers.cancel();
            boost::system::error_code ignored;
            raw.close(ignored);
            flows.clear();
        }
    };

    std::shared_ptr<state> state_;
};

} // namespace ankanet::nat
