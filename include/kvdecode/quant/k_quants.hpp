#pragma once
// GGUF's K-quant formats (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) and the Q8_K activations
// they are multiplied with: block structs laid out as ggml's (ggml-common.h), a
// scalar dequantisation bit-exact with ggml's to_float, reference quantisers that
// follow ggml's reference algorithms (quantize_row_*_K_ref: what llama-quantize runs
// without an importance matrix), and the reference dot of a weight row with a Q8_K
// row in ggml's integer arithmetic. The SIMD kernels (kernels_k_quants.hpp) are
// tested against these.
//
// A super-block holds 256 consecutive values of a row. Every type is read through
// one integer form (k_block_ints), the executable spec of all five layouts:
//   value[i] = d * scale[i / 16] * (q[i] - offset) - dmin * min[i / 16]
// with q[i] unsigned (0..63), scale and min small integers, d and dmin float16 in
// the block, offset 0 (Q2_K, Q4_K, Q5_K), 4 (Q3_K) or 32 (Q6_K), and no min term for
// Q3_K and Q6_K. Q4_K and Q5_K have 8 sub-blocks of 32 values: their scales and mins
// appear twice each in the 16 entries.
//
// Bit-exactness: ggml's reference code is compiled without fused multiply-add (its
// quantisation and to_float live in ggml-base, built for the baseline target). A
// compiler may fuse a * b - c into one FMA here (GCC does by default, even in
// -std=c++20), which rounds once instead of twice, so every product that meets an
// addition goes through rounded() first.
//
// A row of n values is ceil(n / 256) super-blocks; n not a multiple of 256 only
// happens outside GGUF (a GGUF row is whole blocks): the last block is padded with
// zeros when quantising, and only n values are written when dequantising.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kvdecode/quant/half.hpp"

namespace kvdecode::quant {

inline constexpr std::size_t qk_k = 256;  // values per super-block (ggml's QK_K)

// 16 sub-blocks of 16: value = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4), q 2 bits.
struct block_q2_k {
    std::uint8_t scales[qk_k / 16];  // low nibble scale, high nibble min, per 16 values
    std::uint8_t qs[qk_k / 4];       // 2-bit quants: byte l of each 32-byte half holds 4 values, 32 apart
    std::uint16_t d;                 // float16 scale of the scales
    std::uint16_t dmin;              // float16 scale of the mins
};
static_assert(sizeof(block_q2_k) == 84, "block_q2_k must match ggml's 84-byte block_q2_K");

// 16 sub-blocks of 16: value = d * (scale - 32) * (q - 4), q 3 bits (2 in qs, the high one in hmask).
struct block_q3_k {
    std::uint8_t hmask[qk_k / 8];  // bit t of byte l: the high bit of value 32 t + l
    std::uint8_t qs[qk_k / 4];     // low 2 bits, as Q2_K
    std::uint8_t scales[12];       // 16 6-bit scales: low nibbles in bytes 0-7, high 2 bits in bytes 8-11
    std::uint16_t d;               // float16 super-block scale
};
static_assert(sizeof(block_q3_k) == 110, "block_q3_k must match ggml's 110-byte block_q3_K");

// 8 sub-blocks of 32: value = d * scale * q - dmin * min, q 4 bits, scale and min 6 bits.
struct block_q4_k {
    std::uint16_t d;           // float16 scale of the scales
    std::uint16_t dmin;        // float16 scale of the mins
    std::uint8_t scales[12];   // 8 scales and 8 mins of 6 bits (get_scale_min_k4)
    std::uint8_t qs[qk_k / 2]; // 4-bit quants: byte l of each 32-byte group, low nibble value l, high value l + 32
};
static_assert(sizeof(block_q4_k) == 144, "block_q4_k must match ggml's 144-byte block_q4_K");

// As Q4_K with a fifth bit: q 0..31.
struct block_q5_k {
    std::uint16_t d;
    std::uint16_t dmin;
    std::uint8_t scales[12];
    std::uint8_t qh[qk_k / 8];  // bit 2 j of byte l: the high bit of value 64 j + l; bit 2 j + 1: of 64 j + 32 + l
    std::uint8_t qs[qk_k / 2];  // low 4 bits, as Q4_K
};
static_assert(sizeof(block_q5_k) == 176, "block_q5_k must match ggml's 176-byte block_q5_K");

// 16 sub-blocks of 16: value = d * scale * (q - 32), q 6 bits, scale int8.
struct block_q6_k {
    std::uint8_t ql[qk_k / 2];     // low 4 bits
    std::uint8_t qh[qk_k / 4];     // high 2 bits
    std::int8_t scales[qk_k / 16];
    std::uint16_t d;               // float16 super-block scale
};
static_assert(sizeof(block_q6_k) == 210, "block_q6_k must match ggml's 210-byte block_q6_K");

// The activations of a product with K-quant weights: value = d * qs[i] (d float, may
// be negative: ggml's choice), bsums[j] = sum of qs[16 j .. 16 j + 15].
struct block_q8_k {
    float d;
    std::int8_t qs[qk_k];
    std::int16_t bsums[qk_k / 16];
};
static_assert(sizeof(block_q8_k) == 292, "block_q8_k must match ggml's 292-byte block_q8_K");

// Super-blocks a row of n values takes.
constexpr std::size_t k_blocks(std::size_t n) noexcept { return (n + qk_k - 1) / qk_k; }

// One super-block as integers (see the top of this file).
struct k_block_ints {
    std::uint8_t q[qk_k];          // 0..63
    std::int16_t scale[qk_k / 16]; // -128..127
    std::int16_t min[qk_k / 16];   // 0..63 (zero for types without a min)
    float d = 0, dmin = 0;
};

namespace detail {

// v as a float in a register, opaque to the optimiser: whatever it is added to is
// added to this rounded value (no fused multiply-add across it).
inline float rounded(float v) noexcept {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && defined(__SSE__)
    __asm__("" : "+x"(v));
#elif defined(__GNUC__)
    __asm__("" : "+m"(v));
#endif
    return v;
}

// ggml's nearest_int: round half to even through the float adder, exact for
// |v| <= 4194303 (what every caller passes); any other input, NaN included, gives some
// int (the callers clamp it), never undefined behaviour.
inline int nearest_int(float v) noexcept {
    const float shifted = rounded(v) + 12582912.0f;  // 1.5 * 2^23: its ulp is 1
    return static_cast<int>(std::bit_cast<std::uint32_t>(shifted) & 0x007fffff) - 0x00400000;
}

// Q4_K and Q5_K's 6-bit scale and min of sub-block j (of 8) (ggml's get_scale_min_k4).
inline void scale_min_k4(std::size_t j, const std::uint8_t* q, std::uint8_t& scale, std::uint8_t& min) noexcept {
    if (j < 4) {
        scale = q[j] & 63;
        min = q[j + 4] & 63;
    } else {
        scale = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        min = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// Q3_K's 6-bit scale j (of 16), its offset 32 not yet taken off.
inline int q3_k_scale(const std::uint8_t* scales, std::size_t j) noexcept {
    const int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
    const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return low | (high << 4);
}

// Value 32 t + l (t < 8, l < 32) of a 2-bit plane layout (Q2_K, Q3_K): bits 2 (t % 4) of
// byte 32 (t / 4) + l.
inline void unpack_two_bit_planes(const std::uint8_t* qs, std::uint8_t* q) noexcept {
    for (std::size_t t = 0; t < 8; ++t)
        for (std::size_t l = 0; l < 32; ++l) q[32 * t + l] = (qs[32 * (t / 4) + l] >> (2 * (t % 4))) & 3;
}

// Value 64 j + l and 64 j + 32 + l (j < 4, l < 32): the nibbles of byte 32 j + l (Q4_K, Q5_K).
inline void unpack_nibbles(const std::uint8_t* qs, std::uint8_t* q) noexcept {
    for (std::size_t j = 0; j < 4; ++j)
        for (std::size_t l = 0; l < 32; ++l) {
            q[64 * j + l] = qs[32 * j + l] & 0xF;
            q[64 * j + 32 + l] = qs[32 * j + l] >> 4;
        }
}

// Adds `value` to q[32 t + l] where bit t of bits[l] is set (t < 8, l < 32): Q3_K's
// hmask, Q5_K's qh.
inline void add_bit_planes(const std::uint8_t* bits, std::uint8_t value, std::uint8_t* q) noexcept {
    for (std::size_t t = 0; t < 8; ++t)
        for (std::size_t l = 0; l < 32; ++l)
            if ((bits[l] >> t) & 1) q[32 * t + l] = static_cast<std::uint8_t>(q[32 * t + l] + value);
}

inline void scales_of_pairs(const std::uint8_t* scales, k_block_ints& v) noexcept {
    for (std::size_t j = 0; j < 8; ++j) {
        std::uint8_t s = 0, m = 0;
        scale_min_k4(j, scales, s, m);
        v.scale[2 * j] = v.scale[2 * j + 1] = s;
        v.min[2 * j] = v.min[2 * j + 1] = m;
    }
}

}  // namespace detail

// What the kernels and the dequantisation need to know of each type.
template <class Block>
struct k_format;

template <>
struct k_format<block_q2_k> {
    static constexpr int offset = 0;
    static constexpr bool has_min = true;
    static void unpack_scales(const block_q2_k& b, k_block_ints& v) noexcept {
        for (std::size_t j = 0; j < 16; ++j) v.scale[j] = b.scales[j] & 0xF, v.min[j] = b.scales[j] >> 4;
        v.d = f16_to_f32(b.d), v.dmin = f16_to_f32(b.dmin);
    }
    static void unpack_quants(const block_q2_k& b, std::uint8_t* q) noexcept { detail::unpack_two_bit_planes(b.qs, q); }
};

template <>
struct k_format<block_q3_k> {
    static constexpr int offset = 4;
    static constexpr bool has_min = false;
    static void unpack_scales(const block_q3_k& b, k_block_ints& v) noexcept {
        for (std::size_t j = 0; j < 16; ++j) v.scale[j] = static_cast<std::int16_t>(detail::q3_k_scale(b.scales, j) - 32), v.min[j] = 0;
        v.d = f16_to_f32(b.d), v.dmin = 0;
    }
    // ggml: value - (hmask bit set ? 0 : 4), i.e. (low + 4 * bit) - 4.
    static void unpack_quants(const block_q3_k& b, std::uint8_t* q) noexcept {
        detail::unpack_two_bit_planes(b.qs, q);
        detail::add_bit_planes(b.hmask, 4, q);
    }
};

template <>
struct k_format<block_q4_k> {
    static constexpr int offset = 0;
    static constexpr bool has_min = true;
    static void unpack_scales(const block_q4_k& b, k_block_ints& v) noexcept {
        detail::scales_of_pairs(b.scales, v);
        v.d = f16_to_f32(b.d), v.dmin = f16_to_f32(b.dmin);
    }
    static void unpack_quants(const block_q4_k& b, std::uint8_t* q) noexcept { detail::unpack_nibbles(b.qs, q); }
};

template <>
struct k_format<block_q5_k> {
    static constexpr int offset = 0;
    static constexpr bool has_min = true;
    static void unpack_scales(const block_q5_k& b, k_block_ints& v) noexcept {
        detail::scales_of_pairs(b.scales, v);
        v.d = f16_to_f32(b.d), v.dmin = f16_to_f32(b.dmin);
    }
    static void unpack_quants(const block_q5_k& b, std::uint8_t* q) noexcept {
        detail::unpack_nibbles(b.qs, q);
        detail::add_bit_planes(b.qh, 16, q);  // bit t of qh[l]: value 32 t + l, as the nibbles are ordered
    }
};

template <>
struct k_format<block_q6_k> {
    static constexpr int offset = 32;
    static constexpr bool has_min = false;
    static void unpack_scales(const block_q6_k& b, k_block_ints& v) noexcept {
        for (std::size_t j = 0; j < 16; ++j) v.scale[j] = b.scales[j], v.min[j] = 0;
        v.d = f16_to_f32(b.d), v.dmin = 0;
    }
    // Half h (128 values): value 128 h + 32 t + l (t < 4) takes ql's nibble (t / 2) of byte
    // 64 h + 32 (t % 2) + l and bits 2 t of qh[32 h + l] as its top two bits.
    static void unpack_quants(const block_q6_k& b, std::uint8_t* q) noexcept {
        for (std::size_t h = 0; h < 2; ++h)
            for (std::size_t t = 0; t < 4; ++t)
                for (std::size_t l = 0; l < 32; ++l) {
                    const std::uint8_t low = (b.ql[64 * h + 32 * (t % 2) + l] >> (4 * (t / 2))) & 0xF;
                    const std::uint8_t high = (b.qh[32 * h + l] >> (2 * t)) & 3;
                    q[128 * h + 32 * t + l] = static_cast<std::uint8_t>(low | (high << 4));
                }
    }
};

template <class Block>
inline void unpack_k_block(const Block& b, k_block_ints& v) noexcept {
    k_format<Block>::unpack_scales(b, v);
    k_format<Block>::unpack_quants(b, v.q);
}

// Blocks -> n values, each as ggml's dequantize_row_*_K computes it: dl = d * scale,
// ml = dmin * min, value = dl * (q - offset) - ml (Q3_K, Q6_K: no - ml).
template <class Block>
inline void dequantize_row_k(const Block* x, float* y, std::size_t n) noexcept {
    using format = k_format<Block>;
    k_block_ints v;
    for (std::size_t b = 0; b < k_blocks(n); ++b) {
        unpack_k_block(x[b], v);
        const std::size_t count = std::min(qk_k, n - b * qk_k);
        for (std::size_t i = 0; i < count; ++i) {
            const std::size_t j = i / 16;
            const float dl = v.d * static_cast<float>(v.scale[j]);
            const float value = detail::rounded(dl * static_cast<float>(int{v.q[i]} - format::offset));
            if constexpr (format::has_min) y[b * qk_k + i] = value - v.dmin * static_cast<float>(v.min[j]);
            else y[b * qk_k + i] = value;
        }
    }
}

inline void dequantize_row_q2_k(const block_q2_k* x, float* y, std::size_t n) noexcept { dequantize_row_k(x, y, n); }
inline void dequantize_row_q3_k(const block_q3_k* x, float* y, std::size_t n) noexcept { dequantize_row_k(x, y, n); }
inline void dequantize_row_q4_k(const block_q4_k* x, float* y, std::size_t n) noexcept { dequantize_row_k(x, y, n); }
inline void dequantize_row_q5_k(const block_q5_k* x, float* y, std::size_t n) noexcept { dequantize_row_k(x, y, n); }
inline void dequantize_row_q6_k(const block_q6_k* x, float* y, std::size_t n) noexcept { dequantize_row_k(x, y, n); }

// ---------------------------------------------------------------------------
// Q8_K activations (ggml's quantize_row_q8_K_ref): max = the value of largest
// magnitude (the first of equals), iscale = -127 / max, qs[i] = nearest_int(iscale *
// x[i]) (|qs| <= 127), d = 1 / iscale, bsums the sums of 16. Where ggml's arithmetic is
// undefined this one is not: a block holding inf or NaN gets qs = 0 and d = NaN (its
// products become NaN), and one so small that -127 / max overflows gets qs = 0 and
// d = 0 (ggml: an all-zero block, d = 0).

namespace detail {
// bsums[j] = the sum of qs[16 j .. 16 j + 15].
inline void fill_bsums(block_q8_k& y) noexcept {
    for (std::size_t j = 0; j < qk_k / 16; ++j) {
        int sum = 0;
        for (std::size_t i = 0; i < 16; ++i) sum += y.qs[16 * j + i];
        y.bsums[j] = static_cast<std::int16_t>(sum);
    }
}
}  // namespace detail

inline void quantize_block_q8_k(const float* x, std::size_t count, block_q8_k& y) noexcept {
    float max = 0, amax = 0;
    bool finite = true;
    for (std::size_t i = 0; i < count; ++i) {
        finite = finite && std::isfinite(x[i]);
        const float ax = std::fabs(x[i]);
        if (ax > amax) amax = ax, max = x[i];
    }
    std::memset(y.qs, 0, sizeof y.qs);
    std::memset(y.bsums, 0, sizeof y.bsums);
    const float iscale = amax != 0 ? -127.0f / max : 0.0f;
    if (!finite) {
        y.d = std::numeric_limits<float>::quiet_NaN();
        return;
    }
    if (amax == 0 || !std::isfinite(iscale)) {
        y.d = 0;
        return;
    }
    for (std::size_t i = 0; i < count; ++i) y.qs[i] = static_cast<std::int8_t>(std::min(127, detail::nearest_int(iscale * x[i])));
    detail::fill_bsums(y);
    y.d = 1 / iscale;
}

inline void quantize_row_q8_k(const float* x, block_q8_k* y, std::size_t n) noexcept {
    for (std::size_t b = 0; b < k_blocks(n); ++b) quantize_block_q8_k(x + b * qk_k, std::min(qk_k, n - b * qk_k), y[b]);
}

inline void dequantize_row_q8_k(const block_q8_k* x, float* y, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] = x[i / qk_k].d * static_cast<float>(x[i / qk_k].qs[i % qk_k]);
}

// ---------------------------------------------------------------------------
// The reference dot of a weight row with a Q8_K row, ggml's integer arithmetic
// (ggml_vec_dot_q*_K_q8_K): per super-block the exact integers
//   isum = sum_j scale[j] * sum_{i in j} (q[i] - offset) * x.qs[i]
//   msum = sum_j min[j] * x.bsums[j]
// (the offset's part through bsums too), then, in block order,
//   sum += isum * (d * x.d) - msum * (dmin * x.d)
// each product rounded to float on its own. The kernels give exactly this sum.

struct k_block_sums {
    std::int32_t isum = 0, msum = 0;
};

namespace detail {

// The block's float contribution, rounded the same way on every instruction set.
template <bool HasMin>
inline float add_block(float sum, k_block_sums s, float d, float dmin, float xd) noexcept {
    sum += rounded(static_cast<float>(s.isum) * (d * xd));
    if constexpr (HasMin) sum -= rounded(static_cast<float>(s.msum) * (dmin * xd));
    return sum;
}

template <class Block>
inline k_block_sums block_sums_scalar(const k_block_ints& w, const block_q8_k& x) noexcept {
    using format = k_format<Block>;
    k_block_sums s;
    for (std::size_t j = 0; j < qk_k / 16; ++j) {
        std::int32_t dot = 0;
        for (std::size_t i = 16 * j; i < 16 * j + 16; ++i) dot += std::int32_t{w.q[i]} * std::int32_t{x.qs[i]};
        s.isum += w.scale[j] * (dot - format::offset * std::int32_t{x.bsums[j]});
        if constexpr (format::has_min) s.msum += w.min[j] * std::int32_t{x.bsums[j]};
    }
    return s;
}

}  // namespace detail

template <class Block>
inline float dot_k_q8_k(const Block* w, const block_q8_k* x, std::size_t blocks) noexcept {
    k_block_ints v;
    float sum = 0;
    for (std::size_t b = 0; b < blocks; ++b) {
        unpack_k_block(w[b], v);
        sum = detail::add_block<k_format<Block>::has_min>(sum, detail::block_sums_scalar<Block>(v, x[b]), v.d, v.dmin, x[b].d);
    }
    return sum;
}

// ---------------------------------------------------------------------------
// Reference quantisers: ggml's algorithms (make_qkx2_quants for Q2_K, Q4_K, Q5_K;
// make_q3_quants for Q3_K; make_qx_quants for Q6_K), the same float operations in the
// same order, products rounded before they are added (see the top).

namespace detail {

inline constexpr float group_max_eps = 1e-15f;  // ggml's GROUP_MAX_EPS: below it a group is zero

// Scale and min (returned as -min >= 0 in the_min) of n values, quants L in [0, nmax],
// minimising the weighted error (|diff| when use_mad, else diff^2) over nstep + 1 trial
// scales (ggml's make_qkx2_quants).
inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, std::uint8_t* L, float& the_min,
                              std::uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) noexcept {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = rounded(sum_w * x[0]);
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += rounded(w * x[i]);
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, l)));
        float diff = rounded(scale * L[i]) + min - x[i];
        diff = use_mad ? std::fabs(diff) : rounded(diff * diff);
        best_error += rounded(weights[i] * diff);
    }
    if (nstep < 1) {
        the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rounded(rdelta * is) + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = std::max(0, std::min(nmax, l));
            Laux[i] = static_cast<std::uint8_t>(l);
            const float w = weights[i];
            sum_l += rounded(w * l);
            sum_l2 += rounded(w * l * l);
            sum_xl += rounded(w * l * x[i]);
        }
        const float D = rounded(sum_w * sum_l2) - rounded(sum_l * sum_l);
        if (D > 0) {
            float this_scale = (rounded(sum_w * sum_xl) - rounded(sum_x * sum_l)) / D;
            float this_min = (rounded(sum_l2 * sum_x) - rounded(sum_l * sum_xl)) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = rounded(this_scale * Laux[i]) + this_min - x[i];
                diff = use_mad ? std::fabs(diff) : rounded(diff * diff);
                error += rounded(weights[i] * diff);
            }
            if (error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    the_min = -min;
    return scale;
}

// Symmetric quants L in [0, 2 nmax) (value l - nmax) of n values and their scale,
// weighted by x^2, over 19 trial scales (ggml's make_qx_quants with rmse_type 1 and
// no importance weights: what Q6_K uses).
inline float make_qx_quants(int n, int nmax, const float* x, std::int8_t* L) noexcept {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) amax = ax, max = x[i];
    }
    if (amax < group_max_eps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = std::max(-nmax, std::min(nmax - 1, l));
        L[i] = static_cast<std::int8_t>(l + nmax);
        const float w = rounded(x[i] * x[i]);
        sumlx += rounded(w * x[i] * l);
        suml2 += rounded(w * l * l);
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + rounded(0.1f * is)) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = std::max(-nmax, std::min(nmax - 1, l));
            const float w = rounded(x[i] * x[i]);
            sumlx += rounded(w * x[i] * l);
            suml2 += rounded(w * l * l);
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = static_cast<std::int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Q3_K's symmetric quants in [-nmax, nmax) (returned with nmax added), refined by up to
// five rounds of moving single quants where that lowers the x^2-weighted error
// (ggml's make_q3_quants with do_rmse).
inline float make_q3_quants(int n, int nmax, const float* x, std::int8_t* L) noexcept {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) amax = ax, max = x[i];
    }
    if (amax < group_max_eps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = std::max(-nmax, std::min(nmax - 1, l));
        L[i] = static_cast<std::int8_t>(l);
        const float w = rounded(x[i] * x[i]);
        sumlx += rounded(w * x[i] * l);
        suml2 += rounded(w * l * l);
    }
    for (int round = 0; round < 5; ++round) {
        int changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = rounded(x[i] * x[i]);
            float slx = sumlx - rounded(w * x[i] * L[i]);
            if (slx > 0) {
                float sl2 = suml2 - rounded(w * L[i] * L[i]);
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = std::max(-nmax, std::min(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += rounded(w * x[i] * new_l);
                    sl2 += rounded(w * new_l * new_l);
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<std::int8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++changed;
                    }
                }
            }
        }
        if (changed == 0) break;
    }
    for (int i = 0; i < n; ++i) L[i] = static_cast<std::int8_t>(L[i] + nmax);
    return sumlx / suml2;
}

// The 256 values of block b of a row of n (zeros past n).
inline void block_values(const float* x, std::size_t n, std::size_t b, float* out) noexcept {
    const std::size_t first = b * qk_k, count = std::min(qk_k, n - first);
    std::copy(x + first, x + first + count, out);
    std::fill(out + count, out + qk_k, 0.0f);
}

// Q4_K and Q5_K: 8 sub-blocks of 32 through make_qkx2_quants (weights av_x + |x|),
// their scales and mins to 6 bits, then every value requantised with the stored scales.
template <int Nmax>
inline void quantize_block_qk_32(const float* x, std::uint16_t& d_out, std::uint16_t& dmin_out, std::uint8_t* scales_out,
                                 std::uint8_t* L, float rmin, float rdelta, int nstep) noexcept {
    std::uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += rounded(x[32 * j + l] * x[32 * j + l]);
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, Nmax, x + 32 * j, weights, L + 32 * j, mins[j], Laux, rmin, rdelta, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    std::memset(scales_out, 0, 12);
    for (int j = 0; j < 8; ++j) {
        std::uint8_t ls = static_cast<std::uint8_t>(nearest_int(inv_scale * scales[j]));
        std::uint8_t lm = static_cast<std::uint8_t>(nearest_int(inv_min * mins[j]));
        ls = std::min<std::uint8_t>(63, ls);
        lm = std::min<std::uint8_t>(63, lm);
        if (j < 4) {
            scales_out[j] = ls;
            scales_out[j + 4] = lm;
        } else {
            scales_out[j + 4] = static_cast<std::uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
            scales_out[j - 4] |= static_cast<std::uint8_t>((ls >> 4) << 6);
            scales_out[j] |= static_cast<std::uint8_t>((lm >> 4) << 6);
        }
    }
    d_out = f32_to_f16(max_scale / 63.0f);
    dmin_out = f32_to_f16(max_min / 63.0f);
    for (std::size_t j = 0; j < 8; ++j) {
        std::uint8_t sc = 0, m = 0;
        scale_min_k4(j, scales_out, sc, m);
        const float d = f16_to_f32(d_out) * sc;
        if (d == 0) continue;
        const float dm = f16_to_f32(dmin_out) * m;
        for (std::size_t i = 0; i < 32; ++i) {
            const int l = nearest_int((x[32 * j + i] + dm) / d);
            L[32 * j + i] = static_cast<std::uint8_t>(std::max(0, std::min(Nmax, l)));
        }
    }
}

}  // namespace detail

inline void quantize_row_q2_k(const float* row, block_q2_k* y, std::size_t n) noexcept {
    float x[qk_k], weights[16], mins[16], scales[16];
    std::uint8_t L[qk_k], Laux[16];
    for (std::size_t b = 0; b < k_blocks(n); ++b) {
        detail::block_values(row, n, b, x);
        block_q2_k& out = y[b];
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
            scales[j] = detail::make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = 15.0f / max_scale;
            for (int j = 0; j < 16; ++j) out.scales[j] = static_cast<std::uint8_t>(detail::nearest_int(iscale * scales[j]));
            out.d = f32_to_f16(max_scale / 15.0f);
        } else {
            for (int j = 0; j < 16; ++j) out.scales[j] = 0;
            out.d = f32_to_f16(0.0f);
        }
        if (max_min > 0) {
            const float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; ++j)
                out.scales[j] |= static_cast<std::uint8_t>(detail::nearest_int(iscale * mins[j]) << 4);
            out.dmin = f32_to_f16(max_min / 15.0f);
        } else {
            out.dmin = f32_to_f16(0.0f);
        }
        for (std::size_t j = 0; j < 16; ++j) {
            const float d = f16_to_f32(out.d) * (out.scales[j] & 0xF);
            if (d == 0) continue;
            const float dm = f16_to_f32(out.dmin) * (out.scales[j] >> 4);
            for (std::size_t i = 0; i < 16; ++i) {
                const int l = detail::nearest_int((x[16 * j + i] + dm) / d);
                L[16 * j + i] = static_cast<std::uint8_t>(std::max(0, std::min(3, l)));
            }
        }
        for (std::size_t h = 0; h < 2; ++h)
            for (std::size_t l = 0; l < 32; ++l) {
                const std::uint8_t* q = L + 128 * h + l;
                out.qs[32 * h + l] = static_cast<std::uint8_t>(q[0] | (q[32] << 2) | (q[64] << 4) | (q[96] << 6));
            }
    }
}

inline void quantize_row_q3_k(const float* row, block_q3_k* y, std::size_t n) noexcept {
    float x[qk_k], scales[16];
    std::int8_t L[qk_k];
    for (std::size_t b = 0; b < k_blocks(n); ++b) {
        detail::block_values(row, n, b, x);
        block_q3_k& out = y[b];
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; ++j) {
            scales[j] = detail::make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            const float scale = std::fabs(scales[j]);
            if (scale > amax) amax = scale, max_scale = scales[j];
        }
        std::memset(out.scales, 0, sizeof out.scales);
        if (max_scale != 0) {
            const float iscale = -32.0f / max_scale;
            for (std::size_t j = 0; j < 16; ++j) {
                int l = detail::nearest_int(iscale * scales[j]);
                l = std::max(-32, std::min(31, l)) + 32;
                if (j < 8) out.scales[j] = static_cast<std::uint8_t>(l & 0xF);
                else out.scales[j - 8] |= static_cast<std::uint8_t>((l & 0xF) << 4);
                out.scales[j % 4 + 8] |= static_cast<std::uint8_t>((l >> 4) << (2 * (j / 4)));
            }
            out.d = f32_to_f16(1 / iscale);
        } else {
            out.d = f32_to_f16(0.0f);
        }
        for (std::size_t j = 0; j < 16; ++j) {
            const float d = f16_to_f32(out.d) * static_cast<float>(detail::q3_k_scale(out.scales, j) - 32);
            if (d == 0) continue;
            for (std::size_t i = 0; i < 16; ++i) {
                const int l = detail::nearest_int(x[16 * j + i] / d);
                L[16 * j + i] = static_cast<std::int8_t>(std::max(-4, std::min(3, l)) + 4);
            }
        }
        // The high bit of value 32 t + l in bit t of hmask[l]; the low two bits as Q2_K.
        std::memset(out.hmask, 0, sizeof out.hmask);
        for (std::size_t i = 0; i < qk_k; ++i)
            if (L[i] > 3) {
                out.hmask[i % 32] |= static_cast<std::uint8_t>(1u << (i / 32));
                L[i] = static_cast<std::int8_t>(L[i] - 4);
            }
        for (std::size_t h = 0; h < 2; ++h)
            for (std::size_t l = 0; l < 32; ++l) {
                const std::int8_t* q = L + 128 * h + l;
                out.qs[32 * h + l] = static_cast<std::uint8_t>(q[0] | (q[32] << 2) | (q[64] << 4) | (q[96] << 6));
            }
    }
}

inline void quantize_row_q4_k(const float* row, block_q4_k* y, std::size_t n) noexcept {
    float x[qk_k];
    std::uint8_t L[qk_k];
    for (std::size_t b = 0; b < k_blocks(n); ++b) {
        detail::block_values(row, n, b, x);
        block_q4_k& out = y[b];
        detail::quantize_block_qk_32<15>(x, out.d, out.dmin, out.scales, L, -1.0f, 0.1f, 20);
        for (std::size_t j = 0; j < 4; ++j)
            for (std::size_t l = 0; l < 32; ++l)
                out.qs[32 * j + l] = static_cast<std::uint8_t>(L[64 * j + l] | (L[64 * j + 32 + l] << 4));
    }
}

inline void quantize_row_q5_k(const float* row, block_q5_k* y, std::size_t n) noexcept {
    float x[qk_k];
    std::uint8_t L[qk_k];
    for (std::size_t b = 0; b < k_blocks(n); ++b) {
        detail::block_values(row, n, b, x);
        block_q5_k& out = y[b];
        detail::quantize_block_qk_32<31>(x, out.d, out.dmin, out.scales, L, -0.5f, 0.1f, 15);
        std::memset(out.qh, 0, sizeof out.qh);
        for (std::size_t j = 0; j < 4; ++j)
            for (std::size_t l = 0; l < 32; ++l) {
                int l1 = L[64 * j + l], l2 = L[64 * j + 32 + l];
                if (l1 > 15) l1 -= 16, out.qh[l] |= static_cast<std::uint8_t>(1u << (2 * j));
                if (l2 > 15) l2 -= 16, out.qh[l] |= static_cast<std::uint8_t>(2u << (2 * j));
                out.qs[32 * j + l] = static_cast<std::uint8_t>(l1 | (l2 << 4));
            }
    }
}

inline void quantize_row_q6_k(const float* row, block_q6_k* y, std::size_t n) noexcept {
    float x[qk_k], scales[16];
    std::int8_t L[qk_k];
    for (std::size_t b = 0; b < k_blocks(n); ++b) {
        detail::block_values(row, n, b, x);
        block_q6_k& out = y[b];
        float max_scale = 0, max_abs_scale = 0;
        for (int j = 0; j < 16; ++j) {
            scales[j] = detail::make_qx_quants(16, 32, x + 16 * j, L + 16 * j);
            const float abs_scale = std::fabs(scales[j]);
            if (abs_scale > max_abs_scale) max_abs_scale = abs_scale, max_scale = scales[j];
        }
        if (max_abs_scale < detail::group_max_eps) {
            std::memset(&out, 0, sizeof out);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        out.d = f32_to_f16(1 / iscale);
        for (std::size_t j = 0; j < 16; ++j)
            out.scales[j] = static_cast<std::int8_t>(std::min(127, detail::nearest_int(iscale * scales[j])));
        for (std::size_t j = 0; j < 16; ++j) {
            const float d = f16_to_f32(out.d) * out.scales[j];
            if (d == 0) continue;
            for (std::size_t i = 0; i < 16; ++i) {
                const int l = detail::nearest_int(x[16 * j + i] / d);
                L[16 * j + i] = static_cast<std::int8_t>(std::max(-32, std::min(31, l)) + 32);
            }
        }
        for (std::size_t h = 0; h < 2; ++h)
            for (std::size_t l = 0; l < 32; ++l) {
                const std::int8_t* q = L + 128 * h + l;
                out.ql[64 * h + l] = static_cast<std::uint8_t>((q[0] & 0xF) | ((q[64] & 0xF) << 4));
                out.ql[64 * h + 32 + l] = static_cast<std::uint8_t>((q[32] & 0xF) | ((q[96] & 0xF) << 4));
                out.qh[32 * h + l] =
                    static_cast<std::uint8_t>((q[0] >> 4) | ((q[32] >> 4) << 2) | ((q[64] >> 4) << 4) | ((q[96] >> 4) << 6));
            }
    }
}

}  // namespace kvdecode::quant
