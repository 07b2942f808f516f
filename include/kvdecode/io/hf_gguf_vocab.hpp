#pragma once
// The vocabulary of a Hugging Face tokenizer written into GGUF metadata (what
// kvdecode-quantize adds to gguf_from_hf's tensors), so that both kvdecode and
// llama.cpp can tokenize with the file:
//   tokenizer.huggingface.json  tokenizer.json verbatim: kvdecode reads it in
//                               preference to the arrays (io/gguf_tokenizer.hpp), so
//                               its tokenization is exactly transformers';
//   tokenizer.chat_template     the tokenizer's chat template, where it has one;
//   the ggml arrays, for llama.cpp (and kvdecode when the JSON key is removed):
//   - byte-level BPE (a ByteLevel pre-tokenizer or decoder): model "gpt2", tokens,
//     token_type and merges as llama.cpp's convert_hf_to_gguf.py writes them (added
//     tokens that are special or look special, "<|...|>", control 3; other added
//     tokens user-defined 4 with U+2581 as spaces; ids no token has "[PAD<id>]",
//     unused 5), and tokenizer.ggml.pre: the llama.cpp pre-tokenizer whose
//     tokenizer.json regex is the file's (io/gguf_bpe_vocab.hpp's bpe_pre_types), or
//     for GPT-2's own ByteLevel split "gpt-2"; no match: "gpt-2", said in a note;
//   - SentencePiece-style BPE (byte fallback or U+2581 spaces): model "llama", tokens,
//     token_type (byte "<0xXX>" 6, special added tokens control 3, the unknown token
//     2, other added tokens user-defined 4, the rest normal 1) and scores. llama.cpp
//     merges SentencePiece vocabularies by score, not by merge rank: the adjacent pair
//     whose concatenation is the token of the highest score first, the leftmost on
//     ties. Each token made by a merge scores minus the rank of the first merge that
//     makes it, so that merging follows the merge order wherever the merges do not
//     disagree with "any pair that forms a token" (the others score -1e9, below all).
//     llama.cpp's own converter writes -1000 for every token, which merges left to
//     right instead (tests/io/hf_gguf_vocab_test.cpp measures both on the goldens);
//   - special ids (BOS, EOS, unknown, padding, as the tokenizer knows them), and
//     add_bos_token / add_eos_token as the post-processor adds them (written either way,
//     so llama.cpp's per-pre-tokenizer defaults do not apply).
// Where the arrays cannot say what tokenizer.json says (a normalizer such as NFC,
// a pre-tokenizer llama.cpp has no entry for, add_prefix_space), the returned notes
// say so: kvdecode still tokenizes exactly through tokenizer.huggingface.json.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kvdecode/io/gguf_bpe_vocab.hpp"
#include "kvdecode/io/gguf_tokenizer.hpp"
#include "kvdecode/io/gguf_writer.hpp"
#include "kvdecode/tokenizer/hf_tokenizer.hpp"
#include "kvdecode/tokenizer/sentencepiece.hpp"

namespace kvdecode {

struct hf_gguf_vocab_options {
    std::size_t vocab_size = 0;  // the model's (config.json); more than the tokenizer's pads with "[PAD<id>]"
    std::optional<token_id> bos, eos, pad;  // config.json's ids, where the tokenizer names none (as llama.cpp's converter)
};

// What set_hf_gguf_vocab wrote.
struct hf_gguf_vocab_written {
    std::string model;               // tokenizer.ggml.model: "gpt2", "llama", or empty (no arrays)
    std::string pre;                 // tokenizer.ggml.pre
    std::vector<std::string> notes;  // where llama.cpp, reading the arrays, will tokenize differently
};

namespace detail {

// convert_hf_to_gguf.py's does_token_look_special.
inline bool looks_special(std::string_view t) {
    const auto wrapped = [&](std::string_view open, std::string_view close) {
        return t.size() >= open.size() + close.size() && t.starts_with(open) && t.ends_with(close);
    };
    return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || wrapped("<|", "|>") ||
           wrapped("<\xEF\xBD\x9C", "\xEF\xBD\x9C>") || wrapped("<unused", ">");
}

inline bool is_byte_piece(std::string_view p) {
    const auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); };
    return p.size() == 6 && p.starts_with("<0x") && p[5] == '>' && hex(p[3]) && hex(p[4]);
}

inline std::string spaces_for_marks(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
        if (s.substr(i, 3) == "\xE2\x96\x81") out += ' ', i += 3;
        else out += s[i++];
    }
    return out;
}

}  // namespace detail

// SentencePiece scores that make llama.cpp's score-greedy merging follow `model`'s
// merge order as far as it can (see the top of this file): per id.
inline std::vector<float> merge_order_scores(const bpe_model_data& model, std::size_t vocab_size) {
    constexpr float none = -1e9f;
    std::vector<float> scores(vocab_size, none);
    std::unordered_map<std::string, std::size_t> ids;
    for (std::size_t i = 0; i < model.pieces.size(); ++i) ids.emplace(model.pieces[i], i);
    for (std::size_t rank = model.merges.size(); rank-- > 0;) {  // the first merge wins
        const auto it = ids.find(model.merges[rank].first + model.merges[rank].second);
        if (it != ids.end() && it->second < vocab_size) scores[it->second] = -static_cast<float>(rank);
    }
    return scores;
}

// Writes `tok`'s vocabulary (`tokenizer_json`: the tokenizer.json text it was read
// from) into `w` (see the top of this file). Throws std::invalid_argument where
// options.vocab_size is below the tokenizer's.
inline hf_gguf_vocab_written set_hf_gguf_vocab(gguf_writer& w, const hf_tokenizer& tok, std::string_view tokenizer_json,
                                               const hf_gguf_vocab_options& o = {}) {
    hf_gguf_vocab_written out;
    const std::size_t n_tok = tok.vocab_size();
    if (o.vocab_size != 0 && o.vocab_size < n_tok)
        throw std::invalid_argument("kvdecode: GGUF vocabulary: the model's vocabulary (" + std::to_string(o.vocab_size) +
                                    ") is smaller than the tokenizer's (" + std::to_string(n_tok) + ")");
    const std::size_t n = std::max(n_tok, o.vocab_size);
    const bpe_model_data& model = tok.model().data();

    const auto& pre_steps = tok.pre_tokenizer_steps();
    const bool byte_level =
        std::any_of(pre_steps.begin(), pre_steps.end(),
                    [](const pre_tokenizer_step& s) { return s.type == pre_tokenizer_step::kind::byte_level; }) ||
        std::any_of(tok.decoder().steps().begin(), tok.decoder().steps().end(),
                    [](const decoder_step& s) { return s.type == decoder_step::kind::byte_level; });
    const bool sentencepiece_style =
        !byte_level && (model.byte_fallback || std::any_of(model.pieces.begin(), model.pieces.end(), [](const std::string& p) {
                            return p.find("\xE2\x96\x81") != std::string::npos;
                        }));

    // Per id: the added token there, if any.
    std::vector<const added_token*> added(n, nullptr);
    for (const added_token& t : tok.added_tokens()) added[static_cast<std::size_t>(t.id)] = &t;
    const auto id_of = [&](const std::optional<std::string>& text) { return text ? tok.token_of(*text) : std::nullopt; };
    std::optional<token_id> bos = tok.find_bos(), eos = tok.find_eos();
    if (!bos && !tok.post().prefix.empty()) bos = tok.post().prefix.front();
    if (!eos && !tok.post().suffix.empty()) eos = tok.post().suffix.back();
    const std::optional<token_id> unk = model.unk_token ? tok.token_of(*model.unk_token) : id_of(tok.config().unk_token);
    std::optional<token_id> pad = id_of(tok.config().pad_token);
    const auto in_range = [&](const std::optional<token_id>& id) {
        return id && *id >= 0 && static_cast<std::size_t>(*id) < n ? id : std::nullopt;
    };
    if (!bos) bos = in_range(o.bos);
    if (!eos) eos = in_range(o.eos);
    if (!pad) pad = in_range(o.pad);

    std::vector<std::string> tokens(n);
    std::vector<std::int32_t> types(n, static_cast<std::int32_t>(token_type::normal));
    for (std::size_t i = 0; i < n; ++i) {
        if (i >= n_tok) {
            tokens[i] = "[PAD" + std::to_string(i) + "]";
            types[i] = static_cast<std::int32_t>(token_type::unused);
            continue;
        }
        const auto id = static_cast<token_id>(i);
        tokens[i] = std::string(tok.piece(id));
        token_type type = token_type::normal;
        if (const added_token* a = added[i]) {
            if (a->special || detail::looks_special(a->content)) type = token_type::control;
            else type = token_type::user_defined, tokens[i] = detail::spaces_for_marks(a->content);
        }
        if (sentencepiece_style) {
            if (unk == id) type = token_type::unknown;
            else if (type == token_type::normal && detail::is_byte_piece(tokens[i])) type = token_type::byte;
        }
        types[i] = static_cast<std::int32_t>(type);
    }

    if (byte_level) {
        out.model = "gpt2";
        // The pre-tokenizer: [Split(regex, isolated), ByteLevel(no regex)] or [ByteLevel(GPT-2 regex)].
        const pre_tokenizer_step* split = nullptr;
        const pre_tokenizer_step* bytes = nullptr;
        for (const pre_tokenizer_step& s : pre_steps) {
            if (s.type == pre_tokenizer_step::kind::split && !split) split = &s;
            else if (s.type == pre_tokenizer_step::kind::byte_level && !bytes) bytes = &s;
        }
        if (pre_steps.size() == 2 && split && bytes && split->regex && split->behavior == split_behavior::isolated &&
            !split->invert && !bytes->use_regex) {
            for (const bpe_pre_type& t : bpe_pre_types)
                if (!t.hf_regex.empty() && t.hf_regex == split->pattern) out.pre = std::string(t.names.substr(0, t.names.find(' ')));
        } else if (pre_steps.size() == 1 && bytes && bytes->use_regex) {
            out.pre = "gpt-2";
        }
        if (out.pre.empty()) {
            out.pre = "gpt-2";
            out.notes.push_back("the pre-tokenizer is none llama.cpp knows: tokenizer.ggml.pre is \"gpt-2\" (GPT-2's regex), "
                                "so llama.cpp may split words differently");
        }
        if (bytes && bytes->add_prefix_space)
            out.notes.push_back("ByteLevel's add_prefix_space has no GGUF key: llama.cpp adds no space");
        std::vector<std::string> merges;
        merges.reserve(model.merges.size());
        for (const auto& [a, b] : model.merges) merges.push_back(a + " " + b);
        w.set("tokenizer.ggml.model", "gpt2");
        w.set("tokenizer.ggml.pre", gguf_value(out.pre));
        w.set("tokenizer.ggml.tokens", std::move(tokens));
        w.set("tokenizer.ggml.token_type", types);
        w.set("tokenizer.ggml.merges", std::move(merges));
    } else if (sentencepiece_style) {
        out.model = "llama";
        out.pre = "default";
        std::vector<float> scores = merge_order_scores(model, n);
        w.set("tokenizer.ggml.model", "llama");
        w.set("tokenizer.ggml.pre", "default");
        w.set("tokenizer.ggml.tokens", std::move(tokens));
        w.set("tokenizer.ggml.scores", scores);
        w.set("tokenizer.ggml.token_type", types);
        // A space in front of the text: tokenizer.json's Prepend("▁") normalizer or a Metaspace that prepends.
        const bool space_prefix =
            std::any_of(tok.normalizer_steps().begin(), tok.normalizer_steps().end(),
                        [](const normalizer_step& s) { return s.type == normalizer_step::kind::prepend; }) ||
            std::any_of(pre_steps.begin(), pre_steps.end(), [](const pre_tokenizer_step& s) {
                return s.type == pre_tokenizer_step::kind::metaspace && s.prepend != prepend_scheme::never;
            });
        w.set("tokenizer.ggml.add_space_prefix", gguf_value(space_prefix));
        out.notes.push_back("llama.cpp merges SentencePiece vocabularies by score: scores follow the merge order, "
                            "which it reproduces where no pair of pieces forms a token the merges would not make");
    } else {
        out.notes.push_back("neither byte-level nor SentencePiece-style BPE: no ggml arrays (llama.cpp cannot read the "
                            "vocabulary; kvdecode reads tokenizer.huggingface.json)");
    }
    if (!out.model.empty()) {
        if (byte_level && !tok.normalizer_steps().empty())
            out.notes.push_back("the normalizer (e.g. NFC) has no GGUF key: llama.cpp does not normalize");
        const auto set_id = [&](const char* key, const std::optional<token_id>& id) {
            if (id) w.set(key, gguf_value(static_cast<std::uint32_t>(*id)));
        };
        set_id("tokenizer.ggml.bos_token_id", bos);
        set_id("tokenizer.ggml.eos_token_id", eos);
        set_id("tokenizer.ggml.unknown_token_id", unk);
        set_id("tokenizer.ggml.padding_token_id", pad);
        const post_processor& post = tok.post();
        const bool add_bos = !post.prefix.empty(), add_eos = !post.suffix.empty();
        if (post.prefix.size() > 1 || post.suffix.size() > 1 || (add_bos && post.prefix.front() != bos) ||
            (add_eos && post.suffix.back() != eos))
            out.notes.push_back("the post-processor adds tokens GGUF's add_bos_token / add_eos_token cannot say");
        w.set("tokenizer.ggml.add_bos_token", gguf_value(add_bos));
        w.set("tokenizer.ggml.add_eos_token", gguf_value(add_eos));
    }
    if (tok.chat_template()) w.set("tokenizer.chat_template", gguf_value(*tok.chat_template()));
    w.set(std::string(gguf_hf_json_key), gguf_value(std::string(tokenizer_json)));
    return out;
}

}  // namespace kvdecode
