// What the KV cache buys: the time to generate one token at context length L,
// with the cache (one new row through the model, attention over L cached keys)
// and with the no-cache reference model (the whole L+1 tokens recomputed).
// Each iteration appends one token, then rolls the sequence back to L.

#include <benchmark/benchmark.h>

#include <vector>

#include "kvdecode/model/decode_context.hpp"
#include "kvdecode/model/reference_model.hpp"
#include "kvdecode/model/decode_context.hpp"
#include "support/shapes.hpp"

namespace {

using namespace kvdecode;
const std::size_t context_lengths[] = {1, 5, 10, 20, 30, 50, 80, 128, 256, 512};

template <class Model>
void decode_one_token(benchmark::State& state, Model& model, const kvbench::shape& s, std::size_t context) {
    auto cache = model.make_cache({.capacity_tokens = context + 16});
    const seq_id seq = cache.create();
    const auto prefix = kvbench::tokens(context, s.config.vocab_size);
    std::vector<float> logits(s.config.vocab_size);
    model.forward(std::vector{sequence_tokens{seq, prefix}}, cache, logits);
    const std::vector<token_id> next = {3};
    const std::vector<sequence_tokens> batch = {{seq, next}};
    for (auto _ : state) {
        model.forward(batch, cache, logits);
        cache.truncate(seq, context);
        benchmark::DoNotOptimize(logits.data());
    }
    state.SetItemsProcessed(state.iterations());  // tokens generated
    state.counters["context"] = static_cast<double>(context);
}

}  // namespace

int main(int argc, char** argv) {
    for (const auto& s : kvbench::shapes())
        for (std::size_t L : context_lengths) {
            const std::string suffix = "/" + s.name + "/context:" + std::to_string(L);
            benchmark::RegisterBenchmark(("kv_cache/cached" + suffix).c_str(),
                                         [&s, L](benchmark::State& st) {
                                             const transformer<float> model(kvbench::weights_for(s));
                                             decode_context<float> ctx(model);
                                             decode_one_token(st, ctx, s, L);
                                         })
                ->Unit(benchmark::kMicrosecond);
            benchmark::RegisterBenchmark(("kv_cache/reference" + suffix).c_str(),
                                         [&s, L](benchmark::State& st) {
                                             reference_model<float> model(kvbench::weights_for(s));
                                             decode_one_token(st, model, s, L);
                                         })
                ->Unit(benchmark::kMicrosecond);
        }
    return kvbench::run_benchmarks(argc, argv);
}
