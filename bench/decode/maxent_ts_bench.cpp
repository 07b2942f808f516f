// Time per MaxEnt-TS search for the configurations people use (5, 10, 20 rollouts
// x 30, 50, 100 rollout tokens), with the shared-prefix cache and with the
// baseline that recomputes every rollout from the prompt, rollouts one at a time
// and batched (all rollouts of a search in one batch). Prompt of 32 tokens, no EOS,
// depth limit twice the rollout length. Counters: tokens computed per search.

#include <benchmark/benchmark.h>

#include <vector>

#include "kvdecode/decode/maxent_ts.hpp"
#include "kvdecode/model/decode_context.hpp"
#include "support/shapes.hpp"

namespace {

using namespace kvdecode;

void search(benchmark::State& state, const kvbench::shape& s, std::size_t rollouts, std::size_t tokens,
            tree_cache_policy policy, bool batched) {
    const transformer<float> model(kvbench::packed_weights_for(s));
    decode_context<float> ctx(model);
    const std::size_t block = 16;
    auto cache = model.make_cache({.capacity_tokens = (rollouts + 4) * (2 * tokens + 64 + 2 * block) + 64 * block,
                                   .block_size = block, .max_sequences = 4 * rollouts + 8});
    const auto prompt = kvbench::tokens(32, s.config.vocab_size);
    const reward_function reward = [](std::span<const token_id> x) {
        return static_cast<double>(std::count(x.begin(), x.end(), 7));
    };
    const tree_options options{.num_rollouts = rollouts, .rollout_max_new_tokens = tokens,
                               .generation = {.max_new_tokens = 2 * tokens, .eos = {}, .seed = 1},
                               .rollouts_per_batch = batched ? rollouts : 1, .cache_policy = policy};
    std::size_t computed = 0, from_cache = 0, forwards = 0;
    for (auto _ : state) {
        const auto r = maxent_ts(ctx, cache, prompt, reward, options);
        computed += r.stats.tokens_computed;
        from_cache += r.stats.tokens_from_cache;
        forwards += r.stats.forward_calls;
    }
    const auto n = static_cast<double>(state.iterations());
    state.counters["forward_calls"] = static_cast<double>(forwards) / n;
    state.counters["tokens_computed"] = static_cast<double>(computed) / n;
    state.counters["tokens_from_cache"] = static_cast<double>(from_cache) / n;
}

void register_search(const kvbench::shape& s, std::size_t r, std::size_t t) {
    for (auto policy : {tree_cache_policy::share, tree_cache_policy::recompute})
        for (bool batched : {false, true}) {
            const std::string name = "tree/" + s.name + "/rollouts:" + std::to_string(r) + "/tokens:" + std::to_string(t) +
                                     (policy == tree_cache_policy::share ? "/shared" : "/recompute") +
                                     (batched ? "/batched" : "/one_at_a_time");
            benchmark::RegisterBenchmark(name.c_str(), [&s, r, t, policy, batched](benchmark::State& st) {
                search(st, s, r, t, policy, batched);
            })->Unit(benchmark::kMillisecond);
        }
}

}  // namespace

int main(int argc, char** argv) {
    for (const auto& s : kvbench::shapes()) {
        if (s.name == "stories260K") {
            for (std::size_t r : {5, 10, 20})
                for (std::size_t t : {30, 50, 100}) register_search(s, r, t);
        } else if (s.name == "110M") {
            register_search(s, 10, 50);  // the configuration people quote; the full grid takes minutes per row here
        }
    }
    return kvbench::run_benchmarks(argc, argv);
}
