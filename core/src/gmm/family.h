// The Gaussian mixture as an EM family (see emfit/em/driver.h for the contract).
#ifndef EMFIT_CORE_GMM_FAMILY_H_
#define EMFIT_CORE_GMM_FAMILY_H_

#include <memory>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "emfit/data/dataset.h"
#include "emfit/em/observer.h"
#include "emfit/em/options.h"
#include "emfit/gmm/gmm.h"
#include "exec/stripes.h"
#include "gmm/kernels.h"
#include "gmm/missing.h"
#include "gmm/stats.h"

namespace emfit::gmm::internal {

// Work matrices of one stripe of the E-step, kept across blocks and iterations.
struct BlockScratch {
  KernelScratch kernel;
  MissingScratch missing;
  Eigen::MatrixXd resp;    // rows x k responsibilities
  Eigen::VectorXd row_ll;  // rows
};

class GmmFamily {
 public:
  using Params = GmmParams;
  struct Stats {
    GmmStats total;
    std::vector<GmmStats> stripes;      // per-stripe partials, reduced in stripe order
    Eigen::MatrixXd shift;              // the means the moments are taken about
    std::vector<BlockScratch> scratch;  // per-stripe work matrices, reused every iteration
  };

  // `data` must outlive the family; its values are finite or, if `missing`, NaN (validated by
  // the caller, with fully missing rows removed and rows sorted by missingness pattern).
  GmmFamily(const Dataset& data, const GmmSpec& spec, bool missing = false)
      : data_(data),
        spec_(spec),
        missing_(missing),
        patterns_(missing ? std::make_shared<const PatternLayout>(data.x, /*group=*/false)
                          : nullptr) {}

  // Tells the family that the data's blocks were rearranged by BlocksToFeatureMajor (complete
  // data only): the E-step then reads them in place instead of transposing each block every
  // iteration. ParamsFromResponsibilities needs rows and fails from then on.
  void UseFeatureMajorBlocks() { feature_major_blocks_ = true; }

  Stats NewStats() const;
  // How the rows are split for parallel accumulation; fewer stripes for large models, so that
  // the per-stripe partial statistics stay within a fixed memory bound.
  ::emfit::internal::Stripes BlockStripes() const;
  double total_weight() const { return data_.TotalWeight(); }
  // Free parameters of the spec; parameters held fixed do not count.
  int64_t NumFreeParameters() const;
  // Responsibilities, statistics and the log-likelihood of `params` over all rows.
  absl::StatusOr<double> EStep(const Params& params, const FitControls& controls,
                               Stats* stats) const;
  absl::Status MStep(const Stats& stats, Params* params) const;
  // Q(params | q) for the posterior q of the E-step that produced `stats` (em/driver.h).
  double ExpectedLogJoint(const Stats& stats, const Params& params) const;
  // Things the user should know about parameters just produced by an M-step from `stats`:
  // components that lost their mass, covariances held up only by reg_covar.
  std::vector<FitWarning> Inspect(const Stats& stats, const Params& params) const;
  // Unconstrained coordinates for SQUAREM (algorithms.md §5.1): weight logits against the
  // last component, means, log-Cholesky factors of the covariances (strictly lower entries
  // and log diagonal; log variances for diag and spherical).
  Eigen::VectorXd Pack(const Params& params) const;
  absl::StatusOr<Params> Unpack(const Eigen::VectorXd& x, const Params& like) const;

  // Statistics of fixed responsibilities produced block by block by `resp_fn(begin, rows, R)`
  // (used by the initialisations), then one M-step.
  // `resp_fn(begin, rows, resp)` fills `resp` (rows x k) for rows [begin, begin + rows); it is
  // called concurrently for different blocks. Returns the M-step's parameters.
  using RespFn = absl::FunctionRef<void(int64_t begin, int64_t rows, Eigen::MatrixXd* resp)>;
  absl::StatusOr<Params> ParamsFromResponsibilities(const Eigen::MatrixXd& shift,
                                                    const FitControls& controls,
                                                    RespFn resp_fn) const;

 private:
  const Dataset& data_;
  GmmSpec spec_;
  bool missing_;
  std::shared_ptr<const PatternLayout> patterns_;  // with missing values: each block's runs
  bool feature_major_blocks_ = false;
};

}  // namespace emfit::gmm::internal

#endif  // EMFIT_CORE_GMM_FAMILY_H_
