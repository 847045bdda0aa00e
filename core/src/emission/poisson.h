// Poisson emissions (docs/algorithms.md §3): state j emits d independent counts with rates
// lambda_jc; a missing count (NaN) contributes a factor 1 for its column. See emission.h for
// the contract.
#ifndef EMFIT_CORE_EMISSION_POISSON_H_
#define EMFIT_CORE_EMISSION_POISSON_H_

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "emfit/data/dataset.h"
#include "emfit/hmm/hmm.h"

namespace emfit::internal {

class PoissonEmission {
 public:
  using Params = hmm::PoissonEmissions;
  static constexpr bool kScaledDensities = false;  // see emission.h
  // Rates are floored here after each M-step (algorithms.md §3).
  static constexpr double kMinRate = 1e-10;

  struct Stats {
    RowMatrix sums;              // d x k: sum_t w_t gamma_tj x_tc over rows observing column c
    RowMatrix mass;              // d x k: sum_t w_t gamma_tj over rows observing column c
    Eigen::VectorXd state_mass;  // k: sum_t w_t gamma_tj over rows observing any column
    double log_factorials = 0;   // sum_t w_t sum_c ln(x_tc!) over observed counts
    void Add(const Stats& other);
  };
  struct Scratch {};
  struct Evaluator {
    RowMatrix log_rates;  // d x k
    RowMatrix rates;      // d x k
  };

  // INVALID_ARGUMENT unless every value is NaN or a non-negative integer (at most 2^53),
  // naming the first bad row and column (1-based).
  static absl::Status ValidateData(const Dataset& data);

  PoissonEmission(const Dataset& data, int k);

  int k() const { return k_; }
  int dim() const { return d_; }
  absl::StatusOr<std::unique_ptr<const Evaluator>> Prepare(const Params& params) const;
  void ResetStats(const Evaluator&, Stats* stats) const;
  absl::Status LogDensities(const Evaluator& e, int64_t begin, int64_t end, double* g,
                            Scratch*) const;
  absl::Status Accumulate(const Evaluator& e, int64_t begin, int64_t end, const double* gamma,
                          Stats* stats, Scratch*) const;
  absl::Status MStep(const Stats& stats, const Params& previous, Params* next) const;
  double ExpectedLogDensity(const Stats& stats, const Params& params) const;
  Eigen::VectorXd StateMass(const Stats& stats) const { return stats.state_mass; }
  int64_t PackSize() const { return static_cast<int64_t>(k_) * d_; }
  void Pack(const Params& params, double* out) const;
  absl::StatusOr<Params> Unpack(const double* in, const Params& like) const;
  int64_t NumFreeParameters() const { return static_cast<int64_t>(k_) * d_; }

  // Checks `params` against k and d; messages name `what`.
  absl::Status CheckShape(const Params& params, absl::string_view what) const;

 private:
  const Dataset& data_;
  int k_;
  int d_;
  bool missing_;
  // Per row: sum over its observed counts of ln(x!), the part of ln f_j(x) that no state
  // changes (computed once: lgamma is slow).
  Eigen::VectorXd log_factorials_;
};

}  // namespace emfit::internal

#endif  // EMFIT_CORE_EMISSION_POISSON_H_
