// Gaussian mixtures with missing values (docs/algorithms.md §2 and oracles 15-21).
#include <Eigen/Cholesky>
#include <Eigen/LU>
#include <cmath>
#include <limits>
#include <random>

#include "emfit/exec/thread_pool.h"
#include "emfit/gmm/gmm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/data.h"
#include "testing/status_matchers.h"

namespace emfit::gmm {
namespace {

using ::emfit::testing::IsOk;
using ::emfit::testing::StatusIs;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr CovarianceType kAllTypes[] = {CovarianceType::kFull, CovarianceType::kDiag,
                                        CovarianceType::kTied, CovarianceType::kSpherical};

// n rows from N(mu, sigma) in d dimensions, seeded.
RowMatrix SampleGaussian(const Eigen::VectorXd& mu, const Eigen::MatrixXd& sigma, int n,
                         uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z;
  const Eigen::MatrixXd l = sigma.llt().matrixL();
  RowMatrix x(n, mu.size());
  for (int i = 0; i < n; ++i) {
    Eigen::VectorXd e(mu.size());
    for (int j = 0; j < mu.size(); ++j) e[j] = z(rng);
    x.row(i) = (mu + l * e).transpose();
  }
  return x;
}

// Three correlated clusters in 3-D.
RowMatrix ThreeClusters(int n, uint64_t seed, Eigen::MatrixXd* means_out = nullptr) {
  Eigen::MatrixXd means(3, 3);
  means << 0, 0, 0, 6, 1, -2, -3, 5, 4;
  Eigen::MatrixXd cov(3, 3);
  cov << 1.0, 0.6, 0.2, 0.6, 1.5, -0.4, 0.2, -0.4, 0.8;
  RowMatrix x(n, 3);
  for (int c = 0; c < 3; ++c) {
    const RowMatrix part = SampleGaussian(means.row(c).transpose(), cov * (1 + 0.5 * c),
                                          n / 3 + (c < n % 3), seed + c);
    for (int i = 0; i < part.rows(); ++i) x.row(c + 3 * i) = part.row(i);
  }
  if (means_out != nullptr) *means_out = means;
  return x;
}

// Each entry missing with probability p, independently (MCAR), seeded.
RowMatrix RemoveCompletelyAtRandom(RowMatrix x, double p, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u;
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    for (Eigen::Index j = 0; j < x.cols(); ++j) {
      if (u(rng) < p) x(i, j) = kNaN;
    }
  }
  return x;
}

TEST(GmmMissing, FullyMissingRowsAreSkippedAndChangeNothing) {
  const RowMatrix x = RemoveCompletelyAtRandom(ThreeClusters(600, 1), 0.2, 2);
  RowMatrix with_empty(x.rows() + 3, x.cols());
  with_empty << x, RowMatrix::Constant(3, x.cols(), kNaN);
  GmmSpec spec;
  spec.k = 3;
  FitOptions options;
  options.seed = 4;
  absl::StatusOr<GmmFitResult> a = Fit(Dataset{x, {}}, spec, options);
  absl::StatusOr<GmmFitResult> b = Fit(Dataset{with_empty, {}}, spec, options);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(b->summary.rows_skipped, a->summary.rows_skipped + 3);
  EXPECT_EQ(b->summary.rows_used, a->summary.rows_used);
  EXPECT_EQ(a->summary.history, b->summary.history);
  EXPECT_EQ(a->params.means, b->params.means);
}

TEST(GmmMissing, ScoreLeavesOutFullyMissingRowsAsTheFitDoes) {
  const RowMatrix x = RemoveCompletelyAtRandom(ThreeClusters(600, 1), 0.2, 2);
  RowMatrix with_empty(x.rows() + 50, x.cols());
  with_empty << x, RowMatrix::Constant(50, x.cols(), kNaN);
  GmmSpec spec;
  spec.k = 3;
  absl::StatusOr<GmmFitResult> fit = Fit(Dataset{with_empty, {}}, spec, FitOptions{});
  ASSERT_THAT(fit, IsOk());
  absl::StatusOr<ScoreResult> score = Score(fit->params, Dataset{with_empty, {}});
  ASSERT_THAT(score, IsOk());
  EXPECT_NEAR(score->log_likelihood, fit->summary.log_likelihood, 1e-8);
  EXPECT_NEAR(score->bic, fit->summary.bic, 1e-8);
  EXPECT_NEAR(score->mean_log_likelihood, fit->summary.mean_log_likelihood, 1e-12);
  EXPECT_EQ(score->rows_used, fit->summary.rows_used);
  EXPECT_EQ(score->rows_skipped, fit->summary.rows_skipped);
}

TEST(GmmMissing, ScoreIsTheWeightedSumOfTheRowsMarginalLogLikelihoods) {
  // Rows in the order given, patterns mixed in every block, several blocks and stripes: Score
  // groups them by pattern across blocks and must still pair each row with its weight.
  const RowMatrix x = RemoveCompletelyAtRandom(ThreeClusters(3000, 6), 0.3, 7);
  std::mt19937_64 rng(8);
  std::uniform_real_distribution<double> uniform(0.2, 2.0);
  const Eigen::VectorXd w = Eigen::VectorXd::NullaryExpr(x.rows(), [&] { return uniform(rng); });
  GmmSpec spec;
  spec.k = 3;
  absl::StatusOr<GmmFitResult> fit = Fit(Dataset{x, {}}, spec, FitOptions{});
  ASSERT_THAT(fit, IsOk());
  absl::StatusOr<Posteriors> rows = ComputePosteriors(fit->params, x);
  ASSERT_THAT(rows, IsOk());
  double want = 0, weight = 0;
  int64_t skipped = 0;
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    if (x.row(i).array().isNaN().all()) {
      ++skipped;
      continue;
    }
    want += w[i] * rows->log_likelihood[i];
    weight += w[i];
  }
  ASSERT_GT(skipped, 0);  // 0.3^3 of the rows have nothing observed
  ThreadPool pool(1);
  for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
    FitControls controls;
    controls.pool = p;
    absl::StatusOr<ScoreResult> score = Score(fit->params, Dataset{x, w}, controls);
    ASSERT_THAT(score, IsOk());
    EXPECT_NEAR(score->log_likelihood, want, 1e-9 * std::abs(want));
    EXPECT_NEAR(score->mean_log_likelihood, want / weight, 1e-9 * std::abs(want / weight));
    EXPECT_EQ(score->rows_skipped, skipped);
    EXPECT_EQ(score->rows_used, x.rows() - skipped);
  }
}

TEST(GmmMissing, RowOrderDoesNotChangeTheFit) {
  const RowMatrix x = RemoveCompletelyAtRandom(ThreeClusters(900, 3), 0.25, 5);
  RowMatrix reversed = x.colwise().reverse();
  GmmSpec spec;
  spec.k = 3;
  spec.init = InitMethod::kRandomFromData;
  GmmParams start;
  {
    absl::StatusOr<GmmFitResult> init = Fit(Dataset{x, {}}, spec, FitOptions{.max_iter = 0});
    ASSERT_THAT(init, IsOk());
    start = init->params;
  }
  spec.init_params = start;
  FitOptions options;
  options.tol = 0;
  options.max_iter = 30;
  absl::StatusOr<GmmFitResult> a = Fit(Dataset{x, {}}, spec, options);
  absl::StatusOr<GmmFitResult> b = Fit(Dataset{reversed, {}}, spec, options);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_NEAR(a->summary.log_likelihood, b->summary.log_likelihood,
              1e-10 * std::abs(a->summary.log_likelihood));
  EXPECT_TRUE(a->params.means.isApprox(b->params.means, 1e-10));
  EXPECT_TRUE(a->params.covariances.isApprox(b->params.covariances, 1e-10));
}

TEST(GmmMissing, RowLogLikelihoodIsTheMarginalDensityOfTheObservedCoordinates) {
  for (CovarianceType type : kAllTypes) {
    SCOPED_TRACE(CovarianceTypeName(type));
    const RowMatrix x = ThreeClusters(300, 7);
    GmmSpec spec;
    spec.k = 3;
    spec.covariance_type = type;
    absl::StatusOr<GmmFitResult> fit = Fit(Dataset{x, {}}, spec, FitOptions{});
    ASSERT_THAT(fit, IsOk());
    const GmmParams& p = fit->params;
    RowMatrix rows(4, 3);
    rows << 1.0, kNaN, 0.5, kNaN, kNaN, 2.0, kNaN, 4.0, -1.0, kNaN, kNaN, kNaN;
    absl::StatusOr<Posteriors> post = ComputePosteriors(p, rows);
    ASSERT_THAT(post, IsOk());
    for (int i = 0; i < 4; ++i) {
      std::vector<int> obs;
      for (int j = 0; j < 3; ++j) {
        if (!std::isnan(rows(i, j))) obs.push_back(j);
      }
      double density = 0;
      for (int c = 0; c < 3; ++c) {
        double comp = 1.0;
        if (!obs.empty()) {
          // Textbook formula with an explicit inverse and LU determinant.
          const Eigen::MatrixXd s = p.ComponentCovariance(c)(obs, obs);
          const Eigen::VectorXd dx = rows.row(i)(obs).transpose() - p.means.row(c)(obs).transpose();
          comp = std::exp(-0.5 * dx.dot(s.inverse() * dx)) /
                 std::sqrt(std::pow(2 * M_PI, obs.size()) * s.determinant());
        }
        density += p.weights[c] * comp;
      }
      EXPECT_NEAR(post->log_likelihood[i], std::log(density),
                  1e-12 * (1 + std::abs(std::log(density))));
      EXPECT_NEAR(post->responsibilities.row(i).sum(), 1.0, 1e-12);
    }
    // A row with nothing observed: log-likelihood 0, responsibilities = weights.
    EXPECT_NEAR(post->log_likelihood[3], 0.0, 1e-15);
    EXPECT_TRUE(post->responsibilities.row(3).transpose().isApprox(p.weights, 1e-12));
  }
}

TEST(GmmMissing, SingleGaussianWithMonotoneMissingnessMatchesAndersonsClosedForm) {
  Eigen::Vector2d mu(0.0, 1.0);
  Eigen::Matrix2d sigma;
  sigma << 1.0, 0.6, 0.6, 1.2;
  RowMatrix x = SampleGaussian(mu, sigma, 500, 11);
  // Missing at random: x2 is missing whenever x1 > 0.3.
  std::vector<int> complete;
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    if (x(i, 0) > 0.3) {
      x(i, 1) = kNaN;
    } else {
      complete.push_back(static_cast<int>(i));
    }
  }
  const double n = static_cast<double>(x.rows());
  const double r = static_cast<double>(complete.size());
  const double mu1 = x.col(0).mean();
  const double s11_all = (x.col(0).array() - mu1).square().sum() / n;
  double m1 = 0, m2 = 0;
  for (int i : complete) m1 += x(i, 0), m2 += x(i, 1);
  m1 /= r;
  m2 /= r;
  double s11 = 0, s12 = 0, s22 = 0;
  for (int i : complete) {
    s11 += (x(i, 0) - m1) * (x(i, 0) - m1);
    s12 += (x(i, 0) - m1) * (x(i, 1) - m2);
    s22 += (x(i, 1) - m2) * (x(i, 1) - m2);
  }
  s11 /= r;
  s12 /= r;
  s22 /= r;
  const double beta = s12 / s11;
  const double want_mu2 = m2 + beta * (mu1 - m1);
  const double want_s12 = beta * s11_all;
  const double want_s22 = (s22 - s12 * s12 / s11) + beta * beta * s11_all;

  GmmSpec spec;
  spec.k = 1;
  spec.reg_covar = 0;
  // tol = 0: the log-likelihood flattens quadratically, so a tolerance on it would stop with
  // parameters still ~sqrt(tol) away; EM's linear rate gets to 1e-12 well within max_iter.
  FitOptions options;
  options.tol = 0;
  options.max_iter = 3000;
  absl::StatusOr<GmmFitResult> fit = Fit(Dataset{x, {}}, spec, options);
  ASSERT_THAT(fit, IsOk());
  const Eigen::MatrixXd cov = fit->params.ComponentCovariance(0);
  EXPECT_NEAR(fit->params.means(0, 0), mu1, 1e-8);
  EXPECT_NEAR(fit->params.means(0, 1), want_mu2, 1e-8);
  EXPECT_NEAR(cov(0, 0), s11_all, 1e-8);
  EXPECT_NEAR(cov(0, 1), want_s12, 1e-8);
  EXPECT_NEAR(cov(1, 1), want_s22, 1e-8);
  // The shortcuts land elsewhere: complete-case mean of x2, and dropping the correction.
  EXPECT_GT(std::abs(m2 - want_mu2), 0.1);
}

TEST(GmmMissing, DiagonalSingleComponentUsesObservedColumnMoments) {
  RowMatrix x = RemoveCompletelyAtRandom(ThreeClusters(400, 13), 0.3, 14);
  GmmSpec spec;
  spec.k = 1;
  spec.covariance_type = CovarianceType::kDiag;
  spec.reg_covar = 0;
  FitOptions options;
  options.tol = 0;
  options.max_iter = 2000;
  absl::StatusOr<GmmFitResult> fit = Fit(Dataset{x, {}}, spec, options);
  ASSERT_THAT(fit, IsOk());
  for (int j = 0; j < 3; ++j) {
    double sum = 0, sq = 0, count = 0;
    for (Eigen::Index i = 0; i < x.rows(); ++i) {
      if (!std::isnan(x(i, j))) sum += x(i, j), sq += x(i, j) * x(i, j), ++count;
    }
    const double mean = sum / count;
    EXPECT_NEAR(fit->params.means(0, j), mean, 1e-8);
    EXPECT_NEAR(fit->params.covariances(0, j), sq / count - mean * mean, 1e-8);
  }
}

TEST(GmmMissing, LogLikelihoodNeverDecreasesForEveryCovarianceType) {
  const RowMatrix x = RemoveCompletelyAtRandom(ThreeClusters(900, 17), 0.2, 18);
  for (CovarianceType type : kAllTypes) {
    SCOPED_TRACE(CovarianceTypeName(type));
    GmmSpec spec;
    spec.k = 3;
    spec.covariance_type = type;
    spec.reg_covar = 0;
    spec.init = InitMethod::kRandom;
    FitOptions options;
    options.tol = 0;
    options.max_iter = 80;
    absl::StatusOr<GmmFitResult> fit = Fit(Dataset{x, {}}, spec, options);
    ASSERT_THAT(fit, IsOk());
    testing::ExpectNonDecreasing(fit->summary.history);
  }
}

// Held-out observed-data log-likelihood of `params` on `test`.
double HeldOut(const GmmParams& params, const RowMatrix& test) {
  absl::StatusOr<ScoreResult> s = Score(params, Dataset{test, {}});
  EXPECT_THAT(s, IsOk());
  return s.ok() ? s->log_likelihood : 0.0;
}

TEST(GmmMissing, TwentyPercentMcarRecoversTheTruthAndBeatsImputationAndDeletion) {
  Eigen::MatrixXd true_means;
  const RowMatrix complete = ThreeClusters(3000, 21, &true_means);
  const RowMatrix train = RemoveCompletelyAtRandom(complete, 0.2, 22);
  const RowMatrix test = RemoveCompletelyAtRandom(ThreeClusters(3000, 23), 0.2, 24);
  GmmSpec spec;
  spec.k = 3;
  FitOptions options;
  options.tol = 1e-8;
  options.max_iter = 1000;
  options.n_init = 3;

  absl::StatusOr<GmmFitResult> em = Fit(Dataset{train, {}}, spec, options);
  ASSERT_THAT(em, IsOk());
  // The generating means are recovered (up to label order).
  for (int c = 0; c < 3; ++c) {
    double best = 1e9;
    for (int j = 0; j < 3; ++j)
      best = std::min(best, (em->params.means.row(j) - true_means.row(c)).norm());
    EXPECT_LT(best, 0.15) << "cluster " << c;
  }

  // Mean imputation.
  RowMatrix imputed = train;
  for (Eigen::Index j = 0; j < train.cols(); ++j) {
    double sum = 0, count = 0;
    for (Eigen::Index i = 0; i < train.rows(); ++i) {
      if (!std::isnan(train(i, j))) sum += train(i, j), ++count;
    }
    for (Eigen::Index i = 0; i < train.rows(); ++i) {
      if (std::isnan(imputed(i, j))) imputed(i, j) = sum / count;
    }
  }
  absl::StatusOr<GmmFitResult> imp = Fit(Dataset{imputed, {}}, spec, options);
  ASSERT_THAT(imp, IsOk());
  // Row deletion.
  std::vector<int> keep;
  for (Eigen::Index i = 0; i < train.rows(); ++i) {
    if (!train.row(i).hasNaN()) keep.push_back(static_cast<int>(i));
  }
  RowMatrix deleted(keep.size(), train.cols());
  for (size_t r = 0; r < keep.size(); ++r) deleted.row(r) = train.row(keep[r]);
  absl::StatusOr<GmmFitResult> del = Fit(Dataset{deleted, {}}, spec, options);
  ASSERT_THAT(del, IsOk());

  const double ll_em = HeldOut(em->params, test);
  const double ll_imp = HeldOut(imp->params, test);
  const double ll_del = HeldOut(del->params, test);
  std::printf(
      "held-out observed-data log-likelihood (3000 rows, 20%% MCAR): EM %.2f, "
      "mean imputation %.2f, row deletion (%zu rows kept) %.2f\n",
      ll_em, ll_imp, keep.size(), ll_del);
  EXPECT_GT(ll_em, ll_imp);
  EXPECT_GT(ll_em, ll_del);
}

TEST(GmmMissing, AColumnWithNoObservedValueIsInvalid) {
  RowMatrix x = ThreeClusters(30, 1);
  x.col(1).setConstant(kNaN);
  GmmSpec spec;
  spec.k = 2;
  EXPECT_THAT(Fit(Dataset{x, {}}, spec, FitOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument, "column 2 has no observed value"));
}

}  // namespace
}  // namespace emfit::gmm
