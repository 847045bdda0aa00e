// OpenCV contestant of bench/compare: cv::ml::EM with COV_MAT_GENERIC (full), COV_MAT_DIAGONAL
// (diag) or COV_MAT_SPHERICAL (spherical). Built by bench/compare with g++ against Debian's
// libopencv-ml-dev, never by CMake.
//
// trainE(samples, means0, covs0, weights0) starts with an E-step at the given parameters. With
// TermCriteria(COUNT, maxCount) the loop runs maxCount E-steps and maxCount - 1 M-steps and
// reports the log-likelihood of the last E-step, so maxCount = T + 1 does T EM iterations and
// reports the log-likelihood at the parameters after T M-steps, like the other contestants.
// OpenCV's own regularisation is a floor of DBL_EPSILON on the covariance eigenvalues (there is
// no reg_covar); it does not bind on these data, so with reg_covar=0 elsewhere the work is the
// same. Its loop also stops if the log-likelihood ever decreases, which exact EM does not do far
// from convergence. bench/compare checks both through the final log-likelihood.
//
// cv::ml::EM's E-step and M-step are serial loops over the rows (OpenCV 4.6); setNumThreads
// follows --threads anyway.
//
//   ref_opencv --data=X.f64 --init=INIT.f64 --n=N --d=D --k=K --cov=full|diag|spherical
//              --iters=T [--repeats=1] [--threads=1] [--count_iterations]
#include <cstdio>
#include <opencv2/core.hpp>
#include <opencv2/core/utility.hpp>
#include <opencv2/ml.hpp>
#include <string>
#include <vector>

#include "bench_common.h"

namespace emfit::bench {
namespace {

int Main(int argc, char** argv) {
  Flags flags(argc, argv);
  const std::string data_path = flags.Str("data");
  const std::string init_path = flags.Str("init");
  const int n = static_cast<int>(flags.Int("n"));
  const int d = static_cast<int>(flags.Int("d"));
  const int k = static_cast<int>(flags.Int("k"));
  const std::string cov = flags.Str("cov");
  const int iters = static_cast<int>(flags.Int("iters"));
  const int repeats = static_cast<int>(flags.Int("repeats", 1));
  const int threads = static_cast<int>(flags.Int("threads", 1));
  const bool count_iterations = flags.Str("count_iterations", "false") == "true";
  flags.Check();

  int type = 0;
  if (cov == "full") {
    type = cv::ml::EM::COV_MAT_GENERIC;
  } else if (cov == "diag") {
    type = cv::ml::EM::COV_MAT_DIAGONAL;
  } else if (cov == "spherical") {
    type = cv::ml::EM::COV_MAT_SPHERICAL;
  } else {
    Die("cv::ml::EM has generic, diagonal and spherical covariances; --cov=" + cov +
        " is not supported");
  }
  cv::setNumThreads(threads);

  std::vector<double> raw = ReadDoubles(data_path, static_cast<int64_t>(n) * d);
  const cv::Mat samples(n, d, CV_64F, raw.data());
  const InitParams init = ReadInit(init_path, cov, k, d);
  const cv::Mat means0 = cv::Mat(k, d, CV_64F, const_cast<double*>(init.means.data())).clone();
  const cv::Mat weights0 = cv::Mat(1, k, CV_64F, const_cast<double*>(init.weights.data())).clone();
  std::vector<cv::Mat> covs0(k);
  for (int j = 0; j < k; ++j) {
    covs0[j] = cv::Mat::zeros(d, d, CV_64F);
    for (int a = 0; a < d; ++a) {
      if (cov == "full") {
        for (int b = 0; b < d; ++b) {
          covs0[j].at<double>(a, b) = init.covariances[(static_cast<size_t>(j) * d + a) * d + b];
        }
      } else if (cov == "diag") {
        covs0[j].at<double>(a, a) = init.covariances[static_cast<size_t>(j) * d + a];
      } else {
        covs0[j].at<double>(a, a) = init.covariances[j];
      }
    }
  }

  // Log-likelihood reported by trainE with maxCount = iterations + 1.
  auto train = [&](int iterations) {
    cv::Ptr<cv::ml::EM> em = cv::ml::EM::create();
    em->setClustersNumber(k);
    em->setCovarianceMatrixType(type);
    em->setTermCriteria(cv::TermCriteria(cv::TermCriteria::COUNT, iterations + 1, 0.0));
    cv::Mat row_ll;
    if (!em->trainE(samples, means0, covs0, weights0, row_ll)) Die("cv::ml::EM::trainE failed");
    return cv::sum(row_ll)[0];
  };

  std::vector<double> seconds;
  int64_t rss_before_kb = 0, peak_kb = 0;
  double log_likelihood = 0;
  for (int r = 0; r < repeats; ++r) {
    ResetPeakRss();
    const int64_t before = ProcStatusKb("VmRSS");
    const double t0 = NowSeconds();
    log_likelihood = train(iters);
    seconds.push_back(NowSeconds() - t0);
    const int64_t peak = ProcStatusKb("VmHWM");
    if (r == 0 || peak - before > peak_kb - rss_before_kb) rss_before_kb = before, peak_kb = peak;
  }
  // OpenCV does not report how many iterations ran. With --count_iterations, find the fewest
  // iterations t whose result equals that of --iters (once the loop has stopped early, more
  // iterations change nothing), by bisection; costs about log2(T) extra trainings.
  int iterations = iters;
  if (count_iterations) {
    int lo = 0, hi = iters;
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (train(mid) == log_likelihood) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    iterations = lo;
  }
  std::printf(
      "{\"contestant\": \"opencv\", \"cov\": \"%s\", \"threads\": %d, \"iterations\": %d, "
      "\"iterations_counted\": %s, "
      "\"log_likelihood\": %s, \"seconds\": %s, \"rss_before_kb\": %lld, \"peak_rss_kb\": %lld, "
      "\"version\": \"%s\"}\n",
      cov.c_str(), cv::getNumThreads(), iterations, count_iterations ? "true" : "false",
      Exact(log_likelihood).c_str(), JsonList(seconds).c_str(),
      static_cast<long long>(rss_before_kb), static_cast<long long>(peak_kb), CV_VERSION);
  return 0;
}

}  // namespace
}  // namespace emfit::bench

int main(int argc, char** argv) { return emfit::bench::Main(argc, argv); }
