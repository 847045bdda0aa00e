// Transition probabilities, pruning and exact expected counts of the Mk model
// (docs/algorithms.md §4.2-4.4, oracles 30-36, 38-39).
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "emfit/mk/mk.h"
#include "emfit/mk/tree.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/model.h"
#include "mk/pruning.h"
#include "testing/mk_trees.h"
#include "testing/status_matchers.h"

namespace emfit::mk::internal {
namespace {

using ::emfit::testing::IsOk;
using ::emfit::testing::ReferenceExpm;

Tree ParseOrDie(const std::string& text) {
  absl::StatusOr<Tree> t = ParseNewick(text);
  EXPECT_THAT(t, IsOk());
  return t.ok() ? *std::move(t) : Tree{};
}

// Tip likelihoods (one character) from 0-based states; -1 = missing.
MkTips Tips(const Tree& tree, const std::vector<int>& states, int k) {
  MkTips tips;
  tips.labels = tree.TipLabels();
  tips.likelihoods = Eigen::MatrixXd::Zero(tree.num_tips, k);
  for (int i = 0; i < tree.num_tips; ++i) {
    if (states[i] < 0) {
      tips.likelihoods.row(i).setOnes();
    } else {
      tips.likelihoods(i, states[i]) = 1;
    }
  }
  return tips;
}

TreeData DataOrDie(const Tree& tree, const MkTips& tips, int k) {
  absl::StatusOr<TreeData> d = MatchTips(tree, tips, k);
  EXPECT_THAT(d, IsOk());
  return d.ok() ? *std::move(d) : TreeData{};
}

double LogLikelihood(const TreeData& data, const Eigen::MatrixXd& q, RootPrior root,
                     const Eigen::VectorXd& rho, bool symmetric) {
  const Generator g(q, symmetric);
  Upward up;
  EXPECT_THAT(PruneUp(data, g, root, rho, {}, &up), IsOk());
  return up.total;
}

Eigen::MatrixXd ErQ(int k, double rate) {
  Eigen::MatrixXd q = Eigen::MatrixXd::Constant(k, k, rate);
  q.diagonal().setConstant(-(k - 1) * rate);
  return q;
}

Eigen::VectorXd Equal(int k) { return Eigen::VectorXd::Constant(k, 1.0 / k); }

TEST(MkTransition, MatchesTheTwoStateClosedForm) {
  const double a = 0.7, b = 1.9, s = a + b;
  Eigen::MatrixXd q(2, 2);
  q << -a, a, b, -b;
  const Generator g(q, false);
  for (double t : {1e-8, 0.01, 0.5, 3.0, 40.0}) {
    Eigen::MatrixXd p;
    g.Transition(t, &p);
    const double e = std::exp(-s * t);
    EXPECT_NEAR(p(0, 0), b / s + a / s * e, 1e-13) << t;
    EXPECT_NEAR(p(0, 1), a / s * (1 - e), 1e-13) << t;
    EXPECT_NEAR(p(1, 0), b / s * (1 - e), 1e-13) << t;
    EXPECT_NEAR(p(1, 1), a / s + b / s * e, 1e-13) << t;
  }
}

TEST(MkTransition, MatchesTheEqualRatesClosedFormByEigenAndPade) {
  for (int k : {2, 3, 6}) {
    const double rate = 0.37;
    for (bool symmetric : {true, false}) {
      const Generator g(ErQ(k, rate), symmetric);
      for (double t : {0.001, 0.3, 2.0, 25.0}) {
        Eigen::MatrixXd p;
        g.Transition(t, &p);
        const double e = std::exp(-k * rate * t);
        for (int i = 0; i < k; ++i) {
          for (int j = 0; j < k; ++j) {
            const double want = i == j ? 1.0 / k + (k - 1.0) / k * e : (1 - e) / k;
            EXPECT_NEAR(p(i, j), want, 1e-13) << "k=" << k << " t=" << t;
          }
        }
      }
    }
  }
}

TEST(MkTransition, IsTheIdentityAtZeroAndASemigroup) {
  const Eigen::MatrixXd q = testing::RandomGenerator(4, 30);
  const Generator g(q, false);
  Eigen::MatrixXd p0, ps, pt, pst;
  g.Transition(0, &p0);
  EXPECT_TRUE(p0.isIdentity(0));
  g.Transition(0.3, &ps);
  g.Transition(1.1, &pt);
  g.Transition(1.4, &pst);
  EXPECT_TRUE((ps * pt).isApprox(pst, 1e-13));
  EXPECT_TRUE(pst.isApprox(ReferenceExpm(q * 1.4), 1e-12));
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(pst.row(i).sum(), 1.0, 1e-15);
}

// E[N_ij | a -> b] and E[T_i | a -> b] on one branch from the integral (§4.4).
void EndpointExpectations(const Generator& g, double t, int a, int b, Eigen::MatrixXd* n,
                          Eigen::VectorXd* times) {
  const int k = g.k();
  Eigen::MatrixXd p;
  g.Transition(t, &p);
  Eigen::MatrixXd bt = Eigen::MatrixXd::Zero(k, k);
  bt(b, a) = 1.0 / p(a, b);  // B^T
  Eigen::MatrixXd integral;
  g.Integral(t, bt, &integral);
  const Eigen::MatrixXd s = integral.transpose();
  *n = g.q().cwiseProduct(s);
  n->diagonal().setZero();
  *times = s.diagonal();
}

TEST(MkIntegral, MatchesTheSymmetricTwoStateClosedForms) {
  for (bool symmetric : {true, false}) {
    for (double t : {0.05, 0.8, 3.0}) {
      const double rate = 1.3, lambda = rate * t;
      const Generator g(ErQ(2, rate), symmetric);
      Eigen::MatrixXd n;
      Eigen::VectorXd times;
      EndpointExpectations(g, t, 0, 0, &n, &times);
      EXPECT_NEAR(n.sum(), lambda * std::tanh(lambda), 1e-12);
      EXPECT_NEAR(times[0], t / 2 + std::tanh(lambda) / (2 * rate), 1e-12);
      EndpointExpectations(g, t, 0, 1, &n, &times);
      EXPECT_NEAR(n.sum(), lambda / std::tanh(lambda), 1e-12);
      EXPECT_NEAR(times[0], t / 2, 1e-12);
    }
  }
}

// int_0^t P_ai(s) P_jb(t - s) ds by composite 20-point Gauss-Legendre on 40 panels.
double Quadrature(const Eigen::MatrixXd& q, double t, int a, int i, int j, int b) {
  static const double x[10] = {0.0765265211334973, 0.2277858511416451, 0.3737060887154195,
                               0.5108670019508271, 0.6360536807265150, 0.7463319064601508,
                               0.8391169718222188, 0.9122344282513259, 0.9639719272779138,
                               0.9931285991850949};
  static const double w[10] = {0.1527533871307258, 0.1491729864726037, 0.1420961093183820,
                               0.1316886384491766, 0.1181945319615184, 0.1019301198172404,
                               0.0832767415767048, 0.0626720483341091, 0.0406014298003869,
                               0.0176140071391521};
  const int panels = 40;
  const double h = t / panels;
  double sum = 0;
  for (int p = 0; p < panels; ++p) {
    const double mid = (p + 0.5) * h;
    for (int r = 0; r < 10; ++r) {
      for (int sign : {-1, 1}) {
        const double s = mid + sign * x[r] * h / 2;
        sum += w[r] * h / 2 * ReferenceExpm(q * s)(a, i) * ReferenceExpm(q * (t - s))(j, b);
      }
    }
  }
  return sum;
}

TEST(MkIntegral, VanLoanEigenAndQuadratureAgree) {
  // Symmetric Q: Van Loan and the eigendecomposition; any Q: Van Loan and quadrature.
  Eigen::MatrixXd sym = testing::RandomGenerator(4, 7);
  sym = (0.5 * (sym + sym.transpose())).eval();
  sym.diagonal().setZero();
  for (int i = 0; i < 4; ++i) sym(i, i) = -sym.row(i).sum();
  std::mt19937_64 rng(8);
  std::uniform_real_distribution<double> u(0, 1);
  Eigen::MatrixXd w(4, 4);
  for (int i = 0; i < 16; ++i) w(i) = u(rng);
  for (double t : {1e-9, 0.01, 0.7, 5.0, 60.0}) {
    Eigen::MatrixXd by_eigen, by_van_loan;
    Generator(sym, true, IntegralMethod::kEigen).Integral(t, w, &by_eigen);
    Generator(sym, true, IntegralMethod::kVanLoan).Integral(t, w, &by_van_loan);
    EXPECT_TRUE(by_eigen.isApprox(by_van_loan, 1e-10)) << "t=" << t << "\n"
                                                       << by_eigen << "\n"
                                                       << by_van_loan;
  }
  const Eigen::MatrixXd ard = testing::RandomGenerator(3, 9);
  const Generator g(ard, false);
  for (double t : {0.3, 2.5}) {
    for (int a = 0; a < 3; ++a) {
      for (int b = 0; b < 3; ++b) {
        Eigen::MatrixXd e = Eigen::MatrixXd::Zero(3, 3);
        for (int i = 0; i < 3; ++i) {
          for (int j = 0; j < 3; ++j) {
            // I(t, e_i e_j^T)_ab = int P_ai(s) P_jb(t-s) ds
            Eigen::MatrixXd unit = Eigen::MatrixXd::Zero(3, 3);
            unit(i, j) = 1;
            Eigen::MatrixXd integral;
            g.Integral(t, unit, &integral);
            EXPECT_NEAR(integral(a, b), Quadrature(ard, t, a, i, j, b), 1e-10)
                << "t=" << t << " a=" << a << " i=" << i << " j=" << j << " b=" << b;
          }
        }
      }
    }
  }
}

constexpr char kTreeA[] = "((A:1.0,B:1.0):4.0,(C:2.0,(D:1.5,E:1.5):0.5):3.0);";
constexpr char kTreeB[] = "((A:1,B:1):1,(C:1,D:1):1);";

TEST(MkPruning, ReproducesTreeAValues) {
  const Tree tree = ParseOrDie(kTreeA);
  const TreeData data = DataOrDie(tree, Tips(tree, {0, 1, 1, 0, 0}, 2), 2);
  EXPECT_NEAR(LogLikelihood(data, ErQ(2, 1.0), RootPrior::kEqual, Equal(2), true), -3.4824151549,
              1e-9);
  EXPECT_NEAR(LogLikelihood(data, ErQ(2, 0.1), RootPrior::kEqual, Equal(2), true), -5.0059153048,
              1e-9);
  // ace's root (weight 1 per state) is the equal prior plus ln k.
  EXPECT_NEAR(LogLikelihood(data, ErQ(2, 1.0), RootPrior::kGiven, Eigen::VectorXd::Ones(2), true),
              -2.7892679743, 1e-9);
  // The supremum as q grows: -5 ln 2.
  EXPECT_NEAR(LogLikelihood(data, ErQ(2, 1e4), RootPrior::kEqual, Equal(2), true), -5 * std::log(2),
              1e-9);
}

TEST(MkPruning, ReproducesTheTreeBClosedForm) {
  const Tree tree = ParseOrDie(kTreeB);
  const TreeData data = DataOrDie(tree, Tips(tree, {0, 0, 1, 1}, 2), 2);
  for (double q : {0.01, 0.2746530722, 1.0, 7.0}) {
    const double p = (1 - std::exp(-4 * q)) / 4;
    for (bool symmetric : {true, false}) {
      EXPECT_NEAR(LogLikelihood(data, ErQ(2, q), RootPrior::kEqual, Equal(2), symmetric),
                  std::log(p * (1 - 3 * p)), 1e-12);
    }
  }
}

TEST(MkPruning, MatchesBruteForceSummationOnSmallTreesWithAmbiguousAndMissingTips) {
  std::mt19937_64 rng(33);
  for (int k : {2, 3}) {
    for (int trial = 0; trial < 6; ++trial) {
      const Tree tree = ParseOrDie(testing::RandomNewick(k == 2 ? 6 : 5, 100 + trial));
      const Eigen::MatrixXd q = testing::RandomGenerator(k, 200 + trial);
      MkTips tips;
      tips.labels = tree.TipLabels();
      tips.likelihoods = Eigen::MatrixXd::Zero(tree.num_tips, k);
      for (int i = 0; i < tree.num_tips; ++i) {
        const int kind = static_cast<int>(rng() % 5);
        if (kind == 0) {
          tips.likelihoods.row(i).setOnes();  // missing
        } else if (kind == 1) {
          tips.likelihoods(i, 0) = tips.likelihoods(i, k - 1) = 1;  // ambiguous
        } else {
          tips.likelihoods(i, rng() % k) = 1;
        }
      }
      const TreeData data = DataOrDie(tree, tips, k);
      Eigen::VectorXd rho = Eigen::VectorXd::LinSpaced(k, 1, k);
      rho /= rho.sum();
      Eigen::MatrixXd brute_marginals;
      const double brute =
          testing::BruteForceLikelihood(tree, tips.likelihoods, q, rho, &brute_marginals);
      const Generator g(q, false);
      Upward up;
      ASSERT_THAT(PruneUp(data, g, RootPrior::kGiven, rho, {}, &up), IsOk());
      EXPECT_NEAR(up.total, std::log(brute), 1e-11) << "k=" << k << " trial " << trial;
      Expected e;
      Eigen::MatrixXd nodes;
      ASSERT_THAT(ExpectedCounts(data, g, up, {}, &e, &nodes), IsOk());
      EXPECT_TRUE(nodes.isApprox(brute_marginals, 1e-10)) << nodes << "\nvs\n" << brute_marginals;
    }
  }
}

TEST(MkPruning, CharactersSharingQAddTheirLogLikelihoods) {
  const Tree tree = ParseOrDie(testing::RandomNewick(7, 5));
  const Eigen::MatrixXd q = testing::RandomGenerator(3, 6);
  const MkTips a = Tips(tree, {0, 1, 2, 2, -1, 0, 1}, 3);
  const MkTips b = Tips(tree, {2, 2, 2, 1, 0, -1, 0}, 3);
  MkTips both = a;
  both.likelihoods.resize(tree.num_tips, 6);
  both.likelihoods << a.likelihoods, b.likelihoods;
  const Eigen::VectorXd rho = Equal(3);
  const double la = LogLikelihood(DataOrDie(tree, a, 3), q, RootPrior::kEqual, rho, false);
  const double lb = LogLikelihood(DataOrDie(tree, b, 3), q, RootPrior::kEqual, rho, false);
  EXPECT_NEAR(LogLikelihood(DataOrDie(tree, both, 3), q, RootPrior::kEqual, rho, false), la + lb,
              1e-12);
}

TEST(MkExpected, ConserveTimeAndKeepForbiddenTransitionsAtZero) {
  const Tree tree = ParseOrDie(testing::RandomNewick(12, 41));
  Eigen::MatrixXd q = testing::RandomGenerator(3, 42);
  q(0, 2) = 0;  // forbidden 0 -> 2
  q(0, 0) = -q(0, 1);
  MkTips tips = Tips(tree, {0, 1, 2, 1, 0, 0, 2, 1, -1, 2, 1, 0}, 3);
  tips.likelihoods.conservativeResize(Eigen::NoChange, 6);
  tips.likelihoods.rightCols(3) = Tips(tree, {1, 1, 2, 0, 0, -1, 2, 2, 1, 0, 1, 0}, 3).likelihoods;
  const TreeData data = DataOrDie(tree, tips, 3);
  const Generator g(q, false);
  Upward up;
  ASSERT_THAT(PruneUp(data, g, RootPrior::kEqual, Equal(3), {}, &up), IsOk());
  Expected e;
  ASSERT_THAT(ExpectedCounts(data, g, up, {}, &e), IsOk());
  EXPECT_NEAR(e.times.sum(), 2 * tree.TotalLength(), 1e-10 * tree.TotalLength());
  EXPECT_EQ(e.transitions(0, 2), 0.0);
  EXPECT_TRUE((e.transitions.array() >= 0).all());
  EXPECT_TRUE((e.times.array() > 0).all());
  EXPECT_NEAR(e.root.sum(), 2.0, 1e-12);
}

TEST(MkExpected, FisherIdentityMatchesFiniteDifferencesOfThePruningLikelihood) {
  const Tree tree = ParseOrDie(testing::RandomNewick(10, 51));
  const Eigen::MatrixXd q = testing::RandomGenerator(3, 52, 0.3, 1.2);
  const TreeData data = DataOrDie(tree, Tips(tree, {0, 1, 2, 2, 1, 0, 0, -1, 1, 2}, 3), 3);
  const Generator g(q, false);
  Upward up;
  ASSERT_THAT(PruneUp(data, g, RootPrior::kEqual, Equal(3), {}, &up), IsOk());
  Expected e;
  ASSERT_THAT(ExpectedCounts(data, g, up, {}, &e), IsOk());
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      if (i == j) continue;
      const double h = 1e-5 * q(i, j);
      Eigen::MatrixXd plus = q, minus = q;
      plus(i, j) += h;
      plus(i, i) -= h;
      minus(i, j) -= h;
      minus(i, i) += h;
      const double fd = (LogLikelihood(data, plus, RootPrior::kEqual, Equal(3), false) -
                         LogLikelihood(data, minus, RootPrior::kEqual, Equal(3), false)) /
                        (2 * h);
      const double fisher = e.transitions(i, j) / q(i, j) - e.times[i];
      EXPECT_NEAR(fisher, fd, 1e-6 * std::max(1.0, std::abs(fd))) << i << "->" << j;
    }
  }
}

TEST(MkRootPriors, FitzJohnIsAtLeastEqualAndAceIsEqualPlusLnK) {
  const Tree tree = ParseOrDie(testing::RandomNewick(9, 61));
  const Eigen::MatrixXd q = testing::RandomGenerator(3, 62);
  const TreeData data = DataOrDie(tree, Tips(tree, {0, 0, 1, 2, 2, 2, 1, 0, 2}, 3), 3);
  const double equal = LogLikelihood(data, q, RootPrior::kEqual, Equal(3), false);
  const double fitzjohn = LogLikelihood(data, q, RootPrior::kFitzJohn, Equal(3), false);
  const double ace = LogLikelihood(data, q, RootPrior::kGiven, Eigen::VectorXd::Ones(3), false);
  EXPECT_GT(fitzjohn, equal);
  EXPECT_NEAR(ace, equal + std::log(3.0), 1e-12);
  // All tips missing: the root's likelihoods are uniform, and fitzjohn equals equal.
  const TreeData missing = DataOrDie(tree, Tips(tree, std::vector<int>(9, -1), 3), 3);
  EXPECT_NEAR(LogLikelihood(missing, q, RootPrior::kFitzJohn, Equal(3), false),
              LogLikelihood(missing, q, RootPrior::kEqual, Equal(3), false), 1e-12);
}

TEST(MkRootPriors, PulleyPrincipleReRootingKeepsTheStationaryLikelihood) {
  // The same unrooted tree rooted on two different branches; reversible (symmetric) Q with its
  // stationary (uniform) root, and a reversible non-symmetric Q (pi_i q_ij = pi_j q_ji).
  const Tree a = ParseOrDie("((A:0.3,B:0.5):0.2,(C:0.4,D:0.6):0.7);");
  const Tree b = ParseOrDie("(A:0.1,(B:0.5,(C:0.4,D:0.6):0.9):0.2);");
  const std::vector<int> states = {0, 1, 2, 1};
  Eigen::Vector3d pi(0.2, 0.3, 0.5);
  Eigen::Matrix3d s;
  s << 0, 1.0, 0.4, 1.0, 0, 2.0, 0.4, 2.0, 0;
  Eigen::MatrixXd q = s * pi.asDiagonal();  // q_ij = s_ij pi_j: reversible with pi
  for (int i = 0; i < 3; ++i) q(i, i) = -q.row(i).sum();
  absl::StatusOr<Eigen::VectorXd> stationary = StationaryDistribution(q);
  ASSERT_THAT(stationary, IsOk());
  EXPECT_TRUE(stationary->isApprox(Eigen::VectorXd(pi), 1e-12));
  const double la = LogLikelihood(DataOrDie(a, Tips(a, states, 3), 3), q, RootPrior::kStationary,
                                  *stationary, false);
  const double lb = LogLikelihood(DataOrDie(b, Tips(b, states, 3), 3), q, RootPrior::kStationary,
                                  *stationary, false);
  EXPECT_NEAR(la, lb, 1e-12);
}

TEST(MkPruning, ImpossibleDataAreAFailedPrecondition) {
  const Tree tree = ParseOrDie("((A:1,B:1):1,C:1);");
  Eigen::MatrixXd q = Eigen::MatrixXd::Zero(2, 2);
  q(0, 1) = 1;
  q(0, 0) = -1;  // 1 is absorbing
  const TreeData data = DataOrDie(tree, Tips(tree, {1, 0, 1}, 2), 2);
  Upward up;
  // The root must be 0 (tip B), but 0 is unreachable from... the root prior forbids state 0.
  Eigen::VectorXd rho(2);
  rho << 0, 1;
  EXPECT_THAT(PruneUp(data, Generator(q, false), RootPrior::kGiven, rho, {}, &up),
              testing::StatusIs(absl::StatusCode::kFailedPrecondition, "probability 0"));
}

}  // namespace
}  // namespace emfit::mk::internal
