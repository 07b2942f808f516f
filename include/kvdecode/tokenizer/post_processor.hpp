#pragma once
// The post-processor stage of a Hugging Face tokenizer, for a single sequence: the
// special tokens encode() puts around the text's ids when asked to add them
// (tokenizer.json "post_processor": TemplateProcessing's "single" template, e.g.
// [<s>, $A] for Llama; ByteLevel and null add nothing).

#include <vector>

#include "kvdecode/core/types.hpp"

namespace kvdecode {

struct post_processor {
    std::vector<token_id> prefix;  // before the text's ids
    std::vector<token_id> suffix;  // after them

    void apply(std::vector<token_id>& ids) const {
        ids.insert(ids.begin(), prefix.begin(), prefix.end());
        ids.insert(ids.end(), suffix.begin(), suffix.end());
    }
};

}  // namespace kvdecode
