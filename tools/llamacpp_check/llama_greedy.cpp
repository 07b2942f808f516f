// llama.cpp's greedy decoding of a GGUF file, the oracle of check.sh: the settings of
// ../shared/fixtures/gguf (CPU, 1 thread, n_ctx 256, F32 KV cache, no flash attention;
// the whole prompt in one llama_decode, then one token per call; argmax, lowest id on a tie).
//   llama-greedy MODEL N PROMPT...
// prints one line per prompt: "prompt ids;generated ids;top-2 logit margin of each step".
// Built against a llama.cpp checkout outside this repository (CMakeLists.txt here).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "llama.h"

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: llama-greedy MODEL N PROMPT...\n");
        return 2;
    }
    llama_backend_init();
    llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
    auto mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model* model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        std::fprintf(stderr, "llama-greedy: llama.cpp could not load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab* vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    const int n_predict = std::atoi(argv[2]);
    for (int a = 3; a < argc; ++a) {
        auto cp = llama_context_default_params();
        cp.n_ctx = 256; cp.n_batch = 256; cp.n_ubatch = 256; cp.n_threads = 1; cp.n_threads_batch = 1;
        cp.type_k = GGML_TYPE_F32; cp.type_v = GGML_TYPE_F32;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        llama_context* ctx = llama_init_from_model(model, cp);
        std::vector<llama_token> toks(512);
        const int n = llama_tokenize(vocab, argv[a], (int)std::strlen(argv[a]), toks.data(), 512, true, false);
        toks.resize(n);
        for (int i = 0; i < n; ++i) std::printf("%s%d", i ? " " : "", toks[i]);
        std::printf(";");
        llama_batch batch = llama_batch_get_one(toks.data(), n);
        std::vector<float> margins;
        llama_token next = 0;  // the batch of one points at it
        for (int step = 0; step < n_predict; ++step) {
            if (llama_decode(ctx, batch) != 0) { std::printf("DECODE FAILED"); break; }
            const float* logits = llama_get_logits_ith(ctx, -1);
            int best = 0;
            for (int i = 1; i < n_vocab; ++i) if (logits[i] > logits[best]) best = i;
            float second = -1e30f;
            for (int i = 0; i < n_vocab; ++i) if (i != best) second = std::max(second, logits[i]);
            margins.push_back(logits[best] - second);
            std::printf("%s%d", step ? " " : "", best);
            next = best;
            if (llama_vocab_is_eog(vocab, best)) break;
            batch = llama_batch_get_one(&next, 1);
        }
        std::printf(";");
        for (size_t i = 0; i < margins.size(); ++i) std::printf("%s%.4g", i ? " " : "", margins[i]);
        std::printf("\n");
        llama_free(ctx);
    }
    llama_model_free(model);
    return 0;
}
