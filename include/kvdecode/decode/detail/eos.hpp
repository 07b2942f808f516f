#pragma once
// End-of-sequence ids: whether a token ends a sequence, and keeping EOS out of
// reach before min_new_tokens (transformers' MinNewTokensLengthLogitsProcessor).

#include <algorithm>
#include <limits>
#include <span>

#include "kvdecode/core/types.hpp"

namespace kvdecode::detail {

inline bool is_eos(std::span<const token_id> eos, token_id t) noexcept {
    return std::find(eos.begin(), eos.end(), t) != eos.end();
}

// Gives every EOS id -infinity in a row of logits or log-probabilities (ids already validated).
template <class T>
void suppress_eos(std::span<T> row, std::span<const token_id> eos) noexcept {
    for (token_id e : eos) row[static_cast<std::size_t>(e)] = -std::numeric_limits<T>::infinity();
}

}  // namespace kvdecode::detail
