// Internals of the Gaussian-mixture family: SQUAREM coordinates and the M-step.
#include <cmath>

#include "emfit/gmm/gmm.h"
#include "gmm/family.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/data.h"
#include "testing/status_matchers.h"

namespace emfit::gmm::internal {
namespace {

using ::emfit::testing::IsOk;

GmmParams Fitted(CovarianceType type) {
  GmmSpec spec;
  spec.k = 3;
  spec.covariance_type = type;
  absl::StatusOr<GmmFitResult> fit =
      Fit(Dataset{testing::ReadCsv(testing::DataPath("faithful.csv")), {}}, spec, FitOptions{});
  EXPECT_THAT(fit, IsOk());
  return fit->params;
}

TEST(GmmFamily, PackAndUnpackAreInverse) {
  const Dataset data{testing::ReadCsv(testing::DataPath("faithful.csv")), {}};
  for (CovarianceType type : {CovarianceType::kFull, CovarianceType::kDiag, CovarianceType::kTied,
                              CovarianceType::kSpherical}) {
    SCOPED_TRACE(CovarianceTypeName(type));
    GmmSpec spec;
    spec.k = 3;
    spec.covariance_type = type;
    const GmmFamily family(data, spec);
    const GmmParams p = Fitted(type);
    const Eigen::VectorXd x = family.Pack(p);
    EXPECT_EQ(x.size(), NumFreeParameters(type, 3, 2));
    absl::StatusOr<GmmParams> back = family.Unpack(x, p);
    ASSERT_THAT(back, IsOk());
    EXPECT_TRUE(back->weights.isApprox(p.weights, 1e-13));
    EXPECT_TRUE(back->means.isApprox(p.means, 1e-13));
    EXPECT_TRUE(back->covariances.isApprox(p.covariances, 1e-12));
    // Any finite point is a valid model.
    absl::StatusOr<GmmParams> far = family.Unpack(x * 3.0 - Eigen::VectorXd::Ones(x.size()), p);
    ASSERT_THAT(far, IsOk());
    EXPECT_THAT(far->Validate(), IsOk());
    Eigen::VectorXd bad = x;
    bad[0] = std::numeric_limits<double>::infinity();
    EXPECT_FALSE(family.Unpack(bad, p).ok());
  }
}

}  // namespace
}  // namespace emfit::gmm::internal
