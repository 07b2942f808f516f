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
#include <string>
#include <string_view>
#include <vector>

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

// The byte a llama2.c byte-fallback piece "<0xXX>" (either case of hex digit) stands
// for, or -1 for any other piece: written independently of the tokenizer's own.
inline int byte_piece_value(std::string_view p) {
    auto hex = [](char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    };
    if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>' || hex(p[3]) < 0 || hex(p[4]) < 0) return -1;
    return hex(p[3]) * 16 + hex(p[4]);
}

struct piece {
    std::string text;
    float score = 0;
};

// A llama2.c tokenizer file, written by the harnesses themselves: int32 max_token_length,
// then per piece float32 score, int32 byte length, bytes.
inline std::vector<std::byte> llama2c_tokenizer_file(std::int32_t max_length, const std::vector<piece>& pieces) {
    std::vector<std::byte> out;
    auto put = [&](const void* p, std::size_t n) {
        const auto* b = static_cast<const std::byte*>(p);
        out.insert(out.end(), b, b + n);
    };
    put(&max_length, sizeof max_length);
    for (const auto& [text, score] : pieces) {
        const auto length = static_cast<std::int32_t>(text.size());
        put(&score, sizeof score);
        put(&length, sizeof length);
        put(text.data(), text.size());
    }
    return out;
}

}  // namespace kvfuzz
