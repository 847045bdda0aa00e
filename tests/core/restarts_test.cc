// The shared restart loop (em/restarts.h) with a scripted family: no model, only the contract.
#include "emfit/em/restarts.h"

#include <cmath>
#include <vector>

#include "emfit/exec/thread_pool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace emfit {
namespace {

using ::emfit::testing::IsOk;
using ::emfit::testing::StatusIs;

// A family whose parameter is one number theta; EM moves it halfway to `target` each M-step and
// the log-likelihood is -(theta - target)^2 + offset. `fail_at` >= 0 makes the E-step of that
// iteration fail with `failure`.
struct ScriptedFamily {
  using Params = double;
  struct Stats {
    double theta = 0;
  };
  double target = 1.0;
  double offset = 0.0;
  int fail_at = -1;
  absl::Status failure;
  mutable int calls = 0;

  Stats NewStats() const { return {}; }
  double total_weight() const { return 10.0; }
  absl::StatusOr<double> EStep(const Params& p, const FitControls&, Stats* s) const {
    if (calls++ == fail_at) return failure;
    s->theta = p;
    return -(p - target) * (p - target) + offset;
  }
  absl::Status MStep(const Stats& s, Params* p) const {
    *p = s.theta + 0.5 * (target - s.theta);
    return absl::OkStatus();
  }
  double ExpectedLogJoint(const Stats&, const Params& p) const {
    return -(p - target) * (p - target) + offset;
  }
  std::vector<FitWarning> Inspect(const Stats&, const Params&) const { return {}; }
  Eigen::VectorXd Pack(const Params& p) const { return Eigen::VectorXd::Constant(1, p); }
  absl::StatusOr<Params> Unpack(const Eigen::VectorXd& x, const Params&) const { return x[0]; }
  int64_t NumFreeParameters() const { return 3; }
};

std::vector<absl::StatusOr<double>> Starts(std::vector<double> values) {
  return {values.begin(), values.end()};
}

TEST(RunRestarts, KeepsTheLargestFinalLogLikelihoodAndSummarisesWithTheFamilysCriteria) {
  ScriptedFamily family;
  FitOptions options;
  options.tol = 0;
  options.max_iter = 2;
  // After two M-steps theta = 1 - (1 - start) / 4: starts 0, 0.6 and -2 end at 0.75, 0.9, 0.25.
  absl::StatusOr<FitOutcome<double>> out =
      RunRestarts(family, Starts({0.0, 0.6, -2.0}), options, FitControls{});
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->summary.best_restart, 1);
  EXPECT_DOUBLE_EQ(out->params, 0.9);
  EXPECT_DOUBLE_EQ(out->summary.log_likelihood, -0.01);
  EXPECT_DOUBLE_EQ(out->summary.mean_log_likelihood, -0.001);
  EXPECT_EQ(out->summary.num_free_parameters, 3);
  EXPECT_DOUBLE_EQ(out->summary.bic, 0.02 + 3 * std::log(10.0));
  EXPECT_DOUBLE_EQ(out->summary.aic, 0.02 + 6);
  ASSERT_EQ(out->summary.restarts.size(), 3u);
  EXPECT_EQ(out->summary.reason, TerminationReason::kMaxIter);
  EXPECT_EQ(out->summary.history, out->summary.restarts[1].history);
}

TEST(RunRestarts, TiesGoToTheEarliestRestart) {
  ScriptedFamily family;
  FitOptions options;
  options.tol = 0;
  options.max_iter = 1;
  absl::StatusOr<FitOutcome<double>> out =
      RunRestarts(family, Starts({2.0, 0.0, 2.0, 0.0}), options, FitControls{});
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->summary.best_restart, 0);
}

TEST(RunRestarts, AnErrorOfTheProgramFailsTheFitWithItselfNotAsANumericalFailure) {
  ScriptedFamily family;
  family.fail_at = 2;
  family.failure = absl::InternalError("a bug in the E-step");
  EXPECT_THAT(RunRestarts(family, Starts({0.0}), FitOptions{}, FitControls{}),
              StatusIs(absl::StatusCode::kInternal, "a bug in the E-step"));
}

TEST(RunRestarts, NumericalFailuresAreOutcomesUnlessEveryRestartFailed) {
  ScriptedFamily family;
  family.fail_at = 0;  // the first restart's first E-step
  family.failure = absl::FailedPreconditionError("not positive definite");
  FitOptions options;
  options.max_iter = 3;
  absl::StatusOr<FitOutcome<double>> out =
      RunRestarts(family, Starts({0.0, 0.5}), options, FitControls{});
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->summary.best_restart, 1);
  EXPECT_EQ(out->summary.restarts[0].reason, TerminationReason::kNumericalFailure);
  ASSERT_FALSE(out->summary.warnings.empty());
  EXPECT_EQ(out->summary.warnings.back().code, "restart_failed");

  family.calls = 0;
  EXPECT_THAT(RunRestarts(family, Starts({0.0}), options, FitControls{}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "every restart failed; last: restart 0: not positive definite"));
}

TEST(RunRestarts, AnInvalidStartIsReturnedAsIs) {
  ScriptedFamily family;
  std::vector<absl::StatusOr<double>> starts = Starts({0.0, 1.0});
  starts[1] = absl::InvalidArgumentError("data: fewer distinct rows than k");
  EXPECT_THAT(RunRestarts(family, std::move(starts), FitOptions{}, FitControls{}),
              StatusIs(absl::StatusCode::kInvalidArgument, "fewer distinct rows"));
}

TEST(RunRestarts, APassedDeadlineRunsTheFirstRestartOnlyAndIsTheFitsReason) {
  ScriptedFamily family;
  FitControls controls;
  controls.deadline = absl::InfinitePast();
  absl::StatusOr<FitOutcome<double>> out =
      RunRestarts(family, Starts({0.0, 0.5, 0.9}), FitOptions{}, controls);
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->summary.reason, TerminationReason::kDeadline);
  EXPECT_EQ(out->summary.restarts[0].history.size(), 1u);
  EXPECT_TRUE(out->summary.restarts[1].history.empty());
  EXPECT_TRUE(out->summary.restarts[2].history.empty());
  EXPECT_EQ(family.calls, 1);  // one E-step in all
}

TEST(InitialiseRestarts, SeedsEachRestartFromTheFitsSeedWhateverTheThreadCount) {
  FitOptions options;
  options.seed = 42;
  auto init = [](int restart, uint64_t seed) -> absl::StatusOr<uint64_t> {
    return seed ^ static_cast<uint64_t>(restart);
  };
  const std::vector<absl::StatusOr<uint64_t>> inline_starts =
      InitialiseRestarts<uint64_t>(5, options, FitControls{}, init);
  ThreadPool pool(2);
  FitControls on_pool;
  on_pool.pool = &pool;
  const std::vector<absl::StatusOr<uint64_t>> pooled =
      InitialiseRestarts<uint64_t>(5, options, on_pool, init);
  for (int r = 0; r < 5; ++r) {
    ASSERT_THAT(inline_starts[r], IsOk());
    ASSERT_THAT(pooled[r], IsOk());
    EXPECT_EQ(*inline_starts[r], RestartSeed(42, r) ^ static_cast<uint64_t>(r));
    EXPECT_EQ(*inline_starts[r], *pooled[r]);
  }
  EXPECT_NE(RestartSeed(42, 0), RestartSeed(42, 1));
  EXPECT_NE(RestartSeed(42, 0), RestartSeed(43, 0));
}

}  // namespace
}  // namespace emfit
