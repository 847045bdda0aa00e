#include "gmm/components.h"

#include <Eigen/Cholesky>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"
#include "math/constants.h"

namespace emfit::gmm::internal {
namespace {

using ::emfit::internal::kLog2Pi;

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
      c.aux = var.array().rsqrt();
      if (c.type == CovarianceType::kSpherical) c.aux = c.aux.replicate(1, d).eval();
      const double scale = c.type == CovarianceType::kSpherical ? d : 1.0;
      c.log_det_half = -0.5 * scale * var.array().log().rowwise().sum();
      break;
    }
  }
  c.offset = c.log_weights + c.log_det_half - Eigen::VectorXd::Constant(c.k, 0.5 * d * kLog2Pi);
  if (c.type == CovarianceType::kTied) {
    c.aux = c.means * c.prec_chol[0].triangularView<Eigen::Upper>();
  }
  return c;
}

namespace {

// Entries of the log-Cholesky coordinates of a d x d SPD matrix.
int64_t LogCholeskySize(int d) { return static_cast<int64_t>(d) * (d + 1) / 2; }

void PackLogCholesky(const Eigen::MatrixXd& cov, double* out) {
  const Eigen::MatrixXd l = Eigen::LLT<Eigen::MatrixXd>(cov).matrixL();
  for (Eigen::Index i = 0; i < l.rows(); ++i) {
    for (Eigen::Index j = 0; j < i; ++j) *out++ = l(i, j);
    *out++ = std::log(l(i, i));
  }
}

Eigen::MatrixXd UnpackLogCholesky(const double* in, int d) {
  Eigen::MatrixXd l = Eigen::MatrixXd::Zero(d, d);
  for (int i = 0; i < d; ++i) {
    for (int j = 0; j < i; ++j) l(i, j) = *in++;
    l(i, i) = std::exp(*in++);
  }
  return l * l.transpose();
}

}  // namespace

int64_t CovariancePackSize(CovarianceType type, int k, int d) {
  switch (type) {
    case CovarianceType::kFull:
      return k * LogCholeskySize(d);
    case CovarianceType::kTied:
      return LogCholeskySize(d);
    case CovarianceType::kDiag:
      return static_cast<int64_t>(k) * d;
    case CovarianceType::kSpherical:
      return k;
  }
  return 0;
}

void PackCovariances(CovarianceType type, const Eigen::MatrixXd& covariances, int d, double* out) {
  switch (type) {
    case CovarianceType::kFull:
      for (Eigen::Index j = 0; j * d < covariances.rows(); ++j) {
        PackLogCholesky(covariances.middleRows(j * d, d), out);
        out += LogCholeskySize(d);
      }
      break;
    case CovarianceType::kTied:
      PackLogCholesky(covariances, out);
      break;
    case CovarianceType::kDiag:
    case CovarianceType::kSpherical:
      for (Eigen::Index j = 0; j < covariances.rows(); ++j) {
        for (Eigen::Index c = 0; c < covariances.cols(); ++c) {
          *out++ = std::log(covariances(j, c));
        }
      }
      break;
  }
}

Eigen::MatrixXd UnpackCovariances(CovarianceType type, const double* in, int k, int d) {
  Eigen::MatrixXd covariances;
  switch (type) {
    case CovarianceType::kFull:
      covariances.resize(static_cast<Eigen::Index>(k) * d, d);
      for (int j = 0; j < k; ++j) {
        covariances.middleRows(static_cast<Eigen::Index>(j) * d, d) = UnpackLogCholesky(in, d);
        in += LogCholeskySize(d);
      }
      break;
    case CovarianceType::kTied:
      covariances = UnpackLogCholesky(in, d);
      break;
    case CovarianceType::kDiag:
    case CovarianceType::kSpherical: {
      const int cols = type == CovarianceType::kDiag ? d : 1;
      covariances.resize(k, cols);
      for (int j = 0; j < k; ++j) {
        for (int c = 0; c < cols; ++c) covariances(j, c) = std::exp(*in++);
      }
      break;
    }
  }
  return covariances;
}

absl::Status CheckRowLogLikelihood(double log_likelihood, Eigen::Index row) {
  if (std::isfinite(log_likelihood)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "data: row %d is so far from every component of the model that its density is not "
      "representable (log-likelihood %g); check that the data and the model use the same "
      "columns and units",
      row + 1, log_likelihood));
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
