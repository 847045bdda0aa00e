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

template <class T, class A>
T* Sized(std::vector<T, A>* v, int64_t n) {
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

  // Adds a finished sequence: its weighted M, start probabilities and log-likelihood.
  void Finish(int64_t q, double weight, const RowMatrix& m, const double* gamma_first,
              double ll) const {
    const int k = chain.k;
    stats->m.noalias() += weight * m;
    for (int j = 0; j < k; ++j) stats->start[j] += weight * gamma_first[j];
    stats->log_likelihood += weight * ll;
    if (out.log_likelihood != nullptr) out.log_likelihood[q - out.first_sequence] = ll;
  }
};

// The scaled recursions on one sequence of n steps whose scaled densities and shifts are in
// `b` and `shift`: gamma into `alpha`, M into `m`, the log-likelihood into *ll. False if they
// met a zero (the sequence must be redone in log space).
bool ScaledWhole(const Chain& chain, int64_t n, const double* b, const double* shift, double* alpha,
                 double* c, double* beta, RowMatrix* m, double* ll) {
  const int k = chain.k;
  m->setZero(k, k);
  if (!ForwardScaled(chain, b, n, nullptr, alpha, c)) return false;
  const double z = SumOf(alpha + (n - 1) * k, k);
  *ll = SumOf(shift, n) - SumOfLogScales(c, n) + std::log(z);
  std::fill(beta, beta + k, 1.0);
  if (!BackwardScaled(chain, b, alpha, c, n, nullptr, beta, m->data()) ||
      !CleanM(chain, m->data())) {
    return false;
  }
  *m /= z;
  return true;
}

// The same for two sequences at once (ForwardScaledPair): their common first steps in lockstep,
// then the longer one's last steps alone. False if either met a zero (both are then redone).
bool ScaledPair(const Chain& chain, const int64_t len[2], const double* const b[2],
                const double* const shift[2], double* const alpha[2], double* const c[2],
                double* const beta[2], RowMatrix* const m[2], double ll[2]) {
  const int k = chain.k;
  const int64_t n = std::min(len[0], len[1]);
  const int longer = len[1] > len[0] ? 1 : 0;
  const int64_t tail = len[longer] - n;
  const int64_t tail_begin = n * k;
  if (!ForwardScaledPair(chain, b, n, alpha, c)) return false;
  if (tail > 0 && !ForwardScaled(chain, b[longer] + tail_begin, tail, alpha[longer] + (n - 1) * k,
                                 alpha[longer] + tail_begin, c[longer] + n)) {
    return false;
  }
  double z[2];
  for (int s = 0; s < 2; ++s) {
    z[s] = SumOf(alpha[s] + (len[s] - 1) * k, k);
    ll[s] = SumOf(shift[s], len[s]) - SumOfLogScales(c[s], len[s]) + std::log(z[s]);
    m[s]->setZero(k, k);
    std::fill(beta[s], beta[s] + k, 1.0);
  }
  if (tail > 0 &&
      !BackwardScaled(chain, b[longer] + tail_begin, alpha[longer] + tail_begin, c[longer] + n,
                      tail, alpha[longer] + (n - 1) * k, beta[longer], m[longer]->data())) {
    return false;
  }
  double* const ms[2] = {m[0]->data(), m[1]->data()};
  if (!BackwardScaledPair(chain, b, alpha, c, n, beta, ms)) return false;
  for (int s = 0; s < 2; ++s) {
    if (!CleanM(chain, ms[s])) return false;
    *m[s] /= z[s];
  }
  return true;
}

// Log space for one sequence, from its log-densities recomputed into `b`.
absl::Status LogWhole(const Run& run, int64_t q, int64_t row, int64_t n, double* b, double* alpha,
                      double* work, RowMatrix* m, double* ll) {
  const int k = run.chain.k;
  m->setZero(k, k);
  EMFIT_RETURN_IF_ERROR(run.call.log_density(row, row + n, b));
  ForwardLog(run.chain, b, n, nullptr, alpha, work);
  *ll = LogSumExp(alpha + (n - 1) * k, k);
  if (!std::isfinite(*ll)) return Impossible(q);
  double* log_beta = work + WorkSize(k) - k;
  std::fill(log_beta, log_beta + k, 0.0);
  BackwardLog(run.chain, b, alpha, n, nullptr, *ll, log_beta, m->data(), work);
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
  const bool scaled_mode = mode == ForwardBackward::kScaled;
  // Scaled densities straight from the emission when it has them (and nothing needs the
  // log-densities themselves, as Viterbi does).
  const bool prescaled = run.call.scaled_density != nullptr && scaled_mode &&
                         run.out.viterbi_log_probability == nullptr;
  if (prescaled) {
    EMFIT_RETURN_IF_ERROR((*run.call.scaled_density)(lo, hi, b, shift));
  } else {
    EMFIT_RETURN_IF_ERROR(run.call.log_density(lo, hi, b));
  }
  auto row_of = [&](int64_t q) { return offsets[q] - lo; };
  auto length = [&](int64_t q) { return offsets[q + 1] - offsets[q]; };
  if (run.out.viterbi_log_probability != nullptr) {
    for (int64_t q = first; q < last; ++q) {
      const double v =
          Viterbi(run.chain, b + row_of(q) * k, length(q),
                  run.out.viterbi_path + (offsets[q] - run.out.first_row), &s.back, work);
      if (!(v > -std::numeric_limits<double>::infinity())) return Impossible(q);
      run.out.viterbi_log_probability[q - run.out.first_sequence] = v;
    }
  }
  // Each sequence's scaled densities; a sequence whose scaling fails goes to log space.
  std::vector<uint8_t>& ok = s.scaled;
  ok.assign(static_cast<size_t>(last - first), 0);
  for (int64_t q = first; q < last; ++q) {
    ok[q - first] =
        scaled_mode && (prescaled || ScaleRows(b + row_of(q) * k, length(q), k, shift + row_of(q)));
  }
  auto finish = [&](int64_t q, const RowMatrix& m, double ll) {
    const double w = row_weights.size() == 0 ? 1.0 : row_weights[offsets[q]];
    run.Finish(q, w, m, alpha + row_of(q) * k, ll);
  };
  auto single = [&](int64_t q) -> absl::Status {
    const int64_t r = row_of(q);
    double ll = 0;
    if (!(ok[q - first] && ScaledWhole(run.chain, length(q), b + r * k, shift + r, alpha + r * k,
                                       c + r, work, &s.m, &ll))) {
      EMFIT_RETURN_IF_ERROR(
          LogWhole(run, q, offsets[q], length(q), b + r * k, alpha + r * k, work, &s.m, &ll));
    }
    finish(q, s.m, ll);
    return absl::OkStatus();
  };
  const bool pairs = scaled_mode && PairedRecursions(k);
  int64_t q = first;
  while (q < last) {
    if (pairs && q + 1 < last && ok[q - first] && ok[q + 1 - first]) {
      const int64_t len[2] = {length(q), length(q + 1)};
      const int64_t r[2] = {row_of(q), row_of(q + 1)};
      const double* const bp[2] = {b + r[0] * k, b + r[1] * k};
      const double* const sp[2] = {shift + r[0], shift + r[1]};
      double* const ap[2] = {alpha + r[0] * k, alpha + r[1] * k};
      double* const cp[2] = {c + r[0], c + r[1]};
      double* const betas[2] = {work, work + k};
      RowMatrix* const ms[2] = {&s.m, &s.m2};
      double ll[2];
      if (ScaledPair(run.chain, len, bp, sp, ap, cp, betas, ms, ll)) {
        finish(q, s.m, ll[0]);
        finish(q + 1, s.m2, ll[1]);
        q += 2;
        continue;
      }
      // A zero in either: each again on its own (its densities are intact).
      EMFIT_RETURN_IF_ERROR(single(q));
      EMFIT_RETURN_IF_ERROR(single(q + 1));
      q += 2;
      continue;
    }
    EMFIT_RETURN_IF_ERROR(single(q));
    ++q;
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
  run.Finish(q, 1.0, m, alpha, ll);
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
