// The smallest complete use of kvdecode: load a llama2.c checkpoint and its
// tokenizer, prefill a prompt, then decode greedily, streaming the text.
//
//   greedy_llama2c MODEL.bin TOKENIZER.bin "PROMPT" [MAX_NEW_TOKENS]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <kvdecode/kvdecode.hpp>

int main(int argc, char** argv) try {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s MODEL.bin TOKENIZER.bin PROMPT [MAX_NEW_TOKENS]\n", argv[0]);
        return 1;
    }
    const int max_new_tokens = argc > 4 ? std::stoi(argv[4]) : 64;

    // Weights are immutable and shared; the model owns a workspace; the cache is ours.
    auto weights = std::make_shared<const kvdecode::transformer_weights<float>>(
        kvdecode::read_llama2c_checkpoint<float>(argv[1]));
    const auto tok = kvdecode::tokenizer::read_llama2c(argv[2], weights->config().vocab_size);
    kvdecode::transformer<float> model(weights);
    auto cache = model.make_cache();
    const kvdecode::seq_id seq = cache.create();

    std::vector<kvdecode::token_id> input = tok.encode(argv[3]);  // BOS + prompt
    std::vector<float> logits(weights->config().vocab_size);
    kvdecode::token_id previous = kvdecode::tokenizer::bos_id;
    std::printf("%s", argv[3]);
    const auto start = std::chrono::steady_clock::now();
    int generated = 0;
    for (; generated < max_new_tokens && cache.length(seq) < weights->config().seq_len; ++generated) {
        model.forward(std::vector{kvdecode::sequence_tokens{seq, input}}, cache, logits);
        previous = input.back();
        const auto next = static_cast<kvdecode::token_id>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        if (next == tok.eos()) break;
        std::printf("%s", tok.decode_token(previous, next).c_str());
        std::fflush(stdout);
        input = {next};
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("\n");
    std::fprintf(stderr, "[%d tokens in %.3f s, %.0f tokens/s; cache blocks used: %zu]\n", generated, seconds,
                 generated / seconds, cache.stats().blocks_used);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
