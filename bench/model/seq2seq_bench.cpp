// The encoder-decoder's cache against recomputation, at the digits reader's shape
// (dim 128, 4 encoder and 3 decoder layers, 4 heads on 2 kv heads, vocabulary 12, 7x7
// patches of 1 to 5 digits: 16 to 80 source positions), random weights:
//   seq2seq/encode/batch:B: the encoder and every layer's cross K/V for B sources
//     (lengths 16, 32, 48, 64, 80 in turn): paid once per source, apart from the steps;
//   seq2seq/steps/length:L/batch:B/cache: L decode steps of B sequences (one token
//     each, EOS never chosen: the length is forced), self-attention K/V cached;
//   .../recompute: the same tokens, each step recomputing every sequence's whole prefix
//     through the decoder (no self-attention cache; the cross K/V still computed once);
//   seq2seq/samples/batch:B/threads:T: whole samples (encode + greedy decode of 6 tokens)
//     per second, 64 samples of 1 to 5 digits in calls of B sources.

#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "kvdecode/decode/generate.hpp"
#include "kvdecode/model/random_weights.hpp"
#include "kvdecode/model/seq2seq_context.hpp"

namespace {

using namespace kvdecode;

seq2seq_config digits_shape() {
    seq2seq_config c;
    c.decoder = {.dim = 128, .hidden_dim = 384, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .vocab_size = 12,
                 .seq_len = 128, .shared_classifier = false};
    c.encoder_layers = 4;
    c.max_source_length = 80;
    c.input_dim = 49;
    return c;
}

const seq2seq_model<float>& model() {
    static const seq2seq_model<float> m(random_seq2seq_weights<float>(digits_shape(), 1));
    return m;
}

// B sources of 16, 32, 48, 64, 80 patches in turn, pixel-like values in [0, 1].
struct sources {
    std::vector<std::vector<float>> data;
    std::vector<source_view<float>> views;
    explicit sources(std::size_t batch) {
        for (std::size_t i = 0; i < batch; ++i) {
            std::vector<float> v(16 * (i % 5 + 1) * 49);
            for (std::size_t j = 0; j < v.size(); ++j) v[j] = static_cast<float>((j * 37 + i * 11) % 256) / 255.0f;
            data.push_back(std::move(v));
        }
        for (const auto& d : data) views.push_back({.vectors = d});
    }
};

void encode(benchmark::State& state, std::size_t batch) {
    seq2seq_context<float> ctx(model());
    const sources src(batch);
    for (auto _ : state) benchmark::DoNotOptimize(ctx.encode(src.views));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));  // sources
}

void steps(benchmark::State& state, std::size_t length, std::size_t batch, bool cached) {
    seq2seq_context<float> ctx(model());
    const sources src(batch);
    auto cache = ctx.make_cache({.capacity_tokens = batch * 128, .max_sequences = batch + 1});
    const auto encoded = ctx.encode(src.views);
    std::vector<seq_id> seqs;
    for (std::size_t i = 0; i < batch; ++i) {
        seqs.push_back(cache.create());
        cache.bind(seqs.back(), encoded[i]);
    }
    std::vector<float> logits(batch * 12);
    std::vector<std::vector<token_id>> tokens(batch, std::vector<token_id>(length + 1, 10));  // BOS, then the choices
    std::vector<sequence_tokens> step(batch);
    for (auto _ : state) {
        for (seq_id s : seqs) cache.truncate(s, 0);
        for (std::size_t t = 0; t < length; ++t) {
            for (std::size_t i = 0; i < batch; ++i) {
                if (!cached) cache.truncate(seqs[i], 0);
                step[i] = cached ? sequence_tokens{seqs[i], std::span(tokens[i]).subspan(t, 1)}
                                 : sequence_tokens{seqs[i], std::span(tokens[i]).first(t + 1)};
            }
            ctx.forward(step, cache, logits);
            for (std::size_t i = 0; i < batch; ++i) {  // the best token but EOS (11): the length is forced
                const float* row = logits.data() + i * 12;
                token_id best = 0;
                for (token_id v = 1; v < 11; ++v) best = row[v] > row[best] ? v : best;
                tokens[i][t + 1] = best;
            }
        }
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * length * batch));  // tokens
    state.counters["length"] = static_cast<double>(length);
    state.counters["batch"] = static_cast<double>(batch);
}

// 64 samples per iteration (1 to 5 digits in turn), in calls of `batch` sources each.
void samples(benchmark::State& state, std::size_t batch, std::size_t threads) {
    constexpr std::size_t per_iteration = 64;
    seq2seq_context<float> ctx(model(), {.threads = threads});
    const sources src(per_iteration);
    auto cache = ctx.make_cache({.capacity_tokens = batch * 16, .max_sequences = batch + 1});
    const std::vector<std::vector<token_id>> prompts(batch, std::vector<token_id>{10});
    const generation_options options{.max_new_tokens = 6, .min_new_tokens = 6, .eos = {11}};
    for (auto _ : state)
        for (std::size_t first = 0; first < per_iteration; first += batch) {
            cache.bind_new_sequences(ctx.encode(std::span(src.views).subspan(first, batch)));
            benchmark::DoNotOptimize(greedy(ctx, cache, prompts, options));
        }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * per_iteration));  // samples
}

}  // namespace

int main(int argc, char** argv) {
    for (std::size_t batch : {1, 32})
        benchmark::RegisterBenchmark(("seq2seq/encode/batch:" + std::to_string(batch)).c_str(),
                                     [batch](benchmark::State& st) { encode(st, batch); })
            ->Unit(benchmark::kMicrosecond);
    for (std::size_t batch : {1, 32})
        for (std::size_t length : {5, 10, 20, 30, 50, 80})
            for (bool cached : {true, false})
                benchmark::RegisterBenchmark(("seq2seq/steps/length:" + std::to_string(length) + "/batch:" +
                                              std::to_string(batch) + (cached ? "/cache" : "/recompute")).c_str(),
                                             [=](benchmark::State& st) { steps(st, length, batch, cached); })
                    ->Unit(benchmark::kMicrosecond);
    for (std::size_t threads : {1, 2})
        for (std::size_t batch : {1, 64})
            benchmark::RegisterBenchmark(("seq2seq/samples/batch:" + std::to_string(batch) + "/threads:" +
                                          std::to_string(threads)).c_str(),
                                         [=](benchmark::State& st) { samples(st, batch, threads); })
                ->Unit(benchmark::kMicrosecond);
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
