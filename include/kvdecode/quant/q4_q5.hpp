#pragma once
// GGUF's legacy 4- and 5-bit formats Q4_0, Q4_1, Q5_0, Q5_1, and the Q8_1 activation
// format, with their scalar reference: quantise, dequantise, dot. The SIMD kernels
// (kernels_q4_q5.hpp) are tested against these.
//
// Every block holds 32 consecutive values of a row (ggml's block_q4_0 ... block_q5_1,
// byte for byte; float16 fields little-endian):
//   q4_0  d (f16)          qs[16]            value = d * (q - 8)     q in 0..15
//   q4_1  d, m (f16)       qs[16]            value = d * q + m       q in 0..15
//   q5_0  d (f16), qh[4]   qs[16]            value = d * (q - 16)    q in 0..31
//   q5_1  d, m (f16), qh[4] qs[16]           value = d * q + m       q in 0..31
// Nibble order: qs[j] holds value j in its low nibble and value j + 16 in its high
// nibble. The fifth bit of value i (Q5) is bit i of qh read as a little-endian
// 32-bit word. A row is in_dim / 32 blocks: these types need in_dim a multiple of 32.
//
// Dequantisation is ggml's dequantize_row_*: float(q) * d (+ m). float(q) * d is exact
// (q has at most 5 significant bits, d 11), so only "+ m" rounds, once.
//
// Quantisation is ggml's reference (quantize_row_*_ref), the same choice of d, m and
// rounding in the same float operations:
//   _0: max = the value of largest magnitude (the first one on a tie), d = max / -8
//       (Q4) or max / -16 (Q5), id = 1 / d, q = min(2^bits - 1, trunc(x * id + 8.5))
//       (16.5 for Q5): rounding to nearest with the extreme value landing on q = 0.
//   _1: min, max of the block, d = (max - min) / 15 (31), id = 1 / d, m = min,
//       q = min(2^bits - 1, trunc((x - min) * id + 0.5)).
// Where ggml's arithmetic is undefined this one is not: a block holding inf or NaN,
// or whose max - min overflows float, gets d = NaN (m = NaN) and zero quants, so its
// values are NaN; a block whose d is below float's normal range (1 / d could
// overflow) uses id = 0, as d itself rounds to a float16 zero and every value of the
// block dequantises to 0 (_0) or m (_1) whatever its quants (ggml's may differ there,
// its values do not).
//
// Activations: Q4_0 and Q5_0 weights multiply Q8_0 activations (q8_0.hpp), Q4_1 and
// Q5_1 weights Q8_1 ones: Q8_0's quants and d, plus s = d * sum(qs) as float16
// (quantize_row_q8_1_ref, with d the unrounded amax / 127). The dot of a weight row
// with an activation row (ggml_vec_dot_q4_0_q8_0 and its siblings) is, per block in
// order, float(sum_i q_w[i] * q_x[i]) * (d_w * d_x), plus m_w * s_x for the _1 types:
// the integer sum is exact and the scales round. (m * s stands for m * d_x * sum(q_x);
// s is rounded to float16, which is what ggml multiplies, so we do too.)

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kvdecode/quant/half.hpp"
#include "kvdecode/quant/q8_0.hpp"
#include "kvdecode/quant/weight_type.hpp"

namespace kvdecode::quant {

inline constexpr std::size_t legacy_block_values = 32;

struct block_q4_0 {
    std::uint16_t d;       // float16 scale
    std::uint8_t qs[16];   // nibbles: value j low, value j + 16 high
};
struct block_q4_1 {
    std::uint16_t d, m;    // float16 scale and minimum
    std::uint8_t qs[16];
};
struct block_q5_0 {
    std::uint16_t d;
    std::uint8_t qh[4];    // fifth bits, bit i for value i
    std::uint8_t qs[16];
};
struct block_q5_1 {
    std::uint16_t d, m;
    std::uint8_t qh[4];
    std::uint8_t qs[16];
};
struct block_q8_1 {
    std::uint16_t d, s;    // float16 scale, and d * sum(qs) rounded to float16
    std::int8_t qs[32];
};
static_assert(sizeof(block_q4_0) == 18 && sizeof(block_q4_0) == block_bytes(weight_type::q4_0));
static_assert(sizeof(block_q4_1) == 20 && sizeof(block_q4_1) == block_bytes(weight_type::q4_1));
static_assert(sizeof(block_q5_0) == 22 && sizeof(block_q5_0) == block_bytes(weight_type::q5_0));
static_assert(sizeof(block_q5_1) == 24 && sizeof(block_q5_1) == block_bytes(weight_type::q5_1));
static_assert(sizeof(block_q8_1) == 36);
static_assert(alignof(block_q4_0) == 2 && alignof(block_q5_1) == 2);

// What the four formats differ in; everything else is shared.
template <class Block>
struct legacy_format;
template <>
struct legacy_format<block_q4_0> {
    static constexpr weight_type type = weight_type::q4_0;
    static constexpr int bits = 4, offset = 8;
    static constexpr bool has_min = false;
};
template <>
struct legacy_format<block_q4_1> {
    static constexpr weight_type type = weight_type::q4_1;
    static constexpr int bits = 4, offset = 0;
    static constexpr bool has_min = true;
};
template <>
struct legacy_format<block_q5_0> {
    static constexpr weight_type type = weight_type::q5_0;
    static constexpr int bits = 5, offset = 16;
    static constexpr bool has_min = false;
};
template <>
struct legacy_format<block_q5_1> {
    static constexpr weight_type type = weight_type::q5_1;
    static constexpr int bits = 5, offset = 0;
    static constexpr bool has_min = true;
};

// Blocks a row of n values takes (n a multiple of 32).
constexpr std::size_t legacy_blocks(std::size_t n) noexcept { return n / legacy_block_values; }

// The fifth bits of a Q5 block as one word (bit i for value i), whatever the host's byte order.
template <class Block>
constexpr std::uint32_t high_bits(const Block& b) noexcept {
    return std::uint32_t{b.qh[0]} | std::uint32_t{b.qh[1]} << 8 | std::uint32_t{b.qh[2]} << 16 | std::uint32_t{b.qh[3]} << 24;
}

// A block's 32 integer quants in value order, the offset taken off: q - 8 / q - 16
// for the _0 types (signed), q for the _1 types.
template <class Block>
constexpr void unpack_quants(const Block& b, std::int8_t* q) noexcept {
    using F = legacy_format<Block>;
    std::uint32_t qh = 0;
    if constexpr (F::bits == 5) qh = high_bits(b);
    for (std::size_t j = 0; j < 16; ++j) {
        const int low = (b.qs[j] & 0x0f) | int((qh >> j) & 1u) << 4;
        const int high = (b.qs[j] >> 4) | int((qh >> (j + 16)) & 1u) << 4;
        q[j] = static_cast<std::int8_t>(low - F::offset);
        q[j + 16] = static_cast<std::int8_t>(high - F::offset);
    }
}

// In-memory quants (0 .. 2^bits - 1, value order) into a block's qs and qh.
template <class Block>
constexpr void pack_quants(const std::uint8_t* q, Block& b) noexcept {
    std::uint32_t qh = 0;
    for (std::size_t j = 0; j < 16; ++j) {
        b.qs[j] = static_cast<std::uint8_t>((q[j] & 0x0f) | (q[j + 16] & 0x0f) << 4);
        qh |= std::uint32_t(q[j] >> 4 & 1) << j | std::uint32_t(q[j + 16] >> 4 & 1) << (j + 16);
    }
    if constexpr (legacy_format<Block>::bits == 5)
        for (std::size_t i = 0; i < 4; ++i) b.qh[i] = static_cast<std::uint8_t>(qh >> (8 * i));
}

// One block from 32 values (ggml's reference quantiser; see the top of this file).
template <class Block>
inline Block quantize_block(const float* x) noexcept {
    using F = legacy_format<Block>;
    constexpr int top = (1 << F::bits) - 1;
    Block b{};
    std::uint8_t q[legacy_block_values] = {};
    bool finite = true;
    for (std::size_t i = 0; i < legacy_block_values; ++i) finite = finite && std::isfinite(x[i]);
    float d = 0, id = 0, min = 0;
    if constexpr (F::has_min) {
        min = std::numeric_limits<float>::max();
        float max = -std::numeric_limits<float>::max();
        for (std::size_t i = 0; i < legacy_block_values; ++i) {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
        }
        d = (max - min) / float(top);
    } else {
        float amax = 0, max = 0;
        for (std::size_t i = 0; i < legacy_block_values; ++i)
            if (amax < std::fabs(x[i])) amax = std::fabs(x[i]), max = x[i];
        d = max / float(-(top + 1) / 2);
    }
    if (!finite || !std::isfinite(d)) {
        b.d = f32_to_f16(std::numeric_limits<float>::quiet_NaN());
        if constexpr (F::has_min) b.m = b.d;
        return b;  // zero quants
    }
    id = std::fabs(d) >= std::numeric_limits<float>::min() ? 1.0f / d : 0.0f;
    // The products stay within [0, 2^bits + 0.5], so the conversions are defined.
    for (std::size_t i = 0; i < legacy_block_values; ++i) {
        const float v = F::has_min ? (x[i] - min) * id : x[i] * id;
        q[i] = static_cast<std::uint8_t>(std::min(top, int(static_cast<std::int8_t>(v + (float(F::offset) + 0.5f)))));
    }
    b.d = f32_to_f16(d);
    if constexpr (F::has_min) b.m = f32_to_f16(min);
    pack_quants(q, b);
    return b;
}

// x (n values, n a multiple of 32) -> n / 32 blocks.
template <class Block>
inline void quantize_row_legacy(const float* x, Block* y, std::size_t n) noexcept {
    for (std::size_t b = 0; b < legacy_blocks(n); ++b) y[b] = quantize_block<Block>(x + b * legacy_block_values);
}

// n / 32 blocks -> n values (n a multiple of 32), bit-exact with ggml's to_float.
template <class Block>
inline void dequantize_row_legacy(const Block* x, float* y, std::size_t n) noexcept {
    std::int8_t q[legacy_block_values];
    for (std::size_t b = 0; b < legacy_blocks(n); ++b) {
        unpack_quants(x[b], q);
        const float d = f16_to_f32(x[b].d);
        float* out = y + b * legacy_block_values;
        if constexpr (legacy_format<Block>::has_min) {
            const float m = f16_to_f32(x[b].m);
            for (std::size_t i = 0; i < legacy_block_values; ++i) out[i] = float(q[i]) * d + m;
        } else {
            for (std::size_t i = 0; i < legacy_block_values; ++i) out[i] = float(q[i]) * d;
        }
    }
}

inline void quantize_row_q4_0(const float* x, block_q4_0* y, std::size_t n) noexcept { quantize_row_legacy(x, y, n); }
inline void quantize_row_q4_1(const float* x, block_q4_1* y, std::size_t n) noexcept { quantize_row_legacy(x, y, n); }
inline void quantize_row_q5_0(const float* x, block_q5_0* y, std::size_t n) noexcept { quantize_row_legacy(x, y, n); }
inline void quantize_row_q5_1(const float* x, block_q5_1* y, std::size_t n) noexcept { quantize_row_legacy(x, y, n); }
inline void dequantize_row_q4_0(const block_q4_0* x, float* y, std::size_t n) noexcept { dequantize_row_legacy(x, y, n); }
inline void dequantize_row_q4_1(const block_q4_1* x, float* y, std::size_t n) noexcept { dequantize_row_legacy(x, y, n); }
inline void dequantize_row_q5_0(const block_q5_0* x, float* y, std::size_t n) noexcept { dequantize_row_legacy(x, y, n); }
inline void dequantize_row_q5_1(const block_q5_1* x, float* y, std::size_t n) noexcept { dequantize_row_legacy(x, y, n); }

// Q8_1's s for one block whose quants quantize_block_q8_0 made from x (count values):
// d * sum(qs) with d = amax / 127 unrounded, as float16; NaN where Q8_0's d is NaN.
inline std::uint16_t q8_1_block_sum(const float* x, std::size_t count, const std::int8_t* qs) noexcept {
    float amax = 0;
    bool finite = true;
    for (std::size_t i = 0; i < count; ++i) {
        finite = finite && std::isfinite(x[i]);
        amax = std::max(amax, std::fabs(x[i]));
    }
    if (!finite) return f32_to_f16(std::numeric_limits<float>::quiet_NaN());
    int sum = 0;
    for (std::size_t i = 0; i < q8_0_block_values; ++i) sum += qs[i];
    return f32_to_f16(float(sum) * (amax / 127.0f));
}

// x (n values) -> q8_0_blocks(n) Q8_1 blocks (a short last block is zero-padded, as Q8_0's).
inline void quantize_row_q8_1(const float* x, block_q8_1* y, std::size_t n) noexcept {
    for (std::size_t b = 0; b < q8_0_blocks(n); ++b) {
        const std::size_t first = b * q8_0_block_values, count = std::min(q8_0_block_values, n - first);
        y[b].d = quantize_block_q8_0(x + first, count, y[b].qs);
        y[b].s = q8_1_block_sum(x + first, count, y[b].qs);
    }
}

// The activation block a weight block multiplies: Q8_1 for the _1 types, Q8_0 otherwise.
template <class Block>
using activation_block = std::conditional_t<legacy_format<Block>::has_min, block_q8_1, block_q8_0>;

// One block's term of the dot: float(sum q_w q_x) * (d_w * d_x) (+ m_w * s_x). Shared
// by the reference dot and the scalar kernel, so they agree bit for bit.
template <class Block>
inline float block_dot(const Block& w, const std::int8_t* xq, float dx, float sx) noexcept {
    std::int8_t q[legacy_block_values];
    unpack_quants(w, q);
    std::int32_t isum = 0;
    for (std::size_t i = 0; i < legacy_block_values; ++i) isum += std::int32_t{q[i]} * std::int32_t{xq[i]};
    const float scaled = static_cast<float>(isum) * (f16_to_f32(w.d) * dx);
    if constexpr (legacy_format<Block>::has_min) return scaled + f16_to_f32(w.m) * sx;
    else {
        (void)sx;
        return scaled;
    }
}

// Dot of a weight row with an activation row, `blocks` blocks each, in block order.
template <class Block>
inline float dot_legacy(const Block* w, const activation_block<Block>* x, std::size_t blocks) noexcept {
    float sum = 0;
    for (std::size_t b = 0; b < blocks; ++b) {
        float sx = 0;
        if constexpr (legacy_format<Block>::has_min) sx = f16_to_f32(x[b].s);
        sum += block_dot(w[b], x[b].qs, f16_to_f32(x[b].d), sx);
    }
    return sum;
}

inline float dot_q4_0_q8_0(const block_q4_0* w, const block_q8_0* x, std::size_t blocks) noexcept { return dot_legacy(w, x, blocks); }
inline float dot_q4_1_q8_1(const block_q4_1* w, const block_q8_1* x, std::size_t blocks) noexcept { return dot_legacy(w, x, blocks); }
inline float dot_q5_0_q8_0(const block_q5_0* w, const block_q8_0* x, std::size_t blocks) noexcept { return dot_legacy(w, x, blocks); }
inline float dot_q5_1_q8_1(const block_q5_1* w, const block_q8_1* x, std::size_t blocks) noexcept { return dot_legacy(w, x, blocks); }

}  // namespace kvdecode::quant
