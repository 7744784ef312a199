/// @file
/// ankanet::wire::ipv4 — the IPv4 header (RFC 791).
///
/// Theory of operation. `packet<Bytes>` is a view over one IPv4 datagram; `repr` is its parsed,
/// owned header. Every length the header states is proven against the buffer once, in check_len(),
/// in this order:
///
/// @code{.unparsed}
///   buffer  < 20 bytes                       -> truncated
///   version != 4                             -> bad_version
///   IHL     < 5 words                        -> bad_header_length
///   IHL * 4 > buffer                         -> truncated          (options run past the buffer)
///   total_length < IHL * 4                   -> bad_length         (the datagram ends inside its header)
///   total_length > buffer                    -> bad_length         (the length lies, or the frame was cut)
/// @endcode
///
/// A buffer *longer* than total_length is accepted: Ethernet pads frames to 60 bytes, so a short
/// datagram arrives with trailing padding. payload() therefore ends at total_length, never at the
/// end of the buffer. After check_len() no accessor can read outside the buffer.
///
/// Options (IHL > 5) are skipped, not interpreted: options() hands back their raw bytes. ankanet
/// forwards payloads; it does not act on source routes or timestamps. repr::emit always writes a
/// 20-byte header without options.
///
/// Fragments are recognised and flagged (is_fragment()), never reassembled here. repr::parse also
/// refuses a fragment whose offset plus length would reassemble past 65,535 bytes (the "ping of
/// death"), and a header whose checksum does not verify. The reserved flag bit is neither checked
/// nor carried.
///
/// For the NAT, writable views rewrite the source, the destination and the TTL in place, keeping the
/// header checksum right with an RFC 1624 incremental update instead of a full recomputation.
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/checksum.hpp>

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <system_error>

namespace ankanet::wire::ipv4 {

/// The header without options; also what repr::emit writes.
inline constexpr std::size_t header_len = 20;
/// IHL is four bits of 32-bit words: 15 * 4.
inline constexpr std::size_t max_header_len = 60;
/// The largest datagram total_length can describe, and the limit on a reassembled datagram.
inline constexpr std::size_t max_packet_len = 65535;
inline constexpr std::uint8_t default_ttl = 64; ///< default TTL

/// Protocol numbers (IANA "Assigned Internet Protocol Numbers").
namespace protocol {
/// An IP protocol number (IANA "Assigned Internet Protocol Numbers").
/// @{
inline constexpr std::uint8_t icmp = 1;
inline constexpr std::uint8_t igmp = 2;
inline constexpr std::uint8_t tcp = 6;
inline constexpr std::uint8_t udp = 17;
/// @}
} // namespace protocol

namespace field {
/// Byte offset of a field from the start of the IPv4 header.
/// @{
inline constexpr std::size_t version_ihl = 0;
inline constexpr std::size_t dscp_ecn = 1;
inline constexpr std::size_t total_length = 2;
inline constexpr std::size_t identification = 4;
inline constexpr std::size_t flags_fragment = 6; ///< 3 flag bits, then the offset in 8-byte units
inline constexpr std::size_t ttl = 8;
inline constexpr std::size_t protocol = 9;
inline constexpr std::size_t checksum = 10;
inline constexpr std::size_t source = 12;
inline constexpr std::size_t destination = 16;
inline constexpr std::size_t options = 20;
/// @}
} // namespace field

namespace flag {
/// A bit of the flags-and-fragment-offset word (header bytes 6-7).
/// @{
inline constexpr std::uint16_t reserved = 0x8000;
inline constexpr std::uint16_t dont_fragment = 0x4000;
inline constexpr std::uint16_t more_fragments = 0x2000;
inline constexpr std::uint16_t offset_mask = 0x1fff;
/// @}
} // namespace flag

/// A view of an IPv4 datagram.
template <byte_buffer Bytes>
class packet {
public:
    /// Views `buffer` without checking it; check_len() (or checked()) validates it before the accessors are used.
    explicit packet(Bytes buffer) noexcept : buffer_(buffer) {}

    /// Wraps and validates `buffer`.
    static result<packet> checked(Bytes buffer) noexcept {
        packet datagram{buffer};
        if (auto ec = datagram.check_len()) return ec;
        return datagram;
    }

    /// The header, its options and the datagram total_length describes all fit in the buffer
    /// (see the table at the top of this file).
    std::error_code check_len() const noexcept {
        if (buffer_.size() < header_len) return errc::truncated;
        if (version() != 4) return errc::bad_version;
        if (header_length() < header_len) return errc::bad_header_length;
        if (header_length() > buffer_.size()) return errc::truncated;
        if (total_length() < header_length()) return errc::bad_length;
        if (total_length() > buffer_.size()) return errc::bad_length;
        return {};
    }

    /// The version.
    std::uint8_t version() const noexcept { return static_cast<std::uint8_t>(load_u8(buffer_, field::version_ihl) >> 4); }
    /// The header length in bytes, options included (IHL * 4).
    std::size_t header_length() const noexcept { return std::size_t{load_u8(buffer_, field::version_ihl) & 0x0fu} * 4; }
    /// The whole second byte: DSCP in the upper six bits, ECN in the lower two (RFC 2474, RFC 3168).
    std::uint8_t dscp_ecn() const noexcept { return load_u8(buffer_, field::dscp_ecn); }
    /// The DSCP.
    std::uint8_t dscp() const noexcept { return static_cast<std::uint8_t>(dscp_ecn() >> 2); }
    /// The ECN.
    std::uint8_t ecn() const noexcept { return static_cast<std::uint8_t>(dscp_ecn() & 0x03u); }
    /// The total length.
    std::uint16_t total_length() const noexcept { return load_be16(buffer_, field::total_length); }
    /// The identification.
    std::uint16_t identification() const noexcept { return load_be16(buffer_, field::identification); }
    /// Whether dont fragment.
    bool dont_fragment() const noexcept { return (flags_fragment() & flag::dont_fragment) != 0; }
    /// Whether more fragments.
    bool more_fragments() const noexcept { return (flags_fragment() & flag::more_fragments) != 0; }
    /// The fragment offset in bytes (the field counts 8-byte units).
    std::uint16_t fragment_offset() const noexcept {
        return static_cast<std::uint16_t>((flags_fragment() & flag::offset_mask) * 8u);
    }
    /// True for every piece of a fragmented datagram: the first has MF set, the others an offset.
    bool is_fragment() const noexcept { return more_fragments() || fragment_offset() != 0; }
    /// The TTL.
    std::uint8_t ttl() const noexcept { return load_u8(buffer_, field::ttl); }
    /// The protocol.
    std::uint8_t protocol() const noexcept { return load_u8(buffer_, field::protocol); }
    /// The checksum.
    std::uint16_t checksum() const noexcept { return load_be16(buffer_, field::checksum); }
    /// The source.
    ipv4_address source() const noexcept { return ipv4_address{load_be32(buffer_, field::source)}; }
    /// The destination.
    ipv4_address destination() const noexcept { return ipv4_address{load_be32(buffer_, field::destination)}; }

    /// The header, options included.
    Bytes header() const noexcept { return buffer_.first(header_length()); }
    /// The raw option bytes (empty when IHL is 5); not interpreted.
    Bytes options() const noexcept { return buffer_.subspan(field::options, header_length() - header_len); }
    /// The payload, ending at total_length (link-layer padding after it is excluded).
    Bytes payload() const noexcept {
        return buffer_.subspan(header_length(), std::size_t{total_length()} - header_length());
    }
    /// The buffer.
    Bytes buffer() const noexcept { return buffer_; }

    /// The header checksum verifies (the one's-complement sum of the header is all ones).
    bool verify_checksum() const noexcept { return checksum::internet(header()) == 0; }

    /// Writes the version field.
    void set_version(std::uint8_t version) noexcept requires writable_byte_buffer<Bytes> {
        const auto ihl = static_cast<unsigned>(load_u8(buffer_, field::version_ihl) & 0x0fu);
        store_u8(buffer_, field::version_ihl, static_cast<std::uint8_t>(((version & 0x0fu) << 4) | ihl));
    }
    /// Sets IHL from a length in bytes: a multiple of 4 from 20 to 60.
    void set_header_length(std::size_t bytes) noexcept requires writable_byte_buffer<Bytes> {
        assert(bytes % 4 == 0 && bytes >= header_len && bytes <= max_header_len);
        const auto version_bits = static_cast<unsigned>(load_u8(buffer_, field::version_ihl) & 0xf0u);
        store_u8(buffer_, field::version_ihl, static_cast<std::uint8_t>(version_bits | ((bytes / 4) & 0x0fu)));
    }
    /// Writes the DSCP ECN field.
    void set_dscp_ecn(std::uint8_t value) noexcept requires writable_byte_buffer<Bytes> { store_u8(buffer_, field::dscp_ecn, value); }
    /// Writes the total length field.
    void set_total_length(std::uint16_t length) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::total_length, length);
    }
    /// Writes the identification field.
    void set_identification(std::uint16_t id) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::identification, id);
    }
    /// Writes the dont fragment field.
    void set_dont_fragment(bool on) noexcept requires writable_byte_buffer<Bytes> { set_flag(flag::dont_fragment, on); }
    /// Writes the more fragments field.
    void set_more_fragments(bool on) noexcept requires writable_byte_buffer<Bytes> { set_flag(flag::more_fragments, on); }
    /// Sets the fragment offset from a byte count: a multiple of 8, at most 65,528.
    void set_fragment_offset(std::uint16_t bytes) noexcept requires writable_byte_buffer<Bytes> {
        assert(bytes % 8 == 0);
        const auto flags = static_cast<std::uint16_t>(flags_fragment() & ~flag::offset_mask);
        store_be16(buffer_, field::flags_fragment, static_cast<std::uint16_t>(flags | (bytes / 8u)));
    }
    /// Writes the TTL field.
    void set_ttl(std::uint8_t ttl) noexcept requires writable_byte_buffer<Bytes> { store_u8(buffer_, field::ttl, ttl); }
    /// Writes the protocol field.
    void set_protocol(std::uint8_t protocol) noexcept requires writable_byte_buffer<Bytes> {
        store_u8(buffer_, field::protocol, protocol);
    }
    /// Writes the checksum field.
    void set_checksum(std::uint16_t value) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::checksum, value);
    }
    /// Writes the source field.
    void set_source(ipv4_address address) noexcept requires writable_byte_buffer<Bytes> { address.store(buffer_, field::source); }
    /// Writes the destination field.
    void set_destination(ipv4_address address) noexcept requires writable_byte_buffer<Bytes> {
        address.store(buffer_, field::destination);
    }

    /// Computes and stores the header checksum over the header and its options.
    void fill_checksum() noexcept requires writable_byte_buffer<Bytes> {
        set_checksum(0);
        set_checksum(checksum::internet(header()));
    }

    // NAT helpers: each changes one field and patches the header checksum incrementally (RFC 1624),
    // so a correct checksum stays correct. A transport checksum over the pseudo-header is the
    // transport view's business.

    /// Rewrites the source address, patching the header checksum.
    void rewrite_source(ipv4_address address) noexcept requires writable_byte_buffer<Bytes> {
        set_checksum(checksum::update32(checksum(), source().to_u32(), address.to_u32()));
        set_source(address);
    }
    /// Rewrites the destination address, patching the header checksum.
    void rewrite_destination(ipv4_address address) noexcept requires writable_byte_buffer<Bytes> {
        set_checksum(checksum::update32(checksum(), destination().to_u32(), address.to_u32()));
        set_destination(address);
    }
    /// Decrements the TTL as a router does and returns the new value. A TTL already at 0 is left as
    /// it is (0 is returned). A forwarder drops the datagram when this returns 0.
    std::uint8_t decrement_ttl() noexcept requires writable_byte_buffer<Bytes> {
        const std::uint8_t old_ttl = ttl();
        if (old_ttl == 0) return 0;
        // TTL shares a 16-bit checksum word with the protocol byte.
        const std::uint16_t old_word = load_be16(buffer_, field::ttl);
        const auto new_word = static_cast<std::uint16_t>(old_word - 0x0100u);
        set_checksum(checksum::update16(checksum(), old_word, new_word));
        store_be16(buffer_, field::ttl, new_word);
        return static_cast<std::uint8_t>(old_ttl - 1);
    }

private:
    std::uint16_t flags_fragment() const noexcept { return load_be16(buffer_, field::flags_fragment); }
    void set_flag(std::uint16_t bit, bool on) noexcept requires writable_byte_buffer<Bytes> {
        const std::uint16_t value = flags_fragment();
        store_be16(buffer_, field::flags_fragment, static_cast<std::uint16_t>(on ? (value | bit) : (value & ~bit)));
    }

    Bytes buffer_;
};

/// The parsed IPv4 header (options are not carried).
struct repr {
    ipv4_address source; ///< source
    ipv4_address destination; ///< destination
    std::uint8_t protocol = 0; ///< protocol
    std::uint8_t ttl = default_ttl; ///< TTL
    std::size_t payload_len = 0;         ///< bytes after the header, up to total_length
    std::uint16_t identification = 0; ///< identification
    bool dont_fragment = false; ///< dont fragment
    bool more_fragments = false; ///< more fragments
    std::uint16_t fragment_offset = 0;   ///< in bytes; a multiple of 8
    std::uint8_t dscp_ecn = 0; ///< DSCP ECN

    /// Validates the view (check_len, header checksum, reassembled size) and extracts the header.
    static result<repr> parse(const packet<const_bytes>& datagram) noexcept {
        if (auto ec = datagram.check_len()) return ec;
        if (!datagram.verify_checksum()) return errc::bad_checksum;
        // The last byte this fragment would occupy in the reassembled datagram (header counted as
        // Linux does); past 65,535 a reassembler's arithmetic overflows.
        if (std::size_t{datagram.fragment_offset()} + datagram.total_length() > max_packet_len) return errc::bad_length;
        repr r;
        r.source = datagram.source();
        r.destination = datagram.destination();
        r.protocol = datagram.protocol();
        r.ttl = datagram.ttl();
        r.payload_len = datagram.payload().size();
        r.identification = datagram.identification();
        r.dont_fragment = datagram.dont_fragment();
        r.more_fragments = datagram.more_fragments();
        r.fragment_offset = datagram.fragment_offset();
        r.dscp_ecn = datagram.dscp_ecn();
        return r;
    }
    /// Parses bytes.
    static result<repr> parse(const_bytes datagram) noexcept { return parse(packet<const_bytes>{datagram}); }

    /// The header emit writes: always 20 bytes, no options.
    std::size_t buffer_len() const noexcept { return header_len; }

    /// Writes the header, checksum filled, at the start of `buffer`; the payload goes at
    /// buffer_len() and is the caller's to write (the header checksum does not cover it).
    /// Refuses a payload_len or fragment_offset the header cannot express.
    std::error_code emit(mutable_bytes buffer) const noexcept {
        if (buffer.size() < buffer_len()) return errc::buffer_too_small;
        if (payload_len > max_packet_len - header_len) return errc::bad_length;
        if (fragment_offset % 8 != 0) return errc::bad_field;
        if (std::size_t{fragment_offset} + header_len + payload_len > max_packet_len) return errc::bad_length;
        packet<mutable_bytes> datagram{buffer};
        store_u8(buffer, field::version_ihl, 0x45);
        datagram.set_dscp_ecn(dscp_ecn);
        datagram.set_total_length(static_cast<std::uint16_t>(header_len + payload_len));
        datagram.set_identification(identification);
        store_be16(buffer, field::flags_fragment,
                   static_cast<std::uint16_t>((dont_fragment ? flag::dont_fragment : 0u) |
                                              (more_fragments ? flag::more_fragments : 0u) | (fragment_offset / 8u)));
        datagram.set_ttl(ttl);
        datagram.set_protocol(protocol);
        datagram.set_source(source);
        datagram.set_destination(destination);
        datagram.fill_checksum();
        return {};
    }

    /// Memberwise equality.
    bool operator==(const repr&) const noexcept = default;
};

} // namespace ankanet::wire::ipv4
