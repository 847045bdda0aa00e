#include "mk/family.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "emfit/base/status_macros.h"
#include "math/rng.h"

namespace emfit::mk::internal {

using ::emfit::internal::DeriveSeed;
using ::emfit::internal::Rng;
using ::emfit::internal::StreamPurpose;

MkModel::MkModel(const TreeData& data, RateLayout layout, std::vector<std::string> state_names,
                 RootPrior root, Eigen::VectorXd root_probs, double q_min, double q_max,
                 IntegralMethod method)
    : data_(data),
      layout_(std::move(layout)),
      state_names_(std::move(state_names)),
      root_(root),
      root_probs_(std::move(root_probs)),
      method_(method) {
  const double s = data_.mean_branch_length > 0 ? 1.0 / data_.mean_branch_length : 1.0;
  q_min_ = q_min > 0 ? q_min : 1e-10 * s;
  q_max_ = q_max > 0 ? q_max : 1e4 * s;
  if (root_ == RootPrior::kGiven) root_probs_ /= root_probs_.sum();
}

double MkModel::total_weight() const {
  return static_cast<double>(std::max<int64_t>(1, data_.tips_used * data_.characters));
}

MkParams MkModel::ParamsFromRates(const Eigen::VectorXd& rates) const {
  MkParams p;
  p.state_names = state_names_;
  p.index = layout_.index;
  p.q = layout_.Q(rates.cwiseMax(q_min_).cwiseMin(q_max_));
  p.root = root_;
  if (root_ == RootPrior::kGiven) p.root_probs = root_probs_;
  return p;
}

Generator MkModel::MakeGenerator(const MkParams& params) const {
  return Generator(params.q, layout_.symmetric, method_);
}

absl::Status MkModel::Prune(const MkParams& params, const Generator& generator,
                            const FitControls& controls, Upward* up) const {
  EMFIT_ASSIGN_OR_RETURN(Eigen::VectorXd rho, RootDistribution(params));
  return PruneUp(data_, generator, params.root, rho, controls, up);
}

Eigen::VectorXd MkModel::RatesFromCounts(const Eigen::MatrixXd& n, const Eigen::VectorXd& t) const {
  Eigen::VectorXd rates(layout_.num_rates);
  for (int p = 0; p < layout_.num_rates; ++p) {
    double num = 0, den = 0;
    for (const auto& [i, j] : layout_.cells[p]) {
      num += n(i, j);
      den += t[i];
    }
    rates[p] = den > 0 ? num / den : q_min_;
  }
  return rates.cwiseMax(q_min_).cwiseMin(q_max_);
}

double MkModel::CompleteLogLikelihood(const Eigen::MatrixXd& n, const Eigen::VectorXd& t,
                                      const Eigen::VectorXd& root, const MkParams& params) const {
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  double value = 0;
  if (root_ == RootPrior::kStationary || root_ == RootPrior::kGiven) {
    absl::StatusOr<Eigen::VectorXd> rho = RootDistribution(params);
    if (!rho.ok()) return kNegInf;
    for (int i = 0; i < k(); ++i) {
      if (root[i] == 0) continue;
      if (!((*rho)[i] > 0)) return kNegInf;
      value += root[i] * std::log((*rho)[i]);
    }
  } else {
    value += root.sum() * -std::log(static_cast<double>(k()));
  }
  for (int i = 0; i < k(); ++i) {
    for (int j = 0; j < k(); ++j) {
      if (i == j || n(i, j) == 0) continue;
      if (!(params.q(i, j) > 0)) return kNegInf;
      value += n(i, j) * std::log(params.q(i, j));
    }
    value += params.q(i, i) * t[i];  // q_ii = -q_i
  }
  return value;
}

MkParams MkModel::MStep(const Eigen::MatrixXd& n, const Eigen::VectorXd& t,
                        const Eigen::VectorXd& root, const MkParams& current) const {
  const Eigen::VectorXd proposal = RatesFromCounts(n, t);
  if (root_ != RootPrior::kStationary) return ParamsFromRates(proposal);
  // The root prior depends on Q, so the closed form maximises only the branch part of
  // Q(theta | q). Starting from it, maximise the whole by ascent in log rates, each step scaled
  // by the branch part's curvature (theta_p T_p) and halved until Q rises; the root part's
  // gradient by central differences. Keep `current` if Q did not rise above its value
  // (generalised EM: the log-likelihood then cannot fall; docs/algorithms.md §4.3).
  const int rates = layout_.num_rates;
  Eigen::VectorXd n_p = Eigen::VectorXd::Zero(rates), t_p = Eigen::VectorXd::Zero(rates);
  for (int p = 0; p < rates; ++p) {
    for (const auto& [i, j] : layout_.cells[p]) {
      n_p[p] += n(i, j);
      t_p[p] += t[i];
    }
  }
  const double lo = std::log(q_min_), hi = std::log(q_max_);
  auto value = [&](const Eigen::VectorXd& x) {
    return CompleteLogLikelihood(n, t, root, ParamsFromRates(x.array().exp().matrix()));
  };
  auto root_part = [&](const Eigen::VectorXd& x) {
    absl::StatusOr<Eigen::VectorXd> pi =
        StationaryDistribution(layout_.Q(x.array().exp().matrix()));
    if (!pi.ok()) return -std::numeric_limits<double>::infinity();
    double v = 0;
    for (int i = 0; i < k(); ++i) {
      if (root[i] > 0) v += root[i] * std::log((*pi)[i]);
    }
    return v;
  };
  Eigen::VectorXd x = proposal.array().log().matrix();
  double f = value(x);
  constexpr double kH = 1e-6;
  for (int iteration = 0; iteration < 100 && std::isfinite(f); ++iteration) {
    Eigen::VectorXd d(rates);
    for (int p = 0; p < rates; ++p) {
      Eigen::VectorXd up = x, down = x;
      up[p] += kH;
      down[p] -= kH;
      const double grad =
          n_p[p] - std::exp(x[p]) * t_p[p] + (root_part(up) - root_part(down)) / (2 * kH);
      d[p] = grad / std::max(std::exp(x[p]) * t_p[p], 1e-12);
      if ((x[p] <= lo && d[p] < 0) || (x[p] >= hi && d[p] > 0)) d[p] = 0;
    }
    if (!(d.cwiseAbs().maxCoeff() > 1e-12)) break;
    bool improved = false;
    double step = 1.0;
    for (int h = 0; h < 40; ++h, step *= 0.5) {
      const Eigen::VectorXd y = (x + step * d).cwiseMax(lo).cwiseMin(hi);
      const double fy = value(y);
      if (fy > f) {
        x = y;
        f = fy;
        improved = true;
        break;
      }
    }
    if (!improved) break;
  }
  MkParams next = ParamsFromRates(x.array().exp().matrix());
  return f >= CompleteLogLikelihood(n, t, root, current) ? next : current;
}

std::vector<FitWarning> MkModel::Inspect(const MkParams& params) const {
  std::vector<FitWarning> out;
  const Eigen::VectorXd rates = RatesOf(params);
  for (int p = 0; p < layout_.num_rates; ++p) {
    const bool low = rates[p] <= q_min_ * (1 + 1e-9);
    const bool high = rates[p] >= q_max_ * (1 - 1e-9);
    if (!low && !high) continue;
    std::vector<std::string> cells;
    for (const auto& [i, j] : layout_.cells[p]) {
      if (cells.size() == 3) {
        cells.push_back("...");
        break;
      }
      cells.push_back(absl::StrFormat("%s->%s", state_names_[i], state_names_[j]));
    }
    out.push_back(
        {"rate_at_bound",
         absl::StrFormat("rate %d (%s) is at its %s bound %.3g%s", p + 1,
                         absl::StrJoin(cells, ", "), low ? "lower" : "upper", low ? q_min_ : q_max_,
                         low ? ": the data favour no such transitions"
                             : ": the data favour a rate without bound (maximally mixed states)"),
         0, p});
  }
  return out;
}

MkParams MkModel::Start(int restart, uint64_t seed) const {
  const double total = data_.tree->TotalLength();
  const double base = total > 0 ? static_cast<double>(k()) / total : 1.0;
  Eigen::VectorXd rates = Eigen::VectorXd::Constant(layout_.num_rates, base);
  if (restart > 0) {
    Rng rng(DeriveSeed(seed, 0, StreamPurpose::kInit));
    for (int p = 0; p < layout_.num_rates; ++p) rates[p] *= std::pow(10.0, 2 * rng.Uniform() - 1);
  }
  return ParamsFromRates(rates);
}

MkFamily::Stats MkFamily::NewStats() const {
  Stats s;
  s.n.setZero(model_.k(), model_.k());
  s.t.setZero(model_.k());
  s.root.setZero(model_.k());
  return s;
}

absl::StatusOr<double> MkFamily::EStep(const Params& params, const FitControls& controls,
                                       Stats* stats) const {
  const Generator generator = model_.MakeGenerator(params);
  EMFIT_RETURN_IF_ERROR(model_.Prune(params, generator, controls, &stats->up));
  Expected e;
  EMFIT_RETURN_IF_ERROR(ExpectedCounts(model_.data(), generator, stats->up, controls, &e));
  stats->n = std::move(e.transitions);
  stats->t = std::move(e.times);
  stats->root = std::move(e.root);
  return stats->up.total;
}

absl::Status MkFamily::MStep(const Stats& stats, Params* params) const {
  MkParams next = model_.MStep(stats.n, stats.t, stats.root, *params);
  const int rates = static_cast<int>(model_.NumFreeParameters());
  if (stats.probed.size() != static_cast<size_t>(rates)) stats.probed.assign(rates, 0);
  const Eigen::VectorXd from = model_.RatesOf(*params);
  Eigen::VectorXd best = model_.RatesOf(next);
  double best_ll = 0;
  bool evaluated = false;
  Upward up;
  auto log_likelihood = [&](const Eigen::VectorXd& rates_at) -> absl::StatusOr<double> {
    const MkParams p = model_.ParamsFromRates(rates_at);
    EMFIT_RETURN_IF_ERROR(model_.Prune(p, model_.MakeGenerator(p), {}, &up));
    return up.total;
  };
  for (int p = 0; p < rates; ++p) {
    const double d = std::log(best[p]) - std::log(from[p]);
    if (stats.probed[p] || d == 0 || std::abs(d) >= 1e-6) continue;
    const double bound = d > 0 ? model_.q_max() : model_.q_min();
    if (best[p] == bound) continue;
    stats.probed[p] = 1;
    if (!evaluated) {
      absl::StatusOr<double> l = log_likelihood(best);
      if (!l.ok()) break;
      best_ll = *l;
      evaluated = true;
    }
    Eigen::VectorXd candidate = best;
    candidate[p] = bound;
    absl::StatusOr<double> l = log_likelihood(candidate);
    if (l.ok() && *l > best_ll) {
      best = candidate;
      best_ll = *l;
    }
  }
  *params = evaluated ? model_.ParamsFromRates(best) : std::move(next);
  return absl::OkStatus();
}

double MkFamily::ExpectedLogJoint(const Stats& stats, const Params& params) const {
  return model_.CompleteLogLikelihood(stats.n, stats.t, stats.root, params);
}

std::vector<FitWarning> MkFamily::Inspect(const Stats&, const Params& params) const {
  return model_.Inspect(params);
}

Eigen::VectorXd MkFamily::Pack(const Params& params) const {
  return model_.RatesOf(params).array().log().matrix();
}

absl::StatusOr<MkParams> MkFamily::Unpack(const Eigen::VectorXd& x, const Params&) const {
  if (x.size() != model_.NumFreeParameters() || !x.allFinite()) {
    return absl::InvalidArgumentError("the packed log rates are not finite");
  }
  return model_.ParamsFromRates(x.array().exp().matrix());
}

}  // namespace emfit::mk::internal
