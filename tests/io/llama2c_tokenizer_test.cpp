// The llama2.c tokenizer: known encodings (from the independent encoder
// tools/llama2c_encode.py), the O(n log n) encoder against the quadratic one it
// replaced, round trips of arbitrary text and bytes, special ids, bad files.

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unistd.h>
#include <utility>
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

// The encoder as it was before the priority queue (a quadratic scan per merge),
// kept as the oracle of the O(n log n) one and written again from the tokenizer's
// public pieces and scores, with the same rules: one unit per UTF-8 character (byte
// pieces for what has no piece), a dummy-prefix space, then merge the adjacent pair
// whose concatenation is an ordinary piece of the highest score, leftmost on ties.
// Ordinary pieces are non-empty, not "<0xXX>", and not ids 0..2; the first id wins.
class reference_encoder {
public:
    explicit reference_encoder(const tokenizer& tok) : tok_(tok) {
        byte_piece_.fill(-1);
        is_byte_.assign(tok.vocab_size(), false);
        for (std::size_t i = tokenizer::eos_id + 1; i < tok.vocab_size(); ++i) {
            const std::string p(tok.piece(static_cast<token_id>(i)));
            const int b = byte_value(p);
            if (b >= 0) {
                is_byte_[i] = true;
                if (byte_piece_[static_cast<std::size_t>(b)] < 0) byte_piece_[static_cast<std::size_t>(b)] = static_cast<token_id>(i);
            } else if (!p.empty()) {
                lookup_.emplace(p, static_cast<token_id>(i));
            }
        }
    }

    std::vector<token_id> encode(const std::string& text) const {
        std::vector<token_id> ids;
        if (text.empty()) return ids;
        add_unit(" ", ids);
        for (std::size_t i = 0; i < text.size();) {
            const std::size_t n = unit_length(text, i);
            add_unit(text.substr(i, n), ids);
            i += n;
        }
        for (;;) {
            std::size_t best = ids.size();
            token_id best_id = -1;
            for (std::size_t i = 0; i + 1 < ids.size(); ++i) {
                if (is_byte_[std::size_t(ids[i])] || is_byte_[std::size_t(ids[i + 1])]) continue;
                const auto it = lookup_.find(std::string(tok_.piece(ids[i])) + std::string(tok_.piece(ids[i + 1])));
                if (it == lookup_.end()) continue;
                if (best == ids.size() || tok_.score(it->second) > tok_.score(best_id)) {
                    best = i;
                    best_id = it->second;
                }
            }
            if (best == ids.size()) return ids;
            ids[best] = best_id;
            ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best) + 1);
        }
    }

private:
    static int byte_value(const std::string& p) {
        if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>' || !std::isxdigit(static_cast<unsigned char>(p[3])) ||
            !std::isxdigit(static_cast<unsigned char>(p[4])))
            return -1;
        return std::stoi(p.substr(3, 2), nullptr, 16);
    }

    // A whole UTF-8 character (2 to 4 bytes, continuation bytes present), else one byte.
    static std::size_t unit_length(const std::string& s, std::size_t i) {
        const auto lead = static_cast<unsigned char>(s[i]);
        std::size_t n = 1;
        if (lead >= 0xC0 && lead < 0xE0) n = 2;
        else if (lead >= 0xE0 && lead < 0xF0) n = 3;
        else if (lead >= 0xF0 && lead < 0xF8) n = 4;
        if (i + n > s.size()) return 1;
        for (std::size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
        return n;
    }

    void add_unit(const std::string& unit, std::vector<token_id>& ids) const {
        if (const auto it = lookup_.find(unit); it != lookup_.end()) {
            ids.push_back(it->second);
            return;
        }
        for (unsigned char b : unit) {
            if (byte_piece_[b] < 0) throw std::invalid_argument("reference_encoder: no piece for byte " + std::to_string(b));
            ids.push_back(byte_piece_[b]);
        }
    }

    const tokenizer& tok_;
    std::map<std::string, token_id> lookup_;
    std::array<token_id, 256> byte_piece_{};
    std::vector<bool> is_byte_;
};

struct temp_folder {
    std::filesystem::path path;
    explicit temp_folder(const std::string& name)
        : path(std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()))) {
        std::filesystem::create_directories(path);
    }
    ~temp_folder() { std::filesystem::remove_all(path); }
};

// Writes a llama2.c tokenizer file of (score, piece) entries.
std::filesystem::path write_tokenizer(const std::filesystem::path& p, const std::vector<std::pair<float, std::string>>& pieces) {
    std::int32_t max_length = 1;
    for (const auto& [score, text] : pieces) max_length = std::max(max_length, static_cast<std::int32_t>(text.size()));
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(&max_length), 4);
    for (const auto& [score, text] : pieces) {
        const auto n = static_cast<std::int32_t>(text.size());
        out.write(reinterpret_cast<const char*>(&score), 4);
        out.write(reinterpret_cast<const char*>(&n), 4);
        out.write(text.data(), n);
    }
    return p;
}

std::string byte_piece(int b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    return buf;
}

// Text made of the tokenizer's own pieces (so that long merges happen), spaces,
// punctuation, multi-byte characters and now and then a random byte.
std::string random_text(const tokenizer& tok, kvdecode::rng& gen, std::size_t words) {
    static const char* extras[] = {" ", "  ", ", ", ". ", "\n", "é", "日本", "😀", "'", "-"};
    std::string text;
    for (std::size_t w = 0; w < words; ++w) {
        const std::uint64_t r = gen.next_u64() % 100;
        if (r < 70) {
            const auto id = static_cast<token_id>(3 + gen.next_u64() % (tok.vocab_size() - 3));
            text += tok.piece(id);
        } else if (r < 97) {
            text += extras[gen.next_u64() % std::size(extras)];
        } else {
            text += static_cast<char>(gen.next_u64() & 0xff);
        }
        if (gen.next_u64() % 3 == 0) text += ' ';
    }
    return text;
}

// Paragraphs of real text (split at blank lines, at most max_bytes each).
std::vector<std::string> paragraphs(const std::string& text, std::size_t max_bytes) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t end = text.find("\n\n", start);
        end = end == std::string::npos ? text.size() : end + 2;
        for (std::size_t i = start; i < end; i += max_bytes) out.push_back(text.substr(i, std::min(max_bytes, end - i)));
        start = end;
    }
    return out;
}

void require_same_as_reference(const tokenizer& tok, const reference_encoder& ref, const std::string& text) {
    CAPTURE(text);
    const auto ids = tok.encode(text, false);
    REQUIRE(ids == ref.encode(text));
    for (token_id id : ids) REQUIRE(id > tokenizer::eos_id);
    REQUIRE(tok.decode(tok.encode(text)) == text);
}

}  // namespace

TEST_CASE("the encoder makes the reference's merges on random and real texts", "[io][tokenizer]") {
    const std::string models = KVDECODE_MODELS_DIR;
    const auto tok = tokenizer::read_llama2c(models + "/kjv_tok1024.bin");
    const reference_encoder ref(tok);
    kvdecode::rng gen(11);
    for (int trial = 0; trial < 300; ++trial) require_same_as_reference(tok, ref, random_text(tok, gen, gen.next_u64() % 120));
    std::size_t real = 0;
    for (const char* file : {"/README.md", "/../README.md"}) {
        const std::string text = kvtest::read_text(models + file);
        if (text.empty()) continue;
        for (const auto& p : paragraphs(text, 500)) require_same_as_reference(tok, ref, p), ++real;
    }
    CHECK(real > 20);
    const auto aidreams = kvtest::shared_file("models/aidreams_tok512.bin");
    if (!aidreams) return;
    const auto tok2 = tokenizer::read_llama2c(*aidreams);
    const reference_encoder ref2(tok2);
    for (int trial = 0; trial < 300; ++trial) require_same_as_reference(tok2, ref2, random_text(tok2, gen, gen.next_u64() % 120));
    for (const char* file : {"/README.md", "/../README.md"})
        for (const auto& p : paragraphs(kvtest::read_text(models + file), 500)) require_same_as_reference(tok2, ref2, p);
}

TEST_CASE("the encoder breaks ties like the reference (highest score, then leftmost)", "[io][tokenizer]") {
    // Small alphabets, many pieces, few distinct scores: most merge decisions are ties.
    temp_folder dir("kvdecode_tokenizer_ties");
    kvdecode::rng gen(5);
    const std::vector<std::string> alphabet = {"a", "b", "c", " ", "é"};
    for (int vocab = 0; vocab < 20; ++vocab) {
        std::vector<std::pair<float, std::string>> pieces = {{0, "<unk>"}, {0, "<s>"}, {0, "</s>"}};
        for (int b = 0; b < 256; ++b) pieces.emplace_back(0.0f, byte_piece(b));
        for (const auto& ch : alphabet) pieces.emplace_back(0.0f, ch);
        std::set<std::string> seen;
        for (int i = 0; i < 60; ++i) {
            std::string p;
            for (std::uint64_t len = 2 + gen.next_u64() % 4; p.size() < len;) p += alphabet[gen.next_u64() % 4];
            if (seen.insert(p).second) pieces.emplace_back(-static_cast<float>(gen.next_u64() % 3), p);
        }
        const auto tok = tokenizer::read_llama2c(write_tokenizer(dir.path / "ties.bin", pieces));
        const reference_encoder ref(tok);
        CAPTURE(vocab);
        for (int trial = 0; trial < 40; ++trial) {
            std::string text;
            for (std::uint64_t n = gen.next_u64() % 80; n > 0; --n) text += alphabet[gen.next_u64() % alphabet.size()];
            require_same_as_reference(tok, ref, text);
        }
        require_same_as_reference(tok, ref, std::string(101, 'a'));  // a run: every pair ties
    }
}

TEST_CASE("a text of 8,000 words encodes and round-trips", "[io][tokenizer]") {
    // 8,000 words took 28 s with the quadratic scan; no timing here (the benchmark
    // measures it), but a text this long must encode and round-trip.
    const auto tok = tokenizer::read_llama2c(std::string(KVDECODE_MODELS_DIR) + "/kjv_tok1024.bin");
    kvdecode::rng gen(3);
    const std::string text = random_text(tok, gen, 8000);
    REQUIRE(tok.decode(tok.encode(text)) == text);
}

TEST_CASE("byte pieces at ids 0, 1, 2 stay special and every byte round-trips", "[io][tokenizer]") {
    temp_folder dir("kvdecode_tokenizer_special");
    // "<0x42>" as BOS would have encoded 'B' as BOS, which decodes to nothing.
    std::vector<std::pair<float, std::string>> pieces = {{0, "<0x41>"}, {0, "<0x42>"}, {0, "<0x43>"}};
    for (int b = 0; b < 256; ++b) pieces.emplace_back(0.0f, byte_piece(b));
    pieces.emplace_back(-1.0f, "AB");
    const auto tok = tokenizer::read_llama2c(write_tokenizer(dir.path / "special.bin", pieces));
    const reference_encoder ref(tok);
    REQUIRE(tok.encode("B", false) == std::vector<token_id>{3 + 0x20, 3 + 0x42});
    REQUIRE(tok.decode(std::vector<token_id>{1, 2}).empty());
    REQUIRE(tok.decode_token(5, 0) == "<0x41>");  // <unk> is its text, not a byte
    kvdecode::rng gen(9);
    std::string all(256, '\0');
    for (int b = 0; b < 256; ++b) all[std::size_t(b)] = static_cast<char>(b);
    require_same_as_reference(tok, ref, all);
    for (int trial = 0; trial < 100; ++trial) {
        std::string bytes(gen.next_u64() % 30, '\0');
        for (char& b : bytes) b = "ABC\x41\x42\x43\xff"[gen.next_u64() % 7];
        require_same_as_reference(tok, ref, bytes);
    }
    // A byte whose only piece is a special id cannot be encoded: an error, not a wrong id.
    std::vector<std::pair<float, std::string>> only = {{0, "<unk>"}, {0, "<0x42>"}, {0, "</s>"}, {0, " "}, {0, "A"}};
    const auto tok2 = tokenizer::read_llama2c(write_tokenizer(dir.path / "only_special.bin", only));
    REQUIRE(tok2.decode(tok2.encode("AA")) == "AA");
    REQUIRE_THROWS_WITH(tok2.encode("B"), Catch::Contains("cannot encode byte 66"));
}

TEST_CASE("a tokenizer with a NaN score is a format error", "[io][tokenizer][errors]") {
    temp_folder dir("kvdecode_tokenizer_nan");
    const auto p = write_tokenizer(dir.path / "nan.bin", {{0, "<unk>"}, {0, "<s>"}, {0, "</s>"}, {std::nanf(""), "ab"}});
    try {
        tokenizer::read_llama2c(p);
        FAIL("no exception");
    } catch (const model_format_error& e) {
        REQUIRE(e.field() == "piece 3 score");
    }
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
