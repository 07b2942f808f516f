#pragma once
// The weights as the cached transformer reads them: every projection repacked into
// streaming panels (simd/packed_matmul.hpp), with the RMSNorm gain that precedes a
// projection folded into its columns, so a norm only computes 1 / rms per row and the
// product reads the residual stream directly (no normalised copy is written).
//   wqkv   <- [wq; wk; wv] · diag(rms_att)      wo
//   w13    <- [w1; w3] · diag(rms_ffn)          w2
//   classifier <- classifier · diag(rms_final)
// Built once from transformer_weights; immutable, shareable between models and threads.
// The token embedding stays row-major (a lookup, not a product).

#include <algorithm>
#include <cstddef>
#include <vector>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/model_config.hpp"
#include "kvdecode/model/weights.hpp"
#include "kvdecode/simd/packed_matmul.hpp"

namespace kvdecode {

template <class T>
struct packed_matrix {
    const T* data = nullptr;
    simd::packed_layout<T> layout;
};

template <class T>
class packed_weights {
public:
    using scalar_type = T;

    explicit packed_weights(const transformer_weights<T>& w) : config_(w.config()) {
        const model_config& c = config_;
        // Offsets first, then one allocation; every matrix starts on a cache line.
        std::size_t offset = 0;
        auto place = [&](std::size_t out_dim, std::size_t in_dim) {
            const simd::packed_layout<T> layout{out_dim, in_dim};
            slots_.push_back({offset, layout});
            offset += layout.elements();  // a whole number of cache lines
        };
        offset += (c.vocab_size * c.dim + line - 1) / line * line;  // the embedding, at 0
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            place(c.qkv_dim(), c.dim);
            place(c.dim, c.q_dim());
            place(2 * c.hidden_dim, c.dim);
            place(c.dim, c.hidden_dim);
        }
        place(c.vocab_size, c.dim);
        storage_ = aligned_buffer<T>(offset);

        std::copy_n(w.token_embedding(), c.vocab_size * c.dim, storage_.data());
        std::size_t slot = 0;
        auto pack = [&](const T* matrix, const T* gain) {
            const auto& [at, layout] = slots_[slot++];
            simd::pack_matrix(matrix, layout, gain, storage_.data() + at);
        };
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            pack(w.wqkv(l), w.rms_att(l));
            pack(w.wo(l), nullptr);
            pack(w.w13(l), w.rms_ffn(l));
            pack(w.w2(l), nullptr);
        }
        pack(w.classifier(), w.rms_final());
    }

    const model_config& config() const noexcept { return config_; }
    const T* token_embedding() const noexcept { return storage_.data(); }  // (vocab, dim), row-major
    packed_matrix<T> wqkv(std::size_t l) const noexcept { return matrix(4 * l); }
    packed_matrix<T> wo(std::size_t l) const noexcept { return matrix(4 * l + 1); }
    packed_matrix<T> w13(std::size_t l) const noexcept { return matrix(4 * l + 2); }
    packed_matrix<T> w2(std::size_t l) const noexcept { return matrix(4 * l + 3); }
    packed_matrix<T> classifier() const noexcept { return matrix(4 * config_.n_layers); }

    // Bytes of weights one decode step reads: every projection and the classifier
    // (padding included), one embedding row aside. The numerator of the bandwidth limit.
    std::size_t bytes_per_token() const noexcept {
        std::size_t n = 0;
        for (const auto& s : slots_) n += s.layout.elements();
        return n * sizeof(T);
    }
    std::size_t bytes() const noexcept { return storage_.size() * sizeof(T); }

private:
    static constexpr std::size_t line = 64 / sizeof(T);  // values per cache line
    struct slot_info {
        std::size_t offset;
        simd::packed_layout<T> layout;
    };
    packed_matrix<T> matrix(std::size_t i) const noexcept { return {storage_.data() + slots_[i].offset, slots_[i].layout}; }

    model_config config_;
    std::vector<slot_info> slots_;
    aligned_buffer<T> storage_;
};

}  // namespace kvdecode
