#include "hmm/forward_backward.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "math/exp.h"

namespace emfit::hmm::internal {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The recursions are written once with the number of states K as a template argument: small K
// (the usual case) gets loops of constant trip count that the compiler unrolls and keeps in
// registers; K = 0 reads it from the chain.
template <int K>
inline int States(const Chain& chain) {
  return K > 0 ? K : chain.k;
}

// The forward variable is rescaled only when its sum drops below 2^-64, and then by an exact
// power of two, so that no division sits on the recursion's critical path (a step is the
// matrix-vector product and one multiplication) and the rescaling itself is exact; for small K
// the forward variable and beta-hat live in registers (docs/benchmarks.md, HMM).
constexpr double kRescaleBelow = 0x1.0p-64;

// The factor (1 or 2^-e) that brings `sum` into [1/2, 1) when it is below kRescaleBelow; 0 if
// the sum is 0 or not a number.
inline double RescaleFactor(double sum) {
  if (sum >= kRescaleBelow) return 1.0;
  if (!(sum > 0)) return 0.0;
  int e = 0;
  std::frexp(sum, &e);
  return std::ldexp(1.0, -e);
}

template <int K>
bool ForwardScaledT(const Chain& chain, const double* b, int64_t n, const double* before,
                    double* alpha, double* scale) {
  static_assert(K > 0);
  const double* a = chain.transitions.data();
  double cur[K];
  for (int j = 0; j < K; ++j) cur[j] = before == nullptr ? chain.start[j] : before[j];
  for (int64_t t = 0; t < n; ++t) {
    const double* bt = b + t * K;
    double next[K];
    if (t == 0 && before == nullptr) {
      for (int j = 0; j < K; ++j) next[j] = cur[j] * bt[j];
    } else {
      // (A^T alpha_{t-1})_j = sum_i alpha_{t-1}(i) A_ij, rows of A scaled and added.
      for (int j = 0; j < K; ++j) next[j] = cur[0] * a[j];
      for (int i = 1; i < K; ++i) {
        for (int j = 0; j < K; ++j) next[j] += cur[i] * a[i * K + j];
      }
      for (int j = 0; j < K; ++j) next[j] *= bt[j];
    }
    double sum = 0;
    for (int j = 0; j < K; ++j) sum += next[j];
    const double r = RescaleFactor(sum);
    if (r == 0) return false;
    scale[t] = r;
    double* at = alpha + t * K;
    for (int j = 0; j < K; ++j) at[j] = cur[j] = next[j] * r;
  }
  return true;
}

// Any K, through memory.
bool ForwardScaledAny(const Chain& chain, const double* b, int64_t n, const double* before,
                      double* alpha, double* scale) {
  const int k = chain.k;
  const RowMatrix& a = chain.transitions;
  for (int64_t t = 0; t < n; ++t) {
    double* at = alpha + t * k;
    const double* bt = b + t * k;
    const double* prev = t > 0 ? at - k : before;
    if (prev == nullptr) {
      for (int j = 0; j < k; ++j) at[j] = chain.start[j] * bt[j];
    } else {
      // alpha_t = (alpha_{t-1}^T A) o b_t, Eigen's vector-matrix product.
      Eigen::Map<Eigen::RowVectorXd> row(at, k);
      row.noalias() = Eigen::Map<const Eigen::RowVectorXd>(prev, k) * a;
      for (int j = 0; j < k; ++j) at[j] *= bt[j];
    }
    double sum = 0;
    for (int j = 0; j < k; ++j) sum += at[j];
    const double r = RescaleFactor(sum);
    if (r == 0) return false;
    scale[t] = r;
    if (r != 1.0) {
      for (int j = 0; j < k; ++j) at[j] *= r;
    }
  }
  return true;
}

// Small fixed K: beta-hat, W and M are local arrays, which the compiler keeps in registers.
template <int K>
bool BackwardScaledT(const Chain& chain, const double* b, double* alpha, const double* scale,
                     int64_t n, const double* before, double* beta, double* m) {
  static_assert(K > 0);
  const double* a = chain.transitions.data();
  double be[K], w[K], macc[K * K] = {};
  for (int j = 0; j < K; ++j) be[j] = beta[j];
  for (int64_t t = n - 1; t >= 0; --t) {
    double* al = alpha + t * K;
    const double* bt = b + t * K;
    const double* prev = t > 0 ? al - K : before;
    if (prev != nullptr) {
      // W_t = b_t o beta_t r_t; M += alpha_{t-1} W_t^T.
      const double r = scale[t];
      for (int j = 0; j < K; ++j) w[j] = be[j] * (bt[j] * r);
      for (int i = 0; i < K; ++i) {
        for (int j = 0; j < K; ++j) macc[i * K + j] += prev[i] * w[j];
      }
    }
    // gamma_t = alpha_t o beta_t, renormalised against rounding drift.
    double sum = 0;
    for (int j = 0; j < K; ++j) {
      al[j] *= be[j];
      sum += al[j];
    }
    if (!(sum > 0 && sum < kInf)) return false;
    const double inv = 1.0 / sum;
    for (int j = 0; j < K; ++j) al[j] *= inv;
    if (prev == nullptr) continue;
    // beta_{t-1} = A W_t.
    for (int i = 0; i < K; ++i) {
      double v = a[i * K] * w[0];
      for (int j = 1; j < K; ++j) v += a[i * K + j] * w[j];
      be[i] = v;
    }
  }
  for (int j = 0; j < K; ++j) beta[j] = be[j];
  for (int e = 0; e < K * K; ++e) m[e] += macc[e];
  return true;
}

// Two sequences in lockstep, one in each lane of a SIMD pair: one dependency chain of the
// recursion serves both (for small K the recursion's latency, not its arithmetic, sets the
// pace). Both start at step 0; the same arithmetic per lane as ForwardScaledT.
using Pair = Eigen::Array2d;

template <int K>
bool ForwardScaledPairT(const Chain& chain, const double* const b[2], int64_t n,
                        double* const alpha[2], double* const scale[2]) {
  static_assert(K > 0);
  const double* a = chain.transitions.data();
  Pair cur[K];
  for (int j = 0; j < K; ++j) cur[j] = Pair::Constant(chain.start[j]);
  for (int64_t t = 0; t < n; ++t) {
    Pair next[K];
    for (int j = 0; j < K; ++j) {
      const Pair bt(b[0][t * K + j], b[1][t * K + j]);
      if (t == 0) {
        next[j] = cur[j] * bt;
        continue;
      }
      Pair v = cur[0] * a[j];
      for (int i = 1; i < K; ++i) v += cur[i] * a[i * K + j];
      next[j] = v * bt;
    }
    Pair sum = next[0];
    for (int j = 1; j < K; ++j) sum += next[j];
    double r0 = 1, r1 = 1;
    if (!(sum[0] >= kRescaleBelow && sum[1] >= kRescaleBelow)) {
      r0 = RescaleFactor(sum[0]);
      r1 = RescaleFactor(sum[1]);
      if (r0 == 0 || r1 == 0) return false;
      const Pair r(r0, r1);
      for (int j = 0; j < K; ++j) next[j] *= r;
    }
    scale[0][t] = r0;
    scale[1][t] = r1;
    for (int j = 0; j < K; ++j) {
      cur[j] = next[j];
      alpha[0][t * K + j] = next[j][0];
      alpha[1][t * K + j] = next[j][1];
    }
  }
  return true;
}

template <int K>
bool BackwardScaledPairT(const Chain& chain, const double* const b[2], double* const alpha[2],
                         const double* const scale[2], int64_t n, double* const beta[2],
                         double* const m[2]) {
  static_assert(K > 0);
  const double* a = chain.transitions.data();
  Pair be[K], w[K], macc[K * K];
  for (int j = 0; j < K; ++j) be[j] = Pair(beta[0][j], beta[1][j]);
  for (int e = 0; e < K * K; ++e) macc[e] = Pair::Zero();
  for (int64_t t = n - 1; t >= 0; --t) {
    if (t > 0) {
      // W_t = b_t o beta_t r_t; M += alpha_{t-1} W_t^T.
      const Pair r(scale[0][t], scale[1][t]);
      for (int j = 0; j < K; ++j) w[j] = be[j] * (Pair(b[0][t * K + j], b[1][t * K + j]) * r);
      for (int i = 0; i < K; ++i) {
        const Pair p(alpha[0][(t - 1) * K + i], alpha[1][(t - 1) * K + i]);
        for (int j = 0; j < K; ++j) macc[i * K + j] += p * w[j];
      }
    }
    // gamma_t = alpha_t o beta_t, renormalised against rounding drift.
    Pair g[K];
    Pair sum = Pair::Zero();
    for (int j = 0; j < K; ++j) {
      g[j] = Pair(alpha[0][t * K + j], alpha[1][t * K + j]) * be[j];
      sum += g[j];
    }
    if (!(sum[0] > 0 && sum[0] < kInf && sum[1] > 0 && sum[1] < kInf)) return false;
    const Pair inv = sum.inverse();
    for (int j = 0; j < K; ++j) {
      const Pair gj = g[j] * inv;
      alpha[0][t * K + j] = gj[0];
      alpha[1][t * K + j] = gj[1];
    }
    if (t == 0) continue;
    // beta_{t-1} = A W_t.
    for (int i = 0; i < K; ++i) {
      Pair v = w[0] * a[i * K];
      for (int j = 1; j < K; ++j) v += w[j] * a[i * K + j];
      be[i] = v;
    }
  }
  for (int j = 0; j < K; ++j) {
    beta[0][j] = be[j][0];
    beta[1][j] = be[j][1];
  }
  for (int e = 0; e < K * K; ++e) {
    m[0][e] += macc[e][0];
    m[1][e] += macc[e][1];
  }
  return true;
}

// Any K: the pair posteriors of a chunk of steps at once, as one matrix product M += P^T W (P
// the chunk's previous forward variables, W its W_t) instead of a rank-one update per step;
// beta-hat of the chunk is kept for gamma, which overwrites the forward variables only after the
// product has read them.
bool BackwardScaledAny(const Chain& chain, const double* b, double* alpha, const double* scale,
                       int64_t n, const double* before, double* beta, double* m) {
  constexpr int64_t kChunk = 128;
  const int k = chain.k;
  // Aligned (sequence.h, SequenceScratch): results must not depend on heap addresses.
  thread_local std::vector<double, Eigen::aligned_allocator<double>> w_chunk, beta_chunk;
  w_chunk.resize(static_cast<size_t>(kChunk * k));
  beta_chunk.resize(static_cast<size_t>(kChunk * k));
  Eigen::Map<RowMatrix> mm(m, k, k);
  for (int64_t t1 = n; t1 > 0;) {
    const int64_t t0 = std::max<int64_t>(0, t1 - kChunk);
    for (int64_t t = t1 - 1; t >= t0; --t) {
      double* bc = beta_chunk.data() + (t - t0) * k;
      std::copy(beta, beta + k, bc);
      if (t == 0 && before == nullptr) continue;
      // W_t = b_t o beta_t r_t; beta_{t-1} = A W_t.
      double* w = w_chunk.data() + (t - t0) * k;
      const double* bt = b + t * k;
      const double r = scale[t];
      for (int j = 0; j < k; ++j) w[j] = bc[j] * (bt[j] * r);
      Eigen::Map<Eigen::VectorXd>(beta, k).noalias() =
          chain.transitions * Eigen::Map<const Eigen::VectorXd>(w, k);
    }
    // M += alpha_{t-1} W_t^T over the chunk's steps with a previous step.
    const int64_t first = std::max<int64_t>(t0, 1);
    if (t1 > first) {
      mm.noalias() +=
          Eigen::Map<const RowMatrix>(alpha + (first - 1) * k, t1 - first, k).transpose() *
          Eigen::Map<const RowMatrix>(w_chunk.data() + (first - t0) * k, t1 - first, k);
    }
    if (t0 == 0 && before != nullptr) {
      mm.noalias() += Eigen::Map<const Eigen::VectorXd>(before, k) *
                      Eigen::Map<const Eigen::RowVectorXd>(w_chunk.data(), k);
    }
    // gamma_t = alpha_t o beta_t, renormalised against rounding drift.
    for (int64_t t = t0; t < t1; ++t) {
      double* al = alpha + t * k;
      const double* bc = beta_chunk.data() + (t - t0) * k;
      double sum = 0;
      for (int j = 0; j < k; ++j) {
        al[j] *= bc[j];
        sum += al[j];
      }
      if (!(sum > 0 && sum < kInf)) return false;
      const double inv = 1.0 / sum;
      for (int j = 0; j < k; ++j) al[j] *= inv;
    }
    t1 = t0;
  }
  return true;
}

template <int K>
bool ScaleRowsT(double* g, int64_t n, int k_runtime, double* shift) {
  const int k = K > 0 ? K : k_runtime;
  for (int64_t t = 0; t < n; ++t) {
    double* gt = g + t * k;
    double top = gt[0];
    for (int j = 1; j < k; ++j) top = gt[j] > top ? gt[j] : top;
    if (!std::isfinite(top)) return false;
    shift[t] = top;
    for (int j = 0; j < k; ++j) gt[j] -= top;
  }
  // One pass of exp over the block; a state the step rules out stays ruled out (exactly 0), and
  // a density below e^-706 relative to the step's best is 0 too, which sends the recursion to
  // log space (c_t = 0) rather than to a wrong value.
  ::emfit::internal::ExpNonPositive(g, n * k);
  return true;
}

}  // namespace

Chain Chain::From(const Eigen::VectorXd& start, const Eigen::MatrixXd& transitions) {
  Chain c;
  c.k = static_cast<int>(start.size());
  c.start = start;
  c.transitions = transitions;
  c.transitions_t = transitions.transpose();
  // std::log, not Eigen's vectorised log, which flushes subnormal probabilities.
  c.log_start = start.unaryExpr([](double p) { return std::log(p); });
  c.log_transitions = transitions.unaryExpr([](double p) { return std::log(p); });
  c.log_transitions_t = c.log_transitions.transpose();
  return c;
}

// The recursions' dispatch on the number of states.
#define EMFIT_HMM_DISPATCH_K(k, call_fixed, call_any) \
  switch (k) {                                        \
    case 1:                                           \
      return call_fixed(1);                           \
    case 2:                                           \
      return call_fixed(2);                           \
    case 3:                                           \
      return call_fixed(3);                           \
    case 4:                                           \
      return call_fixed(4);                           \
    case 5:                                           \
      return call_fixed(5);                           \
    case 6:                                           \
      return call_fixed(6);                           \
    default:                                          \
      return call_any;                                \
  }

bool ScaleRows(double* g, int64_t n, int k, double* shift) {
#define EMFIT_FIXED(K) ScaleRowsT<K>(g, n, k, shift)
  EMFIT_HMM_DISPATCH_K(k, EMFIT_FIXED, ScaleRowsT<0>(g, n, k, shift))
#undef EMFIT_FIXED
}

bool ForwardScaled(const Chain& chain, const double* b, int64_t n, const double* before,
                   double* alpha, double* scale) {
#define EMFIT_FIXED(K) ForwardScaledT<K>(chain, b, n, before, alpha, scale)
  EMFIT_HMM_DISPATCH_K(chain.k, EMFIT_FIXED, ForwardScaledAny(chain, b, n, before, alpha, scale))
#undef EMFIT_FIXED
}

bool BackwardScaled(const Chain& chain, const double* b, double* alpha, const double* scale,
                    int64_t n, const double* before, double* beta, double* m) {
#define EMFIT_FIXED(K) BackwardScaledT<K>(chain, b, alpha, scale, n, before, beta, m)
  EMFIT_HMM_DISPATCH_K(chain.k, EMFIT_FIXED,
                       BackwardScaledAny(chain, b, alpha, scale, n, before, beta, m))
#undef EMFIT_FIXED
}

bool PairedRecursions(int k) { return k >= 1 && k <= 6; }

bool ForwardScaledPair(const Chain& chain, const double* const b[2], int64_t n,
                       double* const alpha[2], double* const scale[2]) {
#define EMFIT_FIXED(K) ForwardScaledPairT<K>(chain, b, n, alpha, scale)
  EMFIT_HMM_DISPATCH_K(chain.k, EMFIT_FIXED, false)
#undef EMFIT_FIXED
}

bool BackwardScaledPair(const Chain& chain, const double* const b[2], double* const alpha[2],
                        const double* const scale[2], int64_t n, double* const beta[2],
                        double* const m[2]) {
#define EMFIT_FIXED(K) BackwardScaledPairT<K>(chain, b, alpha, scale, n, beta, m)
  EMFIT_HMM_DISPATCH_K(chain.k, EMFIT_FIXED, false)
#undef EMFIT_FIXED
}

#undef EMFIT_HMM_DISPATCH_K

bool CleanM(const Chain& chain, double* m) {
  const int64_t kk = static_cast<int64_t>(chain.k) * chain.k;
  const double* a = chain.transitions.data();
  bool finite = true;
  for (int64_t e = 0; e < kk; ++e) {
    if (a[e] == 0) {
      m[e] = 0;
    } else {
      finite &= std::isfinite(m[e]);
    }
  }
  return finite;
}

double LogSumExp(const double* v, int k) {
  double top = v[0];
  for (int j = 1; j < k; ++j) top = std::max(top, v[j]);
  if (top == -kInf) return -kInf;
  double sum = 0;
  for (int j = 0; j < k; ++j) sum += std::exp(v[j] - top);
  return top + std::log(sum);
}

void ForwardLog(const Chain& chain, const double* g, int64_t n, const double* before,
                double* log_alpha, double* work) {
  const int k = chain.k;
  const double* lat = chain.log_transitions_t.data();
  for (int64_t t = 0; t < n; ++t) {
    double* la = log_alpha + t * k;
    const double* gt = g + t * k;
    const double* prev = t > 0 ? la - k : before;
    for (int j = 0; j < k; ++j) {
      if (prev == nullptr) {
        la[j] = chain.log_start[j] + gt[j];
        continue;
      }
      // ln alpha_t(j) = LSE_i(ln alpha_{t-1}(i) + ln A_ij) + G_tj
      const double* col = lat + j * k;
      for (int i = 0; i < k; ++i) work[i] = prev[i] + col[i];
      la[j] = LogSumExp(work, k) + gt[j];
    }
  }
}

void BackwardLog(const Chain& chain, const double* g, double* log_alpha, int64_t n,
                 const double* before, double ll, double* log_beta, double* m, double* work) {
  const int k = chain.k;
  const double* la_mat = chain.log_transitions.data();
  double* u = work;  // G_t + ln beta_t
  double* terms = work + k;
  double* e = work + 2 * k;  // k x k
  const double* a = chain.transitions.data();
  for (int64_t t = n - 1; t >= 0; --t) {
    double* la = log_alpha + t * k;
    const double* gt = g + t * k;
    const double* prev = t > 0 ? la - k : before;
    // gamma_t, renormalised against rounding drift.
    double sum = 0;
    for (int j = 0; j < k; ++j) {
      la[j] = std::exp(la[j] + log_beta[j] - ll);
      sum += la[j];
    }
    const double inv = 1.0 / sum;
    for (int j = 0; j < k; ++j) la[j] *= inv;
    if (prev == nullptr) continue;
    for (int j = 0; j < k; ++j) u[j] = gt[j] + log_beta[j];
    // xi_t(i, j) = exp(ln alpha_{t-1}(i) + ln A_ij + G_tj + ln beta_t(j) - l), divided by its
    // sum (1 up to rounding, which grows with |l| here), and M += xi_t / A where A_ij > 0
    // (elsewhere M is not needed and may exceed the double range).
    double z = 0;
    for (int i = 0; i < k; ++i) {
      const double base = prev[i] - ll;
      const double* lai = la_mat + i * k;
      double* ei = e + i * k;
      for (int j = 0; j < k; ++j) {
        ei[j] = lai[j] > -kInf ? std::exp(base + u[j]) : 0.0;
        z += a[i * k + j] * ei[j];
      }
    }
    const double inv_z = 1.0 / z;
    for (int i = 0; i < k * k; ++i) m[i] += e[i] * inv_z;
    // ln beta_{t-1}(i) = LSE_j(ln A_ij + G_tj + ln beta_t(j)).
    for (int i = 0; i < k; ++i) {
      const double* row = la_mat + i * k;
      for (int j = 0; j < k; ++j) terms[j] = row[j] + u[j];
      log_beta[i] = LogSumExp(terms, k);
    }
  }
}

double Viterbi(const Chain& chain, const double* g, int64_t n, int* path,
               std::vector<int32_t>* back, double* work) {
  const int k = chain.k;
  back->resize(static_cast<size_t>(n) * k);
  double* delta = work;
  double* next = work + k;
  const double* lat = chain.log_transitions_t.data();
  for (int j = 0; j < k; ++j) delta[j] = chain.log_start[j] + g[j];
  for (int64_t t = 1; t < n; ++t) {
    int32_t* bt = back->data() + t * k;
    const double* gt = g + t * k;
    for (int j = 0; j < k; ++j) {
      // delta_t(j) = max_i (delta_{t-1}(i) + ln A_ij) + G_tj; the lowest i on ties.
      const double* col = lat + j * k;
      double best = -kInf;
      int32_t arg = 0;
      for (int i = 0; i < k; ++i) {
        const double v = delta[i] + col[i];
        if (v > best) {
          best = v;
          arg = i;
        }
      }
      next[j] = best + gt[j];
      bt[j] = arg;
    }
    std::swap(delta, next);
  }
  double best = -kInf;
  int arg = 0;
  for (int j = 0; j < k; ++j) {
    if (delta[j] > best) {
      best = delta[j];
      arg = j;
    }
  }
  if (!(best > -kInf)) return -kInf;
  path[n - 1] = arg;
  for (int64_t t = n - 1; t > 0; --t) path[t - 1] = (*back)[t * k + path[t]];
  return best;
}

}  // namespace emfit::hmm::internal
