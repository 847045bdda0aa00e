// emfit_bench_fit: the in-process contestant of bench/compare. Reads the data and the starting
// parameters that bench/compare wrote (formats in bench_common.h), runs gmm::Fit with tol=0 and
// exactly --iters iterations from those parameters --repeats times, and prints one JSON line:
// wall seconds of each fit, iterations, final log-likelihood, peak memory.
//
//   emfit_bench_fit --data=X.f64 --init=INIT.f64 --n=N --d=D --k=K --cov=full --iters=T
//                   [--threads=1] [--repeats=3] [--reg_covar=0]
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"
#include "emfit_inputs.h"

namespace emfit::bench {
namespace {

int Main(int argc, char** argv) {
  Flags flags(argc, argv);
  const std::string data_path = flags.Str("data");
  const std::string init_path = flags.Str("init");
  const int64_t n = flags.Int("n");
  const int64_t d = flags.Int("d");
  const int64_t k = flags.Int("k");
  const std::string cov = flags.Str("cov");
  const int iters = static_cast<int>(flags.Int("iters"));
  const int threads = static_cast<int>(flags.Int("threads", 1));
  const int repeats = static_cast<int>(flags.Int("repeats", 3));
  const double reg_covar = flags.Double("reg_covar", "0");
  flags.Check();

  const Dataset data = LoadDataset(data_path, n, d);
  const FixedWorkFit fit(LoadParams(init_path, cov, k, d), iters, reg_covar);
  if (fit.spec.k != k) Die("--k does not match the init file");
  const std::unique_ptr<ThreadPool> pool = MakePool(threads);
  FitControls controls;
  controls.pool = pool.get();

  std::vector<double> seconds;
  int64_t rss_before_kb = 0, peak_kb = 0;
  absl::StatusOr<gmm::GmmFitResult> result;
  for (int r = 0; r < repeats; ++r) {
    Dataset copy = data;  // Fit takes its data by value; the copy is not timed
    ResetPeakRss();
    const int64_t before = ProcStatusKb("VmRSS");
    const double t0 = NowSeconds();
    result = gmm::Fit(std::move(copy), fit.spec, fit.options, controls);
    seconds.push_back(NowSeconds() - t0);
    const int64_t peak = ProcStatusKb("VmHWM");
    if (!result.ok()) Die(result.status().ToString());
    if (r == 0 || peak - before > peak_kb - rss_before_kb) rss_before_kb = before, peak_kb = peak;
  }
  // Cross-check: the summary's log-likelihood is that of the returned parameters.
  FitControls score_controls;
  score_controls.pool = pool.get();
  absl::StatusOr<gmm::ScoreResult> score = gmm::Score(result->params, data, score_controls);
  if (!score.ok()) Die(score.status().ToString());

  std::printf(
      "{\"contestant\": \"emfit\", \"cov\": \"%s\", \"threads\": %d, \"iterations\": %d, "
      "\"log_likelihood\": %s, \"score_log_likelihood\": %s, \"seconds\": %s, "
      "\"rss_before_kb\": %lld, \"peak_rss_kb\": %lld, \"reason\": \"%s\"}\n",
      cov.c_str(), threads, result->summary.iterations,
      Exact(result->summary.log_likelihood).c_str(), Exact(score->log_likelihood).c_str(),
      JsonList(seconds).c_str(), static_cast<long long>(rss_before_kb),
      static_cast<long long>(peak_kb), TerminationReasonName(result->summary.reason));
  return 0;
}

}  // namespace
}  // namespace emfit::bench

int main(int argc, char** argv) { return emfit::bench::Main(argc, argv); }
