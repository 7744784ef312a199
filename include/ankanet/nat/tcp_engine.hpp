/// @file
/// ankanet::nat::basic_tcp_engine — the TCP translator's pure core: guest segments in, host socket
/// calls and guest frames out, no TCP stack in between.
///
/// Theory of operation. Each guest connection is carried by exactly one host socket, and the
/// engine keeps no payload of its own, save the guest's data that arrived beyond a hole: what the
/// guest sends goes straight into the socket's send buffer, what the host sends stays in the
/// socket's receive queue until the guest has ACKed it. The engine mirrors sequence numbers and
/// windows between the two, as passt's tcp.c does.
///
///  - Opening. A guest SYN for a tuple with no flow is checked against the egress policy (the
///    caller's `resolve`: refused -> RST, counted), the VM's flow limit and the table's capacity
///    (refused -> RST, counted) and the VM's half-open limit. A SYN over that one is dropped and
///    counted, not reset: like a kernel whose SYN queue is full, the engine lets the guest's own
///    SYN retransmission try again once handshakes finish, so a burst of honest connects all get
///    through while a SYN flood gains nothing. Then the socket layer starts a non-blocking
///    connect() with the guest's MSS. The guest hears nothing until the connect ends: a SYN-ACK when
///    it succeeded, an RST when the host refused, an ICMP host or net unreachable when the host
///    said so. A connect that hangs is reset after tcp_limits::connect_timeout on the flow's own
///    timer, so one dead destination delays no other flow.
///  - Guest -> host. Data segments are held, as spans into the frames of the port's burst, until
///    end_burst(): then each flow's segments, sorted by sequence number (frames the link swapped
///    within a burst need no retransmission), go to its socket in one gather write (sendmsg), and
///    the guest is ACKed for what the kernel took and no more, one ACK per segment as if each had
///    come alone. A short send leaves the rest for the guest to retransmit,
///    and the engine waits for writability to tell it (a window update).
///  - Loss between the guest and us. A segment beyond rcv_nxt is parked in a tcp_reorder_store
///    (a fixed pool with a budget per VM) and gets a duplicate ACK; the guest's fast retransmission
///    of the hole then takes the hole and everything parked behind it to the socket at once, and
///    one ACK covers it all. Dropping them instead, as passt does, left a guest without SACK to
///    resend the rest of its flight one segment per round trip (NewReno's partial ACKs): a 256 MiB
///    upload with 1% loss took minutes. This is the one place the engine holds payload. A segment
///    that does not fit the VM's budget is dropped and counted, and earns a duplicate ACK only
///    while its hole has had fewer than three (each further one would tell the guest a
///    thrown-away segment was delivered).
///    The window we advertise is the socket's free send buffer (scaled by our_window_shift when
///    the guest offered window scaling), rounded down to 0 below one MSS (silly window
///    avoidance); to a guest without SACK, no more than its VM's budget can park, since such a
///    guest resends what we could not park one segment per round trip (one with SACK resends
///    exactly the holes it is told of). A zero window probe or a keepalive is answered with an
///    ACK, so a window update the guest missed is repeated when it asks.
///  - Timestamps (RFC 7323). When the guest's SYN offers them, every segment carries our
///    millisecond clock and echoes the guest's latest in-window TSval. They cost 12 bytes of each
///    segment and give the guest what it needs to recover when its own segments are lost: an RTT
///    sample from every ACK, retransmissions included, so its RTO does not stay backed off (Karn),
///    and a way to tell a spurious retransmission from a real one.
///  - SACK (RFC 2018). When the guest's SYN permits it (and parking is on), so does our SYN-ACK,
///    and every pure ACK names the ranges parked beyond rcv_nxt. The guest then knows exactly
///    what is missing: it resends only the holes, recovers from several losses in one flight and
///    from a lost retransmission without an RTO, and its tail loss probes work. Parked data is
///    never given up while its flow lives, so nothing SACKed is reneged. The guest's own SACK
///    blocks (about our data) are not used: towards the guest we retransmit by rewinding.
///  - Host -> guest. Data is peeked at offset snd_nxt - snd_una (SO_PEEK_OFF in the Asio layer)
///    straight into the payload area of the frame being built, at most one MSS per frame and no
///    further than the guest's window (scaled by its shift). Where the VM's port takes offload
///    metadata (a TAP with a virtio-net header; the `out` callback's takes_offload(vm)) and
///    tcp_limits::gso_to_guest is on, one peek fills a TCPv4 super-frame of up to 64 KiB of whole
///    MSS-sized segments instead, sent with its GSO metadata and the checksum left to the kernel
///    (emit_partial), which cuts it for the guest: one system call each way per 64 KiB. When the guest ACKs, the ACKed bytes
///    are dropped from the socket (MSG_TRUNC). Retransmitting is rewinding snd_nxt to snd_una: on
///    the retransmission timer (1 s, doubled per expiry, RFC 6298 5.5, up to rto_max) or after three
///    duplicate ACKs. A zero window stops sending and arms the same timer to send a one-byte probe
///    (probes back off but never give up); a window that shrinks below what is in flight rewinds
///    snd_nxt to the window's edge. A zero window never hides the host's end of file: the FIN
///    needs no window.
///  - Inbound (a port forward, nat/inbound.hpp). open_inbound() takes a connection a host listener
///    accepted: the flow is inserted with the socket already connected (the socket layer adopts
///    it), keyed by the tuple as the guest will see it, and pump() sends the guest a SYN offering
///    our MSS, window scale, SACK and timestamps. The guest's SYN-ACK sets what it agreed to, our
///    ACK establishes the flow, and from there it is an ordinary flow. A guest that is not up yet
///    gets the SYN again on the RTO (1 s, doubled), tcp_limits::inbound_syn_retries times; then, or
///    when the guest answers with an RST (nothing listens), the client is reset. Inbound flows count
///    against the VM's flow limit, not its half-open limit (the host, not the guest, opened them).
///  - Closing. The state is a set of per-direction event bits, not an RFC state enum. A guest FIN
///    (once every byte before it is in the socket) is shutdown(SHUT_WR). End of file on the socket
///    becomes a FIN to the guest only when every byte before it is ACKed; it is retransmitted like
///    data. A flow closes (close(), no CLOSE_WAIT left behind) when both FINs are ACKed. A guest RST
///    in the window closes the socket with SO_LINGER {1, 0}, so the host peer sees an RST too; an
///    RST is never answered. A segment for no flow gets an RST (unless it is one).
///
/// Lifecycle. An outbound flow is inserted by the guest's SYN (syn_from_guest, counted half-open)
/// with its connect timer armed; connected -> SYN-ACK sent (syn_to_guest, RTO armed) -> the guest's
/// ACK (established, no longer half-open). An inbound flow is inserted by open_inbound() (connected,
/// and no syn_from_guest: that is what marks it inbound) -> SYN sent (syn_to_guest, RTO armed) ->
/// the guest's SYN-ACK (established, our ACK sent). Once established, the timer is the RTO while
/// anything is unACKed, the persist timer at a zero window, else the idle timer. A flow is erased,
/// its socket closed and its timer cancelled, when: both FINs are ACKed (plain close); the guest
/// resets it (linger 0); the connect fails or times out, the guest answers an inbound SYN with an
/// RST or not at all, the RTO gives up after max_retransmits, the idle timer fires, or the
/// socket fails (RST to the guest first, linger 0 towards the host); its VM goes away (drop_vm).
///
/// Output. Frames to the guests come from two places. guest_segment() answers at once (ACKs,
/// duplicate ACKs, RSTs) through its `out` callback. Everything the host side causes (connect
/// results, readable data, writability, timers) only marks the flow: socket_event() and advance()
/// put it on a FIFO of flows with work, and pump(now, room, out) emits up to `room` frames from
/// that FIFO. The translator calls pump() from the network's release_held(). Frames are built in
/// one buffer by one function (emit_segment), 64 KiB long when super-frames may be sent.
///
/// State and memory. Flows live in a flow_table<tcp_flow_state> (fixed capacity, SipHash index,
/// per-VM limits); their timers on one timer_wheel with the flow's slot index as timer id; the
/// FIFO is an array of slot indexes; guest data beyond a hole in a tcp_reorder_store. Nothing is
/// allocated after construction. The socket layer is told the slot index, which it uses to index
/// its own per-flow array.
///
/// Limits. IPv4 only; SACK blocks from the guest are ignored; no ECN negotiation (a SYN carrying ECE/CWR is
/// accepted and answered without ECE); no RTT estimate (the RTO starts at rto_initial); no delayed
/// ACKs (every guest data segment is ACKed at once) and no keepalives of our own; urgent data is
/// sent as ordinary data. Guest segments whose checksum the guest left to its NIC (a super-frame that
/// travelled whole, see network.hpp) are taken unchecked, as a NIC's host would. Not thread-safe:
/// one engine, one thread.
#pragma once

#include <ankanet/inspection.hpp>
#include <ankanet/nat/flow_table.hpp>
#include <ankanet/nat/tcp_reorder.hpp>
#include <ankanet/nat/timer_wheel.hpp>
#include <ankanet/nat/translation.hpp>
#include <ankanet/port_handle.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/offload.hpp>
#include <ankanet/wire/tcp.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <system_error>
#include <vector>

namespace ankanet::nat {

// --- the socket layer ------------------------------------------------------------------------------

/// What a peek found.
struct tcp_peek_result {
    std::size_t bytes = 0;   ///< bytes copied
    bool eof = false;        ///< nothing at the offset and the peer has sent its FIN
    std::error_code error;   ///< the connection failed (reset, ...)
};

/// What a send took.
struct tcp_send_result {
    std::size_t bytes = 0;   ///< bytes the kernel accepted; fewer than given: it would block
    std::error_code error;   ///< the connection failed
};

/// What a socket layer reports to the engine (socket_event()).
enum class tcp_socket_event : std::uint8_t {
    connected, ///< the connect() ended; the error_code says how
    readable,  ///< data (or EOF) arrived after want_readable()
    writable,  ///< send buffer space after want_writable()
};

/// The host side of the engine: one socket per flow slot.
/// @par Requirements
///  - `open(slot, address, port, mss)`: starts a non-blocking connect; its end is reported as
///    tcp_socket_event::connected. An error returned here means it never started.
///  - `send(slot, pieces)` -> tcp_send_result: the pieces (a span of const_bytes) in order, as
///    one gather write, never blocking, never raising SIGPIPE.
///  - `peek(slot, offset, buffer)` -> tcp_peek_result: copies received bytes from `offset` on
///    (offset counted from the head of the receive queue), leaving them queued.
///  - `discard(slot, n)`: drops the first n received bytes (the guest ACKed them).
///  - `shutdown_write(slot)`, `close(slot, reset)` (reset: SO_LINGER {1, 0}).
///  - `want_readable(slot)`, `want_writable(slot)`: report the event once, when it happens.
///  - `send_space(slot)`: free bytes in the send buffer (the window we offer the guest).
///  - `max_peek_offset()`: the furthest offset peek() can reach (bytes in flight to a guest).
template <class L>
concept tcp_socket_layer = requires(L& l, std::uint32_t slot, wire::ipv4_address address, std::uint16_t port,
                                    std::span<const wire::const_bytes> in, wire::mutable_bytes buffer, std::size_t n,
                                    bool reset) {
    { l.open(slot, address, port, port) } -> std::same_as<std::error_code>;
    { l.send(slot, in) } -> std::same_as<tcp_send_result>;
    { l.peek(slot, n, buffer) } -> std::same_as<tcp_peek_result>;
    { l.discard(slot, n) } -> std::same_as<std::error_code>;
    l.shutdown_write(slot);
    l.close(slot, reset);
    l.want_readable(slot);
    l.want_writable(slot);
    { l.send_space(slot) } -> std::convertible_to<std::size_t>;
    { l.max_peek_offset() } -> std::convertible_to<std::size_t>;
};

// --- configuration, counters, per-flow state -------------------------------------------------------

/// Limits and timers of the TCP translator.
struct tcp_limits {
    std::size_t capacity = 4096;        ///< flows at once
    std::size_t max_vms = 256;          ///< VM port indexes below this may open flows
    std::size_t vm_flows = 1024;        ///< flows per VM
    std::size_t vm_half_open = 64;      ///< flows per VM whose handshake is not finished (SYN flood)
    std::chrono::milliseconds connect_timeout{10'000}; ///< a connect still pending after this is reset
    std::chrono::milliseconds rto_initial{1'000}; ///< the first retransmission timeout (RFC 6298)
    std::chrono::milliseconds rto_max{60'000}; ///< the retransmission timeout doubles up to this
    std::uint8_t max_retransmits = 10;  ///< then both sides are reset

    /// SYNs resent to a guest that does not answer an inbound connection (1+2+4+8+16 s, then 32 s
    /// more for the last: about a minute, as long as Linux's tcp_syn_retries=5 waits).
    std::uint8_t inbound_syn_retries = 5;
    std::chrono::seconds idle_timeout{7200}; ///< a flow with no traffic for this long is closed
    std::uint8_t our_window_shift = 7;  ///< window scale we offer (windows up to 8 MiB)
    std::size_t burst_segments = 64;    ///< guest data segments held for end_burst() (a port's burst)

    /// Host data goes to a guest whose port takes offload metadata (the engine's `out` says so) in
    /// TCPv4 super-frames of up to 64 KiB, cut into MSS-sized segments by the guest's kernel (GSO).
    bool gso_to_guest = true;
    /// Pool for guest data beyond a hole (tcp_reorder_store). 0: every VM's budget at once, so that
    /// no VM's parking ever waits on another's; pages no loss used are never touched.
    std::size_t reorder_bytes = 0;
    std::size_t vm_reorder_bytes = 1u << 20; ///< the most of it one VM may hold (0: nothing is parked)
    std::optional<std::array<std::byte, 16>> hash_key; ///< flow table key (tests fix it)
    std::optional<std::uint64_t> isn_seed;             ///< initial sequence numbers (tests fix it)
};

/// The engine's counters.
struct tcp_stats {
    std::uint64_t syn_accepted = 0;        ///< flows opened (connect started)
    std::uint64_t refused_egress = 0;      ///< SYNs the egress policy refused
    std::uint64_t dropped_half_open = 0;   ///< SYNs dropped over the VM's half-open limit (the guest retries)
    std::uint64_t refused_vm_limit = 0;    ///< SYNs over the VM's flow limit
    std::uint64_t refused_table_full = 0;  ///< SYNs with every flow slot taken
    std::uint64_t refused_open = 0;        ///< SYNs whose socket could not be opened
    std::uint64_t connected = 0;           ///< connects that succeeded
    std::uint64_t connect_refused = 0;     ///< answered with an RST
    std::uint64_t connect_unreachable = 0; ///< answered with ICMP host/net unreachable
    std::uint64_t connect_timeouts = 0; ///< connects reset by connect_timeout
    std::uint64_t rst_unknown = 0;         ///< RSTs sent for segments of no flow
    std::uint64_t rst_from_guest = 0;      ///< flows the guest reset
    std::uint64_t rst_to_guest = 0;        ///< flows reset towards the guest (host error, timeout)
    std::uint64_t dup_acks_sent = 0;       ///< out-of-order guest data
    std::uint64_t dup_acks_withheld = 0;   ///< out-of-order guest data past tcp_dup_acks_per_hole
    std::uint64_t segments_parked = 0;     ///< guest segments beyond a hole, held until it filled
    std::uint64_t super_frames_to_guest = 0; ///< data frames sent as GSO super-frames (gso_to_guest)
    std::uint64_t park_refused_vm = 0;     ///< ... dropped instead: the VM's reorder budget was spent
    std::uint64_t park_refused_pool = 0;   ///< ... dropped instead: the pool was empty
    std::uint64_t parked_bytes_taken = 0;  ///< parked bytes the host socket took once the hole filled
    std::uint64_t guest_sends = 0;         ///< gather writes of guest data to host sockets
    std::uint64_t guest_segments_batched = 0; ///< guest data segments that went out in them
    std::uint64_t short_sends = 0;         ///< guest data the kernel did not take whole
    std::uint64_t retransmits = 0;         ///< RTO expiries that rewound a flow
    std::uint64_t fast_retransmits = 0; ///< rewinds after three duplicate ACKs
    std::uint64_t zero_window_probes = 0; ///< one-byte probes sent into a zero window
    std::uint64_t window_shrinks = 0;      ///< guest windows that shrank below what was in flight
    std::uint64_t bad_segments = 0;        ///< unparsable, bad checksum, ...
    std::uint64_t bytes_to_host = 0; ///< guest payload bytes the host sockets took
    std::uint64_t bytes_to_guest = 0;      ///< payload bytes in frames (retransmissions included)
    std::uint64_t flows_closed = 0;        ///< flows that ended with both FINs ACKed
    std::uint64_t idle_timeouts = 0; ///< flows closed by idle_timeout
    std::uint64_t vm_gone_resets = 0;      ///< flows reset because their VM's port went away
    std::uint64_t inbound_opened = 0;      ///< inbound connections adopted (open_inbound)
    std::uint64_t inbound_refused = 0;     ///< ... not adopted: the VM's flow limit, a full table, the tuple in use
    std::uint64_t inbound_established = 0; ///< ... the guest answered our SYN
    std::uint64_t inbound_reset = 0;       ///< ... the guest answered with an RST (nothing listens)
    std::uint64_t inbound_timeouts = 0;    ///< ... the guest never answered (inbound_syn_retries)
};

/// Per-flow state: sequence numbers, windows, timestamps and event bits. 48 bytes.
struct tcp_flow_state {
    port_handle vm;                 ///< the VM's port (frames go there)
    wire::mac_address vm_mac;       ///< the VM's MAC
    std::uint16_t guest_mss = 536;  ///< largest payload towards the guest
    std::uint32_t snd_una = 0;      ///< oldest sequence number the guest has not ACKed
    std::uint32_t snd_nxt = 0;      ///< next sequence number to send the guest
    std::uint32_t snd_max = 0;      ///< highest sequence number sent (snd_nxt before a rewind)
    std::uint32_t rcv_nxt = 0;      ///< next sequence number expected from the guest
    std::uint32_t guest_window = 0; ///< the guest's window, scaled, in bytes
    std::uint16_t events = 0;       ///< tcp_flow_state::event bits
    std::uint16_t adv_window = 0;   ///< the last window field we sent (unscaled)
    std::uint8_t pending = 0;       ///< control frames pump() owes (pending bits)
    std::uint8_t guest_shift = 0;   ///< the guest's window shift (0: no scaling)
    std::uint8_t our_shift = 0;     ///< our window shift (0 when the guest offered none)
    std::uint8_t dup_acks = 0; ///< dup acks
    std::uint8_t backoff = 0;       ///< RTO doublings since the last progress
    std::uint8_t timer = 0;         ///< what the flow's timer is armed for (timer_kind)
    std::uint8_t hole_acks = 0;     ///< duplicate ACKs granted for the hole at rcv_nxt
    std::uint8_t dup_acks_owed = 0; ///< of those, not sent yet (pump() sends them)
    std::uint32_t ts_recent = 0;    ///< the guest's TSval we echo (RFC 7323 TS.Recent)

    /// Event bits, one per direction and step (passt's model).
    enum event : std::uint16_t {
        syn_from_guest = 1u << 0,   ///< guest SYN seen, connect started
        connected = 1u << 1,        ///< the host socket connected
        syn_to_guest = 1u << 2,     ///< SYN-ACK sent
        established = 1u << 3,      ///< our SYN ACKed by the guest
        fin_from_guest = 1u << 4,   ///< guest FIN taken, SHUT_WR done
        host_eof = 1u << 5,         ///< the host socket reached end of file
        fin_to_guest = 1u << 6,     ///< FIN sent to the guest (its sequence number is snd_max - 1)
        fin_acked = 1u << 7,        ///< our FIN ACKed
        send_blocked = 1u << 8,     ///< a short send: waiting for writability
        window_closed = 1u << 9,    ///< we advertised 0: waiting for writability
        half_open = 1u << 10,       ///< counted in the VM's half-open flows
        closing = 1u << 11,         ///< erased once pump() has sent what it owes
        probe = 1u << 12,           ///< send one byte into a zero window
        read_wait = 1u << 13,       ///< want_readable() asked, not reported yet
        timestamps = 1u << 14,      ///< the guest's SYN offered timestamps: every segment carries them
        sack = 1u << 15,            ///< SACK permitted both ways: our ACKs name what is parked
    };
    /// Control frames owed to the guest.
    enum pending_frame : std::uint8_t {
        send_synack = 1u << 0,
        send_ack = 1u << 1,
        send_rst = 1u << 2,
        send_icmp_host = 1u << 3,
        send_icmp_net = 1u << 4,
        send_syn = 1u << 5,   ///< an inbound flow's SYN
    };
    /// The timer a flow's timer is armed for.
    enum timer_kind : std::uint8_t { no_timer, connect_timer, rto_timer, persist_timer, idle_timer };

    /// Whether event bit `e` is set.
    bool has(std::uint16_t e) const noexcept { return (events & e) != 0; }
    /// Sets event bit `e`.
    void set(std::uint16_t e) noexcept { events = static_cast<std::uint16_t>(events | e); }
    /// Clears event bit `e`.
    void clear(std::uint16_t e) noexcept { events = static_cast<std::uint16_t>(events & ~e); }
};
static_assert(sizeof(tcp_flow_state) <= 48, "keep the per-flow state small");

/// Bytes the timestamps option takes in every segment of a flow that uses it (NOP, NOP, 10).
inline constexpr std::size_t tcp_timestamps_len = 12;
/// Duplicate ACKs sent for one hole in the guest's data: enough for its fast retransmit (three),
/// and no more, since each further one would tell it a segment arrived that was thrown away.
inline constexpr std::uint8_t tcp_dup_acks_per_hole = 3;
/// The most guest data segments end_burst() writes at once (tcp_limits::burst_segments is capped).
inline constexpr std::size_t max_burst_segments = 64;

/// Where a guest SYN goes on the host, when the egress policy allows it.
struct tcp_host_target {
    wire::ipv4_address address; ///< address
    std::uint16_t port = 0; ///< port
};

namespace detail {
inline bool seq_lt(std::uint32_t a, std::uint32_t b) noexcept { return static_cast<std::int32_t>(a - b) < 0; }
inline bool seq_le(std::uint32_t a, std::uint32_t b) noexcept { return static_cast<std::int32_t>(a - b) <= 0; }
inline bool seq_gt(std::uint32_t a, std::uint32_t b) noexcept { return seq_lt(b, a); }
} // namespace detail

// --- the engine ------------------------------------------------------------------------------------

/// The TCP translator's pure core; see the theory of operation above.
/// @tparam SocketLayer the host side (see tcp_socket_layer); owned by the engine.
template <tcp_socket_layer SocketLayer>
class basic_tcp_engine {
public:
    using time_point = std::chrono::steady_clock::time_point; ///< a point in time of the clock
    using flow_table_type = flow_table<tcp_flow_state>; ///< the flow table type
    using flow_state = tcp_flow_state; ///< the flow state type

    /// @param config the network's addresses and MTU; @param limits sizes and timers;
    /// @param sockets the socket layer; @param origin the wheel's time zero (normally `now`).
    basic_tcp_engine(const translation_config& config, const tcp_limits& limits, SocketLayer sockets, time_point origin)
        : config_(config), limits_(limits), sockets_(std::move(sockets)),
          table_(table_config(limits)), wheel_(table_.capacity(), origin), fifo_(table_.capacity()),
          queued_(table_.capacity(), 0), half_open_(table_.max_vms(), 0),
          reorder_(table_.capacity(), table_.max_vms(),
                   limits.reorder_bytes != 0 ? limits.reorder_bytes : limits.vm_reorder_bytes * table_.max_vms(),
                   limits.vm_reorder_bytes),
          // A super-frame (gso_to_guest) is built in the same buffer: 64 KiB of IPv4 then.
          frame_(limits.gso_to_guest ? wire::offload::max_frame_len : config.mtu + wire::ethernet::header_len),
          isn_state_(limits.isn_seed ? *limits.isn_seed : std::random_device{}() * 0x9e3779b97f4a7c15ull),
          ts_offset_(next_isn()) {
        table_.set_vm_limits(limits.vm_flows);
        deferred_.reserve(burst_capacity());
    }

    basic_tcp_engine(const basic_tcp_engine&) = delete;
    basic_tcp_engine& operator=(const basic_tcp_engine&) = delete;

    /// Takes one guest IPv4/TCP frame `frame` (whose route classify() said was `translate`) from
    /// `vm` with MAC `vm_mac`. Immediate answers go to `out(port_handle, const_bytes)`. `resolve()`
    /// is asked only for a SYN that would open a flow: the host target, or nullopt when the
    /// egress policy refuses it. Returns taken (the frame was the translator's, even if dropped).
    /// `checksum_pending`: the guest left the TCP checksum to its NIC (virtio-net NEEDS_CSUM, see
    /// wire::is_tcpv4_offload), so it is not checked; the payload may then also be a super-frame's,
    /// longer than any MSS, which is taken as one segment.
    template <class Resolve, class Out>
    inspection guest_segment(port_handle vm, const wire::parsed_frame& frame, time_point now, Resolve&& resolve,
                             Out&& out, bool checksum_pending = false);

    /// Adopts a connection the host accepted for VM `vm` (MAC `vm_mac`), as the tuple the guest will
    /// see: its own `guest`:`guest_port`, and the client as `remote`:`remote_port`. `adopt(slot)`
    /// hands the connected socket to the socket layer for the flow's slot (-> std::error_code).
    /// The guest's SYN goes out from pump(). Refused (counted in inbound_refused): the tuple has a
    /// flow (flow_errc::flow_exists), the VM is at its flow limit or the table is full (the
    /// flow_table's error), or adopt() failed (its error; the flow is not kept).
    template <class Adopt>
    std::error_code open_inbound(port_handle vm, wire::mac_address vm_mac, wire::ipv4_address guest,
                                 std::uint16_t guest_port, wire::ipv4_address remote, std::uint16_t remote_port,
                                 time_point now, Adopt&& adopt);

    /// The burst of guest frames given to guest_segment() since the last call has ended: each
    /// flow's data segments go to its socket in one gather write, in sequence order, and the flow
    /// is owed one ACK for them (and duplicate ACKs for what lay beyond a hole). Up to `room` of
    /// those go to `out` now, the rest to pump(). Their frames must stay valid until this returns.
    /// Returns the frames emitted.
    template <class Out>
    std::size_t end_burst(time_point now, std::size_t room, Out&& out);

    /// A socket event for flow slot `slot` (stale slots are ignored). Marks the flow for pump().
    void socket_event(std::uint32_t slot, tcp_socket_event event, std::error_code ec);

    /// Runs the flows' timers up to `now`; flows with work go onto the FIFO for pump().
    void advance(time_point now);

    /// Emits up to `room` frames for flows with work: `out(port_handle, const_bytes)`. Returns how
    /// many it emitted; a flow that had more stays at the FIFO's head.
    template <class Out>
    std::size_t pump(time_point now, std::size_t room, Out&& out);

    /// Whether some flow has work for pump().
    bool has_work() const noexcept { return fifo_count_ != 0; }
    /// When advance() should run next (nullopt: no timer armed).
    std::optional<time_point> next_deadline() const noexcept { return wheel_.next_deadline(); }

    /// What it counted so far.
    const tcp_stats& stats() const noexcept { return stats_; }
    /// The flows.
    const flow_table_type& flows() const noexcept { return table_; }
    /// The number of elements.
    std::size_t size() const noexcept { return table_.size(); }
    /// The sockets.
    SocketLayer& sockets() noexcept { return sockets_; }
    /// The limits.
    const tcp_limits& limits() const noexcept { return limits_; }
    /// Half-open flows of VM port index `vm`.
    std::size_t half_open(std::uint16_t vm) const noexcept { return vm < half_open_.size() ? half_open_[vm] : 0; }

    /// The flow of a tuple, as the guest sees it (for tests and diagnostics).
    const tcp_flow_state* find(std::uint16_t vm, wire::ipv4_address guest, std::uint16_t guest_port,
                               wire::ipv4_address remote, std::uint16_t remote_port) const noexcept {
        const auto h = table_.find(make_key(vm, guest, guest_port, remote, remote_port));
        return h ? table_.get(*h) : nullptr;
    }
    /// The slot of a tuple's flow (the id the socket layer is given).
    std::optional<std::uint32_t> slot_of(std::uint16_t vm, wire::ipv4_address guest, std::uint16_t guest_port,
                                         wire::ipv4_address remote, std::uint16_t remote_port) const noexcept {
        const auto h = table_.find(make_key(vm, guest, guest_port, remote, remote_port));
        if (!h) return std::nullopt;
        return h->index;
    }

    /// Bytes per flow at full capacity: the table's slot and index share, the timer node, the
    /// FIFO entry and queued flag, the reorder list's ends (the reorder pool is apart: it is
    /// shared by all flows, and pages of it no loss ever used are never touched).
    double bytes_per_flow() const noexcept {
        return table_.bytes_per_flow() + static_cast<double>(basic_timer_wheel<>::bytes_per_timer) +
               static_cast<double>(sizeof(std::uint32_t) + sizeof(std::uint8_t) + tcp_reorder_store::bytes_per_flow);
    }
    /// Guest bytes parked beyond holes (chunks in use), all VMs / VM port index `vm`.
    std::size_t parked_bytes() const noexcept { return reorder_.bytes_in_use(); }
    /// The guest bytes parked for VM `vm`.
    std::size_t parked_bytes(std::uint16_t vm) const noexcept { return reorder_.vm_bytes(vm); }

    /// A VM is gone: its flows are reset towards the host (nothing left in CLOSE_WAIT) and forgotten.
    /// Returns how many there were.
    std::size_t drop_vm(wire::mac_address vm_mac) {
        std::size_t dropped = 0;
        table_.for_each([&](flow_handle h, const flow_key&, tcp_flow_state& f) {
            if (f.vm_mac != vm_mac) return;
            sockets_.close(h.index, true);
            forget(h);
            ++dropped;
        });
        stats_.vm_gone_resets += dropped;
        return dropped;
    }

    /// Resets every flow (both sides) and forgets them: for shutdown.
    void reset_all() {
        table_.for_each([&](flow_handle h, const flow_key&, tcp_flow_state&) {
            sockets_.close(h.index, true);
            forget(h);
        });
    }

private:
    static typename flow_table_type::config table_config(const tcp_limits& l) {
        typename flow_table_type::config c;
        c.capacity = l.capacity;
        c.max_vms = l.max_vms;
        c.hash_key = l.hash_key;
        return c;
    }

    static flow_key make_key(std::uint16_t vm, wire::ipv4_address guest, std::uint16_t guest_port,
                             wire::ipv4_address remote, std::uint16_t remote_port) noexcept {
        flow_key k;
        k.guest_address = guest;
        k.remote_address = remote;
        k.guest_port = guest_port;
        k.remote_port = remote_port;
        k.vm = vm;
        k.protocol = wire::tcp::protocol_number;
        return k;
    }

    std::uint32_t next_isn() noexcept {
        // splitmix64: ISNs a guest cannot predict from the ones it saw (the seed is random).
        std::uint64_t z = (isn_state_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return static_cast<std::uint32_t>(z ^ (z >> 31));
    }

    /// The largest payload towards the guest its SYN or SYN-ACK allows: its MSS option (at least
    /// 64), 536 without one (RFC 9293 3.7.1), never more than our MTU carries.
    std::uint16_t guest_mss_of(const wire::tcp::repr& seg) const noexcept {
        const std::size_t mss = seg.mss ? std::max<std::size_t>(*seg.mss, 64) : 536;
        return static_cast<std::uint16_t>(std::min(mss, max_payload()));
    }
    /// The window shift we offer (RFC 7323 caps it at 14).
    std::uint8_t offered_shift() const noexcept { return limits_.our_window_shift > 14 ? 14 : limits_.our_window_shift; }

    /// Guest data segments held until end_burst() (0: none, each is written as it comes).
    std::size_t burst_capacity() const noexcept { return std::min(limits_.burst_segments, max_burst_segments); }
    std::size_t max_payload() const noexcept {
        return config_.mtu - wire::ipv4::header_len - wire::tcp::header_len;
    }
    static std::size_t options_len(const tcp_flow_state& f) noexcept {
        return f.has(flow_state::timestamps) ? tcp_timestamps_len : 0;
    }
    /// Payload per data segment: the guest's MSS and our MTU, less the options every segment
    /// carries (RFC 6691: the MSS counts no options).
    std::size_t segment_payload(const tcp_flow_state& f) const noexcept {
        return std::min<std::size_t>(f.guest_mss, max_payload()) - options_len(f);
    }
    /// Payload of one super-frame towards the guest: whole segments, as many as one IPv4 datagram
    /// holds (64 KiB less the headers; frame_ is sized for that whenever gso_to_guest is on).
    std::size_t gso_payload(const tcp_flow_state& f) const noexcept {
        const std::size_t segment = segment_payload(f);
        const std::size_t most = wire::ipv4::max_packet_len - wire::ipv4::header_len - wire::tcp::header_len - options_len(f);
        return std::max(segment, most / segment * segment);
    }
    /// An `out` that can be handed a frame's offload metadata.
    template <class Out>
    static constexpr bool out_takes_metadata = std::invocable<Out&, port_handle, wire::const_bytes, const wire::offload&>;
    /// Whether frames for `vm` may be super-frames: gso_to_guest is on, and `out` both passes
    /// metadata on and says `vm`'s port takes it (a super-frame without its metadata would reach
    /// the guest with an unfinished checksum).
    template <class Out>
    bool gso_for(Out& out, port_handle vm) const {
        if constexpr (out_takes_metadata<Out> && requires { { out.takes_offload(vm) } -> std::convertible_to<bool>; }) {
            return limits_.gso_to_guest && out.takes_offload(vm);
        } else {
            return false;
        }
    }
    /// TSval: a millisecond clock (RFC 7323 §5.4 asks for 1 ms to 1 s per tick) from a random origin.
    void tick_clock(time_point now) noexcept {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
        ts_clock_ = static_cast<std::uint32_t>(ms) + ts_offset_;
    }

    // -- timers

    std::chrono::milliseconds rto(const tcp_flow_state& f) const noexcept {
        auto r = limits_.rto_initial;
        for (std::uint8_t i = 0; i < f.backoff && r < limits_.rto_max; ++i) r *= 2;
        return std::min(r, limits_.rto_max);
    }

    void arm(std::uint32_t slot, tcp_flow_state& f, std::uint8_t kind, time_point at) {
        f.timer = kind;
        wheel_.schedule(slot, at);
    }

    /// Arms the timer the flow's state calls for. `progress`: something was ACKed or sent anew, so
    /// a running RTO starts over.
    void rearm(std::uint32_t slot, tcp_flow_state& f, time_point now, bool progress) {
        if (!f.has(flow_state::syn_to_guest)) return; // the connect timer runs
        if (f.snd_una != f.snd_max) {
            if (f.timer != flow_state::rto_timer || progress) arm(slot, f, flow_state::rto_timer, now + rto(f));
            return;
        }
        if (f.has(flow_state::established) && f.guest_window == 0 && !f.has(flow_state::host_eof)) {
            if (f.timer != flow_state::persist_timer) arm(slot, f, flow_state::persist_timer, now + rto(f));
            return;
        }
        arm(slot, f, flow_state::idle_timer, now + limits_.idle_timeout);
    }

    // -- the FIFO of flows with work

    void mark(std::uint32_t slot) {
        if (queued_[slot]) return;
        queued_[slot] = 1;
        fifo_[(fifo_head_ + fifo_count_) % fifo_.size()] = slot;
        ++fifo_count_;
    }

    // -- flows

    void forget(flow_handle h) {
        tcp_flow_state* f = table_.get(h);
        if (f == nullptr) return;
        const flow_key* k = table_.key(h);
        if (f->has(flow_state::half_open) && k->vm < half_open_.size()) --half_open_[k->vm];
        wheel_.cancel(h.index);
        reorder_.drop(h.index);
        table_.erase(h);
    }

    /// Resets both sides: RST to the host (linger 0) now, RST to the guest from pump().
    void reset_flow(flow_handle h, tcp_flow_state& f, bool count = true) {
        sockets_.close(h.index, true);
        f.pending = flow_state::send_rst;
        f.set(flow_state::closing);
        wheel_.cancel(h.index);
        reorder_.drop(h.index);
        if (count) ++stats_.rst_to_guest;
        mark(h.index);
    }

    /// Moves snd_nxt back to `to`: those bytes are peeked and sent again.
    static void rewind(tcp_flow_state& f, std::uint32_t to) noexcept {
        f.snd_nxt = to;
        f.clear(flow_state::read_wait); // the bytes are there: no need to wait for more
    }

    void finish_if_closed(flow_handle h, tcp_flow_state& f) {
        if (f.has(flow_state::fin_from_guest) && f.has(flow_state::fin_acked) && !f.has(flow_state::closing)) {
            sockets_.close(h.index, false);
            ++stats_.flows_closed;
            forget(h);
        }
    }

    /// The window we advertise: free send buffer, 0 below one MSS. For a guest without SACK, no
    /// more than three quarters of the VM's reorder budget, so that a whole flight can be parked
    /// behind a hole (each segment leaves part of its last chunk unused): such a guest resends
    /// what we could not park one segment per round trip. A guest with SACK resends exactly the
    /// holes it is told of, parked or not, so its window is not held to the budget (at MTU 65520
    /// that would cap it at twelve segments).
    std::uint16_t window_field(std::uint32_t slot, tcp_flow_state& f) {
        // After the guest's FIN there is nothing more to take.
        std::size_t space = f.has(flow_state::fin_from_guest) ? 0 : static_cast<std::size_t>(sockets_.send_space(slot));
        if (reorder_.enabled() && !f.has(flow_state::sack)) space = std::min(space, reorder_.vm_limit_bytes() / 4 * 3);
        if (space < f.guest_mss) space = 0;
        std::size_t field = space >> f.our_shift;
        if (field > 0xffff) field = 0xffff;
        if (field == 0 && !f.has(flow_state::fin_from_guest) && f.has(flow_state::connected) &&
            !f.has(flow_state::window_closed)) {
            f.set(flow_state::window_closed);
            sockets_.want_writable(slot);
        }
        f.adv_window = static_cast<std::uint16_t>(field);
        return f.adv_window;
    }

    // -- frames (the one place they are built: the seam for virtio-net headers and GSO)

    /// Builds a TCP segment for flow `h` in frame_: headers, then the `payload_len` bytes already at
    /// payload_area(). Returns the frame's length (0 if it did not fit).
    /// `sack_slot`: the flow's slot, for an ACK that names what it has parked (SACK blocks).
    std::size_t emit_segment(const flow_key& k, const tcp_flow_state& f, wire::tcp::flag_set flags, std::uint32_t seq,
                             std::uint32_t ack, std::uint16_t window, std::size_t payload_len,
                             bool syn_options = false, std::optional<std::uint32_t> sack_slot = std::nullopt,
                             bool partial_checksum = false) {
        wire::tcp::repr t;
        t.source_port = k.remote_port;
        t.destination_port = k.guest_port;
        t.seq_number = seq;
        t.ack_number = ack;
        t.flags = flags;
        t.window = window;
        t.payload_len = payload_len;
        if (syn_options) {
            t.mss = static_cast<std::uint16_t>(max_payload());
            if (f.our_shift != 0 || f.guest_shift != 0) t.window_scale = f.our_shift;
            t.sack_permitted = f.has(flow_state::sack);
        }
        if (f.has(flow_state::timestamps)) t.timestamps = wire::tcp::timestamp_values{ts_clock_, f.ts_recent};
        // SACK blocks on pure ACKs only (data segments keep their payload size): as many as fit
        // beside the timestamps (3, else 4), lowest first; RFC 2018 asks for the newest first,
        // which Linux and BSD senders do not depend on (they sort the blocks).
        if (sack_slot && f.has(flow_state::sack) && payload_len == 0 && !flags.syn() && !flags.rst()) {
            const std::size_t room = t.timestamps ? 3 : wire::tcp::max_sack_blocks;
            t.sack_count = static_cast<std::uint8_t>(
                reorder_.ranges(*sack_slot, ack, std::span{t.sack_blocks}.first(room)));
        }
        const std::size_t l4 = t.buffer_len() + payload_len;
        const std::size_t len = write_guest_headers(frame_, config_.gateway_mac, f.vm_mac, k.remote_address,
                                                    k.guest_address, wire::tcp::protocol_number, l4, ip_id_++);
        if (len == 0) return 0;
        const wire::mutable_bytes l4_bytes = wire::mutable_bytes{frame_}.subspan(guest_headers_len);
        if (partial_checksum ? t.emit_partial(l4_bytes, k.remote_address, k.guest_address)
                             : t.emit(l4_bytes, k.remote_address, k.guest_address)) {
            return 0;
        }
        return len;
    }

    /// Where a data segment's payload goes in frame_: after the headers and the options the flow's
    /// segments carry.
    wire::mutable_bytes payload_area(const tcp_flow_state& f, std::size_t len) noexcept {
        return wire::mutable_bytes{frame_}.subspan(guest_headers_len + wire::tcp::header_len + options_len(f), len);
    }

    template <class Out>
    void send_control(flow_handle h, tcp_flow_state& f, wire::tcp::flag_set flags, Out& out) {
        const flow_key* k = table_.key(h);
        const bool syn = flags.syn();
        const std::uint32_t seq = syn ? f.snd_una : f.snd_nxt;
        const std::uint16_t window = syn ? static_cast<std::uint16_t>(std::min<std::size_t>(
                                               sockets_.send_space(h.index), 0xffff))
                                         : window_field(h.index, f);
        const std::size_t len = emit_segment(*k, f, flags, seq, f.rcv_nxt, window, 0, syn, h.index);
        if (len != 0) out(f.vm, wire::const_bytes{frame_.data(), len});
    }

    /// ICMP destination unreachable for a SYN we could not carry, quoting a header rebuilt from
    /// the flow (we keep no copy of the SYN).
    template <class Out>
    void send_unreachable(flow_handle h, const tcp_flow_state& f, std::uint8_t code, Out& out) {
        const flow_key* k = table_.key(h);
        std::array<std::byte, wire::ipv4::header_len + 8> quote{};
        wire::ipv4::repr ip;
        ip.source = k->guest_address;
        ip.destination = k->remote_address;
        ip.protocol = wire::tcp::protocol_number;
        ip.payload_len = wire::tcp::header_len;
        ip.dont_fragment = true;
        (void)ip.emit(quote);
        wire::mutable_bytes q{quote};
        wire::store_be16(q, wire::ipv4::header_len, k->guest_port);
        wire::store_be16(q, wire::ipv4::header_len + 2, k->remote_port);
        wire::store_be32(q, wire::ipv4::header_len + 4, f.rcv_nxt - 1);
        wire::icmp::repr msg{wire::icmp::destination_unreachable{code, 0, wire::const_bytes{quote}}};
        const std::size_t l4 = msg.buffer_len();
        const std::size_t len = write_guest_headers(frame_, config_.gateway_mac, f.vm_mac, k->remote_address,
                                                    k->guest_address, 1, l4, ip_id_++);
        if (len == 0) return;
        if (msg.emit(wire::mutable_bytes{frame_}.subspan(guest_headers_len, l4))) return;
        out(f.vm, wire::const_bytes{frame_.data(), len});
    }

    /// RST for a segment of no flow (RFC 9293 3.10.7.1).
    template <class Out>
    void send_rst_for(port_handle vm, const wire::parsed_frame& frame, const wire::tcp::repr& seg, Out& out) {
        tcp_flow_state tmp;
        tmp.vm_mac = frame.source;
        flow_key k = make_key(vm.index(), frame.ip_source, seg.source_port, frame.ip_destination, seg.destination_port);
        std::uint32_t seq = 0;
        std::uint32_t ack = 0;
        wire::tcp::flag_set flags{wire::tcp::flag::rst};
        if (seg.flags.ack()) {
            seq = seg.ack_number;
        } else {
            ack = seg.seq_number + static_cast<std::uint32_t>(seg.payload_len) + (seg.flags.syn() ? 1u : 0u) +
                  (seg.flags.fin() ? 1u : 0u);
            flags.set(wire::tcp::flag::ack);
        }
        const std::size_t len = emit_segment(k, tmp, flags, seq, ack, 0, 0);
        if (len != 0) out(vm, wire::const_bytes{frame_.data(), len});
    }

    /// The RST reset_flow() promised the guest; the flow is forgotten.
    template <class Out>
    void send_reset(flow_handle h, tcp_flow_state& f, Out& out) {
        const flow_key* k = table_.key(h);
        const bool synced = f.has(flow_state::syn_to_guest);
        // Before our SYN-ACK the guest knows no sequence number of ours: RST,ACK of its SYN.
        const std::size_t len = emit_segment(*k, f, synced ? wire::tcp::flag_set{wire::tcp::flag::rst}
                                                           : wire::tcp::flag::rst | wire::tcp::flag::ack,
                                             synced ? f.snd_max : 0, synced ? 0 : f.rcv_nxt, 0, 0);
        if (len != 0) out(f.vm, wire::const_bytes{frame_.data(), len});
        forget(h);
    }

    template <class Resolve, class Out>
    inspection open_flow(port_handle vm, const wire::parsed_frame& frame, const wire::tcp::repr& seg, time_point now,
                         Resolve& resolve, Out& out);

    template <class Out>
    void guest_ack(flow_handle h, tcp_flow_state& f, const wire::tcp::repr& seg, time_point now, Out& out);

    /// The guest's answer to an inbound flow's SYN (its SYN-ACK, or an RST).
    template <class Out>
    void inbound_handshake(port_handle vm, const wire::parsed_frame& frame, flow_handle h, tcp_flow_state& f,
                           const wire::tcp::repr& seg, time_point now, Out& out);

    bool take_guest_bytes(flow_handle h, tcp_flow_state& f, std::span<const wire::const_bytes> pieces);
    void grant_dup_acks(tcp_flow_state& f, std::size_t segments) noexcept;
    enum class parking : std::uint8_t { parked, held_already, dropped };
    parking park_segment(flow_handle h, tcp_flow_state& f, std::uint32_t seq, wire::const_bytes payload);
    bool take_parked(flow_handle h, tcp_flow_state& f);
    void owe_dup_acks(tcp_flow_state& f, std::size_t segments) noexcept;
    template <class Out>
    std::size_t send_owed_acks(flow_handle h, tcp_flow_state& f, std::size_t room, Out& out);
    /// `from`, `to`: where in deferred_ the flow's segments are (all of it when not known).
    template <class Out>
    std::size_t deliver_deferred(flow_handle h, std::size_t room, Out& out, std::size_t from = 0,
                                 std::size_t to = std::numeric_limits<std::size_t>::max());
    template <class Out>
    void guest_data(flow_handle h, tcp_flow_state& f, const wire::tcp::repr& seg, wire::const_bytes payload,
                    time_point now, Out& out);

    void on_timer(std::uint32_t slot, time_point now);

    /// Emits what flow `h` owes, up to `room` frames. Returns frames emitted; `done` false when it
    /// stopped for lack of room.
    template <class Out>
    std::size_t pump_flow(flow_handle h, tcp_flow_state& f, time_point now, std::size_t room, Out& out, bool& done);

    translation_config config_;
    tcp_limits limits_;
    SocketLayer sockets_;
    flow_table_type table_;
    basic_timer_wheel<> wheel_;
    std::vector<std::uint32_t> fifo_;  // slots with work, a ring
    std::size_t fifo_head_ = 0;
    std::size_t fifo_count_ = 0;
    std::vector<std::uint8_t> queued_; // per slot: on the FIFO
    std::vector<std::uint32_t> half_open_;
    tcp_reorder_store reorder_; ///< guest data beyond a hole, by flow slot
    std::vector<std::byte> frame_;
    std::uint64_t isn_state_;
    /// A guest data segment waiting for end_burst(): its payload lies in a frame of the burst.
    struct deferred_data {
        flow_handle flow;
        std::uint32_t seq = 0;
        wire::const_bytes payload;
    };
    std::vector<deferred_data> deferred_; ///< capacity limits_.burst_segments, reserved up front
    std::uint32_t ts_offset_;   ///< added to the millisecond clock: our TSval reveals no uptime
    std::uint32_t ts_clock_ = 0; ///< TSval for segments built now (set by each entry point)
    std::uint16_t ip_id_ = 0;
    tcp_stats stats_;
};

// --- implementation ----------------------------------------------------------------------------------

template <tcp_socket_layer SocketLayer>
template <class Resolve, class Out>
inspection basic_tcp_engine<SocketLayer>::guest_segment(port_handle vm, const wire::parsed_frame& frame, time_point now,
                                                        Resolve&& resolve, Out&& out, bool checksum_pending) {
    auto datagram = wire::ipv4::packet<wire::const_bytes>::checked(frame.ip);
    if (!datagram || datagram->protocol() != wire::tcp::protocol_number) {
        ++stats_.bad_segments;
        return inspection::taken;
    }
    const wire::const_bytes segment = datagram->payload();
    auto parsed = checksum_pending
                      ? wire::tcp::repr::parse_ignoring_checksum(wire::tcp::packet<wire::const_bytes>{segment})
                      : wire::tcp::repr::parse(segment, frame.ip_source, frame.ip_destination);
    if (!parsed) {
        ++stats_.bad_segments;
        return inspection::taken;
    }
    const wire::tcp::repr& seg = *parsed;
    const wire::const_bytes payload = wire::tcp::packet<wire::const_bytes>{segment}.payload();
    tick_clock(now);
    const flow_key key = make_key(vm.index(), frame.ip_source, seg.source_port, frame.ip_destination, seg.destination_port);
    auto h = table_.find(key);

    if (h) {
        tcp_flow_state& f = *table_.get(*h);
        if (f.has(flow_state::closing)) return inspection::taken; // its RST is on the way
        if (!f.has(flow_state::syn_from_guest) && !f.has(flow_state::established)) {
            inbound_handshake(vm, frame, *h, f, seg, now, out);
            return inspection::taken;
        }
        if (seg.flags.rst() || seg.flags.syn()) {
            (void)deliver_deferred(*h, 0, out); // data the burst held for the flow comes first, as sent
            if (!table_.contains(*h) || f.has(flow_state::closing)) return inspection::taken;
            (void)send_owed_acks(*h, f, max_burst_segments, out);
        }
        if (seg.flags.rst()) {
            // Accept an RST at rcv_nxt, or anywhere in the window we offered; never answer one.
            const std::uint32_t window = std::max<std::uint32_t>(std::uint32_t{f.adv_window} << f.our_shift, 1);
            if (seg.seq_number - f.rcv_nxt < window) {
                sockets_.close(h->index, true);
                ++stats_.rst_from_guest;
                forget(*h);
            }
            return inspection::taken;
        }
        if (seg.flags.syn()) {
            if (!seg.flags.ack() && f.has(flow_state::fin_from_guest) && seg.seq_number != f.rcv_nxt - 1) {
                // A new connection on the tuple of one the guest has closed (its FIN,ACK came
                // first): the old flow goes, the SYN opens a new one.
                sockets_.close(h->index, !f.has(flow_state::fin_acked));
                forget(*h);
                return open_flow(vm, frame, seg, now, resolve, out);
            }
            if (!seg.flags.ack() && f.has(flow_state::syn_to_guest) && !f.has(flow_state::established) &&
                seg.seq_number + 1 == f.rcv_nxt) {
                send_control(*h, f, wire::tcp::flag::syn | wire::tcp::flag::ack, out); // our SYN-ACK was lost
            } else if (f.has(flow_state::established)) {
                send_control(*h, f, wire::tcp::flag::ack, out); // challenge ACK (RFC 5961 4)
            }
            return inspection::taken; // a retransmitted SYN while connecting: the SYN-ACK will come
        }
        if (!seg.flags.ack()) return inspection::taken;
        if (!f.has(flow_state::syn_to_guest)) return inspection::taken; // nothing to ACK yet
        // TS.Recent (RFC 7323 §4.3): from segments that reach no further than what we ACK, so
        // that the echo on an ACK times the segment that earned it, and never backwards.
        if (seg.timestamps && f.has(flow_state::timestamps) && detail::seq_le(seg.seq_number, f.rcv_nxt) &&
            static_cast<std::int32_t>(seg.timestamps->value - f.ts_recent) >= 0) {
            f.ts_recent = seg.timestamps->value;
        }
        if (!f.has(flow_state::established)) {
            if (seg.ack_number != f.snd_una + 1) {
                send_rst_for(vm, frame, seg, out);
                return inspection::taken;
            }
            f.set(flow_state::established);
            f.snd_una = f.snd_nxt = f.snd_max = seg.ack_number;
            f.backoff = 0;
            if (f.has(flow_state::half_open)) {
                f.clear(flow_state::half_open);
                --half_open_[vm.index()]; // below max_vms: the table took the flow
            }
            f.guest_window = std::uint32_t{seg.window} << f.guest_shift;
            rearm(h->index, f, now, true);
            mark(h->index); // the host may have sent already
        } else {
            guest_ack(*h, f, seg, now, out);
            if (!table_.contains(*h)) return inspection::taken;
        }
        if (!payload.empty() && !seg.flags.fin() && burst_capacity() != 0 && !f.has(flow_state::fin_from_guest)) {
            // Held for end_burst(), which writes the burst's segments of the flow at once.
            if (deferred_.size() >= burst_capacity()) (void)end_burst(now, 0, out);
            if (table_.contains(*h)) deferred_.push_back(deferred_data{*h, seg.seq_number, payload});
        } else if (!payload.empty() || seg.flags.fin()) {
            (void)deliver_deferred(*h, 0, out); // what came before this segment goes first
            if (!table_.contains(*h) || f.has(flow_state::closing)) return inspection::taken;
            (void)send_owed_acks(*h, f, max_burst_segments, out);
            guest_data(*h, f, seg, payload, now, out);
        } else if (detail::seq_lt(seg.seq_number, f.rcv_nxt) && f.has(flow_state::established)) {
            // A zero window probe or a keepalive (no data, one before rcv_nxt): RFC 9293 3.10.7.4
            // answers a segment outside the window with an ACK. It carries our window, so a
            // window update the guest missed is not waited for forever.
            send_control(*h, f, wire::tcp::flag::ack, out);
        }
        if (!table_.contains(*h)) return inspection::taken;
        // A flow the guest keeps busy is not idle, even when the host sends nothing back.
        if (f.timer == flow_state::idle_timer) arm(h->index, f, flow_state::idle_timer, now + limits_.idle_timeout);
        finish_if_closed(*h, f);
        return inspection::taken;
    }

    // No flow.
    if (seg.flags.rst()) return inspection::taken;
    if (seg.flags.syn() && !seg.flags.ack()) return open_flow(vm, frame, seg, now, resolve, out);
    ++stats_.rst_unknown;
    send_rst_for(vm, frame, seg, out);
    return inspection::taken;
}

template <tcp_socket_layer SocketLayer>
template <class Resolve, class Out>
inspection basic_tcp_engine<SocketLayer>::open_flow(port_handle vm, const wire::parsed_frame& frame,
                                                    const wire::tcp::repr& seg, time_point now, Resolve& resolve,
                                                    Out& out) {
    const std::optional<tcp_host_target> target = resolve();
    if (!target) {
        ++stats_.refused_egress;
        send_rst_for(vm, frame, seg, out);
        return inspection::taken;
    }
    const std::uint16_t vm_index = vm.index();
    if (vm_index < half_open_.size() && half_open_[vm_index] >= limits_.vm_half_open) {
        ++stats_.dropped_half_open;
        return inspection::taken;
    }
    const flow_key key = make_key(vm_index, frame.ip_source, seg.source_port, frame.ip_destination, seg.destination_port);
    auto inserted = table_.insert(key);
    if (!inserted) {
        if (inserted.error() == flow_errc::table_full) ++stats_.refused_table_full;
        else ++stats_.refused_vm_limit;
        send_rst_for(vm, frame, seg, out);
        return inspection::taken;
    }
    const flow_handle h = *inserted;
    tcp_flow_state& f = *table_.get(h);
    f.vm = vm;
    f.vm_mac = frame.source;
    f.guest_mss = guest_mss_of(seg);
    if (const auto shift = seg.window_shift()) {
        f.guest_shift = *shift;
        f.our_shift = offered_shift();
    }
    if (seg.timestamps) {
        f.set(flow_state::timestamps);
        f.ts_recent = seg.timestamps->value;
    }
    if (seg.sack_permitted && reorder_.enabled()) f.set(flow_state::sack);
    f.rcv_nxt = seg.seq_number + 1;
    f.snd_una = next_isn();
    f.snd_nxt = f.snd_max = f.snd_una;
    f.guest_window = seg.window; // a SYN's window is never scaled
    f.set(flow_state::syn_from_guest | flow_state::half_open);
    ++half_open_[vm_index];
    if (const auto ec = sockets_.open(h.index, target->address, target->port, seg.mss ? *seg.mss : 0)) {
        ++stats_.refused_open;
        sockets_.close(h.index, true);
        send_rst_for(vm, frame, seg, out);
        forget(h);
        return inspection::taken;
    }
    ++stats_.syn_accepted;
    arm(h.index, f, flow_state::connect_timer, now + limits_.connect_timeout);
    return inspection::taken;
}

template <tcp_socket_layer SocketLayer>
template <class Adopt>
std::error_code basic_tcp_engine<SocketLayer>::open_inbound(port_handle vm, wire::mac_address vm_mac, wire::ipv4_address guest,
                                                            std::uint16_t guest_port, wire::ipv4_address remote,
                                                            std::uint16_t remote_port, time_point now, Adopt&& adopt) {
    auto inserted = table_.insert(make_key(vm.index(), guest, guest_port, remote, remote_port));
    if (!inserted) {
        ++stats_.inbound_refused;
        return inserted.error();
    }
    const flow_handle h = *inserted;
    tcp_flow_state& f = *table_.get(h);
    f.vm = vm;
    f.vm_mac = vm_mac;
    // What our SYN offers; the guest's SYN-ACK says what it takes (inbound_handshake).
    f.our_shift = offered_shift();
    f.set(flow_state::timestamps);
    if (reorder_.enabled()) f.set(flow_state::sack);
    f.snd_una = next_isn();
    f.snd_nxt = f.snd_max = f.snd_una;
    f.set(flow_state::connected);
    f.pending = flow_state::send_syn;
    if (const std::error_code ec = adopt(h.index)) {
        ++stats_.inbound_refused;
        sockets_.close(h.index, true);
        forget(h);
        return ec;
    }
    ++stats_.inbound_opened;
    tick_clock(now);
    mark(h.index);
    return {};
}

template <tcp_socket_layer SocketLayer>
template <class Out>
void basic_tcp_engine<SocketLayer>::inbound_handshake(port_handle vm, const wire::parsed_frame& frame, flow_handle h,
                                                      tcp_flow_state& f, const wire::tcp::repr& seg, time_point now,
                                                      Out& out) {
    if (!f.has(flow_state::syn_to_guest)) return; // our SYN is not out yet: nothing can answer it
    const bool acks_syn = seg.flags.ack() && seg.ack_number == f.snd_una + 1;
    if (seg.flags.rst()) {
        // RFC 9293 3.10.7.3: in SYN-SENT an RST counts when it ACKs our SYN. Nothing listens in
        // the guest: the client is reset too.
        if (!acks_syn) return;
        ++stats_.inbound_reset;
        sockets_.close(h.index, true);
        forget(h);
        return;
    }
    if (seg.flags.ack() && !acks_syn) {
        send_rst_for(vm, frame, seg, out); // an ACK of something we never sent
        return;
    }
    if (!seg.flags.syn() || !seg.flags.ack()) return; // a SYN crossing ours, or a stray segment
    f.rcv_nxt = seg.seq_number + 1;
    f.guest_mss = guest_mss_of(seg);
    if (const auto shift = seg.window_shift()) f.guest_shift = *shift;
    else f.our_shift = 0; // scaling is used only when both sides offer it (RFC 7323 2.2)
    if (seg.timestamps) f.ts_recent = seg.timestamps->value;
    else f.clear(flow_state::timestamps);
    if (!seg.sack_permitted) f.clear(flow_state::sack);
    f.snd_una = f.snd_nxt = f.snd_max = seg.ack_number;
    f.guest_window = seg.window; // a SYN's window is never scaled
    f.backoff = 0;
    f.set(flow_state::established);
    ++stats_.inbound_established;
    tick_clock(now);
    send_control(h, f, wire::tcp::flag::ack, out);
    rearm(h.index, f, now, true);
    mark(h.index); // the client may have sent already
}

template <tcp_socket_layer SocketLayer>
template <class Out>
void basic_tcp_engine<SocketLayer>::guest_ack(flow_handle h, tcp_flow_state& f, const wire::tcp::repr& seg,
                                              time_point now, Out&) {
    const std::uint32_t ack = seg.ack_number;
    const std::uint32_t window = std::uint32_t{seg.window} << f.guest_shift;
    bool work = false;
    if (detail::seq_gt(ack, f.snd_una) && detail::seq_le(ack, f.snd_max)) {
        std::uint32_t data = ack - f.snd_una;
        // Our FIN is sent only when nothing else is in flight, and is the last sequence number
        // we use: an ACK of snd_max once it was sent covers it.
        if (f.has(flow_state::fin_to_guest) && ack == f.snd_max) {
            data -= 1;
            f.set(flow_state::fin_acked);
        }
        if (data != 0) {
            if (const auto ec = sockets_.discard(h.index, data)) {
                reset_flow(h, f);
                return;
            }
        }
        f.snd_una = ack;
        if (detail::seq_lt(f.snd_nxt, ack)) f.snd_nxt = ack;
        f.dup_acks = 0;
        f.backoff = 0;
        f.clear(flow_state::probe);
        work = true;
        rearm(h.index, f, now, true);
    } else if (ack == f.snd_una && seg.payload_len == 0 && !seg.flags.fin() && window == f.guest_window &&
               f.snd_max != f.snd_una && f.guest_window != 0) {
        if (++f.dup_acks == 3) {
            rewind(f, f.snd_una);
            ++stats_.fast_retransmits;
            work = true;
        }
    }
    if (window != f.guest_window) {
        // A window that reopens without ACKing the probe sent into it: the probe was dropped.
        if (f.guest_window == 0 && f.snd_nxt != f.snd_una && !f.has(flow_state::fin_to_guest)) rewind(f, f.snd_una);
        if (window > f.guest_window) work = true;
        f.guest_window = window;
        const std::uint32_t edge = f.snd_una + window;
        if (detail::seq_lt(edge, f.snd_nxt) && !f.has(flow_state::fin_to_guest) && window != 0) {
            rewind(f, edge); // the guest took back window we had used: resend from its edge
            ++stats_.window_shrinks;
        }
        rearm(h.index, f, now, false);
    }
    // A closed window: whatever went beyond it (a probe) was not taken and is sent again later.
    if (window == 0 && f.snd_nxt != f.snd_una && !f.has(flow_state::fin_to_guest)) rewind(f, f.snd_una);
    if (work) mark(h.index);
}

/// Writes `pieces` (the guest's bytes from rcv_nxt on) to the flow's socket and moves rcv_nxt
/// past what the kernel took. False when it took less (the flow waits for writability) or the
/// connection failed (the flow is being reset).
template <tcp_socket_layer SocketLayer>
bool basic_tcp_engine<SocketLayer>::take_guest_bytes(flow_handle h, tcp_flow_state& f,
                                                     std::span<const wire::const_bytes> pieces) {
    std::size_t total = 0;
    for (const auto& p : pieces) total += p.size();
    if (total == 0) return true;
    // Even while blocked, try: the host peer may have read since, and data the socket takes now is
    // data the guest need not send again.
    const tcp_send_result sent = sockets_.send(h.index, pieces);
    ++stats_.guest_sends;
    if (sent.error) {
        reset_flow(h, f);
        return false;
    }
    f.rcv_nxt += static_cast<std::uint32_t>(sent.bytes);
    if (sent.bytes != 0) f.hole_acks = 0;
    stats_.bytes_to_host += sent.bytes;
    if (sent.bytes == total) return true;
    ++stats_.short_sends;
    if (!f.has(flow_state::send_blocked)) {
        f.set(flow_state::send_blocked);
        sockets_.want_writable(h.index);
    }
    return false;
}

/// Out-of-order data was dropped (nothing is reassembled; the guest resends from rcv_nxt): a
/// duplicate ACK per segment, the first tcp_dup_acks_per_hole per hole only. Three start the
/// guest's fast retransmit; more would each count a thrown-away segment as delivered, until its
/// Reno accounting takes the loss for reordering and stops fast retransmit for good.
template <tcp_socket_layer SocketLayer>
void basic_tcp_engine<SocketLayer>::grant_dup_acks(tcp_flow_state& f, std::size_t segments) noexcept {
    const std::size_t granted = std::min<std::size_t>(segments, tcp_dup_acks_per_hole - std::min(f.hole_acks, tcp_dup_acks_per_hole));
    f.hole_acks = static_cast<std::uint8_t>(f.hole_acks + granted);
    f.dup_acks_owed = static_cast<std::uint8_t>(f.dup_acks_owed + granted);
    stats_.dup_acks_withheld += segments - granted;
}

/// Duplicate ACKs for `segments` the flow parked beyond its hole: each one arrived, so each
/// earns one, as from a receiver that queues out-of-order data (and they count for the hole).
template <tcp_socket_layer SocketLayer>
void basic_tcp_engine<SocketLayer>::owe_dup_acks(tcp_flow_state& f, std::size_t segments) noexcept {
    f.hole_acks = static_cast<std::uint8_t>(std::min<std::size_t>(f.hole_acks + segments, 0xff));
    f.dup_acks_owed = static_cast<std::uint8_t>(std::min<std::size_t>(f.dup_acks_owed + segments, 0xff));
}

/// Parks a segment beyond the flow's hole (tcp_reorder_store). Dropped: out of the window we
/// offered, or over the VM's budget or the pool's (counted).
template <tcp_socket_layer SocketLayer>
auto basic_tcp_engine<SocketLayer>::park_segment(flow_handle h, tcp_flow_state& f, std::uint32_t seq,
                                                 wire::const_bytes payload) -> parking {
    if (!reorder_.enabled() || payload.empty()) return parking::dropped;
    // Only what the window we offered allowed: a guest cannot make us hold more than that. (Until
    // our first ACK, the window is the SYN-ACK's, unscaled and at most 65535.)
    const std::uint32_t window = std::max<std::uint32_t>(std::uint32_t{f.adv_window} << f.our_shift, 0xffff);
    if (seq - f.rcv_nxt + payload.size() > window) return parking::dropped;
    switch (reorder_.park(h.index, f.vm.index(), f.rcv_nxt, seq, payload)) {
    case park_result::parked: ++stats_.segments_parked; return parking::parked;
    case park_result::duplicate: return parking::held_already;
    case park_result::vm_full: ++stats_.park_refused_vm; return parking::dropped;
    case park_result::pool_full: ++stats_.park_refused_pool; return parking::dropped;
    case park_result::invalid: return parking::dropped;
    }
    return parking::dropped;
}

/// Writes what is parked from rcv_nxt on, now that the hole before it is filled, in gather
/// writes of up to max_burst_segments chunks. False when the socket took less (or failed), as
/// take_guest_bytes().
template <tcp_socket_layer SocketLayer>
bool basic_tcp_engine<SocketLayer>::take_parked(flow_handle h, tcp_flow_state& f) {
    std::array<wire::const_bytes, max_burst_segments> pieces{};
    bool all_taken = true;
    // Bounded: each round frees at least one chunk, or ends.
    while (reorder_.holds(h.index) && !detail::seq_gt(reorder_.first_seq(h.index), f.rcv_nxt)) {
        const std::size_t n = reorder_.contiguous(h.index, f.rcv_nxt, pieces);
        const std::uint32_t before = f.rcv_nxt;
        all_taken = n == 0 || take_guest_bytes(h, f, std::span{pieces.data(), n});
        if (!table_.contains(h) || f.has(flow_state::closing)) return false;
        stats_.parked_bytes_taken += f.rcv_nxt - before;
        reorder_.release(h.index, f.rcv_nxt);
        if (!all_taken || n < pieces.size()) break;
    }
    return all_taken;
}

/// Sends, within `room`, the ACK and the duplicate ACKs the flow is owed. Duplicate ACKs repeat
/// the window last advertised, since an ACK whose window changed is no duplicate.
template <tcp_socket_layer SocketLayer>
template <class Out>
std::size_t basic_tcp_engine<SocketLayer>::send_owed_acks(flow_handle h, tcp_flow_state& f, std::size_t room, Out& out) {
    std::size_t sent = 0;
    if ((f.pending & flow_state::send_ack) && sent < room) {
        f.pending &= static_cast<std::uint8_t>(~flow_state::send_ack);
        send_control(h, f, wire::tcp::flag::ack, out);
        ++sent;
    }
    const flow_key* k = table_.key(h);
    for (; f.dup_acks_owed != 0 && sent < room; ++sent) {
        --f.dup_acks_owed;
        ++stats_.dup_acks_sent;
        const std::size_t len = emit_segment(*k, f, wire::tcp::flag::ack, f.snd_nxt, f.rcv_nxt, f.adv_window, 0, false, h.index);
        if (len != 0) out(f.vm, wire::const_bytes{frame_.data(), len});
    }
    return sent;
}

template <tcp_socket_layer SocketLayer>
template <class Out>
std::size_t basic_tcp_engine<SocketLayer>::end_burst(time_point now, std::size_t room, Out&& out) {
    tick_clock(now);
    std::size_t sent = 0;
    // Each flow's segments side by side (in arrival order), so each flow's turn looks at its own.
    // An insertion sort: stable, in place (std::stable_sort allocates a buffer on every call), and
    // linear for the usual burst, which holds one flow or a few in runs.
    for (std::size_t i = 1; i < deferred_.size(); ++i) {
        deferred_data moving = deferred_[i];
        std::size_t at = i;
        for (; at > 0 && moving.flow.to_u64() < deferred_[at - 1].flow.to_u64(); --at) deferred_[at] = deferred_[at - 1];
        deferred_[at] = moving;
    }
    for (std::size_t i = 0, next = 0; i < deferred_.size(); i = next) {
        const flow_handle h = deferred_[i].flow;
        for (next = i + 1; next < deferred_.size() && deferred_[next].flow == h;) ++next;
        sent += deliver_deferred(h, room - sent, out, i, next);
        tcp_flow_state* f = table_.get(h);
        if (f == nullptr || f->has(flow_state::closing)) continue;
        sent += send_owed_acks(h, *f, room - sent, out);
        if ((f->pending & flow_state::send_ack) || f->dup_acks_owed != 0) mark(h.index); // for pump()
    }
    deferred_.clear();
    return sent;
}

/// The burst's data segments of flow `h`, sorted by sequence number so that frames the link
/// swapped need no retransmission: what continues from rcv_nxt goes out in one gather write, what
/// lies beyond a hole is parked (or dropped: park_segment), and parked data that now continues
/// the stream follows. An ACK for each segment taken but the last goes to `out` at once, within
/// `room` (returns how many); the flow is owed the last ACK and its duplicate ACKs.
template <tcp_socket_layer SocketLayer>
template <class Out>
std::size_t basic_tcp_engine<SocketLayer>::deliver_deferred(flow_handle h, std::size_t room, Out& out,
                                                            std::size_t from, std::size_t to) {
    std::array<deferred_data*, max_burst_segments> mine{};
    std::size_t count = 0;
    for (std::size_t i = from; i < std::min(to, deferred_.size()); ++i) {
        deferred_data& d = deferred_[i];
        if (d.flow == h && d.payload.data() != nullptr && count < mine.size()) mine[count++] = &d;
    }
    if (count == 0) return 0;
    tcp_flow_state* fp = table_.get(h);
    if (fp == nullptr || fp->has(flow_state::closing)) {
        for (std::size_t i = 0; i < count; ++i) mine[i]->payload = {};
        return 0;
    }
    tcp_flow_state& f = *fp;
    const std::uint32_t base = f.rcv_nxt;
    std::sort(mine.begin(), mine.begin() + static_cast<std::ptrdiff_t>(count),
              [base](const deferred_data* a, const deferred_data* b) { return a->seq - base < b->seq - base; });
    std::array<wire::const_bytes, max_burst_segments> pieces{};
    std::array<std::uint32_t, max_burst_segments> ack_points{}; // where each piece ends
    std::size_t used = 0;
    std::size_t first_beyond = count;
    std::uint32_t expected = base;
    for (std::size_t i = 0; i < count; ++i) {
        const deferred_data& d = *mine[i];
        const auto offset = static_cast<std::int32_t>(d.seq - expected);
        if (offset > 0) {
            first_beyond = i; // sorted: every later one lies beyond the hole too
            break;
        }
        const auto skip = static_cast<std::size_t>(-static_cast<std::int64_t>(offset));
        if (skip >= d.payload.size()) continue; // a retransmission of what is already taken
        pieces[used] = d.payload.subspan(skip);
        expected = d.seq + static_cast<std::uint32_t>(d.payload.size());
        ack_points[used++] = expected;
    }
    stats_.guest_segments_batched += used;
    bool all_taken = take_guest_bytes(h, f, std::span{pieces.data(), used});
    // What lies beyond the hole is parked (while the frames are still valid), and what was parked
    // before may continue the stream now.
    std::array<parking, max_burst_segments> parked;
    parked.fill(parking::dropped);
    if (all_taken && table_.contains(h) && !f.has(flow_state::closing)) {
        for (std::size_t i = first_beyond; i < count; ++i) parked[i] = park_segment(h, f, mine[i]->seq, mine[i]->payload);
        all_taken = take_parked(h, f);
    }
    for (std::size_t i = 0; i < count; ++i) mine[i]->payload = {};
    if (!table_.contains(h) || f.has(flow_state::closing)) return 0;
    // An ACK for each segment the socket took but the last, as if each had come alone, within
    // `room`: they offer the window as it is now that the socket has the data, read once for all.
    // Fewer (stretch ACKs over a burst) were measured to cost the guest dearly when ACKs are lost:
    // with 1% of frames towards it dropped, reordered and duplicated, a 256 MiB upload took 60 s
    // with an ACK every second segment and 120 s with one every eighth, against 2 s with one per
    // segment: without SACK a guest has no tail loss probe, and an ACK it misses at the end of a
    // flight costs it an RTO. What the burst saves is the send()s, not the ACKs.
    // The last segment's ACK is the one owed below, for rcv_nxt: when the segment filled a hole,
    // it covers what was parked behind it too, as one ACK.
    std::size_t sent = 0;
    const flow_key* k = table_.key(h);
    const std::uint16_t window = used > 1 && room != 0 ? window_field(h.index, f) : f.adv_window;
    for (std::size_t i = 0; i + 1 < used && sent < room && detail::seq_lt(ack_points[i], f.rcv_nxt); ++i, ++sent) {
        const std::size_t len = emit_segment(*k, f, wire::tcp::flag::ack, f.snd_nxt, ack_points[i], window, 0, false, h.index);
        if (len != 0) out(f.vm, wire::const_bytes{frame_.data(), len});
    }
    // Then one owed for all of it (or for a short send's window, or for segments all repeated),
    // and a duplicate one for each segment still beyond the hole: each newly parked one truly
    // arrived, and is owed one as from a receiver with a reassembly queue; dropped ones only
    // while the hole has had fewer than three; copies of what is parked already none, since the
    // guest's Reno counts each duplicate ACK as a segment that left the network, and counting
    // more than it has in flight makes it take its losses for reordering (and stop fast
    // retransmitting, leaving every loss to its RTO).
    if (used != 0 || first_beyond == count || f.rcv_nxt != base) f.pending |= flow_state::send_ack;
    if (all_taken) {
        std::size_t parked_beyond = 0;
        std::size_t dropped_beyond = 0;
        for (std::size_t i = first_beyond; i < count; ++i) {
            if (!detail::seq_gt(mine[i]->seq, f.rcv_nxt)) continue; // the stream has reached it
            if (parked[i] == parking::parked) ++parked_beyond;
            else if (parked[i] == parking::dropped) ++dropped_beyond;
        }
        owe_dup_acks(f, parked_beyond);
        grant_dup_acks(f, dropped_beyond);
    }
    return sent;
}

template <tcp_socket_layer SocketLayer>
template <class Out>
void basic_tcp_engine<SocketLayer>::guest_data(flow_handle h, tcp_flow_state& f, const wire::tcp::repr& seg,
                                               wire::const_bytes payload, time_point, Out& out) {
    const std::int32_t offset = static_cast<std::int32_t>(seg.seq_number - f.rcv_nxt);
    if (offset > 0) {
        const parking p = seg.flags.fin() ? parking::dropped : park_segment(h, f, seg.seq_number, payload);
        if (p == parking::parked) owe_dup_acks(f, 1);
        else if (p == parking::dropped) grant_dup_acks(f, 1);
        (void)send_owed_acks(h, f, 1, out);
        return;
    }
    const std::size_t skip = static_cast<std::size_t>(-static_cast<std::int64_t>(offset));
    if (f.has(flow_state::fin_from_guest)) {
        send_control(h, f, wire::tcp::flag::ack, out); // a retransmission of what we have
        return;
    }
    bool all_taken = true;
    if (skip < payload.size()) {
        const wire::const_bytes fresh = payload.subspan(skip);
        all_taken = take_guest_bytes(h, f, std::span{&fresh, 1}) && take_parked(h, f);
        if (!table_.contains(h) || f.has(flow_state::closing)) return;
    }
    // The FIN counts once every byte before it is in the socket.
    if (seg.flags.fin() && all_taken && f.rcv_nxt == seg.seq_number + static_cast<std::uint32_t>(payload.size())) {
        f.rcv_nxt += 1;
        f.set(flow_state::fin_from_guest);
        sockets_.shutdown_write(h.index);
    }
    send_control(h, f, wire::tcp::flag::ack, out);
}

template <tcp_socket_layer SocketLayer>
void basic_tcp_engine<SocketLayer>::socket_event(std::uint32_t slot, tcp_socket_event event, std::error_code ec) {
    const auto h = table_.handle_at(slot);
    if (!h) return;
    tcp_flow_state& f = *table_.get(*h);
    if (f.has(flow_state::closing)) return;
    switch (event) {
    case tcp_socket_event::connected:
        if (f.has(flow_state::connected)) return;
        if (ec) {
            sockets_.close(slot, true);
            const auto v = ec.value();
            if (ec.category() == std::system_category() && (v == EHOSTUNREACH || v == ENETUNREACH)) {
                f.pending = v == EHOSTUNREACH ? flow_state::send_icmp_host : flow_state::send_icmp_net;
                ++stats_.connect_unreachable;
            } else {
                f.pending = flow_state::send_rst;
                ++stats_.connect_refused;
            }
            f.set(flow_state::closing);
            wheel_.cancel(slot);
        } else {
            f.set(flow_state::connected);
            f.pending = flow_state::send_synack;
            ++stats_.connected;
        }
        break;
    case tcp_socket_event::readable:
        f.clear(flow_state::read_wait);
        break;
    case tcp_socket_event::writable:
        if (f.has(flow_state::send_blocked) || f.has(flow_state::window_closed)) {
            f.clear(flow_state::send_blocked);
            f.clear(flow_state::window_closed);
            // Parked data a short send left behind goes first; the ACK then covers it too.
            if (!take_parked(*h, f) && (!table_.contains(*h) || f.has(flow_state::closing))) return;
            f.pending |= flow_state::send_ack; // the window opened
        }
        break;
    }
    mark(slot);
}

template <tcp_socket_layer SocketLayer>
void basic_tcp_engine<SocketLayer>::advance(time_point now) {
    wheel_.advance(now, [&](std::uint32_t slot) { on_timer(slot, now); });
}

template <tcp_socket_layer SocketLayer>
void basic_tcp_engine<SocketLayer>::on_timer(std::uint32_t slot, time_point now) {
    const auto h = table_.handle_at(slot);
    if (!h) return;
    tcp_flow_state& f = *table_.get(*h);
    const std::uint8_t kind = f.timer;
    f.timer = flow_state::no_timer;
    if (f.has(flow_state::closing)) return;
    switch (kind) {
    case flow_state::connect_timer:
        if (f.has(flow_state::connected)) break;
        ++stats_.connect_timeouts;
        reset_flow(*h, f, false);
        return;
    case flow_state::rto_timer:
        if (f.snd_una == f.snd_max) break;
        if (f.has(flow_state::established) && f.guest_window == 0) {
            // A probe (or data) into a window the guest has closed: probe again, never give up.
            if (f.backoff < limits_.max_retransmits) ++f.backoff;
            rewind(f, f.snd_una);
            f.set(flow_state::probe);
            arm(slot, f, flow_state::rto_timer, now + rto(f));
            mark(slot);
            return;
        }
        {
            const bool inbound_syn = !f.has(flow_state::syn_from_guest) && !f.has(flow_state::established);
            if (f.backoff >= (inbound_syn ? limits_.inbound_syn_retries : limits_.max_retransmits)) {
                if (inbound_syn) ++stats_.inbound_timeouts;
                reset_flow(*h, f);
                return;
            }
        }
        ++f.backoff;
        ++stats_.retransmits;
        rewind(f, f.snd_una);
        f.dup_acks = 0;
        if (!f.has(flow_state::established)) {
            f.pending |= f.has(flow_state::syn_from_guest) ? flow_state::send_synack : flow_state::send_syn;
        }
        arm(slot, f, flow_state::rto_timer, now + rto(f));
        mark(slot);
        return;
    case flow_state::persist_timer:
        if (f.guest_window == 0 && f.snd_una == f.snd_max) {
            if (f.backoff < limits_.max_retransmits) ++f.backoff;
            f.set(flow_state::probe);
            arm(slot, f, flow_state::persist_timer, now + rto(f));
            mark(slot);
            return;
        }
        break;
    case flow_state::idle_timer:
        ++stats_.idle_timeouts;
        reset_flow(*h, f);
        return;
    default: break;
    }
    rearm(slot, f, now, false);
}

template <tcp_socket_layer SocketLayer>
template <class Out>
std::size_t basic_tcp_engine<SocketLayer>::pump(time_point now, std::size_t room, Out&& out) {
    std::size_t sent = 0;
    tick_clock(now);
    while (fifo_count_ != 0 && sent < room) {
        const std::uint32_t slot = fifo_[fifo_head_];
        bool done = true;
        if (const auto h = table_.handle_at(slot)) {
            sent += pump_flow(*h, *table_.get(*h), now, room - sent, out, done);
        }
        if (!done) break;
        queued_[slot] = 0;
        fifo_head_ = (fifo_head_ + 1) % fifo_.size();
        --fifo_count_;
    }
    return sent;
}

template <tcp_socket_layer SocketLayer>
template <class Out>
std::size_t basic_tcp_engine<SocketLayer>::pump_flow(flow_handle h, tcp_flow_state& f, time_point now,
                                                     std::size_t room, Out& out, bool& done) {
    std::size_t sent = 0;
    const auto full = [&] {
        if (sent < room) return false;
        done = false;
        return true;
    };
    if (f.pending & flow_state::send_rst) {
        send_reset(h, f, out);
        return 1;
    }
    if (f.pending & (flow_state::send_icmp_host | flow_state::send_icmp_net)) {
        send_unreachable(h, f, (f.pending & flow_state::send_icmp_host) ? wire::icmp::unreachable_code::host
                                                                        : wire::icmp::unreachable_code::net,
                         out);
        forget(h);
        return 1;
    }
    if (f.pending & flow_state::send_syn) {
        f.pending &= static_cast<std::uint8_t>(~flow_state::send_syn);
        f.set(flow_state::syn_to_guest);
        send_control(h, f, wire::tcp::flag_set{wire::tcp::flag::syn}, out);
        f.snd_nxt = f.snd_max = f.snd_una + 1;
        rearm(h.index, f, now, true);
        ++sent;
        if (full()) return sent;
    }
    if (f.pending & flow_state::send_synack) {
        f.pending &= static_cast<std::uint8_t>(~flow_state::send_synack);
        f.set(flow_state::syn_to_guest);
        send_control(h, f, wire::tcp::flag::syn | wire::tcp::flag::ack, out);
        f.snd_nxt = f.snd_max = f.snd_una + 1;
        rearm(h.index, f, now, true);
        ++sent;
        if (full()) return sent;
    }
    sent += send_owed_acks(h, f, room - sent, out);
    if (full() || f.dup_acks_owed != 0) return sent;
    if (!f.has(flow_state::established)) return sent;

    // Data from the host, up to the guest's window. The window we offer is read once per round
    // (two syscalls in the Asio layer), not per frame.
    bool progressed = false;
    // Whether a peek at snd_nxt found end of file: every byte is sent. host_eof alone does not
    // say so: after a rewind (fast retransmit, RTO) the bytes between snd_una and the end are
    // still to be sent again, and a FIN at snd_una would truncate the stream.
    bool at_eof = false;
    std::optional<std::uint16_t> window;
    const bool gso = gso_for(out, f.vm);
    while (!f.has(flow_state::fin_to_guest)) {
        const std::uint32_t offset = f.snd_nxt - f.snd_una;
        std::uint32_t room_bytes = 0;
        const std::uint32_t edge = f.snd_una + f.guest_window;
        if (detail::seq_gt(edge, f.snd_nxt)) room_bytes = edge - f.snd_nxt;
        if (room_bytes == 0 && f.has(flow_state::probe) && offset == 0) room_bytes = 1; // zero-window probe
        if (f.has(flow_state::read_wait)) break;
        if (room_bytes == 0 && offset == 0) {
            // A closed window must not hide the host's end of file: our FIN needs no window
            // (gVisor #13393). One byte is peeked and not sent, just to tell data from EOF.
            const tcp_peek_result got = sockets_.peek(h.index, 0, payload_area(f, 1));
            if (got.error) {
                reset_flow(h, f);
                if (sent < room) {
                    send_reset(h, f, out);
                    ++sent;
                } else {
                    done = false;
                }
                return sent;
            }
            if (got.eof) {
                f.set(flow_state::host_eof);
                at_eof = true;
            } else if (got.bytes == 0) {
                f.set(flow_state::read_wait);
                sockets_.want_readable(h.index);
            }
            break;
        }
        if (room_bytes == 0 || offset >= sockets_.max_peek_offset()) break;
        std::size_t len = std::min<std::size_t>({gso ? gso_payload(f) : segment_payload(f), room_bytes,
                                                 sockets_.max_peek_offset() - offset});
        const tcp_peek_result got = sockets_.peek(h.index, offset, payload_area(f, len));
        if (got.error) {
            reset_flow(h, f);
            if (sent < room) {
                send_reset(h, f, out);
                ++sent;
            } else {
                done = false;
            }
            return sent;
        }
        if (got.bytes == 0) {
            if (got.eof) {
                f.set(flow_state::host_eof);
                at_eof = true;
            } else {
                f.set(flow_state::read_wait);
                sockets_.want_readable(h.index);
            }
            break;
        }
        if (f.has(flow_state::probe)) {
            f.clear(flow_state::probe);
            ++stats_.zero_window_probes;
        }
        const auto flags = got.bytes < len ? wire::tcp::flag::psh | wire::tcp::flag::ack
                                           : wire::tcp::flag_set{wire::tcp::flag::ack};
        if (!window) window = window_field(h.index, f);
        // More than one segment's worth goes as a super-frame, its checksum left to the kernel.
        const std::size_t mss = segment_payload(f);
        const bool super = gso && got.bytes > mss;
        const std::size_t flen = emit_segment(*table_.key(h), f, flags, f.snd_nxt, f.rcv_nxt, *window, got.bytes,
                                              false, std::nullopt, super);
        if (flen == 0) break;
        const wire::const_bytes bytes{frame_.data(), flen};
        if (!super) {
            out(f.vm, bytes);
        } else if constexpr (out_takes_metadata<Out>) { // gso_for() said so
            const std::size_t tcp_header = wire::tcp::header_len + options_len(f);
            out(f.vm, bytes,
                wire::offload::tcpv4_gso(guest_headers_len, guest_headers_len + tcp_header, static_cast<std::uint16_t>(mss)));
            ++stats_.super_frames_to_guest;
        }
        stats_.bytes_to_guest += got.bytes;
        f.snd_nxt += static_cast<std::uint32_t>(got.bytes);
        if (detail::seq_gt(f.snd_nxt, f.snd_max)) f.snd_max = f.snd_nxt;
        progressed = true;
        ++sent;
        if (full()) break;
    }
    if (progressed && f.timer != flow_state::rto_timer) rearm(h.index, f, now, true);
    if (!done) return sent;

    // Our FIN: only when the host has finished and the guest ACKed every byte before it (the
    // peek at snd_nxt == snd_una found end of file); again after a rewind while it is not ACKed.
    if (f.has(flow_state::host_eof) && !f.has(flow_state::fin_acked) && f.snd_nxt == f.snd_una &&
        (at_eof || f.has(flow_state::fin_to_guest))) {
        send_control(h, f, wire::tcp::flag::fin | wire::tcp::flag::ack, out);
        f.set(flow_state::fin_to_guest);
        f.snd_nxt += 1;
        if (detail::seq_gt(f.snd_nxt, f.snd_max)) f.snd_max = f.snd_nxt;
        rearm(h.index, f, now, true);
        ++sent;
    }
    if (!progressed) rearm(h.index, f, now, false);
    return sent;
}

} // namespace ankanet::nat
