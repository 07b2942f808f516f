// The llama2.c tokenizer: known encodings (from the independent encoder
// tools/llama2c_encode.py), round trips of arbitrary text and bytes, bad files.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/core/rng.hpp"
#include "kvdecode/io/llama2c_tokenizer.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;

TEST_CASE("aidreams tokenizer: pieces of known strings", "[io][tokenizer][shared]") {
    const auto path = kvtest::shared_file("models/aidreams_tok512.bin");
    if (!path) return;
    const auto tok = tokenizer::read_llama2c(*path, 512);
    REQUIRE(tok.vocab_size() == 512);
    using ids = std::vector<token_id>;
    REQUIRE(tok.encode("Hello world", false) == ids{429, 480, 375, 438, 437, 272, 284, 438, 441});
    REQUIRE(tok.encode("The moon is bright tonight.", false) ==
            ids{368, 430, 276, 437, 265, 429, 270, 294, 322, 305, 434, 263, 265, 334, 434, 448});
    REQUIRE(tok.encode("naïve café", false) == ids{324, 435, 198, 178, 339, 273, 435, 443, 198, 172});
    REQUIRE(tok.encode("a  b", false) == ids{262, 429, 294});
    REQUIRE(tok.encode("日本", false) == ids{429, 233, 154, 168, 233, 159, 175});
    REQUIRE(tok.encode("", true, true) == ids{1, 2});
    REQUIRE(tok.encode("a", true, true) == ids{1, 262, 2});
    REQUIRE(tok.piece(368) == " Th");
    REQUIRE(tok.decode(tok.encode("The moon is bright tonight.")) == "The moon is bright tonight.");
    REQUIRE(tok.decode_token(1, 368) == "Th");    // the dummy-prefix space goes after BOS
    REQUIRE(tok.decode_token(368, 368) == " Th");
    REQUIRE(tok.decode_token(5, 198) == "\xC3");  // a byte piece is its byte
    REQUIRE(tok.decode(std::vector<token_id>{1, 2}).empty());
    REQUIRE_THROWS_AS(tok.decode(std::vector<token_id>{512}), std::invalid_argument);
    REQUIRE_THROWS_AS(tok.piece(-1), std::invalid_argument);
}

TEST_CASE("aidreams tokenizer: arbitrary UTF-8 and bytes round-trip", "[io][tokenizer][shared]") {
    const auto path = kvtest::shared_file("models/aidreams_tok512.bin");
    if (!path) return;
    const auto tok = tokenizer::read_llama2c(*path);
    const char raw_bytes[] = "\0zero\xff\xfe bytes \x80 stray";
    const std::vector<std::string> texts = {
        " leading space", "trailing space ", "\n\nnew lines\tand tabs", "<s> and </s> are text here, <0x41> too",
        "Ünïcödé: 日本語, emoji 😀, Ελληνικά", std::string(raw_bytes, sizeof raw_bytes - 1), "   "};
    for (const auto& text : texts) {
        CAPTURE(text);
        const auto ids = tok.encode(text);
        for (token_id id : ids) REQUIRE((id >= 0 && std::size_t(id) < tok.vocab_size()));
        REQUIRE(tok.decode(ids) == text);
    }
    kvdecode::rng gen(7);
    for (int trial = 0; trial < 200; ++trial) {
        std::string bytes(gen.next_u64() % 40, '\0');
        for (char& b : bytes) b = static_cast<char>(gen.next_u64() & 0xff);
        CAPTURE(trial);
        REQUIRE(tok.decode(tok.encode(bytes)) == bytes);
    }
}

TEST_CASE("broken tokenizer files throw model_format_error", "[io][tokenizer][errors]") {
    const auto dir = std::filesystem::temp_directory_path() / "kvdecode_tokenizer_test";
    std::filesystem::create_directories(dir);
    auto write = [&](const std::string& name, const std::string& bytes) {
        const auto p = dir / name;
        std::ofstream(p, std::ios::binary) << bytes;
        return p;
    };
    auto piece = [](float score, const std::string& text) {
        std::string out(8, '\0');
        const auto n = static_cast<std::int32_t>(text.size());
        std::memcpy(out.data(), &score, 4);
        std::memcpy(out.data() + 4, &n, 4);
        return out + text;
    };
    auto int32 = [](std::int32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); };
    const std::string good = int32(8) + piece(0, "<unk>") + piece(0, "<s>") + piece(0, "</s>") + piece(-1, "ab");
    REQUIRE(tokenizer::read_llama2c(write("good.bin", good)).vocab_size() == 4);

    auto expect = [&](const std::filesystem::path& p, std::optional<std::size_t> vocab, const std::string& field) {
        try {
            tokenizer::read_llama2c(p, vocab);
            FAIL("no exception");
        } catch (const model_format_error& e) {
            CAPTURE(e.what());
            REQUIRE(e.field() == field);
            REQUIRE_THAT(e.what(), Catch::Contains(p.string()));
        }
    };
    expect(write("empty.bin", ""), std::nullopt, "max_token_length");
    expect(write("zero_max.bin", int32(0)), std::nullopt, "max_token_length");
    expect(write("truncated.bin", good.substr(0, good.size() - 1)), std::nullopt, "piece 3 bytes");
    expect(write("long_piece.bin", int32(1) + piece(0, "<unk>")), std::nullopt, "piece 0 length");
    expect(write("negative.bin", int32(4) + std::string(4, '\0') + int32(-3)), std::nullopt, "piece 0 length");
    expect(write("good.bin", good), 5, "piece 4 score");       // fewer pieces than the model's vocabulary
    expect(write("good.bin", good), 3, "file size");           // more pieces than the model's vocabulary
    expect(write("tiny.bin", int32(8) + piece(0, "<unk>")), std::nullopt, "vocabulary");
    // 15 bytes claiming a piece of 2^31 - 1 bytes: the claim is checked against the file first.
    const std::string claims_2gib = int32(INT32_MAX) + std::string(4, '\0') + int32(INT32_MAX) + "abc";
    REQUIRE(claims_2gib.size() == 15);
    expect(write("claims_2gib.bin", claims_2gib), std::nullopt, "piece 0 bytes");
    REQUIRE_THROWS_WITH(tokenizer::read_llama2c(write("claims_2gib.bin", claims_2gib)),
                        Catch::Contains("expected 2147483647 bytes at offset 12, found the file ends after 3"));
    expect(write("good.bin", good), std::size_t{1} << 40, "piece 4 score");  // a vocabulary no file could hold
    expect(dir, std::nullopt, "file");
    std::filesystem::remove_all(dir);
}

namespace {

std::vector<std::byte> tokenizer_bytes(std::int32_t max_length, const std::vector<std::string>& pieces) {
    std::vector<std::byte> out;
    auto put = [&](const void* p, std::size_t n) {
        const auto* b = static_cast<const std::byte*>(p);
        out.insert(out.end(), b, b + n);
    };
    put(&max_length, 4);
    for (const auto& p : pieces) {
        const float score = -static_cast<float>(out.size());
        const auto n = static_cast<std::int32_t>(p.size());
        put(&score, 4);
        put(&n, 4);
        put(p.data(), p.size());
    }
    return out;
}

}  // namespace

TEST_CASE("a tokenizer in memory reads as the same file does", "[io][tokenizer]") {
    const std::filesystem::path shipped = KVDECODE_MODELS_DIR "/kjv_tok1024.bin";
    const std::string text = kvtest::read_text(shipped);
    const auto bytes = std::as_bytes(std::span(text));
    const auto from_file = tokenizer::read_llama2c(shipped, 1024);
    const auto from_memory = tokenizer::read_llama2c(bytes, 1024);
    REQUIRE(from_memory.vocab_size() == 1024);
    for (token_id id = 0; id < 1024; ++id) {
        REQUIRE(from_memory.piece(id) == from_file.piece(id));
        REQUIRE(from_memory.score(id) == from_file.score(id));
    }
    const std::string verse = "In the beginning God created the heaven and the earth.";
    REQUIRE(from_memory.encode(verse) == from_file.encode(verse));
    REQUIRE(tokenizer::read_llama2c(bytes).vocab_size() == 1024);

    try {
        tokenizer::read_llama2c(bytes.first(bytes.size() - 1), std::nullopt, "kjv upload");
        FAIL("no exception");
    } catch (const model_format_error& e) {
        CAPTURE(e.what());
        REQUIRE(e.file() == "kjv upload");
        REQUIRE(e.field() == "piece 1023 bytes");
    }
    REQUIRE_THROWS_AS(tokenizer::read_llama2c(std::span<const std::byte>{}), model_format_error);
}

// Found by tests/fuzz/llama2c_tokenizer_fuzz.cpp: with "<0x41>" as the BOS piece,
// "A" encoded to BOS and decoded to nothing.
TEST_CASE("text never encodes to <unk>, BOS or EOS, whatever their pieces spell", "[io][tokenizer]") {
    const auto tok = tokenizer::read_llama2c(tokenizer_bytes(8, {"<0x41>", "<0x20>", "<0x42>", "<0x41>", "<0x20>"}));
    REQUIRE(tok.encode("A", false) == std::vector<token_id>{4, 3});
    REQUIRE(tok.decode(tok.encode("A A")) == "A A");
    REQUIRE_THROWS_AS(tok.encode("B"), std::invalid_argument);  // only EOS spells <0x42>: no byte piece for it
}
