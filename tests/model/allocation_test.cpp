// No heap allocation inside forward() once warmed up: decode steps of one
// sequence and of a batch, forks and releases in between. Counted by replacing
// the global operator new for this test program (it is its own executable).

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include <catch2/catch.hpp>

#include "support/models.hpp"

namespace {
std::atomic<std::size_t> allocations{0};
}

void* operator new(std::size_t n) {
    ++allocations;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, std::align_val_t a) {
    ++allocations;
    const std::size_t align = static_cast<std::size_t>(a);
    if (void* p = std::aligned_alloc(align, (n + align - 1) / align * align)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    ++allocations;
    return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    ++allocations;
    const std::size_t align = static_cast<std::size_t>(a);
    return std::aligned_alloc(align, (n + align - 1) / align * align);
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t& t) noexcept { return operator new(n, a, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

using namespace kvdecode;

TEST_CASE("forward allocates nothing after warm-up", "[model][allocation]") {
    for (const auto& shape : kvtest::awkward_shapes()) {
        SECTION(shape.name) {
            const transformer<float> model(kvtest::random_model(shape.config));
            decode_context<float> ctx(model, {.threads = 3, .min_work_per_thread = 1});  // every product split: the pool allocates nothing per step
            auto cache = model.make_cache({.capacity_tokens = 256, .block_size = 8, .max_sequences = 16});
            const std::size_t vocab = shape.config.vocab_size;
            std::vector<float> logits(4 * vocab);
            const std::vector<token_id> prompt = {1, 2, 3, 4, 5};
            const seq_id a = cache.create();
            ctx.forward(std::vector{sequence_tokens{a, prompt}}, cache, logits);  // warm-up

            std::vector<sequence_tokens> batch;
            batch.reserve(4);
            token_id next[4] = {7, 8, 9, 10};
            const std::size_t before = allocations.load();
            for (int step = 0; step < 20; ++step) {  // one sequence, then forks that share its prefix
                batch.clear();
                batch.push_back({a, std::span<const token_id>(next, 1)});
                ctx.forward(batch, cache, logits);
            }
            const seq_id b = cache.fork(a), c = cache.fork(a), d = cache.fork(b);
            for (int step = 0; step < 20; ++step) {
                batch.clear();
                batch.push_back({a, std::span<const token_id>(next, 1)});
                batch.push_back({b, std::span<const token_id>(next + 1, 1)});
                batch.push_back({c, std::span<const token_id>(next + 2, 1)});
                batch.push_back({d, std::span<const token_id>(next + 3, 1)});
                ctx.forward(batch, cache, logits);
            }
            cache.truncate(d, 10);
            cache.release(c);
            cache.release(d);
            REQUIRE(allocations.load() == before);
            cache.release(b);
        }
    }
}
