// Internals of the Gaussian-mixture family: SQUAREM coordinates and the M-step.
#include <cmath>

#include "emfit/gmm/gmm.h"
#include "gmm/family.h"
#include "gmm/init.h"
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

TEST(KMeansPlusPlus, SeedsAreRowsOfTheDataWhenSquaredDistancesOverflow) {
  // 1e170 squared is infinite: the potential of every candidate is, and the seeding once kept
  // none and read row -1 (found by the upload fuzz target, tests/fuzz/regressions/upload).
  RowMatrix x(4, 2);
  x << 0, 0, 1, 1, 1e170, 0, 2, 2;
  const Dataset data{x, {}};
  Rng rng(1);
  absl::StatusOr<Eigen::MatrixXd> seeds = KMeansPlusPlusSeeds(data, 3, &rng, FitControls{});
  ASSERT_THAT(seeds, IsOk());
  for (Eigen::Index c = 0; c < seeds->rows(); ++c) {
    bool is_a_row = false;
    for (Eigen::Index i = 0; i < x.rows(); ++i) {
      is_a_row |= seeds->row(c)(0) == x(i, 0) && seeds->row(c)(1) == x(i, 1);
    }
    EXPECT_TRUE(is_a_row) << "seed " << c << ": " << seeds->row(c);
  }
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
