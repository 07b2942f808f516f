// The machine's read bandwidth at 1, 2, 4, ... threads over 1 GiB: the probe every
// decode benchmark divides by (bandwidth/read_1GiB/threads:T, support/bandwidth.hpp),
// and beside it the same read as 1, 2, 4, 8 or 16 streams per thread
// (bandwidth/streams:S/threads:T), which shows what one stream misses.
// The physical limit of a decode step is (bytes read per token) / (this bandwidth).

#include <benchmark/benchmark.h>

#include "support/bandwidth.hpp"
#include "support/shapes.hpp"

namespace {

void read_bandwidth(benchmark::State& state, std::size_t threads, std::size_t streams) {
    for (auto _ : state) {
        const double bytes_per_second = kvbench::measure_read_bandwidth(threads, 1, streams);
        state.SetIterationTime(static_cast<double>(kvbench::probe_bytes) / bytes_per_second);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kvbench::probe_bytes));
    state.counters["threads"] = static_cast<double>(threads);
    state.counters["streams"] = static_cast<double>(streams);
}

void add(const std::string& name, std::size_t threads, std::size_t streams) {
    benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { read_bandwidth(st, threads, streams); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
    for (std::size_t t : kvbench::thread_counts()) {
        add("bandwidth/read_1GiB/threads:" + std::to_string(t), t, kvbench::probe_streams);
        for (std::size_t s : {1, 2, 4, 8, 16})
            add("bandwidth/streams:" + std::to_string(s) + "/threads:" + std::to_string(t), t, s);
    }
    return kvbench::run_benchmarks(argc, argv);
}
