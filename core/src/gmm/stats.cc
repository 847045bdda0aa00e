#include "gmm/stats.h"

#include <limits>

namespace emfit::gmm::internal {

void GmmStats::Reset(CovarianceType type, int k, int d) {
  nk.setZero(k);
  delta.setZero(k, d);
  log_likelihood = 0.0;
  total_weight = 0.0;
  switch (type) {
    case CovarianceType::kFull:
      sdd.resize(k);
      for (auto& s : sdd) s.setZero(d, d);
      break;
    case CovarianceType::kTied:
      sxx.setZero(d, d);
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

void AccumulateBlock(CovarianceType type, const Eigen::Ref<const RowMatrix>& block,
                     const Eigen::Ref<const Eigen::VectorXd>& w, const Eigen::MatrixXd& resp,
                     const Eigen::MatrixXd& shift, GmmStats* s, RowMatrix* scratch) {
  const int k = static_cast<int>(resp.cols());
  const bool weighted = w.size() != 0;
  s->total_weight += weighted ? w.sum() : static_cast<double>(block.rows());
  Eigen::VectorXd wr;
  RowMatrix& diff = *scratch;
  if (type == CovarianceType::kTied) {
    if (weighted) {
      diff = block.array().colwise() * w.array().sqrt();
      s->sxx.selfadjointView<Eigen::Lower>().rankUpdate(diff.transpose());
    } else {
      s->sxx.selfadjointView<Eigen::Lower>().rankUpdate(block.transpose());
    }
  }
  for (int j = 0; j < k; ++j) {
    wr = weighted ? Eigen::VectorXd(resp.col(j).cwiseProduct(w)) : Eigen::VectorXd(resp.col(j));
    s->nk[j] += wr.sum();
    diff = block.rowwise() - shift.row(j);
    s->delta.row(j) += wr.transpose() * diff;
    switch (type) {
      case CovarianceType::kFull:
        diff.array().colwise() *= wr.array().sqrt();
        s->sdd[j].selfadjointView<Eigen::Lower>().rankUpdate(diff.transpose());
        break;
      case CovarianceType::kDiag:
      case CovarianceType::kSpherical:
        s->sdd_diag.row(j) += wr.transpose() * diff.array().square().matrix();
        break;
      case CovarianceType::kTied:
        break;
    }
  }
}

void MStep(CovarianceType type, double reg_covar, const GmmStats& s, const Eigen::MatrixXd& shift,
           GmmParams* p) {
  const int k = static_cast<int>(s.nk.size());
  const int d = static_cast<int>(shift.cols());
  // The floor keeps empty components finite, as scikit-learn does (algorithms.md §1.2).
  const Eigen::VectorXd nk = s.nk.array() + 10 * std::numeric_limits<double>::epsilon();
  const Eigen::MatrixXd dbar = s.delta.array().colwise() / nk.array();  // mu_k - m_k
  p->covariance_type = type;
  p->weights = nk / nk.sum();
  p->means = shift + dbar;
  switch (type) {
    case CovarianceType::kFull:
      p->covariances.resize(static_cast<Eigen::Index>(k) * d, d);
      for (int j = 0; j < k; ++j) {
        Eigen::MatrixXd cov = s.sdd[j].selfadjointView<Eigen::Lower>();
        cov /= nk[j];
        cov.noalias() -= dbar.row(j).transpose() * dbar.row(j);
        cov.diagonal().array() += reg_covar;
        p->covariances.middleRows(static_cast<Eigen::Index>(j) * d, d) = cov;
      }
      break;
    case CovarianceType::kTied: {
      // Data are centred by the caller, so sum_i w x x^T - sum_k N_k mu_k mu_k^T is well
      // conditioned (algorithms.md §1.2, tied).
      Eigen::MatrixXd cov = s.sxx.selfadjointView<Eigen::Lower>();
      cov.noalias() -= p->means.transpose() * nk.asDiagonal() * p->means;
      cov /= nk.sum();
      cov.diagonal().array() += reg_covar;
      p->covariances = cov;
      break;
    }
    case CovarianceType::kDiag:
    case CovarianceType::kSpherical: {
      Eigen::MatrixXd var = (s.sdd_diag.array().colwise() / nk.array()) - dbar.array().square();
      var = var.array().max(0.0) + reg_covar;
      if (type == CovarianceType::kDiag) {
        p->covariances = var;
      } else {
        p->covariances = var.rowwise().mean();
      }
      break;
    }
  }
}

}  // namespace emfit::gmm::internal
