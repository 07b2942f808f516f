#pragma once
// The vocabulary of a GGUF file, from its tokenizer.ggml.* metadata, as llama.cpp
// loads it (llama_vocab::load at the fixtures' commit c5d91a7): tokenizer.ggml.model
// "llama" is a SentencePiece-style vocabulary (tokenizer/sentencepiece.hpp, llama.cpp's
// rules, pieces spelling a space U+2581):
//   tokens        the pieces (required); an empty one reads "[EMPTY_<id>]", as in llama.cpp
//   scores        float32 per token (absent: all 0)
//   token_type    int32 per token, 0..6 (absent: all normal)
//   bos_token_id, eos_token_id, unknown_token_id, padding_token_id, eot_token_id, eom_token_id
//                 (absent: BOS 1, EOS 2, unknown 0 where the vocabulary has them, no padding;
//                 -1 or 2^32 - 1: none)
//   add_bos_token (true), add_eos_token (false), add_space_prefix (true)
// Tokens whose text llama.cpp treats as end of generation ("<|eot_id|>", "<|im_end|>",
// "<end_of_turn>", ...) become control tokens and join end_of_generation(), as there.
// Where llama.cpp warns and carries on (an array shorter or longer than the tokens, an
// id outside the vocabulary, a duplicate piece), this throws model_format_error naming
// the key: such a file is broken, and guessing would tokenize differently.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kvdecode/core/error.hpp"
#include "kvdecode/io/gguf.hpp"
#include "kvdecode/tokenizer/sentencepiece.hpp"

namespace kvdecode {

namespace detail {

inline std::string gguf_key_field(std::string_view key) { return "key '" + std::string(key) + "'"; }

// An optional token id key: in [0, tokens), or a model_format_error naming it. -1 and
// 2^32 - 1 (how llama.cpp's converters write "none", e.g. padding_token_id) are absent.
inline std::optional<token_id> gguf_token_id(const gguf_file& file, std::string_view key, std::size_t tokens) {
    const std::optional<std::int64_t> id = file.find_int(key);
    if (!id || *id == -1 || *id == 0xFFFFFFFF) return std::nullopt;
    if (*id < 0 || static_cast<std::uint64_t>(*id) >= tokens)
        throw model_format_error(file.name(), gguf_key_field(key),
                                 "a token id below the vocabulary size " + std::to_string(tokens), std::to_string(*id));
    return static_cast<token_id>(*id);
}

// Token texts llama.cpp makes control tokens that end generation, whatever the file
// says (llama_vocab::load's "<|eot_id|>", "<|im_end|>", ... list).
inline constexpr std::string_view gguf_end_of_generation_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>"};

// llama.cpp's end-of-generation ids, each once: EOS, the ids of the EOT and EOM keys,
// then the tokens `id_of(text)` finds (std::optional<token_id>) for the texts above.
template <class IdOf>
std::vector<token_id> gguf_end_of_generation(const gguf_file& file, std::size_t tokens, std::optional<token_id> eos,
                                             IdOf id_of) {
    std::vector<token_id> out;
    const auto add = [&](std::optional<token_id> id) {
        if (id && std::find(out.begin(), out.end(), *id) == out.end()) out.push_back(*id);
    };
    add(eos);
    for (std::string_view key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
        add(gguf_token_id(file, key, tokens));
    for (std::string_view text : gguf_end_of_generation_texts) add(id_of(text));
    return out;
}

// llama.cpp's default special id, dropped where the vocabulary is too small for it.
inline std::optional<token_id> default_id(token_id id, std::size_t tokens) {
    return static_cast<std::size_t>(id) < tokens ? std::optional<token_id>(id) : std::nullopt;
}

}  // namespace detail

// Throws model_format_error naming the file and key for a vocabulary that is missing,
// of another kind than "llama", or inconsistent.
inline sentencepiece_tokenizer llama_vocab_from_gguf(const gguf_file& file) {
    using detail::gguf_key_field;
    const std::string& name = file.name();
    constexpr std::string_view model_key = "tokenizer.ggml.model";
    const std::optional<std::string> model = file.find_string(model_key);
    if (!model) throw model_format_error(name, gguf_key_field(model_key), "a tokenizer model (\"llama\")", "no such key");
    if (*model == "gpt2")
        throw model_format_error(name, gguf_key_field(model_key), "\"llama\" (a SentencePiece-style vocabulary)",
                                 "\"gpt2\": a byte-level BPE vocabulary, read by gpt2_vocab_from_gguf "
                                 "(io/gguf_bpe_vocab.hpp) or gguf_tokenizer (io/gguf_tokenizer.hpp)");
    if (*model != "llama")
        throw model_format_error(name, gguf_key_field(model_key), "\"llama\" (the only tokenizer model supported)",
                                 "\"" + *model + "\"");

    constexpr std::string_view tokens_key = "tokenizer.ggml.tokens";
    if (!file.has(tokens_key)) throw model_format_error(name, gguf_key_field(tokens_key), "an array of token strings", "no such key");
    sentencepiece_vocab v;
    v.pieces = file.strings(tokens_key);
    const std::size_t n = v.pieces.size();
    if (n == 0 || n > static_cast<std::size_t>(INT32_MAX))
        throw model_format_error(name, gguf_key_field(tokens_key), "1 to 2^31 - 1 tokens", std::to_string(n));
    const auto check_length = [&](std::string_view key, std::size_t size) {
        if (size != n)
            throw model_format_error(name, gguf_key_field(key), std::to_string(n) + " entries (one per token)", std::to_string(size));
    };

    constexpr std::string_view scores_key = "tokenizer.ggml.scores";
    if (file.has(scores_key)) {
        v.scores = file.floats(scores_key);
        check_length(scores_key, v.scores.size());
        for (std::size_t i = 0; i < n; ++i)
            if (v.scores[i] != v.scores[i])
                throw model_format_error(name, gguf_key_field(scores_key), "numbers", "NaN at token " + std::to_string(i));
    } else {
        v.scores.assign(n, 0.0f);
    }

    constexpr std::string_view types_key = "tokenizer.ggml.token_type";
    v.types.assign(n, token_type::normal);
    if (file.has(types_key)) {
        const std::vector<std::int32_t> types = file.ints(types_key);
        check_length(types_key, types.size());
        for (std::size_t i = 0; i < n; ++i) {
            if (types[i] < 0 || types[i] > static_cast<std::int32_t>(token_type::byte))
                throw model_format_error(name, gguf_key_field(types_key), "token types 0 to 6",
                                         std::to_string(types[i]) + " at token " + std::to_string(i));
            v.types[i] = static_cast<token_type>(types[i]);
        }
    }

    std::unordered_map<std::string_view, std::size_t> first;
    first.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        std::string& p = v.pieces[i];
        if (p.empty()) p = "[EMPTY_" + std::to_string(i) + "]";
        if (v.types[i] == token_type::byte) {
            const auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
            if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>' || !hex(p[3]) || !hex(p[4]))
                throw model_format_error(name, gguf_key_field(types_key), "byte tokens spelled <0xXX>",
                                         "token " + std::to_string(i) + " \"" + p + "\" of type byte");
        }
    }
    for (std::size_t i = 0; i < n; ++i)
        if (const auto [it, fresh] = first.emplace(v.pieces[i], i); !fresh)
            throw model_format_error(name, gguf_key_field(tokens_key), "distinct tokens",
                                     "\"" + v.pieces[i] + "\" at ids " + std::to_string(it->second) + " and " + std::to_string(i));

    v.bos = file.has("tokenizer.ggml.bos_token_id") ? detail::gguf_token_id(file, "tokenizer.ggml.bos_token_id", n)
                                                     : detail::default_id(1, n);
    v.eos = file.has("tokenizer.ggml.eos_token_id") ? detail::gguf_token_id(file, "tokenizer.ggml.eos_token_id", n)
                                                     : detail::default_id(2, n);
    v.unk = file.has("tokenizer.ggml.unknown_token_id") ? detail::gguf_token_id(file, "tokenizer.ggml.unknown_token_id", n)
                                                         : detail::default_id(0, n);
    v.pad = detail::gguf_token_id(file, "tokenizer.ggml.padding_token_id", n);

    // llama.cpp's end-of-generation tokens: EOS, EOT, EOM, and these texts (made control).
    const auto id_of = [&](std::string_view text) {
        const auto it = first.find(text);
        return it == first.end() ? std::nullopt : std::optional<token_id>(static_cast<token_id>(it->second));
    };
    for (std::string_view text : detail::gguf_end_of_generation_texts)
        if (const auto id = id_of(text)) {
            token_type& t = v.types[static_cast<std::size_t>(*id)];
            if (t == token_type::normal || t == token_type::undefined) t = token_type::control;
        }
    v.end_of_generation = detail::gguf_end_of_generation(file, n, v.eos, id_of);

    sentencepiece_options options{.add_bos = file.find_bool("tokenizer.ggml.add_bos_token").value_or(true),
                                  .add_eos = file.find_bool("tokenizer.ggml.add_eos_token").value_or(false),
                                  .add_space_prefix = file.find_bool("tokenizer.ggml.add_space_prefix").value_or(true),
                                  .escaped_spaces = true,
                                  .rules = sentencepiece_rules::llama_cpp};
    if (options.add_bos && !v.bos)
        throw model_format_error(name, gguf_key_field("tokenizer.ggml.bos_token_id"),
                                 "a BOS token (tokenizer.ggml.add_bos_token is true)", "none in a vocabulary of " + std::to_string(n));
    if (options.add_eos && !v.eos)
        throw model_format_error(name, gguf_key_field("tokenizer.ggml.eos_token_id"),
                                 "an EOS token (tokenizer.ggml.add_eos_token is true)", "none in a vocabulary of " + std::to_string(n));
    return sentencepiece_tokenizer(std::move(v), options);
}

}  // namespace kvdecode
