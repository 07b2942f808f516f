#pragma once
// Grouped-query attention of consecutive new tokens of one sequence over its paged
// K/V cache (their own K/V already written). Keys and values are read block by
// block in place; nothing is gathered into temporaries (a 16-bit cache's rows are
// widened in registers, or for a prefill's matrix products one block at a time).
//   one token (a decode step): no mask; per kv head, the query heads of its group
//   each take a dot product per key and an axpy per value;
//   several tokens (prefill): scores by matrix products per block, then the cached
//   causal mask on the chunk's own columns only — the keys before the chunk are
//   visible to every row.
// The transformer splits the work between threads: decode steps by (sequence, kv
// head), prefill chunks by rows, so each part needs only its own scores scratch.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include <Eigen/Core>

#include "kvdecode/cache/kv_cache.hpp"
#include "kvdecode/quant/half_vector.hpp"
#include "kvdecode/simd/axpy.hpp"
#include "kvdecode/simd/dot.hpp"
#include "kvdecode/simd/softmax.hpp"

namespace kvdecode {

template <class T>
struct attention_args {
    std::size_t layer = 0;
    seq_id seq = 0;
    std::size_t start = 0;  // position of the first of these rows
    std::size_t rows = 0;   // new tokens handled here
    const T* q = nullptr;   // (rows, q_stride): query head h at column h * head_dim
    std::size_t q_stride = 0;
    T* out = nullptr;       // (rows, out_stride): head h written at column h * head_dim
    std::size_t out_stride = 0;
    // Prefill: the chunk's (m, m) causal mask and where these rows sit in the chunk
    // (a thread may take rows [chunk_row, chunk_row + rows) of it). Unused for one token.
    const T* mask = nullptr;
    std::size_t mask_size = 0;
    std::size_t chunk_row = 0;
    T* scores = nullptr;  // scratch of rows * (start + rows)
    // Prefill from a 16-bit cache: one block's K or V rows widened (block_size * head_dim).
    T* kv_rows = nullptr;
};

namespace detail {

// How attention reads stored K/V rows: the cache's own T, or 16-bit values widened in
// registers (dot, axpy) or, for a prefill's matrix products, one block at a time into
// scratch.
template <class T>
struct native_rows {
    using element = T;
    static T dot(const T* q, const T* k, std::size_t n) noexcept { return simd::dot(q, k, n); }
    static void axpy(T alpha, const T* v, T* out, std::size_t n) noexcept { simd::axpy(alpha, v, out, n); }
};

template <quant::half_format F>
struct half_rows {
    using element = std::uint16_t;
    // Chosen at compile time, as simd::dot and simd::axpy are for float rows: inlined
    // into the per-key loops.
    static float dot(const float* q, const std::uint16_t* k, std::size_t n) noexcept {
        return quant::detail::dot_half_compiled<F>(q, k, n);
    }
    static void axpy(float alpha, const std::uint16_t* v, float* out, std::size_t n) noexcept {
        quant::detail::axpy_half_compiled<F>(alpha, v, out, n);
    }
    static void widen(const std::uint16_t* h, float* out, std::size_t n) noexcept { quant::widen_half<F>(h, out, n); }
};

// f(Rows{}) with the reader of the cache's storage type.
template <class T, class F>
void with_rows(kv_type storage, F&& f) {
    if constexpr (std::is_same_v<T, float>) {
        if (storage != kv_type::f32) return with_half_format(storage, [&](auto format) { f(half_rows<format.value>{}); });
    }
    f(native_rows<T>{});
}

template <class T, class Rows>
void attend_one_token(const kv_cache<T>& cache, const attention_args<T>& a, std::size_t g) {
    using E = typename Rows::element;
    const model_config& c = cache.config();
    const std::size_t hd = c.head_dim, bs = cache.block_size(), keys = a.start + 1;
    const std::span<const block_id> blocks = cache.block_list(a.seq);
    const T scale = T(1) / std::sqrt(static_cast<T>(hd));
    // A kv head's rows of one block are contiguous, but the next block's are a block of
    // every kv head away (another page): the hardware prefetcher starts over at each
    // block. So each row asks for the same row of the next block.
    const std::size_t n_blocks = (keys + bs - 1) / bs;
    auto prefetch_row = [&](const E* row) {
        for (std::size_t byte = 0; byte < hd * sizeof(E); byte += 64) __builtin_prefetch(reinterpret_cast<const char*>(row) + byte, 0, 3);
    };
    for (std::size_t h = g * c.group_size(); h < (g + 1) * c.group_size(); ++h) {
        const T* q = a.q + h * hd;
        for (std::size_t b = 0, j = 0; j < keys; ++b) {
            const E* k = cache.template key<E>(a.layer, blocks[b], g);
            const E* next = b + 1 < n_blocks ? cache.template key<E>(a.layer, blocks[b + 1], g) : nullptr;
            for (std::size_t end = std::min(keys, j + bs); j < end; ++j, k += hd) {
                if (next) prefetch_row(next + (j % bs) * hd);
                a.scores[j] = Rows::dot(q, k, hd) * scale;
            }
        }
        simd::softmax(a.scores, keys);
        T* out = a.out + h * hd;
        std::fill(out, out + hd, T(0));
        for (std::size_t b = 0, j = 0; j < keys; ++b) {
            const E* v = cache.template value<E>(a.layer, blocks[b], g);
            const E* next = b + 1 < n_blocks ? cache.template value<E>(a.layer, blocks[b + 1], g) : nullptr;
            for (std::size_t end = std::min(keys, j + bs); j < end; ++j, v += hd) {
                if (next) prefetch_row(next + (j % bs) * hd);
                Rows::axpy(a.scores[j], v, out, hd);
            }
        }
    }
}

template <class T, class Rows>
void attend_rows(const kv_cache<T>& cache, const attention_args<T>& a) {
    using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using Strided = Eigen::OuterStride<>;
    using E = typename Rows::element;
    const model_config& c = cache.config();
    const std::size_t hd = c.head_dim, bs = cache.block_size(), keys = a.start + a.rows;
    const std::span<const block_id> blocks = cache.block_list(a.seq);
    const T scale = T(1) / std::sqrt(static_cast<T>(hd));
    const auto m = static_cast<Eigen::Index>(a.rows), d = static_cast<Eigen::Index>(hd),
               n = static_cast<Eigen::Index>(keys);
    // The chunk's own columns these rows can reach: 0 .. chunk_row + rows.
    const auto own = static_cast<Eigen::Index>(a.chunk_row + a.rows);
    Eigen::Map<Matrix> s(a.scores, m, n);
    const Eigen::Map<const Matrix> mask(a.mask, static_cast<Eigen::Index>(a.mask_size),
                                        static_cast<Eigen::Index>(a.mask_size));
    // A block's count x head_dim rows as T: in place, or widened into a.kv_rows.
    auto rows_of = [&](const E* stored, Eigen::Index count) -> const T* {
        if constexpr (std::is_same_v<E, T>) return stored;
        else {
            Rows::widen(stored, a.kv_rows, static_cast<std::size_t>(count) * hd);
            return a.kv_rows;
        }
    };
    for (std::size_t h = 0; h < c.n_heads; ++h) {
        const std::size_t g = h / c.group_size();
        const Eigen::Map<const Matrix, 0, Strided> q(a.q + h * hd, m, d, Strided(static_cast<Eigen::Index>(a.q_stride)));
        Eigen::Map<Matrix, 0, Strided> out(a.out + h * hd, m, d, Strided(static_cast<Eigen::Index>(a.out_stride)));
        for (std::size_t b = 0; b * bs < keys; ++b) {
            const auto count = static_cast<Eigen::Index>(std::min(bs, keys - b * bs));
            const Eigen::Map<const Matrix> k(rows_of(cache.template key<E>(a.layer, blocks[b], g), count), count, d);
            s.middleCols(static_cast<Eigen::Index>(b * bs), count).noalias() = q * k.transpose();
        }
        s *= scale;
        s.rightCols(own) += mask.block(static_cast<Eigen::Index>(a.chunk_row), 0, m, own);
        for (Eigen::Index i = 0; i < m; ++i) simd::softmax(s.row(i).data(), keys);
        out.setZero();
        for (std::size_t b = 0; b * bs < keys; ++b) {
            const auto count = static_cast<Eigen::Index>(std::min(bs, keys - b * bs));
            const Eigen::Map<const Matrix> v(rows_of(cache.template value<E>(a.layer, blocks[b], g), count), count, d);
            out.noalias() += s.middleCols(static_cast<Eigen::Index>(b * bs), count) * v;
        }
    }
}

}  // namespace detail

// One new token, the query heads of kv head g only.
template <class T>
void attend_one_token(const kv_cache<T>& cache, const attention_args<T>& a, std::size_t g) {
    detail::with_rows<T>(cache.storage(), [&]<class Rows>(Rows) { detail::attend_one_token<T, Rows>(cache, a, g); });
}

// Rows of a prefill chunk, every head. A 16-bit cache needs a.kv_rows.
template <class T>
void attend_rows(const kv_cache<T>& cache, const attention_args<T>& a) {
    detail::with_rows<T>(cache.storage(), [&]<class Rows>(Rows) { detail::attend_rows<T, Rows>(cache, a); });
}

#if defined(KVDECODE_SEPARATE_KERNELS)
// Compiled once, with the matrix kernels, in kvdecode/compiled_kernels.hpp.
extern template void attend_one_token<float>(const kv_cache<float>&, const attention_args<float>&, std::size_t);
extern template void attend_one_token<double>(const kv_cache<double>&, const attention_args<double>&, std::size_t);
extern template void attend_rows<float>(const kv_cache<float>&, const attention_args<float>&);
extern template void attend_rows<double>(const kv_cache<double>&, const attention_args<double>&);
#endif

}  // namespace kvdecode
