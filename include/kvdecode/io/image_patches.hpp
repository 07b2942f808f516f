#pragma once
// A grayscale image as an encoder's source vectors: square patches taken column of
// patches by column, left to right, each column top to bottom, each patch's pixels
// row-major scaled to [0, 1] (pixel / 255). Position p = column * rows_of_patches + row.
// The layout comes from the model file (image_patch_layout, io/seq2seq_gguf.hpp).

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace kvdecode {

// How an image becomes source vectors, where the model file says (the digits model's).
struct image_patch_layout {
    std::size_t patch_size = 0;    // square patches
    std::size_t image_height = 0;  // pixels
    std::size_t cell_width = 0;    // pixels per source symbol (a digit): widths are whole cells
};

// pixels: (height, width) row-major, 0 = background. Throws std::invalid_argument
// naming the problem: a wrong height, a width that is not whole cells, an empty
// image, or more patches than the model reads (max_patches).
inline std::vector<float> image_patches(std::span<const std::uint8_t> pixels, std::size_t width, std::size_t height,
                                        const image_patch_layout& layout, std::size_t max_patches) {
    auto fail = [](const std::string& what) { throw std::invalid_argument("kvdecode: image: " + what); };
    if (width == 0 || height == 0) fail("is empty (" + std::to_string(width) + " x " + std::to_string(height) + ")");
    if (pixels.size() != width * height)
        fail(std::to_string(pixels.size()) + " pixels given for " + std::to_string(width) + " x " + std::to_string(height));
    if (height != layout.image_height)
        fail("is " + std::to_string(height) + " pixels high; the model reads images " + std::to_string(layout.image_height) +
             " pixels high");
    if (width % layout.cell_width != 0)
        fail("is " + std::to_string(width) + " pixels wide; the model reads widths that are multiples of " +
             std::to_string(layout.cell_width));
    const std::size_t p = layout.patch_size, rows = height / p, columns = width / p;
    if (rows * columns > max_patches)
        fail("is " + std::to_string(width / layout.cell_width) + " cells wide (" + std::to_string(rows * columns) +
             " patches); the model reads at most " + std::to_string(max_patches) + " patches (" +
             std::to_string(max_patches / rows * p / layout.cell_width) + " cells)");
    std::vector<float> out;
    out.reserve(rows * columns * p * p);
    for (std::size_t c = 0; c < columns; ++c)
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t y = 0; y < p; ++y)
                for (std::size_t x = 0; x < p; ++x)
                    out.push_back(static_cast<float>(pixels[(r * p + y) * width + c * p + x]) / 255.0f);
    return out;
}

}  // namespace kvdecode
