#pragma once
// MaxEnt-TS: maximum-entropy tree search (after Diffusion Tree Sampling, Jain et
// al. 2025). It samples from — or searches for the mode of — the model's
// distribution tilted by a reward, p(x) * exp(lambda * r(x)), by Monte-Carlo tree
// search with soft Bellman backups. One iteration:
//   1. select from the root down to a leaf: sampling mode draws a child with
//      probability proportional to prior * exp(lambda * Q); search mode takes the
//      PUCT argmax of Q + c * prior * sqrt(N(s)) / (1 + N(s, a)). An unvisited
//      child counts Q = V(s);
//   2. expand the leaf unless terminal (EOS or depth limit): one forward, the top
//      expansion_k tokens as children, priors = softmax(logits / expansion_temperature)
//      renormalised over them;
//   3. roll out from the chosen child by sampling, in a forked sequence released after;
//   4. score the whole sequence with the user's reward;
//   5. back up: the leaf's value is the reward; each ancestor s gets N += 1 and
//      V(s) = (1/lambda) log sum_{visited a} prior(a) exp(lambda Q(a)), priors
//      renormalised over the visited children.
// Every expanded node owns a cache sequence forked from its parent's, so a prefix
// is computed once however many rollouts pass through it.

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
#include <vector>

#include "kvdecode/core/rng.hpp"
#include "kvdecode/decode/generate.hpp"
#include "kvdecode/model/language_model.hpp"
#include "kvdecode/sampling/sampler.hpp"

namespace kvdecode {

enum class tree_mode {
    sample,  // draw from the tilted distribution
    search,  // look for its mode (PUCT selection, highest-Q result path)
};

enum class tree_result {
    tree,       // sample: a path drawn by the soft policy; search: the highest-Q path (completed by a rollout)
    best_seen,  // the sequence with the highest reward among everything scored
};

// Where rollouts and expansions get their prefix's K/V.
enum class tree_cache_policy {
    share,      // fork the node's sequence: every prefix is computed once
    recompute,  // a fresh sequence each time, recomputed from the prompt: the baseline
};

// Reward of a whole sequence (prompt and generated tokens). An exception aborts the search.
using reward_function = std::function<double(std::span<const token_id>)>;

struct tree_options {
    std::size_t num_rollouts = 10;
    double lambda = 1.0;                 // tilt: p(x) * exp(lambda * r(x)); > 0
    std::size_t expansion_k = 3;         // children per expanded node
    double expansion_temperature = 1.0;  // priors = softmax(logits / this) over the top expansion_k
    tree_mode mode = tree_mode::sample;
    double c_puct = 1.0;                 // search mode's exploration weight
    std::size_t rollout_max_new_tokens = 50;
    float rollout_temperature = 0.8f;
    std::size_t rollout_top_k = 50;      // 0: off
    float rollout_top_p = 0.9f;          // 1: off
    std::size_t max_new_tokens = 100;    // depth limit: generated tokens in the tree and in rollouts
    std::vector<token_id> eos = {2};
    std::uint64_t seed = 0;
    tree_result result = tree_result::tree;
    std::size_t rollouts_per_batch = 1;  // rollouts that select with a virtual loss, then generate together
    tree_cache_policy cache_policy = tree_cache_policy::share;
};

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
    bool terminal = false;           // EOS or depth limit
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

inline void validate(const tree_options& o, const model_config& c) {
    auto fail = [](const std::string& what) { throw std::invalid_argument("kvdecode: maxent_ts: " + what); };
    if (o.num_rollouts == 0) fail("num_rollouts must be at least 1");
    if (!(o.lambda > 0) || !std::isfinite(o.lambda)) fail("lambda must be positive and finite");
    if (o.expansion_k == 0) fail("expansion_k must be at least 1");
    if (!(o.expansion_temperature > 0)) fail("expansion_temperature must be positive");
    if (!(o.c_puct >= 0)) fail("c_puct must be non-negative");
    if (!(o.rollout_temperature > 0)) fail("rollout_temperature must be positive");
    if (!(o.rollout_top_p > 0 && o.rollout_top_p <= 1)) fail("rollout_top_p must be in (0, 1]");
    if (o.max_new_tokens == 0) fail("max_new_tokens (the depth limit) must be at least 1");
    if (o.rollouts_per_batch == 0) fail("rollouts_per_batch must be at least 1");
    for (token_id e : o.eos)
        if (e < 0 || static_cast<std::size_t>(e) >= c.vocab_size)
            fail("EOS id " + std::to_string(e) + " is outside the vocabulary");
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
          guard_(cache, o.num_rollouts + 2 * o.rollouts_per_batch + 2), gen_(o.seed),
          rollout_sampler_(make_rollout_sampler(o)) {
        max_new_ = std::min(o.max_new_tokens, c_.seq_len - prompt.size());
        nodes_.reserve(1 + (o.num_rollouts + 1) * std::min(o.expansion_k, c_.vocab_size));
        logits_.resize(o.rollouts_per_batch * c_.vocab_size);
        rollout_sampler_.reserve(c_.vocab_size);
    }

    tree_search_result run() {
        // The root: the prompt, prefilled once, expanded at once.
        nodes_.push_back({});
        tree_node& root = nodes_[0];
        root.seq = guard_.create();
        root.has_sequence = true;
        forward(std::vector{sequence_tokens{root.seq, prompt_}});
        expand(0, logits_row(0));

        while (result_.stats.rollouts < o_.num_rollouts) run_batch();

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

    std::span<const tree_node> nodes() const { return nodes_; }

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

    static sampler make_rollout_sampler(const tree_options& o) {
        sampler s = sampler::sampling();
        if (o.rollout_temperature != 1.0f) s.add(temperature{o.rollout_temperature});
        if (o.rollout_top_k > 0) s.add(top_k{o.rollout_top_k});
        if (o.rollout_top_p < 1.0f) s.add(top_p{o.rollout_top_p});
        return s;
    }

    std::span<T> logits_row(std::size_t row) { return std::span<T>(logits_).subspan(row * c_.vocab_size, c_.vocab_size); }

    void forward(std::span<const sequence_tokens> batch) {
        model_.forward(batch, cache_, logits_);
        ++result_.stats.forward_calls;
        for (const auto& e : batch) result_.stats.tokens_computed += e.tokens.size();
        result_.stats.peak_blocks_used = std::max(result_.stats.peak_blocks_used, blocks_in_use(cache_));
    }

    bool is_eos(token_id t) const { return std::find(o_.eos.begin(), o_.eos.end(), t) != o_.eos.end(); }

    std::span<tree_node> children(const tree_node& n) {
        return std::span<tree_node>(nodes_).subspan(static_cast<std::size_t>(n.first_child), n.n_children);
    }

    // The top expansion_k tokens of `logits` become children of `index`.
    void expand(std::int32_t index, std::span<T> logits) {
        const std::size_t k = std::min(o_.expansion_k, c_.vocab_size);
        order_.resize(c_.vocab_size);
        std::iota(order_.begin(), order_.end(), 0);
        std::partial_sort(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(k), order_.end(),
                          [&](token_id a, token_id b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
        const double top = static_cast<double>(logits[order_[0]]);
        double sum = 0;
        for (std::size_t i = 0; i < k; ++i) sum += std::exp((static_cast<double>(logits[order_[i]]) - top) / o_.expansion_temperature);
        const std::uint32_t depth = nodes_[static_cast<std::size_t>(index)].depth + 1;
        const auto first = static_cast<std::int32_t>(nodes_.size());
        for (std::size_t i = 0; i < k; ++i) {
            tree_node child;
            child.parent = index;
            child.token = order_[i];
            child.depth = depth;
            child.prior = std::exp((static_cast<double>(logits[order_[i]]) - top) / o_.expansion_temperature) / sum;
            child.terminal = is_eos(child.token) || depth >= max_new_;
            nodes_.push_back(child);
        }
        tree_node& n = nodes_[static_cast<std::size_t>(index)];
        n.first_child = first;
        n.n_children = static_cast<std::uint32_t>(k);
        n.expanded = true;
        result_.stats.max_depth = std::max<std::size_t>(result_.stats.max_depth, depth);
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
        const double u = gen_.uniform() * total;
        double mass = 0;
        std::size_t last = 0;
        for (std::size_t i = 0; i < kids.size(); ++i) {
            if (weights_[i] <= 0) continue;
            mass += weights_[i];
            last = i;
            if (u < mass) break;
        }
        return static_cast<std::int32_t>(&kids[last] - nodes_.data());
    }

    void path_tokens(std::int32_t index, std::vector<token_id>& out) const {
        out.assign(prompt_.begin(), prompt_.end());
        const std::size_t at = out.size();
        for (std::int32_t n = index; n > 0; n = nodes_[static_cast<std::size_t>(n)].parent)
            out.push_back(nodes_[static_cast<std::size_t>(n)].token);
        std::reverse(out.begin() + static_cast<std::ptrdiff_t>(at), out.end());
    }

    void run_batch() {
        const std::size_t want = std::min(o_.rollouts_per_batch, o_.num_rollouts - result_.stats.rollouts);
        walks_.clear();
        // 1. Selection, one walk after another; pending visits steer later walks (virtual loss).
        for (std::size_t w = 0; w < want; ++w) {
            std::int32_t at = 0, last = 0;
            while (at >= 0 && nodes_[static_cast<std::size_t>(at)].expanded && !nodes_[static_cast<std::size_t>(at)].terminal) {
                ++nodes_[static_cast<std::size_t>(at)].pending;
                last = at;
                at = select_child(nodes_[static_cast<std::size_t>(at)]);
            }
            if (at < 0) {  // everything below is claimed by earlier walks: this batch is full
                for (std::int32_t n = last; n >= 0; n = nodes_[static_cast<std::size_t>(n)].parent)
                    --nodes_[static_cast<std::size_t>(n)].pending;
                break;
            }
            ++nodes_[static_cast<std::size_t>(at)].pending;
            walks_.push_back({});
            walks_.back().leaf = at;
        }
        // 2. Expansion: one forward for every unexpanded leaf of the batch.
        batch_.clear();
        expand_rows_.clear();
        for (auto& w : walks_) {
            tree_node& leaf = nodes_[static_cast<std::size_t>(w.leaf)];
            if (leaf.terminal) continue;
            path_tokens(w.leaf, w.tokens);
            const tree_node& parent = nodes_[static_cast<std::size_t>(leaf.parent)];
            seq_id s;
            if (o_.cache_policy == tree_cache_policy::share) {
                s = guard_.fork(parent.seq);
                leaf.seq = s;
                leaf.has_sequence = true;
                result_.stats.tokens_from_cache += cache_.length(s);
                batch_.push_back({s, std::span<const token_id>(&leaf.token, 1)});
            } else {
                s = guard_.create();
                w.rollout_seq = s;
                w.rolling = true;
                batch_.push_back({s, std::span<const token_id>(w.tokens)});
            }
            expand_rows_.push_back(static_cast<std::size_t>(&w - walks_.data()));
        }
        if (!batch_.empty()) {
            forward(batch_);
            for (std::size_t r = 0; r < expand_rows_.size(); ++r) expand(walks_[expand_rows_[r]].leaf, logits_row(r));
        }
        // 3. Rollouts from a child of each expanded leaf, all walks through one forward per step.
        for (auto& w : walks_) {
            if (nodes_[static_cast<std::size_t>(w.leaf)].terminal) {
                path_tokens(w.leaf, w.tokens);
                continue;
            }
            w.child = select_child(nodes_[static_cast<std::size_t>(w.leaf)]);
            const tree_node& child = nodes_[static_cast<std::size_t>(w.child)];
            w.tokens.push_back(child.token);
            if (child.terminal) {
                if (w.rolling) guard_.release(w.rollout_seq), w.rolling = false;
                continue;
            }
            if (!w.rolling) {  // share: fork the leaf's sequence
                w.rollout_seq = guard_.fork(nodes_[static_cast<std::size_t>(w.leaf)].seq);
                result_.stats.tokens_from_cache += cache_.length(w.rollout_seq);
                w.rolling = true;
            }
            w.next = child.token;
            w.sampled = 0;
            const std::size_t room = std::min(max_new_ - child.depth, c_.seq_len - prompt_.size() - child.depth);
            w.sample_limit = std::min(o_.rollout_max_new_tokens, room);
            if (w.sample_limit == 0) guard_.release(w.rollout_seq), w.rolling = false;
        }
        for (;;) {
            batch_.clear();
            expand_rows_.clear();
            for (std::size_t i = 0; i < walks_.size(); ++i)
                if (walks_[i].rolling) {
                    batch_.push_back({walks_[i].rollout_seq, std::span<const token_id>(&walks_[i].next, 1)});
                    expand_rows_.push_back(i);
                }
            if (batch_.empty()) break;
            forward(batch_);
            for (std::size_t r = 0; r < expand_rows_.size(); ++r) {
                walk& w = walks_[expand_rows_[r]];
                const token_id t = rollout_sampler_.choose(logits_row(r), std::span<const token_id>(w.tokens), gen_);
                w.tokens.push_back(t);
                ++w.sampled;
                w.next = t;
                if (is_eos(t) || w.sampled >= w.sample_limit) guard_.release(w.rollout_seq), w.rolling = false;
            }
        }
        // 4-5. Rewards and backups, in walk order.
        for (auto& w : walks_) {
            const double r = reward_(std::span<const token_id>(w.tokens));
            ++result_.stats.reward_calls;
            ++result_.stats.rollouts;
            if (r > result_.best_reward) result_.best_reward = r, result_.best_tokens = w.tokens;
            const std::int32_t end = w.child >= 0 ? w.child : w.leaf;
            tree_node& e = nodes_[static_cast<std::size_t>(end)];
            ++e.visits;
            ++e.terminations;  // a rollout from it, or a visit of a terminal node
            e.value = r;
            for (std::int32_t n = e.parent; n >= 0; n = nodes_[static_cast<std::size_t>(n)].parent) {
                tree_node& a = nodes_[static_cast<std::size_t>(n)];
                ++a.visits;
                a.value = soft_value(children(a), o_.lambda);
            }
            for (std::int32_t n = w.leaf; n >= 0; n = nodes_[static_cast<std::size_t>(n)].parent)
                --nodes_[static_cast<std::size_t>(n)].pending;  // the walk's virtual visits end
        }
    }

    // The result path: drawn by the soft policy (sample) or by highest Q (search),
    // through visited children, then completed by a rollout if it stops early.
    void choose_result() {
        std::int32_t at = 0;
        for (;;) {
            const tree_node& n = nodes_[static_cast<std::size_t>(at)];
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
        std::vector<token_id> tokens;
        path_tokens(at, tokens);
        const tree_node& end = nodes_[static_cast<std::size_t>(at)];
        if (!end.terminal && at != 0) complete(at, tokens);
        result_.tokens = tokens;
        result_.reward = reward_(std::span<const token_id>(result_.tokens));
        ++result_.stats.reward_calls;
    }

    // Samples a continuation of node `at`'s path (a rollout that is kept).
    void complete(std::int32_t at, std::vector<token_id>& tokens) {
        const tree_node& n = nodes_[static_cast<std::size_t>(at)];
        const tree_node& parent = nodes_[static_cast<std::size_t>(n.parent)];
        std::span<const token_id> feed(&n.token, 1);
        seq_id s;
        if (parent.has_sequence) {
            s = guard_.fork(parent.seq);
            result_.stats.tokens_from_cache += cache_.length(s);
        } else {  // recompute policy: from the prompt
            s = guard_.create();
            feed = std::span<const token_id>(tokens);
        }
        const std::size_t limit =
            std::min({o_.rollout_max_new_tokens, max_new_ - n.depth, c_.seq_len - prompt_.size() - n.depth});
        token_id next = n.token;
        for (std::size_t sampled = 0; sampled < limit; ++sampled) {
            forward(std::vector{sequence_tokens{s, sampled == 0 ? feed : std::span<const token_id>(&next, 1)}});
            next = rollout_sampler_.choose(logits_row(0), std::span<const token_id>(tokens), gen_);
            tokens.push_back(next);
            if (is_eos(next)) break;
        }
        guard_.release(s);
    }

    Model& model_;
    cache_type& cache_;
    std::span<const token_id> prompt_;
    const reward_function& reward_;
    const tree_options& o_;
    const model_config& c_;
    sequence_guard<cache_type> guard_;
    rng gen_;
    sampler rollout_sampler_;
    std::size_t max_new_ = 0;
    std::vector<tree_node> nodes_;
    std::vector<T> logits_;
    std::vector<token_id> order_;
    std::vector<double> weights_;
    std::vector<walk> walks_;
    std::vector<sequence_tokens> batch_;
    std::vector<std::size_t> expand_rows_;
    tree_search_result result_;
};

}  // namespace detail

// Runs MaxEnt-TS from `prompt`. The cache is as it was when this returns or throws.
template <language_model Model>
tree_search_result maxent_ts(Model& model, typename Model::cache_type& cache, std::span<const token_id> prompt,
                             const reward_function& reward, const tree_options& options = {}) {
    validate(options, model.config());
    const std::vector<std::vector<token_id>> prompts = {std::vector<token_id>(prompt.begin(), prompt.end())};
    detail::validate_prompts(prompts, model.config());
    if (prompt.size() >= model.config().seq_len)
        throw std::invalid_argument("kvdecode: maxent_ts: the prompt leaves no room in the context");
    if (!reward) throw std::invalid_argument("kvdecode: maxent_ts: no reward function");
    detail::maxent_tree_search<Model> search(model, cache, prompt, reward, options);
    return search.run();
}

}  // namespace kvdecode
