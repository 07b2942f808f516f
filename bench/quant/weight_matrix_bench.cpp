// Weight matrices by storage type and instruction set: the read bandwidth of one
// product (prepare + multiply, one thread) of 1, 2, 4, 8 and 16 activation rows (and 128, a
// prefill chunk, on the AVX2 and AVX-512 kernels) with the
// llama2.c 110M model's two MLP shapes, 768x2048 (w2) and 2048x768 (one of w1/w3).
//
// A decode step streams its weights from memory, so each iteration takes the next of
// enough copies of the matrix to fill 1 GiB (as the bandwidth suite's probe), beyond
// the last-level cache: the figure is the rate at which the kernel consumes weights
// from DRAM (the bytes_per_second counter: weight bytes per product / wall time), to
// set beside the bandwidth suite's read rate. Fewer bytes per weight (f16, bf16: 2;
// q8_0: 1.0625; q4_0: 0.5625, q4_1: 0.625, q5_0: 0.6875, q5_1: 0.75; q6_k 0.82, q5_k 0.69,
// q4_k 0.56, q3_k 0.43, q2_k 0.33) mean more weights per second where the kernel keeps up
// with memory. Every type in all_weight_types is measured on every instruction set it has
// a kernel for. Both shapes' row lengths (2048, 768) are multiples of 256, as the K-quants need.
// KVDECODE_BENCH_FOOTPRINT_MIB sets another footprint (the smoke test uses a small one).

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/rng.hpp"
#include "kvdecode/quant/weight_matrix.hpp"
#include "support/shapes.hpp"

namespace {

using kvdecode::kernel_isa;
using kvdecode::weight_matrix;
using kvdecode::weight_type;

// Bytes of weights cycled through.
std::size_t footprint() {
    const char* mib = std::getenv("KVDECODE_BENCH_FOOTPRINT_MIB");
    return (mib != nullptr && std::atol(mib) > 0 ? static_cast<std::size_t>(std::atol(mib)) : 1024) << 20;
}

struct matrix_shape {
    std::size_t out_dim, in_dim;
    std::string name() const { return std::to_string(out_dim) + "x" + std::to_string(in_dim); }
};

// Copies of one random matrix in one type, built once for the benchmarks that use it
// (they are registered together, so one set lives at a time).
const std::vector<weight_matrix<float>>& copies(weight_type type, const matrix_shape& shape) {
    static std::vector<weight_matrix<float>> set;
    static std::string key;
    const std::string wanted = std::string(kvdecode::to_string(type)) + shape.name();
    if (key != wanted) {
        set.clear();
        kvdecode::rng gen(1);
        std::vector<float> w(shape.out_dim * shape.in_dim);
        for (float& x : w) x = static_cast<float>(0.02 * gen.normal());
        weight_matrix<float> first(type, w.data(), shape.out_dim, shape.in_dim);
        const std::size_t n = (footprint() + first.bytes() - 1) / first.bytes();
        set.reserve(n);
        set.push_back(std::move(first));
        while (set.size() < n) set.push_back(set.front().copy());  // quantised once
        key = wanted;
    }
    return set;
}

void product(benchmark::State& state, weight_type type, kernel_isa isa, matrix_shape shape, std::size_t rows) {
    const auto& matrices = copies(type, shape);
    kvdecode::rng gen(2);
    std::vector<float> in(rows * shape.in_dim), out(rows * shape.out_dim);
    for (float& x : in) x = static_cast<float>(gen.normal());
    kvdecode::aligned_buffer<std::byte> scratch(matrices.front().scratch_bytes(rows));
    const kvdecode::matrix_product<float> p{.in = in.data(), .in_stride = shape.in_dim, .rows = rows,
                                            .out = out.data(), .out_stride = shape.out_dim};
    std::size_t next = 0;
    for (auto _ : state) {
        const weight_matrix<float>& m = matrices[next];
        next = next + 1 == matrices.size() ? 0 : next + 1;
        m.prepare(p, scratch.data(), 0, rows);
        m.multiply_on(isa, p, scratch.data(), 0, m.units());
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    const std::size_t bytes = matrices.front().bytes();
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
    state.counters["weight_bytes"] = static_cast<double>(bytes);
    state.counters["rows"] = static_cast<double>(rows);
}

}  // namespace

int main(int argc, char** argv) {
    const matrix_shape shapes[] = {{768, 2048}, {2048, 768}};
    for (weight_type type : kvdecode::all_weight_types)
        for (const matrix_shape& shape : shapes)
            for (kernel_isa isa : {kernel_isa::avx512, kernel_isa::avx2, kernel_isa::sse2, kernel_isa::scalar}) {
                if (!weight_matrix<float>::has_kernel(type, isa)) continue;
                for (std::size_t rows : {1, 2, 4, 8, 16, 128}) {
                    if (rows == 128 && (isa == kernel_isa::scalar || isa == kernel_isa::sse2)) continue;
                    const std::string name = "weight_matrix/" + std::string(kvdecode::to_string(type)) + "/" +
                                             std::string(kvdecode::to_string(isa)) + "/" + shape.name() +
                                             "/rows:" + std::to_string(rows);
                    benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { product(st, type, isa, shape, rows); })
                        ->UseRealTime()
                        ->Unit(benchmark::kMicrosecond);
                }
            }
    return kvbench::run_benchmarks(argc, argv);
}
