#include <catch2/catch.hpp>

#include "kvdecode/cache/block_pool.hpp"

using kvdecode::block_pool;

TEST_CASE("block_pool counts references and recycles freed blocks", "[cache]") {
    block_pool pool(3);
    REQUIRE(pool.free() == 3);
    const auto a = pool.allocate();
    const auto b = pool.allocate();
    REQUIRE(a != b);
    REQUIRE(pool.used() == 2);
    pool.retain(a);
    pool.retain(a);
    REQUIRE(pool.ref_count(a) == 3);
    REQUIRE(pool.shared() == 1);
    pool.release(a);
    REQUIRE(pool.shared() == 1);
    pool.release(a);
    REQUIRE(pool.shared() == 0);
    REQUIRE(pool.used() == 2);
    pool.release(a);
    REQUIRE(pool.free() == 2);
    REQUIRE(pool.allocate() == a);  // the freed block comes back first
    pool.release(b);
}
