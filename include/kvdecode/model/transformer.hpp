#pragma once
// The cached Llama-family transformer. Weights are shared and immutable; the
// workspace inside belongs to one call at a time, like the cache passed in.
//
// forward() appends each batch entry's new tokens to its cache sequence and
// writes logits. All rows of all entries go through every projection together.
// Everything is checked before anything changes: a throw leaves the cache as it was.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "kvdecode/cache/kv_cache.hpp"
#include "kvdecode/core/error.hpp"
#include "kvdecode/core/thread_pool.hpp"
#include "kvdecode/model/attention.hpp"
#include "kvdecode/model/batch.hpp"
#include "kvdecode/model/packed_weights.hpp"
#include "kvdecode/model/rope_table.hpp"
#include "kvdecode/model/weights.hpp"
#include "kvdecode/model/workspace.hpp"
#include "kvdecode/simd/packed_matmul.hpp"
#include "kvdecode/simd/rms_norm.hpp"
#include "kvdecode/simd/swiglu.hpp"

namespace kvdecode {

struct transformer_options {
    // Threads for the projections (the calling thread included); created once.
    std::size_t threads = 1;
    // Multiply-adds below which a product or an attention is not split between
    // threads (a hand-off costs about a microsecond). 1: always split (tests).
    std::size_t min_work_per_thread = 65536;
    // Token rows one pass through the layers handles (prefill chunk size); longer
    // batches are split into passes. 0: the context length.
    std::size_t max_rows_per_pass = 0;
};

template <class T>
class transformer {
public:
    using scalar_type = T;
    using cache_type = kv_cache<T>;

    // Packs the weights (the row-major copy may be dropped afterwards).
    explicit transformer(std::shared_ptr<const transformer_weights<T>> weights, transformer_options options = {})
        : transformer(std::make_shared<const packed_weights<T>>(*weights), options) {}
    // Shares weights packed once between several models (one per thread, say).
    explicit transformer(std::shared_ptr<const packed_weights<T>> weights, transformer_options options = {})
        : weights_(std::move(weights)), rope_(weights_->config()),
          ws_(weights_->config(), options.max_rows_per_pass ? options.max_rows_per_pass : weights_->config().seq_len,
              options.threads),
          pool_(std::make_unique<thread_pool>(options.threads)),
          min_work_per_thread_(std::max<std::size_t>(options.min_work_per_thread, 1)) {}

    const model_config& config() const noexcept { return weights_->config(); }
    const packed_weights<T>& weights() const noexcept { return *weights_; }
    const std::shared_ptr<const packed_weights<T>>& shared_weights() const noexcept { return weights_; }
    kv_cache<T> make_cache(kv_cache_options options = {}) const { return kv_cache<T>(config(), options); }
    // Prefill masks built so far (one per distinct chunk length).
    std::size_t masks_built() const noexcept { return ws_.masks.builds(); }
    std::size_t threads() const noexcept { return pool_->size(); }

    void forward(std::span<const sequence_tokens> batch, kv_cache<T>& cache, std::span<T> logits,
                 logits_for which = logits_for::last_token) {
        const model_config& c = config();
        validate_batch(batch, c, [&](seq_id s) { return cache.length(s); }, logits.size(), which);
        std::size_t blocks_needed = 0;
        for (const sequence_tokens& e : batch) blocks_needed += cache.blocks_to_extend(e.seq, e.tokens.size());
        if (blocks_needed > cache.free_blocks())
            throw cache_full("kvdecode: forward: the batch needs " + std::to_string(blocks_needed) +
                             " free cache blocks, " + std::to_string(cache.free_blocks()) + " are free");
        for (const sequence_tokens& e : batch) cache.extend(e.seq, e.tokens.size());  // cannot fail now

        // Fill passes of at most max_rows rows, splitting an entry across passes if needed.
        std::size_t entry = 0, offset = 0, logits_row = 0;
        while (entry < batch.size()) {
            ws_.pieces.clear();
            std::size_t rows = 0;
            while (entry < batch.size() && rows < ws_.max_rows) {
                const sequence_tokens& e = batch[entry];
                const std::size_t take = std::min(e.tokens.size() - offset, ws_.max_rows - rows);
                const std::size_t start = cache.length(e.seq) - e.tokens.size() + offset;
                std::copy_n(e.tokens.begin() + static_cast<std::ptrdiff_t>(offset), take, ws_.tokens.begin() + rows);
                offset += take;
                ws_.pieces.push_back({e.seq, rows, take, start, offset == e.tokens.size()});
                rows += take;
                if (offset == e.tokens.size()) ++entry, offset = 0;
            }
            logits_row += run_pass(rows, cache, logits.data() + logits_row * c.vocab_size, which);
        }
    }

private:
    // One pass over the pieces in ws_.pieces; returns the logits rows written.
    std::size_t run_pass(std::size_t rows, kv_cache<T>& cache, T* logits, logits_for which) {
        const model_config& c = config();
        const packed_weights<T>& w = *weights_;

        for (std::size_t r = 0; r < rows; ++r)
            std::copy_n(w.token_embedding() + static_cast<std::size_t>(ws_.tokens[r]) * c.dim, c.dim, ws_.x.data() + r * c.dim);

        // Each norm computes 1 / rms per row; its gain is folded into the next product.
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            inverse_rms(rows);
            project(w.wqkv(l), ws_.x.data(), c.dim, rows, ws_.row_scale.data(), ws_.qkv.data(), c.qkv_dim(), false);
            rotate_and_store_kv(l, cache);
            attend_all(l, cache);
            project(w.wo(l), ws_.attended.data(), c.q_dim(), rows, nullptr, ws_.x.data(), c.dim, true);
            inverse_rms(rows);
            project(w.w13(l), ws_.x.data(), c.dim, rows, ws_.row_scale.data(), ws_.gate_up.data(), 2 * c.hidden_dim, false);
            for (std::size_t r = 0; r < rows; ++r) {
                const T* gate = ws_.gate_up.data() + r * 2 * c.hidden_dim;
                simd::swiglu(gate, gate + c.hidden_dim, ws_.hidden.data() + r * c.hidden_dim, c.hidden_dim);
            }
            project(w.w2(l), ws_.hidden.data(), c.hidden_dim, rows, nullptr, ws_.x.data(), c.dim, true);
        }
        return classify(rows, logits, which);
    }

    // out (rows, out_stride) (+)= (in (rows, in_stride) · W^T) scaled per row; the
    // threads share out W's panels, so every output is computed by one thread in the
    // same order whatever the thread count.
    void project(const packed_matrix<T>& m, const T* in, std::size_t in_stride, std::size_t rows, const T* row_scale,
                 T* out, std::size_t out_stride, bool accumulate) {
        simd::packed_product<T> p;
        p.in = in, p.in_stride = in_stride, p.rows = rows, p.row_scale = row_scale;
        p.w = m.data, p.layout = m.layout, p.out = out, p.out_stride = out_stride, p.accumulate = accumulate;
        // About 8 chunks of panels per thread, taken in turn: the threads finish together.
        const std::size_t parts = std::min(pool_->size(), parts_for(rows * m.layout.out_dim * m.layout.in_dim));
        const std::size_t chunk = m.layout.panels() / (8 * std::max<std::size_t>(parts, 1));
        pool_->parallel_chunks(m.layout.panels(), chunk, [&](std::size_t begin, std::size_t end) { simd::packed_matmul(p, begin, end); },
                               parts);
    }

    // Threads worth using for this many multiply-adds.
    std::size_t parts_for(std::size_t multiply_adds) const noexcept { return multiply_adds / min_work_per_thread_; }

    void inverse_rms(std::size_t rows) {
        const std::size_t dim = config().dim;
        const T eps = static_cast<T>(config().norm_eps);
        for (std::size_t r = 0; r < rows; ++r) ws_.row_scale[r] = simd::inverse_rms(ws_.x.data() + r * dim, dim, eps);
    }

    // RoPE on each row's q and k heads, then the k and v rows into the cache.
    void rotate_and_store_kv(std::size_t layer, kv_cache<T>& cache) {
        const model_config& c = config();
        const std::size_t hd = c.head_dim, bs = cache.block_size();
        for (const chunk_piece& p : ws_.pieces) {
            const std::span<const block_id> blocks = cache.block_list(p.seq);
            for (std::size_t i = 0; i < p.rows; ++i) {
                T* q = ws_.qkv.data() + (p.first_row + i) * c.qkv_dim();
                T* k = q + c.q_dim();
                const T* v = k + c.kv_dim();
                const std::size_t pos = p.start + i;
                rope_.apply(q, c.n_heads, pos);
                rope_.apply(k, c.n_kv_heads, pos);
                const block_id b = blocks[pos / bs];
                const std::size_t slot = (pos % bs) * hd;
                for (std::size_t g = 0; g < c.n_kv_heads; ++g) {
                    std::copy_n(k + g * hd, hd, cache.key(layer, b, g) + slot);
                    std::copy_n(v + g * hd, hd, cache.value(layer, b, g) + slot);
                }
            }
        }
    }

    // Attention of every piece, split between the threads: one-token pieces by
    // (piece, kv head), longer pieces by rows. Each part has its own scores scratch.
    void attend_all(std::size_t layer, const kv_cache<T>& cache) {
        const model_config& c = config();
        const std::size_t single = static_cast<std::size_t>(
            std::count_if(ws_.pieces.begin(), ws_.pieces.end(), [](const chunk_piece& p) { return p.rows == 1; }));
        if (single > 0) {
            // Single-row pieces sit wherever the batch put them; job i is the i-th of them.
            std::size_t keys = 0;
            for (const chunk_piece& p : ws_.pieces) keys += p.rows == 1 ? p.start + 1 : 0;
            // Dot products, softmax and axpys over cached K/V run several times slower
            // per multiply-add than a projection: weigh them so.
            const std::size_t work = 8 * keys * c.q_dim();
            pool_->parallel_parts(single * c.n_kv_heads, [&](std::size_t part, std::size_t begin, std::size_t end) {
                std::size_t job = 0;
                for (const chunk_piece& p : ws_.pieces) {
                    if (p.rows != 1) continue;
                    for (std::size_t g = 0; g < c.n_kv_heads; ++g, ++job)
                        if (job >= begin && job < end)
                            attend_one_token(cache, args(layer, p, 0, 1, nullptr, ws_.scores.data() + part * c.seq_len), g);
                }
            }, parts_for(work));
        }
        for (const chunk_piece& p : ws_.pieces) {
            if (p.rows == 1) continue;
            const T* mask = ws_.masks.get(p.rows);  // built once per chunk length, before the threads read it
            const std::size_t work = 8 * p.rows * (p.start + p.rows) * c.q_dim();
            pool_->parallel_parts(p.rows, [&](std::size_t, std::size_t begin, std::size_t end) {
                attend_rows(cache, args(layer, p, begin, end - begin, mask, ws_.scores.data() + begin * c.seq_len));
            }, parts_for(work));
        }
    }

    attention_args<T> args(std::size_t layer, const chunk_piece& p, std::size_t row, std::size_t rows, const T* mask,
                           T* scores) {
        const model_config& c = config();
        attention_args<T> a;
        a.layer = layer;
        a.seq = p.seq;
        a.start = p.start + row;
        a.rows = rows;
        a.q = ws_.qkv.data() + (p.first_row + row) * c.qkv_dim();
        a.q_stride = c.qkv_dim();
        a.out = ws_.attended.data() + (p.first_row + row) * c.q_dim();
        a.out_stride = c.q_dim();
        a.mask = mask;
        a.mask_size = p.rows;
        a.chunk_row = row;
        a.scores = scores;
        return a;
    }

    // The rows whose logits are wanted, packed to the front of xb with their 1 / rms,
    // then one product with the classifier (final norm gain folded in) into the caller's logits.
    std::size_t classify(std::size_t rows, T* logits, logits_for which) {
        const model_config& c = config();
        const T eps = static_cast<T>(c.norm_eps);
        std::size_t wanted = 0;
        auto take_row = [&](std::size_t r) {
            const T* x = ws_.x.data() + r * c.dim;
            std::copy_n(x, c.dim, ws_.xb.data() + wanted * c.dim);
            ws_.row_scale[wanted] = simd::inverse_rms(x, c.dim, eps);
            ++wanted;
        };
        if (which == logits_for::every_token) {
            for (std::size_t r = 0; r < rows; ++r) take_row(r);
        } else {
            for (const chunk_piece& p : ws_.pieces)
                if (p.ends_entry) take_row(p.first_row + p.rows - 1);
        }
        project(weights_->classifier(), ws_.xb.data(), c.dim, wanted, ws_.row_scale.data(), logits, c.vocab_size, false);
        return wanted;
    }

    std::shared_ptr<const packed_weights<T>> weights_;
    rope_table<T> rope_;
    workspace<T> ws_;
    std::unique_ptr<thread_pool> pool_;
    std::size_t min_work_per_thread_;
};

}  // namespace kvdecode
