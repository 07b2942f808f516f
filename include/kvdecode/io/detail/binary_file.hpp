#pragma once
// Reading an untrusted binary file, from disk or from a buffer in memory (the same
// checks either way, so fuzzing the memory path tests the file path): every failure
// becomes a model_format_error that names the file, the field being read, and the byte
// offset. A count the file claims is checked against the bytes left (require) before
// anything is sized from it.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kvdecode/core/error.hpp"

namespace kvdecode::detail {

class binary_file {
public:
    explicit binary_file(const std::filesystem::path& path) : name_(path.string()) {
        std::error_code ec;
        const auto status = std::filesystem::status(path, ec);
        if (ec || !std::filesystem::exists(status)) fail("file", "an existing file", "nothing at this path");
        if (std::filesystem::is_directory(status)) fail("file", "a regular file", "a directory");
        if (!std::filesystem::is_regular_file(status)) fail("file", "a regular file", "a special file");
        size_ = std::filesystem::file_size(path, ec);
        if (ec) fail("file", "a readable size", ec.message());
        in_.open(path, std::ios::binary);
        if (!in_) fail("file", "a readable file", "one that cannot be opened");
    }

    // Reads `bytes`, which must outlive this object; `name` stands for the file in errors.
    binary_file(std::span<const std::byte> bytes, std::string name)
        : name_(std::move(name)), memory_(bytes), in_memory_(true), size_(bytes.size()) {}

    const std::string& name() const noexcept { return name_; }
    std::uint64_t size() const noexcept { return size_; }
    std::uint64_t position() const noexcept { return position_; }
    std::uint64_t remaining() const noexcept { return size_ - position_; }

    // Fails unless `bytes` more bytes remain: called before allocating for them.
    void require(std::uint64_t bytes, const std::string& field) const {
        if (bytes > remaining())
            fail(field, std::to_string(bytes) + " bytes at offset " + std::to_string(position_),
                 "the file ends after " + std::to_string(remaining()));
    }

    void read_bytes(void* out, std::size_t n, const std::string& field) {
        require(n, field);
        if (in_memory_) {
            if (n > 0) std::memcpy(out, memory_.data() + position_, n);  // data() may be null when n is 0
        } else {
            in_.read(static_cast<char*>(out), static_cast<std::streamsize>(n));
            if (!in_) fail(field, std::to_string(n) + " readable bytes at offset " + std::to_string(position_), "a read error");
        }
        position_ += n;
    }

    template <class V>
    V read(const std::string& field) {
        static_assert(std::is_trivially_copyable_v<V>);
        V v;
        read_bytes(&v, sizeof v, field);
        return v;  // the formats are little-endian, as is every platform we target
    }

    // float32 values from the file into `out`, converting when T is not float.
    // Bytes as a string, allocated only once the file is known to hold them.
    std::string read_string(std::size_t n, const std::string& field) {
        require(n, field);
        std::string out(n, '\0');
        read_bytes(out.data(), n, field);
        return out;
    }

    template <class T>
    void read_floats(T* out, std::size_t count, const std::string& field) {
        if (count > remaining() / sizeof(float))  // checked before reading any, and count * 4 may overflow
            fail(field, std::to_string(count) + " float32 values at offset " + std::to_string(position_),
                 "the file ends after " + std::to_string(remaining()) + " bytes");
        if constexpr (std::is_same_v<T, float>) {
            read_bytes(out, count * sizeof(float), field);
        } else {
            float chunk[1024];
            for (std::size_t done = 0; done < count;) {
                const std::size_t n = std::min<std::size_t>(1024, count - done);
                read_bytes(chunk, n * sizeof(float), field);
                for (std::size_t i = 0; i < n; ++i) out[done + i] = static_cast<T>(chunk[i]);
                done += n;
            }
        }
    }

    void skip(std::uint64_t n, const std::string& field) {
        require(n, field);
        if (!in_memory_) in_.seekg(static_cast<std::streamoff>(n), std::ios::cur);
        position_ += n;
    }

    [[noreturn]] void fail(const std::string& field, const std::string& expected, const std::string& found) const {
        throw model_format_error(name_, field, expected, found);
    }

private:
    std::string name_;
    std::ifstream in_;                     // the file, unless reading from memory
    std::span<const std::byte> memory_;
    bool in_memory_ = false;
    std::uint64_t size_ = 0;
    std::uint64_t position_ = 0;
};

}  // namespace kvdecode::detail
