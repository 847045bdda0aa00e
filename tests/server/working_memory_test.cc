// The admission's estimates of a job's working memory (each family's WorkingBytes, jobs.h)
// against what the job really allocates: the heap in use (glibc's mallinfo2, every arena) is
// sampled by a thread while the job runs, and its peak above the level before the job (the
// uploaded data already held) must stay within the estimate. Sampling can only miss a peak,
// never invent one, so a failure is a real under-estimate.
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "emfit/exec/thread_pool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "jobs.h"
#include "service_limits.h"
#include "testing/data.h"
#include "testing/mk_trees.h"
#include "testing/status_matchers.h"

namespace emfit::server {
namespace {

using ::emfit::testing::IsOk;

uint64_t HeapInUse() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

// The most heap in use above the level before `job` while it runs.
template <typename Job>
uint64_t PeakAbove(Job&& job) {
  const uint64_t before = HeapInUse();
  std::atomic<bool> done{false};
  std::atomic<uint64_t> peak{before};
  std::thread sampler([&] {
    while (!done.load()) {
      const uint64_t now = HeapInUse();
      if (now > peak.load()) peak.store(now);
      std::this_thread::yield();
    }
  });
  job();
  done.store(true);
  sampler.join();
  const uint64_t now = HeapInUse();
  return std::max(peak.load(), now) - before;
}

class WorkingMemoryTest : public ::testing::Test {
 protected:
  WorkingMemoryTest() : pool_(2) {
    limits_.job_threads = 3;  // the pool's two threads and the job's own
    controls_.pool = &pool_;
  }

  // Fits `header` on `upload` and checks the plan's estimate against the peak.
  void ExpectFitWithinEstimate(const v1::FitHeader& header, Upload upload) {
    absl::StatusOr<FitPlan> plan = PlanFit(header, limits_);
    ASSERT_THAT(plan, IsOk());
    absl::Status status;
    const uint64_t peak = PeakAbove([&] {
      absl::StatusOr<v1::FitResult> fit = RunFit(*plan, std::move(upload), controls_);
      status = fit.status();
    });
    ASSERT_THAT(status, IsOk());
    RecordProperty("peak_bytes", absl::StrFormat("%d", peak));
    RecordProperty("estimated_bytes", absl::StrFormat("%d", plan->working_bytes));
    EXPECT_LE(peak, plan->working_bytes)
        << "the fit allocated more than its estimate: " << header.ShortDebugString();
  }

  // Runs Posterior (its messages dropped as sent) and Score with `model` on `upload`.
  void ExpectInferenceWithinEstimate(const v1::Model& model, const v1::DataShape& shape,
                                     const Upload& upload) {
    v1::PosteriorHeader header;
    *header.mutable_model() = model;
    *header.mutable_shape() = shape;
    absl::StatusOr<ModelVariant> planned = PlanModel(header, limits_);
    ASSERT_THAT(planned, IsOk());
    const uint64_t estimate = ModelWorkingBytes(*planned, shape, limits_.job_threads);
    absl::Status status;
    const uint64_t posterior = PeakAbove(
        [&] { status = RunPosterior(*planned, upload, controls_, [](v1::PosteriorResponse) {}); });
    ASSERT_THAT(status, IsOk());
    const uint64_t score =
        PeakAbove([&] { status = RunScore(*planned, upload, controls_).status(); });
    ASSERT_THAT(status, IsOk());
    EXPECT_LE(posterior, estimate) << "Posterior";
    EXPECT_LE(score, estimate) << "Score";
  }

  ServiceLimits limits_;
  ThreadPool pool_;
  FitControls controls_;
};

// Rows of a 3-component mixture in d dimensions with a share of the values missing.
RowMatrix Sample(int n, int d, double missing, uint64_t seed) {
  Eigen::MatrixXd means(3, d);
  for (int j = 0; j < d; ++j) {
    means(0, j) = -3 + j % 2;
    means(1, j) = 0.5 * j;
    means(2, j) = 3 - j % 3;
  }
  RowMatrix x = testing::SampleMixture(means, 1.0, n, seed);
  std::mt19937_64 rng(seed + 1);
  std::bernoulli_distribution gap(missing);
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    for (Eigen::Index j = 1; j < x.cols(); ++j) {  // the first value of each row is kept
      if (gap(rng)) x(i, j) = std::nan("");
    }
  }
  return x;
}

v1::DataShape ShapeOf(const Upload& u) {
  v1::DataShape s;
  s.set_rows(static_cast<uint64_t>(u.data.rows()));
  s.set_cols(static_cast<uint64_t>(u.data.cols()));
  if (!u.data.sequence_offsets.empty()) {
    s.set_num_sequences(u.data.sequence_offsets.size() - 1);
  }
  s.set_newick_bytes(u.newick.size());
  s.set_row_names(!u.row_names.empty());
  return s;
}

TEST_F(WorkingMemoryTest, AMixtureFitWithMissingValuesStaysWithinItsEstimate) {
  for (const v1::CovarianceType type :
       {v1::COVARIANCE_TYPE_FULL, v1::COVARIANCE_TYPE_TIED, v1::COVARIANCE_TYPE_DIAG}) {
    Upload upload;
    upload.data.x = Sample(20000, 6, 0.05, 3);
    v1::FitHeader header;
    header.mutable_spec()->mutable_gmm()->set_k(4);
    header.mutable_spec()->mutable_gmm()->set_covariance_type(type);
    header.mutable_options()->set_n_init(3);
    header.mutable_options()->set_max_iter(30);
    header.mutable_options()->set_tol(0);
    *header.mutable_shape() = ShapeOf(upload);
    ExpectFitWithinEstimate(header, std::move(upload));
  }
}

TEST_F(WorkingMemoryTest, AHiddenMarkovModelFitStaysWithinItsEstimate) {
  // Gaussian emissions with gaps, in 40 sequences; Poisson counts in one long sequence.
  Upload gaussian;
  gaussian.data.x = Sample(20000, 4, 0.05, 5);
  for (int64_t s = 0; s <= 40; ++s) gaussian.data.sequence_offsets.push_back(s * 500);
  v1::FitHeader header;
  header.mutable_spec()->mutable_hmm()->set_k(4);
  header.mutable_spec()->mutable_hmm()->set_emission(v1::EMISSION_TYPE_GAUSSIAN);
  header.mutable_options()->set_n_init(3);
  header.mutable_options()->set_max_iter(10);
  header.mutable_options()->set_tol(0);
  *header.mutable_shape() = ShapeOf(gaussian);
  ExpectFitWithinEstimate(header, std::move(gaussian));

  Upload counts;
  counts.data.x = RowMatrix(200000, 2);
  std::mt19937_64 rng(7);
  for (Eigen::Index i = 0; i < counts.data.x.rows(); ++i) {
    std::poisson_distribution<int> p((i / 1000) % 2 == 0 ? 2.0 : 6.0);
    counts.data.x(i, 0) = p(rng);
    counts.data.x(i, 1) = p(rng);
  }
  header.mutable_spec()->mutable_hmm()->set_k(3);
  header.mutable_spec()->mutable_hmm()->set_emission(v1::EMISSION_TYPE_POISSON);
  *header.mutable_shape() = ShapeOf(counts);
  ExpectFitWithinEstimate(header, std::move(counts));

  // Many symbols in long sequences: every thread's partial statistics are large.
  Upload symbols;
  symbols.data.x = RowMatrix(80000, 1);
  for (Eigen::Index i = 0; i < symbols.data.x.rows(); ++i) {
    symbols.data.x(i, 0) = static_cast<double>((i * 7919 + (i / 500) * 13) % 20000);
  }
  for (int64_t s = 0; s <= 4; ++s) symbols.data.sequence_offsets.push_back(s * 20000);
  header.mutable_spec()->mutable_hmm()->set_k(2);
  header.mutable_spec()->mutable_hmm()->set_emission(v1::EMISSION_TYPE_CATEGORICAL);
  header.mutable_spec()->mutable_hmm()->set_n_symbols(20000);
  header.mutable_options()->set_n_init(2);
  header.mutable_options()->set_max_iter(3);
  *header.mutable_shape() = ShapeOf(symbols);
  ExpectFitWithinEstimate(header, std::move(symbols));
}

// An Mk request on a random tree: the tips' likelihoods of k states, one state observed each.
Upload MkUpload(int tips, int k, uint64_t seed) {
  Upload u;
  u.newick = testing::RandomNewick(tips, seed);
  u.data.x = RowMatrix::Zero(tips, k);
  for (int i = 0; i < tips; ++i) {
    u.row_names.push_back("t" + std::to_string(i));
    u.data.x(i, (i * 7 + i / 13) % k) = 1;
  }
  return u;
}

v1::FitHeader MkHeader(const Upload& u, int k, v1::RateModel rates) {
  v1::FitHeader header;
  v1::MkSpec* mk = header.mutable_spec()->mutable_mk();
  for (int s = 0; s < k; ++s) mk->add_state_names("s" + std::to_string(s));
  mk->set_rate_model(rates);
  header.mutable_options()->set_n_init(2);
  header.mutable_options()->set_max_iter(20);
  header.mutable_options()->set_tol(0);
  *header.mutable_shape() = ShapeOf(u);
  return header;
}

TEST_F(WorkingMemoryTest, AnMkFitStaysWithinItsEstimateExactlyAndByMonteCarlo) {
  Upload exact = MkUpload(3000, 4, 11);
  const v1::FitHeader ard = MkHeader(exact, 4, v1::RATE_MODEL_ARD);
  ExpectFitWithinEstimate(ard, std::move(exact));

  // Monte Carlo EM with a sample size the client sets: the draws' states and tallies (56
  // rates: each draw's rows of the rate covariance) within what the fit reserved for them.
  Upload mc = MkUpload(60, 8, 12);
  v1::FitHeader header = MkHeader(mc, 8, v1::RATE_MODEL_ARD);
  header.mutable_spec()->mutable_mk()->set_estep(v1::E_STEP_METHOD_MONTE_CARLO);
  header.mutable_spec()->mutable_mk()->mutable_mcem()->set_initial_sample_size(20000);
  header.mutable_spec()->mutable_mk()->mutable_mcem()->set_max_sample_size(20000);
  header.mutable_options()->set_n_init(1);
  header.mutable_options()->set_max_iter(2);
  header.mutable_options()->set_tol(1e-3);
  ExpectFitWithinEstimate(header, std::move(mc));
}

TEST_F(WorkingMemoryTest, PosteriorAndScoreStayWithinTheModelsEstimate) {
  // Each family's model, fitted first.
  Upload mixture;
  mixture.data.x = Sample(50000, 5, 0.05, 21);
  v1::FitHeader gmm;
  gmm.mutable_spec()->mutable_gmm()->set_k(3);
  gmm.mutable_options()->set_max_iter(5);
  *gmm.mutable_shape() = ShapeOf(mixture);
  absl::StatusOr<FitPlan> plan = PlanFit(gmm, limits_);
  ASSERT_THAT(plan, IsOk());
  absl::StatusOr<v1::FitResult> fit = RunFit(*plan, mixture, controls_);
  ASSERT_THAT(fit, IsOk());
  ExpectInferenceWithinEstimate(fit->model(), gmm.shape(), mixture);

  Upload sequences;
  sequences.data.x = Sample(60000, 2, 0.02, 22);
  for (int64_t s = 0; s <= 3; ++s) sequences.data.sequence_offsets.push_back(s * 20000);
  v1::FitHeader hmm;
  hmm.mutable_spec()->mutable_hmm()->set_k(3);
  hmm.mutable_options()->set_max_iter(3);
  *hmm.mutable_shape() = ShapeOf(sequences);
  plan = PlanFit(hmm, limits_);
  ASSERT_THAT(plan, IsOk());
  fit = RunFit(*plan, sequences, controls_);
  ASSERT_THAT(fit, IsOk());
  ExpectInferenceWithinEstimate(fit->model(), hmm.shape(), sequences);

  Upload tree = MkUpload(3000, 3, 23);
  v1::FitHeader mk = MkHeader(tree, 3, v1::RATE_MODEL_ER);
  plan = PlanFit(mk, limits_);
  ASSERT_THAT(plan, IsOk());
  fit = RunFit(*plan, tree, controls_);
  ASSERT_THAT(fit, IsOk());
  ExpectInferenceWithinEstimate(fit->model(), mk.shape(), tree);
}

}  // namespace
}  // namespace emfit::server
