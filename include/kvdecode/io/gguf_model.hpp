#pragma once
// A transformer from a GGUF file: the architecture read from the metadata, the
// tensors found by llama.cpp's names, every shape checked against the config, each
// matrix kept in its file type (block types used in place in the mapping, but q8_0,
// interleaved once at load: quant/q8_0_interleaved.hpp).
//
// Architectures are data, not code paths: `general.architecture` picks a small table
// of differences, and everything else is read from `<arch>.*` keys.
//   llama  Llama 1/2/3, Mistral, TinyLlama, SmolLM, llama2.c conversions: RoPE on
//          adjacent pairs (llama.cpp's converter permutes Hugging Face Q/K rows to
//          that layout), q/k/v biases only if the file has them;
//   qwen2  RoPE on halves (NEOX), q/k/v biases required.
// Keys: context_length, embedding_length, block_count, feed_forward_length,
// attention.head_count, attention.head_count_kv (default head_count),
// attention.key_length / value_length (head_dim; default embedding_length /
// head_count), attention.layer_norm_rms_epsilon, rope.freq_base (default 10000),
// rope.dimension_count (must be head_dim), rope.scaling.type (none or linear) with
// rope.scaling.factor (or the older rope.scale_linear). The vocabulary size is
// token_embd's row count (checked against tokenizer.ggml.tokens and
// `<arch>.vocab_size` where present); no output.weight means a tied classifier;
// rope_freqs.weight holds Llama 3's per-pair frequency divisors.
// Tensors (ggml shapes, row length first):
//   token_embd.weight [dim, vocab]        output_norm.weight [dim]   output.weight [dim, vocab]
//   blk.N.attn_norm.weight [dim]          blk.N.ffn_norm.weight [dim]
//   blk.N.attn_q.weight [dim, q_dim]      blk.N.attn_k.weight / attn_v.weight [dim, kv_dim]
//   blk.N.attn_q.bias [q_dim]             blk.N.attn_k.bias / attn_v.bias [kv_dim]
//   blk.N.attn_output.weight [q_dim, dim]
//   blk.N.ffn_gate.weight / ffn_up.weight [dim, hidden]   blk.N.ffn_down.weight [hidden, dim]
// A tensor the model does not use is an error too: ignoring it would silently compute
// another model than the file describes.
//
// Errors are gguf_error (a model_format_error) naming the file, the key or tensor,
// and what was expected and found.

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kvdecode/core/model_config.hpp"
#include "kvdecode/core/types.hpp"
#include "kvdecode/io/gguf.hpp"
#include "kvdecode/model/packed_weights.hpp"
#include "kvdecode/model/stored_weights.hpp"
#include "kvdecode/model/transformer.hpp"
#include "kvdecode/quant/weight_matrix.hpp"
#include "kvdecode/quant/weight_type.hpp"

namespace kvdecode {

// The special token ids a GGUF file names (tokenizer.ggml.*), each checked to be a
// token of the model; what a decoder needs for BOS and EOS.
struct gguf_token_ids {
    std::optional<token_id> bos;      // tokenizer.ggml.bos_token_id
    std::optional<token_id> eos;      // tokenizer.ggml.eos_token_id
    std::optional<token_id> padding;  // tokenizer.ggml.padding_token_id
    std::optional<token_id> unknown;  // tokenizer.ggml.unknown_token_id
    std::optional<bool> add_bos;      // tokenizer.ggml.add_bos_token, where the file says
    std::optional<bool> add_eos;      // tokenizer.ggml.add_eos_token, where the file says
};

// The weight_type a GGUF tensor type is stored as here (same name, same block
// layout), or nullopt where kvdecode has none.
inline std::optional<weight_type> weight_type_of(gguf_type type) {
    std::string name(to_string(type));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (weight_type t : all_weight_types) {
        if (to_string(t) != name) continue;
        const gguf_type_traits& g = traits(type);
        if (g.block_values != block_values(t) || g.block_bytes != block_bytes(t)) return std::nullopt;  // not the same layout
        return t;
    }
    return std::nullopt;
}

namespace detail {

// What differs between the architectures the loader knows.
struct gguf_architecture {
    std::string_view name;
    rope_layout rope;
    bool requires_qkv_bias;
};

inline constexpr gguf_architecture gguf_architectures[] = {
    {"llama", rope_layout::interleaved, false},
    {"qwen2", rope_layout::rotate_half, true},
};

class gguf_model_reader {
public:
    explicit gguf_model_reader(const gguf_file& file) : file_(file) {}

    stored_weights read() {
        stored_weights s;
        s.config = config();
        const model_config& c = s.config;
        s.owner = file_.owner();
        s.token_embedding = matrix("token_embd.weight", c.dim, c.vocab_size);
        s.layers.resize(c.n_layers);
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            const std::string blk = "blk." + std::to_string(l) + ".";
            stored_layer& L = s.layers[l];
            L.attn_norm = vector(blk + "attn_norm.weight", c.dim);
            L.wq = matrix(blk + "attn_q.weight", c.dim, c.q_dim());
            L.wk = matrix(blk + "attn_k.weight", c.dim, c.kv_dim());
            L.wv = matrix(blk + "attn_v.weight", c.dim, c.kv_dim());
            if (c.qkv_bias) {
                L.bq = vector(blk + "attn_q.bias", c.q_dim());
                L.bk = vector(blk + "attn_k.bias", c.kv_dim());
                L.bv = vector(blk + "attn_v.bias", c.kv_dim());
            }
            L.wo = matrix(blk + "attn_output.weight", c.q_dim(), c.dim);
            L.ffn_norm = vector(blk + "ffn_norm.weight", c.dim);
            L.w1 = matrix(blk + "ffn_gate.weight", c.dim, c.hidden_dim);
            L.w2 = matrix(blk + "ffn_down.weight", c.hidden_dim, c.dim);
            L.w3 = matrix(blk + "ffn_up.weight", c.dim, c.hidden_dim);
        }
        s.output_norm = vector("output_norm.weight", c.dim);
        if (!c.shared_classifier) s.output = matrix("output.weight", c.dim, c.vocab_size);
        for (const gguf_tensor_info& t : file_.tensors())
            if (!used_.contains(t.name))
                fail("tensor '" + t.name + "'", "is not a tensor of kvdecode's " + arch_ + " model (shape " +
                                                     shape_string(t.shape) + ", type " + lower(to_string(t.type)) +
                                                     "); it would be ignored");
        return s;
    }

    model_config config() {
        arch_ = file_.string("general.architecture");
        const gguf_architecture* arch = nullptr;
        for (const auto& a : gguf_architectures)
            if (a.name == arch_) arch = &a;
        if (arch == nullptr) {
            std::string known;
            for (const auto& a : gguf_architectures) known += (known.empty() ? "" : ", ") + std::string(a.name);
            fail("key 'general.architecture'", "is '" + arch_ + "', which kvdecode does not support; supported: " + known);
        }
        model_config c;
        c.seq_len = count("context_length");
        c.dim = count("embedding_length");
        c.n_layers = count("block_count");
        c.hidden_dim = count("feed_forward_length");
        c.n_heads = count("attention.head_count");
        c.n_kv_heads = optional_count("attention.head_count_kv").value_or(c.n_heads);
        const auto key_length = optional_count("attention.key_length");
        const auto value_length = optional_count("attention.value_length");
        if (key_length && value_length && *key_length != *value_length)
            fail(key("attention.value_length"), "is " + std::to_string(*value_length) + ", but key_length is " +
                                                    std::to_string(*key_length) + "; kvdecode needs them equal");
        c.head_dim = key_length ? *key_length : value_length.value_or(0);
        c.norm_eps = file_.real(arch_ + ".attention.layer_norm_rms_epsilon");
        c.rope = arch->rope;
        c.rope_theta = file_.find_real(arch_ + ".rope.freq_base").value_or(10000.0);
        rope_scaling(c);

        // The vocabulary: token_embd's rows, which the other sources must agree with.
        const gguf_tensor_info& embd = file_.tensor("token_embd.weight");
        if (embd.shape.size() != 2) fail(tensor_field(embd.name), "has shape " + shape_string(embd.shape) + "; expected 2 dimensions");
        c.vocab_size = static_cast<std::size_t>(embd.shape[1]);
        if (file_.has("tokenizer.ggml.tokens")) {
            const std::size_t tokens = file_.array("tokenizer.ggml.tokens").size();
            if (tokens != c.vocab_size)
                fail("key 'tokenizer.ggml.tokens'", "has " + std::to_string(tokens) + " tokens, but token_embd.weight has " +
                                                        std::to_string(c.vocab_size) + " rows");
        }
        if (const auto v = optional_count("vocab_size"); v && *v != c.vocab_size)
            fail(key("vocab_size"), "is " + std::to_string(*v) + ", but token_embd.weight has " +
                                        std::to_string(c.vocab_size) + " rows");
        c.shared_classifier = file_.find_tensor("output.weight") == nullptr;
        c.qkv_bias = arch->requires_qkv_bias || file_.find_tensor("blk.0.attn_q.bias") != nullptr;
        try {
            c = validated(c);
        } catch (const std::invalid_argument& e) {
            fail("metadata", std::string(e.what()).substr(std::string_view("kvdecode: ").size()));
        }
        if (const auto dims = optional_count("rope.dimension_count"); dims && *dims != c.head_dim)
            fail(key("rope.dimension_count"), "is " + std::to_string(*dims) + ", but head_dim is " +
                                                  std::to_string(c.head_dim) +
                                                  "; kvdecode rotates whole heads (partial rotary embedding is not supported)");
        if (file_.find_tensor("rope_freqs.weight")) {
            c.rope_freq_factors = vector("rope_freqs.weight", c.head_dim / 2);
            try {
                c = validated(c);
            } catch (const std::invalid_argument& e) {
                fail("tensor 'rope_freqs.weight'", std::string(e.what()).substr(std::string_view("kvdecode: ").size()));
            }
        }
        return c;
    }

    gguf_token_ids token_ids(std::size_t vocab_size) const {
        gguf_token_ids ids;
        auto id = [&](const char* k) -> std::optional<token_id> {
            const std::string full = std::string("tokenizer.ggml.") + k;
            // llama.cpp writes 0xFFFFFFFF (its null token, -1) for "none", e.g. a padding id.
            const auto v = file_.has(full) && file_.int_(full) == -1 ? std::nullopt : file_.find_uint(full);
            if (!v || *v == 0xFFFFFFFFu) return std::nullopt;
            if (*v >= vocab_size)
                fail("key '" + full + "'", "is " + std::to_string(*v) + ", not a token id (vocabulary of " +
                                               std::to_string(vocab_size) + ")");
            return static_cast<token_id>(*v);
        };
        ids.bos = id("bos_token_id");
        ids.eos = id("eos_token_id");
        ids.padding = id("padding_token_id");
        ids.unknown = id("unknown_token_id");
        ids.add_bos = file_.find_bool("tokenizer.ggml.add_bos_token");
        ids.add_eos = file_.find_bool("tokenizer.ggml.add_eos_token");
        return ids;
    }

private:
    [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
        throw gguf_error(file_.name(), field, problem);
    }
    std::string key(const std::string& suffix) const { return "key '" + arch_ + "." + suffix + "'"; }
    static std::string tensor_field(const std::string& name) { return "tensor '" + name + "'"; }
    static std::string lower(std::string_view s) {
        std::string out(s);
        std::transform(out.begin(), out.end(), out.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
        return out;
    }
    static std::string shape_string(const std::vector<std::uint64_t>& shape) {
        std::string s = "[";
        for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
        return s + "]";
    }

    // A positive count under `<arch>.`, bounded so every product of counts stays far
    // from overflow (model_config's validation does the rest).
    std::optional<std::size_t> optional_count(const std::string& suffix) const {
        const auto v = file_.find_uint(arch_ + "." + suffix);
        if (!v) return std::nullopt;
        if (*v == 0 || *v > (std::uint64_t{1} << 32)) fail(key(suffix), "is " + std::to_string(*v) + "; expected 1 to 2^32");
        return static_cast<std::size_t>(*v);
    }
    std::size_t count(const std::string& suffix) const {
        if (const auto v = optional_count(suffix)) return *v;
        fail(key(suffix), "is missing");
    }

    void rope_scaling(model_config& c) const {
        const auto type = file_.find_string(arch_ + ".rope.scaling.type");
        auto factor = file_.find_real(arch_ + ".rope.scaling.factor");
        if (!factor) factor = file_.find_real(arch_ + ".rope.scale_linear");
        if (type && *type != "none" && *type != "linear")
            fail(key("rope.scaling.type"), "is '" + *type + "', which kvdecode does not support; supported: none, linear");
        if (type && *type == "none") return;
        if (factor && *factor != 0.0) {  // llama.cpp reads 0 as no scaling
            if (!(*factor > 0.0) || !std::isfinite(*factor))
                fail(key("rope.scaling.factor"), "is " + std::to_string(*factor) + "; expected a positive factor");
            c.rope_linear_scale = *factor;
        }
    }

    const gguf_tensor_info& tensor(const std::string& name, const std::vector<std::uint64_t>& shape) {
        const gguf_tensor_info& t = file_.tensor(name);
        if (t.shape != shape)
            fail(tensor_field(name), "expected shape " + shape_string(shape) + ", found " + shape_string(t.shape));
        used_.insert(name);
        return t;
    }

    weight_type type_of(const gguf_tensor_info& t) const {
        if (const auto w = weight_type_of(t.type)) return *w;
        fail(tensor_field(t.name), "has type " + lower(to_string(t.type)) + ", which kvdecode does not support; supported: " +
                                       weight_type_names());
    }

    // A matrix of `rows` rows of `row_length` values (ggml shape [row_length, rows]).
    stored_matrix matrix(const std::string& name, std::size_t row_length, std::size_t rows) {
        const gguf_tensor_info& t = tensor(name, {row_length, rows});
        return {type_of(t), file_.data(t), rows, row_length};
    }

    // A vector of n values of any supported type, as float.
    std::vector<float> vector(const std::string& name, std::size_t n) {
        const gguf_tensor_info& t = tensor(name, {n});
        const weight_type type = type_of(t);
        std::vector<float> out(n);
        weight_matrix<float>(type, file_.data(t), 1, n).dequantize_row(0, out.data());
        return out;
    }

    const gguf_file& file_;
    std::string arch_;
    std::set<std::string, std::less<>> used_;
};

}  // namespace detail

// The model's shape as the file's metadata describes it (and token_embd's rows).
inline model_config gguf_model_config(const gguf_file& file) { return detail::gguf_model_reader(file).config(); }

// Every weight as the file stores it, spans into the file's bytes (kept alive by
// file.owner(), or by the caller for a file read from memory).
inline stored_weights gguf_stored_weights(const gguf_file& file) { return detail::gguf_model_reader(file).read(); }

// The packed weights, shareable between models. Block-type matrices stay in the
// mapping (which they keep alive: the gguf_file may go); from_memory files are copied.
inline std::shared_ptr<const packed_weights<float>> load_gguf_weights(const gguf_file& file) {
    return std::make_shared<const packed_weights<float>>(gguf_stored_weights(file));
}

inline transformer<float> load_gguf_model(const gguf_file& file) { return transformer<float>(load_gguf_weights(file)); }
inline transformer<float> load_gguf_model(const std::filesystem::path& path) { return load_gguf_model(gguf_file::open(path)); }

// BOS, EOS, padding and unknown ids, and whether the vocabulary adds BOS/EOS.
inline gguf_token_ids gguf_special_tokens(const gguf_file& file) {
    const gguf_tensor_info& embd = file.tensor("token_embd.weight");
    const std::size_t vocab = embd.shape.size() == 2 ? static_cast<std::size_t>(embd.shape[1]) : 0;
    return detail::gguf_model_reader(file).token_ids(vocab);
}

}  // namespace kvdecode
