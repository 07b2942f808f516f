// The decoders allocate nothing per step: buffers are sized once per call, so a
// call's allocations do not depend on how many steps (beam search, greedy and
// sampling) or iterations (MaxEnt-TS) it runs. Counted by the replaced global
// operator new of this test program (support/allocation_counter.cpp), on a
// decode_context, after a warm-up call that builds its prefill masks.

#include <algorithm>
#include <optional>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/decode/beam_search.hpp"
#include "kvdecode/decode/cache_sizing.hpp"
#include "kvdecode/decode/generate.hpp"
#include "kvdecode/decode/maxent_ts.hpp"
#include "support/allocation_counter.hpp"
#include "support/models.hpp"

using namespace kvdecode;
using prompts_t = std::vector<std::vector<token_id>>;

namespace {

template <class Call>
std::size_t allocations_of(Call&& call) {
    const std::size_t before = kvtest::allocation_count();
    call();
    return kvtest::allocation_count() - before;
}

const std::vector<logits_processor> some_processors = {repetition_penalty{1.3f}, no_repeat_ngram{2}};

}  // namespace

TEST_CASE("beam search allocates nothing per step", "[decode][beam][allocation]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    ctx.reserve(shape.seq_len);  // the context's attention scratch, so only the decoders are counted
    const prompts_t prompts = {{1, 2, 3, 4, 5}, {6, 7}};
    for (auto policy : {beam_cache_policy::share, beam_cache_policy::copy})
        for (const auto& chain : {std::vector<logits_processor>{}, some_processors}) {
            beam_options o{.num_beams = 4, .num_return_sequences = 2, .generation = {.max_new_tokens = 40, .eos = {}},
                           .processors = chain, .cache_policy = policy};
            auto cache = model.make_cache(cache_options_for(shape, prompts, o, 8));
            beam_search(ctx, cache, prompts, o);  // warm-up
            std::size_t steps[2] = {}, allocations[2] = {};
            for (std::size_t i : {0, 1}) {
                o.generation.max_new_tokens = i == 0 ? 5 : 40;
                allocations[i] = allocations_of([&] { steps[i] = beam_search(ctx, cache, prompts, o).stats.steps; });
            }
            CAPTURE(int(policy), chain.size(), allocations[0], allocations[1]);
            REQUIRE(steps[0] == 5);  // no EOS: every search runs to its length limit
            REQUIRE(steps[1] == 40);
            REQUIRE(allocations[1] == allocations[0]);
        }
}

TEST_CASE("MaxEnt-TS allocates nothing per iteration", "[decode][tree][allocation]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    ctx.reserve(shape.seq_len);  // the context's attention scratch, so only the decoders are counted
    const std::vector<token_id> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const reward_function reward = [](std::span<const token_id> x) {
        return static_cast<double>(std::count(x.begin(), x.end(), 7)) / static_cast<double>(x.size());
    };
    for (auto mode : {tree_mode::sample, tree_mode::search})
        for (std::size_t per_batch : {1, 3}) {
            tree_options o{.num_rollouts = 40, .mode = mode, .rollout_max_new_tokens = 8,
                           .generation = {.max_new_tokens = 20, .min_new_tokens = 2, .eos = {0}, .seed = 3},
                           .processors = some_processors, .rollouts_per_batch = per_batch};
            auto cache = model.make_cache(cache_options_for(shape, prompt, o, 8));
            maxent_ts(ctx, cache, prompt, reward, o);  // warm-up
            std::size_t iterations[2] = {}, allocations[2] = {};
            for (std::size_t i : {0, 1}) {
                o.num_rollouts = i == 0 ? 6 : 40;
                allocations[i] =
                    allocations_of([&] { iterations[i] = maxent_ts(ctx, cache, prompt, reward, o).stats.rollouts; });
            }
            CAPTURE(int(mode), per_batch, allocations[0], allocations[1]);
            REQUIRE(iterations[0] == 6);
            REQUIRE(iterations[1] == 40);
            REQUIRE(allocations[1] == allocations[0]);
        }
}

TEST_CASE("greedy and sampling allocate nothing per token", "[decode][allocation]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    ctx.reserve(shape.seq_len);  // the context's attention scratch, so only the decoders are counted
    const prompts_t prompts = {{1, 2, 3}, {4, 5, 6, 7, 8}};
    generation_options o{.max_new_tokens = 40, .eos = {}, .seed = 5};
    auto cache = model.make_cache(cache_options_for(shape, prompts, o, 8));
    auto chooser = sampler::sampling().add(repetition_penalty{1.2f}).add(temperature{0.7f}).add(top_p{0.9f});
    sample(ctx, cache, prompts, o, chooser);  // warm-up
    // Log-probabilities too: their result vectors are reserved once per call.
    for (const std::optional<std::size_t> logprobs : {std::optional<std::size_t>{}, std::optional<std::size_t>{5}}) {
        o.logprobs = logprobs;
        std::size_t tokens[2] = {}, allocations[2] = {};
        for (std::size_t i : {0, 1}) {
            o.max_new_tokens = i == 0 ? 5 : 40;
            allocations[i] = allocations_of([&] {
                tokens[i] = greedy(ctx, cache, prompts, o).stats.generated_tokens;
                tokens[i] += sample(ctx, cache, prompts, o, chooser).stats.generated_tokens;
            });
        }
        CAPTURE(logprobs.has_value(), allocations[0], allocations[1]);
        REQUIRE(tokens[0] == 4 * 5);
        REQUIRE(tokens[1] == 4 * 40);
        REQUIRE(allocations[1] == allocations[0]);
    }
}
