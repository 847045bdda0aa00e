// Expected sufficient statistics of a Gaussian mixture and the M-step (algorithms.md §1.2).
#ifndef EMFIT_CORE_GMM_STATS_H_
#define EMFIT_CORE_GMM_STATS_H_

#include <Eigen/Core>
#include <vector>

#include "absl/status/status.h"
#include "emfit/data/dataset.h"
#include "emfit/gmm/gmm.h"

namespace emfit::gmm::internal {

// Weighted responsibility sums, accumulated block by block, never holding an N x k matrix.
// Moments are taken about per-component shifts m_k (the means of the E-step's parameters), so
// that S_k = sdd_k / N_k - delta_k delta_k^T / N_k^2 does not cancel catastrophically.
struct GmmStats {
  Eigen::VectorXd nk;                // k: sum_i w_i r_ik
  Eigen::MatrixXd delta;             // k x d: sum_i w_i r_ik (x_i - m_k)
  std::vector<Eigen::MatrixXd> sdd;  // full: k lower-triangular d x d, sum w r (x-m)(x-m)^T
  Eigen::MatrixXd sxx;               // tied: d x d lower, sum_i w_i x_i x_i^T
  Eigen::MatrixXd sdd_diag;          // diag, spherical: k x d, sum w r (x-m)^2
  double log_likelihood = 0.0;       // sum_i w_i ln p(x_i)
  double total_weight = 0.0;         // sum_i w_i

  void Reset(CovarianceType type, int k, int d);
  void Add(const GmmStats& other);
};

// Adds a block's contribution. `resp` is rows x k (responsibilities), `w` the row weights
// (empty: 1), `shift` the k x d matrix m. `scratch` is reused between calls.
void AccumulateBlock(CovarianceType type, const Eigen::Ref<const RowMatrix>& block,
                     const Eigen::Ref<const Eigen::VectorXd>& w, const Eigen::MatrixXd& resp,
                     const Eigen::MatrixXd& shift, GmmStats* stats, RowMatrix* scratch);

// The M-step: new parameters from statistics about `shift`. FAILED_PRECONDITION if a
// covariance is not positive definite after reg_covar (checked by the caller's factorisation).
void MStep(CovarianceType type, double reg_covar, const GmmStats& stats,
           const Eigen::MatrixXd& shift, GmmParams* params);

}  // namespace emfit::gmm::internal

#endif  // EMFIT_CORE_GMM_STATS_H_
