/// @file
/// ankanet::wire::dns — DNS messages (RFC 1035), as much as a forwarder and a small local responder
/// need: header view and in-place edits, compressed names, sections, and building simple replies.
///
/// Theory of operation.
///  * A message is the UDP payload, or a TCP payload after its 2-byte length prefix (see `tcp::`).
///    `packet<Bytes>` views the 12-byte header; after check_len() its accessors cannot read outside
///    the buffer, and on a writable view the forwarder rewrites IDs and flags in place.
///  * Names are read by one walker that every other name operation goes through. Everything it
///    follows comes from the packet, so it trusts nothing:
///      - a compression pointer must land strictly before the start of the stretch of labels it was
///        reached from (the name's own start, or the previous pointer's target) and after the
///        header. Targets therefore strictly decrease, so a loop is impossible by construction: a
///        self-pointer, a two-pointer cycle, a forward pointer and a pointer past the end are all the
///        same refusal (errc::bad_pointer). Real compressors only ever point at an earlier copy of a
///        suffix, which satisfies this rule;
///      - at most max_pointer_hops pointers per name (a legal name has at most 127 labels; longer
///        chains of pointer-to-pointer are refused), so the work per name is bounded;
///      - the uncompressed name, length octets and root included, is at most 255 bytes
///        (errc::bad_length); labels are at most 63 bytes because label types 0b01 (the withdrawn
///        EDNS extended label) and 0b10 (reserved) are refused (errc::bad_field);
///      - running out of bytes anywhere is errc::truncated.
///  * Sections: read_question / read_record advance a cursor and check each fixed part and RDLENGTH
///    against the buffer before anything is read. message::parse walks all four sections once, so
///    counts that promise more than the bytes hold are errc::truncated; afterwards its ranges
///    iterate entries that are known good. Bytes after the last record are ignored (message::size()
///    says where the message ends). A forwarder relaying a truncated (TC) reply whose counts lie can
///    still match it with the header and first_question(), which reads the question section only.
///  * Names are views (`name_view`, into the message) or values (`name`: the uncompressed wire form
///    in a fixed 255-byte array). Text is dotted, without the final dot, with '.', '\' and bytes
///    outside '!'..'~' escaped as `\.` `\\` `\DDD` so it parses back to the same name. Comparison the DNS
///    way (ASCII case-insensitive, RFC 4343) is iequals()/matches(); operator== is byte-exact.
///  * `repr` covers the messages ankanet writes itself: one question, A answers (at most
///    max_answers, owner written as a pointer to the question name), an optional EDNS OPT record
///    without options, and any header flags/rcode — a query, an answer, or NXDOMAIN / SERVFAIL /
///    REFUSED echoing the question. repr::parse accepts exactly that shape and says
///    errc::unsupported for anything else, which the general views still read.
///  * Limits: views (name_view, question_view, record_view, message) refer to the caller's bytes,
///    which must outlive them unchanged. A repr may be longer than 512 bytes (16 answers and a long
///    name); keeping a UDP reply within the client's size, or setting TC, is the caller's choice.
///  * No allocation, no exceptions: errors are std::error_code (ankanet::errc).
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <span>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace ankanet::wire::dns {

/// header length
inline constexpr std::size_t header_len = 12;
/// The longest name in wire form, length octets and the root label included (RFC 1035 §2.3.4).
inline constexpr std::size_t max_name_len = 255;
/// max label length
inline constexpr std::size_t max_label_len = 63;
/// Most labels a name of max_name_len can have; also the most pointers a name may follow.
inline constexpr std::size_t max_pointer_hops = 127;
/// The longest text form of a name: four labels of 63+63+63+61 bytes, every byte written as
/// `\DDD`, and three dots (a longer name text cannot fit in 255 wire bytes).
inline constexpr std::size_t max_name_text_len = 4 * 250 + 3;
/// The classic UDP limit without EDNS (RFC 1035 §4.2.1).
inline constexpr std::size_t max_udp_len = 512;
/// Fixed part of a question after its name: QTYPE, QCLASS.
inline constexpr std::size_t question_fixed_len = 4;
/// Fixed part of a resource record after its name: TYPE, CLASS, TTL, RDLENGTH.
inline constexpr std::size_t record_fixed_len = 10;
/// A compression pointer to offset 12: the first question's name, right after the header.
inline constexpr std::uint16_t question_name_pointer = static_cast<std::uint16_t>(0xc000 | header_len);

namespace type {
/// A resource record TYPE (RFC 1035 and later).
/// @{
inline constexpr std::uint16_t a = 1;
inline constexpr std::uint16_t ns = 2;
inline constexpr std::uint16_t cname = 5;
inline constexpr std::uint16_t soa = 6;
inline constexpr std::uint16_t ptr = 12;
inline constexpr std::uint16_t mx = 15;
inline constexpr std::uint16_t txt = 16;
inline constexpr std::uint16_t aaaa = 28;
inline constexpr std::uint16_t srv = 33;
inline constexpr std::uint16_t opt = 41; ///< EDNS pseudo-record (RFC 6891)
inline constexpr std::uint16_t any = 255;
/// @}
} // namespace type

namespace rr_class {
/// A resource record CLASS (RFC 1035).
/// @{
inline constexpr std::uint16_t in = 1;
inline constexpr std::uint16_t chaos = 3;
inline constexpr std::uint16_t any = 255;
/// @}
} // namespace rr_class

namespace opcode {
/// A header OPCODE (RFC 1035, RFC 2136).
/// @{
inline constexpr std::uint8_t query = 0;
inline constexpr std::uint8_t status = 2;
inline constexpr std::uint8_t notify = 4;
inline constexpr std::uint8_t update = 5;
/// @}
} // namespace opcode

namespace rcode {
/// A header RCODE (RFC 1035, RFC 2136).
/// @{
inline constexpr std::uint8_t no_error = 0;
inline constexpr std::uint8_t format_error = 1;   ///< FORMERR
inline constexpr std::uint8_t server_failure = 2; ///< SERVFAIL
inline constexpr std::uint8_t name_error = 3;     ///< NXDOMAIN
inline constexpr std::uint8_t not_implemented = 4;
inline constexpr std::uint8_t refused = 5;
inline constexpr std::uint8_t servfail = server_failure;
inline constexpr std::uint8_t nxdomain = name_error;
/// @}
} // namespace rcode

/// Bits of the 16-bit flags word (header bytes 2-3).
namespace flag {
/// A bit of the 16-bit flags word (header bytes 2-3).
/// @{
inline constexpr std::uint16_t qr = 0x8000; ///< a response
inline constexpr std::uint16_t aa = 0x0400; ///< authoritative answer
inline constexpr std::uint16_t tc = 0x0200; ///< truncated: retry over TCP
inline constexpr std::uint16_t rd = 0x0100; ///< recursion desired
inline constexpr std::uint16_t ra = 0x0080; ///< recursion available
inline constexpr std::uint16_t z = 0x0040;  ///< reserved, zero
inline constexpr std::uint16_t ad = 0x0020; ///< authentic data (RFC 4035)
inline constexpr std::uint16_t cd = 0x0010; ///< checking disabled (RFC 4035)
inline constexpr std::uint16_t opcode_mask = 0x7800;
inline constexpr std::uint16_t rcode_mask = 0x000f;
inline constexpr unsigned opcode_shift = 11;
/// @}
} // namespace flag

/// EDNS option codes (IANA "DNS EDNS0 Option Codes").
namespace edns_code {
/// An EDNS option code (IANA "DNS EDNS0 Option Codes").
/// @{
inline constexpr std::uint16_t nsid = 3;
inline constexpr std::uint16_t client_subnet = 8;
inline constexpr std::uint16_t cookie = 10;
inline constexpr std::uint16_t tcp_keepalive = 11;
inline constexpr std::uint16_t padding = 12;
/// @}
} // namespace edns_code

/// The DO ("DNSSEC OK") bit of the EDNS flags.
inline constexpr std::uint16_t edns_dnssec_ok = 0x8000;

namespace field {
/// Byte offset of a field from the start of the DNS header.
/// @{
inline constexpr std::size_t id = 0;
inline constexpr std::size_t flags = 2;
inline constexpr std::size_t qdcount = 4;
inline constexpr std::size_t ancount = 6;
inline constexpr std::size_t nscount = 8;
inline constexpr std::size_t arcount = 10;
/// @}
} // namespace field

// --- header --------------------------------------------------------------------------------------

/// A view of a DNS message's header (and the bytes after it).
template <byte_buffer Bytes>
class packet {
public:
    /// Views `buffer` without checking it; check_len() (or checked()) validates it before the accessors are used.
    explicit packet(Bytes buffer) noexcept : buffer_(buffer) {}

    /// Wraps and validates `buffer`.
    static result<packet> checked(Bytes buffer) noexcept {
        packet message{buffer};
        if (auto ec = message.check_len()) return ec;
        return message;
    }

    /// The 12-byte header fits in the buffer.
    std::error_code check_len() const noexcept {
        if (buffer_.size() < header_len) return errc::truncated;
        return {};
    }

    /// The ID.
    std::uint16_t id() const noexcept { return load_be16(buffer_, field::id); }
    /// The flags.
    std::uint16_t flags() const noexcept { return load_be16(buffer_, field::flags); }
    /// Whether it has flags.
    bool has_flags(std::uint16_t mask) const noexcept { return (flags() & mask) == mask; }
    /// Whether QR.
    bool qr() const noexcept { return has_flags(flag::qr); }
    /// Whether it is response.
    bool is_response() const noexcept { return qr(); }
    /// The opcode.
    std::uint8_t opcode() const noexcept {
        return static_cast<std::uint8_t>((flags() & flag::opcode_mask) >> flag::opcode_shift);
    }
    /// Whether AA.
    bool aa() const noexcept { return has_flags(flag::aa); }
    /// Whether TC.
    bool tc() const noexcept { return has_flags(flag::tc); }
    /// The sender cut the message short; a client retries over TCP.
    bool is_truncated() const noexcept { return tc(); }
    /// Whether RD.
    bool rd() const noexcept { return has_flags(flag::rd); }
    /// Whether RA.
    bool ra() const noexcept { return has_flags(flag::ra); }
    /// Whether AD.
    bool ad() const noexcept { return has_flags(flag::ad); }
    /// Whether CD.
    bool cd() const noexcept { return has_flags(flag::cd); }
    /// The header's 4-bit RCODE (EDNS extends it with 8 more bits in the OPT record).
    std::uint8_t rcode() const noexcept { return static_cast<std::uint8_t>(flags() & flag::rcode_mask); }
    /// The qdcount.
    std::uint16_t qdcount() const noexcept { return load_be16(buffer_, field::qdcount); }
    /// The ancount.
    std::uint16_t ancount() const noexcept { return load_be16(buffer_, field::ancount); }
    /// The nscount.
    std::uint16_t nscount() const noexcept { return load_be16(buffer_, field::nscount); }
    /// The arcount.
    std::uint16_t arcount() const noexcept { return load_be16(buffer_, field::arcount); }

    /// The buffer.
    Bytes buffer() const noexcept { return buffer_; }

    /// Writes the ID field.
    void set_id(std::uint16_t id) noexcept requires writable_byte_buffer<Bytes> { store_be16(buffer_, field::id, id); }
    /// Writes the flags field.
    void set_flags(std::uint16_t flags) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::flags, flags);
    }
    /// Sets (or clears, with `on == false`) every bit of `mask`, leaving the others.
    void set_flag(std::uint16_t mask, bool on = true) noexcept requires writable_byte_buffer<Bytes> {
        const auto old = flags();
        set_flags(static_cast<std::uint16_t>(on ? (old | mask) : (old & ~mask)));
    }
    /// Clears the flag bits in `mask`.
    void clear_flag(std::uint16_t mask) noexcept requires writable_byte_buffer<Bytes> { set_flag(mask, false); }
    /// Writes the opcode field.
    void set_opcode(std::uint8_t value) noexcept requires writable_byte_buffer<Bytes> {
        set_flags(static_cast<std::uint16_t>((flags() & ~flag::opcode_mask) |
                                             ((value << flag::opcode_shift) & flag::opcode_mask)));
    }
    /// Writes the RCODE field.
    void set_rcode(std::uint8_t value) noexcept requires writable_byte_buffer<Bytes> {
        set_flags(static_cast<std::uint16_t>((flags() & ~flag::rcode_mask) | (value & flag::rcode_mask)));
    }
    /// Writes the qdcount field.
    void set_qdcount(std::uint16_t n) noexcept requires writable_byte_buffer<Bytes> { store_be16(buffer_, field::qdcount, n); }
    /// Writes the ancount field.
    void set_ancount(std::uint16_t n) noexcept requires writable_byte_buffer<Bytes> { store_be16(buffer_, field::ancount, n); }
    /// Writes the nscount field.
    void set_nscount(std::uint16_t n) noexcept requires writable_byte_buffer<Bytes> { store_be16(buffer_, field::nscount, n); }
    /// Writes the arcount field.
    void set_arcount(std::uint16_t n) noexcept requires writable_byte_buffer<Bytes> { store_be16(buffer_, field::arcount, n); }

private:
    Bytes buffer_;
};

/// The flags of a reply to a query whose flags were `query_flags`: QR set, OPCODE, RD and CD
/// copied (RFC 1035 §4.1.1, RFC 4035 §3.2.2), RA set, AA when `authoritative`, and `code`.
constexpr std::uint16_t response_flags(std::uint16_t query_flags, std::uint8_t code, bool authoritative = false) noexcept {
    return static_cast<std::uint16_t>(flag::qr | (query_flags & (flag::opcode_mask | flag::rd | flag::cd)) | flag::ra |
                                      (authoritative ? flag::aa : 0u) | (code & flag::rcode_mask));
}

// --- names ---------------------------------------------------------------------------------------

namespace detail {

constexpr std::uint8_t ascii_lower(std::uint8_t c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<std::uint8_t>(c + ('a' - 'A')) : c;
}

/// Case-insensitive equality of two stretches of wire-form name. Length octets are at most 63,
/// below 'A', so folding them is harmless and whole wire forms can be compared in one loop.
inline bool iequal_bytes(const_bytes a, const_bytes b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (ascii_lower(load_u8(a, i)) != ascii_lower(load_u8(b, i))) return false;
    }
    return true;
}

/// What walking a name found.
struct name_walk {
    std::size_t end = 0;      ///< offset just past the name where it was read (past its first pointer)
    std::size_t wire_len = 0; ///< uncompressed length, root included
    std::size_t labels = 0;   ///< labels, root not counted
};

/// Walks the (possibly compressed) name at `offset` in `message`, calling `on_label(label)` for
/// each label in order, and refusing everything listed in the theory of operation.
template <class OnLabel>
result<name_walk> walk_name(const_bytes message, std::size_t offset, OnLabel&& on_label) noexcept {
    std::size_t pos = offset;
    std::size_t limit = offset; // a pointer must land strictly before this
    std::size_t hops = 0;
    std::optional<std::size_t> end; // set at the first pointer: the name ends there in the record
    name_walk walk;
    for (;;) {
        if (pos >= message.size()) return errc::truncated;
        const std::uint8_t octet = load_u8(message, pos);
        switch (octet & 0xc0) {
        case 0x00: {
            walk.wire_len += std::size_t{octet} + 1;
            if (walk.wire_len > max_name_len) return errc::bad_length;
            if (octet == 0) {
                walk.end = end ? *end : pos + 1;
                return walk;
            }
            if (message.size() - pos - 1 < octet) return errc::truncated;
            on_label(message.subspan(pos + 1, octet));
            ++walk.labels;
            pos += std::size_t{octet} + 1;
            break;
        }
        case 0xc0: {
            if (message.size() - pos < 2) return errc::truncated;
            const std::size_t target = load_be16(message, pos) & 0x3fffu;
            if (target >= limit || target < header_len) return errc::bad_pointer;
            if (++hops > max_pointer_hops) return errc::bad_pointer;
            if (!end) end = pos + 2;
            pos = limit = target;
            break;
        }
        default:
            return errc::bad_field; // 0b01: extended label (RFC 6891 §5), 0b10: reserved
        }
    }
}

} // namespace detail

/// The fixed-capacity text of a name (see name::text()).
struct name_text {
    std::array<char, max_name_text_len> chars{}; ///< chars

    /// size
    std::size_t size = 0;
    /// The text.
    std::string_view view() const noexcept { return {chars.data(), size}; }
};

/// A domain name held by value in uncompressed wire form (at most 255 bytes, no allocation).
class name {
public:
    /// The root name.
    constexpr name() noexcept = default;

    /// Parses dotted text: "www.example.test" (a final dot is allowed), "." or "" for the root.
    /// '\' escapes the next character, or gives a byte as three decimal digits (`\DDD`).
    /// Empty labels and bad escapes are errc::bad_field; a label over 63 bytes or a name over 255
    /// is errc::bad_length.
    static result<name> from_text(std::string_view text) noexcept {
        name out;
        if (text == "." || text.empty()) return out;
        out.size_ = 0;
        std::array<std::uint8_t, max_label_len> label{};
        std::size_t label_len = 0;
        std::size_t i = 0;
        bool label_pending = true; // text not yet closed by a final dot
        while (i < text.size()) {
            const char c = text[i++];
            if (c == '.') {
                if (label_len == 0) return errc::bad_field;
                if (auto ec = out.append_label(std::span{label.data(), label_len})) return ec;
                label_len = 0;
                label_pending = i < text.size();
                continue;
            }
            std::uint8_t byte = static_cast<std::uint8_t>(c);
            if (c == '\\') {
                if (i >= text.size()) return errc::bad_field;
                if (text[i] >= '0' && text[i] <= '9') {
                    if (text.size() - i < 3) return errc::bad_field;
                    unsigned value = 0;
                    for (int d = 0; d < 3; ++d) {
                        const char digit = text[i++];
                        if (digit < '0' || digit > '9') return errc::bad_field;
                        value = value * 10 + static_cast<unsigned>(digit - '0');
                    }
                    if (value > 255) return errc::bad_field;
                    byte = static_cast<std::uint8_t>(value);
                } else {
                    byte = static_cast<std::uint8_t>(text[i++]);
                }
            }
            if (label_len == max_label_len) return errc::bad_length;
            label[label_len++] = byte;
        }
        if (label_pending) {
            if (label_len == 0) return errc::bad_field;
            if (auto ec = out.append_label(std::span{label.data(), label_len})) return ec;
        }
        if (out.size_ + 1 > max_name_len) return errc::bad_length;
        out.wire_[out.size_++] = 0;
        return out;
    }

    /// The uncompressed wire form, ending with the root label.
    const_bytes wire() const noexcept { return std::as_bytes(std::span{wire_.data(), size_}); }
    /// Bytes of the wire form (1 for the root).
    std::size_t wire_length() const noexcept { return size_; }
    /// Whether it is root.
    bool is_root() const noexcept { return size_ == 1; }
    /// The label count.
    std::size_t label_count() const noexcept {
        std::size_t count = 0;
        for (std::size_t pos = 0; wire_[pos] != 0; pos += std::size_t{wire_[pos]} + 1) ++count;
        return count;
    }

    /// DNS name equality: ASCII case-insensitive (RFC 4343).
    bool iequals(const name& other) const noexcept { return detail::iequal_bytes(wire(), other.wire()); }
    /// Equal, case-insensitively, to the name `text` spells (false when `text` does not parse).
    bool matches(std::string_view text) const noexcept {
        const auto other = from_text(text);
        return other && iequals(*other);
    }
    /// This name is `zone` or a name below it, case-insensitively ("a.example.test" is in
    /// "example.test"; "badexample.test" is not).
    bool is_subdomain_of(const name& zone) const noexcept {
        for (std::size_t pos = 0; pos < size_; pos += std::size_t{wire_[pos]} + 1) {
            if (size_ - pos == zone.size_) return detail::iequal_bytes(wire().subspan(pos), zone.wire());
            if (size_ - pos < zone.size_) return false;
        }
        return false;
    }

    /// Writes the text form (see the theory of operation) into `out`; returns its length.
    result<std::size_t> to_text(std::span<char> out) const noexcept {
        std::size_t n = 0;
        const auto put = [&](char c) noexcept {
            if (n >= out.size()) return false;
            out[n++] = c;
            return true;
        };
        if (is_root()) {
            if (!put('.')) return errc::buffer_too_small;
            return n;
        }
        for (std::size_t pos = 0; wire_[pos] != 0; pos += std::size_t{wire_[pos]} + 1) {
            if (pos != 0 && !put('.')) return errc::buffer_too_small;
            for (std::size_t i = 1; i <= wire_[pos]; ++i) {
                const std::uint8_t b = wire_[pos + i];
                bool ok = true;
                if (b == '.' || b == '\\') {
                    ok = put('\\') && put(static_cast<char>(b));
                } else if (b < '!' || b > '~') {
                    ok = put('\\') && put(static_cast<char>('0' + b / 100)) && put(static_cast<char>('0' + b / 10 % 10)) &&
                         put(static_cast<char>('0' + b % 10));
                } else {
                    ok = put(static_cast<char>(b));
                }
                if (!ok) return errc::buffer_too_small;
            }
        }
        return n;
    }
    /// The text form in a fixed buffer that always fits.
    name_text text() const noexcept {
        name_text out;
        out.size = to_text(out.chars).value(); // cannot fail: max_name_text_len is the worst case
        return out;
    }

    /// Byte-exact equality (what was written is what is read back); see iequals() for DNS equality.
    friend bool operator==(const name& a, const name& b) noexcept {
        return a.size_ == b.size_ && std::equal(a.wire_.begin(), a.wire_.begin() + static_cast<std::ptrdiff_t>(a.size_), b.wire_.begin());
    }

private:
    friend class name_view;

    /// Appends one label (1..63 bytes) before the root; the root is added by the caller.
    std::error_code append_label(std::span<const std::uint8_t> label) noexcept {
        if (label.size() > max_label_len) return errc::bad_length;
        if (size_ + 1 + label.size() + 1 > max_name_len) return errc::bad_length; // + the root
        wire_[size_++] = static_cast<std::uint8_t>(label.size());
        for (auto b : label) wire_[size_++] = b;
        return {};
    }

    std::array<std::uint8_t, max_name_len> wire_{}; // zero past size_, so the root is {0}
    std::size_t size_ = 1;
};

/// A validated, possibly compressed name inside a message. Only the readers below create one,
/// after walking it, so its operations cannot fail. It refers to the message's bytes, which must
/// outlive it and stay unchanged.
class name_view {
public:
    /// Reads the name at `offset`; on success advances `offset` past it (past its first pointer).
    static result<name_view> read(const_bytes message, std::size_t& offset) noexcept {
        const auto walk = detail::walk_name(message, offset, [](const_bytes) noexcept {});
        if (!walk) return walk.error();
        name_view view{message, offset, walk->end - offset, walk->wire_len, walk->labels};
        offset = walk->end;
        return view;
    }

    /// The message.
    const_bytes message() const noexcept { return message_; }
    /// Where the name starts in the message.
    std::size_t offset() const noexcept { return offset_; }
    /// Bytes the name takes where it is written (a pointer counts 2).
    std::size_t encoded_length() const noexcept { return encoded_len_; }
    /// Bytes of the uncompressed wire form.
    std::size_t wire_length() const noexcept { return wire_len_; }
    /// The label count.
    std::size_t label_count() const noexcept { return labels_; }
    /// Whether it is root.
    bool is_root() const noexcept { return wire_len_ == 1; }

    /// Calls `f(label)` for each label in order (as `const_bytes`), following pointers.
    template <class F>
    void for_each_label(F&& f) const noexcept {
        (void)detail::walk_name(message_, offset_, f);
    }

    /// The name by value, uncompressed.
    name decode() const noexcept {
        name out;
        out.size_ = 0;
        for_each_label([&](const_bytes label) noexcept {
            out.wire_[out.size_++] = static_cast<std::uint8_t>(label.size());
            for (auto b : label) out.wire_[out.size_++] = static_cast<std::uint8_t>(b);
        });
        out.wire_[out.size_++] = 0;
        return out;
    }

    /// Whether the names are equal, ignoring ASCII case (RFC 4343).
    bool iequals(const name& other) const noexcept { return decode().iequals(other); }
    /// Whether the names are equal, ignoring ASCII case (RFC 4343).
    bool iequals(const name_view& other) const noexcept { return decode().iequals(other.decode()); }
    /// Whether the name equals dotted `text`, ignoring ASCII case.
    bool matches(std::string_view text) const noexcept { return decode().matches(text); }
    /// Whether the name is `zone` or below it, ignoring ASCII case.
    bool is_subdomain_of(const name& zone) const noexcept { return decode().is_subdomain_of(zone); }
    /// The text.
    name_text text() const noexcept { return decode().text(); }

private:
    name_view(const_bytes message, std::size_t offset, std::size_t encoded_len, std::size_t wire_len, std::size_t labels) noexcept
        : message_(message), offset_(offset), encoded_len_(encoded_len), wire_len_(wire_len), labels_(labels) {}

    const_bytes message_;
    std::size_t offset_;
    std::size_t encoded_len_;
    std::size_t wire_len_;
    std::size_t labels_;
};

// --- questions and resource records ----------------------------------------------------------------

/// One entry of the question section.
struct question_view {
    name_view qname; ///< qname
    std::uint16_t qtype = 0; ///< qtype
    std::uint16_t qclass = 0; ///< qclass

    /// Same question, the DNS way: name case-insensitively, type and class exactly.
    bool matches(const question_view& other) const noexcept {
        return qtype == other.qtype && qclass == other.qclass && qname.iequals(other.qname);
    }
};

/// One entry of the answer, authority or additional section.
struct record_view {
    name_view name; ///< name
    std::uint16_t type = 0; ///< type
    std::uint16_t rr_class = 0; ///< rr class
    std::uint32_t ttl = 0; ///< TTL
    const_bytes rdata;             ///< exactly RDLENGTH bytes, inside the message
    std::size_t offset = 0;        ///< where the record (its owner name) starts
    std::size_t rdata_offset = 0;  ///< where rdata starts in the message

    /// The address of an A record (errc::unsupported for another type, bad_length unless 4 bytes).
    result<ipv4_address> a() const noexcept {
        if (type != dns::type::a) return errc::unsupported;
        if (rdata.size() != ipv4_address::size) return errc::bad_length;
        return ipv4_address::from_bytes(rdata);
    }
    /// The 16 address bytes of an AAAA record.
    result<std::array<std::uint8_t, 16>> aaaa() const noexcept {
        if (type != dns::type::aaaa) return errc::unsupported;
        if (rdata.size() != 16) return errc::bad_length;
        std::array<std::uint8_t, 16> out{};
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = load_u8(rdata, i);
        return out;
    }
    /// The name a CNAME, NS or PTR record holds (it may point elsewhere in the message). It must
    /// fill RDATA exactly: errc::truncated when it runs past RDATA, errc::bad_length when it ends
    /// before RDATA does.
    result<name_view> rdata_name() const noexcept {
        if (type != dns::type::cname && type != dns::type::ns && type != dns::type::ptr) return errc::unsupported;
        // Read in the message up to the end of RDATA only: pointers go backwards so they still
        // resolve, and a name running out of RDATA is not completed from the next record's bytes.
        const auto bounded = name.message().first(rdata_offset + rdata.size());
        std::size_t at = rdata_offset;
        auto target = name_view::read(bounded, at);
        if (!target) return target.error();
        if (at != rdata_offset + rdata.size()) return errc::bad_length;
        return target;
    }

    // EDNS (type OPT, RFC 6891 §6.1.3): CLASS is the requester's UDP payload size and TTL packs the
    // upper 8 bits of the extended RCODE, the version and the flags.
    /// Whether it is opt.
    bool is_opt() const noexcept { return type == dns::type::opt; }
    /// The UDP payload size.
    std::uint16_t udp_payload_size() const noexcept { return rr_class; }
    /// The extended RCODE.
    std::uint8_t extended_rcode() const noexcept { return static_cast<std::uint8_t>(ttl >> 24); }
    /// The EDNS version.
    std::uint8_t edns_version() const noexcept { return static_cast<std::uint8_t>(ttl >> 16); }
    /// The EDNS flags.
    std::uint16_t edns_flags() const noexcept { return static_cast<std::uint16_t>(ttl); }
    /// Whether dnssec ok.
    bool dnssec_ok() const noexcept { return (edns_flags() & edns_dnssec_ok) != 0; }
};

/// Reads the question at `offset`; on success advances `offset` past it.
inline result<question_view> read_question(const_bytes message, std::size_t& offset) noexcept {
    std::size_t at = offset;
    auto qname = name_view::read(message, at);
    if (!qname) return qname.error();
    if (message.size() - at < question_fixed_len) return errc::truncated;
    question_view q{*qname, load_be16(message, at), load_be16(message, at + 2)};
    offset = at + question_fixed_len;
    return q;
}

/// Reads the resource record at `offset`; on success advances `offset` past its RDATA.
inline result<record_view> read_record(const_bytes message, std::size_t& offset) noexcept {
    std::size_t at = offset;
    auto owner = name_view::read(message, at);
    if (!owner) return owner.error();
    if (message.size() - at < record_fixed_len) return errc::truncated;
    const std::size_t rdlength = load_be16(message, at + 8);
    if (message.size() - at - record_fixed_len < rdlength) return errc::truncated;
    record_view rr{*owner,
                   load_be16(message, at),
                   load_be16(message, at + 2),
                   load_be32(message, at + 4),
                   message.subspan(at + record_fixed_len, rdlength),
                   offset,
                   at + record_fixed_len};
    offset = at + record_fixed_len + rdlength;
    return rr;
}

/// The first question of a message, reading nothing past it: what a forwarder needs to match a
/// reply to its query even when the reply is truncated (TC) and the rest does not hold together.
/// errc::unsupported when QDCOUNT is 0.
inline result<question_view> first_question(const_bytes message) noexcept {
    const packet<const_bytes> header{message};
    if (auto ec = header.check_len()) return ec;
    if (header.qdcount() == 0) return errc::unsupported;
    std::size_t offset = header_len;
    return read_question(message, offset);
}

/// One EDNS option from an OPT record's RDATA.
struct edns_option {
    std::uint16_t code = 0; ///< code
    const_bytes data; ///< data
};

/// Reads the option at `offset` in OPT `rdata`; on success advances `offset` past it.
/// errc::bad_option when the option's header or data runs past the RDATA.
inline result<edns_option> read_edns_option(const_bytes rdata, std::size_t& offset) noexcept {
    if (offset > rdata.size() || rdata.size() - offset < 4) return errc::bad_option;
    const std::size_t length = load_be16(rdata, offset + 2);
    if (rdata.size() - offset - 4 < length) return errc::bad_option;
    edns_option option{load_be16(rdata, offset), rdata.subspan(offset + 4, length)};
    offset += 4 + length;
    return option;
}

// --- a whole message --------------------------------------------------------------------------------

/// The entries of one section of a parsed message, iterated without further checks.
template <class Entry>
class section {
public:
    /// Walks the records of a section, parsing each as it goes.
    class iterator {
    public:
        // An input iterator: the entry it yields lives in the iterator.
        using iterator_category = std::input_iterator_tag; ///< the iterator category type
        using value_type = Entry; ///< the value type
        using difference_type = std::ptrdiff_t; ///< the difference type
        using reference = const Entry&; ///< the reference type
        using pointer = const Entry*; ///< the pointer type

        iterator() noexcept = default;
        /// The current record.
        const Entry& operator*() const noexcept { return *entry_; }
        /// The current record.
        const Entry* operator->() const noexcept { return &*entry_; }
        /// Moves to the next record.
        iterator& operator++() noexcept {
            --remaining_;
            load();
            return *this;
        }
        /// Moves to the next record.
        iterator operator++(int) noexcept {
            auto old = *this;
            ++*this;
            return old;
        }
        /// Iterators of one section are equal when as many entries remain.
        friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.remaining_ == b.remaining_; }

    private:
        friend class section;
        iterator(const_bytes message, std::size_t offset, std::size_t remaining) noexcept
            : message_(message), offset_(offset), remaining_(remaining) {
            load();
        }
        void load() noexcept {
            entry_.reset();
            if (remaining_ == 0) return;
            auto next = read(message_, offset_);
            if (next) {
                entry_ = *next;
            } else {
                remaining_ = 0; // only if the bytes changed after message::parse: end early, read nothing
            }
        }
        static result<Entry> read(const_bytes message, std::size_t& offset) noexcept {
            if constexpr (std::is_same_v<Entry, question_view>) {
                return read_question(message, offset);
            } else {
                return read_record(message, offset);
            }
        }

        const_bytes message_;
        std::size_t offset_ = 0;
        std::size_t remaining_ = 0;
        std::optional<Entry> entry_;
    };

    section() noexcept = default;
    /// The `count` records from `offset` in `message`.
    section(const_bytes message, std::size_t offset, std::size_t count) noexcept
        : message_(message), offset_(offset), count_(count) {}

    /// The first record.
    iterator begin() const noexcept { return iterator{message_, offset_, count_}; }
    /// The end of the section.
    iterator end() const noexcept { return iterator{}; }
    /// The length in bytes.
    std::size_t size() const noexcept { return count_; }
    /// Whether empty.
    bool empty() const noexcept { return count_ == 0; }
    /// Where the section starts in the message.
    std::size_t offset() const noexcept { return offset_; }

private:
    const_bytes message_;
    std::size_t offset_ = 0;
    std::size_t count_ = 0;
};

/// A message whose header and four sections have all been checked.
class message {
public:
    /// Walks every question and record the header's counts announce.
    static result<message> parse(const_bytes bytes) noexcept {
        const packet<const_bytes> header{bytes};
        if (auto ec = header.check_len()) return ec;
        message m;
        m.bytes_ = bytes;
        const std::array<std::size_t, 4> counts{header.qdcount(), header.ancount(), header.nscount(), header.arcount()};
        std::size_t offset = header_len;
        for (std::size_t s = 0; s < counts.size(); ++s) {
            m.offsets_[s] = offset;
            for (std::size_t i = 0; i < counts[s]; ++i) {
                const auto ec = s == 0 ? read_question(bytes, offset).error() : read_record(bytes, offset).error();
                if (ec) return ec;
            }
        }
        m.offsets_[4] = offset;
        return m;
    }

    /// The header.
    packet<const_bytes> header() const noexcept { return packet<const_bytes>{bytes_}; }
    /// The questions.
    section<question_view> questions() const noexcept { return {bytes_, offsets_[0], header().qdcount()}; }
    /// The answers.
    section<record_view> answers() const noexcept { return {bytes_, offsets_[1], header().ancount()}; }
    /// The authorities.
    section<record_view> authorities() const noexcept { return {bytes_, offsets_[2], header().nscount()}; }
    /// The additionals.
    section<record_view> additionals() const noexcept { return {bytes_, offsets_[3], header().arcount()}; }

    /// The first question.
    std::optional<question_view> first_question() const noexcept {
        const auto qs = questions();
        if (qs.empty()) return std::nullopt;
        return *qs.begin();
    }
    /// The OPT record: nullopt without one; errc::bad_field when there are several or it is not
    /// owned by the root (RFC 6891 §6.1.1 makes both a FORMERR).
    result<std::optional<record_view>> opt() const noexcept {
        std::optional<record_view> found;
        for (const auto& rr : additionals()) {
            if (!rr.is_opt()) continue;
            if (found || !rr.name.is_root()) return errc::bad_field;
            found = rr;
        }
        return found;
    }

    /// The whole buffer given to parse().
    const_bytes bytes() const noexcept { return bytes_; }
    /// Bytes the message takes: the end of its last record (anything after it is ignored).
    std::size_t size() const noexcept { return offsets_[4]; }

private:
    message() noexcept = default;
    const_bytes bytes_;
    std::array<std::size_t, 5> offsets_{}; // start of each section, then the end
};

// --- building messages ------------------------------------------------------------------------------

/// A question by value.
struct question {
    dns::name qname; ///< qname
    std::uint16_t qtype = type::a; ///< qtype
    std::uint16_t qclass = rr_class::in; ///< qclass

    /// The question `view` holds, with its name decoded.
    static question from(const question_view& view) noexcept { return {view.qname.decode(), view.qtype, view.qclass}; }
    /// The buffer length.
    std::size_t buffer_len() const noexcept { return qname.wire_length() + question_fixed_len; }
    /// Memberwise equality.
    bool operator==(const question&) const noexcept = default;
};

/// An OPT pseudo-record without options (RFC 6891).
struct edns {
    std::uint16_t udp_payload_size = 1232; ///< the DNS Flag Day 2020 default
    std::uint8_t extended_rcode = 0;       ///< upper 8 bits of the 12-bit RCODE
    std::uint8_t version = 0; ///< version
    std::uint16_t flags = 0; ///< DO is edns_dnssec_ok

    /// buffer length
    static constexpr std::size_t buffer_len = 11;
    /// Memberwise equality.
    bool operator==(const edns&) const noexcept = default;
};

/// An A record of a reply; its owner is the question name.
struct a_answer {
    ipv4_address address; ///< address

    /// TTL
    std::uint32_t ttl = 0;
    /// Memberwise equality.
    bool operator==(const a_answer&) const noexcept = default;
};

/// Most A records one repr holds.
inline constexpr std::size_t max_answers = 16;
/// Bytes of an A answer whose owner is a pointer: pointer, TYPE, CLASS, TTL, RDLENGTH, address.
inline constexpr std::size_t a_answer_len = 2 + record_fixed_len + ipv4_address::size;

/// A message ankanet writes: one question, up to max_answers A records, optionally EDNS.
struct repr {
    std::uint16_t id = 0; ///< ID
    std::uint16_t flags = 0; ///< the whole flags word: QR, OPCODE, AA, TC, RD, RA, Z, AD, CD, RCODE
    dns::question question; ///< question
    std::array<a_answer, max_answers> answers{}; ///< answers
    std::size_t answer_count = 0; ///< answer count
    std::optional<dns::edns> edns; ///< EDNS

    /// A query (recursion desired by default).
    static repr make_query(std::uint16_t id, const dns::question& q, std::uint16_t flags = flag::rd) noexcept {
        repr r;
        r.id = id;
        r.flags = flags;
        r.question = q;
        return r;
    }
    /// A reply echoing `q` with `code` (rcode::nxdomain, servfail, refused, or no_error before
    /// add_answer()); flags as response_flags().
    static repr make_response(std::uint16_t id, std::uint16_t query_flags, const dns::question& q, std::uint8_t code,
                              bool authoritative = false) noexcept {
        repr r;
        r.id = id;
        r.flags = response_flags(query_flags, code, authoritative);
        r.question = q;
        return r;
    }

    /// Adds an A record; errc::buffer_too_small when max_answers are already there.
    std::error_code add_answer(ipv4_address address, std::uint32_t ttl) noexcept {
        if (answer_count == max_answers) return errc::buffer_too_small;
        answers[answer_count++] = {address, ttl};
        return {};
    }
    /// The answers in use (answer_count, never more than the array holds).
    std::span<const a_answer> answer_span() const noexcept {
        return {answers.data(), std::min(answer_count, max_answers)};
    }

    /// Accepts exactly the shape above, else errc::unsupported: QDCOUNT 1; every answer an A
    /// record of class IN with 4 bytes owned by the question name (any case); no authority
    /// records; at most one additional record, an OPT owned by the root without options.
    static result<repr> parse(const message& m) noexcept {
        const auto header = m.header();
        if (header.qdcount() != 1 || header.nscount() != 0 || header.arcount() > 1) return errc::unsupported;
        if (header.ancount() > max_answers) return errc::unsupported;
        const auto q = m.first_question();
        if (!q) return errc::truncated; // only if the bytes changed after message::parse
        repr r;
        r.id = header.id();
        r.flags = header.flags();
        r.question = dns::question::from(*q);
        for (const auto& rr : m.answers()) {
            if (rr.type != type::a || rr.rr_class != rr_class::in || rr.rdata.size() != ipv4_address::size ||
                !rr.name.iequals(r.question.qname)) {
                return errc::unsupported;
            }
            r.answers[r.answer_count++] = {ipv4_address::from_bytes(rr.rdata), rr.ttl};
        }
        for (const auto& rr : m.additionals()) {
            if (!rr.is_opt() || !rr.name.is_root() || !rr.rdata.empty()) return errc::unsupported;
            r.edns = dns::edns{rr.udp_payload_size(), rr.extended_rcode(), rr.edns_version(), rr.edns_flags()};
        }
        return r;
    }
    /// Parses bytes.
    static result<repr> parse(const_bytes bytes) noexcept {
        const auto m = message::parse(bytes);
        if (!m) return m.error();
        return parse(*m);
    }

    /// The buffer length.
    std::size_t buffer_len() const noexcept {
        return header_len + question.buffer_len() + answer_count * a_answer_len + (edns ? dns::edns::buffer_len : 0);
    }

    /// Writes the message at the start of `buffer`: the question name uncompressed, answer owners
    /// as a pointer to it.
    std::error_code emit(mutable_bytes buffer) const noexcept {
        if (answer_count > max_answers) return errc::bad_field;
        if (buffer.size() < buffer_len()) return errc::buffer_too_small;
        store_be16(buffer, field::id, id);
        store_be16(buffer, field::flags, flags);
        store_be16(buffer, field::qdcount, 1);
        store_be16(buffer, field::ancount, static_cast<std::uint16_t>(answer_count));
        store_be16(buffer, field::nscount, 0);
        store_be16(buffer, field::arcount, static_cast<std::uint16_t>(edns ? 1 : 0));
        std::size_t at = header_len;
        store_bytes(buffer, at, question.qname.wire());
        at += question.qname.wire_length();
        store_be16(buffer, at, question.qtype);
        store_be16(buffer, at + 2, question.qclass);
        at += question_fixed_len;
        for (const auto& answer : answer_span()) {
            store_be16(buffer, at, question_name_pointer);
            store_be16(buffer, at + 2, type::a);
            store_be16(buffer, at + 4, rr_class::in);
            store_be32(buffer, at + 6, answer.ttl);
            store_be16(buffer, at + 10, static_cast<std::uint16_t>(ipv4_address::size));
            answer.address.store(buffer, at + 12);
            at += a_answer_len;
        }
        if (edns) {
            store_u8(buffer, at, 0); // root owner
            store_be16(buffer, at + 1, type::opt);
            store_be16(buffer, at + 3, edns->udp_payload_size);
            store_be32(buffer, at + 5,
                       (std::uint32_t{edns->extended_rcode} << 24) | (std::uint32_t{edns->version} << 16) | edns->flags);
            store_be16(buffer, at + 9, 0); // no options
        }
        return {};
    }

    /// Same as emit(), after the 2-byte length prefix of DNS over TCP (RFC 1035 §4.2.2).
    std::size_t tcp_buffer_len() const noexcept { return 2 + buffer_len(); }
    /// Writes the message with the 2-byte length prefix of DNS over TCP.
    std::error_code emit_tcp(mutable_bytes buffer) const noexcept {
        if (buffer.size() < tcp_buffer_len()) return errc::buffer_too_small;
        store_be16(buffer, 0, static_cast<std::uint16_t>(buffer_len())); // at most 12+259+256+11 bytes
        return emit(buffer.subspan(2));
    }

    friend bool operator==(const repr& a, const repr& b) noexcept {
        return a.id == b.id && a.flags == b.flags && a.question == b.question && a.answer_count == b.answer_count &&
               a.edns == b.edns && std::ranges::equal(a.answer_span(), b.answer_span());
    }
};

// --- DNS over TCP framing ----------------------------------------------------------------------------

namespace tcp {

inline constexpr std::size_t length_prefix_len = 2; ///< length prefix length

/// One message cut from a TCP byte stream.
struct frame {
    const_bytes message;       ///< the message, without its prefix
    std::size_t consumed = 0;  ///< prefix + message: how far to advance the stream
};

/// The first complete message at the start of `stream`. errc::truncated means "not all here
/// yet": keep the bytes and read more. errc::bad_length: the prefix announces fewer bytes than a
/// header, so the stream cannot be DNS.
inline result<frame> next_frame(const_bytes stream) noexcept {
    if (stream.size() < length_prefix_len) return errc::truncated;
    const std::size_t length = load_be16(stream, 0);
    if (length < header_len) return errc::bad_length;
    if (stream.size() - length_prefix_len < length) return errc::truncated;
    return frame{stream.subspan(length_prefix_len, length), length_prefix_len + length};
}

/// Writes the length prefix for a message of `message_len` bytes at the start of `out`.
inline std::error_code write_length(mutable_bytes out, std::size_t message_len) noexcept {
    if (message_len > 0xffff) return errc::bad_length;
    if (out.size() < length_prefix_len) return errc::buffer_too_small;
    store_be16(out, 0, static_cast<std::uint16_t>(message_len));
    return {};
}

} // namespace tcp

} // namespace ankanet::wire::dns
