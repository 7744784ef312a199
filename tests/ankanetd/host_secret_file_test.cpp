#include <ankanetd/host_secret_file.hpp>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace {

namespace fs = std::filesystem;

struct scratch_dir {
    fs::path path = fs::temp_directory_path() / ("ankanetd-secret-test-" + std::to_string(::getpid()));
    scratch_dir() { fs::create_directories(path); }
    ~scratch_dir() {
        std::error_code ignored;
        fs::remove_all(path, ignored);
    }
};

std::string read(const fs::path& p) {
    std::ifstream in{p};
    return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

} // namespace

TEST_CASE("host secret file: created once with mode 0600, then read back unchanged") {
    scratch_dir dir;
    const auto file = dir.path / "mac-secret";
    std::string why;
    const auto created = ankanetd::load_or_create_host_secret(file, why);
    REQUIRE(created);
    CHECK(why.empty());
    CHECK(read(file) == created->to_string() + "\n");
    CHECK((fs::status(file).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
    CHECK_FALSE(fs::exists(dir.path / "mac-secret.tmp"));

    const auto again = ankanetd::load_or_create_host_secret(file, why);
    REQUIRE(again);
    CHECK(*again == *created);

    // Another file, another secret.
    const auto other = ankanetd::load_or_create_host_secret(dir.path / "other", why);
    REQUIRE(other);
    CHECK_FALSE(*other == *created);
}

TEST_CASE("host secret file: a file that holds no secret is an error naming it, and is left as it is") {
    scratch_dir dir;
    const auto file = dir.path / "mac-secret";
    for (const std::string content : {"", "0123456789abcdef\n", "0123456789abcdef0123456789abcdeg\n", "not a secret at all, not at all!"}) {
        INFO("content: " << content);
        {
            std::ofstream out{file};
            out << content;
        }
        std::string why;
        CHECK_FALSE(ankanetd::load_or_create_host_secret(file, why));
        CHECK(why == file.string() + ": does not hold a host secret (32 hexadecimal digits); it is left as it is");
        CHECK(read(file) == content);
    }
    // Written by hand, with CRLF: still the secret.
    {
        std::ofstream out{file};
        out << "000102030405060708090a0b0c0d0e0f\r\n";
    }
    std::string why;
    const auto secret = ankanetd::load_or_create_host_secret(file, why);
    REQUIRE(secret);
    CHECK(secret->to_string() == "000102030405060708090a0b0c0d0e0f");
}

TEST_CASE("host secret file: a directory that does not exist is a clear error") {
    std::string why;
    const fs::path file = "/nonexistent-ankanet-dir/mac-secret";
    CHECK_FALSE(ankanetd::load_or_create_host_secret(file, why));
    CHECK(why.starts_with("/nonexistent-ankanet-dir/mac-secret: cannot create the host secret: "));
}
