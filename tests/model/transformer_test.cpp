// The cached transformer against the no-cache reference model, on random-weight
// models at awkward shapes: decode steps, prefill chunks, batches, passes.

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/model/language_model.hpp"
#include "kvdecode/model/decode_context.hpp"
#include "support/models.hpp"

using namespace kvdecode;
using kvtest::max_relative_error;

static_assert(language_model<decode_context<float>>);
static_assert(language_model<reference_model<float>>);
static_assert(language_model<decode_context<double>>);

namespace {
std::vector<token_id> some_tokens(std::size_t n, std::size_t vocab, std::uint64_t seed) {
    rng gen(seed);
    std::vector<token_id> t(n);
    for (auto& x : t) x = static_cast<token_id>(gen.next_u64() % vocab);
    return t;
}
}  // namespace

TEST_CASE("cached decode equals the reference for 200 steps at awkward shapes", "[model]") {
    for (const auto& shape : kvtest::awkward_shapes()) {
        SECTION(shape.name) {
            const auto w = kvtest::random_model(shape.config);
            kvtest::check_decode_matches_reference(w, some_tokens(5, shape.config.vocab_size, 1), 200);
        }
    }
}

TEST_CASE("cached prefill chunks equal the reference at awkward shapes", "[model]") {
    for (const auto& shape : kvtest::awkward_shapes()) {
        SECTION(shape.name) {
            const auto w = kvtest::random_model(shape.config);
            const auto tokens = some_tokens(160, shape.config.vocab_size, 2);
            kvtest::check_chunks_match_reference(w, tokens, {160});           // one chunk
            kvtest::check_chunks_match_reference(w, tokens, {1, 2, 3, 16, 17, 33, 5});
            kvtest::check_chunks_match_reference(w, tokens, {64, 1, 40});
        }
    }
}

// A 16-bit cache against the reference rounding K and V as the cache stores them, in
// decode steps and in prefill chunks that read the cache through widened blocks. The
// same arithmetic but for the order of float additions, which also puts a few K/V
// values on the other side of a rounding boundary than the reference's: one 16-bit
// step on one value. Hence 5e-4, not the float32 cache's 1e-4: the worst seen over
// these shapes is 1.24e-4 (f16), while not rounding at all is off by 2.3e-4 (f16) and
// 1.6e-3 (bf16) (the next test); attention_test.cpp checks the cache's reads exactly.
TEST_CASE("a float16 or bfloat16 KV cache equals the reference with K/V rounded alike", "[model][kv_type]") {
    constexpr double tolerance = 5e-4;
    for (kv_type kv : {kv_type::f16, kv_type::bf16}) {
        for (const auto& shape : kvtest::awkward_shapes()) {
            SECTION(std::string(to_string(kv)) + ", " + shape.name) {
                const auto w = kvtest::random_model(shape.config);
                const transformer<float> model(w);
                kvtest::check_decode_matches_reference(model, w, some_tokens(5, shape.config.vocab_size, 1), 60, tolerance, kv);
                const auto tokens = some_tokens(100, shape.config.vocab_size, 2);
                kvtest::check_chunks_match_reference(model, w, tokens, {100}, tolerance, kv);
                kvtest::check_chunks_match_reference(model, w, tokens, {1, 17, 3, 33, 5}, tolerance, kv);
            }
        }
    }
}

// What rounding K/V costs against float32: the logits move by a fraction of the
// 16-bit types' relative steps (f16 2^-11 = 4.9e-4, bf16 2^-8 = 3.9e-3); measured 2.3e-4
// and 1.6e-3 of the largest logit on this model.
TEST_CASE("a 16-bit KV cache moves logits by about its rounding step", "[model][kv_type]") {
    const auto shape = kvtest::awkward_shapes()[1].config;
    const auto w = kvtest::random_model(shape, 4);
    const auto tokens = some_tokens(120, shape.vocab_size, 5);
    const auto exact = kvtest::reference_logits(w, tokens);
    const auto f16 = kvtest::reference_logits(w, tokens, kv_type::f16);
    const auto bf16 = kvtest::reference_logits(w, tokens, kv_type::bf16);
    const double scale = exact.cwiseAbs().maxCoeff();
    const double f16_error = (f16 - exact).cwiseAbs().maxCoeff() / scale, bf16_error = (bf16 - exact).cwiseAbs().maxCoeff() / scale;
    CAPTURE(f16_error, bf16_error);
    CHECK(f16_error > 0);
    CHECK(f16_error < 2e-3);
    CHECK(bf16_error < 2e-2);
    CHECK(bf16_error > f16_error);
}

TEST_CASE("a double cache stores f32 only", "[model][kv_type][errors]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<double> model(kvtest::random_model<double>(shape));
    REQUIRE_THROWS_WITH(model.make_cache({.storage = kv_type::bf16}), Catch::Contains("bf16 needs float activations"));
    REQUIRE_THROWS_WITH(reference_model<double>(kvtest::random_model<double>(shape), kv_type::f16),
                        Catch::Contains("needs float activations"));
}

TEST_CASE("the float64 model agrees with the float32 model", "[model]") {
    const auto shape = kvtest::awkward_shapes()[2].config;
    const auto w32 = kvtest::random_model<float>(shape, 9);
    const auto w64 = kvtest::random_model<double>(shape, 9);
    const auto tokens = some_tokens(40, shape.vocab_size, 3);
    kvtest::check_chunks_match_reference(w64, tokens, {7}, 1e-10);
    const auto a = kvtest::reference_logits(w32, tokens);
    const auto b = kvtest::reference_logits(w64, tokens);
    REQUIRE((a.cast<double>() - b).cwiseAbs().maxCoeff() < 1e-4);
}

TEST_CASE("the reference model's incremental forward equals its one-pass logits", "[model]") {
    const auto shape = kvtest::awkward_shapes()[1].config;
    const auto w = kvtest::random_model(shape);
    const auto tokens = some_tokens(12, shape.vocab_size, 4);
    const auto all = kvtest::reference_logits(w, tokens);
    reference_model<float> ref(w);
    auto history = ref.make_cache();
    const auto seq = history.create();
    std::vector<float> logits(shape.vocab_size);
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        ref.forward(std::vector{sequence_tokens{seq, std::span(tokens.data() + i, 1)}}, history, logits);
        // Products of different row counts may sum in a different order: equal to rounding.
        const auto row = all.row(Eigen::Index(i));
        REQUIRE(max_relative_error<float, float>(logits, std::span<const float>(row.data(), shape.vocab_size)) <= 1e-6);
    }
}

TEST_CASE("one batched forward equals running each sequence alone", "[model]") {
    const auto shape = kvtest::awkward_shapes()[1].config;
    const std::size_t vocab = shape.vocab_size;
    const auto w = kvtest::random_model(shape);
    const std::vector<std::vector<token_id>> prompts = {some_tokens(7, vocab, 5), some_tokens(1, vocab, 6),
                                                        some_tokens(23, vocab, 7)};
    // Alone: each prompt in its own cache, then 10 greedy steps.
    std::vector<std::vector<std::vector<float>>> alone(prompts.size());
    std::vector<std::vector<token_id>> continuation(prompts.size());
    for (std::size_t p = 0; p < prompts.size(); ++p) {
        const transformer<float> model(w);
        decode_context<float> ctx(model);
        auto cache = model.make_cache();
        const auto seq = cache.create();
        std::vector<float> logits(vocab);
        std::vector<token_id> next = prompts[p];
        for (int step = 0; step < 10; ++step) {
            ctx.forward(std::vector{sequence_tokens{seq, next}}, cache, logits);
            alone[p].push_back(logits);
            next = {kvtest::argmax<float>(logits)};
            continuation[p].push_back(next[0]);
        }
    }
    // Together: one forward for the three prefills, then one per step for all three.
    const transformer<float> model(w);
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 256, .block_size = 8});
    std::vector<seq_id> seqs = {cache.create(), cache.create(), cache.create()};
    std::vector<float> logits(3 * vocab);
    std::vector<std::vector<token_id>> next = prompts;
    for (int step = 0; step < 10; ++step) {
        std::vector<sequence_tokens> batch;
        for (std::size_t p = 0; p < 3; ++p) batch.push_back({seqs[p], next[p]});
        ctx.forward(batch, cache, logits);
        for (std::size_t p = 0; p < 3; ++p) {
            CAPTURE(step, p);
            const std::span<const float> row(logits.data() + p * vocab, vocab);
            REQUIRE(max_relative_error<float, float>(row, alone[p][step]) <= 1e-6);
            REQUIRE(kvtest::argmax<float>(row) == continuation[p][step]);
            next[p] = {continuation[p][step]};
        }
    }
}

TEST_CASE("a batch longer than one pass is split into passes with the same result", "[model]") {
    const auto shape = kvtest::awkward_shapes()[3].config;
    const std::size_t vocab = shape.vocab_size;
    const auto w = kvtest::random_model(shape);
    const std::vector<std::vector<token_id>> prompts = {some_tokens(7, vocab, 8), some_tokens(3, vocab, 9),
                                                        some_tokens(12, vocab, 10)};
    for (logits_for which : {logits_for::last_token, logits_for::every_token}) {
        std::vector<std::vector<float>> results;
        for (std::size_t rows_per_pass : {0, 5, 1}) {
            const transformer<float> model(w);
            decode_context<float> ctx(model, {.max_rows_per_pass = rows_per_pass});
            auto cache = model.make_cache();
            std::vector<sequence_tokens> batch;
            for (const auto& p : prompts) batch.push_back({cache.create(), p});
            std::vector<float> logits(logits_rows(batch, which) * vocab);
            ctx.forward(batch, cache, logits, which);
            results.push_back(logits);
        }
        REQUIRE(max_relative_error<float, float>(results[1], results[0]) <= 1e-6);
        REQUIRE(max_relative_error<float, float>(results[2], results[0]) <= 1e-6);
    }
}

TEST_CASE("interleaved RoPE equals rotate-half RoPE on correspondingly permuted weights", "[model]") {
    auto shape = kvtest::awkward_shapes()[3].config;  // multi-query: q and k permuted with different head counts
    shape.rope = rope_layout::interleaved;
    const auto original = random_weights<float>(shape, 11);
    model_config hf = shape;
    hf.rope = rope_layout::rotate_half;
    transformer_weights<float> rotated(hf);
    {
        // Copy every tensor, permuting q and k rows: llama2.c's pair (2p, 2p+1) becomes HF's (p, p + d/2).
        auto copy = [](std::span<const float> from, std::span<float> to) { std::copy(from.begin(), from.end(), to.begin()); };
        auto src = [&](const float* p, std::size_t n) { return std::span<const float>(p, n); };
        const auto& c = original.config();
        const std::size_t d = c.head_dim;
        auto permute = [&](const float* from, std::span<float> to, std::size_t heads) {
            for (std::size_t h = 0; h < heads; ++h)
                for (std::size_t p = 0; p < d / 2; ++p)
                    for (std::size_t half = 0; half < 2; ++half)
                        std::copy_n(from + (h * d + 2 * p + half) * c.dim, c.dim,
                                    to.data() + (h * d + half * d / 2 + p) * c.dim);
        };
        copy(src(original.token_embedding(), c.vocab_size * c.dim), rotated.token_embedding());
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            copy(src(original.rms_att(l), c.dim), rotated.rms_att(l));
            permute(original.wq(l), rotated.wq(l), c.n_heads);
            permute(original.wk(l), rotated.wk(l), c.n_kv_heads);
            copy(src(original.wv(l), c.kv_dim() * c.dim), rotated.wv(l));
            copy(src(original.wo(l), c.dim * c.q_dim()), rotated.wo(l));
            copy(src(original.rms_ffn(l), c.dim), rotated.rms_ffn(l));
            copy(src(original.w1(l), c.hidden_dim * c.dim), rotated.w1(l));
            copy(src(original.w2(l), c.dim * c.hidden_dim), rotated.w2(l));
            copy(src(original.w3(l), c.hidden_dim * c.dim), rotated.w3(l));
        }
        copy(src(original.rms_final(), c.dim), rotated.rms_final());
        copy(src(original.classifier(), c.vocab_size * c.dim), rotated.separate_classifier());
    }
    const auto tokens = some_tokens(30, shape.vocab_size, 12);
    const auto a = kvtest::reference_logits(std::make_shared<const transformer_weights<float>>(original), tokens);
    const auto b = kvtest::reference_logits(std::make_shared<const transformer_weights<float>>(std::move(rotated)), tokens);
    REQUIRE((a - b).cwiseAbs().maxCoeff() < 1e-4);
}

TEST_CASE("prefill masks are built once per chunk length and never for decode steps", "[model][mask]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    auto cache = model.make_cache();
    std::vector<float> logits(shape.vocab_size);
    const auto a = cache.create(), b = cache.create();
    const auto seven = some_tokens(7, shape.vocab_size, 13);
    ctx.forward(std::vector{sequence_tokens{a, seven}}, cache, logits);
    REQUIRE(ctx.masks_built() == 1);  // every layer and head of that call shared it
    ctx.forward(std::vector{sequence_tokens{b, seven}}, cache, logits);
    REQUIRE(ctx.masks_built() == 1);  // reused by the next call
    for (int step = 0; step < 5; ++step)
        ctx.forward(std::vector{sequence_tokens{a, std::span(seven.data(), 1)}}, cache, logits);
    REQUIRE(ctx.masks_built() == 1);  // decode steps use no mask
    ctx.forward(std::vector{sequence_tokens{b, std::span(seven.data(), 3)}}, cache, logits);
    REQUIRE(ctx.masks_built() == 2);
}

TEST_CASE("a rejected forward leaves the cache exactly as it was", "[model][errors]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 64, .block_size = 8});
    std::vector<float> logits(2 * shape.vocab_size);
    const auto a = cache.create(), b = cache.create();
    const auto prompt = some_tokens(10, shape.vocab_size, 14);
    ctx.forward(std::vector{sequence_tokens{a, prompt}}, cache, logits);
    const auto before = cache.stats();

    auto unchanged = [&] {
        const auto now = cache.stats();
        REQUIRE(cache.length(a) == 10);
        REQUIRE(cache.length(b) == 0);
        REQUIRE(now.blocks_used == before.blocks_used);
        REQUIRE(now.blocks_copied == before.blocks_copied);
    };
    const std::vector<token_id> bad = {1, static_cast<token_id>(shape.vocab_size)};
    const std::vector<token_id> negative = {-1};
    const std::vector<token_id> empty;
    const auto too_long = some_tokens(shape.seq_len, shape.vocab_size, 15);
    const auto too_many_blocks = some_tokens(60, shape.vocab_size, 16);

    REQUIRE_THROWS_AS(ctx.forward(std::vector{sequence_tokens{b, prompt}, sequence_tokens{a, bad}}, cache, logits),
                      std::invalid_argument);
    unchanged();
    REQUIRE_THROWS_AS(ctx.forward(std::vector{sequence_tokens{a, negative}}, cache, logits), std::invalid_argument);
    REQUIRE_THROWS_AS(ctx.forward(std::vector{sequence_tokens{b, empty}}, cache, logits), std::invalid_argument);
    REQUIRE_THROWS_AS(ctx.forward(std::vector{sequence_tokens{a, too_long}}, cache, logits), std::invalid_argument);
    REQUIRE_THROWS_AS(ctx.forward(std::vector{sequence_tokens{99, prompt}}, cache, logits), std::invalid_argument);
    REQUIRE_THROWS_AS(ctx.forward(std::vector{sequence_tokens{b, prompt}, sequence_tokens{b, prompt}}, cache, logits),
                      std::invalid_argument);
    REQUIRE_THROWS_AS(ctx.forward(std::vector{sequence_tokens{b, prompt}}, cache, std::span(logits.data(), 3)),
                      std::invalid_argument);
    unchanged();
    REQUIRE_THROWS_AS(ctx.forward(std::vector{sequence_tokens{b, prompt}, sequence_tokens{a, too_many_blocks}}, cache,
                                    logits),
                      cache_full);
    unchanged();
    // And it still works afterwards.
    ctx.forward(std::vector{sequence_tokens{b, prompt}}, cache, logits);
    REQUIRE(cache.length(b) == 10);
}
