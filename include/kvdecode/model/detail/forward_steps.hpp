#pragma once
// The named steps a cached forward pass is written in, shared by the models' contexts
// (decode_context for decoder-only models, seq2seq_context for encoder-decoders): the
// workspace, the scratch for prepared activations and the thread pool, and
//   embed, normalized (RMSNorm), project / project_add / project_fused, swiglu,
//   rotate_and_store_kv + attend_all (causal self-attention over the paged cache),
//   classify,
// plus the batch bookkeeping of forward(): checks, cache extension, and passes of at
// most max_rows token rows. A context derives from this and writes its own run_pass.

#include <algorithm>
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "kvdecode/cache/kv_cache.hpp"
#include "kvdecode/core/error.hpp"
#include "kvdecode/core/thread_pool.hpp"
#include "kvdecode/model/attention.hpp"
#include "kvdecode/model/batch.hpp"
#include "kvdecode/model/fused_projection.hpp"
#include "kvdecode/model/packed_weights.hpp"
#include "kvdecode/model/rope_table.hpp"
#include "kvdecode/model/workspace.hpp"
#include "kvdecode/quant/matrix_product.hpp"
#include "kvdecode/quant/weight_matrix.hpp"
#include "kvdecode/simd/axpy.hpp"
#include "kvdecode/simd/rms_norm.hpp"
#include "kvdecode/simd/swiglu.hpp"

namespace kvdecode {

struct context_options {
    // Threads of the pool the context creates (the calling thread included). Ignored
    // when the context is given a pool of the caller's.
    std::size_t threads = 1;
    // Multiply-adds below which a product or an attention is not split between
    // threads (a hand-off costs about a microsecond). 1: always split (tests).
    std::size_t min_work_per_thread = 65536;
    // Token rows one pass through the layers handles (prefill chunk size); longer
    // batches are split into passes. 0: min(context length, default_max_rows_per_pass).
    std::size_t max_rows_per_pass = 0;
    static constexpr std::size_t default_max_rows_per_pass = 512;
};

namespace detail {

template <class T>
class forward_steps {
public:
    forward_steps(const forward_steps&) = delete;
    forward_steps& operator=(const forward_steps&) = delete;

    std::size_t threads() const noexcept { return pool_->size(); }
    std::size_t max_rows_per_pass() const noexcept { return ws_.max_rows; }
    // Prefill masks built so far (one per distinct chunk length).
    std::size_t masks_built() const noexcept { return ws_.masks.builds(); }

protected:
    // `c`: the shape of the layers (it must outlive this); passes of up to `max_rows`
    // token rows; `scratch_bytes`: the prepared activations the weights need for them.
    forward_steps(const model_config& c, thread_pool* pool, const context_options& options, std::size_t max_rows,
                  std::size_t scratch_bytes)
        : c_(&c),
          owned_pool_(pool ? nullptr : std::make_unique<thread_pool>(options.threads)),
          pool_(pool ? pool : owned_pool_.get()),
          ws_(c, max_rows, pool_->size()),
          scratch_(scratch_bytes),
          min_work_per_thread_(std::max<std::size_t>(options.min_work_per_thread, 1)) {}
    ~forward_steps() = default;

    static std::size_t rows_per_pass(const context_options& o, const model_config& c) noexcept {
        return std::min(c.seq_len, o.max_rows_per_pass ? o.max_rows_per_pass : context_options::default_max_rows_per_pass);
    }

    // Input rows of a projection: (rows, stride), each row's outputs multiplied by
    // row_scale[r] where given (the 1 / rms of the norm whose gain the weights hold).
    struct activations {
        const T* data;
        std::size_t stride;
        std::size_t rows;
        const T* row_scale = nullptr;
    };

    // Checks the batch, makes room in the cache and extends its sequences, then calls
    // run_pass(rows, logits) for passes of at most max_rows rows (ws_.pieces filled),
    // splitting an entry across passes if needed. A throw before the first pass leaves
    // the cache as it was.
    template <class RunPass>
    void forward_in_passes(std::span<const sequence_tokens> batch, kv_cache<T>& cache, std::span<T> logits,
                           logits_for which, RunPass&& run_pass) {
        const model_config& c = *c_;
        validate_batch(batch, c, [&](seq_id s) { return cache.length(s); }, logits.size(), which);
        std::size_t blocks_needed = 0, longest = 0;
        for (const sequence_tokens& e : batch) {
            blocks_needed += cache.blocks_to_extend(e.seq, e.tokens.size());
            longest = std::max(longest, cache.length(e.seq) + e.tokens.size());
        }
        if (blocks_needed > cache.free_blocks())
            throw cache_full("kvdecode: forward: the batch needs " + std::to_string(blocks_needed) +
                             " free cache blocks, " + std::to_string(cache.free_blocks()) + " are free");
        ws_.reserve_keys(longest, c.seq_len);                                            // may throw bad_alloc: nothing changed yet
        if (cache.storage() != kv_type::f32) ws_.reserve_kv_rows(cache.block_size() * c.head_dim);  // the same
        for (const sequence_tokens& e : batch) cache.extend(e.seq, e.tokens.size());  // cannot fail now

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
            logits_row += run_pass(rows, logits.data() + logits_row * c.vocab_size);
        }
    }

    void embed(std::size_t rows, const embedding_table<T>& table) {
        const std::size_t dim = c_->dim;
        for (std::size_t r = 0; r < rows; ++r) table.lookup(ws_.tokens[r], ws_.x.data() + r * dim);
    }

    // Rows (rows, dim) of x as the input of the product after an RMSNorm. A folded
    // gain (empty) is in that product's weights: the norm computes only 1 / rms per
    // row and the product reads x itself. Otherwise x / rms * gain is written to xb
    // (which may be x) and the product reads that.
    activations normalized(const T* x, std::size_t rows, std::span<const T> gain) {
        const std::size_t dim = c_->dim;
        const T eps = static_cast<T>(c_->norm_eps);
        if (gain.empty()) {
            for (std::size_t r = 0; r < rows; ++r) ws_.row_scale[r] = simd::inverse_rms(x + r * dim, dim, eps);
            return {x, dim, rows, ws_.row_scale.data()};
        }
        for (std::size_t r = 0; r < rows; ++r) simd::rms_norm(x + r * dim, gain.data(), ws_.xb.data() + r * dim, dim, eps);
        return {ws_.xb.data(), dim, rows};
    }

    void swiglu(std::size_t rows) {
        const std::size_t hidden = c_->hidden_dim;
        for (std::size_t r = 0; r < rows; ++r) {
            const T* gate = ws_.gate_up.data() + r * 2 * hidden;
            simd::swiglu(gate, gate + hidden, ws_.hidden.data() + r * hidden, hidden);
        }
    }

    // out (rows, W's out_dim) = in · Wᵀ, and out += in · Wᵀ (the residual adds).
    void project(const weight_matrix<T>& m, const activations& in, T* out) { multiply(m, in, out, m.out_dim(), false); }
    void project_add(const weight_matrix<T>& m, const activations& in, T* out) { multiply(m, in, out, m.out_dim(), true); }
    // out (rows, f's out_dim) = in · Fᵀ (+ bias): each segment of F into its slice of the row.
    void project_fused(const fused_projection<T>& f, const activations& in, T* out) {
        for (const auto& s : f.segments()) multiply(s.matrix, in, out + s.first_output, f.out_dim(), false);
        if (const T* bias = f.bias())
            for (std::size_t r = 0; r < in.rows; ++r) simd::axpy(T(1), bias, out + r * f.out_dim(), f.out_dim());
    }

    // Whatever W's storage type: its activations prepared once (quantised where the
    // type needs it), then the threads share out W's units of 32 outputs, so every
    // output is computed by one thread in the same order whatever the thread count.
    void multiply(const weight_matrix<T>& m, const activations& in, T* out, std::size_t out_stride, bool accumulate) {
        const matrix_product<T> p{in.data, in.stride, in.rows, in.row_scale, out, out_stride, accumulate};
        m.prepare(p, scratch_.data(), 0, in.rows);  // O(rows x in_dim): small beside the product
        // About 8 chunks of units per thread, taken in turn: the threads finish together.
        const std::size_t parts = std::min(pool_->size(), parts_for(in.rows * m.out_dim() * m.in_dim()));
        const std::size_t chunk = m.units() / (8 * std::max<std::size_t>(parts, 1));
        pool_->parallel_chunks(m.units(), chunk,
                               [&](std::size_t begin, std::size_t end) { m.multiply(p, scratch_.data(), begin, end); },
                               parts);
    }

    // Threads worth using for this many multiply-adds.
    std::size_t parts_for(std::size_t multiply_adds) const noexcept { return multiply_adds / min_work_per_thread_; }

    // RoPE on each row's q and k heads, then the k and v rows into the cache.
    void rotate_and_store_kv(std::size_t layer, kv_cache<T>& cache, const rope_table<T>& rope) {
        const model_config& c = *c_;
        const std::size_t hd = c.head_dim;
        for (const chunk_piece& p : ws_.pieces) {
            for (std::size_t i = 0; i < p.rows; ++i) {
                T* q = ws_.qkv.data() + (p.first_row + i) * c.qkv_dim();
                T* k = q + c.q_dim();
                const T* v = k + c.kv_dim();
                const std::size_t pos = p.start + i;
                rope.apply(q, c.n_heads, pos);
                rope.apply(k, c.n_kv_heads, pos);
                for (std::size_t g = 0; g < c.n_kv_heads; ++g) cache.store_kv(layer, p.seq, pos, g, k + g * hd, v + g * hd);
            }
        }
    }

    // Attention of every piece, split between the threads: one-token pieces by
    // (piece, kv head), longer pieces by rows. Each part has its own scores scratch.
    void attend_all(std::size_t layer, const kv_cache<T>& cache) {
        const model_config& c = *c_;
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
                            attend_one_token(cache, args(layer, p, 0, 1, nullptr, ws_.scores_row(part)), g);
                }
            }, parts_for(work));
        }
        for (const chunk_piece& p : ws_.pieces) {
            if (p.rows == 1) continue;
            const T* mask = ws_.masks.get(p.rows);  // built once per chunk length, before the threads read it
            const std::size_t work = 8 * p.rows * (p.start + p.rows) * c.q_dim();
            pool_->parallel_parts(p.rows, [&](std::size_t part, std::size_t begin, std::size_t end) {
                attention_args<T> a = args(layer, p, begin, end - begin, mask, ws_.scores_row(begin));
                a.kv_rows = ws_.kv_rows_for(part);
                attend_rows(cache, a);
            }, parts_for(work));
        }
    }

    attention_args<T> args(std::size_t layer, const chunk_piece& p, std::size_t row, std::size_t rows, const T* mask,
                           T* scores) {
        const model_config& c = *c_;
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

    // The rows whose logits are wanted, packed to the front of xb, then the final norm
    // and one product with the classifier into the caller's logits.
    std::size_t classify(std::size_t rows, T* logits, logits_for which, std::span<const T> final_norm,
                         const weight_matrix<T>& classifier) {
        const model_config& c = *c_;
        std::size_t wanted = 0;
        auto take_row = [&](std::size_t r) {
            std::copy_n(ws_.x.data() + r * c.dim, c.dim, ws_.xb.data() + wanted * c.dim);
            ++wanted;
        };
        if (which == logits_for::every_token) {
            for (std::size_t r = 0; r < rows; ++r) take_row(r);
        } else {
            for (const chunk_piece& p : ws_.pieces)
                if (p.ends_entry) take_row(p.first_row + p.rows - 1);
        }
        project(classifier, normalized(ws_.xb.data(), wanted, final_norm), logits);
        return wanted;
    }

    const model_config* c_;
    std::unique_ptr<thread_pool> owned_pool_;  // when the caller gave none
    thread_pool* pool_;
    workspace<T> ws_;
    aligned_buffer<std::byte> scratch_;  // activations prepared for the weights' storage type (Q8_0 blocks)
    std::size_t min_work_per_thread_;
};

}  // namespace detail
}  // namespace kvdecode
