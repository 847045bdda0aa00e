#include "emfit/data/dataset.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"

namespace emfit {

double Dataset::TotalWeight() const {
  return weights.size() == 0 ? static_cast<double>(x.rows()) : weights.sum();
}

bool Dataset::HasMissing() const { return x.hasNaN(); }

absl::Status Dataset::ValidateAllowingMissing(const char* what) const {
  return Validate(what, /*allow_nan=*/true);
}

absl::Status Dataset::ValidateComplete(const char* what) const {
  return Validate(what, /*allow_nan=*/false);
}

namespace {

// One branch-free pass that the compiler vectorises: every value finite (or NaN, if allowed).
bool AllFinite(const double* v, Eigen::Index n, bool allow_nan) {
  constexpr double kMax = std::numeric_limits<double>::max();
  bool ok = true;
  if (allow_nan) {
    for (Eigen::Index i = 0; i < n; ++i) ok &= std::abs(v[i]) != HUGE_VAL;  // NaN != inf
  } else {
    for (Eigen::Index i = 0; i < n; ++i) ok &= std::abs(v[i]) <= kMax;  // false for NaN
  }
  return ok;
}

}  // namespace

absl::Status Dataset::Validate(const char* what, bool allow_nan) const {
  // The scan that names the first bad value runs only when there is one.
  const bool finite = AllFinite(x.data(), x.size(), allow_nan);
  for (Eigen::Index i = 0; i < (finite ? 0 : x.rows()); ++i) {
    for (Eigen::Index j = 0; j < x.cols(); ++j) {
      const double v = x(i, j);
      if (allow_nan && std::isnan(v)) continue;
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: value at row %d, column %d is %g; values must be finite%s", what, i, j, v,
            allow_nan ? " (NaN marks a missing value)"
                      : " (missing values are not supported here)"));
      }
    }
  }
  if (weights.size() != 0) {
    if (weights.size() != x.rows()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s.weights: expected %d values (one per row), got %d", what, x.rows(), weights.size()));
    }
    for (Eigen::Index i = 0; i < weights.size(); ++i) {
      if (!std::isfinite(weights[i]) || weights[i] < 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s.weights: weight of row %d is %g; weights must be finite and >= 0",
                            what, i, weights[i]));
      }
    }
    if (!(weights.sum() > 0)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s.weights: the weights sum to 0; at least one must be positive", what));
    }
  }
  return absl::OkStatus();
}

}  // namespace emfit
