// weight_matrix: every kernel this build compiles in and this CPU runs, for every
// storage type, against a float64 triple loop over the dequantised weights (and, for
// the block types, the dequantised Q8_0 / Q8_1 / Q8_K activations: what the format says
// the product is; for Q4_1 and Q5_1 with Q8_1's rounded s in place of d_x sum q_x, the
// m_w s_x term ggml multiplies, see quant/q4_q5.hpp) and against the scalar kernel;
// over awkward sizes (rows 1..17 and 33; out_dim 1, 31, 33, 100; in_dim 1, 31, 32,
// 33, 100, 255, or 32, 96, 256 for the types that need whole blocks of 32, or 256, 768,
// 2304 for the K-quants, whose rows are whole super-blocks), strided inputs that start
// off the vector alignment,
// folded column scales, row scales, accumulation, and work split into units and rows
// as threads would take them.
//
// Tolerance: the kernels sum in float (or double), in their own order, so an output
// may differ from the exact sum of its terms by the rounding of a sum of in_dim
// products: |got - want| <= 4 (in_dim + 2) eps (sum of |terms|) |row_scale|, plus
// 4 eps |previous value| when accumulating. Against the scalar kernel, twice that.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/rng.hpp"
#include "kvdecode/quant/q4_q5.hpp"
#include "kvdecode/quant/weight_matrix.hpp"
#include "kvdecode/simd/packed_matmul.hpp"

using kvdecode::kernel_isa;
using kvdecode::matrix_product;
using kvdecode::weight_matrix;
using kvdecode::weight_type;

namespace {

const kernel_isa all_isas[] = {kernel_isa::scalar, kernel_isa::sse2, kernel_isa::avx2, kernel_isa::avx512};

template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed) {
    kvdecode::rng gen(seed);
    std::vector<T> v(n);
    for (T& x : v) x = static_cast<T>(gen.normal());
    return v;
}

// The exact product of what the matrix stores with what the kernels multiply it by.
struct expected {
    std::vector<double> value, magnitude;  // (rows, out_dim): sum of terms, sum of |terms| (row scale applied)
};

// Types whose activations are quantised to Q8_0 (Q8_1 shares its quants and d); the
// K-quants' go to Q8_K.
bool quantised_activations(weight_type t) {
    return t != weight_type::f32 && t != weight_type::f16 && t != weight_type::bf16 && !kvdecode::is_k_quant(t);
}
bool has_min(weight_type t) { return t == weight_type::q4_1 || t == weight_type::q5_1; }
bool whole_blocks(weight_type t) { return quantised_activations(t) && t != weight_type::q8_0; }

// The float16 minimum m of each block of each row (Q4_1, Q5_1), as the matrix quantised
// W (out_dim, in_dim) with the column scales folded in.
std::vector<std::vector<double>> block_minimums(weight_type type, const std::vector<float>& w, const std::vector<float>& column_scale,
                                                std::size_t out_dim, std::size_t in_dim) {
    using namespace kvdecode::quant;
    std::vector<std::vector<double>> mins(out_dim);
    std::vector<float> row(in_dim);
    for (std::size_t o = 0; o < out_dim; ++o) {
        for (std::size_t k = 0; k < in_dim; ++k) row[k] = w[o * in_dim + k] * column_scale[k];
        for (std::size_t k = 0; k < in_dim; k += 32) {
            const std::uint16_t m = type == weight_type::q4_1 ? quantize_block<block_q4_1>(row.data() + k).m
                                                              : quantize_block<block_q5_1>(row.data() + k).m;
            mins[o].push_back(f16_to_f32(m));
        }
    }
    return mins;
}

template <class T>
expected reference_product(const weight_matrix<T>& m, const std::vector<std::vector<double>>& w, const T* in,
                           std::size_t in_stride, std::size_t rows, const T* row_scale,
                           const std::vector<std::vector<double>>& mins = {}) {
    const std::size_t in_dim = m.in_dim(), out_dim = m.out_dim();
    expected e{std::vector<double>(rows * out_dim), std::vector<double>(rows * out_dim)};
    std::vector<double> x(in_dim);
    std::vector<double> s_correction, s_magnitude;  // per block: s - d_x sum q_x, and |s|
    for (std::size_t r = 0; r < rows; ++r) {
        const T* row = in + r * in_stride;
        if constexpr (std::is_same_v<T, float>) {
            if (has_min(m.type())) {  // Q8_1: Q8_0's values, and the rounded s the kernels use
                std::vector<kvdecode::quant::block_q8_1> blocks(kvdecode::quant::q8_0_blocks(in_dim));
                kvdecode::quant::quantize_row_q8_1(row, blocks.data(), in_dim);
                s_correction.assign(blocks.size(), 0.0);
                s_magnitude.assign(blocks.size(), 0.0);
                for (std::size_t b = 0; b < blocks.size(); ++b) {
                    const double d = kvdecode::quant::f16_to_f32(blocks[b].d), s = kvdecode::quant::f16_to_f32(blocks[b].s);
                    double sum = 0;
                    for (std::size_t i = 0; i < 32; ++i) {
                        x[32 * b + i] = d * blocks[b].qs[i];
                        sum += blocks[b].qs[i];
                    }
                    s_correction[b] = s - d * sum;
                    s_magnitude[b] = std::fabs(s);
                }
            } else if (quantised_activations(m.type())) {  // the activations as the kernels see them: Q8_0 too
                std::vector<kvdecode::quant::block_q8_0> blocks(kvdecode::quant::q8_0_blocks(in_dim));
                std::vector<float> back(in_dim);
                kvdecode::quant::quantize_row_q8_0(row, blocks.data(), in_dim);
                kvdecode::quant::dequantize_row_q8_0(blocks.data(), back.data(), in_dim);
                std::copy(back.begin(), back.end(), x.begin());
            } else if (kvdecode::is_k_quant(m.type())) {  // K-quants: Q8_K activations
                std::vector<kvdecode::quant::block_q8_k> blocks(kvdecode::quant::k_blocks(in_dim));
                std::vector<float> back(in_dim);
                kvdecode::quant::quantize_row_q8_k(row, blocks.data(), in_dim);
                kvdecode::quant::dequantize_row_q8_k(blocks.data(), back.data(), in_dim);
                std::copy(back.begin(), back.end(), x.begin());
            } else {
                std::copy(row, row + in_dim, x.begin());
            }
        } else {
            std::copy(row, row + in_dim, x.begin());
        }
        const double scale = row_scale ? double(row_scale[r]) : 1.0;
        for (std::size_t o = 0; o < out_dim; ++o) {
            double sum = 0, magnitude = 0;
            for (std::size_t k = 0; k < in_dim; ++k) {
                sum += w[o][k] * x[k];
                magnitude += std::fabs(w[o][k] * x[k]);
            }
            for (std::size_t b = 0; b < s_correction.size(); ++b) {
                sum += mins[o][b] * s_correction[b];
                magnitude += std::fabs(mins[o][b]) * s_magnitude[b];
            }
            e.value[r * out_dim + o] = sum * scale;
            e.magnitude[r * out_dim + o] = magnitude * std::fabs(scale);
        }
    }
    return e;
}

// The first output outside its bound, or an empty string.
template <class T>
std::string compare(const std::vector<T>& got, const std::vector<T>& before, const expected& want,
                    const std::vector<T>* other, std::size_t rows, std::size_t out_dim, std::size_t out_stride,
                    std::size_t in_dim, bool accumulate) {
    const double eps = std::numeric_limits<T>::epsilon();
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t o = 0; o < out_stride; ++o) {
            const std::size_t i = r * out_stride + o;
            auto where = [&] {
                std::ostringstream s;
                s << "row " << r << ", output " << o << ": got " << got[i];
                return s.str();
            };
            if (o >= out_dim) {
                if (got[i] != before[i]) return where() + ", past out_dim, was changed";
                continue;
            }
            const double bound = 4 * double(in_dim + 2) * eps * want.magnitude[r * out_dim + o] +
                                 (accumulate ? 4 * eps * std::fabs(double(before[i])) : 0.0);
            const double exact = want.value[r * out_dim + o] + (accumulate ? double(before[i]) : 0.0);
            if (!(std::fabs(double(got[i]) - exact) <= bound))
                return where() + ", want " + std::to_string(exact) + " within " + std::to_string(bound);
            if (other && !(std::fabs(double(got[i]) - double((*other)[i])) <= 2 * bound))
                return where() + ", scalar kernel gave " + std::to_string((*other)[i]);
        }
    return {};
}

// One matrix against every kernel over the rows of the brief, work split three ways.
template <class T>
void check_matrix(weight_type type, std::size_t out_dim, std::size_t in_dim) {
    const auto w = random_vector<T>(out_dim * in_dim, 1000 * out_dim + in_dim);
    const auto column_scale = random_vector<T>(in_dim, 7 + in_dim);
    const weight_matrix<T> m(type, w.data(), out_dim, in_dim, column_scale.data());
    std::vector<std::vector<double>> stored(out_dim, std::vector<double>(in_dim));
    std::vector<T> row(in_dim);
    for (std::size_t o = 0; o < out_dim; ++o) {
        m.dequantize_row(o, row.data());
        std::copy(row.begin(), row.end(), stored[o].begin());
    }
    std::vector<std::vector<double>> mins;
    if constexpr (std::is_same_v<T, float>)
        if (has_min(type)) mins = block_minimums(type, w, column_scale, out_dim, in_dim);
    const std::size_t in_stride = in_dim + 3, out_stride = out_dim + 2;
    std::vector<std::size_t> row_counts;
    for (std::size_t rows = 1; rows <= 17; ++rows) row_counts.push_back(rows);
    row_counts.push_back(33);
    for (std::size_t rows : row_counts) {
        // One element in: every activation row starts off the vector alignment.
        const auto in_storage = random_vector<T>(1 + rows * in_stride, rows + 31 * in_dim);
        const T* in = in_storage.data() + 1;
        const auto row_scale = random_vector<T>(rows, 5 + rows);
        const T* scale = rows % 3 == 2 ? nullptr : row_scale.data();  // sometimes no row scale
        const expected want = reference_product(m, stored, in, in_stride, rows, scale, mins);
        kvdecode::aligned_buffer<std::byte> scratch(m.scratch_bytes(rows));
        for (bool accumulate : {false, true}) {
            const auto before = random_vector<T>(rows * out_stride, 11 + rows);
            std::vector<T> scalar_out;
            for (kernel_isa isa : all_isas) {
                if (!weight_matrix<T>::has_kernel(type, isa)) continue;
                CAPTURE(kvdecode::to_string(type), kvdecode::to_string(isa), rows, out_dim, in_dim, accumulate, scale != nullptr);
                std::vector<T> out = before;
                matrix_product<T> p{.in = in, .in_stride = in_stride, .rows = rows, .row_scale = scale, .out = out.data(),
                                    .out_stride = out_stride, .accumulate = accumulate};
                // Rows prepared in two parts, units multiplied in three, as threads would.
                m.prepare(p, scratch.data(), 0, rows / 2);
                m.prepare(p, scratch.data(), rows / 2, rows);
                const std::size_t u = m.units();
                m.multiply_on(isa, p, scratch.data(), 0, u / 3);
                m.multiply_on(isa, p, scratch.data(), u / 3, 2 * u / 3);
                m.multiply_on(isa, p, scratch.data(), 2 * u / 3, u);
                const std::string error = compare(out, before, want, isa == kernel_isa::scalar ? nullptr : &scalar_out, rows,
                                                  out_dim, out_stride, in_dim, accumulate);
                INFO(error);
                REQUIRE(error.empty());
                if (isa == kernel_isa::scalar) scalar_out = out;
            }
        }
    }
}

template <class T>
void check_every_size(weight_type type) {
    const std::vector<std::size_t> in_dims = kvdecode::is_k_quant(type) ? std::vector<std::size_t>{256, 768, 2304}
                                             : whole_blocks(type)          ? std::vector<std::size_t>{32, 96, 256}
                                                                           : std::vector<std::size_t>{1, 31, 32, 33, 100, 255};
    for (std::size_t in_dim : in_dims)
        for (std::size_t out_dim : {1, 31, 33, 100}) check_matrix<T>(type, out_dim, in_dim);
}

// An in_dim every type takes, 70 where it may (not a whole number of blocks); the
// K-quants need multiples of 256.
std::size_t some_in_dim(weight_type type) { return kvdecode::is_k_quant(type) ? 256 : whole_blocks(type) ? 96 : 70; }

}  // namespace

TEST_CASE("weight_matrix kernels: f32 on every instruction set", "[quant][weight_matrix]") {
    check_every_size<float>(weight_type::f32);
    check_every_size<double>(weight_type::f32);
}

TEST_CASE("weight_matrix kernels: f16 on every instruction set", "[quant][weight_matrix]") {
    check_every_size<float>(weight_type::f16);
}

TEST_CASE("weight_matrix kernels: bf16 on every instruction set", "[quant][weight_matrix]") {
    check_every_size<float>(weight_type::bf16);
}

TEST_CASE("weight_matrix kernels: q8_0 on every instruction set", "[quant][weight_matrix]") {
    check_every_size<float>(weight_type::q8_0);
}

TEST_CASE("weight_matrix kernels: q4_0, q4_1, q5_0, q5_1 on every instruction set", "[quant][weight_matrix]") {
    for (weight_type type : {weight_type::q4_0, weight_type::q4_1, weight_type::q5_0, weight_type::q5_1}) {
        CAPTURE(kvdecode::to_string(type));
        check_every_size<float>(type);
    }
}

TEST_CASE("weight_matrix kernels: K-quants on every instruction set", "[quant][weight_matrix]") {
    for (weight_type type : {weight_type::q2_k, weight_type::q3_k, weight_type::q4_k, weight_type::q5_k, weight_type::q6_k})
        check_every_size<float>(type);
}

TEST_CASE("weight_matrix reports the kernels it has and runs the best one", "[quant][weight_matrix]") {
    for (weight_type type : kvdecode::all_weight_types) {
        REQUIRE(weight_matrix<float>::has_kernel(type, kernel_isa::scalar));
        REQUIRE(weight_matrix<double>::has_kernel(type, kernel_isa::scalar) == (type == weight_type::f32));
        const kernel_isa best = weight_matrix<float>::best_kernel(type);
        REQUIRE(weight_matrix<float>::has_kernel(type, best));
        std::ostringstream ran;
        for (kernel_isa isa : all_isas)
            if (weight_matrix<float>::has_kernel(type, isa)) ran << ' ' << kvdecode::to_string(isa);
        WARN(kvdecode::to_string(type) << " kernels tested on this machine:" << ran.str() << " (multiply runs "
                                       << kvdecode::to_string(best) << ")");
    }
    // What multiply() runs equals what its named kernel gives.
    const auto w = random_vector<float>(100 * 256, 3);
    const auto x = random_vector<float>(5 * 256, 4);
    for (weight_type type : kvdecode::all_weight_types) {
        const std::size_t in_dim = some_in_dim(type);
        const weight_matrix<float> m(type, w.data(), 100, in_dim);
        kvdecode::aligned_buffer<std::byte> scratch(m.scratch_bytes(5));
        std::vector<float> a(5 * 100), b(5 * 100);
        matrix_product<float> p{.in = x.data(), .in_stride = in_dim, .rows = 5, .out = a.data(), .out_stride = 100};
        m.prepare(p, scratch.data(), 0, 5);
        m.multiply(p, scratch.data(), 0, m.units());
        p.out = b.data();
        m.multiply_on(weight_matrix<float>::best_kernel(type), p, scratch.data(), 0, m.units());
        REQUIRE(a == b);
        for (kernel_isa isa : all_isas)
            if (!weight_matrix<float>::has_kernel(type, isa))
                REQUIRE_THROWS_WITH(m.multiply_on(isa, p, scratch.data(), 0, m.units()),
                                    Catch::Contains("no " + std::string(kvdecode::to_string(isa)) + " kernel"));
    }
}

TEST_CASE("f32 weight_matrix is packed_matmul: the same layout and kernel, bit for bit", "[quant][weight_matrix]") {
    const std::size_t out_dim = 70, in_dim = 45, rows = 13;
    const auto w = random_vector<float>(out_dim * in_dim, 1);
    const auto gain = random_vector<float>(in_dim, 2);
    const auto x = random_vector<float>(rows * in_dim, 3);
    const auto rs = random_vector<float>(rows, 4);
    const weight_matrix<float> m(weight_type::f32, w.data(), out_dim, in_dim, gain.data());
    const kvdecode::simd::packed_layout<float> layout{out_dim, in_dim};
    kvdecode::aligned_buffer<float> packed(layout.elements());
    kvdecode::simd::pack_matrix(w.data(), layout, gain.data(), packed.data());
    REQUIRE(m.bytes() == layout.elements() * sizeof(float));
    REQUIRE(m.units() == layout.panels());

    std::vector<float> a(rows * out_dim), b(rows * out_dim);
    m.multiply({.in = x.data(), .in_stride = in_dim, .rows = rows, .row_scale = rs.data(), .out = a.data(), .out_stride = out_dim},
               nullptr, 0, m.units());
    kvdecode::simd::packed_product<float> pp;
    pp.in = x.data(), pp.in_stride = in_dim, pp.rows = rows, pp.row_scale = rs.data(), pp.w = packed.data(), pp.layout = layout;
    pp.out = b.data(), pp.out_stride = out_dim;
    kvdecode::simd::packed_matmul(pp, 0, layout.panels());
    REQUIRE(a == b);
}

TEST_CASE("the scalar Q8_0 kernel computes the reference dot exactly", "[quant][weight_matrix]") {
    const std::size_t out_dim = 40, in_dim = 100, rows = 3;
    const auto w = random_vector<float>(out_dim * in_dim, 8);
    const auto x = random_vector<float>(rows * in_dim, 9);
    const weight_matrix<float> m(weight_type::q8_0, w.data(), out_dim, in_dim);
    kvdecode::aligned_buffer<std::byte> scratch(m.scratch_bytes(rows));
    std::vector<float> out(rows * out_dim);
    const matrix_product<float> p{.in = x.data(), .in_stride = in_dim, .rows = rows, .out = out.data(), .out_stride = out_dim};
    m.prepare(p, scratch.data(), 0, rows);
    m.multiply_on(kernel_isa::scalar, p, scratch.data(), 0, m.units());
    using namespace kvdecode::quant;
    const std::size_t nb = q8_0_blocks(in_dim);
    std::vector<block_q8_0> wb(nb), xb(nb);
    for (std::size_t r = 0; r < rows; ++r) {
        quantize_row_q8_0(x.data() + r * in_dim, xb.data(), in_dim);
        for (std::size_t o = 0; o < out_dim; ++o) {
            quantize_row_q8_0(w.data() + o * in_dim, wb.data(), in_dim);
            REQUIRE(out[r * out_dim + o] == dot_q8_0(wb.data(), xb.data(), nb));
        }
    }
}

namespace {

// Outputs of `m` for `rows` rows of x on one instruction set, units split at `cuts`
// (each cut a unit index, in order), rows prepared in one go.
std::vector<float> q8_0_product(const weight_matrix<float>& m, kernel_isa isa, const float* x, std::size_t rows,
                                const std::vector<std::size_t>& cuts = {}) {
    std::vector<float> out(rows * m.out_dim(), -1.0f);
    kvdecode::aligned_buffer<std::byte> scratch(m.scratch_bytes(rows));
    const matrix_product<float> p{.in = x, .in_stride = m.in_dim(), .rows = rows, .out = out.data(), .out_stride = m.out_dim()};
    m.prepare(p, scratch.data(), 0, rows);
    std::size_t begin = 0;
    for (std::size_t cut : cuts) m.multiply_on(isa, p, scratch.data(), begin, cut), begin = cut;
    m.multiply_on(isa, p, scratch.data(), begin, m.units());
    return out;
}

// Every kernel sums exact block dots in block order, whatever rows it tiles together:
// the scalar kernel's bits.
void check_q8_0_bits(const weight_matrix<float>& m, const std::vector<float>& x, std::size_t rows) {
    const std::vector<float> want = q8_0_product(m, kernel_isa::scalar, x.data(), rows);
    for (kernel_isa isa : {kernel_isa::avx2, kernel_isa::avx512}) {
        if (!weight_matrix<float>::has_kernel(weight_type::q8_0, isa)) continue;
        CAPTURE(kvdecode::to_string(isa), rows, m.out_dim(), m.in_dim());
        REQUIRE(q8_0_product(m, isa, x.data(), rows) == want);
    }
}

}  // namespace

TEST_CASE("Q8_0 kernels give the scalar kernel's bits for any rows, in_dim and unit split", "[quant][weight_matrix]") {
    // 33 outputs: two full groups of 16, then one output alone in a padded group.
    const std::size_t out_dim = 33;
    SECTION("rows 1 .. 33 of one matrix") {
        const std::size_t in_dim = 96;
        const auto w = random_vector<float>(out_dim * in_dim, 21);
        const weight_matrix<float> m(weight_type::q8_0, w.data(), out_dim, in_dim);
        for (std::size_t rows : {1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 33}) check_q8_0_bits(m, random_vector<float>(rows * in_dim, rows), rows);
    }
    SECTION("enough groups for every stream count (8 groups at once for one row, 2 for several), and groups left over") {
        const std::size_t out = 300, in_dim = 96;  // 19 groups, the last of 12 outputs
        const auto w = random_vector<float>(out * in_dim, 27);
        const weight_matrix<float> m(weight_type::q8_0, w.data(), out, in_dim);
        for (std::size_t rows : {1, 2, 3, 8, 9, 17}) {
            const auto x = random_vector<float>(rows * in_dim, 28 + rows);
            check_q8_0_bits(m, x, rows);
            for (kernel_isa isa : {kernel_isa::avx2, kernel_isa::avx512})
                if (weight_matrix<float>::has_kernel(weight_type::q8_0, isa))
                    REQUIRE(q8_0_product(m, isa, x.data(), rows, {1, 3, 4, 9}) == q8_0_product(m, kernel_isa::scalar, x.data(), rows));
        }
    }
    SECTION("in_dim every multiple of 32 up to 4096, and some that end in a partial block") {
        std::vector<std::size_t> in_dims = {1, 31, 33, 100, 255, 4095};
        for (std::size_t n = 32; n <= 4096; n += 32) in_dims.push_back(n);
        for (std::size_t in_dim : in_dims) {
            const auto w = random_vector<float>(out_dim * in_dim, in_dim);
            const weight_matrix<float> m(weight_type::q8_0, w.data(), out_dim, in_dim);
            const std::size_t rows = in_dim % 4 == 0 ? 9 : in_dim % 4 == 1 ? 1 : in_dim % 4 == 2 ? 17 : 4;
            check_q8_0_bits(m, random_vector<float>(rows * in_dim, in_dim + 1), rows);
        }
    }
    SECTION("a row alone (first of 4) equals the same row inside any tile, and odd unit splits the whole product") {
        const std::size_t out = 200, in_dim = 160, rows = 13;  // 7 units, the last of 8 outputs
        const auto w = random_vector<float>(out * in_dim, 22);
        const auto x = random_vector<float>((rows + 3) * in_dim, 23);
        const weight_matrix<float> m(weight_type::q8_0, w.data(), out, in_dim);
        for (kernel_isa isa : all_isas) {
            if (!weight_matrix<float>::has_kernel(weight_type::q8_0, isa)) continue;
            CAPTURE(kvdecode::to_string(isa));
            const std::vector<float> all = q8_0_product(m, isa, x.data(), rows);
            // Rows r .. r + 3 as a product of their own (x has 3 rows to spare).
            for (std::size_t r = 0; r < rows; ++r) {
                const std::vector<float> four = q8_0_product(m, isa, x.data() + r * in_dim, 4);
                CAPTURE(r);
                REQUIRE(std::equal(all.begin() + static_cast<std::ptrdiff_t>(r * out),
                                   all.begin() + static_cast<std::ptrdiff_t>((r + 1) * out), four.begin()));
            }
            REQUIRE(q8_0_product(m, isa, x.data(), rows, {1, 4, 5}) == all);
            REQUIRE(q8_0_product(m, isa, x.data(), rows, {3, 6}) == all);
        }
    }
    SECTION("one row (a greedy step) equals the same row among 2 or 3, split or whole") {
        const std::size_t out = 203, in_dim = 320;  // 7 units, the last group of 11 outputs
        const auto w = random_vector<float>(out * in_dim, 25);
        const auto x = random_vector<float>(3 * in_dim, 26);
        const weight_matrix<float> m(weight_type::q8_0, w.data(), out, in_dim);
        for (kernel_isa isa : all_isas) {
            if (!weight_matrix<float>::has_kernel(weight_type::q8_0, isa)) continue;
            CAPTURE(kvdecode::to_string(isa));
            const std::vector<float> one = q8_0_product(m, isa, x.data(), 1);
            for (std::size_t rows : {2, 3}) {
                const std::vector<float> several = q8_0_product(m, isa, x.data(), rows);
                REQUIRE(std::equal(one.begin(), one.end(), several.begin()));
            }
            REQUIRE(q8_0_product(m, isa, x.data(), 1, {1, 2, 5}) == one);
        }
    }
    SECTION("stored blocks with the quant -128 (other quantisers write it), against the exact integer dot") {
        using kvdecode::quant::block_q8_0;
        const std::size_t in_dim = 64, rows = 3, nb = 2;
        std::vector<block_q8_0> blocks(out_dim * nb);
        kvdecode::rng gen(24);
        for (block_q8_0& b : blocks) {
            b.d = kvdecode::quant::f32_to_f16(0.25f);  // a power of two: every product below is exact
            for (std::int8_t& q : b.qs) q = static_cast<std::int8_t>(gen.normal() > 0 ? -128 : 127);
        }
        const weight_matrix<float> m(weight_type::q8_0, std::as_bytes(std::span(blocks)), out_dim, in_dim);
        // Rows whose blocks quantise to +-127 and d = 1/127 * 2^k: x = +-2^k.
        std::vector<float> x(rows * in_dim);
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = (i * 7 % 5 < 2 ? -1.0f : 1.0f) * static_cast<float>(1 << (i / in_dim));
        check_q8_0_bits(m, x, rows);
        const std::vector<float> got = q8_0_product(m, kernel_isa::scalar, x.data(), rows);
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t o = 0; o < out_dim; ++o) {
                double want = 0;
                for (std::size_t b = 0; b < nb; ++b) {
                    const float dx = kvdecode::quant::f16_to_f32(kvdecode::quant::f32_to_f16(static_cast<float>(1 << r) / 127.0f));
                    for (std::size_t i = 0; i < 32; ++i)
                        want += 0.25 * dx * blocks[o * nb + b].qs[i] * (x[r * in_dim + b * 32 + i] < 0 ? -127.0 : 127.0);
                }
                CAPTURE(r, o);
                REQUIRE(double(got[r * out_dim + o]) == Approx(want).epsilon(1e-6));
            }
    }
}

namespace {

// A row through a K-quant's reference quantiser and back.
template <class Block>
std::vector<float> k_round_trip(void (*quantize)(const float*, Block*, std::size_t) noexcept, const float* row,
                                std::size_t n) {
    std::vector<Block> blocks(kvdecode::quant::k_blocks(n));
    quantize(row, blocks.data(), n);
    std::vector<float> out(n);
    kvdecode::quant::dequantize_row_k(blocks.data(), out.data(), n);
    return out;
}

}  // namespace

TEST_CASE("weight_matrix stores what each type says: dequantize_row", "[quant][weight_matrix]") {
    using namespace kvdecode::quant;
    const std::size_t out_dim = 35;
    for (weight_type type : kvdecode::all_weight_types) {
        const std::size_t in_dim = kvdecode::is_k_quant(type) ? 512 : whole_blocks(type) ? 64 : 40;
        const auto w = random_vector<float>(out_dim * in_dim, 12);
        const auto gain = random_vector<float>(in_dim, 13);
        std::vector<float> scaled(out_dim * in_dim);
        for (std::size_t i = 0; i < scaled.size(); ++i) scaled[i] = w[i] * gain[i % in_dim];
        std::vector<float> got(in_dim), want(in_dim);
        std::vector<block_q8_0> blocks(q8_0_blocks(in_dim));
        const weight_matrix<float> m(type, w.data(), out_dim, in_dim, gain.data());
        for (std::size_t o = 0; o < out_dim; ++o) {
            const float* row = scaled.data() + o * in_dim;
            for (std::size_t k = 0; k < in_dim; ++k) {
                switch (type) {
                    case weight_type::f32: want[k] = row[k]; break;
                    case weight_type::f16: want[k] = f16_to_f32(f32_to_f16(row[k])); break;
                    case weight_type::bf16: want[k] = bf16_to_f32(f32_to_bf16(row[k])); break;
                    default: break;
                }
            }
            auto round_trip = [&]<class Block>(Block*) {
                std::vector<Block> b(in_dim / 32);
                quantize_row_legacy(row, b.data(), in_dim);
                dequantize_row_legacy(b.data(), want.data(), in_dim);
            };
            switch (type) {
                case weight_type::q8_0:
                    quantize_row_q8_0(row, blocks.data(), in_dim);
                    dequantize_row_q8_0(blocks.data(), want.data(), in_dim);
                    break;
                case weight_type::q4_0: round_trip(static_cast<block_q4_0*>(nullptr)); break;
                case weight_type::q4_1: round_trip(static_cast<block_q4_1*>(nullptr)); break;
                case weight_type::q5_0: round_trip(static_cast<block_q5_0*>(nullptr)); break;
                case weight_type::q5_1: round_trip(static_cast<block_q5_1*>(nullptr)); break;
                case weight_type::q2_k: want = k_round_trip(quantize_row_q2_k, row, in_dim); break;
                case weight_type::q3_k: want = k_round_trip(quantize_row_q3_k, row, in_dim); break;
                case weight_type::q4_k: want = k_round_trip(quantize_row_q4_k, row, in_dim); break;
                case weight_type::q5_k: want = k_round_trip(quantize_row_q5_k, row, in_dim); break;
                case weight_type::q6_k: want = k_round_trip(quantize_row_q6_k, row, in_dim); break;
                default: break;  // the float types: set above
            }
            m.dequantize_row(o, got.data());
            CAPTURE(kvdecode::to_string(type), o);
            REQUIRE(got == want);
        }
        REQUIRE_THROWS_WITH(m.dequantize_row(out_dim, got.data()), Catch::Contains("row 35 of 35"));
    }
}

TEST_CASE("weight_matrix sizes: bytes streamed, units, scratch", "[quant][weight_matrix]") {
    const std::vector<float> w(100 * 33, 0.5f);
    const weight_matrix<float> f32(weight_type::f32, w.data(), 100, 33), f16(weight_type::f16, w.data(), 100, 33),
        bf16(weight_type::bf16, w.data(), 100, 33), q8(weight_type::q8_0, w.data(), 100, 33);
    REQUIRE(f32.bytes() == 4 * 32 * 33 * 4);  // 4 panels of 32 outputs, 33 columns, padding included
    REQUIRE(f16.bytes() == 4 * 32 * 33 * 2);
    REQUIRE(bf16.bytes() == 4 * 32 * 33 * 2);
    REQUIRE(q8.bytes() == 7 * 2 * 544);       // 7 groups of 16 outputs (the last padded), 2 blocks of 32 values
    for (const auto* m : {&f32, &f16, &bf16, &q8}) {
        REQUIRE(m->units() == 4);
        REQUIRE(m->outputs_per_unit() == 32);
        REQUIRE(m->out_dim() == 100);
        REQUIRE(m->in_dim() == 33);
    }
    REQUIRE(f32.scratch_bytes(3) == 0);
    REQUIRE(f16.scratch_bytes(3) == 0);
    // 2 blocks: 64 quants + 2 float scales (two 64-byte lines), then 2 int32 offset terms (one line)
    REQUIRE(q8.scratch_bytes(3) == 3 * 192);
    REQUIRE(q8.scratch_bytes(0) == 0);
    // The legacy types: whole blocks of 32; scratch in groups of 8 blocks of 384 bytes
    // (kernels_q4_q5.hpp), the 2 blocks here padded to one.
    const std::vector<float> w64(100 * 64, 0.5f);
    struct legacy_size {
        weight_type type;
        std::size_t block_bytes, scratch_row;
    };
    for (const legacy_size& l : {legacy_size{weight_type::q4_0, 18, 384}, legacy_size{weight_type::q4_1, 20, 384},
                                 legacy_size{weight_type::q5_0, 22, 384}, legacy_size{weight_type::q5_1, 24, 384}}) {
        const weight_matrix<float> m(l.type, w64.data(), 100, 64);
        CAPTURE(kvdecode::to_string(l.type));
        REQUIRE(m.bytes() == 100 * 2 * l.block_bytes);
        REQUIRE(m.bytes() == 100 * kvdecode::row_bytes(l.type, 64));
        REQUIRE(m.units() == 4);
        REQUIRE(m.scratch_bytes(3) == 3 * l.scratch_row);
        REQUIRE_THROWS_WITH(weight_matrix<float>(l.type, w.data(), 100, 33),
                            Catch::Contains(std::string(kvdecode::to_string(l.type))) && Catch::Contains("multiple of 32") &&
                                Catch::Contains("in_dim 33"));
    }
    const std::vector<float> wk(100 * 768, 0.5f);
    const weight_matrix<float> q4k(weight_type::q4_k, wk.data(), 100, 768), q6k(weight_type::q6_k, wk.data(), 100, 768);
    REQUIRE(q4k.bytes() == 100 * 3 * 144);  // 100 rows of 3 super-blocks, as in a GGUF file
    REQUIRE(q6k.bytes() == 100 * 3 * 210);
    REQUIRE(q4k.units() == 4);
    // 3 Q8_K blocks of 292 bytes and 3 x 32 bytes of sums of 32, rows 64-byte aligned
    REQUIRE(q4k.scratch_bytes(3) == 3 * 1024);
    const std::vector<double> wd(100 * 33, 0.5);
    const weight_matrix<double> f64(weight_type::f32, wd.data(), 100, 33);
    REQUIRE(f64.outputs_per_unit() == 16);  // 128-byte panels of doubles
    REQUIRE(f64.units() == 7);
    REQUIRE(f64.bytes() == 7 * 16 * 33 * 8);
}

TEST_CASE("weight_matrix is movable, and a moved-from matrix multiplies nothing", "[quant][weight_matrix]") {
    const auto w = random_vector<float>(64 * 64, 21);
    const auto x = random_vector<float>(64, 22);
    weight_matrix<float> a(weight_type::q8_0, w.data(), 64, 64);
    std::vector<float> before(64), after(64);
    kvdecode::aligned_buffer<std::byte> scratch(a.scratch_bytes(1));
    matrix_product<float> p{.in = x.data(), .in_stride = 64, .rows = 1, .out = before.data(), .out_stride = 64};
    a.prepare(p, scratch.data(), 0, 1);
    a.multiply(p, scratch.data(), 0, a.units());
    weight_matrix<float> b(std::move(a));
    p.out = after.data();
    b.multiply(p, scratch.data(), 0, b.units());
    REQUIRE(before == after);
    REQUIRE(a.units() == 0);
    REQUIRE(a.bytes() == 0);
    a = std::move(b);
    REQUIRE(a.units() == 2);
    REQUIRE(a.type() == weight_type::q8_0);

    // copy(): its own bytes, the same products.
    for (weight_type type : kvdecode::all_weight_types) {
        const std::vector<float> wk = random_vector<float>(40 * 256, 23);
        const weight_matrix<float> original(type, wk.data(), 40, 256);
        const weight_matrix<float> copied = original.copy();
        REQUIRE(copied.type() == type);
        REQUIRE(copied.bytes() == original.bytes());
        const auto xk = random_vector<float>(2 * 256, 24);
        std::vector<float> o1(2 * 40), o2(2 * 40);
        kvdecode::aligned_buffer<std::byte> s(original.scratch_bytes(2));
        matrix_product<float> q{.in = xk.data(), .in_stride = 256, .rows = 2, .out = o1.data(), .out_stride = 40};
        original.prepare(q, s.data(), 0, 2);
        original.multiply(q, s.data(), 0, original.units());
        q.out = o2.data();
        copied.multiply(q, s.data(), 0, copied.units());
        CAPTURE(kvdecode::to_string(type));
        REQUIRE(o1 == o2);
    }
}

TEST_CASE("weight types by name, and bad arguments named", "[quant][weight_matrix]") {
    for (weight_type type : kvdecode::all_weight_types) REQUIRE(kvdecode::parse_weight_type(kvdecode::to_string(type)) == type);
    REQUIRE_THROWS_WITH(kvdecode::parse_weight_type("q7_0"),
                        Catch::Contains("'q7_0'") && Catch::Contains("f32, f16, bf16, q8_0") && Catch::Contains("q5_1"));
    REQUIRE(kvdecode::to_string(kernel_isa::avx512) == "avx512");

    std::vector<float> w(4 * 4, 1.0f);
    REQUIRE_THROWS_WITH(weight_matrix<float>(weight_type::f16, nullptr, 4, 4), Catch::Contains("non-null"));
    REQUIRE_THROWS_WITH(weight_matrix<float>(weight_type::f16, w.data(), 0, 4), Catch::Contains("0 x 4"));
    REQUIRE_THROWS_WITH(weight_matrix<float>(weight_type::f16, w.data(), (std::size_t{1} << 62), 8),
                        Catch::Contains("overflows"));
    const std::vector<double> wd(16, 1.0);
    REQUIRE_THROWS_WITH(weight_matrix<double>(weight_type::q8_0, wd.data(), 4, 4), Catch::Contains("needs float activations"));
    REQUIRE_THROWS_WITH(weight_matrix<double>(weight_type::bf16, wd.data(), 4, 4), Catch::Contains("bf16"));

    w[6] = 70000.0f;  // (1, 2)
    REQUIRE_THROWS_WITH(weight_matrix<float>(weight_type::f16, w.data(), 4, 4),
                        Catch::Contains("weight (1, 2)") && Catch::Contains("f16"));
    REQUIRE_NOTHROW(weight_matrix<float>(weight_type::bf16, w.data(), 4, 4));
    REQUIRE_NOTHROW(weight_matrix<float>(weight_type::q8_0, w.data(), 4, 4));
    const std::vector<float> gain = {1.0f, 1.0f, 1e-3f, 1.0f};  // folded in first: 70 fits
    REQUIRE_NOTHROW(weight_matrix<float>(weight_type::f16, w.data(), 4, 4, gain.data()));
    w[6] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_WITH(weight_matrix<float>(weight_type::q8_0, w.data(), 4, 4),
                        Catch::Contains("weight (1, 2)") && Catch::Contains("not finite"));
    w[6] = 1e10f;
    REQUIRE_THROWS_WITH(weight_matrix<float>(weight_type::q8_0, w.data(), 4, 4), Catch::Contains("scale"));

    // The legacy types: non-finite values named, and blocks whose float16 scale or minimum overflows.
    std::vector<float> wl(2 * 64, 1.0f);
    for (weight_type type : {weight_type::q4_0, weight_type::q4_1, weight_type::q5_0, weight_type::q5_1}) {
        CAPTURE(kvdecode::to_string(type));
        wl[64 + 40] = std::numeric_limits<float>::infinity();
        REQUIRE_THROWS_WITH(weight_matrix<float>(type, wl.data(), 2, 64),
                            Catch::Contains("weight (1, 40)") && Catch::Contains("not finite"));
        wl[64 + 40] = 1e7f;  // scale 1e7 / 8 .. 1e7 / 31: beyond 65504
        REQUIRE_THROWS_WITH(weight_matrix<float>(type, wl.data(), 2, 64),
                            Catch::Contains("(1, 32..63)") && Catch::Contains("float16"));
        wl[64 + 40] = 1e5f;  // fits every scale (1e5 / 8 = 12500), ...
        REQUIRE_NOTHROW(weight_matrix<float>(type, wl.data(), 2, 64));
        wl[64 + 40] = -1e5f;  // ... but not a minimum
        if (type == weight_type::q4_1 || type == weight_type::q5_1)
            REQUIRE_THROWS_WITH(weight_matrix<float>(type, wl.data(), 2, 64), Catch::Contains("minimum"));
        else
            REQUIRE_NOTHROW(weight_matrix<float>(type, wl.data(), 2, 64));
        wl[64 + 40] = 1.0f;
    }
    std::vector<float> wk(2 * 512, 0.25f);
    REQUIRE_THROWS_WITH(weight_matrix<float>(weight_type::q4_k, wk.data(), 2, 192),
                        Catch::Contains("q4_k") && Catch::Contains("multiple of 256") && Catch::Contains("192"));
    for (weight_type type : {weight_type::q2_k, weight_type::q3_k, weight_type::q4_k, weight_type::q5_k, weight_type::q6_k}) {
        CAPTURE(kvdecode::to_string(type));
        REQUIRE_NOTHROW(weight_matrix<float>(type, wk.data(), 2, 512));
        wk[700] = std::numeric_limits<float>::infinity();  // (1, 188)
        REQUIRE_THROWS_WITH(weight_matrix<float>(type, wk.data(), 2, 512),
                            Catch::Contains("weight (1, 188)") && Catch::Contains("not finite"));
        wk[700] = -1e9f;  // its super-block's scale overflows float16
        REQUIRE_THROWS_WITH(weight_matrix<float>(type, wk.data(), 2, 512),
                            Catch::Contains("row 1, columns 0..255") && Catch::Contains("float16"));
        wk[700] = 0.25f;
    }
}
