// Mk models of discrete trait evolution on a phylogeny, fitted by exact EM or Monte Carlo EM,
// and stochastic character maps (docs/algorithms.md §4; docs/mk.md).
#ifndef EMFIT_CORE_MK_MK_H_
#define EMFIT_CORE_MK_MK_H_

#include <Eigen/Core>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "emfit/em/mcem.h"
#include "emfit/em/observer.h"
#include "emfit/em/options.h"
#include "emfit/em/summary.h"
#include "emfit/mk/tree.h"

namespace emfit::mk {

// Rate structures of the generator Q, as phytools' fitMk (and ape's ace) define them.
enum class RateModel {
  kER,      // equal rates: every off-diagonal rate is one parameter
  kSYM,     // symmetric: q_ij = q_ji, k(k-1)/2 parameters
  kARD,     // all rates different: k(k-1) parameters
  kCustom,  // a user index matrix (MkSpec::index)
};
const char* RateModelName(RateModel model);  // "ER", "SYM", "ARD", "custom"
// "ER", "SYM", "ARD" (case-insensitive).
absl::StatusOr<RateModel> ParseRateModel(absl::string_view name);

// The index matrix of a preset (k x k, 0 on the diagonal), numbered as phytools numbers it
// (column-major over the off-diagonal cells; SYM numbers the lower triangle and mirrors it).
Eigen::MatrixXi RateIndex(RateModel model, int k);

// Prior on the root state (docs/algorithms.md §4.2).
enum class RootPrior {
  kEqual,       // 1/k for every state (phytools' default, pi = "equal")
  kStationary,  // the stationary distribution of Q (depends on the rates; a generalised EM step)
  kGiven,       // a fixed vector (MkParams::root_probs)
  kFitzJohn,    // FitzJohn et al. (2009): rho proportional to the root's conditional likelihoods.
                // Score and NodePosteriors only: it is not a prior, so EM cannot fit it.
};
const char* RootPriorName(RootPrior root);  // "equal", "stationary", "given", "fitzjohn"
absl::StatusOr<RootPrior> ParseRootPrior(absl::string_view name);

// A fitted (or given) Mk model.
struct MkParams {
  std::vector<std::string> state_names;  // k >= 2 distinct names
  // k x k structure: 0 on the diagonal and for forbidden transitions; cells with the same
  // positive value share one rate. Values are 1..P, each used (the parameter order).
  Eigen::MatrixXi index;
  // k x k generator: q_ij >= 0 off the diagonal (0 where index is 0), rows sum to 0.
  Eigen::MatrixXd q;
  RootPrior root = RootPrior::kEqual;
  Eigen::VectorXd root_probs;  // k values on the simplex for kGiven; empty otherwise

  int k() const { return static_cast<int>(q.rows()); }
  int num_rates() const;  // P, the largest index
  // The P free rates (rate p is the common value of the cells with index p).
  Eigen::VectorXd Rates() const;
  // The root distribution used by the likelihood: equal, stationary or given (fitzjohn has
  // none without data: equal is returned).
  Eigen::VectorXd RootDistribution() const;
  // Shapes agree, every value finite, index consistent with q. Messages name `what`.<field>.
  absl::Status Validate(absl::string_view what = "model.mk") const;
  // The model with these rates (P values, each >= 0).
  static absl::StatusOr<MkParams> FromRates(std::vector<std::string> state_names,
                                            const Eigen::MatrixXi& index,
                                            const Eigen::VectorXd& rates,
                                            RootPrior root = RootPrior::kEqual,
                                            Eigen::VectorXd root_probs = {});
};

// Free parameters: the number of free rates (the root prior is never estimated separately).
int64_t NumFreeParameters(const MkParams& params);

// Tip data: one row of tip likelihoods per tip label. For C characters that share one Q, a row
// has C*k values, character c's state i in column c*k + i: 1 for a state the tip may be in, 0
// otherwise (all ones: missing; several ones: ambiguous). Values must be finite, >= 0, and not
// all zero within a character.
struct MkTips {
  std::vector<std::string> labels;
  Eigen::MatrixXd likelihoods;  // labels.size() x (C*k)
  // Tips of the tree without a row are treated as missing, and rows without a tip are
  // ignored, each with a warning (otherwise both are INVALID_ARGUMENT naming them).
  bool allow_missing_tips = false;
};

// Tip likelihood rows for one character from state strings: a name in `state_names`, several
// joined by '|' (ambiguous), or "?", "-" or "" (missing). INVALID_ARGUMENT names the row, its
// label and the unknown state.
absl::StatusOr<Eigen::MatrixXd> TipLikelihoods(absl::Span<const std::string> labels,
                                               absl::Span<const std::string> states,
                                               absl::Span<const std::string> state_names);
// The distinct state names found in `states` (ambiguous entries split, missing ones skipped),
// sorted as R sorts factor levels of plain ASCII names (byte order).
std::vector<std::string> StateNames(absl::Span<const std::string> states);

// How a branch history is drawn given its end states (docs/algorithms.md §4.5).
enum class PathSampler {
  kAuto,               // modified rejection when P_ab(t) >= 0.1, uniformisation otherwise
  kRejection,          // forward simulation, accepted if it ends in b (phytools' sampler)
  kModifiedRejection,  // the first jump forced when a != b (Nielsen 2002)
  kUniformization,     // Hobolth & Stone (2009)
};
const char* PathSamplerName(PathSampler sampler);
absl::StatusOr<PathSampler> ParsePathSampler(absl::string_view name);

// How the E-step is computed.
enum class EStepMethod {
  kExact,       // expected counts by the block-matrix exponential and pruning (§4.4)
  kMonteCarlo,  // sampled histories, ascent-based MCEM (§4.5-4.6)
};
const char* EStepMethodName(EStepMethod method);  // "exact", "monte-carlo"
absl::StatusOr<EStepMethod> ParseEStepMethod(absl::string_view name);

// What to fit.
struct MkSpec {
  // The k >= 2 state names; the tip likelihood columns follow this order.
  std::vector<std::string> state_names;
  RateModel rates = RateModel::kER;
  // For kCustom: k x k, entries >= 0 (the diagonal is ignored); equal positive values share a
  // rate, 0 forbids the transition. Any positive values (they are renumbered 1..P in order).
  Eigen::MatrixXi index;
  RootPrior root = RootPrior::kEqual;
  Eigen::VectorXd root_probs;  // for kGiven: k values >= 0 with a positive sum (normalised)
  EStepMethod estep = EStepMethod::kExact;
  // Monte Carlo E-step: Rao-Blackwellised (node states drawn, branch statistics exact given
  // them; lower variance) or plain path tallies (`sampler` draws the paths).
  bool rao_blackwell = true;
  PathSampler sampler = PathSampler::kAuto;
  McemOptions mcem;
  // Bounds on every free rate; 0 = defaults 1e-10 s and 1e4 s, s = 1 / mean branch length.
  // A rate at a bound is reported with a warning (code "rate_at_bound").
  double q_min = 0;
  double q_max = 0;
  // Starting model (warm start): a single restart from it.
  std::optional<MkParams> init_params;

  // Checks the spec for k states; messages name spec.mk.<field>.
  absl::Status Validate() const;
  int k() const { return static_cast<int>(state_names.size()); }
};

// Marginal posteriors and expected statistics at one model (the E-step as a service).
struct MkPosteriors {
  double log_likelihood = 0.0;
  // Node x (C*k) marginal posterior state probabilities of every node in the tree's numbering
  // (tips 0..n-1, internal nodes n..N-1 with the root n; see Tree); each character's block
  // sums to 1. The ancestral states are rows n..N-1.
  Eigen::MatrixXd nodes;
  // Expected number of i -> j transitions over all branches and characters (k x k, zero
  // diagonal) and expected time spent in each state (k; sums to C * total branch length).
  Eigen::MatrixXd transitions;
  Eigen::VectorXd dwelling_times;
  std::vector<FitWarning> warnings;  // e.g. missing tips
};

struct MkFitResult {
  MkParams params;
  FitSummary summary;
  MkPosteriors posteriors;  // at `params`
  // Monte Carlo EM only (empty for exact EM): the Monte Carlo standard error of each rate
  // around MCEM's fixed point, from a sample of the last iteration's size at `params` and the
  // exact EM map's Jacobian (the stationary error of the noisy iteration; see docs/mk.md).
  Eigen::VectorXd rate_standard_errors;
};

// Fits an Mk model to the tips on `tree` by EM: exact (SQUAREM allowed) or Monte Carlo EM
// (options.acceleration must be none), with options.n_init restarts (restart 0 from rates
// k / total branch length, the others from seeded random perturbations of it).
// options.tol is the mean log-likelihood change per tip and character for exact EM (use
// ~1e-10 to match direct optimisers) and is not used by MCEM's ascent rule (spec.mcem.tol).
//
// Errors: INVALID_ARGUMENT for bad tips, spec or options (messages name the field and value);
// FAILED_PRECONDITION when the data are impossible under every model of the spec (e.g. a
// forbidden transition is the only explanation). Deterministic for a given seed, whatever the
// pool's size.
absl::StatusOr<MkFitResult> Fit(const Tree& tree, const MkTips& tips, const MkSpec& spec,
                                const FitOptions& options, const FitControls& controls = {});

struct MkScore {
  double log_likelihood = 0.0;
  int64_t num_free_parameters = 0;
  double aic = 0.0;  // -2 l + 2 p
  double bic = 0.0;  // -2 l + p ln(tips x characters)
  int64_t tips_used = 0;
  std::vector<FitWarning> warnings;
};
absl::StatusOr<MkScore> Score(const MkParams& params, const Tree& tree, const MkTips& tips,
                              const FitControls& controls = {});

absl::StatusOr<MkPosteriors> NodePosteriors(const MkParams& params, const Tree& tree,
                                            const MkTips& tips, const FitControls& controls = {});

// One stochastic character map: a full history of one character on every branch.
struct StochasticMap {
  std::vector<int> node_states;  // N: the state of every node
  // The history of the branch above node v is segments [segment_offsets[v],
  // segment_offsets[v+1]) from the parent's end to v's end; consecutive states differ, the
  // lengths sum to the branch length. A zero-length branch has one segment of length 0, and
  // the root one empty range.
  std::vector<int> segment_offsets;  // N + 1
  std::vector<int> segment_states;
  std::vector<double> segment_lengths;
  Eigen::MatrixXd transitions;     // k x k number of i -> j jumps
  Eigen::VectorXd dwelling_times;  // k time spent in each state
};

struct SimmapOptions {
  PathSampler sampler = PathSampler::kAuto;
  // RESOURCE_EXHAUSTED when a map would hold more changes than this on average (the exact
  // expectation given the data): every change is a segment kept in memory.
  double max_expected_changes = 1e6;
};

// Draws n stochastic maps of a single character (tips.likelihoods has k columns) under
// `params`: node states from their joint posterior, then each branch's path given its end
// states. Map i depends only on (seed, i), so the maps do not depend on the pool's size;
// they are drawn in parallel on controls.pool and passed to `callback` in order i = 0..n-1
// from the calling thread. A callback error stops the sampling and is returned. Every draw
// terminates (rejection is capped and falls back to uniformisation). RESOURCE_EXHAUSTED when the
// maps would be too large (SimmapOptions::max_expected_changes).
absl::Status SampleHistories(
    const MkParams& params, const Tree& tree, const MkTips& tips, int64_t n, uint64_t seed,
    const SimmapOptions& options, const FitControls& controls,
    absl::FunctionRef<absl::Status(int64_t index, const StochasticMap& map)> callback);

// One map as a line of SIMMAP v1 extended Newick ("label:{state,len:state,len}", segments
// listed from the child's end, as phytools::read.simmap reads by default), ending in ";".
// INVALID_ARGUMENT if a state name holds one of ",:{}();" or whitespace.
absl::StatusOr<std::string> WriteSimmap(const Tree& tree, const StochasticMap& map,
                                        absl::Span<const std::string> state_names);

// Running summary of stochastic maps, as phytools::describe.simmap reports it.
class MapSummary {
 public:
  MapSummary(int num_nodes, int k);
  void Add(const StochasticMap& map);
  int64_t count() const { return count_; }
  Eigen::MatrixXd MeanTransitions() const;    // k x k mean number of i -> j changes
  Eigen::VectorXd MeanDwellingTimes() const;  // k mean time in each state
  Eigen::MatrixXd NodeFrequencies() const;    // N x k share of maps with node v in state i

 private:
  int64_t count_ = 0;
  Eigen::MatrixXd transitions_;
  Eigen::VectorXd times_;
  Eigen::MatrixXd nodes_;
};

}  // namespace emfit::mk

#endif  // EMFIT_CORE_MK_MK_H_
