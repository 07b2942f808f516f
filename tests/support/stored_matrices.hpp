#pragma once
// Weights written in a file's layout (as a GGUF writer stores them), for tests of
// the stored-weight path without a file: one matrix, or a whole model with a type
// chosen per matrix.

#include <cstddef>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvdecode/model/stored_weights.hpp"
#include "kvdecode/model/weights.hpp"
#include "kvdecode/quant/half.hpp"
#include "kvdecode/quant/q4_q5.hpp"
#include "kvdecode/quant/q8_0.hpp"
#include "kvdecode/quant/weight_type.hpp"

namespace kvtest {

// W (out_dim, in_dim), row-major, in the file layout of `type`: f32 as is, f16/bf16
// rounded to nearest, q8_0 and q4_0 quantised by the reference quantisers.
inline std::vector<std::byte> to_stored(kvdecode::weight_type type, const float* w, std::size_t out_dim,
                                        std::size_t in_dim) {
    using kvdecode::weight_type;
    namespace quant = kvdecode::quant;
    const std::size_t row = kvdecode::row_bytes(type, in_dim);
    std::vector<std::byte> bytes(out_dim * row);
    for (std::size_t o = 0; o < out_dim; ++o) {
        std::byte* dst = bytes.data() + o * row;
        const float* src = w + o * in_dim;
        switch (type) {
            case weight_type::f32: std::memcpy(dst, src, in_dim * sizeof(float)); break;
            case weight_type::f16:
            case weight_type::bf16:
                for (std::size_t k = 0; k < in_dim; ++k) {
                    const std::uint16_t h = type == weight_type::f16 ? quant::f32_to_f16(src[k]) : quant::f32_to_bf16(src[k]);
                    std::memcpy(dst + 2 * k, &h, 2);
                }
                break;
            case weight_type::q8_0: {
                std::vector<quant::block_q8_0> blocks(quant::q8_0_blocks(in_dim));
                quant::quantize_row_q8_0(src, blocks.data(), in_dim);
                std::memcpy(dst, blocks.data(), row);
                break;
            }
            case weight_type::q4_0: {
                std::vector<quant::block_q4_0> blocks(quant::legacy_blocks(in_dim));
                quant::quantize_row_legacy(src, blocks.data(), in_dim);
                std::memcpy(dst, blocks.data(), row);
                break;
            }
            default: throw std::invalid_argument("to_stored: no test writer for " + std::string(to_string(type)));
        }
    }
    return bytes;
}

// The stored form of w, each matrix in type_of(name, layer) ("token_embedding",
// "output" with layer 0; "wq", "wk", "wv", "wo", "w1", "w2", "w3"). The bytes live in
// the returned weights' owner.
inline kvdecode::stored_weights to_stored_weights(
    const kvdecode::transformer_weights<float>& w,
    const std::function<kvdecode::weight_type(const std::string&, std::size_t)>& type_of) {
    auto buffers = std::make_shared<std::vector<std::vector<std::byte>>>();
    buffers->reserve(8 * w.config().n_layers + 2);
    auto matrix = [&](const std::string& name, std::size_t layer, const float* m, std::size_t out_dim,
                      std::size_t in_dim) {
        const kvdecode::weight_type type = type_of(name, layer);
        buffers->push_back(to_stored(type, m, out_dim, in_dim));
        return kvdecode::stored_matrix{type, buffers->back(), out_dim, in_dim};
    };
    auto vec = [](const float* v, std::size_t n) { return v ? std::vector<float>(v, v + n) : std::vector<float>(); };
    const kvdecode::model_config& c = w.config();
    kvdecode::stored_weights s;
    s.config = c;
    s.token_embedding = matrix("token_embedding", 0, w.token_embedding(), c.vocab_size, c.dim);
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        kvdecode::stored_layer L;
        L.attn_norm = vec(w.rms_att(l), c.dim);
        L.wq = matrix("wq", l, w.wq(l), c.q_dim(), c.dim);
        L.wk = matrix("wk", l, w.wk(l), c.kv_dim(), c.dim);
        L.wv = matrix("wv", l, w.wv(l), c.kv_dim(), c.dim);
        if (const float* b = w.bqkv(l)) {
            L.bq = vec(b, c.q_dim());
            L.bk = vec(b + c.q_dim(), c.kv_dim());
            L.bv = vec(b + c.q_dim() + c.kv_dim(), c.kv_dim());
        }
        L.wo = matrix("wo", l, w.wo(l), c.dim, c.q_dim());
        L.ffn_norm = vec(w.rms_ffn(l), c.dim);
        L.w1 = matrix("w1", l, w.w1(l), c.hidden_dim, c.dim);
        L.w2 = matrix("w2", l, w.w2(l), c.dim, c.hidden_dim);
        L.w3 = matrix("w3", l, w.w3(l), c.hidden_dim, c.dim);
        s.layers.push_back(std::move(L));
    }
    s.output_norm = vec(w.rms_final(), c.dim);
    if (!c.shared_classifier) s.output = matrix("output", 0, w.classifier(), c.vocab_size, c.dim);
    s.owner = buffers;
    return s;
}

}  // namespace kvtest
