#pragma once
// Everything a forward pass of a transformer writes: the workspace, the prefill
// masks, and the thread pool the pass runs on. A context is bound to one immutable
// model; it satisfies language_model, so decoders take a context:
//   const transformer<float> model(weights);         // shared by every thread
//   decode_context<float> ctx(model, {.threads = 4}); // one per decoding thread
//   auto cache = model.make_cache();                  // one per decoding thread
//   greedy(ctx, cache, prompts, options);
// Thread contract: see model/transformer.hpp. One thread uses a context at a time;
// the model must outlive it.
//
// forward() appends each batch entry's new tokens to its cache sequence and writes
// logits. All rows of all entries go through every projection together. Everything
// is checked before anything changes: a throw leaves the cache as it was.

#include <algorithm>
#include <cstddef>
#include <span>

#include "kvdecode/cache/kv_cache.hpp"
#include "kvdecode/core/thread_pool.hpp"
#include "kvdecode/model/batch.hpp"
#include "kvdecode/model/detail/forward_steps.hpp"
#include "kvdecode/model/transformer.hpp"

namespace kvdecode {

template <class T>
class decode_context : public detail::forward_steps<T> {
    using steps = detail::forward_steps<T>;

public:
    using scalar_type = T;
    using cache_type = kv_cache<T>;

    // A context with a thread pool of its own (options.threads threads).
    explicit decode_context(const transformer<T>& model, context_options options = {})
        : decode_context(model, nullptr, options) {}
    // A context that runs on the caller's pool (which must outlive it, and must not
    // run another context's pass at the same time).
    decode_context(const transformer<T>& model, thread_pool& pool, context_options options = {})
        : decode_context(model, &pool, options) {}

    decode_context(const decode_context&) = delete;
    decode_context& operator=(const decode_context&) = delete;

    const transformer<T>& model() const noexcept { return *model_; }
    const model_config& config() const noexcept { return model_->config(); }
    kv_cache<T> make_cache(kv_cache_options options = {}) const { return model_->make_cache(options); }
    // Sizes the attention scratch for sequences of up to `tokens` tokens now, so that
    // no later step allocates (decode steps otherwise grow it by doubling as needed).
    void reserve(std::size_t tokens) { this->ws_.reserve_keys(std::min(tokens, config().seq_len), config().seq_len); }

    void forward(std::span<const sequence_tokens> batch, kv_cache<T>& cache, std::span<T> logits,
                 logits_for which = logits_for::last_token);  // defined below the class

private:
    decode_context(const transformer<T>& model, thread_pool* pool, const context_options& options)
        : steps(model.config(), pool, options, steps::rows_per_pass(options, model.config()),
                model.weights().scratch_bytes(steps::rows_per_pass(options, model.config()))),
          model_(&model) {}

    // One pass over the pieces in ws_.pieces; returns the logits rows written (below the class).
    std::size_t run_pass(std::size_t rows, kv_cache<T>& cache, T* logits, logits_for which);

    const transformer<T>* model_;
};

template <class T>
void decode_context<T>::forward(std::span<const sequence_tokens> batch, kv_cache<T>& cache, std::span<T> logits,
                                logits_for which) {
    this->forward_in_passes(batch, cache, logits, which,
                            [&](std::size_t rows, T* out) { return run_pass(rows, cache, out, which); });
}

// One pass over the pieces in ws_.pieces; returns the logits rows written.
template <class T>
std::size_t decode_context<T>::run_pass(std::size_t rows, kv_cache<T>& cache, T* logits, logits_for which) {
    const model_config& c = config();
    const packed_weights<T>& w = model_->weights();
    auto& ws = this->ws_;
    this->embed(rows, w.token_embedding());
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        this->project_fused(w.wqkv(l), this->normalized(ws.x.data(), rows, w.attn_norm(l)), ws.qkv.data());  // q, k, v
        this->rotate_and_store_kv(l, cache, model_->rope());
        this->attend_all(l, cache);
        this->project_add(w.wo(l), {ws.attended.data(), c.q_dim(), rows}, ws.x.data());
        this->project_fused(w.w13(l), this->normalized(ws.x.data(), rows, w.ffn_norm(l)), ws.gate_up.data());  // gate, up
        this->swiglu(rows);
        this->project_add(w.w2(l), {ws.hidden.data(), c.hidden_dim, rows}, ws.x.data());
    }
    return this->classify(rows, logits, which, w.final_norm(), w.classifier());
}

#if defined(KVDECODE_SEPARATE_KERNELS)
// The forward pass is compiled once, with the kernels, in kvdecode/compiled_kernels.hpp.
extern template void decode_context<float>::forward(std::span<const sequence_tokens>, kv_cache<float>&, std::span<float>,
                                                    logits_for);
extern template void decode_context<double>::forward(std::span<const sequence_tokens>, kv_cache<double>&, std::span<double>,
                                                     logits_for);
extern template std::size_t decode_context<float>::run_pass(std::size_t, kv_cache<float>&, float*, logits_for);
extern template std::size_t decode_context<double>::run_pass(std::size_t, kv_cache<double>&, double*, logits_for);
#endif

}  // namespace kvdecode
