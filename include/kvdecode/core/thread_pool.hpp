#pragma once
// A fixed pool of worker threads, created once and sized by the user. The calling
// thread takes part: a pool of size N runs N - 1 workers. A parallel_for allocates nothing.
//
// A forward pass issues dozens of parallel_for calls a few microseconds apart, so a
// worker that finishes a part watches for the next one for a short while before it
// sleeps on a condition variable: no wake-up latency inside a pass, no spinning when
// idle. After the first `pause_spins` checks a waiting thread yields its core at each
// check, so on a machine with fewer free cores than threads the one that still has
// work gets to run (pure spinning there turns every hand-off into a scheduler
// time slice).
//
// One parallel_for at a time (the pool belongs to one model, which belongs to one
// decoding call at a time). The function must not throw.
//
// A pool that cannot start one of its threads throws kvdecode::thread_start_error
// after stopping and joining the threads it had started (a std::thread destroyed
// while still running would call std::terminate).

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "kvdecode/core/error.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace kvdecode {

namespace detail {
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
}
}  // namespace detail

class thread_pool {
public:
    static constexpr std::size_t pause_spins = 2000;        // checks with a pause between
    static constexpr std::size_t spin_before_sleep = 5000;   // checks before a worker sleeps (about a millisecond)
    static constexpr std::size_t max_threads = 0xFFFF;

    // Starts one worker thread running `body`. Empty (the default) means std::thread;
    // tests pass one that fails on purpose, as the system does at its thread limit.
    using thread_starter = std::function<std::thread(std::function<void()> body)>;

    explicit thread_pool(std::size_t threads = 1, const thread_starter& start_thread = {}) : size_(threads) {
        if (threads == 0 || threads > max_threads)
            throw std::invalid_argument("kvdecode: thread_pool needs 1 to " + std::to_string(max_threads) + " threads, not " +
                                        std::to_string(threads));
        workers_.reserve(threads - 1);  // so adding a started thread cannot throw
        for (std::size_t i = 1; i < threads; ++i) {
            try {
                if (start_thread) workers_.push_back(start_thread([this, i] { work(i); }));
                else workers_.emplace_back([this, i] { work(i); });
            } catch (const std::system_error& e) {
                stop_workers();
                throw thread_start_error(threads, i, e.code());
            } catch (...) {  // std::bad_alloc, or whatever a custom starter throws
                stop_workers();
                throw;
            }
            if (!workers_.back().joinable()) {
                stop_workers();
                throw std::invalid_argument("kvdecode: thread_pool: the thread starter returned no running thread for worker " +
                                            std::to_string(i));
            }
        }
    }
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    ~thread_pool() { stop_workers(); }

    std::size_t size() const noexcept { return size_; }

    // Calls fn(begin, end) on contiguous parts of [0, n), one part per thread (fewer
    // when n is small, or at most max_parts: small jobs are not worth a hand-off),
    // and returns when every part is done.
    template <class F>
    void parallel_for(std::size_t n, const F& fn, std::size_t max_parts = SIZE_MAX) {
        parallel_parts(n, [&](std::size_t, std::size_t begin, std::size_t end) { fn(begin, end); }, max_parts);
    }

    // The same, telling fn(part, begin, end) which part it runs (0 .. size() - 1), so
    // each part can use its own scratch space.
    template <class F>
    void parallel_parts(std::size_t n, const F& fn, std::size_t max_parts = SIZE_MAX) {
        const std::size_t parts = std::min({n, size_, std::max<std::size_t>(max_parts, 1)});
        if (parts <= 1) {
            if (n > 0) fn(std::size_t{0}, std::size_t{0}, n);
            return;
        }
        job_ = &fn;
        run_ = [](const void* f, std::size_t part, std::size_t b, std::size_t e) {
            (*static_cast<const F*>(f))(part, b, e);
        };
        n_ = n;
        parts_ = parts;
        remaining_.store(parts - 1, std::memory_order_relaxed);
        {
            // Under the mutex, so a worker about to sleep either sees the new ticket
            // or is already waiting when notified.
            std::lock_guard<std::mutex> lock(mutex_);
            ++generation_;
            ticket_.store(generation_ << 16 | parts, std::memory_order_release);
        }
        start_.notify_all();
        run_part(0);
        for (std::size_t spins = 0; remaining_.load(std::memory_order_acquire) != 0; ++spins) wait_a_little(spins);
    }

    // Calls fn(begin, end) on chunks of [0, n) of `chunk` indices (the last shorter),
    // which up to max_parts threads take in turn from a shared counter: a thread slowed
    // down (by a neighbour, or by its share of the memory bus) takes fewer chunks
    // instead of holding the others up at the end.
    template <class F>
    void parallel_chunks(std::size_t n, std::size_t chunk, const F& fn, std::size_t max_parts = SIZE_MAX) {
        chunk = std::max<std::size_t>(chunk, 1);
        const std::size_t chunks = (n + chunk - 1) / chunk;
        const std::size_t parts = std::min({chunks, size_, std::max<std::size_t>(max_parts, 1)});
        if (parts <= 1) {
            if (n > 0) fn(std::size_t{0}, n);
            return;
        }
        next_chunk_.store(0, std::memory_order_relaxed);
        parallel_parts(parts, [&](std::size_t, std::size_t, std::size_t) {
            for (;;) {
                const std::size_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
                if (c >= chunks) return;
                fn(c * chunk, std::min(n, (c + 1) * chunk));
            }
        });
    }

private:
    // Wakes every worker to return and joins it: the destructor's work, and the
    // constructor's when a thread fails to start.
    void stop_workers() noexcept {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_.store(true, std::memory_order_release);
        }
        start_.notify_all();
        for (auto& w : workers_)
            if (w.joinable()) w.join();
    }

    static void wait_a_little(std::size_t spins) noexcept {
        if (spins < pause_spins) detail::cpu_relax();
        else std::this_thread::yield();
    }

    void run_part(std::size_t part) const {
        const std::size_t begin = n_ * part / parts_, end = n_ * (part + 1) / parts_;
        run_(job_, part, begin, end);
    }

    // A worker learns the job's generation and its number of parts from one atomic
    // ticket, so a worker that is not needed reads nothing else; the caller waits for
    // the needed ones only, and writes the next job's fields after they are done.
    void work(std::size_t index) {
        std::uint64_t seen = 0;
        for (;;) {
            std::uint64_t now = ticket_.load(std::memory_order_acquire);
            for (std::size_t spins = 0; now == seen && spins < spin_before_sleep; ++spins) {
                if (stopping_.load(std::memory_order_acquire)) return;
                wait_a_little(spins);
                now = ticket_.load(std::memory_order_acquire);
            }
            if (now == seen) {
                std::unique_lock<std::mutex> lock(mutex_);
                start_.wait(lock, [&] {
                    return stopping_.load(std::memory_order_acquire) || ticket_.load(std::memory_order_acquire) != seen;
                });
                if (stopping_.load(std::memory_order_acquire)) return;
                now = ticket_.load(std::memory_order_acquire);
            }
            seen = now;
            if (index < (now & 0xFFFF)) {
                run_part(index);
                remaining_.fetch_sub(1, std::memory_order_acq_rel);
            }
        }
    }

    std::size_t size_;
    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable start_;
    // The current job: written by the caller before the ticket (generation << 16 |
    // parts) is published (release), read by the needed workers after they see it.
    const void* job_ = nullptr;
    void (*run_)(const void*, std::size_t, std::size_t, std::size_t) = nullptr;
    std::size_t n_ = 0, parts_ = 0;
    std::uint64_t generation_ = 0;  // the caller's only
    // A cache line each: waiting workers poll the ticket while finished ones count
    // down `remaining_` and busy ones take chunks, and a write to a shared line would
    // pull it away from every poller (64 bytes: x86's line; the standard's
    // hardware_destructive_interference_size varies with compiler flags, so headers avoid it).
    alignas(64) std::atomic<std::uint64_t> ticket_{0};
    alignas(64) std::atomic<std::size_t> remaining_{0};
    alignas(64) std::atomic<std::size_t> next_chunk_{0};  // parallel_chunks' counter
    alignas(64) std::atomic<bool> stopping_{false};
};

}  // namespace kvdecode
