#pragma once
// A Hugging Face config.json (and generation_config.json) read into kvdecode's
// model_config, for the architectures whose computation kvdecode implements exactly:
//   LlamaForCausalLM    Llama 1/2/3, TinyLlama, SmolLM, Vicuna...
//   MistralForCausalLM  Mistral (a sliding window limits the context, see below)
//   Qwen2ForCausalLM    Qwen2, Qwen2.5: q/k/v biases
// Architectures are data: the table below holds what differs, everything else is read
// from the same keys. Both spellings of the RoPE settings are read: the older
// `rope_theta` + `rope_scaling` that most published checkpoints carry, and transformers
// 5's `rope_parameters` {rope_type, rope_theta, factor, ...}. RoPE scaling types:
// default, linear (positions divided by `factor`) and llama3 (per-frequency divisors,
// computed here as transformers' _compute_llama3_parameters does, from the
// original_max_position_embeddings inside the scaling settings).
//
// Hugging Face checkpoints store Q and K for the rotate-half RoPE layout (pairs i and
// i + head_dim/2), which is how kvdecode rotates them for these models: no permutation.
//
// Anything that would change the computation and that kvdecode does not implement is
// an error naming the key (never silently ignored): another architecture or
// hidden_act, biases on o_proj or the MLP, partial rotary embeddings, another RoPE
// scaling type. An active sliding window (Mistral v0.1's 4096, Qwen2 with
// use_sliding_window) is exact for contexts within the window, so the context length
// becomes the window.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <numbers>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvdecode/core/model_config.hpp"
#include "kvdecode/core/types.hpp"
#include "kvdecode/io/detail/json_file.hpp"

namespace kvdecode {

struct hf_config {
    std::string architecture;  // architectures[0], e.g. "Qwen2ForCausalLM"
    model_config model;        // validated
    std::optional<token_id> bos, pad;
    std::vector<token_id> eos;         // eos_token_id: one id or a list
    std::string dtype;                 // torch_dtype / dtype as written ("bfloat16"...), or empty
    std::string rope_type = "default";  // default, linear or llama3
    std::size_t max_position_embeddings = 0;  // as written (the context may be a sliding window less)
};

// generation_config.json: the defaults transformers' generate() starts from. Absent
// keys stay unset; the caller's own options override them.
struct hf_generation_config {
    std::optional<token_id> bos, pad;
    std::vector<token_id> eos;
    std::optional<bool> do_sample;
    std::optional<double> temperature, top_p, min_p, repetition_penalty, length_penalty;
    std::optional<std::size_t> top_k, max_new_tokens, max_length, min_new_tokens, num_beams;
    std::optional<std::string> early_stopping;  // "true", "false" or "never"
};

namespace detail {

struct hf_architecture {
    std::string_view name;        // architectures[0]
    std::string_view model_type;  // model_type
    bool qkv_bias;                // q/k/v projections always have biases
    bool tied_by_default;         // the config class's tie_word_embeddings default
};

inline constexpr hf_architecture hf_architectures[] = {
    {"LlamaForCausalLM", "llama", false, false},
    {"MistralForCausalLM", "mistral", false, false},
    {"Qwen2ForCausalLM", "qwen2", true, false},
};

class hf_config_reader {
public:
    explicit hf_config_reader(const json_file& file) : f_(file) {}

    hf_config read() {
        hf_config h;
        h.architecture = architecture();
        const hf_architecture& arch = *arch_;
        model_config& c = h.model;
        constexpr std::uint64_t big = std::uint64_t{1} << 32;
        c.dim = required("hidden_size", big);
        c.hidden_dim = required("intermediate_size", big);
        c.n_layers = required("num_hidden_layers", big);
        c.n_heads = required("num_attention_heads", big);
        c.n_kv_heads = f_.count("num_key_value_heads", big).value_or(c.n_heads);
        c.head_dim = f_.count("head_dim", big).value_or(0);
        c.vocab_size = required("vocab_size", big);
        h.max_position_embeddings = required("max_position_embeddings", big);
        c.seq_len = h.max_position_embeddings;
        c.norm_eps = f_.number("rms_norm_eps").value_or(1e-6);
        c.shared_classifier = f_.boolean("tie_word_embeddings").value_or(arch.tied_by_default);
        c.rope = rope_layout::rotate_half;
        c.qkv_bias = arch.qkv_bias;
        h.dtype = f_.string("torch_dtype").value_or(f_.string("dtype").value_or(""));

        if (const auto act = f_.string("hidden_act"); act && *act != "silu")
            f_.fail(field("hidden_act"), "is '" + *act + "'; kvdecode's MLP is SwiGLU (silu)");
        if (f_.boolean("attention_bias").value_or(false) && !arch.qkv_bias)
            f_.fail(field("attention_bias"), "is true: biases on q, k, v and o_proj are not supported (o_proj has none in kvdecode)");
        if (f_.boolean("mlp_bias").value_or(false)) f_.fail(field("mlp_bias"), "is true: MLP biases are not supported");
        if (const auto p = f_.number("partial_rotary_factor"); p && *p != 1.0)
            f_.fail(field("partial_rotary_factor"), "is " + std::to_string(*p) + ": kvdecode rotates whole heads");
        sliding_window(c);
        rope(h);

        h.bos = token(f_.count("bos_token_id", big), "bos_token_id", c.vocab_size);
        h.pad = token(f_.count("pad_token_id", big), "pad_token_id", c.vocab_size);
        for (std::uint64_t id : f_.counts("eos_token_id", big)) h.eos.push_back(*token(id, "eos_token_id", c.vocab_size));
        try {
            c = validated(c);
        } catch (const std::invalid_argument& e) {
            f_.fail("config", std::string(e.what()).substr(std::string_view("kvdecode: ").size()));
        }
        return h;
    }

private:
    static std::string field(std::string_view key) { return json_file::field(key); }

    std::size_t required(std::string_view key, std::uint64_t max) const {
        const auto v = f_.count(key, max);
        if (!v) f_.fail(field(key), "is missing");
        if (*v == 0) f_.fail(field(key), "is 0; expected a positive count");
        return static_cast<std::size_t>(*v);
    }

    std::optional<token_id> token(std::optional<std::uint64_t> id, std::string_view key, std::size_t vocab) const {
        if (!id) return std::nullopt;
        if (*id >= vocab)
            f_.fail(field(key), "is " + std::to_string(*id) + ", not a token id (vocab_size " + std::to_string(vocab) + ")");
        return static_cast<token_id>(*id);
    }

    std::string architecture() {
        const auto* list = f_.find("architectures");
        if (!list || !list->is_array() || list->size() != 1 || !(*list)[0].is_string())
            f_.fail(field("architectures"), "expected a list of one architecture name, found " +
                                                 (list ? list->dump() : std::string("none")));
        const std::string name = (*list)[0].get<std::string>();
        std::string known;
        for (const auto& a : hf_architectures) {
            known += (known.empty() ? "" : ", ") + std::string(a.name);
            if (a.name == name) arch_ = &a;
        }
        if (!arch_) f_.fail(field("architectures"), "is '" + name + "', which kvdecode does not support; supported: " + known);
        if (const auto type = f_.string("model_type"); type && *type != arch_->model_type)
            f_.fail(field("model_type"), "is '" + *type + "', but " + name + " is '" + std::string(arch_->model_type) + "'");
        return name;
    }

    // A window narrower than the context makes positions beyond it attend differently;
    // within it, full attention is exact.
    void sliding_window(model_config& c) const {
        bool active = f_.boolean("use_sliding_window").value_or(arch_->model_type == "mistral");
        if (const auto* types = f_.find("layer_types")) {
            if (!types->is_array()) f_.fail(field("layer_types"), "is " + types->dump() + "; expected a list");
            for (const auto& t : *types) {
                if (!t.is_string() || (t != "full_attention" && t != "sliding_attention"))
                    f_.fail(field("layer_types"), "has " + t.dump() + "; supported: full_attention, sliding_attention");
                if (t == "sliding_attention") active = true;
            }
        }
        if (!active) return;
        if (const auto w = f_.count("sliding_window", std::uint64_t{1} << 32); w && *w > 0 && *w < c.seq_len)
            c.seq_len = static_cast<std::size_t>(*w);
    }

    // rope_theta and rope scaling, in either spelling.
    void rope(hf_config& h) const {
        model_config& c = h.model;
        const json_file::json* params = f_.find("rope_parameters");
        const json_file::json* scaling = f_.find("rope_scaling");
        if (params && !params->is_object()) f_.fail(field("rope_parameters"), "is " + params->dump() + "; expected an object");
        if (scaling && !scaling->is_object()) f_.fail(field("rope_scaling"), "is " + scaling->dump() + "; expected an object");
        const json_file::json* s = params ? params : scaling;
        const std::string where = params ? "rope_parameters" : "rope_scaling";
        c.rope_theta = f_.number("rope_theta").value_or(10000.0);
        if (params)
            if (const auto theta = f_.number("rope_theta", params)) c.rope_theta = *theta;
        if (!s) return;
        auto type = f_.string("rope_type", s);
        if (!type) type = f_.string("type", s);
        h.rope_type = type.value_or("default");
        auto factor = [&]() {
            const auto v = f_.number("factor", s);
            if (!v || !(*v >= 1.0) || !std::isfinite(*v))
                f_.fail(field(where + ".factor"), v ? "is " + std::to_string(*v) + "; expected a factor of at least 1" : "is missing");
            return *v;
        };
        if (h.rope_type == "default") return;
        if (h.rope_type == "linear") {
            c.rope_linear_scale = factor();
        } else if (h.rope_type == "llama3") {
            llama3_factors(c, *s, factor(), where);
        } else {
            f_.fail(field(where + ".rope_type"),
                    "is '" + h.rope_type + "', which kvdecode does not support; supported: default, linear, llama3");
        }
    }

    // transformers' _compute_llama3_parameters, as divisors of each pair's frequency:
    // wavelengths shorter than original/high_freq_factor are kept, longer than
    // original/low_freq_factor divided by `factor`, and those between interpolated.
    void llama3_factors(model_config& c, const json_file::json& s, double factor, const std::string& where) const {
        const double low = f_.number("low_freq_factor", &s).value_or(1.0);
        const double high = f_.number("high_freq_factor", &s).value_or(4.0);
        const auto original = f_.count("original_max_position_embeddings", std::uint64_t{1} << 32, &s);
        if (!original || *original == 0) f_.fail(field(where + ".original_max_position_embeddings"), "is missing or 0");
        if (!(low > 0.0) || !(high > low))
            f_.fail(field(where + ".high_freq_factor"), "must exceed low_freq_factor, which must be positive");
        const std::size_t head_dim = c.head_dim ? c.head_dim : (c.n_heads ? c.dim / c.n_heads : 0);
        if (head_dim < 2) return;  // validated() reports the shape
        const double old_context = static_cast<double>(*original);
        const double low_wavelen = old_context / low, high_wavelen = old_context / high;
        c.rope_freq_factors.resize(head_dim / 2);
        for (std::size_t i = 0; i < head_dim / 2; ++i) {
            const double freq = std::pow(c.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
            const double wavelen = 2.0 * std::numbers::pi / freq;
            double divisor = 1.0;
            if (wavelen > low_wavelen) {
                divisor = factor;
            } else if (!(wavelen < high_wavelen)) {
                const double smooth = (old_context / wavelen - low) / (high - low);
                divisor = 1.0 / ((1.0 - smooth) / factor + smooth);
            }
            c.rope_freq_factors[i] = static_cast<float>(divisor);
        }
    }

    const json_file& f_;
    const hf_architecture* arch_ = nullptr;
};

}  // namespace detail

inline hf_config parse_hf_config(std::string_view json_text, std::string name = "config.json") {
    return detail::hf_config_reader(detail::json_file(json_text, std::move(name))).read();
}
inline hf_config read_hf_config(const std::filesystem::path& path) {
    return detail::hf_config_reader(detail::json_file::read(path)).read();
}

// generation_config.json; ids are checked against vocab_size.
inline hf_generation_config parse_hf_generation_config(std::string_view json_text, std::size_t vocab_size,
                                                       std::string name = "generation_config.json") {
    const detail::json_file f(json_text, std::move(name));
    constexpr std::uint64_t big = std::uint64_t{1} << 32;
    auto token = [&](std::uint64_t id, std::string_view key) {
        if (id >= vocab_size)
            f.fail(detail::json_file::field(key), "is " + std::to_string(id) + ", not a token id (vocab_size " +
                                                      std::to_string(vocab_size) + ")");
        return static_cast<token_id>(id);
    };
    auto size = [&](std::string_view key) -> std::optional<std::size_t> {
        if (const auto v = f.count(key, big)) return static_cast<std::size_t>(*v);
        return std::nullopt;
    };
    hf_generation_config g;
    if (const auto v = f.count("bos_token_id", big)) g.bos = token(*v, "bos_token_id");
    if (const auto v = f.count("pad_token_id", big)) g.pad = token(*v, "pad_token_id");
    for (std::uint64_t id : f.counts("eos_token_id", big)) g.eos.push_back(token(id, "eos_token_id"));
    g.do_sample = f.boolean("do_sample");
    g.temperature = f.number("temperature");
    g.top_p = f.number("top_p");
    g.min_p = f.number("min_p");
    g.repetition_penalty = f.number("repetition_penalty");
    g.length_penalty = f.number("length_penalty");
    g.top_k = size("top_k");
    g.max_new_tokens = size("max_new_tokens");
    g.max_length = size("max_length");
    g.min_new_tokens = size("min_new_tokens");
    g.num_beams = size("num_beams");
    if (const auto* e = f.find("early_stopping")) {
        if (e->is_boolean()) g.early_stopping = e->get<bool>() ? "true" : "false";
        else if (e->is_string() && *e == "never") g.early_stopping = "never";
        else f.fail(detail::json_file::field("early_stopping"), "is " + e->dump() + "; expected true, false or \"never\"");
    }
    return g;
}
inline hf_generation_config read_hf_generation_config(const std::filesystem::path& path, std::size_t vocab_size) {
    return parse_hf_generation_config(detail::json_file::read_text(path), vocab_size, path.string());
}

}  // namespace kvdecode
