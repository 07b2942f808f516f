#pragma once
// The oracle: the same interface as the cached transformer, but every forward
// recomputes each sequence from its whole token history, with no cache, no mask
// cache, no fused-kernel shortcuts — plain loops and separate q, k, v products.
// Slow by design (quadratic per step); the tests compare the fast path against it.
// With a 16-bit kv_type it rounds every K and V value as such a cache stores them
// (the oracle of the cached path with that cache type).

#include <cmath>
#include <cstddef>
#include <limits>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "kvdecode/cache/kv_type.hpp"
#include "kvdecode/model/batch.hpp"
#include "kvdecode/quant/kernels_half.hpp"
#include "kvdecode/model/rope_table.hpp"
#include "kvdecode/model/token_history.hpp"
#include "kvdecode/model/weights.hpp"

namespace kvdecode {

template <class T>
class reference_model {
public:
    using scalar_type = T;
    using cache_type = token_history;

    explicit reference_model(std::shared_ptr<const transformer_weights<T>> weights, kv_type kv = kv_type::f32)
        : weights_(std::move(weights)), rope_(weights_->config()), kv_(kv) {
        if (!std::is_same_v<T, float> && kv != kv_type::f32)
            throw std::invalid_argument("kvdecode: reference_model: K/V rounded to " + std::string(to_string(kv)) +
                                        " needs float activations");
    }

    const model_config& config() const noexcept { return weights_->config(); }
    token_history make_cache(kv_cache_options = {}) const { return {}; }

    void forward(std::span<const sequence_tokens> batch, token_history& history, std::span<T> logits,
                 logits_for which = logits_for::last_token) {
        const model_config& c = config();
        validate_batch(batch, c, [&](seq_id s) { return history.length(s); }, logits.size(), which);
        std::size_t row = 0;
        for (const sequence_tokens& entry : batch) {
            history.append(entry.seq, entry.tokens);
            const auto all = history.tokens(entry.seq);
            const Matrix out = logits_of_every_position(all);
            const std::size_t first = which == logits_for::last_token ? all.size() - 1 : all.size() - entry.tokens.size();
            for (std::size_t p = first; p < all.size(); ++p, ++row)
                for (std::size_t v = 0; v < c.vocab_size; ++v) logits[row * c.vocab_size + v] = out(p, v);
        }
    }

    using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

    // (tokens, vocab): the logits after each prefix of `tokens`.
    Matrix logits_of_every_position(std::span<const token_id> tokens) const {
        const model_config& c = config();
        const transformer_weights<T>& w = *weights_;
        const Eigen::Index n = static_cast<Eigen::Index>(tokens.size());
        const auto hd = static_cast<Eigen::Index>(c.head_dim);
        using ConstMap = Eigen::Map<const Matrix>;
        auto weight = [](const T* p, std::size_t rows, std::size_t cols) {
            return ConstMap(p, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
        };

        Matrix x(n, c.dim);
        for (Eigen::Index t = 0; t < n; ++t)
            for (std::size_t d = 0; d < c.dim; ++d) x(t, d) = w.token_embedding()[tokens[t] * c.dim + d];

        for (std::size_t l = 0; l < c.n_layers; ++l) {
            Matrix h = rms_norm(x, w.rms_att(l));
            Matrix q = h * weight(w.wq(l), c.q_dim(), c.dim).transpose();
            Matrix k = h * weight(w.wk(l), c.kv_dim(), c.dim).transpose();
            Matrix v = h * weight(w.wv(l), c.kv_dim(), c.dim).transpose();
            if (const T* b = w.bqkv(l)) {  // biases before RoPE
                using Row = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>;
                q.rowwise() += Row(b, static_cast<Eigen::Index>(c.q_dim()));
                k.rowwise() += Row(b + c.q_dim(), static_cast<Eigen::Index>(c.kv_dim()));
                v.rowwise() += Row(b + c.q_dim() + c.kv_dim(), static_cast<Eigen::Index>(c.kv_dim()));
            }
            for (Eigen::Index t = 0; t < n; ++t) {
                rope_.apply(q.row(t).data(), c.n_heads, static_cast<std::size_t>(t));
                rope_.apply(k.row(t).data(), c.n_kv_heads, static_cast<std::size_t>(t));
            }
            round_as_stored(k);
            round_as_stored(v);
            Matrix attended = Matrix::Zero(n, c.q_dim());
            std::vector<T> p(static_cast<std::size_t>(n));
            const T scale = T(1) / std::sqrt(static_cast<T>(c.head_dim));
            for (std::size_t head = 0; head < c.n_heads; ++head) {
                const Eigen::Index qo = static_cast<Eigen::Index>(head * c.head_dim);
                const Eigen::Index ko = static_cast<Eigen::Index>((head / c.group_size()) * c.head_dim);
                for (Eigen::Index i = 0; i < n; ++i) {
                    T top = -std::numeric_limits<T>::infinity();
                    for (Eigen::Index j = 0; j <= i; ++j) {  // causal: keys up to and including i
                        T s = 0;
                        for (Eigen::Index d = 0; d < hd; ++d) s += q(i, qo + d) * k(j, ko + d);
                        p[j] = s * scale;
                        top = std::max(top, p[j]);
                    }
                    T sum = 0;
                    for (Eigen::Index j = 0; j <= i; ++j) sum += (p[j] = std::exp(p[j] - top));
                    for (Eigen::Index j = 0; j <= i; ++j)
                        for (Eigen::Index d = 0; d < hd; ++d) attended(i, qo + d) += p[j] / sum * v(j, ko + d);
                }
            }
            x += attended * weight(w.wo(l), c.dim, c.q_dim()).transpose();
            h = rms_norm(x, w.rms_ffn(l));
            Matrix gate = h * weight(w.w1(l), c.hidden_dim, c.dim).transpose();
            const Matrix up = h * weight(w.w3(l), c.hidden_dim, c.dim).transpose();
            for (Eigen::Index i = 0; i < gate.rows(); ++i)
                for (Eigen::Index j = 0; j < gate.cols(); ++j)
                    gate(i, j) = gate(i, j) / (T(1) + std::exp(-gate(i, j))) * up(i, j);
            x += gate * weight(w.w2(l), c.dim, c.hidden_dim).transpose();
        }
        return rms_norm(x, w.rms_final()) * weight(w.classifier(), c.vocab_size, c.dim).transpose();
    }

private:
    // K or V values as a cache of type kv_ holds them.
    void round_as_stored(Matrix& m) const {
        if constexpr (std::is_same_v<T, float>) {
            using quant::half_format;
            for (Eigen::Index i = 0; i < m.size(); ++i) {
                T& x = m.data()[i];
                if (kv_ == kv_type::f16) x = quant::from_half<half_format::f16>(quant::to_half<half_format::f16>(x));
                if (kv_ == kv_type::bf16) x = quant::from_half<half_format::bf16>(quant::to_half<half_format::bf16>(x));
            }
        }
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

    std::shared_ptr<const transformer_weights<T>> weights_;
    rope_table<T> rope_;
    kv_type kv_;
};

}  // namespace kvdecode
