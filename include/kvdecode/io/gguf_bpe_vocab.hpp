#pragma once
// The byte-level BPE vocabulary of a GGUF file (tokenizer.ggml.model "gpt2"), as
// llama.cpp loads and uses it (llama_vocab::load and llm_tokenizer_bpe at the
// fixtures' commit c5d91a7), built as an hf_tokenizer (tokenizer/hf_tokenizer.hpp):
//   tokens        the pieces (required), byte-level spelled; an empty one reads
//                 "[EMPTY_<id>]"; the model's vocabulary, ids 0..n-1
//   merges        "a b" strings by rank (required), split at the first space after the
//                 first byte, as llama.cpp does
//   token_type    int32 per token (absent: all normal): control (3) and unknown (2)
//                 tokens are cut out of the input only with encode_options::parse_special
//                 and hidden by decode() unless decode_options::special; user-defined
//                 (4) tokens are always cut out and always decoded (llama.cpp's
//                 tokenizer_st_partition and token_to_piece); the others are pieces
//   pre           the pre-tokenizer: llama.cpp's regexes for that name, each an
//                 isolated Split in turn, then every byte as its byte_level_alphabet
//                 character (bpe_pre_types below; absent: "default", as llama.cpp
//                 after its warning); an unknown name is a model_format_error
//   bos_token_id, eos_token_id, unknown_token_id, padding_token_id, eot_token_id,
//   eom_token_id  (absent: BOS and EOS 11 where the vocabulary has it, as llama.cpp)
//   add_bos_token (absent: the pre-type's default, true for llama3 and tekken),
//   add_eos_token (false)
//   chat_template (tokenizer.chat_template) becomes the tokenizer's chat_template()
// End of generation: EOS, EOT, EOM and the texts llama.cpp makes control tokens that
// end generation ("<|im_end|>", "<|endoftext|>", ...; io/gguf_vocab.hpp).
// No normalizer (llama.cpp applies none: transformers' NFC, where tokenizer.json
// has it, is not in the file). Decoding is byte-level; llama.cpp's detokenizer
// clean-up of spaces (clean_spaces) is not applied, as hf_tokenizer does not apply
// transformers' clean_up_tokenization_spaces.
// Where llama.cpp's behaviour and this one differ (text no trained vocabulary meets):
//  - special token texts are matched leftmost-longest (llama.cpp: every occurrence
//    of the longest text first, then the next), which differs only for special token
//    texts that overlap one another;
//  - input that is not valid UTF-8 is converted with utf8_lossy (one U+FFFD per
//    maximal invalid subpart; llama.cpp: one per invalid byte);
//  - unused (5), byte (6) and undefined (0) tokens decode as byte-level pieces
//    (llama.cpp: to nothing);
//  - llama.cpp also makes fill-in-the-middle tokens found by their text
//    ("<|fim_prefix|>", "<|file_sep|>", ...) control tokens, and some of them end
//    generation; here only the end-of-turn texts above are (converters mark FIM tokens
//    special, hence control, anyway);
//  - regexes run in PCRE2 with Unicode properties (llama.cpp: its own code for the
//    GPT-2 and Llama 3 regexes, std::regex over category-collapsed text for the
//    others), so a character whose category differs between their Unicode tables
//    may be split differently.
// Broken metadata (arrays of the wrong length, ids outside the vocabulary, duplicate
// tokens, a merge whose parts are no pieces) is a model_format_error naming the key.
// Needs -lpcre2-8 -lutf8proc.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kvdecode/core/error.hpp"
#include "kvdecode/io/gguf.hpp"
#include "kvdecode/io/gguf_vocab.hpp"
#include "kvdecode/tokenizer/hf_tokenizer.hpp"

namespace kvdecode {

// One of llama.cpp's BPE pre-tokenizer types: the tokenizer.ggml.pre names that
// select it, its regexes (applied in turn, as isolated splits) and its defaults.
struct bpe_pre_type {
    std::string_view names;                  // space-separated tokenizer.ggml.pre values
    std::array<std::string_view, 4> regexes;  // llama.cpp's, in order (empty: none)
    bool ignore_merges = false;              // a word that is a piece is taken whole
    bool add_bos = false;                    // default of tokenizer.ggml.add_bos_token
    std::string_view hf_regex = {};          // the tokenizer.json Split regex it stands for, where one
};

namespace detail {

inline constexpr std::string_view gpt2_regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
inline constexpr std::string_view llama3_regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view qwen2_regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view bloom_regex = " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+";
inline constexpr std::string_view tekken_regex =
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view gpt4o_regex =
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The Split regexes of the tokenizer.json files these types were made from (llama.cpp
// spells (?i:...) out as character classes).
inline constexpr std::string_view hf_qwen2_regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view hf_llama3_regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

}  // namespace detail

// The pre-tokenizer types kvdecode reads: llama.cpp's that are regexes alone (its
// table in llm_tokenizer_bpe). "default" comes first.
inline constexpr bpe_pre_type bpe_pre_types[] = {
    {"default", {R"([\p{P}\$\+<=>\^~\|]+)", detail::gpt2_regex, R"(\p{N}+)", "[0-9][0-9][0-9]"}},
    {"llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2", {detail::llama3_regex}, true, true,
     detail::hf_llama3_regex},
    {"dbrx smaug-bpe", {detail::llama3_regex}},
    {"gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum mpt olmo jais trillion granite-docling",
     {detail::gpt2_regex}},
    {"qwen2 deepseek-r1-qwen stablelm2 hunyuan megrez", {detail::qwen2_regex}, false, false, detail::hf_qwen2_regex},
    {"smollm starcoder refact command-r codeshell exaone minerva-7b", {R"(\p{N})", detail::gpt2_regex}},
    {"falcon", {R"([\p{P}\$\+<=>\^~\|`]+)", detail::gpt2_regex, "[0-9][0-9][0-9]"}},
    {"poro-chat bloom gpt3-finnish", {detail::bloom_regex}},
    {"viking", {detail::bloom_regex, R"(\p{N})"}},
    {"tekken", {detail::tekken_regex}, true, true},
    {"gpt-4o llama4", {detail::gpt4o_regex}},
};

// The type a tokenizer.ggml.pre value selects, or nullptr.
inline const bpe_pre_type* find_bpe_pre_type(std::string_view pre) {
    for (const bpe_pre_type& t : bpe_pre_types) {
        std::string_view names = t.names;
        while (!names.empty()) {
            const std::size_t space = names.find(' ');
            if (names.substr(0, space) == pre) return &t;
            names = space == std::string_view::npos ? std::string_view() : names.substr(space + 1);
        }
    }
    return nullptr;
}

// Every name find_bpe_pre_type knows, comma-separated (for messages).
inline std::string bpe_pre_type_names() {
    std::string out;
    for (const bpe_pre_type& t : bpe_pre_types) {
        for (char c : t.names) out += c == ' ' ? std::string(", ") : std::string(1, c);
        out += ", ";
    }
    if (!out.empty()) out.resize(out.size() - 2);
    return out;
}

// A GGUF `gpt2` vocabulary as an hf_tokenizer. Throws model_format_error naming the
// file and key for a vocabulary that is missing, of another kind, or inconsistent.
inline hf_tokenizer gpt2_vocab_from_gguf(const gguf_file& file) {
    using detail::gguf_key_field;
    const std::string& name = file.name();
    constexpr std::string_view model_key = "tokenizer.ggml.model";
    const std::optional<std::string> model = file.find_string(model_key);
    if (!model) throw model_format_error(name, gguf_key_field(model_key), "a tokenizer model (\"gpt2\")", "no such key");
    if (*model != "gpt2")
        throw model_format_error(name, gguf_key_field(model_key), "\"gpt2\" (a byte-level BPE vocabulary)",
                                 "\"" + *model + "\"" + (*model == "llama" ? " (read by llama_vocab_from_gguf)" : ""));

    constexpr std::string_view pre_key = "tokenizer.ggml.pre";
    const std::string pre = file.find_string(pre_key).value_or("default");
    const bpe_pre_type* rules = find_bpe_pre_type(pre.empty() ? "default" : pre);
    if (!rules)
        throw model_format_error(name, gguf_key_field(pre_key), "a supported pre-tokenizer (" + bpe_pre_type_names() + ")",
                                 "\"" + pre + "\"");

    constexpr std::string_view tokens_key = "tokenizer.ggml.tokens";
    if (!file.has(tokens_key)) throw model_format_error(name, gguf_key_field(tokens_key), "an array of token strings", "no such key");
    hf_tokenizer_data data;
    std::vector<std::string>& pieces = data.model.pieces;
    pieces = file.strings(tokens_key);
    const std::size_t n = pieces.size();
    if (n == 0 || n > static_cast<std::size_t>(INT32_MAX))
        throw model_format_error(name, gguf_key_field(tokens_key), "1 to 2^31 - 1 tokens", std::to_string(n));

    constexpr std::string_view types_key = "tokenizer.ggml.token_type";
    std::vector<token_type> types(n, token_type::normal);
    if (file.has(types_key)) {
        const std::vector<std::int32_t> t = file.ints(types_key);
        if (t.size() != n)
            throw model_format_error(name, gguf_key_field(types_key), std::to_string(n) + " entries (one per token)",
                                     std::to_string(t.size()));
        for (std::size_t i = 0; i < n; ++i) {
            if (t[i] < 0 || t[i] > static_cast<std::int32_t>(token_type::byte))
                throw model_format_error(name, gguf_key_field(types_key), "token types 0 to 6",
                                         std::to_string(t[i]) + " at token " + std::to_string(i));
            types[i] = static_cast<token_type>(t[i]);
        }
    }

    std::unordered_map<std::string_view, std::size_t> first;
    first.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        if (pieces[i].empty()) pieces[i] = "[EMPTY_" + std::to_string(i) + "]";
        if (!utf8::is_valid(pieces[i]))
            throw model_format_error(name, gguf_key_field(tokens_key), "UTF-8 tokens", "token " + std::to_string(i) + " is not");
    }
    for (std::size_t i = 0; i < n; ++i)
        if (const auto [it, fresh] = first.emplace(pieces[i], i); !fresh)
            throw model_format_error(name, gguf_key_field(tokens_key), "distinct tokens",
                                     "\"" + pieces[i] + "\" at ids " + std::to_string(it->second) + " and " + std::to_string(i));

    constexpr std::string_view merges_key = "tokenizer.ggml.merges";
    if (!file.has(merges_key)) throw model_format_error(name, gguf_key_field(merges_key), "an array of merges \"a b\"", "no such key");
    {
        const std::vector<std::string> merges = file.strings(merges_key);
        data.model.merges.reserve(merges.size());
        for (std::size_t r = 0; r < merges.size(); ++r) {
            const std::string& m = merges[r];
            const std::size_t space = m.empty() ? std::string::npos : m.find(' ', 1);
            if (space == std::string::npos)
                throw model_format_error(name, gguf_key_field(merges_key), "merges \"a b\"",
                                         "\"" + m + "\" at rank " + std::to_string(r));
            data.model.merges.emplace_back(m.substr(0, space), m.substr(space + 1));
        }
    }
    data.model.ignore_merges = rules->ignore_merges;

    // Special ids: llama.cpp's BPE defaults are BOS = EOS = 11 (where there is a token 11).
    std::optional<token_id> bos = file.has("tokenizer.ggml.bos_token_id")
                                      ? detail::gguf_token_id(file, "tokenizer.ggml.bos_token_id", n)
                                      : detail::default_id(11, n);
    std::optional<token_id> eos = file.has("tokenizer.ggml.eos_token_id")
                                      ? detail::gguf_token_id(file, "tokenizer.ggml.eos_token_id", n)
                                      : detail::default_id(11, n);
    const std::optional<token_id> unk = detail::gguf_token_id(file, "tokenizer.ggml.unknown_token_id", n);
    const std::optional<token_id> pad = detail::gguf_token_id(file, "tokenizer.ggml.padding_token_id", n);

    // llama.cpp's end-of-generation tokens; those found by their text become control tokens.
    const auto id_of = [&](std::string_view text) {
        const auto it = first.find(text);
        return it == first.end() ? std::nullopt : std::optional<token_id>(static_cast<token_id>(it->second));
    };
    for (std::string_view text : detail::gguf_end_of_generation_texts)
        if (const auto id = id_of(text)) {
            token_type& t = types[static_cast<std::size_t>(*id)];
            if (t != token_type::control && t != token_type::unknown) t = token_type::control;  // llama.cpp adds the attribute
        }
    data.end_of_generation = detail::gguf_end_of_generation(file, n, eos, id_of);

    for (std::size_t i = 0; i < n; ++i) {
        const token_type t = types[i];
        if (t != token_type::control && t != token_type::unknown && t != token_type::user_defined) continue;
        const bool hidden = t != token_type::user_defined;
        data.added_tokens.push_back(
            added_token{.content = pieces[i], .id = static_cast<token_id>(i), .special = hidden, .parse_special_only = hidden});
    }

    for (std::string_view re : rules->regexes) {
        if (re.empty()) continue;
        pre_tokenizer_step split;  // isolated, as llama.cpp keeps matches and the text between
        split.pattern = std::string(re);
        data.pre_tokenizer.push_back(std::move(split));
    }
    pre_tokenizer_step bytes;
    bytes.type = pre_tokenizer_step::kind::byte_level;
    bytes.use_regex = false;
    data.pre_tokenizer.push_back(std::move(bytes));
    data.decoder.emplace(1);  // byte-level

    const bool add_bos = file.find_bool("tokenizer.ggml.add_bos_token").value_or(rules->add_bos);
    const bool add_eos = file.find_bool("tokenizer.ggml.add_eos_token").value_or(false);
    if (add_bos && !bos)
        throw model_format_error(name, gguf_key_field("tokenizer.ggml.bos_token_id"), "a BOS token (BOS is added)",
                                 "none in a vocabulary of " + std::to_string(n));
    if (add_eos && !eos)
        throw model_format_error(name, gguf_key_field("tokenizer.ggml.eos_token_id"), "an EOS token (EOS is added)",
                                 "none in a vocabulary of " + std::to_string(n));
    if (add_bos) data.post.prefix.push_back(*bos);
    if (add_eos) data.post.suffix.push_back(*eos);

    const auto text_of = [&](const std::optional<token_id>& id) -> std::optional<std::string> {
        return id ? std::optional<std::string>(pieces[static_cast<std::size_t>(*id)]) : std::nullopt;
    };
    data.config.bos_token = text_of(bos);
    data.config.eos_token = text_of(eos);
    data.config.unk_token = text_of(unk);
    data.config.pad_token = text_of(pad);
    data.config.add_bos_token = add_bos;
    data.config.add_eos_token = add_eos;
    data.config.chat_template = file.find_string("tokenizer.chat_template");

    try {
        return hf_tokenizer(std::move(data));
    } catch (const std::invalid_argument& e) {  // a merge of no pieces, mostly
        throw model_format_error(name, gguf_key_field(merges_key) + " / " + gguf_key_field(tokens_key),
                                 "a consistent BPE vocabulary", e.what());
    }
}

}  // namespace kvdecode
