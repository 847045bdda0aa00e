#include "jobs.h"

#include <algorithm>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "emfit/base/status_macros.h"
#include "emfit/exec/cancellation.h"
#include "emfit/exec/thread_pool.h"

namespace emfit::server {
namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace

absl::StatusOr<FitPlan> PlanFit(const v1::FitHeader& header, const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(CheckShape(header.shape(), limits, "header.shape"));
  EMFIT_RETURN_IF_ERROR(CheckOptions(header.options(), limits, "header.options"));
  FitPlan plan;
  EMFIT_ASSIGN_OR_RETURN(plan.options, FromProto(header.options()));
  EMFIT_RETURN_IF_ERROR(plan.options.Validate());
  EMFIT_ASSIGN_OR_RETURN(plan.spec, FromProto(header.spec()));
  const int64_t rows = static_cast<int64_t>(header.shape().rows());
  const int64_t cols = static_cast<int64_t>(header.shape().cols());
  EMFIT_RETURN_IF_ERROR(std::visit(
      Overloaded{[&](gmm::GmmSpec& s) -> absl::Status {
        // The value sent, not the clamped one, so that the message quotes the request.
        EMFIT_RETURN_IF_ERROR(CheckK(header.spec().gmm().k(), limits, "spec.gmm.k"));
        if (header.has_init()) {
          if (!header.init().has_gmm()) {
            return absl::InvalidArgumentError(
                "init: the starting model must be a gmm, like the spec");
          }
          EMFIT_ASSIGN_OR_RETURN(s.init_params, FromProto(header.init().gmm(), "init.gmm"));
        }
        // The spec and the starting model against the declared shape: core's checks, before
        // any data arrive (messages name fields relative to the header, as spec.gmm.k).
        EMFIT_RETURN_IF_ERROR(s.Validate(rows, cols));
        EMFIT_RETURN_IF_ERROR(
            CheckModelSize(gmm::NumFreeParameters(s.covariance_type, s.k, static_cast<int>(cols)),
                           limits, "spec.gmm"));
        return absl::OkStatus();
      }},
      plan.spec));
  return plan;
}

absl::StatusOr<v1::FitResult> RunFit(const FitPlan& plan, Dataset data,
                                     const FitControls& controls) {
  return std::visit(Overloaded{[&](const gmm::GmmSpec& spec) -> absl::StatusOr<v1::FitResult> {
                      EMFIT_ASSIGN_OR_RETURN(
                          gmm::GmmFitResult fit,
                          gmm::Fit(std::move(data), spec, plan.options, controls));
                      // A fit that the call's deadline or a cancel stopped ends the call with
                      // that status (docs/api.md), as RunSelect does: the client is no longer
                      // waiting, and a partial result would race the client's own timer.
                      EMFIT_RETURN_IF_ERROR(CheckInterrupted(controls));
                      v1::FitResult out;
                      ToProto(fit.params, out.mutable_model()->mutable_gmm());
                      ToProto(fit.summary, out.mutable_summary());
                      return out;
                    }},
                    plan.spec);
}

absl::StatusOr<ModelVariant> PlanModel(const v1::PosteriorHeader& header,
                                       const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(CheckShape(header.shape(), limits, "header.shape"));
  switch (header.model().family_case()) {
    case v1::Model::kGmm: {
      EMFIT_ASSIGN_OR_RETURN(gmm::GmmParams p, FromProto(header.model().gmm(), "header.model.gmm"));
      EMFIT_RETURN_IF_ERROR(CheckK(static_cast<uint32_t>(p.k()), limits, "header.model.gmm"));
      if (static_cast<uint64_t>(p.dim()) != header.shape().cols()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "header.shape.cols: the model has d=%d dimensions, the data declare %d columns",
            p.dim(), header.shape().cols()));
      }
      return ModelVariant(std::move(p));
    }
    case v1::Model::FAMILY_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("header.model: no model family set; expected one of: gmm");
}

absl::Status RunPosterior(const ModelVariant& model, const Dataset& data,
                          const FitControls& controls,
                          const std::function<void(v1::PosteriorResponse)>& emit) {
  return std::visit(
      Overloaded{[&](const gmm::GmmParams& params) -> absl::Status {
        EMFIT_RETURN_IF_ERROR(data.ValidateAllowingMissing());
        // About 1 MiB of responsibilities per message, far below the 4 MiB default limit.
        const Eigen::Index block = std::max<Eigen::Index>(1, (1 << 17) / (params.k() + 2));
        for (Eigen::Index begin = 0; begin < data.rows(); begin += block) {
          EMFIT_RETURN_IF_ERROR(CheckInterrupted(controls));
          const Eigen::Index rows = std::min(block, data.rows() - begin);
          EMFIT_ASSIGN_OR_RETURN(gmm::Posteriors post,
                                 gmm::ComputePosteriors(params, data.x.middleRows(begin, rows)));
          v1::PosteriorResponse r;
          r.set_first_row(static_cast<uint64_t>(begin));
          ToProto(post.responsibilities, r.mutable_responsibilities());
          r.mutable_log_likelihood()->Assign(post.log_likelihood.data(),
                                             post.log_likelihood.data() + rows);
          for (Eigen::Index i = 0; i < rows; ++i) r.add_labels(post.labels[i]);
          emit(std::move(r));
        }
        return absl::OkStatus();
      }},
      model);
}

absl::StatusOr<v1::ScoreResponse> RunScore(const ModelVariant& model, const Dataset& data,
                                           const FitControls& controls) {
  return std::visit(
      Overloaded{[&](const gmm::GmmParams& params) -> absl::StatusOr<v1::ScoreResponse> {
        EMFIT_ASSIGN_OR_RETURN(gmm::ScoreResult s, gmm::Score(params, data, controls));
        v1::ScoreResponse out;
        out.set_log_likelihood(s.log_likelihood);
        out.set_mean_log_likelihood(s.mean_log_likelihood);
        out.set_bic(s.bic);
        out.set_aic(s.aic);
        out.set_num_free_parameters(static_cast<uint64_t>(s.num_free_parameters));
        out.set_rows(static_cast<uint64_t>(s.rows_used));
        return out;
      }},
      model);
}

absl::StatusOr<SelectPlan> PlanSelect(const v1::SelectModelHeader& header,
                                      const ServiceLimits& limits) {
  EMFIT_RETURN_IF_ERROR(CheckShape(header.shape(), limits, "header.shape"));
  EMFIT_RETURN_IF_ERROR(CheckOptions(header.options(), limits, "header.options"));
  SelectPlan plan;
  EMFIT_ASSIGN_OR_RETURN(plan.options, FromProto(header.options()));
  EMFIT_RETURN_IF_ERROR(plan.options.Validate());
  if (header.k_size() == 0) {
    return absl::InvalidArgumentError("header.k: give at least one number of components");
  }
  std::vector<gmm::CovarianceType> types;
  for (int t : header.covariance_types()) {
    EMFIT_ASSIGN_OR_RETURN(gmm::CovarianceType type, FromProto(static_cast<v1::CovarianceType>(t),
                                                               "header.covariance_types"));
    types.push_back(type);
  }
  if (types.empty()) types.push_back(gmm::CovarianceType::kFull);
  const uint64_t grid = static_cast<uint64_t>(header.k_size()) * types.size();
  if (grid > static_cast<uint64_t>(limits.max_candidates)) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "header: %d candidates (k values x covariance types) exceed --max_candidates=%d", grid,
        limits.max_candidates));
  }
  EMFIT_ASSIGN_OR_RETURN(gmm::GmmSpec base, FromProto(header.gmm()));
  if (header.gmm().fix_weights() || header.gmm().fix_means() || header.gmm().fix_covariances()) {
    return absl::InvalidArgumentError(
        "header.gmm.fix_*: fixed parameters need a starting model; SelectModel has none");
  }
  const auto rows = static_cast<int64_t>(header.shape().rows());
  const auto cols = static_cast<int64_t>(header.shape().cols());
  for (uint32_t k : header.k()) {
    EMFIT_RETURN_IF_ERROR(CheckK(k, limits, "header.k"));
    for (gmm::CovarianceType type : types) {
      gmm::GmmSpec spec = base;
      spec.k = static_cast<int>(k);
      spec.covariance_type = type;
      EMFIT_RETURN_IF_ERROR(CheckModelSize(
          gmm::NumFreeParameters(type, spec.k, static_cast<int>(cols)), limits, "header.k"));
      if (absl::Status s = spec.Validate(rows, cols); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("header.k: ", s.message()));
      }
      plan.candidates.push_back(spec);
    }
  }
  plan.criterion = header.criterion() == v1::CRITERION_AIC ? v1::CRITERION_AIC : v1::CRITERION_BIC;
  return plan;
}

absl::StatusOr<v1::SelectionResult> RunSelect(
    const SelectPlan& plan, const Dataset& data, const FitControls& controls,
    const std::function<FitObserver*(int)>& observer_for,
    const std::function<void(const v1::Candidate&)>& on_done) {
  const int n = static_cast<int>(plan.candidates.size());
  std::vector<v1::Candidate> candidates(n);
  std::vector<std::optional<gmm::GmmFitResult>> fits(n);
  ParallelFor(controls.pool, n, [&](int i) {
    const gmm::GmmSpec& spec = plan.candidates[i];
    v1::Candidate& c = candidates[i];
    c.set_index(static_cast<uint32_t>(i));
    c.set_k(static_cast<uint32_t>(spec.k));
    c.set_covariance_type(ToProto(spec.covariance_type));
    FitControls mine = controls;
    mine.observer = observer_for(i);
    absl::StatusOr<gmm::GmmFitResult> fit = gmm::Fit(data, spec, plan.options, mine);
    if (fit.ok()) {
      ToProto(fit->summary, c.mutable_summary());
      fits[i] = *std::move(fit);
    } else {
      c.set_error(std::string(fit.status().message()));
    }
    on_done(c);
  });
  EMFIT_RETURN_IF_ERROR(CheckInterrupted(controls));
  int best = -1;
  auto score = [&](int i) {
    return plan.criterion == v1::CRITERION_AIC ? fits[i]->summary.aic : fits[i]->summary.bic;
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
  ToProto(fits[best]->params, result.mutable_best_fit()->mutable_model()->mutable_gmm());
  ToProto(fits[best]->summary, result.mutable_best_fit()->mutable_summary());
  return result;
}

}  // namespace emfit::server
