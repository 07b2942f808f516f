// MaxEnt-TS: the soft backup by hand, convergence to the exact tilted value and
// distribution on a model small enough to enumerate, search mode finding a unique
// optimum, reproducibility, tree invariants with batched rollouts, the cache, and
// the processors and min_new_tokens in expansion and rollouts.

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/decode/maxent_ts.hpp"
#include "support/fake_model.hpp"
#include "support/models.hpp"

using namespace kvdecode;

namespace {

// Near-uniform next-token distributions that depend on the history (so the tilt
// matters and every leaf stays likely enough to be visited).
void gentle_logits(std::span<const token_id> history, std::span<float> logits) {
    std::uint64_t h = 1469598103934665603ull;
    for (token_id t : history) h = (h ^ static_cast<std::uint64_t>(t + 1)) * 1099511628211ull;
    for (std::size_t v = 0; v < logits.size(); ++v)
        logits[v] = static_cast<float>(((h >> (8 * v)) & 0xff) / 255.0 * 0.8 - 0.4);
}

double count_of_two(std::span<const token_id> x) {  // reward: how many 2s were generated
    return static_cast<double>(std::count(x.begin() + 1, x.end(), 2)) / 3.0;
}

// count_of_two, keeping every sequence it scores in `scored`.
reward_function recording(std::vector<std::vector<token_id>>& scored) {
    return [&scored](std::span<const token_id> x) {
        scored.emplace_back(x.begin(), x.end());
        return count_of_two(x);
    };
}

struct exact_tilt {
    std::map<std::vector<token_id>, double> p, tilted;  // over complete generated sequences
    double log_z = 0;                                   // log E_p[exp(lambda r)]
};

exact_tilt enumerate(double lambda) {
    exact_tilt e;
    const std::vector<token_id> prompt = {1};
    std::function<void(std::vector<token_id>, double)> walk = [&](std::vector<token_id> seq, double logp) {
        if (seq.size() == 4) {
            e.p[seq] = std::exp(logp);
            return;
        }
        std::vector<float> l(3);
        gentle_logits(seq, l);
        double z = 0;
        for (float x : l) z += std::exp(double(x));
        for (token_id t = 0; t < 3; ++t) {
            auto next = seq;
            next.push_back(t);
            walk(next, logp + double(l[t]) - std::log(z));
        }
    };
    walk(prompt, 0);
    double z = 0;
    for (auto& [x, p] : e.p) z += p * std::exp(lambda * count_of_two(x));
    for (auto& [x, p] : e.p) e.tilted[x] = p * std::exp(lambda * count_of_two(x)) / z;
    e.log_z = std::log(z) / lambda;
    return e;
}

tree_options exact_options(double lambda, std::uint64_t seed, std::size_t rollouts) {
    return {.num_rollouts = rollouts, .lambda = lambda, .expansion_k = 3, .expansion_temperature = 1.0,
            .rollout_temperature = 1.0f, .rollout_top_k = 0, .rollout_top_p = 1.0f,
            .generation = {.max_new_tokens = 3, .eos = {}, .seed = seed}};
}

void check_invariants(const tree_search_result& r) {
    const auto& t = r.tree;
    for (const auto& n : t) {
        std::uint32_t below = 0;
        for (std::uint32_t c = 0; c < n.n_children; ++c) below += t[static_cast<std::size_t>(n.first_child) + c].visits;
        REQUIRE(n.visits == below + n.terminations);
        REQUIRE(n.pending == 0);
    }
    REQUIRE(t[0].visits == r.stats.rollouts);
}

}  // namespace

TEST_CASE("soft backup by hand", "[decode][tree]") {
    std::vector<tree_node> kids(3);
    kids[0].prior = 0.5, kids[0].visits = 2, kids[0].value = 1.0;
    kids[1].prior = 0.3, kids[1].visits = 1, kids[1].value = -0.5;
    kids[2].prior = 0.2, kids[2].visits = 0, kids[2].value = 9.0;  // unvisited: ignored
    // (1/2) log(0.625 e^2 + 0.375 e^-1), priors renormalised over the visited two.
    REQUIRE(soft_value(kids, 2.0) == Approx(0.7797155637292583).epsilon(1e-12));
    kids[0].value = 0.3, kids[1].value = 0.1, kids[0].prior = 0.4, kids[1].prior = 0.4;
    REQUIRE(soft_value(kids, 1.0) == Approx(0.2049916888216466).epsilon(1e-12));  // log(e^.3/2 + e^.1/2)
    for (auto& k : kids) k.visits = 0;
    REQUIRE(soft_value(kids, 1.0) == 0.0);
    // As lambda -> 0 the soft value is the prior-weighted mean; large lambda tends to the max.
    kids[0].visits = kids[1].visits = 1;
    REQUIRE(soft_value(kids, 1e-8) == Approx(0.2).epsilon(1e-6));
    REQUIRE(soft_value(kids, 1e4) == Approx(0.3).epsilon(1e-3));
}

TEST_CASE("the root's soft value converges to (1/lambda) log E_p[exp(lambda r)]", "[decode][tree]") {
    kvtest::fake_model model(3, 16, gentle_logits);
    auto cache = model.make_cache();
    const std::vector<token_id> prompt = {1};
    for (double lambda : {0.5, 1.0, 3.0}) {
        const auto exact = enumerate(lambda);
        const auto few = maxent_ts(model, cache, prompt, count_of_two, exact_options(lambda, 1, 5));
        const auto many = maxent_ts(model, cache, prompt, count_of_two, exact_options(lambda, 1, 800));
        std::size_t leaves_visited = 0;
        for (const auto& n : many.tree) leaves_visited += n.depth == 3 && n.visits > 0;
        CAPTURE(lambda, few.root_value, many.root_value, exact.log_z);
        REQUIRE(leaves_visited == 27);  // every sequence scored exactly: the tree is the whole space
        REQUIRE(std::abs(many.root_value - exact.log_z) < 1e-9);
        REQUIRE(std::abs(few.root_value - exact.log_z) > std::abs(many.root_value - exact.log_z));
        check_invariants(many);
    }
}

TEST_CASE("sample mode returns sequences at the tilted distribution's frequencies", "[decode][tree]") {
    kvtest::fake_model model(3, 16, gentle_logits);
    auto cache = model.make_cache();
    const std::vector<token_id> prompt = {1};
    for (double lambda : {2.0, 1e-6}) {  // 1e-6: the tilt vanishes and the model's own p(x) remains
        const auto exact = enumerate(lambda);
        std::map<std::vector<token_id>, int> counts;
        const int searches = 600;
        for (int i = 0; i < searches; ++i)
            ++counts[maxent_ts(model, cache, prompt, count_of_two, exact_options(lambda, 100 + i, 400)).tokens];
        double chi2 = 0;
        for (const auto& [x, q] : exact.tilted) {
            const double expected = searches * q;
            const double got = counts.count(x) ? counts[x] : 0;
            chi2 += (got - expected) * (got - expected) / expected;
        }
        CAPTURE(lambda, chi2);
        REQUIRE(counts.size() <= 27);
        REQUIRE(chi2 < 54.05);  // 26 degrees of freedom, p = 0.001
    }
}

TEST_CASE("search mode finds a unique optimum, best_seen returns it too", "[decode][tree]") {
    kvtest::fake_model model(3, 16, gentle_logits);
    auto cache = model.make_cache();
    const std::vector<token_id> prompt = {1}, target = {1, 2, 0, 1};
    const reward_function reward = [&](std::span<const token_id> x) {
        return std::equal(x.begin(), x.end(), target.begin(), target.end()) ? 1.0 : 0.0;
    };
    auto o = exact_options(1.0, 5, 200);
    o.mode = tree_mode::search;
    const auto found = maxent_ts(model, cache, prompt, reward, o);
    REQUIRE(found.tokens == target);
    REQUIRE(found.reward == 1.0);
    o.result = tree_result::best_seen;
    REQUIRE(maxent_ts(model, cache, prompt, reward, o).tokens == target);
}

TEST_CASE("same seed, same search, batched rollouts keep the tree's invariants", "[decode][tree]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 4096, .block_size = 8, .max_sequences = 128});
    const std::vector<token_id> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    const reward_function reward = [](std::span<const token_id> x) {
        return static_cast<double>(std::count(x.begin(), x.end(), 7)) / static_cast<double>(x.size());
    };
    tree_options o{.num_rollouts = 24, .expansion_k = 3, .rollout_max_new_tokens = 12, .rollout_temperature = 3.0f,
                   .generation = {.max_new_tokens = 20, .eos = {0}, .seed = 9}};
    const auto a = maxent_ts(ctx, cache, prompt, reward, o);
    const auto b = maxent_ts(ctx, cache, prompt, reward, o);
    REQUIRE(a.tokens == b.tokens);
    REQUIRE(a.root_value == b.root_value);
    REQUIRE(a.stats.tokens_computed == b.stats.tokens_computed);
    check_invariants(a);
    for (std::size_t batch : {2, 5, 24}) {
        o.rollouts_per_batch = batch;
        const auto r = maxent_ts(ctx, cache, prompt, reward, o);
        CAPTURE(batch);
        check_invariants(r);
        REQUIRE(r.stats.rollouts == 24);
        REQUIRE(r.stats.forward_calls < a.stats.forward_calls);  // rollouts of a batch share forwards
        REQUIRE(cache.stats().blocks_used == 0);
    }
    for (auto mode : {tree_mode::sample, tree_mode::search}) {
        o.mode = mode;
        check_invariants(maxent_ts(ctx, cache, prompt, reward, o));
    }
}

TEST_CASE("the tree computes each prefix once, the cache is empty afterwards", "[decode][tree]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 8192, .block_size = 8, .max_sequences = 128});
    const std::vector<token_id> prompt(40, 3);
    const reward_function reward = [](std::span<const token_id> x) { return x.size() % 3 == 0 ? 1.0 : 0.0; };
    tree_options o{.num_rollouts = 16, .rollout_max_new_tokens = 10, .generation = {.max_new_tokens = 30, .eos = {}, .seed = 4}};
    const auto shared = maxent_ts(ctx, cache, prompt, reward, o);
    REQUIRE(cache.stats().blocks_used == 0);
    REQUIRE(cache.stats().sequences == 0);
    std::size_t tree_tokens = prompt.size();
    for (const auto& n : shared.tree) tree_tokens += n.expanded && n.parent >= 0;
    // Rollouts feed their child's token, then at most rollout_max_new_tokens - 1 sampled ones
    // (the last sampled token is never fed); the final completion is one more rollout.
    const std::size_t rollout_tokens = (o.num_rollouts + 1) * o.rollout_max_new_tokens;
    REQUIRE(shared.stats.tokens_computed <= tree_tokens + rollout_tokens);
    REQUIRE(shared.stats.tokens_from_cache >= o.num_rollouts * prompt.size());
    o.cache_policy = tree_cache_policy::recompute;
    const auto recomputed = maxent_ts(ctx, cache, prompt, reward, o);
    REQUIRE(recomputed.stats.tokens_computed > shared.stats.tokens_computed + (o.num_rollouts - 1) * prompt.size());
    REQUIRE(recomputed.stats.tokens_from_cache == 0);
    REQUIRE(cache.stats().blocks_used == 0);
}

TEST_CASE("a reward that throws aborts the search and leaves the cache as it was", "[decode][tree][errors]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 2048, .block_size = 8, .max_sequences = 64});
    const auto keep = cache.create();
    std::vector<float> logits(shape.vocab_size);
    ctx.forward(std::vector{sequence_tokens{keep, std::vector<token_id>{1, 2, 3}}}, cache, logits);
    const auto before = cache.stats();
    int calls = 0;
    const reward_function reward = [&](std::span<const token_id>) -> double {
        if (++calls == 5) throw std::runtime_error("reward failed");
        return 0.0;
    };
    REQUIRE_THROWS_WITH(maxent_ts(ctx, cache, std::vector<token_id>{1, 2}, reward, {.num_rollouts = 10}),
                        "reward failed");
    REQUIRE(cache.stats().blocks_used == before.blocks_used);
    REQUIRE(cache.stats().sequences == 1);
    REQUIRE_THROWS_AS(maxent_ts(ctx, cache, std::vector<token_id>{1}, reward, {.lambda = 0}), std::invalid_argument);
    REQUIRE_THROWS_AS(maxent_ts(ctx, cache, std::vector<token_id>{1}, reward, {.num_rollouts = 0}), std::invalid_argument);
    REQUIRE_THROWS_AS(maxent_ts(ctx, cache, std::vector<token_id>{1}, reward_function{}), std::invalid_argument);
    REQUIRE_THROWS_AS(maxent_ts(ctx, cache, std::vector<token_id>{1}, reward, {.processors = {temperature{0.0f}}}),
                      std::invalid_argument);
    REQUIRE_THROWS_WITH(maxent_ts(ctx, cache, std::vector<token_id>{1}, reward,
                                  {.generation = {.on_token = [](std::size_t, token_id) { return true; }}}),
                        Catch::Contains("on_token is not supported"));
    REQUIRE_THROWS_AS(maxent_ts(ctx, cache, std::vector<token_id>{1}, reward, {.generation = {.max_new_tokens = 0}}),
                      std::invalid_argument);
    REQUIRE(cache.stats().sequences == 1);
}

TEST_CASE("the processors shape the expansion priors", "[decode][tree][processors]") {
    kvtest::fake_model model(3, 16, gentle_logits);
    auto cache = model.make_cache();
    const std::vector<token_id> prompt = {1, 1};
    auto o = exact_options(1.0, 3, 1);
    o.expansion_temperature = 0.5;
    o.processors = {repetition_penalty{3.0f}};
    // Expected: transformers' repetition penalty on the root's logits (token 1 is in
    // the prompt), then softmax at the expansion temperature.
    std::vector<float> l(3);
    gentle_logits(prompt, l);
    std::vector<double> plain(3), processed(3);
    for (std::size_t t = 0; t < 3; ++t) {
        const double x = l[t], y = t == 1 ? (x < 0 ? x * 3.0 : x / 3.0) : x;
        plain[t] = std::exp(x / 0.5), processed[t] = std::exp(y / 0.5);
    }
    const double plain_sum = plain[0] + plain[1] + plain[2], processed_sum = processed[0] + processed[1] + processed[2];
    for (const auto& chain : {std::vector<logits_processor>{}, o.processors}) {
        auto run = o;
        run.processors = chain;
        const auto r = maxent_ts(model, cache, prompt, count_of_two, run);
        const auto& root = r.tree[0];
        REQUIRE(root.n_children == 3);
        for (std::uint32_t i = 0; i < 3; ++i) {
            const auto& child = r.tree[static_cast<std::size_t>(root.first_child) + i];
            const auto t = static_cast<std::size_t>(child.token);
            const double want = chain.empty() ? plain[t] / plain_sum : processed[t] / processed_sum;
            CAPTURE(chain.size(), t);
            REQUIRE(child.prior == Approx(want).epsilon(1e-6));
        }
    }
    REQUIRE(std::abs(processed[1] / processed_sum - plain[1] / plain_sum) > 0.01);  // the penalty mattered
}

TEST_CASE("a token the processors remove appears neither in the tree nor in rollouts", "[decode][tree][processors]") {
    kvtest::fake_model model(3, 16, gentle_logits);
    auto cache = model.make_cache();
    const std::vector<token_id> prompt = {1};
    std::vector<std::vector<token_id>> scored;
    const reward_function reward = recording(scored);
    for (auto mode : {tree_mode::sample, tree_mode::search})
        for (std::uint64_t seed : {1, 2, 3}) {
            auto o = exact_options(1.0, seed, 30);
            o.mode = mode;
            o.generation.max_new_tokens = 6;
            o.rollout_max_new_tokens = 6;
            o.processors = {custom_processor{[](std::span<float> l, std::span<const token_id>) {
                l[2] = -std::numeric_limits<float>::infinity();
            }}};
            scored.clear();
            const auto r = maxent_ts(model, cache, prompt, reward, o);
            CAPTURE(int(mode), seed);
            REQUIRE(r.tree[0].n_children == 2);
            for (const auto& n : r.tree) REQUIRE(n.token != 2);
            REQUIRE(scored.size() == 31);
            for (const auto& x : scored) REQUIRE(std::count(x.begin(), x.end(), 2) == 0);
            REQUIRE(std::count(r.tokens.begin(), r.tokens.end(), 2) == 0);
            REQUIRE(r.tokens.size() == 1 + 6);  // no EOS: the result is completed to the depth limit
        }
}

TEST_CASE("min_new_tokens keeps EOS out of the first children and rollout tokens", "[decode][tree]") {
    kvtest::fake_model model(3, 16, gentle_logits);
    auto cache = model.make_cache();
    const std::vector<token_id> prompt = {1};
    std::vector<std::vector<token_id>> scored;
    const reward_function reward = recording(scored);
    auto o = exact_options(1.0, 7, 200);
    o.generation = {.max_new_tokens = 5, .min_new_tokens = 2, .eos = {0}, .seed = 7};
    const auto r = maxent_ts(model, cache, prompt, reward, o);
    bool eos_later = false;
    for (const auto& n : r.tree) {
        if (n.depth <= 2) REQUIRE(n.token != 0);
        eos_later = eos_later || (n.depth > 2 && n.token == 0 && n.terminal);
    }
    REQUIRE(eos_later);  // EOS is only held back, not removed
    for (const auto& x : scored) {
        REQUIRE(x.size() >= 1 + 3);
        REQUIRE(std::count(x.begin(), x.begin() + 3, 0) == 0);
    }
    check_invariants(r);
}
