// text_stream (tokenizer/text_stream.hpp): whole characters only, stop strings found
// across token boundaries and never printed, held-back text released at the end; on
// a made-up tokenizer whose pieces are given, and on the byte-level fixture tokenizer
// (the stream of every golden sequence is its decode()).

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/io/hf_tokenizer.hpp"
#include "kvdecode/tokenizer/text_stream.hpp"
#include "support/json.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;

namespace {

// Token i decodes to pieces[i]; token 0 is hidden unless special.
struct piece_tokenizer {
    std::vector<std::string> pieces;
    std::string decode_token(token_id, token_id id, const decode_options& o = {}) const {
        return id == 0 && !o.special ? std::string() : pieces.at(static_cast<std::size_t>(id));
    }
};

// Pushes every token, then finishes: the pieces given out and whether it stopped.
std::vector<std::string> run(text_stream<piece_tokenizer>& s, const std::vector<token_id>& ids) {
    std::vector<std::string> out;
    for (token_id t : ids) {
        out.push_back(s.push(t));
        if (s.stopped()) return out;
    }
    out.push_back(s.finish());
    return out;
}

}  // namespace

TEST_CASE("a text stream gives whole characters and stops before a stop string", "[tokenizer][text_stream]") {
    // "é" is C3 A9, cut between tokens 2 and 3; "€" E2 82 AC between 4, 5 and 6.
    const piece_tokenizer tok{{"<s>", "ab", "c\xC3", "\xA9 ", "x\xE2", "\x82", "\xAC!", "\n\nUs", "er:", "ok", "\xFF"}};
    {
        text_stream s(tok);
        REQUIRE(run(s, {0, 1, 2, 3, 4, 5, 6}) == std::vector<std::string>{"", "ab", "c", "\xC3\xA9 ", "x", "", "\xE2\x82\xAC!", ""});
    }
    {  // The stop string spans two tokens: the text before it is given, it never is.
        text_stream s(tok, {.stop = {"\n\nUser:"}});
        REQUIRE(run(s, {1, 7, 8, 9}) == std::vector<std::string>{"ab", "", ""});
        REQUIRE(s.stopped());
        REQUIRE(s.push(9).empty());
        REQUIRE(s.finish().empty());
    }
    {  // A start of a stop string that does not complete is given out once it cannot, or at the end.
        text_stream s(tok, {.stop = {"\n\nUser:", "ok!"}});
        REQUIRE(run(s, {7, 1, 9}) == std::vector<std::string>{"", "\n\nUsab", "", "ok"});
        REQUIRE_FALSE(s.stopped());
    }
    {  // Several stop strings: the earliest in the text wins; stop_index says which.
        text_stream s(tok, {.stop = {"b", "a"}});
        REQUIRE(run(s, {1}) == std::vector<std::string>{""});
        REQUIRE(s.stop_index() == 1);
    }
    {  // Invalid bytes become U+FFFD at once; an incomplete character at the end, lossily.
        text_stream s(tok);
        REQUIRE(run(s, {10, 2}) == std::vector<std::string>{"\xEF\xBF\xBD", "c", "\xEF\xBF\xBD"});
    }
    {  // Special tokens shown when asked.
        text_stream s(tok, {.decode = {.special = true}});
        REQUIRE(s.push(0) == "<s>");
    }
    REQUIRE_THROWS_WITH(text_stream(tok, {.stop = {""}}), Catch::Contains("a stop string is empty"));
}

TEST_CASE("streaming the byte-level fixture's golden ids gives its decode()", "[tokenizer][text_stream][shared]") {
    const auto folder = kvtest::shared_file("fixtures/hf/tokenizers/bytelevel");
    if (!folder) return;
    const hf_tokenizer tok = read_hf_tokenizer(*folder);
    const auto golden = kvtest::json::parse(kvtest::read_text(*folder / "golden.json"));
    std::size_t cases = 0;
    for (const auto& c : golden.at("cases")) {
        const auto ids = c.at("ids").get<std::vector<token_id>>();
        text_stream s(tok, {.decode = {.special = true}});
        std::string text;
        for (token_id t : ids) text += s.push(t);
        text += s.finish();
        REQUIRE(text == c.at("decode").get<std::string>());
        ++cases;
    }
    REQUIRE(cases == 40);
}
