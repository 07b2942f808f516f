// float16 and bfloat16 conversions: every half value, known encodings, the ties of
// round-to-nearest-even between every pair of neighbours, NaN, inf and subnormals;
// against the F16C instructions where this CPU has them, and the SSE2 kernel's
// integer conversion against the scalar one.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/core/rng.hpp"
#include "kvdecode/quant/half.hpp"
#include "kvdecode/quant/kernel_isa.hpp"
#include "kvdecode/quant/kernels_half.hpp"

using namespace kvdecode::quant;

namespace {

std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }
float from_bits(std::uint32_t b) { return std::bit_cast<float>(b); }

// The value a half encodes, from the definition (in double).
double half_value(std::uint16_t h) {
    const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const double magnitude = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -magnitude : magnitude;
}

bool is_half_nan(std::uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }

// The nearest of the two bracketing candidates, ties to the even encoding (an oracle
// independent of the bit tricks in half.hpp).
std::uint16_t nearest(double x, std::uint16_t below, std::uint16_t above, double v_below, double v_above) {
    const double d_below = x - v_below, d_above = v_above - x;
    if (d_below < d_above) return below;
    if (d_above < d_below) return above;
    return (below & 1) ? above : below;
}

// f32 -> f16 by search over the sorted positive halves (inf standing for 65536).
std::uint16_t f16_oracle(float f) {
    static const std::vector<double> values = [] {
        std::vector<double> v;
        for (std::uint16_t h = 0; h <= 0x7c00; ++h) v.push_back(h == 0x7c00 ? 65536.0 : half_value(h));
        return v;
    }();
    const std::uint16_t sign = std::signbit(f) ? 0x8000 : 0;
    const double x = std::fabs(double(f));
    if (x >= 65536.0) return sign | 0x7c00;
    const auto above = static_cast<std::uint16_t>(std::lower_bound(values.begin(), values.end(), x) - values.begin());
    if (values[above] == x) return sign | above;
    return sign | nearest(x, above - 1, above, values[above - 1], values[above]);
}

std::uint16_t bf16_oracle(float f) {
    const std::uint32_t b = bits(f);
    if (std::isinf(f)) return static_cast<std::uint16_t>(b >> 16);
    const std::uint16_t below = static_cast<std::uint16_t>(b >> 16);  // toward zero
    const double x = std::fabs(double(f));
    const double v_below = std::fabs(double(from_bits(std::uint32_t{below} << 16)));
    const std::uint32_t above_bits = (std::uint32_t{below} + 1) << 16;
    // Past the largest finite bf16 the next encoding is inf, which rounding treats as 2^128.
    const double v_above = (above_bits & 0x7fffffffu) == 0x7f800000u ? std::ldexp(1.0, 128) : std::fabs(double(from_bits(above_bits)));
    return nearest(x, below, static_cast<std::uint16_t>(below + 1), v_below, v_above);
}

}  // namespace

TEST_CASE("f16 known encodings", "[quant][half]") {
    const std::pair<float, std::uint16_t> known[] = {
        {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {-2.0f, 0xc000}, {0.5f, 0x3800}, {65504.0f, 0x7bff},
        {-65504.0f, 0xfbff}, {0x1p-14f, 0x0400}, {0x1p-24f, 0x0001}, {1023 * 0x1p-24f, 0x03ff}, {0.333251953125f, 0x3555},
        {std::numeric_limits<float>::infinity(), 0x7c00}, {-std::numeric_limits<float>::infinity(), 0xfc00}};
    for (const auto& [value, encoding] : known) {
        CAPTURE(value, encoding);
        REQUIRE(f32_to_f16(value) == encoding);
        REQUIRE(bits(f16_to_f32(encoding)) == bits(value));
    }
    REQUIRE(f32_to_f16(0.1f) == 0x2e66);          // 0.0999755859375, the nearest half
    REQUIRE(f32_to_f16(1.0f / 3.0f) == 0x3555);
    REQUIRE(f32_to_f16(65519.996f) == 0x7bff);    // below the tie with 65536: the largest finite
    REQUIRE(f32_to_f16(65520.0f) == 0x7c00);      // the tie rounds to even, which is inf
    REQUIRE(f32_to_f16(1e10f) == 0x7c00);
    REQUIRE(f32_to_f16(0x1p-25f) == 0x0000);      // half the smallest subnormal: tie, to even zero
    REQUIRE(f32_to_f16(std::nextafter(0x1p-25f, 1.0f)) == 0x0001);
    REQUIRE(f32_to_f16(-0x1p-26f) == 0x8000);     // underflow keeps the sign
    REQUIRE(f32_to_f16(3 * 0x1p-25f) == 0x0002);  // 1.5 subnormal units: tie, to even 2
    REQUIRE(f32_to_f16(std::numeric_limits<float>::denorm_min()) == 0x0000);
}

TEST_CASE("f16 from every half value is exact and round-trips", "[quant][half]") {
    for (std::uint32_t i = 0; i < 0x10000; ++i) {
        const auto h = static_cast<std::uint16_t>(i);
        CAPTURE(h);
        const float f = f16_to_f32(h);
        if (is_half_nan(h)) {
            REQUIRE(std::isnan(f));
            REQUIRE(std::signbit(f) == bool(h & 0x8000));
            REQUIRE((bits(f) & 0x003fe000u) >> 13 == (h & 0x1ffu));  // payload below the quiet bit kept
            REQUIRE((bits(f) & 0x00400000u) != 0);                    // quiet
            REQUIRE(f32_to_f16(f) == (h | 0x0200));                  // back as the quiet NaN of the same payload
            continue;
        }
        if ((h & 0x7fff) == 0x7c00) REQUIRE(std::isinf(f));
        else REQUIRE(double(f) == half_value(h));
        REQUIRE(std::signbit(f) == bool(h & 0x8000));
        REQUIRE(f32_to_f16(f) == h);
    }
}

TEST_CASE("f16 rounding: every midpoint between neighbours goes to the even one", "[quant][half]") {
    // Positive finite neighbours (and 65504 with inf); their midpoint has 12 significant
    // bits, so it is exact in float, and so are the floats just either side of it.
    for (std::uint16_t h = 0; h < 0x7c00; ++h) {
        const std::uint16_t next = h + 1;
        const double upper = next == 0x7c00 ? 65536.0 : half_value(next);
        const float mid = static_cast<float>((half_value(h) + upper) / 2);
        REQUIRE(double(mid) == (half_value(h) + upper) / 2);
        CAPTURE(h, mid);
        const std::uint16_t even = (h & 1) ? next : h;
        REQUIRE(f32_to_f16(mid) == even);
        REQUIRE(f32_to_f16(-mid) == (even | 0x8000));
        REQUIRE(f32_to_f16(std::nextafter(mid, 0.0f)) == h);
        REQUIRE(f32_to_f16(std::nextafter(mid, 1e9f)) == next);
    }
}

TEST_CASE("f16 from float equals the nearest-half oracle on a sweep of all floats", "[quant][half]") {
    // Every 4099th bit pattern (about a million floats over every exponent); NaN stays NaN.
    std::uint64_t mismatches = 0, first = 0;
    for (std::uint64_t b = 0; b < (std::uint64_t{1} << 32); b += 4099) {
        const float f = from_bits(static_cast<std::uint32_t>(b));
        const std::uint16_t h = f32_to_f16(f);
        const bool ok = std::isnan(f) ? is_half_nan(h) && bool(h & 0x8000) == std::signbit(f) : h == f16_oracle(f);
        if (!ok && mismatches++ == 0) first = b;
    }
    INFO("first mismatch at float bits " << first);
    REQUIRE(mismatches == 0);
}

#if defined(__F16C__)
TEST_CASE("f16 conversions equal the F16C instructions bit for bit, NaN included", "[quant][half]") {
    if (!kvdecode::quant::detail::cpu_features::get().f16c) {
        WARN("skipped: this CPU has no F16C");
        return;
    }
    for (std::uint32_t i = 0; i < 0x10000; ++i) {
        CAPTURE(i);
        REQUIRE(bits(f16_to_f32(static_cast<std::uint16_t>(i))) == bits(_cvtsh_ss(static_cast<unsigned short>(i))));
    }
    kvdecode::rng gen(3);
    for (std::uint64_t b = 0; b < (std::uint64_t{1} << 32); b += 65521) {
        for (std::uint32_t x : {static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(gen.next_u64())}) {
            CAPTURE(x);
            REQUIRE(f32_to_f16(from_bits(x)) == _cvtss_sh(from_bits(x), _MM_FROUND_TO_NEAREST_INT));
        }
    }
}
#endif

#if defined(KVDECODE_QUANT_SSE2)
TEST_CASE("the SSE2 kernel's f16 conversion equals the scalar one on every half", "[quant][half]") {
    for (std::uint32_t i = 0; i < 0x10000; i += 4) {
        const __m128i h = _mm_setr_epi32(int(i), int(i + 1), int(i + 2), int(i + 3));
        alignas(16) float got[4];
        _mm_store_ps(got, kvdecode::quant::detail::f16_to_f32_sse2(h));
        for (std::uint32_t j = 0; j < 4; ++j) {
            CAPTURE(i + j);
            REQUIRE(bits(got[j]) == bits(f16_to_f32(static_cast<std::uint16_t>(i + j))));
        }
    }
}
#endif

TEST_CASE("bf16 known encodings, ties, overflow, subnormals and NaN", "[quant][half]") {
    REQUIRE(f32_to_bf16(1.0f) == 0x3f80);
    REQUIRE(f32_to_bf16(-2.0f) == 0xc000);
    REQUIRE(f32_to_bf16(3.14159265f) == 0x4049);             // 0x40490fdb: below the midpoint
    REQUIRE(f32_to_bf16(from_bits(0x3f808000u)) == 0x3f80);  // tie, even below
    REQUIRE(f32_to_bf16(from_bits(0x3f818000u)) == 0x3f82);  // tie, even above
    REQUIRE(f32_to_bf16(from_bits(0x3f808001u)) == 0x3f81);
    REQUIRE(f32_to_bf16(from_bits(0x3f807fffu)) == 0x3f80);
    REQUIRE(f32_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);     // rounds past the largest: inf
    REQUIRE(f32_to_bf16(from_bits(0x7f7f7fffu)) == 0x7f7f);
    REQUIRE(f32_to_bf16(-std::numeric_limits<float>::infinity()) == 0xff80);
    REQUIRE(f32_to_bf16(from_bits(0x00018000u)) == 0x0002);  // subnormal tie, not flushed
    REQUIRE(f32_to_bf16(from_bits(0x00008000u)) == 0x0000);
    REQUIRE(f32_to_bf16(from_bits(0x80008001u)) == 0x8001);
    REQUIRE(f32_to_bf16(from_bits(0x7f800001u)) == 0x7fc0);  // a NaN whose payload sits in the low bits stays NaN
    REQUIRE(f32_to_bf16(from_bits(0xffc12345u)) == 0xffc1);
    REQUIRE(bits(bf16_to_f32(0x3f80)) == bits(1.0f));
    REQUIRE(bits(bf16_to_f32(0x8001)) == 0x80010000u);
}

TEST_CASE("bf16 from every bf16 value round-trips, and a sweep of all floats equals the oracle", "[quant][half]") {
    for (std::uint32_t i = 0; i < 0x10000; ++i) {
        const auto b = static_cast<std::uint16_t>(i);
        const float f = bf16_to_f32(b);
        CAPTURE(b);
        REQUIRE(bits(f) == i << 16);
        const bool signalling_nan = (b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0 && (b & 0x40) == 0;
        REQUIRE(f32_to_bf16(f) == (signalling_nan ? (b | 0x40) : b));
    }
    std::uint64_t mismatches = 0, first = 0;
    for (std::uint64_t b = 0; b < (std::uint64_t{1} << 32); b += 4099) {
        const float f = from_bits(static_cast<std::uint32_t>(b));
        const std::uint16_t h = f32_to_bf16(f);
        const bool ok = std::isnan(f) ? std::isnan(bf16_to_f32(h)) && std::signbit(bf16_to_f32(h)) == std::signbit(f)
                                      : h == bf16_oracle(f);
        if (!ok && mismatches++ == 0) first = b;
    }
    INFO("first mismatch at float bits " << first);
    REQUIRE(mismatches == 0);
}
