// The block formats against llama.cpp itself, on the GGUF fixtures it made
// (../shared/fixtures/gguf, README there):
//   - dequant_reference.json: every entry (f16, q8_0, q4_0, q5_0, q5_1, q4_k, q5_k,
//     q6_k tensors), read through weight_matrix's stored-bytes constructor -- the path the
//     GGUF loader takes -- and dequantised row by row, gives ggml's to_float values bit
//     for bit (first_values: the first two rows; the JSON drops zero's sign, so floats
//     are compared with ==, which is bit equality everywhere else) and its full_sum.
//     full_sum is a double sum in an order the fixture does not state; we sum in
//     element order, so the two may differ by at most 2 (n - 1) 2^-53 sum|v| (measured:
//     equal).
//   - llama-quantize's Q4_0, Q5_0, Q5_1 tensors and the Q4_K, Q5_K, Q6_K ffn_down tensors
//     (made from kjv-f32.gguf without an importance matrix, i.e. by ggml's reference
//     quantisers) equal, byte for byte, our quantize_row_* of the F32 file's tensor.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/io/gguf.hpp"
#include "kvdecode/io/gguf_model.hpp"
#include "kvdecode/quant/k_quants.hpp"
#include "kvdecode/quant/q4_q5.hpp"
#include "kvdecode/quant/weight_matrix.hpp"
#include "support/json.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;
using namespace kvdecode::quant;

TEST_CASE("fixture tensors dequantise to ggml's to_float values bit for bit", "[quant][dequant_reference]") {
    const auto reference = kvtest::shared_file("fixtures/gguf/dequant_reference.json");
    if (!reference) return;
    const auto entries = kvtest::json::parse(kvtest::read_text(*reference));
    std::size_t checked = 0;
    for (const auto& e : entries) {
        const std::string file_name = e.at("file"), tensor_name = e.at("tensor");
        CAPTURE(file_name, tensor_name);
        const auto path = kvtest::shared_file("fixtures/gguf/" + file_name);
        REQUIRE(path);
        const gguf_file file = gguf_file::open(*path);
        const gguf_tensor_info& t = file.tensor(tensor_name);
        REQUIRE(t.shape == e.at("shape").get<std::vector<std::uint64_t>>());
        const auto type = weight_type_of(t.type);
        REQUIRE(type);
        const std::size_t row = t.row_length(), rows = t.elements() / row;
        const weight_matrix<float> m(*type, file.data(t), rows, row);
        const auto first = e.at("first_values").get<std::vector<double>>();
        REQUIRE(first.size() == e.at("rows").get<std::size_t>() * row);
        std::vector<float> values(row);
        double sum = 0, magnitude = 0;
        for (std::size_t r = 0; r < rows; ++r) {
            m.dequantize_row(r, values.data());
            for (std::size_t i = 0; i < row; ++i) {
                if (r * row + i < first.size() && !(values[i] == static_cast<float>(first[r * row + i]))) {
                    CAPTURE(r, i, values[i], first[r * row + i]);
                    FAIL("value differs from llama.cpp's");
                }
                sum += values[i], magnitude += std::fabs(double(values[i]));
            }
        }
        const double want = e.at("full_sum");
        CAPTURE(sum, want);
        REQUIRE(std::fabs(sum - want) <= 2.0 * double(t.elements()) * 0x1p-53 * magnitude);
        ++checked;
    }
    REQUIRE(checked == entries.size());  // every entry: f16, q8_0, q4_0, q5_0, q5_1 and the K-quants
}

namespace {

template <class Block>
bool requantises_equal(const std::vector<float>& x, std::span<const std::byte> stored) {
    std::vector<Block> blocks(x.size() / 32);
    quantize_row_legacy(x.data(), blocks.data(), x.size());
    return stored.size() == blocks.size() * sizeof(Block) && std::memcmp(blocks.data(), stored.data(), stored.size()) == 0;
}

}  // namespace

TEST_CASE("the reference quantisers reproduce llama-quantize's Q4_0, Q5_0 and Q5_1 tensors byte for byte",
          "[quant][q4_q5][dequant_reference]") {
    const auto f32_path = kvtest::shared_file("fixtures/gguf/kjv-f32.gguf");
    if (!f32_path) return;
    const gguf_file source = gguf_file::open(*f32_path);
    std::size_t compared = 0;
    for (const char* name : {"kjv-q4_0.gguf", "kjv-q5_0-q4_k-q6_k-q8_0.gguf", "kjv-q5_1-q5_k-q6_k-q8_0.gguf"}) {
        const auto path = kvtest::shared_file(std::string("fixtures/gguf/") + name);
        REQUIRE(path);
        const gguf_file quantised = gguf_file::open(*path);
        for (const gguf_tensor_info& t : quantised.tensors()) {
            if (t.type != gguf_type::q4_0 && t.type != gguf_type::q4_1 && t.type != gguf_type::q5_0 && t.type != gguf_type::q5_1)
                continue;
            CAPTURE(name, t.name);
            const gguf_tensor_info& f = source.tensor(t.name);
            REQUIRE(f.type == gguf_type::f32);
            REQUIRE(f.shape == t.shape);
            std::vector<float> x(f.elements());
            const auto raw = source.data(f);
            REQUIRE(raw.size() == x.size() * sizeof(float));
            std::memcpy(x.data(), raw.data(), raw.size());
            const auto stored = quantised.data(t);
            bool equal = false;
            switch (t.type) {
                case gguf_type::q4_0: equal = requantises_equal<block_q4_0>(x, stored); break;
                case gguf_type::q4_1: equal = requantises_equal<block_q4_1>(x, stored); break;
                case gguf_type::q5_0: equal = requantises_equal<block_q5_0>(x, stored); break;
                default: equal = requantises_equal<block_q5_1>(x, stored); break;
            }
            REQUIRE(equal);
            ++compared;
        }
    }
    REQUIRE(compared == 75);  // 29 Q4_0 + 23 Q5_0 + 23 Q5_1
}

namespace {

template <class Block>
void check_quantizer(void (*quantize)(const float*, Block*, std::size_t) noexcept, const gguf_file& f32,
                     const std::string& file, gguf_type type, int layer) {
    const auto path = kvtest::shared_file("fixtures/gguf/" + file);
    if (!path) return;
    const gguf_file quantized = gguf_file::open(*path);
    const std::string name = "blk." + std::to_string(layer) + ".ffn_down.weight";
    const auto& source = f32.tensor(name);
    const auto& target = quantized.tensor(name);
    REQUIRE(source.type == gguf_type::f32);
    REQUIRE(target.type == type);
    const std::size_t n = source.elements();
    std::vector<float> x(n);
    std::memcpy(x.data(), f32.data(source).data(), n * sizeof(float));
    std::vector<Block> blocks(n / qk_k);
    quantize(x.data(), blocks.data(), n);  // rows are whole blocks: one call covers them all
    const auto want = quantized.data(target);
    REQUIRE(want.size() == blocks.size() * sizeof(Block));
    for (std::size_t b = 0; b < blocks.size(); ++b) {
        CAPTURE(file, name, b);
        REQUIRE(std::memcmp(&blocks[b], want.data() + b * sizeof(Block), sizeof(Block)) == 0);
    }
}

}  // namespace

TEST_CASE("K-quant reference quantisers write llama-quantize's bytes", "[quant][dequant_reference]") {
    const auto source = kvtest::shared_file("fixtures/gguf/kjv-f32.gguf");
    if (!source) return;
    const gguf_file f32 = gguf_file::open(*source);
    using namespace kvdecode::quant;
    for (int layer = 0; layer < 4; ++layer)
        check_quantizer<block_q6_k>(quantize_row_q6_k, f32, "kjv-q8_0-q6_k.gguf", gguf_type::q6_k, layer);
    for (int layer = 0; layer < 2; ++layer) {
        check_quantizer<block_q5_k>(quantize_row_q5_k, f32, "kjv-q5_1-q5_k-q6_k-q8_0.gguf", gguf_type::q5_k, layer);
        check_quantizer<block_q4_k>(quantize_row_q4_k, f32, "kjv-q5_0-q4_k-q6_k-q8_0.gguf", gguf_type::q4_k, layer);
    }
}
