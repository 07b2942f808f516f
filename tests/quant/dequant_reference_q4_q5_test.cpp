// The block formats against llama.cpp itself, on the GGUF fixtures it made
// (../shared/fixtures/gguf, README there):
//   - dequant_reference.json: for every entry of a type handled here (f16, q8_0, q4_0,
//     q4_1, q5_0, q5_1), the file's tensor dequantised by our scalar dequantize_row_*
//     straight from gguf_file::data (the bytes as stored) gives ggml's to_float values
//     bit for bit (first_values: the first two rows; the JSON drops zero's sign) and its
//     full_sum. full_sum is a
//     double sum of the whole tensor in an order the fixture does not state; we sum in
//     element order, so the two may differ by the rounding of summing n doubles in
//     different orders, at most 2 (n - 1) 2^-53 sum|v| (measured: equal).
//   - llama-quantize's Q4_0, Q5_0 and Q5_1 tensors (made from kjv-f32.gguf without an
//     importance matrix, i.e. by ggml's reference quantisers) equal, byte for byte, our
//     quantize_row_* of the F32 file's tensor of the same name.
// Types not handled here (the K-quants: tests/quant/dequant_reference_test.cpp on the
// kquants branch covers them, in a file of its own so the two branches merge without a
// conflict) are listed in a warning and skipped.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/io/gguf.hpp"
#include "kvdecode/quant/half.hpp"
#include "kvdecode/quant/q4_q5.hpp"
#include "kvdecode/quant/q8_0.hpp"
#include "support/json.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;
using namespace kvdecode::quant;

namespace {

// Blocks of type Block at the start of a tensor's bytes, after checking there are enough.
template <class Block>
const Block* blocks_of(std::span<const std::byte> bytes, std::size_t values) {
    REQUIRE(bytes.size() == values / 32 * sizeof(Block));
    return reinterpret_cast<const Block*>(bytes.data());  // GGUF aligns tensor data to 32 bytes
}

// The whole tensor as float (rows are consecutive, whole blocks), or nullopt for a type
// this file does not handle.
std::optional<std::vector<float>> dequantize(const gguf_file& file, const gguf_tensor_info& t) {
    const std::span<const std::byte> bytes = file.data(t);
    const std::size_t n = t.elements();
    std::vector<float> out(n);
    switch (t.type) {
        case gguf_type::f16:
            REQUIRE(bytes.size() == 2 * n);
            for (std::size_t i = 0; i < n; ++i) {
                std::uint16_t h;
                std::memcpy(&h, bytes.data() + 2 * i, 2);
                out[i] = f16_to_f32(h);
            }
            return out;
        case gguf_type::q8_0: dequantize_row_q8_0(blocks_of<block_q8_0>(bytes, n), out.data(), n); return out;
        case gguf_type::q4_0: dequantize_row_q4_0(blocks_of<block_q4_0>(bytes, n), out.data(), n); return out;
        case gguf_type::q4_1: dequantize_row_q4_1(blocks_of<block_q4_1>(bytes, n), out.data(), n); return out;
        case gguf_type::q5_0: dequantize_row_q5_0(blocks_of<block_q5_0>(bytes, n), out.data(), n); return out;
        case gguf_type::q5_1: dequantize_row_q5_1(blocks_of<block_q5_1>(bytes, n), out.data(), n); return out;
        default: return std::nullopt;
    }
}

}  // namespace

TEST_CASE("fixture tensors dequantise to ggml's to_float values bit for bit", "[quant][q4_q5][dequant_reference]") {
    const auto reference = kvtest::shared_file("fixtures/gguf/dequant_reference.json");
    if (!reference) return;
    const auto entries = kvtest::json::parse(kvtest::read_text(*reference));
    std::size_t checked = 0;
    std::set<std::string> skipped;
    for (const auto& e : entries) {
        const std::string file_name = e.at("file"), tensor_name = e.at("tensor");
        CAPTURE(file_name, tensor_name);
        const auto path = kvtest::shared_file("fixtures/gguf/" + file_name);
        REQUIRE(path);
        const gguf_file file = gguf_file::open(*path);
        const gguf_tensor_info& t = file.tensor(tensor_name);
        REQUIRE(t.shape == e.at("shape").get<std::vector<std::uint64_t>>());
        const auto values = dequantize(file, t);
        if (!values) {
            skipped.insert(e.at("type").get<std::string>());
            continue;
        }
        const auto first = e.at("first_values").get<std::vector<double>>();
        REQUIRE(first.size() == e.at("rows").get<std::size_t>() * t.row_length());
        for (std::size_t i = 0; i < first.size(); ++i) {
            CAPTURE(i, (*values)[i], first[i]);
            // The JSON holds each float's shortest decimal, which reads back to that float; float
            // == is bit equality here (no NaN) but for zero's sign, which the JSON does not keep
            // (ggml's q * d with q = 0 and d < 0 is -0.0, written "0").
            REQUIRE((*values)[i] == static_cast<float>(first[i]));
        }
        double sum = 0, magnitude = 0;
        for (float v : *values) sum += v, magnitude += std::fabs(double(v));
        const double want = e.at("full_sum");
        CAPTURE(sum, want);
        REQUIRE(std::fabs(sum - want) <= 2.0 * double(values->size()) * 0x1p-53 * magnitude);
        ++checked;
    }
    std::ostringstream s;
    for (const auto& type : skipped) s << ' ' << type;
    WARN("dequant_reference.json: " << checked << " tensors checked; types not handled here, skipped:" << s.str());
    REQUIRE(checked >= 23);  // 3 f16, 15 q8_0, 4 q4_0, 2 q5_0, 2 q5_1 entries: all but the K-quants
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
