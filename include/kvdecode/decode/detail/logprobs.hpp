#pragma once
// Log-probabilities of a step's logits for generation_options::logprobs: the
// log-softmax of the raw row (before any processor changes it) at the chosen token,
// and the k most likely tokens. Buffers are sized once; a step allocates nothing but
// what the result keeps (reserved by the caller).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

#include "kvdecode/decode/detail/top_tokens.hpp"
#include "kvdecode/decode/result.hpp"

namespace kvdecode::detail {

template <class T>
class logprob_reader {
public:
    logprob_reader(std::size_t vocab, std::size_t k) : raw_(vocab), order_(vocab), top_(k) {}

    // Keeps the row as it is now and its log-normaliser, before processors change it.
    void read(std::span<const T> row) {
        std::copy(row.begin(), row.end(), raw_.begin());
        const double peak = static_cast<double>(*std::max_element(row.begin(), row.end()));
        double sum = 0;
        for (T x : row) sum += std::exp(static_cast<double>(x) - peak);
        log_normalizer_ = peak + std::log(sum);
        const std::span<const token_id> best = top_tokens<T>(raw_, top_.size(), order_);
        for (std::size_t i = 0; i < top_.size(); ++i)
            top_[i] = i < best.size() ? token_logprob{best[i], at(best[i])} : token_logprob{-1, -std::numeric_limits<float>::infinity()};
    }

    token_logprob chosen(token_id t) const { return {t, at(t)}; }
    std::span<const token_logprob> top() const noexcept { return top_; }

private:
    float at(token_id t) const { return static_cast<float>(static_cast<double>(raw_[static_cast<std::size_t>(t)]) - log_normalizer_); }

    std::vector<T> raw_;
    std::vector<token_id> order_;
    std::vector<token_logprob> top_;
    double log_normalizer_ = 0;
};

}  // namespace kvdecode::detail
