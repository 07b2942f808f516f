#pragma once
// A GGUF file written in memory for the loader's tests: metadata of a few value
// types and tensors of any ggml type id with the caller's bytes, laid out as the
// format says (v3, little-endian, data aligned to 32). A test can write a whole small
// model from transformer_weights, then break one thing in it.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include "kvdecode/model/weights.hpp"

namespace kvtest {

struct gguf_builder {
    using value = std::variant<std::uint32_t, float, bool, std::string, std::vector<std::string>>;
    struct tensor {
        std::string name;
        std::vector<std::uint64_t> shape;  // ggml order: row length first
        std::uint32_t type = 0;            // ggml type id (0 f32, 1 f16, 8 q8_0, ...)
        std::vector<std::byte> data;
    };
    std::vector<std::pair<std::string, value>> metadata;
    std::vector<tensor> tensors;

    void set(const std::string& key, value v) {
        for (auto& [k, old] : metadata)
            if (k == key) {
                old = std::move(v);
                return;
            }
        metadata.emplace_back(key, std::move(v));
    }
    void erase(const std::string& key) {
        std::erase_if(metadata, [&](const auto& kv) { return kv.first == key; });
    }
    tensor* find(const std::string& name) {
        for (auto& t : tensors)
            if (t.name == name) return &t;
        return nullptr;
    }
    void remove(const std::string& name) {
        std::erase_if(tensors, [&](const tensor& t) { return t.name == name; });
    }
    void add_f32(const std::string& name, std::vector<std::uint64_t> shape, const float* values) {
        std::size_t n = 1;
        for (auto d : shape) n *= d;
        tensor t{name, std::move(shape), 0, std::vector<std::byte>(n * 4)};
        std::memcpy(t.data.data(), values, n * 4);
        tensors.push_back(std::move(t));
    }

    std::vector<std::byte> build() const {
        std::vector<std::byte> out;
        auto put = [&](const void* p, std::size_t n) {
            const auto* b = static_cast<const std::byte*>(p);
            out.insert(out.end(), b, b + n);
        };
        auto u32 = [&](std::uint32_t v) { put(&v, 4); };
        auto u64 = [&](std::uint64_t v) { put(&v, 8); };
        auto str = [&](const std::string& s) { u64(s.size()), put(s.data(), s.size()); };
        put("GGUF", 4);
        u32(3);
        u64(tensors.size());
        u64(metadata.size());
        for (const auto& [key, v] : metadata) {
            str(key);
            if (const auto* u = std::get_if<std::uint32_t>(&v)) u32(4), u32(*u);
            else if (const auto* f = std::get_if<float>(&v)) u32(6), put(f, 4);
            else if (const auto* b = std::get_if<bool>(&v)) {
                const std::uint8_t byte = *b;
                u32(7), put(&byte, 1);
            } else if (const auto* s = std::get_if<std::string>(&v)) u32(8), str(*s);
            else {
                const auto& list = std::get<std::vector<std::string>>(v);
                u32(9), u32(8), u64(list.size());
                for (const auto& s : list) str(s);
            }
        }
        std::uint64_t offset = 0;
        for (const tensor& t : tensors) {
            str(t.name);
            u32(static_cast<std::uint32_t>(t.shape.size()));
            for (auto d : t.shape) u64(d);
            u32(t.type);
            u64(offset);
            offset += (t.data.size() + 31) / 32 * 32;
        }
        out.resize((out.size() + 31) / 32 * 32);
        for (const tensor& t : tensors) {
            put(t.data.data(), t.data.size());
            out.resize((out.size() + 31) / 32 * 32);
        }
        return out;
    }
};

// The weights of w as a GGUF file of architecture `arch` (llama or qwen2), every
// tensor F32, with llama.cpp's names and keys (no tokenizer).
inline gguf_builder gguf_of(const kvdecode::transformer_weights<float>& w, const std::string& arch) {
    const kvdecode::model_config& c = w.config();
    gguf_builder g;
    g.set("general.architecture", arch);
    g.set(arch + ".context_length", static_cast<std::uint32_t>(c.seq_len));
    g.set(arch + ".embedding_length", static_cast<std::uint32_t>(c.dim));
    g.set(arch + ".block_count", static_cast<std::uint32_t>(c.n_layers));
    g.set(arch + ".feed_forward_length", static_cast<std::uint32_t>(c.hidden_dim));
    g.set(arch + ".attention.head_count", static_cast<std::uint32_t>(c.n_heads));
    g.set(arch + ".attention.head_count_kv", static_cast<std::uint32_t>(c.n_kv_heads));
    g.set(arch + ".attention.key_length", static_cast<std::uint32_t>(c.head_dim));
    g.set(arch + ".attention.value_length", static_cast<std::uint32_t>(c.head_dim));
    g.set(arch + ".attention.layer_norm_rms_epsilon", static_cast<float>(c.norm_eps));
    g.set(arch + ".rope.freq_base", static_cast<float>(c.rope_theta));
    g.set(arch + ".rope.dimension_count", static_cast<std::uint32_t>(c.head_dim));
    const std::uint64_t dim = c.dim, q = c.q_dim(), kv = c.kv_dim(), hidden = c.hidden_dim, vocab = c.vocab_size;
    g.add_f32("token_embd.weight", {dim, vocab}, w.token_embedding());
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        g.add_f32(b + "attn_norm.weight", {dim}, w.rms_att(l));
        g.add_f32(b + "attn_q.weight", {dim, q}, w.wq(l));
        g.add_f32(b + "attn_k.weight", {dim, kv}, w.wk(l));
        g.add_f32(b + "attn_v.weight", {dim, kv}, w.wv(l));
        if (const float* bias = w.bqkv(l)) {
            g.add_f32(b + "attn_q.bias", {q}, bias);
            g.add_f32(b + "attn_k.bias", {kv}, bias + q);
            g.add_f32(b + "attn_v.bias", {kv}, bias + q + kv);
        }
        g.add_f32(b + "attn_output.weight", {q, dim}, w.wo(l));
        g.add_f32(b + "ffn_norm.weight", {dim}, w.rms_ffn(l));
        g.add_f32(b + "ffn_gate.weight", {dim, hidden}, w.w1(l));
        g.add_f32(b + "ffn_down.weight", {hidden, dim}, w.w2(l));
        g.add_f32(b + "ffn_up.weight", {dim, hidden}, w.w3(l));
    }
    g.add_f32("output_norm.weight", {dim}, w.rms_final());
    if (!c.shared_classifier) g.add_f32("output.weight", {dim, vocab}, w.classifier());
    if (!c.rope_freq_factors.empty())
        g.add_f32("rope_freqs.weight", {c.rope_freq_factors.size()}, c.rope_freq_factors.data());
    return g;
}

}  // namespace kvtest
