#ifndef EMFIT_CORE_EM_SUMMARY_H_
#define EMFIT_CORE_EM_SUMMARY_H_

#include <cstdint>
#include <string>
#include <vector>

namespace emfit {

// Why a restart (or a fit) stopped. These are outcomes, not errors.
enum class TerminationReason {
  kConverged,         // the tolerance was met
  kMaxIter,           // max_iter M-steps ran without meeting the tolerance
  kCancelled,         // the cancellation token fired
  kDeadline,          // the deadline passed
  kNumericalFailure,  // e.g. a covariance lost positive definiteness
};

const char* TerminationReasonName(TerminationReason reason);

// Something the user should know that does not stop the fit.
struct FitWarning {
  std::string code;     // stable machine-readable code, e.g. "empty_component", "max_iter"
  std::string message;  // human-readable text
  int restart = 0;
  int component = -1;  // the component (or state) concerned, -1 if none
};

// Outcome of one restart.
struct RestartSummary {
  int restart = 0;
  uint64_t seed = 0;            // seed of this restart's random stream
  int iterations = 0;           // M-steps taken
  double log_likelihood = 0.0;  // at the returned parameters (-inf if none was evaluated)
  TerminationReason reason = TerminationReason::kMaxIter;
  std::string message;
  // log-likelihood of iteration 0..iterations; history.back() == log_likelihood when the
  // restart ended normally.
  std::vector<double> history;
  // Each distinct (code, component) once, in the order they arose.
  std::vector<FitWarning> warnings;
  double elapsed_seconds = 0.0;

  bool converged() const { return reason == TerminationReason::kConverged; }
};

// Outcome of a fit: the kept restart plus criteria and every restart.
struct FitSummary {
  TerminationReason reason = TerminationReason::kMaxIter;
  std::string message;
  int iterations = 0;
  double log_likelihood = 0.0;
  double mean_log_likelihood = 0.0;  // log_likelihood / total weight W
  std::vector<double> history;
  int64_t num_free_parameters = 0;
  double bic = 0.0;  // -2 l + p ln W
  double aic = 0.0;  // -2 l + 2 p
  int64_t rows_used = 0;
  int64_t rows_skipped = 0;
  int best_restart = 0;
  std::vector<RestartSummary> restarts;
  // The kept restart's warnings (max_iter reached, empty or collapsed components, ...), then
  // those of the fit (failed restarts, skipped rows).
  std::vector<FitWarning> warnings;
  double elapsed_seconds = 0.0;

  bool converged() const { return reason == TerminationReason::kConverged; }
};

}  // namespace emfit

#endif  // EMFIT_CORE_EM_SUMMARY_H_
