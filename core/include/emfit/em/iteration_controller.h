#ifndef EMFIT_CORE_EM_ITERATION_CONTROLLER_H_
#define EMFIT_CORE_EM_ITERATION_CONTROLLER_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "emfit/em/observer.h"
#include "emfit/em/options.h"
#include "emfit/em/summary.h"

namespace emfit {

// The Monte Carlo figures of one iteration of Monte Carlo EM (emfit/em/mcem.h).
struct MonteCarloStep {
  int64_t sample_size = 0;                                        // histories drawn for this step
  double improvement = std::numeric_limits<double>::quiet_NaN();  // mean increment of Q
  double improvement_se = std::numeric_limits<double>::quiet_NaN();  // its standard error
  // improvement + z_{1-gamma} improvement_se: the ascent rule's upper confidence bound.
  double upper_bound = std::numeric_limits<double>::quiet_NaN();
  bool update_accepted = true;
};

// Owns the EM loop's bookkeeping for one restart, independent of the model family: iteration
// count, timing, deadline, cancellation, the convergence rule, warnings, observer calls, the
// reason and message. The loop is
//
//   while (controller.ShouldStart()) {          // cancellation; the deadline after iteration 0
//     ll = EStep(theta_t)
//     if (!controller.Record(ll, elbo)) break;  // history, observer, max_iter / tol
//     MStep -> theta_{t+1}; elbo = L(q_t, theta_{t+1})
//   }
//
// so the last recorded log-likelihood belongs to the returned parameters (the "closing E-step"
// is the loop's last E-step). Not thread-safe; one controller per restart.
class IterationController {
 public:
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

  // `total_weight` W divides the log-likelihood for the tolerance test (mean log-likelihood).
  // `controls` must outlive the controller.
  IterationController(const FitOptions& options, const FitControls& controls, int restart,
                      double total_weight);

  // Checks cancellation, and the deadline once an iteration has been recorded, before an
  // E-step. Returns false (and sets the reason) when the loop must stop; the parameters of the
  // last recorded iteration are the result.
  bool ShouldStart();

  // Records l(theta_t) for the current iteration t, notifies the observer and applies the stop
  // rules. Returns true if an M-step should follow. A non-finite value is not recorded: it ends
  // the restart with kNumericalFailure. `elbo`: L(q_{t-1}, theta_t) (NaN if unknown);
  // `accelerated`: theta_t came from an extrapolation.
  bool Record(double log_likelihood, double elbo = kNaN, bool accelerated = false);

  // Records l(theta_t) of a Monte Carlo EM iteration with its Monte Carlo figures (passed to
  // the observer). The stop rule is max_iter and, when `ascent_tol` > 0, the ascent rule
  // (AscentBoundReached), otherwise the mean log-likelihood rule (ToleranceReached).
  bool RecordMonteCarlo(double log_likelihood, const MonteCarloStep& step, double ascent_tol);

  // Ends the restart because a step returned `status`: CANCELLED and DEADLINE_EXCEEDED map to
  // their reasons, FAILED_PRECONDITION (a numerical failure) to kNumericalFailure with the
  // status message; any other code is an error of the program, not an outcome: it is kept in
  // error() (the fit then fails with it) and the reason is kNumericalFailure.
  void StopOn(const absl::Status& status);

  // Ends the restart with `reason`; the last recorded parameters stand.
  void Fail(TerminationReason reason, std::string message);

  // Passes each distinct warning (code, component) of the restart to the observer once and
  // keeps it for the summary.
  void Warn(std::vector<FitWarning> warnings);

  // Named stop predicates; each sets the reason when it fires.
  bool Cancelled();
  bool DeadlinePassed();
  bool MaxIterReached();
  bool ToleranceReached();
  // Ascent-based MCEM's rule (Caffo, Jank & Jones 2005): the upper confidence bound of the
  // last step's improvement is below `tol`.
  bool AscentBoundReached(double upper_bound, double tol);

  bool stopped() const { return reason_.has_value(); }
  // Number of M-steps taken so far (recorded iterations - 1, at least 0).
  int iterations() const;
  const std::vector<double>& history() const { return history_; }
  // OK, or the error of the program that StopOn received.
  const absl::Status& error() const { return error_; }
  // Summary of the restart; call once the loop has ended.
  RestartSummary Finish(uint64_t seed) const;

 private:
  FitOptions options_;
  const FitControls& controls_;  // the caller's; outlives the controller
  int restart_;
  double total_weight_;
  absl::Time start_;
  std::vector<double> history_;
  std::optional<TerminationReason> reason_;
  std::string message_;
  std::optional<MonteCarloStep> monte_carlo_;  // set while RecordMonteCarlo runs
  double ascent_tol_ = 0;
  absl::Status error_;
  std::vector<FitWarning> warnings_;
  std::set<std::pair<std::string, int>> warned_;
};

}  // namespace emfit

#endif  // EMFIT_CORE_EM_ITERATION_CONTROLLER_H_
