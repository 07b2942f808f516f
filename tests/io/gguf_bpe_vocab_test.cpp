// GGUF's `gpt2` vocabularies against llama.cpp: every prompt of the qwen2-tiny and
// smollm-tiny files in both llamacpp_greedy*.json encodes to llama.cpp's prompt_ids
// (with the file's parse_special) and the generated ids decode to its text;
// transformers' goldens agree wherever llama.cpp's rules do (they differ only where
// transformers always parses special token texts); a small vocabulary written with
// gguf_writer checks the pre-tokenizer table, defaults, token types and errors.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "kvdecode/io/gguf.hpp"
#include "kvdecode/io/gguf_bpe_vocab.hpp"
#include "kvdecode/io/gguf_writer.hpp"
#include "kvdecode/tokenizer/byte_level.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;
using ids = std::vector<token_id>;

TEST_CASE("GGUF gpt2 vocabularies encode every fixture prompt as llama.cpp did", "[io][gguf][tokenizer][shared]") {
    int encoded = 0, decoded = 0;
    for (const char* name : {"fixtures/gguf/from-hf/llamacpp_greedy.json", "fixtures/gguf/from-hf/llamacpp_greedy_parse_special.json"}) {
        const auto json_path = kvtest::shared_file(name);
        if (!json_path) return;
        const auto doc = nlohmann::json::parse(kvtest::read_text(*json_path));
        const bool parse_special = doc.at("settings").at("parse_special").get<bool>();
        std::map<std::string, hf_tokenizer> vocabs;
        for (const auto& r : doc.at("results")) {
            const std::string file = r.at("file").get<std::string>();
            const gguf_file gguf = gguf_file::open(json_path->parent_path() / file);
            if (gguf.string("tokenizer.ggml.model") != "gpt2") continue;
            auto found = vocabs.find(file);
            if (found == vocabs.end()) found = vocabs.emplace(file, gpt2_vocab_from_gguf(gguf)).first;
            const hf_tokenizer& tok = found->second;
            const std::string prompt = r.at("prompt").get<std::string>();
            CAPTURE(file, prompt, parse_special);
            REQUIRE(tok.encode(prompt, {.parse_special = parse_special}) == r.at("prompt_ids").get<ids>());
            ++encoded;
            const std::string text = r.at("text").get<std::string>();
            if (text.find("\xEF\xBF\xBD") != std::string::npos) continue;
            REQUIRE(tok.decode(r.at("ids").get<ids>()) == text);
            ++decoded;
        }
    }
    // qwen2-tiny: 2 files x 4 prompts (3 + the chat), smollm-tiny: 4 files x 3; the chat with parse_special: 2.
    CHECK(encoded == 2 * 4 + 4 * 3 + 2);
    CHECK(decoded > 5);
}

TEST_CASE("a GGUF gpt2 vocabulary gives transformers' ids wherever llama.cpp's rules agree", "[io][gguf][tokenizer][shared]") {
    const auto gguf_path = kvtest::shared_file("fixtures/gguf/from-hf/qwen2-tiny-bf16-f32.gguf");
    const auto golden_path = kvtest::shared_file("fixtures/hf/tokenizers/bytelevel/golden.json");
    if (!gguf_path || !golden_path) return;
    const hf_tokenizer tok = gpt2_vocab_from_gguf(gguf_file::open(*gguf_path));
    REQUIRE(tok.vocab_size() == 2000);
    REQUIRE_FALSE(tok.find_bos() == std::nullopt);  // 1997 from config.json, but not added
    REQUIRE(tok.post().prefix.empty());
    REQUIRE(tok.end_of_generation() == ids{1999, 1997});  // EOS, then <|endoftext|> (made control)
    REQUIRE(tok.chat_template().has_value());

    const auto golden = nlohmann::json::parse(kvtest::read_text(*golden_path));
    std::vector<std::string> differ;
    int cases = 0;
    for (const auto& c : golden.at("cases")) {
        const std::string text = c.at("text").get<std::string>();
        CAPTURE(text);
        ++cases;
        // transformers cuts special token texts out of any input; llama.cpp only with parse_special.
        REQUIRE(tok.encode(text, {.parse_special = true}) == c.at("ids").get<ids>());
        if (tok.encode(text) != c.at("ids").get<ids>()) differ.push_back(text);
        REQUIRE(tok.decode(c.at("ids").get<ids>(), {.special = true}) == c.at("decode").get<std::string>());
        REQUIRE(tok.decode(c.at("ids").get<ids>()) == c.at("decode_skip_special").get<std::string>());
    }
    REQUIRE(cases == 40);
    REQUIRE(differ == std::vector<std::string>{"<|im_start|>user\nhi<|im_end|>", "<|endoftext|>", "x<|im_end|>y"});
}

namespace {

// A byte-level vocabulary: the 256 byte characters, then "hi", "Ġhi", then the
// specials <|im_end|> (control) and <tag> (user-defined); `tweak` changes the keys.
gguf_writer small_vocab(const std::function<void(gguf_writer&)>& tweak = {}) {
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.push_back(byte_level_alphabet::get().encode(std::string(1, static_cast<char>(b))));
    tokens.push_back("hi");                     // 256
    tokens.push_back("\xC4\xA0hi");             // 257 "Ġhi"
    tokens.push_back("<|im_end|>");             // 258
    tokens.push_back("<tag>");                  // 259
    std::vector<std::int32_t> types(tokens.size(), 1);
    types[258] = 3;
    types[259] = 4;
    gguf_writer w;
    w.set("tokenizer.ggml.model", "gpt2");
    w.set("tokenizer.ggml.pre", "qwen2");
    w.set("tokenizer.ggml.tokens", std::move(tokens));
    w.set("tokenizer.ggml.token_type", types);
    w.set("tokenizer.ggml.merges", std::vector<std::string>{"h i", "\xC4\xA0 hi"});
    w.set("tokenizer.ggml.eos_token_id", gguf_value(std::uint32_t{258}));
    if (tweak) tweak(w);
    return w;
}

hf_tokenizer read(const gguf_writer& w) {
    const auto bytes = w.to_bytes();
    return gpt2_vocab_from_gguf(gguf_file::from_memory(bytes, "small.gguf"));
}

}  // namespace

TEST_CASE("a small GGUF gpt2 vocabulary: merges, special tokens and defaults as llama.cpp's", "[io][gguf][tokenizer]") {
    const hf_tokenizer tok = read(small_vocab());
    const token_id lt = '<', bar = '|';
    REQUIRE(tok.encode("hi hi") == ids{256, 257});
    REQUIRE(tok.decode(ids{256, 257}) == "hi hi");
    // The control token is text unless special tokens are parsed; the user-defined one always a token.
    REQUIRE(tok.encode("hi<|im_end|>") == ids{256, lt, bar, 'i', 'm', '_', 'e', 'n', 'd', bar, '>'});
    REQUIRE(tok.encode("hi<|im_end|>", {.parse_special = true}) == ids{256, 258});
    REQUIRE(tok.encode("<tag>hi") == ids{259, 256});
    REQUIRE(tok.decode(ids{256, 258, 259}) == "hi<tag>");
    REQUIRE(tok.decode(ids{256, 258, 259}, {.special = true}) == "hi<|im_end|><tag>");
    REQUIRE(tok.end_of_generation() == ids{258});
    // No BOS key: llama.cpp's default 11; not added for qwen2.
    REQUIRE(tok.find_bos() == token_id{11});
    REQUIRE(tok.post().prefix.empty());
    // llama-bpe adds BOS by default and takes a word that is a piece whole (ignore_merges).
    const hf_tokenizer llama3 = read(small_vocab([](gguf_writer& w) {
        w.set("tokenizer.ggml.pre", "llama-bpe");
        w.set("tokenizer.ggml.bos_token_id", gguf_value(std::uint32_t{259}));
    }));
    REQUIRE(llama3.encode("hi") == ids{259, 256});
    REQUIRE(llama3.encode("hi", {.add_special = false}) == ids{256});
    const hf_tokenizer no_bos = read(small_vocab([](gguf_writer& w) {
        w.set("tokenizer.ggml.pre", "llama-bpe");
        w.set("tokenizer.ggml.add_bos_token", gguf_value(false));
    }));
    REQUIRE(no_bos.encode("hi") == ids{256});
    // gpt-2: " ?\p{N}+" keeps digits together; smollm splits them one by one first.
    const hf_tokenizer gpt2 = read(small_vocab([](gguf_writer& w) { w.set("tokenizer.ggml.pre", "gpt-2"); }));
    const hf_tokenizer smollm = read(small_vocab([](gguf_writer& w) { w.set("tokenizer.ggml.pre", "smollm"); }));
    REQUIRE(gpt2.encode("12") == ids{'1', '2'});
    REQUIRE(smollm.encode("12") == ids{'1', '2'});
    // No pre key: "default", as llama.cpp after its warning.
    REQUIRE(read(small_vocab([](gguf_writer& w) { w.remove("tokenizer.ggml.pre"); })).encode("hi hi") == ids{256, 257});
}

TEST_CASE("broken GGUF gpt2 vocabularies throw model_format_error naming the key", "[io][gguf][tokenizer][errors]") {
    const auto fails = [](const std::function<void(gguf_writer&)>& tweak, const std::string& field, const std::string& text) {
        try {
            read(small_vocab(tweak));
            FAIL("no exception");
        } catch (const model_format_error& e) {
            CAPTURE(e.what());
            REQUIRE(e.field() == field);
            REQUIRE_THAT(e.what(), Catch::Contains(text));
        }
    };
    fails([](gguf_writer& w) { w.set("tokenizer.ggml.pre", "no-such-pre"); }, "key 'tokenizer.ggml.pre'", "\"no-such-pre\"");
    fails([](gguf_writer& w) { w.set("tokenizer.ggml.pre", "no-such-pre"); }, "key 'tokenizer.ggml.pre'", "qwen2, ");
    fails([](gguf_writer& w) { w.remove("tokenizer.ggml.merges"); }, "key 'tokenizer.ggml.merges'", "no such key");
    fails([](gguf_writer& w) { w.set("tokenizer.ggml.merges", std::vector<std::string>{"hi"}); }, "key 'tokenizer.ggml.merges'",
          "\"hi\" at rank 0");
    fails([](gguf_writer& w) { w.set("tokenizer.ggml.merges", std::vector<std::string>{"x yz"}); },
          "key 'tokenizer.ggml.merges' / key 'tokenizer.ggml.tokens'", "yz");
    fails([](gguf_writer& w) { w.set("tokenizer.ggml.token_type", std::vector<std::int32_t>{1, 1}); },
          "key 'tokenizer.ggml.token_type'", "260 entries");
    fails([](gguf_writer& w) { w.set("tokenizer.ggml.eos_token_id", gguf_value(std::uint32_t{260})); },
          "key 'tokenizer.ggml.eos_token_id'", "260");
    fails([](gguf_writer& w) { w.set("tokenizer.ggml.model", "llama"); }, "key 'tokenizer.ggml.model'", "llama_vocab_from_gguf");
    fails(
        [](gguf_writer& w) {
            w.set("tokenizer.ggml.pre", "llama-bpe");
            w.set("tokenizer.ggml.tokens", std::vector<std::string>{"a", "b"});
            w.set("tokenizer.ggml.token_type", std::vector<std::int32_t>{1, 1});
            w.set("tokenizer.ggml.merges", std::vector<std::string>{});
            w.remove("tokenizer.ggml.eos_token_id");
        },
        "key 'tokenizer.ggml.bos_token_id'", "BOS is added");
}
