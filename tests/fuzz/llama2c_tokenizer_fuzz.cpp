// libFuzzer harness: the llama2.c tokenizer reader on arbitrary bytes.
// A bad input must end in kvdecode::model_format_error naming the input; anything
// else that escapes is a crash. On success:
//  - writing the pieces back in the format gives the input, byte for byte;
//  - reading again with the vocabulary size stated gives the same tokenizer, and one
//    piece more or fewer is an error;
//  - the fuzzed vocabulary encodes text (part of the input itself, its pieces, the
//    bytes its byte pieces stand for) to ids that decode back to the text, or throws std::invalid_argument
//    only when some byte of the text has no byte piece.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "kvdecode/io/llama2c_tokenizer.hpp"

using namespace kvdecode;

namespace {

const std::string input_name = "fuzz input";

std::optional<tokenizer> read(std::span<const std::byte> bytes, std::optional<std::size_t> vocab_size) {
    try {
        return tokenizer::read_llama2c(bytes, vocab_size, input_name);
    } catch (const model_format_error& e) {
        KVFUZZ_CHECK(e.file() == input_name);
        KVFUZZ_CHECK(!e.field().empty());
        KVFUZZ_CHECK(std::string(e.what()).find(input_name) != std::string::npos);
        return std::nullopt;
    }
}

// The file these pieces make, written by the harness.
std::vector<std::byte> serialised(const tokenizer& t, std::int32_t max_length) {
    std::vector<kvfuzz::piece> pieces;
    for (std::size_t i = 0; i < t.vocab_size(); ++i)
        pieces.push_back({std::string(t.piece(static_cast<token_id>(i))), t.score(static_cast<token_id>(i))});
    return kvfuzz::llama2c_tokenizer_file(max_length, pieces);
}

bool same_pieces(const tokenizer& a, const tokenizer& b) {
    if (a.vocab_size() != b.vocab_size()) return false;
    for (std::size_t i = 0; i < a.vocab_size(); ++i) {
        const auto id = static_cast<token_id>(i);
        const float sa = a.score(id), sb = b.score(id);
        if (a.piece(id) != b.piece(id) || std::memcmp(&sa, &sb, sizeof sa) != 0) return false;
    }
    return true;
}

// Encodes `text` with the fuzzed vocabulary: a round trip, or invalid_argument for a
// byte that neither an ordinary piece nor a byte piece can stand for.
void check_encoding(const tokenizer& t, std::string_view text) {
    std::array<bool, 256> has_byte_piece{};
    for (std::size_t i = tokenizer::eos_id + 1; i < t.vocab_size(); ++i)
        if (const int b = kvfuzz::byte_piece_value(t.piece(static_cast<token_id>(i))); b >= 0)
            has_byte_piece[static_cast<std::size_t>(b)] = true;
    std::vector<token_id> ids;
    try {
        ids = t.encode(text, true, true);
    } catch (const std::invalid_argument&) {
        const std::string with_prefix = " " + std::string(text);
        KVFUZZ_CHECK(std::any_of(with_prefix.begin(), with_prefix.end(),
                                 [&](char c) { return !has_byte_piece[static_cast<unsigned char>(c)]; }));
        return;
    }
    KVFUZZ_CHECK(ids.size() >= 2 && ids.front() == tokenizer::bos_id && ids.back() == tokenizer::eos_id);
    for (std::size_t i = 1; i + 1 < ids.size(); ++i)  // text never becomes a special token
        KVFUZZ_CHECK(ids[i] > tokenizer::eos_id && static_cast<std::size_t>(ids[i]) < t.vocab_size());
    KVFUZZ_CHECK(t.decode(ids) == text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto bytes = kvfuzz::bytes_of(data, size);
    const auto t = read(bytes, std::nullopt);
    if (!t) return 0;

    KVFUZZ_CHECK(size >= sizeof(std::int32_t));
    const std::int32_t max_length = kvfuzz::int32_at(bytes, 0);
    KVFUZZ_CHECK(max_length > 0);
    KVFUZZ_CHECK(t->vocab_size() > tokenizer::eos_id);
    for (std::size_t i = 0; i < t->vocab_size(); ++i)
        KVFUZZ_CHECK(t->piece(static_cast<token_id>(i)).size() <= static_cast<std::size_t>(max_length));
    const auto written = serialised(*t, max_length);
    KVFUZZ_CHECK(written.size() == size && std::equal(written.begin(), written.end(), bytes.begin()));

    const auto exact = read(bytes, t->vocab_size());
    KVFUZZ_CHECK(exact && same_pieces(*t, *exact));
    KVFUZZ_CHECK(!read(bytes, t->vocab_size() + 1));
    KVFUZZ_CHECK(!read(bytes, t->vocab_size() - 1));

    // Encoding with the fuzzed vocabulary: the input's own tail (its last pieces, as
    // text) and the pieces themselves glued together, kept short (encoding is quadratic).
    const std::string_view raw(reinterpret_cast<const char*>(data), size);
    check_encoding(*t, raw.substr(raw.size() - std::min<std::size_t>(raw.size(), 48)));
    std::string glued;
    for (std::size_t i = t->vocab_size(); i-- > 0 && glued.size() < 48;) glued += t->piece(static_cast<token_id>(i));
    check_encoding(*t, glued);
    // Every byte that some piece, at any id, spells as a byte piece.
    std::string spelled;
    for (std::size_t i = 0; i < t->vocab_size(); ++i)
        if (const int b = kvfuzz::byte_piece_value(t->piece(static_cast<token_id>(i))); b >= 0)
            spelled += static_cast<char>(b);
    check_encoding(*t, spelled.substr(0, 48));
    return 0;
}
