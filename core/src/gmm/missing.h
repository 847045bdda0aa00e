// Missing values in a Gaussian mixture: the marginal E-step and the conditional expectations of
// the M-step (docs/algorithms.md §2, Ghahramani & Jordan 1994).
#ifndef EMFIT_CORE_GMM_MISSING_H_
#define EMFIT_CORE_GMM_MISSING_H_

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/call_once.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
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
  // The Schur form (FactorPatternSchur): `sub` is left empty; the E-step evaluates the
  // complete-data density at the completed rows x_hat_k and adds schur_offset (k values).
  bool schur = false;
  Eigen::VectorXd schur_offset;
};

// Factors a pattern on its observed coordinates: Cholesky factors of each Sigma_k,oo for the
// E-step (O(|o|^3) per component), then B_k and C_k.
absl::StatusOr<PatternFactors> FactorPattern(const GmmParams& params, const Pattern& pattern);

// Factors a pattern through the precision matrices Lambda_k = Sigma_k^{-1} (`precisions`: k for
// full, 1 for tied, none for diag and spherical), at O(|m|^3 + |m|^2 |o|) per component:
// C_k = (Lambda_k,mm)^{-1}, B_k = -C_k Lambda_k,mo, and since the marginal quadratic form of the
// observed coordinates is the full one at the completed row, (x_hat - mu)^T Lambda (x_hat - mu),
// and ln|Sigma_oo| = ln|Sigma| - ln|C|, ln N(x_o) = ln N(x_hat) + |m|/2 ln 2 pi + ln|C_k| / 2
// (schur_offset). Cheaper than FactorPattern for patterns with few rows
// (docs/algorithms.md §2; docs/benchmarks.md, "many distinct patterns").
absl::StatusOr<PatternFactors> FactorPatternSchur(const GmmParams& params,
                                                  const std::vector<Eigen::MatrixXd>& precisions,
                                                  const Pattern& pattern);

// The factors of every pattern met in one E-step (or one Score), shared by its tasks so that
// each pattern is factored once. Thread-safe. Beyond `max_bytes` of factors, new patterns are
// factored for their caller and not kept (data with a pattern per row need no table).
class PatternCache {
 public:
  static constexpr size_t kDefaultMaxBytes = size_t{64} << 20;
  // `complete` is `params` factorised; both must outlive the cache.
  PatternCache(const GmmParams& params, const Components& complete,
               size_t max_bytes = kDefaultMaxBytes)
      : params_(&params), complete_(&complete), max_bytes_(max_bytes) {}
  // The factors of `pattern`, in the Schur form when `rare` (a pattern must always be asked for
  // with the same `rare`).
  absl::StatusOr<std::shared_ptr<const PatternFactors>> Get(const Pattern& pattern, bool rare);

 private:
  const std::vector<Eigen::MatrixXd>& Precisions();

  const GmmParams* params_;
  const Components* complete_;
  const size_t max_bytes_;
  absl::once_flag precisions_once_;
  std::vector<Eigen::MatrixXd> precisions_;  // written once, under precisions_once_
  absl::Mutex mu_;
  absl::flat_hash_map<Pattern, std::shared_ptr<const PatternFactors>> table_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

// Rows that share a missingness pattern: positions [begin, end) of a block (rows of the block,
// or entries of its row order when it has one).
struct PatternRun {
  Eigen::Index begin = 0, end = 0;
  const Pattern* pattern = nullptr;  // null: every coordinate observed
  bool rare = false;                 // the pattern has few rows in all (PatternLayout::kRareRows)
};

// Each row's pattern as bits, `words` = ceil(d / 64) per row, column 0 the most significant bit
// and 1 for observed: keys order as the patterns do, rows with every value observed last.
void PatternKeys(const Eigen::Ref<const RowMatrix>& x, std::vector<uint64_t>* keys);
// Row indices in order of pattern key (stable).
std::vector<Eigen::Index> OrderByPattern(const std::vector<uint64_t>& keys, int words);

// The runs of every block of kBlockRows positions of a data set, found once: a fit's rows do
// not change between iterations, and a Score visits each block once. With `group`, the rows
// are first put in order of pattern (order()), so that each pattern is one run per block it
// spans; without, runs are the stretches of consecutive rows with one pattern (long when the
// rows come sorted by pattern, as a fit sorts them).
class PatternLayout {
 public:
  // Patterns with fewer rows than this in the whole data set are factored in the Schur form:
  // factoring them on their observed coordinates would cost more than their rows.
  static constexpr int64_t kRareRows = 128;

  PatternLayout(const Eigen::Ref<const RowMatrix>& x, bool group, int64_t rare_rows = kRareRows);
  PatternLayout(const PatternLayout&) = delete;
  PatternLayout& operator=(const PatternLayout&) = delete;

  // The runs of the block whose first position is `begin` (a multiple of kBlockRows).
  absl::Span<const PatternRun> BlockRuns(int64_t begin) const;
  // With `group`: the row at each position, else null.
  const Eigen::Index* order() const { return order_.empty() ? nullptr : order_.data(); }

 private:
  std::vector<Eigen::Index> order_;
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
  std::vector<Eigen::Index> rows;  // the rows of the runs that share tiles
  std::vector<int> missing;        // their missing features (diag and spherical)
  Eigen::MatrixXd log_var;
};

// The E-step for the positions of one block grouped in `runs`: position p is row order[p] of
// `x` (p itself when `order` is null). Each run is evaluated on its observed coordinates
// (algorithms.md §2): a run of a pattern with many rows through its own factors, tile by tile;
// the runs of rare patterns (PatternRun::rare) together, through the complete-data kernels at
// their completed rows (FactorPatternSchur). Writes each position's log-likelihood into `row_ll`
// and, when `resp` is not null, its responsibilities (positions x k). With `stats`, also
// accumulates the expected sufficient statistics with row weights `w` (indexed like the rows of
// `x`; null: 1) about `shift`: completed rows x_hat_ik and the conditional covariance correction
// (M-step). `stats` must keep a scatter per component for full and tied covariance.
absl::Status MissingRuns(const GmmParams& params, const Components& complete,
                         const Eigen::Ref<const RowMatrix>& x, const Eigen::Index* order,
                         absl::Span<const PatternRun> runs, const double* w,
                         const Eigen::MatrixXd& shift, PatternCache* cache, Eigen::MatrixXd* resp,
                         Eigen::VectorXd* row_ll, GmmStats* stats, MissingScratch* scratch);

// The two halves of MissingRuns, for a caller that combines the components itself (a hidden
// Markov model's Gaussian emissions, whose state probabilities come from the whole sequence).
// MissingLogJoint writes each position's a_ij = ln pi_j + ln N(x_o | mu_j,o, Sigma_j,oo), not
// normalised, into `log_joint` (positions x k); with weights of 1 these are the per-component
// log-densities of the observed coordinates. MissingAccumulate adds the statistics of the
// positions with responsibilities `resp` (positions x k) given by the caller, exactly as
// MissingRuns adds them with its own.
absl::Status MissingLogJoint(const GmmParams& params, const Components& complete,
                             const Eigen::Ref<const RowMatrix>& x, const Eigen::Index* order,
                             absl::Span<const PatternRun> runs, PatternCache* cache,
                             Eigen::MatrixXd* log_joint, MissingScratch* scratch);
absl::Status MissingAccumulate(const GmmParams& params, const Components& complete,
                               const Eigen::Ref<const RowMatrix>& x, const Eigen::Index* order,
                               absl::Span<const PatternRun> runs, const double* w,
                               const Eigen::MatrixXd& resp, const Eigen::MatrixXd& shift,
                               PatternCache* cache, GmmStats* stats, MissingScratch* scratch);

}  // namespace emfit::gmm::internal

#endif  // EMFIT_CORE_GMM_MISSING_H_
