// Prefill of one chunk of T tokens with the cached causal mask (built once, reused
// by every layer and call), against the same prefill plus building a T x T mask
// for every layer, which is what a decoder without a mask cache pays. Their
// difference is the mask's share of prefill time.

#include <benchmark/benchmark.h>

#include <vector>

#include "kvdecode/cache/mask_cache.hpp"
#include "kvdecode/model/decode_context.hpp"
#include "support/shapes.hpp"

namespace {

using namespace kvdecode;
const std::size_t chunks[] = {8, 32, 128, 512};

void prefill(benchmark::State& state, const kvbench::shape& s, std::size_t chunk, bool rebuild_masks) {
    const transformer<float> model(kvbench::packed_weights_for(s));
    decode_context<float> ctx(model, {.max_rows_per_pass = chunk});
    auto cache = model.make_cache({.capacity_tokens = chunk + 16});
    const seq_id seq = cache.create();
    const auto prompt = kvbench::tokens(chunk, s.config.vocab_size);
    const std::vector<sequence_tokens> batch = {{seq, prompt}};
    std::vector<float> logits(s.config.vocab_size);
    for (auto _ : state) {
        if (rebuild_masks)
            for (std::size_t l = 0; l < s.config.n_layers; ++l) {
                auto mask = mask_cache<float>::build(chunk);
                benchmark::DoNotOptimize(mask.data());
            }
        ctx.forward(batch, cache, logits);
        cache.truncate(seq, 0);
        benchmark::DoNotOptimize(logits.data());
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * chunk));  // prompt tokens
}

// Building one causal mask of T x T: the work a per-layer rebuild repeats.
void build_mask(benchmark::State& state, std::size_t chunk) {
    for (auto _ : state) {
        auto mask = mask_cache<float>::build(chunk);
        benchmark::DoNotOptimize(mask.data());
    }
}

}  // namespace

int main(int argc, char** argv) {
    for (const auto& s : kvbench::shapes())
        for (std::size_t t : chunks) {
            const std::string suffix = "/" + s.name + "/chunk:" + std::to_string(t);
            benchmark::RegisterBenchmark(("prefill/cached_mask" + suffix).c_str(),
                                         [&s, t](benchmark::State& st) { prefill(st, s, t, false); })
                ->Unit(benchmark::kMicrosecond);
            benchmark::RegisterBenchmark(("prefill/mask_every_layer" + suffix).c_str(),
                                         [&s, t](benchmark::State& st) { prefill(st, s, t, true); })
                ->Unit(benchmark::kMicrosecond);
        }
    for (std::size_t t : chunks)
        benchmark::RegisterBenchmark(("mask/build/chunk:" + std::to_string(t)).c_str(),
                                     [t](benchmark::State& st) { build_mask(st, t); })
            ->Unit(benchmark::kMicrosecond);
    return kvbench::run_benchmarks(argc, argv);
}
