#pragma once
// Weight matrices repacked for streaming, and the product of a few activation rows
// with them: out (rows, out_dim) = in (rows, in_dim) · W^T, W (out_dim, in_dim).
//
// A decode step reads every weight once for a handful of activation rows, so it is
// bound by how fast the weights stream from memory. Here W is cut into panels of
// `panel_width` output rows (128 bytes: two cache lines), each stored column by
// column — for k = 0 .. in_dim-1, W[o0 .. o0+width)[k] — as one contiguous stream:
//   out[r][o0 .. o0+width) += x[r][k] * panel[k][0 .. width)
// is one broadcast and a few vector FMAs, with no horizontal sums. Rows past out_dim
// are zero. The kernel keeps a tile of activation rows' accumulators in registers (up
// to 12 rows on AVX-512; on AVX2 3, or 6 over half a panel at a time) and uses every
// weight it loads once per row, so a few rows (beams, rollouts) go through the weights
// in one pass and their multiply-adds overlap the stream; more rows (prefill) run tile
// after tile over a panel that stays in L2.
//
// The SIMD architecture is chosen once at run time among those the including
// translation unit was compiled for (AVX-512, AVX2 with FMA, SSE2; xsimd batches, with
// xsimd's own architecture test); a scalar loop serves types and targets without SIMD
// registers. The packed layout does not depend on the architecture.

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace kvdecode::simd {

template <class T>
inline constexpr std::size_t panel_width = 128 / sizeof(T);

template <class T>
struct packed_layout {
    static constexpr std::size_t width = panel_width<T>;
    std::size_t out_dim = 0, in_dim = 0;

    std::size_t panels() const noexcept { return (out_dim + width - 1) / width; }
    std::size_t panel_stride() const noexcept { return width * in_dim; }  // whole cache lines
    std::size_t elements() const noexcept { return panels() * panel_stride(); }
};

// Writes W (row-major) into dst (layout.elements() values) in the packed layout,
// multiplying column k by column_scale[k] where given (an RMSNorm gain folded into
// the product that follows the norm).
template <class T>
void pack_matrix(const T* w, const packed_layout<T>& layout, std::type_identity_t<const T*> column_scale, T* dst) noexcept {
    constexpr std::size_t W = packed_layout<T>::width;
    const std::size_t in = layout.in_dim;
    std::fill(dst, dst + layout.elements(), T(0));
    for (std::size_t o = 0; o < layout.out_dim; ++o) {
        T* panel = dst + o / W * layout.panel_stride() + o % W;
        for (std::size_t k = 0; k < in; ++k) panel[k * W] = column_scale ? w[o * in + k] * column_scale[k] : w[o * in + k];
    }
}

// The arguments of one product; a thread takes panels [panel_begin, panel_end).
template <class T>
struct packed_product {
    const T* in = nullptr;        // (rows, in_stride)
    std::size_t in_stride = 0;
    std::size_t rows = 0;
    const T* row_scale = nullptr;  // per input row factor on its outputs (1 / rms), or none
    const T* w = nullptr;          // packed
    packed_layout<T> layout;
    T* out = nullptr;              // (rows, out_stride)
    std::size_t out_stride = 0;
    bool accumulate = false;       // out += product (the residual adds)
};

namespace detail {

// Writes one row's outputs of one panel (or its part from first_out on, `width` wide):
// sums scaled by the row's factor, stored or added.
template <class T>
void store_outputs(const packed_product<T>& a, std::size_t row, std::size_t first_out, const T* sums,
                   std::size_t width = panel_width<T>) noexcept {
    if (first_out >= a.layout.out_dim) return;  // a half panel of padding
    const std::size_t count = std::min(width, a.layout.out_dim - first_out);
    const T scale = a.row_scale ? a.row_scale[row] : T(1);
    T* out = a.out + row * a.out_stride + first_out;
    for (std::size_t o = 0; o < count; ++o) out[o] = a.accumulate ? out[o] + sums[o] * scale : sums[o] * scale;
}

template <class T>
inline constexpr std::size_t prefetch_distance = 8192 / sizeof(T);  // elements

// Rows [row, row + Tile) of the input against vectors [first, first + Vs) of one panel
// (all of it, or half: see max_tile), accumulators in registers. With one or two rows
// on a whole panel, even and odd k go to separate accumulators (Banks = 2), so the FMAs'
// latency never limits the stream; every other tile sums each output over k in order,
// as the scalar loop does, so a row gives the same bits in any tile of 3 or more rows.
template <class Arch, std::size_t Tile, std::size_t Vs, class T>
void panel_tile(const packed_product<T>& a, std::size_t panel_index, std::size_t row, std::size_t first) noexcept {
    using B = xsimd::batch<T, Arch>;
    constexpr std::size_t W = panel_width<T>, V = W / B::size, Banks = Tile <= 2 && Vs == V ? 2 : 1;
    static_assert(W % B::size == 0 && Vs <= V, "a panel row holds whole SIMD registers");
    const T* panel = a.w + panel_index * a.layout.panel_stride() + first * B::size;
    const std::size_t in_dim = a.layout.in_dim;
    const T* x[Tile];
    for (std::size_t r = 0; r < Tile; ++r) x[r] = a.in + (row + r) * a.in_stride;
    const bool first_pass = row == 0 && first == 0;

    B acc[Banks][Tile][Vs];
    for (auto& bank : acc)
        for (auto& per_row : bank)
            for (B& b : per_row) b = B(T(0));
    std::size_t k = 0;
    for (; k + Banks <= in_dim; k += Banks) {
        for (std::size_t bank = 0; bank < Banks; ++bank) {
            const T* wk = panel + (k + bank) * W;
            if constexpr (Tile >= 4) {
                // Several rows: the FMAs take long enough that the hardware prefetcher
                // falls behind; ask for the stream 8 KiB ahead, into every cache level
                // (a later tile re-reads this panel). One row: the prefetcher keeps up,
                // and explicit prefetches only cost issue slots. Later tiles: the
                // panel is already in L2.
                if (first_pass) __builtin_prefetch(wk - first * B::size + prefetch_distance<T>, 0, 3);
                if (first_pass) __builtin_prefetch(wk - first * B::size + prefetch_distance<T> + 64 / sizeof(T), 0, 3);
            }
            B w[Vs];
            for (std::size_t v = 0; v < Vs; ++v) w[v] = B::load_aligned(wk + v * B::size);
            for (std::size_t r = 0; r < Tile; ++r) {
                const B xr(x[r][k + bank]);
                for (std::size_t v = 0; v < Vs; ++v) acc[bank][r][v] = xsimd::fma(w[v], xr, acc[bank][r][v]);
            }
        }
    }
    for (; k < in_dim; ++k) {  // an odd last column when Banks == 2
        const T* wk = panel + k * W;
        for (std::size_t r = 0; r < Tile; ++r) {
            const B xr(x[r][k]);
            for (std::size_t v = 0; v < Vs; ++v) acc[0][r][v] = xsimd::fma(B::load_aligned(wk + v * B::size), xr, acc[0][r][v]);
        }
    }
    for (std::size_t r = 0; r < Tile; ++r) {
        alignas(64) T sums[Vs * B::size];
        for (std::size_t v = 0; v < Vs; ++v) {
            B total = acc[0][r][v];
            for (std::size_t bank = 1; bank < Banks; ++bank) total += acc[bank][r][v];
            total.store_aligned(sums + v * B::size);
        }
        store_outputs(a, row + r, panel_index * W + first * B::size, sums, Vs * B::size);
    }
}

// Registers decide the row tile. AVX-512's 32 registers hold 12 rows x 2 accumulators
// beside the weights. AVX2's 16 hold 3 rows x a whole panel's 4, or 6 rows x half a
// panel's 2: from 4 rows on, tiles of up to 6 rows take the panel a half at a time (a
// second pass over it finds it in L2), as even as the row count allows (8 rows: 4 + 4,
// each with 8 independent FMA chains). SSE's 16 hold 1 row x 8 (x 2 banks).
template <class Arch, class T>
inline constexpr std::size_t max_tile = std::is_base_of_v<xsimd::avx512f, Arch> ? 12
                                        : std::is_base_of_v<xsimd::avx, Arch>   ? 3
                                                                                : 1;
template <class Arch, class T>
inline constexpr std::size_t max_half_tile = std::is_base_of_v<xsimd::avx512f, Arch> ? 0
                                             : std::is_base_of_v<xsimd::avx, Arch>   ? 6
                                                                                     : 0;

template <class Arch, std::size_t Tile, class T>
void remainder_tile(const packed_product<T>& a, std::size_t q, std::size_t row, std::size_t rows) noexcept {
    if constexpr (Tile > 0) {
        constexpr std::size_t V = panel_width<T> / xsimd::batch<T, Arch>::size;
        if (rows == Tile) panel_tile<Arch, Tile, V>(a, q, row, 0);
        else remainder_tile<Arch, Tile - 1>(a, q, row, rows);
    }
}

// A tile of `rows` rows on each half of panel q.
template <class Arch, std::size_t Tile, class T>
void half_tiles(const packed_product<T>& a, std::size_t q, std::size_t row, std::size_t rows) noexcept {
    if constexpr (Tile > 0) {
        constexpr std::size_t V = panel_width<T> / xsimd::batch<T, Arch>::size;
        if (rows == Tile) {
            panel_tile<Arch, Tile, V / 2>(a, q, row, 0);
            panel_tile<Arch, Tile, V / 2>(a, q, row, V / 2);
        } else {
            half_tiles<Arch, Tile - 1>(a, q, row, rows);
        }
    }
}

// Rows in tiles of at most `most`, as even as the count allows (13 rows on AVX-512: 7 + 6,
// not 12 + 1): every tile of a product of 3 or more rows then has 3 or more.
template <class F>
void even_tiles(std::size_t rows, std::size_t most, F&& tile) noexcept {
    for (std::size_t row = 0; row < rows;) {
        const std::size_t left = rows - row, tiles = (left + most - 1) / most, n = (left + tiles - 1) / tiles;
        tile(row, n);
        row += n;
    }
}

template <class Arch, class T>
void packed_matmul_simd(const packed_product<T>& a, std::size_t panel_begin, std::size_t panel_end) noexcept {
    constexpr std::size_t tile = max_tile<Arch, T>, half = max_half_tile<Arch, T>;
    for (std::size_t q = panel_begin; q < panel_end; ++q) {
        if (half > 0 && a.rows > tile)
            even_tiles(a.rows, half, [&](std::size_t row, std::size_t n) { half_tiles<Arch, half>(a, q, row, n); });
        else
            even_tiles(a.rows, tile, [&](std::size_t row, std::size_t n) { remainder_tile<Arch, tile>(a, q, row, n); });
    }
}

// The architectures the kernel is built for, best first; those this translation unit
// cannot compile drop out at compile time, those this CPU lacks at run time.
using kernel_archs = xsimd::arch_list<xsimd::avx512f, xsimd::fma3<xsimd::avx2>, xsimd::sse2>;

template <class T>
using kernel_fn = void (*)(const packed_product<T>&, std::size_t, std::size_t) noexcept;

template <class T, class Arch, class... Rest>
kernel_fn<T> best_kernel(xsimd::arch_list<Arch, Rest...>, kernel_fn<T> fallback) noexcept {
    if constexpr (Arch::supported() && xsimd::has_simd_register<T>::value) {
        if (Arch::version() <= xsimd::available_architectures().best) return &packed_matmul_simd<Arch, T>;
    }
    if constexpr (sizeof...(Rest) > 0) return best_kernel<T>(xsimd::arch_list<Rest...>{}, fallback);
    else return fallback;
}

}  // namespace detail

// The same product with plain loops: the fallback, and what the SIMD paths are tested against.
template <class T>
void packed_matmul_scalar(const packed_product<T>& a, std::size_t panel_begin, std::size_t panel_end) noexcept {
    constexpr std::size_t W = panel_width<T>;
    for (std::size_t q = panel_begin; q < panel_end; ++q) {
        const T* panel = a.w + q * a.layout.panel_stride();
        for (std::size_t r = 0; r < a.rows; ++r) {
            const T* x = a.in + r * a.in_stride;
            T sums[W] = {};
            for (std::size_t k = 0; k < a.layout.in_dim; ++k)
                for (std::size_t o = 0; o < W; ++o) sums[o] += panel[k * W + o] * x[k];
            detail::store_outputs(a, r, q * W, sums);
        }
    }
}

// One architecture's kernel, named (the tests run every compiled-in one).
template <class Arch, class T>
void packed_matmul_for(const packed_product<T>& a, std::size_t panel_begin, std::size_t panel_end) noexcept {
    detail::packed_matmul_simd<Arch>(a, panel_begin, panel_end);
}

// Panels [panel_begin, panel_end) of the product on the best architecture this CPU runs.
template <class T>
void packed_matmul(const packed_product<T>& a, std::size_t panel_begin, std::size_t panel_end) noexcept {
    static const detail::kernel_fn<T> kernel = detail::best_kernel<T>(detail::kernel_archs{}, &packed_matmul_scalar<T>);
    kernel(a, panel_begin, panel_end);
}

}  // namespace kvdecode::simd
