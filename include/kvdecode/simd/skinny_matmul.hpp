#pragma once
// out (rows, out_dim) = in (rows, in_dim) · W^T for a few rows of activations and
// a row-major weight W (out_dim, in_dim). Each weight row is read once and dotted
// with every activation row while it is in cache: decode steps are bound by
// streaming the weights, so a batch of rows costs little more than one.

#include <cstddef>

#include "kvdecode/simd/dot.hpp"

namespace kvdecode::simd {

// out_stride: distance between rows of out (out_dim when out is contiguous; larger
// when a thread fills a band of columns). accumulate: out += in · W^T (the residual adds).
template <class T>
void skinny_matmul(const T* in, std::size_t rows, std::size_t in_dim, const T* w, std::size_t out_dim, T* out,
                   std::size_t out_stride, bool accumulate) noexcept {
    for (std::size_t o = 0; o < out_dim; ++o) {
        const T* w_row = w + o * in_dim;
        for (std::size_t r = 0; r < rows; ++r) {
            const T value = dot(in + r * in_dim, w_row, in_dim);
            T& dst = out[r * out_stride + o];
            dst = accumulate ? dst + value : value;
        }
    }
}

}  // namespace kvdecode::simd
