/// @file
/// ankanet::backend — what every way of moving a VM's frames has in common.
///
/// A backend is one VM's NIC as ankanet sees it: frames come in through `async_receive`, go out
/// through `send`. The contract, for every backend:
///  * async_receive(buffer, handler) completes with exactly one frame of a valid size — at least an
///    Ethernet header, at most `max_frame_len(mtu())` — or with an error: std::errc::operation_canceled
///    after close(), errc::peer_closed when the peer went away. Errors are std::error_code throughout. Frames of a bad size never reach the caller; they are
///    counted (rx_runt, rx_oversize) and skipped. One receive may be outstanding at a time.
///  * send(frame) hands one frame to the peer and returns at once: the bytes are copied or written
///    before it returns, so the caller may reuse its buffer. When the peer cannot take it now
///    (a full queue, a socket that would block), the frame is dropped and counted (tx_dropped), as
///    a NIC drops on a full ring; it is never queued without bound.
///  * mtu() is the largest IP packet a frame may carry; mac() is the MAC the layer below imposes,
///    when it imposes one (vmnet does; a TAP or a QEMU socket does not).
///  * Backends are not thread-safe: use one from its executor's thread (post to it from elsewhere).
///
/// Bursts (optional, the `burst_backend` concept). An async_receive completion costs a turn of the
/// event loop (an epoll_wait and a posted handler) for every frame; a backend that can hand over a
/// frame synchronously offers `try_receive(buffer) -> result<std::size_t>`, and a caller drains a
/// burst with it after each completion, paying the loop's round trip once per burst. One convention
/// for every backend that has it:
///  * a frame: its size, with the same checks and counters as async_receive (bad sizes counted and
///    skipped, rx_frames and rx_bytes counted for what is delivered);
///  * nothing queued right now: std::errc::resource_unavailable_try_again (`nothing_queued`, test it
///    with is_nothing_queued()) — the caller goes back to async_receive, which waits;
///  * an async_receive is pending: std::errc::operation_in_progress — a caller's bug, never a link
///    state: the pending receive keeps its frame;
///  * anything else is what async_receive would have completed with (operation_canceled after
///    close(), errc::peer_closed, errc::buffer_too_small, ...), and means the same.
/// try_receive never blocks and never completes anything through the executor.
#pragma once

#include <ankanet/error.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/ethernet.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <system_error>

namespace ankanet::backend {

/// default MTU
inline constexpr std::size_t default_mtu = 1500;
/// The largest MTU any backend accepts (a 64 KiB jumbo frame, as passt allows).
inline constexpr std::size_t max_mtu = 65520;
inline constexpr std::size_t min_mtu = 576; ///< the smallest MTU accepted: the datagram size every IPv4 host must take (RFC 791)

/// The longest frame a backend with this MTU passes: payload, Ethernet header and one VLAN tag.
constexpr std::size_t max_frame_len(std::size_t mtu) noexcept {
    return mtu + wire::ethernet::header_len + wire::ethernet::vlan_tag_len;
}

/// Per-backend counters. Plain integers: a backend is used from one thread.
struct counters {
    std::uint64_t rx_frames = 0;   ///< frames delivered to async_receive (and try_receive) callers
    std::uint64_t rx_bytes = 0;    ///< bytes of those frames
    std::uint64_t rx_runt = 0;     ///< dropped: shorter than an Ethernet header
    std::uint64_t rx_oversize = 0; ///< dropped: longer than the MTU allows, or a lying length prefix
    std::uint64_t tx_frames = 0;   ///< frames handed to the peer
    std::uint64_t tx_bytes = 0;    ///< bytes of those frames
    std::uint64_t tx_dropped = 0;  ///< dropped: the peer could not take them now, or was gone
    std::uint64_t tx_invalid = 0;  ///< refused by send: bad size

    /// Memberwise equality.
    bool operator==(const counters&) const noexcept = default;
};

/// Why a received frame is refused, or none: the size rule every backend applies.
inline std::error_code check_frame_size(std::size_t size, std::size_t mtu) noexcept {
    if (size < wire::ethernet::header_len) return errc::truncated;
    if (size > max_frame_len(mtu)) return errc::bad_length;
    return {};
}

/// Counts a frame of a refused size on the receive side.
inline void count_bad_rx(counters& stats, std::error_code why) noexcept {
    if (why == errc::truncated) {
        ++stats.rx_runt;
    } else {
        ++stats.rx_oversize;
    }
}

namespace detail {
/// Stands for any completion handler in the concept below.
struct receive_handler_archetype {
    void operator()(std::error_code, std::size_t) const {}
};
} // namespace detail

/// The named requirement of a frame backend; see the contract at the top of this file.
template <class Backend>
concept frame_backend = requires(Backend& b, const Backend& cb, wire::mutable_bytes buffer, wire::const_bytes frame) {
    typename Backend::executor_type;
    { b.get_executor() } -> std::convertible_to<typename Backend::executor_type>;
    b.async_receive(buffer, detail::receive_handler_archetype{});
    { b.send(frame) } -> std::same_as<std::error_code>;
    { cb.mtu() } -> std::convertible_to<std::size_t>;
    { cb.mac() } -> std::same_as<std::optional<wire::mac_address>>;
    { cb.stats() } -> std::convertible_to<counters>;
    b.close();
};

/// What try_receive returns when no frame is queued now (see "Bursts" at the top of this file).
inline constexpr std::errc nothing_queued = std::errc::resource_unavailable_try_again;

/// Whether a try_receive error only says "nothing queued now": wait with async_receive.
inline bool is_nothing_queued(std::error_code ec) noexcept { return ec == nothing_queued; }

/// The optional named requirement of a backend whose frames can be taken synchronously, to drain
/// a burst after an async_receive completion; see "Bursts" at the top of this file.
///
/// @par Example
/// @code
/// // In an async_receive completion that delivered a frame:
/// if constexpr (burst_backend<Backend>) {
///     for (int more = 0; more < 63; ++more) { // bounded: other links share the event loop
///         auto n = backend.try_receive(buffer);
///         if (!n && is_nothing_queued(n.error())) break;
///         if (!n) return on_error(n.error()); // as if async_receive had completed with it
///         handle(buffer.first(*n));
///     }
/// }
/// backend.async_receive(buffer, ...); // wait for the next burst
/// @endcode
template <class Backend>
concept burst_backend = frame_backend<Backend> && requires(Backend& b, wire::mutable_bytes buffer) {
    { b.try_receive(buffer) } -> std::same_as<result<std::size_t>>;
};

} // namespace ankanet::backend
