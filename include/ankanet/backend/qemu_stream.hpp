/// @file
/// ankanet::backend::qemu_stream — a VM's frames over QEMU's `-netdev stream` protocol.
///
/// Theory of operation. QEMU's stream netdev (and passt, and socket_vmnet, which speak the same
/// protocol) carries Ethernet frames over a byte stream — a unix or TCP socket — by prefixing each
/// frame with its length as a 32-bit big-endian integer: [len][frame][len][frame]... There is no
/// handshake and no other framing. `qemu_stream_connection` is one VM on one such connected
/// socket; `qemu_stream_server` listens for VMs (a unix path, or a TCP endpoint) and hands each
/// accepted connection to a callback. Both meet the frame_backend contract (backend.hpp).
///
/// Socket type. Every connection is a boost::asio::generic::stream_protocol::socket, so one
/// non-template class serves unix and TCP alike; a local::stream_protocol or ip::tcp socket the
/// caller connected itself is converted by adopt(). TCP sockets get TCP_NODELAY: each frame is one
/// small write and Nagle's delay would sit on interactive traffic.
///
/// Memory. An idle connection holds no buffer: what it costs is its shared state (a few hundred
/// bytes), Asio's record of the descriptor and the pending wait, and the kernel's socket. The
/// receive buffer exists only while bytes are being taken in or a partial frame is held; the send
/// ring only while the socket has not taken everything sent. bench/qemu_stream_memory_bench.cpp
/// measures it: about 2.2 KB per idle connection as ankanetd holds one (most of it the port's frame
/// buffer, port.hpp), where it was about 395 KB when a 128 KiB receive buffer and a 256 KiB send
/// ring were allocated up front; tests/backend/qemu_stream_test.cpp bounds 300 idle connections.
/// A busy link holds up to receive_buffer + send_buffer while busy, and a peer that stops in the
/// middle of a frame keeps the receive buffer until it goes on or goes away.
///
/// Receive. A pending async_receive with nothing buffered waits for the socket to become readable
/// (async_wait, which holds no buffer) rather than reading into one. When it is, a per-connection
/// buffer (`receive_buffer`, 64 KiB by default, at least two maximal frames) is allocated and
/// filled by a read as large as its free tail, so one read system call brings in as many frames as
/// fit; async_receive and try_receive then copy them out one at a time,
/// without another system call while whole frames remain. Before each read the partial frame at the
/// end (never more than one frame) is moved to the front, so reads stay large. When the connection
/// goes back to waiting (or try_receive finds nothing) with no byte left unparsed, the buffer is
/// freed. While the bytes hold no frame (a skipped oversize frame can outsize the buffer), a receive
/// reads again at once, up to 64 reads, then waits a turn of the event loop. An allocation that fails completes the receive with std::errc::not_enough_memory. For
/// each prefix:
///  * length < 14 (a runt, zero included): the length and its bytes are skipped, rx_runt counted;
///    the stream stays in sync.
///  * max_frame_len(mtu) < length <= qemu_stream_max_length: a frame too long for this link but a
///    plausible one (a guest whose MTU is above ours). Its bytes are skipped, rx_oversize counted,
///    and the stream stays in sync, as a NIC drops a frame over its MTU and keeps the link.
///  * length > qemu_stream_max_length (64 KiB + 4 KiB, the size of QEMU's own receive buffer for
///    this protocol, so no QEMU peer sends more): the prefix is a lie or the stream is out of
///    sync, and nothing after it can be trusted. rx_oversize is counted, the connection is closed
///    (the peer sees end of stream), and the receive completes with errc::bad_length; later
///    receives complete with errc::bad_length again and sends return std::errc::not_connected.
///  * end of stream or a reset: frames already complete in the buffer are still delivered, then
///    the receive completes with errc::peer_closed. A frame cut short by the disconnect is
///    discarded; it is not counted, since it was never a frame.
/// A valid frame longer than the caller's buffer is dropped with errc::buffer_too_small, as the
/// memory backend does. A completion never runs inside async_receive: frames already buffered
/// are delivered through a post to the executor. That post is most of a frame's receive cost (Asio
/// polls its reactor between handlers: one epoll_wait per frame), so try_receive() offers the
/// synchronous path: it takes the next buffered frame, or does one non-blocking read, and says
/// "try again" when there is nothing; a caller drains a burst with it after each completion.
///
/// Send. send() copies [len][frame] out at once and returns; it never blocks, and the only
/// memory it uses is the ring (plus Asio's recycled handler memory for the write). When nothing is
/// waiting to go out, it writes directly with one non-blocking sendmsg of the two pieces (no copy
/// at all, and no ring, when the kernel takes everything). Whatever the kernel did not take goes
/// into a bounded byte ring (`send_buffer`, at least one maximal frame; allocated whole at that
/// first short write, freed again as soon as it has drained), written by one async_write_some at a
/// time, in order. If the ring cannot be allocated the frame is dropped (tx_dropped,
/// std::errc::not_enough_memory) and, if part of it already went out, the link is shut, since the
/// stream would be out of sync. A frame that does not fit in the ring's free space is
/// dropped whole and counted (tx_dropped, std::errc::no_buffer_space): the stream never carries
/// part of a frame. So a peer that stops reading costs at most `send_buffer` bytes here plus the
/// kernel's socket buffer, and drops beyond that. tx_frames counts frames accepted into the stream;
/// if the connection then fails, the ones still in the ring are lost with it (the write error
/// makes later sends return errc::peer_closed).
///
/// close() aborts a pending receive (std::errc::operation_canceled), discards unsent bytes and
/// closes the socket. A destroyed connection closes itself; its pending receive still completes,
/// because the operation holds the connection's state alive.
///
/// The server. listen() on a unix path first deals with what is already there: nothing is fine; a
/// socket file that no one accepts on (connect() is refused) is a stale leftover of a crashed
/// process and is removed; a socket someone still listens on is refused (std::errc::address_in_use)
/// and any other kind of file is refused (std::errc::file_exists) — never deleted. The socket file
/// is created with the process umask; access control is the directory's and the umask's business.
/// close() (or destruction) stops accepting and removes the socket file, if it is still the one
/// this server created. Each accepted connection is adopted with the server's options and handed
/// to the callback, which owns it from then on; the server keeps no list of connections, only a
/// count of those alive (handed out, neither closed nor destroyed). At `max_connections` alive (256
/// by default) a new connection is accepted and closed at once — its peer sees end of stream, it
/// costs nothing here — and counted (refused()); on_limit() tells it once per run of refusals, so
/// a daemon can log it without a flood of lines. Failed
/// accepts are counted; when the process is out of descriptors or memory, accepting pauses for
/// 100 ms instead of spinning on a connection it cannot take. A TCP listener authenticates nobody:
/// whoever reaches it becomes a VM on the network, so bind it to loopback.
///
/// Limits: no virtio-net header or offloads on the stream (QEMU sends none on it); no reconnection
/// here: a VM that connects again is a new connection, a new port. POSIX only.
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
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <system_error>
#include <utility>

namespace ankanet::backend {

/// The length prefix before every frame: a 32-bit big-endian byte count.
inline constexpr std::size_t qemu_stream_prefix_len = 4;
/// The longest length a prefix may state while the stream is still trusted (see the top of the file).
inline constexpr std::size_t qemu_stream_max_length = 65536 + 4096;

/// How a connection is set up; the server applies the same to each connection it accepts.
struct qemu_stream_options {
    /// The largest IP packet a frame may carry; frames up to max_frame_len(mtu) pass.
    std::size_t mtu = default_mtu;
    /// Bytes of the coalescing receive buffer; raised to two maximal frames if smaller. Allocated
    /// only while bytes are being read or a partial frame is held; freed when the connection waits
    /// with nothing buffered, so its size costs memory only on a busy link. 64 KiB takes a burst of
    /// 43 frames of 1514 bytes in one read system call: with two frames per read (3 036 bytes at
    /// MTU 1500) bench/port_bench.cpp ran 3 times slower on full-size frames.
    std::size_t receive_buffer = 64 * 1024;
    /// Bytes of the output ring that holds what the socket did not take at once; raised to one
    /// maximal frame if smaller. The bound on memory a peer that does not read can make us hold.
    /// Allocated at the first send the socket does not take whole; freed when it drains.
    std::size_t send_buffer = 256 * 1024;
    /// qemu_stream_server only: the most connections of one listener alive at once (accepted, and
    /// neither closed nor destroyed). One more is accepted and closed at once, so its peer sees
    /// end of stream; it is counted in refused(). 256 holds a host's worth of VMs on one socket
    /// while keeping a flood of connections within a quarter of the default 1 024 descriptors and
    /// its memory within 256 x (send_buffer + receive buffer) even if every peer stops reading.
    std::size_t max_connections = 256;
};

namespace detail {


/// A bounded ring of bytes: the output side of one connection. Its storage is allocated by the
/// first push and freed again by release() once empty, so an idle connection holds none.
class stream_byte_ring {
public:
    explicit stream_byte_ring(std::size_t capacity) noexcept : capacity_(capacity) {}

    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    std::size_t space() const noexcept { return capacity_ - size_; }
    /// Whether the storage is allocated now.
    bool allocated() const noexcept { return data_ != nullptr; }

    /// Allocates the storage if there is none; throws std::bad_alloc.
    void allocate() {
        if (!data_) data_ = std::make_unique<std::byte[]>(capacity_);
    }
    /// Appends `bytes`; the caller has allocated and checked that space() holds them.
    void push(wire::const_bytes bytes) noexcept {
        if (bytes.empty()) return;
        std::size_t tail = head_ + size_;
        if (tail >= capacity_) tail -= capacity_;
        const std::size_t first = std::min(bytes.size(), capacity_ - tail);
        std::memcpy(data_.get() + tail, bytes.data(), first);
        if (first < bytes.size()) std::memcpy(data_.get(), bytes.data() + first, bytes.size() - first);
        size_ += bytes.size();
    }
    /// The queued bytes, oldest first, as at most two pieces.
    std::array<boost::asio::const_buffer, 2> readable() const noexcept {
        const std::size_t first = std::min(size_, capacity_ - head_);
        return {boost::asio::const_buffer{data_.get() + head_, first},
                boost::asio::const_buffer{data_.get(), size_ - first}};
    }
    void consume(std::size_t n) noexcept {
        head_ += n;
        if (head_ >= capacity_) head_ -= capacity_;
        size_ -= n;
        if (size_ == 0) head_ = 0;
    }
    void clear() noexcept { head_ = size_ = 0; }
    /// Frees the storage if nothing is queued; no write may be reading it.
    void release() noexcept {
        if (size_ == 0) data_.reset();
    }

private:
    std::unique_ptr<std::byte[]> data_;
    std::size_t capacity_;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
};

/// The most reads one receive makes while the bytes hold no frame (runts and skipped oversize
/// frames): enough to skip the longest plausible frame with the smallest buffer, few enough that a
/// peer writing only junk as fast as we read cannot hold the event loop.
inline constexpr std::size_t qemu_stream_reads_per_turn = 64;

/// What a failed read or write on the stream means for the link.
inline std::error_code stream_link_error(const boost::system::error_code& ec) noexcept {
    if (ec == boost::asio::error::operation_aborted) return std::make_error_code(std::errc::operation_canceled);
    if (ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset ||
        ec == boost::asio::error::broken_pipe || ec == boost::asio::error::not_connected) {
        return make_error_code(errc::peer_closed);
    }
    return std::error_code(ec);
}

/// What a connection's pending operations and the connection itself share; kept alive by all.
/// The live connections of one server, shared by the server and each connection it accepted, so
/// either may go first.
struct qemu_stream_slots {
    std::size_t live = 0;
    bool limit_reported = false; ///< the limit was reported since the last connection accepted
};

/// One connection's place in its server's count; given back once, at close or at destruction.
class qemu_stream_slot {
public:
    qemu_stream_slot() = default;
    explicit qemu_stream_slot(std::shared_ptr<qemu_stream_slots> slots) noexcept : slots_(std::move(slots)) {
        if (slots_) ++slots_->live;
    }
    qemu_stream_slot(qemu_stream_slot&& other) noexcept : slots_(std::move(other.slots_)) {}
    qemu_stream_slot& operator=(qemu_stream_slot&& other) noexcept {
        if (this != &other) {
            release();
            slots_ = std::move(other.slots_);
        }
        return *this;
    }
    qemu_stream_slot(const qemu_stream_slot&) = delete;
    qemu_stream_slot& operator=(const qemu_stream_slot&) = delete;
    ~qemu_stream_slot() { release(); }

    void release() noexcept {
        if (slots_) --slots_->live;
        slots_.reset();
    }

private:
    std::shared_ptr<qemu_stream_slots> slots_;
};

struct qemu_stream_state {
    qemu_stream_state(boost::asio::generic::stream_protocol::socket socket_, std::size_t mtu_, std::size_t receive_capacity,
                      std::size_t send_capacity)
        : socket(std::move(socket_)), mtu(mtu_), rx_capacity(receive_capacity), tx(send_capacity) {}

    boost::asio::generic::stream_protocol::socket socket;
    std::size_t mtu;
    counters stats;
    qemu_stream_slot slot; ///< the count of the server that accepted this connection, if any

    // Receive side: bytes [rx_begin, rx_end) of rx are read and not yet parsed. rx is allocated
    // for a read (ensure_rx) and freed when the connection waits with nothing buffered (idle_rx).
    std::unique_ptr<std::byte[]> rx;
    std::size_t rx_capacity;
    std::size_t rx_begin = 0;
    std::size_t rx_end = 0;
    std::size_t rx_skip = 0;   ///< bytes of an oversize frame still to discard
    std::error_code rx_error;  ///< sticky: why no more bytes will come (end of stream, desync, ...)

    // Send side.
    stream_byte_ring tx;
    bool writing = false;      ///< an async_write_some from tx is in flight
    std::error_code tx_error;  ///< sticky: why sends now fail

    bool closed = false;       ///< close() was called
    bool receiving = false;    ///< an async_receive is pending

    std::size_t buffered() const noexcept { return rx_end - rx_begin; }
    std::uint32_t peek_length() const noexcept {
        return wire::load_be32(wire::const_bytes{rx.get() + rx_begin, qemu_stream_prefix_len}, 0);
    }
    void consume(std::size_t n) noexcept {
        rx_begin += n;
        if (rx_begin == rx_end) rx_begin = rx_end = 0;
    }
    void discard_skipped() noexcept {
        const std::size_t n = std::min(rx_skip, buffered());
        rx_skip -= n;
        consume(n);
    }
    /// The receive buffer, allocated for a read that is about to happen.
    void ensure_rx() {
        if (!rx) rx = std::make_unique<std::byte[]>(rx_capacity);
    }
    /// Frees the receive buffer while nothing in it is unparsed: the connection is about to wait.
    void idle_rx() noexcept {
        if (buffered() == 0) {
            rx.reset();
            rx_begin = rx_end = 0;
        }
    }
    /// One non-blocking read into the free tail, allocating the buffer first.
    /// @return false if the socket had nothing (would block); else the read was accounted.
    bool read_now() {
        compact();
        ensure_rx();
        boost::system::error_code ec;
        const std::size_t n = socket.read_some(boost::asio::buffer(rx.get() + rx_end, rx_capacity - rx_end), ec);
        if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) return false;
        account_read(ec, n);
        return true;
    }
    /// Moves the unparsed tail (less than one frame) to the front, so the next read is large.
    void compact() noexcept {
        if (rx_begin == 0) return;
        const std::size_t n = buffered();
        if (n != 0) std::memmove(rx.get(), rx.get() + rx_begin, n);
        rx_begin = 0;
        rx_end = n;
    }
    /// What the buffered bytes hold for a receive into `buffer`: a frame (copied out, its size),
    /// an error, or nothing yet (`need_more`). Skips runts and plausible oversize frames, counting
    /// them; a lying prefix tears the link down (see the top of the file).
    struct parsed {
        std::error_code ec;
        std::size_t size = 0;
        bool need_more = false;
    };
    parsed next(wire::mutable_bytes buffer) noexcept {
        for (;;) {
            discard_skipped();
            if (rx_skip == 0 && buffered() >= qemu_stream_prefix_len) {
                const std::size_t length = peek_length();
                if (length > qemu_stream_max_length) {
                    ++stats.rx_oversize;
                    shut(make_error_code(errc::bad_length), std::make_error_code(std::errc::not_connected));
                    return {rx_error};
                }
                if (length > max_frame_len(mtu)) {
                    ++stats.rx_oversize;
                    consume(qemu_stream_prefix_len);
                    rx_skip = length;
                    continue;
                }
                if (buffered() >= qemu_stream_prefix_len + length) {
                    const std::byte* frame = rx.get() + rx_begin + qemu_stream_prefix_len;
                    if (length < wire::ethernet::header_len) {
                        ++stats.rx_runt;
                        consume(qemu_stream_prefix_len + length);
                        continue;
                    }
                    if (length > buffer.size()) {
                        consume(qemu_stream_prefix_len + length);
                        return {make_error_code(errc::buffer_too_small)};
                    }
                    std::memcpy(buffer.data(), frame, length);
                    consume(qemu_stream_prefix_len + length);
                    ++stats.rx_frames;
                    stats.rx_bytes += length;
                    return {{}, length};
                }
            }
            if (rx_error) return {rx_error};
            return {{}, 0, true};
        }
    }
    /// Records the outcome of a read of `n` bytes into the free tail.
    void account_read(const boost::system::error_code& ec, std::size_t n) noexcept {
        rx_end += n;
        if (ec && !rx_error) rx_error = stream_link_error(ec);
    }

    /// Tears the link down from our side: the stream is out of sync, or the caller closed it.
    void shut(std::error_code receive_error, std::error_code send_error) noexcept {
        if (!rx_error) rx_error = receive_error;
        if (!tx_error) tx_error = send_error;
        rx_begin = rx_end = rx_skip = 0;
        rx.reset();
        tx.clear();
        if (!writing) tx.release(); // else the write in flight still reads it; its completion frees it
        slot.release();
        boost::system::error_code ignored;
        if (socket.is_open()) {
            socket.shutdown(boost::asio::socket_base::shutdown_both, ignored);
            socket.close(ignored);
        }
    }
};

/// Writes the ring's contents, one async_write_some at a time, until it is empty.
inline void qemu_stream_start_write(const std::shared_ptr<qemu_stream_state>& state) {
    state->writing = true;
    state->socket.async_write_some(state->tx.readable(), [state](const boost::system::error_code& ec, std::size_t n) {
        state->writing = false;
        if (state->closed || state->tx_error) { // torn down meanwhile: the ring was discarded
            state->tx.release();
            return;
        }
        if (ec) {
            state->tx_error = stream_link_error(ec);
            state->tx.clear();
            state->tx.release();
            return;
        }
        state->tx.consume(n);
        if (state->tx.empty()) {
            state->tx.release(); // drained: send() writes directly again, and an idle link holds no ring
        } else {
            qemu_stream_start_write(state);
        }
    });
}

/// One async_receive: parses buffered bytes, reading more as needed, until one frame or an error.
struct qemu_stream_receive_op {
    struct posted_completion {};

    std::shared_ptr<qemu_stream_state> state;
    wire::mutable_bytes buffer;
    bool initiating = true;

    template <class Self>
    void operator()(Self& self) {
        state->receiving = true;
        step(self);
    }

    // The socket became readable (or failed, or the wait was cancelled).
    template <class Self>
    void operator()(Self& self, boost::system::error_code ec) {
        initiating = false;
        auto& s = *state;
        if (ec == boost::asio::error::operation_aborted && !s.closed) {
            finish(self, std::make_error_code(std::errc::operation_canceled), 0);
            return;
        }
        if (ec && !s.closed) s.account_read(ec, 0);
        step(self, !ec);
    }

    // A result found while initiating, delivered through the executor.
    template <class Self>
    void operator()(Self& self, posted_completion, std::error_code ec, std::size_t n) {
        state->receiving = false;
        self.complete(ec, n);
    }

    // Parses what is buffered; if that holds no frame, reads once when a wait said the socket is
    // readable, else waits for it. A wait holds no buffer, so an idle connection has none; and a
    // wait (not a speculative read) re-arms the reactor's edge, so data already there is seen.
    template <class Self>
    void step(Self& self, bool readable = false) {
        auto& s = *state;
        for (std::size_t reads = 0;; ++reads) {
            if (s.closed) return finish(self, std::make_error_code(std::errc::operation_canceled), 0);
            const auto result = s.next(buffer);
            if (!result.need_more) return finish(self, result.ec, result.size);
            if (!readable || reads == qemu_stream_reads_per_turn) break;
            try {
                readable = s.read_now(); // more may follow: skipped frames can outsize the buffer
            } catch (const std::bad_alloc&) {
                return finish(self, std::make_error_code(std::errc::not_enough_memory), 0);
            }
        }
        s.idle_rx();
        s.socket.async_wait(boost::asio::socket_base::wait_read, std::move(self));
    }

    template <class Self>
    void finish(Self& self, std::error_code ec, std::size_t n) {
        if (initiating) {
            // Never complete inside async_receive itself.
            auto executor = state->socket.get_executor();
            boost::asio::post(executor, boost::asio::append(std::move(self), posted_completion{}, ec, n));
            return;
        }
        state->receiving = false;
        self.complete(ec, n);
    }
};

} // namespace detail

/// One VM's link over a QEMU stream socket. See the top of this file.
///
/// Movable, not copyable; a moved-from connection may only be destroyed or assigned to. Use it
/// from its executor's thread.
///
/// @par Example
/// @code
/// boost::asio::local::stream_protocol::socket socket{io};
/// socket.connect(boost::asio::local::stream_protocol::endpoint{"/run/vm1/net.sock"}); // QEMU server=on
/// auto vm = qemu_stream_connection::adopt(std::move(socket));
/// if (!vm) return vm.error();
/// vm->async_receive(buffer, [&](std::error_code ec, std::size_t n) { ... });
/// @endcode
class qemu_stream_connection {
public:
    using executor_type = boost::asio::any_io_executor; ///< the executor its asynchronous operations run on
    using socket_type = boost::asio::generic::stream_protocol::socket; ///< the socket type

    /// Takes over a connected stream socket (unix or TCP).
    /// @return the connection, or: std::errc::invalid_argument (MTU outside [min_mtu, max_mtu]);
    /// std::errc::bad_file_descriptor (the socket is not open); the error of making it non-blocking.
    [[nodiscard]] static result<qemu_stream_connection> adopt(socket_type socket, const qemu_stream_options& options = {}) {
        if (auto ec = prepare(socket, options)) return ec;
        return make(std::move(socket), options);
    }

    /// Takes over a connected local::stream_protocol or ip::tcp socket.
    template <class Protocol, class Executor>
    [[nodiscard]] static result<qemu_stream_connection> adopt(boost::asio::basic_stream_socket<Protocol, Executor>&& socket,
                                                              const qemu_stream_options& options = {}) {
        return adopt(socket_type{std::move(socket)}, options);
    }

    /// Takes over a connected stream socket descriptor: one end of socketpair(AF_UNIX,
    /// SOCK_STREAM), or a descriptor a management tool passed (as QEMU's addr.type=fd takes one).
    /// On success the connection owns `fd` and has set O_NONBLOCK on it; on error `fd` is still
    /// the caller's.
    /// @return as adopt(socket), or std::errc::wrong_protocol_type (not a stream socket), or the
    /// error of getsockopt/getsockname (ENOTSOCK for a descriptor that is no socket).
    [[nodiscard]] static result<qemu_stream_connection> adopt(executor_type executor, int fd,
                                                              const qemu_stream_options& options = {}) {
        int type = 0;
        ::socklen_t type_len = sizeof(type);
        if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) != 0) return detail::last_errno();
        if (type != SOCK_STREAM) return std::make_error_code(std::errc::wrong_protocol_type);
        ::sockaddr_storage address{};
        ::socklen_t address_len = sizeof(address);
        if (::getsockname(fd, reinterpret_cast<::sockaddr*>(&address), &address_len) != 0) return detail::last_errno();
        socket_type socket{std::move(executor)};
        boost::system::error_code ec;
        socket.assign(boost::asio::generic::stream_protocol{address.ss_family, 0}, fd, ec);
        if (ec) return std::error_code(ec);
        if (auto why = prepare(socket, options)) {
            boost::system::error_code ignored;
            static_cast<void>(socket.release(ignored)); // give the descriptor back
            return why;
        }
        return make(std::move(socket), options);
    }

    /// Move-constructs (memberwise).
    qemu_stream_connection(qemu_stream_connection&&) noexcept = default;
    /// Move assignment.
    qemu_stream_connection& operator=(qemu_stream_connection&& other) noexcept {
        if (this != &other) {
            close();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    qemu_stream_connection(const qemu_stream_connection&) = delete;
    qemu_stream_connection& operator=(const qemu_stream_connection&) = delete;
    ~qemu_stream_connection() { close(); }

    /// The executor its asynchronous operations run on.
    executor_type get_executor() const noexcept { return state_->socket.get_executor(); }
    /// The MTU.
    std::size_t mtu() const noexcept { return state_->mtu; }
    /// The MAC.
    std::optional<wire::mac_address> mac() const noexcept { return std::nullopt; }
    /// What it counted so far.
    counters stats() const noexcept { return state_->stats; }
    /// False after close(), after the stream went out of sync, and for a moved-from connection.
    bool is_open() const noexcept { return state_ && state_->socket.is_open(); }
    /// Bytes accepted by send() and not yet taken by the socket.
    std::size_t send_queue_bytes() const noexcept { return state_->tx.size(); }
    /// The socket's descriptor, e.g. to check the peer's credentials (SO_PEERCRED). Still ours.
    int native_handle() { return state_->socket.native_handle(); }

    /// Receives one frame into `buffer`, which should hold max_frame_len(mtu()) bytes.
    ///
    /// Completes with (error_code, size): a frame of a valid size; errc::buffer_too_small (a valid
    /// frame longer than `buffer`, dropped); std::errc::operation_canceled after close();
    /// errc::peer_closed at end of stream; errc::bad_length when a length prefix put the stream out
    /// of sync (the connection is closed then). Never completes inline. One at a time; `buffer`
    /// must stay valid until completion.
    /// @param token a completion handler `void(std::error_code, std::size_t)`, or another Asio
    /// completion token (use_awaitable, deferred, ...).
    template <class CompletionToken>
    auto async_receive(wire::mutable_bytes buffer, CompletionToken&& token) {
        return boost::asio::async_compose<CompletionToken, void(std::error_code, std::size_t)>(
            detail::qemu_stream_receive_op{state_, buffer}, token, state_->socket);
    }

    /// Receives one frame now, without waiting and without a completion: from what is already
    /// buffered, or else from one non-blocking read. The fast path for draining a burst: one
    /// async_receive completion, then try_receive until it says try_again, costs one event-loop
    /// round trip per burst instead of one per frame.
    /// @return the frame's size; or std::errc::resource_unavailable_try_again (nothing to take
    /// now: use async_receive); std::errc::operation_in_progress (an async_receive is pending);
    /// or what async_receive would complete with (buffer_too_small, operation_canceled,
    /// peer_closed, bad_length).
    result<std::size_t> try_receive(wire::mutable_bytes buffer) {
        auto& s = *state_;
        if (s.closed) return std::make_error_code(std::errc::operation_canceled);
        if (s.receiving) return std::make_error_code(std::errc::operation_in_progress);
        auto parsed = s.next(buffer);
        for (std::size_t reads = 0; parsed.need_more; ++reads) {
            bool got = false;
            if (reads < detail::qemu_stream_reads_per_turn) {
                try {
                    got = s.read_now();
                } catch (const std::bad_alloc&) {
                    return std::make_error_code(std::errc::not_enough_memory);
                }
            }
            if (!got) {
                s.idle_rx();
                return std::make_error_code(std::errc::resource_unavailable_try_again);
            }
            parsed = s.next(buffer);
        }
        if (parsed.ec) return parsed.ec;
        return parsed.size;
    }

    /// Queues one frame, length prefix first; returns at once (see the top of the file).
    /// @return empty on success; errc::truncated / errc::bad_length for a frame of a bad size
    /// (tx_invalid); otherwise a drop counted in tx_dropped: std::errc::no_buffer_space (the
    /// output ring is full), std::errc::not_connected (closed by us), errc::peer_closed (the
    /// peer went away), or the socket's error.
    std::error_code send(wire::const_bytes frame) {
        auto& s = *state_;
        if (auto why = check_frame_size(frame.size(), s.mtu)) {
            ++s.stats.tx_invalid;
            return why;
        }
        if (s.closed || s.tx_error) {
            ++s.stats.tx_dropped;
            return s.closed ? std::make_error_code(std::errc::not_connected) : s.tx_error;
        }
        std::array<std::byte, qemu_stream_prefix_len> prefix{};
        wire::store_be32(prefix, 0, static_cast<std::uint32_t>(frame.size()));
        const std::size_t total = prefix.size() + frame.size();

        std::size_t written = 0;
        if (!s.writing && s.tx.empty()) {
            // Nothing queued: hand both pieces to the kernel now, without copying.
            const std::array<boost::asio::const_buffer, 2> pieces{boost::asio::buffer(prefix),
                                                                  boost::asio::buffer(frame.data(), frame.size())};
            boost::system::error_code ec;
            written = s.socket.send(pieces, 0, ec);
            if (ec && ec != boost::asio::error::would_block && ec != boost::asio::error::try_again) {
                s.tx_error = detail::stream_link_error(ec);
                ++s.stats.tx_dropped;
                return s.tx_error;
            }
        } else if (s.tx.space() < total) {
            ++s.stats.tx_dropped;
            return std::make_error_code(std::errc::no_buffer_space);
        }
        if (written < total) {
            // The rest goes to the ring; an empty ring always has room for one frame.
            try {
                s.tx.allocate();
            } catch (const std::bad_alloc&) {
                ++s.stats.tx_dropped;
                const auto why = std::make_error_code(std::errc::not_enough_memory);
                // Part of the frame is on the stream already: without the rest it is out of sync.
                if (written != 0) s.shut(make_error_code(errc::peer_closed), why);
                return why;
            }
            if (written < prefix.size()) {
                s.tx.push(wire::const_bytes{prefix}.subspan(written));
                s.tx.push(frame);
            } else {
                s.tx.push(frame.subspan(written - prefix.size()));
            }
            if (!s.writing) detail::qemu_stream_start_write(state_);
        }
        ++s.stats.tx_frames;
        s.stats.tx_bytes += frame.size();
        return {};
    }

    /// Closes the link: a pending receive completes with std::errc::operation_canceled, unsent
    /// bytes are discarded, later sends fail with std::errc::not_connected. Idempotent.
    void close() {
        if (!state_ || state_->closed) return;
        state_->closed = true;
        state_->shut(std::make_error_code(std::errc::operation_canceled), std::make_error_code(std::errc::not_connected));
    }

private:
    explicit qemu_stream_connection(std::shared_ptr<detail::qemu_stream_state> state) : state_(std::move(state)) {}

    /// Checks the options and readies the socket; leaves it open and owned by the caller.
    static std::error_code prepare(socket_type& socket, const qemu_stream_options& options) {
        if (options.mtu < min_mtu || options.mtu > max_mtu) return std::make_error_code(std::errc::invalid_argument);
        if (!socket.is_open()) return std::make_error_code(std::errc::bad_file_descriptor);
        boost::system::error_code ec;
        // send() tries the socket directly and must get EAGAIN rather than block.
        socket.non_blocking(true, ec);
        if (ec) return std::error_code(ec);
        const auto local = socket.local_endpoint(ec);
        if (!ec && (local.protocol().family() == AF_INET || local.protocol().family() == AF_INET6)) {
            socket.set_option(boost::asio::ip::tcp::no_delay(true), ec); // best effort: a failure costs latency only
        }
        return {};
    }

    static qemu_stream_connection make(socket_type socket, const qemu_stream_options& options,
                                       detail::qemu_stream_slot slot = {}) {
        const std::size_t frame = qemu_stream_prefix_len + max_frame_len(options.mtu);
        auto state = std::make_shared<detail::qemu_stream_state>(
            std::move(socket), options.mtu, std::max(options.receive_buffer, 2 * frame), std::max(options.send_buffer, frame));
        state->slot = std::move(slot);
        return qemu_stream_connection{std::move(state)};
    }

    /// For the server: adopt() whose connection holds a place in the server's count.
    static result<qemu_stream_connection> adopt_counted(socket_type socket, const qemu_stream_options& options,
                                                        detail::qemu_stream_slot slot) {
        if (auto ec = prepare(socket, options)) return ec;
        return make(std::move(socket), options, std::move(slot));
    }
    friend class qemu_stream_server;

    std::shared_ptr<detail::qemu_stream_state> state_;
};

static_assert(frame_backend<qemu_stream_connection>);

/// Listens for QEMU stream connections and hands each one, as a VM's link, to a callback.
///
/// Movable, not copyable. Use it from its executor's thread. See the top of this file.
///
/// @par Example
/// @code
/// auto server = qemu_stream_server::listen(io.get_executor(), "/run/ankanet/vm.sock",
///     [&](qemu_stream_connection vm) { network.attach(std::move(vm)); });
/// // qemu-system-x86_64 ... -netdev stream,id=n0,server=off,addr.type=unix,addr.path=/run/ankanet/vm.sock
/// @endcode
class qemu_stream_server {
public:
    using executor_type = boost::asio::any_io_executor; ///< the executor its asynchronous operations run on

    /// the connection handler type
    using connection_handler = std::function<void(qemu_stream_connection)>;
    /// Called when a connection is refused because max_connections are alive: with the limit.
    using limit_handler = std::function<void(std::size_t)>;

    /// Listens on the unix socket at `path`, removing a stale socket file first.
    /// @return the server, or: std::errc::invalid_argument (bad MTU, or no handler);
    /// std::errc::filename_too_long (the path does not fit a sockaddr_un); std::errc::address_in_use
    /// (someone listens there); std::errc::file_exists (a file that is not a socket is there); the
    /// error of socket/bind/listen.
    [[nodiscard]] static result<qemu_stream_server> listen(executor_type executor, const std::filesystem::path& path,
                                                           connection_handler handler, const qemu_stream_options& options = {}) {
        ::sockaddr_un address{};
        if (!detail::fill_unix_address(path, address)) return std::make_error_code(std::errc::filename_too_long);
        if (auto ec = detail::clear_stale_socket(path, SOCK_STREAM)) return ec;
        auto server = open(std::move(executor),
                           boost::asio::generic::stream_protocol::endpoint{
                               boost::asio::local::stream_protocol::endpoint{path.native()}},
                           std::move(handler), options);
        if (server) {
            server->state_->socket_file.remember(path);
        }
        return server;
    }

    /// Listens on a TCP endpoint (loopback, please: see the top of the file). Port 0 picks one;
    /// port() tells which.
    [[nodiscard]] static result<qemu_stream_server> listen(executor_type executor, const boost::asio::ip::tcp::endpoint& endpoint,
                                                           connection_handler handler, const qemu_stream_options& options = {}) {
        return open(std::move(executor), boost::asio::generic::stream_protocol::endpoint{endpoint}, std::move(handler), options);
    }

    /// Move-constructs (memberwise).
    qemu_stream_server(qemu_stream_server&&) noexcept = default;
    /// Move assignment.
    qemu_stream_server& operator=(qemu_stream_server&& other) noexcept {
        if (this != &other) {
            close();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    qemu_stream_server(const qemu_stream_server&) = delete;
    qemu_stream_server& operator=(const qemu_stream_server&) = delete;
    ~qemu_stream_server() { close(); }

    /// The executor its asynchronous operations run on.
    executor_type get_executor() const noexcept { return state_->acceptor.get_executor(); }
    /// The TCP port listened on; 0 for a unix socket.
    std::uint16_t port() const {
        boost::system::error_code ec;
        const auto local = state_->acceptor.local_endpoint(ec);
        if (ec) return 0;
        ::sockaddr_storage storage{};
        std::memcpy(&storage, local.data(), std::min<std::size_t>(local.size(), sizeof(storage)));
        std::uint16_t network_order = 0;
        if (storage.ss_family == AF_INET) {
            ::sockaddr_in v4{};
            std::memcpy(&v4, &storage, sizeof(v4));
            network_order = v4.sin_port;
        } else if (storage.ss_family == AF_INET6) {
            ::sockaddr_in6 v6{};
            std::memcpy(&v6, &storage, sizeof(v6));
            network_order = v6.sin6_port;
        } else {
            return 0;
        }
        return wire::load_be16(wire::const_bytes{reinterpret_cast<const std::byte*>(&network_order), 2}, 0);
    }
    /// Connections accepted and handed to the callback.
    std::uint64_t accepted() const noexcept { return state_->accepted; }
    /// Accepts that failed, and accepted sockets that could not be adopted.
    std::uint64_t accept_errors() const noexcept { return state_->accept_errors; }
    /// Connections accepted and closed at once because max_connections were alive.
    std::uint64_t refused() const noexcept { return state_->refused; }
    /// Connections handed out that are alive now: neither closed nor destroyed.
    std::size_t connections() const noexcept { return state_->slots->live; }
    /// Sets what is told when a connection is refused for the limit, e.g. to log it. It is told
    /// once per run of refusals: not again until a connection has been accepted since.
    void on_limit(limit_handler handler) { state_->on_limit = std::move(handler); }

    /// Stops accepting and removes the socket file this server created. Connections already
    /// handed out are not affected. Idempotent.
    void close() {
        if (!state_ || state_->closed) return;
        state_->closed = true;
        boost::system::error_code ignored;
        state_->acceptor.close(ignored);
        state_->retry.cancel();
        state_->socket_file.remove();
    }

private:
    struct state_type {
        state_type(executor_type executor, connection_handler handler_, qemu_stream_options options_)
            : acceptor(executor), retry(executor), handler(std::move(handler_)), options(options_) {}
        boost::asio::basic_socket_acceptor<boost::asio::generic::stream_protocol> acceptor;
        boost::asio::steady_timer retry;
        connection_handler handler;
        qemu_stream_options options;
        detail::unix_socket_file socket_file;
        std::shared_ptr<detail::qemu_stream_slots> slots = std::make_shared<detail::qemu_stream_slots>();
        limit_handler on_limit;
        std::uint64_t accepted = 0;
        std::uint64_t accept_errors = 0;
        std::uint64_t refused = 0;
        bool closed = false;
    };

    explicit qemu_stream_server(std::shared_ptr<state_type> state) : state_(std::move(state)) {}

    static result<qemu_stream_server> open(executor_type executor, const boost::asio::generic::stream_protocol::endpoint& endpoint,
                                           connection_handler handler, const qemu_stream_options& options) {
        if (options.mtu < min_mtu || options.mtu > max_mtu || !handler) {
            return std::make_error_code(std::errc::invalid_argument);
        }
        auto state = std::make_shared<state_type>(std::move(executor), std::move(handler), options);
        auto& acceptor = state->acceptor;
        boost::system::error_code ec;
        acceptor.open(endpoint.protocol(), ec);
        if (!ec && endpoint.protocol().family() != AF_UNIX) {
            // A restarted daemon should get its port back while old connections sit in TIME_WAIT.
            acceptor.set_option(boost::asio::socket_base::reuse_address(true), ec);
        }
        if (!ec) acceptor.bind(endpoint, ec);
        if (!ec) acceptor.listen(boost::asio::socket_base::max_listen_connections, ec);
        if (ec) return std::error_code(ec);
        accept_next(state);
        return qemu_stream_server{std::move(state)};
    }

    static void accept_next(const std::shared_ptr<state_type>& state) {
        state->acceptor.async_accept([state](const boost::system::error_code& ec,
                                             boost::asio::generic::stream_protocol::socket socket) {
            if (state->closed || ec == boost::asio::error::operation_aborted) return;
            if (ec) {
                ++state->accept_errors;
                // Out of descriptors or memory: the pending connection stays in the backlog and the
                // listener stays readable, so accepting again at once would spin. Pause instead.
                if (ec == boost::asio::error::no_descriptors || ec == boost::asio::error::no_memory ||
                    ec == boost::asio::error::no_buffer_space ||
                    ec == boost::system::error_code{ENFILE, boost::system::system_category()}) {
                    state->retry.expires_after(std::chrono::milliseconds{100});
                    state->retry.async_wait([state](const boost::system::error_code& wait_error) {
                        if (!wait_error && !state->closed) accept_next(state);
                    });
                    return;
                }
                accept_next(state);
                return;
            }
            if (state->slots->live >= state->options.max_connections) {
                // Full: close it now, so the peer sees end of stream instead of a connection that
                // hangs in the backlog; tell once per run of refusals.
                ++state->refused;
                boost::system::error_code ignored;
                socket.close(ignored);
                if (!state->slots->limit_reported) {
                    state->slots->limit_reported = true;
                    if (state->on_limit) state->on_limit(state->options.max_connections);
                }
                if (!state->closed) accept_next(state);
                return;
            }
            auto connection = qemu_stream_connection::adopt_counted(std::move(socket), state->options,
                                                                    detail::qemu_stream_slot{state->slots});
            if (connection) {
                ++state->accepted;
                state->slots->limit_reported = false;
                state->handler(std::move(connection).value());
            } else {
                ++state->accept_errors;
            }
            if (!state->closed) accept_next(state);
        });
    }

    std::shared_ptr<state_type> state_;
};

} // namespace ankanet::backend
