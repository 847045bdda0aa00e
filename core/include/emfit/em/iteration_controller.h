#ifndef EMFIT_CORE_EM_ITERATION_CONTROLLER_H_
#define EMFIT_CORE_EM_ITERATION_CONTROLLER_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

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
// count, timing, deadline, cancellation, the convergence rule, observer calls, the reason and
// message. The loop is
//
//   while (controller.ShouldStart()) {      // cancellation / deadline
//     ll = EStep(theta_t)
//     if (!controller.Record(ll)) break;    // history, observer, max_iter / tol
//     MStep -> theta_{t+1}
//   }
//
// so the last recorded log-likelihood belongs to the returned parameters (the "closing E-step"
// is the loop's last E-step). Not thread-safe; one controller per restart.
class IterationController {
 public:
  // `total_weight` divides the log-likelihood for the tolerance test (mean log-likelihood).
  IterationController(const FitOptions& options, const FitControls& controls, int restart,
                      double total_weight);

  // Checks cancellation and the deadline before an E-step. Returns false (and sets the reason)
  // when the loop must stop; the parameters of the last recorded iteration are the result.
  bool ShouldStart();

  // Records l(theta_t) for the current iteration t, notifies the observer and applies the stop
  // rules. Returns true if an M-step should follow. A non-finite value is not recorded: it ends
  // the restart with kNumericalFailure. `accelerated`: theta_t came from an extrapolation.
  bool Record(double log_likelihood, bool accelerated = false);

  // Records l(theta_t) of a Monte Carlo EM iteration with its Monte Carlo figures (passed to
  // the observer). The stop rule is max_iter and, when `ascent_tol` > 0, the ascent rule
  // (AscentBoundReached), otherwise the mean log-likelihood rule (ToleranceReached).
  bool RecordMonteCarlo(double log_likelihood, const MonteCarloStep& step, double ascent_tol);

  // Ends the restart because a step returned `status`: CANCELLED and DEADLINE_EXCEEDED map to
  // their reasons, anything else to kNumericalFailure with the status message.
  void StopOn(const absl::Status& status);

  // Ends the restart with a failure (e.g. numerical); the last recorded parameters stand.
  void Fail(TerminationReason reason, std::string message);

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
  // Summary of the restart; call once the loop has ended.
  RestartSummary Finish(uint64_t seed) const;

 private:
  FitOptions options_;
  FitControls controls_;
  int restart_;
  double total_weight_;
  absl::Time start_;
  std::vector<double> history_;
  std::optional<TerminationReason> reason_;
  std::string message_;
  std::optional<MonteCarloStep> monte_carlo_;  // set while RecordMonteCarlo runs
  double ascent_tol_ = 0;
};

}  // namespace emfit

#endif  // EMFIT_CORE_EM_ITERATION_CONTROLLER_H_
