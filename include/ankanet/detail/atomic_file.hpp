// ankanet::detail::replace_file — write a whole file so that a crash never leaves it torn.
//
// The contents go to `<file>.tmp` in the same directory (created with the given mode), which is
// fsynced and then rename()d over the file; the directory is fsynced last, since the rename is
// durable only once the directory entry is. rename() is atomic on POSIX filesystems, so after a
// crash at any instant the file holds either its old or its new contents, complete. On a failure
// before the rename the temporary file is removed and the file is untouched.
//
// check_replaceable(path) answers, before anything is written, whether replace_file can work
// there: the directory exists and a file can be created and written in it (it creates a uniquely
// named file beside `path` and removes it again), and `path` is not a directory or a device. A
// program calls it at start-up, so that a state file it cannot keep is refused with a sentence
// before the first guest depends on it, rather than failing at the first write.
//
// same_file(a, b) says whether two paths name one file: by device and inode when both exist (hard
// links, symbolic links, bind mounts, "./x" and "x"), otherwise by their absolute, lexically
// normalised paths after following the symbolic links that do exist — so two options that would
// write one file are caught even before the file is created.
#pragma once

#include <cerrno>
#include <cstdlib>
#include <cstring>
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

/// Whether replace_file(path, ...) can work (see above), checked without touching `path`; an
/// empty code, or the error with `why` (when given) set to what is wrong, naming the directory or
/// the file ("directory /x does not exist").
inline std::error_code check_replaceable(const std::filesystem::path& path, std::string* why = nullptr) {
    const auto fail = [why](std::error_code error, std::string what) {
        if (why != nullptr) *why = std::move(what);
        return error;
    };
    const std::string target = path.string();
    std::filesystem::path dir = path.parent_path();
    if (dir.empty()) dir = ".";
    const std::string dir_name = dir.string();

    struct ::stat st{};
    if (::stat(dir_name.c_str(), &st) != 0) {
        const auto error = last_errno();
        if (error == std::errc::no_such_file_or_directory) return fail(error, "directory " + dir_name + " does not exist");
        if (error == std::errc::not_a_directory) return fail(error, dir_name + " is not a directory");
        return fail(error, "cannot reach directory " + dir_name + ": " + error.message());
    }
    if (!S_ISDIR(st.st_mode)) return fail(std::make_error_code(std::errc::not_a_directory), dir_name + " is not a directory");
    if (path.filename().empty()) return fail(std::make_error_code(std::errc::is_a_directory), target + " names a directory, not a file");
    if (::stat(target.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) return fail(std::make_error_code(std::errc::is_a_directory), target + " is a directory");
        if (!S_ISREG(st.st_mode)) return fail(std::make_error_code(std::errc::invalid_argument), target + " is not a regular file");
    } else if (errno != ENOENT) {
        const auto error = last_errno();
        return fail(error, "cannot reach " + target + ": " + error.message());
    }

    // A write beside the file proves the directory takes new files (permissions, a read-only
    // mount, a filesystem such as /proc that refuses them, a full disk), as the rename will need.
    std::string probe = target + ".check-XXXXXX";
    const int fd = ::mkostemp(probe.data(), O_CLOEXEC);
    if (fd < 0) {
        const auto error = last_errno();
        return fail(error, "directory " + dir_name + " does not let files be created in it (" + error.message() + ")");
    }
    auto error = write_all(fd, "ankanet\n");
    if (::close(fd) != 0 && !error) error = last_errno();
    ::unlink(probe.c_str());
    if (error) return fail(error, "cannot write in directory " + dir_name + ": " + error.message());
    return {};
}

/// check_replaceable() for a program's state file, with `why` one sentence naming the path and what
/// the file keeps: "/x/leases: cannot keep the lease file there: directory /x does not exist".
inline std::error_code check_replaceable_for(const std::filesystem::path& path, std::string_view what_it_keeps,
                                             std::string& why) {
    std::string what;
    if (auto error = check_replaceable(path, &what)) {
        why = path.string() + ": cannot keep " + std::string{what_it_keeps} + " there: " + what;
        return error;
    }
    return {};
}

/// `p` made absolute, with the symbolic links of its existing part followed (a dangling link is
/// followed to where it points), then lexically normalised.
inline std::filesystem::path resolved_path(const std::filesystem::path& p) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path current = fs::absolute(p, ec);
    if (ec) current = p;
    for (int hops = 0; hops < 40; ++hops) { // as the kernel's own limit on links followed
        const fs::path parent = fs::weakly_canonical(current.parent_path(), ec);
        if (!ec) current = parent / current.filename();
        if (current.filename().empty() || !fs::is_symlink(fs::symlink_status(current, ec))) break;
        const fs::path target = fs::read_symlink(current, ec);
        if (ec) break;
        current = target.is_absolute() ? target : current.parent_path() / target;
    }
    return current.lexically_normal();
}

/// Whether `a` and `b` name the same file (see above).
inline bool same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
    struct ::stat sa{}, sb{};
    if (::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    return resolved_path(a) == resolved_path(b);
}

/// Reads the whole file at `path` into `contents`. std::errc::no_such_file_or_directory when there
/// is none (a store's first start), another errno error when it cannot be opened or read.
inline std::error_code read_file(const std::filesystem::path& path, std::string& contents) {
    contents.clear();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return last_errno();
    char buffer[8192];
    for (;;) {
        const auto n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const auto error = last_errno();
            ::close(fd);
            return error;
        }
        if (n == 0) break;
        contents.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return {};
}

} // namespace ankanet::detail
