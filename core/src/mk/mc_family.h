// The Mk model as a Monte Carlo EM family (emfit/em/mcem.h; docs/algorithms.md §4.5-4.6).
#ifndef EMFIT_CORE_MK_MC_FAMILY_H_
#define EMFIT_CORE_MK_MC_FAMILY_H_

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "emfit/em/observer.h"
#include "emfit/em/options.h"
#include "emfit/mk/mk.h"
#include "mk/family.h"
#include "mk/model.h"
#include "mk/pruning.h"
#include "mk/sampling.h"

namespace emfit::mk::internal {

// Draws histories under theta_t: node states from their joint posterior, then either
//  - Rao-Blackwellised: nothing more; the branch statistics are the exact expectations given
//    the drawn end states, B_e = (1/m) sum_s e_a e_b^T / P_ab(t_e) and one integral per branch
//    (§4.5), and the per-draw increments come from one integral of W per branch, whose
//    (a, b) entry divided by P_ab is E[increment on e | a, b];
//  - plain: a path on every branch (BranchSampler) and its tallies N^(s), T^(s).
class MkMonteCarloFamily {
 public:
  using Params = MkParams;
  struct Sample {
    MkParams theta;
    std::unique_ptr<Generator> generator;
    std::unique_ptr<BranchSampler> sampler;  // plain estimator only
    Upward up;
    int64_t size = 0;
    std::vector<uint16_t> states;  // size x (N*C) node states, draw-major
    // Plain: per draw (column) k*k jump counts (column-major), then k dwelling times.
    Eigen::MatrixXd tallies;
    Eigen::MatrixXd pairs;        // Rao-Blackwellised: k x (N*k) end-state counts per branch
    Eigen::VectorXd root_counts;  // k: root states over draws and characters
  };

  MkMonteCarloFamily(const MkModel& model, bool rao_blackwell, PathSampler sampler)
      : model_(model), rao_blackwell_(rao_blackwell), sampler_(sampler) {}

  Sample NewSample() const { return Sample{}; }
  double total_weight() const { return model_.total_weight(); }
  bool exact_log_likelihood() const { return true; }
  absl::StatusOr<double> StartSample(const Params& theta, const FitControls& controls,
                                     Sample* sample) const;
  absl::Status Draw(int64_t count, uint64_t seed, int iteration, const FitControls& controls,
                    Sample* sample) const;
  int64_t SampleSize(const Sample& sample) const { return sample.size; }
  absl::Status MStep(const Sample& sample, Params* next) const;
  absl::Status Increments(const Sample& sample, const Params& next, const FitControls& controls,
                          Eigen::VectorXd* delta) const;
  std::vector<FitWarning> Inspect(const Sample&, const Params& next) const {
    return model_.Inspect(next);
  }
  int64_t NumFreeParameters() const { return model_.NumFreeParameters(); }

  // The Monte Carlo covariance of the M-step's rates `next` from this sample (delta method on
  // the ratios theta_p = sum N_p / sum T_p over the draws, from z_p^s = N_p^s - theta_p T_p^s;
  // per-draw N^s, T^s are the path tallies, or their expectations given the draw's node states
  // when Rao-Blackwellised).
  absl::Status RateCovariance(const Sample& sample, const Params& next, const FitControls& controls,
                              Eigen::MatrixXd* cov) const;
  // The Monte Carlo standard errors of MCEM's rates near its fixed point: with one-step
  // covariance `cov` and J the exact EM map's Jacobian at `at` (central differences, 2P exact
  // E-steps), the stationary covariance V = J V J^T + cov of the noisy iteration
  // theta_{t+1} - theta* = J (theta_t - theta*) + e_t. Wider than the one-step errors where EM
  // is slow (J's eigenvalues near 1).
  absl::StatusOr<Eigen::VectorXd> FixedPointStandardErrors(const Eigen::MatrixXd& cov,
                                                           const Params& at,
                                                           const FitControls& controls) const;

  // Monte Carlo estimates of E[N], E[T] and the root's state counts from the pooled draws.
  absl::Status Expectations(const Sample& sample, const FitControls& controls, Eigen::MatrixXd* n,
                            Eigen::VectorXd* t, Eigen::VectorXd* root) const;

 private:
  const MkModel& model_;
  bool rao_blackwell_;
  PathSampler sampler_;
};

}  // namespace emfit::mk::internal

#endif  // EMFIT_CORE_MK_MC_FAMILY_H_
