#pragma once
// A model's weights as a file stores them, before packing: every matrix in its
// file layout (a weight_type and rows of row_bytes(type, in_dim) bytes, as GGUF
// has them), norm gains and biases as floats. A loader (io/gguf_model.hpp) fills it
// with views into a mapped file and packed_weights builds the model from it, using
// block-type bytes in place (q8_0 is interleaved once). Nothing here owns the matrix bytes: `owner` (or the
// caller) keeps them alive.

#include <algorithm>
#include <cstddef>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "kvdecode/core/model_config.hpp"
#include "kvdecode/model/weights.hpp"
#include "kvdecode/quant/weight_matrix.hpp"
#include "kvdecode/quant/weight_type.hpp"

namespace kvdecode {

// (out_dim, in_dim) in a file's layout.
struct stored_matrix {
    weight_type type = weight_type::f32;
    std::span<const std::byte> bytes;  // out_dim rows of row_bytes(type, in_dim) bytes
    std::size_t out_dim = 0, in_dim = 0;
};

struct stored_layer {
    std::vector<float> attn_norm;   // (dim) RMSNorm gain before attention
    stored_matrix wq, wk, wv;       // (q_dim, dim), (kv_dim, dim), (kv_dim, dim)
    std::vector<float> bq, bk, bv;  // (q_dim), (kv_dim), (kv_dim); empty without config.qkv_bias
    stored_matrix wo;               // (dim, q_dim)
    std::vector<float> ffn_norm;    // (dim) RMSNorm gain before the MLP
    stored_matrix w1, w2, w3;       // gate (hidden, dim), down (dim, hidden), up (hidden, dim)
};

struct stored_weights {
    model_config config;
    stored_matrix token_embedding;      // (vocab, dim)
    std::vector<stored_layer> layers;   // config.n_layers
    std::vector<float> output_norm;     // (dim)
    stored_matrix output;               // (vocab, dim); unused when config.shared_classifier
    std::shared_ptr<const void> owner;  // keeps every matrix's bytes alive, or empty
};

namespace detail {

// Every shape against the config; throws std::invalid_argument naming the weight.
inline void check_shapes(const stored_weights& s, const model_config& c) {
    auto fail = [](const std::string& what, const std::string& expected, const std::string& found) {
        throw std::invalid_argument("kvdecode: stored_weights: " + what + ": expected " + expected + ", found " + found);
    };
    auto shape = [](std::size_t a, std::size_t b) { return std::to_string(a) + " x " + std::to_string(b); };
    auto matrix = [&](const stored_matrix& m, const std::string& what, std::size_t out_dim, std::size_t in_dim) {
        if (m.out_dim != out_dim || m.in_dim != in_dim) fail(what, shape(out_dim, in_dim), shape(m.out_dim, m.in_dim));
    };
    auto vector = [&](const std::vector<float>& v, const std::string& what, std::size_t n) {
        if (v.size() != n) fail(what, std::to_string(n) + " values", std::to_string(v.size()));
    };
    if (s.layers.size() != c.n_layers) fail("layers", std::to_string(c.n_layers), std::to_string(s.layers.size()));
    matrix(s.token_embedding, "token_embedding", c.vocab_size, c.dim);
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        const stored_layer& L = s.layers[l];
        const std::string at = "layer " + std::to_string(l) + " ";
        vector(L.attn_norm, at + "attn_norm", c.dim);
        matrix(L.wq, at + "wq", c.q_dim(), c.dim);
        matrix(L.wk, at + "wk", c.kv_dim(), c.dim);
        matrix(L.wv, at + "wv", c.kv_dim(), c.dim);
        vector(L.bq, at + "bq", c.qkv_bias ? c.q_dim() : 0);
        vector(L.bk, at + "bk", c.qkv_bias ? c.kv_dim() : 0);
        vector(L.bv, at + "bv", c.qkv_bias ? c.kv_dim() : 0);
        matrix(L.wo, at + "wo", c.dim, c.q_dim());
        vector(L.ffn_norm, at + "ffn_norm", c.dim);
        matrix(L.w1, at + "w1", c.hidden_dim, c.dim);
        matrix(L.w2, at + "w2", c.dim, c.hidden_dim);
        matrix(L.w3, at + "w3", c.hidden_dim, c.dim);
    }
    vector(s.output_norm, "output_norm", c.dim);
    if (!c.shared_classifier) matrix(s.output, "output", c.vocab_size, c.dim);
}

}  // namespace detail

// Every weight dequantised to float, row-major (transformer_weights): what the
// no-cache reference model reads, and a way to convert a file to another type.
// Reads each matrix through weight_matrix's dequantize_row, so every type the
// stored constructor takes works here. Throws std::invalid_argument as
// packed_weights does.
inline transformer_weights<float> dequantized(const stored_weights& s) {
    transformer_weights<float> w(s.config);
    const model_config& c = w.config();
    detail::check_shapes(s, c);
    auto copy_matrix = [&](const stored_matrix& m, std::span<float> out) {
        const weight_matrix<float> matrix(m.type, m.bytes, m.out_dim, m.in_dim);
        for (std::size_t o = 0; o < m.out_dim; ++o) matrix.dequantize_row(o, out.data() + o * m.in_dim);
    };
    auto copy_vector = [](const std::vector<float>& v, std::span<float> out) { std::copy(v.begin(), v.end(), out.begin()); };
    copy_matrix(s.token_embedding, w.token_embedding());
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        const stored_layer& L = s.layers[l];
        copy_vector(L.attn_norm, w.rms_att(l));
        copy_matrix(L.wq, w.wq(l));
        copy_matrix(L.wk, w.wk(l));
        copy_matrix(L.wv, w.wv(l));
        copy_vector(L.bq, w.bq(l));
        copy_vector(L.bk, w.bk(l));
        copy_vector(L.bv, w.bv(l));
        copy_matrix(L.wo, w.wo(l));
        copy_vector(L.ffn_norm, w.rms_ffn(l));
        copy_matrix(L.w1, w.w1(l));
        copy_matrix(L.w2, w.w2(l));
        copy_matrix(L.w3, w.w3(l));
    }
    copy_vector(s.output_norm, w.rms_final());
    if (!c.shared_classifier) copy_matrix(s.output, w.separate_classifier());
    return w;
}

}  // namespace kvdecode
