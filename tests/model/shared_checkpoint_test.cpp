// The real checkpoints in ../shared/models: cached equals no-cache, and both
// agree with Hugging Face transformers' outputs in ../shared/golden.

#include <memory>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/io/llama2c_checkpoint.hpp"
#include "support/golden.hpp"
#include "support/models.hpp"

using namespace kvdecode;

namespace {

std::shared_ptr<const transformer_weights<float>> load(const std::filesystem::path& p) {
    return std::make_shared<const transformer_weights<float>>(read_llama2c_checkpoint<float>(p));
}

}  // namespace

TEST_CASE("stories260K: cached decode and prefill equal the reference", "[model][shared]") {
    const auto path = kvtest::shared_file("models/stories260K.bin");
    if (!path) return;
    const auto w = load(*path);
    REQUIRE(w->config().n_kv_heads == 4);
    REQUIRE(w->config().n_heads == 8);
    const std::vector<token_id> prompt = {1, 300, 400, 301, 302, 303};
    kvtest::check_decode_matches_reference(w, prompt, 200);
    std::vector<token_id> tokens;
    for (int i = 0; i < 300; ++i) tokens.push_back(static_cast<token_id>((i * 37 + 11) % 512));
    kvtest::check_chunks_match_reference(w, tokens, {300});
    kvtest::check_chunks_match_reference(w, tokens, {1, 5, 16, 17, 64, 100});
}

TEST_CASE("aidreams260K: cached decode and prefill equal the reference over the whole context", "[model][shared]") {
    const auto path = kvtest::shared_file("models/aidreams260K.bin");
    if (!path) return;
    const auto w = load(*path);
    REQUIRE(w->config().seq_len == 128);
    // Its context holds 128 tokens: the prompt plus 127 steps fill it completely.
    kvtest::check_decode_matches_reference(w, {1}, 127);
    std::vector<token_id> tokens;
    for (int i = 0; i < 128; ++i) tokens.push_back(static_cast<token_id>((i * 53 + 7) % 512));
    kvtest::check_chunks_match_reference(w, tokens, {128});
    kvtest::check_chunks_match_reference(w, tokens, {3, 16, 33});
}

TEST_CASE("golden: last-token logits and greedy sequences equal Hugging Face transformers", "[model][shared][golden]") {
    for (const auto& [name, golden, w] : kvtest::golden_sets()) {
        const std::size_t vocab = w->config().vocab_size;
        const transformer<float> model(w);
        decode_context<float> ctx(model);
        std::size_t logits_cases = 0, greedy_cases = 0;
        for (const auto& c : golden.at("cases")) {
            const std::string kind = c.at("kind").get<std::string>();
            const auto prompt = c.at("prompt").get<std::vector<token_id>>();
            CAPTURE(name, kind, prompt);
            if (kind == "logits_last") {
                auto cache = model.make_cache();
                std::vector<float> logits(vocab);
                ctx.forward(std::vector{sequence_tokens{cache.create(), prompt}}, cache, logits);
                const auto want = c.at("logits").get<std::vector<double>>();
                REQUIRE(want.size() == vocab);
                double worst = 0;
                for (std::size_t v = 0; v < vocab; ++v) worst = std::max(worst, std::abs(logits[v] - want[v]));
                CHECK(worst <= 1e-4);
                ++logits_cases;
            } else if (kind == "greedy") {
                // A plain argmax loop over the cached model (the decoders come later).
                const auto want = c.at("tokens").get<std::vector<token_id>>();
                const auto eos = c.at("eos").get<token_id>();
                const auto max_new = c.at("max_new_tokens").get<std::size_t>();
                auto cache = model.make_cache();
                const auto seq = cache.create();
                std::vector<token_id> got = prompt, next = prompt;
                std::vector<float> logits(vocab);
                for (std::size_t step = 0; step < max_new; ++step) {
                    ctx.forward(std::vector{sequence_tokens{seq, next}}, cache, logits);
                    next = {kvtest::argmax<float>(logits)};
                    got.push_back(next[0]);
                    if (next[0] == eos) break;
                }
                CHECK(got == want);
                ++greedy_cases;
            }
        }
        REQUIRE(greedy_cases > 0);
        if (name.find("aidreams") != std::string::npos) REQUIRE(logits_cases == 2);
    }
}
