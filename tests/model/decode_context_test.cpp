// The thread contract of model/transformer.hpp: one immutable model shared by many
// threads, each with its own decode_context and cache, decodes exactly what the
// same calls decode one after another. CI also runs this under ThreadSanitizer.

#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/core/thread_pool.hpp"
#include "kvdecode/decode/beam_search.hpp"
#include "kvdecode/decode/generate.hpp"
#include "kvdecode/io/llama2c_checkpoint.hpp"
#include "kvdecode/model/decode_context.hpp"
#include "support/models.hpp"

#ifndef KVDECODE_MODELS_DIR
#error "KVDECODE_MODELS_DIR must name the project's models/ folder"
#endif

using namespace kvdecode;

namespace {

std::shared_ptr<const transformer_weights<float>> shipped_weights() {
    static const auto w = std::make_shared<const transformer_weights<float>>(
        read_llama2c_checkpoint<float>(std::filesystem::path(KVDECODE_MODELS_DIR) / "kjv_llama.bin"));
    return w;
}

// Different prompts (ids of the shipped vocabulary), so the threads do different work.
const std::vector<std::vector<token_id>> prompts = {
    {1, 361, 308}, {1, 74, 200, 17, 5}, {1, 900}, {1, 12, 13, 14, 15, 16, 17}};

struct job_result {
    std::vector<token_id> greedy, sampled;
    std::vector<token_id> best_beam;
};

// What one decoding thread does: greedy, sampling and beam search on its own prompt.
job_result decode(decode_context<float>& ctx, kv_cache<float>& cache, std::size_t i) {
    const std::vector<std::vector<token_id>> one = {prompts[i]};
    job_result r;
    r.greedy = greedy(ctx, cache, one, {.max_new_tokens = 40, .eos = {}}).sequences[0].tokens;
    r.sampled = sample(ctx, cache, one, {.max_new_tokens = 40, .eos = {}, .seed = 11 + i},
                       sampler::sampling().add(temperature{.value = 0.9f}))
                    .sequences[0]
                    .tokens;
    r.best_beam = beam_search(ctx, cache, one, {.num_beams = 3, .generation = {.max_new_tokens = 20, .eos = {}}})
                      .hypotheses[0][0]
                      .tokens;
    return r;
}

bool same(const job_result& a, const job_result& b) {
    return a.greedy == b.greedy && a.sampled == b.sampled && a.best_beam == b.best_beam;
}

}  // namespace

TEST_CASE("four threads share one model, each with its own context and cache", "[model][threads]") {
    const transformer<float> model(shipped_weights());  // shared by const&
    const std::size_t n = prompts.size();

    std::vector<job_result> sequential(n);
    {
        decode_context<float> ctx(model);
        auto cache = model.make_cache({.max_sequences = 16});
        for (std::size_t i = 0; i < n; ++i) sequential[i] = decode(ctx, cache, i);
    }

    // Contexts of 1 and 2 pool threads, so parallel passes run inside concurrent threads too.
    std::vector<job_result> concurrent(n);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < n; ++i)
        threads.emplace_back([&, i] {
            decode_context<float> ctx(model, {.threads = 1 + i % 2, .min_work_per_thread = 1});
            auto cache = model.make_cache({.max_sequences = 16});
            concurrent[i] = decode(ctx, cache, i);
        });
    for (auto& t : threads) t.join();

    for (std::size_t i = 0; i < n; ++i) {
        CAPTURE(i);
        REQUIRE(concurrent[i].greedy.size() == prompts[i].size() + 40);
        REQUIRE(same(concurrent[i], sequential[i]));
    }
}

TEST_CASE("contexts can run on a pool the caller owns, one after another", "[model][threads]") {
    const transformer<float> model(shipped_weights());
    thread_pool pool(3);
    decode_context<float> a(model, pool, {.min_work_per_thread = 1}), b(model, pool, {.min_work_per_thread = 1});
    REQUIRE(a.threads() == 3);
    REQUIRE(b.threads() == 3);
    decode_context<float> alone(model);
    auto cache = model.make_cache({.max_sequences = 16});
    const job_result want = decode(alone, cache, 1);
    REQUIRE(same(decode(a, cache, 1), want));
    REQUIRE(same(decode(b, cache, 1), want));
}

TEST_CASE("a context sizes attention scratch by the sequences it meets, not by the context length",
          "[model][threads]") {
    // A context longer than the scratch a context starts with (workspace::initial_score_keys),
    // prefilled in passes of 512 rows: the scratch grows on the way, and every logit
    // still equals the no-cache reference's.
    kvdecode::model_config c;
    c.dim = 32, c.hidden_dim = 48, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 1, c.vocab_size = 50;
    c.seq_len = 3000;
    const auto w = kvtest::random_model(c, 5);
    std::vector<token_id> tokens(2100);
    for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<token_id>((i * 7 + 3) % c.vocab_size);
    kvtest::check_decode_matches_reference<float>(w, tokens, 4);
}
