// The HMM family's contract pieces against brute force over every state path (docs/algorithms.md
// §6 and §7, oracle 48): the ELBO identity l = L(q, theta) + KL with L = E_q[ln p(X, Z | theta)] -
// E_q[ln q] for the posterior q of the E-step at another theta, the entropy of q from
// forward-backward, with sequence weights and, for Gaussian emissions, missing values (whose
// missing coordinates are part of q); checkpointed E-steps; SQUAREM's coordinates.
#include <Eigen/Cholesky>
#include <Eigen/LU>
#include <cmath>
#include <limits>
#include <random>
#include <variant>
#include <vector>

#include "emfit/exec/thread_pool.h"
#include "emfit/hmm/hmm.h"
#include "emission/categorical.h"
#include "emission/gaussian.h"
#include "emission/poisson.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hmm/family.h"
#include "testing/hmm_data.h"
#include "testing/status_matchers.h"

namespace emfit::hmm::internal {
namespace {

using ::emfit::internal::CategoricalEmission;
using ::emfit::internal::GaussianEmission;
using ::emfit::internal::PoissonEmission;
using ::emfit::testing::IsOk;
using ::emfit::testing::SampleHmm;
using ::emfit::testing::SeparatedModel;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kLog2Pi = 1.8378770664093454835606594728112;

// For one step and one state, under the q-parameters (`q`) and evaluated at `at`:
// the step's log-density under q (what weights the paths), E_q[ln f_at(x_t)] over the missing
// coordinates, and the entropy of q's conditional distribution of those coordinates.
struct StepTerms {
  double log_density_q = 0;
  double expected_log_density_at = 0;
  double entropy = 0;
};

StepTerms GaussianStep(const Eigen::VectorXd& x, const gmm::GmmParams& q, const gmm::GmmParams& at,
                       int j) {
  StepTerms s;
  const int d = static_cast<int>(x.size());
  std::vector<int> obs, mis;
  for (int c = 0; c < d; ++c) (std::isnan(x[c]) ? mis : obs).push_back(c);
  if (obs.empty()) return s;  // nothing observed: density 1, no latent coordinates
  const Eigen::MatrixXd sq = q.ComponentCovariance(j);
  const Eigen::VectorXd mq = q.means.row(j).transpose();
  const Eigen::MatrixXd soo = sq(obs, obs);
  const Eigen::VectorXd diff = x(obs) - mq(obs);
  s.log_density_q = -0.5 * obs.size() * kLog2Pi - 0.5 * std::log(soo.determinant()) -
                    0.5 * diff.dot(soo.inverse() * diff);
  // x_m | x_o under q: N(x_hat, C).
  Eigen::VectorXd x_hat = x;
  Eigen::MatrixXd c = Eigen::MatrixXd::Zero(d, d);
  if (!mis.empty()) {
    const Eigen::MatrixXd smo = sq(mis, obs);
    x_hat(mis) = mq(mis) + smo * soo.inverse() * diff;
    c(mis, mis) = sq(mis, mis) - smo * soo.inverse() * smo.transpose();
    s.entropy = 0.5 * (mis.size() * (kLog2Pi + 1) + std::log(c(mis, mis).determinant()));
  }
  const Eigen::MatrixXd sa = at.ComponentCovariance(j);
  const Eigen::MatrixXd sa_inv = sa.inverse();
  const Eigen::VectorXd da = x_hat - at.means.row(j).transpose();
  s.expected_log_density_at = -0.5 * d * kLog2Pi - 0.5 * std::log(sa.determinant()) -
                              0.5 * da.dot(sa_inv * da) - 0.5 * (sa_inv * c).trace();
  return s;
}

StepTerms CategoricalStep(double x, const CategoricalEmissions& q, const CategoricalEmissions& at,
                          int j) {
  StepTerms s;
  if (std::isnan(x)) return s;
  s.log_density_q = std::log(q.probabilities(j, static_cast<int>(x)));
  s.expected_log_density_at = std::log(at.probabilities(j, static_cast<int>(x)));
  return s;
}

StepTerms PoissonStep(const Eigen::VectorXd& x, const PoissonEmissions& q,
                      const PoissonEmissions& at, int j) {
  StepTerms s;
  for (int c = 0; c < x.size(); ++c) {
    if (std::isnan(x[c])) continue;
    const double lf = std::lgamma(x[c] + 1);
    s.log_density_q += x[c] * std::log(q.rates(j, c)) - q.rates(j, c) - lf;
    s.expected_log_density_at += x[c] * std::log(at.rates(j, c)) - at.rates(j, c) - lf;
  }
  return s;
}

StepTerms Step(const Dataset& data, int64_t t, const HmmParams& q, const HmmParams& at, int j) {
  if (const auto* g = std::get_if<GaussianEmissions>(&q.emissions)) {
    return GaussianStep(data.x.row(t).transpose(), GaussianEmission::AsMixture(*g),
                        GaussianEmission::AsMixture(std::get<GaussianEmissions>(at.emissions)), j);
  }
  if (const auto* c = std::get_if<CategoricalEmissions>(&q.emissions)) {
    return CategoricalStep(data.x(t, 0), *c, std::get<CategoricalEmissions>(at.emissions), j);
  }
  return PoissonStep(data.x.row(t).transpose(), std::get<PoissonEmissions>(q.emissions),
                     std::get<PoissonEmissions>(at.emissions), j);
}

struct BruteForce {
  double log_likelihood = 0;  // l(theta_q), weighted
  double entropy = 0;         // H(q), weighted
  double expected = 0;        // E_q[ln p(X, Z | theta_at)], weighted
};

BruteForce Enumerate(const Dataset& data, const HmmParams& q, const HmmParams& at) {
  BruteForce out;
  const int k = q.k();
  for (size_t s = 0; s + 1 < data.sequence_offsets.size(); ++s) {
    const int64_t b = data.sequence_offsets[s], n = data.sequence_offsets[s + 1] - b;
    const double w = data.weights.size() == 0 ? 1.0 : data.weights[b];
    std::vector<std::vector<StepTerms>> terms(n, std::vector<StepTerms>(k));
    for (int64_t t = 0; t < n; ++t) {
      for (int j = 0; j < k; ++j) terms[t][j] = Step(data, b + t, q, at, j);
    }
    int64_t paths = 1;
    for (int64_t t = 0; t < n; ++t) paths *= k;
    std::vector<double> lp(paths), ep(paths), hp(paths);
    for (int64_t p = 0; p < paths; ++p) {
      int64_t code = p;
      int prev = -1;
      double l = 0, e = 0, h = 0;
      for (int64_t t = 0; t < n; ++t) {
        const int z = static_cast<int>(code % k);
        code /= k;
        l += (t == 0 ? std::log(q.start[z]) : std::log(q.transitions(prev, z))) +
             terms[t][z].log_density_q;
        e += (t == 0 ? std::log(at.start[z]) : std::log(at.transitions(prev, z))) +
             terms[t][z].expected_log_density_at;
        h += terms[t][z].entropy;
        prev = z;
      }
      lp[p] = l;
      ep[p] = e;
      hp[p] = h;
    }
    const double top = *std::max_element(lp.begin(), lp.end());
    long double sum = 0;
    for (double l : lp) sum += std::exp(static_cast<long double>(l - top));
    const double ll = top + static_cast<double>(std::log(sum));
    double entropy = 0, expected = 0;
    for (int64_t p = 0; p < paths; ++p) {
      const double prob = std::exp(lp[p] - ll);
      if (prob == 0) continue;
      entropy += prob * (hp[p] - (lp[p] - ll));
      expected += prob * ep[p];
    }
    out.log_likelihood += w * ll;
    out.entropy += w * entropy;
    out.expected += w * expected;
  }
  return out;
}

template <class Emission>
void ExpectElboIdentity(const Dataset& data, const HmmFamily<Emission>& family,
                        const HmmParams& theta, const HmmParams& other) {
  auto stats = family.NewStats();
  absl::StatusOr<double> ll = family.EStep(theta, FitControls{}, &stats);
  ASSERT_THAT(ll, IsOk());
  const BruteForce at_theta = Enumerate(data, theta, theta);
  const BruteForce at_other = Enumerate(data, theta, other);
  const double tol = 1e-10 * (1 + std::abs(at_theta.log_likelihood));
  EXPECT_NEAR(*ll, at_theta.log_likelihood, tol);
  // H(q) = l - Q(theta | q), from forward-backward.
  const double q_theta = family.ExpectedLogJoint(stats, theta);
  EXPECT_NEAR(q_theta, at_theta.expected, tol);
  EXPECT_NEAR(*ll - q_theta, at_theta.entropy, tol);
  // L(q, theta') = E_q[ln p(X, Z | theta')] + H(q), and KL = l(theta') - L >= 0.
  const double elbo = *ll - q_theta + family.ExpectedLogJoint(stats, other);
  EXPECT_NEAR(elbo, at_other.expected + at_other.entropy, tol);
  auto other_stats = family.NewStats();
  absl::StatusOr<double> ll_other = family.EStep(other, FitControls{}, &other_stats);
  ASSERT_THAT(ll_other, IsOk());
  EXPECT_GT(*ll_other - elbo, 0.0);
  // At theta itself the ELBO is the log-likelihood (KL = 0).
  EXPECT_NEAR(*ll - q_theta + q_theta, *ll, 1e-12 * std::abs(*ll));
}

// Small data: three sequences of 1 to 5 steps with different weights.
Dataset SmallData(const HmmParams& p, uint64_t seed) {
  Dataset data = SampleHmm(p, {5, 1, 4}, seed);
  data.weights.resize(data.rows());
  data.weights.segment(0, 5).setConstant(1.5);
  data.weights.segment(5, 1).setConstant(0.5);
  data.weights.segment(6, 4).setConstant(2.0);
  return data;
}

TEST(HmmElbo, MatchesBruteForceForGaussianEmissionsWithMissingValues) {
  HmmParams theta = SeparatedModel(EmissionType::kGaussian, 3, 3);
  Dataset data = SmallData(theta, 1);
  data.x(1, 0) = kNaN;  // one coordinate missing
  data.x(2, 1) = data.x(2, 2) = kNaN;
  data.x.row(7).setConstant(kNaN);  // nothing observed
  HmmParams other = theta;
  other.start << 0.2, 0.5, 0.3;
  other.transitions.row(1) << 0.3, 0.3, 0.4;
  auto& g = std::get<GaussianEmissions>(other.emissions);
  g.means.array() += 0.4;
  g.covariances.middleRows(3, 3) *= 1.7;
  const HmmFamily<GaussianEmission> family(
      data, GaussianEmission(data, 3, gmm::CovarianceType::kFull, 0.0), ChainSpec{});
  ExpectElboIdentity(data, family, theta, other);
}

TEST(HmmElbo, MatchesBruteForceForEveryCovarianceType) {
  for (gmm::CovarianceType type :
       {gmm::CovarianceType::kTied, gmm::CovarianceType::kDiag, gmm::CovarianceType::kSpherical}) {
    SCOPED_TRACE(gmm::CovarianceTypeName(type));
    HmmParams theta = SeparatedModel(EmissionType::kGaussian, 3, 2, 0, type);
    Dataset data = SmallData(theta, 2);
    data.x(3, 1) = kNaN;
    HmmParams other = theta;
    auto& g = std::get<GaussianEmissions>(other.emissions);
    g.means.array() -= 0.3;
    g.covariances *= 1.4;
    const HmmFamily<GaussianEmission> family(data, GaussianEmission(data, 3, type, 0.0),
                                             ChainSpec{});
    ExpectElboIdentity(data, family, theta, other);
  }
}

TEST(HmmElbo, MatchesBruteForceForCategoricalAndPoissonEmissions) {
  {
    HmmParams theta = SeparatedModel(EmissionType::kCategorical, 3, 1, 4);
    Dataset data = SmallData(theta, 3);
    data.x(2, 0) = kNaN;
    HmmParams other = theta;
    std::get<CategoricalEmissions>(other.emissions).probabilities.row(0) << 0.1, 0.2, 0.3, 0.4;
    other.transitions.row(2) << 0.1, 0.1, 0.8;
    const HmmFamily<CategoricalEmission> family(data, CategoricalEmission(data, 3, 4), ChainSpec{});
    ExpectElboIdentity(data, family, theta, other);
  }
  {
    HmmParams theta = SeparatedModel(EmissionType::kPoisson, 3, 2);
    Dataset data = SmallData(theta, 4);
    data.x(8, 1) = kNaN;
    HmmParams other = theta;
    std::get<PoissonEmissions>(other.emissions).rates *= 0.8;
    other.start << 0.6, 0.3, 0.1;
    const HmmFamily<PoissonEmission> family(data, PoissonEmission(data, 3), ChainSpec{});
    ExpectElboIdentity(data, family, theta, other);
  }
}

TEST(HmmElbo, TheReportedElboSitsBetweenConsecutiveLogLikelihoods) {
  // l(theta_{t-1}) <= ELBO_t <= l(theta_t) for exact EM without regularisation (§6).
  struct Recorder : FitObserver {
    std::vector<IterationEvent> events;
    void OnIteration(const IterationEvent& e) override { events.push_back(e); }
  };
  const HmmParams truth = SeparatedModel(EmissionType::kGaussian, 3, 2);
  Dataset data = SampleHmm(truth, {200, 100}, 5);
  data.x(10, 0) = kNaN;
  HmmSpec spec;
  spec.k = 3;
  spec.reg_covar = 0;
  Recorder recorder;
  FitControls controls;
  controls.observer = &recorder;
  FitOptions options;
  options.max_iter = 15;
  options.tol = 0;
  ASSERT_THAT(Fit(data, spec, options, controls), IsOk());
  ASSERT_EQ(recorder.events.size(), 16u);
  EXPECT_TRUE(std::isnan(recorder.events[0].elbo));
  for (size_t t = 1; t < recorder.events.size(); ++t) {
    const double before = recorder.events[t - 1].log_likelihood;
    const double now = recorder.events[t].log_likelihood;
    const double slack = 1e-9 * std::abs(now);
    EXPECT_GE(recorder.events[t].elbo, before - slack) << t;
    EXPECT_LE(recorder.events[t].elbo, now + slack) << t;
    EXPECT_GE(recorder.events[t].kl, -slack) << t;
  }
}

TEST(HmmFamily, CheckpointedEStepEqualsTheWholeSequenceEStep) {
  const HmmParams p = SeparatedModel(EmissionType::kGaussian, 3, 2);
  Dataset data = SampleHmm(p, {3000, 40, 1700}, 6);
  data.x(1200, 1) = kNaN;
  ThreadPool pool(2);
  FitControls controls;
  controls.pool = &pool;
  for (ForwardBackward mode : {ForwardBackward::kScaled, ForwardBackward::kLogSpace}) {
    ChainSpec whole, cut;
    whole.segment_steps = 1 << 20;
    whole.forward_backward = cut.forward_backward = mode;
    cut.segment_steps = 512;
    const HmmFamily<GaussianEmission> a(
        data, GaussianEmission(data, 3, gmm::CovarianceType::kFull, 0.0), whole);
    const HmmFamily<GaussianEmission> b(
        data, GaussianEmission(data, 3, gmm::CovarianceType::kFull, 0.0), cut);
    auto sa = a.NewStats(), sb = b.NewStats();
    absl::StatusOr<double> la = a.EStep(p, controls, &sa);
    absl::StatusOr<double> lb = b.EStep(p, controls, &sb);
    ASSERT_THAT(la, IsOk());
    ASSERT_THAT(lb, IsOk());
    EXPECT_NEAR(*la, *lb, 1e-12 * std::abs(*la));
    EXPECT_LT((sa.xi - sb.xi).cwiseAbs().maxCoeff(), 1e-9);
    EXPECT_LT((sa.emission.moments.nk - sb.emission.moments.nk).cwiseAbs().maxCoeff(), 1e-9);
    EXPECT_LT((sa.emission.moments.delta - sb.emission.moments.delta).cwiseAbs().maxCoeff(), 1e-8);
  }
}

TEST(HmmFamily, PackAndUnpackAreInversesOverTheFreeCoordinates) {
  HmmParams p = SeparatedModel(EmissionType::kGaussian, 3, 2);
  p.start << 0.7, 0.3, 0;
  p.transitions.row(2) << 0, 0.4, 0.6;
  const Dataset data = SampleHmm(SeparatedModel(EmissionType::kGaussian, 3, 2), {50}, 7);
  ChainSpec spec;
  spec.start_allowed = Eigen::VectorXi::Ones(3);
  spec.start_allowed[2] = 0;
  spec.transitions_allowed = Eigen::MatrixXi::Ones(3, 3);
  spec.transitions_allowed(2, 0) = 0;
  spec.fix_emissions = true;
  const HmmFamily<GaussianEmission> family(
      data, GaussianEmission(data, 3, gmm::CovarianceType::kFull, 0.0), spec);
  const Eigen::VectorXd x = family.Pack(p);
  EXPECT_EQ(x.size(), 1 + (2 + 2 + 1));  // emissions fixed: not packed
  EXPECT_EQ(family.NumFreeParameters(), x.size());
  absl::StatusOr<HmmParams> back = family.Unpack(x, p);
  ASSERT_THAT(back, IsOk());
  EXPECT_LT((back->start - p.start).cwiseAbs().maxCoeff(), 1e-15);
  EXPECT_LT((back->transitions - p.transitions).cwiseAbs().maxCoeff(), 1e-15);
  EXPECT_EQ(back->start[2], 0.0);
  EXPECT_EQ(back->transitions(2, 0), 0.0);
  EXPECT_EQ(std::get<GaussianEmissions>(back->emissions).covariances,
            std::get<GaussianEmissions>(p.emissions).covariances);
}

}  // namespace
}  // namespace emfit::hmm::internal
