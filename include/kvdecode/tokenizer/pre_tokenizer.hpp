#pragma once
// The pre-tokenizer stage of a Hugging Face tokenizer: cuts normalized text into the
// words the model tokenizes one by one (tokenizer.json "pre_tokenizer"; a "Sequence"
// is its steps flattened, each applied to every word the steps before it made).
//  - split: the matches of a regex (or of a literal string) and the text between
//    them, as tokenizers' Split does with its behavior (isolated: matches and gaps
//    each a word; removed: gaps only; merged_with_previous / merged_with_next: a match
//    joins the gap before / after it; contiguous: adjacent matches are one word) and
//    invert (the gaps are treated as the matches); empty words are dropped;
//  - byte_level: a space in front of a word that does not start with one
//    (add_prefix_space), GPT-2's regex split (use_regex), then every byte as its
//    byte_level_alphabet character;
//  - metaspace: spaces become `replacement` (U+2581), which is put in front of a word
//    that does not start with it (prepend always; prepend first: only the word that
//    starts the input), then each replacement starts a new word (split).
// Regexes are compiled once, when the pre_tokenizer is made, and shared by its copies.

#include <algorithm>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvdecode/tokenizer/byte_level.hpp"
#include "kvdecode/tokenizer/unicode_regex.hpp"

namespace kvdecode {

enum class split_behavior { isolated, removed, merged_with_previous, merged_with_next, contiguous };
enum class prepend_scheme { always, first, never };

struct pre_tokenizer_step {
    enum class kind { split, byte_level, metaspace };
    kind type = kind::split;
    // split
    std::string pattern;     // a regex, or a literal string when `regex` is false
    bool regex = true;
    split_behavior behavior = split_behavior::isolated;
    bool invert = false;
    // byte_level
    bool add_prefix_space = false;
    bool use_regex = true;
    // metaspace
    std::string replacement = "\xE2\x96\x81";  // U+2581
    prepend_scheme prepend = prepend_scheme::always;
    bool split = true;
};

// GPT-2's pre-tokenizer regex (tokenizers' ByteLevel with use_regex).
inline constexpr std::string_view gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class pre_tokenizer {
public:
    pre_tokenizer() = default;

    // Throws regex_error (a std::invalid_argument) for a regex that does not compile,
    // std::invalid_argument for an empty literal pattern or metaspace replacement.
    explicit pre_tokenizer(std::vector<pre_tokenizer_step> steps) : steps_(std::move(steps)) {
        regexes_.resize(steps_.size());
        for (std::size_t i = 0; i < steps_.size(); ++i) {
            const pre_tokenizer_step& s = steps_[i];
            if (s.type == pre_tokenizer_step::kind::split) {
                if (s.regex) regexes_[i] = std::make_shared<const unicode_regex>(s.pattern);
                else if (s.pattern.empty()) throw std::invalid_argument("kvdecode: pre_tokenizer: a Split with an empty pattern");
            } else if (s.type == pre_tokenizer_step::kind::byte_level && s.use_regex) {
                regexes_[i] = std::make_shared<const unicode_regex>(gpt2_pattern);
            } else if (s.type == pre_tokenizer_step::kind::metaspace && s.replacement.empty()) {
                throw std::invalid_argument("kvdecode: pre_tokenizer: a Metaspace with an empty replacement");
            }
        }
    }

    const std::vector<pre_tokenizer_step>& steps() const noexcept { return steps_; }

    // The words of `text` (valid UTF-8, normalized); `starts_input`: the text begins
    // the whole input (for metaspace's prepend first).
    std::vector<std::string> apply(std::string text, bool starts_input = true) const {
        std::vector<std::string> words;
        if (text.empty()) return words;
        words.push_back(std::move(text));
        for (std::size_t i = 0; i < steps_.size(); ++i) {
            const pre_tokenizer_step& s = steps_[i];
            std::vector<std::string> next;
            next.reserve(words.size());
            for (std::size_t w = 0; w < words.size(); ++w) {
                std::string& word = words[w];
                switch (s.type) {
                    case pre_tokenizer_step::kind::split: split(word, s, regexes_[i].get(), next); break;
                    case pre_tokenizer_step::kind::byte_level: {
                        if (s.add_prefix_space && word.front() != ' ') word.insert(0, 1, ' ');
                        std::vector<std::string> parts;
                        if (s.use_regex) split(word, {}, regexes_[i].get(), parts);
                        else parts.push_back(std::move(word));
                        for (const std::string& p : parts) next.push_back(byte_level_alphabet::get().encode(p));
                        break;
                    }
                    case pre_tokenizer_step::kind::metaspace: metaspace(word, s, starts_input && w == 0, next); break;
                }
            }
            words = std::move(next);
        }
        return words;
    }

private:
    // [begin, end) spans of `text`, each a match or not.
    struct span {
        std::size_t begin, end;
        bool match;
    };

    static void split(const std::string& text, const pre_tokenizer_step& s, const unicode_regex* re,
                      std::vector<std::string>& out) {
        std::vector<std::pair<std::size_t, std::size_t>> matches;
        if (re) {
            matches = re->find_all(text);
        } else {
            for (std::size_t at = 0, hit; (hit = text.find(s.pattern, at)) != std::string::npos; at = hit + s.pattern.size())
                matches.emplace_back(hit, hit + s.pattern.size());
        }
        std::vector<span> spans;
        spans.reserve(2 * matches.size() + 1);
        std::size_t at = 0;
        for (const auto& [b, e] : matches) {
            if (b > at) spans.push_back({at, b, s.invert});
            spans.push_back({b, e, !s.invert});
            at = e;
        }
        if (at < text.size()) spans.push_back({at, text.size(), s.invert});

        std::vector<std::pair<std::size_t, std::size_t>> words;  // [begin, end)
        bool previous_match = false;
        switch (s.behavior) {
            case split_behavior::isolated:
                for (const span& p : spans) words.emplace_back(p.begin, p.end);
                break;
            case split_behavior::removed:
                for (const span& p : spans)
                    if (!p.match) words.emplace_back(p.begin, p.end);
                break;
            case split_behavior::merged_with_previous:
                for (const span& p : spans) {
                    if (p.match && !previous_match && !words.empty()) words.back().second = p.end;
                    else words.emplace_back(p.begin, p.end);
                    previous_match = p.match;
                }
                break;
            case split_behavior::merged_with_next:
                for (std::size_t k = spans.size(); k-- > 0;) {
                    const span& p = spans[k];
                    if (p.match && !previous_match && !words.empty()) words.back().first = p.begin;
                    else words.emplace_back(p.begin, p.end);
                    previous_match = p.match;
                }
                std::reverse(words.begin(), words.end());
                break;
            case split_behavior::contiguous:
                for (std::size_t k = 0; k < spans.size(); ++k) {
                    const span& p = spans[k];
                    if (k > 0 && p.match == previous_match) words.back().second = p.end;
                    else words.emplace_back(p.begin, p.end);
                    previous_match = p.match;
                }
                break;
        }
        for (const auto& [b, e] : words)
            if (e > b) out.push_back(text.substr(b, e - b));
    }

    static void metaspace(std::string& word, const pre_tokenizer_step& s, bool first, std::vector<std::string>& out) {
        std::string text;
        text.reserve(word.size() + 8);
        for (char c : word) {
            if (c == ' ') text += s.replacement;
            else text += c;
        }
        const bool starts = text.compare(0, s.replacement.size(), s.replacement) == 0;
        if (!starts && (s.prepend == prepend_scheme::always || (s.prepend == prepend_scheme::first && first)))
            text.insert(0, s.replacement);
        if (!s.split) {
            out.push_back(std::move(text));
            return;
        }
        // Each replacement starts a word (tokenizers' MergedWithNext split on it).
        std::size_t begin = 0;
        for (std::size_t hit = text.find(s.replacement, 1); hit != std::string::npos;
             hit = text.find(s.replacement, hit + s.replacement.size())) {
            if (hit > begin) out.push_back(text.substr(begin, hit - begin));
            begin = hit;
        }
        if (begin < text.size()) out.push_back(text.substr(begin));
    }

    std::vector<pre_tokenizer_step> steps_;
    std::vector<std::shared_ptr<const unicode_regex>> regexes_;  // per step: its compiled regex, or null
};

}  // namespace kvdecode
