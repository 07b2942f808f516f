#pragma once
// Decoder sequences bound to a source: the sequences of any store (kv_cache, or the
// reference model's token_history), each holding a shared reference to the source it
// decodes (an encoder-decoder model's cross_kv, or the reference's copy of the input).
// fork() shares the parent's source (a beam, a rollout: the reference count goes up,
// nothing is copied), release() drops it.
//
// Decoders create sequences themselves (a prompt's, or a rollout's), so the source of
// the sequences they will create is set beforehand:
//   cache.bind_new_sequences({src});        // every sequence created from now on
//   cache.bind_new_sequences({a, b, c});    // the next three, in order (a batched
//                                           // decoder creates its prompts' in order)
// and a sequence can be bound by hand (bind). A forward over a sequence bound to no
// source is an error of the model's.

#include <cstddef>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "kvdecode/core/types.hpp"

namespace kvdecode {

template <class Store, class Source>
class source_bound {
public:
    using source_ref = std::shared_ptr<const Source>;

    explicit source_bound(Store store) : store_(std::move(store)) {
        // Every id the store can hand out, where it says: creating and forking then never allocate.
        if constexpr (requires { store_.max_sequences(); }) sources_.resize(store_.max_sequences());
    }

    // The sequences' own state (K/V blocks or token histories).
    Store& store() noexcept { return store_; }
    const Store& store() const noexcept { return store_; }

    // Sources for the sequences create() makes next: one source binds every new
    // sequence until this is called again; several bind the next ones in order, one
    // each, and after them new sequences are bound to nothing. Empty: nothing.
    void bind_new_sequences(std::span<const source_ref> sources) {
        pending_.assign(sources.begin(), sources.end());
        next_pending_ = 0;
    }
    void bind(seq_id s, source_ref source) {
        check(s, "bind");
        sources_[s] = std::move(source);
    }
    // The source of s, or null.
    const source_ref& source(seq_id s) const {
        check(s, "source");
        return sources_[s];
    }

    seq_id create() {
        const seq_id s = attach(store_.create(), next_source());
        if (pending_.size() > 1) ++next_pending_;
        return s;
    }
    seq_id fork(seq_id parent) {
        source_ref shared = source(parent);
        return attach(store_.fork(parent), std::move(shared));
    }
    seq_id copy(seq_id parent)
        requires requires(Store& st) { st.copy(parent); }
    {
        source_ref shared = source(parent);
        return attach(store_.copy(parent), std::move(shared));
    }
    void truncate(seq_id s, std::size_t length) { store_.truncate(s, length); }
    void release(seq_id s) {
        store_.release(s);
        sources_[s].reset();
    }
    std::size_t length(seq_id s) const { return store_.length(s); }
    bool contains(seq_id s) const noexcept { return store_.contains(s); }

    // What the store reports about itself, where it does (kv_cache: blocks, bytes).
    auto stats() const
        requires requires(const Store& st) { st.stats(); }
    {
        return store_.stats();
    }
    std::size_t block_size() const
        requires requires(const Store& st) { st.block_size(); }
    {
        return store_.block_size();
    }

private:
    source_ref next_source() const {
        if (pending_.size() == 1) return pending_[0];
        return next_pending_ < pending_.size() ? pending_[next_pending_] : nullptr;
    }
    // Records the source of a sequence the store has just made; if that fails (no
    // memory), the sequence is released again, so the call changes nothing.
    seq_id attach(seq_id s, source_ref source) {
        try {
            if (s >= sources_.size()) sources_.resize(static_cast<std::size_t>(s) + 1);
        } catch (...) {
            store_.release(s);
            throw;
        }
        sources_[s] = std::move(source);
        return s;
    }
    void check(seq_id s, const char* op) const {
        if (!store_.contains(s))
            throw std::invalid_argument(std::string("kvdecode: source_bound::") + op + ": sequence " + std::to_string(s) +
                                        " does not exist");
    }

    Store store_;
    std::vector<source_ref> sources_;  // by sequence id
    std::vector<source_ref> pending_;  // bind_new_sequences
    std::size_t next_pending_ = 0;
};

}  // namespace kvdecode
