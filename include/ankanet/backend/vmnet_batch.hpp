/// @file
/// ankanet::backend::vmnet_batch — everything of the vmnet backend that does not need Apple.
///
/// Theory of operation. Apple's vmnet.framework moves packets in batches: vmnet_read and
/// vmnet_write take an array of `struct vmpktdesc` (vm_pkt_size, an iovec array and its count,
/// vm_flags) and a packet count that they update to what they actually read or wrote. New
/// packets are announced by an event callback (VMNET_INTERFACE_PACKETS_AVAILABLE) on a dispatch
/// queue, i.e. on another thread. vmnet.h documents at most 200 packets and 256 KiB per call, and
/// each read buffer at least vmnet_max_packet_size_key bytes long. This header turns that into a
/// frame_backend, with the framework behind a policy (`vmnet_framework`), so that all of it —
/// batching, splitting, size checks, parameter mapping, wake-ups, counters — is built and tested
/// on every platform. vmnet.hpp supplies the one policy that calls Apple's functions.
///
///  * Transmit: send() appends the frame to a batch of up to `batch_packets` frames and 256 KiB,
///    in a buffer allocated once, and posts one flush to the executor; every send made in the
///    same turn of the event loop goes out in a single write call. A full batch (by count or by
///    bytes) is written at once, inline. The batch
///    is emptied by every write: a packet vmnet did not take is dropped and counted (tx_dropped)
///    rather than kept, since vmnet has no "writable" event to retry on and a NIC with a full ring
///    drops too. Frames are checked against the MTU and against the interface's max packet size.
///  * Receive: a read hands vmnet one descriptor and one iovec per slot, each slot
///    max_packet_size bytes. The completed batch is split into frames by each descriptor's
///    vm_pkt_size; a size beyond the slot (a framework that lies) is refused and counted as
///    rx_oversize, as are frames over max_frame_len(mtu); runts are rx_runt. Frames are copied
///    from our own slots, never through pointers the framework might have changed. One frame
///    completes each async_receive, posted, never inline.
///  * Wake-ups: the framework's event callback (any thread) sets an atomic flag and, if it was
///    clear, posts one wake to the executor — a burst of events costs one post. A receive always
///    tries a non-blocking read before it waits for a wake, so an edge-triggered event that fired
///    while we were busy is never needed twice, and one that fires after an empty read is
///    never missed.
///  * Lifetime: the state lives in a shared_ptr; posted work holds a weak_ptr and does nothing
///    once the backend is gone. Closing or destroying the backend calls the policy's
///    stop_events(), which must not return while a callback may still run.
///
/// Limits. vm_flags is always 0 (no offloads; vmnet's TSO and checksum offload keys are not
/// requested). One iovec per packet. The Apple side (vmnet.hpp) compiles only on macOS and is not
/// exercised by this project's CI; what is tested here is this header, with a fake framework.
#pragma once

#include <ankanet/backend/backend.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/uio.h>

namespace ankanet::backend {

// --- errors -----------------------------------------------------------------------------------

/// vmnet_return_t failures, mirrored so that code outside Apple can name and test them.
enum class vmnet_errc {
    failure = 1,          ///< VMNET_FAILURE: general failure, often missing privileges
    mem_failure,          ///< VMNET_MEM_FAILURE
    invalid_argument,     ///< VMNET_INVALID_ARGUMENT
    setup_incomplete,     ///< VMNET_SETUP_INCOMPLETE
    invalid_access,       ///< VMNET_INVALID_ACCESS: the entitlement or root is missing
    packet_too_big,       ///< VMNET_PACKET_TOO_BIG
    buffer_exhausted,     ///< VMNET_BUFFER_EXHAUSTED: the kernel has no buffers right now
    too_many_packets,     ///< VMNET_TOO_MANY_PACKETS: more packets than one call takes
    unknown,              ///< a status newer than this code (or than the oldest SDK it builds with)
};

namespace detail {
class vmnet_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "vmnet"; }
    std::string message(int code) const override {
        switch (static_cast<vmnet_errc>(code)) {
        case vmnet_errc::failure: return "vmnet: general failure (missing privileges?)";
        case vmnet_errc::mem_failure: return "vmnet: memory allocation failure";
        case vmnet_errc::invalid_argument: return "vmnet: invalid argument";
        case vmnet_errc::setup_incomplete: return "vmnet: interface setup is not complete";
        case vmnet_errc::invalid_access: return "vmnet: permission denied (the com.apple.vm.networking entitlement or root is needed)";
        case vmnet_errc::packet_too_big: return "vmnet: packet larger than the interface allows";
        case vmnet_errc::buffer_exhausted: return "vmnet: kernel buffers exhausted";
        case vmnet_errc::too_many_packets: return "vmnet: too many packets in one call";
        case vmnet_errc::unknown: return "vmnet: unknown status";
        }
        return "vmnet: unknown status";
    }
};
} // namespace detail

/// The vmnet category.
inline const std::error_category& vmnet_category() noexcept {
    static const detail::vmnet_category_impl instance;
    return instance;
}

/// Wraps `e` in a std::error_code of its category (found by argument-dependent lookup).
inline std::error_code make_error_code(vmnet_errc e) noexcept { return {static_cast<int>(e), vmnet_category()}; }

} // namespace ankanet::backend

template <>
struct std::is_error_code_enum<ankanet::backend::vmnet_errc> : std::true_type {};

namespace ankanet::backend {

// --- limits and parameters --------------------------------------------------------------------

/// vmnet.h: each read or write call moves at most 200 packets and 256 KiB.
inline constexpr std::size_t vmnet_max_packets_per_call = 200;
inline constexpr std::size_t vmnet_max_bytes_per_call = std::size_t{256} * 1024; ///< vmnet max bytes per call

/// What the interface's start completion reports, checked and in ankanet's terms.
struct vmnet_parameters {
    wire::mac_address mac;           ///< the MAC vmnet assigned; frames from another source are dropped by vmnet
    std::size_t mtu = default_mtu;   ///< the backend's mtu()
    std::size_t max_packet_size = 0; ///< the longest frame vmnet reads or writes, and each buffer's size

    /// Memberwise equality.
    bool operator==(const vmnet_parameters&) const noexcept = default;
};

/// Parses vmnet's MAC text (vmnet_mac_address_key). Six ':'-separated octets of one or two hex
/// digits: macOS prints MACs the way ether_ntoa(3) does, without leading zeros ("6e:4d:5:e1:2f:8b"),
/// so a strict two-digit parser would refuse real addresses. Anything else is bad_address_text.
inline result<wire::mac_address> parse_vmnet_mac(std::string_view text) noexcept {
    wire::mac_address::bytes_type octets{};
    std::size_t at = 0;
    for (std::size_t i = 0; i < octets.size(); ++i) {
        if (i > 0) {
            if (at >= text.size() || text[at] != ':') return errc::bad_address_text;
            ++at;
        }
        int value = 0;
        std::size_t digits = 0;
        while (at < text.size() && digits < 3) {
            const int digit = wire::detail::hex_digit_value(text[at]);
            if (digit < 0) break;
            value = value * 16 + digit;
            ++digits;
            ++at;
        }
        if (digits == 0 || digits > 2) return errc::bad_address_text;
        octets[i] = static_cast<std::uint8_t>(value);
    }
    if (at != text.size()) return errc::bad_address_text;
    return wire::mac_address{octets};
}

/// Checks and maps the start completion's MAC text, MTU and max packet size.
///
/// errc::bad_address_text for MAC text that does not parse; errc::bad_field for a MAC that is not
/// unicast, an MTU outside [min_mtu, max_mtu], or a max packet size that cannot hold a full-MTU
/// frame (mtu + Ethernet header) or exceeds max_frame_len(max_mtu).
inline result<vmnet_parameters> map_vmnet_parameters(std::string_view mac_text, std::uint64_t mtu,
                                                     std::uint64_t max_packet_size) noexcept {
    const auto mac = parse_vmnet_mac(mac_text);
    if (!mac) return mac.error();
    if (!mac->is_unicast()) return errc::bad_field;
    if (mtu < min_mtu || mtu > max_mtu) return errc::bad_field;
    if (max_packet_size < mtu + wire::ethernet::header_len || max_packet_size > max_frame_len(max_mtu)) {
        return errc::bad_field;
    }
    vmnet_parameters mapped;
    mapped.mac = *mac;
    mapped.mtu = mtu; // both checked against max_mtu above: they fit any size_t
    mapped.max_packet_size = max_packet_size;
    return mapped;
}

/// How many packets a vmnet backend moves per call.
struct vmnet_batch_options {
    /// Packets per vmnet_read / vmnet_write call, 1 to vmnet_max_packets_per_call. Reads are
    /// further limited so that all buffers together stay within vmnet_max_bytes_per_call.
    std::size_t batch_packets = 64;
};

/// What the batching did, beyond the frame counters.
struct vmnet_batch_stats {
    std::uint64_t reads = 0;          ///< read calls
    std::uint64_t read_packets = 0;   ///< packets those calls returned
    std::uint64_t read_errors = 0;    ///< read calls that failed
    std::uint64_t writes = 0;         ///< write calls
    std::uint64_t write_errors = 0;   ///< write calls that failed (their packets count as tx_dropped)
    std::uint64_t wakeups = 0;        ///< packets-available events that reached the executor
    std::uint64_t bad_counts = 0;     ///< calls whose returned count was out of range (clamped)

    /// Memberwise equality.
    bool operator==(const vmnet_batch_stats&) const noexcept = default;
};

// --- the policy -------------------------------------------------------------------------------

/// A packet descriptor laid out as `struct vmpktdesc`: the framework's own type on Apple.
template <class Descriptor>
concept vmnet_descriptor = std::is_trivially_copyable_v<Descriptor> && std::default_initializable<Descriptor> &&
                           requires(Descriptor& d, ::iovec* iov) {
                               d.vm_pkt_size = std::size_t{};
                               d.vm_pkt_iov = iov;
                               d.vm_pkt_iovcnt = std::uint32_t{};
                               d.vm_flags = std::uint32_t{};
                           };

/// The named requirement of a vmnet framework policy.
///
/// - `descriptor_type`: a vmnet_descriptor.
/// - `read(packets, count)`: vmnet_read: `count` in, packets read out (0 when none); errors as
///   std::error_code (vmnet_errc for vmnet_return_t failures). Never blocks.
/// - `write(packets, count)`: vmnet_write: `count` in, packets written out.
/// - `start_events(wake)`: from now on, calls `wake()` — from any thread — when packets are
///   available to read.
/// - `stop_events()`: after it returns, `wake` is never called again and no call is running.
template <class Framework>
concept vmnet_framework = std::movable<Framework> && vmnet_descriptor<typename Framework::descriptor_type> &&
                          requires(Framework& f, typename Framework::descriptor_type* packets, int& count,
                                   std::function<void()> wake) {
                              { f.read(packets, count) } -> std::same_as<std::error_code>;
                              { f.write(packets, count) } -> std::same_as<std::error_code>;
                              { f.start_events(std::move(wake)) } -> std::same_as<std::error_code>;
                              { f.stop_events() } noexcept;
                          };

// --- batches ----------------------------------------------------------------------------------

/// Frames queued for one vmnet_write, packed back to back in one buffer allocated at
/// construction — `capacity` frames and at most vmnet_max_bytes_per_call bytes (at least one
/// frame of `max_frame` bytes) — with a descriptor and an iovec per frame. Filled from the front
/// and emptied whole by each write.
template <vmnet_descriptor Descriptor>
class vmnet_tx_batch {
public:
    /// A batch of `capacity` frames of at most `max_frame` bytes each.
    vmnet_tx_batch(std::size_t capacity, std::size_t max_frame)
        : storage_(std::max(max_frame, std::min(capacity * max_frame, vmnet_max_bytes_per_call))), sizes_(capacity),
          iov_(capacity), descriptors_(capacity), max_frame_(max_frame) {}

    /// The capacity.
    std::size_t capacity() const noexcept { return sizes_.size(); }
    /// The number of elements.
    std::size_t size() const noexcept { return count_; }
    /// The bytes.
    std::size_t bytes() const noexcept { return bytes_; }
    /// Whether empty.
    bool empty() const noexcept { return count_ == 0; }
    /// Whether full.
    bool full() const noexcept { return count_ == sizes_.size(); }
    /// The max frame.
    std::size_t max_frame() const noexcept { return max_frame_; }

    /// Whether a frame of `size` bytes fits in what is left of the buffer.
    bool fits(std::size_t size) const noexcept { return size <= storage_.size() - bytes_; }

    /// Appends `frame`. Preconditions: !full(), fits(frame.size()).
    void push(wire::const_bytes frame) noexcept {
        if (!frame.empty()) std::memcpy(storage_.data() + bytes_, frame.data(), frame.size());
        sizes_[count_] = frame.size();
        bytes_ += frame.size();
        ++count_;
    }

    /// The descriptors of every queued frame, ready for a write call: one iovec each, flags 0.
    Descriptor* describe() noexcept {
        std::size_t offset = 0;
        for (std::size_t i = 0; i < count_; ++i) {
            iov_[i].iov_base = storage_.data() + offset;
            iov_[i].iov_len = sizes_[i];
            descriptors_[i] = Descriptor{};
            descriptors_[i].vm_pkt_size = sizes_[i];
            descriptors_[i].vm_pkt_iov = &iov_[i];
            descriptors_[i].vm_pkt_iovcnt = 1;
            descriptors_[i].vm_flags = 0;
            offset += sizes_[i];
        }
        return descriptors_.data();
    }

    /// Bytes of the first `n` queued frames.
    std::size_t bytes_of_first(std::size_t n) const noexcept {
        std::size_t total = 0;
        for (std::size_t i = 0; i < n && i < count_; ++i) total += sizes_[i];
        return total;
    }

    /// Empties the batch.
    void clear() noexcept {
        count_ = 0;
        bytes_ = 0;
    }

private:
    std::vector<std::byte> storage_;
    std::vector<std::size_t> sizes_;
    std::vector<::iovec> iov_;
    std::vector<Descriptor> descriptors_;
    std::size_t max_frame_;
    std::size_t count_ = 0;
    std::size_t bytes_ = 0;
};

/// One packet of a completed read: its bytes, or why it was refused.
struct vmnet_packet {
    wire::const_bytes frame; ///< frame
    std::error_code error; ///< bad_length: the reported size exceeds the buffer
};

/// Buffers for one vmnet_read and the split of its result into frames.
template <vmnet_descriptor Descriptor>
class vmnet_rx_batch {
public:
    /// `packets` descriptors of `slot_size` bytes, fewer when they would exceed the per-call byte limit.
    vmnet_rx_batch(std::size_t packets, std::size_t slot_size)
        : slot_size_(slot_size),
          capacity_(std::max<std::size_t>(1, std::min(packets, vmnet_max_bytes_per_call / std::max<std::size_t>(slot_size, 1)))),
          storage_(capacity_ * slot_size), iov_(capacity_), descriptors_(capacity_) {}

    /// The capacity.
    std::size_t capacity() const noexcept { return capacity_; }
    /// The slot size.
    std::size_t slot_size() const noexcept { return slot_size_; }
    /// Packets of the last read not yet taken by next().
    std::size_t remaining() const noexcept { return count_ - next_; }

    /// Resets every descriptor to an empty slot of slot_size() bytes; the read may fill them all.
    Descriptor* prepare() noexcept {
        count_ = 0;
        next_ = 0;
        for (std::size_t i = 0; i < capacity_; ++i) {
            iov_[i].iov_base = storage_.data() + i * slot_size_;
            iov_[i].iov_len = slot_size_;
            descriptors_[i] = Descriptor{};
            descriptors_[i].vm_pkt_size = slot_size_;
            descriptors_[i].vm_pkt_iov = &iov_[i];
            descriptors_[i].vm_pkt_iovcnt = 1;
            descriptors_[i].vm_flags = 0;
        }
        return descriptors_.data();
    }

    /// Takes the count a read returned; false (and an empty batch) when it is out of range.
    bool complete(int count) noexcept {
        next_ = 0;
        if (count < 0 || static_cast<std::size_t>(count) > capacity_) {
            count_ = 0;
            return false;
        }
        count_ = static_cast<std::size_t>(count);
        return true;
    }

    /// The next packet of the completed read, in order, or nullopt when all were taken.
    std::optional<vmnet_packet> next() noexcept {
        if (next_ >= count_) return std::nullopt;
        const std::size_t i = next_++;
        const std::size_t size = descriptors_[i].vm_pkt_size;
        if (size > slot_size_) return vmnet_packet{{}, make_error_code(errc::bad_length)};
        // Our slot, not vm_pkt_iov: the framework fills the buffers, it does not get to move them.
        return vmnet_packet{wire::const_bytes{storage_.data() + i * slot_size_, size}, {}};
    }

private:
    std::size_t slot_size_;
    std::size_t capacity_;
    std::vector<std::byte> storage_;
    std::vector<::iovec> iov_;
    std::vector<Descriptor> descriptors_;
    std::size_t count_ = 0;
    std::size_t next_ = 0;
};

namespace detail {

/// The one receive a backend holds: any handler, move-only ones included, completed later with
/// post(executor, append(handler, ec, n)) — so on the handler's associated executor, with its
/// allocator, as Asio composes it. (Boost 1.81's any_completion_handler cannot be handed on
/// through append: it re-wraps itself when passed as an lvalue.)
template <class Executor>
class vmnet_pending_receive {
public:
    vmnet_pending_receive() noexcept = default;
    template <class Handler>
        requires(!std::is_same_v<std::decay_t<Handler>, vmnet_pending_receive>)
    explicit vmnet_pending_receive(Handler&& handler)
        : op_(std::make_unique<op<std::decay_t<Handler>>>(std::forward<Handler>(handler))) {}

    explicit operator bool() const noexcept { return op_ != nullptr; }

    /// Posts the completion and empties this object.
    void complete(const Executor& executor, std::error_code ec, std::size_t n) && {
        auto taken = std::move(op_);
        std::move(*taken).post(executor, ec, n);
    }

private:
    struct op_base {
        op_base() = default;
        op_base(const op_base&) = delete;
        op_base& operator=(const op_base&) = delete;
        virtual ~op_base() = default;
        virtual void post(const Executor& executor, std::error_code ec, std::size_t n) && = 0;
    };
    template <class Handler>
    struct op final : op_base {
        template <class H>
        explicit op(H&& h) : handler(std::forward<H>(h)) {}
        void post(const Executor& executor, std::error_code ec, std::size_t n) && override {
            boost::asio::post(executor, boost::asio::append(std::move(handler), ec, n));
        }
        Handler handler;
    };
    std::unique_ptr<op_base> op_;
};

} // namespace detail

// --- the backend ------------------------------------------------------------------------------

/// A frame_backend over a vmnet interface, reached through the `Framework` policy.
/// @tparam Framework a vmnet_framework; vmnet.hpp's apple_vmnet_framework on macOS.
template <vmnet_framework Framework>
class basic_vmnet_backend {
public:
    using executor_type = boost::asio::any_io_executor; ///< the executor its asynchronous operations run on
    using framework_type = Framework; ///< the framework type
    using descriptor_type = typename Framework::descriptor_type; ///< the descriptor type

    /// Takes over a started interface. std::errc::invalid_argument for batch options or
    /// parameters out of range (see map_vmnet_parameters); otherwise what the policy's
    /// start_events() returns.
    static result<basic_vmnet_backend> create(executor_type executor, Framework framework, const vmnet_parameters& parameters,
                                              const vmnet_batch_options& options = {}) {
        if (options.batch_packets == 0 || options.batch_packets > vmnet_max_packets_per_call ||
            parameters.mtu < min_mtu || parameters.mtu > max_mtu ||
            parameters.max_packet_size < wire::ethernet::header_len ||
            parameters.max_packet_size > max_frame_len(max_mtu)) {
            return std::make_error_code(std::errc::invalid_argument);
        }
        auto s = std::make_shared<state>(std::move(executor), std::move(framework), parameters, options);
        auto signal = std::make_shared<wake_signal>();
        std::weak_ptr<state> weak = s;
        auto wake = [signal, weak, ex = s->executor]() {
            // Any thread. One wake in flight is enough: the executor reads everything there is.
            if (signal->posted.exchange(true, std::memory_order_acq_rel)) return;
            boost::asio::post(ex, [signal, weak] {
                signal->posted.store(false, std::memory_order_release);
                if (auto alive = weak.lock()) alive->on_packets_available();
            });
        };
        if (auto ec = s->framework.start_events(std::move(wake))) return ec;
        s->events_started = true;
        return basic_vmnet_backend{std::move(s)};
    }

    /// Move-constructs (memberwise).
    basic_vmnet_backend(basic_vmnet_backend&&) noexcept = default;
    /// Move assignment.
    basic_vmnet_backend& operator=(basic_vmnet_backend&&) noexcept = default;
    basic_vmnet_backend(const basic_vmnet_backend&) = delete;
    basic_vmnet_backend& operator=(const basic_vmnet_backend&) = delete;
    /// Writes what is queued and stops packet events (through the state, which posted work
    /// only reaches through a weak_ptr).
    ~basic_vmnet_backend() = default;

    /// The executor its asynchronous operations run on.
    executor_type get_executor() const noexcept { return state_->executor; }
    /// The MTU.
    std::size_t mtu() const noexcept { return state_->parameters.mtu; }
    /// vmnet assigns the MAC; frames the guest sends must carry it.
    std::optional<wire::mac_address> mac() const noexcept { return state_->parameters.mac; }
    /// What it counted so far.
    counters stats() const noexcept { return state_->stats; }
    /// The batch stats.
    const vmnet_batch_stats& batch_stats() const noexcept { return state_->batch; }
    /// The parameters.
    const vmnet_parameters& parameters() const noexcept { return state_->parameters; }
    /// The vmnet framework calls it makes (the real one, or a test double).
    Framework& framework() noexcept { return state_->framework; }

    /// Receives one frame (see the contract in backend.hpp). A frame longer than `buffer` is
    /// dropped and the receive completes with errc::buffer_too_small.
    template <class Handler>
    void async_receive(wire::mutable_bytes buffer, Handler&& handler) {
        auto& s = *state_;
        if (s.closed) {
            boost::asio::post(s.executor, boost::asio::append(std::forward<Handler>(handler),
                                                              std::make_error_code(std::errc::operation_canceled), std::size_t{0}));
            return;
        }
        s.pending_buffer = buffer;
        s.pending = receive_handler{std::forward<Handler>(handler)};
        s.deliver();
    }

    /// Queues one frame for the next write call (posted, or at once when the batch is full).
    std::error_code send(wire::const_bytes frame) {
        auto& s = *state_;
        if (auto why = check_frame_size(frame.size(), s.parameters.mtu)) {
            ++s.stats.tx_invalid;
            return why;
        }
        if (frame.size() > s.parameters.max_packet_size) { // vmnet would refuse it (a tagged full-MTU frame)
            ++s.stats.tx_invalid;
            return errc::bad_length;
        }
        if (s.closed) {
            ++s.stats.tx_dropped;
            return std::make_error_code(std::errc::not_connected);
        }
        if (!s.tx.fits(frame.size())) s.flush();
        s.tx.push(frame);
        if (s.tx.full()) {
            s.flush();
        } else if (!s.flush_posted) {
            s.flush_posted = true;
            boost::asio::post(s.executor, [weak = std::weak_ptr<state>(state_)] {
                if (auto alive = weak.lock()) {
                    alive->flush_posted = false;
                    alive->flush();
                }
            });
        }
        return {};
    }

    /// Writes what send() queued now, instead of at the posted flush.
    void flush() { state_->flush(); }

    /// Stops packet events; a pending receive completes with operation_canceled; queued frames
    /// are written first. Later sends fail with not_connected.
    void close() {
        auto& s = *state_;
        if (s.closed) return;
        s.flush();
        s.closed = true;
        s.stop_events();
        if (s.pending) s.finish(std::make_error_code(std::errc::operation_canceled), 0);
    }

private:
    using receive_handler = detail::vmnet_pending_receive<executor_type>;

    struct wake_signal {
        std::atomic<bool> posted{false};
    };

    struct state : std::enable_shared_from_this<state> {
        state(executor_type ex, Framework f, const vmnet_parameters& p, const vmnet_batch_options& options)
            : executor(std::move(ex)), framework(std::move(f)), parameters(p),
              tx(options.batch_packets, p.max_packet_size), rx(options.batch_packets, p.max_packet_size) {}
        state(const state&) = delete;
        state& operator=(const state&) = delete;
        ~state() {
            flush(); // what send() accepted still goes out
            stop_events();
        }

        executor_type executor;
        Framework framework;
        vmnet_parameters parameters;
        vmnet_tx_batch<descriptor_type> tx;
        vmnet_rx_batch<descriptor_type> rx;
        counters stats;
        vmnet_batch_stats batch;
        wire::mutable_bytes pending_buffer;
        receive_handler pending;
        bool flush_posted = false;
        bool events_started = false;
        bool closed = false;

        void stop_events() noexcept {
            if (!events_started) return;
            events_started = false;
            framework.stop_events();
        }

        void on_packets_available() {
            ++batch.wakeups;
            if (pending && !closed) deliver();
        }

        /// Completes the pending receive with the next good frame, reading a batch when the
        /// last one is used up. Waits (keeps the receive pending) only after a read found
        /// nothing. A bounded number of reads per call: a flood of refused frames yields.
        void deliver() {
            constexpr int max_reads_per_call = 4;
            int reads = 0;
            while (pending) {
                if (auto packet = rx.next()) {
                    if (packet->error) {
                        ++stats.rx_oversize;
                        continue;
                    }
                    if (auto why = check_frame_size(packet->frame.size(), parameters.mtu)) {
                        count_bad_rx(stats, why);
                        continue;
                    }
                    if (packet->frame.size() > pending_buffer.size()) {
                        finish(errc::buffer_too_small, 0);
                        return;
                    }
                    std::memcpy(pending_buffer.data(), packet->frame.data(), packet->frame.size());
                    ++stats.rx_frames;
                    stats.rx_bytes += packet->frame.size();
                    finish({}, packet->frame.size());
                    return;
                }
                if (reads == max_reads_per_call) {
                    boost::asio::post(executor, [weak = this->weak_from_this()] {
                        if (auto alive = weak.lock(); alive && alive->pending && !alive->closed) alive->deliver();
                    });
                    return;
                }
                ++reads;
                int count = static_cast<int>(rx.capacity());
                descriptor_type* descriptors = rx.prepare();
                ++batch.reads;
                if (auto ec = framework.read(descriptors, count)) {
                    rx.complete(0);
                    ++batch.read_errors;
                    finish(ec, 0);
                    return;
                }
                if (!rx.complete(count)) ++batch.bad_counts;
                batch.read_packets += rx.remaining();
                if (rx.remaining() == 0) return; // nothing there: wait for a wake
            }
        }

        void finish(std::error_code ec, std::size_t n) {
            auto handler = std::move(pending);
            std::move(handler).complete(executor, ec, n);
        }

        /// Writes the queued frames in one call; whatever vmnet did not take is dropped.
        void flush() {
            if (tx.empty()) return;
            const std::size_t submitted = tx.size();
            int count = static_cast<int>(submitted);
            ++batch.writes;
            const std::error_code ec = framework.write(tx.describe(), count);
            if (ec) {
                ++batch.write_errors;
                stats.tx_dropped += submitted;
            } else {
                if (count < 0 || static_cast<std::size_t>(count) > submitted) {
                    ++batch.bad_counts;
                    count = count < 0 ? 0 : static_cast<int>(submitted);
                }
                const auto written = static_cast<std::size_t>(count);
                stats.tx_frames += written;
                stats.tx_bytes += tx.bytes_of_first(written);
                stats.tx_dropped += submitted - written;
            }
            tx.clear();
        }
    };

    explicit basic_vmnet_backend(std::shared_ptr<state> s) : state_(std::move(s)) {}

    std::shared_ptr<state> state_;
};

namespace detail {
/// The smallest framework policy: it documents the requirement and lets the header check
/// itself; it moves no packets.
struct vmnet_archetype_descriptor {
    std::size_t vm_pkt_size;
    ::iovec* vm_pkt_iov;
    std::uint32_t vm_pkt_iovcnt;
    std::uint32_t vm_flags;
};
struct vmnet_framework_archetype {
    using descriptor_type = vmnet_archetype_descriptor;
    std::error_code read(descriptor_type*, int& count) {
        count = 0;
        return {};
    }
    std::error_code write(descriptor_type*, int&) { return {}; }
    std::error_code start_events(std::function<void()>) { return {}; }
    void stop_events() noexcept {}
};
} // namespace detail

static_assert(vmnet_framework<detail::vmnet_framework_archetype>);
static_assert(frame_backend<basic_vmnet_backend<detail::vmnet_framework_archetype>>);

} // namespace ankanet::backend
