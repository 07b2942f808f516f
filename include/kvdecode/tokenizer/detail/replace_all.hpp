#pragma once
// Every occurrence of a string replaced, left to right, without overlaps: what
// tokenizers' Replace normalizer and decoder do with a String pattern (and the
// Metaspace decoder with its replacement character).

#include <string>
#include <string_view>

namespace kvdecode::detail {

// `pattern` must not be empty (the readers refuse an empty Replace pattern).
inline std::string replace_all(std::string_view text, std::string_view pattern, std::string_view with) {
    std::string out;
    out.reserve(text.size());
    std::size_t at = 0;
    if (pattern.empty()) return std::string(text);
    for (std::size_t hit; (hit = text.find(pattern, at)) != std::string_view::npos; at = hit + pattern.size()) {
        out.append(text.substr(at, hit - at));
        out.append(with);
    }
    out.append(text.substr(at));
    return out;
}

}  // namespace kvdecode::detail
