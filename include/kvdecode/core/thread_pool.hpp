#pragma once
// A fixed pool of worker threads, created once and sized by the user. The calling
// thread takes part: a pool of size N runs N - 1 workers. Idle workers sleep on a
// condition variable (no spinning); a parallel_for allocates nothing.
//
// One parallel_for at a time (the pool belongs to one model, which belongs to one
// decoding call at a time). The function must not throw.

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace kvdecode {

class thread_pool {
public:
    explicit thread_pool(std::size_t threads = 1) : size_(threads) {
        if (threads == 0) throw std::invalid_argument("kvdecode: thread_pool needs at least 1 thread");
        workers_.reserve(threads - 1);
        for (std::size_t i = 1; i < threads; ++i) workers_.emplace_back([this, i] { work(i); });
    }
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    ~thread_pool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        start_.notify_all();
        for (auto& w : workers_) w.join();
    }

    std::size_t size() const noexcept { return size_; }

    // Calls fn(begin, end) on contiguous parts of [0, n), one part per thread (fewer
    // when n is small), and returns when every part is done.
    template <class F>
    void parallel_for(std::size_t n, const F& fn) {
        const std::size_t parts = std::min(n, size_);
        if (parts <= 1) {
            if (n > 0) fn(std::size_t{0}, n);
            return;
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = &fn;
            run_ = [](const void* f, std::size_t b, std::size_t e) { (*static_cast<const F*>(f))(b, e); };
            n_ = n;
            parts_ = parts;
            remaining_ = parts - 1;
            ++generation_;
        }
        start_.notify_all();
        run_part(0);
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return remaining_ == 0; });
    }

private:
    void run_part(std::size_t part) const {
        const std::size_t begin = n_ * part / parts_, end = n_ * (part + 1) / parts_;
        run_(job_, begin, end);
    }

    void work(std::size_t index) {
        std::size_t seen = 0;
        for (;;) {
            std::unique_lock<std::mutex> lock(mutex_);
            start_.wait(lock, [&] { return stopping_ || generation_ != seen; });
            if (stopping_) return;
            seen = generation_;
            if (index >= parts_) continue;  // not needed for this job
            lock.unlock();
            run_part(index);
            lock.lock();
            if (--remaining_ == 0) done_.notify_one();
        }
    }

    std::size_t size_;
    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable start_, done_;
    const void* job_ = nullptr;
    void (*run_)(const void*, std::size_t, std::size_t) = nullptr;
    std::size_t n_ = 0, parts_ = 0, remaining_ = 0, generation_ = 0;
    bool stopping_ = false;
};

}  // namespace kvdecode
