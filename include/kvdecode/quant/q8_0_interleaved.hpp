#pragma once
// Q8_0 weights as the kernels stream them: GGUF's rows of 34-byte blocks (q8_0.hpp)
// repacked once, at load, into groups of 16 outputs whose blocks are interleaved.
//
// Outputs 16g .. 16g + 15 form group g (the last group padded with zero rows). Group g's
// block b (the 32 columns 32b .. 32b + 31 of its 16 rows) is 512 bytes of quants:
//   slice k (k = 0..7), 64 bytes: for output lane j = 0..15, bytes 4k .. 4k + 3 of the
//   lane's block at 4j
// so that one 512-bit load gives every lane the 4 weights one vpdpbusd multiplies by
// the same 4 activations (and one 256-bit load gives 8 lanes theirs). The quants of
// every group come first, group after group and block after block: one sequential
// stream for a thread's share of the outputs. The float16 scales follow, 16 per group
// block (32 bytes, lane j's at j), in the same order.
//
// Why repack: in the file's layout a kernel that takes 16 outputs per vector has to
// transpose every block in registers (about 30 shuffles per block, the same for one
// activation row as for eight), and a kernel that takes one output at a time pays a
// horizontal sum and float scaling per output and block. The bytes are the file's
// (34 per 32 values), so the stream is no longer than the file's.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kvdecode/quant/half.hpp"
#include "kvdecode/quant/q8_0.hpp"

namespace kvdecode::quant {

struct q8_0_interleaved {
    static constexpr std::size_t group = 16;                           // outputs interleaved
    static constexpr std::size_t slice_bytes = 64;                     // 4 bytes of each of 16 outputs
    static constexpr std::size_t quant_bytes = group * q8_0_block_values;  // one block of a group: 512
    static constexpr std::size_t scale_bytes = group * sizeof(std::uint16_t);

    const std::byte* data = nullptr;  // bytes(out_dim, in_dim) bytes, 64-byte aligned
    std::size_t out_dim = 0, in_dim = 0;

    std::size_t blocks_per_row() const noexcept { return q8_0_blocks(in_dim); }
    std::size_t groups() const noexcept { return groups(out_dim); }
    static std::size_t groups(std::size_t out_dim) noexcept { return (out_dim + group - 1) / group; }
    static std::size_t bytes(std::size_t out_dim, std::size_t in_dim) noexcept {
        return groups(out_dim) * q8_0_blocks(in_dim) * (quant_bytes + scale_bytes);
    }

    // Group g's block b: its 8 slices of quants, and its 16 float16 scales.
    const std::int8_t* quants(std::size_t g, std::size_t b) const noexcept {
        return reinterpret_cast<const std::int8_t*>(data) + (g * blocks_per_row() + b) * quant_bytes;
    }
    const std::uint16_t* scales(std::size_t g, std::size_t b) const noexcept {
        return reinterpret_cast<const std::uint16_t*>(data + groups() * blocks_per_row() * quant_bytes) +
               (g * blocks_per_row() + b) * group;
    }
};

// out_dim rows of q8_0_blocks(in_dim) blocks in GGUF's layout (`rows`, any alignment)
// into the interleaved layout at dst (q8_0_interleaved::bytes(out_dim, in_dim) bytes).
inline void interleave_q8_0(const std::byte* rows, std::size_t out_dim, std::size_t in_dim, std::byte* dst) noexcept {
    const q8_0_interleaved m{dst, out_dim, in_dim};
    const std::size_t nb = m.blocks_per_row();
    std::memset(dst, 0, q8_0_interleaved::bytes(out_dim, in_dim));
    for (std::size_t o = 0; o < out_dim; ++o) {
        const std::size_t g = o / q8_0_interleaved::group, lane = o % q8_0_interleaved::group;
        for (std::size_t b = 0; b < nb; ++b) {
            block_q8_0 block;
            std::memcpy(&block, rows + (o * nb + b) * sizeof(block_q8_0), sizeof block);
            auto* quants = const_cast<std::int8_t*>(m.quants(g, b));
            for (std::size_t k = 0; k < q8_0_block_values / 4; ++k)
                std::memcpy(quants + k * q8_0_interleaved::slice_bytes + 4 * lane, block.qs + 4 * k, 4);
            const_cast<std::uint16_t*>(m.scales(g, b))[lane] = block.d;
        }
    }
}

// Row o (in_dim values) as floats: what dequantize_row_q8_0 gives for the file's row.
inline void dequantize_row_q8_0(const q8_0_interleaved& m, std::size_t o, float* out) noexcept {
    const std::size_t g = o / q8_0_interleaved::group, lane = o % q8_0_interleaved::group;
    for (std::size_t i = 0; i < m.in_dim; ++i) {
        const std::size_t b = i / q8_0_block_values, v = i % q8_0_block_values;
        const std::int8_t q = m.quants(g, b)[v / 4 * q8_0_interleaved::slice_bytes + 4 * lane + v % 4];
        out[i] = f16_to_f32(m.scales(g, b)[lane]) * static_cast<float>(q);
    }
}

}  // namespace kvdecode::quant
