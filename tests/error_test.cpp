#include <ankanet/error.hpp>

#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <string_view>

TEST_CASE("ankanet error codes convert to std::error_code in their own category") {
    const std::error_code ec = ankanet::errc::bad_checksum;
    CHECK(ec.category().name() == std::string_view{"ankanet"});
    CHECK(ec.message() == "checksum mismatch");
    CHECK(ec == ankanet::errc::bad_checksum);
    CHECK(ec != ankanet::errc::truncated);
    CHECK(bool(ec));
}

TEST_CASE("every ankanet error code has its own message") {
    std::set<std::string> messages;
    for (int code = 1; code <= static_cast<int>(ankanet::errc::bad_address_text); ++code) {
        const auto message = ankanet::make_error_code(static_cast<ankanet::errc>(code)).message();
        CHECK(message != "unknown ankanet error");
        messages.insert(message);
    }
    CHECK(messages.size() == static_cast<std::size_t>(ankanet::errc::bad_address_text));
}
