#pragma once
// Q4_0, Q4_1, Q5_0 and Q5_1 weights: the product kernels (q4_q5.hpp has the formats
// and their scalar reference). One kernel per instruction set serves all four: a
// format only changes how a block unpacks into 32 integer quants (nibbles, the fifth
// bits, the offset) and whether a minimum term m_w * s_x is added.
//
// Weights stay in the file's layout, out_dim rows of in_dim / 32 blocks, read where
// they are: nothing here assumes the bytes came from our quantiser or are aligned
// beyond their 2-byte fields (every load is unaligned; a GGUF loader may point the
// matrix at mapped file data). A block is never read past its own bytes.
//
// Activations are prepared once per product, in scratch:
//   _0 types: the Q8_0 layout of kernels_q8_0.hpp (quantize_activation_row), as is;
//   _1 types: the same followed by each block's Q8_1 s / 8 as float, 8 times (as the
//             scales are widened; padded_blocks of them, the padding zero), rows
//             q8_1_activations::row_bytes() apart (multiples of 64 bytes). s / 8 is
//             exact (s is a float16 value), and 8 lanes of m_w * s / 8 sum to m_w * s.
//
// Per output the kernels sum float(block's int32 dot) * (d_w * d_x) over blocks (and
// m_w * s_x for the _1 types, in the same vector accumulator): the integer dot is
// exact (|q_w| <= 31, |q_x| <= 127, so the 16-bit pair sums of maddubs cannot
// saturate), only scaling and summation round. Signed quants
// (_0) use the sign trick of kernels_q8_0.hpp (|w| times x with w's sign); unsigned
// ones (_1) go into the unsigned operand directly. Each weight block is unpacked once
// for up to R activation rows (8 on AVX-512, 4 on AVX2); AVX-512 takes two blocks per
// step in a 512-bit register and uses VNNI's vpdpbusd where the target has it.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kvdecode/quant/half.hpp"
#include "kvdecode/quant/kernel_isa.hpp"
#include "kvdecode/quant/kernels_q8_0.hpp"
#include "kvdecode/quant/matrix_product.hpp"
#include "kvdecode/quant/q4_q5.hpp"
#include "kvdecode/quant/q8_0.hpp"

#if defined(KVDECODE_QUANT_SSE2)
#include <immintrin.h>
#endif

namespace kvdecode::quant {

// A matrix: out_dim rows of in_dim / 32 blocks.
template <class Block>
struct legacy_matrix {
    const Block* blocks = nullptr;
    std::size_t out_dim = 0, in_dim = 0;

    std::size_t blocks_per_row() const noexcept { return legacy_blocks(in_dim); }
};

// The scratch layout of one prepared Q8_1 activation row: Q8_0's, then each block's
// s / 8, 8 times.
struct q8_1_activations {
    std::size_t in_dim = 0;

    q8_0_activations q8_0() const noexcept { return {in_dim}; }
    std::size_t sums_offset() const noexcept { return q8_0().row_bytes(); }
    std::size_t row_bytes() const noexcept { return sums_offset() + q8_0().padded_blocks() * 8 * sizeof(float); }
};

// Scratch bytes per activation row for weights of a block type.
template <class Block>
constexpr std::size_t activation_row_bytes(std::size_t in_dim) noexcept {
    if constexpr (legacy_format<Block>::has_min) return q8_1_activations{in_dim}.row_bytes();
    else return q8_0_activations{in_dim}.row_bytes();
}

// One activation row x (in_dim values) into its prepared Q8_1 form at dst (row_bytes()
// bytes, 64-byte aligned): quantize_row_q8_1's blocks, quants, widened d and s / 8 apart.
inline void quantize_activation_row_q8_1(const float* x, std::size_t in_dim, std::byte* dst) noexcept {
    quantize_activation_row(x, in_dim, dst);
    const q8_1_activations layout{in_dim};
    const auto* quants = reinterpret_cast<const std::int8_t*>(dst);
    float* sums = reinterpret_cast<float*>(dst + layout.sums_offset());
    const std::size_t blocks = layout.q8_0().blocks(), padded = layout.q8_0().padded_blocks();
    for (std::size_t b = 0; b < blocks; ++b) {
        const std::size_t first = b * q8_0_block_values, count = std::min(q8_0_block_values, in_dim - first);
        std::fill_n(sums + 8 * b, 8, f16_to_f32(q8_1_block_sum(x + first, count, quants + first)) / 8);
    }
    std::fill(sums + 8 * blocks, sums + 8 * padded, 0.0f);
}

// Prepares activation row x for weights of a block type.
template <class Block>
inline void prepare_activation_row(const float* x, std::size_t in_dim, std::byte* dst) noexcept {
    if constexpr (legacy_format<Block>::has_min) quantize_activation_row_q8_1(x, in_dim, dst);
    else quantize_activation_row(x, in_dim, dst);
}

namespace detail {

// Where activation row r's quants, widened scales and (Q8_1) widened s / 8 start.
template <class Block>
struct legacy_activations {
    const std::byte* scratch;
    std::size_t in_dim;

    std::size_t row_bytes() const noexcept { return activation_row_bytes<Block>(in_dim); }
    const std::int8_t* quants(std::size_t r) const noexcept {
        return reinterpret_cast<const std::int8_t*>(scratch + r * row_bytes());
    }
    const float* scales(std::size_t r) const noexcept {
        return reinterpret_cast<const float*>(scratch + r * row_bytes() + q8_0_activations{in_dim}.scales_offset());
    }
    const float* sums(std::size_t r) const noexcept {
        return reinterpret_cast<const float*>(scratch + r * row_bytes() + q8_1_activations{in_dim}.sums_offset());
    }
};

// The scalar kernel: for each output and row, dot_legacy's arithmetic in its order.
template <class Block>
struct legacy_scalar {
    static constexpr std::size_t max_tile = 1;
    template <std::size_t Tile>
    static void tile(const legacy_matrix<Block>& m, const matrix_product<float>& p, const legacy_activations<Block>& x,
                     std::size_t o, std::size_t row) noexcept {
        const std::size_t nb = m.blocks_per_row();
        const Block* w = m.blocks + o * nb;
        for (std::size_t r = row; r < row + Tile; ++r) {
            const std::int8_t* xq = x.quants(r);
            const float* xd = x.scales(r);
            float sum = 0;
            for (std::size_t b = 0; b < nb; ++b) {
                float sx = 0;
                if constexpr (legacy_format<Block>::has_min) sx = 8 * x.sums(r)[8 * b];  // exact
                sum += block_dot(w[b], xq + b * legacy_block_values, xd[8 * b], sx);
            }
            store_output(p, r, o, sum);
        }
    }
};

#if defined(KVDECODE_QUANT_AVX2)
// A block's 32 quants as bytes in value order, offset taken off.
template <class Block>
inline __m256i unpack_avx2(const Block& b) noexcept {
    using F = legacy_format<Block>;
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
    // Low nibbles are values 0..15, high nibbles 16..31: lanes 0 and 1.
    __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1);
    q = _mm256_and_si256(q, _mm256_set1_epi8(0x0f));
    if constexpr (F::bits == 5) {
        std::uint32_t qh;
        std::memcpy(&qh, b.qh, sizeof qh);  // x86 is little-endian: bit i is value i's
        // Byte i gets qh's byte i / 8 (the shuffle works per 128-bit lane, and every
        // 4 bytes of the broadcast hold qh), then its bit i % 8 becomes 0x10.
        const __m256i spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(static_cast<int>(qh)),
            _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
        q = _mm256_or_si256(q, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10)));
    }
    if constexpr (F::offset != 0) q = _mm256_sub_epi8(q, _mm256_set1_epi8(static_cast<char>(F::offset)));
    return q;
}

template <class Block>
struct legacy_avx2 {
    static constexpr std::size_t max_tile = 4;

    template <std::size_t Tile>
    static void tile(const legacy_matrix<Block>& m, const matrix_product<float>& p, const legacy_activations<Block>& x,
                     std::size_t o, std::size_t row) noexcept {
        constexpr bool has_min = legacy_format<Block>::has_min;
        const std::size_t nb = m.blocks_per_row();
        const Block* w = m.blocks + o * nb;
        const std::int8_t* xq[Tile];
        const float* xd[Tile];
        const float* xs[Tile] = {};
        __m256 acc[Tile];
        for (std::size_t r = 0; r < Tile; ++r) {
            xq[r] = x.quants(row + r), xd[r] = x.scales(row + r), acc[r] = _mm256_setzero_ps();
            if constexpr (has_min) xs[r] = x.sums(row + r);
        }
        const __m256i ones = _mm256_set1_epi16(1);
        for (std::size_t b = 0; b < nb; ++b) {
            prefetch_weights(w + b, row);
            const __m256i wq = unpack_avx2(w[b]);
            const __m256i magnitude = has_min ? wq : _mm256_sign_epi8(wq, wq);
            const __m256 dw = _mm256_set1_ps(_cvtsh_ss(w[b].d));
            __m256 mw = _mm256_setzero_ps();
            if constexpr (has_min) mw = _mm256_set1_ps(_cvtsh_ss(w[b].m));
            for (std::size_t r = 0; r < Tile; ++r) {
                const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[r] + b * legacy_block_values));
                const __m256i signed_x = has_min ? xv : _mm256_sign_epi8(xv, wq);
                const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, signed_x), ones);
                const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(sums), _mm256_loadu_ps(xd[r] + 8 * b));
                acc[r] = _mm256_fmadd_ps(f, dw, acc[r]);
                if constexpr (has_min) acc[r] = _mm256_fmadd_ps(mw, _mm256_loadu_ps(xs[r] + 8 * b), acc[r]);
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

#if defined(KVDECODE_QUANT_AVX512)
// Blocks w[0] and w[1] (pair) or w[0] alone as 64 quant bytes in value order, offset
// taken off, in 512-bit operations: the two blocks' nibbles fill 128-bit lanes
// [w0, w0, w1, w1], the odd lanes shifted down by a nibble, and the fifth bits are
// a 64-bit mask. Without a pair the upper half holds -offset, which multiplies the
// activations' zero padding.
template <class Block>
inline __m512i unpack_pair_avx512(const Block* w, bool pair) noexcept {
    using F = legacy_format<Block>;
    const __m128i first = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[0].qs));
    const __m128i second = pair ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[1].qs)) : _mm_setzero_si128();
    const __m512i both = _mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(first), second, 1));
    __m512i q = _mm512_shuffle_i64x2(both, both, 0x50);  // lanes 0, 0, 1, 1
    q = _mm512_mask_srli_epi16(q, 0xff00ff00u, q, 4);    // lanes 1 and 3: the high nibbles
    q = _mm512_and_si512(q, _mm512_set1_epi8(0x0f));
    if constexpr (F::bits == 5) {
        std::uint32_t h0 = 0, h1 = 0;
        std::memcpy(&h0, w[0].qh, sizeof h0);  // x86 is little-endian: bit i is value i's
        if (pair) std::memcpy(&h1, w[1].qh, sizeof h1);
        q = _mm512_mask_add_epi8(q, _cvtu64_mask64(h0 | std::uint64_t{h1} << 32), q, _mm512_set1_epi8(0x10));
    }
    if constexpr (F::offset != 0) q = _mm512_sub_epi8(q, _mm512_set1_epi8(static_cast<char>(F::offset)));
    return q;
}

// Two blocks per step in a 512-bit register (the second zero past the row's end: the
// activations' padding is zero too); block sums of 4 products in 16 int32 lanes,
// 8 per block, scaled per lane.
template <class Block>
struct legacy_avx512 {
    static constexpr std::size_t max_tile = 8;

    static __m512i dot(__m512i unsigned_w, __m512i signed_x) noexcept {
#if defined(KVDECODE_QUANT_AVX512_VNNI)
        return _mm512_dpbusd_epi32(_mm512_setzero_si512(), unsigned_w, signed_x);
#else
        return _mm512_madd_epi16(_mm512_maddubs_epi16(unsigned_w, signed_x), _mm512_set1_epi16(1));
#endif
    }

    template <std::size_t Tile>
    static void tile(const legacy_matrix<Block>& m, const matrix_product<float>& p, const legacy_activations<Block>& x,
                     std::size_t o, std::size_t row) noexcept {
        constexpr bool has_min = legacy_format<Block>::has_min;
        const std::size_t nb = m.blocks_per_row();
        const Block* w = m.blocks + o * nb;
        const std::int8_t* xq[Tile];
        const float* xd[Tile];
        const float* xs[Tile] = {};
        __m512 acc[Tile];
        for (std::size_t r = 0; r < Tile; ++r) {
            xq[r] = x.quants(row + r), xd[r] = x.scales(row + r), acc[r] = _mm512_setzero_ps();
            if constexpr (has_min) xs[r] = x.sums(row + r);
        }
        auto step = [&](std::size_t b, bool pair) {
            prefetch_weights(w + b, row);
            const __m512i wq = unpack_pair_avx512(w + b, pair);
            const __m512 dw = _mm512_mask_mov_ps(_mm512_set1_ps(_cvtsh_ss(w[b].d)), 0xff00,
                                                 _mm512_set1_ps(pair ? _cvtsh_ss(w[b + 1].d) : 0.0f));
            const __mmask64 negative = has_min ? 0 : _mm512_movepi8_mask(wq);
            const __m512i magnitude = has_min ? wq : _mm512_abs_epi8(wq);
            __m512 mw = _mm512_setzero_ps();
            if constexpr (has_min)
                mw = _mm512_mask_mov_ps(_mm512_set1_ps(_cvtsh_ss(w[b].m)), 0xff00,
                                        _mm512_set1_ps(pair ? _cvtsh_ss(w[b + 1].m) : 0.0f));
            for (std::size_t r = 0; r < Tile; ++r) {
                const __m512i xv = _mm512_loadu_si512(xq[r] + b * legacy_block_values);
                const __m512i signed_x = has_min ? xv : _mm512_mask_sub_epi8(xv, negative, _mm512_setzero_si512(), xv);
                const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(dot(magnitude, signed_x)), _mm512_loadu_ps(xd[r] + 8 * b));
                acc[r] = _mm512_fmadd_ps(f, dw, acc[r]);
                if constexpr (has_min) acc[r] = _mm512_fmadd_ps(mw, _mm512_loadu_ps(xs[r] + 8 * b), acc[r]);
            }
        };
        std::size_t b = 0;
        for (; b + 2 <= nb; b += 2) step(b, true);
        if (b < nb) step(b, false);
        for (std::size_t r = 0; r < Tile; ++r) store_output(p, row + r, o, _mm512_reduce_add_ps(acc[r]));
    }
};
#endif

template <class Isa, class Block, std::size_t Tile>
void legacy_remainder_tile(const legacy_matrix<Block>& m, const matrix_product<float>& p,
                           const legacy_activations<Block>& x, std::size_t o, std::size_t row, std::size_t rows) noexcept {
    if constexpr (Tile > 0) {
        if (rows == Tile) Isa::template tile<Tile>(m, p, x, o, row);
        else legacy_remainder_tile<Isa, Block, Tile - 1>(m, p, x, o, row, rows);
    }
}

// Outputs of units [unit_begin, unit_end): each weight row once per tile of rows (the
// row stays in L1 for the later tiles).
template <class Isa, class Block>
void legacy_matmul(const legacy_matrix<Block>& m, const matrix_product<float>& p, const std::byte* scratch,
                   std::size_t unit_begin, std::size_t unit_end) noexcept {
    constexpr std::size_t tile = Isa::max_tile;
    const legacy_activations<Block> x{scratch, m.in_dim};
    const std::size_t o_end = std::min(unit_end * q8_0_unit_outputs, m.out_dim);
    for (std::size_t o = unit_begin * q8_0_unit_outputs; o < o_end; ++o) {
        std::size_t row = 0;
        for (; row + tile <= p.rows; row += tile) Isa::template tile<tile>(m, p, x, o, row);
        legacy_remainder_tile<Isa, Block, tile - 1>(m, p, x, o, row, p.rows - row);
    }
}

}  // namespace detail

// Units [unit_begin, unit_end) (32 outputs each) of the product, the activations
// prepared in scratch (prepare_activation_row<Block> per row), on a named instruction set.
template <class Block>
inline void legacy_matmul_scalar(const legacy_matrix<Block>& m, const matrix_product<float>& p, const std::byte* scratch,
                                 std::size_t unit_begin, std::size_t unit_end) noexcept {
    detail::legacy_matmul<detail::legacy_scalar<Block>>(m, p, scratch, unit_begin, unit_end);
}
#if defined(KVDECODE_QUANT_AVX2)
template <class Block>
inline void legacy_matmul_avx2(const legacy_matrix<Block>& m, const matrix_product<float>& p, const std::byte* scratch,
                               std::size_t unit_begin, std::size_t unit_end) noexcept {
    detail::legacy_matmul<detail::legacy_avx2<Block>>(m, p, scratch, unit_begin, unit_end);
}
#endif
#if defined(KVDECODE_QUANT_AVX512)
template <class Block>
inline void legacy_matmul_avx512(const legacy_matrix<Block>& m, const matrix_product<float>& p, const std::byte* scratch,
                                 std::size_t unit_begin, std::size_t unit_end) noexcept {
    detail::legacy_matmul<detail::legacy_avx512<Block>>(m, p, scratch, unit_begin, unit_end);
}
#endif

}  // namespace kvdecode::quant
