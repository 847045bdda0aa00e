#include "hmm/forward_backward.h"

#include <algorithm>
#include <cmath>
#include <limits>

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

template <int K>
bool ForwardScaledT(const Chain& chain, const double* b, int64_t n, const double* before,
                    double* alpha, double* c) {
  const int k = States<K>(chain);
  const double* a = chain.transitions.data();
  const double* pi = chain.start.data();
  for (int64_t t = 0; t < n; ++t) {
    double* at = alpha + t * k;
    const double* bt = b + t * k;
    const double* prev = t > 0 ? at - k : before;
    if (prev == nullptr) {
      for (int j = 0; j < k; ++j) at[j] = pi[j] * bt[j];
    } else {
      // (A^T alpha_{t-1})_j = sum_i alpha_{t-1}(i) A_ij: rows of A scaled and added.
      for (int j = 0; j < k; ++j) at[j] = prev[0] * a[j];
      for (int i = 1; i < k; ++i) {
        const double p = prev[i];
        const double* ai = a + i * k;
        for (int j = 0; j < k; ++j) at[j] += p * ai[j];
      }
      for (int j = 0; j < k; ++j) at[j] *= bt[j];
    }
    double sum = 0;
    for (int j = 0; j < k; ++j) sum += at[j];
    c[t] = sum;
    if (!(sum > 0)) return false;
    const double inv = 1.0 / sum;
    for (int j = 0; j < k; ++j) at[j] *= inv;
  }
  return true;
}

template <int K>
bool BackwardScaledT(const Chain& chain, double* b, double* alpha, const double* c, int64_t n,
                     const double* before, double* beta, double* m) {
  const int k = States<K>(chain);
  const double* at = chain.transitions_t.data();
  for (int64_t t = n - 1; t >= 0; --t) {
    double* al = alpha + t * k;
    double* w = b + t * k;
    const double* prev = t > 0 ? al - k : before;
    // gamma_t = alpha_t o beta_t / s_t; s_t = 1 up to rounding, and also the sum of the pair
    // posteriors of step t, which dividing W_t by it makes exactly 1.
    double sum = 0;
    for (int j = 0; j < k; ++j) {
      al[j] *= beta[j];
      sum += al[j];
    }
    if (!(sum > 0 && sum < kInf)) return false;
    const double inv = 1.0 / sum;
    for (int j = 0; j < k; ++j) al[j] *= inv;
    if (prev == nullptr) continue;
    // W_t = b_t o beta_t / (c_t s_t); M += alpha_{t-1} W_t^T; beta_{t-1} = A W_t.
    const double scale = inv / c[t];
    for (int j = 0; j < k; ++j) w[j] *= beta[j] * scale;
    for (int i = 0; i < k; ++i) {
      const double p = prev[i];
      double* mi = m + i * k;
      for (int j = 0; j < k; ++j) mi[j] += p * w[j];
    }
    for (int i = 0; i < k; ++i) beta[i] = w[0] * at[i];
    for (int j = 1; j < k; ++j) {
      const double wj = w[j];
      const double* atj = at + j * k;
      for (int i = 0; i < k; ++i) beta[i] += wj * atj[i];
    }
  }
  return true;
}

}  // namespace

Chain Chain::From(const Eigen::VectorXd& start, const Eigen::MatrixXd& transitions) {
  Chain c;
  c.k = static_cast<int>(start.size());
  c.start = start;
  c.transitions = transitions;
  c.transitions_t = transitions.transpose();
  c.log_start = start.array().log();
  c.log_transitions = transitions.array().log();
  c.log_transitions_t = c.log_transitions.transpose();
  return c;
}

bool ScaleRows(double* g, int64_t n, int k, double* shift) {
  for (int64_t t = 0; t < n; ++t) {
    double* gt = g + t * k;
    double top = gt[0];
    for (int j = 1; j < k; ++j) top = std::max(top, gt[j]);
    if (!std::isfinite(top)) return false;
    shift[t] = top;
    for (int j = 0; j < k; ++j) gt[j] -= top;
  }
  // One pass of exp over the block, which Eigen vectorises.
  Eigen::Map<Eigen::ArrayXd> all(g, n * k);
  all = all.exp();
  return true;
}

bool ForwardScaled(const Chain& chain, const double* b, int64_t n, const double* before,
                   double* alpha, double* c) {
  switch (chain.k) {
    case 1:
      return ForwardScaledT<1>(chain, b, n, before, alpha, c);
    case 2:
      return ForwardScaledT<2>(chain, b, n, before, alpha, c);
    case 3:
      return ForwardScaledT<3>(chain, b, n, before, alpha, c);
    case 4:
      return ForwardScaledT<4>(chain, b, n, before, alpha, c);
    case 5:
      return ForwardScaledT<5>(chain, b, n, before, alpha, c);
    case 6:
      return ForwardScaledT<6>(chain, b, n, before, alpha, c);
    case 8:
      return ForwardScaledT<8>(chain, b, n, before, alpha, c);
    case 16:
      return ForwardScaledT<16>(chain, b, n, before, alpha, c);
    default:
      return ForwardScaledT<0>(chain, b, n, before, alpha, c);
  }
}

bool BackwardScaled(const Chain& chain, double* b, double* alpha, const double* c, int64_t n,
                    const double* before, double* beta, double* m) {
  switch (chain.k) {
    case 1:
      return BackwardScaledT<1>(chain, b, alpha, c, n, before, beta, m);
    case 2:
      return BackwardScaledT<2>(chain, b, alpha, c, n, before, beta, m);
    case 3:
      return BackwardScaledT<3>(chain, b, alpha, c, n, before, beta, m);
    case 4:
      return BackwardScaledT<4>(chain, b, alpha, c, n, before, beta, m);
    case 5:
      return BackwardScaledT<5>(chain, b, alpha, c, n, before, beta, m);
    case 6:
      return BackwardScaledT<6>(chain, b, alpha, c, n, before, beta, m);
    case 8:
      return BackwardScaledT<8>(chain, b, alpha, c, n, before, beta, m);
    case 16:
      return BackwardScaledT<16>(chain, b, alpha, c, n, before, beta, m);
    default:
      return BackwardScaledT<0>(chain, b, alpha, c, n, before, beta, m);
  }
}

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
