#pragma once
// A sampler: a chain of logits processors, applied in the order they were added,
// then a choice — the most likely token (greedy) or a seeded categorical draw.
//
//   auto s = sampler::sampling()
//                .add(repetition_penalty{.penalty = 1.1f})
//                .add(temperature{.value = 0.8f})
//                .add(top_p{.p = 0.9f});
//
// A sampler holds scratch buffers: one decoding call at a time (copy it for another).

#include <cstddef>
#include <span>
#include <vector>

#include "kvdecode/core/rng.hpp"
#include "kvdecode/sampling/processors.hpp"

namespace kvdecode {

namespace detail {

// A categorical draw: the first index whose cumulative weight exceeds `mass`
// (u * total weight, u uniform in [0, 1)); zero weights are never chosen, and a
// mass in the rounding gap at the top gives the last positive one.
inline std::size_t index_at_mass(std::span<const double> weights, double mass) noexcept {
    double sum = 0;
    std::size_t last_possible = 0;
    for (std::size_t i = 0; i < weights.size(); ++i) {
        if (weights[i] <= 0) continue;
        sum += weights[i];
        last_possible = i;
        if (mass < sum) return i;
    }
    return last_possible;
}

}  // namespace detail

enum class selection {
    greedy,  // argmax (the lowest id among equal maxima)
    sample,  // a draw from the softmax of the processed logits
};

class sampler {
public:
    sampler() = default;
    static sampler greedy() { return sampler(selection::greedy); }
    static sampler sampling() { return sampler(selection::sample); }

    // Appends every processor of `chain`, in order (validated as add() does).
    sampler& add(std::span<const logits_processor> chain) & {
        for (const logits_processor& p : chain) add(p);
        return *this;
    }

    // Appends a processor to the chain. Throws std::invalid_argument for bad parameters.
    sampler& add(logits_processor p) & {
        validate(p);
        chain_.push_back(std::move(p));
        return *this;
    }
    sampler&& add(logits_processor p) && { return std::move(add(std::move(p))); }

    selection mode() const noexcept { return mode_; }
    const std::vector<logits_processor>& chain() const noexcept { return chain_; }

    // Sizes the scratch buffers; choose() then allocates nothing.
    void reserve(std::size_t vocab) { scratch_.reserve(vocab); }

    // Runs the chain over `logits` (modified in place) without choosing: for
    // decoders that pick tokens themselves (beam search, tree expansion).
    // `history` is the sequence so far, prompt included.
    template <class T>
    void process(std::span<T> logits, std::span<const token_id> history) {
        scratch_.reserve(logits.size());
        for (const logits_processor& p : chain_) apply(p, logits, history, scratch_);
    }

    // Runs the chain over `logits` (modified in place) and picks a token.
    template <class T>
    token_id choose(std::span<T> logits, std::span<const token_id> history, rng& gen) {
        process(logits, history);
        if (mode_ == selection::greedy) return argmax<T>(logits);
        detail::probabilities<T>(logits, scratch_);
        return static_cast<token_id>(
            detail::index_at_mass(std::span<const double>(scratch_.values).first(logits.size()), gen.uniform()));
    }

    template <class T>
    static token_id argmax(std::span<const T> logits) {
        std::size_t best = 0;
        for (std::size_t i = 1; i < logits.size(); ++i)
            if (logits[i] > logits[best]) best = i;
        return static_cast<token_id>(best);
    }

private:
    explicit sampler(selection mode) : mode_(mode) {}

    selection mode_ = selection::greedy;
    std::vector<logits_processor> chain_;
    sampling_scratch scratch_;
};

}  // namespace kvdecode
