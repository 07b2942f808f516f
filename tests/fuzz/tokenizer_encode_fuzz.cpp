// libFuzzer harness: tokenizer::encode on arbitrary bytes as the prompt.
// Two vocabularies: the shipped one (models/kjv_tok1024.bin: every byte has a byte
// piece, so any bytes must encode and decode back to themselves) and a small
// awkward one built here (byte pieces for ASCII only, multi-byte pieces, a duplicate,
// an empty piece, infinite and huge scores), where encode may throw
// std::invalid_argument, but only for a byte with no piece, and otherwise must
// round-trip too. For both, the encoding is a fixed point of the merge rule: no two
// adjacent ordinary pieces concatenate to a piece.

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

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    shipped();
    awkward();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    for (int b = 0; b < 256; ++b) KVFUZZ_CHECK(shipped().byte_piece[static_cast<std::size_t>(b)]);
    check(shipped(), text, true);
    check(awkward(), text, false);
    return 0;
}
