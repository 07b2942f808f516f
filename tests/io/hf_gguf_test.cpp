// Hugging Face folders converted to GGUF (io/hf_gguf.hpp), against llama.cpp's own
// converter on the same folders (../shared/fixtures/gguf/from-hf, made by
// convert_hf_to_gguf.py --outtype f32 and q8_0) and against transformers:
//   - every tensor llama.cpp's file has is in ours with the same name, shape and type,
//     and the same bytes (Q/K permuted as llama.cpp permutes them, Q8_0 blocks from the
//     same reference quantiser); rope_freqs.weight within 1e-6 (llama.cpp computes the
//     Llama 3 divisors from float32 frequencies, kvdecode in double);
//   - the converted F32 file, loaded by kvdecode's GGUF reader, gives transformers'
//     last-position logits (within 1e-4, as the folders themselves: tests/io/hf_model_test.cpp)
//     and its greedy tokens.

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/decode/generate.hpp"
#include "kvdecode/io/gguf_model.hpp"
#include "kvdecode/io/hf_gguf.hpp"
#include "kvdecode/io/hf_model.hpp"
#include "kvdecode/model/decode_context.hpp"
#include "support/json.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;

TEST_CASE("a folder converted to GGUF holds llama.cpp's tensors and gives transformers' outputs", "[io][hf][gguf][shared]") {
    for (const char* name : {"llama-tiny-f32", "llama-tiny-bf16-sharded", "qwen2-tiny-bf16", "smollm-tiny-f16"}) {
        const auto folder = kvtest::shared_file(std::string("fixtures/hf/") + name);
        if (!folder) return;
        CAPTURE(name);
        const hf_config config = read_hf_config(*folder / "config.json");
        const hf_weight_files files = hf_weight_files::open(*folder);
        const stored_weights stored = hf_stored_weights(config, files);
        for (const weight_type type : {weight_type::f32, weight_type::q8_0}) {
            CAPTURE(to_string(type));
            const auto ours_bytes = gguf_from_hf(config, stored, {.type = type}).file.to_bytes();
            const gguf_file ours = gguf_file::from_memory(ours_bytes, "ours");
            const auto theirs_path = kvtest::shared_file("fixtures/gguf/from-hf/" + std::string(name) + "-" +
                                                         std::string(to_string(type)) + ".gguf");
            if (!theirs_path) return;
            const gguf_file theirs = gguf_file::open(*theirs_path);
            REQUIRE(ours.tensors().size() == theirs.tensors().size());
            for (const gguf_tensor_info& t : theirs.tensors()) {
                CAPTURE(t.name);
                const gguf_tensor_info* o = ours.find_tensor(t.name);
                REQUIRE(o != nullptr);
                REQUIRE(o->shape == t.shape);
                REQUIRE(o->type == t.type);
                const auto a = ours.data(*o), b = theirs.data(t);
                REQUIRE(a.size() == b.size());
                if (t.name == "rope_freqs.weight") {
                    for (std::size_t i = 0; i < a.size() / 4; ++i) {
                        float x, y;
                        std::memcpy(&x, a.data() + 4 * i, 4);
                        std::memcpy(&y, b.data() + 4 * i, 4);
                        REQUIRE(std::abs(x - y) <= 1e-6f * std::abs(y));
                    }
                } else {
                    REQUIRE(std::memcmp(a.data(), b.data(), a.size()) == 0);
                }
            }
            if (type != weight_type::f32) continue;

            const transformer<float> model = load_gguf_model(ours);
            const auto reference = kvtest::json::parse(kvtest::read_text(*folder / "hf_reference.json"));
            decode_context<float> ctx(model);
            auto cache = model.make_cache({.capacity_tokens = 1024, .block_size = 16});
            for (const auto& c : reference.at("cases")) {
                const std::vector<std::vector<token_id>> prompts{c.at("prompt").get<std::vector<token_id>>()};
                if (c.at("kind") == "logits_last") {
                    std::vector<float> logits(model.config().vocab_size);
                    const seq_id s = cache.create();
                    ctx.forward(std::vector{sequence_tokens{s, prompts[0]}}, cache, logits);
                    cache.release(s);
                    const auto want = c.at("logits").get<std::vector<float>>();
                    for (std::size_t i = 0; i < want.size(); ++i) REQUIRE(std::abs(logits[i] - want[i]) <= 1e-4);
                } else if (c.at("kind") == "greedy") {
                    const auto r = greedy(ctx, cache, prompts, {.max_new_tokens = 40, .eos = {}});
                    REQUIRE(r.sequences[0].tokens == c.at("tokens").get<std::vector<token_id>>());
                }
            }
        }
    }
}
