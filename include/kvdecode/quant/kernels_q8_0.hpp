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
// For Q8_0 weights prepare_q8_0_row adds each block's -128 * (sum of quants) (the
// AVX-512 VNNI kernel's offset term, below).
//
// Per output, the kernels sum over blocks float(block's int32 dot) * (d_w * d_x): the
// 32 products of a block are exact in 32-bit integers, and only the scaling and the sum
// over blocks round. For 4 rows or more the AVX2 and AVX-512 kernels take 16 or 8
// outputs at once (one per lane, weights transposed a chunk of blocks at a time into an
// L1 buffer that every tile of rows then reads, see q8_0_group_matmul) for a
// tile of up to 8 activation rows, with the scalar kernel's arithmetic in its order: the
// same bits as the scalar kernel. For 1 to 3 rows both take one output at a time (the AVX2
// kernel; one row against 4 outputs at once), as SSE2 does (2 rows), summing lanes in their
// own order.
//
// Integer dot of signed w and x where the instruction wants unsigned x signed
// (vpmaddubsw): |w| (unsigned) times x with w's sign moved onto it; x is in [-127, 127],
// so negating it never overflows, and |-128| read as unsigned is 128. vpdpbusd instead
// takes w + 128 (w xor 0x80, in [0, 255]) times x, then the offset term 128 * sum(x)
// comes back out: exact, as the sums stay far inside 32 bits.

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

// What prepare writes for Q8_0 weights: the row quantize_activation_row makes, then
// for each (padded) block -128 times the sum of its quants, as int32, the term that
// takes the kernels' +128 offset of the weights back out (see below). Rows start
// row_bytes() apart, a multiple of 64 bytes.
struct q8_0_weight_activations {
    std::size_t in_dim = 0;

    q8_0_activations q8_0() const noexcept { return {in_dim}; }
    std::size_t sums_offset() const noexcept { return q8_0().row_bytes(); }
    std::size_t row_bytes() const noexcept {
        return sums_offset() + (q8_0().padded_blocks() * sizeof(std::int32_t) + 63) / 64 * 64;
    }
};

// One activation row x into its prepared form for Q8_0 weights at dst (row_bytes()
// bytes, 64-byte aligned).
inline void prepare_q8_0_row(const float* x, std::size_t in_dim, std::byte* dst) noexcept {
    quantize_activation_row(x, in_dim, dst);
    const q8_0_weight_activations layout{in_dim};
    const auto* quants = reinterpret_cast<const std::int8_t*>(dst);
    auto* sums = reinterpret_cast<std::int32_t*>(dst + layout.sums_offset());
    for (std::size_t b = 0; b < layout.q8_0().padded_blocks(); ++b) {
        std::int32_t sum = 0;
        for (std::size_t i = 0; i < q8_0_block_values; ++i) sum += quants[b * q8_0_block_values + i];
        sums[b] = -128 * sum;
    }
}

namespace detail {

// Where activation row r of the prepared scratch starts.
struct prepared_rows {
    const std::byte* scratch;
    q8_0_weight_activations layout;

    const std::int8_t* quants(std::size_t r) const noexcept {
        return reinterpret_cast<const std::int8_t*>(scratch + r * layout.row_bytes());
    }
    const float* scales(std::size_t r) const noexcept {
        return reinterpret_cast<const float*>(scratch + r * layout.row_bytes() + layout.q8_0().scales_offset());
    }
    const std::int32_t* offset_terms(std::size_t r) const noexcept {
        return reinterpret_cast<const std::int32_t*>(scratch + r * layout.row_bytes() + layout.sums_offset());
    }
};

// The weight stream 8 KiB ahead in all, asked for by the first tile of rows only (later
// tiles find the row in L1): the hardware prefetcher alone falls behind the
// row-at-a-time kernels (kernels_q4_q5.hpp's, SSE2's here), even for one row. With
// several streams (one row spread over outputs apart) each asks its share ahead, so
// the lines in flight stay within L1.
inline constexpr std::size_t q8_0_prefetch_bytes = 8192;

inline void prefetch_weights(const void* block, std::size_t row, std::size_t distance = q8_0_prefetch_bytes) noexcept {
    if (row == 0) __builtin_prefetch(static_cast<const char*>(block) + distance, 0, 3);
}

// Every multiply-add here and in the block sums below is an explicit fma (std::fma,
// _mm*_fmadd_ps), never `a * b + c`: under -ffp-contract=fast (GCC's default in GNU
// mode) the compiler fuses such expressions or not depending on the surrounding code,
// so the same kernel would round differently per tile, instruction set or compiler.
inline void store_output(const matrix_product<float>& p, std::size_t row, std::size_t o, float sum) noexcept {
    const float scale = p.row_scale ? p.row_scale[row] : 1.0f;
    float& out = p.out[row * p.out_stride + o];
    out = p.accumulate ? std::fma(sum, scale, out) : sum * scale;
}

// The scalar kernel: for each output and row, dot_q8_0's arithmetic in its order.
// The AVX2 and AVX-512 kernels compute exactly this, bit for bit.
struct q8_0_scalar {
    static constexpr std::size_t group = 1, max_tile = 1, streams = 1;
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
                sum = std::fma(static_cast<float>(isum), f16_to_f32(w[b].d) * xd[8 * b], sum);
            }
            store_output(p, r, o, sum);
        }
    }
};

// The SIMD kernels take a group of G outputs (16 on AVX-512, 8 on AVX2) at a time, one
// output per 32-bit lane: each weight block of the G rows is loaded once and transposed
// in registers so that register k holds bytes 4k .. 4k+3 of every output's block; an
// activation row then costs, per block, eight 4-byte broadcasts and integer dots into one
// register of G exact block sums, and one float scale-and-add for all G outputs (not one
// per output: a row-at-a-time kernel spends more on that than on the integer dots). The
// transpose is paid once per block for a tile of up to 8 activation rows. Block sums
// are exact, then float(sum) * (d_w * d_x) is added block after block as the scalar
// kernel does, so every kernel gives the same bits however rows are tiled or units split.
// The group past out_dim repeats the last row and stores only real outputs.

// Products of this many rows or more take the group kernels (measured: at 1 row they
// fall behind the memory stream on this machine's DRAM, from 4 rows on they win).
inline constexpr std::size_t group_rows_from = 4;

// The rows of a group: row j of the group is output min(o + j, out_dim - 1).
template <std::size_t G>
struct group_rows {
    const block_q8_0* row[G];
    std::size_t outputs;  // real ones

    group_rows(const q8_0_matrix& m, std::size_t o) noexcept : outputs(std::min(G, m.out_dim - o)) {
        for (std::size_t j = 0; j < G; ++j) row[j] = m.blocks + std::min(o + j, m.out_dim - 1) * m.blocks_per_row();
    }
    // The weight stream in the order the kernel reads it, `ahead` block steps ahead: block
    // b + ahead of each row, past a row's end the same row of the next group (the rows
    // are contiguous). Asked for by the first tile of rows only (later tiles find the
    // group in L1 or L2). Without the wrap, each group would start on G cold rows.
    void prefetch(std::size_t b, std::size_t nb, std::size_t first_row) const noexcept {
        constexpr std::size_t ahead = 16;
        if (first_row != 0) return;
        const std::size_t target = b + ahead < nb ? b + ahead : G * nb + b + ahead - nb;
        for (std::size_t j = 0; j < G; ++j) __builtin_prefetch(row[j] + target, 0, 3);
    }
};

// Row `row`'s sums of a group, lane l holding output o + Isa::lane_output(l).
template <class Isa>
void store_group(const matrix_product<float>& p, std::size_t row, std::size_t o, const float* sums,
                 std::size_t outputs) noexcept {
    for (std::size_t l = 0; l < Isa::group; ++l)
        if (Isa::lane_output(l) < outputs) store_output(p, row, o + Isa::lane_output(l), sums[l]);
}

inline std::int32_t load_4_bytes(const std::int8_t* p) noexcept {
    std::int32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// A tile's activation rows, their pointers found once per chunk.
template <std::size_t Tile>
struct group_activations {
    const std::int8_t* quants[Tile];
    const float* scales[Tile];
    const std::int32_t* offset[Tile];

    group_activations(const prepared_rows& x, std::size_t row) noexcept {
        for (std::size_t r = 0; r < Tile; ++r)
            quants[r] = x.quants(row + r), scales[r] = x.scales(row + r), offset[r] = x.offset_terms(row + r);
    }
};

#if defined(KVDECODE_QUANT_AVX512)
struct q8_0_avx512 {
    static constexpr std::size_t group = 16, max_tile = 8;

    // After the transpose, lane l holds output lane_output(l) of the group.
    static constexpr std::size_t lane_output(std::size_t l) noexcept { return l ^ ((l >> 2 ^ l >> 3) & 1) * 12; }

    // The 16 rows' block b into w[k] = bytes 4k .. 4k+3 of each lane's output.
    static void transpose(const group_rows<16>& g, std::size_t b, __m512i w[8]) noexcept {
        __m512i z[8], a[8];
        for (std::size_t i = 0; i < 8; ++i)
            z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.row[i][b].qs))),
                                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.row[i + 8][b].qs)), 1);
        for (std::size_t i = 0; i < 8; i += 2) {
            a[i] = _mm512_unpacklo_epi32(z[i], z[i + 1]);
            a[i + 1] = _mm512_unpackhi_epi32(z[i], z[i + 1]);
        }
        // Each 128-bit lane now holds 4 bytes e (or e + 4) of 4 outputs; the last step
        // gathers lanes 0 and 2 (bytes e) or 1 and 3 (bytes e + 4) of both halves.
        for (std::size_t e = 0; e < 4; ++e) {
            const std::size_t lo = e / 2, hi = e % 2;
            const __m512i first = hi ? _mm512_unpackhi_epi64(a[lo], a[lo + 2]) : _mm512_unpacklo_epi64(a[lo], a[lo + 2]);
            const __m512i second = hi ? _mm512_unpackhi_epi64(a[lo + 4], a[lo + 6]) : _mm512_unpacklo_epi64(a[lo + 4], a[lo + 6]);
            w[e] = _mm512_shuffle_i32x4(first, second, _MM_SHUFFLE(2, 0, 2, 0));
            w[e + 4] = _mm512_shuffle_i32x4(first, second, _MM_SHUFFLE(3, 1, 3, 1));
        }
    }

    using fvec = __m512;
    // One block of the group's 16 rows, transposed, with its 16 scales.
    struct block_weights {
        __m512i w[8];  // VNNI: w + 128 (unsigned); otherwise |w|
#if !defined(KVDECODE_QUANT_AVX512_VNNI)
        __mmask64 negative[8];
#endif
        __m512 dw;
    };
    static fvec zero() noexcept { return _mm512_setzero_ps(); }
    static void store(fvec v, float* sums) noexcept { _mm512_store_ps(sums, v); }

    static void load(const group_rows<16>& g, std::size_t b, block_weights& out) noexcept {
        transpose(g, b, out.w);
        alignas(32) std::uint16_t lane_d[16];  // scalar copies: a 16-lane gather cost more than the transpose
        for (std::size_t l = 0; l < 16; ++l) lane_d[l] = g.row[lane_output(l)][b].d;
        out.dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(lane_d)));
#if defined(KVDECODE_QUANT_AVX512_VNNI)
        // vpdpbusd multiplies unsigned by signed bytes: the weights + 128, and the row's
        // -128 * (sum of its block's quants) as the sums' starting value.
        for (__m512i& v : out.w) v = _mm512_xor_si512(v, _mm512_set1_epi8(-128));
#else
        for (std::size_t k = 0; k < 8; ++k) out.negative[k] = _mm512_movepi8_mask(out.w[k]), out.w[k] = _mm512_abs_epi8(out.w[k]);
#endif
    }

    // Block b of Tile rows into their accumulators; k outer, rows inner: Tile independent
    // chains of integer dots.
    template <std::size_t Tile>
    static void accumulate(const block_weights& w, const group_activations<Tile>& x, std::size_t b, fvec* acc) noexcept {
        __m512i sums[Tile];
        for (std::size_t r = 0; r < Tile; ++r) {
#if defined(KVDECODE_QUANT_AVX512_VNNI)
            sums[r] = _mm512_set1_epi32(x.offset[r][b]);
#else
            sums[r] = _mm512_setzero_si512();
#endif
        }
        for (std::size_t k = 0; k < 8; ++k)
            for (std::size_t r = 0; r < Tile; ++r) {
                const __m512i xv = _mm512_set1_epi32(load_4_bytes(x.quants[r] + b * q8_0_block_values + 4 * k));
#if defined(KVDECODE_QUANT_AVX512_VNNI)
                sums[r] = _mm512_dpbusd_epi32(sums[r], w.w[k], xv);
#else
                // |w| times x with w's sign moved onto it (kernel header: the sign trick).
                const __m512i signed_x = _mm512_mask_sub_epi8(xv, w.negative[k], _mm512_setzero_si512(), xv);
                sums[r] = _mm512_add_epi32(sums[r], _mm512_madd_epi16(_mm512_maddubs_epi16(w.w[k], signed_x), _mm512_set1_epi16(1)));
#endif
            }
        for (std::size_t r = 0; r < Tile; ++r) {
            const __m512 scale = _mm512_mul_ps(w.dw, _mm512_set1_ps(x.scales[r][8 * b]));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r]), scale, acc[r]);
        }
    }
};
#endif

#if defined(KVDECODE_QUANT_AVX2)
// No unsigned-by-signed dot that adds into 32 bits: vpmaddubsw (pairs into 16 bits, which
// |w| <= 128 times |x| <= 127 cannot overflow) and vpmaddwd, with the sign trick.
struct q8_0_avx2 {
    static constexpr std::size_t group = 8, max_tile = 8;

    static constexpr std::size_t lane_output(std::size_t l) noexcept { return l; }

    static void transpose(const group_rows<8>& g, std::size_t b, __m256i w[8]) noexcept {
        __m256i z[8], a[8];
        for (std::size_t i = 0; i < 8; ++i) z[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.row[i][b].qs));
        for (std::size_t i = 0; i < 8; i += 2) {
            a[i] = _mm256_unpacklo_epi32(z[i], z[i + 1]);
            a[i + 1] = _mm256_unpackhi_epi32(z[i], z[i + 1]);
        }
        for (std::size_t e = 0; e < 4; ++e) {
            const std::size_t lo = e / 2, hi = e % 2;
            const __m256i first = hi ? _mm256_unpackhi_epi64(a[lo], a[lo + 2]) : _mm256_unpacklo_epi64(a[lo], a[lo + 2]);
            const __m256i second = hi ? _mm256_unpackhi_epi64(a[lo + 4], a[lo + 6]) : _mm256_unpacklo_epi64(a[lo + 4], a[lo + 6]);
            w[e] = _mm256_permute2x128_si256(first, second, 0x20);
            w[e + 4] = _mm256_permute2x128_si256(first, second, 0x31);
        }
    }

    using fvec = __m256;
    struct block_weights {
        __m256i w[8], magnitude[8];
        __m256 dw;
    };
    static fvec zero() noexcept { return _mm256_setzero_ps(); }
    static void store(fvec v, float* sums) noexcept { _mm256_store_ps(sums, v); }

    static void load(const group_rows<8>& g, std::size_t b, block_weights& out) noexcept {
        transpose(g, b, out.w);
        for (std::size_t k = 0; k < 8; ++k) out.magnitude[k] = _mm256_sign_epi8(out.w[k], out.w[k]);
        out.dw = _mm256_cvtph_ps(_mm_setr_epi16(
            static_cast<short>(g.row[0][b].d), static_cast<short>(g.row[1][b].d), static_cast<short>(g.row[2][b].d),
            static_cast<short>(g.row[3][b].d), static_cast<short>(g.row[4][b].d), static_cast<short>(g.row[5][b].d),
            static_cast<short>(g.row[6][b].d), static_cast<short>(g.row[7][b].d)));
    }

    template <std::size_t Tile>
    static void accumulate(const block_weights& w, const group_activations<Tile>& x, std::size_t b, fvec* acc) noexcept {
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i sums[Tile];
        for (std::size_t r = 0; r < Tile; ++r) sums[r] = _mm256_setzero_si256();
        for (std::size_t k = 0; k < 8; ++k)
            for (std::size_t r = 0; r < Tile; ++r) {
                const __m256i xv = _mm256_set1_epi32(load_4_bytes(x.quants[r] + b * q8_0_block_values + 4 * k));
                sums[r] = _mm256_add_epi32(sums[r], _mm256_madd_epi16(_mm256_maddubs_epi16(w.magnitude[k], _mm256_sign_epi8(xv, w.w[k])), ones));
            }
        for (std::size_t r = 0; r < Tile; ++r) {
            const __m256 scale = _mm256_mul_ps(w.dw, _mm256_set1_ps(x.scales[r][8 * b]));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[r]), scale, acc[r]);
        }
    }
};
#endif

#if defined(KVDECODE_QUANT_AVX2)
// A few rows (below group_rows_from), on AVX2 and AVX-512 CPUs alike: one output at a
// time, which streams the weights in order (the group kernels, faster once their
// transposes serve 4 rows or more, read 16 or 8 rows at once and fall behind the memory
// at one row); one row goes against 4 outputs a quarter of the range apart (the
// driver's streams). Its lanes sum in their own order, so 1 to 3 rows differ from the
// scalar kernel within rounding.
struct q8_0_avx2_rows {
    static constexpr std::size_t group = 1, max_tile = group_rows_from - 1, streams = 4;

    template <std::size_t Tile, std::size_t Outputs = 1>
    static void tile(const q8_0_matrix& m, const matrix_product<float>& p, const prepared_rows& x, std::size_t o,
                     std::size_t row, std::size_t apart = 0) noexcept {
        const std::size_t nb = m.blocks_per_row();
        const block_q8_0* w[Outputs];
        const std::int8_t* xq[Tile];
        const float* xd[Tile];
        __m256 acc[Outputs][Tile];
        for (std::size_t k = 0; k < Outputs; ++k) w[k] = m.blocks + (o + k * apart) * nb;
        for (std::size_t r = 0; r < Tile; ++r) {
            xq[r] = x.quants(row + r), xd[r] = x.scales(row + r);
            for (std::size_t k = 0; k < Outputs; ++k) acc[k][r] = _mm256_setzero_ps();
        }
        const __m256i ones = _mm256_set1_epi16(1);
        for (std::size_t b = 0; b < nb; ++b) {
            __m256i wq[Outputs], magnitude[Outputs];
            __m256 dw[Outputs];
#pragma GCC unroll 4
            for (std::size_t k = 0; k < Outputs; ++k) {
                prefetch_weights(w[k] + b, row, q8_0_prefetch_bytes / Outputs);
                wq[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[k][b].qs));
                magnitude[k] = _mm256_sign_epi8(wq[k], wq[k]);
                dw[k] = _mm256_set1_ps(_cvtsh_ss(w[k][b].d));
            }
            for (std::size_t r = 0; r < Tile; ++r) {
                const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[r] + b * q8_0_block_values));
                const __m256 xs = _mm256_loadu_ps(xd[r] + 8 * b);
#pragma GCC unroll 4
                for (std::size_t k = 0; k < Outputs; ++k) {
                    const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude[k], _mm256_sign_epi8(xv, wq[k])), ones);
                    const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(sums), xs);
                    acc[k][r] = _mm256_fmadd_ps(f, dw[k], acc[k][r]);
                }
            }
        }
        for (std::size_t r = 0; r < Tile; ++r)
            for (std::size_t k = 0; k < Outputs; ++k) {
                __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[k][r]), _mm256_extractf128_ps(acc[k][r], 1));
                s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                s = _mm_add_ss(s, _mm_movehdup_ps(s));
                store_output(p, row + r, o + k * apart, _mm_cvtss_f32(s));
            }
    }
};
#endif

#if defined(KVDECODE_QUANT_SSE2)
// No byte multiply-add before SSSE3: bytes widened to 16 bits (sign-extended), then
// pmaddwd.
struct q8_0_sse2 {
    static constexpr std::size_t group = 1, max_tile = 2, streams = 1;

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

// Tiles as even as the row count allows (9 rows: 5 + 4, not 8 + 1): a tile's fixed
// costs are paid once for all its rows. The rows of the next tile out of `left`.
inline std::size_t even_tile_rows(std::size_t left, std::size_t max_tile) noexcept {
    const std::size_t tiles = (left + max_tile - 1) / max_tile;
    return (left + tiles - 1) / tiles;
}

template <class Isa, std::size_t Tile>
void q8_0_remainder_tile(const q8_0_matrix& m, const matrix_product<float>& p, const prepared_rows& x, std::size_t o,
                         std::size_t row, std::size_t rows) noexcept {
    if constexpr (Tile > 0) {
        if (rows == Tile) Isa::template tile<Tile>(m, p, x, o, row);
        else q8_0_remainder_tile<Isa, Tile - 1>(m, p, x, o, row, rows);
    }
}

// Outputs of units [unit_begin, unit_end) on the one-output kernels (scalar, SSE2, and
// AVX2 for 1 to 3 rows): an output's weights once per tile of rows (they stay in L1 for
// the later tiles).
template <class Isa>
void q8_0_matmul(const q8_0_matrix& m, const matrix_product<float>& p, const std::byte* scratch, std::size_t unit_begin,
                 std::size_t unit_end) noexcept {
    constexpr std::size_t tile = Isa::max_tile;
    static_assert(Isa::group == 1, "one output at a time: group kernels take q8_0_group_matmul");
    const prepared_rows x{scratch, q8_0_weight_activations{m.in_dim}};
    const std::size_t o_end = std::min(unit_end * q8_0_unit_outputs, m.out_dim);
    std::size_t o_begin = unit_begin * q8_0_unit_outputs;
    if constexpr (Isa::streams > 1) {
        // One row (a decode step): Isa::streams weight rows at once, as the Q4/Q5 kernels do.
        if (p.rows == 1)
            o_begin = spread_over_streams(o_begin, o_end, Isa::streams, [&](std::size_t o, std::size_t apart) {
                Isa::template tile<1, Isa::streams>(m, p, x, o, 0, apart);
            });
    }
    for (std::size_t o = o_begin; o < o_end; ++o)
        for (std::size_t row = 0; row < p.rows;) {
            const std::size_t n = even_tile_rows(p.rows - row, tile);
            q8_0_remainder_tile<Isa, tile>(m, p, x, o, row, n);
            row += n;
        }
}

// The group kernels (AVX2, AVX-512; 4 rows or more): a group's weights are transposed a
// chunk of blocks at a time into a buffer that stays in L1, and every tile of rows runs
// through the chunk before the next is transposed, so a block is transposed once per
// pass of up to q8_0_pass_rows rows, not once per tile (prefill: 16 tiles of 8 rows).
// Each row's accumulators live in `acc` between chunks; each output's float sum still
// runs block after block, so the bits are the scalar kernel's.
inline constexpr std::size_t q8_0_chunk_blocks = 16, q8_0_pass_rows = 64;

template <class Isa, std::size_t Tile>
void q8_0_chunk_tile(const typename Isa::block_weights* chunk, std::size_t b0, std::size_t n, const prepared_rows& x,
                     std::size_t row, std::size_t rows, typename Isa::fvec* acc) noexcept {
    if constexpr (Tile > 0) {
        if (rows != Tile) return q8_0_chunk_tile<Isa, Tile - 1>(chunk, b0, n, x, row, rows, acc);
        const group_activations<Tile> xs(x, row);
        typename Isa::fvec a[Tile];
        for (std::size_t r = 0; r < Tile; ++r) a[r] = acc[r];
        for (std::size_t i = 0; i < n; ++i) Isa::template accumulate<Tile>(chunk[i], xs, b0 + i, a);
        for (std::size_t r = 0; r < Tile; ++r) acc[r] = a[r];
    }
}

template <class Isa>
void q8_0_group_matmul(const q8_0_matrix& m, const matrix_product<float>& p, const std::byte* scratch, std::size_t unit_begin,
                       std::size_t unit_end) noexcept {
    static_assert(q8_0_unit_outputs % Isa::group == 0, "units split between groups");
    const prepared_rows x{scratch, q8_0_weight_activations{m.in_dim}};
    const std::size_t o_end = std::min(unit_end * q8_0_unit_outputs, m.out_dim), nb = m.blocks_per_row();
    typename Isa::block_weights chunk[q8_0_chunk_blocks];
    typename Isa::fvec acc[q8_0_pass_rows];
    for (std::size_t o = unit_begin * q8_0_unit_outputs; o < o_end; o += Isa::group) {
        const group_rows<Isa::group> g(m, o);
        for (std::size_t first = 0; first < p.rows; first += q8_0_pass_rows) {
            const std::size_t rows = std::min(q8_0_pass_rows, p.rows - first);
            for (std::size_t r = 0; r < rows; ++r) acc[r] = Isa::zero();
            for (std::size_t b0 = 0; b0 < nb; b0 += q8_0_chunk_blocks) {
                const std::size_t n = std::min(q8_0_chunk_blocks, nb - b0);
                for (std::size_t i = 0; i < n; ++i) {
                    g.prefetch(b0 + i, nb, first);
                    Isa::load(g, b0 + i, chunk[i]);
                }
                for (std::size_t row = first; row < first + rows;) {
                    const std::size_t t = even_tile_rows(first + rows - row, Isa::max_tile);
                    q8_0_chunk_tile<Isa, Isa::max_tile>(chunk, b0, n, x, row, t, acc + (row - first));
                    row += t;
                }
            }
            for (std::size_t r = 0; r < rows; ++r) {
                alignas(64) float sums[Isa::group];
                Isa::store(acc[r], sums);
                store_group<Isa>(p, first + r, o, sums, g.outputs);
            }
        }
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
    // 1 to 3 rows take the AVX2 kernel: a 512-bit version (two blocks per step) read 9.3-10.7
    // GB/s of weights from DRAM at one row where this one reads 10.1-12.9, on the 16-core
    // Xeon and on the 2-core development machine alike.
    if (p.rows < detail::group_rows_from) detail::q8_0_matmul<detail::q8_0_avx2_rows>(m, p, scratch, unit_begin, unit_end);
    else detail::q8_0_group_matmul<detail::q8_0_avx512>(m, p, scratch, unit_begin, unit_end);
}
#endif
#if defined(KVDECODE_QUANT_AVX2)
inline void q8_0_matmul_avx2(const q8_0_matrix& m, const matrix_product<float>& p, const std::byte* scratch,
                             std::size_t unit_begin, std::size_t unit_end) noexcept {
    if (p.rows < detail::group_rows_from) detail::q8_0_matmul<detail::q8_0_avx2_rows>(m, p, scratch, unit_begin, unit_end);
    else detail::q8_0_group_matmul<detail::q8_0_avx2>(m, p, scratch, unit_begin, unit_end);
}
#endif
#if defined(KVDECODE_QUANT_SSE2)
inline void q8_0_matmul_sse2(const q8_0_matrix& m, const matrix_product<float>& p, const std::byte* scratch,
                             std::size_t unit_begin, std::size_t unit_end) noexcept {
    detail::q8_0_matmul<detail::q8_0_sse2>(m, p, scratch, unit_begin, unit_end);
}
#endif

}  // namespace kvdecode::quant
