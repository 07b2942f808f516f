#pragma once
// A BPE model with ranked merges: Hugging Face tokenizers' models::bpe::BPE (the
// "model" stage of a tokenizer.json), also what GGUF's `gpt2` vocabularies are.
//
// tokenize(word), for one pre-tokenized word:
//  1. the word is cut into characters; a character that is a piece is its symbol;
//     one that is not becomes its bytes' "<0xXX>" pieces with byte_fallback (when all
//     of them exist), else the unknown piece (consecutive unknown characters make one
//     with fuse_unk), else it is dropped (no unknown token: tokenizers does the same);
//     as in tokenizers, an unknown piece is placed when the next character that is a
//     piece comes (or at the end), after any byte pieces between;
//  2. the adjacent pair whose merge has the lowest rank merges, the leftmost on equal
//     ranks, until no adjacent pair has a merge;
// with ignore_merges, a word that is itself a piece is that piece at once.
// Merging goes through a priority queue: O(n log n) for n characters.
//
// Pieces are Unicode text as the vocabulary spells it (byte-level vocabularies spell
// bytes with byte_level_alphabet's characters; SentencePiece-style ones spell spaces
// U+2581); the model does not care which.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kvdecode/core/types.hpp"
#include "kvdecode/tokenizer/utf8.hpp"

namespace kvdecode {

// A BPE model as plain data: what tokenizer.json's "model" holds, or GGUF's
// tokenizer.ggml.tokens and tokenizer.ggml.merges.
struct bpe_model_data {
    std::vector<std::string> pieces;                          // the piece of each id, 0..n-1
    std::vector<std::pair<std::string, std::string>> merges;  // by rank: the first merges first
    std::optional<std::string> unk_token;                     // the unknown piece's text
    bool byte_fallback = false;  // a character that is no piece becomes its "<0xXX>" pieces
    bool fuse_unk = false;       // consecutive unknown characters become one unknown token
    bool ignore_merges = false;  // a word that is a piece is taken whole, before merging
};

class bpe_model {
public:
    // Throws std::invalid_argument for an empty vocabulary, a piece that is not valid
    // UTF-8, a piece twice, or a merge whose parts or result are not pieces (as
    // tokenizers' BpeBuilder refuses them). An unknown token that is no piece is an
    // error only when a word needs it (as in tokenizers).
    explicit bpe_model(bpe_model_data data) : data_(std::move(data)) {
        const std::size_t n = data_.pieces.size();
        if (n == 0 || n > static_cast<std::size_t>(INT32_MAX)) fail("vocabulary of " + std::to_string(n) + " pieces");
        ids_.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
            if (!utf8::is_valid(data_.pieces[i])) fail("piece " + std::to_string(i) + " is not valid UTF-8");
            if (!ids_.emplace(data_.pieces[i], static_cast<token_id>(i)).second)
                fail("piece \"" + data_.pieces[i] + "\" appears twice (ids " + std::to_string(ids_.at(data_.pieces[i])) +
                     " and " + std::to_string(i) + ")");
        }
        merges_.reserve(data_.merges.size());
        for (std::size_t rank = 0; rank < data_.merges.size(); ++rank) {
            const auto& [a, b] = data_.merges[rank];
            const token_id ia = required(a, rank), ib = required(b, rank), merged = required(a + b, rank);
            // A pair listed twice keeps its last rank (tokenizers collects them into a map).
            merges_.insert_or_assign(pair_key(ia, ib), merge{static_cast<std::uint32_t>(rank), merged});
        }
        if (data_.unk_token)
            if (const auto it = ids_.find(*data_.unk_token); it != ids_.end()) unk_ = it->second;
        if (data_.byte_fallback) {
            static constexpr char hex[] = "0123456789ABCDEF";
            for (int b = 0; b < 256; ++b) {
                const char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
                const auto it = ids_.find(std::string_view(name, 6));
                byte_piece_[static_cast<std::size_t>(b)] = it == ids_.end() ? -1 : it->second;
            }
        }
    }

    const bpe_model_data& data() const noexcept { return data_; }
    std::size_t vocab_size() const noexcept { return data_.pieces.size(); }
    std::string_view piece(token_id id) const { return data_.pieces.at(static_cast<std::size_t>(id)); }

    std::optional<token_id> token_of(std::string_view piece) const {
        const auto it = ids_.find(piece);
        return it == ids_.end() ? std::nullopt : std::optional<token_id>(it->second);
    }

    // Appends the ids of one pre-tokenized word (valid UTF-8) to `out`. Throws
    // std::invalid_argument when the word needs the unknown token and it is no piece.
    void tokenize(std::string_view word, std::vector<token_id>& out) const {
        if (word.empty()) return;
        if (data_.ignore_merges)
            if (const auto id = token_of(word)) {
                out.push_back(*id);
                return;
            }
        std::vector<token_id> symbols;
        symbols.reserve(word.size());
        // An unknown character's token waits until the next character that is a piece,
        // or the end, so that fuse_unk can grow it; byte pieces do not wait for it
        // (tokenizers' merge_word, which puts them first in that case).
        std::optional<token_id> unknown;
        for (std::size_t i = 0; i < word.size();) {
            const std::string_view ch = word.substr(i, std::min(utf8::length_of_valid(word.substr(i)), word.size() - i));
            i += ch.size();
            if (const auto id = token_of(ch)) {
                if (unknown) symbols.push_back(*unknown), unknown.reset();
                symbols.push_back(*id);
                continue;
            }
            if (data_.byte_fallback &&
                std::all_of(ch.begin(), ch.end(), [&](char b) { return byte_piece_[static_cast<unsigned char>(b)] >= 0; })) {
                for (char b : ch) symbols.push_back(byte_piece_[static_cast<unsigned char>(b)]);
                continue;
            }
            if (!data_.unk_token) continue;  // dropped
            if (!unk_)
                throw std::invalid_argument("kvdecode: bpe_model: the unknown token \"" + *data_.unk_token +
                                            "\" is not in the vocabulary");
            if (unknown && !data_.fuse_unk) symbols.push_back(*unknown);
            unknown = unk_;
        }
        if (unknown) symbols.push_back(*unknown);
        merge_all(symbols);
        out.insert(out.end(), symbols.begin(), symbols.end());
    }

private:
    struct merge {
        std::uint32_t rank;
        token_id merged;
    };

    // Heterogeneous lookup by string_view.
    struct text_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };

    static std::uint64_t pair_key(token_id a, token_id b) noexcept {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
    }

    [[noreturn]] static void fail(const std::string& what) { throw std::invalid_argument("kvdecode: bpe_model: " + what); }

    token_id required(const std::string& piece, std::size_t rank) const {
        const auto it = ids_.find(piece);
        if (it == ids_.end())
            fail("merge " + std::to_string(rank) + " (\"" + data_.merges[rank].first + "\" \"" + data_.merges[rank].second +
                 "\"): \"" + piece + "\" is not in the vocabulary");
        return it->second;
    }

    const merge* find_merge(token_id a, token_id b) const {
        const auto it = merges_.find(pair_key(a, b));
        return it == merges_.end() ? nullptr : &it->second;
    }

    // tokenizers' Word::merge_all: the lowest rank first, the leftmost on ties; a queued
    // pair whose symbols have changed since is skipped.
    void merge_all(std::vector<token_id>& symbols) const {
        const std::size_t count = symbols.size();
        if (count < 2) return;
        constexpr std::size_t none = SIZE_MAX;
        std::vector<std::size_t> prev(count), next(count);
        std::vector<char> alive(count, 1);
        for (std::size_t i = 0; i < count; ++i) {
            prev[i] = i == 0 ? none : i - 1;
            next[i] = i + 1 == count ? none : i + 1;
        }
        struct candidate {
            std::uint32_t rank;
            std::size_t left;
            token_id merged;
        };
        const auto later = [](const candidate& x, const candidate& y) {
            return x.rank > y.rank || (x.rank == y.rank && x.left > y.left);
        };
        std::vector<candidate> heap;
        heap.reserve(2 * count);
        const auto consider = [&](std::size_t l) {
            if (l == none || next[l] == none) return;
            if (const merge* m = find_merge(symbols[l], symbols[next[l]])) {
                heap.push_back({m->rank, l, m->merged});
                std::push_heap(heap.begin(), heap.end(), later);
            }
        };
        for (std::size_t i = 0; i + 1 < count; ++i) consider(i);
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end(), later);
            const candidate c = heap.back();
            heap.pop_back();
            if (!alive[c.left] || next[c.left] == none) continue;
            const merge* m = find_merge(symbols[c.left], symbols[next[c.left]]);
            if (!m || m->merged != c.merged || m->rank != c.rank) continue;  // stale
            const std::size_t right = next[c.left];
            symbols[c.left] = c.merged;
            alive[right] = 0;
            next[c.left] = next[right];
            if (next[right] != none) prev[next[right]] = c.left;
            consider(prev[c.left]);
            consider(c.left);
        }
        std::size_t w = 0;
        for (std::size_t i = 0; i != none; i = next[i]) symbols[w++] = symbols[i];
        symbols.resize(w);
    }

    bpe_model_data data_;
    std::unordered_map<std::string, token_id, text_hash, std::equal_to<>> ids_;
    std::unordered_map<std::uint64_t, merge> merges_;
    std::optional<token_id> unk_;
    token_id byte_piece_[256] = {};  // with byte_fallback: each byte's "<0xXX>" piece, else -1
};

}  // namespace kvdecode
