#ifndef EMFIT_CORE_EM_DRIVER_H_
#define EMFIT_CORE_EM_DRIVER_H_

#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "emfit/em/iteration_controller.h"
#include "emfit/em/options.h"
#include "emfit/em/summary.h"

namespace emfit {

// Parameters and summary of one EM restart.
template <class Params>
struct RestartResult {
  Params params;
  RestartSummary summary;
};

// Runs EM for one restart from `params`. The family contract (shared by every model family):
//
//   typename Family::Params, typename Family::Stats
//   Stats NewStats() const;
//   double total_weight() const;                              // for the mean log-likelihood
//   absl::StatusOr<double> EStep(const Params&, const FitControls&, Stats*) const;
//       // expected sufficient statistics and l(theta); CANCELLED / DEADLINE_EXCEEDED when the
//       // controls fired between row blocks; other errors are numerical failures
//   absl::Status MStep(const Stats&, Params*) const;          // errors are numerical failures
//   std::vector<FitWarning> Inspect(const Stats&, const Params&) const;  // after each M-step
//
// Each distinct warning (code, component) is passed to the observer once per restart.
// The returned parameters are those whose log-likelihood was recorded last, so a cancelled or
// failed restart still returns a valid model with a matching history.
template <class Family>
RestartResult<typename Family::Params> RunEm(const Family& family, typename Family::Params params,
                                             const FitOptions& options, const FitControls& controls,
                                             int restart, uint64_t seed) {
  IterationController controller(options, controls, restart, family.total_weight());
  typename Family::Stats stats = family.NewStats();
  typename Family::Params previous = params;  // parameters of the last recorded iteration
  bool current_recorded = false;
  std::set<std::pair<std::string, int>> warned;
  while (controller.ShouldStart()) {
    current_recorded = false;
    absl::StatusOr<double> ll = family.EStep(params, controls, &stats);
    if (!ll.ok()) {
      controller.StopOn(ll.status());
      break;
    }
    const size_t recorded_before = controller.history().size();
    const bool go_on = controller.Record(*ll);
    current_recorded = controller.history().size() > recorded_before;
    if (!go_on) break;
    previous = params;
    absl::Status m = family.MStep(stats, &params);
    current_recorded = false;
    if (!m.ok()) {
      controller.StopOn(m);
      break;
    }
    if (controls.observer != nullptr) {
      for (FitWarning& w : family.Inspect(stats, params)) {
        if (!warned.insert({w.code, w.component}).second) continue;
        w.restart = restart;
        controls.observer->OnWarning(w);
      }
    }
  }
  // Before any iteration was recorded, `previous` is the starting point.
  RestartResult<typename Family::Params> result{
      current_recorded ? std::move(params) : std::move(previous), controller.Finish(seed)};
  if (controls.observer != nullptr) controls.observer->OnRestartDone(result.summary);
  return result;
}

}  // namespace emfit

#endif  // EMFIT_CORE_EM_DRIVER_H_
