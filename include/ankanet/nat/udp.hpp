/// @file
/// ankanet::nat::udp_translator — guests' UDP over host sockets.
///
/// Theory of operation. A flow is one guest address and port talking to one remote address and
/// port (flow_table key), carried by one connected host UDP socket. A guest datagram the
/// translators take (see translation.hpp: outside the subnet, or the gateway standing for host
/// loopback) is checked (length, checksum when the guest set one) and then:
///   - its flow exists: its payload is queued for the flow's socket;
///   - else the egress policy judges the host-side destination; a refusal answers ICMP
///     "communication administratively prohibited" and is counted and reported (rate-limited).
///     Allowed: a socket is opened, bound to the guest's source port where that port is free on
///     the host (so a protocol that carries its port inside, or a peer that expects symmetric ports,
///     still works) or to an ephemeral one, connected to the destination, and the flow is added —
///     unless the VM is at its flow limit or the table is full (refused and counted: other VMs
///     keep their share) — and the payload queued.
/// Guest → host, batched per burst. The queue holds spans into the guest's frames, not copies: the
/// network keeps every frame of a burst valid until its end_burst (network.hpp, theory of operation
/// 8), and there end_burst(ctx) sends each flow's queued datagrams, in the guest's order, with one
/// sendmmsg whose iovecs point into the frames (MSG_DONTWAIT). A datagram the kernel refuses is
/// dropped and counted, as a router would: a full socket buffer (EAGAIN, ENOBUFS) drops the rest of
/// the flow's batch; a pending socket error (the ICMP error of an earlier datagram, which the send
/// reports and clears) drops that one datagram, the rest go on, and the flow is marked so its error
/// queue is read. The queue holds up to tx_queue_depth datagrams (a port's burst); a longer burst
/// handed over by hand sends what is queued when the queue fills.
/// Host → guest: each socket waits for readability (Asio async_wait); a readable socket puts its flow
/// on the ready list and wakes the network, whose release_held(ctx, room) serves the ready flows in
/// turn: each visit reads up to rx_batch datagrams with one recvmmsg, straight into the payload
/// areas of as many frames towards the guest (from the remote as the guest addressed it — the
/// gateway for host loopback), fills in their headers and hands them over; a flow that gave
/// datagrams goes to the back of the list, one whose socket is empty (EAGAIN) leaves it and waits
/// again. Fairness: no flow reads more than a batch while others wait, and the translator hands over
/// at most per_turn_limit datagrams per turn of the event loop; beyond that it yields (release_held
/// returns short) and posts its next turn behind the handlers already queued, the VMs' ports among
/// them. A datagram longer than the guest's MTU allows is dropped and counted (fragmenting towards
/// the guest is left for later; passt drops too).
/// ICMP errors the host hears for a flow (IP_RECVERR: port unreachable from a closed port, host
/// unreachable, fragmentation needed) are read from the socket's error queue (MSG_ERRQUEUE) and
/// relayed to the guest as the matching ICMP error quoting its datagram's headers, so `nc -u` and
/// DNS clients see "connection refused" as they would on a real network. The error queue is read
/// when a read fails with the socket's error, and when a readable socket (or one whose send
/// reported an error) turns out to hold no datagram: the error that woke it may already have been
/// reported to a send.
/// Timeouts (RFC 4787 REQ-5: at least 2 minutes, 5 recommended): a flow that has had a reply lives
/// `bidirectional_timeout` (default 180 s) after its last datagram; one that has not, only
/// `one_way_timeout` (30 s: a scan or a lost peer costs little). One wheel, one steady_timer.
/// Inbound flows (nat/inbound.hpp): a port forward reads a new client's first datagram on its
/// listener and hands over a socket bound to the listener's address and port and connected to the
/// client; carry_inbound() adopts it as a flow keyed by the tuple as the guest sees it (the client
/// as remote_as_seen() shows it: the gateway for host loopback). That is the key the guest's
/// answers produce in from_guest(), so they leave through the adopted socket, from the port the
/// client wrote to, and the client's next datagrams (the kernel prefers the connected socket to the
/// listener) come in as any flow's. The egress policy is not asked (the host's forward let the
/// client in); the VM's flow limit and the table's capacity are, so a forward's clients cannot take
/// another VM's share. An existing flow with that key is never replaced. It starts as a flow that
/// has had a reply (the client spoke first): the guest is its server and may answer late, and only
/// this socket sends from the port the client knows.
///
/// Limits. Fixed capacity, no allocation per datagram (the receive frames, the send queue and the
/// message headers are the translator's, allocated once: rx_batch frames of the MTU, about 48 KiB at
/// MTU 1500 and at most 1 MiB at the largest; the flow's state is in its slot; opening a flow opens
/// a socket, nothing more). Not thread-safe: one translator per network, on the network's executor.
#pragma once

#include <ankanet/clock.hpp>
#include <ankanet/inspection.hpp>
#include <ankanet/nat/detail/host_events.hpp>
#include <ankanet/nat/egress.hpp>
#include <ankanet/nat/flow_table.hpp>
#include <ankanet/nat/inbound.hpp>
#include <ankanet/nat/translation.hpp>
#include <ankanet/port_handle.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/udp.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>

#include <linux/errqueue.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
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

/// Limits and timeouts of the UDP translator.
struct udp_limits {
    std::size_t capacity = 4096;          ///< UDP flows at once
    std::size_t max_flows_per_vm = 1024;  ///< 0: the whole capacity
    std::size_t max_vms = 256; ///< VM port indexes below this may open flows
    std::chrono::seconds one_way_timeout{30}; ///< idle time that closes a flow that never had a reply
    std::chrono::seconds bidirectional_timeout{180}; ///< idle time that closes a flow that had a reply
};

/// What the UDP translator did.
struct udp_counters {
    std::uint64_t guest_datagrams = 0;    ///< carried guest → host
    std::uint64_t host_datagrams = 0;     ///< carried host → guest
    std::uint64_t flows_opened = 0; ///< flows opened
    std::uint64_t flows_expired = 0; ///< flows closed by their timeout
    std::uint64_t flows_inbound = 0;      ///< forwards' clients adopted by carry_inbound() (not in flows_opened)
    std::uint64_t refused_egress = 0;     ///< new flows the egress policy refused
    std::uint64_t refused_limit = 0;      ///< new flows over the VM's limit or the table's capacity
    std::uint64_t refused_socket = 0;     ///< new flows whose host socket could not be opened or connected
    std::uint64_t dropped_malformed = 0;  ///< bad length or checksum
    std::uint64_t dropped_martian = 0;    ///< to 127/8, 0/8, multicast or class E
    std::uint64_t dropped_fragment = 0; ///< dropped fragment
    std::uint64_t dropped_spoofed = 0;    ///< not from the port's MAC, or from no address a VM of the subnet has
    std::uint64_t dropped_send = 0;       ///< the host socket would not take it (buffer full, error)
    std::uint64_t dropped_too_long = 0;   ///< a host datagram longer than the guest's MTU allows
    std::uint64_t icmp_relayed = 0;       ///< ICMP errors from the host relayed to a guest
    std::uint64_t batches_sent = 0;       ///< sendmmsg calls: one per flow per burst, another after a refusal
    std::uint64_t batches_received = 0;   ///< recvmmsg calls that read datagrams
};

/// @tparam Egress models egress_policy: where new flows may go.
template <egress_policy Egress>
class udp_translator {
public:
    /// A translator running host sockets on `executor`.
    udp_translator(boost::asio::any_io_executor executor, translation_config config, Egress egress, udp_limits limits = {})
        : state_(std::make_shared<state>(std::move(executor), config, std::move(egress), limits)) {}

    /// Move-constructs (memberwise).
    udp_translator(udp_translator&&) noexcept = default;
    /// Move assignment.
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

    /// The burst whose datagrams inspect() queued has ended: sends each flow's datagrams with one
    /// sendmmsg (see the theory of operation). The frames inspect() was handed must be intact until
    /// this returns (basic_network's contract); a caller driving the translator by hand calls it
    /// after its inspect() calls.
    template <class Ctx>
    void end_burst(Ctx&) { state_->send_queued(); }

    /// Adopts a forward's client as a flow (see nat/inbound.hpp): its key is the tuple as the guest
    /// sees it (request.vm, guest_address:guest_port, remote_address:remote_port), the one the
    /// guest's answers produce, and its host side request.socket (bound to the forward's address
    /// and port, connected to the client, on the network's executor), which the translator takes.
    /// Datagrams from the client reach the guest from remote_address:remote_port; the guest's
    /// answers leave through the socket. The egress policy is not asked.
    /// @return empty when adopted. Otherwise why not, and the socket stays in the request:
    /// std::errc::operation_canceled (the translator is stopped); flow_errc::flow_exists (a flow
    /// with that key is in the table; it is left as it is); flow_errc::vm_limit, table_full or
    /// unknown_vm (counted in refused_limit); the socket is not open or will not be made
    /// non-blocking (counted in refused_socket).
    std::error_code carry_inbound(inbound_udp&& request) { return state_->adopt(std::move(request)); }

    /// Sends what the host has sent for the guests, at most `room` frames.
    template <class Ctx>
    std::size_t release_held(Ctx& ctx, std::size_t room) { return state_->release(ctx, room); }

    /// Sets the function the translator calls when it has frames for the guests.
    void bind_wakeup(std::function<void()> wake) { state_->wake.bind(std::move(wake)); }
    /// Closes every flow's socket and the timer: the network is stopping.
    void stop() { state_->close_all(); }

    /// What it counted so far.
    const udp_counters& stats() const noexcept { return state_->counters; }
    /// The flow count.
    std::size_t flow_count() const noexcept { return state_->flows.size(); }
    /// The egress.
    const Egress& egress() const noexcept { return state_->egress; }

    /// Guest datagrams queued for the end of a burst, at most (a port's largest burst): one more
    /// sends what is queued first.
    static constexpr std::size_t tx_queue_depth = 64;
    /// Datagrams one recvmmsg reads at most (fewer where that many frames of the MTU would pass
    /// rx_budget bytes, see rx_batch()).
    static constexpr std::size_t rx_batch_limit = 32;
    /// RX budget
    static constexpr std::size_t rx_budget = std::size_t{1} << 20;
    /// Datagrams towards guests handed over per turn of the event loop, at most.
    static constexpr std::size_t per_turn_limit = 64;
    /// Datagrams one recvmmsg reads at most: rx_batch_limit, fewer for a jumbo MTU.
    std::size_t rx_batch() const noexcept { return state_->rx_count; }

private:
    struct flow {
        flow(boost::asio::any_io_executor executor, port_handle p, wire::mac_address mac)
            : socket(std::move(executor)), port(p), vm_mac(mac) {}
        boost::asio::ip::udp::socket socket;
        port_handle port;
        wire::mac_address vm_mac;
        bool replied = false;  // the remote has answered: the longer timeout applies
        bool waiting = false;  // an async_wait is pending on the socket
        bool check_errors = false; // read the error queue if the socket holds no datagram
    };

    /// A guest datagram waiting for the end of its burst: its payload in the guest's frame.
    struct queued_datagram {
        flow_handle flow;
        wire::const_bytes payload;
    };

    /// What one visit of a ready flow found.
    enum class visit { drained, more };

    struct state : std::enable_shared_from_this<state> {
        state(boost::asio::any_io_executor ex, translation_config c, Egress e, udp_limits l)
            : executor(ex), config(c), egress(std::move(e)), limits(l),
              flows(table_config(l)),
              ready(flows.capacity()), timers(ex, flows.capacity(), std::chrono::milliseconds{100}),
              frame(guest_headers_len + wire::udp::header_len + 0xffff),
              max_payload(c.mtu > wire::ipv4::header_len + wire::udp::header_len ? c.mtu - wire::ipv4::header_len - wire::udp::header_len : 0),
              rx_stride(guest_headers_len + wire::udp::header_len + max_payload),
              rx_count(std::clamp<std::size_t>(rx_budget / rx_stride, 1, rx_batch_limit)),
              rx_frames(rx_count * rx_stride), rx_iov(rx_count), rx_msgs(rx_count) {
            if (l.max_flows_per_vm != 0) flows.set_vm_limits(l.max_flows_per_vm);
            // Datagram i is read into frame i's payload area; the headers are written around it.
            for (std::size_t i = 0; i < rx_count; ++i) {
                rx_iov[i] = iovec{rx_frames.data() + i * rx_stride + guest_headers_len + wire::udp::header_len, max_payload};
                rx_msgs[i].msg_hdr = msghdr{};
                rx_msgs[i].msg_hdr.msg_iov = &rx_iov[i];
                rx_msgs[i].msg_hdr.msg_iovlen = 1;
            }
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
        std::vector<std::byte> frame; // one frame towards a guest (refusals, ICMP errors), built in place
        // Host → guest: rx_count frames of rx_stride bytes, recvmmsg writing the payloads in place.
        std::size_t max_payload;      // the most UDP payload a frame of the guest's MTU carries
        std::size_t rx_stride;
        std::size_t rx_count;
        std::vector<std::byte> rx_frames;
        std::vector<iovec> rx_iov;
        std::vector<mmsghdr> rx_msgs;
        std::size_t turn_left = per_turn_limit; // datagrams this turn of the event loop may still read
        bool yielded = false;                   // the next turn is posted
        // Guest → host: this burst's datagrams, and one flow's batch of message headers.
        std::array<queued_datagram, tx_queue_depth> tx_queue{};
        std::size_t tx_count = 0;
        std::array<iovec, tx_queue_depth> tx_iov{};
        std::array<mmsghdr, tx_queue_depth> tx_msgs{};
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
            // The payload stays where the guest's frame has it until end_burst sends it.
            if (tx_count == tx_queue.size()) send_queued();
            tx_queue[tx_count++] = queued_datagram{*handle, *payload};
            schedule(*handle, *flows.get(*handle));
            return inspection::taken;
        }

        // Sends the queued datagrams: each flow's, in their order, with one sendmmsg.
        void send_queued() {
            for (std::size_t first = 0; first < tx_count; ++first) {
                const flow_handle h = tx_queue[first].flow;
                if (h.generation == 0) continue; // sent with an earlier flow's batch
                std::size_t k = 0;
                for (std::size_t i = first; i < tx_count; ++i) {
                    if (tx_queue[i].flow != h) continue;
                    const auto payload = tx_queue[i].payload;
                    tx_iov[k] = iovec{const_cast<std::byte*>(payload.data()), payload.size()}; // sendmmsg only reads
                    tx_msgs[k].msg_hdr = msghdr{};
                    tx_msgs[k].msg_hdr.msg_iov = &tx_iov[k];
                    tx_msgs[k].msg_hdr.msg_iovlen = 1;
                    ++k;
                    tx_queue[i].flow = flow_handle{};
                }
                flow* fl = flows.get(h);
                if (fl == nullptr) { // expired, or stopped, since the burst began
                    counters.dropped_send += k;
                    continue;
                }
                send_batch(h, *fl, k);
            }
            tx_count = 0;
        }

        void send_batch(flow_handle h, flow& fl, std::size_t k) {
            std::size_t at = 0;
            while (at < k) {
                const int n = ::sendmmsg(fl.socket.native_handle(), tx_msgs.data() + at, static_cast<unsigned>(k - at),
                                         MSG_DONTWAIT | MSG_NOSIGNAL);
                ++counters.batches_sent;
                if (n > 0) {
                    counters.guest_datagrams += static_cast<std::size_t>(n);
                    at += static_cast<std::size_t>(n);
                    continue;
                }
                if (n < 0 && errno == EINTR) continue;
                if (n == 0 || errno == EAGAIN || errno == ENOBUFS) { // (EWOULDBLOCK is EAGAIN)
                    counters.dropped_send += k - at; // the buffer is full: so it is for the rest
                    return;
                }
                // The socket's pending error (an earlier datagram's ICMP error) refused this one,
                // and is cleared: the rest may go. The error queue holds what the guest should hear.
                ++counters.dropped_send;
                ++at;
                fl.check_errors = true;
                if (ready.push(h.index, h.to_u64())) wake.request();
            }
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

        std::error_code adopt(inbound_udp&& request) {
            if (stopped) return std::make_error_code(std::errc::operation_canceled);
            if (!request.socket.is_open()) {
                ++counters.refused_socket;
                return std::make_error_code(std::errc::bad_file_descriptor);
            }
            // The key from_guest() builds for the guest's answer: from its address and port, to
            // the client's address (as the guest is shown it) and port.
            const flow_key key{request.guest_address, request.remote_address, request.guest_port, request.remote_port,
                               request.vm.index(), wire::ipv4::protocol::udp};
            auto inserted = flows.insert(key, executor, request.vm, request.vm_mac);
            if (!inserted) {
                if (inserted.error() != flow_errc::flow_exists) ++counters.refused_limit;
                return inserted.error();
            }
            boost::system::error_code ec;
            request.socket.non_blocking(true, ec);
            if (ec) {
                ++counters.refused_socket;
                flows.erase(*inserted);
                return ec;
            }
            const int on = 1; // ICMP errors (the client's port closed) reach the guest, as for its own flows
            (void)::setsockopt(request.socket.native_handle(), IPPROTO_IP, IP_RECVERR, &on, sizeof on);
            flow& fl = *flows.get(*inserted);
            fl.socket = std::move(request.socket);
            // The client has spoken (its first datagram opened the forward's door): the flow starts
            // as one that has had a reply and lives bidirectional_timeout. The guest is the server
            // here and may be quiet a while before it answers or speaks again; once the flow is
            // gone, its next datagram would open a flow of its own from another host port, which
            // the client would not take. A scan of the forward costs the VM's own flow budget.
            fl.replied = true;
            ++counters.flows_inbound;
            schedule(*inserted, fl);
            wait(*inserted, fl);
            return {};
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
                                     f->check_errors = true; // nothing read since it woke
                                     if (self->ready.push(h.index, h.to_u64())) self->wake.request();
                                 });
        }

        template <class Ctx>
        std::size_t release(Ctx& ctx, std::size_t room) {
            wake.answered();
            std::size_t sent = 0;
            while (sent < room && turn_left > 0 && !ready.empty()) {
                const auto h = flow_handle::from_u64(ready.front());
                flow* fl = flows.get(h);
                if (fl == nullptr) { // expired meanwhile
                    ready.pop(h.index);
                    continue;
                }
                if (read_batch(h, *fl, ctx, room, sent) == visit::drained) {
                    ready.pop(h.index);
                    wait(h, *fl);
                } else {
                    ready.rotate(); // the others go first
                }
            }
            if (ready.empty()) {
                turn_left = per_turn_limit;
            } else if (turn_left == 0 && !yielded) {
                // This turn's share is used: the next turn comes after what the loop has queued.
                yielded = true;
                boost::asio::post(executor, [weak = this->weak_from_this()] {
                    const auto self = weak.lock();
                    if (!self || self->stopped) return;
                    self->yielded = false;
                    self->turn_left = per_turn_limit;
                    self->wake.request();
                });
            }
            return sent;
        }

        // One visit of a ready flow: one recvmmsg of up to rx_count datagrams straight into the
        // payload areas of the receive frames, within the room and the turn's share. `more` when
        // it read something (datagrams or an error), `drained` when the socket is empty.
        template <class Ctx>
        visit read_batch(flow_handle h, flow& fl, Ctx& ctx, std::size_t room, std::size_t& sent) {
            const std::size_t want = std::min({rx_count, room - sent, turn_left});
            int n = -1;
            do {
                n = ::recvmmsg(fl.socket.native_handle(), rx_msgs.data(), static_cast<unsigned>(want), MSG_DONTWAIT | MSG_TRUNC, nullptr);
            } while (n < 0 && errno == EINTR);
            if (n < 0) {
                const bool empty = errno == EAGAIN; // EWOULDBLOCK is the same on Linux
                // Empty, having read nothing since it woke or since a send reported an error: the
                // error queue may hold what woke it. A read that failed with the socket's error:
                // the error queue holds it.
                if (empty && !fl.check_errors) return visit::drained;
                fl.check_errors = false;
                const auto relayed = relay_error(h, fl, ctx);
                if (!relayed) return visit::drained; // nothing there either
                --turn_left;
                if (*relayed) ++sent;
                fl.check_errors = true; // more errors may be queued
                return visit::more;
            }
            ++counters.batches_received;
            fl.check_errors = false;
            const flow_key& key = *flows.key(h);
            turn_left -= static_cast<std::size_t>(n);
            for (int i = 0; i < n; ++i) {
                const auto len = static_cast<std::size_t>(rx_msgs[static_cast<std::size_t>(i)].msg_len);
                if (len > max_payload) { // MSG_TRUNC: the datagram's real length
                    ++counters.dropped_too_long;
                    continue;
                }
                const wire::mutable_bytes out{rx_frames.data() + static_cast<std::size_t>(i) * rx_stride, rx_stride};
                const std::size_t total = write_guest_headers(out, config.gateway_mac, fl.vm_mac, key.remote_address,
                                                              key.guest_address, wire::ipv4::protocol::udp,
                                                              wire::udp::header_len + len);
                wire::udp::packet<wire::mutable_bytes> udp{out.subspan(guest_headers_len, wire::udp::header_len + len)};
                udp.set_source_port(key.remote_port);
                udp.set_destination_port(key.guest_port);
                udp.set_length(static_cast<std::uint16_t>(wire::udp::header_len + len));
                udp.fill_checksum(key.remote_address, key.guest_address);
                ctx.send_to(fl.port, wire::const_bytes{out.data(), total});
                ++counters.host_datagrams;
                ++sent;
            }
            if (!fl.replied) fl.replied = true;
            schedule(h, fl);
            return visit::more;
        }

        // Reads one error from the socket's error queue and, if the host heard it by ICMP, tells
        // the guest. Returns none when the queue was empty, else whether a frame was sent. An
        // error that is not in the queue (a plain socket error) is consumed by the failed read and
        // ignored.
        template <class Ctx>
        std::optional<bool> relay_error(flow_handle h, flow& fl, Ctx& ctx) {
            std::array<std::byte, 64> data{};
            alignas(cmsghdr) std::array<std::byte, 256> control{};
            iovec iov{data.data(), data.size()};
            msghdr msg{};
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.data();
            msg.msg_controllen = control.size();
            const ssize_t n = ::recvmsg(fl.socket.native_handle(), &msg, MSG_ERRQUEUE | MSG_DONTWAIT);
            if (n < 0) return std::nullopt;
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
            tx_count = 0; // the frames it points into are the network's
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
