#pragma once
// A read-bandwidth probe: `threads` threads of a kvdecode::thread_pool each read their
// share of a 1 GiB float array (far larger than any cache) as several interleaved
// streams, each into its own SIMD accumulator held in a register. One stream leaves
// the hardware prefetchers and the line-fill buffers half idle, and one add chain can
// set the pace instead of the loads: either under-reports (by 8-25 % on this
// workplace's Xeon, pass for pass; issue 14 saw up to 50 %). The best of
// `passes` passes is the machine's read bandwidth, the denominator of every decode
// benchmark's "fraction of the bandwidth limit" (best, as STREAM reports: the fraction
// is then a lower bound).

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/thread_pool.hpp"

namespace kvbench {

inline constexpr std::size_t line_floats = 64 / sizeof(float);  // one cache line

// Sums `lines` cache lines from p as S equal regions read in lockstep (line i of every
// region, then line i + 1), the lines left over at the end as a tail. Each region adds
// into its own accumulator, so S adds are in flight; the vectors of one line are
// summed first (1 on AVX-512, 2 on AVX2, 4 on SSE), which is no loop-carried chain.
template <std::size_t S>
float sum_streams(const float* p, std::size_t lines) {
    using B = xsimd::batch<float>;
    static_assert(line_floats % B::size == 0, "a cache line holds whole vectors");
    const auto line = [p](std::size_t i) {
        const float* q = p + i * line_floats;
        B v = B::load_aligned(q);
        for (std::size_t k = B::size; k < line_floats; k += B::size) v += B::load_aligned(q + k);
        return v;
    };
    const std::size_t stride = lines / S;  // lines per region
    std::array<B, S> acc;
    acc.fill(B(0.0f));
    for (std::size_t i = 0; i < stride; ++i)
        [&]<std::size_t... s>(std::index_sequence<s...>) { ((acc[s] += line(s * stride + i)), ...); }(
            std::make_index_sequence<S>{});
    for (std::size_t i = S * stride; i < lines; ++i) acc[0] += line(i);
    B total(0.0f);
    for (const B& a : acc) total += a;
    return xsimd::hadd(total);
}

inline float sum_streams(const float* p, std::size_t lines, std::size_t streams) {
    switch (streams) {
        case 1: return sum_streams<1>(p, lines);
        case 2: return sum_streams<2>(p, lines);
        case 4: return sum_streams<4>(p, lines);
        case 8: return sum_streams<8>(p, lines);
        case 16: return sum_streams<16>(p, lines);
        default: throw std::invalid_argument("kvbench: sum_streams takes 1, 2, 4, 8 or 16 streams, not " + std::to_string(streams));
    }
}

inline constexpr std::size_t probe_bytes = std::size_t{1} << 30;
// Streams per thread of the probe. 8 regions: every one of the 8 to 16 vector
// registers is one accumulator on AVX-512, and 8 streams keep enough misses in flight
// (more add nothing: bench_bandwidth's streams:S rows show it on each machine).
inline constexpr std::size_t probe_streams = 8;

// Bytes per second read by `threads` threads of `streams` streams each, best of `passes`.
inline double measure_read_bandwidth(std::size_t threads, int passes = 5, std::size_t streams = probe_streams) {
    static kvdecode::aligned_buffer<float> data = [] {
        kvdecode::aligned_buffer<float> d(probe_bytes / sizeof(float));
        for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<float>(i % 7);  // touch every page
        return d;
    }();
    kvdecode::thread_pool pool(threads);
    // Parts of whole cache lines, so every thread's loads stay aligned.
    const std::size_t lines = data.size() / line_floats;
    std::vector<float> sums(threads);
    double best = 0;
    for (int pass = 0; pass < passes; ++pass) {
        const auto t0 = std::chrono::steady_clock::now();
        pool.parallel_parts(lines, [&](std::size_t part, std::size_t begin, std::size_t end) {
            sums[part] = sum_streams(data.data() + begin * line_floats, end - begin, streams);
        });
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::max(best, static_cast<double>(probe_bytes) / s);
        volatile float sink = sums[0];
        (void)sink;
    }
    return best;
}

// 1, 2, 4, 8, 16 threads as far as this machine has hardware threads, and their
// number itself (up to 16) where it is not a power of two.
inline std::vector<std::size_t> thread_counts() {
    const std::size_t cores = std::min<std::size_t>(16, std::max<std::size_t>(1, std::thread::hardware_concurrency()));
    std::vector<std::size_t> counts;
    for (std::size_t t = 1; t <= cores; t *= 2) counts.push_back(t);
    if (counts.back() != cores) counts.push_back(cores);
    return counts;
}

}  // namespace kvbench
