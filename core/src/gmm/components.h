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
  Eigen::MatrixXd means;                   // k x d
  std::vector<Eigen::MatrixXd> prec_chol;  // full: k upper d x d; tied: 1
  Eigen::MatrixXd inv_sd;                  // diag: k x d; spherical: k x 1
  Eigen::VectorXd log_det_half;            // sum_j ln U_jj = -ln|Sigma_k| / 2
  // full: [U_1 ... U_k] (d x k*d) and [mu_1^T U_1 ... mu_k^T U_k] (1 x k*d), so that all
  // (x - mu_j) U_j of a block come from one matrix product.
  Eigen::MatrixXd prec_chol_all;
  Eigen::RowVectorXd centers_all;
  // diag / spherical: precisions P (k x d, spherical k x 1), mu o P and sum_j mu^2 P for the
  // expanded-square form, used when it cannot cancel badly (algorithms.md §1.1).
  Eigen::MatrixXd prec;
  Eigen::MatrixXd mean_prec;
  Eigen::VectorXd mean_sq_prec;
  bool expanded = false;
};

// Factorises `params`. FAILED_PRECONDITION naming the component when a covariance is not
// positive definite (`what` prefixes the message).
absl::StatusOr<Components> Factorize(const GmmParams& params, absl::string_view what);

// a_ik = ln pi_k + ln N(x_i | mu_k, Sigma_k) for a block of rows, in difference form
// ((x - mu) U), which does not cancel when ||x|| is large against the spread.
// `out` is resized to rows x k; `scratch` is reused between calls.
void LogJoint(const Components& c, const Eigen::Ref<const RowMatrix>& block, Eigen::MatrixXd* out,
              RowMatrix* scratch);

// Turns a_ik into responsibilities in place (row-wise softmax) and writes each row's
// log-likelihood LSE_k a_ik into `row_ll`.
void NormalizeRows(Eigen::MatrixXd* a, Eigen::VectorXd* row_ll);

}  // namespace emfit::gmm::internal

#endif  // EMFIT_CORE_GMM_COMPONENTS_H_
