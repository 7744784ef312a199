// ankanet::backend — what every way of moving a VM's frames has in common.
//
// A backend is one VM's NIC as ankanet sees it: frames come in through `async_receive`, go out
// through `send`. The contract, for every backend:
//  * async_receive(buffer, handler) completes with exactly one frame of a valid size — at least an
//    Ethernet header, at most `max_frame_len(mtu())` — or with an error: std::errc::operation_canceled
//    after close(), errc::peer_closed when the peer went away. Errors are std::error_code throughout. Frames of a bad size never reach the caller; they are
//    counted (rx_runt, rx_oversize) and skipped. One receive may be outstanding at a time.
//  * send(frame) hands one frame to the peer and returns at once: the bytes are copied or written
//    before it returns, so the caller may reuse its buffer. When the peer cannot take it now
//    (a full queue, a socket that would block), the frame is dropped and counted (tx_dropped), as
//    a NIC drops on a full ring; it is never queued without bound.
//  * mtu() is the largest IP packet a frame may carry; mac() is the MAC the layer below imposes,
//    when it imposes one (vmnet does; a TAP or a QEMU socket does not).
//  * Backends are not thread-safe: use one from its executor's thread (post to it from elsewhere).
#pragma once

#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/ethernet.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <system_error>

namespace ankanet::backend {

inline constexpr std::size_t default_mtu = 1500;
/// The largest MTU any backend accepts (a 64 KiB jumbo frame, as passt allows).
inline constexpr std::size_t max_mtu = 65520;
inline constexpr std::size_t min_mtu = 576;

/// The longest frame a backend with this MTU passes: payload, Ethernet header and one VLAN tag.
constexpr std::size_t max_frame_len(std::size_t mtu) noexcept {
    return mtu + wire::ethernet::header_len + wire::ethernet::vlan_tag_len;
}

/// Per-backend counters. Plain integers: a backend is used from one thread.
struct counters {
    std::uint64_t rx_frames = 0;   ///< frames delivered to async_receive callers
    std::uint64_t rx_bytes = 0;
    std::uint64_t rx_runt = 0;     ///< dropped: shorter than an Ethernet header
    std::uint64_t rx_oversize = 0; ///< dropped: longer than the MTU allows, or a lying length prefix
    std::uint64_t tx_frames = 0;   ///< frames handed to the peer
    std::uint64_t tx_bytes = 0;
    std::uint64_t tx_dropped = 0;  ///< dropped: the peer could not take them now, or was gone
    std::uint64_t tx_invalid = 0;  ///< refused by send: bad size

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

} // namespace ankanet::backend
