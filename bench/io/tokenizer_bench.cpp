// Encoding long texts with the shipped model's tokenizer (models/kjv_tok1024.bin):
// 1,000, 8,000 and 64,000 words. The encoder merges through a priority queue, so
// time per word stays nearly flat; the quadratic scan it replaced took 28 s for
// 8,000 words.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

#include "kvdecode/core/rng.hpp"
#include "kvdecode/io/llama2c_tokenizer.hpp"
#include "support/shapes.hpp"

#ifndef KVDECODE_MODELS_DIR
#define KVDECODE_MODELS_DIR "models"
#endif

namespace {

using namespace kvdecode;

// `words` space-separated words, each one to three of the vocabulary's own pieces
// (without their spaces), with a comma or a full stop now and then: text that
// merges the way prose does, the same for every run.
std::string words_text(const tokenizer& tok, std::size_t words) {
    kvdecode::rng gen(42);
    std::string text;
    for (std::size_t w = 0; w < words; ++w) {
        if (w > 0) text += ' ';
        for (std::uint64_t parts = 1 + gen.next_u64() % 3; parts > 0; --parts) {
            const auto id = static_cast<token_id>(tokenizer::eos_id + 1 + gen.next_u64() % (tok.vocab_size() - 3));
            for (char ch : tok.piece(id))
                if (ch != ' ') text += ch;
        }
        if (gen.next_u64() % 10 == 0) text += gen.next_u64() % 2 ? "," : ".";
    }
    return text;
}

void encode(benchmark::State& state, const tokenizer& tok, std::size_t words) {
    const std::string text = words_text(tok, words);
    std::size_t tokens = 0;
    for (auto _ : state) {
        const auto ids = tok.encode(text);
        tokens = ids.size();
        benchmark::DoNotOptimize(ids.data());
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * words));  // words
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
    state.counters["tokens"] = static_cast<double>(tokens);
}

}  // namespace

int main(int argc, char** argv) {
    static const tokenizer tok = tokenizer::read_llama2c(std::string(KVDECODE_MODELS_DIR) + "/kjv_tok1024.bin");
    for (std::size_t words : {1000, 8000, 64000})
        benchmark::RegisterBenchmark(("tokenizer/encode/kjv/words:" + std::to_string(words)).c_str(),
                                     [words](benchmark::State& st) { encode(st, tok, words); })
            ->Unit(benchmark::kMillisecond);
    return kvbench::run_benchmarks(argc, argv);
}
