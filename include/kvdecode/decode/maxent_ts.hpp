#pragma once
// MaxEnt-TS: maximum-entropy tree search (after Diffusion Tree Sampling, Jain et
// al. 2025). It samples from — or searches for the mode of — the model's
// distribution tilted by a reward, p(x) * exp(lambda * r(x)), by Monte-Carlo tree
// search with soft Bellman backups. One iteration, over rollouts_per_batch walks:
//   1. select from the root down to a leaf: sampling mode draws a child with
//      probability proportional to prior * exp(lambda * Q); search mode takes the
//      PUCT argmax of Q + c * prior * sqrt(N(s)) / (1 + N(s, a)). An unvisited
//      child counts Q = V(s);
//   2. expand the leaf unless terminal (EOS or depth limit): one forward, the top
//      expansion_k tokens as children, priors = softmax(logits / expansion_temperature)
//      renormalised over them;
//   3. roll out from a child of the leaf by sampling, in a forked sequence released after;
//   4. score the whole sequence with the user's reward and back up: the rollout's
//      node takes the reward as its value; each ancestor s gets N += 1 and
//      V(s) = (1/lambda) log sum_{visited a} prior(a) exp(lambda Q(a)), priors
//      renormalised over the visited children.
// options.processors shape p everywhere: they run on each row before the priors of
// step 2 and before each rollout token of step 3 (see tree_options). EOS is kept out
// of children and rollouts before generation.min_new_tokens.
// Every expanded node owns a cache sequence forked from its parent's, so a prefix
// is computed once however many rollouts pass through it. Buffers are sized once
// per call: an iteration allocates nothing (the reward function aside).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <stdexcept>
#include <vector>

#include "kvdecode/core/rng.hpp"
#include "kvdecode/decode/detail/cache_counters.hpp"
#include "kvdecode/decode/detail/cache_sizing.hpp"
#include "kvdecode/decode/detail/eos.hpp"
#include "kvdecode/decode/detail/prompts.hpp"
#include "kvdecode/decode/detail/sequence_guard.hpp"
#include "kvdecode/decode/detail/token_path.hpp"
#include "kvdecode/decode/detail/top_tokens.hpp"
#include "kvdecode/decode/tree_options.hpp"
#include "kvdecode/model/language_model.hpp"
#include "kvdecode/sampling/sampler.hpp"

namespace kvdecode {

// Reward of a whole sequence (prompt and generated tokens). An exception aborts the search.
using reward_function = std::function<double(std::span<const token_id>)>;

struct tree_stats {
    std::size_t nodes = 0;           // in the tree, root included
    std::size_t max_depth = 0;       // generated tokens on the deepest node's path
    std::size_t rollouts = 0;        // iterations (each scored once)
    std::size_t reward_calls = 0;
    std::size_t forward_calls = 0;
    std::size_t tokens_computed = 0;   // rows run through the model
    std::size_t tokens_from_cache = 0; // prefix tokens a fork reused instead of recomputing
    std::size_t peak_blocks_used = 0;
};

// One node per token prefix. Values are V(s) = Q(parent, s).
struct tree_node {
    std::int32_t parent = -1;
    token_id token = -1;             // the edge from the parent (-1 at the root)
    std::uint32_t depth = 0;         // generated tokens from the root
    std::int32_t first_child = -1;   // children are contiguous
    std::uint32_t n_children = 0;
    double prior = 1.0;              // pi0(token | parent), renormalised over the expanded children
    std::uint32_t visits = 0;        // N(parent, this)
    std::uint32_t terminations = 0;  // visits that ended here (rollouts from it, terminal visits)
    double value = 0;
    bool terminal = false;           // EOS, depth limit, or no token left by the processors
    bool expanded = false;
    bool has_sequence = false;
    seq_id seq = 0;                  // K/V of the prompt and the path through this node
    std::uint32_t pending = 0;       // virtual visits of the batch being selected
};

struct tree_search_result {
    std::vector<token_id> tokens;       // the chosen sequence, prompt included
    double reward = 0;
    std::vector<token_id> best_tokens;  // the best-rewarded sequence seen
    double best_reward = -std::numeric_limits<double>::infinity();
    double root_value = 0;              // V(root), the soft value of the tree
    tree_stats stats;
    std::vector<tree_node> tree;  // the final tree, root first (for inspection)
};

// V(s) from its children: (1/lambda) log sum_visited prior exp(lambda Q) / sum_visited prior.
inline double soft_value(std::span<const tree_node> children, double lambda) {
    double top = -std::numeric_limits<double>::infinity(), prior_sum = 0;
    for (const auto& c : children)
        if (c.visits > 0) top = std::max(top, lambda * c.value), prior_sum += c.prior;
    if (prior_sum == 0) return 0;
    double sum = 0;
    for (const auto& c : children)
        if (c.visits > 0) sum += c.prior * std::exp(lambda * c.value - top);
    return (top + std::log(sum / prior_sum)) / lambda;
}

namespace detail {

template <language_model Model>
class maxent_tree_search {
    using T = typename Model::scalar_type;
    using cache_type = typename Model::cache_type;

public:
    maxent_tree_search(Model& model, cache_type& cache, std::span<const token_id> prompt, const reward_function& reward,
                       const tree_options& o)
        : model_(model), cache_(cache), prompt_(prompt), reward_(reward), o_(o), c_(model.config()),
          eos_(o.generation.eos), guard_(cache, tree_cache_need(prompt, o, c_, block_size_of(cache)).sequences),
          gen_(o.generation.seed), max_new_(std::min(o.generation.max_new_tokens, c_.seq_len - prompt.size())) {
        const std::size_t vocab = c_.vocab_size, walks = std::min(o.rollouts_per_batch, o.num_rollouts);
        expansion_chain_.add(o.processors);
        expansion_chain_.reserve(vocab);
        rollout_sampler_.add(o.processors);
        if (o.rollout_temperature != 1.0f) rollout_sampler_.add(temperature{o.rollout_temperature});
        if (o.rollout_top_k > 0) rollout_sampler_.add(top_k{o.rollout_top_k});
        if (o.rollout_top_p < 1.0f) rollout_sampler_.add(top_p{o.rollout_top_p});
        rollout_sampler_.reserve(vocab);
        nodes_.reserve(1 + (o.num_rollouts + 1) * std::min(o.expansion_k, vocab));  // an expansion per walk, and the root's
        logits_.resize(walks * vocab);
        order_.resize(vocab);
        weights_.reserve(o.expansion_k);
        walks_.resize(walks);
        for (auto& w : walks_) w.tokens.reserve(c_.seq_len);
        batch_.reserve(walks);
        rows_.reserve(walks);
        result_.tokens.reserve(c_.seq_len);
        result_.best_tokens.reserve(c_.seq_len);
    }

    tree_search_result run() {
        // The root: the prompt, prefilled once, expanded at once.
        nodes_.push_back({});
        nodes_[0].seq = guard_.create();
        nodes_[0].has_sequence = true;
        batch_.assign(1, {nodes_[0].seq, prompt_});
        forward();
        walks_[0].tokens.assign(prompt_.begin(), prompt_.end());
        expand(0, logits_row(0), walks_[0].tokens);

        while (result_.stats.rollouts < o_.num_rollouts) iterate();

        result_.root_value = nodes_[0].value;
        result_.stats.nodes = nodes_.size();
        if (o_.result == tree_result::best_seen) {
            result_.tokens = result_.best_tokens;
            result_.reward = result_.best_reward;
        } else {
            choose_result();
        }
        for (auto& n : nodes_) n.has_sequence = false;  // the guard releases them with the search
        result_.tree = std::move(nodes_);
        return std::move(result_);
    }

private:
    struct walk {
        std::int32_t leaf = -1;   // last node reached by selection
        std::int32_t child = -1;  // the child rolled out from (-1: ended at a terminal node)
        seq_id rollout_seq = 0;
        bool rolling = false;
        std::vector<token_id> tokens;  // prompt + path + rollout
        token_id next = -1;
        std::size_t sampled = 0, sample_limit = 0;
    };

    void iterate() {
        select_walks();
        expand_leaves();
        start_rollouts();
        roll_out();
        for (std::size_t i = 0; i < n_walks_; ++i) back_up(walks_[i]);
    }

    // 1. Selection, one walk after another; pending visits steer later walks (virtual loss).
    void select_walks() {
        const std::size_t want = std::min(o_.rollouts_per_batch, o_.num_rollouts - result_.stats.rollouts);
        n_walks_ = 0;
        for (std::size_t w = 0; w < want; ++w) {
            std::int32_t at = 0, last = 0;
            while (at >= 0 && node(at).expanded && !node(at).terminal) {
                ++node(at).pending;
                last = at;
                at = select_child(node(at));
            }
            if (at < 0) {  // everything below is claimed by earlier walks: this batch is full
                for (std::int32_t n = last; n >= 0; n = node(n).parent) --node(n).pending;
                break;
            }
            ++node(at).pending;
            walk& next = walks_[n_walks_++];
            next.leaf = at;
            next.child = -1;
            next.rolling = false;
        }
    }

    // 2. Expansion: one forward for every unexpanded leaf of the batch.
    void expand_leaves() {
        batch_.clear();
        rows_.clear();
        for (std::size_t i = 0; i < n_walks_; ++i) {
            walk& w = walks_[i];
            tree_node& leaf = node(w.leaf);
            path_tokens<tree_node>(prompt_, nodes_, w.leaf, 0, w.tokens);
            if (leaf.terminal) continue;
            if (o_.cache_policy == tree_cache_policy::share) {
                leaf.seq = guard_.fork(node(leaf.parent).seq);
                leaf.has_sequence = true;
                result_.stats.tokens_from_cache += cache_.length(leaf.seq);
                batch_.push_back({leaf.seq, std::span<const token_id>(&leaf.token, 1)});
            } else {
                w.rollout_seq = guard_.create();
                w.rolling = true;
                batch_.push_back({w.rollout_seq, std::span<const token_id>(w.tokens)});
            }
            rows_.push_back(i);
        }
        if (batch_.empty()) return;
        forward();
        for (std::size_t r = 0; r < rows_.size(); ++r) {
            walk& w = walks_[rows_[r]];
            expand(w.leaf, logits_row(r), w.tokens);
        }
    }

    // 3a. Each walk picks a child of its leaf and gets a sequence to roll out in.
    void start_rollouts() {
        for (std::size_t i = 0; i < n_walks_; ++i) {
            walk& w = walks_[i];
            if (node(w.leaf).terminal) {  // ended at a terminal node (or expansion found no token)
                if (w.rolling) guard_.release(w.rollout_seq), w.rolling = false;
                continue;
            }
            w.child = select_child(node(w.leaf));
            const tree_node& child = node(w.child);
            w.tokens.push_back(child.token);
            if (child.terminal) {
                if (w.rolling) guard_.release(w.rollout_seq), w.rolling = false;
                continue;
            }
            if (!w.rolling) {  // share: fork the leaf's sequence
                w.rollout_seq = guard_.fork(node(w.leaf).seq);
                result_.stats.tokens_from_cache += cache_.length(w.rollout_seq);
                w.rolling = true;
            }
            w.next = child.token;
            w.sampled = 0;
            w.sample_limit = std::min(o_.rollout_max_new_tokens, max_new_ - child.depth);
            if (w.sample_limit == 0) guard_.release(w.rollout_seq), w.rolling = false;
        }
    }

    // 3b. Rollouts: all walks' next tokens through one forward per step.
    void roll_out() {
        for (;;) {
            batch_.clear();
            rows_.clear();
            for (std::size_t i = 0; i < n_walks_; ++i)
                if (walks_[i].rolling) {
                    batch_.push_back({walks_[i].rollout_seq, std::span<const token_id>(&walks_[i].next, 1)});
                    rows_.push_back(i);
                }
            if (batch_.empty()) return;
            forward();
            for (std::size_t r = 0; r < rows_.size(); ++r) {
                walk& w = walks_[rows_[r]];
                const std::size_t generated = w.tokens.size() - prompt_.size();
                const token_id t = draw_token(logits_row(r), w.tokens, generated);
                w.tokens.push_back(t);
                ++w.sampled;
                w.next = t;
                if (is_eos(eos_, t) || w.sampled >= w.sample_limit) guard_.release(w.rollout_seq), w.rolling = false;
            }
        }
    }

    // 4. The walk's reward, backed up from the node it ended at to the root.
    void back_up(const walk& w) {
        const double r = reward_(std::span<const token_id>(w.tokens));
        ++result_.stats.reward_calls;
        ++result_.stats.rollouts;
        if (r > result_.best_reward) result_.best_reward = r, result_.best_tokens = w.tokens;
        tree_node& end = node(w.child >= 0 ? w.child : w.leaf);
        ++end.visits;
        ++end.terminations;  // a rollout from it, or a visit of a terminal node
        end.value = r;
        for (std::int32_t n = end.parent; n >= 0; n = node(n).parent) {
            tree_node& a = node(n);
            ++a.visits;
            a.value = soft_value(children(a), o_.lambda);
        }
        for (std::int32_t n = w.leaf; n >= 0; n = node(n).parent) --node(n).pending;  // the walk's virtual visits end
    }

    // The top expansion_k tokens of the processed `logits` become children of
    // `index`, whose sequence is `history`; none left (all removed): a terminal node.
    void expand(std::int32_t index, std::span<T> logits, std::span<const token_id> history) {
        const std::uint32_t depth = node(index).depth + 1;
        if (depth - 1 < o_.generation.min_new_tokens) suppress_eos(logits, std::span(eos_));
        expansion_chain_.process(logits, history);
        const auto best = top_tokens<T>(logits, o_.expansion_k, order_);
        const auto first = static_cast<std::int32_t>(nodes_.size());
        if (!best.empty()) {
            const double top = static_cast<double>(logits[best[0]]);
            double sum = 0;
            for (token_id t : best) sum += std::exp((static_cast<double>(logits[t]) - top) / o_.expansion_temperature);
            for (token_id t : best) {
                tree_node child{.parent = index, .token = t, .depth = depth};
                child.prior = std::exp((static_cast<double>(logits[t]) - top) / o_.expansion_temperature) / sum;
                child.terminal = is_eos(eos_, t) || depth >= max_new_;
                nodes_.push_back(child);
            }
            result_.stats.max_depth = std::max<std::size_t>(result_.stats.max_depth, depth);
        }
        tree_node& n = node(index);
        n.first_child = first;
        n.n_children = static_cast<std::uint32_t>(best.size());
        n.expanded = true;
        n.terminal = n.terminal || best.empty();
    }

    // A rollout token: EOS kept out before min_new_tokens, then processors and the rollout's sampling.
    token_id draw_token(std::span<T> logits, std::span<const token_id> history, std::size_t generated) {
        if (generated < o_.generation.min_new_tokens) suppress_eos(logits, std::span(eos_));
        return rollout_sampler_.choose(logits, history, gen_);
    }

    // A leaf another walk of this batch is about to expand: later walks go elsewhere.
    static bool claimed(const tree_node& n) { return n.pending > 0 && !n.expanded && !n.terminal; }

    // Step 1's choice at an expanded node; -1 when every child is claimed.
    std::int32_t select_child(const tree_node& n) {
        const auto kids = children(n);
        if (std::all_of(kids.begin(), kids.end(), claimed)) return -1;
        if (o_.mode == tree_mode::search) {
            // Pending visits count as visits (a virtual loss), so a batch's walks spread out.
            const double sqrt_n = std::sqrt(static_cast<double>(n.visits + n.pending));
            std::size_t best = kids.size();
            double best_score = -std::numeric_limits<double>::infinity();
            for (std::size_t i = 0; i < kids.size(); ++i) {
                if (claimed(kids[i])) continue;
                const double q = kids[i].visits > 0 ? kids[i].value : n.value;
                const double u = o_.c_puct * kids[i].prior * sqrt_n / (1.0 + kids[i].visits + kids[i].pending);
                if (best == kids.size() || q + u > best_score) best_score = q + u, best = i;
            }
            return n.first_child + static_cast<std::int32_t>(best);
        }
        return draw(kids, n.value, false);
    }

    // A child drawn with probability prior * exp(lambda * Q); only visited ones if asked.
    std::int32_t draw(std::span<tree_node> kids, double parent_value, bool visited_only) {
        double top = -std::numeric_limits<double>::infinity();
        auto eligible = [&](const tree_node& k) { return visited_only ? k.visits > 0 : !claimed(k); };
        for (const auto& k : kids)
            if (eligible(k)) top = std::max(top, o_.lambda * (k.visits > 0 ? k.value : parent_value));
        weights_.assign(kids.size(), 0.0);
        double total = 0;
        for (std::size_t i = 0; i < kids.size(); ++i) {
            if (!eligible(kids[i])) continue;
            const double q = kids[i].visits > 0 ? kids[i].value : parent_value;
            total += weights_[i] = kids[i].prior * std::exp(o_.lambda * q - top);
        }
        const std::size_t i = index_at_mass(weights_, gen_.uniform() * total);
        return static_cast<std::int32_t>(&kids[i] - nodes_.data());
    }

    // The result path: drawn by the soft policy (sample) or by highest Q (search),
    // through visited children, then completed by a rollout if it stops early.
    void choose_result() {
        std::int32_t at = 0;
        for (;;) {
            const tree_node& n = node(at);
            if (n.terminal || !n.expanded) break;
            auto kids = children(n);
            if (std::none_of(kids.begin(), kids.end(), [](const tree_node& k) { return k.visits > 0; })) break;
            if (o_.mode == tree_mode::search) {
                std::size_t best = kids.size();
                for (std::size_t i = 0; i < kids.size(); ++i)
                    if (kids[i].visits > 0 && (best == kids.size() || kids[i].value > kids[best].value)) best = i;
                at = n.first_child + static_cast<std::int32_t>(best);
            } else {
                at = draw(kids, n.value, true);
            }
        }
        path_tokens<tree_node>(prompt_, nodes_, at, 0, result_.tokens);
        if (!node(at).terminal && at != 0) complete(at, result_.tokens);
        result_.reward = reward_(std::span<const token_id>(result_.tokens));
        ++result_.stats.reward_calls;
    }

    // Samples a continuation of node `at`'s path (a rollout that is kept).
    void complete(std::int32_t at, std::vector<token_id>& tokens) {
        const tree_node& n = node(at);
        const tree_node& parent = node(n.parent);
        std::span<const token_id> feed(&n.token, 1);
        seq_id s;
        if (parent.has_sequence) {
            s = guard_.fork(parent.seq);
            result_.stats.tokens_from_cache += cache_.length(s);
        } else {  // recompute policy: from the prompt
            s = guard_.create();
            feed = std::span<const token_id>(tokens);
        }
        const std::size_t limit = std::min(o_.rollout_max_new_tokens, max_new_ - n.depth);
        token_id next = n.token;
        for (std::size_t sampled = 0; sampled < limit; ++sampled) {
            batch_.assign(1, {s, sampled == 0 ? feed : std::span<const token_id>(&next, 1)});
            forward();
            next = draw_token(logits_row(0), tokens, n.depth + sampled);
            tokens.push_back(next);
            if (is_eos(eos_, next)) break;
        }
        guard_.release(s);
    }

    void forward() {
        model_.forward(batch_, cache_, logits_);
        ++result_.stats.forward_calls;
        for (const auto& e : batch_) result_.stats.tokens_computed += e.tokens.size();
        result_.stats.peak_blocks_used = std::max(result_.stats.peak_blocks_used, blocks_in_use(cache_));
    }

    tree_node& node(std::int32_t i) { return nodes_[static_cast<std::size_t>(i)]; }
    std::span<T> logits_row(std::size_t row) { return std::span<T>(logits_).subspan(row * c_.vocab_size, c_.vocab_size); }
    std::span<tree_node> children(const tree_node& n) {
        return std::span<tree_node>(nodes_).subspan(static_cast<std::size_t>(n.first_child), n.n_children);
    }

    Model& model_;
    cache_type& cache_;
    std::span<const token_id> prompt_;
    const reward_function& reward_;
    const tree_options& o_;
    const model_config& c_;
    std::span<const token_id> eos_;
    sequence_guard<cache_type> guard_;
    rng gen_;
    const std::size_t max_new_;  // the depth limit, capped by the context
    sampler expansion_chain_ = sampler::greedy();  // options.processors, for expansion rows
    sampler rollout_sampler_ = sampler::sampling();
    std::vector<tree_node> nodes_;
    std::vector<T> logits_;
    std::vector<token_id> order_;
    std::vector<double> weights_;
    std::vector<walk> walks_;  // reused every iteration: n_walks_ of them are live
    std::size_t n_walks_ = 0;
    std::vector<sequence_tokens> batch_;
    std::vector<std::size_t> rows_;  // batch row -> walk
    tree_search_result result_;
};

}  // namespace detail

// Runs MaxEnt-TS from `prompt`. The cache is as it was when this returns or throws.
template <language_model Model>
tree_search_result maxent_ts(Model& model, typename Model::cache_type& cache, std::span<const token_id> prompt,
                             const reward_function& reward, const tree_options& options = {}) {
    validate(options, model.config());
    detail::validate_prompt_with_room(prompt, 0, model.config(), "maxent_ts");
    if (!reward) throw std::invalid_argument("kvdecode: maxent_ts: no reward function");
    detail::maxent_tree_search<Model> search(model, cache, prompt, reward, options);
    return search.run();
}

}  // namespace kvdecode
