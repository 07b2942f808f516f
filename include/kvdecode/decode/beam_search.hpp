#pragma once
// Beam search with the semantics of Hugging Face transformers' generate(num_beams=N)
// (the tests check it against transformers' own outputs). Per prompt and step:
//   1. score: every running beam's log-softmax, EOS kept out before min_new_tokens,
//      then options.processors in order, added to the beam's running sum; the best
//      K = (1 + number of EOS ids, at least 2) x num_beams candidates of all beams;
//   2. pick: walk them best first: a candidate that ends in EOS, or any candidate on
//      the step that reaches the length limit, enters the finished pool if its rank
//      is below num_beams (else it is dropped); the others become the next running
//      beams until there are num_beams. The pool keeps the best num_beams
//      hypotheses by sum / L^length_penalty, L = generated tokens including EOS;
//   3. stop at the length limit, or once the pool is full and either early_stopping
//      is `when_full`, or no running beam can beat the worst pooled score: best
//      running sum / L'^length_penalty <= worst pooled score, with L' the current
//      length (`heuristic`, and `never` when length_penalty <= 0) or the maximum
//      length (`never` with length_penalty > 0);
//   4. advance: the next beams fork their parents' sequences.
// Parents are released after every prompt's children exist and before the children
// append, so K/V bytes are copied only when two children share a parent's partial
// last block. Buffers are sized once per call: a step allocates nothing.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kvdecode/decode/beam_options.hpp"
#include "kvdecode/decode/detail/cache_counters.hpp"
#include "kvdecode/decode/detail/cache_sizing.hpp"
#include "kvdecode/decode/detail/eos.hpp"
#include "kvdecode/decode/detail/prompts.hpp"
#include "kvdecode/decode/detail/sequence_guard.hpp"
#include "kvdecode/decode/detail/token_path.hpp"
#include "kvdecode/decode/detail/top_tokens.hpp"
#include "kvdecode/model/language_model.hpp"
#include "kvdecode/sampling/sampler.hpp"

namespace kvdecode {

struct beam_hypothesis {
    std::vector<token_id> tokens;  // prompt, then generated tokens (EOS included when it ended so)
    double score = 0;              // sum_logprobs / generated_length^length_penalty
    double sum_logprobs = 0;       // of the processed scores
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

namespace detail {

// Generated tokens of all beams as a forest: a new beam records one node.
struct beam_node {
    token_id token;
    std::int32_t parent;  // -1: the prompt
};

struct running_beam {
    seq_id seq;
    double sum;          // sum of generated tokens' (processed) log-probabilities
    std::int32_t leaf;   // last generated token in the forest; -1 before the first step
    std::size_t parent;  // while being picked: index of the beam it extends
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

// log-softmax of `row` into `out`, in double.
template <class T>
void log_softmax(std::span<const T> row, std::span<double> out) {
    const double top = static_cast<double>(*std::max_element(row.begin(), row.end()));
    double total = 0;
    for (T x : row) total += std::exp(static_cast<double>(x) - top);
    const double log_total = std::log(total);
    for (std::size_t v = 0; v < row.size(); ++v) out[v] = static_cast<double>(row[v]) - top - log_total;
}

// One beam_search call: the state of every prompt's search and the buffers of a step.
template <language_model Model>
class beam_searcher {
    using T = typename Model::scalar_type;
    using cache_type = typename Model::cache_type;

public:
    beam_searcher(Model& model, cache_type& cache, std::span<const std::vector<token_id>> prompts,
                  const beam_options& o)
        : model_(model), cache_(cache), prompts_(prompts), o_(o), c_(model.config()),
          beams_(o.num_beams), keep_(std::max<std::size_t>(2, 1 + o.generation.eos.size()) * o.num_beams),
          guard_(cache, beam_cache_need(prompts, o, c_, block_size_of(cache)).sequences),
          copied_at_start_(bytes_copied(cache)) {
        const std::size_t n = prompts.size(), vocab = c_.vocab_size;
        state_.resize(n);
        for (auto& s : state_) s.running.reserve(beams_), s.pool.reserve(beams_ + 1);
        forest_.reserve(n * beams_ * 2 * std::min(o.generation.max_new_tokens, c_.seq_len));
        logits_.resize(n * beams_ * vocab);
        log_probs_.resize(vocab);
        order_.resize(vocab);
        history_.reserve(c_.seq_len);
        candidates_.reserve(beams_ * keep_);
        next_.reserve(beams_);
        next_tokens_.resize(n * beams_);
        batch_.reserve(n * beams_);
        parents_.reserve(n * beams_);
        chain_.add(o.processors);
        chain_.reserve(vocab);
    }

    beam_result run() {
        beam_result result;
        result.hypotheses.resize(prompts_.size());
        prefill();
        for (generated_ = 0; !batch_.empty(); ++generated_) {
            forward();
            batch_.clear();
            for (std::size_t p = 0; p < prompts_.size(); ++p)
                if (!state_[p].done) step(p);
            // The step's peak: children forked (or copied), parents not yet released.
            stats_.peak_blocks_used = std::max(stats_.peak_blocks_used, blocks_in_use(cache_));
            for (seq_id parent : parents_) guard_.release(parent);  // before the children append
            parents_.clear();
        }
        stats_.kv_bytes_copied = bytes_copied(cache_) - copied_at_start_;
        finish(result);
        return result;
    }

private:
    struct prompt_state {
        std::vector<running_beam> running;
        std::vector<finished_hypothesis> pool;  // best first, at most num_beams
        std::size_t max_new = 0;                // max_new_tokens, capped by the context
        std::size_t row = 0;                    // first logits row of its beams in the last forward
        bool done = false;
    };

    // Every prompt once, in one forward; each starts with a single live beam.
    void prefill() {
        for (std::size_t p = 0; p < prompts_.size(); ++p) {
            auto& s = state_[p];
            s.max_new = std::min(o_.generation.max_new_tokens, c_.seq_len - prompts_[p].size());
            s.running.push_back({guard_.create(), 0.0, -1, 0});
            s.row = p;
            batch_.push_back({s.running[0].seq, prompts_[p]});
        }
    }

    void forward() {
        const std::size_t copied_before = bytes_copied(cache_);
        model_.forward(batch_, cache_, logits_);
        ++stats_.forward_calls;
        ++stats_.steps;
        stats_.max_kv_bytes_copied_per_step =
            std::max(stats_.max_kv_bytes_copied_per_step, bytes_copied(cache_) - copied_before);
        stats_.peak_blocks_used = std::max(stats_.peak_blocks_used, blocks_in_use(cache_));
    }

    // One prompt's step after the forward.
    void step(std::size_t p) {
        prompt_state& s = state_[p];
        score_candidates(p);
        pick(s);
        for (const auto& b : s.running) parents_.push_back(b.seq);
        if (should_stop(s)) {
            s.done = true;
            s.running.clear();
        } else {
            advance(p);
        }
    }

    // 1. The best keep_ continuations of every running beam, then of all of them.
    void score_candidates(std::size_t p) {
        const prompt_state& s = state_[p];
        const std::span<double> scores(log_probs_);
        candidates_.clear();
        for (std::size_t b = 0; b < s.running.size(); ++b) {
            log_softmax<T>(std::span<const T>(logits_).subspan((s.row + b) * c_.vocab_size, c_.vocab_size), scores);
            if (generated_ < o_.generation.min_new_tokens) suppress_eos(scores, std::span(o_.generation.eos));
            if (!chain_.chain().empty()) {
                path_tokens<beam_node>(prompts_[p], forest_, s.running[b].leaf, -1, history_);
                chain_.process(scores, std::span<const token_id>(history_));
            }
            for (token_id t : top_tokens<double>(scores, keep_, order_))
                candidates_.push_back({s.running[b].sum + scores[static_cast<std::size_t>(t)], b, t});
        }
        const std::size_t k = std::min(keep_, candidates_.size());
        std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(k), candidates_.end(),
                          [](const beam_candidate& a, const beam_candidate& z) {
                              if (a.sum != z.sum) return a.sum > z.sum;
                              return a.beam != z.beam ? a.beam < z.beam : a.token < z.token;
                          });
        candidates_.resize(k);
    }

    // 2. Finished candidates into the pool, the others into next_.
    void pick(prompt_state& s) {
        const std::size_t length = generated_ + 1;  // generated tokens after this step
        const bool last_step = length >= s.max_new;
        const bool pool_closed = o_.early_stopping == beam_stopping::when_full && s.pool.size() == beams_;
        next_.clear();
        for (std::size_t r = 0; r < candidates_.size(); ++r) {
            const beam_candidate& cand = candidates_[r];
            const bool eos = is_eos(o_.generation.eos, cand.token);
            if (!eos && !last_step) {
                if (next_.size() < beams_)
                    next_.push_back({0, cand.sum, add_node(cand.token, s.running[cand.beam].leaf), cand.beam});
                continue;
            }
            if (r >= beams_ || pool_closed) continue;
            const double score = cand.sum / std::pow(static_cast<double>(length), o_.length_penalty);
            if (s.pool.size() == beams_ && score <= s.pool.back().score) continue;
            const auto at = std::upper_bound(s.pool.begin(), s.pool.end(), score,
                                             [](double x, const finished_hypothesis& h) { return x > h.score; });
            s.pool.insert(at, {score, cand.sum, add_node(cand.token, s.running[cand.beam].leaf), eos});
            if (s.pool.size() > beams_) s.pool.pop_back();
        }
    }

    // 3. Whether the prompt's search ends with this step.
    bool should_stop(const prompt_state& s) const {
        const std::size_t length = generated_ + 1;
        if (length >= s.max_new || next_.empty()) return true;
        if (s.pool.size() < beams_) return false;
        if (o_.early_stopping == beam_stopping::when_full) return true;
        const bool longest = o_.early_stopping == beam_stopping::never && o_.length_penalty > 0;
        const double best_length = static_cast<double>(longest ? s.max_new : length);
        const double best_possible = next_.front().sum / std::pow(best_length, o_.length_penalty);
        return !(best_possible > s.pool.back().score);
    }

    // 4. The next beams take their parents' K/V and queue their new token.
    void advance(std::size_t p) {
        prompt_state& s = state_[p];
        for (auto& nb : next_)
            nb.seq = o_.cache_policy == beam_cache_policy::copy ? guard_.copy(s.running[nb.parent].seq)
                                                                 : guard_.fork(s.running[nb.parent].seq);
        s.running.swap(next_);
        s.row = batch_.size();
        for (std::size_t b = 0; b < s.running.size(); ++b) {
            token_id& next = next_tokens_[p * beams_ + b];
            next = forest_[static_cast<std::size_t>(s.running[b].leaf)].token;
            batch_.push_back({s.running[b].seq, std::span<const token_id>(&next, 1)});
        }
    }

    // The best num_return_sequences of every prompt's pool, spelled out.
    void finish(beam_result& result) const {
        result.stats = stats_;
        for (std::size_t p = 0; p < prompts_.size(); ++p) {
            const auto& pool = state_[p].pool;
            for (std::size_t i = 0; i < std::min(o_.num_return_sequences, pool.size()); ++i) {
                beam_hypothesis h;
                path_tokens<beam_node>(prompts_[p], forest_, pool[i].leaf, -1, h.tokens);
                h.score = pool[i].score;
                h.sum_logprobs = pool[i].sum;
                h.ended_with_eos = pool[i].eos;
                result.hypotheses[p].push_back(std::move(h));
            }
        }
    }

    std::int32_t add_node(token_id t, std::int32_t parent) {
        forest_.push_back({t, parent});
        return static_cast<std::int32_t>(forest_.size() - 1);
    }

    Model& model_;
    cache_type& cache_;
    std::span<const std::vector<token_id>> prompts_;
    const beam_options& o_;
    const model_config& c_;
    const std::size_t beams_, keep_;
    sequence_guard<cache_type> guard_;
    const std::size_t copied_at_start_;
    sampler chain_ = sampler::greedy();  // options.processors with their scratch
    std::size_t generated_ = 0;          // tokens generated before the current step
    beam_stats stats_;
    std::vector<prompt_state> state_;
    std::vector<beam_node> forest_;
    std::vector<T> logits_;
    std::vector<double> log_probs_;
    std::vector<token_id> order_, history_, next_tokens_;
    std::vector<beam_candidate> candidates_;
    std::vector<running_beam> next_;
    std::vector<sequence_tokens> batch_;
    std::vector<seq_id> parents_;
};

}  // namespace detail

// Beam search from every prompt; all prompts' beams share each forward.
template <language_model Model>
beam_result beam_search(Model& model, typename Model::cache_type& cache,
                        std::span<const std::vector<token_id>> prompts, const beam_options& options) {
    validate(options, model.config());
    detail::validate_prompts_with_room(prompts, model.config(), "beam_search");
    detail::beam_searcher<Model> search(model, cache, prompts, options);
    return search.run();
}

}  // namespace kvdecode
