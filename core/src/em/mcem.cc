#include "emfit/em/mcem.h"

#include <cmath>

#include "absl/strings/str_format.h"
#include "math/rng.h"

namespace emfit {

absl::Status McemOptions::Validate() const {
  if (initial_sample_size < 2 || max_sample_size < initial_sample_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "mcem.initial_sample_size, max_sample_size: need 2 <= initial <= max, got %d and %d",
        initial_sample_size, max_sample_size));
  }
  auto level = [](double v) { return v > 0 && v < 0.5; };
  if (!level(alpha) || !level(beta) || !level(gamma)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "mcem.alpha, beta, gamma: each must be in (0, 0.5), got %g, %g, %g", alpha, beta, gamma));
  }
  if (!std::isfinite(tol) || tol < 0 || (ascent_stop && tol == 0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "mcem.tol: must be finite and > 0 (>= 0 without the ascent rule), got %g", tol));
  }
  if (!(kappa >= 1) || !std::isfinite(kappa)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("mcem.kappa: must be finite and >= 1, got %g", kappa));
  }
  if (!(guard >= 0)) {
    return absl::InvalidArgumentError(absl::StrFormat("mcem.guard: must be >= 0, got %g", guard));
  }
  return absl::OkStatus();
}

absl::Status CheckMcemOptions(const FitOptions& options, const McemOptions& mcem) {
  if (options.acceleration != Acceleration::kNone) {
    return absl::InvalidArgumentError(
        "options.acceleration: SQUAREM cannot be combined with Monte Carlo EM (the Monte Carlo "
        "noise breaks its extrapolation); use acceleration none or the exact E-step");
  }
  return mcem.Validate();
}

uint64_t McemDrawSeed(uint64_t seed, int iteration, int64_t draw) {
  const uint64_t stream = internal::DeriveSeed(seed, static_cast<uint64_t>(iteration),
                                               internal::StreamPurpose::kMcemIteration);
  return internal::DeriveSeed(stream, static_cast<uint64_t>(draw),
                              internal::StreamPurpose::kMcemDraw);
}

namespace internal {

double NormalQuantile(double p) {
  // Bisection on Phi(z) = erfc(-z / sqrt 2) / 2, to full double precision; called a few
  // times per fit.
  double lo = -40, hi = 40;
  for (int i = 0; i < 200 && hi - lo > 1e-15; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return 0.5 * (lo + hi);
}

}  // namespace internal

}  // namespace emfit
