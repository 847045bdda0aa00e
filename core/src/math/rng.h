// Seeded random streams (docs/algorithms.md §0, Determinism).
#ifndef EMFIT_CORE_MATH_RNG_H_
#define EMFIT_CORE_MATH_RNG_H_

#include <cstdint>
#include <random>

namespace emfit::internal {

// SplitMix64 finaliser: a bijective mixer used to derive independent seeds.
inline uint64_t Mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Purposes of random streams, so that streams for different uses never coincide.
enum class StreamPurpose : uint64_t {
  kRestart = 1,
  kInit = 2,
  kBlock = 3,
  kMcemIteration = 4,  // Monte Carlo EM: one stream per iteration, split per draw
  kMcemDraw = 5,
  kHistory = 6,  // stochastic maps: one stream per map
};

inline uint64_t DeriveSeed(uint64_t seed, uint64_t index, StreamPurpose purpose) {
  return Mix64(Mix64(seed ^ Mix64(static_cast<uint64_t>(purpose))) + index);
}

// A random stream with platform-independent draws (std::mt19937_64 output is specified by the
// standard; the distributions are not, so we map its output ourselves).
class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n), n >= 1 (Lemire's method would be faster; n is small here).
  uint64_t Below(uint64_t n) {
    const uint64_t limit = ~uint64_t{0} - (~uint64_t{0} % n);
    uint64_t v;
    do {
      v = engine_();
    } while (v >= limit);
    return v % n;
  }

 private:
  std::mt19937_64 engine_;
};

}  // namespace emfit::internal

#endif  // EMFIT_CORE_MATH_RNG_H_
