// The Mk model as an EM family (exact E-step; see emfit/em/driver.h for the contract) and
// what it shares with the Monte Carlo family (docs/algorithms.md §4.3-4.4).
#ifndef EMFIT_CORE_MK_FAMILY_H_
#define EMFIT_CORE_MK_FAMILY_H_

#include <Eigen/Core>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "emfit/em/observer.h"
#include "emfit/em/options.h"
#include "emfit/mk/mk.h"
#include "mk/model.h"
#include "mk/pruning.h"

namespace emfit::mk::internal {

// A fit's fixed parts: data, rate structure, root prior, rate bounds; the conversions between
// rates and parameters, the closed-form M-step and the complete-data log-likelihood. Shared by
// the exact and the Monte Carlo family. Immutable; thread-safe.
class MkModel {
 public:
  // `data` must outlive the model. q_min/q_max: 0 for the defaults (1e-10 s, 1e4 s with s = 1
  // / mean branch length).
  MkModel(const TreeData& data, RateLayout layout, std::vector<std::string> state_names,
          RootPrior root, Eigen::VectorXd root_probs, double q_min, double q_max,
          IntegralMethod method = IntegralMethod::kAuto);

  const TreeData& data() const { return data_; }
  const RateLayout& layout() const { return layout_; }
  int k() const { return layout_.k; }
  double q_min() const { return q_min_; }
  double q_max() const { return q_max_; }
  RootPrior root() const { return root_; }
  // W = tips used x characters (the tolerance's divisor and BIC's n).
  double total_weight() const;
  int64_t NumFreeParameters() const { return layout_.num_rates; }

  // Parameters with these rates, each clamped to [q_min, q_max].
  MkParams ParamsFromRates(const Eigen::VectorXd& rates) const;
  Eigen::VectorXd RatesOf(const MkParams& params) const { return layout_.Rates(params.q); }
  Generator MakeGenerator(const MkParams& params) const;
  // Pruning at `params` (the log-likelihood is up->total).
  absl::Status Prune(const MkParams& params, const Generator& generator,
                     const FitControls& controls, Upward* up) const;

  // The closed-form rates from expected counts: theta_p = sum N_ij / sum T_i over the cells of
  // rate p (docs/algorithms.md §4.3), clamped to the bounds.
  Eigen::VectorXd RatesFromCounts(const Eigen::MatrixXd& n, const Eigen::VectorXd& t) const;
  // E[ln f(history | params)] given expected counts and the root state's expected counts:
  // sum_i root_i ln rho_i + sum_{i != j} N_ij ln q_ij - sum_i q_i T_i (0 ln 0 = 0).
  double CompleteLogLikelihood(const Eigen::MatrixXd& n, const Eigen::VectorXd& t,
                               const Eigen::VectorXd& root, const MkParams& params) const;
  // The M-step from `current`: the closed form; when the root prior depends on Q (stationary),
  // an ascent from the closed form on the whole expected complete-data log-likelihood, kept
  // only if it rose above `current`'s (generalised EM), so the log-likelihood never falls.
  MkParams MStep(const Eigen::MatrixXd& n, const Eigen::VectorXd& t, const Eigen::VectorXd& root,
                 const MkParams& current) const;
  // Rates at a bound (warning "rate_at_bound", component = the rate's 0-based index).
  std::vector<FitWarning> Inspect(const MkParams& params) const;
  // A starting point: every rate k / total branch length, or for restart > 0 that times a
  // seeded log-uniform factor in [1/10, 10].
  MkParams Start(int restart, uint64_t seed) const;

 private:
  const TreeData& data_;
  RateLayout layout_;
  std::vector<std::string> state_names_;
  RootPrior root_;
  Eigen::VectorXd root_probs_;
  double q_min_, q_max_;
  IntegralMethod method_;
};

// Exact EM: E-step = pruning + outside pass + one block exponential per branch.
class MkFamily {
 public:
  using Params = MkParams;
  struct Stats {
    Eigen::MatrixXd n;     // k x k expected transitions
    Eigen::VectorXd t;     // k expected dwelling times
    Eigen::VectorXd root;  // k expected root states (summed over characters)
    Upward up;             // scratch of the pruning, reused every iteration
    // Rates whose bound MStep has tried once (see MStep); one Stats serves one restart.
    mutable std::vector<char> probed;
  };

  explicit MkFamily(const MkModel& model) : model_(model) {}

  Stats NewStats() const;
  double total_weight() const { return model_.total_weight(); }
  absl::StatusOr<double> EStep(const Params& params, const FitControls& controls,
                               Stats* stats) const;
  // The closed-form (or generalised) M-step; then, once per rate and restart, when EM has
  // stalled on a rate (|change of its log| < 1e-6) that still moves towards a bound, the bound
  // itself is tried and kept if it raises the log-likelihood above the update's: EM creeps
  // towards an MLE at infinity (maximally mixed tips, docs/algorithms.md T31) or at 0 at a rate
  // that vanishes exponentially slowly, and this lands it on the bound, where it is flagged.
  absl::Status MStep(const Stats& stats, Params* params) const;
  double ExpectedLogJoint(const Stats& stats, const Params& params) const;
  std::vector<FitWarning> Inspect(const Stats& stats, const Params& params) const;
  // Log rates (docs/algorithms.md §5.1).
  Eigen::VectorXd Pack(const Params& params) const;
  absl::StatusOr<Params> Unpack(const Eigen::VectorXd& x, const Params& like) const;
  int64_t NumFreeParameters() const { return model_.NumFreeParameters(); }

 private:
  const MkModel& model_;
};

}  // namespace emfit::mk::internal

#endif  // EMFIT_CORE_MK_FAMILY_H_
