// Test support: a scratch directory that cleans up after itself, and reading a file whole. No
// Catch2 here, so the support headers that are Catch-free too (dhcp_clients.hpp,
// ankanetd_process.hpp) use it as well; a directory that cannot be made is an exception, which
// fails the test that wanted it.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include <stdlib.h>

namespace ankanet::test {

/// A scratch directory (named `<prefix>-XXXXXX` in the temp dir), removed with everything in it.
struct temp_dir {
    std::filesystem::path path;
    explicit temp_dir(std::string_view prefix = "ankanet-test") {
        std::string pattern = (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
        if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
        path = pattern;
    }
    ~temp_dir() {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    std::filesystem::path operator/(std::string_view name) const { return path / name; }
};

/// The whole file, byte for byte (empty when it cannot be read).
inline std::string read_text(const std::filesystem::path& path) {
    std::ifstream in{path, std::ios::binary};
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

} // namespace ankanet::test
