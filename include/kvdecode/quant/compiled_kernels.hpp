#pragma once
// The matrix kernels of every weight type and instruction set, and the packing and
// quantising of weights into their layouts, compiled here. A program
// whose translation units all define KVDECODE_SEPARATE_KERNELS includes this header in
// exactly one of them: the kernels (most of the optimiser's work on a translation unit
// that decodes) are then compiled once, instead of once in every file that includes a
// model. Without that macro kvdecode stays header-only and this header is not needed.
// The one translation unit must be compiled with the same instruction-set flags as the
// others (it decides which kernels exist).

#include "kvdecode/quant/weight_matrix.hpp"

namespace kvdecode {

template weight_matrix<float>::kernel_fn weight_matrix<float>::kernel_for(weight_type, kernel_isa) noexcept;
template weight_matrix<double>::kernel_fn weight_matrix<double>::kernel_for(weight_type, kernel_isa) noexcept;
template void weight_matrix<float>::pack(const float*, const float*);
template void weight_matrix<double>::pack(const double*, const double*);

}  // namespace kvdecode
