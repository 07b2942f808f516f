#pragma once
// The oracle of the encoder-decoder: the same interface as seq2seq_context, but every
// forward recomputes everything for each sequence: the encoder over its source, the
// cross-attention K/V, and the decoder over the whole token history. Plain loops and
// separate products, no cache, no kernels of the fast path; slow by design.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "kvdecode/cache/source_bound.hpp"
#include "kvdecode/model/batch.hpp"
#include "kvdecode/model/rope_table.hpp"
#include "kvdecode/model/seq2seq_weights.hpp"
#include "kvdecode/model/source.hpp"
#include "kvdecode/model/token_history.hpp"

namespace kvdecode {

// A source as the reference keeps it: a copy of the caller's input.
template <class T>
struct source_copy {
    std::vector<token_id> tokens;
    std::vector<T> vectors;
};

template <class T>
class seq2seq_reference {
public:
    using scalar_type = T;
    using cache_type = source_bound<token_history, source_copy<T>>;
    using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

    explicit seq2seq_reference(std::shared_ptr<const seq2seq_weights<T>> weights)
        : weights_(std::move(weights)), encoder_rope_(weights_->config().encoder()), decoder_rope_(config()) {}

    const model_config& config() const noexcept { return weights_->config().decoder; }
    cache_type make_cache(kv_cache_options = {}) const { return cache_type(token_history{}); }

    std::shared_ptr<const source_copy<T>> encode(const source_view<T>& s) const {
        checked_source_length(s, weights_->config());
        return std::make_shared<const source_copy<T>>(
            source_copy<T>{{s.tokens.begin(), s.tokens.end()}, {s.vectors.begin(), s.vectors.end()}});
    }

    void forward(std::span<const sequence_tokens> batch, cache_type& cache, std::span<T> logits,
                 logits_for which = logits_for::last_token) {
        const model_config& c = config();
        token_history& history = cache.store();
        validate_batch(batch, c, [&](seq_id s) { return history.length(s); }, logits.size(), which);
        for (const sequence_tokens& entry : batch)
            if (!cache.source(entry.seq))
                throw std::invalid_argument("kvdecode: forward: sequence " + std::to_string(entry.seq) +
                                            " is bound to no source");
        std::size_t row = 0;
        for (const sequence_tokens& entry : batch) {
            history.append(entry.seq, entry.tokens);
            const auto all = history.tokens(entry.seq);
            const Matrix out = logits_of_every_position(all, memory_of(*cache.source(entry.seq)));
            const std::size_t first = which == logits_for::last_token ? all.size() - 1 : all.size() - entry.tokens.size();
            for (std::size_t p = first; p < all.size(); ++p, ++row)
                for (std::size_t v = 0; v < c.vocab_size; ++v) logits[row * c.vocab_size + v] = out(p, v);
        }
    }

    // (source length, dim): the encoder's normalised output.
    Matrix memory_of(const source_copy<T>& s) const {
        const seq2seq_config& sc = weights_->config();
        const transformer_weights<T>& enc = weights_->encoder();
        const std::size_t dim = config().dim;
        Matrix x;
        if (sc.vector_sources()) {
            const auto n = static_cast<Eigen::Index>(s.vectors.size() / sc.input_dim);
            x = Eigen::Map<const Matrix>(s.vectors.data(), n, static_cast<Eigen::Index>(sc.input_dim)) *
                weight(weights_->input_weight().data(), dim, sc.input_dim).transpose();
            for (Eigen::Index i = 0; i < n; ++i)
                for (std::size_t d = 0; d < dim; ++d) x(i, static_cast<Eigen::Index>(d)) += weights_->input_bias()[d];
        } else {
            x = Matrix(static_cast<Eigen::Index>(s.tokens.size()), static_cast<Eigen::Index>(dim));
            for (std::size_t t = 0; t < s.tokens.size(); ++t)
                for (std::size_t d = 0; d < dim; ++d)
                    x(static_cast<Eigen::Index>(t), static_cast<Eigen::Index>(d)) =
                        enc.token_embedding()[static_cast<std::size_t>(s.tokens[t]) * dim + d];
        }
        for (std::size_t l = 0; l < sc.encoder_layers; ++l) {
            x += self_attention(rms_norm(x, enc.rms_att(l)), enc, l, encoder_rope_, false);
            x += mlp(rms_norm(x, enc.rms_ffn(l)), enc, l);
        }
        return rms_norm(x, enc.rms_final());
    }

    // (tokens, vocab): the logits after each prefix of `tokens`, given the memory.
    Matrix logits_of_every_position(std::span<const token_id> tokens, const Matrix& memory) const {
        const model_config& c = config();
        const transformer_weights<T>& dec = weights_->decoder();
        Matrix x(static_cast<Eigen::Index>(tokens.size()), static_cast<Eigen::Index>(c.dim));
        for (std::size_t t = 0; t < tokens.size(); ++t)
            for (std::size_t d = 0; d < c.dim; ++d)
                x(static_cast<Eigen::Index>(t), static_cast<Eigen::Index>(d)) =
                    dec.token_embedding()[static_cast<std::size_t>(tokens[t]) * c.dim + d];
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            x += self_attention(rms_norm(x, dec.rms_att(l)), dec, l, decoder_rope_, true);
            const cross_attention_weights<T>& cw = weights_->cross(l);
            const Matrix q = rms_norm(x, cw.norm.data()) * weight(cw.wq.data(), c.q_dim(), c.dim).transpose();
            const Matrix k = memory * weight(cw.wk.data(), c.kv_dim(), c.dim).transpose();
            const Matrix v = memory * weight(cw.wv.data(), c.kv_dim(), c.dim).transpose();
            x += attend(q, k, v, false) * weight(cw.wo.data(), c.dim, c.q_dim()).transpose();
            x += mlp(rms_norm(x, dec.rms_ffn(l)), dec, l);
        }
        return rms_norm(x, dec.rms_final()) * weight(dec.classifier(), c.vocab_size, c.dim).transpose();
    }

private:
    static Eigen::Map<const Matrix> weight(const T* p, std::size_t rows, std::size_t cols) {
        return Eigen::Map<const Matrix>(p, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
    }

    // Attention output (before wo) of one layer of either stack, RoPE at positions 0..n-1.
    Matrix self_attention(const Matrix& h, const transformer_weights<T>& w, std::size_t l, const rope_table<T>& rope,
                          bool causal) const {
        const model_config& c = config();
        Matrix q = h * weight(w.wq(l), c.q_dim(), c.dim).transpose();
        Matrix k = h * weight(w.wk(l), c.kv_dim(), c.dim).transpose();
        const Matrix v = h * weight(w.wv(l), c.kv_dim(), c.dim).transpose();
        for (Eigen::Index t = 0; t < h.rows(); ++t) {
            rope.apply(q.row(t).data(), c.n_heads, static_cast<std::size_t>(t));
            rope.apply(k.row(t).data(), c.n_kv_heads, static_cast<std::size_t>(t));
        }
        return attend(q, k, v, causal) * weight(w.wo(l), c.dim, c.q_dim()).transpose();
    }

    // Softmax attention of query rows q over key/value rows k, v (grouped heads).
    Matrix attend(const Matrix& q, const Matrix& k, const Matrix& v, bool causal) const {
        const model_config& c = config();
        const auto hd = static_cast<Eigen::Index>(c.head_dim);
        const T scale = T(1) / std::sqrt(static_cast<T>(c.head_dim));
        Matrix out = Matrix::Zero(q.rows(), static_cast<Eigen::Index>(c.q_dim()));
        std::vector<T> p(static_cast<std::size_t>(k.rows()));
        for (std::size_t head = 0; head < c.n_heads; ++head) {
            const auto qo = static_cast<Eigen::Index>(head * c.head_dim);
            const auto ko = static_cast<Eigen::Index>((head / c.group_size()) * c.head_dim);
            for (Eigen::Index i = 0; i < q.rows(); ++i) {
                const Eigen::Index keys = causal ? i + 1 : k.rows();
                T top = -std::numeric_limits<T>::infinity();
                for (Eigen::Index j = 0; j < keys; ++j) {
                    T s = 0;
                    for (Eigen::Index d = 0; d < hd; ++d) s += q(i, qo + d) * k(j, ko + d);
                    p[static_cast<std::size_t>(j)] = s * scale;
                    top = std::max(top, p[static_cast<std::size_t>(j)]);
                }
                T sum = 0;
                for (Eigen::Index j = 0; j < keys; ++j) sum += (p[static_cast<std::size_t>(j)] = std::exp(p[static_cast<std::size_t>(j)] - top));
                for (Eigen::Index j = 0; j < keys; ++j)
                    for (Eigen::Index d = 0; d < hd; ++d) out(i, qo + d) += p[static_cast<std::size_t>(j)] / sum * v(j, ko + d);
            }
        }
        return out;
    }

    Matrix mlp(const Matrix& h, const transformer_weights<T>& w, std::size_t l) const {
        const model_config& c = config();
        Matrix gate = h * weight(w.w1(l), c.hidden_dim, c.dim).transpose();
        const Matrix up = h * weight(w.w3(l), c.hidden_dim, c.dim).transpose();
        for (Eigen::Index i = 0; i < gate.rows(); ++i)
            for (Eigen::Index j = 0; j < gate.cols(); ++j) gate(i, j) = gate(i, j) / (T(1) + std::exp(-gate(i, j))) * up(i, j);
        return gate * weight(w.w2(l), c.dim, c.hidden_dim).transpose();
    }

    Matrix rms_norm(const Matrix& x, const T* gain) const {
        Matrix out(x.rows(), x.cols());
        for (Eigen::Index i = 0; i < x.rows(); ++i) {
            T ss = 0;
            for (Eigen::Index j = 0; j < x.cols(); ++j) ss += x(i, j) * x(i, j);
            const T inv = T(1) / std::sqrt(ss / static_cast<T>(x.cols()) + static_cast<T>(config().norm_eps));
            for (Eigen::Index j = 0; j < x.cols(); ++j) out(i, j) = x(i, j) * inv * gain[j];
        }
        return out;
    }

    std::shared_ptr<const seq2seq_weights<T>> weights_;
    rope_table<T> encoder_rope_, decoder_rope_;
};

}  // namespace kvdecode
