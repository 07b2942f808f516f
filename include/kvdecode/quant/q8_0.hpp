#pragma once
// GGUF's Q8_0 format and its scalar reference: quantise, dequantise, dot. The SIMD
// kernels (kernels_q8_0.hpp) are tested against these.
//
// A block holds 32 consecutive values of a row:
//   bytes 0-1   d      float16 scale (little-endian IEEE binary16)
//   bytes 2-33  qs[32] int8 quants
// value[i] = d * qs[i]. A row of n values is ceil(n / 32) blocks; the last block's
// values past n are zero. GGUF stores a Q8_0 tensor (ne0 = in_dim, ne1 = out_dim) as
// exactly these blocks, row after row, with no padding (ggml's block_q8_0).
//
// Quantising a block (ggml's quantize_row_q8_0_ref): amax = max |x|, d = amax / 127,
// id = 1 / d (0 when d is 0), qs[i] = roundf(x[i] * id) (nearest, ties away from
// zero), d stored rounded to float16. So |qs| <= 127. Where ggml's arithmetic is
// undefined this one is not: a block holding inf or NaN gets qs = 0 and d = NaN (its
// products become NaN, as they should), and a block so small that d is below float's
// normal range (where 1 / d loses the bound |qs| <= 127) gets qs = 0 (its d rounds to a
// float16 zero anyway).
//
// The dot of two rows (ggml_vec_dot_q8_0_q8_0; the activations are quantised to Q8_0
// too): sum over blocks of float(sum_i w.qs[i] * x.qs[i]) * (d_w * d_x), in block order.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "kvdecode/quant/half.hpp"

namespace kvdecode::quant {

inline constexpr std::size_t q8_0_block_values = 32;

struct block_q8_0 {
    std::uint16_t d;                       // float16 scale
    std::int8_t qs[q8_0_block_values];     // quants
};
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must match GGUF's 34-byte block");
static_assert(alignof(block_q8_0) == 2);

// Blocks a row of n values takes.
constexpr std::size_t q8_0_blocks(std::size_t n) noexcept { return (n + q8_0_block_values - 1) / q8_0_block_values; }

// One block's quants from up to 32 values (count < 32: the rest are zero); returns
// its scale as float16.
inline std::uint16_t quantize_block_q8_0(const float* x, std::size_t count, std::int8_t* qs) noexcept {
    float amax = 0;
    bool finite = true;
    for (std::size_t i = 0; i < count; ++i) {
        finite = finite && std::isfinite(x[i]);
        amax = std::max(amax, std::fabs(x[i]));
    }
    std::fill(qs, qs + q8_0_block_values, std::int8_t{0});
    if (!finite) return f32_to_f16(std::numeric_limits<float>::quiet_NaN());
    const float d = amax / 127.0f;
    const float id = d >= std::numeric_limits<float>::min() ? 1.0f / d : 0.0f;
    for (std::size_t i = 0; i < count; ++i) qs[i] = static_cast<std::int8_t>(std::round(x[i] * id));
    return f32_to_f16(d);
}

// x (n values) -> q8_0_blocks(n) blocks.
inline void quantize_row_q8_0(const float* x, block_q8_0* y, std::size_t n) noexcept {
    for (std::size_t b = 0; b < q8_0_blocks(n); ++b) {
        const std::size_t first = b * q8_0_block_values;
        y[b].d = quantize_block_q8_0(x + first, std::min(q8_0_block_values, n - first), y[b].qs);
    }
}

// q8_0_blocks(n) blocks -> n values.
inline void dequantize_row_q8_0(const block_q8_0* x, float* y, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        const block_q8_0& b = x[i / q8_0_block_values];
        y[i] = f16_to_f32(b.d) * static_cast<float>(b.qs[i % q8_0_block_values]);
    }
}

// Dot of two rows of `blocks` blocks each. The block sums are exact; each is added with
// one rounding (an explicit fma, as ggml's x86 kernels do), so that no compiler's
// contraction setting can make this differ from the kernels in kernels_q8_0.hpp.
inline float dot_q8_0(const block_q8_0* w, const block_q8_0* x, std::size_t blocks) noexcept {
    float sum = 0;
    for (std::size_t b = 0; b < blocks; ++b) {
        std::int32_t isum = 0;
        for (std::size_t i = 0; i < q8_0_block_values; ++i) isum += std::int32_t{w[b].qs[i]} * std::int32_t{x[b].qs[i]};
        sum = std::fma(static_cast<float>(isum), f16_to_f32(w[b].d) * f16_to_f32(x[b].d), sum);
    }
    return sum;
}

}  // namespace kvdecode::quant
