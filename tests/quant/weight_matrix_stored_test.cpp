// weight_matrix's stored constructor (a model file's layout): sizes checked, legacy and
// K-quant block types used in place when an owner keeps aligned bytes alive (copied
// otherwise, and the copy outlives the caller's bytes), q8_0 interleaved and float
// types repacked into their panels with their values unchanged; products and rows equal to the matrix built from the
// same values by the float constructor.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/rng.hpp"
#include "kvdecode/quant/weight_matrix.hpp"
#include "support/stored_matrices.hpp"

using kvdecode::matrix_product;
using kvdecode::weight_matrix;
using kvdecode::weight_type;

namespace {

std::vector<float> random_values(std::size_t n, std::uint64_t seed) {
    kvdecode::rng gen(seed);
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(gen.normal());
    return v;
}

// out (rows, out_dim) = x · Wᵀ on the matrix's best kernel.
std::vector<float> product(const weight_matrix<float>& m, const std::vector<float>& x, std::size_t rows) {
    std::vector<float> out(rows * m.out_dim());
    kvdecode::aligned_buffer<std::byte> scratch(m.scratch_bytes(rows));
    const matrix_product<float> p{x.data(), m.in_dim(), rows, nullptr, out.data(), m.out_dim(), false};
    m.prepare(p, scratch.data(), 0, rows);
    m.multiply(p, scratch.data(), 0, m.units());
    return out;
}

std::vector<float> row(const weight_matrix<float>& m, std::size_t o) {
    std::vector<float> r(m.in_dim());
    m.dequantize_row(o, r.data());
    return r;
}

}  // namespace

TEST_CASE("row_bytes and block sizes follow the file layout", "[quant][stored]") {
    REQUIRE(kvdecode::row_bytes(weight_type::f32, 7) == 28);
    REQUIRE(kvdecode::row_bytes(weight_type::f16, 7) == 14);
    REQUIRE(kvdecode::row_bytes(weight_type::bf16, 7) == 14);
    REQUIRE(kvdecode::row_bytes(weight_type::q8_0, 96) == 3 * 34);
    REQUIRE_THROWS_WITH(kvdecode::row_bytes(weight_type::q8_0, 100), Catch::Contains("q8_0") && Catch::Contains("100"));
    REQUIRE_THROWS_AS(kvdecode::row_bytes(weight_type::f32, ~std::size_t{0} / 2), std::invalid_argument);
    for (weight_type t : kvdecode::all_weight_types) {
        REQUIRE(kvdecode::block_values(t) >= 1);
        REQUIRE(kvdecode::weight_type_names().find(std::string(to_string(t))) != std::string::npos);
    }
}

TEST_CASE("stored float rows are repacked with their values unchanged", "[quant][stored]") {
    for (weight_type type : {weight_type::f32, weight_type::f16, weight_type::bf16}) {
        for (std::size_t out_dim : {1u, 33u, 70u})
            for (std::size_t in_dim : {1u, 31u, 64u}) {
                CAPTURE(to_string(type), out_dim, in_dim);
                const auto w = random_values(out_dim * in_dim, out_dim * 131 + in_dim);
                const auto bytes = kvtest::to_stored(type, w.data(), out_dim, in_dim);
                const weight_matrix<float> stored(type, bytes, out_dim, in_dim);
                const weight_matrix<float> converted(type, w.data(), out_dim, in_dim);
                REQUIRE(!stored.in_place());
                REQUIRE(stored.bytes() == converted.bytes());
                for (std::size_t o = 0; o < out_dim; ++o) {
                    const auto r = row(stored, o);
                    REQUIRE(r == row(converted, o));
                    // The file's own values, read back as the format says.
                    for (std::size_t k = 0; k < in_dim; ++k) {
                        float want = 0;
                        if (type == weight_type::f32) std::memcpy(&want, bytes.data() + 4 * (o * in_dim + k), 4);
                        else {
                            std::uint16_t h;
                            std::memcpy(&h, bytes.data() + 2 * (o * in_dim + k), 2);
                            want = type == weight_type::f16 ? kvdecode::quant::f16_to_f32(h) : kvdecode::quant::bf16_to_f32(h);
                        }
                        REQUIRE(r[k] == want);
                    }
                }
                const auto x = random_values(3 * in_dim, 5);
                REQUIRE(product(stored, x, 3) == product(converted, x, 3));
            }
    }
}

TEST_CASE("stored Q4_0 rows are used in place with an owner, copied without", "[quant][stored]") {
    const std::size_t out_dim = 45, in_dim = 96;
    const auto w = random_values(out_dim * in_dim, 3);
    const auto bytes = kvtest::to_stored(weight_type::q4_0, w.data(), out_dim, in_dim);
    const weight_matrix<float> converted(weight_type::q4_0, w.data(), out_dim, in_dim);
    const auto x = random_values(5 * in_dim, 4);
    const auto want = product(converted, x, 5);

    SECTION("in place: the owner keeps the bytes alive after every other reference is gone") {
        // 64-byte aligned bytes (aligned_buffer).
        auto owned = std::make_shared<kvdecode::aligned_buffer<std::byte>>(bytes.size() + 2);
        std::memcpy(owned->data(), bytes.data(), bytes.size());
        const std::byte* at = owned->data();
        weight_matrix<float> m(weight_type::q4_0, std::span<const std::byte>(at, bytes.size()), out_dim, in_dim, owned);
        REQUIRE(m.in_place());
        std::weak_ptr<kvdecode::aligned_buffer<std::byte>> alive = owned;
        owned.reset();
        const weight_matrix<float> moved(std::move(m));
        REQUIRE(!alive.expired());
        REQUIRE(moved.bytes() == bytes.size());
        REQUIRE(product(moved, x, 5) == want);
        for (std::size_t o = 0; o < out_dim; ++o) REQUIRE(row(moved, o) == row(converted, o));
    }
    SECTION("misaligned bytes are copied even with an owner") {
        auto owned = std::make_shared<kvdecode::aligned_buffer<std::byte>>(bytes.size() + 2);
        std::memcpy(owned->data() + 2, bytes.data(), bytes.size());
        const weight_matrix<float> m(weight_type::q4_0, std::span<const std::byte>(owned->data() + 2, bytes.size()),
                                     out_dim, in_dim, owned);
        REQUIRE(!m.in_place());
        REQUIRE(product(m, x, 5) == want);
    }
    SECTION("without an owner the bytes are copied and may be dropped") {
        auto temporary = std::make_unique<std::vector<std::byte>>(bytes);
        const weight_matrix<float> m(weight_type::q4_0, *temporary, out_dim, in_dim);
        temporary.reset();
        REQUIRE(!m.in_place());
        REQUIRE(product(m, x, 5) == want);
    }
}

TEST_CASE("stored Q8_0 rows are interleaved once: the owner's bytes may go, values unchanged", "[quant][stored]") {
    // 45 outputs: two whole groups of 16 and one of 13 padded; from aligned and misaligned bytes.
    const std::size_t out_dim = 45, in_dim = 96;
    const auto w = random_values(out_dim * in_dim, 3);
    const auto bytes = kvtest::to_stored(weight_type::q8_0, w.data(), out_dim, in_dim);
    const weight_matrix<float> converted(weight_type::q8_0, w.data(), out_dim, in_dim);
    const auto x = random_values(5 * in_dim, 4);
    const auto want = product(converted, x, 5);
    for (std::size_t misalign : {0, 2, 5}) {
        CAPTURE(misalign);
        auto owned = std::make_shared<kvdecode::aligned_buffer<std::byte>>(bytes.size() + 8);
        std::memcpy(owned->data() + misalign, bytes.data(), bytes.size());
        const weight_matrix<float> m(weight_type::q8_0, std::span<const std::byte>(owned->data() + misalign, bytes.size()),
                                     out_dim, in_dim, owned);
        REQUIRE(!m.in_place());
        std::weak_ptr<kvdecode::aligned_buffer<std::byte>> alive = owned;
        std::fill_n(owned->data(), owned->size(), std::byte{0x7f});
        owned.reset();
        REQUIRE(alive.expired());
        REQUIRE(m.bytes() == 3 * 3 * (512 + 32));  // 3 groups of 16 outputs, 3 blocks of 32 values
        REQUIRE(product(m, x, 5) == want);
        // The file's own values, read back as q8_0.hpp says.
        for (std::size_t o = 0; o < out_dim; ++o) {
            std::vector<kvdecode::quant::block_q8_0> file_row(3);
            std::memcpy(file_row.data(), bytes.data() + o * 3 * 34, 3 * 34);
            std::vector<float> want_row(in_dim);
            kvdecode::quant::dequantize_row_q8_0(file_row.data(), want_row.data(), in_dim);
            REQUIRE(row(m, o) == want_row);
            REQUIRE(row(m, o) == row(converted, o));
        }
    }
}

TEST_CASE("stored sizes that do not match are errors naming them", "[quant][stored]") {
    const auto w = random_values(4 * 64, 6);
    const auto bytes = kvtest::to_stored(weight_type::q8_0, w.data(), 4, 64);
    REQUIRE_THROWS_WITH(weight_matrix<float>(weight_type::q8_0, std::span(bytes).first(bytes.size() - 1), 4, 64),
                        Catch::Contains("4 x 64 q8_0 values needs 272 bytes (4 rows of 68), got 271"));
    REQUIRE_THROWS_WITH(weight_matrix<float>(weight_type::q8_0, bytes, 4, 60), Catch::Contains("q8_0") && Catch::Contains("60"));
    REQUIRE_THROWS_WITH(weight_matrix<float>(weight_type::f32, bytes, 0, 64), Catch::Contains("at least 1 x 1"));
    REQUIRE_THROWS_WITH(weight_matrix<double>(weight_type::f32, bytes, 1, 68), Catch::Contains("need float activations"));
}
