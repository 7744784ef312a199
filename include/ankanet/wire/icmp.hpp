/// @file
/// ankanet::wire::icmp — ICMP for IPv4 (RFC 792): echo, destination unreachable, time exceeded,
/// parameter problem, and the original datagram an error message quotes.
///
/// Theory of operation. `packet<Bytes>` is a view over one ICMP message: the payload of an IPv4
/// datagram, exactly (take it from ipv4::packet::payload(), which already drops link padding). Its
/// only length requirement is the 8-byte header; the checksum covers the whole message.
///
/// Error messages (types 3, 4, 5, 11, 12) carry the start of the datagram that caused them:
/// its IPv4 header and at least 8 bytes of its payload (RFC 792; Linux quotes up to 576 bytes in
/// all, RFC 1812 4.3.2.3). quoted() returns that as a `quoted_datagram` view, validated like an
/// IPv4 header except for one thing: the quoted total_length describes the *original* datagram, so
/// it may exceed what was quoted. It must still be at least the quoted header length. When an
/// RFC 4884 "length" field (byte 5) is non-zero, the quote is that many 32-bit words and extension
/// objects after it are ignored. A NAT translating an error back to a guest finds the quoted
/// addresses, TCP/UDP ports and ICMP echo identifier here, and on a writable view rewrites them
/// with the quoted IPv4 and transport checksums patched incrementally (RFC 1624); the outer ICMP
/// checksum is then refilled with fill_checksum().
///
/// `repr` is a std::variant of the message kinds ankanet handles, so a field that a kind does not
/// have cannot be read. Echo data and error quotes are spans into the parsed buffer (no copy);
/// emit copies them, and tolerates their overlapping the output (an error built in place). Other
/// types parse as errc::unsupported, while the view still reads their type, code and checksum.
/// parse refuses a bad checksum (bad_checksum), an echo with a non-zero code (bad_field: the repr
/// could not carry it), and an error whose quote does not hold an IPv4 header.
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/checksum.hpp>
#include <ankanet/wire/ipv4.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <system_error>
#include <variant>

namespace ankanet::wire::icmp {

/// header length
inline constexpr std::size_t header_len = 8;
/// RFC 792: an error quotes the original header and at least the first 64 bits of its data.
inline constexpr std::size_t min_quoted_payload = 8;
/// The most an error should quote so that the whole error datagram fits in 576 bytes (RFC 1812).
inline constexpr std::size_t max_quote_len = 576 - ipv4::header_len - header_len;

/// ICMP types (RFC 792, RFC 1256).
namespace type {
/// An ICMP type (RFC 792, RFC 1256).
/// @{
inline constexpr std::uint8_t echo_reply = 0;
inline constexpr std::uint8_t destination_unreachable = 3;
inline constexpr std::uint8_t source_quench = 4;
inline constexpr std::uint8_t redirect = 5;
inline constexpr std::uint8_t echo_request = 8;
inline constexpr std::uint8_t router_advertisement = 9;
inline constexpr std::uint8_t router_solicitation = 10;
inline constexpr std::uint8_t time_exceeded = 11;
inline constexpr std::uint8_t parameter_problem = 12;
inline constexpr std::uint8_t timestamp = 13;
inline constexpr std::uint8_t timestamp_reply = 14;
/// @}
} // namespace type

/// Destination unreachable codes (RFC 792, RFC 1122 3.2.2.1, RFC 1812 5.2.7.1).
namespace unreachable_code {
/// A destination unreachable code (RFC 792, RFC 1122 3.2.2.1, RFC 1812 5.2.7.1).
/// @{
inline constexpr std::uint8_t net = 0;
inline constexpr std::uint8_t host = 1;
inline constexpr std::uint8_t protocol = 2;
inline constexpr std::uint8_t port = 3;
inline constexpr std::uint8_t fragmentation_needed = 4; ///< DF set; bytes 6-7 carry the next-hop MTU (RFC 1191)
inline constexpr std::uint8_t source_route_failed = 5;
inline constexpr std::uint8_t net_unknown = 6;
inline constexpr std::uint8_t host_unknown = 7;
inline constexpr std::uint8_t source_host_isolated = 8;
inline constexpr std::uint8_t net_prohibited = 9;
inline constexpr std::uint8_t host_prohibited = 10;
inline constexpr std::uint8_t net_unreachable_for_tos = 11;
inline constexpr std::uint8_t host_unreachable_for_tos = 12;
inline constexpr std::uint8_t communication_prohibited = 13;
inline constexpr std::uint8_t host_precedence_violation = 14;
inline constexpr std::uint8_t precedence_cutoff = 15;
/// @}
} // namespace unreachable_code

namespace time_exceeded_code {
inline constexpr std::uint8_t ttl = 0;        ///< TTL reached zero in transit
inline constexpr std::uint8_t reassembly = 1; ///< fragment reassembly time ran out
} // namespace time_exceeded_code

namespace parameter_problem_code {
inline constexpr std::uint8_t pointer = 0;        ///< the pointer field names the bad octet
inline constexpr std::uint8_t missing_option = 1; ///< RFC 1108
inline constexpr std::uint8_t bad_length = 2;     ///< RFC 1812
} // namespace parameter_problem_code

namespace field {
/// Byte offset of a field from the start of the ICMP header.
/// @{
inline constexpr std::size_t type = 0;
inline constexpr std::size_t code = 1;
inline constexpr std::size_t checksum = 2;
inline constexpr std::size_t identifier = 4;      ///< echo
inline constexpr std::size_t sequence = 6;        ///< echo
inline constexpr std::size_t pointer = 4;         ///< parameter problem
inline constexpr std::size_t gateway = 4;         ///< redirect
inline constexpr std::size_t original_length = 5; ///< RFC 4884, in 32-bit words; types 3, 11, 12
inline constexpr std::size_t next_hop_mtu = 6;    ///< destination unreachable, code 4
inline constexpr std::size_t data = 8;
/// @}
} // namespace field

/// Whether messages of `message_type` are errors that quote the offending datagram.
constexpr bool is_error_type(std::uint8_t message_type) noexcept {
    return message_type == type::destination_unreachable || message_type == type::source_quench ||
           message_type == type::redirect || message_type == type::time_exceeded ||
           message_type == type::parameter_problem;
}

/// Source and destination port of a quoted TCP or UDP header.
struct transport_ports {
    std::uint16_t source = 0; ///< source

    /// destination
    std::uint16_t destination = 0;
    /// Memberwise equality.
    bool operator==(const transport_ports&) const noexcept = default;
};

/// The start of the datagram an ICMP error quotes: an IPv4 header and the first bytes of its payload.
///
/// Validated by check_len(): at least 20 bytes, version 4, IHL >= 5 with the header inside the
/// quote, and total_length >= the header length. total_length may exceed the quote. After
/// check_len() no accessor reads outside the quote.
template <byte_buffer Bytes>
class quoted_datagram {
public:
    /// Views `bytes` without checking them; checked() validates.
    explicit quoted_datagram(Bytes bytes) noexcept : bytes_(bytes) {}

    /// Parses bytes.
    static result<quoted_datagram> checked(Bytes bytes) noexcept {
        quoted_datagram quote{bytes};
        if (auto ec = quote.check_len()) return ec;
        return quote;
    }

    /// Checks the quoted IPv4 header as the theory of operation says; an errc when it does not hold.
    std::error_code check_len() const noexcept {
        if (bytes_.size() < ipv4::header_len) return errc::truncated;
        if (version() != 4) return errc::bad_version;
        if (header_length() < ipv4::header_len) return errc::bad_header_length;
        if (header_length() > bytes_.size()) return errc::truncated;
        if (total_length() < header_length()) return errc::bad_length;
        return {};
    }

    /// The version.
    std::uint8_t version() const noexcept { return static_cast<std::uint8_t>(load_u8(bytes_, ipv4::field::version_ihl) >> 4); }
    /// The header length.
    std::size_t header_length() const noexcept { return std::size_t{load_u8(bytes_, ipv4::field::version_ihl) & 0x0fu} * 4; }
    /// The original datagram's length, which the quote may fall short of.
    std::uint16_t total_length() const noexcept { return load_be16(bytes_, ipv4::field::total_length); }
    /// The identification.
    std::uint16_t identification() const noexcept { return load_be16(bytes_, ipv4::field::identification); }
    /// Whether dont fragment.
    bool dont_fragment() const noexcept { return (flags_fragment() & ipv4::flag::dont_fragment) != 0; }
    /// Whether more fragments.
    bool more_fragments() const noexcept { return (flags_fragment() & ipv4::flag::more_fragments) != 0; }
    /// The fragment offset.
    std::uint16_t fragment_offset() const noexcept {
        return static_cast<std::uint16_t>((flags_fragment() & ipv4::flag::offset_mask) * 8u);
    }
    /// The TTL.
    std::uint8_t ttl() const noexcept { return load_u8(bytes_, ipv4::field::ttl); }
    /// The protocol.
    std::uint8_t protocol() const noexcept { return load_u8(bytes_, ipv4::field::protocol); }
    /// The checksum.
    std::uint16_t checksum() const noexcept { return load_be16(bytes_, ipv4::field::checksum); }
    /// The source.
    ipv4_address source() const noexcept { return ipv4_address{load_be32(bytes_, ipv4::field::source)}; }
    /// The destination.
    ipv4_address destination() const noexcept { return ipv4_address{load_be32(bytes_, ipv4::field::destination)}; }

    /// The whole original datagram is present (the quote reaches its total_length).
    bool is_complete() const noexcept { return total_length() <= bytes_.size(); }
    /// The quoted IPv4 header, options included.
    Bytes header() const noexcept { return bytes_.first(header_length()); }
    /// The quoted part of the original payload: up to the end of the quote or total_length,
    /// whichever comes first.
    Bytes payload() const noexcept {
        const std::size_t end = std::min<std::size_t>(bytes_.size(), total_length());
        return bytes_.subspan(header_length(), end - header_length());
    }
    /// The bytes.
    Bytes bytes() const noexcept { return bytes_; }

    /// The TCP or UDP ports, when the original was TCP or UDP, not a later fragment, and at least
    /// four bytes of its transport header were quoted.
    std::optional<transport_ports> ports() const noexcept {
        if (!has_ports()) return std::nullopt;
        const Bytes transport = payload();
        return transport_ports{load_be16(transport, 0), load_be16(transport, 2)};
    }
    /// The identifier of a quoted ICMP echo request or reply (the key an ICMP NAT maps).
    std::optional<std::uint16_t> echo_identifier() const noexcept {
        if (!has_echo_identifier()) return std::nullopt;
        return load_be16(payload(), field::identifier);
    }

    // NAT rewrites. Each keeps the quoted IPv4 header checksum and, where it was quoted, the
    // quoted TCP/UDP/ICMP checksum consistent (RFC 1624). The caller refills the outer ICMP checksum.

    /// Rewrites the quoted source address, patching the quoted checksums.
    void rewrite_source(ipv4_address address) noexcept requires writable_byte_buffer<Bytes> {
        rewrite_address(ipv4::field::source, address);
    }
    /// Rewrites the quoted destination port (or echo identifier); false when the quote lacks it.
    void rewrite_destination(ipv4_address address) noexcept requires writable_byte_buffer<Bytes> {
        rewrite_address(ipv4::field::destination, address);
    }
    /// Returns false (changing nothing) when ports() would be empty.
    bool rewrite_source_port(std::uint16_t port) noexcept requires writable_byte_buffer<Bytes> {
        return rewrite_port(0, port);
    }
    /// Wraps and validates `bytes`.
    bool rewrite_destination_port(std::uint16_t port) noexcept requires writable_byte_buffer<Bytes> {
        return rewrite_port(2, port);
    }
    /// Returns false (changing nothing) when echo_identifier() would be empty.
    bool rewrite_echo_identifier(std::uint16_t identifier) noexcept requires writable_byte_buffer<Bytes> {
        if (!has_echo_identifier()) return false;
        const std::size_t at = header_length() + field::identifier;
        const std::uint16_t old_value = load_be16(bytes_, at);
        const std::size_t sum_at = header_length() + field::checksum;
        store_be16(bytes_, sum_at, checksum::update16(load_be16(bytes_, sum_at), old_value, identifier));
        store_be16(bytes_, at, identifier);
        return true;
    }

private:
    std::uint16_t flags_fragment() const noexcept { return load_be16(bytes_, ipv4::field::flags_fragment); }
    bool is_first_fragment_or_whole() const noexcept { return fragment_offset() == 0; }

    bool has_ports() const noexcept {
        return (protocol() == ipv4::protocol::tcp || protocol() == ipv4::protocol::udp) &&
               is_first_fragment_or_whole() && payload().size() >= 4;
    }
    bool has_echo_identifier() const noexcept {
        if (protocol() != ipv4::protocol::icmp || !is_first_fragment_or_whole()) return false;
        const Bytes message = payload();
        if (message.size() < field::identifier + 2) return false;
        const std::uint8_t quoted_type = load_u8(message, field::type);
        return quoted_type == type::echo_request || quoted_type == type::echo_reply;
    }
    /// Where the quoted TCP or UDP checksum sits in the quote, when it was quoted at all.
    std::optional<std::size_t> transport_checksum_at() const noexcept {
        if (!is_first_fragment_or_whole()) return std::nullopt;
        const std::size_t offset = protocol() == ipv4::protocol::tcp   ? 16
                                   : protocol() == ipv4::protocol::udp ? 6
                                                                       : 0;
        if (offset == 0 || payload().size() < offset + 2) return std::nullopt;
        return header_length() + offset;
    }
    template <class Update>
    void patch_transport_checksum(Update update) noexcept requires writable_byte_buffer<Bytes> {
        const auto at = transport_checksum_at();
        if (!at) return;
        const std::uint16_t old_sum = load_be16(bytes_, *at);
        // A UDP checksum of zero means "none sent" and stays so; a computed zero is sent as all ones.
        const bool udp = protocol() == ipv4::protocol::udp;
        if (udp && old_sum == 0) return;
        std::uint16_t new_sum = update(old_sum);
        if (udp && new_sum == 0) new_sum = 0xffff;
        store_be16(bytes_, *at, new_sum);
    }
    void rewrite_address(std::size_t at, ipv4_address address) noexcept requires writable_byte_buffer<Bytes> {
        const std::uint32_t old_value = load_be32(bytes_, at);
        const std::uint32_t new_value = address.to_u32();
        store_be16(bytes_, ipv4::field::checksum, checksum::update32(checksum(), old_value, new_value));
        // TCP and UDP checksums cover the addresses through the pseudo-header.
        patch_transport_checksum([&](std::uint16_t sum) { return checksum::update32(sum, old_value, new_value); });
        address.store(bytes_, at);
    }
    bool rewrite_port(std::size_t offset, std::uint16_t port) noexcept requires writable_byte_buffer<Bytes> {
        if (!has_ports()) return false;
        const std::size_t at = header_length() + offset;
        const std::uint16_t old_value = load_be16(bytes_, at);
        patch_transport_checksum([&](std::uint16_t sum) { return checksum::update16(sum, old_value, port); });
        store_be16(bytes_, at, port);
        return true;
    }

    Bytes bytes_;
};

/// A view of an ICMPv4 message.
template <byte_buffer Bytes>
class packet {
public:
    /// Views `buffer` without checking it; check_len() (or checked()) validates it before the accessors are used.
    explicit packet(Bytes buffer) noexcept : buffer_(buffer) {}

    /// Equality of code, next-hop MTU and quote (compared by content).
    static result<packet> checked(Bytes buffer) noexcept {
        packet message{buffer};
        if (auto ec = message.check_len()) return ec;
        return message;
    }

    /// The 8-byte header fits. (What follows depends on the type; quoted() validates a quote.)
    std::error_code check_len() const noexcept {
        if (buffer_.size() < header_len) return errc::truncated;
        return {};
    }

    /// The type.
    std::uint8_t type() const noexcept { return load_u8(buffer_, field::type); }
    /// The code.
    std::uint8_t code() const noexcept { return load_u8(buffer_, field::code); }
    /// The checksum.
    std::uint16_t checksum() const noexcept { return load_be16(buffer_, field::checksum); }
    /// Echo request/reply: identifier and sequence number.
    std::uint16_t identifier() const noexcept { return load_be16(buffer_, field::identifier); }
    /// The sequence.
    std::uint16_t sequence() const noexcept { return load_be16(buffer_, field::sequence); }
    /// Destination unreachable, code 4 (RFC 1191); zero from routers that predate it.
    std::uint16_t next_hop_mtu() const noexcept { return load_be16(buffer_, field::next_hop_mtu); }
    /// Parameter problem: the offset of the offending octet in the quoted datagram.
    std::uint8_t pointer() const noexcept { return load_u8(buffer_, field::pointer); }
    /// Redirect: the gateway to use instead.
    ipv4_address gateway() const noexcept { return ipv4_address{load_be32(buffer_, field::gateway)}; }
    /// RFC 4884: the quote's length in bytes when the sender appended extensions; 0 when it did not.
    std::size_t original_length() const noexcept { return std::size_t{load_u8(buffer_, field::original_length)} * 4; }

    /// Whether it is error.
    bool is_error() const noexcept { return is_error_type(type()); }
    /// Everything after the 8-byte header: echo data, or an error's quote (and any extensions).
    Bytes data() const noexcept { return buffer_.subspan(field::data); }
    /// The buffer.
    Bytes buffer() const noexcept { return buffer_; }

    /// The datagram an error message quotes, validated. errc::unsupported for a type that quotes
    /// nothing; bad_length when an RFC 4884 length runs past the message; else the quote's own check.
    result<quoted_datagram<Bytes>> quoted() const noexcept {
        if (!is_error()) return errc::unsupported;
        Bytes quote = data();
        // The length field exists for types 3, 11 and 12; in 4 and 5 byte 5 is unused or the gateway.
        const std::uint8_t t = type();
        if ((t == type::destination_unreachable || t == type::time_exceeded || t == type::parameter_problem) &&
            original_length() != 0) {
            if (original_length() > quote.size()) return errc::bad_length;
            quote = quote.first(original_length());
        }
        return quoted_datagram<Bytes>::checked(quote);
    }

    /// The checksum over the whole message verifies.
    bool verify_checksum() const noexcept { return checksum::internet(buffer_) == 0; }

    /// Writes the type field.
    void set_type(std::uint8_t value) noexcept requires writable_byte_buffer<Bytes> { store_u8(buffer_, field::type, value); }
    /// Writes the code field.
    void set_code(std::uint8_t value) noexcept requires writable_byte_buffer<Bytes> { store_u8(buffer_, field::code, value); }
    /// Writes the checksum field.
    void set_checksum(std::uint16_t value) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::checksum, value);
    }
    /// Writes the identifier field.
    void set_identifier(std::uint16_t value) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::identifier, value);
    }
    /// Writes the sequence field.
    void set_sequence(std::uint16_t value) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::sequence, value);
    }
    /// Writes the next hop MTU field.
    void set_next_hop_mtu(std::uint16_t value) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::next_hop_mtu, value);
    }
    /// Writes the pointer field.
    void set_pointer(std::uint8_t value) noexcept requires writable_byte_buffer<Bytes> { store_u8(buffer_, field::pointer, value); }

    /// Computes and stores the checksum over the whole message.
    void fill_checksum() noexcept requires writable_byte_buffer<Bytes> {
        set_checksum(0);
        set_checksum(checksum::internet(buffer_));
    }
    /// NAT helper: changes the echo identifier and patches the checksum incrementally (RFC 1624).
    void rewrite_identifier(std::uint16_t value) noexcept requires writable_byte_buffer<Bytes> {
        set_checksum(checksum::update16(checksum(), identifier(), value));
        set_identifier(value);
    }

private:
    Bytes buffer_;
};

namespace detail {
inline bool equal_bytes(const_bytes a, const_bytes b) noexcept {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}
} // namespace detail

// --- repr -------------------------------------------------------------------------------------
// Spans in these structs point into the parsed message (or, for emit, at the caller's bytes);
// equality compares their contents.

/// Echo request (Type = 8) or reply (Type = 0).
template <std::uint8_t Type>
struct echo {
    static constexpr std::uint8_t icmp_type = Type; ///< ICMP type
    std::uint16_t identifier = 0; ///< identifier
    std::uint16_t sequence = 0; ///< sequence
    const_bytes data; ///< data
    /// Wraps and validates `buffer`.
    bool operator==(const echo& other) const noexcept {
        return identifier == other.identifier && sequence == other.sequence && detail::equal_bytes(data, other.data);
    }
};
using echo_request = echo<type::echo_request>; ///< the echo request type
using echo_reply = echo<type::echo_reply>; ///< the echo reply type

/// An ICMP destination unreachable message and the datagram it quotes.
struct destination_unreachable {
    /// code
    std::uint8_t code = unreachable_code::port;
    /// Bytes 6-7: the next-hop MTU for code fragmentation_needed, zero otherwise.
    std::uint16_t next_hop_mtu = 0;
    const_bytes quoted; ///< the original IPv4 header and the start of its payload
    /// Equality of identifier, sequence and data (compared by content).
    bool operator==(const destination_unreachable& other) const noexcept {
        return code == other.code && next_hop_mtu == other.next_hop_mtu && detail::equal_bytes(quoted, other.quoted);
    }
};

/// An ICMP time exceeded message and the datagram it quotes.
struct time_exceeded {
    std::uint8_t code = time_exceeded_code::ttl; ///< code
    const_bytes quoted; ///< quoted
    /// Equality of code and quote (compared by content).
    bool operator==(const time_exceeded& other) const noexcept {
        return code == other.code && detail::equal_bytes(quoted, other.quoted);
    }
};

/// An ICMP parameter problem message and the datagram it quotes.
struct parameter_problem {
    std::uint8_t code = parameter_problem_code::pointer; ///< code
    std::uint8_t pointer = 0; ///< pointer
    const_bytes quoted; ///< quoted
    /// Equality of code, pointer and quote (compared by content).
    bool operator==(const parameter_problem& other) const noexcept {
        return code == other.code && pointer == other.pointer && detail::equal_bytes(quoted, other.quoted);
    }
};

/// A parsed ICMP message of one of the kinds ankanet handles.
struct repr {
    using variant_type = std::variant<echo_request, echo_reply, destination_unreachable, time_exceeded, parameter_problem>; ///< the variant type
    variant_type message; ///< message

    /// Validates the message (length, checksum, kind, quote) and extracts it.
    static result<repr> parse(const packet<const_bytes>& message) noexcept {
        if (auto ec = message.check_len()) return ec;
        if (!message.verify_checksum()) return errc::bad_checksum;
        switch (message.type()) {
        case type::echo_request: return parse_echo<echo_request>(message);
        case type::echo_reply: return parse_echo<echo_reply>(message);
        case type::destination_unreachable: {
            auto quote = message.quoted();
            if (!quote) return quote.error();
            return repr{destination_unreachable{message.code(), message.next_hop_mtu(), quote->bytes()}};
        }
        case type::time_exceeded: {
            auto quote = message.quoted();
            if (!quote) return quote.error();
            return repr{time_exceeded{message.code(), quote->bytes()}};
        }
        case type::parameter_problem: {
            auto quote = message.quoted();
            if (!quote) return quote.error();
            return repr{parameter_problem{message.code(), message.pointer(), quote->bytes()}};
        }
        default: return errc::unsupported;
        }
    }
    /// Rewrites the quoted destination address, patching the quoted checksums.
    static result<repr> parse(const_bytes message) noexcept { return parse(packet<const_bytes>{message}); }

    /// The whole message: the 8-byte header plus the echo data or the quote.
    std::size_t buffer_len() const noexcept {
        return header_len + std::visit([](const auto& m) noexcept { return body(m).size(); }, message);
    }

    /// Writes the whole message at the start of `buffer`, checksum filled. The echo data or quote
    /// is copied and may overlap `buffer`. An error's quote must pass quoted_datagram::check_len().
    std::error_code emit(mutable_bytes buffer) const noexcept {
        const std::size_t length = buffer_len();
        if (buffer.size() < length) return errc::buffer_too_small;
        return std::visit([&](const auto& m) noexcept { return emit_message(m, buffer.first(length)); }, message);
    }

    /// Memberwise equality.
    bool operator==(const repr&) const noexcept = default;

private:
    template <class Echo>
    static result<repr> parse_echo(const packet<const_bytes>& message) noexcept {
        if (message.code() != 0) return errc::bad_field;
        return repr{Echo{message.identifier(), message.sequence(), message.data()}};
    }

    template <std::uint8_t Type>
    static const_bytes body(const echo<Type>& m) noexcept { return m.data; }
    template <class Error>
    static const_bytes body(const Error& m) noexcept { return m.quoted; }

    /// Copies the body first, so a body overlapping the header bytes is read before they are written.
    static void write(mutable_bytes out, std::uint8_t message_type, std::uint8_t code, const_bytes body) noexcept {
        if (!body.empty()) std::memmove(out.data() + header_len, body.data(), body.size());
        std::memset(out.data(), 0, header_len);
        store_u8(out, field::type, message_type);
        store_u8(out, field::code, code);
    }
    static void finish(mutable_bytes out) noexcept { packet<mutable_bytes>{out}.fill_checksum(); }

    template <std::uint8_t Type>
    static std::error_code emit_message(const echo<Type>& m, mutable_bytes out) noexcept {
        write(out, Type, 0, m.data);
        store_be16(out, field::identifier, m.identifier);
        store_be16(out, field::sequence, m.sequence);
        finish(out);
        return {};
    }
    static std::error_code emit_message(const destination_unreachable& m, mutable_bytes out) noexcept {
        if (auto ec = quoted_datagram<const_bytes>{m.quoted}.check_len()) return ec;
        write(out, type::destination_unreachable, m.code, m.quoted);
        store_be16(out, field::next_hop_mtu, m.next_hop_mtu);
        finish(out);
        return {};
    }
    static std::error_code emit_message(const time_exceeded& m, mutable_bytes out) noexcept {
        if (auto ec = quoted_datagram<const_bytes>{m.quoted}.check_len()) return ec;
        write(out, type::time_exceeded, m.code, m.quoted);
        finish(out);
        return {};
    }
    static std::error_code emit_message(const parameter_problem& m, mutable_bytes out) noexcept {
        if (auto ec = quoted_datagram<const_bytes>{m.quoted}.check_len()) return ec;
        write(out, type::parameter_problem, m.code, m.quoted);
        store_u8(out, field::pointer, m.pointer);
        finish(out);
        return {};
    }
};

} // namespace ankanet::wire::icmp
