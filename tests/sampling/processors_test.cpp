// Each logits processor on hand-made logits, and the sampler's choices on tiny
// distributions whose answer is known.

#include <cmath>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/sampling/sampler.hpp"

using namespace kvdecode;

namespace {
const float removed = -std::numeric_limits<float>::infinity();

std::vector<float> run(const logits_processor& p, std::vector<float> logits, std::vector<token_id> history = {}) {
    sampling_scratch scratch;
    scratch.reserve(logits.size());
    apply(p, std::span<float>(logits), std::span<const token_id>(history), scratch);
    return logits;
}

std::vector<float> log_of(std::vector<double> probs) {
    std::vector<float> out;
    for (double p : probs) out.push_back(static_cast<float>(std::log(p)));
    return out;
}
}  // namespace

TEST_CASE("repetition_penalty divides positive and multiplies negative logits, once per token", "[sampling]") {
    REQUIRE(run(repetition_penalty{2.0f}, {2, -2, 1, 0.5f}, {0, 1, 0, 0}) == std::vector<float>{1, -4, 1, 0.5f});
    REQUIRE(run(repetition_penalty{0.5f}, {2, -2}, {0, 1}) == std::vector<float>{4, -1});
}

TEST_CASE("no_repeat_ngram bans tokens that would repeat an n-gram", "[sampling]") {
    REQUIRE(run(no_repeat_ngram{2}, {0, 0, 0, 0, 0, 0, 0}, {5, 6, 5}) ==
            std::vector<float>{0, 0, 0, 0, 0, 0, removed});
    REQUIRE(run(no_repeat_ngram{3}, {0, 0, 0, 0}, {1, 2, 3, 1, 2}) == std::vector<float>{0, 0, 0, removed});
    REQUIRE(run(no_repeat_ngram{3}, {0, 0, 0, 0}, {1, 2, 3, 2, 1}) == std::vector<float>{0, 0, 0, 0});
    REQUIRE(run(no_repeat_ngram{3}, {0, 0, 0, 0}, {1}) == std::vector<float>{0, 0, 0, 0});  // too short
    REQUIRE(run(no_repeat_ngram{1}, {0, 0, 0, 0}, {3, 1}) == std::vector<float>{0, removed, 0, removed});
}

TEST_CASE("temperature scales, top_k keeps the k best and their ties", "[sampling]") {
    REQUIRE(run(temperature{0.5f}, {1, -2}) == std::vector<float>{2, -4});
    REQUIRE(run(top_k{2}, {1, 3, 2, 0}) == std::vector<float>{removed, 3, 2, removed});
    REQUIRE(run(top_k{1}, {1, 3, 3, 0}) == std::vector<float>{removed, 3, 3, removed});
    REQUIRE(run(top_k{10}, {1, 3}) == std::vector<float>{1, 3});
}

TEST_CASE("top_p keeps the smallest most likely set reaching p", "[sampling]") {
    const auto logits = log_of({0.5, 0.3, 0.15, 0.05});
    auto kept = [&](float p) {
        std::vector<int> k;
        const auto out = run(top_p{p}, logits);
        for (int i = 0; i < 4; ++i) k.push_back(std::isinf(out[i]) ? 0 : 1);
        return k;
    };
    REQUIRE(kept(0.75f) == std::vector<int>{1, 1, 0, 0});
    REQUIRE(kept(0.9f) == std::vector<int>{1, 1, 1, 0});
    REQUIRE(kept(0.4f) == std::vector<int>{1, 0, 0, 0});
    REQUIRE(kept(0.01f) == std::vector<int>{1, 0, 0, 0});  // the best token always stays
    REQUIRE(kept(1.0f) == std::vector<int>{1, 1, 1, 1});
}

TEST_CASE("min_p removes tokens below a fraction of the best token's probability", "[sampling]") {
    const auto out = run(min_p{0.4f}, log_of({0.5, 0.3, 0.15, 0.05}));
    REQUIRE_FALSE(std::isinf(out[0]));
    REQUIRE_FALSE(std::isinf(out[1]));
    REQUIRE(std::isinf(out[2]));
    REQUIRE(std::isinf(out[3]));
}

TEST_CASE("bad processor parameters throw invalid_argument", "[sampling][errors]") {
    sampler s = sampler::sampling();
    REQUIRE_THROWS_AS(s.add(temperature{0.0f}), std::invalid_argument);
    // An infinite temperature would flatten every logit to 0 and an infinite penalty
    // would zero or negate them: both are mistakes, not settings.
    REQUIRE_THROWS_WITH(s.add(temperature{std::numeric_limits<float>::infinity()}),
                        Catch::Contains("temperature must be positive and finite"));
    REQUIRE_THROWS_AS(s.add(temperature{std::numeric_limits<float>::quiet_NaN()}), std::invalid_argument);
    REQUIRE_THROWS_WITH(s.add(repetition_penalty{std::numeric_limits<float>::infinity()}),
                        Catch::Contains("repetition_penalty must be positive and finite"));
    REQUIRE_THROWS_AS(s.add(top_k{0}), std::invalid_argument);
    REQUIRE_THROWS_AS(s.add(top_p{0.0f}), std::invalid_argument);
    REQUIRE_THROWS_AS(s.add(top_p{1.5f}), std::invalid_argument);
    REQUIRE_THROWS_AS(s.add(min_p{-0.1f}), std::invalid_argument);
    REQUIRE_THROWS_AS(s.add(repetition_penalty{0.0f}), std::invalid_argument);
    REQUIRE_THROWS_AS(s.add(no_repeat_ngram{0}), std::invalid_argument);
    REQUIRE(s.chain().empty());
}

TEST_CASE("the chain runs in the order it was built", "[sampling]") {
    std::vector<int> calls;
    auto s = sampler::greedy()
                 .add(custom_processor{[&](std::span<float>, std::span<const token_id>) { calls.push_back(1); }})
                 .add(custom_processor{[&](std::span<float> l, std::span<const token_id>) { calls.push_back(2); l[3] = 9; }})
                 .add(custom_processor{[&](std::span<float>, std::span<const token_id>) { calls.push_back(3); }});
    std::vector<float> logits = {1, 2, 3, 0};
    rng gen(1);
    REQUIRE(s.choose(std::span<float>(logits), {}, gen) == 3);
    REQUIRE(calls == std::vector<int>{1, 2, 3});
    // Order changes the answer: a penalty before top_k lets another token in.
    std::vector<token_id> history = {0};
    std::vector<float> a = {3, 2.5f, 1}, b = a;
    auto penalty_first = sampler::greedy().add(repetition_penalty{2.0f}).add(top_k{1});
    auto top_k_first = sampler::greedy().add(top_k{1}).add(repetition_penalty{2.0f});
    REQUIRE(penalty_first.choose(std::span<float>(a), history, gen) == 1);
    REQUIRE(top_k_first.choose(std::span<float>(b), history, gen) == 0);
}

TEST_CASE("greedy picks the lowest id among equal maxima", "[sampling]") {
    std::vector<float> logits = {1, 5, 5, 2};
    rng gen(0);
    REQUIRE(sampler::greedy().choose(std::span<float>(logits), {}, gen) == 1);
}

TEST_CASE("sampling draws each token at its probability (chi-square)", "[sampling]") {
    const std::vector<double> probs = {0.5, 0.3, 0.15, 0.05};
    const auto logits = log_of(probs);
    sampler s = sampler::sampling();
    rng gen(12345);
    const int draws = 200000;
    std::vector<int> counts(4, 0);
    for (int i = 0; i < draws; ++i) {
        auto row = logits;
        ++counts[s.choose(std::span<float>(row), {}, gen)];
    }
    double chi2 = 0;
    for (int i = 0; i < 4; ++i) {
        const double expected = draws * probs[i];
        chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
    }
    CAPTURE(counts, chi2);
    REQUIRE(chi2 < 16.27);  // 3 degrees of freedom, p = 0.001
}

TEST_CASE("sampling after top_k never draws a removed token, and a seed fixes the draws", "[sampling]") {
    const auto logits = log_of({0.4, 0.3, 0.2, 0.1});
    auto draw_many = [&](std::uint64_t seed) {
        sampler s = sampler::sampling().add(top_k{2});
        rng gen(seed);
        std::vector<token_id> out;
        for (int i = 0; i < 2000; ++i) {
            auto row = logits;
            out.push_back(s.choose(std::span<float>(row), {}, gen));
        }
        return out;
    };
    const auto a = draw_many(7);
    for (token_id t : a) REQUIRE(t < 2);
    const auto zeros = std::count(a.begin(), a.end(), 0);
    REQUIRE(std::abs(zeros / 2000.0 - 4.0 / 7.0) < 0.05);  // renormalised: 0.4 / 0.7
    REQUIRE(draw_many(7) == a);
    REQUIRE(draw_many(8) != a);
}

TEST_CASE("process() runs the chain without choosing, add() takes a whole chain", "[sampling]") {
    const std::vector<logits_processor> chain = {repetition_penalty{2.0f}, top_k{2}};
    sampler s = sampler::greedy();
    s.add(chain);
    REQUIRE(s.chain().size() == 2);
    std::vector<double> row = {-1.0, -2.0, -0.5, -3.0};  // log-probabilities, as beam search passes them
    const std::vector<token_id> history = {2};
    s.process(std::span<double>(row), std::span<const token_id>(history));
    REQUIRE(row == std::vector<double>{-1.0, -std::numeric_limits<double>::infinity(), -1.0,
                                       -std::numeric_limits<double>::infinity()});
    sampler bad = sampler::greedy();
    REQUIRE_THROWS_AS(bad.add(std::vector<logits_processor>{top_k{1}, temperature{-1.0f}}), std::invalid_argument);
}

TEST_CASE("a custom processor on double rows sees floats and changes only what it writes", "[sampling]") {
    std::vector<double> row = {0.1234567890123, -2.0, 1e-9};
    const auto original = row;
    std::vector<float> seen;
    const custom_processor p{[&](std::span<float> l, std::span<const token_id> h) {
        seen.assign(l.begin(), l.end());
        l[1] = removed;
        REQUIRE(h.size() == 1);
    }};
    sampling_scratch scratch;
    scratch.reserve(row.size());
    const std::vector<token_id> history = {0};
    apply(logits_processor{p}, std::span<double>(row), std::span<const token_id>(history), scratch);
    REQUIRE(seen == std::vector<float>{0.1234567890123f, -2.0f, 1e-9f});
    REQUIRE(row[0] == original[0]);  // untouched: double precision kept
    REQUIRE(row[1] == -std::numeric_limits<double>::infinity());
    REQUIRE(row[2] == original[2]);
}
