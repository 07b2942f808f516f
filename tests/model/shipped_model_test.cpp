// The model the project trains and ships (models/, made by tools/train/train.py):
// kvdecode's forward equals the training script's own (logits and 100 greedy
// tokens it saved), the cached path equals the no-cache reference, and the
// tokenizer encodes the prompts as the training script did. It is part of the
// repository, so these tests run on every clone.

#include <filesystem>
#include <memory>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/decode/beam_search.hpp"
#include "kvdecode/decode/generate.hpp"
#include "kvdecode/io/llama2c_checkpoint.hpp"
#include "kvdecode/io/llama2c_tokenizer.hpp"
#include "support/json.hpp"
#include "support/models.hpp"

#ifndef KVDECODE_MODELS_DIR
#error "KVDECODE_MODELS_DIR must name the project's models/ folder"
#endif

using namespace kvdecode;

namespace {
const std::filesystem::path models_dir = KVDECODE_MODELS_DIR;

std::shared_ptr<const transformer_weights<float>> shipped_weights() {
    static const auto w = std::make_shared<const transformer_weights<float>>(
        read_llama2c_checkpoint<float>(models_dir / "kjv_llama.bin"));
    return w;
}
}  // namespace

TEST_CASE("shipped model: logits and greedy tokens equal the training script's forward", "[model][shipped]") {
    const auto reference = kvtest::json::parse(kvtest::read_text(models_dir / "kjv_llama_reference.json"));
    const auto tok = tokenizer::read_llama2c(models_dir / "kjv_tok1024.bin", 1024);
    // One thread, and three with every product and attention split between them.
    const std::size_t threads = GENERATE(1, 3);
    CAPTURE(threads);
    const transformer<float> model(shipped_weights());
    decode_context<float> ctx(model, {.threads = threads, .min_work_per_thread = 1});
    auto cache = model.make_cache();
    std::size_t cases = 0;
    for (const auto& c : reference.at("cases")) {
        const auto prompt = c.at("prompt").get<std::vector<token_id>>();
        CAPTURE(c.at("prompt_text").get<std::string>());
        REQUIRE(tok.encode(c.at("prompt_text").get<std::string>()) == prompt);  // the same tokenizer as in training
        std::vector<float> logits(1024);
        const auto seq = cache.create();
        ctx.forward(std::vector{sequence_tokens{seq, prompt}}, cache, logits);
        cache.release(seq);
        const auto want = c.at("logits").get<std::vector<double>>();
        double worst = 0;
        for (std::size_t v = 0; v < want.size(); ++v) worst = std::max(worst, std::abs(logits[v] - want[v]));
        CHECK(worst <= 1e-4);
        const auto greedy_want = c.at("greedy").get<std::vector<token_id>>();
        const std::vector<std::vector<token_id>> prompts = {prompt};
        const auto got = greedy(ctx, cache, prompts, {.max_new_tokens = 100, .eos = {2}});
        REQUIRE(got.sequences[0].tokens == greedy_want);
        ++cases;
    }
    REQUIRE(cases == 3);
}

TEST_CASE("shipped model: beam search returns the same hypotheses with any thread count", "[model][shipped][threads]") {
    const std::vector<std::vector<token_id>> prompts = {{1, 361, 308}, {1, 42}};
    const beam_options options{.num_beams = 4, .num_return_sequences = 4, .generation = {.max_new_tokens = 30, .eos = {2}}};
    std::vector<beam_result> results;
    for (std::size_t threads : {1, 2, 4}) {
        const transformer<float> model(shipped_weights());
        decode_context<float> ctx(model, {.threads = threads, .min_work_per_thread = 1});
        auto cache = model.make_cache();
        results.push_back(beam_search(ctx, cache, prompts, options));
    }
    for (std::size_t t = 1; t < results.size(); ++t)
        for (std::size_t p = 0; p < prompts.size(); ++p)
            for (std::size_t h = 0; h < 4; ++h) {
                const auto &a = results[0].hypotheses[p][h], &b = results[t].hypotheses[p][h];
                REQUIRE(a.tokens == b.tokens);
                REQUIRE(std::abs(a.score - b.score) <= 1e-5);
            }
}

TEST_CASE("shipped model: cached decode and prefill equal the reference", "[model][shipped]") {
    const auto w = shipped_weights();
    REQUIRE(w->config().n_kv_heads < w->config().n_heads);  // grouped-query attention
    kvtest::check_decode_matches_reference(w, {1, 361, 308}, 200);
    std::vector<token_id> tokens;
    for (int i = 0; i < 256; ++i) tokens.push_back(static_cast<token_id>((i * 131 + 5) % 1024));
    kvtest::check_chunks_match_reference(w, tokens, {256});
    kvtest::check_chunks_match_reference(w, tokens, {1, 7, 16, 33});
}

TEST_CASE("shipped tokenizer: round trips and verse-like text", "[io][tokenizer][shipped]") {
    const auto tok = tokenizer::read_llama2c(models_dir / "kjv_tok1024.bin", 1024);
    for (const std::string text : {"And God said, Let there be light: and there was light.",
                                   "Jesus wept.", "naïve ünïcode 日本 😀", "  spaced  out  "}) {
        const auto ids = tok.encode(text);
        CAPTURE(text);
        REQUIRE(tok.decode(ids) == text);
    }
    REQUIRE(tok.encode("And God said").size() <= 5);  // common words are single pieces
}
