#pragma once
// A scratch folder for one test, unique to the object and the process, removed (with
// everything in it) when the test ends.

#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <unistd.h>

namespace kvtest {

struct temp_dir {
    std::filesystem::path path;
    temp_dir()
        : path(std::filesystem::temp_directory_path() /
               ("kvdecode_test_" + std::to_string(reinterpret_cast<std::uintptr_t>(this)) + "_" +
                std::to_string(::getpid()))) {
        std::filesystem::create_directories(path);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir() {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
};

}  // namespace kvtest
