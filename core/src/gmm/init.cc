#include "gmm/init.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "absl/strings/str_format.h"
#include "emfit/base/status_macros.h"
#include "emfit/exec/thread_pool.h"
#include "exec/stripes.h"

namespace emfit::gmm::internal {

using ::emfit::internal::DeriveSeed;
using ::emfit::internal::StreamPurpose;
namespace {

double RowWeight(const Dataset& data, Eigen::Index i) {
  return data.weights.size() == 0 ? 1.0 : data.weights[i];
}

// Index i with cumulative[i-1] <= u < cumulative[i]; skips zero-mass rows.
Eigen::Index SampleIndex(const std::vector<double>& cumulative, double u) {
  const auto it = std::upper_bound(cumulative.begin(), cumulative.end(), u);
  Eigen::Index i = std::min<Eigen::Index>(it - cumulative.begin(),
                                          static_cast<Eigen::Index>(cumulative.size()) - 1);
  return i;
}

// Squared distances of a block of rows to each centre (rows x k), in difference form.
void SquaredDistances(const Eigen::Ref<const RowMatrix>& block, const Eigen::MatrixXd& centers,
                      Eigen::MatrixXd* out) {
  out->resize(block.rows(), centers.rows());
  for (Eigen::Index j = 0; j < centers.rows(); ++j) {
    out->col(j) = (block.rowwise() - centers.row(j)).rowwise().squaredNorm();
  }
}

void OneHotNearest(const Eigen::Ref<const RowMatrix>& block, const Eigen::MatrixXd& centers,
                   Eigen::MatrixXd* resp) {
  Eigen::MatrixXd d2;
  SquaredDistances(block, centers, &d2);
  resp->setZero(block.rows(), centers.rows());
  for (Eigen::Index i = 0; i < block.rows(); ++i) {
    Eigen::Index best;
    d2.row(i).minCoeff(&best);  // lowest index on ties
    (*resp)(i, best) = 1.0;
  }
}

}  // namespace

absl::StatusOr<Eigen::MatrixXd> KMeansPlusPlusSeeds(const Dataset& data, int k, Rng* rng,
                                                    const FitControls& controls) {
  const Eigen::Index n = data.rows();
  const Eigen::Index d = data.cols();
  Eigen::MatrixXd centers(k, d);
  std::vector<double> cumulative(n);
  // The first centre: a row drawn with probability proportional to its weight.
  double acc = 0;
  for (Eigen::Index i = 0; i < n; ++i) cumulative[i] = acc += RowWeight(data, i);
  centers.row(0) = data.x.row(SampleIndex(cumulative, rng->Uniform() * acc));
  Eigen::VectorXd closest = (data.x.rowwise() - centers.row(0)).rowwise().squaredNorm();
  const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k)));
  Eigen::VectorXd candidate_d2(n), best_d2(n);
  for (int c = 1; c < k; ++c) {
    EMFIT_RETURN_IF_ERROR(CheckCancelled(controls));
    acc = 0;
    for (Eigen::Index i = 0; i < n; ++i) cumulative[i] = acc += RowWeight(data, i) * closest[i];
    if (!(acc > 0)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "data: fewer distinct rows than spec.gmm.k (%d); k-means++ found only %d distinct "
          "centres",
          k, c));
    }
    double best_potential = std::numeric_limits<double>::infinity();
    Eigen::Index best_row = -1;
    for (int t = 0; t < trials; ++t) {
      const Eigen::Index row = SampleIndex(cumulative, rng->Uniform() * acc);
      candidate_d2 = (data.x.rowwise() - data.x.row(row)).rowwise().squaredNorm().cwiseMin(closest);
      const double potential =
          data.weights.size() == 0 ? candidate_d2.sum() : candidate_d2.dot(data.weights);
      // The first candidate is kept whatever its potential: with values whose squared
      // distances overflow, every potential is infinite and none would be (a fuzz-found read
      // of row -1).
      if (best_row < 0 || potential < best_potential) {
        best_potential = potential;
        best_row = row;
        best_d2.swap(candidate_d2);
      }
    }
    centers.row(c) = data.x.row(best_row);
    closest.swap(best_d2);
  }
  return centers;
}

absl::StatusOr<KMeansResult> Lloyd(const Dataset& data, Eigen::MatrixXd centers, int max_iter,
                                   const FitControls& controls) {
  const ::emfit::internal::Stripes stripes = ::emfit::internal::Stripes::OverRows(data.rows());
  const Eigen::Index k = centers.rows();
  const Eigen::Index d = centers.cols();
  // Tolerance as scikit-learn: relative to the mean column variance.
  const Eigen::RowVectorXd mean = data.x.colwise().mean();
  const double mean_var =
      (data.x.rowwise() - mean).array().square().colwise().sum().mean() / data.rows();
  const double tol = 1e-4 * mean_var;
  struct Partial {
    Eigen::MatrixXd sums;
    Eigen::VectorXd mass;
    double inertia = 0;
    Eigen::MatrixXd d2;
  };
  std::vector<Partial> partials(stripes.count());
  KMeansResult out{std::move(centers), 0.0};
  for (int it = 0; it < max_iter; ++it) {
    for (Partial& p : partials) {
      p.sums.setZero(k, d);
      p.mass.setZero(k);
      p.inertia = 0;
    }
    EMFIT_RETURN_IF_ERROR(
        ::emfit::internal::ForEachBlock(stripes, controls, [&](int s, int64_t b, int64_t end) {
          Partial& p = partials[s];
          const auto block = data.x.middleRows(b, end - b);
          SquaredDistances(block, out.centers, &p.d2);
          for (int64_t i = 0; i < end - b; ++i) {
            Eigen::Index best;
            const double nearest = p.d2.row(i).minCoeff(&best);
            const double w = RowWeight(data, b + i);
            p.sums.row(best) += w * block.row(i);
            p.mass[best] += w;
            p.inertia += w * nearest;
          }
          return absl::OkStatus();
        }));
    Eigen::MatrixXd total = Eigen::MatrixXd::Zero(k, d);
    Eigen::VectorXd total_mass = Eigen::VectorXd::Zero(k);
    out.inertia = 0;
    for (const Partial& p : partials) {
      total += p.sums;
      total_mass += p.mass;
      out.inertia += p.inertia;
    }
    Eigen::MatrixXd next = out.centers;
    for (Eigen::Index j = 0; j < k; ++j) {
      if (total_mass[j] > 0) next.row(j) = total.row(j) / total_mass[j];
    }
    const double shift = (next - out.centers).squaredNorm();
    out.centers.swap(next);
    if (shift <= tol) break;
  }
  return out;
}

absl::StatusOr<GmmParams> InitialParams(const GmmFamily& family, const Dataset& data,
                                        const GmmSpec& spec, uint64_t seed,
                                        const FitControls& controls) {
  Rng rng(DeriveSeed(seed, 0, StreamPurpose::kInit));
  const int k = spec.k;
  const Eigen::Index d = data.cols();
  switch (spec.init) {
    case InitMethod::kKMeans:
    case InitMethod::kKMeansPlusPlus: {
      EMFIT_ASSIGN_OR_RETURN(Eigen::MatrixXd centers, KMeansPlusPlusSeeds(data, k, &rng, controls));
      if (spec.init == InitMethod::kKMeans) {
        // The run of k-means with the lowest inertia of kKMeansRuns: one run lands in a poor
        // local optimum of k-means often enough to start EM in another basin (docs/gmm.md).
        std::optional<KMeansResult> best;
        for (int run = 0; run < kKMeansRuns; ++run) {
          if (run > 0) {
            EMFIT_ASSIGN_OR_RETURN(centers, KMeansPlusPlusSeeds(data, k, &rng, controls));
          }
          EMFIT_ASSIGN_OR_RETURN(KMeansResult km, Lloyd(data, centers, 300, controls));
          if (!best.has_value() || km.inertia < best->inertia) best = std::move(km);
        }
        centers = std::move(best->centers);
      }
      return family.ParamsFromResponsibilities(
          centers, controls, [&](int64_t begin, int64_t rows, Eigen::MatrixXd* resp) {
            OneHotNearest(data.x.middleRows(begin, rows), centers, resp);
          });
    }
    case InitMethod::kRandom: {
      return family.ParamsFromResponsibilities(
          Eigen::MatrixXd::Zero(k, d), controls,
          [&](int64_t begin, int64_t rows, Eigen::MatrixXd* resp) {
            // One stream per block, so the draws do not depend on which thread runs it.
            Rng block_rng(DeriveSeed(seed, static_cast<uint64_t>(begin), StreamPurpose::kBlock));
            for (int64_t i = 0; i < rows; ++i) {
              for (int j = 0; j < k; ++j) (*resp)(i, j) = block_rng.Uniform();
              resp->row(i) /= resp->row(i).sum();
            }
          });
    }
    case InitMethod::kRandomFromData: {
      // k distinct rows (by index) as means; every component gets the pooled covariance.
      std::vector<Eigen::Index> chosen;
      while (static_cast<int>(chosen.size()) < k) {
        const auto row = static_cast<Eigen::Index>(rng.Below(data.rows()));
        if (std::find(chosen.begin(), chosen.end(), row) == chosen.end()) chosen.push_back(row);
      }
      EMFIT_ASSIGN_OR_RETURN(
          GmmParams pooled,
          family.ParamsFromResponsibilities(
              Eigen::MatrixXd::Zero(1, d), controls,
              [](int64_t, int64_t rows, Eigen::MatrixXd* resp) { resp->setOnes(rows, 1); }));
      GmmParams p;
      p.covariance_type = spec.covariance_type;
      p.weights = Eigen::VectorXd::Constant(k, 1.0 / k);
      p.means.resize(k, d);
      for (int j = 0; j < k; ++j) p.means.row(j) = data.x.row(chosen[j]);
      p.covariances = spec.covariance_type == CovarianceType::kTied
                          ? pooled.covariances
                          : pooled.covariances.replicate(k, 1);
      return p;
    }
  }
  return absl::InternalError("unknown init method");
}

}  // namespace emfit::gmm::internal
