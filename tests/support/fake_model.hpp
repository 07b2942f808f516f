#pragma once
// A tiny language_model for decoder tests: its next-token logits are whatever a
// rule computes from the sequence so far, and it counts forward calls per sequence.

#include <functional>
#include <map>
#include <span>
#include <vector>

#include "kvdecode/model/batch.hpp"
#include "kvdecode/model/language_model.hpp"
#include "kvdecode/model/token_history.hpp"

namespace kvtest {

struct fake_model {
    using scalar_type = float;
    using cache_type = kvdecode::token_history;
    using rule_type = std::function<void(std::span<const kvdecode::token_id> history, std::span<float> logits)>;

    kvdecode::model_config cfg;
    rule_type rule;
    std::size_t forward_calls = 0;
    std::map<kvdecode::seq_id, std::size_t> rows_computed;  // per sequence: tokens run through the model

    fake_model(std::size_t vocab, std::size_t seq_len, rule_type r) : rule(std::move(r)) {
        cfg.dim = 2, cfg.hidden_dim = 2, cfg.n_layers = 1, cfg.n_heads = 1, cfg.n_kv_heads = 1;
        cfg.vocab_size = vocab, cfg.seq_len = seq_len;
        cfg = kvdecode::validated(cfg);
    }

    const kvdecode::model_config& config() const { return cfg; }
    cache_type make_cache(kvdecode::kv_cache_options = {}) const { return {}; }

    void forward(std::span<const kvdecode::sequence_tokens> batch, cache_type& cache, std::span<float> logits,
                 kvdecode::logits_for which = kvdecode::logits_for::last_token) {
        kvdecode::validate_batch(batch, cfg, [&](kvdecode::seq_id s) { return cache.length(s); }, logits.size(), which);
        ++forward_calls;
        std::size_t row = 0;
        for (const auto& e : batch) {
            cache.append(e.seq, e.tokens);
            rows_computed[e.seq] += e.tokens.size();
            const auto all = cache.tokens(e.seq);
            const std::size_t first = which == kvdecode::logits_for::last_token ? all.size() : all.size() - e.tokens.size() + 1;
            for (std::size_t end = first; end <= all.size(); ++end, ++row)
                rule(all.first(end), logits.subspan(row * cfg.vocab_size, cfg.vocab_size));
        }
    }
};

static_assert(kvdecode::language_model<fake_model>);

}  // namespace kvtest
