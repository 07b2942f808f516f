#pragma once
// Greedy decoding and sampling over any language_model. Several prompts of
// different lengths run together: one forward prefills all of them, then every
// step runs all live sequences through one forward. A sequence that ends (EOS,
// length, callback) leaves the batch at once and costs nothing afterwards. The
// cache sequences the call creates are released when it returns or throws.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <stdexcept>
#include <vector>

#include "kvdecode/core/rng.hpp"
#include "kvdecode/decode/detail/cache_counters.hpp"
#include "kvdecode/decode/detail/eos.hpp"
#include "kvdecode/decode/detail/logprobs.hpp"
#include "kvdecode/decode/detail/prompts.hpp"
#include "kvdecode/decode/detail/sequence_guard.hpp"
#include "kvdecode/decode/options.hpp"
#include "kvdecode/decode/result.hpp"
#include "kvdecode/model/language_model.hpp"
#include "kvdecode/sampling/sampler.hpp"

namespace kvdecode {

namespace detail {

// generate() from prompts in new sequences (`kept` empty), or continue_generation()
// of the caller's sequences `kept`, each already holding some tokens.
template <language_model Model>
generation_result run_generation(Model& model, typename Model::cache_type& cache,
                                 std::span<const std::vector<token_id>> prompts, const generation_options& options,
                                 sampler& chooser, std::span<const seq_id> kept) {
    using T = typename Model::scalar_type;
    using clock = std::chrono::steady_clock;
    const model_config& c = model.config();

    const std::size_t n = prompts.size(), vocab = c.vocab_size;
    generation_result result;
    result.sequences.resize(n);
    if (n == 0) return result;
    chooser.reserve(vocab);
    rng gen(options.seed);
    std::optional<detail::logprob_reader<T>> logprobs;
    if (options.logprobs) logprobs.emplace(vocab, *options.logprobs);
    detail::sequence_guard<typename Model::cache_type> guard(cache, n);

    std::vector<seq_id> seqs(n);
    std::vector<bool> live(n, true);
    std::vector<token_id> next(n);     // each live sequence's newest token, fed by the next step
    std::vector<std::size_t> rows(n);  // sequence -> logits row of the last forward
    std::vector<sequence_tokens> batch;
    batch.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        seqs[i] = kept.empty() ? guard.create() : kept[i];
        const std::size_t held = kept.empty() ? 0 : cache.length(seqs[i]);  // context before this call's tokens
        auto& out = result.sequences[i];
        out.reason = stop_reason::length;
        out.prompt_length = prompts[i].size();
        // The most tokens this sequence can generate: by max_new_tokens and by the room left.
        const std::size_t most = std::min(options.max_new_tokens, c.seq_len - std::min(c.seq_len, held + prompts[i].size()));
        out.tokens.reserve(prompts[i].size() + most);
        out.tokens.assign(prompts[i].begin(), prompts[i].end());
        result.stats.prompt_tokens += prompts[i].size();
        if (logprobs) {
            out.top_k = *options.logprobs;
            out.logprobs.reserve(most);
            out.top_logprobs.reserve(most * out.top_k);
        }
        out.context_before = held;
        if (options.max_new_tokens == 0 || held + prompts[i].size() >= c.seq_len) {  // nothing to do, or no room
            live[i] = false;
            continue;
        }
        rows[i] = batch.size();
        batch.push_back({seqs[i], prompts[i]});
    }
    std::vector<T> logits(n * vocab);
    generation_stats& stats = result.stats;

    auto finish = [&](std::size_t i, stop_reason why) {  // its blocks return to the pool at once (ours)
        live[i] = false;
        result.sequences[i].reason = why;
        if (kept.empty()) guard.release(seqs[i]);
    };

    const auto start = clock::now();
    bool prefill = true;
    while (!batch.empty()) {
        model.forward(batch, cache, logits);
        ++stats.forward_calls;
        stats.peak_blocks_used = std::max(stats.peak_blocks_used, detail::blocks_in_use(cache));
        if (prefill) {
            stats.prefill_seconds = std::chrono::duration<double>(clock::now() - start).count();
            prefill = false;
        }
        batch.clear();
        for (std::size_t i = 0; i < n; ++i) {
            if (!live[i]) continue;
            auto& out = result.sequences[i];
            const std::span<T> row(logits.data() + rows[i] * vocab, vocab);
            if (logprobs) logprobs->read(row);  // the model's distribution, before any processor
            if (out.tokens.size() - out.prompt_length < options.min_new_tokens)
                detail::suppress_eos(row, std::span(options.eos));
            const token_id t = chooser.choose(row, std::span<const token_id>(out.tokens), gen);
            out.tokens.push_back(t);
            ++stats.generated_tokens;
            if (logprobs) {
                out.logprobs.push_back(logprobs->chosen(t));
                out.top_logprobs.insert(out.top_logprobs.end(), logprobs->top().begin(), logprobs->top().end());
                if (options.on_logprobs) options.on_logprobs(i, out.logprobs.back(), logprobs->top());
            }
            const bool keep_going = !options.on_token || options.on_token(i, t);
            if (detail::is_eos(options.eos, t)) finish(i, stop_reason::eos);
            else if (!keep_going) finish(i, stop_reason::callback);
            else if (out.tokens.size() - out.prompt_length >= options.max_new_tokens ||
                     out.context_before + out.tokens.size() >= c.seq_len)
                finish(i, stop_reason::length);
            else {
                next[i] = t;
                rows[i] = batch.size();
                batch.push_back({seqs[i], std::span<const token_id>(&next[i], 1)});
            }
        }
    }
    stats.decode_seconds = std::chrono::duration<double>(clock::now() - start).count() - stats.prefill_seconds;
    return result;
}

}  // namespace detail

// Generates a continuation of every prompt, choosing tokens with `chooser`
// (processors + greedy or sampled choice). Tokens of the result include the prompt.
template <language_model Model>
generation_result generate(Model& model, typename Model::cache_type& cache,
                           std::span<const std::vector<token_id>> prompts, const generation_options& options,
                           sampler chooser) {
    validate(options, model.config());
    detail::validate_prompts(prompts, model.config());
    return detail::run_generation(model, cache, prompts, options, chooser, {});
}

// Continues sequences the caller keeps in the cache, as a chat continues its
// conversation: `tokens[i]` (at least one) is appended to `sequences[i]` and
// generation goes on from there as generate() does from a prompt. The sequences stay
// the caller's and hold every token but each one's last generated token, which has
// not been through the model yet: the next call's tokens start with it (in a chat,
// the end-of-turn token, then the next turn). Each result sequence's tokens are
// tokens[i] and what was generated (context_before says how many came earlier);
// processors see only those. If the call throws, every sequence is truncated back
// to its length before the call.
template <language_model Model>
generation_result continue_generation(Model& model, typename Model::cache_type& cache, std::span<const seq_id> sequences,
                                      std::span<const std::vector<token_id>> tokens, const generation_options& options,
                                      sampler chooser) {
    validate(options, model.config());
    detail::validate_prompts(tokens, model.config());
    if (sequences.size() != tokens.size())
        throw std::invalid_argument("kvdecode: continue_generation: " + std::to_string(sequences.size()) +
                                    " sequences but " + std::to_string(tokens.size()) + " token lists");
    std::vector<std::size_t> lengths(sequences.size());
    for (std::size_t i = 0; i < sequences.size(); ++i) lengths[i] = cache.length(sequences[i]);  // throws for an unknown one
    try {
        return detail::run_generation(model, cache, tokens, options, chooser, sequences);
    } catch (...) {
        for (std::size_t i = 0; i < sequences.size(); ++i)
            if (cache.length(sequences[i]) > lengths[i]) cache.truncate(sequences[i], lengths[i]);
        throw;
    }
}

// The most likely token at every step (no processors).
template <language_model Model>
generation_result greedy(Model& model, typename Model::cache_type& cache,
                         std::span<const std::vector<token_id>> prompts, const generation_options& options = {}) {
    return generate(model, cache, prompts, options, sampler::greedy());
}

// Tokens drawn from the model's distribution after `chooser`'s processors,
// seeded by options.seed. (Pass sampler::sampling() with no processors for pure sampling.)
template <language_model Model>
generation_result sample(Model& model, typename Model::cache_type& cache,
                         std::span<const std::vector<token_id>> prompts, const generation_options& options,
                         sampler chooser = sampler::sampling()) {
    if (chooser.mode() != selection::sample)
        throw std::invalid_argument("kvdecode: sample() needs a sampler made by sampler::sampling()");
    return generate(model, cache, prompts, options, std::move(chooser));
}

}  // namespace kvdecode
