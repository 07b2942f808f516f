#pragma once
// How much cache one decoder call needs at most, per decoder: K/V blocks in use at
// once and sequence handles alive at once. The decoders size their bookkeeping by
// it, and cache_options_for (cache_sizing.hpp) turns it into kv_cache_options.
// Inputs are validated by the caller. Each bound is argued where it is computed.

#include <algorithm>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "kvdecode/core/checked_arithmetic.hpp"
#include "kvdecode/core/model_config.hpp"
#include "kvdecode/decode/beam_options.hpp"
#include "kvdecode/decode/options.hpp"
#include "kvdecode/decode/tree_options.hpp"

namespace kvdecode::detail {

struct cache_need {
    std::size_t blocks = 0;     // K/V blocks in use at once, at most
    std::size_t sequences = 0;  // sequence handles alive at once, at most
};

// Sums and products that throw instead of wrapping (absurd option values).
inline std::size_t need_add(std::size_t a, std::size_t b) {
    const auto r = checked_add(a, b);
    if (!r) throw std::invalid_argument("kvdecode: the options ask for more cache than can be counted");
    return static_cast<std::size_t>(*r);
}
inline std::size_t need_mul(std::size_t a, std::size_t b) {
    const auto r = checked_mul(a, b);
    if (!r) throw std::invalid_argument("kvdecode: the options ask for more cache than can be counted");
    return static_cast<std::size_t>(*r);
}

inline std::size_t blocks_for(std::size_t tokens, std::size_t block_size) {
    return tokens / block_size + (tokens % block_size != 0);
}

// Tokens a sequence of `prompt` tokens runs through the model when up to
// `max_new` are generated: all but the last generated one, within the context.
inline std::size_t fed_tokens(std::size_t prompt, std::size_t max_new, const model_config& c) {
    if (max_new == 0 || prompt >= c.seq_len) return prompt;
    return prompt + std::min(max_new - 1, c.seq_len - prompt);
}

// Greedy and sampling: one sequence per prompt, each released when it ends.
inline cache_need generate_cache_need(std::span<const std::vector<token_id>> prompts, const generation_options& o,
                                      const model_config& c, std::size_t block_size) {
    cache_need need{.sequences = prompts.size()};
    for (const auto& p : prompts)
        need.blocks = need_add(need.blocks, blocks_for(fed_tokens(p.size(), o.max_new_tokens, c), block_size));
    return need;
}

// Beam search, per prompt: a step forks up to num_beams children from the running
// beams before releasing them (2 x num_beams handles). With shared blocks the
// children's own block counts bound the total, plus, during a step, the partial last
// block of each parent that a child copied on write (at most num_beams of them: e.g.
// 3 beams forked from a one-block prompt need 4 blocks); with private copies parents
// and children hold theirs at once.
inline cache_need beam_cache_need(std::span<const std::vector<token_id>> prompts, const beam_options& o,
                                  const model_config& c, std::size_t block_size) {
    const std::size_t holders = o.cache_policy == beam_cache_policy::copy ? 2 : 1;
    cache_need need{.sequences = need_mul(need_mul(2, o.num_beams), prompts.size())};
    for (const auto& p : prompts) {
        const std::size_t beam = blocks_for(fed_tokens(p.size(), o.generation.max_new_tokens, c), block_size);
        const std::size_t copied_on_write = holders == 1 ? o.num_beams : 0;
        need.blocks = need_add(need.blocks, need_add(need_mul(need_mul(holders, o.num_beams), beam), copied_on_write));
    }
    return need;
}

// MaxEnt-TS. Shared: the root holds the prompt; each of the at most num_rollouts
// expanded nodes forks its parent and appends one token (one new block at most); a
// rollout forks its leaf, copies the shared partial block and feeds at most
// rollout_max_new_tokens tokens. Recomputed: only the root persists, and each
// rollout runs its whole sequence in a fresh handle. Rollouts of a batch are alive
// together; the final completion runs after them, alone.
inline cache_need tree_cache_need(std::span<const token_id> prompt, const tree_options& o, const model_config& c,
                                  std::size_t block_size) {
    const std::size_t in_flight = std::max<std::size_t>(1, std::min(o.rollouts_per_batch, o.num_rollouts));
    const std::size_t max_new = o.generation.max_new_tokens, root = blocks_for(prompt.size(), block_size);
    if (o.cache_policy == tree_cache_policy::recompute) {
        const std::size_t rollout = blocks_for(fed_tokens(prompt.size(), max_new, c), block_size);
        return {.blocks = need_add(root, need_mul(in_flight, rollout)), .sequences = 1 + in_flight};
    }
    const std::size_t rollout = 1 + blocks_for(std::min(o.rollout_max_new_tokens, max_new), block_size);
    return {.blocks = need_add(need_add(root, o.num_rollouts), need_mul(in_flight, rollout)),
            .sequences = need_add(1 + in_flight, o.num_rollouts)};
}

}  // namespace kvdecode::detail
