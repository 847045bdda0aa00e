// Gaussian mixture models fitted by EM (docs/algorithms.md §1).
#ifndef EMFIT_CORE_GMM_GMM_H_
#define EMFIT_CORE_GMM_GMM_H_

#include <Eigen/Core>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "emfit/data/dataset.h"
#include "emfit/em/observer.h"
#include "emfit/em/options.h"
#include "emfit/em/summary.h"

namespace emfit {
class ThreadPool;
}

namespace emfit::gmm {

// Covariance structure of the components (scikit-learn's covariance_type).
enum class CovarianceType { kFull, kDiag, kTied, kSpherical };

// "full", "diag", "tied", "spherical".
const char* CovarianceTypeName(CovarianceType type);
absl::StatusOr<CovarianceType> ParseCovarianceType(absl::string_view name);

// How each restart chooses its starting parameters (docs/algorithms.md §1.4).
enum class InitMethod {
  kKMeans,          // k-means++ seeding, Lloyd iterations (<= 300), one-hot M-step
  kKMeansPlusPlus,  // k-means++ seeding, nearest-seed assignment, one-hot M-step
  kRandomFromData,  // k distinct random rows as means, pooled covariance, equal weights
  kRandom,          // random responsibilities (normalised uniforms), M-step
};

const char* InitMethodName(InitMethod init);

// Parameters of a Gaussian mixture with k components in d dimensions.
struct GmmParams {
  CovarianceType covariance_type = CovarianceType::kFull;
  Eigen::VectorXd weights;  // k mixing weights on the simplex
  Eigen::MatrixXd means;    // k x d
  // Covariances in scikit-learn's layout flattened to 2-D: full (k*d) x d, component j in rows
  // [j*d, (j+1)*d); tied d x d; diag k x d (variances); spherical k x 1 (variances).
  Eigen::MatrixXd covariances;

  int k() const { return static_cast<int>(means.rows()); }
  int dim() const { return static_cast<int>(means.cols()); }
  // Covariance matrix of component j as a dense d x d matrix, whatever the type.
  Eigen::MatrixXd ComponentCovariance(int j) const;
  // Shapes agree, values finite, weights on the simplex (1e-8), covariances positive
  // definite. Messages name `what`.<field>.
  absl::Status Validate(absl::string_view what = "model.gmm") const;
};

// What to fit.
struct GmmSpec {
  // Number of components; 1 <= k <= rows.
  int k = 1;
  CovarianceType covariance_type = CovarianceType::kFull;
  // Added to the diagonal of every covariance after each M-step; >= 0. Default 1e-6 as in
  // scikit-learn. Keeps covariances positive definite; note that with reg_covar > 0 the
  // update maximises no fixed objective and the log-likelihood may dip (algorithms.md §1.2).
  double reg_covar = 1e-6;
  InitMethod init = InitMethod::kKMeans;
  // Starting parameters (warm start). When set, `init` is not used and every restart would be
  // the same, so a single restart runs whatever n_init says.
  std::optional<GmmParams> init_params;
  // Parameters held at their starting values while the rest is learned (e.g. known means).
  // Each free block is then updated by its exact conditional maximiser, so the log-likelihood
  // still never decreases (with reg_covar = 0).
  bool fix_weights = false;
  bool fix_means = false;
  bool fix_covariances = false;

  // Checks the spec, and its starting parameters if any, against data of `rows` x `cols`;
  // messages name spec.gmm.<field> or init.gmm.<field>.
  absl::Status Validate(int64_t rows, int64_t cols) const;
};

// Free parameters: (k-1) + k d + {full: k d(d+1)/2, tied: d(d+1)/2, diag: k d, spherical: k}.
int64_t NumFreeParameters(CovarianceType type, int k, int d);

struct GmmFitResult {
  GmmParams params;
  FitSummary summary;
};

// Fits a Gaussian mixture to `data` with n_init restarts and returns the restart with the
// largest final log-likelihood. Missing values are NaN: the fit is exact EM under
// missing-at-random (marginal E-step over each row's observed coordinates, conditional
// expectations and covariances in the M-step; algorithms.md §2); rows with every value missing
// are not used and are counted in summary.rows_skipped. Infinite values are invalid.
//
// Errors: INVALID_ARGUMENT for bad data, spec or options (messages name the field);
// FAILED_PRECONDITION when every restart failed numerically (e.g. a covariance that is not
// positive definite even after reg_covar). Cancellation, deadline and max_iter are outcomes in
// the summary. Deterministic for a given options.seed, whatever the pool's size.
absl::StatusOr<GmmFitResult> Fit(Dataset data, const GmmSpec& spec, const FitOptions& options,
                                 const FitControls& controls = {});

// The E-step for a block of rows: responsibilities (rows x k, each row sums to 1), each row's
// log-likelihood ln p(x_i) and its most likely component. Computed in log space. NaN entries
// are missing: a row's density is the marginal over its observed coordinates; a row with no
// observed value gets the weights as responsibilities and log-likelihood 0.
struct Posteriors {
  Eigen::MatrixXd responsibilities;
  Eigen::VectorXd log_likelihood;
  Eigen::VectorXi labels;
};
// `first_row`: the index of the block's first row in the whole data, for messages.
// INVALID_ARGUMENT naming the row if a row's density is not representable (a row far from every
// component); never responsibilities of NaN.
absl::StatusOr<Posteriors> ComputePosteriors(const GmmParams& params,
                                             const Eigen::Ref<const RowMatrix>& block,
                                             Eigen::Index first_row = 0);

// Total log-likelihood of `data` under `params`, with criteria.
// Rows with no observed value contribute nothing and are not counted, as in Fit (so BIC uses
// the weight of the used rows).
struct ScoreResult {
  double log_likelihood = 0.0;
  double mean_log_likelihood = 0.0;  // per unit of used row weight
  double bic = 0.0;
  double aic = 0.0;
  int64_t num_free_parameters = 0;
  int64_t rows_used = 0;
  int64_t rows_skipped = 0;
};
// Runs on `controls.pool`; stops with CANCELLED / DEADLINE_EXCEEDED when the controls fire
// (checked between row blocks).
absl::StatusOr<ScoreResult> Score(const GmmParams& params, const Dataset& data,
                                  const FitControls& controls = {});

}  // namespace emfit::gmm

#endif  // EMFIT_CORE_GMM_GMM_H_
