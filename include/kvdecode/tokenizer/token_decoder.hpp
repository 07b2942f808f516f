#pragma once
// The decoder stage of a Hugging Face tokenizer: turns the pieces of a token sequence
// back into text (tokenizer.json "decoder"; a "Sequence" is its steps flattened), each
// step mapping the list of token strings to a new list, as tokenizers' decode_chain:
//  - byte_level: every piece's characters as the bytes byte_level_alphabet gives them
//    (a piece with a character outside the alphabet as its own UTF-8), all joined
//    into one string, lossily (U+FFFD per invalid maximal subpart);
//  - replace: every occurrence of `pattern` by `text`, in each piece;
//  - byte_fallback: a run of "<0xXX>" pieces becomes its bytes when they are valid
//    UTF-8, else one U+FFFD per byte of the run;
//  - fuse: all pieces joined into one;
//  - strip: up to `start` leading and `stop` trailing `content` characters off each piece;
//  - metaspace: `replacement` as a space in each piece, except in the first piece,
//    where every one is dropped when the pre-tokenizer prepends one (`prepend`), as
//    tokenizers does;
// and the final list is concatenated. With no decoder at all, pieces are joined with
// spaces (tokenizers' default).
//
// Streaming (stream_bytes): the bytes one token contributes, given whether it is the
// first of the sequence. Every step but strip's `stop` after a fuse is per token, so
// the concatenation of stream_bytes over a sequence, converted lossily, is decode()
// on valid text. It differs where decode() sees invalid bytes: byte_level agrees
// exactly (it converts once, lossily, like utf8_lossy); byte_fallback replaces every
// byte of an invalid run (a valid character in the run included) by U+FFFD, where the
// stream gives utf8_lossy's one U+FFFD per invalid maximal subpart of the bytes.

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvdecode/tokenizer/byte_level.hpp"
#include "kvdecode/tokenizer/detail/replace_all.hpp"
#include "kvdecode/tokenizer/utf8.hpp"

namespace kvdecode {

struct decoder_step {
    enum class kind { byte_level, replace, byte_fallback, fuse, strip, metaspace };
    kind type = kind::byte_level;
    std::string pattern;  // replace: the text replaced (not empty)
    std::string text;     // replace: the replacement
    std::string content;  // strip: one character
    std::size_t start = 0, stop = 0;            // strip: how many at most
    std::string replacement = "\xE2\x96\x81";  // metaspace: U+2581
    bool prepend = true;                        // metaspace: the first piece's replacements are dropped
};

class token_decoder {
public:
    // No decoder: pieces joined with spaces.
    token_decoder() = default;

    // Throws std::invalid_argument for a replace with an empty pattern, a strip whose
    // content is not one character, a metaspace with an empty replacement.
    explicit token_decoder(std::vector<decoder_step> steps) : steps_(std::move(steps)), present_(true) {
        for (const decoder_step& s : steps_) {
            if (s.type == decoder_step::kind::replace && s.pattern.empty())
                throw std::invalid_argument("kvdecode: token_decoder: a Replace with an empty pattern");
            if (s.type == decoder_step::kind::strip &&
                (s.content.empty() || !utf8::is_valid(s.content) || utf8::length_of_valid(s.content) != s.content.size()))
                throw std::invalid_argument("kvdecode: token_decoder: a Strip whose content is not one character");
            if (s.type == decoder_step::kind::metaspace && s.replacement.empty())
                throw std::invalid_argument("kvdecode: token_decoder: a Metaspace with an empty replacement");
        }
    }

    const std::vector<decoder_step>& steps() const noexcept { return steps_; }
    bool present() const noexcept { return present_; }

    // tokenizers' Decoder::decode on the pieces (each valid UTF-8).
    std::string decode(std::vector<std::string> tokens) const {
        if (!present_) {
            std::string out;
            for (std::size_t i = 0; i < tokens.size(); ++i) {
                if (i > 0) out += ' ';
                out += tokens[i];
            }
            return out;
        }
        for (const decoder_step& s : steps_) {
            switch (s.type) {
                case decoder_step::kind::byte_level: {
                    std::string bytes;
                    for (const std::string& t : tokens) bytes += byte_level_bytes(t);
                    tokens.assign(1, utf8_lossy(bytes));
                    break;
                }
                case decoder_step::kind::replace:
                    for (std::string& t : tokens) t = detail::replace_all(t, s.pattern, s.text);
                    break;
                case decoder_step::kind::byte_fallback: tokens = byte_fallback(std::move(tokens)); break;
                case decoder_step::kind::fuse: {
                    std::string all;
                    for (const std::string& t : tokens) all += t;
                    tokens.assign(1, std::move(all));
                    break;
                }
                case decoder_step::kind::strip:
                    for (std::string& t : tokens) t = strip(t, s, true);
                    break;
                case decoder_step::kind::metaspace:
                    for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = metaspace(tokens[i], s, i == 0);
                    break;
            }
        }
        std::string out;
        for (const std::string& t : tokens) out += t;
        return out;
    }

    // The bytes `token` contributes to a decoded sequence, `first` when it is the
    // sequence's first piece (see the top of this file for what this guarantees).
    std::string stream_bytes(std::string_view token, bool first) const {
        if (!present_) return first ? std::string(token) : ' ' + std::string(token);
        std::string t(token);
        bool fused = false;  // after a fuse, only the first token is the first piece of a list
        for (const decoder_step& s : steps_) {
            switch (s.type) {
                case decoder_step::kind::byte_level: t = byte_level_bytes(t); fused = true; break;
                case decoder_step::kind::replace: t = detail::replace_all(t, s.pattern, s.text); break;
                case decoder_step::kind::byte_fallback:
                    if (const int b = byte_value(t); b >= 0) t.assign(1, static_cast<char>(b));
                    break;
                case decoder_step::kind::fuse: fused = true; break;
                case decoder_step::kind::strip:
                    // Before a fuse, each piece; after it, the start of the first only
                    // (the end of the whole text cannot be known token by token).
                    if (!fused || first) t = strip(t, s, !fused);
                    break;
                case decoder_step::kind::metaspace: t = metaspace(t, s, first || fused); break;  // after a fuse, one piece: the first
            }
        }
        return t;
    }

    // The byte "<0xXX>" stands for (hex digits in either case), or -1: tokenizers'
    // ByteFallback decoder's reading.
    static int byte_value(std::string_view p) noexcept {
        auto hex = [](char ch) -> int {
            if (ch >= '0' && ch <= '9') return ch - '0';
            if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
            if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
            return -1;
        };
        if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
        const int lo = hex(p[4]);
        if (p[3] == '+') return lo;  // Rust's u8::from_str_radix takes a sign: "<0x+A>" is byte 10 to tokenizers
        const int hi = hex(p[3]);
        return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
    }

private:
    static std::string byte_level_bytes(const std::string& t) {
        if (auto bytes = byte_level_alphabet::get().decode(t)) return std::move(*bytes);
        return t;
    }

    static std::vector<std::string> byte_fallback(std::vector<std::string> tokens) {
        std::vector<std::string> out;
        out.reserve(tokens.size());
        std::string run;  // bytes of the current run of byte pieces
        std::size_t run_length = 0;
        const auto flush = [&] {
            if (run_length == 0) return;
            if (utf8::is_valid(run)) {
                out.push_back(run);
            } else {
                for (std::size_t i = 0; i < run_length; ++i) out.emplace_back(replacement_character);
            }
            run.clear();
            run_length = 0;
        };
        for (std::string& t : tokens) {
            if (const int b = byte_value(t); b >= 0) {
                run += static_cast<char>(b);
                ++run_length;
            } else {
                flush();
                out.push_back(std::move(t));
            }
        }
        flush();
        return out;
    }

    // Up to s.start leading and (when `ends` is true) s.stop trailing s.content.
    static std::string strip(const std::string& t, const decoder_step& s, bool ends) {
        const std::string_view c = s.content;
        std::size_t begin = 0, end = t.size();
        for (std::size_t k = 0; k < s.start && t.compare(begin, c.size(), c) == 0 && begin + c.size() <= end; ++k)
            begin += c.size();
        if (ends)
            for (std::size_t k = 0; k < s.stop && end >= begin + c.size() && t.compare(end - c.size(), c.size(), c) == 0; ++k)
                end -= c.size();
        return t.substr(begin, end - begin);
    }

    // tokenizers drops every replacement of the first piece (not only a leading one).
    static std::string metaspace(const std::string& t, const decoder_step& s, bool first) {
        return detail::replace_all(t, s.replacement, first && s.prepend ? "" : " ");
    }

    std::vector<decoder_step> steps_;
    bool present_ = false;
};

}  // namespace kvdecode
