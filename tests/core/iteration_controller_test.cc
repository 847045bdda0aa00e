#include "emfit/em/iteration_controller.h"

#include <cmath>
#include <limits>
#include <vector>

#include "emfit/exec/cancellation.h"
#include "gtest/gtest.h"

namespace emfit {
namespace {

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

TEST(IterationController, StopsAtDeadline) {
  FitControls controls;
  controls.deadline = absl::Now() - absl::Milliseconds(1);
  RestartSummary s = Script({-5, -4}, FitOptions{}, controls);
  EXPECT_EQ(s.reason, TerminationReason::kDeadline);
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

class Recorder : public FitObserver {
 public:
  void OnIteration(const IterationEvent& e) override { events.push_back(e); }
  std::vector<IterationEvent> events;
};

TEST(IterationController, NotifiesObserverWithChangePerRow) {
  Recorder r;
  FitControls controls;
  controls.observer = &r;
  FitOptions o;
  o.tol = 0;
  o.max_iter = 2;
  Script({-10, -8, -7}, o, controls, 2.0);
  ASSERT_EQ(r.events.size(), 3u);
  EXPECT_TRUE(std::isnan(r.events[0].change));
  EXPECT_DOUBLE_EQ(r.events[1].change, 1.0);
  EXPECT_DOUBLE_EQ(r.events[2].change, 0.5);
  EXPECT_EQ(r.events[2].iteration, 2);
  EXPECT_DOUBLE_EQ(r.events[2].elbo, -7);
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
