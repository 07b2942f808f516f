// libFuzzer harness: the Hugging Face tokenizer.json reader on arbitrary bytes.
// The input is tokenizer.json's text; where it holds a NUL byte, what follows the
// first one is tokenizer_config.json's. A bad input must end in
// kvdecode::model_format_error naming the input; anything else that escapes is a
// crash. On success, a few texts (fixed ones, and the input's first bytes) are
// encoded and decoded:
//  - encode throws nothing but std::invalid_argument, and that only when the model
//    names an unknown token that is no piece;
//  - every id is in the vocabulary, and add_special puts exactly the post-processor's
//    tokens around the ids without them;
//  - decode (special tokens shown or not) is valid UTF-8, and so is decode_token's
//    stream after utf8_lossy; decode_token never throws for ids in the vocabulary;
//  - with a decoder of only per-token steps (streams_exactly), the stream (special
//    tokens shown) is decode() exactly.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "kvdecode/io/hf_tokenizer.hpp"

using namespace kvdecode;

namespace {

const std::string input_name = "fuzz input";

std::optional<hf_tokenizer> read(std::string_view json, std::optional<std::string_view> config) {
    try {
        return read_hf_tokenizer_json(json, input_name, config);
    } catch (const model_format_error& e) {
        KVFUZZ_CHECK(e.file().rfind(input_name, 0) == 0);
        KVFUZZ_CHECK(!e.field().empty());
        KVFUZZ_CHECK(std::string(e.what()).find(input_name) != std::string::npos);
        return std::nullopt;
    }
}

// Whether the decoder streams exactly, on any bytes: only per-token steps (a Replace
// before any Fuse or ByteLevel joins the pieces, so none spans two tokens), no
// ByteFallback, Strip or Metaspace (see token_decoder.hpp and hf_tokenizer.hpp).
bool streams_exactly(const hf_tokenizer& t) {
    bool joined = false;
    for (const decoder_step& s : t.decoder().steps()) {
        switch (s.type) {
            case decoder_step::kind::fuse:
            case decoder_step::kind::byte_level: joined = true; break;
            case decoder_step::kind::replace:
                if (joined) return false;
                break;
            default: return false;
        }
    }
    return true;
}

void check(const hf_tokenizer& t, std::string_view text, bool exact_stream) {
    std::vector<token_id> bare, with;
    try {
        bare = t.encode(text, {.add_special = false});
    } catch (const std::invalid_argument&) {
        KVFUZZ_CHECK(t.model().data().unk_token && !t.model().token_of(*t.model().data().unk_token));
        return;
    }
    with = t.encode(text, {.add_special = true});
    const post_processor& p = t.post();
    KVFUZZ_CHECK(with.size() == bare.size() + p.prefix.size() + p.suffix.size());
    KVFUZZ_CHECK(std::equal(p.prefix.begin(), p.prefix.end(), with.begin()));
    KVFUZZ_CHECK(std::equal(bare.begin(), bare.end(), with.begin() + static_cast<std::ptrdiff_t>(p.prefix.size())));
    for (token_id id : with) KVFUZZ_CHECK(id >= 0 && static_cast<std::size_t>(id) < t.vocab_size());
    for (bool special : {true, false}) {
        const std::string decoded = t.decode(with, {.special = special});
        KVFUZZ_CHECK(utf8::is_valid(decoded));
        std::string bytes;
        token_id previous = -1;
        for (token_id id : with) {
            bytes += t.decode_token(previous, id, {.special = special});
            previous = id;
        }
        KVFUZZ_CHECK(utf8::is_valid(utf8_lossy(bytes)));
        if (special && exact_stream) KVFUZZ_CHECK(utf8_lossy(bytes) == decoded);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::size_t nul = input.find('\0');
    const std::string_view json = input.substr(0, nul);
    const std::optional<std::string_view> config =
        nul == std::string_view::npos ? std::nullopt : std::optional<std::string_view>(input.substr(nul + 1));
    const std::optional<hf_tokenizer> t = read(json, config);
    if (!t) return 0;
    KVFUZZ_CHECK(t->vocab_size() > 0);
    const bool exact = streams_exactly(*t);
    for (const std::string_view text : {std::string_view(""), std::string_view("Hello world, it's 2024!\n\t caf\xC3\xA9"),
                                        std::string_view("\xE6\x97\xA5\xF0\x9F\x9A\x80 \xFF\xC3 <s></s>"), input.substr(0, 64)})
        check(*t, text, exact);
    return 0;
}
