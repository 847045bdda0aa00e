#ifndef EMFIT_CORE_EM_OBSERVER_H_
#define EMFIT_CORE_EM_OBSERVER_H_

#include <cstdint>
#include <limits>
#include <string>

#include "emfit/em/summary.h"

namespace emfit {

// Progress of one EM iteration.
struct IterationEvent {
  int restart = 0;
  int iteration = 0;            // 0: starting parameters; t: after t M-steps
  double log_likelihood = 0.0;  // observed-data log-likelihood l(theta_t) at these parameters
  // L(q_{t-1}, theta_t): the evidence lower bound of the previous E-step's posterior at these
  // parameters (algorithms.md §6), so l(theta_{t-1}) <= elbo <= l(theta_t) for exact EM without
  // regularisation; NaN at iteration 0 and when no M-step produced these parameters (a SQUAREM
  // extrapolation kept without a stabilising step).
  double elbo = std::numeric_limits<double>::quiet_NaN();
  // KL(q_{t-1} || p(Z | X, theta_t)) = log_likelihood - elbo >= 0; NaN when elbo is.
  double kl = std::numeric_limits<double>::quiet_NaN();
  double change = 0.0;           // change of the mean log-likelihood (NaN at iteration 0)
  double elapsed_seconds = 0.0;  // since the restart started
  bool accelerated = false;
  // Monte Carlo EM only (0 / NaN / true otherwise): the histories simulated for this iteration's
  // E-step, the estimated improvement of the expected complete-data log-likelihood and its
  // standard error, and whether the update was accepted by the ascent test.
  int64_t sample_size = 0;
  double improvement = std::numeric_limits<double>::quiet_NaN();
  double improvement_se = std::numeric_limits<double>::quiet_NaN();
  bool update_accepted = true;
};

// Receives progress of a fit. Calls come from the fitting thread, in order; implementations
// must be fast and must not block. Stopping a fit goes through the CancellationToken, never
// through the observer. With a thread pool in FitControls and n_init > 1, restarts run
// concurrently and call the observer from several threads: it must then be thread-safe (each
// restart's own calls stay in order; `restart` in the events tells them apart).
class FitObserver {
 public:
  virtual ~FitObserver() = default;
  virtual void OnIteration(const IterationEvent& /*event*/) {}
  virtual void OnWarning(const FitWarning& /*warning*/) {}
  virtual void OnRestartDone(const RestartSummary& /*summary*/) {}
};

}  // namespace emfit

#endif  // EMFIT_CORE_EM_OBSERVER_H_
