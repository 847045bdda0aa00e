#include "emfit/em/iteration_controller.h"

#include <cmath>
#include <limits>
#include <vector>

#include "emfit/exec/cancellation.h"
#include "gtest/gtest.h"
#include "testing/observers.h"

namespace emfit {
namespace {

using ::emfit::testing::RecordingObserver;

// Runs the controller over a scripted sequence of log-likelihoods, as the driver would.
RestartSummary Script(const std::vector<double>& lls, FitOptions options, FitControls controls = {},
                      double total_weight = 1.0) {
  IterationController c(options, controls, 0, total_weight);
  size_t t = 0;
  while (c.ShouldStart() && t < lls.size()) {
    if (!c.Record(lls[t++])) break;
  }
  return c.Finish(7);
}

TEST(IterationController, StopsAtMaxIter) {
  FitOptions o;
  o.max_iter = 3;
  o.tol = 0;
  RestartSummary s = Script({-10, -9, -8, -7, -6, -5}, o);
  EXPECT_EQ(s.reason, TerminationReason::kMaxIter);
  EXPECT_EQ(s.iterations, 3);
  EXPECT_EQ(s.history.size(), 4u);
  EXPECT_EQ(s.log_likelihood, -7);
  EXPECT_FALSE(s.converged());
  EXPECT_EQ(s.seed, 7u);
}

TEST(IterationController, ConvergesOnMeanLogLikelihoodChange) {
  FitOptions o;
  o.tol = 1e-3;
  // Total weight 100: changes of 1, 0.5 and 0.05 are 1e-2, 5e-3 and 5e-4 per row.
  RestartSummary s = Script({-100, -99, -98.5, -98.45, -98.44}, o, {}, 100.0);
  EXPECT_EQ(s.reason, TerminationReason::kConverged);
  EXPECT_EQ(s.iterations, 3);
  EXPECT_TRUE(s.converged());
}

TEST(IterationController, ConvergenceTestUsesAbsoluteChange) {
  FitOptions o;
  o.tol = 1e-3;
  RestartSummary s = Script({-100, -100.0001}, o);
  EXPECT_EQ(s.reason, TerminationReason::kConverged);
}

TEST(IterationController, ToleranceZeroNeverConverges) {
  FitOptions o;
  o.tol = 0;
  o.max_iter = 4;
  RestartSummary s = Script({-1, -1, -1, -1, -1, -1}, o);
  EXPECT_EQ(s.reason, TerminationReason::kMaxIter);
  EXPECT_EQ(s.iterations, 4);
}

TEST(IterationController, MaxIterZeroEvaluatesTheStartOnly) {
  FitOptions o;
  o.max_iter = 0;
  RestartSummary s = Script({-5, -4}, o);
  EXPECT_EQ(s.iterations, 0);
  EXPECT_EQ(s.history, std::vector<double>{-5});
}

TEST(IterationController, StopsWhenCancelled) {
  CancellationToken token;
  token.Cancel();
  FitControls controls;
  controls.cancel = &token;
  RestartSummary s = Script({-5, -4}, FitOptions{}, controls);
  EXPECT_EQ(s.reason, TerminationReason::kCancelled);
  EXPECT_TRUE(s.history.empty());
}

TEST(IterationController, APassedDeadlineStopsAfterTheStartIsEvaluated) {
  FitControls controls;
  controls.deadline = absl::Now() - absl::Milliseconds(1);
  RestartSummary s = Script({-5, -4}, FitOptions{}, controls);
  EXPECT_EQ(s.reason, TerminationReason::kDeadline);
  EXPECT_EQ(s.history, std::vector<double>{-5});
  EXPECT_EQ(s.iterations, 0);
}

TEST(IterationController, ASmallStepWhileTheRiseGoesOnIsNotConvergence) {
  FitOptions o;
  o.tol = 1;
  // Steps 1.2, 1.1, 0.95, 0.9, 1.5, 3, 0.5: the rule on the step alone would stop at 0.95 (a
  // plateau near a saddle); Aitken projects 6.0 and 16.2 still to come after 0.95 and 0.9,
  // and the steps then grow. After the step of 0.5 that follows 3 it projects 0.1 < tol.
  RestartSummary s = Script({0, 1.2, 2.3, 3.25, 4.15, 5.65, 8.65, 9.15, 9.2}, o);
  EXPECT_EQ(s.reason, TerminationReason::kConverged);
  EXPECT_EQ(s.iterations, 7);
  EXPECT_NE(s.message.find("projected further rise 0.1"), std::string::npos) << s.message;
}

TEST(IterationController, SmallStepsThatKeepShrinkingSlowlyDoNotConverge) {
  FitOptions o;
  o.tol = 1e-3;
  o.max_iter = 50;
  // Steps of 1e-4 * 0.99^t: each is far below tol, but the rise still to come is 1e-2.
  std::vector<double> lls{0};
  for (int t = 0; t < 60; ++t) lls.push_back(lls.back() + 1e-4 * std::pow(0.99, t));
  RestartSummary s = Script(lls, o);
  EXPECT_EQ(s.reason, TerminationReason::kMaxIter);
}

TEST(IterationController, ADecreaseBelowTolConverges) {
  FitOptions o;
  o.tol = 1e-3;
  RestartSummary s = Script({0, 5, 4.9999, 4}, o);
  EXPECT_EQ(s.reason, TerminationReason::kConverged);
  EXPECT_EQ(s.iterations, 2);
}

TEST(IterationController, AFirstRiseNeedsASecondStepUnlessItIsRounding) {
  FitOptions o;
  o.tol = 1e-3;
  // 1e-4 < tol, but one step cannot tell a plateau from the top.
  RestartSummary s = Script({-1e6, -1e6 + 1e-4, -1e6 + 1.5e-4, -1e6 + 2}, o);
  EXPECT_EQ(s.reason, TerminationReason::kConverged);
  EXPECT_EQ(s.iterations, 2);
  // 4e-7 on a log-likelihood of -1e6 is below rounding (1e-12 |l|): no rise at all.
  s = Script({-1e6, -1e6 + 4e-7, -1e6 + 2}, o);
  EXPECT_EQ(s.reason, TerminationReason::kConverged);
  EXPECT_EQ(s.iterations, 1);
}

TEST(IterationController, ReachingMaxIterBeforeTheToleranceIsAWarning) {
  RecordingObserver r;
  FitControls controls;
  controls.observer = &r;
  FitOptions o;
  o.max_iter = 2;
  o.tol = 1e-3;
  RestartSummary s = Script({-10, -8, -7, -6}, o, controls);
  EXPECT_EQ(s.reason, TerminationReason::kMaxIter);
  ASSERT_EQ(s.warnings.size(), 1u);
  EXPECT_EQ(s.warnings[0].code, "max_iter");
  EXPECT_NE(s.warnings[0].message.find("max_iter=2"), std::string::npos);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].code, "max_iter");
  // With tol = 0 the user asked for exactly max_iter iterations: no warning.
  o.tol = 0;
  EXPECT_TRUE(Script({-10, -8, -7, -6}, o).warnings.empty());
}

TEST(IterationController, ErrorsOfTheProgramAreKeptApartFromNumericalFailures) {
  const FitControls none;
  IterationController numerical(FitOptions{}, none, 0, 1.0);
  numerical.StopOn(absl::FailedPreconditionError("component 1 is not positive definite"));
  EXPECT_TRUE(numerical.error().ok());
  EXPECT_EQ(numerical.Finish(0).reason, TerminationReason::kNumericalFailure);
  EXPECT_EQ(numerical.Finish(0).message, "component 1 is not positive definite");

  IterationController bug(FitOptions{}, none, 0, 1.0);
  bug.StopOn(absl::InternalError("a bug"));
  EXPECT_EQ(bug.error().code(), absl::StatusCode::kInternal);

  IterationController cancelled(FitOptions{}, none, 0, 1.0);
  cancelled.StopOn(absl::CancelledError("x"));
  EXPECT_TRUE(cancelled.error().ok());
  EXPECT_EQ(cancelled.Finish(0).reason, TerminationReason::kCancelled);
}

TEST(IterationController, EachDistinctWarningIsPassedOnOnce) {
  RecordingObserver r;
  FitControls controls;
  controls.observer = &r;
  IterationController c(FitOptions{}, controls, 3, 1.0);
  c.Warn({{"empty_component", "a", 0, 1}, {"empty_component", "b", 0, 2}});
  c.Warn({{"empty_component", "c", 0, 1}});
  ASSERT_EQ(r.warnings.size(), 2u);
  EXPECT_EQ(r.warnings[0].restart, 3);
  const RestartSummary s = c.Finish(0);
  ASSERT_EQ(s.warnings.size(), 2u);
  EXPECT_EQ(s.warnings[1].message, "b");
}

TEST(IterationController, NonFiniteLogLikelihoodIsNumericalFailureAndNotRecorded) {
  FitOptions o;
  o.tol = 0;
  RestartSummary s = Script({-5, -4, std::numeric_limits<double>::quiet_NaN(), -3}, o);
  EXPECT_EQ(s.reason, TerminationReason::kNumericalFailure);
  EXPECT_EQ(s.history, (std::vector<double>{-5, -4}));
  EXPECT_EQ(s.log_likelihood, -4);
  EXPECT_NE(s.message.find("not finite"), std::string::npos);
}

TEST(IterationController, NotifiesObserverWithChangePerRowAndTheElbo) {
  RecordingObserver r;
  FitControls controls;
  controls.observer = &r;
  FitOptions o;
  o.tol = 0;
  o.max_iter = 2;
  IterationController c(o, controls, 0, 2.0);
  ASSERT_TRUE(c.ShouldStart());
  ASSERT_TRUE(c.Record(-10, -11));  // no previous posterior: the ELBO is not reported
  ASSERT_TRUE(c.ShouldStart());
  ASSERT_TRUE(c.Record(-8, -9));
  ASSERT_TRUE(c.ShouldStart());
  EXPECT_FALSE(c.Record(-7, -7.25));
  ASSERT_EQ(r.events.size(), 3u);
  EXPECT_TRUE(std::isnan(r.events[0].change));
  EXPECT_TRUE(std::isnan(r.events[0].elbo));
  EXPECT_TRUE(std::isnan(r.events[0].kl));
  EXPECT_DOUBLE_EQ(r.events[1].change, 1.0);
  EXPECT_DOUBLE_EQ(r.events[1].elbo, -9);
  EXPECT_DOUBLE_EQ(r.events[1].kl, 1);
  EXPECT_DOUBLE_EQ(r.events[2].change, 0.5);
  EXPECT_EQ(r.events[2].iteration, 2);
  EXPECT_DOUBLE_EQ(r.events[2].kl, 0.25);
}

TEST(FitOptions, ValidateNamesTheField) {
  FitOptions o;
  EXPECT_TRUE(o.Validate().ok());
  o.tol = -1;
  EXPECT_NE(o.Validate().message().find("options.tol"), absl::string_view::npos);
  o = FitOptions{};
  o.max_iter = -1;
  EXPECT_NE(o.Validate().message().find("options.max_iter"), absl::string_view::npos);
}

}  // namespace
}  // namespace emfit
