#pragma once
// The shape of a Llama-family model, validated once; everything else is sized from it.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kvdecode/core/checked_arithmetic.hpp"
#include "kvdecode/core/types.hpp"

namespace kvdecode {

// How RoPE pairs the dimensions of a head vector.
enum class rope_layout {
    interleaved,  // (x[2i], x[2i+1]): llama2.c and Meta checkpoints
    rotate_half,  // (x[i], x[i + head_dim/2]): Hugging Face and GPT-NeoX checkpoints
};

struct model_config {
    std::size_t dim = 0;         // width of the residual stream
    std::size_t hidden_dim = 0;  // inner width of the SwiGLU MLP
    std::size_t n_layers = 0;
    std::size_t n_heads = 0;     // query heads
    std::size_t n_kv_heads = 0;  // key/value heads; n_heads must be a multiple (GQA, MQA when 1)
    std::size_t head_dim = 0;    // 0 means dim / n_heads
    std::size_t vocab_size = 0;
    std::size_t seq_len = 0;     // context length: positions 0 .. seq_len-1
    bool shared_classifier = true;  // logits use the token embedding matrix
    bool qkv_bias = false;          // q, k and v projections add a bias (Qwen2)
    rope_layout rope = rope_layout::interleaved;
    double rope_theta = 10000.0;    // base of the rotation frequencies theta^(-2i/head_dim)
    // Linear RoPE scaling (position interpolation): positions are divided by this.
    double rope_linear_scale = 1.0;
    // Empty, or head_dim / 2 divisors of the pairs' frequencies (Llama 3's scaling as
    // GGUF stores it, in rope_freqs.weight): frequency i is theta^(-2i/head_dim) / f[i].
    std::vector<float> rope_freq_factors;
    double norm_eps = 1e-5;

    std::size_t q_dim() const noexcept { return n_heads * head_dim; }
    std::size_t kv_dim() const noexcept { return n_kv_heads * head_dim; }
    std::size_t qkv_dim() const noexcept { return q_dim() + 2 * kv_dim(); }
    // Query heads that read one key/value head.
    std::size_t group_size() const noexcept { return n_heads / n_kv_heads; }
};

// Checks a config and fills in the derived head_dim. Throws std::invalid_argument
// naming the offending field and value.
inline model_config validated(model_config c) {
    auto fail = [](const std::string& what) { throw std::invalid_argument("kvdecode: model_config: " + what); };
    auto positive = [&](std::size_t v, const char* name) {
        if (v == 0) fail(std::string(name) + " must be positive, got 0");
    };
    positive(c.dim, "dim");
    positive(c.hidden_dim, "hidden_dim");
    positive(c.n_layers, "n_layers");
    positive(c.n_heads, "n_heads");
    positive(c.n_kv_heads, "n_kv_heads");
    positive(c.vocab_size, "vocab_size");
    positive(c.seq_len, "seq_len");
    if (c.n_heads % c.n_kv_heads != 0)
        fail("n_heads (" + std::to_string(c.n_heads) + ") is not a multiple of n_kv_heads (" +
             std::to_string(c.n_kv_heads) + ")");
    if (c.head_dim == 0) {
        if (c.dim % c.n_heads != 0)
            fail("dim (" + std::to_string(c.dim) + ") is not a multiple of n_heads (" +
                 std::to_string(c.n_heads) + ")");
        c.head_dim = c.dim / c.n_heads;
    }
    if (c.head_dim % 2 != 0) fail("head_dim must be even for RoPE, got " + std::to_string(c.head_dim));
    if (c.vocab_size > static_cast<std::size_t>(INT32_MAX))
        fail("vocab_size " + std::to_string(c.vocab_size) + " does not fit a token id");
    if (!(c.rope_theta > 0.0)) fail("rope_theta must be positive");
    if (!(c.rope_linear_scale > 0.0) || !std::isfinite(c.rope_linear_scale))
        fail("rope_linear_scale must be positive and finite, got " + std::to_string(c.rope_linear_scale));
    if (!c.rope_freq_factors.empty() && c.rope_freq_factors.size() != c.head_dim / 2)
        fail("rope_freq_factors has " + std::to_string(c.rope_freq_factors.size()) + " entries, expected head_dim / 2 = " +
             std::to_string(c.head_dim / 2));
    for (std::size_t i = 0; i < c.rope_freq_factors.size(); ++i)
        if (!(c.rope_freq_factors[i] > 0.0f) || !std::isfinite(c.rope_freq_factors[i]))
            fail("rope_freq_factors[" + std::to_string(i) + "] must be positive and finite, got " +
                 std::to_string(c.rope_freq_factors[i]));
    if (!(c.norm_eps > 0.0)) fail("norm_eps must be positive");
    // Every tensor size must be representable; 2^40 elements is far beyond any CPU model.
    constexpr std::uint64_t limit = std::uint64_t{1} << 40;
    auto product = [&](std::initializer_list<std::size_t> factors, const char* what) {
        std::uint64_t p = 1;
        for (std::size_t f : factors) {
            auto next = checked_mul(p, f);
            if (!next || *next > limit) fail(std::string(what) + " is too large (overflow)");
            p = *next;
        }
    };
    product({c.n_heads, c.head_dim, c.dim, c.n_layers}, "n_layers * q_dim * dim");
    product({c.n_kv_heads, c.head_dim, c.dim, c.n_layers}, "n_layers * kv_dim * dim");
    product({c.hidden_dim, c.dim, c.n_layers, 3}, "n_layers * 3 * hidden_dim * dim");
    product({c.vocab_size, c.dim, 2}, "vocab_size * dim");
    product({c.seq_len, c.head_dim}, "seq_len * head_dim");
    return c;
}

}  // namespace kvdecode
