// K-quants (Q2_K .. Q6_K) and Q8_K: block layouts; dequantisation of hand-built blocks
// (known answers for every scale packing and bit order); Q8_K quantisation on known
// vectors; quantise -> dequantise error; and every kernel on every instruction set this
// machine runs, over rows 1..9, 16, 17, 33 and sizes in_dim 256, 768, 2304 x out_dim 1,
// 31, 33, 100 (and every in_dim from 256 to 4096 with out_dim 37), with random block
// bytes (every bit pattern, random finite float16 scales) and with quantised random
// floats, against a float64 sum over the exact integers of the blocks and the quantised
// activations, and bit for bit against the scalar reference dot (the kernels add each
// block's float part in the same order: see kernels_k_quants.hpp); and bit for bit
// between a product split into units at odd points and unsplit, and between a row
// multiplied alone and inside many rows.
//
// Tolerance against float64: each block's part is two products rounded to float and
// one float sum per block, so |got - want| <= 4 (blocks + 2) eps (sum of |terms|),
// where the terms are d * scale * (q - offset) * x and dmin * min * x separately
// (they can cancel, so the bound is on their magnitudes, not on |w x|).

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/rng.hpp"
#include "kvdecode/quant/k_quants.hpp"
#include "kvdecode/quant/kernels_k_quants.hpp"
#include "kvdecode/quant/weight_matrix.hpp"

using namespace kvdecode::quant;
using kvdecode::kernel_isa;
using kvdecode::matrix_product;

namespace {

std::vector<float> random_row(std::size_t n, std::uint64_t seed, double scale = 1.0) {
    kvdecode::rng gen(seed);
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(scale * gen.normal());
    return v;
}

template <class Block>
std::vector<float> dequantized(const Block& b) {
    std::vector<float> out(qk_k);
    dequantize_row_k(&b, out.data(), qk_k);
    return out;
}

template <class Block>
Block zero_block() {
    Block b;
    std::memset(&b, 0, sizeof b);
    return b;
}

}  // namespace

TEST_CASE("K-quant blocks have ggml's layouts", "[quant][k_quants]") {
    REQUIRE(sizeof(block_q2_k) == 84);
    REQUIRE(offsetof(block_q2_k, qs) == 16);
    REQUIRE(offsetof(block_q2_k, d) == 80);
    REQUIRE(offsetof(block_q2_k, dmin) == 82);
    REQUIRE(sizeof(block_q3_k) == 110);
    REQUIRE(offsetof(block_q3_k, qs) == 32);
    REQUIRE(offsetof(block_q3_k, scales) == 96);
    REQUIRE(offsetof(block_q3_k, d) == 108);
    REQUIRE(sizeof(block_q4_k) == 144);
    REQUIRE(offsetof(block_q4_k, dmin) == 2);
    REQUIRE(offsetof(block_q4_k, scales) == 4);
    REQUIRE(offsetof(block_q4_k, qs) == 16);
    REQUIRE(sizeof(block_q5_k) == 176);
    REQUIRE(offsetof(block_q5_k, qh) == 16);
    REQUIRE(offsetof(block_q5_k, qs) == 48);
    REQUIRE(sizeof(block_q6_k) == 210);
    REQUIRE(offsetof(block_q6_k, qh) == 128);
    REQUIRE(offsetof(block_q6_k, scales) == 192);
    REQUIRE(offsetof(block_q6_k, d) == 208);
    REQUIRE(sizeof(block_q8_k) == 292);
    REQUIRE(offsetof(block_q8_k, qs) == 4);
    REQUIRE(offsetof(block_q8_k, bsums) == 260);
    REQUIRE(k_blocks(256) == 1);
    REQUIRE(k_blocks(257) == 2);
    REQUIRE(kvdecode::block_values(kvdecode::weight_type::q4_k) == 256);
    REQUIRE(kvdecode::block_bytes(kvdecode::weight_type::q3_k) == 110);
    REQUIRE(kvdecode::row_bytes(kvdecode::weight_type::q6_k, 768) == 3 * 210);
    REQUIRE(kvdecode::row_bytes(kvdecode::weight_type::q8_0, 64) == 68);
    REQUIRE(kvdecode::row_bytes(kvdecode::weight_type::f16, 3) == 6);
    REQUIRE_THROWS_WITH(kvdecode::row_bytes(kvdecode::weight_type::q2_k, 192),
                        Catch::Contains("q2_k") && Catch::Contains("256") && Catch::Contains("192"));
}

// Known answers: each block sets a few fields by hand; the expected values are the
// format's formula worked out on paper (all exact in float).
TEST_CASE("Q2_K dequantises hand-built blocks", "[quant][k_quants]") {
    auto b = zero_block<block_q2_k>();
    b.d = 0x3c00;     // 1
    b.dmin = 0x4000;  // 2
    b.scales[0] = 0x31;  // scale 1, min 3      (values 0..15)
    b.scales[1] = 0x02;  // scale 2, min 0      (16..31)
    b.scales[2] = 0xF4;  // scale 4, min 15     (32..47)
    b.scales[4] = 0x15;  // scale 5, min 1      (64..79)
    b.scales[8] = 0x27;  // scale 7, min 2      (128..143)
    b.qs[0] = 0b11100100;   // values 0, 32, 64, 96: q 0, 1, 2, 3
    b.qs[16] = 0b00000011;  // value 16: q 3
    b.qs[32] = 0b00000010;  // value 128: q 2 (second half: bytes 32..63)
    const auto v = dequantized(b);
    CHECK(v[0] == 1 * 1 * 0 - 2 * 3);
    CHECK(v[16] == 1 * 2 * 3 - 0);
    CHECK(v[32] == 1 * 4 * 1 - 2 * 15);
    CHECK(v[64] == 1 * 5 * 2 - 2 * 1);
    CHECK(v[96] == 0);  // scale and min 0
    CHECK(v[128] == 1 * 7 * 2 - 2 * 2);
    CHECK(v[1] == -6);  // q 0 in sub-block 0
    CHECK(v[129] == -4);
}

TEST_CASE("Q3_K dequantises hand-built blocks: 6-bit scales and the high-bit mask", "[quant][k_quants]") {
    auto b = zero_block<block_q3_k>();
    b.d = 0x3c00;  // 1
    // Scale j = (low nibble) | (2 high bits) << 4, minus 32. Low nibbles: byte j (j < 8) low,
    // byte j - 8 high; high bits: byte 8 + j % 4, bits 2 (j / 4).
    b.scales[0] = 0x21;        // scale 0 low 1, scale 8 low 2
    b.scales[8] = 0b11100100;  // high bits: scale 0 -> 0, 4 -> 1, 8 -> 2, 12 -> 3
    // So scale 0 = 1 - 32 = -31, scale 4 = 16 - 32 = -16, scale 8 = 34 - 32 = 2,
    // scale 12 = 48 - 32 = 16, every other scale 0 - 32 = -32.
    b.qs[0] = 0b11100100;   // low bits of values 0, 32, 64, 96: 0, 1, 2, 3
    b.qs[32] = 0b01000011;  // values 128, 160, 192, 224: 3, 0, 0, 1
    b.hmask[0] = 0b10010100;  // high bit (q - 4 -> q) for values 64 (bit 2), 128 (bit 4), 224 (bit 7)
    const auto v = dequantized(b);
    CHECK(v[0] == -31 * (0 - 4));
    CHECK(v[16] == -32 * (0 - 4));
    CHECK(v[32] == -32 * (1 - 4));
    CHECK(v[64] == -16 * 2);
    CHECK(v[96] == -32 * (3 - 4));
    CHECK(v[128] == 2 * 3);
    CHECK(v[160] == -32 * (0 - 4));
    CHECK(v[192] == 16 * (0 - 4));
    CHECK(v[224] == -32 * 1);
}

namespace {

// Q4_K and Q5_K share the 12 scale bytes: scales/mins 0-3 in the low 6 bits of bytes
// 0-3 / 4-7; 4-7 in the nibbles of bytes 8-11 with their top 2 bits in the top bits of
// bytes 0-3 (scales) and 4-7 (mins).
template <class Block>
Block q4_q5_scales() {
    auto b = zero_block<Block>();
    b.d = 0x3800;     // 0.5
    b.dmin = 0x3400;  // 0.25
    b.scales[0] = 0x43;  // scale 0 = 3; top bits 01 -> scale 4's bits 4-5
    b.scales[1] = 0x03;  // scale 1 = 3
    b.scales[4] = 0x82;  // min 0 = 2; top bits 10 -> min 4's bits 4-5
    b.scales[5] = 0x04;  // min 1 = 4
    b.scales[8] = 0x53;  // scale 4 = 3 | 1 << 4 = 19, min 4 = 5 | 2 << 4 = 37
    b.scales[9] = 0x21;  // scale 5 = 1, min 5 = 2
    return b;
}

}  // namespace

TEST_CASE("Q4_K dequantises hand-built blocks: 6-bit scales and mins, nibble order", "[quant][k_quants]") {
    auto b = q4_q5_scales<block_q4_k>();
    b.qs[0] = 0x21;   // value 0: q 1, value 32: q 2
    b.qs[64] = 0xF7;  // value 128: q 7, value 160: q 15
    const auto v = dequantized(b);
    CHECK(v[0] == 0.5f * 3 * 1 - 0.25f * 2);
    CHECK(v[1] == -0.25f * 2);
    CHECK(v[32] == 0.5f * 3 * 2 - 0.25f * 4);
    CHECK(v[128] == 0.5f * 19 * 7 - 0.25f * 37);
    CHECK(v[160] == 0.5f * 1 * 15 - 0.25f * 2);
    CHECK(v[64] == 0);  // scale 2 and min 2 are 0
}

TEST_CASE("Q5_K dequantises hand-built blocks: the fifth bit", "[quant][k_quants]") {
    auto b = q4_q5_scales<block_q5_k>();
    b.qs[0] = 0x21;
    b.qs[64] = 0xF7;
    b.qh[0] = 0b00010010;  // bit 1: value 32 (+16); bit 4: value 128 (+16)
    b.qh[5] = 0b00100000;  // bit 5: value 160 + 5
    const auto v = dequantized(b);
    CHECK(v[0] == 0.5f * 3 * 1 - 0.25f * 2);
    CHECK(v[32] == 0.5f * 3 * 18 - 0.25f * 4);
    CHECK(v[128] == 0.5f * 19 * 23 - 0.25f * 37);
    CHECK(v[160] == 0.5f * 1 * 15 - 0.25f * 2);
    CHECK(v[165] == 0.5f * 1 * 16 - 0.25f * 2);
}

TEST_CASE("Q6_K dequantises hand-built blocks: low nibbles, high bits, signed scales", "[quant][k_quants]") {
    auto b = zero_block<block_q6_k>();
    b.d = 0x3800;  // 0.5
    for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<std::int8_t>(j - 7);
    b.ql[0] = 0xA5;   // value 0: low 5, value 64: low 10
    b.ql[32] = 0x3C;  // value 32: low 12, value 96: low 3
    b.qh[0] = 0b11100100;  // top bits: value 0 -> 0, 32 -> 1, 64 -> 2, 96 -> 3
    b.ql[64] = 0x0F;       // value 128: low 15, value 192: 0
    b.qh[32] = 0b00000011;  // value 128: top 3
    const auto v = dequantized(b);
    CHECK(v[0] == 0.5f * -7 * (5 - 32));
    CHECK(v[16] == 0.5f * -6 * (0 - 32));
    CHECK(v[32] == 0.5f * -5 * (28 - 32));
    CHECK(v[64] == 0.5f * -3 * (42 - 32));
    CHECK(v[96] == 0.5f * -1 * (51 - 32));
    CHECK(v[128] == 0.5f * 1 * (63 - 32));
    CHECK(v[192] == 0.5f * 5 * (0 - 32));
}

// Blocks that exercise the vector quantiser's every branch: random scales, ties of the
// largest magnitude (either sign first), halves that round to even, zeros, a NaN, an
// infinity, subnormals (-127 / max overflows), huge values, -0.
std::vector<std::vector<float>> q8_k_test_blocks() {
    std::vector<std::vector<float>> blocks;
    for (std::uint64_t seed = 0; seed < 200; ++seed) blocks.push_back(random_row(qk_k, 1000 + seed, std::ldexp(1.0, int(seed % 40) - 20)));
    // Uniform values: some products iscale * x round to exactly k + 0.5 where the exact
    // product is not (a fused multiply-add would round them the other way).
    kvdecode::rng gen(11);
    for (int n = 0; n < 20000; ++n) {
        std::vector<float> b(qk_k);
        for (float& v : b) v = static_cast<float>((2 * gen.uniform() - 1) * (n % 7 + 1));
        blocks.push_back(std::move(b));
    }
    for (float first : {-3.0f, 3.0f}) {
        auto b = random_row(qk_k, 7);
        b[40] = first, b[41] = -first, b[200] = first;
        blocks.push_back(b);
    }
    std::vector<float> halves(qk_k);
    for (std::size_t i = 0; i < qk_k; ++i) halves[i] = (static_cast<float>(i % 64) - 31.5f) / 63.5f * 2.0f;
    halves[3] = -2.0f;
    blocks.push_back(halves);  // iscale 63.5: many products end in .5
    blocks.emplace_back(qk_k, 0.0f);
    blocks.emplace_back(qk_k, -0.0f);
    auto nan = random_row(qk_k, 8);
    nan[100] = std::numeric_limits<float>::quiet_NaN();
    blocks.push_back(nan);
    auto inf = random_row(qk_k, 9);
    inf[255] = -std::numeric_limits<float>::infinity();
    blocks.push_back(inf);
    blocks.emplace_back(qk_k, 1e-39f);
    auto huge = random_row(qk_k, 10, 1e37);
    huge[0] = 3e38f;
    blocks.push_back(huge);
    auto one = std::vector<float>(qk_k, 0.0f);
    one[128] = -1e-30f;
    blocks.push_back(one);
    return blocks;
}

TEST_CASE("the vector Q8_K quantiser writes the scalar one's bytes, and prepare uses it", "[quant][k_quants]") {
    const auto blocks = q8_k_test_blocks();
    auto same = [](const block_q8_k& a, const block_q8_k& b) { return std::memcmp(&a, &b, sizeof a) == 0; };
#if defined(KVDECODE_QUANT_AVX2)
    if (kvdecode::quant::detail::cpu_runs(kernel_isa::avx2)) {
        for (std::size_t i = 0; i < blocks.size(); ++i) {
            CAPTURE(i);
            block_q8_k want, got;
            std::memset(&want, 0x5a, sizeof want);
            std::memset(&got, 0xa5, sizeof got);
            quantize_block_q8_k(blocks[i].data(), qk_k, want);
            kvdecode::quant::detail::quantize_q8_k_avx2(blocks[i].data(), got);
            CHECK((same(want, got) || (std::isnan(want.d) && std::isnan(got.d) &&
                                       std::memcmp(want.qs, got.qs, sizeof want.qs) == 0 &&
                                       std::memcmp(want.bsums, got.bsums, sizeof want.bsums) == 0)));
        }
    } else {
        WARN("this CPU has no AVX2: the vector Q8_K quantiser is not run");
    }
#else
    WARN("built without AVX2: the vector Q8_K quantiser is not compiled");
#endif
    // A row of whole blocks and a short one through prepare, against quantize_row_q8_k.
    std::vector<float> row;
    for (std::size_t i = 0; i < 6; ++i) row.insert(row.end(), blocks[i * 40].begin(), blocks[i * 40].end());
    row.resize(row.size() - 100);
    const std::size_t nb = k_blocks(row.size());
    std::vector<block_q8_k> want(nb);
    quantize_row_q8_k(row.data(), want.data(), row.size());
    kvdecode::aligned_buffer<std::byte> scratch(q8_k_activations{row.size()}.row_bytes());
    prepare_q8_k_row(row.data(), row.size(), scratch.data());
    for (std::size_t b = 0; b < nb; ++b) CHECK(same(want[b], reinterpret_cast<const block_q8_k*>(scratch.data())[b]));
}

TEST_CASE("Q8_K quantises known vectors as ggml's reference does", "[quant][k_quants]") {
    SECTION("the largest magnitude negative: d > 0, ties to even") {
        std::vector<float> x(256, 0.0f);
        x[5] = -2.0f;  // iscale = -127 / -2 = 63.5
        x[0] = 1.0f;   // 63.5 -> 64 (even)
        x[1] = 0.5f;   // 31.75 -> 32
        x[2] = -1.0f;  // -63.5 -> -64
        x[3] = 1.5f / 63.5f;
        x[17] = 2.0f;  // ties with |max| but comes later: 127
        block_q8_k b;
        quantize_row_q8_k(x.data(), &b, 256);
        CHECK(b.d == 1 / 63.5f);
        CHECK(int(b.qs[0]) == 64);
        CHECK(int(b.qs[1]) == 32);
        CHECK(int(b.qs[2]) == -64);
        CHECK(int(b.qs[5]) == -127);
        CHECK(int(b.qs[17]) == 127);
        CHECK(int(b.bsums[0]) == 64 + 32 - 64 + int(b.qs[3]) - 127);
        CHECK(int(b.bsums[1]) == 127);
        for (int j = 2; j < 16; ++j) CHECK(b.bsums[j] == 0);
    }
    SECTION("the largest magnitude positive: d < 0 and the quants negated") {
        std::vector<float> x(256, 0.25f);
        x[200] = 4.0f;
        block_q8_k b;
        quantize_row_q8_k(x.data(), &b, 256);
        CHECK(b.d == -1 / 31.75f);
        CHECK(int(b.qs[200]) == -127);
        CHECK(int(b.qs[0]) == -8);  // -7.9375
        CHECK(int(b.bsums[12]) == -8 * 15 - 127);
    }
    SECTION("zeros, a short row, non-finite and tiny blocks") {
        block_q8_k b[2];
        std::vector<float> x(300, 0.0f);
        x[290] = 3.0f;  // the second block holds 44 values and 212 zeros
        quantize_row_q8_k(x.data(), b, 300);
        CHECK(b[0].d == 0);
        CHECK(int(b[1].qs[34]) == -127);
        x[7] = std::numeric_limits<float>::quiet_NaN();
        x[291] = std::numeric_limits<float>::infinity();
        quantize_row_q8_k(x.data(), b, 300);
        CHECK(std::isnan(b[0].d));
        CHECK(std::isnan(b[1].d));
        for (std::int8_t q : b[1].qs) CHECK(q == 0);
        std::vector<float> tiny(256, 1e-39f);
        quantize_row_q8_k(tiny.data(), b, 256);  // -127 / 1e-39 overflows
        CHECK(b[0].d == 0);
        for (std::int8_t q : b[0].qs) CHECK(q == 0);
    }
    SECTION("dequantised within half a step") {
        const auto x = random_row(512, 3);
        block_q8_k b[2];
        quantize_row_q8_k(x.data(), b, 512);
        std::vector<float> back(512);
        dequantize_row_q8_k(b, back.data(), 512);
        for (std::size_t i = 0; i < 512; ++i) {
            CHECK(std::abs(int(b[i / 256].qs[i % 256])) <= 127);
            CHECK(std::fabs(back[i] - x[i]) <= std::fabs(b[i / 256].d) * 0.5001f);
        }
        for (std::size_t j = 0; j < 32; ++j) {
            int sum = 0;
            for (std::size_t i = 0; i < 16; ++i) sum += b[j / 16].qs[(j % 16) * 16 + i];
            CHECK(b[j / 16].bsums[j % 16] == sum);
        }
    }
}

namespace {

template <class Block>
struct quantizer;
template <>
struct quantizer<block_q2_k> {
    static constexpr auto row = quantize_row_q2_k;
    static constexpr double rmse = 0.35;  // relative rms error on N(0, s) rows; measured 0.297
};
template <>
struct quantizer<block_q3_k> {
    static constexpr auto row = quantize_row_q3_k;
    static constexpr double rmse = 0.18;  // measured 0.152
};
template <>
struct quantizer<block_q4_k> {
    static constexpr auto row = quantize_row_q4_k;
    static constexpr double rmse = 0.085;  // measured 0.072
};
template <>
struct quantizer<block_q5_k> {
    static constexpr auto row = quantize_row_q5_k;
    static constexpr double rmse = 0.045;  // measured 0.036
};
template <>
struct quantizer<block_q6_k> {
    static constexpr auto row = quantize_row_q6_k;
    static constexpr double rmse = 0.025;  // measured 0.018 (0.0204 on rows of scale 1e-3: float16 scales)
};

template <class Block>
void check_round_trip() {
    const std::size_t n = 256 * 24;
    for (double scale : {1e-3, 1.0, 100.0}) {
        const auto x = random_row(n, 41, scale);
        std::vector<Block> blocks(n / 256);
        quantizer<Block>::row(x.data(), blocks.data(), n);
        std::vector<float> back(n);
        dequantize_row_k(blocks.data(), back.data(), n);
        double err = 0, sum = 0, worst = 0;
        for (std::size_t i = 0; i < n; ++i) {
            err += (double(back[i]) - x[i]) * (double(back[i]) - x[i]);
            sum += double(x[i]) * x[i];
            worst = std::max(worst, std::fabs(double(back[i]) - x[i]) / scale);
        }
        CAPTURE(sizeof(Block), scale, std::sqrt(err / sum), worst);
        CHECK(std::sqrt(err / sum) <= quantizer<Block>::rmse);
        CHECK(worst <= 12 * quantizer<Block>::rmse);  // no value far off (N(0,1) rows reach |x| ~ 4)
    }
    // All-zero and constant blocks come back exactly (a constant is the min, or scale * q).
    std::vector<float> x(512, 0.0f);
    std::fill(x.begin() + 256, x.end(), -0.75f);
    std::vector<Block> blocks(2);
    quantizer<Block>::row(x.data(), blocks.data(), 512);
    std::vector<float> back(512);
    dequantize_row_k(blocks.data(), back.data(), 512);
    for (std::size_t i = 0; i < 256; ++i) REQUIRE(back[i] == 0.0f);
    for (std::size_t i = 256; i < 512; ++i) REQUIRE(std::fabs(back[i] + 0.75f) <= 0.75f * 2e-3f);  // float16 scales
}

}  // namespace

TEST_CASE("K-quant reference quantisers: dequantised values near the input", "[quant][k_quants]") {
    check_round_trip<block_q2_k>();
    check_round_trip<block_q3_k>();
    check_round_trip<block_q4_k>();
    check_round_trip<block_q5_k>();
    check_round_trip<block_q6_k>();
}

namespace {

// A random finite float16 of moderate size (2^-10 .. 2^3 in magnitude, either sign, or
// zero now and then): the products of a 2304-long row stay far from float's range.
std::uint16_t random_scale(kvdecode::rng& gen) {
    if (gen.next_u64() % 16 == 0) return 0;
    const std::uint16_t sign = static_cast<std::uint16_t>((gen.next_u64() & 1) << 15);
    const std::uint16_t exponent = static_cast<std::uint16_t>(5 + gen.next_u64() % 14);  // biased: 2^-10 .. 2^3
    return static_cast<std::uint16_t>(sign | (exponent << 10) | (gen.next_u64() & 0x3ff));
}

template <class Block>
void set_scales(Block& b, kvdecode::rng& gen) {
    b.d = random_scale(gen);
    if constexpr (k_format<Block>::has_min) b.dmin = random_scale(gen);
}

// Every byte random, then the float16 scales replaced by finite ones.
template <class Block>
std::vector<Block> random_blocks(std::size_t count, std::uint64_t seed) {
    kvdecode::rng gen(seed);
    std::vector<Block> blocks(count);
    auto* bytes = reinterpret_cast<unsigned char*>(blocks.data());
    for (std::size_t i = 0; i < count * sizeof(Block); ++i) bytes[i] = static_cast<unsigned char>(gen.next_u64());
    for (Block& b : blocks) set_scales(b, gen);
    return blocks;
}

template <class Block>
std::vector<Block> quantized_blocks(std::size_t out_dim, std::size_t in_dim, std::uint64_t seed) {
    const auto w = random_row(out_dim * in_dim, seed, 0.02);
    std::vector<Block> blocks(out_dim * in_dim / qk_k);
    for (std::size_t o = 0; o < out_dim; ++o) quantizer<Block>::row(w.data() + o * in_dim, blocks.data() + o * (in_dim / qk_k), in_dim);
    return blocks;
}

// The exact product of the blocks with the prepared activations, in float64, and the
// sum of the magnitudes of its terms.
template <class Block>
void exact_product(const std::vector<Block>& w, std::size_t out_dim, std::size_t in_dim, const std::byte* scratch,
                   std::size_t rows, std::vector<double>& value, std::vector<double>& magnitude) {
    using format = k_format<Block>;
    const std::size_t nb = in_dim / qk_k, row_bytes = q8_k_activations{in_dim}.row_bytes();
    value.assign(rows * out_dim, 0.0);
    magnitude.assign(rows * out_dim, 0.0);
    k_block_ints v;
    for (std::size_t o = 0; o < out_dim; ++o)
        for (std::size_t b = 0; b < nb; ++b) {
            unpack_k_block(w[o * nb + b], v);
            for (std::size_t r = 0; r < rows; ++r) {
                const block_q8_k& x = reinterpret_cast<const block_q8_k*>(scratch + r * row_bytes)[b];
                for (std::size_t i = 0; i < qk_k; ++i) {
                    const double xv = double(x.d) * x.qs[i];
                    const double scaled = double(v.d) * v.scale[i / 16] * (int(v.q[i]) - format::offset) * xv;
                    const double shifted = double(v.dmin) * v.min[i / 16] * xv;
                    value[r * out_dim + o] += scaled - shifted;
                    magnitude[r * out_dim + o] += std::fabs(scaled) + std::fabs(shifted);
                }
            }
        }
}

std::vector<kernel_isa> isas_here() {
    std::vector<kernel_isa> isas = {kernel_isa::scalar};
#if defined(KVDECODE_QUANT_AVX2)
    if (detail::cpu_runs(kernel_isa::avx2)) isas.push_back(kernel_isa::avx2);
#endif
#if defined(KVDECODE_QUANT_AVX512)
    if (detail::cpu_runs(kernel_isa::avx512)) isas.push_back(kernel_isa::avx512);
#endif
    return isas;
}

template <class Block>
void run_kernel(kernel_isa isa, const k_matrix<Block>& m, const matrix_product<float>& p, const std::byte* scratch,
                std::size_t unit_begin, std::size_t unit_end) {
    switch (isa) {
        case kernel_isa::scalar: k_matmul<Block, detail::k_scalar>(m, p, scratch, unit_begin, unit_end); return;
#if defined(KVDECODE_QUANT_AVX2)
        case kernel_isa::avx2: k_matmul<Block, detail::k_avx2>(m, p, scratch, unit_begin, unit_end); return;
#endif
#if defined(KVDECODE_QUANT_AVX512)
        case kernel_isa::avx512: k_matmul<Block, detail::k_avx512>(m, p, scratch, unit_begin, unit_end); return;
#endif
        default: FAIL("no such kernel here");
    }
}

// Rows 1..9 (every tile shape of the kernels: 8 (output, row) lanes, up to 8 rows a
// tile) and 16, 17, 33 (several tiles and a remainder).
const std::vector<std::size_t> all_row_counts = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 33};

template <class Block>
void check_kernels(const std::vector<Block>& w, std::size_t out_dim, std::size_t in_dim, std::uint64_t seed,
                   const std::vector<std::size_t>& row_counts = all_row_counts) {
    const k_matrix<Block> m{w.data(), out_dim, in_dim};
    const std::size_t nb = in_dim / qk_k, row_bytes = q8_k_activations{in_dim}.row_bytes();
    const double eps = std::numeric_limits<float>::epsilon();
    const auto isas = isas_here();
    for (std::size_t rows : row_counts) {
        const auto x = random_row(rows * in_dim, seed + rows);
        kvdecode::aligned_buffer<std::byte> scratch(rows * row_bytes);
        for (std::size_t r = 0; r < rows; ++r) prepare_q8_k_row(x.data() + r * in_dim, in_dim, scratch.data() + r * row_bytes);
        std::vector<double> want, magnitude;
        exact_product(w, out_dim, in_dim, scratch.data(), rows, want, magnitude);
        std::vector<float> dot(rows * out_dim);
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t o = 0; o < out_dim; ++o)
                dot[r * out_dim + o] =
                    dot_k_q8_k(w.data() + o * nb, reinterpret_cast<const block_q8_k*>(scratch.data() + r * row_bytes), nb);
        const auto row_scale = random_row(rows, seed + 99);
        for (kernel_isa isa : isas)
            for (bool accumulate : {false, true})
                for (bool scaled : {false, true}) {
                    const std::size_t out_stride = out_dim + 3;
                    const auto before = random_row(rows * out_stride, seed + 7);
                    std::vector<float> out = before;
                    const matrix_product<float> p{.in = x.data(), .in_stride = in_dim, .rows = rows,
                                                  .row_scale = scaled ? row_scale.data() : nullptr, .out = out.data(),
                                                  .out_stride = out_stride, .accumulate = accumulate};
                    const std::size_t units = (out_dim + k_unit_outputs - 1) / k_unit_outputs;
                    run_kernel(isa, m, p, scratch.data(), 0, units / 2);  // split as threads would
                    run_kernel(isa, m, p, scratch.data(), units / 2, units);
                    for (std::size_t r = 0; r < rows; ++r)
                        for (std::size_t o = 0; o < out_dim; ++o) {
                            const float s = scaled ? row_scale[r] : 1.0f;
                            const float prior = before[r * out_stride + o];
                            const double exact = want[r * out_dim + o] * s + (accumulate ? prior : 0.0);
                            const double bound = 4 * double(nb + 2) * eps * magnitude[r * out_dim + o] * std::fabs(s) +
                                                 (accumulate ? 4 * eps * std::fabs(prior) : 0.0) + 1e-30;
                            const float got = out[r * out_stride + o];
                            // Stored unscaled: the reference dot bit for bit.
                            const bool bits_differ = !accumulate && !scaled && std::bit_cast<std::uint32_t>(got) !=
                                                                                  std::bit_cast<std::uint32_t>(dot[r * out_dim + o]);
                            if (!(std::fabs(got - exact) <= bound) || bits_differ) {
                                CAPTURE(kvdecode::to_string(isa), sizeof(Block), out_dim, in_dim, rows, accumulate, scaled, r, o);
                                CAPTURE(got, dot[r * out_dim + o], exact, bound);
                                FAIL("kernel output off");
                            }
                        }
                    // Outputs past out_dim in each row's stride are left alone.
                    for (std::size_t r = 0; r < rows; ++r)
                        for (std::size_t o = out_dim; o < out_stride; ++o)
                            REQUIRE(out[r * out_stride + o] == before[r * out_stride + o]);
                }
    }
}

// Bit for bit, on every instruction set, with row scales and accumulation: the product
// split into units at odd points equals it in one call, and each row of a many-row
// product equals that row multiplied alone (rows = 1), whatever tile it fell in.
template <class Block>
void check_splits_and_rows(const std::vector<Block>& w, std::size_t out_dim, std::size_t in_dim, std::size_t rows,
                           std::uint64_t seed) {
    const k_matrix<Block> m{w.data(), out_dim, in_dim};
    const std::size_t row_bytes = q8_k_activations{in_dim}.row_bytes(), units = (out_dim + k_unit_outputs - 1) / k_unit_outputs;
    const auto x = random_row(rows * in_dim, seed);
    const auto row_scale = random_row(rows, seed + 1);
    const auto before = random_row(rows * out_dim, seed + 2);
    kvdecode::aligned_buffer<std::byte> scratch(rows * row_bytes);
    for (std::size_t r = 0; r < rows; ++r) prepare_q8_k_row(x.data() + r * in_dim, in_dim, scratch.data() + r * row_bytes);
    auto same_bits = [](const std::vector<float>& a, const std::vector<float>& b) {
        for (std::size_t i = 0; i < a.size(); ++i)
            if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) return false;
        return true;
    };
    for (kernel_isa isa : isas_here())
        for (bool accumulate : {false, true}) {
            CAPTURE(kvdecode::to_string(isa), sizeof(Block), out_dim, in_dim, rows, accumulate);
            auto product = [&](std::size_t first_row, std::size_t count, const std::vector<std::size_t>& cuts) {
                std::vector<float> out(before.begin() + first_row * out_dim, before.begin() + (first_row + count) * out_dim);
                const matrix_product<float> p{.in = x.data() + first_row * in_dim, .in_stride = in_dim, .rows = count,
                                              .row_scale = row_scale.data() + first_row, .out = out.data(),
                                              .out_stride = out_dim, .accumulate = accumulate};
                const std::byte* s = scratch.data() + first_row * row_bytes;
                std::size_t begin = 0;
                for (std::size_t cut : cuts) run_kernel(isa, m, p, s, begin, cut), begin = cut;
                run_kernel(isa, m, p, s, begin, units);
                return out;
            };
            const std::vector<float> whole = product(0, rows, {});
            std::vector<std::size_t> odd_cuts;  // units 1, 2 and 4 and the one before the last, where there are
            for (std::size_t cut : {std::size_t{1}, std::size_t{2}, std::size_t{4}, units - 1})
                if (cut > 0 && cut < units && (odd_cuts.empty() || cut > odd_cuts.back())) odd_cuts.push_back(cut);
            REQUIRE(same_bits(product(0, rows, odd_cuts), whole));
            for (std::size_t r = 0; r < rows; ++r) {
                CAPTURE(r);
                const std::vector<float> alone = product(r, 1, {});
                REQUIRE(same_bits(alone, std::vector<float>(whole.begin() + r * out_dim, whole.begin() + (r + 1) * out_dim)));
            }
        }
}

template <class Block>
void check_kernels_every_size() {
    for (std::size_t in_dim : {256, 768, 2304})
        for (std::size_t out_dim : {1, 31, 33, 100}) {
            CAPTURE(in_dim, out_dim);
            check_kernels(random_blocks<Block>(out_dim * in_dim / qk_k, in_dim + out_dim), out_dim, in_dim, 5);
            check_kernels(quantized_blocks<Block>(out_dim, in_dim, 3 * in_dim + out_dim), out_dim, in_dim, 6);
        }
    // Every row length a GGUF K-quant row may have up to 4096, fewer row counts each.
    for (std::size_t in_dim = 256; in_dim <= 4096; in_dim += 256) {
        CAPTURE(in_dim);
        check_kernels(random_blocks<Block>(37 * in_dim / qk_k, 7 * in_dim), 37, in_dim, 8, {1, 7, 8, 9, 17});
    }
    for (std::size_t out_dim : {37, 100, 161})
        for (std::size_t rows : {1, 7, 8, 9, 16, 17, 33})
            check_splits_and_rows(random_blocks<Block>(out_dim * 768 / qk_k, out_dim + rows), out_dim, 768, rows, 40 + rows);
}

}  // namespace

TEST_CASE("Q2_K kernels on every instruction set equal the reference dot", "[quant][k_quants]") {
    check_kernels_every_size<block_q2_k>();
}
TEST_CASE("Q3_K kernels on every instruction set equal the reference dot", "[quant][k_quants]") {
    check_kernels_every_size<block_q3_k>();
}
TEST_CASE("Q4_K kernels on every instruction set equal the reference dot", "[quant][k_quants]") {
    check_kernels_every_size<block_q4_k>();
}
TEST_CASE("Q5_K kernels on every instruction set equal the reference dot", "[quant][k_quants]") {
    check_kernels_every_size<block_q5_k>();
}
TEST_CASE("Q6_K kernels on every instruction set equal the reference dot", "[quant][k_quants]") {
    check_kernels_every_size<block_q6_k>();
}

TEST_CASE("K-quant kernels report the instruction sets they ran on", "[quant][k_quants]") {
    std::string ran;
    for (kernel_isa isa : isas_here()) ran.append(" ").append(kvdecode::to_string(isa));
    WARN("K-quant kernels tested on this machine:" << ran);
    REQUIRE_FALSE(kvdecode::weight_matrix<float>::has_kernel(kvdecode::weight_type::q4_k, kernel_isa::sse2));
}
