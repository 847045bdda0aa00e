#include "hmm/sequence.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"
#include "emfit/base/status_macros.h"
#include "exec/stripes.h"

namespace emfit::hmm::internal {

void ChainStats::Reset(int k) {
  start.setZero(k);
  m.setZero(k, k);
  log_likelihood = 0.0;
}

void ChainStats::Add(const ChainStats& other) {
  start += other.start;
  m += other.m;
  log_likelihood += other.log_likelihood;
}

int64_t DefaultSegmentSteps(int k) {
  constexpr int64_t kBufferValues = int64_t{1} << 20;
  const int64_t block = ::emfit::internal::kBlockRows;
  return std::max<int64_t>(block, kBufferValues / std::max(k, 1) / block * block);
}

namespace {

absl::Status Impossible(int64_t sequence) {
  return absl::FailedPreconditionError(absl::StrFormat(
      "sequence %d has probability 0 under the model (a structural zero or an emission "
      "probability of 0 rules out every path)",
      sequence + 1));
}

// sum_t ln r_t of ForwardScaled's rescaling factors: 1 or exact powers of two.
double SumOfLogScales(const double* r, int64_t n) {
  int64_t exponent = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (r[t] != 1.0) exponent += std::ilogb(r[t]);
  }
  return static_cast<double>(exponent) * M_LN2;
}

double SumOf(const double* v, int64_t n) { return Eigen::Map<const Eigen::ArrayXd>(v, n).sum(); }

// Work memory of the recursions (the most BackwardLog needs, 2k + k^2) plus k for beta.
int64_t WorkSize(int k) { return 3 * static_cast<int64_t>(k) + static_cast<int64_t>(k) * k; }

template <class T>
T* Sized(std::vector<T>* v, int64_t n) {
  if (static_cast<int64_t>(v->size()) < n) v->resize(static_cast<size_t>(n));
  return v->data();
}

// Everything one call of SequencesEStep shares.
struct Run {
  const Chain& chain;
  const SequenceCallbacks& call;
  ChainStats* stats;
  const SequenceOutputs& out;
  SequenceScratch* scratch;

  // Adds a finished sequence: its weighted M (from scratch->m), start probabilities and
  // log-likelihood.
  void Finish(int64_t q, double weight, const double* gamma_first, double ll) const {
    const int k = chain.k;
    stats->m.noalias() += weight * scratch->m;
    for (int j = 0; j < k; ++j) stats->start[j] += weight * gamma_first[j];
    stats->log_likelihood += weight * ll;
    if (out.log_likelihood != nullptr) out.log_likelihood[q] = ll;
  }
};

// Forward-backward of one sequence of n steps held in the buffers: log-densities in `b` (n x k)
// on entry; gamma in `alpha` on return, M in scratch->m. Scaled (with a fallback to log space
// from the densities recomputed) or log space, as `mode` says.
absl::Status Whole(const Run& run, int64_t q, int64_t row, int64_t n, ForwardBackward mode,
                   bool prescaled, double* b, double* alpha, double* c, double* shift, double* work,
                   double* ll) {
  const int k = run.chain.k;
  RowMatrix& m = run.scratch->m;
  m.setZero(k, k);
  if (mode == ForwardBackward::kScaled) {
    if ((prescaled || ScaleRows(b, n, k, shift)) &&
        ForwardScaled(run.chain, b, n, nullptr, alpha, c)) {
      const double z = SumOf(alpha + (n - 1) * k, k);
      *ll = SumOf(shift, n) - SumOfLogScales(c, n) + std::log(z);
      double* beta = work;
      std::fill(beta, beta + k, 1.0);
      if (BackwardScaled(run.chain, b, alpha, c, n, nullptr, beta, m.data()) &&
          CleanM(run.chain, m.data())) {
        m /= z;
        return absl::OkStatus();
      }
      m.setZero(k, k);
    }
    // The scaled recursion met a zero: redo the sequence in log space.
    EMFIT_RETURN_IF_ERROR(run.call.log_density(row, row + n, b));
  }
  ForwardLog(run.chain, b, n, nullptr, alpha, work);
  *ll = LogSumExp(alpha + (n - 1) * k, k);
  if (!std::isfinite(*ll)) return Impossible(q);
  double* log_beta = work + WorkSize(k) - k;
  std::fill(log_beta, log_beta + k, 0.0);
  BackwardLog(run.chain, b, alpha, n, nullptr, *ll, log_beta, m.data(), work);
  return absl::OkStatus();
}

// Sequences [first, last), rows [lo, hi), all in the buffers at once: one call of each callback.
absl::Status Batch(const Run& run, absl::Span<const int64_t> offsets, int64_t first, int64_t last,
                   const Eigen::VectorXd& row_weights, ForwardBackward mode) {
  const int k = run.chain.k;
  const int64_t lo = offsets[first], hi = offsets[last];
  const int64_t n = hi - lo;
  SequenceScratch& s = *run.scratch;
  double* b = Sized(&s.b, n * k);
  double* alpha = Sized(&s.alpha, n * k);
  double* c = Sized(&s.c, n);
  double* shift = Sized(&s.shift, n);
  double* work = Sized(&s.work, WorkSize(k));
  // Scaled densities straight from the emission when it has them (and nothing needs the
  // log-densities themselves, as Viterbi does).
  const bool prescaled = run.call.scaled_density != nullptr && mode == ForwardBackward::kScaled &&
                         run.out.viterbi_log_probability == nullptr;
  if (prescaled) {
    EMFIT_RETURN_IF_ERROR((*run.call.scaled_density)(lo, hi, b, shift));
  } else {
    EMFIT_RETURN_IF_ERROR(run.call.log_density(lo, hi, b));
  }
  for (int64_t q = first; q < last; ++q) {
    const int64_t r = offsets[q] - lo;
    const int64_t len = offsets[q + 1] - offsets[q];
    if (run.out.viterbi_log_probability != nullptr) {
      const double v =
          Viterbi(run.chain, b + r * k, len, run.out.viterbi_path + offsets[q], &s.back, work);
      if (!(v > -std::numeric_limits<double>::infinity())) return Impossible(q);
      run.out.viterbi_log_probability[q] = v;
    }
    double ll = 0;
    EMFIT_RETURN_IF_ERROR(Whole(run, q, offsets[q], len, mode, prescaled, b + r * k, alpha + r * k,
                                c + r, shift + r, work, &ll));
    const double w = row_weights.size() == 0 ? 1.0 : row_weights[offsets[q]];
    run.Finish(q, w, alpha + r * k, ll);
  }
  return run.call.on_gamma(lo, hi, alpha, /*provisional=*/false);
}

// Sequence q, longer than a segment: a forward pass over the segments keeps only each
// segment's last forward variable (the checkpoints) and the log-likelihood; the backward pass
// then recomputes each segment's densities and forward variables from the checkpoint before
// it, from the last segment to the first. Returns false in *redo if the scaled recursion failed
// and the sequence must be run again in log space (nothing of it was kept).
absl::Status Segments(const Run& run, absl::Span<const int64_t> offsets, int64_t q, int64_t segment,
                      ForwardBackward mode, bool* redo) {
  *redo = false;
  const int k = run.chain.k;
  const int64_t lo = offsets[q], len = offsets[q + 1] - offsets[q];
  const int64_t segments = (len + segment - 1) / segment;
  SequenceScratch& s = *run.scratch;
  double* b = Sized(&s.b, segment * k);
  double* alpha = Sized(&s.alpha, segment * k);
  double* c = Sized(&s.c, segment);
  double* shift = Sized(&s.shift, segment);
  double* work = Sized(&s.work, WorkSize(k));
  double* checkpoints = Sized(&s.checkpoints, segments * k);
  RowMatrix& m = s.m;
  m.setZero(k, k);
  const bool scaled = mode == ForwardBackward::kScaled;
  auto begin_of = [&](int64_t i) { return lo + i * segment; };
  auto size_of = [&](int64_t i) { return std::min(segment, len - i * segment); };
  auto before_of = [&](int64_t i) { return i == 0 ? nullptr : checkpoints + (i - 1) * k; };
  // Segment i's densities and forward variables into b, alpha (and c); false if the scaled
  // recursion met a zero.
  auto forward = [&](int64_t i, bool* ok) -> absl::Status {
    if (scaled && run.call.scaled_density != nullptr) {
      EMFIT_RETURN_IF_ERROR(
          (*run.call.scaled_density)(begin_of(i), begin_of(i) + size_of(i), b, shift));
      *ok = ForwardScaled(run.chain, b, size_of(i), before_of(i), alpha, c);
      return absl::OkStatus();
    }
    EMFIT_RETURN_IF_ERROR(run.call.log_density(begin_of(i), begin_of(i) + size_of(i), b));
    if (scaled) {
      *ok = ScaleRows(b, size_of(i), k, shift) &&
            ForwardScaled(run.chain, b, size_of(i), before_of(i), alpha, c);
    } else {
      ForwardLog(run.chain, b, size_of(i), before_of(i), alpha, work);
      *ok = true;
    }
    return absl::OkStatus();
  };

  double ll = 0;
  for (int64_t i = 0; i < segments; ++i) {
    bool ok = false;
    EMFIT_RETURN_IF_ERROR(forward(i, &ok));
    if (!ok) {
      *redo = true;
      return absl::OkStatus();
    }
    if (scaled) ll += SumOf(shift, size_of(i)) - SumOfLogScales(c, size_of(i));
    std::copy(alpha + (size_of(i) - 1) * k, alpha + size_of(i) * k, checkpoints + i * k);
  }
  // The sum of the last forward variable: Z (scaled), or the likelihood (log space).
  const double z = SumOf(checkpoints + (segments - 1) * k, k);
  if (scaled) {
    ll += std::log(z);
  } else {
    ll = LogSumExp(checkpoints + (segments - 1) * k, k);
    if (!std::isfinite(ll)) return Impossible(q);
  }

  double* beta = work + WorkSize(k) - k;  // beta-hat (scaled) or ln beta (log space)
  std::fill(beta, beta + k, scaled ? 1.0 : 0.0);
  for (int64_t i = segments - 1; i >= 0; --i) {
    const int64_t n = size_of(i);
    bool ok = false;
    EMFIT_RETURN_IF_ERROR(forward(i, &ok));
    if (!ok) return absl::InternalError("a recomputed segment differs from the forward pass");
    if (scaled) {
      if (!BackwardScaled(run.chain, b, alpha, c, n, before_of(i), beta, m.data())) {
        run.call.commit(false);
        *redo = true;
        return absl::OkStatus();
      }
    } else {
      BackwardLog(run.chain, b, alpha, n, before_of(i), ll, beta, m.data(), work);
    }
    EMFIT_RETURN_IF_ERROR(
        run.call.on_gamma(begin_of(i), begin_of(i) + n, alpha, /*provisional=*/true));
  }
  if (!CleanM(run.chain, m.data())) {
    run.call.commit(false);
    *redo = scaled;
    if (!scaled) return absl::InternalError("log-space pair posteriors are not finite");
    return absl::OkStatus();
  }
  if (scaled) m /= z;
  run.call.commit(true);
  // alpha holds segment 0's gamma now.
  run.Finish(q, 1.0, alpha, ll);
  return absl::OkStatus();
}

}  // namespace

absl::Status SequencesEStep(const Chain& chain, absl::Span<const int64_t> offsets, int64_t first,
                            int64_t last, const Eigen::VectorXd& row_weights,
                            const SequenceOptions& options, const SequenceCallbacks& callbacks,
                            ChainStats* stats, const SequenceOutputs& outputs,
                            SequenceScratch* scratch) {
  const Run run{chain, callbacks, stats, outputs, scratch};
  const int64_t segment = options.segment_steps;
  if (segment > 0 && outputs.viterbi_log_probability != nullptr) {
    return absl::InternalError("Viterbi needs whole sequences");
  }
  auto length = [&](int64_t q) { return offsets[q + 1] - offsets[q]; };
  int64_t q = first;
  while (q < last) {
    if (segment > 0 && length(q) > segment) {
      const double w = row_weights.size() == 0 ? 1.0 : row_weights[offsets[q]];
      // The weight goes in through the statistics of a weighted sequence: Finish adds M, the
      // start and the log-likelihood with weight 1, so scale them here.
      ChainStats own;
      own.Reset(chain.k);
      const Run one{chain, callbacks, &own, outputs, scratch};
      bool redo = false;
      EMFIT_RETURN_IF_ERROR(Segments(one, offsets, q, segment, options.mode, &redo));
      if (redo) {
        EMFIT_RETURN_IF_ERROR(
            Segments(one, offsets, q, segment, ForwardBackward::kLogSpace, &redo));
      }
      stats->start += w * own.start;
      stats->m += w * own.m;
      stats->log_likelihood += w * own.log_likelihood;
      ++q;
      continue;
    }
    // Consecutive sequences that fit in one segment together.
    int64_t end = q + 1;
    while (end < last && (segment <= 0 || offsets[end + 1] - offsets[q] <= segment)) ++end;
    EMFIT_RETURN_IF_ERROR(Batch(run, offsets, q, end, row_weights, options.mode));
    q = end;
  }
  return absl::OkStatus();
}

}  // namespace emfit::hmm::internal
