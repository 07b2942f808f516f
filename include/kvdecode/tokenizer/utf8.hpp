#pragma once
// UTF-8 for the tokenizers: reading and writing code points, the lossy conversion
// Rust's String::from_utf8_lossy makes (what Hugging Face tokenizers' decoders use),
// and utf8_stream, which turns a token-by-token byte stream into whole characters.
//
// Validity is Unicode's (Table 3-7): no overlong forms, no surrogates, nothing above
// U+10FFFF. An invalid sequence is replaced by one U+FFFD per "maximal subpart": the
// longest prefix of the bytes there that could still begin a valid character, or one
// byte when even the first cannot (Unicode's recommended practice, and Rust's).
// So "\xE6\x97" (a cut 3-byte character) is one U+FFFD, "\xFF\xFE" two, and
// "\xED\xA0\x80" (a surrogate) three.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvdecode {

inline constexpr std::string_view replacement_character = "\xEF\xBF\xBD";  // U+FFFD

namespace utf8 {

// How `bytes` begins: `length` bytes of a valid character (`valid`), or an invalid
// maximal subpart of `length` bytes (>= 1) that either cannot be completed
// (`incomplete` false) or ends with the input while still a valid prefix
// (`incomplete` true: more bytes could complete it). `bytes` must not be empty.
struct prefix {
    std::size_t length = 0;
    bool valid = false;
    bool incomplete = false;
};

inline prefix read_prefix(std::string_view bytes) noexcept {
    const auto b0 = static_cast<unsigned char>(bytes[0]);
    if (b0 < 0x80) return {1, true, false};
    std::size_t need = 0;  // continuation bytes after the lead
    unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
    if (b0 >= 0xC2 && b0 <= 0xDF) need = 1;
    else if (b0 == 0xE0) need = 2, lo = 0xA0;
    else if (b0 >= 0xE1 && b0 <= 0xEC) need = 2;
    else if (b0 == 0xED) need = 2, hi = 0x9F;
    else if (b0 >= 0xEE && b0 <= 0xEF) need = 2;
    else if (b0 == 0xF0) need = 3, lo = 0x90;
    else if (b0 >= 0xF1 && b0 <= 0xF3) need = 3;
    else if (b0 == 0xF4) need = 3, hi = 0x8F;
    else return {1, false, false};  // 80..C1, F5..FF: never a lead byte
    for (std::size_t k = 1; k <= need; ++k) {
        if (k >= bytes.size()) return {k, false, true};
        const auto b = static_cast<unsigned char>(bytes[k]);
        const bool ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        if (!ok) return {k, false, false};
    }
    return {need + 1, true, false};
}

inline bool is_valid(std::string_view bytes) noexcept {
    for (std::size_t i = 0; i < bytes.size();) {
        const prefix p = read_prefix(bytes.substr(i));
        if (!p.valid) return false;
        i += p.length;
    }
    return true;
}

// The code point of the valid character at the start of `bytes` (read_prefix said so).
inline char32_t decode_valid(std::string_view bytes, std::size_t length) noexcept {
    const auto b = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(bytes[k])); };
    switch (length) {
        case 1: return b(0);
        case 2: return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
        case 3: return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
        default: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
    }
}

// Appends code point `c` (a scalar value: not a surrogate, at most U+10FFFF).
inline void append(std::string& out, char32_t c) {
    if (c < 0x80) {
        out += static_cast<char>(c);
    } else if (c < 0x800) {
        out += static_cast<char>(0xC0 | (c >> 6));
        out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        out += static_cast<char>(0xE0 | (c >> 12));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (c >> 18));
        out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (c & 0x3F));
    }
}

// Bytes of the character starting at bytes[0] of a valid UTF-8 string.
inline std::size_t length_of_valid(std::string_view bytes) noexcept {
    const auto b0 = static_cast<unsigned char>(bytes[0]);
    return b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4;
}

}  // namespace utf8

// Rust's String::from_utf8_lossy: valid characters kept, each invalid maximal
// subpart (a cut character at the end included) replaced by one U+FFFD.
inline std::string utf8_lossy(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    for (std::size_t i = 0; i < bytes.size();) {
        const utf8::prefix p = utf8::read_prefix(bytes.substr(i));
        if (p.valid) out.append(bytes.substr(i, p.length));
        else out += replacement_character;
        i += p.length;
    }
    return out;
}

// Bytes in, whole characters out: push() returns the UTF-8 text that the bytes so far
// make, holding back a character that the next bytes may complete; finish() returns
// what is held back, lossily (a cut character becomes U+FFFD), and starts afresh.
// Invalid bytes come out as U+FFFD as soon as they are known to be invalid.
// The concatenation of every push() and finish() is utf8_lossy of the concatenated
// bytes, however the bytes are split between calls.
class utf8_stream {
public:
    std::string push(std::string_view bytes) {
        pending_.append(bytes);
        std::string out;
        std::size_t i = 0;
        while (i < pending_.size()) {
            const utf8::prefix p = utf8::read_prefix(std::string_view(pending_).substr(i));
            if (p.incomplete) break;  // may yet be completed: keep it
            if (p.valid) out.append(pending_, i, p.length);
            else out += replacement_character;
            i += p.length;
        }
        pending_.erase(0, i);
        return out;
    }

    std::string finish() {
        std::string out = utf8_lossy(pending_);
        pending_.clear();
        return out;
    }

    // Bytes held back (at most 3: an incomplete character).
    std::string_view pending() const noexcept { return pending_; }

private:
    std::string pending_;
};

}  // namespace kvdecode
