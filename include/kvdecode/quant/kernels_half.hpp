#pragma once
// f16 and bf16 weights: their panel layout and the product kernels (float activations).
//
// The layout is packed_matmul's with 16-bit elements: W is cut into panels of 32
// output rows, each stored column by column — for k = 0 .. in_dim-1, the 32 values
// W[o0 .. o0+32)[k] — so one column step is 64 bytes, one cache line, and
//   out[r][o0 .. o0+32) += x[r][k] * float(panel[k][0 .. 32))
// is a load, a conversion to float and a few FMAs, with no horizontal sums. Rows past
// out_dim are zero. As in packed_matmul, up to R activation rows (12 on AVX-512, 3 on
// AVX2) keep their accumulators in registers and use each converted weight once
// per row, so several rows (beams) read the weights once.
//
// Kernels: AVX-512 (vcvtph2ps on 16 values; bf16 a 32-value line split into its even
// and odd outputs by a shift and a mask, which is what a float's top half is), AVX2
// with F16C (8 values), SSE2 (f16 converted with integer operations), and scalar
// loops, the reference. Accumulation is in float, in column order, for every kernel.

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kvdecode/quant/half.hpp"
#include "kvdecode/quant/kernel_isa.hpp"
#include "kvdecode/quant/matrix_product.hpp"

#if defined(KVDECODE_QUANT_SSE2)
#include <immintrin.h>
#endif

namespace kvdecode::quant {

enum class half_format { f16, bf16 };

template <half_format F>
constexpr std::uint16_t to_half(float x) noexcept {
    if constexpr (F == half_format::f16) return f32_to_f16(x);
    else return f32_to_bf16(x);
}

template <half_format F>
constexpr float from_half(std::uint16_t h) noexcept {
    if constexpr (F == half_format::f16) return f16_to_f32(h);
    else return bf16_to_f32(h);
}

struct half_panel_layout {
    static constexpr std::size_t width = 32;  // outputs per panel: 64 bytes per column
    std::size_t out_dim = 0, in_dim = 0;

    std::size_t panels() const noexcept { return (out_dim + width - 1) / width; }
    std::size_t panel_stride() const noexcept { return width * in_dim; }  // elements: whole cache lines
    std::size_t elements() const noexcept { return panels() * panel_stride(); }
};

// A matrix in the layout: `data` 64-byte aligned, layout.elements() values.
struct half_matrix {
    const std::uint16_t* data = nullptr;
    half_panel_layout layout;
};

// Writes W (out_dim, in_dim) row-major into dst (layout.elements() values, zeroed
// here) in the panel layout, column k multiplied by column_scale[k] where given (in
// float, then rounded once to the 16-bit type).
template <half_format F>
void pack_half_panels(const float* w, const half_panel_layout& layout, const float* column_scale,
                      std::uint16_t* dst) noexcept {
    constexpr std::size_t W = half_panel_layout::width;
    const std::size_t in = layout.in_dim;
    std::fill(dst, dst + layout.elements(), std::uint16_t{0});
    for (std::size_t o = 0; o < layout.out_dim; ++o) {
        std::uint16_t* panel = dst + o / W * layout.panel_stride() + o % W;
        for (std::size_t k = 0; k < in; ++k)
            panel[k * W] = to_half<F>(column_scale ? w[o * in + k] * column_scale[k] : w[o * in + k]);
    }
}

// Panels [panel_begin, panel_end) of the product with plain loops: the reference.
template <half_format F>
void half_matmul_scalar(const half_matrix& m, const matrix_product<float>& p, std::size_t panel_begin,
                        std::size_t panel_end) noexcept {
    constexpr std::size_t W = half_panel_layout::width;
    for (std::size_t q = panel_begin; q < panel_end; ++q) {
        const std::uint16_t* panel = m.data + q * m.layout.panel_stride();
        for (std::size_t r = 0; r < p.rows; ++r) {
            const float* x = p.in + r * p.in_stride;
            float sums[W] = {};
            for (std::size_t k = 0; k < m.layout.in_dim; ++k)
                for (std::size_t o = 0; o < W; ++o) sums[o] += from_half<F>(panel[k * W + o]) * x[k];
            detail::store_outputs(p, r, q * W, std::min(W, m.layout.out_dim - q * W), sums);
        }
    }
}

namespace detail {

// One instruction set's vector operations for the generic panel kernel below:
// `lanes` floats per register, load() converts that many 16-bit values.

#if defined(KVDECODE_QUANT_AVX512)
template <half_format F>
struct half_avx512 {
    using vec = __m512;
    static constexpr std::size_t lanes = 16, max_tile = 12, small_tile_banks = 2;
    static vec zero() noexcept { return _mm512_setzero_ps(); }
    static vec set1(float x) noexcept { return _mm512_set1_ps(x); }
    static vec fma(vec a, vec b, vec c) noexcept { return _mm512_fmadd_ps(a, b, c); }
    static vec add(vec a, vec b) noexcept { return _mm512_add_ps(a, b); }
    static void store(float* p, vec v) noexcept { _mm512_store_ps(p, v); }
    static constexpr bool interleaved = F == half_format::bf16;
    static vec load(const std::uint16_t* p) noexcept { return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(p))); }
    // bf16: 32 values, even positions then odd ones (their bits moved to, or masked
    // at, the top of 32-bit lanes: no widening shuffle).
    static void load_pair(const std::uint16_t* p, vec& even, vec& odd) noexcept {
        const __m512i h = _mm512_load_si512(p);
        even = _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
        odd = _mm512_castsi512_ps(_mm512_and_si512(h, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
    }
};
#endif

#if defined(KVDECODE_QUANT_AVX2)
template <half_format F>
struct half_avx2 {
    using vec = __m256;
    static constexpr std::size_t lanes = 8, max_tile = 3, small_tile_banks = 2;
    static vec zero() noexcept { return _mm256_setzero_ps(); }
    static vec set1(float x) noexcept { return _mm256_set1_ps(x); }
    static vec fma(vec a, vec b, vec c) noexcept { return _mm256_fmadd_ps(a, b, c); }
    static vec add(vec a, vec b) noexcept { return _mm256_add_ps(a, b); }
    static void store(float* p, vec v) noexcept { _mm256_store_ps(p, v); }
    static constexpr bool interleaved = F == half_format::bf16;
    static vec load(const std::uint16_t* p) noexcept { return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(p))); }
    static void load_pair(const std::uint16_t* p, vec& even, vec& odd) noexcept {
        const __m256i h = _mm256_load_si256(reinterpret_cast<const __m256i*>(p));
        even = _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
        odd = _mm256_castsi256_ps(_mm256_and_si256(h, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
    }
};
#endif

#if defined(KVDECODE_QUANT_SSE2)
// f16 -> f32 on four values (in the low halves of 32-bit lanes) without F16C: move
// exponent and mantissa into place and rebias; subnormals by subtracting 2^-14 from
// 2^-14 + m * 2^-24 (exact); inf and NaN by a second rebias to exponent 255, NaN quieted.
inline __m128 f16_to_f32_sse2(__m128i h) noexcept {
    const __m128i magnitude = _mm_and_si128(h, _mm_set1_epi32(0x7fff));
    const __m128i sign = _mm_slli_epi32(_mm_xor_si128(h, magnitude), 16);
    const __m128i is_zero_or_subnormal = _mm_cmpeq_epi32(_mm_and_si128(magnitude, _mm_set1_epi32(0x7c00)), _mm_setzero_si128());
    const __m128i is_inf_or_nan = _mm_cmpgt_epi32(magnitude, _mm_set1_epi32(0x7bff));
    const __m128i is_nan = _mm_cmpgt_epi32(magnitude, _mm_set1_epi32(0x7c00));
    __m128i bits = _mm_add_epi32(_mm_slli_epi32(magnitude, 13), _mm_set1_epi32((127 - 15) << 23));
    bits = _mm_add_epi32(bits, _mm_and_si128(is_inf_or_nan, _mm_set1_epi32((128 - 16) << 23)));
    bits = _mm_or_si128(bits, _mm_and_si128(is_nan, _mm_set1_epi32(0x00400000)));
    const __m128i subnormal_bits = _mm_add_epi32(bits, _mm_set1_epi32(1 << 23));
    const __m128 subnormal = _mm_sub_ps(_mm_castsi128_ps(subnormal_bits), _mm_castsi128_ps(_mm_set1_epi32(113 << 23)));
    const __m128i value = _mm_or_si128(_mm_and_si128(is_zero_or_subnormal, _mm_castps_si128(subnormal)),
                                       _mm_andnot_si128(is_zero_or_subnormal, bits));
    return _mm_castsi128_ps(_mm_or_si128(value, sign));
}

template <half_format F>
struct half_sse2 {
    using vec = __m128;
    static constexpr std::size_t lanes = 4, max_tile = 1, small_tile_banks = 1;
    static constexpr bool interleaved = false;
    static vec zero() noexcept { return _mm_setzero_ps(); }
    static vec set1(float x) noexcept { return _mm_set1_ps(x); }
    static vec fma(vec a, vec b, vec c) noexcept { return _mm_add_ps(_mm_mul_ps(a, b), c); }
    static vec add(vec a, vec b) noexcept { return _mm_add_ps(a, b); }
    static void store(float* p, vec v) noexcept { _mm_store_ps(p, v); }
    static vec load(const std::uint16_t* p) noexcept {
        const __m128i h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
        if constexpr (F == half_format::f16) return f16_to_f32_sse2(_mm_unpacklo_epi16(h, _mm_setzero_si128()));
        else return _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), h));
    }
};
#endif

inline constexpr std::size_t half_prefetch_distance = 8192 / sizeof(std::uint16_t);  // elements: 8 KiB ahead

// One column of a panel (32 values) into V vectors of floats: in output order, or for
// interleaved (bf16) types per 2 lanes values the even outputs then the odd ones.
template <class Isa>
[[gnu::always_inline]] inline void load_column(const std::uint16_t* column, typename Isa::vec* w) noexcept {
    constexpr std::size_t V = half_panel_layout::width / Isa::lanes;
    if constexpr (Isa::interleaved)
        for (std::size_t v = 0; v < V; v += 2) Isa::load_pair(column + v * Isa::lanes, w[v], w[v + 1]);
    else
        for (std::size_t v = 0; v < V; ++v) w[v] = Isa::load(column + v * Isa::lanes);
}

// Lane i of vector v of load_column's order: its output within the panel.
template <class Isa>
constexpr std::size_t column_output(std::size_t v, std::size_t i) noexcept {
    if constexpr (Isa::interleaved) return v / 2 * 2 * Isa::lanes + 2 * i + v % 2;
    else return v * Isa::lanes + i;
}

// Rows [row, row + Tile) of the input against panel q, accumulators in registers.
// With few rows, even and odd k go to separate accumulators (banks), so the FMAs'
// latency never limits the stream.
template <class Isa, std::size_t Tile>
void half_panel_tile(const half_matrix& m, const matrix_product<float>& p, std::size_t q, std::size_t row) noexcept {
    using vec = typename Isa::vec;
    constexpr std::size_t W = half_panel_layout::width, V = W / Isa::lanes;
    constexpr std::size_t Banks = Tile <= 2 ? Isa::small_tile_banks : 1;
    const std::uint16_t* panel = m.data + q * m.layout.panel_stride();
    const std::size_t in_dim = m.layout.in_dim;
    const float* x[Tile];
    for (std::size_t r = 0; r < Tile; ++r) x[r] = p.in + (row + r) * p.in_stride;
    const bool first_tile = row == 0;

    vec acc[Banks][Tile][V];
    for (auto& bank : acc)
        for (auto& per_row : bank)
            for (vec& a : per_row) a = Isa::zero();
    std::size_t k = 0;
    for (; k + Banks <= in_dim; k += Banks) {
        for (std::size_t bank = 0; bank < Banks; ++bank) {
            const std::uint16_t* wk = panel + (k + bank) * W;
            // Ask for the stream 8 KiB ahead: with the conversions in the loop the
            // hardware prefetcher alone falls behind, even for one row (measured: a
            // third more bandwidth at 1 row). First tile only: later tiles find the
            // panel in L2.
            if (first_tile) __builtin_prefetch(wk + half_prefetch_distance, 0, 3);
            vec w[V];
            load_column<Isa>(wk, w);
            for (std::size_t r = 0; r < Tile; ++r) {
                const vec xr = Isa::set1(x[r][k + bank]);
                for (std::size_t v = 0; v < V; ++v) acc[bank][r][v] = Isa::fma(w[v], xr, acc[bank][r][v]);
            }
        }
    }
    for (; k < in_dim; ++k) {  // an odd last column with two banks
        vec w[V];
        load_column<Isa>(panel + k * W, w);
        for (std::size_t r = 0; r < Tile; ++r) {
            const vec xr = Isa::set1(x[r][k]);
            for (std::size_t v = 0; v < V; ++v) acc[0][r][v] = Isa::fma(w[v], xr, acc[0][r][v]);
        }
    }
    const std::size_t count = std::min(W, m.layout.out_dim - q * W);
    for (std::size_t r = 0; r < Tile; ++r) {
        alignas(64) float totals[W], sums[W];
        for (std::size_t v = 0; v < V; ++v) {
            vec total = acc[0][r][v];
            for (std::size_t bank = 1; bank < Banks; ++bank) total = Isa::add(total, acc[bank][r][v]);
            Isa::store(totals + v * Isa::lanes, total);
        }
        for (std::size_t v = 0; v < V; ++v)
            for (std::size_t i = 0; i < Isa::lanes; ++i) sums[column_output<Isa>(v, i)] = totals[v * Isa::lanes + i];
        store_outputs(p, row + r, q * W, count, sums);
    }
}

template <class Isa, std::size_t Tile>
void half_remainder_tile(const half_matrix& m, const matrix_product<float>& p, std::size_t q, std::size_t row,
                         std::size_t rows) noexcept {
    if constexpr (Tile > 0) {
        if (rows == Tile) half_panel_tile<Isa, Tile>(m, p, q, row);
        else half_remainder_tile<Isa, Tile - 1>(m, p, q, row, rows);
    }
}

// Panels [panel_begin, panel_end): for each, the rows tile after tile (the panel stays
// in L2 after the first).
template <class Isa>
void half_matmul_simd(const half_matrix& m, const matrix_product<float>& p, std::size_t panel_begin,
                      std::size_t panel_end) noexcept {
    constexpr std::size_t tile = Isa::max_tile;
    for (std::size_t q = panel_begin; q < panel_end; ++q) {
        std::size_t row = 0;
        for (; row + tile <= p.rows; row += tile) half_panel_tile<Isa, tile>(m, p, q, row);
        half_remainder_tile<Isa, tile - 1>(m, p, q, row, p.rows - row);
    }
}

}  // namespace detail

// The product on a named instruction set; those not compiled in are absent, so
// callers go through compiled_in() / weight_matrix::has_kernel first.
#if defined(KVDECODE_QUANT_AVX512)
template <half_format F>
void half_matmul_avx512(const half_matrix& m, const matrix_product<float>& p, std::size_t begin, std::size_t end) noexcept {
    detail::half_matmul_simd<detail::half_avx512<F>>(m, p, begin, end);
}
#endif
#if defined(KVDECODE_QUANT_AVX2)
template <half_format F>
void half_matmul_avx2(const half_matrix& m, const matrix_product<float>& p, std::size_t begin, std::size_t end) noexcept {
    detail::half_matmul_simd<detail::half_avx2<F>>(m, p, begin, end);
}
#endif
#if defined(KVDECODE_QUANT_SSE2)
template <half_format F>
void half_matmul_sse2(const half_matrix& m, const matrix_product<float>& p, std::size_t begin, std::size_t end) noexcept {
    detail::half_matmul_simd<detail::half_sse2<F>>(m, p, begin, end);
}
#endif

}  // namespace kvdecode::quant
