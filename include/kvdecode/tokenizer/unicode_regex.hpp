#pragma once
// A compiled Unicode regular expression (PCRE2, 8-bit, UTF and UCP), for the regexes
// Hugging Face tokenizer.json files carry in their Split pre-tokenizers and for
// GPT-2's own. Needs -lpcre2-8.
//
// tokenizers compiles these with Oniguruma. The two agree on the constructs these
// patterns use (\p{L}, \p{N}, (?i:...), lookahead, possessive-free alternation),
// except for \s: Oniguruma's Unicode \s also takes U+0085 (NEXT LINE), PCRE2's does
// not. The pattern is rewritten so \s and \S mean Oniguruma's set (see
// oniguruma_spaces below).
//
// \C (one byte, which could split a character) is refused. Compiled once (JIT where
// the library has it); find_all() makes one match block per
// call and reuses it for every match, so a unicode_regex is shared read-only by any
// number of threads. The subject must be valid UTF-8 (callers convert lossily first).

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvdecode/tokenizer/utf8.hpp"

namespace kvdecode {

// Why a pattern did not compile: PCRE2's message and the offset in the pattern.
class regex_error : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

class unicode_regex {
public:
    // Throws regex_error for a pattern PCRE2 rejects.
    explicit unicode_regex(std::string_view pattern) : pattern_(pattern) {
        const std::string translated = oniguruma_spaces(pattern);
        int error = 0;
        PCRE2_SIZE offset = 0;
        pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                         PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C, &error, &offset, nullptr);
        if (!code) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(error, message, sizeof message);
            throw regex_error("regex /" + std::string(pattern) + "/ does not compile: " +
                              reinterpret_cast<const char*>(message) + " at offset " + std::to_string(offset));
        }
        code_.reset(code);
        jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    }

    const std::string& pattern() const noexcept { return pattern_; }

    // Every non-empty, non-overlapping match in `subject`, left to right, as
    // [begin, end) byte offsets (an empty match is skipped, and the search goes on
    // one character later, as Oniguruma's and Rust's find_iter do).
    std::vector<std::pair<std::size_t, std::size_t>> find_all(std::string_view subject) const {
        std::vector<std::pair<std::size_t, std::size_t>> out;
        const std::unique_ptr<pcre2_match_data, match_data_free> match(
            pcre2_match_data_create_from_pattern(code_.get(), nullptr));
        if (!match) throw std::bad_alloc();
        const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
        std::size_t at = 0;
        bool checked = false;  // UTF validity is checked on the first call only
        while (at <= subject.size()) {
            const uint32_t options = checked ? PCRE2_NO_UTF_CHECK : 0;
            int rc = pcre2_match(code_.get(), s, subject.size(), at, options, match.get(), nullptr);
            if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // JIT's own stack is small: the interpreter has the heap
                rc = pcre2_match(code_.get(), s, subject.size(), at, options | PCRE2_NO_JIT, match.get(), nullptr);
            checked = true;
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                PCRE2_UCHAR message[256];
                pcre2_get_error_message(rc, message, sizeof message);
                throw std::invalid_argument("kvdecode: regex /" + pattern_ + "/: matching failed: " +
                                            reinterpret_cast<const char*>(message));
            }
            const PCRE2_SIZE* v = pcre2_get_ovector_pointer(match.get());
            const std::size_t begin = v[0], end = v[1];
            if (end > begin) {
                out.emplace_back(begin, end);
                at = end;
            } else {
                if (begin >= subject.size()) break;
                at = begin + utf8::length_of_valid(subject.substr(begin));
            }
        }
        return out;
    }

    bool jit() const noexcept { return jit_; }

    // The pattern with \s and \S standing for Oniguruma's whitespace (PCRE2's and
    // U+0085): \s becomes [\s\x{85}] outside a class and \s\x{85} inside one; \S
    // outside a class becomes [^\s\x{85}] (inside a class it is left alone: no pattern
    // of a known tokenizer has one). Escapes are skipped whole, \Q...\E left alone.
    static std::string oniguruma_spaces(std::string_view p) {
        std::string out;
        out.reserve(p.size() + 16);
        bool in_class = false;
        bool quoted = false;
        for (std::size_t i = 0; i < p.size(); ++i) {
            const char c = p[i];
            if (quoted) {
                if (c == '\\' && i + 1 < p.size() && p[i + 1] == 'E') quoted = false, out += "\\E", ++i;
                else out += c;
                continue;
            }
            if (c == '\\' && i + 1 < p.size()) {
                const char e = p[i + 1];
                ++i;
                if (e == 'Q') quoted = true, out += "\\Q";
                else if (e == 's') out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
                else if (e == 'S' && !in_class) out += "[^\\s\\x{85}]";
                else out += '\\', out += e;
                continue;
            }
            if (in_class) {
                if (c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // [:alpha:] inside a class
                    const std::size_t close = p.find(":]", i + 2);
                    const std::size_t end = close == std::string_view::npos ? p.size() : close + 2;
                    out.append(p.substr(i, end - i));
                    i = end - 1;
                    continue;
                }
                if (c == ']') in_class = false;
                out += c;
                continue;
            }
            if (c == '[') {
                // A ']' right after '[' or '[^' is a literal.
                out += c;
                in_class = true;
                std::size_t j = i + 1;
                if (j < p.size() && p[j] == '^') out += '^', ++j;
                if (j < p.size() && p[j] == ']') out += ']', ++j;
                i = j - 1;
                continue;
            }
            out += c;
        }
        return out;
    }

private:
    struct code_free {
        void operator()(pcre2_code* c) const noexcept { pcre2_code_free(c); }
    };
    struct match_data_free {
        void operator()(pcre2_match_data* m) const noexcept { pcre2_match_data_free(m); }
    };

    std::string pattern_;
    std::unique_ptr<pcre2_code, code_free> code_;
    bool jit_ = false;
};

}  // namespace kvdecode
