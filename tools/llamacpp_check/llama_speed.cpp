// llama.cpp's decode and prefill speed on a GGUF file, to set beside kvdecode's
// bench_decode_speed in one run on one machine (F32 KV cache, CPU):
//   llama-speed MODEL THREADS [TOKENS=128] [REPEATS=5]
// prints "decode_tokens_per_s=<median> prefill_tokens_per_s=<median>": decode as one
// token per llama_decode after a 16-token prompt (contexts 16 .. 16 + TOKENS, as
// bench_decode_speed's decode/...), prefill as one call of 128 tokens.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "llama.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: llama-speed MODEL THREADS [TOKENS] [REPEATS]\n");
        return 2;
    }
    const int threads = std::atoi(argv[2]), tokens = argc > 3 ? std::atoi(argv[3]) : 128,
              repeats = argc > 4 ? std::atoi(argv[4]) : 5;
    llama_backend_init();
    llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
    auto mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model* model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        std::fprintf(stderr, "llama-speed: llama.cpp could not load %s\n", argv[1]);
        return 1;
    }
    const int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    auto cp = llama_context_default_params();
    cp.n_ctx = 512, cp.n_batch = 512, cp.n_ubatch = 512, cp.n_threads = threads, cp.n_threads_batch = threads;
    cp.type_k = GGML_TYPE_F32, cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    llama_context* ctx = llama_init_from_model(model, cp);
    llama_memory_t memory = llama_get_memory(ctx);
    std::vector<llama_token> prompt(128);
    for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<llama_token>((i * 31 + 7) % vocab);
    std::vector<double> decode_rates, prefill_rates;
    for (int r = 0; r <= repeats; ++r) {  // the first round warms up
        llama_memory_clear(memory, true);
        auto t0 = std::chrono::steady_clock::now();
        llama_decode(ctx, llama_batch_get_one(prompt.data(), 128));
        const double prefill = seconds_since(t0);
        llama_memory_clear(memory, true);
        llama_decode(ctx, llama_batch_get_one(prompt.data(), 16));
        llama_token next = 3;
        t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < tokens; ++i) {
            llama_decode(ctx, llama_batch_get_one(&next, 1));
            next = static_cast<llama_token>((next * 31 + 7) % vocab);
        }
        const double decode = seconds_since(t0);
        if (r > 0) decode_rates.push_back(tokens / decode), prefill_rates.push_back(128 / prefill);
    }
    std::printf("decode_tokens_per_s=%.1f prefill_tokens_per_s=%.1f\n", median(decode_rates), median(prefill_rates));
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
