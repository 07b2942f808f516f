#pragma once
// The kernels, compiled here: the matrix products of every weight type and instruction
// set, the packing and quantising of weights into their layouts, attention over each
// KV-cache storage type, and the forward pass that calls them (decode_context). A program whose translation units all define
// KVDECODE_SEPARATE_KERNELS includes this header in exactly one of them: the kernels
// (most of the optimiser's work on a translation unit that decodes) are then compiled
// once, instead of once in every file that includes a model. Without that macro kvdecode
// stays header-only and this header is not needed. The one translation unit must be
// compiled with the same instruction-set flags as the others (they decide which
// kernels exist).

#include "kvdecode/model/attention.hpp"
#include "kvdecode/model/decode_context.hpp"
#include "kvdecode/quant/weight_matrix.hpp"

namespace kvdecode {

template weight_matrix<float>::kernel_fn weight_matrix<float>::kernel_for(weight_type, kernel_isa) noexcept;
template weight_matrix<double>::kernel_fn weight_matrix<double>::kernel_for(weight_type, kernel_isa) noexcept;
template void weight_matrix<float>::pack(const float*, const float*);
template void weight_matrix<double>::pack(const double*, const double*);

template void attend_one_token<float>(const kv_cache<float>&, const attention_args<float>&, std::size_t);
template void attend_one_token<double>(const kv_cache<double>&, const attention_args<double>&, std::size_t);
template void attend_rows<float>(const kv_cache<float>&, const attention_args<float>&);
template void attend_rows<double>(const kv_cache<double>&, const attention_args<double>&);

template void decode_context<float>::forward(std::span<const sequence_tokens>, kv_cache<float>&, std::span<float>, logits_for);
template void decode_context<double>::forward(std::span<const sequence_tokens>, kv_cache<double>&, std::span<double>,
                                              logits_for);
template std::size_t decode_context<float>::run_pass(std::size_t, kv_cache<float>&, float*, logits_for);
template std::size_t decode_context<double>::run_pass(std::size_t, kv_cache<double>&, double*, logits_for);

}  // namespace kvdecode
