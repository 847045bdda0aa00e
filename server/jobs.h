// The work behind each RPC, between validated protobuf and core: plans (headers checked and
// converted before any data arrive) and runners (core calls on the received data).
#ifndef EMFIT_SERVER_JOBS_H_
#define EMFIT_SERVER_JOBS_H_

#include <functional>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "convert/convert.h"
#include "emfit/data/dataset.h"
#include "emfit/em/observer.h"
#include "emfit/em/options.h"
#include "emfit/gmm/gmm.h"
#include "emfit/v1/emfit.pb.h"
#include "service_limits.h"

namespace emfit::server {

// ---- Fit ----
struct FitPlan {
  ModelSpecVariant spec;
  FitOptions options;
};
// Checks the header (shape, spec, options, starting model) against the limits.
absl::StatusOr<FitPlan> PlanFit(const v1::FitHeader& header, const ServiceLimits& limits);
absl::StatusOr<v1::FitResult> RunFit(const FitPlan& plan, Dataset data,
                                     const FitControls& controls);

// ---- Posterior and Score ----
using ModelVariant = std::variant<gmm::GmmParams>;
// Checks the model and that the data's columns match it.
absl::StatusOr<ModelVariant> PlanModel(const v1::PosteriorHeader& header,
                                       const ServiceLimits& limits);
// Emits the posteriors block by block, in row order. Stops with CANCELLED/DEADLINE_EXCEEDED
// when the controls fire.
absl::Status RunPosterior(const ModelVariant& model, const Dataset& data,
                          const FitControls& controls,
                          const std::function<void(v1::PosteriorResponse)>& emit);
absl::StatusOr<v1::ScoreResponse> RunScore(const ModelVariant& model, const Dataset& data,
                                           const FitControls& controls);

// ---- SelectModel ----
struct SelectPlan {
  std::vector<gmm::GmmSpec> candidates;  // grid order: for each k, each covariance type
  FitOptions options;
  v1::Criterion criterion = v1::CRITERION_BIC;
};
absl::StatusOr<SelectPlan> PlanSelect(const v1::SelectModelHeader& header,
                                      const ServiceLimits& limits);
// Fits every candidate on `controls.pool` (in parallel; each with its own copy of the data)
// and picks the best. `observer_for(i)` gives candidate i's observer (thread-safe: candidates
// run concurrently); `on_done` is called as each candidate ends, possibly concurrently.
absl::StatusOr<v1::SelectionResult> RunSelect(
    const SelectPlan& plan, const Dataset& data, const FitControls& controls,
    const std::function<FitObserver*(int)>& observer_for,
    const std::function<void(const v1::Candidate&)>& on_done);

}  // namespace emfit::server

#endif  // EMFIT_SERVER_JOBS_H_
