#pragma once
// The projections of a forward pass: out (rows, out_dim) = in (rows, in_dim) · W^T,
// W row-major (out_dim, in_dim) as stored in the checkpoint (y = W x). A handful
// of rows (decode steps, beams) streams the weights once through the skinny SIMD
// kernel, which never allocates; larger chunks (prefill) go through Eigen's GEMM.
// The pool's threads split the output columns (weight rows): each output value is
// computed by exactly one thread, in the same order whatever the thread count.

#include <cstddef>

#include <Eigen/Core>

#include "kvdecode/core/thread_pool.hpp"
#include "kvdecode/simd/skinny_matmul.hpp"

namespace kvdecode {

template <class T>
using row_major_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Rows up to which the skinny kernel beats a GEMM (and allocates nothing).
inline constexpr std::size_t skinny_rows_limit = 16;

enum class write_mode { overwrite, accumulate };

template <class T>
void linear(thread_pool& pool, const T* in, std::size_t rows, std::size_t in_dim, const T* w, std::size_t out_dim,
            T* out, write_mode mode = write_mode::overwrite) {
    const bool accumulate = mode == write_mode::accumulate;
    if (rows <= skinny_rows_limit) {
        pool.parallel_for(out_dim, [&](std::size_t begin, std::size_t end) {
            simd::skinny_matmul(in, rows, in_dim, w + begin * in_dim, end - begin, out + begin, out_dim, accumulate);
        });
        return;
    }
    using Matrix = row_major_matrix<T>;
    const auto r = static_cast<Eigen::Index>(rows), i = static_cast<Eigen::Index>(in_dim),
               o = static_cast<Eigen::Index>(out_dim);
    Eigen::Map<const Matrix> x(in, r, i), weights(w, o, i);
    Eigen::Map<Matrix> y(out, r, o);
    pool.parallel_for(out_dim, [&](std::size_t begin, std::size_t end) {
        const auto b = static_cast<Eigen::Index>(begin), n = static_cast<Eigen::Index>(end - begin);
        if (accumulate) y.middleCols(b, n).noalias() += x * weights.middleRows(b, n).transpose();
        else y.middleCols(b, n).noalias() = x * weights.middleRows(b, n).transpose();
    });
}

}  // namespace kvdecode
