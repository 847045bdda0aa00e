#include "hmm/forward_backward.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace emfit::hmm::internal {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// exp of anything below is treated as 0 (ScaleRows).
constexpr double kMinExpArgument = -708.0;

// The recursions are written once with the number of states K as a template argument: small K
// (the usual case) gets loops of constant trip count that the compiler unrolls and keeps in
// registers; K = 0 reads it from the chain.
template <int K>
inline int States(const Chain& chain) {
  return K > 0 ? K : chain.k;
}

// For small K the forward variable and beta-hat live in registers, and no division sits on the
// recursion's critical path: the reciprocal of step t-1's normaliser multiplies step t's
// densities while the matrix-vector product runs, and the normalisation of gamma in the
// backward pass is off the chain (docs/benchmarks.md, HMM).
template <int K>
bool ForwardScaledT(const Chain& chain, const double* b, int64_t n, const double* before,
                    double* alpha, double* inv_c) {
  static_assert(K > 0);
  // Below this normaliser, the lagged scaling could push products into the subnormal range:
  // the step then normalises first.
  constexpr double kTiny = 1e-280;
  const double* a = chain.transitions.data();
  double cur[K];  // the unnormalised forward variable of the last step (alpha-bar)
  double r = 1;   // its normaliser's reciprocal
  if (before == nullptr) {
    for (int j = 0; j < K; ++j) cur[j] = chain.start[j];
  } else {
    for (int j = 0; j < K; ++j) cur[j] = before[j];
  }
  for (int64_t t = 0; t < n; ++t) {
    const double* bt = b + t * K;
    double next[K];
    if (t == 0 && before == nullptr) {
      for (int j = 0; j < K; ++j) next[j] = cur[j] * bt[j];
    } else {
      if (r > 1.0 / kTiny) {
        for (int i = 0; i < K; ++i) cur[i] *= r;
        r = 1;
      }
      // (A^T alpha_{t-1})_j = sum_i alpha_{t-1}(i) A_ij, rows of A scaled and added.
      for (int j = 0; j < K; ++j) next[j] = cur[0] * a[j];
      for (int i = 1; i < K; ++i) {
        for (int j = 0; j < K; ++j) next[j] += cur[i] * a[i * K + j];
      }
      const double scale = r;
      for (int j = 0; j < K; ++j) next[j] *= bt[j] * scale;
    }
    double sum = 0;
    for (int j = 0; j < K; ++j) sum += next[j];
    if (!(sum > 0)) return false;
    r = 1.0 / sum;
    inv_c[t] = r;
    double* at = alpha + t * K;
    for (int j = 0; j < K; ++j) {
      cur[j] = next[j];
      at[j] = next[j] * r;
    }
  }
  return true;
}

// Any K, through memory.
bool ForwardScaledAny(const Chain& chain, const double* b, int64_t n, const double* before,
                      double* alpha, double* inv_c) {
  const int k = chain.k;
  const double* a = chain.transitions.data();
  for (int64_t t = 0; t < n; ++t) {
    double* at = alpha + t * k;
    const double* bt = b + t * k;
    const double* prev = t > 0 ? at - k : before;
    if (prev == nullptr) {
      for (int j = 0; j < k; ++j) at[j] = chain.start[j] * bt[j];
    } else {
      for (int j = 0; j < k; ++j) at[j] = prev[0] * a[j];
      for (int i = 1; i < k; ++i) {
        const double p = prev[i];
        const double* ai = a + static_cast<int64_t>(i) * k;
        for (int j = 0; j < k; ++j) at[j] += p * ai[j];
      }
      for (int j = 0; j < k; ++j) at[j] *= bt[j];
    }
    double sum = 0;
    for (int j = 0; j < k; ++j) sum += at[j];
    if (!(sum > 0)) return false;
    const double inv = 1.0 / sum;
    inv_c[t] = inv;
    for (int j = 0; j < k; ++j) at[j] *= inv;
  }
  return true;
}

// K > 0: fixed; K = 0: chain.k, with the caller's beta as the only state.
template <int K>
bool BackwardScaledT(const Chain& chain, const double* b, double* alpha, const double* inv_c,
                     int64_t n, const double* before, double* beta, double* m) {
  const int k = K > 0 ? K : chain.k;
  const double* a = chain.transitions.data();
  const double* at = chain.transitions_t.data();
  constexpr int kLocal = K > 0 ? K : 1;
  double be_local[kLocal], w_local[kLocal];
  double* be = K > 0 ? be_local : beta;
  std::vector<double> w_dynamic(K > 0 ? 0 : static_cast<size_t>(k));
  double* w = K > 0 ? w_local : w_dynamic.data();
  if (K > 0) {
    for (int j = 0; j < k; ++j) be[j] = beta[j];
  }
  for (int64_t t = n - 1; t >= 0; --t) {
    double* al = alpha + t * k;
    const double* bt = b + t * k;
    const double* prev = t > 0 ? al - k : before;
    if (prev != nullptr) {
      // W_t = b_t o beta_t / c_t; M += alpha_{t-1} W_t^T; beta_{t-1} = A W_t.
      const double r = inv_c[t];
      for (int j = 0; j < k; ++j) w[j] = bt[j] * be[j] * r;
      for (int i = 0; i < k; ++i) {
        const double p = prev[i];
        double* mi = m + static_cast<int64_t>(i) * k;
        for (int j = 0; j < k; ++j) mi[j] += p * w[j];
      }
    }
    // gamma_t = alpha_t o beta_t, renormalised against rounding drift.
    double sum = 0;
    for (int j = 0; j < k; ++j) {
      al[j] *= be[j];
      sum += al[j];
    }
    if (!(sum > 0 && sum < kInf)) return false;
    const double inv = 1.0 / sum;
    for (int j = 0; j < k; ++j) al[j] *= inv;
    if (prev == nullptr) continue;
    if (K > 0) {
      for (int i = 0; i < k; ++i) {
        double v = a[i * k] * w[0];
        for (int j = 1; j < k; ++j) v += a[i * k + j] * w[j];
        be[i] = v;
      }
    } else {
      for (int i = 0; i < k; ++i) be[i] = w[0] * at[i];
      for (int j = 1; j < k; ++j) {
        const double wj = w[j];
        const double* atj = at + static_cast<int64_t>(j) * k;
        for (int i = 0; i < k; ++i) be[i] += wj * atj[i];
      }
    }
  }
  if (K > 0) {
    for (int j = 0; j < k; ++j) beta[j] = be[j];
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
  // One pass of exp over the block, which Eigen vectorises. Eigen's exp returns about 5e-309
  // for every argument below -709.78 (-inf included), so those are set to 0 explicitly: a
  // state the step rules out must stay ruled out, and a density that small relative to the
  // step's best sends the recursion to log space (c_t = 0) rather than to a wrong value.
  Eigen::Map<Eigen::ArrayXd> all(g, n * k);
  all = (all < kMinExpArgument).select(0.0, all.exp());
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
    case 8:                                           \
      return call_fixed(8);                           \
    default:                                          \
      return call_any;                                \
  }

bool ScaleRows(double* g, int64_t n, int k, double* shift) {
#define EMFIT_FIXED(K) ScaleRowsT<K>(g, n, k, shift)
  EMFIT_HMM_DISPATCH_K(k, EMFIT_FIXED, ScaleRowsT<0>(g, n, k, shift))
#undef EMFIT_FIXED
}

bool ForwardScaled(const Chain& chain, const double* b, int64_t n, const double* before,
                   double* alpha, double* inv_c) {
#define EMFIT_FIXED(K) ForwardScaledT<K>(chain, b, n, before, alpha, inv_c)
  EMFIT_HMM_DISPATCH_K(chain.k, EMFIT_FIXED, ForwardScaledAny(chain, b, n, before, alpha, inv_c))
#undef EMFIT_FIXED
}

bool BackwardScaled(const Chain& chain, const double* b, double* alpha, const double* inv_c,
                    int64_t n, const double* before, double* beta, double* m) {
#define EMFIT_FIXED(K) BackwardScaledT<K>(chain, b, alpha, inv_c, n, before, beta, m)
  EMFIT_HMM_DISPATCH_K(chain.k, EMFIT_FIXED,
                       BackwardScaledT<0>(chain, b, alpha, inv_c, n, before, beta, m))
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
