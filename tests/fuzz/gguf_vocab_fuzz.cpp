// libFuzzer harness: GGUF vocabularies (llama_vocab_from_gguf) from arbitrary bytes
// read as a GGUF file (gguf_file::from_memory). A bad file or bad tokenizer metadata
// must end in kvdecode::model_format_error naming the input; anything else that
// escapes is a crash. On success:
//  - one piece per tokenizer.ggml.tokens entry, as stored (an empty one reads
//    "[EMPTY_<id>]"), each score as stored (0 without scores), BOS / EOS / unknown /
//    padding inside the vocabulary;
//  - text (the input's tail, the vocabulary's own pieces glued, each with its special
//    tokens parsed and not) encodes to ids inside the vocabulary, or throws
//    std::invalid_argument only where the vocabulary has no unknown token; the ids
//    decode, special tokens shown or not.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "kvdecode/io/gguf.hpp"
#include "kvdecode/io/gguf_vocab.hpp"

using namespace kvdecode;

namespace {

const std::string input_name = "fuzz input";

template <class F>
bool fails_as_documented(F&& f) {
    try {
        f();
        return false;
    } catch (const model_format_error& e) {
        KVFUZZ_CHECK(e.file() == input_name);
        KVFUZZ_CHECK(!e.field().empty());
        KVFUZZ_CHECK(std::string(e.what()).find(input_name) != std::string::npos);
        return true;
    }
}

void check_encoding(const sentencepiece_tokenizer& t, std::string_view text) {
    for (bool parse_special : {false, true}) {
        std::vector<token_id> ids;
        try {
            ids = t.encode(text, {.parse_special = parse_special});
        } catch (const std::invalid_argument&) {
            KVFUZZ_CHECK(!t.unk());
            continue;
        }
        for (token_id id : ids) KVFUZZ_CHECK(id >= 0 && static_cast<std::size_t>(id) < t.vocab_size());
        (void)t.decode(ids);
        (void)t.decode(ids, {.special = true});
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto bytes = kvfuzz::bytes_of(data, size);
    std::optional<gguf_file> file;
    if (fails_as_documented([&] { file = gguf_file::from_memory(bytes, input_name); })) return 0;
    std::optional<sentencepiece_tokenizer> tok;
    if (fails_as_documented([&] { tok = llama_vocab_from_gguf(*file); })) return 0;

    const std::vector<std::string> tokens = file->strings("tokenizer.ggml.tokens");
    KVFUZZ_CHECK(tok->vocab_size() == tokens.size());
    const bool has_scores = file->has("tokenizer.ggml.scores");
    const std::vector<float> scores = has_scores ? file->floats("tokenizer.ggml.scores") : std::vector<float>{};
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        const auto id = static_cast<token_id>(i);
        KVFUZZ_CHECK(tok->piece(id) == (tokens[i].empty() ? "[EMPTY_" + std::to_string(i) + "]" : tokens[i]));
        KVFUZZ_CHECK(tok->score(id) == (has_scores ? scores[i] : 0.0f));
    }
    for (const auto& id : {tok->find_bos(), tok->find_eos(), tok->unk(), tok->pad()})
        KVFUZZ_CHECK(!id || (*id >= 0 && static_cast<std::size_t>(*id) < tok->vocab_size()));

    const std::string_view raw(reinterpret_cast<const char*>(data), size);
    check_encoding(*tok, raw.substr(raw.size() - std::min<std::size_t>(raw.size(), 64)));
    std::string glued;
    for (std::size_t i = tok->vocab_size(); i-- > 0 && glued.size() < 64;) glued += tok->piece(static_cast<token_id>(i));
    check_encoding(*tok, glued);
    return 0;
}
