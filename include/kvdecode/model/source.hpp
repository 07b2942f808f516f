#pragma once
// One source sequence for an encoder-decoder model, as the caller holds it: token ids
// (a text source) or vectors (image patches, audio frames: length x input_dim values,
// row-major). Checked against the model's config before anything is computed.

#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>

#include "kvdecode/core/seq2seq_config.hpp"
#include "kvdecode/core/types.hpp"

namespace kvdecode {

template <class T>
struct source_view {
    std::span<const token_id> tokens;  // token sources
    std::span<const T> vectors;        // vector sources: (length, input_dim)
};

// Positions of a valid source; throws std::invalid_argument naming what is wrong.
template <class T>
std::size_t checked_source_length(const source_view<T>& s, const seq2seq_config& c, std::size_t index = 0) {
    auto fail = [&](const std::string& what) {
        throw std::invalid_argument("kvdecode: source " + std::to_string(index) + ": " + what);
    };
    std::size_t length = 0;
    if (c.vector_sources()) {
        if (!s.tokens.empty()) fail("the model reads vectors, the source gives token ids");
        if (s.vectors.size() % c.input_dim != 0)
            fail(std::to_string(s.vectors.size()) + " values are not whole vectors of " + std::to_string(c.input_dim));
        length = s.vectors.size() / c.input_dim;
        for (std::size_t i = 0; i < s.vectors.size(); ++i)
            if (!std::isfinite(s.vectors[i])) fail("value " + std::to_string(i) + " is not finite");
    } else {
        if (!s.vectors.empty()) fail("the model reads token ids, the source gives vectors");
        length = s.tokens.size();
        for (token_id t : s.tokens)
            if (t < 0 || static_cast<std::size_t>(t) >= c.source_vocab_size)
                fail("token id " + std::to_string(t) + " is outside the source vocabulary [0, " +
                     std::to_string(c.source_vocab_size) + ")");
    }
    if (length == 0) fail("is empty");
    if (length > c.max_source_length)
        fail("has " + std::to_string(length) + " positions, more than the model's " + std::to_string(c.max_source_length));
    return length;
}

}  // namespace kvdecode
