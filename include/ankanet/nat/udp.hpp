// ankanet::nat::udp_translator — guests' UDP over host sockets.
//
// Theory of operation. A flow is one guest address and port talking to one remote address and
// port (flow_table key), carried by one connected host UDP socket. A guest datagram the
// translators take (see translation.hpp: outside the subnet, or the gateway standing for host
// loopback) is checked (length, checksum when the guest set one) and then:
//   - its flow exists: its payload is sent on the flow's socket (MSG_DONTWAIT: a full socket
//     buffer drops the datagram, counted, as a router would);
//   - else the egress policy judges the host-side destination; a refusal answers ICMP
//     "communication administratively prohibited" and is counted and reported (rate-limited).
//     Allowed: a socket is opened, bound to the guest's source port where that port is free on
//     the host (so a protocol that carries its port inside, or a peer that expects symmetric ports,
//     still works) or to an ephemeral one, connected to the destination, and the flow is added —
//     unless the VM is at its flow limit or the table is full (refused and counted: other VMs
//     keep their share).
// Replies: each socket waits for readability (Asio async_wait); a readable socket puts its flow on
// the ready list and wakes the network, whose release_held(ctx, room) reads every ready socket
// with recv straight into the payload of a frame towards the guest (from the remote as the guest
// addressed it — the gateway for host loopback), until the socket is empty or the room is used.
// A datagram longer than the guest's MTU allows is dropped and counted (fragmenting towards the
// guest is left for later; passt drops too).
// ICMP errors the host hears for a flow (IP_RECVERR: port unreachable from a closed port, host
// unreachable, fragmentation needed) are read from the socket's error queue and relayed to the
// guest as the matching ICMP error quoting its datagram's headers, so `nc -u` and DNS clients
// see "connection refused" as they would on a real network.
// Timeouts (RFC 4787 REQ-5: at least 2 minutes, 5 recommended): a flow that has had a reply lives
// `bidirectional_timeout` (default 180 s) after its last datagram; one that has not, only
// `one_way_timeout` (30 s: a scan or a lost peer costs little). One wheel, one steady_timer.
//
// Limits. Fixed capacity, no allocation per datagram (the frame buffer is the translator's, the
// flow's state is in its slot; opening a flow opens a socket, nothing more). Not thread-safe: one
// translator per network, on the network's executor.
#pragma once

#include <ankanet/clock.hpp>
#include <ankanet/inspection.hpp>
#include <ankanet/nat/detail/host_events.hpp>
#include <ankanet/nat/egress.hpp>
#include <ankanet/nat/flow_table.hpp>
#include <ankanet/nat/translation.hpp>
#include <ankanet/port_handle.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/udp.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/udp.hpp>

#include <linux/errqueue.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace ankanet::nat {

struct udp_limits {
    std::size_t capacity = 4096;          ///< UDP flows at once
    std::size_t max_flows_per_vm = 1024;  ///< 0: the whole capacity
    std::size_t max_vms = 256;
    std::chrono::seconds one_way_timeout{30};
    std::chrono::seconds bidirectional_timeout{180};
};

struct udp_counters {
    std::uint64_t guest_datagrams = 0;    ///< carried guest → host
    std::uint64_t host_datagrams = 0;     ///< carried host → guest
    std::uint64_t flows_opened = 0;
    std::uint64_t flows_expired = 0;
    std::uint64_t refused_egress = 0;     ///< new flows the egress policy refused
    std::uint64_t refused_limit = 0;      ///< new flows over the VM's limit or the table's capacity
    std::uint64_t refused_socket = 0;     ///< new flows whose host socket could not be opened or connected
    std::uint64_t dropped_malformed = 0;  ///< bad length or checksum
    std::uint64_t dropped_martian = 0;    ///< to 127/8, 0/8, multicast or class E
    std::uint64_t dropped_fragment = 0;
    std::uint64_t dropped_spoofed = 0;    ///< not from the port's MAC, or from no address a VM of the subnet has
    std::uint64_t dropped_send = 0;       ///< the host socket would not take it (buffer full, error)
    std::uint64_t dropped_too_long = 0;   ///< a host datagram longer than the guest's MTU allows
    std::uint64_t icmp_relayed = 0;       ///< ICMP errors from the host relayed to a guest
};

/// @tparam Egress models egress_policy: where new flows may go.
template <egress_policy Egress>
class udp_translator {
public:
    udp_translator(boost::asio::any_io_executor executor, translation_config config, Egress egress, udp_limits limits = {})
        : state_(std::make_shared<state>(std::move(executor), config, std::move(egress), limits)) {}

    udp_translator(udp_translator&&) noexcept = default;
    udp_translator& operator=(udp_translator&&) noexcept = default;
    ~udp_translator() {
        if (state_) state_->close_all();
    }

    /// Takes the UDP datagrams this translator carries (see the theory of operation).
    template <class Ctx>
    inspection inspect(const wire::parsed_frame& frame, Ctx& ctx) {
        if (!frame.is_ipv4() || frame.protocol != wire::ipv4::protocol::udp) return inspection::pass;
        return state_->from_guest(frame, ctx);
    }

    /// Sends what the host has sent for the guests, at most `room` frames.
    template <class Ctx>
    std::size_t release_held(Ctx& ctx, std::size_t room) { return state_->release(ctx, room); }

    void bind_wakeup(std::function<void()> wake) { state_->wake.bind(std::move(wake)); }
    /// Closes every flow's socket and the timer: the network is stopping.
    void stop() { state_->close_all(); }

    const udp_counters& stats() const noexcept { return state_->counters; }
    std::size_t flow_count() const noexcept { return state_->flows.size(); }
    const Egress& egress() const noexcept { return state_->egress; }

private:
    struct flow {
        flow(boost::asio::any_io_executor executor, port_handle p, wire::mac_address mac)
            : socket(std::move(executor)), port(p), vm_mac(mac) {}
        boost::asio::ip::udp::socket socket;
        port_handle port;
        wire::mac_address vm_mac;
        bool replied = false;  // the remote has answered: the longer timeout applies
        bool waiting = false;  // an async_wait is pending on the socket
    };

    struct state : std::enable_shared_from_this<state> {
        state(boost::asio::any_io_executor ex, translation_config c, Egress e, udp_limits l)
            : executor(ex), config(c), egress(std::move(e)), limits(l),
              flows(table_config(l)),
              ready(flows.capacity()), timers(ex, flows.capacity(), std::chrono::milliseconds{100}),
              frame(guest_headers_len + wire::udp::header_len + 0xffff) {
            if (l.max_flows_per_vm != 0) flows.set_vm_limits(l.max_flows_per_vm);
        }

        static typename flow_table<flow>::config table_config(const udp_limits& l) {
            typename flow_table<flow>::config c;
            c.capacity = l.capacity;
            c.max_vms = l.max_vms;
            return c;
        }

        boost::asio::any_io_executor executor;
        translation_config config;
        Egress egress;
        udp_limits limits;
        flow_table<flow> flows;
        detail::ready_list ready;
        detail::wheel_timer timers;
        detail::wakeup wake;
        std::vector<std::byte> frame; // one frame towards a guest, built in place
        udp_counters counters;
        report_limiter refusals;
        bool stopped = false; // stop(): no new flow, no timer

        template <class Ctx>
        inspection from_guest(const wire::parsed_frame& f, Ctx& ctx) {
            const auto where = classify(f, config, ctx.port_mac());
            switch (where.route) {
            case guest_route::not_ours: return inspection::pass;
            case guest_route::martian: ++counters.dropped_martian; return inspection::drop;
            case guest_route::fragment: ++counters.dropped_fragment; return inspection::drop;
            case guest_route::spoofed: ++counters.dropped_spoofed; return inspection::drop;
            case guest_route::translate: break;
            }
            const auto payload = datagram_payload(f);
            if (!payload) {
                ++counters.dropped_malformed;
                return inspection::drop;
            }
            const auto port = ctx.port();
            if (!port) return inspection::drop;
            const flow_key key{f.ip_source, f.ip_destination, f.source_port, f.destination_port, port->index(),
                               wire::ipv4::protocol::udp};
            auto handle = flows.find(key);
            if (!handle) {
                handle = open(key, where.remote, *port, ctx);
                if (!handle) return inspection::taken;
            }
            flow& fl = *flows.get(*handle);
            const ssize_t sent = ::send(fl.socket.native_handle(), payload->data(), payload->size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            if (sent < 0) ++counters.dropped_send;
            else ++counters.guest_datagrams;
            schedule(*handle, fl);
            return inspection::taken;
        }

        // The UDP payload, when the header's length fits the datagram and the checksum (if any) holds.
        static std::optional<wire::const_bytes> datagram_payload(const wire::parsed_frame& f) {
            const auto l4 = f.ip_payload();
            const wire::ipv4::packet<wire::const_bytes> ip{f.ip};
            if (ip.total_length() < f.ip_header_len || ip.total_length() > f.ip.size()) return std::nullopt;
            const auto datagram = l4.first(ip.total_length() - f.ip_header_len);
            auto parsed = wire::udp::packet<wire::const_bytes>::checked(datagram);
            if (!parsed) return std::nullopt;
            if (parsed->checksum() != 0 && !parsed->verify_checksum(f.ip_source, f.ip_destination)) return std::nullopt;
            return datagram.subspan(wire::udp::header_len, parsed->length() - wire::udp::header_len);
        }

        template <class Ctx>
        std::optional<flow_handle> open(const flow_key& key, wire::ipv4_address remote, port_handle port, Ctx& ctx) {
            if (stopped) return std::nullopt;
            if (!egress.allows(remote, key.remote_port, wire::ipv4::protocol::udp)) {
                ++counters.refused_egress;
                refuse(ctx, key, "egress policy", true);
                return std::nullopt;
            }
            auto inserted = flows.insert(key, executor, port, ctx.port_mac());
            if (!inserted) {
                ++counters.refused_limit;
                refuse(ctx, key, inserted.error() == flow_errc::vm_limit ? "flow limit per VM" : "flow table full", false);
                return std::nullopt;
            }
            flow& fl = *flows.get(*inserted);
            if (const auto ec = connect(fl.socket, key, remote)) {
                ++counters.refused_socket;
                const std::string reason = "socket: " + ec.message();
                refuse(ctx, key, reason, false);
                flows.erase(*inserted);
                return std::nullopt;
            }
            ++counters.flows_opened;
            wait(*inserted, fl);
            return *inserted;
        }

        static std::error_code connect(boost::asio::ip::udp::socket& socket, const flow_key& key, wire::ipv4_address remote) {
            namespace ip = boost::asio::ip;
            boost::system::error_code ec;
            socket.open(ip::udp::v4(), ec);
            if (!ec) socket.non_blocking(true, ec);
            if (ec) return ec;
            const int on = 1;
            (void)::setsockopt(socket.native_handle(), IPPROTO_IP, IP_RECVERR, &on, sizeof on);
            // The guest's port where the host has it free; any port otherwise.
            socket.bind(ip::udp::endpoint{ip::udp::v4(), key.guest_port}, ec);
            if (ec) socket.bind(ip::udp::endpoint{ip::udp::v4(), 0}, ec);
            if (!ec) socket.connect(ip::udp::endpoint{ip::address_v4{remote.to_u32()}, key.remote_port}, ec);
            return ec;
        }

        template <class Ctx>
        void refuse(Ctx& ctx, const flow_key& key, std::string_view reason, bool answer) {
            if (answer) {
                // ICMP communication administratively prohibited, quoting the guest's headers.
                const auto n = write_guest_icmp_error(frame, config.gateway_mac, ctx.port_mac(), config.subnet.address(),
                                                      key.guest_address, wire::icmp::type::destination_unreachable,
                                                      wire::icmp::unreachable_code::communication_prohibited,
                                                      quoted_headers(key, 0));
                if (n != 0) ctx.answer(wire::const_bytes{frame.data(), n});
            }
            std::uint64_t suppressed = 0;
            if (refusals.admit(std::chrono::steady_clock::now(), suppressed)) {
                ctx.notify(flow_refused_event{ctx.port_name(), wire::ipv4::protocol::udp, key.remote_address, key.remote_port,
                                              reason, suppressed});
            }
        }

        // The guest's IPv4 and UDP headers as it sent them, rebuilt from the key, for an ICMP quote.
        std::array<std::byte, 28> quoted_headers(const flow_key& key, std::size_t payload_len) const {
            std::array<std::byte, 28> q{};
            wire::ipv4::repr ip;
            ip.source = key.guest_address;
            ip.destination = key.remote_address;
            ip.protocol = wire::ipv4::protocol::udp;
            ip.payload_len = wire::udp::header_len + payload_len;
            (void)ip.emit(q);
            wire::udp::packet<wire::mutable_bytes> udp{wire::mutable_bytes{q}.subspan(wire::ipv4::header_len)};
            udp.set_source_port(key.guest_port);
            udp.set_destination_port(key.remote_port);
            udp.set_length(static_cast<std::uint16_t>(std::min<std::size_t>(wire::udp::header_len + payload_len, 0xffff)));
            return q;
        }

        void schedule(flow_handle h, const flow& fl) {
            const auto timeout = fl.replied ? limits.bidirectional_timeout : limits.one_way_timeout;
            timers.wheel().schedule(h.index, std::chrono::steady_clock::now() + timeout);
            timers.arm(this->weak_from_this(), [this](std::uint32_t index) { expire(index); });
        }

        void expire(std::uint32_t index) {
            const auto h = flows.handle_at(index);
            if (!h) return;
            flows.get(*h)->socket.close();
            flows.erase(*h);
            ++counters.flows_expired;
        }

        void wait(flow_handle h, flow& fl) {
            if (fl.waiting) return;
            fl.waiting = true;
            fl.socket.async_wait(boost::asio::ip::udp::socket::wait_read,
                                 [weak = this->weak_from_this(), h](const boost::system::error_code& ec) {
                                     const auto self = weak.lock();
                                     if (!self) return;
                                     flow* f = self->flows.get(h);
                                     if (f == nullptr) return; // expired meanwhile
                                     f->waiting = false;
                                     if (ec) return;
                                     if (self->ready.push(h.index, h.to_u64())) self->wake.request();
                                 });
        }

        template <class Ctx>
        std::size_t release(Ctx& ctx, std::size_t room) {
            wake.answered();
            std::size_t sent = 0;
            ready.serve(
                flows, room, sent, [&](flow_handle h, flow& fl) { return drain(h, fl, ctx, room, sent); },
                [&](flow_handle h, flow& fl) { wait(h, fl); });
            return sent;
        }

        // Reads the flow's socket into frames until it is empty (true) or the room is used (false).
        template <class Ctx>
        bool drain(flow_handle h, flow& fl, Ctx& ctx, std::size_t room, std::size_t& sent) {
            const flow_key& key = *flows.key(h);
            const std::size_t max_payload = config.mtu - wire::ipv4::header_len - wire::udp::header_len;
            constexpr std::size_t at = guest_headers_len + wire::udp::header_len;
            while (sent < room) {
                const ssize_t n = ::recv(fl.socket.native_handle(), frame.data() + at, frame.size() - at, MSG_DONTWAIT | MSG_TRUNC);
                if (n < 0) {
                    if (errno == EAGAIN) return true; // EWOULDBLOCK is the same on Linux
                    if (errno == EINTR) continue;
                    if (relay_error(h, fl, ctx)) ++sent;
                    continue;
                }
                const auto len = static_cast<std::size_t>(n);
                if (len > max_payload || len > frame.size() - at) {
                    ++counters.dropped_too_long;
                    continue;
                }
                const std::size_t total = write_guest_headers(frame, config.gateway_mac, fl.vm_mac, key.remote_address,
                                                              key.guest_address, wire::ipv4::protocol::udp,
                                                              wire::udp::header_len + len);
                wire::udp::packet<wire::mutable_bytes> udp{wire::mutable_bytes{frame}.subspan(guest_headers_len, wire::udp::header_len + len)};
                udp.set_source_port(key.remote_port);
                udp.set_destination_port(key.guest_port);
                udp.set_length(static_cast<std::uint16_t>(wire::udp::header_len + len));
                udp.fill_checksum(key.remote_address, key.guest_address);
                ctx.send_to(fl.port, wire::const_bytes{frame.data(), total});
                ++counters.host_datagrams;
                ++sent;
                if (!fl.replied) fl.replied = true;
                schedule(h, fl);
            }
            return false;
        }

        // Reads one error from the socket's error queue and, if the host heard it by ICMP, tells
        // the guest. Returns whether a frame was sent. An error that is not in the queue (a plain
        // socket error) is consumed by the failed recv and ignored.
        template <class Ctx>
        bool relay_error(flow_handle h, flow& fl, Ctx& ctx) {
            std::array<std::byte, 64> data{};
            alignas(cmsghdr) std::array<std::byte, 256> control{};
            iovec iov{data.data(), data.size()};
            msghdr msg{};
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.data();
            msg.msg_controllen = control.size();
            const ssize_t n = ::recvmsg(fl.socket.native_handle(), &msg, MSG_ERRQUEUE | MSG_DONTWAIT);
            if (n < 0) return false;
            for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
                if (c->cmsg_level != IPPROTO_IP || c->cmsg_type != IP_RECVERR) continue;
                sock_extended_err err{};
                std::memcpy(&err, CMSG_DATA(c), sizeof err);
                if (err.ee_origin != SO_EE_ORIGIN_ICMP) return false;
                // Only the errors write_guest_icmp_error() builds: another type would be framed as
                // time exceeded.
                if (err.ee_type != wire::icmp::type::destination_unreachable && err.ee_type != wire::icmp::type::time_exceeded) {
                    return false;
                }
                const flow_key& key = *flows.key(h);
                const auto quote = quoted_headers(key, static_cast<std::size_t>(n));
                std::array<std::byte, 28 + 64> quoted{};
                std::memcpy(quoted.data(), quote.data(), quote.size());
                std::memcpy(quoted.data() + quote.size(), data.data(), static_cast<std::size_t>(n));
                const std::size_t len = write_guest_icmp_error(
                    frame, config.gateway_mac, fl.vm_mac, key.remote_address, key.guest_address, err.ee_type, err.ee_code,
                    wire::const_bytes{quoted.data(), quote.size() + static_cast<std::size_t>(n)},
                    err.ee_type == wire::icmp::type::destination_unreachable ? static_cast<std::uint16_t>(err.ee_info) : 0);
                if (len == 0) return false;
                ctx.send_to(fl.port, wire::const_bytes{frame.data(), len});
                ++counters.icmp_relayed;
                return true;
            }
            return false;
        }

        void close_all() {
            stopped = true;
            timers.cancel();
            flows.for_each([](flow_handle, const flow_key&, flow& f) {
                boost::system::error_code ignored;
                f.socket.close(ignored);
            });
            flows.clear();
        }
    };

    std::shared_ptr<state> state_;
};

} // namespace ankanet::nat
