#pragma once
// A Hugging Face tokenizer (tokenizer.json): a pipeline of named stages, composed as
// the file says, over a BPE model. Built from plain data (hf_tokenizer_data), so a
// GGUF `gpt2` vocabulary can make the same tokenizer as a tokenizer.json; the reader
// is io/hf_tokenizer.hpp. Needs -lpcre2-8 -lutf8proc.
//
// encode(text), as tokenizers' Tokenizer::encode(text, add_special_tokens):
//  1. text that is not valid UTF-8 is converted lossily first (a Python str cannot
//     hold such bytes; this is what Rust's from_utf8_lossy would make of them);
//  2. added tokens (added_vocabulary.hpp) are cut out of the raw text; each piece
//     between goes through the normalizer (normalizer.hpp), normalized added tokens
//     are cut out of the result, and the pre-tokenizer (pre_tokenizer.hpp) cuts the
//     rest into words, each tokenized by the model (bpe_model.hpp);
//  3. with encode_options::add_special, the post-processor's tokens are put around
//     the ids (post_processor.hpp). Added and special token texts in the input are
//     always their tokens (tokenizers' default), whatever parse_special says, except
//     added tokens marked parse_special_only (a GGUF vocabulary's control tokens, as
//     llama.cpp treats them): those only with encode_options::parse_special.
// decode(ids), as tokenizers' Tokenizer::decode(ids, skip_special_tokens = !special):
// special added tokens are left out unless decode_options::special; the others'
// pieces (an added token's content) go through the decoder (token_decoder.hpp). An id
// outside the vocabulary is an error (tokenizers skips it).
//
// Streaming: decode_token(previous, id) is the bytes `id` adds after `previous`
// (token_decoder::stream_bytes). `id` is the first piece of the sequence when
// `previous` is outside the vocabulary (e.g. -1), or when `previous` is a hidden
// special token that the post-processor puts first (BOS): so decode_token over a
// sequence, concatenated and converted with utf8_lossy (or fed to a utf8_stream),
// equals decode() for every sequence whose hidden special tokens are the
// post-processor's prefix at the start, and whose text decodes to valid UTF-8, with
// the decoders tokenizer.json files use (ByteLevel; Replace, ByteFallback, Fuse,
// Strip of leading characters; Metaspace; none). Not streamable, so left out of the
// stream: a Strip's trailing characters after a Fuse, and a Replace after a Fuse
// whose pattern spans two pieces. Where they differ otherwise: a Strip decoder after a Fuse (SentencePiece-style "strip the
// leading space") takes the space off the first piece after a hidden prefix token
// anywhere in the sequence (decode() only at the start of the whole text), and not
// after other hidden tokens at the start; byte_fallback runs that are invalid UTF-8
// give one U+FFFD per byte in decode() but utf8_lossy's one per maximal subpart in
// the stream (token_decoder.hpp).
//
// Threads: const member functions may be called from any number of threads at once.

#include <algorithm>
#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kvdecode/core/types.hpp"
#include "kvdecode/tokenizer/added_vocabulary.hpp"
#include "kvdecode/tokenizer/bpe_model.hpp"
#include "kvdecode/tokenizer/normalizer.hpp"
#include "kvdecode/tokenizer/options.hpp"
#include "kvdecode/tokenizer/post_processor.hpp"
#include "kvdecode/tokenizer/pre_tokenizer.hpp"
#include "kvdecode/tokenizer/token_decoder.hpp"
#include "kvdecode/tokenizer/utf8.hpp"

namespace kvdecode {

// What tokenizer_config.json adds (all optional; the tokenizer's own data otherwise).
struct hf_tokenizer_config {
    std::optional<std::string> bos_token, eos_token, pad_token, unk_token;  // token texts
    std::optional<bool> add_bos_token, add_eos_token;  // as the file says (not applied: the post-processor decides)
    std::optional<std::string> chat_template;          // a Jinja template: tokenizer/chat_template.hpp renders its family
    std::optional<bool> clean_up_tokenization_spaces;  // transformers' decode() clean-up: not applied here
};

// Every stage as plain data.
struct hf_tokenizer_data {
    bpe_model_data model;
    std::vector<added_token> added_tokens;  // ids beyond the model's, or equal to its pieces' ids
    std::vector<normalizer_step> normalizer;
    std::vector<pre_tokenizer_step> pre_tokenizer;
    post_processor post;
    std::optional<std::vector<decoder_step>> decoder;  // nullopt: no decoder (pieces joined with spaces)
    hf_tokenizer_config config;
    // The tokens that end generation; nullopt: the EOS token (config.eos_token) alone.
    // A GGUF vocabulary sets llama.cpp's list (EOS, EOT, EOM, <|im_end|>, ...).
    std::optional<std::vector<token_id>> end_of_generation;
};

class hf_tokenizer {
public:
    // Throws std::invalid_argument for inconsistent data: a model bpe_model refuses, an
    // added token id that is negative, twice, or leaves a gap in the ids, an added token
    // text twice, a post-processor or end-of-generation id outside the vocabulary, a stage its class refuses
    // (a regex that does not compile: regex_error, a std::invalid_argument).
    explicit hf_tokenizer(hf_tokenizer_data data)
        : model_(std::move(data.model)), normalizer_(std::move(data.normalizer)), added_(data.added_tokens, normalizer_),
          pre_tokenizer_(std::move(data.pre_tokenizer)), post_(std::move(data.post)),
          decoder_(data.decoder ? token_decoder(std::move(*data.decoder)) : token_decoder()),
          config_(std::move(data.config)) {
        index(data.added_tokens);
        if (data.end_of_generation) {
            for (token_id id : *data.end_of_generation) checked(id);
            end_of_generation_ = std::move(*data.end_of_generation);
        }
    }

    std::size_t vocab_size() const noexcept { return pieces_.size(); }

    // The piece of `id`: the model's, or an added token's content.
    std::string_view piece(token_id id) const { return pieces_[checked(id)]; }

    std::optional<token_id> token_of(std::string_view text) const {
        if (const auto it = added_ids_.find(text); it != added_ids_.end()) return it->second;
        return model_.token_of(text);
    }

    bool is_special(token_id id) const { return special_[checked(id)] != 0; }

    std::optional<token_id> find_bos() const noexcept { return bos_; }
    std::optional<token_id> find_eos() const noexcept { return eos_; }
    const std::vector<token_id>& end_of_generation() const noexcept { return end_of_generation_; }
    const hf_tokenizer_config& config() const noexcept { return config_; }
    const std::optional<std::string>& chat_template() const noexcept { return config_.chat_template; }
    const bpe_model& model() const noexcept { return model_; }
    const post_processor& post() const noexcept { return post_; }
    const token_decoder& decoder() const noexcept { return decoder_; }
    const std::vector<normalizer_step>& normalizer_steps() const noexcept { return normalizer_.steps(); }
    const std::vector<pre_tokenizer_step>& pre_tokenizer_steps() const noexcept { return pre_tokenizer_.steps(); }
    const std::vector<added_token>& added_tokens() const noexcept { return added_.tokens(); }

    std::vector<token_id> encode(std::string_view text, const encode_options& o = {}) const {
        std::vector<token_id> ids;
        std::string owned;
        if (!utf8::is_valid(text)) {
            owned = utf8_lossy(text);
            text = owned;
        }
        for (const text_fragment& raw : added_.split(text, false, o.parse_special)) {
            if (raw.token >= 0) {
                ids.push_back(raw.token);
                continue;
            }
            const std::string normalized = normalizer_.apply(std::string(text.substr(raw.begin, raw.size)));
            bool first = raw.begin == 0;
            for (const text_fragment& f : added_.split(normalized, true, o.parse_special)) {
                if (f.token >= 0) {
                    ids.push_back(f.token);
                } else {
                    for (const std::string& word : pre_tokenizer_.apply(normalized.substr(f.begin, f.size), first))
                        model_.tokenize(word, ids);
                }
                first = false;
            }
        }
        if (o.add_special) post_.apply(ids);
        return ids;
    }

    // Throws std::invalid_argument for an id outside the vocabulary.
    std::string decode(std::span<const token_id> ids, const decode_options& o = {}) const {
        std::vector<std::string> pieces;
        pieces.reserve(ids.size());
        for (token_id id : ids) {
            const std::size_t i = checked(id);
            if (special_[i] && !o.special) continue;
            pieces.push_back(pieces_[i]);
        }
        return decoder_.decode(std::move(pieces));
    }

    // The bytes `id` adds after `previous` (see the top of this file); throws
    // std::invalid_argument for an `id` outside the vocabulary.
    std::string decode_token(token_id previous, token_id id, const decode_options& o = {}) const {
        const std::size_t i = checked(id);
        if (special_[i] && !o.special) return {};
        bool first = previous < 0 || static_cast<std::size_t>(previous) >= vocab_size();
        if (!first && !o.special && special_[static_cast<std::size_t>(previous)])
            first = std::find(post_.prefix.begin(), post_.prefix.end(), previous) != post_.prefix.end();
        return first ? first_bytes_[i] : bytes_[i];
    }

private:
    [[noreturn]] static void fail(const std::string& what) { throw std::invalid_argument("kvdecode: hf_tokenizer: " + what); }

    std::size_t checked(token_id id) const {
        if (id < 0 || static_cast<std::size_t>(id) >= pieces_.size())
            throw std::invalid_argument("kvdecode: tokenizer: token id " + std::to_string(id) +
                                        " is outside the vocabulary [0, " + std::to_string(pieces_.size()) + ")");
        return static_cast<std::size_t>(id);
    }

    void index(const std::vector<added_token>& added) {
        const std::size_t n_model = model_.vocab_size();
        std::size_t n = n_model;
        for (const added_token& t : added) {
            if (t.id < 0) fail("added token \"" + t.content + "\" has id " + std::to_string(t.id));
            n = std::max(n, static_cast<std::size_t>(t.id) + 1);
        }
        // Ids 0..n-1 each once: the added tokens can reach no further than one each past the model's.
        if (n > n_model + added.size())
            fail("added token ids reach " + std::to_string(n - 1) + " with " + std::to_string(n_model) + " model pieces and " +
                 std::to_string(added.size()) + " added tokens: some id below it is no token");
        pieces_.resize(n);
        special_.assign(n, 0);
        std::vector<char> filled(n, 0);
        for (std::size_t i = 0; i < n_model; ++i) pieces_[i] = std::string(model_.piece(static_cast<token_id>(i))), filled[i] = 1;
        std::vector<char> added_seen(n, 0);
        for (const added_token& t : added) {
            const auto i = static_cast<std::size_t>(t.id);
            if (added_seen[i]) fail("two added tokens have id " + std::to_string(t.id));
            added_seen[i] = 1;
            if (!utf8::is_valid(t.content)) fail("added token " + std::to_string(t.id) + " is not valid UTF-8");
            if (!added_ids_.emplace(t.content, t.id).second) fail("added token \"" + t.content + "\" appears twice");
            pieces_[i] = t.content;  // an added token's content is its piece (tokenizers looks there first)
            filled[i] = 1;
            special_[i] = t.special;
        }
        for (std::size_t i = 0; i < n; ++i)
            if (!filled[i]) fail("no token has id " + std::to_string(i) + " (ids must be 0.." + std::to_string(n - 1) + ")");
        for (token_id id : post_.prefix) checked(id);
        for (token_id id : post_.suffix) checked(id);

        bytes_.resize(n);
        first_bytes_.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            bytes_[i] = decoder_.stream_bytes(pieces_[i], false);
            first_bytes_[i] = decoder_.stream_bytes(pieces_[i], true);
        }

        const auto id_of = [&](const std::optional<std::string>& text) -> std::optional<token_id> {
            return text ? token_of(*text) : std::nullopt;
        };
        bos_ = id_of(config_.bos_token);
        eos_ = id_of(config_.eos_token);
        if (eos_) end_of_generation_.push_back(*eos_);
    }

    bpe_model model_;
    normalizer normalizer_;
    added_vocabulary added_;  // after normalizer_: it spells normalized tokens with it
    pre_tokenizer pre_tokenizer_;
    post_processor post_;
    token_decoder decoder_;
    hf_tokenizer_config config_;

    std::vector<std::string> pieces_;         // every id's piece
    std::vector<char> special_;               // special added tokens
    // Heterogeneous lookup by string_view.
    struct text_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    std::unordered_map<std::string, token_id, text_hash, std::equal_to<>> added_ids_;
    std::vector<std::string> bytes_;          // decode_token's bytes, after another piece
    std::vector<std::string> first_bytes_;    // ... and as the first piece
    std::optional<token_id> bos_, eos_;
    std::vector<token_id> end_of_generation_;
};

}  // namespace kvdecode
