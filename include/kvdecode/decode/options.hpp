#pragma once
// What every decoder is asked: how long to generate, where to stop, and who to
// tell about each token. Greedy and sampling take it as it is; beam search and
// MaxEnt-TS nest it as `.generation`:
//   generation_options{.max_new_tokens = 100, .eos = {2}, .seed = 7}
//   beam_options{.num_beams = 4, .generation = {.max_new_tokens = 20, .eos = {2}}}

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "kvdecode/core/model_config.hpp"
#include "kvdecode/decode/detail/token_range.hpp"
#include "kvdecode/decode/result.hpp"

namespace kvdecode {

struct generation_options {
    std::size_t max_new_tokens = 64;  // generated tokens per sequence at most (EOS counts); MaxEnt-TS: the depth limit
    std::size_t min_new_tokens = 0;   // EOS cannot be chosen before this many
    std::vector<token_id> eos = {2};  // any of these ends a sequence; it is returned
    std::uint64_t seed = 0;           // the sampling stream: same seed, same tokens (beam search draws nothing)
    // Called with (prompt index, token) for every generated token, EOS included.
    // Returning false stops that sequence after this token. Greedy and sampling
    // only: beam and tree search know their sequences only at the end and refuse
    // it (as transformers refuses a streamer with beam search).
    std::function<bool(std::size_t, token_id)> on_token;
    // Log-probabilities (greedy and sampling): with logprobs = K, every generated
    // token's log-probability under the model (log-softmax of the logits before any
    // processor) and the K most likely tokens' are kept in the result
    // (generated_sequence::logprobs, top_logprobs) and given to on_logprobs as each
    // token is chosen, before on_token: (prompt index, the chosen token, the K best).
    // K = 0 keeps the chosen token's alone. Costs a pass over the vocabulary per token.
    std::optional<std::size_t> logprobs;
    std::function<void(std::size_t, token_logprob, std::span<const token_logprob>)> on_logprobs;
};

inline void validate(const generation_options& o, const model_config& c) {
    if (o.min_new_tokens > o.max_new_tokens)
        throw std::invalid_argument("kvdecode: min_new_tokens (" + std::to_string(o.min_new_tokens) +
                                    ") exceeds max_new_tokens (" + std::to_string(o.max_new_tokens) + ")");
    for (token_id e : o.eos) detail::check_token(e, c.vocab_size, "EOS id");
    if (o.logprobs && *o.logprobs > c.vocab_size)
        throw std::invalid_argument("kvdecode: logprobs asks for the " + std::to_string(*o.logprobs) +
                                    " most likely tokens of a vocabulary of " + std::to_string(c.vocab_size));
    if (o.on_logprobs && !o.logprobs) throw std::invalid_argument("kvdecode: on_logprobs is set but logprobs is not");
}

}  // namespace kvdecode
