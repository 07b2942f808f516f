// The encoder-decoder: the cached path (seq2seq_context: encoder once per source,
// cross-attention K/V shared, paged self-attention cache) against the no-cache
// reference that recomputes everything every step; decoders unchanged over it.

#include <algorithm>
#include <cmath>
#include <memory>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/decode/beam_search.hpp"
#include "kvdecode/decode/generate.hpp"
#include "kvdecode/decode/maxent_ts.hpp"
#include "kvdecode/model/language_model.hpp"
#include "kvdecode/model/random_weights.hpp"
#include "kvdecode/model/seq2seq_context.hpp"
#include "kvdecode/model/seq2seq_reference.hpp"

using namespace kvdecode;

namespace {

static_assert(language_model<seq2seq_context<float>>);
static_assert(language_model<seq2seq_reference<float>>);

// Awkward on purpose: GQA (4 query heads on 2 kv heads), head_dim 10, hidden 36.
seq2seq_config small_config(bool vector_sources) {
    seq2seq_config c;
    c.decoder = {.dim = 40, .hidden_dim = 36, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .vocab_size = 13,
                 .seq_len = 48, .shared_classifier = false};
    c.encoder_layers = 3;
    c.max_source_length = 21;
    (vector_sources ? c.input_dim : c.source_vocab_size) = vector_sources ? 11 : 17;
    return c;
}

std::vector<float> some_vectors(std::size_t length, std::size_t dim, std::uint64_t seed) {
    rng gen(seed);
    std::vector<float> v(length * dim);
    for (float& x : v) x = static_cast<float>(gen.normal());
    return v;
}

std::vector<token_id> some_tokens(std::size_t length, std::size_t vocab, std::uint64_t seed) {
    std::vector<token_id> t(length);
    for (std::size_t i = 0; i < length; ++i) t[i] = static_cast<token_id>((seed * 7 + i * 5 + i * i) % vocab);
    return t;
}

// Sources of lengths 5, 13 and 21 (the longest allowed) of either kind; the data they view.
struct sources {
    std::vector<std::vector<float>> vectors;
    std::vector<std::vector<token_id>> tokens;
    std::vector<source_view<float>> views;

    explicit sources(const seq2seq_config& c) {
        for (std::size_t n : {5, 13, 21}) {
            if (c.vector_sources()) vectors.push_back(some_vectors(n, c.input_dim, n));
            else tokens.push_back(some_tokens(n, c.source_vocab_size, n));
        }
        for (std::size_t i = 0; i < 3; ++i)
            views.push_back(c.vector_sources() ? source_view<float>{{}, vectors[i]} : source_view<float>{tokens[i], {}});
    }
};

void require_close(std::span<const float> a, std::span<const float> b, float tolerance) {
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(std::abs(a[i] - b[i]) <= tolerance * (1 + std::abs(b[i])));
}

}  // namespace

TEST_CASE("seq2seq: cached steps equal the no-cache reference, three sources of different lengths in one batch",
          "[model][seq2seq]") {
    for (bool vector_sources : {true, false}) {
        INFO("vector sources: " << vector_sources);
        const seq2seq_config config = small_config(vector_sources);
        const auto weights = std::make_shared<const seq2seq_weights<float>>(random_seq2seq_weights<float>(config, 7));
        const seq2seq_model<float> model(*weights);
        for (std::size_t threads : {1, 3}) {
            seq2seq_context<float> ctx(model, {.threads = threads, .min_work_per_thread = 1});
            seq2seq_reference<float> ref(weights);
            const sources src(config);
            auto cache = ctx.make_cache({.capacity_tokens = 256});
            auto ref_cache = ref.make_cache();
            const auto encoded = ctx.encode(src.views);  // one batch, padding-free
            REQUIRE(encoded.size() == 3);
            REQUIRE(encoded[2]->length() == 21);
            std::vector<seq_id> seqs, ref_seqs;
            for (std::size_t i = 0; i < 3; ++i) {
                seqs.push_back(cache.create());
                cache.bind(seqs[i], encoded[i]);
                ref_seqs.push_back(ref_cache.create());
                ref_cache.bind(ref_seqs[i], ref.encode(src.views[i]));
            }
            // Prompts of 1, 4 and 7 tokens (a prefill chunk each), then 12 steps of one token.
            std::vector<std::vector<token_id>> feed = {{1}, {1, 4, 2, 9}, {1, 3, 3, 8, 0, 12, 5}};
            const std::size_t vocab = config.decoder.vocab_size;
            std::vector<float> logits(3 * vocab), expected(3 * vocab);
            for (int step = 0; step < 13; ++step) {
                std::vector<sequence_tokens> batch, ref_batch;
                for (std::size_t i = 0; i < 3; ++i) {
                    batch.push_back({seqs[i], feed[i]});
                    ref_batch.push_back({ref_seqs[i], feed[i]});
                }
                ctx.forward(batch, cache, logits);
                ref.forward(ref_batch, ref_cache, expected);
                INFO("step " << step << ", threads " << threads);
                require_close(logits, expected, 2e-5f);
                for (std::size_t i = 0; i < 3; ++i) {
                    const auto row = std::span(logits).subspan(i * vocab, vocab);
                    feed[i] = {static_cast<token_id>(std::max_element(row.begin(), row.end()) - row.begin())};
                }
            }
        }
    }
}

TEST_CASE("seq2seq: every token's logits of a chunk equal the reference's", "[model][seq2seq]") {
    const seq2seq_config config = small_config(true);
    const auto weights = std::make_shared<const seq2seq_weights<float>>(random_seq2seq_weights<float>(config, 3));
    const seq2seq_model<float> model(*weights);
    seq2seq_context<float> ctx(model, {.max_rows_per_pass = 5});  // a 9-token chunk split over passes
    seq2seq_reference<float> ref(weights);
    const sources src(config);
    auto cache = ctx.make_cache();
    auto ref_cache = ref.make_cache();
    cache.bind_new_sequences(std::vector{ctx.encode(src.views[1])});
    ref_cache.bind_new_sequences(std::vector{ref.encode(src.views[1])});
    const seq_id s = cache.create(), r = ref_cache.create();
    const std::vector<token_id> chunk = {1, 5, 7, 2, 2, 11, 0, 4, 6};
    std::vector<float> logits(chunk.size() * 13), expected(chunk.size() * 13);
    ctx.forward(std::vector{sequence_tokens{s, chunk}}, cache, logits, logits_for::every_token);
    ref.forward(std::vector{sequence_tokens{r, chunk}}, ref_cache, expected, logits_for::every_token);
    require_close(logits, expected, 2e-5f);

    // On a pool of the caller's, shared with a decoder-only context: the same logits.
    thread_pool pool(2);
    seq2seq_context<float> on_pool(model, pool, {.max_rows_per_pass = 5});
    auto again = on_pool.make_cache();
    again.bind_new_sequences(std::vector{on_pool.encode(src.views[1])});
    std::vector<float> pooled(logits.size());
    on_pool.forward(std::vector{sequence_tokens{again.create(), chunk}}, again, pooled, logits_for::every_token);
    require_close(pooled, logits, 1e-6f);
}

TEST_CASE("seq2seq: encoding sources in one batch equals encoding them one by one", "[model][seq2seq]") {
    const seq2seq_config config = small_config(true);
    const seq2seq_model<float> model(random_seq2seq_weights<float>(config, 5));
    seq2seq_context<float> ctx(model, {.max_rows_per_pass = 30});  // 5 + 13 in a pass, 21 in the next
    const sources src(config);
    const auto together = ctx.encode(src.views);
    for (std::size_t i = 0; i < 3; ++i) {
        const auto alone = ctx.encode(src.views[i]);
        const std::size_t n = alone->length() * config.decoder.head_dim;
        for (std::size_t l = 0; l < config.decoder.n_layers; ++l)
            for (std::size_t g = 0; g < config.decoder.n_kv_heads; ++g) {
                require_close({together[i]->keys(l, g), n}, {alone->keys(l, g), n}, 1e-5f);
                require_close({together[i]->values(l, g), n}, {alone->values(l, g), n}, 1e-5f);
            }
    }
}

TEST_CASE("seq2seq: greedy, sampling and beam search run unchanged and agree with the reference", "[model][seq2seq][decode]") {
    const seq2seq_config config = small_config(true);
    const auto weights = std::make_shared<const seq2seq_weights<float>>(random_seq2seq_weights<float>(config, 11));
    const seq2seq_model<float> model(*weights);
    seq2seq_context<float> ctx(model);
    seq2seq_reference<float> ref(weights);
    const sources src(config);
    const std::vector<std::vector<token_id>> prompts(3, std::vector<token_id>{1});
    const generation_options options{.max_new_tokens = 10, .eos = {2}};

    // One prompt per source: the i-th sequence greedy creates takes the i-th source.
    auto cache = ctx.make_cache({.capacity_tokens = 1024});
    cache.bind_new_sequences(ctx.encode(src.views));
    auto ref_cache = ref.make_cache();
    std::vector<std::shared_ptr<const source_copy<float>>> ref_sources;
    for (const auto& v : src.views) ref_sources.push_back(ref.encode(v));
    ref_cache.bind_new_sequences(ref_sources);
    const generation_result got = greedy(ctx, cache, prompts, options), want = greedy(ref, ref_cache, prompts, options);
    for (std::size_t i = 0; i < 3; ++i) CHECK(got.sequences[i].tokens == want.sequences[i].tokens);
    REQUIRE(cache.stats().blocks_used == 0);  // every sequence released

    // Sampling: the same seed draws the same tokens from the same distributions.
    cache.bind_new_sequences(ctx.encode(src.views));
    ref_cache.bind_new_sequences(ref_sources);
    const generation_options seeded{.max_new_tokens = 10, .eos = {2}, .seed = 9};
    const generation_result drawn = sample(ctx, cache, prompts, seeded), ref_drawn = sample(ref, ref_cache, prompts, seeded);
    for (std::size_t i = 0; i < 3; ++i) CHECK(drawn.sequences[i].tokens == ref_drawn.sequences[i].tokens);

    // Beam search of 4 beams per source, all three sources in one search.
    cache.bind_new_sequences(ctx.encode(src.views));
    ref_cache.bind_new_sequences(ref_sources);
    const beam_options beams{.num_beams = 4, .num_return_sequences = 2, .generation = options};
    const beam_result b = beam_search(ctx, cache, prompts, beams), rb = beam_search(ref, ref_cache, prompts, beams);
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t k = 0; k < 2; ++k) {
            CHECK(b.hypotheses[i][k].tokens == rb.hypotheses[i][k].tokens);
            CHECK(b.hypotheses[i][k].score == Approx(rb.hypotheses[i][k].score).epsilon(1e-5));
        }
}

TEST_CASE("seq2seq: MaxEnt-TS runs unchanged and agrees with the reference, shared and recomputed prefixes",
          "[model][seq2seq][decode]") {
    const seq2seq_config config = small_config(false);
    const auto weights = std::make_shared<const seq2seq_weights<float>>(random_seq2seq_weights<float>(config, 13));
    const seq2seq_model<float> model(*weights);
    seq2seq_context<float> ctx(model);
    seq2seq_reference<float> ref(weights);
    const sources src(config);
    const std::vector<token_id> prompt = {1};
    const reward_function reward = [](std::span<const token_id> x) {  // prefers sequences with many 7s
        return static_cast<double>(std::count(x.begin(), x.end(), 7)) / static_cast<double>(x.size());
    };
    for (tree_cache_policy policy : {tree_cache_policy::share, tree_cache_policy::recompute}) {
        const tree_options options{.num_rollouts = 6, .lambda = 2.0, .rollout_max_new_tokens = 6,
                                   .generation = {.max_new_tokens = 8, .eos = {2}, .seed = 5}, .cache_policy = policy};
        auto cache = ctx.make_cache({.capacity_tokens = 2048});
        cache.bind_new_sequences(std::vector{ctx.encode(src.views[1])});  // every node and rollout reads it
        auto ref_cache = ref.make_cache();
        ref_cache.bind_new_sequences(std::vector{ref.encode(src.views[1])});
        const tree_search_result a = maxent_ts(ctx, cache, prompt, reward, options);
        const tree_search_result b = maxent_ts(ref, ref_cache, prompt, reward, options);
        CHECK(a.tokens == b.tokens);
        CHECK(a.best_tokens == b.best_tokens);
        CHECK(a.root_value == Approx(b.root_value).epsilon(1e-4));
        CHECK(cache.stats().blocks_used == 0);
    }
}

TEST_CASE("seq2seq: forks share their source's cross K/V, never copy it", "[model][seq2seq][cache]") {
    const seq2seq_config config = small_config(false);
    const seq2seq_model<float> model(random_seq2seq_weights<float>(config, 2));
    seq2seq_context<float> ctx(model);
    const sources src(config);
    auto source = ctx.encode(src.views[2]);
    const cross_kv<float>* shared = source.get();
    auto cache = ctx.make_cache();
    cache.bind_new_sequences(std::vector{std::move(source)});
    const seq_id root = cache.create();
    std::vector<float> logits(13);
    ctx.forward(std::vector{sequence_tokens{root, std::vector<token_id>{1, 4}}}, cache, logits);
    std::vector<seq_id> beams;
    for (int i = 0; i < 8; ++i) beams.push_back(cache.fork(root));
    for (seq_id b : beams) REQUIRE(cache.source(b).get() == shared);
    REQUIRE(cache.source(root).use_count() == 1 + 1 + 8);  // the pending binding, the root, 8 beams
    const std::size_t used = cache.stats().blocks_used;
    REQUIRE(used == 1);  // the beams share the root's block: no self-attention K/V copied either
    for (seq_id b : beams) cache.release(b);
    REQUIRE(cache.source(root).use_count() == 2);
}

TEST_CASE("seq2seq: bad sources and unbound sequences are clear errors that change nothing", "[model][seq2seq]") {
    const seq2seq_config config = small_config(true);
    const seq2seq_model<float> model(random_seq2seq_weights<float>(config, 4));
    seq2seq_context<float> ctx(model);
    const std::vector<float> too_long(22 * 11, 0.5f), ragged(12, 0.5f), empty;
    const std::vector<token_id> tokens = {1, 2};
    CHECK_THROWS_WITH(ctx.encode(source_view<float>{{}, too_long}), Catch::Contains("22 positions, more than the model's 21"));
    CHECK_THROWS_WITH(ctx.encode(source_view<float>{{}, ragged}), Catch::Contains("not whole vectors of 11"));
    CHECK_THROWS_WITH(ctx.encode(source_view<float>{{}, empty}), Catch::Contains("is empty"));
    CHECK_THROWS_WITH(ctx.encode(source_view<float>{tokens, {}}), Catch::Contains("the model reads vectors"));
    std::vector<float> nan_value(11, 0.0f);
    nan_value[3] = std::nanf("");
    CHECK_THROWS_WITH(ctx.encode(source_view<float>{{}, nan_value}), Catch::Contains("value 3 is not finite"));

    auto cache = ctx.make_cache();
    const seq_id s = cache.create();  // bound to nothing
    std::vector<float> logits(13);
    CHECK_THROWS_WITH(ctx.forward(std::vector{sequence_tokens{s, tokens}}, cache, logits), Catch::Contains("bound to no source"));
    CHECK(cache.length(s) == 0);
    CHECK(cache.stats().blocks_used == 0);

    seq2seq_config bad = config;
    bad.source_vocab_size = 5;  // both kinds of source
    CHECK_THROWS_WITH(validated(bad), Catch::Contains("exactly one of input_dim"));
}
