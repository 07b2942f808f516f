#pragma once
// The weights as the cached transformer reads them: every projection packed into a
// weight_matrix of the chosen storage type (quant/weight_matrix.hpp), with the RMSNorm
// gain that precedes a projection folded into its columns, so a norm only computes
// 1 / rms per row and the product reads the residual stream directly (no normalised
// copy is written).
//   wqkv   <- [wq; wk; wv] · diag(rms_att)      wo
//   w13    <- [w1; w3] · diag(rms_ffn)          w2
//   classifier <- classifier · diag(rms_final)
// Built once from transformer_weights; immutable, shareable between models and threads.
// The token embedding stays row-major in T (a lookup, not a product).

#include <algorithm>
#include <cstddef>
#include <vector>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/model_config.hpp"
#include "kvdecode/model/weights.hpp"
#include "kvdecode/quant/weight_matrix.hpp"
#include "kvdecode/quant/weight_type.hpp"

namespace kvdecode {

template <class T>
class packed_weights {
public:
    using scalar_type = T;

    // Converts every projection to `type` (f32: unquantised, in T). Throws
    // std::invalid_argument where T cannot use the type or a weight does not fit it.
    explicit packed_weights(const transformer_weights<T>& w, weight_type type = weight_type::f32)
        : config_(w.config()), type_(type), embedding_(config_.vocab_size * config_.dim) {
        const model_config& c = config_;
        std::copy_n(w.token_embedding(), c.vocab_size * c.dim, embedding_.data());
        matrices_.reserve(4 * c.n_layers + 1);
        auto pack = [&](const T* matrix, std::size_t out_dim, std::size_t in_dim, const T* gain) {
            matrices_.emplace_back(type, matrix, out_dim, in_dim, gain);
        };
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            pack(w.wqkv(l), c.qkv_dim(), c.dim, w.rms_att(l));
            pack(w.wo(l), c.dim, c.q_dim(), nullptr);
            pack(w.w13(l), 2 * c.hidden_dim, c.dim, w.rms_ffn(l));
            pack(w.w2(l), c.dim, c.hidden_dim, nullptr);
        }
        pack(w.classifier(), c.vocab_size, c.dim, w.rms_final());
    }

    const model_config& config() const noexcept { return config_; }
    weight_type type() const noexcept { return type_; }
    const T* token_embedding() const noexcept { return embedding_.data(); }  // (vocab, dim), row-major
    const weight_matrix<T>& wqkv(std::size_t l) const noexcept { return matrices_[4 * l]; }     // (qkv_dim, dim)
    const weight_matrix<T>& wo(std::size_t l) const noexcept { return matrices_[4 * l + 1]; }   // (dim, q_dim)
    const weight_matrix<T>& w13(std::size_t l) const noexcept { return matrices_[4 * l + 2]; }  // (2 hidden, dim)
    const weight_matrix<T>& w2(std::size_t l) const noexcept { return matrices_[4 * l + 3]; }   // (dim, hidden)
    const weight_matrix<T>& classifier() const noexcept { return matrices_.back(); }           // (vocab, dim)

    // Bytes of weights one decode step reads: every projection and the classifier
    // (padding included), one embedding row aside. The numerator of the bandwidth limit.
    std::size_t bytes_per_token() const noexcept {
        std::size_t n = 0;
        for (const auto& m : matrices_) n += m.bytes();
        return n;
    }
    std::size_t bytes() const noexcept { return bytes_per_token() + embedding_.size() * sizeof(T); }
    // Scratch the largest product of `rows` rows needs for prepared activations.
    std::size_t scratch_bytes(std::size_t rows) const {
        std::size_t n = 0;
        for (const auto& m : matrices_) n = std::max(n, m.scratch_bytes(rows));
        return n;
    }

private:
    model_config config_;
    weight_type type_;
    aligned_buffer<T> embedding_;
    std::vector<weight_matrix<T>> matrices_;  // per layer: wqkv, wo, w13, w2; then the classifier
};

}  // namespace kvdecode
