#pragma once
// Every activation buffer of a forward pass, sized once from the config and the most
// token rows one pass handles (longer batches run in several passes). Attention scores
// grow with the longest sequence seen (doubling, so a whole generation reallocates
// them a handful of times at most), never to a context length a file merely claims.

#include <algorithm>
#include <cstddef>
#include <vector>

#include "kvdecode/cache/mask_cache.hpp"
#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/model_config.hpp"

namespace kvdecode {

// Consecutive new tokens of one sequence inside one pass.
struct chunk_piece {
    seq_id seq = 0;
    std::size_t first_row = 0;  // its first row in the pass's activation buffers
    std::size_t rows = 0;
    std::size_t start = 0;      // position of its first token in the sequence
    bool ends_entry = false;    // holds the last new token of its batch entry
};

template <class T>
struct workspace {
    // Keys the scores rows hold before they first grow (or the context, if shorter).
    static constexpr std::size_t initial_score_keys = 2048;

    workspace(const model_config& c, std::size_t max_rows, std::size_t threads)
        : max_rows(max_rows), threads(threads), score_rows(std::max(max_rows, threads)), tokens(max_rows), row_scale(max_rows),
          x(max_rows * c.dim), xb(max_rows * c.dim), qkv(max_rows * c.qkv_dim()), attended(max_rows * c.q_dim()),
          gate_up(max_rows * 2 * c.hidden_dim), hidden(max_rows * c.hidden_dim) {
        pieces.reserve(max_rows);  // every piece holds at least one row
        reserve_keys(std::min(c.seq_len, initial_score_keys), c.seq_len);
    }

    // Makes every scores row hold at least `keys` keys (up to the context length).
    void reserve_keys(std::size_t keys, std::size_t context) {
        if (keys <= score_stride) return;
        std::size_t grown = std::max<std::size_t>(score_stride, 64);
        while (grown < keys) grown *= 2;
        score_stride = std::min(grown, context);
        scores = aligned_buffer<T>(score_rows * score_stride);
    }
    T* scores_row(std::size_t r) noexcept { return scores.data() + r * score_stride; }

    // Makes room for `values` widened K/V values per thread (a prefill from a 16-bit
    // cache: one block's rows); 0 needs none.
    void reserve_kv_rows(std::size_t values) {
        if (values <= kv_rows_stride) return;
        kv_rows = aligned_buffer<T>(threads * values);
        kv_rows_stride = values;
    }
    T* kv_rows_for(std::size_t part) noexcept { return kv_rows_stride ? kv_rows.data() + part * kv_rows_stride : nullptr; }

    std::size_t max_rows;
    std::size_t threads;
    std::size_t score_rows;        // max(max_rows, threads)
    std::size_t score_stride = 0;  // keys per scores row
    std::vector<token_id> tokens;  // (max_rows)
    aligned_buffer<T> row_scale;   // (max_rows) 1 / rms of each row, for the product after a norm
    aligned_buffer<T> x;           // (max_rows, dim) residual stream
    aligned_buffer<T> xb;          // (max_rows, dim) normalised rows (a norm with its gain apart), and
                                   // the rows the classifier reads
    aligned_buffer<T> qkv;         // (max_rows, q_dim + 2 kv_dim) fused projection output
    aligned_buffer<T> attended;    // (max_rows, q_dim) attention output, heads side by side
    aligned_buffer<T> gate_up;     // (max_rows, 2 hidden) fused gate and up projections
    aligned_buffer<T> hidden;      // (max_rows, hidden) SwiGLU output
    aligned_buffer<T> scores;      // (score_rows, score_stride) attention scores: a row per
                                   // prefill row, or a row per thread in decode steps
    aligned_buffer<T> kv_rows;     // (threads, kv_rows_stride) K or V rows widened from a 16-bit cache
    std::size_t kv_rows_stride = 0;
    std::vector<chunk_piece> pieces;
    mask_cache<T> masks;
};

}  // namespace kvdecode
