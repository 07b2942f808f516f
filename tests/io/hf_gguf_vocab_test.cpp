// The vocabulary of each Hugging Face fixture folder written into its GGUF conversion
// and read back: through tokenizer.huggingface.json, transformers' ids on all 40
// goldens; through the ggml arrays alone (the JSON key removed), llama.cpp's rules:
// the byte-level arrays are llama.cpp's converter's own (tokens, token_type, merges,
// pre) and give transformers' ids wherever llama.cpp agrees; the SentencePiece-style
// scores, measured against llama.cpp's -1000 everywhere.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "kvdecode/io/gguf.hpp"
#include "kvdecode/io/gguf_tokenizer.hpp"
#include "kvdecode/io/hf_config.hpp"
#include "kvdecode/io/hf_gguf.hpp"
#include "kvdecode/io/hf_gguf_vocab.hpp"
#include "kvdecode/io/hf_model.hpp"
#include "kvdecode/io/hf_tokenizer.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;
using ids = std::vector<token_id>;

namespace {

// How many golden cases `tok` encodes (with and without special tokens) as transformers does.
int golden_matches(const any_tokenizer& tok, const nlohmann::json& golden, const encode_options& o = {}) {
    int equal = 0;
    for (const auto& c : golden.at("cases")) {
        const std::string text = c.at("text").get<std::string>();
        const bool with = tok.encode(text, {.add_special = true, .parse_special = o.parse_special}) == c.at("ids").get<ids>();
        const bool without = tok.encode(text, {.add_special = false, .parse_special = o.parse_special}) ==
                             c.at("ids_no_special").get<ids>();
        equal += with && without;
    }
    return equal;
}

struct converted {
    std::vector<std::byte> bytes;
    hf_gguf_vocab_written written;
};

converted convert(const std::filesystem::path& folder, bool keep_json) {
    const hf_config config = read_hf_config(folder / "config.json");
    const hf_weight_files files = hf_weight_files::open(folder);
    gguf_conversion c = gguf_from_hf(config, hf_stored_weights(config, files));
    const hf_tokenizer tok = read_hf_tokenizer(folder);
    converted out;
    out.written = set_hf_gguf_vocab(c.file, tok, kvtest::read_text(folder / "tokenizer.json"),
                                    {.vocab_size = config.model.vocab_size,
                                     .bos = config.bos,
                                     .eos = config.eos.empty() ? std::nullopt : std::optional<token_id>(config.eos.front()),
                                     .pad = config.pad});
    if (!keep_json) c.file.remove(gguf_hf_json_key);
    out.bytes = c.file.to_bytes();
    return out;
}

}  // namespace

TEST_CASE("a folder's vocabulary written into GGUF reads back as its tokenizer.json", "[io][hf][gguf][tokenizer][shared]") {
    for (const char* name : {"llama-tiny-f32", "llama-tiny-bf16-sharded", "qwen2-tiny-bf16", "smollm-tiny-f16"}) {
        const auto folder = kvtest::shared_file(std::string("fixtures/hf/") + name);
        const auto golden_path = kvtest::shared_file(std::string("fixtures/hf/tokenizers/") +
                                                     (name[0] == 'l' ? "spm-bpe" : "bytelevel") + "/golden.json");
        if (!folder || !golden_path) return;
        CAPTURE(name);
        const auto golden = nlohmann::json::parse(kvtest::read_text(*golden_path));
        const converted c = convert(*folder, true);
        const gguf_file file = gguf_file::from_memory(c.bytes, name);
        const any_tokenizer tok = gguf_tokenizer(file);
        REQUIRE(tok.hf() != nullptr);
        REQUIRE(golden_matches(tok, golden) == 40);
        for (const auto& g : golden.at("cases")) {
            REQUIRE(tok.decode(g.at("ids").get<ids>(), {.special = true}) == g.at("decode").get<std::string>());
            REQUIRE(tok.decode(g.at("ids").get<ids>()) == g.at("decode_skip_special").get<std::string>());
        }
        const hf_tokenizer folder_tok = read_hf_tokenizer(*folder);
        REQUIRE(tok.chat_template() == folder_tok.chat_template().value_or(""));
        REQUIRE(tok.find_eos() == folder_tok.find_eos());
        REQUIRE(file.string("tokenizer.ggml.model") == c.written.model);
    }
}

TEST_CASE("byte-level arrays written for a folder are llama.cpp's converter's", "[io][hf][gguf][tokenizer][shared]") {
    for (const char* name : {"qwen2-tiny-bf16", "smollm-tiny-f16"}) {
        const auto folder = kvtest::shared_file(std::string("fixtures/hf/") + name);
        const auto theirs_path = kvtest::shared_file(std::string("fixtures/gguf/from-hf/") + name + "-f32.gguf");
        const auto golden_path = kvtest::shared_file("fixtures/hf/tokenizers/bytelevel/golden.json");
        if (!folder || !theirs_path || !golden_path) return;
        CAPTURE(name);
        const converted c = convert(*folder, false);
        REQUIRE(c.written.model == "gpt2");
        REQUIRE(c.written.pre == "qwen2");
        REQUIRE(c.written.notes == std::vector<std::string>{"the normalizer (e.g. NFC) has no GGUF key: llama.cpp does not normalize"});
        const gguf_file ours = gguf_file::from_memory(c.bytes, "ours");
        const gguf_file theirs = gguf_file::open(*theirs_path);
        for (const char* key : {"tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template"})
            REQUIRE(ours.string(key) == theirs.string(key));
        for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.merges"}) REQUIRE(ours.strings(key) == theirs.strings(key));
        REQUIRE(ours.ints("tokenizer.ggml.token_type") == theirs.ints("tokenizer.ggml.token_type"));
        for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"})
            REQUIRE(ours.uint(key) == theirs.uint(key));
        REQUIRE_FALSE(ours.boolean("tokenizer.ggml.add_bos_token"));  // theirs: no key, and qwen2's default is false

        // The arrays alone: llama.cpp's rules, so special token texts are tokens only with parse_special.
        const any_tokenizer tok = gguf_tokenizer(ours);
        REQUIRE(tok.hf() != nullptr);
        const auto golden = nlohmann::json::parse(kvtest::read_text(*golden_path));
        REQUIRE(golden_matches(tok, golden, {.parse_special = true}) == 40);
        REQUIRE(golden_matches(tok, golden) == 37);  // the three strings that hold <|im_start|>, <|im_end|>, <|endoftext|>
    }
}

TEST_CASE("SentencePiece-style arrays: scores in merge order against llama.cpp's -1000", "[io][hf][gguf][tokenizer][shared]") {
    for (const char* name : {"llama-tiny-f32", "llama-tiny-bf16-sharded"}) {
        const auto folder = kvtest::shared_file(std::string("fixtures/hf/") + name);
        const auto golden_path = kvtest::shared_file("fixtures/hf/tokenizers/spm-bpe/golden.json");
        const auto theirs_path = kvtest::shared_file(std::string("fixtures/gguf/from-hf/") + name + "-f32.gguf");
        if (!folder || !golden_path || !theirs_path) return;
        CAPTURE(name);
        const converted c = convert(*folder, false);
        REQUIRE(c.written.model == "llama");
        const gguf_file ours = gguf_file::from_memory(c.bytes, "ours");
        const gguf_file theirs = gguf_file::open(*theirs_path);
        REQUIRE(ours.strings("tokenizer.ggml.tokens") == theirs.strings("tokenizer.ggml.tokens"));
        std::vector<std::int32_t> types = theirs.ints("tokenizer.ggml.token_type");
        types[0] = static_cast<std::int32_t>(token_type::unknown);  // llama.cpp's converter makes <unk> control
        REQUIRE(ours.ints("tokenizer.ggml.token_type") == types);

        const auto golden = nlohmann::json::parse(kvtest::read_text(*golden_path));
        const any_tokenizer tok = gguf_tokenizer(ours);
        REQUIRE(tok.sentencepiece() != nullptr);
        const int merge_order = golden_matches(tok, golden, {.parse_special = true});
        // The same vocabulary with llama.cpp's converter's scores.
        gguf_writer w;
        w.copy_metadata(ours);
        w.set("tokenizer.ggml.scores", std::vector<float>(tok.vocab_size(), -1000.0f));
        const auto flat_bytes = w.to_bytes();
        const int flat = golden_matches(gguf_tokenizer(gguf_file::from_memory(flat_bytes, "flat")), golden, {.parse_special = true});
        // Measured: every golden with scores in merge order, 22 of 40 with -1000 everywhere.
        REQUIRE(merge_order == 40);
        REQUIRE(flat == 22);
    }
}
