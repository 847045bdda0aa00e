// bench/compare's input files (bench_common.h) as emfit_core types, and the warm-started,
// fixed-iteration fit every emfit contestant runs.
#ifndef EMFIT_BENCH_EMFIT_INPUTS_H_
#define EMFIT_BENCH_EMFIT_INPUTS_H_

#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"
#include "emfit/data/dataset.h"
#include "emfit/em/options.h"
#include "emfit/exec/thread_pool.h"
#include "emfit/gmm/gmm.h"

namespace emfit::bench {

inline Dataset LoadDataset(const std::string& path, int64_t n, int64_t d) {
  const std::vector<double> raw = ReadDoubles(path, n * d);
  Dataset data;
  data.x = Eigen::Map<const RowMatrix>(raw.data(), n, d);
  return data;
}

inline gmm::GmmParams LoadParams(const std::string& path, const std::string& cov, int64_t k,
                                 int64_t d) {
  absl::StatusOr<gmm::CovarianceType> type = gmm::ParseCovarianceType(cov);
  if (!type.ok()) Die(type.status().ToString());
  const InitParams init = ReadInit(path, cov, k, d);
  gmm::GmmParams p;
  p.covariance_type = *type;
  p.weights = Eigen::Map<const Eigen::VectorXd>(init.weights.data(), k);
  p.means = Eigen::Map<const RowMatrix>(init.means.data(), k, d);
  const int64_t cols = *type == gmm::CovarianceType::kSpherical ? 1 : d;
  const int64_t rows = static_cast<int64_t>(init.covariances.size()) / cols;
  p.covariances = Eigen::Map<const RowMatrix>(init.covariances.data(), rows, cols);
  return p;
}

// Exactly `iters` EM iterations (tol = 0) from `start`.
struct FixedWorkFit {
  gmm::GmmSpec spec;
  FitOptions options;

  FixedWorkFit(const gmm::GmmParams& start, int iters, double reg_covar) {
    spec.k = start.k();
    spec.covariance_type = start.covariance_type;
    spec.reg_covar = reg_covar;
    spec.init_params = start;
    options.max_iter = iters;
    options.tol = 0;
  }
};

// `threads` threads in all: the caller plus a pool of threads - 1 (none for 1).
inline std::unique_ptr<ThreadPool> MakePool(int threads) {
  return threads > 1 ? std::make_unique<ThreadPool>(threads - 1) : nullptr;
}

}  // namespace emfit::bench

#endif  // EMFIT_BENCH_EMFIT_INPUTS_H_
