// Parity with scikit-learn 1.2's GaussianMixture from the same starting parameters (algorithms.md
// oracle 14). Fixtures: tests/fixtures/sklearn_faithful.json, written by
// tools/make_sklearn_fixtures.py.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "emfit/gmm/gmm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/data.h"
#include "testing/fixtures.h"
#include "testing/status_matchers.h"

namespace emfit::gmm {
namespace {

using ::emfit::testing::IsOk;
using ::emfit::testing::LoadFixtures;
using ::emfit::testing::ToMatrix;
using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;

GmmParams FromFixture(CovarianceType type,
                      const google::protobuf::Map<std::string, Value>& fields) {
  GmmParams p;
  p.covariance_type = type;
  p.weights = ToMatrix(fields.at("weights")).col(0);
  p.means = ToMatrix(fields.at("means"));
  p.covariances = ToMatrix(fields.at("covariances"));
  return p;
}

// Compares a fit with a reference's parameters and log-likelihood (within `tol`, relative, for
// the parameters and 1e-8 for the log-likelihood) and keeps the largest gaps seen.
struct Gaps {
  double ll = 0, params = 0;
  void Check(const GmmFitResult& fit, const GmmParams& want, double want_ll, double tol) {
    EXPECT_NEAR(fit.summary.log_likelihood, want_ll, 1e-8);
    EXPECT_TRUE(fit.params.weights.isApprox(want.weights, tol)) << fit.params.weights.transpose();
    EXPECT_TRUE(fit.params.means.isApprox(want.means, tol)) << fit.params.means;
    EXPECT_TRUE(fit.params.covariances.isApprox(want.covariances, tol)) << fit.params.covariances;
    ll = std::max(ll, std::abs(fit.summary.log_likelihood - want_ll));
    params =
        std::max({params, (fit.params.means - want.means).norm() / want.means.norm(),
                  (fit.params.covariances - want.covariances).norm() / want.covariances.norm()});
  }
  void Print(const char* reference) const {
    std::printf("largest difference from %s: log-likelihood %.3g, parameters %.3g (relative)\n",
                reference, ll, params);
  }
};

TEST(GmmParity, IteratesMatchScikitLearnFromTheSameStart) {
  const Struct fixtures = LoadFixtures("sklearn_faithful.json");
  const Dataset data{testing::ReadCsv(testing::DataPath("faithful.csv")), {}};
  const ListValue& cases = fixtures.fields().at("cases").list_value();
  ASSERT_EQ(cases.values_size(), 12);
  Gaps gaps;
  for (const Value& c : cases.values()) {
    const auto& f = c.struct_value().fields();
    const std::string type_name = f.at("covariance_type").string_value();
    const int iterations = static_cast<int>(f.at("iterations").number_value());
    SCOPED_TRACE(type_name + " after " + std::to_string(iterations) + " iterations");
    absl::StatusOr<CovarianceType> type = ParseCovarianceType(type_name);
    ASSERT_THAT(type, IsOk());
    GmmSpec spec;
    spec.k = 3;
    spec.covariance_type = *type;
    spec.init_params = FromFixture(*type, f.at("init").struct_value().fields());
    FitOptions options;
    options.tol = 0;
    options.max_iter = iterations;
    absl::StatusOr<GmmFitResult> fit = Fit(data, spec, options);
    ASSERT_THAT(fit, IsOk());
    // The issue asks for 1e-6 in log-likelihood; measured agreement is ~1e-12 (docs/gmm.md).
    gaps.Check(*fit, FromFixture(*type, f), f.at("log_likelihood").number_value(), 1e-10);
  }
  gaps.Print("scikit-learn");
}

// R mclust 6.0 (me(), no prior) from the same starting point. mclust does not regularise, so
// reg_covar = 0; its iteration is an M-step then an E-step, so its parameters after one
// iteration are emfit's start and mclust's T iterations are emfit's T - 1.
TEST(GmmParity, IteratesMatchMclustFromTheSameStart) {
  const Struct fixtures = LoadFixtures("mclust_faithful.json");
  const Dataset data{testing::ReadCsv(testing::DataPath("faithful.csv")), {}};
  const ListValue& cases = fixtures.fields().at("cases").list_value();
  ASSERT_EQ(cases.values_size(), 12);
  Gaps gaps;
  for (const Value& c : cases.values()) {
    const auto& f = c.struct_value().fields();
    const std::string type_name = f.at("covariance_type").string_value();
    const int iterations = static_cast<int>(f.at("mclust_iterations").number_value());
    SCOPED_TRACE(f.at("mclust_model").string_value() + " after " + std::to_string(iterations));
    absl::StatusOr<CovarianceType> type = ParseCovarianceType(type_name);
    ASSERT_THAT(type, IsOk());
    const auto& init = f.at("init").struct_value().fields();
    const auto& want = f.at("result").struct_value().fields();
    GmmSpec spec;
    spec.k = 2;
    spec.covariance_type = *type;
    spec.reg_covar = 0;
    spec.init_params = FromFixture(*type, init);
    FitOptions options;
    options.tol = 0;
    options.max_iter = 0;
    absl::StatusOr<GmmFitResult> start = Fit(data, spec, options);
    ASSERT_THAT(start, IsOk());
    EXPECT_NEAR(start->summary.log_likelihood, init.at("log_likelihood").number_value(), 1e-8);
    options.max_iter = iterations - 1;
    absl::StatusOr<GmmFitResult> fit = Fit(data, spec, options);
    ASSERT_THAT(fit, IsOk());
    // With tol = 0, mclust still stops once the log-likelihood stops changing in floating point
    // (VVV reaches that before 50 iterations), where the parameters are ~1e-9 from the fixed
    // point that emfit's further iterations reach; hence 1e-8 here.
    gaps.Check(*fit, FromFixture(*type, want), want.at("log_likelihood").number_value(), 1e-8);
  }
  gaps.Print("mclust");
}

}  // namespace
}  // namespace emfit::gmm
