// gguf_tokenizer picks the tokenizer a GGUF file holds: tokenizer.huggingface.json
// first (transformers' tokenization, with the GGUF file's chat template and special
// ids), else the `llama` or `gpt2` arrays; anything else, or a broken tokenizer.json,
// is a model_format_error naming it.

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/io/gguf.hpp"
#include "kvdecode/io/gguf_tokenizer.hpp"
#include "kvdecode/io/gguf_writer.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;
using ids = std::vector<token_id>;

TEST_CASE("gguf_tokenizer reads the arrays of llama and gpt2 files", "[io][gguf][tokenizer][shared]") {
    const auto llama = kvtest::shared_file("fixtures/gguf/from-hf/llama-tiny-f32-q8_0.gguf");
    const auto qwen2 = kvtest::shared_file("fixtures/gguf/from-hf/qwen2-tiny-bf16-q8_0.gguf");
    if (!llama || !qwen2) return;
    const any_tokenizer spm = gguf_tokenizer(gguf_file::open(*llama));
    REQUIRE(spm.sentencepiece() != nullptr);
    REQUIRE(spm.find_bos() == token_id{1});
    REQUIRE(spm.chat_template().empty());
    const any_tokenizer bpe = gguf_tokenizer(gguf_file::open(*qwen2));
    REQUIRE(bpe.hf() != nullptr);
    REQUIRE(bpe.encode("x<|im_end|>").size() > 2);  // llama.cpp: a control token's text is text
    REQUIRE(bpe.encode("x<|im_end|>", {.parse_special = true}).back() == 1999);
    REQUIRE(bpe.chat_template().starts_with("{% for message in messages %}"));
}

TEST_CASE("tokenizer.huggingface.json is preferred to the arrays", "[io][gguf][tokenizer][shared]") {
    const auto qwen2 = kvtest::shared_file("fixtures/gguf/from-hf/qwen2-tiny-bf16-q8_0.gguf");
    const auto json = kvtest::shared_file("fixtures/hf/tokenizers/bytelevel/tokenizer.json");
    if (!qwen2 || !json) return;
    const gguf_file arrays = gguf_file::open(*qwen2);
    gguf_writer w;
    w.copy_metadata(arrays);
    w.set(std::string(gguf_hf_json_key), gguf_value(kvtest::read_text(*json)));
    w.set("tokenizer.ggml.eot_token_id", gguf_value(std::uint32_t{1998}));
    const auto bytes = w.to_bytes();
    const gguf_file file = gguf_file::from_memory(bytes, "with-json.gguf");
    const any_tokenizer tok = gguf_tokenizer(file);
    REQUIRE(tok.hf() != nullptr);
    // transformers: special token texts are their tokens whatever parse_special says.
    REQUIRE(tok.encode("x<|im_end|>") == ids{87, 1999});
    REQUIRE(tok.chat_template() == arrays.string("tokenizer.chat_template"));
    REQUIRE(tok.find_eos() == token_id{1999});
    REQUIRE(tok.find_bos() == token_id{1997});  // the GGUF file's bos_token_id
    REQUIRE(tok.end_of_generation() == ids{1999, 1998, 1997});  // EOS, EOT, then <|endoftext|> by its text

    w.set(std::string(gguf_hf_json_key), gguf_value(std::string("{\"model\": {\"type\": \"WordPiece\"}}")));
    const auto broken = w.to_bytes();
    REQUIRE_THROWS_WITH(gguf_tokenizer(gguf_file::from_memory(broken, "broken.gguf")),
                        Catch::Contains("broken.gguf (tokenizer.huggingface.json)"));
}

TEST_CASE("gguf_tokenizer refuses other tokenizer models, naming the key", "[io][gguf][tokenizer]") {
    gguf_writer w;
    w.set("tokenizer.ggml.model", "t5");
    const auto bytes = w.to_bytes();
    try {
        gguf_tokenizer(gguf_file::from_memory(bytes, "t5.gguf"));
        FAIL("no exception");
    } catch (const model_format_error& e) {
        REQUIRE(e.field() == "key 'tokenizer.ggml.model'");
        REQUIRE_THAT(e.what(), Catch::Contains("\"t5\""));
    }
    gguf_writer none;
    none.set("general.architecture", "llama");
    const auto none_bytes = none.to_bytes();
    REQUIRE_THROWS_WITH(gguf_tokenizer(gguf_file::from_memory(none_bytes, "none.gguf")), Catch::Contains("no such key"));
}
