// Missing values in a Gaussian mixture: the marginal E-step and the conditional expectations of
// the M-step (docs/algorithms.md §2, Ghahramani & Jordan 1994).
#ifndef EMFIT_CORE_GMM_MISSING_H_
#define EMFIT_CORE_GMM_MISSING_H_

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "emfit/data/dataset.h"
#include "emfit/gmm/gmm.h"
#include "gmm/components.h"
#include "gmm/kernels.h"
#include "gmm/stats.h"

namespace emfit::gmm::internal {

// Which coordinates of a row are observed: 1 observed, 0 missing.
using Pattern = std::vector<uint8_t>;

// Everything the E-step needs for the rows of one missingness pattern.
struct PatternFactors {
  Pattern pattern;
  std::vector<int> obs, mis;
  Components sub;  // the mixture marginalised to the observed coordinates
  // full / tied: B_k = Sigma_mo Sigma_oo^{-1} (|m| x |o|) and C_k = Sigma_mm - B_k Sigma_om,
  // one per component (tied: the same for all). diag / spherical: C_k holds the variances
  // of the missing coordinates as a |m| x 1 matrix and B_k is empty (x_m has mean mu_m).
  std::vector<Eigen::MatrixXd> regression;
  std::vector<Eigen::MatrixXd> cond_cov;
};

absl::StatusOr<PatternFactors> FactorPattern(const GmmParams& params, const Pattern& pattern);

// Remembers the factors of the last pattern seen; rows sorted by pattern make it hit almost
// always, so each pattern is factored about once per component per iteration (once per stripe
// it spans). Not thread-safe: one per task.
class PatternCache {
 public:
  explicit PatternCache(const GmmParams& params) : params_(&params) {}
  absl::StatusOr<std::shared_ptr<const PatternFactors>> Get(const Pattern& pattern);

 private:
  const GmmParams* params_;
  std::shared_ptr<const PatternFactors> last_;
};

// The E-step for a block of rows that may contain NaN. Rows are grouped by pattern; each group
// is evaluated on its observed coordinates. Writes responsibilities (rows x k) and row
// log-likelihoods. If `stats` is given, also accumulates the expected sufficient statistics
// with weights `w` (empty: 1) about `shift`: completed rows x_hat_ik and the conditional
// covariance correction (algorithms.md §2, M-step).
// `kernel` is work memory, reused across calls.
absl::Status MissingBlock(const GmmParams& params, const Components& complete,
                          const Eigen::Ref<const RowMatrix>& block,
                          const Eigen::Ref<const Eigen::VectorXd>& w, const Eigen::MatrixXd& shift,
                          PatternCache* cache, Eigen::MatrixXd* resp, Eigen::VectorXd* row_ll,
                          GmmStats* stats, KernelScratch* kernel);

}  // namespace emfit::gmm::internal

#endif  // EMFIT_CORE_GMM_MISSING_H_
