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
#include "math/constants.h"

namespace emfit::gmm::internal {
namespace {

using ::emfit::internal::kLog2Pi;

}  // namespace

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
      // Plain loops on small matrices (|m| is usually a few coordinates): Eigen's dynamic
      // decompositions and products spend more on set-up and allocation than on arithmetic.
      const Eigen::Index no = static_cast<Eigen::Index>(f.obs.size());
      std::vector<double> l(static_cast<size_t>(nm * nm)), inv(static_cast<size_t>(nm * nm));
      auto at = [nm](std::vector<double>& v, Eigen::Index i, Eigen::Index j) -> double& {
        return v[static_cast<size_t>(i + j * nm)];
      };
      const int blocks = params.covariance_type == CovarianceType::kFull ? k : 1;
      f.regression.reserve(static_cast<size_t>(blocks));
      f.cond_cov.reserve(static_cast<size_t>(blocks));
      for (int c = 0; c < blocks; ++c) {
        const Eigen::MatrixXd& lambda = precisions[static_cast<size_t>(c)];
        // L L^T = Lambda_mm (lower).
        double det_mantissa = 1;  // prod L_jj = det_mantissa * 2^det_exponent, never out of range
        int det_exponent = 0;
        for (Eigen::Index j = 0; j < nm; ++j) {
          double diag = lambda(f.mis[j], f.mis[j]);
          for (Eigen::Index p = 0; p < j; ++p) diag -= at(l, j, p) * at(l, j, p);
          if (!(diag > 0) || !std::isfinite(diag)) {
            return absl::FailedPreconditionError(absl::StrFormat(
                "model: the covariance of component %d is not positive definite; increase "
                "reg_covar or reduce k",
                c));
          }
          const double ljj = std::sqrt(diag);
          at(l, j, j) = ljj;
          int e = 0;
          det_mantissa = std::frexp(det_mantissa * ljj, &e);
          det_exponent += e;
          for (Eigen::Index i = j + 1; i < nm; ++i) {
            double v = lambda(f.mis[i], f.mis[j]);
            for (Eigen::Index p = 0; p < j; ++p) v -= at(l, i, p) * at(l, j, p);
            at(l, i, j) = v / ljj;
          }
        }
        // L^{-1} (lower), then C = L^{-T} L^{-1} = (Lambda_mm)^{-1}.
        for (Eigen::Index j = 0; j < nm; ++j) {
          at(inv, j, j) = 1.0 / at(l, j, j);
          for (Eigen::Index i = j + 1; i < nm; ++i) {
            double v = 0;
            for (Eigen::Index p = j; p < i; ++p) v -= at(l, i, p) * at(inv, p, j);
            at(inv, i, j) = v / at(l, i, i);
          }
        }
        Eigen::MatrixXd cond(nm, nm);
        for (Eigen::Index a = 0; a < nm; ++a) {
          for (Eigen::Index b = 0; b <= a; ++b) {
            double v = 0;
            for (Eigen::Index p = a; p < nm; ++p) v += at(inv, p, a) * at(inv, p, b);
            cond(a, b) = cond(b, a) = v;
          }
        }
        // B = -C Lambda_mo.
        Eigen::MatrixXd b(nm, no);
        for (Eigen::Index o = 0; o < no; ++o) {
          for (Eigen::Index a = 0; a < nm; ++a) {
            double v = 0;
            for (Eigen::Index q = 0; q < nm; ++q) v += cond(a, q) * lambda(f.mis[q], f.obs[o]);
            b(a, o) = -v;
          }
        }
        f.regression.push_back(std::move(b));
        f.cond_cov.push_back(std::move(cond));
        // ln|C| = -ln|Lambda_mm| = -2 ln prod L_jj: one log per component.
        const double log_det_l = std::log(det_mantissa) + det_exponent * M_LN2;
        f.schur_offset[c] = half_m_log2pi - log_det_l;
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

// Adds the conditional covariance of the missing coordinates, weighted by `mass` (the sum of
// w_i r_ic over the rows of the pattern), to component c's scatter or squared deviations.
void AddConditionalCovariance(const PatternFactors& f, CovarianceType type, int c, double mass,
                              GmmStats* stats) {
  if (!stats->sdd.empty()) {
    const Eigen::MatrixXd& cond = f.cond_cov[type == CovarianceType::kFull ? c : 0];
    for (size_t a = 0; a < f.mis.size(); ++a) {
      for (size_t b = 0; b <= a; ++b) stats->sdd[c](f.mis[a], f.mis[b]) += mass * cond(a, b);
    }
  } else {
    const Eigen::MatrixXd& var = f.cond_cov[c];
    for (size_t a = 0; a < f.mis.size(); ++a) stats->sdd_diag(c, f.mis[a]) += mass * var(a, 0);
  }
}

// Fills the missing features of rows [begin, begin + count) of `hat` (all d features,
// feature-major, the observed ones in place) with component c's conditional means.
void CompleteRange(const GmmParams& params, const Components& complete, const PatternFactors& f,
                   int c, Eigen::Index begin, Eigen::Index count, KernelScratch* hat) {
  const double* mu = complete.means.data() + static_cast<Eigen::Index>(c) * params.dim();
  const Eigen::Index ld = hat->ld;
  double* x = hat->xt.data() + begin;
  const bool regress = !f.regression.empty() && !f.obs.empty();
  const Eigen::MatrixXd* b =
      regress ? &f.regression[params.covariance_type == CovarianceType::kFull ? c : 0] : nullptr;
  const size_t nm = f.mis.size(), no = f.obs.size();
  if (regress && count < 16) {
    // A few rows (the usual case here): row by row, each row's centred observed values once.
    double y[256];
    if (no <= 256) {
      const double* bp = b->data();
      for (Eigen::Index i = 0; i < count; ++i) {
        for (size_t o = 0; o < no; ++o) y[o] = x[f.obs[o] * ld + i] - mu[f.obs[o]];
        for (size_t m = 0; m < nm; ++m) {
          double v = mu[f.mis[m]];
          for (size_t o = 0; o < no; ++o) v += bp[o * nm + m] * y[o];
          x[f.mis[m] * ld + i] = v;
        }
      }
      return;
    }
  }
  // Longer runs: feature by feature over the rows, loops the compiler vectorises.
  for (size_t m = 0; m < f.mis.size(); ++m) {
    double* out = x + f.mis[m] * ld;
    const double mu_m = mu[f.mis[m]];
    for (Eigen::Index i = 0; i < count; ++i) out[i] = mu_m;
    if (!regress) continue;
    for (size_t o = 0; o < f.obs.size(); ++o) {
      const double* in = x + f.obs[o] * ld;
      const double coef = (*b)(static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(o));
      const double mu_o = mu[f.obs[o]];
      for (Eigen::Index i = 0; i < count; ++i) out[i] += coef * (in[i] - mu_o);
    }
  }
}

// A run of a pattern in the Schur form, at `offset` among the block's shared rows.
// For the rare patterns of diag and spherical covariance, whose missing coordinates neither
// depend on the observed ones nor need a factorisation, `factors` is null: x_hat_m = mu_m, C =
// diag(sigma^2_m), and the constant is |m|/2 ln 2 pi + sum_m ln sigma_m (the missing features are
// in `missing`).
struct SharedRun {
  const PatternRun* run;
  std::shared_ptr<const PatternFactors> factors;
  Eigen::Index offset;
  size_t missing_begin = 0, missing_end = 0;  // into the block's list of missing features
};

}  // namespace

namespace {

// What EvaluateRuns computes: the mixture's E-step (responsibilities, log-likelihoods and, with
// statistics, their accumulation), the per-component log-joint a_ij only, or the accumulation of
// statistics with responsibilities given by the caller.
enum class RunsMode { kMixture, kLogJoint, kGivenResponsibilities };

// MissingRuns, MissingLogJoint and MissingAccumulate (see missing.h). In kLogJoint mode `resp`
// receives a_ij; in kGivenResponsibilities mode `given` holds the responsibilities and
// `row_ll` is not touched.
absl::Status EvaluateRuns(RunsMode mode, const GmmParams& params, const Components& complete,
                          const Eigen::Ref<const RowMatrix>& x, const Eigen::Index* order,
                          absl::Span<const PatternRun> runs, const double* w,
                          const Eigen::MatrixXd& shift, PatternCache* cache,
                          const Eigen::MatrixXd* given, Eigen::MatrixXd* resp,
                          Eigen::VectorXd* row_ll, GmmStats* stats, MissingScratch* scratch) {
  const int d = params.dim();
  const int k = params.k();
  const CovarianceType type = params.covariance_type;
  if (stats != nullptr && stats->sxx.size() != 0) {
    // The completed rows differ by component: a pooled second moment cannot hold them.
    return absl::InternalError("missing values need a scatter per component for tied covariance");
  }
  const Eigen::Index positions = runs.empty() ? 0 : runs.back().end;
  const bool given_resp = mode == RunsMode::kGivenResponsibilities;
  const bool log_joint = mode == RunsMode::kLogJoint;
  if (resp != nullptr) resp->resize(positions, k);
  if (mode == RunsMode::kMixture) row_ll->resize(positions);
  std::vector<int> all(d);
  std::iota(all.begin(), all.end(), 0);
  KernelScratch& observed = scratch->observed;
  Eigen::MatrixXd& r = scratch->resp;
  Eigen::VectorXd& ll = scratch->row_ll;
  Eigen::VectorXd& wv = scratch->w;
  Eigen::VectorXd& wr = scratch->wr;
  const bool diagonal = type == CovarianceType::kDiag || type == CovarianceType::kSpherical;
  std::vector<SharedRun> shared;  // runs of rare patterns, done together below
  std::vector<int>& missing = scratch->missing;
  missing.clear();
  Eigen::Index shared_rows = 0;
  for (const PatternRun& run : runs) {
    const Eigen::Index m = run.end - run.begin;
    const Eigen::Index* rows = order == nullptr ? nullptr : order + run.begin;
    auto row_of = [&](Eigen::Index i) { return rows == nullptr ? run.begin + i : rows[i]; };
    std::shared_ptr<const PatternFactors> factors;
    if (run.pattern != nullptr && diagonal && run.rare) {
      SharedRun s{&run, nullptr, shared_rows, missing.size(), 0};
      for (int f = 0; f < d; ++f) {
        if ((*run.pattern)[f] == 0) missing.push_back(f);
      }
      s.missing_end = missing.size();
      shared.push_back(std::move(s));
      shared_rows += m;
      continue;
    }
    if (run.pattern != nullptr) {
      EMFIT_ASSIGN_OR_RETURN(factors, cache->Get(*run.pattern, run.rare));
      if (factors->schur) {
        shared.push_back({&run, std::move(factors), shared_rows, 0, 0});
        shared_rows += m;
        continue;
      }
    }
    const std::vector<int>& obs = factors == nullptr ? all : factors->obs;

    // E-step on the observed coordinates, a tile of rows at a time.
    GatherFeatureMajor(x, rows, run.begin, m, obs, &observed);
    if (given_resp) {
      r = given->middleRows(run.begin, m);
    } else if (obs.empty()) {
      // No observed coordinate: the marginal density is 1, so a_ik = ln pi_k.
      r = factors->sub.log_weights.transpose().replicate(m, 1);
      if (!log_joint) NormalizeRows(&r, &ll);
    } else {
      EStepTiled(factors == nullptr ? complete : factors->sub, &observed, &r,
                 log_joint ? nullptr : &ll);
    }
    if (!given_resp) {
      if (!log_joint) row_ll->segment(run.begin, m) = ll;
      if (resp != nullptr) resp->middleRows(run.begin, m) = r;
    }
    if (stats == nullptr) continue;

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
      Complete(params, complete, *factors, c, observed, rows_hat);
      AccumulateComponentTiled(c, wr.data(), shift, rows_hat, stats);
      AddConditionalCovariance(*factors, type, c, wr.sum(), stats);
    }
  }
  if (shared.empty()) return absl::OkStatus();

  // The runs of rare patterns share tiles: all their rows gathered with every feature, completed
  // per component run by run, then the complete-data kernels over all of them at once, plus
  // each run's constant (FactorPatternSchur; diag and spherical from the pattern itself),
  // instead of a mostly empty tile per run.
  std::vector<Eigen::Index>& rows = scratch->rows;
  rows.clear();
  for (const SharedRun& s : shared) {
    for (Eigen::Index p = s.run->begin; p < s.run->end; ++p) {
      rows.push_back(order == nullptr ? p : order[p]);
    }
  }
  KernelScratch& hat = scratch->completed;
  GatherFeatureMajor(x, rows.data(), 0, shared_rows, all, &hat);
  // sigma^2 of component c, feature f (diag and spherical).
  auto variance = [&](int c, int f) {
    return params.covariances(c, type == CovarianceType::kDiag ? f : 0);
  };
  auto complete_all = [&](int c) {
    const double* mu = complete.means.data() + static_cast<Eigen::Index>(c) * d;
    for (const SharedRun& s : shared) {
      const Eigen::Index count = s.run->end - s.run->begin;
      if (s.factors != nullptr) {
        CompleteRange(params, complete, *s.factors, c, s.offset, count, &hat);
        continue;
      }
      for (size_t q = s.missing_begin; q < s.missing_end; ++q) {
        const int f = missing[q];
        hat.xt.col(f).segment(s.offset, count).setConstant(mu[f]);
      }
    }
  };
  Eigen::MatrixXd& log_var = scratch->log_var;  // ln sigma^2, k x d (diag and spherical)
  if (diagonal) {
    log_var.resize(k, d);
    for (int c = 0; c < k; ++c) {
      for (int f = 0; f < d; ++f) log_var(c, f) = std::log(variance(c, f));
    }
  }
  r.resize(shared_rows, k);
  if (given_resp) {
    for (const SharedRun& s : shared) {
      const Eigen::Index m = s.run->end - s.run->begin;
      r.middleRows(s.offset, m) = given->middleRows(s.run->begin, m);
    }
  } else {
    for (int c = 0; c < k; ++c) {
      complete_all(c);
      ComponentLogJointTiled(complete, c, 0.0, &hat, r.col(c).data());
      for (const SharedRun& s : shared) {
        double constant = 0;
        if (s.factors != nullptr) {
          constant = s.factors->schur_offset[c];
        } else {
          constant = 0.5 * static_cast<double>(s.missing_end - s.missing_begin) * kLog2Pi;
          for (size_t q = s.missing_begin; q < s.missing_end; ++q) {
            constant += 0.5 * log_var(c, missing[q]);
          }
        }
        r.col(c).segment(s.offset, s.run->end - s.run->begin).array() += constant;
      }
    }
    if (!log_joint) NormalizeRows(&r, &ll);
    for (const SharedRun& s : shared) {
      const Eigen::Index m = s.run->end - s.run->begin;
      if (!log_joint) row_ll->segment(s.run->begin, m) = ll.segment(s.offset, m);
      if (resp != nullptr) resp->middleRows(s.run->begin, m) = r.middleRows(s.offset, m);
    }
  }
  if (stats == nullptr) return absl::OkStatus();
  if (w != nullptr) {
    wv.resize(shared_rows);
    for (Eigen::Index i = 0; i < shared_rows; ++i) wv[i] = w[rows[static_cast<size_t>(i)]];
    stats->total_weight += wv.sum();
  } else {
    stats->total_weight += static_cast<double>(shared_rows);
  }
  for (int c = 0; c < k; ++c) {
    if (w != nullptr) {
      wr = r.col(c).cwiseProduct(wv);
    } else {
      wr = r.col(c);
    }
    complete_all(c);
    AccumulateComponentTiled(c, wr.data(), shift, &hat, stats);
    for (const SharedRun& s : shared) {
      const double mass = wr.segment(s.offset, s.run->end - s.run->begin).sum();
      if (s.factors != nullptr) {
        AddConditionalCovariance(*s.factors, type, c, mass, stats);
        continue;
      }
      for (size_t q = s.missing_begin; q < s.missing_end; ++q) {
        stats->sdd_diag(c, missing[q]) += mass * variance(c, missing[q]);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MissingRuns(const GmmParams& params, const Components& complete,
                         const Eigen::Ref<const RowMatrix>& x, const Eigen::Index* order,
                         absl::Span<const PatternRun> runs, const double* w,
                         const Eigen::MatrixXd& shift, PatternCache* cache, Eigen::MatrixXd* resp,
                         Eigen::VectorXd* row_ll, GmmStats* stats, MissingScratch* scratch) {
  return EvaluateRuns(RunsMode::kMixture, params, complete, x, order, runs, w, shift, cache,
                      nullptr, resp, row_ll, stats, scratch);
}

absl::Status MissingLogJoint(const GmmParams& params, const Components& complete,
                             const Eigen::Ref<const RowMatrix>& x, const Eigen::Index* order,
                             absl::Span<const PatternRun> runs, PatternCache* cache,
                             Eigen::MatrixXd* log_joint, MissingScratch* scratch) {
  return EvaluateRuns(RunsMode::kLogJoint, params, complete, x, order, runs, nullptr,
                      complete.means, cache, nullptr, log_joint, nullptr, nullptr, scratch);
}

absl::Status MissingAccumulate(const GmmParams& params, const Components& complete,
                               const Eigen::Ref<const RowMatrix>& x, const Eigen::Index* order,
                               absl::Span<const PatternRun> runs, const double* w,
                               const Eigen::MatrixXd& resp, const Eigen::MatrixXd& shift,
                               PatternCache* cache, GmmStats* stats, MissingScratch* scratch) {
  return EvaluateRuns(RunsMode::kGivenResponsibilities, params, complete, x, order, runs, w, shift,
                      cache, &resp, nullptr, nullptr, stats, scratch);
}

}  // namespace emfit::gmm::internal
