#pragma once
// What every decoder is asked: how long to generate, where to stop, and who to
// tell about each token. Greedy and sampling take it as it is; beam search and
// MaxEnt-TS nest it as `.generation`:
//   generation_options{.max_new_tokens = 100, .eos = {2}, .seed = 7}
//   beam_options{.num_beams = 4, .generation = {.max_new_tokens = 20, .eos = {2}}}

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kvdecode/core/model_config.hpp"
#include "kvdecode/decode/detail/token_range.hpp"

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
};

inline void validate(const generation_options& o, const model_config& c) {
    if (o.min_new_tokens > o.max_new_tokens)
        throw std::invalid_argument("kvdecode: min_new_tokens (" + std::to_string(o.min_new_tokens) +
                                    ") exceeds max_new_tokens (" + std::to_string(o.max_new_tokens) + ")");
    for (token_id e : o.eos) detail::check_token(e, c.vocab_size, "EOS id");
}

}  // namespace kvdecode
