// The tiled E-step and statistics kernels against a row-by-row reference, for every covariance
// type, block sizes around the tile width (padding), row weights, and data far from the origin;
// with missing values too (marginal E-step, completed rows, conditional covariances).
#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>

#include "exec/stripes.h"
#include "gmm/components.h"
#include "gmm/kernels.h"
#include "gmm/missing.h"
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

// Row weights in [0.1, 3) when `weighted`, else none.
Eigen::VectorXd RandomWeights(bool weighted, Eigen::Index n, std::mt19937_64* rng) {
  if (!weighted) return Eigen::VectorXd();
  std::uniform_real_distribution<double> uniform(0.1, 3.0);
  return Eigen::VectorXd::NullaryExpr(n, [&] { return uniform(*rng); });
}

// Row i's missingness pattern as a string, '1' observed, column 0 first: the patterns' order.
std::string PatternString(const RowMatrix& x, Eigen::Index i) {
  std::string k(x.cols(), '0');
  for (Eigen::Index f = 0; f < x.cols(); ++f) k[f] = std::isnan(x(i, f)) ? '0' : '1';
  return k;
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
  const Eigen::VectorXd w = RandomWeights(weighted, n, &rng);
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

// Expected sufficient statistics with missing values, row by row from the dense covariance
// (docs/algorithms.md §2): responsibilities from the marginal density of the observed
// coordinates, completed rows x_hat_ij and the conditional covariance C_ij of the missing ones.
struct MissingReference {
  Eigen::MatrixXd log_joint;  // a_ij = ln pi_j + ln N(x_o | mu_j,o, Sigma_j,oo)
  Eigen::MatrixXd resp;
  Eigen::VectorXd row_ll;
  GmmStats stats;
};

MissingReference ReferenceMissing(const GmmParams& p, const RowMatrix& x,
                                  const Eigen::VectorXd& w) {
  const Eigen::Index n = x.rows();
  const bool per_component =
      p.covariance_type != CovarianceType::kDiag && p.covariance_type != CovarianceType::kSpherical;
  MissingReference ref;
  ref.stats.Reset(p.covariance_type, kK, kD, per_component);
  ref.resp.resize(n, kK);
  ref.log_joint.resize(n, kK);
  ref.row_ll.resize(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    std::vector<int> obs, mis;
    for (int f = 0; f < kD; ++f) (std::isnan(x(i, f)) ? mis : obs).push_back(f);
    const Eigen::VectorXd xo = x.row(i)(obs).transpose();
    Eigen::VectorXd a(kK);
    std::vector<Eigen::VectorXd> completed(kK);
    std::vector<Eigen::MatrixXd> cond(kK);
    for (int j = 0; j < kK; ++j) {
      const Eigen::MatrixXd cov = p.ComponentCovariance(j);
      const Eigen::VectorXd mu = p.means.row(j).transpose();
      a[j] = std::log(p.weights[j]);
      completed[j] = mu;
      completed[j](obs) = xo;
      cond[j] = Eigen::MatrixXd::Zero(kD, kD);
      if (obs.empty()) {
        cond[j] = cov;
        continue;
      }
      const Eigen::MatrixXd soo = cov(obs, obs);
      const Eigen::LDLT<Eigen::MatrixXd> ldlt(soo);
      const Eigen::VectorXd diff = xo - mu(obs);
      a[j] += -0.5 * static_cast<double>(obs.size()) * std::log(2 * M_PI) -
              0.5 * ldlt.vectorD().array().log().sum() - 0.5 * diff.dot(ldlt.solve(diff));
      if (mis.empty()) continue;
      const Eigen::MatrixXd smo = cov(mis, obs);
      completed[j](mis) = mu(mis) + smo * ldlt.solve(diff);
      cond[j](mis, mis) = cov(mis, mis) - smo * ldlt.solve(Eigen::MatrixXd(smo.transpose()));
    }
    ref.log_joint.row(i) = a.transpose();
    const double top = a.maxCoeff();
    ref.row_ll[i] = top + std::log((a.array() - top).exp().sum());
    const double wi = w.size() == 0 ? 1.0 : w[i];
    ref.stats.total_weight += wi;
    for (int j = 0; j < kK; ++j) {
      ref.resp(i, j) = std::exp(a[j] - ref.row_ll[i]);
      const double wr = wi * ref.resp(i, j);
      const Eigen::VectorXd y = completed[j] - p.means.row(j).transpose();
      ref.stats.nk[j] += wr;
      ref.stats.delta.row(j) += wr * y.transpose();
      const Eigen::MatrixXd scatter = y * y.transpose() + cond[j];
      if (per_component) {
        ref.stats.sdd[j] += wr * scatter;
      } else {
        ref.stats.sdd_diag.row(j) += wr * scatter.diagonal().transpose();
      }
    }
  }
  return ref;
}

void ExpectStatsNear(const GmmStats& got, const GmmStats& want) {
  EXPECT_NEAR(got.total_weight, want.total_weight, 1e-12 * want.total_weight);
  for (int j = 0; j < kK; ++j) {
    const double scale = 1e-10 * (want.nk[j] + 1) * 100;
    EXPECT_NEAR(got.nk[j], want.nk[j], 1e-11 * (want.nk[j] + 1)) << j;
    for (int f = 0; f < kD; ++f) EXPECT_NEAR(got.delta(j, f), want.delta(j, f), scale) << j;
    if (!want.sdd.empty()) {
      ASSERT_EQ(got.sdd.size(), want.sdd.size());
      for (int a = 0; a < kD; ++a) {
        for (int b = 0; b <= a; ++b) EXPECT_NEAR(got.sdd[j](a, b), want.sdd[j](a, b), scale);
      }
    } else {
      for (int f = 0; f < kD; ++f) EXPECT_NEAR(got.sdd_diag(j, f), want.sdd_diag(j, f), scale);
    }
  }
}

class MissingKernelsTest : public ::testing::TestWithParam<std::tuple<CovarianceType, int, bool>> {
};

TEST_P(MissingKernelsTest, MatchRowByRowReference) {
  const auto [type, n, weighted] = GetParam();
  std::mt19937_64 rng(29 + n);
  const double offset = 1e3;
  const GmmParams p = RandomParams(type, offset, &rng);
  std::normal_distribution<double> normal;
  std::bernoulli_distribution missing(0.3);
  // Rows with every pattern: 30% MCAR gives complete rows, rows missing one or several
  // coordinates and, now and then, rows with nothing observed.
  RowMatrix x = RowMatrix::NullaryExpr(n, kD, [&] { return offset + 3 * normal(rng); });
  for (Eigen::Index i = 0; i < n; ++i) {
    for (int f = 0; f < kD; ++f) {
      if (missing(rng)) x(i, f) = std::nan("");
    }
  }
  if (n > 2) x.row(1).setConstant(std::nan(""));
  const Eigen::VectorXd w = RandomWeights(weighted, n, &rng);
  absl::StatusOr<Components> c = Factorize(p, "test");
  ASSERT_THAT(c, IsOk());
  const MissingReference ref = ReferenceMissing(p, x, w);
  const bool per_component = !ref.stats.sdd.empty();

  // Rows in any order, grouped by pattern (Score, the posteriors), and rows sorted by pattern
  // taken as they come (a fit); every pattern factored on its observed coordinates, or every
  // one in the Schur form, or each as its number of rows says.
  for (const auto& [group, rare_rows] :
       std::vector<std::pair<bool, int64_t>>{{true, 0},
                                             {false, 0},
                                             {true, int64_t{1} << 40},
                                             {false, int64_t{1} << 40},
                                             {true, PatternLayout::kRareRows}}) {
    SCOPED_TRACE(::testing::Message()
                 << (group ? "rows grouped by the layout" : "rows sorted before") << ", rare below "
                 << rare_rows << " rows");
    std::vector<Eigen::Index> order(n);
    std::iota(order.begin(), order.end(), 0);
    RowMatrix rows_in = x;
    Eigen::VectorXd w_in = w;
    if (!group) {
      std::stable_sort(order.begin(), order.end(), [&](Eigen::Index a, Eigen::Index b) {
        return PatternString(x, a) < PatternString(x, b);
      });
      for (Eigen::Index i = 0; i < n; ++i) {
        rows_in.row(i) = x.row(order[i]);
        if (weighted) w_in[i] = w[order[i]];
      }
    }
    const PatternLayout layout(rows_in, group, rare_rows);
    ASSERT_EQ(layout.order() != nullptr, group);
    PatternCache cache(p, *c);
    MissingScratch scratch;
    GmmStats s;
    s.Reset(type, kK, kD, per_component);
    Eigen::MatrixXd resp;
    Eigen::VectorXd row_ll;
    for (Eigen::Index b = 0; b < n; b += ::emfit::internal::kBlockRows) {
      const Eigen::Index rows = std::min<Eigen::Index>(::emfit::internal::kBlockRows, n - b);
      const absl::Span<const PatternRun> runs = layout.BlockRuns(b);
      Eigen::Index covered = 0;
      for (const PatternRun& run : runs) {
        ASSERT_EQ(run.begin, covered);
        covered = run.end;
      }
      ASSERT_EQ(covered, rows);
      // The fit passes one block; Score the whole data with the block's part of the order.
      const Eigen::Index* block_order = group ? layout.order() + b : nullptr;
      const auto in = rows_in.middleRows(group ? 0 : b, group ? n : rows);
      ASSERT_THAT(MissingRuns(p, *c, in, block_order, runs,
                              weighted ? w_in.data() + (group ? 0 : b) : nullptr, p.means, &cache,
                              &resp, &row_ll, &s, &scratch),
                  IsOk());
      ASSERT_EQ(row_ll.size(), rows);
      for (Eigen::Index q = 0; q < rows; ++q) {
        const Eigen::Index orig = group ? layout.order()[b + q] : order[b + q];
        EXPECT_NEAR(row_ll[q], ref.row_ll[orig], 1e-9 * (1 + std::abs(ref.row_ll[orig])));
        for (int j = 0; j < kK; ++j) EXPECT_NEAR(resp(q, j), ref.resp(orig, j), 1e-9);
      }
    }
    ExpectStatsNear(s, ref.stats);

    // The halves a hidden Markov model uses: the log-joint alone, then the statistics with the
    // reference responsibilities given.
    GmmStats given;
    given.Reset(type, kK, kD, per_component);
    Eigen::MatrixXd log_joint, ref_resp;
    for (Eigen::Index b = 0; b < n; b += ::emfit::internal::kBlockRows) {
      const Eigen::Index rows = std::min<Eigen::Index>(::emfit::internal::kBlockRows, n - b);
      const absl::Span<const PatternRun> runs = layout.BlockRuns(b);
      const Eigen::Index* block_order = group ? layout.order() + b : nullptr;
      const auto in = rows_in.middleRows(group ? 0 : b, group ? n : rows);
      ASSERT_THAT(MissingLogJoint(p, *c, in, block_order, runs, &cache, &log_joint, &scratch),
                  IsOk());
      ASSERT_EQ(log_joint.rows(), rows);
      ref_resp.resize(rows, kK);
      for (Eigen::Index q = 0; q < rows; ++q) {
        const Eigen::Index orig = group ? layout.order()[b + q] : order[b + q];
        ref_resp.row(q) = ref.resp.row(orig);
        for (int j = 0; j < kK; ++j) {
          EXPECT_NEAR(log_joint(q, j), ref.log_joint(orig, j),
                      1e-9 * (1 + std::abs(ref.log_joint(orig, j))));
        }
      }
      ASSERT_THAT(MissingAccumulate(p, *c, in, block_order, runs,
                                    weighted ? w_in.data() + (group ? 0 : b) : nullptr, ref_resp,
                                    p.means, &cache, &given, &scratch),
                  IsOk());
    }
    ExpectStatsNear(given, ref.stats);
  }
}
INSTANTIATE_TEST_SUITE_P(
    AllTypesAndSizes, MissingKernelsTest,
    ::testing::Combine(::testing::Values(CovarianceType::kFull, CovarianceType::kTied,
                                         CovarianceType::kDiag, CovarianceType::kSpherical),
                       ::testing::Values(1, kTileRows + 1, 300, 1100), ::testing::Bool()),
    [](const auto& info) {
      return std::string(CovarianceTypeName(std::get<0>(info.param))) + "_n" +
             std::to_string(std::get<1>(info.param)) + (std::get<2>(info.param) ? "_weighted" : "");
    });

TEST(OrderByPattern, SortsByKeyAndKeepsRowOrderWithinAPattern) {
  for (int d : {3, 70}) {  // one word of key per row, and two
    SCOPED_TRACE(::testing::Message() << "d=" << d);
    std::mt19937_64 rng(3);
    std::bernoulli_distribution missing(0.4);
    RowMatrix x = RowMatrix::Constant(500, d, 1.0);
    for (Eigen::Index i = 0; i < x.rows(); ++i) {
      for (int f = 0; f < d; ++f) {
        if (missing(rng)) x(i, f) = std::nan("");
      }
    }
    const int words = (d + 63) / 64;
    std::vector<uint64_t> keys;
    PatternKeys(x, &keys);
    const std::vector<Eigen::Index> order = OrderByPattern(keys, words);
    ASSERT_EQ(order.size(), 500u);
    std::vector<Eigen::Index> want(500);
    std::iota(want.begin(), want.end(), 0);
    std::stable_sort(want.begin(), want.end(), [&](Eigen::Index a, Eigen::Index b) {
      return PatternString(x, a) < PatternString(x, b);
    });
    EXPECT_EQ(order, want);
  }
}

TEST(PatternCache, WithoutRoomFactorsEveryPatternForItsCaller) {
  std::mt19937_64 rng(8);
  const GmmParams p = RandomParams(CovarianceType::kFull, 0.0, &rng);
  absl::StatusOr<Components> c = Factorize(p, "test");
  ASSERT_THAT(c, IsOk());
  const Pattern pattern = {1, 0, 1, 1, 0};
  PatternCache kept(p, *c), not_kept(p, *c, /*max_bytes=*/0);
  for (PatternCache* cache : {&kept, &not_kept}) {
    absl::StatusOr<std::shared_ptr<const PatternFactors>> a = cache->Get(pattern, false);
    absl::StatusOr<std::shared_ptr<const PatternFactors>> b = cache->Get(pattern, false);
    ASSERT_THAT(a, IsOk());
    ASSERT_THAT(b, IsOk());
    EXPECT_EQ(*a == *b, cache == &kept);  // the same factors only when there was room
    EXPECT_EQ((*a)->obs, std::vector<int>({0, 2, 3}));
    EXPECT_EQ((*a)->mis, std::vector<int>({1, 4}));
    EXPECT_TRUE((*a)->regression[2].isApprox((*b)->regression[2], 0.0));
  }
}

TEST(FactorPatternSchur, AgreesWithTheFactorsOfTheObservedBlock) {
  for (CovarianceType type : {CovarianceType::kFull, CovarianceType::kTied, CovarianceType::kDiag,
                              CovarianceType::kSpherical}) {
    SCOPED_TRACE(CovarianceTypeName(type));
    std::mt19937_64 rng(12);
    const GmmParams p = RandomParams(type, 0.0, &rng);
    absl::StatusOr<Components> c = Factorize(p, "test");
    ASSERT_THAT(c, IsOk());
    std::vector<Eigen::MatrixXd> precisions;
    for (const Eigen::MatrixXd& u : c->prec_chol) precisions.push_back(u * u.transpose());
    for (const Pattern& pattern : {Pattern{1, 0, 1, 1, 0}, Pattern{0, 1, 1, 1, 1},
                                   Pattern{0, 0, 0, 0, 1}, Pattern{0, 0, 0, 0, 0}}) {
      absl::StatusOr<PatternFactors> sub = FactorPattern(p, pattern);
      absl::StatusOr<PatternFactors> schur = FactorPatternSchur(p, precisions, pattern);
      ASSERT_THAT(sub, IsOk());
      ASSERT_THAT(schur, IsOk());
      EXPECT_TRUE(schur->schur);
      EXPECT_EQ(schur->obs, sub->obs);
      EXPECT_EQ(schur->mis, sub->mis);
      ASSERT_EQ(schur->regression.size(), sub->regression.size());
      for (size_t j = 0; j < sub->regression.size(); ++j) {
        EXPECT_LT((schur->regression[j] - sub->regression[j]).norm(), 1e-12);
      }
      ASSERT_EQ(schur->cond_cov.size(), sub->cond_cov.size());
      for (size_t j = 0; j < sub->cond_cov.size(); ++j) {
        EXPECT_LT((schur->cond_cov[j] - sub->cond_cov[j]).norm(), 1e-12);
      }
      // The marginal's constant: ln pi + ln|Sigma_oo|^(-1/2) - |o|/2 ln 2 pi.
      const Eigen::VectorXd want = sub->obs.empty() ? sub->sub.log_weights : sub->sub.offset;
      EXPECT_LT((c->offset + schur->schur_offset - want).norm(), 1e-12);
    }
  }
}

TEST(GatherFeatureMajor, PicksRowsAndFeaturesAndPadsWithZeros) {
  const RowMatrix x = RowMatrix::NullaryExpr(40, 6, [] {
    static double v = 0.25;
    return v += 1.0;
  });
  const std::vector<Eigen::Index> rows = {7, 3, 39, 0, 12};
  for (const std::vector<int>& cols :
       {std::vector<int>{0, 1, 2, 3, 4, 5}, std::vector<int>{1, 4}, std::vector<int>{5}}) {
    for (bool listed : {false, true}) {
      KernelScratch scratch;
      scratch.xt.setConstant(64, 6, -7.0);  // stale contents must not survive
      GatherFeatureMajor(x, listed ? rows.data() : nullptr, 9, 5, cols, &scratch);
      ASSERT_EQ(scratch.rows, 5);
      ASSERT_EQ(scratch.cols, static_cast<int>(cols.size()));
      ASSERT_EQ(scratch.ld % kTileRows, 0);
      for (size_t f = 0; f < cols.size(); ++f) {
        for (Eigen::Index i = 0; i < scratch.ld; ++i) {
          const double want = i >= 5 ? 0.0 : x(listed ? rows[i] : 9 + i, cols[f]);
          EXPECT_EQ(scratch.x[f * scratch.ld + i], want) << i << "," << f;
        }
      }
    }
  }
}

}  // namespace
}  // namespace emfit::gmm::internal
