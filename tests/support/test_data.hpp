#pragma once
// Where the workplace's test data lives (../shared beside the project), and the
// comparisons the model tests share.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#ifndef KVDECODE_SHARED_DIR
#define KVDECODE_SHARED_DIR "../shared"
#endif

namespace kvtest {

// The path of a file under ../shared, or nullopt (with a warning saying so) when
// the folder is absent, as on a user's fresh clone: the calling test then skips.
inline std::optional<std::filesystem::path> shared_file(const std::string& relative) {
    const std::filesystem::path p = std::filesystem::path(KVDECODE_SHARED_DIR) / relative;
    if (std::filesystem::exists(p)) return p;
    WARN("skipped: test data " << p.string() << " is not present (it lives in ../shared beside the project)");
    return std::nullopt;
}

inline std::string read_text(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// Relative error of a logits row: max |a - b| / max(1, max |b|), the infinity-norm
// relative error (floored at 1 so rows of tiny logits are held to an absolute bound).
// Per-element relative error would be the wrong yardstick for float32: logits near 0
// carry the rounding of the whole row (in float32, the no-cache reference itself is
// 1e-4 away from a float64 forward on stories260K at position 190, logits up to 18.5).
template <class A, class B>
double max_relative_error(std::span<const A> a, std::span<const B> b) {
    double worst = 0, scale = 1;
    for (std::size_t i = 0; i < a.size(); ++i) {
        worst = std::max(worst, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
        scale = std::max(scale, std::abs(static_cast<double>(b[i])));
    }
    return worst / scale;
}

template <class T>
int argmax(std::span<const T> v) {
    return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace kvtest
