// Greedy generation of 5 tokens for a batch of prompts, prefill included: one
// prompt; three of mixed lengths; four short and medium ones — the shape of the
// generation tables people quote. Items are generated tokens.

#include <benchmark/benchmark.h>

#include <vector>

#include "kvdecode/decode/generate.hpp"
#include "kvdecode/model/decode_context.hpp"
#include "support/shapes.hpp"

namespace {

using namespace kvdecode;

struct batch_case {
    const char* name;
    std::vector<std::size_t> prompt_lengths;
};
const batch_case cases[] = {
    {"batch1", {16}},
    {"batch3_mixed", {8, 32, 128}},
    {"batch4_short_medium", {16, 16, 64, 64}},
};

void greedy_five_tokens(benchmark::State& state, const kvbench::shape& s, const batch_case& c) {
    const transformer<float> model(kvbench::packed_weights_for(s));
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 1024});
    std::vector<std::vector<token_id>> prompts;
    for (std::size_t i = 0; i < c.prompt_lengths.size(); ++i)
        prompts.push_back(kvbench::tokens(c.prompt_lengths[i], s.config.vocab_size, i));
    const generation_options options{.max_new_tokens = 5, .eos = {}};
    std::size_t generated = 0;
    for (auto _ : state) {
        const auto result = greedy(ctx, cache, prompts, options);
        generated += result.stats.generated_tokens;
        benchmark::DoNotOptimize(result.sequences.data());
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(generated));
}

}  // namespace

int main(int argc, char** argv) {
    for (const auto& s : kvbench::shapes())
        for (const auto& c : cases)
            benchmark::RegisterBenchmark(("greedy_5_tokens/" + s.name + "/" + c.name).c_str(),
                                         [&s, &c](benchmark::State& st) { greedy_five_tokens(st, s, c); })
                ->Unit(benchmark::kMillisecond);
    return kvbench::run_benchmarks(argc, argv);
}
