#include "jobs.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "convert/common.h"
#include "convert/gmm.h"
#include "convert/hmm.h"
#include "convert/mk.h"
#include "emfit/base/status_macros.h"
#include "emfit/exec/thread_pool.h"

namespace emfit::server {

// Completes and checks the loop options for a family. Families with their own defaults or
// checks overload it in their converter (convert/mk.h); the others keep FitOptions' defaults.
template <class Spec>
absl::Status PlanOptions(const Spec&, const v1::FitOptions&, const ServiceLimits&, FitOptions*) {
  return absl::OkStatus();
}

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

// The options of `sent` for the family of `spec`, checked.
absl::StatusOr<FitOptions> OptionsFor(const SpecVariant& spec, const v1::FitOptions& sent,
                                      const ServiceLimits& limits) {
  EMFIT_ASSIGN_OR_RETURN(FitOptions options, FromProto(sent));
  EMFIT_RETURN_IF_ERROR(
      std::visit([&](const auto& s) { return PlanOptions(s, sent, limits, &options); }, spec));
  EMFIT_RETURN_IF_ERROR(options.Validate());
  return options;
}

}  // namespace

absl::StatusOr<FitPlan> PlanFit(const v1::FitHeader& header, const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(CheckShape(header.shape(), limits, "header.shape"));
  EMFIT_RETURN_IF_ERROR(CheckOptions(header.options(), limits, "header.options"));
  FitPlan plan;
  EMFIT_ASSIGN_OR_RETURN(plan.spec, SpecFromProto(header.spec(), "header.spec"));
  EMFIT_ASSIGN_OR_RETURN(plan.options, OptionsFor(plan.spec, header.options(), limits));
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
  // A warm start runs once, whatever n_init says.
  const int restarts = init != nullptr ? 1 : plan.options.n_init;
  const IterationCost cost = std::visit(
      [&](const auto& spec) { return CostOfIteration(spec, header.shape()); }, plan.spec);
  EMFIT_RETURN_IF_ERROR(
      CheckWork(restarts, plan.options.max_iter, 1, cost, limits, "header.options"));
  plan.working_bytes = std::visit(
      [&](const auto& spec) {
        return WorkingBytes(spec, header.shape(), plan.options, limits.job_threads);
      },
      plan.spec);
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
      std::visit([&](auto& m) { return PlanModel(&m, header.shape(), limits); }, model));
  return model;
}

uint64_t ModelWorkingBytes(const ModelVariant& model, const v1::DataShape& shape, int threads) {
  return std::visit([&](const auto& m) { return WorkingBytes(m, shape, threads); }, model);
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
  // The template: `spec` for any family, or the older `gmm` field of mixture clients.
  v1::ModelSpec templ = header.spec();
  if (templ.family_case() == v1::ModelSpec::FAMILY_NOT_SET) *templ.mutable_gmm() = header.gmm();
  EMFIT_ASSIGN_OR_RETURN(SpecVariant base, SpecFromProto(templ, "header.spec"));
  EMFIT_ASSIGN_OR_RETURN(plan.options, OptionsFor(base, header.options(), limits));
  EMFIT_RETURN_IF_ERROR(std::visit(
      [&](const auto& b) -> absl::Status {
        EMFIT_ASSIGN_OR_RETURN(auto specs, SelectGrid(b, header, limits));
        for (auto& s : specs) plan.candidates.emplace_back(std::move(s));
        return absl::OkStatus();
      },
      base));
  plan.criterion = header.criterion() == v1::CRITERION_AIC ? v1::CRITERION_AIC : v1::CRITERION_BIC;
  // Every candidate counted at the costliest one's iteration.
  IterationCost cost;
  for (const SpecVariant& c : plan.candidates) {
    IterationCost one =
        std::visit([&](const auto& spec) { return CostOfIteration(spec, header.shape()); }, c);
    if (one.values > cost.values) cost = std::move(one);
  }
  EMFIT_RETURN_IF_ERROR(CheckWork(plan.options.n_init, plan.options.max_iter,
                                  plan.candidates.size(), cost, limits, "header"));
  // RunSelect fits limits.job_threads candidates at a time, each on its own copy of the data;
  // the results of all are kept. The largest ones are assumed to run together.
  const v1::DataShape& shape = header.shape();
  const uint64_t copy =
      shape.rows() * (shape.cols() + (shape.weight_column() ? 1 : 0)) * sizeof(double);
  std::vector<uint64_t> running;
  for (const SpecVariant& c : plan.candidates) {
    std::visit(
        [&](const auto& spec) {
          plan.working_bytes += ResultBytes(spec, shape, plan.options);
          running.push_back(copy + WorkingBytes(spec, shape, plan.options, limits.job_threads));
        },
        c);
  }
  const size_t at_once = std::min<size_t>(running.size(), std::max(1, limits.job_threads));
  std::partial_sort(running.begin(), running.begin() + at_once, running.end(),
                    std::greater<uint64_t>());
  for (size_t i = 0; i < at_once; ++i) plan.working_bytes += running[i];
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

absl::StatusOr<HistoriesPlan> PlanHistories(const v1::SampleHistoriesHeader& header,
                                            const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(CheckShape(header.shape(), limits, "header.shape"));
  EMFIT_ASSIGN_OR_RETURN(ModelVariant model, ModelFromProto(header.model(), "header.model"));
  MkModelPlan* mk = std::get_if<MkModelPlan>(&model);
  if (mk == nullptr) {
    return absl::InvalidArgumentError(
        "header.model: stochastic maps need an Mk model (header.model.mk)");
  }
  HistoriesPlan plan;
  plan.model = std::move(*mk);
  EMFIT_RETURN_IF_ERROR(PlanModel(&plan.model, header.shape(), limits));
  EMFIT_RETURN_IF_ERROR(PlanDraws(header, limits, &plan));
  return plan;
}

absl::Status RunHistories(const HistoriesPlan& plan, const Upload& upload,
                          const FitControls& controls,
                          const std::function<void(v1::SampleHistoriesResponse)>& emit) {
  return HistoriesJob(plan, upload, controls, emit);
}

absl::StatusOr<Declared> PlanCall(const v1::FitHeader& header, const ServiceLimits& limits,
                                  std::optional<FitPlan>* plan) {
  EMFIT_ASSIGN_OR_RETURN(*plan, PlanFit(header, limits));
  return Declared{header.shape(), (*plan)->working_bytes};
}

absl::StatusOr<Declared> PlanCall(const v1::PosteriorHeader& header, const ServiceLimits& limits,
                                  std::optional<ModelVariant>* model) {
  EMFIT_ASSIGN_OR_RETURN(*model, PlanModel(header, limits));
  return Declared{header.shape(), ModelWorkingBytes(**model, header.shape(), limits.job_threads)};
}

absl::StatusOr<Declared> PlanCall(const v1::SelectModelHeader& header, const ServiceLimits& limits,
                                  std::optional<SelectPlan>* plan) {
  EMFIT_ASSIGN_OR_RETURN(*plan, PlanSelect(header, limits));
  return Declared{header.shape(), (*plan)->working_bytes};
}

absl::StatusOr<Declared> PlanCall(const v1::SampleHistoriesHeader& header,
                                  const ServiceLimits& limits, std::optional<HistoriesPlan>* plan) {
  EMFIT_ASSIGN_OR_RETURN(*plan, PlanHistories(header, limits));
  return Declared{header.shape(), WorkingBytes(**plan, header.shape(), limits.job_threads)};
}

}  // namespace emfit::server
