/// @file
/// ankanet::basic_network — one VM network: its VM ports, the learning switch between them, and the
/// gateway services on the switch's gateway port. The one place the parts are composed.
///
/// Theory of operation. A pure core plus thin Asio glue.
///
/// The core, input(port, frame, now, emit), takes one frame a VM sent and calls emit(port, frame)
/// for every frame that leaves towards a VM. No sockets, no clock, no threads: it can be driven from
/// a unit test with a manual clock, or from a hypervisor that moves frames itself. Per frame:
///  1. The port must exist (dense handle: index plus generation, so a stale handle is refused) and
///     its link must be up (set_link); a network whose Traits say `unplugged` (disconnected mode)
///     passes nothing; the frame must be a valid size for the network's MTU. Every drop is counted.
///  2. The frame is parsed once (wire::parsed_frame); every service sees that one view.
///  3. A port whose MAC is not known yet (QEMU and vfkit guests choose their own) registers the
///     source MAC of its first frame; a MAC another port holds is refused and the port detached.
///  4. Services that inspect VM frames may drop it (the ARP guard), or take it for the gateway without
///     switching it (the DHCP service takes client messages, so no other VM sees them); the first
///     service that does not pass it decides.
///  5. The learning switch forwards it: to VM ports through emit, and to the gateway port when it is
///     for the gateway MAC or flooded. A frame reaching the gateway is offered to each service in
///     the order of the Services pack until one takes it.
///  6. Services answer into a fixed-size reply queue, never into the switch: after the switch has
///     returned, the queued replies enter the switch from the gateway port — or, for a reply a
///     service addressed to one port (ctx.answer, ctx.send_to), go to that port alone. So nothing re-enters the
///     switch from inside its own callback, and a reply never outlives the buffer it was built in.
/// One `now` (steady and wall time, from the Clock policy) serves a whole burst.
///  7. A service may hold a reply back until something outside the data path has happened — the
///     DHCP service holds an ACK until its lease is on disk. flush(now, emit) hands such replies to
///     the switch from the gateway port, through the same reply queue. The glue calls it when a
///     service wakes it (from any thread): the wakeup is posted to the first backend's executor.
///  8. Frames come in bursts: every frame a port's receive loop delivers in one turn of the event
///     loop (backend/port.hpp), all of which stay in memory until the burst ends. When it ends,
///     each service's end_burst(ctx) hook runs, and the replies it queued are drained. The lifetime
///     contract: a frame handed to a service's inspect() (or handle()) stays valid and unchanged
///     until the end_burst that follows has returned. So a service may keep spans into the frames
///     instead of copying them, and act on a whole batch once: send a flow's datagrams in one
///     sendmmsg whose iovecs point into the frames (nat::udp_translator), acknowledge once per burst.
///     The core has the same contract: input() is a burst of one frame (it calls end_burst itself,
///     so a caller feeding frames one by one has nothing to do); burst_input() adds a frame to a
///     burst that the caller ends with end_burst(now, emit), keeping every frame it gave alive and
///     unchanged until then.
///  9. Offload metadata (wire/offload.hpp: the virtio-net header — checksum unfinished, a TCPv4 GSO
///     super-frame of up to 64 KiB). A service may queue a reply with it (ctx(frame, offload),
///     ctx.answer(frame, offload), ctx.send_to(port, frame, offload)); the queue keeps it beside the
///     frame (all clear: none), and a GSO reply may be up to wire::offload::max_frame_len bytes
///     whatever the MTU. Leaving the network, in one place (emit_frame) for every path: an Emit
///     also invocable as emit(port, frame, const wire::offload&) (an `offload_emitter`) is called so
///     for every frame that carries metadata, and as emit(port, frame) for all others; an Emit that
///     takes bytes only never sees metadata: the network finishes the checksum and cuts the
///     super-frame itself (wire::segment) and emits each plain, valid segment. So callers written
///     before offloads keep working unchanged. The glue's emit is an offload_emitter: it passes the
///     metadata to the port's backend (backend::port::send(frame, offload), which is
///     backend::send_offloaded: natively to a TAP opened with a virtio-net header, cut in software
///     for any other backend). The capture tap (set_frame_tap) sees a reply as it was queued.
///     Entering the network, a frame with metadata (burst_input(port, frame, offload, ...); the glue
///     passes what the port's backend reported for it, backend::port::received_offload()) takes
///     one of two ways:
///      * A guest's TCPv4 segment or super-frame whose only pending work is its TCP checksum, cut
///        into segments that each fit the MTU (wire::is_tcpv4_offload) travels whole: the services
///        see it as it is, with the metadata in ctx.offload() (the TCP translator then takes its
///        payload in one write and skips the unfinished checksum), the switch passes it to another
///        VM with its metadata (one write to a TAP with a virtio-net header, cut in software for
///        any other backend), and the uplink sends it so. This is the guest kernel's TSO end to
///        end: one system call per 64 KiB instead of one per MTU-sized frame. Counted in
///        offload_whole. Other services only read headers of TCP frames, which are the same.
///      * Any other frame whose one pending work is a checksum (a guest's UDP datagram) is
///        finished in a copy that lives until the burst ends (an arena of a burst's worth of
///        MTU-sized frames, at most 1 MiB, made on first use), so it keeps its place in the
///        caller's burst and the UDP translator still sends a burst's datagrams in one sendmmsg.
///      * Anything else (segments longer than the MTU, a VLAN tag, a full arena) is made plain
///        before anything sees it: its checksum finished and a super-frame cut into
///        segments in software, each segment a burst of its own (burst_input, then end_burst: the
///        segments are built one at a time in one buffer, which the burst lifetime contract would
///        not allow to be reused within a burst), so the earlier frames of the caller's burst are
///        acted on at the first segment's end_burst. A piece longer than the MTU is then dropped as
///        any plain frame would be; metadata the network cannot apply (a malformed super-frame)
///        drops the frame, counted in dropped_bad_offload.
///     Leaving towards a guest, services may build super-frames themselves for ports that take
///     them (service_context::takes_offload: the TCP translator sends host data in 64 KiB GSO
///     frames so).
///     Cost when unused: one "is it plain" test per frame; the fallback's two segment buffers
///     (wire::offload::max_frame_len bytes each) are allocated on first use, and the reply queue's
///     storage grows (once, to what the largest burst of super-frames needs, never past
///     reply_queue_depth × 64 KiB) only when a queued super-frame does not fit the MTU-sized slots.
///
/// The glue, attach(name, backend, mac) / connect(port, backend), binds any frame_backend to a port:
/// its receive loop feeds burst_input() with one clock reading per burst and calls end_burst() when
/// the burst ends, emit sends to the target port's backend, and a backend that closes detaches its
/// port. The io_context that runs the backends is the caller's. stop() closes every backend.
///
/// Services. Each element of the Services pack is a gateway service (see `gateway_service`): it
/// handles frames for the gateway, or inspects frames from VMs, or both, and may offer optional
/// hooks (lease authority, port removal, polling, event binding) that the network finds at compile
/// time. A service the pack does not name is not compiled into the program.
///
/// Uplink (bridge mode: Traits::uplink). The gateway port may lead to a LAN: frames the switch sends
/// to the gateway port that no service takes leave through emit(uplink_port(), frame), and the LAN's
/// frames enter with uplink_input(), switched from the gateway port — their sources learned there,
/// never over a VM's own MAC (sticky entries) — to the VMs. A unicast frame from the LAN for a MAC no
/// port holds is dropped and counted (uplink_not_for_vm), never flooded: a VM sees the LAN's
/// broadcasts and its own traffic, not the host's or another VM's. A LAN frame sourced from a VM's
/// MAC is dropped (uplink_source_is_vm): on this network the MAC is the VM's, however long it has
/// been quiet. A plain frame longer than the network's MTU allows is dropped as a VM port's would be. The LAN's frames may carry offload
/// metadata (a packet socket's GRO or TSO super-frame), which travels with them to the VM's backend
/// (natively to a TAP with a virtio-net header, cut in software for any other), as replies' does.
/// The glue binds a backend with connect_uplink(). MACs the LAN is known to use can be held with
/// reserve_mac(): drawn MACs avoid them and a port asking for one is refused. A drawn MAC (random
/// or stable) the switch has learned on the uplink is such a MAC: add_port holds it for the LAN,
/// reports a mac_collision_event and draws another, so a VM never takes a LAN device's address.
///
/// Events (ports attached, refused, detached, links changed, and whatever the services report) go to
/// the Traits' observer, which the default traits make a no-op the compiler removes.
///
/// Costs. input() allocates nothing once warm (the reply queue is allocated at construction), finds
/// its port by index, and reads the clock not at all. Ports are added and removed outside of input()
/// only. Not thread-safe: one network, one thread (its backends' executor).
#pragma once

#include <ankanet/backend/backend.hpp>
#include <ankanet/backend/port.hpp>
#include <ankanet/clock.hpp>
#include <ankanet/config.hpp>
#include <ankanet/error.hpp>
#include <ankanet/inspection.hpp>
#include <ankanet/port_handle.hpp>
#include <ankanet/l2/mac_randomizer.hpp>
#include <ankanet/l2/mac_registry.hpp>
#include <ankanet/l2/switch.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/offload.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace ankanet {

// --- ports ---------------------------------------------------------------------------------------

/// How a port's MAC is chosen.
class port_mac {
public:
    /// The MAC its first frame carries (QEMU and vfkit guests choose their own).
    static port_mac from_first_frame() noexcept { return port_mac{first_frame_t{}}; }
    /// A fresh random locally administered MAC no other port holds.
    static port_mac random() noexcept { return port_mac{random_t{}}; }
    /// The VM's stable MAC, derived from its UUID and the network's host secret: the same after
    /// every restart (needs network_config::mac_secret).
    static port_mac stable(l2::vm_uuid vm) noexcept { return port_mac{vm}; }
    /// A MAC the operator chose.
    static port_mac custom(mac_address mac) noexcept { return port_mac{mac}; }

    /// The custom MAC.
    const mac_address* custom_mac() const noexcept { return std::get_if<mac_address>(&choice_); }
    /// The uuid.
    const l2::vm_uuid* uuid() const noexcept { return std::get_if<l2::vm_uuid>(&choice_); }
    /// Whether it is random.
    bool is_random() const noexcept { return std::holds_alternative<random_t>(choice_); }
    /// Whether it is first frame.
    bool is_first_frame() const noexcept { return std::holds_alternative<first_frame_t>(choice_); }

private:
    struct first_frame_t {};
    struct random_t {};
    using choice = std::variant<first_frame_t, random_t, l2::vm_uuid, mac_address>;
    explicit port_mac(choice c) noexcept : choice_(c) {}
    choice choice_;
};

/// A port's counters, kept by the network (the switch and the backend keep their own).
struct network_port_counters {
    std::uint64_t frames_in = 0;          ///< frames the VM sent
    std::uint64_t frames_out = 0;         ///< frames emitted towards the VM
    std::uint64_t dropped_link_down = 0;  ///< in or out while its link was down
    std::uint64_t dropped_unplugged = 0;  ///< in a network that passes nothing (disconnected)
    std::uint64_t dropped_by_service = 0; ///< a service refused it (an ARP claim on another's address)
    std::uint64_t dropped_no_mac = 0;     ///< before its MAC was known, a frame without a unicast source
    std::uint64_t dropped_bad_size = 0;   ///< shorter than an Ethernet header or longer than the MTU allows
    std::uint64_t dropped_bad_offload = 0; ///< in with offload metadata that could not be applied in software
};

/// Network-wide counters.
struct network_counters {
    std::uint64_t frames_in = 0;            ///< frames received from VMs
    std::uint64_t frames_to_gateway = 0;    ///< frames the switch delivered to the gateway port, or a service took
    std::uint64_t gateway_unclaimed = 0;    ///< of those, frames no service took
    std::uint64_t replies = 0;              ///< frames the services answered with
    std::uint64_t replies_dropped = 0;      ///< replies that found the queue full or were too long
    std::uint64_t dropped_unknown_port = 0; ///< input() with a handle of no port
    std::uint64_t dropped_unplugged = 0;    ///< frames a disconnected network did not pass
    std::uint64_t dropped_link_down = 0;    ///< frames in or out of a port whose link was down
    std::uint64_t dropped_bad_size = 0;     ///< input() frames shorter than an Ethernet header or longer than the MTU allows
    std::uint64_t ports_refused = 0;        ///< add_port() refusals and first-frame MACs refused (see port_refused_event)
    std::uint64_t dropped_bad_offload = 0;  ///< frames in with offload metadata that could not be applied in software
    std::uint64_t offload_segmented = 0;    ///< frames with metadata the network finished or cut in software (in or out)
    std::uint64_t offload_whole = 0;        ///< frames in with metadata that travelled on as they were (TCPv4, theory of operation 9)
    std::uint64_t offload_errors = 0;       ///< frames going out whose metadata wire::segment refused (not emitted)
    std::uint64_t uplink_frames_in = 0;     ///< frames the uplink brought in (bridge mode)
    std::uint64_t uplink_frames_out = 0;    ///< frames sent to the uplink
    std::uint64_t uplink_not_for_vm = 0;    ///< uplink unicast frames for a MAC no port holds: not flooded to VMs
    std::uint64_t uplink_dropped_bad_size = 0; ///< uplink frames shorter than an Ethernet header, or longer than the MTU allows
    std::uint64_t uplink_source_is_vm = 0;  ///< uplink frames sourced from a VM's MAC (a LAN device using or forging it)
};

// --- events ----------------------------------------------------------------------------------------
// The views in events are valid only during the observer's call.

/// A port was added (add_port(), attach()); port_detached_event ends it.
struct port_added_event {
    std::string_view port; ///< the port's name
    std::optional<mac_address> mac;  ///< none: taken from its first frame
};
/// A backend was connected to a port (attach(), connect()).
struct port_attached_event {
    std::string_view port; ///< the port's name
    std::size_t mtu = 0;             ///< the backend's
    std::optional<mac_address> mac;  ///< none: taken from its first frame
};
/// A port registered the source MAC of its first frame.
struct port_mac_learned_event {
    std::string_view port; ///< the port's name
    mac_address mac; ///< the MAC it registered
};
/// A port (or the MAC it asked for) was refused; `reason` says why, naming both VMs on a conflict.
struct port_refused_event {
    std::string_view port; ///< the port's name
    std::string_view reason; ///< why, in words
};
/// A port was removed. `backend` holds its backend's counters when it had one.
struct port_detached_event {
    std::string_view port; ///< the port's name
    std::error_code reason; ///< why it went: remove_port()'s `why`, or the backend's error
    std::optional<backend::counters> backend; ///< the backend's counters, when it had one
    l2::port_counters switch_counters; ///< what the switch counted for the port
    network_port_counters counters; ///< what the network counted for the port
};
/// An uplink was connected (connect_uplink(): bridge mode's host interface).
struct uplink_attached_event {
    std::string_view name; ///< the uplink's name
    std::size_t mtu = 0; ///< the uplink backend's MTU
    std::optional<mac_address> mac; ///< the uplink's own (the host interface's)
};
/// The uplink closed (its interface went away, or stop()); the VMs stay, cut off from the LAN.
struct uplink_detached_event {
    std::string_view name; ///< the uplink's name
    std::error_code reason; ///< why it closed: the backend's error, errc::peer_closed when it just ended
    backend::counters counters; ///< the uplink backend's counters
};
/// A MAC drawn for a port (random or stable) was found in use on the LAN behind the uplink (the
/// switch had learned it there): it is held for the LAN (reserve_mac) and another is drawn.
struct mac_collision_event {
    std::string_view port; ///< the port's name
    mac_address mac; ///< the MAC found on the LAN, now held for it
};
/// A port's link (its cable) went up or down.
struct link_changed_event {
    std::string_view port; ///< the port's name
    bool up = false; ///< true: the link is up
};

/// An observer that wants no event: every call compiles to nothing.
struct null_observer {
    /// Ignores every event.
    template <class Event>
    void on(const Event&) noexcept {}
};

/// @par NetworkObserver requirements
/// A default-constructible class with `o.on(e)` overloads for the events it wants: the network's own
/// (port_added_event, port_attached_event, port_mac_learned_event, port_refused_event,
/// port_detached_event, link_changed_event) and the services' (dhcp::lease_event,
/// gateway::arp_conflict_event, ...). An event it has no overload for is not reported to it, so a new
/// kind of event never breaks an observer; a generic `template <class E> void on(const E&)` sees all.
template <class O>
concept network_observer = std::is_class_v<O> && std::default_initializable<O>;

// --- traits -------------------------------------------------------------------------------------

/// The policies of a network that are not services. Derive from it and override what differs.
struct default_network_traits {
    using clock_type = real_clock;          ///< models network_clock
    using observer_type = null_observer;    ///< models network_observer
    static constexpr std::size_t mac_capacity = 4096;    ///< the switch's MAC table
    static constexpr std::size_t reply_queue_depth = 16; ///< gateway replies one input() may queue
    static constexpr bool unplugged = false;             ///< true: the network passes nothing

    /// true: the gateway port is an uplink to a LAN (bridge mode), see "Uplink" at the top of the file.
    static constexpr bool uplink = false;
};

namespace detail {
/// Whether a traits class asks for an uplink (traits not derived from default_network_traits may
/// leave `uplink` out).
template <class T>
consteval bool traits_uplink() {
    if constexpr (requires { { T::uplink } -> std::convertible_to<bool>; }) return T::uplink;
    else return false;
}
} // namespace detail

/// @par NetworkTraits requirements
/// `clock_type` models network_clock, `observer_type` models network_observer, both default
/// constructible; `mac_capacity` is a power of two of at least 8; `reply_queue_depth` at least 1;
/// `unplugged` a bool.
template <class T>
concept network_traits = network_clock<typename T::clock_type> && network_observer<typename T::observer_type> &&
                         std::default_initializable<typename T::clock_type> &&
                         std::default_initializable<typename T::observer_type> &&
                         std::convertible_to<decltype(T::mac_capacity), std::size_t> &&
                         std::convertible_to<decltype(T::reply_queue_depth), std::size_t> &&
                         std::convertible_to<decltype(T::unplugged), bool> && (T::reply_queue_depth >= 1);

// --- services -------------------------------------------------------------------------------------

namespace detail {

/// Stands for the context a network hands its services (basic_network::service_context), to
/// check the service concepts without a network.
struct service_context_archetype {
    void operator()(wire::const_bytes) {}
    void operator()(wire::const_bytes, const wire::offload&) {}
    void answer(wire::const_bytes) {}
    void answer(wire::const_bytes, const wire::offload&) {}
    void send_to(port_handle, wire::const_bytes) {}
    void send_to(port_handle, wire::const_bytes, const wire::offload&) {}
    std::optional<port_handle> port() const { return std::nullopt; }
    network_time now() const { return {}; }
    std::string_view port_name() const { return {}; }
    mac_address port_mac() const { return {}; }
    bool attached(mac_address) const { return false; }
    template <class Event>
    void notify(const Event&) {}
    std::optional<mac_address> lease_holder(ipv4_address) const { return std::nullopt; }
    std::error_code mark_in_use(ipv4_address, mac_address) { return {}; }
};

} // namespace detail

/// An emit callback that also takes a frame's offload metadata: `emit(port, frame, offload)` is
/// called for frames that carry some, `emit(port, frame)` for the others (theory of operation 9).
template <class Emit>
concept offload_emitter = std::invocable<Emit&, port_handle, wire::const_bytes, const wire::offload&>;

/// A service that answers frames the switch delivers to the gateway: `s.handle(frame, ctx)` returns
/// true when the frame was its own (answered through `ctx(reply_bytes)`, or counted and dropped).
template <class S>
concept gateway_frame_handler = requires(S& s, const wire::parsed_frame& f, detail::service_context_archetype& ctx) {
    { s.handle(f, ctx) } -> std::convertible_to<bool>;
};

/// A service that looks at every frame a VM sends before it is switched: `s.inspect(frame, ctx)`
/// returns an `inspection`, or a bool (false: drop).
template <class S>
concept vm_frame_inspector = requires(S& s, const wire::parsed_frame& f, detail::service_context_archetype& ctx) {
    requires std::same_as<decltype(s.inspect(f, ctx)), inspection> || std::convertible_to<decltype(s.inspect(f, ctx)), bool>;
};

/// @par GatewayService requirements
/// A movable type that is a gateway_frame_handler, a vm_frame_inspector, or both. Optional hooks,
/// used when present:
/// - `s.lease_holder(address, now)` → `std::optional<mac_address>` and
///   `s.mark_in_use(address, mac, now)` → `std::error_code`: the network's lease authority (the
///   DHCP server), which other services consult through the context.
/// - `s.port_removed(mac)`: a port that held `mac` is gone (forget what it claimed).
/// - `s.poll(now)`: timers; called by basic_network::poll().
/// - `s.stop()`: the network is stopping: close host sockets and timers (called by stop()).
/// - `s.bind_events(sink)`: called once, from the network's constructor, with a callable that
///   reports any event to the network's observer, for services that report outside of a context.
/// - `s.observe_event(event)`: sees every event reported to the network's observer (its own, and those
///   of the other services: dhcp::lease_event, ...), on the network's thread, after the observer.
/// - `s.release_held(ctx, room)` → `std::size_t`: replies the service held back that may go now,
///   at most `room` of them, answered through `ctx`; called by basic_network::flush().
/// - `s.bind_wakeup(fn)`: `fn` (callable from any thread) asks the network to flush(); bound by the
///   glue when the first backend connects, and unbound (an empty function) when the network goes.
/// - `s.leased_address(mac, now)` → `std::optional<ipv4_address>`: the address `mac` holds a bound
///   lease on (the DHCP service); other services ask through `ctx.leased_address(mac)`.
/// - `s.carry_inbound(request)` → `std::error_code`: carries a flow a host listener started into a
///   guest (nat/inbound.hpp: the TCP and UDP translators); a port forward asks through
///   `ctx.carry_inbound(request)`, which the first service with a hook for that request type gets.
/// - `s.watch_uplink(frame, ctx)`: sees every frame the uplink brings in (Traits::uplink), parsed,
///   before it is switched; it cannot change or stop it (the LAN is a trusted port) and `ctx` has no
///   port. Parsed only when a service has this hook (bridge::address_guard learns DHCP leases here).
/// - `s.end_burst(ctx)`: the burst of frames the service was handed (by inspect() and handle()) has
///   ended; until this call returns, every one of those frames is still valid and unchanged, so the
///   service may have kept spans into them and now act on them all at once. It may answer through
///   `ctx` (up to reply_queue_depth frames, drained after its call); `ctx` has no port (as in
///   flush()): a burst handed to end_burst() by hand may hold frames of several ports. Called after
///   every burst of a port's receive loop, after each input(), and by end_burst(now, emit).
template <class S>
concept gateway_service = std::movable<S> && (gateway_frame_handler<S> || vm_frame_inspector<S>);

template <class S>
concept lease_authority = requires(S& s, const S& cs, ipv4_address a, mac_address m, network_time now) {
    { cs.lease_holder(a, now) } -> std::convertible_to<std::optional<mac_address>>;
    { s.mark_in_use(a, m, now) } -> std::same_as<std::error_code>;
};

namespace detail {
/// Instantiated for each service of a network: a service that is not one fails here, and the
/// compiler's "required from" line names it.
template <class S>
struct checked_service {
    static_assert(gateway_service<S>,
                  "ankanet::basic_network: each Service must model ankanet::gateway_service: a movable type with "
                  "bool handle(const wire::parsed_frame&, Context&) and/or bool inspect(const wire::parsed_frame&, Context&)");
    static constexpr bool value = true;
};
} // namespace detail

// --- the network ----------------------------------------------------------------------------------

/// What every network needs to know, whatever its services.
struct network_config {
    ipv4_prefix subnet{ipv4_address{192, 168, 64, 1}, 24}; ///< its address() is the gateway's
    mac_address gateway_mac = default_gateway_mac; ///< the gateway's own MAC
    std::size_t mtu = backend::default_mtu;     ///< the largest IP packet a frame carries
    bool isolate = false;                       ///< VMs reach the gateway but not each other
    l2::mac_prefix mac_prefix{};                ///< where random and stable MACs are drawn
    std::optional<l2::host_secret> mac_secret;  ///< for port_mac::stable
    std::optional<std::array<std::byte, 16>> switch_hash_key; ///< drawn at random when absent
};

/// One VM network; see the theory of operation at the top of this file.
/// @tparam Traits the clock, observer and sizes (see `network_traits`).
/// @tparam Services the gateway services, offered frames in this order (see `gateway_service`).
/// @par Example
/// @code
/// using my_network = ankanet::basic_network<ankanet::default_network_traits, ankanet::gateway::responder>;
/// my_network net{config, ankanet::gateway::responder{gateway, gateway_mac}};
/// auto vm = net.add_port("vm1", ankanet::port_mac::random());
/// net.input(*vm, frame, clock.now(), [&](ankanet::port_handle to, ankanet::wire::const_bytes f) { send(to, f); });
/// @endcode
/// @par A service that is not one
/// names itself in the error (g++ 12, from tests/modes/not_a_service.cpp):
/// @code
/// network.hpp: In instantiation of 'struct ankanet::detail::checked_service<not_a_service>':
///   required from 'class ankanet::basic_network<ankanet::default_network_traits, not_a_service>'
/// error: static assertion failed: ankanet::basic_network: each Service must model ankanet::gateway_service:
///   a movable type with bool handle(const wire::parsed_frame&, Context&) and/or bool inspect(...)
/// note: no operand of the disjunction is satisfied
/// @endcode
template <class Traits, class... Services>
class basic_network {
    // Checked here rather than in the template head, so that a failure names the type and the
    // requirement it misses (a constraint on the pack would only say the whole fold was false).
    static_assert(network_traits<Traits>,
                  "ankanet::basic_network: Traits must model ankanet::network_traits (clock_type, observer_type, "
                  "mac_capacity, reply_queue_depth, unplugged): derive it from ankanet::default_network_traits");
    static_assert((detail::checked_service<Services>::value && ...));

public:
    using traits_type = Traits; ///< the Traits it was built with
    using clock_type = typename Traits::clock_type; ///< the clock it reads
    using observer_type = typename Traits::observer_type; ///< the NetworkObserver events go to
    using switch_type = l2::basic_learning_switch<Traits::mac_capacity, std::chrono::steady_clock>; ///< the learning switch between the ports

    /// What a service is handed with each frame: the time, the ingress port, a way to answer, to
    /// report events and to ask the lease authority. Valid during the call only.
    class service_context {
    public:
        /// Queues a reply frame; it enters the switch from the gateway port once the current frame
        /// has been switched. Copied: the caller's buffer may be reused at once.
        void operator()(wire::const_bytes frame) { network_.queue_reply(frame, std::nullopt); }
        /// Queues a reply for the port the frame came from, and that port alone, whatever its
        /// destination MAC (a DHCP reply to a client that asked for broadcast reaches no other VM).
        /// Outside of input() (in flush()) there is no such port: it is switched as operator() does.
        void answer(wire::const_bytes frame) { network_.queue_reply(frame, port_); }
        /// Queues a frame for `to` alone; dropped (and counted in replies_dropped) if that port is
        /// gone by the time the queue is drained.
        void send_to(port_handle to, wire::const_bytes frame) { network_.queue_reply(frame, to); }
        /// As the three above, for a frame that carries offload metadata (an unfinished checksum, a
        /// TCPv4 super-frame of up to wire::offload::max_frame_len bytes, segments of gso_size
        /// payload bytes chosen to fit the MTU): the metadata travels with it to an emit that takes
        /// it, and the network segments it in software for one that does not (theory of operation
        /// 9). Metadata validate() refuses is dropped (replies_dropped); all-clear metadata is a
        /// plain reply.
        void operator()(wire::const_bytes frame, const wire::offload& meta) { network_.queue_reply(frame, std::nullopt, meta); }
        /// As answer(frame), with offload metadata.
        void answer(wire::const_bytes frame, const wire::offload& meta) { network_.queue_reply(frame, port_, meta); }
        /// As send_to(to, frame), with offload metadata.
        void send_to(port_handle to, wire::const_bytes frame, const wire::offload& meta) { network_.queue_reply(frame, to, meta); }
        /// Whether frames with offload metadata reach `to` as they are (its backend is a TAP opened
        /// with a virtio-net header): a service then sends it super-frames (GSO) rather than
        /// MTU-sized frames. False for a gone port, or one without a backend (the pure core: the
        /// caller's emit decides, and gets super-frames cut when it is no offload_emitter).
        bool takes_offload(port_handle to) const {
            const port_slot* slot = network_.find(to);
            return slot != nullptr && slot->link && slot->link->accepts_offload();
        }
        /// Replies that can still be queued before the queue is drained (more are dropped).
        std::size_t reply_room() const noexcept { return Traits::reply_queue_depth - network_.reply_count_; }
        /// The port the frame came from (none in flush()).
        std::optional<port_handle> port() const noexcept { return port_; }
        /// The offload metadata the frame came with: all clear, except for a TCPv4 segment or
        /// super-frame that travels whole (theory of operation 9), whose TCP checksum is then
        /// unfinished (the sender's NIC work, not a corruption) and whose payload may exceed the MSS.
        const wire::offload& offload() const noexcept { return offload_; }
        /// The time of the input being handled.
        network_time now() const noexcept { return now_; }
        /// The name of the port the frame came from.
        std::string_view port_name() const noexcept { return port_name_; }
        /// The MAC registered on the port the frame came from: the only source it may use.
        mac_address port_mac() const noexcept { return port_mac_; }
        /// Whether a port of the network (or the gateway) holds `mac` now.
        bool attached(mac_address mac) const { return network_.registry_.contains(mac); }
        /// Reports an event to the network's observer (if it takes events of this type).
        template <class Event>
        void notify(const Event& e) { network_.notify(e); }
        /// The MAC holding a lease on `address` now, from the lease authority (none without one).
        std::optional<mac_address> lease_holder(ipv4_address address) const { return network_.lease_holder(address, now_); }
        /// Tells the lease authority that `mac` uses `address` without a lease (a static guest).
        /// errc::unsupported when there is no lease authority.
        std::error_code mark_in_use(ipv4_address address, mac_address mac) { return network_.mark_in_use(address, mac, now_); }
        /// The address `mac` holds a bound lease on, from the lease authority (none without one).
        std::optional<ipv4_address> leased_address(mac_address mac) const { return network_.leased_address(mac, now_); }
        /// Calls `f(port, name, mac, link_up)` for every port of the network, in slot order (a port
        /// forward looks for the VM it leads into).
        template <class F>
        void for_each_port(F&& f) const {
            for (std::size_t i = 0; i < network_.slots_.size(); ++i) {
                const auto& slot = network_.slots_[i];
                if (!slot.active) continue;
                f(port_handle::make(static_cast<std::uint16_t>(i), slot.generation), std::string_view{slot.name}, slot.mac,
                  slot.link_up);
            }
        }
        /// Hands `request` (a flow a host listener started: nat::inbound_tcp, nat::inbound_udp) to the
        /// first service that carries such requests (a `carry_inbound(Request&&)` hook, returning a
        /// std::error_code); errc::unsupported when no service does.
        template <class Request>
        std::error_code carry_inbound(Request&& request) {
            std::error_code result = errc::unsupported;
            bool carried = false;
            std::apply([&](auto&... s) { ((carried = carried || carry_one(s, request, result)), ...); }, network_.services_);
            return result;
        }

    private:
        template <class S, class Request>
        static bool carry_one(S& s, Request& request, std::error_code& result) {
            if constexpr (requires { { s.carry_inbound(std::move(request)) } -> std::same_as<std::error_code>; }) {
                result = s.carry_inbound(std::move(request));
                return true;
            } else {
                return false;
            }
        }

        friend class basic_network;
        service_context(basic_network& n, network_time now, std::optional<port_handle> port, std::string_view name,
                        mac_address mac, const wire::offload& meta = {}) noexcept
            : network_(n), now_(now), port_(port), port_name_(name), port_mac_(mac), offload_(meta) {}
        basic_network& network_;
        network_time now_;
        std::optional<port_handle> port_;
        std::string_view port_name_;
        mac_address port_mac_;
        wire::offload offload_;
    };

    /// A network with the given configuration and services (moved in, kept in pack order).
    explicit basic_network(network_config config, Services... services);

    basic_network(const basic_network&) = delete; // services and backends point back at it
    basic_network& operator=(const basic_network&) = delete;

    /// Closes every backend still connected; their handlers no longer reach the network.
    ~basic_network() {
        *anchor_ = nullptr;
        // A service's thread may outlive the executor it would post to: it stops waking anyone.
        if (wakeups_bound_) std::apply([](auto&... s) { (bind_wakeup(s, std::function<void()>{}), ...); }, services_);
        for (auto& slot : slots_) {
            if (slot.link) slot.link->close();
        }
        if (uplink_) uplink_->close();
    }

    // --- ports (the pure core) ------------------------------------------------------------------

    /// Adds a port named `name` (what logs call it; unique per network) whose MAC is chosen by `mac`.
    /// Refuses a MAC another port holds (mac_errc::in_use), one no NIC can have, a stable MAC without
    /// a host secret, and a full switch; `why`, when given, then says what in a sentence naming both
    /// VMs on a conflict, and the observer gets a port_refused_event.
    result<port_handle> add_port(std::string name, port_mac mac, std::string* why = nullptr);

    /// Removes a port: its MAC, its switch port and what services learned of it. A port with a
    /// backend is closed first (remove_port is then called again, by its receive loop's end).
    std::error_code remove_port(port_handle port) { return remove_port(port, std::error_code{}); }

    /// Sets a port's link (its cable) up or down. While down nothing enters or leaves it (counted);
    /// its MAC, lease and learned addresses stay. errc::unsupported on a network that passes nothing.
    std::error_code set_link(port_handle port, bool up);

    /// Whether the port's link is up (false for an unknown port).
    bool link_up(port_handle port) const {
        const port_slot* slot = find(port);
        return slot != nullptr && slot->link_up && !Traits::unplugged;
    }

    /// The port's MAC, once known.
    std::optional<mac_address> mac(port_handle port) const {
        const port_slot* slot = find(port);
        return slot ? slot->mac : std::nullopt;
    }
    /// The port's name.
    std::optional<std::string_view> name(port_handle port) const {
        const port_slot* slot = find(port);
        return slot ? std::optional<std::string_view>{slot->name} : std::nullopt;
    }
    /// The port's counters.
    std::optional<network_port_counters> stats(port_handle port) const {
        const port_slot* slot = find(port);
        return slot ? std::optional{slot->counters} : std::nullopt;
    }
    /// The port's switch counters, once it is on the switch.
    std::optional<l2::port_counters> switch_stats(port_handle port) const {
        const port_slot* slot = find(port);
        if (slot == nullptr || !slot->switch_port) return std::nullopt;
        return switch_.stats(*slot->switch_port);
    }
    /// Every port, in slot order.
    std::vector<port_handle> ports() const {
        std::vector<port_handle> all;
        for (std::size_t i = 0; i < slots_.size(); ++i) {
            if (slots_[i].active) all.push_back(port_handle::make(static_cast<std::uint16_t>(i), slots_[i].generation));
        }
        return all;
    }
    /// The number of ports.
    std::size_t port_count() const noexcept { return slots_.size() - free_.size(); }

    // --- the data path (the pure core) ----------------------------------------------------------

    /// Handles one frame `port` sent, at `now`, as a burst of its own: burst_input() then
    /// end_burst(); see the theory of operation. `emit(port_handle, wire::const_bytes)` is called
    /// for each frame that leaves towards a VM; the bytes are valid during the call only, and emit
    /// must not call input(). `frame` need live only during the call. An emit that is also an
    /// offload_emitter gets the frames that carry offload metadata (replies a service queued with
    /// it) as emit(port, frame, offload); one that is not gets them cut and finished in software
    /// (theory of operation 9).
    template <class Emit>
        requires std::invocable<Emit&, port_handle, wire::const_bytes>
    void input(port_handle port, wire::const_bytes frame, network_time now, Emit&& emit) {
        burst_input(port, frame, now, emit);
        end_burst(now, emit);
    }
    /// As above, for a frame that came with offload metadata (a TAP's last_offload()): a guest's
    /// TCPv4 super-frame travels whole, anything else is made plain in software before anything
    /// sees it (theory of operation 9).
    template <class Emit>
        requires std::invocable<Emit&, port_handle, wire::const_bytes>
    void input(port_handle port, wire::const_bytes frame, const wire::offload& meta, network_time now, Emit&& emit) {
        burst_input(port, frame, meta, now, emit);
        end_burst(now, emit);
    }

    /// Handles one frame of a burst, as input() does, without ending the burst: services may keep
    /// spans into `frame` until the burst ends, so its bytes must stay valid and unchanged until the
    /// caller's next end_burst(now, emit) has returned. For a hypervisor that moves frames itself
    /// and hands over several at once (a virtqueue's worth): batching lets services act once per
    /// burst (one sendmmsg per UDP flow). End every burst, and soon: what services batched (guests'
    /// datagrams) waits for it.
    template <class Emit>
        requires std::invocable<Emit&, port_handle, wire::const_bytes>
    void burst_input(port_handle port, wire::const_bytes frame, network_time now, Emit&& emit);

    /// As above, for a frame that came with offload metadata. All-clear metadata: exactly the
    /// above. A TCPv4 segment or super-frame that wire::is_tcpv4_offload() takes: the same, the frame
    /// whole with its metadata (ctx.offload() tells the services). Otherwise the frame's checksum is
    /// finished and a super-frame cut in software, and each resulting frame is a burst of its own
    /// (burst_input, then end_burst), which ends the caller's burst early (its frames must still
    /// stay valid until the caller's end_burst, as above). Metadata that cannot be applied drops
    /// the frame (dropped_bad_offload).
    template <class Emit>
        requires std::invocable<Emit&, port_handle, wire::const_bytes>
    void burst_input(port_handle port, wire::const_bytes frame, const wire::offload& meta, network_time now, Emit&& emit);

    /// Ends the current burst: each service's end_burst(ctx) hook runs (in pack order), and what it
    /// answered is sent through emit as input() does. The frames of the burst may be reused once
    /// this returns. Does nothing when no frame came in since the last end_burst. The glue calls it
    /// at the end of each burst a port's receive loop delivers.
    template <class Emit>
        requires std::invocable<Emit&, port_handle, wire::const_bytes>
    void end_burst(network_time now, Emit&& emit);

    /// The handle emit is called with for a frame that leaves through the uplink (Traits::uplink);
    /// no port ever has it.
    static constexpr port_handle uplink_port() noexcept { return port_handle::make(0xffff, 0); }

    /// Handles one frame the uplink received from the LAN, at `now`, with the offload metadata the
    /// uplink reported for it (see "Uplink" at the top of the file). Frames for VMs go out through
    /// emit as input()'s do; `frame` need live only during the call.
    template <class Emit>
        requires std::invocable<Emit&, port_handle, wire::const_bytes>
    void uplink_input(wire::const_bytes frame, const wire::offload& meta, network_time now, Emit&& emit);
    /// As above, for a frame without offload metadata.
    template <class Emit>
        requires std::invocable<Emit&, port_handle, wire::const_bytes>
    void uplink_input(wire::const_bytes frame, network_time now, Emit&& emit) {
        uplink_input(frame, wire::offload{}, now, emit);
    }

    /// Holds `mac` for `holder`, someone outside the network (a device seen on the LAN): no port
    /// may take it, and drawn and stable MACs avoid it. Refused like a port's MAC (a group or zero
    /// address, or one held already). release_mac() gives it back.
    l2::registry_error reserve_mac(mac_address mac, std::string_view holder) { return registry_.add(mac, holder); }
    /// The holders the network itself names: a MAC drawn for a port but found on the LAN, and the
    /// uplink's own (reserve it so that no VM takes the host's MAC).
    static constexpr std::string_view lan_holder = "a device on the LAN";
    static constexpr std::string_view uplink_holder = "the uplink"; ///< the holder of the uplink's own MAC
    /// Gives back a MAC reserve_mac() held.
    std::error_code release_mac(mac_address mac) { return registry_.remove(mac); }

    /// Runs the services' timers (lease expiry, ...) at `now`. Call it now and then (every few
    /// seconds); nothing on the data path depends on it.
    void poll(network_time now) {
        std::apply([&](auto&... s) { (poll_one(s, now), ...); }, services_);
    }

    /// Sends the replies services held back and may send now (DHCP ACKs whose leases have reached
    /// the disk), through emit as input() does. The glue calls it when a service wakes it; a
    /// program driving the core itself calls it after poll(), or when a service's wakeup fires.
    template <class Emit>
        requires std::invocable<Emit&, port_handle, wire::const_bytes>
    void flush(network_time now, Emit&& emit);

    // --- the Asio glue ----------------------------------------------------------------------------

    /// Adds a port named `name` and binds `link` to it: see connect().
    /// A MAC the backend imposes (vmnet) is used when `mac` is from_first_frame.
    template <backend::frame_backend Backend>
    result<port_handle> attach(std::string name, Backend link, port_mac mac = port_mac::from_first_frame(),
                               std::string* why = nullptr);

    /// Binds `link` to an existing port (added with add_port, e.g. to learn the MAC a TAP must be
    /// created with) and starts its receive loop: its frames are input() with one clock reading per
    /// burst, frames for it are sent to it, and when it closes the port is removed.
    template <backend::frame_backend Backend>
    std::error_code connect(port_handle port, Backend link);

    /// Closes a port's backend (the port is removed when its receive loop ends), or removes a port
    /// that has none.
    void detach(port_handle port);

    /// Closes every backend (each port is removed as its receive loop ends) and has every service
    /// with host resources (the translators' sockets and timers) close them, so the io_context
    /// runs out of work.
    void stop() {
        for (const auto& handle : ports()) detach(handle);
        if (uplink_ && uplink_->running()) uplink_->close();
        std::apply([](auto&... s) { (stop_one(s), ...); }, services_);
    }

    /// Binds `link` to the gateway port as the network's uplink (Traits::uplink) and starts its
    /// receive loop: its frames are uplink_input() with one clock reading per burst, frames for the
    /// LAN are sent to it. When it closes, an uplink_detached_event reports it and the VMs stay, cut
    /// off. errc::unsupported when an uplink is connected already.
    template <backend::frame_backend Backend>
    std::error_code connect_uplink(std::string name, Backend link);

    /// The uplink backend's counters, while one is connected.
    std::optional<backend::counters> uplink_stats() const {
        return uplink_ ? std::optional{uplink_->stats()} : std::nullopt;
    }

    /// Sees every frame a VM sends (at ingress, before any check) and every reply the gateway's
    /// services send: for a capture file. Empty by default.
    void set_frame_tap(std::function<void(wire::const_bytes)> tap) { frame_tap_ = std::move(tap); }

    // --- parts --------------------------------------------------------------------------------------

    /// Whether S is one of Services.
    template <class S>
    static constexpr bool has_service = (std::is_same_v<S, Services> || ...);

    /// The service of type S (which must be one of Services).
    template <class S>
    S& service() noexcept { return std::get<S>(services_); }
    /// The service of type S, read-only.
    template <class S>
    const S& service() const noexcept { return std::get<S>(services_); }

    /// The configuration it was made with.
    const network_config& config() const noexcept { return config_; }
    /// What it counted so far.
    const network_counters& stats() const noexcept { return stats_; }
    /// The switch between the ports (its tables, its counters).
    const switch_type& learning_switch() const noexcept { return switch_; }
    /// The MACs held by ports and reserved (reserve_mac()).
    const l2::mac_registry& registry() const noexcept { return registry_; }
    /// The clock the network reads.
    clock_type& clock() noexcept { return clock_; }
    /// The observer events go to.
    observer_type& observer() noexcept { return observer_; }

private:
    struct port_slot {
        bool active = false;
        bool link_up = true;
        std::uint16_t generation = 0;
        std::string name;
        std::optional<mac_address> mac;
        std::optional<l2::port_id> switch_port;
        network_port_counters counters;
        std::shared_ptr<backend::port> link; ///< the glue's backend, when one is connected
    };

    static typename switch_type::config switch_config(const network_config& c) {
        typename switch_type::config s;
        s.isolated = c.isolate;
        s.hash_key = c.switch_hash_key;
        return s;
    }

    template <class S>
    void bind_events(S& s) {
        if constexpr (requires { s.bind_events([](const auto&) {}); }) {
            s.bind_events([self = this](const auto& event) { self->notify(event); });
        }
    }

    template <class Event>
    void notify(const Event& e) {
        if constexpr (requires { observer_.on(e); }) observer_.on(e);
        std::apply([&](auto&... s) { (observe_one(s, e), ...); }, services_);
    }
    // A service may follow the events of the others (the DNS forwarder names VMs from DHCP leases).
    template <class S, class Event>
    static void observe_one(S& s, const Event& e) {
        if constexpr (requires { s.observe_event(e); }) s.observe_event(e);
    }

    result<port_handle> refuse(std::string_view name, std::error_code ec, std::string* why, std::string reason = {});

    result<mac_address> pick_mac(std::string_view name, const port_mac& mac);

    bool join_switch(port_slot& slot, std::uint16_t index, mac_address mac, std::string* why);

    port_slot* find(port_handle h) noexcept {
        if (h.index() >= slots_.size()) return nullptr;
        port_slot& s = slots_[h.index()];
        return s.active && s.generation == h.generation() ? &s : nullptr;
    }
    const port_slot* find(port_handle h) const noexcept { return const_cast<basic_network*>(this)->find(h); }

    void release_slot(std::uint16_t index);

    std::error_code remove_port(port_handle port, std::error_code why);

    bool adopt_first_source(port_slot& slot, std::uint16_t index, const wire::parsed_frame& frame);

    template <class S>
    static inspection inspect(S& s, const wire::parsed_frame& frame, service_context& ctx) {
        if constexpr (vm_frame_inspector<S>) {
            if constexpr (std::same_as<decltype(s.inspect(frame, ctx)), inspection>) return s.inspect(frame, ctx);
            else return static_cast<bool>(s.inspect(frame, ctx)) ? inspection::pass : inspection::drop;
        } else {
            return inspection::pass;
        }
    }

    /// Offers a frame the switch sent to the gateway port to the services; false when none took it.
    bool to_gateway(const wire::parsed_frame& frame, service_context& ctx);

    static void notify_detached_uplink(basic_network& self, backend::port& from, std::error_code why);

    /// A frame for the gateway port no service took: to the LAN where there is an uplink.
    template <class Emit>
    void to_uplink(wire::const_bytes frame, const wire::offload& meta, Emit& emit) {
        if constexpr (detail::traits_uplink<Traits>()) {
            ++stats_.uplink_frames_out;
            emit_frame(uplink_port(), frame, meta, emit);
        } else {
            (void)frame;
            (void)meta;
            (void)emit;
            ++stats_.gateway_unclaimed;
        }
    }

    template <class S>
    static bool offer(S& s, const wire::parsed_frame& frame, service_context& ctx) {
        if constexpr (gateway_frame_handler<S>) return static_cast<bool>(s.handle(frame, ctx));
        else return false;
    }

    template <class Emit>
    void deliver(l2::port_id out, wire::const_bytes frame, const wire::offload& meta, Emit& emit);

    /// burst_input's body, for a plain frame or one that travels whole with `meta`.
    template <class Emit>
    void switch_in(port_handle port, wire::const_bytes frame, const wire::offload& meta, network_time now, Emit& emit);

    /// Whether a frame with metadata enters as it is (theory of operation 9): a TCPv4 segment or
    /// super-frame whose segments fit the MTU.
    bool travels_whole(wire::const_bytes frame, const wire::offload& meta) const noexcept {
        return wire::is_tcpv4_offload(frame, meta, config_.mtu);
    }

    /// Where every frame leaves the network (theory of operation 9).
    template <class Emit>
    void emit_frame(port_handle to, wire::const_bytes frame, const wire::offload& meta, Emit& emit);

    void queue_reply(wire::const_bytes frame, std::optional<port_handle> target, const wire::offload& meta = {});

    /// A segment buffer of wire::offload::max_frame_len bytes, made on first use: one for frames
    /// coming in, one for frames going out (a reply cut on its way out must not overwrite the
    /// segment a service is still handling).
    /// Room for a copy of `len` bytes that stays valid until the burst ends: a frame whose
    /// checksum the network finishes keeps its place in the caller's burst. The arena (a burst's
    /// worth of MTU-sized frames, at most 1 MiB) is made on first use; empty when it is full.
    wire::mutable_bytes burst_copy(std::size_t len) {
        if (burst_copies_.empty()) {
            const std::size_t frame = backend::max_frame_len(config_.mtu);
            burst_copies_.resize(std::max(frame, std::min(std::size_t{64} * frame, std::size_t{1} << 20)));
        }
        if (burst_copy_used_ + len > burst_copies_.size()) return {};
        const wire::mutable_bytes room{burst_copies_.data() + burst_copy_used_, len};
        burst_copy_used_ += len;
        return room;
    }

    wire::mutable_bytes offload_scratch(std::unique_ptr<std::byte[]>& buffer) {
        if (!buffer) buffer.reset(new std::byte[wire::offload::max_frame_len]);
        return {buffer.get(), wire::offload::max_frame_len};
    }

    template <class Emit>
    void drain_replies(network_time now, Emit& emit);

    std::optional<mac_address> lease_holder(ipv4_address address, network_time now) const;
    template <class S>
    static bool ask_holder(const S& s, ipv4_address address, network_time now, std::optional<mac_address>& holder) {
        if constexpr (lease_authority<S>) {
            holder = s.lease_holder(address, now);
            return true;
        } else {
            return false;
        }
    }

    std::error_code mark_in_use(ipv4_address address, mac_address mac, network_time now);

    std::optional<ipv4_address> leased_address(mac_address mac, network_time now) const {
        std::optional<ipv4_address> address;
        bool asked = false;
        std::apply([&](const auto&... s) { ((asked = asked || ask_leased(s, mac, now, address)), ...); }, services_);
        return address;
    }
    template <class S>
    static bool ask_leased(const S& s, mac_address mac, network_time now, std::optional<ipv4_address>& address) {
        if constexpr (requires { { s.leased_address(mac, now) } -> std::convertible_to<std::optional<ipv4_address>>; }) {
            address = s.leased_address(mac, now);
            return true;
        } else {
            return false;
        }
    }
    template <class S>
    static bool mark_one(S& s, ipv4_address address, mac_address mac, network_time now, std::error_code& result) {
        if constexpr (lease_authority<S>) {
            result = s.mark_in_use(address, mac, now);
            return true;
        } else {
            return false;
        }
    }

    template <class S>
    static void watch_uplink_one(S& s, const wire::parsed_frame& frame, service_context& ctx) {
        if constexpr (requires { s.watch_uplink(frame, ctx); }) s.watch_uplink(frame, ctx);
    }
    template <class S>
    static constexpr bool has_watch_uplink =
        requires(S& s, const wire::parsed_frame& f, service_context& c) { s.watch_uplink(f, c); };
    static constexpr bool watches_uplink = (has_watch_uplink<Services> || ...);

    template <class S>
    static void port_removed(S& s, mac_address mac) {
        if constexpr (requires { s.port_removed(mac); }) s.port_removed(mac);
    }
    template <class S>
    static void stop_one(S& s) {
        if constexpr (requires { s.stop(); }) s.stop();
    }
    template <class S>
    static void poll_one(S& s, network_time now) {
        if constexpr (requires { s.poll(now); }) s.poll(now);
    }
    template <class S>
    void release_one(S& s, service_context& ctx, bool& more) {
        if constexpr (requires { { s.release_held(ctx, std::size_t{}) } -> std::convertible_to<std::size_t>; }) {
            const std::size_t room = Traits::reply_queue_depth - reply_count_;
            if (room == 0 || s.release_held(ctx, room) == room) more = true; // the queue is full: drain, go on
        }
    }
    template <class S, class Emit>
    void end_burst_one(S& s, service_context& ctx, network_time now, Emit& emit) {
        if constexpr (requires { s.end_burst(ctx); }) {
            s.end_burst(ctx);
            drain_replies(now, emit); // each service has the whole reply queue for its batch
        }
    }
    template <class S>
    static void bind_wakeup(S& s, const std::function<void()>& wake) {
        if constexpr (requires { s.bind_wakeup(wake); }) s.bind_wakeup(wake);
    }
    // Services that hold replies wake the network on the executor of its first backend.
    void bind_wakeups(boost::asio::any_io_executor executor) {
        if (wakeups_bound_) return;
        wakeups_bound_ = true;
        const std::function<void()> wake = [executor = std::move(executor), anchor = anchor_] {
            boost::asio::post(executor, [anchor] {
                if (basic_network* self = *anchor) self->flush(self->clock_.now(), self->sender());
            });
        };
        std::apply([&](auto&... s) { (bind_wakeup(s, wake), ...); }, services_);
    }

    /// The clock, read once per burst of frames from the backends.
    network_time burst_now() {
        if (!burst_clock_read_) {
            burst_time_ = clock_.now();
            burst_clock_read_ = true;
        }
        return burst_time_;
    }

    /// The glue's emit: to the target port's backend, with the metadata when a frame has some.
    struct port_sender {
        basic_network* self;
        void operator()(port_handle to, wire::const_bytes frame) const {
            if (to == uplink_port()) {
                if (self->uplink_) (void)self->uplink_->send(frame); // a drop is counted by the backend
                return;
            }
            port_slot* slot = self->find(to);
            if (slot != nullptr && slot->link) (void)slot->link->send(frame); // a drop is counted by the backend
        }
        void operator()(port_handle to, wire::const_bytes frame, const wire::offload& meta) const {
            if (to == uplink_port()) {
                if (self->uplink_) (void)self->uplink_->send(frame, meta);
                return;
            }
            port_slot* slot = self->find(to);
            if (slot != nullptr && slot->link) (void)slot->link->send(frame, meta); // natively or cut in software
        }
    };
    static_assert(offload_emitter<port_sender>);
    port_sender sender() noexcept { return port_sender{this}; }

    network_config config_;
    std::tuple<Services...> services_;
    switch_type switch_;
    l2::port_id gateway_port_{};
    l2::mac_registry registry_;
    l2::mac_randomizer randomizer_;
    [[no_unique_address]] clock_type clock_{};
    [[no_unique_address]] observer_type observer_{};
    std::vector<port_slot> slots_;                 // indexed by port_handle::index()
    std::vector<std::uint16_t> free_;              // removed slots to reuse
    std::vector<std::uint16_t> by_switch_index_;   // switch port index -> slot index
    network_counters stats_;
    std::function<void(wire::const_bytes)> frame_tap_;
    // The reply queue: replies packed one after the other in storage of reply_queue_depth ×
    // max_frame_len(mtu) bytes allocated at construction (plain replies always fit), grown only
    // when a queued super-frame does not fit (theory of operation 9).
    std::size_t reply_slot_len_;
    std::vector<std::byte> reply_storage_;
    std::size_t reply_used_ = 0; // bytes of reply_storage_ the queued replies take
    std::array<std::size_t, Traits::reply_queue_depth> reply_offsets_{};
    std::array<std::size_t, Traits::reply_queue_depth> reply_lengths_{};
    std::array<wire::offload, Traits::reply_queue_depth> reply_offloads_{}; // all clear: none
    std::array<std::optional<port_handle>, Traits::reply_queue_depth> reply_targets_{}; // none: switched
    std::size_t reply_count_ = 0;
    network_time burst_time_{};
    bool burst_clock_read_ = false;
    bool burst_open_ = false; // a frame came in since the last end_burst
    bool wakeups_bound_ = false;
    std::shared_ptr<basic_network*> anchor_ = std::make_shared<basic_network*>(this);
    std::unique_ptr<std::byte[]> ingress_scratch_; // offload_scratch(): frames coming in
    std::unique_ptr<std::byte[]> egress_scratch_;  // offload_scratch(): frames going out
    std::vector<std::byte> burst_copies_;          // burst_copy(): finished copies, until end_burst
    std::size_t burst_copy_used_ = 0;
    std::shared_ptr<backend::port> uplink_;        // the glue's uplink backend (Traits::uplink)
};

} // namespace ankanet

#include <ankanet/impl/network.hpp>
