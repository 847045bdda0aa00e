// Pruning, outside vectors and exact expected counts on a tree (docs/algorithms.md §4.2, §4.4).
#ifndef EMFIT_CORE_MK_PRUNING_H_
#define EMFIT_CORE_MK_PRUNING_H_

#include <Eigen/Core>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "emfit/em/observer.h"
#include "emfit/em/options.h"
#include "emfit/mk/mk.h"
#include "emfit/mk/tree.h"
#include "exec/stripes.h"
#include "mk/model.h"

namespace emfit::mk::internal {

// A tree with its tip data matched to its tips.
struct TreeData {
  const Tree* tree = nullptr;  // not owned; must outlive the data
  int k = 0;
  int characters = 0;
  // k x (N*C): column v*C + c is node v's tip likelihood vector for character c (tips only;
  // the internal columns are unused).
  Eigen::MatrixXd tips;
  int64_t tips_used = 0;             // tips with at least one row
  std::vector<FitWarning> warnings;  // missing tips, unmatched rows (allow_missing_tips)
  double mean_branch_length = 0;     // over the non-root branches

  int num_nodes() const { return tree->num_nodes(); }
};

// The blocks of node indices [0, n) that the per-branch work is split into
// (emfit::internal::ForEachBlock; the cuts depend only on n).
inline ::emfit::internal::Stripes NodeStripes(int64_t n) {
  return ::emfit::internal::Stripes::OverRows(n);
}

// Matches the rows of `tips` to the tree's tips by label and checks them (k states; the
// likelihoods must have C*k columns). Messages name `what`.<field>, the row and the label.
absl::StatusOr<TreeData> MatchTips(const Tree& tree, const MkTips& tips, int k,
                                   const char* what = "tips");

// Conditional likelihoods of every node, scaled (docs/algorithms.md §4.2).
struct Upward {
  Eigen::MatrixXd p;          // k x (N*k): P(t_v) in columns [v*k, (v+1)*k) (identity at the root)
  Eigen::MatrixXd lhat;       // k x (N*C): scaled L_v per character (each column's max is 1)
  Eigen::MatrixXd msg;        // k x (N*C): P(t_v) lhat_v, the message of v to its parent
  Eigen::MatrixXd rho;        // k x C: the root distribution used, per character
  Eigen::VectorXd log_scale;  // C: sum of the logs of every scale factor
  Eigen::VectorXd log_likelihood;  // C: per character
  double total = 0;                // sum over characters
};

// The root distribution for equal, stationary and given priors (fitzjohn: equal; PruneUp
// replaces it by the root's likelihoods).
absl::StatusOr<Eigen::VectorXd> RootDistribution(const MkParams& params);

// Pruning at `generator` with root prior `root` (rho: its distribution; unused for fitzjohn).
// FAILED_PRECONDITION when the data have probability 0 under the model. Runs the transition
// matrices on controls.pool; CANCELLED when the token fires.
absl::Status PruneUp(const TreeData& data, const Generator& generator, RootPrior root,
                     const Eigen::VectorXd& rho, const FitControls& controls, Upward* up);

// Exact expected statistics given the data (docs/algorithms.md §4.4).
struct Expected {
  Eigen::MatrixXd transitions;  // k x k E[N_ij], zero diagonal
  Eigen::VectorXd times;        // k E[T_i]
  Eigen::VectorXd root;         // k posterior of the root state, summed over characters
};

// The outside pass and one endpoint-conditioned integral per branch. With `nodes` non-null,
// also the marginal posterior of every node (N x (C*k)).
absl::Status ExpectedCounts(const TreeData& data, const Generator& generator, const Upward& up,
                            const FitControls& controls, Expected* out,
                            Eigen::MatrixXd* nodes = nullptr);

}  // namespace emfit::mk::internal

#endif  // EMFIT_CORE_MK_PRUNING_H_
