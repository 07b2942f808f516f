#pragma once
// The cross-attention keys and values of one encoded source, for every decoder layer:
// projected once from the encoder's output, then read-only. Every decoder sequence
// bound to the source (its beams, rollouts and forks) reads this one copy, held by
// shared_ptr<const cross_kv>; nothing is copied per sequence.

#include <cstddef>

#include "kvdecode/core/aligned_buffer.hpp"

namespace kvdecode {

template <class T>
class cross_kv {
public:
    cross_kv(std::size_t layers, std::size_t kv_heads, std::size_t length, std::size_t head_dim)
        : layers_(layers), kv_heads_(kv_heads), length_(length), head_dim_(head_dim),
          values_(layers * 2 * kv_heads * length * head_dim) {}

    std::size_t length() const noexcept { return length_; }  // source positions
    std::size_t bytes() const noexcept { return values_.size() * sizeof(T); }

    // (length, head_dim): the keys, or values, of kv head g in decoder layer `layer`.
    const T* keys(std::size_t layer, std::size_t g) const noexcept { return values_.data() + offset(layer, 0, g); }
    const T* values(std::size_t layer, std::size_t g) const noexcept { return values_.data() + offset(layer, 1, g); }
    T* keys(std::size_t layer, std::size_t g) noexcept { return values_.data() + offset(layer, 0, g); }
    T* values(std::size_t layer, std::size_t g) noexcept { return values_.data() + offset(layer, 1, g); }

private:
    std::size_t offset(std::size_t layer, std::size_t kv, std::size_t g) const noexcept {
        return ((layer * 2 + kv) * kv_heads_ + g) * length_ * head_dim_;
    }

    std::size_t layers_, kv_heads_, length_, head_dim_;
    aligned_buffer<T> values_;  // (layers, 2: keys then values, kv_heads, length, head_dim)
};

}  // namespace kvdecode
