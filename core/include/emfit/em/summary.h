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

// Outcome of one restart.
struct RestartSummary {
  int restart = 0;
  uint64_t seed = 0;            // seed of this restart's random stream
  int iterations = 0;           // M-steps taken
  double log_likelihood = 0.0;  // at the returned parameters
  TerminationReason reason = TerminationReason::kMaxIter;
  std::string message;
  // log-likelihood of iteration 0..iterations; history.back() == log_likelihood when the
  // restart ended normally.
  std::vector<double> history;
  double elapsed_seconds = 0.0;

  bool converged() const { return reason == TerminationReason::kConverged; }
};

// Outcome of a fit: the kept restart plus criteria and every restart.
struct FitSummary {
  TerminationReason reason = TerminationReason::kMaxIter;
  std::string message;
  int iterations = 0;
  double log_likelihood = 0.0;
  double mean_log_likelihood = 0.0;  // log_likelihood / total row weight
  std::vector<double> history;
  int64_t num_free_parameters = 0;
  double bic = 0.0;  // -2 l + p ln W (W: total row weight)
  double aic = 0.0;  // -2 l + 2 p
  int64_t rows_used = 0;
  int64_t rows_skipped = 0;
  int best_restart = 0;
  std::vector<RestartSummary> restarts;
  double elapsed_seconds = 0.0;

  bool converged() const { return reason == TerminationReason::kConverged; }
  // The returned parameters are a valid model (true for every reason: a cancelled or failed
  // restart returns its last complete parameters; false only if no iteration completed).
  bool IsModelUsable() const { return !history.empty(); }
  // One line: reason, iterations, log-likelihood, BIC.
  std::string BriefReport() const;
};

}  // namespace emfit

#endif  // EMFIT_CORE_EM_SUMMARY_H_
