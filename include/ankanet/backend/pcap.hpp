/// @file
/// ankanet::backend::pcap — write a VM's frames to a capture file that tcpdump and Wireshark read.
///
/// Theory of operation. `basic_pcap_writer<Clock>` writes the classic libpcap format: a 24-byte
/// file header (magic 0xa1b2c3d4 for microsecond or 0xa1b23c4d for nanosecond timestamps,
/// version 2.4, LINKTYPE_ETHERNET), then per frame a 16-byte record header (seconds, fraction,
/// captured length, original length) and the frame bytes. All fields are written little-endian
/// whatever the host: readers detect the byte order from the magic, and a capture of the same
/// frames at the same times is byte-for-byte the same file on every machine.
///
/// Records go into one buffer allocated at open (never grown; at least one largest record big)
/// and reach the file with write(2) when the next record would not fit, on flush(), close() and
/// destruction. A record enters the buffer whole or not at all, and a failed or short write keeps
/// the bytes it did not write for the next attempt, so a transient error (a full disk that frees
/// up) costs records, counted, but never the framing: the file is again a valid capture after the
/// next successful flush. When the buffer is still full after a failed write the new record is
/// dropped and counted. Recording never throws, never allocates, and costs the frame path a
/// memcpy plus, once per buffer, one write to a regular file (a blocking call, but one the page
/// cache absorbs; do not point the writer at a pipe nobody reads).
///
/// `pcap_recorder<Backend, Clock>` is a frame_backend decorator: it forwards everything to the
/// backend it wraps and records each frame delivered by async_receive and each frame send()
/// handed over successfully (what actually crossed the link; refused and dropped frames are not
/// in the file, they are in the counters). When the wrapped backend drains bursts (burst_backend),
/// so does the recorder: try_receive forwards and records each frame it delivers, so a port's
/// burst path leaves the same capture as its one-frame-per-completion path. So are offloads (a TAP
/// opened with a virtio-net header): last_offload(), max_receive_len(), accepts_offload() and
/// send(frame, offload) are the wrapped backend's, and a super-frame is recorded whole, as tcpdump
/// on a TSO interface shows it (a record longer than the snaplen is cut, and counted). Several recorders may share one writer — the daemon's
/// `--pcap FILE` records every port into one file — as long as they all run on one thread, like
/// the backends themselves. Classic pcap has no direction field; tell directions apart by MAC.
///
/// Timestamps come from the Clock policy (default std::chrono::system_clock): anything with a
/// `now()` whose time_since_epoch() counts from the Unix epoch. Tests pass a manual clock so the
/// file is deterministic. Times before the epoch are written as 0; the seconds field is 32 bits
/// (good until 2106), as the format defines.
#pragma once

#include <ankanet/backend/backend.hpp>
#include <ankanet/backend/memory.hpp>
#include <ankanet/backend/offload.hpp>
#include <ankanet/backend/port.hpp>
#include <ankanet/result.hpp>

#include <boost/asio/associator.hpp>
#include <boost/endian/conversion.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ankanet::backend {

namespace pcap {
/// A constant of the classic pcap file format (magic numbers, version, link type, sizes).
/// @{
inline constexpr std::uint32_t magic_microseconds = 0xa1b2c3d4;
inline constexpr std::uint32_t magic_nanoseconds = 0xa1b23c4d;
inline constexpr std::uint16_t version_major = 2;
inline constexpr std::uint16_t version_minor = 4;
inline constexpr std::uint32_t linktype_ethernet = 1;
inline constexpr std::size_t file_header_len = 24;
inline constexpr std::size_t record_header_len = 16;
/// Large enough for any frame a backend passes (the largest MTU, an Ethernet header, one VLAN tag).
inline constexpr std::uint32_t default_snaplen = static_cast<std::uint32_t>(max_frame_len(max_mtu));
/// @}
} // namespace pcap

/// How pcap timestamps are written: the classic microsecond format or the nanosecond one.
enum class pcap_timestamp { microseconds, nanoseconds };

/// How a pcap writer formats its file.
struct pcap_options {
    /// resolution
    pcap_timestamp resolution = pcap_timestamp::microseconds;
    /// Frames longer than this are cut to it (and counted); must be at least an Ethernet header.
    std::uint32_t snaplen = pcap::default_snaplen;
    /// The write buffer; raised to one record of `snaplen` bytes when smaller.
    std::size_t buffer_size = std::size_t{256} * 1024;
    /// Permissions of a newly created file: captures hold guest traffic, so only the owner reads.
    ::mode_t file_mode = 0600;
};

/// What a writer did. Plain integers: a writer is used from one thread.
struct pcap_stats {
    std::uint64_t records = 0;           ///< frames accepted into the capture
    std::uint64_t records_truncated = 0; ///< of those, cut to snaplen
    std::uint64_t records_dropped = 0;   ///< not recorded: the buffer was full after a failed write, or the writer closed
    std::uint64_t write_errors = 0;      ///< failed write(2) calls
    std::uint64_t bytes_written = 0;     ///< bytes that reached the file, headers included

    /// Memberwise equality.
    bool operator==(const pcap_stats&) const noexcept = default;
};

/// A clock policy: `clock.now().time_since_epoch()` is a std::chrono::duration since the Unix epoch.
template <class Clock>
concept pcap_clock = std::movable<Clock> && requires(Clock& clock) {
    std::chrono::duration_cast<std::chrono::nanoseconds>(clock.now().time_since_epoch());
};

/// The message an open failure deserves: it names the file, then the reason.
inline std::string pcap_error_message(const std::filesystem::path& path, std::error_code ec) {
    return "pcap file " + path.string() + ": " + ec.message();
}

/// Writes Ethernet frames to a classic pcap file; see the theory of operation above.
/// @tparam Clock where record timestamps come from (see pcap_clock).
///
/// @par Example
/// @code
/// auto writer = ankanet::backend::pcap_writer::open("vm0.pcap");
/// if (!writer) { fmt::print(stderr, "{}\n", pcap_error_message("vm0.pcap", writer.error())); return 1; }
/// writer->write(frame);
/// @endcode
template <pcap_clock Clock = std::chrono::system_clock>
class basic_pcap_writer {
public:
    using clock_type = Clock; ///< the clock it reads
    using time_point = decltype(std::declval<Clock&>().now()); ///< a point in time of the clock

    /// Creates (or truncates) `path` and writes the file header to it before returning, so an
    /// unwritable file fails here rather than on the first frame. Errors are the system's
    /// (no_such_file_or_directory, permission_denied, no_space_on_device, ...) or
    /// std::errc::invalid_argument for a snaplen shorter than an Ethernet header; format them
    /// with pcap_error_message(path, ec).
    static result<basic_pcap_writer> open(const std::filesystem::path& path, pcap_options options = {},
                                          Clock clock = Clock{}) {
        if (options.snaplen < wire::ethernet::header_len) return std::make_error_code(std::errc::invalid_argument);
        int fd = -1;
        do {
            fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, options.file_mode);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) return std::error_code(errno, std::generic_category());

        basic_pcap_writer writer{fd, path, options, std::move(clock)};
        writer.append_file_header();
        if (auto ec = writer.flush()) return ec; // the destructor closes the descriptor
        return writer;
    }

    /// Move-constructs.
    basic_pcap_writer(basic_pcap_writer&& other) noexcept
        : clock_(std::move(other.clock_)), path_(std::move(other.path_)), buffer_(std::move(other.buffer_)),
          used_(std::exchange(other.used_, 0)), boundary_(std::exchange(other.boundary_, 0)), fd_(std::exchange(other.fd_, -1)), options_(other.options_),
          stats_(other.stats_), last_error_(other.last_error_) {}

    /// Move assignment.
    basic_pcap_writer& operator=(basic_pcap_writer&& other) noexcept {
        if (this != &other) {
            close();
            clock_ = std::move(other.clock_);
            path_ = std::move(other.path_);
            buffer_ = std::move(other.buffer_);
            used_ = std::exchange(other.used_, 0);
            boundary_ = std::exchange(other.boundary_, 0);
            fd_ = std::exchange(other.fd_, -1);
            options_ = other.options_;
            stats_ = other.stats_;
            last_error_ = other.last_error_;
        }
        return *this;
    }

    basic_pcap_writer(const basic_pcap_writer&) = delete;
    basic_pcap_writer& operator=(const basic_pcap_writer&) = delete;

    /// Flushes what is buffered and closes the file; errors are counted, not thrown.
    ~basic_pcap_writer() { close(); }

    /// Records `frame`, stamped with the clock's now().
    void write(wire::const_bytes frame) noexcept { write(frame, clock_.now()); }

    /// Records `frame` with the given timestamp. Never throws; a frame that cannot be recorded
    /// is counted in records_dropped.
    void write(wire::const_bytes frame, time_point when) noexcept {
        if (fd_ < 0) {
            ++stats_.records_dropped;
            return;
        }
        const std::size_t captured = std::min<std::size_t>(frame.size(), options_.snaplen);
        const std::size_t record_len = pcap::record_header_len + captured;
        if (buffer_.size() - used_ < record_len) {
            (void)flush();
            if (buffer_.size() - used_ < record_len) {
                ++stats_.records_dropped;
                return;
            }
        }
        const auto [seconds, fraction] = split_time(when);
        put32(seconds);
        put32(fraction);
        put32(static_cast<std::uint32_t>(captured));
        // orig_len is 32 bits; no frame a backend passes comes near that.
        put32(static_cast<std::uint32_t>(std::min<std::size_t>(frame.size(), std::numeric_limits<std::uint32_t>::max())));
        if (captured != 0) std::memcpy(buffer_.data() + used_, frame.data(), captured);
        used_ += captured;
        ++stats_.records;
        if (captured < frame.size()) ++stats_.records_truncated;
    }

    /// Writes the buffered records to the file. On an error the bytes not written stay buffered
    /// for the next attempt; returns the error (also kept in last_error()).
    std::error_code flush() noexcept {
        if (fd_ < 0) return used_ == 0 ? std::error_code{} : std::make_error_code(std::errc::bad_file_descriptor);
        std::size_t done = 0;
        std::error_code ec;
        while (done < used_) {
            const ::ssize_t n = ::write(fd_, buffer_.data() + done, used_ - done);
            if (n < 0) {
                if (errno == EINTR) continue;
                ec = std::error_code(errno, std::generic_category());
                break;
            }
            if (n == 0) { // not expected from a regular file; do not spin on it
                ec = std::make_error_code(std::errc::io_error);
                break;
            }
            done += static_cast<std::size_t>(n);
        }
        stats_.bytes_written += done;
        if (done == used_) {
            used_ = 0;
            boundary_ = 0;
        } else if (done != 0) {
            boundary_ = next_boundary(done) - done;
            std::memmove(buffer_.data(), buffer_.data() + done, used_ - done);
            used_ -= done;
        }
        if (ec) {
            ++stats_.write_errors;
            last_error_ = ec;
        }
        return ec;
    }

    /// Flushes and closes the file. Later writes are counted as dropped. Returns the first error
    /// of the final flush or of close(2); records still buffered after a failed flush are lost
    /// and counted in records_dropped.
    std::error_code close() noexcept {
        if (fd_ < 0) return {};
        std::error_code ec = flush();
        if (used_ != 0) {
            stats_.records_dropped += unwritten_records();
            used_ = 0;
            boundary_ = 0;
        }
        if (::close(std::exchange(fd_, -1)) != 0 && !ec && errno != EINTR) {
            ec = std::error_code(errno, std::generic_category());
            ++stats_.write_errors;
            last_error_ = ec;
        }
        return ec;
    }

    /// Whether it is open.
    bool is_open() const noexcept { return fd_ >= 0; }
    /// What it counted so far.
    const pcap_stats& stats() const noexcept { return stats_; }
    /// The most recent write or close error; empty when there was none.
    std::error_code last_error() const noexcept { return last_error_; }
    /// The path.
    const std::filesystem::path& path() const noexcept { return path_; }
    /// The options.
    const pcap_options& options() const noexcept { return options_; }
    /// Bytes waiting in the buffer.
    std::size_t buffered() const noexcept { return used_; }
    /// The file descriptor, or -1 once closed. Still owned by the writer.
    int native_handle() const noexcept { return fd_; }
    /// The clock.
    Clock& clock() noexcept { return clock_; }

private:
    basic_pcap_writer(int fd, std::filesystem::path path, pcap_options options, Clock clock)
        : clock_(std::move(clock)), path_(std::move(path)),
          buffer_(std::max(options.buffer_size, pcap::file_header_len + pcap::record_header_len + options.snaplen)),
          fd_(fd), options_(options) {}

    void put32(std::uint32_t value) noexcept {
        boost::endian::store_little_u32(reinterpret_cast<unsigned char*>(buffer_.data() + used_), value);
        used_ += 4;
    }
    void put16(std::uint16_t value) noexcept {
        boost::endian::store_little_u16(reinterpret_cast<unsigned char*>(buffer_.data() + used_), value);
        used_ += 2;
    }

    void append_file_header() noexcept {
        put32(options_.resolution == pcap_timestamp::nanoseconds ? pcap::magic_nanoseconds : pcap::magic_microseconds);
        put16(pcap::version_major);
        put16(pcap::version_minor);
        put32(0); // thiszone: timestamps are UTC
        put32(0); // sigfigs: always 0 in practice
        put32(options_.snaplen);
        put32(pcap::linktype_ethernet);
        boundary_ = used_;
    }

    /// Seconds and the sub-second part in the file's resolution.
    std::pair<std::uint32_t, std::uint32_t> split_time(time_point when) const noexcept {
        const auto since = std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
        if (since <= 0) return {0, 0};
        const auto ns = static_cast<std::uint64_t>(since);
        const std::uint64_t seconds = std::min<std::uint64_t>(ns / 1'000'000'000u, std::numeric_limits<std::uint32_t>::max());
        std::uint64_t fraction = ns % 1'000'000'000u;
        if (options_.resolution == pcap_timestamp::microseconds) fraction /= 1000u;
        return {static_cast<std::uint32_t>(seconds), static_cast<std::uint32_t>(fraction)};
    }

    std::uint32_t captured_len_at(std::size_t record) const noexcept {
        return boost::endian::load_little_u32(reinterpret_cast<const unsigned char*>(buffer_.data() + record + 8));
    }

    /// Where the first record starting at or after `offset` begins (records enter the buffer
    /// whole, so from boundary_ on the buffer is a sequence of complete records).
    std::size_t next_boundary(std::size_t offset) const noexcept {
        std::size_t at = boundary_;
        while (at < offset) at += pcap::record_header_len + captured_len_at(at);
        return at;
    }

    /// Records that have not fully reached the file: one partly written at the front, if any,
    /// and every whole one after it.
    std::uint64_t unwritten_records() const noexcept {
        std::uint64_t count = boundary_ != 0 ? 1 : 0;
        for (std::size_t at = boundary_; at < used_; at += pcap::record_header_len + captured_len_at(at)) ++count;
        return count;
    }

    [[no_unique_address]] Clock clock_;
    std::filesystem::path path_;
    std::vector<std::byte> buffer_;
    std::size_t used_ = 0;
    std::size_t boundary_ = 0; ///< offset of the first record header in the buffer
    int fd_ = -1;
    pcap_options options_;
    pcap_stats stats_;
    std::error_code last_error_;
};

using pcap_writer = basic_pcap_writer<>; ///< a pcap writer on the system clock

namespace detail {

/// Wraps a receive handler: records the frame, then calls the handler. Associated executor,
/// allocator and cancellation slot are the wrapped handler's (see the associator below).
template <class Handler, class Clock>
struct pcap_receive_op {
    std::shared_ptr<basic_pcap_writer<Clock>> writer;
    wire::mutable_bytes buffer;
    Handler handler;

    void operator()(std::error_code ec, std::size_t n) {
        if (!ec && n <= buffer.size()) writer->write(wire::const_bytes{buffer.first(n)});
        std::move(handler)(ec, n);
    }
};

} // namespace detail

/// A frame_backend that records what crosses `Backend` into a pcap file.
/// @tparam Backend the backend wrapped; owned by value (use a reference wrapper type to share).
/// @tparam Clock the writer's clock policy.
///
/// @par Example
/// @code
/// auto writer = std::make_shared<pcap_writer>(*pcap_writer::open("all.pcap"));
/// pcap_recorder port0{std::move(tap0), writer};
/// pcap_recorder port1{std::move(tap1), writer};   // one file for both
/// @endcode
template <frame_backend Backend, pcap_clock Clock = std::chrono::system_clock>
class pcap_recorder {
public:
    using executor_type = typename Backend::executor_type; ///< the executor its asynchronous operations run on
    using next_layer_type = Backend; ///< the next layer type
    using writer_type = basic_pcap_writer<Clock>; ///< the writer type

    /// Wraps `next`; a null `writer` records nothing (a recorder that is switched off).
    pcap_recorder(Backend next, std::shared_ptr<basic_pcap_writer<Clock>> writer)
        : next_(std::move(next)), writer_(std::move(writer)) {}

    /// Wraps `next` with a writer of its own on `path`; fails as basic_pcap_writer::open does.
    static result<pcap_recorder> open(Backend next, const std::filesystem::path& path, pcap_options options = {},
                                      Clock clock = Clock{}) {
        auto writer = writer_type::open(path, options, std::move(clock));
        if (!writer) return writer.error();
        return pcap_recorder{std::move(next), std::make_shared<writer_type>(std::move(*writer))};
    }

    /// The executor its asynchronous operations run on.
    executor_type get_executor() const noexcept { return next_.get_executor(); }
    /// The MTU.
    std::size_t mtu() const noexcept { return next_.mtu(); }
    /// The MAC.
    std::optional<wire::mac_address> mac() const noexcept { return next_.mac(); }
    /// The wrapped backend's counters: recording adds no drops of its own to the link.
    counters stats() const noexcept { return next_.stats(); }

    /// Receives as the wrapped backend does, recording each frame delivered.
    template <class Handler>
    void async_receive(wire::mutable_bytes buffer, Handler&& handler) {
        if (!writer_) {
            next_.async_receive(buffer, std::forward<Handler>(handler));
            return;
        }
        next_.async_receive(buffer, detail::pcap_receive_op<std::decay_t<Handler>, Clock>{
                                        writer_, buffer, std::forward<Handler>(handler)});
    }

    /// Takes a frame now as the wrapped backend does (burst_backend, backend.hpp), recording it
    /// when one is delivered. Present only when `Backend` has try_receive.
    result<std::size_t> try_receive(wire::mutable_bytes buffer)
        requires burst_backend<Backend>
    {
        auto received = next_.try_receive(buffer);
        if (received && writer_ && *received <= buffer.size()) writer_->write(wire::const_bytes{buffer.first(*received)});
        return received;
    }

    /// Sends through the wrapped backend; records the frame when it was handed over.
    std::error_code send(wire::const_bytes frame) {
        const std::error_code ec = next_.send(frame);
        if (!ec && writer_) writer_->write(frame);
        return ec;
    }

    /// The wrapped backend's offloads, passed through (see the top of the file).
    const wire::offload& last_offload() const
        requires offload_receiver<Backend>
    {
        return next_.last_offload();
    }
    /// The max receive length.
    std::size_t max_receive_len() const
        requires offload_receiver<Backend>
    {
        return next_.max_receive_len();
    }
    /// Whether accepts offload.
    bool accepts_offload() const
        requires offload_backend<Backend>
    {
        return next_.accepts_offload();
    }
    /// Sends one frame with its offload metadata, recording it as it goes.
    std::error_code send(wire::const_bytes frame, const wire::offload& meta)
        requires offload_backend<Backend>
    {
        const std::error_code ec = next_.send(frame, meta);
        if (!ec && writer_) writer_->write(frame);
        return ec;
    }

    /// Closes the wrapped backend. The writer stays open (others may share it); it flushes when
    /// its last owner lets go, or on writer()->flush().
    void close() { next_.close(); }

    /// The next layer.
    Backend& next_layer() noexcept { return next_; }
    /// The next layer.
    const Backend& next_layer() const noexcept { return next_; }
    /// The writer.
    const std::shared_ptr<writer_type>& writer() const noexcept { return writer_; }

private:
    Backend next_;
    std::shared_ptr<writer_type> writer_;
};

static_assert(burst_backend<pcap_recorder<memory_endpoint>>);

} // namespace ankanet::backend

/// The recording wrapper is transparent to Asio: it has the executor, allocator and
/// cancellation slot of the handler it wraps.
template <template <class, class> class Associator, class Handler, class Clock, class DefaultCandidate>
struct boost::asio::associator<Associator, ankanet::backend::detail::pcap_receive_op<Handler, Clock>, DefaultCandidate>
    : Associator<Handler, DefaultCandidate> {
    static typename Associator<Handler, DefaultCandidate>::type
    get(const ankanet::backend::detail::pcap_receive_op<Handler, Clock>& op) noexcept {
        return Associator<Handler, DefaultCandidate>::get(op.handler);
    }
    static auto get(const ankanet::backend::detail::pcap_receive_op<Handler, Clock>& op,
                    const DefaultCandidate& candidate) noexcept
        -> decltype(Associator<Handler, DefaultCandidate>::get(op.handler, candidate)) {
        return Associator<Handler, DefaultCandidate>::get(op.handler, candidate);
    }
};
