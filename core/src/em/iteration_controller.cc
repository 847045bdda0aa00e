#include "emfit/em/iteration_controller.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"
#include "emfit/exec/cancellation.h"

namespace emfit {

absl::Status FitOptions::Validate() const {
  if (max_iter < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("options.max_iter: must be >= 0, got %d", max_iter));
  }
  if (!std::isfinite(tol) || tol < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("options.tol: must be finite and >= 0, got %g", tol));
  }
  if (acceleration != Acceleration::kNone && acceleration != Acceleration::kSquarem) {
    return absl::InvalidArgumentError("options.acceleration: unknown value");
  }
  if (n_init < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("options.n_init: must be >= 1, got %d", n_init));
  }
  return absl::OkStatus();
}

absl::Status CheckCancelled(const FitControls& controls) {
  if (controls.cancel != nullptr && controls.cancel->IsCancelled()) {
    return absl::CancelledError("the fit was cancelled");
  }
  return absl::OkStatus();
}

absl::Status CheckInterrupted(const FitControls& controls) {
  if (absl::Status s = CheckCancelled(controls); !s.ok()) return s;
  if (controls.deadline != absl::InfiniteFuture() && absl::Now() >= controls.deadline) {
    return absl::DeadlineExceededError("the deadline passed");
  }
  return absl::OkStatus();
}

const char* TerminationReasonName(TerminationReason reason) {
  switch (reason) {
    case TerminationReason::kConverged:
      return "converged";
    case TerminationReason::kMaxIter:
      return "max_iter";
    case TerminationReason::kCancelled:
      return "cancelled";
    case TerminationReason::kDeadline:
      return "deadline";
    case TerminationReason::kNumericalFailure:
      return "numerical_failure";
  }
  return "unknown";
}

IterationController::IterationController(const FitOptions& options, const FitControls& controls,
                                         int restart, double total_weight)
    : options_(options),
      controls_(controls),
      restart_(restart),
      total_weight_(total_weight),
      start_(absl::Now()) {}

int IterationController::iterations() const {
  return history_.empty() ? 0 : static_cast<int>(history_.size()) - 1;
}

bool IterationController::Cancelled() {
  if (controls_.cancel == nullptr || !controls_.cancel->IsCancelled()) return false;
  reason_ = TerminationReason::kCancelled;
  message_ = "the fit was cancelled";
  return true;
}

bool IterationController::DeadlinePassed() {
  if (absl::Now() < controls_.deadline) return false;
  reason_ = TerminationReason::kDeadline;
  message_ = absl::StrFormat("the deadline passed after %d iterations", iterations());
  return true;
}

bool IterationController::MaxIterReached() {
  if (iterations() < options_.max_iter) return false;
  reason_ = TerminationReason::kMaxIter;
  const double change =
      history_.size() < 2 ? kNaN : (history_.back() - history_[history_.size() - 2]);
  message_ = absl::StrFormat("reached max_iter=%d without meeting tol=%g", options_.max_iter,
                             options_.tol);
  if (options_.tol > 0 && options_.max_iter > 0) {
    Warn({{"max_iter",
           absl::StrFormat("restart %d stopped at max_iter=%d before converging: the mean "
                           "log-likelihood still changed by %.3g per iteration (tol=%g); "
                           "raise max_iter or try acceleration=squarem",
                           restart_, options_.max_iter, change / total_weight_, options_.tol),
           restart_, -1}});
  }
  return true;
}

bool IterationController::AscentBoundReached(double upper_bound, double tol) {
  if (!(upper_bound < tol)) return false;
  reason_ = TerminationReason::kConverged;
  message_ = absl::StrFormat(
      "the upper confidence bound of the Monte Carlo EM improvement, %.3g, is below tol=%g",
      upper_bound, tol);
  return true;
}

bool IterationController::ToleranceReached() {
  if (monte_carlo_.has_value() && ascent_tol_ > 0) {
    return AscentBoundReached(monte_carlo_->upper_bound, ascent_tol_);
  }
  if (history_.size() < 2 || options_.tol <= 0) return false;
  const size_t t = history_.size() - 1;
  const double step = history_[t] - history_[t - 1];
  if (!(std::abs(step) / total_weight_ < options_.tol)) return false;
  // A small step is not yet convergence while the log-likelihood is still rising: near a saddle
  // or along a ridge, EM takes small steps before it speeds up again (on Old Faithful, tied k=3
  // stops 14 nats short of its maximum). Aitken's delta-squared projects the rise still to come
  // from the last two steps, d1 a / (1 - a) with a = d1 / d0; at or above a = 1 the steps are
  // growing and the fit goes on (docs/gmm.md, "When a fit stops"). A step within rounding of
  // the log-likelihood is no rise at all; a rise after a fall is judged on its step alone.
  double projected = 0;
  if (step > 1e-12 * std::abs(history_[t])) {
    const double previous = t >= 2 ? history_[t - 1] - history_[t - 2] : 0.0;
    const double a = step / previous;
    // A first rise has nothing to be compared with: one more step tells.
    projected = t < 2           ? std::numeric_limits<double>::infinity()
                : previous <= 0 ? 0.0
                : a < 1         ? step * a / (1 - a)
                                : std::numeric_limits<double>::infinity();
  }
  if (!(projected / total_weight_ < options_.tol)) return false;
  reason_ = TerminationReason::kConverged;
  message_ = absl::StrFormat("mean log-likelihood changed by %.3g < tol=%g", step / total_weight_,
                             options_.tol);
  if (projected > 0) {
    message_ += absl::StrFormat(" (projected further rise %.3g)", projected / total_weight_);
  }
  return true;
}

bool IterationController::ShouldStart() {
  if (stopped()) return false;
  // The start is always evaluated: a deadline is a budget for iterations, so a fit always has a
  // model to return when it passes (FitControls::deadline).
  return !(Cancelled() || (!history_.empty() && DeadlinePassed()));
}

bool IterationController::Record(double log_likelihood, double elbo, bool accelerated) {
  if (!std::isfinite(log_likelihood)) {
    Fail(TerminationReason::kNumericalFailure,
         absl::StrFormat("the log-likelihood is not finite (%g) after iteration %d; increase "
                         "reg_covar",
                         log_likelihood, iterations()));
    return false;
  }
  history_.push_back(log_likelihood);
  if (controls_.observer != nullptr) {
    IterationEvent event;
    event.restart = restart_;
    event.iteration = iterations();
    event.log_likelihood = log_likelihood;
    event.elbo = history_.size() < 2 ? kNaN : elbo;
    event.kl = log_likelihood - event.elbo;
    event.change = history_.size() < 2
                       ? kNaN
                       : (history_.back() - history_[history_.size() - 2]) / total_weight_;
    event.elapsed_seconds = absl::ToDoubleSeconds(absl::Now() - start_);
    event.accelerated = accelerated;
    if (monte_carlo_.has_value()) {
      event.sample_size = monte_carlo_->sample_size;
      event.improvement = monte_carlo_->improvement;
      event.improvement_se = monte_carlo_->improvement_se;
      event.update_accepted = monte_carlo_->update_accepted;
    }
    controls_.observer->OnIteration(event);
  }
  return !(ToleranceReached() || MaxIterReached());
}

bool IterationController::RecordMonteCarlo(double log_likelihood, const MonteCarloStep& step,
                                           double ascent_tol) {
  monte_carlo_ = step;
  ascent_tol_ = ascent_tol;
  const bool go_on = Record(log_likelihood);
  monte_carlo_.reset();
  return go_on;
}

void IterationController::StopOn(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kCancelled:
      Fail(TerminationReason::kCancelled, "the fit was cancelled");
      break;
    case absl::StatusCode::kDeadlineExceeded:
      Fail(TerminationReason::kDeadline, "the deadline passed");
      break;
    case absl::StatusCode::kFailedPrecondition:
      Fail(TerminationReason::kNumericalFailure, std::string(status.message()));
      break;
    default:
      error_ = status;
      Fail(TerminationReason::kNumericalFailure, std::string(status.message()));
  }
}

void IterationController::Fail(TerminationReason reason, std::string message) {
  reason_ = reason;
  message_ = std::move(message);
}

void IterationController::Warn(std::vector<FitWarning> warnings) {
  for (FitWarning& w : warnings) {
    if (!warned_.insert({w.code, w.component}).second) continue;
    w.restart = restart_;
    if (controls_.observer != nullptr) controls_.observer->OnWarning(w);
    warnings_.push_back(std::move(w));
  }
}

RestartSummary IterationController::Finish(uint64_t seed) const {
  RestartSummary s;
  s.restart = restart_;
  s.seed = seed;
  s.iterations = iterations();
  s.log_likelihood = history_.empty() ? -std::numeric_limits<double>::infinity() : history_.back();
  s.reason = reason_.value_or(TerminationReason::kMaxIter);
  s.message = message_;
  s.history = history_;
  s.warnings = warnings_;
  s.elapsed_seconds = absl::ToDoubleSeconds(absl::Now() - start_);
  return s;
}

}  // namespace emfit
