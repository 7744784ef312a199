/// @file
/// ankanet::printable — text that someone else chose, made safe to write into a log line.
///
/// Theory of operation. Much of what a network logs was written by a guest: a DHCP host name
/// (option 12), a DECLINE's message (56), a client identifier, a vendor class. Written as is, a
/// newline in it forges a whole log line (`"\nankanetd: leased 10.0.0.2 to ..."`), a carriage return
/// overwrites the line on a terminal, and ANSI escape sequences (ESC [ 31 m) recolour, move the
/// cursor or retitle the terminal of whoever reads the log. `printable(text)` wraps such text for
/// fmt: printable ASCII (0x20 space to 0x7e '~') is written as is, and every other byte — control
/// characters, DEL, every byte from 0x80 up (so UTF-8 too: a log line is plain ASCII) — and the
/// backslash itself are written as `\xNN` (two lowercase hex digits). Because a backslash from the
/// text always becomes `\x5c`, a backslash in the output always starts an escape written here: the
/// text cannot fake an escape, and cannot fake the truncation marker either.
///
/// Bounded. At most `max_bytes` bytes of the text are written (256 by default), so one line stays
/// at most 4 × max_bytes characters plus the marker however long the text; the rest is replaced by
/// the marker `\...[N more bytes]`.
///
/// The escaping is lossless for text up to max_bytes: `\xNN` decodes back to the byte, and every
/// other character is the byte itself.
///
/// @par Example
/// @code
///   fmt::print(stderr, "DHCP leased {} to {} ({})\n", address, mac, ankanet::printable(host_name));
///   // host name "evil\nankanetd: FORGED" -> "... (evil\x0aankanetd: FORGED)"
/// @endcode
#pragma once

#include <fmt/format.h>

#include <cstddef>
#include <iterator>
#include <string>
#include <string_view>

namespace ankanet {

/// How many bytes of a text printable() writes by default before the truncation marker.
inline constexpr std::size_t printable_default_max_bytes = 256;

/// A view of text to be written escaped (see printable()). Holds no copy: the text must outlive
/// the formatting call.
struct printable_text {
    std::string_view text; ///< text
    std::size_t max_bytes = printable_default_max_bytes; ///< max bytes
};

/// Wraps `text` for fmt: written with every byte that is not printable ASCII, and the backslash,
/// as `\xNN`; at most `max_bytes` bytes of it, the rest replaced by `\...[N more bytes]`.
/// @param text      any bytes (a guest's host name, a DHCP message, ...); not copied
/// @param max_bytes how many bytes of `text` are written at most
[[nodiscard]] constexpr printable_text printable(std::string_view text,
                                                 std::size_t max_bytes = printable_default_max_bytes) noexcept {
    return printable_text{text, max_bytes};
}

/// True for the bytes printable() writes as they are: printable ASCII except the backslash.
[[nodiscard]] constexpr bool is_printable_as_is(char c) noexcept {
    const auto byte = static_cast<unsigned char>(c);
    return byte >= 0x20 && byte <= 0x7e && c != '\\';
}

/// Writes `p` escaped to `out` (see printable()); returns the iterator past the last character.
template <class OutputIt>
OutputIt write_printable(OutputIt out, const printable_text& p) {
    constexpr char hex[] = "0123456789abcdef";
    const std::size_t shown = p.text.size() < p.max_bytes ? p.text.size() : p.max_bytes;
    for (std::size_t i = 0; i < shown; ++i) {
        const char c = p.text[i];
        if (is_printable_as_is(c)) {
            *out++ = c;
            continue;
        }
        const auto byte = static_cast<unsigned char>(c);
        *out++ = '\\';
        *out++ = 'x';
        *out++ = hex[byte >> 4];
        *out++ = hex[byte & 0x0f];
    }
    if (shown < p.text.size()) {
        const auto rest = p.text.size() - shown;
        out = fmt::format_to(out, "\\...[{} more byte{}]", rest, rest == 1 ? "" : "s");
    }
    return out;
}

/// `p` escaped, as a string.
[[nodiscard]] inline std::string to_string(const printable_text& p) {
    std::string out;
    write_printable(std::back_inserter(out), p);
    return out;
}

} // namespace ankanet

/// Formats ankanet::printable_text with an empty format spec only: "{}".
template <>
struct fmt::formatter<ankanet::printable_text> {
    /// Takes no format specification.
    constexpr auto parse(fmt::format_parse_context& ctx) {
        auto it = ctx.begin();
        if (it != ctx.end() && *it != '}') throw fmt::format_error("ankanet::printable takes no format spec");
        return it;
    }
    /// Writes the text.
    auto format(const ankanet::printable_text& p, fmt::format_context& ctx) const {
        return ankanet::write_printable(ctx.out(), p);
    }
};
