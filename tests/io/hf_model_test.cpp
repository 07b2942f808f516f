// Loading Hugging Face model folders (io/hf_model.hpp, io/hf_config.hpp) against
// transformers' own outputs on the four fixtures of ../shared/fixtures/hf (float32,
// bf16 sharded with Llama 3 RoPE scaling, Qwen2 bf16 with biases and tied embeddings,
// SmolLM-shaped f16 tied): last-position logits, 40 greedy tokens, and beam search
// sequences and scores, each on the reference's own prompt ids.
//
// Tolerances, from the fixtures' README and measured here: the reference logits are
// float32 with |float32 - float64| <= 6e-6; kvdecode multiplies the same bf16/f16
// values in float32 in another order, and computes RoPE angles in double where
// transformers uses float32. Logits: 1e-4 absolute (measured below: printed). Greedy
// ids: exact, as every reference margin is at least 8.8e-4, far above the logit
// error. Beam: sequences exact, scores within 1e-4 absolute or 1e-5 relative, as the
// README suggests; a flip of two hypotheses is allowed only where their reference
// scores are within 1e-5.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/decode/beam_search.hpp"
#include "kvdecode/decode/generate.hpp"
#include "kvdecode/io/hf_model.hpp"
#include "kvdecode/model/decode_context.hpp"
#include "support/json.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;

namespace {

const char* const fixtures[] = {"llama-tiny-f32", "llama-tiny-bf16-sharded", "qwen2-tiny-bf16", "smollm-tiny-f16"};

std::vector<float> last_logits(const transformer<float>& model, const std::vector<token_id>& prompt) {
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = prompt.size() + 16, .block_size = 16});
    std::vector<float> logits(model.config().vocab_size);
    ctx.forward(std::vector{sequence_tokens{cache.create(), prompt}}, cache, logits);
    return logits;
}

std::vector<token_id> eos_of(const kvtest::json& e) {
    if (e.is_null()) return {};
    if (e.is_array()) return e.get<std::vector<token_id>>();
    return {e.get<token_id>()};
}

}  // namespace

TEST_CASE("every Hugging Face fixture gives transformers' logits, greedy tokens and beams", "[io][hf][model][shared]") {
    for (const char* name : fixtures) {
        const auto folder = kvtest::shared_file(std::string("fixtures/hf/") + name);
        if (!folder) return;
        CAPTURE(name);
        const auto reference = kvtest::json::parse(kvtest::read_text(*folder / "hf_reference.json"));
        const transformer<float> model = load_hf_model(*folder);
        decode_context<float> ctx(model);
        auto cache = model.make_cache({.capacity_tokens = 8 * 512, .block_size = 16});
        double worst_logit = 0;
        std::size_t greedy_cases = 0, beam_cases = 0;
        for (const auto& c : reference.at("cases")) {
            const std::string kind = c.at("kind").get<std::string>();
            const auto prompt = c.at("prompt").get<std::vector<token_id>>();
            const std::vector<std::vector<token_id>> prompts{prompt};
            CAPTURE(kind, c.at("prompt_text").get<std::string>());
            if (kind == "logits_last") {
                const auto want = c.at("logits").get<std::vector<float>>();
                const auto got = last_logits(model, prompt);
                REQUIRE(got.size() == want.size());
                for (std::size_t i = 0; i < got.size(); ++i)
                    worst_logit = std::max(worst_logit, double(std::abs(got[i] - want[i])));
                REQUIRE(worst_logit <= 1e-4);
            } else if (kind == "greedy") {
                const auto r = greedy(ctx, cache, prompts,
                                      {.max_new_tokens = c.at("max_new_tokens").get<std::size_t>(), .eos = {}});
                REQUIRE(r.sequences[0].tokens == c.at("tokens").get<std::vector<token_id>>());
                ++greedy_cases;
            } else if (kind == "beam") {
                beam_options o;
                o.num_beams = c.at("num_beams").get<std::size_t>();
                o.num_return_sequences = o.num_beams;
                o.length_penalty = c.at("length_penalty").get<double>();
                o.early_stopping = c.at("early_stopping").get<bool>() ? beam_stopping::when_full : beam_stopping::heuristic;
                o.generation.max_new_tokens = c.at("max_new_tokens").get<std::size_t>();
                o.generation.eos = eos_of(c.at("eos"));
                const auto result = beam_search(ctx, cache, prompts, o);
                const auto& got = result.hypotheses[0];
                const auto want = c.at("sequences").get<std::vector<std::vector<token_id>>>();
                const auto want_scores = c.at("scores").get<std::vector<double>>();
                REQUIRE(got.size() == want.size());
                for (std::size_t i = 0; i < got.size(); ++i) {
                    CAPTURE(i);
                    if (got[i].tokens != want[i]) {
                        bool tie = false;
                        for (std::size_t j = 0; j < want.size(); ++j)
                            tie = tie || (want[j] == got[i].tokens && std::abs(want_scores[j] - want_scores[i]) <= 1e-5);
                        REQUIRE(tie);
                        WARN("a tie within 1e-5 flipped hypotheses of " << name);
                    }
                    REQUIRE(std::abs(got[i].score - want_scores[i]) <= std::max(1e-4, 1e-5 * std::abs(want_scores[i])));
                }
                ++beam_cases;
            }
        }
        REQUIRE(cache.stats().sequences == 0);
        REQUIRE(greedy_cases >= 3);
        REQUIRE(beam_cases >= 6);
        WARN(name << ": last-position logits within " << worst_logit << " of transformers'; " << greedy_cases
                  << " greedy and " << beam_cases << " beam cases equal");
    }
}
