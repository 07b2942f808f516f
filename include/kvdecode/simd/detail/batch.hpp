#pragma once
// Which xsimd batch the kernels use. The architecture is the one the including
// translation unit is compiled for (xsimd's default_arch); where no SIMD register
// holds T the kernels fall back to their scalar loops.

#include <cstddef>
#include <xsimd/xsimd.hpp>

namespace kvdecode::simd::detail {

template <class T>
inline constexpr bool has_batch = xsimd::has_simd_register<T>::value;

template <class T>
using batch = xsimd::batch<T>;

template <class T>
constexpr std::size_t lanes() noexcept {
    if constexpr (has_batch<T>) return batch<T>::size;
    else return 1;
}

// Largest multiple of the lane count that fits in n.
template <class T>
constexpr std::size_t vector_end(std::size_t n) noexcept {
    return n - n % lanes<T>();
}

}  // namespace kvdecode::simd::detail
