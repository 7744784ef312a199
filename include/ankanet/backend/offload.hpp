/// @file
/// ankanet::backend — sending a frame that carries offload metadata, to any backend.
///
/// Theory of operation. A frame with a wire::offload (an unfinished checksum, a 64 KiB TCP
/// super-frame) can only go as it is to a backend that passes the metadata on — a TAP opened with
/// a virtio-net header, whose kernel finishes the work. Every other backend needs the frames a NIC
/// would have put on the wire. send_offloaded() makes that choice once, for all of them:
///  * metadata that asks for nothing: backend.send(frame);
///  * an `offload_backend` that accepts_offload() now: backend.send(frame, meta), one call;
///  * otherwise wire::segment() finishes the checksum and cuts the super-frame in software, and
///    each resulting frame goes through backend.send(). A segment the backend refuses or drops is
///    counted there, as any frame is; the others are still sent (TCP retransmits the one lost), and
///    the first error is returned.
/// The software path builds one segment at a time in a buffer owned by the calling thread, made on
/// its first use (wire::offload::max_frame_len bytes), so a send allocates nothing. Segments are
/// as long as the super-frame's headers plus gso_size: the sender picks gso_size to fit the
/// receiving backend's MTU, as a guest's TCP does from the MSS.
#pragma once

#include <ankanet/backend/backend.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/offload.hpp>

#include <concepts>
#include <cstddef>
#include <memory>
#include <system_error>

namespace ankanet::backend {

/// The optional named requirement of a backend that can take a frame together with its offload
/// metadata: `send(frame, offload)`, and whether it does so now (`accepts_offload()`, which may
/// depend on how the device was opened).
template <class Backend>
concept offload_backend = frame_backend<Backend> &&
                          requires(Backend& b, const Backend& cb, wire::const_bytes frame, const wire::offload& meta) {
                              { b.send(frame, meta) } -> std::same_as<std::error_code>;
                              { cb.accepts_offload() } -> std::same_as<bool>;
                          };

namespace detail {

/// The calling thread's segmentation buffer, made once per thread.
inline wire::mutable_bytes segment_scratch() {
    thread_local const std::unique_ptr<std::byte[]> buffer{new std::byte[wire::offload::max_frame_len]};
    return {buffer.get(), wire::offload::max_frame_len};
}

} // namespace detail

/// Sends `frame` with offload metadata `meta` through `backend`, natively or in software (see the
/// top of this file).
/// @return empty when every frame was sent; else wire::segment()'s error for a frame it cannot
/// cut (nothing sent then), or the first error backend.send() returned.
///
/// @par Example
/// @code
/// // A super-frame from a TAP with TSO4 on, to a QEMU stream socket that knows no offloads:
/// auto n = tap.try_receive(buffer);
/// if (n) send_offloaded(qemu, buffer.first(*n), tap.last_offload());
/// @endcode
template <frame_backend Backend>
std::error_code send_offloaded(Backend& backend, wire::const_bytes frame, const wire::offload& meta) {
    if (meta.is_plain()) return backend.send(frame);
    if constexpr (offload_backend<Backend>) {
        if (backend.accepts_offload()) return backend.send(frame, meta);
    }
    std::error_code first;
    const auto cut = wire::segment(frame, meta, detail::segment_scratch(), [&](wire::mutable_bytes piece) {
        if (auto ec = backend.send(piece); ec && !first) first = ec;
    });
    return cut ? cut : first;
}

} // namespace ankanet::backend
