#pragma once
// The model shapes the benchmarks run at, with random weights made in memory from a
// fixed seed (nothing is downloaded), each built once per benchmark program; and
// run_benchmarks, the main() every suite ends with.

#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kvdecode/model/packed_weights.hpp"
#include "kvdecode/model/random_weights.hpp"

namespace kvbench {

struct shape {
    std::string name;
    kvdecode::model_config config;
};

inline kvdecode::model_config llama(std::size_t dim, std::size_t hidden, std::size_t layers, std::size_t heads,
                                    std::size_t kv_heads, std::size_t vocab) {
    kvdecode::model_config c;
    c.dim = dim, c.hidden_dim = hidden, c.n_layers = layers, c.n_heads = heads, c.n_kv_heads = kv_heads;
    c.vocab_size = vocab;
    c.seq_len = 4096;  // room for every context length the suites use (decode at 2048 + 8)
    return kvdecode::validated(c);
}

// stories260K (the llama2.c test model), and the "15M" and "110M" llama2.c shapes.
inline const std::vector<shape>& shapes() {
    static const std::vector<shape> all = {
        {"stories260K", llama(64, 172, 5, 8, 4, 512)},
        {"15M", llama(288, 768, 6, 6, 6, 32000)},
        {"110M", llama(768, 2048, 12, 12, 12, 32000)},
    };
    return all;
}

inline std::shared_ptr<const kvdecode::transformer_weights<float>> weights_for(const shape& s) {
    static std::map<std::string, std::shared_ptr<const kvdecode::transformer_weights<float>>> built;
    auto& w = built[s.name];
    if (!w) w = std::make_shared<const kvdecode::transformer_weights<float>>(kvdecode::random_weights<float>(s.config, 1));
    return w;
}

// The same weights packed for the cached transformer in a storage type, packed once
// per program and type (a transformer built from transformer_weights would repack
// them every time).
inline std::shared_ptr<const kvdecode::packed_weights<float>> packed_weights_for(
    const shape& s, kvdecode::weight_type type = kvdecode::weight_type::f32) {
    static std::map<std::string, std::shared_ptr<const kvdecode::packed_weights<float>>> built;
    auto& w = built[s.name + "/" + std::string(kvdecode::to_string(type))];
    if (!w) w = std::make_shared<const kvdecode::packed_weights<float>>(*weights_for(s), type);
    return w;
}

// Deterministic token ids for prompts and contexts.
inline std::vector<kvdecode::token_id> tokens(std::size_t n, std::size_t vocab, std::size_t salt = 0) {
    std::vector<kvdecode::token_id> t(n);
    for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<kvdecode::token_id>((i * 7919 + salt * 104729 + 1) % vocab);
    return t;
}

// Runs the benchmarks a suite's main() registered, with Google Benchmark's flags.
inline int run_benchmarks(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

}  // namespace kvbench
