/// @file
/// ankanet::wire::ethernet — Ethernet II frames, with one 802.1Q / 802.1ad tag recognised.
///
/// The pattern every protocol in wire/ follows:
///  * `packet<Bytes>` is a view over a buffer (`const_bytes` to read, `mutable_bytes` to write too).
///    Its contract: once `check_len()` returned no error (or `checked()` returned a packet), no
///    accessor reads outside the buffer. Setters exist only on writable views.
///  * `repr` is the parsed, owned form of the header: `parse(packet)` validates and extracts,
///    `buffer_len()` says how many bytes `emit` writes, `emit(buffer)` writes them (refusing a short
///    buffer with errc::buffer_too_small). Neither allocates.
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <system_error>

namespace ankanet::wire::ethernet {

inline constexpr std::size_t header_len = 14; ///< header length

/// vlan tag length
inline constexpr std::size_t vlan_tag_len = 4;
/// The smallest frame on the wire without FCS; shorter frames are padded by the sender.
inline constexpr std::size_t min_frame_len = 60;

namespace ethertype {
/// An EtherType (IEEE 802 numbers).
/// @{
inline constexpr std::uint16_t ipv4 = 0x0800;
inline constexpr std::uint16_t arp = 0x0806;
inline constexpr std::uint16_t vlan = 0x8100; ///< 802.1Q customer tag
inline constexpr std::uint16_t qinq = 0x88a8; ///< 802.1ad service tag
inline constexpr std::uint16_t ipv6 = 0x86dd;
/// @}
} // namespace ethertype

namespace field {
/// Byte offset of a field from the start of the Ethernet header.
/// @{
inline constexpr std::size_t destination = 0;
inline constexpr std::size_t source = 6;
inline constexpr std::size_t ethertype = 12;
inline constexpr std::size_t vlan_tci = 14;        ///< present only when tagged
inline constexpr std::size_t inner_ethertype = 16; ///< present only when tagged

/// @}
} // namespace field

/// A view of an Ethernet II frame.
template <byte_buffer Bytes>
class packet {
public:
    /// Views `buffer` without checking it; check_len() (or checked()) validates it before the accessors are used.
    explicit packet(Bytes buffer) noexcept : buffer_(buffer) {}

    /// Wraps and validates `buffer`.
    static result<packet> checked(Bytes buffer) noexcept {
        packet frame{buffer};
        if (auto ec = frame.check_len()) return ec;
        return frame;
    }

    /// The header (and the tag, when the outer EtherType announces one) fits in the buffer.
    std::error_code check_len() const noexcept {
        if (buffer_.size() < header_len) return errc::truncated;
        if (has_vlan_tag() && buffer_.size() < header_len + vlan_tag_len) return errc::truncated;
        return {};
    }

    /// The destination.
    mac_address destination() const noexcept { return mac_address::from_bytes(buffer_.subspan(field::destination)); }
    /// The source.
    mac_address source() const noexcept { return mac_address::from_bytes(buffer_.subspan(field::source)); }
    /// The EtherType field itself (0x8100 when tagged).
    std::uint16_t outer_ethertype() const noexcept { return load_be16(buffer_, field::ethertype); }
    /// Whether it has vlan tag.
    bool has_vlan_tag() const noexcept {
        const auto type = outer_ethertype();
        return type == ethertype::vlan || type == ethertype::qinq;
    }
    /// Tag control information (PCP, DEI, VID); only when has_vlan_tag().
    std::uint16_t vlan_tci() const noexcept { return load_be16(buffer_, field::vlan_tci); }
    /// The EtherType of the payload, past the tag when there is one.
    std::uint16_t ethertype() const noexcept {
        return has_vlan_tag() ? load_be16(buffer_, field::inner_ethertype) : outer_ethertype();
    }
    /// The header length.
    std::size_t header_length() const noexcept { return has_vlan_tag() ? header_len + vlan_tag_len : header_len; }
    /// The payload.
    Bytes payload() const noexcept { return buffer_.subspan(header_length()); }
    /// The buffer.
    Bytes buffer() const noexcept { return buffer_; }

    /// Writes the destination field.
    void set_destination(mac_address mac) noexcept requires writable_byte_buffer<Bytes> { mac.store(buffer_, field::destination); }
    /// Writes the source field.
    void set_source(mac_address mac) noexcept requires writable_byte_buffer<Bytes> { mac.store(buffer_, field::source); }
    /// Sets the EtherType of the payload (the inner one when tagged).
    void set_ethertype(std::uint16_t type) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, has_vlan_tag() ? field::inner_ethertype : field::ethertype, type);
    }

private:
    Bytes buffer_;
};

/// The parsed Ethernet header.
struct repr {
    mac_address source; ///< source
    mac_address destination; ///< destination
    std::uint16_t ethertype = 0;            ///< of the payload
    std::optional<std::uint16_t> vlan_tci;  ///< set when the frame carries an 802.1Q tag

    /// Parses a view.
    static result<repr> parse(const packet<const_bytes>& frame) noexcept {
        if (auto ec = frame.check_len()) return ec;
        repr r;
        r.source = frame.source();
        r.destination = frame.destination();
        r.ethertype = frame.ethertype();
        if (frame.has_vlan_tag()) r.vlan_tci = frame.vlan_tci();
        return r;
    }
    /// Parses bytes.
    static result<repr> parse(const_bytes frame) noexcept { return parse(packet<const_bytes>{frame}); }

    /// The buffer length.
    std::size_t buffer_len() const noexcept { return vlan_tci ? header_len + vlan_tag_len : header_len; }

    /// Writes the header at the start of `buffer`; the payload goes at buffer_len().
    std::error_code emit(mutable_bytes buffer) const noexcept {
        if (buffer.size() < buffer_len()) return errc::buffer_too_small;
        destination.store(buffer, field::destination);
        source.store(buffer, field::source);
        if (vlan_tci) {
            store_be16(buffer, field::ethertype, ethertype::vlan);
            store_be16(buffer, field::vlan_tci, *vlan_tci);
            store_be16(buffer, field::inner_ethertype, ethertype);
        } else {
            store_be16(buffer, field::ethertype, ethertype);
        }
        return {};
    }

    /// Memberwise equality.
    bool operator==(const repr&) const noexcept = default;
};

} // namespace ankanet::wire::ethernet
