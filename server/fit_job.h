#ifndef EMFIT_SERVER_FIT_JOB_H_
#define EMFIT_SERVER_FIT_JOB_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "convert/convert.h"
#include "emfit/data/dataset.h"
#include "emfit/em/options.h"
#include "emfit/v1/emfit.pb.h"

namespace emfit::server {

// Limits the server applies to every request before allocating anything.
struct ServiceLimits {
  uint64_t max_rows = 10'000'000;                   // DataShape.rows
  uint32_t max_cols = 1'000;                        // DataShape.cols
  uint64_t max_values = 200'000'000;                // rows * cols (8 bytes each)
  int max_k = 1'000;                                // components / states
  int max_iter = 100'000;                           // FitOptions.max_iter
  int max_n_init = 1'000;                           // FitOptions.n_init
  uint64_t max_inflight_bytes = uint64_t{8} << 30;  // data held by all calls together
  size_t max_outbox = 256;  // queued events per call before dropping iterations
};

// A validated Fit header: everything needed to receive the data and run the job.
struct FitPlan {
  ModelSpecVariant spec;
  FitOptions options;
  int64_t rows = 0;
  int64_t cols = 0;
};

// Checks a header against the limits and converts it. INVALID_ARGUMENT for malformed input,
// RESOURCE_EXHAUSTED for a request above a limit; messages name the field and the limit.
absl::StatusOr<FitPlan> PlanFit(const v1::FitHeader& header, const ServiceLimits& limits);

// Runs the fit in core and converts the outcome.
absl::StatusOr<v1::FitResult> RunFit(const FitPlan& plan, Dataset data,
                                     const FitControls& controls);

}  // namespace emfit::server

#endif  // EMFIT_SERVER_FIT_JOB_H_
