#pragma once
// Every weight of a Llama-family model in one aligned allocation. Immutable once
// loaded, so any number of models and threads may share one instance.
//
// Layout, row-major with the output dimension first (y = W x), per layer:
//   wqkv (q_dim + 2 kv_dim, dim): the rows of wq, then wk, then wv — one product
//                                 gives q, k and v (the "fused QKV projection");
//   w13  (2 hidden, dim):         the rows of w1 (gate), then w3 (up);
//   bqkv (q_dim + 2 kv_dim):      q, k and v biases, only where config.qkv_bias.
// Loaders write through the mutable accessors (wq(l), wk(l), ... are sub-blocks of
// the fused matrices), so fusing happens while the file is read, with no copy.

#include <cstddef>
#include <span>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/model_config.hpp"

namespace kvdecode {

template <class T>
class transformer_weights {
public:
    using scalar_type = T;

    explicit transformer_weights(const model_config& config) : config_(validated(config)) {
        const model_config& c = config_;
        std::size_t offset = 0;
        auto reserve = [&](std::size_t n) {
            const std::size_t at = offset;
            offset += n;
            return at;
        };
        token_embedding_ = reserve(c.vocab_size * c.dim);
        rms_att_ = reserve(c.n_layers * c.dim);
        wqkv_ = reserve(c.n_layers * c.qkv_dim() * c.dim);
        wo_ = reserve(c.n_layers * c.dim * c.q_dim());
        rms_ffn_ = reserve(c.n_layers * c.dim);
        w13_ = reserve(c.n_layers * 2 * c.hidden_dim * c.dim);
        w2_ = reserve(c.n_layers * c.dim * c.hidden_dim);
        rms_final_ = reserve(c.dim);
        bqkv_ = c.qkv_bias ? reserve(c.n_layers * c.qkv_dim()) : 0;
        classifier_ = c.shared_classifier ? token_embedding_ : reserve(c.vocab_size * c.dim);
        storage_ = aligned_buffer<T>(offset);
    }

    const model_config& config() const noexcept { return config_; }
    std::size_t parameter_count() const noexcept { return storage_.size(); }

    // Read-only views, shapes in the comments.
    const T* token_embedding() const noexcept { return at(token_embedding_); }            // (vocab, dim)
    const T* rms_att(std::size_t l) const noexcept { return at(rms_att_, l, c().dim); }  // (dim)
    const T* wqkv(std::size_t l) const noexcept { return at(wqkv_, l, c().qkv_dim() * c().dim); }  // (qkv_dim, dim)
    const T* wo(std::size_t l) const noexcept { return at(wo_, l, c().dim * c().q_dim()); }  // (dim, q_dim)
    const T* rms_ffn(std::size_t l) const noexcept { return at(rms_ffn_, l, c().dim); }  // (dim)
    const T* w13(std::size_t l) const noexcept { return at(w13_, l, 2 * c().hidden_dim * c().dim); }  // (2 hidden, dim)
    const T* w2(std::size_t l) const noexcept { return at(w2_, l, c().dim * c().hidden_dim); }  // (dim, hidden)
    const T* rms_final() const noexcept { return at(rms_final_); }                        // (dim)
    // (qkv_dim): the q, k, v biases, or nullptr without config.qkv_bias.
    const T* bqkv(std::size_t l) const noexcept { return c().qkv_bias ? at(bqkv_, l, c().qkv_dim()) : nullptr; }
    const T* classifier() const noexcept { return at(classifier_); }                      // (vocab, dim)
    // Sub-blocks of the fused matrices.
    const T* wq(std::size_t l) const noexcept { return wqkv(l); }                                  // (q_dim, dim)
    const T* wk(std::size_t l) const noexcept { return wqkv(l) + c().q_dim() * c().dim; }          // (kv_dim, dim)
    const T* wv(std::size_t l) const noexcept { return wk(l) + c().kv_dim() * c().dim; }           // (kv_dim, dim)
    const T* w1(std::size_t l) const noexcept { return w13(l); }                                   // (hidden, dim)
    const T* w3(std::size_t l) const noexcept { return w13(l) + c().hidden_dim * c().dim; }        // (hidden, dim)

    // Mutable views for loaders and weight generators.
    std::span<T> token_embedding() noexcept { return mut(self().token_embedding(), c().vocab_size * c().dim); }
    std::span<T> rms_att(std::size_t l) noexcept { return mut(self().rms_att(l), c().dim); }
    std::span<T> wq(std::size_t l) noexcept { return mut(self().wq(l), c().q_dim() * c().dim); }
    std::span<T> wk(std::size_t l) noexcept { return mut(self().wk(l), c().kv_dim() * c().dim); }
    std::span<T> wv(std::size_t l) noexcept { return mut(self().wv(l), c().kv_dim() * c().dim); }
    std::span<T> wo(std::size_t l) noexcept { return mut(self().wo(l), c().dim * c().q_dim()); }
    std::span<T> rms_ffn(std::size_t l) noexcept { return mut(self().rms_ffn(l), c().dim); }
    std::span<T> w1(std::size_t l) noexcept { return mut(self().w1(l), c().hidden_dim * c().dim); }
    std::span<T> w2(std::size_t l) noexcept { return mut(self().w2(l), c().dim * c().hidden_dim); }
    std::span<T> w3(std::size_t l) noexcept { return mut(self().w3(l), c().hidden_dim * c().dim); }
    std::span<T> rms_final() noexcept { return mut(self().rms_final(), c().dim); }
    // Empty without config.qkv_bias.
    std::span<T> bq(std::size_t l) noexcept { return bias(l, 0, c().q_dim()); }
    std::span<T> bk(std::size_t l) noexcept { return bias(l, c().q_dim(), c().kv_dim()); }
    std::span<T> bv(std::size_t l) noexcept { return bias(l, c().q_dim() + c().kv_dim(), c().kv_dim()); }
    // Empty when the classifier is the token embedding.
    std::span<T> separate_classifier() noexcept {
        if (c().shared_classifier) return {};
        return mut(self().classifier(), c().vocab_size * c().dim);
    }

private:
    const model_config& c() const noexcept { return config_; }
    const transformer_weights& self() const noexcept { return *this; }
    const T* at(std::size_t offset, std::size_t index = 0, std::size_t stride = 0) const noexcept {
        return storage_.data() + offset + index * stride;
    }
    std::span<T> mut(const T* p, std::size_t n) noexcept { return {const_cast<T*>(p), n}; }
    std::span<T> bias(std::size_t l, std::size_t offset, std::size_t n) noexcept {
        if (!c().qkv_bias) return {};
        return mut(self().bqkv(l) + offset, n);
    }

    model_config config_;
    aligned_buffer<T> storage_;
    std::size_t token_embedding_ = 0, rms_att_ = 0, wqkv_ = 0, wo_ = 0, rms_ffn_ = 0, w13_ = 0, w2_ = 0,
                rms_final_ = 0, classifier_ = 0, bqkv_ = 0;
};

}  // namespace kvdecode
