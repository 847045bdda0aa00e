#include "gmm/missing.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/container/flat_hash_map.h"
#include "emfit/base/status_macros.h"
#include "exec/stripes.h"
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

PatternLayout::PatternLayout(const RowMatrix& x) {
  const Eigen::Index n = x.rows();
  const int d = static_cast<int>(x.cols());
  absl::flat_hash_map<Pattern, int> ids;
  std::vector<int> run_ids;  // per run: index into patterns_, -1 complete
  Pattern pattern(d), previous;
  for (Eigen::Index b = 0; b < n; b += ::emfit::internal::kBlockRows) {
    block_start_.push_back(runs_.size());
    const Eigen::Index end = std::min<Eigen::Index>(n, b + ::emfit::internal::kBlockRows);
    for (Eigen::Index i = b; i < end; ++i) {
      for (int j = 0; j < d; ++j) pattern[j] = std::isnan(x(i, j)) ? 0 : 1;
      if (i > b && pattern == previous) {
        ++runs_.back().end;
        continue;
      }
      runs_.push_back({i - b, i - b + 1, nullptr});
      previous = pattern;
      if (std::all_of(pattern.begin(), pattern.end(), [](uint8_t o) { return o; })) {
        run_ids.push_back(-1);
        continue;
      }
      const auto [it, added] = ids.try_emplace(pattern, static_cast<int>(patterns_.size()));
      if (added) patterns_.push_back(pattern);
      run_ids.push_back(it->second);
    }
  }
  block_start_.push_back(runs_.size());
  for (size_t r = 0; r < runs_.size(); ++r) {
    if (run_ids[r] >= 0) runs_[r].pattern = &patterns_[static_cast<size_t>(run_ids[r])];
  }
}

absl::Span<const PatternRun> PatternLayout::BlockRuns(int64_t begin) const {
  const size_t b = static_cast<size_t>(begin / ::emfit::internal::kBlockRows);
  return absl::MakeConstSpan(runs_.data() + block_start_[b], runs_.data() + block_start_[b + 1]);
}

absl::Status MissingRuns(const GmmParams& params, const Components& complete,
                         const Eigen::Ref<const RowMatrix>& block, const Eigen::Index* order,
                         absl::Span<const PatternRun> runs, const double* w,
                         const Eigen::MatrixXd& shift, PatternCache* cache, Eigen::MatrixXd* resp,
                         Eigen::VectorXd* row_ll, GmmStats* stats, MissingScratch* scratch) {
  const int d = params.dim();
  const int k = params.k();
  const CovarianceType type = params.covariance_type;
  if (resp != nullptr) resp->resize(block.rows(), k);
  row_ll->resize(block.rows());
  std::vector<int> all(d);
  std::iota(all.begin(), all.end(), 0);
  KernelScratch& observed = scratch->observed;
  Eigen::MatrixXd& r = scratch->resp;
  Eigen::VectorXd& ll = scratch->row_ll;
  for (const PatternRun& run : runs) {
    const Eigen::Index m = run.end - run.begin;
    const Eigen::Index* rows = order == nullptr ? nullptr : order + run.begin;
    auto row_of = [&](Eigen::Index i) { return rows == nullptr ? run.begin + i : rows[i]; };
    std::shared_ptr<const PatternFactors> factors;
    if (run.pattern != nullptr) {
      EMFIT_ASSIGN_OR_RETURN(factors, cache->Get(*run.pattern));
    }
    const std::vector<int>& obs = factors == nullptr ? all : factors->obs;

    // E-step on the observed coordinates, a tile of rows at a time.
    GatherFeatureMajor(block, rows, run.begin, m, obs, &observed);
    if (obs.empty()) {
      // No observed coordinate: the marginal density is 1, so a_ik = ln pi_k.
      r = factors->sub.log_weights.transpose().replicate(m, 1);
      NormalizeRows(&r, &ll);
    } else {
      EStepTiled(factors == nullptr ? complete : factors->sub, &observed, &r, &ll);
    }
    for (Eigen::Index i = 0; i < m; ++i) (*row_ll)[row_of(i)] = ll[i];
    if (resp != nullptr) {
      for (Eigen::Index i = 0; i < m; ++i) resp->row(row_of(i)) = r.row(i);
    }
    if (stats == nullptr) continue;

    Eigen::VectorXd& wv = scratch->w;
    if (w != nullptr) {
      wv.resize(m);
      for (Eigen::Index i = 0; i < m; ++i) wv[i] = w[row_of(i)];
      stats->total_weight += wv.sum();
    } else {
      stats->total_weight += static_cast<double>(m);
    }
    // The completed rows, feature-major: the observed coordinates once per run, the
    // conditional means of the missing ones per component (every padding row included).
    KernelScratch* x = &observed;
    if (factors != nullptr) {
      x = &scratch->completed;
      x->xt.resize(observed.ld, d);
      x->x = x->xt.data();
      x->ld = observed.ld;
      x->rows = m;
      x->cols = d;
      for (size_t j = 0; j < obs.size(); ++j) x->xt.col(obs[j]) = observed.xt.col(j);
    }
    Eigen::VectorXd& wr = scratch->wr;
    for (int c = 0; c < k; ++c) {
      wr = w != nullptr ? Eigen::VectorXd(r.col(c).cwiseProduct(wv)) : r.col(c);
      if (factors == nullptr) {
        AccumulateComponentTiled(c, wr.data(), shift, x, stats);
        continue;
      }
      const PatternFactors& f = *factors;
      const double* mu = complete.means.data() + static_cast<Eigen::Index>(c) * d;
      if (!f.regression.empty() && !f.obs.empty()) {
        ConditionalMeansTiled(observed, f.obs, f.mis,
                              f.regression[type == CovarianceType::kFull ? c : 0], mu, x);
      } else {
        for (int j : f.mis) x->xt.col(j).setConstant(mu[j]);
      }
      AccumulateComponentTiled(c, wr.data(), shift, x, stats);
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

absl::Status MissingBlock(const GmmParams& params, const Components& complete,
                          const Eigen::Ref<const RowMatrix>& block, const double* w,
                          const Eigen::MatrixXd& shift, PatternCache* cache, Eigen::MatrixXd* resp,
                          Eigen::VectorXd* row_ll, GmmStats* stats, MissingScratch* scratch) {
  const Eigen::Index n = block.rows();
  const int d = params.dim();
  // Each row's pattern as bits (column 0 the most significant, so that keys order as the
  // fit sorts its rows); rows grouped by pattern (stable, and skipped when the rows already
  // come sorted).
  const int words = (d + 63) / 64;
  std::vector<uint64_t>& keys = scratch->keys;
  keys.assign(static_cast<size_t>(n) * words, 0);
  for (Eigen::Index i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) {
      if (!std::isnan(block(i, j))) keys[i * words + j / 64] |= uint64_t{1} << (63 - j % 64);
    }
  }
  auto pattern_less = [&](Eigen::Index a, Eigen::Index b) {
    return std::lexicographical_compare(&keys[a * words], &keys[a * words] + words,
                                        &keys[b * words], &keys[b * words] + words);
  };
  std::vector<Eigen::Index>& order = scratch->order;
  order.resize(n);
  std::iota(order.begin(), order.end(), 0);
  const bool sorted = std::is_sorted(order.begin(), order.end(), pattern_less);
  if (!sorted) std::stable_sort(order.begin(), order.end(), pattern_less);
  std::vector<Pattern>& patterns = scratch->patterns;
  std::vector<PatternRun>& runs = scratch->runs;
  patterns.clear();
  runs.clear();
  for (Eigen::Index r = 0; r < n;) {
    Eigen::Index e = r + 1;
    while (e < n && !pattern_less(order[r], order[e])) ++e;
    Pattern pat(d);
    for (int j = 0; j < d; ++j) pat[j] = std::isnan(block(order[r], j)) ? 0 : 1;
    runs.push_back({r, e, nullptr});
    patterns.push_back(std::move(pat));
    r = e;
  }
  // Pointers only once `patterns` stops growing.
  for (size_t i = 0; i < runs.size(); ++i) {
    const Pattern& p = patterns[i];
    if (!std::all_of(p.begin(), p.end(), [](uint8_t o) { return o; })) runs[i].pattern = &p;
  }
  return MissingRuns(params, complete, block, sorted ? nullptr : order.data(), runs, w, shift,
                     cache, resp, row_ll, stats, scratch);
}

}  // namespace emfit::gmm::internal
