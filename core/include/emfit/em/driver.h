#ifndef EMFIT_CORE_EM_DRIVER_H_
#define EMFIT_CORE_EM_DRIVER_H_

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "emfit/em/iteration_controller.h"
#include "emfit/em/observer.h"
#include "emfit/em/options.h"
#include "emfit/em/summary.h"

namespace emfit {

// Parameters and summary of one EM restart. `error` is not OK only when a step failed with an
// error of the program (not a numerical failure, cancellation or deadline): the fit fails.
template <class Params>
struct RestartResult {
  Params params;
  RestartSummary summary;
  absl::Status error;
};

namespace internal {

// L(q, theta_new) = l(theta_old) - Q(theta_old | q) + Q(theta_new | q) for the posterior q of
// the E-step at theta_old whose statistics are `stats` (H(q) = l - Q(theta_old | q) exactly;
// algorithms.md §6).
template <class Family>
double Elbo(const Family& family, const typename Family::Stats& stats, double log_likelihood,
            const typename Family::Params& old_params, const typename Family::Params& new_params) {
  return log_likelihood - family.ExpectedLogJoint(stats, old_params) +
         family.ExpectedLogJoint(stats, new_params);
}

template <class Params>
RestartResult<Params> Finished(Params params, const IterationController& controller,
                               uint64_t seed) {
  return {std::move(params), controller.Finish(seed), controller.error()};
}

// Plain EM (see RunEm).
template <class Family>
RestartResult<typename Family::Params> RunPlainEm(const Family& family,
                                                  typename Family::Params params,
                                                  const FitOptions& options,
                                                  const FitControls& controls, int restart,
                                                  uint64_t seed) {
  IterationController controller(options, controls, restart, family.total_weight());
  typename Family::Stats stats = family.NewStats();
  typename Family::Params previous = params;  // parameters of the last recorded iteration
  bool current_recorded = false;
  double elbo = IterationController::kNaN;  // L(q_{t-1}, theta_t) for the next record
  while (controller.ShouldStart()) {
    current_recorded = false;
    absl::StatusOr<double> ll = family.EStep(params, controls, &stats);
    if (!ll.ok()) {
      controller.StopOn(ll.status());
      break;
    }
    const size_t recorded_before = controller.history().size();
    const bool go_on = controller.Record(*ll, elbo);
    current_recorded = controller.history().size() > recorded_before;
    if (!go_on) break;
    previous = params;
    absl::Status m = family.MStep(stats, &params);
    current_recorded = false;
    if (!m.ok()) {
      controller.StopOn(m);
      break;
    }
    elbo = Elbo(family, stats, *ll, previous, params);
    controller.Warn(family.Inspect(stats, params));
  }
  // Before any iteration was recorded, `previous` is the starting point.
  return Finished(current_recorded ? std::move(params) : std::move(previous), controller, seed);
}

// SQUAREM, scheme S3, with the monotone safeguard (algorithms.md §5.1). One recorded iteration
// per cycle; the E-step that evaluates a cycle's new point is the first half of the next. The
// ELBO reported with a cycle's point is that of the E-step whose M-step produced it.
template <class Family>
RestartResult<typename Family::Params> RunSquarem(const Family& family,
                                                  typename Family::Params params,
                                                  const FitOptions& options,
                                                  const FitControls& controls, int restart,
                                                  uint64_t seed) {
  using Params = typename Family::Params;
  constexpr double kStepMin = 1.0, kStepMax0 = 1.0, kMStep = 4.0;
  constexpr double kNaN = IterationController::kNaN;
  IterationController controller(options, controls, restart, family.total_weight());
  typename Family::Stats stats = family.NewStats();
  Params p0 = std::move(params);  // the last recorded point; `stats` hold its E-step
  if (!controller.ShouldStart()) return Finished(std::move(p0), controller, seed);
  absl::StatusOr<double> l0 = family.EStep(p0, controls, &stats);
  if (!l0.ok()) {
    controller.StopOn(l0.status());
    return Finished(std::move(p0), controller, seed);
  }
  if (!controller.Record(*l0)) return Finished(std::move(p0), controller, seed);
  double step_max = kStepMax0;
  // Runs the E-step at `p`; a cancellation or deadline stops the restart.
  auto evaluate = [&](const Params& p, bool* stop) -> absl::StatusOr<double> {
    absl::StatusOr<double> ll = family.EStep(p, controls, &stats);
    if (!ll.ok() && ll.status().code() != absl::StatusCode::kFailedPrecondition) {
      controller.StopOn(ll.status());
      *stop = true;
    }
    return ll;
  };
  while (controller.ShouldStart()) {
    bool stop = false;
    Params p1 = p0;
    if (absl::Status m = family.MStep(stats, &p1); !m.ok()) {
      controller.StopOn(m);
      break;
    }
    controller.Warn(family.Inspect(stats, p1));
    absl::StatusOr<double> l1 = evaluate(p1, &stop);
    if (stop) break;
    if (!l1.ok() || !std::isfinite(*l1)) {
      controller.StopOn(l1.ok() ? absl::FailedPreconditionError("the log-likelihood is not finite")
                                : l1.status());
      break;
    }
    Params p2 = p1;
    if (absl::Status m = family.MStep(stats, &p2); !m.ok()) {
      controller.StopOn(m);
      break;
    }
    const double elbo2 = Elbo(family, stats, *l1, p1, p2);
    const Eigen::VectorXd x0 = family.Pack(p0), x1 = family.Pack(p1), x2 = family.Pack(p2);
    const Eigen::VectorXd r = x1 - x0;
    const Eigen::VectorXd v = (x2 - x1) - r;
    double alpha = v.squaredNorm() > 0 ? std::sqrt(r.squaredNorm() / v.squaredNorm()) : 1.0;
    alpha = std::clamp(alpha, kStepMin, step_max);
    Params candidate = p2;
    double elbo = elbo2;
    bool accelerated = false;
    if (alpha != 1.0) {
      absl::StatusOr<Params> extrapolated =
          family.Unpack(x0 + 2 * alpha * r + alpha * alpha * v, p0);
      if (extrapolated.ok()) {
        candidate = *std::move(extrapolated);
        accelerated = true;
        elbo = kNaN;
        if (std::abs(alpha - 1.0) > 0.01) {  // stabilisation step
          absl::StatusOr<double> ls = evaluate(candidate, &stop);
          if (stop) break;
          Params stabilised = candidate;
          accelerated = ls.ok() && std::isfinite(*ls) && family.MStep(stats, &stabilised).ok();
          if (accelerated) {
            elbo = Elbo(family, stats, *ls, candidate, stabilised);
            candidate = std::move(stabilised);
          }
        }
      }
    }
    if (!accelerated) {
      candidate = p2;
      elbo = elbo2;
    }
    absl::StatusOr<double> lc = evaluate(candidate, &stop);
    if (stop) break;
    if (accelerated && (!lc.ok() || !std::isfinite(*lc) || *lc < *l0)) {
      // Safeguard: two plain EM steps cannot lower the log-likelihood.
      candidate = std::move(p2);
      elbo = elbo2;
      accelerated = false;
      if (alpha == step_max) step_max = std::max(kStepMax0, step_max / kMStep);
      alpha = 1.0;
      lc = evaluate(candidate, &stop);
      if (stop) break;
    }
    if (alpha == step_max) step_max *= kMStep;
    if (!lc.ok()) {
      controller.StopOn(lc.status());
      break;
    }
    const size_t recorded_before = controller.history().size();
    const bool go_on = controller.Record(*lc, elbo, accelerated);
    if (controller.history().size() > recorded_before) {
      p0 = std::move(candidate);
      l0 = lc;
    }
    if (!go_on) break;
  }
  return Finished(std::move(p0), controller, seed);
}

}  // namespace internal

// Runs EM for one restart from `params`, plain or accelerated (options.acceleration). The
// family contract (shared by every model family):
//
//   typename Family::Params, typename Family::Stats
//   Stats NewStats() const;
//   double total_weight() const;   // W: the mean log-likelihood's divisor and BIC's n
//   absl::StatusOr<double> EStep(const Params&, const FitControls&, Stats*) const;
//       // expected sufficient statistics of q = p(Z | X, theta) and l(theta). CANCELLED when
//       // the token fired (polled between blocks); FAILED_PRECONDITION for a numerical
//       // failure; any other code is an error of the program and fails the fit
//   absl::Status MStep(const Stats&, Params*) const;          // FAILED_PRECONDITION: numerical
//   double ExpectedLogJoint(const Stats&, const Params&) const;
//       // Q(theta | q) = E_q[ln p(X, Z | theta)] for the q of `stats`, weighted like l; the
//       // ELBO of each iteration is computed from it (algorithms.md §6)
//   std::vector<FitWarning> Inspect(const Stats&, const Params&) const;  // after each M-step
//   Eigen::VectorXd Pack(const Params&) const;                // unconstrained coordinates
//   absl::StatusOr<Params> Unpack(const Eigen::VectorXd&, const Params& like) const;
//       // inverse of Pack; an error if the point is not a usable model
//   int64_t NumFreeParameters() const;                        // for BIC and AIC
//
// The returned parameters are those whose log-likelihood was recorded last, so a cancelled or
// failed restart still returns a valid model with a matching history. Each distinct warning
// (code, component) reaches the observer once per restart.
template <class Family>
RestartResult<typename Family::Params> RunEm(const Family& family, typename Family::Params params,
                                             const FitOptions& options, const FitControls& controls,
                                             int restart, uint64_t seed) {
  RestartResult<typename Family::Params> result =
      options.acceleration == Acceleration::kSquarem
          ? internal::RunSquarem(family, std::move(params), options, controls, restart, seed)
          : internal::RunPlainEm(family, std::move(params), options, controls, restart, seed);
  if (controls.observer != nullptr) controls.observer->OnRestartDone(result.summary);
  return result;
}

}  // namespace emfit

#endif  // EMFIT_CORE_EM_DRIVER_H_
