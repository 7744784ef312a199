// ankanetd's host secret file (--mac-secret FILE): the key stable MACs are derived from.
//
// The file holds the secret as 32 hexadecimal digits and a newline. It is read when it exists; a
// file that does not hold a secret is an error naming the file, never replaced (replacing it would
// silently give every VM a new MAC). When it does not exist, a fresh secret is generated and written
// crash-safely, mode 0600 (detail::replace_file), so the file either holds a complete secret or
// does not exist at all.
#pragma once

#include <ankanet/detail/atomic_file.hpp>
#include <ankanet/l2/mac_randomizer.hpp>

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

namespace ankanetd {

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
    if (const auto error = ankanet::detail::replace_file(path, secret.to_string() + "\n", 0600)) {
        why = fmt::format("{}: cannot create the host secret: {}", path.string(), error.message());
        return std::nullopt;
    }
    return secret;
}

} // namespace ankanetd
