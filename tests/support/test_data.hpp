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

// max |a - b| / max(1, |b|): relative where logits are large, absolute near zero.
template <class A, class B>
double max_relative_error(std::span<const A> a, std::span<const B> b) {
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double ref = static_cast<double>(b[i]);
        worst = std::max(worst, std::abs(static_cast<double>(a[i]) - ref) / std::max(1.0, std::abs(ref)));
    }
    return worst;
}

template <class T>
int argmax(std::span<const T> v) {
    return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace kvtest
