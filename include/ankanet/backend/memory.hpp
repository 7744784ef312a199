/// @file
/// ankanet::backend::memory — an in-process link between two endpoints, for tests and for
/// hypervisors that own the device model and want no system call per frame.
///
/// Theory of operation. `make_memory_link` returns two endpoints joined by two fixed rings, one per
/// direction, allocated once: `queue_depth` slots of max_frame_len(mtu) bytes each. send() copies the
/// frame into the peer's ring (one memcpy, no allocation) and, when the peer has a receive waiting,
/// posts its completion to the executor — never runs it inline, so handlers are not re-entered. A
/// full ring drops the frame and counts it, as a NIC with a full descriptor ring would. close() on
/// one end aborts its pending receive; the other end reads what is already queued, then gets errc::peer_closed.
/// try_receive() pops the next queued frame synchronously (burst_backend, backend.hpp), so a caller
/// that drains bursts pays one posted completion per burst rather than per frame.
/// Both endpoints live on one executor and are used from its thread.
#pragma once

#include <ankanet/backend/backend.hpp>
#include <ankanet/error.hpp>
#include <ankanet/result.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>

#include <array>
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace ankanet::backend {

namespace detail {

/// A ring of fixed-size frame slots.
class frame_ring {
public:
    frame_ring(std::size_t slots, std::size_t slot_size)
        : storage_(slots * slot_size), lengths_(slots), slot_size_(slot_size) {}

    bool empty() const noexcept { return count_ == 0; }
    bool full() const noexcept { return count_ == lengths_.size(); }

    /// Copies `frame` (at most slot_size bytes, checked by the caller) into the next free slot.
    void push(wire::const_bytes frame) noexcept {
        const std::size_t slot = (head_ + count_) % lengths_.size();
        std::memcpy(storage_.data() + slot * slot_size_, frame.data(), frame.size());
        lengths_[slot] = frame.size();
        ++count_;
    }
    /// The oldest frame; valid until pop().
    wire::const_bytes front() const noexcept {
        return {storage_.data() + head_ * slot_size_, lengths_[head_]};
    }
    void pop() noexcept {
        head_ = (head_ + 1) % lengths_.size();
        --count_;
    }

private:
    std::vector<std::byte> storage_;
    std::vector<std::size_t> lengths_;
    std::size_t slot_size_;
    std::size_t head_ = 0;
    std::size_t count_ = 0;
};

/// A pending receive's completion handler, type-erased without an allocation when it fits in
/// `inline_size` bytes — a port re-arms its receive once per burst with a lambda holding a
/// shared_ptr, which std::function would put on the heap every time. Larger handlers go to the heap.
/// Move-only; invoking consumes it.
class receive_completion {
public:
    static constexpr std::size_t inline_size = 48;

    receive_completion() noexcept = default;
    template <class Handler>
        requires(!std::is_same_v<std::decay_t<Handler>, receive_completion>)
    explicit receive_completion(Handler&& handler) {
        using stored = std::decay_t<Handler>;
        if constexpr (sizeof(stored) <= inline_size && alignof(stored) <= alignof(std::max_align_t) &&
                      std::is_nothrow_move_constructible_v<stored>) {
            ::new (static_cast<void*>(storage_)) stored(std::forward<Handler>(handler));
            ops_ = &inline_ops<stored>;
        } else {
            ::new (static_cast<void*>(storage_)) stored*(new stored(std::forward<Handler>(handler)));
            ops_ = &heap_ops<stored>;
        }
    }
    receive_completion(receive_completion&& other) noexcept : ops_(std::exchange(other.ops_, nullptr)) {
        if (ops_ != nullptr) ops_->relocate(other.storage_, storage_);
    }
    receive_completion& operator=(receive_completion&& other) noexcept {
        if (this != &other) {
            reset();
            ops_ = std::exchange(other.ops_, nullptr);
            if (ops_ != nullptr) ops_->relocate(other.storage_, storage_);
        }
        return *this;
    }
    receive_completion(const receive_completion&) = delete;
    receive_completion& operator=(const receive_completion&) = delete;
    ~receive_completion() { reset(); }

    explicit operator bool() const noexcept { return ops_ != nullptr; }

    /// Calls the handler once and empties this.
    void operator()(std::error_code ec, std::size_t n) {
        const ops* o = std::exchange(ops_, nullptr);
        o->invoke_and_destroy(storage_, ec, n);
    }

private:
    struct ops {
        void (*invoke_and_destroy)(std::byte*, std::error_code, std::size_t);
        void (*relocate)(std::byte* from, std::byte* to) noexcept;
        void (*destroy)(std::byte*) noexcept;
    };
    template <class T>
    static T* inline_object(std::byte* at) noexcept { return std::launder(reinterpret_cast<T*>(at)); }
    template <class T>
    static T* heap_object(std::byte* at) noexcept { return *std::launder(reinterpret_cast<T**>(at)); }

    template <class T>
    static constexpr ops inline_ops{
        [](std::byte* at, std::error_code ec, std::size_t n) {
            T handler = std::move(*inline_object<T>(at));
            inline_object<T>(at)->~T();
            handler(ec, n);
        },
        [](std::byte* from, std::byte* to) noexcept {
            ::new (static_cast<void*>(to)) T(std::move(*inline_object<T>(from)));
            inline_object<T>(from)->~T();
        },
        [](std::byte* at) noexcept { inline_object<T>(at)->~T(); },
    };
    template <class T>
    static constexpr ops heap_ops{
        [](std::byte* at, std::error_code ec, std::size_t n) {
            std::unique_ptr<T> handler{heap_object<T>(at)};
            (*handler)(ec, n);
        },
        [](std::byte* from, std::byte* to) noexcept { ::new (static_cast<void*>(to)) T*(heap_object<T>(from)); },
        [](std::byte* at) noexcept { delete heap_object<T>(at); },
    };

    void reset() noexcept {
        if (ops_ != nullptr) std::exchange(ops_, nullptr)->destroy(storage_);
    }

    alignas(std::max_align_t) std::byte storage_[inline_size];
    const ops* ops_ = nullptr;
};

} // namespace detail

/// One end of a memory link. Cheap to move; the link lives while either end does.
class memory_endpoint {
public:
    using executor_type = boost::asio::any_io_executor; ///< the executor its asynchronous operations run on

    /// The executor its asynchronous operations run on.
    executor_type get_executor() const noexcept { return link_->executor; }
    /// The MTU.
    std::size_t mtu() const noexcept { return link_->mtu; }
    /// The MAC.
    std::optional<wire::mac_address> mac() const noexcept { return std::nullopt; }
    /// What it counted so far.
    counters stats() const noexcept { return self().stats; }

    /// Receives one frame into `buffer` (which should hold max_frame_len(mtu()) bytes; a frame that
    /// does not fit is dropped and the receive completes with errc::buffer_too_small).
    template <class Handler>
    void async_receive(wire::mutable_bytes buffer, Handler&& handler) {
        auto& me = self();
        me.pending_buffer = buffer;
        me.pending = detail::receive_completion{std::forward<Handler>(handler)};
        complete_pending(side_);
    }

    /// Takes the next queued frame now, without a completion (burst_backend, backend.hpp).
    /// @return the frame's size; or std::errc::resource_unavailable_try_again (nothing queued:
    /// use async_receive); std::errc::operation_in_progress (an async_receive is pending); or
    /// what async_receive would complete with: errc::buffer_too_small (the frame did not fit and
    /// was dropped), std::errc::operation_canceled after close(), errc::peer_closed once the peer
    /// closed and everything it sent was read.
    result<std::size_t> try_receive(wire::mutable_bytes buffer) {
        auto& me = self();
        if (me.closed) return std::make_error_code(std::errc::operation_canceled);
        if (me.pending) return std::make_error_code(std::errc::operation_in_progress);
        if (me.inbox.empty()) {
            if (link_->ends[side_ ^ 1].closed) return make_error_code(errc::peer_closed);
            return std::make_error_code(nothing_queued);
        }
        const auto taken = take(me, buffer);
        if (taken.ec) return taken.ec;
        return taken.size;
    }

    /// Sends one frame to the other end of the link.
    std::error_code send(wire::const_bytes frame) {
        auto& me = self();
        if (auto why = check_frame_size(frame.size(), link_->mtu)) {
            ++me.stats.tx_invalid;
            return why;
        }
        auto& peer = link_->ends[side_ ^ 1];
        if (me.closed || peer.closed) {
            ++me.stats.tx_dropped;
            return std::make_error_code(std::errc::not_connected);
        }
        if (peer.inbox.full()) {
            ++me.stats.tx_dropped;
            return std::make_error_code(std::errc::no_buffer_space);
        }
        peer.inbox.push(frame);
        ++me.stats.tx_frames;
        me.stats.tx_bytes += frame.size();
        complete_pending(side_ ^ 1);
        return {};
    }

    /// Closes this end: its pending receive completes with operation_aborted, later sends fail,
    /// and the peer gets errc::peer_closed once it has read what was already queued.
    void close() {
        auto& me = self();
        if (me.closed) return;
        me.closed = true;
        if (me.pending) finish(side_, std::make_error_code(std::errc::operation_canceled), 0);
        complete_pending(side_ ^ 1);
    }

private:
    struct end_state {
        explicit end_state(std::size_t depth, std::size_t slot) : inbox(depth, slot) {}
        detail::frame_ring inbox;
        wire::mutable_bytes pending_buffer;
        detail::receive_completion pending;
        counters stats;
        bool closed = false;
    };
    struct link_state {
        link_state(executor_type ex, std::size_t mtu_, std::size_t depth)
            : executor(std::move(ex)), mtu(mtu_),
              ends{end_state{depth, max_frame_len(mtu_)}, end_state{depth, max_frame_len(mtu_)}} {}
        executor_type executor;
        std::size_t mtu;
        std::array<end_state, 2> ends;
    };

    memory_endpoint(std::shared_ptr<link_state> link, std::size_t side) : link_(std::move(link)), side_(side) {}
    friend std::pair<memory_endpoint, memory_endpoint> make_memory_link(executor_type, std::size_t, std::size_t);

    end_state& self() const noexcept { return link_->ends[side_]; }

    /// If end `side` has a receive waiting and a frame (or an end of stream) to give it, posts it.
    void complete_pending(std::size_t side) {
        auto& end = link_->ends[side];
        if (!end.pending) return;
        if (end.closed) { // a receive after close(): canceled, like the one close() aborted
            finish(side, std::make_error_code(std::errc::operation_canceled), 0);
            return;
        }
        if (!end.inbox.empty()) {
            const auto taken = take(end, end.pending_buffer);
            finish(side, taken.ec, taken.size);
        } else if (link_->ends[side ^ 1].closed) {
            finish(side, make_error_code(errc::peer_closed), 0);
        }
    }

    struct taken_frame {
        std::error_code ec;
        std::size_t size = 0;
    };
    /// Pops the oldest frame of a non-empty inbox into `buffer`: the one receive rule of both paths.
    static taken_frame take(end_state& end, wire::mutable_bytes buffer) noexcept {
        const auto frame = end.inbox.front();
        if (frame.size() > buffer.size()) {
            end.inbox.pop();
            return {make_error_code(errc::buffer_too_small)};
        }
        std::memcpy(buffer.data(), frame.data(), frame.size());
        end.inbox.pop();
        ++end.stats.rx_frames;
        end.stats.rx_bytes += frame.size();
        return {{}, frame.size()};
    }

    void finish(std::size_t side, std::error_code ec, std::size_t n) {
        auto& end = link_->ends[side];
        auto handler = std::move(end.pending);
        boost::asio::post(link_->executor, [handler = std::move(handler), ec, n]() mutable { handler(ec, n); });
    }

    std::shared_ptr<link_state> link_;
    std::size_t side_;
};

/// Two endpoints joined back to back: what one sends, the other receives.
/// @param queue_depth frames each direction holds before send() drops.
inline std::pair<memory_endpoint, memory_endpoint> make_memory_link(boost::asio::any_io_executor executor,
                                                                    std::size_t mtu = default_mtu,
                                                                    std::size_t queue_depth = 256) {
    auto link = std::make_shared<memory_endpoint::link_state>(std::move(executor), mtu, queue_depth);
    return {memory_endpoint{link, 0}, memory_endpoint{link, 1}};
}

static_assert(burst_backend<memory_endpoint>);

} // namespace ankanet::backend
