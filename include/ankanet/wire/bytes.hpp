/// @file
/// ankanet::wire — byte spans and big-endian field access, the ground every packet view stands on.
///
/// Packet views are templated on their buffer type: `const_bytes` for reading, `mutable_bytes` for
/// writing. Field helpers take an offset that the *caller* has already proven in range (views do
/// so once, in check_len()); in debug builds they assert it again.
#pragma once

#include <boost/endian/conversion.hpp>

#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <type_traits>

namespace ankanet::wire {

using const_bytes = std::span<const std::byte>; ///< a read-only view of bytes
using mutable_bytes = std::span<std::byte>; ///< a writable view of bytes

/// A buffer type a packet view may stand on: a span of (possibly const) bytes.
template <class Bytes>
concept byte_buffer = std::is_same_v<Bytes, const_bytes> || std::is_same_v<Bytes, mutable_bytes>;

/// A buffer type a view may also write through.
template <class Bytes>
concept writable_byte_buffer = std::is_same_v<Bytes, mutable_bytes>;

/// ARP operations (RFC 826).
inline std::uint8_t load_u8(const_bytes bytes, std::size_t offset) noexcept {
    assert(offset < bytes.size());
    return static_cast<std::uint8_t>(bytes[offset]);
}
/// Reads the byte at `offset`. The caller has checked the bounds.
inline std::uint16_t load_be16(const_bytes bytes, std::size_t offset) noexcept {
    assert(offset + 2 <= bytes.size());
    return boost::endian::load_big_u16(reinterpret_cast<const unsigned char*>(bytes.data() + offset));
}
/// Reads a big-endian 16-bit value at `offset`. The caller has checked the bounds.
inline std::uint32_t load_be32(const_bytes bytes, std::size_t offset) noexcept {
    assert(offset + 4 <= bytes.size());
    return boost::endian::load_big_u32(reinterpret_cast<const unsigned char*>(bytes.data() + offset));
}
/// Reads a big-endian 32-bit value at `offset`. The caller has checked the bounds.
inline void store_u8(mutable_bytes bytes, std::size_t offset, std::uint8_t value) noexcept {
    assert(offset < bytes.size());
    bytes[offset] = std::byte{value};
}
/// Writes a byte at `offset`. The caller has checked the bounds.
inline void store_be16(mutable_bytes bytes, std::size_t offset, std::uint16_t value) noexcept {
    assert(offset + 2 <= bytes.size());
    boost::endian::store_big_u16(reinterpret_cast<unsigned char*>(bytes.data() + offset), value);
}
/// Writes `value` big-endian at `offset`. The caller has checked the bounds.
inline void store_be32(mutable_bytes bytes, std::size_t offset, std::uint32_t value) noexcept {
    assert(offset + 4 <= bytes.size());
    boost::endian::store_big_u32(reinterpret_cast<unsigned char*>(bytes.data() + offset), value);
}

/// Copies `from` into `to` at `offset`; the caller has checked that it fits.
inline void store_bytes(mutable_bytes to, std::size_t offset, const_bytes from) noexcept {
    assert(offset + from.size() <= to.size());
    if (!from.empty()) {
        std::memcpy(to.data() + offset, from.data(), from.size());
    }
}

/// The bytes of a string, e.g. for a host name option.
inline const_bytes as_bytes(std::string_view text) noexcept {
    return std::as_bytes(std::span{text.data(), text.size()});
}

/// A fixed array of bytes written as integers, for golden packets in tests and constants:
/// `make_bytes(0x45, 0x00, ...)`.
template <class... Ints>
constexpr std::array<std::byte, sizeof...(Ints)> make_bytes(Ints... values) noexcept {
    return {static_cast<std::byte>(values)...};
}

} // namespace ankanet::wire
