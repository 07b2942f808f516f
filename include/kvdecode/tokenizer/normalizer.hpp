#pragma once
// The normalizer stage of a Hugging Face tokenizer: steps applied in order to each
// piece of text between added tokens (tokenizer.json "normalizer"; a "Sequence" is
// its steps flattened). Needs -lutf8proc for NFC.
//  - nfc: Unicode canonical composition (utf8proc, UTF8PROC_COMPOSE | UTF8PROC_STABLE);
//  - prepend: `text` in front of a non-empty piece (SentencePiece's dummy prefix "▁");
//  - replace: every occurrence of the literal `pattern` by `text`, left to right, not
//    overlapping (tokenizers' Replace with a String pattern).

#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <utf8proc.h>

#include "kvdecode/tokenizer/detail/replace_all.hpp"

namespace kvdecode {

struct normalizer_step {
    enum class kind { nfc, prepend, replace };
    kind type = kind::nfc;
    std::string pattern;  // replace: the text replaced (not empty)
    std::string text;     // prepend: the prefix; replace: the replacement
};

class normalizer {
public:
    normalizer() = default;
    // Throws std::invalid_argument for a replace step with an empty pattern.
    explicit normalizer(std::vector<normalizer_step> steps) : steps_(std::move(steps)) {
        for (const normalizer_step& s : steps_)
            if (s.type == normalizer_step::kind::replace && s.pattern.empty())
                throw std::invalid_argument("kvdecode: normalizer: a Replace step with an empty pattern");
    }

    const std::vector<normalizer_step>& steps() const noexcept { return steps_; }
    bool empty() const noexcept { return steps_.empty(); }

    // `text` must be valid UTF-8 (and stays so).
    std::string apply(std::string text) const {
        for (const normalizer_step& s : steps_) {
            switch (s.type) {
                case normalizer_step::kind::nfc: text = nfc(text); break;
                case normalizer_step::kind::prepend:
                    if (!text.empty()) text.insert(0, s.text);
                    break;
                case normalizer_step::kind::replace: text = detail::replace_all(text, s.pattern, s.text); break;
            }
        }
        return text;
    }

    static std::string nfc(std::string_view text) {
        if (text.empty()) return {};
        utf8proc_uint8_t* out = nullptr;
        const utf8proc_ssize_t n =
            utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                         &out, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
        const std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(out, &std::free);
        if (n < 0)
            throw std::invalid_argument(std::string("kvdecode: normalizer: NFC failed: ") + utf8proc_errmsg(n));
        return std::string(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
    }

private:
    std::vector<normalizer_step> steps_;
};

}  // namespace kvdecode
