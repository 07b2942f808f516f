#pragma once
// What decoders return: each sequence with why it stopped, and counters.

#include <cstddef>
#include <span>
#include <cstdint>
#include <vector>

#include "kvdecode/core/model_config.hpp"

namespace kvdecode {

enum class stop_reason {
    eos,       // generated one of the EOS ids (included in tokens)
    length,    // reached max_new_tokens or the context length
    callback,  // on_token returned false
};

// A token and its log-probability under the model: the log-softmax of the step's
// logits before any logits processor (what OpenAI's API reports as logprobs).
struct token_logprob {
    token_id token = -1;
    float logprob = 0;
};

struct generated_sequence {
    std::vector<token_id> tokens;  // prompt, then generated tokens
    std::size_t prompt_length = 0;
    stop_reason reason = stop_reason::length;
    std::size_t context_before = 0;  // continue_generation: tokens the sequence held before `tokens`
    // With generation_options::logprobs = K (greedy and sampling): one entry per
    // generated token, the chosen token's; and K per generated token, the most likely
    // tokens best first (fewer where the vocabulary is smaller than K).
    std::vector<token_logprob> logprobs;
    std::vector<token_logprob> top_logprobs;
    std::size_t top_k = 0;

    std::span<const token_id> generated() const noexcept {
        return std::span<const token_id>(tokens).subspan(prompt_length);
    }
    // The alternatives of generated token i (0 = the first generated token).
    std::span<const token_logprob> top_logprobs_at(std::size_t i) const noexcept {
        return std::span<const token_logprob>(top_logprobs).subspan(i * top_k, top_k);
    }
};

struct generation_stats {
    std::size_t prompt_tokens = 0;
    std::size_t generated_tokens = 0;
    std::size_t forward_calls = 0;
    double prefill_seconds = 0;  // the forward that runs the prompts
    double decode_seconds = 0;   // everything after it
    std::size_t peak_blocks_used = 0;  // KV-cache blocks in use at most (0 for caches without blocks)
};

struct generation_result {
    std::vector<generated_sequence> sequences;  // one per prompt, in prompt order
    generation_stats stats;
};

}  // namespace kvdecode
