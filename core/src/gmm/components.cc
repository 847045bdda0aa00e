#include "gmm/components.h"

#include <Eigen/Cholesky>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"

namespace emfit::gmm::internal {
namespace {

constexpr double kLog2Pi = 1.8378770664093454835606594728112;

// Precision Cholesky factor of `cov`: Sigma = L L^T, U = L^{-T}.
bool PrecisionCholesky(const Eigen::MatrixXd& cov, Eigen::MatrixXd* u, double* log_det_half) {
  Eigen::LLT<Eigen::MatrixXd> llt(cov);
  if (llt.info() != Eigen::Success) return false;
  const Eigen::MatrixXd l = llt.matrixL();
  const Eigen::VectorXd diag = l.diagonal();
  if (!(diag.array() > 0).all() || !diag.allFinite()) return false;
  Eigen::MatrixXd l_inv = Eigen::MatrixXd::Identity(cov.rows(), cov.cols());
  l.triangularView<Eigen::Lower>().solveInPlace(l_inv);
  *u = l_inv.transpose();
  *log_det_half = -diag.array().log().sum();
  return std::isfinite(*log_det_half) && u->allFinite();
}

absl::Status NotPositiveDefinite(absl::string_view what, int component) {
  return absl::FailedPreconditionError(absl::StrFormat(
      "%s: the covariance of component %d is not positive definite; increase reg_covar or "
      "reduce k",
      what, component));
}

}  // namespace

absl::StatusOr<Components> Factorize(const GmmParams& params, absl::string_view what) {
  Components c;
  c.type = params.covariance_type;
  c.k = params.k();
  c.d = params.dim();
  c.log_weights = params.weights.array().log();
  c.means = params.means;
  c.log_det_half.resize(c.k);
  const int d = c.d;
  switch (c.type) {
    case CovarianceType::kFull:
      c.prec_chol.resize(c.k);
      for (int j = 0; j < c.k; ++j) {
        if (!PrecisionCholesky(params.covariances.middleRows(j * d, d), &c.prec_chol[j],
                               &c.log_det_half[j])) {
          return NotPositiveDefinite(what, j);
        }
      }
      break;
    case CovarianceType::kTied: {
      c.prec_chol.resize(1);
      double ldh = 0;
      if (!PrecisionCholesky(params.covariances, &c.prec_chol[0], &ldh)) {
        return NotPositiveDefinite(what, 0);
      }
      c.log_det_half.setConstant(ldh);
      break;
    }
    case CovarianceType::kDiag:
    case CovarianceType::kSpherical: {
      const Eigen::MatrixXd& var = params.covariances;
      for (int j = 0; j < c.k; ++j) {
        if (!((var.row(j).array() > 0).all() && var.row(j).allFinite())) {
          return NotPositiveDefinite(what, j);
        }
      }
      c.inv_sd = var.array().rsqrt();
      const double scale = c.type == CovarianceType::kSpherical ? d : 1.0;
      c.log_det_half = -0.5 * scale * var.array().log().rowwise().sum();
      break;
    }
  }
  return c;
}

void LogJoint(const Components& c, const Eigen::Ref<const RowMatrix>& block, Eigen::MatrixXd* out,
              RowMatrix* scratch) {
  const Eigen::Index n = block.rows();
  out->resize(n, c.k);
  RowMatrix& diff = *scratch;
  switch (c.type) {
    case CovarianceType::kFull:
      for (int j = 0; j < c.k; ++j) {
        diff = block.rowwise() - c.means.row(j);
        diff = diff * c.prec_chol[j].triangularView<Eigen::Upper>();
        out->col(j) = diff.rowwise().squaredNorm();
      }
      break;
    case CovarianceType::kTied: {
      // (x - mu_k) U = x U - mu_k U: one product for all components.
      const RowMatrix y = block * c.prec_chol[0].triangularView<Eigen::Upper>();
      const Eigen::MatrixXd centers = c.means * c.prec_chol[0].triangularView<Eigen::Upper>();
      for (int j = 0; j < c.k; ++j) {
        out->col(j) = (y.rowwise() - centers.row(j)).rowwise().squaredNorm();
      }
      break;
    }
    case CovarianceType::kDiag:
      for (int j = 0; j < c.k; ++j) {
        out->col(j) =
            ((block.rowwise() - c.means.row(j)).array().rowwise() * c.inv_sd.row(j).array())
                .matrix()
                .rowwise()
                .squaredNorm();
      }
      break;
    case CovarianceType::kSpherical:
      for (int j = 0; j < c.k; ++j) {
        out->col(j) = (block.rowwise() - c.means.row(j)).rowwise().squaredNorm() *
                      (c.inv_sd(j, 0) * c.inv_sd(j, 0));
      }
      break;
  }
  const Eigen::RowVectorXd offset =
      (c.log_weights.array() + c.log_det_half.array() - 0.5 * c.d * kLog2Pi).transpose();
  out->array() = (-0.5 * out->array()).rowwise() + offset.array();
}

void NormalizeRows(Eigen::MatrixXd* a, Eigen::VectorXd* row_ll) {
  const Eigen::Index n = a->rows();
  row_ll->resize(n);
  const Eigen::VectorXd row_max = a->rowwise().maxCoeff();
  for (Eigen::Index i = 0; i < n; ++i) {
    const double m = row_max[i];
    if (m == -std::numeric_limits<double>::infinity() || !std::isfinite(m)) {
      (*row_ll)[i] = m;  // impossible or invalid row; propagates to the total
      continue;
    }
    a->row(i).array() = (a->row(i).array() - m).exp();
    const double s = a->row(i).sum();
    a->row(i) /= s;
    (*row_ll)[i] = m + std::log(s);
  }
}

}  // namespace emfit::gmm::internal
