#include "emission/poisson.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace emfit::internal {
namespace {

constexpr double kNoMass = 1e-10;       // as in the other emissions
constexpr double kMaxCount = 0x1.0p53;  // every integer below is a double

}  // namespace

void PoissonEmission::Stats::Add(const Stats& other) {
  sums += other.sums;
  mass += other.mass;
  state_mass += other.state_mass;
  log_factorials += other.log_factorials;
}

absl::Status PoissonEmission::ValidateData(const Dataset& data) {
  for (Eigen::Index i = 0; i < data.rows(); ++i) {
    for (Eigen::Index c = 0; c < data.cols(); ++c) {
      const double v = data.x(i, c);
      if (std::isnan(v)) continue;
      if (!(v >= 0 && v <= kMaxCount && v == std::floor(v))) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "data: row %d, column %d holds %g; Poisson counts must be integers in [0, 2^53]", i + 1,
            c + 1, v));
      }
    }
  }
  return absl::OkStatus();
}

PoissonEmission::PoissonEmission(const Dataset& data, int k)
    : data_(data),
      k_(k),
      d_(static_cast<int>(data.cols())),
      missing_(data.HasMissing()),
      log_factorials_(data.rows()) {
  for (Eigen::Index i = 0; i < data.rows(); ++i) {
    double s = 0;
    for (int c = 0; c < d_; ++c) {
      const double v = data.x(i, c);
      if (!std::isnan(v) && v > 1) s += std::lgamma(v + 1.0);
    }
    log_factorials_[i] = s;
  }
}

absl::Status PoissonEmission::CheckShape(const Params& params, absl::string_view what) const {
  if (params.rates.rows() != k_ || params.rates.cols() != d_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s.rates: expected k x d = %d x %d, got %d x %d", what, k_, d_,
                        params.rates.rows(), params.rates.cols()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<const PoissonEmission::Evaluator>> PoissonEmission::Prepare(
    const Params& params) const {
  auto e = std::make_unique<Evaluator>();
  e->rates = params.rates.transpose();
  e->log_rates = e->rates.unaryExpr([](double r) { return std::log(r); });
  return std::unique_ptr<const Evaluator>(std::move(e));
}

void PoissonEmission::ResetStats(const Evaluator&, Stats* stats) const {
  stats->sums.setZero(d_, k_);
  stats->mass.setZero(d_, k_);
  stats->state_mass.setZero(k_);
  stats->log_factorials = 0;
}

absl::Status PoissonEmission::LogDensities(const Evaluator& e, int64_t begin, int64_t end,
                                           double* g, Scratch*) const {
  // ln f_j(x) = sum_c (x_c ln lambda_jc - lambda_jc - ln x_c!) over the observed columns.
  const int k = k_;
  for (int64_t t = begin; t < end; ++t, g += k) {
    const double* x = data_.x.data() + t * d_;
    const double base = -log_factorials_[t];
    for (int j = 0; j < k; ++j) g[j] = base;
    for (int c = 0; c < d_; ++c) {
      const double v = x[c];
      if (missing_ && std::isnan(v)) continue;
      const double* lr = e.log_rates.data() + static_cast<int64_t>(c) * k;
      const double* r = e.rates.data() + static_cast<int64_t>(c) * k;
      // 0 ln lambda = 0, even for a rate that underflowed.
      if (v == 0) {
        for (int j = 0; j < k; ++j) g[j] -= r[j];
      } else {
        for (int j = 0; j < k; ++j) g[j] += v * lr[j] - r[j];
      }
    }
  }
  return absl::OkStatus();
}

absl::Status PoissonEmission::Accumulate(const Evaluator&, int64_t begin, int64_t end,
                                         const double* gamma, Stats* stats, Scratch*) const {
  const int k = k_;
  const bool weighted = data_.weights.size() != 0;
  for (int64_t t = begin; t < end; ++t, gamma += k) {
    const double* x = data_.x.data() + t * d_;
    const double w = weighted ? data_.weights[t] : 1.0;
    bool any = false;
    for (int c = 0; c < d_; ++c) {
      const double v = x[c];
      if (missing_ && std::isnan(v)) continue;
      any = true;
      double* s = stats->sums.data() + static_cast<int64_t>(c) * k;
      double* m = stats->mass.data() + static_cast<int64_t>(c) * k;
      for (int j = 0; j < k; ++j) {
        const double wg = w * gamma[j];
        s[j] += wg * v;
        m[j] += wg;
      }
    }
    if (!any) continue;
    for (int j = 0; j < k; ++j) stats->state_mass[j] += w * gamma[j];
    stats->log_factorials += w * log_factorials_[t];
  }
  return absl::OkStatus();
}

absl::Status PoissonEmission::MStep(const Stats& stats, const Params& previous,
                                    Params* next) const {
  next->rates.resize(k_, d_);
  for (int c = 0; c < d_; ++c) {
    const double total = stats.mass.row(c).sum();
    for (int j = 0; j < k_; ++j) {
      const double n = stats.mass(c, j);
      next->rates(j, c) =
          n > kNoMass * total ? std::max(stats.sums(c, j) / n, kMinRate) : previous.rates(j, c);
    }
  }
  return absl::OkStatus();
}

double PoissonEmission::ExpectedLogDensity(const Stats& stats, const Params& params) const {
  double q = -stats.log_factorials;
  for (int c = 0; c < d_; ++c) {
    for (int j = 0; j < k_; ++j) {
      const double lambda = params.rates(j, c);
      if (stats.sums(c, j) > 0) q += stats.sums(c, j) * std::log(lambda);
      q -= stats.mass(c, j) * lambda;
    }
  }
  return q;
}

void PoissonEmission::Pack(const Params& params, double* out) const {
  for (int j = 0; j < k_; ++j) {
    for (int c = 0; c < d_; ++c) *out++ = std::log(params.rates(j, c));
  }
}

absl::StatusOr<PoissonEmission::Params> PoissonEmission::Unpack(const double* in,
                                                                const Params&) const {
  Params p;
  p.rates.resize(k_, d_);
  for (int j = 0; j < k_; ++j) {
    for (int c = 0; c < d_; ++c) p.rates(j, c) = std::exp(*in++);
  }
  if (!p.rates.allFinite() || !(p.rates.array() > 0).all()) {
    return absl::InvalidArgumentError("extrapolated rates are not finite and positive");
  }
  return p;
}

}  // namespace emfit::internal
