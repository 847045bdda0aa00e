#include "emfit/data/dataset.h"

#include <cmath>

#include "absl/strings/str_format.h"

namespace emfit {

double Dataset::TotalWeight() const {
  return weights.size() == 0 ? static_cast<double>(x.rows()) : weights.sum();
}

absl::Status Dataset::ValidateComplete(const char* what) const {
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    for (Eigen::Index j = 0; j < x.cols(); ++j) {
      const double v = x(i, j);
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: value at row %d, column %d is %g; values must be finite (missing values are "
            "not supported by this model)",
            what, i, j, v));
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
