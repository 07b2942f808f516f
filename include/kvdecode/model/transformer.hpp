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
#include "kvdecode/model/linear.hpp"
#include "kvdecode/model/rope_table.hpp"
#include "kvdecode/model/weights.hpp"
#include "kvdecode/model/workspace.hpp"
#include "kvdecode/simd/rms_norm.hpp"
#include "kvdecode/simd/swiglu.hpp"

namespace kvdecode {

struct transformer_options {
    // Threads for the projections (the calling thread included); created once.
    std::size_t threads = 1;
    // Token rows one pass through the layers handles (prefill chunk size); longer
    // batches are split into passes. 0: the context length.
    std::size_t max_rows_per_pass = 0;
};

template <class T>
class transformer {
public:
    using scalar_type = T;
    using cache_type = kv_cache<T>;

    explicit transformer(std::shared_ptr<const transformer_weights<T>> weights, transformer_options options = {})
        : weights_(std::move(weights)), rope_(weights_->config()),
          ws_(weights_->config(), options.max_rows_per_pass ? options.max_rows_per_pass : weights_->config().seq_len),
          pool_(std::make_unique<thread_pool>(options.threads)) {}

    const model_config& config() const noexcept { return weights_->config(); }
    const transformer_weights<T>& weights() const noexcept { return *weights_; }
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
        const transformer_weights<T>& w = *weights_;
        const T eps = static_cast<T>(c.norm_eps);

        for (std::size_t r = 0; r < rows; ++r)
            std::copy_n(w.token_embedding() + static_cast<std::size_t>(ws_.tokens[r]) * c.dim, c.dim, ws_.x.data() + r * c.dim);

        for (std::size_t l = 0; l < c.n_layers; ++l) {
            norm_rows(rows, w.rms_att(l), eps);
            linear(*pool_, ws_.xb.data(), rows, c.dim, w.wqkv(l), c.qkv_dim(), ws_.qkv.data());
            rotate_and_store_kv(l, cache);
            for (const chunk_piece& p : ws_.pieces) attend_piece(l, p, cache);
            linear(*pool_, ws_.attended.data(), rows, c.q_dim(), w.wo(l), c.dim, ws_.x.data(), write_mode::accumulate);
            norm_rows(rows, w.rms_ffn(l), eps);
            linear(*pool_, ws_.xb.data(), rows, c.dim, w.w13(l), 2 * c.hidden_dim, ws_.gate_up.data());
            for (std::size_t r = 0; r < rows; ++r) {
                const T* gate = ws_.gate_up.data() + r * 2 * c.hidden_dim;
                simd::swiglu(gate, gate + c.hidden_dim, ws_.hidden.data() + r * c.hidden_dim, c.hidden_dim);
            }
            linear(*pool_, ws_.hidden.data(), rows, c.hidden_dim, w.w2(l), c.dim, ws_.x.data(), write_mode::accumulate);
        }
        return classify(rows, logits, which);
    }

    void norm_rows(std::size_t rows, const T* gain, T eps) {
        const std::size_t dim = config().dim;
        for (std::size_t r = 0; r < rows; ++r)
            simd::rms_norm(ws_.x.data() + r * dim, gain, ws_.xb.data() + r * dim, dim, eps);
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

    void attend_piece(std::size_t layer, const chunk_piece& p, const kv_cache<T>& cache) {
        const model_config& c = config();
        attention_args<T> a;
        a.layer = layer;
        a.seq = p.seq;
        a.start = p.start;
        a.rows = p.rows;
        a.q = ws_.qkv.data() + p.first_row * c.qkv_dim();
        a.q_stride = c.qkv_dim();
        a.out = ws_.attended.data() + p.first_row * c.q_dim();
        a.out_stride = c.q_dim();
        a.mask = p.rows > 1 ? ws_.masks.get(p.rows) : nullptr;
        a.scores = ws_.scores.data();
        attend(cache, a);
    }

    // Final norm of the rows whose logits are wanted, packed to the front of xb,
    // then one product with the classifier straight into the caller's logits.
    std::size_t classify(std::size_t rows, T* logits, logits_for which) {
        const model_config& c = config();
        const transformer_weights<T>& w = *weights_;
        const T eps = static_cast<T>(c.norm_eps);
        std::size_t wanted = 0;
        auto take_row = [&](std::size_t r) {
            simd::rms_norm(ws_.x.data() + r * c.dim, w.rms_final(), ws_.xb.data() + wanted * c.dim, c.dim, eps);
            ++wanted;
        };
        if (which == logits_for::every_token) {
            for (std::size_t r = 0; r < rows; ++r) take_row(r);
        } else {
            for (const chunk_piece& p : ws_.pieces)
                if (p.ends_entry) take_row(p.first_row + p.rows - 1);
        }
        linear(*pool_, ws_.xb.data(), wanted, c.dim, w.classifier(), c.vocab_size, logits);
        return wanted;
    }

    std::shared_ptr<const transformer_weights<T>> weights_;
    rope_table<T> rope_;
    workspace<T> ws_;
    std::unique_ptr<thread_pool> pool_;
};

}  // namespace kvdecode
