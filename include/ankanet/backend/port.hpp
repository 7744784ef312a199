// ankanet::backend::port — one VM's link with its backend type erased, running its own receive loop.
//
// Theory of operation. A network holds VMs attached through different backends at once (a TAP, a
// QEMU socket, a vfkit datagram socket). `make_port(name, backend)` wraps any frame_backend into a
// `port` that the switch and the daemon handle alike: start() arms the backend's receive and re-arms
// it after each frame, handing every frame to `on_frame`; the first error (peer gone, close(), a
// failed read) ends the loop and calls `on_closed` once. The port owns one receive buffer of
// max_frame_len(mtu) bytes, allocated when it is made; the frame span given to `on_frame` is valid
// only during the call. Ports are shared_ptr-owned: the pending receive holds the port alive.
//
// Bursts. A completion of async_receive costs a turn of the event loop per frame (a posted handler
// and an epoll_wait), which holds a link below a million frames a second. When the backend
// models burst_backend (backend.hpp), each completion is followed by try_receive calls that deliver
// what is already queued, up to port_burst_limit frames per turn in all, in the order the backend
// gives them; "nothing queued" (or the limit) re-arms async_receive. An error from try_receive ends
// the loop exactly as if async_receive had completed with it (on_closed), since a non-blocking read
// may report a one-time error that the next async_receive would not see again. The limit is what
// keeps the ports of one io_context fair: a flooded port yields after port_burst_limit frames, and
// its next completion queues behind the handlers of every other port that is ready.
#pragma once

#include <ankanet/backend/backend.hpp>

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

class port : public std::enable_shared_from_this<port> {
public:
    using frame_handler = std::function<void(port&, wire::const_bytes)>;
    using close_handler = std::function<void(port&, std::error_code)>;

    explicit port(std::string name) : name_(std::move(name)) {}
    virtual ~port() = default;
    port(const port&) = delete;
    port& operator=(const port&) = delete;

    /// What logs call this VM's link, e.g. "netns:/run/netns/vm1:eth0".
    const std::string& name() const noexcept { return name_; }

    virtual std::error_code send(wire::const_bytes frame) = 0;
    virtual counters stats() const = 0;
    virtual std::size_t mtu() const = 0;
    virtual std::optional<wire::mac_address> mac() const = 0;
    using burst_handler = std::function<void(port&)>;

    /// Ends the link; the receive loop then finishes with on_closed.
    virtual void close() = 0;
    /// Starts the receive loop. Call once.
    void start(frame_handler on_frame, close_handler on_closed) { start_loop(std::move(on_frame), std::move(on_closed), {}); }
    /// As above; `on_burst_end` is called after each burst of frames one event-loop turn delivered
    /// (one frame, or up to port_burst_limit where the backend drains bursts), so a caller can do
    /// per-burst work once: read the clock, flush a capture file.
    void start(frame_handler on_frame, close_handler on_closed, burst_handler on_burst_end) {
        start_loop(std::move(on_frame), std::move(on_closed), std::move(on_burst_end));
    }
    bool running() const noexcept { return running_; }

protected:
    virtual void start_loop(frame_handler on_frame, close_handler on_closed, burst_handler on_burst_end) = 0;

    bool running_ = false;

private:
    std::string name_;
};

namespace detail {

template <frame_backend Backend>
class backend_port final : public port {
public:
    backend_port(std::string name, Backend backend)
        : port(std::move(name)), backend_(std::move(backend)), buffer_(max_frame_len(backend_.mtu())) {}

    std::error_code send(wire::const_bytes frame) override { return backend_.send(frame); }
    counters stats() const override { return backend_.stats(); }
    std::size_t mtu() const override { return backend_.mtu(); }
    std::optional<wire::mac_address> mac() const override { return backend_.mac(); }
    void close() override { backend_.close(); }

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

    /// An async_receive completed: deliver its frame and the rest of the burst, then re-arm.
    void received(std::error_code ec, std::size_t n) {
        if (ec) return finish(ec);
        on_frame_(*this, wire::const_bytes{buffer_.data(), n});
        if constexpr (burst_backend<Backend>) {
            for (std::size_t delivered = 1; delivered < port_burst_limit; ++delivered) {
                auto next = backend_.try_receive(wire::mutable_bytes{buffer_});
                if (!next) {
                    const std::error_code why = next.error();
                    if (is_nothing_queued(why)) break;
                    end_burst();
                    // A receive already pending will continue the loop; arming another would be a second one.
                    if (why == std::errc::operation_in_progress) return;
                    return finish(why);
                }
                on_frame_(*this, wire::const_bytes{buffer_.data(), *next});
            }
        }
        end_burst();
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
    std::vector<std::byte> buffer_;
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
