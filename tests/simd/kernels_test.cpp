// Every SIMD kernel against a plain scalar loop, over sizes around the vector width
// and starts that are not aligned.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/rng.hpp"
#include "kvdecode/simd/axpy.hpp"
#include "kvdecode/simd/dot.hpp"
#include "kvdecode/simd/rms_norm.hpp"
#include "kvdecode/simd/rope.hpp"
#include "kvdecode/simd/packed_matmul.hpp"
#include "kvdecode/simd/softmax.hpp"
#include "kvdecode/simd/swiglu.hpp"

namespace {

const std::size_t sizes[] = {1, 2, 7, 15, 16, 17, 31, 33, 64, 255};

template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed) {
    kvdecode::rng gen(seed);
    std::vector<T> v(n);
    for (T& x : v) x = static_cast<T>(gen.normal());
    return v;
}

template <class T>
double tolerance() {
    return std::is_same_v<T, float> ? 2e-5 : 1e-12;
}

template <class T>
void check_close(const T* got, const std::vector<double>& want, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        REQUIRE(std::abs(static_cast<double>(got[i]) - want[i]) <= tolerance<T>() * (1 + std::abs(want[i])) * 4);
}

}  // namespace

TEMPLATE_TEST_CASE("simd kernels equal scalar loops", "[simd]", float, double) {
    using T = TestType;
    for (std::size_t n : sizes) {
        for (std::size_t offset : {0, 1, 3}) {  // unaligned starts
            CAPTURE(n, offset);
            auto a = random_vector<T>(n + offset, 1 + n), b = random_vector<T>(n + offset, 2 + n);
            const T* x = a.data() + offset;
            const T* y = b.data() + offset;

            double dot = 0;
            for (std::size_t i = 0; i < n; ++i) dot += double(x[i]) * double(y[i]);
            REQUIRE(std::abs(double(kvdecode::simd::dot(x, y, n)) - dot) <= tolerance<T>() * (1 + n));

            std::vector<T> out(b);
            std::vector<double> want(n);
            for (std::size_t i = 0; i < n; ++i) want[i] = double(y[i]) + 0.5 * double(x[i]);
            kvdecode::simd::axpy(T(0.5), x, out.data() + offset, n);
            check_close(out.data() + offset, want, n);

            out = a;
            for (std::size_t i = 0; i < n; ++i) want[i] = 3.0 * double(x[i]);
            kvdecode::simd::scale(out.data() + offset, T(3), n);
            check_close(out.data() + offset, want, n);

            double ss = 0;
            for (std::size_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
            const double inv = 1 / std::sqrt(ss / double(n) + 1e-5);
            for (std::size_t i = 0; i < n; ++i) want[i] = double(x[i]) * inv * double(y[i]);
            kvdecode::simd::rms_norm(x, y, out.data() + offset, n, T(1e-5));
            check_close(out.data() + offset, want, n);

            for (std::size_t i = 0; i < n; ++i) want[i] = double(x[i]) / (1 + std::exp(-double(x[i]))) * double(y[i]);
            kvdecode::simd::swiglu(x, y, out.data() + offset, n);
            check_close(out.data() + offset, want, n);

            out = a;
            double top = -1e300, sum = 0;
            for (std::size_t i = 0; i < n; ++i) top = std::max(top, double(x[i]));
            for (std::size_t i = 0; i < n; ++i) sum += std::exp(double(x[i]) - top);
            for (std::size_t i = 0; i < n; ++i) want[i] = std::exp(double(x[i]) - top) / sum;
            kvdecode::simd::softmax(out.data() + offset, n);
            check_close(out.data() + offset, want, n);
        }
    }
}

TEST_CASE("softmax gives masked entries exactly zero", "[simd]") {
    const float inf = std::numeric_limits<float>::infinity();
    std::vector<float> v = {1, -inf, 2, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, 0};
    kvdecode::simd::softmax(v.data(), v.size());
    const double z = std::exp(1.0) + std::exp(2.0) + 1.0;
    REQUIRE(v[1] == 0.0f);
    REQUIRE(v[16] == 0.0f);
    REQUIRE(v[0] == Approx(std::exp(1.0) / z).epsilon(1e-6));
    REQUIRE(v[17] == Approx(1.0 / z).epsilon(1e-6));
}

TEMPLATE_TEST_CASE("rope kernels rotate the right pairs", "[simd]", float, double) {
    using T = TestType;
    for (std::size_t head_dim : {2, 4, 16, 34, 64, 128}) {
        CAPTURE(head_dim);
        const std::size_t half = head_dim / 2;
        auto x = random_vector<T>(head_dim, head_dim);
        std::vector<T> c(half), s(half);
        for (std::size_t i = 0; i < half; ++i) c[i] = T(std::cos(0.3 * i + 0.1)), s[i] = T(std::sin(0.3 * i + 0.1));

        std::vector<T> got(x);
        kvdecode::simd::rope_rotate_half(got.data(), c.data(), s.data(), head_dim);
        std::vector<double> want(head_dim);
        for (std::size_t i = 0; i < half; ++i) {
            want[i] = double(x[i]) * c[i] - double(x[i + half]) * s[i];
            want[i + half] = double(x[i + half]) * c[i] + double(x[i]) * s[i];
        }
        check_close(got.data(), want, head_dim);

        got = x;
        kvdecode::simd::rope_interleaved(got.data(), c.data(), s.data(), head_dim);
        for (std::size_t i = 0; i < half; ++i) {
            want[2 * i] = double(x[2 * i]) * c[i] - double(x[2 * i + 1]) * s[i];
            want[2 * i + 1] = double(x[2 * i + 1]) * c[i] + double(x[2 * i]) * s[i];
        }
        check_close(got.data(), want, head_dim);
    }
}

// The packed product against a triple loop in double: every compiled-in architecture
// (AVX-512, AVX2, SSE... as the build allows) and the scalar fallback, over awkward
// sizes, strided and unaligned inputs, folded column scales, row scales, accumulation
// and a part of the panels (what one thread computes).
template <class T, class Kernel>
void check_packed_matmul(Kernel kernel) {
    using namespace kvdecode::simd;
    for (std::size_t rows : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 15, 16, 17, 33, 255})
        for (std::size_t in_dim : {1, 7, 15, 16, 17, 33, 255})
            for (std::size_t out_dim : {1, 7, 15, 16, 17, 33, 255}) {
                CAPTURE(rows, in_dim, out_dim);
                const std::size_t in_stride = in_dim + 3, out_stride = out_dim + 2;
                // One element in: the activation rows start off the vector alignment.
                const auto in_storage = random_vector<T>(1 + rows * in_stride, 7);
                const T* in = in_storage.data() + 1;
                const auto w = random_vector<T>(out_dim * in_dim, 8);
                auto column_scale = random_vector<T>(in_dim, 9);
                auto row_scale = random_vector<T>(rows, 10);
                const packed_layout<T> layout{out_dim, in_dim};
                kvdecode::aligned_buffer<T> packed(layout.elements());
                pack_matrix(w.data(), layout, column_scale.data(), packed.data());

                std::vector<double> want(rows * out_stride), bound(rows * out_stride);
                for (std::size_t r = 0; r < rows; ++r)
                    for (std::size_t o = 0; o < out_dim; ++o) {
                        double acc = 0, magnitude = 0;
                        for (std::size_t i = 0; i < in_dim; ++i) {
                            const double term = double(in[r * in_stride + i]) * double(w[o * in_dim + i]) * column_scale[i];
                            acc += term;
                            magnitude += std::abs(term);
                        }
                        want[r * out_stride + o] = acc * row_scale[r];
                        // Rounding of a sum of in_dim products, and of the folded scale.
                        bound[r * out_stride + o] =
                            4 * (in_dim + 2) * std::numeric_limits<T>::epsilon() * (magnitude * std::abs(row_scale[r]) + 1);
                    }
                for (bool accumulate : {false, true}) {
                    auto out = random_vector<T>(rows * out_stride, 11);
                    const auto before = out;
                    packed_product<T> a;
                    a.in = in, a.in_stride = in_stride, a.rows = rows, a.row_scale = row_scale.data();
                    a.w = packed.data(), a.layout = layout, a.out = out.data(), a.out_stride = out_stride;
                    a.accumulate = accumulate;
                    // Two calls on two halves of the panels, as two threads would.
                    const std::size_t half = layout.panels() / 2;
                    kernel(a, 0, half);
                    kernel(a, half, layout.panels());
                    for (std::size_t r = 0; r < rows; ++r)
                        for (std::size_t o = 0; o < out_stride; ++o) {
                            const std::size_t i = r * out_stride + o;
                            if (o >= out_dim) {
                                REQUIRE(out[i] == before[i]);  // nothing past the row's outputs
                                continue;
                            }
                            const double expected = want[i] + (accumulate ? double(before[i]) : 0.0);
                            REQUIRE(std::abs(double(out[i]) - expected) <= bound[i] + (accumulate ? 1e-6 : 0.0));
                        }
                }
            }
}

template <class T, class... Archs>
void check_every_arch(xsimd::arch_list<Archs...>) {
    (
        [] {
            if constexpr (Archs::supported() && xsimd::has_simd_register<T>::value) {
                if (Archs::version() > xsimd::available_architectures().best) return;  // this CPU lacks it
                INFO("architecture " << Archs::name());
                check_packed_matmul<T>([](const auto& a, std::size_t b, std::size_t e) {
                    kvdecode::simd::packed_matmul_for<Archs>(a, b, e);
                });
            }
        }(),
        ...);
}

TEMPLATE_TEST_CASE("packed_matmul equals a triple loop on every architecture", "[simd]", float, double) {
    using T = TestType;
    SECTION("scalar") {
        check_packed_matmul<T>([](const auto& a, std::size_t b, std::size_t e) { kvdecode::simd::packed_matmul_scalar(a, b, e); });
    }
    SECTION("each compiled-in SIMD architecture") { check_every_arch<T>(kvdecode::simd::detail::kernel_archs{}); }
    SECTION("dispatched") {
        check_packed_matmul<T>([](const auto& a, std::size_t b, std::size_t e) { kvdecode::simd::packed_matmul(a, b, e); });
    }
}

TEST_CASE("pack_matrix lays each panel out column by column", "[simd]") {
    using namespace kvdecode::simd;
    // 40 rows of 3 columns: a panel of 32 rows, then one of 8 rows and 24 zero rows.
    const packed_layout<float> layout{40, 3};
    REQUIRE(layout.panels() == 2);
    REQUIRE(layout.panel_stride() == 96);
    std::vector<float> w(40 * 3), scale = {1.0f, 2.0f, -1.0f};
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i + 1);
    std::vector<float> packed(layout.elements(), -1.0f);
    pack_matrix(w.data(), layout, scale.data(), packed.data());
    for (std::size_t q = 0; q < 2; ++q)
        for (std::size_t k = 0; k < 3; ++k)
            for (std::size_t o = 0; o < 32; ++o) {
                const std::size_t row = q * 32 + o;
                const float want = row < 40 ? w[row * 3 + k] * scale[k] : 0.0f;
                REQUIRE(packed[q * 96 + k * 32 + o] == want);
            }
}

namespace {

// Rows [first, first + rows) of x times a packed matrix, panels split at `cuts`.
template <class Arch, class T>
std::vector<T> packed_rows(const kvdecode::simd::packed_product<T>& whole, std::size_t first, std::size_t rows,
                           const std::vector<std::size_t>& cuts = {}) {
    std::vector<T> out(rows * whole.out_stride);
    auto a = whole;
    a.in += first * a.in_stride, a.rows = rows, a.out = out.data();
    std::size_t begin = 0;
    for (std::size_t cut : cuts) kvdecode::simd::packed_matmul_for<Arch>(a, begin, cut), begin = cut;
    kvdecode::simd::packed_matmul_for<Arch>(a, begin, a.layout.panels());
    return out;
}

// Every tile of 3 rows or more sums each output over k in order (1 and 2 rows on a whole
// panel interleave two banks): a row gives the same bits whatever rows share its tile
// (whole panels or halves), and a split of the panels changes nothing.
template <class T, class... Archs>
void check_tile_independence(xsimd::arch_list<Archs...>) {
    (
        [] {
            if constexpr (Archs::supported() && xsimd::has_simd_register<T>::value) {
                if (Archs::version() > xsimd::available_architectures().best) return;
                INFO("architecture " << Archs::name());
                using namespace kvdecode::simd;
                const std::size_t out_dim = 100, in_dim = 77, rows = 36;
                const auto x = random_vector<T>(rows * in_dim, 12);
                const auto w = random_vector<T>(out_dim * in_dim, 13);
                const packed_layout<T> layout{out_dim, in_dim};
                kvdecode::aligned_buffer<T> packed(layout.elements());
                pack_matrix(w.data(), layout, nullptr, packed.data());
                packed_product<T> a;
                a.in = x.data(), a.in_stride = in_dim, a.w = packed.data(), a.layout = layout, a.out_stride = out_dim;
                // Each row as the first of 3, against products of 4 .. 17 and 33 rows.
                std::vector<std::vector<T>> alone(rows);
                for (std::size_t r = 0; r + 3 <= rows; ++r) {
                    const auto three = packed_rows<Archs>(a, r, 3);
                    alone[r].assign(three.begin(), three.begin() + static_cast<std::ptrdiff_t>(out_dim));
                }
                for (std::size_t n : {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 33}) {
                    const auto batch = packed_rows<Archs>(a, 0, n);
                    for (std::size_t r = 0; r < n; ++r) {
                        CAPTURE(n, r);
                        REQUIRE(std::equal(alone[r].begin(), alone[r].end(), batch.begin() + static_cast<std::ptrdiff_t>(r * out_dim)));
                    }
                    for (const std::vector<std::size_t>& cuts : {std::vector<std::size_t>{1}, {1, 2}, {3}}) {
                        CAPTURE(n, cuts.size());
                        REQUIRE(packed_rows<Archs>(a, 0, n, cuts) == batch);
                    }
                }
            }
        }(),
        ...);
}

}  // namespace

TEMPLATE_TEST_CASE("packed_matmul: a row's bits do not depend on the rows tiled with it", "[simd]", float, double) {
    check_tile_independence<TestType>(kvdecode::simd::detail::kernel_archs{});
}
