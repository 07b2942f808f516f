#pragma once
// Causal masks for prefill chunks, built once per chunk length and then shared by
// every layer, head and call. Row i (the chunk's i-th new token) may see chunk
// columns j <= i: entries are 0 there and -infinity above the diagonal. Keys that
// were already in the cache before the chunk are visible to every row, so only the
// chunk's own square of columns ever needs the mask.

#include <cstddef>
#include <limits>
#include <unordered_map>

#include "kvdecode/core/aligned_buffer.hpp"

namespace kvdecode {

template <class T>
class mask_cache {
public:
    // The (chunk, chunk) row-major mask. Builds it on the first request for this length.
    const T* get(std::size_t chunk) {
        auto it = masks_.find(chunk);
        if (it == masks_.end()) it = masks_.emplace(chunk, build(chunk)).first;
        return it->second.data();
    }

    // How many masks have been built (one per distinct chunk length requested).
    std::size_t builds() const noexcept { return masks_.size(); }

    static aligned_buffer<T> build(std::size_t chunk) {
        aligned_buffer<T> mask(chunk * chunk);  // zero-initialised
        for (std::size_t i = 0; i < chunk; ++i)
            for (std::size_t j = i + 1; j < chunk; ++j) mask[i * chunk + j] = -std::numeric_limits<T>::infinity();
        return mask;
    }

private:
    std::unordered_map<std::size_t, aligned_buffer<T>> masks_;
};

}  // namespace kvdecode
