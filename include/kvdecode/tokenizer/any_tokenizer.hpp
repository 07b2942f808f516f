#pragma once
// One tokenizer value for whichever vocabulary a model came with: a
// SentencePiece-style one (llama2.c files, GGUF `llama` vocabularies) or a Hugging
// Face tokenizer.json pipeline (model folders). Programs that load any model hold
// this; code written for one kind can keep using that kind directly. The interface is
// what both already have: encode with or without special tokens, decode, and
// decode_token for streaming (tokenizer/text_stream.hpp).

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "kvdecode/tokenizer/hf_tokenizer.hpp"
#include "kvdecode/tokenizer/options.hpp"
#include "kvdecode/tokenizer/sentencepiece.hpp"

namespace kvdecode {

class any_tokenizer {
public:
    any_tokenizer(sentencepiece_tokenizer t) : impl_(std::move(t)) {}  // NOLINT: implicit on purpose
    any_tokenizer(hf_tokenizer t) : impl_(std::move(t)) {}             // NOLINT: implicit on purpose

    std::size_t vocab_size() const {
        return std::visit([](const auto& t) { return t.vocab_size(); }, impl_);
    }
    std::string_view piece(token_id id) const {
        return std::visit([&](const auto& t) { return t.piece(id); }, impl_);
    }
    std::vector<token_id> encode(std::string_view text, const encode_options& o = {}) const {
        return std::visit([&](const auto& t) { return t.encode(text, o); }, impl_);
    }
    std::string decode(std::span<const token_id> ids, const decode_options& o = {}) const {
        return std::visit([&](const auto& t) { return t.decode(ids, o); }, impl_);
    }
    std::string decode_token(token_id previous, token_id id, const decode_options& o = {}) const {
        return std::visit([&](const auto& t) { return t.decode_token(previous, id, o); }, impl_);
    }
    std::optional<token_id> find_bos() const {
        return std::visit([](const auto& t) { return t.find_bos(); }, impl_);
    }
    std::optional<token_id> find_eos() const {
        return std::visit([](const auto& t) { return t.find_eos(); }, impl_);
    }
    const std::vector<token_id>& end_of_generation() const {
        return std::visit([](const auto& t) -> const std::vector<token_id>& { return t.end_of_generation(); }, impl_);
    }
    // The Jinja chat template a tokenizer.json folder's tokenizer_config.json carries.
    std::optional<std::string> chat_template() const {
        if (const auto* h = std::get_if<hf_tokenizer>(&impl_)) return h->chat_template();
        return std::nullopt;
    }

    const sentencepiece_tokenizer* sentencepiece() const noexcept { return std::get_if<sentencepiece_tokenizer>(&impl_); }
    const hf_tokenizer* hf() const noexcept { return std::get_if<hf_tokenizer>(&impl_); }

private:
    std::variant<sentencepiece_tokenizer, hf_tokenizer> impl_;
};

}  // namespace kvdecode
