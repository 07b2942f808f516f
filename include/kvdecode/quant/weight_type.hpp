#pragma once
// The storage type of a weight matrix's elements, chosen at run time (a model file
// or a command-line option names it). Each type brings its own packing, a scalar
// dequantisation (the executable spec) and SIMD kernels; see weight_matrix.hpp.

#include <array>
#include <cstddef>
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

// The names of every type, comma-separated ("f32, f16, bf16, q8_0"), for messages.
inline std::string weight_type_names() {
    std::string names;
    for (weight_type t : all_weight_types) names += (names.empty() ? "" : ", ") + std::string(to_string(t));
    return names;
}

// The type a name stands for ("f32", "f16", "bf16", "q8_0"); anything else throws
// std::invalid_argument naming the choices.
inline weight_type parse_weight_type(std::string_view name) {
    for (weight_type t : all_weight_types)
        if (to_string(t) == name) return t;
    throw std::invalid_argument("kvdecode: unknown weight type '" + std::string(name) + "': expected one of " +
                                weight_type_names());
}

// Values per block of the type's file layout (GGUF's ggml block sizes): 1 for the
// float types, 32 for Q8_0.
constexpr std::size_t block_values(weight_type t) noexcept {
    switch (t) {
        case weight_type::f32:
        case weight_type::f16:
        case weight_type::bf16: return 1;
        case weight_type::q8_0: return 32;
    }
    return 1;
}

// Bytes of one block in the file layout (one value for the float types).
constexpr std::size_t block_bytes(weight_type t) noexcept {
    switch (t) {
        case weight_type::f32: return 4;
        case weight_type::f16:
        case weight_type::bf16: return 2;
        case weight_type::q8_0: return 34;
    }
    return 0;
}

// Bytes of one row of in_dim values in the file layout (GGUF: whole blocks, no
// padding). Throws std::invalid_argument when in_dim is not a whole number of blocks
// or the size overflows.
inline std::size_t row_bytes(weight_type t, std::size_t in_dim) {
    const std::size_t per_block = block_values(t);
    if (in_dim % per_block != 0)
        throw std::invalid_argument("kvdecode: a row of " + std::to_string(in_dim) + " values is not a whole number of " +
                                    std::string(to_string(t)) + " blocks (" + std::to_string(per_block) + " values each)");
    const std::size_t blocks = in_dim / per_block;
    if (blocks > static_cast<std::size_t>(-1) / block_bytes(t))
        throw std::invalid_argument("kvdecode: a row of " + std::to_string(in_dim) + " " + std::string(to_string(t)) +
                                    " values overflows the address space");
    return blocks * block_bytes(t);
}

}  // namespace kvdecode
