// Stochastic character mapping: path samplers, node-state draws and stochastic maps
// (docs/algorithms.md §4.5, oracles 40-41, §4.8 edge cases).
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "emfit/exec/thread_pool.h"
#include "emfit/mk/mk.h"
#include "emfit/mk/tree.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "math/rng.h"
#include "mk/model.h"
#include "mk/pruning.h"
#include "mk/sampling.h"
#include "testing/mk_trees.h"
#include "testing/status_matchers.h"

namespace emfit::mk::internal {
namespace {

using ::emfit::testing::IsOk;

Tree ParseOrDie(const std::string& text) {
  absl::StatusOr<Tree> t = ParseNewick(text);
  EXPECT_THAT(t, IsOk());
  return t.ok() ? *std::move(t) : Tree{};
}

std::vector<std::string> Names(int k) {
  std::vector<std::string> names;
  for (int i = 0; i < k; ++i) names.push_back(std::string(1, static_cast<char>('A' + i)));
  return names;
}

// States: 0-based; -1 missing; -2 ambiguous between 0 and 1.
MkTips Tips(const Tree& tree, const std::vector<int>& states, int k) {
  MkTips tips;
  tips.labels = tree.TipLabels();
  tips.likelihoods = Eigen::MatrixXd::Zero(tree.num_tips, k);
  for (int i = 0; i < tree.num_tips; ++i) {
    if (states[i] == -1) {
      tips.likelihoods.row(i).setOnes();
    } else if (states[i] == -2) {
      tips.likelihoods(i, 0) = tips.likelihoods(i, 1) = 1;
    } else {
      tips.likelihoods(i, states[i]) = 1;
    }
  }
  return tips;
}

// An ARD generator on 3 states with 2 -> 0 forbidden.
Eigen::MatrixXd TestQ() {
  Eigen::MatrixXd q(3, 3);
  q << -1.1, 0.7, 0.4, 0.5, -1.3, 0.8, 0.0, 1.6, -1.6;
  return q;
}

void ExpectValidPath(const std::vector<Segment>& path, int a, int b, double t,
                     const Eigen::MatrixXd& q) {
  ASSERT_FALSE(path.empty());
  EXPECT_EQ(path.front().state, a);
  EXPECT_EQ(path.back().state, b);
  double total = 0;
  for (size_t i = 0; i < path.size(); ++i) {
    EXPECT_GE(path[i].length, 0.0);
    total += path[i].length;
    if (i > 0) {
      EXPECT_NE(path[i].state, path[i - 1].state);
      EXPECT_GT(q(path[i - 1].state, path[i].state), 0.0) << "a forbidden jump";
    }
  }
  EXPECT_NEAR(total, t, 1e-12 * std::max(1.0, t));
}

enum class Kind { kRejection, kModified, kUniformization };
const char* KindName(Kind k) {
  return k == Kind::kRejection ? "rejection" : k == Kind::kModified ? "modified" : "uniformization";
}

// One draw of the given sampler itself (no fallback): false if rejection gave up.
bool DrawPath(const BranchSampler& s, Kind kind, int a, int b, double t, double p_ab, Rng& rng,
              std::vector<Segment>* path) {
  if (kind == Kind::kUniformization) {
    s.Uniformization(a, b, t, p_ab, rng, path);
    return true;
  }
  return s.Rejection(a, b, t, kind == Kind::kModified, rng, path);
}

TEST(MkPathSamplers, EveryPathIsValidForEverySampler) {
  const Eigen::MatrixXd q = TestQ();
  const Generator g(q, false);
  const BranchSampler sampler(g, PathSampler::kAuto, 50.0);
  Rng rng(40);
  std::vector<Segment> path;
  for (double t : {1e-8, 0.05, 0.7, 3.0, 50.0}) {
    Eigen::MatrixXd p;
    g.Transition(t, &p);
    for (int a = 0; a < 3; ++a) {
      for (int b = 0; b < 3; ++b) {
        if (!(p(a, b) > 0)) continue;
        for (Kind kind : {Kind::kRejection, Kind::kModified, Kind::kUniformization}) {
          SCOPED_TRACE(std::string(KindName(kind)) + " t=" + std::to_string(t) + " " +
                       std::to_string(a) + "->" + std::to_string(b));
          for (int rep = 0; rep < 50; ++rep) {
            if (!DrawPath(sampler, kind, a, b, t, p(a, b), rng, &path)) continue;
            ExpectValidPath(path, a, b, t, q);
          }
          sampler.Sample(a, b, t, p(a, b), rng, &path);  // with the fallback: always a path
          ExpectValidPath(path, a, b, t, q);
        }
      }
    }
  }
}

struct Moments {
  Eigen::MatrixXd n_mean, n_se;
  Eigen::VectorXd t_mean, t_se;
  std::map<int, int> jumps;  // histogram of the total number of jumps
};

Moments Simulate(const BranchSampler& s, Kind kind, int a, int b, double t, double p_ab, int m,
                 uint64_t seed) {
  const int k = 3;
  Eigen::MatrixXd sum_n = Eigen::MatrixXd::Zero(k, k), sq_n = sum_n;
  Eigen::VectorXd sum_t = Eigen::VectorXd::Zero(k), sq_t = sum_t;
  Moments out;
  Rng rng(seed);
  std::vector<Segment> path;
  int done = 0;
  while (done < m) {
    if (!DrawPath(s, kind, a, b, t, p_ab, rng, &path)) continue;
    Eigen::MatrixXd n = Eigen::MatrixXd::Zero(k, k);
    Eigen::VectorXd times = Eigen::VectorXd::Zero(k);
    Tally(path, &n, &times);
    sum_n += n;
    sq_n += n.cwiseProduct(n);
    sum_t += times;
    sq_t += times.cwiseProduct(times);
    ++out.jumps[static_cast<int>(path.size()) - 1];
    ++done;
  }
  out.n_mean = sum_n / m;
  out.t_mean = sum_t / m;
  out.n_se = ((sq_n / m - out.n_mean.cwiseProduct(out.n_mean)) / (m - 1)).cwiseMax(0).cwiseSqrt();
  out.t_se = ((sq_t / m - out.t_mean.cwiseProduct(out.t_mean)) / (m - 1)).cwiseMax(0).cwiseSqrt();
  return out;
}

TEST(MkPathSamplers, MonteCarloMeansMatchVanLoanWithin4StandardErrors) {
  const Eigen::MatrixXd q = TestQ();
  const Generator g(q, false);
  const BranchSampler sampler(g, PathSampler::kAuto, 5.0);
  const int m = 20000;
  struct Case {
    int a, b;
    double t;
  };
  for (const Case& c : {Case{0, 0, 0.4}, Case{0, 2, 1.5}, Case{2, 1, 0.1}}) {
    Eigen::MatrixXd p;
    g.Transition(c.t, &p);
    // Exact endpoint-conditioned expectations (§4.4).
    Eigen::MatrixXd bt = Eigen::MatrixXd::Zero(3, 3), integral;
    bt(c.b, c.a) = 1.0 / p(c.a, c.b);
    g.Integral(c.t, bt, &integral);
    const Eigen::MatrixXd s = integral.transpose();
    Eigen::MatrixXd exact_n = q.cwiseProduct(s);
    exact_n.diagonal().setZero();
    const Eigen::VectorXd exact_t = s.diagonal();
    uint64_t seed = 1000;
    for (Kind kind : {Kind::kRejection, Kind::kModified, Kind::kUniformization}) {
      SCOPED_TRACE(std::string(KindName(kind)) + " " + std::to_string(c.a) + "->" +
                   std::to_string(c.b) + " t=" + std::to_string(c.t));
      const Moments mo = Simulate(sampler, kind, c.a, c.b, c.t, p(c.a, c.b), m, ++seed);
      for (int i = 0; i < 3; ++i) {
        EXPECT_LE(std::abs(mo.t_mean[i] - exact_t[i]), 4 * mo.t_se[i] + 1e-12) << "T" << i;
        for (int j = 0; j < 3; ++j) {
          // A count's standard error is at least sqrt(E[N] / m) (E[N^2] >= E[N]), which
          // matters for transitions too rare to be seen in m draws.
          const double se = std::max(mo.n_se(i, j), std::sqrt(exact_n(i, j) / m));
          EXPECT_LE(std::abs(mo.n_mean(i, j) - exact_n(i, j)), 4 * se + 1e-12) << "N" << i << j;
        }
      }
    }
  }
}

// Upper 0.1% point of chi-square with df degrees of freedom (Wilson-Hilferty).
double ChiSquare999(int df) {
  const double z = 3.0902, v = 2.0 / (9.0 * df);
  return df * std::pow(1 - v + z * std::sqrt(v), 3);
}

TEST(MkPathSamplers, JumpCountDistributionsAgreeAcrossSamplers) {
  const Eigen::MatrixXd q = TestQ();
  const Generator g(q, false);
  const BranchSampler sampler(g, PathSampler::kAuto, 5.0);
  const int m = 20000;
  for (const auto& [a, b, t] : {std::tuple<int, int, double>{0, 1, 2.0}, {1, 1, 0.8}}) {
    Eigen::MatrixXd p;
    g.Transition(t, &p);
    const Moments u = Simulate(sampler, Kind::kUniformization, a, b, t, p(a, b), m, 77);
    for (Kind kind : {Kind::kRejection, Kind::kModified}) {
      const Moments r = Simulate(sampler, kind, a, b, t, p(a, b), m, 78);
      // Two-sample chi-square over the jump counts, sparse bins pooled into the last.
      std::vector<double> x, y;
      double rest_x = 0, rest_y = 0;
      for (int j = 0; j < 100; ++j) {
        const double cu = u.jumps.count(j) ? u.jumps.at(j) : 0;
        const double cr = r.jumps.count(j) ? r.jumps.at(j) : 0;
        if (cu + cr >= 20) {
          x.push_back(cu);
          y.push_back(cr);
        } else {
          rest_x += cu;
          rest_y += cr;
        }
      }
      x.push_back(rest_x);
      y.push_back(rest_y);
      double chi2 = 0;
      int bins = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        if (x[i] + y[i] == 0) continue;
        chi2 += (x[i] - y[i]) * (x[i] - y[i]) / (x[i] + y[i]);  // equal sample sizes
        ++bins;
      }
      EXPECT_LT(chi2, ChiSquare999(bins - 1))
          << KindName(kind) << " vs uniformization, " << a << "->" << b << " t=" << t;
    }
  }
}

TEST(MkPathSamplers, RejectionGivesUpOnAHopelessBranchAndSampleFallsBack) {
  const Eigen::MatrixXd q = TestQ();
  const Generator g(q, false);
  const BranchSampler sampler(g, PathSampler::kRejection, 1e-9);
  Eigen::MatrixXd p;
  g.Transition(1e-9, &p);
  Rng rng(5);
  std::vector<Segment> path;
  // P_01 ~ 7e-10: plain rejection would need ~1.4e9 tries.
  EXPECT_FALSE(sampler.Rejection(0, 1, 1e-9, false, rng, &path));
  sampler.Sample(0, 1, 1e-9, p(0, 1), rng, &path);
  ExpectValidPath(path, 0, 1, 1e-9, q);
}

TEST(MkNodeStates, DrawFrequenciesMatchMarginalPosteriorsAndTipsNeverChange) {
  const Tree tree = ParseOrDie(testing::RandomNewick(8, 91));
  const Eigen::MatrixXd q = testing::RandomGenerator(3, 92);
  const MkTips tips = Tips(tree, {0, 1, 2, -1, -2, 0, 0, 1}, 3);
  absl::StatusOr<TreeData> data = MatchTips(tree, tips, 3);
  ASSERT_THAT(data, IsOk());
  const Generator g(q, false);
  Upward up;
  ASSERT_THAT(PruneUp(*data, g, RootPrior::kEqual, Eigen::Vector3d::Constant(1.0 / 3), {}, &up),
              IsOk());
  Expected e;
  Eigen::MatrixXd marginals;
  ASSERT_THAT(ExpectedCounts(*data, g, up, {}, &e, &marginals), IsOk());
  const int m = 20000, n = tree.num_nodes();
  Eigen::MatrixXd freq = Eigen::MatrixXd::Zero(n, 3);
  Rng rng(93);
  std::vector<int> x(n);
  for (int s = 0; s < m; ++s) {
    SampleNodeStates(*data, up, rng, x.data());
    for (int v = 0; v < n; ++v) freq(v, x[v]) += 1;
    EXPECT_EQ(x[0], 0);
    EXPECT_EQ(x[1], 1);
    EXPECT_EQ(x[2], 2);
    EXPECT_LE(x[4], 1);  // ambiguous between 0 and 1
  }
  freq /= m;
  for (int v = 0; v < n; ++v) {
    for (int i = 0; i < 3; ++i) {
      const double p = marginals(v, i);
      const double se = std::sqrt(p * (1 - p) / m);
      EXPECT_LE(std::abs(freq(v, i) - p), 4 * se + 1e-12) << "node " << v << " state " << i;
    }
  }
}

// Checks a map against its tree: node states at both ends of every branch, lengths.
void ExpectValidMap(const Tree& tree, const StochasticMap& map, const Eigen::MatrixXd& q) {
  for (int v = 0; v < tree.num_nodes(); ++v) {
    const int begin = map.segment_offsets[v], end = map.segment_offsets[v + 1];
    if (tree.parent[v] < 0) {
      EXPECT_EQ(begin, end);
      continue;
    }
    ASSERT_LT(begin, end);
    std::vector<Segment> path;
    for (int s = begin; s < end; ++s) {
      path.push_back({map.segment_states[s], map.segment_lengths[s]});
    }
    ExpectValidPath(path, map.node_states[tree.parent[v]], map.node_states[v], tree.length[v], q);
  }
}

TEST(MkStochasticMaps, TerminateAndAreValidOnEveryEdgeCase) {
  // Zero-length, 1e-8 and very long branches, a unary node, absorbing state C, all tips
  // identical, ambiguous and missing tips; every sampler.
  const Tree tree =
      ParseOrDie("(((a:0,b:1e-8):0.5,(c:0,d:1e-8):1e-8):1,((e:500,f:0.2):1e-8,(g:1)u:0):2);");
  Eigen::MatrixXi index = RateIndex(RateModel::kARD, 3);
  index.row(2).setZero();
  struct Data {
    std::vector<int> states;
    double rate;
  };
  for (const Data& d : {Data{{0, 1, 2, 2, 0, 1, -1}, 0.3}, Data{{1, 1, 1, 1, 1, 1, 1}, 1e-10},
                        Data{{-2, 0, -1, 2, -1, -2, 0}, 40.0}}) {
    for (PathSampler policy : {PathSampler::kAuto, PathSampler::kRejection,
                               PathSampler::kModifiedRejection, PathSampler::kUniformization}) {
      SCOPED_TRACE(std::string(PathSamplerName(policy)) + " rate " + std::to_string(d.rate));
      absl::StatusOr<MkParams> params = MkParams::FromRates(
          Names(3), index,
          Eigen::VectorXd::Constant(RateLayout::FromIndex(index, "index")->num_rates, d.rate));
      ASSERT_THAT(params, IsOk());
      int64_t seen = 0;
      const absl::Status s =
          SampleHistories(*params, tree, Tips(tree, d.states, 3), 200, 11, SimmapOptions{policy},
                          {}, [&](int64_t index, const StochasticMap& map) {
                            EXPECT_EQ(index, seen++);
                            ExpectValidMap(tree, map, params->q);
                            return absl::OkStatus();
                          });
      ASSERT_THAT(s, IsOk());
      EXPECT_EQ(seen, 200);
    }
  }
}

TEST(MkStochasticMaps, RefuseModelsWhoseMapsWouldNotFitInMemory) {
  const Tree tree = ParseOrDie(testing::RandomNewick(50, 141, 1.0, 5.0));
  absl::StatusOr<MkParams> params = MkParams::FromRates(Names(3), RateIndex(RateModel::kER, 3),
                                                        Eigen::VectorXd::Constant(1, 1e4));
  ASSERT_THAT(params, IsOk());
  int calls = 0;
  EXPECT_THAT(SampleHistories(*params, tree, Tips(tree, std::vector<int>(50, -1), 3), 10, 1, {}, {},
                              [&](int64_t, const StochasticMap&) {
                                ++calls;
                                return absl::OkStatus();
                              }),
              testing::StatusIs(absl::StatusCode::kResourceExhausted, "changes on average"));
  EXPECT_EQ(calls, 0);
}

TEST(MkStochasticMaps, MeanCountsConvergeToTheExactExpectationsAsOneOverRootN) {
  const Tree tree = ParseOrDie(testing::RandomNewick(20, 121, 0.1, 1.0));
  const Eigen::MatrixXd q = testing::RandomGenerator(3, 122, 0.2, 0.8);
  const std::vector<int> states =
      testing::SimulateTipStates(tree, q, Eigen::Vector3d::Constant(1.0 / 3), 123);
  const MkTips tips = Tips(tree, states, 3);
  absl::StatusOr<MkParams> params = MkParams::FromRates(
      Names(3), RateIndex(RateModel::kARD, 3),
      Eigen::Map<const Eigen::VectorXd>(
          std::vector<double>{q(1, 0), q(2, 0), q(0, 1), q(2, 1), q(0, 2), q(1, 2)}.data(), 6));
  ASSERT_THAT(params, IsOk());
  absl::StatusOr<MkPosteriors> exact = NodePosteriors(*params, tree, tips);
  ASSERT_THAT(exact, IsOk());
  double se_small = 0;
  for (int64_t n : {2000, 8000}) {
    Eigen::MatrixXd sum = Eigen::MatrixXd::Zero(3, 3), sq = sum;
    MapSummary summary(tree.num_nodes(), 3);
    ASSERT_THAT(SampleHistories(*params, tree, tips, n, 7, {}, {},
                                [&](int64_t, const StochasticMap& map) {
                                  sum += map.transitions;
                                  sq += map.transitions.cwiseProduct(map.transitions);
                                  summary.Add(map);
                                  return absl::OkStatus();
                                }),
                IsOk());
    const Eigen::MatrixXd mean = sum / n;
    const Eigen::MatrixXd se = ((sq / n - mean.cwiseProduct(mean)) / (n - 1)).cwiseSqrt();
    EXPECT_TRUE(summary.MeanTransitions().isApprox(mean, 1e-12));
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) {
        if (i == j) continue;
        EXPECT_LE(std::abs(mean(i, j) - exact->transitions(i, j)), 4 * se(i, j)) << i << j;
      }
    }
    EXPECT_NEAR(summary.MeanDwellingTimes().sum(), tree.TotalLength(), 1e-9);
    const Eigen::MatrixXd nodes = summary.NodeFrequencies();
    for (int v = tree.num_tips; v < tree.num_nodes(); ++v) {
      for (int i = 0; i < 3; ++i) {
        const double p = exact->nodes(v, i);
        EXPECT_LE(std::abs(nodes(v, i) - p), 4 * std::sqrt(p * (1 - p) / n) + 1e-12);
      }
    }
    if (n == 2000) {
      se_small = se(0, 1);
    } else {
      // Four times the maps: half the standard error (sampling noise of the SE itself ~2%).
      EXPECT_NEAR(se_small / se(0, 1), 2.0, 0.2);
    }
  }
}

TEST(MkStochasticMaps, AreReproducibleAndIndependentOfTheThreadCount) {
  const Tree tree = ParseOrDie(testing::RandomNewick(30, 131));
  absl::StatusOr<MkParams> params =
      MkParams::FromRates(Names(3), RateIndex(RateModel::kSYM, 3), Eigen::Vector3d(0.3, 0.6, 0.2));
  ASSERT_THAT(params, IsOk());
  const MkTips tips = Tips(tree, std::vector<int>(30, -1), 3);
  auto run = [&](ThreadPool* pool) {
    std::vector<std::string> lines;
    FitControls controls;
    controls.pool = pool;
    EXPECT_THAT(SampleHistories(*params, tree, tips, 300, 99, {}, controls,
                                [&](int64_t, const StochasticMap& map) {
                                  absl::StatusOr<std::string> line =
                                      WriteSimmap(tree, map, params->state_names);
                                  EXPECT_THAT(line, IsOk());
                                  lines.push_back(*line);
                                  return absl::OkStatus();
                                }),
                IsOk());
    return lines;
  };
  ThreadPool pool(2);
  const std::vector<std::string> one = run(nullptr);
  EXPECT_EQ(one, run(&pool));
  EXPECT_EQ(one, run(nullptr));
}

TEST(MkStochasticMaps, SimmapLinesListSegmentsFromTheChildEnd) {
  const Tree tree = ParseOrDie("((A_x:1,B:2):0.5,C:3);");
  StochasticMap map;
  // Nodes: A 0, B 1, C 2, root 3, (A,B) 4.
  map.node_states = {1, 0, 0, 0, 0};
  map.segment_offsets = {0, 2, 3, 4, 4, 5};
  map.segment_states = {0, 1, 0, 0, 0};
  map.segment_lengths = {0.25, 0.75, 2, 3, 0.5};
  absl::StatusOr<std::string> line = WriteSimmap(tree, map, {"s0", "s1"});
  ASSERT_THAT(line, IsOk());
  EXPECT_EQ(*line, "((A_x:{s1,0.75:s0,0.25},B:{s0,2}):{s0,0.5},C:{s0,3});");
  EXPECT_THAT(WriteSimmap(tree, map, {"s:0", "s1"}),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "'s:0'"));
}

}  // namespace
}  // namespace emfit::mk::internal
