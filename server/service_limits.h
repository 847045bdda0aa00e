#ifndef EMFIT_SERVER_SERVICE_LIMITS_H_
#define EMFIT_SERVER_SERVICE_LIMITS_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "emfit/v1/emfit.pb.h"

namespace emfit::server {

// Limits the server applies to every request before allocating anything.
struct ServiceLimits {
  uint64_t max_rows = 10'000'000;        // DataShape.rows
  uint32_t max_cols = 1'000;             // DataShape.cols
  uint64_t max_values = 200'000'000;     // rows * cols (8 bytes each)
  int max_k = 1'000;                     // components / states
  int max_iter = 100'000;                // FitOptions.max_iter
  int max_n_init = 1'000;                // FitOptions.n_init
  int max_candidates = 256;              // SelectModel grid size
  uint64_t max_sequences = 1'000'000;    // DataShape.num_sequences (hidden Markov models)
  uint64_t max_newick_bytes = 64 << 20;  // DataShape.newick_bytes (Mk models)
  uint32_t max_symbols = 100'000;        // categorical symbols of an HMM
  uint32_t max_name_bytes = 4096;        // one row name (a tip label)
  // Free parameters of one model. The default keeps a model (sent back in a result, or sent in
  // as a Posterior/Score header or warm start) within the 4 MiB default message size.
  int64_t max_model_values = 200'000;
  uint64_t max_inflight_bytes = uint64_t{8} << 30;  // data held by all calls together
  // A call whose client reads no response for this long is ended (its job is cancelled).
  absl::Duration max_stall = absl::Seconds(60);
  size_t max_outbox = 256;  // queued events per call before dropping iteration events
};

// INVALID_ARGUMENT for a malformed shape, RESOURCE_EXHAUSTED above a limit; messages name
// `field` (e.g. "header.shape") and the flag.
absl::Status CheckShape(const v1::DataShape& shape, const ServiceLimits& limits,
                        absl::string_view field);
absl::Status CheckOptions(const v1::FitOptions& options, const ServiceLimits& limits,
                          absl::string_view field);
absl::Status CheckK(uint32_t k, const ServiceLimits& limits, absl::string_view field);
// A model's size (its free parameters) against --max_model_values.
absl::Status CheckModelSize(int64_t free_parameters, const ServiceLimits& limits,
                            absl::string_view field);

}  // namespace emfit::server

#endif  // EMFIT_SERVER_SERVICE_LIMITS_H_
