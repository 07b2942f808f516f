#include <cmath>

#include <catch2/catch.hpp>

#include "kvdecode/cache/mask_cache.hpp"

TEST_CASE("mask_cache builds each causal mask once", "[cache][mask]") {
    kvdecode::mask_cache<float> masks;
    const float* five = masks.get(5);
    for (std::size_t i = 0; i < 5; ++i)
        for (std::size_t j = 0; j < 5; ++j) {
            if (j <= i) REQUIRE(five[i * 5 + j] == 0.0f);
            else REQUIRE(std::isinf(five[i * 5 + j]));
        }
    REQUIRE(masks.get(5) == five);  // the same storage: not rebuilt
    REQUIRE(masks.builds() == 1);
    masks.get(3);
    REQUIRE(masks.builds() == 2);
    REQUIRE(masks.get(5) == five);  // still valid after another length was added
}
