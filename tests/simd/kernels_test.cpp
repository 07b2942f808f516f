// Every SIMD kernel against a plain scalar loop, over sizes around the vector width
// and starts that are not aligned.

#include <cmath>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/core/rng.hpp"
#include "kvdecode/simd/axpy.hpp"
#include "kvdecode/simd/dot.hpp"
#include "kvdecode/simd/rms_norm.hpp"
#include "kvdecode/simd/rope.hpp"
#include "kvdecode/simd/skinny_matmul.hpp"
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

TEMPLATE_TEST_CASE("skinny_matmul equals a triple loop", "[simd]", float, double) {
    using T = TestType;
    for (std::size_t rows : {1, 2, 5, 16})
        for (std::size_t in_dim : {1, 7, 17, 33})
            for (std::size_t out_dim : {1, 15, 16, 255}) {
                CAPTURE(rows, in_dim, out_dim);
                auto in = random_vector<T>(rows * in_dim, 7);
                auto w = random_vector<T>(out_dim * in_dim, 8);
                auto out = random_vector<T>(rows * out_dim, 9);
                const auto before = out;
                std::vector<double> want(rows * out_dim);
                for (std::size_t r = 0; r < rows; ++r)
                    for (std::size_t o = 0; o < out_dim; ++o) {
                        double acc = 0;
                        for (std::size_t i = 0; i < in_dim; ++i) acc += double(in[r * in_dim + i]) * double(w[o * in_dim + i]);
                        want[r * out_dim + o] = acc;
                    }
                kvdecode::simd::skinny_matmul(in.data(), rows, in_dim, w.data(), out_dim, out.data(), out_dim, false);
                for (std::size_t i = 0; i < want.size(); ++i)
                    REQUIRE(std::abs(out[i] - want[i]) <= tolerance<T>() * (1 + in_dim));
                out = before;
                kvdecode::simd::skinny_matmul(in.data(), rows, in_dim, w.data(), out_dim, out.data(), out_dim, true);
                for (std::size_t i = 0; i < want.size(); ++i)
                    REQUIRE(std::abs(out[i] - (want[i] + before[i])) <= tolerance<T>() * (1 + in_dim));
            }
}
