// ankanet::nat::detail::host_events — what a translator's host side needs besides its sockets:
// a list of flows whose sockets have something to read, a wakeup for the network when that list
// stops being empty, and the flows' timers on one wheel behind one Asio steady_timer.
//
// Why this shape. A translator hears from the host asynchronously (a socket became readable, a
// timer fired), but frames reach a VM only through the network, which calls the translator's
// release_held(ctx, room) when woken. So host events only mark flows ready and wake the network
// once; release_held then reads the ready sockets straight into frames. Nothing is buffered per
// flow in user space, and a burst of events costs one wakeup.
//
// Lifetime. Asio handlers may run after the translator is gone (a cancelled wait completes
// later): they hold a weak_ptr to the translator's state and do nothing once it has expired.
#pragma once

#include <ankanet/nat/timer_wheel.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace ankanet::nat::detail {

/// Flows ready to be read, in the order they became ready; each at most once.
class ready_list {
public:
    explicit ready_list(std::size_t capacity) : queued_(capacity, false) { order_.reserve(capacity); }

    /// Queues flow slot `index` (with the handle the caller keeps); false if it was queued already.
    bool push(std::uint32_t index, std::uint64_t handle) {
        if (index >= queued_.size() || queued_[index]) return false;
        queued_[index] = true;
        append(handle);
        return true;
    }
    /// Moves the front flow to the back, still queued: it has more to read, and the others go first.
    void rotate() {
        const std::uint64_t handle = order_[next_++];
        append(handle);
    }
    bool empty() const noexcept { return next_ == order_.size(); }
    /// The next queued handle; the caller calls pop() when done with it, or leaves it in front.
    std::uint64_t front() const noexcept { return order_[next_]; }
    void pop(std::uint32_t index) noexcept {
        if (index < queued_.size()) queued_[index] = false;
        if (++next_ == order_.size()) {
            order_.clear();
            next_ = 0;
        }
    }

    /// Serves the queued flows of `flows` (a flow_table) in order while fewer than `room` frames
    /// are `sent`: `drain(handle, flow)` reads the flow's socket into frames (counting them in
    /// `sent`) and returns true once the socket is empty; the flow then leaves the list and
    /// `rearm(handle, flow)` waits for it again. A flow that has gone meanwhile just leaves.
    template <class Table, class Drain, class Rearm>
    void serve(Table& flows, std::size_t room, const std::size_t& sent, Drain&& drain, Rearm&& rearm) {
        while (sent < room && !empty()) {
            const auto h = decltype(flows.handle_at(0))::value_type::from_u64(front());
            auto* flow = flows.get(h);
            if (flow == nullptr) {
                pop(h.index);
                continue;
            }
            if (drain(h, *flow)) {
                pop(h.index);
                rearm(h, *flow);
            }
        }
    }

private:
    // A list that never runs empty (flows ready all the time) would grow without end: served
    // entries are dropped from the front before the vector would grow past its reserved capacity,
    // which the live entries (one per flow at most) never fill.
    void append(std::uint64_t handle) {
        if (next_ != 0 && order_.size() == order_.capacity()) {
            order_.erase(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(next_));
            next_ = 0;
        }
        order_.push_back(handle);
    }

    std::vector<bool> queued_;
    std::vector<std::uint64_t> order_;
    std::size_t next_ = 0;
};

/// One network wakeup per burst of host events.
class wakeup {
public:
    void bind(std::function<void()> wake) { wake_ = std::move(wake); }
    /// Asks the network to flush, unless a request is pending already.
    void request() {
        if (pending_ || !wake_) return;
        pending_ = true;
        wake_();
    }
    /// The network is flushing: the next event asks again.
    void answered() noexcept { pending_ = false; }

private:
    std::function<void()> wake_;
    bool pending_ = false;
};

/// A timer wheel for flows, run by one steady_timer. arm() after scheduling; `fire(id)` is
/// called for each expired timer from the io_context.
class wheel_timer {
public:
    using clock = std::chrono::steady_clock;
    using wheel_type = basic_timer_wheel<clock>;

    wheel_timer(boost::asio::any_io_executor executor, std::size_t capacity, clock::duration tick)
        : timer_(std::move(executor)), wheel_(capacity, clock::now(), tick) {}

    wheel_type& wheel() noexcept { return wheel_; }

    /// Makes the steady_timer wait for the wheel's earliest deadline, if that is earlier than the
    /// one it waits for. `owner` is a weak pointer to what `fire` touches.
    template <class Owner, class Fire>
    void arm(const std::weak_ptr<Owner>& owner, Fire fire) {
        const auto next = wheel_.next_deadline();
        if (!next || (armed_ && *armed_ <= *next)) return;
        armed_ = *next;
        timer_.expires_at(*next);
        timer_.async_wait([this, owner, fire](const boost::system::error_code& ec) mutable {
            if (ec) return; // cancelled: re-armed for an earlier deadline, or closing
            const auto alive = owner.lock();
            if (!alive) return;
            armed_.reset();
            wheel_.advance(clock::now(), fire);
            arm(owner, fire);
        });
    }

    void cancel() { timer_.cancel(); }

private:
    boost::asio::steady_timer timer_;
    wheel_type wheel_;
    std::optional<clock::time_point> armed_;
};

} // namespace ankanet::nat::detail
