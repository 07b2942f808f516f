#pragma once
// What a decoder reads from its cache beyond the sequence_store concept, where the
// cache has it (kv_cache does; token_history has no blocks).

#include <cstddef>

namespace kvdecode::detail {

template <class Cache>
std::size_t blocks_in_use(const Cache& cache) {
    if constexpr (requires { cache.stats().blocks_used; }) return cache.stats().blocks_used;
    else return 0;
}

// K/V bytes moved by block copies since the cache was made.
template <class Cache>
std::size_t bytes_copied(const Cache& cache) {
    if constexpr (requires { cache.stats().bytes_copied; }) return cache.stats().bytes_copied;
    else return 0;
}

// Tokens per block, for sizing bookkeeping by cache_sizing.hpp (1 for caches without blocks).
template <class Cache>
std::size_t block_size_of(const Cache& cache) {
    if constexpr (requires { cache.block_size(); }) return cache.block_size();
    else return 1;
}

}  // namespace kvdecode::detail
