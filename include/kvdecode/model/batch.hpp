#pragma once
// What one forward call computes: new tokens for each of several sequences, and
// which logits come back. Shared by every model so they validate alike.

#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>

#include "kvdecode/cache/kv_cache.hpp"
#include "kvdecode/core/model_config.hpp"

namespace kvdecode {

// New tokens to append to one sequence.
struct sequence_tokens {
    seq_id seq = 0;
    std::span<const token_id> tokens;
};

enum class logits_for {
    last_token,  // one row per batch entry: the logits after its last new token
    every_token, // one row per new token, entries in batch order
};

// Rows of logits a forward call writes.
inline std::size_t logits_rows(std::span<const sequence_tokens> batch, logits_for which) noexcept {
    if (which == logits_for::last_token) return batch.size();
    std::size_t rows = 0;
    for (const auto& entry : batch) rows += entry.tokens.size();
    return rows;
}

// Checks a batch against the model and the sequences' current lengths before
// anything is changed. `length_of(seq)` must itself throw for an unknown sequence.
template <class LengthOf>
void validate_batch(std::span<const sequence_tokens> batch, const model_config& config, LengthOf&& length_of,
                    std::size_t logits_size, logits_for which) {
    auto fail = [](const std::string& what) { throw std::invalid_argument("kvdecode: forward: " + what); };
    for (std::size_t i = 0; i < batch.size(); ++i) {
        const sequence_tokens& entry = batch[i];
        const std::size_t length = length_of(entry.seq);
        if (entry.tokens.empty()) fail("batch entry " + std::to_string(i) + " has no tokens");
        for (token_id t : entry.tokens)
            if (t < 0 || static_cast<std::size_t>(t) >= config.vocab_size)
                fail("token id " + std::to_string(t) + " is outside the vocabulary [0, " +
                     std::to_string(config.vocab_size) + ")");
        if (length + entry.tokens.size() > config.seq_len)
            fail("sequence " + std::to_string(entry.seq) + " would reach " +
                 std::to_string(length + entry.tokens.size()) + " tokens, beyond the context length " +
                 std::to_string(config.seq_len));
        for (std::size_t j = 0; j < i; ++j)
            if (batch[j].seq == entry.seq) fail("sequence " + std::to_string(entry.seq) + " appears twice in one batch");
    }
    const std::size_t needed = logits_rows(batch, which) * config.vocab_size;
    if (logits_size < needed)
        fail("logits span holds " + std::to_string(logits_size) + " values, " + std::to_string(needed) +
             " are needed");
}

}  // namespace kvdecode
