// The Mk family's public entry points (docs/algorithms.md §4).
#include "emfit/mk/mk.h"

#include <climits>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "emfit/base/status_macros.h"
#include "emfit/em/mcem.h"
#include "emfit/em/restarts.h"
#include "mk/family.h"
#include "mk/mc_family.h"
#include "mk/model.h"
#include "mk/pruning.h"

namespace emfit::mk {

namespace {

// The model of `params` on `tree` and `tips`, ready for the internal algorithms.
struct Prepared {
  internal::TreeData data;
  internal::RateLayout layout;
};

absl::StatusOr<Prepared> Prepare(const MkParams& params, const Tree& tree, const MkTips& tips) {
  EMFIT_RETURN_IF_ERROR(params.Validate());
  Prepared out;
  EMFIT_ASSIGN_OR_RETURN(out.data, internal::MatchTips(tree, tips, params.k()));
  EMFIT_ASSIGN_OR_RETURN(out.layout,
                         internal::RateLayout::FromIndex(params.index, "model.mk.index"));
  return out;
}

}  // namespace

absl::StatusOr<MkScore> Score(const MkParams& params, const Tree& tree, const MkTips& tips,
                              const FitControls& controls) {
  EMFIT_ASSIGN_OR_RETURN(Prepared p, Prepare(params, tree, tips));
  const internal::Generator generator(params.q, p.layout.symmetric);
  EMFIT_ASSIGN_OR_RETURN(Eigen::VectorXd rho, internal::RootDistribution(params));
  internal::Upward up;
  EMFIT_RETURN_IF_ERROR(internal::PruneUp(p.data, generator, params.root, rho, controls, &up));
  MkScore out;
  out.log_likelihood = up.total;
  out.num_free_parameters = NumFreeParameters(params);
  out.tips_used = p.data.tips_used;
  const double n = static_cast<double>(std::max<int64_t>(1, p.data.tips_used * p.data.characters));
  out.aic = -2 * out.log_likelihood + 2.0 * static_cast<double>(out.num_free_parameters);
  out.bic = -2 * out.log_likelihood + static_cast<double>(out.num_free_parameters) * std::log(n);
  out.warnings = std::move(p.data.warnings);
  return out;
}

namespace {

// The posteriors and expected statistics at `params` (the closing E-step of a fit, and the
// E-step as a service).
absl::StatusOr<MkPosteriors> Posteriors(const internal::TreeData& data,
                                        const internal::RateLayout& layout, const MkParams& params,
                                        const FitControls& controls) {
  const internal::Generator generator(params.q, layout.symmetric);
  EMFIT_ASSIGN_OR_RETURN(Eigen::VectorXd rho, internal::RootDistribution(params));
  internal::Upward up;
  EMFIT_RETURN_IF_ERROR(internal::PruneUp(data, generator, params.root, rho, controls, &up));
  internal::Expected e;
  MkPosteriors out;
  EMFIT_RETURN_IF_ERROR(internal::ExpectedCounts(data, generator, up, controls, &e, &out.nodes));
  out.log_likelihood = up.total;
  out.transitions = std::move(e.transitions);
  out.dwelling_times = std::move(e.times);
  out.warnings = data.warnings;
  return out;
}

// Forwards to the caller's observer and remembers the sample size of each restart's last
// iteration (Monte Carlo EM). Thread-safe: restarts run concurrently.
class SampleSizeRecorder : public FitObserver {
 public:
  explicit SampleSizeRecorder(FitObserver* next) : next_(next) {}
  void OnIteration(const IterationEvent& event) override {
    {
      absl::MutexLock lock(&mu_);
      last_[event.restart] = event.sample_size;
    }
    if (next_ != nullptr) next_->OnIteration(event);
  }
  void OnWarning(const FitWarning& warning) override {
    if (next_ != nullptr) next_->OnWarning(warning);
  }
  void OnRestartDone(const RestartSummary& summary) override {
    if (next_ != nullptr) next_->OnRestartDone(summary);
  }
  int64_t Last(int restart) {
    absl::MutexLock lock(&mu_);
    auto it = last_.find(restart);
    return it == last_.end() ? 0 : it->second;
  }

 private:
  FitObserver* next_;
  absl::Mutex mu_;
  std::map<int, int64_t> last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<MkPosteriors> NodePosteriors(const MkParams& params, const Tree& tree,
                                            const MkTips& tips, const FitControls& controls) {
  EMFIT_ASSIGN_OR_RETURN(Prepared p, Prepare(params, tree, tips));
  return Posteriors(p.data, p.layout, params, controls);
}

absl::StatusOr<MkFitResult> Fit(const Tree& tree, const MkTips& tips, const MkSpec& spec,
                                const FitOptions& options, const FitControls& controls) {
  const absl::Time start = absl::Now();
  EMFIT_RETURN_IF_ERROR(options.Validate());
  EMFIT_RETURN_IF_ERROR(spec.Validate());
  const bool monte_carlo = spec.estep == EStepMethod::kMonteCarlo;
  if (monte_carlo) EMFIT_RETURN_IF_ERROR(CheckMcemOptions(options, spec.mcem));
  const int k = spec.k();
  EMFIT_ASSIGN_OR_RETURN(internal::TreeData data, internal::MatchTips(tree, tips, k));
  if (monte_carlo && k > 65535) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "spec.mk.state_names: Monte Carlo EM supports up to 65535 states, got %d", k));
  }
  const Eigen::MatrixXi index =
      spec.rates == RateModel::kCustom ? spec.index : RateIndex(spec.rates, k);
  EMFIT_ASSIGN_OR_RETURN(internal::RateLayout layout,
                         internal::RateLayout::FromIndex(index, "spec.mk.index"));
  if (spec.init_params.has_value()) {
    if (spec.init_params->index != layout.index || spec.init_params->root != spec.root) {
      return absl::InvalidArgumentError(
          "init: the starting model's index matrix or root prior differs from the spec's");
    }
  }
  const internal::MkModel model(data, layout, spec.state_names, spec.root, spec.root_probs,
                                spec.q_min, spec.q_max);
  const int n_init = spec.init_params.has_value() ? 1 : options.n_init;
  std::vector<absl::StatusOr<MkParams>> starts = InitialiseRestarts<MkParams>(
      n_init, options, controls, [&](int restart, uint64_t seed) -> absl::StatusOr<MkParams> {
        if (spec.init_params.has_value()) {
          return model.ParamsFromRates(model.RatesOf(*spec.init_params));
        }
        return model.Start(restart, seed);
      });
  if (controls.observer != nullptr) {
    for (const FitWarning& w : data.warnings) controls.observer->OnWarning(w);
  }
  MkFitResult result;
  if (!monte_carlo) {
    const internal::MkFamily family(model);
    EMFIT_ASSIGN_OR_RETURN(FitOutcome<MkParams> outcome,
                           RunRestarts(family, std::move(starts), options, controls));
    result.params = std::move(outcome.params);
    result.summary = std::move(outcome.summary);
  } else {
    const internal::MkMonteCarloFamily family(model, spec.rao_blackwell, spec.sampler);
    SampleSizeRecorder recorder(controls.observer);
    FitControls mc_controls = controls;
    mc_controls.observer = &recorder;
    EMFIT_ASSIGN_OR_RETURN(FitOutcome<MkParams> outcome,
                           RunRestartsWith(family, std::move(starts), options, mc_controls,
                                           [&](int restart, MkParams params, uint64_t seed) {
                                             return RunMcem(family, std::move(params), options,
                                                            spec.mcem, mc_controls, restart, seed);
                                           }));
    result.params = std::move(outcome.params);
    result.summary = std::move(outcome.summary);
    // The Monte Carlo error of the rates, from a fresh sample of the last iteration's size.
    const int64_t m = std::max<int64_t>(recorder.Last(result.summary.best_restart),
                                        spec.mcem.initial_sample_size);
    internal::MkMonteCarloFamily::Sample sample = family.NewSample();
    EMFIT_RETURN_IF_ERROR(family.StartSample(result.params, controls, &sample).status());
    EMFIT_RETURN_IF_ERROR(family.Draw(m, RestartSeed(options.seed, result.summary.best_restart),
                                      INT_MAX, controls, &sample));
    MkParams next = result.params;
    EMFIT_RETURN_IF_ERROR(family.MStep(sample, &next));
    Eigen::MatrixXd cov;
    EMFIT_RETURN_IF_ERROR(family.RateCovariance(sample, next, controls, &cov));
    EMFIT_ASSIGN_OR_RETURN(result.rate_standard_errors,
                           family.FixedPointStandardErrors(cov, result.params, controls));
  }
  result.summary.warnings.insert(result.summary.warnings.end(), data.warnings.begin(),
                                 data.warnings.end());
  result.summary.rows_used = data.tips_used;
  result.summary.rows_skipped = tree.num_tips - data.tips_used;
  EMFIT_ASSIGN_OR_RETURN(result.posteriors, Posteriors(data, layout, result.params, controls));
  result.summary.elapsed_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return result;
}

}  // namespace emfit::mk
