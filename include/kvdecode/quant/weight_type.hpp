#pragma once
// The storage type of a weight matrix's elements, chosen at run time (a model file
// or a command-line option names it). Each type brings its own packing, a scalar
// dequantisation (the executable spec) and SIMD kernels; see weight_matrix.hpp.
//
// Block types store a row as whole blocks, as a GGUF file does: block_values(type)
// consecutive values in block_bytes(type) bytes (1 value per "block" for the float
// types), so a row of in_dim values is row_bytes(type, in_dim) bytes.

#include <array>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

#include "kvdecode/quant/k_quants.hpp"
#include "kvdecode/quant/q8_0.hpp"

namespace kvdecode {

enum class weight_type {
    f32,   // the activation type itself, in 128-byte column panels (simd/packed_matmul.hpp)
    f16,   // IEEE binary16, in 64-byte column panels of 32 outputs
    bf16,  // bfloat16 (the upper half of a float32), same panels
    q8_0,  // GGUF Q8_0: blocks of 32 int8 with one float16 scale, rows as in a GGUF file
    // GGUF's legacy 4/5-bit types (quant/q4_q5.hpp): blocks of 32, rows as in a GGUF file
    q4_0,  // 4-bit quants minus 8, one float16 scale
    q4_1,  // 4-bit quants, float16 scale and minimum
    q5_0,  // 5-bit quants minus 16, one float16 scale
    q5_1,  // 5-bit quants, float16 scale and minimum
    // GGUF K-quants: super-blocks of 256 values with 16 or 8 sub-block scales, rows as in a
    // GGUF file (in_dim a multiple of 256); activations quantised to Q8_K (k_quants.hpp)
    q2_k,  // 2.625 bits per weight
    q3_k,  // 3.4375
    q4_k,  // 4.5
    q5_k,  // 5.5
    q6_k,  // 6.5625
};

inline constexpr std::array<weight_type, 13> all_weight_types = {
    weight_type::f32,  weight_type::f16,  weight_type::bf16, weight_type::q8_0, weight_type::q4_0,
    weight_type::q4_1, weight_type::q5_0, weight_type::q5_1, weight_type::q2_k, weight_type::q3_k,
    weight_type::q4_k, weight_type::q5_k, weight_type::q6_k,
};

constexpr std::string_view to_string(weight_type t) noexcept {
    switch (t) {
        case weight_type::f32: return "f32";
        case weight_type::f16: return "f16";
        case weight_type::bf16: return "bf16";
        case weight_type::q8_0: return "q8_0";
        case weight_type::q4_0: return "q4_0";
        case weight_type::q4_1: return "q4_1";
        case weight_type::q5_0: return "q5_0";
        case weight_type::q5_1: return "q5_1";
        case weight_type::q2_k: return "q2_k";
        case weight_type::q3_k: return "q3_k";
        case weight_type::q4_k: return "q4_k";
        case weight_type::q5_k: return "q5_k";
        case weight_type::q6_k: return "q6_k";
    }
    return "unknown";
}

// The names of every type, comma-separated ("f32, f16, bf16, q8_0, ..."), for messages.
inline std::string weight_type_names() {
    std::string names;
    for (weight_type t : all_weight_types) names += (names.empty() ? "" : ", ") + std::string(to_string(t));
    return names;
}

// The type a name stands for ("f32", "f16", "bf16", "q8_0", "q4_k", ...); anything else
// throws std::invalid_argument naming the choices.
inline weight_type parse_weight_type(std::string_view name) {
    for (weight_type t : all_weight_types)
        if (to_string(t) == name) return t;
    throw std::invalid_argument("kvdecode: unknown weight type '" + std::string(name) + "': expected one of " +
                                weight_type_names());
}

// Whether the type is one of GGUF's K-quants (super-blocks of 256 values, Q8_K activations).
constexpr bool is_k_quant(weight_type t) noexcept {
    return t == weight_type::q2_k || t == weight_type::q3_k || t == weight_type::q4_k || t == weight_type::q5_k ||
           t == weight_type::q6_k;
}

// Values per block of the type's GGUF layout: 1 for the float types, 32, 256.
constexpr std::size_t block_values(weight_type t) noexcept {
    switch (t) {
        case weight_type::f32:
        case weight_type::f16:
        case weight_type::bf16: return 1;
        case weight_type::q8_0: return quant::q8_0_block_values;
        case weight_type::q4_0:
        case weight_type::q4_1:
        case weight_type::q5_0:
        case weight_type::q5_1: return 32;
        case weight_type::q2_k:
        case weight_type::q3_k:
        case weight_type::q4_k:
        case weight_type::q5_k:
        case weight_type::q6_k: return quant::qk_k;
    }
    return 1;
}

// Bytes per block of the type's GGUF layout.
constexpr std::size_t block_bytes(weight_type t) noexcept {
    switch (t) {
        case weight_type::f32: return 4;
        case weight_type::f16:
        case weight_type::bf16: return 2;
        case weight_type::q8_0: return sizeof(quant::block_q8_0);
        case weight_type::q4_0: return 18;  // f16 d, 16 bytes of nibbles
        case weight_type::q4_1: return 20;  // f16 d and m, 16 bytes of nibbles
        case weight_type::q5_0: return 22;  // f16 d, 4 bytes of fifth bits, 16 bytes of nibbles
        case weight_type::q5_1: return 24;  // f16 d and m, 4 bytes of fifth bits, 16 bytes of nibbles
        case weight_type::q2_k: return sizeof(quant::block_q2_k);
        case weight_type::q3_k: return sizeof(quant::block_q3_k);
        case weight_type::q4_k: return sizeof(quant::block_q4_k);
        case weight_type::q5_k: return sizeof(quant::block_q5_k);
        case weight_type::q6_k: return sizeof(quant::block_q6_k);
    }
    return 0;
}

// Bytes of one row of in_dim values in the type's GGUF layout (whole blocks); throws
// std::invalid_argument when in_dim is not a multiple of the block size.
inline std::size_t row_bytes(weight_type t, std::size_t in_dim) {
    if (in_dim % block_values(t) != 0)
        throw std::invalid_argument("kvdecode: a " + std::string(to_string(t)) + " row holds whole blocks of " +
                                    std::to_string(block_values(t)) + " values, got a row of " + std::to_string(in_dim));
    const std::size_t blocks = in_dim / block_values(t);
    if (blocks > std::numeric_limits<std::size_t>::max() / block_bytes(t))
        throw std::invalid_argument("kvdecode: a " + std::string(to_string(t)) + " row of " + std::to_string(in_dim) +
                                    " values overflows the address space");
    return blocks * block_bytes(t);
}

}  // namespace kvdecode
