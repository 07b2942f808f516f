#pragma once
// Either tokenizer kvdecode has, behind the API both share: a SentencePiece-style
// vocabulary (tokenizer/sentencepiece.hpp: llama2.c files, GGUF `llama`) or a Hugging
// Face pipeline (tokenizer/hf_tokenizer.hpp: tokenizer.json, GGUF `gpt2`, GGUF
// tokenizer.huggingface.json). A small value type over a std::variant; programs that
// take any model file hold one of these (io/gguf_tokenizer.hpp makes one for any GGUF
// file). Each call forwards to the tokenizer held, with its semantics.
//
// Threads: const member functions may be called from any number of threads at once.

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "kvdecode/core/types.hpp"
#include "kvdecode/tokenizer/hf_tokenizer.hpp"
#include "kvdecode/tokenizer/options.hpp"
#include "kvdecode/tokenizer/sentencepiece.hpp"

namespace kvdecode {

class any_tokenizer {
public:
    any_tokenizer(sentencepiece_tokenizer t) : tok_(std::move(t)) {}  // NOLINT: implicit on purpose
    any_tokenizer(hf_tokenizer t) : tok_(std::move(t)) {}            // NOLINT: implicit on purpose

    std::size_t vocab_size() const noexcept {
        return std::visit([](const auto& t) { return t.vocab_size(); }, tok_);
    }
    std::string_view piece(token_id id) const {
        return std::visit([&](const auto& t) { return t.piece(id); }, tok_);
    }
    std::optional<token_id> token_of(std::string_view text) const {
        return std::visit([&](const auto& t) { return t.token_of(text); }, tok_);
    }
    std::vector<token_id> encode(std::string_view text, const encode_options& o = {}) const {
        return std::visit([&](const auto& t) { return t.encode(text, o); }, tok_);
    }
    std::string decode(std::span<const token_id> ids, const decode_options& o = {}) const {
        return std::visit([&](const auto& t) { return t.decode(ids, o); }, tok_);
    }
    std::string decode_token(token_id previous, token_id id, const decode_options& o = {}) const {
        return std::visit([&](const auto& t) { return t.decode_token(previous, id, o); }, tok_);
    }
    std::optional<token_id> find_bos() const noexcept {
        return std::visit([](const auto& t) { return t.find_bos(); }, tok_);
    }
    std::optional<token_id> find_eos() const noexcept {
        return std::visit([](const auto& t) { return t.find_eos(); }, tok_);
    }
    const std::vector<token_id>& end_of_generation() const noexcept {
        return std::visit([](const auto& t) -> const std::vector<token_id>& { return t.end_of_generation(); }, tok_);
    }
    // The Jinja chat template the tokenizer came with; empty for SentencePiece-style ones.
    std::string chat_template() const {
        if (const auto* h = std::get_if<hf_tokenizer>(&tok_)) return h->chat_template().value_or(std::string());
        return {};
    }

    // The tokenizer held, for what only one kind has (scores, the pipeline's stages).
    const sentencepiece_tokenizer* sentencepiece() const noexcept { return std::get_if<sentencepiece_tokenizer>(&tok_); }
    const hf_tokenizer* hf() const noexcept { return std::get_if<hf_tokenizer>(&tok_); }

private:
    std::variant<sentencepiece_tokenizer, hf_tokenizer> tok_;
};

}  // namespace kvdecode
