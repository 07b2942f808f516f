#pragma once
// The llama2.c tokenizer format and its encoding (as llama2.c writes it):
// int32 max_token_length, then per piece: float32 score, int32 byte length, bytes.
// Ids 0, 1, 2 are <unk>, BOS and EOS; pieces "<0xXX>" are byte fallbacks.
//
// Encoding is BPE by score: one piece per UTF-8 character (byte pieces for any
// character, or stray byte, that has no piece), a dummy-prefix space before
// non-empty text, then repeatedly merge the adjacent pair whose concatenation is a
// piece with the highest score (the leftmost on ties). Special and byte pieces are
// never produced by merging, and ids 0, 1, 2 are never byte pieces (even when
// spelled "<0xXX>"), so any text — any bytes — decodes back to itself.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kvdecode/io/detail/binary_file.hpp"
#include "kvdecode/core/model_config.hpp"

namespace kvdecode {

class tokenizer {
public:
    static constexpr token_id unk_id = 0;
    static constexpr token_id bos_id = 1;
    static constexpr token_id eos_id = 2;

    // Reads a llama2.c tokenizer file. With vocab_size (the model's), exactly that
    // many pieces must be present; without it, pieces are read to the end of file.
    static tokenizer read_llama2c(const std::filesystem::path& path,
                                  std::optional<std::size_t> vocab_size = std::nullopt) {
        detail::binary_file file(path);
        return read_llama2c(file, vocab_size);
    }

    // The same from a tokenizer file already in memory; `name` stands for the file in errors.
    static tokenizer read_llama2c(std::span<const std::byte> bytes,
                                  std::optional<std::size_t> vocab_size = std::nullopt,
                                  std::string name = "<memory>") {
        detail::binary_file file(bytes, std::move(name));
        return read_llama2c(file, vocab_size);
    }

private:
    // The reader behind both entry points: the source differs, the checks do not.
    static tokenizer read_llama2c(detail::binary_file& file, std::optional<std::size_t> vocab_size) {
        tokenizer t;
        const auto max_length = file.read<std::int32_t>("max_token_length");
        if (max_length <= 0) file.fail("max_token_length", "a positive value", std::to_string(max_length));
        // Every piece takes at least 8 bytes, so the file bounds the count; a claimed
        // vocabulary the file cannot hold fails below at the first missing piece.
        constexpr std::size_t min_piece_bytes = sizeof(float) + sizeof(std::int32_t);
        if (vocab_size && *vocab_size <= file.remaining() / min_piece_bytes) {
            t.pieces_.reserve(*vocab_size);
            t.scores_.reserve(*vocab_size);
        }
        while (vocab_size ? t.pieces_.size() < *vocab_size : file.remaining() > 0) {
            const std::string id = "piece " + std::to_string(t.pieces_.size());
            const float score = file.read<float>(id + " score");
            if (std::isnan(score)) file.fail(id + " score", "a number", "NaN");  // merges are ordered by score
            const auto length = file.read<std::int32_t>(id + " length");
            if (length < 0 || length > max_length)
                file.fail(id + " length", "0 to max_token_length (" + std::to_string(max_length) + ")",
                          std::to_string(length));
            t.pieces_.push_back(file.read_string(static_cast<std::size_t>(length), id + " bytes"));
            t.scores_.push_back(score);
        }
        if (file.remaining() != 0)
            file.fail("file size", "no data after " + std::to_string(t.pieces_.size()) + " pieces",
                      std::to_string(file.remaining()) + " extra bytes");
        if (t.pieces_.size() <= eos_id)
            file.fail("vocabulary", "at least <unk>, BOS and EOS", std::to_string(t.pieces_.size()) + " pieces");
        t.index();
        return t;
    }

public:
    std::size_t vocab_size() const noexcept { return pieces_.size(); }
    token_id bos() const noexcept { return bos_id; }
    token_id eos() const noexcept { return eos_id; }
    std::string_view piece(token_id id) const { return pieces_[checked(id)]; }
    float score(token_id id) const { return scores_[checked(id)]; }

    std::vector<token_id> encode(std::string_view text, bool add_bos = true, bool add_eos = false) const {
        std::vector<token_id> ids;
        if (add_bos) ids.push_back(bos_id);
        if (!text.empty()) {
            std::vector<token_id> units;
            append_unit(" ", units);  // the dummy prefix, as SentencePiece adds
            for (std::size_t i = 0; i < text.size();) {
                const std::size_t n = utf8_unit_length(text.substr(i));
                append_unit(text.substr(i, n), units);
                i += n;
            }
            merge(units);
            ids.insert(ids.end(), units.begin(), units.end());
        }
        if (add_eos) ids.push_back(eos_id);
        return ids;
    }

    // The bytes `id` stands for when it follows `previous`: BOS and EOS are empty,
    // a byte piece is its byte, and the first piece after BOS loses the dummy-prefix space.
    std::string decode_token(token_id previous, token_id id) const {
        const std::size_t i = checked(id);
        if (id == bos_id || id == eos_id) return {};
        std::string out = byte_of_[i] >= 0 ? std::string(1, static_cast<char>(byte_of_[i])) : pieces_[i];
        if (previous == bos_id && !out.empty() && out.front() == ' ') out.erase(0, 1);
        return out;
    }

    std::string decode(std::span<const token_id> ids) const {
        std::string out;
        token_id previous = -1;
        for (token_id id : ids) {
            out += decode_token(previous, id);
            previous = id;
        }
        return out;
    }

private:
    std::size_t checked(token_id id) const {
        if (id < 0 || static_cast<std::size_t>(id) >= pieces_.size())
            throw std::invalid_argument("kvdecode: tokenizer: token id " + std::to_string(id) +
                                        " is outside the vocabulary [0, " + std::to_string(pieces_.size()) + ")");
        return static_cast<std::size_t>(id);
    }

    static int byte_piece_value(std::string_view p) {
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

    void index() {
        byte_of_.assign(pieces_.size(), -1);
        byte_piece_.fill(-1);
        for (std::size_t i = 0; i < pieces_.size(); ++i) {
            // <unk>, BOS and EOS stay special: as byte pieces, a byte would encode to BOS
            // and decode to nothing.
            const int b = i > eos_id ? byte_piece_value(pieces_[i]) : -1;
            if (b >= 0) {
                byte_of_[i] = b;
                if (byte_piece_[static_cast<std::size_t>(b)] < 0) byte_piece_[static_cast<std::size_t>(b)] = static_cast<token_id>(i);
            } else if (i > eos_id && !pieces_[i].empty()) {
                lookup_.emplace(pieces_[i], static_cast<token_id>(i));  // first id wins for duplicates
            }
        }
    }

    // Bytes in the UTF-8 character starting text[0], or 1 for a byte that does not start one.
    static std::size_t utf8_unit_length(std::string_view text) {
        const auto lead = static_cast<unsigned char>(text[0]);
        const std::size_t n = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 1;
        if (n > text.size()) return 1;
        for (std::size_t i = 1; i < n; ++i)
            if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) return 1;
        return n;
    }

    void append_unit(std::string_view unit, std::vector<token_id>& out) const {
        if (auto it = lookup_.find(std::string(unit)); it != lookup_.end()) {
            out.push_back(it->second);
            return;
        }
        for (unsigned char b : unit) {
            const token_id id = byte_piece_[b];
            if (id < 0)
                throw std::invalid_argument("kvdecode: tokenizer: cannot encode byte " + std::to_string(b) +
                                            ": no piece and no <0xXX> byte piece for it");
            out.push_back(id);
        }
    }

    // BPE in O(n log n). The symbols form a linked list over `ids`; every adjacent
    // pair whose concatenation is a piece is a candidate in a max-heap ordered by
    // score, then by position (leftmost first: list order is index order, as a merge
    // keeps the left symbol and unlinks the right one). A merge changes its two
    // symbols, so candidates that name either with its old piece are stale: they are
    // skipped when they come to the top, and the merged symbol's new pairs are pushed.
    // This chooses exactly the merges of the quadratic scan (the tests keep it).
    void merge(std::vector<token_id>& ids) const {
        const std::size_t n = ids.size();
        if (n < 2) return;
        struct candidate {
            float score;
            std::size_t left, right;
            token_id left_id, right_id, merged;
        };
        const auto lower = [](const candidate& a, const candidate& b) {
            return a.score < b.score || (a.score == b.score && a.left > b.left);
        };
        constexpr std::size_t none = SIZE_MAX;
        std::vector<std::size_t> prev(n), next(n);
        for (std::size_t i = 0; i < n; ++i) {
            prev[i] = i == 0 ? none : i - 1;
            next[i] = i + 1 == n ? none : i + 1;
        }
        std::vector<candidate> heap;
        heap.reserve(3 * n);  // n - 1 pairs at first, at most two more per merge
        std::string joined;
        const auto consider = [&](std::size_t l, std::size_t r) {
            if (byte_of_[ids[l]] >= 0 || byte_of_[ids[r]] >= 0) return;
            joined.assign(pieces_[ids[l]]).append(pieces_[ids[r]]);
            const auto it = lookup_.find(joined);
            if (it == lookup_.end()) return;
            heap.push_back({scores_[it->second], l, r, ids[l], ids[r], it->second});
            std::push_heap(heap.begin(), heap.end(), lower);
        };
        for (std::size_t i = 0; i + 1 < n; ++i) consider(i, i + 1);
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end(), lower);
            const candidate c = heap.back();
            heap.pop_back();
            // A removed symbol's id is -1, so this also rejects pairs with a removed side.
            if (ids[c.left] != c.left_id || next[c.left] != c.right || ids[c.right] != c.right_id) continue;
            ids[c.left] = c.merged;
            ids[c.right] = -1;
            next[c.left] = next[c.right];
            if (next[c.left] != none) prev[next[c.left]] = c.left;
            if (prev[c.left] != none) consider(prev[c.left], c.left);
            if (next[c.left] != none) consider(c.left, next[c.left]);
        }
        // Symbol 0 is never a right side, so the list starts there.
        std::size_t out = 0;
        for (std::size_t i = 0; i != none; i = next[i]) ids[out++] = ids[i];
        ids.resize(out);
    }

    std::vector<std::string> pieces_;
    std::vector<float> scores_;
    std::vector<int> byte_of_;           // the byte a byte piece stands for, else -1
    std::array<token_id, 256> byte_piece_{};  // the piece of each byte, else -1
    std::unordered_map<std::string, token_id> lookup_;  // ordinary pieces only
};

}  // namespace kvdecode
