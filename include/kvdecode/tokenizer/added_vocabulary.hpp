#pragma once
// Added tokens of a Hugging Face tokenizer (tokenizer.json "added_tokens"): texts cut
// out of the input whole, before the model sees it, as tokenizers' AddedVocabulary
// does. Tokens with `normalized` false are found in the raw text, the others in each
// normalized piece between those; at each place the longest token wins, and the
// leftmost place first (leftmost-longest, aho-corasick's MatchKind::LeftmostLongest).
// lstrip, rstrip and single_word are not implemented: the reader refuses them.

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvdecode/core/types.hpp"

namespace kvdecode {

struct added_token {
    std::string content;
    token_id id = 0;
    bool special = false;     // hidden by decode() unless decode_options::special
    bool normalized = false;  // matched in normalized text (else in the raw text)
};

// A span of text: either an added token or plain text for the pipeline.
struct text_fragment {
    std::size_t begin = 0, size = 0;  // bytes of the text it was cut from
    token_id token = -1;              // an added token, or -1 for plain text
};

class added_vocabulary {
public:
    added_vocabulary() = default;
    explicit added_vocabulary(std::vector<added_token> tokens) : tokens_(std::move(tokens)) {
        for (std::size_t i = 0; i < tokens_.size(); ++i) {
            const std::string& c = tokens_[i].content;
            if (!c.empty()) by_first_byte_[tokens_[i].normalized][static_cast<unsigned char>(c[0])].push_back(i);
        }
        for (auto& table : by_first_byte_)
            for (auto& list : table)  // longest first; the earlier token on equal texts
                std::stable_sort(list.begin(), list.end(),
                                 [&](std::size_t a, std::size_t b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
    }

    const std::vector<added_token>& tokens() const noexcept { return tokens_; }

    // `text` cut at the tokens with this `normalized` flag, leftmost-longest.
    std::vector<text_fragment> split(std::string_view text, bool normalized) const {
        std::vector<text_fragment> out;
        const auto& table = by_first_byte_[normalized];
        std::size_t plain = 0;  // start of the plain text not yet emitted
        for (std::size_t i = 0; i < text.size();) {
            const std::size_t hit = match_at(table[static_cast<unsigned char>(text[i])], text.substr(i));
            if (hit == none) {
                ++i;
                continue;
            }
            if (i > plain) out.push_back({plain, i - plain, -1});
            const std::size_t n = tokens_[hit].content.size();
            out.push_back({i, n, tokens_[hit].id});
            i += n;
            plain = i;
        }
        if (plain < text.size()) out.push_back({plain, text.size() - plain, -1});
        return out;
    }

    bool any(bool normalized) const noexcept {
        return std::any_of(tokens_.begin(), tokens_.end(),
                           [&](const added_token& t) { return t.normalized == normalized && !t.content.empty(); });
    }

private:
    static constexpr std::size_t none = static_cast<std::size_t>(-1);

    std::size_t match_at(const std::vector<std::size_t>& candidates, std::string_view rest) const {
        for (std::size_t c : candidates)
            if (rest.starts_with(tokens_[c].content)) return c;
        return none;
    }

    std::vector<added_token> tokens_;
    std::array<std::array<std::vector<std::size_t>, 256>, 2> by_first_byte_{};  // [normalized][first byte]
};

}  // namespace kvdecode
