#include <ankanet/detail/atomic_file.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <system_error>

#include <sys/stat.h>
#include <unistd.h>
#include "../support/temp_dir.hpp"

namespace fs = std::filesystem;
using ankanet::detail::check_replaceable;
using ankanet::detail::replace_file;
using ankanet::detail::same_file;

using ankanet::test::temp_dir;
using ankanet::test::read_text;

namespace {

std::set<std::string> listing(const fs::path& dir) {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator{dir}) names.insert(entry.path().filename().string());
    return names;
}
} // namespace

TEST_CASE("replace_file writes the whole file, with its mode, and leaves no temporary file") {
    temp_dir dir;
    const auto file = dir.path / "state";
    REQUIRE(!replace_file(file, "one\n", 0600));
    struct ::stat st{};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    REQUIRE(!replace_file(file, "two\n"));
    CHECK(read_text(file) == "two\n");
    CHECK(listing(dir.path) == std::set<std::string>{"state"});
    CHECK(replace_file(dir.path / "missing" / "state", "x") == std::errc::no_such_file_or_directory);
}

TEST_CASE("check_replaceable accepts a writable directory and leaves nothing behind") {
    temp_dir dir;
    std::string why;
    CHECK(!check_replaceable(dir.path / "leases", &why));
    CHECK(listing(dir.path).empty());

    std::ofstream{dir.path / "leases"} << "kept\n";
    CHECK(!check_replaceable(dir.path / "leases", &why));
    CHECK(listing(dir.path) == std::set<std::string>{"leases"});
    CHECK(read_text(dir.path / "leases") == "kept\n");

    // A relative path is replaced in the working directory.
    const auto cwd = fs::current_path();
    fs::current_path(dir.path);
    CHECK(!check_replaceable("relative", &why));
    fs::current_path(cwd);
    CHECK(listing(dir.path) == std::set<std::string>{"leases"});
}

TEST_CASE("check_replaceable refuses what replace_file could not write, saying why in words") {
    temp_dir dir;
    std::ofstream{dir.path / "plain"} << "x";
    fs::create_directory(dir.path / "sub");

    struct refused {
        fs::path path;
        std::string why;
    };
    const refused cases[] = {
        {"/nonexistent/leases", "directory /nonexistent does not exist"},
        {dir.path / "no" / "such" / "leases", "directory " + (dir.path / "no" / "such").string() + " does not exist"},
        {dir.path / "plain" / "leases", (dir.path / "plain").string() + " is not a directory"},
        {dir.path / "sub", (dir.path / "sub").string() + " is a directory"},
        {dir.path.string() + "/", dir.path.string() + "/ names a directory, not a file"},
        {"/dev/null", "/dev/null is not a regular file"},
        // procfs takes no new files, whoever asks (root too).
        {"/proc/x", "directory /proc does not let files be created in it"},
    };
    for (const auto& c : cases) {
        std::string why;
        INFO(c.path.string());
        CHECK(check_replaceable(c.path, &why));
        INFO(why);
        CHECK(why.find(c.why) == 0);
    }
    CHECK(listing(dir.path) == std::set<std::string>{"plain", "sub"});
    CHECK_FALSE(fs::exists("/proc/x"));
    CHECK(check_replaceable("/nonexistent/leases")); // `why` is optional
}

TEST_CASE("same_file: one file by any name, existing or not") {
    temp_dir dir;
    const auto a = dir.path / "a";
    std::ofstream{a} << "a";
    std::ofstream{dir.path / "b"} << "b";
    fs::create_directory(dir.path / "sub");
    fs::create_symlink(a, dir.path / "link-to-a");
    fs::create_symlink("sub", dir.path / "link-to-sub");
    fs::create_hard_link(a, dir.path / "hard-a");
    fs::create_symlink(dir.path / "not-yet", dir.path / "dangling");

    CHECK(same_file(a, a));
    CHECK(same_file(a, dir.path / "." / "a"));
    CHECK(same_file(a, dir.path / "sub" / ".." / "a"));
    CHECK(same_file(a, dir.path / "link-to-a"));
    CHECK(same_file(a, dir.path / "hard-a"));
    CHECK_FALSE(same_file(a, dir.path / "b"));

    // Files that do not exist yet: by their resolved paths.
    CHECK(same_file(dir.path / "new", dir.path / "sub" / ".." / "new"));
    CHECK(same_file(dir.path / "sub" / "new", dir.path / "link-to-sub" / "new"));
    CHECK(same_file(dir.path / "not-yet", dir.path / "dangling")); // where the link would write
    CHECK_FALSE(same_file(dir.path / "new", dir.path / "new.tmp"));
    CHECK_FALSE(same_file(dir.path / "new", a));

    const auto cwd = fs::current_path();
    fs::current_path(dir.path);
    CHECK(same_file("a", a));
    CHECK(same_file("new", dir.path / "new"));
    CHECK(same_file("./new", "sub/../new"));
    fs::current_path(cwd);
}
