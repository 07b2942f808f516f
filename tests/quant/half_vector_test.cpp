// Float vectors against f16 / bf16 vectors (quant/half_vector.hpp), on every path this
// build has and this CPU runs: widening every half and narrowing floats at rounding
// ties, NaN, inf and subnormals bit for bit against half.hpp's scalar conversions;
// dot and axpy at every length 0..130 and unaligned starts against a float64 sum.

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/core/rng.hpp"
#include "kvdecode/quant/half_vector.hpp"

using namespace kvdecode;
using namespace kvdecode::quant;

namespace {

template <half_format F>
struct paths {
    using dot_fn = float (*)(const float*, const std::uint16_t*, std::size_t) noexcept;
    using axpy_fn = void (*)(float, const std::uint16_t*, float*, std::size_t) noexcept;
    using widen_fn = void (*)(const std::uint16_t*, float*, std::size_t) noexcept;
    using narrow_fn = void (*)(const float*, std::uint16_t*, std::size_t) noexcept;
    struct path {
        std::string name;
        dot_fn dot;
        axpy_fn axpy;
        widen_fn widen;
        narrow_fn narrow;
    };
    // The named paths this machine runs, then the run-time and the compile-time choices.
    static std::vector<path> all() {
        std::vector<path> p = {{"scalar", &detail::dot_half_scalar<F>, &detail::axpy_half_scalar<F>,
                                &detail::widen_half_scalar<F>, &detail::narrow_half_scalar<F>}};
#if defined(KVDECODE_QUANT_AVX2)
        if (detail::cpu_runs(kernel_isa::avx2))
            p.push_back({"avx2", &detail::dot_half_avx2<F>, &detail::axpy_half_avx2<F>, &detail::widen_half_avx2<F>,
                         &detail::narrow_half_avx2<F>});
#endif
#if defined(KVDECODE_QUANT_AVX512)
        if (detail::cpu_runs(kernel_isa::avx512))
            p.push_back({"avx512", &detail::dot_half_avx512<F>, &detail::axpy_half_avx512<F>,
                         &detail::widen_half_avx512<F>, &detail::narrow_half_avx2<F>});
#endif
        p.push_back({"dispatched", &dot_half<F>, &axpy_half<F>, &widen_half<F>, &narrow_half<F>});
        p.push_back({"compiled", &detail::dot_half_compiled<F>, &detail::axpy_half_compiled<F>, &widen_half<F>,
                     &narrow_half<F>});
        return p;
    }
};

std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }

template <half_format F>
void check_conversions() {
    // Every 16-bit pattern widened.
    std::vector<std::uint16_t> every(65536 + 3);
    for (std::size_t i = 0; i < 65536; ++i) every[i + 3] = static_cast<std::uint16_t>(i);
    // Floats around every half's neighbourhood: the half's value, and the ties and
    // near-ties to each side, plus specials.
    std::vector<float> floats;
    for (std::uint32_t h = 0; h < 65536; h += 7) {
        const float x = from_half<F>(static_cast<std::uint16_t>(h));
        floats.push_back(x);
        const float up = from_half<F>(static_cast<std::uint16_t>(h + 1 < 65536 ? h + 1 : h));
        if (std::isfinite(x) && std::isfinite(up)) {
            const float mid = x + (up - x) / 2;
            floats.insert(floats.end(), {mid, std::nextafter(mid, up), std::nextafter(mid, x)});
        }
    }
    floats.insert(floats.end(), {0.0f, -0.0f, std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                                 std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                                 std::bit_cast<float>(0x7f800001u), std::numeric_limits<float>::max(),
                                 std::numeric_limits<float>::denorm_min(), 65504.0f, 65520.0f, 65519.996f, 1e-8f});
    for (const auto& p : paths<F>::all()) {
        CAPTURE(p.name);
        for (std::size_t offset : {0, 1, 3}) {
            std::vector<float> wide(every.size() - offset);
            p.widen(every.data() + offset, wide.data(), wide.size());
            for (std::size_t i = 0; i < wide.size(); ++i)
                if (bits(wide[i]) != bits(from_half<F>(every[offset + i]))) FAIL("widen " << every[offset + i]);
            std::vector<std::uint16_t> narrow(floats.size() - offset);
            p.narrow(floats.data() + offset, narrow.data(), narrow.size());
            for (std::size_t i = 0; i < narrow.size(); ++i)
                if (narrow[i] != to_half<F>(floats[offset + i])) FAIL("narrow " << floats[offset + i] << " bits " << bits(floats[offset + i]));
        }
    }
}

template <half_format F>
void check_dot_and_axpy() {
    rng gen(7);
    std::vector<float> x(140), y(140);
    std::vector<std::uint16_t> h(140);
    for (auto& v : x) v = static_cast<float>(gen.normal());
    for (auto& v : h) v = to_half<F>(static_cast<float>(gen.normal()));
    for (const auto& p : paths<F>::all()) {
        CAPTURE(p.name);
        for (std::size_t offset : {0, 1, 5})
            for (std::size_t n = 0; n + offset <= 130; ++n) {
                CAPTURE(offset, n);
                double exact = 0, magnitude = 0;
                for (std::size_t i = 0; i < n; ++i) {
                    const double term = double(x[offset + i]) * from_half<F>(h[offset + i]);
                    exact += term, magnitude += std::fabs(term);
                }
                // float sums of n terms: each rounding at most 2^-24 of a partial sum.
                const double bound = double(n + 1) * std::ldexp(1.0, -24) * magnitude;
                REQUIRE(std::fabs(p.dot(x.data() + offset, h.data() + offset, n) - exact) <= bound);
                for (std::size_t i = 0; i < y.size(); ++i) y[i] = float(i) * 0.25f;
                const float alpha = -0.75f;
                p.axpy(alpha, h.data() + offset, y.data() + offset, n);
                for (std::size_t i = 0; i < y.size(); ++i) {
                    const bool inside = i >= offset && i < offset + n;
                    const double expected = float(i) * 0.25 + (inside ? alpha * double(from_half<F>(h[i])) : 0.0);
                    // one FMA: a single rounding of the exact result
                    REQUIRE(std::fabs(y[i] - expected) <= std::ldexp(std::fabs(expected), -24));
                }
            }
    }
}

}  // namespace

TEST_CASE("f16 vectors: widen and narrow are bit-exact on every path", "[quant][half_vector]") {
    check_conversions<half_format::f16>();
}
TEST_CASE("bf16 vectors: widen and narrow are bit-exact on every path", "[quant][half_vector]") {
    check_conversions<half_format::bf16>();
}
TEST_CASE("f16 vectors: dot and axpy on every path against float64", "[quant][half_vector]") {
    check_dot_and_axpy<half_format::f16>();
}
TEST_CASE("bf16 vectors: dot and axpy on every path against float64", "[quant][half_vector]") {
    check_dot_and_axpy<half_format::bf16>();
}
