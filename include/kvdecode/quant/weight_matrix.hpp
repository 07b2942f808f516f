#pragma once
// A weight matrix whose element storage is chosen at run time (weight_type), behind
// one interface: the forward pass calls prepare and multiply and never looks at the
// type. Each type brings its packing, a scalar dequantisation (dequantize_row, the
// executable spec) and kernels for each instruction set:
//   f32   packed_matmul's 128-byte column panels and kernels (simd/packed_matmul.hpp)
//   f16   64-byte column panels of 32 outputs (kernels_half.hpp)
//   bf16  the same panels
//   q8_0  GGUF's rows of 34-byte blocks; activations quantised to Q8_0 by prepare
//         (kernels_q8_0.hpp)
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
// row_bytes(type, in_dim) bytes). Block types keep the file layout as their own, so
// a stored matrix is used in place when an owner keeps the bytes alive (a mapped
// file), or copied once; the float types are repacked into their panels.
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
#include "kvdecode/quant/kernels_q8_0.hpp"
#include "kvdecode/quant/matrix_product.hpp"
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
    // cannot use, sizes that overflow, and values the type cannot hold (f16 beyond
    // ±65504 after rounding, q8_0 inf, NaN or beyond ±127 * 65504), naming the element.
    weight_matrix(weight_type type, const T* w, std::size_t out_dim, std::size_t in_dim, const T* column_scale = nullptr)
        : type_(type), out_dim_(out_dim), in_dim_(in_dim) {
        if (w == nullptr || out_dim == 0 || in_dim == 0)
            throw std::invalid_argument("kvdecode: weight_matrix needs a non-null matrix of at least 1 x 1, got " +
                                        std::to_string(out_dim) + " x " + std::to_string(in_dim));
        if (type != weight_type::f32 && !std::is_same_v<T, float>)
            throw std::invalid_argument("kvdecode: weight type " + std::string(to_string(type)) +
                                        " needs float activations; double models store f32 (unquantised, in double)");
        const auto elements = checked_mul(out_dim, in_dim);
        if (!elements || !checked_mul(*elements, 4 * sizeof(T)))
            throw std::invalid_argument("kvdecode: weight_matrix of " + std::to_string(out_dim) + " x " +
                                        std::to_string(in_dim) + " values overflows the address space");
        if constexpr (std::is_same_v<T, float>) check_representable(w, column_scale);
        storage_ = aligned_buffer<std::byte>(storage_bytes());
        data_ = storage_.data();
        pack(w, column_scale);
        choose_kernel();
    }

    // Wraps `stored`: out_dim rows of in_dim values in the file layout of `type`
    // (exactly out_dim * row_bytes(type, in_dim) bytes; little-endian, as GGUF). Block
    // types point at the bytes when `owner` keeps them alive and they are aligned to
    // stored_alignment, and copy them otherwise; f32, f16 and bf16 rows are repacked
    // into their panels, values unchanged. Throws std::invalid_argument for an empty
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
            if (block_values(type) > 1) {
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

    // Once per product, before multiply, rows [row_begin, row_end): Q8_0 quantises each
    // activation row into scratch (scratch_bytes(p.rows) bytes, 64-byte aligned: an
    // aligned_buffer's data); float types do nothing. Every row is prepared before any
    // multiply of the product starts (a barrier between the threads' two phases).
    void prepare(const matrix_product<T>& p, std::byte* scratch, std::size_t row_begin, std::size_t row_end) const noexcept {
        if constexpr (std::is_same_v<T, float>) {
            if (type_ != weight_type::q8_0) return;
            for (std::size_t r = row_begin; r < row_end && r < p.rows; ++r)
                quant::quantize_activation_row(p.in + r * p.in_stride, in_dim_, scratch + r * scratch_row_bytes_);
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
                if constexpr (std::is_same_v<T, float>)
                    quant::dequantize_row_q8_0(q8_0_rows() + o * q8_0().blocks_per_row(), out, in_dim_);
                return;
            }
        }
    }

private:
    using kernel_fn = void (*)(const weight_matrix&, const matrix_product<T>&, const std::byte*, std::size_t,
                               std::size_t) noexcept;

    // Both constructors end here: the type's best kernel and the scratch its prepared
    // activations take per row.
    void choose_kernel() noexcept {
        kernel_ = kernel_for(type_, best_kernel(type_));
        if (type_ == weight_type::q8_0) scratch_row_bytes_ = quant::q8_0_activations{in_dim_}.row_bytes();
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

    simd::packed_layout<T> f32_layout() const noexcept { return {out_dim_, in_dim_}; }
    quant::half_panel_layout half_layout() const noexcept { return {out_dim_, in_dim_}; }
    quant::q8_0_matrix q8_0() const noexcept { return {q8_0_rows(), out_dim_, in_dim_}; }
    const T* f32_panels() const noexcept { return reinterpret_cast<const T*>(data_); }
    const std::uint16_t* half_panels() const noexcept { return reinterpret_cast<const std::uint16_t*>(data_); }
    const quant::block_q8_0* q8_0_rows() const noexcept { return reinterpret_cast<const quant::block_q8_0*>(data_); }

    std::size_t storage_bytes() const noexcept {
        switch (type_) {
            case weight_type::f32: return f32_layout().elements() * sizeof(T);
            case weight_type::f16:
            case weight_type::bf16: return half_layout().elements() * sizeof(std::uint16_t);
            case weight_type::q8_0: break;
        }
        // Block types: rows of whole blocks, the last one padded with zeros.
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
    // f16 beyond its largest finite value; q8_0 non-finite values, or a block scale
    // (max |w| / 127) beyond float16's range.
    void check_representable(const float* w, const float* column_scale) const {
        if (type_ != weight_type::f16 && type_ != weight_type::q8_0) return;
        for (std::size_t o = 0; o < out_dim_; ++o)
            for (std::size_t k = 0; k < in_dim_; ++k) {
                const float v = column_scale ? w[o * in_dim_ + k] * column_scale[k] : w[o * in_dim_ + k];
                const char* why = nullptr;
                if (type_ == weight_type::f16 && std::isfinite(v) && quant::f32_to_f16(std::fabs(v)) == 0x7c00)
                    why = " (beyond float16's largest value, 65504)";
                if (type_ == weight_type::q8_0 && !std::isfinite(v)) why = " (not finite)";
                if (type_ == weight_type::q8_0 && std::isfinite(v) && quant::f32_to_f16(std::fabs(v) / 127.0f) == 0x7c00)
                    why = " (its block's scale |w| / 127 is beyond float16's range)";
                if (why != nullptr)
                    throw std::invalid_argument("kvdecode: weight (" + std::to_string(o) + ", " + std::to_string(k) + ") = " +
                                                std::to_string(v) + " cannot be stored as " + std::string(to_string(type_)) +
                                                why);
            }
    }

    void pack(const T* w, const T* column_scale) {
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
                    const std::size_t nb = quant::q8_0_blocks(in_dim_);
                    aligned_buffer<float> row(in_dim_);
                    auto* blocks = reinterpret_cast<quant::block_q8_0*>(dst);
                    for (std::size_t o = 0; o < out_dim_; ++o) {
                        for (std::size_t k = 0; k < in_dim_; ++k)
                            row[k] = column_scale ? w[o * in_dim_ + k] * column_scale[k] : w[o * in_dim_ + k];
                        quant::quantize_row_q8_0(row.data(), blocks + o * nb, in_dim_);
                    }
                    return;
                }
                case weight_type::f32: return;
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
        const quant::q8_0_matrix q = m.q8_0();
        if constexpr (Isa == kernel_isa::scalar) quant::q8_0_matmul_scalar(q, p, scratch, begin, end);
#if defined(KVDECODE_QUANT_SSE2)
        if constexpr (Isa == kernel_isa::sse2) quant::q8_0_matmul_sse2(q, p, scratch, begin, end);
#endif
#if defined(KVDECODE_QUANT_AVX2)
        if constexpr (Isa == kernel_isa::avx2) quant::q8_0_matmul_avx2(q, p, scratch, begin, end);
#endif
#if defined(KVDECODE_QUANT_AVX512)
        if constexpr (Isa == kernel_isa::avx512) quant::q8_0_matmul_avx512(q, p, scratch, begin, end);
#endif
    }

    template <kernel_isa Isa>
    static kernel_fn quant_kernel(weight_type type) noexcept {
        if constexpr (std::is_same_v<T, float>) {
            switch (type) {
                case weight_type::f16: return &run_half<quant::half_format::f16, Isa>;
                case weight_type::bf16: return &run_half<quant::half_format::bf16, Isa>;
                case weight_type::q8_0: return &run_q8_0<Isa>;
                case weight_type::f32: break;
            }
        }
        (void)type;
        return nullptr;
    }

    // Only asked for what has_kernel allows.
    static kernel_fn kernel_for(weight_type type, kernel_isa isa) noexcept {
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

    weight_type type_ = weight_type::f32;
    std::size_t out_dim_ = 0, in_dim_ = 0;
    aligned_buffer<std::byte> storage_;  // the packed elements, unless they are used in place
    std::shared_ptr<const void> owner_;  // keeps the bytes data_ points at alive when in place
    const std::byte* data_ = nullptr;
    kernel_fn kernel_ = &run_f32<dispatched>;  // the best kernel for type_ on this CPU
    std::size_t scratch_row_bytes_ = 0;  // prepared activation bytes per row (Q8_0)
};

}  // namespace kvdecode
