// Hidden Markov models through the public API (docs/algorithms.md §3 and §7, HMM oracles
// 24-29): Baum-Welch on every emission type, reductions to known cases, structural zeros, fixed
// parameters, weights, long and short sequences, thread-count independence, parameter
// recovery, bad input.
#include "emfit/hmm/hmm.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "emfit/exec/thread_pool.h"
#include "emfit/gmm/gmm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/hmm_data.h"
#include "testing/status_matchers.h"

namespace emfit::hmm {
namespace {

using ::emfit::testing::ExpectNonDecreasing;
using ::emfit::testing::IsOk;
using ::emfit::testing::SampleHmm;
using ::emfit::testing::SeparatedModel;
using ::emfit::testing::StatusIs;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr EmissionType kAllEmissions[] = {EmissionType::kGaussian, EmissionType::kCategorical,
                                          EmissionType::kPoisson};

HmmSpec SpecFor(const HmmParams& model, int k = -1) {
  HmmSpec spec;
  spec.k = k < 0 ? model.k() : k;
  spec.emission = model.emission_type();
  if (const auto* g = std::get_if<GaussianEmissions>(&model.emissions)) {
    spec.covariance_type = g->covariance_type;
  }
  return spec;
}

// A starting point near `truth` but not at it: rows mixed with the uniform distribution,
// Gaussian means moved, symbol and rate parameters perturbed.
HmmParams Perturbed(const HmmParams& truth) {
  HmmParams p = truth;
  const int k = truth.k();
  p.start = 0.5 * truth.start + 0.5 * Eigen::VectorXd::Constant(k, 1.0 / k);
  p.transitions = 0.5 * truth.transitions + 0.5 * Eigen::MatrixXd::Constant(k, k, 1.0 / k);
  if (auto* g = std::get_if<GaussianEmissions>(&p.emissions)) {
    g->means.array() += 0.7;
  } else if (auto* c = std::get_if<CategoricalEmissions>(&p.emissions)) {
    c->probabilities = 0.5 * c->probabilities.array() + 0.5 / c->probabilities.cols();
  } else {
    std::get<PoissonEmissions>(p.emissions).rates *= 1.3;
  }
  return p;
}

FitOptions Iterations(int n, double tol = 0) {
  FitOptions o;
  o.max_iter = n;
  o.tol = tol;
  return o;
}

TEST(HmmFit, LogLikelihoodNeverDecreasesForEveryEmission) {
  for (EmissionType type : kAllEmissions) {
    SCOPED_TRACE(EmissionTypeName(type));
    const HmmParams truth = SeparatedModel(type, 3);
    const Dataset data = SampleHmm(truth, {300, 150, 90}, 1);
    HmmSpec spec = SpecFor(truth);
    spec.reg_covar = 0;
    spec.init_params = Perturbed(truth);
    absl::StatusOr<HmmFitResult> r = Fit(data, spec, Iterations(40));
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->summary.history.size(), 41u);
    ExpectNonDecreasing(r->summary.history);
    // The model returned is the one scored last.
    absl::StatusOr<ScoreResult> s = Score(r->params, data);
    ASSERT_THAT(s, IsOk());
    EXPECT_NEAR(s->log_likelihood, r->summary.log_likelihood,
                1e-9 * std::abs(r->summary.log_likelihood));
  }
}

TEST(HmmFit, GaussianCovarianceTypesAndMissingValuesAreMonotone) {
  for (gmm::CovarianceType type : {gmm::CovarianceType::kFull, gmm::CovarianceType::kTied,
                                   gmm::CovarianceType::kDiag, gmm::CovarianceType::kSpherical}) {
    SCOPED_TRACE(gmm::CovarianceTypeName(type));
    const HmmParams truth = SeparatedModel(EmissionType::kGaussian, 3, 3, 0, type);
    Dataset data = SampleHmm(truth, {400, 200}, 2);
    std::mt19937_64 rng(3);
    std::bernoulli_distribution drop(0.2);
    for (Eigen::Index i = 0; i < data.rows(); ++i) {
      for (Eigen::Index c = 0; c < data.cols(); ++c) {
        if (drop(rng)) data.x(i, c) = kNaN;
      }
    }
    data.x.row(5).setConstant(kNaN);  // a step with nothing observed
    int64_t empty = 0;
    for (Eigen::Index i = 0; i < data.rows(); ++i) empty += data.x.row(i).array().isNaN().all();
    HmmSpec spec = SpecFor(truth);
    spec.reg_covar = 0;
    spec.init_params = Perturbed(truth);
    absl::StatusOr<HmmFitResult> r = Fit(data, spec, Iterations(30));
    ASSERT_THAT(r, IsOk());
    ExpectNonDecreasing(r->summary.history);
    EXPECT_EQ(r->summary.rows_skipped, empty);
    EXPECT_EQ(r->summary.rows_used, data.rows() - empty);
  }
}

TEST(HmmFit, OneStateIsTheSumOfTheLogDensities) {
  // K = 1 (oracle 25): a Poisson HMM with one state fits the mean, and its log-likelihood is
  // sum_t ln Poisson(x_t | mean).
  const HmmParams truth = SeparatedModel(EmissionType::kPoisson, 1, 1);
  const Dataset data = SampleHmm(truth, {50, 70}, 4);
  HmmSpec spec = SpecFor(truth);
  absl::StatusOr<HmmFitResult> r = Fit(data, spec, Iterations(3));
  ASSERT_THAT(r, IsOk());
  const double mean = data.x.col(0).mean();
  EXPECT_NEAR(std::get<PoissonEmissions>(r->params.emissions).rates(0, 0), mean, 1e-12 * mean);
  double want = 0;
  for (Eigen::Index i = 0; i < data.rows(); ++i) {
    want += data.x(i, 0) * std::log(mean) - mean - std::lgamma(data.x(i, 0) + 1);
  }
  EXPECT_NEAR(r->summary.log_likelihood, want, 1e-10 * std::abs(want));
}

TEST(HmmScore, RowsOfTransitionsEqualToStartGiveTheMixtureLikelihood) {
  // Oracle 25: with every row of A equal to pi, the steps are independent draws from the
  // mixture with weights pi and the same components, scored by gmm::Score.
  for (gmm::CovarianceType type : {gmm::CovarianceType::kFull, gmm::CovarianceType::kDiag}) {
    HmmParams p = SeparatedModel(EmissionType::kGaussian, 3, 2, 0, type);
    p.start << 0.5, 0.3, 0.2;
    p.transitions = p.start.transpose().replicate(3, 1);
    Dataset data = SampleHmm(p, {100, 37}, 5);
    data.x(3, 1) = kNaN;
    const auto& g = std::get<GaussianEmissions>(p.emissions);
    gmm::GmmParams mixture;
    mixture.covariance_type = type;
    mixture.weights = p.start;
    mixture.means = g.means;
    mixture.covariances = g.covariances;
    absl::StatusOr<ScoreResult> h = Score(p, data);
    absl::StatusOr<gmm::ScoreResult> m = gmm::Score(mixture, Dataset{data.x, {}});
    ASSERT_THAT(h, IsOk());
    ASSERT_THAT(m, IsOk());
    EXPECT_NEAR(h->log_likelihood, m->log_likelihood, 1e-12 * std::abs(m->log_likelihood));
  }
}

TEST(HmmFit, ObservableStatesGiveTheTransitionFrequenciesInOneStep) {
  // Oracle 26: categorical emissions with E = I make the states observed: one M-step gives
  // A_ij = #(i -> j) / #(i -> .) and pi = the frequencies of the first states, a fixed point.
  const int k = 3;
  HmmParams truth = SeparatedModel(EmissionType::kCategorical, k, 1, k);
  std::get<CategoricalEmissions>(truth.emissions).probabilities = Eigen::MatrixXd::Identity(k, k);
  truth.transitions << 0.6, 0.3, 0.1, 0.2, 0.7, 0.1, 0.3, 0.3, 0.4;
  const Dataset data = SampleHmm(truth, {40, 25, 60, 8, 30}, 6);
  Eigen::MatrixXd counts = Eigen::MatrixXd::Zero(k, k);
  Eigen::VectorXd first = Eigen::VectorXd::Zero(k);
  for (size_t q = 0; q + 1 < data.sequence_offsets.size(); ++q) {
    first[static_cast<int>(data.x(data.sequence_offsets[q], 0))] += 1;
    for (int64_t t = data.sequence_offsets[q] + 1; t < data.sequence_offsets[q + 1]; ++t) {
      counts(static_cast<int>(data.x(t - 1, 0)), static_cast<int>(data.x(t, 0))) += 1;
    }
  }
  HmmSpec spec = SpecFor(truth);
  HmmParams start = truth;
  start.start = Eigen::VectorXd::Constant(k, 1.0 / k);
  start.transitions = Eigen::MatrixXd::Constant(k, k, 1.0 / k);
  spec.init_params = start;
  for (int iterations : {1, 2}) {
    absl::StatusOr<HmmFitResult> r = Fit(data, spec, Iterations(iterations));
    ASSERT_THAT(r, IsOk());
    EXPECT_LT((r->params.start - first / first.sum()).cwiseAbs().maxCoeff(), 1e-14);
    for (int i = 0; i < k; ++i) {
      EXPECT_LT((r->params.transitions.row(i) - counts.row(i) / counts.row(i).sum())
                    .cwiseAbs()
                    .maxCoeff(),
                1e-14);
    }
    EXPECT_EQ(std::get<CategoricalEmissions>(r->params.emissions).probabilities,
              Eigen::MatrixXd::Identity(k, k));
  }
}

TEST(HmmScore, SequencesAreScoredApartAndNeverJoined) {
  // Oracle 27: the log-likelihood of a set is the sum over its sequences, and differs from
  // treating the rows as one sequence.
  const HmmParams p = SeparatedModel(EmissionType::kPoisson, 3, 2);
  const Dataset data = SampleHmm(p, {30, 1, 45, 20}, 7);
  absl::StatusOr<ScoreResult> all = Score(p, data);
  ASSERT_THAT(all, IsOk());
  EXPECT_EQ(all->sequences, 4);
  double sum = 0;
  for (size_t q = 0; q + 1 < data.sequence_offsets.size(); ++q) {
    const int64_t b = data.sequence_offsets[q], e = data.sequence_offsets[q + 1];
    absl::StatusOr<ScoreResult> one = Score(p, Dataset{data.x.middleRows(b, e - b), {}});
    ASSERT_THAT(one, IsOk());
    sum += one->log_likelihood;
  }
  EXPECT_NEAR(all->log_likelihood, sum, 1e-12 * std::abs(sum));
  absl::StatusOr<ScoreResult> joined = Score(p, Dataset{data.x, {}});
  ASSERT_THAT(joined, IsOk());
  EXPECT_GT(std::abs(joined->log_likelihood - sum), 1e-3);
}

TEST(HmmPosteriors, GiveStateProbabilitiesViterbiAndPerSequenceLikelihoods) {
  const HmmParams p = SeparatedModel(EmissionType::kGaussian, 3, 2);
  std::vector<int> states;
  Dataset data = SampleHmm(p, {200, 1, 150}, 8, &states);
  absl::StatusOr<Posteriors> post = ComputePosteriors(p, data);
  ASSERT_THAT(post, IsOk());
  ASSERT_EQ(post->state_probabilities.rows(), data.rows());
  EXPECT_LT((post->state_probabilities.rowwise().sum().array() - 1).abs().maxCoeff(), 1e-14);
  ASSERT_EQ(post->log_likelihood.size(), 3);
  absl::StatusOr<ScoreResult> s = Score(p, data);
  ASSERT_THAT(s, IsOk());
  EXPECT_NEAR(post->log_likelihood.sum(), s->log_likelihood, 1e-12 * std::abs(s->log_likelihood));
  int agree = 0;
  for (Eigen::Index i = 0; i < data.rows(); ++i) agree += post->viterbi_path[i] == states[i];
  EXPECT_GT(agree, 0.95 * data.rows());  // well separated states are recovered
  for (int q = 0; q < 3; ++q) {
    EXPECT_LE(post->viterbi_log_probability[q], post->log_likelihood[q]);
  }
}

TEST(HmmPosteriors, GroupsOfWholeSequencesGiveTheSameAsAllAtOnce) {
  for (EmissionType type : kAllEmissions) {
    // Pairs of sequences run in lockstep for k <= 6: groups that split a pair are covered.
    const HmmParams p = SeparatedModel(type, 3, 2);
    Dataset data = SampleHmm(p, {40, 1, 75, 30, 2, 90, 5}, 21);
    data.x(10, 0) = kNaN;
    absl::StatusOr<Posteriors> all = ComputePosteriors(p, data);
    ASSERT_THAT(all, IsOk());
    for (int64_t max_rows : {1, 50, 100, 1000}) {
      std::vector<int64_t> firsts;
      int64_t next_row = 0;
      ASSERT_THAT(ForEachPosteriorGroup(
                      p, data, max_rows, {},
                      [&](int64_t first_sequence, int64_t first_row, const Posteriors& g) {
                        firsts.push_back(first_sequence);
                        EXPECT_EQ(first_row, next_row);
                        EXPECT_EQ(first_row, data.sequence_offsets[first_sequence]);
                        const Eigen::Index n = g.state_probabilities.rows();
                        const Eigen::Index q = g.log_likelihood.size();
                        EXPECT_TRUE(n <= max_rows || q == 1);
                        // Two sequences may run in lockstep in one group and apart in
                        // another: the same values up to rounding.
                        EXPECT_LT((g.state_probabilities -
                                   all->state_probabilities.middleRows(first_row, n))
                                      .cwiseAbs()
                                      .maxCoeff(),
                                  1e-12);
                        EXPECT_EQ(g.viterbi_path, all->viterbi_path.segment(first_row, n));
                        EXPECT_TRUE(g.log_likelihood.isApprox(
                            all->log_likelihood.segment(first_sequence, q), 1e-13));
                        EXPECT_EQ(g.viterbi_log_probability,
                                  all->viterbi_log_probability.segment(first_sequence, q));
                        next_row += n;
                        return absl::OkStatus();
                      }),
                  IsOk());
      EXPECT_EQ(next_row, data.rows());
      if (max_rows == 1) {
        EXPECT_EQ(firsts.size(), 7u);
      }
      if (max_rows == 1000) {
        EXPECT_EQ(firsts, std::vector<int64_t>{0});
      }
    }
    // An error of the callback stops the walk.
    int calls = 0;
    EXPECT_THAT(ForEachPosteriorGroup(p, data, 1, {},
                                      [&](int64_t, int64_t, const Posteriors&) {
                                        ++calls;
                                        return absl::CancelledError("stop");
                                      }),
                StatusIs(absl::StatusCode::kCancelled, "stop"));
    EXPECT_EQ(calls, 1);
  }
}

TEST(HmmPosteriors, GroupsNameTheRowsAndSequencesOfTheWholeData) {
  HmmParams p = SeparatedModel(EmissionType::kCategorical, 2, 1, 2);
  std::get<CategoricalEmissions>(p.emissions).probabilities << 1, 0, 1, 0;  // symbol 1: never
  Dataset data;
  data.x = RowMatrix::Zero(9, 1);
  data.x(7, 0) = 1;
  data.sequence_offsets = {0, 3, 6, 9};
  auto ignore = [](int64_t, int64_t, const Posteriors&) { return absl::OkStatus(); };
  EXPECT_THAT(ForEachPosteriorGroup(p, data, 3, {}, ignore),
              StatusIs(absl::StatusCode::kFailedPrecondition, "sequence 3"));
  data.x(7, 0) = 2;
  EXPECT_THAT(ForEachPosteriorGroup(p, data, 3, {}, ignore),
              StatusIs(absl::StatusCode::kInvalidArgument, "row 8"));
}

TEST(HmmFit, SequencesOfLengthOneAreMixtureRows) {
  // Steps that never follow each other: no transitions to learn (rows kept, with a warning).
  const HmmParams p = SeparatedModel(EmissionType::kPoisson, 2, 1);
  const Dataset data = SampleHmm(p, std::vector<int64_t>(200, 1), 9);
  HmmSpec spec = SpecFor(p);
  spec.init_params = Perturbed(p);
  absl::StatusOr<HmmFitResult> r = Fit(data, spec, Iterations(20));
  ASSERT_THAT(r, IsOk());
  ExpectNonDecreasing(r->summary.history);
  EXPECT_EQ(r->params.transitions, spec.init_params->transitions);
  EXPECT_THAT(r->summary.warnings,
              ::testing::Contains(::testing::Field(&FitWarning::code, "transitions_kept")));
}

TEST(HmmFit, AMillionStepSequenceGivesFiniteResults) {
  // One sequence of 10^6 steps, longer than a segment: forward-backward runs checkpointed.
  HmmParams p = SeparatedModel(EmissionType::kGaussian, 3, 1);
  const Dataset data = SampleHmm(p, {1000000}, 10);
  HmmSpec spec = SpecFor(p);
  spec.init_params = Perturbed(p);
  ThreadPool pool(1);
  FitControls controls;
  controls.pool = &pool;
  absl::StatusOr<HmmFitResult> r = Fit(data, spec, Iterations(3), controls);
  ASSERT_THAT(r, IsOk());
  for (double ll : r->summary.history) EXPECT_TRUE(std::isfinite(ll));
  ExpectNonDecreasing(r->summary.history);
  EXPECT_TRUE(r->params.transitions.allFinite());
}

TEST(HmmFit, StructuralZerosStayExactlyZero) {
  // A left-right model: 0 -> {0, 1}, 1 -> {1, 2}, 2 -> 2, starting in state 0.
  HmmParams truth = SeparatedModel(EmissionType::kGaussian, 3, 2);
  truth.start << 1, 0, 0;
  truth.transitions << 0.9, 0.1, 0, 0, 0.95, 0.05, 0, 0, 1;
  const Dataset data = SampleHmm(truth, {120, 150, 90, 200}, 11);
  for (bool from_masks : {false, true}) {
    SCOPED_TRACE(from_masks ? "masks in the spec" : "zeros of the starting model");
    HmmSpec spec = SpecFor(truth);
    if (from_masks) {
      spec.start_allowed = Eigen::VectorXi::Zero(3);
      spec.start_allowed[0] = 1;
      spec.transitions_allowed = (truth.transitions.array() > 0).cast<int>();
    } else {
      HmmParams start = Perturbed(truth);
      start.start = truth.start;
      start.transitions = truth.transitions;
      start.transitions.row(0) << 0.5, 0.5, 0;
      spec.init_params = start;
    }
    FitOptions options = Iterations(30);
    options.n_init = 2;
    absl::StatusOr<HmmFitResult> r = Fit(data, spec, options);
    ASSERT_THAT(r, IsOk());
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) {
        if (truth.transitions(i, j) == 0) {
          EXPECT_EQ(r->params.transitions(i, j), 0.0) << i << j;
        }
      }
    }
    EXPECT_EQ(r->params.start[1], 0.0);
    EXPECT_EQ(r->params.start[2], 0.0);
    // Parameters: start none, transitions 1 + 1 + 0, emissions 3 * (2 + 3).
    EXPECT_EQ(r->summary.num_free_parameters, 2 + 15);
  }
}

TEST(HmmFit, FixedParametersStayFixedToTheBit) {
  const HmmParams truth = SeparatedModel(EmissionType::kCategorical, 3, 1, 6);
  const Dataset data = SampleHmm(truth, {200, 100}, 12);
  const HmmParams start = Perturbed(truth);
  for (int which = 0; which < 3; ++which) {
    HmmSpec spec = SpecFor(truth);
    spec.init_params = start;
    spec.fix_start = which == 0;
    spec.fix_transitions = which == 1;
    spec.fix_emissions = which == 2;
    for (Acceleration a : {Acceleration::kNone, Acceleration::kSquarem}) {
      FitOptions options = Iterations(15);
      options.acceleration = a;
      absl::StatusOr<HmmFitResult> r = Fit(data, spec, options);
      ASSERT_THAT(r, IsOk());
      ExpectNonDecreasing(r->summary.history);
      const auto& e = std::get<CategoricalEmissions>(r->params.emissions).probabilities;
      const auto& e0 = std::get<CategoricalEmissions>(start.emissions).probabilities;
      EXPECT_EQ(r->params.start == start.start, which == 0);
      EXPECT_EQ(r->params.transitions == start.transitions, which == 1);
      EXPECT_EQ(e == e0, which == 2);
    }
  }
  HmmSpec needs_init = SpecFor(truth);
  needs_init.fix_start = true;
  EXPECT_THAT(Fit(data, needs_init, Iterations(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, "fix"));
}

TEST(HmmFit, IntegerSequenceWeightsEqualRepetition) {
  const HmmParams truth = SeparatedModel(EmissionType::kPoisson, 2, 2);
  const Dataset base = SampleHmm(truth, {50, 30, 40}, 13);
  const int repeats[] = {2, 1, 3};
  Dataset weighted = base;
  weighted.weights.resize(base.rows());
  Dataset repeated;
  std::vector<std::vector<double>> rows;
  repeated.sequence_offsets.push_back(0);
  int64_t total = 0;
  for (size_t q = 0; q < 3; ++q) {
    const int64_t b = base.sequence_offsets[q], e = base.sequence_offsets[q + 1];
    weighted.weights.segment(b, e - b).setConstant(repeats[q]);
    for (int r = 0; r < repeats[q]; ++r) {
      total += e - b;
      repeated.sequence_offsets.push_back(total);
    }
  }
  repeated.x.resize(total, base.cols());
  int64_t row = 0;
  for (size_t q = 0; q < 3; ++q) {
    const int64_t b = base.sequence_offsets[q], e = base.sequence_offsets[q + 1];
    for (int r = 0; r < repeats[q]; ++r, row += e - b) {
      repeated.x.middleRows(row, e - b) = base.x.middleRows(b, e - b);
    }
  }
  HmmSpec spec = SpecFor(truth);
  spec.init_params = Perturbed(truth);
  absl::StatusOr<HmmFitResult> a = Fit(weighted, spec, Iterations(10));
  absl::StatusOr<HmmFitResult> b = Fit(repeated, spec, Iterations(10));
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_NEAR(a->summary.log_likelihood, b->summary.log_likelihood,
              1e-10 * std::abs(b->summary.log_likelihood));
  EXPECT_LT((a->params.transitions - b->params.transitions).cwiseAbs().maxCoeff(), 1e-10);
  EXPECT_NEAR(a->summary.bic, b->summary.bic, 1e-8 * std::abs(b->summary.bic));
  // A weight that changes within a sequence is refused, naming the sequence.
  weighted.weights[base.sequence_offsets[1] + 3] = 7;
  EXPECT_THAT(Fit(weighted, spec, Iterations(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, "sequence 2"));
}

// Labels of `fitted` matched to `truth`'s by the closest Gaussian means (or rates).
std::vector<int> MatchStates(const Eigen::MatrixXd& fitted, const Eigen::MatrixXd& truth) {
  std::vector<int> perm(fitted.rows());
  std::iota(perm.begin(), perm.end(), 0);
  std::vector<int> best = perm;
  double best_cost = std::numeric_limits<double>::infinity();
  do {
    double cost = 0;
    for (size_t j = 0; j < perm.size(); ++j) cost += (fitted.row(perm[j]) - truth.row(j)).norm();
    if (cost < best_cost) {
      best_cost = cost;
      best = perm;
    }
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;  // best[j]: the fitted state that is truth's state j
}

TEST(HmmFit, RecoversTheParametersOfTheModelThatMadeTheData) {
  for (EmissionType type : {EmissionType::kGaussian, EmissionType::kPoisson}) {
    SCOPED_TRACE(EmissionTypeName(type));
    HmmParams truth = SeparatedModel(type, 3, 2);
    truth.transitions << 0.85, 0.1, 0.05, 0.05, 0.9, 0.05, 0.15, 0.05, 0.8;
    const Dataset data = SampleHmm(truth, std::vector<int64_t>(40, 500), 14);
    HmmSpec spec = SpecFor(truth);
    FitOptions options;
    options.n_init = 3;
    options.seed = 1;
    absl::StatusOr<HmmFitResult> r = Fit(data, spec, options);
    ASSERT_THAT(r, IsOk());
    EXPECT_TRUE(r->summary.converged());
    const Eigen::MatrixXd fitted = type == EmissionType::kGaussian
                                       ? std::get<GaussianEmissions>(r->params.emissions).means
                                       : std::get<PoissonEmissions>(r->params.emissions).rates;
    const Eigen::MatrixXd want = type == EmissionType::kGaussian
                                     ? std::get<GaussianEmissions>(truth.emissions).means
                                     : std::get<PoissonEmissions>(truth.emissions).rates;
    const std::vector<int> m = MatchStates(fitted, want);
    for (int i = 0; i < 3; ++i) {
      EXPECT_LT((fitted.row(m[i]) - want.row(i)).norm(), 0.1 * (1 + want.row(i).norm()));
      for (int j = 0; j < 3; ++j) {
        EXPECT_NEAR(r->params.transitions(m[i], m[j]), truth.transitions(i, j), 0.02);
      }
    }
  }
}

TEST(HmmFit, ResultsDoNotDependOnTheNumberOfThreads) {
  const HmmParams truth = SeparatedModel(EmissionType::kGaussian, 3, 3);
  // Many short sequences, a few long ones (split over the pool), and one checkpointed.
  std::vector<int64_t> lengths(300, 7);
  lengths.push_back(5000);
  lengths.push_back(3);
  lengths.push_back(2000);
  Dataset data = SampleHmm(truth, lengths, 15);
  data.x(100, 1) = kNaN;
  HmmSpec spec = SpecFor(truth);
  FitOptions options = Iterations(10);
  options.n_init = 2;
  HmmFitResult results[3];
  for (int threads : {0, 1, 2}) {
    ThreadPool pool(threads);
    FitControls controls;
    controls.pool = threads == 0 ? nullptr : &pool;
    absl::StatusOr<HmmFitResult> r = Fit(data, spec, options, controls);
    ASSERT_THAT(r, IsOk());
    results[threads] = *std::move(r);
  }
  for (int t = 1; t < 3; ++t) {
    EXPECT_EQ(results[t].summary.history, results[0].summary.history);
    EXPECT_EQ(results[t].params.transitions, results[0].params.transitions);
    EXPECT_EQ(std::get<GaussianEmissions>(results[t].params.emissions).covariances,
              std::get<GaussianEmissions>(results[0].params.emissions).covariances);
  }
}

// Two states with overlapping emissions, so that EM converges slowly.
HmmParams OverlappingModel(EmissionType type) {
  HmmParams p;
  p.start = Eigen::Vector2d(0.5, 0.5);
  p.transitions.resize(2, 2);
  p.transitions << 0.7, 0.3, 0.4, 0.6;
  switch (type) {
    case EmissionType::kGaussian: {
      GaussianEmissions g;
      g.covariance_type = gmm::CovarianceType::kDiag;
      g.means.resize(2, 1);
      g.means << 0, 1.5;
      g.covariances = Eigen::MatrixXd::Ones(2, 1);
      p.emissions = g;
      break;
    }
    case EmissionType::kCategorical: {
      CategoricalEmissions c;
      c.probabilities.resize(2, 4);
      c.probabilities << 0.55, 0.25, 0.15, 0.05, 0.05, 0.15, 0.25, 0.55;
      p.emissions = c;
      break;
    }
    case EmissionType::kPoisson: {
      PoissonEmissions r;
      r.rates.resize(2, 1);
      r.rates << 3, 5;
      p.emissions = r;
      break;
    }
  }
  return p;
}

TEST(HmmFit, SquaremIsMonotoneAndReachesTheSameFixedPoint) {
  for (EmissionType type : kAllEmissions) {
    SCOPED_TRACE(EmissionTypeName(type));
    const HmmParams truth = OverlappingModel(type);
    const Dataset data = SampleHmm(truth, {1500, 500}, 16);
    HmmSpec spec = SpecFor(truth);
    spec.reg_covar = 0;
    spec.init_params = Perturbed(truth);
    FitOptions options;
    options.max_iter = 100000;
    options.tol = 1e-13;
    absl::StatusOr<HmmFitResult> em = Fit(data, spec, options);
    options.acceleration = Acceleration::kSquarem;
    absl::StatusOr<HmmFitResult> sq = Fit(data, spec, options);
    ASSERT_THAT(em, IsOk());
    ASSERT_THAT(sq, IsOk());
    EXPECT_TRUE(em->summary.converged());
    EXPECT_TRUE(sq->summary.converged());
    ExpectNonDecreasing(sq->summary.history);
    EXPECT_NEAR(sq->summary.log_likelihood, em->summary.log_likelihood,
                1e-8 * std::abs(em->summary.log_likelihood));
    EXPECT_LT((sq->params.transitions - em->params.transitions).cwiseAbs().maxCoeff(), 1e-5);
    // A soft check (algorithms.md §7, oracle 46): logged, not asserted.
    std::printf("[ info ] %s: EM %d iterations, SQUAREM %d cycles\n", EmissionTypeName(type),
                em->summary.iterations, sq->summary.iterations);
  }
}

TEST(HmmFit, ConvergedOnlyWhenTheToleranceWasMet) {
  const HmmParams truth = SeparatedModel(EmissionType::kCategorical, 2, 1, 4);
  const Dataset data = SampleHmm(truth, {300}, 17);
  HmmSpec spec = SpecFor(truth);
  absl::StatusOr<HmmFitResult> capped = Fit(data, spec, Iterations(2, 1e-12));
  ASSERT_THAT(capped, IsOk());
  EXPECT_FALSE(capped->summary.converged());
  EXPECT_EQ(capped->summary.reason, TerminationReason::kMaxIter);
  absl::StatusOr<HmmFitResult> free = Fit(data, spec, Iterations(1000, 1e-6));
  ASSERT_THAT(free, IsOk());
  EXPECT_TRUE(free->summary.converged());
}

TEST(HmmFit, UnusedStateIsAWarningNotANaN) {
  // Three states for data from one: a state is left without mass.
  HmmParams one = SeparatedModel(EmissionType::kGaussian, 1, 1);
  const Dataset data = SampleHmm(one, {100}, 18);
  HmmSpec spec;
  spec.k = 3;
  spec.emission = EmissionType::kGaussian;
  HmmParams start = SeparatedModel(EmissionType::kGaussian, 3, 1);
  std::get<GaussianEmissions>(start.emissions).means << 0, 0.1, 1e6;  // state 2: nowhere
  spec.init_params = start;
  absl::StatusOr<HmmFitResult> r = Fit(data, spec, Iterations(5));
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(std::get<GaussianEmissions>(r->params.emissions).means.allFinite());
  EXPECT_TRUE(r->params.transitions.allFinite());
  EXPECT_THAT(r->summary.warnings, ::testing::Contains(::testing::AllOf(
                                       ::testing::Field(&FitWarning::code, "empty_state"),
                                       ::testing::Field(&FitWarning::component, 2))));
}

TEST(HmmFit, BadInputIsInvalidArgumentNamingTheFieldAndRow) {
  const HmmParams p = SeparatedModel(EmissionType::kCategorical, 2, 1, 3);
  Dataset data = SampleHmm(p, {20, 10}, 19);
  HmmSpec spec = SpecFor(p);
  spec.num_symbols = 3;
  // A zero-length sequence.
  Dataset empty = data;
  empty.sequence_offsets = {0, 20, 20, 30};
  EXPECT_THAT(Fit(empty, spec, Iterations(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, "sequence"));
  Dataset past_the_end = data;
  past_the_end.sequence_offsets = {0, 20, 40};
  EXPECT_THAT(Score(p, past_the_end), StatusIs(absl::StatusCode::kInvalidArgument, "sequence"));
  EXPECT_THAT(ComputePosteriors(p, past_the_end),
              StatusIs(absl::StatusCode::kInvalidArgument, "sequence"));
  // A symbol outside the declared count.
  Dataset symbol = data;
  symbol.x(4, 0) = 3;
  EXPECT_THAT(Fit(symbol, spec, Iterations(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, "row 5 holds symbol 3"));
  symbol.x(4, 0) = 1.5;
  EXPECT_THAT(Fit(symbol, spec, Iterations(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, "row 5"));
  // Negative and non-integer counts.
  const HmmParams pp = SeparatedModel(EmissionType::kPoisson, 2, 2);
  Dataset counts = SampleHmm(pp, {30}, 20);
  counts.x(7, 1) = -1;
  EXPECT_THAT(Fit(counts, SpecFor(pp), Iterations(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, "row 8, column 2"));
  counts.x(7, 1) = 2.5;
  EXPECT_THAT(Fit(counts, SpecFor(pp), Iterations(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, "row 8, column 2"));
  // A state that cannot be reached, a row with no allowed transition.
  HmmSpec unreachable = spec;
  unreachable.start_allowed = Eigen::VectorXi::Zero(2);
  unreachable.start_allowed[0] = 1;
  unreachable.transitions_allowed = Eigen::MatrixXi::Identity(2, 2);
  EXPECT_THAT(Fit(data, unreachable, Iterations(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, "state 1 cannot be reached"));
  HmmSpec no_row = spec;
  no_row.transitions_allowed = Eigen::MatrixXi::Ones(2, 2);
  no_row.transitions_allowed.row(1).setZero();
  EXPECT_THAT(Fit(data, no_row, Iterations(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, "allows no transition"));
  // k larger than the observations.
  HmmSpec big = spec;
  big.k = 31;
  EXPECT_THAT(Fit(data, big, Iterations(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.hmm.k"));
  // The same checks before any data are read, from the shape alone.
  EXPECT_THAT(spec.Validate(30, 1), IsOk());
  EXPECT_THAT(unreachable.Validate(30, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, "state 1 cannot be reached"));
  EXPECT_THAT(big.Validate(30, 1), StatusIs(absl::StatusCode::kInvalidArgument, "spec.hmm.k"));
  EXPECT_THAT(spec.Validate(30, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, "one column of symbols"));
  HmmSpec warm = spec;
  warm.init_params = p;
  warm.num_symbols = 4;
  EXPECT_THAT(warm.Validate(30, 1), StatusIs(absl::StatusCode::kInvalidArgument, "has 3 symbols"));
  // Posteriors on data with the wrong number of columns.
  EXPECT_THAT(ComputePosteriors(pp, data),
              StatusIs(absl::StatusCode::kInvalidArgument, "reads 2 columns"));
}

TEST(HmmPosteriors, AnImpossibleSequenceIsFailedPreconditionNamingIt) {
  HmmParams p = SeparatedModel(EmissionType::kCategorical, 2, 1, 2);
  std::get<CategoricalEmissions>(p.emissions).probabilities << 1, 0, 1, 0;  // symbol 1: never
  Dataset data;
  data.x = RowMatrix::Zero(6, 1);
  data.x(4, 0) = 1;
  data.sequence_offsets = {0, 3, 6};
  EXPECT_THAT(ComputePosteriors(p, data),
              StatusIs(absl::StatusCode::kFailedPrecondition, "sequence 2"));
  EXPECT_THAT(Score(p, data), StatusIs(absl::StatusCode::kFailedPrecondition, "sequence 2"));
}

TEST(HmmNumFreeParameters, CountsStructuralZerosOut) {
  HmmParams p = SeparatedModel(EmissionType::kGaussian, 3, 2);
  // (k-1) + k(k-1) + k d + k d(d+1)/2 = 2 + 6 + 6 + 9.
  EXPECT_EQ(NumFreeParameters(p), 23);
  p.transitions.row(2) << 0, 0, 1;
  EXPECT_EQ(NumFreeParameters(p), 21);
  EXPECT_EQ(NumFreeParameters(SeparatedModel(EmissionType::kCategorical, 3, 1, 5)), 2 + 6 + 3 * 4);
  EXPECT_EQ(NumFreeParameters(SeparatedModel(EmissionType::kPoisson, 2, 3)), 1 + 2 + 6);
}

}  // namespace
}  // namespace emfit::hmm
