#pragma once
// The projections of a forward pass: out (rows, out_dim) = in (rows, in_dim) · W^T,
// W row-major (out_dim, in_dim) as stored in the checkpoint (y = W x). A handful
// of rows (decode steps, beams) streams the weights once through the skinny SIMD
// kernel, which never allocates; larger chunks (prefill) go through Eigen's GEMM.

#include <cstddef>

#include <Eigen/Core>

#include "kvdecode/simd/skinny_matmul.hpp"

namespace kvdecode {

template <class T>
using row_major_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Rows up to which the skinny kernel beats a GEMM (and allocates nothing).
inline constexpr std::size_t skinny_rows_limit = 16;

enum class write_mode { overwrite, accumulate };

template <class T>
void linear(const T* in, std::size_t rows, std::size_t in_dim, const T* w, std::size_t out_dim, T* out,
            write_mode mode = write_mode::overwrite) {
    if (rows <= skinny_rows_limit) {
        simd::skinny_matmul(in, rows, in_dim, w, out_dim, out, mode == write_mode::accumulate);
        return;
    }
    using Matrix = row_major_matrix<T>;
    const auto r = static_cast<Eigen::Index>(rows), i = static_cast<Eigen::Index>(in_dim),
               o = static_cast<Eigen::Index>(out_dim);
    Eigen::Map<const Matrix> x(in, r, i), weights(w, o, i);
    Eigen::Map<Matrix> y(out, r, o);
    if (mode == write_mode::accumulate) y.noalias() += x * weights.transpose();
    else y.noalias() = x * weights.transpose();
}

}  // namespace kvdecode
