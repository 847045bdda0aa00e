#ifndef EMFIT_CORE_DATA_DATASET_H_
#define EMFIT_CORE_DATA_DATASET_H_

#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace emfit {

// Row-major so that a block of rows is contiguous, as it arrives from the wire.
using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A table of observations: one row per observation. Owned by value; fits take it by value so a
// caller that no longer needs it can move it in and save a copy.
struct Dataset {
  RowMatrix x;              // N x d; NaN marks a missing value
  Eigen::VectorXd weights;  // empty (every row weighs 1) or N non-negative finite values
  // Sequence boundaries (hidden Markov models): empty, or S+1 offsets 0 = o_0 < o_1 < ... <
  // o_S = N, sequence s being rows [o_s, o_{s+1}). Empty means the rows are independent
  // (mixtures) or one sequence (HMMs).
  std::vector<int64_t> sequence_offsets = {};
  // Names of the columns (empty, or d names), recorded in fitted models and compared when a
  // model is applied to other data.
  std::vector<std::string> column_names = {};

  Eigen::Index rows() const { return x.rows(); }
  Eigen::Index cols() const { return x.cols(); }
  // Sum of the row weights (N when unweighted).
  double TotalWeight() const;
  // Checks that every value is finite or NaN (missing), the weights (if any) are valid, the
  // sequence offsets (if any) are and the names (if any) number d; names the first offending
  // row, column or sequence, 1-based. `what` prefixes messages (e.g. "data").
  absl::Status ValidateAllowingMissing(const char* what = "data") const;
  // Whether any value is NaN.
  bool HasMissing() const;
};

}  // namespace emfit

#endif  // EMFIT_CORE_DATA_DATASET_H_
