#pragma once
// Options of beam search (beam_search.hpp), with the semantics of Hugging Face
// transformers' generate(num_beams=N):
//   beam_options{.num_beams = 4, .generation = {.max_new_tokens = 20, .eos = {2}},
//                .processors = {repetition_penalty{1.2f}, no_repeat_ngram{3}}}

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "kvdecode/core/model_config.hpp"
#include "kvdecode/decode/detail/whole_sequence_checks.hpp"
#include "kvdecode/decode/options.hpp"
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
    // max_new_tokens (at least 1), min_new_tokens, EOS ids. The search draws nothing
    // (seed unused) and streams nothing (on_token must be empty).
    generation_options generation;
    // Run in this order on every beam's log-softmax scores before candidates are
    // chosen, as transformers' logits processors do in beam search (e.g.
    // repetition_penalty, no_repeat_ngram). Empty: plain beam search.
    std::vector<logits_processor> processors;
    beam_cache_policy cache_policy = beam_cache_policy::share;
};

inline void validate(const beam_options& o, const model_config& c) {
    auto fail = [](const std::string& what) { throw std::invalid_argument("kvdecode: beam_search: " + what); };
    if (o.num_beams == 0) fail("num_beams must be at least 1, got 0");
    if (o.num_return_sequences == 0 || o.num_return_sequences > o.num_beams)
        fail("num_return_sequences (" + std::to_string(o.num_return_sequences) + ") must be in [1, num_beams = " +
             std::to_string(o.num_beams) + "]");
    if (!std::isfinite(o.length_penalty)) fail("length_penalty must be finite");
    detail::validate_for_whole_sequences(o.generation, c, "beam_search");
    for (const auto& p : o.processors) validate(p);
}

}  // namespace kvdecode
