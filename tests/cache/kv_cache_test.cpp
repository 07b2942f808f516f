// kv_cache semantics: sharing on fork, copy-on-write, truncation, release,
// exhaustion — on the bookkeeping directly and through a model.

#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/cache/kv_cache.hpp"
#include "support/models.hpp"

using namespace kvdecode;

namespace {

model_config small_config() {
    model_config c;
    c.dim = 32, c.hidden_dim = 40, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.vocab_size = 50, c.seq_len = 64;
    return validated(c);
}

// Writes a recognisable value into every K/V row of `s` from position `from` on.
void stamp(kv_cache<float>& cache, seq_id s, std::size_t from, float base) {
    const auto& c = cache.config();
    for (std::size_t pos = from; pos < cache.length(s); ++pos)
        for (std::size_t l = 0; l < c.n_layers; ++l)
            for (std::size_t h = 0; h < c.n_kv_heads; ++h)
                for (std::size_t d = 0; d < c.head_dim; ++d) {
                    cache.key_at(l, s, pos, h)[d] = base + float(pos);
                    cache.value_at(l, s, pos, h)[d] = -base - float(pos);
                }
}

// Reads through the block list with its own arithmetic, so it also checks key_at / value_at.
bool has_stamp(const kv_cache<float>& cache, seq_id s, std::size_t upto, float base) {
    const auto& c = cache.config();
    const auto blocks = cache.block_list(s);
    for (std::size_t pos = 0; pos < upto; ++pos)
        for (std::size_t l = 0; l < c.n_layers; ++l)
            for (std::size_t h = 0; h < c.n_kv_heads; ++h)
                for (std::size_t d = 0; d < c.head_dim; ++d) {
                    const std::size_t at = (pos % cache.block_size()) * c.head_dim + d;
                    if (cache.key(l, blocks[pos / cache.block_size()], h)[at] != base + float(pos)) return false;
                    if (cache.value(l, blocks[pos / cache.block_size()], h)[at] != -base - float(pos)) return false;
                }
    return true;
}

}  // namespace

TEST_CASE("kv_cache preallocates its blocks and reports them", "[cache]") {
    kv_cache<float> cache(small_config(), {.capacity_tokens = 40, .block_size = 8});
    const auto st = cache.stats();
    REQUIRE(st.blocks_total == 5);
    REQUIRE(st.blocks_free == 5);
    REQUIRE(st.blocks_used == 0);
    REQUIRE(st.bytes_per_block == 2 * 2 * 2 * 8 * 8 * sizeof(float));  // K+V, layers, kv heads, block, head_dim
    REQUIRE(st.bytes_total == 5 * st.bytes_per_block);
    REQUIRE(cache.capacity_tokens() == 40);
}

TEST_CASE("fork shares every block and copies none", "[cache]") {
    kv_cache<float> cache(small_config(), {.capacity_tokens = 64, .block_size = 8});
    const auto parent = cache.create();
    cache.extend(parent, 20);
    stamp(cache, parent, 0, 1000);
    const auto child = cache.fork(parent);
    const auto st = cache.stats();
    REQUIRE(cache.length(child) == 20);
    REQUIRE(st.blocks_used == 3);
    REQUIRE(st.blocks_shared == 3);
    REQUIRE(st.bytes_copied == 0);
    REQUIRE(std::equal(cache.block_list(child).begin(), cache.block_list(child).end(),
                       cache.block_list(parent).begin()));
    REQUIRE(has_stamp(cache, child, 20, 1000));
}

TEST_CASE("appending to a fork copies at most one partial block and leaves the parent unchanged", "[cache]") {
    const auto c = small_config();
    kv_cache<float> cache(c, {.capacity_tokens = 64, .block_size = 8});
    const auto parent = cache.create();
    cache.extend(parent, 20);  // blocks: 8 + 8 + 4 of 8
    stamp(cache, parent, 0, 1000);
    const auto child = cache.fork(parent);
    REQUIRE(cache.blocks_to_extend(child, 1) == 1);  // the shared partial block must be copied
    cache.extend(child, 1);
    stamp(cache, child, 20, 5000);
    auto st = cache.stats();
    REQUIRE(st.blocks_copied == 1);
    REQUIRE(st.bytes_copied == 2 * c.n_layers * c.n_kv_heads * 4 * c.head_dim * sizeof(float));
    REQUIRE(st.blocks_used == 4);
    REQUIRE(st.blocks_shared == 2);  // the two full blocks stay shared
    REQUIRE(cache.length(parent) == 20);
    REQUIRE(has_stamp(cache, parent, 20, 1000));
    REQUIRE(has_stamp(cache, child, 20, 1000));  // the copied prefix
    // The parent can append in place now that its last block is its own again.
    REQUIRE(cache.blocks_to_extend(parent, 4) == 0);
    cache.extend(parent, 4);
    REQUIRE(cache.stats().blocks_copied == 1);

    SECTION("a fork at a block boundary appends without copying") {
        const auto a = cache.create();
        cache.extend(a, 16);
        const auto b = cache.fork(a);
        cache.extend(b, 3);
        REQUIRE(cache.stats().blocks_copied == 1);
    }
}

TEST_CASE("truncate gives back whole blocks, and release returns every block", "[cache]") {
    kv_cache<float> cache(small_config(), {.capacity_tokens = 64, .block_size = 8});
    const auto a = cache.create();
    cache.extend(a, 30);
    const auto b = cache.fork(a);
    const auto c = cache.fork(b);
    cache.truncate(b, 9);
    REQUIRE(cache.length(b) == 9);
    REQUIRE(cache.block_list(b).size() == 2);
    cache.extend(b, 10);
    cache.truncate(a, 0);
    REQUIRE(cache.block_list(a).empty());
    REQUIRE_THROWS_AS(cache.truncate(c, 31), std::invalid_argument);
    cache.release(a);
    cache.release(b);
    cache.release(c);
    const auto st = cache.stats();
    REQUIRE(st.blocks_used == 0);
    REQUIRE(st.blocks_shared == 0);
    REQUIRE(st.blocks_free == st.blocks_total);
    REQUIRE(st.sequences == 0);
    REQUIRE_THROWS_AS(cache.release(a), std::invalid_argument);
    REQUIRE_THROWS_AS(cache.length(b), std::invalid_argument);
}

TEST_CASE("exhaustion throws cache_full and leaves the cache usable", "[cache][errors]") {
    kv_cache<float> cache(small_config(), {.capacity_tokens = 32, .block_size = 8, .max_sequences = 3});
    const auto a = cache.create();
    cache.extend(a, 20);
    const auto b = cache.fork(a);
    REQUIRE_THROWS_AS(cache.extend(b, 13), cache_full);  // needs a copy + 2 new blocks, 1 is free
    REQUIRE(cache.length(b) == 20);
    REQUIRE(cache.stats().blocks_used == 3);
    REQUIRE(cache.stats().blocks_copied == 0);
    REQUIRE_THROWS_AS(cache.extend(a, 45), std::invalid_argument);  // beyond the context length
    cache.fork(a);
    REQUIRE_THROWS_AS(cache.fork(a), cache_full);  // no free sequence handle
    REQUIRE_THROWS_WITH(cache.fork(a), Catch::Contains("max_sequences"));
    cache.release(b);
    cache.extend(a, 4);  // usable afterwards
    REQUIRE(cache.length(a) == 24);
}

TEST_CASE("truncating and appending again equals never having appended", "[cache][model]") {
    const auto shape = kvtest::awkward_shapes()[1].config;
    const transformer<float> model(kvtest::random_model(shape));
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 256, .block_size = 4});
    const std::vector<token_id> prompt = {1, 5, 9, 13, 17, 21, 2};
    const std::vector<token_id> detour = {30, 31, 32, 33, 34, 35};
    const std::vector<token_id> ending = {40, 41, 42};
    std::vector<float> rolled_back(ending.size() * shape.vocab_size), direct(rolled_back.size());

    const auto a = cache.create();
    ctx.forward(std::vector{sequence_tokens{a, prompt}}, cache, rolled_back);
    const auto shared = cache.fork(a);  // keeps the old blocks alive so truncation cannot reuse them as-is
    ctx.forward(std::vector{sequence_tokens{a, detour}}, cache, rolled_back);
    cache.truncate(a, prompt.size());
    ctx.forward(std::vector{sequence_tokens{a, ending}}, cache, rolled_back, logits_for::every_token);

    const auto b = cache.create();
    ctx.forward(std::vector{sequence_tokens{b, prompt}}, cache, direct);
    ctx.forward(std::vector{sequence_tokens{b, ending}}, cache, direct, logits_for::every_token);
    REQUIRE(rolled_back == direct);
    cache.release(shared);
}

TEST_CASE("a forked sequence decodes as if its prefix had been computed for it", "[cache][model]") {
    const auto shape = kvtest::awkward_shapes()[0].config;
    const auto w = kvtest::random_model(shape);
    const transformer<float> model(w);
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 256, .block_size = 8});
    const std::vector<token_id> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    std::vector<float> logits(2 * shape.vocab_size);
    const auto parent = cache.create();
    ctx.forward(std::vector{sequence_tokens{parent, prompt}}, cache, logits);
    const auto child = cache.fork(parent);
    const std::vector<token_id> x = {20}, y = {30};
    ctx.forward(std::vector{sequence_tokens{parent, x}, sequence_tokens{child, y}}, cache, logits);

    auto expect = [&](std::vector<token_id> tokens, std::span<const float> got) {
        const auto ref = kvtest::reference_logits(w, tokens);
        const auto row = ref.row(ref.rows() - 1);
        REQUIRE(kvtest::max_relative_error<float, float>(got, std::span<const float>(row.data(), shape.vocab_size)) <= 1e-4);
    };
    auto px = prompt, py = prompt;
    px.push_back(20);
    py.push_back(30);
    expect(px, std::span<const float>(logits.data(), shape.vocab_size));
    expect(py, std::span<const float>(logits.data() + shape.vocab_size, shape.vocab_size));
    REQUIRE(cache.stats().blocks_copied == 1);  // exactly the shared partial block
}

TEST_CASE("copy duplicates every block and counts every byte", "[cache]") {
    const auto c = small_config();
    kv_cache<float> cache(c, {.capacity_tokens = 64, .block_size = 8});
    const auto a = cache.create();
    cache.extend(a, 20);
    stamp(cache, a, 0, 1000);
    const auto b = cache.copy(a);
    const auto st = cache.stats();
    REQUIRE(cache.length(b) == 20);
    REQUIRE(st.blocks_used == 6);
    REQUIRE(st.blocks_shared == 0);
    REQUIRE(st.bytes_copied == 2 * c.n_layers * c.n_kv_heads * 20 * c.head_dim * sizeof(float));
    REQUIRE(has_stamp(cache, b, 20, 1000));
    stamp(cache, b, 0, 7000);
    REQUIRE(has_stamp(cache, a, 20, 1000));  // independent storage
    cache.extend(a, 20);                      // 5 blocks in use by a, 3 by b: 8 of 8
    REQUIRE_THROWS_AS(cache.copy(a), cache_full);
    REQUIRE(cache.stats().sequences == 2);
}

// A 16-bit cache: store_kv rounds each value once (nearest even), the rows read back
// through key/value and key_at/value_at as those bits, half the bytes per block, and
// fork, copy-on-write and copy move the stored bits unchanged.
TEST_CASE("a float16 or bfloat16 cache stores rounded rows and shares them as a float32 one does", "[cache][kv_type]") {
    using quant::half_format;
    const auto c = small_config();
    for (kv_type kv : {kv_type::f16, kv_type::bf16}) {
        CAPTURE(to_string(kv));
        kv_cache<float> cache(c, {.capacity_tokens = 64, .block_size = 8, .storage = kv});
        REQUIRE(cache.storage() == kv);
        REQUIRE(cache.stats().bytes_per_block == 2 * 2 * 2 * 8 * 8 * 2);  // K+V, layers, kv heads, block, head_dim, 2 bytes
        auto round = [&](float x) {
            return kv == kv_type::f16 ? quant::to_half<half_format::f16>(x) : quant::to_half<half_format::bf16>(x);
        };
        // Values at and around rounding boundaries, signs, a subnormal-in-f16 and 70000
        // (infinite in f16, finite in bf16).
        auto value_of = [](std::size_t pos, std::size_t l, std::size_t h, std::size_t d, float sign) {
            return sign * (1.0f + float(pos) / 3.0f + float(l * 7 + h * 3) * 0.001f + float(d) * 1e-4f) *
                   (d % 5 == 0 ? 70000.0f : d % 7 == 0 ? 1e-6f : 1.0f);
        };
        const auto parent = cache.create();
        cache.extend(parent, 13);
        std::vector<float> k(c.head_dim), v(c.head_dim);
        auto write = [&](seq_id s, std::size_t from) {
            for (std::size_t pos = from; pos < cache.length(s); ++pos)
                for (std::size_t l = 0; l < c.n_layers; ++l)
                    for (std::size_t h = 0; h < c.n_kv_heads; ++h) {
                        for (std::size_t d = 0; d < c.head_dim; ++d) k[d] = value_of(pos, l, h, d, 1), v[d] = value_of(pos, l, h, d, -1);
                        cache.store_kv(l, s, pos, h, k.data(), v.data());
                    }
        };
        auto holds = [&](seq_id s) {
            const auto blocks = cache.block_list(s);
            for (std::size_t pos = 0; pos < cache.length(s); ++pos)
                for (std::size_t l = 0; l < c.n_layers; ++l)
                    for (std::size_t h = 0; h < c.n_kv_heads; ++h)
                        for (std::size_t d = 0; d < c.head_dim; ++d) {
                            const std::size_t at = (pos % 8) * c.head_dim + d;
                            const std::uint16_t key = cache.key<std::uint16_t>(l, blocks[pos / 8], h)[at];
                            if (key != round(value_of(pos, l, h, d, 1)) ||
                                cache.key_at<std::uint16_t>(l, s, pos, h)[d] != key ||
                                cache.value_at<std::uint16_t>(l, s, pos, h)[d] != round(value_of(pos, l, h, d, -1)))
                                return false;
                        }
            return true;
        };
        write(parent, 0);
        REQUIRE(holds(parent));
        const auto child = cache.fork(parent);
        cache.extend(child, 2);  // the shared partial block is copied first
        write(child, 13);
        REQUIRE(cache.stats().blocks_copied == 1);
        REQUIRE(cache.stats().bytes_copied == 2 * 2 * 2 * 5 * 8 * 2);  // K+V, layers, kv heads, 5 rows, head_dim, 2 bytes
        REQUIRE(holds(parent));
        REQUIRE(holds(child));
        const auto copied = cache.copy(child);
        REQUIRE(holds(copied));
        cache.truncate(copied, 9);
        REQUIRE(holds(copied));
    }
}
