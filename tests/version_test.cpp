// The version header agrees with itself and with the CMake project's version.

#include <string>

#include <catch2/catch.hpp>

#include "kvdecode/version.hpp"

TEST_CASE("version: header numbers, string and the CMake project version agree", "[version]") {
    const std::string numbers = std::to_string(KVDECODE_VERSION_MAJOR) + "." + std::to_string(KVDECODE_VERSION_MINOR) +
                                "." + std::to_string(KVDECODE_VERSION_PATCH);
    REQUIRE(kvdecode::version() == numbers);
    REQUIRE(std::string(KVDECODE_VERSION_STRING) == numbers);
    REQUIRE(KVDECODE_VERSION ==
            KVDECODE_VERSION_MAJOR * 10000 + KVDECODE_VERSION_MINOR * 100 + KVDECODE_VERSION_PATCH);
    REQUIRE(kvdecode::version() == KVDECODE_PROJECT_VERSION);  // project(VERSION) in CMakeLists.txt
    static_assert(kvdecode::version().size() >= 5);
}
