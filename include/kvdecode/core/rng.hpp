#pragma once
// A small, fast, seedable generator (xoshiro256**, seeded through splitmix64) with
// the same stream on every platform, unlike std:: distributions.

#include <cmath>
#include <cstdint>

namespace kvdecode {

class rng {
public:
    explicit rng(std::uint64_t seed = 0) noexcept {
        for (auto& word : state_) word = splitmix64(seed);
    }

    std::uint64_t next_u64() noexcept {
        const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
        const std::uint64_t t = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= t;
        state_[3] = rotl(state_[3], 45);
        return result;
    }

    // Uniform in [0, 1), 53 random bits.
    double uniform() noexcept { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

    // Standard normal by Box-Muller (one value per call; simplicity over speed).
    double normal() noexcept {
        const double u1 = 1.0 - uniform();  // (0, 1]: log is finite
        const double u2 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
    static std::uint64_t splitmix64(std::uint64_t& x) noexcept {
        std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

    std::uint64_t state_[4];
};

}  // namespace kvdecode
