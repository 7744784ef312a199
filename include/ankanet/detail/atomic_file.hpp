// ankanet::detail::replace_file — write a whole file so that a crash never leaves it torn.
//
// The contents go to `<file>.tmp` in the same directory (created with the given mode), which is
// fsynced and then rename()d over the file; the directory is fsynced last, since the rename is
// durable only once the directory entry is. rename() is atomic on POSIX filesystems, so after a
// crash at any instant the file holds either its old or its new contents, complete. On a failure
// before the rename the temporary file is removed and the file is untouched.
#pragma once

#include <cerrno>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ankanet::detail {

inline std::error_code last_errno() { return {errno, std::system_category()}; }

inline std::error_code write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const auto n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return last_errno();
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
}

/// Replaces `path` with `contents` crash-safely (see above); a new file gets permissions `mode`.
inline std::error_code replace_file(const std::filesystem::path& path, std::string_view contents, ::mode_t mode = 0600) {
    const std::string target = path.string();
    const std::string temp = target + ".tmp";
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return last_errno();
    auto error = write_all(fd, contents);
    if (!error && ::fsync(fd) != 0) error = last_errno();
    if (::close(fd) != 0 && !error) error = last_errno();
    if (!error && ::rename(temp.c_str(), target.c_str()) != 0) error = last_errno();
    if (error) {
        ::unlink(temp.c_str());
        return error;
    }
    auto dir = path.parent_path();
    if (dir.empty()) dir = ".";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return last_errno();
    if (::fsync(dfd) != 0) error = last_errno();
    ::close(dfd);
    return error;
}

} // namespace ankanet::detail
