#pragma once
// What every decoder is asked: how long to generate, where to stop, and who to
// tell about each token. Set with designated initializers:
//   generation_options{.max_new_tokens = 100, .eos = {2}, .seed = 7}

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kvdecode/core/model_config.hpp"

namespace kvdecode {

struct generation_options {
    std::size_t max_new_tokens = 64;  // generated tokens per sequence at most (EOS counts)
    std::size_t min_new_tokens = 0;   // EOS cannot be chosen before this many
    std::vector<token_id> eos = {2};  // any of these ends a sequence; it is returned
    std::uint64_t seed = 0;           // the sampling stream: same seed, same tokens
    // Called with (prompt index, token) for every generated token, EOS included.
    // Returning false stops that sequence after this token.
    std::function<bool(std::size_t, token_id)> on_token;
};

inline void validate(const generation_options& o, const model_config& c) {
    if (o.min_new_tokens > o.max_new_tokens)
        throw std::invalid_argument("kvdecode: min_new_tokens (" + std::to_string(o.min_new_tokens) +
                                    ") exceeds max_new_tokens (" + std::to_string(o.max_new_tokens) + ")");
    for (token_id e : o.eos)
        if (e < 0 || static_cast<std::size_t>(e) >= c.vocab_size)
            throw std::invalid_argument("kvdecode: EOS id " + std::to_string(e) + " is outside the vocabulary [0, " +
                                        std::to_string(c.vocab_size) + ")");
}

}  // namespace kvdecode
