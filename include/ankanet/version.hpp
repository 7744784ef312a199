/// @file
/// ankanet — version of the library. CMake reads the three numbers below; change them here only.
#pragma once

/// Major version.
#define ANKANET_VERSION_MAJOR 0
/// Minor version.
#define ANKANET_VERSION_MINOR 1
/// Patch version.
#define ANKANET_VERSION_PATCH 0

/// The version as one comparable number: major * 10000 + minor * 100 + patch.
#define ANKANET_VERSION (ANKANET_VERSION_MAJOR * 10000 + ANKANET_VERSION_MINOR * 100 + ANKANET_VERSION_PATCH)

#include <string_view>

namespace ankanet {

/// The library version as "major.minor.patch".
inline constexpr std::string_view version_string = "0.1.0";

static_assert(ANKANET_VERSION == 100, "version_string must match the ANKANET_VERSION_* macros");

} // namespace ankanet
