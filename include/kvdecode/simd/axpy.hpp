#pragma once
// y += alpha * x, and x *= alpha, over contiguous vectors.

#include <cstddef>

#include "kvdecode/simd/detail/batch.hpp"

namespace kvdecode::simd {

template <class T>
void axpy(T alpha, const T* x, T* y, std::size_t n) noexcept {
    std::size_t i = 0;
    if constexpr (detail::has_batch<T>) {
        using B = detail::batch<T>;
        const B a(alpha);
        for (; i < detail::vector_end<T>(n); i += B::size)
            xsimd::fma(a, B::load_unaligned(x + i), B::load_unaligned(y + i)).store_unaligned(y + i);
    }
    for (; i < n; ++i) y[i] += alpha * x[i];
}

template <class T>
void scale(T* x, T alpha, std::size_t n) noexcept {
    std::size_t i = 0;
    if constexpr (detail::has_batch<T>) {
        using B = detail::batch<T>;
        const B a(alpha);
        for (; i < detail::vector_end<T>(n); i += B::size) (B::load_unaligned(x + i) * a).store_unaligned(x + i);
    }
    for (; i < n; ++i) x[i] *= alpha;
}

}  // namespace kvdecode::simd
