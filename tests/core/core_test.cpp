#include <cstdint>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/checked_arithmetic.hpp"
#include "kvdecode/core/rng.hpp"

TEST_CASE("aligned_buffer is aligned, zeroed, copyable and movable", "[core]") {
    kvdecode::aligned_buffer<float> a(37);
    REQUIRE(reinterpret_cast<std::uintptr_t>(a.data()) % 64 == 0);
    for (float v : a.span()) REQUIRE(v == 0.0f);
    a[3] = 2.5f;
    auto b = a;
    REQUIRE(b[3] == 2.5f);
    REQUIRE(b.data() != a.data());
    auto c = std::move(a);
    REQUIRE(c[3] == 2.5f);
    REQUIRE(a.empty());
}

TEST_CASE("checked arithmetic reports overflow", "[core]") {
    REQUIRE(kvdecode::checked_mul(1ull << 32, 1ull << 31) == (1ull << 63));
    REQUIRE_FALSE(kvdecode::checked_mul(1ull << 32, 1ull << 32));
    REQUIRE_FALSE(kvdecode::checked_add(~0ull, 1));
}

TEST_CASE("rng is deterministic and roughly uniform and normal", "[core]") {
    kvdecode::rng a(5), b(5), c(6);
    REQUIRE(a.next_u64() == b.next_u64());
    REQUIRE(a.next_u64() != c.next_u64());
    double sum = 0, sum_sq = 0;
    const int n = 100000;
    for (int i = 0; i < n; ++i) {
        const double u = a.uniform();
        REQUIRE((u >= 0.0 && u < 1.0));
        const double z = b.normal();
        sum += z;
        sum_sq += z * z;
    }
    REQUIRE(std::abs(sum / n) < 0.02);          // mean 0: standard error 0.003
    REQUIRE(std::abs(sum_sq / n - 1.0) < 0.03);  // variance 1: standard error 0.0045
}
