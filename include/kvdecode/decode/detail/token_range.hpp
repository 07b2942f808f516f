#pragma once
// The one check that a token id names a vocabulary entry, with the message every
// decoder gives for a bad one.

#include <cstddef>
#include <stdexcept>
#include <string>

#include "kvdecode/core/types.hpp"

namespace kvdecode::detail {

inline bool in_vocabulary(token_id t, std::size_t vocab_size) noexcept {
    return t >= 0 && static_cast<std::size_t>(t) < vocab_size;
}

// Throws std::invalid_argument "kvdecode: <what> <t>, outside the vocabulary [0, V)",
// e.g. what = "EOS id" or "prompt 2 holds token id".
inline void check_token(token_id t, std::size_t vocab_size, const std::string& what) {
    if (!in_vocabulary(t, vocab_size))
        throw std::invalid_argument("kvdecode: " + what + " " + std::to_string(t) + ", outside the vocabulary [0, " +
                                    std::to_string(vocab_size) + ")");
}

}  // namespace kvdecode::detail
