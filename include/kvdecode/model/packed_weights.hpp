#pragma once
// The weights as the cached transformer reads them: every projection packed into a
// weight_matrix of some storage type (quant/weight_matrix.hpp), the q/k/v and
// gate/up projections fused (model/fused_projection.hpp), per layer
//   attn_norm  wqkv (+ q, k, v bias)  wo  ffn_norm  w13  w2
// then final_norm and the classifier. Built once; immutable, shareable between
// models and threads.
//
// Each RMSNorm gain is either folded or separate (norm_gains):
//   folded:   multiplied into the columns of the product after the norm, so the
//             norm only computes 1 / rms per row and the product reads the residual
//             stream directly (no normalised copy is written). The gain of an empty
//             span marks it. Used for weights converted at load (llama2.c).
//   separate: the norm writes x / rms * gain into a buffer and the product reads it,
//             as llama.cpp does. File weights that are already quantised cannot take
//             the gain without being quantised again (and would then no longer
//             match the file's reference implementation), so the GGUF path uses this.
//
// Two sources:
//   transformer_weights (row-major T): converted to one weight_type at load; the
//     token embedding stays row-major in T, a lookup.
//   stored_weights (a file's layout, model/stored_weights.hpp): every matrix keeps
//     its file type (mixed files just work), block types in place (q8_0 interleaved
//     once, quant/q8_0_interleaved.hpp); the token
//     embedding is a weight_matrix of its file type, rows dequantised one per token,
//     and the same matrix as the classifier when the file ties them.

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/model_config.hpp"
#include "kvdecode/core/types.hpp"
#include "kvdecode/model/fused_projection.hpp"
#include "kvdecode/model/stored_weights.hpp"
#include "kvdecode/model/weights.hpp"
#include "kvdecode/quant/weight_matrix.hpp"
#include "kvdecode/quant/weight_type.hpp"

namespace kvdecode {

// Where the RMSNorm gains go when weights are packed.
enum class norm_gains {
    folded,    // into the next product's columns: the norm only scales rows by 1 / rms
    separate,  // kept apart: the norm writes x / rms * gain, the product reads that
};

// Token rows, one looked up per token: row-major T, or a weight_matrix of any
// storage type, dequantised a row at a time (never the whole matrix).
template <class T>
class embedding_table {
public:
    // (vocab, dim) row-major, copied.
    embedding_table(const T* rows, std::size_t vocab, std::size_t dim) : dim_(dim), rows_(vocab * dim) {
        std::copy_n(rows, vocab * dim, rows_.data());
    }
    // The rows of a matrix (vocab, dim), shared (with the classifier, when tied).
    explicit embedding_table(std::shared_ptr<const weight_matrix<T>> matrix)
        : dim_(matrix->in_dim()), matrix_(std::move(matrix)) {}

    // Row t into out (dim values); t is a valid token id (the forward pass checks).
    void lookup(token_id t, T* out) const {
        if (matrix_) matrix_->dequantize_row(static_cast<std::size_t>(t), out);
        else std::copy_n(rows_.data() + static_cast<std::size_t>(t) * dim_, dim_, out);
    }
    // The matrix the rows come from, or null for row-major rows.
    const std::shared_ptr<const weight_matrix<T>>& matrix() const noexcept { return matrix_; }
    std::size_t bytes() const noexcept { return matrix_ ? matrix_->bytes() : rows_.size() * sizeof(T); }

private:
    std::size_t dim_;
    aligned_buffer<T> rows_;                          // (vocab, dim), or empty
    std::shared_ptr<const weight_matrix<T>> matrix_;  // or null
};

template <class T>
struct packed_layer {
    aligned_buffer<T> attn_norm;  // (dim) gain, or empty when folded into wqkv
    fused_projection<T> wqkv;     // (q_dim + 2 kv_dim, dim): q, k, v (+ their biases)
    weight_matrix<T> wo;          // (dim, q_dim)
    aligned_buffer<T> ffn_norm;   // (dim) gain, or empty when folded into w13
    fused_projection<T> w13;      // (2 hidden, dim): gate, up
    weight_matrix<T> w2;          // (dim, hidden)
};

template <class T>
class packed_weights {
public:
    using scalar_type = T;

    // Converts every projection to `type` (f32: unquantised, in T), gains placed as
    // `gains` says. Throws std::invalid_argument where T cannot use the type or a
    // weight does not fit it.
    explicit packed_weights(const transformer_weights<T>& w, weight_type type = weight_type::f32,
                            norm_gains gains = norm_gains::folded)
        : config_(w.config()), type_(type), embedding_(w.token_embedding(), config_.vocab_size, config_.dim) {
        const model_config& c = config_;
        const bool fold = gains == norm_gains::folded;
        auto pack = [&](const T* matrix, std::size_t out_dim, std::size_t in_dim, const T* gain) {
            return weight_matrix<T>(type, matrix, out_dim, in_dim, fold ? gain : nullptr);
        };
        auto gain = [&](const T* g) { return fold ? aligned_buffer<T>() : copy(std::span<const T>(g, c.dim)); };
        layers_.reserve(c.n_layers);
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            const T* bias = w.bqkv(l);
            layers_.push_back({gain(w.rms_att(l)),
                               fused_projection<T>(pack(w.wqkv(l), c.qkv_dim(), c.dim, w.rms_att(l)),
                                                   bias ? std::span<const T>(bias, c.qkv_dim()) : std::span<const T>()),
                               pack(w.wo(l), c.dim, c.q_dim(), nullptr),
                               gain(w.rms_ffn(l)),
                               fused_projection<T>(pack(w.w13(l), 2 * c.hidden_dim, c.dim, w.rms_ffn(l))),
                               pack(w.w2(l), c.dim, c.hidden_dim, nullptr)});
        }
        final_norm_ = gain(w.rms_final());
        classifier_ = std::make_shared<const weight_matrix<T>>(pack(w.classifier(), c.vocab_size, c.dim, w.rms_final()));
    }

    // Every matrix in its stored type (block types but q8_0 used in place, kept alive by
    // s.owner), gains separate. Throws std::invalid_argument naming the weight whose
    // shape or size does not match the config.
    explicit packed_weights(const stored_weights& s)
        : config_(checked(s)),
          embedding_(named("token_embedding", [&] {
              return std::make_shared<const weight_matrix<T>>(stored(s.token_embedding, s.owner));
          })) {
        const model_config& c = config_;
        layers_.reserve(c.n_layers);
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            const stored_layer& L = s.layers[l];
            const std::string at = "layer " + std::to_string(l) + " ";
            const stored_matrix qkv[] = {L.wq, L.wk, L.wv}, gate_up[] = {L.w1, L.w3};
            std::vector<T> bias;
            for (const auto* b : {&L.bq, &L.bk, &L.bv}) bias.insert(bias.end(), b->begin(), b->end());
            layers_.push_back({copy(std::span<const float>(L.attn_norm)),
                               named(at + "wq, wk, wv", [&] { return fused_projection<T>(qkv, s.owner, bias); }),
                               named(at + "wo", [&] { return stored(L.wo, s.owner); }),
                               copy(std::span<const float>(L.ffn_norm)),
                               named(at + "w1, w3", [&] { return fused_projection<T>(gate_up, s.owner); }),
                               named(at + "w2", [&] { return stored(L.w2, s.owner); })});
        }
        final_norm_ = copy(std::span<const float>(s.output_norm));
        classifier_ = c.shared_classifier
                          ? embedding_.matrix()
                          : named("output", [&] {
                                return std::make_shared<const weight_matrix<T>>(stored(s.output, s.owner));
                            });
        // The most bytes decide the type reported for the whole model.
        const auto by_type = bytes_by_type();
        type_ = std::max_element(by_type.begin(), by_type.end(),
                                 [](const auto& a, const auto& b) { return a.second < b.second; })->first;
    }

    const model_config& config() const noexcept { return config_; }
    // The storage type of the projections (of most of their bytes, for a mixed file).
    weight_type type() const noexcept { return type_; }
    const embedding_table<T>& token_embedding() const noexcept { return embedding_; }
    const packed_layer<T>& layer(std::size_t l) const noexcept { return layers_[l]; }
    std::span<const T> attn_norm(std::size_t l) const noexcept { return layers_[l].attn_norm.span(); }  // (dim) or empty: folded
    const fused_projection<T>& wqkv(std::size_t l) const noexcept { return layers_[l].wqkv; }           // (qkv_dim, dim)
    const weight_matrix<T>& wo(std::size_t l) const noexcept { return layers_[l].wo; }                  // (dim, q_dim)
    std::span<const T> ffn_norm(std::size_t l) const noexcept { return layers_[l].ffn_norm.span(); }    // (dim) or empty: folded
    const fused_projection<T>& w13(std::size_t l) const noexcept { return layers_[l].w13; }             // (2 hidden, dim)
    const weight_matrix<T>& w2(std::size_t l) const noexcept { return layers_[l].w2; }                  // (dim, hidden)
    std::span<const T> final_norm() const noexcept { return final_norm_.span(); }                       // (dim) or empty: folded
    const weight_matrix<T>& classifier() const noexcept { return *classifier_; }                        // (vocab, dim)

    // Bytes of weights one decode step reads: every projection and the classifier
    // (padding included), one embedding row aside. The numerator of the bandwidth limit.
    std::size_t bytes_per_token() const noexcept {
        std::size_t n = classifier_->bytes();
        for (const packed_layer<T>& L : layers_) n += L.wqkv.bytes() + L.wo.bytes() + L.w13.bytes() + L.w2.bytes();
        return n;
    }
    // Bytes per token by storage type (a mixed file has several).
    std::map<weight_type, std::size_t> bytes_by_type() const {
        std::map<weight_type, std::size_t> n;
        auto add = [&](const weight_matrix<T>& m) { n[m.type()] += m.bytes(); };
        for (const packed_layer<T>& L : layers_) {
            for (const auto& s : L.wqkv.segments()) add(s.matrix);
            add(L.wo);
            for (const auto& s : L.w13.segments()) add(s.matrix);
            add(L.w2);
        }
        add(*classifier_);
        return n;
    }
    // Every weight byte held, the embedding counted once when it is the classifier.
    std::size_t bytes() const noexcept {
        const bool tied = embedding_.matrix() == classifier_;
        return bytes_per_token() + (tied ? 0 : embedding_.bytes());
    }
    // Scratch the largest product of `rows` rows needs for prepared activations.
    std::size_t scratch_bytes(std::size_t rows) const {
        std::size_t n = classifier_->scratch_bytes(rows);
        for (const packed_layer<T>& L : layers_)
            n = std::max({n, L.wqkv.scratch_bytes(rows), L.wo.scratch_bytes(rows), L.w13.scratch_bytes(rows),
                          L.w2.scratch_bytes(rows)});
        return n;
    }

private:
    template <class U>
    static aligned_buffer<T> copy(std::span<const U> values) {
        aligned_buffer<T> out(values.size());
        std::copy(values.begin(), values.end(), out.data());
        return out;
    }

    static model_config checked(const stored_weights& s) {
        model_config c = validated(s.config);
        detail::check_shapes(s, c);
        return c;
    }

    static weight_matrix<T> stored(const stored_matrix& m, const std::shared_ptr<const void>& owner) {
        return weight_matrix<T>(m.type, m.bytes, m.out_dim, m.in_dim, owner);
    }

    // make(), with the weight's name in any std::invalid_argument it throws.
    template <class Make>
    static auto named(const std::string& what, Make make) {
        try {
            return make();
        } catch (const std::invalid_argument& e) {
            const std::string_view message = e.what(), prefix = "kvdecode: ";
            throw std::invalid_argument("kvdecode: " + what + ": " +
                                        std::string(message.starts_with(prefix) ? message.substr(prefix.size()) : message));
        }
    }

    model_config config_;
    weight_type type_ = weight_type::f32;
    embedding_table<T> embedding_;
    std::vector<packed_layer<T>> layers_;
    aligned_buffer<T> final_norm_;                        // (dim) or empty: folded into the classifier
    std::shared_ptr<const weight_matrix<T>> classifier_;  // (vocab, dim); the embedding's matrix when tied
};

}  // namespace kvdecode
