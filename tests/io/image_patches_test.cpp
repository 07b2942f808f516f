// Images to source vectors: the patch order the digits model was trained on, and
// clear errors for images it cannot read.

#include <cstdint>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/io/image_patches.hpp"

using namespace kvdecode;

TEST_CASE("image_patches: columns of patches left to right, each top to bottom, pixels row-major", "[io][image]") {
    const image_patch_layout layout{.patch_size = 7, .image_height = 28, .cell_width = 28};
    const std::size_t width = 56, height = 28;
    std::vector<std::uint8_t> pixels(width * height);
    for (std::size_t y = 0; y < height; ++y)
        for (std::size_t x = 0; x < width; ++x) pixels[y * width + x] = static_cast<std::uint8_t>((y * 7 + x * 3) % 256);
    const std::vector<float> v = image_patches(pixels, width, height, layout, 80);
    REQUIRE(v.size() == 32 * 49);  // 2 cells: 8 columns of 4 patches
    auto pixel = [&](std::size_t y, std::size_t x) { return static_cast<float>(pixels[y * width + x]) / 255.0f; };
    for (std::size_t column = 0; column < 8; ++column)
        for (std::size_t row = 0; row < 4; ++row)
            for (std::size_t i = 0; i < 49; ++i)
                REQUIRE(v[(column * 4 + row) * 49 + i] == pixel(row * 7 + i / 7, column * 7 + i % 7));
}

TEST_CASE("image_patches: images the model cannot read are errors that say why", "[io][image]") {
    const image_patch_layout layout{.patch_size = 7, .image_height = 28, .cell_width = 28};
    const std::vector<std::uint8_t> tall(30 * 28), narrow(28 * 30), wide(28 * 28 * 6);
    CHECK_THROWS_WITH(image_patches(tall, 28, 30, layout, 80), Catch::Contains("30 pixels high; the model reads images 28"));
    CHECK_THROWS_WITH(image_patches(narrow, 30, 28, layout, 80), Catch::Contains("multiples of 28"));
    CHECK_THROWS_WITH(image_patches({}, 0, 28, layout, 80), Catch::Contains("is empty"));
    CHECK_THROWS_WITH(image_patches(wide, 168, 28, layout, 80), Catch::Contains("at most 80 patches (5 cells)"));
    CHECK_THROWS_WITH(image_patches(narrow, 28, 28, layout, 80), Catch::Contains("840 pixels given for 28 x 28"));
}
