#pragma once
// Beam search with the semantics of Hugging Face transformers' generate(num_beams=N)
// (the goldens in ../shared/golden are its outputs). Per prompt and step:
//   1. every running beam scores its continuations: log-softmax of its logits, then
//      the processors (min_new_tokens, repetition penalty, no-repeat n-gram) on
//      the log-probabilities, added to the beam's running sum;
//   2. the best K = (1 + number of EOS ids, at least 2) x num_beams candidates of
//      all beams are walked best first: a candidate that ends in EOS, or any
//      candidate on the step that reaches the length limit, enters the finished
//      pool if its rank is below num_beams (else it is dropped); the others become
//      the next running beams until there are num_beams;
//   3. the pool keeps the best num_beams hypotheses by sum / L^length_penalty,
//      L = generated tokens including EOS.
// A prompt stops at the length limit, or once its pool is full and either
// early_stopping is `when_full`, or no running beam can beat the worst pooled
// score: best running sum / L'^length_penalty <= worst pooled score, with L' the
// current length (`heuristic`, and `never` when length_penalty <= 0) or the
// maximum length (`never` with length_penalty > 0).
//
// Each beam is a cache sequence. A step forks the surviving parents' sequences
// for their children and releases the parents before the children append, so K/V
// bytes are copied only when two children share a parent's partial last block.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "kvdecode/decode/generate.hpp"
#include "kvdecode/model/language_model.hpp"
#include "kvdecode/sampling/processors.hpp"

namespace kvdecode {

// When a prompt's search may stop before the length limit (transformers' early_stopping).
enum class beam_stopping {
    when_full,  // early_stopping=True: as soon as num_beams hypotheses are finished
    heuristic,  // early_stopping=False: when the best running beam, at its current length, cannot win
    never,      // early_stopping="never": the same test at the longest possible length when length_penalty > 0
};

// How a beam gets its parent's K/V when beams are reordered.
enum class beam_cache_policy {
    share,  // fork: the child shares the parent's blocks (the default; copies at most a partial block)
    copy,   // a private copy of every block: the naive baseline, for comparison
};

struct beam_options {
    std::size_t num_beams = 4;
    std::size_t num_return_sequences = 1;  // at most num_beams, best first
    double length_penalty = 1.0;           // score = sum of log-probs / generated_length^length_penalty
    beam_stopping early_stopping = beam_stopping::heuristic;
    std::size_t max_new_tokens = 64;
    std::size_t min_new_tokens = 0;        // EOS cannot end a hypothesis before this many tokens
    std::vector<token_id> eos = {2};
    float repetition_penalty = 1.0f;       // applied to log-probabilities, as transformers does; 1: off
    std::size_t no_repeat_ngram_size = 0;  // 0: off
    beam_cache_policy cache_policy = beam_cache_policy::share;
};

struct beam_hypothesis {
    std::vector<token_id> tokens;  // prompt, then generated tokens (EOS included when it ended so)
    double score = 0;              // sum_logprobs / generated_length^length_penalty
    double sum_logprobs = 0;
    bool ended_with_eos = false;
};

struct beam_stats {
    std::size_t forward_calls = 0;
    std::size_t steps = 0;
    std::size_t kv_bytes_copied = 0;           // copy-on-write of shared partial blocks, whole search
    std::size_t max_kv_bytes_copied_per_step = 0;
    std::size_t peak_blocks_used = 0;
};

struct beam_result {
    std::vector<std::vector<beam_hypothesis>> hypotheses;  // per prompt: num_return_sequences, best first
    beam_stats stats;
};

inline void validate(const beam_options& o, const model_config& c) {
    auto fail = [](const std::string& what) { throw std::invalid_argument("kvdecode: beam_search: " + what); };
    if (o.num_beams == 0) fail("num_beams must be at least 1, got 0");
    if (o.num_return_sequences == 0 || o.num_return_sequences > o.num_beams)
        fail("num_return_sequences (" + std::to_string(o.num_return_sequences) + ") must be in [1, num_beams = " +
             std::to_string(o.num_beams) + "]");
    if (o.max_new_tokens == 0) fail("max_new_tokens must be at least 1");
    if (o.min_new_tokens > o.max_new_tokens)
        fail("min_new_tokens (" + std::to_string(o.min_new_tokens) + ") exceeds max_new_tokens (" +
             std::to_string(o.max_new_tokens) + ")");
    if (!(o.repetition_penalty > 0)) fail("repetition_penalty must be positive");
    if (!std::isfinite(o.length_penalty)) fail("length_penalty must be finite");
    for (token_id e : o.eos)
        if (e < 0 || static_cast<std::size_t>(e) >= c.vocab_size)
            fail("EOS id " + std::to_string(e) + " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
}

namespace detail {

// Generated tokens of all beams as a forest of (token, parent) nodes, so a new
// beam records one node instead of copying its parent's token list.
struct token_forest {
    struct node {
        token_id token;
        std::int32_t parent;  // -1: the prompt
    };
    std::vector<node> nodes;
    std::int32_t add(token_id t, std::int32_t parent) {
        nodes.push_back({t, parent});
        return static_cast<std::int32_t>(nodes.size() - 1);
    }
    // prompt + the path ending at `leaf`, into `out` (cleared first).
    void sequence(std::span<const token_id> prompt, std::int32_t leaf, std::vector<token_id>& out) const {
        out.assign(prompt.begin(), prompt.end());
        const std::size_t at = out.size();
        for (std::int32_t n = leaf; n >= 0; n = nodes[static_cast<std::size_t>(n)].parent)
            out.push_back(nodes[static_cast<std::size_t>(n)].token);
        std::reverse(out.begin() + static_cast<std::ptrdiff_t>(at), out.end());
    }
};

struct running_beam {
    seq_id seq;
    double sum;          // sum of generated tokens' (processed) log-probabilities
    std::int32_t leaf;   // last generated token in the forest; -1 before the first step
    std::size_t parent;  // while being chosen: index of the beam it extends
};

struct beam_candidate {
    double sum;
    std::size_t beam;  // index into the prompt's running beams
    token_id token;
};

struct finished_hypothesis {
    double score;
    double sum;
    std::int32_t leaf;
    bool eos;
};

}  // namespace detail

template <language_model Model>
beam_result beam_search(Model& model, typename Model::cache_type& cache,
                        std::span<const std::vector<token_id>> prompts, const beam_options& options) {
    using T = typename Model::scalar_type;
    const model_config& c = model.config();
    validate(options, c);
    detail::validate_prompts(prompts, c);
    for (std::size_t p = 0; p < prompts.size(); ++p)
        if (prompts[p].size() >= c.seq_len)
            throw std::invalid_argument("kvdecode: beam_search: prompt " + std::to_string(p) +
                                        " leaves no room in the context length " + std::to_string(c.seq_len));

    const std::size_t n_prompts = prompts.size(), vocab = c.vocab_size, beams = options.num_beams;
    const std::size_t keep = std::max<std::size_t>(2, 1 + options.eos.size()) * beams;  // candidates per step
    const double lp = options.length_penalty;
    beam_result result;
    result.hypotheses.resize(n_prompts);
    if (n_prompts == 0) return result;

    detail::sequence_guard<typename Model::cache_type> guard(cache, n_prompts * (2 * beams + 1));
    const std::size_t bytes_copied_before = [&] {
        if constexpr (requires { cache.stats().bytes_copied; }) return cache.stats().bytes_copied;
        else return std::size_t{0};
    }();
    auto bytes_copied = [&]() -> std::size_t {
        if constexpr (requires { cache.stats().bytes_copied; }) return cache.stats().bytes_copied - bytes_copied_before;
        else return 0;
    };

    struct prompt_state {
        std::vector<detail::running_beam> running;
        std::vector<detail::finished_hypothesis> pool;  // best first, at most num_beams
        std::size_t max_new = 0;                        // max_new_tokens, capped by the context
        std::size_t row = 0;                            // first logits row of its beams in the last forward
        bool done = false;
    };
    std::vector<prompt_state> state(n_prompts);
    detail::token_forest forest;
    forest.nodes.reserve(n_prompts * beams * 2 * std::min(options.max_new_tokens, c.seq_len));

    // Prefill: every prompt once, in one forward; each starts with a single live beam.
    std::vector<sequence_tokens> batch;
    batch.reserve(n_prompts * beams);
    for (std::size_t p = 0; p < n_prompts; ++p) {
        auto& s = state[p];
        s.max_new = std::min(options.max_new_tokens, c.seq_len - prompts[p].size());
        s.running.push_back({guard.create(), 0.0, -1, 0});
        s.row = p;
        batch.push_back({s.running[0].seq, prompts[p]});
    }
    std::vector<T> logits(n_prompts * beams * vocab);
    std::vector<double> log_probs(vocab);
    std::vector<token_id> order(vocab), history;
    history.reserve(c.seq_len);
    std::vector<detail::beam_candidate> candidates;
    candidates.reserve(beams * keep);
    std::vector<detail::running_beam> next_running;
    next_running.reserve(beams);
    std::vector<token_id> next_tokens(n_prompts * beams);
    std::vector<seq_id> parents_to_release;
    parents_to_release.reserve(n_prompts * beams);
    sampling_scratch scratch;
    scratch.reserve(vocab);
    auto is_eos = [&](token_id t) { return std::find(options.eos.begin(), options.eos.end(), t) != options.eos.end(); };

    for (std::size_t generated = 0; !batch.empty(); ++generated) {
        const std::size_t copied_before_step = bytes_copied();
        model.forward(batch, cache, logits);
        ++result.stats.forward_calls;
        result.stats.max_kv_bytes_copied_per_step =
            std::max(result.stats.max_kv_bytes_copied_per_step, bytes_copied() - copied_before_step);
        result.stats.peak_blocks_used = std::max(result.stats.peak_blocks_used, detail::blocks_in_use(cache));
        ++result.stats.steps;
        batch.clear();
        parents_to_release.clear();

        for (std::size_t p = 0; p < n_prompts; ++p) {
            auto& s = state[p];
            if (s.done) continue;
            const std::size_t length = generated + 1;  // generated tokens after this step
            // 1. Candidates of every running beam: its best `keep` continuations.
            candidates.clear();
            for (std::size_t b = 0; b < s.running.size(); ++b) {
                const T* row = logits.data() + (s.row + b) * vocab;
                const double top = static_cast<double>(*std::max_element(row, row + vocab));
                double total = 0;
                for (std::size_t v = 0; v < vocab; ++v) total += std::exp(static_cast<double>(row[v]) - top);
                const double log_total = std::log(total);
                for (std::size_t v = 0; v < vocab; ++v) log_probs[v] = static_cast<double>(row[v]) - top - log_total;
                if (generated < options.min_new_tokens)
                    for (token_id e : options.eos) log_probs[e] = -std::numeric_limits<double>::infinity();
                if (options.repetition_penalty != 1.0f || options.no_repeat_ngram_size > 0) {
                    forest.sequence(prompts[p], s.running[b].leaf, history);
                    const std::span<double> lps(log_probs);
                    if (options.repetition_penalty != 1.0f)
                        apply(repetition_penalty{options.repetition_penalty}, lps, history, scratch);
                    if (options.no_repeat_ngram_size > 0)
                        apply(no_repeat_ngram{options.no_repeat_ngram_size}, lps, history, scratch);
                }
                const std::size_t k = std::min(keep, vocab);
                std::iota(order.begin(), order.end(), 0);
                auto better = [&](token_id a, token_id z) {
                    return log_probs[a] > log_probs[z] || (log_probs[a] == log_probs[z] && a < z);
                };
                std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(), better);
                for (std::size_t i = 0; i < k; ++i) {
                    const double lpv = log_probs[order[i]];
                    if (lpv == -std::numeric_limits<double>::infinity()) break;
                    candidates.push_back({s.running[b].sum + lpv, b, order[i]});
                }
            }
            const std::size_t k = std::min(keep, candidates.size());
            std::partial_sort(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(k), candidates.end(),
                              [](const detail::beam_candidate& a, const detail::beam_candidate& z) {
                                  if (a.sum != z.sum) return a.sum > z.sum;
                                  return a.beam != z.beam ? a.beam < z.beam : a.token < z.token;
                              });
            // 2. Walk them best first: finished ones into the pool, the rest into the next beams.
            const bool last_step = length >= s.max_new;
            const bool pool_closed = options.early_stopping == beam_stopping::when_full && s.pool.size() == beams;
            next_running.clear();
            for (std::size_t r = 0; r < k; ++r) {
                const auto& cand = candidates[r];
                const bool ends = is_eos(cand.token) || last_step;
                if (ends) {
                    if (r >= beams || pool_closed) continue;
                    const double score = cand.sum / std::pow(static_cast<double>(length), lp);
                    if (s.pool.size() == beams && score <= s.pool.back().score) continue;
                    const std::int32_t leaf = forest.add(cand.token, s.running[cand.beam].leaf);
                    const auto at = std::upper_bound(s.pool.begin(), s.pool.end(), score,
                                                     [](double x, const detail::finished_hypothesis& h) { return x > h.score; });
                    s.pool.insert(at, {score, cand.sum, leaf, is_eos(cand.token)});
                    if (s.pool.size() > beams) s.pool.pop_back();
                } else if (next_running.size() < beams) {
                    next_running.push_back({0, cand.sum, forest.add(cand.token, s.running[cand.beam].leaf), cand.beam});
                }
            }
            // 3. Stop, or continue with the new beams.
            bool stop = last_step || next_running.empty();
            if (!stop && s.pool.size() == beams) {
                if (options.early_stopping == beam_stopping::when_full) {
                    stop = true;
                } else {
                    const bool longest = options.early_stopping == beam_stopping::never && lp > 0;
                    const double best_length = static_cast<double>(longest ? s.max_new : length);
                    const double best_possible = next_running.front().sum / std::pow(best_length, lp);
                    stop = !(best_possible > s.pool.back().score);
                }
            }
            for (const auto& b : s.running) parents_to_release.push_back(b.seq);
            if (stop) {
                s.done = true;
                s.running.clear();
                continue;
            }
            for (auto& nb : next_running)
                nb.seq = options.cache_policy == beam_cache_policy::copy ? guard.copy(s.running[nb.parent].seq)
                                                                           : guard.fork(s.running[nb.parent].seq);
            s.running.swap(next_running);
            s.row = batch.size();
            for (std::size_t b = 0; b < s.running.size(); ++b) {
                next_tokens[p * beams + b] = forest.nodes[static_cast<std::size_t>(s.running[b].leaf)].token;
                batch.push_back({s.running[b].seq, std::span<const token_id>(&next_tokens[p * beams + b], 1)});
            }
        }
        // The step's peak: children forked (or copied), parents not yet released.
        result.stats.peak_blocks_used = std::max(result.stats.peak_blocks_used, detail::blocks_in_use(cache));
        // Parents go before their children append: a block kept by one child alone is written in place.
        for (seq_id parent : parents_to_release) guard.release(parent);
    }
    result.stats.kv_bytes_copied = bytes_copied();

    for (std::size_t p = 0; p < n_prompts; ++p) {
        const auto& pool = state[p].pool;
        for (std::size_t i = 0; i < std::min(options.num_return_sequences, pool.size()); ++i) {
            beam_hypothesis h;
            forest.sequence(prompts[p], pool[i].leaf, h.tokens);
            h.score = pool[i].score;
            h.sum_logprobs = pool[i].sum;
            h.ended_with_eos = pool[i].eos;
            result.hypotheses[p].push_back(std::move(h));
        }
    }
    return result;
}

}  // namespace kvdecode
