/// @file
/// ankanet::wire::tcp — TCP segments (RFC 9293) over IPv4, with the options a NAT meets.
///
/// Theory of operation.
///  * `packet<Bytes>` views the IP payload that carries one segment; the IP layer has already cut
///    the buffer to the segment, so `payload()` runs to the end of the buffer. `check_len()`
///    refuses a buffer shorter than 20 bytes (truncated), a data offset below 5 words
///    (bad_header_length), a data offset past the buffer (truncated) and a buffer longer than the
///    pseudo-header's 16-bit length can describe (bad_length). After it succeeded, no accessor
///    reads outside the buffer; and options() and payload() clamp the data offset to the buffer
///    anyway, so an offset set later through a writable view cannot make them read past it.
///  * Options are read by `option_reader`, which refuses (bad_option) what a length-trusting
///    parser would walk off: a kind byte with no length byte after it, a length of 0 or 1 (which
///    would loop or overlap), an option running past the option space, and a known option with a
///    length its RFC does not allow (MSS 4, window scale 3, SACK-permitted 2, SACK 2+8n with
///    1 <= n <= 4, timestamps 10). EOL ends the list; NOP is skipped; unknown kinds are skipped by
///    their (checked) length.
///  * The checksum covers the IPv4 pseudo-header, so the view is given the two addresses; it does
///    not depend on the IPv4 view. NAT helpers rewrite a port, or account for an address rewritten
///    in the IP header, with the incremental update of RFC 1624, whose result equals a full
///    recomputation.
///  * `repr` is the parsed header with its options typed. `parse` verifies the checksum;
///    `parse_ignoring_checksum` does not, for segments whose checksum was checked elsewhere or is
///    still to be filled in (checksum offload, virtio-net's NEEDS_CSUM). `emit` writes the options
///    in Linux's layout (tcp_options_write): MSS, SACK-permitted with timestamps, window scale,
///    SACK blocks, each starting on a 32-bit boundary thanks to NOPs, so Linux's SYNs and ACKs
///    re-encode byte for byte. When that layout would not fit in 40 bytes (possible only for a
///    hand-packed segment), emit writes the same options back to back and pads with EOL. The
///    checksum is computed over the header and the payload the caller already placed after it.
/// Limits: IPv4 pseudo-header only. Semantics are the caller's: an MSS on a non-SYN, a SACK block
/// with left >= right, or a window scale above 14 are reported as they are (the last one with
/// repr::window_shift() clamped to 14, RFC 7323 §2.3). When a typed option appears twice, the last
/// one wins, as in Linux. Unknown options (TFO, MPTCP, TCP-AO, ...) are skipped and not kept in the
/// repr: to forward a segment with them intact, rewrite it in place through the view.
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/checksum.hpp>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <system_error>

namespace ankanet::wire::tcp {

inline constexpr std::size_t header_len = 20;       ///< without options
inline constexpr std::size_t max_header_len = 60;   ///< a 4-bit data offset of 15 words

/// The most option bytes a header can carry (40).
inline constexpr std::size_t max_options_len = max_header_len - header_len;
/// The IP protocol number, as it enters the pseudo-header.
inline constexpr std::uint8_t protocol_number = 6;
/// The largest segment the pseudo-header's 16-bit length can describe.
inline constexpr std::size_t max_segment_len = 0xffff;
/// RFC 7323 §2.3: the largest usable window shift.
inline constexpr std::uint8_t max_window_shift = 14;
/// The most SACK blocks an option can hold in 40 bytes (2 + 8n <= 40).
inline constexpr std::size_t max_sack_blocks = 4;

namespace field {
/// Byte offset of a field from the start of the TCP header.
/// @{
inline constexpr std::size_t source_port = 0;
inline constexpr std::size_t destination_port = 2;
inline constexpr std::size_t seq_number = 4;
inline constexpr std::size_t ack_number = 8;
inline constexpr std::size_t offset_and_flags = 12; ///< data offset (4 bits), reserved and flags (12 bits)
inline constexpr std::size_t window = 14;
inline constexpr std::size_t checksum = 16;
inline constexpr std::size_t urgent_pointer = 18;
inline constexpr std::size_t options = 20;
/// @}
} // namespace field

/// One control bit, as it sits in the low 12 bits of the 16-bit word at offset 12.
enum class flag : std::uint16_t {
    fin = 0x001,
    syn = 0x002,
    rst = 0x004,
    psh = 0x008,
    ack = 0x010,
    urg = 0x020,
    ece = 0x040, ///< ECN-Echo (RFC 3168)
    cwr = 0x080, ///< Congestion Window Reduced (RFC 3168)
    ae = 0x100,  ///< AccECN's AE bit, once the experimental NS bit (RFC 3540, now historic)
};

/// The control bits of a segment. Holds all 12 bits after the data offset, reserved ones
/// included, so a segment round-trips exactly; the named bits are the ones in `flag`.
class flag_set {
public:
    static constexpr std::uint16_t mask = 0x0fff; ///< mask

    constexpr flag_set() noexcept = default;
    /// SACK block `index`.
    constexpr flag_set(flag f) noexcept : bits_(static_cast<std::uint16_t>(f)) {}
    /// The set of one flag.
    constexpr explicit flag_set(std::uint16_t bits) noexcept : bits_(bits & mask) {}

    /// The flag bits, as in the header.
    constexpr std::uint16_t bits() const noexcept { return bits_; }
    /// The set of the flag bits in `bits`.
    constexpr bool has(flag f) const noexcept { return (bits_ & static_cast<std::uint16_t>(f)) != 0; }
    /// Whether `f` is set.
    constexpr flag_set& set(flag f, bool on = true) noexcept {
        const auto bit = static_cast<std::uint16_t>(f);
        bits_ = static_cast<std::uint16_t>(on ? (bits_ | bit) : (bits_ & ~bit));
        return *this;
    }

    /// Whether FIN.
    constexpr bool fin() const noexcept { return has(flag::fin); }
    /// Whether SYN.
    constexpr bool syn() const noexcept { return has(flag::syn); }
    /// Whether RST.
    constexpr bool rst() const noexcept { return has(flag::rst); }
    /// Whether PSH.
    constexpr bool psh() const noexcept { return has(flag::psh); }
    /// Whether ACK.
    constexpr bool ack() const noexcept { return has(flag::ack); }
    /// Whether URG.
    constexpr bool urg() const noexcept { return has(flag::urg); }
    /// Whether ece.
    constexpr bool ece() const noexcept { return has(flag::ece); }
    /// Whether cwr.
    constexpr bool cwr() const noexcept { return has(flag::cwr); }
    /// Whether ae.
    constexpr bool ae() const noexcept { return has(flag::ae); }

    friend constexpr flag_set operator|(flag_set a, flag_set b) noexcept {
        return flag_set{static_cast<std::uint16_t>(a.bits_ | b.bits_)};
    }
    /// Memberwise equality.
    constexpr bool operator==(const flag_set&) const noexcept = default;

private:
    std::uint16_t bits_ = 0;
};

/// The set of both flags.
constexpr flag_set operator|(flag a, flag b) noexcept { return flag_set{a} | flag_set{b}; }

namespace option_kind {
/// A TCP option kind (RFC 9293, RFC 7323, RFC 2018).
/// @{
inline constexpr std::uint8_t end_of_list = 0;
inline constexpr std::uint8_t nop = 1;
inline constexpr std::uint8_t mss = 2;
inline constexpr std::uint8_t window_scale = 3;
inline constexpr std::uint8_t sack_permitted = 4;
inline constexpr std::uint8_t sack = 5;
inline constexpr std::uint8_t timestamps = 8;
/// @}
} // namespace option_kind

/// A SACK block (RFC 2018): the sequence numbers of its first byte and of the byte after its last.
struct sack_block {
    std::uint32_t left = 0; ///< left

    /// right
    std::uint32_t right = 0;
    /// Memberwise equality.
    bool operator==(const sack_block&) const noexcept = default;
};

/// The two values of the timestamps option (RFC 7323).
struct timestamp_values {
    std::uint32_t value = 0;      ///< TSval
    std::uint32_t echo_reply = 0; ///< TSecr

    /// Memberwise equality.
    bool operator==(const timestamp_values&) const noexcept = default;
};

/// One option as found by option_reader: its kind and the bytes after the kind and length bytes.
/// The typed accessors may be called only for their kind; option_reader has checked the length.
struct option {
    std::uint8_t kind = 0; ///< kind
    const_bytes data; ///< data

    /// The MSS.
    std::uint16_t mss() const noexcept { assert(kind == option_kind::mss); return load_be16(data, 0); }
    /// The shift count as sent, which may exceed 14; see window_shift().
    std::uint8_t window_scale() const noexcept { assert(kind == option_kind::window_scale); return load_u8(data, 0); }
    /// The shift count to use: clamped to 14 (RFC 7323 §2.3).
    std::uint8_t window_shift() const noexcept { return std::min(window_scale(), max_window_shift); }
    /// The SACK block count.
    std::size_t sack_block_count() const noexcept { assert(kind == option_kind::sack); return data.size() / 8; }
    /// Sets (or clears) `f`.
    sack_block sack(std::size_t index) const noexcept {
        assert(index < sack_block_count());
        return {load_be32(data, index * 8), load_be32(data, index * 8 + 4)};
    }
    /// The timestamps.
    timestamp_values timestamps() const noexcept {
        assert(kind == option_kind::timestamps);
        return {load_be32(data, 0), load_be32(data, 4)};
    }
};

/// The length a known option must have, or 0 for kinds this reader does not know.
/// SACK is variable and checked apart.
constexpr std::size_t known_option_len(std::uint8_t kind) noexcept {
    switch (kind) {
    case option_kind::mss: return 4;
    case option_kind::window_scale: return 3;
    case option_kind::sack_permitted: return 2;
    case option_kind::timestamps: return 10;
    default: return 0;
    }
}

/// Walks the option bytes of a header, one TLV at a time, checking each against the space left.
///
/// @par Example
/// @code
/// tcp::option_reader reader{segment.options()};
/// tcp::option opt;
/// while (reader.next(opt)) { if (opt.kind == tcp::option_kind::mss) use(opt.mss()); }
/// if (reader.error()) drop(reader.error());
/// @endcode
class option_reader {
public:
    /// Reads `options`, the option bytes of a header.
    explicit option_reader(const_bytes options) noexcept : bytes_(options) {}

    /// Reads the next option other than NOP into `out`. Returns false at EOL, at the end of the
    /// bytes, or on a malformed option (then error() says why and every later call returns false).
    bool next(option& out) noexcept {
        while (!error_ && offset_ < bytes_.size()) {
            const std::uint8_t kind = load_u8(bytes_, offset_);
            if (kind == option_kind::end_of_list) {
                offset_ = bytes_.size(); // the rest is padding
                return false;
            }
            if (kind == option_kind::nop) {
                ++offset_;
                continue;
            }
            const std::size_t left = bytes_.size() - offset_;
            if (left < 2) return fail(); // a kind byte with no room for its length byte
            const std::size_t len = load_u8(bytes_, offset_ + 1);
            if (len < 2) return fail();    // 0 would never advance, 1 would overlap the next kind
            if (len > left) return fail(); // runs past the option space
            if (!length_allowed(kind, len)) return fail();
            out = option{kind, bytes_.subspan(offset_ + 2, len - 2)};
            offset_ += len;
            return true;
        }
        return false;
    }

    /// Why reading stopped early; empty after a well-formed list.
    std::error_code error() const noexcept { return error_; }

private:
    static constexpr bool length_allowed(std::uint8_t kind, std::size_t len) noexcept {
        if (kind == option_kind::sack) {
            if (len < 2 || (len - 2) % 8 != 0) return false;
            const std::size_t blocks = (len - 2) / 8;
            return blocks >= 1 && blocks <= max_sack_blocks;
        }
        const std::size_t expected = known_option_len(kind);
        return expected == 0 || len == expected;
    }
    bool fail() noexcept {
        error_ = errc::bad_option;
        return false;
    }

    const_bytes bytes_;
    std::size_t offset_ = 0;
    std::error_code error_;
};

/// Calls `visit(option)` for each option of `options` (NOPs skipped, stopping at EOL) and
/// returns bad_option if one is malformed; options before the bad one have been visited.
template <class Visitor>
std::error_code for_each_option(const_bytes options, Visitor&& visit) {
    option_reader reader{options};
    option opt;
    while (reader.next(opt)) visit(opt);
    return reader.error();
}

/// A view of a TCP segment: the payload of an IPv4 packet.
template <byte_buffer Bytes>
class packet {
public:
    /// Views `buffer` without checking it; check_len() (or checked()) validates it before the accessors are used.
    explicit packet(Bytes buffer) noexcept : buffer_(buffer) {}

    /// Wraps and validates `buffer`.
    static result<packet> checked(Bytes buffer) noexcept {
        packet segment{buffer};
        if (auto ec = segment.check_len()) return ec;
        return segment;
    }

    /// The fixed header fits, the data offset is at least 5 words and within the buffer, and the
    /// segment is short enough for the pseudo-header's length. Options are checked by
    /// option_reader (and so by repr::parse), not here.
    std::error_code check_len() const noexcept {
        if (buffer_.size() < header_len) return errc::truncated;
        const std::size_t hl = header_length();
        if (hl < header_len) return errc::bad_header_length;
        if (hl > buffer_.size()) return errc::truncated;
        if (buffer_.size() > max_segment_len) return errc::bad_length;
        return {};
    }

    /// The source port.
    std::uint16_t source_port() const noexcept { return load_be16(buffer_, field::source_port); }
    /// The destination port.
    std::uint16_t destination_port() const noexcept { return load_be16(buffer_, field::destination_port); }
    /// The sequence number.
    std::uint32_t seq_number() const noexcept { return load_be32(buffer_, field::seq_number); }
    /// The ACK number.
    std::uint32_t ack_number() const noexcept { return load_be32(buffer_, field::ack_number); }
    /// The data offset field: the header's length in 32-bit words.
    std::uint8_t data_offset() const noexcept { return static_cast<std::uint8_t>(load_u8(buffer_, field::offset_and_flags) >> 4); }
    /// The header's length in bytes, options included.
    std::size_t header_length() const noexcept { return std::size_t{data_offset()} * 4; }
    /// The flags.
    flag_set flags() const noexcept { return flag_set{load_be16(buffer_, field::offset_and_flags)}; }
    /// The window.
    std::uint16_t window() const noexcept { return load_be16(buffer_, field::window); }
    /// The checksum.
    std::uint16_t checksum() const noexcept { return load_be16(buffer_, field::checksum); }
    /// The urgent pointer.
    std::uint16_t urgent_pointer() const noexcept { return load_be16(buffer_, field::urgent_pointer); }
    /// The option bytes, between the fixed header and the data offset (unparsed).
    Bytes options() const noexcept { return buffer_.subspan(header_len, bounded_header_length() - header_len); }
    /// The data: from the data offset to the end of the buffer.
    Bytes payload() const noexcept { return buffer_.subspan(bounded_header_length()); }
    /// The buffer.
    Bytes buffer() const noexcept { return buffer_; }

    /// Whether the checksum is right for these pseudo-header addresses.
    bool verify_checksum(ipv4_address source, ipv4_address destination) const noexcept {
        if (buffer_.size() > max_segment_len) return false; // check_len() refuses these anyway
        return sum(source, destination).finish() == 0;
    }

    /// Writes the source port field.
    void set_source_port(std::uint16_t port) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::source_port, port);
    }
    /// Writes the destination port field.
    void set_destination_port(std::uint16_t port) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::destination_port, port);
    }
    /// Writes the sequence number field.
    void set_seq_number(std::uint32_t value) noexcept requires writable_byte_buffer<Bytes> {
        store_be32(buffer_, field::seq_number, value);
    }
    /// Writes the ACK number field.
    void set_ack_number(std::uint32_t value) noexcept requires writable_byte_buffer<Bytes> {
        store_be32(buffer_, field::ack_number, value);
    }
    /// Sets the data offset in words (the view's contract then holds only if it passes check_len()).
    void set_data_offset(std::uint8_t words) noexcept requires writable_byte_buffer<Bytes> {
        const auto low = static_cast<std::uint8_t>(load_u8(buffer_, field::offset_and_flags) & 0x0f);
        store_u8(buffer_, field::offset_and_flags, static_cast<std::uint8_t>((words << 4) | low));
    }
    /// Writes the flags field.
    void set_flags(flag_set value) noexcept requires writable_byte_buffer<Bytes> {
        const auto offset_bits = static_cast<std::uint16_t>(load_be16(buffer_, field::offset_and_flags) & 0xf000);
        store_be16(buffer_, field::offset_and_flags, static_cast<std::uint16_t>(offset_bits | value.bits()));
    }
    /// Writes the window field.
    void set_window(std::uint16_t value) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::window, value);
    }
    /// Writes the checksum field.
    void set_checksum(std::uint16_t value) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::checksum, value);
    }
    /// Writes the urgent pointer field.
    void set_urgent_pointer(std::uint16_t value) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::urgent_pointer, value);
    }

    /// Computes and stores the checksum over the pseudo-header and the whole segment
    /// (precondition: check_len() passed, so the segment fits in 0xffff bytes).
    void fill_checksum(ipv4_address source, ipv4_address destination) noexcept requires writable_byte_buffer<Bytes> {
        set_checksum(0);
        set_checksum(sum(source, destination).finish());
    }

    /// NAT: sets the source port and updates the checksum to match (RFC 1624).
    void rewrite_source_port(std::uint16_t port) noexcept requires writable_byte_buffer<Bytes> {
        set_checksum(checksum::update16(checksum(), source_port(), port));
        set_source_port(port);
    }
    /// NAT: sets the destination port and updates the checksum to match (RFC 1624).
    void rewrite_destination_port(std::uint16_t port) noexcept requires writable_byte_buffer<Bytes> {
        set_checksum(checksum::update16(checksum(), destination_port(), port));
        set_destination_port(port);
    }
    /// NAT: the IP layer changed an address of the pseudo-header from `from` to `to` (the
    /// address itself lives in the IP header); update the checksum to match.
    void rewrite_pseudo_header_address(ipv4_address from, ipv4_address to) noexcept requires writable_byte_buffer<Bytes> {
        set_checksum(checksum::update32(checksum(), from.to_u32(), to.to_u32()));
    }

private:
    // The data offset, kept between 20 bytes and the buffer's end even when it lies: check_len()
    // refuses such a segment, but a writable view may have been given a bad offset after it ran.
    // (The fixed 20 bytes themselves need check_len()'s first test.)
    std::size_t bounded_header_length() const noexcept {
        return std::min(std::max(header_length(), header_len), buffer_.size());
    }

    // Precondition (check_len): the segment fits the pseudo-header's 16-bit length.
    checksum::accumulator sum(ipv4_address source, ipv4_address destination) const noexcept {
        assert(buffer_.size() <= max_segment_len);
        auto acc = checksum::ipv4_pseudo_header(source, destination, protocol_number,
                                                static_cast<std::uint16_t>(buffer_.size()));
        acc.add(buffer_);
        return acc;
    }

    Bytes buffer_;
};

/// The parsed TCP header, options typed.
struct repr {
    std::uint16_t source_port = 0; ///< source port
    std::uint16_t destination_port = 0; ///< destination port
    std::uint32_t seq_number = 0; ///< sequence number
    std::uint32_t ack_number = 0; ///< ACK number
    flag_set flags; ///< flags
    std::uint16_t window = 0; ///< as on the wire, not scaled
    std::uint16_t urgent_pointer = 0; ///< urgent pointer
    std::optional<std::uint16_t> mss; ///< MSS
    std::optional<std::uint8_t> window_scale; ///< the shift count as sent; use window_shift()
    bool sack_permitted = false; ///< SACK permitted
    std::array<sack_block, max_sack_blocks> sack_blocks{}; ///< the first sack_count are valid
    std::uint8_t sack_count = 0; ///< SACK count
    std::optional<timestamp_values> timestamps; ///< timestamps
    std::size_t payload_len = 0; ///< payload length

    /// The window shift to use: the window scale option clamped to 14 (RFC 7323 §2.3), or
    /// nothing when no window scale option was sent.
    std::optional<std::uint8_t> window_shift() const noexcept {
        if (!window_scale) return std::nullopt;
        return std::min(*window_scale, max_window_shift);
    }
    /// The window scale option asked for more than 14: RFC 7323 §2.3 says to log it.
    bool window_scale_clamped() const noexcept { return window_scale && *window_scale > max_window_shift; }
    /// The sacks.
    std::span<const sack_block> sacks() const noexcept { return std::span{sack_blocks}.first(std::min<std::size_t>(sack_count, max_sack_blocks)); }

    /// Validates lengths, the checksum and the options.
    static result<repr> parse(const packet<const_bytes>& segment, ipv4_address source,
                              ipv4_address destination) noexcept {
        if (auto ec = segment.check_len()) return ec;
        if (!segment.verify_checksum(source, destination)) return errc::bad_checksum;
        return parse_ignoring_checksum(segment);
    }
    /// Parses bytes, with the pseudo-header's addresses.
    static result<repr> parse(const_bytes segment, ipv4_address source, ipv4_address destination) noexcept {
        return parse(packet<const_bytes>{segment}, source, destination);
    }

    /// As parse, without looking at the checksum: for segments whose checksum was verified
    /// elsewhere or is still to be filled in (checksum offload).
    static result<repr> parse_ignoring_checksum(const packet<const_bytes>& segment) noexcept {
        if (auto ec = segment.check_len()) return ec;
        repr r;
        r.source_port = segment.source_port();
        r.destination_port = segment.destination_port();
        r.seq_number = segment.seq_number();
        r.ack_number = segment.ack_number();
        r.flags = segment.flags();
        r.window = segment.window();
        r.urgent_pointer = segment.urgent_pointer();
        r.payload_len = segment.payload().size();
        const auto ec = for_each_option(segment.options(), [&r](const option& opt) noexcept {
            switch (opt.kind) {
            case option_kind::mss: r.mss = opt.mss(); break;
            case option_kind::window_scale: r.window_scale = opt.window_scale(); break;
            case option_kind::sack_permitted: r.sack_permitted = true; break;
            case option_kind::timestamps: r.timestamps = opt.timestamps(); break;
            case option_kind::sack:
                r.sack_blocks = {};
                r.sack_count = static_cast<std::uint8_t>(opt.sack_block_count());
                for (std::size_t i = 0; i < opt.sack_block_count(); ++i) r.sack_blocks[i] = opt.sack(i);
                break;
            default: break; // unknown: skipped by its length
            }
        });
        if (ec) return ec;
        return r;
    }

    /// Option bytes emit writes (a multiple of 4). Above 40 the repr cannot be encoded.
    std::size_t options_len() const noexcept {
        const std::size_t aligned = aligned_options_len();
        return aligned <= max_options_len ? aligned : round4(packed_options_len());
    }
    /// The header's length: 20 bytes plus options_len(); at most 60 for any repr emit accepts.
    std::size_t buffer_len() const noexcept { return header_len + options_len(); }

    /// Writes the header and its options at the start of `buffer` and the checksum over the
    /// pseudo-header, the header and the `payload_len` bytes that follow it. The caller places the
    /// payload at `buffer[buffer_len(), buffer_len() + payload_len)` *before* calling emit;
    /// `buffer` must hold both (buffer_too_small otherwise). Refuses more than 4 SACK blocks or
    /// options that do not fit in 40 bytes (bad_option), and a segment longer than 0xffff bytes
    /// (bad_length).
    std::error_code emit(mutable_bytes buffer, ipv4_address source, ipv4_address destination) const noexcept {
        return emit_as(buffer, source, destination, false);
    }
    /// As emit(), but the checksum is left for a NIC to finish (virtio-net NEEDS_CSUM, Linux's
    /// CHECKSUM_PARTIAL): the field holds the pseudo-header's folded sum, and the payload is not
    /// read. For a super-frame of up to 64 KiB this saves a pass over it that the kernel repeats
    /// for every segment anyway.
    std::error_code emit_partial(mutable_bytes buffer, ipv4_address source, ipv4_address destination) const noexcept {
        return emit_as(buffer, source, destination, true);
    }

    /// Equality of the header fields, the options and the payload length.
    bool operator==(const repr& other) const noexcept {
        return source_port == other.source_port && destination_port == other.destination_port &&
               seq_number == other.seq_number && ack_number == other.ack_number && flags == other.flags &&
               window == other.window && urgent_pointer == other.urgent_pointer && mss == other.mss &&
               window_scale == other.window_scale && sack_permitted == other.sack_permitted &&
               sack_count == other.sack_count && std::ranges::equal(sacks(), other.sacks()) &&
               timestamps == other.timestamps && payload_len == other.payload_len;
    }

private:
    std::error_code emit_as(mutable_bytes buffer, ipv4_address source, ipv4_address destination, bool partial) const noexcept {
        if (sack_count > max_sack_blocks) return errc::bad_option;
        const std::size_t opts_len = options_len();
        if (opts_len > max_options_len) return errc::bad_option;
        const std::size_t hl = header_len + opts_len;
        if (payload_len > max_segment_len - hl) return errc::bad_length;
        const std::size_t total = hl + payload_len;
        if (buffer.size() < total) return errc::buffer_too_small;

        packet<mutable_bytes> segment{buffer.first(total)};
        segment.set_source_port(source_port);
        segment.set_destination_port(destination_port);
        segment.set_seq_number(seq_number);
        segment.set_ack_number(ack_number);
        store_be16(buffer, field::offset_and_flags, static_cast<std::uint16_t>(((hl / 4) << 12) | flags.bits()));
        segment.set_window(window);
        segment.set_urgent_pointer(urgent_pointer);
        write_options(buffer.subspan(header_len, opts_len), opts_len == aligned_options_len());
        if (partial) {
            segment.set_checksum(
                checksum::ipv4_pseudo_header(source, destination, protocol_number, static_cast<std::uint16_t>(total)).sum());
        } else {
            segment.fill_checksum(source, destination);
        }
        return {};
    }

    static constexpr std::size_t round4(std::size_t n) noexcept { return (n + 3) & ~std::size_t{3}; }
    std::size_t sack_len() const noexcept { return sack_count == 0 ? 0 : 2 + 8 * std::size_t{sack_count}; }

    // Linux's layout (tcp_options_write): every option starts on a 32-bit boundary.
    std::size_t aligned_options_len() const noexcept {
        std::size_t n = 0;
        if (mss) n += 4;
        if (timestamps) n += 12;          // SACK-permitted (or NOP NOP) + timestamps
        else if (sack_permitted) n += 4;  // NOP NOP SACK-permitted
        if (window_scale) n += 4;         // NOP window scale
        if (sack_count) n += 2 + sack_len(); // NOP NOP SACK
        return n;
    }
    std::size_t packed_options_len() const noexcept {
        return (mss ? 4u : 0u) + (sack_permitted ? 2u : 0u) + (timestamps ? 10u : 0u) +
               (window_scale ? 3u : 0u) + sack_len();
    }

    void write_options(mutable_bytes out, bool aligned) const noexcept {
        std::size_t at = 0;
        const auto put8 = [&](std::uint8_t v) noexcept { store_u8(out, at, v); at += 1; };
        const auto nops = [&](std::size_t count) noexcept {
            if (!aligned) return;
            for (std::size_t i = 0; i < count; ++i) put8(option_kind::nop);
        };
        if (mss) {
            put8(option_kind::mss);
            put8(4);
            store_be16(out, at, *mss);
            at += 2;
        }
        if (sack_permitted) {
            if (!timestamps) nops(2);
            put8(option_kind::sack_permitted);
            put8(2);
        } else if (timestamps) {
            nops(2);
        }
        if (timestamps) {
            put8(option_kind::timestamps);
            put8(10);
            store_be32(out, at, timestamps->value);
            store_be32(out, at + 4, timestamps->echo_reply);
            at += 8;
        }
        if (window_scale) {
            nops(1);
            put8(option_kind::window_scale);
            put8(3);
            put8(*window_scale);
        }
        if (sack_count) {
            nops(2);
            put8(option_kind::sack);
            put8(static_cast<std::uint8_t>(sack_len()));
            for (const auto& block : sacks()) {
                store_be32(out, at, block.left);
                store_be32(out, at + 4, block.right);
                at += 8;
            }
        }
        while (at < out.size()) put8(option_kind::end_of_list); // only in the packed layout
    }
};

} // namespace ankanet::wire::tcp
