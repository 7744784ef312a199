/// @file
/// ankanet::nat::asio_tcp_sockets — the TCP translator's host side: real non-blocking sockets, one
/// per flow slot, waited on with Boost.Asio.
///
/// Theory of operation. The engine (nat/tcp_engine.hpp) decides; this layer only performs the
/// socket calls it asks for and reports back readiness, so it holds no protocol state beyond what
/// the kernel needs told:
///  - open(): a non-blocking connect() with TCP_MAXSEG set to the guest's MSS, through
///    async_connect, whose completion (success, ECONNREFUSED, EHOSTUNREACH, ...) is reported as
///    tcp_socket_event::connected. SO_PEEK_OFF is switched on once connected (Linux >= 6.9 for
///    TCP); where it is refused the layer falls back to peeking from offset 0 into a scratch
///    buffer and skipping what was sent, which caps the bytes in flight at that buffer's size.
///  - send(): send(MSG_DONTWAIT | MSG_NOSIGNAL) of the guest's payload, straight from its frame.
///  - peek(): recv(MSG_PEEK) at the engine's offset, into the payload area of the frame being
///    built; the kernel's peek offset is moved only when the engine rewinds (retransmission).
///  - discard(): recv(MSG_TRUNC) of what the guest ACKed, without copying it anywhere.
///  - close(): with SO_LINGER {1, 0} when the flow is reset, so the host peer sees an RST; a
///    normal close after both FINs leaves nothing in CLOSE_WAIT.
///  - want_readable()/want_writable(): one async_wait each, reported once.
///  - send_space(): half of SO_SNDBUF minus SIOCOUTQ, the window the engine offers the guest. Half,
///    because the kernel counts the buffer in memory (payload plus per-skb overhead; it doubles what
///    SO_SNDBUF is set to for that reason): offering all of it made the guest send more than a
///    send() would take, and every short send costs the guest a window of retransmissions.
///
/// Portability. Written for Linux. Elsewhere (untested) the fallbacks apply: no SO_PEEK_OFF, a
/// discard that reads into the scratch buffer where MSG_TRUNC does not discard TCP data,
/// SO_NOSIGPIPE for MSG_NOSIGNAL, SO_NWRITE for SIOCOUTQ.
///
/// Lifetime. Asio handlers may complete after a slot was reused or the layer destroyed: each slot
/// has a generation that every handler carries, and handlers hold a weak_ptr to the layer's state.
/// Not thread-safe: the executor given to the constructor must run one thread at a time (a strand
/// or a single-threaded io_context), the one the network runs on.
#pragma once

#include <ankanet/nat/tcp_engine.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cerrno>
#if defined(__linux__)
#include <linux/sockios.h>
#endif

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <system_error>
#include <utility>
#include <vector>

namespace ankanet::nat {

/// Real sockets for basic_tcp_engine; see the theory of operation above.
class asio_tcp_sockets {
public:
    using handler_type = std::function<void(std::uint32_t slot, tcp_socket_event, std::error_code)>; ///< the handler type

    /// Bytes the fallback (no SO_PEEK_OFF) may have in flight per flow: its scratch buffer's size.
    static constexpr std::size_t fallback_peek_limit = 256 * 1024;

    /// @param executor runs the waits; @param capacity flow slots (the engine's table capacity);
    /// @param use_peek_offset false forces the fallback (tests; kernels that misbehave with it).
    asio_tcp_sockets(boost::asio::any_io_executor executor, std::size_t capacity, bool use_peek_offset = true)
        : state_(std::make_shared<shared_state>()) {
        state_->use_peek_offset = use_peek_offset;
        state_->slots.reserve(capacity);
        for (std::size_t i = 0; i < capacity; ++i) state_->slots.emplace_back(executor);
    }

    /// Where events go (the translator's engine).
    void set_handler(handler_type handler) { state_->handler = std::move(handler); }

    /// Bytes this layer keeps per flow slot.
    static constexpr std::size_t bytes_per_flow() noexcept { return sizeof(slot_state); }

    /// Starts a non-blocking connect to `address`:`port` for `slot`, with `mss`.
    std::error_code open(std::uint32_t slot, wire::ipv4_address address, std::uint16_t port, std::uint16_t mss) {
        slot_state& s = state_->slots[slot];
        reset_slot(s);
        boost::system::error_code ec;
        s.socket.open(boost::asio::ip::tcp::v4(), ec);
        if (ec) return to_std(ec);
        s.socket.non_blocking(true, ec);
        if (ec) return to_std(ec);
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
        const int one = 1;
        (void)::setsockopt(s.socket.native_handle(), SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
        if (mss != 0) {
            const int value = mss;
            (void)::setsockopt(s.socket.native_handle(), IPPROTO_TCP, TCP_MAXSEG, &value, sizeof value);
        }
        const boost::asio::ip::tcp::endpoint endpoint{boost::asio::ip::address_v4{address.to_u32()}, port};
        s.socket.async_connect(endpoint, [weak = std::weak_ptr<shared_state>{state_}, slot,
                                          generation = s.generation](const boost::system::error_code& error) {
            const auto state = weak.lock();
            if (!state || error == boost::asio::error::operation_aborted) return;
            slot_state& t = state->slots[slot];
            if (t.generation != generation) return;
            if (!error) start_peeking(*state, t);
            if (state->handler) state->handler(slot, tcp_socket_event::connected, to_std(error));
        });
        return {};
    }

    /// Takes `socket`, a connection the host accepted (an inbound flow, nat/inbound.hpp), for slot
    /// `slot`: made non-blocking and switched to peeking at an offset, as a connect()ed one is.
    std::error_code adopt(std::uint32_t slot, boost::asio::ip::tcp::socket&& socket) {
        slot_state& s = state_->slots[slot];
        reset_slot(s);
        boost::system::error_code ec;
        const auto fd = socket.release(ec); // the slot's socket may run on another executor
        if (ec) return to_std(ec);
        s.socket.assign(boost::asio::ip::tcp::v4(), fd, ec);
        if (ec) {
            ::close(fd);
            return to_std(ec);
        }
        s.socket.non_blocking(true, ec);
        if (ec) return to_std(ec);
        start_peeking(*state_, s);
        return {};
    }

    /// Writes `pieces` to the socket of `slot` in one gather write.
    tcp_send_result send(std::uint32_t slot, std::span<const wire::const_bytes> pieces) {
        slot_state& s = state_->slots[slot];
        // One sendmsg whose iovecs point at the guest's frames (the engine passes at most
        // max_burst_segments pieces, far below IOV_MAX).
        std::array<::iovec, max_burst_segments> iov{};
        const std::size_t count = std::min(pieces.size(), iov.size());
        for (std::size_t i = 0; i < count; ++i) {
            iov[i].iov_base = const_cast<std::byte*>(pieces[i].data()); // sendmsg does not write
            iov[i].iov_len = pieces[i].size();
        }
        ::msghdr message{};
        message.msg_iov = iov.data();
        message.msg_iovlen = count;
        for (;;) {
            const ssize_t n = ::sendmsg(s.socket.native_handle(), &message, MSG_DONTWAIT | no_sigpipe);
            if (n >= 0) return {static_cast<std::size_t>(n), {}};
            if (errno == EINTR) continue;
            if (would_block(errno)) return {0, {}};
            return {0, std::error_code{errno, std::system_category()}};
        }
    }

    /// Copies received bytes, from `offset` past the oldest not yet discarded, into `out`; they stay queued.
    tcp_peek_result peek(std::uint32_t slot, std::size_t offset, wire::mutable_bytes out) {
        slot_state& s = state_->slots[slot];
        const int fd = s.socket.native_handle();
        if (out.empty()) return {};
        if (s.peek_offset_supported) {
            if (s.peek_offset != offset) {
                const int value = static_cast<int>(offset);
#if defined(SO_PEEK_OFF)
                if (::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &value, sizeof value) != 0) {
                    return {0, false, std::error_code{errno, std::system_category()}};
                }
#else
                (void)value;
#endif
                s.peek_offset = static_cast<std::uint32_t>(offset);
            }
            for (;;) {
                const ssize_t n = ::recv(fd, out.data(), out.size(), MSG_PEEK | MSG_DONTWAIT);
                if (n > 0) {
                    s.peek_offset += static_cast<std::uint32_t>(n); // the kernel moved its offset too
                    return {static_cast<std::size_t>(n), false, {}};
                }
                if (n == 0) return {0, true, {}};
                if (errno == EINTR) continue;
                if (would_block(errno)) return {};
                return {0, false, std::error_code{errno, std::system_category()}};
            }
        }
        // Fallback: peek from the head, the bytes already sent into a scratch buffer.
        if (offset > fallback_peek_limit) return {};
        if (state_->scratch.size() < fallback_peek_limit) state_->scratch.resize(fallback_peek_limit);
        iovec iov[2] = {{state_->scratch.data(), offset}, {out.data(), out.size()}};
        msghdr msg{};
        msg.msg_iov = iov;
        msg.msg_iovlen = 2;
        for (;;) {
            const ssize_t n = ::recvmsg(fd, &msg, MSG_PEEK | MSG_DONTWAIT);
            if (n == 0) return {0, true, {}};
            if (n > 0) {
                const auto got = static_cast<std::size_t>(n);
                // Nothing past what was sent: the socket stays readable, so a wait would fire at
                // once, again and again. Wait for the guest's next ACK (discard) instead.
                s.read_after_discard = got <= offset;
                return {got > offset ? got - offset : 0, false, {}};
            }
            if (errno == EINTR) continue;
            if (would_block(errno)) return {};
            return {0, false, std::error_code{errno, std::system_category()}};
        }
    }

    /// Drops `n` received bytes (the guest ACKed them).
    std::error_code discard(std::uint32_t slot, std::size_t n) {
        slot_state& s = state_->slots[slot];
        std::size_t left = n;
        while (left != 0) {
#if defined(__linux__)
            const ssize_t got = ::recv(s.socket.native_handle(), nullptr, left, MSG_TRUNC | MSG_DONTWAIT);
#else
            if (state_->scratch.size() < fallback_peek_limit) state_->scratch.resize(fallback_peek_limit);
            const ssize_t got = ::recv(s.socket.native_handle(), state_->scratch.data(),
                                       std::min(left, state_->scratch.size()), MSG_DONTWAIT);
#endif
            if (got > 0) {
                left -= static_cast<std::size_t>(got);
                continue;
            }
            if (got < 0 && errno == EINTR) continue;
            return got == 0 ? std::make_error_code(std::errc::io_error) : std::error_code{errno, std::system_category()};
        }
        s.peek_offset = s.peek_offset > n ? static_cast<std::uint32_t>(s.peek_offset - n) : 0; // the kernel moves its offset back too
        if (s.read_after_discard && s.read_armed) {
            // The fallback's stand-in for readability: the guest made room, look again.
            s.read_after_discard = false;
            report_later(slot, s, tcp_socket_event::readable);
        }
        return {};
    }

    /// Shuts down the sending side (the guest's FIN).
    void shutdown_write(std::uint32_t slot) {
        (void)::shutdown(state_->slots[slot].socket.native_handle(), SHUT_WR);
    }

    /// Closes the socket of `slot`; `reset` sends an RST (linger 0).
    void close(std::uint32_t slot, bool reset) {
        slot_state& s = state_->slots[slot];
        if (reset && s.socket.is_open()) {
            const linger abort{1, 0};
            (void)::setsockopt(s.socket.native_handle(), SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
        }
        reset_slot(s);
    }

    /// Reports when the socket of `slot` becomes readable.
    void want_readable(std::uint32_t slot) { wait(slot, boost::asio::socket_base::wait_read); }
    /// Reports when the socket of `slot` becomes writable.
    void want_writable(std::uint32_t slot) { wait(slot, boost::asio::socket_base::wait_write); }

    /// Free bytes in the socket's send buffer.
    std::size_t send_space(std::uint32_t slot) const {
        const int fd = state_->slots[slot].socket.native_handle();
        int sndbuf = 0;
        socklen_t len = sizeof sndbuf;
        if (::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) != 0) return 0;
        int queued = 0;
#if defined(SIOCOUTQ)
        if (::ioctl(fd, SIOCOUTQ, &queued) != 0) return 0;
#elif defined(SO_NWRITE)
        len = sizeof queued;
        if (::getsockopt(fd, SOL_SOCKET, SO_NWRITE, &queued, &len) != 0) return 0;
#endif
        const int payload = sndbuf / 2; // see send_space() in the theory of operation
        return payload > queued ? static_cast<std::size_t>(payload - queued) : 0;
    }

    /// The max peek offset.
    std::size_t max_peek_offset() const noexcept {
        // Per flow the fallback applies; the engine asks before each peek, so be conservative
        // only when some socket lacked SO_PEEK_OFF.
        return state_->any_fallback ? fallback_peek_limit : std::size_t{1} << 30;
    }

    /// Whether slot `slot`'s socket is open (for tests).
    bool is_open(std::uint32_t slot) const { return state_->slots[slot].socket.is_open(); }

private:
    struct slot_state {
        explicit slot_state(const boost::asio::any_io_executor& executor) : socket(executor) {}
        boost::asio::ip::tcp::socket socket;
        std::uint32_t generation = 0;
        std::uint32_t peek_offset = 0;
        bool peek_offset_supported = false;
        bool read_armed = false;
        bool write_armed = false;
        bool read_after_discard = false; ///< fallback: no new data was past the offset
    };

    struct shared_state {
        std::vector<slot_state> slots;
        handler_type handler;
        std::vector<std::byte> scratch;
        bool any_fallback = false;
        bool use_peek_offset = true;
    };

#if defined(MSG_NOSIGNAL)
    static constexpr int no_sigpipe = MSG_NOSIGNAL;
#else
    static constexpr int no_sigpipe = 0; // SO_NOSIGPIPE is set on the socket instead
#endif

    static bool would_block(int error) noexcept {
#if EAGAIN == EWOULDBLOCK
        return error == EAGAIN;
#else
        return error == EAGAIN || error == EWOULDBLOCK;
#endif
    }

    static std::error_code to_std(const boost::system::error_code& ec) {
        if (!ec) return {};
        // Asio's errors on POSIX are errno values: the engine compares against the system category.
        return std::error_code{ec.value(), std::system_category()};
    }

    /// A connected socket starts peeking at offset 0: with SO_PEEK_OFF where the kernel has it.
    static void start_peeking(shared_state& state, slot_state& s) {
        const int zero = 0;
#if defined(SO_PEEK_OFF)
        s.peek_offset_supported =
            state.use_peek_offset && ::setsockopt(s.socket.native_handle(), SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) == 0;
#else
        (void)zero;
        s.peek_offset_supported = false;
#endif
        s.peek_offset = 0;
        if (!s.peek_offset_supported) state.any_fallback = true;
    }

    void reset_slot(slot_state& s) {
        boost::system::error_code ignored;
        if (s.socket.is_open()) s.socket.close(ignored); // pending waits complete as aborted
        ++s.generation;
        s.peek_offset = 0;
        s.peek_offset_supported = false;
        s.read_armed = false;
        s.write_armed = false;
        s.read_after_discard = false;
    }

    /// Reports `event` from the executor (never inline: the engine is mid-call).
    void report_later(std::uint32_t slot, slot_state& s, tcp_socket_event event) {
        boost::asio::post(s.socket.get_executor(), [weak = std::weak_ptr<shared_state>{state_}, slot, event,
                                                    generation = s.generation] {
            const auto state = weak.lock();
            if (!state) return;
            slot_state& t = state->slots[slot];
            if (t.generation != generation) return;
            if (event == tcp_socket_event::readable) t.read_armed = false;
            if (state->handler) state->handler(slot, event, {});
        });
    }

    void wait(std::uint32_t slot, boost::asio::socket_base::wait_type type) {
        slot_state& s = state_->slots[slot];
        bool& armed = type == boost::asio::socket_base::wait_read ? s.read_armed : s.write_armed;
        if (armed || !s.socket.is_open()) return;
        armed = true;
        if (type == boost::asio::socket_base::wait_read && s.read_after_discard) return; // see discard()
        s.socket.async_wait(type, [weak = std::weak_ptr<shared_state>{state_}, slot, type,
                                   generation = s.generation](const boost::system::error_code& error) {
            const auto state = weak.lock();
            if (!state || error == boost::asio::error::operation_aborted) return;
            slot_state& t = state->slots[slot];
            if (t.generation != generation) return;
            const bool read = type == boost::asio::socket_base::wait_read;
            (read ? t.read_armed : t.write_armed) = false;
            if (state->handler) {
                state->handler(slot, read ? tcp_socket_event::readable : tcp_socket_event::writable, to_std(error));
            }
        });
    }

    std::shared_ptr<shared_state> state_;
};

static_assert(tcp_socket_layer<asio_tcp_sockets>);

} // namespace ankanet::nat
