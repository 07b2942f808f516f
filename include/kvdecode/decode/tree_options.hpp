#pragma once
// Options of MaxEnt-TS tree search (maxent_ts.hpp):
//   tree_options{.num_rollouts = 20, .lambda = 2.0, .generation = {.max_new_tokens = 40, .eos = {2}, .seed = 7}}

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "kvdecode/core/model_config.hpp"
#include "kvdecode/decode/detail/whole_sequence_checks.hpp"
#include "kvdecode/decode/options.hpp"
#include "kvdecode/sampling/processors.hpp"

namespace kvdecode {

enum class tree_mode {
    sample,  // draw from the tilted distribution
    search,  // look for its mode (PUCT selection, highest-Q result path)
};

enum class tree_result {
    tree,       // sample: a path drawn by the soft policy; search: the highest-Q path (completed by a rollout)
    best_seen,  // the sequence with the highest reward among everything scored
};

// Where rollouts and expansions get their prefix's K/V.
enum class tree_cache_policy {
    share,      // fork the node's sequence: every prefix is computed once
    recompute,  // a fresh sequence each time, recomputed from the prompt: the baseline
};

struct tree_options {
    std::size_t num_rollouts = 10;
    double lambda = 1.0;                 // tilt: p(x) * exp(lambda * r(x)); > 0
    std::size_t expansion_k = 3;         // children per expanded node
    double expansion_temperature = 1.0;  // priors = softmax(logits / this) over the top expansion_k
    tree_mode mode = tree_mode::sample;
    double c_puct = 1.0;                 // search mode's exploration weight
    std::size_t rollout_max_new_tokens = 50;
    float rollout_temperature = 0.8f;
    std::size_t rollout_top_k = 50;      // 0: off
    float rollout_top_p = 0.9f;          // 1: off
    // max_new_tokens is the depth limit (generated tokens in the tree and in rollouts,
    // at least 1); min_new_tokens keeps EOS out of children and rollouts before it;
    // EOS ids; the seed of every draw. on_token must be empty.
    generation_options generation;
    // The model's distribution p as the search sees it: run in this order on every
    // row of logits, before the expansion priors are taken from it and before each
    // rollout token is drawn (then rollout_temperature, rollout_top_k, rollout_top_p).
    // So priors, rollouts and the tilted target p(x) exp(lambda r(x)) agree.
    std::vector<logits_processor> processors;
    tree_result result = tree_result::tree;
    std::size_t rollouts_per_batch = 1;  // rollouts that select with a virtual loss, then generate together
    tree_cache_policy cache_policy = tree_cache_policy::share;
};

inline void validate(const tree_options& o, const model_config& c) {
    auto fail = [](const std::string& what) { throw std::invalid_argument("kvdecode: maxent_ts: " + what); };
    if (o.num_rollouts == 0) fail("num_rollouts must be at least 1");
    if (!(o.lambda > 0) || !std::isfinite(o.lambda)) fail("lambda must be positive and finite");
    if (o.expansion_k == 0) fail("expansion_k must be at least 1");
    if (!(o.expansion_temperature > 0)) fail("expansion_temperature must be positive");
    if (!(o.c_puct >= 0)) fail("c_puct must be non-negative");
    if (!(o.rollout_temperature > 0)) fail("rollout_temperature must be positive");
    if (!(o.rollout_top_p > 0 && o.rollout_top_p <= 1)) fail("rollout_top_p must be in (0, 1]");
    if (o.rollouts_per_batch == 0) fail("rollouts_per_batch must be at least 1");
    detail::validate_for_whole_sequences(o.generation, c, "maxent_ts");
    for (const auto& p : o.processors) validate(p);
}

}  // namespace kvdecode
