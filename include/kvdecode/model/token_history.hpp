#pragma once
// The reference model's "cache": each sequence's token history and nothing else,
// behind the same handle operations as kv_cache.

#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "kvdecode/cache/kv_cache.hpp"
#include "kvdecode/core/model_config.hpp"

namespace kvdecode {

class token_history {
public:
    seq_id create() {
        for (seq_id s = 0; s < live_.size(); ++s)
            if (!live_[s]) {
                live_[s] = true;
                tokens_[s].clear();
                return s;
            }
        live_.push_back(true);
        tokens_.emplace_back();
        return static_cast<seq_id>(live_.size() - 1);
    }
    seq_id fork(seq_id parent) {
        check(parent, "fork");
        std::vector<token_id> copy = tokens_[parent];
        const seq_id child = create();
        tokens_[child] = std::move(copy);
        return child;
    }
    void truncate(seq_id s, std::size_t length) {
        check(s, "truncate");
        if (length > tokens_[s].size())
            throw std::invalid_argument("kvdecode: token_history::truncate: length " + std::to_string(length) +
                                        " exceeds the sequence's length " + std::to_string(tokens_[s].size()));
        tokens_[s].resize(length);
    }
    void release(seq_id s) {
        check(s, "release");
        live_[s] = false;
        tokens_[s].clear();
    }
    std::size_t length(seq_id s) const {
        check(s, "length");
        return tokens_[s].size();
    }
    bool contains(seq_id s) const noexcept { return s < live_.size() && live_[s]; }

    std::span<const token_id> tokens(seq_id s) const {
        check(s, "tokens");
        return tokens_[s];
    }
    void append(seq_id s, std::span<const token_id> more) {
        check(s, "append");
        tokens_[s].insert(tokens_[s].end(), more.begin(), more.end());
    }

private:
    void check(seq_id s, const char* op) const {
        if (!contains(s))
            throw std::invalid_argument(std::string("kvdecode: token_history::") + op + ": sequence " +
                                        std::to_string(s) + " does not exist");
    }

    std::vector<std::vector<token_id>> tokens_;
    std::vector<bool> live_;
};

}  // namespace kvdecode
