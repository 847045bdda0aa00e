// Factorised mixture components for the E-step (docs/algorithms.md §1.1).
#ifndef EMFIT_CORE_GMM_COMPONENTS_H_
#define EMFIT_CORE_GMM_COMPONENTS_H_

#include <Eigen/Core>
#include <vector>

#include "absl/status/statusor.h"
#include "emfit/data/dataset.h"
#include "emfit/gmm/gmm.h"

namespace emfit::gmm::internal {

// The parameters in the form the E-step uses: log weights, means and the Cholesky factor of
// each precision matrix, U with Sigma^{-1} = U U^T (upper triangular), or 1/sigma for the
// diagonal types.
struct Components {
  CovarianceType type = CovarianceType::kFull;
  int k = 0;
  int d = 0;
  Eigen::VectorXd log_weights;             // k
  RowMatrix means;                         // k x d, a contiguous row per component
  std::vector<Eigen::MatrixXd> prec_chol;  // full: k upper d x d; tied: 1
  Eigen::VectorXd log_det_half;            // sum_j ln U_jj = -ln|Sigma_k| / 2
  // What the E-step's tiles read besides the means, a row of d per component: mu_j U (tied) or
  // 1/sigma (diag; spherical repeated over d); and ln pi_j + ln|U_j| - d/2 ln 2 pi.
  RowMatrix aux;
  Eigen::VectorXd offset;
};

// Factorises `params`. FAILED_PRECONDITION naming the component when a covariance is not
// positive definite (`what` prefixes the message).
absl::StatusOr<Components> Factorize(const GmmParams& params, absl::string_view what);

// Unconstrained coordinates of the covariances for SQUAREM (algorithms.md §5.1), shared by
// every family with Gaussian components: log-Cholesky factors (strictly lower entries and log
// diagonal, row by row) for full (component by component) and tied; log variances for diag and
// spherical. `covariances` in GmmParams' layout.
int64_t CovariancePackSize(CovarianceType type, int k, int d);
void PackCovariances(CovarianceType type, const Eigen::MatrixXd& covariances, int d, double* out);
Eigen::MatrixXd UnpackCovariances(CovarianceType type, const double* in, int k, int d);
// OK if a row's log-likelihood is finite. Otherwise the row (0-based `row`, named 1-based) lies
// so far from every component that its density is not representable in double precision (the
// squared Mahalanobis distance overflows): INVALID_ARGUMENT, never responsibilities of NaN.
absl::Status CheckRowLogLikelihood(double log_likelihood, Eigen::Index row);

// Turns a_ik into responsibilities in place (row-wise softmax) and writes each row's
// log-likelihood LSE_k a_ik into `row_ll`.
void NormalizeRows(Eigen::MatrixXd* a, Eigen::VectorXd* row_ll);

}  // namespace emfit::gmm::internal

#endif  // EMFIT_CORE_GMM_COMPONENTS_H_
