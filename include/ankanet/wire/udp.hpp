/// @file
/// ankanet::wire::udp — UDP datagrams (RFC 768) over IPv4.
///
/// Theory of operation.
///  * `packet<Bytes>` views the IP payload that carries a UDP datagram. The view trusts nothing in
///    the header: `check_len()` refuses a buffer shorter than the 8-byte header (truncated) and a
///    length field below 8 or above the buffer (bad_length). The second is libslirp's
///    CVE-2021-3594: a guest that claims more bytes than it sent must not make us read past them.
///    After `check_len()` succeeded, no accessor reads out of bounds, and `payload()` ends where the
///    length field says (bytes after it, e.g. IP padding, belong to nobody). As a second line of
///    defence, the spans and sums that follow the length field are clamped to the buffer anyway,
///    so a length set later through a writable view cannot make them read past it.
///  * The checksum covers the IPv4 pseudo-header, so the view is given the two addresses; it does
///    not depend on the IPv4 view. A checksum field of 0 means "not computed" over IPv4 and is
///    accepted. A computed sum of 0 is sent as 0xffff (RFC 768), so 0 keeps its meaning.
///  * NAT helpers rewrite a port, or account for an address rewritten in the IP header, with the
///    incremental update of RFC 1624; the result equals a full recomputation, and a datagram sent
///    without a checksum stays without one.
///  * `repr` is the parsed header: ports and payload length. `parse` verifies the checksum;
///    `emit` writes the header and computes the checksum over the payload the caller has already
///    placed right after it. Nothing allocates.
/// Limits: IPv4 only (over IPv6 the checksum is mandatory and the pseudo-header differs); UDP
/// jumbograms (RFC 2675) are not handled.
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/checksum.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <system_error>

namespace ankanet::wire::udp {

/// header length
inline constexpr std::size_t header_len = 8;
/// The IP protocol number, as it enters the pseudo-header.
inline constexpr std::uint8_t protocol_number = 17;
/// The largest payload the 16-bit length field can describe.
inline constexpr std::size_t max_payload_len = 0xffff - header_len;

namespace field {
/// Byte offset of a field from the start of the UDP header.
/// @{
inline constexpr std::size_t source_port = 0;
inline constexpr std::size_t destination_port = 2;
inline constexpr std::size_t length = 4;
inline constexpr std::size_t checksum = 6;
/// @}
} // namespace field

/// A view of a UDP datagram: the payload of an IPv4 packet.
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

    /// The header fits, and the length field covers the header and no more than the buffer.
    std::error_code check_len() const noexcept {
        if (buffer_.size() < header_len) return errc::truncated;
        const std::size_t len = length();
        if (len < header_len) return errc::bad_length;
        if (len > buffer_.size()) return errc::bad_length; // the length lies (CVE-2021-3594)
        return {};
    }

    /// The source port.
    std::uint16_t source_port() const noexcept { return load_be16(buffer_, field::source_port); }
    /// The destination port.
    std::uint16_t destination_port() const noexcept { return load_be16(buffer_, field::destination_port); }
    /// The length field: header plus payload, in bytes.
    std::uint16_t length() const noexcept { return load_be16(buffer_, field::length); }
    /// The checksum.
    std::uint16_t checksum() const noexcept { return load_be16(buffer_, field::checksum); }
    /// The datagram as the length field bounds it: header and payload.
    Bytes datagram() const noexcept { return buffer_.first(bounded_length()); }
    /// The payload, up to the length field (not to the end of the buffer).
    Bytes payload() const noexcept {
        const std::size_t len = bounded_length();
        const std::size_t begin = std::min(header_len, len);
        return buffer_.subspan(begin, len - begin);
    }
    /// The buffer.
    Bytes buffer() const noexcept { return buffer_; }

    /// The checksum verifies against the IPv4 pseudo-header, or is 0 ("none", allowed over IPv4).
    bool verify_checksum(ipv4_address source, ipv4_address destination) const noexcept {
        if (checksum() == 0) return true;
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
    /// Sets the length field. The view's contract then holds only if the new length passes check_len().
    void set_length(std::uint16_t value) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::length, value);
    }
    /// Writes the checksum field.
    void set_checksum(std::uint16_t value) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::checksum, value);
    }

    /// Computes and stores the checksum over the pseudo-header and the datagram.
    void fill_checksum(ipv4_address source, ipv4_address destination) noexcept requires writable_byte_buffer<Bytes> {
        set_checksum(0);
        set_checksum(on_wire(sum(source, destination).finish()));
    }

    /// NAT: sets the source port and updates the checksum to match (RFC 1624).
    void rewrite_source_port(std::uint16_t port) noexcept requires writable_byte_buffer<Bytes> {
        adjust16(source_port(), port);
        set_source_port(port);
    }
    /// NAT: sets the destination port and updates the checksum to match (RFC 1624).
    void rewrite_destination_port(std::uint16_t port) noexcept requires writable_byte_buffer<Bytes> {
        adjust16(destination_port(), port);
        set_destination_port(port);
    }
    /// NAT: the IP layer changed an address of the pseudo-header from `from` to `to` (the
    /// address itself lives in the IP header); update the checksum to match.
    void rewrite_pseudo_header_address(ipv4_address from, ipv4_address to) noexcept requires writable_byte_buffer<Bytes> {
        if (checksum() == 0) return; // no checksum stays no checksum
        set_checksum(on_wire(checksum::update32(checksum(), from.to_u32(), to.to_u32())));
    }

private:
    // The length field, kept inside the buffer even when it lies: check_len() refuses such a
    // datagram, but a writable view may have been given a bad length after it ran.
    std::size_t bounded_length() const noexcept { return std::min<std::size_t>(length(), buffer_.size()); }

    checksum::accumulator sum(ipv4_address source, ipv4_address destination) const noexcept {
        auto acc = checksum::ipv4_pseudo_header(source, destination, protocol_number, length());
        acc.add(datagram());
        return acc;
    }
    // A computed 0 is sent as its other one's-complement form, since 0 on the wire means "none".
    static constexpr std::uint16_t on_wire(std::uint16_t value) noexcept { return value == 0 ? 0xffff : value; }

    void adjust16(std::uint16_t from, std::uint16_t to) noexcept requires writable_byte_buffer<Bytes> {
        if (checksum() == 0) return;
        set_checksum(on_wire(checksum::update16(checksum(), from, to)));
    }

    Bytes buffer_;
};

/// The parsed UDP header.
struct repr {
    std::uint16_t source_port = 0; ///< source port
    std::uint16_t destination_port = 0; ///< destination port
    std::size_t payload_len = 0; ///< payload length

    /// Validates the lengths and the checksum (a zero checksum is accepted: "none" over IPv4).
    static result<repr> parse(const packet<const_bytes>& datagram, ipv4_address source,
                              ipv4_address destination) noexcept {
        if (auto ec = datagram.check_len()) return ec;
        if (!datagram.verify_checksum(source, destination)) return errc::bad_checksum;
        repr r;
        r.source_port = datagram.source_port();
        r.destination_port = datagram.destination_port();
        r.payload_len = datagram.payload().size();
        return r;
    }
    /// Parses bytes, with the pseudo-header's addresses.
    static result<repr> parse(const_bytes datagram, ipv4_address source, ipv4_address destination) noexcept {
        return parse(packet<const_bytes>{datagram}, source, destination);
    }

    /// The header's size; the payload goes right after it.
    std::size_t buffer_len() const noexcept { return header_len; }

    /// Writes the header at the start of `buffer` and the checksum over the pseudo-header, the
    /// header and the `payload_len` bytes that follow it. The caller places the payload at
    /// `buffer[buffer_len(), buffer_len() + payload_len)` *before* calling emit; `buffer` must
    /// hold both (buffer_too_small otherwise). Bytes past the payload are not touched.
    std::error_code emit(mutable_bytes buffer, ipv4_address source, ipv4_address destination) const noexcept {
        if (payload_len > max_payload_len) return errc::bad_length;
        const std::size_t total = header_len + payload_len;
        if (buffer.size() < total) return errc::buffer_too_small;
        packet<mutable_bytes> datagram{buffer.first(total)};
        datagram.set_source_port(source_port);
        datagram.set_destination_port(destination_port);
        datagram.set_length(static_cast<std::uint16_t>(total));
        datagram.fill_checksum(source, destination);
        return {};
    }

    /// Memberwise equality.
    bool operator==(const repr&) const noexcept = default;
};

} // namespace ankanet::wire::udp
