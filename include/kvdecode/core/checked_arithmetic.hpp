#pragma once
// Size arithmetic that reports overflow instead of wrapping: model headers are
// untrusted input, and a wrapped product would size a buffer too small.

#include <cstdint>
#include <optional>

namespace kvdecode {

inline std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) noexcept {
    std::uint64_t out = 0;
    if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
    return out;
}

inline std::optional<std::uint64_t> checked_add(std::uint64_t a, std::uint64_t b) noexcept {
    std::uint64_t out = 0;
    if (__builtin_add_overflow(a, b, &out)) return std::nullopt;
    return out;
}

}  // namespace kvdecode
