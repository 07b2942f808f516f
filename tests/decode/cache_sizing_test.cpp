// cache_options_for: known answers for every decoder, and caches made with them
// that are enough for each decoder's worst case (no early EOS) on the real
// kv_cache — exactly enough for greedy decoding.

#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/decode/beam_search.hpp"
#include "kvdecode/decode/cache_sizing.hpp"
#include "kvdecode/decode/generate.hpp"
#include "kvdecode/decode/maxent_ts.hpp"
#include "support/models.hpp"

using namespace kvdecode;
using prompts_t = std::vector<std::vector<token_id>>;

namespace {

model_config small_config() {  // vocab 67, context 256
    return validated(kvtest::awkward_shapes()[0].config);
}

}  // namespace

TEST_CASE("cache_options_for: known answers", "[decode][cache_sizing]") {
    const auto c = small_config();
    SECTION("greedy and sampling: one sequence per prompt, all but the last generated token") {
        // 3 + 19 = 22 tokens: 3 blocks of 8; 10 + 19 = 29: 4 blocks.
        auto o = cache_options_for(c, prompts_t{{1, 2, 3}, std::vector<token_id>(10, 4)}, generation_options{.max_new_tokens = 20}, 8);
        REQUIRE(o.block_size == 8);
        REQUIRE(o.capacity_tokens == 7 * 8);
        REQUIRE(o.max_sequences == 2);
        // The context caps a sequence at 256 tokens.
        o = cache_options_for(c, prompts_t{std::vector<token_id>(250, 4)}, generation_options{.max_new_tokens = 1000}, 8);
        REQUIRE(o.capacity_tokens == 256);
        // Nothing generated: the prompt alone.
        o = cache_options_for(c, prompts_t{std::vector<token_id>(17, 4)}, generation_options{.max_new_tokens = 0}, 16);
        REQUIRE(o.capacity_tokens == 2 * 16);
    }
    SECTION("beam search: 2 x num_beams handles; every beam's blocks, twice with private copies") {
        beam_options o{.num_beams = 4, .generation = {.max_new_tokens = 30}};
        // 5 + 29 = 34 tokens: 5 blocks of 8 per beam.
        auto k = cache_options_for(c, prompts_t{{1, 2, 3, 4, 5}}, o, 8);
        REQUIRE(k.capacity_tokens == (4 * 5 + 4) * 8);  // and each parent's partial block copied on write
        REQUIRE(k.max_sequences == 8);
        o.cache_policy = beam_cache_policy::copy;
        k = cache_options_for(c, prompts_t{{1, 2, 3, 4, 5}, {6}}, o, 8);
        REQUIRE(k.capacity_tokens == 2 * 4 * (5 + 4) * 8);  // the second prompt: 1 + 29 = 30 tokens, 4 blocks
        REQUIRE(k.max_sequences == 16);
    }
    SECTION("MaxEnt-TS: the root, a block per expanded node, and a batch of rollouts") {
        const std::vector<token_id> prompt(9, 3);  // 2 blocks of 8
        tree_options o{.num_rollouts = 10, .rollout_max_new_tokens = 8, .generation = {.max_new_tokens = 20},
                       .rollouts_per_batch = 3};
        // 2 + 10 nodes + 3 rollouts x (1 copied + 1 block of 8 tokens).
        auto k = cache_options_for(c, prompt, o, 8);
        REQUIRE(k.capacity_tokens == (2 + 10 + 3 * 2) * 8);
        REQUIRE(k.max_sequences == 1 + 10 + 3);
        // Recomputed: the root and 3 rollouts of 9 + 19 = 28 tokens (4 blocks) each.
        o.cache_policy = tree_cache_policy::recompute;
        k = cache_options_for(c, prompt, o, 8);
        REQUIRE(k.capacity_tokens == (2 + 3 * 4) * 8);
        REQUIRE(k.max_sequences == 1 + 3);
    }
}

TEST_CASE("cache_options_for validates what the decoder would", "[decode][cache_sizing][errors]") {
    const auto c = small_config();
    const prompts_t ok = {{1, 2}};
    REQUIRE_THROWS_AS(cache_options_for(c, ok, generation_options{}, 0), std::invalid_argument);
    REQUIRE_THROWS_AS(cache_options_for(c, prompts_t{{}}, generation_options{}), std::invalid_argument);
    REQUIRE_THROWS_AS(cache_options_for(c, prompts_t{{1, 99}}, generation_options{}), std::invalid_argument);
    REQUIRE_THROWS_AS(cache_options_for(c, ok, beam_options{.num_beams = 0}), std::invalid_argument);
    REQUIRE_THROWS_AS(cache_options_for(c, prompts_t{std::vector<token_id>(256, 1)}, beam_options{}), std::invalid_argument);
    REQUIRE_THROWS_AS(cache_options_for(c, ok[0], tree_options{.num_rollouts = 0}), std::invalid_argument);
    // Counts that cannot be represented are an error, not a wrapped small cache.
    REQUIRE_THROWS_AS(cache_options_for(c, ok, beam_options{.num_beams = std::size_t{1} << 62, .num_return_sequences = 1}),
                      std::invalid_argument);
    REQUIRE_THROWS_AS(cache_options_for(c, ok[0], tree_options{.num_rollouts = ~std::size_t{0}}), std::invalid_argument);
}

TEST_CASE("a cache made by cache_options_for holds every decoder's worst case", "[decode][cache_sizing]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    for (std::size_t block : {1, 4, 16}) {
        CAPTURE(block);
        SECTION("greedy: exactly, when every sequence runs to the end") {
            const generation_options o{.max_new_tokens = 30, .eos = {}};
            const prompts_t together = {{1, 2, 3}, std::vector<token_id>(21, 5), std::vector<token_id>(200, 6)};
            auto cache = model.make_cache(cache_options_for(shape, together, o, block));
            REQUIRE(greedy(ctx, cache, together, o).stats.peak_blocks_used == cache.stats().blocks_total);
            // One sequence stops early at the context length: the bound still holds.
            const prompts_t capped = {{1, 2, 3}, std::vector<token_id>(240, 6)};
            auto capped_cache = model.make_cache(cache_options_for(shape, capped, o, block));
            REQUIRE(greedy(ctx, capped_cache, capped, o).stats.peak_blocks_used <= capped_cache.stats().blocks_total);
        }
        SECTION("beam search, shared and copied") {
            const prompts_t prompts = {{1, 2, 3, 4, 5, 6, 7}, {9}, std::vector<token_id>(230, 2)};
            for (auto policy : {beam_cache_policy::share, beam_cache_policy::copy})
                for (std::size_t beams : {1, 3, 6}) {
                    const beam_options o{.num_beams = beams, .early_stopping = beam_stopping::never,
                                         .generation = {.max_new_tokens = 40, .eos = {}}, .cache_policy = policy};
                    auto cache = model.make_cache(cache_options_for(shape, prompts, o, block));
                    CAPTURE(int(policy), beams);
                    const auto r = beam_search(ctx, cache, prompts, o);  // throws cache_full if too small
                    REQUIRE(r.stats.peak_blocks_used <= cache.stats().blocks_total);
                    REQUIRE(r.hypotheses[2][0].tokens.size() == 256);
                }
            // A short generation from a one-block prompt: the children copy the shared
            // partial block while the prompt's sequence still holds it (this ran out of
            // blocks when the bound counted the beams' own blocks only).
            for (std::size_t beams : {2, 3, 6}) {
                const beam_options o{.num_beams = beams, .generation = {.max_new_tokens = 6, .eos = {}}};
                const prompts_t short_prompt = {{1, 2, 3, 4, 5, 6, 7, 8}};
                auto cache = model.make_cache(cache_options_for(shape, short_prompt, o, block));
                CAPTURE(beams);
                const auto r = beam_search(ctx, cache, short_prompt, o);
                REQUIRE(r.stats.peak_blocks_used <= cache.stats().blocks_total);
            }
        }
        SECTION("MaxEnt-TS, shared and recomputed, batched") {
            const std::vector<token_id> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
            const reward_function reward = [](std::span<const token_id> x) { return double(x.size() % 5); };
            for (auto policy : {tree_cache_policy::share, tree_cache_policy::recompute})
                for (std::size_t batch : {1, 4, 20}) {
                    const tree_options o{.num_rollouts = 20, .rollout_max_new_tokens = 12, .rollout_temperature = 3.0f,
                                         .generation = {.max_new_tokens = 18, .eos = {}, .seed = 2},
                                         .rollouts_per_batch = batch, .cache_policy = policy};
                    auto cache = model.make_cache(cache_options_for(shape, prompt, o, block));
                    CAPTURE(int(policy), batch);
                    const auto r = maxent_ts(ctx, cache, prompt, reward, o);
                    REQUIRE(r.stats.peak_blocks_used <= cache.stats().blocks_total);
                    REQUIRE(cache.stats().sequences == 0);
                }
        }
    }
}
