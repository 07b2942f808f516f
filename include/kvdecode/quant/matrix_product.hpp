#pragma once
// The arguments of one product with a weight matrix, whatever its storage type:
//   out (rows, out_stride) (+)= (in (rows, in_stride) · W^T), W (out_dim, in_dim),
// each output row scaled by row_scale[r] where given (the 1 / rms of an RMSNorm
// whose gain was folded into W's columns).

#include <cstddef>

namespace kvdecode {

template <class T>
struct matrix_product {
    const T* in = nullptr;          // (rows, in_stride): the activations, in_dim used per row
    std::size_t in_stride = 0;
    std::size_t rows = 0;
    const T* row_scale = nullptr;   // (rows) factor on each row's outputs, or none
    T* out = nullptr;               // (rows, out_stride): out_dim written per row
    std::size_t out_stride = 0;
    bool accumulate = false;        // out += product (the residual adds)
};

namespace quant::detail {

// Writes `count` outputs of one row starting at output first_out: sums scaled by the
// row's factor, stored or added.
template <class T>
inline void store_outputs(const matrix_product<T>& p, std::size_t row, std::size_t first_out, std::size_t count,
                          const T* sums) noexcept {
    const T scale = p.row_scale ? p.row_scale[row] : T(1);
    T* out = p.out + row * p.out_stride + first_out;
    if (p.accumulate)
        for (std::size_t o = 0; o < count; ++o) out[o] += sums[o] * scale;
    else
        for (std::size_t o = 0; o < count; ++o) out[o] = sums[o] * scale;
}

// One activation row (a decode step) against `streams` weight rows at once, a
// 1/streams of [begin, end) apart, so that as many streams come from memory together:
// tile(o, apart) computes outputs o, o + apart, ..., o + (streams - 1) apart. Returns
// the first output left (fewer than `streams` at the end) for the caller's own loop.
// Each output's sum is the one it would get alone.
template <class Tile>
inline std::size_t spread_over_streams(std::size_t begin, std::size_t end, std::size_t streams, Tile&& tile) {
    const std::size_t apart = (end - begin) / streams;
    for (std::size_t i = 0; i < apart; ++i) tile(begin + i, apart);
    return begin + streams * apart;
}

}  // namespace quant::detail
}  // namespace kvdecode
