#include "emission/categorical.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "emission/emission.h"

namespace emfit::internal {
namespace {

// A mass at most this fraction of the total is "no mass": the state keeps its parameters.
constexpr double kNoMass = 1e-10;

}  // namespace

absl::Status CategoricalEmission::ValidateData(const Dataset& data, int num_symbols) {
  if (data.cols() != 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "data: categorical emissions read one column of symbols, got %d columns", data.cols()));
  }
  for (Eigen::Index i = 0; i < data.rows(); ++i) {
    const double v = data.x(i, 0);
    if (std::isnan(v)) continue;
    if (!(v >= 0 && v < num_symbols && v == std::floor(v))) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "data: row %d holds symbol %g; symbols must be integers in [0, %d) (num_symbols)", i + 1,
          v, num_symbols));
    }
  }
  return absl::OkStatus();
}

int CategoricalEmission::SymbolsIn(const Dataset& data) {
  double top = -1;
  for (Eigen::Index i = 0; i < data.rows(); ++i) {
    if (!std::isnan(data.x(i, 0))) top = std::max(top, data.x(i, 0));
  }
  return std::max(1, static_cast<int>(top) + 1);
}

CategoricalEmission::CategoricalEmission(const Dataset& data, int k, int num_symbols)
    : data_(data), k_(k), m_(num_symbols), symbols_(static_cast<size_t>(data.rows())) {
  std::vector<bool> seen(static_cast<size_t>(m_), false);
  for (Eigen::Index i = 0; i < data.rows(); ++i) {
    const double v = data.x(i, 0);
    symbols_[i] = std::isnan(v) ? -1 : static_cast<int32_t>(v);
    const double w = data.weights.size() == 0 ? 1.0 : data.weights[i];
    if (symbols_[i] >= 0 && w > 0) seen[symbols_[i]] = true;
  }
  for (int m = 0; m < m_; ++m) {
    if (seen[m]) seen_.push_back(m);
  }
}

absl::Status CategoricalEmission::CheckShape(const Params& params, absl::string_view what) const {
  if (params.probabilities.rows() != k_ || params.probabilities.cols() != m_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s.probabilities: expected k x M = %d x %d, got %d x %d", what, k_, m_,
                        params.probabilities.rows(), params.probabilities.cols()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<const CategoricalEmission::Evaluator>> CategoricalEmission::Prepare(
    const Params& params) const {
  auto e = std::make_unique<Evaluator>();
  // std::log, not Eigen's vectorised log, which flushes subnormal probabilities.
  e->log_probabilities =
      params.probabilities.transpose().unaryExpr([](double p) { return std::log(p); });
  e->scaled.resize(m_, k_);
  e->shift.resize(m_);
  for (int m = 0; m < m_; ++m) {
    const double top = params.probabilities.col(m).maxCoeff();
    // A symbol no state emits: zeros, which send the recursion to log space (and there to the
    // error that the sequence is impossible).
    e->shift[m] = std::log(top);
    for (int j = 0; j < k_; ++j) e->scaled(m, j) = top > 0 ? params.probabilities(j, m) / top : 0;
  }
  return std::unique_ptr<const Evaluator>(std::move(e));
}

absl::Status CategoricalEmission::LogDensities(const Evaluator& e, int64_t begin, int64_t end,
                                               double* g, Scratch*) const {
  const int k = k_;
  for (int64_t t = begin; t < end; ++t, g += k) {
    const int32_t s = symbols_[t];
    if (s < 0) {
      std::fill(g, g + k, 0.0);
    } else {
      const double* row = e.log_probabilities.data() + static_cast<int64_t>(s) * k;
      std::copy(row, row + k, g);
    }
  }
  return absl::OkStatus();
}

absl::Status CategoricalEmission::ScaledDensities(const Evaluator& e, int64_t begin, int64_t end,
                                                  double* b, double* shift, Scratch*) const {
  const int k = k_;
  for (int64_t t = begin; t < end; ++t, b += k, ++shift) {
    const int32_t s = symbols_[t];
    if (s < 0) {
      std::fill(b, b + k, 1.0);
      *shift = 0;
    } else {
      const double* row = e.scaled.data() + static_cast<int64_t>(s) * k;
      std::copy(row, row + k, b);
      *shift = e.shift[s];
    }
  }
  return absl::OkStatus();
}

absl::Status CategoricalEmission::Accumulate(const Evaluator&, int64_t begin, int64_t end,
                                             const double* gamma, Stats* stats, Scratch*) const {
  const int k = k_;
  double* counts = stats->counts.data();
  const bool weighted = data_.weights.size() != 0;
  for (int64_t t = begin; t < end; ++t, gamma += k) {
    const int32_t s = symbols_[t];
    if (s < 0) continue;
    const double w = weighted ? data_.weights[t] : 1.0;
    double* row = counts + static_cast<int64_t>(s) * k;
    for (int j = 0; j < k; ++j) row[j] += w * gamma[j];
  }
  return absl::OkStatus();
}

Eigen::VectorXd CategoricalEmission::StateMass(const Stats& stats) const {
  return stats.counts.colwise().sum().transpose();
}

absl::Status CategoricalEmission::MStep(const Stats& stats, const Params& previous,
                                        Params* next) const {
  const Eigen::VectorXd mass = StateMass(stats);
  const double total = mass.sum();
  next->probabilities.resize(k_, m_);
  for (int j = 0; j < k_; ++j) {
    if (!(mass[j] > kNoMass * total)) {
      next->probabilities.row(j) = previous.probabilities.row(j);
      continue;
    }
    next->probabilities.row(j) = stats.counts.col(j).transpose() / mass[j];
  }
  return absl::OkStatus();
}

double CategoricalEmission::ExpectedLogDensity(const Stats& stats, const Params& params) const {
  double q = 0;
  for (int m = 0; m < m_; ++m) {
    for (int j = 0; j < k_; ++j) {
      const double n = stats.counts(m, j);
      if (n > 0) q += n * std::log(params.probabilities(j, m));  // 0 ln 0 = 0
    }
  }
  return q;
}

Eigen::VectorXd CategoricalEmission::Frequencies() const {
  Eigen::VectorXd f = Eigen::VectorXd::Zero(m_);
  for (size_t t = 0; t < symbols_.size(); ++t) {
    if (symbols_[t] >= 0) f[symbols_[t]] += data_.weights.size() == 0 ? 1.0 : data_.weights[t];
  }
  const double total = f.sum();
  if (total > 0) f /= total;
  return f;
}

int64_t CategoricalEmission::PackSize() const {
  return static_cast<int64_t>(k_) * std::max<int64_t>(0, static_cast<int64_t>(seen_.size()) - 1);
}

void CategoricalEmission::Pack(const Params& params, double* out) const {
  // Per state, logits of the symbols seen in the data against the last of them.
  if (seen_.empty()) return;
  const int ref = seen_.back();
  for (int j = 0; j < k_; ++j) {
    const double base = std::log(std::max(params.probabilities(j, ref), kMinPackedProbability));
    for (size_t s = 0; s + 1 < seen_.size(); ++s) {
      *out++ = std::log(std::max(params.probabilities(j, seen_[s]), kMinPackedProbability)) - base;
    }
  }
}

absl::StatusOr<CategoricalEmission::Params> CategoricalEmission::Unpack(const double* in,
                                                                        const Params&) const {
  Params p;
  p.probabilities.setZero(k_, m_);
  if (seen_.empty()) return p;
  Eigen::VectorXd logits(seen_.size());
  for (int j = 0; j < k_; ++j) {
    for (size_t s = 0; s + 1 < seen_.size(); ++s) logits[s] = *in++;
    logits[logits.size() - 1] = 0.0;
    const double top = logits.maxCoeff();
    double sum = 0;
    for (Eigen::Index s = 0; s < logits.size(); ++s) sum += logits[s] = std::exp(logits[s] - top);
    for (size_t s = 0; s < seen_.size(); ++s) p.probabilities(j, seen_[s]) = logits[s] / sum;
  }
  if (!p.probabilities.allFinite()) {
    return absl::InvalidArgumentError("extrapolated point is not finite");
  }
  return p;
}

}  // namespace emfit::internal
