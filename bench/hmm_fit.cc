// emfit_bench_hmm_fit: the in-process emfit contestant of `bench/compare --family=hmm`. Reads the
// sequences and the starting parameters that bench/compare wrote, runs hmm::Fit with tol=0 and
// exactly --iters Baum-Welch iterations from those parameters --repeats times, and prints one
// JSON line: wall seconds of each fit, iterations, final log-likelihood, peak memory.
//
//   emfit_bench_hmm_fit --data=X.f64 --offsets=O.f64 --init=INIT.f64 --n=N --d=D --k=K
//                       --sequences=S --emission=gaussian|categorical [--symbols=M] --iters=T
//                       [--threads=1] [--repeats=3]
//
// Files (raw little-endian float64): data N x d row-major (categorical: one column of symbol
// indices); offsets S + 1 row offsets; init: start (k), transitions (k x k, row-major), then
// Gaussian means (k x d) and full covariances (k blocks of d x d), or categorical probabilities
// (k x M).
#include <sys/resource.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"
#include "emfit/exec/thread_pool.h"
#include "emfit/hmm/hmm.h"
#include "emfit_inputs.h"

namespace emfit::bench {
namespace {

hmm::HmmParams LoadHmmParams(const std::string& path, const std::string& emission, int64_t k,
                             int64_t d, int64_t symbols) {
  const int64_t emission_values = emission == "gaussian" ? k * d + k * d * d : k * symbols;
  const std::vector<double> all = ReadDoubles(path, k + k * k + emission_values);
  const double* p = all.data();
  hmm::HmmParams params;
  params.start = Eigen::Map<const Eigen::VectorXd>(p, k);
  p += k;
  params.transitions = Eigen::Map<const RowMatrix>(p, k, k);
  p += k * k;
  if (emission == "gaussian") {
    hmm::GaussianEmissions g;
    g.covariance_type = gmm::CovarianceType::kFull;
    g.means = Eigen::Map<const RowMatrix>(p, k, d);
    g.covariances = Eigen::Map<const RowMatrix>(p + k * d, k * d, d);
    params.emissions = g;
  } else if (emission == "categorical") {
    params.emissions = hmm::CategoricalEmissions{Eigen::Map<const RowMatrix>(p, k, symbols)};
  } else {
    Die("--emission must be gaussian or categorical");
  }
  return params;
}

// CPU time of the process (user + system), seconds.
double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

int Main(int argc, char** argv) {
  Flags flags(argc, argv);
  const std::string data_path = flags.Str("data");
  const std::string offsets_path = flags.Str("offsets");
  const std::string init_path = flags.Str("init");
  const int64_t n = flags.Int("n");
  const int64_t d = flags.Int("d");
  const int64_t k = flags.Int("k");
  const int64_t sequences = flags.Int("sequences");
  const std::string emission = flags.Str("emission");
  const int64_t symbols = flags.Int("symbols", 0);
  const int iters = static_cast<int>(flags.Int("iters"));
  const int threads = static_cast<int>(flags.Int("threads", 1));
  const int repeats = static_cast<int>(flags.Int("repeats", 3));
  flags.Check();

  const Dataset data = [&] {
    Dataset out = LoadDataset(data_path, n, d);
    const std::vector<double> offsets = ReadDoubles(offsets_path, sequences + 1);
    out.sequence_offsets.assign(offsets.begin(), offsets.end());
    return out;
  }();
  hmm::HmmSpec spec;
  spec.init_params = LoadHmmParams(init_path, emission, k, d, symbols);
  spec.k = static_cast<int>(k);
  spec.emission = spec.init_params->emission_type();
  spec.covariance_type = gmm::CovarianceType::kFull;
  spec.num_symbols = static_cast<int>(symbols);
  spec.reg_covar = 0;  // pomegranate adds nothing: the same work
  FitOptions options;
  options.max_iter = iters;
  options.tol = 0;
  const std::unique_ptr<ThreadPool> pool = MakePool(threads);
  FitControls controls;
  controls.pool = pool.get();

  std::vector<double> seconds, cpu_seconds;
  int64_t rss_before_kb = 0, peak_kb = 0;
  absl::StatusOr<hmm::HmmFitResult> result;
  for (int r = 0; r < repeats; ++r) {
    Dataset copy = data;  // Fit takes its data by value; the copy is not timed
    ResetPeakRss();
    const int64_t before = ProcStatusKb("VmRSS");
    const double t0 = NowSeconds(), c0 = CpuSeconds();
    result = hmm::Fit(std::move(copy), spec, options, controls);
    seconds.push_back(NowSeconds() - t0);
    cpu_seconds.push_back(CpuSeconds() - c0);
    const int64_t peak = ProcStatusKb("VmHWM");
    if (!result.ok()) Die(result.status().ToString());
    if (r == 0 || peak - before > peak_kb - rss_before_kb) rss_before_kb = before, peak_kb = peak;
  }
  // Cross-check: the summary's log-likelihood is that of the returned parameters.
  absl::StatusOr<hmm::ScoreResult> score = hmm::Score(result->params, data, controls);
  if (!score.ok()) Die(score.status().ToString());

  std::printf(
      "{\"contestant\": \"emfit\", \"emission\": \"%s\", \"threads\": %d, \"iterations\": %d, "
      "\"log_likelihood\": %s, \"score_log_likelihood\": %s, \"seconds\": %s, "
      "\"cpu_seconds\": %s, "
      "\"rss_before_kb\": %lld, \"peak_rss_kb\": %lld, \"data_kb\": %lld, \"reason\": \"%s\"}\n",
      emission.c_str(), threads, result->summary.iterations,
      Exact(result->summary.log_likelihood).c_str(), Exact(score->log_likelihood).c_str(),
      JsonList(seconds).c_str(), JsonList(cpu_seconds).c_str(),
      static_cast<long long>(rss_before_kb), static_cast<long long>(peak_kb),
      static_cast<long long>(n * d * 8 / 1024), TerminationReasonName(result->summary.reason));
  return 0;
}

}  // namespace
}  // namespace emfit::bench

int main(int argc, char** argv) { return emfit::bench::Main(argc, argv); }
