// Exact EM for the Mk model (docs/algorithms.md §4.3-4.4, §4.7, oracles 31-33, 37, 46).
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "emfit/em/driver.h"
#include "emfit/exec/thread_pool.h"
#include "emfit/mk/mk.h"
#include "emfit/mk/tree.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/family.h"
#include "mk/model.h"
#include "mk/pruning.h"
#include "testing/mk_trees.h"
#include "testing/status_matchers.h"

namespace emfit::mk::internal {
namespace {

using ::emfit::testing::IsOk;

Tree ParseOrDie(const std::string& text) {
  absl::StatusOr<Tree> t = ParseNewick(text);
  EXPECT_THAT(t, IsOk());
  return t.ok() ? *std::move(t) : Tree{};
}

std::vector<std::string> Names(int k) {
  std::vector<std::string> names;
  for (int i = 0; i < k; ++i) names.push_back(std::string(1, static_cast<char>('a' + i)));
  return names;
}

// Tips for C characters from 0-based states (-1 missing), tips x C.
MkTips Tips(const Tree& tree, const std::vector<std::vector<int>>& states, int k) {
  MkTips tips;
  tips.labels = tree.TipLabels();
  const int chars = static_cast<int>(states[0].size());
  tips.likelihoods = Eigen::MatrixXd::Zero(tree.num_tips, chars * k);
  for (int i = 0; i < tree.num_tips; ++i) {
    for (int c = 0; c < chars; ++c) {
      if (states[i][c] < 0) {
        tips.likelihoods.row(i).segment(c * k, k).setOnes();
      } else {
        tips.likelihoods(i, c * k + states[i][c]) = 1;
      }
    }
  }
  return tips;
}

MkTips Tips1(const Tree& tree, const std::vector<int>& states, int k) {
  std::vector<std::vector<int>> s;
  for (int x : states) s.push_back({x});
  return Tips(tree, s, k);
}

// A fit's pieces, kept alive together.
struct Problem {
  Tree tree;
  TreeData data;
  std::unique_ptr<MkModel> model;
  std::unique_ptr<MkFamily> family;

  Problem(Tree t, const MkTips& tips, const Eigen::MatrixXi& index,
          RootPrior root = RootPrior::kEqual, Eigen::VectorXd root_probs = {}, double q_min = 0,
          double q_max = 0)
      : tree(std::move(t)) {
    absl::StatusOr<TreeData> d = MatchTips(tree, tips, static_cast<int>(index.rows()));
    EXPECT_THAT(d, IsOk());
    data = *std::move(d);
    absl::StatusOr<RateLayout> layout = RateLayout::FromIndex(index, "index");
    EXPECT_THAT(layout, IsOk());
    model = std::make_unique<MkModel>(data, *layout, Names(static_cast<int>(index.rows())), root,
                                      root_probs, q_min, q_max);
    family = std::make_unique<MkFamily>(*model);
  }

  double LogLikelihood(const MkParams& p) const {
    Upward up;
    const Generator g = model->MakeGenerator(p);
    EXPECT_THAT(model->Prune(p, g, {}, &up), IsOk());
    return up.total;
  }
  // Gradient of l in log rates by the Fisher identity: d l / d ln theta_p = sum over the cells
  // of (E[N_ij] - q_ij E[T_i]) (algorithms.md §4.7).
  Eigen::VectorXd LogGradient(const MkParams& p) const {
    MkFamily::Stats s = family->NewStats();
    EXPECT_THAT(family->EStep(p, {}, &s), IsOk());
    const Eigen::VectorXd rates = model->RatesOf(p);
    Eigen::VectorXd g = Eigen::VectorXd::Zero(rates.size());
    for (int r = 0; r < rates.size(); ++r) {
      for (const auto& [i, j] : model->layout().cells[r]) g[r] += s.n(i, j) - rates[r] * s.t[i];
    }
    return g;
  }
};

RestartResult<MkParams> RunExactEm(const Problem& p, const MkParams& start, int max_iter = 100000,
                                   Acceleration acceleration = Acceleration::kNone,
                                   double tol = 1e-13) {
  FitOptions options;
  options.max_iter = max_iter;
  options.tol = tol;
  options.acceleration = acceleration;
  return RunEm(*p.family, start, options, {}, 0, 0);
}

constexpr char kTreeA[] = "((A:1.0,B:1.0):4.0,(C:2.0,(D:1.5,E:1.5):0.5):3.0);";
constexpr char kTreeB[] = "((A:1,B:1):1,(C:1,D:1):1);";

TEST(MkExactEm, FindsTheTreeBOptimum) {
  Tree tree = ParseOrDie(kTreeB);
  const MkTips tips = Tips1(tree, {0, 0, 1, 1}, 2);
  const Problem p(std::move(tree), tips, RateIndex(RateModel::kER, 2));
  const RestartResult<MkParams> r =
      RunExactEm(p, p.model->Start(0, 0), 10000, Acceleration::kSquarem, 1e-15);
  EXPECT_NEAR(p.model->RatesOf(r.params)[0], std::log(3.0) / 4, 1e-7);
  EXPECT_NEAR(r.summary.log_likelihood, -std::log(12.0), 1e-12);
  testing::ExpectNonDecreasing(r.summary.history);
}

TEST(MkExactEm, StopsAtTheUpperBoundOnTreeAAndFlagsIt) {
  Tree tree = ParseOrDie(kTreeA);
  const MkTips tips = Tips1(tree, {0, 1, 1, 0, 0}, 2);
  const Problem p(std::move(tree), tips, RateIndex(RateModel::kER, 2));
  const RestartResult<MkParams> r =
      RunExactEm(p, p.model->Start(0, 0), 100000, Acceleration::kNone, 1e-12);
  EXPECT_NEAR(p.model->RatesOf(r.params)[0], p.model->q_max(), 1e-9 * p.model->q_max());
  EXPECT_NEAR(r.summary.log_likelihood, -5 * std::log(2.0), 1e-9);
  const std::vector<FitWarning> w = p.model->Inspect(r.params);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].code, "rate_at_bound");
  EXPECT_THAT(w[0].message, ::testing::HasSubstr("upper bound"));
}

TEST(MkExactEm, MatchesTheCherryClosedFormWithManyCharacters) {
  // k = 3, branches 0.5 and 0.7, C = 10 characters of which m = 3 differ.
  Tree tree = ParseOrDie("(X:0.5,Y:0.7);");
  std::vector<std::vector<int>> states(2, std::vector<int>(10, 0));
  for (int c = 0; c < 10; ++c) states[0][c] = states[1][c] = c % 3;
  states[1][0] = 1;
  states[1][4] = 2;
  states[1][8] = 0;
  const MkTips tips = Tips(tree, states, 3);
  const Problem p(std::move(tree), tips, RateIndex(RateModel::kER, 3));
  const RestartResult<MkParams> r = RunExactEm(p, p.model->Start(0, 0));
  const double want = -std::log(1 - 3.0 * 3 / (2.0 * 10)) / (3 * 1.2);
  EXPECT_NEAR(want, 0.1660658335, 1e-10);
  EXPECT_NEAR(p.model->RatesOf(r.params)[0], want, 1e-7);
}

// Maximises l over log rates by BFGS with a backtracking (Armijo) line search, the gradient
// from the Fisher identity: an optimiser independent of EM (algorithms.md §4.7).
Eigen::VectorXd DirectMaximum(const Problem& p, Eigen::VectorXd x) {
  auto params = [&](const Eigen::VectorXd& y) {
    return p.model->ParamsFromRates(y.array().exp().matrix());
  };
  const int n = static_cast<int>(x.size());
  double f = p.LogLikelihood(params(x));
  Eigen::VectorXd g = p.LogGradient(params(x));
  Eigen::MatrixXd h = Eigen::MatrixXd::Identity(n, n);  // inverse Hessian of -l
  for (int it = 0; it < 2000 && g.lpNorm<Eigen::Infinity>() > 1e-10; ++it) {
    Eigen::VectorXd d = h * g;
    if (d.dot(g) <= 0) {
      h.setIdentity();
      d = g;
    }
    // Never more than 1 in any log rate at once (the likelihood is flat far out).
    double step = std::min(1.0, 1.0 / d.lpNorm<Eigen::Infinity>());
    Eigen::VectorXd y;
    double fy = f;
    for (int back = 0; back < 60; ++back, step *= 0.5) {
      y = x + step * d;
      fy = p.LogLikelihood(params(y));
      if (fy >= f + 1e-4 * step * d.dot(g)) break;
    }
    if (!(fy > f)) break;
    const Eigen::VectorXd gy = p.LogGradient(params(y));
    const Eigen::VectorXd s = y - x, u = g - gy;  // u: change of the gradient of -l
    const double su = s.dot(u);
    if (su > 1e-300) {
      const Eigen::MatrixXd i = Eigen::MatrixXd::Identity(n, n);
      h = (i - s * u.transpose() / su) * h * (i - u * s.transpose() / su) + s * s.transpose() / su;
    }
    x = y;
    f = fy;
    g = gy;
  }
  return x;
}

TEST(MkExactEm, FixedPointEqualsTheDirectMaximumOnRandomTrees) {
  for (RateModel model : {RateModel::kSYM, RateModel::kARD}) {
    for (int trial = 0; trial < 2; ++trial) {
      SCOPED_TRACE(std::string(RateModelName(model)) + " trial " + std::to_string(trial));
      Tree tree = ParseOrDie(testing::RandomNewick(150, 700 + trial, 0.05, 0.5));
      const Eigen::MatrixXd truth = testing::RandomGenerator(3, 710 + trial, 0.3, 1.0);
      const MkTips tips = Tips1(
          tree,
          testing::SimulateTipStates(tree, truth, Eigen::Vector3d::Constant(1.0 / 3), 720 + trial),
          3);
      const Problem p(std::move(tree), tips, RateIndex(model, 3));
      const RestartResult<MkParams> em =
          RunExactEm(p, p.model->Start(0, 0), 100000, Acceleration::kSquarem, 1e-15);
      testing::ExpectNonDecreasing(em.summary.history);
      const Eigen::VectorXd em_rates = p.model->RatesOf(em.params);
      ASSERT_TRUE(p.model->Inspect(em.params).empty()) << "an MLE on the boundary";
      const Eigen::VectorXd direct =
          DirectMaximum(p, p.model->layout().Rates(truth).array().log().matrix())
              .array()
              .exp()
              .matrix();
      EXPECT_NEAR(em.summary.log_likelihood, p.LogLikelihood(p.model->ParamsFromRates(direct)),
                  1e-8);
      EXPECT_TRUE(em_rates.isApprox(direct, 1e-6)) << em_rates.transpose() << "\nvs direct\n"
                                                   << direct.transpose();
    }
  }
}

TEST(MkExactEm, PlainEmIsMonotoneAndSquaremReachesItsFixedPoint) {
  Tree tree = ParseOrDie(testing::RandomNewick(30, 901, 0.05, 0.8));
  std::mt19937_64 rng(902);
  std::vector<int> states;
  for (int i = 0; i < tree.num_tips; ++i) states.push_back(static_cast<int>(rng() % 3));
  const MkTips tips = Tips1(tree, states, 3);
  const Problem p(std::move(tree), tips, RateIndex(RateModel::kARD, 3));
  const RestartResult<MkParams> em =
      RunExactEm(p, p.model->Start(0, 0), 20000, Acceleration::kNone, 0);
  testing::ExpectNonDecreasing(em.summary.history);
  const RestartResult<MkParams> sq =
      RunExactEm(p, p.model->Start(0, 0), 20000, Acceleration::kSquarem, 1e-15);
  testing::ExpectNonDecreasing(sq.summary.history);
  EXPECT_NEAR(sq.summary.log_likelihood, em.summary.log_likelihood, 1e-8);
  EXPECT_LT(sq.summary.iterations, em.summary.iterations);
  std::printf("ARD k=3: EM %d iterations, SQUAREM %d cycles\n", em.summary.iterations,
              sq.summary.iterations);
}

TEST(MkExactEm, ExpectedLogJointIsAMinorizerTouchingTheLogLikelihood) {
  // EM's inequality: Q(theta | q_t) - Q(theta_t | q_t) <= l(theta) - l(theta_t) for every
  // theta, with equal gradients at theta_t (algorithms.md §6).
  Tree tree = ParseOrDie(testing::RandomNewick(15, 1001));
  std::mt19937_64 rng(1002);
  std::vector<int> states;
  for (int i = 0; i < tree.num_tips; ++i) states.push_back(static_cast<int>(rng() % 3));
  const MkTips tips = Tips1(tree, states, 3);
  Eigen::VectorXd rho(3);
  rho << 0.2, 0.5, 0.3;
  for (RootPrior root : {RootPrior::kEqual, RootPrior::kGiven, RootPrior::kStationary}) {
    SCOPED_TRACE(RootPriorName(root));
    const Problem p(tree, tips, RateIndex(RateModel::kARD, 3), root, rho);
    const MkParams at = p.model->ParamsFromRates(p.model->RatesOf(MkParams{
        Names(3), RateIndex(RateModel::kARD, 3), testing::RandomGenerator(3, 1003), root, rho}));
    MkFamily::Stats s = p.family->NewStats();
    absl::StatusOr<double> l0 = p.family->EStep(at, {}, &s);
    ASSERT_THAT(l0, IsOk());
    const double q0 = p.family->ExpectedLogJoint(s, at);
    std::uniform_real_distribution<double> u(-1, 1);
    for (int trial = 0; trial < 20; ++trial) {
      Eigen::VectorXd x = p.model->RatesOf(at);
      for (int r = 0; r < x.size(); ++r) x[r] *= std::exp(u(rng));
      const MkParams theta = p.model->ParamsFromRates(x);
      EXPECT_LE(p.family->ExpectedLogJoint(s, theta) - q0, p.LogLikelihood(theta) - *l0 + 1e-10);
    }
    // Equal derivatives along each log rate.
    const Eigen::VectorXd base = p.model->RatesOf(at);
    for (int r = 0; r < base.size(); ++r) {
      Eigen::VectorXd up = base, down = base;
      up[r] *= std::exp(1e-6);
      down[r] *= std::exp(-1e-6);
      const MkParams pu = p.model->ParamsFromRates(up), pd = p.model->ParamsFromRates(down);
      const double dq =
          (p.family->ExpectedLogJoint(s, pu) - p.family->ExpectedLogJoint(s, pd)) / 2e-6;
      const double dl = (p.LogLikelihood(pu) - p.LogLikelihood(pd)) / 2e-6;
      EXPECT_NEAR(dq, dl, 1e-6 * std::max(1.0, std::abs(dl))) << "rate " << r;
    }
  }
}

TEST(MkExactEm, StationaryRootTakesGeneralisedStepsThatNeverLowerTheLikelihood) {
  Tree tree = ParseOrDie(testing::RandomNewick(25, 1101, 0.05, 1.0));
  std::mt19937_64 rng(1102);
  std::vector<int> states;
  for (int i = 0; i < tree.num_tips; ++i) states.push_back(static_cast<int>(rng() % 3));
  const MkTips tips = Tips1(tree, states, 3);
  const Problem p(std::move(tree), tips, RateIndex(RateModel::kARD, 3), RootPrior::kStationary);
  const RestartResult<MkParams> em =
      RunExactEm(p, p.model->Start(0, 0), 5000, Acceleration::kNone, 0);
  testing::ExpectNonDecreasing(em.summary.history);
  // The fixed point is (close to) the direct maximum of the stationary-root likelihood.
  const Eigen::VectorXd em_log = p.model->RatesOf(em.params).array().log().matrix();
  auto ll = [&](const Eigen::VectorXd& x) {
    return p.LogLikelihood(p.model->ParamsFromRates(x.array().exp().matrix()));
  };
  for (int r = 0; r < em_log.size(); ++r) {
    Eigen::VectorXd a = em_log, b = em_log;
    a[r] += 1e-3;
    b[r] -= 1e-3;
    EXPECT_LT(std::abs(ll(a) - ll(b)) / 2e-3, 1e-3) << "rate " << r << " is not at a maximum";
  }
}

TEST(MkExactEm, IdenticalTipsPutTheRateAtItsFloorWithAWarning) {
  Tree tree = ParseOrDie(testing::RandomNewick(12, 1201));
  const MkTips tips = Tips1(tree, std::vector<int>(12, 1), 3);
  const Problem p(std::move(tree), tips, RateIndex(RateModel::kER, 3));
  const RestartResult<MkParams> em =
      RunExactEm(p, p.model->Start(0, 0), 100000, Acceleration::kSquarem, 1e-14);
  EXPECT_NEAR(p.model->RatesOf(em.params)[0], p.model->q_min(), 1e-6 * p.model->q_min() + 1e-12);
  const std::vector<FitWarning> w = p.model->Inspect(em.params);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_THAT(w[0].message, ::testing::HasSubstr("lower bound"));
}

TEST(MkExactEm, HandlesZeroTinyAndVeryLongBranchesAndAbsorbingStates) {
  Tree tree =
      ParseOrDie("(((A:0,B:1e-8):0.5,(C:0,D:0):0.3):1,((E:300,F:0.2):1e-8,(G:1,H:1)x:0):2);");
  const MkTips tips = Tips1(tree, {0, 1, 2, 2, 0, 1, -1, 2}, 3);
  Eigen::MatrixXi index = RateIndex(RateModel::kARD, 3);
  index.row(2).setZero();  // state 2 is absorbing
  const Problem p(std::move(tree), tips, index);
  const RestartResult<MkParams> em =
      RunExactEm(p, p.model->Start(0, 0), 2000, Acceleration::kSquarem, 1e-12);
  EXPECT_NE(em.summary.reason, TerminationReason::kNumericalFailure)
      << em.summary.message << " after " << em.summary.iterations << "\n"
      << em.params.q;
  testing::ExpectNonDecreasing(em.summary.history);
  EXPECT_TRUE(em.params.q.row(2).isZero(0));
  MkFamily::Stats s = p.family->NewStats();
  ASSERT_THAT(p.family->EStep(em.params, {}, &s), IsOk());
  EXPECT_NEAR(s.t.sum(), p.tree.TotalLength(), 1e-9 * p.tree.TotalLength());
  EXPECT_TRUE(s.n.row(2).isZero(0));
}

TEST(MkExactEm, IsIndependentOfTheThreadCount) {
  Tree tree = ParseOrDie(testing::RandomNewick(1500, 1301, 0.01, 0.3));
  std::mt19937_64 rng(1302);
  std::vector<int> states;
  for (int i = 0; i < tree.num_tips; ++i) states.push_back(static_cast<int>(rng() % 4));
  const MkTips tips = Tips1(tree, states, 4);
  const Problem p(std::move(tree), tips, RateIndex(RateModel::kARD, 4));
  MkFamily::Stats a = p.family->NewStats(), b = p.family->NewStats();
  const MkParams start = p.model->Start(1, 5);
  ThreadPool pool(2);
  FitControls threaded;
  threaded.pool = &pool;
  absl::StatusOr<double> la = p.family->EStep(start, {}, &a);
  absl::StatusOr<double> lb = p.family->EStep(start, threaded, &b);
  ASSERT_THAT(la, IsOk());
  ASSERT_THAT(lb, IsOk());
  EXPECT_EQ(*la, *lb);
  EXPECT_EQ(a.n, b.n);
  EXPECT_EQ(a.t, b.t);
}

}  // namespace
}  // namespace emfit::mk::internal
