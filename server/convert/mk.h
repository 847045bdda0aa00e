// The Mk family in the server: its messages converted to and from core, and its part of each
// job (jobs.h), with the same function set as convert/gmm.h. An Mk call's data are the tree's
// Newick text, one row name per tip (its label) and the tips' likelihoods of the states
// (docs/mk.md, "The service").
#ifndef EMFIT_SERVER_CONVERT_MK_H_
#define EMFIT_SERVER_CONVERT_MK_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "convert/common.h"
#include "data_receiver.h"
#include "emfit/em/options.h"
#include "emfit/mk/mk.h"
#include "emfit/v1/emfit.pb.h"
#include "service_limits.h"

namespace emfit::server {

// How an Mk call's tree and tips are read once they have arrived: the header's
// allow_missing_tips and the limits that only the tree can be checked against.
struct MkDataPlan {
  bool allow_missing_tips = false;
  uint64_t max_tips = 0;
  // Bytes that Monte Carlo EM's store of node states may take (docs/mk.md, "The service"):
  // the limit (--max_values x 8 bytes), or for a Monte Carlo fit the store it reserves.
  uint64_t max_sample_bytes = 0;
};

// The store of draws a Monte Carlo EM fit reserves when the client leaves max_sample_size
// unset (the default max_sample_size is lowered to what fits).
constexpr uint64_t kDefaultSampleStoreBytes = uint64_t{256} << 20;

// An Mk spec as the server runs it: core's spec, and what applies to the data.
struct MkSpecPlan {
  mk::MkSpec spec;
  MkDataPlan data;
  // Whether the client set spec.mk.mcem.max_sample_size (otherwise the server may lower the
  // default to what fits in max_sample_bytes).
  bool max_sample_size_given = false;
};

// An Mk model for Posterior, Score and SampleHistories, and what applies to the data.
struct MkModelPlan {
  mk::MkParams params;
  MkDataPlan data;
};

absl::StatusOr<MkSpecPlan> FromProto(const v1::MkSpec& spec);
void ToProto(const mk::MkParams& params, v1::MkModel* out);
absl::StatusOr<MkModelPlan> FromProto(const v1::MkModel& model, absl::string_view field);

// What one EM iteration visits, for --max_work (service_limits.h).
IterationCost CostOfIteration(const MkSpecPlan& spec, const v1::DataShape& shape);

// Admission (convert/gmm.h): upper bounds of a job's memory beyond its uploaded data, from the
// declared shape (tips, k x characters columns, Newick bytes) before any data arrive.
uint64_t ResultBytes(const MkSpecPlan& spec, const v1::DataShape& shape, const FitOptions& options);
uint64_t WorkingBytes(const MkSpecPlan& spec, const v1::DataShape& shape, const FitOptions& options,
                      int threads);
uint64_t WorkingBytes(const MkModelPlan& model, const v1::DataShape& shape, int threads);

// The same functions as convert/gmm.h (see there).
absl::Status PlanSpec(MkSpecPlan* spec, const v1::ModelSpec& sent, const v1::Model* init,
                      const v1::DataShape& shape, const ServiceLimits& limits);
absl::Status PlanModel(MkModelPlan* model, const v1::DataShape& shape, const ServiceLimits& limits);
absl::StatusOr<v1::FitResult> FitJob(const MkSpecPlan& spec, Upload upload,
                                     const FitOptions& options, const FitControls& controls);
// Emits every node's posterior in blocks of about 1 MiB, in node order (v1::PosteriorResponse).
absl::Status PosteriorJob(const MkModelPlan& model, const Upload& upload,
                          const FitControls& controls, const PosteriorEmitter& emit);
absl::StatusOr<v1::ScoreResponse> ScoreJob(const MkModelPlan& model, const Upload& upload,
                                           const FitControls& controls);
// The candidates of a SelectModel grid: the template `base` with each of header.rate_models.
absl::StatusOr<std::vector<MkSpecPlan>> SelectGrid(const MkSpecPlan& base,
                                                   const v1::SelectModelHeader& header,
                                                   const ServiceLimits& limits);
void Describe(const MkSpecPlan& spec, v1::Candidate* candidate);

// Completes and checks the loop options for an Mk spec (jobs.cc calls this overload for Mk
// specs and a no-op for the other families). Unset options get Mk's defaults: tol 1e-10 on the
// mean log-likelihood per tip (the shared 1e-6 stops ~1e-4 short of the maximum that direct
// optimisers such as phytools' fitMk report; 1e-10 matches them to ~1e-7) and max_iter 1000
// (plain EM takes ~140 iterations for an ARD model on the bundled anoles at that tolerance).
// Monte Carlo EM refuses SQUAREM.
absl::Status PlanOptions(const MkSpecPlan& spec, const v1::FitOptions& sent,
                         const ServiceLimits& limits, FitOptions* options);

// ---- SampleHistories (Mk models only) ----
using HistoriesEmitter = std::function<void(v1::SampleHistoriesResponse)>;
struct HistoriesPlan {
  MkModelPlan model;
  int64_t n = 0;
  uint64_t seed = 0;
  mk::PathSampler sampler = mk::PathSampler::kAuto;
};
// Completes `plan` (whose model is planned already) with the header's n, seed and sampler,
// checked against the limits.
// SampleHistories' working memory (the Posterior's, and the SIMMAP batches in flight).
uint64_t WorkingBytes(const HistoriesPlan& plan, const v1::DataShape& shape, int threads);
absl::Status PlanDraws(const v1::SampleHistoriesHeader& header, const ServiceLimits& limits,
                       HistoriesPlan* plan);
// Draws the maps and emits them as SIMMAP lines in batches of about 1 MiB, in order, then a
// message with the summary.
absl::Status HistoriesJob(const HistoriesPlan& plan, const Upload& upload,
                          const FitControls& controls, const HistoriesEmitter& emit);

}  // namespace emfit::server

#endif  // EMFIT_SERVER_CONVERT_MK_H_
