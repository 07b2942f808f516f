#pragma once
// The SwiGLU gate: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)).

#include <cmath>
#include <cstddef>

#include "kvdecode/simd/detail/batch.hpp"

namespace kvdecode::simd {

template <class T>
void swiglu(const T* gate, const T* up, T* out, std::size_t n) noexcept {
    std::size_t i = 0;
    if constexpr (detail::has_batch<T>) {
        using B = detail::batch<T>;
        const B one(T(1));
        for (; i < detail::vector_end<T>(n); i += B::size) {
            const B g = B::load_unaligned(gate + i);
            (g / (one + xsimd::exp(-g)) * B::load_unaligned(up + i)).store_unaligned(out + i);
        }
    }
    for (; i < n; ++i) out[i] = gate[i] / (T(1) + std::exp(-gate[i])) * up[i];
}

}  // namespace kvdecode::simd
