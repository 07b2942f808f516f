// Q8_0: the block layout, quantisation on hand-computed vectors (ties away from zero,
// zeros, all-equal, extreme and non-finite values), the error bound the format
// promises, the reference dot, and the kernels' activation quantisation (prepare)
// bit-identical to the reference on every instruction set.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/rng.hpp"
#include "kvdecode/quant/kernels_q8_0.hpp"
#include "kvdecode/quant/q8_0.hpp"

using namespace kvdecode::quant;

namespace {

block_q8_0 quantize_one(const std::vector<float>& x) {
    block_q8_0 b;
    std::memset(&b, 0x55, sizeof b);  // everything gets written
    quantize_row_q8_0(x.data(), &b, x.size());
    return b;
}

std::vector<float> random_row(std::size_t n, std::uint64_t seed, double scale = 1.0) {
    kvdecode::rng gen(seed);
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(scale * gen.normal());
    return v;
}

}  // namespace

TEST_CASE("block_q8_0 has GGUF's layout", "[quant][q8_0]") {
    REQUIRE(sizeof(block_q8_0) == 34);
    REQUIRE(offsetof(block_q8_0, d) == 0);
    REQUIRE(offsetof(block_q8_0, qs) == 2);
    REQUIRE(q8_0_blocks(1) == 1);
    REQUIRE(q8_0_blocks(32) == 1);
    REQUIRE(q8_0_blocks(33) == 2);
}

TEST_CASE("Q8_0 quantises known vectors as GGUF's reference does", "[quant][q8_0]") {
    SECTION("amax 127: d = 1, values rounded half away from zero") {
        std::vector<float> x(32, 0.0f);
        const float head[] = {127.0f, -127.0f, 0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 63.5f, 0.49f, -0.51f, 100.2f, -3.7f};
        std::copy(std::begin(head), std::end(head), x.begin());
        const block_q8_0 b = quantize_one(x);
        REQUIRE(b.d == 0x3c00);  // 1.0
        const int want[] = {127, -127, 1, -1, 2, 3, -3, 64, 0, -1, 100, -4};
        for (std::size_t i = 0; i < 12; ++i) REQUIRE(int(b.qs[i]) == want[i]);
        for (std::size_t i = 12; i < 32; ++i) REQUIRE(b.qs[i] == 0);
        std::vector<float> back(32);
        dequantize_row_q8_0(&b, back.data(), 32);
        for (std::size_t i = 0; i < 12; ++i) REQUIRE(back[i] == float(want[i]));
    }
    SECTION("amax 254: d = 2, id = 0.5") {
        const block_q8_0 b = quantize_one({254.0f, 3.0f, 5.0f, -1.0f, -7.0f, 0.9f});
        REQUIRE(b.d == 0x4000);  // 2.0
        const int want[] = {127, 2, 3, -1, -4, 0};  // 1.5 -> 2, 2.5 -> 3, -0.5 -> -1, -3.5 -> -4, 0.45 -> 0
        for (std::size_t i = 0; i < 6; ++i) REQUIRE(int(b.qs[i]) == want[i]);
        for (std::size_t i = 6; i < 32; ++i) REQUIRE(b.qs[i] == 0);  // a short row: the rest is zero
    }
    SECTION("a scale that float16 rounds: amax 1 gives d = 1/127, stored as 0x2008") {
        // 1/127 = 2^-7 * 1.00787..., mantissa 1.00787 * 1024 = 1032.06 -> 1032: 0x2000 | 8.
        const block_q8_0 b = quantize_one({1.0f, -0.5f, 0.25f});
        REQUIRE(b.d == 0x2008);
        REQUIRE(int(b.qs[0]) == 127);
        REQUIRE(int(b.qs[1]) == -64);  // -63.5: away from zero
        REQUIRE(int(b.qs[2]) == 32);   // 31.75
        REQUIRE(f16_to_f32(b.d) == 0x1.02p-7f);
    }
    SECTION("zeros") {
        const block_q8_0 b = quantize_one(std::vector<float>(32, 0.0f));
        REQUIRE(b.d == 0);
        for (std::int8_t q : b.qs) REQUIRE(q == 0);
    }
    SECTION("all equal") {
        for (float v : {3.0f, -3.0f, 1e-3f}) {
            const block_q8_0 b = quantize_one(std::vector<float>(32, v));
            REQUIRE(b.d == f32_to_f16(std::fabs(v) / 127.0f));
            for (std::int8_t q : b.qs) REQUIRE(int(q) == (v > 0 ? 127 : -127));
        }
    }
    SECTION("one large value flattens the rest to zero") {
        std::vector<float> x(32, 1e-3f);
        x[7] = -1000.0f;
        const block_q8_0 b = quantize_one(x);
        REQUIRE(int(b.qs[7]) == -127);
        for (std::size_t i = 0; i < 32; ++i)
            if (i != 7) REQUIRE(b.qs[i] == 0);
    }
    SECTION("extremes: a scale beyond float16 is inf, one below it zero, below float's normals no quants") {
        REQUIRE(quantize_one({std::numeric_limits<float>::max()}).d == 0x7c00);
        const block_q8_0 tiny = quantize_one({1e-30f, -1e-30f});
        REQUIRE(tiny.d == 0);  // 7.9e-33 underflows float16
        REQUIRE(int(tiny.qs[0]) == 127);
        REQUIRE(int(tiny.qs[1]) == -127);
        const block_q8_0 denormal = quantize_one({1e-40f, 5e-41f});
        REQUIRE(denormal.d == 0);
        REQUIRE(denormal.qs[0] == 0);
        REQUIRE(denormal.qs[1] == 0);
    }
    SECTION("inf or NaN: no quants and a NaN scale, so products are NaN") {
        for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN()}) {
            const block_q8_0 b = quantize_one({1.0f, bad, 2.0f});
            REQUIRE(std::isnan(f16_to_f32(b.d)));
            for (std::int8_t q : b.qs) REQUIRE(q == 0);
            const block_q8_0 ones = quantize_one(std::vector<float>(32, 1.0f));
            REQUIRE(std::isnan(dot_q8_0(&ones, &b, 1)));
        }
    }
}

TEST_CASE("Q8_0 dequantised values are within the format's error of the input", "[quant][q8_0]") {
    for (double scale : {1e-4, 1.0, 3e3}) {
        for (std::size_t n : {1, 31, 32, 33, 100, 255}) {
            const auto x = random_row(n, n + 17, scale);
            std::vector<block_q8_0> blocks(q8_0_blocks(n));
            quantize_row_q8_0(x.data(), blocks.data(), n);
            std::vector<float> back(n);
            dequantize_row_q8_0(blocks.data(), back.data(), n);
            for (std::size_t i = 0; i < n; ++i) {
                const std::size_t b = i / 32;
                double amax = 0;
                for (std::size_t j = b * 32; j < std::min(n, b * 32 + 32); ++j) amax = std::max(amax, std::fabs(double(x[j])));
                const double d = amax / 127, d16 = f16_to_f32(blocks[b].d);
                // Half a step of the exact scale (and float rounding of x * id), plus what rounding the
                // scale to float16 moves the largest quant.
                const double bound = d * (0.5 + 1e-4) + 127 * std::fabs(d - d16);
                CAPTURE(scale, n, i, x[i], back[i]);
                REQUIRE(std::fabs(double(back[i]) - double(x[i])) <= bound);
                REQUIRE(std::abs(int(blocks[b].qs[i % 32])) <= 127);
            }
        }
    }
}

TEST_CASE("Q8_0 reference dot is the sum of the dequantised products", "[quant][q8_0]") {
    for (std::size_t n : {1, 32, 33, 255}) {
        const auto w = random_row(n, 1 + n), x = random_row(n, 2 + n);
        std::vector<block_q8_0> wb(q8_0_blocks(n)), xb(q8_0_blocks(n));
        quantize_row_q8_0(w.data(), wb.data(), n);
        quantize_row_q8_0(x.data(), xb.data(), n);
        std::vector<float> wd(n), xd(n);
        dequantize_row_q8_0(wb.data(), wd.data(), n);
        dequantize_row_q8_0(xb.data(), xd.data(), n);
        double want = 0, magnitude = 0;
        for (std::size_t i = 0; i < n; ++i) {
            want += double(wd[i]) * double(xd[i]);
            magnitude += std::fabs(double(wd[i]) * double(xd[i]));
        }
        CAPTURE(n);
        REQUIRE(std::fabs(double(dot_q8_0(wb.data(), xb.data(), wb.size())) - want) <=
                (wb.size() + 2) * 2 * std::numeric_limits<float>::epsilon() * magnitude);
    }
}

namespace {

// The prepared row equals the reference blocks: quants, then scales widened to float.
void check_prepared(const std::vector<float>& x, const std::byte* prepared) {
    const std::size_t n = x.size();
    const q8_0_activations layout{n};
    std::vector<block_q8_0> ref(q8_0_blocks(n));
    quantize_row_q8_0(x.data(), ref.data(), n);
    const auto* quants = reinterpret_cast<const std::int8_t*>(prepared);
    const auto* scales = reinterpret_cast<const float*>(prepared + layout.scales_offset());
    REQUIRE(layout.blocks() == ref.size());
    for (std::size_t b = 0; b < ref.size(); ++b) {
        CAPTURE(n, b);
        for (std::size_t i = 0; i < 32; ++i) REQUIRE(int(quants[b * 32 + i]) == int(ref[b].qs[i]));
        const float d = f16_to_f32(ref[b].d);
        if (std::isnan(d)) REQUIRE(std::isnan(scales[b]));
        else REQUIRE(std::bit_cast<std::uint32_t>(scales[b]) == std::bit_cast<std::uint32_t>(d));
    }
}

// Rows with ties (x * id exactly k + 0.5), zero blocks, a non-finite block, tiny and huge blocks.
std::vector<std::vector<float>> awkward_rows() {
    std::vector<std::vector<float>> rows;
    for (std::size_t n : {1, 2, 31, 32, 33, 64, 100, 255}) rows.push_back(random_row(n, 100 + n));
    std::vector<float> ties(96);
    for (std::size_t i = 0; i < 96; ++i) ties[i] = (i % 2 ? -1.0f : 1.0f) * (float(i % 127) + 0.5f);
    ties[0] = 127.0f;   // block 0: d = 1, every value a tie
    ties[32] = -127.0f;
    for (std::size_t i = 64; i < 96; ++i) ties[i] = 2.0f * (float(i - 64) + 0.25f);  // block 2: amax 63.5, other ratios
    rows.push_back(ties);
    std::vector<float> mixed = random_row(160, 7);
    std::fill(mixed.begin() + 32, mixed.begin() + 64, 0.0f);
    mixed[70] = std::numeric_limits<float>::quiet_NaN();
    mixed[100] = std::numeric_limits<float>::infinity();
    for (std::size_t i = 128; i < 160; ++i) mixed[i] *= 1e-39f;  // below float's normal range after / 127
    rows.push_back(mixed);
    return rows;
}

}  // namespace

TEST_CASE("Q8_0 activation quantisation (prepare) equals the reference bit for bit", "[quant][q8_0]") {
    for (const auto& x : awkward_rows()) {
        const q8_0_activations layout{x.size()};
        kvdecode::aligned_buffer<std::byte> scratch(layout.row_bytes());
        std::memset(scratch.data(), 0x55, scratch.size());  // every block must be written
        quantize_activation_row(x.data(), x.size(), scratch.data());
        check_prepared(x, scratch.data());
    }
}

TEST_CASE("Q8_0 weights' prepare adds -128 times each block's quant sum", "[quant][q8_0]") {
    for (const auto& x : awkward_rows()) {
        const q8_0_weight_activations layout{x.size()};
        kvdecode::aligned_buffer<std::byte> scratch(layout.row_bytes());
        std::memset(scratch.data(), 0x55, scratch.size());
        prepare_q8_0_row(x.data(), x.size(), scratch.data());
        check_prepared(x, scratch.data());
        std::vector<block_q8_0> want(q8_0_blocks(x.size()));
        quantize_row_q8_0(x.data(), want.data(), x.size());
        const auto* terms = reinterpret_cast<const std::int32_t*>(scratch.data() + layout.sums_offset());
        CAPTURE(x.size());
        REQUIRE(layout.q8_0().blocks() == want.size());
        for (std::size_t b = 0; b < want.size(); ++b) {
            std::int32_t sum = 0;
            for (std::int8_t q : want[b].qs) sum += q;
            REQUIRE(terms[b] == -128 * sum);
        }
    }
}

namespace {

template <class Quantize>
void check_block_quantizer(Quantize quantize) {
    for (const auto& x : awkward_rows()) {
        for (std::size_t b = 0; b + 32 <= x.size(); b += 32) {
            std::int8_t got[32];
            block_q8_0 want;
            want.d = quantize_block_q8_0(x.data() + b, 32, want.qs);
            const std::uint16_t d = quantize(x.data() + b, got);
            CAPTURE(x.size(), b);
            REQUIRE(d == want.d);
            for (std::size_t i = 0; i < 32; ++i) REQUIRE(got[i] == want.qs[i]);
        }
    }
}

}  // namespace

TEST_CASE("Q8_0 block quantisers of every compiled-in instruction set equal the reference", "[quant][q8_0]") {
#if defined(KVDECODE_QUANT_AVX512)
    if (kvdecode::quant::detail::cpu_runs(kvdecode::kernel_isa::avx512)) {
        INFO("avx512");
        check_block_quantizer(&kvdecode::quant::detail::quantize_block_avx512);
    }
#endif
#if defined(KVDECODE_QUANT_AVX2)
    if (kvdecode::quant::detail::cpu_runs(kvdecode::kernel_isa::avx2)) {
        INFO("avx2");
        check_block_quantizer(&kvdecode::quant::detail::quantize_block_avx2);
    }
#endif
    check_block_quantizer(&kvdecode::quant::detail::quantize_block_scalar);
}

// AMX (Sapphire Rapids and later) takes Q8_0 tiles of 8 or more rows inside the AVX-512
// kernel; the weight_matrix tests compare it with the scalar kernel over awkward sizes.
// Here: the process is granted the tile state where the CPU has it (else the AVX-512
// kernel silently falls back), the AMX kernel takes these products, and the extremes of
// the int32 block sums (weights of -128 and 127, which the file format allows, times
// activations of +-127) give the scalar kernel's bits for every tile height, with an even
// and an odd number of blocks.
TEST_CASE("Q8_0 tiles of several rows on AMX equal the scalar kernel", "[quant][q8_0]") {
    using namespace kvdecode::quant::detail;
#if !defined(KVDECODE_QUANT_AMX)
    if (cpu_features::get().amx_int8) WARN("skipped: this build has no AMX kernels (its target lacks -mamx-tile -mamx-int8)");
#else
    if (!cpu_features::get().amx_int8) {
        WARN("skipped: this CPU (or its OS) has no AMX-INT8");
        return;
    }
    REQUIRE(amx_permitted());
    const std::size_t out_dim = 40;
    for (std::size_t nb : {128, 127}) {
        const std::size_t in_dim = nb * q8_0_block_values;
        kvdecode::rng gen(77 + nb);
        std::vector<block_q8_0> rows(out_dim * nb);
        for (std::size_t i = 0; i < rows.size(); ++i) {
            rows[i].d = f32_to_f16(static_cast<float>(0.01 + 0.001 * gen.uniform()));
            for (std::int8_t& q : rows[i].qs)  // mostly the extremes, some of everything
                q = static_cast<std::int8_t>(gen.uniform() < 0.8 ? (gen.uniform() < 0.5 ? -128 : 127)
                                                                 : static_cast<int>(gen.uniform() * 256) - 128);
        }
        kvdecode::aligned_buffer<std::byte> packed(q8_0_interleaved::bytes(out_dim, in_dim));
        interleave_q8_0(reinterpret_cast<const std::byte*>(rows.data()), out_dim, in_dim, packed.data());
        const q8_0_interleaved m{packed.data(), out_dim, in_dim};
        const q8_0_weight_activations layout{in_dim};
        for (std::size_t tile_rows = 1; tile_rows <= 17; ++tile_rows) {
            CAPTURE(nb, tile_rows);
            CHECK(q8_0_amx::takes(tile_rows) == (tile_rows >= q8_0_amx_min_rows));
            std::vector<float> x(tile_rows * in_dim);
            for (float& v : x) v = gen.uniform() < 0.5 ? -1.0f : 1.0f;  // every activation quant +-127
            kvdecode::aligned_buffer<std::byte> scratch(tile_rows * layout.row_bytes());
            for (std::size_t r = 0; r < tile_rows; ++r)
                prepare_q8_0_row(x.data() + r * in_dim, in_dim, scratch.data() + r * layout.row_bytes());
            std::vector<float> want(tile_rows * out_dim), got(tile_rows * out_dim);
            const kvdecode::matrix_product<float> p_want{.rows = tile_rows, .out = want.data(), .out_stride = out_dim};
            const kvdecode::matrix_product<float> p_got{.rows = tile_rows, .out = got.data(), .out_stride = out_dim};
            const std::size_t units = (out_dim + q8_0_unit_outputs - 1) / q8_0_unit_outputs;
            q8_0_matmul_scalar(m, p_want, scratch.data(), 0, units);
            q8_0_matmul_avx512(m, p_got, scratch.data(), 0, units);
            for (std::size_t i = 0; i < want.size(); ++i)
                REQUIRE(std::bit_cast<std::uint32_t>(got[i]) == std::bit_cast<std::uint32_t>(want[i]));
        }
    }
#endif
}
