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
// The kernels take a group of 8 blocks per step. A block's qs byte j holds value j in
// its low nibble and value 16 + j in its high one, so the 8 blocks' qs bytes 0..7
// (and 8..15), side by side in a 64-byte register, masked give values 0..7 (8..15)
// of the 8 blocks and shifted give values 16..23 (24..31): the weights are not
// reordered, the activations are. prepare lays each row out to match, per group of
// 8 blocks (384 bytes; the last group of a row zero-padded):
//   [0, 64)     int8   block k's activation quants 0..7 at 8k
//   [64, 128)   int8   quants 16..23 at 8k
//   [128, 192)  int8   quants 8..15 at 8k
//   [192, 256)  int8   quants 24..31 at 8k
//   [256, 320)  float  block k's Q8_0 scale d_x in lanes 2k and 2k + 1
//   [320, 384)  _0: int32, lane 2k + i: -offset * (the 16 quants of block k that int32
//               lane 2k + i of the four dot products covers: 4i .. 4i + 3 of each
//               part); _1: float, block k's Q8_1 s / 2 in lanes 2k and 2k + 1 (exact).
// So the unsigned quants (0 .. 31, the offset not taken off) go straight into the
// unsigned operand of vpdpbusd / vpmaddubsw and the offset is folded in exactly:
// sum (q - o) x = sum q x - o sum x, per int32 lane, in integers. Each block's exact
// sum lies in 2 int32 lanes, so per step and row one conversion, one multiply by d_x
// and one fused multiply-add by d_w (+ one by m_w for _1) cover 8 blocks, and the
// horizontal sum happens once per output. Only d_w * d_x products and the float sum
// round (|q| <= 31, |x| <= 127: 16-bit pair sums of maddubs, and four of them added,
// cannot saturate: 4 * 2 * 31 * 127 < 32768).
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

inline constexpr std::size_t legacy_group_blocks = 8;    // blocks per kernel step
inline constexpr std::size_t legacy_group_bytes = 384;   // prepared activation bytes per group
inline constexpr std::size_t legacy_scales_at = 256, legacy_aux_at = 320;  // within a group

// Where activation quant v (0..31) of a group's block k sits in the group.
constexpr std::size_t legacy_quant_at(std::size_t k, std::size_t v) noexcept {
    constexpr std::size_t part_at[4] = {0, 128, 64, 192};  // values 0..7, 8..15, 16..23, 24..31
    return part_at[v / 8] + 8 * k + v % 8;
}

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
        for (std::size_t part = 0; part < 4; ++part) std::memcpy(group + legacy_quant_at(k, 8 * part), q + 8 * part, 8);
        const float scales[2] = {d, d};
        std::memcpy(group + legacy_scales_at + 8 * k, scales, sizeof scales);
        if constexpr (F::has_min) {
            const float s = f16_to_f32(q8_1_block_sum(xb, legacy_block_values, q)) / 2;
            const float sums[2] = {s, s};
            std::memcpy(group + legacy_aux_at + 8 * k, sums, sizeof sums);
        } else {
            std::int32_t corr[2];
            for (std::size_t i = 0; i < 2; ++i) {
                std::int32_t sum = 0;
                for (std::size_t part = 0; part < 4; ++part)
                    for (std::size_t t = 0; t < 4; ++t) sum += q[8 * part + 4 * i + t];
                corr[i] = -F::offset * sum;
            }
            std::memcpy(group + legacy_aux_at + 8 * k, corr, sizeof corr);
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

// Shuffle and permute indices, built at compile time and loaded as vectors.
template <class T, std::size_t N>
struct alignas(64) legacy_index {
    T v[N];
};

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
    static constexpr std::size_t max_tile = 1, streams = 1;
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
                for (std::size_t part = 0; part < 4; ++part) std::memcpy(q + 8 * part, group + legacy_quant_at(k, 8 * part), 8);
                float dx = 0, sx = 0;
                std::memcpy(&dx, group + legacy_scales_at + 8 * k, sizeof dx);
                if constexpr (legacy_format<Block>::has_min) {
                    std::memcpy(&sx, group + legacy_aux_at + 8 * k, sizeof sx);
                    sx *= 2;  // exact
                }
                sum += block_dot(w[b], q, dx, sx);
            }
            legacy_store(p, r, o, sum);
        }
    }
};

// How far ahead of the group being read the weights are asked for (bytes). Compared
// with none and 4 KiB on a shared, noisy machine: no clear winner; kept short.
inline constexpr std::size_t legacy_prefetch_distance = 1024;

// step(blocks, g) over a weight row's groups of 8 blocks; a short last group (in_dim
// not a multiple of 256) runs on a zero-padded copy, whose missing blocks meet the
// activations' zero padding. The first tile of rows prefetches (the later ones find
// the row in L1).
// (Inlined with the step: the accumulators must stay in registers.)
template <class Block>
[[gnu::always_inline]] inline void legacy_prefetch(const Block* group) noexcept {
    // A group spans at most 192 bytes: three or four lines.
    const char* ahead = reinterpret_cast<const char*>(group) + legacy_prefetch_distance;
    for (std::size_t at = 0; at < sizeof(Block) * legacy_group_blocks; at += 64) __builtin_prefetch(ahead + at, 0, 3);
}
template <class Block, class Step>
[[gnu::always_inline]] inline void legacy_groups(const Block* w, std::size_t nb, bool prefetch, Step&& step) noexcept {
    const std::size_t full = nb / legacy_group_blocks, rest = nb % legacy_group_blocks;
    for (std::size_t g = 0; g < full; ++g) {
        const Block* group = w + g * legacy_group_blocks;
        if (prefetch) legacy_prefetch(group);
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
    static constexpr std::size_t max_tile = 8, streams = 4;

    using index = legacy_index<std::int8_t, 32>;
    static constexpr index bytes(const std::array<int, 32>& v) noexcept {
        index idx{};
        for (std::size_t i = 0; i < 32; ++i) idx.v[i] = static_cast<std::int8_t>(v[i]);
        return idx;
    }
    static __m256i load(const index& idx) noexcept { return _mm256_load_si256(reinterpret_cast<const __m256i*>(idx.v)); }
    // Shuffles of the 32 bytes at a block pair's first block (the first block in lane 0,
    // the second at size - 16 in lane 1) putting the pair's float16 d twice at dword
    // `slot` of its lane and m twice at dword 2 + slot; -128 (zero) elsewhere.
    static constexpr index header_index(int slot) noexcept {
        std::array<int, 32> v;
        v.fill(-128);
        for (int lane = 0; lane < 2; ++lane) {
            const int base = lane == 0 ? 0 : int(L::size) - 16;
            for (int i = 0; i < 4; ++i) {
                v[16 * lane + 4 * slot + i] = base + i % 2;
                if (F::has_min) v[16 * lane + 8 + 4 * slot + i] = base + int(L::m) + i % 2;
            }
        }
        return bytes(v);
    }
    // The same 32 bytes -> the pair's qh at dword `slot` of its lane.
    static constexpr index qh_index(int slot) noexcept {
        std::array<int, 32> v;
        v.fill(-128);
        for (int lane = 0; lane < 2; ++lane)
            for (int i = 0; i < 4; ++i) v[16 * lane + 4 * slot + i] = (lane == 0 ? 0 : int(L::size) - 16) + int(L::qh) + i;
        return bytes(v);
    }
    // Lane 0 [qh_A, qh_B], lane 1 [qh_C, qh_D] -> byte j of block k's 8 bytes gets its
    // qh byte `part`.
    static constexpr index spread_index(int part) noexcept {
        std::array<int, 32> v;
        for (int i = 0; i < 32; ++i) v[i] = (i % 16) / 8 * 4 + part;
        return bytes(v);
    }

    // As legacy_avx512::tile: Tile activation rows against Outputs weight rows.
    template <std::size_t Tile, std::size_t Outputs = 1>
    static void tile(const legacy_matrix<Block>& m, const matrix_product<float>& p, const legacy_activations& x,
                     std::size_t o, std::size_t row, std::size_t apart = 0) noexcept {
        const std::size_t nb = m.blocks_per_row();
        const std::byte* xr[Tile];
        __m256 acc[Outputs][Tile];
#pragma GCC unroll 16
        for (std::size_t r = 0; r < Tile; ++r) {
            xr[r] = x.row(row + r);
#pragma GCC unroll 4
            for (std::size_t k = 0; k < Outputs; ++k) acc[k][r] = _mm256_setzero_ps();
        }
        const __m256i nibble = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
        static constexpr index head_a_index = header_index(0), head_c_index = header_index(1);
        const __m256i head_a = load(head_a_index), head_c = load(head_c_index);
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        [[maybe_unused]] __m256i qh_ab{}, qh_cd{}, spread[4] = {};
        if constexpr (F::bits == 5) {
            static constexpr index qh_ab_index = qh_index(0), qh_cd_index = qh_index(2);
            static constexpr index spread_indices[4] = {spread_index(0), spread_index(1), spread_index(2), spread_index(3)};
            qh_ab = load(qh_ab_index), qh_cd = load(qh_cd_index);
            for (int part = 0; part < 4; ++part) spread[part] = load(spread_indices[part]);
        }
        const std::size_t stream_blocks = apart * nb;  // from one output's row to the next one's

        legacy_groups(m.blocks + o * nb, nb, row == 0, [&](const Block* first, std::size_t g) __attribute__((always_inline)) {
#pragma GCC unroll 4
            for (std::size_t k = 1; k < Outputs; ++k)
                if (row == 0) legacy_prefetch(first + k * stream_blocks);  // legacy_groups asks for the first stream's
            for (std::size_t quarter = 0; quarter < 2; ++quarter) {
                // Blocks A, B, C, D of this half of the group, one output at a time.
                __m256i lo1[Outputs], hi1[Outputs], lo2[Outputs], hi2[Outputs];
                __m256 dw[Outputs];
                [[maybe_unused]] __m256 mw[Outputs];
#pragma GCC unroll 4
                for (std::size_t k = 0; k < Outputs; ++k) {
                    const auto* a = reinterpret_cast<const std::byte*>(first + k * stream_blocks + 4 * quarter);
                    auto load16 = [&](std::size_t at) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + at)); };
                    const __m256i ac = _mm256_inserti128_si256(_mm256_castsi128_si256(load16(L::qs)), load16(2 * L::size + L::qs), 1);
                    const __m256i bd = _mm256_inserti128_si256(_mm256_castsi128_si256(load16(L::size + L::qs)), load16(3 * L::size + L::qs), 1);
                    const __m256i q1 = _mm256_unpacklo_epi64(ac, bd), q2 = _mm256_unpackhi_epi64(ac, bd);  // qs 0..7, 8..15
                    lo1[k] = _mm256_and_si256(q1, nibble), hi1[k] = _mm256_and_si256(_mm256_srli_epi16(q1, 4), nibble);
                    lo2[k] = _mm256_and_si256(q2, nibble), hi2[k] = _mm256_and_si256(_mm256_srli_epi16(q2, 4), nibble);
                    const __m256i h_ab = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
                    const __m256i h_cd = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 2 * L::size));
                    if constexpr (F::bits == 5) {
                        const __m256i qh = _mm256_permutevar8x32_epi32(
                            _mm256_or_si256(_mm256_shuffle_epi8(h_ab, qh_ab), _mm256_shuffle_epi8(h_cd, qh_cd)),
                            _mm256_setr_epi32(0, 4, 0, 0, 2, 6, 0, 0));
                        const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
                        auto add_fifth = [&](__m256i q, int part) {
                            const __m256i bits = _mm256_and_si256(_mm256_shuffle_epi8(qh, spread[part]), bit);
                            return _mm256_or_si256(q, _mm256_and_si256(_mm256_cmpeq_epi8(bits, bit), _mm256_set1_epi8(0x10)));
                        };
                        lo1[k] = add_fifth(lo1[k], 0), lo2[k] = add_fifth(lo2[k], 1), hi1[k] = add_fifth(hi1[k], 2), hi2[k] = add_fifth(hi2[k], 3);
                    }
                    const __m256i halves = _mm256_permutevar8x32_epi32(
                        _mm256_or_si256(_mm256_shuffle_epi8(h_ab, head_a), _mm256_shuffle_epi8(h_cd, head_c)), order);
                    dw[k] = _mm256_cvtph_ps(_mm256_castsi256_si128(halves));
                    if constexpr (F::has_min) mw[k] = _mm256_cvtph_ps(_mm256_extracti128_si256(halves, 1));
                    // This output's products now, while its quants are in registers (decoding
                    // all outputs first spilled them with 4 streams: AVX2 has 16 registers).
                    const std::size_t at = g * legacy_group_bytes + 32 * quarter;
#pragma GCC unroll 16
                    for (std::size_t r = 0; r < Tile; ++r) {
                        const std::byte* xg = xr[r] + at;
                        auto xq = [&](std::size_t part) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(xg + 64 * part)); };
                        const auto* aux = reinterpret_cast<const float*>(xg + legacy_aux_at);
                        const __m256 x_scales = _mm256_load_ps(reinterpret_cast<const float*>(xg + legacy_scales_at));
                        const __m256i pairs = _mm256_add_epi16(
                            _mm256_add_epi16(_mm256_maddubs_epi16(lo1[k], xq(0)), _mm256_maddubs_epi16(hi1[k], xq(1))),
                            _mm256_add_epi16(_mm256_maddubs_epi16(lo2[k], xq(2)), _mm256_maddubs_epi16(hi2[k], xq(3))));
                        __m256i sums = _mm256_madd_epi16(pairs, ones);
                        if constexpr (!F::has_min) sums = _mm256_add_epi32(sums, _mm256_load_si256(reinterpret_cast<const __m256i*>(aux)));
                        const __m256 scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(sums), x_scales);
                        acc[k][r] = _mm256_fmadd_ps(scaled, dw[k], acc[k][r]);
                        if constexpr (F::has_min) acc[k][r] = _mm256_fmadd_ps(mw[k], _mm256_load_ps(aux), acc[k][r]);
                    }
                }
            }
        });
#pragma GCC unroll 16
        for (std::size_t r = 0; r < Tile; ++r)
#pragma GCC unroll 4
            for (std::size_t k = 0; k < Outputs; ++k) {
                __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[k][r]), _mm256_extractf128_ps(acc[k][r], 1));
                s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                s = _mm_add_ss(s, _mm_movehdup_ps(s));
                legacy_store(p, row + r, o + k * apart, _mm_cvtss_f32(s));
            }
    }
};
#endif

#if defined(KVDECODE_QUANT_AVX512)
template <class Block>
struct legacy_avx512 {
    using F = legacy_format<Block>;
    using L = legacy_fields<Block>;
    static constexpr std::size_t max_tile = 8, streams = 4;
    // Half a group (4 blocks) as two 64-byte loads, the second masked to its end.
    static constexpr std::size_t second_bytes = 4 * L::size - 64;

    // 16-bit lanes of two registers (0..31 the first, 32..63 the second) to gather: a
    // byte permute where the target has VBMI (one instruction; vpermt2w is three).
#if defined(__AVX512VBMI__)
    using index = legacy_index<std::uint8_t, 64>;
    static constexpr index word_index(const std::array<std::size_t, 32>& words) noexcept {
        index idx{};
        for (std::size_t i = 0; i < 32; ++i)
            idx.v[2 * i] = static_cast<std::uint8_t>(2 * words[i]), idx.v[2 * i + 1] = static_cast<std::uint8_t>(2 * words[i] + 1);
        return idx;
    }
#else
    using index = legacy_index<std::int16_t, 32>;
    static constexpr index word_index(const std::array<std::size_t, 32>& words) noexcept {
        index idx{};
        for (std::size_t i = 0; i < 32; ++i) idx.v[i] = static_cast<std::int16_t>(words[i]);
        return idx;
    }
#endif
    static __m512i load(const index& idx) noexcept { return _mm512_load_si512(idx.v); }
    static __m512i gather_words(__m512i first, __m512i idx, __m512i second) noexcept {
#if defined(__AVX512VBMI__)
        return _mm512_permutex2var_epi8(first, idx, second);
#else
        return _mm512_permutex2var_epi16(first, idx, second);
#endif
    }
    // Whether the 4 blocks' d (and m) of each half lie in its first 64 bytes: then one
    // permute of the halves' first loads gathers all 8 blocks' scales.
    static constexpr bool scales_in_first = 3 * L::size + (F::has_min ? L::m : 0) + 2 <= 64;
    // The 4 blocks' qs bytes 0..7 (8 bytes each) in words 0..15, bytes 8..15 in 16..31.
    static constexpr index qs_index() noexcept {
        std::array<std::size_t, 32> w{};
        for (std::size_t i = 0; i < 32; ++i) w[i] = (i % 16 / 4 * L::size + L::qs) / 2 + i / 16 * 4 + i % 4;
        return word_index(w);
    }
    // Half h's 4 blocks' d (words 2k, 2k + 1, k = 4h + block) and m (16 + 2k, ...), from
    // that half's loads; with scales_in_first, both halves' from their first loads.
    static constexpr index header_index(std::size_t h) noexcept {
        std::array<std::size_t, 32> w{};
        for (std::size_t hh = 0; hh < 2; ++hh) {
            if (!scales_in_first && hh != h) continue;
            const std::size_t source = scales_in_first ? 32 * hh : 0;
            for (std::size_t j = 0; j < 4; ++j) {
                const std::size_t k = 4 * hh + j;
                w[2 * k] = w[2 * k + 1] = source + j * L::size / 2;
                w[16 + 2 * k] = w[17 + 2 * k] = source + (j * L::size + L::m) / 2;
            }
        }
        return word_index(w);
    }
    // A 5-bit block's fifth bits: with BITALG, its leading 8 bytes (d, qh; or d, m, qh)
    // go to qword k of one register, where one bit shuffle per part picks that part's
    // mask and one permute the d (and m) of all 8 blocks. Without it, the qh go to dwords
    // 4h + j, and are transposed to masks through general registers.
#if defined(__AVX512BITALG__)
    static constexpr bool lead_qwords = F::bits == 5;
#else
    static constexpr bool lead_qwords = false;
#endif
    // Half h's 4 blocks' qh, or with lead_qwords their leading 4 words.
    static constexpr index qh_index(std::size_t h) noexcept {
        std::array<std::size_t, 32> w{};
        for (std::size_t j = 0; j < 4; ++j) {
            if (lead_qwords)
                for (std::size_t i = 0; i < 4; ++i) w[4 * (4 * h + j) + i] = j * L::size / 2 + i;
            else
                w[8 * h + 2 * j] = (j * L::size + L::qh) / 2, w[8 * h + 2 * j + 1] = w[8 * h + 2 * j] + 1;
        }
        return word_index(w);
    }
    // Bit selectors for vpshufbitqmb: byte 8k + j of part p's mask is bit 8p + j of block
    // k's qh, in qword k.
    static constexpr legacy_index<std::uint8_t, 64> fifth_bit_index(std::size_t part) noexcept {
        legacy_index<std::uint8_t, 64> idx{};
        for (std::size_t i = 0; i < 64; ++i) idx.v[i] = static_cast<std::uint8_t>(8 * (L::qh + part) + i % 8);
        return idx;
    }
    // The leading qwords -> header_index's order: block k's d at words 2k, 2k + 1, m at 16 + 2k, 17 + 2k.
    static constexpr index lead_header_index() noexcept {
        std::array<std::size_t, 32> w{};
        for (std::size_t k = 0; k < 8; ++k) {
            w[2 * k] = w[2 * k + 1] = 4 * k;
            w[16 + 2 * k] = w[17 + 2 * k] = 4 * k + L::m / 2;
        }
        return word_index(w);
    }

    // Tile activation rows against Outputs weight rows o, o + apart, ...: each weight
    // group is decoded once per output and each activation group loaded once for all of
    // them. Every output is summed in the same order whatever Tile and Outputs are.
    template <std::size_t Tile, std::size_t Outputs = 1>
    static void tile(const legacy_matrix<Block>& m, const matrix_product<float>& p, const legacy_activations& x,
                     std::size_t o, std::size_t row, std::size_t apart = 0) noexcept {
        const std::size_t nb = m.blocks_per_row();
        const std::byte* xr[Tile];
        __m512 acc[Outputs][Tile];
#pragma GCC unroll 16
        for (std::size_t r = 0; r < Tile; ++r) {
            xr[r] = x.row(row + r);
#pragma GCC unroll 4
            for (std::size_t k = 0; k < Outputs; ++k) acc[k][r] = _mm512_setzero_ps();
        }
        const __m512i nibble = _mm512_set1_epi8(0x0f);
        static constexpr index qs_indices = qs_index(), head0_indices = header_index(0), head1_indices = header_index(1);
        const __m512i qs_idx = load(qs_indices), head0 = load(head0_indices), head1 = load(head1_indices);
        [[maybe_unused]] __m512i qh0{}, qh1{};
        if constexpr (F::bits == 5) {
            static constexpr index qh0_indices = qh_index(0), qh1_indices = qh_index(1);
            qh0 = load(qh0_indices), qh1 = load(qh1_indices);
        }
        constexpr __mmask64 second = (__mmask64{1} << second_bytes) - 1;
        const std::size_t stream_blocks = apart * nb;  // from one output's row to the next one's

        legacy_groups(m.blocks + o * nb, nb, row == 0, [&](const Block* first, std::size_t g) __attribute__((always_inline)) {
            // The 8 blocks of each output as unsigned 4/5-bit values: qs bytes 0..7 of
            // every block in lo1 (low nibbles) and hi1 (high), bytes 8..15 in lo2, hi2.
            __m512i lo1[Outputs], hi1[Outputs], lo2[Outputs], hi2[Outputs];
            __m512 dw[Outputs];
            [[maybe_unused]] __m512 mw[Outputs];
#pragma GCC unroll 4
            for (std::size_t k = 0; k < Outputs; ++k) {
                const Block* w = first + k * stream_blocks;
                if (k != 0 && row == 0) legacy_prefetch(w);  // legacy_groups asks for the first stream's
                const auto* a = reinterpret_cast<const std::byte*>(w);
                const auto* b = reinterpret_cast<const std::byte*>(w + 4);
                const __m512i a0 = _mm512_loadu_si512(a), a1 = _mm512_maskz_loadu_epi8(second, a + 64);
                const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_maskz_loadu_epi8(second, b + 64);
                const __m512i qa = gather_words(a0, qs_idx, a1), qb = gather_words(b0, qs_idx, b1);
                const __m512i q1 = _mm512_inserti64x4(qa, _mm512_castsi512_si256(qb), 1);  // qs bytes 0..7 of the 8 blocks
                const __m512i q2 = _mm512_shuffle_i64x2(qa, qb, 0xee);                      // bytes 8..15
                lo1[k] = _mm512_and_si512(q1, nibble), hi1[k] = _mm512_and_si512(_mm512_srli_epi16(q1, 4), nibble);
                lo2[k] = _mm512_and_si512(q2, nibble), hi2[k] = _mm512_and_si512(_mm512_srli_epi16(q2, 4), nibble);
                __m512i head;
                if constexpr (lead_qwords) {
#if defined(__AVX512BITALG__)
                    static constexpr legacy_index<std::uint8_t, 64> fifth_bits[4] = {fifth_bit_index(0), fifth_bit_index(1),
                                                                                      fifth_bit_index(2), fifth_bit_index(3)};
                    static constexpr index lead_head_indices = lead_header_index();
                    const __m512i lead = _mm512_mask_blend_epi16(0xffff0000u, gather_words(a0, qh0, a1), gather_words(b0, qh1, b1));
                    auto add_fifth = [&](__m512i q, std::size_t part) {
                        const __mmask64 bits = _mm512_bitshuffle_epi64_mask(lead, _mm512_load_si512(fifth_bits[part].v));
                        return _mm512_mask_add_epi8(q, bits, q, _mm512_set1_epi8(0x10));
                    };
                    lo1[k] = add_fifth(lo1[k], 0), lo2[k] = add_fifth(lo2[k], 1), hi1[k] = add_fifth(hi1[k], 2), hi2[k] = add_fifth(hi2[k], 3);
                    head = gather_words(lead, load(lead_head_indices), lead);
#endif
                } else {
                    if constexpr (F::bits == 5) {
                        // qh of the 8 blocks as dwords, transposed to 4 masks: byte `part` of every block's qh.
                        __m512i qh = _mm512_mask_blend_epi16(0xff00u, gather_words(a0, qh0, a1), gather_words(b0, qh1, b1));
                        qh = _mm512_shuffle_epi8(qh, _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)));
                        qh = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 0, 0, 0, 0, 0, 0, 0, 0), qh);
                        const __m128i parts01 = _mm512_castsi512_si128(qh), parts23 = _mm512_extracti32x4_epi32(qh, 1);
                        auto add_fifth = [&](__m512i q, long long bits) {
                            return _mm512_mask_add_epi8(q, _cvtu64_mask64(static_cast<std::uint64_t>(bits)), q, _mm512_set1_epi8(0x10));
                        };
                        lo1[k] = add_fifth(lo1[k], _mm_cvtsi128_si64(parts01)), lo2[k] = add_fifth(lo2[k], _mm_extract_epi64(parts01, 1));
                        hi1[k] = add_fifth(hi1[k], _mm_cvtsi128_si64(parts23)), hi2[k] = add_fifth(hi2[k], _mm_extract_epi64(parts23, 1));
                    }
                    head = scales_in_first ? gather_words(a0, head0, b0)
                                           : _mm512_mask_blend_epi16(0xff00ff00u, gather_words(a0, head0, a1), gather_words(b0, head1, b1));
                }
                dw[k] = _mm512_cvtph_ps(_mm512_castsi512_si256(head));
                if constexpr (F::has_min) mw[k] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(head, 1));
            }
            const std::size_t at = g * legacy_group_bytes;
#pragma GCC unroll 16
            for (std::size_t r = 0; r < Tile; ++r) {
                const std::byte* xg = xr[r] + at;
                const __m512i x0 = _mm512_load_si512(xg), x1 = _mm512_load_si512(xg + 64);
                const __m512i x2 = _mm512_load_si512(xg + 128), x3 = _mm512_load_si512(xg + 192);
                const __m512 x_scales = _mm512_load_ps(xg + legacy_scales_at);
                const __m512i start = F::has_min ? _mm512_setzero_si512() : _mm512_load_si512(xg + legacy_aux_at);
#pragma GCC unroll 4
                for (std::size_t k = 0; k < Outputs; ++k) {
#if defined(KVDECODE_QUANT_AVX512_VNNI)
                    __m512i sums = _mm512_dpbusd_epi32(start, lo1[k], x0);
                    sums = _mm512_dpbusd_epi32(sums, hi1[k], x1);
                    sums = _mm512_dpbusd_epi32(sums, lo2[k], x2);
                    sums = _mm512_dpbusd_epi32(sums, hi2[k], x3);
#else
                    const __m512i pairs = _mm512_add_epi16(
                        _mm512_add_epi16(_mm512_maddubs_epi16(lo1[k], x0), _mm512_maddubs_epi16(hi1[k], x1)),
                        _mm512_add_epi16(_mm512_maddubs_epi16(lo2[k], x2), _mm512_maddubs_epi16(hi2[k], x3)));
                    const __m512i sums = _mm512_add_epi32(start, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
#endif
                    const __m512 scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(sums), x_scales);
                    acc[k][r] = _mm512_fmadd_ps(scaled, dw[k], acc[k][r]);
                    if constexpr (F::has_min) acc[k][r] = _mm512_fmadd_ps(mw[k], _mm512_load_ps(xg + legacy_aux_at), acc[k][r]);
                }
            }
        });
#pragma GCC unroll 16
        for (std::size_t r = 0; r < Tile; ++r)
#pragma GCC unroll 4
            for (std::size_t k = 0; k < Outputs; ++k) legacy_store(p, row + r, o + k * apart, _mm512_reduce_add_ps(acc[k][r]));
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
// row stays in L1 for the later tiles). A single activation row (a decode step) goes
// against Isa::streams weight rows at once, a quarter of the range apart: as many
// streams from memory in flight, and each activation group loaded once for all of
// them (measured: 1.6-1.8x the weight bytes per second of one row at a time, on the
// AVX-512 and on the AVX2 kernel; 4 streams beat 2).
template <class Isa, class Block>
void legacy_matmul(const legacy_matrix<Block>& m, const matrix_product<float>& p, const std::byte* scratch,
                   std::size_t unit_begin, std::size_t unit_end) noexcept {
    constexpr std::size_t tile = Isa::max_tile;
    const legacy_activations x{scratch, activation_row_bytes<Block>(m.in_dim)};
    const std::size_t o_end = std::min(unit_end * q8_0_unit_outputs, m.out_dim);
    std::size_t o_begin = unit_begin * q8_0_unit_outputs;
    if constexpr (Isa::streams > 1) {
        if (p.rows == 1 && m.blocks_per_row() % legacy_group_blocks == 0)
            o_begin = spread_over_streams(o_begin, o_end, Isa::streams, [&](std::size_t o, std::size_t apart) {
                Isa::template tile<1, Isa::streams>(m, p, x, o, 0, apart);
            });
    }
    for (std::size_t o = o_begin; o < o_end; ++o) {
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
