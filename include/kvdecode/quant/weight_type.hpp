#pragma once
// The storage type of a weight matrix's elements, chosen at run time (a model file
// or a command-line option names it). Each type brings its own packing, a scalar
// dequantisation (the executable spec) and SIMD kernels; see weight_matrix.hpp.

#include <array>
#include <stdexcept>
#include <string>
#include <string_view>

namespace kvdecode {

enum class weight_type {
    f32,   // the activation type itself, in 128-byte column panels (simd/packed_matmul.hpp)
    f16,   // IEEE binary16, in 64-byte column panels of 32 outputs
    bf16,  // bfloat16 (the upper half of a float32), same panels
    q8_0,  // GGUF Q8_0: blocks of 32 int8 with one float16 scale, rows as in a GGUF file
};

inline constexpr std::array<weight_type, 4> all_weight_types = {weight_type::f32, weight_type::f16, weight_type::bf16,
                                                                 weight_type::q8_0};

constexpr std::string_view to_string(weight_type t) noexcept {
    switch (t) {
        case weight_type::f32: return "f32";
        case weight_type::f16: return "f16";
        case weight_type::bf16: return "bf16";
        case weight_type::q8_0: return "q8_0";
    }
    return "unknown";
}

// The type a name stands for ("f32", "f16", "bf16", "q8_0"); anything else throws
// std::invalid_argument naming the choices.
inline weight_type parse_weight_type(std::string_view name) {
    for (weight_type t : all_weight_types)
        if (to_string(t) == name) return t;
    throw std::invalid_argument("kvdecode: unknown weight type '" + std::string(name) +
                                "': expected one of f32, f16, bf16, q8_0");
}

}  // namespace kvdecode
