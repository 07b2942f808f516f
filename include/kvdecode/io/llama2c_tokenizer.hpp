#pragma once
// The llama2.c tokenizer format and its encoding (../shared/models/README.md):
// int32 max_token_length, then per piece: float32 score, int32 byte length, bytes.
// Ids 0, 1, 2 are <unk>, BOS and EOS; pieces "<0xXX>" are byte fallbacks.
//
// Encoding is BPE by score: one piece per UTF-8 character (byte pieces for any
// character, or stray byte, that has no piece), a dummy-prefix space before
// non-empty text, then repeatedly merge the adjacent pair whose concatenation is a
// piece with the highest score (the leftmost on ties). Special and byte pieces are
// never produced by merging, so any text — any bytes — decodes back to itself.

#include <array>
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

    void merge(std::vector<token_id>& ids) const {
        std::string joined;
        while (ids.size() > 1) {
            float best_score = 0;
            std::size_t best_at = ids.size();
            token_id best_id = -1;
            for (std::size_t i = 0; i + 1 < ids.size(); ++i) {
                if (byte_of_[ids[i]] >= 0 || byte_of_[ids[i + 1]] >= 0) continue;
                joined.assign(pieces_[ids[i]]).append(pieces_[ids[i + 1]]);
                const auto it = lookup_.find(joined);
                if (it != lookup_.end() && (best_at == ids.size() || scores_[it->second] > best_score)) {
                    best_score = scores_[it->second];
                    best_at = i;
                    best_id = it->second;
                }
            }
            if (best_at == ids.size()) return;
            ids[best_at] = best_id;
            ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
        }
    }

    std::vector<std::string> pieces_;
    std::vector<float> scores_;
    std::vector<int> byte_of_;           // the byte a byte piece stands for, else -1
    std::array<token_id, 256> byte_piece_{};  // the piece of each byte, else -1
    std::unordered_map<std::string, token_id> lookup_;  // ordinary pieces only
};

}  // namespace kvdecode
