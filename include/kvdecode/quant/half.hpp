#pragma once
// float16 (IEEE binary16) and bfloat16 <-> float32, scalar and bit-exact: the
// spec the SIMD conversions in the kernels are tested against.
//
// f16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. From float32, round to
// nearest, ties to even, through the subnormals (2^-24 steps below 2^-14); 65520 and
// above round to infinity. NaN stays NaN with its sign and the top 10 payload bits,
// quieted (the quiet bit set), as IEEE 754 converts a signalling NaN and as the F16C
// and AVX-512 conversion instructions do; a half's own NaN widens the same way. So a
// half -> float -> half round trip returns every half unchanged except signalling
// NaNs, which come back quiet.
// bf16: the upper 16 bits of a float32. From float32, round to nearest even on the
// discarded 16 bits (subnormals kept, not flushed); NaN stays NaN, quieted. To
// float32, the bits shifted back (exact).

#include <bit>
#include <cstdint>

namespace kvdecode::quant {

constexpr float f16_to_f32(std::uint16_t h) noexcept {
    const std::uint32_t sign = std::uint32_t{h & 0x8000u} << 16;
    const std::uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    std::uint32_t bits = 0;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13) | (mantissa != 0 ? 0x00400000u : 0u);  // inf, or NaN made quiet
    } else if (exponent != 0) {
        bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {
        // Subnormal, mantissa * 2^-24: a normal float with its top set bit p as the leading one.
        const int p = 31 - std::countl_zero(mantissa);
        bits = sign | (std::uint32_t(p + 127 - 24) << 23) | ((mantissa << (23 - p)) & 0x7fffffu);
    }
    return std::bit_cast<float>(bits);
}

constexpr std::uint16_t f32_to_f16(float f) noexcept {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    const std::uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return std::uint16_t(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));  // NaN, quiet
    if (ax >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);  // 65520 (halfway above 65504) and up: inf
    if (ax >= 0x38800000u) {
        // Normal in half (2^-14 and up): rebias the exponent, round 23 mantissa bits to 10.
        // A carry out of the mantissa steps the exponent, which is the right answer.
        const std::uint32_t v = ax - ((127u - 15u) << 23);
        return std::uint16_t(sign | ((v + 0xfffu + ((v >> 13) & 1u)) >> 13));
    }
    if (ax <= 0x33000000u) return std::uint16_t(sign);  // at most 2^-25, half the smallest subnormal: to zero (ties to even)
    // Subnormal in half: the value in units of 2^-24, rounded to nearest even. Rounding
    // up from 0x3ff gives 0x400, the smallest normal, as it should.
    const std::uint32_t exponent = ax >> 23, mantissa = (ax & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126 - exponent;  // 14 .. 24
    std::uint32_t q = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (q & 1u))) ++q;
    return std::uint16_t(sign | q);
}

constexpr float bf16_to_f32(std::uint16_t b) noexcept { return std::bit_cast<float>(std::uint32_t{b} << 16); }

constexpr std::uint16_t f32_to_bf16(float f) noexcept {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((x >> 16) | 0x0040u);  // NaN, quiet
    return std::uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);                    // overflow lands on inf
}

}  // namespace kvdecode::quant
