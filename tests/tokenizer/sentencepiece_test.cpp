// The SentencePiece-style tokenizer with llama.cpp's rules (the llama2.c rules are
// kept by tests/io/llama2c_tokenizer_test.cpp): known encodings of small vocabularies
// for each rule (ties, merges into control tokens, special tokens cut out of the
// text, byte and unknown fallback, lead-byte characters), decoding of every token
// type, the vocabulary's checks, and the O(n log n) encoder against a quadratic one
// written from llama.cpp's description on random vocabularies and texts.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/core/rng.hpp"
#include "kvdecode/tokenizer/sentencepiece.hpp"

using namespace kvdecode;
using ids = std::vector<token_id>;

namespace {

std::string byte_name(int b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    return buf;
}

// A vocabulary built piece by piece: <unk> 0, <s> 1, </s> 2, then what is added.
struct vocab_builder {
    sentencepiece_vocab v;
    vocab_builder() {
        add("<unk>", 0, token_type::unknown);
        add("<s>", 0, token_type::control);
        add("</s>", 0, token_type::control);
        v.unk = 0;
        v.bos = 1;
        v.eos = 2;
    }
    token_id add(std::string piece, float score = 0, token_type type = token_type::normal) {
        v.pieces.push_back(std::move(piece));
        v.scores.push_back(score);
        v.types.push_back(type);
        return static_cast<token_id>(v.pieces.size() - 1);
    }
    vocab_builder& bytes(int from = 0, int to = 256) {
        for (int b = from; b < to; ++b) add(byte_name(b), 0, token_type::byte);
        return *this;
    }
    token_id id(const std::string& piece) const {
        const auto it = std::find(v.pieces.begin(), v.pieces.end(), piece);
        REQUIRE(it != v.pieces.end());
        return static_cast<token_id>(it - v.pieces.begin());
    }
    sentencepiece_tokenizer make(sentencepiece_options o = {}) const { return sentencepiece_tokenizer(v, o); }
};

const std::string mark = "\xE2\x96\x81";  // U+2581, a space in GGUF pieces

}  // namespace

TEST_CASE("llama.cpp rules: equal scores merge left to right, higher scores first", "[tokenizer]") {
    vocab_builder b;
    b.bytes();
    for (const char* p : {"a", "b", "c"}) b.add(p, -1000);
    const token_id space = b.add(mark, -1000), ab = b.add("ab", -1000), bc = b.add("bc", -1000);
    const token_id a = b.id("a"), c = b.id("c");
    REQUIRE(b.make().encode("abc") == ids{1, space, ab, c});
    b.v.scores[static_cast<std::size_t>(bc)] = -1;  // now "bc" outranks "ab"
    REQUIRE(b.make().encode("abc") == ids{1, space, a, bc});
    REQUIRE(b.make().encode("abc", {.add_special = false}) == ids{space, a, bc});
    REQUIRE(b.make().encode("") == ids{1});
    REQUIRE(b.make().encode("", {.add_special = false}).empty());
    REQUIRE(b.make({.add_eos = true}).encode("") == ids{1, 2});
    REQUIRE(b.make({.add_bos = false}).encode("c") == ids{space, c});
    REQUIRE(b.make({.add_space_prefix = false}).encode("a c") == ids{1, a, space, c});
    REQUIRE(b.make().encode("c", true, true) == ids{1, space, c, 2});  // BOS and EOS as asked
}

TEST_CASE("llama.cpp rules: merging may produce control tokens; llama2.c rules may not", "[tokenizer]") {
    // llama.cpp's text_to_token finds every token, so with parse_special = false the
    // text "<s>" still becomes BOS where the merges lead there.
    vocab_builder b;
    b.bytes();
    const token_id lt = b.add("<", -1), s = b.add("s", -1), gt = b.add(">", -1), lts = b.add("<s", -2);
    const token_id space = b.add(mark, -1);
    REQUIRE(b.make().encode("<s>") == ids{1, space, 1});
    REQUIRE(b.make().encode("<s") == ids{1, space, lts});
    REQUIRE(b.make({.rules = sentencepiece_rules::llama2c}).encode("<s>") == ids{1, space, lts, gt});
    REQUIRE(b.make().encode("s<") == ids{1, space, s, lt});
}

TEST_CASE("special tokens are cut out first: user-defined always, control and unknown with parse_special", "[tokenizer]") {
    vocab_builder b;
    b.bytes();
    const token_id space = b.add(mark, -1), a = b.add("a", -1), x = b.add("x", -1);
    const token_id user = b.add("<u>", 0, token_type::user_defined);
    const token_id lt = b.add("<", -1), gt = b.add(">", -1), s = b.add("s", -1), u = b.add("u", -1), slash = b.add("/", -1);
    const auto tok = b.make();
    // The space prefix goes before every text fragment that follows a special token.
    REQUIRE(tok.encode("a<u>x") == ids{1, space, a, user, space, x});
    REQUIRE(tok.encode("<u><u>") == ids{1, user, user});
    REQUIRE(tok.encode("a</s>x<s>") == ids{1, space, a, lt, slash, s, gt, x, lt, s, gt});
    REQUIRE(tok.encode("a</s>x<s>", {.parse_special = true}) == ids{1, space, a, 2, space, x, 1});
    REQUIRE(tok.encode("<unk>", {.parse_special = true}) == ids{1, 0});
    REQUIRE(tok.encode("<s>", {.add_special = false, .parse_special = true}) == ids{1});
    (void)u;
    // Decoding takes the space prefix off again after a special token.
    const auto parsed = tok.encode("a</s>x<s>", {.parse_special = true});
    REQUIRE(tok.decode(parsed, {.special = true}) == "<s>a</s>x<s>");
    REQUIRE(tok.decode(parsed) == "ax");
    REQUIRE(tok.decode(tok.encode("a<u>x")) == "a<u>x");
    // Longer special texts are cut out first.
    vocab_builder c;
    c.bytes();
    const token_id sp = c.add(mark, -1), ab = c.add("<ab>", 0, token_type::user_defined), abc = c.add("<ab><c>", 0, token_type::user_defined);
    REQUIRE(c.make().encode("<ab><c><ab>") == ids{1, abc, ab});
    (void)sp;
}

TEST_CASE("byte fallback, then the unknown token, then an error", "[tokenizer]") {
    vocab_builder b;
    b.bytes(0, 0x80);  // ASCII bytes only
    const token_id space = b.add(mark, -1), a = b.add("a", -1);
    const token_id ea = b.add("\xC3\xA9" "a", -1);  // "éa" without "é"
    const auto tok = b.make();
    const token_id B = b.id("<0x42>");
    REQUIRE(tok.encode("aB") == ids{1, space, a, B});
    // A character with no piece still merges (llama.cpp); llama2.c's rules fall back at once.
    REQUIRE(tok.encode("\xC3\xA9" "a") == ids{1, space, ea});
    // é has no byte pieces here: the unknown token, once for the character.
    REQUIRE(tok.encode("\xC3\xA9") == ids{1, space, 0});
    b.v.unk.reset();
    REQUIRE_THROWS_WITH(b.make().encode("\xC3\xA9"), Catch::Contains("cannot encode byte 195"));
    REQUIRE(b.make().encode("a") == ids{1, space, a});
}

TEST_CASE("characters: llama.cpp reads a lead byte's length alone, llama2.c checks the continuation bytes", "[tokenizer]") {
    vocab_builder b;
    b.bytes();
    const token_id space = b.add(mark, -1), a = b.add("a", -1), ab = b.add("ab", -1), bb = b.add("b", -1);
    const token_id c3 = b.id("<0xC3>"), x41 = b.id("<0x61>");
    (void)bb;
    // "\xC3" takes the next byte with it: the symbol "\xC3a" is no piece, so both fall back to bytes.
    REQUIRE(b.make().encode("\xC3" "ab") == ids{1, space, c3, x41, b.id("b")});
    REQUIRE(b.make({.rules = sentencepiece_rules::llama2c}).encode("\xC3" "ab") == ids{1, space, c3, ab});
    // At the end of the text the character is cut short.
    REQUIRE(b.make().encode("a\xF0") == ids{1, space, a, b.id("<0xF0>")});
    REQUIRE(b.make().encode("\xFF" "abc").size() == 6);  // 0xFF takes four bytes: "\xFF" "abc" falls back whole
}

TEST_CASE("decoding: each token type, special tokens hidden unless asked, the space after BOS", "[tokenizer]") {
    vocab_builder b;
    b.bytes();
    const token_id hello = b.add(mark + "hello", -1), world = b.add(mark + "wor" + mark + "ld", -1);
    const token_id user = b.add("<u>", 0, token_type::user_defined), unused = b.add("<unused0>", 0, token_type::unused);
    const token_id undefined = b.add("<undef>", 0, token_type::undefined);
    const auto tok = b.make();
    REQUIRE(tok.decode(ids{1, hello, world, 2}) == "hello wor ld");
    REQUIRE(tok.decode(ids{1, hello, world, 2}, {.special = true}) == "<s>hello wor ld</s>");
    REQUIRE(tok.decode(ids{hello}) == " hello");
    REQUIRE(tok.decode(ids{0, hello}) == "hello");                       // unknown: hidden (llama.cpp), then no prefix
    REQUIRE(tok.decode(ids{0}, {.special = true}) == "<unk>");
    REQUIRE(tok.decode(ids{user, unused, undefined}) == "<u>");
    REQUIRE(tok.decode(ids{user, unused, undefined}, {.special = true}) == "<u>");
    REQUIRE(tok.decode(ids{b.id("<0xC3>"), b.id("<0xA9>")}) == "\xC3\xA9");
    REQUIRE(tok.decode_token(1, hello) == "hello");
    REQUIRE(tok.decode_token(-1, hello) == " hello");
    REQUIRE(tok.decode_token(hello, hello) == " hello");
    REQUIRE(b.make({.add_space_prefix = false}).decode_token(1, hello) == " hello");
    // With llama2.c's rules the unknown token decodes to its text.
    REQUIRE(b.make({.rules = sentencepiece_rules::llama2c}).decode(ids{0}) == "<unk>");
    REQUIRE_THROWS_AS(tok.decode(ids{static_cast<token_id>(tok.vocab_size())}), std::invalid_argument);
    REQUIRE_THROWS_AS(tok.decode_token(1, -1), std::invalid_argument);
    // Pieces with ' ' (llama2.c's spelling) are taken as they are.
    vocab_builder c;
    c.bytes();
    const token_id sp_hi = c.add(" hi", -1);
    c.add(" ", -1), c.add("h", -1), c.add("i", -1), c.add("hi", -1);
    const auto plain = c.make({.escaped_spaces = false});
    REQUIRE(plain.encode("hi") == ids{1, sp_hi});
    REQUIRE(plain.decode(plain.encode("hi hi")) == "hi hi");
}

TEST_CASE("a vocabulary that does not hold together is rejected", "[tokenizer][errors]") {
    const auto rejects = [](sentencepiece_vocab v, sentencepiece_options o, const char* what) {
        CAPTURE(what);
        REQUIRE_THROWS_WITH(sentencepiece_tokenizer(std::move(v), o), Catch::Contains(what));
    };
    vocab_builder b;
    b.bytes(0, 4);
    REQUIRE(b.make().vocab_size() == 7);
    auto v = b.v;
    v.scores.pop_back();
    rejects(v, {}, "6 scores and 7 token types for 7 pieces");
    v = b.v;
    v.bos = 7;
    rejects(v, {}, "BOS id 7 outside the vocabulary of 7");
    v = b.v;
    v.pad = -1;
    rejects(v, {}, "padding id -1 outside");
    v = b.v;
    v.bos.reset();
    rejects(v, {}, "add_bos without a BOS token");
    REQUIRE(sentencepiece_tokenizer(v, {.add_bos = false}).encode("").empty());
    REQUIRE_THROWS_WITH(sentencepiece_tokenizer(v, {.add_bos = false}).bos(), Catch::Contains("no BOS token"));
    v = b.v;
    v.eos.reset();
    rejects(v, {.add_eos = true}, "add_eos without an EOS token");
    v = b.v;
    v.types[3] = token_type::byte;
    v.pieces[3] = "<0xZZ>";
    rejects(v, {}, "byte token 3 is not <0xXX>");
    v = b.v;
    v.types[3] = static_cast<token_type>(9);
    rejects(v, {}, "token 3 has type 9");
    v = b.v;
    v.scores[4] = std::numeric_limits<float>::quiet_NaN();
    rejects(v, {}, "piece 4 has a NaN score");
    rejects(sentencepiece_vocab{}, {.add_bos = false}, "vocabulary of 0 pieces");
    // EOS joins the end-of-generation tokens.
    v = b.v;
    v.end_of_generation = {3};
    REQUIRE(sentencepiece_tokenizer(v).end_of_generation() == ids{2, 3});
    v.end_of_generation = {7};
    rejects(v, {}, "end-of-generation id 7 outside");
}

namespace {

// llama.cpp's SPM tokenization written plainly (no queue: every step scans all
// pairs), from its description: special tokens cut out longest first, space prefix
// per fragment after a special token, ' ' -> U+2581, lead-byte characters, merge the
// best-scoring pair (leftmost on ties) into any token, bytes or unknown for the rest.
std::vector<token_id> reference_encode(const sentencepiece_vocab& v, const sentencepiece_options& o, const std::string& text,
                                       bool add_special, bool parse_special) {
    std::map<std::string, token_id> token;
    for (std::size_t i = 0; i < v.pieces.size(); ++i)
        if (!v.pieces[i].empty()) token.emplace(v.pieces[i], static_cast<token_id>(i));
    std::vector<token_id> specials;
    for (std::size_t i = 0; i < v.pieces.size(); ++i) {
        const token_type t = v.types[i];
        if (v.pieces[i].empty()) continue;
        if (t == token_type::user_defined || (parse_special && (t == token_type::control || t == token_type::unknown)))
            specials.push_back(static_cast<token_id>(i));
    }
    std::stable_sort(specials.begin(), specials.end(),
                     [&](token_id a, token_id b) { return v.pieces[std::size_t(a)].size() > v.pieces[std::size_t(b)].size(); });
    std::vector<std::pair<std::string, token_id>> fragments;
    if (!text.empty()) fragments.emplace_back(text, -1);
    for (token_id s : specials) {
        const std::string& st = v.pieces[std::size_t(s)];
        std::vector<std::pair<std::string, token_id>> next;
        for (const auto& [raw, id] : fragments) {
            if (id >= 0) {
                next.emplace_back(raw, id);
                continue;
            }
            std::string rest = raw;
            for (std::size_t hit; (hit = rest.find(st)) != std::string::npos;) {
                if (hit > 0) next.emplace_back(rest.substr(0, hit), -1);
                next.emplace_back(st, s);
                rest = rest.substr(hit + st.size());
            }
            if (!rest.empty()) next.emplace_back(rest, -1);
        }
        fragments = next;
    }
    std::vector<token_id> out;
    if (add_special && o.add_bos) out.push_back(*v.bos);
    bool after_special = true;
    for (const auto& [raw, id] : fragments) {
        if (id >= 0) {
            out.push_back(id);
            after_special = true;
            continue;
        }
        std::string t = (o.add_space_prefix && after_special ? " " : "") + raw, escaped;
        after_special = false;
        for (char ch : t) escaped += ch == ' ' ? mark : std::string(1, ch);
        std::vector<std::string> symbols;
        for (std::size_t i = 0; i < escaped.size();) {
            const auto lead = static_cast<unsigned char>(escaped[i]);
            std::size_t n = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
            n = std::min(n, escaped.size() - i);
            symbols.push_back(escaped.substr(i, n));
            i += n;
        }
        for (;;) {
            std::size_t best = symbols.size();
            float best_score = 0;
            for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
                const auto it = token.find(symbols[i] + symbols[i + 1]);
                if (it == token.end()) continue;
                const float sc = v.scores[std::size_t(it->second)];
                if (best == symbols.size() || sc > best_score) best = i, best_score = sc;
            }
            if (best == symbols.size()) break;
            symbols[best] += symbols[best + 1];
            symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
        }
        for (const std::string& sym : symbols) {
            if (const auto it = token.find(sym); it != token.end()) {
                out.push_back(it->second);
                continue;
            }
            std::vector<token_id> bytes;
            for (unsigned char ch : sym) {
                auto it = token.find(byte_name(ch));
                if (it == token.end()) it = token.find(std::string(1, static_cast<char>(ch)));
                if (it == token.end()) break;
                bytes.push_back(it->second);
            }
            if (bytes.size() == sym.size()) {
                out.insert(out.end(), bytes.begin(), bytes.end());
            } else {
                if (!v.unk) throw std::invalid_argument("reference: no piece for a byte");
                out.push_back(*v.unk);
            }
        }
    }
    if (add_special && o.add_eos) out.push_back(*v.eos);
    return out;
}

}  // namespace

TEST_CASE("the encoder agrees with a quadratic llama.cpp-rules encoder on random vocabularies", "[tokenizer]") {
    // Few characters and few distinct scores, so most decisions are ties; special
    // tokens made of the same characters; some bytes without byte pieces; texts with
    // stray bytes and special-token texts.
    kvdecode::rng gen(17);
    const std::vector<std::string> alphabet = {"a", "b", "c", " ", "\xC3\xA9", "<", ">", "\xC3", "\xFF"};
    const auto pick = [&](std::size_t n) { return static_cast<std::size_t>(gen.next_u64() % n); };
    for (int vocab = 0; vocab < 40; ++vocab) {
        vocab_builder b;
        for (int x = 0; x < 256; ++x)
            if (pick(4) != 0) b.add(byte_name(x), 0, token_type::byte);
        std::set<std::string> seen(b.v.pieces.begin(), b.v.pieces.end());
        for (int i = 0; i < 60; ++i) {
            std::string p;
            for (std::size_t len = 1 + pick(4); p.size() < len;) p += alphabet[pick(alphabet.size())];
            std::string escaped;
            for (char ch : p) escaped += ch == ' ' ? mark : std::string(1, ch);
            if (!seen.insert(escaped).second) continue;
            const std::size_t kind = pick(20);
            const token_type t = kind == 0 ? token_type::control : kind == 1 ? token_type::user_defined
                                 : kind == 2 ? token_type::unused : token_type::normal;
            b.add(escaped, -static_cast<float>(pick(3)), t);
        }
        if (pick(3) == 0) b.v.unk.reset();
        const sentencepiece_options o{.add_bos = pick(4) != 0, .add_eos = pick(4) == 0, .add_space_prefix = pick(4) != 0};
        const auto tok = b.make(o);
        CAPTURE(vocab);
        for (int trial = 0; trial < 60; ++trial) {
            std::string text;
            for (std::size_t n = pick(40); n > 0; --n) {
                if (pick(10) == 0) text += b.v.pieces[pick(b.v.pieces.size())];
                else text += alphabet[pick(alphabet.size())];
            }
            CAPTURE(text);
            for (bool parse_special : {false, true}) {
                std::optional<std::vector<token_id>> expected;
                try {
                    expected = reference_encode(b.v, o, text, true, parse_special);
                } catch (const std::invalid_argument&) {
                }
                if (expected) {
                    REQUIRE(tok.encode(text, {.parse_special = parse_special}) == *expected);
                } else {
                    REQUIRE_THROWS_AS(tok.encode(text, {.parse_special = parse_special}), std::invalid_argument);
                }
            }
        }
    }
}
