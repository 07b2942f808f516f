#pragma once
// Random weights of a given shape, deterministic from a seed: for tests at awkward
// shapes and for benchmarks at real model sizes, with nothing to download.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>

#include "kvdecode/core/rng.hpp"
#include "kvdecode/model/seq2seq_weights.hpp"
#include "kvdecode/model/weights.hpp"

namespace kvdecode {

// Matrices are N(0, 1/fan_in), so activations keep unit scale through the layers;
// norm weights are 1 plus small noise, so they matter but do not blow up.
template <class T>
transformer_weights<T> random_weights(const model_config& config, std::uint64_t seed) {
    transformer_weights<T> w(config);
    const model_config& c = w.config();
    rng gen(seed);
    auto fill = [&](std::span<T> out, double stddev, double mean = 0.0) {
        for (T& v : out) v = static_cast<T>(mean + stddev * gen.normal());
    };
    auto inv_sqrt = [](std::size_t n) { return 1.0 / std::sqrt(static_cast<double>(n)); };
    fill(w.token_embedding(), 1.0);
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        fill(w.rms_att(l), 0.1, 1.0);
        fill(w.wq(l), inv_sqrt(c.dim));
        fill(w.wk(l), inv_sqrt(c.dim));
        fill(w.wv(l), inv_sqrt(c.dim));
        fill(w.wo(l), inv_sqrt(c.q_dim()));
        fill(w.rms_ffn(l), 0.1, 1.0);
        fill(w.w1(l), inv_sqrt(c.dim));
        fill(w.w3(l), inv_sqrt(c.dim));
        fill(w.w2(l), inv_sqrt(c.hidden_dim));
        fill(w.bq(l), 0.5);  // empty without config.qkv_bias, so the draws above do not change
        fill(w.bk(l), 0.5);
        fill(w.bv(l), 0.5);
    }
    fill(w.rms_final(), 0.1, 1.0);
    fill(w.separate_classifier(), inv_sqrt(c.dim));
    return w;
}

// An encoder-decoder's, the same way: each stack as above (from seeds derived from
// `seed`), the cross-attention and input projections N(0, 1/fan_in), their norms and
// biases as the others'.
template <class T>
seq2seq_weights<T> random_seq2seq_weights(const seq2seq_config& config, std::uint64_t seed) {
    seq2seq_weights<T> w(config);
    const model_config& c = w.config().decoder;
    w.encoder() = random_weights<T>(w.config().encoder(), seed * 3 + 1);
    w.decoder() = random_weights<T>(c, seed * 3 + 2);
    rng gen(seed * 3 + 3);
    auto fill = [&](std::span<T> out, double stddev, double mean = 0.0) {
        for (T& v : out) v = static_cast<T>(mean + stddev * gen.normal());
    };
    auto inv_sqrt = [](std::size_t n) { return 1.0 / std::sqrt(static_cast<double>(n)); };
    fill(w.input_weight(), inv_sqrt(std::max<std::size_t>(w.config().input_dim, 1)));
    fill(w.input_bias(), 0.1);
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        cross_attention_weights<T>& x = w.cross(l);
        fill(x.norm, 0.1, 1.0);
        fill(x.wq, inv_sqrt(c.dim));
        fill(x.wk, inv_sqrt(c.dim));
        fill(x.wv, inv_sqrt(c.dim));
        fill(x.wo, inv_sqrt(c.q_dim()));
    }
    return w;
}

}  // namespace kvdecode
