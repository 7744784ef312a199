/// @file
/// ankanet::backend::unix_dgram — a VM's frames as unix datagrams, one frame per datagram.
///
/// Theory of operation. vfkit, krunkit and Apple's Virtualization.framework (a
/// VZFileHandleNetworkDeviceAttachment is handed one end of a datagram socket pair), QEMU's
/// `-netdev dgram` with unix addresses, and gvproxy / vmnet-helper on the other side of them, all
/// carry Ethernet frames the same way: each datagram is exactly one frame, with no header. The
/// datagram boundary is the framing, so there is nothing to resynchronise: a bad datagram is
/// dropped alone. `unix_dgram_endpoint` is one VM on one such socket; it meets the frame_backend
/// contract (backend.hpp).
///
/// Who the peer is. Three ways, chosen when the endpoint is made:
///  * A connected socket: adopt() of one end of socketpair(AF_UNIX, SOCK_DGRAM), the other end of
///    which went to the VM (as with Virtualization.framework). The kernel knows the peer;
///    send() uses send(2), and no one else can send to us.
///  * A bound path with the peer given: bind(path, peer_path). For QEMU's `-netdev
///    dgram,local.type=unix,local.path=PEER,remote.type=unix,remote.path=OURS`. Frames are sent with
///    sendto(peer_path); datagrams from any other sender are dropped (counted in rx_foreign()).
///    The peer need not exist yet: until it binds its path, sends are dropped (errc::peer_closed).
///  * A bound path, peer learned: bind(path) with no peer. The first datagram from a sender that
///    has an address (a bound socket) names the peer, and from then on it is as above. This is how
///    vfkit attaches: it binds a path of its own and connects to ours; vfkit (and krunkit with
///    vfkitMagic=on) then sends a short "magic" datagram, so that we learn its address before the
///    guest says anything (the magic is shorter than an Ethernet header, so it is also counted as
///    a runt; nothing else is made of it). Datagrams from
///    senders without an address cannot be answered and are dropped as foreign; so is everything
///    from a second sender. Until the peer is known, sends are dropped (std::errc::not_connected).
/// A bound socket is never connect()ed to its peer. sendto() by path resolves the path on every
/// send (a filesystem lookup in the kernel; QEMU's own dgram netdev sends the same way), but a VM
/// that restarts and binds the same path again is reached at once. A socket connected to the old
/// peer would keep pointing at the dead one, and Linux refuses (EPERM) datagrams to a connected
/// socket from anyone but its peer, so the restarted VM could not reach us either until one of
/// our sends failed. The price: Linux bounds the receive queue of a socket not connected to its
/// sender at net.unix.max_dgram_qlen datagrams (see below), so a peer sending faster than we read
/// is pushed back sooner (QEMU waits for the socket to be writable again; it does not drop). The
/// peer is a path, not a process.
///
/// Receive. One recvmsg per datagram, with MSG_TRUNC, so the kernel reports a datagram's real
/// length even when it was longer than the buffer: a runt (< 14 bytes, the zero-length datagram
/// included) counts rx_runt, a datagram longer than max_frame_len(mtu) counts rx_oversize, and
/// both are skipped — the receive completes only with a good frame or an error. A good frame
/// longer than the caller's buffer is dropped with errc::buffer_too_small, as the other backends
/// do. A datagram socket has no end of stream: a receive on a path-bound socket never completes
/// with errc::peer_closed. Nor does the kernel wake the reader of a socket pair whose other end
/// was closed; the first send after that fails (ECONNREFUSED), and from then on the link is down:
/// the pending receive, and every later one, completes with errc::peer_closed and sends return it.
/// Completions are never run inside async_receive; try_receive() is the synchronous path for
/// draining a burst after a completion (non-blocking recvmsg, "try again" when there is nothing),
/// which saves the event loop's round trip per frame.
///
/// Send. One non-blocking send/sendto per frame; a datagram is taken whole or not at all. When the
/// socket cannot take it now (EAGAIN, ENOBUFS) the frame is dropped and counted (tx_dropped,
/// std::errc::no_buffer_space); nothing is queued here. A peer that is gone or not bound yet
/// (ECONNREFUSED, ENOENT) is also a counted drop, errc::peer_closed; the next send tries again.
///
/// Socket buffers. For datagrams the buffer sizes decide how large a burst survives. Apple's
/// documentation for VZFileHandleNetworkDeviceAttachment asks for SO_RCVBUF at least twice
/// SO_SNDBUF, and four times for best performance; vfkit's guidance is 1 MiB to send and 4 MiB to
/// receive. Those are the defaults here, set on the socket at creation (Linux doubles the value
/// asked for, and caps it at net.core.wmem_max / rmem_max unless the caller has CAP_NET_ADMIN,
/// in which case SO_SNDBUFFORCE / SO_RCVBUFFORCE lift the cap; both are tried). On Linux two
/// more limits apply to unix datagrams: bytes a sender has queued at the receiver count against
/// the *sender's* SO_SNDBUF until they are read, and a receiver not connected to its sender
/// accepts at most net.unix.max_dgram_qlen datagrams in its queue (10 by default) before the
/// sender gets EAGAIN. A peer that floods us faster than we read is therefore held back by its
/// own socket, not by our memory.
///
/// close() aborts a pending receive (std::errc::operation_canceled), closes the socket and
/// removes the socket file bind() created (if it is still that file). bind() treats what is
/// already at its path as qemu_stream's server does: a stale socket file (connect refused) is
/// removed, a live socket is refused with std::errc::address_in_use, any other file with
/// std::errc::file_exists.
///
/// Limits: one frame per datagram, no virtio-net header or offloads; Linux and macOS semantics
/// differ in the buffer limits above (this header is written and tested against Linux). POSIX only.
#pragma once

#include <ankanet/backend/backend.hpp>
#include <ankanet/backend/detail/unix_socket_file.hpp>
#include <ankanet/error.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/local/datagram_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

namespace ankanet::backend {

/// How a unix datagram endpoint is set up.
struct unix_dgram_options {
    /// The largest IP packet a frame may carry; datagrams up to max_frame_len(mtu) pass.
    std::size_t mtu = default_mtu;
    /// SO_SNDBUF asked for (see the top of the file); 0 leaves the system default.
    std::size_t send_buffer = 1024 * 1024;
    /// SO_RCVBUF asked for; 0 leaves the system default.
    std::size_t receive_buffer = 4 * 1024 * 1024;
};

namespace detail {


/// Asks for a socket buffer size: the privileged option first where there is one (it ignores the
/// sysctl cap), then the ordinary one. Best effort: the kernel may give less, and a failure
/// leaves the default.
inline void unix_dgram_set_buffer(int fd, int forced_option, int option, std::size_t bytes) noexcept {
    if (bytes == 0) return;
    // The kernel doubles the value (for its bookkeeping) and keeps it in an int.
    const int value = static_cast<int>(std::min<std::size_t>(bytes, std::numeric_limits<int>::max() / 2));
    if (forced_option != 0 && ::setsockopt(fd, SOL_SOCKET, forced_option, &value, sizeof(value)) == 0) return;
    static_cast<void>(::setsockopt(fd, SOL_SOCKET, option, &value, sizeof(value)));
}

#if defined(SO_SNDBUFFORCE) && defined(SO_RCVBUFFORCE)
inline constexpr int unix_dgram_sndbuf_force = SO_SNDBUFFORCE;
inline constexpr int unix_dgram_rcvbuf_force = SO_RCVBUFFORCE;
#else
inline constexpr int unix_dgram_sndbuf_force = 0;
inline constexpr int unix_dgram_rcvbuf_force = 0;
#endif

/// What a unix datagram endpoint's pending receive and the endpoint share; kept alive by both.
struct unix_dgram_state {
    unix_dgram_state(boost::asio::local::datagram_protocol::socket socket_, std::size_t mtu_, bool connected_)
        : socket(std::move(socket_)), mtu(mtu_), connected(connected_) {}

    boost::asio::local::datagram_protocol::socket socket;
    std::size_t mtu;
    bool connected;                                                   ///< a socket pair: the kernel knows the peer
    std::optional<boost::asio::local::datagram_protocol::endpoint> peer; ///< given, or learned (bound sockets)
    boost::asio::local::datagram_protocol::endpoint sender;           ///< filled by each receive
    counters stats;
    std::uint64_t rx_foreign = 0;
    bool closed = false;
    bool peer_gone = false; ///< a socket pair whose other end is closed (a send told us)
    bool receiving = false; ///< an async_receive is pending

    /// Whether the datagram just received (of real length `size`, from `sender`) is a frame to
    /// deliver; counts and learns as the top of the file says.
    bool accept(std::size_t size) {
        if (!connected && !from_peer()) {
            ++rx_foreign;
            return false;
        }
        if (auto why = check_frame_size(size, mtu)) {
            count_bad_rx(stats, why);
            return false;
        }
        return true;
    }
    /// Whether the datagram just received came from the peer; learns the peer when none is known.
    bool from_peer() {
        if (peer) return sender == *peer;
        if (sender.path().empty()) return false; // an unbound sender: no address to answer
        peer = sender;
        return true;
    }
    /// What a failed receive means.
    std::error_code receive_error(const boost::system::error_code& ec) const {
        if (ec == boost::asio::error::operation_aborted) {
            // Canceled by close(), or by send() finding the other end of the pair gone.
            return peer_gone && !closed ? make_error_code(errc::peer_closed) : std::make_error_code(std::errc::operation_canceled);
        }
        if (connected && (ec == boost::asio::error::connection_reset || ec == boost::asio::error::connection_refused)) {
            return make_error_code(errc::peer_closed);
        }
        return std::error_code(ec);
    }

    // The socket file bind() created, removed at close() if it is still that file.
    unix_socket_file socket_file;
};

/// One async_receive: receives datagrams until one is a frame of a valid size from the peer.
struct unix_dgram_receive_op {
    struct posted_completion {};

    std::shared_ptr<unix_dgram_state> state;
    wire::mutable_bytes buffer;

    template <class Self>
    void operator()(Self& self) {
        state->receiving = true;
        if (state->closed || state->peer_gone) {
            // Complete through the executor, never inside async_receive.
            auto executor = state->socket.get_executor();
            const std::error_code ec = state->closed ? std::make_error_code(std::errc::operation_canceled)
                                                     : make_error_code(errc::peer_closed);
            boost::asio::post(executor, boost::asio::append(std::move(self), posted_completion{}, ec, std::size_t{0}));
            return;
        }
        receive(self);
    }

    template <class Self>
    void operator()(Self& self, posted_completion, std::error_code ec, std::size_t n) {
        done(self, ec, n);
    }

    // A recvmsg finished; `size` is the datagram's real length (MSG_TRUNC).
    template <class Self>
    void operator()(Self& self, boost::system::error_code ec, std::size_t size) {
        auto& s = *state;
        if (ec) return done(self, s.receive_error(ec), 0);
        if (!s.accept(size)) return receive(self);
        if (size > buffer.size()) return done(self, make_error_code(errc::buffer_too_small), 0);
        ++s.stats.rx_frames;
        s.stats.rx_bytes += size;
        done(self, std::error_code{}, size);
    }

    template <class Self>
    void done(Self& self, std::error_code ec, std::size_t n) {
        state->receiving = false;
        self.complete(ec, n);
    }

    template <class Self>
    void receive(Self& self) {
        auto& s = *state;
        s.socket.async_receive_from(boost::asio::buffer(buffer.data(), buffer.size()), s.sender, MSG_TRUNC, std::move(self));
    }
};

} // namespace detail

/// A frame backend over a unix datagram socket, one frame per datagram. See the top of this file.
///
/// Movable, not copyable; a moved-from endpoint may only be destroyed or assigned to. Use it from
/// its executor's thread.
///
/// @par Example
/// @code
/// // qemu-system-x86_64 ... -netdev dgram,id=n0,local.type=unix,local.path=/run/vm1/qemu.sock,
/// //                                          remote.type=unix,remote.path=/run/vm1/ankanet.sock
/// auto vm = unix_dgram_endpoint::bind(io.get_executor(), "/run/vm1/ankanet.sock", "/run/vm1/qemu.sock");
/// if (!vm) return vm.error();
/// vm->async_receive(buffer, [&](std::error_code ec, std::size_t n) { ... });
/// @endcode
class unix_dgram_endpoint {
public:
    using executor_type = boost::asio::any_io_executor; ///< the executor its asynchronous operations run on

    /// Binds a datagram socket at `path` (removing a stale socket file first). The peer is
    /// `peer` when given, else learned from the first datagram (see the top of the file).
    /// @return the endpoint, or: std::errc::invalid_argument (MTU outside [min_mtu, max_mtu]);
    /// std::errc::filename_too_long (a path does not fit a sockaddr_un); std::errc::address_in_use
    /// (a live socket is at `path`); std::errc::file_exists (another kind of file is); the error of
    /// socket/bind.
    [[nodiscard]] static result<unix_dgram_endpoint> bind(executor_type executor, const std::filesystem::path& path,
                                                          std::optional<std::filesystem::path> peer = std::nullopt,
                                                          const unix_dgram_options& options = {}) {
        if (!valid_mtu(options.mtu)) return std::make_error_code(std::errc::invalid_argument);
        ::sockaddr_un address{};
        if (!detail::fill_unix_address(path, address)) return std::make_error_code(std::errc::filename_too_long);
        if (peer && !detail::fill_unix_address(*peer, address)) return std::make_error_code(std::errc::filename_too_long);
        if (auto ec = detail::clear_stale_socket(path, SOCK_DGRAM)) return ec;

        boost::asio::local::datagram_protocol::socket socket{std::move(executor)};
        boost::system::error_code ec;
        socket.open(boost::asio::local::datagram_protocol{}, ec);
        if (ec) return std::error_code(ec);
        if (auto why = prepare(socket, options)) return why;
        socket.bind(boost::asio::local::datagram_protocol::endpoint{path.native()}, ec);
        if (ec) return std::error_code(ec);

        auto state = std::make_shared<detail::unix_dgram_state>(std::move(socket), options.mtu, false);
        if (peer) state->peer = boost::asio::local::datagram_protocol::endpoint{peer->native()};
        state->socket_file.remember(path);
        return unix_dgram_endpoint{std::move(state)};
    }

    /// Takes over a unix datagram socket descriptor: one end of socketpair(AF_UNIX, SOCK_DGRAM)
    /// whose other end the VM has, or a bound, unconnected socket (its peer is then learned).
    /// On success the endpoint owns `fd` and has set O_NONBLOCK on it; on error `fd` is still the
    /// caller's.
    /// @return the endpoint, or: std::errc::invalid_argument (bad MTU);
    /// std::errc::wrong_protocol_type (not a datagram socket); std::errc::address_family_not_supported
    /// (not a unix socket); the error of getsockopt/getsockname (ENOTSOCK for no socket at all).
    [[nodiscard]] static result<unix_dgram_endpoint> adopt(executor_type executor, int fd, const unix_dgram_options& options = {}) {
        if (!valid_mtu(options.mtu)) return std::make_error_code(std::errc::invalid_argument);
        int type = 0;
        ::socklen_t type_len = sizeof(type);
        if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) != 0) return detail::last_errno();
        if (type != SOCK_DGRAM) return std::make_error_code(std::errc::wrong_protocol_type);
        ::sockaddr_storage address{};
        ::socklen_t address_len = sizeof(address);
        if (::getsockname(fd, reinterpret_cast<::sockaddr*>(&address), &address_len) != 0) return detail::last_errno();
        if (address.ss_family != AF_UNIX) return std::make_error_code(std::errc::address_family_not_supported);
        address_len = sizeof(address);
        const bool connected = ::getpeername(fd, reinterpret_cast<::sockaddr*>(&address), &address_len) == 0;

        boost::asio::local::datagram_protocol::socket socket{std::move(executor)};
        boost::system::error_code ec;
        socket.assign(boost::asio::local::datagram_protocol{}, fd, ec);
        if (ec) return std::error_code(ec);
        if (auto why = prepare(socket, options)) {
            boost::system::error_code ignored;
            static_cast<void>(socket.release(ignored)); // give the descriptor back
            return why;
        }
        return unix_dgram_endpoint{std::make_shared<detail::unix_dgram_state>(std::move(socket), options.mtu, connected)};
    }

    /// Move-constructs (memberwise).
    unix_dgram_endpoint(unix_dgram_endpoint&&) noexcept = default;
    /// Move assignment.
    unix_dgram_endpoint& operator=(unix_dgram_endpoint&& other) noexcept {
        if (this != &other) {
            close();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    unix_dgram_endpoint(const unix_dgram_endpoint&) = delete;
    unix_dgram_endpoint& operator=(const unix_dgram_endpoint&) = delete;
    ~unix_dgram_endpoint() { close(); }

    /// The executor its asynchronous operations run on.
    executor_type get_executor() const noexcept { return state_->socket.get_executor(); }
    /// The MTU.
    std::size_t mtu() const noexcept { return state_->mtu; }
    /// The MAC.
    std::optional<wire::mac_address> mac() const noexcept { return std::nullopt; }
    /// What it counted so far.
    counters stats() const noexcept { return state_->stats; }
    /// Datagrams dropped because they came from someone other than the peer (bound sockets only).
    std::uint64_t rx_foreign() const noexcept { return state_->rx_foreign; }
    /// The peer's path: given, or learned; empty while unknown, and for a connected socket pair.
    std::optional<std::filesystem::path> peer() const {
        if (!state_->peer) return std::nullopt;
        return std::filesystem::path{state_->peer->path()};
    }
    /// Whether it is open.
    bool is_open() const noexcept { return state_ && state_->socket.is_open(); }
    /// The socket's descriptor (e.g. to read back the buffer sizes the kernel granted). Still ours.
    int native_handle() { return state_->socket.native_handle(); }

    /// Receives one frame into `buffer`, which should hold max_frame_len(mtu()) bytes.
    ///
    /// Completes with (error_code, size): a frame of a valid size from the peer;
    /// errc::buffer_too_small (a valid frame longer than `buffer`, dropped);
    /// std::errc::operation_canceled after close(); errc::peer_closed once the other end of a
    /// socket pair is known to be closed (see the top of the file). Never completes inline. One at a time; `buffer` must stay valid
    /// until completion. The bytes of `buffer` past the returned size are unspecified.
    /// @param token a completion handler `void(std::error_code, std::size_t)`, or another Asio
    /// completion token.
    template <class CompletionToken>
    auto async_receive(wire::mutable_bytes buffer, CompletionToken&& token) {
        return boost::asio::async_compose<CompletionToken, void(std::error_code, std::size_t)>(
            detail::unix_dgram_receive_op{state_, buffer}, token, state_->socket);
    }

    /// Receives one frame now, without waiting and without a completion: non-blocking recvmsg
    /// calls until one datagram is a frame to deliver (at most 64 datagrams looked at). The fast
    /// path for draining a burst after an async_receive completion; it saves the event loop's
    /// round trip per frame, not the system call.
    /// @return the frame's size; or std::errc::resource_unavailable_try_again (nothing to take
    /// now: use async_receive); std::errc::operation_in_progress (an async_receive is pending);
    /// or what async_receive would complete with.
    result<std::size_t> try_receive(wire::mutable_bytes buffer) {
        auto& s = *state_;
        if (s.closed) return std::make_error_code(std::errc::operation_canceled);
        if (s.receiving) return std::make_error_code(std::errc::operation_in_progress);
        if (s.peer_gone) return make_error_code(errc::peer_closed);
        for (int looked = 0; looked < 64; ++looked) {
            boost::system::error_code ec;
            const std::size_t size =
                s.socket.receive_from(boost::asio::buffer(buffer.data(), buffer.size()), s.sender, MSG_TRUNC, ec);
            if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) break;
            if (ec) return s.receive_error(ec);
            if (!s.accept(size)) continue;
            if (size > buffer.size()) return make_error_code(errc::buffer_too_small);
            ++s.stats.rx_frames;
            s.stats.rx_bytes += size;
            return size;
        }
        return std::make_error_code(std::errc::resource_unavailable_try_again);
    }

    /// Sends one frame as one datagram, without blocking.
    /// @return empty on success; errc::truncated / errc::bad_length for a frame of a bad size
    /// (tx_invalid); otherwise a drop counted in tx_dropped: std::errc::no_buffer_space (the
    /// socket is full), errc::peer_closed (the peer is gone or not bound yet),
    /// std::errc::not_connected (no peer known yet, or closed), or the socket's error.
    std::error_code send(wire::const_bytes frame) {
        auto& s = *state_;
        if (auto why = check_frame_size(frame.size(), s.mtu)) {
            ++s.stats.tx_invalid;
            return why;
        }
        if (s.closed || (!s.connected && !s.peer)) {
            ++s.stats.tx_dropped;
            return std::make_error_code(std::errc::not_connected);
        }
        if (s.peer_gone) {
            ++s.stats.tx_dropped;
            return make_error_code(errc::peer_closed);
        }
        boost::system::error_code ec;
        const auto data = boost::asio::buffer(frame.data(), frame.size());
        if (s.connected) {
            s.socket.send(data, 0, ec);
        } else {
            s.socket.send_to(data, *s.peer, 0, ec);
        }
        if (ec) {
            ++s.stats.tx_dropped;
            if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again ||
                ec == boost::asio::error::no_buffer_space) {
                return std::make_error_code(std::errc::no_buffer_space);
            }
            if (ec == boost::asio::error::connection_refused || ec == boost::asio::error::connection_reset ||
                ec == boost::system::error_code{ENOENT, boost::system::system_category()}) {
                if (s.connected) {
                    // The other end of the pair is closed for good: wake the pending receive.
                    s.peer_gone = true;
                    boost::system::error_code ignored;
                    s.socket.cancel(ignored);
                }
                return make_error_code(errc::peer_closed);
            }
            return std::error_code(ec);
        }
        ++s.stats.tx_frames;
        s.stats.tx_bytes += frame.size();
        return {};
    }

    /// Closes the socket: a pending receive completes with std::errc::operation_canceled, later
    /// sends fail with std::errc::not_connected, and the socket file bind() made is removed. Idempotent.
    void close() {
        if (!state_ || state_->closed) return;
        state_->closed = true;
        boost::system::error_code ignored;
        state_->socket.close(ignored);
        state_->socket_file.remove();
    }

private:
    explicit unix_dgram_endpoint(std::shared_ptr<detail::unix_dgram_state> state) : state_(std::move(state)) {}

    static bool valid_mtu(std::size_t mtu) noexcept { return mtu >= min_mtu && mtu <= max_mtu; }

    /// Makes the socket non-blocking (send() must get EAGAIN, never wait) and sizes its buffers.
    static std::error_code prepare(boost::asio::local::datagram_protocol::socket& socket, const unix_dgram_options& options) {
        boost::system::error_code ec;
        socket.non_blocking(true, ec);
        if (ec) return std::error_code(ec);
        detail::unix_dgram_set_buffer(socket.native_handle(), detail::unix_dgram_sndbuf_force, SO_SNDBUF, options.send_buffer);
        detail::unix_dgram_set_buffer(socket.native_handle(), detail::unix_dgram_rcvbuf_force, SO_RCVBUF, options.receive_buffer);
        return {};
    }

    std::shared_ptr<detail::unix_dgram_state> state_;
};

static_assert(frame_backend<unix_dgram_endpoint>);

} // namespace ankanet::backend
