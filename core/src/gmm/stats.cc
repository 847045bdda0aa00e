#include "gmm/stats.h"

#include <limits>

namespace emfit::gmm::internal {

void GmmStats::Reset(CovarianceType type, int k, int d, bool per_component_scatter) {
  nk.setZero(k);
  delta.setZero(k, d);
  log_likelihood = 0.0;
  total_weight = 0.0;
  sdd.clear();
  sxx.resize(0, 0);
  sdd_diag.resize(0, 0);
  switch (type) {
    case CovarianceType::kTied:
      if (!per_component_scatter) {
        sxx.setZero(d, d);
        break;
      }
      [[fallthrough]];
    case CovarianceType::kFull:
      sdd.resize(k);
      for (auto& s : sdd) s.setZero(d, d);
      break;
    case CovarianceType::kDiag:
    case CovarianceType::kSpherical:
      sdd_diag.setZero(k, d);
      break;
  }
}

void GmmStats::Add(const GmmStats& o) {
  nk += o.nk;
  delta += o.delta;
  for (size_t j = 0; j < sdd.size(); ++j) sdd[j] += o.sdd[j];
  if (sxx.size() != 0) sxx += o.sxx;
  if (sdd_diag.size() != 0) sdd_diag += o.sdd_diag;
  log_likelihood += o.log_likelihood;
  total_weight += o.total_weight;
}

Eigen::MatrixXd ComponentScatter(const GmmStats& s, int j, const Eigen::RowVectorXd& e, double n) {
  // sum w r (x - m - e)(x - m - e)^T = sdd - e delta^T - delta e^T + N e e^T.
  Eigen::MatrixXd c = s.sdd[j].selfadjointView<Eigen::Lower>();
  const Eigen::RowVectorXd dj = s.delta.row(j);
  c.noalias() -= e.transpose() * dj + dj.transpose() * e;
  c.noalias() += n * e.transpose() * e;
  return c;
}

Eigen::MatrixXd PooledScatter(const GmmStats& s, const Eigen::MatrixXd& e,
                              const Eigen::MatrixXd& shift, const Eigen::VectorXd& n) {
  const int d = static_cast<int>(shift.cols());
  Eigen::MatrixXd cov = Eigen::MatrixXd::Zero(d, d);
  if (!s.sdd.empty()) {
    for (Eigen::Index j = 0; j < e.rows(); ++j) {
      cov += ComponentScatter(s, static_cast<int>(j), e.row(j), n[j]);
    }
    return cov;
  }
  const Eigen::MatrixXd means = shift + e;
  // Complete data, centred by the caller: sum_i w x x^T - sum_k (mu s^T + s mu^T - N mu mu^T)
  // with s_k = sum_i w r x = delta_k + N_k m_k (algorithms.md §1.2, tied).
  cov = s.sxx.selfadjointView<Eigen::Lower>();
  const Eigen::MatrixXd sums = s.delta + (shift.array().colwise() * n.array()).matrix();
  cov.noalias() -= means.transpose() * sums + sums.transpose() * means;
  cov.noalias() += means.transpose() * n.asDiagonal() * means;
  return cov;
}

Eigen::MatrixXd DiagScatter(const GmmStats& s, const Eigen::MatrixXd& e, const Eigen::VectorXd& n) {
  return s.sdd_diag - 2.0 * e.cwiseProduct(s.delta) +
         (e.array().square().colwise() * n.array()).matrix();
}

void MStep(CovarianceType type, double reg_covar, const FixedParams& fixed, const GmmStats& s,
           const Eigen::MatrixXd& shift, const GmmParams& previous, GmmParams* p) {
  const int k = static_cast<int>(s.nk.size());
  const int d = static_cast<int>(shift.cols());
  // The floor keeps empty components finite, as scikit-learn does (algorithms.md §1.2).
  const Eigen::VectorXd nk = s.nk.array() + 10 * std::numeric_limits<double>::epsilon();
  p->covariance_type = type;
  p->weights = fixed.weights ? previous.weights : Eigen::VectorXd(nk / nk.sum());
  // e_k = mu_k - m_k; the scatter about mu_k is sdd - e delta^T - delta e^T + N e e^T, which
  // for the free mean (e = delta / N) is sdd - delta delta^T / N.
  const Eigen::MatrixXd e = fixed.means ? Eigen::MatrixXd(previous.means - shift)
                                        : Eigen::MatrixXd(s.delta.array().colwise() / nk.array());
  p->means = shift + e;
  if (fixed.covariances) {
    p->covariances = previous.covariances;
    return;
  }
  switch (type) {
    case CovarianceType::kFull:
      p->covariances.resize(static_cast<Eigen::Index>(k) * d, d);
      for (int j = 0; j < k; ++j) {
        Eigen::MatrixXd cov = ComponentScatter(s, j, e.row(j), nk[j]) / nk[j];
        cov.diagonal().array() += reg_covar;
        p->covariances.middleRows(static_cast<Eigen::Index>(j) * d, d) = cov;
      }
      break;
    case CovarianceType::kTied: {
      Eigen::MatrixXd cov = PooledScatter(s, e, shift, nk);
      cov /= nk.sum();
      cov.diagonal().array() += reg_covar;
      p->covariances = cov;
      break;
    }
    case CovarianceType::kDiag:
    case CovarianceType::kSpherical: {
      Eigen::MatrixXd var = DiagScatter(s, e, nk);
      var = (var.array().colwise() / nk.array()).max(0.0) + reg_covar;
      if (type == CovarianceType::kDiag) {
        p->covariances = var;
      } else {
        p->covariances = var.rowwise().mean();
      }
      break;
    }
  }
}

double ExpectedLogJoint(const GmmStats& s, const Eigen::MatrixXd& shift, const Components& c) {
  // Q = sum_j N_j (ln pi_j - ln|Sigma_j| / 2 - d/2 ln 2 pi) - 1/2 sum_j tr(Sigma_j^-1 M_j), with
  // M_j the expected scatter of the (completed) rows about mu_j: moments about the E-step's
  // means, plus the conditional covariances of missing coordinates (algorithms.md §1.3, §2).
  const Eigen::MatrixXd e = c.means - shift;
  double q = 0;
  for (int j = 0; j < c.k; ++j) {
    if (s.nk[j] > 0) q += s.nk[j] * c.offset[j];  // 0 ln 0 = 0 for an empty component
  }
  // tr(Sigma^-1 M) = tr(U^T M U) with Sigma^-1 = U U^T.
  auto trace = [](const Eigen::MatrixXd& m, const Eigen::MatrixXd& u) {
    return (u.transpose() * m * u).trace();
  };
  switch (c.type) {
    case CovarianceType::kFull:
      for (int j = 0; j < c.k; ++j) {
        q -= 0.5 * trace(ComponentScatter(s, j, e.row(j), s.nk[j]), c.prec_chol[j]);
      }
      break;
    case CovarianceType::kTied:
      q -= 0.5 * trace(PooledScatter(s, e, shift, s.nk), c.prec_chol[0]);
      break;
    case CovarianceType::kDiag:
    case CovarianceType::kSpherical:
      q -= 0.5 * (DiagScatter(s, e, s.nk).array() * c.aux.array().square()).sum();
      break;
  }
  return q;
}

}  // namespace emfit::gmm::internal
