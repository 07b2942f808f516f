#pragma once
// Prompt checks every decoder makes before it touches the cache: not empty, within
// the context, every id in the vocabulary; and, for decoders that must generate at
// least one token (beam and tree search), room left after the prompt.

#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "kvdecode/core/model_config.hpp"
#include "kvdecode/decode/detail/token_range.hpp"

namespace kvdecode::detail {

// `index` names the prompt in messages.
inline void validate_prompt(std::span<const token_id> prompt, std::size_t index, const model_config& c) {
    const std::string name = "prompt " + std::to_string(index);
    if (prompt.empty()) throw std::invalid_argument("kvdecode: " + name + " is empty");
    if (prompt.size() > c.seq_len)
        throw std::invalid_argument("kvdecode: " + name + " has " + std::to_string(prompt.size()) +
                                    " tokens, more than the context length " + std::to_string(c.seq_len));
    for (token_id t : prompt) check_token(t, c.vocab_size, name + " holds token id");
}

inline void validate_prompts(std::span<const std::vector<token_id>> prompts, const model_config& c) {
    for (std::size_t i = 0; i < prompts.size(); ++i) validate_prompt(prompts[i], i, c);
}

// For decoders that must generate at least one token (beam and tree search): each
// prompt also leaves room in the context. `decoder` prefixes that message.
inline void validate_prompt_with_room(std::span<const token_id> prompt, std::size_t index, const model_config& c,
                                      const char* decoder) {
    validate_prompt(prompt, index, c);
    if (prompt.size() >= c.seq_len)
        throw std::invalid_argument(std::string("kvdecode: ") + decoder + ": prompt " + std::to_string(index) +
                                    " leaves no room in the context length " + std::to_string(c.seq_len));
}

inline void validate_prompts_with_room(std::span<const std::vector<token_id>> prompts, const model_config& c,
                                       const char* decoder) {
    for (std::size_t i = 0; i < prompts.size(); ++i) validate_prompt_with_room(prompts[i], i, c, decoder);
}

}  // namespace kvdecode::detail
