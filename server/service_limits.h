#ifndef EMFIT_SERVER_SERVICE_LIMITS_H_
#define EMFIT_SERVER_SERVICE_LIMITS_H_

#include <cstddef>
#include <cstdint>
#include <string>

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
  uint64_t max_tips = 1'000'000;         // tips of an Mk tree (and DataShape.rows of Mk calls)
  int max_states = 100;                  // states of an Mk model
  uint32_t max_histories = 100'000;      // stochastic maps per SampleHistories call
  // Free parameters of one model. The default keeps a model (sent back in a result, or sent in
  // as a Posterior/Score header or warm start) within the 4 MiB default message size.
  int64_t max_model_values = 200'000;
  // Work one request may ask for: restarts x max_iter (x SelectModel candidates) iterations,
  // and those iterations x rows x cols values visited.
  uint64_t max_total_iter = 100'000;
  double max_work = 1e12;

  // Admission (admission.h). Data and working memory held by all calls together; 0: derived
  // from the machine's memory (DefaultInflightBudget) when the server starts.
  uint64_t max_inflight_bytes = 0;
  // One client's share of it; 0: half of max_inflight_bytes.
  uint64_t max_inflight_bytes_per_peer = 0;
  int max_calls_per_peer = 64;  // calls of one client in progress at once
  // An upload (header and data) must end within upload_timeout plus the time its declared
  // bytes take at min_upload_rate bytes per second.
  absl::Duration upload_timeout = absl::Seconds(30);
  double min_upload_rate = 1 << 20;
  // The longest a job may run once a worker took it; then its call ends (DEADLINE_EXCEEDED).
  absl::Duration max_job_time = absl::Hours(1);
  // The deadline of a call that came without one, from its start.
  absl::Duration default_deadline = absl::Hours(2);
  // Threads one job may use at once (the compute pool plus its own): SelectModel candidates and
  // restarts run this many at a time. Set by the server from --compute_threads.
  int job_threads = 1;

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
// The values one EM iteration of a family's model visits (the family's IterationCost in
// convert/: rows x columns for a mixture), and how they were counted, for messages.
struct IterationCost {
  double values = 0;
  std::string what;  // e.g. "272 rows x 2 columns"
};
// The work of `restarts` x `max_iter` iterations for each of `candidates` models, each
// iteration of the costliest visiting `cost.values` values, against --max_total_iter and
// --max_work.
absl::Status CheckWork(uint64_t restarts, uint64_t max_iter, uint64_t candidates,
                       const IterationCost& cost, const ServiceLimits& limits,
                       absl::string_view field);
// A model's size (its free parameters) against --max_model_values.
absl::Status CheckModelSize(int64_t free_parameters, const ServiceLimits& limits,
                            absl::string_view field);

}  // namespace emfit::server

#endif  // EMFIT_SERVER_SERVICE_LIMITS_H_
