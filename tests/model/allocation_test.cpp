// No heap allocation inside forward() once warmed up: decode steps of one
// sequence and of a batch, forks and releases in between, with every KV cache type.
// Counted by replacing the global operator new for this test program
// (support/allocation_counter.cpp).

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "support/allocation_counter.hpp"
#include "support/models.hpp"
#include "support/stored_matrices.hpp"
#include "kvdecode/model/random_weights.hpp"
#include "kvdecode/model/seq2seq_context.hpp"

using namespace kvdecode;

TEST_CASE("forward allocates nothing after warm-up", "[model][allocation]") {
    for (const auto& shape : kvtest::awkward_shapes())
    for (kv_type kv : all_kv_types) {
        SECTION(shape.name + ", " + std::string(to_string(kv)) + " cache") {
            const transformer<float> model(kvtest::random_model(shape.config));
            decode_context<float> ctx(model, {.threads = 3, .min_work_per_thread = 1});  // every product split: the pool allocates nothing per step
            auto cache = model.make_cache({.capacity_tokens = 256, .block_size = 8, .max_sequences = 16, .storage = kv});
            const std::size_t vocab = shape.config.vocab_size;
            std::vector<float> logits(4 * vocab);
            const std::vector<token_id> prompt = {1, 2, 3, 4, 5};
            const seq_id a = cache.create();
            ctx.forward(std::vector{sequence_tokens{a, prompt}}, cache, logits);  // warm-up

            std::vector<sequence_tokens> batch;
            batch.reserve(4);
            token_id next[4] = {7, 8, 9, 10};
            const std::size_t before = kvtest::allocation_count();
            for (int step = 0; step < 20; ++step) {  // one sequence, then forks that share its prefix
                batch.clear();
                batch.push_back({a, std::span<const token_id>(next, 1)});
                ctx.forward(batch, cache, logits);
            }
            const seq_id b = cache.fork(a), c = cache.fork(a), d = cache.fork(b);
            for (int step = 0; step < 20; ++step) {
                batch.clear();
                batch.push_back({a, std::span<const token_id>(next, 1)});
                batch.push_back({b, std::span<const token_id>(next + 1, 1)});
                batch.push_back({c, std::span<const token_id>(next + 2, 1)});
                batch.push_back({d, std::span<const token_id>(next + 3, 1)});
                ctx.forward(batch, cache, logits);
            }
            cache.truncate(d, 10);
            cache.release(c);
            cache.release(d);
            REQUIRE(kvtest::allocation_count() == before);
            cache.release(b);
        }
    }
}

TEST_CASE("an encoder-decoder's forward allocates nothing after warm-up", "[model][allocation][seq2seq]") {
    seq2seq_config config;
    config.decoder = {.dim = 40, .hidden_dim = 36, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .vocab_size = 13,
                      .seq_len = 64, .shared_classifier = false};
    config.encoder_layers = 2;
    config.max_source_length = 16;
    config.input_dim = 7;
    const seq2seq_model<float> model(random_seq2seq_weights<float>(config, 1));
    seq2seq_context<float> ctx(model, {.threads = 3, .min_work_per_thread = 1});
    auto cache = ctx.make_cache({.capacity_tokens = 256, .block_size = 8, .max_sequences = 16});
    const std::vector<float> a_source(9 * 7, 0.25f), b_source(16 * 7, -0.5f);
    const std::vector<source_view<float>> sources = {{{}, a_source}, {{}, b_source}};
    const auto encoded = ctx.encode(sources);
    std::vector<float> logits(4 * 13);
    const std::vector<token_id> prompt = {1, 2, 3};
    const seq_id a = cache.create(), b = cache.create();
    cache.bind(a, encoded[0]);
    cache.bind(b, encoded[1]);
    ctx.forward(std::vector{sequence_tokens{a, prompt}, sequence_tokens{b, prompt}}, cache, logits);  // warm-up

    std::vector<sequence_tokens> batch;
    batch.reserve(4);
    token_id next[4] = {7, 8, 9, 10};
    const std::size_t before = kvtest::allocation_count();
    const seq_id c = cache.fork(a), d = cache.fork(b);
    for (int step = 0; step < 20; ++step) {
        batch.clear();
        for (std::size_t i = 0; seq_id s : {a, b, c, d}) batch.push_back({s, std::span<const token_id>(next + i++, 1)});
        ctx.forward(batch, cache, logits);
    }
    cache.release(c);
    cache.release(d);
    REQUIRE(kvtest::allocation_count() == before);
}

TEST_CASE("forward of stored mixed-type weights allocates nothing after warm-up", "[model][allocation][stored]") {
    // Separate norm gains, biases, a Q8_0 embedding looked up by rows, q/k stacked
    // with v in another type (two segments), tied classifier.
    model_config c;
    c.dim = 64, c.hidden_dim = 96, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.vocab_size = 61, c.seq_len = 128;
    c.qkv_bias = true;
    const auto original = kvtest::random_model(c, 3);
    const stored_weights s = kvtest::to_stored_weights(
        *original, [](const std::string& name, std::size_t) { return name == "wv" ? weight_type::f16 : weight_type::q8_0; });
    const transformer<float> model(std::make_shared<const packed_weights<float>>(s));
    REQUIRE(model.weights().wqkv(0).segments().size() == 2);
    decode_context<float> ctx(model, {.threads = 3, .min_work_per_thread = 1});
    auto cache = model.make_cache({.capacity_tokens = 256, .block_size = 8});
    std::vector<float> logits(c.vocab_size);
    const std::vector<token_id> prompt = {1, 2, 3, 4, 5};
    const seq_id a = cache.create();
    ctx.forward(std::vector{sequence_tokens{a, prompt}}, cache, logits);  // warm-up
    token_id next = 7;
    std::vector<sequence_tokens> batch;
    batch.reserve(1);
    const std::size_t before = kvtest::allocation_count();
    for (int step = 0; step < 30; ++step) {
        batch.clear();
        batch.push_back({a, std::span<const token_id>(&next, 1)});
        ctx.forward(batch, cache, logits);
        next = static_cast<token_id>(kvtest::argmax<float>(logits));
    }
    REQUIRE(kvtest::allocation_count() == before);
}
