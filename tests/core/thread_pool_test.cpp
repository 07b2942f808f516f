#include <atomic>
#include <functional>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/core/thread_pool.hpp"
#include "support/models.hpp"

TEST_CASE("thread_pool covers every index exactly once, for any size and thread count", "[core][threads]") {
    for (std::size_t threads : {1, 2, 3, 8}) {
        kvdecode::thread_pool pool(threads);
        REQUIRE(pool.size() == threads);
        for (int round = 0; round < 50; ++round)
            for (std::size_t n : {0, 1, 2, 5, 7, 64, 1000}) {
                std::vector<std::atomic<int>> hits(n);
                pool.parallel_for(n, [&](std::size_t begin, std::size_t end) {
                    for (std::size_t i = begin; i < end; ++i) ++hits[i];
                });
                for (auto& h : hits) REQUIRE(h.load() == 1);
            }
    }
    REQUIRE_THROWS_AS(kvdecode::thread_pool(0), std::invalid_argument);
}

TEST_CASE("thread_pool chunks cover every index exactly once", "[core][threads]") {
    for (std::size_t threads : {1, 2, 3}) {
        kvdecode::thread_pool pool(threads);
        for (std::size_t n : {0, 1, 5, 64, 1000})
            for (std::size_t chunk : {0, 1, 3, 64, 2000}) {
                std::vector<std::atomic<int>> hits(n);
                pool.parallel_chunks(n, chunk, [&](std::size_t begin, std::size_t end) {
                    for (std::size_t i = begin; i < end; ++i) ++hits[i];
                });
                for (auto& h : hits) REQUIRE(h.load() == 1);
            }
    }
}

TEST_CASE("thread_pool parts have distinct indices and respect max_parts", "[core][threads]") {
    kvdecode::thread_pool pool(4);
    for (std::size_t max_parts : {1, 2, 3, 4, 9}) {
        std::vector<std::atomic<int>> seen(4), hits(100);
        pool.parallel_parts(100, [&](std::size_t part, std::size_t begin, std::size_t end) {
            ++seen[part];
            for (std::size_t i = begin; i < end; ++i) ++hits[i];
        }, max_parts);
        std::size_t used = 0;
        for (auto& s : seen) {
            REQUIRE(s.load() <= 1);
            used += static_cast<std::size_t>(s.load());
        }
        REQUIRE(used == std::min<std::size_t>(max_parts, 4));
        for (auto& h : hits) REQUIRE(h.load() == 1);
    }
}

namespace {

// Starts real threads for the first `succeed` workers, then fails the way the system
// does at its thread limit (or with `failure`); counts the threads that have returned.
struct failing_starter {
    std::size_t succeed = 0;
    std::function<void()> failure = [] {
        throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again), "pthread_create");
    };
    std::atomic<std::size_t> started{0}, finished{0};

    kvdecode::thread_pool::thread_starter starter() {
        return [this](std::function<void()> body) {
            if (started.load() == succeed) failure();
            ++started;
            return std::thread([this, body = std::move(body)] {
                body();
                ++finished;
            });
        };
    }
};

}  // namespace

TEST_CASE("a thread pool that cannot start a thread throws and joins the ones it started", "[core][threads]") {
    for (std::size_t succeed : {0, 1, 3, 6}) {
        CAPTURE(succeed);
        failing_starter s{.succeed = succeed};
        try {
            kvdecode::thread_pool pool(8, s.starter());
            FAIL("no exception");
        } catch (const kvdecode::thread_start_error& e) {
            CAPTURE(e.what());
            REQUIRE(e.threads() == 8);
            REQUIRE(e.code() == std::errc::resource_unavailable_try_again);
            REQUIRE_THAT(e.what(), Catch::Contains("thread_pool of 8 threads") &&
                                       Catch::Contains("could not start worker thread " + std::to_string(succeed + 1) + " of 7") &&
                                       Catch::Contains(std::make_error_code(std::errc::resource_unavailable_try_again).message()));
        }
        // Every started worker has returned and been joined before the throw.
        REQUIRE(s.started.load() == succeed);
        REQUIRE(s.finished.load() == succeed);
    }
}

TEST_CASE("a thread pool whose starter throws something else rethrows it after joining", "[core][threads]") {
    failing_starter s{.succeed = 2, .failure = [] { throw std::bad_alloc(); }};
    REQUIRE_THROWS_AS(kvdecode::thread_pool(5, s.starter()), std::bad_alloc);
    REQUIRE(s.finished.load() == 2);

    auto no_thread = [](std::function<void()>) { return std::thread(); };
    REQUIRE_THROWS_WITH(kvdecode::thread_pool(3, no_thread), Catch::Contains("no running thread for worker 1"));
}

TEST_CASE("a thread pool built through a starter works like any other", "[core][threads]") {
    failing_starter s{.succeed = 3};
    {
        kvdecode::thread_pool pool(4, s.starter());
        std::vector<std::atomic<int>> hits(100);
        pool.parallel_for(100, [&](std::size_t begin, std::size_t end) {
            for (std::size_t i = begin; i < end; ++i) ++hits[i];
        });
        for (auto& h : hits) REQUIRE(h.load() == 1);
    }
    REQUIRE(s.finished.load() == 3);
}

TEST_CASE("logits and tokens do not depend on the number of threads", "[model][threads]") {
    using namespace kvdecode;
    for (const auto& shape : kvtest::awkward_shapes()) {
        SECTION(shape.name) {
            const auto w = kvtest::random_model(shape.config);
            const std::size_t vocab = shape.config.vocab_size;
            std::vector<std::vector<float>> results;
            for (std::size_t threads : {1, 2, 3, 4}) {
                const transformer<float> model(w);
                decode_context<float> ctx(model, {.threads = threads, .min_work_per_thread = 1});  // split even tiny products
                REQUIRE(ctx.threads() == threads);
                auto cache = model.make_cache();
                const auto a = cache.create(), b = cache.create();
                std::vector<token_id> long_prompt(40), short_prompt = {3, 1, 4};
                for (std::size_t i = 0; i < long_prompt.size(); ++i) long_prompt[i] = static_cast<token_id>((i * 7) % vocab);
                std::vector<float> logits(2 * vocab), all;
                ctx.forward(std::vector{sequence_tokens{a, long_prompt}, sequence_tokens{b, short_prompt}}, cache, logits);
                all.insert(all.end(), logits.begin(), logits.end());
                for (int step = 0; step < 10; ++step) {
                    const std::vector<token_id> x = {static_cast<token_id>(step % vocab)}, y = {static_cast<token_id>((step * 3) % vocab)};
                    ctx.forward(std::vector{sequence_tokens{a, x}, sequence_tokens{b, y}}, cache, logits);
                    all.insert(all.end(), logits.begin(), logits.end());
                }
                results.push_back(all);
            }
            for (std::size_t t = 1; t < results.size(); ++t)
                REQUIRE(kvtest::max_relative_error<float, float>(results[t], results[0]) <= 1e-5);
        }
    }
}
