#ifndef EMFIT_CORE_DATA_DATASET_H_
#define EMFIT_CORE_DATA_DATASET_H_

#include <Eigen/Core>

#include "absl/status/status.h"

namespace emfit {

// Row-major so that a block of rows is contiguous, as it arrives from the wire.
using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A table of observations: one row per observation. Owned by value; fits take it by value so a
// caller that no longer needs it can move it in and save a copy.
struct Dataset {
  RowMatrix x;              // N x d
  Eigen::VectorXd weights;  // empty (every row weighs 1) or N non-negative finite values

  Eigen::Index rows() const { return x.rows(); }
  Eigen::Index cols() const { return x.cols(); }
  // Sum of the row weights (N when unweighted).
  double TotalWeight() const;
  // Checks that every value is finite and the weights (if any) are valid; names the first
  // offending row and column. `what` prefixes messages (e.g. "data").
  absl::Status ValidateComplete(const char* what = "data") const;
  // Like ValidateComplete, but NaN (missing) is allowed; infinities are not.
  absl::Status ValidateAllowingMissing(const char* what = "data") const;
  // Whether any value is NaN.
  bool HasMissing() const;

 private:
  absl::Status Validate(const char* what, bool allow_nan) const;
};

}  // namespace emfit

#endif  // EMFIT_CORE_DATA_DATASET_H_
