#include "emfit/data/dataset.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"

namespace emfit {

double Dataset::TotalWeight() const {
  return weights.size() == 0 ? static_cast<double>(x.rows()) : weights.sum();
}

bool Dataset::HasMissing() const { return x.hasNaN(); }

namespace {

// One branch-free pass that the compiler vectorises: no value is infinite (NaN is missing).
bool NoInfinity(const double* v, Eigen::Index n) {
  bool ok = true;
  for (Eigen::Index i = 0; i < n; ++i) ok &= std::abs(v[i]) != HUGE_VAL;  // NaN != inf
  return ok;
}

}  // namespace

absl::Status Dataset::ValidateAllowingMissing(const char* what) const {
  // The scan that names the first bad value runs only when there is one.
  const bool finite = NoInfinity(x.data(), x.size());
  for (Eigen::Index i = 0; i < (finite ? 0 : x.rows()); ++i) {
    for (Eigen::Index j = 0; j < x.cols(); ++j) {
      const double v = x(i, j);
      if (std::isinf(v)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: value at row %d, column %d is %g; values must be finite (NaN marks a missing "
            "value)",
            what, i + 1, j + 1, v));
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
                            what, i + 1, weights[i]));
      }
    }
    if (!(weights.sum() > 0)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s.weights: the weights sum to 0; at least one must be positive", what));
    }
  }
  if (!sequence_offsets.empty()) {
    const size_t s = sequence_offsets.size() - 1;
    if (s == 0 || sequence_offsets.front() != 0 || sequence_offsets.back() != x.rows()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s.sequences: the sequence lengths must add up to the %d rows, got %d over %d "
          "sequences",
          what, x.rows(), s == 0 ? 0 : sequence_offsets.back() - sequence_offsets.front(), s));
    }
    for (size_t q = 0; q < s; ++q) {
      if (sequence_offsets[q + 1] <= sequence_offsets[q]) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s.sequences: sequence %d is empty; every sequence needs a row", what, q + 1));
      }
    }
  }
  if (!column_names.empty() && static_cast<Eigen::Index>(column_names.size()) != x.cols()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.column_names: expected 0 or %d names, got %d", what, x.cols(), column_names.size()));
  }
  return absl::OkStatus();
}

}  // namespace emfit
