#pragma once
// Bookkeeping of fixed-size cache blocks: which are free, and how many sequences
// hold each one. No K/V bytes live here; kv_cache keeps one storage pool per layer
// and uses the same block id in every layer.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvdecode {

using block_id = std::uint32_t;

class block_pool {
public:
    explicit block_pool(std::size_t n_blocks) : ref_counts_(n_blocks, 0) {
        free_.reserve(n_blocks);
        // Hand out low ids first: easier to read in a debugger, nothing depends on it.
        for (std::size_t i = n_blocks; i-- > 0;) free_.push_back(static_cast<block_id>(i));
    }

    std::size_t total() const noexcept { return ref_counts_.size(); }
    std::size_t free() const noexcept { return free_.size(); }
    std::size_t used() const noexcept { return total() - free(); }
    // Blocks held by more than one sequence.
    std::size_t shared() const noexcept { return shared_; }
    std::uint32_t ref_count(block_id b) const noexcept { return ref_counts_[b]; }

    // Precondition: free() > 0. Callers check capacity for a whole request first,
    // so that a request either fully succeeds or changes nothing.
    block_id allocate() noexcept {
        const block_id b = free_.back();
        free_.pop_back();
        ref_counts_[b] = 1;
        return b;
    }

    void retain(block_id b) noexcept {
        if (++ref_counts_[b] == 2) ++shared_;
    }

    void release(block_id b) noexcept {
        if (--ref_counts_[b] == 1) --shared_;
        if (ref_counts_[b] == 0) free_.push_back(b);  // capacity reserved: never reallocates
    }

private:
    std::vector<std::uint32_t> ref_counts_;
    std::vector<block_id> free_;  // a stack of free ids
    std::size_t shared_ = 0;
};

}  // namespace kvdecode
