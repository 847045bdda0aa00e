// Test helpers for the Mk family: random trees and independent reference computations
// (matrix exponential by Taylor series, likelihoods by brute-force enumeration).
#ifndef EMFIT_TESTS_TESTING_MK_TREES_H_
#define EMFIT_TESTS_TESTING_MK_TREES_H_

#include <Eigen/Core>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "emfit/mk/tree.h"

namespace emfit::testing {

// A random rooted binary tree in Newick with tips t0..t{n-1} and lengths in [lo, hi], built
// by merging random pairs of subtrees (seeded).
inline std::string RandomNewick(int tips, uint64_t seed, double lo = 0.1, double hi = 2.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> len(lo, hi);
  std::vector<std::string> parts;
  for (int i = 0; i < tips; ++i) parts.push_back("t" + std::to_string(i));
  char buf[64];
  while (parts.size() > 1) {
    const size_t a = rng() % parts.size();
    std::string x = parts[a];
    parts.erase(parts.begin() + a);
    const size_t b = rng() % parts.size();
    std::string y = parts[b];
    parts.erase(parts.begin() + b);
    std::snprintf(buf, sizeof(buf), ":%.17g", len(rng));
    std::string merged = "(" + x + buf;
    std::snprintf(buf, sizeof(buf), ":%.17g", len(rng));
    merged += "," + y + buf + ")";
    parts.push_back(merged);
  }
  return parts[0] + ";";
}

// A random generator with rates in [lo, hi] (0 where `forbidden` says so).
inline Eigen::MatrixXd RandomGenerator(int k, uint64_t seed, double lo = 0.2, double hi = 2.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> rate(lo, hi);
  Eigen::MatrixXd q = Eigen::MatrixXd::Zero(k, k);
  for (int i = 0; i < k; ++i) {
    for (int j = 0; j < k; ++j) {
      if (i != j) q(i, j) = rate(rng);
    }
    q(i, i) = -q.row(i).sum();
  }
  return q;
}

// exp(a) by scaling and squaring of a degree-30 Taylor series: slow, simple and independent of
// the library's Pade approximant.
inline Eigen::MatrixXd ReferenceExpm(const Eigen::MatrixXd& a) {
  const double norm = a.cwiseAbs().rowwise().sum().maxCoeff();
  int squarings = 0;
  while (norm / std::pow(2.0, squarings) > 0.25) ++squarings;
  const Eigen::MatrixXd s = a / std::pow(2.0, squarings);
  Eigen::MatrixXd term = Eigen::MatrixXd::Identity(a.rows(), a.cols());
  Eigen::MatrixXd sum = term;
  for (int i = 1; i <= 30; ++i) {
    term = term * s / i;
    sum += term;
  }
  for (int i = 0; i < squarings; ++i) sum = sum * sum;
  return sum;
}

// Likelihood of one character by summing over every assignment of states to the internal
// nodes (k^internal terms): sum rho(x_root) prod_branches P(t)_{x_u x_v} with the tip vectors
// `tip_lik` (tips x k). Also the marginal posterior of every node (N x k) when non-null.
inline double BruteForceLikelihood(const mk::Tree& tree, const Eigen::MatrixXd& tip_lik,
                                   const Eigen::MatrixXd& q, const Eigen::VectorXd& rho,
                                   Eigen::MatrixXd* marginals = nullptr) {
  const int k = static_cast<int>(q.rows());
  const int n = tree.num_nodes();
  std::vector<Eigen::MatrixXd> p(n);
  for (int v = 0; v < n; ++v) {
    if (tree.parent[v] >= 0) p[v] = ReferenceExpm(q * tree.length[v]);
  }
  // Every node's state enumerated (tips too, weighted by their vectors).
  std::vector<int> x(n, 0);
  double total = 0;
  if (marginals != nullptr) marginals->setZero(n, k);
  while (true) {
    double w = rho[x[tree.root()]];
    for (int v = 0; v < n && w != 0; ++v) {
      if (tree.parent[v] >= 0) w *= p[v](x[tree.parent[v]], x[v]);
      if (tree.IsTip(v)) w *= tip_lik(v, x[v]);
    }
    total += w;
    if (marginals != nullptr) {
      for (int v = 0; v < n; ++v) (*marginals)(v, x[v]) += w;
    }
    int v = 0;
    while (v < n && ++x[v] == k) x[v++] = 0;
    if (v == n) break;
  }
  if (marginals != nullptr) *marginals /= total;
  return total;
}

// Tip states simulated down `tree` under generator q from a root drawn from rho (seeded).
inline std::vector<int> SimulateTipStates(const mk::Tree& tree, const Eigen::MatrixXd& q,
                                          const Eigen::VectorXd& rho, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  auto draw = [&](const Eigen::VectorXd& w) {
    double x = u(rng) * w.sum();
    for (int i = 0; i < w.size(); ++i) {
      if (x < w[i]) return i;
      x -= w[i];
    }
    return static_cast<int>(w.size()) - 1;
  };
  std::vector<int> state(tree.num_nodes());
  state[tree.root()] = draw(rho);
  for (auto it = tree.postorder.rbegin(); it != tree.postorder.rend(); ++it) {
    const int v = *it;
    if (tree.parent[v] < 0) continue;
    state[v] = draw(ReferenceExpm(q * tree.length[v]).row(state[tree.parent[v]]).transpose());
  }
  return std::vector<int>(state.begin(), state.begin() + tree.num_tips);
}

}  // namespace emfit::testing

#endif  // EMFIT_TESTS_TESTING_MK_TREES_H_
