// Stochastic character mapping: node states from their joint posterior and branch paths given
// their end states (docs/algorithms.md §4.5; Hobolth & Stone 2009).
#ifndef EMFIT_CORE_MK_SAMPLING_H_
#define EMFIT_CORE_MK_SAMPLING_H_

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "emfit/mk/mk.h"
#include "math/rng.h"
#include "mk/model.h"
#include "mk/pruning.h"

namespace emfit::mk::internal {

using ::emfit::internal::Rng;

// Draws the state of every node for every character from the joint posterior given the
// pruning `up`: the root from rho o L_root, then pre-order each child b of a node in state a
// with probability proportional to P_ab(t) L(b). Observed tips keep their state; ambiguous
// and missing tips are drawn. `states` gets N*C entries, node-major (v*C + c).
void SampleNodeStates(const TreeData& data, const Upward& up, Rng& rng, int* states);

// One piece of a branch history.
struct Segment {
  int state;
  double length;
};

// Draws paths of a continuous-time chain on [0, t] given X(0) = a and X(t) = b. Every call
// terminates: rejection is capped (1000 tries, and 10^6 or 100 mu t jumps a try) and then
// falls back to uniformisation, which is exact and bounded. Immutable after construction;
// thread-safe.
class BranchSampler {
 public:
  // `max_length`: the longest branch to be sampled (sizes the cache of powers of R).
  BranchSampler(const Generator& generator, PathSampler policy, double max_length);

  // Replaces `path` by a history from a (first segment) to b (last segment); consecutive
  // segments differ in state and the lengths sum to t. `p_ab` = P(t)_ab > 0.
  void Sample(int a, int b, double t, double p_ab, Rng& rng, std::vector<Segment>* path) const;

  // The samplers themselves (for tests): each returns false when it gave up.
  bool Rejection(int a, int b, double t, bool modified, Rng& rng, std::vector<Segment>* path) const;
  void Uniformization(int a, int b, double t, double p_ab, Rng& rng,
                      std::vector<Segment>* path) const;

 private:
  // Column b of R^m (k values): cached, or computed into `scratch` for large m.
  int Jump(int from, Rng& rng) const;

  const Generator& generator_;
  PathSampler policy_;
  int k_;
  Eigen::VectorXd exit_;                 // q_i
  Eigen::MatrixXd jump_cdf_;             // k x k cumulative q_ij / q_i over j (row i)
  double mu_ = 0;                        // max_i q_i
  Eigen::MatrixXd r_;                    // I + Q / mu
  std::vector<Eigen::MatrixXd> powers_;  // R^0 .. R^M
};

// Adds a path's jumps and dwelling times to `n` (k x k) and `times` (k).
void Tally(const std::vector<Segment>& path, Eigen::MatrixXd* n, Eigen::VectorXd* times);

}  // namespace emfit::mk::internal

#endif  // EMFIT_CORE_MK_SAMPLING_H_
