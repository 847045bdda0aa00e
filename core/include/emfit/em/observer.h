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
  int iteration = 0;             // 0: starting parameters; t: after t M-steps
  double log_likelihood = 0.0;   // observed-data log-likelihood at these parameters
  double elbo = 0.0;             // evidence lower bound; equals log_likelihood for exact EM
  double change = 0.0;           // change of the mean log-likelihood (NaN at iteration 0)
  double elapsed_seconds = 0.0;  // since the restart started
  bool accelerated = false;
  // Monte Carlo EM (emfit/em/mcem.h): the number of simulated histories behind this step, the
  // estimated improvement of the expected complete-data log-likelihood and its standard
  // error, and whether the update was accepted (0, NaN, NaN, true for exact EM and at
  // iteration 0).
  int64_t sample_size = 0;
  double improvement = std::numeric_limits<double>::quiet_NaN();
  double improvement_se = std::numeric_limits<double>::quiet_NaN();
  bool update_accepted = true;
};

// Something the user should know that does not stop the fit.
struct FitWarning {
  std::string code;     // stable machine-readable code, e.g. "empty_component"
  std::string message;  // human-readable text
  int restart = 0;
  int component = -1;  // the component (or state) concerned, -1 if none
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
