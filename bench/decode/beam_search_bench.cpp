// One beam-search step against one greedy step, and against the naive baseline
// that gives every beam its own full cache copied at each reorder. A prompt of
// 128 tokens (shared by every beam), then 32 generated tokens with no EOS (every search runs its full
// length); time per step = search time / steps, and the peak KV-cache memory.

#include <benchmark/benchmark.h>

#include <vector>

#include "kvdecode/decode/beam_search.hpp"
#include "kvdecode/decode/generate.hpp"
#include "kvdecode/model/decode_context.hpp"
#include "support/shapes.hpp"

namespace {

using namespace kvdecode;
const std::size_t widths[] = {1, 2, 4, 5, 8, 10, 16};
constexpr std::size_t prompt_length = 128, new_tokens = 32;

const kvbench::shape& shape_named(const std::string& name) {
    for (const auto& s : kvbench::shapes())
        if (s.name == name) return s;
    throw std::invalid_argument(name);
}

void beam(benchmark::State& state, const kvbench::shape& s, std::size_t width, beam_cache_policy policy) {
    const transformer<float> model(kvbench::packed_weights_for(s));
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = (width + 1) * (prompt_length + new_tokens + 16) * 2,
                                   .max_sequences = 2 * width + 2});
    const std::vector<std::vector<token_id>> prompts = {kvbench::tokens(prompt_length, s.config.vocab_size)};
    const beam_options options{.num_beams = width, .generation = {.max_new_tokens = new_tokens, .eos = {}}, .cache_policy = policy};
    std::size_t steps = 0, peak_blocks = 0;
    for (auto _ : state) {
        const auto r = beam_search(ctx, cache, prompts, options);
        steps += r.stats.steps;
        peak_blocks = std::max(peak_blocks, r.stats.peak_blocks_used);
    }
    // Forward steps per search (the time per step is the search time divided by this).
    state.counters["steps"] = static_cast<double>(steps) / static_cast<double>(state.iterations());
    state.counters["peak_kv_MiB"] = static_cast<double>(peak_blocks * cache.stats().bytes_per_block) / (1 << 20);
}

void greedy_steps(benchmark::State& state, const kvbench::shape& s) {
    const transformer<float> model(kvbench::packed_weights_for(s));
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 2 * (prompt_length + new_tokens + 16)});
    const std::vector<std::vector<token_id>> prompts = {kvbench::tokens(prompt_length, s.config.vocab_size)};
    std::size_t steps = 0, peak_blocks = 0;
    for (auto _ : state) {
        const auto r = greedy(ctx, cache, prompts, {.max_new_tokens = new_tokens, .eos = {}});
        steps += r.stats.forward_calls;
        peak_blocks = std::max(peak_blocks, r.stats.peak_blocks_used);
    }
    // Forward steps per search (the time per step is the search time divided by this).
    state.counters["steps"] = static_cast<double>(steps) / static_cast<double>(state.iterations());
    state.counters["peak_kv_MiB"] = static_cast<double>(peak_blocks * cache.stats().bytes_per_block) / (1 << 20);
}

}  // namespace

int main(int argc, char** argv) {
    for (const char* name : {"stories260K", "110M"}) {
        const auto& s = shape_named(name);
        benchmark::RegisterBenchmark(("beam/" + s.name + "/greedy").c_str(),
                                     [&s](benchmark::State& st) { greedy_steps(st, s); })
            ->Unit(benchmark::kMillisecond);
        for (std::size_t w : widths) {
            const std::string suffix = "/" + s.name + "/beams:" + std::to_string(w);
            benchmark::RegisterBenchmark(("beam/shared" + suffix).c_str(), [&s, w](benchmark::State& st) {
                beam(st, s, w, beam_cache_policy::share);
            })->Unit(benchmark::kMillisecond);
            benchmark::RegisterBenchmark(("beam/copied" + suffix).c_str(), [&s, w](benchmark::State& st) {
                beam(st, s, w, beam_cache_policy::copy);
            })->Unit(benchmark::kMillisecond);
        }
    }
    return kvbench::run_benchmarks(argc, argv);
}
