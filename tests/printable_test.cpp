#include <ankanet/printable.hpp>

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

using namespace std::string_view_literals;
using ankanet::printable;

namespace {

std::string shown(std::string_view text, std::size_t max_bytes = ankanet::printable_default_max_bytes) {
    return fmt::format("{}", printable(text, max_bytes));
}

/// True when every character of `s` is printable ASCII: nothing that ends, rewrites or recolours a line.
bool all_printable_ascii(std::string_view s) {
    for (const char c : s) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte > 0x7e) return false;
    }
    return true;
}

/// Undoes the escaping of a text that was not truncated: `\xNN` -> the byte.
std::string unescape(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\') {
            REQUIRE(i + 3 < s.size());
            REQUIRE(s[i + 1] == 'x');
            out.push_back(static_cast<char>(std::stoi(std::string{s.substr(i + 2, 2)}, nullptr, 16)));
            i += 3;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

} // namespace

TEST_CASE("printable: printable ASCII is written as it is") {
    CHECK(shown("") == "");
    CHECK(shown("guest-udhcpc") == "guest-udhcpc");
    CHECK(shown("A host name, with spaces & {braces} ~!") == "A host name, with spaces & {braces} ~!");
    CHECK(shown(" ") == " ");
    CHECK(shown("~") == "~");
}

TEST_CASE("printable: a newline or carriage return cannot start or rewrite a log line") {
    CHECK(shown("evil\nankanetd: FORGED") == "evil\\x0aankanetd: FORGED");
    CHECK(shown("\nankanetd: FORGED\n") == "\\x0aankanetd: FORGED\\x0a");
    CHECK(shown("ok\rankanetd: FORGED") == "ok\\x0dankanetd: FORGED");
    CHECK(shown("a\r\nb") == "a\\x0d\\x0ab");
    const auto line = fmt::format("ankanetd: DHCP leased 192.168.64.2 to 52:54:00:00:00:01 ({})\n",
                                  printable("x\nankanetd: FORGED"));
    CHECK(line.find('\n') == line.size() - 1); // one line, whatever the host name held
}

TEST_CASE("printable: ANSI escape sequences, NUL, DEL, tab and bytes from 0x80 are escaped") {
    CHECK(shown("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m");
    CHECK(shown("\x1b]0;title\x07") == "\\x1b]0;title\\x07");
    CHECK(shown("a\0b"sv) == "a\\x00b");
    CHECK(shown("\0"sv) == "\\x00");
    CHECK(shown("\x7f") == "\\x7f");
    CHECK(shown("\t") == "\\x09");
    CHECK(shown("\xff") == "\\xff");
    CHECK(shown("\x80\x9b") == "\\x80\\x9b"); // 0x9b: the 8-bit CSI
    CHECK(shown("caf\xc3\xa9") == "caf\\xc3\\xa9"); // UTF-8 too: a log line is plain ASCII
}

TEST_CASE("printable: the backslash is escaped, so the text cannot fake an escape or the marker") {
    CHECK(shown("\\") == "\\x5c");
    CHECK(shown("\\x0a") == "\\x5cx0a");
    CHECK(shown("\\...[3 more bytes]") == "\\x5c...[3 more bytes]");
}

TEST_CASE("printable: every byte value is escaped or kept, and decodes back to itself") {
    std::string all;
    for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
    const auto out = shown(all, all.size());
    CHECK(all_printable_ascii(out));
    CHECK(unescape(out) == all);
    // 95 printable characters minus the backslash (94) are kept, the other 162 bytes take 4 characters.
    CHECK(out.size() == 94 + 162 * 4);
    CHECK(ankanet::to_string(printable(all, all.size())) == out);
}

TEST_CASE("printable: long text is cut at max_bytes with a marker that says how much was left out") {
    const std::string kib(1024, 'a');
    const auto out = shown(kib);
    CHECK(out == std::string(256, 'a') + "\\...[768 more bytes]");
    CHECK(shown(kib, 10) == "aaaaaaaaaa\\...[1014 more bytes]");
    CHECK(shown("abc", 3) == "abc");                   // exactly max_bytes: no marker
    CHECK(shown("abcd", 3) == "abc\\...[1 more byte]");
    CHECK(shown("abc", 0) == "\\...[3 more bytes]");
    CHECK(shown("", 0) == "");

    // A 1 KiB name of newlines and escapes: one bounded line of printable ASCII.
    std::string hostile;
    while (hostile.size() < 1024) hostile += "\n\x1b[31mankanetd: FORGED\r\xff";
    hostile.resize(1024);
    const auto escaped = shown(hostile);
    CHECK(all_printable_ascii(escaped));
    CHECK(escaped.size() <= 4 * ankanet::printable_default_max_bytes + std::string_view{"\\...[768 more bytes]"}.size());
    CHECK(escaped.ends_with("\\...[768 more bytes]"));
}

TEST_CASE("printable: random bytes always give printable ASCII, and decode back when not cut") {
    std::mt19937 random{20240611};
    std::uniform_int_distribution<int> byte{0, 255};
    std::uniform_int_distribution<std::size_t> length{0, 300};
    for (int round = 0; round < 500; ++round) {
        std::string text(length(random), '\0');
        for (auto& c : text) c = static_cast<char>(byte(random));
        const auto out = shown(text, 300);
        INFO("round " << round);
        REQUIRE(all_printable_ascii(out));
        REQUIRE(unescape(out) == text);
    }
}

TEST_CASE("printable: the formatter works inside a larger format, and to_string agrees with it") {
    CHECK(fmt::format("[{}] [{}]", printable("a\nb"), printable("c")) == "[a\\x0ab] [c]");
    CHECK(ankanet::to_string(printable("x\x1by", 2)) == "x\\x1b\\...[1 more byte]");
    static_assert(ankanet::is_printable_as_is('a'));
    static_assert(!ankanet::is_printable_as_is('\\'));
    static_assert(!ankanet::is_printable_as_is('\x7f'));
    static_assert(!ankanet::is_printable_as_is('\x1f'));
    static_assert(ankanet::printable("abc", 2).max_bytes == 2);
}
