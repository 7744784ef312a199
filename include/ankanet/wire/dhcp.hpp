/// @file
/// ankanet::wire::dhcp — DHCPv4 / BOOTP messages (RFC 951, 2131, 2132), the UDP payload on ports 67/68.
///
/// Theory of operation
///
/// A message is the fixed 236-byte BOOTP header, the magic cookie 99.130.83.99 and a TLV options
/// area running to the end of the UDP payload. `packet<Bytes>` is a view over it; `check_len()`
/// proves the header and cookie are there (truncated), `op` is 1 or 2 and the cookie is right
/// (bad_field) and `hlen` is at most 16 (bad_length), after which no header accessor can read
/// outside the buffer. `check_options()` walks every option; `checked()` does both.
///
/// Options are read through `option_iterator`, the only code that turns an option length byte into
/// a span, and it proves each length against the end of the area it stands in before making the
/// span: an option that runs past its area is errc::bad_option, never a read past it (libslirp's
/// CVE-2021-3592 was a DHCP parser that trusted such a length). Pad (0) is skipped and end (255)
/// closes an area. Option overload (52) in the options field makes the `file` field (value 1), the
/// `sname` field (2) or both (3) further option areas, read in RFC 2131 §4.1 order: options, then
/// file, then sname, each closed by its own end option and bounded by its own field, so an option
/// in `file` can never spill into the cookie. Option 52 elsewhere, repeated, of a length other than 1
/// or with a value other than 1..3 is bad_option.
///
/// Decisions where the RFCs leave room:
///  * A missing end option is accepted: an area without one ends where its space ends. RFC 2131
///    requires the end option, but sloppy clients exist and the bound is the same either way. The
///    cost: a message cut exactly between two options still parses; the UDP length, checked a layer
///    down, is what guards against truncation in transit.
///  * Options may have length zero (rapid commit, 80, does); the typed accessors enforce the RFC 2132
///    minimum for their own options.
///  * RFC 3396 long options (one option split into several that must be concatenated) are not
///    supported: a typed option that appears more than once is refused with errc::unsupported, so no
///    two readers can disagree about which copy counts. Other codes may repeat; the iterator shows
///    every copy in order.
///
/// Typed accessors return result<std::optional<T>>: an empty optional when the option is absent, an
/// error when it is there but wrong (bad_option for a length the RFC does not allow, bad_field for a
/// forbidden value such as a maximum message size below 576, unsupported for a message type outside
/// 1..8). A malformed option anywhere makes every accessor fail: the message does not hold together.
///
/// `repr` is what a server needs from a message: the header fields, the typed options and spans
/// into the packet for variable data (no allocation), plus the raw option areas so that emit keeps
/// every other option in its original order. Emit writes the typed fields where their options stood
/// (appending those that were not in the raw areas), copies the rest, and flattens overloaded
/// `file`/`sname` options into the options field (never overloading itself), so a real client
/// message round-trips byte for byte (unless it overloads, or carries something other than zero
/// padding after its end option). `option_writer` builds options for replies into a fixed
/// buffer: cookie, TLVs checked against the buffer and an optional size limit (buffer_too_small),
/// end option, zero padding to the BOOTP minimum of 300 bytes (RFC 951's 64-byte vendor field).
/// Options longer than 255 bytes are refused (bad_length), since the writer does not split them.
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <ranges>
#include <span>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace ankanet::wire::dhcp {

inline constexpr std::uint16_t server_port = 67; ///< server port
inline constexpr std::uint16_t client_port = 68; ///< client port

inline constexpr std::size_t header_len = 236; ///< the fixed BOOTP header, up to the cookie
inline constexpr std::size_t cookie_len = 4; ///< cookie length
inline constexpr std::size_t options_offset = header_len + cookie_len; ///< options offset
inline constexpr std::size_t min_len = options_offset; ///< header and cookie; options may be empty
inline constexpr std::size_t bootp_min_len = 300;      ///< 236 + RFC 951's 64-byte vendor field
inline constexpr std::size_t chaddr_len = 16; ///< chaddr length
inline constexpr std::size_t sname_len = 64; ///< sname length
inline constexpr std::size_t file_len = 128; ///< file length
inline constexpr std::size_t max_option_len = 255; ///< max option length
inline constexpr std::uint32_t magic_cookie = 0x63825363; ///< 99.130.83.99

/// Smallest value option 57 may carry (RFC 2132 §9.10).
inline constexpr std::uint16_t min_max_message_size = 576;
/// IPv4 (without options) and UDP headers, which option 57 counts; see max_reply_len().
inline constexpr std::size_t ip_udp_overhead = 20 + 8;
/// The longest reply every client accepts: RFC 2131 §2 makes clients take 312 bytes of options,
/// i.e. a 576-byte IP datagram.
inline constexpr std::size_t default_max_reply_len = min_max_message_size - ip_udp_overhead;

/// `op`
inline constexpr std::uint8_t boot_request = 1;
/// boot reply
inline constexpr std::uint8_t boot_reply = 2;
/// `htype` for Ethernet (ARP hardware type 1), with `hlen` 6.
inline constexpr std::uint8_t htype_ethernet = 1;
/// The one defined bit of `flags` (RFC 2131 §2): reply by broadcast.
inline constexpr std::uint16_t broadcast_flag = 0x8000;
/// Values of option 52: which header fields carry options.
inline constexpr std::uint8_t overload_file = 1;
inline constexpr std::uint8_t overload_sname = 2; ///< overload sname
inline constexpr std::uint8_t overload_both = 3; ///< overload both

namespace field {
/// Byte offset of a field from the start of the DHCP message.
/// @{
inline constexpr std::size_t op = 0;
inline constexpr std::size_t htype = 1;
inline constexpr std::size_t hlen = 2;
inline constexpr std::size_t hops = 3;
inline constexpr std::size_t xid = 4;
inline constexpr std::size_t secs = 8;
inline constexpr std::size_t flags = 10;
inline constexpr std::size_t ciaddr = 12;
inline constexpr std::size_t yiaddr = 16;
inline constexpr std::size_t siaddr = 20;
inline constexpr std::size_t giaddr = 24;
inline constexpr std::size_t chaddr = 28;
inline constexpr std::size_t sname = 44;
inline constexpr std::size_t file = 108;
inline constexpr std::size_t cookie = 236;
inline constexpr std::size_t options = 240;
/// @}
} // namespace field

namespace option_code {
/// A DHCP option code (RFC 2132 and later).
/// @{
inline constexpr std::uint8_t pad = 0;
inline constexpr std::uint8_t subnet_mask = 1;
inline constexpr std::uint8_t router = 3;
inline constexpr std::uint8_t dns_servers = 6;
inline constexpr std::uint8_t host_name = 12;
inline constexpr std::uint8_t domain_name = 15;
inline constexpr std::uint8_t interface_mtu = 26;
inline constexpr std::uint8_t broadcast_address = 28;
inline constexpr std::uint8_t requested_ip = 50;
inline constexpr std::uint8_t lease_time = 51;
inline constexpr std::uint8_t overload = 52;
inline constexpr std::uint8_t message_type = 53;
inline constexpr std::uint8_t server_id = 54;
inline constexpr std::uint8_t parameter_request_list = 55;
inline constexpr std::uint8_t message = 56;
inline constexpr std::uint8_t max_message_size = 57;
inline constexpr std::uint8_t renewal_time = 58;
inline constexpr std::uint8_t rebinding_time = 59;
inline constexpr std::uint8_t vendor_class = 60;
inline constexpr std::uint8_t client_id = 61;
inline constexpr std::uint8_t rapid_commit = 80;
inline constexpr std::uint8_t domain_search = 119;
inline constexpr std::uint8_t classless_static_routes = 121;
inline constexpr std::uint8_t end = 255;
/// @}
} // namespace option_code

/// DHCP message type, option 53 (RFC 2132 §9.6).
enum class message_type : std::uint8_t {
    discover = 1,
    offer = 2,
    request = 3,
    decline = 4,
    ack = 5,
    nak = 6,
    release = 7,
    inform = 8,
};

/// The most a client accepts in a reply, as a UDP payload length, given its option 57.
///
/// Clients read option 57 two ways: udhcpc sends 576, the IP datagram minimum that RFC 2131 §2
/// has in mind, while dhcpcd sends its MTU minus 28, a UDP payload size. Subtracting the IP and UDP
/// headers is safe under both readings. Without the option (or with one below 576, which RFC 2132
/// forbids) the answer is default_max_reply_len.
constexpr std::size_t max_reply_len(std::optional<std::uint16_t> max_message_size) noexcept {
    if (!max_message_size || *max_message_size < min_max_message_size) return default_max_reply_len;
    return std::size_t{*max_message_size} - ip_udp_overhead;
}

// --- options ----------------------------------------------------------------------------------

/// Where an option was found.
enum class option_area : std::uint8_t { options, file, sname };

/// One option: its code and a span over its value, inside the area it was found in.
struct option {
    std::uint8_t code = 0; ///< code
    const_bytes data; ///< data
    option_area area = option_area::options; ///< area
};

/// Walks the options of a message, area by area; the end is std::default_sentinel.
///
/// Iteration stops at the first malformed option and error() says why; an iterator that reached the
/// end cleanly has no error. Whatever the input, it never reads outside the areas it was given.
class option_iterator {
public:
    using iterator_concept = std::input_iterator_tag; ///< the iterator concept type
    using value_type = option; ///< the value type
    using difference_type = std::ptrdiff_t; ///< the difference type

    /// An exhausted iterator.
    option_iterator() noexcept = default;

    /// @param options the options field (after the cookie)
    /// @param file, sname with `follow_overload`, the raw header fields, entered only when option 52
    ///        in `options` says so (reading a packet); without, option areas of their own, entered when
    ///        not empty (emitting a repr whose overloaded options were kept aside)
    /// @param yield_pads also stop at pad options (code 0, empty data), to copy them
    option_iterator(const_bytes options, const_bytes file, const_bytes sname, bool follow_overload,
                    bool yield_pads = false) noexcept
        : areas_{options, file, sname}, follow_overload_(follow_overload), yield_pads_(yield_pads), done_(false) {
        advance();
    }

    /// An exhausted iterator that carries `error`.
    static option_iterator failed(std::error_code error) noexcept {
        option_iterator it;
        it.error_ = error;
        return it;
    }

    /// The current option.
    const option& operator*() const noexcept { return current_; }
    /// The current option.
    const option* operator->() const noexcept { return &current_; }
    /// Moves to the next option.
    option_iterator& operator++() noexcept {
        advance();
        return *this;
    }
    /// Moves to the next option.
    void operator++(int) noexcept { advance(); }
    friend bool operator==(const option_iterator& it, std::default_sentinel_t) noexcept { return it.done_; }

    /// Why iteration stopped early; empty when it ran to the end (or has not yet).
    std::error_code error() const noexcept { return error_; }
    /// The value of option 52 seen so far, 0 when none.
    std::uint8_t overload() const noexcept { return overload_; }

private:
    static constexpr std::size_t area_count = 3;

    void advance() noexcept {
        while (!done_) {
            const const_bytes area = areas_[area_];
            if (pos_ >= area.size()) {
                // No end option: the area's own end closes it (lenient, and still bounded).
                next_area();
                continue;
            }
            const std::uint8_t code = load_u8(area, pos_);
            if (code == option_code::pad) {
                ++pos_;
                if (yield_pads_) {
                    current_ = option{code, {}, static_cast<option_area>(area_)};
                    return;
                }
                continue;
            }
            if (code == option_code::end) {
                next_area();
                continue;
            }
            // Both the length byte and the value must lie inside this area.
            if (area.size() - pos_ < 2) return fail(errc::bad_option);
            const std::size_t len = load_u8(area, pos_ + 1);
            if (area.size() - pos_ - 2 < len) return fail(errc::bad_option);
            const const_bytes data = area.subspan(pos_ + 2, len);
            pos_ += 2 + len;
            if (code == option_code::overload) {
                if (auto ec = note_overload(data)) return fail(ec);
            }
            current_ = option{code, data, static_cast<option_area>(area_)};
            return;
        }
    }

    std::error_code note_overload(const_bytes data) noexcept {
        // Only the options field may say where more options are, and only once.
        if (area_ != 0 || overload_ != 0 || data.size() != 1) return errc::bad_option;
        const std::uint8_t value = load_u8(data, 0);
        if (value < overload_file || value > overload_both) return errc::bad_option;
        overload_ = value;
        return {};
    }

    bool area_enabled(std::size_t area) const noexcept {
        if (!follow_overload_) return !areas_[area].empty();
        return (overload_ & (area == 1 ? overload_file : overload_sname)) != 0;
    }

    void next_area() noexcept {
        pos_ = 0;
        while (++area_ < area_count) {
            if (area_enabled(area_)) return;
        }
        done_ = true;
    }

    void fail(std::error_code error) noexcept {
        error_ = error;
        done_ = true;
    }

    std::array<const_bytes, area_count> areas_{}; // options, file, sname: RFC 2131 §4.1 order
    std::size_t area_ = 0;
    std::size_t pos_ = 0;
    std::uint8_t overload_ = 0;
    bool follow_overload_ = false;
    bool yield_pads_ = false;
    bool done_ = true;
    option current_{};
    std::error_code error_{};
};

static_assert(std::input_iterator<option_iterator>);
static_assert(std::sentinel_for<std::default_sentinel_t, option_iterator>);

/// The options of a message, for range-for. error() walks them all and says whether they hold.
class option_range {
public:
    /// The options in `options`, then in `file` and `sname` when `follow_overload` and option 52 say so.
    option_range(const_bytes options, const_bytes file, const_bytes sname, bool follow_overload) noexcept
        : options_(options), file_(file), sname_(sname), follow_overload_(follow_overload) {}
    /// A range with no options that reports `error` (e.g. a buffer too short to have options).
    explicit option_range(std::error_code error) noexcept : error_(error) {}

    /// The first option.
    option_iterator begin() const noexcept {
        if (error_) return option_iterator::failed(error_);
        return option_iterator{options_, file_, sname_, follow_overload_};
    }
    /// The end of the options.
    std::default_sentinel_t end() const noexcept { return {}; }

    /// The error.
    std::error_code error() const noexcept {
        auto it = begin();
        while (it != std::default_sentinel) ++it;
        return it.error();
    }

private:
    const_bytes options_;
    const_bytes file_;
    const_bytes sname_;
    bool follow_overload_ = false;
    std::error_code error_{};
};

namespace detail {

// Value decoders shared by the packet accessors and repr::parse; each enforces RFC 2132's length.

inline result<dhcp::message_type> decode_message_type(const_bytes data) noexcept {
    if (data.size() != 1) return errc::bad_option;
    const std::uint8_t value = load_u8(data, 0);
    if (value < 1 || value > 8) return errc::unsupported; // leasequery and friends, or nonsense
    return static_cast<dhcp::message_type>(value);
}

inline result<ipv4_address> decode_address(const_bytes data) noexcept {
    if (data.size() != ipv4_address::size) return errc::bad_option;
    return ipv4_address::from_bytes(data);
}

inline result<std::uint32_t> decode_u32(const_bytes data) noexcept {
    if (data.size() != 4) return errc::bad_option;
    return load_be32(data, 0);
}

inline result<std::uint16_t> decode_max_message_size(const_bytes data) noexcept {
    if (data.size() != 2) return errc::bad_option;
    const std::uint16_t value = load_be16(data, 0);
    if (value < min_max_message_size) return errc::bad_field;
    return value;
}

inline result<const_bytes> decode_bytes(const_bytes data, std::size_t min_size) noexcept {
    if (data.size() < min_size) return errc::bad_option;
    return data;
}

inline std::string_view as_text(const_bytes data) noexcept {
    return {reinterpret_cast<const char*>(data.data()), data.size()};
}

inline result<std::string_view> decode_text(const_bytes data) noexcept {
    if (data.empty()) return errc::bad_option;
    return as_text(data);
}

/// The options repr carries as typed fields, in the order emit appends those not already placed.
inline constexpr std::array<std::uint8_t, 9> typed_codes{
    option_code::message_type, option_code::requested_ip, option_code::server_id,
    option_code::lease_time,   option_code::max_message_size, option_code::client_id,
    option_code::host_name,    option_code::parameter_request_list, option_code::vendor_class,
};

/// A bit per typed option (0 for any other code), to find repeats and track what emit placed.
constexpr std::uint16_t typed_bit(std::uint8_t code) noexcept {
    for (std::size_t i = 0; i < typed_codes.size(); ++i) {
        if (typed_codes[i] == code) return static_cast<std::uint16_t>(1u << i);
    }
    return 0;
}

inline bool bytes_equal(const_bytes a, const_bytes b) noexcept { return std::ranges::equal(a, b); }

/// Equal as fixed-size header fields: a shorter span stands for itself followed by zeros.
inline bool zero_padded_equal(const_bytes a, const_bytes b) noexcept {
    const std::size_t n = std::max(a.size(), b.size());
    for (std::size_t i = 0; i < n; ++i) {
        const std::byte x = i < a.size() ? a[i] : std::byte{0};
        const std::byte y = i < b.size() ? b[i] : std::byte{0};
        if (x != y) return false;
    }
    return true;
}

/// Bytes one domain name takes in RFC 1035 §3.1 form, uncompressed; bad_field for an empty name or
/// label, or a label over 63 bytes; bad_length for a name over 255 bytes.
inline result<std::size_t> encoded_name_len(std::string_view name) noexcept {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1); // "example.com." is the same name
    if (name.empty()) return errc::bad_field;
    std::size_t len = 1; // the root label
    while (true) {
        const std::size_t dot = name.find('.');
        const std::size_t label = dot == std::string_view::npos ? name.size() : dot;
        if (label == 0 || label > 63) return errc::bad_field;
        len += 1 + label;
        if (dot == std::string_view::npos) break;
        name.remove_prefix(dot + 1);
    }
    if (len > 255) return errc::bad_length;
    return len;
}

/// Writes `name` (already measured by encoded_name_len) at `at`; returns the offset after it.
inline std::size_t encode_name(mutable_bytes out, std::size_t at, std::string_view name) noexcept {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    while (true) {
        const std::size_t dot = name.find('.');
        const std::string_view label = name.substr(0, dot);
        store_u8(out, at, static_cast<std::uint8_t>(label.size()));
        store_bytes(out, at + 1, as_bytes(label));
        at += 1 + label.size();
        if (dot == std::string_view::npos) break;
        name.remove_prefix(dot + 1);
    }
    store_u8(out, at, 0);
    return at + 1;
}

} // namespace detail

// --- packet -----------------------------------------------------------------------------------

/// A view of a DHCP message (a UDP payload).
template <byte_buffer Bytes>
class packet {
public:
    /// Views `buffer` without checking it; check_len() (or checked()) validates it before the accessors are used.
    explicit packet(Bytes buffer) noexcept : buffer_(buffer) {}

    /// Wraps `buffer` and validates the header, the cookie and every option.
    static result<packet> checked(Bytes buffer) noexcept {
        packet message{buffer};
        if (auto ec = message.check_len()) return ec;
        if (auto ec = message.check_options()) return ec;
        return message;
    }

    /// The fixed header and cookie fit, `op` is a request or reply, `hlen` fits `chaddr`, and the
    /// cookie is DHCP's. Afterwards no header accessor reads outside the buffer.
    std::error_code check_len() const noexcept {
        if (buffer_.size() < min_len) return errc::truncated;
        if (op() != boot_request && op() != boot_reply) return errc::bad_field;
        if (hlen() > chaddr_len) return errc::bad_length;
        if (cookie() != magic_cookie) return errc::bad_field; // plain BOOTP, or not BOOTP at all
        return {};
    }

    /// Every option, in every area option 52 opens, lies within its area.
    std::error_code check_options() const noexcept { return options().error(); }

    /// The op.
    std::uint8_t op() const noexcept { return load_u8(buffer_, field::op); }
    /// The htype.
    std::uint8_t htype() const noexcept { return load_u8(buffer_, field::htype); }
    /// The hlen.
    std::uint8_t hlen() const noexcept { return load_u8(buffer_, field::hlen); }
    /// The hops.
    std::uint8_t hops() const noexcept { return load_u8(buffer_, field::hops); }
    /// The XID.
    std::uint32_t xid() const noexcept { return load_be32(buffer_, field::xid); }
    /// The secs.
    std::uint16_t secs() const noexcept { return load_be16(buffer_, field::secs); }
    /// The flags.
    std::uint16_t flags() const noexcept { return load_be16(buffer_, field::flags); }
    /// Whether broadcast.
    bool broadcast() const noexcept { return (flags() & broadcast_flag) != 0; }
    /// The ciaddr.
    ipv4_address ciaddr() const noexcept { return ipv4_address::from_bytes(buffer_.subspan(field::ciaddr)); }
    /// The yiaddr.
    ipv4_address yiaddr() const noexcept { return ipv4_address::from_bytes(buffer_.subspan(field::yiaddr)); }
    /// The siaddr.
    ipv4_address siaddr() const noexcept { return ipv4_address::from_bytes(buffer_.subspan(field::siaddr)); }
    /// The giaddr.
    ipv4_address giaddr() const noexcept { return ipv4_address::from_bytes(buffer_.subspan(field::giaddr)); }
    /// All 16 bytes of the client hardware address field.
    Bytes chaddr() const noexcept { return buffer_.subspan(field::chaddr, chaddr_len); }
    /// The first `hlen` bytes of chaddr (clamped to 16, so a setter cannot make it overrun).
    Bytes hardware_address() const noexcept {
        return buffer_.subspan(field::chaddr, std::min<std::size_t>(hlen(), chaddr_len));
    }
    /// The client's MAC address, when the hardware type is Ethernet with a 6-byte address.
    std::optional<mac_address> client_mac() const noexcept {
        if (htype() != htype_ethernet || hlen() != mac_address::size) return std::nullopt;
        return mac_address::from_bytes(chaddr());
    }
    /// The raw 64-byte server name field (options when overload() says so).
    Bytes sname() const noexcept { return buffer_.subspan(field::sname, sname_len); }
    /// The raw 128-byte boot file field (options when overload() says so).
    Bytes file() const noexcept { return buffer_.subspan(field::file, file_len); }
    /// The magic cookie field (99.130.83.99 in a DHCP message).
    std::uint32_t cookie() const noexcept { return load_be32(buffer_, field::cookie); }
    /// Everything after the cookie (the end option and any padding included).
    Bytes options_area() const noexcept {
        return buffer_.size() < options_offset ? Bytes{} : buffer_.subspan(options_offset);
    }
    /// The buffer.
    Bytes buffer() const noexcept { return buffer_; }

    /// The options of every area, in RFC 2131 §4.1 order; see option_iterator.
    option_range options() const noexcept {
        if (buffer_.size() < options_offset) return option_range{make_error_code(errc::truncated)};
        return option_range{options_area(), file(), sname(), true};
    }

    /// The one option with `code`: empty when absent, unsupported when repeated (RFC 3396
    /// concatenation is not done), or the error that makes the options malformed.
    result<std::optional<option>> find_option(std::uint8_t code) const noexcept {
        std::optional<option> found;
        auto it = options().begin();
        for (; it != std::default_sentinel; ++it) {
            if (it->code != code) continue;
            if (found) return errc::unsupported;
            found = *it;
        }
        if (it.error()) return it.error();
        return found;
    }

    // Typed options. Each is empty when absent and an error when present but malformed.

    /// Option 53, exactly 1 byte; values outside 1..8 are unsupported.
    result<std::optional<dhcp::message_type>> message_type() const noexcept {
        return typed<dhcp::message_type>(option_code::message_type, detail::decode_message_type);
    }
    /// Option 50, exactly 4 bytes.
    result<std::optional<ipv4_address>> requested_ip() const noexcept {
        return typed<ipv4_address>(option_code::requested_ip, detail::decode_address);
    }
    /// Option 54, exactly 4 bytes.
    result<std::optional<ipv4_address>> server_id() const noexcept {
        return typed<ipv4_address>(option_code::server_id, detail::decode_address);
    }
    /// Option 61, at least 2 bytes (a type and an identifier).
    result<std::optional<const_bytes>> client_id() const noexcept {
        return typed<const_bytes>(option_code::client_id, [](const_bytes d) { return detail::decode_bytes(d, 2); });
    }
    /// Option 12, at least 1 byte.
    result<std::optional<std::string_view>> host_name() const noexcept {
        return typed<std::string_view>(option_code::host_name, detail::decode_text);
    }
    /// Option 55, at least 1 byte: the codes the client asks for, in its order of preference.
    result<std::optional<const_bytes>> parameter_request_list() const noexcept {
        return typed<const_bytes>(option_code::parameter_request_list,
                                  [](const_bytes d) { return detail::decode_bytes(d, 1); });
    }
    /// Option 57, exactly 2 bytes; values below 576 are bad_field.
    result<std::optional<std::uint16_t>> max_message_size() const noexcept {
        return typed<std::uint16_t>(option_code::max_message_size, detail::decode_max_message_size);
    }
    /// Option 51, exactly 4 bytes, seconds (0xffffffff: infinite).
    result<std::optional<std::uint32_t>> lease_time() const noexcept {
        return typed<std::uint32_t>(option_code::lease_time, detail::decode_u32);
    }
    /// Option 52 (1: file, 2: sname, 3: both); its checks are the iterator's.
    result<std::optional<std::uint8_t>> overload() const noexcept {
        return typed<std::uint8_t>(option_code::overload,
                                   [](const_bytes d) -> result<std::uint8_t> { return load_u8(d, 0); });
    }
    /// Option 60, at least 1 byte.
    result<std::optional<std::string_view>> vendor_class() const noexcept {
        return typed<std::string_view>(option_code::vendor_class, detail::decode_text);
    }

    /// Writes the op field.
    void set_op(std::uint8_t value) noexcept requires writable_byte_buffer<Bytes> { store_u8(buffer_, field::op, value); }
    /// Writes the htype field.
    void set_htype(std::uint8_t value) noexcept requires writable_byte_buffer<Bytes> { store_u8(buffer_, field::htype, value); }
    /// Writes the hlen field.
    void set_hlen(std::uint8_t value) noexcept requires writable_byte_buffer<Bytes> { store_u8(buffer_, field::hlen, value); }
    /// Writes the hops field.
    void set_hops(std::uint8_t value) noexcept requires writable_byte_buffer<Bytes> { store_u8(buffer_, field::hops, value); }
    /// Writes the XID field.
    void set_xid(std::uint32_t value) noexcept requires writable_byte_buffer<Bytes> { store_be32(buffer_, field::xid, value); }
    /// Writes the secs field.
    void set_secs(std::uint16_t value) noexcept requires writable_byte_buffer<Bytes> { store_be16(buffer_, field::secs, value); }
    /// Writes the flags field.
    void set_flags(std::uint16_t value) noexcept requires writable_byte_buffer<Bytes> { store_be16(buffer_, field::flags, value); }
    /// Writes the broadcast field.
    void set_broadcast(bool on) noexcept requires writable_byte_buffer<Bytes> {
        set_flags(static_cast<std::uint16_t>(on ? flags() | broadcast_flag : flags() & ~broadcast_flag));
    }
    /// Writes the ciaddr field.
    void set_ciaddr(ipv4_address a) noexcept requires writable_byte_buffer<Bytes> { a.store(buffer_, field::ciaddr); }
    /// Writes the yiaddr field.
    void set_yiaddr(ipv4_address a) noexcept requires writable_byte_buffer<Bytes> { a.store(buffer_, field::yiaddr); }
    /// Writes the siaddr field.
    void set_siaddr(ipv4_address a) noexcept requires writable_byte_buffer<Bytes> { a.store(buffer_, field::siaddr); }
    /// Writes the giaddr field.
    void set_giaddr(ipv4_address a) noexcept requires writable_byte_buffer<Bytes> { a.store(buffer_, field::giaddr); }
    /// Writes the chaddr field.
    void set_chaddr(const std::array<std::uint8_t, chaddr_len>& value) noexcept requires writable_byte_buffer<Bytes> {
        store_bytes(buffer_, field::chaddr, std::as_bytes(std::span{value}));
    }
    /// Ethernet hardware type and length, `mac` in chaddr followed by zeros.
    void set_client_mac(mac_address mac) noexcept requires writable_byte_buffer<Bytes> {
        std::array<std::uint8_t, chaddr_len> value{};
        std::copy(mac.octets().begin(), mac.octets().end(), value.begin());
        set_htype(htype_ethernet);
        set_hlen(mac_address::size);
        set_chaddr(value);
    }
    /// Writes the magic cookie field.
    void set_cookie() noexcept requires writable_byte_buffer<Bytes> { store_be32(buffer_, field::cookie, magic_cookie); }

private:
    template <class T, class Decode>
    result<std::optional<T>> typed(std::uint8_t code, Decode decode) const noexcept {
        auto found = find_option(code);
        if (!found) return found.error();
        if (!*found) return std::optional<T>{};
        auto value = decode((*found)->data);
        if (!value) return value.error();
        return std::optional<T>{*value};
    }

    Bytes buffer_;
};

// --- option_writer ----------------------------------------------------------------------------

/// A route for option 121: traffic to `destination` goes through `router`.
struct classless_route {
    ipv4_prefix destination; ///< destination
    ipv4_address router; ///< router
};

/// Appends options to a message being built in a fixed buffer.
///
/// Construction writes the cookie; each call appends one option after checking that it, and the end
/// option still to come, fit in the buffer and under `limit` (buffer_too_small otherwise); finish()
/// writes the end option and pads with zeros to 300 bytes. A refused option writes nothing, and
/// the writer remembers the first error: every later call and finish() return it, so ignoring one
/// result can never produce a message that silently lacks an option. To skip an optional option
/// that does not fit, ask remaining() first. The writer never overloads sname/file.
///
/// @par Example
/// @code
/// reply.emit_header(buffer);
/// dhcp::option_writer w{buffer, dhcp::max_reply_len(request.max_message_size)};
/// w.message_type(dhcp::message_type::offer);
/// w.server_id(gateway);
/// w.lease_time(3600);
/// auto length = w.finish();   // result<std::size_t>: the message length, or the first error
/// @endcode
class option_writer {
public:
    /// @param message the whole message buffer (the fixed header is not touched)
    /// @param limit   the longest message allowed, e.g. max_reply_len(); at least 300
    explicit option_writer(mutable_bytes message, std::size_t limit = std::numeric_limits<std::size_t>::max()) noexcept
        : buffer_(message), limit_(std::min(limit, message.size())) {
        if (limit_ < bootp_min_len) {
            error_ = errc::buffer_too_small;
            return;
        }
        store_be32(buffer_, field::cookie, magic_cookie);
    }

    /// A writer that writes nothing and has no limit, to measure a message.
    static option_writer measure() noexcept { return option_writer{}; }

    /// Option `code` with value `data` (at most 255 bytes; code 0 and 255 are pad() and finish()).
    std::error_code raw(std::uint8_t code, const_bytes data) noexcept {
        if (code == option_code::pad || code == option_code::end) return fail(errc::bad_field);
        return put(code, data.size(), [&](std::size_t at) { write_bytes(at, data); });
    }

    /// `count` pad bytes.
    std::error_code pad(std::size_t count = 1) noexcept {
        if (auto ec = writable()) return ec;
        if (remaining() < count) return fail(errc::buffer_too_small);
        for (std::size_t i = 0; i < count; ++i) write_u8(pos_ + i, option_code::pad);
        pos_ += count;
        return {};
    }

    /// Writes option 1, the subnet mask.
    std::error_code subnet_mask(ipv4_address mask) noexcept { return address(option_code::subnet_mask, mask); }
    /// Option 3, one or more routers in order of preference.
    std::error_code routers(std::span<const ipv4_address> list) noexcept { return addresses(option_code::router, list); }
    /// Writes option 3 with one router.
    std::error_code router(ipv4_address a) noexcept { return routers(std::span{&a, 1}); }
    /// Option 6, one or more DNS servers in order of preference.
    std::error_code dns_servers(std::span<const ipv4_address> list) noexcept {
        return addresses(option_code::dns_servers, list);
    }
    /// Writes option 12, the host name.
    std::error_code host_name(std::string_view name) noexcept { return text(option_code::host_name, name); }
    /// Writes option 15, the domain name.
    std::error_code domain_name(std::string_view name) noexcept { return text(option_code::domain_name, name); }
    /// Option 26; RFC 2132 §5.1 sets the minimum at 68.
    std::error_code interface_mtu(std::uint16_t mtu) noexcept {
        if (mtu < 68) return fail(errc::bad_field);
        return u16(option_code::interface_mtu, mtu);
    }
    /// Writes option 28, the broadcast address.
    std::error_code broadcast_address(ipv4_address a) noexcept { return address(option_code::broadcast_address, a); }
    /// Writes option 50, the requested address.
    std::error_code requested_ip(ipv4_address a) noexcept { return address(option_code::requested_ip, a); }
    /// Writes option 51, the lease time in seconds.
    std::error_code lease_time(std::uint32_t seconds) noexcept { return u32(option_code::lease_time, seconds); }
    /// Writes option 53, the message type.
    std::error_code message_type(dhcp::message_type type) noexcept {
        const auto value = static_cast<std::uint8_t>(type);
        return put(option_code::message_type, 1, [&](std::size_t at) { write_u8(at, value); });
    }
    /// Writes option 54, the server identifier.
    std::error_code server_id(ipv4_address a) noexcept { return address(option_code::server_id, a); }
    /// Option 55, at least one code.
    std::error_code parameter_request_list(const_bytes codes) noexcept {
        return bytes_at_least(option_code::parameter_request_list, codes, 1);
    }
    /// Option 57, at least 576 (RFC 2132 §9.10).
    std::error_code max_message_size(std::uint16_t size) noexcept {
        if (size < min_max_message_size) return fail(errc::bad_field);
        return u16(option_code::max_message_size, size);
    }
    /// Option 58, T1.
    std::error_code renewal_time(std::uint32_t seconds) noexcept { return u32(option_code::renewal_time, seconds); }
    /// Option 59, T2.
    std::error_code rebinding_time(std::uint32_t seconds) noexcept { return u32(option_code::rebinding_time, seconds); }
    /// Writes option 60, the vendor class identifier.
    std::error_code vendor_class(std::string_view id) noexcept { return text(option_code::vendor_class, id); }
    /// Option 61, at least 2 bytes (a type and an identifier).
    std::error_code client_id(const_bytes id) noexcept { return bytes_at_least(option_code::client_id, id, 2); }

    /// Option 119 (RFC 3397): the names in RFC 1035 form, uncompressed. An empty list, an empty
    /// name or label, or a label over 63 bytes is bad_field; more than 255 bytes is bad_length.
    std::error_code domain_search(std::span<const std::string_view> names) noexcept {
        if (names.empty()) return fail(errc::bad_field);
        std::size_t len = 0;
        for (const std::string_view name : names) {
            const auto n = detail::encoded_name_len(name);
            if (!n) return fail(n.error());
            len += *n;
            if (len > max_option_len) return fail(errc::bad_length);
        }
        return put(option_code::domain_search, len, [&](std::size_t at) {
            if (measuring_) return;
            for (const std::string_view name : names) at = detail::encode_name(buffer_, at, name);
        });
    }

    /// Option 121 (RFC 3442): per route its prefix length, the significant octets of the network
    /// (host bits cleared) and the router.
    std::error_code classless_static_routes(std::span<const classless_route> routes) noexcept {
        if (routes.empty()) return fail(errc::bad_field);
        std::size_t len = 0;
        for (const auto& route : routes) {
            len += 1 + significant_octets(route.destination) + ipv4_address::size;
            if (len > max_option_len) return fail(errc::bad_length);
        }
        return put(option_code::classless_static_routes, len, [&](std::size_t at) {
            for (const auto& route : routes) {
                const std::size_t octets = significant_octets(route.destination);
                const auto network = route.destination.network().octets();
                write_u8(at, route.destination.length());
                for (std::size_t i = 0; i < octets; ++i) write_u8(at + 1 + i, network[i]);
                write_address(at + 1 + octets, route.router);
                at += 1 + octets + ipv4_address::size;
            }
        });
    }

    /// Bytes left for options, keeping one for the end option.
    std::size_t remaining() const noexcept {
        if (error_ || finished_ || limit_ < pos_ + 1) return 0;
        return limit_ - pos_ - 1;
    }
    /// The message length finish() will give (or gave).
    std::size_t finished_len() const noexcept { return std::max(pos_ + (finished_ ? 0 : 1), bootp_min_len); }
    /// The first error met, if any.
    std::error_code error() const noexcept { return error_; }

    /// Writes the end option and zero padding up to 300 bytes; returns the message length or the
    /// first error. The writer accepts nothing more afterwards.
    result<std::size_t> finish() noexcept {
        if (auto ec = writable()) return ec;
        const std::size_t total = finished_len();
        write_u8(pos_, option_code::end);
        for (std::size_t i = pos_ + 1; i < total; ++i) write_u8(i, 0);
        pos_ = total;
        finished_ = true;
        return total;
    }

private:
    option_writer() noexcept : limit_(std::numeric_limits<std::size_t>::max()), measuring_(true) {}

    static std::size_t significant_octets(ipv4_prefix prefix) noexcept { return (std::size_t{prefix.length()} + 7) / 8; }

    std::error_code fail(std::error_code error) noexcept {
        if (!error_) error_ = error;
        return error_;
    }

    std::error_code writable() noexcept {
        if (error_) return error_;
        if (finished_) return fail(errc::bad_field);
        return {};
    }

    template <class Fill>
    std::error_code put(std::uint8_t code, std::size_t len, Fill fill) noexcept {
        if (auto ec = writable()) return ec;
        if (len > max_option_len) return fail(errc::bad_length);
        if (remaining() < 2 + len) return fail(errc::buffer_too_small);
        write_u8(pos_, code);
        write_u8(pos_ + 1, static_cast<std::uint8_t>(len));
        fill(pos_ + 2);
        pos_ += 2 + len;
        return {};
    }

    std::error_code address(std::uint8_t code, ipv4_address a) noexcept {
        return put(code, ipv4_address::size, [&](std::size_t at) { write_address(at, a); });
    }
    std::error_code addresses(std::uint8_t code, std::span<const ipv4_address> list) noexcept {
        if (list.empty()) return fail(errc::bad_field);
        if (list.size() > max_option_len / ipv4_address::size) return fail(errc::bad_length);
        return put(code, list.size() * ipv4_address::size, [&](std::size_t at) {
            for (const ipv4_address a : list) {
                write_address(at, a);
                at += ipv4_address::size;
            }
        });
    }
    std::error_code u16(std::uint8_t code, std::uint16_t value) noexcept {
        return put(code, 2, [&](std::size_t at) {
            if (!measuring_) store_be16(buffer_, at, value);
        });
    }
    std::error_code u32(std::uint8_t code, std::uint32_t value) noexcept {
        return put(code, 4, [&](std::size_t at) {
            if (!measuring_) store_be32(buffer_, at, value);
        });
    }
    std::error_code text(std::uint8_t code, std::string_view value) noexcept {
        return bytes_at_least(code, as_bytes(value), 1);
    }
    std::error_code bytes_at_least(std::uint8_t code, const_bytes value, std::size_t min_size) noexcept {
        if (value.size() < min_size || value.size() > max_option_len) return fail(errc::bad_length);
        return put(code, value.size(), [&](std::size_t at) { write_bytes(at, value); });
    }

    void write_u8(std::size_t at, std::uint8_t value) noexcept {
        if (!measuring_) store_u8(buffer_, at, value);
    }
    void write_bytes(std::size_t at, const_bytes value) noexcept {
        if (!measuring_) store_bytes(buffer_, at, value);
    }
    void write_address(std::size_t at, ipv4_address a) noexcept {
        if (!measuring_) a.store(buffer_, at);
    }

    mutable_bytes buffer_;
    std::size_t limit_ = 0;
    std::size_t pos_ = options_offset;
    bool measuring_ = false;
    bool finished_ = false;
    std::error_code error_{};
};

// --- repr -------------------------------------------------------------------------------------

/// A parsed DHCP message: the header, the options a server acts on, and the rest kept raw.
///
/// Spans and string_views point into the parsed buffer, which must outlive the repr. A span left
/// empty means the option is absent (every one of them has a minimum length of at least 1).
struct repr {
    std::uint8_t op = boot_request; ///< op
    std::uint8_t htype = htype_ethernet; ///< htype
    std::uint8_t hlen = mac_address::size; ///< hlen
    std::uint8_t hops = 0; ///< hops
    std::uint32_t xid = 0; ///< XID
    std::uint16_t secs = 0; ///< secs
    std::uint16_t flags = 0; ///< flags
    ipv4_address ciaddr; ///< ciaddr
    ipv4_address yiaddr; ///< yiaddr
    ipv4_address siaddr; ///< siaddr
    ipv4_address giaddr; ///< giaddr

    /// chaddr
    std::array<std::uint8_t, chaddr_len> chaddr{};
    /// At most 64 bytes, zero-padded on emit; empty when the field carried options.
    const_bytes sname;
    /// At most 128 bytes, zero-padded on emit; empty when the field carried options.
    const_bytes file;

    std::optional<dhcp::message_type> message_type;   ///< 53
    std::optional<ipv4_address> requested_ip;         ///< 50
    std::optional<ipv4_address> server_id;            ///< 54
    const_bytes client_id;                            ///< 61, at least 2 bytes when present
    std::string_view host_name;                       ///< 12
    const_bytes parameter_request_list;               ///< 55, codes in the client's order
    std::optional<std::uint16_t> max_message_size;    ///< 57, at least 576
    std::optional<std::uint32_t> lease_time;          ///< 51
    std::string_view vendor_class;                    ///< 60

    /// The options field as received. emit copies its other options in order and puts each typed
    /// field where its option stood; the typed fields are authoritative for their codes (an
    /// option here whose typed field is unset is dropped).
    const_bytes options;
    /// The file and sname fields when option 52 made them option areas; emit moves their options
    /// into the options field, after those of `options`.
    const_bytes file_options;
    const_bytes sname_options; ///< sname options

    /// Parses a view.
    static result<repr> parse(const packet<const_bytes>& message) noexcept {
        if (auto ec = message.check_len()) return ec;
        repr r;
        r.op = message.op();
        r.htype = message.htype();
        r.hlen = message.hlen();
        r.hops = message.hops();
        r.xid = message.xid();
        r.secs = message.secs();
        r.flags = message.flags();
        r.ciaddr = message.ciaddr();
        r.yiaddr = message.yiaddr();
        r.siaddr = message.siaddr();
        r.giaddr = message.giaddr();
        const const_bytes chaddr = message.chaddr();
        for (std::size_t i = 0; i < chaddr_len; ++i) r.chaddr[i] = load_u8(chaddr, i);

        std::uint16_t seen = 0;
        auto it = message.options().begin();
        for (; it != std::default_sentinel; ++it) {
            const std::uint16_t bit = detail::typed_bit(it->code);
            if (bit == 0) continue;
            if ((seen & bit) != 0) return errc::unsupported; // RFC 3396 concatenation: not done
            seen = static_cast<std::uint16_t>(seen | bit);
            if (auto ec = r.set_typed(it->code, it->data)) return ec;
        }
        if (it.error()) return it.error();

        r.options = message.options_area();
        if ((it.overload() & overload_file) != 0) r.file_options = message.file();
        else r.file = message.file();
        if ((it.overload() & overload_sname) != 0) r.sname_options = message.sname();
        else r.sname = message.sname();
        return r;
    }
    /// Parses bytes.
    static result<repr> parse(const_bytes message) noexcept { return parse(packet<const_bytes>{message}); }
    /// The repr points into the message, so parsing a temporary container would leave it dangling.
    template <class Container>
        requires(std::ranges::range<Container> && !std::is_lvalue_reference_v<Container> &&
                 !std::ranges::borrowed_range<Container>)
    static result<repr> parse(Container&&) = delete;

    /// The client's MAC address, when the hardware type is Ethernet with a 6-byte address.
    std::optional<mac_address> client_mac() const noexcept {
        if (htype != htype_ethernet || hlen != mac_address::size) return std::nullopt;
        return mac_address{{chaddr[0], chaddr[1], chaddr[2], chaddr[3], chaddr[4], chaddr[5]}};
    }
    /// Whether broadcast.
    bool broadcast() const noexcept { return (flags & broadcast_flag) != 0; }

    /// The message length emit() writes (meaningful when emit would succeed).
    std::size_t buffer_len() const noexcept {
        auto writer = option_writer::measure();
        (void)emit_options(writer);
        return writer.finished_len();
    }

    /// Writes the whole message: header, cookie, options, end option, padding to 300 bytes.
    std::error_code emit(mutable_bytes buffer) const noexcept {
        if (auto ec = emit_header(buffer)) return ec;
        option_writer writer{buffer};
        if (auto ec = emit_options(writer)) return ec;
        const auto len = writer.finish();
        return len ? std::error_code{} : len.error();
    }

    /// Writes the 236-byte fixed header only, for a reply whose options an option_writer then builds.
    std::error_code emit_header(mutable_bytes buffer) const noexcept {
        if (buffer.size() < header_len) return errc::buffer_too_small;
        if (op != boot_request && op != boot_reply) return errc::bad_field;
        if (hlen > chaddr_len || sname.size() > sname_len || file.size() > file_len) return errc::bad_length;
        store_u8(buffer, field::op, op);
        store_u8(buffer, field::htype, htype);
        store_u8(buffer, field::hlen, hlen);
        store_u8(buffer, field::hops, hops);
        store_be32(buffer, field::xid, xid);
        store_be16(buffer, field::secs, secs);
        store_be16(buffer, field::flags, flags);
        ciaddr.store(buffer, field::ciaddr);
        yiaddr.store(buffer, field::yiaddr);
        siaddr.store(buffer, field::siaddr);
        giaddr.store(buffer, field::giaddr);
        store_bytes(buffer, field::chaddr, std::as_bytes(std::span{chaddr}));
        const mutable_bytes names = buffer.subspan(field::sname, sname_len + file_len);
        std::fill(names.begin(), names.end(), std::byte{0});
        store_bytes(buffer, field::sname, sname);
        store_bytes(buffer, field::file, file);
        return {};
    }

    /// Appends the options to `writer`: the raw areas in order (pads of the options field kept,
    /// option 52 dropped), each typed field where its option stood, then the typed fields that had
    /// no place, in the order of detail::typed_codes. Does not finish the writer.
    std::error_code emit_options(option_writer& writer) const noexcept {
        std::uint16_t placed = 0;
        option_iterator it{options, file_options, sname_options, false, true};
        for (; it != std::default_sentinel; ++it) {
            const option& o = *it;
            if (o.code == option_code::pad) {
                if (o.area == option_area::options) writer.pad();
                continue;
            }
            if (o.code == option_code::overload) continue; // the options all land in the options field
            const std::uint16_t bit = detail::typed_bit(o.code);
            if (bit == 0) {
                writer.raw(o.code, o.data);
            } else if ((placed & bit) == 0) {
                placed = static_cast<std::uint16_t>(placed | bit);
                emit_typed(writer, o.code);
            }
        }
        if (it.error()) return it.error();
        for (const std::uint8_t code : detail::typed_codes) {
            if ((placed & detail::typed_bit(code)) == 0) emit_typed(writer, code);
        }
        return writer.error();
    }

    /// Field by field; sname/file as zero-padded fields; the raw areas by their other options (code
    /// and value, in order, pads and option 52 aside), not by their bytes.
    friend bool operator==(const repr& a, const repr& b) noexcept {
        return a.op == b.op && a.htype == b.htype && a.hlen == b.hlen && a.hops == b.hops && a.xid == b.xid &&
               a.secs == b.secs && a.flags == b.flags && a.ciaddr == b.ciaddr && a.yiaddr == b.yiaddr &&
               a.siaddr == b.siaddr && a.giaddr == b.giaddr && a.chaddr == b.chaddr &&
               detail::zero_padded_equal(a.sname, b.sname) && detail::zero_padded_equal(a.file, b.file) &&
               a.message_type == b.message_type && a.requested_ip == b.requested_ip && a.server_id == b.server_id &&
               detail::bytes_equal(a.client_id, b.client_id) && a.host_name == b.host_name &&
               detail::bytes_equal(a.parameter_request_list, b.parameter_request_list) &&
               a.max_message_size == b.max_message_size && a.lease_time == b.lease_time &&
               a.vendor_class == b.vendor_class && same_other_options(a, b);
    }

private:
    std::error_code set_typed(std::uint8_t code, const_bytes data) noexcept {
        switch (code) {
        case option_code::message_type: return assign(message_type, detail::decode_message_type(data));
        case option_code::requested_ip: return assign(requested_ip, detail::decode_address(data));
        case option_code::server_id: return assign(server_id, detail::decode_address(data));
        case option_code::client_id: return assign(client_id, detail::decode_bytes(data, 2));
        case option_code::host_name: return assign(host_name, detail::decode_text(data));
        case option_code::parameter_request_list: return assign(parameter_request_list, detail::decode_bytes(data, 1));
        case option_code::max_message_size: return assign(max_message_size, detail::decode_max_message_size(data));
        case option_code::lease_time: return assign(lease_time, detail::decode_u32(data));
        case option_code::vendor_class: return assign(vendor_class, detail::decode_text(data));
        default: return {};
        }
    }

    template <class Field, class T>
    static std::error_code assign(Field& to, const result<T>& value) noexcept {
        if (!value) return value.error();
        to = *value;
        return {};
    }

    void emit_typed(option_writer& writer, std::uint8_t code) const noexcept {
        switch (code) {
        case option_code::message_type:
            if (message_type) writer.message_type(*message_type);
            break;
        case option_code::requested_ip:
            if (requested_ip) writer.requested_ip(*requested_ip);
            break;
        case option_code::server_id:
            if (server_id) writer.server_id(*server_id);
            break;
        case option_code::client_id:
            if (!client_id.empty()) writer.client_id(client_id);
            break;
        case option_code::host_name:
            if (!host_name.empty()) writer.host_name(host_name);
            break;
        case option_code::parameter_request_list:
            if (!parameter_request_list.empty()) writer.parameter_request_list(parameter_request_list);
            break;
        case option_code::max_message_size:
            if (max_message_size) writer.max_message_size(*max_message_size);
            break;
        case option_code::lease_time:
            if (lease_time) writer.lease_time(*lease_time);
            break;
        case option_code::vendor_class:
            if (!vendor_class.empty()) writer.vendor_class(vendor_class);
            break;
        default: break;
        }
    }

    static bool same_other_options(const repr& a, const repr& b) noexcept {
        option_iterator x{a.options, a.file_options, a.sname_options, false};
        option_iterator y{b.options, b.file_options, b.sname_options, false};
        const auto skip_carried = [](option_iterator& it) {
            while (it != std::default_sentinel &&
                   (detail::typed_bit(it->code) != 0 || it->code == option_code::overload)) {
                ++it;
            }
        };
        while (true) {
            skip_carried(x);
            skip_carried(y);
            const bool x_done = x == std::default_sentinel;
            const bool y_done = y == std::default_sentinel;
            if (x_done || y_done) return x_done && y_done && x.error() == y.error();
            if (x->code != y->code || !detail::bytes_equal(x->data, y->data)) return false;
            ++x;
            ++y;
        }
    }
};

} // namespace ankanet::wire::dhcp
