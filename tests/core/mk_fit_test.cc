// The Mk family's public API: Fit (exact EM, SQUAREM, Monte Carlo EM), Score, NodePosteriors
// and bad input, against the phytools fixture (tools/make_phytools_fixtures.R).
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "emfit/exec/thread_pool.h"
#include "emfit/mk/mk.h"
#include "emfit/mk/tree.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/data.h"
#include "testing/mk_trees.h"
#include "testing/observers.h"
#include "testing/status_matchers.h"

namespace emfit::mk {
namespace {

using ::emfit::testing::RecordingObserver;

using ::emfit::testing::IsOk;
using ::emfit::testing::StatusIs;
using ::testing::HasSubstr;

using Anoles = testing::Anoles;
using testing::LoadAnoles;
using testing::ReadFile;

// The numbers after `"key": ` (a number or a [list]) inside the fixture's `model` block.
std::vector<double> FixtureValues(const std::string& json, const std::string& model,
                                  const std::string& key) {
  const size_t block = json.find("\"" + model + "\": {");
  EXPECT_NE(block, std::string::npos) << model;
  const size_t at = json.find("\"" + key + "\":", block);
  const size_t colon = json.find(':', at);
  const size_t bracket = json.find_first_not_of(' ', colon + 1);
  const bool is_list = json[bracket] == '[';
  const size_t begin = is_list ? bracket + 1 : bracket;
  const size_t end = is_list ? json.find(']', begin) : json.find_first_of(",\n}", begin);
  std::vector<double> out;
  const std::string list = json.substr(begin, end - begin);
  for (absl::string_view v : absl::StrSplit(list, ',')) {
    double x = 0;
    if (absl::SimpleAtod(absl::StripAsciiWhitespace(v), &x)) out.push_back(x);
  }
  return out;
}

MkSpec Spec(const Anoles& a, RateModel rates) {
  MkSpec spec;
  spec.state_names = a.states;
  spec.rates = rates;
  return spec;
}

FitOptions Tight() {
  FitOptions options;
  options.tol = 1e-12;
  options.max_iter = 100000;
  options.acceleration = Acceleration::kSquarem;
  return options;
}

TEST(MkFit, MatchesPhytoolsFitMkOnTheAnolesForErSymAndArd) {
  const Anoles a = LoadAnoles();
  const std::string json =
      ReadFile(std::string(EMFIT_TESTS_DIR) + "/fixtures/phytools_anoles.json");
  for (RateModel rates : {RateModel::kER, RateModel::kSYM, RateModel::kARD}) {
    const std::string name = RateModelName(rates);
    SCOPED_TRACE(name);
    absl::StatusOr<MkFitResult> fit = Fit(a.tree, a.tips, Spec(a, rates), Tight());
    ASSERT_THAT(fit, IsOk());
    const double want = FixtureValues(json, name, "log_likelihood")[0];
    // The same maximum: phytools puts vanishing rates at exactly 0, emfit at q_min (1e-10 / mean
    // branch length), which costs q_min times their dwelling time (< 1e-7 here).
    EXPECT_NEAR(fit->summary.log_likelihood, want, 1e-7);
    const std::vector<double> rates_want = FixtureValues(json, name, "rates");
    const Eigen::VectorXd got = fit->params.Rates();
    ASSERT_EQ(got.size(), static_cast<Eigen::Index>(rates_want.size()));
    for (int i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], rates_want[i], 2e-5) << "rate " << i;
    EXPECT_NEAR(fit->summary.aic, FixtureValues(json, name, "aic")[0], 2e-7);
    EXPECT_EQ(fit->summary.num_free_parameters, static_cast<int64_t>(rates_want.size()));
    testing::ExpectNonDecreasing(fit->summary.history);
  }
  // ape::ace's root weighs every state 1: its log-likelihood is the equal prior's plus ln k.
  absl::StatusOr<MkFitResult> er = Fit(a.tree, a.tips, Spec(a, RateModel::kER), Tight());
  ASSERT_THAT(er, IsOk());
  EXPECT_NEAR(er->summary.log_likelihood + std::log(6.0),
              FixtureValues(json, "fitMk", "ace_er_log_likelihood")[0], 1e-6);
}

TEST(MkFit, ReportsPosteriorsCountsAndTimesAtTheFittedModel) {
  const Anoles a = LoadAnoles();
  absl::StatusOr<MkFitResult> fit = Fit(a.tree, a.tips, Spec(a, RateModel::kSYM), Tight());
  ASSERT_THAT(fit, IsOk());
  const MkPosteriors& p = fit->posteriors;
  EXPECT_EQ(p.nodes.rows(), a.tree.num_nodes());
  for (int v = 0; v < a.tree.num_nodes(); ++v) EXPECT_NEAR(p.nodes.row(v).sum(), 1.0, 1e-12);
  EXPECT_NEAR(p.dwelling_times.sum(), a.tree.TotalLength(), 1e-9);
  EXPECT_NEAR(p.log_likelihood, fit->summary.log_likelihood, 1e-12);
  // At the MLE, EM's fixed point: the expected counts reproduce the rates (theta = N / T).
  const Eigen::VectorXd rates = fit->params.Rates();
  const Eigen::MatrixXi& index = fit->params.index;
  for (int r = 0; r < rates.size(); ++r) {
    double n = 0, t = 0;
    for (int i = 0; i < 6; ++i) {
      for (int j = 0; j < 6; ++j) {
        if (index(i, j) == r + 1) {
          n += p.transitions(i, j);
          t += p.dwelling_times[i];
        }
      }
    }
    EXPECT_NEAR(std::max(n / t, 0.0), rates[r], 1e-6 * std::max(1.0, rates[r]) + 1e-9);
  }
  absl::StatusOr<MkScore> score = Score(fit->params, a.tree, a.tips);
  ASSERT_THAT(score, IsOk());
  EXPECT_NEAR(score->log_likelihood, fit->summary.log_likelihood, 1e-12);
  EXPECT_NEAR(score->aic, fit->summary.aic, 1e-9);
  EXPECT_NEAR(score->bic, fit->summary.bic, 1e-9);
  absl::StatusOr<MkPosteriors> again = NodePosteriors(fit->params, a.tree, a.tips);
  ASSERT_THAT(again, IsOk());
  EXPECT_TRUE(again->nodes.isApprox(p.nodes, 1e-14));
}

TEST(MkFit, SquaremIsMonotoneAndReachesPlainEmsFixedPoint) {
  const Anoles a = LoadAnoles();
  FitOptions plain = Tight();
  plain.acceleration = Acceleration::kNone;
  absl::StatusOr<MkFitResult> em = Fit(a.tree, a.tips, Spec(a, RateModel::kARD), plain);
  absl::StatusOr<MkFitResult> sq = Fit(a.tree, a.tips, Spec(a, RateModel::kARD), Tight());
  ASSERT_THAT(em, IsOk());
  ASSERT_THAT(sq, IsOk());
  testing::ExpectNonDecreasing(em->summary.history);
  testing::ExpectNonDecreasing(sq->summary.history);
  EXPECT_NEAR(sq->summary.log_likelihood, em->summary.log_likelihood, 1e-8);
  EXPECT_LT(sq->summary.iterations, em->summary.iterations);
  std::printf("anoles ARD: EM %d iterations, SQUAREM %d cycles\n", em->summary.iterations,
              sq->summary.iterations);
}

TEST(MkFit, IsDeterministicAcrossThreadCountsWithRestarts) {
  const Anoles a = LoadAnoles();
  FitOptions options = Tight();
  options.n_init = 3;
  options.seed = 5;
  ThreadPool pool(2);
  FitControls threaded;
  threaded.pool = &pool;
  absl::StatusOr<MkFitResult> one = Fit(a.tree, a.tips, Spec(a, RateModel::kSYM), options);
  absl::StatusOr<MkFitResult> two =
      Fit(a.tree, a.tips, Spec(a, RateModel::kSYM), options, threaded);
  ASSERT_THAT(one, IsOk());
  ASSERT_THAT(two, IsOk());
  EXPECT_EQ(one->params.q, two->params.q);
  EXPECT_EQ(one->summary.history, two->summary.history);
  EXPECT_EQ(one->summary.restarts.size(), 3u);
}

TEST(MkFit, EveryIterationsElboLiesBetweenTheTwoLogLikelihoods) {
  // l(theta_t) <= L(q_t, theta_t+1) <= l(theta_t+1) (algorithms.md §6): the ELBO comes from
  // ExpectedLogJoint, the log-likelihoods from pruning.
  const Anoles a = LoadAnoles();
  for (RootPrior root : {RootPrior::kEqual, RootPrior::kStationary}) {
    SCOPED_TRACE(RootPriorName(root));
    MkSpec spec = Spec(a, RateModel::kSYM);
    spec.root = root;
    FitOptions options = Tight();
    options.acceleration = Acceleration::kNone;
    options.max_iter = 200;
    RecordingObserver recorder;
    FitControls controls;
    controls.observer = &recorder;
    ASSERT_THAT(Fit(a.tree, a.tips, spec, options, controls), IsOk());
    ASSERT_GT(recorder.events.size(), 10u);
    EXPECT_TRUE(std::isnan(recorder.events[0].elbo));
    for (size_t t = 1; t < recorder.events.size(); ++t) {
      const IterationEvent& e = recorder.events[t];
      const double tol = 1e-9 * std::abs(e.log_likelihood);
      EXPECT_GE(e.elbo, recorder.events[t - 1].log_likelihood - tol) << "iteration " << t;
      EXPECT_LE(e.elbo, e.log_likelihood + tol) << "iteration " << t;
      EXPECT_GE(e.kl, -tol);
    }
  }
}

TEST(MkFit, MonteCarloEmStreamsGrowingSamplesAndLandsNearTheExactOptimum) {
  const Anoles a = LoadAnoles();
  absl::StatusOr<MkFitResult> exact = Fit(a.tree, a.tips, Spec(a, RateModel::kER), Tight());
  ASSERT_THAT(exact, IsOk());
  for (bool rao_blackwell : {true, false}) {
    SCOPED_TRACE(rao_blackwell ? "Rao-Blackwellised" : "path tallies");
    MkSpec spec = Spec(a, RateModel::kER);
    spec.estep = EStepMethod::kMonteCarlo;
    spec.rao_blackwell = rao_blackwell;
    FitOptions options;
    options.max_iter = 300;
    options.seed = 1;
    RecordingObserver recorder;
    FitControls controls;
    controls.observer = &recorder;
    absl::StatusOr<MkFitResult> mc = Fit(a.tree, a.tips, spec, options, controls);
    ASSERT_THAT(mc, IsOk());
    EXPECT_TRUE(mc->summary.converged()) << mc->summary.message;
    EXPECT_LT(exact->summary.log_likelihood - mc->summary.log_likelihood, 0.01);
    ASSERT_EQ(mc->rate_standard_errors.size(), 1);
    EXPECT_LE(std::abs(mc->params.Rates()[0] - exact->params.Rates()[0]),
              4 * mc->rate_standard_errors[0]);
    ASSERT_GE(recorder.events.size(), 2u);
    EXPECT_GT(recorder.events.back().sample_size, recorder.events[1].sample_size);
  }
}

TEST(MkFit, RefusesSquaremWithMonteCarloEmAndFitzJohnRoots) {
  const Anoles a = LoadAnoles();
  MkSpec spec = Spec(a, RateModel::kER);
  spec.estep = EStepMethod::kMonteCarlo;
  EXPECT_THAT(Fit(a.tree, a.tips, spec, Tight()),
              StatusIs(absl::StatusCode::kInvalidArgument, "SQUAREM cannot be combined"));
  spec.estep = EStepMethod::kExact;
  spec.root = RootPrior::kFitzJohn;
  EXPECT_THAT(Fit(a.tree, a.tips, spec, Tight()),
              StatusIs(absl::StatusCode::kInvalidArgument, "fitzjohn"));
  // Score accepts it, and it is at least the equal prior's.
  absl::StatusOr<MkFitResult> er = Fit(a.tree, a.tips, Spec(a, RateModel::kER), Tight());
  ASSERT_THAT(er, IsOk());
  MkParams fitzjohn = er->params;
  fitzjohn.root = RootPrior::kFitzJohn;
  absl::StatusOr<MkScore> s = Score(fitzjohn, a.tree, a.tips);
  ASSERT_THAT(s, IsOk());
  EXPECT_GE(s->log_likelihood, er->summary.log_likelihood);
}

TEST(MkSpec, AStartingModelOfAnotherRateStructureOrRootPriorIsRefusedByValidate) {
  const Anoles a = LoadAnoles();
  absl::StatusOr<MkFitResult> er = Fit(a.tree, a.tips, Spec(a, RateModel::kER), Tight());
  ASSERT_THAT(er, IsOk());
  MkSpec spec = Spec(a, RateModel::kARD);
  spec.init_params = er->params;
  // Validate finds it (the server checks a request's spec before its data arrive).
  EXPECT_THAT(spec.Validate(), StatusIs(absl::StatusCode::kInvalidArgument,
                                        "init.index: the starting model's index matrix"));
  spec = Spec(a, RateModel::kER);
  spec.init_params = er->params;
  EXPECT_THAT(spec.Validate(), IsOk());
  spec.root = RootPrior::kStationary;
  EXPECT_THAT(spec.Validate(),
              StatusIs(absl::StatusCode::kInvalidArgument, "init.root: the starting model's"));
}

TEST(MkFit, BadInputIsInvalidArgumentNamingTheProblem) {
  const Anoles a = LoadAnoles();
  // A state outside the declared set.
  EXPECT_THAT(TipLikelihoods({"x", "y"}, {"TG", "XX"}, a.states),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "row 2 ('y'): state 'XX' is not one of the declared states"));
  // An index matrix that is not square, or has a negative entry.
  MkSpec spec = Spec(a, RateModel::kCustom);
  spec.index = Eigen::MatrixXi::Ones(6, 5);
  EXPECT_THAT(Fit(a.tree, a.tips, spec, Tight()),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.mk.index: must be a square"));
  spec.index = Eigen::MatrixXi::Ones(6, 6);
  spec.index(2, 4) = -1;
  EXPECT_THAT(Fit(a.tree, a.tips, spec, Tight()),
              StatusIs(absl::StatusCode::kInvalidArgument, "entry (3, 5) is -1"));
  // Tips of the tree without a row, rows without a tip.
  MkTips fewer = a.tips;
  fewer.labels.pop_back();
  fewer.likelihoods.conservativeResize(fewer.labels.size(), Eigen::NoChange);
  EXPECT_THAT(
      Fit(a.tree, fewer, Spec(a, RateModel::kER), Tight()),
      StatusIs(absl::StatusCode::kInvalidArgument, "1 tip of the tree has no row: 'occultus'"));
  MkTips extra = a.tips;
  extra.labels.push_back("carolinensis");
  extra.likelihoods.conservativeResize(extra.labels.size(), Eigen::NoChange);
  extra.likelihoods.bottomRows(1).setOnes();
  EXPECT_THAT(Fit(a.tree, extra, Spec(a, RateModel::kER), Tight()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "1 row matches no tip of the tree: 'carolinensis'"));
  // With allow_missing_tips: a missing tip and a warning.
  fewer.allow_missing_tips = true;
  RecordingObserver recorder;
  FitControls controls;
  controls.observer = &recorder;
  absl::StatusOr<MkFitResult> fit = Fit(a.tree, fewer, Spec(a, RateModel::kER), Tight(), controls);
  ASSERT_THAT(fit, IsOk());
  EXPECT_EQ(fit->summary.rows_used, 81);
  EXPECT_EQ(fit->summary.rows_skipped, 1);
  ASSERT_FALSE(recorder.warnings.empty());
  EXPECT_EQ(recorder.warnings[0].code, "missing_tips");
  // A duplicate row, a tip allowing no state.
  MkTips twice = a.tips;
  twice.labels[1] = twice.labels[0];
  EXPECT_THAT(Fit(a.tree, twice, Spec(a, RateModel::kER), Tight()),
              StatusIs(absl::StatusCode::kInvalidArgument, "appears in rows 1 and 2"));
  MkTips none = a.tips;
  none.likelihoods.row(3).setZero();
  EXPECT_THAT(Fit(a.tree, none, Spec(a, RateModel::kER), Tight()),
              StatusIs(absl::StatusCode::kInvalidArgument, "row 4 ('imias') allows no state"));
}

}  // namespace
}  // namespace emfit::mk
