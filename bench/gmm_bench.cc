// Micro-benchmarks of the Gaussian-mixture EM of emfit_core (issue 4), at N=100,000 rows,
// d=8, k=8, for each covariance type and 1 or 2 threads:
//
//   BM_Score       gmm::Score: one E-step without statistics (log-densities, log-sum-exp).
//   BM_EStep       gmm::Fit with max_iter=0 from the starting parameters: validation, centring,
//                  one E-step with the sufficient statistics. Time of one fit.
//   BM_Iteration   one EM iteration (E-step with statistics + M-step), measured as
//                  (fit with max_iter=5 - fit with max_iter=0) / 5, both from the same
//                  starting parameters with tol=0.
//   BM_Posteriors  gmm::ComputePosteriors on one 512-row block (the E-step kernel).
//   BM_IterationMissing, BM_EStepMissing, BM_ScoreMissing: the same with 20% of the values
//                  missing completely at random.
//
// Every fit starts from the same parameters (init_params), computed once from the data, so the
// work is identical across repetitions. Data are synthetic and seeded. Not part of ctest; run
//   build-bench/bench/emfit_gmm_bench [--benchmark_filter=Iteration]
#include <benchmark/benchmark.h>

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "emfit/data/dataset.h"
#include "emfit/em/options.h"
#include "emfit/exec/thread_pool.h"
#include "emfit/gmm/gmm.h"

namespace emfit::bench {
namespace {

constexpr int kRows = 100000;
constexpr int kDim = 8;
constexpr int kComponents = 8;
constexpr int kIterations = 5;
constexpr uint64_t kSeed = 20240604;

using gmm::CovarianceType;

// A mixture of kComponents Gaussians with random means in [-10, 10]^d, random full covariances
// (A A^T / d + I / 2, A standard normal) and unequal weights.
const Dataset& SyntheticData() {
  static const Dataset* const data = [] {
    std::mt19937_64 rng(kSeed);
    std::normal_distribution<double> normal;
    std::uniform_real_distribution<double> uniform(-10, 10);
    std::vector<Eigen::VectorXd> means(kComponents);
    std::vector<Eigen::MatrixXd> chol(kComponents);
    std::vector<double> weights(kComponents);
    for (int j = 0; j < kComponents; ++j) {
      means[j] = Eigen::VectorXd::NullaryExpr(kDim, [&] { return uniform(rng); });
      const Eigen::MatrixXd a =
          Eigen::MatrixXd::NullaryExpr(kDim, kDim, [&] { return normal(rng); });
      const Eigen::MatrixXd cov =
          a * a.transpose() / kDim + 0.5 * Eigen::MatrixXd::Identity(kDim, kDim);
      chol[j] = cov.llt().matrixL();
      weights[j] = 1.0 + j;
    }
    std::discrete_distribution<int> pick(weights.begin(), weights.end());
    auto* d = new Dataset;
    d->x.resize(kRows, kDim);
    for (int i = 0; i < kRows; ++i) {
      const int j = pick(rng);
      const Eigen::VectorXd z = Eigen::VectorXd::NullaryExpr(kDim, [&] { return normal(rng); });
      d->x.row(i) = (means[j] + chol[j] * z).transpose();
    }
    return d;
  }();
  return *data;
}

// SyntheticData() with each value missing (NaN) with probability 0.2, independently (MCAR).
const Dataset& MissingData() {
  static const Dataset* const data = [] {
    std::mt19937_64 rng(kSeed + 1);
    std::uniform_real_distribution<double> uniform;
    auto* d = new Dataset(SyntheticData());
    for (Eigen::Index i = 0; i < d->x.rows(); ++i) {
      for (Eigen::Index j = 0; j < d->x.cols(); ++j) {
        if (uniform(rng) < 0.2) d->x(i, j) = std::numeric_limits<double>::quiet_NaN();
      }
    }
    return d;
  }();
  return *data;
}

void Check(const absl::Status& status) {
  if (!status.ok()) {
    std::fprintf(stderr, "emfit_gmm_bench: %s\n", status.ToString().c_str());
    std::abort();
  }
}

// Starting parameters of a covariance type: k random rows as means, the pooled covariance,
// equal weights (emfit's random_from_data initialisation, seeded).
const gmm::GmmParams& StartingParams(CovarianceType type) {
  static std::map<CovarianceType, gmm::GmmParams> cache;
  auto it = cache.find(type);
  if (it != cache.end()) return it->second;
  gmm::GmmSpec spec;
  spec.k = kComponents;
  spec.covariance_type = type;
  spec.init = gmm::InitMethod::kRandomFromData;
  FitOptions options;
  options.max_iter = 0;
  options.seed = kSeed;
  absl::StatusOr<gmm::GmmFitResult> r = gmm::Fit(SyntheticData(), spec, options);
  Check(r.status());
  return cache.emplace(type, std::move(r->params)).first->second;
}

// One thread runs inline (no pool); n threads are the caller plus a pool of n - 1.
std::unique_ptr<ThreadPool> MakePool(int threads) {
  return threads > 1 ? std::make_unique<ThreadPool>(threads - 1) : nullptr;
}

// Seconds of a warm-started fit with tol=0 and exactly `max_iter` iterations. The data are
// copied before the clock starts (Fit takes its Dataset by value).
double TimeFit(CovarianceType type, int max_iter, ThreadPool* pool,
               const Dataset& data = SyntheticData()) {
  gmm::GmmSpec spec;
  spec.k = kComponents;
  spec.covariance_type = type;
  spec.init_params = StartingParams(type);
  FitOptions options;
  options.max_iter = max_iter;
  options.tol = 0;
  FitControls controls;
  controls.pool = pool;
  Dataset copy = data;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<gmm::GmmFitResult> r = gmm::Fit(std::move(copy), spec, options, controls);
  const auto stop = std::chrono::steady_clock::now();
  Check(r.status());
  if (r->summary.iterations != max_iter) {
    std::fprintf(stderr, "emfit_gmm_bench: expected %d iterations, got %d\n", max_iter,
                 r->summary.iterations);
    std::abort();
  }
  return std::chrono::duration<double>(stop - start).count();
}

CovarianceType TypeArg(const benchmark::State& state) {
  return static_cast<CovarianceType>(state.range(0));
}

void SetLabels(benchmark::State& state) {
  state.SetLabel(gmm::CovarianceTypeName(TypeArg(state)));
  state.counters["rows/s"] =
      benchmark::Counter(static_cast<double>(kRows), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Score(benchmark::State& state) {
  const gmm::GmmParams& params = StartingParams(TypeArg(state));
  const std::unique_ptr<ThreadPool> pool = MakePool(static_cast<int>(state.range(1)));
  FitControls controls;
  controls.pool = pool.get();
  for (auto _ : state) {
    absl::StatusOr<gmm::ScoreResult> r = gmm::Score(params, SyntheticData(), controls);
    Check(r.status());
    benchmark::DoNotOptimize(r->log_likelihood);
  }
  SetLabels(state);
}

void BM_EStep(benchmark::State& state) {
  const CovarianceType type = TypeArg(state);
  StartingParams(type);
  const std::unique_ptr<ThreadPool> pool = MakePool(static_cast<int>(state.range(1)));
  for (auto _ : state) state.SetIterationTime(TimeFit(type, 0, pool.get()));
  SetLabels(state);
}

void BM_Iteration(benchmark::State& state) {
  const CovarianceType type = TypeArg(state);
  StartingParams(type);
  const std::unique_ptr<ThreadPool> pool = MakePool(static_cast<int>(state.range(1)));
  for (auto _ : state) {
    const double t0 = TimeFit(type, 0, pool.get());
    const double tn = TimeFit(type, kIterations, pool.get());
    state.SetIterationTime(std::max(0.0, tn - t0) / kIterations);
  }
  SetLabels(state);
}

void BM_Posteriors(benchmark::State& state) {
  const gmm::GmmParams& params = StartingParams(TypeArg(state));
  const auto block = SyntheticData().x.topRows(512);
  for (auto _ : state) {
    absl::StatusOr<gmm::Posteriors> r = gmm::ComputePosteriors(params, block);
    Check(r.status());
    benchmark::DoNotOptimize(r->log_likelihood.data());
  }
  state.SetLabel(gmm::CovarianceTypeName(TypeArg(state)));
  state.counters["rows/s"] =
      benchmark::Counter(512.0, benchmark::Counter::kIsIterationInvariantRate);
}

void TypesAndThreads(benchmark::internal::Benchmark* b) {
  b->ArgNames({"type", "threads"});
  for (int threads : {1, 2}) {
    for (CovarianceType t : {CovarianceType::kFull, CovarianceType::kDiag, CovarianceType::kTied,
                             CovarianceType::kSpherical}) {
      b->Args({static_cast<int64_t>(t), threads});
    }
  }
}

void Types(benchmark::internal::Benchmark* b) {
  b->ArgNames({"type"});
  for (CovarianceType t : {CovarianceType::kFull, CovarianceType::kDiag, CovarianceType::kTied,
                           CovarianceType::kSpherical}) {
    b->Args({static_cast<int64_t>(t)});
  }
}

BENCHMARK(BM_Score)->Apply(TypesAndThreads)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EStep)->Apply(TypesAndThreads)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Iteration)->Apply(TypesAndThreads)->Unit(benchmark::kMillisecond)->UseManualTime();
// One EM iteration with 20% of the values missing completely at random (issue 4 asks for at
// most 3x the complete-data BM_Iteration of the same type).
void BM_IterationMissing(benchmark::State& state) {
  const CovarianceType type = TypeArg(state);
  StartingParams(type);
  const std::unique_ptr<ThreadPool> pool = MakePool(static_cast<int>(state.range(1)));
  for (auto _ : state) {
    const double t0 = TimeFit(type, 0, pool.get(), MissingData());
    const double tn = TimeFit(type, kIterations, pool.get(), MissingData());
    state.SetIterationTime(std::max(0.0, tn - t0) / kIterations);
  }
  SetLabels(state);
}

BENCHMARK(BM_IterationMissing)
    ->Apply(TypesAndThreads)
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();

// A fit with max_iter=0 on the missing data: validation, grouping the rows by pattern,
// centring and one E-step; what a fit costs besides its iterations.
void BM_EStepMissing(benchmark::State& state) {
  const CovarianceType type = TypeArg(state);
  StartingParams(type);
  const std::unique_ptr<ThreadPool> pool = MakePool(static_cast<int>(state.range(1)));
  for (auto _ : state) state.SetIterationTime(TimeFit(type, 0, pool.get(), MissingData()));
  SetLabels(state);
}

// Score of the missing data in the order they come (patterns mixed in every block, as a user
// sends them).
void BM_ScoreMissing(benchmark::State& state) {
  const gmm::GmmParams& params = StartingParams(TypeArg(state));
  const std::unique_ptr<ThreadPool> pool = MakePool(static_cast<int>(state.range(1)));
  FitControls controls;
  controls.pool = pool.get();
  for (auto _ : state) {
    absl::StatusOr<gmm::ScoreResult> r = gmm::Score(params, MissingData(), controls);
    Check(r.status());
    benchmark::DoNotOptimize(r->log_likelihood);
  }
  SetLabels(state);
}

BENCHMARK(BM_EStepMissing)->Apply(TypesAndThreads)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_ScoreMissing)->Apply(TypesAndThreads)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Posteriors)->Apply(Types)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace emfit::bench

BENCHMARK_MAIN();
