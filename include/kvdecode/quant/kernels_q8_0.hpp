#pragma once
// Q8_0 weights: the product kernels, with activations quantised to Q8_0 per block
// as GGUF's reference does (q8_0.hpp has the format and its scalar reference).
//
// Weights stay in the file's layout, rows of block_q8_0 (so a loader can point a
// matrix at mapped GGUF data instead of copying it). Before a product, prepare
// quantises each activation row into scratch, laid out for the kernels:
//   quants  int8  [padded_blocks * 32]   the rows' qs, block after block
//   scales  float [padded_blocks * 8]    each block's scale (its float16 d, widened) 8 times
// with padded_blocks = blocks rounded up to even, the padding zero, so a kernel can
// take two blocks (64 bytes) per step and load a block's scale as a full vector.
// Rows start row_bytes() apart, a multiple of 128 bytes.
//
// Per output, the kernels sum over blocks float(block's int32 dot) * d_w * d_x: the
// 32 products of a block are exact in 32-bit integers (|w|, |x| <= 127, sign trick
// below), and only the scaling and the sum over blocks round. Each weight block is
// loaded once for up to R activation rows (8 on AVX-512, 4 on AVX2, 2 on SSE2).
//
// Integer dot of signed w and x where the instruction wants unsigned x signed
// (vpmaddubsw, vpdpbusd): |w| (unsigned) times x with w's sign moved onto it; x is in
// [-127, 127], so negating it never overflows, and |-128| read as unsigned is 128.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kvdecode/quant/half.hpp"
#include "kvdecode/quant/kernel_isa.hpp"
#include "kvdecode/quant/matrix_product.hpp"
#include "kvdecode/quant/q8_0.hpp"

#if defined(KVDECODE_QUANT_SSE2)
#include <immintrin.h>
#endif

namespace kvdecode::quant {

inline constexpr std::size_t q8_0_unit_outputs = 32;  // outputs per work unit

// A matrix: out_dim rows of q8_0_blocks(in_dim) blocks.
struct q8_0_matrix {
    const block_q8_0* blocks = nullptr;
    std::size_t out_dim = 0, in_dim = 0;

    std::size_t blocks_per_row() const noexcept { return q8_0_blocks(in_dim); }
};

// The scratch layout of one prepared activation row.
struct q8_0_activations {
    std::size_t in_dim = 0;

    std::size_t blocks() const noexcept { return q8_0_blocks(in_dim); }
    std::size_t padded_blocks() const noexcept { return (blocks() + 1) / 2 * 2; }
    std::size_t scales_offset() const noexcept { return padded_blocks() * q8_0_block_values; }
    std::size_t row_bytes() const noexcept { return padded_blocks() * (q8_0_block_values + 8 * sizeof(float)); }
};

namespace detail {

#if defined(KVDECODE_QUANT_AVX512)
// One whole block, bit-identical to quantize_block_q8_0: the same products x * id,
// rounded half away from zero as truncation plus a step where |fraction| >= 0.5.
inline std::uint16_t quantize_block_avx512(const float* x, std::int8_t* qs) noexcept {
    const __m512 lo = _mm512_loadu_ps(x), hi = _mm512_loadu_ps(x + 16);
    const bool has_nan = (_mm512_cmp_ps_mask(lo, lo, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(hi, hi, _CMP_UNORD_Q)) != 0;
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
    if (has_nan || !(amax <= std::numeric_limits<float>::max())) return quantize_block_q8_0(x, q8_0_block_values, qs);
    const float d = amax / 127.0f;
    const __m512 id = _mm512_set1_ps(d >= std::numeric_limits<float>::min() ? 1.0f / d : 0.0f);
    const __m512i one = _mm512_set1_epi32(1);
    auto round = [&](__m512 v) {
        v = _mm512_mul_ps(v, id);
        __m512i q = _mm512_cvttps_epi32(v);
        const __m512 fraction = _mm512_abs_ps(_mm512_sub_ps(v, _mm512_cvtepi32_ps(q)));
        const __mmask16 away = _mm512_cmp_ps_mask(fraction, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
        const __mmask16 negative = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
        q = _mm512_mask_add_epi32(q, away & ~negative, q, one);
        return _mm512_mask_sub_epi32(q, away & negative, q, one);
    };
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm512_cvtepi32_epi8(round(lo)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16), _mm512_cvtepi32_epi8(round(hi)));
    return f32_to_f16(d);
}
#endif

#if defined(KVDECODE_QUANT_AVX2)
inline std::uint16_t quantize_block_avx2(const float* x, std::int8_t* qs) noexcept {
    __m256 v[4];
    __m256 amax8 = _mm256_setzero_ps(), nan8 = _mm256_setzero_ps();
    const __m256 magnitude_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int i = 0; i < 4; ++i) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        amax8 = _mm256_max_ps(amax8, _mm256_and_ps(v[i], magnitude_mask));
        nan8 = _mm256_or_ps(nan8, _mm256_cmp_ps(v[i], v[i], _CMP_UNORD_Q));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax8), _mm256_extractf128_ps(amax8, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    if (_mm256_movemask_ps(nan8) != 0 || !(amax <= std::numeric_limits<float>::max()))
        return quantize_block_q8_0(x, q8_0_block_values, qs);
    const float d = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(d >= std::numeric_limits<float>::min() ? 1.0f / d : 0.0f);
    __m256i q[4];
    for (int i = 0; i < 4; ++i) {
        const __m256 s = _mm256_mul_ps(v[i], id);
        const __m256i t = _mm256_cvttps_epi32(s);
        const __m256 fraction = _mm256_and_ps(_mm256_sub_ps(s, _mm256_cvtepi32_ps(t)), magnitude_mask);
        const __m256i away = _mm256_castps_si256(_mm256_cmp_ps(fraction, _mm256_set1_ps(0.5f), _CMP_GE_OQ));
        // +1, or -1 where s is negative (its sign bit spread over the lane, or'ed with 1).
        const __m256i step = _mm256_or_si256(_mm256_set1_epi32(1), _mm256_srai_epi32(_mm256_castps_si256(s), 31));
        q[i] = _mm256_add_epi32(t, _mm256_and_si256(away, step));
    }
    // Narrow to bytes; the packs interleave 128-bit lanes, the permute puts them back.
    const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs),
                        _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return f32_to_f16(d);
}
#endif

using quantize_block_fn = std::uint16_t (*)(const float*, std::int8_t*) noexcept;

inline std::uint16_t quantize_block_scalar(const float* x, std::int8_t* qs) noexcept {
    return quantize_block_q8_0(x, q8_0_block_values, qs);
}

// Whole blocks on the best instruction set compiled in and run by this CPU (the
// results are bit-identical on every one).
inline quantize_block_fn best_quantize_block() noexcept {
#if defined(KVDECODE_QUANT_AVX512)
    if (cpu_runs(kernel_isa::avx512)) return &quantize_block_avx512;
#endif
#if defined(KVDECODE_QUANT_AVX2)
    if (cpu_runs(kernel_isa::avx2)) return &quantize_block_avx2;
#endif
    return &quantize_block_scalar;
}

}  // namespace detail

// One activation row x (in_dim values) into its prepared form at dst (row_bytes()
// bytes, aligned to 64 bytes): the Q8_0 blocks quantize_row_q8_0 makes, quants and
// widened scales apart, padding zero.
inline void quantize_activation_row(const float* x, std::size_t in_dim, std::byte* dst) noexcept {
    static const detail::quantize_block_fn whole_block = detail::best_quantize_block();
    const q8_0_activations layout{in_dim};
    std::int8_t* quants = reinterpret_cast<std::int8_t*>(dst);
    float* scales = reinterpret_cast<float*>(dst + layout.scales_offset());
    for (std::size_t b = 0; b < layout.blocks(); ++b) {
        const std::size_t first = b * q8_0_block_values, count = std::min(q8_0_block_values, in_dim - first);
        const std::uint16_t d = count == q8_0_block_values ? whole_block(x + first, quants + first)
                                                           : quantize_block_q8_0(x + first, count, quants + first);
        std::fill_n(scales + 8 * b, 8, f16_to_f32(d));
    }
    const std::size_t used = layout.blocks(), padded = layout.padded_blocks();
    std::fill(quants + used * q8_0_block_values, quants + padded * q8_0_block_values, std::int8_t{0});
    std::fill(scales + 8 * used, scales + 8 * padded, 0.0f);
}

namespace detail {

// Where activation row r of the prepared scratch starts.
struct prepared_rows {
    const std::byte* scratch;
    q8_0_activations layout;

    const std::int8_t* quants(std::size_t r) const noexcept {
        return reinterpret_cast<const std::int8_t*>(scratch + r * layout.row_bytes());
    }
    const float* scales(std::size_t r) const noexcept {
        return reinterpret_cast<const float*>(scratch + r * layout.row_bytes() + layout.scales_offset());
    }
};

// The weight stream 8 KiB ahead, asked for by the first tile of rows only (later tiles
// find the row in L1): the hardware prefetcher alone falls behind these kernels, even
// for one row (measured: a third more bandwidth at 1 row).
inline void prefetch_weights(const void* block, std::size_t row) noexcept {
    if (row == 0) __builtin_prefetch(static_cast<const char*>(block) + 8192, 0, 3);
}

inline void store_output(const matrix_product<float>& p, std::size_t row, std::size_t o, float sum) noexcept {
    const float scale = p.row_scale ? p.row_scale[row] : 1.0f;
    float& out = p.out[row * p.out_stride + o];
    out = p.accumulate ? out + sum * scale : sum * scale;
}

// The scalar kernel: for each output and row, dot_q8_0's arithmetic in its order.
struct q8_0_scalar {
    static constexpr std::size_t max_tile = 1;
    template <std::size_t Tile>
    static void tile(const q8_0_matrix& m, const matrix_product<float>& p, const prepared_rows& x, std::size_t o,
                     std::size_t row) noexcept {
        const std::size_t nb = m.blocks_per_row();
        const block_q8_0* w = m.blocks + o * nb;
        for (std::size_t r = row; r < row + Tile; ++r) {
            const std::int8_t* xq = x.quants(r);
            const float* xd = x.scales(r);
            float sum = 0;
            for (std::size_t b = 0; b < nb; ++b) {
                std::int32_t isum = 0;
                for (std::size_t i = 0; i < q8_0_block_values; ++i)
                    isum += std::int32_t{w[b].qs[i]} * std::int32_t{xq[b * q8_0_block_values + i]};
                sum += static_cast<float>(isum) * (f16_to_f32(w[b].d) * xd[8 * b]);
            }
            store_output(p, r, o, sum);
        }
    }
};

#if defined(KVDECODE_QUANT_AVX512)
// Two blocks per step in a 512-bit register; the block sums of 4 products land in
// 16 int32 lanes (8 per block), scaled per lane and accumulated in float.
struct q8_0_avx512 {
    static constexpr std::size_t max_tile = 8;

    static __m512i dot(__m512i unsigned_w, __m512i signed_x) noexcept {
#if defined(KVDECODE_QUANT_AVX512_VNNI)
        return _mm512_dpbusd_epi32(_mm512_setzero_si512(), unsigned_w, signed_x);
#else
        return _mm512_madd_epi16(_mm512_maddubs_epi16(unsigned_w, signed_x), _mm512_set1_epi16(1));
#endif
    }

    template <std::size_t Tile>
    static void tile(const q8_0_matrix& m, const matrix_product<float>& p, const prepared_rows& x, std::size_t o,
                     std::size_t row) noexcept {
        const std::size_t nb = m.blocks_per_row();
        const block_q8_0* w = m.blocks + o * nb;
        const std::int8_t* xq[Tile];
        const float* xd[Tile];
        __m512 acc[Tile];
        for (std::size_t r = 0; r < Tile; ++r) xq[r] = x.quants(row + r), xd[r] = x.scales(row + r), acc[r] = _mm512_setzero_ps();
        // Blocks b and b + 1 (b + 1 == nb: a zero block, the activations' padding is zero too).
        auto step = [&](std::size_t b, bool pair) {
            prefetch_weights(w + b, row);
            prefetch_weights(w + b + 1, row);  // 68 bytes a step: sometimes a second line
            const __m256i first = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs));
            const __m256i second = pair ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b + 1].qs)) : _mm256_setzero_si256();
            const __m512i wq = _mm512_inserti64x4(_mm512_castsi256_si512(first), second, 1);
            const __m512 dw = _mm512_mask_mov_ps(_mm512_set1_ps(_cvtsh_ss(w[b].d)), 0xff00,
                                                 _mm512_set1_ps(pair ? _cvtsh_ss(w[b + 1].d) : 0.0f));
            const __mmask64 negative = _mm512_movepi8_mask(wq);
            const __m512i magnitude = _mm512_abs_epi8(wq);
            for (std::size_t r = 0; r < Tile; ++r) {
                const __m512i xv = _mm512_loadu_si512(xq[r] + b * q8_0_block_values);
                const __m512i signed_x = _mm512_mask_sub_epi8(xv, negative, _mm512_setzero_si512(), xv);
                const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(dot(magnitude, signed_x)), _mm512_loadu_ps(xd[r] + 8 * b));
                acc[r] = _mm512_fmadd_ps(f, dw, acc[r]);
            }
        };
        std::size_t b = 0;
        for (; b + 2 <= nb; b += 2) step(b, true);
        if (b < nb) step(b, false);
        for (std::size_t r = 0; r < Tile; ++r) store_output(p, row + r, o, _mm512_reduce_add_ps(acc[r]));
    }
};
#endif

#if defined(KVDECODE_QUANT_AVX2)
struct q8_0_avx2 {
    static constexpr std::size_t max_tile = 4;

    template <std::size_t Tile>
    static void tile(const q8_0_matrix& m, const matrix_product<float>& p, const prepared_rows& x, std::size_t o,
                     std::size_t row) noexcept {
        const std::size_t nb = m.blocks_per_row();
        const block_q8_0* w = m.blocks + o * nb;
        const std::int8_t* xq[Tile];
        const float* xd[Tile];
        __m256 acc[Tile];
        for (std::size_t r = 0; r < Tile; ++r) xq[r] = x.quants(row + r), xd[r] = x.scales(row + r), acc[r] = _mm256_setzero_ps();
        const __m256i ones = _mm256_set1_epi16(1);
        for (std::size_t b = 0; b < nb; ++b) {
            prefetch_weights(w + b, row);
            const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs));
            const __m256i magnitude = _mm256_sign_epi8(wq, wq);
            const __m256 dw = _mm256_set1_ps(_cvtsh_ss(w[b].d));
            for (std::size_t r = 0; r < Tile; ++r) {
                const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[r] + b * q8_0_block_values));
                const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(xv, wq)), ones);
                const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(sums), _mm256_loadu_ps(xd[r] + 8 * b));
                acc[r] = _mm256_fmadd_ps(f, dw, acc[r]);
            }
        }
        for (std::size_t r = 0; r < Tile; ++r) {
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
            s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            s = _mm_add_ss(s, _mm_movehdup_ps(s));
            store_output(p, row + r, o, _mm_cvtss_f32(s));
        }
    }
};
#endif

#if defined(KVDECODE_QUANT_SSE2)
// No byte multiply-add before SSSE3: bytes widened to 16 bits (sign-extended), then
// pmaddwd.
struct q8_0_sse2 {
    static constexpr std::size_t max_tile = 2;

    static void widen(__m128i v, __m128i& lo, __m128i& hi) noexcept {
        lo = _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8);
        hi = _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8);
    }

    template <std::size_t Tile>
    static void tile(const q8_0_matrix& m, const matrix_product<float>& p, const prepared_rows& x, std::size_t o,
                     std::size_t row) noexcept {
        const std::size_t nb = m.blocks_per_row();
        const block_q8_0* w = m.blocks + o * nb;
        __m128 acc[Tile];
        for (std::size_t r = 0; r < Tile; ++r) acc[r] = _mm_setzero_ps();
        for (std::size_t b = 0; b < nb; ++b) {
            prefetch_weights(w + b, row);
            __m128i wv[4];
            widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].qs)), wv[0], wv[1]);
            widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].qs + 16)), wv[2], wv[3]);
            const __m128 dw = _mm_set1_ps(f16_to_f32(w[b].d));
            for (std::size_t r = 0; r < Tile; ++r) {
                const std::int8_t* xq = x.quants(row + r) + b * q8_0_block_values;
                __m128i xv[4];
                widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xq)), xv[0], xv[1]);
                widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xq + 16)), xv[2], xv[3]);
                const __m128i sums = _mm_add_epi32(_mm_add_epi32(_mm_madd_epi16(wv[0], xv[0]), _mm_madd_epi16(wv[1], xv[1])),
                                                   _mm_add_epi32(_mm_madd_epi16(wv[2], xv[2]), _mm_madd_epi16(wv[3], xv[3])));
                const __m128 f = _mm_mul_ps(_mm_cvtepi32_ps(sums), _mm_loadu_ps(x.scales(row + r) + 8 * b));
                acc[r] = _mm_add_ps(acc[r], _mm_mul_ps(f, dw));
            }
        }
        for (std::size_t r = 0; r < Tile; ++r) {
            __m128 s = _mm_add_ps(acc[r], _mm_movehl_ps(acc[r], acc[r]));
            s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
            store_output(p, row + r, o, _mm_cvtss_f32(s));
        }
    }
};
#endif

template <class Isa, std::size_t Tile>
void q8_0_remainder_tile(const q8_0_matrix& m, const matrix_product<float>& p, const prepared_rows& x, std::size_t o,
                         std::size_t row, std::size_t rows) noexcept {
    if constexpr (Tile > 0) {
        if (rows == Tile) Isa::template tile<Tile>(m, p, x, o, row);
        else q8_0_remainder_tile<Isa, Tile - 1>(m, p, x, o, row, rows);
    }
}

// Outputs of units [unit_begin, unit_end): each weight row once per tile of rows (the
// row stays in L1 for the later tiles).
template <class Isa>
void q8_0_matmul(const q8_0_matrix& m, const matrix_product<float>& p, const std::byte* scratch, std::size_t unit_begin,
                 std::size_t unit_end) noexcept {
    constexpr std::size_t tile = Isa::max_tile;
    const prepared_rows x{scratch, q8_0_activations{m.in_dim}};
    const std::size_t o_end = std::min(unit_end * q8_0_unit_outputs, m.out_dim);
    for (std::size_t o = unit_begin * q8_0_unit_outputs; o < o_end; ++o) {
        std::size_t row = 0;
        for (; row + tile <= p.rows; row += tile) Isa::template tile<tile>(m, p, x, o, row);
        q8_0_remainder_tile<Isa, tile - 1>(m, p, x, o, row, p.rows - row);
    }
}

}  // namespace detail

// Units [unit_begin, unit_end) (32 outputs each) of the product, the activations
// prepared in scratch (quantize_activation_row per row), on a named instruction set.
inline void q8_0_matmul_scalar(const q8_0_matrix& m, const matrix_product<float>& p, const std::byte* scratch,
                               std::size_t unit_begin, std::size_t unit_end) noexcept {
    detail::q8_0_matmul<detail::q8_0_scalar>(m, p, scratch, unit_begin, unit_end);
}
#if defined(KVDECODE_QUANT_AVX512)
inline void q8_0_matmul_avx512(const q8_0_matrix& m, const matrix_product<float>& p, const std::byte* scratch,
                               std::size_t unit_begin, std::size_t unit_end) noexcept {
    detail::q8_0_matmul<detail::q8_0_avx512>(m, p, scratch, unit_begin, unit_end);
}
#endif
#if defined(KVDECODE_QUANT_AVX2)
inline void q8_0_matmul_avx2(const q8_0_matrix& m, const matrix_product<float>& p, const std::byte* scratch,
                             std::size_t unit_begin, std::size_t unit_end) noexcept {
    detail::q8_0_matmul<detail::q8_0_avx2>(m, p, scratch, unit_begin, unit_end);
}
#endif
#if defined(KVDECODE_QUANT_SSE2)
inline void q8_0_matmul_sse2(const q8_0_matrix& m, const matrix_product<float>& p, const std::byte* scratch,
                             std::size_t unit_begin, std::size_t unit_end) noexcept {
    detail::q8_0_matmul<detail::q8_0_sse2>(m, p, scratch, unit_begin, unit_end);
}
#endif

}  // namespace kvdecode::quant
