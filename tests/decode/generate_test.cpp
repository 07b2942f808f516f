// Greedy and sampling decoders: against Hugging Face's greedy outputs, batched
// against one-by-one, reproducible sampling, early stopping that costs nothing,
// and the options' edge cases — on a fake model and on real checkpoints.

#include <cmath>
#include <tuple>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/decode/generate.hpp"
#include "kvdecode/io/llama2c_checkpoint.hpp"
#include "support/fake_model.hpp"
#include "support/golden.hpp"
#include "support/models.hpp"

using namespace kvdecode;
using prompts_t = std::vector<std::vector<token_id>>;

namespace {

// Prefers token (last + 1) mod vocab; strongly prefers EOS (0) right after `eos_after`.
kvtest::fake_model counting_model(std::size_t vocab = 6, token_id eos_after = 3) {
    return kvtest::fake_model(vocab, 64, [=](std::span<const token_id> h, std::span<float> logits) {
        std::fill(logits.begin(), logits.end(), 0.0f);
        logits[static_cast<std::size_t>((h.back() + 1) % static_cast<token_id>(vocab))] = 5.0f;
        if (h.back() == eos_after) logits[0] = 10.0f;
    });
}

}  // namespace

TEST_CASE("greedy equals the golden greedy sequences of Hugging Face transformers", "[decode][golden][shared]") {
    for (const auto& [name, golden, weights] : kvtest::golden_sets()) {
        const transformer<float> model(weights);
        decode_context<float> ctx(model);
        auto cache = model.make_cache();
        std::size_t cases = 0;
        for (const auto& c : golden.at("cases")) {
            if (c.at("kind").get<std::string>() != "greedy") continue;
            const prompts_t prompts = {c.at("prompt").get<std::vector<token_id>>()};
            const generation_options options{.max_new_tokens = c.at("max_new_tokens").get<std::size_t>(),
                                             .eos = {c.at("eos").get<token_id>()}};
            const auto result = greedy(ctx, cache, prompts, options);
            const auto want = c.at("tokens").get<std::vector<token_id>>();
            CAPTURE(name, prompts[0]);
            REQUIRE(result.sequences[0].tokens == want);
            REQUIRE(result.sequences[0].reason == (want.back() == options.eos[0] ? stop_reason::eos : stop_reason::length));
            REQUIRE(cache.stats().blocks_used == 0);  // the decoder released its sequences
            ++cases;
        }
        REQUIRE(cases > 0);
    }
}

TEST_CASE("several prompts in one call equal each prompt alone", "[decode]") {
    const auto shape = kvtest::awkward_shapes()[1].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 512, .block_size = 8});
    const prompts_t prompts = {{1, 2, 3}, {7}, {4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, {30, 31}};
    const generation_options options{.max_new_tokens = 25, .eos = {5, 9}, .seed = 3};
    for (bool sampled : {false, true}) {
        const auto together = sampled ? sample(ctx, cache, prompts, options) : greedy(ctx, cache, prompts, options);
        for (std::size_t i = 0; i < prompts.size(); ++i) {
            const prompts_t one = {prompts[i]};
            const auto alone = sampled ? sample(ctx, cache, one, options) : greedy(ctx, cache, one, options);
            CAPTURE(sampled, i);
            if (!sampled) REQUIRE(together.sequences[i].tokens == alone.sequences[0].tokens);
            REQUIRE(together.sequences[i].tokens.size() <= prompts[i].size() + 25);
        }
        REQUIRE(together.stats.prompt_tokens == 23);
        REQUIRE(cache.stats().blocks_used == 0);
    }
}

TEST_CASE("sampling with a seed is reproducible", "[decode]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    auto cache = model.make_cache();
    const prompts_t prompts = {{1, 2, 3}, {4}};
    auto run = [&](std::uint64_t seed) {
        const auto r = sample(ctx, cache, prompts, {.max_new_tokens = 40, .eos = {}, .seed = seed},
                              sampler::sampling().add(temperature{20.0f}).add(top_k{20}));
        return std::vector{r.sequences[0].tokens, r.sequences[1].tokens};
    };
    const auto a = run(11);
    REQUIRE(a == run(11));
    REQUIRE(a != run(12));
    REQUIRE(a[0].size() == 43);
}

TEST_CASE("a sequence that emits EOS stops at once and is never computed again", "[decode]") {
    auto model = counting_model();  // 1 -> 2 -> 3 -> EOS(0)
    auto cache = model.make_cache();
    const prompts_t prompts = {{1}, {4}, {3}};
    const auto r = greedy(model, cache, prompts, {.max_new_tokens = 10, .eos = {0}});
    REQUIRE(r.sequences[0].tokens == std::vector<token_id>{1, 2, 3, 0});
    REQUIRE(r.sequences[0].reason == stop_reason::eos);
    REQUIRE(r.sequences[2].tokens == std::vector<token_id>{3, 0});
    // 4 -> 5 -> 0 (EOS by wrapping around), so it ends too.
    REQUIRE(r.sequences[1].tokens == std::vector<token_id>{4, 5, 0});
    // Tokens run through the model: the prompt, then every generated token but the last.
    REQUIRE(model.rows_computed.at(0) == 3);
    REQUIRE(model.rows_computed.at(1) == 2);
    REQUIRE(model.rows_computed.at(2) == 1);
    REQUIRE(model.forward_calls == 3);  // prefill + two steps; nothing after the last EOS
    REQUIRE(r.stats.forward_calls == 3);
    REQUIRE(r.stats.generated_tokens == 3 + 2 + 1);
}

TEST_CASE("min_new_tokens, max_new_tokens, several EOS ids and the callback", "[decode]") {
    SECTION("EOS cannot be chosen before min_new_tokens") {
        auto model = counting_model();
        auto cache = model.make_cache();
        const auto r = greedy(model, cache, prompts_t{{3}}, {.max_new_tokens = 8, .min_new_tokens = 2, .eos = {0}});
        REQUIRE(r.sequences[0].tokens == std::vector<token_id>{3, 4, 5, 0});
    }
    SECTION("max_new_tokens ends with reason length") {
        auto model = counting_model(6, 99);
        auto cache = model.make_cache();
        const auto r = greedy(model, cache, prompts_t{{1}}, {.max_new_tokens = 4, .eos = {}});
        REQUIRE(r.sequences[0].tokens == std::vector<token_id>{1, 2, 3, 4, 5});
        REQUIRE(r.sequences[0].reason == stop_reason::length);
        REQUIRE(greedy(model, cache, prompts_t{{1}}, {.max_new_tokens = 0}).sequences[0].tokens.size() == 1);
    }
    SECTION("any of several EOS ids ends a sequence") {
        auto model = counting_model(6, 99);
        auto cache = model.make_cache();
        const auto r = greedy(model, cache, prompts_t{{1}}, {.max_new_tokens = 9, .eos = {4, 5}});
        REQUIRE(r.sequences[0].tokens == std::vector<token_id>{1, 2, 3, 4});
        REQUIRE(r.sequences[0].generated().size() == 3);
    }
    SECTION("the callback sees every token and can stop one sequence") {
        auto model = counting_model(6, 99);
        auto cache = model.make_cache();
        std::vector<std::pair<std::size_t, token_id>> seen;
        const auto r = greedy(model, cache, prompts_t{{1}, {2}},
                              {.max_new_tokens = 3, .eos = {}, .on_token = [&](std::size_t i, token_id t) {
                                   seen.emplace_back(i, t);
                                   return !(i == 0 && t == 2);
                               }});
        REQUIRE(r.sequences[0].tokens == std::vector<token_id>{1, 2});
        REQUIRE(r.sequences[0].reason == stop_reason::callback);
        REQUIRE(r.sequences[1].tokens == std::vector<token_id>{2, 3, 4, 5});
        REQUIRE(seen.size() == 4);
    }
    SECTION("generation stops at the context length") {
        kvtest::fake_model model(6, 5, [](std::span<const token_id>, std::span<float> l) { std::fill(l.begin(), l.end(), 0.f); });
        auto cache = model.make_cache();
        const auto r = greedy(model, cache, prompts_t{{1, 1}}, {.max_new_tokens = 10, .eos = {}});
        REQUIRE(r.sequences[0].tokens.size() == 5);
        REQUIRE(r.sequences[0].reason == stop_reason::length);
    }
}

TEST_CASE("bad decoding arguments throw invalid_argument and leave the cache empty", "[decode][errors]") {
    auto model = counting_model();
    auto cache = model.make_cache();
    REQUIRE_THROWS_AS(greedy(model, cache, prompts_t{{1}}, {.max_new_tokens = 0, .min_new_tokens = 1}),
                      std::invalid_argument);
    REQUIRE_THROWS_AS(greedy(model, cache, prompts_t{{1}}, {.eos = {6}}), std::invalid_argument);
    REQUIRE_THROWS_AS(greedy(model, cache, prompts_t{{}}, {}), std::invalid_argument);
    REQUIRE_THROWS_AS(greedy(model, cache, prompts_t{{1, 9}}, {}), std::invalid_argument);
    REQUIRE_THROWS_AS(greedy(model, cache, prompts_t{std::vector<token_id>(65, 1)}, {}), std::invalid_argument);
    REQUIRE_THROWS_AS(sample(model, cache, prompts_t{{1}}, {}, sampler::greedy()), std::invalid_argument);
    REQUIRE_THROWS_WITH(greedy(model, cache, prompts_t{{1}}, {.on_token = [](std::size_t, token_id) -> bool {
                                   throw std::runtime_error("stop here");
                               }}),
                        "stop here");
    REQUIRE(cache.create() == 0);  // every sequence the failed calls made was released
}

TEST_CASE("log-probabilities are the model's log-softmax before processors, with the top alternatives", "[decode][logprobs]") {
    // Logits log(0.5), log(0.25), log(0.125), log(0.125) whatever the history: the
    // log-probabilities are those numbers exactly, and stay so under a temperature.
    const float l[4] = {std::log(0.5f), std::log(0.25f), std::log(0.125f), std::log(0.125f)};
    kvtest::fake_model m(4, 16, [&](std::span<const token_id>, std::span<float> logits) {
        std::copy(std::begin(l), std::end(l), logits.begin());
    });
    auto cache = m.make_cache();
    const prompts_t prompts = {{1}, {2, 3}};
    std::vector<std::tuple<std::size_t, token_id, float, std::size_t>> seen;
    generation_options o{.max_new_tokens = 5, .eos = {}, .seed = 3};
    o.logprobs = 3;
    o.on_logprobs = [&](std::size_t i, token_logprob chosen, std::span<const token_logprob> top) {
        seen.emplace_back(i, chosen.token, chosen.logprob, top.size());
    };
    const auto r = sample(m, cache, prompts, o, sampler::sampling().add(temperature{3.0f}));
    const double want[4] = {std::log(0.5), std::log(0.25), std::log(0.125), std::log(0.125)};
    REQUIRE(seen.size() == 10);
    for (const auto& seq : r.sequences) {
        REQUIRE(seq.logprobs.size() == 5);
        REQUIRE(seq.top_logprobs.size() == 15);
        for (std::size_t k = 0; k < 5; ++k) {
            const token_logprob chosen = seq.logprobs[k];
            REQUIRE(chosen.token == seq.generated()[k]);
            REQUIRE(chosen.logprob == Approx(want[chosen.token]).margin(1e-6));
            const auto top = seq.top_logprobs_at(k);
            REQUIRE(top.size() == 3);
            REQUIRE(top[0].token == 0);
            REQUIRE(top[1].token == 1);
            REQUIRE(top[2].token == 2);  // a tie with 3: the lower id first
            for (const auto& t : top) REQUIRE(t.logprob == Approx(want[t.token]).margin(1e-6));
        }
    }
    // Greedy with K = 0: only the chosen token's; without logprobs, nothing is kept.
    o.logprobs = 0;
    o.on_logprobs = nullptr;
    const auto g = greedy(m, cache, prompts, o);
    REQUIRE(g.sequences[0].logprobs.size() == 5);
    REQUIRE(g.sequences[0].top_logprobs.empty());
    REQUIRE(g.sequences[0].logprobs[0].token == 0);
    o.logprobs.reset();
    REQUIRE(greedy(m, cache, prompts, o).sequences[0].logprobs.empty());
    o.logprobs = 5;
    REQUIRE_THROWS_WITH(greedy(m, cache, prompts, o), Catch::Contains("the 5 most likely tokens of a vocabulary of 4"));
}

TEST_CASE("continue_generation carries a conversation in the cache, as one prompt would", "[decode][continue]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 256, .block_size = 8});
    const std::vector<token_id> turn1 = {1, 5, 9, 13}, turn2 = {4, 4, 8};
    const generation_options o{.max_new_tokens = 6, .eos = {}};
    const seq_id conversation = cache.create();
    const auto r1 = continue_generation(ctx, cache, std::vector{conversation}, prompts_t{turn1}, o, sampler::greedy());
    const auto g1 = r1.sequences[0].generated();
    REQUIRE(g1.size() == 6);
    REQUIRE(cache.length(conversation) == turn1.size() + 5);  // the last generated token is not in yet
    std::vector<token_id> next = {g1.back()};
    next.insert(next.end(), turn2.begin(), turn2.end());
    const auto r2 = continue_generation(ctx, cache, std::vector{conversation}, prompts_t{next}, o, sampler::greedy());
    REQUIRE(r2.sequences[0].context_before == turn1.size() + 5);
    REQUIRE(r2.sequences[0].tokens.size() == next.size() + 6);

    // The same tokens as one prompt, from scratch.
    std::vector<token_id> whole = turn1;
    whole.insert(whole.end(), g1.begin(), g1.end());
    whole.insert(whole.end(), turn2.begin(), turn2.end());
    const auto once = greedy(ctx, cache, prompts_t{whole}, o);
    REQUIRE(std::vector<token_id>(once.sequences[0].generated().begin(), once.sequences[0].generated().end()) ==
            std::vector<token_id>(r2.sequences[0].generated().begin(), r2.sequences[0].generated().end()));
    REQUIRE(cache.stats().sequences == 1);  // the caller's sequence stays

    // A failing call leaves the conversation as it was: a full cache mid-generation.
    auto small = model.make_cache({.capacity_tokens = 16, .block_size = 4});
    const seq_id s = small.create();
    continue_generation(ctx, small, std::vector{s}, prompts_t{{1, 2, 3}}, {.max_new_tokens = 2, .eos = {}}, sampler::greedy());
    const std::size_t before = small.length(s);
    REQUIRE_THROWS_AS(continue_generation(ctx, small, std::vector{s}, prompts_t{{7, 8}}, {.max_new_tokens = 40, .eos = {}},
                                          sampler::greedy()),
                      cache_full);
    REQUIRE(small.length(s) == before);
    REQUIRE_THROWS_WITH(continue_generation(ctx, small, std::vector{s, s}, prompts_t{{7}}, o, sampler::greedy()),
                        Catch::Contains("2 sequences but 1 token lists"));
}
