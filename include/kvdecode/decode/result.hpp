#pragma once
// What decoders return: each sequence with why it stopped, and counters.

#include <cstddef>
#include <span>
#include <vector>

#include "kvdecode/core/model_config.hpp"

namespace kvdecode {

enum class stop_reason {
    eos,       // generated one of the EOS ids (included in tokens)
    length,    // reached max_new_tokens or the context length
    callback,  // on_token returned false
};

struct generated_sequence {
    std::vector<token_id> tokens;  // prompt, then generated tokens
    std::size_t prompt_length = 0;
    stop_reason reason = stop_reason::length;

    std::span<const token_id> generated() const noexcept {
        return std::span<const token_id>(tokens).subspan(prompt_length);
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
