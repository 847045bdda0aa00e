// The ELBO reported with each iteration (algorithms.md §6, issue 9) against a direct computation:
// L(q_0, theta_1) = E_q[ln p(X, Z | theta_1)] - E_q[ln q] for the posterior q_0 of the E-step at
// theta_0, and KL(q_0 || p(Z | X, theta_1)) computed term by term, with the hidden data Z = the
// component of each row and, with missing values, the row's missing coordinates.
#include <Eigen/Dense>
#include <cmath>
#include <random>
#include <vector>

#include "emfit/gmm/gmm.h"
#include "gtest/gtest.h"
#include "testing/data.h"
#include "testing/observers.h"
#include "testing/status_matchers.h"

namespace emfit::gmm {
namespace {

using ::emfit::testing::RecordingObserver;

using ::emfit::testing::IsOk;

constexpr double kLog2Pi = 1.8378770664093454835606594728112;

// The posterior of one row under `p`, computed densely: responsibilities and, per component,
// the conditional mean of the missing coordinates and their conditional covariance.
struct RowPosterior {
  double log_likelihood = 0;
  Eigen::VectorXd r;                       // k
  std::vector<Eigen::VectorXd> completed;  // k rows x_hat (d), observed values kept
  std::vector<Eigen::MatrixXd> cond_cov;   // k, |m| x |m|
  std::vector<int> obs, mis;
};

RowPosterior Posterior(const GmmParams& p, const Eigen::VectorXd& x) {
  RowPosterior out;
  const int d = p.dim();
  for (int j = 0; j < d; ++j) (std::isnan(x[j]) ? out.mis : out.obs).push_back(j);
  const int no = static_cast<int>(out.obs.size()), nm = static_cast<int>(out.mis.size());
  Eigen::VectorXd log_joint(p.k());
  for (int c = 0; c < p.k(); ++c) {
    const Eigen::MatrixXd s = p.ComponentCovariance(c);
    Eigen::MatrixXd soo(no, no), smo(nm, no), smm(nm, nm);
    Eigen::VectorXd xo(no), mo(no);
    for (int a = 0; a < no; ++a) {
      xo[a] = x[out.obs[a]];
      mo[a] = p.means(c, out.obs[a]);
      for (int b = 0; b < no; ++b) soo(a, b) = s(out.obs[a], out.obs[b]);
      for (int b = 0; b < nm; ++b) smo(b, a) = s(out.mis[b], out.obs[a]);
    }
    for (int a = 0; a < nm; ++a) {
      for (int b = 0; b < nm; ++b) smm(a, b) = s(out.mis[a], out.mis[b]);
    }
    const Eigen::MatrixXd inv = soo.inverse();
    const Eigen::VectorXd dev = xo - mo;
    log_joint[c] = std::log(p.weights[c]) -
                   0.5 * (no * kLog2Pi + std::log(soo.determinant()) + dev.dot(inv * dev));
    Eigen::VectorXd completed = x;
    const Eigen::VectorXd cond_mean = smo * inv * dev;
    for (int b = 0; b < nm; ++b) completed[out.mis[b]] = p.means(c, out.mis[b]) + cond_mean[b];
    out.completed.push_back(completed);
    out.cond_cov.push_back(smm - smo * inv * smo.transpose());
  }
  const double m = log_joint.maxCoeff();
  out.log_likelihood = m + std::log((log_joint.array() - m).exp().sum());
  out.r = (log_joint.array() - out.log_likelihood).exp();
  return out;
}

// E over x_m ~ N(x_hat, C) of ln N(x | mu, Sigma) for component c of `p`.
double ExpectedLogDensity(const GmmParams& p, int c, const RowPosterior& q, int qc) {
  const Eigen::MatrixXd s = p.ComponentCovariance(c);
  const Eigen::MatrixXd inv = s.inverse();
  const Eigen::VectorXd dev = q.completed[qc] - p.means.row(c).transpose();
  double trace = 0;
  for (size_t a = 0; a < q.mis.size(); ++a) {
    for (size_t b = 0; b < q.mis.size(); ++b) {
      trace += inv(q.mis[a], q.mis[b]) * q.cond_cov[qc](b, a);
    }
  }
  return -0.5 * (p.dim() * kLog2Pi + std::log(s.determinant()) + dev.dot(inv * dev) + trace);
}

// KL(N(m0, C0) || N(m1, C1)).
double GaussianKl(const Eigen::VectorXd& m0, const Eigen::MatrixXd& c0, const Eigen::VectorXd& m1,
                  const Eigen::MatrixXd& c1) {
  if (m0.size() == 0) return 0;
  const Eigen::MatrixXd inv1 = c1.inverse();
  const Eigen::VectorXd dm = m1 - m0;
  return 0.5 * ((inv1 * c0).trace() + dm.dot(inv1 * dm) - static_cast<double>(m0.size()) +
                std::log(c1.determinant() / c0.determinant()));
}

struct Direct {
  double ll0 = 0, ll1 = 0, elbo = 0, kl = 0;
};

// l(theta_0), l(theta_1), L(q_0, theta_1) and KL(q_0 || p(. | X, theta_1)), row by row.
Direct Compute(const GmmParams& theta0, const GmmParams& theta1, const Dataset& data) {
  Direct out;
  for (Eigen::Index i = 0; i < data.rows(); ++i) {
    const double w = data.weights.size() == 0 ? 1.0 : data.weights[i];
    const Eigen::VectorXd x = data.x.row(i).transpose();
    const RowPosterior q0 = Posterior(theta0, x), q1 = Posterior(theta1, x);
    out.ll0 += w * q0.log_likelihood;
    out.ll1 += w * q1.log_likelihood;
    const double nm = static_cast<double>(q0.mis.size());
    for (int c = 0; c < theta0.k(); ++c) {
      const double r = q0.r[c];
      if (r == 0) continue;
      // E_q[ln p(x_o, x_m, z = c | theta_1)] - E_q[ln q(z = c) + ln q(x_m | z = c)].
      const double entropy_m =
          0.5 * (nm * (1 + kLog2Pi) + (nm > 0 ? std::log(q0.cond_cov[c].determinant()) : 0.0));
      out.elbo += w * r *
                  (std::log(theta1.weights[c]) + ExpectedLogDensity(theta1, c, q0, c) -
                   std::log(r) + entropy_m);
      Eigen::VectorXd m0(q0.mis.size()), m1(q0.mis.size());
      for (size_t b = 0; b < q0.mis.size(); ++b) {
        m0[b] = q0.completed[c][q0.mis[b]];
        m1[b] = q1.completed[c][q0.mis[b]];
      }
      out.kl +=
          w * r * (std::log(r / q1.r[c]) + GaussianKl(m0, q0.cond_cov[c], m1, q1.cond_cov[c]));
    }
  }
  return out;
}

// 60 rows of 3 correlated columns from 2 clusters, row weights in [0.5, 2), and with
// `missing`, about a fifth of the values missing (never a whole row).
Dataset SmallData(bool missing) {
  Eigen::MatrixXd means(2, 3);
  means << -2, 0, 1, 2, 1, -1;
  Dataset data{testing::SampleMixture(means, 1.0, 60, 11), {}};
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0, 1);
  data.weights.resize(data.rows());
  for (Eigen::Index i = 0; i < data.rows(); ++i) {
    data.x(i, 2) += 0.8 * data.x(i, 0);
    data.weights[i] = 0.5 + 1.5 * u(rng);
    if (!missing) continue;
    for (int j = 0; j < 3; ++j) {
      if (j != static_cast<int>(i % 3) && u(rng) < 0.3) data.x(i, j) = std::nan("");
    }
  }
  return data;
}

GmmParams Start(CovarianceType type) {
  GmmParams p;
  p.covariance_type = type;
  p.weights = Eigen::Vector2d(0.35, 0.65);
  p.means.resize(2, 3);
  p.means << -1, 0.5, 0, 1, 0, 0.5;
  Eigen::MatrixXd a(3, 3);
  a << 2, 0.3, 0.5, 0.3, 1, 0.2, 0.5, 0.2, 1.5;
  switch (type) {
    case CovarianceType::kFull:
      p.covariances.resize(6, 3);
      p.covariances << a, 0.5 * a + Eigen::MatrixXd::Identity(3, 3);
      break;
    case CovarianceType::kTied:
      p.covariances = a;
      break;
    case CovarianceType::kDiag:
      p.covariances.resize(2, 3);
      p.covariances << 2, 1, 1.5, 1, 2, 0.7;
      break;
    case CovarianceType::kSpherical:
      p.covariances = Eigen::Vector2d(1.5, 0.8);
      break;
  }
  return p;
}

class GmmElbo : public ::testing::TestWithParam<std::tuple<CovarianceType, bool>> {};

TEST_P(GmmElbo, ReportedElboAndKlEqualTheirDirectComputation) {
  const auto [type, missing] = GetParam();
  const Dataset data = SmallData(missing);
  GmmSpec spec;
  spec.k = 2;
  spec.covariance_type = type;
  spec.reg_covar = 0;  // the M-step maximises Q exactly: l(theta_0) <= ELBO <= l(theta_1)
  spec.init_params = Start(type);
  FitOptions options;
  options.tol = 0;
  for (int steps = 1; steps <= 3; ++steps) {
    SCOPED_TRACE(steps);
    // theta_{steps-1} and theta_steps: the fits that stop after steps-1 and steps M-steps.
    options.max_iter = steps - 1;
    absl::StatusOr<GmmFitResult> before = Fit(data, spec, options);
    ASSERT_THAT(before, IsOk());
    RecordingObserver recorder;
    FitControls controls;
    controls.observer = &recorder;
    options.max_iter = steps;
    absl::StatusOr<GmmFitResult> after = Fit(data, spec, options, controls);
    ASSERT_THAT(after, IsOk());
    ASSERT_EQ(recorder.events.size(), static_cast<size_t>(steps + 1));
    const IterationEvent& e = recorder.events.back();
    const Direct direct = Compute(before->params, after->params, data);
    const double scale = std::abs(direct.ll1);
    EXPECT_NEAR(e.log_likelihood, direct.ll1, 1e-10 * scale);
    EXPECT_NEAR(e.elbo, direct.elbo, 1e-10 * scale);
    EXPECT_NEAR(e.kl, direct.kl, 1e-10 * scale);
    EXPECT_NEAR(direct.ll1, direct.elbo + direct.kl, 1e-10 * scale);  // the identity itself
    EXPECT_GE(direct.kl, 0);
    EXPECT_LE(direct.ll0, e.elbo + 1e-10 * scale);
    EXPECT_LE(e.elbo, e.log_likelihood + 1e-10 * scale);
  }
}

INSTANTIATE_TEST_SUITE_P(
    EveryCovarianceType, GmmElbo,
    ::testing::Combine(::testing::Values(CovarianceType::kFull, CovarianceType::kDiag,
                                         CovarianceType::kTied, CovarianceType::kSpherical),
                       ::testing::Bool()),
    [](const ::testing::TestParamInfo<GmmElbo::ParamType>& info) {
      return std::string(CovarianceTypeName(std::get<0>(info.param))) +
             (std::get<1>(info.param) ? "WithMissingValues" : "Complete");
    });

TEST(GmmElbo, IsNotReportedForTheStart) {
  RecordingObserver recorder;
  FitControls controls;
  controls.observer = &recorder;
  GmmSpec spec;
  spec.k = 2;
  FitOptions options;
  options.max_iter = 2;
  ASSERT_THAT(Fit(SmallData(false), spec, options, controls), IsOk());
  ASSERT_FALSE(recorder.events.empty());
  EXPECT_TRUE(std::isnan(recorder.events[0].elbo));
  EXPECT_TRUE(std::isnan(recorder.events[0].kl));
}

}  // namespace
}  // namespace emfit::gmm
