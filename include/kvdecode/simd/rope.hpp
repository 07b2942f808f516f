#pragma once
// Rotary position embedding of one head vector, given that position's cos/sin
// rows (head_dim / 2 entries each, frequency index i = 0 .. head_dim/2 - 1).
//   interleaved (llama2.c, Meta): rotates the pairs (x[2i], x[2i+1]);
//   rotate-half (Hugging Face, GPT-NeoX): rotates the pairs (x[i], x[i + head_dim/2]).

#include <cstddef>

#include "kvdecode/simd/detail/batch.hpp"

namespace kvdecode::simd {

template <class T>
void rope_rotate_half(T* x, const T* cos, const T* sin, std::size_t head_dim) noexcept {
    const std::size_t half = head_dim / 2;
    T* lo = x;
    T* hi = x + half;
    std::size_t i = 0;
    if constexpr (detail::has_batch<T>) {
        using B = detail::batch<T>;
        for (; i < detail::vector_end<T>(half); i += B::size) {
            const B a = B::load_unaligned(lo + i), b = B::load_unaligned(hi + i);
            const B c = B::load_unaligned(cos + i), s = B::load_unaligned(sin + i);
            (a * c - b * s).store_unaligned(lo + i);
            (b * c + a * s).store_unaligned(hi + i);
        }
    }
    for (; i < half; ++i) {
        const T a = lo[i], b = hi[i];
        lo[i] = a * cos[i] - b * sin[i];
        hi[i] = b * cos[i] + a * sin[i];
    }
}

// The pairs are adjacent, so a vector version needs lane shuffles; head vectors are
// short and this costs a few hundred flops per head, so the plain loop stays.
template <class T>
void rope_interleaved(T* x, const T* cos, const T* sin, std::size_t head_dim) noexcept {
    for (std::size_t i = 0; i < head_dim / 2; ++i) {
        const T a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = a * cos[i] - b * sin[i];
        x[2 * i + 1] = b * cos[i] + a * sin[i];
    }
}

}  // namespace kvdecode::simd
