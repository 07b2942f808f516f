#pragma once
// Logits processors: small value types that rewrite a row of logits in place,
// given the sequence's tokens so far (prompt included). A sampler applies them in
// the order the user lists them. Semantics follow Hugging Face transformers'
// processors and warpers of the same names; removed tokens get -infinity.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "kvdecode/core/model_config.hpp"

namespace kvdecode {

// Divides positive logits and multiplies negative ones by `penalty`, once per
// distinct token already in the sequence (penalty > 1 discourages repeats).
struct repetition_penalty {
    float penalty = 1.0f;
};

// Forbids any token that would complete an n-gram already present in the sequence.
struct no_repeat_ngram {
    std::size_t n = 3;
};

// Divides every logit by `value` (> 0): below 1 sharpens, above 1 flattens.
struct temperature {
    float value = 1.0f;
};

// Keeps the k highest logits (all tokens tied with the k-th) and removes the rest.
struct top_k {
    std::size_t k = 50;
};

// Keeps the smallest set of most likely tokens whose probability reaches p.
struct top_p {
    float p = 0.9f;
};

// Removes tokens whose probability is below p times the most likely token's.
struct min_p {
    float p = 0.05f;
};

// Anything else: called with (logits, tokens so far). On double rows (beam search's
// log-probabilities) it sees a float copy, and the entries it changes are written back.
struct custom_processor {
    std::function<void(std::span<float>, std::span<const token_id>)> apply;
};

using logits_processor =
    std::variant<repetition_penalty, no_repeat_ngram, temperature, top_k, top_p, min_p, custom_processor>;

// Buffers the processors reuse, sized once to the vocabulary: nothing allocates per token.
struct sampling_scratch {
    std::vector<double> values;
    std::vector<token_id> order;
    std::vector<std::uint8_t> seen;
    std::vector<float> floats;  // a custom processor's view of a double row
    void reserve(std::size_t vocab) {
        if (values.size() >= vocab) return;
        values.resize(vocab);
        order.resize(vocab);
        seen.assign(vocab, 0);
        floats.resize(vocab);
    }
};

namespace detail {

template <class T>
constexpr T removed = -std::numeric_limits<T>::infinity();

// Softmax probabilities of `logits` into scratch.values (double, for stable sums).
template <class T>
void probabilities(std::span<const T> logits, sampling_scratch& s) {
    const double top = static_cast<double>(*std::max_element(logits.begin(), logits.end()));
    double sum = 0;
    for (std::size_t i = 0; i < logits.size(); ++i) sum += s.values[i] = std::exp(static_cast<double>(logits[i]) - top);
    for (std::size_t i = 0; i < logits.size(); ++i) s.values[i] /= sum;
}

}  // namespace detail

inline void validate(const logits_processor& p) {
    auto fail = [](const std::string& what) { throw std::invalid_argument("kvdecode: " + what); };
    std::visit(
        [&](const auto& q) {
            using Q = std::decay_t<decltype(q)>;
            if constexpr (std::is_same_v<Q, repetition_penalty>) {
                if (!(q.penalty > 0 && std::isfinite(q.penalty))) fail("repetition_penalty must be positive and finite, got " + std::to_string(q.penalty));
            } else if constexpr (std::is_same_v<Q, no_repeat_ngram>) {
                if (q.n == 0) fail("no_repeat_ngram size must be at least 1");
            } else if constexpr (std::is_same_v<Q, temperature>) {
                if (!(q.value > 0 && std::isfinite(q.value))) fail("temperature must be positive and finite, got " + std::to_string(q.value));
            } else if constexpr (std::is_same_v<Q, top_k>) {
                if (q.k == 0) fail("top_k must be at least 1");
            } else if constexpr (std::is_same_v<Q, top_p>) {
                if (!(q.p > 0 && q.p <= 1)) fail("top_p must be in (0, 1], got " + std::to_string(q.p));
            } else if constexpr (std::is_same_v<Q, min_p>) {
                if (!(q.p >= 0 && q.p <= 1)) fail("min_p must be in [0, 1], got " + std::to_string(q.p));
            } else {
                if (!q.apply) fail("custom_processor has no function");
            }
        },
        p);
}

template <class T>
void apply(const repetition_penalty& r, std::span<T> logits, std::span<const token_id> history, sampling_scratch& s) {
    const T penalty = static_cast<T>(r.penalty);
    for (token_id t : history) {
        if (s.seen[t]) continue;
        s.seen[t] = 1;
        T& x = logits[t];
        x = x < 0 ? x * penalty : x / penalty;
    }
    for (token_id t : history) s.seen[t] = 0;
}

template <class T>
void apply(const no_repeat_ngram& g, std::span<T> logits, std::span<const token_id> history, sampling_scratch&) {
    const std::size_t n = g.n, len = history.size();
    if (len + 1 < n) return;
    const auto prefix = history.subspan(len - (n - 1));  // the n-1 newest tokens
    for (std::size_t i = 0; i + n <= len; ++i)
        if (std::equal(prefix.begin(), prefix.end(), history.begin() + static_cast<std::ptrdiff_t>(i)))
            logits[history[i + n - 1]] = detail::removed<T>;
}

template <class T>
void apply(const temperature& t, std::span<T> logits, std::span<const token_id>, sampling_scratch&) {
    const T inv = T(1) / static_cast<T>(t.value);
    for (T& x : logits) x *= inv;
}

template <class T>
void apply(const top_k& k, std::span<T> logits, std::span<const token_id>, sampling_scratch& s) {
    if (k.k >= logits.size()) return;
    std::copy(logits.begin(), logits.end(), s.values.begin());
    const auto kth = s.values.begin() + static_cast<std::ptrdiff_t>(k.k - 1);
    std::nth_element(s.values.begin(), kth, s.values.begin() + static_cast<std::ptrdiff_t>(logits.size()),
                     std::greater<>());
    const double threshold = *kth;
    for (T& x : logits)
        if (static_cast<double>(x) < threshold) x = detail::removed<T>;
}

template <class T>
void apply(const top_p& p, std::span<T> logits, std::span<const token_id>, sampling_scratch& s) {
    detail::probabilities<T>(logits, s);
    const auto order = std::span(s.order).first(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](token_id a, token_id b) { return logits[a] < logits[b]; });
    // Ascending, as transformers does: drop tokens while the mass up to and including
    // them is at most 1 - p; the most likely token always stays.
    double mass = 0;
    for (std::size_t i = 0; i + 1 < order.size(); ++i) {
        mass += s.values[order[i]];
        if (mass > 1.0 - p.p) break;
        logits[order[i]] = detail::removed<T>;
    }
}

template <class T>
void apply(const min_p& m, std::span<T> logits, std::span<const token_id>, sampling_scratch& s) {
    detail::probabilities<T>(logits, s);
    const double floor = m.p * *std::max_element(s.values.begin(), s.values.begin() + static_cast<std::ptrdiff_t>(logits.size()));
    for (std::size_t i = 0; i < logits.size(); ++i)
        if (s.values[i] < floor) logits[i] = detail::removed<T>;
}

template <class T>
void apply(const custom_processor& c, std::span<T> logits, std::span<const token_id> history, sampling_scratch& s) {
    if constexpr (std::is_same_v<T, float>) {
        c.apply(logits, history);
    } else {
        const std::span<float> view = std::span(s.floats).first(logits.size());
        std::transform(logits.begin(), logits.end(), view.begin(), [](T x) { return static_cast<float>(x); });
        c.apply(view, history);
        for (std::size_t i = 0; i < logits.size(); ++i)  // untouched entries keep their precision
            if (view[i] != static_cast<float>(logits[i])) logits[i] = static_cast<T>(view[i]);
    }
}

template <class T>
void apply(const logits_processor& p, std::span<T> logits, std::span<const token_id> history, sampling_scratch& s) {
    std::visit([&](const auto& q) { apply(q, logits, history, s); }, p);
}

}  // namespace kvdecode
