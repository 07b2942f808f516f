#pragma once
// Several projections of the same input fused into one output row (q, k, v side by
// side; gate and up side by side), with an optional bias on every output.
//
// Where the parts share a storage type they are one weight_matrix (rows
// concatenated, copied once at load) and one product. A file may give the parts
// different types (llama.cpp's Q4_K_M stores attn_v in Q6_K beside Q4_K attn_q and
// attn_k): then consecutive parts of one type form a segment, each segment its own
// matrix multiplied into its slice of the output row. The forward pass runs
// project_fused over the segments and never asks for their types.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/model/stored_weights.hpp"
#include "kvdecode/quant/weight_matrix.hpp"

namespace kvdecode {

template <class T>
class fused_projection {
public:
    struct segment {
        weight_matrix<T> matrix;
        std::size_t first_output = 0;  // where its outputs start in the fused row
    };

    // One matrix (out_dim, in_dim); bias: out_dim values, or empty.
    explicit fused_projection(weight_matrix<T> matrix, std::span<const T> bias = {}) : out_dim_(matrix.out_dim()) {
        segments_.push_back({std::move(matrix), 0});
        set_bias(bias);
    }

    // Parts in a file's layout, stacked in order (all with the same in_dim); consecutive
    // parts of one type share a matrix. `owner` keeps the parts' bytes alive (see
    // weight_matrix's stored constructor); bias: the fused out_dim values, or empty.
    fused_projection(std::span<const stored_matrix> parts, const std::shared_ptr<const void>& owner,
                     std::span<const T> bias = {}) {
        if (parts.empty()) throw std::invalid_argument("kvdecode: fused_projection of no parts");
        for (std::size_t first = 0; first < parts.size();) {
            std::size_t end = first + 1;
            while (end < parts.size() && parts[end].type == parts[first].type) ++end;
            segments_.push_back({stack(parts.subspan(first, end - first), owner), out_dim_});
            out_dim_ += segments_.back().matrix.out_dim();
            first = end;
        }
        set_bias(bias);
    }

    std::size_t out_dim() const noexcept { return out_dim_; }
    std::size_t in_dim() const noexcept { return segments_.front().matrix.in_dim(); }
    const std::vector<segment>& segments() const noexcept { return segments_; }
    // (out_dim) added to every output row, or nullptr.
    const T* bias() const noexcept { return bias_.empty() ? nullptr : bias_.data(); }

    std::size_t bytes() const noexcept {
        std::size_t n = 0;
        for (const segment& s : segments_) n += s.matrix.bytes();
        return n;
    }
    std::size_t scratch_bytes(std::size_t rows) const {
        std::size_t n = 0;
        for (const segment& s : segments_) n = std::max(n, s.matrix.scratch_bytes(rows));
        return n;
    }

private:
    // One matrix from parts of one type: the part itself, or their rows copied one after
    // another into a buffer the matrix then owns (or repacks, for the float types).
    static weight_matrix<T> stack(std::span<const stored_matrix> parts, const std::shared_ptr<const void>& owner) {
        const stored_matrix& first = parts.front();
        std::size_t out_dim = 0, bytes = 0;
        for (const stored_matrix& p : parts) {
            if (p.in_dim != first.in_dim)
                throw std::invalid_argument("kvdecode: fused_projection parts of different input widths (" +
                                            std::to_string(first.in_dim) + " and " + std::to_string(p.in_dim) + ")");
            out_dim += p.out_dim;
            bytes += p.bytes.size();
        }
        if (parts.size() == 1) return weight_matrix<T>(first.type, first.bytes, first.out_dim, first.in_dim, owner);
        auto stacked = std::make_shared<aligned_buffer<std::byte>>(bytes);
        std::size_t at = 0;
        for (const stored_matrix& p : parts) {
            if (!p.bytes.empty()) std::memcpy(stacked->data() + at, p.bytes.data(), p.bytes.size());
            at += p.bytes.size();
        }
        const std::span<const std::byte> all(stacked->data(), bytes);
        return weight_matrix<T>(first.type, all, out_dim, first.in_dim, std::move(stacked));
    }

    void set_bias(std::span<const T> bias) {
        if (bias.empty()) return;
        if (bias.size() != out_dim_)
            throw std::invalid_argument("kvdecode: fused_projection bias of " + std::to_string(bias.size()) +
                                        " values for " + std::to_string(out_dim_) + " outputs");
        bias_ = aligned_buffer<T>(out_dim_);
        std::copy(bias.begin(), bias.end(), bias_.data());
    }

    std::vector<segment> segments_;
    std::size_t out_dim_ = 0;
    aligned_buffer<T> bias_;  // (out_dim) or empty
};

}  // namespace kvdecode
