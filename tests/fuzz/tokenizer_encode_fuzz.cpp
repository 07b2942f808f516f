// libFuzzer harness: tokenizer::encode on arbitrary bytes as the prompt.
// Two vocabularies with llama2.c's rules: the shipped one (models/kjv_tok1024.bin:
// every byte has a byte piece, so any bytes must encode and decode back to
// themselves) and a small awkward one built here (byte pieces for ASCII only,
// multi-byte pieces, a duplicate, an empty piece, infinite and huge scores), where
// encode may throw std::invalid_argument, but only for a byte with no piece, and
// otherwise must round-trip too. For both, the encoding is a fixed point of the merge
// rule: no two adjacent ordinary pieces concatenate to a piece.
// A third, GGUF-style: the shipped pieces spelled with U+2581 under llama.cpp's rules,
// plus a user-defined and a control token. There: on valid UTF-8 the ids are the
// shipped tokenizer's (text without U+2581 or the two tokens' texts); parse_special on or off,
// the ids decode (special tokens shown) back to the text after BOS, up to U+2581 and
// spaces (llama.cpp escapes spaces before cutting characters, so a stray lead byte
// before a space takes part of its U+2581, which then decodes as bytes); the control
// token's id appears only when parsed and its text is in the input; the user-defined
// one's always where its text is.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fuzz_support.hpp"
#include "kvdecode/io/llama2c_tokenizer.hpp"
#include "kvdecode/tokenizer/sentencepiece.hpp"

#ifndef KVDECODE_MODELS_DIR
#error "KVDECODE_MODELS_DIR must name the shipped models/ folder"
#endif

using namespace kvdecode;

namespace {

// A vocabulary and what the harness knows about it, worked out independently of the tokenizer.
struct vocabulary {
    tokenizer tok;
    std::unordered_map<std::string, token_id> ordinary;  // piece -> its first id (ids above EOS)
    std::array<bool, 256> byte_piece{};                  // bytes that have a byte piece

    explicit vocabulary(tokenizer t) : tok(std::move(t)) {
        for (std::size_t i = tokenizer::eos_id + 1; i < tok.vocab_size(); ++i) {
            const std::string p(tok.piece(static_cast<token_id>(i)));
            if (const int b = kvfuzz::byte_piece_value(p); b >= 0)
                byte_piece[static_cast<std::size_t>(b)] = true;
            else if (!p.empty())
                ordinary.emplace(p, static_cast<token_id>(i));
        }
    }
};

// The llama2.c file of the awkward vocabulary, in memory.
std::vector<std::byte> awkward_tokenizer_file() {
    std::vector<kvfuzz::piece> pieces = {{"<unk>"}, {"<s>"}, {"</s>"}};
    for (int b = 0; b < 0x80; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        pieces.push_back({name});
    }
    const float huge = std::numeric_limits<float>::max(), inf = std::numeric_limits<float>::infinity();
    for (const kvfuzz::piece& p : std::vector<kvfuzz::piece>{
             {" ", -1}, {"a", -1}, {"b", -1}, {"ab", -2}, {" a", -3}, {"ab", 5}, {"aba", huge}, {"bb", -inf},
             {"\xC3\xA9", -1}, {"\xC3\xA9\xC3\xA9", -4}, {"\xE6\x97\xA5", -1}, {"", 3}, {"<0xZZ>", -1},
             {"<0x41>", 1}, {"<0x", -1}, {" <0x", -2}, {"\xF0\x9F\x98\x80", -1}, {"\xFF", -1}, {" b", inf}})
        pieces.push_back(p);
    return kvfuzz::llama2c_tokenizer_file(8, pieces);
}

const vocabulary& shipped() {
    static const vocabulary v(tokenizer::read_llama2c(KVDECODE_MODELS_DIR "/kjv_tok1024.bin"));
    return v;
}

const vocabulary& awkward() {
    static const std::vector<std::byte> file = awkward_tokenizer_file();
    static const vocabulary v(tokenizer::read_llama2c(file, std::nullopt, "awkward tokenizer"));
    return v;
}

void check(const vocabulary& v, std::string_view text, bool must_encode) {
    std::vector<token_id> ids;
    try {
        ids = v.tok.encode(text, true, false);
    } catch (const std::invalid_argument&) {
        KVFUZZ_CHECK(!must_encode);
        bool unencodable = false;
        for (unsigned char b : " " + std::string(text)) unencodable = unencodable || !v.byte_piece[b];
        KVFUZZ_CHECK(unencodable);
        return;
    }
    KVFUZZ_CHECK(!ids.empty() && ids.front() == tokenizer::bos_id);
    KVFUZZ_CHECK(text.empty() == (ids.size() == 1));
    std::string streamed;
    for (std::size_t i = 1; i < ids.size(); ++i) {
        const token_id id = ids[i];
        KVFUZZ_CHECK(id > tokenizer::eos_id && static_cast<std::size_t>(id) < v.tok.vocab_size());
        const std::string piece(v.tok.piece(id));
        const bool byte = kvfuzz::byte_piece_value(piece) >= 0;
        // An ordinary piece is the first id of its text; two ordinary neighbours never merge further.
        if (!byte) {
            KVFUZZ_CHECK(v.ordinary.count(piece) == 1 && v.ordinary.at(piece) == id);
            if (i + 1 < ids.size()) {
                const std::string next(v.tok.piece(ids[i + 1]));
                if (kvfuzz::byte_piece_value(next) < 0) KVFUZZ_CHECK(v.ordinary.count(piece + next) == 0);
            }
        }
        streamed += v.tok.decode_token(ids[i - 1], id);
    }
    KVFUZZ_CHECK(streamed == text);
    KVFUZZ_CHECK(v.tok.decode(ids) == text);
    // Without BOS the dummy-prefix space stays in front.
    const auto bare = v.tok.encode(text, false, true);
    KVFUZZ_CHECK(bare.size() == ids.size() && bare.back() == tokenizer::eos_id);
    KVFUZZ_CHECK(std::equal(bare.begin(), bare.end() - 1, ids.begin() + 1));
    KVFUZZ_CHECK(v.tok.decode(bare) == (text.empty() ? "" : " " + std::string(text)));
}

const std::string user_text = "<|u|>", control_text = "<|c|>";

// The shipped vocabulary as a GGUF file holds it (spaces as U+2581, llama.cpp's
// rules), with a user-defined and a control token after it.
const sentencepiece_tokenizer& gguf_style() {
    static const sentencepiece_tokenizer t = [] {
        const tokenizer& base = shipped().tok;
        sentencepiece_vocab v;
        for (std::size_t i = 0; i < base.vocab_size(); ++i) {
            const auto id = static_cast<token_id>(i);
            std::string p(base.piece(id));
            if (i > tokenizer::eos_id)
                for (std::size_t at; (at = p.find(' ')) != std::string::npos;) p.replace(at, 1, "\xE2\x96\x81");
            else
                p = i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>";
            v.pieces.push_back(p);
            v.scores.push_back(base.score(id));
            v.types.push_back(base.type(id));
        }
        v.pieces.insert(v.pieces.end(), {user_text, control_text});
        v.scores.insert(v.scores.end(), {0.0f, 0.0f});
        v.types.insert(v.types.end(), {token_type::user_defined, token_type::control});
        v.unk = 0, v.bos = 1, v.eos = 2;
        return sentencepiece_tokenizer(std::move(v));
    }();
    return t;
}

bool valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const auto lead = static_cast<unsigned char>(s[i]);
        const std::size_t n = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (std::size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
        i += n;
    }
    return true;
}

// U+2581 read as a space.
std::string spaces(std::string s) {
    for (std::size_t at; (at = s.find("\xE2\x96\x81")) != std::string::npos;) s.replace(at, 3, " ");
    return s;
}

void check_gguf_style(std::string_view text) {
    const sentencepiece_tokenizer& t = gguf_style();
    const auto user = static_cast<token_id>(t.vocab_size() - 2), control = static_cast<token_id>(t.vocab_size() - 1);
    const bool has_user = text.find(user_text) != std::string_view::npos;
    const bool has_control = text.find(control_text) != std::string_view::npos;
    for (bool parse_special : {false, true}) {
        const auto ids = t.encode(text, {.parse_special = parse_special});  // every byte has a piece: never throws
        KVFUZZ_CHECK(!ids.empty() && ids.front() == tokenizer::bos_id);
        KVFUZZ_CHECK(spaces(t.decode(ids, {.special = true})) == spaces("<s>" + std::string(text)));
        KVFUZZ_CHECK(has_user == (std::find(ids.begin(), ids.end(), user) != ids.end()));
        KVFUZZ_CHECK((parse_special && has_control) == (std::find(ids.begin(), ids.end(), control) != ids.end()));
        if (!parse_special && !has_user) KVFUZZ_CHECK(spaces(t.decode(ids)) == spaces(std::string(text)));
    }
    // U+2581 in the text is a space to the GGUF-style vocabulary, a character to llama2.c's.
    if (valid_utf8(text) && !has_user && text.find("\xE2\x96\x81") == std::string_view::npos) KVFUZZ_CHECK(t.encode(text) == shipped().tok.encode(text));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    shipped();
    awkward();
    gguf_style();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    for (int b = 0; b < 256; ++b) KVFUZZ_CHECK(shipped().byte_piece[static_cast<std::size_t>(b)]);
    check(shipped(), text, true);
    check(awkward(), text, false);
    check_gguf_style(text);
    return 0;
}
