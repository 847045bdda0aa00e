#include "mk/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace emfit::mk::internal {

namespace {

// Index drawn from weights w (not normalised, sum > 0); the last positive one on round-off.
int Categorical(const double* w, int k, Rng& rng) {
  double total = 0;
  for (int i = 0; i < k; ++i) total += w[i];
  double u = rng.Uniform() * total;
  int last = -1;
  for (int i = 0; i < k; ++i) {
    if (w[i] <= 0) continue;
    last = i;
    if (u < w[i]) return i;
    u -= w[i];
  }
  return last;
}

double Exponential(Rng& rng) { return -std::log1p(-rng.Uniform()); }

constexpr int kMaxTries = 1000;
// Memory bound on the cached powers of R (doubles).
constexpr int64_t kMaxCachedValues = int64_t{1} << 20;

}  // namespace

void SampleNodeStates(const TreeData& data, const Upward& up, Rng& rng, int* states) {
  const Tree& tree = *data.tree;
  const int k = data.k, chars = data.characters;
  Eigen::VectorXd w(k);
  for (int c = 0; c < chars; ++c) {
    const Eigen::Index root_col = static_cast<Eigen::Index>(tree.root()) * chars + c;
    for (int i = 0; i < k; ++i) w[i] = up.rho(i, c) * up.lhat(i, root_col);
    states[static_cast<int64_t>(tree.root()) * chars + c] = Categorical(w.data(), k, rng);
  }
  for (auto it = tree.postorder.rbegin(); it != tree.postorder.rend(); ++it) {
    const int v = *it;
    if (tree.parent[v] < 0) continue;
    const auto p = up.p.middleCols(static_cast<Eigen::Index>(v) * k, k);
    for (int c = 0; c < chars; ++c) {
      const int a = states[static_cast<int64_t>(tree.parent[v]) * chars + c];
      const Eigen::Index col = static_cast<Eigen::Index>(v) * chars + c;
      for (int b = 0; b < k; ++b) w[b] = p(a, b) * up.lhat(b, col);
      states[static_cast<int64_t>(v) * chars + c] = Categorical(w.data(), k, rng);
    }
  }
}

BranchSampler::BranchSampler(const Generator& generator, PathSampler policy, double max_length)
    : generator_(generator), policy_(policy), k_(generator.k()) {
  const Eigen::MatrixXd& q = generator.q();
  exit_ = -q.diagonal();
  jump_cdf_.setZero(k_, k_);
  for (int i = 0; i < k_; ++i) {
    double acc = 0;
    for (int j = 0; j < k_; ++j) {
      if (j != i) acc += q(i, j);
      jump_cdf_(i, j) = exit_[i] > 0 ? acc / exit_[i] : 0.0;
    }
  }
  mu_ = generator.max_exit_rate();
  if (mu_ > 0) {
    r_ = Eigen::MatrixXd::Identity(k_, k_) + q / mu_;
    r_ = r_.cwiseMax(0.0);
    const double mt = mu_ * std::max(max_length, 0.0);
    const int64_t want = static_cast<int64_t>(std::ceil(mt + 10 * std::sqrt(mt) + 20));
    const int64_t cap = std::max<int64_t>(1, kMaxCachedValues / (int64_t{k_} * k_));
    const int64_t count = std::min(want, cap) + 1;
    powers_.resize(count);
    powers_[0].setIdentity(k_, k_);
    for (int64_t m = 1; m < count; ++m) powers_[m] = powers_[m - 1] * r_;
  }
}

int BranchSampler::Jump(int from, Rng& rng) const {
  const double u = rng.Uniform();
  int last = -1;
  for (int j = 0; j < k_; ++j) {
    if (j == from || generator_.q()(from, j) <= 0) continue;
    last = j;
    if (u < jump_cdf_(from, j)) return j;
  }
  return last;
}

bool BranchSampler::Rejection(int a, int b, double t, bool modified, Rng& rng,
                              std::vector<Segment>* path) const {
  const double max_jumps = std::max(1e6, 100 * mu_ * t);
  for (int attempt = 0; attempt < kMaxTries; ++attempt) {
    path->clear();
    int x = a;
    double s = 0;
    if (modified && a != b) {
      // The first jump conditioned to happen before t (Nielsen 2002).
      const double qa = exit_[a];
      if (!(qa > 0)) return false;
      const double tau = -std::log1p(-rng.Uniform() * -std::expm1(-qa * t)) / qa;
      path->push_back({a, std::min(tau, t)});
      s = std::min(tau, t);
      x = Jump(a, rng);
    }
    double jumps = 0;
    bool gave_up = false;
    while (true) {
      const double qx = exit_[x];
      const double hold = qx > 0 ? Exponential(rng) / qx : std::numeric_limits<double>::infinity();
      if (s + hold >= t) {
        path->push_back({x, t - s});
        break;
      }
      path->push_back({x, hold});
      s += hold;
      x = Jump(x, rng);
      if (++jumps > max_jumps) {
        gave_up = true;
        break;
      }
    }
    if (!gave_up && x == b) return true;
  }
  return false;
}

void BranchSampler::Uniformization(int a, int b, double t, double p_ab, Rng& rng,
                                   std::vector<Segment>* path) const {
  path->clear();
  if (!(mu_ > 0)) {  // no transitions at all: then a == b
    path->push_back({a, t});
    return;
  }
  const double mt = mu_ * t;
  const int64_t cached = static_cast<int64_t>(powers_.size());
  const int64_t hard = std::max<int64_t>(
      cached, static_cast<int64_t>(std::ceil(mt + 20 * std::sqrt(mt + 1) + 100 + 10.0 * k_)));
  // Row a of R^n, for n beyond the cache.
  Eigen::RowVectorXd row;
  // The number of events: Pr(n) = Pois(n; mu t) (R^n)_ab / P_ab(t), summed in log space.
  const double u = rng.Uniform();
  const double log_mt = std::log(mt), log_p = std::log(p_ab);
  double cum = 0;
  int64_t n = -1, last = 0;
  for (int64_t m = 0; m <= hard; ++m) {
    double r;
    if (m < cached) {
      r = powers_[m](a, b);
    } else {
      if (m == cached)
        row = powers_[cached - 1].row(a) * r_;
      else
        row = row * r_;
      r = row[b];
    }
    if (r > 0) {
      cum += std::exp(-mt + m * log_mt - std::lgamma(m + 1.0) + std::log(r) - log_p);
      last = m;
    }
    if (cum >= u) {
      n = m;
      break;
    }
  }
  if (n < 0) n = last;
  if (n == 0) {
    path->push_back({a, t});
    return;
  }
  // Event times: sorted uniforms on [0, t].
  std::vector<double> times(n);
  for (double& x : times) x = rng.Uniform() * t;
  std::sort(times.begin(), times.end());
  // Columns b of R^m for m < n when beyond the cache.
  Eigen::MatrixXd cols;  // k x n: column m is R^m e_b
  if (n > cached) {
    cols.resize(k_, n);
    cols.col(0) = Eigen::VectorXd::Unit(k_, b);
    for (int64_t m = 1; m < n; ++m) cols.col(m).noalias() = r_ * cols.col(m - 1);
  }
  auto column = [&](int64_t m, int y) { return m < cached ? powers_[m](y, b) : cols(y, m); };
  Eigen::VectorXd w(k_);
  int x = a;
  double start = 0;
  for (int64_t j = 1; j <= n; ++j) {
    for (int y = 0; y < k_; ++y) w[y] = r_(x, y) * column(n - j, y);
    const int y = Categorical(w.data(), k_, rng);
    if (y != x) {  // a real jump (virtual ones are dropped)
      path->push_back({x, times[j - 1] - start});
      start = times[j - 1];
      x = y;
    }
  }
  path->push_back({x, t - start});
}

void BranchSampler::Sample(int a, int b, double t, double p_ab, Rng& rng,
                           std::vector<Segment>* path) const {
  if (t == 0) {
    path->assign(1, {a, 0.0});
    return;
  }
  bool done = false;
  switch (policy_) {
    case PathSampler::kAuto:
      if (p_ab >= 0.1) done = Rejection(a, b, t, /*modified=*/true, rng, path);
      break;
    case PathSampler::kRejection:
      done = Rejection(a, b, t, /*modified=*/false, rng, path);
      break;
    case PathSampler::kModifiedRejection:
      done = Rejection(a, b, t, /*modified=*/true, rng, path);
      break;
    case PathSampler::kUniformization:
      break;
  }
  if (!done) Uniformization(a, b, t, p_ab, rng, path);
}

void Tally(const std::vector<Segment>& path, Eigen::MatrixXd* n, Eigen::VectorXd* times) {
  for (size_t i = 0; i < path.size(); ++i) {
    (*times)[path[i].state] += path[i].length;
    if (i > 0) (*n)(path[i - 1].state, path[i].state) += 1;
  }
}

}  // namespace emfit::mk::internal
