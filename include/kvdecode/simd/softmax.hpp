#pragma once
// In-place softmax of a contiguous vector. Entries of -infinity (masked positions)
// become exactly 0; at least one entry must be finite.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "kvdecode/simd/axpy.hpp"
#include "kvdecode/simd/detail/batch.hpp"

namespace kvdecode::simd {

template <class T>
T max_value(const T* x, std::size_t n) noexcept {
    T best = -std::numeric_limits<T>::infinity();
    std::size_t i = 0;
    if constexpr (detail::has_batch<T>) {
        using B = detail::batch<T>;
        if (n >= B::size) {
            B acc = B::load_unaligned(x);
            for (i = B::size; i < detail::vector_end<T>(n); i += B::size) acc = xsimd::max(acc, B::load_unaligned(x + i));
            alignas(64) T lanes[B::size];
            acc.store_aligned(lanes);
            for (T v : lanes) best = std::max(best, v);
        }
    }
    for (; i < n; ++i) best = std::max(best, x[i]);
    return best;
}

template <class T>
void softmax(T* x, std::size_t n) noexcept {
    const T top = max_value(x, n);
    T sum = 0;
    std::size_t i = 0;
    if constexpr (detail::has_batch<T>) {
        using B = detail::batch<T>;
        const B m(top);
        B acc(T(0));
        for (; i < detail::vector_end<T>(n); i += B::size) {
            const B e = xsimd::exp(B::load_unaligned(x + i) - m);
            e.store_unaligned(x + i);
            acc += e;
        }
        sum = xsimd::hadd(acc);
    }
    for (; i < n; ++i) {
        x[i] = std::exp(x[i] - top);
        sum += x[i];
    }
    scale(x, T(1) / sum, n);
}

}  // namespace kvdecode::simd
