#include "jobs.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "convert/common.h"
#include "convert/gmm.h"
#include "convert/hmm.h"
#include "emfit/base/status_macros.h"
#include "emfit/exec/thread_pool.h"

namespace emfit::server {
namespace {

// A model's feature names against the data's column names: both given and different is an
// error unless the client asked to ignore them.
absl::Status CheckFeatureNames(const v1::Model& model, const v1::DataShape& shape, bool ignore,
                               absl::string_view field, absl::string_view ignore_field) {
  if (ignore || model.feature_names_size() == 0 || shape.column_names_size() == 0) {
    return absl::OkStatus();
  }
  if (std::equal(model.feature_names().begin(), model.feature_names().end(),
                 shape.column_names().begin(), shape.column_names().end())) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s.feature_names: the model was fitted to the columns [%s], the data have the columns "
      "[%s]; reorder the data's columns, or set %s to use the model anyway",
      field, absl::StrJoin(model.feature_names(), ", "), absl::StrJoin(shape.column_names(), ", "),
      ignore_field));
}

}  // namespace

absl::StatusOr<FitPlan> PlanFit(const v1::FitHeader& header, const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(CheckShape(header.shape(), limits, "header.shape"));
  EMFIT_RETURN_IF_ERROR(CheckOptions(header.options(), limits, "header.options"));
  FitPlan plan;
  EMFIT_ASSIGN_OR_RETURN(plan.options, FromProto(header.options()));
  EMFIT_RETURN_IF_ERROR(plan.options.Validate());
  EMFIT_ASSIGN_OR_RETURN(plan.spec, SpecFromProto(header.spec(), "header.spec"));
  const v1::Model* init = nullptr;
  if (header.has_init()) {
    if (header.init().family_case() != static_cast<int>(header.spec().family_case())) {
      return absl::InvalidArgumentError(
          "header.init: the starting model must be of the spec's family (the same oneof case)");
    }
    EMFIT_RETURN_IF_ERROR(CheckFeatureNames(header.init(), header.shape(),
                                            header.ignore_feature_names(), "header.init",
                                            "header.ignore_feature_names"));
    init = &header.init();
  }
  EMFIT_RETURN_IF_ERROR(std::visit(
      [&](auto& spec) { return PlanSpec(&spec, header.spec(), init, header.shape(), limits); },
      plan.spec));
  return plan;
}

absl::StatusOr<v1::FitResult> RunFit(const FitPlan& plan, Upload upload,
                                     const FitControls& controls) {
  const std::vector<std::string> names = upload.data.column_names;
  EMFIT_ASSIGN_OR_RETURN(
      v1::FitResult out,
      std::visit(
          [&](const auto& spec) { return FitJob(spec, std::move(upload), plan.options, controls); },
          plan.spec));
  // A fit that the call's deadline or a cancel stopped ends the call with that status
  // (docs/api.md), as RunSelect does: the client is no longer waiting, and a partial result
  // would race the client's own timer.
  EMFIT_RETURN_IF_ERROR(CheckInterrupted(controls));
  out.mutable_model()->mutable_feature_names()->Assign(names.begin(), names.end());
  return out;
}

absl::StatusOr<ModelVariant> PlanModel(const v1::PosteriorHeader& header,
                                       const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(CheckShape(header.shape(), limits, "header.shape"));
  EMFIT_ASSIGN_OR_RETURN(ModelVariant model, ModelFromProto(header.model(), "header.model"));
  EMFIT_RETURN_IF_ERROR(CheckFeatureNames(header.model(), header.shape(),
                                          header.ignore_feature_names(), "header.model",
                                          "header.ignore_feature_names"));
  EMFIT_RETURN_IF_ERROR(
      std::visit([&](const auto& m) { return PlanModel(m, header.shape(), limits); }, model));
  return model;
}

absl::Status RunPosterior(const ModelVariant& model, const Upload& upload,
                          const FitControls& controls,
                          const std::function<void(v1::PosteriorResponse)>& emit) {
  return std::visit([&](const auto& m) { return PosteriorJob(m, upload, controls, emit); }, model);
}

absl::StatusOr<v1::ScoreResponse> RunScore(const ModelVariant& model, const Upload& upload,
                                           const FitControls& controls) {
  return std::visit([&](const auto& m) { return ScoreJob(m, upload, controls); }, model);
}

absl::StatusOr<SelectPlan> PlanSelect(const v1::SelectModelHeader& header,
                                      const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(CheckShape(header.shape(), limits, "header.shape"));
  EMFIT_RETURN_IF_ERROR(CheckOptions(header.options(), limits, "header.options"));
  SelectPlan plan;
  EMFIT_ASSIGN_OR_RETURN(plan.options, FromProto(header.options()));
  EMFIT_RETURN_IF_ERROR(plan.options.Validate());
  // The template: `spec` for any family, or the older `gmm` field of mixture clients.
  v1::ModelSpec templ = header.spec();
  if (templ.family_case() == v1::ModelSpec::FAMILY_NOT_SET) *templ.mutable_gmm() = header.gmm();
  EMFIT_ASSIGN_OR_RETURN(SpecVariant base, SpecFromProto(templ, "header.spec"));
  EMFIT_RETURN_IF_ERROR(std::visit(
      [&](const auto& b) -> absl::Status {
        EMFIT_ASSIGN_OR_RETURN(auto specs, SelectGrid(b, header, limits));
        for (auto& s : specs) plan.candidates.emplace_back(std::move(s));
        return absl::OkStatus();
      },
      base));
  plan.criterion = header.criterion() == v1::CRITERION_AIC ? v1::CRITERION_AIC : v1::CRITERION_BIC;
  return plan;
}

absl::StatusOr<v1::SelectionResult> RunSelect(
    const SelectPlan& plan, const Upload& upload, const FitControls& controls,
    const std::function<FitObserver*(int)>& observer_for,
    const std::function<void(const v1::Candidate&)>& on_done) {
  const int n = static_cast<int>(plan.candidates.size());
  std::vector<v1::Candidate> candidates(n);
  std::vector<std::optional<v1::FitResult>> fits(n);
  ParallelFor(controls.pool, n, [&](int i) {
    v1::Candidate& c = candidates[i];
    c.set_index(static_cast<uint32_t>(i));
    std::visit([&](const auto& spec) { Describe(spec, &c); }, plan.candidates[i]);
    FitControls mine = controls;
    mine.observer = observer_for(i);
    FitPlan one{plan.candidates[i], plan.options};
    absl::StatusOr<v1::FitResult> fit = RunFit(one, upload, mine);
    if (fit.ok()) {
      *c.mutable_summary() = fit->summary();
      fits[i] = *std::move(fit);
    } else {
      c.set_error(std::string(fit.status().message()));
    }
    on_done(c);
  });
  EMFIT_RETURN_IF_ERROR(CheckInterrupted(controls));
  int best = -1;
  auto score = [&](int i) {
    return plan.criterion == v1::CRITERION_AIC ? fits[i]->summary().aic()
                                               : fits[i]->summary().bic();
  };
  for (int i = 0; i < n; ++i) {
    if (fits[i].has_value() && (best < 0 || score(i) < score(best))) best = i;
  }
  if (best < 0) {
    return absl::FailedPreconditionError(
        absl::StrFormat("no candidate could be fitted; first error: %s", candidates[0].error()));
  }
  v1::SelectionResult result;
  result.set_criterion(plan.criterion);
  for (v1::Candidate& c : candidates) *result.add_candidates() = std::move(c);
  result.set_best(static_cast<uint32_t>(best));
  *result.mutable_best_fit() = *std::move(fits[best]);
  return result;
}

}  // namespace emfit::server
