#pragma once
// The Llama-family transformer as an immutable model: a validated config, the weights
// packed for the decode kernels, and the RoPE tables. Nothing in it changes after
// construction.
//
// Thread contract (what may be shared, what must not):
//   - A transformer (and the packed_weights it holds) is immutable: any number of
//     threads may use one transformer at once, through const references.
//   - A decode_context (model/decode_context.hpp) holds everything a forward pass
//     writes: workspace, masks, scratch, and the thread pool it runs on. One thread
//     uses a context at a time.
//   - A kv_cache belongs to one decoding call at a time: it is not locked.
//   - A thread_pool runs one parallel job at a time: contexts that share a pool must
//     not run at the same time.
// So: one transformer, and per decoding thread one decode_context and one cache.

#include <cstddef>
#include <memory>

#include "kvdecode/cache/kv_cache.hpp"
#include "kvdecode/core/model_config.hpp"
#include "kvdecode/model/packed_weights.hpp"
#include "kvdecode/model/rope_table.hpp"
#include "kvdecode/model/weights.hpp"

namespace kvdecode {

template <class T>
class transformer {
public:
    using scalar_type = T;
    using cache_type = kv_cache<T>;

    // Packs the weights into `type` (the row-major copy may be dropped afterwards):
    // f32 keeps them unquantised in T; f16, bf16 and q8_0 convert at load (float
    // only). The RMSNorm gains are folded into the products unless `gains` says otherwise.
    explicit transformer(const transformer_weights<T>& weights, weight_type type = weight_type::f32,
                         norm_gains gains = norm_gains::folded)
        : transformer(std::make_shared<const packed_weights<T>>(weights, type, gains)) {}
    explicit transformer(const std::shared_ptr<const transformer_weights<T>>& weights,
                         weight_type type = weight_type::f32, norm_gains gains = norm_gains::folded)
        : transformer(*weights, type, gains) {}
    // Shares weights packed once between several models.
    explicit transformer(std::shared_ptr<const packed_weights<T>> weights)
        : weights_(std::move(weights)), rope_(weights_->config()) {}

    const model_config& config() const noexcept { return weights_->config(); }
    const packed_weights<T>& weights() const noexcept { return *weights_; }
    const std::shared_ptr<const packed_weights<T>>& shared_weights() const noexcept { return weights_; }
    const rope_table<T>& rope() const noexcept { return rope_; }
    kv_cache<T> make_cache(kv_cache_options options = {}) const { return kv_cache<T>(config(), options); }

private:
    std::shared_ptr<const packed_weights<T>> weights_;
    rope_table<T> rope_;
};

}  // namespace kvdecode
