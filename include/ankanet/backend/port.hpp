/// @file
/// ankanet::backend::port — one VM's link with its backend type erased, running its own receive loop.
///
/// Theory of operation. A network holds VMs attached through different backends at once (a TAP, a
/// QEMU socket, a vfkit datagram socket). `make_port(name, backend)` wraps any frame_backend into a
/// `port` that the switch and the daemon handle alike: start() arms the backend's receive and re-arms
/// it after each burst, handing every frame to `on_frame` and calling `on_burst_end` once the burst
/// is over; the first error (peer gone, close(), a failed read) ends the loop and calls `on_closed`
/// once. Ports are shared_ptr-owned: the pending receive holds the port alive.
///
/// Bursts. A completion of async_receive costs a turn of the event loop per frame (a posted handler
/// and an epoll_wait), which holds a link below a million frames a second. When the backend
/// models burst_backend (backend.hpp), each completion is followed by try_receive calls that deliver
/// what is already queued, up to burst_frames() frames per turn in all, in the order the backend
/// gives them; "nothing queued" (or the limit) ends the burst and re-arms async_receive. An error
/// from try_receive ends the burst, then the loop exactly as if async_receive had completed with it
/// (on_closed), since a non-blocking read may report a one-time error that the next async_receive
/// would not see again. The limit is what keeps the ports of one io_context fair: a flooded port
/// yields after a burst, and its next completion queues behind the handlers of every other port
/// that is ready.
///
/// Frames live until the burst ends. Every frame span given to `on_frame` stays valid, and
/// unchanged, until `on_burst_end` returns (when the burst ends in an error: until on_burst_end has
/// returned and on_closed is called). So a consumer may keep spans into a burst's frames and act on
/// them all at once at its end: send a flow's datagrams in one sendmmsg whose iovecs point into the
/// frames, acknowledge once per burst (passt's model). Where the frames are:
///  - the first, which async_receive completed with, in the port's own receive buffer of
///    max_frame_len(mtu) bytes (it is pending between bursts, so it must be the port's);
///  - the others, which try_receive takes synchronously, in consecutive regions of max_frame_len(mtu)
///    bytes of one contiguous burst arena, region i - 1 holding frame i. The arena belongs to the
///    thread, not the port: a burst runs within one handler, start to end, and the handlers of one
///    thread never overlap, so one arena serves every port whose loop runs on that thread, and an
///    idle port costs no more than its receive buffer. (A burst that would begin inside another's
///    handler — nothing does that — is held to its first frame instead of sharing the arena.)
/// A burst holds burst_frames(mtu) = min(port_burst_limit, port_arena_budget / max_frame_len(mtu))
/// frames (at least one), and ends early when the arena is full. Memory: per port, the receive
/// buffer (1518 bytes at MTU 1500; 300 idle QEMU connections stay under 4 KiB of heap each,
/// tests/backend/qemu_stream_test.cpp); per thread, the arena, allocated at the first burst of more
/// than one frame and grown to the largest a port of the thread needs, never past 1 MiB: 63 regions
/// of 1518 bytes (94 KiB) at MTU 1500, 63 of 9018 (555 KiB) at MTU 9000, and at the largest MTU,
/// 65520, 14 of 65538 (896 KiB) for bursts of 15 frames.
///
/// Offload metadata (backend/offload.hpp, wire/offload.hpp). send(frame, offload) hands a frame with
/// its virtio-net header to the backend through send_offloaded(): as it is to a backend that takes
/// offloads now (a TAP opened with tap_options::vnet_header), cut and finished in software for any
/// other. On receive, a backend that reports the header of the frame it delivered (`last_offload()`,
/// the TAP) has it read by received_offload() while on_frame runs; for every other backend it is
/// all clear. A backend that may deliver frames longer than its MTU allows (`max_receive_len()`: a
/// TAP with TSO4 takes 64 KiB super-frames) gets a receive buffer, and arena regions, that long, and
/// so fewer frames per burst (port_arena_budget / 65,553: 15).
#pragma once

#include <ankanet/backend/backend.hpp>
#include <ankanet/backend/offload.hpp>
#include <ankanet/wire/offload.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace ankanet::backend {

/// The most frames a port delivers in one turn of the event loop when its backend drains bursts:
/// the frame async_receive completed with, then up to port_burst_limit - 1 from try_receive. 64
/// amortises the loop's round trip almost fully (bench/port_bench.cpp) while one flooded VM holds
/// the loop for no more than 64 frames' handling before the other ports get their turn.
inline constexpr std::size_t port_burst_limit = 64;

/// The most bytes the frames of one burst may take (see "Frames live until the burst ends" above): a
/// jumbo MTU gets fewer frames per burst rather than more memory.
inline constexpr std::size_t port_arena_budget = std::size_t{1} << 20;

/// How many frames of up to `region_len` bytes one burst holds: port_burst_limit, fewer where that
/// many would pass port_arena_budget, never none.
constexpr std::size_t burst_frames_of(std::size_t region_len) noexcept {
    const std::size_t fit = port_arena_budget / region_len;
    return fit == 0 ? 1 : (fit < port_burst_limit ? fit : port_burst_limit);
}

/// How many frames one burst of a port whose backend has this MTU holds: burst_frames_of(max_frame_len(mtu)).
constexpr std::size_t burst_frames(std::size_t mtu) noexcept { return burst_frames_of(max_frame_len(mtu)); }

/// The optional named requirement of a backend that reports the offload metadata of the frame a
/// receive just delivered (`last_offload()`, read before the next receive) and may deliver frames
/// of up to `max_receive_len()` bytes: the TAP with a virtio-net header.
template <class Backend>
concept offload_receiver = frame_backend<Backend> && requires(const Backend& cb) {
    { cb.last_offload() } -> std::convertible_to<const wire::offload&>;
    { cb.max_receive_len() } -> std::convertible_to<std::size_t>;
};

/// The receive buffer a port gives `backend`: max_frame_len(mtu), or longer where an
/// offload_receiver may deliver super-frames.
template <frame_backend Backend>
std::size_t port_receive_len(const Backend& backend) {
    const std::size_t plain = max_frame_len(backend.mtu());
    if constexpr (offload_receiver<Backend>) {
        const std::size_t longest = backend.max_receive_len();
        return longest > plain ? longest : plain;
    } else {
        return plain;
    }
}

/// One VM's link, its backend type erased, running its own receive loop (see the theory of
/// operation).
class port : public std::enable_shared_from_this<port> {
public:
    using frame_handler = std::function<void(port&, wire::const_bytes)>; ///< the frame handler type
    using close_handler = std::function<void(port&, std::error_code)>; ///< the close handler type

    /// A port whose logs call it `name`.
    explicit port(std::string name) : name_(std::move(name)) {}
    virtual ~port() = default;
    port(const port&) = delete;
    port& operator=(const port&) = delete;

    /// What logs call this VM's link, e.g. "netns:/run/netns/vm1:eth0".
    const std::string& name() const noexcept { return name_; }

    /// Sends one frame on the link.
    virtual std::error_code send(wire::const_bytes frame) = 0;
    /// Sends a frame with its offload metadata: natively where the backend takes it, else cut and
    /// finished in software into frames for send(frame) (backend::send_offloaded).
    virtual std::error_code send(wire::const_bytes frame, const wire::offload& meta) = 0;
    /// Whether send(frame, meta) passes the metadata on as it is now (a TAP opened with a virtio-net
    /// header), rather than cutting the frame in software: a sender then builds super-frames.
    virtual bool accepts_offload() const { return false; }
    /// The offload metadata of the frame on_frame is handed now (all clear where the backend
    /// reports none); valid during on_frame.
    virtual wire::offload received_offload() const { return {}; }
    /// The backend's counters.
    virtual counters stats() const = 0;
    /// The link's MTU.
    virtual std::size_t mtu() const = 0;
    /// The MAC the backend imposes on the VM, if any.
    virtual std::optional<wire::mac_address> mac() const = 0;
    using burst_handler = std::function<void(port&)>; ///< the burst handler type

    /// The most frames one burst delivers: burst_frames(mtu()) where the backend drains bursts (fewer
    /// where its receive buffer is longer, see "Offload metadata" above), 1 where it does not.
    virtual std::size_t burst_capacity() const = 0;

    /// Ends the link; the receive loop then finishes with on_closed.
    virtual void close() = 0;
    /// Starts the receive loop. Call once.
    void start(frame_handler on_frame, close_handler on_closed) { start_loop(std::move(on_frame), std::move(on_closed), {}); }
    /// As above; `on_burst_end` is called after each burst of frames one event-loop turn delivered
    /// (one frame, or up to burst_capacity() where the backend drains bursts), so a caller can do
    /// per-burst work once: read the clock, flush a capture file, send what it batched. Every frame
    /// span `on_frame` was given in the burst is valid and unchanged until on_burst_end returns.
    void start(frame_handler on_frame, close_handler on_closed, burst_handler on_burst_end) {
        start_loop(std::move(on_frame), std::move(on_closed), std::move(on_burst_end));
    }
    /// Whether running.
    bool running() const noexcept { return running_; }

protected:
    /// Starts the backend's receive loop; start() calls it.
    virtual void start_loop(frame_handler on_frame, close_handler on_closed, burst_handler on_burst_end) = 0;

    bool running_ = false; ///< running 

private:
    std::string name_;
};

namespace detail {

/// The burst arena of the calling thread: where a port's try_receive puts the frames of a burst
/// after its first (see "Frames live until the burst ends" above).
class burst_arena {
public:
    /// The calling thread's arena.
    static burst_arena& local() noexcept {
        thread_local burst_arena arena;
        return arena;
    }

    /// Takes the arena for one burst needing `bytes`, growing it if it is smaller; none if a burst
    /// holds it already (the caller then delivers its first frame alone). release() gives it back.
    std::byte* acquire(std::size_t bytes) {
        if (in_use_) return nullptr;
        if (storage_.size() < bytes) storage_.resize(bytes);
        in_use_ = true;
        return storage_.data();
    }
    void release() noexcept { in_use_ = false; }
    std::size_t size() const noexcept { return storage_.size(); }

private:
    std::vector<std::byte> storage_;
    bool in_use_ = false;
};

template <frame_backend Backend>
class backend_port final : public port {
public:
    backend_port(std::string name, Backend backend)
        : port(std::move(name)), backend_(std::move(backend)), buffer_(port_receive_len(backend_)),
          burst_capacity_(burst_backend<Backend> ? burst_frames_of(buffer_.size()) : 1) {}

    std::error_code send(wire::const_bytes frame) override { return backend_.send(frame); }
    std::error_code send(wire::const_bytes frame, const wire::offload& meta) override {
        return send_offloaded(backend_, frame, meta);
    }
    bool accepts_offload() const override {
        if constexpr (offload_backend<Backend>) return backend_.accepts_offload();
        else return false;
    }
    wire::offload received_offload() const override {
        if constexpr (offload_receiver<Backend>) return backend_.last_offload();
        else return {};
    }
    counters stats() const override { return backend_.stats(); }
    std::size_t mtu() const override { return backend_.mtu(); }
    std::optional<wire::mac_address> mac() const override { return backend_.mac(); }
    void close() override { backend_.close(); }
    std::size_t burst_capacity() const override { return burst_capacity_; }

private:
    void start_loop(frame_handler on_frame, close_handler on_closed, burst_handler on_burst_end) override {
        on_frame_ = std::move(on_frame);
        on_closed_ = std::move(on_closed);
        on_burst_end_ = std::move(on_burst_end);
        running_ = true;
        receive_next();
    }

private:
    void receive_next() {
        auto self = std::static_pointer_cast<backend_port>(shared_from_this());
        backend_.async_receive(wire::mutable_bytes{buffer_},
                               [self](std::error_code ec, std::size_t n) { self->received(ec, n); });
    }

    /// Holds the thread's arena for one burst, and gives it back however the burst ends.
    struct arena_hold {
        burst_arena& arena;
        std::byte* regions = nullptr;
        ~arena_hold() {
            if (regions != nullptr) arena.release();
        }
    };

    /// An async_receive completed: deliver its frame and the rest of the burst, the rest each into
    /// the next region of the thread's arena, then end the burst and re-arm.
    void received(std::error_code ec, std::size_t n) {
        if (ec) return finish(ec);
        on_frame_(*this, wire::const_bytes{buffer_.data(), n});
        {
            arena_hold hold{burst_arena::local()}; // held until the burst has ended, its frames with it
            if constexpr (burst_backend<Backend>) {
                const std::size_t region_len = buffer_.size();
                if (burst_capacity_ > 1) hold.regions = hold.arena.acquire((burst_capacity_ - 1) * region_len);
                for (std::size_t delivered = 1; hold.regions != nullptr && delivered < burst_capacity_; ++delivered) {
                    const wire::mutable_bytes into{hold.regions + (delivered - 1) * region_len, region_len};
                    auto next = backend_.try_receive(into);
                    if (!next) {
                        const std::error_code why = next.error();
                        if (is_nothing_queued(why)) break;
                        end_burst();
                        // A receive already pending will continue the loop; arming another would be a second one.
                        if (why == std::errc::operation_in_progress) return;
                        return finish(why);
                    }
                    on_frame_(*this, wire::const_bytes{into.data(), *next});
                }
            }
            end_burst();
        } // the arena is free again before the next receive is armed
        if (running_) receive_next();
    }

    void end_burst() {
        if (on_burst_end_) on_burst_end_(*this);
    }

    /// The loop ends: the first error, reported once.
    void finish(std::error_code ec) {
        running_ = false;
        auto on_closed = std::move(on_closed_);
        on_frame_ = nullptr; // release what the handlers captured
        on_burst_end_ = nullptr;
        if (on_closed) on_closed(*this, ec);
    }

    Backend backend_;
    std::vector<std::byte> buffer_;  // the burst's first frame: port_receive_len(backend) bytes
    std::size_t burst_capacity_;     // burst_frames_of(buffer_.size()), or 1 without try_receive
    frame_handler on_frame_;
    close_handler on_closed_;
    burst_handler on_burst_end_;
};

} // namespace detail

/// Wraps `backend` into a port named `name`.
template <frame_backend Backend>
std::shared_ptr<port> make_port(std::string name, Backend backend) {
    return std::make_shared<detail::backend_port<Backend>>(std::move(name), std::move(backend));
}

} // namespace ankanet::backend
