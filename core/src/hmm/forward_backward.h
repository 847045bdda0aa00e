// The recursions of a hidden Markov model over one stretch of steps (docs/algorithms.md §3):
// scaled forward-backward with a per-step shift of the log-densities, its log-space variant,
// and Viterbi. A sequence may be cut into consecutive segments that are run one after the
// other, carrying the forward variable forwards and the backward variable backwards, so that a
// very long sequence needs buffers of one segment only (checkpointed forward-backward,
// sequence.h).
//
// Layouts: every per-step matrix is row-major, one row of k values per step. Instead of the
// summed pair posteriors Xi, the backward passes accumulate M with Xi = A o M (elementwise),
// M_ij = sum_t alpha_{t-1}(i) p(x_t | j) beta_t(j) / p(sequence) where A_ij > 0 (0 elsewhere,
// CleanM): A is the same for every sequence, so the product is taken once per E-step.
#ifndef EMFIT_CORE_HMM_FORWARD_BACKWARD_H_
#define EMFIT_CORE_HMM_FORWARD_BACKWARD_H_

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "emfit/data/dataset.h"

namespace emfit::hmm::internal {

// The chain's parameters in the forms the recursions read.
struct Chain {
  int k = 0;
  Eigen::VectorXd start;        // pi
  RowMatrix transitions;        // A (row-major: row i is P(. | i))
  RowMatrix transitions_t;      // A^T (row-major)
  Eigen::VectorXd log_start;    // ln pi (-inf at zeros)
  RowMatrix log_transitions;    // ln A
  RowMatrix log_transitions_t;  // (ln A)^T

  static Chain From(const Eigen::VectorXd& start, const Eigen::MatrixXd& transitions);
};

// Turns log-densities into scaled densities in place: for each of the n rows of `g` (n x k),
// s_t = max_j g_tj and g_tj <- exp(g_tj - s_t), in (0, 1] with a 1 at the maximum. Returns
// false, leaving `g` partly scaled, if some row's maximum is not finite (no state can emit
// the step, or a density is invalid).
bool ScaleRows(double* g, int64_t n, int k, double* shift);

// Scaled forward pass over n steps with scaled densities `b` (n x k, from ScaleRows). `before`
// is alpha-hat of the step before the segment, or null if the segment starts the sequence.
// Writes alpha-hat (n x k) and each step's rescaling factor r_t (n): 1, or the power of two that
// brought the forward variable's sum back into [1/2, 1) when it fell below 2^-64. Then
// alpha-hat_t = alpha_t prod_{s<=t} r_s e^{-s_s}, and the sequence's log-likelihood is
// sum_t (s_t - ln r_t) + ln Z with Z the sum of the last alpha-hat. Returns false if a sum is 0
// or not a number (the recursion must then be redone in log space).
bool ForwardScaled(const Chain& chain, const double* b, int64_t n, const double* before,
                   double* alpha, double* scale);

// Scaled backward pass over the same n steps, after ForwardScaled. `beta` holds beta-hat of the
// segment's last step on entry (1 for the sequence's last step) and beta-hat of the step before
// the segment on return (when `before` is not null; `before` as for ForwardScaled). Overwrites
// `alpha` with the state probabilities gamma (each row normalised) and adds the segment's
// Z M to `m` (k x k row-major; the caller divides by Z once the sequence is done). Returns false
// if a normaliser of gamma is not finite and positive: alpha-hat underflowed to 0 where
// beta-hat overflowed (a state the past rules out in double precision and the future needs),
// and the sequence must be redone in log space; `m` and `alpha` are then garbage.
bool BackwardScaled(const Chain& chain, const double* b, double* alpha, const double* scale,
                    int64_t n, const double* before, double* beta, double* m);

// ForwardScaled and BackwardScaled for two sequences at once, in lockstep over their first n
// steps (both starting at step 0; `before` is null for both): the same arithmetic, one lane of a
// SIMD pair each. Only for k with PairedRecursions(k); false as the single versions do (then
// the sequences are redone one by one).
bool PairedRecursions(int k);
bool ForwardScaledPair(const Chain& chain, const double* const b[2], int64_t n,
                       double* const alpha[2], double* const scale[2]);
bool BackwardScaledPair(const Chain& chain, const double* const b[2], double* const alpha[2],
                        const double* const scale[2], int64_t n, double* const beta[2],
                        double* const m[2]);

// Log-space forward pass: `log_alpha` (n x k) = ln alpha_t from log-densities `g` (n x k);
// `before` is ln alpha of the step before the segment, or null. `work`: k doubles.
void ForwardLog(const Chain& chain, const double* g, int64_t n, const double* before,
                double* log_alpha, double* work);

// Log-space backward pass over the segment, after ForwardLog, given the sequence's
// log-likelihood `ll`. `log_beta` holds ln beta of the segment's last step on entry (0 for the
// sequence's last step), ln beta of the step before the segment on return. Overwrites
// `log_alpha` with gamma and adds the segment's M to `m`. `work`: 2k + k^2 doubles.
void BackwardLog(const Chain& chain, const double* g, double* log_alpha, int64_t n,
                 const double* before, double ll, double* log_beta, double* m, double* work);

// Zeroes M where A = 0 (M is not needed there, and the scaled pass may have overflowed it) and
// returns whether the rest is finite (if not, the sequence must be redone in log space).
bool CleanM(const Chain& chain, double* m);

// ln sum_j exp(v_j) of k values (-inf if every value is -inf).
double LogSumExp(const double* v, int k);

// Viterbi in log space over one whole sequence of n steps with log-densities `g` (n x k):
// writes the most likely state path (ties to the lowest state) and returns its log joint
// probability ln p(x, path); -inf if the sequence is impossible (then `path` is unspecified).
// `back`: back-pointers, resized to n x k; `work`: 2k doubles.
double Viterbi(const Chain& chain, const double* g, int64_t n, int* path,
               std::vector<int32_t>* back, double* work);

}  // namespace emfit::hmm::internal

#endif  // EMFIT_CORE_HMM_FORWARD_BACKWARD_H_
