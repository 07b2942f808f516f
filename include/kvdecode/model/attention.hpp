#pragma once
// Grouped-query attention of consecutive new tokens of one sequence over its paged
// K/V cache (their own K/V already written). Keys are read block by block in
// place; nothing is gathered into temporaries.
//   one token (a decode step): no mask, a dot product per key, an axpy per value;
//   a chunk of m tokens (prefill): scores by matrix products per block, then the
//   cached causal mask on the chunk's own m columns only — the keys before the
//   chunk are visible to every row.

#include <cmath>
#include <cstddef>
#include <span>

#include <Eigen/Core>

#include "kvdecode/cache/kv_cache.hpp"
#include "kvdecode/model/linear.hpp"
#include "kvdecode/simd/axpy.hpp"
#include "kvdecode/simd/dot.hpp"
#include "kvdecode/simd/softmax.hpp"

namespace kvdecode {

template <class T>
struct attention_args {
    std::size_t layer = 0;
    seq_id seq = 0;
    std::size_t start = 0;  // position of the first new token
    std::size_t rows = 0;   // new tokens
    const T* q = nullptr;   // (rows, q_stride): query head h at column h * head_dim
    std::size_t q_stride = 0;
    T* out = nullptr;       // (rows, out_stride): head h written at column h * head_dim
    std::size_t out_stride = 0;
    const T* mask = nullptr;  // (rows, rows) causal mask; unused when rows == 1
    T* scores = nullptr;      // scratch of rows * (start + rows)
};

template <class T>
void attend(const kv_cache<T>& cache, const attention_args<T>& a) {
    const model_config& c = cache.config();
    const std::size_t hd = c.head_dim, bs = cache.block_size(), keys = a.start + a.rows;
    const std::span<const block_id> blocks = cache.block_list(a.seq);
    const T scale = T(1) / std::sqrt(static_cast<T>(hd));

    if (a.rows == 1) {
        for (std::size_t h = 0; h < c.n_heads; ++h) {
            const std::size_t g = h / c.group_size();
            const T* q = a.q + h * hd;
            for (std::size_t j = 0; j < keys; ++j)
                a.scores[j] = simd::dot(q, cache.key(a.layer, blocks[j / bs], g) + (j % bs) * hd, hd) * scale;
            simd::softmax(a.scores, keys);
            T* out = a.out + h * hd;
            std::fill(out, out + hd, T(0));
            for (std::size_t j = 0; j < keys; ++j)
                simd::axpy(a.scores[j], cache.value(a.layer, blocks[j / bs], g) + (j % bs) * hd, out, hd);
        }
        return;
    }

    using Matrix = row_major_matrix<T>;
    using Strided = Eigen::OuterStride<>;
    const auto m = static_cast<Eigen::Index>(a.rows), d = static_cast<Eigen::Index>(hd),
               n = static_cast<Eigen::Index>(keys);
    Eigen::Map<Matrix> s(a.scores, m, n);
    const Eigen::Map<const Matrix> mask(a.mask, m, m);
    for (std::size_t h = 0; h < c.n_heads; ++h) {
        const std::size_t g = h / c.group_size();
        const Eigen::Map<const Matrix, 0, Strided> q(a.q + h * hd, m, d, Strided(static_cast<Eigen::Index>(a.q_stride)));
        Eigen::Map<Matrix, 0, Strided> out(a.out + h * hd, m, d, Strided(static_cast<Eigen::Index>(a.out_stride)));
        for (std::size_t b = 0; b * bs < keys; ++b) {
            const auto count = static_cast<Eigen::Index>(std::min(bs, keys - b * bs));
            const Eigen::Map<const Matrix> k(cache.key(a.layer, blocks[b], g), count, d);
            s.middleCols(static_cast<Eigen::Index>(b * bs), count).noalias() = q * k.transpose();
        }
        s *= scale;
        s.rightCols(m) += mask;
        for (Eigen::Index i = 0; i < m; ++i) simd::softmax(s.row(i).data(), keys);
        out.setZero();
        for (std::size_t b = 0; b * bs < keys; ++b) {
            const auto count = static_cast<Eigen::Index>(std::min(bs, keys - b * bs));
            const Eigen::Map<const Matrix> v(cache.value(a.layer, blocks[b], g), count, d);
            out.noalias() += s.middleCols(static_cast<Eigen::Index>(b * bs), count) * v;
        }
    }
}

}  // namespace kvdecode
