// Parity with pomegranate 0.14's HiddenMarkovModel (Baum-Welch) from the same starting
// parameters after 1, 5 and 50 iterations, for Gaussian (1-D, and 2-D full covariance on Old
// Faithful's consecutive eruptions) and categorical emissions over several sequences.
// Fixtures: tests/fixtures/pomegranate_hmm.json, written by tools/make_pomegranate_fixtures.py.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "emfit/hmm/hmm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/fixtures.h"
#include "testing/status_matchers.h"

namespace emfit::hmm {
namespace {

using ::emfit::testing::IsOk;
using ::emfit::testing::LoadFixtures;
using ::emfit::testing::ToMatrix;
using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;
using Fields = google::protobuf::Map<std::string, Value>;

// The sequences of a case as one data set with offsets.
Dataset SequencesOf(const Value& v) {
  const ListValue& seqs = v.list_value();
  std::vector<Eigen::MatrixXd> parts;
  Dataset data;
  data.sequence_offsets.push_back(0);
  for (const Value& s : seqs.values()) {
    parts.push_back(ToMatrix(s));
    data.sequence_offsets.push_back(data.sequence_offsets.back() + parts.back().rows());
  }
  data.x.resize(data.sequence_offsets.back(), parts[0].cols());
  for (size_t q = 0; q < parts.size(); ++q) {
    data.x.middleRows(data.sequence_offsets[q], parts[q].rows()) = parts[q];
  }
  return data;
}

HmmParams ParamsOf(const std::string& emission, const Fields& f) {
  HmmParams p;
  p.start = ToMatrix(f.at("start")).col(0);
  p.transitions = ToMatrix(f.at("transitions"));
  if (emission == "gaussian") {
    GaussianEmissions g;
    g.covariance_type = gmm::CovarianceType::kFull;
    g.means = ToMatrix(f.at("means"));
    const int k = static_cast<int>(g.means.rows()), d = static_cast<int>(g.means.cols());
    g.covariances.resize(static_cast<Eigen::Index>(k) * d, d);
    const ListValue& covs = f.at("covariances").list_value();
    for (int j = 0; j < k; ++j) g.covariances.middleRows(j * d, d) = ToMatrix(covs.values(j));
    p.emissions = g;
  } else {
    p.emissions = CategoricalEmissions{ToMatrix(f.at("probabilities"))};
  }
  return p;
}

double RelativeGap(const Eigen::MatrixXd& got, const Eigen::MatrixXd& want) {
  return (got - want).cwiseAbs().maxCoeff() / std::max(1.0, want.cwiseAbs().maxCoeff());
}

TEST(HmmParity, IteratesMatchPomegranateFromTheSameStart) {
  const Struct fixtures = LoadFixtures("pomegranate_hmm.json");
  const ListValue& cases = fixtures.fields().at("cases").list_value();
  ASSERT_EQ(cases.values_size(), 3);
  double ll_gap = 0, param_gap = 0;
  int compared = 0;
  for (const Value& c : cases.values()) {
    const Fields& f = c.struct_value().fields();
    const std::string name = f.at("name").string_value();
    const std::string emission = f.at("emission").string_value();
    SCOPED_TRACE(name);
    const Dataset data = SequencesOf(f.at("sequences"));
    HmmSpec spec;
    spec.init_params = ParamsOf(emission, f.at("init").struct_value().fields());
    spec.k = spec.init_params->k();
    spec.emission = spec.init_params->emission_type();
    spec.covariance_type = gmm::CovarianceType::kFull;
    spec.reg_covar = 0;  // pomegranate adds nothing to the covariances
    for (const Value& r : f.at("results").list_value().values()) {
      const Fields& want_fields = r.struct_value().fields();
      const int iterations = static_cast<int>(want_fields.at("iterations").number_value());
      SCOPED_TRACE(::testing::Message() << iterations << " iterations");
      FitOptions options;
      options.max_iter = iterations;
      options.tol = 0;
      absl::StatusOr<HmmFitResult> fit = Fit(data, spec, options);
      ASSERT_THAT(fit, IsOk());
      ASSERT_EQ(fit->summary.iterations, iterations);
      const HmmParams want = ParamsOf(emission, want_fields);
      const double want_ll = want_fields.at("log_likelihood").number_value();
      EXPECT_NEAR(fit->summary.log_likelihood, want_ll, 1e-11 * std::abs(want_ll));
      ll_gap =
          std::max(ll_gap, std::abs(fit->summary.log_likelihood - want_ll) / std::abs(want_ll));
      // pomegranate's covariance is the expanded form E[x x^T] - mu mu^T, ours the centred one:
      // they agree to rounding (7.5e-13 measured), far inside this tolerance.
      const double tol = 1e-10;
      const double gaps[] = {
          RelativeGap(fit->params.start, want.start),
          RelativeGap(fit->params.transitions, want.transitions),
          emission == "gaussian"
              ? std::max(RelativeGap(std::get<GaussianEmissions>(fit->params.emissions).means,
                                     std::get<GaussianEmissions>(want.emissions).means),
                         RelativeGap(std::get<GaussianEmissions>(fit->params.emissions).covariances,
                                     std::get<GaussianEmissions>(want.emissions).covariances))
              : RelativeGap(std::get<CategoricalEmissions>(fit->params.emissions).probabilities,
                            std::get<CategoricalEmissions>(want.emissions).probabilities)};
      for (double g : gaps) {
        EXPECT_LT(g, tol);
        param_gap = std::max(param_gap, g);
      }
      ++compared;
    }
  }
  EXPECT_EQ(compared, 9);
  std::printf(
      "largest difference from pomegranate 0.14: log-likelihood %.3g (relative), parameters "
      "%.3g\n",
      ll_gap, param_gap);
}

}  // namespace
}  // namespace emfit::hmm
