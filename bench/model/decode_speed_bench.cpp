// How close the cached transformer runs to the machine's limits.
//   decode/...: one token through the model (context 16 to 144), as a fraction of the
//     bandwidth limit: tokens/s / (read bandwidth / bytes read per token), the bytes
//     being the weights' and the KV cache's (layers x 2 x kv_heads x head_dim x
//     context x element size);
//   decode/110M/TYPE/...: the same with the weights stored as TYPE (bf16, q8_0, ...),
//     quantised at load from the same random weights;
//   decode/110M/TYPE/context:C/...: the same at context C (C - 7 to C + 8), where at
//     long contexts the cache is most of the bytes; TYPE_kv_bf16 with a bfloat16 cache;
//   step/...: one forward of W sequences of one token each (W beams or rollouts
//     forked from one 128-token prompt), to compare with W = 1; step/110M/q8_0/...:
//     the same with Q8_0 weights;
//   prefill/...: a 128-token chunk, in GFLOP/s, beside gemm_eigen/...: the same
//     projections as Eigen matrix products (single thread, the rate to reach).
// Bandwidth is measured in the same program (support/bandwidth.hpp) during each decode run.

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvdecode/model/decode_context.hpp"
#include "support/bandwidth.hpp"
#include "support/shapes.hpp"

namespace {

using namespace kvdecode;

// A sequence prefilled with `prefix` tokens, one per shape, type and length, kept for
// the program's life: a prefill of 2040 tokens takes seconds, and Google Benchmark calls
// decode() several times per repetition.
struct prefilled {
    kv_cache<float> cache;
    seq_id seq;
};

prefilled& prefilled_for(const kvbench::shape& s, weight_type type, kv_type kv, const transformer<float>& model,
                         std::size_t prefix, std::size_t longest, std::size_t threads) {
    static std::map<std::string, std::unique_ptr<prefilled>> built;
    auto& p = built[s.name + "/" + std::string(to_string(type)) + "/" + std::string(to_string(kv)) + "/" +
                    std::to_string(prefix)];
    if (!p) {
        auto cache = model.make_cache({.capacity_tokens = longest, .storage = kv});
        const seq_id seq = cache.create();
        decode_context<float> ctx(model, {.threads = threads});
        std::vector<float> logits(s.config.vocab_size);
        ctx.forward(std::vector{sequence_tokens{seq, kvbench::tokens(prefix, s.config.vocab_size)}}, cache, logits);
        p = std::make_unique<prefilled>(prefilled{std::move(cache), seq});
    }
    return *p;
}

// context 0: contexts 16 .. 144 (cycled); otherwise context - 7 .. context + 8.
void decode(benchmark::State& state, const kvbench::shape& s, std::size_t threads,
            weight_type type = weight_type::f32, std::size_t context = 0, kv_type kv = kv_type::f32) {
    const transformer<float> model(kvbench::packed_weights_for(s, type));
    decode_context<float> ctx(model, {.threads = threads, .max_rows_per_pass = 16});
    const std::size_t prompt = context ? context - 8 : 16, longest = context ? context + 8 : 144;
    std::optional<kv_cache<float>> own;
    kv_cache<float>* cache;
    seq_id seq;
    std::vector<float> logits(s.config.vocab_size);
    if (context) {
        prefilled& p = prefilled_for(s, type, kv, model, prompt, longest, threads);
        cache = &p.cache, seq = p.seq;
        cache->truncate(seq, prompt);
    } else {
        own.emplace(model.make_cache({.capacity_tokens = 256}));
        cache = &*own, seq = cache->create();
        ctx.forward(std::vector{sequence_tokens{seq, kvbench::tokens(prompt, s.config.vocab_size)}}, *cache, logits);
    }
    ctx.reserve(longest);  // scores for every key before the timed steps
    std::vector<token_id> next = {3};
    const std::vector<sequence_tokens> batch = {{seq, next}};
    // K and V of one context token over all layers: layers x 2 x kv_heads x head_dim x
    // the cache's element size. A step reads the whole context's.
    const kv_cache_stats st = cache->stats();
    const double kv_bytes_per_position = static_cast<double>(st.bytes_per_block) / static_cast<double>(cache->block_size());
    const double weight_bytes = static_cast<double>(model.weights().bytes_per_token());
    // The machines are shared and the bandwidth a neighbour leaves drifts from minute
    // to minute, so the limit is measured during the run: a 1 GiB read pass before it
    // and after every 100 ms of decoding, outside the timed steps; their median.
    std::vector<double> bandwidths = {kvbench::measure_read_bandwidth(threads, 1)};
    double since_probe = 0, total_seconds = 0, positions = 0;
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        ctx.forward(batch, *cache, logits);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        state.SetIterationTime(seconds);
        total_seconds += seconds;
        positions += static_cast<double>(cache->length(seq));  // attention read every position, the new one too
        next[0] = static_cast<token_id>((next[0] * 31 + 7) % s.config.vocab_size);
        if (cache->length(seq) == longest) cache->truncate(seq, prompt);
        benchmark::DoNotOptimize(logits.data());
        if ((since_probe += seconds) > 0.1) {
            bandwidths.push_back(kvbench::measure_read_bandwidth(threads, 1));
            since_probe = 0;
        }
    }
    std::sort(bandwidths.begin(), bandwidths.end());
    const double bandwidth = bandwidths[bandwidths.size() / 2];
    const double tokens = static_cast<double>(state.iterations());
    const double kv_bytes = kv_bytes_per_position * positions / tokens;  // per token, mean over the steps
    const double bytes = weight_bytes + kv_bytes;
    state.SetItemsProcessed(state.iterations());  // tokens
    state.counters["threads"] = static_cast<double>(threads);
    state.counters["context"] = positions / tokens;
    state.counters["tokens_per_s"] = tokens / total_seconds;
    state.counters["weight_MB_per_token"] = weight_bytes / 1e6;
    state.counters["kv_MB_per_token"] = kv_bytes / 1e6;
    state.counters["MB_per_token"] = bytes / 1e6;
    state.counters["bandwidth_GBps"] = bandwidth / 1e9;
    state.counters["bandwidth_probes"] = static_cast<double>(bandwidths.size());
    state.counters["limit_tokens_per_s"] = bandwidth / bytes;
    state.counters["fraction_of_limit"] = (tokens / total_seconds) * bytes / bandwidth;
}

void step(benchmark::State& state, const kvbench::shape& s, std::size_t width, std::size_t threads,
          weight_type type = weight_type::f32) {
    const transformer<float> model(kvbench::packed_weights_for(s, type));
    decode_context<float> ctx(model, {.threads = threads, .max_rows_per_pass = 32});
    const std::size_t prompt = 128;
    auto cache = model.make_cache({.capacity_tokens = prompt + 32 * (width + 1)});
    const seq_id root = cache.create();
    std::vector<float> logits(width * s.config.vocab_size);
    ctx.forward(std::vector{sequence_tokens{root, kvbench::tokens(prompt, s.config.vocab_size)}}, cache, logits);
    std::vector<seq_id> seqs;
    std::vector<std::vector<token_id>> next;
    std::vector<sequence_tokens> batch;
    for (std::size_t i = 0; i < width; ++i) {
        seqs.push_back(cache.fork(root));
        next.push_back({static_cast<token_id>(i + 3)});
    }
    for (std::size_t i = 0; i < width; ++i) batch.push_back({seqs[i], next[i]});
    for (auto _ : state) {
        ctx.forward(batch, cache, logits);
        if (cache.length(seqs[0]) == prompt + 16)
            for (seq_id q : seqs) cache.truncate(q, prompt);
        benchmark::DoNotOptimize(logits.data());
    }
    state.SetItemsProcessed(state.iterations());  // steps
    state.counters["width"] = static_cast<double>(width);
    state.counters["threads"] = static_cast<double>(threads);
}

// Multiply-adds x 2 of the projections of `tokens` rows, all layers.
double projection_flops(const model_config& c, std::size_t tokens) {
    const double per_row = static_cast<double>(c.qkv_dim() * c.dim + c.dim * c.q_dim() + 2 * c.hidden_dim * c.dim +
                                                c.dim * c.hidden_dim);
    return 2.0 * per_row * static_cast<double>(tokens * c.n_layers);
}

// Everything a prefill of `tokens` computes usefully: projections, causal attention, one row of logits.
double prefill_flops(const model_config& c, std::size_t tokens) {
    const double t = static_cast<double>(tokens);
    const double attention = 2.0 * 2.0 * (t * (t + 1) / 2) * static_cast<double>(c.q_dim() * c.n_layers);
    return projection_flops(c, tokens) + attention + 2.0 * static_cast<double>(c.vocab_size * c.dim);
}

void prefill(benchmark::State& state, const kvbench::shape& s, std::size_t tokens, std::size_t threads) {
    const transformer<float> model(kvbench::packed_weights_for(s));
    decode_context<float> ctx(model, {.threads = threads});
    auto cache = model.make_cache({.capacity_tokens = tokens + 16});
    const seq_id seq = cache.create();
    const auto prompt = kvbench::tokens(tokens, s.config.vocab_size);
    std::vector<float> logits(s.config.vocab_size);
    const std::vector<sequence_tokens> batch = {{seq, prompt}};
    for (auto _ : state) {
        ctx.forward(batch, cache, logits);
        cache.truncate(seq, 0);
        benchmark::DoNotOptimize(logits.data());
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * tokens));
    state.counters["threads"] = static_cast<double>(threads);
    state.counters["GFLOPs"] = benchmark::Counter(prefill_flops(s.config, tokens) / 1e9,
                                                  benchmark::Counter::kIsIterationInvariantRate);
}

// The prefill's projections as Eigen GEMMs on row-major weights: Eigen's rate on
// exactly these shapes, one thread (this build links no OpenMP).
void gemm_eigen(benchmark::State& state, const kvbench::shape& s, std::size_t tokens) {
    using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const model_config& c = s.config;
    const auto w = kvbench::weights_for(s);
    const auto t = static_cast<Eigen::Index>(tokens);
    auto map = [](const float* p, std::size_t rows, std::size_t cols) {
        return Eigen::Map<const Matrix>(p, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
    };
    Matrix x = Matrix::Random(t, static_cast<Eigen::Index>(c.dim)), qkv(t, static_cast<Eigen::Index>(c.qkv_dim())),
           attended = Matrix::Random(t, static_cast<Eigen::Index>(c.q_dim())),
           gate_up(t, static_cast<Eigen::Index>(2 * c.hidden_dim)), hidden = Matrix::Random(t, static_cast<Eigen::Index>(c.hidden_dim));
    for (auto _ : state) {
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            qkv.noalias() = x * map(w->wqkv(l), c.qkv_dim(), c.dim).transpose();
            x.noalias() += attended * map(w->wo(l), c.dim, c.q_dim()).transpose();
            gate_up.noalias() = x * map(w->w13(l), 2 * c.hidden_dim, c.dim).transpose();
            x.noalias() += hidden * map(w->w2(l), c.dim, c.hidden_dim).transpose();
        }
        benchmark::DoNotOptimize(x.data());
        benchmark::DoNotOptimize(qkv.data());
        benchmark::DoNotOptimize(gate_up.data());
    }
    state.counters["GFLOPs"] =
        benchmark::Counter(projection_flops(c, tokens) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

int main(int argc, char** argv) {
    const char* all = std::getenv("KVDECODE_BENCH_ALL_TYPES");
    const bool all_types = all != nullptr && std::string_view(all) == "1";
    for (const auto& s : kvbench::shapes()) {
        for (std::size_t t : kvbench::thread_counts())
            benchmark::RegisterBenchmark(("decode/" + s.name + "/threads:" + std::to_string(t)).c_str(),
                                         [&s, t](benchmark::State& st) { decode(st, s, t); })
                ->UseManualTime()
                ->Unit(benchmark::kMicrosecond);
        if (s.name == "110M")
            for (weight_type type : all_weight_types)
                // Q2_K, Q3_K and Q5_K only with KVDECODE_BENCH_ALL_TYPES=1: their reference
                // quantisers take about half a minute each on the 110M model.
                if (type != weight_type::f32 && (all_types || (type != weight_type::q2_k && type != weight_type::q3_k &&
                                                               type != weight_type::q5_k)))
                    for (std::size_t t : kvbench::thread_counts())  // every count: the thread-scaling table
                        benchmark::RegisterBenchmark(("decode/" + s.name + "/" + std::string(to_string(type)) +
                                                      "/threads:" + std::to_string(t)).c_str(),
                                                     [&s, t, type](benchmark::State& st) { decode(st, s, t, type); })
                            ->UseManualTime()
                            ->Unit(benchmark::kMicrosecond);
        if (s.name == "110M")
            // Decode at long contexts: there the KV cache, not the weights, is most of the bytes;
            // a bfloat16 cache halves them (named TYPE_kv_bf16, beside TYPE's float32 cache).
            for (weight_type type : {weight_type::f32, weight_type::q8_0, weight_type::q4_0})
                for (kv_type kv : {kv_type::f32, kv_type::bf16})
                    for (std::size_t context : {64, 512, 2048})
                        for (std::size_t t : kvbench::thread_counts())
                            if (t <= 2 && !(type == weight_type::f32 && kv != kv_type::f32))
                                benchmark::RegisterBenchmark(
                                    ("decode/" + s.name + "/" + std::string(to_string(type)) +
                                     (kv == kv_type::f32 ? "" : "_kv_" + std::string(to_string(kv))) + "/context:" +
                                     std::to_string(context) + "/threads:" + std::to_string(t)).c_str(),
                                    [&s, t, type, context, kv](benchmark::State& st) { decode(st, s, t, type, context, kv); })
                                    ->UseManualTime()
                                    ->Unit(benchmark::kMicrosecond);
        for (std::size_t t : kvbench::thread_counts())
            if (t <= 2)
                for (std::size_t width : {1, 2, 4, 8, 10, 16})
                    benchmark::RegisterBenchmark(
                        ("step/" + s.name + "/rows:" + std::to_string(width) + "/threads:" + std::to_string(t)).c_str(),
                        [&s, width, t](benchmark::State& st) { step(st, s, width, t); })
                        ->Unit(benchmark::kMicrosecond);
        if (s.name == "110M")  // beams and rollouts with Q8_0 weights
            for (std::size_t t : kvbench::thread_counts())
                if (t <= 2)
                    for (std::size_t width : {1, 2, 4, 8, 10, 16})
                        benchmark::RegisterBenchmark(("step/" + s.name + "/q8_0/rows:" + std::to_string(width) +
                                                      "/threads:" + std::to_string(t)).c_str(),
                                                     [&s, width, t](benchmark::State& st) {
                                                         step(st, s, width, t, weight_type::q8_0);
                                                     })
                            ->Unit(benchmark::kMicrosecond);
        for (std::size_t t : kvbench::thread_counts())
            benchmark::RegisterBenchmark(("prefill/" + s.name + "/tokens:128/threads:" + std::to_string(t)).c_str(),
                                         [&s, t](benchmark::State& st) { prefill(st, s, 128, t); })
                ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("gemm_eigen/" + s.name + "/tokens:128/threads:1").c_str(),
                                     [&s](benchmark::State& st) { gemm_eigen(st, s, 128); })
            ->Unit(benchmark::kMillisecond);
    }
    return kvbench::run_benchmarks(argc, argv);
}
