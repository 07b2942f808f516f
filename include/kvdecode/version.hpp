#pragma once
// The library's version. These three numbers are the one place it is written:
// CMakeLists.txt reads them for project(VERSION), so the package's
// kvdecodeConfigVersion.cmake and this header always agree.

#include <string_view>

#define KVDECODE_VERSION_MAJOR 0
#define KVDECODE_VERSION_MINOR 1
#define KVDECODE_VERSION_PATCH 0

#define KVDECODE_DETAIL_STRINGIFY(x) #x
#define KVDECODE_DETAIL_VERSION_STRING(major, minor, patch) \
    KVDECODE_DETAIL_STRINGIFY(major) "." KVDECODE_DETAIL_STRINGIFY(minor) "." KVDECODE_DETAIL_STRINGIFY(patch)

// "MAJOR.MINOR.PATCH"
#define KVDECODE_VERSION_STRING \
    KVDECODE_DETAIL_VERSION_STRING(KVDECODE_VERSION_MAJOR, KVDECODE_VERSION_MINOR, KVDECODE_VERSION_PATCH)

// One number for preprocessor comparisons: MAJOR * 10000 + MINOR * 100 + PATCH.
#define KVDECODE_VERSION (KVDECODE_VERSION_MAJOR * 10000 + KVDECODE_VERSION_MINOR * 100 + KVDECODE_VERSION_PATCH)

namespace kvdecode {

// The version of the headers this program was compiled with, "MAJOR.MINOR.PATCH".
constexpr std::string_view version() noexcept { return KVDECODE_VERSION_STRING; }

}  // namespace kvdecode
