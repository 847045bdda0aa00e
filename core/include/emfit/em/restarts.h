// Restarts, the choice of the best one, criteria and the fit summary: written once for every
// model family (style.md, "Adding a family").
#ifndef EMFIT_CORE_EM_RESTARTS_H_
#define EMFIT_CORE_EM_RESTARTS_H_

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "emfit/em/driver.h"
#include "emfit/em/iteration_controller.h"
#include "emfit/em/options.h"
#include "emfit/em/summary.h"
#include "emfit/exec/thread_pool.h"

namespace emfit {

// The seed of restart `restart`'s random streams, derived from FitOptions::seed.
uint64_t RestartSeed(uint64_t seed, int restart);

// BIC = -2 l + p ln W and AIC = -2 l + 2 p (lower is better; scikit-learn's sign).
double Bic(double log_likelihood, int64_t num_free_parameters, double total_weight);
double Aic(double log_likelihood, int64_t num_free_parameters);

// The starting points of `n_init` restarts, computed in parallel on controls.pool:
// init(restart, RestartSeed(options.seed, restart)). An initialisation is not started once the
// token fired (CANCELLED), nor, except for restart 0, once the deadline passed
// (DEADLINE_EXCEEDED: the restart is skipped); `init` polls CheckCancelled in its long loops.
template <class Params>
std::vector<absl::StatusOr<Params>> InitialiseRestarts(
    int n_init, const FitOptions& options, const FitControls& controls,
    absl::FunctionRef<absl::StatusOr<Params>(int restart, uint64_t seed)> init) {
  std::vector<absl::StatusOr<Params>> starts(n_init, absl::UnknownError("not initialised"));
  ParallelFor(controls.pool, n_init, [&](int r) {
    absl::Status interrupted = r == 0 ? CheckCancelled(controls) : CheckInterrupted(controls);
    starts[r] = interrupted.ok() ? init(r, RestartSeed(options.seed, r))
                                 : absl::StatusOr<Params>(interrupted);
  });
  return starts;
}

template <class Params>
struct FitOutcome {
  Params params;
  FitSummary summary;
};

// Runs EM (RunEm) from every start in parallel on controls.pool, keeps the restart with the
// largest final log-likelihood (the earliest on ties) and summarises the fit: reason and
// message (a cancellation or deadline that stopped any restart is the fit's reason),
// iterations, log-likelihood, mean log-likelihood, history, free parameters, BIC, AIC, the
// kept restart, every restart and the warnings. rows_used, rows_skipped and elapsed_seconds
// are the caller's. Errors: an INVALID_ARGUMENT from an initialisation (a property of the
// data, e.g. fewer distinct rows than k) or an error of the program is returned as is;
// CANCELLED when the fit was cancelled before any iteration completed; FAILED_PRECONDITION
// when every restart failed numerically.
//
// RunRestartsWith runs `run(restart, params, seed)` -> RestartResult<Params> from every start
// instead of RunEm, e.g. RunMcem (emfit/em/mcem.h) for a family with a sampled E-step.
template <class Family, class Run>
absl::StatusOr<FitOutcome<typename Family::Params>> RunRestartsWith(
    const Family& family, std::vector<absl::StatusOr<typename Family::Params>> starts,
    const FitOptions& options, const FitControls& controls, Run run) {
  using Params = typename Family::Params;
  const int n = static_cast<int>(starts.size());
  std::vector<RestartResult<Params>> runs(n);
  ParallelFor(controls.pool, n, [&](int r) {
    const uint64_t seed = RestartSeed(options.seed, r);
    if (starts[r].ok()) {
      // Restart 0 always runs, so that a passed deadline still yields a model.
      if (r > 0 && absl::Now() >= controls.deadline) {
        starts[r] = absl::DeadlineExceededError("the deadline passed before the restart began");
      } else {
        runs[r] = run(r, *std::move(starts[r]), seed);
        return;
      }
    }
    IterationController skipped(options, controls, r, family.total_weight());
    skipped.StopOn(starts[r].status());
    runs[r] = {Params{}, skipped.Finish(seed), skipped.error()};
  });
  FitOutcome<Params> out;
  FitSummary& sum = out.summary;
  std::vector<FitWarning> failures;
  int best = -1;
  bool interrupted = false;
  for (int r = 0; r < n; ++r) {
    if (!starts[r].ok() && starts[r].status().code() == absl::StatusCode::kInvalidArgument) {
      return starts[r].status();
    }
    if (!runs[r].error.ok()) return runs[r].error;
    const RestartSummary& s = runs[r].summary;
    if (s.reason == TerminationReason::kNumericalFailure) {
      failures.push_back({"restart_failed", absl::StrFormat("restart %d: %s", r, s.message), r});
      if (controls.observer != nullptr) controls.observer->OnWarning(failures.back());
    }
    const bool was_interrupted =
        s.reason == TerminationReason::kCancelled || s.reason == TerminationReason::kDeadline;
    if (was_interrupted && !interrupted) {
      interrupted = true;
      sum.reason = s.reason;
      sum.message = s.message;
    }
    const bool usable = !s.history.empty() && s.reason != TerminationReason::kNumericalFailure;
    if (usable && (best < 0 || s.log_likelihood > runs[best].summary.log_likelihood)) best = r;
  }
  if (best < 0) {
    if (interrupted) {
      return absl::CancelledError("the fit was cancelled before any iteration completed");
    }
    return absl::FailedPreconditionError(absl::StrFormat(
        "every restart failed; last: %s", failures.empty() ? "" : failures.back().message));
  }
  const RestartSummary& b = runs[best].summary;
  if (!interrupted) {
    sum.reason = b.reason;
    sum.message = b.message;
  }
  sum.iterations = b.iterations;
  sum.log_likelihood = b.log_likelihood;
  const double w = family.total_weight();
  sum.mean_log_likelihood = b.log_likelihood / w;
  sum.history = b.history;
  sum.num_free_parameters = family.NumFreeParameters();
  sum.bic = Bic(sum.log_likelihood, sum.num_free_parameters, w);
  sum.aic = Aic(sum.log_likelihood, sum.num_free_parameters);
  sum.best_restart = best;
  sum.warnings = b.warnings;
  sum.warnings.insert(sum.warnings.end(), failures.begin(), failures.end());
  out.params = std::move(runs[best].params);
  for (RestartResult<Params>& run : runs) sum.restarts.push_back(std::move(run.summary));
  return out;
}

template <class Family>
absl::StatusOr<FitOutcome<typename Family::Params>> RunRestarts(
    const Family& family, std::vector<absl::StatusOr<typename Family::Params>> starts,
    const FitOptions& options, const FitControls& controls) {
  return RunRestartsWith(family, std::move(starts), options, controls,
                         [&](int restart, typename Family::Params params, uint64_t seed) {
                           return RunEm(family, std::move(params), options, controls, restart,
                                        seed);
                         });
}

}  // namespace emfit

#endif  // EMFIT_CORE_EM_RESTARTS_H_
