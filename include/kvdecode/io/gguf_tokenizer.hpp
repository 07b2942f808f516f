#pragma once
// The tokenizer of any GGUF file, whichever applies:
//  1. tokenizer.huggingface.json (GGUF's standard key for the whole tokenizer.json):
//     the hf_tokenizer read from it, exactly transformers' tokenization, in preference
//     to the ggml arrays. Its tokenizer_config.json is not in the file, so the GGUF
//     metadata stands in for it: tokenizer.chat_template is its chat_template(), the
//     texts of tokenizer.ggml.bos_token_id / eos_token_id / unknown_token_id /
//     padding_token_id its special tokens (where the keys are present), and its
//     end of generation is llama.cpp's (EOS, EOT, EOM, and the tokens whose text
//     llama.cpp takes for an end of turn: "<|im_end|>", "<|endoftext|>", ...);
//     what encode() adds is tokenizer.json's post-processor, as in transformers;
//  2. tokenizer.ggml.model "llama": llama_vocab_from_gguf (io/gguf_vocab.hpp);
//  3. tokenizer.ggml.model "gpt2": gpt2_vocab_from_gguf (io/gguf_bpe_vocab.hpp).
// Anything else is a model_format_error naming the key. Needs nlohmann-json,
// -lpcre2-8 and -lutf8proc.

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kvdecode/core/error.hpp"
#include "kvdecode/io/gguf.hpp"
#include "kvdecode/io/gguf_bpe_vocab.hpp"
#include "kvdecode/io/gguf_vocab.hpp"
#include "kvdecode/io/hf_tokenizer.hpp"
#include "kvdecode/tokenizer/any_tokenizer.hpp"

namespace kvdecode {

// GGUF's key for the whole tokenizer.json (gguf-py's Keys.Tokenizer.HF_JSON).
inline constexpr std::string_view gguf_hf_json_key = "tokenizer.huggingface.json";

// The hf_tokenizer of a file's tokenizer.huggingface.json (see the top of this file).
// Throws model_format_error when the key is missing, or for a tokenizer.json the
// reader refuses (named "<file> (tokenizer.huggingface.json)"), or special ids outside it.
inline hf_tokenizer hf_tokenizer_from_gguf(const gguf_file& file) {
    const std::string name = file.name() + " (" + std::string(gguf_hf_json_key) + ")";
    const std::optional<std::string> json = file.find_string(gguf_hf_json_key);
    if (!json) throw model_format_error(file.name(), detail::gguf_key_field(gguf_hf_json_key), "a tokenizer.json", "no such key");
    hf_tokenizer_data data = read_hf_tokenizer_data(*json, name);

    // Every id's text (an added token's content over the model's piece), and back.
    std::vector<std::string> texts = data.model.pieces;
    for (const added_token& t : data.added_tokens) {
        if (t.id < 0) continue;  // hf_tokenizer refuses it below
        if (static_cast<std::size_t>(t.id) >= texts.size()) texts.resize(static_cast<std::size_t>(t.id) + 1);
        texts[static_cast<std::size_t>(t.id)] = t.content;
    }
    const std::size_t n = texts.size();
    std::unordered_map<std::string_view, token_id> ids;
    for (std::size_t i = n; i-- > 0;) ids[texts[i]] = static_cast<token_id>(i);  // the first id on equal texts

    const auto special = [&](std::string_view key, std::optional<std::string>& text) {
        if (!file.has(key)) return std::optional<token_id>();
        const std::optional<token_id> id = detail::gguf_token_id(file, key, n);
        text = id ? std::optional<std::string>(texts[static_cast<std::size_t>(*id)]) : std::nullopt;
        return id;
    };
    const std::optional<token_id> eos = special("tokenizer.ggml.eos_token_id", data.config.eos_token);
    special("tokenizer.ggml.bos_token_id", data.config.bos_token);
    special("tokenizer.ggml.unknown_token_id", data.config.unk_token);
    special("tokenizer.ggml.padding_token_id", data.config.pad_token);
    data.config.chat_template = file.find_string("tokenizer.chat_template");

    data.end_of_generation = detail::gguf_end_of_generation(file, n, eos, [&](std::string_view text) {
        const auto it = ids.find(text);
        return it == ids.end() ? std::nullopt : std::optional<token_id>(it->second);
    });
    return detail::hf_build(std::move(data), name);
}

// The tokenizer of any GGUF file (see the top of this file).
inline any_tokenizer gguf_tokenizer(const gguf_file& file) {
    if (file.has(gguf_hf_json_key)) return hf_tokenizer_from_gguf(file);
    constexpr std::string_view model_key = "tokenizer.ggml.model";
    const std::optional<std::string> model = file.find_string(model_key);
    if (model == "llama") return llama_vocab_from_gguf(file);
    if (model == "gpt2") return gpt2_vocab_from_gguf(file);
    throw model_format_error(file.name(), detail::gguf_key_field(model_key),
                             "a tokenizer kvdecode reads (\"llama\", \"gpt2\", or a " + std::string(gguf_hf_json_key) + " key)",
                             model ? "\"" + *model + "\"" : std::string("no such key"));
}

}  // namespace kvdecode
