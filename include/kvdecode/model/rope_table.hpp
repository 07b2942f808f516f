#pragma once
// RoPE rotation tables, computed once per model (in double, then rounded to T):
// cos/sin of (pos / linear_scale) * theta^(-2i/head_dim) / freq_factor[i] for every
// position and frequency index i (model_config's rope fields; factors 1 when absent).

#include <cmath>
#include <cstddef>

#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/model_config.hpp"
#include "kvdecode/simd/rope.hpp"

namespace kvdecode {

template <class T>
class rope_table {
public:
    explicit rope_table(const model_config& config)
        : layout_(config.rope), head_dim_(config.head_dim), half_(config.head_dim / 2),
          cos_(config.seq_len * half_), sin_(config.seq_len * half_) {
        for (std::size_t pos = 0; pos < config.seq_len; ++pos) {
            for (std::size_t i = 0; i < half_; ++i) {
                const double factor = config.rope_freq_factors.empty() ? 1.0 : config.rope_freq_factors[i];
                const double freq = std::pow(config.rope_theta, -2.0 * static_cast<double>(i) /
                                                                    static_cast<double>(head_dim_)) / factor;
                const double angle = static_cast<double>(pos) / config.rope_linear_scale * freq;
                cos_[pos * half_ + i] = static_cast<T>(std::cos(angle));
                sin_[pos * half_ + i] = static_cast<T>(std::sin(angle));
            }
        }
    }

    // Rotates `heads` consecutive head vectors (head_dim each) at position pos.
    void apply(T* x, std::size_t heads, std::size_t pos) const noexcept {
        const T* c = cos_.data() + pos * half_;
        const T* s = sin_.data() + pos * half_;
        for (std::size_t h = 0; h < heads; ++h, x += head_dim_) {
            if (layout_ == rope_layout::interleaved) simd::rope_interleaved(x, c, s, head_dim_);
            else simd::rope_rotate_half(x, c, s, head_dim_);
        }
    }

private:
    rope_layout layout_;
    std::size_t head_dim_, half_;
    aligned_buffer<T> cos_, sin_;  // (seq_len, head_dim / 2)
};

}  // namespace kvdecode
