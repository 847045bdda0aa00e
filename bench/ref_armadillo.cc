// Armadillo contestant of bench/compare: gmm_full (full covariances) or gmm_diag (diagonal).
// Built by bench/compare with g++ against Debian's libarmadillo-dev, never by CMake.
//
// The model is set to the starting parameters with set_params(), then
// learn(X, k, eucl_dist, keep_existing, km_iter=0, em_iter=T, var_floor, false) runs T EM
// iterations from them: keep_existing with km_iter=0 skips k-means and the initial covariances.
// Two things could make Armadillo do different work from the others, and neither applies here:
//   - var_floor is a floor on the variances (not an addition like reg_covar); with var_floor=0
//     Armadillo uses DBL_MIN, which never binds on these data.
//   - learn() stops early when the mean log-likelihood changes by <= DBL_EPSILON between
//     iterations; far from convergence (a few iterations from a rough start) it never does.
// bench/compare checks both by comparing the final log-likelihood with the other contestants.
// The final log-likelihood is sum_log_p(X) at the returned parameters, inside the timed region
// (the others' fits end with an E-step at the final parameters too).
//
// Armadillo's EM loop is parallelised with OpenMP; threads follow OMP_NUM_THREADS.
//
//   ref_armadillo --data=X.f64 --init=INIT.f64 --n=N --d=D --k=K --cov=full|diag --iters=T
//                 [--repeats=3]
#include <armadillo>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace emfit::bench {
namespace {

template <class Model>
void SetStart(const InitParams& init, int64_t k, int64_t d, const std::string& cov, Model* model);

template <>
void SetStart(const InitParams& init, int64_t k, int64_t d, const std::string&,
              arma::gmm_full* model) {
  // A row-major k x d matrix is the column-major d x k matrix of column means Armadillo wants.
  const arma::mat means(init.means.data(), d, k);
  arma::cube fcovs(d, d, k);
  for (int64_t j = 0; j < k; ++j) {
    // Component j is rows [j*d, (j+1)*d) of the row-major (k*d) x d layout; it is symmetric,
    // so reading it column-major gives the same matrix.
    fcovs.slice(j) = arma::mat(init.covariances.data() + j * d * d, d, d);
  }
  const arma::rowvec hefts(init.weights.data(), k);
  model->set_params(means, fcovs, hefts);
}

template <>
void SetStart(const InitParams& init, int64_t k, int64_t d, const std::string&,
              arma::gmm_diag* model) {
  const arma::mat means(init.means.data(), d, k);
  const arma::mat dcovs(init.covariances.data(), d, k);  // k x d row-major = d x k col-major
  const arma::rowvec hefts(init.weights.data(), k);
  model->set_params(means, dcovs, hefts);
}

template <class Model>
int Run(Flags& flags, const char* name) {
  const std::string data_path = flags.Str("data");
  const std::string init_path = flags.Str("init");
  const int64_t n = flags.Int("n");
  const int64_t d = flags.Int("d");
  const int64_t k = flags.Int("k");
  const std::string cov = flags.Str("cov");
  const int64_t iters = flags.Int("iters");
  const int repeats = static_cast<int>(flags.Int("repeats", 3));
  const double var_floor = flags.Double("var_floor", "0");
  flags.Check();

  // N x d row-major is the d x N column-major matrix of column observations Armadillo wants.
  const std::vector<double> raw = ReadDoubles(data_path, n * d);
  const arma::mat x(raw.data(), d, n);
  const InitParams init = ReadInit(init_path, cov, k, d);

  // An untimed run with print_mode on counts the EM iterations learn() really ran.
  int64_t iterations = 0;
  {
    Model model;
    SetStart(init, k, d, cov, &model);
    std::ostringstream log;
    std::streambuf* const saved = arma::get_cout_stream().rdbuf(log.rdbuf());
    const bool ok =
        model.learn(x, k, arma::eucl_dist, arma::keep_existing, 0, iters, var_floor, true);
    arma::get_cout_stream().rdbuf(saved);
    if (!ok) Die(std::string(name) + "::learn failed");
    std::istringstream lines(log.str());
    for (std::string line; std::getline(lines, line);) {
      if (line.find("EM: iteration:") != std::string::npos) ++iterations;
    }
  }

  std::vector<double> seconds;
  int64_t rss_before_kb = 0, peak_kb = 0;
  double log_likelihood = 0;
  for (int r = 0; r < repeats; ++r) {
    Model model;
    SetStart(init, k, d, cov, &model);
    ResetPeakRss();
    const int64_t before = ProcStatusKb("VmRSS");
    const double t0 = NowSeconds();
    const bool ok =
        model.learn(x, k, arma::eucl_dist, arma::keep_existing, 0, iters, var_floor, false);
    log_likelihood = model.sum_log_p(x);
    seconds.push_back(NowSeconds() - t0);
    const int64_t peak = ProcStatusKb("VmHWM");
    if (!ok) Die(std::string(name) + "::learn failed");
    if (r == 0 || peak - before > peak_kb - rss_before_kb) rss_before_kb = before, peak_kb = peak;
  }
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  std::printf(
      "{\"contestant\": \"armadillo\", \"cov\": \"%s\", \"model\": \"%s\", \"threads\": %d, "
      "\"iterations\": %lld, \"log_likelihood\": %s, \"seconds\": %s, \"rss_before_kb\": %lld, "
      "\"peak_rss_kb\": %lld, \"version\": \"%d.%d.%d\"}\n",
      cov.c_str(), name, threads, static_cast<long long>(iterations), Exact(log_likelihood).c_str(),
      JsonList(seconds).c_str(), static_cast<long long>(rss_before_kb),
      static_cast<long long>(peak_kb), ARMA_VERSION_MAJOR, ARMA_VERSION_MINOR, ARMA_VERSION_PATCH);
  return 0;
}

int Main(int argc, char** argv) {
  Flags flags(argc, argv);
  const std::string cov = flags.Str("cov");
  if (cov == "full") return Run<arma::gmm_full>(flags, "gmm_full");
  if (cov == "diag") return Run<arma::gmm_diag>(flags, "gmm_diag");
  Die("Armadillo has gmm_full and gmm_diag only; --cov=" + cov + " is not supported");
}

}  // namespace
}  // namespace emfit::bench

int main(int argc, char** argv) { return emfit::bench::Main(argc, argv); }
