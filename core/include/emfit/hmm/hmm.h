// Hidden Markov models fitted by Baum-Welch over many sequences (docs/algorithms.md §3).
//
// A model has k hidden states, a start distribution pi, a transition matrix A (row i holds
// P(z_{t+1} = . | z_t = i)) and one emission distribution per state: Gaussian (the mixture's
// four covariance types), categorical (M symbols in one column) or Poisson (one or more
// independent count columns). The data are independent sequences of consecutive rows
// (Dataset::sequence_offsets; none means one sequence); the log-likelihood of a set of
// sequences is the sum of theirs, and sequences are never joined. A missing value (NaN) is
// handled exactly: a Gaussian step's density is the marginal over its observed coordinates, a
// missing symbol or count contributes a factor 1, and a step with nothing observed still
// advances the chain.
#ifndef EMFIT_CORE_HMM_HMM_H_
#define EMFIT_CORE_HMM_HMM_H_

#include <Eigen/Core>
#include <cstdint>
#include <optional>
#include <variant>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "emfit/data/dataset.h"
#include "emfit/em/observer.h"
#include "emfit/em/options.h"
#include "emfit/em/summary.h"
#include "emfit/gmm/gmm.h"

namespace emfit::hmm {

enum class EmissionType { kGaussian, kCategorical, kPoisson };

// "gaussian", "categorical", "poisson".
const char* EmissionTypeName(EmissionType type);
absl::StatusOr<EmissionType> ParseEmissionType(absl::string_view name);

// State j emits N(mu_j, Sigma_j), in the mixture's parameterisation (gmm::GmmParams).
struct GaussianEmissions {
  gmm::CovarianceType covariance_type = gmm::CovarianceType::kFull;
  Eigen::MatrixXd means;  // k x d
  // The mixture's layout: full (k*d) x d, tied d x d, diag k x d, spherical k x 1.
  Eigen::MatrixXd covariances;
};

// State j emits symbol m of {0, ..., M-1} with probability probabilities(j, m). The data have
// one column holding the symbol's index (NaN: missing).
struct CategoricalEmissions {
  Eigen::MatrixXd probabilities;  // k x M, rows on the simplex
};

// State j emits d independent Poisson counts with rates rates(j, c) (data: d columns of
// non-negative integers, NaN: missing).
struct PoissonEmissions {
  Eigen::MatrixXd rates;  // k x d, > 0
};

using Emissions = std::variant<GaussianEmissions, CategoricalEmissions, PoissonEmissions>;

// Parameters of a hidden Markov model with k states. Zeros of `start` and `transitions` are
// structural: Baum-Welch keeps them exactly 0 (left-right models).
struct HmmParams {
  Eigen::VectorXd start;        // k, on the simplex
  Eigen::MatrixXd transitions;  // k x k, rows on the simplex
  Emissions emissions;

  int k() const { return static_cast<int>(start.size()); }
  EmissionType emission_type() const;
  // Data columns the model reads: d (Gaussian, Poisson) or 1 (categorical).
  int dim() const;
  // Shapes agree, values finite, start and transition rows on the simplex (1e-8), emission
  // parameters valid (covariances positive definite, probabilities on the simplex, rates > 0).
  // Messages name `what`.<field>.
  absl::Status Validate(absl::string_view what = "model.hmm") const;
};

// How each restart chooses its starting parameters.
enum class InitMethod {
  // From the data: k-means means and the clusters' covariances (Gaussian), quantiles of the
  // counts (Poisson), perturbed symbol frequencies (categorical); start and transition
  // probabilities from the states each step's emission density prefers, smoothed.
  kData,
  // Random start and transition rows (normalised uniforms); Gaussian means at k random rows
  // with the pooled covariance, random symbol frequencies, rates at random multiples of the
  // column means.
  kRandom,
};

// "data" (also accepted: "kmeans"), "random".
const char* InitMethodName(InitMethod init);
absl::StatusOr<InitMethod> ParseInitMethod(absl::string_view name);

// How the E-step runs forward-backward (algorithms.md §3).
enum class ForwardBackward {
  // Scaled recursions with a per-step shift of the log-densities (default); a sequence whose
  // scaled recursion meets a zero (impossible under the structural zeros, or densities below
  // the double range) is redone in log space.
  kScaled,
  // Every sequence in log space: slower (many more exp and log), for checking.
  kLogSpace,
};

// What to fit.
struct HmmSpec {
  // Hidden states; 1 <= k <= the number of steps with an observed value.
  int k = 2;
  EmissionType emission = EmissionType::kGaussian;
  // Gaussian emissions only.
  gmm::CovarianceType covariance_type = gmm::CovarianceType::kFull;
  // Categorical emissions only: the number of symbols M; 0 takes 1 + the largest symbol in the
  // data. Symbols must be integers in [0, M).
  int num_symbols = 0;
  // Gaussian emissions: added to the diagonal of every covariance after each M-step; >= 0.
  double reg_covar = 1e-6;
  InitMethod init = InitMethod::kData;
  // Starting parameters (warm start); `init` is then not used and a single restart runs.
  std::optional<HmmParams> init_params;
  // Structural zeros: empty (every entry allowed) or k entries / a k x k matrix, 0 where the
  // start or transition probability must stay 0. Zeros of init_params are structural too. Every
  // state must be reachable and every row must allow a transition.
  Eigen::VectorXi start_allowed;
  Eigen::MatrixXi transitions_allowed;
  // Parameters held at their starting values (hmmlearn's `params`); they need init_params.
  // The free blocks are updated by their exact conditional maximisers, so the log-likelihood
  // still never decreases (with reg_covar = 0).
  bool fix_start = false;
  bool fix_transitions = false;
  bool fix_emissions = false;
  ForwardBackward forward_backward = ForwardBackward::kScaled;

  // Checks the spec alone; the data are checked by Fit. Messages name spec.hmm.<field>.
  absl::Status Validate() const;
  // Checks the spec against data of this shape before the data are read (as Fit does): k at
  // most the rows, the emission's columns, the starting model (k, emission, columns,
  // covariance, symbols) and the structural zeros (every state reachable, every row with an
  // allowed transition).
  absl::Status Validate(int64_t rows, int64_t cols) const;
};

// Free parameters of `params` for BIC and AIC: (k-1) + k(k-1) + emission parameters, less the
// zeros of start and transitions (structural). Gaussian emissions count as in the mixture (k d
// means plus the covariance parameters), categorical k (M-1), Poisson k d.
int64_t NumFreeParameters(const HmmParams& params);

struct HmmFitResult {
  HmmParams params;
  FitSummary summary;
};

// Fits a hidden Markov model to the sequences of `data` by Baum-Welch with n_init restarts
// (in parallel on controls.pool) and returns the restart with the largest final
// log-likelihood. Row weights, if any, must be constant within each sequence (a sequence
// weight: integer weights equal repeating the sequence). summary.rows_used counts the steps with
// an observed value, rows_skipped the steps with none (they still advance the chain); BIC's n is
// the weight of the used steps.
//
// Errors: INVALID_ARGUMENT for bad data, spec or options (messages name the field, the row or
// sequence and the limit); FAILED_PRECONDITION when every restart failed numerically.
// Cancellation, deadline and max_iter are outcomes in the summary. Deterministic for a given
// options.seed, whatever the pool's size.
absl::StatusOr<HmmFitResult> Fit(Dataset data, const HmmSpec& spec, const FitOptions& options,
                                 const FitControls& controls = {});

// Inference for a block of sequences (`data.sequence_offsets`; none: one sequence).
struct Posteriors {
  RowMatrix state_probabilities;            // N x k: gamma_t(j) = P(z_t = j | the sequence)
  Eigen::VectorXi viterbi_path;             // N: the most likely state sequence (log space,
                                            // ties to the lowest state)
  Eigen::VectorXd log_likelihood;           // S: ln p(sequence)
  Eigen::VectorXd viterbi_log_probability;  // S: ln p(sequence, Viterbi path) <= log_likelihood
};
// Runs on controls.pool, sequences in parallel; CANCELLED when the token fires. A sequence that
// is impossible under the model (probability 0) is FAILED_PRECONDITION naming it.
absl::StatusOr<Posteriors> ComputePosteriors(const HmmParams& params, const Dataset& data,
                                             const FitControls& controls = {});

// ComputePosteriors for data too large to hold every step's outputs at once: the sequences in
// order, in groups of whole sequences of at most `max_rows` steps together (a longer sequence
// forms a group alone), each group's posteriors passed to `emit` with the index of its first
// sequence and first row; an error from `emit` stops the walk and is returned. The data are
// checked as a whole first (messages name rows and sequences of `data`). Memory: one group's
// outputs.
absl::Status ForEachPosteriorGroup(
    const HmmParams& params, const Dataset& data, int64_t max_rows, const FitControls& controls,
    absl::FunctionRef<absl::Status(int64_t first_sequence, int64_t first_row, const Posteriors&)>
        emit);

// Total log-likelihood of the sequences of `data` (weighted by the row weights, constant within
// each sequence) with criteria. Steps with nothing observed are not counted in BIC's n.
struct ScoreResult {
  double log_likelihood = 0.0;
  double mean_log_likelihood = 0.0;  // per unit of used step weight
  double bic = 0.0;
  double aic = 0.0;
  int64_t num_free_parameters = 0;
  int64_t rows_used = 0;
  int64_t rows_skipped = 0;
  int64_t sequences = 0;
};
absl::StatusOr<ScoreResult> Score(const HmmParams& params, const Dataset& data,
                                  const FitControls& controls = {});

}  // namespace emfit::hmm

#endif  // EMFIT_CORE_HMM_HMM_H_
