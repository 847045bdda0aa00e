#include "emission/gaussian.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"
#include "emfit/base/status_macros.h"
#include "exec/stripes.h"

namespace emfit::internal {
namespace {

using gmm::CovarianceType;
namespace gi = ::emfit::gmm::internal;

constexpr double kNoMass = 1e-10;  // as in the other emissions

}  // namespace

absl::Status GaussianEmission::ValidateData(const Dataset& data) {
  if (data.cols() < 1) {
    return absl::InvalidArgumentError("data: Gaussian emissions need at least 1 column");
  }
  if (!data.HasMissing()) return absl::OkStatus();
  for (Eigen::Index c = 0; c < data.cols(); ++c) {
    if (data.x.col(c).array().isNaN().all()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "data: column %d has no observed value; its parameters are not identifiable", c + 1));
    }
  }
  return absl::OkStatus();
}

GaussianEmission::GaussianEmission(const Dataset& data, int k, CovarianceType type,
                                   double reg_covar)
    : data_(data),
      k_(k),
      d_(static_cast<int>(data.cols())),
      type_(type),
      reg_covar_(reg_covar),
      patterns_(data.HasMissing()
                    ? std::make_unique<const gi::PatternLayout>(data.x, /*group=*/false)
                    : nullptr) {}

gmm::GmmParams GaussianEmission::AsMixture(const Params& params) {
  gmm::GmmParams p;
  p.covariance_type = params.covariance_type;
  const int k = static_cast<int>(params.means.rows());
  p.weights = Eigen::VectorXd::Constant(k, 1.0 / k);
  p.means = params.means;
  p.covariances = params.covariances;
  return p;
}

absl::Status GaussianEmission::CheckShape(const Params& params, absl::string_view what) const {
  if (params.covariance_type != type_ || params.means.rows() != k_ || params.means.cols() != d_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: the emissions have k=%d, d=%d, covariance %s; expected k=%d, d=%d, covariance %s",
        what, params.means.rows(), params.means.cols(),
        gmm::CovarianceTypeName(params.covariance_type), k_, d_, gmm::CovarianceTypeName(type_)));
  }
  return AsMixture(params).Validate(what);
}

absl::StatusOr<std::unique_ptr<const GaussianEmission::Evaluator>> GaussianEmission::Prepare(
    const Params& params) const {
  auto e = std::make_unique<Evaluator>();
  e->params = AsMixture(params);
  // Weights of 1: the components' log-joint is their log-density (algorithms.md §3).
  e->params.weights.setOnes();
  EMFIT_ASSIGN_OR_RETURN(e->components, gi::Factorize(e->params, "model"));
  e->cache = std::make_unique<gi::PatternCache>(e->params, e->components);
  return std::unique_ptr<const Evaluator>(std::move(e));
}

void GaussianEmission::ResetStats(const Evaluator& e, Stats* stats) const {
  // A scatter per state for tied covariance too: the pooled second moment of the mixture needs
  // data centred by the fit, and with missing values the completed rows differ by state.
  stats->moments.Reset(type_, k_, d_, /*per_component_scatter=*/true);
  stats->shift = e.params.means;
}

bool GaussianEmission::Runs(int64_t begin, int64_t end, Scratch* scratch) const {
  scratch->runs.clear();
  scratch->empty.clear();
  if (patterns_ == nullptr) return true;
  constexpr int64_t kBlock = kBlockRows;
  bool complete = true;
  for (int64_t g = begin / kBlock * kBlock; g < end; g += kBlock) {
    for (const gi::PatternRun& run : patterns_->BlockRuns(g)) {
      const int64_t lo = std::max(begin, g + run.begin), hi = std::min(end, g + run.end);
      if (lo >= hi) continue;
      if (run.pattern != nullptr &&
          std::none_of(run.pattern->begin(), run.pattern->end(), [](uint8_t o) { return o; })) {
        // Nothing observed: density 1, no statistics (the step only advances the chain).
        scratch->empty.push_back({lo - begin, hi - begin});
        complete = false;
        continue;
      }
      gi::PatternRun clipped = run;
      clipped.begin = lo - begin;
      clipped.end = hi - begin;
      complete &= run.pattern == nullptr;
      scratch->runs.push_back(clipped);
    }
  }
  return complete;
}

void GaussianEmission::ToFeatureMajor(int64_t begin, int64_t end, Scratch* scratch) const {
  if (d_ == 1) {
    // One column: the rows are already feature-major, read in place.
    gi::ViewFeatureMajor(data_.x.data() + begin, end - begin, 1, &scratch->kernel);
  } else {
    gi::ToFeatureMajor(data_.x.middleRows(begin, end - begin), &scratch->kernel);
  }
}

absl::Status GaussianEmission::LogDensities(const Evaluator& e, int64_t begin, int64_t end,
                                            double* g, Scratch* scratch) const {
  const int64_t n = end - begin;
  const auto x = data_.x.middleRows(begin, n);
  Eigen::MatrixXd& a = scratch->a;
  if (Runs(begin, end, scratch)) {
    ToFeatureMajor(begin, end, scratch);
    gi::EStepTiled(e.components, &scratch->kernel, &a, nullptr);
  } else {
    if (!scratch->runs.empty()) {
      EMFIT_RETURN_IF_ERROR(gi::MissingLogJoint(e.params, e.components, x, nullptr, scratch->runs,
                                                e.cache.get(), &a, &scratch->missing));
    }
    a.conservativeResize(n, k_);
    for (const auto& [lo, hi] : scratch->empty) a.middleRows(lo, hi - lo).setZero();
  }
  // Column-major to row-major, one state's column at a time.
  for (int j = 0; j < k_; ++j) {
    const double* col = a.col(j).data();
    for (int64_t t = 0; t < n; ++t) g[t * k_ + j] = col[t];
  }
  return absl::OkStatus();
}

absl::Status GaussianEmission::Accumulate(const Evaluator& e, int64_t begin, int64_t end,
                                          const double* gamma, Stats* stats,
                                          Scratch* scratch) const {
  const int64_t n = end - begin;
  const auto x = data_.x.middleRows(begin, n);
  Eigen::MatrixXd& resp = scratch->a;
  resp.resize(n, k_);
  for (int j = 0; j < k_; ++j) {
    double* col = resp.col(j).data();
    for (int64_t t = 0; t < n; ++t) col[t] = gamma[t * k_ + j];
  }
  const bool weighted = data_.weights.size() != 0;
  if (Runs(begin, end, scratch)) {
    ToFeatureMajor(begin, end, scratch);
    gi::AccumulateTiled(resp, data_.weights.segment(weighted ? begin : 0, weighted ? n : 0),
                        stats->shift, &scratch->kernel, &stats->moments);
    return absl::OkStatus();
  }
  if (scratch->runs.empty()) return absl::OkStatus();
  return gi::MissingAccumulate(e.params, e.components, x, nullptr, scratch->runs,
                               weighted ? data_.weights.data() + begin : nullptr, resp,
                               stats->shift, e.cache.get(), &stats->moments, &scratch->missing);
}

absl::Status GaussianEmission::MStep(const Stats& stats, const Params& previous,
                                     Params* next) const {
  const gmm::GmmParams before = AsMixture(previous);
  gmm::GmmParams after;
  gi::MStep(type_, reg_covar_, gi::FixedParams{/*weights=*/true}, stats.moments, stats.shift,
            before, &after);
  next->covariance_type = type_;
  next->means = after.means;
  next->covariances = after.covariances;
  // A state without mass keeps its parameters (algorithms.md §3, edge cases); tied covariance
  // is pooled over the states that have some.
  const Eigen::VectorXd& mass = stats.moments.nk;
  const double total = mass.sum();
  for (int j = 0; j < k_; ++j) {
    if (mass[j] > kNoMass * total) continue;
    next->means.row(j) = previous.means.row(j);
    switch (type_) {
      case CovarianceType::kFull:
        next->covariances.middleRows(static_cast<Eigen::Index>(j) * d_, d_) =
            previous.covariances.middleRows(static_cast<Eigen::Index>(j) * d_, d_);
        break;
      case CovarianceType::kDiag:
      case CovarianceType::kSpherical:
        next->covariances.row(j) = previous.covariances.row(j);
        break;
      case CovarianceType::kTied:
        break;
    }
  }
  // A lost positive definiteness is reported by the M-step, naming the state.
  absl::StatusOr<gi::Components> c = gi::Factorize(AsMixture(*next), "M-step");
  return c.ok() ? absl::OkStatus() : c.status();
}

double GaussianEmission::ExpectedLogDensity(const Stats& stats, const Params& params) const {
  gmm::GmmParams p = AsMixture(params);
  p.weights.setOnes();
  absl::StatusOr<gi::Components> c = gi::Factorize(p, "model");
  if (!c.ok()) return -std::numeric_limits<double>::infinity();
  return gi::ExpectedLogJoint(stats.moments, stats.shift, *c);
}

int64_t GaussianEmission::PackSize() const {
  return static_cast<int64_t>(k_) * d_ + gi::CovariancePackSize(type_, k_, d_);
}

void GaussianEmission::Pack(const Params& params, double* out) const {
  for (int j = 0; j < k_; ++j) {
    for (int c = 0; c < d_; ++c) *out++ = params.means(j, c);
  }
  gi::PackCovariances(type_, params.covariances, d_, out);
}

absl::StatusOr<GaussianEmission::Params> GaussianEmission::Unpack(const double* in,
                                                                  const Params&) const {
  Params p;
  p.covariance_type = type_;
  p.means.resize(k_, d_);
  for (int j = 0; j < k_; ++j) {
    for (int c = 0; c < d_; ++c) p.means(j, c) = *in++;
  }
  p.covariances = gi::UnpackCovariances(type_, in, k_, d_);
  if (!p.means.allFinite() || !p.covariances.allFinite()) {
    return absl::InvalidArgumentError("extrapolated point is not finite");
  }
  absl::StatusOr<gi::Components> c = gi::Factorize(AsMixture(p), "extrapolation");
  if (!c.ok()) return c.status();
  return p;
}

int64_t GaussianEmission::NumFreeParameters() const {
  // The mixture's count without its k - 1 weights.
  return gmm::NumFreeParameters(type_, k_, d_) - (k_ - 1);
}

}  // namespace emfit::internal
