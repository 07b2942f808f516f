#pragma once
// RMSNorm: out = x / sqrt(mean(x^2) + eps) * weight.

#include <cmath>
#include <cstddef>

#include "kvdecode/simd/detail/batch.hpp"
#include "kvdecode/simd/dot.hpp"

namespace kvdecode::simd {

// 1 / sqrt(mean(x^2) + eps): all a norm computes when its gain is folded into the
// product that follows it.
template <class T>
T inverse_rms(const T* x, std::size_t n, T eps) noexcept {
    return T(1) / std::sqrt(dot(x, x, n) / static_cast<T>(n) + eps);
}

template <class T>
void rms_norm(const T* x, const T* weight, T* out, std::size_t n, T eps) noexcept {
    const T inv_rms = inverse_rms(x, n, eps);
    std::size_t i = 0;
    if constexpr (detail::has_batch<T>) {
        using B = detail::batch<T>;
        const B s(inv_rms);
        for (; i < detail::vector_end<T>(n); i += B::size)
            (B::load_unaligned(x + i) * s * B::load_unaligned(weight + i)).store_unaligned(out + i);
    }
    for (; i < n; ++i) out[i] = x[i] * inv_rms * weight[i];
}

}  // namespace kvdecode::simd
