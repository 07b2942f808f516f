// libFuzzer harness: the tokenizer of arbitrary bytes read as a GGUF file
// (gguf_file::from_memory, then gguf_tokenizer: tokenizer.huggingface.json, or the
// `llama` arrays through llama_vocab_from_gguf, or the `gpt2` arrays through
// gpt2_vocab_from_gguf). A bad file or bad tokenizer metadata must end in
// kvdecode::model_format_error naming the input; anything else that escapes is a
// crash. On success:
//  - `llama` arrays: one piece per tokenizer.ggml.tokens entry, as stored (an empty one
//    reads "[EMPTY_<id>]"), each score as stored (0 without scores), BOS / EOS /
//    unknown / padding inside the vocabulary;
//  - `gpt2` arrays: the same pieces, BOS / EOS / end-of-generation ids inside the
//    vocabulary;
//  - any tokenizer: text (the input's tail, the vocabulary's own pieces glued, each
//    with its special tokens parsed and not) encodes to ids inside the vocabulary, or
//    throws std::invalid_argument only where a SentencePiece-style vocabulary has no
//    unknown token or a Hugging Face one's unknown token is no piece; the ids decode,
//    special tokens shown or not.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_support.hpp"
#include "kvdecode/io/gguf.hpp"
#include "kvdecode/io/gguf_tokenizer.hpp"

using namespace kvdecode;

namespace {

const std::string input_name = "fuzz input";

template <class F>
bool fails_as_documented(F&& f) {
    try {
        f();
        return false;
    } catch (const model_format_error& e) {
        // A tokenizer.huggingface.json is named "<file> (tokenizer.huggingface.json)".
        KVFUZZ_CHECK(e.file().starts_with(input_name));
        KVFUZZ_CHECK(!e.field().empty());
        KVFUZZ_CHECK(std::string(e.what()).find(input_name) != std::string::npos);
        return true;
    }
}

void check_encoding(const any_tokenizer& t, std::string_view text) {
    for (bool parse_special : {false, true}) {
        std::vector<token_id> ids;
        try {
            ids = t.encode(text, {.parse_special = parse_special});
        } catch (const std::invalid_argument&) {
            if (const auto* sp = t.sentencepiece()) KVFUZZ_CHECK(!sp->unk());
            else KVFUZZ_CHECK(t.hf()->model().data().unk_token.has_value());
            continue;
        }
        for (token_id id : ids) KVFUZZ_CHECK(id >= 0 && static_cast<std::size_t>(id) < t.vocab_size());
        (void)t.decode(ids);
        (void)t.decode(ids, {.special = true});
        token_id previous = -1;
        for (token_id id : ids) (void)t.decode_token(std::exchange(previous, id), id);
    }
}

bool inside(const any_tokenizer& t, std::optional<token_id> id) {
    return !id || (*id >= 0 && static_cast<std::size_t>(*id) < t.vocab_size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto bytes = kvfuzz::bytes_of(data, size);
    std::optional<gguf_file> file;
    if (fails_as_documented([&] { file = gguf_file::from_memory(bytes, input_name); })) return 0;
    std::optional<any_tokenizer> tok;
    if (fails_as_documented([&] { tok = gguf_tokenizer(*file); })) return 0;

    KVFUZZ_CHECK(inside(*tok, tok->find_bos()) && inside(*tok, tok->find_eos()));
    for (token_id id : tok->end_of_generation()) KVFUZZ_CHECK(inside(*tok, id));
    if (!file->has(gguf_hf_json_key)) {
        const std::vector<std::string> tokens = file->strings("tokenizer.ggml.tokens");
        KVFUZZ_CHECK(tok->vocab_size() == tokens.size());
        for (std::size_t i = 0; i < tokens.size(); ++i)
            KVFUZZ_CHECK(tok->piece(static_cast<token_id>(i)) ==
                         (tokens[i].empty() ? "[EMPTY_" + std::to_string(i) + "]" : tokens[i]));
        if (const auto* sp = tok->sentencepiece()) {
            const bool has_scores = file->has("tokenizer.ggml.scores");
            const std::vector<float> scores = has_scores ? file->floats("tokenizer.ggml.scores") : std::vector<float>{};
            for (std::size_t i = 0; i < tokens.size(); ++i)
                KVFUZZ_CHECK(sp->score(static_cast<token_id>(i)) == (has_scores ? scores[i] : 0.0f));
            KVFUZZ_CHECK(inside(*tok, sp->unk()) && inside(*tok, sp->pad()));
        } else {
            KVFUZZ_CHECK(file->string("tokenizer.ggml.model") == "gpt2");
        }
    }

    const std::string_view raw(reinterpret_cast<const char*>(data), size);
    check_encoding(*tok, raw.substr(raw.size() - std::min<std::size_t>(raw.size(), 64)));
    std::string glued;
    for (std::size_t i = tok->vocab_size(); i-- > 0 && glued.size() < 64;) glued += tok->piece(static_cast<token_id>(i));
    check_encoding(*tok, glued);
    return 0;
}
