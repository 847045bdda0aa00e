// The work behind each RPC, between validated protobuf and core, written once for every model
// family: plans (headers checked and converted before any data arrive) and runners (the
// family's core calls on the received data). The family-specific halves are the overloads of
// its converter (convert/gmm.h), chosen by the variants of families.h.
#ifndef EMFIT_SERVER_JOBS_H_
#define EMFIT_SERVER_JOBS_H_

#include <functional>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "data_receiver.h"
#include "emfit/em/observer.h"
#include "emfit/em/options.h"
#include "emfit/v1/emfit.pb.h"
#include "families.h"
#include "service_limits.h"
#include "upload.h"

namespace emfit::server {

// ---- Fit ----
struct FitPlan {
  SpecVariant spec;
  FitOptions options;
  // The job's working memory beyond its data (the family's WorkingBytes), for admission.
  uint64_t working_bytes = 0;
};
// Checks the header (shape, spec, options, starting model and its feature names, the work it
// asks for) against the limits and estimates the job's working memory.
absl::StatusOr<FitPlan> PlanFit(const v1::FitHeader& header, const ServiceLimits& limits);
// The fit; a fit that the call's deadline or a cancel stopped ends with that status.
absl::StatusOr<v1::FitResult> RunFit(const FitPlan& plan, Upload upload,
                                     const FitControls& controls);

// ---- Posterior and Score ----
// Checks the model, that the data's shape matches it, and the feature names.
absl::StatusOr<ModelVariant> PlanModel(const v1::PosteriorHeader& header,
                                       const ServiceLimits& limits);
// The working memory of a Posterior or Score job with `model` on data of `shape`.
// Posterior and Score run on the shared pool: `threads` is limits.job_threads.
uint64_t ModelWorkingBytes(const ModelVariant& model, const v1::DataShape& shape, int threads);
// Emits the posteriors block by block, in input order. Stops with CANCELLED when the controls'
// token fires.
absl::Status RunPosterior(const ModelVariant& model, const Upload& upload,
                          const FitControls& controls,
                          const std::function<void(v1::PosteriorResponse)>& emit);
absl::StatusOr<v1::ScoreResponse> RunScore(const ModelVariant& model, const Upload& upload,
                                           const FitControls& controls);

// ---- SelectModel ----
struct SelectPlan {
  std::vector<SpecVariant> candidates;  // grid order
  FitOptions options;
  v1::Criterion criterion = v1::CRITERION_BIC;
  // Working memory beyond the data: the candidates running at once (limits.job_threads), each
  // with its own copy of the data, and every candidate's result.
  uint64_t working_bytes = 0;
};
absl::StatusOr<SelectPlan> PlanSelect(const v1::SelectModelHeader& header,
                                      const ServiceLimits& limits);
// Fits every candidate on `controls.pool` (in parallel; each with its own copy of the data)
// and picks the best. `observer_for(i)` gives candidate i's observer (thread-safe: candidates
// run concurrently); `on_done` is called as each candidate ends, possibly concurrently.
absl::StatusOr<v1::SelectionResult> RunSelect(
    const SelectPlan& plan, const Upload& upload, const FitControls& controls,
    const std::function<FitObserver*(int)>& observer_for,
    const std::function<void(const v1::Candidate&)>& on_done);

// ---- Every call's header ----
// Plans the call's job (PlanFit, PlanModel, PlanSelect, PlanHistories) into `*plan` and returns
// what its header declares: the shape of the data and the job's working memory beyond them. The
// one header step of every RPC (handlers.cc, score_reactor.cc) and of the upload fuzz target.
absl::StatusOr<Declared> PlanCall(const v1::FitHeader& header, const ServiceLimits& limits,
                                  std::optional<FitPlan>* plan);
// Posterior and Score.
absl::StatusOr<Declared> PlanCall(const v1::PosteriorHeader& header, const ServiceLimits& limits,
                                  std::optional<ModelVariant>* model);
absl::StatusOr<Declared> PlanCall(const v1::SelectModelHeader& header, const ServiceLimits& limits,
                                  std::optional<SelectPlan>* plan);

// ---- SampleHistories (Mk models) ----
// Checks the model (an Mk model), the shape (one character), n and the sampler.
absl::StatusOr<HistoriesPlan> PlanHistories(const v1::SampleHistoriesHeader& header,
                                            const ServiceLimits& limits);
// Emits the maps as SIMMAP lines in batches, in order, then their summary. Stops with
// CANCELLED when the controls' token fires.
absl::Status RunHistories(const HistoriesPlan& plan, const Upload& upload,
                          const FitControls& controls,
                          const std::function<void(v1::SampleHistoriesResponse)>& emit);
absl::StatusOr<Declared> PlanCall(const v1::SampleHistoriesHeader& header,
                                  const ServiceLimits& limits, std::optional<HistoriesPlan>* plan);

}  // namespace emfit::server

#endif  // EMFIT_SERVER_JOBS_H_
