#pragma once
// Reader for llama2.c's legacy checkpoint format (as llama2.c writes it):
// a header of 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len; a negative vocab_size means a separate classifier), then float32
// tensors in a fixed order. The header is validated against llama2c_limits and the
// file size must match it exactly before anything is allocated.

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "kvdecode/core/checked_arithmetic.hpp"
#include "kvdecode/io/detail/binary_file.hpp"
#include "kvdecode/core/model_config.hpp"
#include "kvdecode/model/weights.hpp"

namespace kvdecode {

// What a llama2.c checkpoint may claim, checked before anything is allocated. The
// file's size already bounds the weights, but not what is sized from the shape
// alone: RoPE tables and the attention workspace grow with seq_len (the workspace
// with its square), a cache with seq_len * n_layers * kv_dim. The defaults are far
// above every model published in this format (Llama 2 70B: dim 8192, hidden_dim
// 28672, 80 layers, 64 heads, vocabulary 32000, context 4096); raise them to read a
// larger one. An error names the limit it hit.
struct llama2c_limits {
    std::size_t max_dim = 16384;
    std::size_t max_hidden_dim = 65536;
    std::size_t max_layers = 512;
    std::size_t max_heads = 512;            // n_heads, and so n_kv_heads
    std::size_t max_vocab_size = 1 << 20;
    std::size_t max_seq_len = 16384;        // a 240 KB file can claim 30000 (head_dim 2)
};

namespace detail {

inline constexpr std::uint64_t llama2c_header_bytes = 7 * sizeof(std::int32_t);

// The config a legacy header describes, or a model_format_error naming the field.
inline model_config llama2c_config(binary_file& file, const llama2c_limits& limits = {}) {
    if (file.size() < llama2c_header_bytes)
        file.fail("header", std::to_string(llama2c_header_bytes) + " bytes",
                  "a file of " + std::to_string(file.size()) + " bytes");
    static constexpr std::array<const char*, 7> names = {"dim", "hidden_dim", "n_layers", "n_heads",
                                                         "n_kv_heads", "vocab_size", "seq_len"};
    std::array<std::int32_t, 7> h{};
    for (std::size_t i = 0; i < h.size(); ++i) h[i] = file.read<std::int32_t>(names[i]);
    if (h[0] == 0x616b3432)  // "ak42": llama2.c's versioned export
        file.fail("magic", "a legacy llama2.c checkpoint (no magic)", "the versioned 'ak42' export, not supported");
    for (std::size_t i = 0; i < h.size(); ++i) {
        const bool ok = i == 5 ? h[i] != 0 && h[i] != INT32_MIN : h[i] > 0;
        if (!ok) file.fail(names[i], i == 5 ? "a non-zero value" : "a positive value", std::to_string(h[i]));
    }
    const std::array<std::pair<std::size_t, const char*>, 7> bounds = {{
        {limits.max_dim, "max_dim"}, {limits.max_hidden_dim, "max_hidden_dim"}, {limits.max_layers, "max_layers"},
        {limits.max_heads, "max_heads"}, {limits.max_heads, "max_heads"}, {limits.max_vocab_size, "max_vocab_size"},
        {limits.max_seq_len, "max_seq_len"}}};
    for (std::size_t i = 0; i < h.size(); ++i) {
        const auto value = static_cast<std::uint64_t>(i == 5 && h[i] < 0 ? -static_cast<std::int64_t>(h[i]) : h[i]);
        if (value > bounds[i].first)
            file.fail(names[i], "at most " + std::to_string(bounds[i].first) + " (kvdecode::llama2c_limits::" +
                                    bounds[i].second + ")",
                      std::to_string(value));
    }
    model_config c;
    c.dim = static_cast<std::size_t>(h[0]);
    c.hidden_dim = static_cast<std::size_t>(h[1]);
    c.n_layers = static_cast<std::size_t>(h[2]);
    c.n_heads = static_cast<std::size_t>(h[3]);
    c.n_kv_heads = static_cast<std::size_t>(h[4]);
    c.shared_classifier = h[5] > 0;
    c.vocab_size = static_cast<std::size_t>(h[5] > 0 ? h[5] : -static_cast<std::int64_t>(h[5]));
    c.seq_len = static_cast<std::size_t>(h[6]);
    c.rope = rope_layout::interleaved;
    c.rope_theta = 10000.0;
    c.norm_eps = 1e-5;
    if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
        file.fail("n_heads", "a multiple of n_kv_heads (" + std::to_string(c.n_kv_heads) + ")",
                  std::to_string(c.n_heads));
    if (c.dim % c.n_heads != 0)
        file.fail("dim", "a multiple of n_heads (" + std::to_string(c.n_heads) + ")", std::to_string(c.dim));
    if ((c.dim / c.n_heads) % 2 != 0)
        file.fail("dim", "an even head dimension dim / n_heads for RoPE", std::to_string(c.dim / c.n_heads));
    return c;
}

// Float32 values the file must hold after the header, or nullopt on overflow.
inline std::optional<std::uint64_t> llama2c_float_count(const model_config& c) {
    const std::uint64_t head_dim = c.dim / c.n_heads, kv_dim = c.n_kv_heads * head_dim;
    std::optional<std::uint64_t> total = 0;
    auto add = [&](std::initializer_list<std::uint64_t> factors) {
        std::optional<std::uint64_t> p = 1;
        for (std::uint64_t f : factors) p = p ? checked_mul(*p, f) : std::nullopt;
        total = (total && p) ? checked_add(*total, *p) : std::nullopt;
    };
    add({c.vocab_size, c.dim});                 // token_embedding
    add({c.n_layers, c.dim});                   // rms_att
    add({c.n_layers, c.dim, c.dim});            // wq
    add({c.n_layers, kv_dim, c.dim, 2});        // wk, wv
    add({c.n_layers, c.dim, c.dim});            // wo
    add({c.n_layers, c.dim});                   // rms_ffn
    add({c.n_layers, c.hidden_dim, c.dim, 3});  // w1, w2, w3
    add({c.dim});                               // rms_final
    add({c.seq_len, head_dim});                 // legacy freq_cis_real + freq_cis_imag
    if (!c.shared_classifier) add({c.vocab_size, c.dim});
    return total;
}

}  // namespace detail

namespace detail {

// The reader behind both entry points below: the source differs, the checks do not.
template <class T>
transformer_weights<T> read_llama2c_checkpoint(binary_file& file, const llama2c_limits& limits) {
    const model_config c = detail::llama2c_config(file, limits);
    const auto floats = detail::llama2c_float_count(c);
    const auto bytes = floats ? checked_mul(*floats, sizeof(float)) : std::nullopt;
    const auto expected = bytes ? checked_add(*bytes, detail::llama2c_header_bytes) : std::nullopt;
    if (!expected) file.fail("header", "dimensions whose tensor sizes fit in 64 bits", "an overflowing product");
    if (file.size() != *expected)
        file.fail("file size", std::to_string(*expected) + " bytes for the header's dimensions",
                  std::to_string(file.size()) + " bytes (" +
                      (file.size() < *expected ? "truncated" : "extra data after the classifier") + ")");
    transformer_weights<T> w = [&] {
        try {
            return transformer_weights<T>(c);
        } catch (const std::invalid_argument& e) {  // sizes beyond what validated() accepts
            file.fail("header", "a loadable model", e.what());
        }
    }();
    auto read = [&](std::span<T> out, const std::string& name) { file.read_floats(out.data(), out.size(), name); };
    read(w.token_embedding(), "token_embedding");
    for (std::size_t l = 0; l < c.n_layers; ++l) read(w.rms_att(l), "rms_att[" + std::to_string(l) + "]");
    for (std::size_t l = 0; l < c.n_layers; ++l) read(w.wq(l), "wq[" + std::to_string(l) + "]");
    for (std::size_t l = 0; l < c.n_layers; ++l) read(w.wk(l), "wk[" + std::to_string(l) + "]");
    for (std::size_t l = 0; l < c.n_layers; ++l) read(w.wv(l), "wv[" + std::to_string(l) + "]");
    for (std::size_t l = 0; l < c.n_layers; ++l) read(w.wo(l), "wo[" + std::to_string(l) + "]");
    for (std::size_t l = 0; l < c.n_layers; ++l) read(w.rms_ffn(l), "rms_ffn[" + std::to_string(l) + "]");
    for (std::size_t l = 0; l < c.n_layers; ++l) read(w.w1(l), "w1[" + std::to_string(l) + "]");
    for (std::size_t l = 0; l < c.n_layers; ++l) read(w.w2(l), "w2[" + std::to_string(l) + "]");
    for (std::size_t l = 0; l < c.n_layers; ++l) read(w.w3(l), "w3[" + std::to_string(l) + "]");
    read(w.rms_final(), "rms_final");
    file.skip(c.seq_len * (c.dim / c.n_heads) * sizeof(float), "legacy freq_cis tables");
    read(w.separate_classifier(), "classifier");
    return w;
}

}  // namespace detail

// Reads a legacy llama2.c checkpoint. Throws model_format_error naming the file,
// the field and what was expected and found.
template <class T = float>
transformer_weights<T> read_llama2c_checkpoint(const std::filesystem::path& path, const llama2c_limits& limits = {}) {
    detail::binary_file file(path);
    return detail::read_llama2c_checkpoint<T>(file, limits);
}

// The same from a checkpoint already in memory (a mapped file, a fuzzer's input);
// `name` stands for the file in errors.
template <class T = float>
transformer_weights<T> read_llama2c_checkpoint(std::span<const std::byte> bytes, std::string name = "<memory>",
                                               const llama2c_limits& limits = {}) {
    detail::binary_file file(bytes, std::move(name));
    return detail::read_llama2c_checkpoint<T>(file, limits);
}

}  // namespace kvdecode
