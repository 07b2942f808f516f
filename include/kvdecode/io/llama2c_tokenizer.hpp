#pragma once
// The llama2.c tokenizer format: int32 max_token_length, then per piece: float32
// score, int32 byte length, bytes. Ids 0, 1, 2 are <unk>, BOS and EOS; pieces
// "<0xXX>" are byte fallbacks.
//
// The file becomes a tokenizer/sentencepiece.hpp tokenizer with llama2.c's rules, the
// token types llama.cpp's llama2.c converter gives (id 0 unknown, 1 and 2 control,
// "<0xXX>" pieces above them byte, the rest normal), spaces spelled ' ' and a space
// prefix before non-empty text: BPE by score, the leftmost pair on ties, special and
// byte pieces never produced by merging and ids 0, 1, 2 never byte pieces (even when
// spelled "<0xXX>"), so any text, any bytes, decode back to themselves. On the
// fixtures' prompts llama.cpp gives the same ids for the converted GGUF file.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kvdecode/io/detail/binary_file.hpp"
#include "kvdecode/core/model_config.hpp"
#include "kvdecode/tokenizer/sentencepiece.hpp"

namespace kvdecode {

namespace detail {

// The reader behind both entry points: the source differs, the checks do not.
inline sentencepiece_tokenizer read_llama2c_tokenizer(binary_file& file, std::optional<std::size_t> vocab_size) {
    sentencepiece_vocab v;
    const auto max_length = file.read<std::int32_t>("max_token_length");
    if (max_length <= 0) file.fail("max_token_length", "a positive value", std::to_string(max_length));
    // Every piece takes at least 8 bytes, so the file bounds the count; a claimed
    // vocabulary the file cannot hold fails below at the first missing piece.
    constexpr std::size_t min_piece_bytes = sizeof(float) + sizeof(std::int32_t);
    if (vocab_size && *vocab_size <= file.remaining() / min_piece_bytes) {
        v.pieces.reserve(*vocab_size);
        v.scores.reserve(*vocab_size);
    }
    while (vocab_size ? v.pieces.size() < *vocab_size : file.remaining() > 0) {
        const std::string id = "piece " + std::to_string(v.pieces.size());
        const float score = file.read<float>(id + " score");
        if (std::isnan(score)) file.fail(id + " score", "a number", "NaN");  // merges are ordered by score
        const auto length = file.read<std::int32_t>(id + " length");
        if (length < 0 || length > max_length)
            file.fail(id + " length", "0 to max_token_length (" + std::to_string(max_length) + ")", std::to_string(length));
        v.pieces.push_back(file.read_string(static_cast<std::size_t>(length), id + " bytes"));
        v.scores.push_back(score);
    }
    if (file.remaining() != 0)
        file.fail("file size", "no data after " + std::to_string(v.pieces.size()) + " pieces",
                  std::to_string(file.remaining()) + " extra bytes");
    constexpr token_id eos = sentencepiece_tokenizer::eos_id;
    if (v.pieces.size() <= static_cast<std::size_t>(eos))
        file.fail("vocabulary", "at least <unk>, BOS and EOS", std::to_string(v.pieces.size()) + " pieces");
    v.types.resize(v.pieces.size(), token_type::normal);
    v.types[sentencepiece_tokenizer::unk_id] = token_type::unknown;
    v.types[sentencepiece_tokenizer::bos_id] = token_type::control;
    v.types[sentencepiece_tokenizer::eos_id] = token_type::control;
    for (std::size_t i = eos + 1; i < v.pieces.size(); ++i) {
        const std::string& p = v.pieces[i];
        const auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
        if (p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>' && hex(p[3]) && hex(p[4])) v.types[i] = token_type::byte;
    }
    v.unk = sentencepiece_tokenizer::unk_id;
    v.bos = sentencepiece_tokenizer::bos_id;
    v.eos = eos;
    return sentencepiece_tokenizer(std::move(v), {.add_bos = true,
                                                  .add_eos = false,
                                                  .add_space_prefix = true,
                                                  .escaped_spaces = false,
                                                  .rules = sentencepiece_rules::llama2c});
}

}  // namespace detail

// Reads a llama2.c tokenizer file. With vocab_size (the model's), exactly that many
// pieces must be present; without it, pieces are read to the end of file.
inline sentencepiece_tokenizer read_llama2c_tokenizer(const std::filesystem::path& path,
                                                      std::optional<std::size_t> vocab_size = std::nullopt) {
    detail::binary_file file(path);
    return detail::read_llama2c_tokenizer(file, vocab_size);
}

// The same from a tokenizer file already in memory; `name` stands for the file in errors.
inline sentencepiece_tokenizer read_llama2c_tokenizer(std::span<const std::byte> bytes,
                                                      std::optional<std::size_t> vocab_size = std::nullopt,
                                                      std::string name = "<memory>") {
    detail::binary_file file(bytes, std::move(name));
    return detail::read_llama2c_tokenizer(file, vocab_size);
}

// The name the CLI, tests and fuzzers have used: a sentencepiece_tokenizer with the
// llama2.c readers as members (tokenizer::read_llama2c(...)).
class tokenizer : public sentencepiece_tokenizer {
public:
    tokenizer(sentencepiece_tokenizer t) : sentencepiece_tokenizer(std::move(t)) {}  // NOLINT: implicit on purpose

    static tokenizer read_llama2c(const std::filesystem::path& path, std::optional<std::size_t> vocab_size = std::nullopt) {
        return read_llama2c_tokenizer(path, vocab_size);
    }
    static tokenizer read_llama2c(std::span<const std::byte> bytes, std::optional<std::size_t> vocab_size = std::nullopt,
                                  std::string name = "<memory>") {
        return read_llama2c_tokenizer(bytes, vocab_size, std::move(name));
    }
};

}  // namespace kvdecode
