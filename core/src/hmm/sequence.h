// Forward-backward over the sequences of one block of an E-step (docs/algorithms.md §3), with
// the emissions behind two callbacks: one gives the log-densities of a range of rows, the
// other receives the state probabilities of a range of rows (for the emission statistics, or
// as output). Consecutive short sequences share one call of each; a sequence longer than a
// segment is run segment by segment with checkpoints (its densities are computed twice), so
// the buffers never exceed one segment whatever the sequence's length.
#ifndef EMFIT_CORE_HMM_SEQUENCE_H_
#define EMFIT_CORE_HMM_SEQUENCE_H_

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "emfit/data/dataset.h"
#include "emfit/hmm/hmm.h"
#include "hmm/forward_backward.h"

namespace emfit::hmm::internal {

// The chain's expected sufficient statistics and the log-likelihood, summed over sequences
// with their weights.
struct ChainStats {
  Eigen::VectorXd start;  // k: sum_s w_s gamma_1^(s)
  RowMatrix m;            // k x k: sum_s w_s M^(s); Xi = A o m (forward_backward.h)
  double log_likelihood = 0.0;

  void Reset(int k);
  void Add(const ChainStats& other);
};

// Work memory of SequencesEStep, reused across blocks.
struct SequenceScratch {
  // Aligned as Eigen aligns its own arrays (EIGEN_MAX_ALIGN_BYTES): Eigen's vectorised sums
  // over these buffers peel their first elements by the address's alignment, so a buffer at
  // an arbitrary heap address would make results depend on where malloc put it (seen in the
  // x86-64-v4 build: the last bits of a fit changed with the request's column names).
  std::vector<double, Eigen::aligned_allocator<double>> b, alpha, c, shift, work, checkpoints;
  RowMatrix m, m2;  // one (or two) sequences' M, added to the statistics once they succeed
  std::vector<uint8_t> scaled;  // per sequence of a batch: its scaled densities are ready
  std::vector<int32_t> back;
};

// Steps per segment by default: each of the two per-step buffers holds at most 2^20 doubles
// (8 MiB), and segments start at multiples of kBlockRows within their sequence.
int64_t DefaultSegmentSteps(int k);

struct SequenceOptions {
  ForwardBackward mode = ForwardBackward::kScaled;
  // Sequences longer than this run segment by segment (checkpointed); <= 0: never.
  int64_t segment_steps = 0;
};

// Optional per-sequence and per-step outputs (null: not wanted), indexed by sequence and by
// row of the whole data set less first_sequence and first_row (the outputs of a range of
// sequences start at that range's first sequence and row).
struct SequenceOutputs {
  double* log_likelihood = nullptr;           // per sequence, unweighted
  double* viterbi_log_probability = nullptr;  // per sequence (runs Viterbi)
  int* viterbi_path = nullptr;                // per row (with viterbi_log_probability)
  int64_t first_sequence = 0;
  int64_t first_row = 0;
};

// log_density(begin, end, g): ln f_j(x_t) for rows [begin, end) into g ((end - begin) x k).
using LogDensityFn = absl::FunctionRef<absl::Status(int64_t begin, int64_t end, double* g)>;
// scaled_density(begin, end, b, shift): what ScaleRows makes of the log-densities, directly
// (an emission that has the scaled densities at hand, e.g. from a table per symbol).
using ScaledDensityFn =
    absl::FunctionRef<absl::Status(int64_t begin, int64_t end, double* b, double* shift)>;
// on_gamma(begin, end, gamma, provisional): the state probabilities of rows [begin, end)
// ((end - begin) x k). `provisional`: the rows are a segment of a long sequence that may still
// have to be redone in log space; what the callee derives from them must be kept apart until
// commit(true), or dropped at commit(false).
using GammaFn = absl::FunctionRef<absl::Status(int64_t begin, int64_t end, const double* gamma,
                                               bool provisional)>;
using CommitFn = absl::FunctionRef<void(bool keep)>;

// What SequencesEStep asks of the emissions and of its caller.
struct SequenceCallbacks {
  LogDensityFn log_density;
  GammaFn on_gamma;
  CommitFn commit;
  const ScaledDensityFn* scaled_density = nullptr;  // optional
};

// Runs forward-backward on sequences [first, last) of `offsets` (S + 1 row offsets), adding
// each sequence's weighted start probabilities, M and log-likelihood to `stats` in sequence
// order; a sequence's weight is its first row's weight (`row_weights` empty: 1). A sequence that
// is impossible under the model is FAILED_PRECONDITION naming it (1-based). Viterbi needs
// segment_steps <= 0 (the whole sequence at once).
absl::Status SequencesEStep(const Chain& chain, absl::Span<const int64_t> offsets, int64_t first,
                            int64_t last, const Eigen::VectorXd& row_weights,
                            const SequenceOptions& options, const SequenceCallbacks& callbacks,
                            ChainStats* stats, const SequenceOutputs& outputs,
                            SequenceScratch* scratch);

}  // namespace emfit::hmm::internal

#endif  // EMFIT_CORE_HMM_SEQUENCE_H_
