#include "gmm/missing.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
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

absl::StatusOr<PatternFactors> FactorPatternSchur(const GmmParams& params,
                                                  const std::vector<Eigen::MatrixXd>& precisions,
                                                  const Pattern& pattern) {
  constexpr double kLog2Pi = 1.8378770664093454835606594728112;
  PatternFactors f;
  f.pattern = pattern;
  f.schur = true;
  const int d = params.dim();
  const int k = params.k();
  for (int j = 0; j < d; ++j) (pattern[j] ? f.obs : f.mis).push_back(j);
  const Eigen::Index nm = static_cast<Eigen::Index>(f.mis.size());
  const double half_m_log2pi = 0.5 * static_cast<double>(nm) * kLog2Pi;
  f.schur_offset.resize(k);
  switch (params.covariance_type) {
    case CovarianceType::kFull:
    case CovarianceType::kTied: {
      const int blocks = params.covariance_type == CovarianceType::kFull ? k : 1;
      for (int c = 0; c < blocks; ++c) {
        const Eigen::MatrixXd& lambda = precisions[static_cast<size_t>(c)];
        const Eigen::LLT<Eigen::MatrixXd> llt(lambda(f.mis, f.mis));
        if (llt.info() != Eigen::Success || !(llt.matrixLLT().diagonal().array() > 0).all()) {
          return absl::FailedPreconditionError(absl::StrFormat(
              "model: the covariance of component %d is not positive definite; increase "
              "reg_covar or reduce k",
              c));
        }
        Eigen::MatrixXd cond = llt.solve(Eigen::MatrixXd::Identity(nm, nm));
        Eigen::MatrixXd b = -(cond * lambda(f.mis, f.obs));
        // ln|C| = -ln|Lambda_mm| = -2 sum ln L_ii.
        const double log_det_cond = -2.0 * llt.matrixLLT().diagonal().array().log().sum();
        f.regression.push_back(std::move(b));
        f.cond_cov.push_back(std::move(cond));
        f.schur_offset[c] = half_m_log2pi + 0.5 * log_det_cond;
      }
      if (params.covariance_type == CovarianceType::kTied) {
        f.schur_offset.setConstant(f.schur_offset[0]);
      }
      break;
    }
    case CovarianceType::kDiag:
      for (int c = 0; c < k; ++c) {
        const Eigen::VectorXd var = params.covariances.row(c)(f.mis).transpose();
        f.schur_offset[c] = half_m_log2pi + 0.5 * var.array().log().sum();
        f.cond_cov.push_back(var);
      }
      break;
    case CovarianceType::kSpherical:
      for (int c = 0; c < k; ++c) {
        const double var = params.covariances(c, 0);
        f.schur_offset[c] = half_m_log2pi + 0.5 * static_cast<double>(nm) * std::log(var);
        f.cond_cov.push_back(Eigen::VectorXd::Constant(nm, var));
      }
      break;
  }
  if (!f.schur_offset.allFinite()) {
    return absl::FailedPreconditionError(
        "model: a conditional covariance of a missingness pattern is not positive definite; "
        "increase reg_covar");
  }
  return f;
}

namespace {

// Memory held by a pattern's factors, roughly.
size_t FactorBytes(const PatternFactors& f) {
  size_t values = f.sub.means.size() + f.sub.aux.size() + 4 * static_cast<size_t>(f.sub.k);
  for (const Eigen::MatrixXd& m : f.sub.prec_chol) values += m.size();
  for (const Eigen::MatrixXd& m : f.regression) values += m.size();
  for (const Eigen::MatrixXd& m : f.cond_cov) values += m.size();
  return sizeof(PatternFactors) + f.pattern.size() + sizeof(double) * values +
         64 * (f.sub.prec_chol.size() + f.regression.size() + f.cond_cov.size());
}

}  // namespace

const std::vector<Eigen::MatrixXd>& PatternCache::Precisions() {
  absl::call_once(precisions_once_, [this] {
    for (const Eigen::MatrixXd& u : complete_->prec_chol) {
      precisions_.push_back(u * u.transpose());  // Sigma^{-1} = U U^T
    }
  });
  return precisions_;
}

absl::StatusOr<std::shared_ptr<const PatternFactors>> PatternCache::Get(const Pattern& pattern,
                                                                        bool rare) {
  {
    absl::MutexLock lock(&mu_);
    auto it = table_.find(pattern);
    if (it != table_.end()) return it->second;
  }
  // Factored outside the lock; two tasks may factor the same pattern at once and keep either
  // (the factors are a function of the pattern and the parameters only).
  absl::StatusOr<PatternFactors> factored =
      rare ? FactorPatternSchur(*params_, Precisions(), pattern) : FactorPattern(*params_, pattern);
  EMFIT_ASSIGN_OR_RETURN(PatternFactors f, std::move(factored));
  auto factors = std::make_shared<const PatternFactors>(std::move(f));
  const size_t bytes = FactorBytes(*factors);
  absl::MutexLock lock(&mu_);
  if (bytes_ + bytes > max_bytes_) return factors;
  const auto [it, added] = table_.try_emplace(pattern, factors);
  if (added) bytes_ += bytes;
  return it->second;
}

void PatternKeys(const Eigen::Ref<const RowMatrix>& x, std::vector<uint64_t>* keys) {
  const Eigen::Index n = x.rows();
  const int d = static_cast<int>(x.cols());
  const int words = (d + 63) / 64;
  keys->assign(static_cast<size_t>(n) * words, 0);
  for (Eigen::Index i = 0; i < n; ++i) {
    const double* row = x.data() + i * x.outerStride();
    uint64_t* key = keys->data() + i * words;
    for (int j = 0; j < d; ++j) {
      key[j / 64] |= static_cast<uint64_t>(!std::isnan(row[j])) << (63 - j % 64);
    }
  }
}

std::vector<Eigen::Index> OrderByPattern(const std::vector<uint64_t>& keys, int words) {
  const size_t n = keys.size() / static_cast<size_t>(std::max(words, 1));
  // A counting sort: the distinct keys (few, usually) are sorted, the rows scattered to their
  // key's place in row order, which keeps it stable.
  using Key = absl::Span<const uint64_t>;
  absl::flat_hash_map<Key, uint32_t> ids;
  std::vector<Key> distinct;
  std::vector<uint32_t> row_id(n);
  for (size_t i = 0; i < n; ++i) {
    const Key key(keys.data() + i * words, static_cast<size_t>(words));
    const auto [it, added] = ids.try_emplace(key, static_cast<uint32_t>(distinct.size()));
    if (added) distinct.push_back(key);
    row_id[i] = it->second;
  }
  std::vector<uint32_t> by_key(distinct.size());
  std::iota(by_key.begin(), by_key.end(), 0);
  std::sort(by_key.begin(), by_key.end(), [&](uint32_t a, uint32_t b) {
    return std::lexicographical_compare(distinct[a].begin(), distinct[a].end(), distinct[b].begin(),
                                        distinct[b].end());
  });
  std::vector<size_t> next(distinct.size() + 1, 0);  // first position of each id
  for (uint32_t id : row_id) ++next[id + 1];
  std::vector<size_t> count(next.begin() + 1, next.end());
  size_t position = 0;
  for (uint32_t id : by_key) {
    next[id] = position;
    position += count[id];
  }
  std::vector<Eigen::Index> order(n);
  for (size_t i = 0; i < n; ++i) order[next[row_id[i]]++] = static_cast<Eigen::Index>(i);
  return order;
}

PatternLayout::PatternLayout(const Eigen::Ref<const RowMatrix>& x, bool group, int64_t rare_rows) {
  const Eigen::Index n = x.rows();
  const int d = static_cast<int>(x.cols());
  const int words = (d + 63) / 64;
  std::vector<uint64_t> keys;
  PatternKeys(x, &keys);
  if (group) order_ = OrderByPattern(keys, words);
  // The key of a row with every value observed.
  std::vector<uint64_t> complete(static_cast<size_t>(words), 0);
  for (int j = 0; j < d; ++j) complete[j / 64] |= uint64_t{1} << (63 - j % 64);
  absl::flat_hash_map<Pattern, int> ids;
  std::vector<int> run_ids;  // per run: index into patterns_, -1 complete
  const uint64_t* previous = nullptr;
  for (Eigen::Index p = 0; p < n; ++p) {
    const Eigen::Index row = group ? order_[p] : p;
    const uint64_t* key = keys.data() + row * words;
    const Eigen::Index offset = p % ::emfit::internal::kBlockRows;
    if (offset == 0) block_start_.push_back(runs_.size());
    if (offset != 0 && std::equal(key, key + words, previous)) {
      ++runs_.back().end;
      continue;
    }
    previous = key;
    runs_.push_back({offset, offset + 1, nullptr});
    if (std::equal(key, key + words, complete.begin())) {
      run_ids.push_back(-1);
      continue;
    }
    Pattern pattern(d);
    for (int j = 0; j < d; ++j) pattern[j] = (key[j / 64] >> (63 - j % 64)) & 1;
    const auto [it, added] = ids.try_emplace(pattern, static_cast<int>(patterns_.size()));
    if (added) patterns_.push_back(std::move(pattern));
    run_ids.push_back(it->second);
  }
  block_start_.push_back(runs_.size());
  std::vector<int64_t> pattern_rows(patterns_.size(), 0);
  for (size_t r = 0; r < runs_.size(); ++r) {
    if (run_ids[r] >= 0)
      pattern_rows[static_cast<size_t>(run_ids[r])] += runs_[r].end - runs_[r].begin;
  }
  // Pointers only once patterns_ stops growing.
  for (size_t r = 0; r < runs_.size(); ++r) {
    if (run_ids[r] < 0) continue;
    const size_t id = static_cast<size_t>(run_ids[r]);
    runs_[r].pattern = &patterns_[id];
    runs_[r].rare = pattern_rows[id] < rare_rows;
  }
}

absl::Span<const PatternRun> PatternLayout::BlockRuns(int64_t begin) const {
  const size_t b = static_cast<size_t>(begin / ::emfit::internal::kBlockRows);
  return absl::MakeConstSpan(runs_.data() + block_start_[b], runs_.data() + block_start_[b + 1]);
}

namespace {

// Sizes scratch->completed for the rows in `observed` with all d features, and copies the
// observed ones (`obs`) into their columns.
KernelScratch& CompletedRows(const KernelScratch& observed, const std::vector<int>& obs, int d,
                             MissingScratch* scratch) {
  KernelScratch& hat = scratch->completed;
  hat.xt.resize(observed.ld, d);
  hat.x = hat.xt.data();
  hat.ld = observed.ld;
  hat.rows = observed.rows;
  hat.cols = d;
  for (size_t j = 0; j < obs.size(); ++j) hat.xt.col(obs[j]) = observed.xt.col(j);
  return hat;
}

// Fills the missing features of the rows in `hat` with component c's conditional means.
void Complete(const GmmParams& params, const Components& complete, const PatternFactors& f, int c,
              const KernelScratch& observed, KernelScratch* hat) {
  const double* mu = complete.means.data() + static_cast<Eigen::Index>(c) * params.dim();
  if (!f.regression.empty() && !f.obs.empty()) {
    const bool full = params.covariance_type == CovarianceType::kFull;
    ConditionalMeansTiled(observed, f.obs, f.mis, f.regression[full ? c : 0], mu, hat);
  } else {
    for (int j : f.mis) hat->xt.col(j).setConstant(mu[j]);
  }
}

}  // namespace

absl::Status MissingRuns(const GmmParams& params, const Components& complete,
                         const Eigen::Ref<const RowMatrix>& x, const Eigen::Index* order,
                         absl::Span<const PatternRun> runs, const double* w,
                         const Eigen::MatrixXd& shift, PatternCache* cache, Eigen::MatrixXd* resp,
                         Eigen::VectorXd* row_ll, GmmStats* stats, MissingScratch* scratch) {
  const int d = params.dim();
  const int k = params.k();
  const CovarianceType type = params.covariance_type;
  if (stats != nullptr && stats->sxx.size() != 0) {
    // The completed rows differ by component: a pooled second moment cannot hold them.
    return absl::InternalError("missing values need a scatter per component for tied covariance");
  }
  const Eigen::Index positions = runs.empty() ? 0 : runs.back().end;
  if (resp != nullptr) resp->resize(positions, k);
  row_ll->resize(positions);
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
      EMFIT_ASSIGN_OR_RETURN(factors, cache->Get(*run.pattern, run.rare));
    }
    const std::vector<int>& obs = factors == nullptr ? all : factors->obs;

    // E-step on the observed coordinates, a tile of rows at a time.
    GatherFeatureMajor(x, rows, run.begin, m, obs, &observed);
    if (factors != nullptr && factors->schur) {
      // The complete-data density at each component's completed rows, plus the pattern's
      // correction (FactorPatternSchur).
      KernelScratch& hat = CompletedRows(observed, obs, d, scratch);
      r.resize(m, k);
      for (int c = 0; c < k; ++c) {
        Complete(params, complete, *factors, c, observed, &hat);
        ComponentLogJointTiled(complete, c, factors->schur_offset[c], &hat, r.col(c).data());
      }
      NormalizeRows(&r, &ll);
    } else if (obs.empty()) {
      // No observed coordinate: the marginal density is 1, so a_ik = ln pi_k.
      r = factors->sub.log_weights.transpose().replicate(m, 1);
      NormalizeRows(&r, &ll);
    } else {
      EStepTiled(factors == nullptr ? complete : factors->sub, &observed, &r, &ll);
    }
    row_ll->segment(run.begin, m) = ll;
    if (resp != nullptr) resp->middleRows(run.begin, m) = r;
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
    KernelScratch* rows_hat =
        factors == nullptr ? &observed : &CompletedRows(observed, obs, d, scratch);
    Eigen::VectorXd& wr = scratch->wr;
    for (int c = 0; c < k; ++c) {
      if (w != nullptr) {
        wr = r.col(c).cwiseProduct(wv);
      } else {
        wr = r.col(c);
      }
      if (factors == nullptr) {
        AccumulateComponentTiled(c, wr.data(), shift, rows_hat, stats);
        continue;
      }
      const PatternFactors& f = *factors;
      Complete(params, complete, f, c, observed, rows_hat);
      AccumulateComponentTiled(c, wr.data(), shift, rows_hat, stats);
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
