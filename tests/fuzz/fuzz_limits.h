// The limits of the server's fuzz targets: small enough that an input cannot take more than a
// moment or a few MB (the server's own defaults allow hours and gigabytes, which its admission
// and deadlines bound instead).
#ifndef EMFIT_TESTS_FUZZ_FUZZ_LIMITS_H_
#define EMFIT_TESTS_FUZZ_FUZZ_LIMITS_H_

#include "fuzz_require.h"
#include "service_limits.h"

namespace emfit::fuzz {

inline server::ServiceLimits FuzzLimits() {
  server::ServiceLimits limits;
  limits.max_rows = 2000;
  limits.max_cols = 16;
  limits.max_values = 4000;
  limits.max_k = 6;
  limits.max_iter = 20;
  limits.max_n_init = 2;
  limits.max_candidates = 4;
  limits.max_sequences = 64;
  limits.max_newick_bytes = 16 << 10;
  limits.max_symbols = 32;
  limits.max_name_bytes = 64;
  limits.max_tips = 128;
  limits.max_states = 5;
  limits.max_histories = 8;
  limits.max_model_values = 4000;
  limits.max_total_iter = 40;
  limits.max_work = 2e6;
  limits.max_inflight_bytes = 64 << 20;
  limits.max_inflight_bytes_per_peer = 64 << 20;
  return limits;
}

}  // namespace emfit::fuzz

#endif  // EMFIT_TESTS_FUZZ_FUZZ_LIMITS_H_
