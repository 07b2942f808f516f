#pragma once
// GPT-2's byte-level alphabet: each of the 256 bytes stands for one printable
// Unicode character, so a byte-level vocabulary spells any bytes in text. Printable
// Latin-1 bytes ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) stand for themselves; the
// other 68, in byte order, for U+0100, U+0101, ... (so a space is 'Ġ' U+0120 and a
// newline 'Ċ' U+010A). Hugging Face tokenizers' bytes_char(), OpenAI's bytes_to_unicode().

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kvdecode/tokenizer/utf8.hpp"

namespace kvdecode {

class byte_level_alphabet {
public:
    static const byte_level_alphabet& get() {
        static const byte_level_alphabet a;
        return a;
    }

    char32_t char_of(unsigned char b) const noexcept { return to_char_[b]; }

    // The byte code point `c` stands for, or nullopt for a character outside the alphabet.
    std::optional<unsigned char> byte_of(char32_t c) const noexcept {
        if (c >= from_char_.size() || from_char_[c] < 0) return std::nullopt;
        return static_cast<unsigned char>(from_char_[c]);
    }

    // Every byte of `bytes` as its character, in UTF-8.
    std::string encode(std::string_view bytes) const {
        std::string out;
        out.reserve(bytes.size() * 2);
        for (unsigned char b : bytes) out += utf8_[b];
        return out;
    }

    // The bytes a string of alphabet characters spells, or nullopt when `text` has a
    // character outside the alphabet (or is not valid UTF-8).
    std::optional<std::string> decode(std::string_view text) const {
        std::string out;
        out.reserve(text.size());
        for (std::size_t i = 0; i < text.size();) {
            const utf8::prefix p = utf8::read_prefix(text.substr(i));
            if (!p.valid) return std::nullopt;
            const auto b = byte_of(utf8::decode_valid(text.substr(i), p.length));
            if (!b) return std::nullopt;
            out += static_cast<char>(*b);
            i += p.length;
        }
        return out;
    }

private:
    byte_level_alphabet() {
        from_char_.fill(-1);
        char32_t next = 0x100;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            const char32_t c = printable ? static_cast<char32_t>(b) : next++;
            to_char_[static_cast<std::size_t>(b)] = c;
            from_char_[c] = static_cast<std::int16_t>(b);
            utf8::append(utf8_[static_cast<std::size_t>(b)], c);
        }
    }

    std::array<char32_t, 256> to_char_{};
    std::array<std::int16_t, 0x144> from_char_{};  // the highest character is U+0143
    std::array<std::string, 256> utf8_{};
};

}  // namespace kvdecode
