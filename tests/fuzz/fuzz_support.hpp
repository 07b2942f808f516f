#pragma once
// What the libFuzzer harnesses share. A harness catches exactly the exceptions its
// reader documents and lets anything else escape (libFuzzer then reports a crash);
// an invariant that does not hold on a successful read aborts, naming itself.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>

#define KVFUZZ_CHECK(condition) \
    ((condition) ? void(0) : ::kvfuzz::invariant_failed(#condition, __FILE__, __LINE__))

namespace kvfuzz {

[[noreturn]] inline void invariant_failed(const char* what, const char* file, int line) {
    std::fprintf(stderr, "%s:%d: invariant failed: %s\n", file, line, what);
    std::abort();
}

inline std::span<const std::byte> bytes_of(const std::uint8_t* data, std::size_t size) {
    return size == 0 ? std::span<const std::byte>{} : std::as_bytes(std::span(data, size));
}

// Little-endian int32 at `offset` (the formats are little-endian, as is every platform we target).
inline std::int32_t int32_at(std::span<const std::byte> bytes, std::size_t offset) {
    std::int32_t v;
    std::memcpy(&v, bytes.data() + offset, sizeof v);
    return v;
}

// A llama2.c byte-fallback piece "<0xXX>" (either case of hex digit), written
// independently of the tokenizer's own test.
inline bool is_byte_piece(std::string_view p) {
    auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
    return p.size() == 6 && p.substr(0, 3) == "<0x" && hex(p[3]) && hex(p[4]) && p[5] == '>';
}

}  // namespace kvfuzz
