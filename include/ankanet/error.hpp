/// @file
/// ankanet — error codes.
///
/// Every fallible operation reports a `std::error_code` in the ankanet category (or a
/// `result<T>` holding one), never an exception on the per-packet path. The codes name *why* a
/// packet or an input was refused, so counters and logs can say it plainly.
#pragma once

#include <string>
#include <system_error>
#include <type_traits>

namespace ankanet {

/// Why ankanet refused a packet, an input or an operation.
enum class errc {
    // Wire format: a packet that does not hold together.
    truncated = 1,         ///< The buffer is shorter than the header or a length field says.
    bad_length,            ///< A length field contradicts the buffer or the protocol's limits.
    bad_header_length,     ///< A header-length field is below the protocol minimum.
    bad_version,           ///< Unsupported protocol version (e.g. IPv4 version is not 4).
    bad_checksum,          ///< The checksum does not verify.
    bad_option,            ///< An option is malformed, runs past its space or has a bad length.
    unsupported,           ///< Well-formed, but a variant ankanet does not handle.
    buffer_too_small,      ///< An emit target is shorter than `buffer_len()`.
    bad_field,             ///< A field holds a value the protocol forbids.
    bad_pointer,           ///< A DNS compression pointer loops or points out of the message.
    // Backends.
    peer_closed,           ///< The other end of a VM's link went away (end of stream).
    // Text input from a user.
    bad_address_text,      ///< A MAC, IPv4 address or prefix did not parse.
};

namespace detail {

class error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "ankanet"; }

    std::string message(int code) const override {
        switch (static_cast<errc>(code)) {
        case errc::truncated: return "packet truncated";
        case errc::bad_length: return "length field does not match the packet";
        case errc::bad_header_length: return "header length below the protocol minimum";
        case errc::bad_version: return "unsupported protocol version";
        case errc::bad_checksum: return "checksum mismatch";
        case errc::bad_option: return "malformed option";
        case errc::unsupported: return "unsupported packet variant";
        case errc::buffer_too_small: return "output buffer too small";
        case errc::bad_field: return "field value not allowed by the protocol";
        case errc::bad_pointer: return "bad DNS compression pointer";
        case errc::peer_closed: return "peer closed the link";
        case errc::bad_address_text: return "malformed address text";
        }
        return "unknown ankanet error";
    }
};

} // namespace detail

/// The ankanet error category (one instance per program).
inline const std::error_category& error_category() noexcept {
    static const detail::error_category_impl instance;
    return instance;
}

/// Wraps `e` in a std::error_code of its category (found by argument-dependent lookup).
inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), error_category()};
}

} // namespace ankanet

template <>
struct std::is_error_code_enum<ankanet::errc> : std::true_type {};
