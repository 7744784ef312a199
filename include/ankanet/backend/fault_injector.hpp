/// @file
/// ankanet::backend::fault_injector — a lossy, duplicating, reordering, corrupting link, on demand.
///
/// Theory of operation. `fault_injector<Backend, Random>` is a frame_backend decorator, the
/// counterpart of netem (which this project's CI kernels lack) and of smoltcp's FaultInjector.
/// Each direction — rx, frames on their way from the peer to async_receive callers, and tx,
/// frames given to send() on their way to the peer — has its own rates, and every frame of a
/// valid size that passes is put through four decisions, in this order:
/// @code{.unparsed}
///   1. drop       the frame is gone (send() still reports success: the wire ate it);
///   2. corrupt    one random bit of the frame flips (below);
///   3. reorder    the frame is held back and released right after the next frame, so the two
///                 swap places. Only one frame is held per direction: while one is, the next
///                 frame is not a candidate (it is the one that releases it);
///   4. duplicate  the frame is passed twice, the copy straight after the original.
/// @endcode
/// A decision whose rate is 0 never happens and consumes no randomness, so rate 0 everywhere
/// is an exact passthrough; a rate of 1 always happens. Frames of a refused size are not
/// touched: they go to the wrapped backend, which refuses and counts them.
///
/// Corruption flips a bit after the Ethernet header (in the header itself when a frame has
/// nothing else). There is no FCS at this layer, so a flipped MAC would misroute a frame rather
/// than be detected, which is not what a corruption test asks for; past the header, a single
/// flipped bit always changes the IPv4 header checksum or the TCP/UDP/ICMP checksum covering it
/// (the one's-complement sum moves by a power of two, never by a multiple of 0xffff).
///
/// Reproducibility. Each direction draws from its own `Random` engine, seeded from
/// fault_config::seed, so one direction's traffic does not shift the other's decisions: the same
/// seed, rates and frames give the same faults in the same places, run after run, on every
/// platform (a decision compares one 64-bit draw with rate * 2^64; no std::*_distribution, whose
/// output the standard leaves to each library). `Random` is a std::uniform_random_bit_generator
/// producing the full 64-bit range and constructible from a seed (std::mt19937_64 by default).
///
/// Lifetime: the state lives on the heap, owned by the injector; a pending receive refers to it
/// weakly, so destroying the injector with a receive pending leaks nothing, and that receive
/// completes with operation_canceled if the next layer ever completes it.
///
/// Memory: buffers for a held frame per direction, a corrupted copy on tx, and two rx frames
/// owed to the next receives (a duplicate, a released frame) — allocated once, never grown. A
/// held tx frame waits for the next send (or release_held()); a held rx frame is delivered
/// before an end-of-stream error. Counters of every decision are in faults().
///
/// Bursts. When the wrapped backend has try_receive (burst_backend), the injector has it too, and
/// puts the frames it takes through the same rx decisions, from the same random stream, as
/// async_receive does: owed frames first, a dropped or held frame makes it take the next one (up to
/// fault_try_receive_looks frames per call, then "nothing queued"), a held frame comes out before
/// an end-of-stream error. So a port that drains bursts sees the same faults as one that does not.
#pragma once

#include <ankanet/backend/backend.hpp>
#include <ankanet/backend/memory.hpp>
#include <ankanet/result.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/post.hpp>

#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace ankanet::backend {

/// The probability, in [0, 1], of each fault for one direction.
struct fault_rates {
    double drop = 0.0;      ///< a frame is lost
    double duplicate = 0.0; ///< a frame is passed twice
    double reorder = 0.0;   ///< a frame is held back and passed after the next
    double corrupt = 0.0;   ///< a frame has one bit flipped
};

/// The faults to inject in each direction, and the seed of the generator that draws them.
struct fault_config {
    fault_rates rx;         ///< frames from the peer, on their way to async_receive callers
    fault_rates tx;         ///< frames given to send(), on their way to the peer
    std::uint64_t seed = 0; ///< same seed, same faults
};

/// What the injector did in one direction.
struct fault_counters {
    std::uint64_t frames = 0;     ///< frames of a valid size that reached the injector
    std::uint64_t dropped = 0;    ///< frames lost on purpose
    std::uint64_t duplicated = 0; ///< extra copies passed
    std::uint64_t reordered = 0;  ///< frames held back and passed after their successor
    std::uint64_t corrupted = 0;  ///< frames with one bit flipped

    /// Memberwise equality.
    bool operator==(const fault_counters&) const noexcept = default;
};

/// What the injector did, per direction.
struct fault_stats {
    fault_counters rx; ///< frames from the peer
    fault_counters tx; ///< frames to the peer
    /// Memberwise equality.
    bool operator==(const fault_stats&) const noexcept = default;
};

/// A random engine the injector accepts: 64 random bits per call, seeded by an integer.
template <class Random>
concept fault_random = std::uniform_random_bit_generator<Random> && std::constructible_from<Random, std::uint64_t> &&
                       (Random::min() == 0) && (Random::max() == std::numeric_limits<std::uint64_t>::max());

/// std::errc::invalid_argument when a rate is not a number in [0, 1].
inline std::error_code validate(const fault_config& config) noexcept {
    for (const fault_rates* rates : {&config.rx, &config.tx}) {
        for (double rate : {rates->drop, rates->duplicate, rates->reorder, rates->corrupt}) {
            if (!(rate >= 0.0 && rate <= 1.0)) return std::make_error_code(std::errc::invalid_argument); // NaN fails too
        }
    }
    return {};
}

namespace detail {

/// One decision: never, always, or a draw below a threshold (rate * 2^64).
class fault_chance {
public:
    fault_chance() noexcept = default;
    explicit fault_chance(double rate) noexcept
        : mode_(rate <= 0.0 ? mode::never : rate >= 1.0 ? mode::always : mode::draw),
          // rate < 1 here, so rate * 2^64 <= 2^64 - 2^11: it fits.
          threshold_(mode_ == mode::draw ? static_cast<std::uint64_t>(std::ldexp(rate, 64)) : 0) {}

    template <class Random>
    bool operator()(Random& random) const {
        switch (mode_) {
        case mode::never: return false;
        case mode::always: return true;
        case mode::draw: break;
        }
        const std::uint64_t draw = random();
        return draw < threshold_;
    }

private:
    enum class mode { never, always, draw };
    mode mode_ = mode::never;
    std::uint64_t threshold_ = 0;
};

/// A frame-sized buffer and how much of it holds a frame.
struct fault_slot {
    std::vector<std::byte> bytes;
    std::size_t size = 0;

    void assign(wire::const_bytes frame) noexcept {
        std::memcpy(bytes.data(), frame.data(), frame.size());
        size = frame.size();
    }
    wire::const_bytes frame() const noexcept { return {bytes.data(), size}; }
};

template <class Random>
struct fault_direction {
    fault_direction(const fault_rates& rates, std::uint64_t seed, std::size_t slot_size)
        : drop(rates.drop), duplicate(rates.duplicate), reorder(rates.reorder), corrupt(rates.corrupt),
          random(seed), held{std::vector<std::byte>(slot_size), 0} {}

    fault_chance drop, duplicate, reorder, corrupt;
    Random random;
    fault_slot held;
    bool holding = false;
    fault_counters counters;

    /// Flips one random bit, past the Ethernet header when the frame has more than a header.
    void flip_bit(wire::mutable_bytes frame) {
        const std::size_t first = frame.size() > wire::ethernet::header_len ? wire::ethernet::header_len : 0;
        const std::size_t bits = (frame.size() - first) * 8;
        // The modulo's bias is below 2^-40 for any frame size: immaterial for a fault model.
        const std::uint64_t draw = random();
        const std::size_t bit = draw % bits;
        frame[first + bit / 8] ^= std::byte{static_cast<unsigned char>(1u << (bit % 8))};
        ++counters.corrupted;
    }
};

template <class Backend, class Random>
struct fault_state {
    fault_state(Backend next_layer, const fault_config& config)
        : next(std::move(next_layer)), slot_size(max_frame_len(next.mtu())),
          rx(config.rx, config.seed, slot_size),
          // A different stream for tx: the golden-ratio constant keeps the two seeds apart.
          tx(config.tx, config.seed ^ 0x9e3779b97f4a7c15u, slot_size), tx_scratch(slot_size),
          owed{fault_slot{std::vector<std::byte>(slot_size), 0}, fault_slot{std::vector<std::byte>(slot_size), 0}},
          config_copy(config) {}

    Backend next;
    std::size_t slot_size;
    fault_direction<Random> rx;
    fault_direction<Random> tx;
    std::vector<std::byte> tx_scratch;
    // Frames owed to the next receives, oldest first: at most a duplicate and a released frame.
    std::array<fault_slot, 2> owed;
    std::size_t owed_head = 0;
    std::size_t owed_count = 0;
    std::error_code stashed_error; ///< an end-of-stream error that waits behind a released frame
    fault_config config_copy;
    bool closed = false;

    void owe(wire::const_bytes frame) noexcept {
        // Room is guaranteed: receives drain owed frames before asking the next layer for more,
        // and one delivery owes at most two.
        auto& slot = owed[(owed_head + owed_count) % owed.size()];
        slot.assign(frame);
        ++owed_count;
    }
    const fault_slot& owed_front() const noexcept { return owed[owed_head]; }
    void pop_owed() noexcept {
        owed_head = (owed_head + 1) % owed.size();
        --owed_count;
    }

    /// Whether owed frames or a stashed error wait for the next receive.
    bool has_owed() const noexcept { return !closed && (owed_count != 0 || stashed_error); }

    /// Hands the next owed frame (or the stashed error) to a receive into `buffer`; has_owed().
    std::pair<std::error_code, std::size_t> take_owed(wire::mutable_bytes buffer) noexcept {
        if (owed_count == 0) return {std::exchange(stashed_error, std::error_code{}), 0};
        const auto frame = owed_front().frame();
        std::pair<std::error_code, std::size_t> out{};
        if (frame.size() > buffer.size()) {
            out.first = make_error_code(errc::buffer_too_small); // as the memory link: the frame is dropped
        } else {
            std::memcpy(buffer.data(), frame.data(), frame.size());
            out.second = frame.size();
        }
        pop_owed();
        return out;
    }

    /// Whether a frame of `n` bytes in `buffer`, delivered by the next layer, is one the rx
    /// decisions apply to (frames of a refused size, or too long to hold, pass as they are).
    bool rx_applies(wire::mutable_bytes buffer, std::size_t n) const noexcept {
        return !closed && n <= buffer.size() && n <= slot_size && !check_frame_size(n, next.mtu());
    }

    /// The rx decisions for one frame the next layer delivered (rx_applies). True: deliver it
    /// now (perhaps corrupted, with a duplicate or a released frame owed after it). False: it was
    /// dropped or held back; the caller receives the next one.
    bool pass_rx(wire::mutable_bytes frame) {
        auto& d = rx;
        ++d.counters.frames;
        if (d.drop(d.random)) {
            ++d.counters.dropped;
            return false;
        }
        if (d.corrupt(d.random)) d.flip_bit(frame);
        if (!d.holding && d.reorder(d.random)) {
            d.held.assign(frame);
            d.holding = true;
            ++d.counters.reordered;
            return false;
        }
        if (d.duplicate(d.random)) {
            owe(frame);
            ++d.counters.duplicated;
        }
        if (d.holding) {
            owe(d.held.frame());
            d.holding = false;
        }
        return true;
    }

    /// For an error `ec` from the next layer: when a frame is held and the link ended, moves the
    /// held frame into `buffer`, stashes `ec` for the next receive and returns the frame's size.
    std::optional<std::size_t> release_held_on_error(std::error_code ec, wire::mutable_bytes buffer) noexcept {
        auto& d = rx;
        if (!d.holding || closed || ec == std::errc::operation_canceled || d.held.size > buffer.size()) return std::nullopt;
        d.holding = false;
        std::memcpy(buffer.data(), d.held.bytes.data(), d.held.size);
        stashed_error = ec;
        return d.held.size;
    }
};

/// How many frames one fault_injector::try_receive takes from the next layer while the rx
/// decisions drop or hold them, before it says "nothing queued" and lets the caller wait.
inline constexpr int fault_try_receive_looks = 64;

/// The receive operation: applies the rx decisions to what the next layer delivers.
template <class Handler, class Backend, class Random>
struct fault_receive_op {
    // Weak: the state owns the next layer, which holds this operation while it is pending; a
    // strong reference would be a cycle that outlives everything.
    std::weak_ptr<fault_state<Backend, Random>> state;
    wire::mutable_bytes buffer;
    Handler handler;

    void operator()(std::error_code ec, std::size_t n) {
        const auto alive = state.lock();
        if (!alive) { // the injector is gone: nothing to apply faults with, and no frame to give
            std::move(handler)(std::make_error_code(std::errc::operation_canceled), std::size_t{0});
            return;
        }
        auto& s = *alive;
        if (ec) {
            // The peer went away with a frame still held: deliver it, then the error.
            if (const auto held = s.release_held_on_error(ec, buffer)) {
                std::move(handler)(std::error_code{}, *held);
                return;
            }
            std::move(handler)(ec, n);
            return;
        }
        if (!s.rx_applies(buffer, n)) {
            std::move(handler)(ec, n); // not a frame the injector can hold: pass it as it is
            return;
        }
        if (!s.pass_rx(buffer.first(n))) {
            s.next.async_receive(buffer, std::move(*this)); // dropped or held: wait for the next
            return;
        }
        std::move(handler)(ec, n);
    }
};

} // namespace detail

/// A frame_backend that drops, duplicates, reorders and corrupts what crosses `Backend`.
/// @tparam Backend the backend wrapped, owned.
/// @tparam Random the random engine (see fault_random); one per direction.
///
/// @par Example
/// @code
/// fault_config faults;
/// faults.tx.drop = 0.01;     // 1% loss towards the peer
/// faults.rx.reorder = 0.05;
/// faults.seed = 42;
/// auto link = fault_injector<memory_endpoint>::create(std::move(endpoint), faults);
/// @endcode
template <frame_backend Backend, fault_random Random = std::mt19937_64>
class fault_injector {
public:
    using executor_type = typename Backend::executor_type; ///< the executor its asynchronous operations run on
    using next_layer_type = Backend; ///< the next layer type

    /// Wraps `next`. std::errc::invalid_argument when a rate is not in [0, 1].
    static result<fault_injector> create(Backend next, const fault_config& config) {
        if (auto ec = validate(config)) return ec;
        return fault_injector{std::make_shared<state_type>(std::move(next), config)};
    }

    /// The executor its asynchronous operations run on.
    executor_type get_executor() const noexcept { return state_->next.get_executor(); }
    /// The MTU.
    std::size_t mtu() const noexcept { return state_->next.mtu(); }
    /// The MAC.
    std::optional<wire::mac_address> mac() const noexcept { return state_->next.mac(); }
    /// The wrapped backend's counters; what the injector did is in faults().
    counters stats() const noexcept { return state_->next.stats(); }
    /// The faults.
    fault_stats faults() const noexcept { return {state_->rx.counters, state_->tx.counters}; }
    /// The configuration it was made with.
    const fault_config& config() const noexcept { return state_->config_copy; }

    /// Receives one frame, after the rx faults. Frames owed from an earlier delivery (a
    /// duplicate, a released frame) come first, completed through the executor, never inline.
    template <class Handler>
    void async_receive(wire::mutable_bytes buffer, Handler&& handler) {
        auto& s = *state_;
        if (s.has_owed()) {
            const auto [ec, n] = s.take_owed(buffer);
            boost::asio::post(s.next.get_executor(), boost::asio::append(std::forward<Handler>(handler), ec, n));
            return;
        }
        s.next.async_receive(buffer, detail::fault_receive_op<std::decay_t<Handler>, Backend, Random>{
                                         state_, buffer, std::forward<Handler>(handler)});
    }

    /// Takes a frame now, after the rx faults (burst_backend, backend.hpp; present only when
    /// `Backend` has try_receive). Owed frames and a stashed error come first, as for async_receive.
    /// @return the frame's size; std::errc::resource_unavailable_try_again when the next layer
    /// has nothing queued, or when fault_try_receive_looks frames in a row were dropped or held;
    /// otherwise the next layer's error (a held frame comes out before an end-of-stream error).
    result<std::size_t> try_receive(wire::mutable_bytes buffer)
        requires burst_backend<Backend>
    {
        auto& s = *state_;
        if (s.has_owed()) {
            const auto [ec, n] = s.take_owed(buffer);
            if (ec) return ec;
            return n;
        }
        for (int looked = 0; looked < detail::fault_try_receive_looks; ++looked) {
            auto received = s.next.try_receive(buffer);
            if (!received) {
                const std::error_code ec = received.error();
                if (is_nothing_queued(ec) || ec == std::errc::operation_in_progress) return ec;
                if (const auto held = s.release_held_on_error(ec, buffer)) return *held;
                return ec;
            }
            if (!s.rx_applies(buffer, *received) || s.pass_rx(buffer.first(*received))) return *received;
        }
        return std::make_error_code(nothing_queued);
    }

    /// Sends one frame, after the tx faults. A dropped or held frame reports success, as a lossy
    /// wire would; otherwise the result is the next layer's for this frame.
    std::error_code send(wire::const_bytes frame) {
        auto& s = *state_;
        if (s.closed || check_frame_size(frame.size(), s.next.mtu()) || frame.size() > s.slot_size) {
            return s.next.send(frame);
        }
        auto& d = s.tx;
        ++d.counters.frames;
        if (d.drop(d.random)) {
            ++d.counters.dropped;
            return {};
        }
        wire::const_bytes out = frame;
        if (d.corrupt(d.random)) {
            std::memcpy(s.tx_scratch.data(), frame.data(), frame.size());
            const wire::mutable_bytes copy{s.tx_scratch.data(), frame.size()};
            d.flip_bit(copy);
            out = copy;
        }
        if (!d.holding && d.reorder(d.random)) {
            d.held.assign(out);
            d.holding = true;
            ++d.counters.reordered;
            return {};
        }
        const std::error_code ec = s.next.send(out);
        if (d.duplicate(d.random)) {
            ++d.counters.duplicated;
            (void)s.next.send(out); // a failure is the next layer's to count
        }
        if (d.holding) {
            d.holding = false;
            (void)s.next.send(d.held.frame());
        }
        return ec;
    }

    /// Sends a held tx frame now rather than after the next one; no-op when none is held.
    std::error_code release_held() {
        auto& d = state_->tx;
        if (!d.holding) return {};
        d.holding = false;
        return state_->next.send(d.held.frame());
    }

    /// Closes the wrapped backend; held and owed frames are discarded.
    void close() {
        auto& s = *state_;
        s.closed = true;
        s.rx.holding = false;
        s.tx.holding = false;
        s.owed_count = 0;
        s.stashed_error = {};
        s.next.close();
    }

    /// The next layer.
    Backend& next_layer() noexcept { return state_->next; }
    /// The next layer.
    const Backend& next_layer() const noexcept { return state_->next; }

private:
    using state_type = detail::fault_state<Backend, Random>;
    explicit fault_injector(std::shared_ptr<state_type> state) : state_(std::move(state)) {}

    // On the heap so that pending receives (which hold it weakly) survive a move of the injector.
    std::shared_ptr<state_type> state_;
};

static_assert(burst_backend<fault_injector<memory_endpoint>>);

} // namespace ankanet::backend

/// The receive operation is transparent to Asio: it has the executor, allocator and
/// cancellation slot of the handler it wraps.
template <template <class, class> class Associator, class Handler, class Backend, class Random, class DefaultCandidate>
struct boost::asio::associator<Associator, ankanet::backend::detail::fault_receive_op<Handler, Backend, Random>,
                               DefaultCandidate> : Associator<Handler, DefaultCandidate> {
    static typename Associator<Handler, DefaultCandidate>::type
    get(const ankanet::backend::detail::fault_receive_op<Handler, Backend, Random>& op) noexcept {
        return Associator<Handler, DefaultCandidate>::get(op.handler);
    }
    static auto get(const ankanet::backend::detail::fault_receive_op<Handler, Backend, Random>& op,
                    const DefaultCandidate& candidate) noexcept
        -> decltype(Associator<Handler, DefaultCandidate>::get(op.handler, candidate)) {
        return Associator<Handler, DefaultCandidate>::get(op.handler, candidate);
    }
};
