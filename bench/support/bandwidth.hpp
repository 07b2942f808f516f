#pragma once
// A STREAM-like read-bandwidth probe: `threads` threads of a kvdecode::thread_pool
// each sum their share of a 1 GiB float array (far larger than any cache), with
// several SIMD accumulators so the loads, not the adds, set the pace. The best of
// `passes` passes is the machine's read bandwidth, the denominator of every decode
// benchmark's "fraction of the bandwidth limit" (best, as STREAM reports: the
// fraction is then a lower bound).

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <thread>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/thread_pool.hpp"

namespace kvbench {

inline float sum_floats(const float* p, std::size_t n) {
    using B = xsimd::batch<float>;
    B a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
    std::size_t i = 0;
    for (; i + 4 * B::size <= n; i += 4 * B::size) {
        a0 += B::load_aligned(p + i);
        a1 += B::load_aligned(p + i + B::size);
        a2 += B::load_aligned(p + i + 2 * B::size);
        a3 += B::load_aligned(p + i + 3 * B::size);
    }
    float s = xsimd::hadd((a0 + a1) + (a2 + a3));
    for (; i < n; ++i) s += p[i];
    return s;
}

inline constexpr std::size_t probe_bytes = std::size_t{1} << 30;

// Bytes per second read by `threads` threads, best of `passes`.
inline double measure_read_bandwidth(std::size_t threads, int passes = 5) {
    static kvdecode::aligned_buffer<float> data = [] {
        kvdecode::aligned_buffer<float> d(probe_bytes / sizeof(float));
        for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<float>(i % 7);  // touch every page
        return d;
    }();
    kvdecode::thread_pool pool(threads);
    // Parts of whole cache lines, so every thread's loads stay aligned.
    const std::size_t lines = data.size() / 16;
    std::vector<float> sums(threads);
    double best = 0;
    for (int pass = 0; pass < passes; ++pass) {
        const auto t0 = std::chrono::steady_clock::now();
        pool.parallel_parts(lines, [&](std::size_t part, std::size_t begin, std::size_t end) {
            sums[part] = sum_floats(data.data() + begin * 16, (end - begin) * 16);
        });
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::max(best, static_cast<double>(probe_bytes) / s);
        volatile float sink = sums[0];
        (void)sink;
    }
    return best;
}

// 1, 2, 4, 8, 16 threads, as far as this machine has cores.
inline std::vector<std::size_t> thread_counts() {
    const std::size_t cores = std::max<std::size_t>(1, std::thread::hardware_concurrency());
    std::vector<std::size_t> counts;
    for (std::size_t t = 1; t <= 16 && t <= cores; t *= 2) counts.push_back(t);
    return counts;
}

}  // namespace kvbench
