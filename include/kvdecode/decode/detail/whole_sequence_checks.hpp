#pragma once
// What beam search and MaxEnt-TS require of the generation options beyond their
// general validity: they generate at least one token, and they do not stream.

#include <stdexcept>
#include <string>

#include "kvdecode/decode/options.hpp"

namespace kvdecode::detail {

// `decoder` prefixes the message ("beam_search", "maxent_ts").
inline void validate_for_whole_sequences(const generation_options& o, const model_config& c, const char* decoder) {
    const std::string prefix = std::string("kvdecode: ") + decoder + ": ";
    if (o.max_new_tokens == 0) throw std::invalid_argument(prefix + "max_new_tokens must be at least 1");
    if (o.on_token)
        throw std::invalid_argument(prefix + "on_token is not supported: sequences are known only when the search ends");
    validate(o, c);
}

}  // namespace kvdecode::detail
