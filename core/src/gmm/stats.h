// Expected sufficient statistics of a Gaussian mixture and the M-step (algorithms.md §1.2, §2).
#ifndef EMFIT_CORE_GMM_STATS_H_
#define EMFIT_CORE_GMM_STATS_H_

#include <Eigen/Core>
#include <vector>

#include "emfit/data/dataset.h"
#include "emfit/gmm/gmm.h"
#include "gmm/components.h"

namespace emfit::gmm::internal {

// Weighted responsibility sums, accumulated block by block, never holding an N x k matrix.
// Moments are taken about per-component shifts m_k (the means of the E-step's parameters), so
// that the scatter about the new mean does not cancel catastrophically.
struct GmmStats {
  Eigen::VectorXd nk;                // k: sum_i w_i r_ik
  Eigen::MatrixXd delta;             // k x d: sum_i w_i r_ik (x_i - m_k)
  std::vector<Eigen::MatrixXd> sdd;  // full (and tied with missing values): k lower d x d,
                                     // sum_i w r (x-m)(x-m)^T (+ conditional covariances)
  Eigen::MatrixXd sxx;               // tied, complete data: d x d lower, sum_i w_i x_i x_i^T
  Eigen::MatrixXd sdd_diag;          // diag, spherical: k x d, sum w r (x-m)^2 (+ cond. var.)
  double log_likelihood = 0.0;       // sum_i w_i ln p(x_i)
  double total_weight = 0.0;         // sum_i w_i

  // `per_component_scatter` keeps one scatter matrix per component for tied covariance too
  // (needed when the completed rows differ by component, i.e. with missing values).
  void Reset(CovarianceType type, int k, int d, bool per_component_scatter);
  void Add(const GmmStats& other);
};

// Expected scatters about new means mu = shift + e from moments about `shift`, with component
// masses `n` (sums over rows of w r (x - mu)(x - mu)^T, completed rows plus conditional
// covariances with missing values): component j's (full, and tied with missing values); the sum
// over components (tied, either layout); per coordinate (k x d; diag and spherical).
Eigen::MatrixXd ComponentScatter(const GmmStats& s, int j, const Eigen::RowVectorXd& e, double n);
Eigen::MatrixXd PooledScatter(const GmmStats& s, const Eigen::MatrixXd& e,
                              const Eigen::MatrixXd& shift, const Eigen::VectorXd& n);
Eigen::MatrixXd DiagScatter(const GmmStats& s, const Eigen::MatrixXd& e, const Eigen::VectorXd& n);

// Which parameters the M-step keeps at their previous values (`previous`).
struct FixedParams {
  bool weights = false;
  bool means = false;
  bool covariances = false;
};

// The M-step: new parameters from statistics about `shift`. Fixed blocks are copied from
// `previous`; the free blocks are then the exact conditional maximisers (ECM, Meng & Rubin).
// Component masses are floored at 10 eps so that an empty component stays finite.
void MStep(CovarianceType type, double reg_covar, const FixedParams& fixed, const GmmStats& stats,
           const Eigen::MatrixXd& shift, const GmmParams& previous, GmmParams* params);

// sum_j sum_i w_i r_ij E[ln pi_j + ln N(x_i | mu_j, Sigma_j)] for the posterior whose
// statistics about `shift` are `stats` (completed rows and conditional covariances with missing
// values), at the parameters factorised in `c`: sum_j N_j offset_j - 1/2 tr(Sigma_j^-1 M_j), with
// M_j the expected scatter about mu_j. With weights 1 (c.log_weights = 0) it is the expected
// log-density alone, as a hidden Markov model's Gaussian emissions need.
double ExpectedLogJoint(const GmmStats& stats, const Eigen::MatrixXd& shift, const Components& c);

}  // namespace emfit::gmm::internal

#endif  // EMFIT_CORE_GMM_STATS_H_
