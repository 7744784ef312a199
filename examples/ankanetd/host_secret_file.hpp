// ankanetd's host secret file (--mac-secret FILE): the key stable MACs are derived from.
//
// The file holds the secret as 32 hexadecimal digits and a newline. It is read when it exists; a
// file that does not hold a secret is an error naming the file, never replaced (replacing it would
// silently give every VM a new MAC). When it does not exist, a fresh secret is generated and written
// the crash-safe way — a temporary file of mode 0600 in the same directory, fsync, rename, fsync
// of the directory — so the file either holds a complete secret or does not exist at all.
#pragma once

#include <ankanet/l2/mac_randomizer.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

namespace ankanetd {

namespace detail {

inline bool write_all_and_sync(int fd, const std::string& text) {
    std::size_t done = 0;
    while (done < text.size()) {
        const ::ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        done += static_cast<std::size_t>(n);
    }
    return ::fsync(fd) == 0;
}

inline bool sync_directory(const std::filesystem::path& dir) {
    const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::fsync(fd) == 0;
    ::close(fd);
    return ok;
}

} // namespace detail

/// The secret in `path`, created there when the file does not exist; nullopt with `why` set when
/// the file cannot be read, does not hold a secret, or cannot be created.
inline std::optional<ankanet::l2::host_secret> load_or_create_host_secret(const std::filesystem::path& path, std::string& why) {
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) {
        std::ifstream in{path};
        std::stringstream text;
        text << in.rdbuf();
        if (!in) {
            why = fmt::format("{}: cannot read the host secret", path.string());
            return std::nullopt;
        }
        std::string content = text.str();
        while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) content.pop_back();
        const auto secret = ankanet::l2::host_secret::parse(content);
        if (!secret) {
            why = fmt::format("{}: does not hold a host secret (32 hexadecimal digits); it is left as it is", path.string());
            return std::nullopt;
        }
        return *secret;
    }

    const auto secret = ankanet::l2::host_secret::generate();
    const auto temporary = std::filesystem::path{path.string() + ".tmp"};
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        why = fmt::format("{}: cannot create the host secret: {}", path.string(), std::strerror(errno));
        return std::nullopt;
    }
    const bool written = detail::write_all_and_sync(fd, secret.to_string() + "\n");
    ::close(fd);
    if (!written || ::rename(temporary.c_str(), path.c_str()) != 0 || !detail::sync_directory(path.parent_path())) {
        why = fmt::format("{}: cannot write the host secret: {}", path.string(), std::strerror(errno));
        ::unlink(temporary.c_str());
        return std::nullopt;
    }
    return secret;
}

} // namespace ankanetd
