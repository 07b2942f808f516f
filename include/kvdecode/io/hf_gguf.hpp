#pragma once
// Conversion of a Hugging Face model (io/hf_model.hpp) to GGUF, as llama.cpp reads it
// (what kvdecode-quantize does with a folder). The layout is llama.cpp's own
// converter's (convert_hf_to_gguf.py), so the tensors of an F32 or Q8_0 file are the
// bytes that converter writes (tests/io/hf_gguf_test.cpp compares them):
//   - LlamaForCausalLM and MistralForCausalLM become general.architecture `llama`,
//     with Q and K rows permuted from Hugging Face's rotate-half layout to the
//     adjacent pairs llama.cpp's `llama` rotates (within each head, row 2i is the
//     head's row i and row 2i+1 its row head_dim/2 + i); Qwen2ForCausalLM becomes
//     `qwen2`, which rotates halves: nothing permuted, q/k/v biases as
//     blk.N.attn_{q,k,v}.bias;
//   - tied embeddings: no output.weight (llama.cpp then uses token_embd);
//   - Llama 3 RoPE scaling: rope_freqs.weight, the head_dim/2 frequency divisors;
//     linear scaling: rope.scaling.type linear and rope.scaling.factor.
// Where the converter loses information, this does not: rope_theta is taken from
// either config spelling (the converter reads only the top-level key and silently
// writes none for transformers 5's rope_parameters), and the Llama 3 divisors use
// original_max_position_embeddings from the scaling settings, where transformers
// reads it (the converter reads the top level, defaulting to 8192).
//
// Types: every matrix becomes options.type (output.weight: options.output_type), with
// gguf_convert.hpp's fallbacks where a row does not hold whole blocks; vectors are F32.
// The vocabulary is not written here (io/hf_gguf_vocab.hpp writes it).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kvdecode/io/gguf_convert.hpp"
#include "kvdecode/io/hf_config.hpp"
#include "kvdecode/model/stored_weights.hpp"
#include "kvdecode/quant/weight_matrix.hpp"

namespace kvdecode {

// `weights` (hf_stored_weights of `config`) as a GGUF file of options.type. The result
// refers to nothing of `weights`: every tensor is converted into bytes it owns.
inline gguf_conversion gguf_from_hf(const hf_config& config, const stored_weights& weights,
                                    const gguf_convert_options& o = {}) {
    const model_config& c = weights.config;
    const bool qwen2 = config.architecture == "Qwen2ForCausalLM";
    const std::string arch = qwen2 ? "qwen2" : "llama";
    gguf_conversion out;
    gguf_writer& f = out.file;
    auto u32 = [](std::size_t v) {
        if (v > UINT32_MAX) throw std::invalid_argument("kvdecode: gguf conversion: " + std::to_string(v) + " does not fit uint32");
        return gguf_value(static_cast<std::uint32_t>(v));
    };
    f.set("general.architecture", gguf_value(arch));
    f.set("general.name", gguf_value(o.name.value_or(arch)));
    f.set(arch + ".context_length", u32(c.seq_len));
    f.set(arch + ".embedding_length", u32(c.dim));
    f.set(arch + ".feed_forward_length", u32(c.hidden_dim));
    f.set(arch + ".block_count", u32(c.n_layers));
    f.set(arch + ".attention.head_count", u32(c.n_heads));
    f.set(arch + ".attention.head_count_kv", u32(c.n_kv_heads));
    f.set(arch + ".attention.key_length", u32(c.head_dim));
    f.set(arch + ".attention.value_length", u32(c.head_dim));
    f.set(arch + ".rope.dimension_count", u32(c.head_dim));
    f.set(arch + ".attention.layer_norm_rms_epsilon", gguf_value(static_cast<float>(c.norm_eps)));
    f.set(arch + ".rope.freq_base", gguf_value(static_cast<float>(c.rope_theta)));
    f.set(arch + ".vocab_size", u32(c.vocab_size));
    if (c.rope_linear_scale != 1.0) {
        f.set(arch + ".rope.scaling.type", gguf_value(std::string("linear")));
        f.set(arch + ".rope.scaling.factor", gguf_value(static_cast<float>(c.rope_linear_scale)));
    }
    detail::set_file_type(f, o);

    // A stored (rows, row_length) matrix, or a vector, as the GGUF tensor [row_length, rows];
    // `source_row(r)` picks the stored row that becomes row r.
    auto add_matrix = [&](const std::string& name, const stored_matrix& m, auto source_row) {
        const weight_matrix<float> w(m.type, m.bytes, m.out_dim, m.in_dim);
        const std::vector<std::uint64_t> shape = {m.in_dim, m.out_dim};
        detail::add_converted(out, name, shape, detail::target_type(name, shape, o), o.threads,
                              [&](std::size_t r, float* buffer) {
                                  w.dequantize_row(source_row(r), buffer);
                                  return static_cast<const float*>(buffer);
                              });
    };
    auto same = [](std::size_t r) { return r; };
    // llama.cpp's permute(): within each head of head_dim rows, row 2i + j comes from row
    // j * head_dim/2 + i (j = 0, 1).
    auto to_adjacent_pairs = [&](std::size_t r) {
        const std::size_t head = r / c.head_dim, k = r % c.head_dim, half = c.head_dim / 2;
        return head * c.head_dim + (k % 2) * half + k / 2;
    };
    auto add_vector = [&](const std::string& name, const std::vector<float>& v) {
        detail::add_converted(out, name, {v.size()}, weight_type::f32, 1,
                              [&](std::size_t, float*) { return v.data(); });
    };

    add_matrix("token_embd.weight", weights.token_embedding, same);
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        const stored_layer& L = weights.layers[l];
        const std::string b = "blk." + std::to_string(l) + ".";
        add_vector(b + "attn_norm.weight", L.attn_norm);
        if (qwen2) {
            add_matrix(b + "attn_q.weight", L.wq, same);
            add_matrix(b + "attn_k.weight", L.wk, same);
        } else {
            add_matrix(b + "attn_q.weight", L.wq, to_adjacent_pairs);
            add_matrix(b + "attn_k.weight", L.wk, to_adjacent_pairs);
        }
        add_matrix(b + "attn_v.weight", L.wv, same);
        if (c.qkv_bias) {
            add_vector(b + "attn_q.bias", L.bq);
            add_vector(b + "attn_k.bias", L.bk);
            add_vector(b + "attn_v.bias", L.bv);
        }
        add_matrix(b + "attn_output.weight", L.wo, same);
        add_vector(b + "ffn_norm.weight", L.ffn_norm);
        add_matrix(b + "ffn_gate.weight", L.w1, same);
        add_matrix(b + "ffn_up.weight", L.w3, same);
        add_matrix(b + "ffn_down.weight", L.w2, same);
    }
    add_vector("output_norm.weight", weights.output_norm);
    if (!c.shared_classifier) add_matrix("output.weight", weights.output, same);
    if (!c.rope_freq_factors.empty()) add_vector("rope_freqs.weight", c.rope_freq_factors);
    return out;
}

}  // namespace kvdecode
