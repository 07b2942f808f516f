#pragma once
// The weights of an encoder-decoder model, in two forms, as for decoder-only models:
//   seq2seq_weights (row-major T, as loaded): the encoder's and the decoder's layers
//     are each a transformer_weights (the same blocks as a Llama model: attn_norm,
//     wq/wk/wv, wo, ffn_norm, w1/w3, w2), plus what an encoder-decoder adds:
//       encoder: the input projection (vector sources) or the source embedding (the
//                encoder's token_embedding, token sources); its rms_final is the norm
//                of the encoder's output, the "memory" cross-attention reads;
//       decoder: per layer a cross-attention (cross_norm, wq, wk, wv, wo), between the
//                self-attention and the MLP.
//   packed_seq2seq_weights (as the kernels read them): every projection a weight_matrix
//     of one storage type, norm gains folded into the products after them.

#include <algorithm>
#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/seq2seq_config.hpp"
#include "kvdecode/model/packed_weights.hpp"
#include "kvdecode/model/weights.hpp"
#include "kvdecode/quant/weight_matrix.hpp"

namespace kvdecode {

template <class T>
struct cross_attention_weights {
    std::vector<T> norm;  // (dim) RMSNorm gain of the decoder rows before the query
    std::vector<T> wq;    // (q_dim, dim) from the decoder's rows
    std::vector<T> wk;    // (kv_dim, dim) from the memory
    std::vector<T> wv;    // (kv_dim, dim) from the memory
    std::vector<T> wo;    // (dim, q_dim)
};

template <class T>
class seq2seq_weights {
public:
    using scalar_type = T;

    explicit seq2seq_weights(const seq2seq_config& config)
        : config_(validated(config)), encoder_(config_.encoder()), decoder_(config_.decoder) {
        const model_config& c = config_.decoder;
        if (config_.vector_sources()) {
            input_weight_.resize(c.dim * config_.input_dim);
            input_bias_.resize(c.dim);
        }
        cross_.resize(c.n_layers);
        for (auto& x : cross_) {
            x.norm.resize(c.dim);
            x.wq.resize(c.q_dim() * c.dim);
            x.wk.resize(c.kv_dim() * c.dim);
            x.wv.resize(c.kv_dim() * c.dim);
            x.wo.resize(c.dim * c.q_dim());
        }
    }

    const seq2seq_config& config() const noexcept { return config_; }
    // Encoder layers; token_embedding() is the source embedding (token sources), rms_final() the output norm.
    const transformer_weights<T>& encoder() const noexcept { return encoder_; }
    transformer_weights<T>& encoder() noexcept { return encoder_; }
    // Decoder layers' self-attention and MLP, target embedding, final norm, classifier.
    const transformer_weights<T>& decoder() const noexcept { return decoder_; }
    transformer_weights<T>& decoder() noexcept { return decoder_; }
    const cross_attention_weights<T>& cross(std::size_t l) const noexcept { return cross_[l]; }
    cross_attention_weights<T>& cross(std::size_t l) noexcept { return cross_[l]; }
    // Vector sources: (dim, input_dim) and (dim); empty for token sources.
    std::span<const T> input_weight() const noexcept { return input_weight_; }
    std::span<T> input_weight() noexcept { return input_weight_; }
    std::span<const T> input_bias() const noexcept { return input_bias_; }
    std::span<T> input_bias() noexcept { return input_bias_; }

private:
    seq2seq_config config_;
    transformer_weights<T> encoder_, decoder_;
    std::vector<cross_attention_weights<T>> cross_;  // (decoder layers)
    std::vector<T> input_weight_, input_bias_;
};

template <class T>
struct packed_cross_attention {
    weight_matrix<T> wq;   // (q_dim, dim), cross_norm's gain folded in
    weight_matrix<T> wkv;  // (2 kv_dim, dim): keys, then values, from the memory
    weight_matrix<T> wo;   // (dim, q_dim)
};

template <class T>
class packed_seq2seq_weights {
public:
    // Every projection converted to `type` (f32: unquantised), gains folded.
    explicit packed_seq2seq_weights(const seq2seq_weights<T>& w, weight_type type = weight_type::f32)
        : config_(w.config()),
          encoder_(std::make_shared<const packed_weights<T>>(w.encoder(), type)),
          decoder_(std::make_shared<const packed_weights<T>>(w.decoder(), type)),
          encoder_norm_(config_.decoder.dim) {
        const model_config& c = config_.decoder;
        std::copy_n(w.encoder().rms_final(), c.dim, encoder_norm_.data());
        if (config_.vector_sources()) {
            // The input projection runs once per source: kept in float, not quantised.
            input_ = std::make_unique<weight_matrix<T>>(weight_type::f32, w.input_weight().data(), c.dim, config_.input_dim,
                                                        nullptr);
            input_bias_ = aligned_buffer<T>(c.dim);
            std::copy_n(w.input_bias().data(), c.dim, input_bias_.data());
        }
        cross_.reserve(c.n_layers);
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            const cross_attention_weights<T>& x = w.cross(l);
            std::vector<T> kv(x.wk);
            kv.insert(kv.end(), x.wv.begin(), x.wv.end());
            cross_.push_back({weight_matrix<T>(type, x.wq.data(), c.q_dim(), c.dim, x.norm.data()),
                              weight_matrix<T>(type, kv.data(), 2 * c.kv_dim(), c.dim, nullptr),
                              weight_matrix<T>(type, x.wo.data(), c.dim, c.q_dim(), nullptr)});
        }
    }

    const seq2seq_config& config() const noexcept { return config_; }
    const std::shared_ptr<const packed_weights<T>>& encoder() const noexcept { return encoder_; }
    const std::shared_ptr<const packed_weights<T>>& decoder() const noexcept { return decoder_; }
    std::span<const T> encoder_norm() const noexcept { return encoder_norm_.span(); }  // (dim)
    // Vector sources: (dim, input_dim) and its bias (dim); null and empty otherwise.
    const weight_matrix<T>* input() const noexcept { return input_.get(); }
    std::span<const T> input_bias() const noexcept { return input_bias_.span(); }
    const packed_cross_attention<T>& cross(std::size_t l) const noexcept { return cross_[l]; }

    // Scratch the largest product of `rows` rows needs for prepared activations.
    std::size_t scratch_bytes(std::size_t rows) const {
        std::size_t n = std::max(encoder_->scratch_bytes(rows), decoder_->scratch_bytes(rows));
        if (input_) n = std::max(n, input_->scratch_bytes(rows));
        for (const auto& x : cross_) n = std::max({n, x.wq.scratch_bytes(rows), x.wkv.scratch_bytes(rows), x.wo.scratch_bytes(rows)});
        return n;
    }

private:
    seq2seq_config config_;
    std::shared_ptr<const packed_weights<T>> encoder_, decoder_;
    aligned_buffer<T> encoder_norm_;
    std::unique_ptr<weight_matrix<T>> input_;
    aligned_buffer<T> input_bias_;
    std::vector<packed_cross_attention<T>> cross_;
};

}  // namespace kvdecode
