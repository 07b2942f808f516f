#pragma once
// Dot product of two contiguous vectors.

#include <cstddef>

#include "kvdecode/simd/detail/batch.hpp"

namespace kvdecode::simd {

template <class T>
T dot(const T* a, const T* b, std::size_t n) noexcept {
    T sum = 0;
    std::size_t i = 0;
    if constexpr (detail::has_batch<T>) {
        using B = detail::batch<T>;
        B acc0(T(0)), acc1(T(0));  // two accumulators hide the FMA latency
        for (; i + 2 * B::size <= n; i += 2 * B::size) {
            acc0 = xsimd::fma(B::load_unaligned(a + i), B::load_unaligned(b + i), acc0);
            acc1 = xsimd::fma(B::load_unaligned(a + i + B::size), B::load_unaligned(b + i + B::size), acc1);
        }
        for (; i + B::size <= n; i += B::size)
            acc0 = xsimd::fma(B::load_unaligned(a + i), B::load_unaligned(b + i), acc0);
        sum = xsimd::hadd(acc0 + acc1);
    }
    for (; i < n; ++i) sum += a[i] * b[i];
    return sum;
}

}  // namespace kvdecode::simd
