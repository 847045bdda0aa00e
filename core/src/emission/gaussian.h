// Gaussian emissions: the mixture's components with log weights 0 (docs/algorithms.md §1, §2,
// §3). Densities come from the mixture's tiled kernels (gmm/kernels.h) and, for rows with
// missing values, from the exact marginal over the observed coordinates (gmm/missing.h); the
// statistics are the mixture's, with the state probabilities as responsibilities, and the
// M-step is the mixture's. There is no other Gaussian in emfit. See emission.h for the contract.
#ifndef EMFIT_CORE_EMISSION_GAUSSIAN_H_
#define EMFIT_CORE_EMISSION_GAUSSIAN_H_

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "emfit/data/dataset.h"
#include "emfit/gmm/gmm.h"
#include "emfit/hmm/hmm.h"
#include "gmm/components.h"
#include "gmm/kernels.h"
#include "gmm/missing.h"
#include "gmm/stats.h"

namespace emfit::internal {

class GaussianEmission {
 public:
  using Params = hmm::GaussianEmissions;
  static constexpr bool kScaledDensities = false;  // see emission.h
  struct Stats {
    gmm::internal::GmmStats moments;  // a scatter per state for full and tied covariance
    Eigen::MatrixXd shift;            // k x d: the moments are about the E-step's means
    void Add(const Stats& other) { moments.Add(other.moments); }
  };
  struct Scratch {
    gmm::internal::KernelScratch kernel;
    gmm::internal::MissingScratch missing;
    Eigen::MatrixXd a;  // rows x k, column-major: log-densities or state probabilities
    std::vector<gmm::internal::PatternRun> runs;  // of the rows at hand, rows with an observation
    std::vector<std::pair<int64_t, int64_t>> empty;  // [begin, end) of rows with none
  };
  struct Evaluator {
    gmm::GmmParams params;  // the emissions as a mixture with weights 1
    gmm::internal::Components components;
    std::unique_ptr<gmm::internal::PatternCache> cache;  // thread-safe
  };

  // The data are finite or NaN (Dataset::ValidateAllowingMissing); INVALID_ARGUMENT if a column
  // has no observed value (its parameters would not be identifiable).
  static absl::Status ValidateData(const Dataset& data);

  GaussianEmission(const Dataset& data, int k, gmm::CovarianceType type, double reg_covar);

  int k() const { return k_; }
  int dim() const { return d_; }
  gmm::CovarianceType covariance_type() const { return type_; }
  absl::StatusOr<std::unique_ptr<const Evaluator>> Prepare(const Params& params) const;
  void ResetStats(const Evaluator& e, Stats* stats) const;
  absl::Status LogDensities(const Evaluator& e, int64_t begin, int64_t end, double* g,
                            Scratch* scratch) const;
  absl::Status Accumulate(const Evaluator& e, int64_t begin, int64_t end, const double* gamma,
                          Stats* stats, Scratch* scratch) const;
  absl::Status MStep(const Stats& stats, const Params& previous, Params* next) const;
  double ExpectedLogDensity(const Stats& stats, const Params& params) const;
  Eigen::VectorXd StateMass(const Stats& stats) const { return stats.moments.nk; }
  int64_t PackSize() const;
  void Pack(const Params& params, double* out) const;
  absl::StatusOr<Params> Unpack(const double* in, const Params& like) const;
  int64_t NumFreeParameters() const;

  // Checks `params` against k, d and the covariance type; messages name `what`.
  absl::Status CheckShape(const Params& params, absl::string_view what) const;
  // The emissions as a mixture with equal weights (for the mixture's functions).
  static gmm::GmmParams AsMixture(const Params& params);

 private:
  // Fills scratch->runs and scratch->empty for rows [begin, end) (positions relative to
  // begin); returns true if every row is complete.
  bool Runs(int64_t begin, int64_t end, Scratch* scratch) const;
  // Points scratch->kernel at rows [begin, end) held feature-major (complete rows).
  void ToFeatureMajor(int64_t begin, int64_t end, Scratch* scratch) const;

  const Dataset& data_;
  int k_;
  int d_;
  gmm::CovarianceType type_;
  double reg_covar_;
  // With missing values: the runs of every block of kBlockRows rows, found once.
  std::unique_ptr<const gmm::internal::PatternLayout> patterns_;
};

}  // namespace emfit::internal

#endif  // EMFIT_CORE_EMISSION_GAUSSIAN_H_
