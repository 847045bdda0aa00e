// Monte Carlo EM for the Mk model: the ascent-based driver (emfit/em/mcem.h) with the Mk Monte
// Carlo family (docs/algorithms.md §4.5-4.6, oracles 32 and 42).
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "emfit/em/driver.h"
#include "emfit/em/mcem.h"
#include "emfit/exec/thread_pool.h"
#include "emfit/mk/mk.h"
#include "emfit/mk/tree.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/family.h"
#include "mk/mc_family.h"
#include "mk/model.h"
#include "mk/pruning.h"
#include "testing/mk_trees.h"
#include "testing/observers.h"
#include "testing/status_matchers.h"

namespace emfit::mk::internal {
namespace {

using ::emfit::testing::RecordingObserver;

using ::emfit::testing::IsOk;
using ::emfit::testing::StatusIs;

// A simulated problem with an interior MLE, and its exact-EM optimum.
struct Problem {
  Tree tree;
  TreeData data;
  std::unique_ptr<MkModel> model;
  MkParams optimum;
  double optimum_ll = 0;

  Problem(int tips, uint64_t seed, RateModel rates, RootPrior root = RootPrior::kEqual,
          bool interior = true) {
    absl::StatusOr<Tree> t = ParseNewick(testing::RandomNewick(tips, seed, 0.05, 0.5));
    EXPECT_THAT(t, IsOk());
    tree = *std::move(t);
    const Eigen::MatrixXd truth = testing::RandomGenerator(3, seed + 1, 0.3, 1.0);
    const std::vector<int> states =
        testing::SimulateTipStates(tree, truth, Eigen::Vector3d::Constant(1.0 / 3), seed + 2);
    MkTips mk_tips;
    mk_tips.labels = tree.TipLabels();
    mk_tips.likelihoods = Eigen::MatrixXd::Zero(tips, 3);
    for (int i = 0; i < tips; ++i) mk_tips.likelihoods(i, states[i]) = 1;
    absl::StatusOr<TreeData> d = MatchTips(tree, mk_tips, 3);
    EXPECT_THAT(d, IsOk());
    data = *std::move(d);
    absl::StatusOr<RateLayout> layout = RateLayout::FromIndex(RateIndex(rates, 3), "index");
    EXPECT_THAT(layout, IsOk());
    model = std::make_unique<MkModel>(data, *layout, std::vector<std::string>{"a", "b", "c"}, root,
                                      Eigen::VectorXd(), 0, 0);
    FitOptions options;
    options.max_iter = 100000;
    options.tol = 1e-15;
    options.acceleration = Acceleration::kSquarem;
    const RestartResult<MkParams> em =
        RunEm(MkFamily(*model), model->Start(0, 0), options, {}, 0, 0);
    optimum = em.params;
    optimum_ll = em.summary.log_likelihood;
    if (interior) {
      EXPECT_TRUE(model->Inspect(optimum).empty()) << "the test needs an interior MLE";
    }
  }
};

RestartResult<MkParams> RunMonteCarloEm(const Problem& p, bool rao_blackwell, uint64_t seed,
                                        const FitControls& controls = {},
                                        const MkParams* start = nullptr, int max_iter = 300,
                                        double tol = 1e-3) {
  FitOptions options;
  options.max_iter = max_iter;
  McemOptions mcem;
  mcem.tol = tol;
  return RunMcem(MkMonteCarloFamily(*p.model, rao_blackwell, PathSampler::kAuto),
                 start != nullptr ? *start : p.model->Start(0, 0), options, mcem, controls, 0,
                 seed);
}

// The Monte Carlo standard errors of the rates at `at` from `m` draws: of one M-step, or
// (`fixed_point`) of MCEM's iterate near its fixed point.
Eigen::VectorXd StandardErrors(const MkModel& model, bool rao_blackwell, const MkParams& at,
                               int64_t m, bool fixed_point) {
  const MkMonteCarloFamily family(model, rao_blackwell, PathSampler::kAuto);
  MkMonteCarloFamily::Sample sample = family.NewSample();
  EXPECT_THAT(family.StartSample(at, {}, &sample), IsOk());
  EXPECT_THAT(family.Draw(m, 12345, 0, {}, &sample), IsOk());
  MkParams next = at;
  EXPECT_THAT(family.MStep(sample, &next), IsOk());
  Eigen::MatrixXd cov;
  EXPECT_THAT(family.RateCovariance(sample, next, {}, &cov), IsOk());
  if (!fixed_point) return cov.diagonal().cwiseSqrt();
  absl::StatusOr<Eigen::VectorXd> se = family.FixedPointStandardErrors(cov, at, {});
  EXPECT_THAT(se, IsOk());
  return se.ok() ? *se : Eigen::VectorXd();
}

TEST(MkMonteCarloEm, LandsWithinFourStandardErrorsOfTheExactOptimum) {
  const Problem p(120, 301, RateModel::kSYM);
  RecordingObserver recorder;
  FitControls controls;
  controls.observer = &recorder;
  const RestartResult<MkParams> r = RunMonteCarloEm(p, true, 17, controls, nullptr, 300, 1e-4);
  EXPECT_EQ(r.summary.reason, TerminationReason::kConverged) << r.summary.message;
  ASSERT_FALSE(recorder.events.empty());
  const int64_t m = recorder.events.back().sample_size;
  const Eigen::VectorXd se = StandardErrors(*p.model, true, r.params, m, true);
  const Eigen::VectorXd got = p.model->RatesOf(r.params), want = p.model->RatesOf(p.optimum);
  for (int i = 0; i < got.size(); ++i) {
    EXPECT_LE(std::abs(got[i] - want[i]), 4 * se[i])
        << "rate " << i << ": " << got[i] << " vs exact " << want[i] << ", SE " << se[i];
  }
  EXPECT_LT(p.optimum_ll - r.summary.log_likelihood, 1e-3);
  EXPECT_GE(p.optimum_ll - r.summary.log_likelihood, -1e-9);
}

TEST(MkMonteCarloEm, PathTalliesReachTheExactOptimumWithinOneHundredthOfALogLikelihoodUnit) {
  const Problem p(120, 301, RateModel::kSYM);
  const RestartResult<MkParams> r = RunMonteCarloEm(p, false, 17);
  EXPECT_EQ(r.summary.reason, TerminationReason::kConverged) << r.summary.message;
  EXPECT_LT(p.optimum_ll - r.summary.log_likelihood, 0.01);
  EXPECT_GE(p.optimum_ll - r.summary.log_likelihood, -1e-9);
}

TEST(MkMonteCarloEm, MStepAtTheExactOptimumReturnsItWithinFourStandardErrors) {
  // The exact optimum is a fixed point of the exact EM map, so the Monte Carlo M-step from it
  // is unbiased for it (to first order): a check of both estimators and of their errors.
  const Problem p(120, 301, RateModel::kSYM);
  for (bool rao_blackwell : {true, false}) {
    SCOPED_TRACE(rao_blackwell ? "Rao-Blackwellised" : "path tallies");
    const MkMonteCarloFamily family(*p.model, rao_blackwell, PathSampler::kAuto);
    MkMonteCarloFamily::Sample sample = family.NewSample();
    ASSERT_THAT(family.StartSample(p.optimum, {}, &sample), IsOk());
    ASSERT_THAT(family.Draw(20000, 1, 0, {}, &sample), IsOk());
    MkParams next = p.optimum;
    ASSERT_THAT(family.MStep(sample, &next), IsOk());
    Eigen::MatrixXd cov;
    ASSERT_THAT(family.RateCovariance(sample, next, {}, &cov), IsOk());
    const Eigen::VectorXd diff = p.model->RatesOf(next) - p.model->RatesOf(p.optimum);
    for (int i = 0; i < diff.size(); ++i) {
      EXPECT_LE(std::abs(diff[i]), 4 * std::sqrt(cov(i, i))) << "rate " << i;
    }
  }
}

TEST(MkMonteCarloEm, FindsTheTreeBOptimumWithin3StandardErrors) {
  // ((A:1,B:1):1,(C:1,D:1):1), states 0 0 1 1, ER: q = ln 3 / 4 (algorithms.md T32).
  absl::StatusOr<Tree> tree = ParseNewick("((A:1,B:1):1,(C:1,D:1):1);");
  ASSERT_THAT(tree, IsOk());
  MkTips tips;
  tips.labels = tree->TipLabels();
  tips.likelihoods = Eigen::MatrixXd::Zero(4, 2);
  tips.likelihoods(0, 0) = tips.likelihoods(1, 0) = tips.likelihoods(2, 1) =
      tips.likelihoods(3, 1) = 1;
  absl::StatusOr<TreeData> data = MatchTips(*tree, tips, 2);
  ASSERT_THAT(data, IsOk());
  const MkModel model(*data, *RateLayout::FromIndex(RateIndex(RateModel::kER, 2), "index"),
                      {"0", "1"}, RootPrior::kEqual, {}, 0, 0);
  FitOptions options;
  options.max_iter = 300;
  RecordingObserver recorder;
  FitControls controls;
  controls.observer = &recorder;
  McemOptions mcem;
  mcem.tol = 1e-5;
  const RestartResult<MkParams> r = RunMcem(MkMonteCarloFamily(model, true, PathSampler::kAuto),
                                            model.Start(0, 0), options, mcem, controls, 0, 3);
  const Eigen::VectorXd se =
      StandardErrors(model, true, r.params, recorder.events.back().sample_size, true);
  EXPECT_LE(std::abs(model.RatesOf(r.params)[0] - std::log(3.0) / 4), 3 * se[0]);
  EXPECT_NEAR(r.summary.log_likelihood, -std::log(12.0), 1e-3);
}

TEST(MkMonteCarloEm, SampleSizeGrowsAtTheEmFixedPoint) {
  const Problem p(60, 401, RateModel::kER);
  RecordingObserver recorder;
  FitControls controls;
  controls.observer = &recorder;
  RunMonteCarloEm(p, true, 5, controls, &p.optimum, 1);
  ASSERT_EQ(recorder.events.size(), 2u);
  // At the fixed point the improvement is noise: the lower bound fails and draws are added.
  EXPECT_GT(recorder.events[1].sample_size, McemOptions{}.initial_sample_size);
}

TEST(MkMonteCarloEm, EventsCarryTheMonteCarloFiguresAndTheGuardHolds) {
  const Problem p(80, 501, RateModel::kARD, RootPrior::kEqual, /*interior=*/false);
  RecordingObserver recorder;
  FitControls controls;
  controls.observer = &recorder;
  const RestartResult<MkParams> r = RunMonteCarloEm(p, true, 7, controls);
  ASSERT_GE(recorder.events.size(), 3u);
  EXPECT_EQ(recorder.events[0].sample_size, 0);
  EXPECT_TRUE(std::isnan(recorder.events[0].improvement));
  for (size_t t = 1; t < recorder.events.size(); ++t) {
    const IterationEvent& e = recorder.events[t];
    EXPECT_GE(e.sample_size, McemOptions{}.initial_sample_size);
    EXPECT_GT(e.improvement_se, 0);
    EXPECT_TRUE(std::isfinite(e.improvement));
    // The exact log-likelihood never falls by more than the guard.
    EXPECT_GE(e.log_likelihood, recorder.events[t - 1].log_likelihood - McemOptions{}.guard);
    if (e.update_accepted) {
      EXPECT_GE(e.improvement, 0);
    }
  }
  // Sample sizes never shrink.
  for (size_t t = 2; t < recorder.events.size(); ++t) {
    EXPECT_GE(recorder.events[t].sample_size, recorder.events[t - 1].sample_size);
  }
  EXPECT_THAT(r.summary.message, ::testing::HasSubstr("upper confidence bound"));
  EXPECT_EQ(r.summary.history.back(), r.summary.log_likelihood);
}

TEST(MkMonteCarloEm, IsReproducibleAndIndependentOfTheThreadCount) {
  const Problem p(200, 601, RateModel::kSYM);
  ThreadPool pool(2);
  FitControls threaded;
  threaded.pool = &pool;
  for (bool rao_blackwell : {true, false}) {
    const RestartResult<MkParams> a = RunMonteCarloEm(p, rao_blackwell, 9, {}, nullptr, 6);
    const RestartResult<MkParams> b = RunMonteCarloEm(p, rao_blackwell, 9, threaded, nullptr, 6);
    EXPECT_EQ(a.params.q, b.params.q);
    EXPECT_EQ(a.summary.history, b.summary.history);
  }
}

TEST(MkMonteCarloEm, StationaryRootLandsNearTheExactOptimum) {
  const Problem p(120, 701, RateModel::kARD, RootPrior::kStationary);
  const RestartResult<MkParams> r = RunMonteCarloEm(p, true, 11);
  EXPECT_LT(p.optimum_ll - r.summary.log_likelihood, 0.01);
}

TEST(MkMonteCarloEm, RaoBlackwellisationReducesTheVarianceOfTheRates) {
  const Problem p(120, 801, RateModel::kSYM);
  const Eigen::VectorXd rb = StandardErrors(*p.model, true, p.optimum, 4000, false);
  const Eigen::VectorXd plain = StandardErrors(*p.model, false, p.optimum, 4000, false);
  for (int i = 0; i < rb.size(); ++i) {
    EXPECT_LT(rb[i], plain[i]) << "rate " << i;
    std::printf("rate %d: SE plain %.4g, Rao-Blackwellised %.4g (variance ratio %.1f)\n", i,
                plain[i], rb[i], plain[i] * plain[i] / (rb[i] * rb[i]));
  }
}

TEST(MkMonteCarloEm, IncrementStandardErrorsCoverTheExactImprovementAtTheNominalRate) {
  // The ascent test's interval mean(Delta) +- z ASE around the exact improvement
  // Q(theta' | theta) - Q(theta | theta) (ExpectedLogJoint at the exact E-step), over 400
  // independent samples of 100 draws: 90% intervals should cover about 90% of the time
  // (algorithms.md T42; the binomial standard error of the rate is 1.5%).
  const Problem p(60, 901, RateModel::kSYM);
  const MkParams at = p.model->Start(0, 0);
  Eigen::VectorXd moved = p.model->RatesOf(at);
  moved[0] *= 1.3;
  moved[1] *= 0.8;
  const MkParams next = p.model->ParamsFromRates(moved);
  const MkFamily exact(*p.model);
  MkFamily::Stats stats = exact.NewStats();
  ASSERT_THAT(exact.EStep(at, {}, &stats), IsOk());
  const double truth = exact.ExpectedLogJoint(stats, next) - exact.ExpectedLogJoint(stats, at);
  const double z = ::emfit::internal::NormalQuantile(0.95);
  for (bool rao_blackwell : {true, false}) {
    SCOPED_TRACE(rao_blackwell ? "Rao-Blackwellised" : "path tallies");
    const MkMonteCarloFamily family(*p.model, rao_blackwell, PathSampler::kAuto);
    MkMonteCarloFamily::Sample sample = family.NewSample();
    int covered = 0;
    const int replicates = 400;
    for (int r = 0; r < replicates; ++r) {
      ASSERT_THAT(family.StartSample(at, {}, &sample), IsOk());
      ASSERT_THAT(family.Draw(100, 5000 + r, 0, {}, &sample), IsOk());
      Eigen::VectorXd delta;
      ASSERT_THAT(family.Increments(sample, next, {}, &delta), IsOk());
      const double mean = delta.mean();
      const double ase = std::sqrt((delta.array() - mean).square().sum() / 99) / 10;
      covered += std::abs(mean - truth) <= z * ase;
    }
    const double rate = static_cast<double>(covered) / replicates;
    EXPECT_GT(rate, 0.85);
    EXPECT_LT(rate, 0.95);
    std::printf("%s: 90%% intervals covered the exact improvement %.1f%% of the time\n",
                rao_blackwell ? "Rao-Blackwellised" : "path tallies", 100 * rate);
  }
}

TEST(McemOptions, RefuseSquaremAndBadValues) {
  FitOptions options;
  options.acceleration = Acceleration::kSquarem;
  EXPECT_THAT(CheckMcemOptions(options, McemOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument, "SQUAREM cannot be combined"));
  options.acceleration = Acceleration::kNone;
  EXPECT_THAT(CheckMcemOptions(options, McemOptions{}), IsOk());
  McemOptions bad;
  bad.alpha = 0.7;
  EXPECT_THAT(CheckMcemOptions(options, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, "mcem.alpha"));
  bad = McemOptions{};
  bad.max_sample_size = 10;
  EXPECT_THAT(CheckMcemOptions(options, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, "mcem.initial_sample_size"));
}

TEST(McemNormalQuantile, MatchesTabulatedValues) {
  EXPECT_NEAR(::emfit::internal::NormalQuantile(0.75), 0.6744897501960817, 1e-12);
  EXPECT_NEAR(::emfit::internal::NormalQuantile(0.95), 1.6448536269514722, 1e-12);
  EXPECT_NEAR(::emfit::internal::NormalQuantile(0.5), 0.0, 1e-12);
}

}  // namespace
}  // namespace emfit::mk::internal
