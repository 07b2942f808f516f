#pragma once
// Weight matrices repacked for streaming, and the product of a few activation rows
// with them: out (rows, out_dim) = in (rows, in_dim) · W^T, W (out_dim, in_dim).
//
// A decode step reads every weight once for a handful of activation rows, so it is
// bound by how fast the weights stream from memory. Here the rows of W are grouped
// in panels of `panel_rows`, and each panel is one contiguous stream, one cache
// line (C = 64 / sizeof(T) columns) of each of its rows in turn:
//   [row 0, cols 0..C) [row 1, cols 0..C) ... [row P-1, cols 0..C) [row 0, cols C..2C) ...
// then the last in_dim % C columns column by column ([col k: row 0 .. row P-1]).
// Rows past out_dim are zero. The kernel holds P x (up to 4) activation rows of
// accumulators in registers and uses every weight it loads once per activation row,
// so a batch of rows (beams, rollouts) costs little more than one while the weights'
// stream is the bottleneck, and a prefill tile runs at FMA speed from L1.
//
// The SIMD width is chosen at run time among the architectures the including
// translation unit was compiled for (xsimd's dispatch: AVX-512, AVX2, SSE, NEON);
// a scalar loop serves types and targets without SIMD registers. The packed layout
// does not depend on the width.

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace kvdecode::simd {

inline constexpr std::size_t panel_rows = 4;

template <class T>
struct packed_layout {
    static constexpr std::size_t chunk = 64 / sizeof(T);  // columns per cache line
    std::size_t out_dim = 0, in_dim = 0;

    std::size_t panels() const noexcept { return (out_dim + panel_rows - 1) / panel_rows; }
    std::size_t main_cols() const noexcept { return in_dim - in_dim % chunk; }  // the chunked part
    // Elements from one panel to the next; a whole number of cache lines.
    std::size_t panel_stride() const noexcept {
        const std::size_t n = panel_rows * in_dim;
        return (n + chunk - 1) / chunk * chunk;
    }
    std::size_t elements() const noexcept { return panels() * panel_stride(); }
};

// Writes W (row-major) into dst (layout.elements() values) in the packed layout,
// multiplying column k by column_scale[k] where given (an RMSNorm gain folded into
// the product that follows the norm).
template <class T>
void pack_matrix(const T* w, const packed_layout<T>& layout, std::type_identity_t<const T*> column_scale, T* dst) noexcept {
    constexpr std::size_t C = packed_layout<T>::chunk, P = panel_rows;
    const std::size_t in = layout.in_dim, main = layout.main_cols();
    std::fill(dst, dst + layout.elements(), T(0));
    for (std::size_t q = 0; q < layout.panels(); ++q) {
        T* panel = dst + q * layout.panel_stride();
        for (std::size_t p = 0; p < P && q * P + p < layout.out_dim; ++p) {
            const T* row = w + (q * P + p) * in;
            for (std::size_t k = 0; k < in; ++k) {
                const T value = column_scale ? row[k] * column_scale[k] : row[k];
                if (k < main) panel[(k / C * P + p) * C + k % C] = value;
                else panel[main * P + (k - main) * P + p] = value;
            }
        }
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

template <class T>
void store_outputs(const packed_product<T>& a, std::size_t row, std::size_t first_out, const T* sums) noexcept {
    const std::size_t count = std::min(panel_rows, a.layout.out_dim - first_out);
    const T scale = a.row_scale ? a.row_scale[row] : T(1);
    T* out = a.out + row * a.out_stride + first_out;
    for (std::size_t p = 0; p < count; ++p) out[p] = a.accumulate ? out[p] + sums[p] * scale : sums[p] * scale;
}

// The tail columns of one panel for one activation row, added to sums.
template <class T>
void add_tail(const T* panel, const packed_layout<T>& layout, const T* x, T* sums) noexcept {
    const std::size_t main = layout.main_cols();
    const T* tail = panel + main * panel_rows;
    for (std::size_t k = main; k < layout.in_dim; ++k, tail += panel_rows)
        for (std::size_t p = 0; p < panel_rows; ++p) sums[p] += tail[p] * x[k];
}

// Rows [row, row + Tile) of the input against one panel, accumulators in registers.
template <class Arch, std::size_t Tile, class T>
void panel_tile(const packed_product<T>& a, std::size_t panel_index, std::size_t row) noexcept {
    using B = xsimd::batch<T, Arch>;
    constexpr std::size_t C = packed_layout<T>::chunk, P = panel_rows, V = C / B::size;
    static_assert(C % B::size == 0, "a cache line holds whole SIMD registers");
    const T* panel = a.w + panel_index * a.layout.panel_stride();
    const T* x[Tile];
    for (std::size_t r = 0; r < Tile; ++r) x[r] = a.in + (row + r) * a.in_stride;

    B acc[P][Tile];
    for (auto& per_output : acc)
        for (B& b : per_output) b = B(T(0));
    const std::size_t main = a.layout.main_cols();
    const T* wp = panel;
    for (std::size_t k = 0; k < main; k += C, wp += P * C) {
        for (std::size_t v = 0; v < V; ++v) {
            B xv[Tile];
            for (std::size_t r = 0; r < Tile; ++r) xv[r] = B::load_unaligned(x[r] + k + v * B::size);
            for (std::size_t p = 0; p < P; ++p) {
                const B wv = B::load_aligned(wp + p * C + v * B::size);
                for (std::size_t r = 0; r < Tile; ++r) acc[p][r] = xsimd::fma(wv, xv[r], acc[p][r]);
            }
        }
    }
    for (std::size_t r = 0; r < Tile; ++r) {
        T sums[P];
        for (std::size_t p = 0; p < P; ++p) sums[p] = xsimd::hadd(acc[p][r]);
        add_tail(panel, a.layout, x[r], sums);
        store_outputs(a, row + r, panel_index * P, sums);
    }
}

// Registers decide the row tile: 32 vector registers (AVX-512) hold 4 x 4
// accumulators with room to spare, 16 (AVX2, SSE, NEON) hold 4 x 2.
template <class Arch>
inline constexpr std::size_t max_tile = std::is_base_of_v<xsimd::avx512f, Arch> ? 4 : 2;

template <class Arch, class T>
void packed_matmul_simd(const packed_product<T>& a, std::size_t panel_begin, std::size_t panel_end) noexcept {
    constexpr std::size_t tile = max_tile<Arch>;
    for (std::size_t q = panel_begin; q < panel_end; ++q) {
        std::size_t row = 0;
        for (; row + tile <= a.rows; row += tile) panel_tile<Arch, tile>(a, q, row);
        switch (a.rows - row) {
            case 3: if constexpr (tile > 3) panel_tile<Arch, 3>(a, q, row); break;
            case 2: if constexpr (tile > 2) panel_tile<Arch, 2>(a, q, row); break;
            case 1: panel_tile<Arch, 1>(a, q, row); break;
            default: break;
        }
    }
}

struct packed_matmul_dispatch {
    template <class Arch, class T>
    void operator()(Arch, const packed_product<T>& a, std::size_t panel_begin, std::size_t panel_end) const noexcept {
        packed_matmul_simd<Arch>(a, panel_begin, panel_end);
    }
};

}  // namespace detail

// The same product with plain loops, in the same order of summation per output
// as far as a scalar can follow it. The fallback, and what the SIMD paths are tested against.
template <class T>
void packed_matmul_scalar(const packed_product<T>& a, std::size_t panel_begin, std::size_t panel_end) noexcept {
    constexpr std::size_t C = packed_layout<T>::chunk, P = panel_rows;
    const std::size_t main = a.layout.main_cols();
    for (std::size_t q = panel_begin; q < panel_end; ++q) {
        const T* panel = a.w + q * a.layout.panel_stride();
        for (std::size_t r = 0; r < a.rows; ++r) {
            const T* x = a.in + r * a.in_stride;
            T sums[P] = {};
            for (std::size_t k = 0; k < main; k += C)
                for (std::size_t p = 0; p < P; ++p)
                    for (std::size_t i = 0; i < C; ++i) sums[p] += panel[(k / C * P + p) * C + i] * x[k + i];
            detail::add_tail(panel, a.layout, x, sums);
            detail::store_outputs(a, r, q * P, sums);
        }
    }
}

// Whether this build has a SIMD path for T.
template <class T>
inline constexpr bool packed_matmul_has_simd =
    !std::is_same_v<xsimd::supported_architectures, xsimd::arch_list<>> && xsimd::has_simd_register<T>::value;

// One architecture's kernel, named (the tests run every compiled-in one).
template <class Arch, class T>
void packed_matmul_for(const packed_product<T>& a, std::size_t panel_begin, std::size_t panel_end) noexcept {
    detail::packed_matmul_simd<Arch>(a, panel_begin, panel_end);
}

// Panels [panel_begin, panel_end) of the product on the best architecture this CPU runs.
template <class T>
void packed_matmul(const packed_product<T>& a, std::size_t panel_begin, std::size_t panel_end) noexcept {
    if constexpr (packed_matmul_has_simd<T>) {
        static auto dispatched = xsimd::dispatch(detail::packed_matmul_dispatch{});
        dispatched(a, panel_begin, panel_end);
    } else {
        packed_matmul_scalar(a, panel_begin, panel_end);
    }
}

}  // namespace kvdecode::simd
