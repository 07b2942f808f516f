#pragma once
// The seam between models and decoders. A decoder sees only this: a config, a
// cache type whose sequences it creates, forks, truncates and releases, and a
// batched forward. The cached transformer, the no-cache reference model and the
// decoders' fake test models all satisfy it.

#include <concepts>
#include <cstddef>
#include <span>

#include "kvdecode/model/batch.hpp"
#include "kvdecode/core/model_config.hpp"

namespace kvdecode {

// Sequence handles over some per-sequence state (K/V blocks, or token histories).
template <class C>
concept sequence_store = requires(C& c, const C& cc, seq_id s, std::size_t n) {
    { c.create() } -> std::same_as<seq_id>;
    { c.fork(s) } -> std::same_as<seq_id>;
    c.truncate(s, n);
    c.release(s);
    { cc.length(s) } -> std::convertible_to<std::size_t>;
    { cc.contains(s) } -> std::convertible_to<bool>;
};

template <class M>
concept language_model =
    sequence_store<typename M::cache_type> &&
    requires(M& m, const M& cm, typename M::cache_type& cache, std::span<const sequence_tokens> batch,
             std::span<typename M::scalar_type> logits, kv_cache_options options) {
        { cm.config() } -> std::convertible_to<const model_config&>;
        { cm.make_cache(options) } -> std::same_as<typename M::cache_type>;
        // Appends each entry's tokens to its sequence and writes logits
        // (logits_for::last_token by default: one vocab-sized row per entry).
        m.forward(batch, cache, logits);
        m.forward(batch, cache, logits, logits_for::every_token);
    };

}  // namespace kvdecode
