#pragma once
// Owns the cache sequences a decoder creates or forks, and releases whichever are
// still alive when the decoder returns or throws: a failed call leaves the cache
// as it was.

#include <algorithm>
#include <cstddef>
#include <vector>

#include "kvdecode/core/types.hpp"

namespace kvdecode::detail {

template <class Cache>
class sequence_guard {
public:
    // `expected`: the most sequences alive at once (see cache_sizing.hpp), so that
    // creating, forking and releasing within it never allocates.
    sequence_guard(Cache& cache, std::size_t expected) : cache_(cache) { owned_.reserve(expected); }
    sequence_guard(const sequence_guard&) = delete;
    sequence_guard& operator=(const sequence_guard&) = delete;
    ~sequence_guard() {
        for (seq_id s : owned_) cache_.release(s);
    }

    seq_id create() {
        owned_.reserve(owned_.size() + 1);  // before the cache call: a throw here leaks nothing
        owned_.push_back(cache_.create());
        return owned_.back();
    }
    seq_id fork(seq_id parent) {
        owned_.reserve(owned_.size() + 1);
        owned_.push_back(cache_.fork(parent));
        return owned_.back();
    }
    // A private copy where the cache offers one (kv_cache::copy), else a fork.
    seq_id copy(seq_id source) {
        owned_.reserve(owned_.size() + 1);
        if constexpr (requires { cache_.copy(source); }) owned_.push_back(cache_.copy(source));
        else owned_.push_back(cache_.fork(source));
        return owned_.back();
    }
    void release(seq_id s) {
        cache_.release(s);
        const auto it = std::find(owned_.begin(), owned_.end(), s);
        *it = owned_.back();
        owned_.pop_back();
    }

private:
    Cache& cache_;
    std::vector<seq_id> owned_;
};

}  // namespace kvdecode::detail
