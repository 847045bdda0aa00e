#include "emfit/gmm/gmm.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "emfit/exec/cancellation.h"
#include "emfit/exec/thread_pool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/data.h"
#include "testing/observers.h"
#include "testing/status_matchers.h"

namespace emfit::gmm {
namespace {

using ::emfit::testing::RecordingObserver;

using ::emfit::testing::IsOk;
using ::emfit::testing::StatusIs;

constexpr CovarianceType kAllTypes[] = {CovarianceType::kFull, CovarianceType::kDiag,
                                        CovarianceType::kTied, CovarianceType::kSpherical};

Dataset Faithful() { return Dataset{testing::ReadCsv(testing::DataPath("faithful.csv")), {}}; }

Dataset TwoClusters(int n = 400, uint64_t seed = 7) {
  Eigen::MatrixXd means(2, 2);
  means << -5, 0, 5, 3;
  return Dataset{testing::SampleMixture(means, 1.0, n, seed), {}};
}

TEST(GmmFit, FaithfulTwoComponentFullMatchesKnownMaximum) {
  GmmSpec spec;
  spec.k = 2;
  FitOptions options;
  options.n_init = 3;
  options.tol = 1e-8;
  options.max_iter = 1000;
  absl::StatusOr<GmmFitResult> fit = Fit(Faithful(), spec, options);
  ASSERT_THAT(fit, IsOk());
  // mclust and scikit-learn report -1130.264 and BIC 2322.19 (data/README.md).
  EXPECT_NEAR(fit->summary.log_likelihood, -1130.264, 1e-3);
  EXPECT_NEAR(fit->summary.bic, 2322.19, 1e-2);
  EXPECT_EQ(fit->summary.num_free_parameters, 11);
  EXPECT_TRUE(fit->summary.converged());
  EXPECT_EQ(fit->summary.restarts.size(), 3u);
}

TEST(GmmFit, SingleComponentEqualsClosedFormMaximumLikelihood) {
  const Dataset data = Faithful();
  const Eigen::RowVectorXd mean = data.x.colwise().mean();
  const RowMatrix centred = data.x.rowwise() - mean;
  const Eigen::MatrixXd cov = centred.transpose() * centred / static_cast<double>(data.rows());
  for (CovarianceType type : kAllTypes) {
    SCOPED_TRACE(CovarianceTypeName(type));
    GmmSpec spec;
    spec.k = 1;
    spec.covariance_type = type;
    spec.reg_covar = 0;
    absl::StatusOr<GmmFitResult> fit = Fit(data, spec, FitOptions{});
    ASSERT_THAT(fit, IsOk());
    EXPECT_TRUE(fit->params.means.row(0).isApprox(mean, 1e-12));
    Eigen::MatrixXd want = cov;
    if (type == CovarianceType::kDiag) want = cov.diagonal().asDiagonal();
    if (type == CovarianceType::kSpherical) {
      want = Eigen::MatrixXd::Identity(2, 2) * cov.trace() / 2;
    }
    EXPECT_TRUE(fit->params.ComponentCovariance(0).isApprox(want, 1e-10))
        << fit->params.ComponentCovariance(0) << "\nwant\n"
        << want;
    EXPECT_DOUBLE_EQ(fit->params.weights[0], 1.0);
  }
}

TEST(GmmFit, LogLikelihoodNeverDecreasesForEveryCovarianceType) {
  for (CovarianceType type : kAllTypes) {
    SCOPED_TRACE(CovarianceTypeName(type));
    GmmSpec spec;
    spec.k = 3;
    spec.covariance_type = type;
    spec.reg_covar = 0;  // with reg_covar > 0 the update is not an exact M-step (§1.2)
    spec.init = InitMethod::kRandom;
    FitOptions options;
    options.tol = 0;
    options.max_iter = 60;
    options.seed = 11;
    absl::StatusOr<GmmFitResult> fit = Fit(Faithful(), spec, options);
    ASSERT_THAT(fit, IsOk());
    ASSERT_EQ(fit->summary.history.size(), 61u);
    testing::ExpectNonDecreasing(fit->summary.history);
  }
}

TEST(GmmFit, ToleranceZeroRunsExactlyMaxIterAndIsNotConverged) {
  GmmSpec spec;
  spec.k = 2;
  FitOptions options;
  options.tol = 0;
  options.max_iter = 17;
  absl::StatusOr<GmmFitResult> fit = Fit(Faithful(), spec, options);
  ASSERT_THAT(fit, IsOk());
  EXPECT_EQ(fit->summary.iterations, 17);
  EXPECT_EQ(fit->summary.reason, TerminationReason::kMaxIter);
  EXPECT_FALSE(fit->summary.converged());
  EXPECT_DOUBLE_EQ(fit->summary.log_likelihood, fit->summary.history.back());
}

TEST(GmmFit, ObserverSeesEveryIterationWithChange) {
  GmmSpec spec;
  spec.k = 2;
  FitOptions options;
  options.tol = 0;
  options.max_iter = 5;
  RecordingObserver observer;
  FitControls controls;
  controls.observer = &observer;
  absl::StatusOr<GmmFitResult> fit = Fit(Faithful(), spec, options, controls);
  ASSERT_THAT(fit, IsOk());
  ASSERT_EQ(observer.events.size(), 6u);
  EXPECT_TRUE(std::isnan(observer.events[0].change));
  for (int t = 1; t < 6; ++t) {
    EXPECT_EQ(observer.events[t].iteration, t);
    EXPECT_NEAR(observer.events[t].change,
                (observer.events[t].log_likelihood - observer.events[t - 1].log_likelihood) / 272.0,
                1e-12);
  }
}

TEST(GmmFit, RecoversWellSeparatedClusters) {
  for (CovarianceType type : kAllTypes) {
    SCOPED_TRACE(CovarianceTypeName(type));
    GmmSpec spec;
    spec.k = 2;
    spec.covariance_type = type;
    absl::StatusOr<GmmFitResult> fit = Fit(TwoClusters(2000), spec, FitOptions{});
    ASSERT_THAT(fit, IsOk());
    Eigen::MatrixXd m = fit->params.means;
    if (m(0, 0) > m(1, 0)) m.row(0).swap(m.row(1));
    EXPECT_NEAR(m(0, 0), -5, 0.1);
    EXPECT_NEAR(m(0, 1), 0, 0.1);
    EXPECT_NEAR(m(1, 0), 5, 0.1);
    EXPECT_NEAR(m(1, 1), 3, 0.1);
    EXPECT_NEAR(fit->params.weights[0], 0.5, 0.01);
    EXPECT_NEAR(fit->params.ComponentCovariance(0)(0, 0), 1.0, 0.1);
  }
}

TEST(GmmFit, SameSeedGivesSameResultWhateverTheThreadCount) {
  GmmSpec spec;
  spec.k = 3;
  FitOptions options;
  options.seed = 42;
  options.n_init = 2;
  // Enough rows for several stripes, so that threads really share the work.
  const Dataset data = TwoClusters(20000, 3);
  absl::StatusOr<GmmFitResult> a = Fit(data, spec, options);
  ThreadPool pool(2);
  FitControls controls;
  controls.pool = &pool;
  absl::StatusOr<GmmFitResult> b = Fit(data, spec, options, controls);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->summary.history, b->summary.history);
  EXPECT_EQ(a->params.means, b->params.means);
  EXPECT_EQ(a->params.covariances, b->params.covariances);
  options.seed = 43;
  absl::StatusOr<GmmFitResult> c = Fit(data, spec, options);
  ASSERT_THAT(c, IsOk());
  EXPECT_NE(a->summary.history, c->summary.history);
}

TEST(GmmFit, EveryInitMethodFits) {
  for (InitMethod init : {InitMethod::kKMeans, InitMethod::kKMeansPlusPlus,
                          InitMethod::kRandomFromData, InitMethod::kRandom}) {
    for (CovarianceType type : kAllTypes) {
      SCOPED_TRACE(std::string(InitMethodName(init)) + " " + CovarianceTypeName(type));
      GmmSpec spec;
      spec.k = 2;
      spec.init = init;
      spec.covariance_type = type;
      FitOptions options;
      options.max_iter = 500;
      absl::StatusOr<GmmFitResult> fit = Fit(TwoClusters(), spec, options);
      ASSERT_THAT(fit, IsOk());
      EXPECT_THAT(fit->params.Validate(), IsOk());
      EXPECT_TRUE(fit->summary.converged());
    }
  }
}

TEST(GmmPosteriors, RowsSumToOneAndMatchTheFitLogLikelihood) {
  GmmSpec spec;
  spec.k = 2;
  const Dataset data = Faithful();
  absl::StatusOr<GmmFitResult> fit = Fit(data, spec, FitOptions{});
  ASSERT_THAT(fit, IsOk());
  absl::StatusOr<Posteriors> post = ComputePosteriors(fit->params, data.x);
  ASSERT_THAT(post, IsOk());
  for (Eigen::Index i = 0; i < data.rows(); ++i) {
    EXPECT_NEAR(post->responsibilities.row(i).sum(), 1.0, 1e-12);
    EXPECT_GE(post->responsibilities.row(i).minCoeff(), 0.0);
    EXPECT_EQ(post->responsibilities(i, post->labels[i]), post->responsibilities.row(i).maxCoeff());
  }
  EXPECT_NEAR(post->log_likelihood.sum(), fit->summary.log_likelihood, 1e-8);
  absl::StatusOr<ScoreResult> score = Score(fit->params, data);
  ASSERT_THAT(score, IsOk());
  EXPECT_NEAR(score->log_likelihood, fit->summary.log_likelihood, 1e-8);
  EXPECT_NEAR(score->bic, fit->summary.bic, 1e-8);
}

TEST(GmmPosteriors, FarAwayPointsGetFiniteResponsibilities) {
  GmmParams p;
  p.covariance_type = CovarianceType::kFull;
  p.weights = Eigen::Vector2d(0.3, 0.7);
  p.means = Eigen::MatrixXd(2, 2);
  p.means << 0, 0, 1, 1;
  p.covariances = Eigen::MatrixXd(4, 2);
  p.covariances << 1, 0.2, 0.2, 1, 2, 0, 0, 0.5;
  RowMatrix far(3, 2);
  far << 1e4, 1e4, -2e4, 5e3, 1e4, -1e4;
  absl::StatusOr<Posteriors> post = ComputePosteriors(p, far);
  ASSERT_THAT(post, IsOk());
  EXPECT_TRUE(post->responsibilities.allFinite());
  EXPECT_TRUE(post->log_likelihood.allFinite());
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(post->responsibilities.row(i).sum(), 1.0, 1e-12);
}

TEST(GmmPosteriors, RowsWhoseDensityIsNotRepresentableAreRefusedNotNaN) {
  // Finite data so far from every component that the squared Mahalanobis distance overflows
  // (1e200), or whose deviation from a mean overflows (-1e308 against a mean of 1e308): the
  // log-density is not a double; the E-step must say so, never answer NaN or -inf.
  GmmParams p;
  p.covariance_type = CovarianceType::kDiag;
  p.weights = Eigen::Vector2d(0.5, 0.5);
  p.means = Eigen::MatrixXd(2, 2);
  p.means << 0, 0, 1, 1;
  p.covariances = Eigen::MatrixXd::Ones(2, 2);
  RowMatrix x(3, 2);
  x << 0.5, 0.5, 1e200, 0, 0, 1;
  EXPECT_THAT(ComputePosteriors(p, x),
              StatusIs(absl::StatusCode::kInvalidArgument, "row 2 is so far from every component"));
  EXPECT_THAT(ComputePosteriors(p, x, /*first_row=*/100),
              StatusIs(absl::StatusCode::kInvalidArgument, "row 102 is so far"));
  EXPECT_THAT(Score(p, Dataset{x, {}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "row 2 is so far"));
  p.means << 1e308, 1e308, 1e308, -1e308;
  RowMatrix y(2, 2);
  y << -1e308, 0, -1e308, std::nan("");
  EXPECT_THAT(ComputePosteriors(p, y),
              StatusIs(absl::StatusCode::kInvalidArgument, "row 1 is so far"));
  EXPECT_THAT(Score(p, Dataset{y, {}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "is so far from every component"));
}

TEST(GmmFit, RejectsBadInputWithMessagesNamingTheField) {
  GmmSpec spec;
  spec.k = 2;
  EXPECT_THAT(Fit(Dataset{}, spec, FitOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument, "at least 2 rows"));
  spec.k = 0;
  EXPECT_THAT(Fit(Faithful(), spec, FitOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.gmm.k"));
  spec.k = 273;
  EXPECT_THAT(Fit(Faithful(), spec, FitOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument, "(272), got 273"));
  spec.k = 2;
  spec.reg_covar = -1;
  EXPECT_THAT(Fit(Faithful(), spec, FitOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.gmm.reg_covar"));
  spec.reg_covar = 1e-6;
  Dataset bad = Faithful();
  bad.x(5, 1) = std::numeric_limits<double>::infinity();  // NaN would mean "missing"
  EXPECT_THAT(Fit(bad, spec, FitOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument, "row 6, column 2"));
  FitOptions options;
  options.n_init = 0;
  EXPECT_THAT(Fit(Faithful(), spec, options),
              StatusIs(absl::StatusCode::kInvalidArgument, "options.n_init"));
  Dataset weighted = Faithful();
  weighted.weights = Eigen::VectorXd::Ones(weighted.rows());
  weighted.weights[3] = -1;
  EXPECT_THAT(Fit(weighted, spec, FitOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument, "weight of row 4"));
}

TEST(GmmFit, FewerDistinctRowsThanComponentsIsInvalid) {
  RowMatrix x(6, 2);
  x << 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 2, 2;
  GmmSpec spec;
  spec.k = 3;
  EXPECT_THAT(Fit(Dataset{x, {}}, spec, FitOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument, "fewer distinct rows"));
}

TEST(GmmFit, CollapsedCovarianceWithoutRegularisationIsFailedPrecondition) {
  RowMatrix x(6, 2);
  x << 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2;  // two points, repeated: zero variance
  GmmSpec spec;
  spec.k = 2;
  spec.reg_covar = 0;
  EXPECT_THAT(Fit(Dataset{x, {}}, spec, FitOptions{}),
              StatusIs(absl::StatusCode::kFailedPrecondition, "not positive definite"));
  spec.reg_covar = 1e-6;
  EXPECT_THAT(Fit(Dataset{x, {}}, spec, FitOptions{}), IsOk());
}

TEST(GmmFit, CancelledTokenStopsBeforeTheFirstIteration) {
  CancellationToken token;
  token.Cancel();
  FitControls controls;
  controls.cancel = &token;
  GmmSpec spec;
  spec.k = 2;
  EXPECT_THAT(Fit(Faithful(), spec, FitOptions{}, controls),
              StatusIs(absl::StatusCode::kCancelled, "cancelled"));
}

class CancelAfter : public FitObserver {
 public:
  CancelAfter(CancellationToken* token, int n) : token_(token), n_(n) {}
  void OnIteration(const IterationEvent& e) override {
    if (e.iteration == n_) token_->Cancel();
  }

 private:
  CancellationToken* token_;
  int n_;
};

TEST(GmmFit, CancellationMidFitReturnsTheLastCompleteIteration) {
  CancellationToken token;
  CancelAfter observer(&token, 3);
  FitControls controls;
  controls.cancel = &token;
  controls.observer = &observer;
  GmmSpec spec;
  spec.k = 2;
  FitOptions options;
  options.tol = 0;
  options.n_init = 4;
  absl::StatusOr<GmmFitResult> fit = Fit(Faithful(), spec, options, controls);
  ASSERT_THAT(fit, IsOk());
  EXPECT_EQ(fit->summary.reason, TerminationReason::kCancelled);
  EXPECT_EQ(fit->summary.iterations, 3);
  ASSERT_EQ(fit->summary.restarts.size(), 4u);
  for (int r = 1; r < 4; ++r) {  // later restarts stop before their first iteration
    EXPECT_TRUE(fit->summary.restarts[r].history.empty());
    EXPECT_EQ(fit->summary.restarts[r].reason, TerminationReason::kCancelled);
  }
  absl::StatusOr<ScoreResult> score = Score(fit->params, Faithful());
  ASSERT_THAT(score, IsOk());
  EXPECT_NEAR(score->log_likelihood, fit->summary.log_likelihood, 1e-8);
}

TEST(GmmScore, StopsWhenCancelled) {
  GmmSpec spec;
  spec.k = 2;
  absl::StatusOr<GmmFitResult> fit = Fit(Faithful(), spec, FitOptions{});
  ASSERT_THAT(fit, IsOk());
  CancellationToken token;
  token.Cancel();
  FitControls controls;
  controls.cancel = &token;
  EXPECT_THAT(Score(fit->params, Faithful(), controls),
              StatusIs(absl::StatusCode::kCancelled, "cancelled"));
}

TEST(GmmFit, PassedDeadlineIsAnOutcome) {
  // Passed before the fit starts: the start of the first restart is evaluated, the others are
  // skipped, and the result says why it stopped.
  FitControls controls;
  controls.deadline = absl::Now() - absl::Seconds(1);
  GmmSpec spec;
  spec.k = 2;
  FitOptions options;
  options.n_init = 3;
  absl::StatusOr<GmmFitResult> fit = Fit(Faithful(), spec, options, controls);
  ASSERT_THAT(fit, IsOk());
  EXPECT_EQ(fit->summary.reason, TerminationReason::kDeadline);
  EXPECT_EQ(fit->summary.iterations, 0);
  ASSERT_EQ(fit->summary.history.size(), 1u);
  ASSERT_EQ(fit->summary.restarts.size(), 3u);
  EXPECT_TRUE(fit->summary.restarts[1].history.empty());
  EXPECT_EQ(fit->summary.restarts[2].reason, TerminationReason::kDeadline);
  absl::StatusOr<ScoreResult> score = Score(fit->params, Faithful());
  ASSERT_THAT(score, IsOk());
  EXPECT_NEAR(score->log_likelihood, fit->summary.log_likelihood, 1e-9);
}

// Passes the deadline (moves it into the past) once iteration `n` is seen.
class DeadlineAfter : public FitObserver {
 public:
  DeadlineAfter(FitControls* controls, int n) : controls_(controls), n_(n) {}
  void OnIteration(const IterationEvent& e) override {
    if (e.iteration == n_) controls_->deadline = absl::InfinitePast();
  }

 private:
  FitControls* controls_;
  int n_;
};

TEST(GmmFit, ADeadlinePassingMidFitIsTheSameOutcome) {
  FitControls controls;
  DeadlineAfter observer(&controls, 4);
  controls.observer = &observer;
  GmmSpec spec;
  spec.k = 2;
  FitOptions options;
  options.tol = 0;
  absl::StatusOr<GmmFitResult> fit = Fit(Faithful(), spec, options, controls);
  ASSERT_THAT(fit, IsOk());
  EXPECT_EQ(fit->summary.reason, TerminationReason::kDeadline);
  EXPECT_EQ(fit->summary.iterations, 4);
  EXPECT_EQ(fit->summary.history.size(), 5u);
}

// The maximum of the tied three-component mixture on Old Faithful (mclust's EEE, 3; reached
// from every start with tol=1e-9), and its BIC with 11 free parameters on 272 rows.
constexpr double kFaithfulTiedThreeMax = -1126.315928;
constexpr double kFaithfulTiedThreeBic = 2314.2957;

TEST(GmmFit, TiedThreeComponentsOnFaithfulReachTheMaximumFromEverySeedWithDefaults) {
  GmmSpec spec;
  spec.k = 3;
  spec.covariance_type = CovarianceType::kTied;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    SCOPED_TRACE(seed);
    FitOptions options;  // the defaults, but for the seed
    options.seed = seed;
    absl::StatusOr<GmmFitResult> fit = Fit(Faithful(), spec, options);
    ASSERT_THAT(fit, IsOk());
    EXPECT_TRUE(fit->summary.converged());
    // To the printed precision: -1126.316.
    EXPECT_NEAR(fit->summary.log_likelihood, kFaithfulTiedThreeMax, 5e-4);
  }
}

TEST(GmmFit, ModelSelectionWithDefaultsOnFaithfulPicksTiedThreeComponentsAsMclustDoes) {
  double best_bic = std::numeric_limits<double>::infinity();
  int best_k = 0;
  CovarianceType best_type = CovarianceType::kFull;
  for (int k = 1; k <= 9; ++k) {
    for (CovarianceType type : kAllTypes) {
      GmmSpec spec;
      spec.k = k;
      spec.covariance_type = type;
      absl::StatusOr<GmmFitResult> fit = Fit(Faithful(), spec, FitOptions{});
      ASSERT_THAT(fit, IsOk());
      if (fit->summary.bic < best_bic) {
        best_bic = fit->summary.bic;
        best_k = k;
        best_type = type;
      }
    }
  }
  EXPECT_EQ(best_k, 3);
  EXPECT_EQ(best_type, CovarianceType::kTied);
  EXPECT_NEAR(best_bic, kFaithfulTiedThreeBic, 5e-3);  // mclust: 2314.32 (its tolerance)
}

TEST(GmmFit, IntegerWeightsEqualRowRepetition) {
  const Dataset data = Faithful();
  Dataset weighted = data;
  weighted.weights = Eigen::VectorXd::Ones(data.rows());
  std::vector<int> repeat_rows;
  for (Eigen::Index i = 0; i < data.rows(); ++i) {
    weighted.weights[i] = 1 + i % 3;
    for (int r = 0; r < 1 + i % 3; ++r) repeat_rows.push_back(static_cast<int>(i));
  }
  Dataset repeated{RowMatrix(repeat_rows.size(), 2), {}};
  for (size_t r = 0; r < repeat_rows.size(); ++r) repeated.x.row(r) = data.x.row(repeat_rows[r]);
  GmmSpec spec;
  spec.k = 2;
  // Both fits converge tightly to the same (global) maximum of Old Faithful's k=2 mixture.
  FitOptions options;
  options.tol = 1e-10;
  options.max_iter = 2000;
  absl::StatusOr<GmmFitResult> a = Fit(weighted, spec, options);
  absl::StatusOr<GmmFitResult> b = Fit(repeated, spec, options);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_NEAR(a->summary.log_likelihood, b->summary.log_likelihood, 1e-6);
  EXPECT_NEAR(a->summary.bic, b->summary.bic, 1e-6);
}

// Point masses (0,0) x5, (10,0) x3, (0,10) x2 (algorithms.md oracle 5).
Dataset PointMasses() {
  RowMatrix x(10, 2);
  x << 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 10, 0, 10, 0, 0, 10, 0, 10;
  return Dataset{x, {}};
}

TEST(GmmFit, PointMassesCollapseToRegCovarVisiblyAndMatchTheClosedForm) {
  GmmSpec spec;
  spec.k = 3;
  FitOptions options;
  options.max_iter = 200;
  RecordingObserver recorder;
  FitControls controls;
  controls.observer = &recorder;
  absl::StatusOr<GmmFitResult> fit = Fit(PointMasses(), spec, options, controls);
  ASSERT_THAT(fit, IsOk());
  // l = sum n_k ln(n_k / N) - (N d / 2) ln(2 pi lambda) = 109.4798047749.
  EXPECT_NEAR(fit->summary.log_likelihood, 109.4798047749, 1e-8);
  std::vector<double> w(fit->params.weights.data(), fit->params.weights.data() + 3);
  std::sort(w.begin(), w.end());
  EXPECT_NEAR(w[0], 0.2, 1e-9);
  EXPECT_NEAR(w[2], 0.5, 1e-9);
  for (int j = 0; j < 3; ++j) {
    EXPECT_TRUE(
        fit->params.ComponentCovariance(j).isApprox(1e-6 * Eigen::MatrixXd::Identity(2, 2), 1e-6));
  }
  EXPECT_EQ(recorder.Count("collapsed_covariance"), 3);  // once per component, not per iteration
}

TEST(GmmFit, AComponentThatLosesItsMassIsReportedAndStaysFinite) {
  GmmParams start;
  start.covariance_type = CovarianceType::kFull;
  start.weights = Eigen::Vector4d(0.3, 0.3, 0.3, 0.1);
  start.means = Eigen::MatrixXd(4, 2);
  start.means << 0, 0, 10, 0, 0, 10, 1e3, 1e3;  // the last is far from every point
  start.covariances = Eigen::MatrixXd::Identity(2, 2).replicate(4, 1);
  GmmSpec spec;
  spec.k = 4;
  spec.init_params = start;
  RecordingObserver recorder;
  FitControls controls;
  controls.observer = &recorder;
  absl::StatusOr<GmmFitResult> fit = Fit(PointMasses(), spec, FitOptions{}, controls);
  ASSERT_THAT(fit, IsOk());
  EXPECT_EQ(recorder.Count("empty_component"), 1);
  EXPECT_EQ(recorder.warnings.front().component, 3);
  EXPECT_TRUE(fit->params.means.allFinite());
  EXPECT_TRUE(fit->params.covariances.allFinite());
  EXPECT_LT(fit->params.weights[3], 1e-12);
  EXPECT_TRUE(std::isfinite(fit->summary.log_likelihood));
}

TEST(GmmParameters, CountsMatchMclustAndScikitLearn) {
  // d = 3, k = 4: VVV 39, EEE 21, VVI 27, VII 19.
  EXPECT_EQ(NumFreeParameters(CovarianceType::kFull, 4, 3), 3 + 12 + 24);
  EXPECT_EQ(NumFreeParameters(CovarianceType::kTied, 4, 3), 3 + 12 + 6);
  EXPECT_EQ(NumFreeParameters(CovarianceType::kDiag, 4, 3), 3 + 12 + 12);
  EXPECT_EQ(NumFreeParameters(CovarianceType::kSpherical, 4, 3), 3 + 12 + 4);
}

}  // namespace
}  // namespace emfit::gmm
