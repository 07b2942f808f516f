// Q4_0, Q4_1, Q5_0, Q5_1 and Q8_1: block layouts and sizes, dequantisation of
// hand-built blocks (nibble order, fifth-bit order, offsets, minimum), quantisation on
// hand-computed vectors and its error bound, Q8_1's s, the reference dot, the
// prepared activations bit-identical to the reference, and every kernel on every
// instruction set this CPU runs against an exact reference.
//
// Kernel oracle: for each output, the exact value (in double) of what the formats
// define, over the *quantised* activations: sum over blocks of d_w d_x sum_i q_w q_x,
// plus m_w s_x for the _1 types. For the _0 types that is exactly the dot of the
// dequantised rows; for the _1 types it differs from that dot by m_w (s_x - d_x sum q_x)
// per block (s is Q8_1's float16 rounding of d * sum q, which ggml multiplies), so the
// oracle uses s. What is left is the kernels' float arithmetic: d_w * d_x, the
// product with the exact int32 block sum, m_w * s_x, and a sum of 2 * blocks terms in
// some order, each rounding once: |got - exact| <= 4 (in_dim + 2) eps * (sum of
// |terms|) |row_scale| (+ 4 eps |previous| when accumulating), the weight_matrix
// tests' bound with room for the two extra roundings per block. The scalar kernel is
// held to the reference dot exactly.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/rng.hpp"
#include "kvdecode/quant/kernels_q4_q5.hpp"
#include "kvdecode/quant/q4_q5.hpp"
#include "kvdecode/quant/weight_type.hpp"

using namespace kvdecode::quant;
using kvdecode::kernel_isa;
using kvdecode::matrix_product;
using kvdecode::weight_type;

namespace {

std::vector<float> random_row(std::size_t n, std::uint64_t seed, double scale = 1.0) {
    kvdecode::rng gen(seed);
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(scale * gen.normal());
    return v;
}

// A random finite float16 (any sign, exponent and mantissa, subnormals and zero included).
std::uint16_t random_finite_half(kvdecode::rng& gen) {
    for (;;) {
        const auto h = static_cast<std::uint16_t>(gen.next_u64());
        if ((h & 0x7c00) != 0x7c00) return h;
    }
}

// A block of random bytes: every quant bit pattern, random finite float16 d (and m).
template <class Block>
Block random_block(kvdecode::rng& gen) {
    Block b;
    auto* bytes = reinterpret_cast<unsigned char*>(&b);
    for (std::size_t i = 0; i < sizeof b; ++i) bytes[i] = static_cast<unsigned char>(gen.next_u64());
    b.d = random_finite_half(gen);
    if constexpr (legacy_format<Block>::has_min) b.m = random_finite_half(gen);
    return b;
}

template <class Block>
std::vector<float> dequantized(const std::vector<Block>& blocks) {
    std::vector<float> out(blocks.size() * 32);
    dequantize_row_legacy(blocks.data(), out.data(), out.size());
    return out;
}

}  // namespace

TEST_CASE("legacy blocks have GGUF's layout and sizes", "[quant][q4_q5]") {
    REQUIRE(sizeof(block_q4_0) == 18);
    REQUIRE(offsetof(block_q4_0, qs) == 2);
    REQUIRE(sizeof(block_q4_1) == 20);
    REQUIRE(offsetof(block_q4_1, m) == 2);
    REQUIRE(offsetof(block_q4_1, qs) == 4);
    REQUIRE(sizeof(block_q5_0) == 22);
    REQUIRE(offsetof(block_q5_0, qh) == 2);
    REQUIRE(offsetof(block_q5_0, qs) == 6);
    REQUIRE(sizeof(block_q5_1) == 24);
    REQUIRE(offsetof(block_q5_1, m) == 2);
    REQUIRE(offsetof(block_q5_1, qh) == 4);
    REQUIRE(offsetof(block_q5_1, qs) == 8);
    REQUIRE(sizeof(block_q8_1) == 36);
    REQUIRE(offsetof(block_q8_1, s) == 2);
    REQUIRE(offsetof(block_q8_1, qs) == 4);

    struct sizes {
        weight_type type;
        std::size_t values, bytes;
    };
    for (const sizes& s : {sizes{weight_type::f32, 1, 4}, sizes{weight_type::f16, 1, 2}, sizes{weight_type::bf16, 1, 2},
                           sizes{weight_type::q8_0, 32, 34}, sizes{weight_type::q4_0, 32, 18}, sizes{weight_type::q4_1, 32, 20},
                           sizes{weight_type::q5_0, 32, 22}, sizes{weight_type::q5_1, 32, 24}}) {
        CAPTURE(kvdecode::to_string(s.type));
        REQUIRE(kvdecode::block_values(s.type) == s.values);
        REQUIRE(kvdecode::block_bytes(s.type) == s.bytes);
        REQUIRE(kvdecode::row_bytes(s.type, 192) == 192 / s.values * s.bytes);
        REQUIRE(kvdecode::row_bytes(s.type, 0) == 0);
    }
    REQUIRE(kvdecode::row_bytes(weight_type::f32, 33) == 132);
    REQUIRE_THROWS_WITH(kvdecode::row_bytes(weight_type::q4_1, 33), Catch::Contains("q4_1") && Catch::Contains("33"));
    REQUIRE_THROWS_WITH(kvdecode::row_bytes(weight_type::q8_0, 40), Catch::Contains("32") && Catch::Contains("40"));
    REQUIRE_THROWS_WITH(kvdecode::row_bytes(weight_type::f32, std::numeric_limits<std::size_t>::max() / 2),
                        Catch::Contains("overflows"));
    for (weight_type t : kvdecode::all_weight_types) REQUIRE(kvdecode::parse_weight_type(kvdecode::to_string(t)) == t);
}

TEST_CASE("legacy dequantisation of hand-built blocks", "[quant][q4_q5]") {
    SECTION("q4_0: low nibbles are values 0..15, high nibbles 16..31, minus 8, times d") {
        block_q4_0 b{};
        b.d = 0x4000;  // 2.0
        for (std::size_t j = 0; j < 16; ++j) b.qs[j] = static_cast<std::uint8_t>(j | (15 - j) << 4);
        float y[32];
        dequantize_row_q4_0(&b, y, 32);
        for (std::size_t j = 0; j < 16; ++j) {
            CAPTURE(j);
            REQUIRE(y[j] == 2.0f * (float(j) - 8));
            REQUIRE(y[j + 16] == 2.0f * (float(15 - j) - 8));
        }
        REQUIRE(y[0] == -16.0f);
        REQUIRE(y[16] == 14.0f);
    }
    SECTION("q4_1: q * d + m, rounded once") {
        block_q4_1 b{};
        b.d = 0x3555;  // 0.333252
        b.m = 0xbc00;  // -1
        b.qs[0] = 0x3a;  // value 0: 10, value 16: 3
        b.qs[15] = 0xf1;  // value 15: 1, value 31: 15
        float y[32];
        dequantize_row_q4_1(&b, y, 32);
        const float d = f16_to_f32(0x3555);
        REQUIRE(d == 0x1.554p-2f);
        REQUIRE(y[0] == 10.0f * d - 1.0f);
        REQUIRE(y[16] == 3.0f * d - 1.0f);
        REQUIRE(y[15] == d - 1.0f);
        REQUIRE(y[31] == 15.0f * d - 1.0f);
        REQUIRE(y[1] == -1.0f);  // q = 0: the minimum
    }
    SECTION("q5_0: bit i of qh (little-endian word) is value i's fifth bit, minus 16") {
        block_q5_0 b{};
        b.d = 0x3c00;  // 1
        // qh bits 0, 9, 16 and 31: bytes 0x01, 0x02, 0x01, 0x80.
        b.qh[0] = 0x01, b.qh[1] = 0x02, b.qh[2] = 0x01, b.qh[3] = 0x80;
        for (std::size_t j = 0; j < 16; ++j) b.qs[j] = 0x77;  // every nibble 7
        float y[32];
        dequantize_row_q5_0(&b, y, 32);
        for (std::size_t i = 0; i < 32; ++i) {
            const bool high = i == 0 || i == 9 || i == 16 || i == 31;
            CAPTURE(i);
            REQUIRE(y[i] == (high ? 7.0f : -9.0f));  // 23 - 16 or 7 - 16
        }
    }
    SECTION("q5_1: fifth bits and minimum") {
        block_q5_1 b{};
        b.d = 0x3800;  // 0.5
        b.m = 0x4200;  // 3
        b.qh[0] = 0x00, b.qh[1] = 0x00, b.qh[2] = 0xff, b.qh[3] = 0x00;  // values 16..23
        for (std::size_t j = 0; j < 16; ++j) b.qs[j] = static_cast<std::uint8_t>(j << 4 | 0xf);
        float y[32];
        dequantize_row_q5_1(&b, y, 32);
        for (std::size_t j = 0; j < 16; ++j) {
            CAPTURE(j);
            REQUIRE(y[j] == 0.5f * 15 + 3);                                     // nibble 15, no fifth bit
            REQUIRE(y[j + 16] == 0.5f * float(j + (j < 8 ? 16 : 0)) + 3.0f);  // nibble j, fifth bit for 16..23
        }
    }
    SECTION("float16 subnormal, negative and NaN scales pass through") {
        block_q4_0 b{};
        b.d = 0x8001;  // -2^-24
        std::memset(b.qs, 0xff, sizeof b.qs);
        float y[32];
        dequantize_row_q4_0(&b, y, 32);
        for (float v : y) REQUIRE(v == -7 * 0x1p-24f);
        b.d = 0x7e00;
        dequantize_row_q4_0(&b, y, 32);
        for (float v : y) REQUIRE(std::isnan(v));
    }
}

TEST_CASE("legacy quantisation of known vectors follows ggml's reference", "[quant][q4_q5]") {
    SECTION("q4_0: d = max / -8 (the signed value of largest magnitude), the extreme lands on q = 0") {
        std::vector<float> x(32, 0.0f);
        x[0] = 4.0f, x[1] = -4.0f, x[2] = 1.0f, x[3] = 0.25f, x[4] = -0.25f, x[17] = 3.75f, x[18] = -1.75f;
        block_q4_0 b;
        quantize_row_q4_0(x.data(), &b, 32);
        REQUIRE(b.d == f32_to_f16(-0.5f));
        // id = -2: q = trunc(x * -2 + 8.5), at most 15.
        REQUIRE((b.qs[0] & 0xf) == 0);     // 0.5
        REQUIRE((b.qs[1] & 0xf) == 15);    // 16.5 -> 16, clamped
        REQUIRE((b.qs[2] & 0xf) == 6);     // 6.5
        REQUIRE((b.qs[3] & 0xf) == 8);     // 8.0
        REQUIRE((b.qs[4] & 0xf) == 9);     // 9.0: the tie goes up
        REQUIRE((b.qs[5] & 0xf) == 8);     // zeros
        REQUIRE((b.qs[1] >> 4) == 1);      // value 17: 3.75 -> 1.0
        REQUIRE((b.qs[2] >> 4) == 12);     // value 18: -1.75 -> 12.0
        float y[32];
        dequantize_row_q4_0(&b, y, 32);
        REQUIRE(y[0] == 4.0f);
        REQUIRE(y[1] == -3.5f);
        REQUIRE(y[17] == 3.5f);
    }
    SECTION("q4_0: on a tie of magnitudes the first value decides the sign of d") {
        std::vector<float> x(32, 0.0f);
        x[5] = -2.0f, x[9] = 2.0f;
        block_q4_0 b;
        quantize_row_q4_0(x.data(), &b, 32);
        REQUIRE(b.d == f32_to_f16(0.25f));
    }
    SECTION("q4_1: d = (max - min) / 15, m = min, round half up") {
        std::vector<float> x(32);
        for (std::size_t i = 0; i < 32; ++i) x[i] = -1.0f + 0.5f * float(i % 16);  // -1 .. 6.5
        x[31] = -1.0f + 0.25f;  // 0.5 steps: a tie, up
        block_q4_1 b;
        quantize_row_q4_1(x.data(), &b, 32);
        REQUIRE(b.d == f32_to_f16(0.5f));
        REQUIRE(b.m == f32_to_f16(-1.0f));
        float y[32];
        dequantize_row_q4_1(&b, y, 32);
        for (std::size_t i = 0; i < 31; ++i) REQUIRE(y[i] == x[i]);
        REQUIRE(y[31] == -0.5f);
    }
    SECTION("q5_0 and q5_1: exact grids come back exactly, fifth bits set") {
        std::vector<float> x(32);
        for (std::size_t i = 0; i < 32; ++i) x[i] = float(int(i) - 16) * 0.125f;  // -2 .. 1.875: d = -2 / -16
        block_q5_0 b0;
        quantize_row_q5_0(x.data(), &b0, 32);
        REQUIRE(b0.d == f32_to_f16(0.125f));
        REQUIRE(high_bits(b0) == 0xffff0000u);  // q = i: the upper half has the fifth bit
        block_q5_1 b1;
        quantize_row_q5_1(x.data(), &b1, 32);  // d = 3.875 / 31 = 0.125
        REQUIRE(b1.d == f32_to_f16(0.125f));
        REQUIRE(b1.m == f32_to_f16(-2.0f));
        float y[32];
        dequantize_row_q5_0(&b0, y, 32);
        for (std::size_t i = 0; i < 32; ++i) REQUIRE(y[i] == x[i]);
        dequantize_row_q5_1(&b1, y, 32);
        for (std::size_t i = 0; i < 32; ++i) REQUIRE(y[i] == x[i]);
    }
    SECTION("zeros, constants, non-finite and tiny blocks") {
        const std::vector<float> zeros(32, 0.0f), threes(32, 3.0f);
        block_q4_0 a;
        quantize_row_q4_0(zeros.data(), &a, 32);
        REQUIRE(a.d == 0x8000);  // 0 / -8 = -0, as ggml stores it
        for (auto q : a.qs) REQUIRE(q == 0x88);  // q = 8: value 0
        block_q5_1 c;
        quantize_row_q5_1(threes.data(), &c, 32);  // max == min: d = 0, every value m
        REQUIRE(c.d == 0);
        REQUIRE(c.m == f32_to_f16(3.0f));
        float y[32];
        dequantize_row_q5_1(&c, y, 32);
        for (float v : y) REQUIRE(v == 3.0f);
        for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
            std::vector<float> x = threes;
            x[7] = bad;
            block_q4_1 n;
            quantize_row_q4_1(x.data(), &n, 32);
            dequantize_row_q4_1(&n, y, 32);
            for (float v : y) REQUIRE(std::isnan(v));
            block_q5_0 n0;
            quantize_row_q5_0(x.data(), &n0, 32);
            dequantize_row_q5_0(&n0, y, 32);
            for (float v : y) REQUIRE(std::isnan(v));
        }
        std::vector<float> huge(32, 3e38f);
        huge[0] = -3e38f;  // max - min overflows float
        block_q4_1 h;
        quantize_row_q4_1(huge.data(), &h, 32);
        REQUIRE(std::isnan(f16_to_f32(h.d)));
        std::vector<float> tiny(32, 1e-40f);
        tiny[3] = -2e-40f;
        block_q4_0 t;
        quantize_row_q4_0(tiny.data(), &t, 32);
        REQUIRE(t.d == 0);
        dequantize_row_q4_0(&t, y, 32);
        for (float v : y) REQUIRE(v == 0.0f);
    }
}

namespace {

template <class Block>
void check_error_bound() {
    using F = legacy_format<Block>;
    const int top = (1 << F::bits) - 1;
    for (double scale : {1e-3, 1.0, 1e3}) {
        const std::size_t n = 32 * 40;
        const auto x = random_row(n, 77 + F::bits + F::offset, scale);
        std::vector<Block> blocks(n / 32);
        quantize_row_legacy(x.data(), blocks.data(), n);
        const auto y = dequantized(blocks);
        for (std::size_t b = 0; b < blocks.size(); ++b) {
            double mn = x[32 * b], mx = x[32 * b], amax = 0, max = 0;
            for (std::size_t i = 32 * b; i < 32 * b + 32; ++i) {
                mn = std::min(mn, double(x[i])), mx = std::max(mx, double(x[i]));
                if (amax < std::fabs(double(x[i]))) amax = std::fabs(double(x[i])), max = x[i];
            }
            const double d = F::has_min ? (mx - mn) / top : max / -((top + 1) / 2);
            const double d16 = f16_to_f32(blocks[b].d);
            double m16 = 0;
            if constexpr (F::has_min) m16 = f16_to_f32(blocks[b].m);
            for (std::size_t i = 32 * b; i < 32 * b + 32; ++i) {
                // Half a step (one step for the _0 value at the clamped end, -max), plus
                // what rounding d (times at most 2^bits) and m to float16 moves a value.
                const bool clamped = !F::has_min && double(x[i]) / d + F::offset + 0.5 >= top + 1 - 1e-3;
                const double bound = std::fabs(d) * ((clamped ? 1.0 : 0.5) + 1e-5) + (top + 1) * std::fabs(d - d16) +
                                     (F::has_min ? std::fabs(mn - m16) : 0.0);
                CAPTURE(kvdecode::to_string(F::type), scale, i, x[i], y[i]);
                REQUIRE(std::fabs(double(y[i]) - double(x[i])) <= bound);
            }
        }
    }
}

}  // namespace

TEST_CASE("legacy dequantised values are within the format's error of the input", "[quant][q4_q5]") {
    check_error_bound<block_q4_0>();
    check_error_bound<block_q4_1>();
    check_error_bound<block_q5_0>();
    check_error_bound<block_q5_1>();
}

TEST_CASE("Q8_1: Q8_0's quants and d, and s = d * sum(qs) with the unrounded d", "[quant][q4_q5]") {
    std::vector<float> x(40, 0.0f);
    x[0] = 1.0f, x[1] = -0.5f, x[2] = 0.25f, x[33] = 2.0f;
    std::vector<block_q8_1> q(2);
    quantize_row_q8_1(x.data(), q.data(), 40);
    std::vector<block_q8_0> r(2);
    quantize_row_q8_0(x.data(), r.data(), 40);
    for (std::size_t b = 0; b < 2; ++b) {
        REQUIRE(q[b].d == r[b].d);
        REQUIRE(std::memcmp(q[b].qs, r[b].qs, 32) == 0);
    }
    // 127 - 64 + 32 = 95 quants of d = 1/127 (unrounded): s = 95 / 127 as float16.
    REQUIRE(q[0].s == f32_to_f16(95.0f * (1.0f / 127.0f)));
    REQUIRE(q[1].s == f32_to_f16(127.0f * (2.0f / 127.0f)));
    x[34] = std::numeric_limits<float>::quiet_NaN();
    quantize_row_q8_1(x.data(), q.data(), 40);
    REQUIRE(std::isnan(f16_to_f32(q[1].s)));
}

namespace {

// The exact value of a weight row's dot with an activation row as the formats define it,
// and the sum of the magnitudes of its terms.
template <class Block>
std::pair<double, double> exact_dot(const Block* w, const activation_block<Block>* x, std::size_t blocks) {
    double sum = 0, magnitude = 0;
    std::int8_t q[32];
    for (std::size_t b = 0; b < blocks; ++b) {
        unpack_quants(w[b], q);
        const double scale = double(f16_to_f32(w[b].d)) * double(f16_to_f32(x[b].d));
        for (std::size_t i = 0; i < 32; ++i) {
            sum += scale * q[i] * x[b].qs[i];
            magnitude += std::fabs(scale * q[i] * x[b].qs[i]);
        }
        if constexpr (legacy_format<Block>::has_min) {
            const double ms = double(f16_to_f32(w[b].m)) * double(f16_to_f32(x[b].s));
            sum += ms;
            magnitude += std::fabs(ms);
        }
    }
    return {sum, magnitude};
}

template <class Block>
void check_reference_dot() {
    for (std::size_t n : {32, 64, 800}) {
        const auto w = random_row(n, 3 + n), x = random_row(n, 4 + n);
        std::vector<Block> wb(n / 32);
        quantize_row_legacy(w.data(), wb.data(), n);
        std::vector<activation_block<Block>> xb(n / 32);
        if constexpr (legacy_format<Block>::has_min) quantize_row_q8_1(x.data(), xb.data(), n);
        else quantize_row_q8_0(x.data(), xb.data(), n);
        const auto [want, magnitude] = exact_dot(wb.data(), xb.data(), wb.size());
        const float got = dot_legacy(wb.data(), xb.data(), wb.size());
        CAPTURE(kvdecode::to_string(legacy_format<Block>::type), n);
        REQUIRE(std::fabs(double(got) - want) <= 4 * (n + 2) * std::numeric_limits<float>::epsilon() * magnitude);
        // And close to the dot of the dequantised rows, s's rounding aside.
        const auto wd = dequantized(wb);
        double plain = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const auto& blk = xb[i / 32];
            plain += double(wd[i]) * double(f16_to_f32(blk.d)) * blk.qs[i % 32];
        }
        REQUIRE(std::fabs(plain - want) <= 1e-3 * magnitude);
    }
}

}  // namespace

TEST_CASE("legacy reference dots are the formats' integer block sums", "[quant][q4_q5]") {
    check_reference_dot<block_q4_0>();
    check_reference_dot<block_q4_1>();
    check_reference_dot<block_q5_0>();
    check_reference_dot<block_q5_1>();
    // The named entry points are the same functions.
    const auto w = random_row(64, 1), x = random_row(64, 2);
    block_q4_0 a[2];
    block_q8_0 b[2];
    quantize_row_q4_0(w.data(), a, 64);
    quantize_row_q8_0(x.data(), b, 64);
    REQUIRE(dot_q4_0_q8_0(a, b, 2) == dot_legacy(a, b, 2));
}

namespace {

// prepare_activation_row's layout (kernels_q4_q5.hpp) read back against quantize_row_q8_0
// / quantize_row_q8_1, bit for bit, the padding zero.
template <class Block>
void check_prepared_row() {
    using F = legacy_format<Block>;
    for (std::size_t n : {32, 64, 96, 256, 288, 800}) {
        auto x = random_row(n, 50 + n);
        if (n == 96) x[40] = std::numeric_limits<float>::infinity();
        const legacy_activation_layout layout{n};
        REQUIRE(layout.row_bytes() % 64 == 0);
        REQUIRE(activation_row_bytes<Block>(n) == layout.row_bytes());
        kvdecode::aligned_buffer<std::byte> scratch(layout.row_bytes());
        std::memset(scratch.data(), 0x55, scratch.size());
        prepare_activation_row<Block>(x.data(), n, scratch.data());
        std::vector<block_q8_1> ref(n / 32);
        quantize_row_q8_1(x.data(), ref.data(), n);
        std::vector<block_q8_0> ref0(n / 32);
        quantize_row_q8_0(x.data(), ref0.data(), n);
        // Per group of 8 blocks (384 bytes): quants 0..7, 16..23, 8..15, 24..31 of the 8
        // blocks (8 bytes each), then d_x twice per block, then the _0 types' lane sums or
        // the _1 types' s / 2 twice per block.
        const std::size_t part_at[4] = {0, 128, 64, 192};
        for (std::size_t b = 0; b < layout.groups() * 8; ++b) {
            CAPTURE(kvdecode::to_string(F::type), n, b);
            const bool real = b < ref.size();
            if (real) REQUIRE(ref[b].d == ref0[b].d);
            const std::byte* group = scratch.data() + b / 8 * 384;
            const std::size_t k = b % 8;
            std::int8_t q[32];
            for (std::size_t v = 0; v < 32; ++v) std::memcpy(q + v, group + part_at[v / 8] + 8 * k + v % 8, 1);
            for (std::size_t i = 0; i < 32; ++i) REQUIRE(int(q[i]) == (real ? int(ref[b].qs[i]) : 0));
            const float d = real ? f16_to_f32(ref[b].d) : 0.0f, s = real ? f16_to_f32(ref[b].s) : 0.0f;
            std::uint32_t lanes[2], aux[2];
            std::memcpy(lanes, group + 256 + 8 * k, sizeof lanes);
            std::memcpy(aux, group + 320 + 8 * k, sizeof aux);
            for (std::size_t i = 0; i < 2; ++i) {
                REQUIRE(lanes[i] == std::bit_cast<std::uint32_t>(d));
                if constexpr (F::has_min) {
                    REQUIRE(aux[i] == std::bit_cast<std::uint32_t>(s / 2));
                } else {
                    // -offset times the 16 quants int32 lane 2k + i covers: 4i .. 4i + 3 of each part.
                    int sum = 0;
                    for (std::size_t part = 0; part < 4; ++part)
                        for (std::size_t t = 0; t < 4; ++t) sum += q[8 * part + 4 * i + t];
                    REQUIRE(std::bit_cast<std::int32_t>(aux[i]) == -F::offset * sum);
                }
            }
        }
    }
}

}  // namespace

TEST_CASE("prepared activations equal the Q8_0 / Q8_1 reference bit for bit", "[quant][q4_q5]") {
    check_prepared_row<block_q4_0>();
    check_prepared_row<block_q4_1>();
    check_prepared_row<block_q5_0>();
    check_prepared_row<block_q5_1>();
}

namespace {

const kernel_isa all_isas[] = {kernel_isa::scalar, kernel_isa::avx2, kernel_isa::avx512};

bool runs(kernel_isa isa) { return detail::compiled_in(isa) && detail::cpu_runs(isa); }

template <class Block>
void run_kernel(kernel_isa isa, const legacy_matrix<Block>& m, const matrix_product<float>& p, const std::byte* scratch,
                std::size_t begin, std::size_t end) {
    switch (isa) {
        case kernel_isa::scalar: legacy_matmul_scalar(m, p, scratch, begin, end); return;
#if defined(KVDECODE_QUANT_AVX2)
        case kernel_isa::avx2: legacy_matmul_avx2(m, p, scratch, begin, end); return;
#endif
#if defined(KVDECODE_QUANT_AVX512)
        case kernel_isa::avx512: legacy_matmul_avx512(m, p, scratch, begin, end); return;
#endif
        default: FAIL("no kernel for " << kvdecode::to_string(isa));
    }
}

enum class weights_from { random_bytes, quantized_floats };

// One matrix (at a 32-byte but not 64-byte aligned address, as mapped GGUF data may be)
// against every kernel, the given row counts, stored and accumulated.
template <class Block>
void check_kernels(std::size_t out_dim, std::size_t in_dim, weights_from source, std::initializer_list<std::size_t> row_counts) {
    const std::size_t nb = in_dim / 32;
    kvdecode::rng gen(out_dim * 1000 + in_dim + (source == weights_from::random_bytes ? 7 : 0));
    std::vector<Block> rows(out_dim * nb);
    if (source == weights_from::random_bytes) {
        for (Block& b : rows) b = random_block<Block>(gen);
    } else {
        const auto w = random_row(out_dim * in_dim, 9 + in_dim);
        quantize_row_legacy(w.data(), rows.data(), w.size());
    }
    kvdecode::aligned_buffer<std::byte> storage(rows.size() * sizeof(Block) + 64);
    std::memcpy(storage.data() + 32, rows.data(), rows.size() * sizeof(Block));
    const legacy_matrix<Block> m{reinterpret_cast<const Block*>(storage.data() + 32), out_dim, in_dim};
    const std::size_t units = (out_dim + 31) / 32, in_stride = in_dim + 3, out_stride = out_dim + 2;
    const double eps = std::numeric_limits<float>::epsilon();

    for (std::size_t n_rows : row_counts) {
        const auto in = random_row(1 + n_rows * in_stride, n_rows + in_dim);
        const auto row_scale = random_row(n_rows, 5 + n_rows);
        const float* scale = n_rows % 3 == 2 ? nullptr : row_scale.data();
        const std::size_t row_bytes = activation_row_bytes<Block>(in_dim);
        kvdecode::aligned_buffer<std::byte> scratch(n_rows * row_bytes);
        for (std::size_t r = 0; r < n_rows; ++r)
            prepare_activation_row<Block>(in.data() + 1 + r * in_stride, in_dim, scratch.data() + r * row_bytes);
        // The oracle over the quantised activations, and the reference dot.
        std::vector<double> want(n_rows * out_dim), magnitude(n_rows * out_dim);
        std::vector<float> reference(n_rows * out_dim);
        std::vector<activation_block<Block>> xb(nb);
        for (std::size_t r = 0; r < n_rows; ++r) {
            const float* x = in.data() + 1 + r * in_stride;
            if constexpr (legacy_format<Block>::has_min) quantize_row_q8_1(x, xb.data(), in_dim);
            else quantize_row_q8_0(x, xb.data(), in_dim);
            for (std::size_t o = 0; o < out_dim; ++o) {
                const auto [v, mag] = exact_dot(rows.data() + o * nb, xb.data(), nb);
                const double s = scale ? double(scale[r]) : 1.0;
                want[r * out_dim + o] = v * s;
                magnitude[r * out_dim + o] = mag * std::fabs(s);
                reference[r * out_dim + o] = dot_legacy(rows.data() + o * nb, xb.data(), nb);
            }
        }
        for (bool accumulate : {false, true}) {
            const auto before = random_row(n_rows * out_stride, 11 + n_rows);
            for (kernel_isa isa : all_isas) {
                if (!runs(isa)) continue;
                CAPTURE(kvdecode::to_string(legacy_format<Block>::type), kvdecode::to_string(isa), out_dim, in_dim, n_rows,
                        accumulate, scale != nullptr, source == weights_from::random_bytes);
                std::vector<float> out = before;
                const matrix_product<float> p{.in = in.data() + 1, .in_stride = in_stride, .rows = n_rows, .row_scale = scale,
                                              .out = out.data(), .out_stride = out_stride, .accumulate = accumulate};
                run_kernel(isa, m, p, scratch.data(), 0, units / 2);  // units split as threads take them
                run_kernel(isa, m, p, scratch.data(), units / 2, units);
                for (std::size_t r = 0; r < n_rows; ++r)
                    for (std::size_t o = 0; o < out_stride; ++o) {
                        const std::size_t i = r * out_stride + o;
                        CAPTURE(r, o, out[i]);
                        if (o >= out_dim) {
                            REQUIRE(out[i] == before[i]);
                            continue;
                        }
                        const double prev = accumulate ? double(before[i]) : 0.0;
                        const double bound = 4 * double(in_dim + 2) * eps * magnitude[r * out_dim + o] + 4 * eps * std::fabs(prev);
                        REQUIRE(std::fabs(double(out[i]) - (want[r * out_dim + o] + prev)) <= bound);
                        if (isa == kernel_isa::scalar && !accumulate && scale == nullptr)
                            REQUIRE(out[i] == reference[r * out_dim + o]);  // exactly the reference dot
                    }
            }
        }
    }
}

// Row counts 1 .. 9 and past the tiles (8 rows on both instruction sets: 7, 8, 9, 16,
// 17, 33); in_dim with and without a short last group of 4 blocks; out_dim not a
// multiple of the 32-output unit. Then every in_dim that is a multiple of 32 up to
// 4096 (a few rows, a small out_dim: the groups and their tails at every length).
template <class Block>
void check_kernels_everywhere() {
    for (weights_from source : {weights_from::random_bytes, weights_from::quantized_floats}) {
        for (std::size_t in_dim : {32, 96, 256, 800})
            for (std::size_t out_dim : {1, 31, 33, 100}) check_kernels<Block>(out_dim, in_dim, source, {1, 2, 3, 4, 5, 6, 7, 8, 9});
        check_kernels<Block>(37, 416, source, {16, 17, 33});
    }
    for (std::size_t in_dim = 32; in_dim <= 4096; in_dim += 32)
        check_kernels<Block>(in_dim % 256 == 0 ? 8 : 3, in_dim, in_dim % 64 == 0 ? weights_from::quantized_floats : weights_from::random_bytes, {1, 9});
}

// Bit for bit, per instruction set: the product computed in one call, split into
// units at odd points (as threads take them), and each row alone (rows = 1, as a
// greedy step; several weight streams at once where in_dim is whole groups of 8
// blocks) against the same row inside a tile of 33 (a beam step).
template <class Block>
void check_rows_alone_and_split(std::size_t in_dim) {
    const std::size_t out_dim = 200, rows = 33, nb = in_dim / 32, units = (out_dim + 31) / 32;
    const auto w = random_row(out_dim * in_dim, 21);
    std::vector<Block> blocks(out_dim * nb);
    quantize_row_legacy(w.data(), blocks.data(), w.size());
    const legacy_matrix<Block> m{blocks.data(), out_dim, in_dim};
    const auto in = random_row(rows * in_dim, 22), row_scale = random_row(rows, 23);
    const std::size_t row_bytes = activation_row_bytes<Block>(in_dim);
    kvdecode::aligned_buffer<std::byte> scratch(rows * row_bytes);
    for (std::size_t r = 0; r < rows; ++r) prepare_activation_row<Block>(in.data() + r * in_dim, in_dim, scratch.data() + r * row_bytes);
    for (kernel_isa isa : all_isas) {
        if (!runs(isa)) continue;
        CAPTURE(kvdecode::to_string(legacy_format<Block>::type), kvdecode::to_string(isa));
        for (bool accumulate : {false, true}) {
            const auto before = random_row(rows * out_dim, 24);
            std::vector<float> whole = before, split = before, alone = before;
            const matrix_product<float> p{.in = in.data(), .in_stride = in_dim, .rows = rows, .row_scale = row_scale.data(),
                                          .out = whole.data(), .out_stride = out_dim, .accumulate = accumulate};
            run_kernel(isa, m, p, scratch.data(), 0, units);
            matrix_product<float> q = p;
            q.out = split.data();
            run_kernel(isa, m, q, scratch.data(), 0, 1);
            run_kernel(isa, m, q, scratch.data(), 1, 4);
            run_kernel(isa, m, q, scratch.data(), 4, units);
            for (std::size_t r = 0; r < rows; ++r) {
                const matrix_product<float> one{.in = in.data() + r * in_dim, .in_stride = in_dim, .rows = 1,
                                                .row_scale = row_scale.data() + r, .out = alone.data() + r * out_dim,
                                                .out_stride = out_dim, .accumulate = accumulate};
                run_kernel(isa, m, one, scratch.data() + r * row_bytes, 0, units);
            }
            for (std::size_t i = 0; i < whole.size(); ++i) {
                CAPTURE(accumulate, i / out_dim, i % out_dim);
                REQUIRE(std::bit_cast<std::uint32_t>(split[i]) == std::bit_cast<std::uint32_t>(whole[i]));
                REQUIRE(std::bit_cast<std::uint32_t>(alone[i]) == std::bit_cast<std::uint32_t>(whole[i]));
            }
        }
    }
}

}  // namespace

TEST_CASE("legacy kernels: a row alone equals the row in a tile, and any split of units the whole, bit for bit",
          "[quant][q4_q5]") {
    for (std::size_t in_dim : {416, 512}) check_rows_alone_and_split<block_q4_0>(in_dim);
    for (std::size_t in_dim : {416, 512}) check_rows_alone_and_split<block_q4_1>(in_dim);
    for (std::size_t in_dim : {416, 512}) check_rows_alone_and_split<block_q5_0>(in_dim);
    for (std::size_t in_dim : {416, 512}) check_rows_alone_and_split<block_q5_1>(in_dim);
}

TEST_CASE("Q4_0 kernels on every instruction set against the exact block sums", "[quant][q4_q5]") {
    check_kernels_everywhere<block_q4_0>();
}
TEST_CASE("Q4_1 kernels on every instruction set against the exact block sums", "[quant][q4_q5]") {
    check_kernels_everywhere<block_q4_1>();
}
TEST_CASE("Q5_0 kernels on every instruction set against the exact block sums", "[quant][q4_q5]") {
    check_kernels_everywhere<block_q5_0>();
}
TEST_CASE("Q5_1 kernels on every instruction set against the exact block sums", "[quant][q4_q5]") {
    check_kernels_everywhere<block_q5_1>();
}

TEST_CASE("legacy kernels run on this machine", "[quant][q4_q5]") {
    std::ostringstream ran;
    for (kernel_isa isa : all_isas)
        if (runs(isa)) ran << ' ' << kvdecode::to_string(isa);
#if defined(KVDECODE_QUANT_AVX512_VNNI)
    ran << " (AVX-512 with VNNI)";
#endif
    WARN("q4_0/q4_1/q5_0/q5_1 kernels tested:" << ran.str());
    REQUIRE(runs(kernel_isa::scalar));
}
