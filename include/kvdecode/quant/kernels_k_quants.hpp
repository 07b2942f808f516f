#pragma once
// K-quant weights (Q2_K .. Q6_K): the product kernels, with activations quantised to
// Q8_K as ggml does (k_quants.hpp has the formats and their scalar reference).
//
// Weights stay in the file's layout, rows of super-blocks (a loader may point a matrix
// at mapped GGUF bytes: blocks are 84..210 bytes, so rows after the first are not
// aligned beyond 2 bytes, and every weight load is unaligned). Before a product,
// prepare quantises each activation row into scratch as block_q8_k blocks, rows
// q8_k_activations::row_bytes() apart (a multiple of 64).
//
// The SIMD kernels (AVX2, AVX-512) step through 8 (output, activation row) pairs at a
// time, one float lane each: 8 outputs x 1 row, 4 x 2, 2 x 3 or 2 x 4, 1 x 5..8 (a row
// tile of R rows and G = 8 / R outputs; rows beyond 8 in further tiles). Per weight
// super-block:
//   decode  each of the G blocks once: quants to unsigned bytes (0..63), the 16 scales
//           and mins to bytes, in vector registers: the only part written per type
//           (AVX2 32 values at a time, k_decode_avx2; AVX-512 64, k_quants_avx512).
//           Q4_K and Q5_K's packed 6-bit scales are unpacked for the G blocks
//           together (k4_step_*);
//   sums    for each of the R rows, the exact integers of k_quants.hpp as int32 lanes,
//           isum = sum_j scale_j * (sum q * x - offset * bsum_j) and msum = sum_j
//           min_j * bsum_j: bytes multiplied pairwise into int16 (vpmaddubsw: |q| <= 63,
//           |x| <= 127, no saturation), times the sub-block's scale into int32
//           (vpmaddwd, or vpdpwssd with AVX-512 VNNI; Q2_K with VNNI and VBMI has its
//           scales multiplied into the quants and takes one vpdpbusd, k_scaled_quants);
//   reduce  the 8 pairs' lanes summed together into one vector of 8 integers (a
//           transposing add tree, lane_tree: the horizontal sums shared by 8 dots);
//   add     each pair's float part in its lane with detail::add_block's operations
//           (d and dmin of the G blocks and the R rows' scales copied into lanes), so each
//           output is bit for bit the scalar reference's sum, whatever its lane, tile
//           or instruction set.
// Measured (bench_weight_matrix): the step shares the reductions and the float work of
// 8 dots, where one reduction per dot made the kernels compute-bound.

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "kvdecode/quant/k_quants.hpp"
#include "kvdecode/quant/kernel_isa.hpp"
#include "kvdecode/quant/matrix_product.hpp"

#if defined(KVDECODE_QUANT_AVX2)
#include <immintrin.h>
#endif

namespace kvdecode::quant {

inline constexpr std::size_t k_unit_outputs = 32;  // outputs per work unit
// How far ahead the weights are asked for, in all: measured, 8 KiB beat 1, 2 and 4 KiB
// by 10-30% at one activation row out of cache with the tile's rows side by side (one
// stream). With 8 streams (rows spread apart, k_lane_rows) each asks 1 KiB ahead: 8 KiB
// each overflowed L1 and cost 15-20% from DRAM.
inline constexpr std::size_t k_prefetch_bytes = 8192;

// A matrix: out_dim rows of k_blocks(in_dim) blocks.
template <class Block>
struct k_matrix {
    const Block* blocks = nullptr;
    std::size_t out_dim = 0, in_dim = 0;

    std::size_t blocks_per_row() const noexcept { return k_blocks(in_dim); }
};

// The scratch layout of one prepared activation row: its Q8_K blocks, then per block 16
// int16, 8 zeros and the sums of each 32 values (bsums in pairs: Q4_K and Q5_K's mins
// apply per 32, and one 256-bit load puts the sums beside a block's 8 scales and 8 mins
// as words).
struct q8_k_activations {
    std::size_t in_dim = 0;

    std::size_t blocks() const noexcept { return k_blocks(in_dim); }
    std::size_t sums_offset() const noexcept { return blocks() * sizeof(block_q8_k); }
    std::size_t row_bytes() const noexcept { return (sums_offset() + blocks() * 16 * sizeof(std::int16_t) + 63) / 64 * 64; }
    const std::int16_t* sums32(const std::byte* row) const noexcept { return reinterpret_cast<const std::int16_t*>(row + sums_offset()); }
};

namespace detail {

using quantize_q8_k_fn = void (*)(const float*, block_q8_k&) noexcept;

inline void quantize_q8_k_scalar(const float* x, block_q8_k& y) noexcept { quantize_block_q8_k(x, qk_k, y); }

#if defined(KVDECODE_QUANT_AVX2)
// quantize_block_q8_k on a whole block, byte for byte, 8 values per vector (the scalar
// loops took 6 us per 2,048 values, 4 times Q8_0's vector quantiser, on the serial part
// of every product). Blocks the scalar code treats specially (a value not finite, all
// zeros, -127 / max not finite) go to it.
inline void quantize_q8_k_avx2(const float* x, block_q8_k& y) noexcept {
    const __m256i exponent = _mm256_set1_epi32(0x7f800000);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256i not_finite = _mm256_setzero_si256();
    __m256 amax = _mm256_setzero_ps();
    for (std::size_t i = 0; i < qk_k; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        not_finite = _mm256_or_si256(not_finite, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(v), exponent), exponent));
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v));
    }
    if (!_mm256_testz_si256(not_finite, not_finite)) return quantize_q8_k_scalar(x, y);
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float largest = _mm_cvtss_f32(m);
    if (largest == 0) return quantize_q8_k_scalar(x, y);
    // The scalar code's max: the first value of the largest magnitude, with its sign.
    const __m256 target = _mm256_set1_ps(largest);
    std::size_t first = 0;
    for (std::size_t i = 0; i < qk_k; i += 8) {
        const int hits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), target, _CMP_EQ_OQ));
        if (hits != 0) {
            first = i + static_cast<std::size_t>(std::countr_zero(static_cast<unsigned>(hits)));
            break;
        }
    }
    const float iscale = -127.0f / x[first];
    if (!std::isfinite(iscale)) return quantize_q8_k_scalar(x, y);
    // nearest_int(iscale * x) in vectors: the product rounded, 1.5 * 2^23 added, the
    // mantissa's low bits; then min(127, q), packed to bytes in order.
    const __m256 scale = _mm256_set1_ps(iscale), magic = _mm256_set1_ps(12582912.0f);
    const __m256i mantissa = _mm256_set1_epi32(0x007fffff), bias = _mm256_set1_epi32(0x00400000), top = _mm256_set1_epi32(127);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (std::size_t i = 0; i < qk_k; i += 32) {
        __m256i q[4];
        for (std::size_t k = 0; k < 4; ++k) {
            __m256 product = _mm256_mul_ps(scale, _mm256_loadu_ps(x + i + 8 * k));
            __asm__("" : "+x"(product));  // rounded to float first, as nearest_int's: no fused multiply-add
            const __m256 shifted = _mm256_add_ps(product, magic);
            q[k] = _mm256_min_epi32(_mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(shifted), mantissa), bias), top);
        }
        // Packs work per 128 bits: dword j of the result holds 4 bytes of q[j % 4], low half
        // for j < 4; the permute puts them back in order.
        const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y.qs + i), _mm256_permutevar8x32_epi32(bytes, order));
    }
    fill_bsums(y);
    y.d = 1 / iscale;
}
#endif

// Whole blocks on the best instruction set compiled in and run by this CPU (the bytes are
// the same on every one).
inline quantize_q8_k_fn best_quantize_q8_k() noexcept {
#if defined(KVDECODE_QUANT_AVX2)
    if (cpu_runs(kernel_isa::avx2)) return &quantize_q8_k_avx2;
#endif
    return &quantize_q8_k_scalar;
}

}  // namespace detail

// One activation row x (in_dim values) into its prepared form at dst (row_bytes()
// bytes, 4-byte aligned): quantize_row_q8_k's blocks, whole ones on the vector quantiser.
inline void prepare_q8_k_row(const float* x, std::size_t in_dim, std::byte* dst) noexcept {
    static const detail::quantize_q8_k_fn whole_block = detail::best_quantize_q8_k();
    const q8_k_activations layout{in_dim};
    auto* blocks = reinterpret_cast<block_q8_k*>(dst);
    auto* sums = reinterpret_cast<std::int16_t*>(dst + layout.sums_offset());
    for (std::size_t b = 0; b < layout.blocks(); ++b) {
        const std::size_t count = std::min(qk_k, in_dim - b * qk_k);
        if (count == qk_k) whole_block(x + b * qk_k, blocks[b]);
        else quantize_block_q8_k(x + b * qk_k, count, blocks[b]);
        for (std::size_t k = 0; k < 8; ++k)
            sums[16 * b + k] = 0, sums[16 * b + 8 + k] = static_cast<std::int16_t>(blocks[b].bsums[2 * k] + blocks[b].bsums[2 * k + 1]);
    }
}

namespace detail {

// One output stored or added, its product with the row's scale rounded first (no fused
// multiply-add, which a compiler may or may not form depending on the code around the
// call): a row's outputs are the same bits in every tile shape and on every instruction set.
inline void store_k_output(const matrix_product<float>& p, std::size_t row, std::size_t o, float sum) noexcept {
    const float v = p.row_scale ? rounded(sum * p.row_scale[row]) : sum;
    float* out = p.out + row * p.out_stride + o;
    *out = p.accumulate ? *out + v : v;
}

// The scalar steps: k_quants.hpp's reference, one block unpacked for the whole tile.
template <class Block>
struct k_scalar {
    static constexpr std::size_t max_tile = 4;
    using decoded = k_block_ints;
    static void decode(const Block& b, decoded& v) noexcept { unpack_k_block(b, v); }
    static k_block_sums sums(const decoded& v, const block_q8_k& x) noexcept { return block_sums_scalar<Block>(v, x); }
};

#if defined(KVDECODE_QUANT_AVX2)
// Each type's quants as 8 vectors of 32 bytes, vector t holding values 32 t .. 32 t + 31
// (the orders k_format's unpack_quants writes), one vector at a time: the AVX2 kernel
// decodes each as its products need it (its 16 registers cannot hold a whole block
// beside the accumulators; the AVX-512 kernel decodes the whole block, 64 values at a
// time, k_quants_avx512). Vectors sharing bytes load them again from L1.
[[gnu::always_inline]] inline __m256i load_32_bytes(const std::uint8_t* p) noexcept {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// Bits 2 (t % 4) of bytes 32 (t / 4) .. 32 (t / 4) + 31.
[[gnu::always_inline]] inline __m256i two_bit_plane_avx2(const std::uint8_t* qs, int t) noexcept {
    return _mm256_and_si256(_mm256_srli_epi16(load_32_bytes(qs + 32 * (t / 4)), 2 * (t % 4)), _mm256_set1_epi8(3));
}

// The low (t even) or high nibbles of bytes 32 (t / 2) .. 32 (t / 2) + 31.
[[gnu::always_inline]] inline __m256i nibble_avx2(const std::uint8_t* qs, int t) noexcept {
    const __m256i bytes = load_32_bytes(qs + 32 * (t / 2));
    return _mm256_and_si256(t % 2 == 0 ? bytes : _mm256_srli_epi16(bytes, 4), _mm256_set1_epi8(0x0F));
}

// `value` (a power of two) where bit t of the byte is set, else 0 (Q3_K's hmask, Q5_K's
// qh): the bit shifted to value's place and masked. The 16-bit shift moves bits across
// the word's two bytes only into places the mask clears.
[[gnu::always_inline]] inline __m256i bit_plane_avx2(const std::uint8_t* bits, std::uint8_t value, int t) noexcept {
    const int place = std::countr_zero(value);
    const __m256i b = load_32_bytes(bits);
    const __m256i moved = t > place ? _mm256_srli_epi16(b, t - place) : t < place ? _mm256_slli_epi16(b, place - t) : b;
    return _mm256_and_si256(moved, _mm256_set1_epi8(static_cast<char>(value)));
}

// Each type's decode: its quants (above), and its 16 scales and mins (one per 16
// values; Q4_K and Q5_K's per 32 given twice) as bytes, which every type's fit.
struct k_scales_avx2 {
    __m128i scale;  // int8 [16]
    __m128i min;    // uint8 [16], 0..63 (zero for types without a min)
};

template <class Block>
struct k_decode_avx2;

template <>
struct k_decode_avx2<block_q2_k> {
    [[gnu::always_inline]] static __m256i quant(const block_q2_k& b, int t) noexcept { return two_bit_plane_avx2(b.qs, t); }
    [[gnu::always_inline]] static k_scales_avx2 scales(const block_q2_k& b) noexcept {
        const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
        const __m128i low = _mm_set1_epi8(0x0F);
        return {_mm_and_si128(packed, low), _mm_and_si128(_mm_srli_epi16(packed, 4), low)};
    }
};
template <>
struct k_decode_avx2<block_q3_k> {
    [[gnu::always_inline]] static __m256i quant(const block_q3_k& b, int t) noexcept {
        return _mm256_or_si256(two_bit_plane_avx2(b.qs, t), bit_plane_avx2(b.hmask, 4, t));
    }
    // q3_k_scale in vectors: low nibbles of bytes 0-7 then their high nibbles (scales
    // 0-15), or'ed with bits 2 (j / 4) of byte 8 + j % 4 moved to bits 4-5.
    [[gnu::always_inline]] static k_scales_avx2 scales(const block_q3_k& b) noexcept {
        const __m128i low4 = _mm_set1_epi8(0x0F);
        const __m128i packed = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.scales));
        const __m128i lows = _mm_unpacklo_epi64(_mm_and_si128(packed, low4), _mm_and_si128(_mm_srli_epi16(packed, 4), low4));
        std::int32_t high_bytes;
        std::memcpy(&high_bytes, b.scales + 8, 4);
        const __m128i shifted = _mm_srlv_epi32(_mm_set1_epi32(high_bytes), _mm_setr_epi32(0, 2, 4, 6));
        const __m128i highs = _mm_and_si128(_mm_slli_epi16(shifted, 4), _mm_set1_epi8(0x30));
        return {_mm_sub_epi8(_mm_or_si128(lows, highs), _mm_set1_epi8(32)), _mm_setzero_si128()};
    }
};

// Q4_K and Q5_K's 12 scale bytes (at scales, 16 bytes loaded: quants follow) as 8 scale
// bytes then 8 min bytes, per 128 bits: the kernels unpack the G blocks of a step
// together, 2 blocks per 256-bit register or 4 per 512 (k4_step_avx2, k4_step_avx512;
// one block at a time, with the scales given twice, it was a sixth of the Q4_K kernel's
// time with the weights in cache). Bytes 0-3 hold scales 0-3 (low 6 bits), 4-7 mins 0-3,
// and their top 2 bits are the high bits of scales / mins 4-7, whose low 4 bits are the
// nibbles of bytes 8-11. Ops is the register width's shuffle, shift, and and or.
template <class Block>
inline constexpr bool k4_scales = std::is_same_v<Block, block_q4_k> || std::is_same_v<Block, block_q5_k>;

template <class V, class Ops>
[[gnu::always_inline]] inline V k4_scale_min_bytes(V v) noexcept {
    // Per 4-byte group: scales 0-3, scales 4-7, mins 0-3, mins 4-7.
    const V fields = Ops::shuffle(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const V tops = Ops::shuffle(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    const V low = Ops::and_(fields, _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0));
    const V high_nibble = Ops::and_(Ops::srli16(fields, 4), _mm_setr_epi32(0, 0, 0, 0x0f0f0f0f));
    const V top_bits = Ops::and_(Ops::srli16(tops, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return Ops::or_(Ops::or_(low, high_nibble), top_bits);
}

// The operations above on 256 bits, each 128-bit constant given to both halves.
struct k4_ops_avx2 {
    static __m256i wide(__m128i c) noexcept { return _mm256_broadcastsi128_si256(c); }
    [[gnu::always_inline]] static __m256i shuffle(__m256i v, __m128i c) noexcept { return _mm256_shuffle_epi8(v, wide(c)); }
    [[gnu::always_inline]] static __m256i and_(__m256i v, __m128i c) noexcept { return _mm256_and_si256(v, wide(c)); }
    [[gnu::always_inline]] static __m256i or_(__m256i a, __m256i b) noexcept { return _mm256_or_si256(a, b); }
    [[gnu::always_inline]] static __m256i srli16(__m256i v, int n) noexcept { return _mm256_srli_epi16(v, n); }
};

[[gnu::always_inline]] inline __m128i k4_scale_load(const std::uint8_t* scales) noexcept {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(scales));
}

// The G blocks' bytes: block g in 128-bit half g % 2 of bytes[g / 2].
template <class Block>
struct k4_step_avx2 {
    __m256i bytes[4];
    template <std::size_t G>
    [[gnu::always_inline]] void load(const Block* const* w, std::size_t b) noexcept {
#pragma GCC unroll 4
        for (std::size_t i = 0; i < (G + 1) / 2; ++i) {
            const __m128i first = k4_scale_load(w[2 * i][b].scales);
            const __m256i two = G > 1 ? _mm256_setr_m128i(first, k4_scale_load(w[2 * i + 1][b].scales)) : _mm256_castsi128_si256(first);
            bytes[i] = k4_scale_min_bytes<__m256i, k4_ops_avx2>(two);
        }
    }
    // Block g's scales then mins as 16 words.
    [[gnu::always_inline]] __m256i words(std::size_t g) const noexcept {
        return _mm256_cvtepu8_epi16(g % 2 == 0 ? _mm256_castsi256_si128(bytes[g / 2]) : _mm256_extracti128_si256(bytes[g / 2], 1));
    }
    // Block g's 16 bytes in both halves.
    [[gnu::always_inline]] __m256i both_halves(std::size_t g) const noexcept {
        return g % 2 == 0 ? _mm256_permute2x128_si256(bytes[g / 2], bytes[g / 2], 0x00)
                          : _mm256_permute2x128_si256(bytes[g / 2], bytes[g / 2], 0x11);
    }
};

// The other types unpack each block's scales in decode.
struct no_step {
    template <std::size_t G, class Block>
    void load(const Block* const*, std::size_t) noexcept {}
};

template <>
struct k_decode_avx2<block_q4_k> {
    [[gnu::always_inline]] static __m256i quant(const block_q4_k& b, int t) noexcept { return nibble_avx2(b.qs, t); }
};
template <>
struct k_decode_avx2<block_q5_k> {
    [[gnu::always_inline]] static __m256i quant(const block_q5_k& b, int t) noexcept {
        return _mm256_or_si256(nibble_avx2(b.qs, t), bit_plane_avx2(b.qh, 16, t));
    }
};
template <>
struct k_decode_avx2<block_q6_k> {
    // Half h: ql bytes 64 h .. 64 h + 63 give the low nibbles of values 128 h + 0..63 and
    // the high nibbles of 128 h + 64..127; qh[32 h + l] bits 2 t the top bits of 128 h + 32 t + l.
    // Vector t = 4 h + s: the low (s < 2) or high nibbles of ql bytes 64 h + 32 (s % 2) ..,
    // qh bits 2 s moved to bits 4-5.
    [[gnu::always_inline]] static __m256i quant(const block_q6_k& b, int t) noexcept {
        const int h = t / 4, s = t % 4;
        const __m256i l = load_32_bytes(b.ql + 64 * h + 32 * (s % 2)), hi = load_32_bytes(b.qh + 32 * h);
        const __m256i low = _mm256_and_si256(s < 2 ? l : _mm256_srli_epi16(l, 4), _mm256_set1_epi8(0x0F));
        const __m256i top = s == 0 ? _mm256_slli_epi16(hi, 4) : s == 1 ? _mm256_slli_epi16(hi, 2) : s == 2 ? hi : _mm256_srli_epi16(hi, 2);
        return _mm256_or_si256(low, _mm256_and_si256(top, _mm256_set1_epi8(0x30)));
    }
    [[gnu::always_inline]] static k_scales_avx2 scales(const block_q6_k& b) noexcept {
        return {_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)), _mm_setzero_si128()};
    }
};

// What the sums need of a block beyond its quants and scales: the offset's and min's
// parts per sub-block as int16 vectors (for vpmaddwd with the 16 bsums). Its d and
// dmin are put in the 8 lanes of a step at once (block_scales).
struct k_block_tail {
    __m256i bias;  // offset * scale_j
    __m256i min;   // min_j (Q4_K, Q5_K: the 8 scales, then min_j of 8)
};

template <class Block>
[[gnu::always_inline]] inline k_block_tail tail_avx2(const k_scales_avx2& s) noexcept {
    k_block_tail t{_mm256_setzero_si256(), _mm256_setzero_si256()};
    if constexpr (k_format<Block>::offset != 0)
        t.bias = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(s.scale), _mm256_set1_epi16(k_format<Block>::offset));
    if constexpr (k_format<Block>::has_min) t.min = _mm256_cvtepu8_epi16(s.min);
    return t;
}

// The 16 scales (int8) as words, even sub-blocks' in the low 128 bits and odd ones' in
// the high: sub-block 2 j's scale is word j of the low half, 2 j + 1's word j of the
// high, so one byte shuffle per vector of quants spreads both (spread_scale_words).
// Measured: a shuffle and a shift per vector from the scale bytes cost more.
[[gnu::always_inline]] inline __m256i even_odd_scale_words(__m128i scale_bytes) noexcept {
    const __m128i even_odd = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scale_bytes, even_odd));
}
[[gnu::always_inline]] inline __m256i spread_scale_words(__m256i words, int j) noexcept {
    return _mm256_shuffle_epi8(words, _mm256_set1_epi16(static_cast<short>(0x0100 * (2 * j + 1) + 2 * j)));
}

// The offset's part taken off the lanes of sum_j scale_j * sum q * x, and the min's
// lanes, from the row's bsums: each integer of k_block_sums as 8 int32 lanes.
// sums32: the block's 8 zeros and sums of 32 (q8_k_activations).
template <class Block>
[[gnu::always_inline]] inline void finish_partials(__m256i acc, const k_block_tail& t, const block_q8_k& x, const std::int16_t* sums32,
                                                   __m256i& isum, __m256i& msum) noexcept {
    const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.bsums));
    if constexpr (k_format<Block>::offset != 0) acc = _mm256_sub_epi32(acc, _mm256_madd_epi16(bsums, t.bias));
    isum = acc;
    if constexpr (k4_scales<Block>) msum = _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sums32)), t.min);
    else if constexpr (k_format<Block>::has_min) msum = _mm256_madd_epi16(bsums, t.min);
}

// Lane k of the result: the sum of lane vector k's int32 lanes (exact: the integers of
// one block fit int32), reduced as the vectors come: two lanes into a pair once both are
// in, two pairs into a four, the two fours into the totals. At most three vectors wait
// where eight did: with isum and msum of 8 lanes held until the end of a step, AVX2's 16
// registers were all accumulators and the decode spilled. Ops gives the three levels.
template <class Ops>
struct lane_tree {
    using vec = typename Ops::vec;
    vec even, pairs[4], fours[2];
    // Lane l's vector (l a constant once the callers' loops are unrolled).
    [[gnu::always_inline]] void add(std::size_t l, vec v) noexcept {
        if (l % 2 == 0) return void(even = v);
        pairs[l / 2] = Ops::pair(even, v);
        if (l % 4 == 3) fours[l / 4] = Ops::four(pairs[l / 2 - 1], pairs[l / 2]);
    }
    [[gnu::always_inline]] __m256i totals() const noexcept { return Ops::totals(fours[0], fours[1]); }
};

// AVX2: horizontal adds; the fours hold lanes 0..3 | 4..7 in their low and high halves.
struct lane_tree_avx2 {
    using vec = __m256i;
    [[gnu::always_inline]] static __m256i pair(__m256i a, __m256i b) noexcept { return _mm256_hadd_epi32(a, b); }
    [[gnu::always_inline]] static __m256i four(__m256i a, __m256i b) noexcept { return _mm256_hadd_epi32(a, b); }
    [[gnu::always_inline]] static __m256i totals(__m256i low, __m256i high) noexcept {
        return _mm256_add_epi32(_mm256_permute2x128_si256(low, high, 0x20), _mm256_permute2x128_si256(low, high, 0x31));
    }
};

// The float16 d (and dmin) of 8 blocks as floats per lane, from each block's 32-bit
// word at scale_word_at: d's bytes (and dmin's after them) or, where d ends the block,
// the two bytes before it and d (no load past the block). The kernels copy the words
// with scalar loads: a gather of 8 took a quarter of a K-quant product's time.
struct block_scales_avx2 {
    __m256 d, dmin;
};

template <class Block>
inline constexpr std::size_t scale_word_at = offsetof(Block, d) + 2 == sizeof(Block) ? offsetof(Block, d) - 2 : offsetof(Block, d);

template <class Block>
[[gnu::always_inline]] inline std::int32_t scale_word(const Block& b) noexcept {
    std::int32_t word;
    std::memcpy(&word, reinterpret_cast<const char*>(&b) + scale_word_at<Block>, sizeof word);
    return word;
}

template <class Block>
[[gnu::always_inline]] inline block_scales_avx2 block_scales(__m256i words) noexcept {
    const __m256i low = _mm256_and_si256(words, _mm256_set1_epi32(0xFFFF)), high = _mm256_srli_epi32(words, 16);
    // Per 128 bits: low 0..3, high 0..3 | low 4..7, high 4..7; then low 0..7 | high 0..7.
    const __m256i halves = _mm256_permute4x64_epi64(_mm256_packus_epi32(low, high), 0xD8);
    const __m256 first_half = _mm256_cvtph_ps(_mm256_castsi256_si128(halves));
    const __m256 second_half = _mm256_cvtph_ps(_mm256_extracti128_si256(halves, 1));
    if constexpr (scale_word_at<Block> != offsetof(Block, d)) return {second_half, _mm256_setzero_ps()};
    else return {first_half, second_half};
}

// v rounded to float in a register, as detail::rounded: no fused multiply-add across it.
[[gnu::always_inline]] inline __m256 rounded_avx2(__m256 v) noexcept {
    __asm__("" : "+x"(v));
    return v;
}

template <class Block>
struct k_avx2 {
    using ivec = __m256i;  // a pair's int32 lanes of isum
    using tree = lane_tree_avx2;
    using step = std::conditional_t<k4_scales<Block>, k4_step_avx2<Block>, no_step>;
    // A block's scales, and its quants left in the block: partials decodes each vector of
    // quants and scales as it multiplies them.
    struct decoded {
        const Block* block;
        __m256i scales;  // Q4_K, Q5_K: the block's 8 scales and 8 mins as bytes in both halves; else even_odd_scale_words
        k_block_tail tail;
        // Int16 lanes: the scale of sub-block 2 j (low 128 bits) and 2 j + 1 (high).
        [[gnu::always_inline]] __m256i scale(int j) const noexcept {
            // Q4_K, Q5_K: scale j (one per 32 values) zero-extended into every word, byte j then a zero.
            if constexpr (k4_scales<Block>) return _mm256_shuffle_epi8(scales, _mm256_set1_epi16(static_cast<short>(0x8000 | j)));
            else return spread_scale_words(scales, j);
        }
    };
    // Block b, the step's block g.
    [[gnu::always_inline]] static void decode(const Block& b, const step& st, std::size_t g, decoded& out) noexcept {
        out.block = &b;
        if constexpr (k4_scales<Block>) {
            out.scales = st.both_halves(g);
            out.tail = {_mm256_setzero_si256(), st.words(g)};
        } else {
            const k_scales_avx2 s = k_decode_avx2<Block>::scales(b);
            out.scales = even_odd_scale_words(s.scale);
            out.tail = tail_avx2<Block>(s);
        }
    }
    // R activation rows' blocks x[r] with one block: each vector of quants and scales
    // decoded once for all R rows.
    template <std::size_t R>
    [[gnu::always_inline]] static void partials(const decoded& w, const block_q8_k* const* x, const std::int16_t* const* sums32,
                                                __m256i* isum, __m256i* msum) noexcept {
        __m256i acc[R];
#pragma GCC unroll 16
        for (std::size_t r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
#pragma GCC unroll 16
        for (int j = 0; j < 8; ++j) {
            const __m256i q = k_decode_avx2<Block>::quant(*w.block, j), scale = w.scale(j);
#pragma GCC unroll 16
            for (std::size_t r = 0; r < R; ++r) {
                const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[r]->qs + 32 * j));
                acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv), scale));
            }
        }
#pragma GCC unroll 16
        for (std::size_t r = 0; r < R; ++r) finish_partials<Block>(acc[r], w.tail, *x[r], sums32[r], isum[r], msum[r]);
    }
};
#endif

#if defined(KVDECODE_QUANT_AVX512)
// Lane vectors of 16 int32: per 128 bits, pairs then fours of vectors interleaved and
// added (a, b, c, d in each 128 bits of abcd), then the four 128-bit parts added across.
struct lane_tree_avx512 {
    using vec = __m512i;
    [[gnu::always_inline]] static __m512i pair(__m512i a, __m512i b) noexcept {
        return _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    }
    [[gnu::always_inline]] static __m512i four(__m512i a, __m512i b) noexcept {
        return _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
    }
    // abcd parts 0 + 2 and 1 + 3 | efgh's the same, then the two halves' parts added.
    [[gnu::always_inline]] static __m256i totals(__m512i abcd, __m512i efgh) noexcept {
        const __m512i w = _mm512_add_epi32(_mm512_shuffle_i32x4(abcd, efgh, 0x44), _mm512_shuffle_i32x4(abcd, efgh, 0xEE));
        const __m256i low = _mm512_castsi512_si256(w), high = _mm512_extracti64x4_epi64(w, 1);
        return _mm256_add_epi32(_mm256_permute2x128_si256(low, high, 0x20), _mm256_permute2x128_si256(low, high, 0x31));
    }
};

// Each type's quants as 4 vectors of 64 bytes, vector c holding values 64 c .. 64 c + 63
// (the AVX2 decode's vectors 2 c and 2 c + 1), decoded 64 values at a time.
template <class Block>
struct k_quants_avx512;

// The 32 bytes at p in both halves.
[[gnu::always_inline]] inline __m512i load_32_bytes_twice(const std::uint8_t* p) noexcept {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
// Words (or bytes) `low` in the lower half, `high` in the upper.
[[gnu::always_inline]] inline __m512i halves_epi16(short low, short high) noexcept {
    return _mm512_inserti64x4(_mm512_set1_epi16(low), _mm256_set1_epi16(high), 1);
}
[[gnu::always_inline]] inline __m512i halves_epi8(char low, char high) noexcept {
    return _mm512_inserti64x4(_mm512_set1_epi8(low), _mm256_set1_epi8(high), 1);
}
// In 128-bit part k, every word equal to 4 c + k: sub-block 4 c + k's index for the 64
// values 64 c .. 64 c + 63.
[[gnu::always_inline]] inline __m512i sub_block_per_part(int c) noexcept {
    constexpr long long each = 0x0001000100010001;
    return _mm512_set_epi64(each * (4 * c + 3), each * (4 * c + 3), each * (4 * c + 2), each * (4 * c + 2), each * (4 * c + 1),
                            each * (4 * c + 1), each * (4 * c), each * (4 * c));
}

#if defined(KVDECODE_QUANT_AVX512_GFNI)
// The bit matrix of vgf2p8affineqb that moves bits [from, from + count) of a byte to
// [to, to + count) and clears the others (bit i of the result is the parity of the byte
// and of matrix byte 7 - i).
constexpr long long move_bits(int from, int to, int count) noexcept {
    unsigned long long m = 0;
    for (int k = 0; k < count; ++k) m |= (1ull << (from + k)) << (8 * (7 - (to + k)));
    return static_cast<long long>(m);
}
// move_bits(from_low, ..) for the lower 256 bits, move_bits(from_high, ..) for the upper.
[[gnu::always_inline]] inline __m512i bit_field_matrix(int from_low, int from_high, int to, int count) noexcept {
    const long long low = move_bits(from_low, to, count), high = move_bits(from_high, to, count);
    return _mm512_set_epi64(high, high, high, high, low, low, low, low);
}
// Bits [from_low, from_low + count) of each byte in the lower 256 bits and [from_high, ..)
// in the upper, moved to [to, to + count), the other bits cleared: one vgf2p8affineqb
// where a shift and a mask, or a mask test and an add, took two operations. Measured on
// the 16-core Xeon, 768x2048 in L2, 1 row (8 rows), with Q3_K's scales by vpmultishiftqb:
// Q3_K 54.9 -> 48.8 us (210 -> 195), Q4_K 41.4 -> 37.2 (199 -> 190), Q5_K 49.3 -> 46.0
// (243 -> 204), Q6_K 47.0 -> 44.9 (192 -> 185).
[[gnu::always_inline]] inline __m512i bit_field_halves(__m512i v, int from_low, int from_high, int to, int count) noexcept {
    return _mm512_gf2p8affine_epi64_epi8(v, bit_field_matrix(from_low, from_high, to, count), 0);
}
#endif

// Without a join (every type now): Q4_K's 32 bytes of quants hold values 64 c .. 64 c + 31
// in their low nibbles and the next 32 in their high ones, so they are loaded into both
// halves and the upper half shifted (no shuffle; the join's vinserti64x4 shared port 5
// with the scales' permutes). Measured with the weights in L2, 1 row, against decoding
// 32 values at a time and joining pairs (768x2048): Q2_K 63 -> 52 us, Q3_K 104 -> 64,
// Q5_K 85 -> 63, Q6_K 75 -> 57.
[[gnu::always_inline]] inline __m512i nibble_pair_avx512(const std::uint8_t* qs, int c) noexcept {
    const __m512i both = load_32_bytes_twice(qs + 32 * c);
#if defined(KVDECODE_QUANT_AVX512_GFNI)
    return bit_field_halves(both, 0, 4, 0, 4);
#else
    return _mm512_and_si512(_mm512_mask_srli_epi16(both, 0xFFFF0000u, both, 4), _mm512_set1_epi8(0x0F));
#endif
}
// low plus `value` where the high bit of its value is set: bit 2 c of the 32 bytes in
// bits_both for the lower half, bit 2 c + 1 for the upper (Q3_K's hmask, Q5_K's qh).
[[gnu::always_inline]] inline __m512i add_high_bit_avx512(__m512i low, __m512i bits_both, int c, char value) noexcept {
#if defined(KVDECODE_QUANT_AVX512_GFNI)
    const int place = std::countr_zero(static_cast<unsigned char>(value));
    return _mm512_or_si512(low, bit_field_halves(bits_both, 2 * c, 2 * c + 1, place, 1));
#else
    const __m512i bit = halves_epi8(static_cast<char>(1 << (2 * c)), static_cast<char>(1 << (2 * c + 1)));
    const __mmask64 set = _mm512_test_epi8_mask(bits_both, bit);
    return _mm512_mask_add_epi8(low, set, low, _mm512_set1_epi8(value));
#endif
}
template <>
struct k_quants_avx512<block_q4_k> {
    [[gnu::always_inline]] static void quants(const block_q4_k& b, __m512i* q) noexcept {
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) q[c] = nibble_pair_avx512(b.qs, c);
    }
};
// Q5_K as Q4_K, the fifth bits from qh by one mask test per 64 values.
template <>
struct k_quants_avx512<block_q5_k> {
    [[gnu::always_inline]] static void quants(const block_q5_k& b, __m512i* q) noexcept {
        const __m512i qh = load_32_bytes_twice(b.qh);
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) q[c] = add_high_bit_avx512(nibble_pair_avx512(b.qs, c), qh, c, 16);
    }
};
// Q6_K: values 64 c .. 64 c + 63 are the low (c even) or high nibbles of ql bytes
// 64 (c / 2) .. + 63, with bit pairs 2 s, s = 2 (c % 2) and the next, of qh bytes
// 32 (c / 2) .. + 31 (in both halves) moved to bits 4-5 by one variable shift (or each
// field moved into place by one vgf2p8affineqb).
template <>
struct k_quants_avx512<block_q6_k> {
    [[gnu::always_inline]] static void quants(const block_q6_k& b, __m512i* q) noexcept {
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {
            const __m512i l = _mm512_loadu_si512(b.ql + 64 * (c / 2));
            const __m512i hi = load_32_bytes_twice(b.qh + 32 * (c / 2));
#if defined(KVDECODE_QUANT_AVX512_GFNI)
            const int from = 4 * (c % 2);  // the nibble; the bit pair: 0 and 2 (c even), 4 and 6
            q[c] = _mm512_or_si512(bit_field_halves(l, from, from, 0, 4), bit_field_halves(hi, from, from + 2, 4, 2));
#else
            const __m512i low = _mm512_and_si512(c % 2 == 0 ? l : _mm512_srli_epi16(l, 4), _mm512_set1_epi8(0x0F));
            // Bit pair 2 s to bits 4-5: left 4 (s = 0), left 2 (s = 1), none (s = 2), right 2 (s = 3).
            const __m512i top = c % 2 == 0 ? _mm512_sllv_epi16(hi, halves_epi16(4, 2))
                                           : _mm512_mask_srli_epi16(hi, 0xFFFF0000u, hi, 2);
            q[c] = _mm512_or_si512(low, _mm512_and_si512(top, _mm512_set1_epi8(0x30)));
#endif
        }
    }
};

// Q2_K and Q3_K without a join: 32 bytes of quants hold values 64 c .. 64 c + 63 in bit
// pairs 2 (2 c % 4) and the next pair up, so the bytes are loaded into both halves and
// shifted by a different count per half (one variable shift; the 2-bit planes were 3
// operations per 32 values and a join per 64). Q3_K's high bits: bit 2 c of its hmask
// bytes for the lower half, 2 c + 1 for the upper, tested into a mask that adds 4. With
// GFNI each is one vgf2p8affineqb (bit_field_halves).
[[gnu::always_inline]] inline __m512i two_bit_pair_avx512(const std::uint8_t* qs, int c) noexcept {
    const __m512i both = load_32_bytes_twice(qs + 32 * (c / 2));
#if defined(KVDECODE_QUANT_AVX512_GFNI)
    return bit_field_halves(both, 4 * (c % 2), 4 * (c % 2) + 2, 0, 2);
#else
    const __m512i shifts = halves_epi16(static_cast<short>(4 * (c % 2)), static_cast<short>(4 * (c % 2) + 2));
    return _mm512_and_si512(_mm512_srlv_epi16(both, shifts), _mm512_set1_epi8(3));
#endif
}
template <>
struct k_quants_avx512<block_q2_k> {
    [[gnu::always_inline]] static void quants(const block_q2_k& b, __m512i* q) noexcept {
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) q[c] = two_bit_pair_avx512(b.qs, c);
    }
};
template <>
struct k_quants_avx512<block_q3_k> {
    [[gnu::always_inline]] static void quants(const block_q3_k& b, __m512i* q) noexcept {
        const __m512i hmask = load_32_bytes_twice(b.hmask);
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) q[c] = add_high_bit_avx512(two_bit_pair_avx512(b.qs, c), hmask, c, 4);
    }
};

// Q2_K with VNNI and VBMI: each quant times its sub-block's scale (0..45) looked up as
// one byte, so a row's product is one vpdpbusd per 64 values where it was vpmaddubsw
// and vpdpwssd, and the scales need no spreading into words. 128-bit part k of the
// table holds, at byte 4 c + q, q times the scale of sub-block 4 c + k (whose quants
// part k of vector c holds), so the lookup is an in-lane byte shuffle by the quant plus
// 4 c: with GFNI the index is one vgf2p8affineqb, its constant adding the 4 c.
// Measured on the 16-core Xeon, 768x2048 in L2, 1 row: 41.8 -> 35.0 us (8 rows: 188 ->
// 165) with a 64-byte table (byte 16 p + i: p times scale i) looked up by vpermb; this
// table and index then took it from 47.6 to 43.0 us on another such machine (8 rows
// level at 230).
// Q3_K the same way ((q - 4) s + 124 from two tables by vpermi2b, the 124 taken off by
// the row's block sums) was slower: 53.9 -> 59.6 us, its permutes and mask tests all
// on one port.
template <class Block>
inline constexpr bool k_scaled_quants =
#if defined(KVDECODE_QUANT_AVX512_VNNI) && defined(KVDECODE_QUANT_AVX512_VBMI)
    std::is_same_v<Block, block_q2_k>;
#else
    false;
#endif

#if defined(KVDECODE_QUANT_AVX512_VNNI) && defined(KVDECODE_QUANT_AVX512_VBMI)
// Bits 0-1 of each byte: bit pair 2 (2 C % 4) of the 32 qs bytes for the lower half and
// the next pair up for the upper, with 4 C in bits 2-3.
template <int C>
[[gnu::always_inline]] inline __m512i two_bit_index_avx512(const std::uint8_t* qs) noexcept {
#if defined(KVDECODE_QUANT_AVX512_GFNI)
    constexpr int from = 4 * (C % 2);
    return _mm512_gf2p8affine_epi64_epi8(load_32_bytes_twice(qs + 32 * (C / 2)), bit_field_matrix(from, from + 2, 0, 2), 4 * C);
#else
    // VBMI without GFNI (Cannon Lake): the 2-bit decode, then the 4 C.
    return _mm512_or_si512(two_bit_pair_avx512(qs, C), _mm512_set1_epi8(static_cast<char>(4 * C)));
#endif
}
// The table above from the 16 scales (bytes).
[[gnu::always_inline]] inline __m512i scaled_quant_table_avx512(__m128i scales) noexcept {
    // Word 4 k + c: bytes 16 k + 4 c + q, each scale 4 c + k.
    alignas(64) static constexpr std::array<std::uint32_t, 16> scale_at = [] {
        std::array<std::uint32_t, 16> words{};
        for (std::uint32_t k = 0; k < 4; ++k)
            for (std::uint32_t c = 0; c < 4; ++c) words[4 * k + c] = (4 * c + k) * 0x01010101u;
        return words;
    }();
    const __m512i s = _mm512_permutexvar_epi8(_mm512_load_si512(scale_at.data()), _mm512_castsi128_si512(scales));
    const __m512i twice = _mm512_maskz_add_epi8(0xCCCCCCCCCCCCCCCCull, s, s);  // q = 2, 3: 2 s
    return _mm512_mask_add_epi8(twice, 0xAAAAAAAAAAAAAAAAull, twice, s);     // q = 1, 3: + s
}
// Q2_K's 4 vectors of quants times their scales.
[[gnu::always_inline]] inline void q2_k_scaled_quants_avx512(const block_q2_k& b, __m128i scales, __m512i* q) noexcept {
    const __m512i table = scaled_quant_table_avx512(scales);
    [&]<int... C>(std::integer_sequence<int, C...>) {
        ((q[C] = _mm512_shuffle_epi8(table, two_bit_index_avx512<C>(b.qs))), ...);
    }(std::make_integer_sequence<int, 4>{});
}
#endif

#if defined(KVDECODE_QUANT_AVX512_VBMI)
// Q3_K's 16 scales less 32 as bytes (k_decode_avx2's, in 5 operations where that takes
// 10): vpmultishiftqb takes scale j's low nibble from a qword of bytes 0-7 (the low
// nibbles of bytes 0-7 hold scales 0-7, the high ones 8-15), and its top two bits (bits
// 2 (j / 4) of byte 8 + j % 4) from bytes 8-11 given twice, from 4 bits below them so
// that they land in bits 4-5; a byte's other bits are its neighbours', masked off.
[[gnu::always_inline]] inline __m128i q3_k_scale_bytes_vbmi(const block_q3_k& b) noexcept {
    std::int64_t lows;
    std::int32_t highs;
    std::memcpy(&lows, b.scales, sizeof lows);
    std::memcpy(&highs, b.scales + 8, sizeof highs);
    const __m128i low_at = _mm_setr_epi8(0, 8, 16, 24, 32, 40, 48, 56, 4, 12, 20, 28, 36, 44, 52, 60);
    const __m128i high_at = _mm_setr_epi8(60, 4, 12, 20, 62, 6, 14, 22, 0, 8, 16, 24, 2, 10, 18, 26);
    const __m128i low = _mm_multishift_epi64_epi8(low_at, _mm_set1_epi64x(lows));
    const __m128i high = _mm_multishift_epi64_epi8(high_at, _mm_set1_epi32(highs));
    const __m128i both = _mm_ternarylogic_epi32(_mm_set1_epi8(0x0F), low, high, 0xCA);  // low where the mask is set, else high
    return _mm_sub_epi8(_mm_and_si128(both, _mm_set1_epi8(0x3F)), _mm_set1_epi8(32));
}
#endif

// A block's scales for the AVX-512 kernel: the AVX2 decode's, Q3_K's by vpmultishiftqb.
template <class Block>
[[gnu::always_inline]] inline k_scales_avx2 scales_avx512(const Block& b) noexcept {
#if defined(KVDECODE_QUANT_AVX512_VBMI)
    if constexpr (std::is_same_v<Block, block_q3_k>) return {q3_k_scale_bytes_vbmi(b), _mm_setzero_si128()};
#endif
    return k_decode_avx2<Block>::scales(b);
}

// Q4_K and Q5_K's scale bytes as in k4_step_avx2, 4 blocks per register: block g in
// 128-bit part g % 4 of bytes[g / 4].
struct k4_ops_avx512 {
    static __m512i wide(__m128i c) noexcept { return _mm512_broadcast_i32x4(c); }
    [[gnu::always_inline]] static __m512i shuffle(__m512i v, __m128i c) noexcept { return _mm512_shuffle_epi8(v, wide(c)); }
    [[gnu::always_inline]] static __m512i and_(__m512i v, __m128i c) noexcept { return _mm512_and_si512(v, wide(c)); }
    [[gnu::always_inline]] static __m512i or_(__m512i a, __m512i b) noexcept { return _mm512_or_si512(a, b); }
    [[gnu::always_inline]] static __m512i srli16(__m512i v, int n) noexcept { return _mm512_srli_epi16(v, n); }
};

template <class Block>
struct k4_step_avx512 {
    __m512i bytes[2];
    template <std::size_t G>
    [[gnu::always_inline]] void load(const Block* const* w, std::size_t b) noexcept {
#pragma GCC unroll 2
        for (std::size_t i = 0; i < (G + 3) / 4; ++i) {
            // Parts past G are left undefined: never read.
            const auto part = [&](std::size_t k) { return k4_scale_load(w[4 * i + k][b].scales); };
            __m512i four = _mm512_castsi128_si512(part(0));
            if constexpr (G > 1) four = _mm512_inserti32x4(four, part(1), 1);
            if constexpr (G > 2) four = _mm512_inserti32x4(four, part(2), 2), four = _mm512_inserti32x4(four, part(3), 3);
            bytes[i] = k4_scale_min_bytes<__m512i, k4_ops_avx512>(four);
        }
    }
    // Blocks g & ~1 and g | 1: each one's scales then mins, 16 words each.
    [[gnu::always_inline]] __m512i pair_words(std::size_t g) const noexcept {
        const __m512i four = bytes[g / 4];
        return _mm512_cvtepu8_epi16(g % 4 < 2 ? _mm512_castsi512_si256(four) : _mm512_extracti64x4_epi64(four, 1));
    }
};

// The quants as above; the products in 512-bit registers.
template <class Block>
struct k_avx512 {
    using ivec = __m512i;
    using tree = lane_tree_avx512;
    using step = std::conditional_t<k4_scales<Block>, k4_step_avx512<Block>, no_step>;
    struct decoded {
        __m512i q[4];      // quants (k_scaled_quants: times their scales)
        __m512i scale[4];  // int16 lanes: scales of sub-blocks 4 c .. 4 c + 3, one per 128 bits (unused when scaled)
        k_block_tail tail;
    };
    [[gnu::always_inline]] static void decode(const Block& b, const step& st, std::size_t g, decoded& out) noexcept {
        if constexpr (k4_scales<Block>) {
            k_quants_avx512<Block>::quants(b, out.q);
            // Scale j of 8 (one per 32 values) for lanes 2 j and 2 j + 1 (the 16 words' 2 c + k / 2).
            const __m512i words = st.pair_words(g);
            const int first = 16 * static_cast<int>(g % 2);
#pragma GCC unroll 4
            for (int c = 0; c < 4; ++c) {
                constexpr long long each_word = 0x0001000100010001;
                const long long low = each_word * (first + 2 * c), high = each_word * (first + 2 * c + 1);
                out.scale[c] = _mm512_permutexvar_epi16(_mm512_set_epi64(high, high, high, high, low, low, low, low), words);
            }
            out.tail = {_mm256_setzero_si256(), g % 2 == 0 ? _mm512_castsi512_si256(words) : _mm512_extracti64x4_epi64(words, 1)};
        } else if constexpr (k_scaled_quants<Block>) {
#if defined(KVDECODE_QUANT_AVX512_VNNI) && defined(KVDECODE_QUANT_AVX512_VBMI)
            const k_scales_avx2 s = k_decode_avx2<Block>::scales(b);
            q2_k_scaled_quants_avx512(b, s.scale, out.q);
            out.tail = tail_avx2<Block>(s);
#endif
        } else {
            k_quants_avx512<Block>::quants(b, out.q);
            const k_scales_avx2 s = scales_avx512(b);
            // The 16 scales as words; 128-bit lane k of scale[c]: word 4 c + k in all 8 of its words.
            const __m512i words = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(s.scale));
#pragma GCC unroll 4
            for (int c = 0; c < 4; ++c) out.scale[c] = _mm512_permutexvar_epi16(sub_block_per_part(c), words);
            out.tail = tail_avx2<Block>(s);
        }
    }
    template <std::size_t R>
    [[gnu::always_inline]] static void partials(const decoded& w, const block_q8_k* const* x, const std::int16_t* const* sums32,
                                                __m512i* isum, __m256i* msum) noexcept {
        __m512i acc[R];
#pragma GCC unroll 16
        for (std::size_t r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int c = 0; c < 4; ++c) {
#pragma GCC unroll 16
            for (std::size_t r = 0; r < R; ++r) {
#if defined(KVDECODE_QUANT_AVX512_VNNI)
                if constexpr (k_scaled_quants<Block>) {
                    acc[r] = _mm512_dpbusd_epi32(acc[r], w.q[c], _mm512_loadu_si512(x[r]->qs + 64 * c));
                    continue;
                }
#endif
                const __m512i pairs = _mm512_maddubs_epi16(w.q[c], _mm512_loadu_si512(x[r]->qs + 64 * c));
#if defined(KVDECODE_QUANT_AVX512_VNNI)
                acc[r] = _mm512_dpwssd_epi32(acc[r], pairs, w.scale[c]);
#else
                acc[r] = _mm512_add_epi32(acc[r], _mm512_madd_epi16(pairs, w.scale[c]));
#endif
            }
        }
#pragma GCC unroll 16
        for (std::size_t r = 0; r < R; ++r) {
            __m256i offset_part = _mm256_setzero_si256();
            finish_partials<Block>(offset_part, w.tail, *x[r], sums32[r], offset_part, msum[r]);
            isum[r] = k_format<Block>::offset != 0 ? _mm512_add_epi32(acc[r], _mm512_zextsi256_si512(offset_part)) : acc[r];
        }
    }
};
#endif

// The weight stream 8 KiB ahead, asked for by the first tile of rows only (as the Q8_0
// kernels: later tiles find the row in L1).
inline void prefetch_k_weights(const void* block, std::size_t row) noexcept {
    if (row == 0) __builtin_prefetch(static_cast<const char*>(block) + 8192, 0, 3);
}

// Scalar: output o for activation rows [row, row + Tile), each weight block unpacked once.
template <class Block, class Isa, std::size_t Tile>
void k_tile(const k_matrix<Block>& m, const matrix_product<float>& p, const std::byte* scratch, std::size_t row_bytes,
            std::size_t o, std::size_t row) noexcept {
    const std::size_t nb = m.blocks_per_row();
    const Block* w = m.blocks + o * nb;
    const block_q8_k* x[Tile];
    float sum[Tile];
#pragma GCC unroll 16
    for (std::size_t r = 0; r < Tile; ++r)
        x[r] = reinterpret_cast<const block_q8_k*>(scratch + (row + r) * row_bytes), sum[r] = 0.0f;
    typename Isa::decoded dec;
    for (std::size_t b = 0; b < nb; ++b) {
        prefetch_k_weights(w + b, row);
        Isa::decode(w[b], dec);
#pragma GCC unroll 16
        for (std::size_t r = 0; r < Tile; ++r)
            sum[r] = add_block<k_format<Block>::has_min>(sum[r], Isa::sums(dec, x[r][b]), dec.d, dec.dmin, x[r][b].d);
    }
#pragma GCC unroll 16
    for (std::size_t r = 0; r < Tile; ++r) store_k_output(p, row + r, o, sum[r]);
}

template <class Block, class Isa, std::size_t Tile>
void k_remainder_tile(const k_matrix<Block>& m, const matrix_product<float>& p, const std::byte* scratch,
                      std::size_t row_bytes, std::size_t o, std::size_t row, std::size_t rows) noexcept {
    if constexpr (Tile > 0) {
        if (rows == Tile) k_tile<Block, Isa, Tile>(m, p, scratch, row_bytes, o, row);
        else k_remainder_tile<Block, Isa, Tile - 1>(m, p, scratch, row_bytes, o, row, rows);
    }
}

template <class Block>
void k_matmul_scalar(const k_matrix<Block>& m, const matrix_product<float>& p, const std::byte* scratch, std::size_t o_begin,
                     std::size_t o_end) noexcept {
    using isa = k_scalar<Block>;
    constexpr std::size_t tile = isa::max_tile;
    const std::size_t row_bytes = q8_k_activations{m.in_dim}.row_bytes();
    for (std::size_t o = o_begin; o < o_end; ++o) {
        std::size_t row = 0;
        for (; row + tile <= p.rows; row += tile) k_tile<Block, isa, tile>(m, p, scratch, row_bytes, o, row);
        k_remainder_tile<Block, isa, tile - 1>(m, p, scratch, row_bytes, o, row, p.rows - row);
    }
}

#if defined(KVDECODE_QUANT_AVX2)
inline constexpr std::size_t k_lanes = 8;  // (output, row) pairs per step: the float lanes of one __m256

// Every cache line of the block `distance` bytes ahead (one address per block would
// leave a line in two or three to the hardware prefetcher).
template <class Block>
inline void prefetch_block(const Block* block, std::size_t distance) noexcept {
    const char* ahead = reinterpret_cast<const char*>(block) + distance;
#pragma GCC unroll 4
    for (std::size_t line = 0; line < sizeof(Block); line += 64) __builtin_prefetch(ahead + line, 0, 3);
}

// Outputs [o, o + G) x activation rows [row, row + R), G = 8 / R, pair (g, r) in float
// lane g R + r: per weight block, each of the G blocks decoded once and multiplied with
// the R rows' blocks into int32 lanes, the 8 pairs' lanes summed together (lane_tree),
// then each pair's float part added in its own lane, with the scalar reference's
// operations (add_block), so a pair's result does not depend on its lane or the tile.
// Outputs past o_end (the matrix's last unit) repeat the last output, not stored.
template <class Block, class Isa, std::size_t R>
void k_lane_tile(const k_matrix<Block>& m, const matrix_product<float>& p, const std::byte* scratch, std::size_t row_bytes,
                 std::size_t o, std::size_t o_end, std::size_t row, std::size_t stride = 1) noexcept {
    constexpr std::size_t G = k_lanes / R;
    constexpr bool has_min = k_format<Block>::has_min;
    const std::size_t nb = m.blocks_per_row();
    const Block* w[G];
#pragma GCC unroll 16
    for (std::size_t g = 0; g < G; ++g) w[g] = m.blocks + std::min(o + g * stride, o_end - 1) * nb;
    const std::size_t distance = stride > 1 ? k_prefetch_bytes / G : k_prefetch_bytes;
    const q8_k_activations layout{m.in_dim};
    const block_q8_k* x[R];
    const std::int16_t* sums32[R];
#pragma GCC unroll 16
    for (std::size_t r = 0; r < R; ++r)
        x[r] = reinterpret_cast<const block_q8_k*>(scratch + (row + r) * row_bytes), sums32[r] = layout.sums32(scratch + (row + r) * row_bytes);
    // Per lane (g R + r): the 32-bit word holding its weight block's d (and dmin), and
    // its activation block's d, copied per block as the blocks are decoded.
    alignas(32) std::int32_t scale_words[k_lanes] = {};
    alignas(32) float row_d[k_lanes] = {};
    __m256 sum = _mm256_setzero_ps();
    typename Isa::decoded dec;
    typename Isa::step step;
    for (std::size_t b = 0; b < nb; ++b) {
        step.template load<G>(w, b);
        lane_tree<typename Isa::tree> isums;
        lane_tree<lane_tree_avx2> msums;
#pragma GCC unroll 16
        for (std::size_t g = 0; g < G; ++g) {
            prefetch_block(w[g] + b, distance);
            Isa::decode(w[g][b], step, g, dec);
            const block_q8_k* xb[R];
            const std::int16_t* sb[R];
#pragma GCC unroll 16
            for (std::size_t r = 0; r < R; ++r) xb[r] = x[r] + b, sb[r] = sums32[r] + 16 * b;
            typename Isa::ivec isum[R];
            __m256i msum[R];
            Isa::template partials<R>(dec, xb, sb, isum, msum);
#pragma GCC unroll 16
            for (std::size_t r = 0; r < R; ++r) {
                isums.add(g * R + r, isum[r]);
                if constexpr (has_min) msums.add(g * R + r, msum[r]);
            }
            const std::int32_t word = scale_word(w[g][b]);
#pragma GCC unroll 16
            for (std::size_t r = 0; r < R; ++r) {
                scale_words[g * R + r] = word;
                if constexpr (R > 1) row_d[g * R + r] = x[r][b].d;  // one row: its d broadcast below
            }
        }
#pragma GCC unroll 16
        for (std::size_t l = G * R; l < k_lanes; ++l) {
            isums.add(l, typename Isa::ivec{});
            if constexpr (has_min) msums.add(l, _mm256_setzero_si256());
        }
        const __m256 xd = R == 1 ? _mm256_set1_ps(x[0][b].d) : _mm256_load_ps(row_d);
        const block_scales_avx2 d = block_scales<Block>(_mm256_load_si256(reinterpret_cast<const __m256i*>(scale_words)));
        sum = _mm256_add_ps(sum, rounded_avx2(_mm256_mul_ps(_mm256_cvtepi32_ps(isums.totals()), _mm256_mul_ps(d.d, xd))));
        if constexpr (has_min) {
            const __m256 min_scale = _mm256_mul_ps(d.dmin, xd);
            sum = _mm256_sub_ps(sum, rounded_avx2(_mm256_mul_ps(_mm256_cvtepi32_ps(msums.totals()), min_scale)));
        }
    }
    alignas(32) float out[k_lanes];
    _mm256_store_ps(out, sum);
    for (std::size_t g = 0; g < G && o + g * stride < o_end; ++g)
#pragma GCC unroll 16
        for (std::size_t r = 0; r < R; ++r) store_k_output(p, row + r, o + g * stride, out[g * R + r]);
}

template <class Block, class Isa, std::size_t R>
void k_lane_rows(const k_matrix<Block>& m, const matrix_product<float>& p, const std::byte* scratch, std::size_t row_bytes,
                 std::size_t o_begin, std::size_t o_end, std::size_t row, std::size_t rows) noexcept {
    if constexpr (R > 1) {
        if (rows < R) return k_lane_rows<Block, Isa, R - 1>(m, p, scratch, row_bytes, o_begin, o_end, row, rows);
    }
    constexpr std::size_t G = k_lanes / R;
    // One row (a decode step): the 8 outputs of a tile an eighth of the range apart, not
    // side by side: 8 streams from memory in flight (measured: 1.2-1.5x the weight bytes
    // per second). A pair's result does not depend on its lane, so the bits are the same.
    if (R == 1)
        o_begin = spread_over_streams(o_begin, o_end, G, [&](std::size_t o, std::size_t apart) {
            k_lane_tile<Block, Isa, R>(m, p, scratch, row_bytes, o, o_end, row, apart);
        });
    for (std::size_t o = o_begin; o < o_end; o += G) k_lane_tile<Block, Isa, R>(m, p, scratch, row_bytes, o, o_end, row);
}

template <class Block, template <class> class Isa>
void k_matmul_lanes(const k_matrix<Block>& m, const matrix_product<float>& p, const std::byte* scratch, std::size_t o_begin,
                    std::size_t o_end) noexcept {
    const std::size_t row_bytes = q8_k_activations{m.in_dim}.row_bytes();
    for (std::size_t row = 0; row < p.rows; row += k_lanes)
        k_lane_rows<Block, Isa<Block>, k_lanes>(m, p, scratch, row_bytes, o_begin, o_end, row, std::min(k_lanes, p.rows - row));
}
#endif

}  // namespace detail

// Units [unit_begin, unit_end) (32 outputs each) of the product, the activations
// prepared in scratch (prepare_q8_k_row per row), on the instruction set of Isa
// (detail::k_scalar, k_avx2, k_avx512).
template <class Block, template <class> class Isa>
void k_matmul(const k_matrix<Block>& m, const matrix_product<float>& p, const std::byte* scratch, std::size_t unit_begin,
              std::size_t unit_end) noexcept {
    const std::size_t o_begin = unit_begin * k_unit_outputs, o_end = std::min(unit_end * k_unit_outputs, m.out_dim);
    if (o_begin >= o_end) return;
    if constexpr (std::is_same_v<Isa<Block>, detail::k_scalar<Block>>) detail::k_matmul_scalar(m, p, scratch, o_begin, o_end);
#if defined(KVDECODE_QUANT_AVX2)
    else detail::k_matmul_lanes<Block, Isa>(m, p, scratch, o_begin, o_end);
#endif
}

}  // namespace kvdecode::quant
