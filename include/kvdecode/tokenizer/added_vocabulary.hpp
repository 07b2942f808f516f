#pragma once
// Added tokens of a Hugging Face tokenizer (tokenizer.json "added_tokens"): texts cut
// out of the input whole, before the model sees it, as tokenizers' AddedVocabulary
// does. Tokens with `normalized` false are found in the raw text; the others, in
// their normalized spelling (the content put through the normalizer), in each
// normalized piece between those. Matches are leftmost-longest and do not overlap
// (aho-corasick's MatchKind::LeftmostLongest); then, per token:
//  - single_word: a match with a word character (\w) just before or after it is no
//    match (and the search goes on after it, as tokenizers' does);
//  - lstrip / rstrip: the whitespace (\s) before / after the match is taken into it
//    (and so out of the text), lstrip no further back than the previous match.
// \w and \s are Rust regex's Unicode classes: \s the White_Space property; \w letters,
// marks, decimal digits, letter numbers, connector punctuation and the two joiners
// (through utf8proc's categories; Rust's Alphabetic adds a few hundred symbols that
// are not letters, which this does not). A token may be parse_special_only: then it
// is cut out only when the caller asks for special tokens to be parsed (GGUF control
// tokens, as llama.cpp's tokenizer_st_partition). Needs -lutf8proc.

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <utf8proc.h>

#include "kvdecode/core/types.hpp"
#include "kvdecode/tokenizer/normalizer.hpp"
#include "kvdecode/tokenizer/utf8.hpp"

namespace kvdecode {

struct added_token {
    std::string content;
    token_id id = 0;
    bool special = false;      // hidden by decode() unless decode_options::special
    bool normalized = false;   // matched in normalized text (else in the raw text)
    bool lstrip = false;       // takes the whitespace before it
    bool rstrip = false;       // takes the whitespace after it
    bool single_word = false;  // only between non-word characters
    bool parse_special_only = false;  // cut out only with encode_options::parse_special (llama.cpp's
                                      // control tokens of a GGUF vocabulary; tokenizer.json: always false)
};

// A span of text: either an added token or plain text for the pipeline.
struct text_fragment {
    std::size_t begin = 0, size = 0;  // bytes of the text it was cut from
    token_id token = -1;              // an added token, or -1 for plain text
};

class added_vocabulary {
public:
    added_vocabulary() = default;

    // `n` spells the normalized tokens as they are matched. Tokens must be valid UTF-8.
    added_vocabulary(std::vector<added_token> tokens, const normalizer& n) : tokens_(std::move(tokens)) {
        match_text_.reserve(tokens_.size());
        for (std::size_t i = 0; i < tokens_.size(); ++i) {
            const added_token& t = tokens_[i];
            match_text_.push_back(t.normalized ? n.apply(t.content) : t.content);
            const std::string& m = match_text_.back();
            if (!m.empty()) by_first_byte_[t.normalized][static_cast<unsigned char>(m[0])].push_back(i);
        }
        for (auto& table : by_first_byte_)
            for (auto& list : table)  // longest first; the earlier token on equal texts
                std::stable_sort(list.begin(), list.end(),
                                 [&](std::size_t a, std::size_t b) { return match_text_[a].size() > match_text_[b].size(); });
    }

    const std::vector<added_token>& tokens() const noexcept { return tokens_; }

    // `text` (valid UTF-8) cut at the tokens with this `normalized` flag; tokens that
    // are parse_special_only only when `parse_special`.
    std::vector<text_fragment> split(std::string_view text, bool normalized, bool parse_special = true) const {
        std::vector<text_fragment> out;
        const auto& table = by_first_byte_[normalized];
        std::size_t plain = 0;  // start of the text not yet emitted
        for (std::size_t i = 0; i < text.size();) {
            const std::size_t hit = match_at(table[static_cast<unsigned char>(text[i])], text.substr(i), parse_special);
            if (hit == none) {
                ++i;
                continue;
            }
            const added_token& t = tokens_[hit];
            std::size_t begin = i, end = i + match_text_[hit].size();
            i = end;  // the search goes on after the match, whatever becomes of it
            if (t.single_word && (word_before(text, begin) || word_after(text, end))) continue;
            if (t.lstrip) begin = std::max(plain, space_start_before(text, begin));
            if (t.rstrip) end = space_end_after(text, end);
            begin = std::max(begin, plain);
            if (begin > plain) out.push_back({plain, begin - plain, -1});
            out.push_back({begin, end - begin, t.id});
            plain = end;
            i = std::max(i, end);
        }
        if (plain < text.size()) out.push_back({plain, text.size() - plain, -1});
        return out;
    }

    // Rust regex's Unicode \s (the White_Space property).
    static bool is_space(char32_t c) noexcept {
        return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
               (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
    }

    // Rust regex's Unicode \w, from general categories (see the top of this file).
    static bool is_word(char32_t c) noexcept {
        if (c == 0x200C || c == 0x200D) return true;
        switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
            case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
            case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
            case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC: return true;
            default: return false;
        }
    }

private:
    static constexpr std::size_t none = static_cast<std::size_t>(-1);

    std::size_t match_at(const std::vector<std::size_t>& candidates, std::string_view rest, bool parse_special) const {
        for (std::size_t c : candidates)
            if ((parse_special || !tokens_[c].parse_special_only) && rest.starts_with(match_text_[c])) return c;
        return none;
    }

    // The character that ends at `end` (valid UTF-8 before it).
    static char32_t char_before(std::string_view text, std::size_t end, std::size_t& begin) noexcept {
        begin = end - 1;
        while (begin > 0 && (static_cast<unsigned char>(text[begin]) & 0xC0) == 0x80) --begin;
        return utf8::decode_valid(text.substr(begin), end - begin);
    }

    static bool word_before(std::string_view text, std::size_t at) noexcept {
        std::size_t b = 0;
        return at > 0 && is_word(char_before(text, at, b));
    }

    static bool word_after(std::string_view text, std::size_t at) noexcept {
        if (at >= text.size()) return false;
        const std::size_t n = utf8::length_of_valid(text.substr(at));
        return is_word(utf8::decode_valid(text.substr(at), n));
    }

    static std::size_t space_start_before(std::string_view text, std::size_t at) noexcept {
        while (at > 0) {
            std::size_t b = 0;
            if (!is_space(char_before(text, at, b))) break;
            at = b;
        }
        return at;
    }

    static std::size_t space_end_after(std::string_view text, std::size_t at) noexcept {
        while (at < text.size()) {
            const std::size_t n = utf8::length_of_valid(text.substr(at));
            if (!is_space(utf8::decode_valid(text.substr(at), n))) break;
            at += n;
        }
        return at;
    }

    std::vector<added_token> tokens_;
    std::vector<std::string> match_text_;  // what each token is matched as
    std::array<std::array<std::vector<std::size_t>, 256>, 2> by_first_byte_{};  // [normalized][first byte]
};

}  // namespace kvdecode
