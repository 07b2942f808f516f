#pragma once
// How a KV cache stores its keys and values, chosen per cache (kv_cache_options::storage):
// float32 (the default, exactly the activations' values), or float16 / bfloat16, half
// the bytes, which is what decode reads at long context, where the cache, not the
// weights, is most of the bytes per token. Rows are rounded once when written (nearest
// even) and read by attention in place, widened in registers.
//   f16:  10 mantissa bits (relative error 2^-11), values beyond ±65504 become infinite;
//   bf16: 7 mantissa bits (2^-8), float32's range.
// A cache of double activations stores them unrounded only (f32 stands for "as T").

#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace kvdecode {

enum class kv_type { f32, f16, bf16 };

inline constexpr std::array<kv_type, 3> all_kv_types = {kv_type::f32, kv_type::f16, kv_type::bf16};

constexpr std::string_view to_string(kv_type t) noexcept {
    switch (t) {
        case kv_type::f32: return "f32";
        case kv_type::f16: return "f16";
        case kv_type::bf16: return "bf16";
    }
    return "unknown";
}

// Bytes of one stored value in a cache whose activations are T.
template <class T>
constexpr std::size_t kv_element_bytes(kv_type t) noexcept {
    return t == kv_type::f32 ? sizeof(T) : 2;
}

// "f32", "f16" or "bf16"; anything else throws std::invalid_argument naming the choices.
inline kv_type parse_kv_type(std::string_view name) {
    for (kv_type t : all_kv_types)
        if (to_string(t) == name) return t;
    throw std::invalid_argument("kvdecode: unknown KV cache type '" + std::string(name) + "': expected f32, f16 or bf16");
}

}  // namespace kvdecode
