// ankanet::backend::port — one VM's link with its backend type erased, running its own receive loop.
//
// Theory of operation. A network holds VMs attached through different backends at once (a TAP, a
// QEMU socket, a vfkit datagram socket). `make_port(name, backend)` wraps any frame_backend into a
// `port` that the switch and the daemon handle alike: start() arms the backend's receive and re-arms
// it after each frame, handing every frame to `on_frame`; the first error (peer gone, close(), a
// failed read) ends the loop and calls `on_closed` once. The port owns one receive buffer of
// max_frame_len(mtu) bytes, allocated when it is made; the frame span given to `on_frame` is valid
// only during the call. Ports are shared_ptr-owned: the pending receive holds the port alive.
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
    /// Ends the link; the receive loop then finishes with on_closed.
    virtual void close() = 0;
    /// Starts the receive loop. Call once.
    virtual void start(frame_handler on_frame, close_handler on_closed) = 0;
    bool running() const noexcept { return running_; }

protected:
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

    void start(frame_handler on_frame, close_handler on_closed) override {
        on_frame_ = std::move(on_frame);
        on_closed_ = std::move(on_closed);
        running_ = true;
        receive_next();
    }

private:
    void receive_next() {
        auto self = std::static_pointer_cast<backend_port>(shared_from_this());
        backend_.async_receive(wire::mutable_bytes{buffer_}, [self](std::error_code ec, std::size_t n) {
            if (ec) {
                self->running_ = false;
                auto on_closed = std::move(self->on_closed_);
                self->on_frame_ = nullptr; // release what the handlers captured
                if (on_closed) on_closed(*self, ec);
                return;
            }
            self->on_frame_(*self, wire::const_bytes{self->buffer_.data(), n});
            if (self->running_) self->receive_next();
        });
    }

    Backend backend_;
    std::vector<std::byte> buffer_;
    frame_handler on_frame_;
    close_handler on_closed_;
};

} // namespace detail

/// Wraps `backend` into a port named `name`.
template <frame_backend Backend>
std::shared_ptr<port> make_port(std::string name, Backend backend) {
    return std::make_shared<detail::backend_port<Backend>>(std::move(name), std::move(backend));
}

} // namespace ankanet::backend
