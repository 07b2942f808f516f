// The machine's read bandwidth at 1, 2, 4, ... threads (a STREAM-like sum over 1 GiB):
// the physical limit of a decode step is (weight bytes per token) / (this bandwidth).

#include <benchmark/benchmark.h>

#include "support/bandwidth.hpp"
#include "support/shapes.hpp"

namespace {

void read_bandwidth(benchmark::State& state, std::size_t threads) {
    for (auto _ : state) {
        const double bytes_per_second = kvbench::measure_read_bandwidth(threads, 1);
        state.SetIterationTime(static_cast<double>(kvbench::probe_bytes) / bytes_per_second);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kvbench::probe_bytes));
    state.counters["threads"] = static_cast<double>(threads);
}

}  // namespace

int main(int argc, char** argv) {
    for (std::size_t t : kvbench::thread_counts())
        benchmark::RegisterBenchmark(("bandwidth/read_1GiB/threads:" + std::to_string(t)).c_str(),
                                     [t](benchmark::State& st) { read_bandwidth(st, t); })
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
    return kvbench::run_benchmarks(argc, argv);
}
