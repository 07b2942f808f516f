#pragma once
// An encoder-decoder model, immutable after construction like transformer (and under
// the same thread contract, model/transformer.hpp): the packed weights and the RoPE
// tables of source and target positions. Its cache is a kv_cache for the decoder's
// self-attention whose sequences are bound to encoded sources (seq2seq_cache).
// Decode with a seq2seq_context (model/seq2seq_context.hpp).

#include <cstddef>
#include <memory>

#include "kvdecode/cache/cross_kv.hpp"
#include "kvdecode/cache/kv_cache.hpp"
#include "kvdecode/cache/source_bound.hpp"
#include "kvdecode/core/seq2seq_config.hpp"
#include "kvdecode/model/rope_table.hpp"
#include "kvdecode/model/seq2seq_weights.hpp"

namespace kvdecode {

// Self-attention K/V per decoder sequence, each sequence bound to its source's cross_kv.
template <class T>
using seq2seq_cache = source_bound<kv_cache<T>, cross_kv<T>>;

template <class T>
class seq2seq_model {
public:
    using scalar_type = T;
    using cache_type = seq2seq_cache<T>;

    explicit seq2seq_model(const seq2seq_weights<T>& weights, weight_type type = weight_type::f32)
        : weights_(std::make_shared<const packed_seq2seq_weights<T>>(weights, type)),
          encoder_rope_(weights_->config().encoder()), decoder_rope_(weights_->config().decoder) {}

    // The decoder's shape: what decoders see (target vocabulary and positions).
    const model_config& config() const noexcept { return weights_->config().decoder; }
    const seq2seq_config& seq2seq() const noexcept { return weights_->config(); }
    const packed_seq2seq_weights<T>& weights() const noexcept { return *weights_; }
    const rope_table<T>& encoder_rope() const noexcept { return encoder_rope_; }
    const rope_table<T>& decoder_rope() const noexcept { return decoder_rope_; }
    cache_type make_cache(kv_cache_options options = {}) const { return cache_type(kv_cache<T>(config(), options)); }

private:
    std::shared_ptr<const packed_seq2seq_weights<T>> weights_;
    rope_table<T> encoder_rope_, decoder_rope_;
};

}  // namespace kvdecode
