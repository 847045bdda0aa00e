// Ascent-based Monte Carlo EM (Caffo, Jank & Jones 2005; docs/algorithms.md §4.6): the loop
// for any model family whose E-step is sampled.
#ifndef EMFIT_CORE_EM_MCEM_H_
#define EMFIT_CORE_EM_MCEM_H_

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "emfit/em/driver.h"
#include "emfit/em/iteration_controller.h"
#include "emfit/em/observer.h"
#include "emfit/em/options.h"
#include "emfit/em/summary.h"

namespace emfit {

// Options of Monte Carlo EM's sample-size control (defaults as in NIMBLE's buildMCEM).
struct McemOptions {
  // Histories drawn at the first iteration (m_0 >= 2).
  int64_t initial_sample_size = 50;
  // Cap on the histories of one iteration (m_max >= m_0). At the cap an update is accepted
  // without a positive lower bound, with the warning "mcem_sample_cap".
  int64_t max_sample_size = 100000;
  // Ascent test: accept theta' when mean(Delta) - z_{1-alpha} ASE > 0, else append
  // ceil(m / kappa) draws and recompute theta'.
  double alpha = 0.25;
  // Power of the next iteration's test: m_{t+1} = max(m_t, s^2 (z_{1-alpha} + z_{1-beta})^2 /
  // mean(Delta)^2).
  double beta = 0.25;
  // Stop when mean(Delta) + z_{1-gamma} ASE < tol (the ascent rule; Q's units, i.e. total
  // log-likelihood units).
  double gamma = 0.05;
  double tol = 1e-3;
  double kappa = 3.0;
  // Families with an exact log-likelihood: an update that lowers it by more than `guard` is
  // not accepted (more draws are taken instead).
  double guard = 1e-3;
  // false: stop on FitOptions::tol (mean log-likelihood change) instead of the ascent rule.
  bool ascent_stop = true;

  absl::Status Validate() const;
};

// Monte Carlo EM cannot be accelerated by SQUAREM (Monte Carlo noise breaks the
// extrapolation): INVALID_ARGUMENT unless options.acceleration is kNone.
absl::Status CheckMcemOptions(const FitOptions& options, const McemOptions& mcem);

// The random stream of draw `draw` of iteration `iteration` of the restart seeded `seed`:
// each history has its own stream, so results do not depend on how draws are scheduled.
uint64_t McemDrawSeed(uint64_t seed, int iteration, int64_t draw);

namespace internal {
// z with Phi(z) = p (the standard normal quantile), 0 < p < 1.
double NormalQuantile(double p);
}  // namespace internal

// Runs Monte Carlo EM for one restart from `params`. The Monte Carlo family contract:
//
//   typename Family::Params, typename Family::Sample
//   Sample NewSample() const;
//   double total_weight() const;             // W, as in the EM contract (driver.h)
//   bool exact_log_likelihood() const;       // whether StartSample's l is exact (the guard)
//   absl::StatusOr<double> StartSample(const Params& theta, const FitControls&, Sample*) const;
//       // drops the sample's draws and prepares draws under theta (work every draw shares);
//       // returns l(theta), exact or an estimate. CANCELLED when the controls fired;
//       // FAILED_PRECONDITION for a numerical failure.
//   absl::Status Draw(int64_t count, uint64_t seed, int iteration, const FitControls&,
//                     Sample*) const;
//       // appends `count` histories drawn under the sample's theta; history i (0-based over
//       // the iteration) uses the stream McemDrawSeed(seed, iteration, i). May run in
//       // parallel on controls.pool; the sample must not depend on the pool.
//   int64_t SampleSize(const Sample&) const;
//   absl::Status MStep(const Sample&, Params* next) const;
//       // maximises the Monte Carlo Q-function of the pooled draws (next starts as theta)
//   absl::Status Increments(const Sample&, const Params& next, const FitControls&,
//                           Eigen::VectorXd* delta) const;
//       // per-draw Delta_s = ln f(x, h_s | next) - ln f(x, h_s | theta) on the same draws
//       // (common random numbers), or its expectation given what draw s fixed
//       // (Rao-Blackwellised); mean(Delta) estimates Q(next) - Q(theta).
//   std::vector<FitWarning> Inspect(const Sample&, const Params& next) const;
//
// Each iteration: draw m_t histories under theta_t; theta' = MStep; the ascent test on the
// per-draw increments (append draws until the lower bound is positive, or m_max); with an
// exact log-likelihood, the guard l(theta') >= l(theta_t) - guard; record l(theta_{t+1}) with
// the sample size, the improvement and its standard error; stop on the ascent rule (or the
// mean log-likelihood rule), max_iter, cancellation or the deadline; next sample size from
// the estimated improvement. The controller owns the bookkeeping, as for EM (RunEm).
template <class Family>
RestartResult<typename Family::Params> RunMcem(const Family& family, typename Family::Params params,
                                               const FitOptions& options, const McemOptions& mcem,
                                               const FitControls& controls, int restart,
                                               uint64_t seed) {
  using Params = typename Family::Params;
  IterationController controller(options, controls, restart, family.total_weight());
  typename Family::Sample sample = family.NewSample(), proposal = family.NewSample();
  Params theta = std::move(params);
  auto finish = [&]() {
    RestartResult<Params> result = internal::Finished(std::move(theta), controller, seed);
    if (controls.observer != nullptr) controls.observer->OnRestartDone(result.summary);
    return result;
  };
  if (!controller.ShouldStart()) return finish();
  absl::StatusOr<double> ll = family.StartSample(theta, controls, &sample);
  if (!ll.ok()) {
    controller.StopOn(ll.status());
    return finish();
  }
  if (!controller.RecordMonteCarlo(*ll, MonteCarloStep{}, mcem.ascent_stop ? mcem.tol : 0)) {
    return finish();
  }
  const double z_alpha = internal::NormalQuantile(1 - mcem.alpha);
  const double z_beta = internal::NormalQuantile(1 - mcem.beta);
  const double z_gamma = internal::NormalQuantile(1 - mcem.gamma);
  int64_t m = mcem.initial_sample_size;
  Eigen::VectorXd delta;
  for (int iteration = 0; controller.ShouldStart(); ++iteration) {
    absl::Status status = family.Draw(m, seed, iteration, controls, &sample);
    MonteCarloStep step;
    double sd = 0, ll_next = *ll;
    Params next = theta;
    bool accepted = false;
    while (status.ok()) {
      next = theta;
      status = family.MStep(sample, &next);
      if (!status.ok()) break;
      status = family.Increments(sample, next, controls, &delta);
      if (!status.ok()) break;
      const int64_t size = family.SampleSize(sample);
      const double mean = delta.mean();
      sd = size > 1 ? std::sqrt((delta.array() - mean).square().sum() / (size - 1)) : 0.0;
      step.sample_size = size;
      step.improvement = mean;
      step.improvement_se = sd / std::sqrt(static_cast<double>(size));
      step.upper_bound = mean + z_gamma * step.improvement_se;
      const bool at_cap = size >= mcem.max_sample_size;
      if (mean - z_alpha * step.improvement_se > 0 || at_cap) {
        absl::StatusOr<double> l = family.StartSample(next, controls, &proposal);
        if (!l.ok()) {
          status = l.status();
          break;
        }
        ll_next = *l;
        if (!family.exact_log_likelihood() || ll_next >= *ll - mcem.guard) {
          accepted = true;
          if (at_cap) {
            controller.Warn({{"mcem_sample_cap",
                              absl::StrFormat("iteration %d accepted an update at the sample-size "
                                              "cap (%d histories) without a positive lower bound",
                                              iteration + 1, mcem.max_sample_size),
                              restart, -1}});
          }
          break;
        }
        if (at_cap) break;  // the guard failed at the cap: keep theta
      }
      const int64_t more =
          std::min<int64_t>(static_cast<int64_t>(std::ceil(static_cast<double>(size) / mcem.kappa)),
                            mcem.max_sample_size - size);
      status = family.Draw(more, seed, iteration, controls, &sample);
    }
    if (!status.ok()) {
      controller.StopOn(status);
      break;
    }
    step.update_accepted = accepted;
    if (accepted) {
      controller.Warn(family.Inspect(sample, next));
      theta = std::move(next);
      std::swap(sample, proposal);  // already started at the new theta
      ll = ll_next;
    } else {
      absl::StatusOr<double> l = family.StartSample(theta, controls, &sample);
      if (!l.ok()) {
        controller.StopOn(l.status());
        break;
      }
    }
    if (!controller.RecordMonteCarlo(*ll, step, mcem.ascent_stop ? mcem.tol : 0)) break;
    // The next sample size: enough draws for the test to detect the estimated improvement
    // with power 1 - beta (Caffo et al. 2005, eq. 3.9).
    double want = static_cast<double>(mcem.max_sample_size);
    if (step.improvement > 0) {
      want =
          sd * sd * (z_alpha + z_beta) * (z_alpha + z_beta) / (step.improvement * step.improvement);
    }
    m = std::clamp<int64_t>(
        std::max<int64_t>(step.sample_size, static_cast<int64_t>(std::ceil(std::min(want, 1e18)))),
        mcem.initial_sample_size, mcem.max_sample_size);
  }
  return finish();
}

}  // namespace emfit

#endif  // EMFIT_CORE_EM_MCEM_H_
