// The tiled E-step and statistics kernels against a row-by-row reference, for every covariance
// type, block sizes around the tile width (padding), row weights, and data far from the origin.
#include <Eigen/Cholesky>
#include <cmath>
#include <random>

#include "exec/stripes.h"
#include "gmm/components.h"
#include "gmm/kernels.h"
#include "gmm/stats.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace emfit::gmm::internal {
namespace {

using ::emfit::testing::IsOk;

constexpr int kK = 3;
constexpr int kD = 5;

GmmParams RandomParams(CovarianceType type, double offset, std::mt19937_64* rng) {
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(0.5, 2.0);
  GmmParams p;
  p.covariance_type = type;
  p.weights = Eigen::VectorXd::NullaryExpr(kK, [&] { return uniform(*rng); });
  p.weights /= p.weights.sum();
  p.means = Eigen::MatrixXd::NullaryExpr(kK, kD, [&] { return offset + 3 * normal(*rng); });
  auto spd = [&] {
    const Eigen::MatrixXd a = Eigen::MatrixXd::NullaryExpr(kD, kD, [&] { return normal(*rng); });
    return Eigen::MatrixXd(a * a.transpose() / kD + 0.3 * Eigen::MatrixXd::Identity(kD, kD));
  };
  switch (type) {
    case CovarianceType::kFull:
      p.covariances.resize(kK * kD, kD);
      for (int j = 0; j < kK; ++j) p.covariances.middleRows(j * kD, kD) = spd();
      break;
    case CovarianceType::kTied:
      p.covariances = spd();
      break;
    case CovarianceType::kDiag:
      p.covariances = Eigen::MatrixXd::NullaryExpr(kK, kD, [&] { return uniform(*rng); });
      break;
    case CovarianceType::kSpherical:
      p.covariances = Eigen::MatrixXd::NullaryExpr(kK, 1, [&] { return uniform(*rng); });
      break;
  }
  return p;
}

// ln pi_j + ln N(x | mu_j, Sigma_j) from the dense covariance, row by row.
Eigen::MatrixXd ReferenceLogJoint(const GmmParams& p, const RowMatrix& x) {
  Eigen::MatrixXd a(x.rows(), kK);
  for (int j = 0; j < kK; ++j) {
    const Eigen::MatrixXd cov = p.ComponentCovariance(j);
    const Eigen::LDLT<Eigen::MatrixXd> ldlt(cov);
    const double log_det = ldlt.vectorD().array().log().sum();
    for (Eigen::Index i = 0; i < x.rows(); ++i) {
      const Eigen::VectorXd diff = (x.row(i) - p.means.row(j)).transpose();
      a(i, j) = std::log(p.weights[j]) - 0.5 * kD * std::log(2 * M_PI) - 0.5 * log_det -
                0.5 * diff.dot(ldlt.solve(diff));
    }
  }
  return a;
}

class KernelsTest : public ::testing::TestWithParam<std::tuple<CovarianceType, int, bool>> {};

TEST_P(KernelsTest, MatchRowByRowReference) {
  const auto [type, n, weighted] = GetParam();
  std::mt19937_64 rng(17 + n);
  // Data and means sit 1e3 away from the origin, 100x their spread: the centred forms must
  // not lose more than rounding of the differences.
  const double offset = 1e3;
  const GmmParams p = RandomParams(type, offset, &rng);
  std::normal_distribution<double> normal;
  const RowMatrix x = RowMatrix::NullaryExpr(n, kD, [&] { return offset + 3 * normal(rng); });
  Eigen::VectorXd w;
  if (weighted) {
    std::uniform_real_distribution<double> uniform(0.1, 3.0);
    w = Eigen::VectorXd::NullaryExpr(n, [&] { return uniform(rng); });
  }
  absl::StatusOr<Components> c = Factorize(p, "test");
  ASSERT_THAT(c, IsOk());

  KernelScratch scratch;
  Eigen::MatrixXd log_joint, resp;
  Eigen::VectorXd row_ll;
  LogJoint(*c, x, &log_joint, &scratch);
  Responsibilities(*c, x, &resp, &row_ll, &scratch);
  const Eigen::MatrixXd ref = ReferenceLogJoint(p, x);
  ASSERT_EQ(log_joint.rows(), n);
  for (Eigen::Index i = 0; i < n; ++i) {
    for (int j = 0; j < kK; ++j) {
      EXPECT_NEAR(log_joint(i, j), ref(i, j), 1e-9 * (1 + std::abs(ref(i, j))));
    }
    const double top = ref.row(i).maxCoeff();
    const double lse = top + std::log((ref.row(i).array() - top).exp().sum());
    EXPECT_NEAR(row_ll[i], lse, 1e-9 * (1 + std::abs(lse)));
    for (int j = 0; j < kK; ++j) EXPECT_NEAR(resp(i, j), std::exp(ref(i, j) - lse), 1e-9);
    EXPECT_NEAR(resp.row(i).sum(), 1.0, 1e-14);
  }

  // Statistics about the means (as the E-step takes them), and for tied complete data the
  // pooled second moment about the origin.
  for (bool per_component : {false, true}) {
    if (per_component && type != CovarianceType::kTied) continue;
    SCOPED_TRACE(per_component ? "per-component scatter" : "default layout");
    GmmStats s;
    s.Reset(type, kK, kD, per_component);
    AccumulateBlock(x, w, resp, p.means, &s, &scratch);
    const Eigen::VectorXd wt = weighted ? w : Eigen::VectorXd::Ones(n);
    EXPECT_NEAR(s.total_weight, wt.sum(), 1e-12 * wt.sum());
    for (int j = 0; j < kK; ++j) {
      double nk = 0;
      Eigen::RowVectorXd delta = Eigen::RowVectorXd::Zero(kD);
      Eigen::MatrixXd scatter = Eigen::MatrixXd::Zero(kD, kD);
      for (Eigen::Index i = 0; i < n; ++i) {
        const double wr = wt[i] * resp(i, j);
        const Eigen::RowVectorXd y = x.row(i) - p.means.row(j);
        nk += wr;
        delta += wr * y;
        scatter += wr * y.transpose() * y;
      }
      const double scale = 1e-12 * (nk + 1) * 100;
      EXPECT_NEAR(s.nk[j], nk, 1e-12 * (nk + 1));
      for (int f = 0; f < kD; ++f) EXPECT_NEAR(s.delta(j, f), delta[f], scale);
      if (!s.sdd.empty()) {
        for (int a = 0; a < kD; ++a) {
          for (int b = 0; b <= a; ++b) EXPECT_NEAR(s.sdd[j](a, b), scatter(a, b), scale);
        }
      }
      if (s.sdd_diag.size() != 0) {
        for (int f = 0; f < kD; ++f) EXPECT_NEAR(s.sdd_diag(j, f), scatter(f, f), scale);
      }
    }
    if (s.sxx.size() != 0) {
      const Eigen::MatrixXd sxx = x.transpose() * wt.asDiagonal() * x;
      for (int a = 0; a < kD; ++a) {
        for (int b = 0; b <= a; ++b) {
          EXPECT_NEAR(s.sxx(a, b), sxx(a, b), 1e-12 * std::abs(sxx(a, b)));
        }
      }
    }
  }
}

TEST(ToFeatureMajor, TransposesAndPadsWithZeros) {
  // Widths and heights around the SIMD width (the squares go through registers, the rest
  // value by value) and the tile height.
  for (int d : {1, 2, 3, 4, 5, 7, 8, 9, 16, 17}) {
    for (int n : {0, 1, 3, kTileRows - 1, kTileRows, kTileRows + 5, 100}) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " d=" << d);
      const RowMatrix x = RowMatrix::NullaryExpr(n, d, [] {
        static double v = 0.5;
        return v += 1.0;
      });
      KernelScratch scratch;
      scratch.xt.setConstant(3, 3, -7.0);  // stale contents must not survive
      ToFeatureMajor(x, &scratch);
      ASSERT_EQ(scratch.rows, n);
      ASSERT_EQ(scratch.xt.cols(), d);
      ASSERT_EQ(scratch.xt.rows() % kTileRows, 0);
      ASSERT_GE(scratch.xt.rows(), n);
      EXPECT_TRUE(scratch.xt.topRows(n) == Eigen::MatrixXd(x));
      EXPECT_TRUE(scratch.xt.bottomRows(scratch.xt.rows() - n).isZero(0.0));
    }
  }
}

TEST(BlocksToFeatureMajor, EachBlockReadsInPlaceAsItsTransposedCopy) {
  // Two whole blocks and a tail that is not a whole number of tiles.
  constexpr Eigen::Index kBlock = ::emfit::internal::kBlockRows;
  for (int d : {1, 3, 8}) {
    SCOPED_TRACE(::testing::Message() << "d=" << d);
    const Eigen::Index n = 2 * kBlock + kTileRows + 3;
    std::mt19937_64 rng(5);
    std::normal_distribution<double> normal;
    const RowMatrix original = RowMatrix::NullaryExpr(n, d, [&] { return normal(rng); });
    RowMatrix rearranged = original;
    BlocksToFeatureMajor(&rearranged);
    KernelScratch copied, viewed;
    for (Eigen::Index b = 0; b < n; b += kBlock) {
      const Eigen::Index rows = std::min(kBlock, n - b);
      ToFeatureMajor(original.middleRows(b, rows), &copied);
      ViewFeatureMajor(rearranged.data() + b * d, rows, d, &viewed);
      ASSERT_EQ(viewed.rows, rows);
      ASSERT_EQ(viewed.ld, copied.ld);
      ASSERT_EQ(viewed.cols, d);
      for (int f = 0; f < d; ++f) {
        for (Eigen::Index i = 0; i < copied.ld; ++i) {
          ASSERT_EQ(viewed.x[f * viewed.ld + i], copied.x[f * copied.ld + i]) << i << "," << f;
        }
      }
      // Whole blocks are read where they are; the tail is copied and padded.
      EXPECT_EQ(viewed.x == rearranged.data() + b * d, rows % kTileRows == 0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllTypesAndSizes, KernelsTest,
    ::testing::Combine(::testing::Values(CovarianceType::kFull, CovarianceType::kTied,
                                         CovarianceType::kDiag, CovarianceType::kSpherical),
                       ::testing::Values(1, kTileRows - 1, kTileRows, kTileRows + 1, 200, 517),
                       ::testing::Bool()),
    [](const auto& info) {
      return std::string(CovarianceTypeName(std::get<0>(info.param))) + "_n" +
             std::to_string(std::get<1>(info.param)) + (std::get<2>(info.param) ? "_weighted" : "");
    });

}  // namespace
}  // namespace emfit::gmm::internal
