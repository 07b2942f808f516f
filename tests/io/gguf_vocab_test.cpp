// GGUF's `llama` vocabulary against llama.cpp: for every fixture file whose
// tokenizer.ggml.model is "llama", encode(prompt) is llama.cpp's prompt_ids and the
// generated ids decode to its text; the converted KJV vocabulary tokenizes as the
// llama2.c file it came from; special tokens parsed or not; gpt2 vocabularies (read
// by io/gguf_bpe_vocab.hpp) and broken metadata fail with messages that name the key.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "kvdecode/core/rng.hpp"
#include "kvdecode/io/gguf.hpp"
#include "kvdecode/io/gguf_vocab.hpp"
#include "kvdecode/io/llama2c_tokenizer.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;
using ids = std::vector<token_id>;

namespace {

const std::string mark = "\xE2\x96\x81";  // U+2581

struct fixture_counts {
    int encoded = 0, decoded = 0, not_llama = 0, missing = 0;
};

// Checks every result of one llamacpp_greedy.json; the folder holds its files.
void check_greedy_file(const std::filesystem::path& json_path, fixture_counts& counts) {
    const auto doc = nlohmann::json::parse(kvtest::read_text(json_path));
    std::map<std::string, std::optional<sentencepiece_tokenizer>> vocabs;  // nullopt: not a llama vocabulary
    for (const auto& r : doc.at("results")) {
        const std::string file = r.at("file").get<std::string>();
        const auto path = json_path.parent_path() / file;
        if (!std::filesystem::exists(path)) {  // rand256-f32.gguf is described, not kept
            ++counts.missing;
            continue;
        }
        auto found = vocabs.find(file);
        if (found == vocabs.end()) {
            const auto gguf = gguf_file::open(path);
            std::optional<sentencepiece_tokenizer> tok;
            if (gguf.string("tokenizer.ggml.model") == "llama") tok = llama_vocab_from_gguf(gguf);
            found = vocabs.emplace(file, std::move(tok)).first;
        }
        if (!found->second) {
            ++counts.not_llama;
            continue;
        }
        const sentencepiece_tokenizer& tok = *found->second;
        const std::string prompt = r.at("prompt").get<std::string>();
        CAPTURE(file, prompt);
        REQUIRE(tok.encode(prompt) == r.at("prompt_ids").get<ids>());
        ++counts.encoded;
        // `text` is llama.cpp's pieces of the generated ids (special = false), U+FFFD where not UTF-8.
        const std::string text = r.at("text").get<std::string>();
        if (text.find("\xEF\xBF\xBD") != std::string::npos) continue;
        REQUIRE(tok.decode(r.at("ids").get<ids>()) == text);
        ++counts.decoded;
    }
}

}  // namespace

TEST_CASE("GGUF llama vocabularies encode every fixture prompt as llama.cpp did", "[io][gguf][tokenizer][shared]") {
    const auto kjv_json = kvtest::shared_file("fixtures/gguf/llamacpp_greedy.json");
    const auto hf_json = kvtest::shared_file("fixtures/gguf/from-hf/llamacpp_greedy.json");
    if (!kjv_json || !hf_json) return;
    fixture_counts counts;
    check_greedy_file(*kjv_json, counts);
    check_greedy_file(*hf_json, counts);
    // 12 KJV/rand256 files x 6 prompts, 4 llama-tiny files x 3; the 6 qwen2/smollm files are gpt2.
    CHECK(counts.encoded == 12 * 6 + 4 * 3);
    CHECK(counts.missing == 6);
    CHECK(counts.not_llama == 2 * 4 + 4 * 3);
    CHECK(counts.decoded > 60);
}

TEST_CASE("the llama-tiny fox prompt: equal scores merge left to right, as llama.cpp does", "[io][gguf][tokenizer][shared]") {
    const auto path = kvtest::shared_file("fixtures/gguf/from-hf/llama-tiny-f32-f32.gguf");
    if (!path) return;
    const auto tok = llama_vocab_from_gguf(gguf_file::open(*path));
    for (std::size_t i = 0; i < tok.vocab_size(); ++i) REQUIRE(tok.score(static_cast<token_id>(i)) == -1000.0f);
    // llama.cpp's ids (transformers' BPE gives 1, 511, 1258, 302, 526, 682, 606, ...).
    const auto fox = tok.encode("The quick brown fox jumps over the lazy dog.");
    REQUIRE(ids(fox.begin(), fox.begin() + 7) == ids{1, 511, 1258, 630, 304, 801, 782});
    REQUIRE(tok.decode(fox) == "The quick brown fox jumps over the lazy dog.");
}

TEST_CASE("the converted KJV vocabulary tokenizes as the llama2.c file it came from", "[io][gguf][tokenizer][shared]") {
    const auto path = kvtest::shared_file("fixtures/gguf/kjv-f32.gguf");
    if (!path) return;
    const auto gguf = gguf_file::open(*path);
    const auto tok = llama_vocab_from_gguf(gguf);
    const auto llama2c = tokenizer::read_llama2c(std::string(KVDECODE_MODELS_DIR) + "/kjv_tok1024.bin", 1024);
    REQUIRE(tok.vocab_size() == llama2c.vocab_size());
    REQUIRE(tok.bos() == 1);
    REQUIRE(tok.eos() == 2);
    REQUIRE(tok.unk() == token_id{0});
    REQUIRE(tok.end_of_generation() == ids{2});
    for (token_id id = 0; id < static_cast<token_id>(tok.vocab_size()); ++id) {
        std::string piece(llama2c.piece(id));
        for (std::size_t at; (at = piece.find(' ')) != std::string::npos;) piece.replace(at, 1, mark);
        if (id > 2) REQUIRE(tok.piece(id) == piece);  // llama2.c's BOS and EOS read "\n<s>\n", "\n</s>\n"; the converter's "<s>", "</s>"
        REQUIRE(tok.score(id) == llama2c.score(id));
        REQUIRE(tok.type(id) == llama2c.type(id));
    }
    // llama.cpp's prompt ids are also the llama2.c tokenizer's (the fixture README's claim, kept true).
    if (const auto json = kvtest::shared_file("fixtures/gguf/llamacpp_greedy.json")) {
        int prompts = 0;
        const auto doc = nlohmann::json::parse(kvtest::read_text(*json));
        for (const auto& r : doc.at("results"))
            if (const auto file = r.at("file").get<std::string>(); file == "kjv-f32.gguf" || file == "rand256-f32.gguf") {
                REQUIRE(llama2c.encode(r.at("prompt").get<std::string>()) == r.at("prompt_ids").get<ids>());
                ++prompts;
            }
        CHECK(prompts == 12);
    }
    // On UTF-8 text the two rule sets agree: words of the vocabulary's own pieces,
    // punctuation, spaces, characters outside it.
    kvdecode::rng gen(23);
    const char* extras[] = {" ", "  ", ", ", ". ", "\n", "\xC3\xA9", "\xE6\x97\xA5\xE6\x9C\xAC", "\xF0\x9F\x98\x80", "'", "\t"};
    for (int trial = 0; trial < 300; ++trial) {
        std::string text;
        for (std::uint64_t w = gen.next_u64() % 60; w > 0; --w) {
            if (gen.next_u64() % 10 < 7) text += llama2c.piece(static_cast<token_id>(3 + gen.next_u64() % 1021));
            else text += extras[gen.next_u64() % std::size(extras)];
        }
        CAPTURE(text);
        REQUIRE(tok.encode(text) == llama2c.encode(text));
        REQUIRE(tok.decode(tok.encode(text)) == text);
    }
}

TEST_CASE("special token texts become tokens only with parse_special", "[io][gguf][tokenizer][shared]") {
    const auto path = kvtest::shared_file("fixtures/gguf/from-hf/llama-tiny-f32-f32.gguf");
    if (!path) return;
    const auto tok = llama_vocab_from_gguf(gguf_file::open(*path));
    REQUIRE(tok.type(1) == token_type::control);
    REQUIRE(tok.type(2) == token_type::control);
    REQUIRE(tok.type(0) == token_type::control);  // this converter marks <unk> control
    const std::string text = "Hello</s> world<s>";
    // As text: pieces of '<', '/', 's', '>', and no id below 3 after BOS.
    const auto plain = tok.encode(text);
    REQUIRE(plain.front() == 1);
    for (std::size_t i = 1; i < plain.size(); ++i) REQUIRE(plain[i] > 2);
    REQUIRE(tok.decode(plain) == text);
    // Parsed: EOS and BOS where their texts were, a space prefix on each text after them.
    const auto parsed = tok.encode(text, {.parse_special = true});
    ids expected = tok.encode("Hello");
    expected.push_back(2);
    const auto world = tok.encode(" world", {.add_special = false});
    expected.insert(expected.end(), world.begin(), world.end());
    expected.push_back(1);
    REQUIRE(parsed == expected);
    REQUIRE(tok.decode(parsed) == "Hello world");
    REQUIRE(tok.decode(parsed, {.special = true}) == "<s>Hello</s> world<s>");
    REQUIRE(tok.encode("<unk>", {.parse_special = true}) == ids{1, 0});
}

TEST_CASE("gpt2 vocabularies are refused here and pointed to their reader", "[io][gguf][tokenizer][shared]") {
    for (const char* name : {"fixtures/gguf/from-hf/qwen2-tiny-bf16-f32.gguf", "fixtures/gguf/from-hf/smollm-tiny-f16-q8_0.gguf"}) {
        const auto path = kvtest::shared_file(name);
        if (!path) return;
        CAPTURE(name);
        try {
            llama_vocab_from_gguf(gguf_file::open(*path));
            FAIL("no exception");
        } catch (const model_format_error& e) {
            REQUIRE(e.field() == "key 'tokenizer.ggml.model'");
            REQUIRE_THAT(e.what(), Catch::Contains("a byte-level BPE vocabulary, read by gpt2_vocab_from_gguf"));
            REQUIRE_THAT(e.what(), Catch::Contains(path->string()));
        }
    }
}

namespace {

// GGUF metadata written byte by byte (version 3, no tensors), so each test can leave
// out or break one key.
class gguf_builder {
public:
    enum : std::uint32_t { u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9 };

    gguf_builder& str(std::string_view key, std::string_view value) {
        begin(key, string);
        put_string(value);
        return *this;
    }
    gguf_builder& uint(std::string_view key, std::uint32_t value) {
        begin(key, u32);
        put(value);
        return *this;
    }
    gguf_builder& flag(std::string_view key, bool value) {
        begin(key, boolean);
        put(static_cast<std::uint8_t>(value));
        return *this;
    }
    gguf_builder& strings(std::string_view key, const std::vector<std::string>& values) {
        begin_array(key, string, values.size());
        for (const auto& v : values) put_string(v);
        return *this;
    }
    gguf_builder& floats(std::string_view key, const std::vector<float>& values) {
        begin_array(key, f32, values.size());
        for (float v : values) put(v);
        return *this;
    }
    gguf_builder& ints(std::string_view key, const std::vector<std::int32_t>& values) {
        begin_array(key, i32, values.size());
        for (std::int32_t v : values) put(v);
        return *this;
    }

    std::vector<std::byte> bytes() const {
        std::vector<std::byte> out;
        const auto append = [&](const void* p, std::size_t n) {
            const auto* b = static_cast<const std::byte*>(p);
            out.insert(out.end(), b, b + n);
        };
        append("GGUF", 4);
        const std::uint32_t version = 3;
        const std::uint64_t tensors = 0;
        append(&version, 4);
        append(&tensors, 8);
        append(&count_, 8);
        out.insert(out.end(), kv_.begin(), kv_.end());
        out.resize((out.size() + 31) / 32 * 32, std::byte{0});  // the (empty) data section, aligned
        return out;
    }

private:
    template <class T>
    void put(T v) {
        const auto* b = reinterpret_cast<const std::byte*>(&v);
        kv_.insert(kv_.end(), b, b + sizeof v);
    }
    void put_string(std::string_view s) {
        put(static_cast<std::uint64_t>(s.size()));
        for (char c : s) kv_.push_back(static_cast<std::byte>(c));
    }
    void begin(std::string_view key, std::uint32_t type) {
        put_string(key);
        put(type);
        ++count_;
    }
    void begin_array(std::string_view key, std::uint32_t type, std::size_t n) {
        begin(key, array);
        put(type);
        put(static_cast<std::uint64_t>(n));
    }

    std::vector<std::byte> kv_;
    std::uint64_t count_ = 0;
};

// A small valid vocabulary; `skip` leaves out one key.
gguf_builder small_vocab(std::string_view skip = "") {
    const std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "<0x41>", mark, "a", "b", mark + "a", "ab", "<u>"};
    gguf_builder g;
    const auto unless = [&](std::string_view key) { return key != skip; };
    g.str("general.architecture", "llama");
    if (unless("tokenizer.ggml.model")) g.str("tokenizer.ggml.model", "llama");
    if (unless("tokenizer.ggml.tokens")) g.strings("tokenizer.ggml.tokens", tokens);
    if (unless("tokenizer.ggml.scores")) g.floats("tokenizer.ggml.scores", {0, 0, 0, 0, -1, -2, -2, -3, -1, 0});
    if (unless("tokenizer.ggml.token_type")) g.ints("tokenizer.ggml.token_type", {2, 3, 3, 6, 1, 1, 1, 1, 1, 4});
    return g;
}

void expect_error(const gguf_builder& g, const std::string& field, const std::string& message) {
    const auto bytes = g.bytes();
    CAPTURE(field, message);
    try {
        llama_vocab_from_gguf(gguf_file::from_memory(bytes, "crafted.gguf"));
        FAIL("no exception");
    } catch (const model_format_error& e) {
        CAPTURE(e.what());
        REQUIRE(e.file() == "crafted.gguf");
        REQUIRE(e.field() == field);
        REQUIRE_THAT(e.what(), Catch::Contains(message));
    }
}

}  // namespace

TEST_CASE("a small GGUF vocabulary: defaults, options and its keys", "[io][gguf][tokenizer]") {
    const auto bytes = small_vocab().bytes();
    const auto tok = llama_vocab_from_gguf(gguf_file::from_memory(bytes, "small.gguf"));
    REQUIRE(tok.vocab_size() == 10);
    REQUIRE((tok.bos() == 1 && tok.eos() == 2 && tok.unk() == token_id{0} && !tok.pad()));
    REQUIRE(tok.options().add_bos);
    REQUIRE(!tok.options().add_eos);
    REQUIRE(tok.options().add_space_prefix);
    REQUIRE(tok.encode("ab") == ids{1, 4, 8});        // "ab" (-1) outscores "▁a" (-3)
    REQUIRE(tok.encode("aA<u>") == ids{1, 7, 3, 9});  // A by its byte token, <u> user-defined
    REQUIRE(tok.encode("B") == ids{1, 4, 0});         // no byte token for B: unknown
    REQUIRE(tok.decode(ids{1, 7, 3, 9, 4, 5}) == "aA<u>a");  // the space prefix after <u> is dropped

    auto options = small_vocab();
    options.flag("tokenizer.ggml.add_bos_token", false)
        .flag("tokenizer.ggml.add_eos_token", true)
        .flag("tokenizer.ggml.add_space_prefix", false)
        .uint("tokenizer.ggml.padding_token_id", 4)
        .uint("tokenizer.ggml.eos_token_id", 9);
    const auto bytes2 = options.bytes();
    const auto tok2 = llama_vocab_from_gguf(gguf_file::from_memory(bytes2, "options.gguf"));
    REQUIRE(tok2.encode("ab") == ids{8, 9});
    REQUIRE(tok2.pad() == token_id{4});
    REQUIRE(tok2.end_of_generation() == ids{9});

    // Without scores and types: every score 0 and every token normal.
    auto bare = gguf_builder().str("tokenizer.ggml.model", "llama").strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "x", "", "<|im_end|>"});
    const auto bytes3 = bare.bytes();
    const auto tok3 = llama_vocab_from_gguf(gguf_file::from_memory(bytes3, "bare.gguf"));
    REQUIRE(tok3.type(1) == token_type::normal);
    REQUIRE(tok3.score(3) == 0.0f);
    REQUIRE(tok3.piece(4) == "[EMPTY_4]");  // as llama.cpp names an empty token
    REQUIRE(tok3.type(5) == token_type::control);  // an end-of-generation text, made control as llama.cpp does
    REQUIRE(tok3.end_of_generation() == ids{2, 5});
}

TEST_CASE("broken GGUF vocabulary metadata throws model_format_error naming the key", "[io][gguf][tokenizer][errors]") {
    expect_error(small_vocab("tokenizer.ggml.tokens"), "key 'tokenizer.ggml.tokens'", "expected an array of token strings, found no such key");
    expect_error(small_vocab("tokenizer.ggml.model"), "key 'tokenizer.ggml.model'", "no such key");
    auto wrong_types = small_vocab("tokenizer.ggml.token_type");
    wrong_types.ints("tokenizer.ggml.token_type", {2, 3, 3, 6, 1, 1, 1, 1, 1});
    expect_error(wrong_types, "key 'tokenizer.ggml.token_type'", "expected 10 entries (one per token), found 9");
    auto wrong_scores = small_vocab("tokenizer.ggml.scores");
    wrong_scores.floats("tokenizer.ggml.scores", std::vector<float>(11, 0.0f));
    expect_error(wrong_scores, "key 'tokenizer.ggml.scores'", "expected 10 entries (one per token), found 11");
    auto bad_type = small_vocab("tokenizer.ggml.token_type");
    bad_type.ints("tokenizer.ggml.token_type", {2, 3, 3, 6, 1, 1, 1, 7, 1, 4});
    expect_error(bad_type, "key 'tokenizer.ggml.token_type'", "expected token types 0 to 6, found 7 at token 7");
    auto bad_byte = small_vocab("tokenizer.ggml.token_type");
    bad_byte.ints("tokenizer.ggml.token_type", {2, 3, 3, 6, 6, 1, 1, 1, 1, 4});
    expect_error(bad_byte, "key 'tokenizer.ggml.token_type'", "token 4 \"" + mark + "\" of type byte");
    expect_error(small_vocab().uint("tokenizer.ggml.bos_token_id", 10), "key 'tokenizer.ggml.bos_token_id'",
                 "expected a token id below the vocabulary size 10, found 10");
    expect_error(small_vocab().uint("tokenizer.ggml.unknown_token_id", 4000000000u), "key 'tokenizer.ggml.unknown_token_id'",
                 "found 4000000000");
    // 2^32 - 1 is how llama.cpp's converters write "none" (kjv-f32.gguf's padding_token_id).
    const auto none_bytes = small_vocab().uint("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu).bytes();
    REQUIRE(!llama_vocab_from_gguf(gguf_file::from_memory(none_bytes, "none.gguf")).pad());
    auto duplicate = small_vocab("tokenizer.ggml.tokens");
    duplicate.strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "<0x41>", mark, "a", "b", mark + "a", "a", "<u>"});
    expect_error(duplicate, "key 'tokenizer.ggml.tokens'", "expected distinct tokens, found \"a\" at ids 5 and 8");
    auto bert = small_vocab("tokenizer.ggml.model");
    bert.str("tokenizer.ggml.model", "bert");
    expect_error(bert, "key 'tokenizer.ggml.model'", "found \"bert\"");
    auto gpt2 = small_vocab("tokenizer.ggml.model");
    gpt2.str("tokenizer.ggml.model", "gpt2");
    expect_error(gpt2, "key 'tokenizer.ggml.model'", "a byte-level BPE vocabulary, read by gpt2_vocab_from_gguf");
    // One token: the default BOS (1) does not exist, yet add_bos_token defaults to true.
    auto one = gguf_builder().str("tokenizer.ggml.model", "llama").strings("tokenizer.ggml.tokens", {"<unk>"});
    expect_error(one, "key 'tokenizer.ggml.bos_token_id'", "a BOS token (tokenizer.ggml.add_bos_token is true)");
    auto empty = gguf_builder().str("tokenizer.ggml.model", "llama").strings("tokenizer.ggml.tokens", {});
    expect_error(empty, "key 'tokenizer.ggml.tokens'", "expected 1 to 2^31 - 1 tokens, found 0");
    // A key of the wrong type: the reader's own error, which names it too.
    auto wrong_kind = small_vocab("tokenizer.ggml.scores");
    wrong_kind.strings("tokenizer.ggml.scores", {"x"});
    const auto bytes = wrong_kind.bytes();
    REQUIRE_THROWS_AS(llama_vocab_from_gguf(gguf_file::from_memory(bytes, "kind.gguf")), model_format_error);
}
