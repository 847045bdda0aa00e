#include "gmm/missing.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "emfit/base/status_macros.h"
#include "gmm/kernels.h"

namespace emfit::gmm::internal {

absl::StatusOr<PatternFactors> FactorPattern(const GmmParams& params, const Pattern& pattern) {
  PatternFactors f;
  f.pattern = pattern;
  const int d = params.dim();
  for (int j = 0; j < d; ++j) (pattern[j] ? f.obs : f.mis).push_back(j);
  GmmParams sub;
  sub.covariance_type = params.covariance_type;
  sub.weights = params.weights;
  sub.means = params.means(Eigen::all, f.obs);
  const int k = params.k();
  const int no = static_cast<int>(f.obs.size());
  switch (params.covariance_type) {
    case CovarianceType::kFull:
      sub.covariances.resize(static_cast<Eigen::Index>(k) * no, no);
      for (int c = 0; c < k; ++c) {
        sub.covariances.middleRows(static_cast<Eigen::Index>(c) * no, no) =
            params.covariances.middleRows(static_cast<Eigen::Index>(c) * d, d)(f.obs, f.obs);
      }
      break;
    case CovarianceType::kTied:
      sub.covariances = params.covariances(f.obs, f.obs);
      break;
    case CovarianceType::kDiag:
      sub.covariances = params.covariances(Eigen::all, f.obs);
      break;
    case CovarianceType::kSpherical:
      sub.covariances = params.covariances;
      break;
  }
  if (no > 0) {
    EMFIT_ASSIGN_OR_RETURN(f.sub, Factorize(sub, "model"));
  } else {
    // No observed coordinate: the marginal density is 1, so a_ik = ln pi_k.
    f.sub.type = params.covariance_type;
    f.sub.k = k;
    f.sub.d = 0;
    f.sub.log_weights = params.weights.array().log();
  }
  if (f.mis.empty()) return f;
  switch (params.covariance_type) {
    case CovarianceType::kFull:
    case CovarianceType::kTied: {
      const int blocks = params.covariance_type == CovarianceType::kFull ? k : 1;
      for (int c = 0; c < blocks; ++c) {
        const Eigen::MatrixXd sigma = params.covariance_type == CovarianceType::kFull
                                          ? Eigen::MatrixXd(params.covariances.middleRows(
                                                static_cast<Eigen::Index>(c) * d, d))
                                          : params.covariances;
        const Eigen::MatrixXd s_mo = sigma(f.mis, f.obs);
        Eigen::MatrixXd b;
        if (no > 0) {
          // Sigma_oo^{-1} = U U^T with U the sub-problem's precision Cholesky factor.
          const Eigen::MatrixXd& u = f.sub.prec_chol[static_cast<size_t>(c)];
          b = (s_mo * u.triangularView<Eigen::Upper>()) *
              u.transpose().triangularView<Eigen::Lower>();
        } else {
          b.setZero(f.mis.size(), 0);
        }
        Eigen::MatrixXd cond = sigma(f.mis, f.mis);
        cond.noalias() -= b * s_mo.transpose();
        f.regression.push_back(std::move(b));
        f.cond_cov.push_back(std::move(cond));
      }
      break;
    }
    case CovarianceType::kDiag:
      for (int c = 0; c < k; ++c) {
        f.cond_cov.push_back(params.covariances.row(c)(f.mis).transpose());
      }
      break;
    case CovarianceType::kSpherical:
      for (int c = 0; c < k; ++c) {
        f.cond_cov.push_back(Eigen::VectorXd::Constant(f.mis.size(), params.covariances(c, 0)));
      }
      break;
  }
  return f;
}

absl::StatusOr<std::shared_ptr<const PatternFactors>> PatternCache::Get(const Pattern& pattern) {
  if (last_ == nullptr || last_->pattern != pattern) {
    EMFIT_ASSIGN_OR_RETURN(PatternFactors f, FactorPattern(*params_, pattern));
    last_ = std::make_shared<const PatternFactors>(std::move(f));
  }
  return last_;
}

absl::Status MissingBlock(const GmmParams& params, const Components& complete,
                          const Eigen::Ref<const RowMatrix>& block,
                          const Eigen::Ref<const Eigen::VectorXd>& w, const Eigen::MatrixXd& shift,
                          PatternCache* cache, Eigen::MatrixXd* resp, Eigen::VectorXd* row_ll,
                          GmmStats* stats, KernelScratch* scratch) {
  const Eigen::Index n = block.rows();
  const int d = params.dim();
  const int k = params.k();
  const CovarianceType type = params.covariance_type;
  // Each row's pattern as bits (column 0 the most significant, so that keys order as the
  // fit sorts its rows); rows grouped by pattern (stable, and skipped when the rows already
  // come sorted, as they do in a fit).
  const int words = (d + 63) / 64;
  std::vector<uint64_t> keys(static_cast<size_t>(n) * words, 0);
  for (Eigen::Index i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) {
      if (!std::isnan(block(i, j))) keys[i * words + j / 64] |= uint64_t{1} << (63 - j % 64);
    }
  }
  auto pattern_less = [&](Eigen::Index a, Eigen::Index b) {
    return std::lexicographical_compare(&keys[a * words], &keys[a * words] + words,
                                        &keys[b * words], &keys[b * words] + words);
  };
  std::vector<Eigen::Index> order(n);
  std::iota(order.begin(), order.end(), 0);
  if (!std::is_sorted(order.begin(), order.end(), pattern_less)) {
    std::stable_sort(order.begin(), order.end(), pattern_less);
  }
  struct Run {
    Eigen::Index begin, end;                        // into `order`
    std::shared_ptr<const PatternFactors> factors;  // null: complete rows
    RowMatrix x_obs;                                // observed coordinates of the run's rows
  };
  std::vector<Run> runs;
  resp->resize(n, k);
  KernelScratch& kernel = *scratch;
  Eigen::MatrixXd a;
  for (Eigen::Index r = 0; r < n;) {
    Eigen::Index e = r + 1;
    while (e < n && !pattern_less(order[r], order[e])) ++e;
    Pattern pat(d);
    for (int j = 0; j < d; ++j) pat[j] = std::isnan(block(order[r], j)) ? 0 : 1;
    Run run{r, e, nullptr, {}};
    const bool all_observed = std::all_of(pat.begin(), pat.end(), [](uint8_t o) { return o; });
    if (all_observed) {
      run.x_obs.resize(e - r, d);
      for (Eigen::Index i = r; i < e; ++i) run.x_obs.row(i - r) = block.row(order[i]);
      LogJoint(complete, run.x_obs, &a, &kernel);
    } else {
      EMFIT_ASSIGN_OR_RETURN(run.factors, cache->Get(pat));
      const std::vector<int>& obs = run.factors->obs;
      run.x_obs.resize(e - r, static_cast<Eigen::Index>(obs.size()));
      for (Eigen::Index i = r; i < e; ++i) run.x_obs.row(i - r) = block.row(order[i])(obs);
      if (obs.empty()) {
        a = run.factors->sub.log_weights.transpose().replicate(e - r, 1);
      } else {
        LogJoint(run.factors->sub, run.x_obs, &a, &kernel);
      }
    }
    for (Eigen::Index i = r; i < e; ++i) resp->row(order[i]) = a.row(i - r);
    runs.push_back(std::move(run));
    r = e;
  }
  NormalizeRows(resp, row_ll);
  if (stats == nullptr) return absl::OkStatus();

  const bool weighted = w.size() != 0;
  stats->total_weight += weighted ? w.sum() : static_cast<double>(n);
  Eigen::VectorXd wr;
  RowMatrix cond_mean, centred;
  Eigen::RowVectorXd mu_obs;
  for (const Run& run : runs) {
    const Eigen::Index m = run.end - run.begin;
    if (run.factors == nullptr && stats->sxx.size() != 0) {
      // Complete rows of a tied fit without per-component scatter: only happens when the
      // whole fit is complete, which does not come through here.
      return absl::InternalError("tied statistics without per-component scatter");
    }
    // The completed rows go to the tiled kernel feature-major: the observed coordinates once
    // per run, the conditional means of the missing ones per component.
    if (run.factors == nullptr) {
      ToFeatureMajor(run.x_obs, &kernel);
    } else {
      ZeroedFeatureMajor(m, d, &kernel);
      const std::vector<int>& obs = run.factors->obs;
      for (size_t j = 0; j < obs.size(); ++j) {
        kernel.xt.col(obs[j]).head(m) = run.x_obs.col(static_cast<Eigen::Index>(j));
      }
    }
    wr.resize(m);
    for (int c = 0; c < k; ++c) {
      for (Eigen::Index i = 0; i < m; ++i) {
        const Eigen::Index row = order[run.begin + i];
        wr[i] = (*resp)(row, c) * (weighted ? w[row] : 1.0);
      }
      if (run.factors == nullptr) {
        AccumulateComponentTiled(c, wr.data(), shift, &kernel, stats);
        continue;
      }
      const PatternFactors& f = *run.factors;
      // Conditional means of the missing coordinates given the observed ones.
      if (!f.regression.empty() && !f.obs.empty()) {
        const Eigen::MatrixXd& b = f.regression[type == CovarianceType::kFull ? c : 0];
        mu_obs = params.means.row(c)(f.obs);
        centred = run.x_obs.rowwise() - mu_obs;
        cond_mean.noalias() = centred * b.transpose();
        for (size_t j = 0; j < f.mis.size(); ++j) {
          kernel.xt.col(f.mis[j]).head(m) =
              cond_mean.col(static_cast<Eigen::Index>(j)).array() + params.means(c, f.mis[j]);
        }
      } else {
        for (size_t j = 0; j < f.mis.size(); ++j) {
          kernel.xt.col(f.mis[j]).head(m).setConstant(params.means(c, f.mis[j]));
        }
      }
      AccumulateComponentTiled(c, wr.data(), shift, &kernel, stats);
      // The conditional covariance of the missing coordinates, weighted by sum_i w_i r_ic.
      const double mass = wr.sum();
      if (!stats->sdd.empty()) {
        const Eigen::MatrixXd& cond = f.cond_cov[type == CovarianceType::kFull ? c : 0];
        for (size_t a = 0; a < f.mis.size(); ++a) {
          for (size_t b = 0; b <= a; ++b) {
            stats->sdd[c](f.mis[a], f.mis[b]) += mass * cond(a, b);
          }
        }
      } else {
        const Eigen::MatrixXd& var = f.cond_cov[c];
        for (size_t a = 0; a < f.mis.size(); ++a) {
          stats->sdd_diag(c, f.mis[a]) += mass * var(a, 0);
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace emfit::gmm::internal
