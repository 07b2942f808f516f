// any_tokenizer forwards every call to the tokenizer it holds: the same answers as
// the SentencePiece-style and Hugging Face tokenizers themselves, and a chat template
// only where the tokenizer has one.

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/tokenizer/any_tokenizer.hpp"

using namespace kvdecode;
using ids = std::vector<token_id>;

namespace {

const std::string mark = "\xE2\x96\x81";  // U+2581

sentencepiece_tokenizer small_sentencepiece() {
    sentencepiece_vocab v;
    v.pieces = {"<unk>", "<s>", "</s>", mark, "a", "b", mark + "a", "ab", mark + "ab"};
    v.scores = {0, 0, 0, -1, -1, -1, -3, -2, -4};
    v.types = {token_type::unknown, token_type::control, token_type::control, token_type::normal, token_type::normal,
               token_type::normal, token_type::normal, token_type::normal, token_type::normal};
    v.unk = 0, v.bos = 1, v.eos = 2;
    return sentencepiece_tokenizer(std::move(v));
}

hf_tokenizer small_hf() {
    hf_tokenizer_data d;
    d.model.pieces = {"a", "b", "ab", "\xC4\xA0", "\xC4\xA0" "ab"};
    d.model.merges = {{"a", "b"}, {"\xC4\xA0", "ab"}};
    d.added_tokens = {added_token{.content = "<|end|>", .id = 5, .special = true}};
    pre_tokenizer_step bytes;
    bytes.type = pre_tokenizer_step::kind::byte_level;
    d.pre_tokenizer = {bytes};
    d.decoder.emplace(1);
    d.post.suffix = {5};
    d.config.eos_token = "<|end|>";
    d.config.chat_template = "{{ messages }}";
    return hf_tokenizer(std::move(d));
}

}  // namespace

TEST_CASE("any_tokenizer holding a SentencePiece-style vocabulary", "[tokenizer]") {
    const sentencepiece_tokenizer sp = small_sentencepiece();
    const any_tokenizer tok = sp;
    REQUIRE(tok.sentencepiece() != nullptr);
    REQUIRE(tok.hf() == nullptr);
    REQUIRE(tok.vocab_size() == 9);
    REQUIRE(tok.piece(8) == mark + "ab");
    REQUIRE(tok.token_of(mark + "ab") == token_id{8});
    REQUIRE(tok.token_of("<s>") == token_id{1});
    REQUIRE(tok.token_of("zz") == std::nullopt);
    REQUIRE(tok.encode("ab ab") == sp.encode("ab ab"));
    REQUIRE(tok.encode("ab ab") == ids{1, 8, 8});
    REQUIRE(tok.encode("ab", {.add_special = false}) == ids{8});
    REQUIRE(tok.decode(ids{1, 8, 8}) == "ab ab");
    REQUIRE(tok.decode(ids{1, 8}, {.special = true}) == "<s>ab");
    REQUIRE(tok.decode_token(1, 8) == "ab");
    REQUIRE(tok.decode_token(8, 8) == " ab");
    REQUIRE(tok.find_bos() == token_id{1});
    REQUIRE(tok.find_eos() == token_id{2});
    REQUIRE(tok.end_of_generation() == ids{2});
    REQUIRE(tok.chat_template().empty());
}

TEST_CASE("any_tokenizer holding a Hugging Face pipeline", "[tokenizer]") {
    const any_tokenizer tok = small_hf();
    REQUIRE(tok.hf() != nullptr);
    REQUIRE(tok.sentencepiece() == nullptr);
    REQUIRE(tok.vocab_size() == 6);
    REQUIRE(tok.piece(5) == "<|end|>");
    REQUIRE(tok.token_of("<|end|>") == token_id{5});
    REQUIRE(tok.encode("ab ab") == ids{2, 4, 5});
    REQUIRE(tok.encode("ab<|end|>", {.add_special = false}) == ids{2, 5});
    REQUIRE(tok.decode(ids{2, 4, 5}) == "ab ab");
    REQUIRE(tok.decode(ids{2, 5}, {.special = true}) == "ab<|end|>");
    REQUIRE(tok.decode_token(2, 4) == " ab");
    REQUIRE(tok.find_bos() == std::nullopt);
    REQUIRE(tok.find_eos() == token_id{5});
    REQUIRE(tok.end_of_generation() == ids{5});
    REQUIRE(tok.chat_template() == "{{ messages }}");
}
