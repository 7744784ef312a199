/// @file
/// ankanet::nat::tcp_translator — the gateway service that carries the VMs' TCP connections over
/// host sockets: basic_tcp_engine (nat/tcp_engine.hpp) on real sockets (nat/tcp_sockets.hpp),
/// fitted to basic_network.
///
/// Theory of operation. The translator inspects the frames VMs send (it is a vm_frame_inspector):
/// an IPv4/TCP frame that classify() routes `translate` is the engine's, and everything it answers
/// at once (ACKs, duplicate ACKs, RSTs) goes back through ctx.send_to to the sending VM's port.
/// Guest data is held until the network's burst ends (end_burst), then written per flow at once;
/// the ACKs it earns go out then, as far as the reply queue has room, the rest from release_held. The
/// host side is asynchronous: a connect ending, data arriving, send buffer space, a flow's timer.
/// Each only puts the flow on the engine's list of flows with work and wakes the network once
/// (bind_wakeup); the network then calls release_held(ctx, room), in which the engine peeks the
/// sockets straight into frames, at most `room` per call. The flows' timers live on the engine's
/// one timer wheel, behind one steady_timer armed at the wheel's next deadline.
///
/// Where a guest's SYN goes. classify() gives the host-side destination: the address the guest
/// named, or the host's loopback for the gateway's address. The gateway's ports can be mapped
/// elsewhere (map_gateway_port(53, a DNS-over-TCP listener), or any function with
/// set_gateway_port_map()); a mapped port is the operator's choice and is not put to the egress
/// policy. Everything else must pass the egress policy (Egress::allows), or the guest gets an RST.
///
/// Inbound flows. A port forward's accepted connection (nat/inbound.hpp) reaches carry_inbound()
/// through the network's context: the socket layer adopts the socket and the engine opens the
/// connection towards the guest (open_inbound), so the guest's own flows and forwarded ones share
/// one engine, one table and the VM's one flow limit.
///
/// Wakeups. basic_network binds them when its first backend attaches. A program that drives the
/// network's input() itself must call flush() when the translator's wake function is called (give
/// it one with bind_wakeup), or its host-side frames wait. When a VM's port goes, port_removed()
/// resets its flows towards the host, so no host socket is left waiting (CLOSE_WAIT) for a guest
/// that is gone.
///
/// Time. The host side reads std::chrono::steady_clock itself (its events come from the
/// io_context, with no network time at hand); the network's clock is not used for TCP timers.
///
/// Offloads. A guest's super-frame that travelled whole (ctx.offload() has NEEDS_CSUM) is one
/// segment to the engine, its checksum unchecked. Towards a VM whose port takes offload metadata
/// (ctx.takes_offload), the engine sends host data as 64 KiB GSO super-frames (to_guests passes
/// the metadata on with ctx.send_to).
///
/// Not thread-safe: the executor must be the network's (one thread at a time).
#pragma once

#include <ankanet/inspection.hpp>
#include <ankanet/nat/egress.hpp>
#include <ankanet/nat/inbound.hpp>
#include <ankanet/nat/tcp_engine.hpp>
#include <ankanet/nat/tcp_sockets.hpp>
#include <ankanet/nat/translation.hpp>
#include <ankanet/port_handle.hpp>
#include <ankanet/wire/frame.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace ankanet::nat {

/// The TCP translator's counters: the engine's, plus the frames it turned away before the engine.
struct tcp_translator_stats {
    tcp_stats engine; ///< engine
    std::uint64_t martians = 0;  ///< TCP to a destination no host may send to (dropped)
    std::uint64_t fragments = 0; ///< fragmented TCP (dropped, not reassembled)
    std::uint64_t foreign_sources = 0; ///< from a MAC or address not the sending port's (dropped)
};

/// The gateway service for TCP; see the theory of operation above.
/// @tparam Egress the egress policy (nat/egress.hpp) put to every new flow's destination.
/// @tparam SocketLayer the host side: asio_tcp_sockets, or a test's (see tcp_socket_layer).
/// @par Example
/// Among a network's services (it takes TCP before the switch, so its place in the pack is free):
/// @code
/// using tcp_nat = ankanet::nat::tcp_translator<ankanet::nat::runtime_egress>;
/// using my_network = ankanet::basic_network<ankanet::default_network_traits, ankanet::gateway::arp_guard,
///                                           ankanet::dhcp::service, tcp_nat, ankanet::gateway::responder>;
/// my_network net{network_config, arp_guard, dhcp, tcp_nat{io.get_executor(), translation, egress, tcp_limits}, responder};
/// net.service<tcp_nat>().map_gateway_port(53, dns_tcp_listener.endpoint()); // DNS over TCP at the gateway
/// @endcode
template <egress_policy Egress, tcp_socket_layer SocketLayer = asio_tcp_sockets>
class tcp_translator {
public:
    using engine_type = basic_tcp_engine<SocketLayer>; ///< the engine type
    using gateway_port_map = std::function<std::optional<tcp_host_target>(std::uint16_t gateway_port)>; ///< the gateway port map type

    /// Real sockets on `executor` (the network's).
    tcp_translator(boost::asio::any_io_executor executor, translation_config config, Egress egress, tcp_limits limits = {})
        requires std::same_as<SocketLayer, asio_tcp_sockets>
        : tcp_translator(executor, config, std::move(egress), limits,
                         asio_tcp_sockets{executor, std::max<std::size_t>(limits.capacity, 1)}) {}

    /// A socket layer of the caller's; `executor` runs the timer.
    tcp_translator(boost::asio::any_io_executor executor, translation_config config, Egress egress, tcp_limits limits,
                   SocketLayer sockets)
        : state_(std::make_shared<state>(executor, config, std::move(egress), limits, std::move(sockets))) {
        if constexpr (requires { state_->engine.sockets().set_handler(nullptr); }) {
            state_->engine.sockets().set_handler(
                [weak = std::weak_ptr<state>{state_}](std::uint32_t slot, tcp_socket_event event, std::error_code ec) {
                    if (const auto s = weak.lock()) s->socket_event(slot, event, ec);
                });
        }
    }

    /// Move-constructs (memberwise).
    tcp_translator(tcp_translator&&) noexcept = default;
    /// Move assignment.
    tcp_translator& operator=(tcp_translator&&) noexcept = default;

    /// Takes the IPv4/TCP frames classify() routes `translate`; drops martians and fragments.
    template <class Ctx>
    inspection inspect(const wire::parsed_frame& frame, Ctx& ctx) {
        if (!frame.is_ipv4() || frame.protocol != wire::tcp::protocol_number) return inspection::pass;
        const guest_destination to = classify(frame, state_->config, ctx.port_mac()); // also refuses sources not the port's
        if (to.route == guest_route::not_ours) return inspection::pass;
        if (to.route != guest_route::translate) {
            if (to.route == guest_route::martian) ++state_->martians;
            else if (to.route == guest_route::fragment) ++state_->fragments;
            else ++state_->foreign_sources;
            return inspection::drop;
        }
        const auto port = ctx.port();
        if (!port) return inspection::pass;
        state& s = *state_;
        if (s.stopped) return inspection::drop;
        const auto resolve = [&]() -> std::optional<tcp_host_target> {
            const std::uint16_t dport = frame.destination_port;
            if (frame.ip_destination == s.config.subnet.address() && s.config.host_loopback) {
                if (s.port_map) {
                    if (auto mapped = s.port_map(dport)) return mapped;
                }
                for (const auto& [gateway_port, target] : s.port_table) {
                    if (gateway_port == dport) return target;
                }
            }
            if (!s.egress.allows(to.remote, dport, wire::tcp::protocol_number)) return std::nullopt;
            return tcp_host_target{to.remote, dport};
        };
        const auto refusals_before = refusals(s.engine.stats());
        const inspection verdict = s.engine.guest_segment(
            *port, frame, clock_now(), resolve,
            [&ctx](port_handle vm, wire::const_bytes bytes) { ctx.send_to(vm, bytes); }, checksum_pending(ctx));
        if (const auto after = refusals(s.engine.stats()); after.total != refusals_before.total) {
            report_refusal(ctx, frame, after.reason(refusals_before));
        }
        s.after_engine();
        return verdict;
    }

    /// The engine's output: frames to a VM's port through the network's context, with offload
    /// metadata (super-frames) for ports whose backend takes it as it is.
    template <class Ctx>
    struct to_guests {
        Ctx& ctx; ///< ctx
        /// Sends `frame` to `vm`.
        void operator()(port_handle vm, wire::const_bytes frame) const { ctx.send_to(vm, frame); }
        /// Sends `frame` to `vm` with its offload metadata.
        void operator()(port_handle vm, wire::const_bytes frame, const wire::offload& meta) const
            requires requires { ctx.send_to(vm, frame, meta); }
        {
            ctx.send_to(vm, frame, meta);
        }
        /// Whether `vm`'s port takes offload metadata as it is.
        bool takes_offload(port_handle vm) const {
            if constexpr (requires { { ctx.takes_offload(vm) } -> std::convertible_to<bool>; }) return ctx.takes_offload(vm);
            else return false;
        }
    };

    /// Whether the frame's TCP checksum was left to the NIC (a segment that travelled whole with
    /// its virtio-net metadata; a context without offload() never has one).
    template <class Ctx>
    static bool checksum_pending(const Ctx& ctx) noexcept {
        if constexpr (requires { ctx.offload(); }) return ctx.offload().needs_csum;
        else return false;
    }

    /// The network's burst of frames has ended: the guest data segments inspect() held (spans into
    /// the burst's frames) go to their sockets, one gather write per flow. The ACKs they earned go
    /// out now as far as the reply queue has room, the rest through release_held().
    template <class Ctx>
    void end_burst(Ctx& ctx) {
        state& s = *state_;
        std::size_t room = 0;
        if constexpr (requires { { ctx.reply_room() } -> std::convertible_to<std::size_t>; }) room = ctx.reply_room();
        (void)s.engine.end_burst(clock_now(), room, to_guests<Ctx>{ctx});
        s.after_engine();
    }

    /// Hands the network up to `room` frames the host side has made (SYN-ACKs, data, FINs, RSTs).
    template <class Ctx>
    std::size_t release_held(Ctx& ctx, std::size_t room) {
        state& s = *state_;
        s.wake_pending = false;
        const std::size_t sent = s.engine.pump(clock_now(), room, to_guests<Ctx>{ctx});
        s.after_engine(false);
        return sent;
    }

    /// `wake` asks the network to call release_held() (from the executor's thread).
    void bind_wakeup(std::function<void()> wake) {
        state_->wake = std::move(wake);
        state_->wake_pending = false;
        if (state_->engine.has_work()) state_->request_flush();
    }

    /// Sends the guest's SYNs to the gateway's `gateway_port` to `target` instead of host loopback.
    void map_gateway_port(std::uint16_t gateway_port, tcp_host_target target) {
        for (auto& entry : state_->port_table) {
            if (entry.first == gateway_port) {
                entry.second = target;
                return;
            }
        }
        state_->port_table.emplace_back(gateway_port, target);
    }
    /// Same, to a host endpoint (a dns::tcp_listener's endpoint(), say); IPv4 endpoints only.
    void map_gateway_port(std::uint16_t gateway_port, const boost::asio::ip::tcp::endpoint& target) {
        map_gateway_port(gateway_port, tcp_host_target{wire::ipv4_address{target.address().to_v4().to_uint()},
                                                       target.port()});
    }
    /// A function asked first for every SYN to the gateway: a target, or nullopt for the default.
    void set_gateway_port_map(gateway_port_map map) { state_->port_map = std::move(map); }

    /// Carries a connection a port forward accepted into the guest (nat/inbound.hpp): a new flow
    /// whose SYN goes to the guest. Refused: the translator is stopped, the tuple has a flow, the
    /// VM is at its flow limit or the table is full (the socket is then left in `request`).
    std::error_code carry_inbound(inbound_tcp&& request)
        requires requires(SocketLayer& l, boost::asio::ip::tcp::socket&& s) { l.adopt(std::uint32_t{}, std::move(s)); }
    {
        state& s = *state_;
        if (s.stopped) return std::make_error_code(std::errc::operation_canceled);
        const std::error_code ec = s.engine.open_inbound(
            request.vm, request.vm_mac, request.guest_address, request.guest_port, request.remote_address,
            request.remote_port, clock_now(),
            [&](std::uint32_t slot) { return s.engine.sockets().adopt(slot, std::move(request.socket)); });
        s.after_engine();
        return ec;
    }

    /// The network is stopping: every flow is reset on the host side and the timer cancelled, so
    /// the io_context runs out of work; later SYNs are dropped.
    void stop() {
        state_->stopped = true;
        state_->engine.reset_all();
        state_->timer.cancel();
        state_->timer_armed = false;
    }

    /// The network removed a VM's port: its flows are reset on the host side and forgotten.
    void port_removed(wire::mac_address mac) { state_->engine.drop_vm(mac); }

    /// What it counted so far.
    tcp_translator_stats stats() const {
        return tcp_translator_stats{state_->engine.stats(), state_->martians, state_->fragments, state_->foreign_sources};
    }
    /// Flows open now.
    std::size_t flows() const noexcept { return state_->engine.size(); }
    /// Bytes per flow at full capacity: engine (table, timer, FIFO) plus the socket layer's slot.
    double bytes_per_flow() const noexcept {
        double socket = 0;
        if constexpr (requires { SocketLayer::bytes_per_flow(); }) socket = static_cast<double>(SocketLayer::bytes_per_flow());
        return state_->engine.bytes_per_flow() + socket;
    }
    /// The engine.
    engine_type& engine() noexcept { return state_->engine; }
    /// The egress.
    Egress& egress() noexcept { return state_->egress; }

private:
    static std::chrono::steady_clock::time_point clock_now() noexcept { return std::chrono::steady_clock::now(); }

    // The engine's refusal counters, to tell which one a SYN moved.
    struct refusal_counts {
        std::uint64_t egress, vm_limit, full, open, total;
        std::string_view reason(const refusal_counts& before) const noexcept {
            if (egress != before.egress) return "egress policy";
            if (vm_limit != before.vm_limit) return "flow limit per VM";
            if (full != before.full) return "flow table full";
            return "socket could not be opened";
        }
    };
    static refusal_counts refusals(const tcp_stats& t) noexcept {
        return {t.refused_egress, t.refused_vm_limit, t.refused_table_full, t.refused_open,
                t.refused_egress + t.refused_vm_limit + t.refused_table_full + t.refused_open};
    }
    // Reports a refused SYN to the network's observer, at most once a second (report_limiter).
    template <class Ctx>
    void report_refusal(Ctx& ctx, const wire::parsed_frame& frame, std::string_view reason) {
        std::uint64_t suppressed = 0;
        if (state_->refusal_reports.admit(clock_now(), suppressed)) {
            ctx.notify(flow_refused_event{ctx.port_name(), wire::tcp::protocol_number, frame.ip_destination,
                                          frame.destination_port, reason, suppressed});
        }
    }

    struct state : std::enable_shared_from_this<state> {
        state(boost::asio::any_io_executor executor, const translation_config& c, Egress e, const tcp_limits& limits,
              SocketLayer sockets)
            : config(c), egress(std::move(e)), engine(c, limits, std::move(sockets), clock_now()), timer(executor) {}

        ~state() { engine.reset_all(); }

        void socket_event(std::uint32_t slot, tcp_socket_event event, std::error_code ec) {
            engine.socket_event(slot, event, ec);
            after_engine();
        }

        /// After the engine ran: wake the network if there is work, re-arm the timer if needed.
        void after_engine(bool wake_on_work = true) {
            if (wake_on_work && engine.has_work()) request_flush();
            const auto next = engine.next_deadline();
            if (!next || stopped) return;
            if (timer_armed && *next >= armed_for) return;
            timer_armed = true;
            armed_for = *next;
            timer.expires_at(*next);
            timer.async_wait([weak = this->weak_from_this()](const boost::system::error_code& error) {
                const auto self = weak.lock();
                if (!self || error == boost::asio::error::operation_aborted) return;
                self->timer_armed = false;
                self->engine.advance(clock_now());
                self->after_engine();
            });
        }

        void request_flush() {
            if (wake_pending || !wake) return;
            wake_pending = true;
            wake();
        }

        translation_config config;
        Egress egress;
        engine_type engine;
        boost::asio::steady_timer timer;
        std::chrono::steady_clock::time_point armed_for{};
        bool timer_armed = false;
        bool wake_pending = false;
        bool stopped = false; // stop(): no new flow, no timer
        report_limiter refusal_reports;
        std::function<void()> wake;
        gateway_port_map port_map;
        std::vector<std::pair<std::uint16_t, tcp_host_target>> port_table;
        std::uint64_t martians = 0;
        std::uint64_t fragments = 0;
        std::uint64_t foreign_sources = 0;
    };

    std::shared_ptr<state> state_;
};

} // namespace ankanet::nat
