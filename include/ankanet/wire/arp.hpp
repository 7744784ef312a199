/// @file
/// ankanet::wire::arp — ARP for IPv4 over Ethernet (RFC 826), the only ARP the gateway speaks.
///
/// Theory of operation. An ARP packet describes its own address sizes (hlen, plen); a parser that
/// trusts them reads past short packets (libslirp CVE-2020-29129/29130). This view accepts exactly
/// one shape — hardware type 1 (Ethernet), protocol 0x0800, hlen 6, plen 4 — so every field sits at
/// a fixed offset inside the 28 bytes check_len() proved present. Any other shape is errc::unsupported;
/// a shorter buffer is errc::truncated. Bytes past the 28 (Ethernet padding) are ignored.
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>

#include <cstddef>
#include <cstdint>
#include <system_error>

namespace ankanet::wire::arp {

inline constexpr std::size_t packet_len = 28; ///< packet length
inline constexpr std::uint16_t hardware_ethernet = 1; ///< hardware ethernet
inline constexpr std::uint16_t protocol_ipv4 = 0x0800; ///< protocol IPv4

/// Writes `value` big-endian at `offset`. The caller has checked the bounds.
enum class operation : std::uint16_t { request = 1, reply = 2 }; ///< operation

namespace field {
/// Byte offset of a field from the start of the ARP packet.
/// @{
inline constexpr std::size_t hardware_type = 0;
inline constexpr std::size_t protocol_type = 2;
inline constexpr std::size_t hardware_len = 4;
inline constexpr std::size_t protocol_len = 5;
inline constexpr std::size_t operation = 6;
inline constexpr std::size_t sender_mac = 8;
inline constexpr std::size_t sender_ip = 14;
inline constexpr std::size_t target_mac = 18;
inline constexpr std::size_t target_ip = 24;
/// @}
} // namespace field

/// A view of an ARP packet (the Ethernet payload).
template <byte_buffer Bytes>
class packet {
public:
    /// Views `buffer` without checking it; check_len() (or checked()) validates it before the accessors are used.
    explicit packet(Bytes buffer) noexcept : buffer_(buffer) {}

    /// Wraps and validates `buffer`.
    static result<packet> checked(Bytes buffer) noexcept {
        packet p{buffer};
        if (auto ec = p.check_len()) return ec;
        return p;
    }

    /// 28 bytes are present and they describe IPv4 over Ethernet.
    std::error_code check_len() const noexcept {
        if (buffer_.size() < packet_len) return errc::truncated;
        if (hardware_type() != hardware_ethernet || protocol_type() != protocol_ipv4 ||
            load_u8(buffer_, field::hardware_len) != mac_address::size ||
            load_u8(buffer_, field::protocol_len) != ipv4_address::size) {
            return errc::unsupported;
        }
        return {};
    }

    /// The hardware type.
    std::uint16_t hardware_type() const noexcept { return load_be16(buffer_, field::hardware_type); }
    /// The protocol type.
    std::uint16_t protocol_type() const noexcept { return load_be16(buffer_, field::protocol_type); }
    /// The raw operation code; only 1 and 2 are defined for plain ARP.
    std::uint16_t operation_code() const noexcept { return load_be16(buffer_, field::operation); }
    /// The sender MAC.
    mac_address sender_mac() const noexcept { return mac_address::from_bytes(buffer_.subspan(field::sender_mac)); }
    /// The sender IP.
    ipv4_address sender_ip() const noexcept { return ipv4_address::from_bytes(buffer_.subspan(field::sender_ip)); }
    /// The target MAC.
    mac_address target_mac() const noexcept { return mac_address::from_bytes(buffer_.subspan(field::target_mac)); }
    /// The target IP.
    ipv4_address target_ip() const noexcept { return ipv4_address::from_bytes(buffer_.subspan(field::target_ip)); }
    /// The buffer.
    Bytes buffer() const noexcept { return buffer_; }

    /// Writes the operation field.
    void set_operation(operation op) noexcept requires writable_byte_buffer<Bytes> {
        store_be16(buffer_, field::operation, static_cast<std::uint16_t>(op));
    }
    /// Writes the sender MAC field.
    void set_sender_mac(mac_address mac) noexcept requires writable_byte_buffer<Bytes> { mac.store(buffer_, field::sender_mac); }
    /// Writes the sender IP field.
    void set_sender_ip(ipv4_address ip) noexcept requires writable_byte_buffer<Bytes> { ip.store(buffer_, field::sender_ip); }
    /// Writes the target MAC field.
    void set_target_mac(mac_address mac) noexcept requires writable_byte_buffer<Bytes> { mac.store(buffer_, field::target_mac); }
    /// Writes the target IP field.
    void set_target_ip(ipv4_address ip) noexcept requires writable_byte_buffer<Bytes> { ip.store(buffer_, field::target_ip); }

private:
    Bytes buffer_;
};

/// The parsed ARP packet.
struct repr {
    arp::operation operation = operation::request; ///< operation
    mac_address sender_mac; ///< sender MAC
    ipv4_address sender_ip; ///< sender IP
    mac_address target_mac; ///< target MAC
    ipv4_address target_ip; ///< target IP

    /// Parses a view.
    static result<repr> parse(const packet<const_bytes>& p) noexcept {
        if (auto ec = p.check_len()) return ec;
        const auto op = p.operation_code();
        if (op != static_cast<std::uint16_t>(operation::request) && op != static_cast<std::uint16_t>(operation::reply)) {
            return errc::unsupported; // RARP/InARP codes: not ours to answer
        }
        return repr{static_cast<arp::operation>(op), p.sender_mac(), p.sender_ip(), p.target_mac(), p.target_ip()};
    }
    /// Parses bytes.
    static result<repr> parse(const_bytes bytes) noexcept { return parse(packet<const_bytes>{bytes}); }

    /// A gratuitous ARP announces the sender's own address: sender and target IP are the same.
    bool is_gratuitous() const noexcept { return sender_ip == target_ip; }
    /// An ARP probe (RFC 5227) asks whether an address is free: the sender IP is 0.0.0.0.
    bool is_probe() const noexcept { return operation == operation::request && sender_ip.is_unspecified(); }

    /// The buffer length.
    static constexpr std::size_t buffer_len() noexcept { return packet_len; }

    /// Writes the packet into `buffer`.
    std::error_code emit(mutable_bytes buffer) const noexcept {
        if (buffer.size() < packet_len) return errc::buffer_too_small;
        store_be16(buffer, field::hardware_type, hardware_ethernet);
        store_be16(buffer, field::protocol_type, protocol_ipv4);
        store_u8(buffer, field::hardware_len, mac_address::size);
        store_u8(buffer, field::protocol_len, ipv4_address::size);
        store_be16(buffer, field::operation, static_cast<std::uint16_t>(operation));
        sender_mac.store(buffer, field::sender_mac);
        sender_ip.store(buffer, field::sender_ip);
        target_mac.store(buffer, field::target_mac);
        target_ip.store(buffer, field::target_ip);
        return {};
    }

    /// The reply a host owning `target_ip` with `own_mac` sends to this request.
    repr reply_from(mac_address own_mac) const noexcept {
        return repr{operation::reply, own_mac, target_ip, sender_mac, sender_ip};
    }

    /// Memberwise equality.
    bool operator==(const repr&) const noexcept = default;
};

} // namespace ankanet::wire::arp
