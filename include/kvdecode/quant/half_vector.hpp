#pragma once
// Float vectors against f16 or bf16 vectors: what attention needs to read a KV cache
// stored in 16 bits (cache/kv_type.hpp) without widening it into temporaries first.
//   dot_half:    sum of x[i] * h[i], in float
//   axpy_half:   y[i] += alpha * h[i]
//   widen_half:  out[i] = h[i] as float (exact)
//   narrow_half: out[i] = x[i] rounded to the 16-bit type (to_half: nearest even)
// Each has a scalar loop (the reference) and AVX2 (F16C) and AVX-512 paths, chosen at
// compile time by the translation unit's target (kernel_isa.hpp's macros) and asked
// of the CPU once; the named variants in detail:: let tests run every path the
// machine has. widen and narrow are bit-exact on every path (the scalar conversions
// of half.hpp are the spec; F16C and AVX-512 convert f16 with the same rounding, and
// bf16 is a shift, and a rounding add done in integers); dot and axpy round as
// float FMAs do, dot in its own order of additions per path.
// Unaligned pointers are fine everywhere.

#include <cstddef>
#include <cstdint>

#include "kvdecode/quant/half.hpp"
#include "kvdecode/quant/kernel_isa.hpp"
#include "kvdecode/quant/kernels_half.hpp"

#if defined(KVDECODE_QUANT_AVX2)
#include <immintrin.h>
#endif

namespace kvdecode::quant {

namespace detail {

template <half_format F>
float dot_half_scalar(const float* x, const std::uint16_t* h, std::size_t n) noexcept {
    float sum = 0;
    for (std::size_t i = 0; i < n; ++i) sum += x[i] * from_half<F>(h[i]);
    return sum;
}

template <half_format F>
void axpy_half_scalar(float alpha, const std::uint16_t* h, float* y, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] += alpha * from_half<F>(h[i]);
}

template <half_format F>
void widen_half_scalar(const std::uint16_t* h, float* out, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) out[i] = from_half<F>(h[i]);
}

template <half_format F>
void narrow_half_scalar(const float* x, std::uint16_t* out, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) out[i] = to_half<F>(x[i]);
}

#if defined(KVDECODE_QUANT_AVX512)
template <half_format F>
__m512 load16_half(const std::uint16_t* h) noexcept {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h));
    if constexpr (F == half_format::f16) return _mm512_cvtph_ps(v);
    else return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}

template <half_format F>
float dot_half_avx512(const float* x, const std::uint16_t* h, std::size_t n) noexcept {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();  // two chains hide the FMA latency
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), load16_half<F>(h + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), load16_half<F>(h + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), load16_half<F>(h + i), a0);
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; ++i) sum += x[i] * from_half<F>(h[i]);
    return sum;
}

template <half_format F>
void axpy_half_avx512(float alpha, const std::uint16_t* h, float* y, std::size_t n) noexcept {
    const __m512 a = _mm512_set1_ps(alpha);
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, load16_half<F>(h + i), _mm512_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] += alpha * from_half<F>(h[i]);
}

template <half_format F>
void widen_half_avx512(const std::uint16_t* h, float* out, std::size_t n) noexcept {
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, load16_half<F>(h + i));
    for (; i < n; ++i) out[i] = from_half<F>(h[i]);
}
#endif

#if defined(KVDECODE_QUANT_AVX2)
template <half_format F>
__m256 load8_half(const std::uint16_t* h) noexcept {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h));
    if constexpr (F == half_format::f16) return _mm256_cvtph_ps(v);
    else return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
}

inline float horizontal_sum(__m256 v) noexcept {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

template <half_format F>
float dot_half_avx2(const float* x, const std::uint16_t* h, std::size_t n) noexcept {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load8_half<F>(h + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), load8_half<F>(h + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load8_half<F>(h + i), a0);
    float sum = horizontal_sum(_mm256_add_ps(a0, a1));
    for (; i < n; ++i) sum += x[i] * from_half<F>(h[i]);
    return sum;
}

template <half_format F>
void axpy_half_avx2(float alpha, const std::uint16_t* h, float* y, std::size_t n) noexcept {
    const __m256 a = _mm256_set1_ps(alpha);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, load8_half<F>(h + i), _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] += alpha * from_half<F>(h[i]);
}

template <half_format F>
void widen_half_avx2(const std::uint16_t* h, float* out, std::size_t n) noexcept {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load8_half<F>(h + i));
    for (; i < n; ++i) out[i] = from_half<F>(h[i]);
}

// f16: F16C's rounding (nearest even, NaN quieted) is to_half's. bf16: to_half's
// integer rounding, 8 at a time; NaN is kept apart as the scalar code does.
template <half_format F>
void narrow_half_avx2(const float* x, std::uint16_t* out, std::size_t n) noexcept {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        __m128i h;
        if constexpr (F == half_format::f16) {
            h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
        } else {
            const __m256i bits = _mm256_castps_si256(v);
            const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
            const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)), odd), 16);
            const __m256i quiet_nan = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
            const __m256i is_nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            const __m256i r = _mm256_blendv_epi8(rounded, quiet_nan, is_nan);
            // 32-bit lanes holding 16-bit values: pack them (unsigned saturation never
            // triggers below 0x10000), then put the two 128-bit halves in order.
            const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
            h = _mm256_castsi256_si128(packed);
        }
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
    }
    for (; i < n; ++i) out[i] = to_half<F>(x[i]);
}
#endif

// The best path the translation unit's target has, chosen at compile time (as the
// float kernels of simd/ are): for callers in a hot loop, such as attention over a
// cache, where a call through the run-time choice below costs more than its work.
template <half_format F>
inline float dot_half_compiled(const float* x, const std::uint16_t* h, std::size_t n) noexcept {
#if defined(KVDECODE_QUANT_AVX512)
    return dot_half_avx512<F>(x, h, n);
#elif defined(KVDECODE_QUANT_AVX2)
    return dot_half_avx2<F>(x, h, n);
#else
    return dot_half_scalar<F>(x, h, n);
#endif
}

template <half_format F>
inline void axpy_half_compiled(float alpha, const std::uint16_t* h, float* y, std::size_t n) noexcept {
#if defined(KVDECODE_QUANT_AVX512)
    axpy_half_avx512<F>(alpha, h, y, n);
#elif defined(KVDECODE_QUANT_AVX2)
    axpy_half_avx2<F>(alpha, h, y, n);
#else
    axpy_half_scalar<F>(alpha, h, y, n);
#endif
}

}  // namespace detail

// The best path compiled in and run by this CPU (asked once per call site type).
template <half_format F>
float dot_half(const float* x, const std::uint16_t* h, std::size_t n) noexcept {
#if defined(KVDECODE_QUANT_AVX512)
    static const bool avx512 = detail::cpu_runs(kernel_isa::avx512);
    if (avx512) return detail::dot_half_avx512<F>(x, h, n);
#endif
#if defined(KVDECODE_QUANT_AVX2)
    static const bool avx2 = detail::cpu_runs(kernel_isa::avx2);
    if (avx2) return detail::dot_half_avx2<F>(x, h, n);
#endif
    return detail::dot_half_scalar<F>(x, h, n);
}

template <half_format F>
void axpy_half(float alpha, const std::uint16_t* h, float* y, std::size_t n) noexcept {
#if defined(KVDECODE_QUANT_AVX512)
    static const bool avx512 = detail::cpu_runs(kernel_isa::avx512);
    if (avx512) return detail::axpy_half_avx512<F>(alpha, h, y, n);
#endif
#if defined(KVDECODE_QUANT_AVX2)
    static const bool avx2 = detail::cpu_runs(kernel_isa::avx2);
    if (avx2) return detail::axpy_half_avx2<F>(alpha, h, y, n);
#endif
    detail::axpy_half_scalar<F>(alpha, h, y, n);
}

template <half_format F>
void widen_half(const std::uint16_t* h, float* out, std::size_t n) noexcept {
#if defined(KVDECODE_QUANT_AVX512)
    static const bool avx512 = detail::cpu_runs(kernel_isa::avx512);
    if (avx512) return detail::widen_half_avx512<F>(h, out, n);
#endif
#if defined(KVDECODE_QUANT_AVX2)
    static const bool avx2 = detail::cpu_runs(kernel_isa::avx2);
    if (avx2) return detail::widen_half_avx2<F>(h, out, n);
#endif
    detail::widen_half_scalar<F>(h, out, n);
}

template <half_format F>
void narrow_half(const float* x, std::uint16_t* out, std::size_t n) noexcept {
#if defined(KVDECODE_QUANT_AVX2)
    static const bool avx2 = detail::cpu_runs(kernel_isa::avx2);
    if (avx2) return detail::narrow_half_avx2<F>(x, out, n);
#endif
    detail::narrow_half_scalar<F>(x, out, n);
}

}  // namespace kvdecode::quant
