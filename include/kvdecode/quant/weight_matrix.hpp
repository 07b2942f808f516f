#pragma once
// A weight matrix whose element storage is chosen at run time (weight_type), behind
// one interface: the forward pass calls prepare and multiply and never looks at the
// type. Each type brings its packing, a scalar dequantisation (dequantize_row, the
// executable spec) and kernels for each instruction set:
//   f32   packed_matmul's 128-byte column panels and kernels (simd/packed_matmul.hpp)
//   f16   64-byte column panels of 32 outputs (kernels_half.hpp)
//   bf16  the same panels
//   q8_0  GGUF's 34-byte blocks, interleaved 16 outputs at a time (q8_0_interleaved.hpp);
//         activations quantised to Q8_0 by prepare (kernels_q8_0.hpp)
//   q4_0, q4_1, q5_0, q5_1  GGUF's rows of 18/20/22/24-byte blocks (in_dim a multiple
//         of 32); activations quantised to Q8_0 (q4_0, q5_0) or Q8_1 (q4_1, q5_1) by
//         prepare (kernels_q4_q5.hpp)
//   q2_k .. q6_k  GGUF's rows of K-quant super-blocks (256 values; in_dim must be a
//         multiple of 256); activations quantised to Q8_K by prepare (kernels_k_quants.hpp)
// For activation type double only f32 exists (weights stored unquantised, in double).
//
// A product, split between threads:
//   1. scratch of scratch_bytes(rows) bytes (64-byte aligned; none for float types);
//   2. prepare(p, scratch, row_begin, row_end) over all rows (threads may split them);
//   3. multiply(p, scratch, unit_begin, unit_end) over all units() (threads split
//      them; a unit is outputs_per_unit() consecutive outputs, 32 for every type but
//      f32 in double, whose panels hold 16). Every output is computed by one call, in
//      the same order however the units are split.
// Adding a type: its kernels header, a case in the float constructor, units(),
// dequantize_row() and kernel_for(), block_values/block_bytes in weight_type.hpp, and
// its tests. The stored constructor needs nothing more.
//
// Two constructors: from a row-major matrix in T (quantised or converted here), and
// from `stored` bytes in a model file's layout (GGUF: out_dim rows of
// row_bytes(type, in_dim) bytes). The legacy and K-quant block types keep the file
// layout as their own, so a stored matrix is used in place when an owner keeps the
// bytes alive (a mapped file), or copied once; q8_0 is interleaved and the float types
// repacked into their panels, once, values unchanged.
//
// Immutable after construction, so one matrix may serve any number of threads. The
// elements are reached through one pointer, data_: into the matrix's own 64-byte
// aligned storage, or into the owner's bytes.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/checked_arithmetic.hpp"
#include "kvdecode/quant/half.hpp"
#include "kvdecode/quant/kernel_isa.hpp"
#include "kvdecode/quant/kernels_half.hpp"
#include "kvdecode/quant/kernels_q4_q5.hpp"
#include "kvdecode/quant/kernels_k_quants.hpp"
#include "kvdecode/quant/kernels_q8_0.hpp"
#include "kvdecode/quant/matrix_product.hpp"
#include "kvdecode/quant/q4_q5.hpp"
#include "kvdecode/quant/q8_0.hpp"
#include "kvdecode/quant/weight_type.hpp"
#include "kvdecode/simd/packed_matmul.hpp"

namespace kvdecode {

static_assert(block_bytes(weight_type::q8_0) == sizeof(quant::block_q8_0) &&
              block_values(weight_type::q8_0) == quant::q8_0_block_values);

template <class T>
class weight_matrix {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "activations are float or double");

public:
    using scalar_type = T;

    // Packs W (out_dim, in_dim), row-major, into `type`, column k multiplied by
    // column_scale[k] where given (an RMSNorm gain folded in; the product is taken in T,
    // then stored). Throws std::invalid_argument for an empty or null matrix, a type T
    // cannot use, sizes that overflow, an in_dim that is not a whole number of the
    // type's blocks (q4_0 .. q5_1: multiples of 32), and values the type cannot hold (f16
    // beyond ±65504 after rounding, q8_0 inf, NaN or beyond ±127 * 65504; the legacy
    // block types inf, NaN or a block whose scale or minimum overflows float16), naming
    // the element or block.
    weight_matrix(weight_type type, const T* w, std::size_t out_dim, std::size_t in_dim, const T* column_scale = nullptr)
        : type_(type), out_dim_(out_dim), in_dim_(in_dim) {
        if (w == nullptr || out_dim == 0 || in_dim == 0)
            throw std::invalid_argument("kvdecode: weight_matrix needs a non-null matrix of at least 1 x 1, got " +
                                        std::to_string(out_dim) + " x " + std::to_string(in_dim));
        if (type != weight_type::f32 && !std::is_same_v<T, float>)
            throw std::invalid_argument("kvdecode: weight type " + std::string(to_string(type)) +
                                        " needs float activations; double models store f32 (unquantised, in double)");
        if (is_k_quant(type) && in_dim % quant::qk_k != 0)
            throw std::invalid_argument("kvdecode: weight type " + std::string(to_string(type)) +
                                        " needs in_dim a multiple of 256 (whole super-blocks), got " + std::to_string(in_dim));
        const auto elements = checked_mul(out_dim, in_dim);
        if (!elements || !checked_mul(*elements, 4 * sizeof(T)))
            throw std::invalid_argument("kvdecode: weight_matrix of " + std::to_string(out_dim) + " x " +
                                        std::to_string(in_dim) + " values overflows the address space");
        if (is_legacy(type) && in_dim % block_values(type) != 0)
            throw std::invalid_argument("kvdecode: weight type " + std::string(to_string(type)) + " needs in_dim a multiple of " +
                                        std::to_string(block_values(type)) + " (whole blocks), got in_dim " +
                                        std::to_string(in_dim));
        if constexpr (std::is_same_v<T, float>) check_representable(w, column_scale);
        storage_ = aligned_buffer<std::byte>(storage_bytes());
        data_ = storage_.data();
        pack(w, column_scale);
        choose_kernel();
    }

    // Wraps `stored`: out_dim rows of in_dim values in the file layout of `type`
    // (exactly out_dim * row_bytes(type, in_dim) bytes; little-endian, as GGUF). The
    // legacy and K-quant types point at the bytes when `owner` keeps them alive and they
    // are aligned to stored_alignment, and copy them otherwise; q8_0 blocks are
    // interleaved and f32, f16 and bf16 rows repacked into their panels, values unchanged
    // (the owner is then not kept). Throws std::invalid_argument for an empty
    // matrix, T other than float, a row that is not whole blocks, or a size mismatch,
    // naming the sizes.
    weight_matrix(weight_type type, std::span<const std::byte> stored, std::size_t out_dim, std::size_t in_dim,
                  std::shared_ptr<const void> owner = {})
        : type_(type), out_dim_(out_dim), in_dim_(in_dim) {
        const std::string shape = std::to_string(out_dim) + " x " + std::to_string(in_dim);
        if (out_dim == 0 || in_dim == 0)
            throw std::invalid_argument("kvdecode: weight_matrix needs at least 1 x 1 values, got " + shape);
        if (!std::is_same_v<T, float>)
            throw std::invalid_argument("kvdecode: stored " + std::string(to_string(type)) +
                                        " weights need float activations");
        const auto expected = checked_mul(out_dim, row_bytes(type, in_dim));
        if (!expected || !checked_mul(out_dim, in_dim * 4 * sizeof(T)))
            throw std::invalid_argument("kvdecode: stored weight_matrix of " + shape + " " +
                                        std::string(to_string(type)) + " values overflows the address space");
        if (stored.size() != *expected)
            throw std::invalid_argument("kvdecode: stored weight_matrix of " + shape + " " + std::string(to_string(type)) +
                                        " values needs " + std::to_string(*expected) + " bytes (" + std::to_string(out_dim) +
                                        " rows of " + std::to_string(row_bytes(type, in_dim)) + "), got " +
                                        std::to_string(stored.size()));
        if constexpr (std::is_same_v<T, float>) {
            if (type == weight_type::q8_0) {
                storage_ = aligned_buffer<std::byte>(storage_bytes());
                data_ = storage_.data();
                quant::interleave_q8_0(stored.data(), out_dim, in_dim, storage_.data());
            } else if (block_values(type) > 1) {
                const bool aligned = reinterpret_cast<std::uintptr_t>(stored.data()) % stored_alignment == 0;
                if (owner && aligned) {
                    data_ = stored.data();
                    owner_ = std::move(owner);
                } else {
                    storage_ = aligned_buffer<std::byte>(stored.size());
                    std::memcpy(storage_.data(), stored.data(), stored.size());
                    data_ = storage_.data();
                }
            } else {
                storage_ = aligned_buffer<std::byte>(storage_bytes());
                data_ = storage_.data();
                if (type == weight_type::f32)
                    pack_stored_rows<float, simd::panel_width<float>>(stored.data(), f32_layout().panel_stride(),
                                                                      reinterpret_cast<float*>(storage_.data()));
                else
                    pack_stored_rows<std::uint16_t, quant::half_panel_layout::width>(
                        stored.data(), half_layout().panel_stride(), reinterpret_cast<std::uint16_t*>(storage_.data()));
            }
        }
        choose_kernel();
    }

    // The alignment at which stored block rows are used in place: more than any block
    // struct needs (ggml's are 2- or 4-byte aligned; the kernels load rows unaligned),
    // and what GGUF guarantees for every tensor (general.alignment, 32 by default).
    static constexpr std::size_t stored_alignment = 16;

    weight_matrix(const weight_matrix&) = delete;
    weight_matrix& operator=(const weight_matrix&) = delete;
    weight_matrix(weight_matrix&& other) noexcept { swap(other); }

    // The same matrix with its elements copied into memory of its own (the cost in the
    // name, as the cache's fork: the benchmarks cycle through copies of one matrix, and
    // a K-quant's reference quantiser is too slow to run again for each).
    weight_matrix copy() const {
        weight_matrix c;
        c.type_ = type_, c.out_dim_ = out_dim_, c.in_dim_ = in_dim_;
        c.storage_ = aligned_buffer<std::byte>(bytes());
        if (bytes() != 0) std::memcpy(c.storage_.data(), data_, bytes());
        c.data_ = c.storage_.data();
        c.kernel_ = kernel_, c.scratch_row_bytes_ = scratch_row_bytes_;
        return c;
    }
    weight_matrix& operator=(weight_matrix&& other) noexcept {
        weight_matrix moved(std::move(other));
        swap(moved);
        return *this;
    }
    ~weight_matrix() = default;

    weight_type type() const noexcept { return type_; }
    std::size_t out_dim() const noexcept { return out_dim_; }
    std::size_t in_dim() const noexcept { return in_dim_; }

    // Bytes one product streams through (padding included): the numerator of the
    // bandwidth limit.
    std::size_t bytes() const noexcept { return storage_bytes(); }
    // Whether the elements live in an owner's bytes (a mapped file), not in the matrix.
    bool in_place() const noexcept { return owner_ != nullptr; }

    // Work units for the thread split, and the outputs each covers (the last unit may
    // cover fewer).
    std::size_t outputs_per_unit() const noexcept {
        return type_ == weight_type::f32 ? simd::panel_width<T> : std::size_t{32};
    }
    std::size_t units() const noexcept { return (out_dim_ + outputs_per_unit() - 1) / outputs_per_unit(); }

    // Scratch a product of `rows` rows needs for its prepared activations (0 for float types).
    std::size_t scratch_bytes(std::size_t rows) const {
        const auto n = checked_mul(rows, scratch_row_bytes_);
        if (!n) throw std::invalid_argument("kvdecode: weight_matrix scratch for " + std::to_string(rows) + " rows overflows");
        return static_cast<std::size_t>(*n);
    }

    // Once per product, before multiply, rows [row_begin, row_end): block types quantise
    // each activation row into scratch (scratch_bytes(p.rows) bytes, 64-byte aligned: an
    // aligned_buffer's data), Q8_0 for q8_0, q4_0, q5_0, Q8_1 for q4_1, q5_1 and Q8_K for
    // the K-quants; float
    // types do nothing. Every row is prepared before any multiply of the product starts
    // (a barrier between the threads' two phases).
    void prepare(const matrix_product<T>& p, std::byte* scratch, std::size_t row_begin, std::size_t row_end) const noexcept {
        if constexpr (std::is_same_v<T, float>) {
            if (scratch_row_bytes_ == 0) return;
            if (is_k_quant(type_)) {
                for (std::size_t r = row_begin; r < row_end && r < p.rows; ++r)
                    quant::prepare_q8_k_row(p.in + r * p.in_stride, in_dim_, scratch + r * scratch_row_bytes_);
                return;
            }
            auto each_row = [&](auto prepare_row) {
                for (std::size_t r = row_begin; r < row_end && r < p.rows; ++r)
                    prepare_row(p.in + r * p.in_stride, in_dim_, scratch + r * scratch_row_bytes_);
            };
            if (type_ == weight_type::q8_0) each_row(quant::prepare_q8_0_row);
            else with_legacy_block(type_, [&]<class Block>(Block*) { each_row(quant::prepare_activation_row<Block>); });
        }
    }

    // Units [unit_begin, unit_end) of the product on the best kernel this CPU runs
    // (chosen once per type). Allocates nothing.
    void multiply(const matrix_product<T>& p, const std::byte* scratch, std::size_t unit_begin,
                  std::size_t unit_end) const noexcept {
        kernel_(*this, p, scratch, unit_begin, std::min(unit_end, units()));
    }

    // The same on a named instruction set (tests, benchmarks); throws
    // std::invalid_argument where this build or CPU has no such kernel (has_kernel).
    void multiply_on(kernel_isa isa, const matrix_product<T>& p, const std::byte* scratch, std::size_t unit_begin,
                     std::size_t unit_end) const {
        if (!has_kernel(type_, isa))
            throw std::invalid_argument("kvdecode: no " + std::string(to_string(isa)) + " kernel for " +
                                        std::string(to_string(type_)) + " weights in this build or on this CPU");
        kernel_for(type_, isa)(*this, p, scratch, unit_begin, std::min(unit_end, units()));
    }

    // Whether this build compiled, and this CPU runs, a kernel for the type.
    static bool has_kernel(weight_type type, kernel_isa isa) noexcept {
        if (type == weight_type::f32) {
            switch (isa) {
                case kernel_isa::scalar: return true;
                case kernel_isa::sse2: return simd_runs<xsimd::sse2>();
                case kernel_isa::avx2: return simd_runs<xsimd::fma3<xsimd::avx2>>();
                case kernel_isa::avx512: return simd_runs<xsimd::avx512f>();
            }
            return false;
        }
        if (type != weight_type::f16 && type != weight_type::bf16 && isa == kernel_isa::sse2)
            return false;  // block types: scalar, AVX2, AVX-512 only
        return std::is_same_v<T, float> && quant::detail::compiled_in(isa) && quant::detail::cpu_runs(isa);
    }

    // The kernel multiply() runs for a type.
    static kernel_isa best_kernel(weight_type type) noexcept {
        for (kernel_isa isa : {kernel_isa::avx512, kernel_isa::avx2, kernel_isa::sse2})
            if (has_kernel(type, isa)) return isa;
        return kernel_isa::scalar;
    }

    // Row o as T, column scales included: what the products multiply by.
    void dequantize_row(std::size_t o, T* out) const {
        if (o >= out_dim_)
            throw std::invalid_argument("kvdecode: weight_matrix row " + std::to_string(o) + " of " + std::to_string(out_dim_));
        switch (type_) {
            case weight_type::f32: {
                constexpr std::size_t W = simd::panel_width<T>;
                const T* panel = f32_panels() + o / W * f32_layout().panel_stride() + o % W;
                for (std::size_t k = 0; k < in_dim_; ++k) out[k] = panel[k * W];
                return;
            }
            case weight_type::f16:
            case weight_type::bf16: {
                constexpr std::size_t W = quant::half_panel_layout::width;
                const std::uint16_t* panel = half_panels() + o / W * half_layout().panel_stride() + o % W;
                for (std::size_t k = 0; k < in_dim_; ++k)
                    out[k] = static_cast<T>(type_ == weight_type::f16 ? quant::f16_to_f32(panel[k * W])
                                                                      : quant::bf16_to_f32(panel[k * W]));
                return;
            }
            case weight_type::q8_0: {
                if constexpr (std::is_same_v<T, float>) quant::dequantize_row_q8_0(q8_0(), o, out);
                return;
            }
            case weight_type::q4_0:
            case weight_type::q4_1:
            case weight_type::q5_0:
            case weight_type::q5_1: {
                if constexpr (std::is_same_v<T, float>)
                    with_legacy_block(type_, [&]<class Block>(Block*) {
                        const auto m = legacy<Block>();
                        quant::dequantize_row_legacy(m.blocks + o * m.blocks_per_row(), out, in_dim_);
                    });
                return;
            }
            case weight_type::q2_k:
            case weight_type::q3_k:
            case weight_type::q4_k:
            case weight_type::q5_k:
            case weight_type::q6_k: {
                if constexpr (std::is_same_v<T, float>)
                    visit_k_block(type_, [&](auto block) {
                        using B = decltype(block);
                        quant::dequantize_row_k(this->template k_rows<B>() + o * quant::k_blocks(in_dim_), out, in_dim_);
                    });
                return;
            }
        }
    }

private:
    weight_matrix() = default;  // empty: what a move leaves, and copy() fills

    using kernel_fn = void (*)(const weight_matrix&, const matrix_product<T>&, const std::byte*, std::size_t,
                               std::size_t) noexcept;

    // Both constructors end here: the type's best kernel and the scratch its prepared
    // activations take per row.
    void choose_kernel() noexcept {
        kernel_ = kernel_for(type_, best_kernel(type_));
        scratch_row_bytes_ = activation_row_bytes(type_, in_dim_);
    }

    template <class Arch>
    static bool simd_runs() noexcept {
        if constexpr (Arch::supported() && xsimd::has_simd_register<T>::value)
            return Arch::version() <= xsimd::available_architectures().best;  // packed_matmul's own test
        else return false;
    }

    void swap(weight_matrix& other) noexcept {
        std::swap(type_, other.type_);
        std::swap(out_dim_, other.out_dim_);
        std::swap(in_dim_, other.in_dim_);
        std::swap(storage_, other.storage_);
        std::swap(owner_, other.owner_);
        std::swap(data_, other.data_);
        std::swap(kernel_, other.kernel_);
        std::swap(scratch_row_bytes_, other.scratch_row_bytes_);
    }

    static constexpr bool is_legacy(weight_type type) noexcept {
        return type == weight_type::q4_0 || type == weight_type::q4_1 || type == weight_type::q5_0 ||
               type == weight_type::q5_1;
    }
    // Calls f(static_cast<Block*>(nullptr)) with the block struct of a legacy type.
    template <class F>
    static void with_legacy_block(weight_type type, F&& f) {
        switch (type) {
            case weight_type::q4_0: f(static_cast<quant::block_q4_0*>(nullptr)); return;
            case weight_type::q4_1: f(static_cast<quant::block_q4_1*>(nullptr)); return;
            case weight_type::q5_0: f(static_cast<quant::block_q5_0*>(nullptr)); return;
            case weight_type::q5_1: f(static_cast<quant::block_q5_1*>(nullptr)); return;
            default: return;
        }
    }
    // Prepared activation bytes per row (0: none prepared).
    static std::size_t activation_row_bytes(weight_type type, std::size_t in_dim) noexcept {
        if (!std::is_same_v<T, float>) return 0;
        if (type == weight_type::q8_0) return quant::q8_0_weight_activations{in_dim}.row_bytes();
        if (is_k_quant(type)) return quant::q8_k_activations{in_dim}.row_bytes();
        std::size_t bytes = 0;
        with_legacy_block(type, [&]<class Block>(Block*) { bytes = quant::activation_row_bytes<Block>(in_dim); });
        return bytes;
    }

    simd::packed_layout<T> f32_layout() const noexcept { return {out_dim_, in_dim_}; }
    quant::half_panel_layout half_layout() const noexcept { return {out_dim_, in_dim_}; }
    quant::q8_0_interleaved q8_0() const noexcept { return {data_, out_dim_, in_dim_}; }
    const T* f32_panels() const noexcept { return reinterpret_cast<const T*>(data_); }
    const std::uint16_t* half_panels() const noexcept { return reinterpret_cast<const std::uint16_t*>(data_); }
    template <class Block>
    quant::legacy_matrix<Block> legacy() const noexcept {
        return {reinterpret_cast<const Block*>(data_), out_dim_, in_dim_};
    }
    template <class Block>
    const Block* k_rows() const noexcept { return reinterpret_cast<const Block*>(data_); }
    template <class Block>
    quant::k_matrix<Block> k_view() const noexcept { return {k_rows<Block>(), out_dim_, in_dim_}; }

    // f(Block{}) with the K-quant type's block struct.
    template <class F>
    static void visit_k_block(weight_type type, F&& f) {
        switch (type) {
            case weight_type::q2_k: f(quant::block_q2_k{}); return;
            case weight_type::q3_k: f(quant::block_q3_k{}); return;
            case weight_type::q4_k: f(quant::block_q4_k{}); return;
            case weight_type::q5_k: f(quant::block_q5_k{}); return;
            case weight_type::q6_k: f(quant::block_q6_k{}); return;
            default: return;
        }
    }

    std::size_t storage_bytes() const noexcept {
        switch (type_) {
            case weight_type::f32: return f32_layout().elements() * sizeof(T);
            case weight_type::f16:
            case weight_type::bf16: return half_layout().elements() * sizeof(std::uint16_t);
            case weight_type::q8_0: return quant::q8_0_interleaved::bytes(out_dim_, in_dim_);
            default: break;
        }
        // Block types: rows of whole blocks.
        const std::size_t per_block = block_values(type_);
        return out_dim_ * ((in_dim_ + per_block - 1) / per_block) * block_bytes(type_);
    }

    // File rows (little-endian E values, any alignment) into panels of W outputs.
    template <class E, std::size_t W>
    void pack_stored_rows(const std::byte* rows, std::size_t panel_stride, E* dst) const noexcept {
        for (std::size_t o = 0; o < out_dim_; ++o) {
            E* panel = dst + o / W * panel_stride + o % W;
            const std::byte* row = rows + o * in_dim_ * sizeof(E);
            for (std::size_t k = 0; k < in_dim_; ++k) std::memcpy(panel + k * W, row + k * sizeof(E), sizeof(E));
        }
    }

    // Values the type cannot hold are an error, not a silent inf or NaN in the model:
    // f16 beyond its largest finite value; q8_0 and K-quant non-finite values, or a q8_0
    // block scale (max |w| / 127) beyond float16's range (the K-quants' scales are
    // checked as they are made, in pack).
    void check_representable(const float* w, const float* column_scale) const {
        if (is_legacy(type_)) return check_legacy_representable(w, column_scale);
        if (type_ != weight_type::f16 && type_ != weight_type::q8_0 && !is_k_quant(type_)) return;
        for (std::size_t o = 0; o < out_dim_; ++o)
            for (std::size_t k = 0; k < in_dim_; ++k) {
                const float v = column_scale ? w[o * in_dim_ + k] * column_scale[k] : w[o * in_dim_ + k];
                const char* why = nullptr;
                if (type_ == weight_type::f16 && std::isfinite(v) && quant::f32_to_f16(std::fabs(v)) == 0x7c00)
                    why = " (beyond float16's largest value, 65504)";
                if ((type_ == weight_type::q8_0 || is_k_quant(type_)) && !std::isfinite(v)) why = " (not finite)";
                if (type_ == weight_type::q8_0 && std::isfinite(v) && quant::f32_to_f16(std::fabs(v) / 127.0f) == 0x7c00)
                    why = " (its block's scale |w| / 127 is beyond float16's range)";
                if (why != nullptr)
                    throw std::invalid_argument("kvdecode: weight (" + std::to_string(o) + ", " + std::to_string(k) + ") = " +
                                                std::to_string(v) + " cannot be stored as " + std::string(to_string(type_)) +
                                                why);
            }
    }

    // The legacy types: every value finite (named), and every block's float16 scale (and
    // minimum) finite once quantised (the block named by its first weight).
    void check_legacy_representable(const float* w, const float* column_scale) const {
        aligned_buffer<float> row(in_dim_);
        for (std::size_t o = 0; o < out_dim_; ++o) {
            scaled_row(w, column_scale, o, row.data());
            for (std::size_t k = 0; k < in_dim_; ++k)
                if (!std::isfinite(row[k]))
                    throw std::invalid_argument("kvdecode: weight (" + std::to_string(o) + ", " + std::to_string(k) + ") = " +
                                                std::to_string(row[k]) + " cannot be stored as " +
                                                std::string(to_string(type_)) + " (not finite)");
            with_legacy_block(type_, [&]<class Block>(Block*) {
                for (std::size_t k = 0; k < in_dim_; k += quant::legacy_block_values) {
                    const Block b = quant::quantize_block<Block>(row.data() + k);
                    bool finite = std::isfinite(quant::f16_to_f32(b.d));
                    if constexpr (quant::legacy_format<Block>::has_min) finite = finite && std::isfinite(quant::f16_to_f32(b.m));
                    if (!finite)
                        throw std::invalid_argument("kvdecode: the block of weights (" + std::to_string(o) + ", " +
                                                    std::to_string(k) + ".." + std::to_string(k + 31) +
                                                    ") cannot be stored as " + std::string(to_string(type_)) +
                                                    " (its scale or minimum is beyond float16's range)");
                }
            });
        }
    }

    // Row o of W with the column scales folded in (in T, as every type packs it).
    void scaled_row(const T* w, const T* column_scale, std::size_t o, T* row) const noexcept {
        for (std::size_t k = 0; k < in_dim_; ++k)
            row[k] = column_scale ? w[o * in_dim_ + k] * column_scale[k] : w[o * in_dim_ + k];
    }

    void pack(const T* w, const T* column_scale);  // below the class: compiled with the kernels

    // Rows through the type's reference quantiser; a block whose float16 scales overflow
    // (values of magnitude near 4e6 and beyond) is an error naming it.
    template <class Block>
    void pack_k(Block, const float* w, const float* column_scale, std::byte* dst) const {
        const std::size_t nb = quant::k_blocks(in_dim_);
        aligned_buffer<float> row(in_dim_);
        auto* blocks = reinterpret_cast<Block*>(dst);
        for (std::size_t o = 0; o < out_dim_; ++o) {
            for (std::size_t k = 0; k < in_dim_; ++k) row[k] = column_scale ? w[o * in_dim_ + k] * column_scale[k] : w[o * in_dim_ + k];
            Block* out = blocks + o * nb;
            if constexpr (std::is_same_v<Block, quant::block_q2_k>) quant::quantize_row_q2_k(row.data(), out, in_dim_);
            if constexpr (std::is_same_v<Block, quant::block_q3_k>) quant::quantize_row_q3_k(row.data(), out, in_dim_);
            if constexpr (std::is_same_v<Block, quant::block_q4_k>) quant::quantize_row_q4_k(row.data(), out, in_dim_);
            if constexpr (std::is_same_v<Block, quant::block_q5_k>) quant::quantize_row_q5_k(row.data(), out, in_dim_);
            if constexpr (std::is_same_v<Block, quant::block_q6_k>) quant::quantize_row_q6_k(row.data(), out, in_dim_);
            for (std::size_t b = 0; b < nb; ++b) {
                quant::k_block_ints v;
                quant::k_format<Block>::unpack_scales(out[b], v);
                if (!std::isfinite(v.d) || !std::isfinite(v.dmin))
                    throw std::invalid_argument("kvdecode: weight row " + std::to_string(o) + ", columns " +
                                                std::to_string(b * quant::qk_k) + ".." + std::to_string(b * quant::qk_k + 255) +
                                                " cannot be stored as " + std::string(to_string(type_)) +
                                                " (its super-block scale is beyond float16's range)");
            }
        }
    }

    // The kernels, one per (type, instruction set); nullptr where not compiled in.
    struct dispatched {};  // f32: packed_matmul's own choice
    struct scalar {};      // f32: packed_matmul_scalar
    template <class Arch>
    static void run_f32(const weight_matrix& m, const matrix_product<T>& p, const std::byte*, std::size_t begin,
                        std::size_t end) noexcept {
        const simd::packed_product<T> a = m.f32_product(p);
        if constexpr (std::is_same_v<Arch, dispatched>) simd::packed_matmul(a, begin, end);
        else if constexpr (std::is_same_v<Arch, scalar>) simd::packed_matmul_scalar(a, begin, end);
        else simd::packed_matmul_for<Arch>(a, begin, end);
    }
    template <class Arch>
    static kernel_fn f32_kernel() noexcept {
        if constexpr (Arch::supported() && xsimd::has_simd_register<T>::value) return &run_f32<Arch>;
        else return nullptr;
    }
    simd::packed_product<T> f32_product(const matrix_product<T>& p) const noexcept {
        simd::packed_product<T> a;
        a.in = p.in, a.in_stride = p.in_stride, a.rows = p.rows, a.row_scale = p.row_scale;
        a.w = f32_panels(), a.layout = f32_layout(), a.out = p.out, a.out_stride = p.out_stride, a.accumulate = p.accumulate;
        return a;
    }

    template <quant::half_format F, kernel_isa Isa>
    static void run_half(const weight_matrix& m, const matrix_product<T>& p, const std::byte*, std::size_t begin,
                         std::size_t end) noexcept {
        const quant::half_matrix h{m.half_panels(), m.half_layout()};
        if constexpr (Isa == kernel_isa::scalar) quant::half_matmul_scalar<F>(h, p, begin, end);
#if defined(KVDECODE_QUANT_SSE2)
        if constexpr (Isa == kernel_isa::sse2) quant::half_matmul_sse2<F>(h, p, begin, end);
#endif
#if defined(KVDECODE_QUANT_AVX2)
        if constexpr (Isa == kernel_isa::avx2) quant::half_matmul_avx2<F>(h, p, begin, end);
#endif
#if defined(KVDECODE_QUANT_AVX512)
        if constexpr (Isa == kernel_isa::avx512) quant::half_matmul_avx512<F>(h, p, begin, end);
#endif
    }

    template <kernel_isa Isa>
    static void run_q8_0(const weight_matrix& m, const matrix_product<T>& p, const std::byte* scratch, std::size_t begin,
                         std::size_t end) noexcept {
        const quant::q8_0_interleaved q = m.q8_0();
        if constexpr (Isa == kernel_isa::scalar) quant::q8_0_matmul_scalar(q, p, scratch, begin, end);
#if defined(KVDECODE_QUANT_AVX2)
        if constexpr (Isa == kernel_isa::avx2) quant::q8_0_matmul_avx2(q, p, scratch, begin, end);
#endif
#if defined(KVDECODE_QUANT_AVX512)
        if constexpr (Isa == kernel_isa::avx512) quant::q8_0_matmul_avx512(q, p, scratch, begin, end);
#endif
    }

    template <class Block, kernel_isa Isa>
    static void run_legacy(const weight_matrix& m, const matrix_product<T>& p, const std::byte* scratch, std::size_t begin,
                           std::size_t end) noexcept {
        const quant::legacy_matrix<Block> q = m.legacy<Block>();
        if constexpr (Isa == kernel_isa::scalar) quant::legacy_matmul_scalar(q, p, scratch, begin, end);
#if defined(KVDECODE_QUANT_AVX2)
        if constexpr (Isa == kernel_isa::avx2) quant::legacy_matmul_avx2(q, p, scratch, begin, end);
#endif
#if defined(KVDECODE_QUANT_AVX512)
        if constexpr (Isa == kernel_isa::avx512) quant::legacy_matmul_avx512(q, p, scratch, begin, end);
#endif
    }

    template <class Block, kernel_isa Isa>
    static void run_k(const weight_matrix& m, const matrix_product<T>& p, const std::byte* scratch, std::size_t begin,
                      std::size_t end) noexcept {
        const quant::k_matrix<Block> q = m.template k_view<Block>();
        if constexpr (Isa == kernel_isa::scalar) quant::k_matmul<Block, quant::detail::k_scalar>(q, p, scratch, begin, end);
#if defined(KVDECODE_QUANT_AVX2)
        if constexpr (Isa == kernel_isa::avx2) quant::k_matmul<Block, quant::detail::k_avx2>(q, p, scratch, begin, end);
#endif
#if defined(KVDECODE_QUANT_AVX512)
        if constexpr (Isa == kernel_isa::avx512) quant::k_matmul<Block, quant::detail::k_avx512>(q, p, scratch, begin, end);
#endif
    }

    template <kernel_isa Isa>
    static kernel_fn quant_kernel(weight_type type) noexcept {
        if constexpr (std::is_same_v<T, float>) {
            switch (type) {
                case weight_type::f16: return &run_half<quant::half_format::f16, Isa>;
                case weight_type::bf16: return &run_half<quant::half_format::bf16, Isa>;
                case weight_type::q8_0: return &run_q8_0<Isa>;
                case weight_type::q4_0: return &run_legacy<quant::block_q4_0, Isa>;
                case weight_type::q4_1: return &run_legacy<quant::block_q4_1, Isa>;
                case weight_type::q5_0: return &run_legacy<quant::block_q5_0, Isa>;
                case weight_type::q5_1: return &run_legacy<quant::block_q5_1, Isa>;
                case weight_type::q2_k: return &run_k<quant::block_q2_k, Isa>;
                case weight_type::q3_k: return &run_k<quant::block_q3_k, Isa>;
                case weight_type::q4_k: return &run_k<quant::block_q4_k, Isa>;
                case weight_type::q5_k: return &run_k<quant::block_q5_k, Isa>;
                case weight_type::q6_k: return &run_k<quant::block_q6_k, Isa>;
                case weight_type::f32: break;
            }
        }
        (void)type;
        return nullptr;
    }

    // Only asked for what has_kernel allows. Defined below the class and not inline: every
    // kernel is instantiated from here, so a program may compile them in one translation
    // unit of its own (kvdecode/compiled_kernels.hpp).
    static kernel_fn kernel_for(weight_type type, kernel_isa isa) noexcept;
    // An empty matrix's (what a move leaves): it has no units to multiply.
    static void no_kernel(const weight_matrix&, const matrix_product<T>&, const std::byte*, std::size_t,
                          std::size_t) noexcept {}

    weight_type type_ = weight_type::f32;
    std::size_t out_dim_ = 0, in_dim_ = 0;
    aligned_buffer<std::byte> storage_;  // the packed elements, unless they are used in place
    std::shared_ptr<const void> owner_;  // keeps the bytes data_ points at alive when in place
    const std::byte* data_ = nullptr;
    kernel_fn kernel_ = &no_kernel;  // the best kernel for type_ on this CPU
    std::size_t scratch_row_bytes_ = 0;  // prepared activation bytes per row (block types)
};

template <class T>
auto weight_matrix<T>::kernel_for(weight_type type, kernel_isa isa) noexcept -> kernel_fn {
    if (type == weight_type::f32) {
        // The best f32 kernel is packed_matmul's dispatched one: f32 runs exactly as before.
        if (isa == best_kernel(type)) return &run_f32<dispatched>;
        switch (isa) {
            case kernel_isa::scalar: return &run_f32<scalar>;
            case kernel_isa::sse2: return f32_kernel<xsimd::sse2>();
            case kernel_isa::avx2: return f32_kernel<xsimd::fma3<xsimd::avx2>>();
            case kernel_isa::avx512: return f32_kernel<xsimd::avx512f>();
        }
        return nullptr;
    }
    switch (isa) {
        case kernel_isa::scalar: return quant_kernel<kernel_isa::scalar>(type);
        case kernel_isa::sse2: return quant_kernel<kernel_isa::sse2>(type);
        case kernel_isa::avx2: return quant_kernel<kernel_isa::avx2>(type);
        case kernel_isa::avx512: return quant_kernel<kernel_isa::avx512>(type);
    }
    return nullptr;
}

template <class T>
void weight_matrix<T>::pack(const T* w, const T* column_scale) {
    std::byte* dst = storage_.data();
    if (type_ == weight_type::f32) {
        simd::pack_matrix(w, f32_layout(), column_scale, reinterpret_cast<T*>(dst));
        return;
    }
    if constexpr (std::is_same_v<T, float>) {
        switch (type_) {
            case weight_type::f16:
                quant::pack_half_panels<quant::half_format::f16>(w, half_layout(), column_scale,
                                                                 reinterpret_cast<std::uint16_t*>(dst));
                return;
            case weight_type::bf16:
                quant::pack_half_panels<quant::half_format::bf16>(w, half_layout(), column_scale,
                                                                  reinterpret_cast<std::uint16_t*>(dst));
                return;
            case weight_type::q8_0: {
                // GGUF's rows first, then interleaved as a stored matrix is.
                const std::size_t nb = quant::q8_0_blocks(in_dim_);
                aligned_buffer<float> row(in_dim_);
                aligned_buffer<quant::block_q8_0> blocks(out_dim_ * nb);
                for (std::size_t o = 0; o < out_dim_; ++o) {
                    scaled_row(w, column_scale, o, row.data());
                    quant::quantize_row_q8_0(row.data(), blocks.data() + o * nb, in_dim_);
                }
                quant::interleave_q8_0(reinterpret_cast<const std::byte*>(blocks.data()), out_dim_, in_dim_, dst);
                return;
            }
            case weight_type::q4_0:
            case weight_type::q4_1:
            case weight_type::q5_0:
            case weight_type::q5_1: {
                aligned_buffer<float> row(in_dim_);
                with_legacy_block(type_, [&]<class Block>(Block*) {
                    auto* blocks = reinterpret_cast<Block*>(dst);
                    const std::size_t nb = quant::legacy_blocks(in_dim_);
                    for (std::size_t o = 0; o < out_dim_; ++o) {
                        scaled_row(w, column_scale, o, row.data());
                        quant::quantize_row_legacy(row.data(), blocks + o * nb, in_dim_);
                    }
                });
                return;
            }
            case weight_type::q2_k:
            case weight_type::q3_k:
            case weight_type::q4_k:
            case weight_type::q5_k:
            case weight_type::q6_k: visit_k_block(type_, [&](auto block) { pack_k(block, w, column_scale, dst); }); return;
            case weight_type::f32: return;
        }
    }
}

#if defined(KVDECODE_SEPARATE_KERNELS)
// The program compiles the kernels once, in the translation unit that includes
// kvdecode/compiled_kernels.hpp; every other one only calls them.
extern template weight_matrix<float>::kernel_fn weight_matrix<float>::kernel_for(weight_type, kernel_isa) noexcept;
extern template weight_matrix<double>::kernel_fn weight_matrix<double>::kernel_for(weight_type, kernel_isa) noexcept;
extern template void weight_matrix<float>::pack(const float*, const float*);
extern template void weight_matrix<double>::pack(const double*, const double*);
#endif

}  // namespace kvdecode
