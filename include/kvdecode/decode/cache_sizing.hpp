#pragma once
// Cache options with room for one decoder call, so callers need not work out how
// many blocks and handles beams or tree nodes take:
//   auto cache = model.make_cache(cache_options_for(model.config(), prompts, beam_opts));
// The counts are upper bounds for the call's worst case (no early EOS); a cache made
// with them never throws cache_full during that call. Arguments are validated as
// the decoder would validate them.

#include <algorithm>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <vector>

#include "kvdecode/cache/kv_cache.hpp"
#include "kvdecode/core/model_config.hpp"
#include "kvdecode/decode/beam_options.hpp"
#include "kvdecode/decode/detail/cache_sizing.hpp"
#include "kvdecode/decode/detail/prompts.hpp"
#include "kvdecode/decode/options.hpp"
#include "kvdecode/decode/tree_options.hpp"

namespace kvdecode {

namespace detail {

inline void check_block_size(std::size_t block_size) {
    if (block_size == 0) throw std::invalid_argument("kvdecode: cache_options_for: block_size must be positive");
}

inline kv_cache_options to_cache_options(cache_need need, std::size_t block_size) {
    return {.capacity_tokens = need_mul(std::max<std::size_t>(need.blocks, 1), block_size),
            .block_size = block_size,
            .max_sequences = std::max<std::size_t>(need.sequences, 1)};
}

}  // namespace detail

// greedy() and sample() over `prompts`.
inline kv_cache_options cache_options_for(const model_config& c, std::span<const std::vector<token_id>> prompts,
                                          const generation_options& o, std::size_t block_size = 16) {
    detail::check_block_size(block_size);
    validate(o, c);
    detail::validate_prompts(prompts, c);
    return detail::to_cache_options(detail::generate_cache_need(prompts, o, c, block_size), block_size);
}

// beam_search() over `prompts`.
inline kv_cache_options cache_options_for(const model_config& c, std::span<const std::vector<token_id>> prompts,
                                          const beam_options& o, std::size_t block_size = 16) {
    detail::check_block_size(block_size);
    validate(o, c);
    detail::validate_prompts_with_room(prompts, c, "beam_search");
    return detail::to_cache_options(detail::beam_cache_need(prompts, o, c, block_size), block_size);
}

// maxent_ts() from `prompt`.
inline kv_cache_options cache_options_for(const model_config& c, std::span<const token_id> prompt,
                                          const tree_options& o, std::size_t block_size = 16) {
    detail::check_block_size(block_size);
    validate(o, c);
    detail::validate_prompt_with_room(prompt, 0, c, "maxent_ts");
    return detail::to_cache_options(detail::tree_cache_need(prompt, o, c, block_size), block_size);
}

}  // namespace kvdecode
