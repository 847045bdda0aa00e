// Forward-backward and Viterbi against enumeration of every state path (docs/algorithms.md §7,
// HMM oracles 22-25 and 27-29), with the emissions' log-densities against their textbook
// formulas: k = 3 states, sequences of 6 steps, Gaussian (with and without missing values),
// categorical and Poisson emissions, log-densities around -300 +- 50 so that the per-step shift
// is exercised, scaled and log-space recursions, with and without structural zeros.
#include <Eigen/Cholesky>
#include <Eigen/LU>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "emission/categorical.h"
#include "emission/gaussian.h"
#include "emission/poisson.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hmm/forward_backward.h"
#include "hmm/sequence.h"
#include "math/exp.h"
#include "testing/status_matchers.h"

namespace emfit::hmm::internal {
namespace {

using ::emfit::testing::IsOk;
using ::emfit::testing::StatusIs;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kK = 3;
constexpr int kT = 6;

// A random distribution over k entries (uniforms in [0.2, 1), normalised), 0 where `allowed`
// is 0.
Eigen::VectorXd RandomRow(int k, const Eigen::VectorXi& allowed, std::mt19937_64* rng) {
  std::uniform_real_distribution<double> u(0.2, 1.0);
  Eigen::VectorXd p(k);
  for (int j = 0; j < k; ++j) p[j] = allowed[j] ? u(*rng) : 0.0;
  return p / p.sum();
}

// Start and transitions, optionally with structural zeros: a left-right chain where state 0
// starts, 0 -> 2 is impossible and state 2 only stays.
struct ChainParams {
  Eigen::VectorXd start;
  Eigen::MatrixXd transitions;
};

ChainParams RandomChain(bool zeros, std::mt19937_64* rng) {
  ChainParams c;
  Eigen::VectorXi start_allowed = Eigen::VectorXi::Ones(kK);
  Eigen::MatrixXi allowed = Eigen::MatrixXi::Ones(kK, kK);
  if (zeros) {
    start_allowed << 1, 1, 0;
    allowed << 1, 1, 0, 0, 1, 1, 0, 0, 1;
  }
  c.start = RandomRow(kK, start_allowed, rng);
  c.transitions.resize(kK, kK);
  for (int i = 0; i < kK; ++i) c.transitions.row(i) = RandomRow(kK, allowed.row(i), rng);
  return c;
}

// Everything enumeration gives for one sequence with log-densities g (T x k).
struct Enumerated {
  double log_likelihood = -kInf;
  Eigen::MatrixXd gamma;  // T x k
  Eigen::MatrixXd xi;     // k x k, summed over t
  std::vector<int> viterbi;
  double viterbi_log_probability = -kInf;
  double entropy = 0;  // of the posterior over paths
};

Enumerated Enumerate(const ChainParams& c, const Eigen::MatrixXd& g) {
  const int t_len = static_cast<int>(g.rows());
  int64_t paths = 1;
  for (int t = 0; t < t_len; ++t) paths *= kK;
  std::vector<double> log_p(paths);
  std::vector<std::vector<int>> states(paths, std::vector<int>(t_len));
  for (int64_t p = 0; p < paths; ++p) {
    int64_t code = p;
    // The most significant digit is step 0, so paths come in lexicographic order.
    for (int t = t_len - 1; t >= 0; --t) {
      states[p][t] = static_cast<int>(code % kK);
      code /= kK;
    }
    double lp = std::log(c.start[states[p][0]]) + g(0, states[p][0]);
    for (int t = 1; t < t_len; ++t) {
      lp += std::log(c.transitions(states[p][t - 1], states[p][t])) + g(t, states[p][t]);
    }
    log_p[p] = lp;
  }
  Enumerated e;
  double top = -kInf;
  for (int64_t p = 0; p < paths; ++p) {
    if (log_p[p] > e.viterbi_log_probability) {  // strict: the first (lowest) path on ties
      e.viterbi_log_probability = log_p[p];
      e.viterbi = states[p];
    }
    top = std::max(top, log_p[p]);
  }
  long double sum = 0;
  for (int64_t p = 0; p < paths; ++p) sum += std::exp(static_cast<long double>(log_p[p] - top));
  e.log_likelihood = top + static_cast<double>(std::log(sum));
  e.gamma.setZero(t_len, kK);
  e.xi.setZero(kK, kK);
  for (int64_t p = 0; p < paths; ++p) {
    const double q = std::exp(log_p[p] - e.log_likelihood);
    if (q > 0) e.entropy -= q * (log_p[p] - e.log_likelihood);
    for (int t = 0; t < t_len; ++t) {
      e.gamma(t, states[p][t]) += q;
      if (t > 0) e.xi(states[p][t - 1], states[p][t]) += q;
    }
  }
  return e;
}

// What SequencesEStep gives for one sequence of log-densities g.
struct Computed {
  double log_likelihood = 0;
  Eigen::MatrixXd gamma;
  Eigen::MatrixXd xi;
  std::vector<int> viterbi;
  double viterbi_log_probability = 0;
};

Computed RunSequence(const ChainParams& c, const Eigen::MatrixXd& g, ForwardBackward mode,
                     int64_t segment_steps = 0, bool viterbi = true) {
  const Chain chain = Chain::From(c.start, c.transitions);
  const int64_t n = g.rows();
  const RowMatrix g_rows = g;
  const std::vector<int64_t> offsets = {0, n};
  Computed out;
  out.gamma.resize(n, kK);
  out.viterbi.resize(n);
  ChainStats stats;
  stats.Reset(kK);
  SequenceScratch scratch;
  SequenceOutputs outputs;
  double ll = 0;
  outputs.log_likelihood = &ll;
  if (viterbi) {
    outputs.viterbi_log_probability = &out.viterbi_log_probability;
    outputs.viterbi_path = out.viterbi.data();
  }
  const absl::Status s = SequencesEStep(
      chain, offsets, 0, 1, Eigen::VectorXd(), {mode, segment_steps},
      {[&](int64_t b, int64_t e, double* dst) {
         Eigen::Map<RowMatrix>(dst, e - b, kK) = g_rows.middleRows(b, e - b);
         return absl::OkStatus();
       },
       [&](int64_t b, int64_t e, const double* gamma, bool) {
         out.gamma.middleRows(b, e - b) = Eigen::Map<const RowMatrix>(gamma, e - b, kK);
         return absl::OkStatus();
       },
       [](bool) {}},
      &stats, outputs, &scratch);
  EXPECT_THAT(s, IsOk());
  out.log_likelihood = stats.log_likelihood;
  EXPECT_EQ(ll, stats.log_likelihood);
  out.xi = c.transitions.cwiseProduct(Eigen::MatrixXd(stats.m));
  EXPECT_TRUE((stats.start - out.gamma.row(0).transpose()).cwiseAbs().maxCoeff() < 1e-15);
  return out;
}

void ExpectMatches(const Computed& got, const Enumerated& want, bool viterbi = true) {
  EXPECT_NEAR(got.log_likelihood, want.log_likelihood, 1e-12 * std::abs(want.log_likelihood));
  EXPECT_LT((got.gamma - want.gamma).cwiseAbs().maxCoeff(), 1e-12) << got.gamma;
  EXPECT_LT((got.xi - want.xi).cwiseAbs().maxCoeff(), 1e-12) << got.xi << "\n\n" << want.xi;
  if (!viterbi) return;
  EXPECT_EQ(got.viterbi, want.viterbi);
  EXPECT_NEAR(got.viterbi_log_probability, want.viterbi_log_probability,
              1e-12 * std::abs(want.viterbi_log_probability));
}

// ---- Emissions: log-densities around -300, checked against their formulas. ----

// ln N(x_o | mu_o, Sigma_oo) by explicit inverse and LU determinant; 0 if nothing is observed.
double GaussianLogDensity(const Eigen::VectorXd& x, const Eigen::VectorXd& mu,
                          const Eigen::MatrixXd& sigma) {
  std::vector<int> obs;
  for (int c = 0; c < x.size(); ++c) {
    if (!std::isnan(x[c])) obs.push_back(c);
  }
  if (obs.empty()) return 0.0;
  const Eigen::MatrixXd s = sigma(obs, obs);
  const Eigen::VectorXd diff = x(obs) - mu(obs);
  return -0.5 * static_cast<double>(obs.size()) * std::log(2 * M_PI) -
         0.5 * std::log(s.determinant()) - 0.5 * diff.dot(s.inverse() * diff);
}

struct GaussianCase {
  GaussianEmissions emissions;
  RowMatrix x;
};

// d = 2, full covariances; rows about 24 standard deviations from the means, so ln N ~ -300.
GaussianCase MakeGaussian(gmm::CovarianceType type, bool missing, std::mt19937_64* rng) {
  std::normal_distribution<double> z;
  GaussianCase g;
  g.emissions.covariance_type = type;
  g.emissions.means.resize(kK, 2);
  g.emissions.means << 0, 0, 1.5, -0.5, -1, 1;
  Eigen::MatrixXd covs[kK];
  for (int j = 0; j < kK; ++j) {
    Eigen::MatrixXd a = Eigen::MatrixXd::NullaryExpr(2, 2, [&] { return z(*rng); });
    covs[j] = a * a.transpose() * 0.3 + Eigen::MatrixXd::Identity(2, 2);
  }
  switch (type) {
    case gmm::CovarianceType::kFull:
      g.emissions.covariances.resize(2 * kK, 2);
      for (int j = 0; j < kK; ++j) g.emissions.covariances.middleRows(2 * j, 2) = covs[j];
      break;
    case gmm::CovarianceType::kTied:
      g.emissions.covariances = covs[0];
      break;
    case gmm::CovarianceType::kDiag:
      g.emissions.covariances.resize(kK, 2);
      for (int j = 0; j < kK; ++j) g.emissions.covariances.row(j) = covs[j].diagonal();
      break;
    case gmm::CovarianceType::kSpherical:
      g.emissions.covariances.resize(kK, 1);
      for (int j = 0; j < kK; ++j) g.emissions.covariances(j, 0) = covs[j].trace() / 2;
      break;
  }
  g.x.resize(kT, 2);
  for (int t = 0; t < kT; ++t) {
    const double angle = 2 * M_PI * t / kT;
    g.x.row(t) << 24 * std::cos(angle) + z(*rng), 24 * std::sin(angle) + z(*rng);
  }
  if (missing) {
    g.x(1, 0) = kNaN;              // one coordinate missing
    g.x.row(3).setConstant(kNaN);  // nothing observed: the chain still advances
    g.x(4, 1) = kNaN;
  }
  return g;
}

Eigen::MatrixXd GaussianReference(const GaussianCase& g) {
  const gmm::GmmParams mixture = ::emfit::internal::GaussianEmission::AsMixture(g.emissions);
  Eigen::MatrixXd out(kT, kK);
  for (int t = 0; t < kT; ++t) {
    for (int j = 0; j < kK; ++j) {
      out(t, j) = GaussianLogDensity(g.x.row(t).transpose(), mixture.means.row(j).transpose(),
                                     mixture.ComponentCovariance(j));
    }
  }
  return out;
}

template <class Emission>
Eigen::MatrixXd EmissionLogDensities(const Emission& emission,
                                     const typename Emission::Params& params, int64_t rows) {
  absl::StatusOr<std::unique_ptr<const typename Emission::Evaluator>> e = emission.Prepare(params);
  EXPECT_THAT(e, IsOk());
  RowMatrix g(rows, emission.k());
  typename Emission::Scratch scratch;
  EXPECT_THAT(emission.LogDensities(**e, 0, rows, g.data(), &scratch), IsOk());
  return g;
}

void ExpectLogDensitiesNear(const Eigen::MatrixXd& got, const Eigen::MatrixXd& want) {
  for (Eigen::Index t = 0; t < want.rows(); ++t) {
    for (Eigen::Index j = 0; j < want.cols(); ++j) {
      EXPECT_NEAR(got(t, j), want(t, j), 1e-12 * std::max(1.0, std::abs(want(t, j))))
          << "step " << t << " state " << j;
    }
  }
}

TEST(HmmEmissions, GaussianLogDensitiesAreTheMarginalsOfTheObservedCoordinates) {
  std::mt19937_64 rng(3);
  for (gmm::CovarianceType type : {gmm::CovarianceType::kFull, gmm::CovarianceType::kTied,
                                   gmm::CovarianceType::kDiag, gmm::CovarianceType::kSpherical}) {
    for (bool missing : {false, true}) {
      SCOPED_TRACE(std::string(gmm::CovarianceTypeName(type)) + (missing ? " missing" : ""));
      const GaussianCase g = MakeGaussian(type, missing, &rng);
      const Dataset data{g.x, {}};
      const ::emfit::internal::GaussianEmission emission(data, kK, type, 0.0);
      const Eigen::MatrixXd want = GaussianReference(g);
      EXPECT_GT(want.maxCoeff(), -400);
      ExpectLogDensitiesNear(EmissionLogDensities(emission, g.emissions, kT), want);
    }
  }
}

struct CategoricalCase {
  CategoricalEmissions emissions;
  RowMatrix x;
};

// 4 symbols; some probabilities are e^-300 or so, so that rows of log-densities sit near -300.
CategoricalCase MakeCategorical(bool missing) {
  CategoricalCase c;
  Eigen::MatrixXd logp(kK, 4);
  logp << -250, -300, -1, -340, -320, -2, -280, -0.5, -0.3, -260, -350, -290;
  c.emissions.probabilities = logp.array().exp();
  for (int j = 0; j < kK; ++j) {
    // Put the rounding remainder on the largest entry.
    Eigen::Index top;
    c.emissions.probabilities.row(j).maxCoeff(&top);
    c.emissions.probabilities(j, top) += 1.0 - c.emissions.probabilities.row(j).sum();
  }
  c.x.resize(kT, 1);
  c.x << 0, 1, 3, 1, 2, 0;
  if (missing) c.x(2, 0) = kNaN;
  return c;
}

TEST(HmmEmissions, CategoricalLogDensitiesAreTheLogProbabilities) {
  const CategoricalCase c = MakeCategorical(true);
  const Dataset data{c.x, {}};
  const ::emfit::internal::CategoricalEmission emission(data, kK, 4);
  Eigen::MatrixXd want(kT, kK);
  for (int t = 0; t < kT; ++t) {
    for (int j = 0; j < kK; ++j) {
      want(t, j) = std::isnan(c.x(t, 0))
                       ? 0.0
                       : std::log(c.emissions.probabilities(j, static_cast<int>(c.x(t, 0))));
    }
  }
  ExpectLogDensitiesNear(EmissionLogDensities(emission, c.emissions, kT), want);
}

struct PoissonCase {
  PoissonEmissions emissions;
  RowMatrix x;
};

// Two count columns around 100 with rates 2..5: ln f ~ -200 .. -400.
PoissonCase MakePoisson(bool missing) {
  PoissonCase p;
  p.emissions.rates.resize(kK, 2);
  p.emissions.rates << 2.0, 3.0, 3.5, 5.0, 5.0, 2.5;
  p.x.resize(kT, 2);
  p.x << 60, 40, 55, 52, 70, 38, 48, 61, 66, 45, 58, 0;
  if (missing) {
    p.x(1, 1) = kNaN;
    p.x.row(4).setConstant(kNaN);
  }
  return p;
}

Eigen::MatrixXd PoissonReference(const PoissonCase& p) {
  Eigen::MatrixXd out = Eigen::MatrixXd::Zero(kT, kK);
  for (int t = 0; t < kT; ++t) {
    for (int j = 0; j < kK; ++j) {
      for (int c = 0; c < 2; ++c) {
        const double x = p.x(t, c), l = p.emissions.rates(j, c);
        if (!std::isnan(x)) out(t, j) += x * std::log(l) - l - std::lgamma(x + 1);
      }
    }
  }
  return out;
}

TEST(HmmEmissions, PoissonLogDensitiesAreThePmfOfTheObservedCounts) {
  const PoissonCase p = MakePoisson(true);
  const Dataset data{p.x, {}};
  const ::emfit::internal::PoissonEmission emission(data, kK);
  ExpectLogDensitiesNear(EmissionLogDensities(emission, p.emissions, kT), PoissonReference(p));
}

// ---- The recursions against enumeration. ----

struct Case {
  std::string name;
  Eigen::MatrixXd g;
};

std::vector<Case> AllCases() {
  std::mt19937_64 rng(11);
  std::vector<Case> cases;
  for (bool missing : {false, true}) {
    const std::string suffix = missing ? "_missing" : "";
    cases.push_back({"gaussian_full" + suffix,
                     GaussianReference(MakeGaussian(gmm::CovarianceType::kFull, missing, &rng))});
    cases.push_back({"gaussian_diag" + suffix,
                     GaussianReference(MakeGaussian(gmm::CovarianceType::kDiag, missing, &rng))});
    const CategoricalCase c = MakeCategorical(missing);
    Eigen::MatrixXd gc(kT, kK);
    for (int t = 0; t < kT; ++t) {
      for (int j = 0; j < kK; ++j) {
        gc(t, j) = std::isnan(c.x(t, 0))
                       ? 0.0
                       : std::log(c.emissions.probabilities(j, static_cast<int>(c.x(t, 0))));
      }
    }
    cases.push_back({"categorical" + suffix, gc});
    cases.push_back({"poisson" + suffix, PoissonReference(MakePoisson(missing))});
  }
  return cases;
}

TEST(HmmForwardBackward, MatchesBruteForceEnumeration) {
  std::mt19937_64 rng(5);
  for (const Case& c : AllCases()) {
    for (bool zeros : {false, true}) {
      const ChainParams chain = RandomChain(zeros, &rng);
      const Enumerated want = Enumerate(chain, c.g);
      ASSERT_TRUE(std::isfinite(want.log_likelihood)) << c.name;
      for (ForwardBackward mode : {ForwardBackward::kScaled, ForwardBackward::kLogSpace}) {
        SCOPED_TRACE(c.name + (zeros ? " with structural zeros" : "") +
                     (mode == ForwardBackward::kScaled ? " scaled" : " log-space"));
        ExpectMatches(RunSequence(chain, c.g, mode), want);
      }
    }
  }
}

TEST(HmmForwardBackward, ScaledAndLogSpaceAgree) {
  std::mt19937_64 rng(6);
  std::normal_distribution<double> z;
  const ChainParams chain = RandomChain(false, &rng);
  Eigen::MatrixXd g = Eigen::MatrixXd::NullaryExpr(500, kK, [&] { return -300 + 50 * z(rng); });
  const Computed scaled = RunSequence(chain, g, ForwardBackward::kScaled);
  const Computed logspace = RunSequence(chain, g, ForwardBackward::kLogSpace);
  EXPECT_NEAR(scaled.log_likelihood, logspace.log_likelihood,
              1e-10 * std::abs(logspace.log_likelihood));
  EXPECT_LT((scaled.gamma - logspace.gamma).cwiseAbs().maxCoeff(), 1e-10);
  EXPECT_LT((scaled.xi - logspace.xi).cwiseAbs().maxCoeff(), 1e-10 * g.rows());
  EXPECT_EQ(scaled.viterbi, logspace.viterbi);
}

TEST(HmmForwardBackward, PosteriorIdentitiesHold) {
  // sum_j gamma_t(j) = 1; sum_j Xi_ij = sum_{t<T} gamma_t(i); sum Xi = T - 1; Xi = 0 where
  // A = 0 (algorithms.md §7, oracle 24).
  std::mt19937_64 rng(7);
  std::normal_distribution<double> z;
  for (bool zeros : {false, true}) {
    const ChainParams chain = RandomChain(zeros, &rng);
    const Eigen::MatrixXd g =
        Eigen::MatrixXd::NullaryExpr(300, kK, [&] { return -300 + 50 * z(rng); });
    const Computed r = RunSequence(chain, g, ForwardBackward::kScaled);
    EXPECT_LT((r.gamma.rowwise().sum().array() - 1).abs().maxCoeff(), 1e-14);
    const Eigen::VectorXd from_gamma = r.gamma.topRows(g.rows() - 1).colwise().sum().transpose();
    EXPECT_LT((r.xi.rowwise().sum() - from_gamma).cwiseAbs().maxCoeff(), 1e-10);
    EXPECT_NEAR(r.xi.sum(), g.rows() - 1, 1e-10);
    for (int i = 0; i < kK; ++i) {
      for (int j = 0; j < kK; ++j) {
        if (chain.transitions(i, j) == 0) {
          EXPECT_EQ(r.xi(i, j), 0.0);
        }
      }
    }
  }
}

TEST(HmmForwardBackward, OneStateGivesTheSumOfTheLogDensities) {
  ChainParams one;
  one.start = Eigen::VectorXd::Ones(1);
  one.transitions = Eigen::MatrixXd::Ones(1, 1);
  const Eigen::VectorXd g = Eigen::VectorXd::LinSpaced(40, -350, -250);
  const Chain chain = Chain::From(one.start, one.transitions);
  const std::vector<int64_t> offsets = {0, 40};
  ChainStats stats;
  stats.Reset(1);
  SequenceScratch scratch;
  ASSERT_THAT(
      SequencesEStep(
          chain, offsets, 0, 1, Eigen::VectorXd(), {ForwardBackward::kScaled, 0},
          {[&](int64_t b, int64_t e, double* dst) {
             for (int64_t t = b; t < e; ++t) dst[t - b] = g[t];
             return absl::OkStatus();
           },
           [](int64_t, int64_t, const double*, bool) { return absl::OkStatus(); }, [](bool) {}},
          &stats, {}, &scratch),
      IsOk());
  EXPECT_NEAR(stats.log_likelihood, g.sum(), 1e-12 * std::abs(g.sum()));
}

TEST(HmmForwardBackward, RowsOfTransitionsEqualToStartGiveTheMixtureLikelihood) {
  // Every row of A equal to pi: the steps are independent draws from the mixture
  // sum_j pi_j f_j (algorithms.md §7, oracle 25).
  std::mt19937_64 rng(8);
  std::normal_distribution<double> z;
  ChainParams c;
  c.start = RandomRow(kK, Eigen::VectorXi::Ones(kK), &rng);
  c.transitions = c.start.transpose().replicate(kK, 1);
  const Eigen::MatrixXd g =
      Eigen::MatrixXd::NullaryExpr(50, kK, [&] { return -300 + 50 * z(rng); });
  double mixture = 0;
  for (Eigen::Index t = 0; t < g.rows(); ++t) {
    Eigen::VectorXd a = g.row(t).transpose() + c.start.array().log().matrix();
    mixture += LogSumExp(a.data(), kK);
  }
  const Computed r = RunSequence(c, g, ForwardBackward::kScaled);
  EXPECT_NEAR(r.log_likelihood, mixture, 1e-12 * std::abs(mixture));
}

TEST(HmmForwardBackward, CheckpointedSegmentsGiveTheSameResults) {
  std::mt19937_64 rng(9);
  std::normal_distribution<double> z;
  for (bool zeros : {false, true}) {
    const ChainParams chain = RandomChain(zeros, &rng);
    const Eigen::MatrixXd g =
        Eigen::MatrixXd::NullaryExpr(1000, kK, [&] { return -300 + 50 * z(rng); });
    for (ForwardBackward mode : {ForwardBackward::kScaled, ForwardBackward::kLogSpace}) {
      const Computed whole = RunSequence(chain, g, mode);
      for (int64_t segment : {1, 7, 512, 999}) {
        SCOPED_TRACE(::testing::Message() << "segments of " << segment);
        const Computed cut = RunSequence(chain, g, mode, segment, /*viterbi=*/false);
        EXPECT_NEAR(cut.log_likelihood, whole.log_likelihood,
                    1e-12 * std::abs(whole.log_likelihood));
        EXPECT_LT((cut.gamma - whole.gamma).cwiseAbs().maxCoeff(), 1e-12);
        EXPECT_LT((cut.xi - whole.xi).cwiseAbs().maxCoeff(), 1e-10);
      }
    }
  }
}

TEST(HmmForwardBackward, AZeroOfTheScaledRecursionFallsBackToLogSpace) {
  // State 1 is the only one that can follow state 0, and its density at step 1 is e^-1000
  // against e^0 for the others: the scaled densities of step 1 underflow to 0 exactly where the
  // chain can go, so the scaled pass meets c_t = 0; log space still has the answer.
  ChainParams c;
  c.start = Eigen::Vector3d(1, 0, 0);
  c.transitions.resize(kK, kK);
  c.transitions << 0, 1, 0, 0, 0.5, 0.5, 0.3, 0.3, 0.4;
  Eigen::MatrixXd g(kT, kK);
  g << 0, -1, -2, 0, -1000, 0, -3, -1, 0, -1, -1, -1, 0, -2, -1, -4, 0, -1;
  const Enumerated want = Enumerate(c, g);
  ASSERT_TRUE(std::isfinite(want.log_likelihood));
  ExpectMatches(RunSequence(c, g, ForwardBackward::kScaled), want);
}

TEST(HmmForwardBackward, AnImpossibleSequenceIsAnErrorNamingIt) {
  ChainParams c;
  c.start = Eigen::Vector3d(1, 0, 0);
  c.transitions.resize(kK, kK);
  c.transitions << 0, 1, 0, 0, 1, 0, 0, 0, 1;
  Eigen::MatrixXd g = Eigen::MatrixXd::Zero(4, kK);
  g(2, 1) = -kInf;  // state 1 cannot emit step 2, and the chain is in state 1 from step 1 on
  const Chain chain = Chain::From(c.start, c.transitions);
  const RowMatrix g_rows = g;
  const std::vector<int64_t> offsets = {0, 1, 5};
  RowMatrix two(5, kK);
  two << Eigen::RowVector3d::Zero(), g_rows;
  for (ForwardBackward mode : {ForwardBackward::kScaled, ForwardBackward::kLogSpace}) {
    ChainStats stats;
    stats.Reset(kK);
    SequenceScratch scratch;
    EXPECT_THAT(
        SequencesEStep(
            chain, offsets, 0, 2, Eigen::VectorXd(), {mode, 0},
            {[&](int64_t b, int64_t e, double* dst) {
               Eigen::Map<RowMatrix>(dst, e - b, kK) = two.middleRows(b, e - b);
               return absl::OkStatus();
             },
             [](int64_t, int64_t, const double*, bool) { return absl::OkStatus(); }, [](bool) {}},
            &stats, {}, &scratch),
        StatusIs(absl::StatusCode::kFailedPrecondition, "sequence 2"));
  }
}

TEST(HmmViterbi, BreaksTiesTowardTheLowerStateAndScoresAtMostTheLikelihood) {
  // Every path has the same probability: the Viterbi path is all zeros.
  ChainParams c;
  c.start = Eigen::VectorXd::Constant(kK, 1.0 / kK);
  c.transitions = Eigen::MatrixXd::Constant(kK, kK, 1.0 / kK);
  const Eigen::MatrixXd g = Eigen::MatrixXd::Constant(kT, kK, -2.0);
  const Computed r = RunSequence(c, g, ForwardBackward::kScaled);
  EXPECT_EQ(r.viterbi, std::vector<int>(kT, 0));
  EXPECT_LE(r.viterbi_log_probability, r.log_likelihood);
  EXPECT_NEAR(r.log_likelihood - r.viterbi_log_probability, kT * std::log(3.0), 1e-12);
}

TEST(HmmForwardBackward, SequencesAreIndependentAndWeighted) {
  // l([T1, T2]) = l1 + l2 (weighted), which is not the l of the concatenation (oracle 27).
  std::mt19937_64 rng(10);
  std::normal_distribution<double> z;
  const ChainParams c = RandomChain(false, &rng);
  const Eigen::MatrixXd g = Eigen::MatrixXd::NullaryExpr(9, kK, [&] { return -300 + 50 * z(rng); });
  const double l1 = RunSequence(c, g.topRows(4), ForwardBackward::kScaled).log_likelihood;
  const double l2 = RunSequence(c, g.bottomRows(5), ForwardBackward::kScaled).log_likelihood;
  const double joined = RunSequence(c, g, ForwardBackward::kScaled).log_likelihood;
  const Chain chain = Chain::From(c.start, c.transitions);
  const RowMatrix g_rows = g;
  const std::vector<int64_t> offsets = {0, 4, 9};
  Eigen::VectorXd w(9);
  w << 2, 2, 2, 2, 0.5, 0.5, 0.5, 0.5, 0.5;
  ChainStats stats;
  stats.Reset(kK);
  SequenceScratch scratch;
  double per_sequence[2];
  SequenceOutputs outputs;
  outputs.log_likelihood = per_sequence;
  ASSERT_THAT(
      SequencesEStep(
          chain, offsets, 0, 2, w, {ForwardBackward::kScaled, 0},
          {[&](int64_t b, int64_t e, double* dst) {
             Eigen::Map<RowMatrix>(dst, e - b, kK) = g_rows.middleRows(b, e - b);
             return absl::OkStatus();
           },
           [](int64_t, int64_t, const double*, bool) { return absl::OkStatus(); }, [](bool) {}},
          &stats, outputs, &scratch),
      IsOk());
  EXPECT_NEAR(per_sequence[0], l1, 1e-12 * std::abs(l1));
  EXPECT_NEAR(per_sequence[1], l2, 1e-12 * std::abs(l2));
  EXPECT_NEAR(stats.log_likelihood, 2 * l1 + 0.5 * l2, 1e-12 * std::abs(l1 + l2));
  EXPECT_GT(std::abs(joined - (l1 + l2)), 1e-3);
}

TEST(ExpNonPositive, MatchesStdExpWithinTwoUlpAndFlushesBelowTheRange) {
  std::mt19937_64 rng(12);
  std::uniform_real_distribution<double> u(-720, 0);
  std::vector<double> x(100001);
  for (double& v : x) v = u(rng);
  x[0] = 0;
  x[1] = -kInf;
  x[2] = ::emfit::internal::kMinExpArgument;
  x[3] = -1e-300;
  std::vector<double> y = x;
  ::emfit::internal::ExpNonPositive(y.data(), static_cast<int64_t>(y.size()));
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] < ::emfit::internal::kMinExpArgument) {
      EXPECT_EQ(y[i], 0.0) << x[i];
      continue;
    }
    const double want = std::exp(x[i]);
    worst = std::max(worst, std::abs(y[i] - want) / want);
  }
  EXPECT_LE(worst, 4.5e-16);  // 2 ulp
  EXPECT_EQ(y[0], 1.0);
  std::printf("[ info ] largest relative error %.3g\n", worst);
}

}  // namespace
}  // namespace emfit::hmm::internal
