// The Hugging Face tokenizer.json pipeline: both fixture tokenizers against their
// goldens (tokenizers 0.23.2 through transformers: ids with and without special
// tokens, pieces, decode with and without special tokens, the chat renderings),
// streaming decode against decode, UTF-8 helpers against Rust's from_utf8_lossy,
// small hand-made BPE vocabularies worked out by hand, and malformed files.

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "kvdecode/core/error.hpp"
#include "kvdecode/io/hf_tokenizer.hpp"
#include "kvdecode/tokenizer/byte_level.hpp"
#include "kvdecode/tokenizer/hf_tokenizer.hpp"
#include "kvdecode/tokenizer/unicode_regex.hpp"
#include "kvdecode/tokenizer/utf8.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;
using ids = std::vector<token_id>;
using json = nlohmann::json;

namespace {

std::optional<json> golden(const std::string& name) {
    const auto p = kvtest::shared_file("fixtures/hf/tokenizers/" + name + "/golden.json");
    if (!p) return std::nullopt;
    return json::parse(kvtest::read_text(*p));
}

std::optional<hf_tokenizer> fixture(const std::string& name) {
    const auto p = kvtest::shared_file("fixtures/hf/tokenizers/" + name);
    if (!p) return std::nullopt;
    return read_hf_tokenizer(*p);
}

std::vector<std::string> pieces_of(const hf_tokenizer& t, const ids& v) {
    std::vector<std::string> out;
    for (token_id id : v) out.emplace_back(t.piece(id));
    return out;
}

// decode_token over `v`, through a utf8_stream: the text a streaming caller shows.
std::string streamed(const hf_tokenizer& t, const ids& v, bool special) {
    utf8_stream stream;
    std::string out;
    token_id previous = -1;
    for (token_id id : v) {
        out += stream.push(t.decode_token(previous, id, {.special = special}));
        previous = id;
    }
    return out + stream.finish();
}

}  // namespace

TEST_CASE("hf_tokenizer reproduces the fixtures' goldens", "[tokenizer][hf]") {
    for (const std::string name : {"bytelevel", "spm-bpe"}) {
        const auto g = golden(name);
        const auto t = fixture(name);
        if (!g || !t) return;
        INFO(name);
        int matched = 0, total = 0;
        for (const json& c : (*g)["cases"]) {
            const std::string text = c["text"];
            INFO("text: " << text);
            const ids with = t->encode(text, {.add_special = true});
            const ids without = t->encode(text, {.add_special = false});
            CHECK(with == c["ids"].get<ids>());
            CHECK(without == c["ids_no_special"].get<ids>());
            CHECK(pieces_of(*t, c["ids_no_special"].get<ids>()) == c["tokens"].get<std::vector<std::string>>());
            const ids golden_ids = c["ids"].get<ids>();
            CHECK(t->decode(golden_ids, {.special = true}) == c["decode"].get<std::string>());
            CHECK(t->decode(golden_ids, {.special = false}) == c["decode_skip_special"].get<std::string>());
            matched += (with == c["ids"].get<ids>()) + (without == c["ids_no_special"].get<ids>()) +
                       (pieces_of(*t, c["ids_no_special"].get<ids>()) == c["tokens"].get<std::vector<std::string>>()) +
                       (t->decode(golden_ids, {.special = true}) == c["decode"].get<std::string>()) +
                       (t->decode(golden_ids, {.special = false}) == c["decode_skip_special"].get<std::string>());
            total += 5;
        }
        CHECK(total == 200);
        CHECK(matched == total);
        if (g->contains("chat"))
            for (const json& c : (*g)["chat"]) {
                INFO("chat: " << c["text"].get<std::string>());
                CHECK(t->encode(c["text"].get<std::string>(), {.add_special = false}) == c["ids"].get<ids>());
            }
    }
}
