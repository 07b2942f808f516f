// Beam search: Hugging Face transformers' outputs on real checkpoints, the
// exhaustive optimum on a tiny model (with and without a repetition penalty),
// processors' known answers, greedy at one beam, shared caches that leak nothing
// and copy at most one partial block per beam and step.

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/decode/beam_search.hpp"
#include "kvdecode/decode/generate.hpp"
#include "kvdecode/io/llama2c_checkpoint.hpp"
#include "support/fake_model.hpp"
#include "support/golden.hpp"
#include "support/models.hpp"

using namespace kvdecode;
using prompts_t = std::vector<std::vector<token_id>>;

namespace {

beam_stopping stopping_of(const kvtest::json& j) {
    if (j.is_string()) return beam_stopping::never;  // "never"
    return j.get<bool>() ? beam_stopping::when_full : beam_stopping::heuristic;
}

// Logits that depend on the whole history, deterministic but irregular.
void hashed_logits(std::span<const token_id> history, std::span<float> logits) {
    std::uint64_t h = 1469598103934665603ull;
    for (token_id t : history) h = (h ^ static_cast<std::uint64_t>(t + 1)) * 1099511628211ull;
    for (std::size_t v = 0; v < logits.size(); ++v) {
        const std::uint64_t x = (h ^ (v * 0x9e3779b97f4a7c15ull)) * 0xbf58476d1ce4e5b9ull;
        logits[v] = static_cast<float>((x >> 40) % 1000) / 250.0f;
    }
}

// The model's favourite is repeating the last token; the token after it comes second.
void repeating_logits(std::span<const token_id> history, std::span<float> logits) {
    std::fill(logits.begin(), logits.end(), 0.0f);
    const auto last = static_cast<std::size_t>(history.back());
    logits[last] = 2.0f;
    logits[(last + 1) % logits.size()] = 1.5f;
}

using rule_t = kvtest::fake_model::rule_type;

double log_softmax_at(const rule_t& rule, std::span<const token_id> history, std::size_t vocab, token_id t) {
    std::vector<float> l(vocab);
    rule(history, l);
    double top = *std::max_element(l.begin(), l.end()), total = 0;
    for (float x : l) total += std::exp(x - top);
    return l[t] - top - std::log(total);
}

struct scored_hypothesis {
    std::vector<token_id> tokens;
    double score;
};

// Every hypothesis of `depth` tokens at most (token 0 is EOS), best first, by brute
// force: `log_prob(history, t)` is the (processed) score of t after history.
std::vector<scored_hypothesis> exhaustive(const std::vector<token_id>& prompt, std::size_t vocab, std::size_t depth,
                                          double lp,
                                          const std::function<double(std::span<const token_id>, token_id)>& log_prob) {
    std::vector<scored_hypothesis> all;
    std::function<void(std::vector<token_id>, double)> walk = [&](std::vector<token_id> seq, double sum) {
        for (token_id t = 0; t < static_cast<token_id>(vocab); ++t) {
            auto next = seq;
            next.push_back(t);
            const double s = sum + log_prob(seq, t);
            const std::size_t len = next.size() - prompt.size();
            if (t == 0 || len == depth) all.push_back({next, s / std::pow(double(len), lp)});
            else walk(next, s);
        }
    };
    walk(prompt, 0.0);
    std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.score > b.score; });
    return all;
}

}  // namespace

TEST_CASE("beam search equals Hugging Face transformers on every golden beam case", "[decode][beam][golden][shared]") {
    std::size_t cases = 0, ties = 0;
    const auto sets = kvtest::golden_sets();
    if (sets.empty()) return;
    for (const auto& [name, golden, weights] : sets) {
        const transformer<float> model(weights);
        decode_context<float> ctx(model);
        auto cache = model.make_cache({.capacity_tokens = 8 * 512, .block_size = 16});
        for (const auto& c : golden.at("cases")) {
            if (c.at("kind").get<std::string>() != "beam") continue;
            beam_options o;
            o.num_beams = c.at("num_beams").get<std::size_t>();
            o.num_return_sequences = o.num_beams;
            o.length_penalty = c.at("length_penalty").get<double>();
            o.early_stopping = stopping_of(c.at("early_stopping"));
            o.generation.max_new_tokens = c.at("max_new_tokens").get<std::size_t>();
            o.generation.eos = {c.at("eos").get<token_id>()};
            const prompts_t prompts = {c.at("prompt").get<std::vector<token_id>>()};
            const auto result = beam_search(ctx, cache, prompts, o);
            const auto& got = result.hypotheses[0];
            const auto& want = c.at("sequences");
            const auto want_scores = c.at("scores").get<std::vector<double>>();
            CAPTURE(name, o.num_beams, o.length_penalty, int(o.early_stopping));
            REQUIRE(got.size() == want.size());
            // transformers pads a hypothesis that ended early to the batch's length: cut after its EOS.
            auto unpadded = [&](const kvtest::json& seq) {
                auto t = seq.get<std::vector<token_id>>();
                const auto eos = std::find(t.begin() + static_cast<std::ptrdiff_t>(prompts[0].size()), t.end(), o.generation.eos[0]);
                if (eos != t.end()) t.erase(eos + 1, t.end());
                return t;
            };
            for (std::size_t i = 0; i < got.size(); ++i) {
                CAPTURE(i);
                const auto want_tokens = unpadded(want[i]);
                const double tolerance = std::max(1e-4, 1e-5 * std::abs(want_scores[i]));
                if (got[i].tokens != want_tokens) {
                    // Only a tie may flip an order: the same hypothesis must be elsewhere with an equal score.
                    bool tie = false;
                    for (std::size_t j = 0; j < want.size(); ++j)
                        tie = tie || (unpadded(want[j]) == got[i].tokens &&
                                      std::abs(want_scores[j] - want_scores[i]) <= 1e-5);
                    REQUIRE(tie);
                    WARN("tie within 1e-5 flipped the order of hypotheses " << i << " in " << name);
                    ++ties;
                }
                REQUIRE(std::abs(got[i].score - want_scores[i]) <= tolerance);
                REQUIRE(got[i].ended_with_eos == (want_tokens.back() == o.generation.eos[0]));
            }
            REQUIRE(cache.stats().blocks_used == 0);  // nothing leaked
            REQUIRE(cache.stats().sequences == 0);
            ++cases;
        }
    }
    REQUIRE(cases == 36 + 36);  // aidreams: 2 prompts x 3 widths x 3 penalties x 2 modes; stories: 3 x 4 x 3
    CHECK(ties == 0);
}

TEST_CASE("with enough beams, beam search returns the exhaustive optimum", "[decode][beam]") {
    const std::size_t vocab = 3, depth = 3;
    kvtest::fake_model model(vocab, 16, hashed_logits);
    auto cache = model.make_cache();
    const std::vector<token_id> prompt = {1};
    for (double lp : {1.0, 0.0, 2.0, -1.0}) {
        const auto all = exhaustive(prompt, vocab, depth, lp, [&](std::span<const token_id> h, token_id t) {
            return log_softmax_at(hashed_logits, h, vocab, t);
        });
        REQUIRE(all.size() == 1 + 2 + 12);
        const auto result = beam_search(model, cache, prompts_t{prompt},
                                        {.num_beams = 16, .num_return_sequences = 15, .length_penalty = lp,
                                         .early_stopping = beam_stopping::never, .generation = {.max_new_tokens = depth, .eos = {0}}});
        const auto& got = result.hypotheses[0];
        CAPTURE(lp);
        REQUIRE(got.size() == all.size());
        for (std::size_t i = 0; i < all.size(); ++i) {
            CAPTURE(i);
            REQUIRE(got[i].tokens == all[i].tokens);
            REQUIRE(got[i].score == Approx(all[i].score).epsilon(1e-9));
        }
    }
}

TEST_CASE("a repetition penalty in the chain changes the chosen beam: known answers", "[decode][beam][processors]") {
    kvtest::fake_model model(3, 16, repeating_logits);
    auto cache = model.make_cache();
    const prompts_t prompt = {{1}};
    beam_options o{.num_beams = 1, .generation = {.max_new_tokens = 2, .eos = {}}};
    REQUIRE(beam_search(model, cache, prompt, o).hypotheses[0][0].tokens == std::vector<token_id>{1, 1, 1});
    // After [1]: log-probs 2 - log z = -0.555 (token 1), -1.055 (token 2); penalised, token 1 falls to -1.110.
    // After [1, 2]: token 2 falls to -1.110 and token 0 (-1.055) wins.
    o.processors = {repetition_penalty{2.0f}};
    const auto penalised = beam_search(model, cache, prompt, o).hypotheses[0][0];
    REQUIRE(penalised.tokens == std::vector<token_id>{1, 2, 0});
    const double log_z = std::log(std::exp(2.0) + std::exp(1.5) + 1.0);
    REQUIRE(penalised.sum_logprobs == Approx((1.5 - log_z) + (1.5 - log_z)).epsilon(1e-6));
    // No repeated bigram: [1, 1] bans 1 after 1, so 2 follows; then 2 may repeat.
    o.processors = {no_repeat_ngram{2}};
    o.generation.max_new_tokens = 3;
    REQUIRE(beam_search(model, cache, prompt, o).hypotheses[0][0].tokens == std::vector<token_id>{1, 1, 2, 2});
}

TEST_CASE("with a repetition penalty and enough beams, beam search returns the exhaustive optimum of the penalised scores",
          "[decode][beam][processors]") {
    const std::size_t vocab = 3, depth = 4;
    kvtest::fake_model model(vocab, 16, repeating_logits);
    auto cache = model.make_cache();
    const std::vector<token_id> prompt = {1};
    const float penalty = 2.5f;
    // transformers' RepetitionPenaltyLogitsProcessor on log-probabilities, written out again.
    auto penalised = [&](std::span<const token_id> h, token_id t) {
        const double x = log_softmax_at(repeating_logits, h, vocab, t);
        if (std::find(h.begin(), h.end(), t) == h.end()) return x;
        return x < 0 ? x * double(penalty) : x / double(penalty);
    };
    const auto plain = exhaustive(prompt, vocab, depth, 1.0, [&](std::span<const token_id> h, token_id t) {
        return log_softmax_at(repeating_logits, h, vocab, t);
    });
    const auto want = exhaustive(prompt, vocab, depth, 1.0, penalised);
    REQUIRE(want[0].tokens != plain[0].tokens);  // the penalty changes the best hypothesis
    const beam_options o{.num_beams = 32, .num_return_sequences = 31, .early_stopping = beam_stopping::never,
                         .generation = {.max_new_tokens = depth, .eos = {0}},
                         .processors = {repetition_penalty{penalty}}};
    const auto result = beam_search(model, cache, prompts_t{prompt}, o);
    const auto& got = result.hypotheses[0];
    REQUIRE(want.size() == 1 + 2 + 4 + 8 * 3);
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        CAPTURE(i);
        REQUIRE(got[i].score == Approx(want[i].score).epsilon(1e-9));
        // Hypotheses of equal score may come in either order.
        REQUIRE(std::any_of(want.begin(), want.end(), [&](const scored_hypothesis& w) {
            return w.tokens == got[i].tokens && w.score == Approx(got[i].score).epsilon(1e-9);
        }));
        for (std::size_t j = 0; j < i; ++j) REQUIRE(got[j].tokens != got[i].tokens);
    }
}

TEST_CASE("custom processors reach beam search, min_new_tokens holds EOS back", "[decode][beam][processors]") {
    kvtest::fake_model model(7, 64, hashed_logits);
    auto cache = model.make_cache();
    const prompts_t prompts = {{3}, {1, 5}};
    beam_options o{.num_beams = 3, .num_return_sequences = 3, .generation = {.max_new_tokens = 10, .eos = {0}}};
    const auto plain = beam_search(model, cache, prompts, o);
    // A custom processor that changes nothing changes no score: untouched entries keep double precision.
    o.processors = {custom_processor{[](std::span<float>, std::span<const token_id>) {}}};
    const auto same = beam_search(model, cache, prompts, o);
    REQUIRE(plain.hypotheses[0].size() == 3);
    REQUIRE(plain.hypotheses[1].size() == 3);
    for (std::size_t p = 0; p < prompts.size(); ++p)
        for (std::size_t i = 0; i < 3; ++i) {
            REQUIRE(same.hypotheses[p][i].tokens == plain.hypotheses[p][i].tokens);
            REQUIRE(same.hypotheses[p][i].score == plain.hypotheses[p][i].score);
        }
    o.processors = {custom_processor{[](std::span<float> l, std::span<const token_id>) {
        l[4] = -std::numeric_limits<float>::infinity();
    }}};
    const auto without_four = beam_search(model, cache, prompts, o);
    for (const auto& hyps : without_four.hypotheses)
        for (const auto& h : hyps) REQUIRE(std::count(h.tokens.begin() + 1, h.tokens.end(), 4) == 0);
    // EOS after every token: it is the favourite, but not before 3 tokens.
    kvtest::fake_model eager(5, 64, [](std::span<const token_id>, std::span<float> l) {
        std::fill(l.begin(), l.end(), 0.0f);
        l[0] = 5.0f;
    });
    o.processors.clear();
    o.generation.min_new_tokens = 3;
    const auto held_back = beam_search(eager, cache, prompts_t{{1}}, o);
    REQUIRE(held_back.hypotheses[0].size() == 3);
    for (const auto& h : held_back.hypotheses[0]) {
        REQUIRE(h.tokens.size() == 1 + 4);
        REQUIRE(std::count(h.tokens.begin(), h.tokens.end(), 0) == 1);
        REQUIRE(h.ended_with_eos);
    }
}

TEST_CASE("one beam equals greedy decoding", "[decode][beam]") {
    const auto shape = kvtest::awkward_shapes()[1].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 512});
    const prompts_t prompts = {{1, 2, 3}, {9}};
    const auto greedy_out = greedy(ctx, cache, prompts, {.max_new_tokens = 30, .eos = {}});
    const auto beam_out = beam_search(ctx, cache, prompts, {.num_beams = 1, .generation = {.max_new_tokens = 30, .eos = {}}});
    for (std::size_t p = 0; p < prompts.size(); ++p) REQUIRE(beam_out.hypotheses[p][0].tokens == greedy_out.sequences[p].tokens);
    // With EOS and stopping as soon as one hypothesis is finished, too.
    kvtest::fake_model fake(7, 64, hashed_logits);
    auto history = fake.make_cache();
    for (token_id eos = 0; eos < 7; ++eos) {
        const auto g = greedy(fake, history, prompts_t{{3}}, {.max_new_tokens = 20, .eos = {eos}});
        const auto b = beam_search(fake, history, prompts_t{{3}},
                                   {.num_beams = 1, .early_stopping = beam_stopping::when_full,
                                    .generation = {.max_new_tokens = 20, .eos = {eos}}});
        CAPTURE(eos);
        REQUIRE(b.hypotheses[0][0].tokens == g.sequences[0].tokens);
    }
}

TEST_CASE("beams share their prefix: nothing leaks, at most one partial block copied per beam and step", "[decode][beam]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 1024, .block_size = 8, .max_sequences = 64});
    const prompts_t prompts = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {20, 21}};
    for (std::size_t beams : {2, 4, 8}) {
        const auto r = beam_search(ctx, cache, prompts, {.num_beams = beams, .num_return_sequences = 2,
                                                           .generation = {.max_new_tokens = 40, .eos = {}}});
        const auto st = cache.stats();
        CAPTURE(beams, r.stats.kv_bytes_copied, r.stats.max_kv_bytes_copied_per_step);
        REQUIRE(st.blocks_used == 0);
        REQUIRE(st.sequences == 0);
        REQUIRE(r.stats.max_kv_bytes_copied_per_step <= prompts.size() * beams * st.bytes_per_block);
        REQUIRE(r.stats.kv_bytes_copied > 0);
        // A copy per beam of every token so far would cost far more than this.
        REQUIRE(r.stats.kv_bytes_copied < r.stats.steps * prompts.size() * beams * st.bytes_per_block);
        REQUIRE(r.hypotheses[0].size() == 2);
        REQUIRE(r.hypotheses[0][0].score >= r.hypotheses[0][1].score);
    }
}

TEST_CASE("the copying baseline finds the same hypotheses and copies far more", "[decode][beam]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 2048, .block_size = 8, .max_sequences = 64});
    const prompts_t prompts = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}};
    beam_options o{.num_beams = 4, .num_return_sequences = 4, .generation = {.max_new_tokens = 30, .eos = {}}};
    const auto shared = beam_search(ctx, cache, prompts, o);
    o.cache_policy = beam_cache_policy::copy;
    const auto copied = beam_search(ctx, cache, prompts, o);
    for (std::size_t i = 0; i < 4; ++i) REQUIRE(copied.hypotheses[0][i].tokens == shared.hypotheses[0][i].tokens);
    REQUIRE(copied.stats.kv_bytes_copied > 5 * shared.stats.kv_bytes_copied);
    REQUIRE(copied.stats.peak_blocks_used > shared.stats.peak_blocks_used);
    REQUIRE(cache.stats().blocks_used == 0);
}

TEST_CASE("several prompts in one beam search equal each prompt alone", "[decode][beam]") {
    kvtest::fake_model model(11, 64, hashed_logits);
    auto cache = model.make_cache();
    const prompts_t prompts = {{1, 2}, {5}, {3, 3, 3, 3}};
    const beam_options o{.num_beams = 3, .num_return_sequences = 3, .generation = {.max_new_tokens = 12, .eos = {0}}};
    const auto together = beam_search(model, cache, prompts, o);
    for (std::size_t p = 0; p < prompts.size(); ++p) {
        const auto alone = beam_search(model, cache, prompts_t{prompts[p]}, o);
        REQUIRE(alone.hypotheses[0].size() == together.hypotheses[p].size());
        for (std::size_t i = 0; i < alone.hypotheses[0].size(); ++i) {
            REQUIRE(alone.hypotheses[0][i].tokens == together.hypotheses[p][i].tokens);
            REQUIRE(alone.hypotheses[0][i].score == together.hypotheses[p][i].score);
        }
    }
}

TEST_CASE("bad beam options throw invalid_argument", "[decode][beam][errors]") {
    kvtest::fake_model model(5, 16, hashed_logits);
    auto cache = model.make_cache();
    const prompts_t prompts = {{1}};
    REQUIRE_THROWS_AS(beam_search(model, cache, prompts, {.num_beams = 0}), std::invalid_argument);
    REQUIRE_THROWS_AS(beam_search(model, cache, prompts, {.num_beams = 2, .num_return_sequences = 3}), std::invalid_argument);
    REQUIRE_THROWS_AS(beam_search(model, cache, prompts, {.generation = {.max_new_tokens = 0}}), std::invalid_argument);
    REQUIRE_THROWS_AS(beam_search(model, cache, prompts, {.generation = {.max_new_tokens = 1, .min_new_tokens = 2}}),
                      std::invalid_argument);
    REQUIRE_THROWS_AS(beam_search(model, cache, prompts, {.generation = {.eos = {5}}}), std::invalid_argument);
    REQUIRE_THROWS_AS(beam_search(model, cache, prompts_t{{7}}, {}), std::invalid_argument);
    REQUIRE_THROWS_AS(beam_search(model, cache, prompts, {.processors = {top_k{0}}}), std::invalid_argument);
    REQUIRE_THROWS_WITH(beam_search(model, cache, prompts,
                                    {.generation = {.on_token = [](std::size_t, token_id) { return true; }}}),
                        Catch::Contains("on_token is not supported"));
    kvtest::fake_model short_context(5, 4, hashed_logits);
    REQUIRE_THROWS_WITH(beam_search(short_context, cache, prompts_t{{1, 2, 3, 4}}, {}), Catch::Contains("leaves no room"));
    REQUIRE(cache.create() == 0);  // nothing was left behind
}

TEST_CASE("a beam search that runs out of cache throws and leaves the cache as it was", "[decode][beam][errors]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 64, .block_size = 8, .max_sequences = 8});
    const auto keep = cache.create();
    std::vector<float> logits(shape.vocab_size);
    ctx.forward(std::vector{sequence_tokens{keep, std::vector<token_id>{1, 2, 3}}}, cache, logits);
    const auto before = cache.stats();
    REQUIRE_THROWS_AS(beam_search(ctx, cache, prompts_t{{1, 2, 3, 4, 5}}, {.num_beams = 8, .generation = {.max_new_tokens = 50, .eos = {}}}),
                      cache_full);
    const auto after = cache.stats();
    REQUIRE(after.blocks_used == before.blocks_used);
    REQUIRE(after.sequences == 1);
    REQUIRE(cache.length(keep) == 3);
}
