#pragma once
// Model fixtures shared by the tests: random-weight models at awkward shapes, and
// the checks that compare the cached transformer against the no-cache reference.

#include <algorithm>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/model/random_weights.hpp"
#include "kvdecode/model/reference_model.hpp"
#include "kvdecode/model/decode_context.hpp"
#include "support/test_data.hpp"

namespace kvtest {

using kvdecode::token_id;

struct named_config {
    std::string name;
    kvdecode::model_config config;
};

// GQA ratios 1, 2, 4 and multi-query; head_dim 16 to 128; widths that are not a
// multiple of any SIMD width; q_dim != dim; both RoPE layouts; shared and separate classifiers.
inline std::vector<named_config> awkward_shapes() {
    using kvdecode::rope_layout;
    auto make = [](std::size_t dim, std::size_t hidden, std::size_t layers, std::size_t heads, std::size_t kv,
                   std::size_t head_dim, std::size_t vocab, bool shared, rope_layout rope) {
        kvdecode::model_config c;
        c.dim = dim, c.hidden_dim = hidden, c.n_layers = layers, c.n_heads = heads, c.n_kv_heads = kv;
        c.head_dim = head_dim, c.vocab_size = vocab, c.seq_len = 256, c.shared_classifier = shared, c.rope = rope;
        return c;
    };
    return {
        {"gqa ratio 1, head_dim 16", make(48, 100, 2, 3, 3, 16, 67, true, rope_layout::interleaved)},
        {"gqa ratio 2, separate classifier", make(64, 37, 2, 4, 2, 16, 61, false, rope_layout::interleaved)},
        {"gqa ratio 4, q_dim != dim", make(100, 70, 2, 8, 2, 24, 53, true, rope_layout::rotate_half)},
        {"multi-query, head_dim 32", make(128, 77, 2, 4, 1, 32, 71, false, rope_layout::interleaved)},
        {"head_dim 128", make(256, 50, 1, 2, 1, 128, 59, true, rope_layout::rotate_half)},
        {"odd widths, one head", make(34, 51, 3, 1, 1, 34, 43, false, rope_layout::interleaved)},
    };
}

template <class T = float>
std::shared_ptr<const kvdecode::transformer_weights<T>> random_model(const kvdecode::model_config& c,
                                                                      std::uint64_t seed = 42) {
    return std::make_shared<const kvdecode::transformer_weights<T>>(kvdecode::random_weights<T>(c, seed));
}

template <class T>
using logits_matrix = typename kvdecode::reference_model<T>::Matrix;

// The reference's logits after every prefix of `tokens`, in one no-cache pass.
template <class T>
logits_matrix<T> reference_logits(std::shared_ptr<const kvdecode::transformer_weights<T>> w,
                                  const std::vector<token_id>& tokens, kvdecode::kv_type kv = kvdecode::kv_type::f32) {
    return kvdecode::reference_model<T>(std::move(w), kv).logits_of_every_position(tokens);
}

// Greedy decoding of `steps` tokens with the cached model after a one-chunk
// prefill; every step's logits must equal the no-cache reference's (on w; with the
// cache's storage type kv, the reference rounds K and V the same way).
template <class T>
void check_decode_matches_reference(const kvdecode::transformer<T>& model,
                                    std::shared_ptr<const kvdecode::transformer_weights<T>> w,
                                    std::vector<token_id> tokens, std::size_t steps, double tolerance = 1e-4,
                                    kvdecode::kv_type kv = kvdecode::kv_type::f32) {
    const std::size_t vocab = w->config().vocab_size, prompt = tokens.size();
    kvdecode::decode_context<T> ctx(model);
    auto cache = model.make_cache({.storage = kv});
    const auto seq = cache.create();
    std::vector<T> logits(vocab);
    std::vector<std::vector<T>> per_step;
    std::vector<token_id> next = tokens;
    for (std::size_t step = 0; step <= steps; ++step) {
        ctx.forward(std::vector{kvdecode::sequence_tokens{seq, next}}, cache, logits);
        per_step.push_back(logits);
        if (step == steps) break;
        next = {static_cast<token_id>(argmax<T>(logits))};
        tokens.push_back(next[0]);
    }
    REQUIRE(cache.length(seq) == tokens.size());
    const auto ref = reference_logits<T>(w, tokens, kv);
    for (std::size_t step = 0; step <= steps; ++step) {
        CAPTURE(step);
        const auto row = ref.row(static_cast<Eigen::Index>(prompt - 1 + step));
        REQUIRE(max_relative_error<T, T>(per_step[step], std::span<const T>(row.data(), vocab)) <= tolerance);
    }
}

// The model built from w with its defaults (weights f32, norm gains folded).
template <class T>
void check_decode_matches_reference(std::shared_ptr<const kvdecode::transformer_weights<T>> w,
                                    std::vector<token_id> tokens, std::size_t steps, double tolerance = 1e-4) {
    check_decode_matches_reference(kvdecode::transformer<T>(w), w, std::move(tokens), steps, tolerance);
}

// The same token sequence fed in chunks of the given sizes (cycled), with logits
// of every token: each row must equal the reference's row for that position.
template <class T>
void check_chunks_match_reference(const kvdecode::transformer<T>& model,
                                  std::shared_ptr<const kvdecode::transformer_weights<T>> w,
                                  const std::vector<token_id>& tokens, const std::vector<std::size_t>& chunks,
                                  double tolerance = 1e-4, kvdecode::kv_type kv = kvdecode::kv_type::f32) {
    const std::size_t vocab = w->config().vocab_size;
    const auto ref = reference_logits<T>(w, tokens, kv);
    kvdecode::decode_context<T> ctx(model);
    auto cache = model.make_cache({.storage = kv});
    const auto seq = cache.create();
    std::size_t at = 0;
    for (std::size_t i = 0; at < tokens.size(); ++i) {
        const std::size_t n = std::min(chunks[i % chunks.size()], tokens.size() - at);
        std::vector<T> logits(n * vocab);
        const std::span<const token_id> chunk(tokens.data() + at, n);
        ctx.forward(std::vector{kvdecode::sequence_tokens{seq, chunk}}, cache, logits,
                      kvdecode::logits_for::every_token);
        for (std::size_t r = 0; r < n; ++r) {
            CAPTURE(at, n, r);
            const auto row = ref.row(static_cast<Eigen::Index>(at + r));
            REQUIRE(max_relative_error<T, T>(std::span<const T>(logits.data() + r * vocab, vocab),
                                             std::span<const T>(row.data(), vocab)) <= tolerance);
        }
        at += n;
    }
}

template <class T>
void check_chunks_match_reference(std::shared_ptr<const kvdecode::transformer_weights<T>> w,
                                  const std::vector<token_id>& tokens, const std::vector<std::size_t>& chunks,
                                  double tolerance = 1e-4) {
    check_chunks_match_reference(kvdecode::transformer<T>(w), w, tokens, chunks, tolerance);
}

}  // namespace kvtest
