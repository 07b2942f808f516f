#pragma once
// Q4_0, Q4_1, Q5_0 and Q5_1 weights: the product kernels (q4_q5.hpp has the formats
// and their scalar reference). One kernel per instruction set serves all four: a
// format only changes where a block's fields sit, whether it has fifth bits, its
// offset (_0) or its minimum term m_w * s_x (_1).
//
// Weights stay in the file's layout, out_dim rows of in_dim / 32 blocks, read where
// they are: nothing here assumes the bytes came from our quantiser or are aligned
// beyond their 2-byte fields (a GGUF loader may point the matrix at mapped file data),
// and nothing is read past the matrix's last byte. Every field of the four formats
// starts at an even byte, so 16-bit permutes can gather them.
//
// The kernels take a group of 4 blocks per step. A block's 16 qs bytes hold values
// 0..15 in their low nibbles and 16..31 in their high ones, so the group's 64 qs bytes
// masked give values 0..15 of the 4 blocks and shifted give values 16..31, with no
// reordering of the weights. prepare lays the activations out to match, per group
// of 4 blocks (256 bytes, the last group of a row zero-padded):
//   [0, 64)     int8   block k's activation quants 0..15 at 16 k
//   [64, 128)   int8   block k's quants 16..31 at 16 k
//   [128, 192)  float  block k's Q8_0 scale d_x in lanes 4k .. 4k + 3
//   [192, 256)  _0: int32, lane 4k + j: -offset * (the 8 quants of block k that int32
//               lane j of the two dot products covers: 4j .. 4j + 3 and 16 + 4j ..);
//               _1: float, block k's Q8_1 s / 4 in lanes 4k .. 4k + 3 (exact).
// So the unsigned quants (0 .. 31, the offset not taken off) go straight into the
// unsigned operand of vpdpbusd / vpmaddubsw, and the offset is folded in exactly:
// sum (q - o) x = sum q x - o sum x, per int32 lane, in integers. Each block's exact
// sum lies in 4 int32 lanes; per step and row one conversion, one multiply by d_x and
// one fused multiply-add by d_w (+ one by m_w for _1) cover 4 blocks, and the
// horizontal sum happens once per output. Only d_w * d_x products and the float sum
// round (|q| <= 31, |x| <= 127: 16-bit pair sums of maddubs, and two of them added,
// cannot saturate).
//
// Each output is computed the same way whatever tile of activation rows it is in
// (a row's arithmetic does not depend on the others), so a row alone and a row among
// many give bit-identical outputs.

#include <algorithm>
#include <array>
#include <cmath>
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

inline constexpr std::size_t legacy_group_blocks = 4;    // blocks per kernel step
inline constexpr std::size_t legacy_group_bytes = 256;   // prepared activation bytes per group

// The scratch layout of one prepared activation row (in_dim a multiple of 32).
struct legacy_activation_layout {
    std::size_t in_dim = 0;

    std::size_t blocks() const noexcept { return legacy_blocks(in_dim); }
    std::size_t groups() const noexcept { return (blocks() + legacy_group_blocks - 1) / legacy_group_blocks; }
    std::size_t row_bytes() const noexcept { return groups() * legacy_group_bytes; }
};

// Scratch bytes per activation row for weights of a block type.
template <class Block>
constexpr std::size_t activation_row_bytes(std::size_t in_dim) noexcept {
    return legacy_activation_layout{in_dim}.row_bytes();
}

// One activation row x (in_dim values, a multiple of 32) into its prepared form at dst
// (row_bytes() bytes, 64-byte aligned) for weights of a block type: quantize_row_q8_0's
// (or quantize_row_q8_1's) blocks, laid out as at the top of this file.
template <class Block>
inline void prepare_activation_row(const float* x, std::size_t in_dim, std::byte* dst) noexcept {
    using F = legacy_format<Block>;
    static const detail::quantize_block_fn whole_block = detail::best_quantize_block();
    const legacy_activation_layout layout{in_dim};
    const std::size_t blocks = layout.blocks();
    if (blocks % legacy_group_blocks != 0) std::memset(dst + (layout.groups() - 1) * legacy_group_bytes, 0, legacy_group_bytes);
    for (std::size_t b = 0; b < blocks; ++b) {
        std::byte* group = dst + b / legacy_group_blocks * legacy_group_bytes;
        const std::size_t k = b % legacy_group_blocks;
        const float* xb = x + b * legacy_block_values;
        std::int8_t q[legacy_block_values];
        const float d = f16_to_f32(whole_block(xb, q));
        std::memcpy(group + 16 * k, q, 16);
        std::memcpy(group + 64 + 16 * k, q + 16, 16);
        float lanes[4];
        std::fill_n(lanes, 4, d);
        std::memcpy(group + 128 + 16 * k, lanes, sizeof lanes);
        if constexpr (F::has_min) {
            std::fill_n(lanes, 4, f16_to_f32(q8_1_block_sum(xb, legacy_block_values, q)) / 4);
            std::memcpy(group + 192 + 16 * k, lanes, sizeof lanes);
        } else {
            std::int32_t corr[4];
            for (std::size_t j = 0; j < 4; ++j) {
                std::int32_t sum = 0;
                for (std::size_t i = 0; i < 4; ++i) sum += q[4 * j + i] + q[16 + 4 * j + i];
                corr[j] = -F::offset * sum;
            }
            std::memcpy(group + 192 + 16 * k, corr, sizeof corr);
        }
    }
}

namespace detail {

// Prepared activation row r of the scratch.
struct legacy_activations {
    const std::byte* scratch;
    std::size_t row_bytes;

    const std::byte* row(std::size_t r) const noexcept { return scratch + r * row_bytes; }
};

// One output: the row's factor applied and the result stored or added, with an explicit
// fused multiply-add so that no compiler contraction makes a row's result depend on
// the tile it was inlined for.
inline void legacy_store(const matrix_product<float>& p, std::size_t row, std::size_t o, float sum) noexcept {
    const float scale = p.row_scale ? p.row_scale[row] : 1.0f;
    float& out = p.out[row * p.out_stride + o];
    out = p.accumulate ? std::fma(sum, scale, out) : sum * scale;
}

// Where a block type's fields start (bytes; all even).
template <class Block>
struct legacy_fields {
    static constexpr std::size_t size = sizeof(Block);
    static constexpr std::size_t m = 2;  // _1 types only
    static constexpr std::size_t qh = legacy_format<Block>::has_min ? 4 : 2;  // Q5 only
    static constexpr std::size_t qs = offsetof(Block, qs);
};

// The scalar kernel: for each output and row, dot_legacy's arithmetic in its order.
template <class Block>
struct legacy_scalar {
    static constexpr std::size_t max_tile = 1;
    template <std::size_t Tile>
    static void tile(const legacy_matrix<Block>& m, const matrix_product<float>& p, const legacy_activations& x,
                     std::size_t o, std::size_t row) noexcept {
        const std::size_t nb = m.blocks_per_row();
        const Block* w = m.blocks + o * nb;
        for (std::size_t r = row; r < row + Tile; ++r) {
            float sum = 0;
            for (std::size_t b = 0; b < nb; ++b) {
                const std::byte* group = x.row(r) + b / legacy_group_blocks * legacy_group_bytes;
                const std::size_t k = b % legacy_group_blocks;
                std::int8_t q[legacy_block_values];
                std::memcpy(q, group + 16 * k, 16);
                std::memcpy(q + 16, group + 64 + 16 * k, 16);
                float dx = 0, sx = 0;
                std::memcpy(&dx, group + 128 + 16 * k, sizeof dx);
                if constexpr (legacy_format<Block>::has_min) {
                    std::memcpy(&sx, group + 192 + 16 * k, sizeof sx);
                    sx *= 4;  // exact
                }
                sum += block_dot(w[b], q, dx, sx);
            }
            legacy_store(p, r, o, sum);
        }
    }
};

// How far ahead of the group being read the weights are asked for (bytes; measured).
#ifndef LG_PF
#define LG_PF 1024
#endif
inline constexpr std::size_t legacy_prefetch_distance = LG_PF;

// step(blocks, g) over a weight row's groups of 4 blocks; a short last group (in_dim
// not a multiple of 128) runs on a zero-padded copy, whose missing blocks meet the
// activations' zero padding. The first tile of rows prefetches (the later ones find
// the row in L1).
template <class Block, class Step>
inline void legacy_groups(const Block* w, std::size_t nb, bool prefetch, Step&& step) noexcept {
    const std::size_t full = nb / legacy_group_blocks, rest = nb % legacy_group_blocks;
    for (std::size_t g = 0; g < full; ++g) {
        const Block* group = w + g * legacy_group_blocks;
        if (LG_PF && prefetch) {
            // A group spans at most 96 bytes: two lines.
            const char* ahead = reinterpret_cast<const char*>(group) + legacy_prefetch_distance;
            __builtin_prefetch(ahead, 0, 3);
            __builtin_prefetch(ahead + sizeof(Block) * legacy_group_blocks - 1, 0, 3);
        }
        step(group, g);
    }
    if (rest != 0) {
        Block padded[legacy_group_blocks] = {};
        std::memcpy(padded, w + full * legacy_group_blocks, rest * sizeof(Block));
        step(padded, full);
    }
}

#if defined(KVDECODE_QUANT_AVX2)
template <class Block>
struct legacy_avx2 {
    using F = legacy_format<Block>;
    using L = legacy_fields<Block>;
    static constexpr std::size_t max_tile = 8;

    // Bytes of a 32-byte load at a pair's first block -> float16 d (and m) per lane, as
    // [d0 x4, d1 x4 | m0 x4, m1 x4] after the 64-bit lanes are put in order.
    static __m256i header_index() noexcept {
        alignas(32) std::int8_t idx[32];
        for (int lane = 0; lane < 2; ++lane) {
            const int base = lane == 0 ? 0 : int(L::size) - 16;
            for (int i = 0; i < 4; ++i) {
                idx[16 * lane + 2 * i] = static_cast<std::int8_t>(base), idx[16 * lane + 2 * i + 1] = static_cast<std::int8_t>(base + 1);
                const int mb = F::has_min ? base + int(L::m) : -128;
                idx[16 * lane + 8 + 2 * i] = static_cast<std::int8_t>(mb);
                idx[16 * lane + 9 + 2 * i] = static_cast<std::int8_t>(F::has_min ? mb + 1 : -128);
            }
        }
        return _mm256_load_si256(reinterpret_cast<const __m256i*>(idx));
    }
    // The same load -> byte j of lane k (block k's value j, or 16 + j) gets block k's qh
    // byte holding its fifth bit.
    static __m256i high_index(int half) noexcept {
        alignas(32) std::int8_t idx[32];
        for (int lane = 0; lane < 2; ++lane) {
            const int base = (lane == 0 ? 0 : int(L::size) - 16) + int(L::qh) + 2 * half;
            for (int j = 0; j < 16; ++j) idx[16 * lane + j] = static_cast<std::int8_t>(base + j / 8);
        }
        return _mm256_load_si256(reinterpret_cast<const __m256i*>(idx));
    }

    template <std::size_t Tile>
    static void tile(const legacy_matrix<Block>& m, const matrix_product<float>& p, const legacy_activations& x,
                     std::size_t o, std::size_t row) noexcept {
        const std::size_t nb = m.blocks_per_row();
        const std::byte* xr[Tile];
        __m256 acc[Tile];
        #pragma GCC unroll 16
        for (std::size_t r = 0; r < Tile; ++r) xr[r] = x.row(row + r), acc[r] = _mm256_setzero_ps();
        const __m256i nibble = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
        const __m256i head_idx = header_index();
        [[maybe_unused]] const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
        [[maybe_unused]] const __m256i fifth = _mm256_set1_epi8(0x10);
        [[maybe_unused]] __m256i high_idx[2] = {};
        if constexpr (F::bits == 5) high_idx[0] = high_index(0), high_idx[1] = high_index(1);

        legacy_groups(m.blocks + o * nb, nb, row == 0, [&](const Block* w, std::size_t g) {
            for (std::size_t half = 0; half < 2; ++half) {
                const auto* a = reinterpret_cast<const std::byte*>(w + 2 * half);
                const __m256i qs = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + L::qs))),
                    _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + L::size + L::qs)), 1);
                __m256i lo = _mm256_and_si256(qs, nibble), hi = _mm256_and_si256(_mm256_srli_epi16(qs, 4), nibble);
                const __m256i head = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
                if constexpr (F::bits == 5) {
                    auto add_fifth = [&](__m256i q, __m256i idx) {
                        const __m256i spread = _mm256_and_si256(_mm256_shuffle_epi8(head, idx), bit);
                        return _mm256_or_si256(q, _mm256_and_si256(_mm256_cmpeq_epi8(spread, bit), fifth));
                    };
                    lo = add_fifth(lo, high_idx[0]);
                    hi = add_fifth(hi, high_idx[1]);
                }
                const __m256i halves = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(head, head_idx), 0xd8);
                const __m256 dw = _mm256_cvtph_ps(_mm256_castsi256_si128(halves));
                [[maybe_unused]] __m256 mw;
                if constexpr (F::has_min) mw = _mm256_cvtph_ps(_mm256_extracti128_si256(halves, 1));
                const std::size_t at = g * legacy_group_bytes + 32 * half;
                #pragma GCC unroll 16
                for (std::size_t r = 0; r < Tile; ++r) {
                    const std::byte* xg = xr[r] + at;
                    const __m256i xlo = _mm256_load_si256(reinterpret_cast<const __m256i*>(xg));
                    const __m256i xhi = _mm256_load_si256(reinterpret_cast<const __m256i*>(xg + 64));
                    const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi));
                    __m256i sums = _mm256_madd_epi16(pairs, ones);
                    if constexpr (!F::has_min)
                        sums = _mm256_add_epi32(sums, _mm256_load_si256(reinterpret_cast<const __m256i*>(xg + 192)));
                    const __m256 scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(sums), _mm256_load_ps(reinterpret_cast<const float*>(xg + 128)));
                    acc[r] = _mm256_fmadd_ps(scaled, dw, acc[r]);
                    if constexpr (F::has_min)
                        acc[r] = _mm256_fmadd_ps(mw, _mm256_load_ps(reinterpret_cast<const float*>(xg + 192)), acc[r]);
                }
            }
        });
        #pragma GCC unroll 16
        for (std::size_t r = 0; r < Tile; ++r) {
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
            s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            s = _mm_add_ss(s, _mm_movehdup_ps(s));
            legacy_store(p, row + r, o, _mm_cvtss_f32(s));
        }
    }
};
#endif

#if defined(KVDECODE_QUANT_AVX512)
template <class Block>
struct legacy_avx512 {
    using F = legacy_format<Block>;
    using L = legacy_fields<Block>;
    static constexpr std::size_t max_tile = 8;
    // A group's bytes as two 64-byte loads, the second masked to the group's end.
    static constexpr std::size_t second_bytes = legacy_group_blocks * L::size - 64;

    // 16-bit lanes of the two loads (0..31 the first, 32..63 the second) to gather.
    static __m512i word_index(const std::array<std::size_t, 32>& words) noexcept {
        alignas(64) std::int16_t idx[32];
        for (std::size_t i = 0; i < 32; ++i) idx[i] = static_cast<std::int16_t>(words[i]);
        return _mm512_load_si512(idx);
    }
    // Block k's 8 qs words at 8k.
    static __m512i qs_index() noexcept {
        std::array<std::size_t, 32> w{};
        for (std::size_t i = 0; i < 32; ++i) w[i] = (i / 8 * L::size + L::qs) / 2 + i % 8;
        return word_index(w);
    }
    // Block k's d in 4k .. 4k + 3, m (the _1 types) in 16 + 4k ...
    static __m512i header_index() noexcept {
        std::array<std::size_t, 32> w{};
        for (std::size_t i = 0; i < 16; ++i) w[i] = i / 4 * L::size / 2;
        for (std::size_t i = 16; i < 32; ++i) w[i] = F::has_min ? ((i - 16) / 4 * L::size + L::m) / 2 : 0;
        return word_index(w);
    }
    // Block k's qh words: the low ones at k, the high ones at 4 + k (one 64-bit mask each).
    static __m512i high_index() noexcept {
        std::array<std::size_t, 32> w{};
        for (std::size_t k = 0; k < 4; ++k) w[k] = (k * L::size + L::qh) / 2, w[4 + k] = w[k] + 1;
        return word_index(w);
    }

    template <std::size_t Tile>
    static void tile(const legacy_matrix<Block>& m, const matrix_product<float>& p, const legacy_activations& x,
                     std::size_t o, std::size_t row) noexcept {
        const std::size_t nb = m.blocks_per_row();
        const std::byte* xr[Tile];
        __m512 acc[Tile];
        #pragma GCC unroll 16
        for (std::size_t r = 0; r < Tile; ++r) xr[r] = x.row(row + r), acc[r] = _mm512_setzero_ps();
        const __m512i nibble = _mm512_set1_epi8(0x0f);
        const __m512i qs_idx = qs_index(), head_idx = header_index();
        [[maybe_unused]] __m512i high_idx{};
        if constexpr (F::bits == 5) high_idx = high_index();
        constexpr __mmask64 second = (__mmask64{1} << second_bytes) - 1;

        legacy_groups(m.blocks + o * nb, nb, row == 0, [&](const Block* w, std::size_t g) {
            const auto* a = reinterpret_cast<const std::byte*>(w);
            const __m512i z0 = _mm512_loadu_si512(a), z1 = _mm512_maskz_loadu_epi8(second, a + 64);
            const __m512i qs = _mm512_permutex2var_epi16(z0, qs_idx, z1);
            __m512i lo = _mm512_and_si512(qs, nibble), hi = _mm512_and_si512(_mm512_srli_epi16(qs, 4), nibble);
            if constexpr (F::bits == 5) {
                const __m128i bits = _mm512_castsi512_si128(_mm512_permutex2var_epi16(z0, high_idx, z1));
                const __m512i fifth = _mm512_set1_epi8(0x10);
                lo = _mm512_mask_add_epi8(lo, _cvtu64_mask64(static_cast<std::uint64_t>(_mm_cvtsi128_si64(bits))), lo, fifth);
                hi = _mm512_mask_add_epi8(hi, _cvtu64_mask64(static_cast<std::uint64_t>(_mm_extract_epi64(bits, 1))), hi, fifth);
            }
            const __m512i head = _mm512_permutex2var_epi16(z0, head_idx, z1);
            const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(head));
            [[maybe_unused]] __m512 mw;
            if constexpr (F::has_min) mw = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(head, 1));
            const std::size_t at = g * legacy_group_bytes;
            #pragma GCC unroll 16
            for (std::size_t r = 0; r < Tile; ++r) {
                const std::byte* xg = xr[r] + at;
                const __m512i xlo = _mm512_load_si512(xg), xhi = _mm512_load_si512(xg + 64);
                const __m512i start = F::has_min ? _mm512_setzero_si512() : _mm512_load_si512(xg + 192);
#if defined(KVDECODE_QUANT_AVX512_VNNI)
                const __m512i sums = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, lo, xlo), hi, xhi);
#else
                const __m512i pairs = _mm512_add_epi16(_mm512_maddubs_epi16(lo, xlo), _mm512_maddubs_epi16(hi, xhi));
                const __m512i sums = _mm512_add_epi32(start, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
#endif
                const __m512 scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(sums), _mm512_load_ps(reinterpret_cast<const float*>(xg + 128)));
                acc[r] = _mm512_fmadd_ps(scaled, dw, acc[r]);
                if constexpr (F::has_min)
                    acc[r] = _mm512_fmadd_ps(mw, _mm512_load_ps(reinterpret_cast<const float*>(xg + 192)), acc[r]);
            }
        });
        #pragma GCC unroll 16
        for (std::size_t r = 0; r < Tile; ++r) {
            legacy_store(p, row + r, o, _mm512_reduce_add_ps(acc[r]));
        }
    }
};
#endif

template <class Isa, class Block, std::size_t Tile>
void legacy_remainder_tile(const legacy_matrix<Block>& m, const matrix_product<float>& p, const legacy_activations& x,
                           std::size_t o, std::size_t row, std::size_t rows) noexcept {
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
    const legacy_activations x{scratch, activation_row_bytes<Block>(m.in_dim)};
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
