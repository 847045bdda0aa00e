// SQUAREM acceleration (docs/algorithms.md §5.1, oracles 46-47).
#include <cmath>
#include <random>

#include "emfit/gmm/gmm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/data.h"
#include "testing/status_matchers.h"

namespace emfit::gmm {
namespace {

using ::emfit::testing::IsOk;

constexpr CovarianceType kAllTypes[] = {CovarianceType::kFull, CovarianceType::kDiag,
                                        CovarianceType::kTied, CovarianceType::kSpherical};

// Three heavily overlapping clusters: EM converges slowly (large missing information).
Dataset Overlapping() {
  Eigen::MatrixXd means(3, 2);
  means << 0, 0, 1.5, 0.5, 0.5, 1.8;
  return Dataset{testing::SampleMixture(means, 1.0, 1500, 31), {}};
}

class Recorder : public FitObserver {
 public:
  void OnIteration(const IterationEvent& e) override { events.push_back(e); }
  std::vector<IterationEvent> events;
};

GmmParams Start(const Dataset& data, const GmmSpec& spec) {
  FitOptions zero;
  zero.max_iter = 0;
  zero.seed = 3;
  absl::StatusOr<GmmFitResult> start = Fit(data, spec, zero);
  EXPECT_THAT(start, IsOk());
  return start->params;
}

TEST(Squarem, IsMonotoneAndReachesTheEmFixedPointForEveryCovarianceType) {
  const Dataset data = Overlapping();
  for (CovarianceType type : kAllTypes) {
    SCOPED_TRACE(CovarianceTypeName(type));
    GmmSpec spec;
    spec.k = 3;
    spec.covariance_type = type;
    spec.reg_covar = 0;
    spec.init = InitMethod::kRandom;
    spec.init_params = Start(data, spec);
    // EM's linear rate is slow here: a tolerance on the log-likelihood stops it while the
    // parameters are still ~sqrt(tol) away, so EM runs a fixed, generous number of steps.
    FitOptions options;
    options.tol = 0;
    options.max_iter = 20000;
    absl::StatusOr<GmmFitResult> em = Fit(data, spec, options);
    options.acceleration = Acceleration::kSquarem;
    options.tol = 1e-13;
    Recorder recorder;
    FitControls controls;
    controls.observer = &recorder;
    absl::StatusOr<GmmFitResult> sq = Fit(data, spec, options, controls);
    ASSERT_THAT(em, IsOk());
    ASSERT_THAT(sq, IsOk());
    EXPECT_TRUE(sq->summary.converged());
    testing::ExpectNonDecreasing(sq->summary.history);
    EXPECT_NEAR(sq->summary.log_likelihood, em->summary.log_likelihood, 1e-8);
    // The likelihood is flat along some directions of these overlapping clusters, so equal
    // log-likelihoods (1e-8) pin the parameters down only to ~1e-5.
    EXPECT_TRUE(sq->params.means.isApprox(em->params.means, 5e-5))
        << sq->params.means << "\nvs EM\n"
        << em->params.means;
    int accelerated = 0;
    for (const auto& e : recorder.events) accelerated += e.accelerated;
    // A soft check of the speed-up (algorithms.md oracle 46): a cycle costs 2-4 E-steps.
    std::printf("%-9s SQUAREM %4d cycles (%d accelerated) to tol 1e-13\n", CovarianceTypeName(type),
                sq->summary.iterations, accelerated);
    EXPECT_GT(accelerated, 0);
  }
}

TEST(Squarem, KeepsFixedParametersExactly) {
  const Dataset data = Overlapping();
  GmmSpec spec;
  spec.k = 3;
  spec.init_params = Start(data, spec);
  spec.fix_means = true;
  spec.fix_weights = true;
  FitOptions options;
  options.acceleration = Acceleration::kSquarem;
  options.tol = 1e-9;
  options.max_iter = 500;
  absl::StatusOr<GmmFitResult> fit = Fit(data, spec, options);
  ASSERT_THAT(fit, IsOk());
  EXPECT_TRUE(fit->params.means.isApprox(spec.init_params->means, 1e-14));
  EXPECT_EQ(fit->params.weights, spec.init_params->weights);
  EXPECT_THAT(fit->params.Validate(), IsOk());
}

TEST(Squarem, WorksWithMissingValuesAndStaysMonotone) {
  Dataset data = Overlapping();
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u;
  for (Eigen::Index i = 0; i < data.rows(); ++i) {
    if (u(rng) < 0.3) data.x(i, i % 2) = std::numeric_limits<double>::quiet_NaN();
  }
  GmmSpec spec;
  spec.k = 3;
  spec.reg_covar = 0;
  FitOptions options;
  options.acceleration = Acceleration::kSquarem;
  options.tol = 1e-10;
  options.max_iter = 2000;
  absl::StatusOr<GmmFitResult> fit = Fit(data, spec, options);
  ASSERT_THAT(fit, IsOk());
  testing::ExpectNonDecreasing(fit->summary.history);
  EXPECT_TRUE(fit->summary.converged());
}

}  // namespace
}  // namespace emfit::gmm
