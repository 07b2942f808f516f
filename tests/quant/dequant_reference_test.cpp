// Dequantisation against llama.cpp's own: every entry of
// ../shared/fixtures/gguf/dequant_reference.json whose type kvdecode dequantises here
// (ggml's to_float of the file's tensor as stored): the first two rows equal value for
// value, and the float64 sum of the whole tensor equal. The JSON writes -0.0 as 0, so
// values are compared as floats (-0 == 0), which is bit-equality everywhere else.
//
// And the reference quantisers against llama-quantize: the shipped model's ffn_down
// matrices (rows of 512) from kjv-f32.gguf, quantised here, equal byte for byte the
// Q4_K, Q5_K and Q6_K tensors llama-quantize wrote into the fixtures (no importance
// matrix, so ggml's quantize_row_*_K_ref).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/io/gguf.hpp"
#include "kvdecode/quant/k_quants.hpp"
#include "support/json.hpp"
#include "support/test_data.hpp"

using kvdecode::gguf_file;
using kvdecode::gguf_type;

namespace {

template <class Block>
std::vector<float> dequantize_blocks(std::span<const std::byte> bytes, std::size_t n) {
    REQUIRE(bytes.size() == n / kvdecode::quant::qk_k * sizeof(Block));
    std::vector<Block> blocks(n / kvdecode::quant::qk_k);  // copied: the file's blocks need not be aligned
    std::memcpy(blocks.data(), bytes.data(), bytes.size());
    std::vector<float> out(n);
    kvdecode::quant::dequantize_row_k(blocks.data(), out.data(), n);
    return out;
}

// The tensor's values, or nullopt for a type this test does not cover.
std::optional<std::vector<float>> dequantize_tensor(gguf_type type, std::span<const std::byte> bytes, std::size_t n) {
    switch (type) {
        case gguf_type::q2_k: return dequantize_blocks<kvdecode::quant::block_q2_k>(bytes, n);
        case gguf_type::q3_k: return dequantize_blocks<kvdecode::quant::block_q3_k>(bytes, n);
        case gguf_type::q4_k: return dequantize_blocks<kvdecode::quant::block_q4_k>(bytes, n);
        case gguf_type::q5_k: return dequantize_blocks<kvdecode::quant::block_q5_k>(bytes, n);
        case gguf_type::q6_k: return dequantize_blocks<kvdecode::quant::block_q6_k>(bytes, n);
        default: return std::nullopt;
    }
}

}  // namespace

TEST_CASE("dequantisation equals llama.cpp's on every fixture tensor", "[quant][dequant_reference]") {
    const auto reference = kvtest::shared_file("fixtures/gguf/dequant_reference.json");
    if (!reference) return;
    const auto entries = kvtest::json::parse(kvtest::read_text(*reference));
    std::size_t checked = 0;
    for (const auto& e : entries) {
        const std::string file = e.at("file"), tensor = e.at("tensor");
        const auto path = kvtest::shared_file("fixtures/gguf/" + file);
        if (!path) continue;
        const gguf_file f = gguf_file::open(*path);
        const auto& info = f.tensor(tensor);
        const std::size_t n = info.elements(), row = info.row_length();
        const auto values = dequantize_tensor(info.type, f.data(info), n);
        if (!values) continue;
        CAPTURE(file, tensor, std::string(e.at("type")));
        const auto& first = e.at("first_values");
        REQUIRE(first.size() == 2 * row);
        for (std::size_t i = 0; i < first.size(); ++i) {
            const float want = static_cast<float>(first[i].get<double>());
            if (!((*values)[i] == want)) {
                CAPTURE(i, (*values)[i], want);
                FAIL("value differs from llama.cpp's");
            }
        }
        double sum = 0;
        for (float v : *values) sum += v;
        REQUIRE(sum == e.at("full_sum").get<double>());
        ++checked;
    }
    CHECK(checked >= 15);  // every K-quant entry of the fixtures (Q4_K, Q5_K, Q6_K)
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
    std::vector<Block> blocks(n / kvdecode::quant::qk_k);
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
