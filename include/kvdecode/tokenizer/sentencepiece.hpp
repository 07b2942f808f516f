#pragma once
// A SentencePiece-style vocabulary (pieces with scores and token types) and its
// tokenizer: the one implementation behind llama2.c tokenizer files
// (io/llama2c_tokenizer.hpp) and GGUF's `llama` vocabularies (io/gguf_vocab.hpp).
//
// Encoding, as llama.cpp's llm_tokenizer_spm does it:
//  1. special tokens are cut out of the text first (tokenizer_st_partition):
//     user-defined tokens always, control and unknown ones only with parse_special;
//     longer token texts first, every occurrence left to right;
//  2. each remaining text fragment gets the space prefix when it starts the input or
//     follows a special token, and its spaces become U+2581 where the pieces spell them so;
//  3. the fragment is cut into UTF-8 characters, then the adjacent pair whose
//     concatenation is a piece of the highest score merges, the leftmost on equal
//     scores (with every score equal, merging goes left to right), until no pair is a piece;
//  4. a symbol that is no piece falls back to its bytes' <0xXX> pieces, or to the
//     unknown token when a byte has none.
// Merging through a priority queue takes O(n log n) for n characters.
//
// Two rule sets differ where llama2.c's own tokenizer (run.c, and kvdecode's before
// GGUF) and llama.cpp differ on text no trained vocabulary meets:
//  - llama_cpp: a character's length is its lead byte's alone (a stray lead byte takes
//    the next bytes with it); a character that is no piece still merges with its
//    neighbours; merging may produce any token; a byte with no piece gives the
//    unknown token (an error without one); unknown tokens are hidden when decoding.
//  - llama2c: a lead byte without its continuation bytes is one byte; a character that
//    is no piece becomes byte pieces at once and never merges; merging produces normal
//    pieces only, so any text, any bytes, decode back to themselves; a byte with no
//    piece is an error; the unknown token decodes to its text.
// On UTF-8 text over a vocabulary whose pieces are made of its own characters (every
// trained one) the two give the same ids.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kvdecode/core/types.hpp"
#include "kvdecode/tokenizer/options.hpp"

namespace kvdecode {

// GGUF's tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class token_type : std::int32_t {
    undefined = 0,     // decodes to nothing
    normal = 1,        // text, U+2581 read as a space
    unknown = 2,       // <unk>: what a character with no piece becomes
    control = 3,       // <s>, </s>...: hidden when decoding unless asked for
    user_defined = 4,  // always cut out of the text as itself, decoded as its text
    unused = 5,        // decodes to nothing
    byte = 6,          // <0xXX>: one byte
};

// Which tokenizer the encoder imitates where they differ (see the top of this file).
enum class sentencepiece_rules { llama_cpp, llama2c };

// The vocabulary: one entry per token id in each of pieces, scores and types.
struct sentencepiece_vocab {
    std::vector<std::string> pieces;
    std::vector<float> scores;
    std::vector<token_type> types;
    std::optional<token_id> bos, eos, unk, pad;
    std::vector<token_id> end_of_generation;  // tokens that end generation (EOS added if missing)
};

struct sentencepiece_options {
    bool add_bos = true;           // encode() starts with BOS (GGUF tokenizer.ggml.add_bos_token)
    bool add_eos = false;          // encode() ends with EOS (tokenizer.ggml.add_eos_token)
    bool add_space_prefix = true;  // a space before text that starts the input or follows a special token
    bool escaped_spaces = true;    // pieces spell a space U+2581 '▁' (GGUF); false: ' ' (llama2.c)
    sentencepiece_rules rules = sentencepiece_rules::llama_cpp;
};

class sentencepiece_tokenizer {
public:
    // The ids llama2.c's format fixes (its readers set bos(), eos() to them; a GGUF
    // vocabulary has its own, from metadata).
    static constexpr token_id unk_id = 0;
    static constexpr token_id bos_id = 1;
    static constexpr token_id eos_id = 2;

    // Throws std::invalid_argument for an inconsistent vocabulary: array lengths that
    // differ, a special id outside it, add_bos / add_eos without that token, a NaN
    // score, a byte token that does not read <0xXX>.
    explicit sentencepiece_tokenizer(sentencepiece_vocab vocab, sentencepiece_options options = {})
        : vocab_(std::move(vocab)), options_(options) {
        const std::size_t n = vocab_.pieces.size();
        if (n == 0 || n > static_cast<std::size_t>(INT32_MAX)) fail("vocabulary of " + std::to_string(n) + " pieces");
        if (vocab_.scores.size() != n || vocab_.types.size() != n)
            fail(std::to_string(vocab_.scores.size()) + " scores and " + std::to_string(vocab_.types.size()) +
                 " token types for " + std::to_string(n) + " pieces");
        const std::pair<const char*, std::optional<token_id>> specials[] = {
            {"BOS", vocab_.bos}, {"EOS", vocab_.eos}, {"unknown", vocab_.unk}, {"padding", vocab_.pad}};
        for (const auto& [name, id] : specials)
            if (id && (*id < 0 || static_cast<std::size_t>(*id) >= n))
                fail(std::string(name) + " id " + std::to_string(*id) + " outside the vocabulary of " + std::to_string(n));
        if (options_.add_bos && !vocab_.bos) fail("add_bos without a BOS token");
        if (options_.add_eos && !vocab_.eos) fail("add_eos without an EOS token");
        for (token_id id : vocab_.end_of_generation)
            if (id < 0 || static_cast<std::size_t>(id) >= n) fail("end-of-generation id " + std::to_string(id) + " outside the vocabulary");
        if (vocab_.eos && std::find(vocab_.end_of_generation.begin(), vocab_.end_of_generation.end(), *vocab_.eos) ==
                              vocab_.end_of_generation.end())
            vocab_.end_of_generation.insert(vocab_.end_of_generation.begin(), *vocab_.eos);
        index();
    }

    std::size_t vocab_size() const noexcept { return vocab_.pieces.size(); }
    const sentencepiece_options& options() const noexcept { return options_; }
    std::string_view piece(token_id id) const { return vocab_.pieces[checked(id)]; }
    float score(token_id id) const { return vocab_.scores[checked(id)]; }
    token_type type(token_id id) const { return vocab_.types[checked(id)]; }

    // Special ids; bos() and eos() throw std::invalid_argument where the vocabulary has none.
    token_id bos() const { return required(vocab_.bos, "BOS"); }
    token_id eos() const { return required(vocab_.eos, "EOS"); }
    std::optional<token_id> find_bos() const noexcept { return vocab_.bos; }
    std::optional<token_id> find_eos() const noexcept { return vocab_.eos; }
    std::optional<token_id> unk() const noexcept { return vocab_.unk; }
    std::optional<token_id> pad() const noexcept { return vocab_.pad; }
    const std::vector<token_id>& end_of_generation() const noexcept { return vocab_.end_of_generation; }

    // The id whose piece is `text` (as the vocabulary spells it: U+2581 for spaces
    // where it does so), the first on equal pieces; nullopt if none.
    std::optional<token_id> token_of(std::string_view text) const {
        const auto it = piece_ids_.find(text);
        return it == piece_ids_.end() ? std::nullopt : std::optional<token_id>(it->second);
    }

    // llama.cpp's llama_tokenize(text, add_special, parse_special).
    std::vector<token_id> encode(std::string_view text, const encode_options& o = {}) const {
        return encode_with(text, o.add_special && options_.add_bos, o.add_special && options_.add_eos, o.parse_special);
    }

    // BOS and EOS as asked, whatever the vocabulary's add_bos / add_eos say (the
    // llama2.c tokenizer's signature; special token texts stay text).
    std::vector<token_id> encode(std::string_view text, bool add_bos, bool add_eos = false) const {
        return encode_with(text, add_bos, add_eos, false);
    }

private:
    std::vector<token_id> encode_with(std::string_view text, bool add_bos, bool add_eos, bool parse_special) const {
        std::vector<token_id> ids;
        if (add_bos) ids.push_back(bos());
        bool after_special = true;  // the input's start counts as after a special token
        for (const fragment& f : partition(text, parse_special)) {
            if (f.token >= 0) {
                ids.push_back(f.token);
                after_special = true;
            } else {
                encode_fragment(text.substr(f.begin, f.size), options_.add_space_prefix && after_special, ids);
                after_special = false;
            }
        }
        if (add_eos) ids.push_back(eos());
        return ids;
    }

public:

    // The bytes `id` stands for when it follows `previous` (any id; one outside the
    // vocabulary, e.g. -1, stands for none): a byte token is its byte, a normal piece
    // its text with U+2581 as spaces, control and unknown tokens nothing unless asked
    // for; the space prefix the encoder put after a special token (BOS first of all)
    // is taken off again.
    std::string decode_token(token_id previous, token_id id, const decode_options& o = {}) const {
        const std::size_t i = checked(id);
        if (hidden_[i] && !o.special) return {};
        std::string out = decoded_[i];
        if (options_.add_space_prefix && previous >= 0 && static_cast<std::size_t>(previous) < vocab_size() &&
            takes_space_prefix_after(vocab_.types[static_cast<std::size_t>(previous)]) && !out.empty() && out.front() == ' ')
            out.erase(0, 1);
        return out;
    }

    std::string decode(std::span<const token_id> ids, const decode_options& o = {}) const {
        std::string out;
        token_id previous = -1;
        for (token_id id : ids) {
            out += decode_token(previous, id, o);
            previous = id;
        }
        return out;
    }

private:
    struct fragment {
        std::size_t begin = 0, size = 0;  // raw text
        token_id token = -1;              // or a special token
    };

    // A heterogeneous hash: pieces are looked up by string_view, without a copy.
    struct text_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    using piece_map = std::unordered_map<std::string, token_id, text_hash, std::equal_to<>>;

    [[noreturn]] static void fail(const std::string& what) {
        throw std::invalid_argument("kvdecode: sentencepiece_tokenizer: " + what);
    }

    static token_id required(const std::optional<token_id>& id, const char* name) {
        if (!id) throw std::invalid_argument(std::string("kvdecode: tokenizer: the vocabulary has no ") + name + " token");
        return *id;
    }

    std::size_t checked(token_id id) const {
        if (id < 0 || static_cast<std::size_t>(id) >= vocab_.pieces.size())
            throw std::invalid_argument("kvdecode: tokenizer: token id " + std::to_string(id) +
                                        " is outside the vocabulary [0, " + std::to_string(vocab_.pieces.size()) + ")");
        return static_cast<std::size_t>(id);
    }

    bool llama2c() const noexcept { return options_.rules == sentencepiece_rules::llama2c; }

    // The encoder puts the space prefix after every token cut out of the text.
    static bool takes_space_prefix_after(token_type t) noexcept {
        return t == token_type::control || t == token_type::unknown || t == token_type::user_defined;
    }

    // The byte "<0xXX>" stands for (either case of hex digit), or -1.
    static int byte_value(std::string_view p) noexcept {
        auto hex = [](char ch) -> int {
            if (ch >= '0' && ch <= '9') return ch - '0';
            if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
            if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
            return -1;
        };
        if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
        const int hi = hex(p[3]), lo = hex(p[4]);
        return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
    }

    static std::string unescape_spaces(std::string_view p) {
        std::string out;
        out.reserve(p.size());
        for (std::size_t i = 0; i < p.size();) {
            if (p.substr(i, 3) == space_mark) {
                out += ' ';
                i += 3;
            } else {
                out += p[i++];
            }
        }
        return out;
    }

    void index() {
        const std::size_t n = vocab_.pieces.size();
        decoded_.resize(n);
        hidden_.assign(n, false);
        byte_token_.fill(-1);
        for (std::size_t i = 0; i < n; ++i) {
            const std::string& p = vocab_.pieces[i];
            if (vocab_.scores[i] != vocab_.scores[i]) fail("piece " + std::to_string(i) + " has a NaN score");
            const token_type t = vocab_.types[i];
            switch (t) {
                case token_type::normal: decoded_[i] = options_.escaped_spaces ? unescape_spaces(p) : p; break;
                case token_type::byte: {
                    const int b = byte_value(p);
                    if (b < 0) fail("byte token " + std::to_string(i) + " is not <0xXX>");
                    decoded_[i] = std::string(1, static_cast<char>(b));
                    if (llama2c() && byte_token_[static_cast<std::size_t>(b)] < 0)
                        byte_token_[static_cast<std::size_t>(b)] = static_cast<token_id>(i);
                    break;
                }
                case token_type::control:
                case token_type::unknown:
                case token_type::user_defined:
                    decoded_[i] = p;
                    hidden_[i] = t == token_type::control || (t == token_type::unknown && !llama2c());
                    if (!p.empty()) specials_.push_back(static_cast<token_id>(i));
                    break;
                case token_type::unused:
                case token_type::undefined: break;
                default: fail("token " + std::to_string(i) + " has type " + std::to_string(static_cast<int>(t)));
            }
            // llama.cpp merges into any token; llama2.c's rules into normal pieces only.
            if (!p.empty() && (!llama2c() || t == token_type::normal)) lookup_.emplace(p, static_cast<token_id>(i));  // first id wins
            piece_ids_.emplace(p, static_cast<token_id>(i));
        }
        if (!llama2c()) {
            // llama.cpp's byte_to_token: the piece "<0xXX>" (upper-case hex), else the byte itself.
            static constexpr char hex[] = "0123456789ABCDEF";
            for (int b = 0; b < 256; ++b) {
                const char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
                const char raw = static_cast<char>(b);
                auto it = lookup_.find(std::string_view(name, 6));
                if (it == lookup_.end()) it = lookup_.find(std::string_view(&raw, 1));
                if (it != lookup_.end()) byte_token_[static_cast<std::size_t>(b)] = it->second;
            }
        }
        // Longer texts are cut out first; ids break ties (llama.cpp leaves their order unspecified).
        std::stable_sort(specials_.begin(), specials_.end(), [&](token_id a, token_id b) {
            return vocab_.pieces[static_cast<std::size_t>(a)].size() > vocab_.pieces[static_cast<std::size_t>(b)].size();
        });
    }

    // llama.cpp's tokenizer_st_partition: for each special token in turn, every
    // occurrence in each raw fragment is cut out, left to right.
    std::vector<fragment> partition(std::string_view text, bool parse_special) const {
        std::vector<fragment> fragments;
        if (text.empty()) return fragments;
        fragments.push_back({0, text.size(), -1});
        for (token_id id : specials_) {
            const token_type t = vocab_.types[static_cast<std::size_t>(id)];
            if (!parse_special && t != token_type::user_defined) continue;
            const std::string_view special = vocab_.pieces[static_cast<std::size_t>(id)];
            std::vector<fragment> next;
            next.reserve(fragments.size());
            for (const fragment& f : fragments) {
                if (f.token >= 0) {
                    next.push_back(f);
                    continue;
                }
                const std::string_view raw = text.substr(f.begin, f.size);
                std::size_t at = 0;
                for (std::size_t hit; (hit = raw.find(special, at)) != std::string_view::npos; at = hit + special.size()) {
                    if (hit > at) next.push_back({f.begin + at, hit - at, -1});
                    next.push_back({f.begin + hit, special.size(), id});
                }
                if (at < raw.size()) next.push_back({f.begin + at, raw.size() - at, -1});
            }
            fragments = std::move(next);
        }
        return fragments;
    }

    // Bytes in the character starting text[0].
    std::size_t character_length(std::string_view text) const noexcept {
        const auto lead = static_cast<unsigned char>(text[0]);
        if (!llama2c()) {
            // llama.cpp's unicode_len_utf8: by the lead byte's high nibble alone.
            static constexpr std::uint8_t by_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
            return std::min<std::size_t>(by_nibble[lead >> 4], text.size());
        }
        // A whole UTF-8 character, or 1 for a byte that does not start one.
        const std::size_t n = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 1;
        if (n > text.size()) return 1;
        for (std::size_t i = 1; i < n; ++i)
            if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) return 1;
        return n;
    }

    void encode_fragment(std::string_view raw, bool space_prefix, std::vector<token_id>& out) const {
        std::string text;
        const std::string_view space = options_.escaped_spaces ? space_mark : std::string_view(" ");
        text.reserve(raw.size() + 3);
        if (space_prefix) text += space;
        if (!options_.escaped_spaces) {
            text += raw;
        } else {
            for (std::size_t at = 0; at < raw.size();) {
                const std::size_t hit = std::min(raw.find(' ', at), raw.size());
                text.append(raw.substr(at, hit - at));
                if (hit < raw.size()) text += space;
                at = hit + 1;
            }
        }

        // Symbols: spans of `text` in a linked list, each with its piece (-1: none);
        // merging grows the left one and empties the right one.
        const std::size_t none = SIZE_MAX;
        std::vector<std::size_t> start, size, next;
        std::vector<token_id> id;
        start.reserve(text.size());
        size.reserve(text.size());
        id.reserve(text.size());
        for (std::size_t i = 0; i < text.size();) {
            const std::size_t n = character_length(std::string_view(text).substr(i));
            const auto it = lookup_.find(std::string_view(text).substr(i, n));
            start.push_back(i);
            size.push_back(n);
            id.push_back(it == lookup_.end() ? -1 : it->second);
            i += n;
        }
        const std::size_t count = start.size();
        std::vector<std::size_t> prev(count);
        next.resize(count);
        for (std::size_t i = 0; i < count; ++i) {
            prev[i] = i == 0 ? none : i - 1;
            next[i] = i + 1 == count ? none : i + 1;
        }
        // llama2.c: a character that is no piece never merges (llama.cpp: it may).
        const bool merge_unknown = !llama2c();

        // Candidates in a max-heap by score, then leftmost (llama.cpp's llm_bigram_spm
        // order). A merge changes its symbols, so a candidate whose symbols no longer
        // have the sizes it was made with is stale and skipped.
        struct candidate {
            float score;
            std::size_t left, right, bytes;
            token_id merged;
        };
        const auto lower = [](const candidate& a, const candidate& b) {
            return a.score < b.score || (a.score == b.score && a.left > b.left);
        };
        std::vector<candidate> heap;
        heap.reserve(count > 0 ? 3 * count : 0);  // count - 1 pairs at first, at most two more per merge
        const auto consider = [&](std::size_t l, std::size_t r) {
            if (l == none || r == none || (!merge_unknown && (id[l] < 0 || id[r] < 0))) return;
            const auto it = lookup_.find(std::string_view(text).substr(start[l], size[l] + size[r]));
            if (it == lookup_.end()) return;
            heap.push_back({vocab_.scores[static_cast<std::size_t>(it->second)], l, r, size[l] + size[r], it->second});
            std::push_heap(heap.begin(), heap.end(), lower);
        };
        for (std::size_t i = 0; i + 1 < count; ++i) consider(i, i + 1);
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end(), lower);
            const candidate c = heap.back();
            heap.pop_back();
            if (size[c.left] == 0 || size[c.right] == 0 || size[c.left] + size[c.right] != c.bytes || next[c.left] != c.right)
                continue;
            size[c.left] = c.bytes;
            size[c.right] = 0;
            id[c.left] = c.merged;
            next[c.left] = next[c.right];
            if (next[c.left] != none) prev[next[c.left]] = c.left;
            consider(prev[c.left], c.left);
            consider(c.left, next[c.left]);
        }

        // Symbol 0 is never a right side, so the list starts there. (llama.cpp's
        // resegment() would split a symbol that is no piece back along its merges;
        // merges only ever make pieces, so such a symbol is one unmerged character.)
        for (std::size_t i = 0; i != none && count > 0; i = next[i]) {
            if (id[i] >= 0) out.push_back(id[i]);
            else append_bytes(std::string_view(text).substr(start[i], size[i]), out);
        }
    }

    // Byte fallback for a symbol that is no piece: each byte's piece, else the unknown
    // token for the whole symbol (llama.cpp's rules), else an error.
    void append_bytes(std::string_view symbol, std::vector<token_id>& out) const {
        for (unsigned char b : symbol) {
            if (byte_token_[b] >= 0) continue;
            if (!llama2c() && vocab_.unk) {
                out.push_back(*vocab_.unk);
                return;
            }
            throw std::invalid_argument("kvdecode: tokenizer: cannot encode byte " + std::to_string(b) +
                                        ": no piece and no <0xXX> byte piece for it" +
                                        (llama2c() ? "" : ", and no unknown token"));
        }
        for (unsigned char b : symbol) out.push_back(byte_token_[b]);
    }

    static constexpr std::string_view space_mark = "\xE2\x96\x81";  // U+2581

    sentencepiece_vocab vocab_;
    sentencepiece_options options_;
    std::vector<std::string> decoded_;      // what each token decodes to (when shown)
    std::vector<char> hidden_;              // decoded only with decode_options::special
    std::vector<token_id> specials_;        // control, unknown, user-defined: longest text first
    std::array<token_id, 256> byte_token_{};  // each byte's fallback token, else -1
    piece_map lookup_;                      // what text may become: the merge targets
    piece_map piece_ids_;                   // every piece, for token_of()
};

}  // namespace kvdecode
