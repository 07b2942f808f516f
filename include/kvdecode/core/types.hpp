#pragma once
// The handles every layer passes around: token ids (what a vocabulary assigns) and
// sequence ids (what a cache hands out). Here so that no lower layer includes a higher one.

#include <cstdint>

namespace kvdecode {

using token_id = std::int32_t;  // index into the model's vocabulary: [0, vocab_size)
using seq_id = std::uint32_t;   // a sequence handle of a cache (kv_cache, token_history)

}  // namespace kvdecode
