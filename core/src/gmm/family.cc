#include "gmm/family.h"

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "emfit/base/status_macros.h"
#include "emfit/exec/cancellation.h"
#include "emfit/exec/thread_pool.h"
#include "exec/stripes.h"
#include "gmm/components.h"
#include "gmm/missing.h"

namespace emfit::gmm::internal {

using ::emfit::internal::ForEachBlock;
using ::emfit::internal::Stripes;

Stripes GmmFamily::BlockStripes() const {
  const int64_t k = spec_.k, d = data_.cols();
  const bool scatter = spec_.covariance_type == CovarianceType::kFull ||
                       (missing_ && spec_.covariance_type == CovarianceType::kTied);
  return Stripes::OverRows(data_.rows(), k * (d + 1) + (scatter ? k * d * d : d * d));
}

GmmFamily::Stats GmmFamily::NewStats() const {
  Stats s;
  s.stripes.resize(BlockStripes().count());
  return s;
}

int64_t GmmFamily::NumFreeParameters() const {
  const int64_t k = spec_.k, d = data_.cols();
  const int64_t weights = k - 1, means = k * d;
  const int64_t covariances =
      gmm::NumFreeParameters(spec_.covariance_type, spec_.k, static_cast<int>(d)) - weights - means;
  // Parameters held fixed are not estimated, so they do not count (BIC, AIC).
  return (spec_.fix_weights ? 0 : weights) + (spec_.fix_means ? 0 : means) +
         (spec_.fix_covariances ? 0 : covariances);
}

namespace {

// Runs `block_fn(begin, rows, partial, scratch)` over every block of rows, each stripe into its
// own partial, then reduces the partials in stripe order into `total` (exec/stripes.h).
template <class BlockFn>
absl::Status AccumulateStripes(const Stripes& stripes, CovarianceType type, int k, int d,
                               bool per_component, const FitControls& controls,
                               std::vector<GmmStats>* partials,
                               std::vector<BlockScratch>* scratches, GmmStats* total,
                               BlockFn&& block_fn) {
  partials->resize(stripes.count());
  scratches->resize(stripes.count());
  for (GmmStats& part : *partials) part.Reset(type, k, d, per_component);
  EMFIT_RETURN_IF_ERROR(ForEachBlock(stripes, controls, [&](int s, int64_t begin, int64_t end) {
    return block_fn(begin, end - begin, &(*partials)[s], &(*scratches)[s]);
  }));
  total->Reset(type, k, d, per_component);
  for (const GmmStats& part : *partials) total->Add(part);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<double> GmmFamily::EStep(const Params& params, const FitControls& controls,
                                        Stats* stats) const {
  absl::StatusOr<Components> comps = Factorize(params, "model");
  if (!comps.ok()) return comps.status();
  const Components& c = *comps;
  stats->shift = params.means;
  const bool weighted = data_.weights.size() != 0;
  const bool per_component = missing_ && spec_.covariance_type == CovarianceType::kTied;
  PatternCache cache(params, c);  // shared by the stripes: each pattern is factored once
  auto e_step = [&](int64_t begin, int64_t rows, GmmStats* part, BlockScratch* scratch) {
    const auto block = data_.x.middleRows(begin, rows);
    const Eigen::Ref<const Eigen::VectorXd> w =
        data_.weights.segment(weighted ? begin : 0, weighted ? rows : 0);
    Eigen::VectorXd& row_ll = scratch->row_ll;
    const absl::Span<const PatternRun> runs =
        missing_ ? patterns_->BlockRuns(begin) : absl::Span<const PatternRun>();
    if (runs.size() > 1 || (runs.size() == 1 && runs[0].pattern != nullptr)) {
      EMFIT_RETURN_IF_ERROR(MissingRuns(params, c, block, nullptr, runs,
                                        weighted ? w.data() : nullptr, stats->shift, &cache,
                                        nullptr, &row_ll, part, &scratch->missing));
    } else {
      if (feature_major_blocks_) {
        ViewFeatureMajor(data_.x.data() + begin * data_.x.cols(), rows,
                         static_cast<int>(data_.x.cols()), &scratch->kernel);
      } else {
        ToFeatureMajor(block, &scratch->kernel);
      }
      EStepTiled(c, &scratch->kernel, &scratch->resp, &row_ll);
      AccumulateTiled(scratch->resp, w, stats->shift, &scratch->kernel, part);
    }
    part->log_likelihood += weighted ? w.dot(row_ll) : row_ll.sum();
    return absl::OkStatus();
  };
  EMFIT_RETURN_IF_ERROR(AccumulateStripes(BlockStripes(), spec_.covariance_type, c.k,
                                          static_cast<int>(data_.cols()), per_component, controls,
                                          &stats->stripes, &stats->scratch, &stats->total, e_step));
  return stats->total.log_likelihood;
}

absl::Status GmmFamily::MStep(const Stats& stats, Params* params) const {
  const GmmParams previous = *params;
  internal::MStep(spec_.covariance_type, spec_.reg_covar,
                  {spec_.fix_weights, spec_.fix_means, spec_.fix_covariances}, stats.total,
                  stats.shift, previous, params);
  // Factorising here reports a lost positive definiteness as a failed M-step, naming the
  // component, instead of letting the next E-step fail.
  absl::StatusOr<Components> c = Factorize(*params, "M-step");
  return c.ok() ? absl::OkStatus() : c.status();
}

double GmmFamily::ExpectedLogJoint(const Stats& stats, const Params& params) const {
  absl::StatusOr<Components> c = Factorize(params, "model");
  if (!c.ok()) return -std::numeric_limits<double>::infinity();
  return internal::ExpectedLogJoint(stats.total, stats.shift, *c);
}

absl::StatusOr<GmmParams> GmmFamily::ParamsFromResponsibilities(const Eigen::MatrixXd& shift,
                                                                const FitControls& controls,
                                                                RespFn resp_fn) const {
  if (feature_major_blocks_) {
    return absl::InternalError("initialisation after the data were rearranged for EM");
  }
  Stats stats = NewStats();
  stats.shift = shift;
  const int k = static_cast<int>(shift.rows());
  const bool weighted = data_.weights.size() != 0;
  EMFIT_RETURN_IF_ERROR(AccumulateStripes(
      BlockStripes(), spec_.covariance_type, k, static_cast<int>(data_.cols()),
      /*per_component=*/false, controls, &stats.stripes, &stats.scratch, &stats.total,
      [&](int64_t begin, int64_t rows, GmmStats* part, BlockScratch* scratch) {
        Eigen::MatrixXd& resp = scratch->resp;
        resp.resize(rows, k);
        resp_fn(begin, rows, &resp);
        const auto block = data_.x.middleRows(begin, rows);
        AccumulateBlock(
            block,
            weighted ? Eigen::VectorXd(data_.weights.segment(begin, rows)) : Eigen::VectorXd(),
            resp, stats.shift, part, &scratch->kernel);
        return absl::OkStatus();
      }));
  // Nothing is fixed at initialisation: the starting point comes from the responsibilities.
  GmmParams params;
  internal::MStep(spec_.covariance_type, spec_.reg_covar, FixedParams{}, stats.total, stats.shift,
                  params, &params);
  absl::StatusOr<Components> c = Factorize(params, "initialisation");
  if (!c.ok()) return c.status();
  return params;
}

std::vector<FitWarning> GmmFamily::Inspect(const Stats& stats, const Params& params) const {
  std::vector<FitWarning> out;
  const double total = stats.total.nk.sum();
  for (int j = 0; j < params.k(); ++j) {
    if (stats.total.nk[j] <= 1e-10 * total) {
      FitWarning w;
      w.code = "empty_component";
      w.component = j;
      w.message = absl::StrFormat(
          "component %d lost its mass (weight %.3g); it is kept with its previous mean and a "
          "covariance of reg_covar; consider a smaller k",
          j, params.weights[j]);
      out.push_back(std::move(w));
    }
  }
  if (spec_.reg_covar > 0 && !spec_.fix_covariances) {
    for (int j = 0; j < params.k(); ++j) {
      // The smallest variance direction of the update before reg_covar was added.
      const Eigen::MatrixXd cov = params.ComponentCovariance(j);
      const double min_eig =
          params.covariance_type == CovarianceType::kFull ||
                  params.covariance_type == CovarianceType::kTied
              ? Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(cov, Eigen::EigenvaluesOnly)
                    .eigenvalues()
                    .minCoeff()
              : cov.diagonal().minCoeff();
      if (min_eig - spec_.reg_covar <= 1e-3 * spec_.reg_covar) {
        FitWarning w;
        w.code = "collapsed_covariance";
        w.component = params.covariance_type == CovarianceType::kTied ? -1 : j;
        w.message = absl::StrFormat(
            "the covariance of component %d collapsed (smallest variance %.3g is reg_covar); "
            "the fit is held finite by reg_covar=%g and the likelihood depends on it",
            j, min_eig, spec_.reg_covar);
        out.push_back(std::move(w));
      }
      if (params.covariance_type == CovarianceType::kTied) break;
    }
  }
  return out;
}

Eigen::VectorXd GmmFamily::Pack(const Params& p) const {
  const int k = p.k(), d = p.dim();
  Eigen::VectorXd x((k - 1) + static_cast<int64_t>(k) * d +
                    CovariancePackSize(p.covariance_type, k, d));
  double* out = x.data();
  for (int j = 0; j + 1 < k; ++j) *out++ = std::log(p.weights[j] / p.weights[k - 1]);
  for (int j = 0; j < k; ++j) {
    for (int c = 0; c < d; ++c) *out++ = p.means(j, c);
  }
  PackCovariances(p.covariance_type, p.covariances, d, out);
  return x;
}

absl::StatusOr<GmmParams> GmmFamily::Unpack(const Eigen::VectorXd& x, const Params& like) const {
  if (!x.allFinite()) return absl::InvalidArgumentError("extrapolated point is not finite");
  const int k = like.k(), d = like.dim();
  GmmParams p;
  p.covariance_type = like.covariance_type;
  const double* in = x.data();
  Eigen::VectorXd logits(k);
  for (int j = 0; j + 1 < k; ++j) logits[j] = *in++;
  logits[k - 1] = 0.0;
  p.weights = (logits.array() - logits.maxCoeff()).exp();
  p.weights /= p.weights.sum();
  p.means.resize(k, d);
  for (int j = 0; j < k; ++j) {
    for (int c = 0; c < d; ++c) p.means(j, c) = *in++;
  }
  p.covariances = UnpackCovariances(like.covariance_type, in, k, d);
  // Fixed blocks stay exactly as they were (extrapolation only moves them by rounding).
  if (spec_.fix_weights) p.weights = like.weights;
  if (spec_.fix_means) p.means = like.means;
  if (spec_.fix_covariances) p.covariances = like.covariances;
  if (!p.weights.allFinite() || !p.covariances.allFinite()) {
    return absl::InvalidArgumentError("extrapolated point is not finite");
  }
  absl::StatusOr<Components> c = Factorize(p, "extrapolation");
  if (!c.ok()) return c.status();
  return p;
}

}  // namespace emfit::gmm::internal
