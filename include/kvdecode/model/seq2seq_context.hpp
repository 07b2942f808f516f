#pragma once
// Everything an encoder-decoder's passes write, and the two things it does:
//   encode(sources): the encoder over a batch of sources of any lengths (rows of all
//     of them through each projection together, attention within each source, no
//     padding), then each decoder layer's cross-attention K/V projected once into a
//     read-only cross_kv per source;
//   forward(batch, cache, logits): language_model's forward for decoder sequences
//     bound to sources (seq2seq_cache): per layer causal self-attention over the paged
//     cache, cross-attention over the sequence's source, SwiGLU MLP.
//   const seq2seq_model<float> model(weights);
//   seq2seq_context<float> ctx(model, {.threads = 2});
//   auto cache = model.make_cache();
//   cache.bind_new_sequences({ctx.encode(source)});  // beams and rollouts share it
//   beam_search(ctx, cache, {{bos}}, options);
// Thread contract as decode_context's. Nothing in a forward step allocates.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "kvdecode/model/batch.hpp"
#include "kvdecode/model/detail/forward_steps.hpp"
#include "kvdecode/model/seq2seq_model.hpp"
#include "kvdecode/model/source.hpp"
#include "kvdecode/simd/axpy.hpp"
#include "kvdecode/simd/dot.hpp"
#include "kvdecode/simd/softmax.hpp"

namespace kvdecode {

template <class T>
class seq2seq_context : public detail::forward_steps<T> {
    using steps = detail::forward_steps<T>;

public:
    using scalar_type = T;
    using cache_type = seq2seq_cache<T>;
    using source_ref = std::shared_ptr<const cross_kv<T>>;

    // A context with a thread pool of its own (options.threads threads).
    explicit seq2seq_context(const seq2seq_model<T>& model, context_options options = {})
        : seq2seq_context(model, nullptr, options) {}
    // A context that runs on the caller's pool (which must outlive it, and must not
    // run another context's pass at the same time).
    seq2seq_context(const seq2seq_model<T>& model, thread_pool& pool, context_options options = {})
        : seq2seq_context(model, &pool, options) {}

    const seq2seq_model<T>& model() const noexcept { return *model_; }
    const model_config& config() const noexcept { return model_->config(); }
    cache_type make_cache(kv_cache_options options = {}) const { return model_->make_cache(options); }

    // Encodes sources (of any lengths up to the model's max_source_length) in batches
    // of whole sources; one cross_kv each, in order.
    std::vector<source_ref> encode(std::span<const source_view<T>> sources);
    source_ref encode(const source_view<T>& source) { return encode(std::span(&source, 1))[0]; }

    void forward(std::span<const sequence_tokens> batch, cache_type& cache, std::span<T> logits,
                 logits_for which = logits_for::last_token) {
        for (std::size_t i = 0; i < batch.size(); ++i)  // before anything changes
            if (cache.contains(batch[i].seq) && !cache.source(batch[i].seq))
                throw std::invalid_argument("kvdecode: forward: sequence " + std::to_string(batch[i].seq) +
                                            " is bound to no source (bind it, or bind_new_sequences before creating it)");
        this->forward_in_passes(batch, cache.store(), logits, which, [&](std::size_t rows, T* out) {
            for (const chunk_piece& p : this->ws_.pieces)
                for (std::size_t i = 0; i < p.rows; ++i) row_sources_[p.first_row + i] = cache.source(p.seq).get();
            return run_pass(rows, cache.store(), out, which);
        });
    }

private:
    seq2seq_context(const seq2seq_model<T>& model, thread_pool* pool, const context_options& options)
        : steps(model.config(), pool, options, rows_for(model, options), model.weights().scratch_bytes(rows_for(model, options))),
          model_(&model), row_sources_(this->ws_.max_rows), source_rows_(this->ws_.max_rows) {
        // Scores rows for the longest target or source: no step grows them.
        const std::size_t keys = std::max(config().seq_len, model.seq2seq().max_source_length);
        this->ws_.reserve_keys(keys, keys);
    }

    // A pass holds a whole source: at least max_source_length rows.
    static std::size_t rows_for(const seq2seq_model<T>& m, const context_options& o) {
        return std::max(steps::rows_per_pass(o, m.config()), m.seq2seq().max_source_length);
    }

    std::size_t run_pass(std::size_t rows, kv_cache<T>& cache, T* logits, logits_for which);
    void encode_pass(std::span<const source_view<T>> sources, std::span<const std::shared_ptr<cross_kv<T>>> out);
    // Rows [first, first + rows) of one source in the pass.
    struct source_rows {
        std::size_t first = 0, rows = 0;
    };
    // One query head over n keys and values, `stride` apart (no mask): softmax of the
    // scaled dot products, then the weighted sum into out (head_dim values).
    void attend_head(const T* q, const T* k, const T* v, std::size_t stride, std::size_t n, T* scores, T* out) const {
        const std::size_t hd = config().head_dim;
        const T scale = T(1) / std::sqrt(static_cast<T>(hd));
        for (std::size_t j = 0; j < n; ++j) scores[j] = simd::dot(q, k + j * stride, hd) * scale;
        simd::softmax(scores, n);
        std::fill(out, out + hd, T(0));
        for (std::size_t j = 0; j < n; ++j) simd::axpy(scores[j], v + j * stride, out, hd);
    }
    void attend_within_sources(std::size_t rows);
    void attend_sources(std::size_t layer, std::size_t rows);

    const seq2seq_model<T>* model_;
    std::vector<const cross_kv<T>*> row_sources_;  // (max_rows) the source each decoder row reads
    std::vector<source_rows> source_rows_;         // (max_rows) each encoder row's source
};

template <class T>
auto seq2seq_context<T>::encode(std::span<const source_view<T>> sources) -> std::vector<source_ref> {
    const seq2seq_config& sc = model_->seq2seq();
    const model_config& c = config();
    std::vector<std::shared_ptr<cross_kv<T>>> made;  // written here, read-only once returned
    made.reserve(sources.size());
    for (std::size_t i = 0; i < sources.size(); ++i)  // every source checked before any work
        made.push_back(std::make_shared<cross_kv<T>>(c.n_layers, c.n_kv_heads, checked_source_length(sources[i], sc, i),
                                                     c.head_dim));
    for (std::size_t first = 0; first < sources.size();) {
        std::size_t end = first, rows = 0;
        while (end < sources.size() && rows + made[end]->length() <= this->ws_.max_rows) rows += made[end++]->length();
        encode_pass(sources.subspan(first, end - first), std::span<const std::shared_ptr<cross_kv<T>>>(made).subspan(first, end - first));
        first = end;
    }
    return {made.begin(), made.end()};
}

template <class T>
void seq2seq_context<T>::encode_pass(std::span<const source_view<T>> sources,
                                     std::span<const std::shared_ptr<cross_kv<T>>> out) {
    const seq2seq_config& sc = model_->seq2seq();
    const model_config& c = config();
    const packed_seq2seq_weights<T>& w = model_->weights();
    const packed_weights<T>& enc = *w.encoder();
    auto& ws = this->ws_;
    // The inputs, source after source, and each row's source.
    std::size_t rows = 0;
    for (std::size_t s = 0; s < sources.size(); ++s) {
        const std::size_t n = out[s]->length();
        T* x = ws.x.data() + rows * c.dim;
        if (sc.vector_sources()) {
            this->project(*w.input(), {sources[s].vectors.data(), sc.input_dim, n}, x);
            for (std::size_t r = 0; r < n; ++r) simd::axpy(T(1), w.input_bias().data(), x + r * c.dim, c.dim);
        } else {
            for (std::size_t r = 0; r < n; ++r) enc.token_embedding().lookup(sources[s].tokens[r], x + r * c.dim);
        }
        for (std::size_t r = 0; r < n; ++r) source_rows_[rows + r] = {rows, n};
        rows += n;
    }
    for (std::size_t l = 0; l < sc.encoder_layers; ++l) {
        this->project_fused(enc.wqkv(l), this->normalized(ws.x.data(), rows, enc.attn_norm(l)), ws.qkv.data());
        for (std::size_t r = 0; r < rows; ++r) {
            T* q = ws.qkv.data() + r * c.qkv_dim();
            const std::size_t pos = r - source_rows_[r].first;
            model_->encoder_rope().apply(q, c.n_heads, pos);
            model_->encoder_rope().apply(q + c.q_dim(), c.n_kv_heads, pos);
        }
        attend_within_sources(rows);
        this->project_add(enc.wo(l), {ws.attended.data(), c.q_dim(), rows}, ws.x.data());
        this->project_fused(enc.w13(l), this->normalized(ws.x.data(), rows, enc.ffn_norm(l)), ws.gate_up.data());
        this->swiglu(rows);
        this->project_add(enc.w2(l), {ws.hidden.data(), c.hidden_dim, rows}, ws.x.data());
    }
    // The memory (the encoder's normalised output, in xb), then each decoder layer's
    // cross K/V: one product for all sources' rows, scattered into each cross_kv.
    const auto memory = this->normalized(ws.x.data(), rows, w.encoder_norm());
    const std::size_t hd = c.head_dim, kv_width = 2 * c.kv_dim();
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        this->multiply(w.cross(l).wkv, memory, ws.qkv.data(), kv_width, false);
        for (std::size_t s = 0, r0 = 0; s < sources.size(); r0 += out[s]->length(), ++s) {
            cross_kv<T>& kv = *out[s];
            for (std::size_t i = 0; i < kv.length(); ++i)
                for (std::size_t g = 0; g < c.n_kv_heads; ++g) {
                    const T* row = ws.qkv.data() + (r0 + i) * kv_width;
                    std::copy_n(row + g * hd, hd, kv.keys(l, g) + i * hd);
                    std::copy_n(row + c.kv_dim() + g * hd, hd, kv.values(l, g) + i * hd);
                }
        }
    }
}

// Encoder self-attention: every row attends to every row of its own source (no mask),
// K and V read from the rows' qkv. Split between threads by rows.
template <class T>
void seq2seq_context<T>::attend_within_sources(std::size_t rows) {
    const model_config& c = config();
    auto& ws = this->ws_;
    const std::size_t hd = c.head_dim, stride = c.qkv_dim();
    std::size_t keys = 0;
    for (std::size_t r = 0; r < rows; ++r) keys += source_rows_[r].rows;
    this->pool_->parallel_parts(rows, [&](std::size_t part, std::size_t begin, std::size_t end) {
        T* scores = ws.scores_row(part);
        for (std::size_t r = begin; r < end; ++r) {
            const source_rows s = source_rows_[r];
            for (std::size_t h = 0; h < c.n_heads; ++h) {
                const std::size_t g = h / c.group_size();
                const T* k = ws.qkv.data() + s.first * stride + c.q_dim() + g * hd;
                attend_head(ws.qkv.data() + r * stride + h * hd, k, k + c.kv_dim(), stride, s.rows, scores,
                            ws.attended.data() + r * c.q_dim() + h * hd);
            }
        }
    }, this->parts_for(8 * keys * c.q_dim()));
}

// Cross-attention: each decoder row's query heads (in qkv, q_dim apart) over its
// source's keys and values. Split between threads by rows.
template <class T>
void seq2seq_context<T>::attend_sources(std::size_t layer, std::size_t rows) {
    const model_config& c = config();
    auto& ws = this->ws_;
    const std::size_t hd = c.head_dim;
    std::size_t keys = 0;
    for (std::size_t r = 0; r < rows; ++r) keys += row_sources_[r]->length();
    this->pool_->parallel_parts(rows, [&](std::size_t part, std::size_t begin, std::size_t end) {
        T* scores = ws.scores_row(part);
        for (std::size_t r = begin; r < end; ++r) {
            const cross_kv<T>& kv = *row_sources_[r];
            const std::size_t n = kv.length();
            for (std::size_t h = 0; h < c.n_heads; ++h) {
                const std::size_t g = h / c.group_size();
                attend_head(ws.qkv.data() + r * c.q_dim() + h * hd, kv.keys(layer, g), kv.values(layer, g), hd, n, scores,
                            ws.attended.data() + r * c.q_dim() + h * hd);
            }
        }
    }, this->parts_for(8 * keys * c.q_dim()));
}

template <class T>
std::size_t seq2seq_context<T>::run_pass(std::size_t rows, kv_cache<T>& cache, T* logits, logits_for which) {
    const model_config& c = config();
    const packed_seq2seq_weights<T>& w = model_->weights();
    const packed_weights<T>& dec = *w.decoder();
    auto& ws = this->ws_;
    this->embed(rows, dec.token_embedding());
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        this->project_fused(dec.wqkv(l), this->normalized(ws.x.data(), rows, dec.attn_norm(l)), ws.qkv.data());
        this->rotate_and_store_kv(l, cache, model_->decoder_rope());
        this->attend_all(l, cache);
        this->project_add(dec.wo(l), {ws.attended.data(), c.q_dim(), rows}, ws.x.data());
        this->project(w.cross(l).wq, this->normalized(ws.x.data(), rows, {}), ws.qkv.data());  // norm gain folded
        attend_sources(l, rows);
        this->project_add(w.cross(l).wo, {ws.attended.data(), c.q_dim(), rows}, ws.x.data());
        this->project_fused(dec.w13(l), this->normalized(ws.x.data(), rows, dec.ffn_norm(l)), ws.gate_up.data());
        this->swiglu(rows);
        this->project_add(dec.w2(l), {ws.hidden.data(), c.hidden_dim, rows}, ws.x.data());
    }
    return this->classify(rows, logits, which, dec.final_norm(), dec.classifier());
}

}  // namespace kvdecode
