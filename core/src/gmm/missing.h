// Missing values in a Gaussian mixture: the marginal E-step and the conditional expectations of
// the M-step (docs/algorithms.md §2, Ghahramani & Jordan 1994).
#ifndef EMFIT_CORE_GMM_MISSING_H_
#define EMFIT_CORE_GMM_MISSING_H_

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
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

// Rows of a block that share a missingness pattern: rows [begin, end) of the block, or of the
// block's row order when one is given.
struct PatternRun {
  Eigen::Index begin = 0, end = 0;
  const Pattern* pattern = nullptr;  // null: every coordinate observed
};

// The runs of every block of kBlockRows rows of a data set, found once (a fit's rows do not
// change between iterations). Runs are maximal stretches of consecutive rows with one pattern:
// long when the rows come sorted by pattern, as a fit sorts them.
class PatternLayout {
 public:
  explicit PatternLayout(const RowMatrix& x);
  PatternLayout(const PatternLayout&) = delete;
  PatternLayout& operator=(const PatternLayout&) = delete;

  // The runs of the block whose first row is `begin` (a multiple of kBlockRows).
  absl::Span<const PatternRun> BlockRuns(int64_t begin) const;
  int num_patterns() const { return static_cast<int>(patterns_.size()); }

 private:
  std::vector<Pattern> patterns_;    // distinct incomplete patterns
  std::vector<PatternRun> runs_;     // block by block, pointing into patterns_
  std::vector<size_t> block_start_;  // block b's runs: [block_start_[b], block_start_[b + 1])
};

// Work memory of the missing-value E-step, reused across blocks.
struct MissingScratch {
  KernelScratch observed;   // a run's observed coordinates, feature-major
  KernelScratch completed;  // a run's rows completed by one component's conditional means
  Eigen::MatrixXd resp;     // a run's responsibilities
  Eigen::VectorXd row_ll, w, wr;
  // MissingBlock's grouping of a block's rows.
  std::vector<uint64_t> keys;
  std::vector<Eigen::Index> order;
  std::vector<Pattern> patterns;
  std::vector<PatternRun> runs;
};

// The E-step for the rows of `block` grouped in `runs` (positions in `order`, or in the block
// when `order` is null); each run is evaluated on its observed coordinates (algorithms.md §2).
// Writes each row's log-likelihood into `row_ll` (block rows) and, when `resp` is not null, its
// responsibilities (block rows x k). With `stats`, also accumulates the expected sufficient
// statistics with row weights `w` (null: 1) about `shift`: completed rows x_hat_ik and the
// conditional covariance correction (M-step). `stats` must keep a scatter per component for
// full and tied covariance.
absl::Status MissingRuns(const GmmParams& params, const Components& complete,
                         const Eigen::Ref<const RowMatrix>& block, const Eigen::Index* order,
                         absl::Span<const PatternRun> runs, const double* w,
                         const Eigen::MatrixXd& shift, PatternCache* cache, Eigen::MatrixXd* resp,
                         Eigen::VectorXd* row_ll, GmmStats* stats, MissingScratch* scratch);

// The same for a block of rows in any order, that may contain NaN: groups the rows by pattern
// first.
absl::Status MissingBlock(const GmmParams& params, const Components& complete,
                          const Eigen::Ref<const RowMatrix>& block, const double* w,
                          const Eigen::MatrixXd& shift, PatternCache* cache, Eigen::MatrixXd* resp,
                          Eigen::VectorXd* row_ll, GmmStats* stats, MissingScratch* scratch);

}  // namespace emfit::gmm::internal

#endif  // EMFIT_CORE_GMM_MISSING_H_
