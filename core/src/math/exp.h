// exp over arrays of non-positive arguments, for the scaled densities of forward-backward
// (docs/algorithms.md §3): exp(x) to within 2 ulp for -706.6 <= x <= 0, and exactly 0 below
// (Eigen's vectorised exp returns about 5e-309 for every argument below -709.78, -inf included,
// and its SSE2 version, a rational approximation with a division, an emulated floor and a
// four-multiply ldexp, is 3 times slower than this one).
#ifndef EMFIT_CORE_MATH_EXP_H_
#define EMFIT_CORE_MATH_EXP_H_

#include <cstdint>

namespace emfit::internal {

// Arguments below this give 0 (about e^-706.6: the result's exponent stays normal).
inline constexpr double kMinExpArgument = -706.0;

// v[i] <- exp(v[i]) for v[i] <= 0 (NaN stays NaN); 0 for v[i] < kMinExpArgument.
void ExpNonPositive(double* v, int64_t n);

}  // namespace emfit::internal

#endif  // EMFIT_CORE_MATH_EXP_H_
