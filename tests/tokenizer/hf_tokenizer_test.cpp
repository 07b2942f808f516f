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

TEST_CASE("decode_token streams every golden sequence to decode's text", "[tokenizer][hf]") {
    for (const std::string name : {"bytelevel", "spm-bpe"}) {
        const auto g = golden(name);
        const auto t = fixture(name);
        if (!g || !t) return;
        INFO(name);
        for (const json& c : (*g)["cases"]) {
            const ids v = c["ids"].get<ids>();
            INFO("text: " << c["text"].get<std::string>());
            CHECK(streamed(*t, v, true) == t->decode(v, {.special = true}));
            // Skipping special tokens: the one difference documented in hf_tokenizer.hpp,
            // a hidden <s> in the middle of the text (Strip takes the space after it off).
            if (name == "spm-bpe" && c["text"] == "Hello</s><s>world") {
                CHECK(streamed(*t, v, false) == "Helloworld");
                CHECK(t->decode(v, {.special = false}) == "Hello world");
            } else {
                CHECK(streamed(*t, v, false) == t->decode(v, {.special = false}));
            }
            // Token by token without the BOS in front: the first piece is the first.
            const ids bare = c["ids_no_special"].get<ids>();
            CHECK(streamed(*t, bare, true) == t->decode(bare, {.special = true}));
        }
        if (g->contains("chat"))
            for (const json& c : (*g)["chat"]) {
                const ids v = c["ids"].get<ids>();
                CHECK(streamed(*t, v, true) == t->decode(v, {.special = true}));
                CHECK(streamed(*t, v, false) == t->decode(v, {.special = false}));
            }
    }
}

TEST_CASE("hf_tokenizer fixtures: specials, config, pieces", "[tokenizer][hf]") {
    if (const auto t = fixture("bytelevel")) {
        CHECK(t->vocab_size() == 2000);
        CHECK(!t->find_bos());
        CHECK(t->find_eos() == 1999);
        CHECK(t->end_of_generation() == ids{1999});
        CHECK(t->token_of("<|im_start|>") == 1998);
        CHECK(t->token_of("\xC4\xA0the") == t->model().token_of("\xC4\xA0the"));
        CHECK(!t->token_of("no such piece"));
        CHECK(t->is_special(1997));
        CHECK(!t->is_special(100));
        REQUIRE(t->chat_template());
        CHECK(t->chat_template()->find("<|im_start|>") != std::string::npos);
        CHECK(t->encode("hi", {.add_special = true}) == t->encode("hi", {.add_special = false}));
        CHECK_THROWS_AS(t->decode(ids{2000}), std::invalid_argument);
        CHECK_THROWS_AS(t->decode_token(-1, -1), std::invalid_argument);
        // NFC: a decomposed é is the composed one.
        CHECK(t->encode("cafe\xCC\x81", {}) == t->encode("caf\xC3\xA9", {}));
        // Bytes that are not UTF-8 are encoded as from_utf8_lossy would make them.
        CHECK(t->encode("a\xFF" "b", {}) == t->encode("a\xEF\xBF\xBD" "b", {}));
        // A byte-level decode of a cut character: U+FFFD, as tokenizers' from_utf8_lossy.
        const ids euro = t->encode("\xE2\x82\xAC", {});  // €
        std::string bytes;
        for (token_id id : euro) bytes += t->decode_token(-1, id);
        CHECK(bytes == "\xE2\x82\xAC");
    }
    if (const auto t = fixture("spm-bpe")) {
        CHECK(t->vocab_size() == 1500);
        CHECK(t->find_bos() == 1);
        CHECK(t->find_eos() == 2);
        CHECK(t->end_of_generation() == ids{2});
        CHECK(t->post().prefix == ids{1});
        CHECK(t->config().add_bos_token == true);
        CHECK(t->config().add_eos_token == false);
        CHECK(t->config().clean_up_tokenization_spaces == false);
        CHECK(!t->chat_template());
        CHECK(t->piece(3) == "<0x00>");
        // ByteFallback: a run of byte pieces that is not UTF-8 is one U+FFFD per byte in
        // decode() (tokenizers), one per maximal subpart in the stream (from_utf8_lossy).
        const token_id e6 = *t->token_of("<0xE6>"), x97 = *t->token_of("<0x97>"), a = *t->token_of("\xE2\x96\x81" "a");
        const ids cut = {e6, x97, a};
        CHECK(t->decode(cut) == "\xEF\xBF\xBD\xEF\xBF\xBD a");
        CHECK(streamed(*t, cut, false) == "\xEF\xBF\xBD a");
        const token_id c3 = *t->token_of("<0xC3>"), a9 = *t->token_of("<0xA9>"), ff = *t->token_of("<0xFF>");
        CHECK(t->decode(ids{c3, a9, ff}) == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
        CHECK(streamed(*t, ids{c3, a9, ff}, false) == "\xC3\xA9\xEF\xBF\xBD");
        CHECK(t->decode(ids{c3, a9}) == "\xC3\xA9");
    }
}

TEST_CASE("utf8_lossy is Rust's String::from_utf8_lossy", "[tokenizer][utf8]") {
    const std::string r = std::string(replacement_character);
    CHECK(utf8_lossy("") == "");
    CHECK(utf8_lossy("plain \xC3\xA9\xE2\x82\xAC\xF0\x9F\x9A\x80") == "plain \xC3\xA9\xE2\x82\xAC\xF0\x9F\x9A\x80");
    CHECK(utf8_lossy("Hello \xF0\x90\x80World") == "Hello " + r + "World");  // the Rust documentation's example
    CHECK(utf8_lossy("\xE6\x97") == r);
    CHECK(utf8_lossy("\xFF\xFE") == r + r);
    CHECK(utf8_lossy("\xED\xA0\x80") == r + r + r);      // a surrogate
    CHECK(utf8_lossy("\xC0\xAF") == r + r);              // overlong
    CHECK(utf8_lossy("\xE0\x80\xAF") == r + r + r);      // overlong
    CHECK(utf8_lossy("\xF4\x90\x80\x80") == r + r + r + r);  // above U+10FFFF
    CHECK(utf8_lossy("\xF0\x9F\x98") == r);
    // Unicode's Table 3-8 example: maximal subparts.
    CHECK(utf8_lossy("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64") == "a" + r + r + r + "b" + r + "c" + r + r + "d");
}

TEST_CASE("utf8_stream releases whole characters only", "[tokenizer][utf8]") {
    const std::string r = std::string(replacement_character);
    utf8_stream s;
    CHECK(s.push("a\xC3") == "a");
    CHECK(s.pending() == "\xC3");
    CHECK(s.push("\xA9") == "\xC3\xA9");
    CHECK(s.push("\xE2") == "");
    CHECK(s.push("\x82") == "");
    CHECK(s.push("\xAC!") == "\xE2\x82\xAC!");
    CHECK(s.push("\xF0\x9F") == "");
    CHECK(s.push("\x9A") == "");
    CHECK(s.push("\x80") == "\xF0\x9F\x9A\x80");
    CHECK(s.finish() == "");
    // Invalid bytes come out at once; a cut character is U+FFFD when it cannot complete.
    CHECK(s.push("\xFF") == r);
    CHECK(s.push("\xE6\x97") == "");
    CHECK(s.push("x") == r + "x");
    CHECK(s.push("\xF0\x9F") == "");
    CHECK(s.finish() == r);
    CHECK(s.pending().empty());
    // Any split of any bytes streams to utf8_lossy of the whole.
    const std::string bytes = "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64\xF0\x9F\x91\x8D\xE6\x97\xE6\x97\xA5\xED\xA0\x80";
    for (std::size_t cut1 = 0; cut1 <= bytes.size(); ++cut1)
        for (std::size_t cut2 = cut1; cut2 <= bytes.size(); ++cut2) {
            utf8_stream t;
            std::string out = t.push(bytes.substr(0, cut1));
            out += t.push(bytes.substr(cut1, cut2 - cut1));
            out += t.push(bytes.substr(cut2));
            out += t.finish();
            CHECK(out == utf8_lossy(bytes));
        }
}

TEST_CASE("byte_level_alphabet is GPT-2's", "[tokenizer][hf]") {
    const auto& a = byte_level_alphabet::get();
    CHECK(a.encode(" ") == "\xC4\xA0");   // Ġ
    CHECK(a.encode("\n") == "\xC4\x8A");  // Ċ
    CHECK(a.encode("A~") == "A~");
    CHECK(a.char_of(0xAD) == 0x143);
    CHECK(a.char_of(0) == 0x100);
    for (int b = 0; b < 256; ++b) {
        const std::string one(1, static_cast<char>(b));
        CHECK(a.decode(a.encode(one)) == one);
    }
    CHECK(!a.decode("\xE2\x82\xAC"));  // € is not in the alphabet
}

TEST_CASE("unicode_regex: Oniguruma's \\s, empty matches, errors", "[tokenizer][hf]") {
    CHECK(unicode_regex::oniguruma_spaces(R"(\s+(?!\S)|[^\s\p{L}])") == R"([\s\x{85}]+(?![^\s\x{85}])|[^\s\x{85}\p{L}])");
    CHECK(unicode_regex::oniguruma_spaces(R"([]\s]\\s\Q\s\E)") == R"([]\s\x{85}]\\s\Q\s\E)");
    const unicode_regex space(R"(\s+)");
    using spans = std::vector<std::pair<std::size_t, std::size_t>>;
    CHECK(space.find_all("a \xC2\x85" "b") == spans{{1, 4}});  // U+0085 is a space to Oniguruma
    CHECK(space.find_all("a\xC2\xA0" "b") == spans{{1, 3}});   // so is U+00A0
    const unicode_regex maybe("x*");
    CHECK(maybe.find_all("axxb\xC3\xA9x") == spans{{1, 3}, {6, 7}});
    CHECK_THROWS_AS(unicode_regex("("), regex_error);
    const unicode_regex gpt2(gpt2_pattern);
    CHECK(gpt2.find_all("I'll go  now") == spans{{0, 1}, {1, 4}, {4, 7}, {7, 8}, {8, 12}});
}

TEST_CASE("pre_tokenizer: Split behaviors and invert", "[tokenizer][hf]") {
    using words = std::vector<std::string>;
    const auto split = [](split_behavior b, bool invert, bool regex = false) {
        pre_tokenizer_step s;
        s.type = pre_tokenizer_step::kind::split;
        s.pattern = regex ? "-+" : "-";
        s.regex = regex;
        s.behavior = b;
        s.invert = invert;
        return pre_tokenizer({s}).apply("a-b--c-");
    };
    // tokenizers' own examples for "the-final--countdown" read the same way.
    CHECK(split(split_behavior::isolated, false) == words{"a", "-", "b", "-", "-", "c", "-"});
    CHECK(split(split_behavior::removed, false) == words{"a", "b", "c"});
    CHECK(split(split_behavior::merged_with_previous, false) == words{"a-", "b-", "-", "c-"});
    CHECK(split(split_behavior::merged_with_next, false) == words{"a", "-b", "-", "-c", "-"});
    CHECK(split(split_behavior::contiguous, false) == words{"a", "-", "b", "--", "c", "-"});
    CHECK(split(split_behavior::isolated, false, true) == words{"a", "-", "b", "--", "c", "-"});
    CHECK(split(split_behavior::removed, true) == words{"-", "-", "-", "-"});
    CHECK(split(split_behavior::merged_with_previous, true) == words{"a", "-b", "-", "-c", "-"});
    pre_tokenizer_step bl;
    bl.type = pre_tokenizer_step::kind::byte_level;
    bl.add_prefix_space = false;
    CHECK(pre_tokenizer({bl}).apply("I'm  here\n") == words{"I", "'m", "\xC4\xA0", "\xC4\xA0here", "\xC4\x8A"});
}

namespace {

// A BPE tokenizer from plain data: pieces in id order, merges by rank; no stages.
hf_tokenizer plain_bpe(std::vector<std::string> pieces, std::vector<std::pair<std::string, std::string>> merges,
                       std::optional<std::string> unk = {}, bool byte_fallback = false, bool fuse_unk = false,
                       bool ignore_merges = false) {
    hf_tokenizer_data d;
    d.model = {std::move(pieces), std::move(merges), std::move(unk), byte_fallback, fuse_unk, ignore_merges};
    return hf_tokenizer(std::move(d));
}

}  // namespace

TEST_CASE("BPE merges by rank, leftmost first, from plain data", "[tokenizer][hf]") {
    //                                 0    1    2    3     4     5      6
    const hf_tokenizer t = plain_bpe({"a", "b", "c", "ab", "bc", "abc", "aa"},
                                     {{"b", "c"}, {"a", "b"}, {"ab", "c"}, {"a", "a"}});
    CHECK(t.encode("abc") == ids{0, 4});  // b c (rank 0) before a b (rank 1): "abc" is never reached
    CHECK(t.encode("ab") == ids{3});
    CHECK(t.encode("aaaa") == ids{6, 6});  // equal ranks: leftmost first
    CHECK(t.encode("aaa") == ids{6, 0});
    CHECK(t.encode("abab") == ids{3, 3});
    CHECK(t.encode("cab") == ids{2, 3});
    CHECK(t.encode("") == ids{});
    CHECK(t.decode(ids{0, 4}) == "a bc");  // no decoder: pieces joined with spaces (tokenizers' default)
    CHECK(t.encode("axb") == ids{3});      // no unknown token: the character is dropped (and a, b merge)
    // ignore_merges: a word that is a piece is taken whole.
    const hf_tokenizer whole = plain_bpe({"a", "b", "c", "ab", "bc", "abc"}, {{"b", "c"}, {"a", "b"}}, {}, false, false, true);
    CHECK(whole.encode("abc") == ids{5});
    CHECK(whole.encode("abcabc") == ids{0, 4, 0, 4});
    // A long word: the priority queue, not quadratic rescans (a million merges here).
    const hf_tokenizer long_word = plain_bpe({"a", "aa", "aaaa"}, {{"a", "a"}, {"aa", "aa"}});
    const ids many = long_word.encode(std::string(1 << 20, 'a'));
    CHECK(many.size() == (1u << 18));
    CHECK(std::all_of(many.begin(), many.end(), [](token_id id) { return id == 2; }));
}

TEST_CASE("BPE byte fallback, unknown tokens and fuse_unk", "[tokenizer][hf]") {
    //                                          0        1    2    3         4         5
    const std::vector<std::string> pieces = {"<unk>", "a", "b", "<0xC3>", "<0xA9>", "<0xE2>"};
    const hf_tokenizer fallback = plain_bpe(pieces, {}, "<unk>", true);
    CHECK(fallback.encode("a\xC3\xA9" "b") == ids{1, 3, 4, 2});
    CHECK(fallback.encode("\xE2\x82\xAC") == ids{0});  // <0x82> missing: the whole character is unknown
    CHECK(fallback.encode("x\xE2\x82\xAC" "y") == ids{0, 0, 0});
    const hf_tokenizer fused = plain_bpe(pieces, {}, "<unk>", true, true);
    CHECK(fused.encode("x\xE2\x82\xAC" "ya") == ids{0, 1});
    CHECK(fused.encode("xaxy") == ids{0, 1, 0});
    // tokenizers places a waiting unknown token after byte pieces that follow it.
    CHECK(fused.encode("x\xC3\xA9" "a") == ids{3, 4, 0, 1});
    const hf_tokenizer no_fallback = plain_bpe(pieces, {}, "<unk>");
    CHECK(no_fallback.encode("a\xC3\xA9") == ids{1, 0});
    // An unknown token that is no piece is an error once a word needs it.
    const hf_tokenizer missing = plain_bpe({"a"}, {}, "<unk>");
    CHECK(missing.encode("a") == ids{0});
    CHECK_THROWS_AS(missing.encode("b"), std::invalid_argument);
    // Plain data is checked too.
    CHECK_THROWS_WITH(plain_bpe({"a", "b"}, {{"a", "b"}}), Catch::Contains("\"ab\" is not in the vocabulary"));
    CHECK_THROWS_WITH(plain_bpe({"a", "a"}, {}), Catch::Contains("appears twice"));
}

TEST_CASE("hf_tokenizer stages from plain data: a byte-level GPT-2 style tokenizer", "[tokenizer][hf]") {
    hf_tokenizer_data d;
    const auto& a = byte_level_alphabet::get();
    for (int b = 0; b < 256; ++b) d.model.pieces.push_back(a.encode(std::string(1, static_cast<char>(b))));
    const std::string sp = a.encode(" ");
    d.model.pieces.push_back(sp + "h");        // 256
    d.model.pieces.push_back(sp + "hi");       // 257
    d.model.merges = {{sp, "h"}, {sp + "h", "i"}};
    d.added_tokens = {{"<|end|>", 258, true, false}, {"<|endmore|>", 259, true, false}, {"plain", 260, false, false}};
    pre_tokenizer_step byte_level;
    byte_level.type = pre_tokenizer_step::kind::byte_level;
    byte_level.add_prefix_space = true;
    d.pre_tokenizer = {byte_level};
    decoder_step bytes;
    bytes.type = decoder_step::kind::byte_level;
    d.decoder = std::vector<decoder_step>{bytes};
    d.config.eos_token = "<|end|>";
    const hf_tokenizer t(std::move(d));
    CHECK(t.vocab_size() == 261);
    CHECK(t.encode("hi") == ids{257});  // add_prefix_space: " hi"
    // Added tokens: the longest at the leftmost place; a space prefix after each one.
    CHECK(t.encode("hi<|endmore|>hi<|end|>") == ids{257, 259, 257, 258});
    CHECK(t.encode("xplain") == ids{static_cast<token_id>(' '), static_cast<token_id>('x'), 260});
    CHECK(t.decode(ids{257, 258, 260}) == " hiplain");
    CHECK(t.decode(ids{257, 258, 260}, {.special = true}) == " hi<|end|>plain");
    CHECK(t.find_eos() == 258);
    CHECK(t.is_special(258));
    CHECK(!t.is_special(260));
}

TEST_CASE("added tokens: lstrip, rstrip, single_word, normalized spelling", "[tokenizer][hf]") {
    hf_tokenizer_data d;
    d.model.pieces = {"a", "b", " ", "x", "\xE2\x96\x81"};  // ids 0..4
    added_token m{"<m>", 5, true, false, true, true, false};
    added_token word{"ab", 6, false, false, false, false, true};
    added_token spaced{"a b", 5, false, true, false, false, false};  // normalized: matched as "a▁b"
    d.added_tokens = {m, word};
    const hf_tokenizer t(d);
    CHECK(t.encode("x  <m>  x") == ids{3, 5, 3});  // both runs of spaces go with <m>
    CHECK(t.encode("x<m>x") == ids{3, 5, 3});
    // "ab" alone is the token; beside a word character (x, or '_' after) it is text.
    CHECK(t.encode("ab xab ab_") == ids{6, 2, 3, 0, 1, 2, 0, 1});
    CHECK(t.encode("ab<m>ab") == ids{6, 5, 6});
    CHECK(t.encode("\xC3\xA9" "ab") == ids{0, 1});  // é is a word character: no match (and é is dropped)
    d.added_tokens = {spaced};
    d.normalizer = {{normalizer_step::kind::replace, " ", "\xE2\x96\x81"}};
    const hf_tokenizer n(d);
    CHECK(n.encode("xa b") == ids{3, 5});
    CHECK(n.token_of("a b") == 5);
}

TEST_CASE("Metaspace pre-tokenizer and decoder", "[tokenizer][hf]") {
    const std::string m = "\xE2\x96\x81";  // ▁
    const std::string file = R"({"model": {"type": "BPE", "ignore_merges": true, "unk_token": "<unk>",
        "vocab": {"<unk>": 0, ")" + m + R"(Hey": 1, ")" + m + R"(friend!": 2, ")" + m + R"(": 3, "a": 4, ")" + m + "a" + m +
                             R"(b": 5}, "merges": []},
      "pre_tokenizer": {"type": "Metaspace", "replacement": ")" + m + R"(", "prepend_scheme": "always", "split": true},
      "decoder": {"type": "Metaspace", "replacement": ")" + m + R"(", "prepend_scheme": "always", "split": true}})";
    const hf_tokenizer t = read_hf_tokenizer_json(file, "metaspace.json");
    CHECK(t.encode("Hey friend!") == ids{1, 2});
    CHECK(t.encode("Hey  friend!") == ids{1, 3, 2});  // "▁Hey", "▁", "▁friend!"
    CHECK(t.decode(ids{1, 3, 2}) == "Hey  friend!");
    CHECK(t.decode(ids{5, 1}) == "ab Hey");  // every ▁ of the first piece is dropped (tokenizers)
    CHECK(streamed(t, ids{5, 1}, true) == "ab Hey");
    CHECK(t.encode("a") == ids{3, 4});  // "▁a" is no piece: its characters
    CHECK(t.encode("x") == ids{3, 0});  // x is none either: unknown
}

namespace {

// A small valid tokenizer.json; tests break one field at a time.
json small_tokenizer_json() {
    return json::parse(R"({
      "version": "1.0", "truncation": null, "padding": null,
      "added_tokens": [{"id": 3, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false,
                        "normalized": false, "special": true}],
      "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}]},
      "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated", "invert": false},
      "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                         {"Sequence": {"id": "A", "type_id": 0}}], "pair": [],
                         "special_tokens": {"<s>": {"id": "<s>", "ids": [3], "tokens": ["<s>"]}}},
      "decoder": {"type": "Fuse"},
      "model": {"type": "BPE", "dropout": null, "unk_token": null, "byte_fallback": false, "fuse_unk": false,
                "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}
    })");
}

hf_tokenizer read(const json& j) { return read_hf_tokenizer_json(j.dump(), "small.json"); }

}  // namespace

TEST_CASE("read_hf_tokenizer_json reads a small file, both merge spellings", "[tokenizer][hf]") {
    json j = small_tokenizer_json();
    const hf_tokenizer t = read(j);
    CHECK(t.encode("ab ba") == ids{3, 2, 1, 0});  // " " is no piece and there is no unk: dropped
    CHECK(t.decode(ids{3, 2, 1}) == "abb");
    CHECK(t.decode(ids{3, 2, 1}, {.special = true}) == "<s>abb");
    j["model"]["merges"] = json::parse(R"([["a", "b"]])");
    CHECK(read(j).encode("ab", {.add_special = false}) == ids{2});
    const auto config = R"({"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": null,
                            "add_bos_token": true, "chat_template": [{"name": "tool", "template": "T"},
                                                                     {"name": "default", "template": "D"}]})";
    const hf_tokenizer c = read_hf_tokenizer_json(j.dump(), "small.json", config);
    CHECK(c.find_bos() == 3);
    CHECK(!c.find_eos());
    CHECK(c.chat_template() == "D");
}

TEST_CASE("read_hf_tokenizer_json refuses malformed and unsupported files", "[tokenizer][hf]") {
    const auto broken = [](auto&& change) {
        json j = small_tokenizer_json();
        change(j);
        return j.dump();
    };
    const auto reads = [](const std::string& text) { return read_hf_tokenizer_json(text, "small.json"); };
    using Catch::Contains;
    REQUIRE_THROWS_WITH(reads("{\"model\": "), Contains("small.json") && Contains("invalid JSON"));
    REQUIRE_THROWS_WITH(reads("[1, 2]"), Contains("(document): expected an object"));
    REQUIRE_THROWS_AS(reads(""), model_format_error);
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["model"]["vocab"] = json::array(); })),
                        Contains("model.vocab: expected an object"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["model"]["vocab"]["a"] = "zero"; })),
                        Contains("model.vocab[\"a\"]: expected an integer"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["model"]["type"] = "WordPiece"; })),
                        Contains("model.type") && Contains("model type \"WordPiece\" (not supported)"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["model"]["type"] = "Unigram"; })), Contains("\"Unigram\""));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["model"]["vocab"]["b"] = 7; })),
                        Contains("model.vocab[\"b\"]: expected an integer in [0, 2]"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["model"]["vocab"]["b"] = 0; })), Contains("twice"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["model"]["merges"] = {"a x"}; })),
                        Contains("model.merges[0]") && Contains("\"x\", which is not in model.vocab"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["model"]["merges"] = {"b a"}; })), Contains("\"ba\""));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["model"]["merges"] = {"ab"}; })), Contains("model.merges[0]"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["model"]["merges"] = json::parse("[[\"a\", 1]]"); })),
                        Contains("model.merges[0][1]: expected a string"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["model"]["byte_fallback"] = 1; })),
                        Contains("model.byte_fallback: expected true or false"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["model"]["dropout"] = 0.1; })), Contains("model.dropout"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["model"].erase("vocab"); })), Contains("model.vocab: expected a value"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["pre_tokenizer"]["pattern"]["Regex"] = "(\\p{L}"; })),
                        Contains("pre_tokenizer.pattern.Regex") && Contains("does not compile"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["pre_tokenizer"]["behavior"] = "Sideways"; })),
                        Contains("Split behavior \"Sideways\""));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["pre_tokenizer"]["type"] = "Whitespace"; })),
                        Contains("pre_tokenizer.type") && Contains("\"Whitespace\""));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["normalizer"]["normalizers"][0]["type"] = "Lowercase"; })),
                        Contains("normalizer.normalizers[0].type") && Contains("\"Lowercase\""));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["decoder"]["type"] = "WordPiece"; })), Contains("decoder type \"WordPiece\""));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["post_processor"]["type"] = "RobertaProcessing"; })),
                        Contains("\"RobertaProcessing\""));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["post_processor"]["special_tokens"]["<s>"]["ids"] = {9}; })),
                        Contains("outside the vocabulary"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["added_tokens"][0]["lstrip"] = "yes"; })),
                        Contains("added_tokens[0].lstrip: expected true or false"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["added_tokens"][0]["id"] = 5; })), Contains("some id below it is no token"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) {  // ids 0 1 2 (one of them added again) and 4: 3 is missing
                            j["added_tokens"][0]["id"] = 4;
                            j["added_tokens"].push_back(j["added_tokens"][0]);
                            j["added_tokens"][1]["content"] = "a";
                            j["added_tokens"][1]["id"] = 0;
                        })),
                        Contains("no token has id 3"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) { j["added_tokens"][0]["id"] = -1; })), Contains("added_tokens[0].id"));
    REQUIRE_THROWS_WITH(reads(broken([](json& j) {
                            j["added_tokens"].push_back(j["added_tokens"][0]);
                            j["added_tokens"][1]["content"] = "</s>";
                        })),
                        Contains("two added tokens have id 3"));
    // Sequences nest, but not without end.
    REQUIRE_THROWS_WITH(reads(broken([](json& j) {
                            json n = {{"type", "NFC"}};
                            for (int i = 0; i < 20; ++i) n = {{"type", "Sequence"}, {"normalizers", {n}}};
                            j["normalizer"] = n;
                        })),
                        Contains("nested Sequences"));
    const std::string ok = small_tokenizer_json().dump();
    REQUIRE_THROWS_WITH(read_hf_tokenizer_json(ok, "small.json", "{\"bos_token\": 1}"),
                        Contains("small.json (tokenizer_config.json): bos_token: expected a string"));
    REQUIRE_THROWS_WITH(read_hf_tokenizer_json(ok, "small.json", "not json"), Contains("tokenizer_config.json"));
    REQUIRE_THROWS_WITH(read_hf_tokenizer("/nonexistent/tokenizer.json"), Contains("could be opened"));
}
