#pragma once
// Q8_0 weights: the product kernels, with activations quantised to Q8_0 per block
// as GGUF's reference does (q8_0.hpp has the format and its scalar reference).
//
// Weights are in the interleaved layout of q8_0_interleaved.hpp (16 outputs per group,
// repacked once at load). Before a product, prepare quantises each activation row into
// scratch, laid out for the kernels:
//   quants  int8  [blocks * 32]   the rows' qs, block after block
//   scales  float [blocks]        each block's scale (its float16 d, widened)
// Rows start row_bytes() apart, a multiple of 64 bytes. prepare_q8_0_row adds each
// block's -128 * (sum of quants) (the AVX-512 VNNI kernel's offset term, below).
//
// Per output, the kernels sum over blocks float(block's int32 dot) * (d_w * d_x): the
// 32 products of a block are exact in 32-bit integers, and only the scaling and the sum
// over blocks round. The AVX2 and AVX-512 kernels take a group's 16 outputs (one per
// 32-bit lane) for a tile of up to 4 or 8 activation rows (on a CPU with AMX, products
// of 8 rows or more take tiles of up to 16 rows through tdpbssd instead), with the scalar
// kernel's arithmetic in its order: the same bits as the scalar kernel for any number of
// rows, however rows are tiled or units split.
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
#include <utility>

#include "kvdecode/quant/half.hpp"
#include "kvdecode/quant/kernel_isa.hpp"
#include "kvdecode/quant/matrix_product.hpp"
#include "kvdecode/quant/q8_0.hpp"
#include "kvdecode/quant/q8_0_interleaved.hpp"

#if defined(KVDECODE_QUANT_SSE2)
#include <immintrin.h>
#endif

namespace kvdecode::quant {

inline constexpr std::size_t q8_0_unit_outputs = 32;  // outputs per work unit
inline constexpr std::size_t q8_0_amx_min_rows = 8;    // fewer rows: the AVX-512 kernel (q8_0_amx, below)

// The scratch layout of one prepared activation row.
struct q8_0_activations {
    std::size_t in_dim = 0;

    std::size_t blocks() const noexcept { return q8_0_blocks(in_dim); }
    std::size_t scales_offset() const noexcept { return blocks() * q8_0_block_values; }
    std::size_t row_bytes() const noexcept { return (blocks() * (q8_0_block_values + sizeof(float)) + 63) / 64 * 64; }
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
// widened scales apart.
inline void quantize_activation_row(const float* x, std::size_t in_dim, std::byte* dst) noexcept {
    static const detail::quantize_block_fn whole_block = detail::best_quantize_block();
    const q8_0_activations layout{in_dim};
    std::int8_t* quants = reinterpret_cast<std::int8_t*>(dst);
    float* scales = reinterpret_cast<float*>(dst + layout.scales_offset());
    for (std::size_t b = 0; b < layout.blocks(); ++b) {
        const std::size_t first = b * q8_0_block_values, count = std::min(q8_0_block_values, in_dim - first);
        const std::uint16_t d = count == q8_0_block_values ? whole_block(x + first, quants + first)
                                                           : quantize_block_q8_0(x + first, count, quants + first);
        scales[b] = f16_to_f32(d);
    }
}

// What prepare writes for Q8_0 weights: the row quantize_activation_row makes, then
// for each block -128 times the sum of its quants, as int32, the term that
// takes the kernels' +128 offset of the weights back out (see below). Rows start
// row_bytes() apart, a multiple of 64 bytes.
struct q8_0_weight_activations {
    std::size_t in_dim = 0;

    q8_0_activations q8_0() const noexcept { return {in_dim}; }
    std::size_t sums_offset() const noexcept { return q8_0().row_bytes(); }
    std::size_t row_bytes() const noexcept {
        return sums_offset() + (q8_0().blocks() * sizeof(std::int32_t) + 63) / 64 * 64;
    }
};

// One activation row x into its prepared form for Q8_0 weights at dst (row_bytes()
// bytes, 64-byte aligned).
inline void prepare_q8_0_row(const float* x, std::size_t in_dim, std::byte* dst) noexcept {
    quantize_activation_row(x, in_dim, dst);
    const q8_0_weight_activations layout{in_dim};
    const auto* quants = reinterpret_cast<const std::int8_t*>(dst);
    auto* sums = reinterpret_cast<std::int32_t*>(dst + layout.sums_offset());
    for (std::size_t b = 0; b < layout.q8_0().blocks(); ++b) {
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

// Every multiply-add here is an explicit fma (std::fma, _mm*_fmadd_ps), never
// `a * b + c`: under -ffp-contract=fast (GCC's default in GNU mode) the compiler fuses
// such expressions or not depending on the surrounding code, so the same kernel would
// round differently per tile, instruction set or compiler.
inline void store_output(const matrix_product<float>& p, std::size_t row, std::size_t o, float sum) noexcept {
    const float scale = p.row_scale ? p.row_scale[row] : 1.0f;
    float& out = p.out[row * p.out_stride + o];
    out = p.accumulate ? std::fma(sum, scale, out) : sum * scale;
}

// A group's sums for one row (lane j: output 16g + j), the real outputs stored.
inline void store_group(const matrix_product<float>& p, const q8_0_interleaved& m, std::size_t row, std::size_t g,
                        const float* sums) noexcept {
    const std::size_t first = g * q8_0_interleaved::group;
    const std::size_t outputs = std::min(q8_0_interleaved::group, m.out_dim - first);
    for (std::size_t j = 0; j < outputs; ++j) store_output(p, row, first + j, sums[j]);
}

// The scalar kernel, the others' specification: for each output and row, dot_q8_0's
// arithmetic in its order (exact block sums, each added with one fma of
// float(sum) * (d_w * d_x)). The AVX2 and AVX-512 kernels compute exactly this, bit for
// bit, for any number of rows.
struct q8_0_scalar {
    static constexpr std::size_t max_tile = 1, streams = 1, tile_streams = 1;
    template <std::size_t Tile, std::size_t S>
    static void tile(const q8_0_interleaved& m, const matrix_product<float>& p, const prepared_rows& x, std::size_t g,
                     std::size_t apart, std::size_t row) noexcept {
        float sums[q8_0_interleaved::group];
        for (std::size_t s = 0; s < S; ++s)
            for (std::size_t r = row; r < row + Tile; ++r) {
                const std::size_t gs = g + s * apart;
                const std::int8_t* xq = x.quants(r);
                const float* xd = x.scales(r);
                for (std::size_t j = 0; j < q8_0_interleaved::group; ++j) {
                    float sum = 0;
                    for (std::size_t b = 0; b < m.blocks_per_row(); ++b) {
                        const std::int8_t* w = m.quants(gs, b) + 4 * j;
                        std::int32_t isum = 0;
                        for (std::size_t i = 0; i < q8_0_block_values; ++i)
                            isum += std::int32_t{w[i / 4 * q8_0_interleaved::slice_bytes + i % 4]} *
                                    std::int32_t{xq[b * q8_0_block_values + i]};
                        sum = std::fma(static_cast<float>(isum), f16_to_f32(m.scales(gs, b)[j]) * xd[b], sum);
                    }
                    sums[j] = sum;
                }
                store_group(p, m, r, gs, sums);
            }
    }
};

inline std::int32_t load_4_bytes(const std::int8_t* p) noexcept {
    std::int32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// A tile's activation rows, their pointers found once.
template <std::size_t Tile>
struct tile_activations {
    const std::int8_t* quants[Tile];
    const float* scales[Tile];
    const std::int32_t* offset[Tile];

    tile_activations(const prepared_rows& x, std::size_t row) noexcept {
        for (std::size_t r = 0; r < Tile; ++r)
            quants[r] = x.quants(row + r), scales[r] = x.scales(row + r), offset[r] = x.offset_terms(row + r);
    }
};

// The weight stream this far ahead in all (each of S streams asks for its share),
// asked for by the first tile of rows only (later tiles find the groups in L1 or L2):
// every line of the quants, and the scales' line every other block.
inline constexpr std::size_t q8_0_prefetch_blocks = 16;

inline void prefetch_group_block(const q8_0_interleaved& m, std::size_t g, std::size_t b, std::size_t row,
                                 std::size_t ahead) noexcept {
    if (row != 0) return;
    // Past the group's last block the stream goes on into the next group's (the groups
    // lie one after another); a prefetch past the matrix is harmless.
    const std::int8_t* q = m.quants(g, 0) + (b + ahead) * q8_0_interleaved::quant_bytes;
    for (std::size_t line = 0; line < q8_0_interleaved::quant_bytes; line += 64) __builtin_prefetch(q + line, 0, 3);
    if (b % 2 == 0) __builtin_prefetch(m.scales(g, 0) + (b + ahead) * q8_0_interleaved::group, 0, 3);
}

// A tile runs through S groups at once (g, g + apart, ...: spread over the thread's
// range), block by block, so that S streams come from memory together: a single
// sequential stream does not keep enough reads in flight to reach the memory's
// bandwidth. Measured on 768x2048 from DRAM (2-core development machine), one row:
// one stream took 145-195 us however far ahead it prefetched, 2 streams 115, 4 streams
// 98-101 and 8 streams 91-101 (AVX-512). One row takes Isa::streams groups at once,
// several rows Isa::tile_streams: on the 16-core Xeon, 8 rows from DRAM took 223 us
// with 1 stream, 195 with 2 and 183 with 4 (its accumulators then live in memory, one
// load and store per row and block beside 8 integer dots); on AVX2, 2 streams were no
// faster than 1.

#if defined(KVDECODE_QUANT_AVX512)
// One block's step for 16 outputs, the scalar kernel's in its order: acc + float(the
// exact block sums) * (d_w * d_x). The VNNI and AMX kernels both take it, so both give
// the scalar kernel's bits.
[[gnu::always_inline]] inline __m512 add_scaled_block_avx512(__m512 acc, __m512i block_sums, __m512 dw, float dx) noexcept {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(block_sums), _mm512_mul_ps(dw, _mm512_set1_ps(dx)), acc);
}

// A group's 16 sums for one row, the real outputs stored.
inline void store_group_avx512(const matrix_product<float>& p, const q8_0_interleaved& m, std::size_t row, std::size_t g,
                               __m512 sums) noexcept {
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, sums);
    store_group(p, m, row, g, lanes);
}

// 16 outputs per vector, one per lane; per block, each of the Tile rows costs eight
// 4-byte broadcasts and integer dots into one register of 16 exact block sums, and one
// float scale-and-add for all 16 outputs. A group's block is loaded once for the tile.
struct q8_0_avx512 {
    static constexpr std::size_t max_tile = 8, streams = 8, tile_streams = 4;

    template <std::size_t Tile, std::size_t S>
    static void tile(const q8_0_interleaved& m, const matrix_product<float>& p, const prepared_rows& x, std::size_t g,
                     std::size_t apart, std::size_t row) noexcept {
        const tile_activations<Tile> xs(x, row);
        __m512 acc[S][Tile];
        for (std::size_t s = 0; s < S; ++s)
            for (std::size_t r = 0; r < Tile; ++r) acc[s][r] = _mm512_setzero_ps();
        for (std::size_t b = 0; b < m.blocks_per_row(); ++b)
            for (std::size_t s = 0; s < S; ++s) {
                const std::size_t gs = g + s * apart;
                prefetch_group_block(m, gs, b, row, q8_0_prefetch_blocks / S);
                const std::int8_t* q = m.quants(gs, b);
                const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(m.scales(gs, b))));
                __m512i w[8];
#if defined(KVDECODE_QUANT_AVX512_VNNI)
                // vpdpbusd multiplies unsigned by signed bytes: the weights + 128, and the
                // row's -128 * (sum of its block's quants) as the sums' starting value.
                for (std::size_t k = 0; k < 8; ++k)
                    w[k] = _mm512_xor_si512(_mm512_load_si512(q + 64 * k), _mm512_set1_epi8(-128));
#else
                __mmask64 negative[8];
                for (std::size_t k = 0; k < 8; ++k) {
                    const __m512i v = _mm512_load_si512(q + 64 * k);
                    negative[k] = _mm512_movepi8_mask(v), w[k] = _mm512_abs_epi8(v);
                }
#endif
                __m512i sums[Tile];
                for (std::size_t r = 0; r < Tile; ++r) {
#if defined(KVDECODE_QUANT_AVX512_VNNI)
                    sums[r] = _mm512_set1_epi32(xs.offset[r][b]);
#else
                    sums[r] = _mm512_setzero_si512();
#endif
                }
                // k outer, rows inner: Tile independent chains of integer dots.
                for (std::size_t k = 0; k < 8; ++k)
                    for (std::size_t r = 0; r < Tile; ++r) {
                        const __m512i xv = _mm512_set1_epi32(load_4_bytes(xs.quants[r] + b * q8_0_block_values + 4 * k));
#if defined(KVDECODE_QUANT_AVX512_VNNI)
                        sums[r] = _mm512_dpbusd_epi32(sums[r], w[k], xv);
#else
                        // |w| times x with w's sign moved onto it (the header: the sign trick).
                        const __m512i signed_x = _mm512_mask_sub_epi8(xv, negative[k], _mm512_setzero_si512(), xv);
                        sums[r] = _mm512_add_epi32(sums[r], _mm512_madd_epi16(_mm512_maddubs_epi16(w[k], signed_x), _mm512_set1_epi16(1)));
#endif
                    }
                for (std::size_t r = 0; r < Tile; ++r)
                    acc[s][r] = add_scaled_block_avx512(acc[s][r], sums[r], dw, xs.scales[r][b]);
            }
        for (std::size_t s = 0; s < S; ++s)
            for (std::size_t r = 0; r < Tile; ++r) store_group_avx512(p, m, row + r, g + s * apart, acc[s][r]);
    }
};
#endif

#if defined(KVDECODE_QUANT_AMX)
// Tiles of 8 to 16 activation rows on AMX (Sapphire Rapids and later). The interleaved
// layout is the one tdpbssd wants for its second operand: a group's block is 8 tile rows
// (4 of the 32 columns each) of 16 outputs x 4 bytes, 512 bytes read as they lie (a B
// tile). The A tile is the same block's 32 quants of every row of the tile, one scratch
// row apart. One tdpbssd (signed by signed) gives the exact int32 block sums of every
// row for the group's 16 outputs (C), which are stored and scaled as the AVX-512 kernel
// scales its own: the same bits. Where the VNNI kernel spends 8 integer dots and 8
// broadcasts per row and block, this spends a load of the stored sums.
//
// Each tile instruction costs about the same whatever its rows (16-core Xeon, operands
// in L1, one after another: tdpbssd about 5 ns, a B load 5, tilezero 7, tilestored 10),
// so a group's block costs about 25 ns for 1 row or 16: below about 8 rows the VNNI
// kernel is faster (q8_0_amx_min_rows). Block b + 1's tile work is issued before block
// b's sums are scaled. Tile registers by the block's parity P: C 2 P + stream, A 4 + P;
// B 6 + stream. (Tried and dropped: two blocks per tdpbssd, 16 tile rows for 8 rows of
// two blocks, with the scratch holding each row's blocks beside 32 zeros; it halves the
// tile instructions, but its larger stores and loads made it slower, whatever the lag
// between a pair's tile work and its scaling.)
namespace amx {

// The tile instructions name their registers in the encoding; GCC's intrinsics take
// them as macro tokens, these as template arguments.
template <int T>
inline void zero() noexcept {
    __asm__ volatile("tilezero %%tmm%c0" ::"i"(T));
}
template <int T>
inline void load(const void* base, std::size_t stride) noexcept {
    __asm__ volatile("{tileloadd\t(%0,%1,1), %%tmm%c2|tileloadd\t%%tmm%c2, [%0+%1*1]}" ::"r"(base), "r"(stride), "i"(T)
                     : "memory");
}
template <int T>
inline void store(void* base, std::size_t stride) noexcept {
    __asm__ volatile("{tilestored\t%%tmm%c2, (%0,%1,1)|tilestored\t[%0+%1*1], %%tmm%c2}" ::"r"(base), "r"(stride), "i"(T)
                     : "memory");
}
// C += A (rows x 32 signed bytes) times B (8 x 16 x 4 signed bytes).
template <int C, int A, int B>
inline void dot_signed() noexcept {
    __asm__ volatile("{tdpbssd\t%%tmm%c2, %%tmm%c1, %%tmm%c0|tdpbssd\t%%tmm%c0, %%tmm%c1, %%tmm%c2}" ::"i"(C), "i"(A), "i"(B));
}

// Palette 1: C 0..3 (`rows` rows of 16 int32), A 4 and 5 (`rows` rows of a block's 32
// quants), B 6 and 7 (a group's block).
inline void configure(std::size_t rows) noexcept {
    struct alignas(64) {
        std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
        std::uint16_t bytes_per_row[16] = {};
        std::uint8_t rows[16] = {};
    } config;
    for (int t = 0; t < 4; ++t) config.rows[t] = static_cast<std::uint8_t>(rows), config.bytes_per_row[t] = 64;
    for (int t : {4, 5}) config.rows[t] = static_cast<std::uint8_t>(rows), config.bytes_per_row[t] = q8_0_block_values;
    for (int t : {6, 7}) config.rows[t] = q8_0_block_values / 4, config.bytes_per_row[t] = q8_0_interleaved::slice_bytes;
    // Not GCC 12's _tile_loadconfig: its asm names only the first 8 bytes of the
    // configuration as read, so the compiler may drop the stores to the rest.
    __asm__ volatile("ldtilecfg %0" ::"m"(config));
}

// The thread's tile state back to its initial, small one (saved and restored cheaply).
inline void release() noexcept {
    __asm__ volatile("tilerelease" ::: "memory");
}

}  // namespace amx

struct q8_0_amx {
    static constexpr std::size_t max_tile = 16, streams = 1, tile_streams = 2;

    static bool takes(std::size_t rows) noexcept { return rows >= q8_0_amx_min_rows && amx_permitted(); }

    template <std::size_t Tile, std::size_t S>
    static void tile(const q8_0_interleaved& m, const matrix_product<float>& p, const prepared_rows& x, std::size_t g,
                     std::size_t apart, std::size_t row) noexcept {
        static_assert(Tile <= 16 && S <= 2, "16 rows per tile, two C tiles per stream");
        amx::configure(Tile);
        const tile_activations<Tile> xs(x, row);
        const std::size_t stride = x.layout.row_bytes();
        // Block b's sums go to block_sums[b % 2] while block b - 1's are scaled.
        alignas(64) std::int32_t block_sums[2][S][Tile][q8_0_interleaved::group];
        __m512 acc[S][Tile];
        for (std::size_t s = 0; s < S; ++s)
            for (std::size_t r = 0; r < Tile; ++r) acc[s][r] = _mm512_setzero_ps();
        auto scale = [&](std::size_t b) {
            for (std::size_t s = 0; s < S; ++s) {
                const __m512 dw =
                    _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(m.scales(g + s * apart, b))));
                for (std::size_t r = 0; r < Tile; ++r)
                    acc[s][r] = add_scaled_block_avx512(acc[s][r], _mm512_load_si512(block_sums[b % 2][s][r]), dw,
                                                        xs.scales[r][b]);
            }
        };
        const std::size_t nb = m.blocks_per_row();
        for (std::size_t b = 0; b < nb; ++b) {
            const std::int8_t* a = xs.quants[0] + b * q8_0_block_values;
            if (b % 2 == 0) products<0, S, Tile>(m, a, stride, g, apart, b, row, block_sums[0][0][0]);
            else products<1, S, Tile>(m, a, stride, g, apart, b, row, block_sums[1][0][0]);
            if (b > 0) scale(b - 1);
        }
        scale(nb - 1);
        for (std::size_t s = 0; s < S; ++s)
            for (std::size_t r = 0; r < Tile; ++r) store_group_avx512(p, m, row + r, g + s * apart, acc[s][r]);
    }

private:
    // Block b of each stream's group: the exact block sums of every row of the tile, into
    // out (stream after stream, Tile rows of 64 bytes each).
    template <int P, std::size_t S, std::size_t Tile>
    static void products(const q8_0_interleaved& m, const std::int8_t* a_tile, std::size_t stride, std::size_t g,
                         std::size_t apart, std::size_t b, std::size_t row, std::int32_t* out) noexcept {
        constexpr int a = 4 + P;
        amx::load<a>(a_tile, stride);
        [&]<std::size_t... s>(std::index_sequence<s...>) {
            (product<2 * P + static_cast<int>(s), a, 6 + static_cast<int>(s)>(m, g + s * apart, b, row, S,
                                                                              out + s * Tile * q8_0_interleaved::group),
             ...);
        }(std::make_index_sequence<S>{});
    }

    template <int C, int A, int B>
    static void product(const q8_0_interleaved& m, std::size_t g, std::size_t b, std::size_t row, std::size_t streams,
                        std::int32_t* out) noexcept {
        prefetch_group_block(m, g, b, row, q8_0_prefetch_blocks / streams);
        amx::zero<C>();
        amx::load<B>(m.quants(g, b), q8_0_interleaved::slice_bytes);
        amx::dot_signed<C, A, B>();
        amx::store<C>(out, q8_0_interleaved::group * sizeof(std::int32_t));
    }
};
#endif

#if defined(KVDECODE_QUANT_AVX2)
// No unsigned-by-signed dot that adds into 32 bits: vpmaddubsw (pairs into 16 bits, which
// |w| <= 128 times |x| <= 127 cannot overflow) and vpmaddwd, with the sign trick. A tile of
// several rows takes a group in two halves of 8 outputs (the first 32 bytes of each
// slice, then the last), each a pass over the groups' blocks: with 16 vector registers
// (Zen 3), the block sums and accumulators of 4 rows for 8 outputs fit beside the
// weights, 16 outputs' would not; the second pass finds the lines in L1 or L2. One row
// (in 4 groups) takes both halves in one pass, so that the memory streams all along.
struct q8_0_avx2 {
    static constexpr std::size_t max_tile = 4, streams = 4, tile_streams = 1;

    template <std::size_t Tile, std::size_t S>
    static void tile(const q8_0_interleaved& m, const matrix_product<float>& p, const prepared_rows& x, std::size_t g,
                     std::size_t apart, std::size_t row) noexcept {
        const tile_activations<Tile> xs(x, row);
        const __m256i ones = _mm256_set1_epi16(1);
        constexpr std::size_t H = Tile == 1 ? 2 : 1;  // halves per pass
        alignas(32) float sums[S][Tile][16];
        for (std::size_t pass = 0; pass < 2 / H; ++pass) {
            __m256 acc[S][Tile][H];
            for (std::size_t s = 0; s < S; ++s)
                for (std::size_t r = 0; r < Tile; ++r)
                    for (std::size_t h = 0; h < H; ++h) acc[s][r][h] = _mm256_setzero_ps();
            for (std::size_t b = 0; b < m.blocks_per_row(); ++b)
                for (std::size_t s = 0; s < S; ++s) {
                    const std::size_t gs = g + s * apart;
                    if (pass == 0) prefetch_group_block(m, gs, b, row, q8_0_prefetch_blocks / S);
                    const std::int8_t* q = m.quants(gs, b) + 32 * H * pass;
                    __m256i block_sums[Tile][H];
                    for (std::size_t r = 0; r < Tile; ++r)
                        for (std::size_t h = 0; h < H; ++h) block_sums[r][h] = _mm256_setzero_si256();
                    for (std::size_t k = 0; k < 8; ++k) {
                        __m256i w[H], magnitude[H];
                        for (std::size_t h = 0; h < H; ++h) {
                            w[h] = _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 64 * k + 32 * h));
                            magnitude[h] = _mm256_sign_epi8(w[h], w[h]);
                        }
                        for (std::size_t r = 0; r < Tile; ++r) {
                            const __m256i xv = _mm256_set1_epi32(load_4_bytes(xs.quants[r] + b * q8_0_block_values + 4 * k));
                            for (std::size_t h = 0; h < H; ++h)
                                block_sums[r][h] = _mm256_add_epi32(
                                    block_sums[r][h],
                                    _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude[h], _mm256_sign_epi8(xv, w[h])), ones));
                        }
                    }
                    for (std::size_t h = 0; h < H; ++h) {
                        const __m256 dw = _mm256_cvtph_ps(
                            _mm_load_si128(reinterpret_cast<const __m128i*>(m.scales(gs, b) + 8 * (H * pass + h))));
                        for (std::size_t r = 0; r < Tile; ++r) {
                            const __m256 scale = _mm256_mul_ps(dw, _mm256_set1_ps(xs.scales[r][b]));
                            acc[s][r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_sums[r][h]), scale, acc[s][r][h]);
                        }
                    }
                }
            for (std::size_t s = 0; s < S; ++s)
                for (std::size_t r = 0; r < Tile; ++r)
                    for (std::size_t h = 0; h < H; ++h) _mm256_store_ps(sums[s][r] + 8 * (H * pass + h), acc[s][r][h]);
        }
        for (std::size_t s = 0; s < S; ++s)
            for (std::size_t r = 0; r < Tile; ++r) store_group(p, m, row + r, g + s * apart, sums[s][r]);
    }
};
#endif

// Tiles as even as the row count allows (9 rows: 5 + 4, not 8 + 1): a tile's fixed
// costs are paid once for all its rows. The rows of the next tile out of `left`.
inline std::size_t even_tile_rows(std::size_t left, std::size_t max_tile) noexcept {
    const std::size_t tiles = (left + max_tile - 1) / max_tile;
    return (left + tiles - 1) / tiles;
}

template <class Isa, std::size_t S, std::size_t Tile = Isa::max_tile>
void q8_0_remainder_tile(const q8_0_interleaved& m, const matrix_product<float>& p, const prepared_rows& x, std::size_t g,
                         std::size_t apart, std::size_t row, std::size_t rows) noexcept {
    if constexpr (Tile > 0) {
        if (rows == Tile) Isa::template tile<Tile, S>(m, p, x, g, apart, row);
        else q8_0_remainder_tile<Isa, S, Tile - 1>(m, p, x, g, apart, row, rows);
    }
}

// Every tile of rows for S groups (g, g + apart, ...): the groups' weights come from
// memory for the first tile and from L1 or L2 for the others (a group of in_dim 2048 is
// 34 KiB).
template <class Isa, std::size_t S>
void q8_0_groups(const q8_0_interleaved& m, const matrix_product<float>& p, const prepared_rows& x, std::size_t g,
                 std::size_t apart) noexcept {
    for (std::size_t row = 0; row < p.rows;) {
        const std::size_t n = even_tile_rows(p.rows - row, Isa::max_tile);
        q8_0_remainder_tile<Isa, S>(m, p, x, g, apart, row, n);
        row += n;
    }
}

// The groups of units [unit_begin, unit_end): as many streams at once as the ISA takes
// for this many rows, the groups left over (fewer than the streams) one at a time.
template <class Isa>
void q8_0_matmul(const q8_0_interleaved& m, const matrix_product<float>& p, const std::byte* scratch, std::size_t unit_begin,
                 std::size_t unit_end) noexcept {
    static_assert(q8_0_unit_outputs % q8_0_interleaved::group == 0, "units split between groups");
    constexpr std::size_t groups_per_unit = q8_0_unit_outputs / q8_0_interleaved::group;
    const prepared_rows x{scratch, q8_0_weight_activations{m.in_dim}};
    const std::size_t g_end = std::min(unit_end * groups_per_unit, m.groups());
    std::size_t g_begin = unit_begin * groups_per_unit;
    if constexpr (Isa::streams > 1) {
        if (p.rows == 1)
            g_begin = spread_over_streams(g_begin, g_end, Isa::streams, [&](std::size_t g, std::size_t apart) {
                Isa::template tile<1, Isa::streams>(m, p, x, g, apart, 0);
            });
    }
    if constexpr (Isa::tile_streams > 1) {
        if (p.rows > 1)
            g_begin = spread_over_streams(g_begin, g_end, Isa::tile_streams, [&](std::size_t g, std::size_t apart) {
                q8_0_groups<Isa, Isa::tile_streams>(m, p, x, g, apart);
            });
    }
    for (std::size_t g = g_begin; g < g_end; ++g) q8_0_groups<Isa, 1>(m, p, x, g, 0);
}

}  // namespace detail

// Units [unit_begin, unit_end) (32 outputs each) of the product, the activations
// prepared in scratch (prepare_q8_0_row per row), on a named instruction set.
inline void q8_0_matmul_scalar(const q8_0_interleaved& m, const matrix_product<float>& p, const std::byte* scratch,
                               std::size_t unit_begin, std::size_t unit_end) noexcept {
    detail::q8_0_matmul<detail::q8_0_scalar>(m, p, scratch, unit_begin, unit_end);
}
#if defined(KVDECODE_QUANT_AVX512)
inline void q8_0_matmul_avx512(const q8_0_interleaved& m, const matrix_product<float>& p, const std::byte* scratch,
                               std::size_t unit_begin, std::size_t unit_end) noexcept {
#if defined(KVDECODE_QUANT_AMX)
    if (detail::q8_0_amx::takes(p.rows)) {
        detail::q8_0_matmul<detail::q8_0_amx>(m, p, scratch, unit_begin, unit_end);
        detail::amx::release();
        return;
    }
#endif
    detail::q8_0_matmul<detail::q8_0_avx512>(m, p, scratch, unit_begin, unit_end);
}
#endif
#if defined(KVDECODE_QUANT_AVX2)
inline void q8_0_matmul_avx2(const q8_0_interleaved& m, const matrix_product<float>& p, const std::byte* scratch,
                             std::size_t unit_begin, std::size_t unit_end) noexcept {
    detail::q8_0_matmul<detail::q8_0_avx2>(m, p, scratch, unit_begin, unit_end);
}
#endif

}  // namespace kvdecode::quant
