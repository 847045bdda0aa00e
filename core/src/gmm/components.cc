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
      c.prec_chol_all.resize(d, static_cast<Eigen::Index>(c.k) * d);
      c.centers_all.resize(static_cast<Eigen::Index>(c.k) * d);
      for (int j = 0; j < c.k; ++j) {
        if (!PrecisionCholesky(params.covariances.middleRows(j * d, d), &c.prec_chol[j],
                               &c.log_det_half[j])) {
          return NotPositiveDefinite(what, j);
        }
        c.prec_chol_all.middleCols(static_cast<Eigen::Index>(j) * d, d) = c.prec_chol[j];
        c.centers_all.segment(static_cast<Eigen::Index>(j) * d, d) =
            c.means.row(j) * c.prec_chol[j];
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
      c.prec = var.cwiseInverse();
      const Eigen::MatrixXd p_full =
          c.type == CovarianceType::kSpherical ? Eigen::MatrixXd(c.prec.replicate(1, d)) : c.prec;
      c.mean_prec = c.means.cwiseProduct(p_full);
      c.mean_sq_prec = c.means.cwiseProduct(c.mean_prec).rowwise().sum();
      // The expanded square loses ~eps * (x^2 / sigma^2); use it only when no variance is
      // tiny against the mixture's spread (algorithms.md §1.1, mitigation 3).
      const double spread = (var.maxCoeff() + c.means.cwiseAbs2().maxCoeff());
      c.expanded = var.minCoeff() >= 1e-8 * spread;
      break;
    }
  }
  return c;
}

void LogJoint(const Components& c, const Eigen::Ref<const RowMatrix>& block, Eigen::MatrixXd* out,
              RowMatrix* scratch) {
  const Eigen::Index n = block.rows();
  const Eigen::Index d = c.d;
  out->resize(n, c.k);
  RowMatrix& y = *scratch;
  switch (c.type) {
    case CovarianceType::kFull: {
      // (x - mu_j) U_j = x U_j - mu_j U_j for a group of components at once (data are centred
      // by the fit); groups keep the product at most ~512 columns wide.
      const int group = std::max<int>(1, static_cast<int>(512 / std::max<Eigen::Index>(1, d)));
      for (int j0 = 0; j0 < c.k; j0 += group) {
        const int g = std::min(group, c.k - j0);
        const Eigen::Index cols = static_cast<Eigen::Index>(g) * d;
        const Eigen::Index first = static_cast<Eigen::Index>(j0) * d;
        y.resize(n, cols);
        y.noalias() = block * c.prec_chol_all.middleCols(first, cols);
        y.rowwise() -= c.centers_all.segment(first, cols);
        for (int j = 0; j < g; ++j) {
          out->col(j0 + j) =
              y.middleCols(static_cast<Eigen::Index>(j) * d, d).rowwise().squaredNorm();
        }
      }
      break;
    }
    case CovarianceType::kTied: {
      y.resize(n, d);
      y.noalias() = block * c.prec_chol[0].triangularView<Eigen::Upper>();
      const Eigen::MatrixXd centers = c.means * c.prec_chol[0].triangularView<Eigen::Upper>();
      for (int j = 0; j < c.k; ++j) {
        out->col(j) = (y.rowwise() - centers.row(j)).rowwise().squaredNorm();
      }
      break;
    }
    case CovarianceType::kDiag:
    case CovarianceType::kSpherical:
      if (c.expanded) {
        // m_ij = x^2 . P_j - 2 x . (mu_j o P_j) + mu_j^2 . P_j, as two products.
        y = block.array().square();
        if (c.type == CovarianceType::kDiag) {
          out->noalias() = y * c.prec.transpose();
        } else {
          out->noalias() = y.rowwise().sum() * c.prec.transpose();
        }
        out->noalias() -= 2.0 * block * c.mean_prec.transpose();
        out->rowwise() += c.mean_sq_prec.transpose();
        *out = out->cwiseMax(0.0);
      } else {
        for (int j = 0; j < c.k; ++j) {
          const Eigen::RowVectorXd inv_sd = c.type == CovarianceType::kDiag
                                                ? Eigen::RowVectorXd(c.inv_sd.row(j))
                                                : Eigen::RowVectorXd::Constant(d, c.inv_sd(j, 0));
          out->col(j) = ((block.rowwise() - c.means.row(j)).array().rowwise() * inv_sd.array())
                            .matrix()
                            .rowwise()
                            .squaredNorm();
        }
      }
      break;
  }
  const Eigen::RowVectorXd offset =
      (c.log_weights.array() + c.log_det_half.array() - 0.5 * c.d * kLog2Pi).transpose();
  out->array() = (-0.5 * out->array()).rowwise() + offset.array();
}

void NormalizeRows(Eigen::MatrixXd* a, Eigen::VectorXd* row_ll) {
  const Eigen::VectorXd row_max = a->rowwise().maxCoeff();
  if (!row_max.allFinite()) {
    // Rare: a row impossible under every component (or invalid); handle row by row.
    row_ll->resize(a->rows());
    for (Eigen::Index i = 0; i < a->rows(); ++i) {
      const double m = row_max[i];
      if (!std::isfinite(m)) {
        (*row_ll)[i] = m;
        continue;
      }
      a->row(i).array() = (a->row(i).array() - m).exp();
      const double s = a->row(i).sum();
      a->row(i) /= s;
      (*row_ll)[i] = m + std::log(s);
    }
    return;
  }
  // Column-wise over the whole block, so that exp and the divisions vectorise.
  a->colwise() -= row_max;
  a->array() = a->array().exp();
  const Eigen::VectorXd sums = a->rowwise().sum();
  a->array().colwise() /= sums.array();
  *row_ll = row_max.array() + sums.array().log();
}

}  // namespace emfit::gmm::internal
